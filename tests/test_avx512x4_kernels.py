"""The avx512x4 kernels (runtime_c/src/avx512/*-x4.c) on every edge case of their op, against the float64
references of kernel_harness (the same cases as their portable twins). Also run by the C tester of
test_isa_kernels.py for fc/conv; this test adds max pooling, which that tester does not cover."""
from __future__ import annotations

import pytest

import kernel_harness as kh
from prunec import runtime, verify

X4 = [k for k in runtime.kernels() if k.isa == "avx512x4"]
AVX512_FLAGS = ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]


def _cpu_has_avx512() -> bool:
    return {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify.cpu_flags() or set())


pytestmark = pytest.mark.skipif(not _cpu_has_avx512(), reason="this CPU lacks AVX-512 (F, VL, BW, DQ)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    # the portable conv too: the special-value test below compares against it bit for bit
    return kh.build_kernels(sorted({k.source for k in X4} | {"src/portable/f32-conv2d-rcsr-portable.c"}),
                            AVX512_FLAGS, tmpdir=tmp_path_factory.mktemp("x4"))


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


# the same shapes on widths other than 8: b <= 7 widened to bytes per block and run by the four-row path, 9..16
# through the decode pass
WIDE_FC += [kh.FcCase(**{**c.__dict__, "bits": b}) for c, b in zip(WIDE_FC[:], (5, 6, 7, 9, 12, 15, 3, 4))]


@pytest.mark.parametrize("case", WIDE_FC, ids=[c.id for c in WIDE_FC])
def test_avx512x4_fc_wide_x_four_row_path(built, case):
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_fc_rcsr__avx512x4", case)


# The avx512x4 fc has two paths for 8-bit, b <= 7 and 16-bit codes, chosen at run time by the CPU's vendor (the
# gather path on Intel cores, the broadcast path elsewhere) unless PRUNEC_X86_FC_GATHER fixes it at compile time.
# Each is compiled here with the macro forced, so both are tested on any machine with AVX-512, on every fc case
# (every width 1..16, tails of 1..15 entries, empty rows, 16-row blocks and their remainders) and the wide shapes.
FC_CASES = kh.cases_for("fc_rcsr") + WIDE_FC
# paths that gcov showed no test running on an Intel machine (seventeenth session): a 4-bit row > 16384 entries (the
# decode pass; starting at odd entries too), a b <= 7 row longer than one widened block, layers over 262144 entries
# (the pair and four-row passes' prefetching copies, 8-bit and widened)
FC_CASES += [kh.FcCase(2, 20000, pattern="full", bits=4), kh.FcCase(3, 20001, density=0.9, bits=4, seed=1),
             kh.FcCase(2, 40000, density=0.6, bits=6), kh.FcCase(64, 8000, density=0.6, bits=8),
             kh.FcCase(40, 13000, density=0.6, bits=8), kh.FcCase(64, 8000, density=0.6, bits=6),
             kh.FcCase(41, 13000, density=0.6, bits=5)]


@pytest.fixture(scope="module", params=[0, 1], ids=["broadcast", "gather"])
def built_fc_forced(request, tmp_path_factory):
    return kh.build_kernels(["src/avx512/f32-fc-rcsr-avx512-x4.c"],
                            [*AVX512_FLAGS, f"-DPRUNEC_X86_FC_GATHER={request.param}"],
                            tmpdir=tmp_path_factory.mktemp(f"x4fc{request.param}"))


@pytest.mark.parametrize("case", FC_CASES, ids=[c.id for c in FC_CASES])
def test_avx512x4_fc_both_paths(built_fc_forced, case):
    ffi, lib = built_fc_forced
    kh.check(ffi, lib, "prunec_f32_fc_rcsr__avx512x4", case)


def test_avx512x4_fc_paths_agree_on_a_lenet_layer(tmp_path):
    """The two paths on the same 300x784 layer at 7 % (rows of ~55 entries: full groups of 16 and every tail) give
    the same outputs to fp32 rounding; each against the float64 reference is what the tests above check."""
    import numpy as np

    from prunec import encode

    outs = []
    rng = np.random.default_rng(5)
    wt = (rng.standard_normal((300, 784)) * (rng.random((300, 784)) < 0.07)).astype(np.float32)
    b = rng.standard_normal(300).astype(np.float32)
    x = rng.standard_normal(784).astype(np.float32)
    for g in (0, 1):
        ffi, lib = kh.build_kernels(["src/avx512/f32-fc-rcsr-avx512-x4.c"],
                                    [*AVX512_FLAGS, f"-DPRUNEC_X86_FC_GATHER={g}"], tmpdir=tmp_path / str(g))
        keep = kh._Keep()
        y = np.full(300, 7.0, np.float32)
        lib.prunec_f32_fc_rcsr__avx512x4(kh.rcsr_struct(ffi, keep, encode.encode_rcsr(wt, 8)),
                                         keep.buf(ffi, "float[]", b), keep.buf(ffi, "float[]", x),
                                         keep.buf(ffi, "float[]", y, True), -np.inf, np.inf)
        outs.append(y)
    want = wt.astype(np.float64) @ x.astype(np.float64) + b
    assert np.allclose(outs[0], want, rtol=1e-5, atol=1e-5) and np.allclose(outs[1], want, rtol=1e-5, atol=1e-5)
    assert np.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5) and not np.array_equal(outs[0], 7.0)


# The avx512x4 conv has three stride-1 paths: small problems (the group's input packed into kw shifted copies,
# at most 16384 floats, and 16 <= in_c/groups*kh*kw <= 2048) take the packed path, with 8-bit rows of planes of
# <= 4 vectors decoded inside the FMA loop (8x8-like planes in row pairs), other rows decoded in chunks of 512 entries into an offset list
# and the plane cut into segments of <= 24 vectors; larger ones take the register tiles (16 columns, or 8
# when out_w <= 8). These shapes reach each path with odd widths, padding, groups, fillers and every b.
_X4_CONV = [
    # packed, as LeNet-5: conv1 (36 vectors: two segments), conv2 (4 vectors: fused 8-bit decode)
    dict(in_c=1, out_c=20, h=28, w=28, k=(5, 5), density=0.66, seed=1),
    dict(in_c=20, out_c=50, h=12, w=12, k=(5, 5), density=0.12, seed=2),
    # packed, padding, groups, odd widths, several segments with a partial last vector
    dict(in_c=4, out_c=6, h=20, w=21, k=(5, 5), pad=(2, 2), groups=2, density=0.5, seed=3),
    dict(in_c=3, out_c=5, h=7, w=11, k=(3, 5), pad=(1, 2), density=0.6, seed=4),
    dict(in_c=12, out_c=6, h=9, w=9, k=(3, 3), pad=(1, 1), groups=3, density=0.8, seed=5),
    dict(in_c=4, out_c=3, h=33, w=17, k=(2, 2), pad=(0, 1), density=0.7, seed=6),
    dict(in_c=4, out_c=4, h=40, w=40, k=(4, 1), density=0.9, seed=7),  # 93 vectors: 4 segments of 24
    # 8 columns, an even number of rows <= 8, 8-bit codes: the row-pair layout (S = 3, 1, 4 with padding)
    dict(in_c=4, out_c=4, h=6, w=8, k=(3, 3), pad=(1, 1), groups=2, density=0.6, seed=16),
    dict(in_c=3, out_c=5, h=4, w=10, k=(3, 3), density=0.5, pattern="far", seed=17),
    dict(in_c=5, out_c=3, h=8, w=8, k=(5, 5), pad=(2, 2), density=0.3, seed=18),
    dict(in_c=3, out_c=3, h=9, w=10, k=(3, 3), density=0.5, seed=19),  # 7 rows: not paired
    # packed, rows of 8 mod 16 floats: a second copy shifted by 8 floats (fused and list decode)
    dict(in_c=3, out_c=2, h=6, w=8, k=(3, 3), pad=(1, 1), density=0.7, seed=14),
    dict(in_c=4, out_c=4, h=10, w=8, k=(3, 3), pad=(1, 1), groups=2, density=0.8, seed=15),
    # packed, rows longer than one chunk of 512 entries (1x1 kernel over 600 channels)
    dict(in_c=600, out_c=3, h=4, w=5, k=(1, 1), density=0.95, seed=8),
    dict(in_c=600, out_c=3, h=4, w=5, k=(1, 1), pattern="far", seed=9),
    # register tiles: 16-wide (odd width, padding, groups) and 8-wide, both with border rows
    dict(in_c=48, out_c=5, h=19, w=21, k=(3, 5), pad=(1, 2), density=0.3, seed=10),
    dict(in_c=64, out_c=4, h=18, w=18, k=(3, 3), pad=(1, 1), groups=2, density=0.35, seed=11),
    dict(in_c=200, out_c=3, h=11, w=8, k=(3, 3), pad=(1, 1), density=0.2, seed=12),
    dict(in_c=200, out_c=3, h=9, w=7, k=(3, 3), density=0.2, pattern="far", seed=13),
]
# every path on the fast widths and on three others (b < 8: rows widened to bytes for the fused 8-bit decode and
# the row-pair layout; 12: the generic bit-stream reader)
X4_CONV = [kh.ConvCase(**{**c, "bits": b, "act": kh.ACT_NAMES[(i + b) % 3]})
           for i, c in enumerate(_X4_CONV) for b in (3, 4, 6, 8, 12, 16)]


@pytest.mark.parametrize("case", X4_CONV, ids=[c.id for c in X4_CONV])
def test_avx512x4_conv_paths(built, case):
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx512x4", case)


# Strided and dilated convolutions take the register tiles too: stride_w 2..4 reads each tile row as stride_w vectors
# compacted by permutes, stride_w > 4 the direct loop. The same tiles serve the dense kernel (bits None: every weight,
# zeros included). Shapes of ResNet-8, MobileNet and AlexNet conv1, plus borders, groups, several column tiles.
_X4_STRIDED = [
    dict(in_c=16, out_c=6, h=32, w=32, k=(3, 3), stride=(2, 2), pad=(1, 1), density=0.5, seed=20),
    dict(in_c=16, out_c=5, h=32, w=34, k=(1, 1), stride=(2, 2), density=0.8, seed=21),
    dict(in_c=8, out_c=8, h=50, w=66, k=(3, 3), stride=(2, 2), pad=(1, 1), groups=8, density=0.8, seed=22),
    dict(in_c=3, out_c=4, h=47, w=95, k=(3, 3), stride=(2, 2), pad=(1, 1), density=0.7, seed=23),
    dict(in_c=3, out_c=3, h=45, w=101, k=(11, 11), stride=(4, 4), pad=(2, 2), density=0.4, seed=24),
    dict(in_c=2, out_c=3, h=23, w=100, k=(3, 5), stride=(3, 3), pad=(1, 2), density=0.6, seed=25),
    dict(in_c=2, out_c=3, h=30, w=61, k=(3, 3), stride=(2, 2), pad=(2, 2), dil=(2, 2), density=0.6, seed=26),
    dict(in_c=2, out_c=3, h=30, w=40, k=(3, 3), stride=(2, 1), pad=(1, 1), density=0.6, seed=27),
    dict(in_c=4, out_c=3, h=33, w=30, k=(3, 3), pad=(2, 2), dil=(2, 3), density=0.6, seed=28),
    dict(in_c=1, out_c=16, h=49, w=10, k=(10, 4), stride=(2, 2), pad=(5, 1), density=0.5, seed=29),  # DS-CNN's first
    dict(in_c=4, out_c=3, h=12, w=90, k=(3, 3), stride=(1, 5), pad=(1, 1), density=0.6, seed=30),  # the direct loop
    dict(in_c=8, out_c=8, h=9, w=9, k=(3, 3), stride=(2, 2), pad=(1, 1), groups=8, density=0.9, seed=31),
]
X4_STRIDED = [kh.ConvCase(**{**c, "bits": b, "act": kh.ACT_NAMES[(i + (b or 0)) % 3]})
              for i, c in enumerate(_X4_STRIDED) for b in (None, 4, 8, 16)]


@pytest.mark.parametrize("case", X4_STRIDED, ids=[c.id for c in X4_STRIDED])
def test_avx512x4_conv_strided_and_dense_tiles(built, case):
    ffi, lib = built
    name = "prunec_f32_conv2d_dense__avx512x4" if case.bits is None else "prunec_f32_conv2d_rcsr__avx512x4"
    kh.check(ffi, lib, name, case)


# Special values through every packed path (the C tester's special case, 3x12x20, reaches only the
# single-accumulator segments): NaN of both signs, +-inf and -0.0 in the input; one output channel reads only
# input channel 0, all -0.0, with positive weights on a -0.0 bias (its all-zero sums must stay -0.0, as in the
# portable kernel). No padding (padded taps add +0.0 products: docs/TARGETS.md). NaN exactly where the
# portable twin has NaN (relu and relu6 must not turn NaN into 0), infinities and zeros bit-equal.
_X4_SPECIAL = [
    dict(in_c=3, h=9, w=11, k=(3, 3)),  # 7x9 = 63 floats: 4 vectors, 8-bit rows decoded in the FMA loop
    dict(in_c=3, h=5, w=7, k=(3, 3)),  # 3x5: 1 vector
    dict(in_c=4, h=12, w=12, k=(5, 5)),  # 8x8: row pairs (8-bit), 4 vectors otherwise
    dict(in_c=3, h=14, w=14, k=(3, 3)),  # 12x12 = 9 vectors: two segments of 5 and 4
    dict(in_c=2, h=12, w=20, k=(3, 3)),  # 10x18 = 12 vectors: one segment
]


# shapes gcov showed untested (seventeenth session): an output of 4 rows x 8 columns (the 8-wide tile's 4-row case),
# packing for stride_w 4, stride 4 with padding, taps whose valid outputs all lie past a 1-column plane
COVERAGE_CONV = [kh.ConvCase(4, 6, 6, 10, bits=b) for b in (8, 5)] + \
    [kh.ConvCase(3, 5, 32, 32, k=(5, 5), stride=(1, 4), bits=b) for b in (8, 5)] + \
    [kh.ConvCase(2, 4, 29, 31, k=(5, 5), stride=(4, 4), pad=(2, 2), bits=8),
     kh.ConvCase(2, 3, 5, 1, k=(3, 3), pad=(2, 2), dil=(2, 2), bits=8)]


@pytest.mark.parametrize("case", COVERAGE_CONV, ids=[c.id for c in COVERAGE_CONV])
def test_avx512x4_conv_shapes_found_untested(built, case):
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx512x4", case)


@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("act", kh.ACT_NAMES)
@pytest.mark.parametrize("shape", _X4_SPECIAL, ids=lambda d: f"{d['in_c']}x{d['h']}x{d['w']}")
def test_avx512x4_conv_special_values_match_portable(built, shape, act, bits):
    import numpy as np

    from prunec import encode

    ffi, lib = built
    in_c, h, w, (kh_, kw_) = shape["in_c"], shape["h"], shape["w"], shape["k"]
    oh, ow, out_c = h - kh_ + 1, w - kw_ + 1, 4
    rng = np.random.default_rng(in_c * h * w + bits)
    x = rng.standard_normal((in_c, h, w)).astype(np.float32)
    x[1].flat[rng.choice(h * w, 3, replace=False)] = [np.nan, -np.nan, np.inf]
    x[in_c - 1].flat[rng.choice(h * w, 2, replace=False)] = [-np.inf, np.float32(np.nan)]
    x[0] = -0.0
    # density 0.6: no gap needs a filler (a filler's 0 * inf is NaN in the packed paths, FORMAT.md)
    wt = (rng.standard_normal((out_c, in_c, kh_, kw_)) * (rng.random((out_c, in_c, kh_, kw_)) < 0.6)).astype(np.float32)
    wt[3] = 0.0
    wt[3, 0] = np.abs(rng.standard_normal((kh_, kw_))).astype(np.float32) + 0.25  # all positive, no gap
    b = (rng.standard_normal(out_c) * 2).astype(np.float32)
    b[3] = -0.0
    lo, hi = kh.ACTS[act]
    outs = []
    for name in ("prunec_f32_conv2d_rcsr__avx512x4", "prunec_f32_conv2d_rcsr__portable"):
        keep = kh._Keep()
        y = np.full((out_c, oh, ow), 7.0, np.float32)
        p = ffi.new("prunec_conv2d_params *", {
            "in_c": in_c, "in_h": h, "in_w": w, "out_c": out_c, "out_h": oh, "out_w": ow, "kh": kh_, "kw": kw_,
            "stride_h": 1, "stride_w": 1, "dil_h": 1, "dil_w": 1, "groups": 1})
        ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(wt, bits))
        getattr(lib, name)(p, ws, keep.buf(ffi, "float[]", b), keep.buf(ffi, "float[]", x),
                           keep.buf(ffi, "float[]", y, True), lo, hi)
        outs.append(y)
    got, want = outs
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(want).any()
    fin = ~np.isnan(want)
    special = fin & (np.isinf(want) | (want == 0.0))
    assert np.array_equal(got[special].view(np.uint32), want[special].view(np.uint32))
    assert np.signbit(want[3]).all() and np.array_equal(got[3].view(np.uint32), want[3].view(np.uint32))
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-4, atol=1e-4)


# The 2x2/2 fast path of the max pool: row pairs in one run (even heights) or per channel (odd heights), rows
# 8 wide four pairs per vector (pair counts not a multiple of 4: 3x6x8 has 9 pairs in one run, 2x7x8 3 per
# channel, 1x10x8 5, 1x2x8 1; the 8-row heights give multiples of 4 only), widths with full and partial blocks; NaN
# of both signs and infinities planted, against numpy's max (NaN wherever a window holds one).
@pytest.mark.parametrize("c,h,w", [(50, 8, 8), (3, 8, 8), (5, 9, 8), (3, 6, 8), (2, 7, 8), (1, 10, 8), (1, 2, 8),
                                   (20, 24, 24), (3, 7, 24), (2, 6, 64), (2, 5, 70), (1, 2, 2), (7, 4, 9)])
def test_avx512x4_maxpool_2x2_paths_with_nan(built, c, h, w):
    import numpy as np

    ffi, lib = built
    oh, ow = h // 2, w // 2
    p = ffi.new("prunec_pool2d_params *", {"channels": c, "in_h": h, "in_w": w, "out_h": oh, "out_w": ow,
                                           "kh": 2, "kw": 2, "stride_h": 2, "stride_w": 2})
    rng = np.random.default_rng(c * h * w)
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    idx = rng.choice(x.size, min(6, x.size), replace=False)
    x.flat[idx] = np.array([np.nan, -np.nan, np.inf, -np.inf, np.nan, np.inf], np.float32)[: idx.size]
    y = np.full(c * oh * ow + 16, 7.0, np.float32)
    lib.prunec_f32_maxpool2d__avx512x4(p, ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y, require_writable=True))
    want = x[:, : 2 * oh, : 2 * ow].reshape(c, oh, 2, ow, 2)
    want = np.where(np.isnan(want).any(axis=(2, 4)), np.nan, np.nanmax(want, axis=(2, 4))).ravel()
    got = y[: want.size]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~np.isnan(want)], want[~np.isnan(want)])
    assert (y[want.size:] == 7.0).all()


def test_x86_rcsr_kernels_fill_nan_for_an_invalid_index_width(tmp_path):
    """docs/FORMAT.md: an index_bits outside 1..16 fills the output with NaN, as the portable kernels do. The
    avx2 and avx512 fc/conv kernels decoded such a layer as 4-bit codes and stored finite garbage."""
    import numpy as np

    from prunec import encode

    ks = [k for k in runtime.kernels() if k.isa in ("avx2", "avx512", "avx512x4", "portable")
          and k.op in ("fc_rcsr", "conv2d_rcsr")]
    ffi, lib = kh.build_kernels(sorted({k.source for k in ks}), AVX512_FLAGS, tmpdir=tmp_path)
    rng = np.random.default_rng(3)
    for k in ks:
        for bad in (0, 17, 32):
            keep = kh._Keep()
            if k.op == "fc_rcsr":
                r = encode.encode_rcsr(np.eye(6, dtype=np.float32), 8)
                ws = kh.rcsr_struct(ffi, keep, r)
                ws.index_bits = bad
                y = np.zeros(6, np.float32)
                getattr(lib, k.name)(ws, ffi.NULL, keep.buf(ffi, "float[]", np.ones(6, np.float32)),
                                     keep.buf(ffi, "float[]", y, True), float("-inf"), float("inf"))
            else:
                w = rng.standard_normal((2, 9)).astype(np.float32)
                ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w, 8))
                ws.index_bits = bad
                p = ffi.new("prunec_conv2d_params *", {"in_c": 1, "in_h": 6, "in_w": 6, "out_c": 2, "out_h": 4,
                                                       "out_w": 4, "kh": 3, "kw": 3, "stride_h": 1, "stride_w": 1,
                                                       "pad_h": 0, "pad_w": 0, "dil_h": 1, "dil_w": 1, "groups": 1})
                y = np.zeros(32, np.float32)
                x = rng.standard_normal(36).astype(np.float32)
                getattr(lib, k.name)(p, ws, ffi.NULL, keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True),
                                     float("-inf"), float("inf"))
            assert np.isnan(y).all(), f"{k.name} with index_bits={bad}: {y[:6]}"


# Planes at most 8 wide (the 8-wide tiles) whose last full 8-row tile ends on the bottom padding: rows 8..15 of a
# 16x8 plane, 3x3 pad 1, read input rows 7..16, the last one padding, so the tile must take the checked (border) loop.
# _X4_CONV's 8-wide cases (11 and 9 rows) end on a partial tile and never ask. 40 input channels: not packed.
X4_TILES8_BOTTOM = [kh.ConvCase(40, 3, 16, 8, k=(3, 3), pad=(1, 1), density=0.3, bits=b, act=a, seed=60 + b)
                    for b, a in ((8, "relu"), (4, "none"), (16, "relu6"))]


@pytest.mark.parametrize("case", X4_TILES8_BOTTOM, ids=[c.id for c in X4_TILES8_BOTTOM])
def test_avx512x4_conv_8_wide_tiles_ending_on_the_bottom_padding(built, case):
    ffi, lib = built
    kh.check(ffi, lib, "prunec_f32_conv2d_rcsr__avx512x4", case)
