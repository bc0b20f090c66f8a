"""The AVX2 kernels (runtime_c/src/avx2) on every edge case of their op, against the float64 references of
kernel_harness (the same cases as their portable twins), built with -mavx2 -mfma only: what an x86_64-avx2 build runs
on a machine without AVX-512. The fc and conv ones also run in the C tester of test_isa_kernels.py; this covers the
ops that tester does not (the sliced fc layout, max pooling)."""
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
                                                if k.isa == runtime.PORTABLE and k.op in ("fc_rcsr", "fc_rcsc", "maxpool2d")})
    return kh.build_kernels(srcs, ["-mavx2", "-mfma"], tmpdir=tmp_path_factory.mktemp("avx2"))


def test_there_are_avx2_kernels_for_the_sliced_fc_layout_and_max_pooling():
    assert {k.op for k in AVX2} >= {"fc_rsell", "maxpool2d", "fc_rcsr", "fc_dense"}


@pytest.mark.parametrize("kernel,case", [pytest.param(k, c, id=i) for k, c, i in kh.case_params(
    [k for k in AVX2 if k.op in ("fc_rsell", "maxpool2d")])])
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
