"""Memory planner: no two live buffers overlap (random graphs), in place only where allowed, the chain bound."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from prunec import plan as P
from prunec.graph import INPUT, OUTPUT, Graph, Node


def _align(n):
    return (n + 15) // 16 * 16


def random_graph(seed: int, n_nodes: int) -> Graph:
    """A random DAG of fc-like (out of place) and elementwise (in-place capable) nodes."""
    rng = random.Random(seed)
    in_size = rng.randint(1, 300)
    g = Graph((1, in_size), (1, 1))
    g.buffers[INPUT] = in_size
    avail = [INPUT]
    for i in range(n_nodes):
        kind = rng.choice(["fc", "fc", "clamp", "sigmoid", "add", "softmax"])
        out = f"t{i}"
        if kind == "fc":
            ins = [rng.choice(avail)]
            size = rng.randint(1, 400)
        elif kind == "add":
            a = rng.choice(avail)
            same = [b for b in avail if g.buffers[b] == g.buffers[a]]
            ins = [a, rng.choice(same)]
            size = g.buffers[a]
        else:
            ins = [rng.choice(avail[-3:])]
            size = g.buffers[ins[0]]
        g.buffers[out] = size
        g.nodes.append(Node(f"n{i}", kind, ins, out, [(1, g.buffers[b]) for b in ins], (1, size)))
        avail.append(out)
    last = g.nodes[-1]
    g.buffers[OUTPUT] = g.buffers.pop(last.output)
    last.output = OUTPUT
    g.output_shape = (1, g.buffers[OUTPUT])
    g.validate()
    return g


def brute_force_no_overlap(g: Graph, plan: P.Plan) -> None:
    """Independent of `check`: simulate every step, byte ranges of live buffers must be disjoint, except a
    buffer overwritten in place by the node that reads it for the last time."""
    life = P.lifetimes(g)
    in_place = {(g.nodes[i].output, b) for i, b in plan.in_place.items()}
    for step in range(len(g.nodes)):
        live = [b for b, (f, l) in life.items() if f <= step <= l]
        for i, a in enumerate(live):
            for b in live[i + 1:]:
                if (a, b) in in_place or (b, a) in in_place:
                    continue
                ra = (plan.offsets[a], plan.offsets[a] + 4 * g.buffers[a])
                rb = (plan.offsets[b], plan.offsets[b] + 4 * g.buffers[b])
                assert ra[1] <= rb[0] or rb[1] <= ra[0], f"step {step}: {a} {ra} overlaps {b} {rb}"
    for b, off in plan.offsets.items():
        assert off % 16 == 0 and off + 4 * g.buffers[b] <= plan.arena_bytes


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 30))
def test_random_graphs_never_overlap(seed, n):
    g = random_graph(seed, n)
    plan = P.make_plan(g)
    P.check(plan, g)
    brute_force_no_overlap(g, plan)
    assert plan.arena_bytes >= plan.lower_bound
    # in place only over a same-size input that dies at that elementwise node
    for i, b in plan.in_place.items():
        node = g.nodes[i]
        assert node.op in ("clamp", "sigmoid", "tanh", "softmax", "add") and b in node.inputs
        assert g.buffers[b] == g.buffers[node.output]


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 5000), min_size=2, max_size=25),
       elementwise=st.lists(st.booleans(), min_size=25, max_size=25))
def test_chain_arena_is_at_most_the_largest_consecutive_pair(sizes, elementwise):
    """A chain input -> L1 -> ... -> Ln -> output; some layers elementwise (in place). The arena never needs
    more than the largest input+output pair of one layer (both in the arena)."""
    g = Graph((1, 7), (1, sizes[-1]))
    g.buffers[INPUT] = 7
    prev = INPUT
    for i, s in enumerate(sizes):
        op = "fc"
        if elementwise[i] and prev != INPUT:
            op, s = "clamp", g.buffers[prev]
        out = OUTPUT if i == len(sizes) - 1 else f"t{i}"
        g.buffers[out] = s
        g.nodes.append(Node(f"l{i}", op, [prev], out, [(1, g.buffers[prev])], (1, s)))
        prev = out
    g.output_shape = (1, g.buffers[OUTPUT])
    g.validate()
    plan = P.make_plan(g)
    brute_force_no_overlap(g, plan)
    arena = [b for b in g.arena_buffers()]
    pairs = [_align(4 * g.buffers[n.inputs[0]]) + _align(4 * g.buffers[n.output])
             for n in g.nodes if n.inputs[0] in arena and n.output in arena and n.op == "fc"]
    singles = [_align(4 * g.buffers[b]) for b in arena]
    bound = max(pairs + singles + [16])
    assert plan.arena_bytes <= bound


def test_greedy_counterexample_is_rescued_by_two_ended_layout():
    """Sizes 10, 6, 8, 9 (x16 floats): greedy by size places the 6 above both neighbours (arena 23 units);
    the bottom/top layout needs max(10+6, 6+8, 8+9) = 17 units."""
    g = Graph((1, 1), (1, 1))
    g.buffers[INPUT] = 1
    prev = INPUT
    for i, s in enumerate([160, 96, 128, 144]):
        g.buffers[f"t{i}"] = s
        g.nodes.append(Node(f"l{i}", "fc", [prev], f"t{i}", [(1, g.buffers[prev])], (1, s)))
        prev = f"t{i}"
    g.buffers[OUTPUT] = 1
    g.nodes.append(Node("last", "fc", [prev], OUTPUT, [(1, 144)], (1, 1)))
    slots, _ = P._slots(g, True)
    assert P._greedy(slots) == 23 * 64
    plan = P.make_plan(g)
    assert plan.arena_bytes == 17 * 64 and plan.strategy == "two-ended"


def test_in_place_elementwise_shares_the_slot():
    g = Graph((1, 4), (1, 8))
    g.buffers.update({INPUT: 4, "a": 8, "b": 8, OUTPUT: 8})
    g.nodes = [Node("fc", "fc", [INPUT], "a", [(1, 4)], (1, 8)),
               Node("sig", "sigmoid", ["a"], "b", [(1, 8)], (1, 8)),
               Node("fc2", "fc", ["b"], OUTPUT, [(1, 8)], (1, 8))]
    plan = P.make_plan(g)
    assert plan.offsets["a"] == plan.offsets["b"] and plan.in_place == {1: "a"} and plan.arena_bytes == 32
    assert P.make_plan(g, in_place=False).arena_bytes == 64


def test_check_catches_an_overlap():
    g = random_graph(3, 12)
    plan = P.make_plan(g)
    assert len(plan.slots) >= 2
    a, b = next((a, b) for i, a in enumerate(plan.slots) for b in plan.slots[i + 1:] if a.conflicts(b))
    b.offset = a.offset
    with pytest.raises(P.PlanError):
        P.check(plan)


def test_input_and_output_are_not_in_the_arena():
    g = Graph((1, 1000), (1, 1000))
    g.buffers.update({INPUT: 1000, OUTPUT: 1000})
    g.nodes = [Node("fc", "fc", [INPUT], OUTPUT, [(1, 1000)], (1, 1000))]
    plan = P.make_plan(g)
    assert plan.offsets == {} and plan.arena_bytes == 16


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 25))
def test_reported_lower_bound_is_the_live_bytes_of_the_graph(seed, n):
    """Independent of the slots: at every step, the aligned bytes of the buffers live then (a buffer that a node
    overwrites in place counted once with its output) is a floor no valid layout can go under; the plan's
    reported bound is the largest of them, and the arena is at least that. A buffer overwritten in place is
    an operand of an elementwise node, read for the last time there, and nothing reads it afterwards."""
    g = random_graph(seed, n)
    plan = P.make_plan(g)
    life = P.lifetimes(g)
    merged_out = {g.nodes[i].output: b for i, b in plan.in_place.items()}
    bound = 0
    for step in range(len(g.nodes)):
        live = {b for b, (f, l) in life.items() if f <= step <= l}
        # a chain a -> b (in place) -> c ... shares one slot: count each chain once
        roots = set()
        for b in live:
            while b in merged_out:
                b = merged_out[b]
            roots.add(b)
        bound = max(bound, sum(_align(4 * g.buffers[r]) for r in roots))
    assert plan.lower_bound == bound <= plan.arena_bytes
    for i, b in plan.in_place.items():
        node = g.nodes[i]
        assert node.op in ("clamp", "sigmoid", "tanh", "softmax", "add")
        assert b == node.inputs[0] or (node.op == "add" and b == node.inputs[1])
        assert node.inputs.count(b) == 1  # a + a: the kernel would read b after writing y
        assert all(b not in later.inputs for later in g.nodes[i + 1:])
