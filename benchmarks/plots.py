#!/usr/bin/env python3
"""PNG plots (matplotlib, Agg) from the JSON files the benchmarks write:

  sweep.json   (bench_layers.py --sweep)  -> docs/img/speedup_vs_density.png
  layers.json  (bench_layers.py)          -> docs/img/layer_times.png
  models.json  (bench_models.py)          -> docs/img/lenet_layers.png

    .venv/bin/python benchmarks/plots.py --in build/bench --out docs/img
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _best(r, group):
    return min(t for n, t in r["median_s"].items() if r["group"][n] == group)


def speedup_vs_density(sweep: list, out: Path) -> None:
    d = [100 * r["density"] for r in sweep]
    sp = [_best(r, "prunec-sparse") for r in sweep]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = [("prunec dense (best kernel)", [_best(r, "prunec-dense") for r in sweep]),
              ("PyTorch dense", [r["median_s"]["pytorch dense"] for r in sweep]),
              ("PyTorch CSR int32", [r["median_s"]["pytorch csr int32"] for r in sweep])]
    for label, ys in series:
        ax.plot(d, [y / s for y, s in zip(ys, sp)], marker="o", label=f"× {label}")
    ax.plot(d, [r["dense_bytes"] / r["sparse_bytes"] for r in sweep], "k:", label="byte ratio dense/sparse")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(d)
    ax.set_xticklabels([f"{v:g}" for v in d])
    ax.set_xlabel("density (% of weights kept)")
    ax.set_ylabel("speedup of prunec sparse (best kernel)")
    ax.set_title("4096x4096 fc, batch 1, one core: where sparse stops paying")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def layer_times(layers: list, out: Path) -> None:
    rs = [r for r in layers if r["batch"] == 1]
    names = [r["layer"] for r in rs]
    groups = [("prunec sparse (best)", lambda r: _best(r, "prunec-sparse")),
              ("prunec dense (best)", lambda r: _best(r, "prunec-dense")),
              ("PyTorch dense", lambda r: r["median_s"].get("pytorch dense", r["median_s"].get("pytorch dense (oneDNN)"))),
              ("machine bound (sparse)", lambda r: r["sparse_bound_s"])]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    w = 0.2
    for i, (label, f) in enumerate(groups):
        ax.bar([k + (i - 1.5) * w for k in range(len(rs))], [f(r) * 1e6 for r in rs], w, label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rs)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("µs per call (median)")
    ax.set_title("Paper layers at paper densities, batch 1, one core")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def model_layers(models: list, out: Path) -> None:
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, m in zip(axes[0], models):
        ls = m["layers"]
        ax.bar([l["name"] for l in ls], [l["time_s"] * 1e6 for l in ls], color="tab:blue")
        ax.set_title(f"{m['model']}: {m['best']}", fontsize=9)
        ax.set_ylabel("µs per inference")
        ax.tick_params(axis="x", rotation=45)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--in", dest="inp", default=str(root / "build" / "bench"),
                    help="run_all.py's --out (default: build/bench of this checkout)")
    ap.add_argument("--out", default=str(root / "docs" / "img"), help="default: docs/img of this checkout")
    a = ap.parse_args(argv)
    src, out = Path(a.inp), Path(a.out)
    if not src.is_dir():
        ap.error(f"--in {a.inp}: not a folder (the --out of run_all.py, e.g. build/bench)")
    names = ("sweep.json", "layers.json", "models.json")
    if not any((src / n).is_file() for n in names):
        ap.error(f"--in {a.inp}: none of {', '.join(names)} there; nothing to plot")
    out.mkdir(parents=True, exist_ok=True)
    if (src / "sweep.json").exists():
        speedup_vs_density(json.loads((src / "sweep.json").read_text())["sweep"], out / "speedup_vs_density.png")
    if (src / "layers.json").exists():
        layer_times(json.loads((src / "layers.json").read_text())["layers"], out / "layer_times.png")
    if (src / "models.json").exists():
        model_layers(json.loads((src / "models.json").read_text())["models"], out / "lenet_layers.png")
    print("plots in", out)


if __name__ == "__main__":
    main()
