"""The AVX2 kernels (runtime_c/src/avx2) on every edge case of their op, against the float64 references of
kernel_harness (the same cases as their portable twins), built with -mavx2 -mfma only: what an x86_64-avx2 build runs
on a machine without AVX-512. The fc and conv ones also run in the C tester of test_isa_kernels.py; this covers the
ops that tester does not (the sliced fc layout, max pooling) and the conv kernel's cases here too."""
from __future__ import annotations

import dataclasses
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
                                                if k.isa == runtime.PORTABLE and k.op in ("fc_rcsr", "fc_rcsc", "maxpool2d", "conv2d_rcsr",
                                                                                     "conv2d_dense")})
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


def packed(case: kh.ConvCase) -> bool:
    """Whether prunec_f32_conv2d_rcsr__avx2 takes its packed path (prunec_avx2_packed_fits: at least 16 taps per
    output, at most 1024 output channels per group, one input channel's kw shifted copies (stride_h phases of
    out_h + (kh-1)*dil_h/stride_h rows of out_w) within 16384 floats)."""
    cin_g = case.in_c // case.groups
    out_h, out_w = case.out_hw()
    rows = out_h + (case.k[0] - 1) * case.dil[0] // case.stride[0]
    return (cin_g * case.k[0] * case.k[1] >= 16 and case.out_c // case.groups <= 1024
            and case.k[0] * case.k[1] <= 2048 and case.k[1] * case.stride[0] * rows * out_w <= 16384)


def flat(case: kh.ConvCase) -> bool:
    """Whether prunec_f32_conv2d_rcsr__avx2 takes its flat path (prunec_avx2_flat_fits: stride and dilation 1, rows
    as wide as the input's, fewer than 16 taps per output, at most 1024 output pixels, kw * the plane rounded up to 8
    within 8192)."""
    out_h, out_w = case.out_hw()
    return (case.stride == (1, 1) and case.dil == (1, 1) and out_w == case.w
            and case.in_c // case.groups * case.k[0] * case.k[1] < 16 and out_h * out_w <= 1024
            and case.k[1] * -(-out_h * out_w // 8) * 8 <= 8192)


def chunks(case: kh.ConvCase) -> int:
    """How many chunks of input channels the packed path packs one group in."""
    out_h, out_w = case.out_hw()
    rows = out_h + (case.k[0] - 1) * case.dil[0] // case.stride[0]
    cpc = min(16384 // (case.k[1] * case.stride[0] * rows * out_w), 2048 // (case.k[0] * case.k[1]),
              case.in_c // case.groups)
    return -(-(case.in_c // case.groups) // cpc)


# Geometries that reach the conv kernel's four-row tiles (rows whose taps all lie inside the input, stride 1 across,
# at least 8 interior columns), with row counts around multiples of 4, border columns on both sides, stride 2 down,
# dilation, groups, and channels of more than 256 taps (later chunks add onto the stored partial sums). None of them
# takes the packed path (fewer than 16 taps per output, or one input channel's copies over 16384 floats) or the flat
# one (rows narrower than the input's, or planes of more than 1024 pixels).
TILE_CONV = [
    kh.ConvCase(1, 4, 72, 72, k=(5, 5), density=0.66, bits=8, act="relu", seed=1),       # LeNet-5 conv1's taps, 68 wide
    kh.ConvCase(1, 6, 12, 12, k=(3, 3), density=0.5, bits=8, act="relu", seed=2),        # 10 columns: 8-row tiles
    kh.ConvCase(1, 5, 45, 39, k=(3, 3), pad=(1, 1), density=0.5, bits=4, seed=3),         # 45 rows: 11 tiles + 1
    kh.ConvCase(1, 3, 23, 30, k=(3, 3), stride=(2, 1), pad=(1, 2), density=0.7, bits=8, act="relu6", seed=4),
    kh.ConvCase(1, 4, 20, 20, k=(3, 3), dil=(2, 2), pad=(2, 2), density=0.6, bits=16, seed=5),
    kh.ConvCase(4, 8, 14, 17, k=(3, 3), groups=4, density=0.8, bits=8, bias=False, seed=6),  # depthwise, multiplier 2
    kh.ConvCase(20, 3, 64, 64, k=(5, 5), density=0.9, bits=8, seed=7),                     # 450 taps: 2 chunks
    kh.ConvCase(3, 3, 40, 40, k=(1, 1), density=1.0, bits=8, seed=8),
    kh.ConvCase(1, 3, 30, 30, k=(3, 3), density=0.5, bits=8, seed=9),      # 28 columns: a 24-column tile + 4
    kh.ConvCase(1, 3, 14, 10, k=(3, 3), density=0.5, bits=8, seed=10),     # 8 interior columns: 8-row tiles
    kh.ConvCase(1, 2, 64, 60, k=(5, 5), pad=(2, 2), density=0.7, bits=8, seed=11),  # 56 interior columns + borders
]


@pytest.mark.parametrize("case", TILE_CONV, ids=[c.id for c in TILE_CONV])
def test_avx2_conv_four_row_tiles(built, case):
    assert not packed(case) and not flat(case)
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx2", case)


# Geometries of the packed path (the input packed into kw shifted copies, every nonzero an axpy of the plane held in
# registers): LeNet-5's two convs, padding on both sides (masked loads at the borders) and past the taps, rows not a
# multiple of 8 (blocks that start mid-vector, the last vector partial), a plane smaller than one vector, segments
# of every size from 1 to 12 vectors (the two- and four-tap paths), groups, fillers (dropped), more than 256 entries
# per channel (the decode in batches), index widths 4, 6, 8 and 16, the 16384-float bound exactly; strides 2 to 4
# (row phases, columns copied one by one) and dilation; and groups packed in several chunks of input channels (the
# partial sums stored between chunks, each row's position kept, fillers and empty rows across chunk borders).
PACKED_CONV = [
    kh.ConvCase(1, 20, 28, 28, k=(5, 5), density=0.66, bits=4, act="relu", seed=21),     # LeNet-5 conv1: 9 x 8 vectors
    kh.ConvCase(20, 50, 12, 12, k=(5, 5), density=0.12, bits=8, act="relu", seed=22),    # LeNet-5 conv2: one of 8
    kh.ConvCase(3, 5, 21, 19, k=(3, 3), pad=(1, 1), density=0.5, bits=4, seed=23),
    kh.ConvCase(2, 3, 9, 13, k=(5, 5), pad=(2, 3), density=0.8, bits=8, act="relu6", seed=24),  # pad past the taps
    kh.ConvCase(2, 2, 4, 4, k=(3, 3), density=1.0, bits=8, seed=25),                     # 2x2 plane: 4 of 8 lanes
    kh.ConvCase(4, 6, 14, 17, k=(3, 3), groups=2, density=0.8, bits=8, bias=False, seed=26),
    kh.ConvCase(20, 3, 13, 13, k=(5, 5), density=0.9, bits=16, seed=27),                 # 450 entries per channel
    kh.ConvCase(32, 3, 5, 5, k=(3, 3), pattern="far", bits=4, seed=28),                   # fillers
    kh.ConvCase(32, 3, 5, 5, k=(3, 3), pattern="far", bits=6, act="relu", seed=29),
    kh.ConvCase(4, 5, 6, 6, k=(3, 3), pattern="empty_rows", bits=8, seed=30),
    kh.ConvCase(16, 2, 32, 32, k=(1, 1), density=0.7, bits=8, seed=31),                   # exactly 16384 floats
    *[kh.ConvCase(2, 2, 3 + s, 10, k=(3, 3), density=0.9, bits=8, seed=40 + s) for s in range(1, 13)],  # 1..12 vectors
    kh.ConvCase(3, 4, 17, 19, k=(3, 3), stride=(2, 2), pad=(1, 1), density=0.6, bits=8, act="relu", seed=60),
    kh.ConvCase(2, 3, 16, 15, k=(3, 3), stride=(2, 1), pad=(1, 0), density=0.7, bits=4, seed=61),
    kh.ConvCase(2, 3, 15, 16, k=(3, 3), stride=(1, 2), pad=(0, 1), density=0.7, bits=16, seed=62),
    kh.ConvCase(2, 4, 20, 20, k=(3, 3), dil=(2, 2), pad=(2, 2), density=0.6, bits=8, seed=63),
    kh.ConvCase(2, 3, 19, 22, k=(3, 3), stride=(2, 3), dil=(1, 2), pad=(1, 2), density=0.8, bits=8, seed=64),
    kh.ConvCase(1, 4, 49, 10, k=(10, 4), stride=(2, 2), pad=(5, 1), density=0.8, bits=8, act="relu", seed=65),  # DS-CNN's first
    kh.ConvCase(16, 4, 9, 9, k=(1, 1), stride=(2, 2), density=0.8, bits=8, seed=66),      # 1x1 stride 2 (a shortcut)
    kh.ConvCase(2, 4, 23, 27, k=(3, 3), stride=(4, 4), pad=(1, 1), density=0.9, bits=8, seed=67),
    kh.ConvCase(4, 6, 18, 18, k=(3, 3), stride=(2, 2), pad=(1, 1), groups=2, density=0.9, bits=8, seed=68),
    kh.ConvCase(16, 4, 32, 32, k=(3, 3), pad=(1, 1), density=0.3, bits=8, act="relu", seed=69),  # 4 chunks (5+5+5+1)
    kh.ConvCase(40, 3, 40, 40, k=(3, 3), pattern="far", bits=4, seed=70),                 # 14 chunks, fillers across
    kh.ConvCase(24, 5, 30, 30, k=(3, 3), pad=(1, 1), pattern="empty_rows", bits=8, seed=71),    # 5 chunks
    kh.ConvCase(24, 4, 60, 60, k=(3, 3), stride=(2, 2), pad=(1, 1), groups=2, density=0.3, bits=6, seed=72),  # 6 per group
]


@pytest.mark.parametrize("case", PACKED_CONV, ids=[c.id for c in PACKED_CONV])
def test_avx2_conv_packed(built, case):
    assert packed(case)
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx2", case)


# Geometries of the flat path (fewer than 16 taps per output, stride 1, rows as wide as the input's, at most 1024
# pixels: every tap an axpy of the plane read from the input under column and row masks): depthwise layers of DS-CNN
# (25x5) and MobileNetV1 (12x12, 6x6, 3x3), a depthwise multiplier of 2, two input channels per group, 1x1 and 1xk /
# kx1 kernels, padding rows above the taps (out_h above in_h) and none (out_h below), fillers at index widths 1 and 2,
# empty rows, every segment size from 1 to 12 vectors and two segments (13 vectors).
FLAT_CONV = [
    kh.ConvCase(8, 8, 25, 5, k=(3, 3), pad=(1, 1), groups=8, density=0.3, bits=8, act="relu", seed=80),
    kh.ConvCase(16, 16, 12, 12, k=(3, 3), pad=(1, 1), groups=16, density=0.3, bits=4, act="relu6", seed=81),
    kh.ConvCase(8, 8, 6, 6, k=(3, 3), pad=(1, 1), groups=8, density=0.5, bits=8, act="relu6", seed=82),
    kh.ConvCase(8, 8, 3, 3, k=(3, 3), pad=(1, 1), groups=8, pattern="full", bits=8, seed=83),
    kh.ConvCase(4, 8, 7, 7, k=(3, 3), pad=(1, 1), groups=4, density=0.7, bits=16, seed=84),
    kh.ConvCase(4, 6, 9, 11, k=(3, 1), pad=(1, 0), groups=2, density=0.8, bits=8, bias=False, seed=85),
    kh.ConvCase(3, 5, 16, 16, k=(1, 1), density=0.8, bits=8, seed=86),
    kh.ConvCase(2, 3, 9, 13, k=(1, 5), pad=(0, 2), density=0.8, bits=8, seed=87),
    kh.ConvCase(2, 3, 9, 13, k=(5, 1), pad=(2, 0), density=0.8, bits=6, seed=88),
    kh.ConvCase(1, 3, 10, 10, k=(3, 3), pad=(2, 1), density=0.9, bits=8, seed=89),       # out_h 12 > in_h
    kh.ConvCase(1, 3, 10, 10, k=(3, 3), pad=(0, 1), density=0.9, bits=8, seed=90),       # out_h 8 < in_h
    kh.ConvCase(1, 2, 6, 7, k=(3, 5), pad=(1, 2), pattern="far", bits=1, seed=91),        # fillers
    kh.ConvCase(1, 2, 6, 7, k=(3, 5), pad=(1, 2), pattern="far", bits=2, act="relu", seed=92),
    kh.ConvCase(4, 4, 5, 5, k=(3, 3), pad=(1, 1), groups=4, pattern="empty_rows", bits=8, seed=93),
    kh.ConvCase(4, 4, 5, 5, k=(3, 3), pad=(1, 1), groups=4, pattern="zero", bits=8, seed=94),
    *[kh.ConvCase(2, 2, s + 1, 8, k=(3, 3), pad=(1, 1), groups=2, density=0.9, bits=8, seed=100 + s) for s in range(1, 14)],
    kh.ConvCase(2, 2, 32, 32, k=(3, 3), pad=(1, 1), groups=2, density=0.9, bits=8, seed=120),  # 1024 pixels: 11 segments
]


@pytest.mark.parametrize("case", FLAT_CONV, ids=[c.id for c in FLAT_CONV])
def test_avx2_conv_flat(built, case):
    assert flat(case) and not packed(case)
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx2", case)


def test_avx2_conv_flat_bound():
    assert not flat(kh.ConvCase(2, 2, 33, 32, k=(3, 3), pad=(1, 1), groups=2))   # 1056 pixels: the tiles
    assert not flat(kh.ConvCase(2, 2, 12, 12, k=(3, 3), groups=2))               # no padding: rows narrower
    assert not flat(kh.ConvCase(2, 2, 12, 12, k=(3, 3), pad=(1, 1), stride=(2, 2), groups=2))


def test_avx2_conv_flat_masks_the_row_wrap(built):
    """A NaN at the start or end of an input row reaches only the outputs whose windows hold it: the flat shift of a
    tap at the plane's left or right border would read it from the neighbouring row unmasked."""
    import torch
    import torch.nn.functional as F

    from prunec import encode

    ffi, lib = built
    case = kh.ConvCase(2, 2, 6, 7, k=(3, 3), pad=(1, 1), groups=2, pattern="full", seed=130)
    assert flat(case)
    w, b, x = case.data()
    x = x.copy()
    x[0, 2, 0], x[0, 4, 6], x[1, 0, 6], x[1, 5, 0] = np.nan, np.nan, np.inf, -np.inf
    y = np.full((2, 6, 7), 7.0, np.float32)
    ws = kh.rcsr_struct(ffi, kh._Keep(), encode.encode_rcsr(w, 8))
    p = ffi.new("prunec_conv2d_params *", {
        "in_c": 2, "in_h": 6, "in_w": 7, "out_c": 2, "out_h": 6, "out_w": 7, "kh": 3, "kw": 3, "stride_h": 1,
        "stride_w": 1, "pad_h": 1, "pad_w": 1, "dil_h": 1, "dil_w": 1, "groups": 2})
    lib.prunec_f32_conv2d_rcsr__avx2(p, ws, ffi.from_buffer("float[]", b), ffi.from_buffer("float[]", x),
                                     ffi.from_buffer("float[]", y, require_writable=True), -np.inf, np.inf)
    want = F.conv2d(torch.from_numpy(x.astype(np.float64))[None], torch.from_numpy(w.astype(np.float64)),
                    torch.from_numpy(b.astype(np.float64)), padding=1, groups=2)[0].numpy()
    assert 0 < np.isnan(want).sum() < want.size // 2
    assert np.array_equal(np.isnan(y), np.isnan(want)) and np.array_equal(np.isinf(y), np.isinf(want))
    ok = np.isfinite(want)
    assert np.allclose(y[ok], want[ok], rtol=1e-4, atol=1e-4)


DENSE_CONV = [dataclasses.replace(c, bits=None) for c in PACKED_CONV[:8] + PACKED_CONV[-4:] + FLAT_CONV[:2] + TILE_CONV[:2]]


@pytest.mark.parametrize("case", DENSE_CONV, ids=[c.id for c in DENSE_CONV])
def test_avx2_conv_dense(built, case):
    """Layers stored dense: the packed path over every weight where it applies (the chunked and strided cases too),
    the portable kernel elsewhere."""
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_dense__avx2", case)


def test_avx2_conv_packed_cases_reach_several_chunks():
    assert [chunks(c) for c in PACKED_CONV[-4:]] == [4, 14, 5, 6]
    assert all(chunks(c) == 1 for c in PACKED_CONV[:-4])


def test_avx2_conv_packed_bound():
    assert packed(kh.ConvCase(16, 2, 128, 128, k=(1, 1))) and not packed(kh.ConvCase(16, 2, 129, 128, k=(1, 1)))
    assert not packed(kh.ConvCase(1, 2, 28, 28, k=(3, 3)))     # 9 taps: the tiles
    assert not packed(kh.ConvCase(16, 1025, 4, 4, k=(1, 1)))   # 1025 output channels per group


def test_avx2_conv_many_output_channels(built):
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx2", kh.ConvCase(16, 1025, 4, 4, k=(1, 1), density=0.3, bits=8))


def test_avx2_conv_packed_keeps_nan_and_inf(built):
    """Input NaN and infinities reach exactly the outputs whose windows read them, as in PyTorch (the packed copies
    hold them at every kx shift; padding is 0, not a read)."""
    import torch
    import torch.nn.functional as F

    from prunec import encode

    ffi, lib = built
    case = kh.ConvCase(2, 3, 10, 12, k=(3, 3), pad=(1, 1), pattern="full", seed=50)
    assert packed(case)
    w, b, x = case.data()
    x = x.copy()
    x[0, 0, 5], x[1, 4, 7], x[0, 9, 11] = np.nan, np.inf, -np.inf
    oh, ow = case.out_hw()
    y = np.full((case.out_c, oh, ow), 7.0, np.float32)
    keep = kh._Keep()
    ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w, 8))
    p = ffi.new("prunec_conv2d_params *", {
        "in_c": 2, "in_h": 10, "in_w": 12, "out_c": 3, "out_h": oh, "out_w": ow, "kh": 3, "kw": 3,
        "stride_h": 1, "stride_w": 1, "pad_h": 1, "pad_w": 1, "dil_h": 1, "dil_w": 1, "groups": 1})
    bias = ffi.from_buffer("float[]", b)
    lib.prunec_f32_conv2d_rcsr__avx2(p, ws, bias, ffi.from_buffer("float[]", x),
                                     ffi.from_buffer("float[]", y, require_writable=True), -np.inf, np.inf)
    want = F.conv2d(torch.from_numpy(x.astype(np.float64))[None], torch.from_numpy(w.astype(np.float64)),
                    torch.from_numpy(b.astype(np.float64)), padding=1)[0].numpy()
    assert np.isnan(want).sum() > 9  # the infinities meet weights of both signs: NaN too
    assert np.array_equal(np.isnan(y), np.isnan(want))
    assert np.allclose(y[~np.isnan(y)], want[~np.isnan(want)], rtol=1e-4, atol=1e-4)


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


# paths gcov showed untested (seventeenth session): kernels over 64 taps outside the packed and flat paths (the
# per-channel tap decode), output channels of more than 256 entries with padded border rows (the column pass)
COVERAGE_CONV = [kh.ConvCase(2, 3, 64, 64, k=(9, 9), bits=b) for b in (8, 4, 16, 5)] + \
    [kh.ConvCase(40, 300, 20, 40, pad=(1, 1), density=0.9, bits=b) for b in (8, 4, 16, 5)]


@pytest.mark.parametrize("case", COVERAGE_CONV, ids=[c.id for c in COVERAGE_CONV])
def test_avx2_conv_generic_paths(built, case):
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx2", case)


# Border rows (padding above and below) run the column pass from column 0, 8 columns at a time: where an interior
# block starts at a column ow with ow + 15 == ow_hi (the end of the interior) and the row goes on past it, the
# 16-column unmasked block must not be taken (its last column's taps read past the input row, into the next one).
# pad 1, k 3, in_w 40 and 56: the blocks at ow 24 and 40 (50 rows keep the planes off the flat path).
BORDER_ROW_CONV = [kh.ConvCase(1, 3, 50, w, pad=(1, 1), density=0.7, bits=8, act="relu", seed=60 + i)
                   for i, w in enumerate((40, 56))]


@pytest.mark.parametrize("case", BORDER_ROW_CONV, ids=[c.id for c in BORDER_ROW_CONV])
def test_avx2_conv_border_rows_keep_unmasked_blocks_inside_the_interior(built, case):
    assert not packed(case) and not flat(case)
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx2", case)


# Output channels of more than 256 entries outside the packed path (TILE_CONV's 450-tap case has no clamp): the
# row and tile loops clamp only after the last chunk; a clamp of the partial sums of the first 256 entries (ReLU
# of a negative partial sum) changes the result.
CHUNKED_CLAMP_CONV = [kh.ConvCase(20, 3, 64, 64, k=(5, 5), density=0.9, bits=b, act=a, seed=7)
                      for b, a in ((8, "relu"), (16, "relu6"))]


@pytest.mark.parametrize("case", CHUNKED_CLAMP_CONV, ids=[c.id for c in CHUNKED_CLAMP_CONV])
def test_avx2_conv_clamps_only_after_the_last_chunk(built, case):
    assert not packed(case) and not flat(case)
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx2", case)


def test_avx2_conv_packed_keeps_a_negative_zero_sum(built):
    """An output whose every product is -0.0 on a -0.0 bias stays -0.0 on the packed path, as in the portable twin:
    the extra accumulator sets (two or four taps at a time) start at -0.0, the additive identity (+0.0 would turn
    the sum into +0.0). Channel 0 reads only input channel 0, all -0.0, with positive weights; channel 1 is a
    control with ordinary values. 4x4 and 10x12 outputs: segments of 2 and 15 vectors (four and one accumulator
    sets), relu and none (relu keeps -0.0: the clamp is `x < lo ? lo : x`)."""
    from prunec import encode

    ffi, lib = built
    for h, w_, act in ((6, 6, "relu"), (12, 14, "none")):
        case = kh.ConvCase(2, 2, h, w_, k=(3, 3), pattern="full", bits=8, act=act, seed=70)
        assert packed(case)
        w, b, x = case.data()
        w, b, x = w.copy(), b.copy(), x.copy()
        w[0] = 0.0
        w[0, 0] = np.abs(w[0, 0]) + 0.25  # 9 positive taps on input channel 0
        x[0] = -0.0
        b[0] = -0.0
        oh, ow = case.out_hw()
        y = np.full((2, oh, ow), 7.0, np.float32)
        keep = kh._Keep()
        ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w.reshape(2, -1), 8))
        p = ffi.new("prunec_conv2d_params *", {
            "in_c": 2, "in_h": h, "in_w": w_, "out_c": 2, "out_h": oh, "out_w": ow, "kh": 3, "kw": 3,
            "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0, "dil_h": 1, "dil_w": 1, "groups": 1})
        lo, hi = kh.ACTS[act]
        lib.prunec_f32_conv2d_rcsr__avx2(p, ws, keep.buf(ffi, "float[]", b), keep.buf(ffi, "float[]", x),
                                         ffi.from_buffer("float[]", y, require_writable=True), lo, hi)
        assert (y[0] == 0).all() and np.signbit(y[0]).all(), (h, w_, y[0])
        ref = np.full_like(y, 7.0)
        lib.prunec_f32_conv2d_rcsr__portable(p, ws, keep.buf(ffi, "float[]", b), keep.buf(ffi, "float[]", x),
                                             ffi.from_buffer("float[]", ref, require_writable=True), lo, hi)
        assert np.array_equal(np.signbit(y[0]), np.signbit(ref[0]))
        np.testing.assert_allclose(y[1], ref[1], rtol=1e-5, atol=1e-5)
