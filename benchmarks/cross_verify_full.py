#!/usr/bin/env python3
"""Full cross-target verification: pruned LeNet-300-100 and LeNet-5 (Fashion-MNIST) built for every target
and compared with PyTorch on the test images: all 10,000 on host, x86_64-avx2, aarch64-neon and armv7a-neon,
the first --mcu-images (default 1,000) on the Cortex-M boards. Prints top-1 agreement, max errors, accuracy and
wall time per run, and the bare-metal section sizes recorded in each manifest.

Models: trained and pruned through the CLI (short schedule: --epochs, one-shot pruning to the paper's
per-layer densities, one retraining epoch) unless --models-dir holds lenet300.pt2 / lenet5.pt2.

    .venv/bin/python benchmarks/cross_verify_full.py [--out build/cross] [--models-dir DIR] [--mcu-images 1000]
        [--index-bits 1-16]

--index-bits is passed to every `prunec build` (e.g. 1-16: every layer at its byte-optimal width, the odd widths
through each target's generic decoders); the weight bytes of each build are printed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PRUNEC = [sys.executable, "-m", "prunec.cli"]
LINUX = ["host", "x86_64-avx2", "aarch64-neon", "armv7a-neon"]
MCU = ["cortex-m4", "cortex-m7", "cortex-m55"]
# fraction pruned per layer: Han et al. 2015, Tables 2 and 3 (LeNet-300-100 92/91/74 %, LeNet-5 34/88/92/81 %)
SPARSITY = {"lenet300": "fc1=0.92,fc2=0.91,fc3=0.74", "lenet5": "conv1=0.34,conv2=0.88,fc1=0.92,fc2=0.81"}


def sh(args: list[str]) -> str:
    r = subprocess.run(PRUNEC + args, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        sys.exit(f"prunec {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def make_model(name: str, out: Path, epochs: int) -> Path:
    base, pruned, pt2 = out / f"{name}-base.pt", out / f"{name}-pruned.pt", out / f"{name}.pt2"
    if not pt2.exists():
        sh(["train", "--model", name, "--data", "fashion-mnist", "--epochs", str(epochs), "--out", str(base), "--quiet"])
        sh(["prune", str(base), "--sparsity", SPARSITY[name], "--schedule", "oneshot", "--steps", "1",
            "--retrain-epochs", "1", "--final-epochs", "0", "--out", str(pruned)])
        sh(["export", str(pruned), "--out", str(pt2)])
    return pt2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="build/cross")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--mcu-images", type=int, default=1000)
    ap.add_argument("--targets", default=",".join(LINUX + MCU))
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--index-bits", default=None, metavar="B[,B...]", help="passed to prunec build")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in a.models.split(","):
        pt2 = Path(a.models_dir) / f"{model}.pt2" if a.models_dir else make_model(model, out, a.epochs)
        for target in a.targets.split(","):
            bdir = out / f"{target}-{model}"
            sh(["build", str(pt2), "--target", target, "--out", str(bdir), "--name", model,
                *(["--index-bits", a.index_bits] if a.index_bits else [])])
            n = a.mcu_images if target in MCU else 10000
            t0 = time.perf_counter()
            rep = json.loads(sh(["verify", str(bdir), "--data", "fashion-mnist", "--limit", str(n), "--json"]))
            dt = time.perf_counter() - t0
            m = json.loads((bdir / "manifest.json").read_text())
            row = {"model": model, "target": target, "kernels": m["kernels"], "seconds": round(dt, 1),
                   "weights_bytes": m["totals"]["weights_bytes"],
                   "index_bits": {l["name"]: l["index_bits"] for l in m["layers"] if l.get("format") == "rcsr"}, **rep}
            if "size" in m:
                row["size"] = m["size"]["library"]
            rows.append(row)
            print(f"{model:9s} {target:13s} n={rep['n']:6d} top-1 agreement {rep['top1_agreement']:.4%} "
                  f"max abs err {rep['max_abs_err']:.2e} acc C {rep.get('accuracy_c') or 0:.4f} "
                  f"acc torch {rep.get('accuracy_torch') or 0:.4f} {'PASS' if rep['ok'] else 'FAIL'} {dt:6.1f} s "
                  f"weights {row['weights_bytes']:,} B, b {'/'.join(map(str, row['index_bits'].values()))}"
                  + (f"  lib text {row['size']['text']} rodata {row['size']['rodata']} data {row['size']['data']} "
                     f"bss {row['size']['bss']}" if "size" in row else ""), flush=True)
    (out / "cross_verify_full.json").write_text(json.dumps(rows, indent=2))
    bad = [r for r in rows if not r["ok"]]
    print(f"cross_verify_full: {len(rows) - len(bad)}/{len(rows)} runs pass; results in {out / 'cross_verify_full.json'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
