#!/usr/bin/env python3
"""Whole networks on Arm: instructions per inference and weight bytes of a model built for each target with each fc
layout (`prunec build --fc-layout`), side by side. Each build is verified first (`prunec verify`: 8 random inputs
under QEMU against the PyTorch model); the count is that of benchmarks/bench_fuse.py (a program calls NAME_run N
times under QEMU with the project's counter plugin; count = (insns(N) - insns(0)) / N). Instructions are not cycles.

    .venv/bin/python benchmarks/bench_arm_models.py --model lenet300=PRUNED.pt [--model lenet5=...] \\
        [--targets aarch64-neon] [--layouts auto,rcsr] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "toolchain"))

import bench_arm  # noqa: E402
import bench_fuse  # noqa: E402
import harness  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=CKPT",
                    help="a pruned checkpoint or .pt2 (repeatable)")
    ap.add_argument("--targets", default="aarch64-neon")
    ap.add_argument("--layouts", default="auto,rcsr", help="--fc-layout values to build with")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    from prunec import targets as T
    from prunec.build import FC_LAYOUTS, build
    from prunec.verify import verify

    models = harness.key_paths(ap, "--model", ",".join(a.model))
    layouts = [s for s in a.layouts.split(",") if s]
    bad = [s for s in layouts if s not in FC_LAYOUTS]
    if bad:
        ap.error(f"--layouts: {', '.join(bad)} is not an fc layout ({', '.join(FC_LAYOUTS)})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="prunec-arm-models-") as tmp:
        tmp = Path(tmp)
        plugin = bench_arm.build_plugin(tmp)
        for tname in a.targets.split(","):
            t = T.get(tname)
            for name, ckpt in models.items():
                base = None
                for layout in layouts:
                    d = tmp / f"{name}-{tname}-{layout}"
                    man = build(ckpt, tname, d, name=name, fc_layout=layout).manifest
                    rep = verify(d, random=8)
                    assert rep.ok, f"{name} {tname} {layout}: verify failed\n{rep.text()}"
                    work = tmp / f"{d.name}-count"
                    work.mkdir()
                    n = bench_fuse.arm_counts(t, d, name, a.iters, work, plugin)[0]
                    base = base or n
                    fmts = {l["name"]: l["format"] for l in man["layers"] if l["format"]}
                    row = {"target": tname, "model": name, "fc_layout": layout, "insns_per_inference": n,
                           "weights_bytes": man["totals"]["weights_bytes"], "formats": fmts,
                           "vs_first_layout": n / base}
                    rows.append(row)
                    print(f"{tname:13s} {name:9s} --fc-layout {layout:5s} {n:12,.0f} instructions ({n / base:.3f}x)  "
                          f"weights {row['weights_bytes']:,} B  {fmts}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
