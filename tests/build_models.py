"""Small random models of every op `prunec build` supports, pruned at random densities, for the build tests.

`MODELS` maps a case name to (constructor, input shape without batch). `export(model, shape, path)` saves a
.pt2 the way `prunec export` does (eval, batch 1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def prune_random(model: nn.Module, seed: int = 0, lo: float = 0.05, hi: float = 0.9) -> nn.Module:
    """Zero a random fraction of every conv/linear weight (density drawn in [lo, hi]); randomise BN stats."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                density = lo + (hi - lo) * float(torch.rand((), generator=g))
                m.weight.mul_((torch.rand(m.weight.shape, generator=g) < density).float())
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
    return model.eval()


def export(model: nn.Module, shape, path) -> Path:
    ep = torch.export.export(model.eval(), (torch.zeros((1, *shape)),))
    torch.export.save(ep, str(path))
    return Path(path)


class MLP(nn.Module):  # linear, relu, relu6, softmax, flatten, dropout
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(48, 40), nn.Linear(40, 24), nn.Linear(24, 10)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(self.drop(x)))
        x = F.relu6(self.fc2(x))
        return torch.softmax(self.fc3(x), dim=-1)


class Conv(nn.Module):
    def __init__(self, cin=4, cout=6, k=3, stride=1, padding=1, dilation=1, groups=1, bias=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias)

    def forward(self, x):
        return self.conv(x)


class Pools(nn.Module):  # maxpool (ceil, padding), avgpool (count_include_pad False), adaptive avg, tanh
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3)

    def forward(self, x):
        x = F.max_pool2d(self.conv(x), 3, stride=2, padding=1, ceil_mode=True)
        a = F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False)
        b = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        return torch.tanh(F.adaptive_avg_pool2d(a, (3, 2))) + F.adaptive_avg_pool2d(b, (3, 2))


class Residual(nn.Module):  # residual add with fused relu, in-place relu_ and add_
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 7)

    def forward(self, x):
        y = F.relu(self.c1(x), inplace=True)
        y = self.c2(y)
        y += x
        y = y.relu_()
        return self.fc(y.view(y.size(0), -1))


class BatchNorm(nn.Module):  # batch norm folded into conv and linear, depthwise conv
    def __init__(self):
        super().__init__()
        self.c1, self.bn1 = nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)
        self.dw, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8)
        self.fc, self.bn3 = nn.Linear(8 * 4 * 4, 12), nn.BatchNorm1d(12)
        self.out = nn.Linear(12, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.c1(x)))
        x = F.relu6(self.bn2(self.dw(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn3(self.fc(x.reshape(1, -1))))
        return self.out(x)


class Activations(nn.Module):  # standalone sigmoid, tanh, relu, hardtanh (after ops they cannot fuse into)
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        x = F.avg_pool2d(self.conv(x), 2)
        a = torch.sigmoid(x)
        b = F.relu(F.max_pool2d(x, 1))
        c = F.hardtanh(torch.tanh(x), -0.5, 0.5)
        return torch.flatten(a + b + c, 1)


class Addmm(nn.Module):  # addmm / mm spellings of a linear layer, softmax over channels of NCHW
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, 18) * 0.3)
        self.b1 = nn.Parameter(torch.randn(16) * 0.1)
        self.w2 = nn.Parameter(torch.randn(18, 16) * 0.3)

    def forward(self, x):
        s = torch.softmax(x, dim=1).reshape(1, 18)
        h = torch.addmm(self.b1, s, self.w1.t())
        return torch.mm(h, self.w2.t()).view(1, 2, 3, 3).softmax(1)


MODELS = {
    "mlp": (MLP, (3, 4, 4)),
    "conv3_pad1": (lambda: Conv(), (4, 9, 9)),
    "conv5_stride2": (lambda: Conv(k=5, stride=2, padding=2), (4, 11, 10)),
    "conv_dilated": (lambda: Conv(k=3, dilation=2, padding=2), (4, 9, 9)),
    "conv_groups": (lambda: Conv(cin=4, cout=6, groups=2, stride=2, padding=0, bias=False), (4, 9, 8)),
    "conv_depthwise": (lambda: Conv(cin=6, cout=6, groups=6), (6, 7, 7)),
    "conv_1x1": (lambda: Conv(k=1, padding=0), (4, 5, 5)),
    "conv_rect": (lambda: Conv(k=(3, 1), stride=(2, 1), padding=(1, 0)), (4, 8, 6)),
    "conv_same": (lambda: Conv(k=5, padding="same"), (4, 6, 7)),
    "pools": (Pools, (3, 13, 12)),
    "residual": (Residual, (4, 6, 6)),
    "batchnorm": (BatchNorm, (3, 10, 10)),
    "activations": (Activations, (2, 6, 6)),
    "addmm": (Addmm, (2, 3, 3)),
}


def make(case: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    ctor, shape = MODELS[case]
    torch.manual_seed(seed)
    return prune_random(ctor(), seed), shape


class ReluMLP(nn.Module):
    """Linear layers of the given widths with a ReLU between them (the sliced fc layout tests)."""

    def __init__(self, widths):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))

    def forward(self, x):
        for i, f in enumerate(self.fcs):
            x = f(x)
            if i + 1 < len(self.fcs):
                x = torch.relu(x)
        return x


def sparse_mlp_case(tmp_path, widths, density: float, seed: int = 0):
    """(.pt2, 8 random inputs [8, widths[0]], PyTorch's outputs on them) of a ReluMLP whose weights keep `density`."""
    from prunec import verify

    torch.manual_seed(seed)
    m = ReluMLP(widths).eval()
    with torch.no_grad():
        for f in m.fcs:
            f.weight.mul_((torch.rand_like(f.weight) < density).float())
    pt2 = Path(tmp_path) / "mlp.pt2"
    export(m, (widths[0],), pt2)
    x = random_inputs((widths[0],), n=8, seed=seed + 1).reshape(8, -1)
    return pt2, x, verify.reference_outputs(pt2, x, [1, widths[0]])


def sparse_layer(shape, density: float, seed: int) -> np.ndarray:
    """A float32 weight matrix: standard normal values, each kept with probability `density`."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(np.float32)


def skip_if_missing(t) -> None:
    """pytest.skip naming the Debian packages of target `t`'s missing tools (compiler, emulator)."""
    import pytest

    missing = t.missing_tools()
    if missing:
        pytest.skip(", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in missing))


def random_inputs(shape, n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def outputs(build_dir, xs: np.ndarray) -> np.ndarray:
    """The build's outputs on inputs `xs` [N, ...], one NAME_run per input (host builds, through cffi)."""
    from prunec.bench import CompiledBuild

    cb = CompiledBuild(build_dir)
    out = []
    for x in xs:
        cb.set_input(x)
        cb.run_total(1)
        out.append(cb.output().copy())
    return np.stack(out)


def check_fused_steps(g, pairs, plan) -> None:
    """Independently of plan.check: while each fused conv+pool pair runs, the conv's inputs, its plane, the pool's
    output and every buffer live across the pair occupy disjoint, 16-byte aligned bytes inside the arena."""
    from prunec import fuse, plan as planner

    life = planner.lifetimes(g)
    arena = set(g.arena_buffers())
    for i, j in pairs.items():
        conv, pool = g.nodes[i], g.nodes[j]
        assert plan.offsets[conv.output] % 16 == 0
        active = {b: 4 * fuse.plane_size(conv) if b == conv.output else 4 * g.buffers[b]
                  for b in [*conv.inputs, conv.output, pool.output] if b in arena}
        active.update({b: 4 * g.buffers[b] for b, (f, l) in life.items() if f < i and l > j})
        spans = sorted((plan.offsets[b], plan.offsets[b] + n, b) for b, n in active.items())
        for (lo1, hi1, b1), (lo2, hi2, b2) in zip(spans, spans[1:]):
            assert hi1 <= lo2, f"{b1} [{lo1},{hi1}) overlaps {b2} [{lo2},{hi2}) during fused {conv.name}\n{g.summary()}"
        assert max(hi for _, hi, _ in spans) <= plan.arena_bytes
