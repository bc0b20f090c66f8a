"""Per-layer sensitivity (the paper's Figure 6): prune one layer alone by magnitude, no retraining, and
measure accuracy; repeat for a range of fractions. A layer whose accuracy holds up at high fractions can be
pruned hard; the proposal per layer is the largest fraction whose accuracy drop stays within `tolerance`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .data import Split
from .errors import PrunecError
from .models import prunable_layers, require_prunable
from .prune import sparsity_mask
from .train import evaluate

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)


@torch.no_grad()
def analyse(model: nn.Module, split: Split, fractions=FRACTIONS, layers: list[str] | None = None,
            dense_sizes: dict[str, int] | None = None) -> dict:
    """{"baseline": acc, "curves": {layer: [[fraction, accuracy], ...]}} — each layer pruned alone. A fraction
    counts against the layer's dense size where `dense_sizes` gives it (a layer dead-neuron removal shrank), as
    `prunec prune --sparsity` counts it, so that a proposed fraction means the same to both."""
    if layers is not None:
        require_prunable(model, layers, "sensitivity")
    base = evaluate(model, split)
    curves: dict[str, list[list[float]]] = {}
    for name, m in prunable_layers(model):
        if layers is not None and name not in layers:
            continue
        original = m.weight.detach().clone()
        pts = []
        try:
            for f in fractions:
                mask = sparsity_mask(original, torch.ones_like(original, dtype=torch.bool), f,
                                     (dense_sizes or {}).get(name))
                m.weight.copy_(original.masked_fill(~mask, 0.0))
                pts.append([float(f), evaluate(model, split)])
        finally:  # the next layer's probes (and the caller) see the weights as they were
            m.weight.copy_(original)
        curves[name] = pts
    return {"baseline": base, "curves": curves}


# Accuracies are ratios of counts (e.g. 0.9 - 0.895 = 0.0050000000000000044 in floating point): a drop equal
# to the tolerance must count as within it.
_EPS = 1e-9


def check_tolerance(tolerance: float) -> float:
    """`tolerance` if it is an accuracy drop (>= 0), else a PrunecError naming --tolerance."""
    if tolerance < 0:
        raise PrunecError(f"--tolerance {tolerance} is negative; give the accuracy drop allowed (≥ 0, e.g. 0.005)")
    if not tolerance <= 1:  # nan too: it would propose 0.99 for every layer
        raise PrunecError(f"--tolerance {tolerance} is not an accuracy drop in [0, 1]; give the drop allowed, e.g. 0.005")
    return tolerance


def propose(result: dict, tolerance: float = 0.005) -> dict[str, float]:
    """Per layer: the largest fraction pruned such that it and every smaller fraction probed keep the accuracy
    within `tolerance` of the baseline. A curve that falls out of tolerance and comes back at a larger
    fraction (noise on a small test set) does not make that larger fraction safe: the proposal stops at the
    first fraction out of tolerance."""
    check_tolerance(tolerance)
    out = {}
    for name, pts in result["curves"].items():
        best = 0.0
        for f, acc in sorted(pts, key=lambda p: p[0]):
            if result["baseline"] - acc > tolerance + _EPS:
                break
            best = float(f)
        out[name] = best
    return out


def plot(result: dict, path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, pts in result["curves"].items():
        ax.plot([100 * f for f, _ in pts], [100 * a for _, a in pts], marker="o", ms=3, label=name)
    ax.axhline(100 * result["baseline"], color="gray", lw=0.8, ls="--")
    ax.set_xlabel("parameters pruned away (%)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "pruning sensitivity, each layer alone, no retraining")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return Path(path)


def write(result: dict, proposal: dict, out_dir: Path, model_name: str) -> list[Path]:
    from .atomic import atomic_file

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    with atomic_file(out_dir / "sensitivity.json") as tmp:
        tmp.write_text(json.dumps({"model": model_name, **result, "proposed_sparsity": proposal}, indent=2))
    files.append(out_dir / "sensitivity.json")
    with atomic_file(out_dir / "sensitivity.png") as tmp:
        plot(result, tmp, f"{model_name}: accuracy vs fraction pruned (no retraining)")
    files.append(out_dir / "sensitivity.png")
    return files

