"""Property tests of `prunec build` + `prunec verify` on RANDOM small architectures.

A hypothesis strategy draws a network from the ops the frontend supports (docs/BUILD.md "Supported ops",
frontend.SUPPORTED), with tiny random shapes, random weights pruned at a random density in [0, 1] per layer
(0 and 1 included: all-zero and fully dense layers), exports it at batch 1 in eval mode, builds it with random
build options (target host, or x86_64-avx2 with and without its AVX-512 kernels; --fuse-pool on / off / the target's
default; index widths incl. 1-16; row alignment 1, 8 and others; weights as C arrays, a blob or auto) and checks
that `prunec.verify.verify` passes on a few random inputs (the documented tolerance). A second property plants
one unsupported construction in a random supported model and checks that the build is refused with a
PrunecError naming the op and the user's file:line, writing nothing.

What the generator draws (with their spellings: module, functional, method, in place):
  conv2d (kernel 1-5, rectangular too, stride 1-3, padding int / pair / 'same' / 'valid', dilation 1-3, groups:
  any divisor of the input channels, depthwise, channel multipliers; bias or not; batch norm after it, affine or
  not) and conv1d (the same in 1-d) on NCL tensors; linear / addmm / mm / x @ W.t() with batch norm after it;
  relu, relu6, hardtanh, clamp (one- or two-sided, also min > max), clamp_min / clamp_max, sigmoid, tanh, silu,
  hardsigmoid, hardswish, leaky_relu (any slope), gelu (exact, tanh), elu / celu (any alpha), selu, softplus (beta,
  threshold), mish, softmax and log_softmax over any dim; constant pad of the last one or two dims (F.pad, ZeroPad2d, ConstantPad1d /
  2d; asymmetric, negative: a crop; a zero pad before a conv is folded into it where symmetric), nearest upsampling by
  integer factors and bilinear / linear (align_corners or not, any factor or a size), permute / transpose / channel
  shuffle of NCHW and NCL tensors (the batch first); max_pool2d / max_pool1d (padding,
  ceil_mode, stride; return_indices in 2-d), avg_pool2d / avg_pool1d (padding, ceil_mode, count_include_pad),
  adaptive_avg_pool2d / 1d (smaller, equal or larger outputs, None dims), mean over H and W (keepdim or not) / over
  L; two branches of the same tensor merged by add (+, torch.add, +=, add_, x + x), mul (same shape, or a
  squeeze-and-excitation gate [N, C, 1(, 1)]) or cat (any dim but the batch, 2 or 3 tensors, branches of
  different channel counts); add / sub / rsub / mul / div with a scalar or a per-channel constant and batch norm
  anywhere else (a per-channel affine layer); flatten / view / reshape to any factorisation (ranks 1-4), squeeze
  / unsqueeze; dropout (nn.Dropout, Dropout2d, AlphaDropout, F.dropout) in eval; clone / contiguous / detach /
  nn.Identity; and a model of views only (its output is its input).

The slow variant also draws wider layers (up to 8 input channels, 16 x groups conv channels, 40 linear outputs).

The default run (derandomized: 32 + 40 examples) takes ~20 s on two shared cores; the `slow` variants draw 300 +
200 (pytest -m slow tests/test_property_models.py, ~3.5 min; PRUNEC_PROPERTY_EXAMPLES and
PRUNEC_PROPERTY_REFUSE_EXAMPLES set the counts); a slow Arm variant runs the property on cortex-m4, cortex-m55,
aarch64-neon and armv7a-neon under QEMU (PRUNEC_PROPERTY_ARM_EXAMPLES per target, 25; 20 each took 52 s). Defects these properties found are pinned at the end of the file
as regression tests (they were strict xfails until fixed), and the generator draws the constructions that
triggered them (NCL mean with keepdim, max_pool1d with return_indices, a batch norm or affine layer after a view of
a conv / linear / affine output with other channels).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, note, reject, settings
from hypothesis import strategies as st
from torch import nn

import build_models as bm
from prunec import build as B
from prunec import verify as V
from prunec.errors import PrunecError

THIS_FILE = Path(__file__).name
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
MAX_NUMEL = 4096  # elements of any intermediate tensor (batch 1)

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
FAST = settings(max_examples=30, derandomize=True, **_COMMON)
FAST_REFUSE = settings(max_examples=40, derandomize=True, **_COMMON)
SLOW = settings(max_examples=int(os.environ.get("PRUNEC_PROPERTY_EXAMPLES", "300")), derandomize=True, **_COMMON)
SLOW_REFUSE = settings(max_examples=int(os.environ.get("PRUNEC_PROPERTY_REFUSE_EXAMPLES", "200")), derandomize=True,
                       **_COMMON)


# --- the architecture, as plain data (its repr is the reproduction) ------------------------------------------

@dataclass
class L:
    """One layer: `kind` and its parameters (for `merge`, p["a"] and p["b"] are the two branches, lists of L)."""
    kind: str
    p: dict = field(default_factory=dict)

    def __repr__(self):
        return f"L({self.kind!r}, {self.p!r})"


@dataclass
class Arch:
    shape: tuple  # the input's shape without the batch dimension
    layers: list
    seed: int = 0  # of the weights

    def __repr__(self):
        return f"Arch(shape={self.shape!r}, layers={self.layers!r}, seed={self.seed})"


@dataclass
class Opts:
    target: str = "host"
    avx512: bool | None = None  # x86_64-avx2: PRUNEC_AVX512 at build time (None: this machine decides)
    storage: str = "c"
    index_bits: list | None = None
    row_align: int | None = None
    fuse_pool: bool | None = None
    skip_zero_inputs: str | None = None  # which fc layers are stored by columns (zero inputs skipped)


# --- layers as modules ---------------------------------------------------------------------------------------

def _prune_init(w: torch.Tensor, density: float, g: torch.Generator) -> None:
    """Random weights (He-like scale over the kept fan-in: activations stay O(1)), a random `density` of them kept."""
    with torch.no_grad():
        fan_in = w[0].numel()
        keep = torch.rand(w.shape, generator=g) < density
        if density >= 1.0:
            keep[:] = True
        elif density <= 0.0:
            keep[:] = False
        w.copy_(torch.randn(w.shape, generator=g) * math.sqrt(2.0 / max(1.0, density * fan_in)) * keep)


def _init_bn(bn: nn.modules.batchnorm._BatchNorm, g: torch.Generator) -> None:
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) * 1.5 + 0.25)
        if bn.affine:
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.5)


def _init_weighted(layer, p, n_out: int, bn_cls, g):
    """Prune `layer`'s weight at p's density, draw its bias; the batch norm after it (p["bn"]) or None."""
    _prune_init(layer.weight, p["density"], g)
    if p["bias"]:
        with torch.no_grad():
            layer.bias.copy_(torch.randn(n_out, generator=g) * 0.5)
    if not p.get("bn"):
        return None
    bn = bn_cls(n_out, eps=p["bn"]["eps"], affine=p["bn"]["affine"])
    _init_bn(bn, g)
    return bn


class Conv(nn.Module):
    def __init__(self, p, g):
        super().__init__()
        self.p = p
        one_d = p.get("nd") == 1
        self.conv = (nn.Conv1d if one_d else nn.Conv2d)(
            p["cin"], p["cout"], p["k"], stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
            groups=p["groups"], bias=p["bias"])
        self.bn = _init_weighted(self.conv, p, p["cout"], nn.BatchNorm1d if one_d else nn.BatchNorm2d, g)

    def forward(self, x):
        p, c = self.p, self.conv
        if p.get("fn") == "functional":
            f = F.conv1d if p.get("nd") == 1 else F.conv2d
            y = f(x, c.weight, c.bias, c.stride, p["padding"], c.dilation, c.groups)
        else:
            y = c(x)
        return self.bn(y) if self.bn is not None else y


class Linear(nn.Module):
    def __init__(self, p, g):
        super().__init__()
        self.p = p
        self.fc = nn.Linear(p["fin"], p["fout"], bias=p["bias"])
        self.bn = _init_weighted(self.fc, p, p["fout"], nn.BatchNorm1d, g)

    def forward(self, x):
        fn, w, b = self.p.get("fn", "module"), self.fc.weight, self.fc.bias
        if fn == "functional":
            y = F.linear(x, w, b)
        elif fn == "addmm":
            y = torch.addmm(b, x, w.t())
        elif fn == "mm":
            y = torch.mm(x, w.t())
        elif fn == "matmul":
            y = x @ w.t()
        else:
            y = self.fc(x)
        return self.bn(y) if self.bn is not None else y


ACTS = {
    "relu": lambda x, p: F.relu(x),
    "relu_module": lambda x, p: nn.ReLU()(x),
    "relu6": lambda x, p: F.relu6(x),
    "relu6_module": lambda x, p: nn.ReLU6()(x),
    "hardtanh": lambda x, p: F.hardtanh(x, p["lo"], p["hi"]),
    "clamp": lambda x, p: torch.clamp(x, min=p["lo"], max=p["hi"]),
    "clamp_min": lambda x, p: x.clamp_min(p["lo"]),
    "clamp_max": lambda x, p: x.clamp_max(p["hi"]),
    "sigmoid": lambda x, p: torch.sigmoid(x),
    "tanh": lambda x, p: torch.tanh(x),
    "silu": lambda x, p: F.silu(x),
    "silu_module": lambda x, p: nn.SiLU()(x),
    "hardsigmoid": lambda x, p: F.hardsigmoid(x),
    "hardswish": lambda x, p: F.hardswish(x),
    "hardswish_module": lambda x, p: nn.Hardswish()(x),
    "leaky_relu": lambda x, p: F.leaky_relu(x, p["slope"]),
    "leaky_relu_module": lambda x, p: nn.LeakyReLU(p["slope"])(x),
    "softmax": lambda x, p: torch.softmax(x, dim=p["dim"]),
    "softmax_method": lambda x, p: x.softmax(p["dim"]),
    "softmax_module": lambda x, p: nn.Softmax(dim=p["dim"])(x),
    "log_softmax": lambda x, p: F.log_softmax(x, dim=p["dim"]),
    "log_softmax_module": lambda x, p: nn.LogSoftmax(dim=p["dim"])(x),
    "gelu": lambda x, p: F.gelu(x),
    "gelu_tanh": lambda x, p: F.gelu(x, approximate="tanh"),
    "gelu_module": lambda x, p: nn.GELU()(x),
    "elu": lambda x, p: F.elu(x, p["alpha"]),
    "celu": lambda x, p: nn.CELU(p["alpha"])(x),
    "selu": lambda x, p: torch.selu(x),
    "softplus": lambda x, p: F.softplus(x, p["beta"], p["threshold"]),
    "mish": lambda x, p: F.mish(x),
    "mish_module": lambda x, p: nn.Mish()(x),
}
INPLACE_ACTS = {  # never drawn on (a view of) the model's input: export would make the mutation a second output
    "relu_": lambda x, p: x.relu_(),
    "relu_inplace": lambda x, p: F.relu(x, inplace=True),
    "hardtanh_": lambda x, p: F.hardtanh_(x, p["lo"], p["hi"]),
    "clamp_": lambda x, p: x.clamp_(min=p["lo"], max=p["hi"]),
    "sigmoid_": lambda x, p: x.sigmoid_(),
    "tanh_": lambda x, p: x.tanh_(),
    "silu_inplace": lambda x, p: F.silu(x, inplace=True),
    "hardsigmoid_inplace": lambda x, p: F.hardsigmoid(x, inplace=True),
    "hardswish_inplace": lambda x, p: F.hardswish(x, inplace=True),
    "leaky_relu_inplace": lambda x, p: F.leaky_relu(x, p["slope"], inplace=True),
    "elu_inplace": lambda x, p: F.elu(x, p["alpha"], inplace=True),
    "selu_inplace": lambda x, p: F.selu(x, inplace=True),
    "mish_inplace": lambda x, p: F.mish(x, inplace=True),
}


def _pool(x, kind, p):
    one_d = p.get("nd") == 1
    if kind == "maxpool":
        if p["fn"] == "module":
            return (nn.MaxPool1d if one_d else nn.MaxPool2d)(p["k"], p["stride"], p["padding"], ceil_mode=p["ceil"])(x)
        f = F.max_pool1d if one_d else F.max_pool2d
        if p["fn"] == "indices":
            return f(x, p["k"], p["stride"], p["padding"], ceil_mode=p["ceil"], return_indices=True)[0]
        return f(x, p["k"], p["stride"], p["padding"], ceil_mode=p["ceil"])
    if kind == "avgpool":
        if p["fn"] == "module":
            return (nn.AvgPool1d if one_d else nn.AvgPool2d)(p["k"], p["stride"], p["padding"], ceil_mode=p["ceil"],
                                                             count_include_pad=p["cip"])(x)
        f = F.avg_pool1d if one_d else F.avg_pool2d
        return f(x, p["k"], p["stride"], p["padding"], ceil_mode=p["ceil"], count_include_pad=p["cip"])
    if kind == "adaptive":
        return (F.adaptive_avg_pool1d if one_d else F.adaptive_avg_pool2d)(x, p["out"])
    if kind == "mean":
        return x.mean(p["dims"], keepdim=p["keepdim"]) if p["fn"] == "method" else \
            torch.mean(x, p["dims"], keepdim=p["keepdim"])
    raise AssertionError(kind)


def _move(x, kind, p):
    """pad, upsample and permute layers (NCHW or NCL)."""
    if kind == "pad":
        pads, v, fn = p["pads"], p["value"], p["fn"]
        if fn == "module":  # ZeroPad2d / ConstantPad1d / ConstantPad2d
            return (nn.ZeroPad2d(pads) if v == 0 and len(pads) == 4 else
                    (nn.ConstantPad1d if len(pads) == 2 else nn.ConstantPad2d)(pads, v))(x)
        return F.pad(x, pads, value=v)
    if kind == "upsample":
        kw = {"size": p["size"]} if p.get("size") else {"scale_factor": p["factor"]}
        if p["mode"] != "nearest":
            kw["align_corners"] = p["align"]
        return nn.Upsample(mode=p["mode"], **kw)(x) if p["fn"] == "module" else F.interpolate(x, mode=p["mode"], **kw)
    if kind == "permute":
        fn = p["fn"]
        if fn == "shuffle":  # view, transpose, view: ShuffleNet's channel shuffle
            n, c, *rest = x.shape
            g = p["groups"]
            return x.view(n, g, c // g, *rest).transpose(1, 2).reshape(n, c, *rest)
        if fn == "transpose":
            return x.transpose(*p["dims"])
        return x.permute(*p["perm"])
    raise AssertionError(kind)


def _view(x, kind, p):
    fn = p.get("fn")
    if not x.is_contiguous() and fn in ("view_size", "view_all", "view"):  # after a permute: a view is an error
        fn = {"view_size": "reshape_size", "view_all": "reshape_all", "view": "reshape"}[fn]
    if kind == "flatten":
        return {"torch": lambda: torch.flatten(x, 1), "module": lambda: nn.Flatten()(x),
                "view_size": lambda: x.view(x.size(0), -1), "reshape": lambda: x.reshape(1, -1),
                "view_all": lambda: x.view(-1),  # rank 1: the batch dimension folded in
                "reshape_size": lambda: x.reshape(x.size(0), -1), "reshape_all": lambda: x.reshape(-1),
                "method": lambda: x.flatten(1)}[fn]()
    if kind == "view":
        return x.view(*p["to"]) if fn == "view" else x.reshape(*p["to"])
    if kind == "unsqueeze":
        return x.unsqueeze(p["dim"])
    if kind == "squeeze":
        return x.squeeze(p["dim"])
    if kind == "dropout":
        return {"module": lambda: nn.Dropout(p["rate"]).eval()(x),
                "module2d": lambda: nn.Dropout2d(p["rate"]).eval()(x),
                "alpha": lambda: nn.AlphaDropout(p["rate"]).eval()(x),
                "functional": lambda: F.dropout(x, p["rate"], training=False)}[fn]()
    if kind == "identity":
        return {"clone": x.clone, "contiguous": x.contiguous, "detach": x.detach,
                "module": lambda: nn.Identity()(x)}[fn]()
    raise AssertionError(kind)


class Affine(nn.Module):
    """Arithmetic with a constant (a scalar, or a per-channel buffer), or a batch norm no conv/linear precedes."""

    def __init__(self, p, g):
        super().__init__()
        self.p = p
        self.bn = None
        if p["fn"] == "bn":
            # BatchNorm1d takes (N, C) and (N, C, L)
            self.bn = (nn.BatchNorm2d if p["rank"] == 4 else nn.BatchNorm1d)(p["c"], affine=p["affine"])
            _init_bn(self.bn, g)
        elif p.get("const") is not None:
            self.register_buffer("k", torch.tensor(p["const"], dtype=torch.float32).reshape(p["const_shape"]))

    def forward(self, x):
        if self.bn is not None:
            return self.bn(x)
        k = self.k if self.p.get("const") is not None else self.p["scalar"]
        return {"add": lambda: x + k, "radd": lambda: k + x, "sub": lambda: x - k, "rsub": lambda: k - x,
                "mul": lambda: x * k, "rmul": lambda: k * x, "div": lambda: x / k}[self.p["fn"]]()


class Merge(nn.Module):
    """Two branches of one tensor, merged: add, mul (the same shape or a per-channel gate) or cat."""

    def __init__(self, p, g):
        super().__init__()
        self.p = p
        self.a = nn.ModuleList(make_block(layer, g) for layer in p["a"])
        self.b = nn.ModuleList(make_block(layer, g) for layer in p["b"])

    def forward(self, x):
        a = x
        for m in self.a:
            a = m(a)
        b = x
        for m in self.b:  # runs after a: sees a's in-place changes to x, as PyTorch does
            b = m(b)
        op = self.p["op"]
        if op == "+=":
            a += b
            return a
        if op == "-=":
            a -= b
            return a
        if op == "*=":
            a *= b
            return a
        return {"+": lambda: a + b, "add": lambda: torch.add(a, b), "add_": lambda: a.add_(b), "-": lambda: a - b,
                "sub": lambda: torch.sub(a, b), "sub_": lambda: a.sub_(b), "b-a": lambda: b - a, "*": lambda: a * b,
                "b*a": lambda: b * a, "mul": lambda: torch.mul(a, b), "mul_": lambda: a.mul_(b),
                "cat": lambda: torch.cat([a, b], self.p["dim"]), "cat3": lambda: torch.cat((b, x, a), dim=self.p["dim"])
                }[op]()


def make_block(layer: L, g: torch.Generator) -> nn.Module:
    return {"conv": Conv, "linear": Linear, "merge": Merge, "affine": Affine, "bad": Bad}.get(
        layer.kind, lambda p, g: Fn(layer))(layer.p, g)


class Fn(nn.Module):
    """A layer without parameters."""

    def __init__(self, layer: L):
        super().__init__()
        self.kind, self.p = layer.kind, layer.p

    def forward(self, x):
        if self.kind == "act":
            return {**ACTS, **INPLACE_ACTS}[self.p["fn"]](x, self.p)
        if self.kind in ("maxpool", "avgpool", "adaptive", "mean"):
            return _pool(x, self.kind, self.p)
        if self.kind in ("pad", "upsample", "permute"):
            return _move(x, self.kind, self.p)
        return _view(x, self.kind, self.p)


class Net(nn.Module):
    def __init__(self, arch: Arch):
        super().__init__()
        g = torch.Generator().manual_seed(arch.seed)
        self.blocks = nn.ModuleList(make_block(layer, g) for layer in arch.layers)

    def forward(self, x):
        for m in self.blocks:
            x = m(x)
        return x


# --- unsupported constructions: what -> (rank it needs or None, forward(self, x), regex the error must match) ---

class Bad(nn.Module):
    """One unsupported construction (UNSUPPORTED)."""

    def __init__(self, p, g):
        super().__init__()
        self.p = p
        what, s = p["what"], p["shape"]
        make = {
            "conv_transpose": lambda: nn.ConvTranspose2d(s[1], 2, 3),
            "conv_same_even": lambda: nn.Conv2d(s[1], 2, 2, padding="same"),
            "conv1d_same_even": lambda: nn.Conv1d(s[1], 2, 4, padding="same"),
            "conv_reflect": lambda: nn.Conv2d(s[1], 2, 3, padding=1, padding_mode="reflect"),
            "bn_no_stats": lambda: nn.Sequential(nn.Conv2d(s[1], 2, 1), nn.BatchNorm2d(2, track_running_stats=False)),
            "batch_view_conv": lambda: nn.Conv2d(1, 1, 1),
            "linear_on_rows": lambda: nn.Linear(s[-1], 3),
            "conv3d": lambda: nn.Conv3d(1, 1, 1),
        }
        if what in make:
            self.m = make[what]()
        if what in ("add_const_image", "mul_const_image", "cat_const"):
            self.register_buffer("k", torch.randn(s, generator=g))

    def forward(self, x):
        return UNSUPPORTED[self.p["what"]][1](self, x)


UNSUPPORTED = {
    "logsigmoid": (None, lambda s, x: F.logsigmoid(x), r"aten\.log_sigmoid"),
    "hardshrink": (None, lambda s, x: F.hardshrink(x), r"aten\.hardshrink"),
    "softmax_float64": (None, lambda s, x: F.softmax(x, -1, dtype=torch.float64).float(),
                        r"aten\.(softmax|_softmax|_to_copy|to)\b"),
    "to_double": (None, lambda s, x: torch.relu(x.double()).float(), r"aten\.(_to_copy|to)\b"),
    "div_two": (None, lambda s, x: x / (torch.sigmoid(x) + 1.0), r"aten\.div"),
    "add_alpha": (None, lambda s, x: torch.add(x, torch.tanh(x), alpha=2), r"aten\.add"),
    "floor_div": (None, lambda s, x: torch.div(x, 2.0, rounding_mode="floor"), r"aten\.div"),
    "exp": (None, lambda s, x: x.exp(), r"aten\.exp"),
    "abs": (None, lambda s, x: x.abs(), r"aten\.abs"),
    "neg": (None, lambda s, x: -x, r"aten\.neg"),
    "sum": (None, lambda s, x: x.sum(-1), r"aten\.sum"),
    "amax": (None, lambda s, x: x.amax(-1), r"aten\.amax"),
    "add_const_image": (None, lambda s, x: x + s.k, r"aten\.add"),
    "mul_const_image": (None, lambda s, x: x * s.k, r"aten\.mul"),
    "cat_const": (None, lambda s, x: torch.cat([x, s.k], 1), r"aten\.cat"),
    "cat_batch": (None, lambda s, x: torch.cat([x, torch.tanh(x)], 0), r"aten\.cat"),
    "slice": (None, lambda s, x: x[:, :1], r"aten\.slice"),
    "linear_on_rows": (None, lambda s, x: s.m(x), r"aten\.linear"),
    "permute_batch": (None, lambda s, x: x.reshape(2, -1).t(), r"aten\.t\b"),
    "pad_reflect": (4, lambda s, x: F.pad(x, (1, 1, 1, 1), mode="reflect"), r"aten\.pad"),
    "pad_channels": (4, lambda s, x: F.pad(x, (0, 0, 0, 0, 1, 0)), r"aten\.pad"),
    "interpolate_frac": (4, lambda s, x: F.interpolate(x, scale_factor=1.5), r"aten\.upsample_nearest2d"),
    "bicubic": (4, lambda s, x: F.interpolate(x, scale_factor=2, mode="bicubic"), r"aten\.upsample_bicubic2d"),
    "maxpool_dilated": (4, lambda s, x: F.max_pool2d(x, 2, dilation=2), r"aten\.max_pool2d"),
    "maxpool1d_dilated": (3, lambda s, x: F.max_pool1d(x, 2, dilation=2), r"aten\.max_pool1d"),
    "avgpool_divisor": (4, lambda s, x: F.avg_pool2d(x, 1, divisor_override=2), r"aten\.avg_pool2d"),
    "adaptive_max": (4, lambda s, x: F.adaptive_max_pool2d(x, 1), r"aten\.adaptive_max_pool2d"),
    "mean_channels": (4, lambda s, x: x.mean(1), r"aten\.mean"),
    "mean_all": (4, lambda s, x: x.mean(), r"aten\.mean"),
    "spatial_gate": (4, lambda s, x: x * torch.sigmoid(x.mean(1, keepdim=True)), r"aten\.(mean|mul)"),
    "conv_transpose": (4, lambda s, x: s.m(x), r"aten\.conv_transpose2d"),
    "conv_same_even": (4, lambda s, x: s.m(x), r"aten\.conv2d"),
    "conv1d_same_even": (3, lambda s, x: s.m(x), r"aten\.conv1d"),
    "conv_reflect": (4, lambda s, x: s.m(x), r"aten\.(pad|reflection_pad2d)"),
    "conv3d": (4, lambda s, x: s.m(x.unsqueeze(1)), r"aten\.conv3d"),
    "bn_no_stats": (4, lambda s, x: s.m(x), r"aten\.batch_norm"),
    "batch_view_conv": (4, lambda s, x: s.m(x.reshape(-1, 1, *x.shape[2:])), r"aten\.conv2d"),
    "broadcast_add": (4, lambda s, x: x + F.adaptive_avg_pool2d(x, 1), r"aten\.add"),
}


def _needs(shape, what) -> bool:
    """Whether construction `what` applies to a tensor of `shape` (batch included)."""
    rank = UNSUPPORTED[what][0]
    if rank is not None and len(shape) != rank:
        return False
    return {
        "maxpool_dilated": lambda: shape[2] >= 3 and shape[3] >= 3,
        "maxpool1d_dilated": lambda: shape[2] >= 3,
        "conv_reflect": lambda: shape[2] >= 2 and shape[3] >= 2,
        "pad_reflect": lambda: shape[2] >= 2 and shape[3] >= 2,
        "interpolate_frac": lambda: shape[2] >= 2,
        "permute_batch": lambda: math.prod(shape) % 2 == 0 and math.prod(shape) >= 4,
        "batch_view_conv": lambda: shape[1] > 1,
        "linear_on_rows": lambda: len(shape) >= 2 and math.prod(shape[:-1]) > 1,
        "broadcast_add": lambda: shape[2] * shape[3] > 1,
        "slice": lambda: len(shape) >= 2 and shape[1] > 1,
        "sum": lambda: len(shape) >= 2,
        "amax": lambda: len(shape) >= 2,
        # a constant that varies along more than dim 1 (a per-channel one is supported)
        "add_const_image": lambda: len(shape) >= 3 and math.prod(shape[2:]) > 1,
        "mul_const_image": lambda: len(shape) >= 3 and math.prod(shape[2:]) > 1,
        "cat_const": lambda: len(shape) >= 2,
        "conv3d": lambda: shape[1] * shape[2] * shape[3] <= 256,
        "bn_no_stats": lambda: shape[2] * shape[3] > 1,  # batch statistics of one value: torch refuses to export
    }.get(what, lambda: True)()


# --- strategies ----------------------------------------------------------------------------------------------

DENSITY = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0, allow_nan=False, width=32))
CLAMP_BOUNDS = [-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0, 6.0]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _out(size, k, s, p, d=1):
    """PyTorch's output size of a convolution along one dimension."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _shape_after(layer: L, shape) -> tuple:
    """The layer's output shape (batch included), by running it on zeros: the same code as the exported model."""
    with torch.no_grad():
        return tuple(make_block(layer, torch.Generator().manual_seed(0)).eval()(torch.zeros(shape)).shape)


def _bn_spec(draw):
    return draw(st.one_of(st.none(), st.fixed_dictionaries({"eps": st.sampled_from([1e-5, 1e-3]),
                                                            "affine": st.booleans()})))


@st.composite
def conv_layer(draw, shape, preserve=False, cout=None, wide=False):
    """conv2d on [1, C, H, W] or conv1d on [1, C, L]. `preserve`: stride 1 and the same spatial size (cout = C
    unless given)."""
    one_d = len(shape) == 3
    cin, sizes = shape[1], (shape[2:] if not one_d else (shape[2],))
    groups = draw(st.sampled_from(sorted({1, cin, *_divisors(cin)})))
    if preserve and cout is not None:
        groups = 1
    dims = []
    for i, size in enumerate(sizes):
        k = draw(st.sampled_from([1, 3, 5]) if preserve else st.integers(1, 5))
        d = draw(st.sampled_from([1, 1, 2, 3]))
        if i and draw(st.booleans()):  # square kernel and dilation
            k, d = dims[0][1], dims[0][2]
        dims.append([size, k, d])
    same_ok = all((d * (k - 1)) % 2 == 0 for _, k, d in dims)
    if preserve:
        stride = 1
        padding = "same" if draw(st.booleans()) else tuple(d * (k - 1) // 2 for _, k, d in dims)
        if cout is None:
            cout = cin
    else:
        valid_ok = all(d * (k - 1) + 1 <= size for size, k, d in dims)
        mode = draw(st.sampled_from(["explicit", "explicit"] + (["same"] if same_ok else []) +
                                    (["valid"] if valid_ok else [])))
        strides = [draw(st.sampled_from([1, 1, 2, 3])) for _ in dims]
        if mode == "same":
            padding, strides = "same", [1] * len(dims)
        elif mode == "valid":
            padding = "valid"
        else:
            padding = []
            for size, k, d in dims:
                p0 = max(0, -(-(d * (k - 1) + 1 - size) // 2))
                padding.append(draw(st.integers(p0, p0 + (2 if size <= 16 else 0))))
            padding = tuple(padding)
        stride = tuple(strides)
        pads = [0] * len(dims) if padding == "valid" else \
            [d * (k - 1) // 2 for _, k, d in dims] if padding == "same" else list(padding)
        plane = math.prod(_out(size, k, s, p, d) for (size, k, d), s, p in zip(dims, stride, pads))
        mult = draw(st.integers(1, max(1, (16 if wide else 6) // groups)))
        while mult > 1 and groups * mult * plane > MAX_NUMEL:
            mult -= 1
        cout = groups * mult

    def form(t):  # an int where the pair is square (or 1-d), sometimes
        t = tuple(t)
        return t[0] if (len(set(t)) == 1 and draw(st.booleans())) or one_d else t

    return L("conv", {"nd": 1 if one_d else 2, "cin": cin, "cout": cout, "k": form(k for _, k, _ in dims),
                      "stride": stride if isinstance(stride, int) else form(stride),
                      "padding": padding if isinstance(padding, str) else form(padding),
                      "dilation": form(d for _, _, d in dims), "groups": groups, "bias": draw(st.booleans()),
                      "density": draw(DENSITY), "bn": _bn_spec(draw),
                      "fn": draw(st.sampled_from(["module", "module", "functional"]))})


@st.composite
def linear_layer(draw, shape, preserve=False, wide=False):
    fin = shape[-1]
    fout = fin if preserve else draw(st.integers(1, 40 if wide else 12))
    rank2 = len(shape) == 2
    fn = draw(st.sampled_from(["module", "module", "functional", "matmul"] + (["addmm", "mm"] if rank2 else [])))
    bias = {"addmm": True, "mm": False, "matmul": False}.get(fn, draw(st.booleans()))
    return L("linear", {"fin": fin, "fout": fout, "bias": bias, "density": draw(DENSITY),
                        "bn": _bn_spec(draw) if rank2 else None, "fn": fn})


@st.composite
def act_layer(draw, shape, alias_in, fns=None, affine_ok=True):
    rank = len(shape)
    fns = fns or sorted(ACTS) + ([] if alias_in else sorted(INPLACE_ACTS))
    fn = draw(st.sampled_from(fns))
    p = {"fn": fn}
    if fn.startswith("hardtanh"):
        lo, hi = sorted(draw(st.lists(st.sampled_from(CLAMP_BOUNDS), min_size=2, max_size=2, unique=True)))
        p.update(lo=lo, hi=hi)
    elif fn.startswith("clamp"):
        lo = draw(st.one_of(st.none(), st.sampled_from(CLAMP_BOUNDS))) if fn != "clamp_max" else None
        hi = draw(st.one_of(st.none(), st.sampled_from(CLAMP_BOUNDS))) if fn != "clamp_min" else None
        if fn == "clamp_min" and lo is None or fn == "clamp_max" and hi is None:
            lo, hi = (0.0, None) if fn == "clamp_min" else (None, 1.0)
        if lo is None and hi is None:
            lo = -1.0
        p.update(lo=lo, hi=hi)  # lo > hi too: every output is hi, as torch.clamp does it
    elif fn.startswith("leaky_relu"):
        p["slope"] = draw(st.sampled_from([0.01, 0.1, 0.2, 0.0, 1.0, -0.5, 2.0]))
    elif fn.startswith(("elu", "celu")):
        p["alpha"] = draw(st.sampled_from([1.0, 0.5, 2.0, 0.1]))
    elif fn == "softplus":
        p.update(beta=draw(st.sampled_from([1.0, 0.5, 2.0, 5.0])), threshold=draw(st.sampled_from([20.0, 1.0, 3.0])))
    elif fn.startswith(("softmax", "log_softmax")):
        p["dim"] = draw(st.integers(-rank, rank - 1))
    return L("act", p)


@st.composite
def pool_layer(draw, shape, preserve=False):
    """A 2-d pool on [1, C, H, W], a 1-d one on [1, C, L]."""
    one_d = len(shape) == 3
    sizes = shape[2:]
    nd = {"nd": 1} if one_d else {}
    kind = draw(st.sampled_from(["maxpool", "avgpool", "adaptive"] + ([] if preserve else ["mean"])))
    if kind == "adaptive":
        if preserve:
            out = sizes[0] if one_d else tuple(sizes)
        elif one_d:
            out = draw(st.integers(1, sizes[0] + 2))
        else:
            oh, ow = (draw(st.one_of(st.none(), st.integers(1, s + 2))) for s in sizes)
            out = oh if oh == ow and oh is not None and draw(st.booleans()) else (oh, ow)
        return L("adaptive", {"out": out, **nd})
    if kind == "mean":
        dims = draw(st.sampled_from([2, -1, (2,), [-1]] if one_d else [(2, 3), (-2, -1), (3, 2), [2, -1]]))
        keepdim = draw(st.booleans())
        return L("mean", {"dims": dims, "keepdim": keepdim, "fn": draw(st.sampled_from(["method", "torch"]))})
    if preserve:
        r = draw(st.integers(0, 2))
        k, s, pad = 2 * r + 1, 1, r
    else:
        ks = [draw(st.integers(1, 4)) for _ in sizes]
        # torch: padding at most half the kernel; the padded input at least one kernel
        pads = [draw(st.integers(max(0, -(-(k - size) // 2)), k // 2)) for k, size in zip(ks, sizes)]
        k = ks[0] if one_d or (len(set(ks)) == 1 and draw(st.booleans())) else tuple(ks)
        pad = pads[0] if one_d or (len(set(pads)) == 1 and draw(st.booleans())) else tuple(pads)
        s = draw(st.one_of(st.none(), st.integers(1, 3)) if one_d else
                 st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    p = {"k": k, "stride": s, "padding": pad, "ceil": draw(st.booleans()), **nd}
    if kind == "maxpool":
        p["fn"] = draw(st.sampled_from(["functional", "module", "indices"]))
    else:
        p["fn"] = draw(st.sampled_from(["functional", "module"]))
        p["cip"] = draw(st.booleans())
    return L(kind, p)


@st.composite
def move_layer(draw, shape):
    """pad, upsample or permute of [1, C, H, W] / [1, C, L]."""
    one_d = len(shape) == 3
    sizes = shape[2:]
    kind = draw(st.sampled_from(["pad", "upsample", "permute"]))
    if kind == "pad":
        pads = []
        for size in reversed(sizes):  # F.pad's order: last dim first; negative amounts crop, keeping >= 1
            lo = draw(st.integers(max(-1, 1 - size), 2))
            pads += [lo, draw(st.integers(max(-1, 1 - size - lo), 2))]
        if not one_d and draw(st.booleans()):
            pads = pads[:2] if draw(st.booleans()) else [max(0, pads[0])] * 4  # last dim only, or symmetric
        return L("pad", {"pads": tuple(pads), "value": draw(st.sampled_from([0.0, 0.0, 0.5, -1.0])),
                         "fn": draw(st.sampled_from(["functional", "module"]))})
    if kind == "upsample":
        mode = draw(st.sampled_from(["nearest", "nearest", "linear" if one_d else "bilinear"]))
        p = {"mode": mode, "fn": draw(st.sampled_from(["functional", "module"])), "align": draw(st.booleans())}
        if mode != "nearest" and draw(st.booleans()):
            p["size"] = tuple(draw(st.integers(1, 2 * s + 1)) for s in sizes)
        elif mode != "nearest":
            p["factor"] = tuple(draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])) for _ in sizes)
        else:
            p["factor"] = tuple(float(draw(st.integers(1, 3))) for _ in sizes)
        if one_d and "factor" in p:
            p["factor"] = p["factor"][0]
        return L("upsample", p)
    c = shape[1]
    fn = draw(st.sampled_from(["permute", "transpose"] + (["shuffle"] if c > 1 and not one_d else [])))
    if fn == "shuffle":
        return L("permute", {"fn": fn, "groups": draw(st.sampled_from(_divisors(c)))})
    if fn == "transpose":
        return L("permute", {"fn": fn, "dims": tuple(draw(st.permutations(range(1, len(shape))))[:2])})
    return L("permute", {"fn": fn, "perm": (0, *draw(st.permutations(range(1, len(shape)))))})


@st.composite
def view_layer(draw, shape):
    n, rank = math.prod(shape), len(shape)
    kinds = ["view"] + (["flatten", "flatten_all"] if rank >= 2 else []) + (["unsqueeze"] if rank < 4 else []) + \
        (["squeeze"] if rank > 2 and 1 in shape[1:] else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "flatten":
        return L("flatten", {"fn": draw(st.sampled_from(["torch", "method", "module", "view_size", "reshape"]))})
    if kind == "flatten_all":
        return L("flatten", {"fn": "view_all"})
    if kind == "unsqueeze":
        # rank 1 (the batch folded in): only a new dim 0 keeps the batch 1 (dim 1 would make it n)
        return L("unsqueeze", {"dim": draw(st.integers(0, 0 if n > 1 else 1) if rank == 1 else st.integers(1, rank))})
    if kind == "squeeze":
        return L("squeeze", {"dim": draw(st.sampled_from([i for i, d in enumerate(shape) if d == 1 and i > 0]))})
    dims, rest = [], n
    for _ in range(draw(st.integers(2, 4)) - 2):
        d = draw(st.sampled_from(_divisors(rest)))
        dims.append(d)
        rest //= d
    to = [1, *draw(st.permutations(dims + [rest]))]
    if draw(st.booleans()):
        to[draw(st.integers(1, len(to) - 1))] = -1
    return L("view", {"to": tuple(to), "fn": draw(st.sampled_from(["view", "reshape"]))})


@st.composite
def misc_layer(draw, shape):
    if draw(st.booleans()):
        fns = ["module", "functional", "alpha"] + (["module2d"] if len(shape) == 4 else [])
        return L("dropout", {"fn": draw(st.sampled_from(fns)), "rate": draw(st.sampled_from([0.0, 0.25, 0.5]))})
    return L("identity", {"fn": draw(st.sampled_from(["clone", "contiguous", "detach", "module"]))})


@st.composite
def affine_layer(draw, shape, bn_ok=True):
    rank = len(shape)
    c = shape[1] if rank >= 2 else 1
    if rank in (2, 3, 4) and bn_ok and draw(st.integers(0, 3)) == 0:
        return L("affine", {"fn": "bn", "rank": rank, "c": c, "affine": draw(st.booleans())})
    fn = draw(st.sampled_from(["add", "radd", "sub", "rsub", "mul", "rmul", "div"]))
    nonzero = st.sampled_from([-2.0, -0.5, 0.25, 0.5, 1.5, 3.0])
    if rank >= 2 and draw(st.booleans()):
        vals = draw(st.lists(nonzero, min_size=c, max_size=c))
        return L("affine", {"fn": fn, "const": vals, "const_shape": (1, c) + (1,) * (rank - 2)})
    return L("affine", {"fn": fn, "scalar": draw(nonzero)})


def _is_alias(layer: L) -> bool:
    """Whether the layer's output may share storage with its input (views, dropout in eval, detach, ...)."""
    return layer.kind in ("flatten", "view", "unsqueeze", "squeeze", "dropout", "permute") or \
        (layer.kind == "identity" and layer.p["fn"] != "clone")


@st.composite
def preserving_layers(draw, shape, alias_in, n_max=2, cout=None, affine_ok=True):
    """0..n_max layers that keep `shape` (a branch of a merge); with `cout`, 1..n_max that end with that many
    channels (a cat along the channels)."""
    out = []
    n = draw(st.integers(1 if cout is not None else 0, n_max))
    for i in range(n):
        rank = len(shape)
        spatial = rank in (3, 4) and shape[0] == 1
        if cout is not None and i == n - 1:
            layer = draw(conv_layer(shape, preserve=True, cout=cout))
        else:
            kind = draw(st.sampled_from(["act", "misc"] + (["conv", "conv", "pool"] if spatial else []) +
                                        (["linear"] if rank == 2 else [])))
            layer = {"act": lambda: act_layer(shape, alias_in, affine_ok=affine_ok),
                     "misc": lambda: misc_layer(shape),
                     "conv": lambda: conv_layer(shape, preserve=True), "pool": lambda: pool_layer(shape, preserve=True),
                     "linear": lambda: linear_layer(shape, preserve=True)}[kind]()
            layer = draw(layer)
        new = _shape_after(layer, shape)
        assert new == (shape if cout is None or i < n - 1 else (*shape[:1], cout, *shape[2:])), (layer, shape, new)
        shape = new
        out.append(layer)
        alias_in = alias_in and _is_alias(layer)
        affine_ok = affine_ok or not (_is_alias(layer) or layer.kind == "identity")
    return out, alias_in


@st.composite
def gate_layers(draw, shape):
    """Squeeze-and-excitation: [1, C, H, W] (or [1, C, L]) -> a gate [1, C, 1, 1] (or [1, C, 1])."""
    one_d, c = len(shape) == 3, shape[1]
    nd = {"nd": 1} if one_d else {}
    squeeze = draw(st.sampled_from([L("adaptive", {"out": 1, **nd}),
                                    L("mean", {"dims": (2,) if one_d else (2, 3), "keepdim": True, "fn": "method"})]))
    out = [squeeze]
    gshape = (1, c, 1) if one_d else (1, c, 1, 1)
    if draw(st.booleans()):
        r = draw(st.integers(1, 4))
        for cin, cout in ((c, r), (r, c)):
            out.append(L("conv", {**nd, "cin": cin, "cout": cout, "k": 1, "stride": 1, "padding": 0, "dilation": 1,
                                  "groups": 1, "bias": draw(st.booleans()), "density": draw(DENSITY), "bn": None,
                                  "fn": "module"}))
            if cout == r:
                out.append(draw(act_layer(shape, False, fns=["relu", "relu6", "hardswish", "silu"])))
    gate = draw(st.sampled_from(["sigmoid", "hardsigmoid", None]))
    if gate:
        out.append(L("act", {"fn": gate}))
    for layer in out:
        shape = _shape_after(layer, shape)
    assert shape == gshape, (out, shape)
    return out


@st.composite
def merge_layer(draw, shape, alias_in, affine_ok=True):
    rank = len(shape)
    kind = draw(st.sampled_from(["add", "add", "sub", "mul", "cat"] + (["gate"] if rank in (3, 4) else [])))
    if kind == "cat":
        dim = draw(st.integers(1, rank - 1) | st.integers(-(rank - 1), -1))
        if dim in (1, 1 - rank) and rank in (3, 4) and draw(st.booleans()):  # fire module: branches of other widths
            a, _ = draw(preserving_layers(shape, alias_in, cout=draw(st.integers(1, 4))))
            b, _ = draw(preserving_layers(shape, alias_in, cout=draw(st.integers(1, 4))))
        else:
            a, _ = draw(preserving_layers(shape, alias_in))
            b, _ = draw(preserving_layers(shape, alias_in))
        three = all(_shape_after(layer, shape) == shape for layer in a + b)
        return L("merge", {"a": a, "b": b, "op": draw(st.sampled_from(["cat", "cat3"] if three else ["cat"])),
                           "dim": dim})
    a, a_alias = draw(preserving_layers(shape, alias_in, affine_ok=affine_ok))
    if kind == "gate":
        b = draw(gate_layers(shape))
        ops = ["*", "b*a", "mul"] + ([] if a_alias else ["*="])
    else:
        b, _ = draw(preserving_layers(shape, alias_in))
        ops = {"add": ["+", "add"], "sub": ["-", "sub", "b-a"], "mul": ["*", "mul"]}[kind] + \
            ([] if a_alias else {"add": ["+=", "add_"], "sub": ["-=", "sub_"], "mul": ["*=", "mul_"]}[kind])
    return L("merge", {"a": a, "b": b, "op": draw(st.sampled_from(ops))})


@st.composite
def any_layer(draw, shape, alias_in, bn_ok=True, wide=False, affine_ok=True):
    rank = len(shape)
    spatial = rank in (3, 4) and shape[0] == 1
    kinds = ["act", "act", "view", "misc"] + (["affine"] if affine_ok else []) + \
        (["conv"] * 3 + ["pool"] * 3 + ["move"] * 2 if spatial else []) + \
        (["linear"] * 3 if math.prod(shape[:-1]) == 1 else []) + \
        (["merge", "merge"] if shape[0] == 1 and rank >= 2 else [])
    kind = draw(st.sampled_from(kinds))
    return draw({"act": lambda: act_layer(shape, alias_in, affine_ok=affine_ok), "view": lambda: view_layer(shape),
                 "move": lambda: move_layer(shape),
                 "misc": lambda: misc_layer(shape), "affine": lambda: affine_layer(shape, bn_ok),
                 "conv": lambda: conv_layer(shape, wide=wide), "pool": lambda: pool_layer(shape),
                 "linear": lambda: linear_layer(shape, wide=wide),
                 "merge": lambda: merge_layer(shape, alias_in, affine_ok)}[kind]())


@st.composite
def input_shapes(draw, wide=False):
    """With the batch dimension 1: NCHW, [N, F] or NCL."""
    kind = draw(st.sampled_from(["chw"] * 5 + ["flat", "flat", "ncl", "ncl"]))
    if kind == "chw":
        return (1, draw(st.integers(1, 8 if wide else 3)), draw(st.integers(1, 16)), draw(st.integers(1, 16)))
    if kind == "flat":
        return (1, draw(st.integers(1, 48)))
    return (1, draw(st.integers(1, 4)), draw(st.integers(1, 24)))


def _draw_layers(draw, shape, n, alias_in=True, wide=False):
    """n layers from `shape` on (fewer where one would exceed MAX_NUMEL); a batch norm or affine layer after a view
    that regroups a conv / linear / affine output's channels is drawn too (test_batch_norm_after_a_flattened_conv,
    test_affines_merged_across_a_view)."""
    layers = []
    for _ in range(n):
        layer = draw(any_layer(shape, alias_in, True, wide, True))
        new = _shape_after(layer, shape)
        if math.prod(new) > MAX_NUMEL:
            continue
        layers.append(layer)
        alias_in = alias_in and _is_alias(layer)
        shape = new
    return layers, shape, alias_in


@st.composite
def architectures(draw, max_layers=6, wide=False):
    """`wide`: up to 8 input channels, 16 x groups conv channels and 40 linear outputs (the ISA kernels' vector
    paths), for the slow variant."""
    shape = draw(input_shapes(wide))
    layers, _, _ = _draw_layers(draw, shape, draw(st.integers(1, max_layers)), wide=wide)
    return Arch(shape=shape[1:], layers=layers, seed=draw(st.integers(0, 2**16)))


@st.composite
def build_options(draw):
    target = draw(st.sampled_from(["host", "host", "host", "x86_64-avx2", "x86_64-avx2-no512"]))
    avx512 = None
    if target == "x86_64-avx2-no512":
        target, avx512 = "x86_64-avx2", False
    bits = draw(st.one_of(
        st.none(), st.just(["1-16"]), st.just([4, 8, 16]), st.sampled_from([[16], [8], [4], [1], [8, 16], ["4-16"]]),
        st.lists(st.integers(1, 16), min_size=1, max_size=3, unique=True).map(sorted)))
    return Opts(target=target, avx512=avx512, storage=draw(st.sampled_from(["c", "blob", "auto"])), index_bits=bits,
                row_align=draw(st.sampled_from([None, 1, 8, None, 1, 8, 2, 3, 4, 16, 64])),
                fuse_pool=draw(st.sampled_from([None, True, False])),
                skip_zero_inputs=draw(st.sampled_from([None, None, "relu", "all"])))


@contextlib.contextmanager
def _refused_in_place_on_permuted_views():
    """An in-place op on a permuted view, or on a tensor with one (a branch may mutate what another permuted), is
    refused by design (the build's permute is a copy): such a drawn model is not a counterexample."""
    try:
        yield
    except PrunecError as e:
        if "is a permuted view of another (or has one)" not in str(e):
            raise
        reject()


@contextlib.contextmanager
def _avx512(value: bool | None):
    """PRUNEC_AVX512 for a build: 0 keeps x86_64-avx2 to its AVX2 kernels on a machine with AVX-512."""
    old = os.environ.get("PRUNEC_AVX512")
    if value is not None:
        os.environ["PRUNEC_AVX512"] = "1" if value else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PRUNEC_AVX512", None)
        else:
            os.environ["PRUNEC_AVX512"] = old


# --- the checks ------------------------------------------------------------------------------------------------

def build_and_verify(arch: Arch, opts: Opts, n_inputs: int = 3, seed: int = 0):
    """Export `arch`, build it with `opts` and verify it on `n_inputs` random inputs: (Report, manifest)."""
    model = Net(arch).eval()
    with tempfile.TemporaryDirectory(prefix="prunec-prop-") as d:
        d = Path(d)
        pt2 = bm.export(model, arch.shape, d / "model.pt2")
        with _avx512(opts.avx512), _refused_in_place_on_permuted_views():
            r = B.build(pt2, opts.target, d / "out", name="prop_net", storage=opts.storage, index_bits=opts.index_bits,
                        row_align=opts.row_align, fuse_pool=opts.fuse_pool, skip_zero_inputs=opts.skip_zero_inputs)
        layers = [(x["name"], x["op"], x["kernel"], x["format"], x["index_bits"], x["orientation"])
                  for x in r.manifest["layers"]]
        note(f"layers: {layers}")
        note(f"fused: {r.manifest['plan']['fused_conv_pool']}")
        return V.verify(d / "out", random=n_inputs, seed=seed), r.manifest


def check_random_model(arch, opts, n_inputs, seed):
    rep, _ = build_and_verify(arch, opts, n_inputs, seed)
    assert rep.ok, rep.text()


def check_refused(arch: Arch, what: str):
    model = Net(arch).eval()
    with tempfile.TemporaryDirectory(prefix="prunec-prop-bad-") as d:
        d = Path(d)
        pt2 = bm.export(model, arch.shape, d / "model.pt2")
        with pytest.raises(PrunecError) as e:
            B.build(pt2, "host", d / "out", name="prop_bad")
        msg = str(e.value)
        assert re.search(UNSUPPORTED[what][2], msg), msg
        assert f"{THIS_FILE}:" in msg, f"the message names no line of the user's file: {msg}"
        assert re.search(r"[Nn]othing was written", msg), msg
        assert not (d / "out").exists()


@st.composite
def refused_architectures(draw):
    """A random supported prefix, one unsupported construction, a random supported suffix: (Arch, what)."""
    shape = draw(input_shapes())
    prefix, mid, alias_in = _draw_layers(draw, shape, draw(st.integers(0, 3)))
    what = draw(st.sampled_from(sorted(w for w in UNSUPPORTED if _needs(mid, w))))
    bad = L("bad", {"what": what, "shape": mid})
    try:
        after = _shape_after(bad, mid)
    except Exception:  # noqa: BLE001 - torch rejects it at this shape itself: no suffix then
        after = None
    suffix = []
    if after is not None and len(after) >= 1 and math.prod(after) <= MAX_NUMEL:  # not after a 0-d x.mean()
        suffix, _, _ = _draw_layers(draw, after, draw(st.integers(0, 2)), alias_in=False)
    return Arch(shape=shape[1:], layers=prefix + [bad] + suffix, seed=draw(st.integers(0, 2**16))), what


# --- the properties ----------------------------------------------------------------------------------------

@FAST
@given(arch=architectures(), opts=build_options(), n_inputs=st.integers(1, 4), seed=st.integers(0, 1000))
@example(arch=Arch(shape=(2, 3, 3), layers=[], seed=0), opts=Opts(), n_inputs=2, seed=0)  # the output is the input
@example(arch=Arch(shape=(5,), layers=[L("flatten", {"fn": "view_all"})], seed=0), opts=Opts(target="x86_64-avx2"),
         n_inputs=1, seed=0)
def test_random_models_build_and_verify(arch, opts, n_inputs, seed):
    check_random_model(arch, opts, n_inputs, seed)


@FAST_REFUSE
@given(case=refused_architectures())
def test_unsupported_constructions_are_refused_by_name(case):
    check_refused(*case)


@pytest.mark.slow
@SLOW
@given(arch=st.one_of(architectures(max_layers=8), architectures(max_layers=8, wide=True)), opts=build_options(),
       n_inputs=st.integers(1, 4), seed=st.integers(0, 1000))
def test_random_models_build_and_verify_many(arch, opts, n_inputs, seed):
    check_random_model(arch, opts, n_inputs, seed)


@pytest.mark.slow
@SLOW_REFUSE
@given(case=refused_architectures())
def test_unsupported_constructions_are_refused_by_name_many(case):
    check_refused(*case)


ARM = settings(max_examples=int(os.environ.get("PRUNEC_PROPERTY_ARM_EXAMPLES", "25")), derandomize=True, **_COMMON)
ARM_TARGETS = ["cortex-m4", "cortex-m55", "aarch64-neon", "armv7a-neon"]


@pytest.mark.slow
@pytest.mark.parametrize("target", ARM_TARGETS)
def test_random_models_verify_on_arm_under_qemu(target):
    """The same property on the Arm targets (their ISA kernels, Cortex-M's conv + pool fusion by default), the build
    cross-compiled and run under QEMU: PRUNEC_PROPERTY_ARM_EXAMPLES per target (25)."""
    from prunec import targets

    if targets.get(target).missing_tools():
        pytest.skip(f"{target}: tools not installed")

    @ARM
    @given(arch=architectures(max_layers=6), storage=st.sampled_from(["c", "blob"]),
           bits=st.sampled_from([None, ["1-16"], [8], [4, 8, 16]]), fuse=st.sampled_from([None, True, False]),
           skip=st.sampled_from([None, "relu", "all"]), seed=st.integers(0, 1000))
    def prop(arch, storage, bits, fuse, skip, seed):
        check_random_model(arch, Opts(target=target, storage=storage, index_bits=bits, fuse_pool=fuse,
                                      skip_zero_inputs=skip), 2, seed)

    prop()


# --- defects the properties found, fixed and kept as regression tests ---

def _build_verify(model: nn.Module, shape, tmp_path, **kw):
    pt2 = bm.export(model.eval(), shape, tmp_path / "model.pt2")
    r = B.build(pt2, "host", tmp_path / "out", name="regress", **kw)
    return r.manifest, V.verify(tmp_path / "out", random=4)


def test_batch_norm_after_a_flattened_conv(tmp_path):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 1), nn.BatchNorm1d(8)

        def forward(self, x):
            return self.bn(torch.flatten(self.conv(x), 1))

    _, rep = _build_verify(bm.prune_random(M()), (1, 2, 2), tmp_path)
    assert rep.ok, rep.text()


def test_ncl_mean_keepdim_keeps_its_shape(tmp_path):
    class Last(nn.Module):
        def forward(self, x):
            return x.mean(-1, keepdim=True)

    class Conv(nn.Module):  # 1-d squeeze-and-excitation: the gate's first conv
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 1)

        def forward(self, x):
            return self.conv(x.mean(-1, keepdim=True))

    (tmp_path / "a").mkdir()
    manifest, rep = _build_verify(Last(), (2, 5), tmp_path / "a")
    assert rep.ok, rep.text()
    assert manifest["output_shape"] == [1, 2, 1]
    (tmp_path / "b").mkdir()
    _, rep = _build_verify(Conv(), (2, 5), tmp_path / "b")
    assert rep.ok, rep.text()


def test_max_pool1d_return_indices(tmp_path):
    class M(nn.Module):
        def forward(self, x):
            return F.max_pool1d(x, 2, return_indices=True)[0]

    _, rep = _build_verify(M(), (2, 6), tmp_path)
    assert rep.ok, rep.text()


def test_affines_merged_across_a_view(tmp_path):
    class Bn(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(2)

        def forward(self, x):
            return self.bn((x * 2.0).view(1, 2, 2))

    class Hardsigmoid(nn.Module):
        def forward(self, x):
            return F.hardsigmoid((x * 2.0).view(1, 2, 2))

    for i, m in enumerate([bm.prune_random(Bn()), Hardsigmoid()]):
        (tmp_path / str(i)).mkdir()
        _, rep = _build_verify(m, (4,), tmp_path / str(i))
        assert rep.ok, rep.text()
