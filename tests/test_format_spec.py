"""docs/FORMAT.md as a contract for third-party readers: an independent decoder of the weights a build writes.

The decoder below is written from docs/FORMAT.md ("Relative-indexed CSR", "In a build") and the build's
manifest.json only, in plain numpy: it imports nothing from `prunec` except the CLI that makes the builds. It
reads every layer's arrays from NAME.c (`--weights c`, C initialisers) and from NAME_weights.bin (`--weights blob`,
at the offsets the document's layout rule gives, checked against NAME_weights.S), rebuilds each weight matrix and
bias, and requires them to equal the PyTorch model's bit for bit (a pruned `-0.0` reads back as `+0.0` from
relative-indexed CSR, which stores only nonzeros). It also checks what the document promises about the arrays:
row pointers, stream length and zero padding bits, code ranges, filler counts, row alignment, the manifest's byte
counts, and that each layer's encoding is the smallest one among the widths the build was allowed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import build_models as bm
from prunec.cli import main

ALIGN = 16  # blob: every array starts at a multiple of 16 bytes
C_TYPES = {"float": np.float32, "uint8_t": np.uint8, "uint16_t": np.uint16, "uint32_t": np.uint32}
DTYPES = {"bias": np.float32, "values": np.float32, "index": np.uint8, "row_ptr": np.uint32, "steps": np.uint8,
          "perm": np.uint16, "advance": np.uint32, "start": np.uint32, "columns": np.uint32}


def dtype_of(layer: dict, array: str):
    """The element type of one of a layer's arrays: DTYPES, but a sliced layout's steps are uint32 (one per slice)."""
    return np.uint32 if layer["format"] in ("rsell", "wsell") and array == "steps" else DTYPES[array]


# ---------------------------------------------------------------------------------------------------------------
# the decoder (docs/FORMAT.md only)


def c_ident(layer_name: str) -> str:
    """A layer's C identifier before de-duplication: every character other than an ASCII letter, digit or `_` becomes `_`,
    and `l` goes in front unless it then starts with a letter."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", layer_name)
    return s if re.match(r"[A-Za-z]", s) else "l" + s


def c_idents(manifest: dict) -> dict[str, str]:
    """{layer name: C identifier}: over all layers in manifest order, `_` appended while the identifier is taken."""
    used, out = set(), {}
    for layer in manifest["layers"]:
        ident = c_ident(layer["name"])
        while ident in used:
            ident += "_"
        used.add(ident)
        out[layer["name"]] = ident
    return out


def array_bytes(layer: dict, array: str, advance_bytes: int | None = None) -> int:
    if layer["format"] == "wsell" and array in ("steps", "start", "perm", "advance"):  # per 4-row slice: a uint32
        slices = -(-layer["shape"][0] // 4)  # step count and start, 4 uint16 perm; a uint32 advance per step
        steps = (layer["nonzero"] + layer["fillers"]) // 4
        assert layer["bytes"]["pointers"] == 4 * slices + 4 * slices + 8 * slices + 4 * steps
        return {"steps": 4 * slices, "start": 4 * slices, "perm": 8 * slices, "advance": 4 * steps}[array]
    if layer["format"] == "rsell" and array in ("steps", "perm"):  # a uint32 step count and 16 uint16 perm per slice
        slices = -(-layer["shape"][0] // 16)
        assert layer["bytes"]["pointers"] == 4 * slices + 32 * slices
        return 4 * slices if array == "steps" else 32 * slices
    if array in ("steps", "perm"):  # a bsell layer's "pointers" are its steps (one byte per slice and block) and its
        rows, cols = layer["shape"][0], int(np.prod(layer["shape"][1:]))  # perm (two bytes per lane, 16 per slice)
        slices, blocks = -(-rows // 16), -(-cols // 32)
        assert layer["bytes"]["pointers"] == slices * blocks + 32 * slices
        return slices * blocks if array == "steps" else 32 * slices
    return layer["bytes"][{"row_ptr": "pointers", "columns": "index"}.get(array, array)]


def array_align(layer: dict, array: str) -> int:
    """Bytes a blob array's offset is a multiple of: 16, or 64 for the values of a blocked or sliced layout."""
    return 64 if layer["format"] in ("bsell", "rsell") and array == "values" else ALIGN


def array_names(layer: dict) -> list[str]:
    """The arrays of a layer with weights, in the order the blob stores them (a layer that shares an earlier layer's
    weight, `shares_weights_of`, has its bias only)."""
    names = ["bias"] if layer["bytes"]["bias"] else []
    if layer.get("shares_weights_of"):
        return names
    names.append("values")
    if layer["format"] == "rcsr":
        names += ["index", "row_ptr"]
    if layer["format"] in ("bsell", "rsell"):
        names += ["index", "steps", "perm"]
    if layer["format"] == "wsell":
        names += ["index", "advance", "start", "steps", "perm"]
    if layer["format"] == "acsr":
        names += ["columns", "row_ptr"]
    return names


def weighted(manifest: dict) -> list[dict]:
    return [l for l in manifest["layers"] if l["format"] in ("rcsr", "dense", "bsell", "rsell", "wsell", "acsr")]


def read_c_arrays(build: Path, manifest: dict) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {array: values}} from the `static const T ID_ARRAY[N] = {...};` initialisers of NAME.c."""
    text = (build / f"{manifest['name']}.c").read_text()
    found = {}
    # a blocked layout's values carry __attribute__((aligned(64))) (FORMAT.md "In a build")
    for ctype, sym, n, body in re.findall(r"static const (\w+) (\w+)\[(\d+)\](?: __attribute__\(\(aligned\(64\)\)\))? = "
                                          r"\{(.*?)\};", text, flags=re.S):
        toks = [t for t in body.replace("\n", " ").split(",") if t.strip()]
        if ctype == "float":
            arr = np.array([np.float32(t.strip().rstrip("f")) for t in toks], np.float32)
        else:
            arr = np.array([int(t.strip().rstrip("uU"), 0) for t in toks], C_TYPES[ctype])
        assert len(arr) == int(n), sym
        found[sym] = arr
    out = {}
    idents = c_idents(manifest)
    for layer in weighted(manifest):
        arrays = out[layer["name"]] = {}
        for a in array_names(layer):
            arr = found[f"{idents[layer['name']]}_{a}"]
            assert arr.dtype == dtype_of(layer, a)
            n = array_bytes(layer, a) // arr.itemsize
            assert len(arr) == max(n, 1), "an empty array is written as one element 0 (C has no empty arrays)"
            arrays[a] = arr[:n]
    return out


def blob_layout(manifest: dict) -> list[tuple[str, str, int, int]]:
    """(layer, array, offset, bytes) of NAME_weights.bin: the layers in manifest order, each layer's arrays in the
    order bias, values, index, row_ptr (those it has; sizes from the manifest's `bytes`), each at the next multiple
    of 16 bytes; an empty array takes no bytes (offset: where the last one ended)."""
    off, out = 0, []
    for layer in weighted(manifest):
        for a in array_names(layer):
            n = array_bytes(layer, a)
            if n:
                off = -(-off // array_align(layer, a)) * array_align(layer, a)
            out.append((layer["name"], a, off, n))
            off += n
    return out


def read_blob_arrays(build: Path, manifest: dict) -> dict[str, dict[str, np.ndarray]]:
    blob = (build / f"{manifest['name']}_weights.bin").read_bytes()
    out: dict[str, dict[str, np.ndarray]] = {}
    end = 0
    layers = {l["name"]: l for l in weighted(manifest)}
    for name, a, off, n in blob_layout(manifest):
        dt = np.dtype(dtype_of(layers[name], a)).newbyteorder("<")
        assert n % dt.itemsize == 0 and off + n <= len(blob)
        assert not any(blob[end:off]), "the bytes skipped to align are 0"
        out.setdefault(name, {})[a] = np.frombuffer(blob, dt, count=n // dt.itemsize, offset=off).astype(dt.newbyteorder("="))
        end = off + n
    assert len(blob) == end, "the blob holds nothing after its last array"
    return out


def unpack_codes(index: np.ndarray, b: int, n: int) -> np.ndarray:
    """Codes of an LSB-first bit stream: code e is stream bits b*e .. b*e+b-1, stream bit k = bit k%8 of byte k/8."""
    bits = np.unpackbits(index, bitorder="little")
    assert len(index) == (n * b + 7) // 8, "index holds (entries*b + 7)/8 bytes"
    assert not bits[n * b:].any(), "the bits after the last code are 0"
    return (bits[: n * b].reshape(n, b).astype(np.int64) << np.arange(b)).sum(axis=1)


def stored_shape(layer: dict) -> tuple[int, int]:
    """The [rows x cols] of the matrix a layer's relative-indexed CSR holds: W's, or W^T's when the manifest says
    "orientation": "columns" (an fc layer whose kernel skips zero inputs)."""
    rows, cols = layer["shape"][0], int(np.prod(layer["shape"][1:]))
    return (cols, rows) if layer.get("orientation") == "columns" else (rows, cols)


def decode_bsell(layer: dict, arrays: dict[str, np.ndarray], rows: int, cols: int):
    """FORMAT.md "Blocked fc layers": steps per (slice of 16 rows, block of 32 columns), slice-major; then per pair
    its steps of 16 slots, slot (j, l) = row 16s + l's j-th nonzero in the block (columns ascending); fillers index 0,
    value 0."""
    steps, index, values = arrays["steps"].astype(np.int64), arrays["index"], arrays["values"]
    perm = arrays["perm"].astype(np.int64)
    slices, blocks = -(-rows // 16), -(-cols // 32)
    assert len(steps) == slices * blocks and steps.max(initial=0) <= 32
    assert sorted(perm[:rows]) == list(range(rows)) and not perm[rows:].any(), "perm: each row once, then 0"
    assert len(index) == len(values) == 16 * steps.sum() and index.max(initial=0) < 32
    assert layer["index_bits"] == 8 and layer["row_align"] == 1 and layer.get("orientation") is None
    w = np.zeros((rows, cols), np.float32)
    ent_row, ent_col = [], []
    t = 0
    for i, k in enumerate(steps):
        s, b = divmod(i, blocks)
        last, done, used = {}, set(), False
        for j in range(k):
            used = False
            for lane in range(16):
                v, c, r = values[16 * t + lane], b * 32 + int(index[16 * t + lane]), s * 16 + lane
                r = int(perm[r]) if r < rows else rows  # the lane's row; lanes past the last hold only fillers
                if v == 0:  # a filler (a zero weight is never stored): index 0, and the lane's last in this block
                    assert index[16 * t + lane] == 0
                    done.add(lane)
                    continue
                assert lane not in done, "a row's nonzeros in a block fill its lane's first steps"
                assert r < rows and c < cols and c > last.get(lane, -1), "columns ascend within a row's block"
                last[lane] = c
                w[r, c] = v
                ent_row.append(r), ent_col.append(c)
                used = True
            t += 1
        assert k == 0 or used, "k is the most nonzeros of a row in the block: its last step holds one"
    assert layer["nonzero"] == np.count_nonzero(w) and layer["fillers"] == len(values) - layer["nonzero"]
    return w, np.array(ent_col), np.array(ent_row), values


def decode_rsell(layer: dict, arrays: dict[str, np.ndarray], rows: int, cols: int):
    """FORMAT.md "Sliced fc layers": a uint32 step count k per slice of 16 rows (lane l: row perm[16s + l]); then per
    slice its k steps of 16 slots, slot (j, l) = lane l's j-th entry: a code (its column minus the lane's previous
    entry's, minus 1; the first: its column) and a weight; fillers are weight 0 at columns the row has no nonzero in,
    and every column is below cols."""
    steps, index, values = arrays["steps"].astype(np.int64), arrays["index"].astype(np.int64), arrays["values"]
    perm = arrays["perm"].astype(np.int64)
    slices = -(-rows // 16)
    assert len(steps) == slices and len(perm) == 16 * slices
    assert sorted(perm[:rows]) == list(range(rows)) and not perm[rows:].any(), "perm: each row once, then 0"
    assert len(index) == len(values) == 16 * steps.sum()
    assert layer["index_bits"] == 8 and layer["row_align"] == 1 and layer.get("orientation") is None
    w = np.zeros((rows, cols), np.float32)
    ent_row, ent_col = [], []
    t = 0
    for s, k in enumerate(steps):
        col = np.full(16, -1, np.int64)
        for j in range(k):
            for lane in range(16):
                col[lane] += index[16 * t + lane] + 1
                c, v, r = int(col[lane]), values[16 * t + lane], s * 16 + lane
                assert c < cols, "every entry's column is inside the row"
                if r >= rows:  # lanes past the last row: fillers only, at columns 0 .. k-1
                    assert v == 0 and c == j
                    continue
                if v != 0:
                    w[int(perm[r]), c] = v
                    ent_row.append(int(perm[r])), ent_col.append(c)
            t += 1
    assert layer["nonzero"] == np.count_nonzero(w) and layer["fillers"] == len(values) - layer["nonzero"]
    return w, np.array(ent_col), np.array(ent_row), values


def decode_wsell(layer: dict, arrays: dict[str, np.ndarray], rows: int, cols: int):
    """FORMAT.md "Windowed fc layers": per slice of 4 rows (lane l: row perm[4s + l]) a uint32 step count k and the
    first window's column; per step a 16-input window (its base moved on by advance bytes, 4 per column), per slot a
    weight and the 4 table bytes 4o .. 4o+3 of its input at offset o in the window; fillers weight 0."""
    steps, start = arrays["steps"].astype(np.int64), arrays["start"].astype(np.int64)
    adv, index, values = arrays["advance"].astype(np.int64), arrays["index"].astype(np.int64), arrays["values"]
    perm = arrays["perm"].astype(np.int64)
    slices = -(-rows // 4)
    assert len(steps) == len(start) == slices and len(perm) == 4 * slices and cols >= 16
    assert sorted(perm[:rows]) == list(range(rows)) and not perm[rows:].any(), "perm: each row once, then 0"
    n = int(steps.sum())
    assert len(adv) == n and len(values) == 4 * n and len(index) == 16 * n
    assert layer["index_bits"] == 32 and layer["row_align"] == 1 and layer.get("orientation") is None
    w = np.zeros((rows, cols), np.float32)
    ent_row, ent_col = [], []
    t = 0
    for s, k in enumerate(steps):
        base = int(start[s]) if k else 0
        last = np.full(4, -1)
        for j in range(k):
            assert 0 <= base <= cols - 16, "every window inside x"
            for lane in range(4):
                tb = index[16 * t + 4 * lane:16 * t + 4 * lane + 4]
                o = int(tb[0]) // 4
                assert tb[0] % 4 == 0 and list(tb) == [4 * o, 4 * o + 1, 4 * o + 2, 4 * o + 3] and o < 16
                c, v, r = base + o, values[4 * t + lane], 4 * s + lane
                if r >= rows or v == 0:  # fillers: offset 0, weight +0.0
                    assert v == 0 and o == 0
                    continue
                assert c > last[lane], "a lane's nonzeros in column order"
                last[lane] = c
                w[int(perm[r]), c] = v
                ent_row.append(int(perm[r])), ent_col.append(c)
            step = int(adv[t])
            assert step % 4 == 0 and (j + 1 < k or step == 0), "advances in bytes of x; 0 after a slice's last step"
            base += step // 4
            t += 1
    assert layer["nonzero"] == np.count_nonzero(w) and layer["fillers"] == len(values) - layer["nonzero"]
    return w, np.array(ent_col), np.array(ent_row), values


def decode_acsr(layer: dict, arrays: dict[str, np.ndarray], rows: int, cols: int):
    """FORMAT.md "Absolute-indexed fc layers": row r owns entries row_ptr[r] .. row_ptr[r+1]-1, a multiple of 4 of them,
    each a uint32 column and a weight: the row's nonzeros in column order, then fillers (+0.0 at the column of the
    row's last nonzero)."""
    rp, c, values = arrays["row_ptr"].astype(np.int64), arrays["columns"].astype(np.int64), arrays["values"]
    assert len(rp) == rows + 1 and rp[0] == 0 and (np.diff(rp) >= 0).all() and rp[-1] == len(values) == len(c)
    assert (np.diff(rp) % 4 == 0).all(), "every row a multiple of 4 entries"
    assert layer["index_bits"] == 32 and layer["row_align"] == 1 and layer.get("orientation") is None
    assert (c < cols).all()
    w = np.zeros((rows, cols), np.float32)
    row = np.repeat(np.arange(rows), np.diff(rp))
    for r in range(rows):
        cr, vr = c[rp[r]:rp[r + 1]], values[rp[r]:rp[r + 1]]
        k = int(np.count_nonzero(vr))
        assert vr[:k].all() and not vr[k:].any(), "the nonzeros first, then the fillers"
        assert len(cr) == 0 if k == 0 else (np.diff(cr[:k]) > 0).all() and (cr[k:] == cr[k - 1]).all() and len(cr) - k < 4
        w[r, cr[:k]] = vr[:k]
    return w, c, row, values


def decode_layer(layer: dict, arrays: dict[str, np.ndarray]):
    """(dense [rows x cols] float32 matrix of W, entry columns, entry rows, values) of one layer; the entries' rows and
    columns are those of the stored matrix (W^T for a column-major layer)."""
    if layer["format"] == "rcsr" and layer.get("orientation") == "columns":
        wt, col, row, values = decode_layer({**layer, "orientation": "rows",
                                             "shape": list(stored_shape(layer))}, arrays)
        return np.ascontiguousarray(wt.T), col, row, values
    assert layer.get("orientation") in (None, "rows")
    rows = layer["shape"][0]
    cols = int(np.prod(layer["shape"][1:]))
    values = arrays["values"]
    if layer["format"] == "bsell":
        return decode_bsell(layer, arrays, rows, cols)
    if layer["format"] == "rsell":
        return decode_rsell(layer, arrays, rows, cols)
    if layer["format"] == "wsell":
        return decode_wsell(layer, arrays, rows, cols)
    if layer["format"] == "acsr":
        return decode_acsr(layer, arrays, rows, cols)
    if layer["format"] == "dense":
        assert len(values) == rows * cols
        return values.reshape(rows, cols).copy(), None, None, values
    b = layer["index_bits"]
    assert 1 <= b <= 16
    rp = arrays["row_ptr"].astype(np.int64)
    assert len(rp) == rows + 1 and rp[0] == 0 and (np.diff(rp) >= 0).all() and rp[-1] == len(values)
    codes = unpack_codes(arrays["index"], b, len(values))
    assert (codes < (1 << b)).all()
    col = np.empty(len(values), np.int64)
    row = np.repeat(np.arange(rows), np.diff(rp))
    for r in range(rows):  # col(e) = next + code(e), next = col(e) + 1, next = 0 at a row's start
        s, e = rp[r], rp[r + 1]
        col[s:e] = np.cumsum(codes[s:e] + 1) - 1
    assert (col < cols).all(), "every entry, fillers included, lies inside its row"
    w = np.zeros((rows, cols), np.float32)
    w[row, col] = values  # columns strictly increase within a row, so no entry overwrites another
    return w, col, row, values


def decode_build(build: Path, storage: str):
    """{layer name: (matrix, bias or None)} and the manifest, from the build's arrays as stored by `storage`."""
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["storage"] == storage
    arrays = read_c_arrays(build, manifest) if storage == "c" else read_blob_arrays(build, manifest)
    out = {}
    for layer in weighted(manifest):
        arr = arrays.get(layer["name"], {})
        owner = layer.get("shares_weights_of")
        if owner:  # the weight is the owner's arrays, the bias (if any) its own
            own = next(l for l in manifest["layers"] if l["name"] == owner)
            assert layer["format"] == own["format"] and layer["index_bits"] == own["index_bits"]
            out[layer["name"]] = (out[owner][0], arr.get("bias"))
            continue
        w, col, row, values = decode_layer(layer, arr)
        check_layer_record(layer, arr, col, row, values)
        out[layer["name"]] = (w, arr.get("bias"))
    return out, manifest


def check_layer_record(layer: dict, arr: dict, col, row, values) -> None:
    """The manifest's numbers for the layer are those of its arrays."""
    rows, cols = stored_shape(layer)
    by = layer["bytes"]
    assert layer["weights"] == rows * cols
    assert by["values"] == 4 * len(values) and by["bias"] == (4 * len(arr["bias"]) if "bias" in arr else 0)
    if layer["format"] == "dense":
        assert by["index"] == by["pointers"] == 0 and layer["index_bits"] == 0 and layer["fillers"] == 0
        assert layer["nonzero"] == int(np.count_nonzero(values))
        return
    nz = int(np.count_nonzero(values))
    assert layer["nonzero"] == nz and layer["fillers"] == len(values) - nz
    if layer["format"] == "bsell":  # pointers: the steps bytes, one per (slice, block), and perm's, 2 per lane
        assert by["index"] == len(arr["index"]) == len(values) and by["pointers"] == len(arr["steps"]) + 2 * len(arr["perm"])
        assert not np.signbit(values[values == 0]).any(), "fillers hold +0.0"
        return
    if layer["format"] == "rsell":  # pointers: a uint32 step count per slice, and perm's 2 bytes per lane
        assert by["index"] == len(arr["index"]) == len(values) and by["pointers"] == 4 * len(arr["steps"]) + 2 * len(arr["perm"])
        assert not np.signbit(values[values == 0]).any(), "fillers hold +0.0"
        return
    if layer["format"] == "wsell":  # pointers: steps, start (uint32 per slice), perm (2 bytes per lane), advance
        assert by["index"] == len(arr["index"]) == 4 * len(values)
        assert by["pointers"] == 4 * (len(arr["steps"]) + len(arr["start"]) + len(arr["advance"])) + 2 * len(arr["perm"])
        assert not np.signbit(values[values == 0]).any(), "fillers hold +0.0"
        return
    if layer["format"] == "acsr":  # index: the uint32 columns; pointers: row_ptr
        assert by["index"] == 4 * len(arr["columns"]) == 4 * len(values) and by["pointers"] == 4 * (rows + 1)
        assert not np.signbit(values[values == 0]).any(), "fillers hold +0.0"
        return
    assert by["index"] == len(arr["index"]) and by["pointers"] == 4 * (rows + 1)
    zeros = values[values == 0]
    assert not np.signbit(zeros).any(), "fillers hold +0.0"
    a = layer["row_align"]
    assert a >= 1
    lengths = np.diff(arr["row_ptr"].astype(np.int64))
    # a row is a multiple of A entries, unless it has fewer unused columns than the padding it needs
    short = lengths % a != 0
    assert (cols - lengths[short] < (-lengths[short]) % a).all(), (lengths[short], a, cols)


def rcsr_bytes(w: np.ndarray, b: int, align: int) -> int:
    """The document's byte count of `w` at width b, rows padded to `align` entries where they have room."""
    rows, cols = w.shape
    entries = 0
    for r in range(rows):
        c = np.flatnonzero(w[r])
        gaps = np.diff(np.concatenate([[-1], c]))
        n = len(c) + int(((gaps - 1) >> b).sum())
        pad = (-n) % align
        entries += n + (pad if cols - n >= pad else 0)
    return entries * 4 + (entries * b + 7) // 8 + (rows + 1) * 4


def check_choice(layer: dict, w: np.ndarray, allowed, align: int) -> None:
    """The layer takes the smallest encoding among `allowed` widths (ties: the narrowest) with rows padded to `align`
    entries, dense when that is not larger; a column-major layer costs W^T."""
    if layer["format"] == "rcsr":
        assert layer["row_align"] == align
        if layer["orientation"] == "columns":
            w = np.ascontiguousarray(w.T)
    sizes = {b: rcsr_bytes(w, b, align) for b in allowed}
    best = min(sizes, key=lambda b: (sizes[b], b))
    if w.size * 4 <= sizes[best]:
        assert layer["format"] == "dense", (layer["name"], sizes, w.size * 4)
    elif layer["format"] == "bsell":  # FORMAT.md "Blocked fc layers": an fc layer that would be relative-indexed,
        # on x86_64-avx2 (fc_bsell_max_bytes 4 MiB), whose slots (5 bytes each) fit the limit
        slots = layer["nonzero"] + layer["fillers"]
        assert layer["op"] == "fc" and 5 * slots <= 4 << 20 and layer["bytes"]["values"] == 4 * slots
        assert layer["bytes"]["values"] + layer["bytes"]["index"] + layer["bytes"]["pointers"] < w.size * 4
    elif layer["format"] == "wsell":  # FORMAT.md "Windowed fc layers": an fc layer of >= 16 inputs that would be
        # relative-indexed, under --fc-layout wsell or auto on aarch64-neon
        slots = layer["nonzero"] + layer["fillers"]
        assert layer["op"] == "fc" and layer["bytes"]["values"] == 4 * slots and layer["index_bits"] == 32
    elif layer["format"] == "acsr":  # FORMAT.md "Absolute-indexed fc layers": an fc layer that would be
        # relative-indexed, under --fc-layout acsr
        entries = layer["nonzero"] + layer["fillers"]
        assert layer["op"] == "fc" and layer["bytes"]["index"] == 4 * entries and layer["index_bits"] == 32
    elif layer["format"] == "rsell":  # FORMAT.md "Sliced fc layers": an fc layer that would be relative-indexed,
        # under --fc-layout rsell (or auto where the target names the build machine's CPU vendor); 8-bit gaps
        slots = layer["nonzero"] + layer["fillers"]
        assert layer["op"] == "fc" and layer["bytes"]["values"] == 4 * slots and layer["index_bits"] == 8
    elif layer["format"] == "dense":  # FORMAT.md "Blocked fc layers" (and the sliced and windowed ones): an fc
        # layer whose speed layout would take more bytes than the dense matrix is stored dense instead
        assert layer["op"] == "fc" and layer["bytes"]["values"] == w.size * 4 and layer["bytes"]["index"] == 0
    else:
        assert (layer["format"], layer["index_bits"]) == ("rcsr", best), (layer["name"], sizes)
        stored = layer["bytes"]["values"] + layer["bytes"]["index"] + layer["bytes"]["pointers"]
        assert stored == sizes[best]


# ---------------------------------------------------------------------------------------------------------------
# the model side


def model_weights(model: nn.Module, name: str):
    m = model.get_submodule(name)
    w = m.weight.detach().numpy().astype(np.float32)
    b = None if m.bias is None else m.bias.detach().numpy().astype(np.float32)
    return w.reshape(w.shape[0], -1), b


def same_bits(got: np.ndarray, want: np.ndarray, implicit_zeros: bool) -> bool:
    """Bit-for-bit equality; with `implicit_zeros` (relative-indexed CSR, which stores no zero) a -0.0 of the model
    reads back as +0.0."""
    if implicit_zeros:
        want = np.where(want == 0, np.float32(0), want)
    return got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def cli_build(pt2: Path, out: Path, *opts: str) -> Path:
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(out), *opts])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return out


def check_model(model: nn.Module, pt2: Path, tmp: Path, *opts: str, allowed=None, align=None, modules=None) -> dict:
    """Build with `opts` as C arrays and as a blob; both decode to the model's weights and biases bit for bit.
    `allowed` / `align`: {op: widths} the build chooses among and {op: row alignment} (default 1), to check each
    layer's choice; `modules`: {layer name: module path} where they differ. The manifest."""
    decoded = {}
    for storage in ("c", "blob"):
        out = cli_build(pt2, tmp / f"{pt2.stem}_{storage}", "--weights", storage, *opts)
        layers, manifest = decode_build(out, storage)
        assert layers, "the model has layers with weights"
        for name, (w, bias) in layers.items():
            want_w, want_b = model_weights(model, (modules or {}).get(name, name))
            layer = next(l for l in manifest["layers"] if l["name"] == name)
            assert same_bits(w, want_w, layer["format"] in ("rcsr", "bsell", "rsell", "wsell", "acsr")), (storage, name)
            assert (bias is None) == (want_b is None) and (bias is None or same_bits(bias, want_b, False)), name
            if allowed is not None:
                check_choice(layer, want_w, allowed[layer["op"]], (align or {}).get(layer["op"], 1))
        ws = [l for l in weighted(manifest) if not l.get("shares_weights_of")]  # each stored matrix once
        t = manifest["totals"]
        assert t["weights_bytes"] == sum(l["bytes"]["values"] + l["bytes"]["index"] + l["bytes"]["pointers"] for l in ws)
        assert t["dense_weights_bytes"] == sum(4 * l["weights"] for l in ws) == sum(l["dense_bytes"] for l in ws)
        assert t["bias_bytes"] == sum(l["bytes"]["bias"] for l in weighted(manifest))
        assert t["nonzero"] == sum(l["nonzero"] for l in ws)
        if storage == "blob":
            check_asm_agrees(out, manifest)
        decoded[storage] = layers
    for name, (w, bias) in decoded["c"].items():  # both forms hold the same bits
        w2, b2 = decoded["blob"][name]
        assert np.array_equal(w.view(np.uint32), w2.view(np.uint32))
    return manifest


def check_asm_agrees(build: Path, manifest: dict) -> None:
    """NAME_weights.S declares `NAME_ID_ARRAY` over exactly the (offset, bytes) of the layout rule (an empty array
    as 4 zero bytes of its own, outside the blob)."""
    s = (build / f"{manifest['name']}_weights.S").read_text()
    syms = re.findall(r"^(\w+):\s*\n\s*(?:\.incbin \"[^\"]+\", (\d+), (\d+)|\.zero (\d+))", s, flags=re.M)
    idents = c_idents(manifest)
    want = [(f"{manifest['name']}_{idents[l]}_{a}", *((str(o), str(n), "") if n else ("", "", "4")))
            for l, a, o, n in blob_layout(manifest)]
    assert syms == want


# ---------------------------------------------------------------------------------------------------------------
# test models

DEFAULT = {"fc": (8, 16), "conv2d": (4, 8, 16)}
ALL = tuple(range(1, 17))


class Gaps(nn.Module):
    """conv (some channels empty, one full, one with its last tap only) -> fc 486 -> 12 whose rows hold every gap
    1 .. 6, 8, 9, 16, 17, ..., 128, 129, 256, 257 (2^k and 2^k + 1), an empty row, a full row, a row with one unused
    column, lone first / last columns -> fc 12 -> 5."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1)
        self.fc1 = nn.Linear(6 * 9 * 9, 12)
        self.fc2 = nn.Linear(12, 5)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            cm = (torch.rand(self.conv.weight.shape, generator=g) < 0.35).float()
            cm[0] = 0
            cm[1] = 1
            cm[2] = 0
            cm[2, -1, -1, -1] = 1
            self.conv.weight.mul_(cm)
            cols = self.fc1.in_features
            m = (torch.rand(self.fc1.weight.shape, generator=g) < 0.1).float()
            m[0:8] = 0
            m[1, 0] = m[2, cols - 1] = 1
            gaps = [1, 2, 3, 4, 5, 6] + [x for k in range(3, 7) for x in (1 << k, (1 << k) + 1)] + [128, 93]
            m[3, np.cumsum(gaps) - 1] = 1  # the last at column 485
            m[4, [256, 485]] = 1  # gaps 257, 229
            m[7, [255, 384, 485]] = 1  # gaps 256, 129, 101
            m[5] = 1
            m[6] = 1
            m[6, 100] = 0
            self.fc1.weight.mul_(m)
            m2 = (torch.rand(self.fc2.weight.shape, generator=g) < 0.4).float()
            m2[2] = 0
            self.fc2.weight.mul_(m2)
            self.fc2.weight[0, 3] = -0.0  # a pruned weight whose sign bit is set

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class Wide(nn.Module):
    """fc 70000 -> 4: gaps beyond 2^16 (69999, and 65537 before a row's first entry), a gap of exactly 2^16, an
    empty row."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(70000, 4, bias=False)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[0, [0, 69999]] = torch.tensor([0.5, -1.25])
            self.fc.weight[2, [65535, 65536, 69998]] = torch.tensor([2.0, 3.0, -0.75])
            self.fc.weight[3, 65536] = 7.0

    def forward(self, x):
        return self.fc(x)


@pytest.fixture(scope="module")
def gaps(tmp_path_factory):
    d = tmp_path_factory.mktemp("gaps")
    m = Gaps().eval()
    return m, bm.export(m, (4, 9, 9), d / "gaps.pt2"), d


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    d = tmp_path_factory.mktemp("wide")
    m = Wide().eval()
    return m, bm.export(m, (70000,), d / "wide.pt2"), d


# ---------------------------------------------------------------------------------------------------------------
# tests


def test_worked_example_decodes():
    """The document's worked example, through this file's decoder."""
    want = np.zeros((3, 20), np.float32)
    want[0, [1, 4, 19]] = [0.5, -1.25, 2.0]
    want[2, [0, 18]] = [3.0, -0.75]
    layer = {"shape": [3, 20], "format": "rcsr"}
    examples = {4: ([0.5, -1.25, 2.0, 3.0, 0.0, -0.75], [0, 3, 3, 6], "21 0e 1f"),
                5: ([0.5, -1.25, 2.0, 3.0, -0.75], [0, 3, 3, 5], "41 38 10 01"),
                6: ([0.5, -1.25, 2.0, 3.0, -0.75], [0, 3, 3, 5], "81 e0 00 11"),
                8: ([0.5, -1.25, 2.0, 3.0, -0.75], [0, 3, 3, 5], "01 02 0e 00 11"),
                16: ([0.5, -1.25, 2.0, 3.0, -0.75], [0, 3, 3, 5], "01 00 02 00 0e 00 00 00 11 00")}
    for b, (values, rp, index) in examples.items():
        arrays = {"values": np.array(values, np.float32), "row_ptr": np.array(rp, np.uint32),
                  "index": np.frombuffer(bytes.fromhex(index), np.uint8)}
        w, *_ = decode_layer({**layer, "index_bits": b}, arrays)
        assert np.array_equal(w, want), b


@pytest.mark.parametrize("case", ["mlp", "conv3_pad1", "conv5_stride2", "conv_dilated", "conv_groups",
                                  "conv_depthwise", "conv_1x1", "conv_rect", "residual"])
def test_zoo_default_widths(case, tmp_path):
    model, shape = bm.make(case, seed=3)
    pt2 = bm.export(model, shape, tmp_path / f"{case}.pt2")
    man = check_model(model, pt2, tmp_path, allowed=DEFAULT)
    assert {l["index_bits"] for l in man["layers"] if l["format"] == "rcsr"} <= {4, 8, 16}


@pytest.mark.parametrize("case", ["mlp", "conv_groups", "conv_depthwise", "residual"])
def test_zoo_every_width_allowed(case, tmp_path):
    model, shape = bm.make(case, seed=11)
    pt2 = bm.export(model, shape, tmp_path / f"{case}.pt2")
    check_model(model, pt2, tmp_path, "--index-bits", "1-16", allowed={"fc": ALL, "conv2d": ALL})


@pytest.mark.parametrize("b", ALL)
def test_every_forced_width(gaps, tmp_path, b):
    model, pt2, _ = gaps
    man = check_model(model, pt2, tmp_path, "--index-bits", str(b), allowed={"fc": (b,), "conv2d": (b,)})
    layers = {l["name"]: l for l in man["layers"]}
    assert layers["fc1"]["format"] == "rcsr" and layers["fc1"]["index_bits"] == b
    assert layers["fc1"]["fillers"] > 0 or b >= 9  # the gap 257 needs fillers up to b = 8


def test_gaps_row_aligned_on_x86_64_avx2(gaps, tmp_path):
    model, pt2, _ = gaps
    man = check_model(model, pt2, tmp_path, "--target", "x86_64-avx2", "--fc-layout", "rcsr", allowed=DEFAULT,
                      align={"fc": 8})
    assert {l["op"]: l["row_align"] for l in weighted(man)} == {"fc": 8, "conv2d": 1}


def _sparse_mlp(tmp_path):
    """A 300-70-10 ReLU MLP with 10 % of its fc weights kept (seed 4), and its .pt2: blocked on x86 with AVX-512."""
    torch.manual_seed(4)
    mlp = bm.ReluMLP((300, 70, 10)).eval()
    with torch.no_grad():
        for f in mlp.fcs:
            f.weight.mul_((torch.rand_like(f.weight) < 0.1).float())
    return mlp, bm.export(mlp, (300,), tmp_path / "mlp.pt2")


def test_gaps_blocked_on_x86_64_avx2(gaps, tmp_path):
    """The default x86 build stores an fc layer in the blocked sliced layout when the AVX-512 kernels are compiled
    in and the layout takes fewer bytes than the dense matrix (FORMAT.md "Blocked fc layers"); it decodes from the
    page, as C arrays and as a blob (values 64-byte aligned). The gaps model's fc1 (12 rows, one of them full) would
    take 38,928 bytes blocked against 23,328 dense: it is stored dense; a 300-70-10 MLP at 10 % is blocked."""
    from prunec import build as B, targets

    model, pt2, _ = gaps
    man = check_model(model, pt2, tmp_path, "--target", "x86_64-avx2", allowed=DEFAULT, align={"fc": 8})
    blocked = B.bsell_limit(targets.get("x86_64-avx2"), "auto") > 0
    assert {l["op"]: l["format"] for l in weighted(man)}["fc"] == ("dense" if blocked else "rcsr")
    mlp, pt2 = _sparse_mlp(tmp_path)
    man = check_model(mlp, pt2, tmp_path, "--target", "x86_64-avx2", allowed=DEFAULT, align={"fc": 8})
    assert [l["format"] for l in weighted(man)][:2] == (["bsell", "bsell"] if blocked else ["rcsr", "rcsr"])
    if blocked:
        text = (tmp_path / f"{pt2.stem}_c" / f"{man['name']}.c").read_text()
        assert re.search(r"static const float fcs_0_values\[\d+\] __attribute__\(\(aligned\(64\)\)\) = \{", text)


def test_gaps_sliced_on_x86_64_avx2(gaps, tmp_path):
    """--fc-layout rsell stores the fc layer in the relative-indexed sliced layout (FORMAT.md "Sliced fc layers"); it
    decodes from the page, as C arrays and as a blob (values 64-byte aligned), gaps over 256 included."""
    model, pt2, _ = gaps
    man = check_model(model, pt2, tmp_path, "--target", "x86_64-avx2", "--fc-layout", "rsell", allowed=DEFAULT,
                      align={"fc": 8})
    assert {l["op"]: l["format"] for l in weighted(man)}["fc"] == "rsell"
    text = (tmp_path / f"{pt2.stem}_c" / f"{man['name']}.c").read_text()
    assert re.search(r"static const float fc1_values\[\d+\] __attribute__\(\(aligned\(64\)\)\) = \{", text)
    assert "static const prunec_rsell_f32 fc1_w" in text


@pytest.mark.parametrize("opts", [("--target", "aarch64-neon"), ()])
def test_gaps_windowed(gaps, tmp_path, opts):
    """`--fc-layout wsell` (aarch64-neon, host) stores fc1 (486 inputs) in the windowed sliced layout (FORMAT.md
    "Windowed fc layers") and fc2 (12 inputs: fewer than a window) in relative-indexed CSR; both decode from the page,
    as C arrays and as a blob, long gaps, full and empty rows included."""
    model, pt2, _ = gaps
    man = check_model(model, pt2, tmp_path, *opts, "--fc-layout", "wsell", allowed=DEFAULT)
    assert {l["name"]: l["format"] for l in weighted(man)} == {"conv": "rcsr", "fc1": "wsell", "fc2": "rcsr"}
    text = (tmp_path / f"{pt2.stem}_c" / f"{man['name']}.c").read_text()
    assert "static const prunec_wsell_f32 fc1_w" in text


@pytest.mark.parametrize("opts", [("--target", "cortex-m4"), ()])
def test_gaps_absolute_indexed(gaps, tmp_path, opts):
    """`--fc-layout acsr` (cortex-m4, host) stores both fc layers in absolute-indexed CSR (FORMAT.md "Absolute-indexed
    fc layers"; the conv stays relative-indexed); both decode from the page, as C arrays and as a blob."""
    model, pt2, _ = gaps
    man = check_model(model, pt2, tmp_path, *opts, "--fc-layout", "acsr", allowed=DEFAULT)
    assert {l["name"]: l["format"] for l in weighted(man)} == {"conv": "rcsr", "fc1": "acsr", "fc2": "acsr"}
    assert any(l["fillers"] for l in weighted(man) if l["format"] == "acsr")
    text = (tmp_path / f"{pt2.stem}_c" / f"{man['name']}.c").read_text()
    assert "static const prunec_acsr_f32 fc1_w = {" in text and "static const uint32_t fc1_columns[" in text


@pytest.mark.parametrize("opts", [("--row-align", "8", "--index-bits", "1-16"), ("--row-align", "3", "--index-bits", "5")])
def test_gaps_row_aligned_odd_widths(gaps, tmp_path, opts):
    model, pt2, _ = gaps
    bits = ALL if opts[3] == "1-16" else (5,)
    a = int(opts[1])
    man = check_model(model, pt2, tmp_path, *opts, allowed={"fc": bits, "conv2d": bits}, align={"fc": a, "conv2d": a})
    assert {l["row_align"] for l in weighted(man)} == {a}


@pytest.mark.parametrize("opts", [(), ("--index-bits", "16"), ("--index-bits", "1-16"), ("--target", "x86_64-avx2")])
def test_wide_gaps_beyond_2_16(wide, tmp_path, opts):
    model, pt2, _ = wide
    allowed = {"fc": ALL} if "1-16" in opts else {"fc": (16,)} if "16" in opts else DEFAULT
    man = check_model(model, pt2, tmp_path, *opts, allowed=allowed, align={"fc": 8} if "x86_64-avx2" in opts else {})
    (layer,) = [l for l in man["layers"] if l["name"] == "fc"]
    if "16" in opts:
        assert layer["index_bits"] == 16 and layer["fillers"] == 2  # gaps 69999 and 65537 need one each


def test_dense_layers(tmp_path):
    """Layers dense enough to be stored dense (row-major `values`, no index or row pointers), beside sparse ones."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Sequential(nn.Linear(64, 5), nn.Linear(5, 3, bias=False))).eval()
    with torch.no_grad():
        model[0].weight.mul_((torch.rand(model[0].weight.shape) < 0.95).float())  # -0.0 kept in dense values
        model[3][0].weight.mul_((torch.rand(model[3][0].weight.shape) < 0.1).float())
    pt2 = bm.export(model, (3, 6, 6), tmp_path / "seq.pt2")
    man = check_model(model, pt2, tmp_path, allowed=DEFAULT)
    fmt = {l["name"]: l["format"] for l in man["layers"] if l["format"]}
    assert fmt == {"0": "dense", "3.0": "rcsr", "3.1": "dense"}


class Names(nn.Module):
    """Layer names whose C identifiers collide or do not start with a letter."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(8, 8))  # a.0 -> a_0
        self.a_0 = nn.Linear(8, 8)  # a_0 -> a_0_ (taken)
        setattr(self, "_fc", nn.Linear(8, 6))  # -> l_fc
        self.softmax = nn.Linear(6, 5)  # after the softmax op took the name: layer softmax.linear_3
        with torch.no_grad():
            for m in (self.a[0], self.a_0, self.softmax):
                m.weight.mul_((torch.rand(m.weight.shape, generator=torch.Generator().manual_seed(3)) < 0.2).float())

    def forward(self, x):
        x = torch.relu(self.a_0(self.a(x)))
        x = torch.softmax(getattr(self, "_fc")(x), dim=-1)
        return self.softmax(x)


def test_layer_identifiers(tmp_path):
    model = Names().eval()
    pt2 = bm.export(model, (8,), tmp_path / "names.pt2")
    man = check_model(model, pt2, tmp_path, allowed=DEFAULT, modules={"softmax.linear_3": "softmax"})
    assert c_idents(man) == {"a.0": "a_0", "a_0": "a_0_", "_fc": "l_fc", "softmax": "softmax",
                             "softmax.linear_3": "softmax_linear_3"}


def test_all_zero_layer(tmp_path):
    """A layer with no nonzero: relative-indexed CSR with no entries (empty values and index, row_ptr all 0)."""
    model = nn.Sequential(nn.Linear(40, 6), nn.ReLU(), nn.Linear(6, 3, bias=False), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[2].weight.zero_()
    pt2 = bm.export(model, (40,), tmp_path / "zero.pt2")
    man = check_model(model, pt2, tmp_path, allowed=DEFAULT)
    layers = {l["name"]: l for l in man["layers"]}
    assert layers["0"]["format"] == "rcsr" and layers["0"]["bytes"]["values"] == layers["0"]["bytes"]["index"] == 0


def test_fused_conv_pool_row_aligned(tmp_path):
    model, shape = bm.make("pools", seed=4)
    pt2 = bm.export(model, shape, tmp_path / "pools.pt2")
    man = check_model(model, pt2, tmp_path, "--fuse-pool", "--row-align", "4", allowed=DEFAULT, align={"conv2d": 4})
    assert man["plan"]["fused_conv_pool"] and {l["row_align"] for l in man["layers"] if l["format"] == "rcsr"} == {4}


def test_batchnorm_folded(tmp_path):
    """Batch norm folded into the conv / fc before it: the stored weights are the folded ones, w * gamma / sqrt(var
    + eps) (bias (b - mean) * that + beta); the folding's rounding is the build's, so values within 2 ulp here, the
    zeros exact."""
    model, shape = bm.make("batchnorm", seed=6)
    pt2 = bm.export(model, shape, tmp_path / "bn.pt2")
    out = cli_build(pt2, tmp_path / "bn")
    layers, man = decode_build(out, "c")
    for name, bn in (("c1", "bn1"), ("dw", "bn2"), ("fc", "bn3"), ("out", None)):
        m = model.get_submodule(name)
        w = m.weight.detach().double().numpy().reshape(m.weight.shape[0], -1)
        b = np.zeros(w.shape[0]) if m.bias is None else m.bias.detach().double().numpy()
        if bn:
            n = model.get_submodule(bn)
            scale = n.weight.detach().double().numpy() / np.sqrt(n.running_var.double().numpy() + n.eps)
            w, b = w * scale[:, None], (b - n.running_mean.double().numpy()) * scale + n.bias.detach().double().numpy()
        got_w, got_b = layers[name]
        assert np.array_equal(got_w == 0, w == 0), name
        np.testing.assert_allclose(got_w, w, rtol=2.5e-7, atol=0)
        np.testing.assert_allclose(got_b, b, rtol=2.5e-7, atol=1e-7)


def test_row_padding_counts_in_the_choice(tmp_path):
    """Rows of 7 nonzeros in 12 columns: relative-indexed CSR (8-bit) unpadded, dense once padded to 11 entries."""
    model = nn.Linear(12, 4, bias=False).eval()
    with torch.no_grad():
        model.weight[:, 7:] = 0
    pt2 = bm.export(model, (12,), tmp_path / "pad.pt2")
    fmt = {}
    for a in ("1", "11"):
        (tmp_path / a).mkdir()
        man = check_model(model, pt2, tmp_path / a, "--row-align", a, allowed=DEFAULT, align={"fc": int(a)},
                          modules={"weight": ""})  # a bare nn.Linear's layer is named after its parameter
        fmt[a] = [(l["format"], l["index_bits"]) for l in weighted(man)]
    assert fmt == {"1": [("rcsr", 8)], "11": [("dense", 0)]}


def test_non_ascii_layer_names_give_ascii_identifiers(tmp_path):
    """A module named in another script: its arrays and blob symbols are ASCII (ISO C99, any assembler)."""
    model = nn.Sequential()
    setattr(model, "réseau", nn.Linear(8, 4))
    pt2 = bm.export(model.eval(), (8,), tmp_path / "réseau.pt2")
    for storage in ("c", "blob"):
        out = tmp_path / storage
        r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(out), "--weights", storage])
        assert r.exit_code == 0, r.output
        for f in out.iterdir():
            if f.suffix in (".c", ".h", ".S"):  # the code, outside comments (which name the layer as it is)
                code = re.sub(r"/\*.*?\*/", "", f.read_text(), flags=re.S)
                assert code.isascii(), [ln for ln in code.splitlines() if not ln.isascii()]
        assert json.loads((out / "manifest.json").read_text())["name"] == "r_seau"
    assert c_idents(json.loads((tmp_path / "c" / "manifest.json").read_text())) == {"réseau": "r_seau"}
    assert (tmp_path / "c" / "r_seau.c").is_file()


class Shared(nn.Module):
    """One conv and one linear, each applied twice: their weights are stored once, the second use's layer names the
    first in `shares_weights_of` and has only its bias among the arrays."""

    def __init__(self):
        super().__init__()
        self.c, self.fc, self.out = nn.Conv2d(2, 2, 3, padding=1), nn.Linear(32, 32), nn.Linear(32, 3)
        with torch.no_grad():
            for m in (self.c, self.fc, self.out):
                m.weight.mul_((torch.rand(m.weight.shape, generator=torch.Generator().manual_seed(4)) < 0.3).float())

    def forward(self, x):
        h = self.c(torch.relu(self.c(x)))
        return self.out(torch.relu(self.fc(torch.relu(self.fc(h.flatten(1))))))


@pytest.mark.parametrize("opts", [(), ("--target", "x86_64-avx2", "--fc-layout", "rsell"), ("--fc-layout", "wsell"),
                                  ("--fc-layout", "acsr")], ids=["host", "x86-rsell", "host-wsell", "host-acsr"])
def test_shared_weights_are_stored_once(tmp_path, opts):
    """Also in the sliced and windowed fc layouts: the second use of `fc` reads the first's arrays."""
    model = Shared().eval()
    pt2 = bm.export(model, (2, 4, 4), tmp_path / "shared.pt2")
    man = check_model(model, pt2, tmp_path, *opts, modules={"c.conv2d_1": "c", "fc.linear_1": "fc"})
    shares = {l["name"]: l["shares_weights_of"] for l in man["layers"]}
    assert shares == {"c": None, "c.conv2d_1": "c", "fc": None, "fc.linear_1": "fc", "out": None}
    assert man["totals"]["weights"] == 2 * 2 * 9 + 32 * 32 + 32 * 3
    if opts:
        fmt = opts[-1]  # out (3 x 32) has 32 inputs: windowed too
        assert {l["name"]: l["format"] for l in weighted(man) if l["op"] == "fc"} == {
            "fc": fmt, "fc.linear_1": fmt, "out": fmt}
        x = bm.random_inputs((2, 4, 4), n=4, seed=3)
        ref = model(torch.from_numpy(x)).detach().numpy()
        got = bm.outputs(tmp_path / "shared_c", x)
        assert np.allclose(got, ref, rtol=1e-4, atol=1e-5), np.abs(got - ref).max()


@pytest.mark.parametrize("opts,allowed,align", [
    (("--skip-zero-inputs", "all"), DEFAULT, None),
    (("--skip-zero-inputs", "all", "--index-bits", "1-16"), {"fc": ALL, "conv2d": ALL}, None),
    (("--skip-zero-inputs", "fc1", "--index-bits", "4", "--row-align", "4"), {"fc": (4,), "conv2d": (4,)},
     {"fc": 4, "conv2d": 4}),
])
def test_column_major_fc_layers(gaps, tmp_path, opts, allowed, align):
    """"orientation": "columns" (docs/FORMAT.md "Column-major fc layers"): the arrays are the relative-indexed CSR of
    W^T, every gap of the Gaps model's fc1 now running down its columns; the decoder transposes them back to W."""
    model, pt2, _ = gaps
    man = check_model(model, pt2, tmp_path, *opts, allowed=allowed, align=align)
    layers = {l["name"]: l for l in man["layers"]}
    cm = {n for n, l in layers.items() if l["orientation"] == "columns"}
    assert cm == ({"fc1"} if "fc1" in opts else {"fc1", "fc2"})
    assert layers["conv"]["orientation"] == "rows"
    for n in cm:
        assert "_fc_rcsc__" in layers[n]["kernel"]
        assert layers[n]["bytes"]["pointers"] == 4 * (layers[n]["shape"][1] + 1)


def test_blob_symbols_keep_the_arrays_alignment(tmp_path):
    """As C arrays a sliced layout's values carry aligned(64) (test_gaps_blocked_on_x86_64_avx2); as a blob the same
    64-byte alignment is the .balign before their symbol in NAME_weights.S (16 for every other array), and the
    assembled object places them so."""
    import shutil
    import subprocess

    from prunec import build as B

    _, pt2 = _sparse_mlp(tmp_path)
    out = tmp_path / "b"
    man = B.build(pt2, "host", out, name="mlp", storage="blob", fc_layout="rsell").manifest
    assert {l["format"] for l in weighted(man)} == {"rsell"}
    s = (out / "mlp_weights.S").read_text()
    aligns = dict((sym, int(a)) for a, sym in re.findall(r"\.balign (\d+)\n  \.globl (\w+)", s))
    assert aligns and all(a == (64 if sym.endswith("_values") else 16) for sym, a in aligns.items()), aligns
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return
    obj = tmp_path / "w.o"
    subprocess.run([cc, f"-Wa,-I{out}", "-c", str(out / "mlp_weights.S"), "-o", str(obj)], check=True)
    syms = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout.split("\n")
    for line in syms:
        parts = line.split()
        if len(parts) == 3 and parts[2] in aligns:
            assert int(parts[0], 16) % aligns[parts[2]] == 0, line
