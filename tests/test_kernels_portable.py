"""The portable C kernels (runtime_c/src/portable) against float64 numpy/torch references.

One test per (registered portable kernel, edge case); the cases and the comparison live in kernel_harness.py
so that ISA kernels reuse them. Also: the registry is consistent, every runtime source compiles warning-free
under gcc and clang, and a sanitizer-built C driver runs the kernels on edge shapes without a report.
"""
from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import kernel_harness as kh
from prunec import encode, runtime
from prunec.resources import runtime_dir

PORTABLE = [k for k in runtime.kernels() if k.isa == runtime.PORTABLE]
CASES = [pytest.param(k, c, id=i) for k, c, i in kh.case_params(PORTABLE)]
WARN_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O2"]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def portable(tmp_path_factory):
    """(ffi, lib) of every portable kernel, compiled once per session."""
    return kh.build_kernels(runtime.sources_for(PORTABLE), tmpdir=tmp_path_factory.mktemp("portable"))


@pytest.mark.parametrize("kernel,case", CASES)
def test_kernel_matches_reference(portable, kernel, case):
    ffi, lib = portable
    kh.check(ffi, lib, kernel, case)


def test_sparse_and_dense_fc_agree(portable):
    """Same weights, both storages: the kernels sum in the same order, so they agree to rounding."""
    ffi, lib = portable
    for case in kh.fc_cases((8,))[:12]:
        sparse = kh.run(ffi, lib, "prunec_f32_fc_rcsr__portable", case)
        dense = kh.run(ffi, lib, "prunec_f32_fc_dense__portable", kh.FcCase(**{**case.__dict__, "bits": None}))
        np.testing.assert_allclose(sparse, dense, rtol=1e-6, atol=1e-6, err_msg=case.id)


@pytest.mark.parametrize("bad", [0, 17, 32, 0xFFFFFFFF])
def test_invalid_index_bits_poisons_output(portable, bad):
    """Widths outside 1..16 are not an encoding (docs/FORMAT.md): every output is NaN, fc and conv."""
    ffi, lib = portable
    keep = kh._Keep()
    r = encode.encode_rcsr(np.eye(3, dtype=np.float32), 8)
    w = kh.rcsr_struct(ffi, keep, r)
    w.index_bits = bad
    x = np.ones(3, np.float32)
    y = np.zeros(3, np.float32)
    lib.prunec_f32_fc_rcsr__portable(w, ffi.NULL, keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True),
                                     -np.inf, np.inf)
    assert np.isnan(y).all()
    p = ffi.new("prunec_conv2d_params *", dict(in_c=3, in_h=1, in_w=1, out_c=3, out_h=1, out_w=1, kh=1, kw=1,
                                                stride_h=1, stride_w=1, pad_h=0, pad_w=0, dil_h=1, dil_w=1, groups=1))
    y[:] = 0
    lib.prunec_f32_conv2d_rcsr__portable(p, w, ffi.NULL, keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True),
                                         -np.inf, np.inf)
    assert np.isnan(y).all()


@pytest.mark.parametrize("bits", [b for b in encode.INDEX_BITS if b not in kh.CASE_BITS])
def test_every_other_index_width(portable, bits):
    """The widths the edge cases leave out (kh.CASE_BITS has 1, 4..8, 12, 16): a few shapes each, fc and conv,
    fillers included."""
    ffi, lib = portable
    for case in [c for c in kh.fc_cases((bits,)) if c.pattern in ("far", "empty_rows") or c.rows == 64]:
        kh.check(ffi, lib, "prunec_f32_fc_rcsr__portable", case)
    for case in [c for c in kh.conv_cases((bits,)) if c.pattern == "far" or c.density == 0.2]:
        kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__portable", case)


# ---- registry -------------------------------------------------------------------------------------------

def test_registry_is_consistent():
    ks = runtime.kernels()
    header = (runtime_dir() / "include" / "prunec_kernels.h").read_text()
    assert {k.op for k in ks} == set(kh.SIGNATURES)
    for k in ks:
        assert (runtime_dir() / k.source).is_file(), k
        assert re.fullmatch(r"prunec_f32_\w+__" + k.isa, k.name), k
        declared = k.name in header or f"({k.isa})" in header
        assert declared, f"{k.name} is not declared in prunec_kernels.h"
    # every op has a portable twin, the fallback of select()
    assert {k.op for k in ks} == {k.op for k in PORTABLE}
    assert all(kh.twin_of(k).isa == runtime.PORTABLE and kh.twin_of(k).op == k.op for k in ks)


def test_select_prefers_isa_order_and_falls_back_to_portable():
    for op in runtime.ops():
        assert runtime.select(op, ("no-such-isa",)).isa == runtime.PORTABLE
        for k in runtime.kernels():
            if k.op == op:
                assert runtime.select(op, (k.isa, runtime.PORTABLE)) == k
    with pytest.raises(KeyError, match="no_such_op"):
        runtime.select("no_such_op", ())


def test_sources_and_headers():
    srcs = runtime.sources_for(runtime.kernels())
    assert srcs == sorted(set(srcs))
    assert runtime.sources_for([runtime.select("fc_rcsr", ())]) == ["src/portable/f32-fc-rcsr-portable.c"]
    pool = runtime.select("maxpool2d", ("avx512x4",))
    assert pool.uses == ("prunec_f32_maxpool2d__portable",)
    assert runtime.sources_for([pool]) == ["src/avx512/f32-maxpool2d-avx512-x4.c",
                                           "src/portable/f32-pool2d-portable.c"]
    hs = runtime.headers()
    assert "include/prunec_kernels.h" in hs and "include/prunec_types.h" in hs
    assert all((runtime_dir() / h).is_file() for h in hs)


def test_registry_rejects_a_call_to_an_unregistered_kernel(tmp_path):
    inc = tmp_path / "kernels.inc"
    inc.write_text('PRUNEC_KERNEL(prunec_f32_a__portable, fc_rcsr, portable, "src/a.c")\n'
                   "PRUNEC_KERNEL_USES(prunec_f32_a__portable, prunec_f32_b__portable)\n")
    with pytest.raises(ValueError, match="prunec_f32_b__portable, which is not registered"):
        runtime._parse(str(inc), 0)


# ---- compilers and sanitizers ---------------------------------------------------------------------------

# Flags that enable an ISA directory's code on this host (others compile to their #else branch only).
HOST_ISA_FLAGS = {"avx2": ["-mavx2", "-mfma"], "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"]}


def _runtime_sources() -> list[str]:
    """Every kernel source, relative to runtime_c/: the registry's and anything else under runtime_c/src."""
    reg = {k.source for k in runtime.kernels()}
    found = {str(p.relative_to(runtime_dir())) for p in (runtime_dir() / "src").rglob("*.c")}
    return sorted(reg | found)


def _compile_variants() -> list:
    out = []
    for src in _runtime_sources():
        isa = Path(src).parts[1] if len(Path(src).parts) > 2 else "portable"
        variants = [("plain", [])]
        if isa in HOST_ISA_FLAGS and platform.machine() in ("x86_64", "AMD64"):
            variants.append((isa, HOST_ISA_FLAGS[isa]))
        for cc in ("gcc", "clang"):
            for tag, flags in variants:
                out.append(pytest.param(cc, src, flags, id=f"{cc}-{tag}-{src}"))
    return out


@pytest.mark.parametrize("cc,src,flags", _compile_variants())
def test_source_compiles_without_warnings(cc, src, flags, tmp_path):
    """-std=c99 -Wall -Wextra -Wpedantic -Werror, without the ISA's flags (an ISA file must still be a valid,
    non-empty translation unit) and, where this host has the ISA, with them."""
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    cmd = [cc, *WARN_FLAGS, *flags, "-I", str(runtime_dir() / "include"), "-c", str(runtime_dir() / src),
           "-o", str(tmp_path / "k.o")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr, res.stderr


def test_kernels_under_address_and_ub_sanitizers(tmp_path):
    """A C driver (tests/c/sanitize_kernels.c) runs every portable kernel on edge shapes (empty and all-zero
    matrices, gaps beyond 2^b for each b, padding, ceil-mode windows, in-place elementwise) built with
    -fsanitize=address,undefined; it checks that every output was written and that sparse and dense twins
    agree. Any sanitizer report fails the test."""
    cc = shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "sanitize_kernels"
    srcs = [runtime_dir() / s for s in runtime.sources_for(PORTABLE)]
    build = subprocess.run(
        [cc, "-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer", "-I", str(runtime_dir() / "include"), str(HERE / "c" / "sanitize_kernels.c"),
         *map(str, srcs), "-lm", "-o", str(exe)], capture_output=True, text=True)
    if build.returncode != 0 and "asan" in build.stderr.lower():
        pytest.skip("sanitizer runtime not installed: " + build.stderr[-300:])
    assert build.returncode == 0, build.stderr
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                         env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                              "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"})
    assert res.returncode == 0 and not res.stderr, res.stdout[-2000:] + res.stderr[-4000:]


def test_kernel_uses_lines_match_the_calls_in_the_sources():
    """kernels.inc's PRUNEC_KERNEL_USES lines are what a build copies besides the selected kernels' sources: a
    call to another registered kernel without its line fails to link on some build, and a stale line copies a
    source for nothing. Per source file, the registered kernels it calls (comments stripped, definitions
    excluded) are exactly the callees its kernels declare."""
    ks = runtime.kernels()
    names = {k.name for k in ks}
    by_source: dict[str, list] = {}
    for k in ks:
        by_source.setdefault(k.source, []).append(k)
    for src, kernels in by_source.items():
        text = (runtime_dir() / src).read_text()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        defined = {k.name for k in kernels}
        called = {m.group(1) for m in re.finditer(r"\b(prunec_f32_\w+__\w+)\s*\(", text)
                  if m.group(1) in names and m.group(1) not in defined}
        declared = {c for k in kernels for c in k.uses}
        assert called == declared, f"{src}: calls {sorted(called)}, kernels.inc declares {sorted(declared)}"


def test_a_build_without_odd_widths_fills_nan_for_them(tmp_path):
    """Compiled with PRUNEC_RCSR_ODD_WIDTHS 0 (what prunec build writes into prunec_config.h when every layer uses
    4, 8 or 16 bits), the kernels have no decoder for the other widths: such a layer fills NaN, as an invalid
    one, and 4/8/16 still compute."""
    ffi, lib = kh.build_kernels(runtime.sources_for(PORTABLE), ["-DPRUNEC_RCSR_ODD_WIDTHS=0"], tmpdir=tmp_path)
    w = np.random.default_rng(0).standard_normal((5, 40)).astype(np.float32)
    w[np.random.default_rng(1).random(w.shape) < 0.7] = 0
    x = np.random.default_rng(2).standard_normal(40).astype(np.float32)
    for bits, ok in ((6, False), (1, False), (8, True), (4, True), (16, True)):
        keep = kh._Keep()
        ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w, bits))
        y = np.zeros(5, np.float32)
        lib.prunec_f32_fc_rcsr__portable(ws, ffi.NULL, keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True),
                                         -np.inf, np.inf)
        if ok:
            np.testing.assert_allclose(y, w @ x, rtol=1e-5, atol=1e-5)
        else:
            assert np.isnan(y).all(), bits


@pytest.mark.parametrize("bits", [11, 13, 15])
def test_conv_codes_spanning_three_bytes_with_their_top_bit_set(portable, bits):
    """prunec_rcsr_code_any (the conv kernels' decoder of widths other than 4/8/16) reads a third byte when a code's
    bits s .. s+b-1 pass bit 15 (s + b > 16). For b = 11, 13 and 15 a code can start at s = 17 - b, so only its top
    bit lies in the third byte: that bit is set only by gaps >= 2^(b-1), which no random case draws at these offsets.
    Row 0: entries 0 .. e-1 at columns 0 .. e-1, then entry e (the first starting at bit s = 17 - b) after a gap of
    2^(b-1) + 5 columns; row 1: the same entries shifted by one entry (e's code no longer there: the control)."""
    ffi, lib = portable
    e = next(k for k in range(8) if (k * bits) % 8 == 17 - bits)
    gap = (1 << (bits - 1)) + 5
    cin = e + gap + 8
    w = np.zeros((2, cin, 1, 1), np.float32)
    rng = np.random.default_rng(bits)
    w[0, :e, 0, 0] = rng.uniform(0.5, 1.5, e)
    w[0, e + gap - 1, 0, 0] = 2.0  # entry e: column e-1 + gap, code gap - 1 >= 2^(b-1)
    w[1, :e + 1, 0, 0] = rng.uniform(0.5, 1.5, e + 1)
    w[1, cin - 1, 0, 0] = -1.0
    x = rng.standard_normal((cin, 2, 2)).astype(np.float32)
    bias = np.array([0.25, -0.5], np.float32)
    r = encode.encode_rcsr(w.reshape(2, -1), bits)
    assert r.fillers == 0 and r.row_ptr[1] == e + 1  # entry e is row 0's last, no filler before it
    keep = kh._Keep()
    p = ffi.new("prunec_conv2d_params *", dict(in_c=cin, in_h=2, in_w=2, out_c=2, out_h=2, out_w=2, kh=1, kw=1,
                                                stride_h=1, stride_w=1, pad_h=0, pad_w=0, dil_h=1, dil_w=1, groups=1))
    y = np.full(8, np.nan, np.float32)
    lib.prunec_f32_conv2d_rcsr__portable(p, kh.rcsr_struct(ffi, keep, r), keep.buf(ffi, "float[]", bias),
                                         keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True),
                                         -np.inf, np.inf)
    want = np.einsum("oc,chw->ohw", w[:, :, 0, 0].astype(np.float64), x.astype(np.float64)) + bias[:, None, None]
    np.testing.assert_allclose(y.reshape(2, 2, 2), want, rtol=1e-5, atol=1e-5)


# kernel sizes the edge cases leave out: 7x7 (ResNet's and MobileNetV3's stems: exactly RECTS = 49 taps, the last
# size whose tap rectangles are computed once per call) and 9x9 / 10x5 (more taps than that: per nonzero)
BIG_KERNELS = [kh.ConvCase(3, 4, 16, 16, k=(7, 7), stride=(2, 2), pad=(3, 3), bits=b, act=a, seed=i)
               for i, (b, a) in enumerate([(8, "relu"), (4, "none"), (16, "relu6"), (6, "none")])]
BIG_KERNELS += [kh.ConvCase(2, 3, 12, 13, k=(9, 9), pad=(4, 4), bits=8, seed=7),
                kh.ConvCase(2, 3, 20, 9, k=(10, 5), stride=(2, 1), pad=(1, 2), bits=4, seed=8)]


@pytest.mark.parametrize("case", BIG_KERNELS, ids=[c.id for c in BIG_KERNELS])
def test_conv_kernels_of_49_taps_and_more(portable, case):
    ffi, lib = portable
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__portable", case)
    kh.check(ffi, lib, "prunec_f32_conv2d_dense__portable", kh.ConvCase(**{**case.__dict__, "bits": None}))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_of_logits_beyond_expf_range(portable, op):
    """The kernels subtract each slice's maximum before expf, as PyTorch does: logits all below -104 (expf underflows
    to 0 without the shift: 0 / 0) and a first logit above 89 (expf overflows: inf / inf) must still give PyTorch's
    result. Slices [2, 4, 3] (outer 2, n 4, inner 3: softmax over dim 1)."""
    import torch

    ffi, lib = portable
    x = np.array([[-300.0, -250.0, -280.0, -260.0], [120.0, 1.0, -3.0, 90.5], [-0.5, 0.25, 3.0, 2.0]], np.float32)
    x = np.stack([x.T, (x - 150.0).T])  # [2, 4, 3], the largest value of some slices first
    y = np.full(x.size, np.nan, np.float32)
    keep = kh._Keep()
    getattr(lib, f"prunec_f32_{op}__portable")(2, 4, 3, keep.buf(ffi, "float[]", x.reshape(-1)),
                                                keep.buf(ffi, "float[]", y, True))
    want = getattr(torch, op)(torch.from_numpy(x).double(), dim=1).numpy().reshape(-1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
