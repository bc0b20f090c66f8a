"""Relative-indexed CSR: the storage format of pruned weight matrices (DESIGN.md).

A layer's weights are viewed as a matrix [rows x cols] (conv: [out_ch x in_ch/groups*kh*kw], i.e. PyTorch's
weight.reshape(out_ch, -1)). Per row, the nonzeros are stored in increasing column order, each as a value
and a b-bit code. The code is gap - 1, where gap = column - previous column (the first entry of a row counts
from column -1), so one code spans gaps 1 .. 2^b. A gap larger than 2^b is bridged by filler entries of value 0
and maximal gap 2^b (code 2^b - 1). row_ptr[r] .. row_ptr[r+1] are row r's entries, fillers included.

Packed index stream (the bytes the C kernels read), any b in 1..16: one LSB-first bit stream, code i in bits
b*i .. b*i+b-1 (bit k of the stream is bit k%8 of byte k/8), (entries*b + 7)/8 bytes. The three widths with
fast kernel paths read as:
  b = 4:  entry i in byte i/2, low nibble for even i, high nibble for odd i
  b = 8:  one byte per entry
  b = 16: two bytes per entry, little-endian
and e.g. b = 6 packs 4 codes in 3 bytes (Deep Compression's fc layers use 5-bit gaps).
Values are float32 today; the value type is open: the encoder keeps the dtype of the matrix it is given (float16,
float64, int8 codebook indices, ...: values, fillers and decode all take it) and the byte counts take `value_bytes`,
so that quantised values and shared weights (Deep Compression) can reuse the index and pointer streams unchanged.

b is chosen per layer by the exact byte count: values + packed indices (fillers included, and with row alignment
the padding each b needs) + row pointers (uint32, rows + 1). The layer is stored dense when that is smaller.

Row alignment (`row_align` A > 1, a target's choice per op): every row is padded to a multiple of A entries with
more fillers of value 0, at columns the row does not use (after its last entry where there is room, else its
highest unused columns), so that a kernel taking entries in groups of A never meets a partial group. The format
and every decoder stay the same: padding fillers are ordinary entries, and they only split gaps, so every code
stays encodable. A row with fewer unused columns than it needs is left as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import PrunecError

INDEX_BITS = tuple(range(1, 17))  # every width the format, the encoder and the C kernels accept
FAST_INDEX_BITS = (4, 8, 16)  # the widths every ISA kernel has its own fast path for
# Index widths the build may choose from, per op, unless the target ([index_bits_by_op]) or the build
# (--index-bits) says otherwise. fc kernels decode a code for every nonzero on every inference, and 4-bit codes
# cost more to decode than they save in bytes (nibble extraction, and fillers every 16 columns): under QEMU, b = 8
# runs 1.2-1.8x fewer instructions than b = 4 on every Arm fc kernel, portable C included, for ~10 % more bytes of
# the few layers where b = 4 is smaller at all (density above ~15 %; docs/FORMAT.md, "Choosing b"). Conv kernels decode a
# channel's taps once per call and reuse them for every output pixel, so there the smallest storage wins.
# Other widths (1..16) are for builds that ask for them (--index-bits 4-16, or a target's table): the smallest
# storage, e.g. 6-bit gaps at LeNet's 8 % density, while kernels without a fast path for b decode it generically.
DEFAULT_INDEX_BITS_BY_OP = {"fc": (8, 16)}
ROW_ALIGN_MAX = 64


def row_align_for(op: str, by_op: dict | None = None) -> int:
    """Entries per row a layer of `op` is padded to a multiple of: `by_op[op]` (a target's
    `[row_align_by_op]`) where given, else 1 (no padding)."""
    return int(by_op[op]) if by_op and op in by_op else 1


def check_row_align(align, where: str) -> int:
    """`align` as an int in 1..ROW_ALIGN_MAX, or a PrunecError naming `where` and the fix."""
    if isinstance(align, bool) or not isinstance(align, int) or not 1 <= align <= ROW_ALIGN_MAX:
        raise PrunecError(f"{where}: row alignment must be a whole number of entries from 1 (none) to {ROW_ALIGN_MAX}, "
                          f"e.g. 8 (got {align!r})")
    return align


def index_bits_for(op: str, by_op: dict | None = None) -> tuple[int, ...]:
    """The index widths an `op` layer may be stored with: `by_op[op]` (a target's table) where given, else
    DEFAULT_INDEX_BITS_BY_OP, else the three widths every kernel has a fast path for (FAST_INDEX_BITS)."""
    if by_op and op in by_op:
        return tuple(by_op[op])
    return DEFAULT_INDEX_BITS_BY_OP.get(op, FAST_INDEX_BITS)


def _widths(item) -> list[int]:
    """One item of a width list: an int, or a string "B" or a range "A-B" (both ends included)."""
    if isinstance(item, bool):
        raise ValueError(item)
    if isinstance(item, str) and "-" in item.strip()[1:]:
        a, b = item.strip().split("-", 1)
        lo, hi = int(a), int(b)
        if lo > hi:
            raise ValueError(item)
        return list(range(lo, hi + 1))
    if isinstance(item, float) and not item.is_integer():
        raise ValueError(item)
    return [int(item)]


def check_index_bits(bits, where: str) -> tuple[int, ...]:
    """`bits` (widths, or strings "B" / ranges "A-B") as a sorted tuple of allowed widths, or a PrunecError
    naming `where` and the fix."""
    try:
        if isinstance(bits, (str, bytes)):
            raise TypeError(bits)
        out = tuple(sorted({w for b in bits for w in _widths(b)}))
    except (TypeError, ValueError):
        out = ()
    if not out or any(b not in INDEX_BITS for b in out):
        raise PrunecError(f"{where}: index widths must be a non-empty list of whole numbers from {INDEX_BITS[0]} "
                          f"to {INDEX_BITS[-1]} bits (ranges like 4-16 allowed), e.g. 4,8,16 (got {bits!r})")
    return out


PTR_BYTES = 4


@dataclass
class RCSR:
    rows: int
    cols: int
    index_bits: int
    values: np.ndarray  # [n] of the matrix's dtype (float32 from the frontend), fillers are 0
    codes: np.ndarray  # uint16 [n], gap - 1
    row_ptr: np.ndarray  # uint32 [rows + 1]
    nonzero: int
    fillers: int

    @property
    def entries(self) -> int:
        return int(self.values.shape[0])

    def packed_index(self) -> bytes:
        return pack_codes(self.codes, self.index_bits)

    def bytes(self, value_bytes: int = 4) -> dict[str, int]:
        return layer_bytes(self.entries, self.rows, self.index_bits, value_bytes)


BSELL_ROWS = 16  # rows per slice of the blocked sliced layout (prunec_types.h PRUNEC_BSELL_ROWS)
BSELL_COLS = 32  # columns per block (PRUNEC_BSELL_COLS): one two-register permute reaches them
BSELL_MAX_ROWS = 65536  # rows are numbered by uint16 in `perm`


@dataclass
class _Slices:
    """What the two sliced layouts share: rows in slices of 16 lanes (`perm`), per-slice step counts (`steps`), and
    16 slots per step, each an index byte and a value."""

    rows: int
    cols: int
    perm: np.ndarray  # uint16 [slices * 16]: the matrix row each lane holds (most entries first); pad 0
    steps: np.ndarray  # step counts (the layout says of what)
    index: np.ndarray  # uint8 [16 * sum(steps)]
    values: np.ndarray  # [16 * sum(steps)] of the matrix's dtype, fillers 0
    nonzero: int

    @property
    def slots(self) -> int:
        return int(self.values.shape[0])

    @property
    def fillers(self) -> int:
        return self.slots - self.nonzero

    def bytes(self, value_bytes: int = 4) -> dict[str, int]:
        """Values and one index byte per slot; as the layer's "pointers" (the per-slice metadata) the `steps` bytes
        and two bytes of `perm` per lane."""
        return {"values": self.slots * value_bytes, "index": self.slots,
                "pointers": self.steps.nbytes + 2 * self.perm.size}


@dataclass
class BSELL(_Slices):
    """The blocked sliced layout of a sparse fc matrix (docs/FORMAT.md "Blocked fc layers"; prunec_bsell_f32): steps
    uint8 [slices * blocks], slice-major; index: the column offset in the block, fillers 0."""

    def to_dense(self) -> np.ndarray:
        """The matrix it stores (tests, and a check of the encoder)."""
        out = np.zeros((self.rows, self.cols), dtype=self.values.dtype)
        blocks = -(-self.cols // BSELL_COLS)
        pos = 0
        for i, k in enumerate(self.steps.astype(np.int64)):
            s, b = divmod(i, blocks)
            for j in range(int(k)):
                for lane in range(BSELL_ROWS):
                    v = self.values[pos]
                    if v != 0:
                        out[int(self.perm[s * BSELL_ROWS + lane]), b * BSELL_COLS + int(self.index[pos])] = v
                    pos += 1
        return out


BSELL_SWAP_ROUNDS = 8  # passes of bsell_row_order's pairwise row swaps
BSELL_SWAP_WINDOW = 32  # each slice is paired with the next this many (by nonzero count, the likeliest partners)


def _block_counts(w: np.ndarray, block_cols: int = BSELL_COLS) -> np.ndarray:
    """int32 [rows, blocks]: each row's nonzeros in each block of `block_cols` columns."""
    rows, cols = w.shape
    blocks = -(-cols // block_cols)
    nz = np.zeros((rows, blocks * block_cols), dtype=np.int32)
    nz[:, :cols] = w != 0
    return nz.reshape(rows, blocks, block_cols).sum(axis=2, dtype=np.int32)


def bsell_row_order(w: np.ndarray, rounds: int = BSELL_SWAP_ROUNDS, slice_rows: int = BSELL_ROWS,
                    block_cols: int = BSELL_COLS) -> np.ndarray:
    """The rows in the order the layout stores them, `slice_rows` (16) to a slice. A slice pays, in every block of
    `block_cols` (32) columns, for the most nonzeros any of its rows has there, so rows that fill the same blocks
    belong together: first by nonzero count, most first (ties: lower row first), then improved by swapping rows
    between two slices wherever that lowers the pair's steps, the best swap of each pair of slices (a slice and the
    next BSELL_SWAP_WINDOW), for up to `rounds` passes (LeNet-300-100 fc1: 53,968 slots in row order, 43,120 by
    count, 38,112 after the swaps; LeNet-5 fc1 61,648 -> 56,384). Deterministic; the last, partial slice keeps its
    rows. The windowed layout (encode_wsell) orders its 4-row slices by the same rule with 16-column blocks."""
    order = np.argsort(-np.count_nonzero(w, axis=1), kind="stable")
    rows = order.size
    slices = rows // slice_rows  # full slices only: the last, partial one keeps its rows (the fewest nonzeros)
    if slices < 2 or rounds <= 0:
        return order
    cnt = _block_counts(w, block_cols)
    grp = order[:slices * slice_rows].reshape(slices, slice_rows).copy()

    def without(c):  # [16, blocks]: the slice's per-block maximum with row i left out
        top = c.max(axis=0)
        srt = np.sort(c, axis=0)
        second = srt[-2]
        alone = (c == top) & ((c == top).sum(axis=0) == 1)  # row i holds the maximum alone
        return np.where(alone, second, top)

    for _ in range(rounds):
        changed = False
        for a in range(slices):
            for b in range(a + 1, min(slices, a + 1 + BSELL_SWAP_WINDOW)):
                ca, cb = cnt[grp[a]], cnt[grp[b]]
                now = int(ca.max(axis=0).sum() + cb.max(axis=0).sum())
                wa, wb = without(ca), without(cb)
                # slice a without row i plus row j of b, and b without j plus i: [16 (i), 16 (j)]
                na = np.maximum(wa[:, None, :], cb[None, :, :]).sum(axis=2)
                nb = np.maximum(wb[None, :, :], ca[:, None, :]).sum(axis=2)
                gain = now - (na + nb)
                i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
                if gain[i, j] > 0:
                    grp[a, i], grp[b, j] = grp[b, j], grp[a, i]
                    changed = True
        if not changed:
            break
    order[:slices * slice_rows] = grp.reshape(-1)
    return order


def _bsell_plan(w: np.ndarray):
    """(rows_idx, cols_idx, steps [slices, blocks], rank of each nonzero among its row's in its block) of `w` as
    stored (its rows already in the layout's order)."""
    rows, cols = w.shape
    slices, blocks = -(-rows // BSELL_ROWS), -(-cols // BSELL_COLS)
    r, c = np.nonzero(w)  # row-major: rows ascending, columns ascending within a row
    key = r.astype(np.int64) * blocks + c // BSELL_COLS  # (row, block), ascending in this order
    counts = np.bincount(key, minlength=rows * blocks).reshape(rows, blocks)
    first = np.searchsorted(key, key, side="left")
    rank = np.arange(key.size) - first
    pad = slices * BSELL_ROWS - rows
    steps = np.pad(counts, ((0, pad), (0, 0))).reshape(slices, BSELL_ROWS, blocks).max(axis=1)
    return r, c, steps, rank


def bsell_slots(w: np.ndarray) -> int:
    """Slots of `w` in the blocked sliced layout, without building it."""
    w = _as_matrix(w)
    return int(_bsell_plan(w[bsell_row_order(w)])[2].sum()) * BSELL_ROWS


def encode_bsell(w: np.ndarray) -> BSELL:
    """`w` [rows, cols] in the blocked sliced layout (BSELL)."""
    w = _as_matrix(w)
    rows, cols = w.shape
    if rows > BSELL_MAX_ROWS:
        raise ValueError(f"blocked layout: {rows} rows, at most {BSELL_MAX_ROWS} (uint16 row numbers)")
    order = bsell_row_order(w)
    ws = w[order]
    blocks = -(-cols // BSELL_COLS)
    r, c, steps, rank = _bsell_plan(ws)
    if steps.size and steps.max() > 255:  # cannot happen (a block has 32 columns); the uint8 below relies on it
        raise ValueError("blocked layout: more than 255 steps in a block")
    flat = steps.reshape(-1).astype(np.int64)
    off = np.zeros(flat.size, dtype=np.int64)
    off[1:] = np.cumsum(flat)[:-1] * BSELL_ROWS  # first slot of each (slice, block)
    n = int(flat.sum()) * BSELL_ROWS
    index = np.zeros(n, dtype=np.uint8)
    values = np.zeros(n, dtype=w.dtype)
    slot = off[(r // BSELL_ROWS) * blocks + c // BSELL_COLS] + rank * BSELL_ROWS + r % BSELL_ROWS
    index[slot] = (c % BSELL_COLS).astype(np.uint8)
    values[slot] = ws[r, c]
    perm = np.zeros(-(-rows // BSELL_ROWS) * BSELL_ROWS, dtype=np.uint16)
    perm[:rows] = order
    return BSELL(rows, cols, perm, flat.astype(np.uint8), index, values, int(r.size))


RSELL_ROWS = 16  # rows per slice of the relative-indexed sliced layout (prunec_types.h PRUNEC_RSELL_ROWS)
RSELL_BITS = 8  # one code byte per slot, the gap minus 1 as in 8-bit relative-indexed CSR


@dataclass
class RSELL(_Slices):
    """The relative-indexed sliced layout of a sparse fc matrix (docs/FORMAT.md "Sliced fc layers"; prunec_rsell_f32):
    steps uint32 [slices], the entries per lane of each slice; index: the column gap minus 1 from the lane's previous
    entry."""

    def columns(self) -> np.ndarray:
        """int64 [16 * sum(steps)]: the column of each slot (what a kernel computes from the codes)."""
        out = np.zeros(self.slots, dtype=np.int64)
        pos = 0
        for k in self.steps.astype(np.int64):
            n = int(k) * RSELL_ROWS
            out[pos:pos + n] = np.cumsum(self.index[pos:pos + n].reshape(-1, RSELL_ROWS).astype(np.int64) + 1,
                                         axis=0).reshape(-1) - 1
            pos += n
        return out

    def to_dense(self) -> np.ndarray:
        """The matrix it stores (tests, and a check of the encoder)."""
        out = np.zeros((self.rows, self.cols), dtype=self.values.dtype)
        cols = self.columns()
        lane_row = np.repeat(np.arange(self.steps.size), self.steps.astype(np.int64) * RSELL_ROWS)
        lane = np.concatenate([np.tile(np.arange(RSELL_ROWS), int(k)) for k in self.steps] or [np.zeros(0, int)])
        rows = self.perm.astype(np.int64)[lane_row * RSELL_ROWS + lane] if self.slots else np.zeros(0, np.int64)
        nz = self.values != 0
        out[rows[nz], cols[nz]] = self.values[nz]
        return out


def encode_rsell(w: np.ndarray) -> RSELL:
    """`w` [rows, cols] in the relative-indexed sliced layout (RSELL): each row's entries as in 8-bit relative-indexed
    CSR (its nonzeros, and a filler where a gap exceeds 256), the rows by entry count (most first, ties: lower row
    first) in slices of 16, each lane padded to the slice's fullest with fillers at the lowest columns the row has no
    entry in (its first k columns hold at least k - entries of them, so every column stays below cols and merging
    them in only shortens gaps)."""
    w = _as_matrix(w)
    rows, cols = w.shape
    if rows > BSELL_MAX_ROWS:
        raise ValueError(f"sliced layout: {rows} rows, at most {BSELL_MAX_ROWS} (uint16 row numbers)")
    r8 = encode_rcsr(w, RSELL_BITS)
    rp = r8.row_ptr.astype(np.int64)
    lens = np.diff(rp)
    cum = np.cumsum(r8.codes.astype(np.int64) + 1)
    starts = np.concatenate([[0], cum])[rp[:-1]]  # running column sum before each row
    colabs = cum - np.repeat(starts, lens) - 1 if cum.size else cum  # the column of every entry
    order = np.argsort(-lens, kind="stable")
    slices = -(-rows // RSELL_ROWS)
    lane_len = np.zeros(slices * RSELL_ROWS, dtype=np.int64)
    lane_len[:rows] = lens[order]
    steps = lane_len.reshape(slices, RSELL_ROWS).max(axis=1) if slices else np.zeros(0, np.int64)
    n = int(steps.sum()) * RSELL_ROWS
    index = np.zeros(n, dtype=np.uint8)
    values = np.zeros(n, dtype=w.dtype)
    off = 0
    for s in range(slices):
        k = int(steps[s])
        for lane in range(RSELL_ROWS):
            i = s * RSELL_ROWS + lane
            if i >= rows:  # past the last row: columns 0 .. k-1 (codes 0), weights 0
                continue
            r = int(order[i])
            c = colabs[rp[r]:rp[r + 1]]
            v = r8.values[rp[r]:rp[r + 1]]
            p = k - c.size
            if p:
                free = np.setdiff1d(np.arange(k, dtype=np.int64), c, assume_unique=True)[:p]
                c = np.concatenate([c, free])
                v = np.concatenate([v, np.zeros(p, dtype=w.dtype)])
                at = np.argsort(c, kind="stable")
                c, v = c[at], v[at]
            codes = np.diff(c, prepend=-1) - 1
            index[off + lane:off + lane + k * RSELL_ROWS:RSELL_ROWS] = codes.astype(np.uint8)
            values[off + lane:off + lane + k * RSELL_ROWS:RSELL_ROWS] = v
        off += k * RSELL_ROWS
    perm = np.zeros(slices * RSELL_ROWS, dtype=np.uint16)
    perm[:rows] = order
    return RSELL(rows, cols, perm, steps.astype(np.uint32), index, values, r8.nonzero)


WSELL_ROWS = 4  # rows per slice of the windowed sliced layout (prunec_types.h PRUNEC_WSELL_ROWS): one NEON register
WSELL_TABLE_BYTES = 64  # a window is what one four-register table lookup (AArch64 TBL) reaches: 64 bytes of x
WSELL_SWAP_ROUNDS = 2  # passes of the row swaps (bsell_row_order) for its slices: most of the gain, less time


def wsell_cols(value_bytes: int = 4) -> int:
    """Columns per window of the windowed sliced layout: 64 bytes of x, 16 fp32 inputs (PRUNEC_WSELL_COLS)."""
    return WSELL_TABLE_BYTES // value_bytes


@dataclass
class WSELL(_Slices):
    """The windowed sliced layout of a sparse fc matrix (docs/FORMAT.md "Windowed fc layers"; prunec_wsell_f32): the
    rows in slices of 4 lanes (`perm`: uint16 [slices * 4], pad 0), each slice a run of `steps` (uint32 [slices]);
    a step reads a window of wsell_cols consecutive inputs and gives each lane one of them and one weight (`values`
    [4 * sum(steps)], fillers 0). Stored in the form the AArch64 kernel consumes: `index` (uint8 [value_bytes * 4 *
    sum(steps)]) holds per slot the table bytes value_bytes*o .. value_bytes*o + value_bytes-1 of its input at offset
    o in the window, and the windows move in bytes of x."""

    start: np.ndarray = None  # uint32 [slices]: the first column of each slice's first window (0 without steps)
    advance: np.ndarray = None  # uint32 [sum(steps)]: bytes of x to the next window of the slice (0 after its last)
    value_bytes: int = 4

    def bytes(self, value_bytes: int = 4) -> dict[str, int]:
        """Values and value_bytes table bytes per slot; as the layer's "pointers" the per-slice `steps`, `start` and
        `perm` and the per-step `advance`."""
        return {"values": self.slots * value_bytes, "index": self.index.size,
                "pointers": self.steps.nbytes + self.start.nbytes + 2 * self.perm.size + self.advance.nbytes}

    def columns(self) -> np.ndarray:
        """int64 [slots]: the column of each slot (what a kernel reads), from start, advance and the offsets."""
        out = np.zeros(self.slots, dtype=np.int64)
        off = (self.index[::self.value_bytes].astype(np.int64) // self.value_bytes) if self.slots else out
        t = 0
        for s, k in enumerate(self.steps.astype(np.int64)):
            base = int(self.start[s])
            for _ in range(int(k)):
                out[WSELL_ROWS * t:WSELL_ROWS * (t + 1)] = base + off[WSELL_ROWS * t:WSELL_ROWS * (t + 1)]
                base += int(self.advance[t]) // self.value_bytes
                t += 1
        return out

    def to_dense(self) -> np.ndarray:
        """The matrix it stores (tests, and a check of the encoder)."""
        out = np.zeros((self.rows, self.cols), dtype=self.values.dtype)
        cols = self.columns()
        slice_of = np.repeat(np.arange(self.steps.size), self.steps.astype(np.int64) * WSELL_ROWS)
        lane = np.tile(np.arange(WSELL_ROWS), int(self.steps.sum()))
        rows = self.perm.astype(np.int64)[slice_of * WSELL_ROWS + lane] if self.slots else np.zeros(0, np.int64)
        nz = self.values != 0
        out[rows[nz], cols[nz]] = self.values[nz]
        return out


def wsell_min_steps(w: np.ndarray) -> int:
    """A lower bound on the steps of `w` in the windowed sliced layout, without laying it out: a slice takes at least
    as many steps as its fullest row has nonzeros, and rows grouped by count (4 to a slice, most first) give the
    smallest such sum of any grouping."""
    n = np.sort(np.count_nonzero(_as_matrix(w), axis=1))[::-1]
    return int(n[::WSELL_ROWS].sum())


def encode_wsell(w: np.ndarray, value_bytes: int = 4, rounds: int = WSELL_SWAP_ROUNDS) -> WSELL:
    """`w` [rows, cols] (cols >= the window, wsell_cols) in the windowed sliced layout (WSELL). Rows ordered as
    bsell_row_order does it for 4-row slices and 16-column blocks; then per slice, greedily: the next window starts
    at the lowest column any lane still has a nonzero in (moved left to cols - window where it would reach past the
    last input), and every lane whose next nonzero lies in the window takes it; the other lanes hold a filler
    (offset 0, weight 0). Windows of a slice only move right, so `advance` is never negative."""
    w = _as_matrix(w)
    rows, cols = w.shape
    win = wsell_cols(value_bytes)
    if rows > BSELL_MAX_ROWS:
        raise ValueError(f"windowed layout: {rows} rows, at most {BSELL_MAX_ROWS} (uint16 row numbers)")
    if cols < win:
        raise ValueError(f"windowed layout: {cols} columns, at least {win} (one window of x)")
    order = bsell_row_order(w, rounds=rounds, slice_rows=WSELL_ROWS, block_cols=win)
    slices = -(-rows // WSELL_ROWS)
    r_idx, c_idx = np.nonzero(w)
    row_start = np.searchsorted(r_idx, np.arange(rows + 1))
    steps = np.zeros(slices, dtype=np.uint32)
    start = np.zeros(slices, dtype=np.uint32)
    bases: list[int] = []
    offs: list[list[int]] = []
    vals: list[list] = []
    for s in range(slices):
        lanes = [c_idx[row_start[r]:row_start[r + 1]].tolist() for r in order[s * WSELL_ROWS:(s + 1) * WSELL_ROWS]]
        lane_rows = order[s * WSELL_ROWS:(s + 1) * WSELL_ROWS].tolist()
        ptr = [0] * len(lanes)
        first = len(bases)
        while True:
            pending = [ln[p] for ln, p in zip(lanes, ptr) if p < len(ln)]
            if not pending:
                break
            base = min(min(pending), cols - win)
            o, v = [0] * WSELL_ROWS, [0] * WSELL_ROWS
            for i, ln in enumerate(lanes):
                if ptr[i] < len(ln) and ln[ptr[i]] < base + win:
                    o[i] = ln[ptr[i]] - base
                    v[i] = w[lane_rows[i], ln[ptr[i]]]
                    ptr[i] += 1
            bases.append(base)
            offs.append(o)
            vals.append(v)
        steps[s] = len(bases) - first
        start[s] = bases[first] if steps[s] else 0
    n = len(bases)
    b = np.asarray(bases, dtype=np.int64)
    advance = np.zeros(n, dtype=np.int64)
    if n > 1:
        advance[:-1] = (b[1:] - b[:-1]) * value_bytes
    ends = np.cumsum(steps.astype(np.int64)) - 1
    advance[ends[steps > 0]] = 0  # a slice's last step: the next slice starts from its own `start`
    o = np.asarray(offs, dtype=np.int64).reshape(-1)
    index = (o[:, None] * value_bytes + np.arange(value_bytes)[None, :]).astype(np.uint8).reshape(-1)
    values = np.asarray(vals, dtype=w.dtype).reshape(-1) if n else np.zeros(0, dtype=w.dtype)
    perm = np.zeros(slices * WSELL_ROWS, dtype=np.uint16)
    perm[:rows] = order
    return WSELL(rows, cols, perm, steps, index, values, int(r_idx.size), start=start, advance=advance.astype(np.uint32),
                 value_bytes=value_bytes)


ACSR_GROUP = 4  # entries per row of absolute-indexed CSR are a multiple of this (prunec_types.h PRUNEC_ACSR_GROUP)
ACSR_COLUMN_BYTES = 4  # each entry's column is a uint32


@dataclass
class ACSR:
    """Absolute-indexed CSR of a sparse fc matrix (docs/FORMAT.md "Absolute-indexed fc layers"; prunec_acsr_f32): row r
    owns entries row_ptr[r] .. row_ptr[r+1]-1, each with its column (uint32) and value; every row's count is a
    multiple of ACSR_GROUP, a row's nonzeros (columns ascending) followed by fillers (value 0, the column of the row's
    last nonzero)."""

    rows: int
    cols: int
    values: np.ndarray  # [entries] of the matrix's dtype, fillers 0
    columns: np.ndarray  # uint32 [entries]
    row_ptr: np.ndarray  # uint32 [rows + 1]
    nonzero: int

    @property
    def entries(self) -> int:
        return int(self.values.shape[0])

    @property
    def fillers(self) -> int:
        return self.entries - self.nonzero

    def bytes(self, value_bytes: int = 4) -> dict[str, int]:
        return {"values": self.entries * value_bytes, "index": self.entries * ACSR_COLUMN_BYTES,
                "pointers": (self.rows + 1) * PTR_BYTES}

    def to_dense(self) -> np.ndarray:
        """The matrix it stores (tests, and a check of the encoder)."""
        out = np.zeros((self.rows, self.cols), dtype=self.values.dtype)
        rows = np.repeat(np.arange(self.rows), np.diff(self.row_ptr.astype(np.int64)))
        nz = self.values != 0
        out[rows[nz], self.columns.astype(np.int64)[nz]] = self.values[nz]
        return out


def encode_acsr(w: np.ndarray) -> ACSR:
    """`w` (rows x cols) in absolute-indexed CSR (ACSR)."""
    w = _as_matrix(w)
    rows, cols = w.shape
    if cols > 1 << 32:
        raise ValueError(f"absolute-indexed CSR numbers columns by uint32: {cols} columns do not fit")
    r_idx, c_idx = np.nonzero(w)  # row-major: rows ascending, columns ascending within a row
    counts = np.bincount(r_idx, minlength=rows).astype(np.int64)
    padded = counts + (-counts) % ACSR_GROUP
    row_ptr = np.zeros(rows + 1, dtype=np.int64)
    row_ptr[1:] = np.cumsum(padded)
    n = int(row_ptr[-1])
    values = np.zeros(n, dtype=w.dtype)
    columns = np.zeros(n, dtype=np.uint32)
    first_nz = np.zeros(rows + 1, dtype=np.int64)
    first_nz[1:] = np.cumsum(counts)
    pos = row_ptr[r_idx] + (np.arange(r_idx.size) - first_nz[r_idx])
    values[pos] = w[r_idx, c_idx]
    columns[pos] = c_idx
    fill_rows = np.nonzero(padded > counts)[0]
    if fill_rows.size:  # fillers: the column of the row's last nonzero, an input the row reads anyway
        k = (padded - counts)[fill_rows]
        at = np.repeat(row_ptr[fill_rows] + counts[fill_rows], k) + \
            (np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k))
        columns[at] = np.repeat(columns[row_ptr[fill_rows] + counts[fill_rows] - 1], k)
    return ACSR(rows, cols, values, columns, row_ptr.astype(np.uint32), int(r_idx.size))


@dataclass
class Encoding:
    """How one layer's weight matrix is stored: 'rcsr' (with `rcsr`), 'dense' (with `dense`), 'bsell' (with
    `bsell`: the blocked sliced layout of fc layers on AVX-512 x86, docs/FORMAT.md "Blocked fc layers"), 'rsell'
    (with `rsell`: the relative-indexed sliced layout, docs/FORMAT.md "Sliced fc layers") or 'wsell' (with `wsell`:
    the windowed sliced layout of fc layers on AArch64, docs/FORMAT.md "Windowed fc layers") or 'acsr' (with `acsr`:
    absolute-indexed CSR of fc layers, docs/FORMAT.md "Absolute-indexed fc layers")."""

    format: str
    rows: int
    cols: int
    nonzero: int
    rcsr: RCSR | None = None
    dense: np.ndarray | None = None  # [rows, cols], the matrix's dtype
    bsell: BSELL | None = None
    rsell: RSELL | None = None
    wsell: WSELL | None = None
    acsr: ACSR | None = None
    value_bytes: int = 4
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def sliced(self) -> BSELL | RSELL | None:
        """The layout of a 'bsell' or 'rsell' layer (None for the others)."""
        return self.bsell if self.bsell is not None else self.rsell

    @property
    def index_bits(self) -> int:
        if self.sliced is not None:
            return 8  # one byte per slot (bsell: a column offset 0..31 in its block; rsell: a gap minus 1)
        if self.wsell is not None:
            return 8 * self.wsell.value_bytes  # the table bytes of the slot's input in its window
        if self.acsr is not None:
            return 8 * ACSR_COLUMN_BYTES  # each entry's column
        return self.rcsr.index_bits if self.rcsr is not None else 0

    @property
    def fillers(self) -> int:
        if self.sliced is not None:
            return self.sliced.fillers
        if self.wsell is not None:
            return self.wsell.fillers
        if self.acsr is not None:
            return self.acsr.fillers
        return self.rcsr.fillers if self.rcsr is not None else 0

    row_align: int = 1  # rows padded to a multiple of this many entries (1: not padded)
    # stored column by column (an fc layer whose kernel skips zero inputs, docs/FORMAT.md "Column-major fc
    # layers"): `rcsr` is then the relative-indexed CSR of W^T (rcsr.rows = the layer's inputs); rows/cols stay W's
    columns: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def stored(encodings: dict[str, Encoding]) -> list[Encoding]:
    """The distinct encodings of a build's layers: a layer that shares another's weight (graph.shared_weights) has
    that layer's Encoding object, and its matrix is stored (and counted) once."""
    return list({id(e): e for e in encodings.values()}.values())


def layer_bytes(entries: int, rows: int, bits: int, value_bytes: int = 4) -> dict[str, int]:
    return {
        "values": entries * value_bytes,
        "index": (entries * bits + 7) // 8,
        "pointers": (rows + 1) * PTR_BYTES,
    }


def _as_matrix(w: np.ndarray) -> np.ndarray:
    """`w` as a 2-D matrix. A numeric (float or integer) array keeps its dtype, so the value type stays the
    caller's; anything else (lists, booleans) becomes float32, the type of today's kernels."""
    w = np.asarray(w)
    if w.dtype.kind not in "fiu":
        w = w.astype(np.float32)
    if w.ndim == 1:
        w = w.reshape(1, -1)
    elif w.ndim > 2:
        w = w.reshape(w.shape[0], -1)
    return w


def _gaps(w: np.ndarray):
    rows_idx, cols_idx = np.nonzero(w)  # row-major order: rows ascending, columns ascending within a row
    prev = np.empty_like(cols_idx)
    if cols_idx.size:
        prev[1:] = cols_idx[:-1]
        first = np.ones(cols_idx.size, dtype=bool)
        first[1:] = rows_idx[1:] != rows_idx[:-1]
        prev[first] = -1
    gaps = (cols_idx - prev).astype(np.int64)
    return rows_idx, cols_idx, gaps


def count_entries(w: np.ndarray, bits: int, row_align: int = 1) -> tuple[int, int]:
    """(entries, fillers) of `w` encoded with `bits`-bit gaps and then rows padded to a multiple of `row_align`
    entries (pad_rows), without building the encoding; fillers count the gap fillers and the padding."""
    w = _as_matrix(w)
    return _count_from_gaps(w.shape, _gaps(w), bits, row_align)


def _count_from_gaps(shape, gaps_of_w, bits: int, row_align: int) -> tuple[int, int]:
    """count_entries from a matrix's _gaps (computed once when several widths are costed)."""
    rows_idx, _, gaps = gaps_of_w
    per_nz = ((gaps - 1) >> bits) + 1
    entries = int(per_nz.sum())
    fillers = entries - int(gaps.size)
    if row_align > 1 and shape[0]:
        # A row of n entries (fillers included, each on its own column) gets (-n) % A padding entries when it
        # has that many unused columns (cols - n), else none: the rule of pad_rows.
        n = np.bincount(rows_idx, weights=per_nz, minlength=shape[0]).astype(np.int64)
        need = (-n) % row_align
        pad = int(np.where(shape[1] - n >= need, need, 0).sum())
        entries += pad
        fillers += pad
    return entries, fillers


def encode_rcsr(w: np.ndarray, bits: int) -> RCSR:
    if bits not in INDEX_BITS:
        raise ValueError(f"index_bits must be one of {INDEX_BITS}, got {bits}")
    w = _as_matrix(w)
    rows, cols = w.shape
    rows_idx, cols_idx, gaps = _gaps(w)
    span = 1 << bits
    nfill = (gaps - 1) >> bits  # fillers before each nonzero
    per_nz = nfill + 1
    n = int(per_nz.sum())
    codes = np.full(n, span - 1, dtype=np.uint16)
    values = np.zeros(n, dtype=w.dtype)
    slot = np.cumsum(per_nz) - 1  # where each nonzero lands, after its fillers
    codes[slot] = (gaps - nfill * span - 1).astype(np.uint16)
    values[slot] = w[rows_idx, cols_idx]
    counts = np.bincount(rows_idx, weights=per_nz, minlength=rows).astype(np.int64)
    row_ptr = np.zeros(rows + 1, dtype=np.uint32)
    row_ptr[1:] = np.cumsum(counts)
    return RCSR(rows, cols, bits, values, codes, row_ptr, int(gaps.size), int(nfill.sum()))


def pad_rows(r: RCSR, align: int) -> RCSR:
    """`r` with every row padded to a multiple of `align` entries by zero-valued fillers (module docstring)."""
    if align <= 1 or r.rows == 0:
        return r
    counts = np.diff(r.row_ptr.astype(np.int64))
    need = (-counts) % align
    if not need.any():
        return r
    codes_out, vals_out = [], []
    ptr = np.zeros(r.rows + 1, dtype=np.uint32)
    added = 0
    for row in range(r.rows):
        lo, hi = int(r.row_ptr[row]), int(r.row_ptr[row + 1])
        c, v, p = r.codes[lo:hi], r.values[lo:hi], int(need[row])
        if p:
            cols = np.cumsum(c.astype(np.int64) + 1) - 1
            last = int(cols[-1]) if cols.size else -1
            if r.cols - 1 - last >= p:  # room after the last entry: the row's other codes stay as they are
                extra = np.arange(last + 1, last + 1 + p)
            else:
                free = np.setdiff1d(np.arange(r.cols), cols, assume_unique=True)
                extra = free[-p:] if free.size >= p else None
            if extra is not None:
                allc = np.concatenate([cols, extra])
                order = np.argsort(allc, kind="stable")
                allc = allc[order]
                v = np.concatenate([v, np.zeros(p, dtype=r.values.dtype)])[order]
                c = (np.diff(allc, prepend=-1) - 1).astype(np.uint16)
                added += p
        codes_out.append(c)
        vals_out.append(v)
        ptr[row + 1] = ptr[row] + c.size
    return RCSR(r.rows, r.cols, r.index_bits, np.concatenate(vals_out).astype(r.values.dtype, copy=False),
                np.concatenate(codes_out).astype(np.uint16), ptr, r.nonzero, r.fillers + added)


def decode_rcsr(r: RCSR) -> np.ndarray:
    """The dense matrix an encoding stands for (the round trip used by tests). Strict, as a kernel's reading is:
    a row_ptr that does not run from 0 up to the entry count, or a code that does not fit `index_bits` bits (the
    packed stream would keep only its low bits), is a ValueError, not a matrix."""
    ptr = r.row_ptr.astype(np.int64)
    n = int(r.values.shape[0])
    if ptr.shape != (r.rows + 1,) or ptr[0] != 0 or ptr[-1] != n or np.any(np.diff(ptr) < 0) \
            or r.codes.shape[0] != n:
        raise ValueError(f"row_ptr must rise from 0 to the {n} entries ({r.rows + 1} values), with one code per entry")
    if n and int(r.codes.max()) >= 1 << r.index_bits:
        raise ValueError(f"code {int(r.codes.max())} does not fit {r.index_bits} bits")
    out = np.zeros((r.rows, r.cols), dtype=r.values.dtype)
    codes = r.codes.astype(np.int64) + 1
    for row in range(r.rows):
        lo, hi = int(r.row_ptr[row]), int(r.row_ptr[row + 1])
        cols = np.cumsum(codes[lo:hi]) - 1
        if hi > lo and cols[-1] >= r.cols:
            raise ValueError(f"row {row}: column {cols[-1]} beyond {r.cols}")
        vals = r.values[lo:hi]
        keep = vals != 0
        out[row, cols[keep]] = vals[keep]
    return out


_CHUNK = 1 << 20  # entries per step of the generic packer (a multiple of 8: every step starts on a byte)


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """The packed index stream of `codes` (module docstring): (n*bits + 7)//8 bytes, LSB-first."""
    if bits not in INDEX_BITS:
        raise ValueError(f"unsupported index_bits {bits}")
    codes = np.asarray(codes)
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= 1 << bits):
        raise ValueError(f"codes must be in 0..{(1 << bits) - 1} for {bits}-bit indices "
                         f"(got {int(codes.min())}..{int(codes.max())}): a wider code would be packed as its low bits")
    codes = codes.astype(np.uint16).ravel()
    if bits == 8:
        return codes.astype(np.uint8).tobytes()
    if bits == 16:
        return codes.astype("<u2").tobytes()
    if bits == 4:
        c = codes.astype(np.uint8)
        if c.size % 2:
            c = np.append(c, np.uint8(0))
        return (c[0::2] | (c[1::2] << 4)).astype(np.uint8).tobytes()
    shifts = np.arange(bits, dtype=np.uint16)
    out = []
    for lo in range(0, codes.size, _CHUNK):
        c = codes[lo:lo + _CHUNK]
        stream = ((c[:, None] >> shifts) & 1).astype(np.uint8).ravel()
        out.append(np.packbits(stream, bitorder="little").tobytes())
    return b"".join(out)


def unpack_codes(data: bytes, bits: int, n: int) -> np.ndarray:
    """The first `n` codes of a packed index stream (pack_codes' inverse)."""
    if bits not in INDEX_BITS:
        raise ValueError(f"unsupported index_bits {bits}")
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size * 8 < n * bits:
        raise ValueError(f"{raw.size} bytes hold fewer than {n} codes of {bits} bits")
    if bits == 8:
        return raw[:n].astype(np.uint16)
    if bits == 16:
        return raw[:2 * n].view("<u2").astype(np.uint16)
    if bits == 4:
        out = np.empty(raw.size * 2, dtype=np.uint16)
        out[0::2] = raw & 0x0F
        out[1::2] = raw >> 4
        return out[:n]
    weights = (1 << np.arange(bits, dtype=np.uint32)).astype(np.uint32)
    out = np.empty(n, dtype=np.uint16)
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        b0 = lo * bits // 8  # lo is a multiple of 8: the chunk starts on a byte
        stream = np.unpackbits(raw[b0:(hi * bits + 7) // 8], bitorder="little")[:(hi - lo) * bits]
        out[lo:hi] = (stream.reshape(hi - lo, bits).astype(np.uint32) @ weights).astype(np.uint16)
    return out


def choose_encoding(w: np.ndarray, value_bytes: int = 4, allow_dense: bool = True,
                    bits_options: tuple[int, ...] = FAST_INDEX_BITS, row_align: int = 1,
                    columns: bool = False) -> Encoding:
    """The smallest storage of `w` by exact byte count: rcsr with the best b of `bits_options` (default the three
    widths with fast kernel paths; INDEX_BITS for the fewest bytes) (rows then padded to a multiple of
    `row_align` entries), or dense when that is no larger. With `row_align` > 1 each b is costed with the padding
    it needs: b's own fillers change how many entries a row holds, so the padding differs from b to b.
    `columns`: the sparse candidates store W^T (Encoding.columns), costed as such; dense stays W, row-major."""
    w = _as_matrix(w)
    rows, cols = w.shape
    nonzero = int(np.count_nonzero(w))
    src = np.ascontiguousarray(w.T) if columns else w
    best_bits, best_total = None, None
    gaps = _gaps(src) if bits_options else None  # once for every width costed
    for bits in bits_options:
        entries, _ = _count_from_gaps(src.shape, gaps, bits, row_align)
        total = sum(layer_bytes(entries, src.shape[0], bits, value_bytes).values())
        if best_total is None or total < best_total:
            best_bits, best_total = bits, total
    if best_bits is None:
        raise ValueError(f"bits_options must name at least one width of {INDEX_BITS[0]}..{INDEX_BITS[-1]}")
    if allow_dense and rows * cols * value_bytes <= best_total:
        return dense_encoding(w, value_bytes)
    r = pad_rows(encode_rcsr(src, best_bits), row_align)
    return Encoding("rcsr", rows, cols, nonzero, rcsr=r, value_bytes=value_bytes, sizes=r.bytes(value_bytes),
                    row_align=row_align, columns=columns)


def dense_encoding(w: np.ndarray, value_bytes: int = 4) -> Encoding:
    """`w` (rows x cols) stored dense, row-major."""
    rows, cols = w.shape
    return Encoding("dense", rows, cols, int(np.count_nonzero(w)), dense=np.ascontiguousarray(w),
                    value_bytes=value_bytes, sizes={"values": rows * cols * value_bytes, "index": 0, "pointers": 0})


def as_bsell(enc: Encoding, w: np.ndarray) -> Encoding:
    """The blocked sliced layout of fc weight `w` (rows x cols), in place of encoding `enc` (its rows, cols and
    nonzero count)."""
    b = encode_bsell(w)
    return Encoding("bsell", enc.rows, enc.cols, enc.nonzero, bsell=b, value_bytes=enc.value_bytes,
                    sizes=b.bytes(enc.value_bytes))


def as_wsell(enc: Encoding, w: np.ndarray) -> Encoding:
    """The windowed sliced layout of fc weight `w` (rows x cols), in place of encoding `enc` (its rows, cols and
    nonzero count)."""
    ws = encode_wsell(w, enc.value_bytes)
    return Encoding("wsell", enc.rows, enc.cols, enc.nonzero, wsell=ws, value_bytes=enc.value_bytes,
                    sizes=ws.bytes(enc.value_bytes))


def as_acsr(enc: Encoding, w: np.ndarray) -> Encoding:
    """Absolute-indexed CSR of fc weight `w` (rows x cols), in place of encoding `enc` (its rows, cols and nonzero
    count)."""
    a = encode_acsr(w)
    return Encoding("acsr", enc.rows, enc.cols, enc.nonzero, acsr=a, value_bytes=enc.value_bytes,
                    sizes=a.bytes(enc.value_bytes))


def as_rsell(enc: Encoding, w: np.ndarray) -> Encoding:
    """The relative-indexed sliced layout of fc weight `w` (rows x cols), in place of encoding `enc` (its rows, cols
    and nonzero count)."""
    r = encode_rsell(w)
    return Encoding("rsell", enc.rows, enc.cols, enc.nonzero, rsell=r, value_bytes=enc.value_bytes,
                    sizes=r.bytes(enc.value_bytes))
