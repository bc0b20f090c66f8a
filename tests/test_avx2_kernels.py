"""The AVX2 kernels (runtime_c/src/avx2) on every edge case of their op, against the float64 references of
kernel_harness (the same cases as their portable twins), built with -mavx2 -mfma only: what an x86_64-avx2 build runs
on a machine without AVX-512. The fc and conv ones also run in the C tester of test_isa_kernels.py; this covers the
ops that tester does not (the sliced fc layout, max pooling) and the conv kernel's cases here too."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kernel_harness as kh
from prunec import runtime, verify

AVX2 = [k for k in runtime.kernels() if k.isa == "avx2"]

pytestmark = pytest.mark.skipif(not {"avx2", "fma"} <= (verify.cpu_flags() or set()), reason="this CPU lacks AVX2/FMA")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    srcs = sorted({k.source for k in AVX2} | {k.source for k in runtime.kernels()
                                                if k.isa == runtime.PORTABLE and k.op in ("fc_rcsr", "fc_rcsc", "maxpool2d", "conv2d_rcsr")})
    return kh.build_kernels(srcs, ["-mavx2", "-mfma"], tmpdir=tmp_path_factory.mktemp("avx2"))


def test_there_are_avx2_kernels_for_the_sliced_fc_layout_and_max_pooling():
    assert {k.op for k in AVX2} >= {"fc_rsell", "maxpool2d", "fc_rcsr", "fc_dense"}


@pytest.mark.parametrize("kernel,case", [pytest.param(k, c, id=i) for k, c, i in kh.case_params(
    [k for k in AVX2 if k.op in ("fc_rsell", "maxpool2d", "conv2d_rcsr")])])
def test_avx2_kernel(built, kernel, case):
    ffi, lib = built
    kh.check(ffi, lib, kernel, case)


def test_maxpool_fast_path_propagates_nan_like_the_portable_twin(built):
    ffi, lib = built
    p = ffi.new("prunec_pool2d_params *")
    p.channels, p.in_h, p.in_w, p.out_h, p.out_w = 2, 6, 38, 3, 19
    p.kh = p.kw = p.stride_h = p.stride_w = 2
    x = np.random.default_rng(0).standard_normal(2 * 6 * 38).astype(np.float32)
    x[5], x[100], x[38 * 6 + 77], x[39] = np.nan, -np.inf, np.inf, np.nan  # x[39]: row 1, a fast-path block
    y = np.full(2 * 3 * 19, 7.0, np.float32)
    lib.prunec_f32_maxpool2d__avx2(p, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y, require_writable=True))
    want = x.reshape(2, 3, 2, 19, 2).max(axis=(2, 4)).ravel()
    assert math.isnan(y[2]) and math.isnan(y[0]) and np.array_equal(np.nan_to_num(y, nan=0.5), np.nan_to_num(want, nan=0.5))


# Geometries that reach the conv kernel's four-row tiles (rows whose taps all lie inside the input, stride 1 across,
# at least 8 interior columns), with row counts around multiples of 4, border columns on both sides, stride 2 down,
# dilation, groups, and channels of more than 256 taps (later chunks add onto the stored partial sums).
TILE_CONV = [
    kh.ConvCase(1, 20, 28, 28, k=(5, 5), density=0.66, bits=8, act="relu", seed=1),       # LeNet-5 conv1
    kh.ConvCase(20, 50, 12, 12, k=(5, 5), density=0.12, bits=8, act="relu", seed=2),      # LeNet-5 conv2
    kh.ConvCase(3, 5, 21, 19, k=(3, 3), pad=(1, 1), density=0.5, bits=4, seed=3),         # 21 rows: 4 tiles + 1
    kh.ConvCase(2, 3, 23, 30, k=(3, 3), stride=(2, 1), pad=(1, 2), density=0.7, bits=8, act="relu6", seed=4),
    kh.ConvCase(2, 4, 20, 20, k=(3, 3), dil=(2, 2), pad=(2, 2), density=0.6, bits=16, seed=5),
    kh.ConvCase(4, 6, 14, 17, k=(3, 3), groups=2, density=0.8, bits=8, bias=False, seed=6),
    kh.ConvCase(20, 3, 13, 13, k=(5, 5), density=0.9, bits=8, seed=7),                     # 450 taps: 2 chunks
    kh.ConvCase(3, 3, 16, 16, k=(1, 1), density=1.0, bits=8, seed=8),
    kh.ConvCase(2, 3, 30, 30, k=(3, 3), density=0.5, bits=8, seed=9),      # 28 columns: a 24-column tile + 4
    kh.ConvCase(2, 3, 14, 10, k=(3, 3), density=0.5, bits=8, seed=10),     # 8 interior columns: 8-row tiles
    kh.ConvCase(1, 2, 44, 60, k=(5, 5), pad=(2, 2), density=0.7, bits=8, seed=11),  # 56 interior columns + borders
]


@pytest.mark.parametrize("case", TILE_CONV, ids=[c.id for c in TILE_CONV])
def test_avx2_conv_four_row_tiles(built, case):
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx2", case)


def test_maxpool_four_output_tail_keeps_nan(built):
    """out_w mod 8 >= 4 (LeNet-5 pool1: 12 outputs, pool2: 4): the 4-output step keeps NaN and -inf as PyTorch."""
    ffi, lib = built
    for w_in, bad in ((24, (17, 24 + 22)), (8, (5, 8 + 2)), (26, (18, 26 + 21))):
        p = ffi.new("prunec_pool2d_params *")
        p.channels, p.in_h, p.in_w, p.out_h, p.out_w = 1, 2, w_in, 1, w_in // 2
        p.kh = p.kw = p.stride_h = p.stride_w = 2
        x = np.random.default_rng(w_in).standard_normal(2 * w_in).astype(np.float32)
        x[bad[0]], x[bad[1]] = np.nan, -np.inf
        y = np.full(w_in // 2, 7.0, np.float32)
        lib.prunec_f32_maxpool2d__avx2(p, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y, require_writable=True))
        want = x.reshape(2, w_in // 2, 2).max(axis=(0, 2))
        assert math.isnan(y[bad[0] // 2]) and np.array_equal(np.nan_to_num(y, nan=0.5), np.nan_to_num(want, nan=0.5)), w_in
