"""The benchmark's single-layer workloads: the paper's layers at the paper's per-layer densities (Han et al.
2015, Tables 2-5), random normal weights with uniformly random masks, batch 1, fp32.

Weight matrix view as in the runtime: [rows x cols] = [out x in] (conv: [out_c x in_c/groups*kh*kw]).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Conv:
    in_c: int
    in_hw: int
    out_c: int
    k: int
    stride: int = 1
    pad: int = 0
    groups: int = 1

    @property
    def out_hw(self) -> int:
        return (self.in_hw + 2 * self.pad - self.k) // self.stride + 1


@dataclass(frozen=True)
class Layer:
    net: str
    name: str
    density: float
    rows: int = 0  # fc: out features
    cols: int = 0  # fc: in features
    conv: Conv | None = None

    @property
    def key(self) -> str:
        return f"{self.net}.{self.name}"

    @property
    def kind(self) -> str:
        return "conv" if self.conv else "fc"

    def matrix_shape(self) -> tuple[int, int]:
        if self.conv:
            c = self.conv
            return c.out_c, c.in_c // c.groups * c.k * c.k
        return self.rows, self.cols

    def dense_macs(self) -> int:
        r, k = self.matrix_shape()
        return r * k * (self.conv.out_hw ** 2 if self.conv else 1)

    def shape_str(self) -> str:
        if self.conv:
            c = self.conv
            g = f" g{c.groups}" if c.groups > 1 else ""
            return f"{c.in_c}->{c.out_c} {c.k}x{c.k}/{c.stride} @{c.in_hw}{g}"
        return f"{self.cols}->{self.rows}"


def fc(net, name, rows, cols, d):
    return Layer(net, name, d, rows=rows, cols=cols)


def conv(net, name, d, **kw):
    return Layer(net, name, d, conv=Conv(**kw))


LAYERS: list[Layer] = [
    fc("lenet300", "fc1", 300, 784, 0.08),
    fc("lenet300", "fc2", 100, 300, 0.09),
    fc("lenet300", "fc3", 10, 100, 0.26),
    conv("lenet5", "conv1", 0.66, in_c=1, in_hw=28, out_c=20, k=5),
    conv("lenet5", "conv2", 0.12, in_c=20, in_hw=12, out_c=50, k=5),
    fc("lenet5", "fc1", 500, 800, 0.08),
    fc("lenet5", "fc2", 10, 500, 0.19),
    conv("alexnet", "conv2", 0.38, in_c=96, in_hw=27, out_c=256, k=5, pad=2, groups=2),
    conv("alexnet", "conv3", 0.35, in_c=256, in_hw=13, out_c=384, k=3, pad=1),
    conv("alexnet", "conv4", 0.37, in_c=384, in_hw=13, out_c=384, k=3, pad=1, groups=2),
    conv("alexnet", "conv5", 0.37, in_c=384, in_hw=13, out_c=256, k=3, pad=1, groups=2),
    fc("alexnet", "fc6", 4096, 9216, 0.09),
    fc("alexnet", "fc7", 4096, 4096, 0.09),
    fc("alexnet", "fc8", 1000, 4096, 0.25),
    conv("vgg16", "conv2_1", 0.34, in_c=64, in_hw=112, out_c=128, k=3, pad=1),
    conv("vgg16", "conv3_2", 0.24, in_c=256, in_hw=56, out_c=256, k=3, pad=1),
    conv("vgg16", "conv5_1", 0.35, in_c=512, in_hw=14, out_c=512, k=3, pad=1),
    fc("vgg16", "fc6", 4096, 25088, 0.04),
    fc("vgg16", "fc7", 4096, 4096, 0.04),
    fc("synthetic", "fc4096", 4096, 4096, 0.10),
]


def by_key(key: str) -> Layer:
    for l in LAYERS:
        if l.key == key:
            return l
    raise KeyError(key)


def random_layer(layer: Layer, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights [rows x cols] with a uniformly random mask of the layer's density, bias, input)."""
    rng = np.random.default_rng(seed)
    rows, cols = layer.matrix_shape()
    w = rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(1.0 / np.sqrt(cols))
    keep = rng.random((rows, cols), dtype=np.float32) < layer.density
    w *= keep
    bias = rng.standard_normal(rows, dtype=np.float32) * np.float32(0.1)
    if layer.conv:
        c = layer.conv
        x = rng.standard_normal((c.in_c, c.in_hw, c.in_hw), dtype=np.float32)
    else:
        x = rng.standard_normal(cols, dtype=np.float32)
    return w, bias, x
