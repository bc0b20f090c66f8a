#!/usr/bin/env python3
"""Kernel speed, side by side: sparse vs dense and ISA vs portable, for every registered kernel.

x86 (this machine): wall time, through benchmarks/bench_layers.py (every x86 kernel in the registry,
portable, avx2, avx512, on paper layers; pinned core, interleaved repetitions, ratios within one run).
Arm: instructions per inference under QEMU TCG with the project's counter plugin, through
benchmarks/bench_arm.py (aarch64-neon under qemu-aarch64, armv7a-neon under qemu-arm, Cortex-M boards under
qemu-system-arm; every fc kernel a target can use, sparse and dense). Instructions are not cycles.

    .venv/bin/python benchmarks/kernel_speed.py [--x86-layers lenet300.fc1,...] [--arm-targets ...] [--skip-x86|--skip-arm]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--x86-layers", default="", help="bench_layers.py --layers (default: all its layers)")
    ap.add_argument("--arm-targets", default="aarch64-neon,armv7a-neon,cortex-m4,cortex-m7,cortex-m55")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-x86", action="store_true")
    ap.add_argument("--skip-arm", action="store_true")
    a = ap.parse_args()
    rc = 0
    if not a.skip_x86:
        print("=== x86: time per call (bench_layers.py), batch 1", flush=True)
        cmd = [sys.executable, str(HERE / "bench_layers.py"), "--batch", "1", "--reps", str(a.reps)]
        if a.x86_layers:
            cmd += ["--layers", a.x86_layers]
        rc |= subprocess.run(cmd).returncode
    if not a.skip_arm:
        print("\n=== Arm: instructions per inference under QEMU (bench_arm.py)", flush=True)
        rc |= subprocess.run([sys.executable, str(HERE / "bench_arm.py"), "--targets", a.arm_targets]).returncode
    sys.exit(rc)


if __name__ == "__main__":
    main()
