"""Frontend: torch.export programs -> Graph (ops matched, BN folded, clamps fused, dropout gone, errors)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import build_models as bm
from prunec import frontend
from prunec.errors import PrunecError
from prunec.graph import INPUT, OUTPUT


def graph_of(model: nn.Module, shape):
    ep = torch.export.export(model.eval(), (torch.zeros((1, *shape)),))
    return frontend.from_program(ep)


def ops(g):
    return [n.op for n in g.nodes]


def test_mlp_fuses_relu_relu6_and_drops_dropout():
    g = graph_of(*bm.make("mlp"))
    assert ops(g) == ["fc", "fc", "fc", "softmax"]
    fc1, fc2, fc3, sm = g.nodes
    assert (fc1.attrs["out_min"], fc1.attrs["out_max"]) == (0.0, math.inf)
    assert (fc2.attrs["out_min"], fc2.attrs["out_max"]) == (0.0, 6.0)
    assert (fc3.attrs["out_min"], fc3.attrs["out_max"]) == (-math.inf, math.inf)
    assert [n.name for n in g.nodes[:3]] == ["fc1", "fc2", "fc3"]
    assert fc1.inputs == [INPUT] and sm.output == OUTPUT
    assert g.input_shape == (1, 3, 4, 4) and g.output_shape == (1, 10)
    assert sm.attrs == {"outer": 1, "n": 10, "inner": 1, "dim": 1}


def test_conv_attributes():
    m, shape = bm.make("conv_groups")
    (n,) = graph_of(m, shape).nodes
    assert n.op == "conv2d"
    assert n.attrs["stride"] == (2, 2) and n.attrs["padding"] == (0, 0) and n.attrs["groups"] == 2
    assert n.bias is None and n.weight.shape == (6, 2, 3, 3)
    (n,) = graph_of(*bm.make("conv_same")).nodes
    assert n.attrs["padding"] == (2, 2)
    (n,) = graph_of(*bm.make("conv_rect")).nodes
    assert n.attrs["kernel"] == (3, 1) and n.attrs["stride"] == (2, 1) and n.attrs["padding"] == (1, 0)


def test_batchnorm_folded_exactly_as_pytorch_computes():
    m, shape = bm.make("batchnorm")
    g = graph_of(m, shape)
    assert ops(g) == ["conv2d", "conv2d", "maxpool2d", "fc", "fc"]
    c1 = g.nodes[0]
    bn = m.bn1
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    w = m.c1.weight.detach().double().numpy() * scale[:, None, None, None]
    np.testing.assert_allclose(c1.weight, w, rtol=1e-6, atol=1e-7)
    # pruned weights stay exactly zero (and never -0.0)
    assert np.array_equal(c1.weight == 0, m.c1.weight.detach().numpy() == 0)
    assert not np.any(np.signbit(c1.weight[c1.weight == 0]))
    assert c1.attrs["out_min"] == 0.0 and g.nodes[1].attrs["out_max"] == 6.0 and g.nodes[3].attrs["out_min"] == 0.0


def test_residual_inplace_ops_and_alias_semantics():
    g = graph_of(*bm.make("residual"))
    assert ops(g) == ["conv2d", "conv2d", "add", "fc"]
    add = g.nodes[2]
    assert INPUT in add.inputs and add.attrs["out_min"] == 0.0  # y += x; y.relu_() fused into the add


def test_inplace_relu_on_a_tensor_used_later_sees_the_mutation():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            y = self.fc(x.flatten(1))
            z = y.clone()
            y.relu_()  # mutates y; z keeps the old values
            return y + z

    g = graph_of(M(), (6,))
    add = g.nodes[-1]
    # y's relu is a separate clamp (y is used twice), z is the fc output itself
    assert ops(g) == ["fc", "clamp", "add"]
    assert add.inputs == [g.nodes[1].output, g.nodes[0].output]


def test_standalone_activations_and_addmm_forms():
    g = graph_of(*bm.make("activations"))
    assert ops(g).count("clamp") == 2 and "sigmoid" in ops(g) and "tanh" in ops(g)
    g = graph_of(*bm.make("addmm"))
    assert ops(g) == ["softmax", "fc", "fc", "softmax"]
    m = bm.make("addmm")[0]
    np.testing.assert_array_equal(g.nodes[1].weight, m.w1.detach().numpy())
    assert g.nodes[2].bias is None
    assert g.nodes[0].attrs == {"outer": 1, "n": 2, "inner": 9, "dim": 1}


def test_identity_model_gets_a_copy():
    class Id(nn.Module):
        def forward(self, x):
            return x.reshape(1, -1)

    g = graph_of(Id(), (2, 3))
    assert ops(g) == ["clamp"] and g.nodes[0].inputs == [INPUT] and g.nodes[0].output == OUTPUT


class LogSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return F.logsigmoid(self.fc(x))  # LOGSIGMOID_LINE


def test_unsupported_op_names_op_and_user_source_line(tmp_path):
    with pytest.raises(PrunecError) as e:
        graph_of(LogSigmoid(), (4,))
    msg = str(e.value)
    line = next(i for i, l in enumerate(open(__file__).read().splitlines(), 1) if l.endswith("# LOGSIGMOID_LINE"))
    assert "aten.log_sigmoid.default" in msg and f"test_frontend.py:{line}" in msg


def test_unsupported_op_survives_save_and_load(tmp_path):
    p = bm.export(LogSigmoid(), (4,), tmp_path / "g.pt2")
    with pytest.raises(PrunecError, match=r"aten\.log_sigmoid.*test_frontend\.py:\d+"):
        frontend.load(p)


@pytest.mark.parametrize("model, shape, pattern", [
    (nn.Sequential(nn.ConvTranspose2d(2, 2, 3)), (2, 4, 4), "convolution"),
    (nn.Sequential(nn.Conv3d(2, 2, 3)), (2, 4, 4, 4), "conv3d|1-d and 2-d convolution"),
    (nn.Sequential(nn.Conv2d(2, 2, 4, padding="same")), (2, 6, 6), "asymmetrically"),
    (nn.Sequential(nn.MaxPool2d(2, dilation=2)), (2, 6, 6), "dilated"),
    (nn.Sequential(nn.Flatten(), nn.LogSigmoid()), (3,), "log_sigmoid"),
])
def test_refusals(model, shape, pattern):
    with pytest.raises(PrunecError, match=pattern):
        graph_of(model, shape)


def test_refuses_broadcast_add_scalar_add_and_two_outputs():
    class Bcast(nn.Module):
        def forward(self, x):
            return x + x[:, :1]

    class Image(nn.Module):  # a constant that varies along more than the channels: not an affine op
        def __init__(self):
            super().__init__()
            self.register_buffer("k", torch.randn(1, 3, 4))

        def forward(self, x):
            return x + self.k

    class Two(nn.Module):
        def forward(self, x):
            return x.relu(), x.sigmoid()

    for m, pat in ((Bcast(), "slice|broadcast"), (Image(), "constant of shape \\(1, 3, 4\\)"), (Two(), "exactly one output")):
        with pytest.raises(PrunecError, match=pat):
            graph_of(m, (3, 4))


def test_batchnorm_training_mode_refused():
    m = nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2)).train()
    ep = torch.export.export(m, (torch.zeros(1, 2, 5, 5),))
    with pytest.raises(PrunecError):
        frontend.from_program(ep)


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(PrunecError, match="not a readable torch.export"):
        frontend.load(bad)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(PrunecError):
        frontend.load(txt)
    sd = tmp_path / "sd.pt"
    torch.save(nn.Linear(2, 2).state_dict(), sd)
    with pytest.raises(PrunecError, match="state_dict"):
        frontend.load(sd)
    with pytest.raises(PrunecError, match="does not exist"):
        frontend.load(tmp_path / "missing.pt2")
    # a truncated .pt2
    good = bm.export(nn.Sequential(nn.Linear(3, 2)), (3,), tmp_path / "good.pt2")
    trunc = tmp_path / "trunc.pt2"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(PrunecError):
        frontend.load(trunc)


def test_prunec_checkpoint_is_exported_at_batch_1(tmp_path):
    from prunec import checkpoint, models

    m = bm.prune_random(models.create("lenet300"))
    p = checkpoint.save(tmp_path / "l.pt", m, "lenet300")
    g, loaded = frontend.load(p)
    assert loaded.kind == "checkpoint" and loaded.model_name == "lenet300"
    assert ops(g) == ["fc", "fc", "fc"] and g.input_shape == (1, 1, 28, 28)


def _need(target: str) -> None:
    from prunec import targets

    if targets.get(target).missing_tools():
        pytest.skip(f"{target}: tools not installed")


def _pruned_program(target: str, cls, shape, folder):
    """(the .pt2, its Graph) of cls() with random weights pruned at random; skips a target whose tools are missing."""
    _need(target)
    torch.manual_seed(0)
    pt2 = bm.export(bm.prune_random(cls(), 1).eval(), shape, folder / "m.pt2")
    return pt2, frontend.load(pt2)[0]


def _build_and_verify(pt2, target: str, out, n: int):
    """Build pt2 for target into out and verify it on n random inputs (to 1e-5 relative); the BuildResult."""
    from prunec.build import build
    from prunec.verify import verify

    r = build(pt2, target, out)
    rep = verify(out, random=n)
    assert rep.ok and rep.max_rel_err < 1e-5, rep.text()
    return r


class _MeanHead(nn.Module):
    """A MobileNet-style head: global average pooling written as a mean over H and W."""

    def __init__(self, dims=(2, 3), keepdim=False):
        super().__init__()
        self.conv, self.fc, self.dims, self.keepdim = nn.Conv2d(3, 6, 3, padding=1), nn.Linear(6, 4), dims, keepdim

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean(self.dims, keepdim=self.keepdim)
        return self.fc(h.flatten(1))


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
@pytest.mark.parametrize("dims, keepdim", [((2, 3), False), ((-1, -2), True), ([3, 2], False)])
def test_mean_over_h_and_w_is_global_average_pooling(tmp_path, target, dims, keepdim):
    _need(target)
    m = bm.prune_random(_MeanHead(dims, keepdim), 1).eval()
    pt2 = bm.export(m, (3, 7, 5), tmp_path / "mean.pt2")
    g, _ = frontend.load(pt2)
    assert [n.op for n in g.nodes] == ["conv2d", "adaptive_avgpool2d", "fc"]
    assert g.nodes[1].attrs["output_size"] == (1, 1) and tuple(g.nodes[1].out_shape) == (1, 6, 1, 1)
    r = _build_and_verify(pt2, target, tmp_path / "b", 4)
    if target == "cortex-m4":  # the conv + pool fusion takes the mean's pool too
        assert r.manifest["plan"]["fused_conv_pool"] == [["conv", "mean"]]


@pytest.mark.parametrize("forward, says", [
    (lambda x: x.mean(1), "mean over dims [1]"),
    (lambda x: x.mean(), "mean over every element"),
    (lambda x: x.mean((1, 2, 3)), "mean over dims [1, 2, 3]"),
])
def test_other_means_are_refused_by_name(tmp_path, forward, says):
    class M(nn.Module):
        def forward(self, x):
            return forward(x)

    pt2 = bm.export(M().eval(), (3, 4, 4), tmp_path / "m.pt2")
    with pytest.raises(PrunecError, match=re.escape(says)):
        frontend.load(pt2)


class _Normalised(nn.Module):
    """Input normalisation inside the model, and arithmetic with scalars: per-channel affine nodes."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 5 * 5, 3)
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1))

    def forward(self, x):
        x = (x - self.mean) / self.std  # two constants: merged into one node
        h = torch.relu(self.conv(1.0 - x * 2.0))  # rsub, mul
        return self.fc(0.5 * h.flatten(1) + 0.1)


class _LooseBatchNorm(nn.Module):
    """Batch norms that no layer precedes (input, pre-activation, after a residual add, BN1d after pooling)."""

    def __init__(self):
        super().__init__()
        self.bn0, self.conv, self.bn1 = nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn, self.fc = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm1d(16), nn.Linear(16, 2)
        g = torch.Generator().manual_seed(5)
        for m in (self.bn0, self.bn1, self.bn):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)  # negative scales too
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)

    def forward(self, x):
        h = self.conv(self.bn0(x))
        h = h + self.conv2(torch.relu(self.bn1(h)))
        return self.fc(torch.relu(self.bn(F.adaptive_avg_pool2d(h, 2).flatten(1))))


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
@pytest.mark.parametrize("cls, shape, ops", [
    (_Normalised, (3, 5, 5), ["affine", "conv2d", "affine", "fc"]),
    (_LooseBatchNorm, (3, 6, 6), ["affine", "conv2d", "affine", "conv2d", "add", "adaptive_avgpool2d", "affine", "fc"]),
])
def test_arithmetic_with_constants_and_loose_batch_norm_run_as_affine_nodes(tmp_path, target, cls, shape, ops):
    _need(target)
    m = bm.prune_random(cls(), 2).eval()
    pt2 = bm.export(m, shape, tmp_path / "m.pt2")
    g, _ = frontend.load(pt2)
    assert [n.op for n in g.nodes] == ops
    aff = [n for n in g.nodes if n.op == "affine"]
    assert all(n.attrs["scale"].dtype == np.float32 and n.attrs["scale"].size == n.in_shapes[0][1] for n in aff)
    if cls is _LooseBatchNorm:  # relu after a batch norm is fused into its node's clamp
        assert [n.attrs["out_min"] for n in aff] == [-math.inf, 0.0, 0.0]
    _build_and_verify(pt2, target, tmp_path / "b", 5)


@pytest.mark.parametrize("forward, says", [
    (lambda x: x * F.adaptive_avg_pool2d(x, (1, 4)), "mul of tensors of shapes"),
    (lambda x: x - x.mean((2, 3), keepdim=True), "broadcasting sub of shapes"),
    (lambda x: torch.sub(x, x.relu(), alpha=2), "sub with alpha=2"),
    (lambda x: x.relu() / x.sigmoid(), "div of two tensors"),
    (lambda x: 2.0 / x, "aten.reciprocal"),
    (lambda x: x / 0.0, "inf or NaN"),
    (lambda x: torch.div(x, 2.0, rounding_mode="floor"), "rounding_mode"),
    (lambda x: x + torch.ones(1, 3, 4, 4), "constant of shape (1, 3, 4, 4)"),
])
def test_arithmetic_that_is_not_a_per_channel_affine_is_refused(forward, says):
    class M(nn.Module):
        def forward(self, x):
            return forward(x)

    with pytest.raises(PrunecError, match=re.escape(says)):
        graph_of(M().eval(), (3, 4, 4))


@pytest.mark.parametrize("target", ["x86_64-avx2", "aarch64-neon", "armv7a-neon", "cortex-m55"])
def test_affine_layers_verify_on_the_other_targets(tmp_path, target):
    _need(target)
    m = bm.prune_random(_LooseBatchNorm(), 3).eval()
    pt2 = bm.export(m, (3, 6, 6), tmp_path / "m.pt2")
    _build_and_verify(pt2, target, tmp_path / "b", 3)


class _Conv1dNet(nn.Module):
    """A 1-d network (keyword spotting on MFCC frames, sensor series): conv1d with stride, 'same' padding,
    dilation and depthwise groups, batch norm folded, the 1-d pools and a mean over the length."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(4, 6, 3, padding=1, stride=2)
        self.bn = nn.BatchNorm1d(6)
        self.c2 = nn.Conv1d(6, 6, 3, groups=6, padding="same", dilation=2)
        self.fc = nn.Linear(6, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        h = F.max_pool1d(torch.relu(self.bn(self.c(x))), 2)
        h = F.adaptive_avg_pool1d(F.avg_pool1d(self.c2(h), 2, ceil_mode=True), 3)
        return self.fc(h.mean(-1))


@pytest.mark.parametrize("target", ["host", "x86_64-avx2", "aarch64-neon", "cortex-m4"])
def test_conv1d_and_1d_pools_build_as_height_1_2d_ops(tmp_path, target):
    pt2, g = _pruned_program(target, _Conv1dNet, (4, 21), tmp_path)
    assert [n.op for n in g.nodes] == ["conv2d", "maxpool2d", "conv2d", "avgpool2d", "adaptive_avgpool2d",
                                       "adaptive_avgpool2d", "fc"]
    assert g.nodes[0].weight.shape == (6, 4, 1, 3) and g.nodes[0].attrs["stride"] == (1, 2)
    assert g.nodes[0].attrs["out_min"] == 0.0  # batch norm folded, relu fused
    assert g.nodes[2].attrs["padding"] == (0, 2) and g.nodes[2].attrs["groups"] == 6
    _build_and_verify(pt2, target, tmp_path / "b", 4)


class _Fire(nn.Module):
    """A SqueezeNet fire module (expand 1x1 and 3x3, concatenated along channels), a tensor concatenated with itself
    along the width, and a concatenation of features."""

    def __init__(self):
        super().__init__()
        self.sq, self.e1, self.e3 = nn.Conv2d(4, 3, 1), nn.Conv2d(3, 5, 1), nn.Conv2d(3, 6, 3, padding=1)
        self.side, self.fc = nn.Linear(4 * 6 * 6, 8), nn.Linear(2 * 11 * 6 * 6 + 8, 3)

    def forward(self, x):
        h = torch.relu(self.sq(x))
        h = torch.cat([torch.relu(self.e1(h)), torch.relu(self.e3(h))], 1)
        w = torch.cat([h, h], dim=-1)
        return self.fc(torch.cat([w.flatten(1), self.side(x.flatten(1))], 1))


@pytest.mark.parametrize("target", ["host", "cortex-m4", "armv7a-neon"])
def test_concatenation_along_channels_width_and_features(tmp_path, target):
    pt2, g = _pruned_program(target, _Fire, (4, 6, 6), tmp_path)
    cats = [(n.attrs["outer"], n.attrs["sizes"]) for n in g.nodes if n.op == "concat"]
    assert cats == [(1, [180, 216]), (66, [6, 6]), (1, [792, 8])]
    _build_and_verify(pt2, target, tmp_path / "b", 4)


@pytest.mark.parametrize("forward, says", [
    (lambda x: torch.cat([x, torch.ones(1, 3, 4, 4)], 1), "concatenating a constant"),
    (lambda x: torch.cat([x, x], 0), "batch dimension"),
])
def test_concatenations_that_are_not_supported_say_why(forward, says):
    class M(nn.Module):
        def forward(self, x):
            return forward(x)

    with pytest.raises(PrunecError, match=says):
        graph_of(M().eval(), (3, 4, 4))


class _SqueezeExcite(nn.Module):
    """MobileNetV3-style: hardswish, a squeeze-and-excitation gate (mean, 1x1 convs, silu, sigmoid, channel-wise
    mul), leaky relu, hardsigmoid, and a product of two same-shape tensors."""

    def __init__(self):
        super().__init__()
        self.c, self.f1, self.f2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = F.hardswish(self.c(x))
        g = torch.sigmoid(self.f2(F.silu(self.f1(h.mean((2, 3), keepdim=True)))))
        h = F.leaky_relu(h * g, 0.1) + F.hardsigmoid(h)
        z = self.fc(h.mean((2, 3)))
        return z * z


@pytest.mark.parametrize("target", ["host", "x86_64-avx2", "cortex-m4", "aarch64-neon"])
def test_mobile_activations_and_a_squeeze_excitation_gate(tmp_path, target):
    pt2, g = _pruned_program(target, _SqueezeExcite, (3, 5, 6), tmp_path)
    muls = [n.attrs for n in g.nodes if n.op == "mul"]
    assert {"channels": 8, "inner": 30, "b_inner": 1} in muls  # the gate, broadcast per channel
    assert {"channels": 1, "inner": 3, "b_inner": 3} in muls  # z * z
    assert sum(n.op == "leaky_relu" for n in g.nodes) == 1
    _build_and_verify(pt2, target, tmp_path / "b", 4)


class _GateInPlace(nn.Module):
    """A squeeze-and-excitation gate whose product is the last use of the gated tensor: the planner runs the mul in
    place over it (plan.in_place), so codegen must pass the overwritten, full-size operand first (a, y == a) and the
    per-channel gate second (b, b_inner = 1)."""

    def __init__(self):
        super().__init__()
        self.c, self.f1, self.f2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.o = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        h = torch.relu(self.c(x))
        g = torch.sigmoid(self.f2(torch.relu(self.f1(h.mean((2, 3), keepdim=True)))))
        return self.o(h * g)


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
def test_squeeze_excitation_gate_computed_in_place(tmp_path, target):
    from prunec import plan as P

    pt2, g = _pruned_program(target, _GateInPlace, (3, 6, 5), tmp_path)
    [i] = [k for k, n in enumerate(g.nodes) if n.op == "mul"]
    assert g.nodes[i].attrs["b_inner"] == 1 and P.make_plan(g).in_place.get(i) == g.nodes[i].inputs[0]
    _build_and_verify(pt2, target, tmp_path / "b", 4)
