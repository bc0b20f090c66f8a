#!/usr/bin/env python3
"""Arm fc kernels, instructions per inference for each index width b (--bits, any of 1..16) against dense, counted under QEMU
TCG with the counter plugin (benchmarks/qemu_plugin/insn_count.c). A companion of bench_arm.py (which lets
choose_encoding pick b): same program (benchmarks/c/insn_main.c), same method (built with ITERS = 0 and ITERS = N,
count = (insns(N) - insns(0)) / N, user-mode programs under `env -i`), but the layer data is a binary blob
pulled in with .incbin so that 4096x4096 layers compile in seconds, and every b is encoded and measured.

fc layers only (a conv layer is refused: bench_arm.py counts the conv kernels). Per nonzero counts divide by the
true nonzeros (fillers are part of the sparse kernel's cost); per MAC divides the dense count by rows x cols.
Goal (issue 5): sparse <= 3·d x dense.

    .venv/bin/python benchmarks/bench_arm_bits.py [--targets cortex-m4,aarch64-neon,armv7a-neon]
        [--layers lenet300.fc1,...] [--bits 4,8,16] [--kernels cortexm,neon,portable] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "toolchain"))

import bench_arm  # noqa: E402
import harness  # noqa: E402
import workloads  # noqa: E402
from prunec.encode import encode_rcsr  # noqa: E402

LAYERS = ("lenet300.fc1", "lenet300.fc2", "lenet5.fc1", "synthetic.fc4096")
# The 4096x4096 layer does not fit a Cortex-M4's memory (dense: 64 MB; sparse at 10%: ~8 MB).
TOO_BIG = {("cortex-m4", "synthetic.fc4096")}


def _blob(d: Path, name: str, data: bytes) -> str:
    (d / f"{name}.bin").write_bytes(data + b"\0" * 16)
    return (f'__asm__(".section .rodata\\n.balign 16\\n.global {name}\\n{name}:\\n'
            f'.incbin \\"{d / (name + ".bin")}\\"\\n.text\\n");\n')


def layer_header(d: Path, w, bias, bits: int | None) -> str:
    rows, cols = w.shape
    lines = ["#include <stdint.h>", f"#define ROWS {rows}", f"#define COLS {cols}",
             "extern const float bias_data[];", _blob(d, "bias_data", np.asarray(bias, "<f4").tobytes()),
             "#define BIAS bias_data"]
    if bits:
        r = encode_rcsr(w, bits)
        lines += [f"#define INDEX_BITS {bits}", "extern const float values_data[];",
                  "extern const uint8_t index_data[];", "extern const uint32_t row_ptr_data[];",
                  _blob(d, "values_data", np.asarray(r.values, "<f4").tobytes()),
                  _blob(d, "index_data", r.packed_index()),
                  _blob(d, "row_ptr_data", np.asarray(r.row_ptr, "<u4").tobytes()),
                  "#define VALUES values_data", "#define INDEX index_data", "#define ROW_PTR row_ptr_data"]
    else:
        lines += ["extern const float values_data[];", _blob(d, "values_data", np.asarray(w, "<f4").tobytes()),
                  "#define VALUES values_data"]
    return "\n".join(lines) + "\n"


def measure(t, kernel, w, bias, bits, work: Path, plugin: Path, tag: str, iters: int) -> float:
    d = work / tag
    d.mkdir(parents=True, exist_ok=True)
    hdr = layer_header(d, w, bias, bits)
    n0 = bench_arm.count(t, bench_arm.compile_prog(t, kernel, hdr, 0, work, tag), plugin)
    n1 = bench_arm.count(t, bench_arm.compile_prog(t, kernel, hdr, iters, work, tag), plugin)
    return (n1 - n0) / iters


def run(targets, layers, bits_list, isas, work: Path, plugin: Path):
    from prunec import targets as T

    rows = []
    for tname in targets:
        t = T.get(tname)
        if any(shutil.which(e) is None for e in (t.cc, bench_arm.DYNAMIC_QEMU.get(tname, "qemu-system-arm"))):
            print(f"# {tname}: skipped, missing tools")
            continue
        ks = bench_arm.kernels_for(t)
        if not any(k.isa in isas for k in ks["fc_dense"]) or not any(k.isa in isas for k in ks["fc_rcsr"]):
            print(f"# {tname}: skipped, no dense and sparse fc kernel among ISAs {', '.join(isas)}")
            continue
        for key in layers:
            if (tname, key) in TOO_BIG:
                continue
            layer = workloads.by_key(key)
            w, bias, _ = workloads.random_layer(layer, 0)
            nnz = int(np.count_nonzero(w))
            iters = 2 if w.size > 4_000_000 else 10
            res = {"target": tname, "layer": key, "density": layer.density, "nonzero": nnz, "macs": int(w.size),
                   "dense": {}, "sparse": {}}
            for k in ks["fc_dense"]:
                if k.isa in isas:
                    res["dense"][k.isa] = measure(t, k, w, bias, None, work, plugin, f"{tname}-{key}-d-{k.isa}", iters)
            for k in ks["fc_rcsr"]:
                if k.isa in isas:
                    for b in bits_list:
                        entries = encode_rcsr(w, b).entries
                        n = measure(t, k, w, bias, b, work, plugin, f"{tname}-{key}-s{b}-{k.isa}", iters)
                        res["sparse"][f"{k.isa}/b{b}"] = {"insns": n, "entries": entries}
            best_dense = min(res["dense"].values())
            for name, v in res["sparse"].items():
                v["per_nz"] = v["insns"] / nnz
                v["ratio"] = v["insns"] / best_dense
            res["best_dense"] = best_dense
            res["goal"] = 3 * layer.density
            dd = "  ".join(f"dense[{i}] {v:.0f} ({v / w.size:.2f}/MAC)" for i, v in res["dense"].items())
            print(f"{tname:12s} {key:16s} d={layer.density:.0%} nnz={nnz}  {dd}", flush=True)
            for name, v in res["sparse"].items():
                print(f"    sparse[{name:12s}] {v['insns']:12.0f}  {v['per_nz']:5.2f}/nz  entries {v['entries']}  "
                      f"ratio {v['ratio']:.3f}  goal <= {res['goal']:.2f}  "
                      f"{'met' if v['ratio'] <= res['goal'] else 'MISSED'}", flush=True)
            rows.append(res)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="cortex-m4,aarch64-neon,armv7a-neon")
    ap.add_argument("--layers", default=",".join(LAYERS), help="fc layers (workloads.py keys); conv: bench_arm.py")
    ap.add_argument("--bits", default="4,8,16", help="index widths (1..16; ranges like 4-8)")
    ap.add_argument("--kernels", default="cortexm,neon,portable", help="ISAs of the kernels to measure")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    from prunec import targets as T

    tnames = harness.target_names(ap, "--targets", a.targets, bench_arm.arm_targets())
    conv = [k for k in a.layers.split(",") if k in {l.key for l in workloads.LAYERS if l.kind != "fc"}]
    if conv:  # insn_main.c runs a layer as one fc call: a conv layer would be counted as a [out_c, in_c*kh*kw] fc
        ap.error(f"--layers {conv[0]}: a conv layer; this script counts fc kernels only (bench_arm.py "
                 f"--layers {conv[0]} counts the conv kernels)")
    layers = harness.layer_keys(ap, "--layers", a.layers, [l.key for l in workloads.LAYERS if l.kind == "fc"])
    bits = list(dict.fromkeys(b for item in a.bits.split(",") for b in harness.index_widths(ap, "--bits", item)))
    isas = [i for i in a.kernels.split(",") if i]
    have = {i for n in bench_arm.arm_targets() for i in T.get(n).isa}
    if not isas or any(i not in have for i in isas):
        ap.error(f"--kernels {a.kernels}: give ISAs from {', '.join(sorted(have))}")
    with tempfile.TemporaryDirectory(prefix="prunec-armbits-") as tmp:
        work = Path(tmp)
        plugin = bench_arm.build_plugin(work)
        rows = run(tnames, layers, bits, isas, work, plugin)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
