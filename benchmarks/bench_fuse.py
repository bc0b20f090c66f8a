#!/usr/bin/env python3
"""Conv + pool fusion (prunec.fuse, `prunec build --fuse-pool`): what it saves in RAM and what it costs in work.

For each model and target, the model is built twice, fused and unfused, and the script reports the arena bytes of
both, the whole library's RAM where the target measures it (arena + data + bss), and the work per inference:
  - Arm targets (cortex-m4, cortex-m7, cortex-m55, aarch64-neon, armv7a-neon): instructions per inference of the
    whole model under QEMU with the project's counter plugin (benchmarks/qemu_plugin/insn_count.c): a program
    calls NAME_run N times; count = (insns(N) - insns(0)) / N, as benchmarks/bench_arm.py does for kernels;
  - host and x86_64-avx2: time per inference, both builds timed interleaved in one run (medians).
On x86_64-avx2 (AVX-512 build machine) the fused build runs each conv + max pool pair as one
prunec_f32_conv2d_rcsr_maxpool2d__avx512x4 call (input packed once, each channel pooled at once); other pairs,
and the other targets, run the per-channel loop (codegen.fused_kernel).
Both builds' outputs are compared on the same input (max abs difference printed; 0 where the kernels keep their
summation order per channel).

    .venv/bin/python benchmarks/bench_fuse.py --model lenet5=MODEL.pt2 [--targets cortex-m4,x86_64-avx2] [--iters 5]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "toolchain"))

import bench_arm  # noqa: E402
import harness  # noqa: E402
from prunec import runners  # noqa: E402
from prunec import targets as T  # noqa: E402
from prunec.build import build  # noqa: E402

MAIN_C = r"""
#include <stdio.h>
#include <stdint.h>
#include "%(name)s.h"
static float arena[%(name)s_ARENA_BYTES / sizeof(float) + 1] __attribute__((aligned(16)));
static float in[%(name)s_INPUT_SIZE], out[%(name)s_OUTPUT_SIZE];
int main(void) {
  uint32_t i, s = 12345u;
  int it, rc = 0;
  for (i = 0; i < %(name)s_INPUT_SIZE; i++) {
    s = s * 1103515245u + 12345u;
    in[i] = (float)((s >> 8) & 0xFFFFu) / 65536.0f - 0.25f;
  }
  /* Both builds (ITERS = 0 and ITERS = N) must do the same set-up: without this barrier the ITERS = 0 build never
     reads `in` or `arena`, so the compiler drops the loop above and the linker the two arrays (bare-metal start-up
     then zeroes a smaller .bss), and (insns(N) - insns(0)) / N counts that work / N per inference. */
  __asm__ volatile("" :: "r"(in), "r"(out), "r"(arena) : "memory");
  for (it = 0; it < ITERS; it++) rc |= %(name)s_run(in, out, arena);
  for (i = 0; i < %(name)s_OUTPUT_SIZE; i++) printf("%%a\n", (double)out[i]);
  return rc;
}
"""


def compile_count_prog(target, build_dir: Path, name: str, n: int, work: Path, lib: Path) -> Path:
    """The counted program (MAIN_C) with ITERS = n, linked against the build's library `lib`."""
    main_c = work / "main.c"
    if not main_c.exists():
        main_c.write_text(MAIN_C % {"name": name})
    return runners.compile_program(target, [main_c], work / f"prog{n}", include_dirs=[build_dir],
                                   extra_cflags=[f"-DITERS={n}"], objects=[lib])


def arm_counts(target, build_dir: Path, name: str, iters: int, work: Path, plugin: Path) -> tuple[float, np.ndarray]:
    man = json.loads((build_dir / "manifest.json").read_text())
    lib = runners.build_library(build_dir, man, target)
    counts, outs = [], None
    for n in (0, iters):
        exe = compile_count_prog(target, build_dir, name, n, work, lib)
        counts.append(bench_arm.count(target, exe, plugin))
        if n:
            p = runners.run_program(target, exe)
            outs = np.array([float.fromhex(v) for v in p.stdout.split()], np.float32)
    return (counts[1] - counts[0]) / iters, outs


def host_times(builds: dict[str, Path], reps: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    from prunec.bench import CompiledBuild

    x = np.random.default_rng(0).standard_normal(
        json.loads((next(iter(builds.values())) / "manifest.json").read_text())["input_size"]).astype(np.float32)
    cs, outs = [], {}
    for label, d in builds.items():
        cb = CompiledBuild(d)
        cb.set_input(x)
        cb.run_total(1)
        outs[label] = cb.output().copy()
        cs.append(harness.Contender(label, (lambda cb: lambda n: cb.run_total(n))(cb), "prunec"))
    harness.measure(cs, reps=reps, target_s=0.04)
    return {c.name: c.median for c in cs}, outs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="key=MODEL,... (.pt2 or prunec checkpoints)")
    ap.add_argument("--targets", default="cortex-m4,cortex-m55,x86_64-avx2")
    ap.add_argument("--iters", type=harness.positive_int, default=5, help="NAME_run calls per counted Arm program")
    ap.add_argument("--reps", type=harness.positive_int, default=7, help="interleaved repetitions of the host timings")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    from prunec.codegen import validate_name
    from prunec.errors import PrunecError

    models = harness.key_paths(ap, "--model", a.model)
    if not models:
        ap.error("--model: give at least one KEY=MODEL (e.g. lenet5=lenet5.pt2)")
    for key, path in models.items():
        try:
            validate_name(key)
        except PrunecError as e:
            ap.error(f"--model {key}=...: the key names the build (NAME_run): {e}")
        if not Path(path).is_file():
            ap.error(f"--model {key}={path}: no such file")
    tnames = harness.target_names(ap, "--targets", a.targets, list(T.all_targets()))
    results = []
    with tempfile.TemporaryDirectory(prefix="prunec-fuse-") as tmp:
        tmp = Path(tmp)
        plugin = None
        for key, path in models.items():
            for tname in tnames:
                t = T.get(tname)
                missing = [exe for exe, _ in t.missing_tools()]
                if missing:
                    print(f"# {key} {tname}: skipped, missing {', '.join(missing)}")
                    continue
                builds, res = {}, {"model": key, "target": tname}
                for fused in (False, True):
                    label = "fused" if fused else "unfused"
                    d = tmp / f"{key}-{tname}-{label}"
                    r = build(path, tname, d, name=key, fuse_pool=fused)
                    builds[label] = d
                    res[f"arena_{label}"] = r.manifest["arena_bytes"]
                    size = r.manifest.get("size") or {}
                    if size.get("measured"):
                        res[f"ram_{label}"] = size["library"]["ram"]
                    res["fused_pairs"] = r.manifest["plan"]["fused_conv_pool"] if fused else res.get("fused_pairs")
                if t.runner == "cffi":
                    med, outs = host_times(builds, a.reps)
                    res.update(time_unfused_s=med["unfused"], time_fused_s=med["fused"],
                               max_abs_diff=float(np.max(np.abs(outs["fused"] - outs["unfused"]))))
                    work = f"time {med['unfused'] * 1e6:.2f} -> {med['fused'] * 1e6:.2f} µs (x{med['fused'] / med['unfused']:.3f})"
                else:
                    plugin = plugin or bench_arm.build_plugin(tmp)
                    cnt, outs = {}, {}
                    for label, d in builds.items():
                        w = tmp / f"w-{key}-{tname}-{label}"
                        w.mkdir()
                        cnt[label], outs[label] = arm_counts(t, d, key, a.iters, w, plugin)
                    res.update(insns_unfused=cnt["unfused"], insns_fused=cnt["fused"],
                               max_abs_diff=float(np.max(np.abs(outs["fused"] - outs["unfused"]))))
                    work = (f"instructions {cnt['unfused']:,.0f} -> {cnt['fused']:,.0f} per inference "
                            f"(x{cnt['fused'] / cnt['unfused']:.4f})")
                ram = (f", library RAM {res['ram_unfused']:,} -> {res['ram_fused']:,} B" if "ram_fused" in res else "")
                print(f"{key} {tname}: arena {res['arena_unfused']:,} -> {res['arena_fused']:,} B "
                      f"(x{res['arena_unfused'] / res['arena_fused']:.2f} less){ram}; {work}; fused vs unfused output "
                      f"max abs diff {res['max_abs_diff']:.1e}", flush=True)
                results.append(res)
                for d in builds.values():
                    shutil.rmtree(d, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
