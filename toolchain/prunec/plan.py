"""Static memory plan: every intermediate buffer gets a fixed offset in one caller-owned arena.

Lifetimes. Nodes run in graph order 0..n-1. A buffer is live from the step of the node that writes it to the
step of the last node that reads it, inclusive; two buffers conflict when their lifetimes intersect (at a
step where one is read and the other written, both are needed). The caller's input and output are not in
the arena: the first layer reads `input` directly and the layer that produces the result writes `output`.

In place. An elementwise node (clamp, sigmoid, tanh, softmax, add) whose input buffer dies at that node, with
the output's size, writes over it: the two buffers become one slot whose lifetime is the union.
For add either operand may be overwritten (a + b == b + a exactly).

Placement, as TensorFlow Lite Micro's GreedyMemoryPlanner: slots sorted by size, largest first (ties: first
use, then name); each goes at the lowest 16-byte-aligned offset where it overlaps no already placed slot
whose lifetime conflicts with its own. Cost O(n^2) in slots, n being the number of layers: trivial here.

Greedy is not optimal. When at most two slots are ever live at once (a chain, possibly with in-place
elementwise layers), the conflict graph is a set of paths, and placing them alternately at the bottom and
the top of the arena needs exactly max(size(a) + size(b)) over conflicting pairs, which is optimal: the
largest consecutive input + output pair of the chain. The plan keeps whichever layout is smaller, so a chain
never needs more. `check` proves a plan valid: aligned, inside the arena, and no two conflicting slots
overlap in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .graph import IN_PLACE_OPS, Graph

ALIGN = 16


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Slot:
    buffers: list[str]  # buffers sharing this slot (an in-place chain)
    size: int  # bytes, 16-aligned
    first: int  # step of first write
    last: int  # step of last read
    offset: int = -1

    def conflicts(self, other: "Slot") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class Plan:
    arena_bytes: int
    offsets: dict[str, int]  # arena buffer -> byte offset
    slots: list[Slot] = field(default_factory=list)
    in_place: dict[int, str] = field(default_factory=dict)  # node index -> the input buffer it overwrites
    strategy: str = "greedy"
    lower_bound: int = 0  # max over steps of the bytes live at that step

    def offset(self, buffer: str) -> int:
        return self.offsets[buffer]


class PlanError(AssertionError):
    pass


def lifetimes(g: Graph) -> dict[str, tuple[int, int]]:
    """Arena buffer -> (first step, last step)."""
    out: dict[str, list[int]] = {}
    arena = set(g.arena_buffers())
    for i, n in enumerate(g.nodes):
        if n.output in arena:
            out[n.output] = [i, i]
        for b in n.inputs:
            if b in arena:
                out[b][1] = max(out[b][1], i)
    return {b: (f, l) for b, (f, l) in out.items()}


def _slots(g: Graph, in_place: bool) -> tuple[list[Slot], dict[int, str]]:
    life = lifetimes(g)
    slot_of: dict[str, Slot] = {}
    slots: list[Slot] = []
    merged: dict[int, str] = {}
    for i, n in enumerate(g.nodes):
        if n.output not in life:
            continue
        target = None
        if in_place and n.op in IN_PLACE_OPS:
            both = n.op in ("add", "sub") or (n.op == "mul" and n.attrs.get("b_inner") == n.attrs.get("inner"))
            cands = n.inputs if both else n.inputs[:1]  # either operand of a symmetric op (passed first by codegen)
            for b in cands:
                if b in slot_of and life[b][1] == i and g.buffers[b] == g.buffers[n.output] \
                        and n.inputs.count(b) == 1 and b not in merged.values():
                    target = b
                    break
        if target is not None:
            s = slot_of[target]
            s.buffers.append(n.output)
            s.last = max(s.last, life[n.output][1])
            slot_of[n.output] = s
            merged[i] = target
        else:
            s = Slot([n.output], _align(4 * g.buffers[n.output]), *life[n.output])
            slots.append(s)
            slot_of[n.output] = s
    return slots, merged


def _greedy(slots: list[Slot]) -> int:
    placed: list[Slot] = []
    for s in sorted(slots, key=lambda s: (-s.size, s.first, s.buffers[0])):
        busy = sorted((p.offset, p.offset + p.size) for p in placed if p.conflicts(s))
        off = 0
        for lo, hi in busy:
            if off + s.size <= lo:
                break
            off = max(off, _align(hi))
        s.offset = off
        placed.append(s)
    return max((s.offset + s.size for s in slots), default=0)


def _two_ended(slots: list[Slot]) -> int | None:
    """Bottom/top placement when the conflict graph is bipartite with at most two live slots per step."""
    steps: dict[int, list[Slot]] = {}
    for s in slots:
        for t in range(s.first, s.last + 1):
            steps.setdefault(t, []).append(s)
    if any(len(v) > 2 for v in steps.values()):
        return None
    color: dict[int, int] = {}
    order = sorted(range(len(slots)), key=lambda i: (slots[i].first, slots[i].buffers[0]))
    for i in order:  # intervals with clique size <= 2: colour greedily by first use
        used = {color[j] for j in color if slots[j].conflicts(slots[i])}
        free = [c for c in (0, 1) if c not in used]
        if not free:
            return None
        color[i] = free[0]
    arena = max((s.size for s in slots), default=0)
    for i, s in enumerate(slots):
        for j in range(i + 1, len(slots)):
            if s.conflicts(slots[j]):
                arena = max(arena, s.size + slots[j].size)
    for i, s in enumerate(slots):
        s.offset = 0 if color[i] == 0 else arena - s.size
    return arena


def lower_bound(slots: list[Slot]) -> int:
    steps: dict[int, int] = {}
    for s in slots:
        for t in range(s.first, s.last + 1):
            steps[t] = steps.get(t, 0) + s.size
    return max(steps.values(), default=0)


def make_plan(g: Graph, in_place: bool = True) -> Plan:
    slots, merged = _slots(g, in_place)
    candidates = []
    arena = _greedy(slots)
    candidates.append((arena, "greedy", [s.offset for s in slots]))
    arena2 = _two_ended(slots)
    if arena2 is not None:
        candidates.append((arena2, "two-ended", [s.offset for s in slots]))
    arena, strategy, offsets = min(candidates, key=lambda c: c[0])
    for s, off in zip(slots, offsets):
        s.offset = off
    # At least 16 bytes, so that callers can always declare the arena as an array (even with no buffers in it).
    plan = Plan(arena_bytes=max(ALIGN, _align(arena)), offsets={b: s.offset for s in slots for b in s.buffers}, slots=slots,
                in_place=merged, strategy=strategy, lower_bound=lower_bound(slots))
    check(plan, g)
    return plan


def check(plan: Plan, g: Graph | None = None) -> None:
    """Prove the plan: every slot aligned and inside the arena, no two conflicting slots overlap in memory;
    with the graph: every arena buffer placed, lifetimes as the graph says, in-place only where allowed."""
    for s in plan.slots:
        if s.offset < 0 or s.offset % ALIGN or s.offset + s.size > plan.arena_bytes:
            raise PlanError(f"slot {s.buffers} at {s.offset}+{s.size} outside arena {plan.arena_bytes} or unaligned")
    for i, a in enumerate(plan.slots):
        for b in plan.slots[i + 1:]:
            if a.conflicts(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                raise PlanError(f"live buffers overlap: {a.buffers} [{a.offset}, {a.offset + a.size}) steps "
                                f"{a.first}..{a.last} and {b.buffers} [{b.offset}, {b.offset + b.size}) steps {b.first}..{b.last}")
    if g is None:
        return
    life = lifetimes(g)
    if set(life) != set(plan.offsets):
        raise PlanError("the plan does not place exactly the graph's arena buffers")
    for buf, (f, l) in life.items():
        if 4 * g.buffers[buf] > _slot_of(plan, buf).size:
            raise PlanError(f"buffer {buf} does not fit its slot")
    # Buffers with conflicting lifetimes must not overlap, unless one is the in-place output of the other.
    pairs = {(g.nodes[i].output, b) for i, b in plan.in_place.items()}
    bufs = sorted(life)
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            (fa, la), (fb, lb) = life[a], life[b]
            if fa <= lb and fb <= la and (a, b) not in pairs and (b, a) not in pairs:
                oa, ob = plan.offsets[a], plan.offsets[b]
                if oa < ob + 4 * g.buffers[b] and ob < oa + 4 * g.buffers[a]:
                    raise PlanError(f"live buffers {a} and {b} overlap")
    for i, b in plan.in_place.items():
        n = g.nodes[i]
        if n.op not in IN_PLACE_OPS or b not in n.inputs or life[b][1] != i or plan.offsets[b] != plan.offsets[n.output]:
            raise PlanError(f"node {n.name} is planned in place over {b} but may not be")


def _slot_of(plan: Plan, buf: str) -> Slot:
    for s in plan.slots:
        if buf in s.buffers:
            return s
    raise PlanError(f"buffer {buf} has no slot")
