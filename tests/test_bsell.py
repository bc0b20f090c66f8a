"""The blocked sliced layout of fc layers (docs/FORMAT.md "Blocked fc layers"; prunec_bsell_f32): the encoder, the
build's choice of it on x86_64-avx2 (and nowhere else), `--fc-layout`, and whole builds through the real kernels
against PyTorch. The kernels themselves run on every fc edge case in test_kernels_portable.py (portable) and
test_avx512x4_kernels.py / test_isa_kernels.py (AVX-512)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import build_models as bm
from prunec import build as B
from prunec import encode, targets, verify
from prunec.errors import PrunecError


def _cpu_has_avx512() -> bool:
    return {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify.cpu_flags() or set())


@pytest.mark.parametrize("shape,density", [((300, 784), 0.07), ((17, 33), 0.5), ((1, 1), 1.0), ((16, 32), 0.0),
                                           ((5, 70), 0.9), ((64, 64), 1.0), ((33, 1), 0.5)])
def test_encoder_round_trip_and_counts(shape, density):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    w = (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(np.float32)
    b = encode.encode_bsell(w)
    assert np.array_equal(b.to_dense(), w)
    slices, blocks = -(-shape[0] // 16), -(-shape[1] // 32)
    assert b.steps.shape == (slices * blocks,) and b.steps.dtype == np.uint8
    assert b.slots == 16 * int(b.steps.sum()) == encode.bsell_slots(w) == b.index.size
    assert b.nonzero == np.count_nonzero(w) and b.fillers == b.slots - b.nonzero
    assert b.index.max(initial=0) < 32 and b.bytes() == {"values": 4 * b.slots, "index": b.slots,
                                                          "pointers": slices * blocks + 2 * 16 * slices}
    # every row once, then 0 for the lanes past the last row; no more steps than with the rows by nonzero count (most
    # first, ties: lower row first), whose order the swaps start from; the last, partial slice holds the same rows
    counts = np.count_nonzero(w, axis=1)
    assert sorted(b.perm[:shape[0]]) == list(range(shape[0])) and not b.perm[shape[0]:].any()
    by_count = sorted(range(shape[0]), key=lambda r: (-counts[r], r))
    cnt = np.zeros((slices * 16, blocks), np.int64)
    cnt[:shape[0]] = encode._block_counts(w)[by_count]
    assert b.slots <= 16 * int(cnt.reshape(slices, 16, blocks).max(axis=1).sum())
    full = shape[0] // 16 * 16
    assert sorted(b.perm[full:shape[0]]) == sorted(by_count[full:])
    # step count of a (slice, block): the most nonzeros any row of the slice has in the block
    nz = np.pad(w[b.perm[:shape[0]]] != 0, ((0, slices * 16 - shape[0]), (0, blocks * 32 - shape[1])))
    per_row = nz.reshape(slices, 16, blocks, 32).sum(axis=3)
    assert np.array_equal(b.steps.reshape(slices, blocks), per_row.max(axis=1))


def test_encoder_slot_order_is_slice_block_step_lane():
    """Slot (step j, lane l) of (slice s, block b): the j-th nonzero in the block of lane l's row (perm[16s + l]),
    columns ascending; rows by nonzero count, most first."""
    w = np.zeros((17, 40), np.float32)
    w[0, [1, 5]] = [1, 2]      # 2 nonzeros: lane 0 of slice 0; block 0: 2 steps
    w[3, 4] = 3                # 1 nonzero each, in row order: rows 2, 3, 16 -> lanes 1, 2, 3
    w[2, 33] = 4               # block 1
    w[16, 39] = 5              # block 1
    b = encode.encode_bsell(w)
    assert list(b.perm[:5]) == [0, 2, 3, 16, 1] and list(b.perm[16:]) == [15] + [0] * 15
    assert list(b.steps) == [2, 1, 0, 0]  # slice 1 holds row 15 only (no nonzeros)
    v, i = b.values.reshape(-1, 16), b.index.reshape(-1, 16)
    assert v[0, 0] == 1 and i[0, 0] == 1 and v[1, 0] == 2 and i[1, 0] == 5 and v[0, 2] == 3 and i[0, 2] == 4
    assert v[2, 1] == 4 and i[2, 1] == 1 and v[2, 3] == 5 and i[2, 3] == 7
    assert np.count_nonzero(v) == 5 and np.array_equal(b.to_dense(), w)


def test_row_order_swaps_rows_between_slices_that_fill_other_blocks():
    """Rows 0-14 and 31 fill block 0, rows 15-30 block 1, one nonzero each: by count (all 1, so row order) each slice
    holds both kinds and pays a step in both blocks (64 slots); one swap, row 15 for row 31, halves that."""
    w = np.zeros((32, 64), np.float32)
    w[list(range(15)) + [31], 0] = 1
    w[range(15, 31), 32] = 2
    order = encode.bsell_row_order(w, rounds=0)
    assert list(order) == list(range(32))
    c = encode._block_counts(w)[order].reshape(2, 16, 2)
    assert 16 * int(c.max(axis=1).sum()) == 64  # without the swaps
    b = encode.encode_bsell(w)
    assert b.slots == 32 and list(b.steps) == [1, 0, 0, 1] and np.array_equal(b.to_dense(), w)
    assert sorted(b.perm[:16]) == list(range(15)) + [31] and sorted(b.perm[16:]) == list(range(15, 31))


def _mlp_case(tmp_path, widths=(200, 70, 33, 10), density=0.1, seed=0):
    return bm.sparse_mlp_case(tmp_path, widths, density, seed)


@pytest.mark.skipif(not _cpu_has_avx512(), reason="this CPU lacks AVX-512: the x86 build keeps relative-indexed CSR")
def test_x86_build_stores_small_fc_layers_blocked_and_computes_what_pytorch_computes(tmp_path):
    pt2, x, ref = _mlp_case(tmp_path)
    layers = {}
    for tag, target, layout in (("x86", "x86_64-avx2", None), ("x86-rcsr", "x86_64-avx2", "rcsr"),
                                ("host", "host", None)):
        d = tmp_path / tag
        man = B.build(pt2, target, d, name="mlp", fc_layout=layout).manifest
        layers[tag] = man["layers"]
        r = verify.compare(verify.run_host(d, x), ref)
        assert r.ok and r.top1_agreement == 1.0, (tag, r.text())
        src = (d / "mlp.c").read_text()
        assert ("prunec_f32_fc_bsell__avx512x4" in src) == (tag == "x86")
    assert [l["format"] for l in layers["x86"]] == ["bsell"] * 3
    assert all(l["kernel"] == "prunec_f32_fc_bsell__avx512x4" for l in layers["x86"])
    assert [l["format"] for l in layers["x86-rcsr"]] == ["rcsr"] * 3 == [l["format"] for l in layers["host"]]
    for l in layers["x86"]:  # slots = nonzeros + fillers; one index byte and one value per slot
        slots = l["nonzero"] + l["fillers"]
        assert l["bytes"]["values"] == 4 * slots and l["bytes"]["index"] == slots and l["index_bits"] == 8
    # the blocked layout takes more bytes than relative-indexed CSR: it is chosen for speed
    assert sum(sum(l["bytes"].values()) for l in layers["x86"]) > sum(sum(l["bytes"].values()) for l in layers["x86-rcsr"])


def test_blocked_layout_needs_the_avx512_kernel_and_stays_under_the_targets_limit(tmp_path, monkeypatch):
    """Without the AVX-512 kernels (PRUNEC_AVX512=0) the x86 build never uses the blocked layout (its portable twin
    is slower than the CSR kernels; the sliced one, which has an AVX2 kernel, is turned off here by
    PRUNEC_FC_RSELL=0: test_rsell.py); a layer whose slots exceed fc_bsell_max_bytes stays relative-indexed too."""
    pt2, x, ref = _mlp_case(tmp_path, widths=(300, 200, 10), density=0.3, seed=3)
    monkeypatch.setenv("PRUNEC_AVX512", "0")
    monkeypatch.setenv("PRUNEC_FC_RSELL", "0")
    man = B.build(pt2, "x86_64-avx2", tmp_path / "noavx512", name="mlp").manifest
    assert [l["format"] for l in man["layers"]] == ["rcsr", "rcsr"]
    assert B.bsell_limit(targets.get("x86_64-avx2"), "auto") == 0
    monkeypatch.delenv("PRUNEC_AVX512")
    monkeypatch.delenv("PRUNEC_FC_RSELL")
    if not _cpu_has_avx512():
        return
    t = targets.get("x86_64-avx2")
    assert B.bsell_limit(t, "auto") == t.extra["fc_bsell_max_bytes"] == 4 << 20 and B.bsell_limit(t, "rcsr") == 0
    # fc1 (300 -> 200 at 30 %) takes 16 * sum(steps) slots of 5 bytes; a limit just below it keeps it relative-indexed
    # (when the sliced layout is off)
    from prunec import frontend

    enc = B.encode_graph(frontend.load(pt2)[0], t)
    first = next(iter(enc.values()))
    assert first.format == "bsell"
    patched = dataclasses.replace(t, extra={**t.extra, "fc_bsell_max_bytes": 5 * first.bsell.slots - 1})
    get = targets.get
    monkeypatch.setattr(targets, "get", lambda name: patched if name == "x86_64-avx2" else get(name))
    monkeypatch.setenv("PRUNEC_FC_RSELL", "0")  # on an Intel CPU the layer would take the sliced layout (test_rsell.py)
    man = B.build(pt2, "x86_64-avx2", tmp_path / "limit", name="mlp").manifest
    assert [l["format"] for l in man["layers"]] == ["rcsr", "bsell"]
    r = verify.compare(verify.run_host(tmp_path / "limit", x), ref)
    assert r.ok and r.top1_agreement == 1.0, r.text()


def test_fc_layout_flag_and_bad_values(tmp_path):
    from click.testing import CliRunner

    from prunec.cli import main

    pt2, _, _ = _mlp_case(tmp_path, widths=(64, 10), density=0.5)
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", "x86_64-avx2", "--out", str(tmp_path / "a"),
                                  "--fc-layout", "rcsr"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["layers"][0]["format"] == "rcsr"
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "bad"), "--fc-layout", "ell"])
    assert r.exit_code == 2 and "--fc-layout" in r.output and not (tmp_path / "bad").exists()
    with pytest.raises(PrunecError, match="--fc-layout 'ell'"):
        B.build(pt2, "host", tmp_path / "bad2", fc_layout="ell")
    assert not (tmp_path / "bad2").exists()
    bad = tmp_path / "t.toml"
    bad.write_text('name = "t"\nisa = ["avx512x4", "portable"]\ncc = "cc"\nfc_bsell_max_bytes = -1\n')
    with pytest.raises(PrunecError, match="fc_bsell_max_bytes"):
        B.bsell_limit(targets._load(bad), "auto")
