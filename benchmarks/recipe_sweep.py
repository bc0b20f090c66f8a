"""Recipe sweep: many `prunec prune` runs (the CLI itself, one subprocess each, so that what is measured is
what a user runs) over the dense checkpoints of several seeds, in parallel CPU and GPU slots, with a deadline.
Not a test: the tool behind docs/RESULTS.md's round 6.

Each grid entry is a model, the slot kind its runs take ("cpu": one intra-op thread each; "gpu": `--device
cuda`, several processes sharing the GPU) and named configs, each a string of `prunec prune` options added to
the default recipe ("" = the default itself, the control every other config is paired with). Optional
"train": seeds whose dense model is first trained here (`prunec train`, default recipe, plus "train_args" if
given) when no --dense folder has it; "est_s" / "train_est_s": a first guess of one run's seconds (then the
mean of the finished ones), so that no run starts that would end past the deadline. Runs go config-major within each seed round (round r: every config on the r-th seed), so a run cut
short by the deadline leaves every config with the same seeds.

Each finished run appends one JSON line to OUT/results.jsonl as soon as it ends (model, config, seed,
dense and pruned test accuracy, pruned − dense in pp, compression, wall seconds, slot); OUT/summary.txt
then has, per model and config, mean ± std of pruned − dense over its seeds and the paired difference to the
control on the seeds both finished.

    python benchmarks/recipe_sweep.py --grid benchmarks/sweep_grid_r6a.json --dense DIR [--dense DIR ...] \\
        --data-dir FASHION_MNIST_DIR --out OUT --cpu-slots 9 --gpu-slots 6 --deadline 480
    python benchmarks/recipe_sweep.py --summary OUT/results.jsonl      # the summary again, from the lines
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import int_at_least

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"([\d.]+)x fewer weights \((\d+)/(\d+)\), test accuracy ([\d.]+) \(dense ([\d.]+)")
TRAINED = re.compile(r"test accuracy ([\d.]+) after")


def dense_paths(dirs: list[str]) -> dict[tuple[str, int], Path]:
    found = {}
    for d in dirs:
        for p in sorted(Path(d).glob("*_s*_dense.pt")):
            m = re.fullmatch(r"(\w+?)_s(\d+)_dense\.pt", p.name)
            if m:
                found.setdefault((m.group(1), int(m.group(2))), p)
    return found


def summarise(rows: list[dict]) -> str:
    out = []
    for model in sorted({r["model"] for r in rows}):
        rs = [r for r in rows if r["model"] == model and r.get("delta_pp") is not None]
        by = {}
        for r in rs:
            by.setdefault(r["config"], {})[r["seed"]] = r
        control = by.get("default", {})
        out.append(f"## {model}: pruned − dense (pp), per config over its seeds; paired: config − default on shared seeds")
        out.append(f"{'config':<16} {'n':>3} {'mean':>7} {'std':>6} {'compr':>6} {'paired':>7} {'±sem':>6}  {'s':>5}  args")
        for cfg in sorted(by, key=lambda c: (c != "default", -statistics.fmean(r["delta_pp"] for r in by[c].values()))):
            d = [r["delta_pp"] for r in by[cfg].values()]
            comp = statistics.fmean(r["compression"] for r in by[cfg].values())
            secs = statistics.fmean(r["seconds"] for r in by[cfg].values())
            shared = sorted(set(by[cfg]) & set(control))
            pd = [by[cfg][s]["delta_pp"] - control[s]["delta_pp"] for s in shared]
            paired = f"{statistics.fmean(pd):+7.3f} {statistics.stdev(pd) / len(pd) ** 0.5 if len(pd) > 1 else 0:6.3f}" \
                if pd and cfg != "default" else f"{'':7} {'':6}"
            std = statistics.stdev(d) if len(d) > 1 else 0.0
            args = next(iter(by[cfg].values())).get("args", "")
            out.append(f"{cfg:<16} {len(d):>3} {statistics.fmean(d):+7.3f} {std:6.3f} {comp:6.2f} {paired}  {secs:5.0f}  {args}")
        seeds = sorted({r["seed"] for r in rs})
        out.append("per seed: " + "; ".join(f"{cfg} " + " ".join(f"s{s}:{by[cfg][s]['delta_pp']:+.2f}" for s in seeds if s in by[cfg])
                                            for cfg in sorted(by)))
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid")
    ap.add_argument("--dense", action="append", default=[], help="folder of MODEL_sSEED_dense.pt checkpoints")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", help="folder of results.jsonl, summary.txt and log.txt")
    ap.add_argument("--work", help="folder of the checkpoints the runs write (default: OUT)")
    ap.add_argument("--cpu-slots", type=int_at_least(0), default=1)
    ap.add_argument("--gpu-slots", type=int_at_least(0), default=0)
    ap.add_argument("--deadline", type=float, default=3600, help="seconds: start no run expected to end later")
    ap.add_argument("--seeds", default=None, help="only these seeds (comma list)")
    ap.add_argument("--summary", help="print the summary of a results.jsonl and exit")
    a = ap.parse_args(argv)
    if a.summary:
        if not Path(a.summary).is_file():
            ap.error(f"--summary {a.summary}: no such file (a results.jsonl of an earlier sweep)")
        print(summarise([json.loads(l) for l in open(a.summary) if l.strip()]))
        return 0
    if not a.grid or not a.out:
        ap.error("give --grid GRID.json and --out OUT (or --summary OUT/results.jsonl)")
    try:
        grid = json.loads(Path(a.grid).read_text())
    except (OSError, ValueError) as e:
        ap.error(f"--grid {a.grid}: {e}")
    if not isinstance(grid, dict) or not all(isinstance(g, dict) and isinstance(g.get("configs"), dict)
                                             for g in grid.values()):
        ap.error(f"--grid {a.grid}: expected {{MODEL: {{\"configs\": {{NAME: OPTIONS}}, ...}}, ...}}")
    slot_count = {"cpu": a.cpu_slots, "gpu": a.gpu_slots}
    for model, g in grid.items():
        kind = g.get("slot", "cpu")
        if not slot_count.get(kind):
            ap.error(f"--grid {a.grid}: {model}'s runs take {kind!r} slots and --{kind}-slots is "
                     f"{slot_count.get(kind, 0)} (they would never start)")
    for d in a.dense:
        if not Path(d).is_dir():
            ap.error(f"--dense {d}: not a folder")
    if a.seeds:
        try:
            {int(s) for s in a.seeds.split(",")}
        except ValueError:
            ap.error(f"--seeds {a.seeds!r}: give a comma list of whole numbers, e.g. 0,1,2")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work or a.out)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    log = open(out / "log.txt", "a")
    dense = dense_paths(a.dense)
    only = {int(s) for s in a.seeds.split(",")} if a.seeds else None
    env = {**os.environ, "PRUNEC_THREADS": "1", "PYTHONPATH": str(ROOT / "toolchain") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1"}
    data = ["--data-dir", a.data_dir] if a.data_dir else []

    jobs = []  # dicts: kind, model, seed, slot, cmd, config, args, needs
    for model, g in grid.items():
        slot = g.get("slot", "cpu")
        dev = ["--device", "cuda" if slot == "gpu" else "cpu"]
        have = sorted(s for (m, s) in dense if m == model and (only is None or s in only))
        train = [s for s in g.get("train", []) if (model, s) not in dense and (only is None or s in only)]
        for s in train:
            p = work / "dense" / f"{model}_s{s}_dense.pt"
            p.parent.mkdir(exist_ok=True)
            dense[(model, s)] = p
            jobs.append(dict(kind="train", model=model, seed=s, slot=slot, est=g.get("train_est_s", 60),
                             cmd=[sys.executable, "-m", "prunec", "train", "--model", model, "--data", "fashion-mnist",
                                  "--seed", str(s), "--out", str(p), "--quiet", *dev, *data, *g.get("train_args", "").split()]))
        for s in have + train:
            for cfg, args in g["configs"].items():
                p = work / "runs" / f"{model}_{cfg}_s{s}.pt"
                jobs.append(dict(kind="prune", model=model, seed=s, slot=slot, config=cfg, args=args, est=g.get("est_s", 60),
                                 needs=str(dense[(model, s)]) if s in train else None,
                                 cmd=[sys.executable, "-m", "prunec", "prune", str(dense[(model, s)]), "--out", str(p),
                                      "--quiet", *dev, *data, *args.split()]))
    slots = {"cpu": a.cpu_slots, "gpu": a.gpu_slots}
    durations: dict[tuple[str, str, str], list[float]] = {}
    running: list[tuple[subprocess.Popen, dict, float]] = []
    t0 = time.time()
    print(f"{len(jobs)} jobs, slots {slots}, deadline {a.deadline:.0f} s", flush=True)

    def est(j):
        d = durations.get((j["kind"], j["model"], j["slot"]))
        return statistics.fmean(d) if d else j["est"]

    while jobs or running:
        now = time.time() - t0
        for p, j, start in list(running):  # reap
            if p.poll() is None:
                if now > a.deadline + 0.25 * est(j):
                    p.kill()
                    log.write(f"killed at the deadline: {j['cmd']}\n")
                continue
            running.remove((p, j, start))
            text = p.stdout.read()
            secs = time.time() - start
            durations.setdefault((j["kind"], j["model"], j["slot"]), []).append(secs)
            if p.returncode != 0:
                log.write(f"rc {p.returncode}: {' '.join(j['cmd'])}\n{text[-3000:]}\n")
                log.flush()
                print(f"[{now:5.0f}s] FAILED {j['kind']} {j['model']} s{j['seed']} {j.get('config', '')} rc {p.returncode}", flush=True)
                if j["kind"] == "train":  # its prune runs cannot start
                    jobs[:] = [k for k in jobs if k.get("needs") != str(dense[(j["model"], j["seed"])])]
                continue
            if j["kind"] == "train":
                m = TRAINED.search(text)
                print(f"[{now:5.0f}s] trained {j['model']} s{j['seed']} ({secs:.0f} s): {m.group(1) if m else '?'}", flush=True)
                continue
            m = LINE.search(text)
            row = dict(model=j["model"], config=j["config"], args=j["args"], seed=j["seed"], slot=j["slot"], seconds=round(secs, 1))
            if m:
                row.update(compression=float(m.group(1)), nonzero=int(m.group(2)), total=int(m.group(3)),
                           pruned=float(m.group(4)), dense=float(m.group(5)),
                           delta_pp=round(100 * (float(m.group(4)) - float(m.group(5))), 2))
            with open(results, "a") as f:
                f.write(json.dumps(row) + "\n")
            Path(j["cmd"][j["cmd"].index("--out") + 1]).unlink(missing_ok=True)
            print(f"[{now:5.0f}s] {j['model']} {j['config']} s{j['seed']}: {row.get('delta_pp')} pp ({secs:.0f} s)", flush=True)
        for kind in slots:  # start what fits
            busy = sum(1 for _, j, _ in running if j["slot"] == kind)
            for j in list(jobs):
                if busy >= slots[kind]:
                    break
                # a dense checkpoint appears only when its training has finished (checkpoints are written atomically)
                if j["slot"] != kind or (j.get("needs") and not Path(j["needs"]).exists()):
                    continue
                jobs.remove(j)
                if now + est(j) > a.deadline:
                    continue  # would not finish in time
                p = subprocess.Popen(j["cmd"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
                running.append((p, j, time.time()))
                busy += 1
        if not running and jobs and all(j.get("needs") and not Path(j["needs"]).exists() for j in jobs):
            break  # only runs whose dense model never came
        time.sleep(0.5)
    rows = [json.loads(l) for l in open(results) if l.strip()] if results.exists() else []
    text = summarise(rows)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    print(f"done in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
