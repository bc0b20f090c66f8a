#!/usr/bin/env python3
"""Time and peak memory of `prunec build` and of compiling its output, for AlexNet and VGG-16 at the paper's
per-layer densities (random weights pruned at random positions to those densities).

Each step runs as its own process and is measured from outside (wall time, peak RSS of the process tree's
largest member, from getrusage of the waited children):
  export   the pruned model -> .pt2 (torch.export; not part of `prunec build`, shown for scale)
  build    `prunec build MODEL.pt2 --target T --out DIR` (T: --target, default host; weights as a .incbin blob: the
           "auto" choice)
  compile  `make -C DIR` (static library)
  build-c / compile-c  with --c-arrays: the same with the weights as C initialisers, for comparison

Target: build and compile each under 2 minutes and 4 GB.

    python benchmarks/build_scale.py [--models alexnet vgg16] [--target T] [--c-arrays] [--verify] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Fraction of weights kept per layer, conv1.. then fc (Han et al. 2015, Tables 4 and 5, as given in issue 3).
DENSITIES = {
    "alexnet": [0.84, 0.38, 0.35, 0.37, 0.37, 0.09, 0.09, 0.25],
    "vgg16": [0.58, 0.22, 0.34, 0.36, 0.53, 0.24, 0.42, 0.32, 0.27, 0.34, 0.35, 0.29, 0.36, 0.04, 0.04, 0.23],
}

_MEASURE = r"""
import resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(r.stderr[-3000:] if r.returncode else "")
print(f"{r.returncode} {dt:.3f} {rss}")
"""


def measure(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `cmd`, run in a fresh process so the peak is its own."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True)
    rc, dt, rss = r.stdout.split()
    if int(rc):
        sys.exit(f"failed ({rc}): {' '.join(cmd)}\n{r.stderr}")
    return float(dt), int(rss) / 1024.0


_EXPORT = r"""
import sys, torch
sys.path.insert(0, {tests!r})
from prunec import models
name, out, dens = sys.argv[1], sys.argv[2], [float(d) for d in sys.argv[3].split(",")]
torch.manual_seed(0)
m = models.create(name).eval()
layers = models.prunable_layers(m)
assert len(layers) == len(dens), (len(layers), len(dens))
with torch.no_grad():
    for (_, mod), d in zip(layers, dens):
        mod.weight.mul_((torch.rand(mod.weight.shape) < d).float())
ep = torch.export.export(m, (torch.zeros((1, *models.input_shape(name))),))
torch.export.save(ep, out)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["alexnet", "vgg16"], choices=list(DENSITIES))
    ap.add_argument("--target", default="host", help="the build's target (x86_64-avx2: its fc layouts, AVX-512 kernels)")
    ap.add_argument("--c-arrays", action="store_true", help="also build and compile with weights as C arrays")
    ap.add_argument("--verify", action="store_true", help="also `prunec verify --random 2` each build")
    ap.add_argument("--work", default=None, help="working directory (default: a temporary one, removed)")
    a = ap.parse_args()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="prunec-build-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    prunec = [sys.executable, "-m", "prunec.cli"]
    rows = []
    try:
        for name in a.models:
            pt2 = work / f"{name}.pt2"
            dens = ",".join(str(d) for d in DENSITIES[name])
            t, mb = measure([sys.executable, "-c", _EXPORT.format(tests=str(Path(__file__).parents[1] / "tests")),
                             name, str(pt2), dens])
            rows.append((name, "export (torch.export, not prunec)", t, mb, ""))
            storages = ["auto"] + (["c"] if a.c_arrays else [])
            for storage in storages:
                out = work / f"{name}_{storage}"
                t, mb = measure([*prunec, "build", str(pt2), "--target", a.target, "--out", str(out), "--name", name,
                                 "--weights", storage])
                m = json.loads((out / "manifest.json").read_text())
                tot = m["totals"]
                what = (f"{tot['nonzero'] / 1e6:.2f} M nonzeros, weights {tot['weights_bytes'] / 2**20:.1f} MiB "
                        f"(dense {tot['dense_weights_bytes'] / 2**20:.0f} MiB), storage {m['storage']}")
                fmts = sorted({l["format"] for l in m["layers"] if l["op"] == "fc"})
                rows.append((name, f"prunec build --weights {storage}", t, mb, f"{what}, fc {'/'.join(fmts)}"))
                t, mb = measure(["make", "-s", "-C", str(out), "-j2"])
                rows.append((name, f"make (compile, --weights {storage})", t, mb,
                             f"lib{name}.a {(out / f'lib{name}.a').stat().st_size / 2**20:.1f} MiB"))
                if a.verify and storage == "auto":
                    t, mb = measure([*prunec, "verify", str(out), "--random", "2"])
                    rows.append((name, "prunec verify --random 2", t, mb, "cffi compile + 2 inferences + PyTorch"))
                print(f"  ... {name} {storage} done", file=sys.stderr, flush=True)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'model':8s} {'step':38s} {'time s':>8s} {'peak MB':>9s}  notes")
    for name, step, t, mb, what in rows:
        flag = "" if (t < 120 and mb < 4096) or step.startswith("export") else "  OVER TARGET"
        print(f"{name:8s} {step:38s} {t:8.1f} {mb:9.0f}  {what}{flag}")


if __name__ == "__main__":
    main()
