"""The relative-indexed sliced layout of fc layers (docs/FORMAT.md "Sliced fc layers"; prunec_rsell_f32): the encoder,
the build's choice of it (x86_64-avx2 on a CPU vendor the target names, PRUNEC_FC_RSELL, `--fc-layout rsell`), and
whole builds through the real kernels against PyTorch. The kernels themselves run on every fc edge case in
test_kernels_portable.py (portable) and test_avx512x4_kernels.py / test_isa_kernels.py (AVX-512)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import build_models as bm
import kernel_harness as kh
from prunec import build as B
from prunec import encode, runtime, targets, verify
from prunec.errors import PrunecError


def _cpu_has_avx512() -> bool:
    return {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify.cpu_flags() or set())


def _entries(w: np.ndarray) -> np.ndarray:
    """Entries per row in 8-bit relative-indexed CSR: the nonzeros plus a filler per 256 columns of a longer gap."""
    r = encode.encode_rcsr(w, 8)
    return np.diff(r.row_ptr.astype(np.int64))


@pytest.mark.parametrize("shape,density", [((300, 784), 0.07), ((17, 33), 0.5), ((1, 1), 1.0), ((16, 32), 0.0),
                                           ((5, 700), 0.01), ((64, 64), 1.0), ((33, 1), 0.5), ((40, 3000), 0.003),
                                           ((0, 8), 0.5), ((3, 0), 0.5)])
def test_encoder_round_trip_and_invariants(shape, density):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    w = (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(np.float32)
    r = encode.encode_rsell(w)
    rows, cols = shape
    slices = -(-rows // 16)
    assert np.array_equal(r.to_dense(), w)
    assert r.steps.shape == (slices,) and r.steps.dtype == np.uint32 and r.perm.shape == (16 * slices,)
    assert r.slots == 16 * int(r.steps.sum()) == r.index.size == r.values.size
    assert r.nonzero == np.count_nonzero(w) and r.fillers == r.slots - r.nonzero
    assert r.bytes() == {"values": 4 * r.slots, "index": r.slots, "pointers": 4 * slices + 32 * slices}
    # rows by entry count, most first (ties: lower row first); 0 for the lanes past the last row
    n = _entries(w) if rows else np.zeros(0, np.int64)
    assert list(r.perm[:rows]) == sorted(range(rows), key=lambda i: (-n[i], i)) and not r.perm[rows:].any()
    # a slice's step count is its fullest row's entries; every column inside the row, strictly ascending per lane
    lanes = np.zeros(16 * slices, np.int64)
    lanes[:rows] = n[r.perm[:rows]]
    assert np.array_equal(r.steps, lanes.reshape(slices, 16).max(axis=1) if slices else np.zeros(0))
    cols_of = r.columns()
    pos = 0
    for s, k in enumerate(r.steps.astype(int)):
        c = cols_of[pos:pos + 16 * k].reshape(k, 16)
        assert (c >= 0).all() and (c < cols).all() and (np.diff(c, axis=0) > 0).all()
        for lane in range(16):
            if 16 * s + lane >= rows:  # past the last row: columns 0 .. k-1, weights 0
                assert list(c[:, lane]) == list(range(k)) and not r.values[pos + lane:pos + 16 * k:16].any()
        pos += 16 * k


def test_encoder_padding_goes_to_the_lowest_free_columns_and_long_gaps_get_fillers():
    w = np.zeros((17, 600), np.float32)
    w[0, [0, 1, 2, 599]] = [1, 2, 3, 4]  # gap 597: fillers at 258 and 514 (as 8-bit CSR), then 599: 6 entries
    w[5, [3, 10]] = [5, 6]                # 2 entries: padded with columns 0, 1, 2, 4 (the lowest it has none in)
    w[16, 7] = 7                          # 1 entry: lane 2 of slice 0; slice 1 holds row 15 (empty)
    r = encode.encode_rsell(w)
    assert list(r.perm[:4]) == [0, 5, 16, 1] and list(r.perm[16:]) == [15] + [0] * 15 and list(r.steps) == [6, 0]
    c, v = r.columns().reshape(-1, 16), r.values.reshape(-1, 16)
    assert list(c[:, 0]) == [0, 1, 2, 258, 514, 599] and list(v[:, 0]) == [1, 2, 3, 0, 0, 4]
    assert list(c[:, 1]) == [0, 1, 2, 3, 4, 10] and list(v[:, 1]) == [0, 0, 0, 5, 0, 6]
    assert list(c[:, 2]) == [0, 1, 2, 3, 4, 7] and list(v[:, 2]) == [0, 0, 0, 0, 0, 7]
    assert list(c[:, 3]) == list(range(6)) and not v[:, 3:].any()  # row 1 and the rest: empty, all fillers
    assert r.index.max() <= 255 and np.array_equal(r.to_dense(), w)


def test_encoder_refuses_more_rows_than_uint16_numbers():
    with pytest.raises(ValueError, match="65536"):
        encode.encode_rsell(np.zeros((65537, 1), np.float32))


def _mlp_case(tmp_path, widths=(700, 300, 33, 10), density=0.1, seed=0):
    return bm.sparse_mlp_case(tmp_path, widths, density, seed)


def _no_bsell(monkeypatch, limit=0):
    """x86_64-avx2 with fc_bsell_max_bytes = `limit`: no layer (or only tiny ones) takes the blocked layout."""
    t = targets.get("x86_64-avx2")
    patched = dataclasses.replace(t, extra={**t.extra, "fc_bsell_max_bytes": limit})
    get = targets.get
    monkeypatch.setattr(targets, "get", lambda name: patched if name == "x86_64-avx2" else get(name))
    return patched


@pytest.mark.parametrize("target", ["x86_64-avx2", "host"])
def test_fc_layout_rsell_builds_compute_what_pytorch_computes(tmp_path, target):
    """`--fc-layout rsell` stores every sparse fc layer sliced, on any target (host: the portable kernel; x86 with
    AVX-512: the gather kernel), and the build verifies against PyTorch."""
    pt2, x, ref = _mlp_case(tmp_path, seed=1)
    d = tmp_path / target
    man = B.build(pt2, target, d, name="mlp", fc_layout="rsell").manifest
    assert [l["format"] for l in man["layers"]] == ["rsell"] * 3
    isa = "avx512x4" if target == "x86_64-avx2" and _cpu_has_avx512() else "portable"
    assert all(l["kernel"] == f"prunec_f32_fc_rsell__{isa}" for l in man["layers"])
    for l in man["layers"]:  # one code byte and one value per slot; about the bytes of 8-bit CSR for long rows
        slots = l["nonzero"] + l["fillers"]
        assert l["bytes"]["values"] == 4 * slots and l["bytes"]["index"] == slots and l["index_bits"] == 8
    r = verify.compare(verify.run_host(d, x), ref)
    assert r.ok and r.top1_agreement == 1.0, r.text()
    src = (d / "mlp.c").read_text()
    assert "static const prunec_rsell_f32 fcs_0_w = {300u, 700u, fcs_0_perm, fcs_0_steps," in src  # rows, cols


def test_auto_takes_the_sliced_layout_by_cpu_vendor_and_env(tmp_path, monkeypatch):
    """--fc-layout auto on x86_64-avx2: fc layers too big for the blocked layout go sliced when the build machine's
    vendor is in the target's fc_rsell_vendors (Intel), its gathers are not slowed, and an ISA kernel of the layout
    is compiled in (AVX-512 or AVX2); PRUNEC_FC_RSELL=1/0 decides instead of the vendor; --fc-layout rcsr never."""
    pt2, x, ref = _mlp_case(tmp_path, seed=2)
    monkeypatch.setenv("PRUNEC_AVX512", "0")
    monkeypatch.setenv("PRUNEC_FC_RSELL", "1")
    flags = verify.cpu_flags() or set()
    # without the AVX-512 kernels the AVX2 one runs the layout (where the compiler has AVX2); only a build without
    # any ISA kernel for it (the portable twin is slower than the CSR kernels) keeps relative-indexed CSR
    assert B.rsell_allowed(targets.get("x86_64-avx2"), "auto") == (
        B.runtime.select("fc_rsell", targets.get("x86_64-avx2").isa_for("fc_rsell")).isa == "avx2")
    if {"avx2", "fma"} <= flags:
        man = B.build(pt2, "x86_64-avx2", tmp_path / "avx2", name="mlp").manifest
        assert [l["format"] for l in man["layers"]] == ["rsell"] * 3  # no blocked layout without AVX-512: all sliced
        assert all(l["kernel"] == "prunec_f32_fc_rsell__avx2" for l in man["layers"])
        r = verify.compare(verify.run_host(tmp_path / "avx2", x), ref)
        assert r.ok and r.top1_agreement == 1.0, r.text()
    monkeypatch.delenv("PRUNEC_AVX512")
    monkeypatch.delenv("PRUNEC_FC_RSELL")
    t = _no_bsell(monkeypatch)
    assert t.extra["fc_rsell_vendors"] == ["GenuineIntel"]
    if not _cpu_has_avx512():
        assert not B.rsell_allowed(t, "auto")
        return
    monkeypatch.setattr(B, "gathers_slowed", lambda: False)
    for vendor, want in (("GenuineIntel", True), ("AuthenticAMD", False), (None, False)):
        monkeypatch.setattr(B, "cpu_vendor", lambda v=vendor: v)
        assert B.rsell_allowed(t, "auto") is want, vendor
        assert B.rsell_allowed(t, "rsell") and not B.rsell_allowed(t, "rcsr")
    monkeypatch.setattr(B, "cpu_vendor", lambda: "GenuineIntel")  # an Intel core under the GDS microcode mitigation
    monkeypatch.setattr(B, "gathers_slowed", lambda: True)          # (Skylake .. Tiger Lake): gathers several times slower
    assert not B.rsell_allowed(t, "auto")
    monkeypatch.setattr(B, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setenv("PRUNEC_FC_RSELL", "1")  # AMD and slowed gathers still set: the variable decides
    assert B.rsell_allowed(t, "auto")
    man = B.build(pt2, "x86_64-avx2", tmp_path / "forced", name="mlp").manifest
    assert [l["format"] for l in man["layers"]] == ["rsell"] * 3
    assert all(l["kernel"] == "prunec_f32_fc_rsell__avx512x4" for l in man["layers"])
    r = verify.compare(verify.run_host(tmp_path / "forced", x), ref)
    assert r.ok and r.top1_agreement == 1.0, r.text()
    man = B.build(pt2, "x86_64-avx2", tmp_path / "rcsr", name="mlp", fc_layout="rcsr").manifest
    assert [l["format"] for l in man["layers"]] == ["rcsr"] * 3
    monkeypatch.setenv("PRUNEC_FC_RSELL", "0")
    monkeypatch.setattr(B, "cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.setattr(B, "gathers_slowed", lambda: False)
    assert not B.rsell_allowed(t, "auto")


@pytest.mark.skipif(not _cpu_has_avx512(), reason="this CPU lacks AVX-512: the x86 build uses neither sliced layout")
def test_auto_keeps_the_blocked_layout_for_small_layers_and_slices_the_rest(tmp_path, monkeypatch):
    """With both layouts allowed, a layer within fc_bsell_max_bytes stays blocked; the bigger ones go sliced."""
    pt2, x, ref = _mlp_case(tmp_path, seed=3)
    monkeypatch.setenv("PRUNEC_FC_RSELL", "1")
    _no_bsell(monkeypatch, limit=20000)  # fc2 (300 -> 33) and fc3 (33 -> 10) fit in 20 kB blocked; fc1 does not
    man = B.build(pt2, "x86_64-avx2", tmp_path / "mixed", name="mlp").manifest
    assert [l["format"] for l in man["layers"]] == ["rsell", "bsell", "bsell"]
    r = verify.compare(verify.run_host(tmp_path / "mixed", x), ref)
    assert r.ok and r.top1_agreement == 1.0, r.text()


def test_bad_env_and_target_values_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    pt2, _, _ = _mlp_case(tmp_path, widths=(64, 10), density=0.5)
    t = targets.get("x86_64-avx2")
    monkeypatch.setenv("PRUNEC_FC_RSELL", "yes")
    if B.runtime.select("fc_rsell", t.isa_for("fc_rsell")).isa != B.runtime.PORTABLE:
        with pytest.raises(PrunecError, match="PRUNEC_FC_RSELL='yes'"):
            B.build(pt2, "x86_64-avx2", tmp_path / "bad", name="mlp")
        assert not (tmp_path / "bad").exists()
    monkeypatch.delenv("PRUNEC_FC_RSELL")
    bad = tmp_path / "t.toml"
    bad.write_text('name = "t"\nisa = ["avx512x4", "portable"]\ncc = "cc"\nfc_rsell_vendors = "GenuineIntel"\n')
    with pytest.raises(PrunecError, match="fc_rsell_vendors must be a list"):
        B.rsell_allowed(targets._load(bad), "auto")
    with pytest.raises(PrunecError, match="--fc-layout 'ell'"):
        B.rsell_allowed(t, "ell")


def test_cli_fc_layout_rsell(tmp_path):
    from click.testing import CliRunner

    from prunec.cli import main

    pt2, _, _ = _mlp_case(tmp_path, widths=(64, 10), density=0.5)
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", "host", "--out", str(tmp_path / "a"), "--fc-layout", "rsell"])
    assert r.exit_code == 0, r.output
    layer = json.loads((tmp_path / "a" / "manifest.json").read_text())["layers"][0]
    assert layer["format"] == "rsell" and layer["kernel"] == "prunec_f32_fc_rsell__portable"
    assert "relative-indexed sliced layout" in (tmp_path / "a" / "mlp.c").read_text()


def test_gathers_slowed_reads_the_kernels_gds_status(tmp_path, monkeypatch):
    f = tmp_path / "gather_data_sampling"
    monkeypatch.setattr(verify, "GDS_STATUS", f)
    assert not verify.gathers_slowed()  # no such file (not Linux, an old kernel): not known to be slowed
    for text, want in (("Not affected\n", False), ("Vulnerable\n", False), ("Vulnerable: No microcode\n", False),
                       ("Mitigation: Microcode\n", True), ("Mitigation: AVX disabled, no microcode\n", True)):
        f.write_text(text)
        assert verify.gathers_slowed() is want, text


@pytest.mark.parametrize("target", ["aarch64-neon", "cortex-m4"])
def test_fc_layout_rsell_cross_builds_verify_under_qemu(tmp_path, target):
    """The portable kernel of the sliced layout compiles with an embedded target's own (strict) flags and computes what
    PyTorch computes under QEMU (`--fc-layout rsell` is the only way an Arm build takes this layout)."""
    t = targets.get(target)
    missing = t.missing_tools()
    if missing:
        pytest.skip(", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in missing))
    pt2, _, _ = _mlp_case(tmp_path, widths=(300, 70, 10), density=0.1, seed=4)
    out = tmp_path / target
    man = B.build(pt2, target, out, name="mlp", fc_layout="rsell").manifest
    assert [l["format"] for l in man["layers"]] == ["rsell"] * 2
    assert set(man["kernels"]) >= {"prunec_f32_fc_rsell__portable"}
    rep = verify.verify(out, random=3)
    assert rep.ok and rep.n == 3, rep.text()


def test_no_kernel_reads_an_input_outside_the_row(tmp_path):
    """Every column a sliced layer's slots name lies in [0, cols): x is placed between NaN guard words, so a read past
    either end would turn an output into NaN (fillers multiply 0 by what they read). The portable kernel and the ISA
    kernels this CPU runs, on layers whose lanes need padding, fillers for long gaps and lanes past the last row."""
    flags = verify.cpu_flags() or set()
    ks = [k for k in runtime.kernels() if k.op == "fc_rsell" and (
        k.isa == "portable" or (k.isa == "avx2" and {"avx2", "fma"} <= flags)
        or (k.isa == "avx512x4" and {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= flags))]
    cflags = ["-mavx2", "-mfma"] + (["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]
                                    if any(k.isa == "avx512x4" for k in ks) else [])
    ffi, lib = kh.build_kernels(sorted({k.source for k in ks}), cflags, tmpdir=tmp_path)
    rng = np.random.default_rng(7)
    for rows, cols, d in ((37, 300, 0.05), (16, 1000, 0.004), (5, 33, 0.9), (50, 600, 0.02)):
        w = (rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < d)).astype(np.float32)
        w[0, [0, cols - 1]] = 1.0  # a row reaching both ends
        enc = encode.encode_rsell(w)
        guard = 64
        buf = np.full(cols + 2 * guard, np.nan, np.float32)
        buf[guard:guard + cols] = rng.standard_normal(cols).astype(np.float32)
        x = buf[guard:guard + cols]
        want = w.astype(np.float64) @ x.astype(np.float64)
        keep = kh._Keep()
        st = kh.sliced_struct(ffi, keep, enc, "rsell")
        xb = ffi.from_buffer("float[]", buf)
        for k in ks:
            y = np.full(rows, 7.0, np.float32)
            getattr(lib, k.name)(st, ffi.NULL, xb + guard, ffi.from_buffer("float[]", y, require_writable=True),
                                 float("-inf"), float("inf"))
            assert np.isfinite(y).all() and np.allclose(y, want, rtol=1e-4, atol=1e-4), (k.name, rows, cols)
