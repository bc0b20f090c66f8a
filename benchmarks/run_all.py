#!/usr/bin/env python3
"""`make bench`: every benchmark, results as JSON in build/bench/ of this checkout (or --out, a relative path
taken from the current directory), plots in docs/img/.

    .venv/bin/python benchmarks/run_all.py [--out OUT] [--only layers,sweep,models,size,fuse,arm,plots,slow]
        [--pruned lenet300=P.pt,lenet5=Q.pt --dense lenet300=B.pt,lenet5=C.pt]

Without --pruned, LeNet-300-100 and LeNet-5 are trained and pruned first (`prunec train` + `prunec prune` to
the paper's densities, a few epochs) into OUT/models/. `arm` counts instructions under QEMU: the kernels per
layer (bench_arm.py) and the whole pruned networks per fc layout (bench_arm_models.py: AArch64 windowed / rcsr,
Cortex-M4 and Cortex-M55 rcsr / acsr). `slow` runs the
tests marked slow (`pytest -m slow`: longer sweeps and full-size builds kept out of `make test`). Each step runs pinned to one core and, when run as
root, at nice -15 so that other work on a shared machine preempts the timing loops less often.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
PAPER_SPARSITY = {"lenet300": "fc1=0.92,fc2=0.91,fc3=0.74", "lenet5": "conv1=0.34,conv2=0.88,fc1=0.92,fc2=0.81"}
EPOCHS = {"lenet300": 5, "lenet5": 2}
STEPS = ("layers", "sweep", "models", "size", "fuse", "arm", "plots", "slow")


def run(cmd: list[str], log: Path | None = None) -> None:
    prefix = ["nice", "-n", "-15"] if os.geteuid() == 0 else []
    print("$", " ".join(str(c) for c in cmd), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as f:
        p = subprocess.Popen(prefix + [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=ROOT)
        for line in p.stdout:
            sys.stdout.write(line)
            f.write(line)
        if p.wait() != 0:
            sys.exit(f"run_all: {cmd[1] if len(cmd) > 1 else cmd[0]} failed")


def models(out: Path) -> tuple[str, str]:
    d = out / "models"
    d.mkdir(parents=True, exist_ok=True)
    prunec = [PY, "-m", "prunec.cli"]
    pruned, dense = [], []
    for key in ("lenet300", "lenet5"):
        base, pr = d / f"{key}_base.pt", d / f"{key}_pruned.pt"
        if not base.exists():
            run(prunec + ["train", "--model", key, "--out", base, "--epochs", str(EPOCHS[key]), "--quiet"])
        if not pr.exists():
            run(prunec + ["prune", base, "--out", pr, "--sparsity", PAPER_SPARSITY[key], "--steps", "3",
                          "--retrain-epochs", "1", "--final-epochs", "2", "--keep-dead", "--quiet"])
        pruned.append(f"{key}={pr}")
        dense.append(f"{key}={base}")
    return ",".join(pruned), ",".join(dense)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "bench"),
                    help="results folder (default: build/bench of this checkout; a relative path is taken from the "
                         "current directory)")
    ap.add_argument("--only", default=",".join(STEPS), help="comma-separated steps, of: " + ", ".join(STEPS))
    ap.add_argument("--pruned", default="")
    ap.add_argument("--dense", default="")
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args(argv)
    steps = [s for s in a.only.split(",") if s]
    bad = [s for s in steps if s not in STEPS]
    if bad or not steps:
        ap.error(f"--only {a.only!r}: {'unknown step ' + ', '.join(bad) if bad else 'no step given'}; "
                 f"choose from: {', '.join(STEPS)}")
    if a.reps < 1:
        ap.error(f"--reps {a.reps}: give at least 1")
    if a.pruned and "fuse" in steps and not any(p.startswith("lenet5=") for p in a.pruned.split(",")):
        ap.error("--pruned: the fuse step needs lenet5=CHECKPOINT among them")
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    pruned, dense = a.pruned, a.dense
    if not pruned and ({"models", "size", "fuse", "arm"} & set(steps)):
        pruned, dense = models(out)
    if "layers" in steps:
        run([PY, HERE / "bench_layers.py", "--reps", a.reps, "--json", out / "layers.json"], out / "layers.txt")
    if "sweep" in steps:
        run([PY, HERE / "bench_layers.py", "--sweep", "--reps", a.reps, "--json", out / "sweep.json"], out / "sweep.txt")
    if "models" in steps:
        run([PY, HERE / "bench_models.py", "--pruned", pruned, "--dense", dense, "--reps", "9", "--target-ms", "10",
             "--json", out / "models.json"], out / "models.txt")
    if "size" in steps:
        run([PY, HERE / "bench_size.py", "--pruned", pruned, "--json", out / "size.json"], out / "size.txt")
    if "fuse" in steps:
        l5 = next(p.split("=", 1)[1] for p in pruned.split(",") if p.startswith("lenet5="))
        run([PY, HERE / "bench_fuse.py", "--model", f"lenet5={l5}", "--json", out / "fuse.json"], out / "fuse.txt")
    if "arm" in steps:
        run([PY, HERE / "bench_arm.py", "--json", out / "arm.json"], out / "arm.txt")
        # whole pruned networks on AArch64, each fc layout the build offers there (verified under QEMU, then counted)
        run([PY, HERE / "bench_arm_models.py", *[a for m in pruned.split(",") if m for a in ("--model", m)],
             "--targets", "aarch64-neon", "--layouts", "auto,rcsr", "--json", out / "arm_models.json"],
            out / "arm_models.txt")
        # and on Cortex-M4 / Cortex-M55 with the default (relative-indexed) and absolute-indexed fc layers
        run([PY, HERE / "bench_arm_models.py", *[a for m in pruned.split(",") if m for a in ("--model", m)],
             "--targets", "cortex-m4,cortex-m55", "--layouts", "auto,acsr", "--json", out / "arm_models_m.json"],
            out / "arm_models_m.txt")
    if "plots" in steps:
        run([PY, HERE / "plots.py", "--in", out, "--out", ROOT / "docs" / "img"])
    if "slow" in steps:
        run([PY, "-m", "pytest", "-q", "-m", "slow", ROOT / "tests"], out / "slow_tests.txt")


if __name__ == "__main__":
    main()
