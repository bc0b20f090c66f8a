"""Property tests of the relative-indexed CSR encoder (toolchain/prunec/encode.py, docs/FORMAT.md).

The encoder is checked against a plain-Python restatement of the format (one loop per row), on random
masks and on the shapes that break encoders: empty and full rows, all-zero layers, 1x1 / 1xN / Nx1, and gaps
beyond 2^b for every b (1x100 with nonzeros at 0 and 99 for b = 4, ..., a 70000-column row for b = 16).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunec import encode
from prunec.errors import PrunecError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BITS = st.sampled_from(encode.INDEX_BITS)


def _values(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal(n).astype(np.float32)
    v[v == 0] = 1.0
    return v


@st.composite
def matrices(draw, max_rows: int = 9, max_cols: int = 700) -> np.ndarray:
    """float32 [rows x cols] with a drawn sparsity structure; nonzero values are never 0."""
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    kind = draw(st.sampled_from(["random", "zero", "full", "ends", "sets"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = np.zeros((rows, cols), dtype=np.float32)
    if kind == "random":
        density = draw(st.sampled_from([0.01, 0.05, 0.1, 0.3, 0.7, 1.0]))
        mask = rng.random((rows, cols)) < density
        mask[rng.random(rows) < 0.2] = False  # some empty rows
        w[mask] = _values(rng, int(mask.sum()))
    elif kind == "full":
        w[:] = _values(rng, rows * cols).reshape(rows, cols)
    elif kind == "ends":  # one gap of cols - 1 per row
        w[:, 0] = _values(rng, rows)
        w[:, -1] = _values(rng, rows)
    elif kind == "sets":  # a few columns per row, shrinkable by hypothesis
        for r in range(rows):
            cs = draw(st.sets(st.integers(0, cols - 1), max_size=6))
            w[r, sorted(cs)] = _values(rng, len(cs))
    return w


@st.composite
def wide_sparse(draw) -> np.ndarray:
    """Few rows, up to 150000 columns, a handful of nonzeros: gaps beyond 2^16."""
    rows = draw(st.integers(1, 3))
    cols = draw(st.integers(60000, 150000))
    w = np.zeros((rows, cols), dtype=np.float32)
    for r in range(rows):
        cs = draw(st.sets(st.integers(0, cols - 1), max_size=4))
        w[r, sorted(cs)] = np.float32(r + 1.5)
    return w


def reference_encode(w: np.ndarray, bits: int):
    """(values, codes, row_ptr, fillers) by the format's definition, one entry at a time."""
    span = 1 << bits
    values, codes, row_ptr, fillers = [], [], [0], 0
    for row in w:
        prev = -1
        for c in np.flatnonzero(row):
            gap = int(c) - prev
            while gap > span:
                values.append(0.0)
                codes.append(span - 1)
                gap -= span
                fillers += 1
            values.append(float(row[c]))
            codes.append(gap - 1)
            prev = int(c)
        row_ptr.append(len(values))
    return np.array(values, np.float32), np.array(codes, np.uint16), np.array(row_ptr, np.uint32), fillers


def gaps_of(w: np.ndarray) -> list[int]:
    out = []
    for row in w:
        cols = np.flatnonzero(row)
        out += list(np.diff(np.concatenate([[-1], cols])))
    return [int(g) for g in out]


def check_encoding(w: np.ndarray, bits: int) -> encode.RCSR:
    r = encode.encode_rcsr(w, bits)
    values, codes, row_ptr, fillers = reference_encode(w, bits)
    assert (r.rows, r.cols, r.index_bits) == (*w.shape, bits)
    np.testing.assert_array_equal(r.values, values)
    np.testing.assert_array_equal(r.codes, codes)
    np.testing.assert_array_equal(r.row_ptr, row_ptr)
    assert r.fillers == fillers == sum((g - 1) >> bits for g in gaps_of(w))
    assert r.nonzero == np.count_nonzero(w)
    assert r.entries == r.nonzero + r.fillers
    assert encode.count_entries(w, bits) == (r.entries, r.fillers)
    assert r.codes.size == 0 or int(r.codes.max()) < (1 << bits)
    np.testing.assert_array_equal(encode.decode_rcsr(r), w)
    return r


# ---- round trips ----------------------------------------------------------------------------------------

@SETTINGS
@given(matrices(), BITS)
def test_round_trip_and_fillers(w, bits):
    check_encoding(w, bits)


@settings(max_examples=40, deadline=None)
@given(wide_sparse(), BITS)
def test_gaps_beyond_2_pow_16(w, bits):
    check_encoding(w, bits)


@pytest.mark.parametrize("bits", encode.INDEX_BITS)
def test_gap_just_beyond_span(bits):
    """Nonzeros at 0 and 2^b + k: gap 2^b + k, so one filler iff k >= 1 (a gap of exactly 2^b needs none)."""
    span = 1 << bits
    for extra, want_fillers in ((-1, 0), (0, 0), (1, 1), (span, 1), (span + 1, 2)):
        w = np.zeros((1, span + extra + 1), np.float32)
        w[0, 0] = 1.0
        w[0, span + extra] = 2.0
        r = check_encoding(w, bits)
        assert r.fillers == want_fillers, (bits, extra)


def test_1x100_b4_worked_example():
    """The example of docs/FORMAT.md: gap 99 = 6 fillers of 16 columns + a final code of 2."""
    w = np.zeros((1, 100), np.float32)
    w[0, 0], w[0, 99] = 0.5, -1.5
    r = check_encoding(w, 4)
    assert r.codes.tolist() == [0, 15, 15, 15, 15, 15, 15, 2]
    assert r.values.tolist() == [0.5, 0, 0, 0, 0, 0, 0, -1.5]
    assert r.packed_index() == bytes([0xF0, 0xFF, 0xFF, 0x2F])
    r8 = check_encoding(w, 8)
    assert r8.codes.tolist() == [0, 98] and r8.fillers == 0


@pytest.mark.parametrize("bits", encode.INDEX_BITS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (37, 1), (5, 17)])
def test_all_zero_layer(bits, shape):
    w = np.zeros(shape, np.float32)
    r = check_encoding(w, bits)
    assert r.entries == 0 and r.packed_index() == b"" and r.row_ptr.tolist() == [0] * (shape[0] + 1)


@pytest.mark.parametrize("bits", encode.INDEX_BITS)
def test_tiny_and_thin_shapes(bits):
    check_encoding(np.ones((1, 1), np.float32), bits)
    check_encoding(np.arange(1, 41, dtype=np.float32).reshape(1, 40), bits)
    check_encoding(np.arange(1, 41, dtype=np.float32).reshape(40, 1), bits)
    rows_empty_and_full = np.zeros((4, 20), np.float32)
    rows_empty_and_full[1] = 1.0
    rows_empty_and_full[3, -1] = 2.0
    check_encoding(rows_empty_and_full, bits)


def test_conv_and_vector_weights_are_viewed_as_matrices():
    w4 = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    r = encode.encode_rcsr(w4, 8)
    assert (r.rows, r.cols) == (2, 12)
    np.testing.assert_array_equal(encode.decode_rcsr(r), w4.reshape(2, -1))
    r1 = encode.encode_rcsr(np.array([0, 3, 0, 4], np.float32), 4)
    assert (r1.rows, r1.cols) == (1, 4)


def test_rejects_bad_bits_and_detects_overflowing_columns():
    for bad in (0, 17, 32):
        with pytest.raises(ValueError):
            encode.encode_rcsr(np.ones((2, 2), np.float32), bad)
        with pytest.raises(ValueError):
            encode.pack_codes(np.zeros(3, np.uint16), bad)
    r = encode.encode_rcsr(np.eye(3, dtype=np.float32), 8)
    r.codes[-1] = 7  # column beyond cols
    with pytest.raises(ValueError):
        encode.decode_rcsr(r)


# ---- packing --------------------------------------------------------------------------------------------

@SETTINGS
@given(BITS, st.data())
def test_pack_unpack_round_trip(bits, data):
    codes = np.array(data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=60)), dtype=np.uint16)
    packed = encode.pack_codes(codes, bits)
    assert len(packed) == (codes.size * bits + 7) // 8
    np.testing.assert_array_equal(encode.unpack_codes(packed, bits, codes.size), codes)
    raw = np.frombuffer(packed, np.uint8)
    for i, c in enumerate(codes.tolist()):  # the byte layout the C kernels read
        if bits == 4:
            assert (raw[i // 2] >> (4 * (i % 2))) & 0xF == c
        elif bits == 8:
            assert raw[i] == c
        elif bits == 16:
            assert int(raw[2 * i]) | (int(raw[2 * i + 1]) << 8) == c
        # every width: bit k of the stream is bit k % 8 of byte k // 8, code i in bits bits*i .. bits*i+bits-1
        got = sum(((int(raw[(bits * i + k) // 8]) >> ((bits * i + k) % 8)) & 1) << k for k in range(bits))
        assert got == c


def test_six_bit_stream_example():
    """docs/FORMAT.md's 6-bit example: codes 1, 2, 3, 63 pack into 3 bytes, LSB first."""
    assert encode.pack_codes(np.array([1, 2, 3, 63], np.uint16), 6) == bytes([0x81, 0x30, 0xFC])
    assert encode.unpack_codes(bytes([0x81, 0x30, 0xFC]), 6, 4).tolist() == [1, 2, 3, 63]
    with pytest.raises(ValueError):
        encode.unpack_codes(bytes([0x81, 0x30]), 6, 4)  # 16 bits hold only 2 codes


def test_check_index_bits_ranges_and_errors():
    assert encode.check_index_bits(["4-8", "16"], "x") == (4, 5, 6, 7, 8, 16)
    assert encode.check_index_bits([6], "x") == (6,)
    assert encode.check_index_bits(["1-16"], "x") == encode.INDEX_BITS
    for bad in (["0"], ["17"], ["8-4"], ["-3"], ["x"], [], "4,8", [True], [6.5], ["4-20"]):
        with pytest.raises(PrunecError, match="1 to 16"):
            encode.check_index_bits(bad, "--index-bits")


def test_pack_rejects_unknown_bits():
    for bad in (0, 17, 24):
        with pytest.raises(ValueError):
            encode.pack_codes(np.zeros(3, np.uint16), bad)
        with pytest.raises(ValueError):
            encode.unpack_codes(b"\0\0\0\0", bad, 1)


# ---- choosing the storage -------------------------------------------------------------------------------

def brute_force_sizes(w: np.ndarray, value_bytes: int) -> dict:
    rows, cols = w.shape
    sizes = {}
    for bits in encode.INDEX_BITS:
        values, codes, row_ptr, _ = reference_encode(w, bits)
        sizes[bits] = values.size * value_bytes + (codes.size * bits + 7) // 8 + (rows + 1) * 4
    sizes["dense"] = rows * cols * value_bytes
    return sizes


@SETTINGS
@given(matrices(max_cols=400), st.sampled_from([1, 2, 4]), st.booleans())
def test_choose_encoding_is_minimal(w, value_bytes, allow_dense):
    sizes = brute_force_sizes(w, value_bytes)
    e = encode.choose_encoding(w, value_bytes=value_bytes, allow_dense=allow_dense, bits_options=encode.INDEX_BITS)
    best_rcsr = min(sizes[b] for b in encode.INDEX_BITS)
    candidates = {k: v for k, v in sizes.items() if allow_dense or k != "dense"}
    assert e.total_bytes == min(candidates.values())
    assert e.nonzero == np.count_nonzero(w) and (e.rows, e.cols) == w.shape
    if e.format == "dense":
        assert allow_dense and sizes["dense"] <= best_rcsr  # ties go to dense (simpler kernel)
        np.testing.assert_array_equal(e.dense, w)
        assert e.index_bits == 0 and e.fillers == 0
    else:
        assert e.format == "rcsr"
        assert sizes[e.index_bits] == best_rcsr
        assert e.sizes == encode.layer_bytes(e.rcsr.entries, w.shape[0], e.index_bits, value_bytes)
        np.testing.assert_array_equal(encode.decode_rcsr(e.rcsr), w)


def test_choose_encoding_counts_fillers():
    """Far-apart nonzeros make 4-bit gaps lose to 8-bit ones once fillers are counted (NOTES.md)."""
    rng = np.random.default_rng(0)
    w = np.zeros((64, 2048), np.float32)
    mask = rng.random(w.shape) < 0.04
    w[mask] = 1.0
    e = encode.choose_encoding(w)
    assert e.format == "rcsr" and e.index_bits == 8
    # with every width allowed, 6 or 7 bits win at 4 % (a gap of ~25 columns: few fillers, fewer bits)
    e_any = encode.choose_encoding(w, bits_options=encode.INDEX_BITS)
    assert e_any.index_bits in (6, 7) and e_any.total_bytes < e.total_bytes
    np.testing.assert_array_equal(encode.decode_rcsr(e_any.rcsr), w)
    dense_ish = np.ones((8, 8), np.float32)
    assert encode.choose_encoding(dense_ish).format == "dense"


# ---- row alignment (prunec build --row-align, a target's [row_align_by_op]) -----------------------------

@SETTINGS
@given(matrices(max_cols=300), BITS, st.sampled_from([2, 4, 8, 16]))
def test_padded_rows_decode_to_the_same_matrix(w, bits, align):
    r = encode.encode_rcsr(w, bits)
    p = encode.pad_rows(r, align)
    np.testing.assert_array_equal(encode.decode_rcsr(p), w)  # same matrix: padding entries are zeros
    assert p.nonzero == r.nonzero and p.entries == p.nonzero + p.fillers
    assert p.codes.size == 0 or int(p.codes.max()) < (1 << bits)  # padding only splits gaps
    before, after = np.diff(r.row_ptr.astype(np.int64)), np.diff(p.row_ptr.astype(np.int64))
    for row, (k0, k) in enumerate(zip(before, after)):
        if k % align:  # only a row without enough unused columns stays unaligned, and then untouched
            assert k == k0 and w.shape[1] - k0 < (-k0) % align, (row, k0, k)
        else:
            assert k0 <= k < k0 + align
        lo, hi = int(p.row_ptr[row]), int(p.row_ptr[row + 1])
        cols = np.cumsum(p.codes[lo:hi].astype(np.int64) + 1) - 1
        assert cols.size == 0 or (np.all(np.diff(cols) > 0) and cols[-1] < w.shape[1])
    assert encode.pad_rows(r, 1) is r


def test_padding_goes_after_the_last_entry_when_there_is_room():
    w = np.zeros((2, 20), np.float32)
    w[0, [1, 4, 6]] = [1, 2, 3]  # room after column 6: codes of the row unchanged, 5 zeros at 7..11
    w[1, [2, 15, 17, 19]] = [4, 5, 6, 7]  # ends at the last column: 4 zeros in the highest free columns
    p = encode.pad_rows(encode.encode_rcsr(w, 8), 8)
    assert list(p.codes[:8]) == [1, 2, 1, 0, 0, 0, 0, 0] and list(p.values[:8]) == [1, 2, 3, 0, 0, 0, 0, 0]
    cols = np.cumsum(p.codes[8:].astype(np.int64) + 1) - 1
    assert list(cols) == [2, 13, 14, 15, 16, 17, 18, 19] and p.fillers == 9


def test_choose_encoding_with_row_align():
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((40, 300)) * (rng.random((40, 300)) < 0.08)).astype(np.float32)
    plain = encode.choose_encoding(w, bits_options=(8, 16))
    padded = encode.choose_encoding(w, bits_options=(8, 16), row_align=8)
    assert padded.format == "rcsr" and padded.row_align == 8 and plain.row_align == 1
    assert np.all(np.diff(padded.rcsr.row_ptr.astype(np.int64)) % 8 == 0)
    assert padded.total_bytes > plain.total_bytes and padded.fillers > plain.fillers
    np.testing.assert_array_equal(encode.decode_rcsr(padded.rcsr), w)
    # a layer that padding would make larger than dense is stored dense
    d = (rng.standard_normal((10, 9)) * (rng.random((10, 9)) < 0.7)).astype(np.float32)
    assert encode.choose_encoding(d, bits_options=(4,)).format == "rcsr"
    assert sum(encode.pad_rows(encode.encode_rcsr(d, 4), 4).bytes().values()) > d.size * 4
    assert encode.choose_encoding(d, bits_options=(4,), row_align=4).format == "dense"
    with pytest.raises(encode.PrunecError, match="row alignment"):
        encode.check_row_align(0, "--row-align")
