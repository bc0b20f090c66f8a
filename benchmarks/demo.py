#!/usr/bin/env python3
"""`make demo`: prunec's main job end to end on Fashion-MNIST, through the public CLI.

train LeNet-300-100 → prune (the default recipe) → per-layer table → export .pt2 → build C for the host →
verify on the 10,000 test images through cffi → build for AArch64 NEON → verify under QEMU.
Each step's wall time is printed; the whole run takes a few minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

PRUNEC = [sys.executable, "-m", "prunec.cli"]


def step(title: str, args: list[str]) -> float:
    print(f"\n=== {title}\n$ prunec {' '.join(args)}", flush=True)
    t = time.perf_counter()
    r = subprocess.run(PRUNEC + args)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"demo: step '{title}' failed (exit {r.returncode})")
    print(f"--- {title}: {dt:.1f} s", flush=True)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="build/demo", help="working directory (replaced)")
    ap.add_argument("--model", default="lenet300")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--skip-cross", action="store_true", help="skip the AArch64 build and QEMU verification")
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    base, pruned, pt2 = out / "base.pt", out / "pruned.pt", out / "model.pt2"
    t0 = time.perf_counter()
    step("train the dense baseline", ["train", "--model", a.model, "--data", "fashion-mnist", "--seed", a.seed, "--out", str(base)])
    step("prune: train → prune → retrain (the paper's method, default recipe)", ["prune", str(base), "--seed", a.seed, "--out", str(pruned)])
    step("the pruned model, per layer", ["info", str(pruned)])
    step("export as a torch.export program", ["export", str(pruned), "--out", str(pt2)])
    step("build C for the host", ["build", str(pt2), "--target", "host", "--out", str(out / "host"), "--name", a.model])
    step("verify the host build on all 10,000 test images", ["verify", str(out / "host"), "--data", "fashion-mnist"])
    if not a.skip_cross:
        step("build C for AArch64 NEON", ["build", str(pt2), "--target", "aarch64-neon", "--out", str(out / "aarch64"), "--name", a.model])
        step("verify under qemu-aarch64 on all 10,000 test images", ["verify", str(out / "aarch64"), "--data", "fashion-mnist"])
    print(f"\ndemo: done in {time.perf_counter() - t0:.0f} s; outputs in {out}/")


if __name__ == "__main__":
    main()
