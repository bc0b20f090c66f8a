"""A pruned model as a torch.export program (.pt2): the input of `prunec build`.

The program is traced in eval mode at batch 1 (dropout inert), from a deep copy whose weights are plain
parameters with the pruned ones baked in as exact zeros: no forward hooks, no torch.nn.utils.prune
re-parametrisation, no torch.nn.utils.parametrize. The .pt2 carries `prunec.json` in its extra files:
model name, input shape, the sha256 of the checkpoint it came from, and each weighted layer's weight count
before pruning (`weights0`, `weights0_total`: the network before dead-neuron removal shrank layers, what
`prunec info` counts), from which `prunec build` reports compression against the network before pruning.
"""
from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as C
from . import masks as M
from .atomic import atomic_file
from .errors import PrunecError

META_FILE = "prunec.json"


def _plain(model: nn.Module) -> nn.Module:
    """A copy without pruning hooks or parametrizations, weights baked (zeros exact), eval mode."""
    # torch.nn.utils.prune keeps `weight` as a computed (non-leaf) attribute that deepcopy refuses; copy
    # without it (prune.remove recomputes it from weight_orig × weight_mask).
    held = {(mod, k): mod.__dict__.pop(k) for mod in model.modules() for k in list(mod.__dict__)
            if hasattr(mod, k + "_orig") and hasattr(mod, k + "_mask")}  # weight, and a pruned bias too
    try:
        m = copy.deepcopy(model)
    finally:
        for (mod, k), w in held.items():
            mod.__dict__[k] = w
    if any(n.endswith("_orig") for n, _ in m.named_parameters()):
        M.from_torch_prune(m)
    from torch.nn.utils import parametrize

    for mod in list(m.modules()):
        if parametrize.is_parametrized(mod):
            for name in list(mod.parametrizations.keys()):
                parametrize.remove_parametrizations(mod, name, leave_parametrized=True)
    for mod in m.modules():
        mod._forward_pre_hooks.clear()
        mod._forward_hooks.clear()
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


def export_program(model: nn.Module, input_shape: tuple) -> torch.export.ExportedProgram:
    """torch.export.export of `model` (eval, batch 1, baked plain weights) on a float32 input of `input_shape`."""
    m = _plain(model)
    example = (torch.zeros((1, *tuple(input_shape)), dtype=torch.float32),)
    try:
        return torch.export.export(m, example)
    except Exception as e:  # torch raises many types here; report the model, not a traceback
        raise PrunecError(f"torch.export could not trace the model: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _dense_sizes(model: nn.Module, weights0: dict | None) -> dict[str, int]:
    """Each Conv2d/Conv1d/Linear layer's weight count before pruning: a pruning run's `weights0` (dead-neuron removal
    may have shrunk the layer since), else the layer's own size; as `prunec info` counts params_total."""
    w0 = weights0 or {}
    return {r["name"]: int(w0.get(r["name"], r["weights"])) for r in M.layer_stats(model)}


def weights_before_pruning(ckpt: C.Checkpoint) -> dict[str, int]:
    """`_dense_sizes` of a checkpoint: its pruning run's schedule["weights0"]."""
    return _dense_sizes(ckpt.model, (ckpt.schedule or {}).get("weights0"))


def _meta(model: nn.Module, input_shape, weights0: dict[str, int], *, model_name, test_accuracy,
          baseline_test_accuracy, dataset, **more) -> dict:
    """The prunec.json of a .pt2 (both writers: `export_checkpoint` and `save_program`); `weights0` from
    `_dense_sizes`."""
    return {
        "format": "prunec-pt2",
        "model_name": model_name,
        "input_shape": list(input_shape),
        "compression": M.compression(model, dense_sizes=weights0),
        "weights0": weights0,  # per layer, before pruning (prunec build's compression against the original network)
        "weights0_total": sum(weights0.values()),
        "test_accuracy": test_accuracy,
        "baseline_test_accuracy": baseline_test_accuracy,
        "dataset": dataset,
        **more,
    }


def original_weights(pt2_path: str | os.PathLike) -> dict[str, int] | None:
    """The per-layer weight counts before pruning that `prunec export` stored in a .pt2's metadata; None when
    unknown (a .pt2 from torch.export.save, or from an older prunec export). A checkpoint's come from
    `weights_before_pruning`."""
    try:
        w0 = read_metadata(pt2_path).get("weights0")
    except Exception:  # noqa: BLE001 - the figure is extra: a model the frontend read but this cannot goes without it
        return None
    if not isinstance(w0, dict) or not w0 or not all(isinstance(v, int) and v > 0 for v in w0.values()):
        return None
    return {str(k): int(v) for k, v in w0.items()}


def export_checkpoint(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Export a checkpoint's model to `out_path` (.pt2) atomically, with prunec metadata inside."""
    ckpt = C.load(ckpt_path)
    ep = export_program(ckpt.model, ckpt.input_shape)
    meta = _meta(ckpt.model, ckpt.input_shape, weights_before_pruning(ckpt), model_name=ckpt.model_name,
                 test_accuracy=ckpt.metrics.get("test_accuracy"),
                 baseline_test_accuracy=ckpt.metrics.get("baseline_test_accuracy"), dataset=ckpt.meta.get("dataset"),
                 source_checkpoint_sha256=C.sha256(ckpt_path), source_checkpoint=Path(ckpt_path).name,
                 # the seed of the synthetic data its model was trained on (verify --data synthetic rebuilds that split)
                 data_seed=int(ckpt.meta.get("data_seed", ckpt.meta.get("seed")) or 0))
    return _save(ep, meta, out_path)


def _save(ep: torch.export.ExportedProgram, meta: dict, out_path: str | os.PathLike) -> Path:
    """`ep` with `meta` as its prunec.json, written to `out_path` atomically (no partial file on failure)."""
    out = Path(out_path)
    buf = io.BytesIO()  # torch.export.save wants a .pt2 name or a buffer; the temp file has neither
    torch.export.save(ep, buf, extra_files={META_FILE: json.dumps(meta, sort_keys=True)})
    with atomic_file(out) as tmp:
        tmp.write_bytes(buf.getvalue())
    return out


def _accuracy(value, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise PrunecError(f"{what} must be a fraction in [0, 1] (e.g. 0.9 for 90 %), not {value!r}")
    return float(value)


def save_program(model: nn.Module, input_shape: tuple, out_path: str | os.PathLike, *, state: dict | None = None,
                 test_accuracy: float | None = None, baseline_test_accuracy: float | None = None,
                 model_name: str | None = None, dataset: str | None = None) -> Path:
    """Export a model of one's own (`export_program`) to `out_path` with the prunec metadata that `prunec export`
    writes for a checkpoint, so that `prunec info` and `prunec build` count against the network before pruning.

    `state`: the third value `prune.run_schedule` returns. Its `weights0` (each layer's size before pruning) is what
    keeps compression and remaining % right after dead-neuron removal has shrunk layers; its last kept step gives
    the test accuracy unless `test_accuracy` is given. Accuracies are fractions in [0, 1]; `baseline_test_accuracy`
    is the dense model's. Written atomically: a failure leaves no file."""
    if state is not None and not isinstance(state, dict):
        raise PrunecError(f"state must be the dict prune.run_schedule returns, not {type(state).__name__}")
    w0 = state.get("weights0") if state is not None else None
    if w0 is not None and not (isinstance(w0, dict) and all(isinstance(v, int) and v > 0 for v in w0.values())):
        raise PrunecError("state['weights0'] must map layer names to weight counts (the dict prune.run_schedule returns)")
    for what, v in (("model_name", model_name), ("dataset", dataset)):
        if v is not None and not isinstance(v, str):
            raise PrunecError(f"{what} must be a string or None, not {type(v).__name__}")
    rows = M.layer_stats(model)
    names = {r["name"] for r in rows}
    if w0:
        stray = sorted(set(w0) - names)
        if stray:
            raise PrunecError(f"state['weights0'] names layers the model does not have ({', '.join(stray[:5])}): "
                              "pass the state of this model's pruning run")
        small = [r["name"] for r in rows if r["name"] in w0 and w0[r["name"]] < r["weights"]]
        if small:
            raise PrunecError(f"state['weights0'] gives {', '.join(small[:5])} fewer weights than the layer has now: "
                              "it is not this model's pruning run")
    if test_accuracy is None and state is not None:
        kept = [h for h in state.get("history") or [] if isinstance(h, dict) and not h.get("undone")]
        test_accuracy = kept[-1].get("test_accuracy") if kept else None
    meta = _meta(model, input_shape, _dense_sizes(model, w0), model_name=model_name,
                 test_accuracy=_accuracy(test_accuracy, "test_accuracy"),
                 baseline_test_accuracy=_accuracy(baseline_test_accuracy, "baseline_test_accuracy"), dataset=dataset)
    return _save(export_program(model, input_shape), meta, out_path)


def read_metadata(pt2_path: str | os.PathLike) -> dict:
    """The prunec metadata stored in a .pt2 written by `export_checkpoint` or `save_program` ({} if none). Read from the archive's
    extra-files entry directly (torch.export.save puts it at <archive>/extra/<name>), so the program and its
    weights are not deserialised a second time (VGG-16: 0.5 GB); torch.export.load only for another layout."""
    try:
        with zipfile.ZipFile(pt2_path) as z:
            names = [n for n in z.namelist() if n.endswith("/extra/" + META_FILE)]
            if len(names) == 1:
                return json.loads(z.read(names[0]).decode())
    except (OSError, zipfile.BadZipFile):
        pass
    extra = {META_FILE: ""}
    torch.export.load(pt2_path, extra_files=extra)
    return json.loads(extra[META_FILE]) if extra[META_FILE] else {}
