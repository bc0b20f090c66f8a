"""The avx512x4 kernels (runtime_c/src/avx512/*-x4.c) on every edge case of their op, against the float64
references of kernel_harness (the same cases as their portable twins). Also run by the C tester of
test_isa_kernels.py for fc/conv; this test adds max pooling, which that tester does not cover."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import kernel_harness as kh
from prunec import runtime

X4 = [k for k in runtime.kernels() if k.isa == "avx512x4"]
AVX512_FLAGS = ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]


def _cpu_has_avx512() -> bool:
    try:
        m = re.search(r"^flags\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return False
    return bool(m) and {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= set(m.group(1).split())


pytestmark = pytest.mark.skipif(not _cpu_has_avx512(), reason="this CPU lacks AVX-512 (F, VL, BW, DQ)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return kh.build_kernels(sorted({k.source for k in X4}), AVX512_FLAGS, tmpdir=tmp_path_factory.mktemp("x4"))


@pytest.mark.parametrize("kernel,case", [pytest.param(k, c, id=i) for k, c, i in kh.case_params(X4)])
def test_avx512x4_kernel(built, kernel, case):
    ffi, lib = built
    kh.check(ffi, lib, kernel, case)


def test_maxpool_fast_path_propagates_nan_like_the_portable_twin(built, tmp_path):
    import math

    import numpy as np

    ffi, lib = built
    p = ffi.new("prunec_pool2d_params *")
    p.channels, p.in_h, p.in_w, p.out_h, p.out_w = 2, 6, 38, 3, 19
    p.kh = p.kw = p.stride_h = p.stride_w = 2
    x = np.random.default_rng(0).standard_normal(2 * 6 * 38).astype(np.float32)
    x[5], x[100], x[38 * 6 + 77] = np.nan, -np.inf, np.inf
    y = np.full(2 * 3 * 19, 7.0, np.float32)
    lib.prunec_f32_maxpool2d__avx512x4(p, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y, require_writable=True))
    want = x.reshape(2, 3, 2, 19, 2).max(axis=(2, 4)).ravel()
    assert math.isnan(y[2]) and np.array_equal(np.nan_to_num(y, nan=0.5), np.nan_to_num(want, nan=0.5))


# The 8-bit fc path of avx512x4 takes rows in fours when x is wider than 12288 columns (48 KB), in pairs
# otherwise; these shapes reach the four-row path with every remainder (rows mod 4), rows of unequal and
# empty lengths, and long rows (groups of 8 entries plus tails), against the float64 reference.
WIDE_FC = [
    kh.FcCase(rows, cols, density=d, pattern=p, bits=8, act=act, bias=bias, seed=s)
    for rows, cols, d, p, act, bias, s in [
        (1, 12289, 0.05, "random", "none", True, 1),
        (4, 13000, 0.04, "random", "relu", True, 2),
        (7, 20000, 0.02, "random", "none", False, 3),
        (9, 25088, 0.04, "empty_rows", "relu6", True, 4),
        (10, 16000, 0.3, "random", "none", True, 5),
        (6, 12300, 0.001, "random", "relu", True, 6),
        (5, 14000, 0.0, "zero", "none", True, 7),
        (8, 12500, 0.04, "far", "none", True, 8),
    ]
]


@pytest.mark.parametrize("case", WIDE_FC, ids=[c.id for c in WIDE_FC])
def test_avx512x4_fc_wide_x_four_row_path(built, case):
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_fc_rcsr__avx512x4", case)
