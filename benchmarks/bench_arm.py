#!/usr/bin/env python3
"""Arm: instructions per inference of prunec's fc and conv2d kernels, sparse against dense, counted under QEMU TCG
with the project's counter plugin (benchmarks/qemu_plugin/insn_count.c). Instructions are not cycles; they are
the only speed proxy without Arm hardware.

For each target (aarch64-neon: qemu-aarch64, armv7a-neon: qemu-arm, cortex-m4: qemu-system-arm mps2-an386),
each layer and each registered fc kernel usable by the target (its ISAs, portable included), a program calls
the kernel ITERS times on the layer's data (static const arrays); it is built with ITERS = 0 and ITERS = N and
count = (insns(N) - insns(0)) / N. User-mode programs run under `env -i`. Goal: at density d the sparse count is
at most 3·d times the count of the target's best dense kernel.

conv2d layers (the workloads' conv layers, e.g. lenet5.conv1, lenet5.conv2; a layer's kind picks fc or conv)
run every registered conv2d_rcsr kernel the target can use against its conv2d_dense kernels
(benchmarks/c/insn_conv_main.c, CONV_ITERS calls). Per MAC divides the dense count by the layer's dense MACs
(out_c x in_c/groups x kh x kw x out_h x out_w); per nonzero-MAC divides the sparse count by
nonzeros x out_h x out_w.

    .venv/bin/python benchmarks/bench_arm.py [--targets aarch64-neon,armv7a-neon,cortex-m4] [--layers ...] [--json OUT]
    .venv/bin/python benchmarks/bench_arm.py --layers lenet5.conv1,lenet5.conv2     # the conv layers only
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "toolchain"))

import harness  # noqa: E402
import workloads  # noqa: E402
from prunec.build import wsell_limit  # noqa: E402
from prunec.encode import FAST_INDEX_BITS, choose_encoding, encode_acsr, encode_wsell, wsell_cols  # noqa: E402

DYNAMIC_QEMU = {"aarch64-neon": "qemu-aarch64", "armv7a-neon": "qemu-arm"}
CPU = {"aarch64-neon": "cortex-a53", "armv7a-neon": "cortex-a7"}
FC_LAYERS = ("lenet300.fc1", "lenet300.fc2", "lenet5.fc1", "lenet5.fc2")
CONV_LAYERS = ("lenet5.conv1", "lenet5.conv2")
LAYERS = FC_LAYERS + CONV_LAYERS
ITERS = 20
DENSE_BOUND_M4 = 1.5  # instructions per MAC the dense Cortex-M4 baseline may take (issue: "itself good")
CONV_ITERS = 5  # conv calls are 10-100x longer than fc calls; counts are exact either way


def arm_targets() -> list[str]:
    """The targets these scripts count under QEMU: bare-metal (qemu-system) ones and DYNAMIC_QEMU's user-mode ones."""
    from prunec import targets as T

    return [n for n, t in T.all_targets().items() if t.runner == "qemu-system" or n in DYNAMIC_QEMU]


def build_plugin(out: Path) -> Path:
    so = out / "libinsn.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", str(HERE / "qemu_plugin" / "insn_count.c"), "-o", str(so)],
                   check=True)
    return so


def _c_floats(a):
    return ",".join(f"{float(v).hex()}f".replace("0x1.0000000000000p", "0x1p") if v != 0 else "0.0f"
                    for v in np.asarray(a, np.float32).tolist())


ROW_ALIGN = None  # --row-align (None: each target's own, Target.row_align_for)
X_ZEROS = 0.0  # --x-zeros: share of the fc inputs that are zero; above 0 the zero-skipping kernels are counted too
INDEX_BITS_OVERRIDE = None  # --index-bits (None: each target's own widths per op, Target.index_bits_for)


def widths(t, op: str):
    return INDEX_BITS_OVERRIDE or t.index_bits_for(op)


def layer_header(w, bias, sparse: bool, bits=FAST_INDEX_BITS, row_align: int = 1, columns: bool = False,
                 x_zeros: float = 0.0) -> str:
    """The layer as C arrays; sparse: relative-indexed CSR with the smallest storage among index widths `bits`
    (pass target.index_bits_for(op), as `prunec build` does), rows padded to a multiple of `row_align` entries;
    `columns`: of W^T, for the column-major kernels (fc_rcsc, unpadded as `prunec build` stores them).
    `x_zeros`: that share of the inputs is zero (insn_main.c's X_ZEROS_PERMILLE)."""
    rows, cols = w.shape
    lines = [f"#define ROWS {rows}", f"#define COLS {cols}",
             f"static const float bias_data[{rows}] = {{{_c_floats(bias)}}};", "#define BIAS bias_data"]
    if x_zeros:
        lines.append(f"#define X_ZEROS_PERMILLE {round(1000 * x_zeros)}u")
    if sparse:
        enc = choose_encoding(w, allow_dense=False, bits_options=bits, row_align=1 if columns else row_align,
                              columns=columns)
        r = enc.rcsr
        idx = r.packed_index() + b"\0" * 16
        lines += [f"#define STORE_ROWS {r.rows}", f"#define STORE_COLS {r.cols}", f"#define INDEX_BITS {r.index_bits}",
                  f"static const float values_data[{max(1, r.entries)}] = {{{_c_floats(r.values) or '0.0f'}}};",
                  f"static const uint8_t index_data[{len(idx)}] = {{{','.join(map(str, idx))}}};",
                  f"static const uint32_t row_ptr_data[{r.rows + 1}] = {{{','.join(map(str, r.row_ptr.tolist()))}}};",
                  "#define VALUES values_data", "#define INDEX index_data", "#define ROW_PTR row_ptr_data"]
    else:
        lines += [f"static const float values_data[{rows * cols}] = {{{_c_floats(w.ravel())}}};",
                  "#define VALUES values_data"]
    return "\n".join(lines) + "\n"


def _c_array(ctype: str, name: str, a) -> str:
    """`static const CTYPE NAME[N] = {...};` of array `a` (C has no empty arrays: one of 0 elements is [1] = {0})."""
    a = np.asarray(a).ravel()
    body = _c_floats(a) if ctype == "float" else ",".join(map(str, a.tolist()))
    return f"static const {ctype} {name}[{max(1, a.size)}] = {{{body or '0'}}};"


def wsell_header(ws, bias) -> str:
    """Layout `ws` (encode_wsell of the layer, as `prunec build` stores it; docs/FORMAT.md "Windowed fc layers") as C
    arrays."""
    rows, cols = ws.rows, ws.cols
    arr = _c_array
    lines = [f"#define ROWS {rows}", f"#define COLS {cols}", "#define WSELL 1",
             f"static const float bias_data[{rows}] = {{{_c_floats(bias)}}};", "#define BIAS bias_data",
             arr("uint16_t", "perm_data", ws.perm), arr("uint32_t", "steps_data", ws.steps),
             arr("uint32_t", "start_data", ws.start), arr("uint32_t", "advance_data", ws.advance),
             arr("uint8_t", "index_data", ws.index), arr("float", "values_data", ws.values),
             "#define PERM perm_data", "#define STEPS steps_data", "#define START start_data",
             "#define ADVANCE advance_data", "#define INDEX index_data", "#define VALUES values_data"]
    return "\n".join(lines) + "\n"


def acsr_header(a, bias) -> str:
    """Absolute-indexed CSR `a` (encode_acsr of the layer, as `prunec build --fc-layout acsr` stores it; docs/FORMAT.md
    "Absolute-indexed fc layers") as C arrays."""
    arr = _c_array
    lines = [f"#define ROWS {a.rows}", f"#define COLS {a.cols}", "#define ACSR 1",
             f"static const float bias_data[{a.rows}] = {{{_c_floats(bias)}}};", "#define BIAS bias_data",
             arr("float", "values_data", a.values), arr("uint32_t", "columns_data", a.columns),
             arr("uint32_t", "row_ptr_data", a.row_ptr),
             "#define VALUES values_data", "#define COLUMNS columns_data", "#define ROW_PTR row_ptr_data"]
    return "\n".join(lines) + "\n"


def conv_header(layer, w, bias, sparse: bool, bits=FAST_INDEX_BITS) -> str:
    c = layer.conv
    head = [f"#define IN_C {c.in_c}", f"#define IN_H {c.in_hw}", f"#define IN_W {c.in_hw}", f"#define OUT_C {c.out_c}",
            f"#define OUT_H {c.out_hw}", f"#define OUT_W {c.out_hw}", f"#define KH {c.k}", f"#define KW {c.k}",
            f"#define SH {c.stride}", f"#define SW {c.stride}", f"#define PH {c.pad}", f"#define PW {c.pad}",
            f"#define GROUPS {c.groups}"]
    return "\n".join(head) + "\n" + layer_header(w, bias, sparse, bits)


def kernels_for(target) -> dict[str, list]:
    ks = harness.registry()
    return {op: [k for k in ks if k.op == op and k.isa in target.isa and (harness.RUNTIME / k.source).exists()]
            for op in ("fc_rcsr", "fc_rcsc", "fc_dense", "fc_wsell", "fc_acsr", "conv2d_rcsr", "conv2d_dense")}


def compile_prog(target, kernel, header: str, iters: int, work: Path, tag: str) -> Path:
    d = work / tag
    d.mkdir(parents=True, exist_ok=True)
    (d / "layer_data.h").write_text(header)
    exe = d / f"prog{iters}"
    conv = kernel.op.startswith("conv2d")
    from prunec import runtime

    # the kernel's source and the sources of the kernels it calls (an ISA kernel hands the index widths it has
    # no fast path for to its portable twin: PRUNEC_KERNEL_USES)
    srcs = [str(harness.RUNTIME / s) for s in runtime.sources_for([kernel])]
    srcs.append(str(HERE / "c" / ("insn_conv_main.c" if conv else "insn_main.c")))
    if target.runner == "qemu-system":
        srcs.append(str(harness.RUNTIME / target.extra["startup"]))
    cmd = [target.cc, *target.cflags, "-O3" if target.runner != "qemu-system" else "-O2",
           f"-I{harness.RUNTIME / 'include'}", f"-I{d}", f"-DKERNEL={kernel.name}", f"-DITERS={iters}",
           *(["-DSPARSE"] if kernel.op.endswith(("_rcsr", "_rcsc")) else []), *srcs, "-o", str(exe), *target.ldflags, *target.libs]
    # No -fPIC for static programs; no --gc-sections: it drops the start-up file's vector table (a static
    # array referenced by nothing but the linker's --section-start), and QEMU then locks up at reset.
    cmd = [c for c in cmd if c not in ("-fPIC", "-Wl,--gc-sections")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def count(target, exe: Path, plugin: Path) -> int:
    if target.runner == "qemu-system":
        cmd = ["qemu-system-arm", "-M", target.extra["machine"], "-nographic", "-semihosting", "-kernel", str(exe),
               "-plugin", str(plugin), "-d", "plugin"]
    else:
        cmd = ["env", "-i", DYNAMIC_QEMU[target.name], "-cpu", CPU[target.name], "-plugin", str(plugin),
               "-d", "plugin", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    m = re.search(r"insns: (\d+)", p.stdout + p.stderr)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {(p.stdout + p.stderr)[-500:]}")
    return int(m.group(1))


def per_inference(target, kernel, header, work, plugin, tag) -> float:
    iters = CONV_ITERS if kernel.op.startswith("conv2d") else ITERS
    n0 = count(target, compile_prog(target, kernel, header, 0, work, tag), plugin)
    n1 = count(target, compile_prog(target, kernel, header, iters, work, tag), plugin)
    return (n1 - n0) / iters


def _short(n: str) -> str:
    return f"{n.split('__')[0].replace('prunec_f32_', '')}[{n.split('__')[1]}]"


def run_conv(t, tname, key, ks, work, plugin, densities=None):
    out = []
    base = workloads.by_key(key)
    for d in (densities or (base.density,)):
        layer = workloads.conv(base.net, base.name, d, **base.conv.__dict__)
        w, bias, _ = workloads.random_layer(layer, 0)
        nnz = int(np.count_nonzero(w))
        pixels = layer.conv.out_hw ** 2
        macs = w.size * pixels
        res = {"target": tname, "layer": key, "kind": "conv", "density": d, "nonzero": nnz, "macs": macs,
               "nonzero_macs": nnz * pixels, "counts": {}}
        for op, sparse in (("conv2d_dense", False), ("conv2d_rcsr", True)):
            hdr = conv_header(layer, w, bias, sparse, widths(t, "conv2d"))
            for k in ks[op]:
                res["counts"][k.name] = per_inference(t, k, hdr, work, plugin, f"{tname}-{key}-{d}-{k.name}")
        dense = min(v for n, v in res["counts"].items() if "_dense__" in n)
        sparse = min(v for n, v in res["counts"].items() if "_rcsr__" in n)
        nzm = max(nnz * pixels, 1)
        res.update(best_dense=dense, best_sparse=sparse, ratio=sparse / dense, goal=3 * d,
                   dense_per_mac=dense / macs, sparse_per_nnz=sparse / max(nnz, 1), sparse_per_nz_mac=sparse / nzm,
                   per_kernel={n: {"per_inference": v, ("per_mac" if "_dense__" in n else "per_nz_mac"):
                                   v / (macs if "_dense__" in n else nzm)} for n, v in res["counts"].items()})
        print(f"{tname:13s} {key:14s} d={d:5.0%}  dense {dense:10.0f} ({dense / macs:.2f}/MAC)  sparse "
              f"{sparse:10.0f} ({sparse / nzm:.2f}/nz-MAC)  sparse/dense {sparse / dense:.3f}   "
              + "  ".join(f"{_short(n)}={v:.0f} ({v / (macs if '_dense__' in n else nzm):.2f})"
                          for n, v in res["counts"].items()), flush=True)
        out.append(res)
    return out


def run(targets, layers, work: Path, plugin: Path, densities=None):
    from prunec import targets as T

    rows = []
    for tname in targets:
        t = T.get(tname)
        missing = [exe for exe in (t.cc, DYNAMIC_QEMU.get(tname, "qemu-system-arm")) if shutil.which(exe) is None]
        if missing:
            print(f"# {tname}: skipped, missing {', '.join(missing)}")
            continue
        ks = kernels_for(t)
        for key in layers:
            base = workloads.by_key(key)
            if base.kind == "conv":
                rows += run_conv(t, tname, key, ks, work, plugin, densities)
                continue
            for d in (densities or (base.density,)):
                layer = workloads.fc(base.net, base.name, base.rows, base.cols, d)
                w, bias, _ = workloads.random_layer(layer, 0)
                nnz = int(np.count_nonzero(w))
                res = {"target": tname, "layer": key, "density": d, "nonzero": nnz, "macs": w.size, "counts": {}}
                res["x_zeros"] = X_ZEROS
                for op, sparse, columns in (("fc_dense", False, False), ("fc_rcsr", True, False),
                                            ("fc_rcsc", True, True)):
                    if columns and not X_ZEROS:
                        continue  # the zero-skipping kernels are counted with --x-zeros only
                    hdr = layer_header(w, bias, sparse, widths(t, "fc"),
                                       ROW_ALIGN if ROW_ALIGN is not None else t.row_align_for("fc"), columns, X_ZEROS)
                    for k in ks[op]:
                        res["counts"][k.name] = per_inference(t, k, hdr, work, plugin, f"{tname}-{key}-{d}-{k.name}")
                if wsell_limit(t, "auto") and w.shape[1] >= wsell_cols():  # the windowed layout where builds use it
                    ws = encode_wsell(w)
                    hdr = wsell_header(ws, bias)
                    res["wsell_slots"] = int(ws.slots)
                    for k in ks["fc_wsell"]:
                        if k.isa != "portable":
                            res["counts"][k.name] = per_inference(t, k, hdr, work, plugin, f"{tname}-{key}-{d}-{k.name}")
                acsr_ks = [k for k in ks["fc_acsr"] if k.isa != "portable"]
                if acsr_ks:  # absolute-indexed CSR where an ISA kernel runs it (builds with --fc-layout acsr)
                    a = encode_acsr(w)
                    hdr = acsr_header(a, bias)
                    res["acsr_entries"] = a.entries
                    for k in acsr_ks:
                        res["counts"][k.name] = per_inference(t, k, hdr, work, plugin, f"{tname}-{key}-{d}-{k.name}")
                dense = min(v for n, v in res["counts"].items() if "_dense__" in n)
                # ratio: the layouts a default build (--fc-layout auto) uses; acsr_ratio: --fc-layout acsr
                sparse = min(v for n, v in res["counts"].items() if "_rcsr__" in n or "_wsell__" in n)
                res.update(best_dense=dense, best_sparse=sparse, ratio=sparse / dense, goal=3 * d,
                           dense_per_mac=dense / w.size, sparse_per_nnz=sparse / max(nnz, 1))
                if tname == "cortex-m4" and dense / w.size > DENSE_BOUND_M4:
                    res["dense_over_bound"] = True  # the condition on the baseline: a good dense kernel
                    print(f"# warning: {tname} {key}: the dense baseline takes {dense / w.size:.2f} instructions per "
                          f"MAC, more than the {DENSE_BOUND_M4} a good dense kernel takes; the ratio flatters the "
                          f"sparse kernels", flush=True)
                acsr = ""
                if acsr_ks:
                    best = min(res["counts"][k.name] for k in acsr_ks)
                    res.update(best_acsr=best, acsr_ratio=best / dense, acsr_per_nnz=best / max(nnz, 1))
                    acsr = (f"  --fc-layout acsr {best:9.0f} ({best / max(nnz, 1):.2f}/nz) ratio {best / dense:.3f} "
                            f"{'met' if best / dense <= 3 * d else 'MISSED'}")
                skip = ""
                if X_ZEROS:
                    cs = min(v for n, v in res["counts"].items() if "_rcsc__" in n)
                    res.update(best_zero_skipping=cs, zero_skipping_ratio=cs / dense)
                    skip = f"  zero-skipping {cs:9.0f} (ratio {cs / dense:.3f}, {cs / sparse:.2f}x the row kernel's)"
                print(f"{tname:13s} {key:14s} d={d:5.0%}  dense {dense:10.0f} ({dense / w.size:.2f}/MAC)  sparse "
                      f"{sparse:9.0f} ({sparse / max(nnz, 1):.2f}/nz)  ratio {sparse / dense:.3f}  goal <= {3 * d:.3f}  "
                      f"{'met' if sparse / dense <= 3 * d else 'MISSED'}{acsr}{skip}   "
                      + "  ".join(f"{n.split('__')[0].replace('prunec_f32_', '')}[{n.split('__')[1]}]={v:.0f}"
                                  for n, v in res["counts"].items()), flush=True)
                rows.append(res)
    return rows


def adhoc_convs(ap, spec: str) -> list:
    """--conv: 'NAME=IN_C,IN_HW,OUT_C,K[,STRIDE[,PAD[,GROUPS]]]@DENSITY;...' as workload layers (net 'adhoc'), added
    to workloads.LAYERS so that the counting code finds them by key."""
    out = []
    for item in filter(None, (x.strip() for x in spec.split(";"))):
        try:
            name, rest = item.split("=", 1)
            dims, dens = rest.split("@", 1)
            v = [int(x) for x in dims.split(",")]
            d = float(dens)
        except ValueError:
            ap.error(f"--conv {item!r}: write NAME=IN_C,IN_HW,OUT_C,K[,STRIDE[,PAD[,GROUPS]]]@DENSITY, "
                     f"e.g. dw6=64,6,64,3,1,1,64@0.2")
        if not name.isidentifier() or not 4 <= len(v) <= 7:
            ap.error(f"--conv {item!r}: a name of letters, digits and _, then 4 to 7 integers")
        in_c, in_hw, out_c, k = v[:4]
        stride, pad, groups = (v[4:] + [1, 0, 1][len(v) - 4:])[:3]
        if min(in_c, in_hw, out_c, k, stride, groups) < 1 or pad < 0 or in_c % groups or out_c % groups \
                or in_hw + 2 * pad < k or not 0 < d <= 1:
            ap.error(f"--conv {item!r}: sizes must be positive, groups must divide in_c and out_c, the kernel must fit "
                     f"the padded input and the density must be in (0, 1]")
        layer = workloads.conv("adhoc", name, d, in_c=in_c, in_hw=in_hw, out_c=out_c, k=k, stride=stride, pad=pad,
                               groups=groups)
        workloads.LAYERS.append(layer)
        out.append(layer)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="aarch64-neon,armv7a-neon,cortex-m4")
    ap.add_argument("--layers", default=None, help=f"workload layer keys (default: {','.join(LAYERS)})")
    ap.add_argument("--densities", default="", help="override: comma-separated densities (e.g. 0.02,0.1,0.3)")
    ap.add_argument("--json", default="")
    ap.add_argument("--x-zeros", type=float, default=0.0, metavar="Z",
                    help="share of the fc inputs that are zero, as after a ReLU (default 0); above 0 the column-major "
                         "kernels that skip zero inputs (prunec build --skip-zero-inputs) are counted beside the others")
    ap.add_argument("--row-align", type=int, default=None,
                    help="pad sparse fc rows to a multiple of this many entries (default: the target's, as prunec build)")
    ap.add_argument("--conv", default="", metavar="NAME=IN_C,IN_HW,OUT_C,K[,STRIDE[,PAD[,GROUPS]]]@DENSITY[;...]",
                    help="ad-hoc square conv layers to count beside (or, without --layers, instead of) the workloads', "
                         "e.g. 'dw6=64,6,64,3,1,1,64@0.2;pw6=64,6,64,1@0.2' (keys adhoc.NAME)")
    ap.add_argument("--index-bits", default="", metavar="B[,B...]",
                    help="index widths every sparse layer may use, as prunec build --index-bits (e.g. 1-16; default: "
                         "the target's per-op widths)")
    a = ap.parse_args(argv)
    global ROW_ALIGN, INDEX_BITS_OVERRIDE, X_ZEROS
    if not 0 <= a.x_zeros < 1:
        ap.error(f"--x-zeros {a.x_zeros}: give the share of zero inputs, in [0, 1)")
    X_ZEROS = a.x_zeros
    tnames = harness.target_names(ap, "--targets", a.targets, arm_targets())
    adhoc = adhoc_convs(ap, a.conv) if a.conv else []
    listed = harness.layer_keys(ap, "--layers", a.layers) if a.layers else [] if adhoc else list(LAYERS)
    layers = listed + [l.key for l in adhoc]
    try:
        dens = tuple(float(v) for v in a.densities.split(",") if v) or None
    except ValueError:
        ap.error(f"--densities {a.densities!r}: give numbers in (0, 1], e.g. 0.02,0.1,0.3")
    if dens and not all(0 < d <= 1 for d in dens):
        ap.error(f"--densities {a.densities}: each density must be in (0, 1] (fraction of weights kept), "
                 f"e.g. 0.02,0.1,0.3")
    if a.row_align is not None:
        from prunec.encode import check_row_align
        from prunec.errors import PrunecError

        try:
            check_row_align(a.row_align, "--row-align")
        except PrunecError as e:
            ap.error(str(e))
    ROW_ALIGN = a.row_align
    INDEX_BITS_OVERRIDE = harness.index_widths(ap, "--index-bits", a.index_bits) if a.index_bits else None
    with tempfile.TemporaryDirectory(prefix="prunec-arm-") as tmp:
        work = Path(tmp)
        plugin = build_plugin(work)
        rows = run(tnames, layers, work, plugin, dens)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
