"""The avx512x4 fc kernel's short-row path (runtime_c/src/avx512/f32-fc-rcsr-avx512-x4.c, fc_rows_t): layers of
8-bit codes (or b <= 7 widened to bytes) whose rows average fewer than 192 entries and that are not prefetched
(<= 262144 entries) run their rows in pairs into one vector per row, kept in a buffer of 64 rows, and reduce,
bias, clamp and store eight rows at a time with masked loads and stores for the last < 8.

Against the portable twin: row counts around 8 and 64 (1, 7, 8, 9, 63, 64, 65, 129 ...), an odd last row, rows of
0..n entries (empty ones among them), rows padded to 8 entries as x86_64-avx2 builds them and unpadded ones
(tails), bias NULL or not, the three clamps, NaN / +-inf / -0.0 inputs (NaN exactly where the portable twin has
it: the vector clamp must keep NaN as clampf does), outputs past `rows` never written, several widened blocks."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kernel_harness as kh
from prunec import encode, verify

AVX512_FLAGS = ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]
X4 = "prunec_f32_fc_rcsr__avx512x4"
PORTABLE = "prunec_f32_fc_rcsr__portable"

pytestmark = pytest.mark.skipif(
    not {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify.cpu_flags() or set()),
    reason="this CPU lacks AVX-512 (F, VL, BW, DQ)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    # fc_rows_t belongs to the broadcast path, which the kernel takes on non-Intel CPUs only unless
    # PRUNEC_X86_FC_GATHER=0 fixes it (on this project's Intel machines these tests ran the gather path instead)
    return kh.build_kernels(["src/avx512/f32-fc-rcsr-avx512-x4.c", "src/portable/f32-fc-rcsr-portable.c"],
                            [*AVX512_FLAGS, "-DPRUNEC_X86_FC_GATHER=0"], tmpdir=tmp_path_factory.mktemp("fcrows"))


def _weights(rows, cols, seed, lens=None):
    """rows x cols with row i holding lens[i] nonzeros (default: 0..60 entries, empty rows included)."""
    rng = np.random.default_rng(seed)
    if lens is None:
        lens = [(i * 37 + seed) % 61 for i in range(rows)]
    w = np.zeros((rows, cols), np.float32)
    for i, n in enumerate(lens):
        n = min(n, cols)
        c = rng.choice(cols, n, replace=False)
        w[i, c] = rng.standard_normal(n).astype(np.float32) + np.float32(0.5)
    return w


def _run(ffi, lib, name, r, x, bias, lo, hi, guard=9):
    keep = kh._Keep()
    y = np.full(r.rows + guard, 7.0, np.float32)  # guard floats after the outputs: must stay 7.0
    getattr(lib, name)(kh.rcsr_struct(ffi, keep, r), ffi.NULL if bias is None else keep.buf(ffi, "float[]", bias),
                       keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True), lo, hi)
    assert np.all(y[r.rows:] == 7.0), f"{name} wrote past its {r.rows} outputs"
    return y[: r.rows]


def _compare(got, want):
    assert np.array_equal(np.isnan(got), np.isnan(want))
    fin = ~np.isnan(want)
    assert np.array_equal(np.isinf(got[fin]), np.isinf(want[fin]))
    assert np.array_equal(got[fin][np.isinf(want[fin])], want[fin][np.isinf(want[fin])])
    f = fin & ~np.isinf(want)
    np.testing.assert_allclose(got[f], want[f], rtol=2e-5, atol=2e-5 * max(1.0, float(np.abs(want[f]).max(initial=0))))


ROWS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 66, 127, 128, 129, 200]


@pytest.mark.parametrize("align", [8, 1], ids=["aligned8", "unaligned"])
@pytest.mark.parametrize("rows", ROWS)
def test_short_rows_block_boundaries(built, rows, align):
    ffi, lib = built
    cols = 300
    w = _weights(rows, cols, seed=rows * 3 + align)
    r = encode.pad_rows(encode.encode_rcsr(w, 8), align)
    rng = np.random.default_rng(rows)
    x = rng.standard_normal(cols).astype(np.float32)
    for k, (act, use_bias) in enumerate([("none", True), ("relu", False), ("relu6", True), ("none", False)]):
        lo, hi = kh.ACTS[act]
        bias = (rng.standard_normal(rows) * 2).astype(np.float32) if use_bias else None
        want = _run(ffi, lib, PORTABLE, r, x, bias, lo, hi)
        got = _run(ffi, lib, X4, r, x, bias, lo, hi)
        _compare(got, want)
        ref = w.astype(np.float64) @ x.astype(np.float64) + (0.0 if bias is None else bias)
        np.testing.assert_allclose(got, np.clip(ref, lo, hi), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 5, 8, 9, 64, 65, 70])
@pytest.mark.parametrize("bits", [8, 6, 4, 3])
def test_short_rows_special_values(built, rows, bits):
    """NaN of both signs, +-inf and -0.0 in x; a row of -0.0 products on a -0.0 bias; an all-zero row; clamps."""
    ffi, lib = built
    cols = 200
    rng = np.random.default_rng(rows * 17 + bits)
    # dense enough that no gap needs a filler (a filler's 0 * inf is NaN in every kernel alike, but keep it simple)
    w = _weights(rows, cols, seed=rows + bits, lens=[(i * 13) % 40 + (i % 3 == 0) * 40 for i in range(rows)])
    w[:, 150:] = 0.0
    w[0] = 0.0
    w[0, :100] = np.abs(rng.standard_normal(100)).astype(np.float32) + 0.25  # row 0 reads x[0:100] only
    if rows > 3:
        w[3] = 0.0  # an empty row: its output is the bias, clamped
    x = rng.standard_normal(cols).astype(np.float32)
    x[:100] = -0.0
    x[[120, 130, 140, 145]] = np.array([np.nan, -np.nan, np.inf, -np.inf], np.float32)
    bias = (rng.standard_normal(rows) * 3).astype(np.float32)
    bias[0] = -0.0
    r = encode.pad_rows(encode.encode_rcsr(w, bits), 8)
    for act in kh.ACT_NAMES:
        lo, hi = kh.ACTS[act]
        for b in (bias, None):
            want = _run(ffi, lib, PORTABLE, r, x, b, lo, hi)
            got = _run(ffi, lib, X4, r, x, b, lo, hi)
            if act == "none" and rows > 1 and np.isnan(want).sum() == 0:
                pytest.fail("the case must reach NaN outputs")
            _compare(got, want)
            # row 0: -0.0 products on a -0.0 bias (or none): zero (the sign is not kept: the accumulators start
            # at +0.0, in this kernel's other paths too)
            assert want[0] == 0.0 and got[0] == 0.0


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 7, 8])
def test_short_rows_several_widened_blocks(built, bits):
    """b <= 7: blocks of <= 16384 widened codes, each run through the short-row path from its own first row
    (blocks start at rows not multiples of 8 or 64); b = 8 for the same layer in one pass."""
    ffi, lib = built
    rows, cols = 701, 500
    w = _weights(rows, cols, seed=bits, lens=[(i * 29) % 75 for i in range(rows)])
    r = encode.pad_rows(encode.encode_rcsr(w, bits), 8)
    assert r.row_ptr[-1] > 16384 and r.row_ptr[-1] <= 262144 and r.row_ptr[-1] < 192 * rows
    rng = np.random.default_rng(bits)
    x = rng.standard_normal(cols).astype(np.float32)
    bias = rng.standard_normal(rows).astype(np.float32)
    want = _run(ffi, lib, PORTABLE, r, x, bias, 0.0, math.inf)
    got = _run(ffi, lib, X4, r, x, bias, 0.0, math.inf)
    _compare(got, want)
