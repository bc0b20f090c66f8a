#!/usr/bin/env python3
"""Single layers, side by side in one process: prunec's kernels (sparse relative-indexed CSR with every x86
kernel registered, and the same layer stored dense) against PyTorch dense, PyTorch sparse CSR (int64 and int32
indices), scipy.sparse CSR; with each layer's machine bound (bytes ÷ bandwidth, FLOPs ÷ peak).

One core (the process is pinned), one thread everywhere, fp32, batch 1 (and batch 8 for fc layers: the kernel
API is batch 1, so prunec calls the kernel 8 times; PyTorch and scipy get one [8 x in] matrix product).
Each figure is the median of >= 5 interleaved repetitions; every ratio is between medians of this one run.
Outputs are checked against a float64 reference before timing.

    .venv/bin/python benchmarks/bench_layers.py [--layers KEY,...] [--batch 1,8] [--reps 7] [--json OUT]
    .venv/bin/python benchmarks/bench_layers.py --sweep   # 4096x4096 fc, density 1% .. 100%
    .venv/bin/python benchmarks/bench_layers.py --layers alexnet.fc7 --batch 1 --x-zeros 0.65
        # inputs as after a ReLU, 65 % zeros: the column-major kernels of --skip-zero-inputs beside the others
    .venv/bin/python benchmarks/bench_layers.py --index-bits 6,8 --layers lenet5.fc1,lenet5.conv1
        # each layer stored with every listed index width (fc rows aligned as x86_64-avx2 does), every x86 kernel
        # on each, all interleaved in one run: medians and the ratio to the first width's time, kernel by kernel
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "toolchain"))

import harness  # noqa: E402
import workloads  # noqa: E402
from harness import Contender, py_timer  # noqa: E402
from prunec.encode import choose_encoding, encode_bsell, encode_rsell, index_bits_for  # noqa: E402
from prunec import targets as _targets  # noqa: E402

X86_TARGET = _targets.get("x86_64-avx2")

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
INF = float("inf")


class Keep:
    """Holds numpy buffers and cffi objects alive for as long as the contenders may run."""

    def __init__(self):
        self.items = []

    def __call__(self, o):
        self.items.append(o)
        return o


def _rcsr_struct(ffi, keep, enc):
    r = enc.rcsr
    s = keep(ffi.new("prunec_rcsr_f32 *"))
    s.rows, s.cols, s.index_bits = r.rows, r.cols, r.index_bits
    vals = keep(np.ascontiguousarray(r.values, dtype=np.float32))
    idx = keep(np.frombuffer(r.packed_index() + b"\0" * 64, dtype=np.uint8).copy())  # padded: kernels may over-read
    ptr = keep(np.ascontiguousarray(r.row_ptr, dtype=np.uint32))
    s.values = keep(ffi.from_buffer("float[]", vals))
    s.index = keep(ffi.from_buffer("uint8_t[]", idx))
    s.row_ptr = keep(ffi.from_buffer("uint32_t[]", ptr))
    return s


def _aligned64(a: np.ndarray) -> np.ndarray:
    """A copy of `a` whose data starts on a 64-byte boundary (what `prunec build` gives a blocked layout's values)."""
    raw = np.zeros(a.nbytes + 64, dtype=np.uint8)
    off = (-raw.ctypes.data) % 64
    out = raw[off:off + a.nbytes].view(a.dtype)
    out[:] = a.reshape(-1)
    return out


def _sliced_struct(ffi, keep, sl, kind):
    """prunec_bsell_f32 or prunec_rsell_f32 (`kind` "bsell" / "rsell") of a sliced layout; values 64-byte aligned."""
    s = keep(ffi.new(f"prunec_{kind}_f32 *"))
    s.rows, s.cols = sl.rows, sl.cols
    steps_t = "uint8_t" if kind == "bsell" else "uint32_t"
    s.perm = keep(ffi.from_buffer("uint16_t[]", keep(np.ascontiguousarray(sl.perm, dtype=np.uint16))))
    s.steps = keep(ffi.from_buffer(f"{steps_t}[]", keep(np.ascontiguousarray(sl.steps, dtype=np.dtype(steps_t[:-2])))))
    s.index = keep(ffi.from_buffer("uint8_t[]", keep(np.ascontiguousarray(sl.index, dtype=np.uint8))))
    s.values = keep(ffi.from_buffer("float[]", keep(_aligned64(np.asarray(sl.values, dtype=np.float32)))))
    return s


def _dense_struct(ffi, keep, w):
    s = keep(ffi.new("prunec_dense_f32 *"))
    s.rows, s.cols = w.shape
    wv = keep(np.ascontiguousarray(w, dtype=np.float32))
    s.values = keep(ffi.from_buffer("float[]", wv))
    return s


# Largest error allowed, relative to the reference's largest magnitude. fp32 kernels measure <= 1.6e-6 on every
# workload layer (vgg16.fc6's 25088-long dot products included); 2e-3 let a kernel through that drops or misreads
# a single nonzero whose product is under 0.2 % of the largest output.
CHECK_TOL = 1e-4


def _check(name, got, ref, tol=CHECK_TOL):
    err = float(np.max(np.abs(got.astype(np.float64) - ref)) / (np.max(np.abs(ref)) + 1e-30))
    if not np.isfinite(err) or err > tol:
        raise AssertionError(f"{name}: output differs from the reference (max rel err {err:.2e})")


def fc_contenders(layer, w, bias, x1, batch, lib_t, torch_csr=True, scipy_csr=True, relu=True, x_zeros=0.0):
    import torch
    import torch.nn.functional as F

    ffi, lib, ks = lib_t
    keep = Keep()
    lo, hi = (0.0, INF) if relu else (-INF, INF)
    rows, cols = w.shape
    rng = np.random.default_rng(1)
    X = x1[None, :] if batch == 1 else np.vstack([x1] + [_relu_like(rng.standard_normal(cols, dtype=np.float32), x_zeros, rng)
                                                         for _ in range(batch - 1)])
    X = keep(np.ascontiguousarray(X))
    ref = X.astype(np.float64) @ w.T.astype(np.float64) + bias
    if relu:
        ref = np.maximum(ref, 0)
    enc = choose_encoding(w, allow_dense=False, bits_options=index_bits_for("fc"))
    # the x86 target's row alignment (x86_64-avx2: fc rows padded to 8 entries), what `prunec build` gives its kernels
    align = X86_TARGET.row_align_for("fc")
    enc_al = choose_encoding(w, allow_dense=False, bits_options=index_bits_for("fc"), row_align=align) if align > 1 else None
    out = []
    xb = keep(ffi.from_buffer("float[]", X))
    bb = keep(ffi.from_buffer("float[]", keep(bias.copy())))
    rs = _rcsr_struct(ffi, keep, enc)
    rs_al = _rcsr_struct(ffi, keep, enc_al) if enc_al is not None else None
    # the column-major storage of --skip-zero-inputs (W^T, unpadded), timed when the inputs have zeros
    cs_ = _rcsr_struct(ffi, keep, choose_encoding(w, allow_dense=False, bits_options=index_bits_for("fc"),
                                                  columns=True)) if x_zeros else None
    ds = _dense_struct(ffi, keep, w)
    bs = _sliced_struct(ffi, keep, encode_bsell(w), "bsell")  # the blocked sliced layout (docs/FORMAT.md "Blocked fc
    ss = _sliced_struct(ffi, keep, encode_rsell(w), "rsell")  # layers") and the relative-indexed one ("Sliced fc layers")
    for k, aligned in [(k, False) for k in ks] + [(k, True) for k in ks if rs_al is not None and k.isa in X86_TARGET.isa and k.isa != "portable"]:
        if k.op not in ("fc_rcsr", "fc_dense", "fc_rcsc", "fc_bsell", "fc_rsell") or (aligned and k.op != "fc_rcsr") or \
                (k.op == "fc_rcsc" and cs_ is None):
            continue
        Y = keep(np.full((batch, rows), np.nan, dtype=np.float32))
        yb = keep(ffi.from_buffer("float[]", Y, require_writable=True))
        fn = ffi.addressof(lib, k.name)
        if k.op == "fc_rcsc":  # same signature as fc_rcsr
            run = (lambda fn, yb: lambda n: lib.bench_fc_rcsr(fn, cs_, bb, xb, yb, batch, n, lo, hi))(fn, yb)
            c = Contender(f"prunec sparse, zero inputs skipped [{k.isa}]", run, "prunec-sparse")
        elif k.op == "fc_bsell":
            run = (lambda fn, yb: lambda n: lib.bench_fc_bsell(fn, bs, bb, xb, yb, batch, n, lo, hi))(fn, yb)
            c = Contender(f"prunec sparse, blocked layout [{k.isa}]", run, "prunec-sparse")
        elif k.op == "fc_rsell":
            run = (lambda fn, yb: lambda n: lib.bench_fc_rsell(fn, ss, bb, xb, yb, batch, n, lo, hi))(fn, yb)
            c = Contender(f"prunec sparse, sliced layout [{k.isa}]", run, "prunec-sparse")
        elif k.op == "fc_rcsr":
            st = rs_al if aligned else rs
            run = (lambda fn, yb, st: lambda n: lib.bench_fc_rcsr(fn, st, bb, xb, yb, batch, n, lo, hi))(fn, yb, st)
            c = Contender(f"prunec sparse [{k.isa}{f', rows aligned to {align}' if aligned else ''}]", run, "prunec-sparse")
        else:
            run = (lambda fn, yb: lambda n: lib.bench_fc_dense(fn, ds, bb, xb, yb, batch, n, lo, hi))(fn, yb)
            c = Contender(f"prunec dense [{k.isa}]", run, "prunec-dense")
        run(1)
        _check(c.name, Y, ref)
        out.append(c)

    torch.set_num_threads(1)
    Wt, bt = torch.from_numpy(w), torch.from_numpy(bias)
    Xt = torch.from_numpy(X)
    act = torch.relu if relu else (lambda t: t)
    with torch.inference_mode():
        _check("torch dense", act(F.linear(Xt, Wt, bt)).numpy(), ref)

    def torch_dense():
        with torch.inference_mode():
            return act(F.linear(Xt, Wt, bt))
    out.append(Contender("pytorch dense", py_timer(torch_dense), "pytorch"))
    if torch_csr:
        c64 = Wt.to_sparse_csr()
        c32 = torch.sparse_csr_tensor(c64.crow_indices().to(torch.int32), c64.col_indices().to(torch.int32),
                                      c64.values(), c64.shape)
        XT = Xt.T.contiguous()
        for label, cm in (("pytorch csr int64", c64), ("pytorch csr int32", c32)):
            if batch == 1:
                f = (lambda cm, xv=Xt[0]: lambda: act(torch.addmv(bt, cm, xv)))(cm)
            else:
                f = (lambda cm, bcol=bt[:, None]: lambda: act(torch.addmm(bcol, cm, XT)))(cm)
            with torch.inference_mode():
                got = f().numpy()
            _check(label, got.reshape(rows, -1).T if batch > 1 else got[None, :], ref)
            out.append(Contender(label, py_timer(f), "pytorch"))
    if scipy_csr:
        import scipy.sparse  # the bench extra: only where it is timed

        S = scipy.sparse.csr_matrix(w)
        if batch == 1:
            f = lambda xv=X[0]: np.maximum(S @ xv + bias, 0) if relu else S @ xv + bias  # noqa: E731
        else:
            XTn = np.ascontiguousarray(X.T)
            f = lambda bcol=bias[:, None]: np.maximum(S @ XTn + bcol, 0)  # noqa: E731
        got = f()
        _check("scipy csr", got.T if batch > 1 else got[None, :], ref)
        out.append(Contender(f"scipy csr (int{S.indices.dtype.itemsize * 8})", py_timer(f), "scipy"))
    out_keep = keep
    for c in out:
        c.keep = out_keep  # type: ignore[attr-defined]
    return out, enc



def conv_params(ffi, keep, cv):
    """A prunec_conv2d_params for the workload conv `cv` (square, dilation 1), kept alive by `keep`."""
    p = keep(ffi.new("prunec_conv2d_params *"))
    p.in_c, p.in_h, p.in_w = cv.in_c, cv.in_hw, cv.in_hw
    p.out_c, p.out_h, p.out_w = cv.out_c, cv.out_hw, cv.out_hw
    p.kh = p.kw = cv.k
    p.stride_h = p.stride_w = cv.stride
    p.pad_h = p.pad_w = cv.pad
    p.dil_h = p.dil_w = 1
    p.groups = cv.groups
    return p

def conv_contenders(layer, w, bias, x, lib_t):
    import torch
    import torch.nn.functional as F

    ffi, lib, ks = lib_t
    keep = Keep()
    cv = layer.conv
    p = conv_params(ffi, keep, cv)
    torch.set_num_threads(1)
    w4 = torch.from_numpy(w.reshape(cv.out_c, cv.in_c // cv.groups, cv.k, cv.k))
    bt = torch.from_numpy(bias)
    xt = torch.from_numpy(x)[None]
    with torch.inference_mode():
        ref = torch.relu(F.conv2d(xt.double(), w4.double(), bt.double(), cv.stride, cv.pad, 1, cv.groups))[0].numpy()
    enc = choose_encoding(w, allow_dense=False, bits_options=index_bits_for("conv2d"))
    xb = keep(ffi.from_buffer("float[]", keep(np.ascontiguousarray(x))))
    bb = keep(ffi.from_buffer("float[]", keep(bias.copy())))
    rs = _rcsr_struct(ffi, keep, enc)
    ds = _dense_struct(ffi, keep, w)
    out = []
    for k in ks:
        if k.op not in ("conv2d_rcsr", "conv2d_dense"):
            continue
        Y = keep(np.full(ref.shape, np.nan, dtype=np.float32))
        yb = keep(ffi.from_buffer("float[]", Y, require_writable=True))
        fn = ffi.addressof(lib, k.name)
        if k.op == "conv2d_rcsr":
            run = (lambda fn, yb: lambda n: lib.bench_conv_rcsr(fn, p, rs, bb, xb, yb, n, 0.0, INF))(fn, yb)
            c = Contender(f"prunec sparse [{k.isa}]", run, "prunec-sparse")
        else:
            run = (lambda fn, yb: lambda n: lib.bench_conv_dense(fn, p, ds, bb, xb, yb, n, 0.0, INF))(fn, yb)
            c = Contender(f"prunec dense [{k.isa}]", run, "prunec-dense")
        run(1)
        _check(c.name, Y, ref)
        out.append(c)

    def torch_dense():
        with torch.inference_mode():
            return torch.relu(F.conv2d(xt, w4, bt, cv.stride, cv.pad, 1, cv.groups))
    with torch.inference_mode():
        _check("pytorch dense", torch_dense()[0].numpy(), ref)
    out.append(Contender("pytorch dense (oneDNN)", py_timer(torch_dense), "pytorch"))
    for c in out:
        c.keep = keep  # type: ignore[attr-defined]
    return out, enc


def layer_bound(layer, enc, lim, batch=1):
    """Machine bound of the sparse layer (its own bytes and useful FLOPs) and of the dense layer."""
    rows, cols = layer.matrix_shape()
    sp = enc.total_bytes
    dn = rows * cols * 4
    if layer.conv:
        cv = layer.conv
        io = 4 * (cv.in_c * cv.in_hw ** 2 + cv.out_c * cv.out_hw ** 2)
        pix = cv.out_hw ** 2
    else:
        io = 4 * batch * (rows + cols)
        pix = batch
    tb_s, why_s = harness.bound_seconds(sp + io, 2.0 * enc.nonzero * pix, lim)
    tb_d, why_d = harness.bound_seconds(dn + io, 2.0 * rows * cols * pix, lim)
    return {"sparse_bound_s": tb_s, "sparse_bound_by": why_s, "dense_bound_s": tb_d, "dense_bound_by": why_d}


def _relu_like(x, zeros, rng):
    """x itself (zeros 0), else |x| with a `zeros` share of it set to 0: a ReLU's output, as an fc layer after one
    sees it."""
    if not zeros:
        return x
    x = np.abs(x)
    x[rng.random(x.shape) < zeros] = 0.0
    return x


def bench_layer(layer, batch, lib_t, lim, reps, target_s, seed=0, extra=None, x_zeros=0.0):
    w, bias, x = workloads.random_layer(layer, seed)
    if layer.conv:
        cs, enc = conv_contenders(layer, w, bias, x, lib_t)
    else:
        x = _relu_like(x, x_zeros, np.random.default_rng(seed + 7))
        cs, enc = fc_contenders(layer, w, bias, x, batch, lib_t, x_zeros=x_zeros)
    harness.measure(cs, reps=reps, target_s=target_s)
    rows, cols = layer.matrix_shape()
    res = {
        "layer": layer.key, "kind": layer.kind, "shape": layer.shape_str(), "batch": batch,
        "density": layer.density, "nonzero": enc.nonzero, "entries": enc.rcsr.entries,
        "index_bits": enc.index_bits, "fillers": enc.fillers,
        "sparse_bytes": enc.total_bytes, "dense_bytes": rows * cols * 4, "dense_macs": layer.dense_macs() * batch,
        "median_s": {c.name: c.median for c in cs}, "times_s": {c.name: c.times for c in cs},
        "group": {c.name: c.group for c in cs}, "reps": reps, "x_zeros": x_zeros,
    }
    res.update(layer_bound(layer, enc, lim, batch))
    return res


def best(res, group):
    items = [(t, n) for n, t in res["median_s"].items() if res["group"][n] == group]
    return min(items) if items else (float("nan"), "-")


def fmt_t(s):
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def summary_rows(results):
    """One line per layer: best prunec sparse, ratios against each contender, bound fraction."""
    lines = []
    for r in results:
        ts, ns = best(r, "prunec-sparse")
        td, _ = best(r, "prunec-dense")
        m = r["median_s"]
        pt = m.get("pytorch dense", m.get("pytorch dense (oneDNN)"))
        lines.append({
            "layer": r["layer"], "shape": r["shape"], "batch": r["batch"], "density": r["density"],
            "bits": r["index_bits"], "size_ratio": r["dense_bytes"] / r["sparse_bytes"],
            "sparse_s": ts, "sparse_kernel": ns, "prunec_dense_s": td, "pytorch_dense_s": pt,
            "vs_prunec_dense": td / ts, "vs_pytorch_dense": pt / ts,
            "vs_csr64": m.get("pytorch csr int64", float("nan")) / ts,
            "vs_csr32": m.get("pytorch csr int32", float("nan")) / ts,
            "vs_scipy": next((t for n, t in m.items() if n.startswith("scipy")), float("nan")) / ts,
            "bound_frac": r["sparse_bound_s"] / ts, "bound_by": r["sparse_bound_by"],
        })
    return lines


def print_table(results, out=sys.stdout):
    print("| layer | shape | batch | density | b | dense/sparse bytes | prunec sparse (kernel) | prunec dense | "
          "PyTorch dense | × prunec dense | × PyTorch dense | × PT CSR i64 | × PT CSR i32 | × scipy | % of bound |",
          file=out)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", file=out)
    for s in summary_rows(results):
        print(f"| {s['layer']} | {s['shape']} | {s['batch']} | {s['density']:.0%} | {s['bits']} | {s['size_ratio']:.1f} | "
              f"{fmt_t(s['sparse_s'])} ({s['sparse_kernel'].split('[')[-1].rstrip(']')}) | {fmt_t(s['prunec_dense_s'])} | "
              f"{fmt_t(s['pytorch_dense_s'])} | {s['vs_prunec_dense']:.2f} | {s['vs_pytorch_dense']:.2f} | "
              f"{s['vs_csr64']:.2f} | {s['vs_csr32']:.2f} | {s['vs_scipy']:.2f} | "
              f"{100 * s['bound_frac']:.0f}% ({s['bound_by']}) |", file=out)


def sweep(lib_t, lim, reps, target_s, densities=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0), size=4096):
    out = []
    for d in densities:
        layer = workloads.fc("synthetic", f"fc{size}@{d:g}", size, size, d)
        w, bias, x = workloads.random_layer(layer, 0)
        cs, enc = fc_contenders(layer, w, bias, x, 1, lib_t, scipy_csr=False)
        harness.measure(cs, reps=reps, target_s=target_s)
        r = {"density": d, "index_bits": enc.index_bits, "sparse_bytes": enc.total_bytes,
             "dense_bytes": size * size * 4, "median_s": {c.name: c.median for c in cs},
             "group": {c.name: c.group for c in cs}}
        ts, ns = best(r, "prunec-sparse")
        print(f"density {d:6.0%}  b={enc.index_bits:2d}  best sparse {fmt_t(ts):>10} ({ns})  "
              f"× prunec dense {best(r, 'prunec-dense')[0] / ts:6.2f}  × PyTorch dense "
              f"{r['median_s']['pytorch dense'] / ts:6.2f}  × PT CSR i32 {r['median_s']['pytorch csr int32'] / ts:5.2f}",
              flush=True)
        out.append(r)
    return out


def bits_contenders(layer, w, bias, x, bits_list, lib_t, row_align=None):
    """prunec's sparse kernels on `layer` stored with each index width of `bits_list` (fc rows padded to the
    x86 target's row alignment, or `row_align`): one contender per (kernel, width), output checked."""
    import torch
    import torch.nn.functional as F

    ffi, lib, ks = lib_t
    keep = Keep()
    cv = layer.conv
    if cv:
        p = conv_params(ffi, keep, cv)
        w4 = torch.from_numpy(w.reshape(cv.out_c, cv.in_c // cv.groups, cv.k, cv.k)).double()
        with torch.inference_mode():
            ref = torch.relu(F.conv2d(torch.from_numpy(x)[None].double(), w4, torch.from_numpy(bias).double(),
                                      cv.stride, cv.pad, 1, cv.groups))[0].numpy()
        align, op = 1, "conv2d_rcsr"
    else:
        ref = np.maximum(x.astype(np.float64) @ w.T.astype(np.float64) + bias, 0)[None, :]
        align = X86_TARGET.row_align_for("fc") if row_align is None else row_align
        op = "fc_rcsr"
    xb = keep(ffi.from_buffer("float[]", keep(np.ascontiguousarray(x))))
    bb = keep(ffi.from_buffer("float[]", keep(bias.copy())))
    out, encs = [], {}
    for b in bits_list:
        enc = choose_encoding(w, allow_dense=False, bits_options=(b,), row_align=align)
        encs[b] = enc
        rs = _rcsr_struct(ffi, keep, enc)
        for k in ks:
            if k.op != op:
                continue
            Y = keep(np.full(ref.shape, np.nan, dtype=np.float32))
            yb = keep(ffi.from_buffer("float[]", Y, require_writable=True))
            fn = ffi.addressof(lib, k.name)
            if cv:
                run = (lambda fn, yb, rs: lambda n: lib.bench_conv_rcsr(fn, p, rs, bb, xb, yb, n, 0.0, INF))(fn, yb, rs)
            else:
                run = (lambda fn, yb, rs: lambda n: lib.bench_fc_rcsr(fn, rs, bb, xb, yb, 1, n, 0.0, INF))(fn, yb, rs)
            c = Contender(f"{k.isa} b={b}", run, "prunec-sparse")
            c.isa, c.bits = k.isa, b  # type: ignore[attr-defined]
            run(1)
            _check(f"{k.name} b={b}", Y, ref)
            out.append(c)
    for c in out:
        c.keep = keep  # type: ignore[attr-defined]
    return out, encs


def bits_compare(keys, bits_list, lib_t, reps, target_s, row_align=None):
    """--index-bits: per layer, every x86 kernel on every width, interleaved; ratios to the first width."""
    results = []
    print(f"| layer | density | kernel | " + " | ".join(f"b={b}" for b in bits_list) + " | " +
          " | ".join(f"b={b} / b={bits_list[0]}" for b in bits_list[1:]) + " |")
    print("|---|---|---|" + "---|" * (2 * len(bits_list) - 1))
    for key in keys:
        layer = workloads.by_key(key)
        w, bias, x = workloads.random_layer(layer, 0)
        cs, encs = bits_contenders(layer, w, bias, x, bits_list, lib_t, row_align)
        harness.measure(cs, reps=reps, target_s=target_s)
        med = {(c.isa, c.bits): c.median for c in cs}
        for isa in dict.fromkeys(c.isa for c in cs):
            ts = [med[(isa, b)] for b in bits_list]
            print(f"| {key} | {layer.density:.0%} | {isa} | " + " | ".join(fmt_t(t) for t in ts) + " | " +
                  " | ".join(f"{t / ts[0]:.3f}" for t in ts[1:]) + " |", flush=True)
        results.append({"layer": key, "density": layer.density, "reps": reps,
                        "bytes": {b: e.total_bytes for b, e in encs.items()},
                        "entries": {b: e.rcsr.entries for b, e in encs.items()},
                        "median_s": {c.name: c.median for c in cs}, "times_s": {c.name: c.times for c in cs}})
    print("# bytes (values + index + row_ptr): " + "; ".join(
        f"{r['layer']} " + ", ".join(f"b={b} {n}" for b, n in r["bytes"].items()) for r in results))
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="", help="comma-separated keys (net.layer); default all")
    ap.add_argument("--batch", default="1,8", help="batch sizes; 8 applies to fc layers only")
    ap.add_argument("--reps", type=harness.positive_int, default=7)
    ap.add_argument("--target-ms", type=float, default=30.0, help="time per contender per repetition")
    ap.add_argument("--sweep", action="store_true", help="density sweep of a 4096x4096 fc instead")
    ap.add_argument("--json", default="", help="write the results here")
    ap.add_argument("--core", type=int, default=None)
    ap.add_argument("--x-zeros", type=float, default=0.0, metavar="Z",
                    help="fc inputs as a ReLU's output with this share of zeros (default 0: random normal); above 0 "
                         "the column-major kernels of --skip-zero-inputs are timed too")
    ap.add_argument("--index-bits", default="", help="e.g. 6,8: time the sparse kernels on each layer stored with "
                    "each of these index widths, interleaved (no PyTorch/scipy); ratios to the first width")
    ap.add_argument("--row-align", type=int, default=None, help="with --index-bits: fc row alignment (default: "
                    "the x86_64-avx2 target's)")
    a = ap.parse_args(argv)
    keys = harness.layer_keys(ap, "--layers", a.layers) if a.layers else [l.key for l in workloads.LAYERS]
    try:
        batches = [int(v) for v in a.batch.split(",") if v]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        ap.error(f"--batch {a.batch!r}: give positive batch sizes, e.g. 1,8")
    if not a.target_ms > 0:
        ap.error(f"--target-ms {a.target_ms}: give a positive time per contender per repetition")
    bits_list = list(dict.fromkeys(b for item in a.index_bits.split(",") if item
                                   for b in harness.index_widths(ap, "--index-bits", item))) if a.index_bits else []
    if a.row_align is not None:
        from prunec.encode import check_row_align
        from prunec.errors import PrunecError

        try:
            check_row_align(a.row_align, "--row-align")
        except PrunecError as e:
            ap.error(str(e))
    if not 0 <= a.x_zeros < 1:
        ap.error(f"--x-zeros {a.x_zeros}: give the share of zero inputs, in [0, 1)")
    if a.core is not None and a.core not in os.sched_getaffinity(0):
        ap.error(f"--core {a.core}: this process may run on cores {', '.join(map(str, sorted(os.sched_getaffinity(0))))}")
    core = harness.pin_one_core(a.core)
    lim = harness.machine_limits(quick=True)
    lib_t = harness.kernels_lib()
    print(f"# pinned to core {core}; limits: " + ", ".join(f"{k} {v:g}" for k, v in lim.items()), flush=True)
    print("# kernels: " + ", ".join(k.name for k in lib_t[2]), flush=True)
    doc = {"machine": harness.machine_description(), "limits": lim, "reps": a.reps,
           "kernels": [k.name for k in lib_t[2]]}
    if a.index_bits:
        doc["index_bits"] = bits_compare(keys, bits_list, lib_t, a.reps, a.target_ms / 1e3, a.row_align)
    elif a.sweep:
        doc["sweep"] = sweep(lib_t, lim, a.reps, a.target_ms / 1e3)
    else:
        results = []
        for b in batches:
            for key in keys:
                layer = workloads.by_key(key)
                if b > 1 and layer.conv:
                    continue
                r = bench_layer(layer, b, lib_t, lim, a.reps, a.target_ms / 1e3, x_zeros=a.x_zeros)
                results.append(r)
                s = summary_rows([r])[0]
                print(f"{key:18s} b{b} {fmt_t(s['sparse_s']):>10} ({s['sparse_kernel']}); × prunec dense "
                      f"{s['vs_prunec_dense']:.2f}, × PyTorch dense {s['vs_pytorch_dense']:.2f}, "
                      f"× CSR i32 {s['vs_csr32']:.2f}, bound {100 * s['bound_frac']:.0f}%", flush=True)
        doc["layers"] = results
        print()
        print_table(results)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
