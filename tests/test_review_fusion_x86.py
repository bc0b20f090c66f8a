"""Review of the one-call fused conv + max pool (conv2d_rcsr_maxpool2d) on x86_64-avx2.

Kernel level: random geometries (groups, depthwise, strides, padding, kernels 1..5, pools 1..3 with other strides,
padding, ceil_mode, planes 24 wide and 8x8, odd sizes, index widths 1..16, clamps, bias NULL, NaN) give the unfused
avx512x4 conv + avx512x4 max pool's bits, and nothing is written past the plane or the pooled output.
Build level: a model whose pairs are a padded ceil_mode 3x3/2 pool, a depthwise conv into a stride-1 pool, a conv into
an average pool and a conv into a 1x1 pooled output builds with the target's default (only the max pool pairs as one
call, the avg pool pair unfused), verifies and equals the unfused build; without AVX-512 nothing is fused by default.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import build_models as bm
import kernel_harness as kh
import test_fuse_conv_maxpool_kernel as T
from prunec import encode, runtime
from prunec.build import build
from prunec.verify import verify

ONE = "prunec_f32_conv2d_rcsr_maxpool2d__avx512x4"


@pytest.fixture(scope="module")
def x4(tmp_path_factory):
    if not T._has_avx512():
        pytest.skip("this CPU lacks AVX-512 (F, VL, BW, DQ)")
    ks = [k for k in runtime.kernels() if k.isa in ("avx512x4", "portable")]
    return kh.build_kernels(sorted({k.source for k in ks}), T.AVX512_FLAGS, tmpdir=tmp_path_factory.mktemp("rv_x4"))


def _fused(ffi, lib, name, case):
    w, b, x = case.data()
    c = case.conv
    keep = kh._Keep()
    oh, ow = case.out_hw()
    ch, cw = c.out_hw()
    n = c.out_c * oh * ow
    y = np.full(n + 64, 7.0, np.float32)
    y[:n] = np.nan
    plane = np.full(ch * cw + 64, 7.0, np.float32)
    ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w, c.bits))
    lo, hi = kh.ACTS[c.act]
    getattr(lib, name)(kh.conv_params(ffi, c), ws, kh._bias(ffi, keep, b), kh.pool_params(ffi, case.pool()),
                       keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", plane, True),
                       keep.buf(ffi, "float[]", y, True), lo, hi)
    assert (y[n:] == 7.0).all(), f"{name}: wrote past the pooled output on {case.id}"
    assert (plane[ch * cw:] == 7.0).all(), f"{name}: wrote past the plane on {case.id}"
    return y[:n].reshape(c.out_c, oh, ow)


def _random_cases(seed: int, n: int):
    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        g = rnd.choice([1, 1, 1, 2, 3])
        cin_g, cout_g = rnd.randint(1, 5), rnd.randint(1, 7)
        if rnd.random() < 0.15:  # depthwise
            cin_g, cout_g, g = 1, 1, rnd.randint(1, 6)
        k = (rnd.randint(1, 5), rnd.randint(1, 5))
        pad = (rnd.randint(0, k[0] // 2), rnd.randint(0, k[1] // 2))
        stride = rnd.choice([(1, 1)] * 4 + [(2, 2), (1, 2)])
        if rnd.random() < 0.3:
            h, w = rnd.choice([(28, 28), (12, 12), (14, 28), (26, 28), (16, 28),
                               (8 + k[0] - 1 - 2 * pad[0], 8 + k[1] - 1 - 2 * pad[1])])
        else:
            h, w = rnd.randint(k[0], 30), rnd.randint(k[1], 30)
        pattern = rnd.choice(["random", "random", "full"])
        cc = kh.ConvCase(cin_g * g, cout_g * g, h, w, k=k, stride=stride, pad=pad, groups=g,
                         density=rnd.choice([0.1, 0.5, 1.0]), pattern=pattern,
                         bits=rnd.choice([1, 3, 4, 5, 8, 12, 16]), act=rnd.choice(list(kh.ACTS)),
                         bias=rnd.random() < 0.8, seed=rnd.randint(0, 99))
        oh, ow = cc.out_hw()
        if oh < 1 or ow < 1:
            continue
        pk = (rnd.randint(1, min(3, oh)), rnd.randint(1, min(3, ow)))
        ps = (rnd.randint(1, 3), rnd.randint(1, 3)) if rnd.random() < 0.5 else pk
        pp = (rnd.randint(0, pk[0] // 2), rnd.randint(0, pk[1] // 2))
        if rnd.random() < 0.3:
            pk, ps, pp = (2, 2), (2, 2), (0, 0)
        case = kh.ConvPoolCase(cc, pk, ps, pp, rnd.random() < 0.4, nan=rnd.random() < 0.2 and pattern == "full")
        if min(case.out_hw()) >= 1:
            out.append(case)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_random_geometries_equal_the_unfused_pair_guarded(x4, seed):
    ffi, lib = x4
    for case in _random_cases(seed, 150):
        got = _fused(ffi, lib, ONE, case)
        want = T._unfused(ffi, lib, "prunec_f32_conv2d_rcsr__avx512x4", "prunec_f32_maxpool2d__avx512x4", case)
        T._same_bits(got, want, case.id)
        twin = _fused(ffi, lib, "prunec_f32_conv2d_rcsr_maxpool2d__portable", case)
        ref = T._unfused(ffi, lib, "prunec_f32_conv2d_rcsr__portable", "prunec_f32_maxpool2d__portable", case)
        T._same_bits(twin, ref, "portable " + case.id)


class Pairs(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 6, 3, groups=6)
        self.c3 = nn.Conv2d(6, 5, 3, padding=1)
        self.c4 = nn.Conv2d(5, 4, 2)

    def forward(self, x):
        x = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)(self.c1(x))
        x = F.max_pool2d(F.relu6(self.c2(x)), 3, stride=1)
        x = F.avg_pool2d(self.c3(x), 2, ceil_mode=True)
        return F.max_pool2d(self.c4(x), 2, ceil_mode=True).flatten(1)


@pytest.fixture(scope="module")
def pairs_model(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("rv_pairs")
    return bm.export(bm.prune_random(Pairs().eval(), 0), (3, 23, 19), d / "pairs.pt2")


def test_default_fuses_only_one_call_pairs_and_equals_unfused(pairs_model, tmp_path):
    if not T._has_avx512():
        pytest.skip("this CPU lacks AVX-512")
    d = build(pairs_model, "x86_64-avx2", tmp_path / "d", name="net")
    u = build(pairs_model, "x86_64-avx2", tmp_path / "u", name="net", fuse_pool=False)
    assert d.manifest["plan"]["fused_conv_pool"] == [["c1", "max_pool2d"], ["c2", "max_pool2d_1"],
                                                     ["c4", "max_pool2d_2"]]
    kernels = {l["name"]: l["kernel"] for l in d.manifest["layers"]}
    assert kernels["c3"] == "prunec_f32_conv2d_rcsr__avx512x4" and kernels["avg_pool2d"] != ONE
    src = (tmp_path / "d" / "net.c").read_text()
    assert src.count(ONE + "(") == 3 and "for (uint32_t c = 0u;" not in src
    xs = bm.random_inputs((3, 23, 19), 8, seed=2)
    a, b = bm.outputs(tmp_path / "d", xs), bm.outputs(tmp_path / "u", xs)
    assert np.array_equal(a, b), np.max(np.abs(a - b))
    assert verify(tmp_path / "d", random=16).ok


def test_without_avx512_nothing_is_fused_by_default(pairs_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEC_AVX512", "0")
    r = build(pairs_model, "x86_64-avx2", tmp_path / "n", name="net")
    assert r.manifest["plan"]["fused_conv_pool"] == []
    assert not any("avx512" in k for k in r.manifest["kernels"]), r.manifest["kernels"]
    assert verify(tmp_path / "n", random=8).ok
