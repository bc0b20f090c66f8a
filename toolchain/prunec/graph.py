"""The typed graph a build works on: what the frontend produces and encode, plan and codegen read.

A Graph is a list of Nodes in execution (topological) order over named buffers. Every buffer is a flat,
contiguous float32 tensor of one sample (batch 1, NCHW, batch dimension dropped); each is written by
exactly one node (SSA), except the graph input, which the caller provides (read-only). Reshapes never
appear: a view of a contiguous NCHW tensor is the same bytes, so the frontend maps it onto its source buffer
and each node records the shapes it sees.

Ops (`Node.op`) and their attributes:
  fc                  weight [out, in], bias [out] or None; out_min, out_max (fused clamp)
  conv2d              weight [out_c, in_c/groups, kh, kw], bias; stride, padding, dilation (pairs), groups,
                      out_min, out_max
  maxpool2d           kernel, stride, padding (pairs), ceil_mode
  avgpool2d           kernel, stride, padding (pairs), ceil_mode, count_include_pad
  adaptive_avgpool2d  output_size (pair)
  clamp               out_min, out_max (relu: 0, inf; relu6: 0, 6; a copy: -inf, inf)
  sigmoid, tanh       -
  softmax             outer, n, inner (the dim split of the sample tensor)
  log_softmax         outer, n, inner (as softmax)
  add                 out_min, out_max; inputs a, b of the same shape
  sub                 out_min, out_max; y = a - b, inputs of the same shape
  affine              scale, shift per channel (float32 [C]: dim 1 of the input, or [1] for a 1-D one), out_min,
                      out_max: y = clamp(x * scale[c] + shift[c]); arithmetic with constants, unfolded batch norm
  mul                 channels, inner, b_inner: y = a * b, b of a's shape (b_inner = inner) or one value per
                      channel (b_inner = 1, inputs [full, gate])
  leaky_relu          slope
  gelu                approximate ("none": erf, or "tanh")
  elu                 scale, input_scale, neg_scale: y = x > 0 ? x * scale : expm1(x * input_scale) * neg_scale
                      (elu: 1, 1, alpha; celu: 1, 1/alpha, alpha; selu: its constants)
  softplus            beta, threshold
  mish                -
  pad2d               planes, in_hw (pair), pads (top, bottom, left, right; negative: a crop), value: constant
                      padding of the last two dims, seen as `planes` planes of in_hw (a 1-d pad: planes of height 1)
  upsample_nearest2d  scale (integer pair); NCHW, 1-d ones on the [N, C, 1, L] view
  upsample_bilinear2d scale (PyTorch's float scale per dim), align_corners; NCHW, linear 1-d on [N, C, 1, L]
  permute             shape, stride (4 each): y, contiguous of `shape`, takes element sum(i_k * stride[k]) of x
  concat              outer, sizes (per input): torch.cat along a dim d > 0, outer = the product of the dims before
                      d, sizes[i] = input i's product of the dims from d on
  batchnorm           scale, shift per channel (only between frontend passes: folded, or made an affine node)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

INPUT = "input"
OUTPUT = "output"

WEIGHTED_OPS = ("fc", "conv2d")
# Ops whose kernel accepts y == x (y == a for add): each element is read before it is written.
IN_PLACE_OPS = ("clamp", "sigmoid", "tanh", "softmax", "log_softmax", "add", "sub", "affine", "mul", "leaky_relu", "gelu", "elu",
                "softplus", "mish")
CLAMP_FUSABLE_OPS = ("fc", "conv2d", "add", "sub", "affine")


def shared_weights(g: "Graph") -> dict[str, str]:
    """{layer: the earlier layer whose weight it is}: a module applied more than once (weight sharing) gives nodes
    whose weight arrays are one array (the frontend's views of one parameter); a build stores it once."""
    first: dict[tuple, str] = {}
    out: dict[str, str] = {}
    for n in g.nodes:
        if n.weight is None:
            continue
        key = (n.op, n.weight.__array_interface__["data"][0], n.weight.shape, n.weight.strides)
        if key in first:
            out[n.name] = first[key]
        else:
            first[key] = n.name
    return out


def numel(shape) -> int:
    return int(math.prod(shape)) if shape else 1


@dataclass
class Node:
    name: str  # layer name: the module path of its weight ("features.0") or the torch node's name
    op: str
    inputs: list[str]  # buffer names
    output: str  # buffer name
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    weight: np.ndarray | None = None  # float32
    bias: np.ndarray | None = None  # float32 [out]
    source: str = ""  # "file:line" of the user's code that created it
    torch_op: str = ""  # the aten op it came from, for messages

    @property
    def out_size(self) -> int:
        return numel(self.out_shape)


@dataclass
class Graph:
    input_shape: tuple[int, ...]  # one sample, no batch dimension
    output_shape: tuple[int, ...]
    nodes: list[Node] = field(default_factory=list)
    buffers: dict[str, int] = field(default_factory=dict)  # name -> float elements
    input: str = INPUT
    output: str = OUTPUT

    def producer(self, buf: str) -> Node | None:
        for n in self.nodes:
            if n.output == buf:
                return n
        return None

    def consumers(self, buf: str) -> list[Node]:
        return [n for n in self.nodes if buf in n.inputs]

    def arena_buffers(self) -> list[str]:
        """Buffers that live in the arena: every buffer but the caller's input and output."""
        return [b for b in self.buffers if b not in (self.input, self.output)]

    def validate(self) -> None:
        """Structural invariants: SSA, inputs defined before use, sizes consistent, output produced."""
        defined = {self.input}
        if self.buffers.get(self.input) != numel(self.input_shape):
            raise ValueError("input buffer size does not match input_shape")
        for n in self.nodes:
            if len(n.inputs) != len(n.in_shapes):  # zip() below would silently skip the unmatched inputs
                raise ValueError(f"node {n.name}: {len(n.inputs)} inputs {n.inputs} but {len(n.in_shapes)} "
                                 f"input shapes {n.in_shapes}")
            for b in (*n.inputs, n.output):
                if b not in self.buffers:
                    raise ValueError(f"node {n.name} uses buffer {b}, which is not in the graph's buffers")
            for b, shp in zip(n.inputs, n.in_shapes):
                if b not in defined:
                    raise ValueError(f"node {n.name} reads {b} before it is written")
                if self.buffers[b] != numel(shp):
                    raise ValueError(f"node {n.name}: input {b} has {self.buffers[b]} elements, shape {shp}")
            if n.output in defined:
                raise ValueError(f"buffer {n.output} written twice (node {n.name})")
            if self.buffers[n.output] != numel(n.out_shape):
                raise ValueError(f"node {n.name}: output {n.output} size mismatch")
            defined.add(n.output)
        if self.output not in defined or self.output == self.input:
            raise ValueError("graph output is not produced by a node")
        if self.buffers[self.output] != numel(self.output_shape):
            raise ValueError("output buffer size does not match output_shape")

    def summary(self) -> str:
        lines = [f"input {self.input_shape} -> output {self.output_shape}"]
        for n in self.nodes:
            lines.append(f"  {n.name:24s} {n.op:18s} {n.inputs} -> {n.output} {n.out_shape} {n.attrs}")
        return "\n".join(lines)
