"""Dense vs pruned accuracy and compression with the DEFAULT recipes, through the real CLI.

For each seed: `prunec train --model M --data fashion-mnist --seed S` then `prunec prune BASE` (no options
unless --prune-args), timing both, then `prunec info --json`. Prints mean ± std over the seeds and writes
results.json in --out. Not a CI test: LeNet-300-100 takes a few minutes per seed, LeNet-5 ~half an hour.

    .venv/bin/python benchmarks/prune_results.py --model lenet300 --seeds 0,1,2 --out /tmp/prune_bench
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

PRUNEC = [sys.executable, "-m", "prunec.cli"]


def sh(args: list[str]) -> tuple[str, float]:
    t = time.time()
    r = subprocess.run(args, capture_output=True, text=True)
    dt = time.time() - t
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(args)}\n{r.stderr[-3000:]}")
    return r.stdout, dt


def mean_std(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lenet300")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="/tmp/prune_bench")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-args", default="", help="extra `prunec train` options")
    ap.add_argument("--prune-args", default="", help="extra `prunec prune` options (default: none = the default recipe)")
    ap.add_argument("--reuse-base", action="store_true", help="skip training when BASE exists")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ["--data", "fashion-mnist"] + (["--data-dir", a.data_dir] if a.data_dir else [])
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        base, pruned = out / f"{a.model}_s{seed}_dense.pt", out / f"{a.model}_s{seed}_pruned.pt"
        t_train = 0.0
        if not (a.reuse_base and base.exists()):
            _, t_train = sh(PRUNEC + ["train", "--model", a.model, *data, "--seed", str(seed), "--out", str(base), "--quiet",
                                      *shlex.split(a.train_args)])
        _, t_prune = sh(PRUNEC + ["prune", str(base), "--out", str(pruned), "--quiet", *data[2:], *shlex.split(a.prune_args)])
        info = json.loads(sh(PRUNEC + ["info", str(pruned), "--json"])[0])
        row = {"seed": seed, "dense": info["baseline_test_accuracy"], "pruned": info["test_accuracy"],
               "compression": info["compression"], "train_s": t_train, "prune_s": t_prune,
               "remaining": {x["name"]: x["remaining"] for x in info["layers"]}}
        rows.append(row)
        print(f"seed {seed}: dense {100 * row['dense']:.2f}%  pruned {100 * row['pruned']:.2f}%  "
              f"({100 * (row['pruned'] - row['dense']):+.2f} pp)  {row['compression']:.2f}x  "
              f"train {t_train:.0f} s + prune {t_prune:.0f} s", flush=True)
    dense = [100 * r["dense"] for r in rows]
    prn = [100 * r["pruned"] for r in rows]
    diff = [p - d for p, d in zip(prn, dense)]
    print(f"\n{a.model} on Fashion-MNIST, seeds {a.seeds}, prune args: {a.prune_args or '(default recipe)'}")
    print(f"dense   {mean_std(dense)} %")
    print(f"pruned  {mean_std(prn)} %   (pruned − dense: {mean_std(diff)} pp, worst {min(diff):+.2f} pp)")
    print(f"compression {mean_std([r['compression'] for r in rows])}x; "
          f"wall time train + prune {mean_std([r['train_s'] + r['prune_s'] for r in rows])} s per seed")
    (out / f"results_{a.model}.json").write_text(json.dumps({"model": a.model, "prune_args": a.prune_args, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
