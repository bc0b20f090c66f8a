"""Per-layer tables (the paper's Tables 2–3) and figures of a pruned checkpoint (matplotlib, Agg):
  weights.png    weight histograms before and after pruning + retraining (the paper's Figure 7)
  masks.png      the mask of each fc layer, white = kept (Figure 4)
  remaining.png  per-layer remaining %, ours beside the paper's
  schedule.png   compression and test accuracy over the prune steps

FLOP % counts multiply-accumulates with a nonzero weight over all of them; activation sparsity (which the
paper's FLOP column also counts) is not included.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .masks import compression
from .models import prunable_layers
from .recipes import PAPER_REMAINING

HIST_BINS = 101


@torch.no_grad()
def layer_table(model: nn.Module, input_shape: tuple) -> list[dict]:
    """Per layer: weights, nonzero, remaining, MACs dense/nonzero (output positions × weights)."""
    positions: dict[str, int] = {}
    hooks = []
    for name, m in prunable_layers(model):
        def hook(mod, inp, out, name=name):
            positions[name] = math.prod(out.shape[2:]) if out.dim() >= 3 else 1  # output pixels (conv1d: length)
        hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    model(torch.zeros((1, *input_shape)))
    model.train(was)
    for h in hooks:
        h.remove()
    rows = []
    for name, m in prunable_layers(model):
        w = m.weight.numel()
        nz = int((m.weight != 0).sum())
        pos = positions.get(name, 1)
        rows.append({"name": name, "type": type(m).__name__, "shape": list(m.weight.shape), "weights": w, "nonzero": nz,
                     "remaining": nz / w if w else 0.0, "macs": w * pos, "macs_nonzero": nz * pos})
    return rows


def graph_layer_table(g) -> list[dict]:
    """`layer_table`'s rows for a prunec `Graph` (a .pt2 as the frontend reads it for `prunec build`): one row per
    fc / conv2d node, in execution order, batch norm already folded into its layer (folding keeps the zeros, so
    the counts are the model's). A weight that several nodes use (one Linear applied twice) is one row under its
    first use's name: its weights counted once, its MACs summed over the uses."""
    from .graph import WEIGHTED_OPS, shared_weights

    shared = shared_weights(g)
    rows: dict[str, dict] = {}
    for n in g.nodes:
        if n.op not in WEIGHTED_OPS or n.weight is None:
            continue
        w = n.weight
        pos = int(n.out_shape[2] * n.out_shape[3]) if n.op == "conv2d" and len(n.out_shape) == 4 else 1
        size, nz = int(w.size), int(np.count_nonzero(w))
        if n.name in shared:  # the same weight as an earlier layer's: its MACs go to that row
            rows[shared[n.name]]["macs"] += size * pos
            rows[shared[n.name]]["macs_nonzero"] += nz * pos
            continue
        rows[n.name] = {"name": n.name, "type": "Conv2d" if n.op == "conv2d" else "Linear", "shape": list(w.shape),
                        "weights": size, "nonzero": nz, "remaining": nz / size if size else 0.0, "macs": size * pos,
                        "macs_nonzero": nz * pos, "bias": int(n.bias.size) if n.bias is not None else 0}
    return list(rows.values())


def weight_histograms(model: nn.Module) -> dict[str, dict]:
    """Histogram of each layer's nonzero weights (stored in a pruned checkpoint as the 'before' picture).

    Non-finite weights (a diverged model) are left out of the counts rather than failing (`torch.histc`
    refuses a non-finite range); `nonfinite` says how many there were."""
    out = {}
    for name, m in prunable_layers(model):
        w = m.weight.detach().flatten().float()
        finite = torch.isfinite(w)
        bad = int((~finite).sum())
        w = w[finite & (w != 0)]
        lim = float(w.abs().max()) if w.numel() else 1.0
        counts = torch.histc(w, bins=HIST_BINS, min=-lim, max=lim) if w.numel() else torch.zeros(HIST_BINS)
        out[name] = {"min": -lim, "max": lim, "counts": [int(c) for c in counts]}
        if bad:
            out[name]["nonfinite"] = bad
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_weights(before: dict | None, after: dict, path: Path, after_title: str = "after pruning + retraining") -> None:
    plt = _plt()
    names = list(after)
    fig, axes = plt.subplots(len(names), 2 if before else 1, figsize=(9 if before else 5, 2.2 * len(names)), dpi=100, squeeze=False)
    for i, name in enumerate(names):
        cols = [("before pruning", before.get(name) if before else None), (after_title, after[name])] if before \
            else [(after_title, after[name])]
        for j, (title, h) in enumerate(cols):
            ax = axes[i][j]
            if h is None:
                ax.axis("off")
                continue
            n = len(h["counts"])
            width = (h["max"] - h["min"]) / n
            xs = [h["min"] + (k + 0.5) * width for k in range(n)]
            ax.bar(xs, h["counts"], width=width, color="tab:blue" if j == 0 and before else "tab:green")
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


MASK_IMAGE_MAX = 512  # pixels per side of a mask image; each panel is 400 px wide, more would not show


def mask_image(weight: torch.Tensor, max_side: int = MASK_IMAGE_MAX):
    """The kept/pruned picture of an fc weight as a float array of at most `max_side` per side: a larger
    matrix is shown by block averages (gray = the fraction kept in that block), so AlexNet's and VGG-16's
    fc layers (38M / 103M weights) do not cost matplotlib gigabytes and tens of seconds."""
    import torch.nn.functional as F

    kept = weight.detach() != 0
    h, w = kept.shape
    if h <= max_side and w <= max_side:
        return kept.float().numpy()
    out_shape = (min(h, max_side), min(w, max_side))
    return F.adaptive_avg_pool2d(kept.float()[None, None], out_shape)[0, 0].numpy()


def mask_title(name: str, weight: torch.Tensor, dense_size: int | None = None) -> str:
    """A masks.png panel title. A layer that dead-neuron removal shrank (`dense_size`, its weight count before
    pruning, larger than the matrix shown) names both denominators: the nonzero fraction of the matrix shown and
    the "% kept" of the layer before pruning, which `prunec info` and remaining.png give."""
    shape = tuple(weight.shape)
    nz, size = int((weight.detach() != 0).sum()), int(weight.numel())
    dense = int(dense_size or size)
    if dense == size:
        return f"{name} mask {shape}: {100 * nz / max(1, size):.1f}% kept"
    return (f"{name} mask {shape}: {100 * nz / max(1, size):.1f}% of the shown matrix kept\n"
            f"of its {dense:,} weights before pruning: {100 * nz / max(1, dense):.1f}% kept")


def plot_masks(model: nn.Module, path: Path, dense_sizes: dict[str, int] | None = None) -> bool:
    """The kept/pruned picture of each fc layer, titled by `mask_title`: the "% kept" counts against `dense_sizes`
    (a run's schedule["weights0"]) where given, as `prunec info` and remaining.png do (a layer shrunk by
    dead-neuron removal keeps nonzero/dense of its weights), and such a layer's title also gives the nonzero
    fraction of the (smaller) matrix shown."""
    plt = _plt()
    fcs = [(n, m) for n, m in prunable_layers(model) if isinstance(m, nn.Linear)]
    if not fcs:
        return False
    fig, axes = plt.subplots(1, len(fcs), figsize=(4 * len(fcs), 4), dpi=100, squeeze=False)
    for ax, (name, m) in zip(axes[0], fcs):
        shape = tuple(m.weight.shape)
        # vmin/vmax fixed: a layer with every weight kept is white, not an autoscaled black; extent keeps the
        # axes in input/output indices when the image is block-averaged
        ax.imshow(mask_image(m.weight), cmap="gray", interpolation="nearest", aspect="auto", vmin=0.0, vmax=1.0,
                  extent=(-0.5, shape[1] - 0.5, shape[0] - 0.5, -0.5))
        ax.set_title(mask_title(name, m.weight, (dense_sizes or {}).get(name)), fontsize=9)
        ax.set_xlabel("input")
        ax.set_ylabel("output")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def plot_remaining(rows: list[dict], model_name: str, path: Path) -> None:
    plt = _plt()
    paper = PAPER_REMAINING.get(model_name, {})
    names = [r["name"] for r in rows]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(names) + 2), 3.6), dpi=100)
    ax.bar([x - 0.2 for x in xs], [100 * r["remaining"] for r in rows], width=0.4, label="prunec")
    ax.bar([x + 0.2 for x in xs], [100 * paper.get(n, float("nan")) for n in names], width=0.4, label="Han et al. 2015")
    ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("weights remaining (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_schedule(history: list[dict], baseline: float | None, path: Path,
                  final_compression: float | None = None) -> bool:
    """Accuracy (after pruning, after retraining) and compression per step. A step undone by
    --max-accuracy-drop is drawn apart (crosses, not joined): the saved model does not have it.
    `final_compression`: the saved model's, when dead-neuron removal at the end of the run raised it above the last
    step's (a removed neuron takes its nonzero outgoing weights with it); drawn as its own point at the last step."""
    if not history:
        return False
    plt = _plt()
    kept = [h for h in history if not h.get("undone")]
    undone = [h for h in history if h.get("undone")]
    steps = [h["step"] for h in kept]

    def pct(hs, key):
        return [100 * h[key] if h.get(key) is not None else float("nan") for h in hs]

    # constrained layout: it keeps the legend, outside the axes below them, clear of the axis labels
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=100, layout="constrained")
    ax.plot(steps, pct(kept, "accuracy_after_prune"), "o--", label="after pruning")
    ax.plot(steps, pct(kept, "test_accuracy"), "o-", label="after retraining")
    if undone:
        ax.plot([h["step"] for h in undone], pct(undone, "test_accuracy"), "x", color="black", ms=8,
                label="undone (accuracy drop)")
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", ls=":", label="dense baseline")
    ax.set_xlabel("prune step")
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers (no 1.25, 1.5 ticks)
    ax.set_ylabel("test accuracy (%)")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["compression"] for h in kept], "s-", color="tab:red", alpha=0.5, label="compression (right axis)")
    if final_compression is not None and kept and final_compression > kept[-1]["compression"] * (1 + 1e-6):
        ax2.plot([steps[-1]], [final_compression], "*", color="tab:red", ms=12,
                 label=f"after dead-neuron removal: {final_compression:.2f}x")
    ax2.set_ylabel("compression (x)")
    # one legend for both axes' series, below the plot: inside the axes it covered data points
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    fig.legend(handles + h2, labels + l2, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def write_report(ckpt, out_dir: Path) -> list[Path]:
    """All figures of a checkpoint into `out_dir`: drawn into a scratch folder beside it first, then moved in, so that
    a failure leaves neither `out_dir` (if it did not exist) nor any figure of this run behind."""
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    parent = out_dir.parent
    if not parent.is_dir():
        from .errors import PrunecError

        raise PrunecError(f"--out {out_dir}: its parent folder {parent} does not exist; create it first")
    names = []
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=parent))
    try:
        def emit(name, fn, *args):
            fn(*args, scratch / name)
            names.append(name)

        _draw(ckpt, emit)
        out_dir.mkdir(exist_ok=True)
        for name in names:
            os.replace(scratch / name, out_dir / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [out_dir / n for n in names]


def _draw(ckpt, emit) -> None:
    """Every figure of `ckpt`, each through emit(file name, draw function, *its arguments but the path)."""
    rows = layer_table(ckpt.model, ckpt.input_shape)
    # Remaining % against the dense layer sizes, as `prunec info` and the paper count it: after dead-neuron
    # removal the layers are smaller than they were, and nonzero/current size would overstate what is left.
    weights0 = (ckpt.schedule or {}).get("weights0") or {}
    for r in rows:
        w0 = int(weights0.get(r["name"], r["weights"]))
        r["remaining"] = r["nonzero"] / w0 if w0 else 0.0
    after_title = "dense (not pruned)" if getattr(ckpt, "kind", None) == "dense" else "after pruning + retraining"
    emit("weights.png", lambda p: plot_weights(ckpt.meta.get("weight_hist_before"), weight_histograms(ckpt.model), p,
                                               after_title))
    if any(isinstance(m, nn.Linear) for _, m in prunable_layers(ckpt.model)):
        emit("masks.png", lambda p: plot_masks(ckpt.model, p, weights0))
    emit("remaining.png", plot_remaining, rows, ckpt.model_name)
    history = (ckpt.schedule or {}).get("history", [])
    if history:  # a dense checkpoint has no schedule
        # the history's last compression is the one before dead-neuron removal; the saved model's can be higher
        dead = ckpt.schedule.get("dead_removed")
        final = compression(ckpt.model, dense_sizes=weights0) if isinstance(dead, dict) and any(dead.values()) else None
        emit("schedule.png", lambda p: plot_schedule(history, ckpt.metrics.get("baseline_test_accuracy"), p, final))
