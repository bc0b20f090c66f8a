"""GELU, ELU / CELU / SELU, softplus, Mish, constant padding, nearest and bilinear upsampling, permute / transpose
end to end: small models built with `prunec build` and verified against PyTorch (`prunec verify`, random inputs, to
1e-5 relative), on the host and, for a model of every new op, on Cortex-M4 and AArch64 under QEMU; the graphs the
frontend makes of them (a symmetric zero pad folded into the conv after it, a no-op permute a view, a channel
shuffle one permute layer); and what is still refused, by name, argument and the user's file:line.
The kernels themselves are checked against PyTorch in test_kernels_portable.py (kernel_harness.py's cases)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import build_models as bm
from prunec import frontend, targets
from prunec.build import build
from prunec.errors import PrunecError
from prunec.verify import verify

HERE = "test_ops_more.py"


class _Fn(nn.Module):
    def __init__(self, fn, modules):
        super().__init__()
        self.fn = fn
        for k, v in modules.items():
            setattr(self, k, v)

    def forward(self, x):
        return self.fn(self, x)


def _fn(forward, modules=None) -> nn.Module:
    """A module computing forward(self, x), with `modules` as its children."""
    return _Fn(forward, modules or {})


def _program(model: nn.Module, shape, tmp_path):
    torch.manual_seed(0)
    pt2 = bm.export(bm.prune_random(model, 1).eval(), shape, tmp_path / "m.pt2")
    return pt2, frontend.load(pt2)[0]


def _build_and_verify(pt2, out, target: str = "host", n: int = 4):
    if targets.get(target).missing_tools():
        pytest.skip(f"{target}: tools not installed")
    r = build(pt2, target, out)
    rep = verify(out, random=n)
    assert rep.ok and rep.max_rel_err < 1e-5, rep.text()
    return r


def _ops(g):
    return [n.op for n in g.nodes]


# --- activations ---------------------------------------------------------------------------------------------

ACTS = {
    "gelu": (lambda x: F.gelu(x), "gelu", {"approximate": "none"}),
    "gelu_tanh": (lambda x: nn.GELU(approximate="tanh")(x), "gelu", {"approximate": "tanh"}),
    "elu": (lambda x: F.elu(x, 0.4), "elu", {"scale": 1.0, "input_scale": 1.0, "neg_scale": 0.4}),
    "elu_inplace": (lambda x: F.elu(x, 1.0, inplace=True), "elu", {"scale": 1.0, "input_scale": 1.0, "neg_scale": 1.0}),
    "celu": (lambda x: nn.CELU(2.0)(x), "elu", {"scale": 1.0, "input_scale": 0.5, "neg_scale": 2.0}),
    "selu": (lambda x: nn.SELU()(x), "elu", None),
    "softplus": (lambda x: F.softplus(x), "softplus", {"beta": 1.0, "threshold": 20.0}),
    "softplus_beta": (lambda x: nn.Softplus(2.0, 1.5)(x), "softplus", {"beta": 2.0, "threshold": 1.5}),
    "mish": (lambda x: nn.Mish()(x), "mish", {}),
    "mish_inplace": (lambda x: F.mish(x, inplace=True), "mish", {}),
}


@pytest.mark.parametrize("name", ACTS)
def test_activation_after_a_conv_and_a_linear(tmp_path, name):
    """conv -> act -> pool -> flatten -> linear -> act, inputs scaled so that both tails of each function are hit."""
    act, op, attrs = ACTS[name]

    def forward(self, x):
        h = F.max_pool2d(act(self.c(x * 4.0)), 2)
        return act(self.fc(h.flatten(1)))

    pt2, g = _program(_fn(forward, {"c": nn.Conv2d(2, 4, 3, padding=1), "fc": nn.Linear(4 * 3 * 4, 6)}), (2, 6, 8),
                      tmp_path)
    nodes = [n for n in g.nodes if n.op == op]
    assert len(nodes) == 2, _ops(g)
    if attrs is not None:
        assert all(n.attrs == attrs for n in nodes), [n.attrs for n in nodes]
    r = _build_and_verify(pt2, tmp_path / "b")
    assert f"prunec_f32_{op}__portable" in r.manifest["kernels"]


def test_an_in_place_activation_overwrites_its_input(tmp_path):
    """An elementwise layer whose input dies there writes over it (plan.IN_PLACE_OPS)."""
    def forward(self, x):
        return F.mish(F.selu(F.gelu(self.fc(x), approximate="tanh")) + 1.0)

    pt2, g = _program(_fn(forward, {"fc": nn.Linear(8, 8)}), (8,), tmp_path)
    r = _build_and_verify(pt2, tmp_path / "b")
    assert r.manifest["plan"]["in_place_layers"] >= 2
    assert "in place" in (tmp_path / "b" / "model.c").read_text()


def test_activation_arguments_out_of_range_are_refused():
    def forward(self, x):
        return F.softplus(x, beta=0.0)

    with pytest.raises(PrunecError, match=rf"aten\.softplus\.default at .*{HERE}:\d+: softplus with beta 0\.0") as e:
        frontend.from_program(torch.export.export(_fn(forward), (torch.randn(1, 4),)))
    assert "nothing was written" in str(e.value)


# --- pad -----------------------------------------------------------------------------------------------------

def test_symmetric_zero_pad_is_folded_into_the_conv_after_it(tmp_path):
    """ZeroPad2d(1) + Conv2d(padding=1) is one conv with padding 2; F.pad on NCL + Conv1d the same in 1-d."""
    def forward(self, x):
        h = self.c(self.pad(x))
        return self.c1(F.pad(h.flatten(2), (2, 2)))

    pt2, g = _program(_fn(forward, {"pad": nn.ZeroPad2d(1), "c": nn.Conv2d(2, 3, 3, padding=1),
                                    "c1": nn.Conv1d(3, 2, 3)}), (2, 5, 6), tmp_path)
    assert _ops(g) == ["conv2d", "conv2d"]
    assert g.nodes[0].attrs["padding"] == (2, 2) and g.nodes[0].in_shapes[0] == (1, 2, 5, 6)
    assert g.nodes[1].attrs["padding"] == (0, 2) and g.nodes[1].in_shapes[0] == (1, 3, 1, 7 * 8)
    _build_and_verify(pt2, tmp_path / "b")


@pytest.mark.parametrize("name,forward", [
    # TensorFlow-style 'same' before a stride-2 conv: one more row and column at the end
    ("asymmetric", lambda self, x: self.c(F.pad(x, (0, 1, 0, 1)))),
    ("value", lambda self, x: self.c(F.pad(x, (1, 1, 1, 1), value=0.5))),
    ("crop", lambda self, x: self.c(F.pad(x, (-1, -1, 0, 0)))),
    ("read_twice", lambda self, x: (lambda p: self.c(p) + self.c(p))(F.pad(x, (1, 1, 1, 1)))),
])
def test_other_pads_before_a_conv_are_pad_layers(tmp_path, name, forward):
    pt2, g = _program(_fn(forward, {"c": nn.Conv2d(2, 3, 3, stride=2)}), (2, 6, 7), tmp_path)
    assert "pad2d" in _ops(g) and all(n.attrs["padding"] == (0, 0) for n in g.nodes if n.op == "conv2d"), g.summary()
    r = _build_and_verify(pt2, tmp_path / "b")
    assert "prunec_f32_pad2d__portable" in r.manifest["kernels"]


@pytest.mark.parametrize("name,forward,shape", [
    ("constant_pad_1d", lambda self, x: nn.ConstantPad1d((3, 1), -2.0)(x) * 2.0, (3, 7)),
    ("constant_pad_2d", lambda self, x: nn.ConstantPad2d((1, 0, 2, 3), 1.25)(x), (2, 4, 5)),
    ("last_dim_of_nchw", lambda self, x: F.pad(x, (2, 0)), (2, 4, 5)),
    ("flat_features", lambda self, x: F.pad(x.flatten(1), (1, 4), value=3.0), (2, 3, 3)),
    ("crop_and_pad", lambda self, x: F.pad(x, (-2, 1, 1, -1)), (2, 5, 6)),
    ("minus_inf_before_max_pool", lambda self, x: F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, 2),
     (2, 5, 6)),
    ("aten_constant_pad_nd", lambda self, x: torch.constant_pad_nd(x, [1, 2, 0, 1], 0.5), (2, 3, 4)),
])
def test_constant_pads(tmp_path, name, forward, shape):
    pt2, g = _program(_fn(forward), shape, tmp_path)
    assert "pad2d" in _ops(g)
    _build_and_verify(pt2, tmp_path / "b")


# --- upsample ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,forward,shape,op", [
    ("nearest_2", lambda self, x: F.interpolate(x, scale_factor=2), (2, 3, 4), "upsample_nearest2d"),
    ("nearest_module_2x3", lambda self, x: nn.Upsample(scale_factor=(2, 3))(x), (2, 3, 4), "upsample_nearest2d"),
    ("nearest_size", lambda self, x: F.interpolate(x, size=(9, 4)), (2, 3, 4), "upsample_nearest2d"),
    ("nearest_1d", lambda self, x: F.interpolate(x, scale_factor=3), (2, 5), "upsample_nearest2d"),
    ("nearest_aten_default", lambda self, x: torch.ops.aten.upsample_nearest2d(x, [6, 12]), (2, 3, 4),
     "upsample_nearest2d"),
    ("bilinear", lambda self, x: F.interpolate(x, scale_factor=2, mode="bilinear"), (2, 3, 4), "upsample_bilinear2d"),
    ("bilinear_align", lambda self, x: nn.Upsample(scale_factor=(3, 2), mode="bilinear", align_corners=True)(x),
     (2, 3, 4), "upsample_bilinear2d"),
    ("bilinear_size", lambda self, x: F.interpolate(x, size=(7, 5), mode="bilinear"), (2, 3, 4), "upsample_bilinear2d"),
    ("bilinear_fraction", lambda self, x: F.interpolate(x, scale_factor=1.5, mode="bilinear"), (2, 4, 6),
     "upsample_bilinear2d"),
    ("bilinear_aten_default", lambda self, x: torch.ops.aten.upsample_bilinear2d(x, [5, 9], True), (2, 3, 4),
     "upsample_bilinear2d"),
    ("linear_1d", lambda self, x: F.interpolate(x, scale_factor=2.5, mode="linear"), (2, 5), "upsample_bilinear2d"),
])
def test_upsampling(tmp_path, name, forward, shape, op):
    pt2, g = _program(_fn(forward), shape, tmp_path)
    assert _ops(g) == [op]
    _build_and_verify(pt2, tmp_path / "b")


class UNet(nn.Module):
    """A U-Net-like block: conv, pool, conv, nearest upsample, concatenated with the skip, conv, GELU; a second level
    bilinear."""

    def __init__(self):
        super().__init__()
        self.enc, self.mid = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.dec, self.out = nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        skip = F.relu(self.enc(x))
        h = F.relu(self.mid(F.max_pool2d(skip, 2)))
        h = F.gelu(self.dec(torch.cat([F.interpolate(h, scale_factor=2), skip], 1)))
        low = F.interpolate(F.avg_pool2d(h, 2), scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(torch.cat([h, low], 1))


def test_unet_skip_with_upsample_and_cat(tmp_path):
    pt2, g = _program(UNet(), (2, 8, 6), tmp_path)
    assert {"upsample_nearest2d", "upsample_bilinear2d", "concat", "gelu"} <= set(_ops(g))
    _build_and_verify(pt2, tmp_path / "b")


# --- permute -------------------------------------------------------------------------------------------------

class Shuffle(nn.Module):
    """ShuffleNet: grouped 1x1 conv, channel shuffle (view, transpose, view), depthwise conv."""

    def __init__(self, module: bool = False):
        super().__init__()
        self.module = module
        self.g1, self.dw = nn.Conv2d(4, 6, 1, groups=2), nn.Conv2d(6, 6, 3, padding=1, groups=6)

    def forward(self, x):
        h = F.relu(self.g1(x))
        if self.module:
            h = nn.ChannelShuffle(3)(h)
        else:
            n, c, hh, ww = h.shape
            h = h.view(n, 3, c // 3, hh, ww).transpose(1, 2).contiguous().view(n, c, hh, ww)
        return self.dw(h)


@pytest.mark.parametrize("module", [False, True], ids=["view_transpose_view", "ChannelShuffle"])
def test_channel_shuffle_is_one_permute_layer(tmp_path, module):
    pt2, g = _program(Shuffle(module), (4, 5, 7), tmp_path)
    assert _ops(g) == ["conv2d", "permute", "conv2d"]
    # [3, 2, 35] -> [2, 3, 35]: the 5-d view's size-1 batch dropped, H and W merged
    assert g.nodes[1].attrs == {"shape": (1, 2, 3, 35), "stride": (0, 35, 70, 1)}
    _build_and_verify(pt2, tmp_path / "b")


@pytest.mark.parametrize("name,forward,shape", [
    ("nhwc_then_linear", lambda self, x: self.fc(x.permute(0, 2, 3, 1).flatten(1)), (3, 4, 5)),
    ("transpose_hw", lambda self, x: self.fc(x.transpose(2, 3).flatten(1)), (3, 4, 5)),
    ("swapaxes_then_conv1d", lambda self, x: self.c(x.swapaxes(1, 2)), (7, 3)),
    ("mT_of_ncl", lambda self, x: x.mT * 2.0, (7, 3)),
    ("four_groups", lambda self, x: x.view(1, 2, 3, 4, 5).permute(0, 4, 2, 1, 3) + 1.0, (6, 4, 5)),
])
def test_permutations(tmp_path, name, forward, shape):
    m = _fn(forward, {"fc": nn.Linear(60, 4), "c": nn.Conv1d(3, 2, 3)})
    pt2, g = _program(m, shape, tmp_path)
    assert "permute" in _ops(g)
    r = _build_and_verify(pt2, tmp_path / "b")
    assert "prunec_f32_permute__portable" in r.manifest["kernels"]


def test_a_permute_that_moves_only_size_1_dims_is_a_view(tmp_path):
    """[1, C, 1, W] -> [1, 1, C, W], and .t() of [1, F]: the same bytes, no layer."""
    def forward(self, x):
        return self.fc(x.permute(0, 2, 1, 3).flatten(1).t().t())

    pt2, g = _program(_fn(forward, {"fc": nn.Linear(12, 3)}), (3, 1, 4), tmp_path)
    assert _ops(g) == ["fc"]
    _build_and_verify(pt2, tmp_path / "b")


# --- every new op, on the cross targets ----------------------------------------------------------------------

class Everything(nn.Module):
    """pad -> conv (folded), GELU, ELU / SELU / CELU, max pool, channel shuffle, nearest upsample, conv, Mish +
    softplus, asymmetric pad, conv, tanh GELU, bilinear upsample, permute to NHWC, linear."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 6, 3), nn.Conv2d(6, 6, 3, padding=1)
        self.c3, self.fc = nn.Conv2d(6, 4, 3), nn.Linear(4 * 8 * 18, 5)

    def forward(self, x):
        h = F.gelu(self.c1(F.pad(x, (1, 1, 1, 1))))
        h = F.max_pool2d(F.elu(h, 0.7) + F.selu(h) + F.celu(h, 1.3), 2)
        h = h.view(1, 2, 3, *h.shape[2:]).transpose(1, 2).reshape(1, 6, *h.shape[2:])
        u = F.interpolate(h, scale_factor=2)
        u = F.mish(self.c2(u)) + F.softplus(u, 2.0, 5.0)
        u = F.gelu(self.c3(F.pad(u, (0, 1, 2, 0), value=0.5)), approximate="tanh")
        u = F.interpolate(u, scale_factor=(1, 2), mode="bilinear")
        return self.fc(u.permute(0, 2, 3, 1).flatten(1))


@pytest.mark.parametrize("target", ["host", "cortex-m4", "aarch64-neon"])
def test_every_new_op_in_one_model(tmp_path, target):
    pt2, g = _program(Everything(), (2, 8, 10), tmp_path)
    assert {"gelu", "elu", "mish", "softplus", "pad2d", "upsample_nearest2d", "upsample_bilinear2d",
            "permute"} <= set(_ops(g))
    assert g.nodes[0].op == "conv2d" and g.nodes[0].attrs["padding"] == (1, 1)  # the first pad folded
    _build_and_verify(pt2, tmp_path / "b", target, n=3)


# --- refusals ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,forward,shape,says", [
    ("reflect", lambda self, x: F.pad(x, (1, 1, 1, 1), mode="reflect"),
     (2, 4, 4), r"aten\.pad\.default at .*: pad mode 'reflect' is not supported \(only 'constant'"),
    ("replicate", lambda self, x: nn.ReplicationPad2d(1)(x),
     (2, 4, 4), r"aten\.pad\.default at .*: pad mode 'replicate' is not supported"),
    ("pad_channels", lambda self, x: F.pad(x, (0, 0, 0, 0, 1, 1)),
     (2, 4, 4), r"aten\.pad\.default at .*: padding of more than the last two dims \(pad \[0, 0, 0, 0, 1, 1\]\)"),
    ("pad_batch", lambda self, x: F.pad(x, (0, 0, 1, 0)),
     (5,), r"aten\.pad\.default at .*: pad \[0, 0, 1, 0\] of a tensor of shape \(1, 5\) pads the batch dimension"),
    ("nearest_fraction", lambda self, x: F.interpolate(x, scale_factor=1.5),
     (2, 4, 4), r"aten\.upsample_nearest2d\.vec at .*: nearest upsampling from 4 to 6 \(scale factor 1\.5\) is not a "
                r"whole-number factor"),
    ("nearest_down", lambda self, x: F.interpolate(x, size=(2, 4)),
     (2, 4, 4), r"aten\.upsample_nearest2d\.vec at .*: nearest upsampling from 4 to 2"),
    ("nearest_exact", lambda self, x: F.interpolate(x, scale_factor=2, mode="nearest-exact"),
     (2, 4, 4), r"unsupported op aten\._upsample_nearest_exact2d\.vec at "),
    ("bicubic", lambda self, x: F.interpolate(x, scale_factor=2, mode="bicubic"),
     (2, 4, 4), r"unsupported op aten\.upsample_bicubic2d\.vec at "),
    ("permute_batch", lambda self, x: x.view(2, 2, 4, 4).permute(1, 0, 2, 3),
     (4, 4, 4), r"aten\.permute\.default at .*: permutation \[1, 0, 2, 3\] of a tensor of shape \(2, 2, 4, 4\) moves "
                r"its batch dimension"),
    ("permute_five_groups", lambda self, x: x.view(1, 2, 3, 2, 5, 2).permute(0, 5, 3, 1, 4, 2),
     (12, 5, 2), r"aten\.permute\.default at .*: permutation \[0, 5, 3, 1, 4, 2\] of a tensor of shape "
                 r"\(1, 2, 3, 2, 5, 2\) moves 5 groups of dims \(at most 4\)"),
])
def test_refusals_name_the_op_the_argument_and_the_line(tmp_path, name, forward, shape, says):
    pt2 = bm.export(_fn(forward), shape, tmp_path / "m.pt2")
    out = tmp_path / "out"
    with pytest.raises(PrunecError) as e:
        build(pt2, "host", out)
    msg = str(e.value)
    assert re.search(says, msg) and re.search(rf"{HERE}:\d+", msg), msg
    assert re.search(r"[Nn]othing was written", msg) and not out.exists()


class ReflectPadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        return self.c(F.pad(F.gelu(x), (1, 1, 1, 1), mode="reflect"))  # <reflect>


def test_a_refusal_names_the_users_line(tmp_path):
    line = next(i for i, t in enumerate(open(__file__).read().splitlines(), 1) if t.endswith("# <reflect>"))
    with pytest.raises(PrunecError, match=rf"cannot build aten\.pad\.default at \S*{HERE}:{line}: pad mode 'reflect'"):
        build(bm.export(ReflectPadNet(), (2, 5, 5), tmp_path / "m.pt2"), "host", tmp_path / "out")


class _InPlaceOnPermuted(nn.Module):  # PyTorch's permute is a view: relu_ on it changes x too
    def forward(self, x):
        y = x.permute(0, 2, 3, 1)
        y.relu_()
        return x + 1


class _InPlaceOnBase(nn.Module):  # ... and relu_ on x changes the permuted view taken before
    def forward(self, x):
        x = x * 2
        y = x.permute(0, 2, 3, 1)
        x.relu_()
        return y.flatten(1)


class _InPlaceOnCopies(nn.Module):  # contiguous() / clone() of a permuted view are copies: nothing reaches x
    def forward(self, x):
        y = x.permute(0, 2, 3, 1).contiguous()
        y.relu_()
        z = x.permute(0, 3, 1, 2).clone()
        z.sigmoid_()
        return y.flatten(1) + x.flatten(1) + z.flatten(1)


@pytest.mark.parametrize("cls", [_InPlaceOnPermuted, _InPlaceOnBase])
def test_in_place_through_a_permuted_view_is_refused(cls, tmp_path):
    """The build's permute is a copy, so an in-place op could not reach the other side as PyTorch's does: refused by
    name (before the refusal, the first model built and gave x + 1 without the ReLU)."""
    pt2 = bm.export(cls().eval(), (2, 3, 4), tmp_path / "m.pt2")
    with pytest.raises(PrunecError, match="in-place relu_ on a tensor that is a permuted view"):
        build(pt2, "host", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_in_place_on_copies_of_a_permuted_view_builds(tmp_path):
    m = _InPlaceOnCopies().eval()
    pt2 = bm.export(m, (2, 3, 4), tmp_path / "m.pt2")
    build(pt2, "host", tmp_path / "b")
    x = bm.random_inputs((2, 3, 4), n=4)
    with torch.no_grad():
        want = m(torch.from_numpy(x.copy())).numpy()
    np.testing.assert_allclose(bm.outputs(tmp_path / "b", x), want.reshape(4, -1), rtol=1e-6, atol=1e-6)
