"""Per-layer tables (the paper's Tables 2–3) and figures of a pruned checkpoint (matplotlib, Agg):
  weights.png    weight histograms before and after pruning + retraining (the paper's Figure 7)
  masks.png      the mask of each fc layer, white = kept (Figure 4)
  remaining.png  per-layer remaining %, ours beside the paper's
  schedule.png   compression and test accuracy over the prune steps

FLOP % counts multiply-accumulates with a nonzero weight over all of them; activation sparsity (which the
paper's FLOP column also counts) is not included.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

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
            positions[name] = out.shape[2] * out.shape[3] if out.dim() == 4 else 1
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


def weight_histograms(model: nn.Module) -> dict[str, dict]:
    """Histogram of each layer's nonzero weights (stored in a pruned checkpoint as the 'before' picture)."""
    out = {}
    for name, m in prunable_layers(model):
        w = m.weight.detach().flatten()
        w = w[w != 0]
        lim = float(w.abs().max()) if w.numel() else 1.0
        counts = torch.histc(w, bins=HIST_BINS, min=-lim, max=lim) if w.numel() else torch.zeros(HIST_BINS)
        out[name] = {"min": -lim, "max": lim, "counts": [int(c) for c in counts]}
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_weights(before: dict | None, after: dict, path: Path) -> None:
    plt = _plt()
    names = list(after)
    fig, axes = plt.subplots(len(names), 2 if before else 1, figsize=(9 if before else 5, 2.2 * len(names)), dpi=100, squeeze=False)
    for i, name in enumerate(names):
        cols = [("before pruning", before.get(name) if before else None), ("after pruning + retraining", after[name])] if before \
            else [("after pruning + retraining", after[name])]
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


def plot_masks(model: nn.Module, path: Path) -> bool:
    plt = _plt()
    fcs = [(n, m) for n, m in prunable_layers(model) if isinstance(m, nn.Linear)]
    if not fcs:
        return False
    fig, axes = plt.subplots(1, len(fcs), figsize=(4 * len(fcs), 4), dpi=100, squeeze=False)
    for ax, (name, m) in zip(axes[0], fcs):
        mask = (m.weight.detach() != 0).float().numpy()
        ax.imshow(mask, cmap="gray", interpolation="nearest", aspect="auto")
        ax.set_title(f"{name} mask {tuple(mask.shape)}: {100 * mask.mean():.1f}% kept", fontsize=9)
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


def plot_schedule(history: list[dict], baseline: float | None, path: Path) -> bool:
    if not history:
        return False
    plt = _plt()
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot(steps, [100 * h["accuracy_after_prune"] for h in history], "o--", label="after pruning")
    ax.plot(steps, [100 * h["test_accuracy"] for h in history], "o-", label="after retraining")
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", ls=":", label="dense baseline")
    ax.set_xlabel("prune step")
    ax.set_ylabel("test accuracy (%)")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["compression"] for h in history], "s-", color="tab:red", alpha=0.5, label="compression")
    ax2.set_ylabel("compression (x)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def write_report(ckpt, out_dir: Path) -> list[Path]:
    """All figures of a checkpoint into `out_dir` (each written atomically)."""
    from .atomic import atomic_file

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def emit(name, fn, *args):
        with atomic_file(out_dir / name) as tmp:
            fn(*args, tmp)
        written.append(out_dir / name)

    rows = layer_table(ckpt.model, ckpt.input_shape)
    emit("weights.png", plot_weights, ckpt.meta.get("weight_hist_before"), weight_histograms(ckpt.model))
    if any(isinstance(m, nn.Linear) for _, m in prunable_layers(ckpt.model)):
        emit("masks.png", plot_masks, ckpt.model)
    emit("remaining.png", plot_remaining, rows, ckpt.model_name)
    history = (ckpt.schedule or {}).get("history", [])
    if history:  # a dense checkpoint has no schedule
        emit("schedule.png", plot_schedule, history, ckpt.metrics.get("baseline_test_accuracy"))
    return written
