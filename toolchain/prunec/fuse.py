"""Conv + pool fusion: a convolution whose only reader is the pooling layer right after it runs one output
channel at a time, each channel's plane pooled before the next is computed, so that the convolution's output
never exists whole in RAM (LeNet-5's conv1: a 46 KB tensor becomes a 2.3 KB plane).

What runs is the same two kernels as without fusion, called per channel: the convolution over a one-row view
of the layer's weights (rows of relative-indexed CSR are independent: a view is the row pointer moved by c),
then the pool over that plane. Each output value is computed by the same code on the same inputs as in the
unfused build, so a fused build gives bit for bit the unfused build's result where the kernels do not change
their summation order with the number of output channels (the portable and Cortex-M ones do not).

Memory plan. The fused pair is one step: the plan sees the convolution's output buffer as one channel plane,
live while the pair runs, and the convolution's inputs live until the pool has run (the pool's output is
written channel by channel while the convolution still reads its input). `planning_graph` expresses exactly
that as a graph for `prunec.plan.make_plan`, whose `check` then proves the fused plan.
A fused pair needs its conv input, plane and whole pool output at once, where the unfused pair needs the input
with the conv output, then the conv output with the pool output: with a pool that barely shrinks (stride 1) that
can be more, so `find_conv_pool` fuses only pairs that do not make the arena larger.

Cost. Kernels have a fixed cost per call, paid once per output channel. On Cortex-M (no per-call set-up
beyond a few loads) fusion is the targets' default (`fuse_conv_pool = true` in their TOML files): the RAM is
the scarce resource there. x86's avx512x4 convolution packs its input once per call, so x86 fuses by default
only the pairs it runs as one call (`fuse_conv_pool = "one-call"`, below), and the other targets do not fuse unless
asked (`prunec build --fuse-pool`). Where the target selects an ISA kernel for the
pair as one op (`conv2d_rcsr_maxpool2d`, codegen.FUSED_OPS / `fused_kernel`: x86 avx512x4), codegen emits one
call of it instead of the per-channel loop: the input is packed once and each channel pooled as soon as it is
computed (LeNet-5 on x86: faster than unfused). `find_conv_pool(g, keep)` can restrict fusion to such pairs.
"""
from __future__ import annotations

import copy

from .graph import Graph, numel

# Pools that compute each channel from that channel alone, so one plane at a time gives the same values.
# adaptive_avgpool2d too: a conv before a global average pool is where fusion saves the most (the conv's whole
# output becomes one plane, the pool's output is a few floats per channel).
POOL_OPS = ("maxpool2d", "avgpool2d", "adaptive_avgpool2d")


def conv_pool_candidates(g: Graph) -> dict[int, int]:
    """conv node index -> index of the pool node that reads only its output, right after it: the pairs that
    can be fused (whether fusing them pays is `find_conv_pool`'s question)."""
    pairs: dict[int, int] = {}
    for i, n in enumerate(g.nodes[:-1]):
        p = g.nodes[i + 1]
        if n.op != "conv2d" or p.op not in POOL_OPS or p.inputs != [n.output] or n.output == g.output:
            continue
        if any(n.output in m.inputs for j, m in enumerate(g.nodes) if j != i + 1):
            continue
        pairs[i] = i + 1
    return pairs


def find_conv_pool(g: Graph, keep=None) -> dict[int, int]:
    """The pairs to fuse: conv node index -> index of the pool fused into it. Every candidate
    (`conv_pool_candidates`) unless fusing it makes the arena larger: a fused pair keeps the convolution's input,
    its plane and the pool's whole output live at once, which costs more than the unfused pair's conv output
    when the pool barely shrinks it (a stride-1 pool, a 1- or 2-channel conv) and the conv's input is large.
    Pairs are dropped one at a time, the drop that shrinks the fused arena most first, while a drop shrinks it;
    the result's arena is never larger than the unfused one (if it were, nothing is fused).
    `keep(conv_node, pool_node) -> bool`, when given, drops the candidates it refuses first (e.g. a target that
    fuses only pairs it runs as one kernel call, codegen.fused_kernel)."""
    from .plan import make_plan  # plan does not import fuse

    chosen = conv_pool_candidates(g)
    if keep is not None:
        chosen = {i: j for i, j in chosen.items() if keep(g.nodes[i], g.nodes[j])}
    if not chosen:
        return {}

    def arena(pairs: dict[int, int]) -> int:
        return make_plan(planning_graph(g, pairs)).arena_bytes

    best = arena(chosen)
    while chosen:
        size, drop = min((arena({k: v for k, v in chosen.items() if k != i}), i) for i in chosen)
        if size >= best:
            break
        best = size
        del chosen[drop]
    if chosen and best > arena({}):
        return {}
    return chosen


def plane_size(n) -> int:
    """Floats of one output channel of conv node `n`."""
    return numel(n.out_shape[2:])


def planning_graph(g: Graph, pairs: dict[int, int]) -> Graph:
    """The graph the memory plan sees when the pairs are fused: each fused convolution's output is one channel
    plane, and the pool also 'reads' the convolution's inputs (they stay live while it writes its output)."""
    if not pairs:
        return g
    pg = copy.copy(g)
    pg.buffers = dict(g.buffers)
    pg.nodes = list(g.nodes)
    for i, j in pairs.items():
        conv, pool = g.nodes[i], g.nodes[j]
        pg.buffers[conv.output] = plane_size(conv)
        extra = [b for b in conv.inputs if b not in pool.inputs]
        pg.nodes[j] = copy.copy(pool)
        pg.nodes[j].inputs = list(pool.inputs) + extra
        pg.nodes[j].in_shapes = list(pool.in_shapes) + [conv.in_shapes[conv.inputs.index(b)] for b in extra]
    return pg
