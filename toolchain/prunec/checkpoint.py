"""prunec checkpoints: one `torch.save`d dict, read back with `torch.load(weights_only=True)` (no code runs).

Layout (version 1):
    format        "prunec-checkpoint"            version   1
    kind          "dense" | "pruned" | "pruning"  ("pruning": an interrupted run, resumable with --resume)
    model_name    key of models.MODELS            num_classes, input_shape (without batch)
    state_dict    weights with pruned ones exactly 0 (shapes may be shrunk by dead-neuron removal)
    masks         {layer: bool tensor} (True = kept), empty for a dense model
    dropout_p     {dropout module: rate} (after the paper's dropout rescale)
    schedule      the prune schedule state (step, per-layer targets, per-step metrics), or None
    recipe        the pruning recipe (recipes.Recipe as a dict), or None
    metrics       test_accuracy, baseline_test_accuracy (fractions, full test set), ...
    train_args    the dense training config      seed, dataset
Files are written atomically (prunec.atomic). `load` rebuilds the module at the saved (possibly shrunk)
shapes, so it loads whatever dead-neuron removal did. `save` refuses what `load` could not read back: weights
of another model than `model_name`, metadata that weights_only loading refuses (numpy scalars and paths are
converted), a kind other than the three above. A mask set, when there is one, covers every prunable layer.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import masks as M
from . import models
from .atomic import atomic_file
from .errors import PrunecError, brief

FORMAT = "prunec-checkpoint"
VERSION = 1
KINDS = ("dense", "pruned", "pruning")
# What to do with a model that is not one of models.MODELS (checkpoints hold only those); docs/PRUNING.md "Your own model"
OWN_MODEL_ROUTE = (
    "a model of your own needs no checkpoint: prune it in Python (prunec.prune.run_schedule with a prunec.data.Dataset "
    "of your tensors, or torch.nn.utils.prune), write a .pt2 with torch.export.save(prunec.export.export_program(model, "
    "input_shape), 'model.pt2'), then `prunec build model.pt2` (and `prunec info model.pt2`); docs/PRUNING.md, "
    "\"Your own model\""
)


@dataclass
class Checkpoint:
    model: nn.Module  # eval mode, masks baked in as exact zeros, plain parameters
    model_name: str
    input_shape: tuple[int, ...]
    meta: dict  # everything but the tensors: kind, metrics, schedule, recipe, train_args, seed, ...
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "dense")

    @property
    def metrics(self) -> dict:
        return self.meta.setdefault("metrics", {})

    @property
    def schedule(self) -> dict | None:
        return self.meta.get("schedule")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)


def _plain(value, where: str):
    """`value` as types torch.load(weights_only=True) reads back: None, numbers, strings, tensors, dicts, lists,
    tuples, sets. numpy scalars/arrays become Python numbers/tensors and paths strings; anything else (a
    dataclass, an enum, a class instance) is refused here rather than written into a file no one can load."""
    if type(value) in _PLAIN:
        return value
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__.split(".")[0] == "numpy" and hasattr(value, "dtype"):
        if getattr(value, "ndim", 0) == 0 and hasattr(value, "item"):
            return _plain(value.item(), where)
        if value.dtype.kind in "biufc":
            return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {_plain(k, f"a key of {where}"): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, (set, frozenset)):
            return set(items)
        return items if isinstance(value, list) else tuple(items)  # a namedtuple or torch.Size: a plain tuple
    raise PrunecError(f"cannot save {where}: a {type(value).__module__}.{type(value).__qualname__} is not a plain value, and "
                      f"torch.load(weights_only=True) would refuse the whole checkpoint; store it as a number, string, "
                      f"list, dict or tensor")


def _zoo_name_of(sd_keys: set[str]) -> str | None:
    """The zoo model whose state_dict has exactly these keys (shapes aside), if one has."""
    for name in models.MODELS:
        with torch.device("meta"):
            if set(models.create(name).state_dict()) == sd_keys:
                return name
    return None


def _check_fits(sd: dict[str, torch.Tensor], model_name: str, num_classes: int) -> None:
    """Refuse to write weights that `load` could not put back into `model_name` (another model's, a wrapper's)."""
    with torch.device("meta"):
        ref = models.create(model_name, num_classes=num_classes).state_dict()
    missing, unexpected = sorted(set(ref) - set(sd)), sorted(set(sd) - set(ref))
    wrong = sorted(k for k in set(ref) & set(sd) if sd[k].dim() != ref[k].dim())
    if not (missing or unexpected or wrong):
        return
    what = "; ".join(x for x in (
        f"missing {', '.join(missing[:4])}" if missing else "",
        f"unexpected {', '.join(unexpected[:4])}" if unexpected else "",
        f"{', '.join(wrong[:4])} with another number of dimensions" if wrong else "") if x)
    other = _zoo_name_of(set(sd))
    fix = (f"it is a {other}: pass model_name={other!r}" if other else
           f"save the zoo model {model_name!r} itself (models.create({model_name!r}) with these weights loaded); "
           f"if it is another architecture, {OWN_MODEL_ROUTE}")
    raise PrunecError(f"cannot save as {model_name!r}: the model's weights do not fit it ({what}); {fix}")


def save(
    path: str | os.PathLike,
    model: nn.Module,
    model_name: str,
    *,
    masks: dict[str, torch.Tensor] | None = None,
    kind: str = "dense",
    metrics: dict | None = None,
    schedule: dict | None = None,
    recipe: dict | None = None,
    train_args: dict | None = None,
    seed: int | None = None,
    dataset: str | None = None,
    num_classes: int | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically. A model re-parametrised by torch.nn.utils.prune is accepted."""
    path = Path(path)
    if model_name not in models.MODELS:
        raise PrunecError(f"unknown model {model_name!r}: a prunec checkpoint holds one of prunec's models "
                          f"({', '.join(models.MODELS)}), named by model_name; {OWN_MODEL_ROUTE}")
    if kind not in KINDS:
        raise PrunecError(f"cannot save: kind {kind!r} is not one of {', '.join(KINDS)}")
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module  # its state_dict keys carry a "module." prefix the zoo model does not have
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if M.is_torch_prune_state_dict(sd):
        sd, tp_masks = M.from_torch_prune_state_dict(sd)
        masks = {**tp_masks, **(masks or {})}
    # a non-bool mask (torch.nn.utils.prune's float weight_mask) counts nonzero as kept, as masks.apply_masks does
    masks = {k: (v.detach().cpu() != 0) for k, v in (masks or {}).items()}
    for name, mask in masks.items():  # bake: pruned weights are exactly 0 in the file
        key = name + ".weight"
        if key not in sd:
            raise PrunecError(f"cannot save: a mask names layer {name!r}, which the model does not have "
                              f"(its layers: {', '.join(n for n, _ in models.prunable_layers(model))})")
        if sd[key].shape != mask.shape:
            raise PrunecError(f"cannot save: the mask of {name} has shape {tuple(mask.shape)}, its weight "
                              f"{tuple(sd[key].shape)}; give the masks of this model (after any dead-neuron removal)")
        sd[key] = sd[key].masked_fill(~mask, 0.0)
    if masks:  # a partial set (only the layers torch.nn.utils.prune re-parametrised): the others keep their nonzeros,
        for name, _ in models.prunable_layers(model):  # as masks.from_torch_prune reads them; `prunec prune` needs all
            if name not in masks and name + ".weight" in sd:
                masks[name] = sd[name + ".weight"] != 0
    last = [m for _, m in models.prunable_layers(model)][-1]
    num_classes = int(num_classes or last.weight.shape[0])
    _check_fits(sd, model_name, num_classes)
    clash = sorted(set(extra or {}) & {"format", "version", "kind", "model_name", "num_classes", "input_shape", "state_dict",
                                       "masks", "dropout_p", "schedule", "recipe", "metrics", "train_args", "seed",
                                       "dataset", "torch_version"})
    if clash:
        raise PrunecError(f"cannot save: extra keys {clash} would overwrite the checkpoint's own; rename them")
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "model_name": model_name,
        "num_classes": num_classes,
        "input_shape": list(models.input_shape(model_name)),
        "state_dict": sd,
        "masks": masks,
        "dropout_p": models.dropout_rates(model),
        "schedule": _plain(schedule, "schedule"),
        "recipe": _plain(recipe, "recipe"),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "train_args": _plain(dict(train_args or {}), "train_args"),
        "seed": _plain(seed, "seed"),
        "dataset": _plain(dataset, "dataset"),
        "torch_version": str(torch.__version__),
        **{k: _plain(v, k) for k, v in (extra or {}).items()},
    }
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)
    return path


def _is_exported_program(path: Path) -> bool:
    """A torch.export archive (a zip whose entries include .../serialized_exported_program.json or similar), not a
    torch.save one."""
    from .archive import exported_program, torch_save, zip_names

    names = zip_names(path)
    return exported_program(names) and not torch_save(names)


def _read(path: Path):
    if not path.exists():
        raise PrunecError(f"checkpoint {path} does not exist; create one with `prunec train` or `prunec prune`")
    if path.is_dir():
        raise PrunecError(f"{path} is a directory, not a checkpoint file")
    if _is_exported_program(path):
        raise PrunecError(f"{path} is an exported program (.pt2, from `prunec export` or torch.export.save), not a prunec "
                          f"checkpoint: it holds the graph and weights but no masks or metrics. Give the checkpoint it was "
                          f"exported from (from `prunec train` / `prunec prune`); `prunec build` and `prunec info` take the "
                          f".pt2 itself. A model of your own has no checkpoint: prune it in Python before exporting it "
                          f"(docs/PRUNING.md, \"Your own model\")")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError, AttributeError,
            struct.error, IndexError, TypeError) as e:  # what torch.load raises on bytes that are no pickle
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        i = next((k for k, ln in enumerate(lines) if "Unpickler error" in ln), 0)
        first = lines[i]
        if first.endswith("Unpickler error:") and i + 1 < len(lines):
            # torch's text asks the user to file a torch issue and puts the reason on the next line
            first = f"its bytes are not a torch.save pickle ({lines[i + 1]})"
        elif isinstance(e, KeyError) or len(first) < 8:  # e.g. KeyError('101'): an unpickler's bare detail
            first = f"its bytes are not a torch.save pickle ({type(e).__name__}: {first})"
        glob = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if glob:
            raise PrunecError(
                f"{path} holds a pickled Python object ({glob.group(1)}), not only tensors and plain values; prunec does "
                f"not load such files, since unpickling them can run arbitrary code (torch.load(weights_only=True) refuses "
                f"them). A whole module saved with torch.save(model)? For one of prunec's models ({', '.join(models.MODELS)}), "
                f"save model.state_dict() instead, load it into prunec.models.create(NAME) and write a checkpoint with "
                f"prunec.checkpoint.save(path, model, NAME); {OWN_MODEL_ROUTE}."
            ) from None
        raise PrunecError(
            f"{path} is not a readable prunec checkpoint (corrupt, truncated, or not written by torch.save): {brief(first)}. "
            f"Re-create it with `prunec train` / `prunec prune`."
        ) from None


def _load_error(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    detail = "; ".join(ln for ln in lines if not ln.startswith("Error(s) in loading state_dict")) or type(e).__name__
    return detail[:300]


def build_model(model_name: str, num_classes: int, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """The zoo model at the saved (possibly shrunk) shapes, weights loaded; PrunecError if they do not fit."""
    from .prune import resize_to_state_dict

    bad = sorted(k for k, v in state_dict.items() if not torch.is_tensor(v))
    if bad:
        raise PrunecError(f"checkpoint entries {bad[:5]} are not tensors; the file is foreign or damaged")
    bad = sorted(k for k, v in state_dict.items() if k.rsplit(".", 1)[-1] in ("weight", "bias") and not v.is_floating_point())
    if bad:
        raise PrunecError(f"checkpoint weights {bad[:5]} are {state_dict[bad[0]].dtype}, not floating point; the file is "
                          f"foreign or damaged")
    model = models.create(model_name, num_classes=num_classes)
    resized = False
    for name, m in models.prunable_layers(model):  # dead-neuron removal shrinks sizes, never the kind of a layer
        w = state_dict.get(name + ".weight")
        resized = resized or (w is not None and tuple(w.shape) != tuple(m.weight.shape))
        if w is not None and w.dim() != m.weight.dim():
            raise PrunecError(f"checkpoint weight {name}.weight has shape {tuple(w.shape)}, model {model_name!r} needs a "
                              f"{m.weight.dim()}-d one; the file is foreign or damaged")
    try:
        resize_to_state_dict(model, state_dict)
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, ValueError, IndexError) as e:
        raise PrunecError(f"checkpoint weights do not fit model {model_name!r}: {_load_error(e)}; the file is foreign or damaged") from None
    if not resized:
        return model
    # Shrunk layers must still chain: run the model once on shape-only ("meta") weights.
    try:
        shapes_only = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict().items()}
        torch.func.functional_call(model, shapes_only, (torch.zeros((1, *models.input_shape(model_name)), device="meta"),))
    except (RuntimeError, ValueError, IndexError) as e:
        raise PrunecError(f"checkpoint weights of model {model_name!r} have inconsistent layer shapes ({_load_error(e)}); "
                          f"the file is foreign or damaged") from None
    return model


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_meta(obj: dict, damaged) -> None:
    """The metadata the commands read besides the weights, of the types they read it as (`damaged(what)`: the error
    to raise): seeds, the schedule's dense layer sizes and history, the histograms of the weights before pruning."""
    for key in ("seed", "data_seed"):
        if obj.get(key) is not None and not _is_int(obj[key]):
            raise damaged(f"'{key}' is {obj[key]!r}, not an integer")
    sched = obj.get("schedule") or {}
    w0 = sched.get("weights0")
    if w0 is not None and not (isinstance(w0, dict) and all(isinstance(k, str) and _is_int(v) and v >= 0
                                                             for k, v in w0.items())):
        raise damaged(f"the schedule's 'weights0' ({brief(repr(w0), 80)}) is not a map of layer names to weight counts")
    hist = sched.get("history")
    if hist is not None and not (isinstance(hist, list) and all(isinstance(h, dict) for h in hist)):
        raise damaged(f"the schedule's 'history' ({brief(repr(hist), 80)}) is not a list of step records")
    before = obj.get("weight_hist_before")
    if before is not None and not (isinstance(before, dict) and all(
            isinstance(h, dict) and _is_num(h.get("min")) and _is_num(h.get("max"))
            and isinstance(h.get("counts"), list) and all(_is_int(c) for c in h["counts"]) for h in before.values())):
        raise damaged("'weight_hist_before' is not a map of layer names to histograms {min, max, counts}")


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a prunec checkpoint; PrunecError for a missing, corrupt, foreign or plain state_dict file."""
    path = Path(path)
    obj = _read(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
            tp = M.is_torch_prune_state_dict(obj)
            hint = ("it is a plain state_dict (with torch.nn.utils.prune weight_orig/weight_mask entries)"
                    if tp else "it is a plain state_dict")
            try:
                zoo = _zoo_name_of(set(M.from_torch_prune_state_dict(obj)[0]) if tp else set(obj))
            except Exception:  # noqa: BLE001 - only the advice depends on it
                zoo = None
            if zoo:
                raise PrunecError(
                    f"{path} is not a prunec checkpoint: {hint} of a {zoo}. Load it into prunec.models.create({zoo!r}) "
                    f"and write a checkpoint with prunec.checkpoint.save(path, model, {zoo!r}), or train one with "
                    f"`prunec train`."
                )
            raise PrunecError(
                f"{path} is not a prunec checkpoint: {hint}, whose layers are none of prunec's models "
                f"({', '.join(models.MODELS)}), the only ones a checkpoint holds (for those: prunec.checkpoint.save(path, "
                f"model, NAME)). Load it into your own module instead; {OWN_MODEL_ROUTE}."
            )
        raise PrunecError(f"{path} is not a prunec checkpoint (no '{FORMAT}' header); create one with `prunec train`")
    version = obj.get("version")
    if version != VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > VERSION
        fix = ("it was written by a newer prunec: upgrade prunec to read it" if newer else
               "re-create it with `prunec train` / `prunec prune`")
        raise PrunecError(f"{path}: checkpoint format version {version!r} is not supported (this prunec reads version "
                          f"{VERSION}); {fix}")
    name = obj.get("model_name")
    if name not in models.MODELS:
        raise PrunecError(f"{path}: unknown model {name!r}; this prunec knows {', '.join(models.MODELS)}")

    def damaged(what: str) -> PrunecError:
        return PrunecError(f"{path}: {what}; the file is damaged, re-create it with `prunec train` / `prunec prune`")

    sd = obj.get("state_dict")
    if not isinstance(sd, dict):
        raise damaged("checkpoint has no state_dict")
    if obj.get("kind", "dense") not in KINDS:
        raise damaged(f"kind {obj.get('kind')!r} is not one of {', '.join(KINDS)}")
    num_classes = obj.get("num_classes") or models.MODELS[name][2]
    if not isinstance(num_classes, int) or num_classes < 1:
        raise damaged(f"num_classes {num_classes!r} is not a positive integer")
    raw_shape = obj.get("input_shape") or models.input_shape(name)
    input_shape = tuple(raw_shape) if isinstance(raw_shape, (list, tuple)) else None
    if input_shape != tuple(models.input_shape(name)):
        raise damaged(f"input shape {raw_shape!r} is not {name}'s {list(models.input_shape(name))}")
    for key in ("masks", "dropout_p", "metrics", "train_args", "schedule", "recipe"):
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            raise damaged(f"'{key}' is a {type(obj[key]).__name__}, not a dict")
    _check_meta(obj, damaged)
    try:
        model = build_model(name, num_classes, sd)
    except PrunecError as e:
        raise PrunecError(f"{path}: {e}") from None
    raw_masks = obj.get("masks") or {}
    if not all(torch.is_tensor(v) for v in raw_masks.values()):
        raise damaged("a mask is not a tensor")
    masks = {k: v.bool() for k, v in raw_masks.items()}
    try:
        M.apply_masks(model, masks)
    except (ValueError, AttributeError) as e:
        raise PrunecError(f"{path}: masks do not match the weights ({e}); the file is damaged, re-create it") from None
    for n, p in (obj.get("dropout_p") or {}).items():
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise damaged(f"dropout rate {p!r} of {n} is not a number in [0, 1]")
        try:
            mod = model.get_submodule(n)
        except AttributeError:
            raise damaged(f"dropout rate for {n!r}, a module this model lacks") from None
        if not isinstance(mod, nn.Dropout):
            raise damaged(f"dropout rate for {n!r}, which is a {type(mod).__name__}, not a Dropout")
        mod.p = float(p)
    model.eval()
    meta = {k: v for k, v in obj.items() if k not in ("state_dict", "masks")}
    return Checkpoint(model, name, input_shape, meta, masks, path)


def resume_path(out: str | os.PathLike) -> Path:
    """Where an in-progress prune run keeps its state: beside the output, `OUT.resume`."""
    out = Path(out)
    return out.with_name(out.name + ".resume")
