"""The one-call fused conv + max pool kernels (op conv2d_rcsr_maxpool2d, runtime_c/kernels.inc) and where codegen
uses them.

Kernel level: the portable twin is bit for bit the per-channel loop of a fused build (portable conv over a one-row
view into the plane, portable max pool of the plane), and the avx512x4 kernel bit for bit the unfused avx512x4
conv + avx512x4 max pool (its paths compute each channel alone in the same order; the pool of LeNet-5's 8x8
planes runs in registers with the max pool kernel's operand order), on every index width 1..16, NaN included.
(The edge cases against the float64 reference run in test_kernels_portable.py / test_avx512x4_kernels.py
through kernel_harness.conv_pool_cases.)

Build level: an x86_64-avx2 build with fusion calls the avx512x4 kernel once per fused conv + max pool pair
(where the machine has AVX-512) and gives the unfused build's outputs bit for bit; a pair into an average pool,
and every target whose kernels for the op are only portable (host, Cortex-M), keep the per-channel loop.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import build_models as bm
import kernel_harness as kh
from prunec import encode, runtime, targets, verify as verify_mod
from prunec.build import build
from prunec.verify import verify

AVX512_FLAGS = ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]
FUSED = "conv2d_rcsr_maxpool2d"


def _has_avx512() -> bool:
    return {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify_mod.cpu_flags() or set())


needs_avx512 = pytest.mark.skipif(not _has_avx512(), reason="this CPU lacks AVX-512 (F, VL, BW, DQ)")


def test_registry_knows_the_fused_op():
    ks = {k.isa: k for k in runtime.kernels() if k.op == FUSED}
    assert set(ks) == {"portable", "avx512x4"}
    assert FUSED in kh.SIGNATURES and kh.cases_for(FUSED)
    assert set(ks["portable"].uses) == {"prunec_f32_conv2d_rcsr__portable", "prunec_f32_maxpool2d__portable"}
    srcs = runtime.sources_for([ks["avx512x4"]])
    assert "src/avx512/f32-maxpool2d-avx512-x4.c" in srcs and "src/portable/f32-pool2d-portable.c" in srcs


# Geometries for the bit-for-bit comparisons: LeNet-5's pairs (packed path, row pairs + in-register pool), a
# grouped conv into a 3x3/2 padded pool (the portable pool behind the fast one), a strided conv (the per-channel
# fallback), an odd 7x9 plane with ceil_mode, a NaN in the input, planes 24 wide (pooled in registers) with
# other heights and another pool.
_GEOMS = [
    kh.ConvPoolCase(kh.ConvCase(1, 20, 28, 28, k=(5, 5), density=0.6, act="relu")),
    kh.ConvPoolCase(kh.ConvCase(20, 50, 12, 12, k=(5, 5), density=0.1, seed=1)),
    kh.ConvPoolCase(kh.ConvCase(4, 6, 8, 8, groups=2, pad=(1, 1), act="relu6"), k=(3, 3), stride=(2, 2), pad=(1, 1)),
    kh.ConvPoolCase(kh.ConvCase(3, 4, 9, 9, stride=(2, 2)), ceil_mode=True),
    kh.ConvPoolCase(kh.ConvCase(3, 4, 9, 11, density=0.5, seed=2), ceil_mode=True),
    kh.ConvPoolCase(kh.ConvCase(2, 3, 12, 12, pattern="full", k=(5, 5), act="relu"), nan=True),
    kh.ConvPoolCase(kh.ConvCase(4, 5, 12, 12, pattern="full", k=(5, 5), act="relu6"), nan=True),  # 8x8 planes
    kh.ConvPoolCase(kh.ConvCase(1, 4, 28, 28, pattern="full", k=(5, 5)), nan=True),  # 24 wide: pooled in registers
    kh.ConvPoolCase(kh.ConvCase(2, 3, 14, 28, k=(5, 5), act="relu")),  # 10x24: one segment of 15 vectors
    kh.ConvPoolCase(kh.ConvCase(2, 3, 14, 28, k=(5, 5)), ceil_mode=True, k=(3, 3)),  # 24 wide, other pool
]
_BITS = list(encode.INDEX_BITS)


def _unfused(ffi, lib, conv_kernel, pool_kernel, case: kh.ConvPoolCase) -> np.ndarray:
    """The conv kernel over the whole layer, then the pool kernel over all its channels."""
    c = case.conv
    w, b, x = case.data()
    keep = kh._Keep()
    ch, cw = c.out_hw()
    mid = np.full((c.out_c, ch, cw), np.nan, np.float32)
    oh, ow = case.out_hw()
    y = np.full((c.out_c, oh, ow), np.nan, np.float32)
    lo, hi = kh.ACTS[c.act]
    ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w, c.bits))
    getattr(lib, conv_kernel)(kh.conv_params(ffi, c), ws, kh._bias(ffi, keep, b), keep.buf(ffi, "float[]", x),
                              keep.buf(ffi, "float[]", mid, True), lo, hi)
    getattr(lib, pool_kernel)(kh.pool_params(ffi, case.pool()), keep.buf(ffi, "float[]", mid),
                              keep.buf(ffi, "float[]", y, True))
    return y


def _same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN at other places"
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32)), \
        f"{what}: max diff {np.max(np.abs(got[~nan] - want[~nan]))}"


def _cases():
    for g in _GEOMS:
        for b in _BITS:
            yield kh.ConvPoolCase(kh.ConvCase(**{**g.conv.__dict__, "bits": b}), g.k, g.stride, g.pad, g.ceil_mode, g.nan)


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    ks = [k for k in runtime.kernels() if k.isa == "portable"]
    return kh.build_kernels(runtime.sources_for(ks), tmpdir=tmp_path_factory.mktemp("fused_portable"))


@pytest.fixture(scope="module")
def x4(tmp_path_factory):
    if not _has_avx512():
        pytest.skip("this CPU lacks AVX-512 (F, VL, BW, DQ)")
    ks = [k for k in runtime.kernels() if k.isa in ("avx512x4", "portable")]
    return kh.build_kernels(sorted({k.source for k in ks}), AVX512_FLAGS, tmpdir=tmp_path_factory.mktemp("fused_x4"))


def test_portable_twin_is_the_per_channel_loop_bit_for_bit(portable):
    ffi, lib = portable
    for case in _cases():
        got = kh.run(ffi, lib, "prunec_f32_conv2d_rcsr_maxpool2d__portable", case)
        want = _unfused(ffi, lib, "prunec_f32_conv2d_rcsr__portable", "prunec_f32_maxpool2d__portable", case)
        _same_bits(got, want, case.id)
        if case.nan:
            assert np.isnan(want).any() and not np.isnan(want).all()


def test_avx512x4_is_the_unfused_avx512x4_pair_bit_for_bit(x4):
    ffi, lib = x4
    for case in _cases():
        got = kh.run(ffi, lib, "prunec_f32_conv2d_rcsr_maxpool2d__avx512x4", case)
        want = _unfused(ffi, lib, "prunec_f32_conv2d_rcsr__avx512x4", "prunec_f32_maxpool2d__avx512x4", case)
        _same_bits(got, want, case.id)
        twin = kh.run(ffi, lib, "prunec_f32_conv2d_rcsr_maxpool2d__portable", case)
        want64, tol = kh.reference(FUSED, case)
        kh.assert_close(got, want64, tol, case.id)
        assert np.array_equal(np.isnan(got), np.isnan(twin)), case.id


def test_avx512x4_signed_zeros_and_infinities_pool_as_the_max_pool_kernel(x4):
    """Planes of -0.0 / +0.0 (relu of negatives, zero weights on a +-0 bias) and infinities: the in-register pool
    of 8x8 planes and the plane pool give the max pool kernel's bits."""
    ffi, lib = x4
    rng = np.random.default_rng(5)
    for hw, cin in ((12, 4), (28, 1)):
        case = kh.ConvPoolCase(kh.ConvCase(cin, 6, hw, hw, k=(5, 5), bits=8, act="relu", density=0.6, seed=4))
        w, b, x = case.data()
        x[0].flat[rng.choice(hw * hw, 3, replace=False)] = [np.inf, -np.inf, np.inf]
        b[:3] = [-0.0, 0.0, -0.0]
        w[:3] = 0.0
        outs = []
        for fused in (True, False):
            keep = kh._Keep()
            oh, ow = case.out_hw()
            ch, cw = case.conv.out_hw()
            y = np.full((6, oh, ow), np.nan, np.float32)
            mid = np.full((6, ch, cw), np.nan, np.float32)
            ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w, 8))
            args = (kh.conv_params(ffi, case.conv), ws, keep.buf(ffi, "float[]", b))
            pp = kh.pool_params(ffi, case.pool())
            if fused:
                lib.prunec_f32_conv2d_rcsr_maxpool2d__avx512x4(*args, pp, keep.buf(ffi, "float[]", x),
                                                               keep.buf(ffi, "float[]", mid[0], True),
                                                               keep.buf(ffi, "float[]", y, True), 0.0, np.inf)
            else:
                lib.prunec_f32_conv2d_rcsr__avx512x4(*args, keep.buf(ffi, "float[]", x),
                                                     keep.buf(ffi, "float[]", mid, True), 0.0, np.inf)
                lib.prunec_f32_maxpool2d__avx512x4(pp, keep.buf(ffi, "float[]", mid), keep.buf(ffi, "float[]", y, True))
            outs.append(y)
        _same_bits(outs[0], outs[1], f"{hw}x{hw}")
        assert np.signbit(outs[1][0]).all() and not np.signbit(outs[1][1]).any()


@pytest.mark.parametrize("bad", [0, 17])
def test_invalid_index_width_fills_the_pooled_output_with_nan(portable, x4, bad):
    for (ffi, lib), name in ((portable, "prunec_f32_conv2d_rcsr_maxpool2d__portable"),
                             (x4, "prunec_f32_conv2d_rcsr_maxpool2d__avx512x4")):
        case = kh.ConvPoolCase(kh.ConvCase(2, 3, 8, 8, bits=8))
        w, b, x = case.data()
        keep = kh._Keep()
        ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w, 8))
        ws.index_bits = bad
        y = np.zeros((3, 3, 3), np.float32)
        plane = np.zeros(36, np.float32)
        getattr(lib, name)(kh.conv_params(ffi, case.conv), ws, kh._bias(ffi, keep, b),
                           kh.pool_params(ffi, case.pool()), keep.buf(ffi, "float[]", x),
                           keep.buf(ffi, "float[]", plane, True), keep.buf(ffi, "float[]", y, True), -np.inf, np.inf)
        assert np.isnan(y).all(), name


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class Mixed(nn.Module):
    """A grouped conv into an overlapping 3x3/2 max pool (one call, pool by the portable pool), a strided conv
    into a max pool (one call, per-channel fallback), a conv into an average pool (the loop)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 6, 3, padding=1, groups=2)
        self.c2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 3, stride=2, padding=1)
        x = F.max_pool2d(self.c2(x), 2, ceil_mode=True)
        return F.avg_pool2d(self.c3(x), 2)


@needs_avx512
@pytest.mark.parametrize("model", ["lenet5", "mixed"])
def test_x86_fused_build_calls_one_kernel_and_equals_unfused(model, tmp_path):
    torch.manual_seed(0)
    m, shape = (LeNet5(), (1, 28, 28)) if model == "lenet5" else (Mixed(), (4, 17, 17))
    m = bm.prune_random(m.eval(), 0)
    p = bm.export(m, shape, tmp_path / f"{model}.pt2")
    fused = build(p, "x86_64-avx2", tmp_path / "f", name="net", fuse_pool=True)
    plain = build(p, "x86_64-avx2", tmp_path / "u", name="net", fuse_pool=False)
    pairs = fused.manifest["plan"]["fused_conv_pool"]
    src = (tmp_path / "f" / "net.c").read_text()
    kernels = {l["name"]: l["kernel"] for l in fused.manifest["layers"]}
    one = "prunec_f32_conv2d_rcsr_maxpool2d__avx512x4"
    if model == "lenet5":
        assert pairs == [["conv1", "pool"], ["conv2", "pool_1"]] or len(pairs) == 2, pairs
        assert src.count(one + "(") == 2 and "for (uint32_t c = 0u;" not in src
        assert kernels["conv1"] == kernels["conv2"] == one
    else:
        assert len(pairs) == 3, pairs
        assert src.count(one + "(") == 2 and src.count("for (uint32_t c = 0u;") == 1
        assert kernels["c3"] == "prunec_f32_conv2d_rcsr__avx512x4"
    for conv, pool in pairs:
        if kernels[conv] == one:
            assert kernels[pool] == one  # the manifest says what runs the pool
    assert one in fused.manifest["kernels"]
    xs = bm.random_inputs(shape, 8, seed=1)
    a, b = bm.outputs(tmp_path / "f", xs), bm.outputs(tmp_path / "u", xs)
    assert np.array_equal(a, b), np.max(np.abs(a - b))
    rep = verify(tmp_path / "f", random=16)
    assert rep.ok, rep.text()


@pytest.mark.parametrize("target", ["host", "cortex-m4", "cortex-m7", "cortex-m55"])
def test_targets_without_an_isa_kernel_keep_the_channel_loop(target, tmp_path):
    """Only portable kernels for the op there: the generated code is the per-channel loop, as before the op
    existed (Cortex-M's fused builds unchanged)."""
    t = targets.get(target)
    assert runtime.select(FUSED, t.isa_for(FUSED)).isa == "portable"
    torch.manual_seed(0)
    p = bm.export(bm.prune_random(LeNet5().eval(), 0), (1, 28, 28), tmp_path / "l5.pt2")
    r = build(p, target, tmp_path / "o", name="net", fuse_pool=True)
    src = (tmp_path / "o" / "net.c").read_text()
    assert src.count("for (uint32_t c = 0u;") == 2 and FUSED not in src
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert not any(FUSED in k for k in man["kernels"]) and len(r.manifest["plan"]["fused_conv_pool"]) == 2


def test_find_conv_pool_keep_drops_pairs_before_choosing(tmp_path):
    """fuse.find_conv_pool(g, keep): only the pairs `keep` accepts are fused (e.g. those a target runs as one
    kernel call); the arena rule still applies to the rest."""
    from prunec import frontend, fuse

    torch.manual_seed(0)
    p = bm.export(bm.prune_random(Mixed().eval(), 0), (4, 17, 17), tmp_path / "m.pt2")
    g, _ = frontend.load(p)
    every = fuse.find_conv_pool(g)
    assert len(every) == 3
    only_max = fuse.find_conv_pool(g, keep=lambda conv, pool: pool.op == "maxpool2d")
    assert set(only_max) == {i for i, j in every.items() if g.nodes[j].op == "maxpool2d"} and len(only_max) == 2
    assert fuse.find_conv_pool(g, keep=lambda conv, pool: False) == {}


@needs_avx512
def test_one_call_gate_for_a_target_default(tmp_path):
    """The predicate a target that fuses by default only where it runs the pair as one call would pass to
    find_conv_pool: on x86_64-avx2 the two conv + max pool pairs of Mixed, not the conv + average pool; on
    Cortex-M none (its kernels for the op are portable)."""
    from prunec import codegen, frontend, fuse
    from prunec.build import encode_graph

    torch.manual_seed(0)
    p = bm.export(bm.prune_random(Mixed().eval(), 0), (4, 17, 17), tmp_path / "m.pt2")
    g, _ = frontend.load(p)
    for name, want in (("x86_64-avx2", 2), ("cortex-m4", 0)):
        t = targets.get(name)
        enc = encode_graph(g, t, None, None)
        pairs = fuse.find_conv_pool(g, keep=lambda c, q: codegen.fused_kernel(c, enc.get(c.name), q, t) is not None)
        assert len(pairs) == want and all(g.nodes[j].op == "maxpool2d" for j in pairs.values()), (name, pairs)
