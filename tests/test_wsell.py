"""The windowed sliced layout of fc layers (docs/FORMAT.md "Windowed fc layers"; prunec_wsell_f32): the encoder, the
build's choice of it (aarch64-neon within fc_wsell_max_bytes, `--fc-layout wsell` anywhere), the AArch64 NEON kernel
against the portable one and a float64 reference on edge cases under QEMU, and whole builds against PyTorch (host:
the portable kernel through cffi; AArch64 and Armv7-A under QEMU; Cortex-M4 on QEMU's board)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import build_models as bm
import kernel_harness as kh
from prunec import build as B
from prunec import encode, runners, targets, verify
from prunec.errors import PrunecError
from prunec.resources import runtime_dir

RT = runtime_dir()


_layer = bm.sparse_layer
_skip_if_missing = bm.skip_if_missing


@pytest.mark.parametrize("shape,density", [((300, 784), 0.08), ((17, 33), 0.5), ((4, 16), 1.0), ((16, 32), 0.0),
                                           ((5, 700), 0.01), ((64, 64), 1.0), ((3, 16), 0.5), ((40, 3000), 0.003),
                                           ((0, 16), 0.5), ((7, 19), 0.3)])
def test_encoder_round_trip_and_invariants(shape, density):
    w = _layer(shape, density, shape[0] * 1000 + shape[1])
    ws = encode.encode_wsell(w)
    rows, cols = shape
    slices = -(-rows // 4)
    assert np.array_equal(ws.to_dense(), w)
    assert ws.steps.shape == ws.start.shape == (slices,) and ws.perm.shape == (4 * slices,)
    steps = int(ws.steps.sum())
    assert ws.slots == 4 * steps == ws.values.size and ws.index.size == 16 * steps and ws.advance.size == steps
    assert ws.nonzero == np.count_nonzero(w) and ws.fillers == ws.slots - ws.nonzero
    assert ws.bytes() == {"values": 4 * ws.slots, "index": 4 * ws.slots,
                          "pointers": 8 * slices + 8 * slices + 4 * steps}
    assert sorted(ws.perm[:rows].tolist()) == list(range(rows)) and not ws.perm[rows:].any()
    # the table bytes of a slot are 4o .. 4o+3 with o < 16: they name one float of the 64-byte window
    tb = ws.index.reshape(-1, 4).astype(int)
    assert (tb[:, 0] % 4 == 0).all() and (tb - tb[:, :1] == [0, 1, 2, 3]).all() and (tb < 64).all()
    cols_of = ws.columns().reshape(-1, 4)
    t = 0
    for s, k in enumerate(ws.steps.astype(int)):
        base = int(ws.start[s])
        nz = [np.count_nonzero(w[r]) if 4 * s + lane < rows else 0 for lane, r in enumerate(ws.perm[4 * s:4 * s + 4])]
        assert k >= max(nz, default=0)  # one nonzero per lane per step
        for j in range(k):
            assert 0 <= base <= cols - 16  # every window inside x: 16 inputs from base
            c = cols_of[t]
            assert ((c >= base) & (c < base + 16)).all()
            adv = int(ws.advance[t])
            assert adv % 4 == 0 and (j < k - 1 or adv == 0)  # bytes of fp32 inputs; 0 after the slice's last step
            base += adv // 4
            t += 1
        if k:  # lanes take their nonzeros in column order
            for lane in range(4):
                if 4 * s + lane < rows:
                    v = ws.values.reshape(-1, 4)[t - k:t, lane]
                    cc = cols_of[t - k:t, lane][v != 0]
                    assert (np.diff(cc) > 0).all()


def test_encoder_windows_and_advances_on_a_small_example():
    w = np.zeros((5, 40), np.float32)
    w[0, [0, 5, 20]] = [1, 2, 3]
    w[1, [1, 30, 39]] = [4, 5, 6]
    w[4, 17] = 7
    ws = encode.encode_wsell(w, rounds=0)
    # rows by nonzero count (ties: lower row first): slice 0 = rows 0, 1, 4, 2; slice 1 = row 3 (empty, no steps)
    assert list(ws.perm) == [0, 1, 4, 2, 3, 0, 0, 0] and list(ws.steps) == [4, 0] and list(ws.start) == [0, 0]
    # windows at 0 (rows 0, 1 take 0, 1), 5 (row 0: 5, row 4: 17; row 1's 30 lies outside), 20 (20 and 30), and 39
    # moved left to 40 - 16 = 24 (row 1: 39): advances in bytes of x
    assert list(ws.advance) == [20, 60, 16, 0]
    assert ws.columns().reshape(4, 4).tolist() == [[0, 1, 0, 0], [5, 5, 17, 5], [20, 30, 20, 20], [24, 39, 24, 24]]
    assert ws.values.reshape(4, 4).tolist() == [[1, 4, 0, 0], [2, 0, 7, 0], [3, 5, 0, 0], [0, 6, 0, 0]]
    assert ws.index.reshape(4, 4, 4)[3, 1].tolist() == [60, 61, 62, 63]  # column 39 = offset 15 of the window at 24
    assert np.array_equal(ws.to_dense(), w)


def test_encoder_refuses_too_few_columns_and_too_many_rows():
    with pytest.raises(ValueError, match="at least 16"):
        encode.encode_wsell(np.ones((3, 15), np.float32))
    with pytest.raises(ValueError, match="65536"):
        encode.encode_wsell(np.zeros((65537, 16), np.float32))


def test_value_type_stays_open():
    """Narrower values keep 64 bytes per window: 32 int16 inputs, 2 table bytes per slot."""
    w = (np.arange(6 * 50).reshape(6, 50) % 7 == 0).astype(np.int16) * 3
    ws = encode.encode_wsell(w, value_bytes=2)
    assert encode.wsell_cols(2) == 32 and ws.values.dtype == np.int16 and ws.index.size == 2 * ws.slots
    assert np.array_equal(ws.to_dense(), w)
    tb = ws.index.reshape(-1, 2).astype(int)
    assert (tb[:, 1] == tb[:, 0] + 1).all() and (tb < 64).all()


def _mlp_case(tmp_path, widths=(300, 70, 10), density=0.1, seed=0):
    return bm.sparse_mlp_case(tmp_path, widths, density, seed)


def test_fc_layout_wsell_host_build_computes_what_pytorch_computes(tmp_path):
    """`--fc-layout wsell` stores every sparse fc layer of at least 16 inputs windowed, on any target (host: the
    portable kernel), and the build verifies against PyTorch; the manifest counts 4 value and 4 table bytes per slot."""
    pt2, x, ref = _mlp_case(tmp_path, widths=(300, 70, 12, 10), seed=1)
    d = tmp_path / "host"
    man = B.build(pt2, "host", d, name="mlp", fc_layout="wsell").manifest
    assert [l["format"] for l in man["layers"]] == ["wsell", "wsell", "rcsr"]  # 12 inputs: too few for a window
    assert [l["kernel"] for l in man["layers"][:2]] == ["prunec_f32_fc_wsell__portable"] * 2
    for l in man["layers"][:2]:
        slots = l["nonzero"] + l["fillers"]
        assert l["bytes"]["values"] == 4 * slots == l["bytes"]["index"] and l["index_bits"] == 32
    r = verify.compare(verify.run_host(d, x), ref)
    assert r.ok and r.top1_agreement == 1.0, r.text()
    src = (d / "mlp.c").read_text()
    assert "static const prunec_wsell_f32 fcs_0_w = {70u, 300u, fcs_0_perm, fcs_0_steps, fcs_0_start," in src
    assert "(windowed sliced layout)" in src


def _with_limit(monkeypatch, limit):
    t = targets.get("aarch64-neon")
    patched = dataclasses.replace(t, extra={**t.extra, "fc_wsell_max_bytes": limit})
    get = targets.get
    monkeypatch.setattr(targets, "get", lambda name: patched if name == "aarch64-neon" else get(name))
    return patched


def test_auto_on_aarch64_takes_the_windowed_layout_within_the_limit(tmp_path, monkeypatch):
    pt2, _, _ = _mlp_case(tmp_path, widths=(300, 70, 40, 10), seed=2)
    t = targets.get("aarch64-neon")
    assert t.extra["fc_wsell_max_bytes"] == 1 << 20 and B.wsell_limit(t, "auto") == 1 << 20
    assert B.wsell_limit(t, "rcsr") == 0 and B.wsell_limit(t, "rsell") == 0 and B.wsell_limit(t, "wsell") == -1
    assert B.wsell_limit(targets.get("armv7a-neon"), "auto") == 0  # no fc_wsell_max_bytes: VTBL reaches 8 floats
    assert B.wsell_limit(targets.get("cortex-m4"), "auto") == 0 and B.wsell_limit(None, "auto") == 0
    man = B.prepare(pt2, "aarch64-neon")[1]
    assert [l["format"] for l in man["layers"]] == ["wsell"] * 3
    assert all(l["kernel"] == "prunec_f32_fc_wsell__neon" for l in man["layers"])
    man = B.prepare(pt2, "aarch64-neon", fc_layout="rcsr")[1]
    assert [l["format"] for l in man["layers"]] == ["rcsr"] * 3
    _with_limit(monkeypatch, 20000)  # fc1 (300 -> 70 at 10 %: ~2,100 nonzeros, ~25 kB windowed) is over it
    man = B.prepare(pt2, "aarch64-neon")[1]
    assert [l["format"] for l in man["layers"]] == ["rcsr", "wsell", "wsell"]


def test_auto_keeps_csr_where_the_window_holds_too_many_fillers(tmp_path):
    """A very sparse layer (nonzeros spread over many windows, most lanes empty) stays relative-indexed under auto:
    more than WSELL_MAX_SLOTS_PER_NONZERO slots per nonzero cost more instructions than the CSR kernel."""
    pt2, _, _ = _mlp_case(tmp_path, widths=(2000, 64, 10), density=0.004, seed=3)
    man = B.prepare(pt2, "aarch64-neon")[1]
    fc1 = man["layers"][0]
    assert fc1["format"] == "rcsr"
    ws = encode.encode_wsell(np.zeros((1, 16), np.float32))
    assert ws.slots == 0
    forced = B.prepare(pt2, "aarch64-neon", fc_layout="wsell")[1]["layers"][0]
    assert forced["format"] == "wsell"
    assert forced["nonzero"] + forced["fillers"] > B.WSELL_MAX_SLOTS_PER_NONZERO * forced["nonzero"]


def test_bad_target_value_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    pt2, _, _ = _mlp_case(tmp_path, widths=(64, 10), density=0.5)
    bad = tmp_path / "t.toml"
    bad.write_text('name = "t"\nisa = ["neon", "portable"]\ncc = "cc"\nfc_wsell_max_bytes = "1 MiB"\n')
    with pytest.raises(PrunecError, match="fc_wsell_max_bytes must be a whole number"):
        B.wsell_limit(targets._load(bad), "auto")
    with pytest.raises(PrunecError, match="--fc-layout 'tbl'"):
        B.wsell_limit(targets.get("aarch64-neon"), "tbl")
    # a user's target file with the bad value: the build names it and leaves no output folder
    d = tmp_path / "targets"
    d.mkdir()
    text = (targets.targets_dir() / "aarch64-neon.toml").read_text().replace('name = "aarch64-neon"', 'name = "a64-bad"')
    (d / "a64-bad.toml").write_text('fc_wsell_max_bytes = -1\n' + text.replace("fc_wsell_max_bytes = 1048576\n", ""))
    monkeypatch.setenv(targets.TARGETS_ENV, str(d))
    with pytest.raises(PrunecError, match="fc_wsell_max_bytes must be a whole number of bytes >= 0"):
        B.build(pt2, "a64-bad", tmp_path / "out", name="mlp")
    assert not (tmp_path / "out").exists()


def test_cli_fc_layout_wsell(tmp_path):
    from click.testing import CliRunner

    from prunec.cli import main

    pt2, _, _ = _mlp_case(tmp_path, widths=(64, 10), density=0.5)
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", "host", "--out", str(tmp_path / "a"), "--fc-layout", "wsell"])
    assert r.exit_code == 0, r.output
    layer = json.loads((tmp_path / "a" / "manifest.json").read_text())["layers"][0]
    assert layer["format"] == "wsell" and layer["kernel"] == "prunec_f32_fc_wsell__portable"


@pytest.mark.parametrize("target,layout", [("aarch64-neon", "auto"), ("armv7a-neon", "wsell"), ("cortex-m4", "wsell")])
def test_cross_builds_verify_under_qemu(tmp_path, target, layout):
    """AArch64 takes the layout by default and runs the NEON kernel; Armv7-A (its NEON entry hands the layout to the
    portable kernel) and Cortex-M4 (portable, the target's strict flags) only with `--fc-layout wsell`."""
    t = targets.get(target)
    _skip_if_missing(t)
    pt2, _, _ = _mlp_case(tmp_path, widths=(300, 70, 10), density=0.1, seed=4)
    out = tmp_path / target
    man = B.build(pt2, target, out, name="mlp", fc_layout=layout).manifest
    assert [l["format"] for l in man["layers"]] == ["wsell"] * 2
    isa = "portable" if target == "cortex-m4" else "neon"
    assert all(l["kernel"] == f"prunec_f32_fc_wsell__{isa}" for l in man["layers"])
    rep = verify.verify(out, random=3)
    assert rep.ok and rep.n == 3, rep.text()


# Edge cases for the kernels: step counts 0..9 per slice (the NEON main loop takes 4 at a time, then 2, then 1),
# partial last slices of 1..3 rows, empty rows and slices, windows at both ends of x (moved left at the end), long
# gaps between windows, full density, bias or none, clamps none / relu / relu6.
EDGE = [((1, 16), 1.0), ((2, 17), 0.9), ((3, 40), 0.5), ((4, 16), 1.0), ((5, 64), 0.3), ((6, 33), 0.7),
        ((7, 100), 0.1), ((8, 1000), 0.01), ((9, 21), 1.0), ((12, 300), 0.05), ((13, 5000), 0.002),
        ((20, 48), 0.0), ((30, 784), 0.08), ((33, 70), 0.25), ((4, 9000), 0.001)]
ACTS = [(float("-inf"), float("inf")), (0.0, float("inf")), (0.0, 6.0)]


def _c_float(v: float) -> str:
    return f"{float(v).hex()}f" if np.isfinite(v) else ("INFINITY" if v > 0 else "-INFINITY")


def _c_array(ctype, name, a):
    a = np.asarray(a).ravel()
    if ctype == "float":
        body = ",".join(f"{float(v).hex()}f" if np.isfinite(v) else ("NAN" if np.isnan(v) else
                                                                    ("INFINITY" if v > 0 else "-INFINITY"))
                        for v in a.astype(np.float32).tolist())
    else:
        body = ",".join(str(int(v)) for v in a.tolist())
    return f"static const {ctype} {name}[{max(1, a.size)}] = {{{body or '0'}}};\n"


def _edge_program(path, kernels):
    """A C program running each kernel on every EDGE case: x lies between NaN guards (a read outside x turns an
    output into NaN), y between guard words that must survive; outputs against a float64 reference (printed
    FAIL lines; exit status = failures)."""
    rng = np.random.default_rng(11)
    src = ['#include <math.h>\n#include <stdio.h>\n#include <stdint.h>\n#include "prunec_kernels.h"\n']
    calls = []
    for i, ((rows, cols), d) in enumerate(EDGE):
        w = _layer((rows, cols), d, 100 + i)
        if d and rows > 1:
            w[0, [0, cols - 1]] = [1.5, -2.0]  # a row reaching both ends of x
            w[rows // 2, :] = 0.0  # an empty row
        ws = encode.encode_wsell(w)
        x = rng.standard_normal(cols).astype(np.float32)
        bias = rng.standard_normal(rows).astype(np.float32)
        lo, hi = ACTS[i % 3]
        has_bias = i % 4 != 3
        ref = w.astype(np.float64) @ x.astype(np.float64) + (bias if has_bias else 0.0)
        ref = np.minimum(np.maximum(ref, lo), hi)
        p = f"c{i}_"
        for ctype, nm, a in (("uint16_t", "perm", ws.perm), ("uint32_t", "steps", ws.steps),
                             ("uint32_t", "start", ws.start), ("uint32_t", "advance", ws.advance),
                             ("uint8_t", "index", ws.index), ("float", "values", ws.values),
                             ("float", "bias", bias), ("float", "ref", ref)):
            src.append(_c_array(ctype, p + nm, a))
        xg = np.concatenate([np.full(16, np.nan, np.float32), x, np.full(16, np.nan, np.float32)])
        src.append(_c_array("float", p + "x", xg))
        src.append(f"static const prunec_wsell_f32 {p}w = {{{rows}u, {cols}u, {p}perm, {p}steps, {p}start, "
                   f"{p}advance, {p}index, {p}values}};\n")
        for k in kernels:
            calls.append(f"  fails += run_case(\"{k} case {i}\", {k}, &{p}w, {p + 'bias' if has_bias else 'NULL'}, "
                         f"{p}x + 16, {p}ref, {rows}, {_c_float(lo)}, {_c_float(hi)});\n")
    src.append("""
typedef void (*fc_fn)(const prunec_wsell_f32 *, const float *, const float *, float *, float, float);
static float ybuf[9000 + 16];
static int run_case(const char *name, fc_fn f, const prunec_wsell_f32 *w, const float *bias, const float *x,
                    const float *ref, unsigned rows, float lo, float hi) {
  unsigned i;
  int bad = 0;
  for (i = 0; i < rows + 16; i++) ybuf[i] = 1234.5f;
  f(w, bias, x, ybuf + 8, lo, hi);
  for (i = 0; i < 8; i++) if (ybuf[i] != 1234.5f || ybuf[rows + 8 + i] != 1234.5f) bad = 1;
  for (i = 0; i < rows; i++) {
    const float want = ref[i], got = ybuf[8 + i];
    if (!(fabsf(got - want) <= 1e-4f * (1.0f + fabsf(want)))) {
      printf("FAIL %s row %u: %g, want %g\\n", name, i, (double)got, (double)want);
      return 1;
    }
  }
  if (bad) printf("FAIL %s: guard words overwritten\\n", name);
  return bad;
}
/* special values: the kernel's outputs NaN exactly where the portable kernel's are, infinities equal */
static float ys[64], yp[64];
static int special(const char *name, fc_fn f, fc_fn port, const prunec_wsell_f32 *w, const float *bias,
                   const float *x, unsigned rows, float lo, float hi) {
  unsigned i;
  f(w, bias, x, ys, lo, hi);
  port(w, bias, x, yp, lo, hi);
  for (i = 0; i < rows; i++) {
    const int ok = isnan(yp[i]) ? isnan(ys[i]) : isinf(yp[i]) ? ys[i] == yp[i]
                 : !isnan(ys[i]) && fabsf(ys[i] - yp[i]) <= 1e-4f * (1.0f + fabsf(yp[i]));
    if (!ok) {
      printf("FAIL %s special row %u: %g, portable %g\\n", name, i, (double)ys[i], (double)yp[i]);
      return 1;
    }
  }
  return 0;
}
int main(void) {
  int fails = 0;
""")
    # special values (the first kernel against the portable one): x holds NaN, +inf and -inf, a bias NaN
    w = _layer((19, 45), 0.4, 77)
    w[3, :] = 0.0
    w[5, [7, 30]] = [0.5, -0.25]
    ws = encode.encode_wsell(w)
    x = np.random.default_rng(13).standard_normal(45).astype(np.float32)
    x[7], x[30], x[44] = np.inf, -np.inf, np.nan
    bias = np.random.default_rng(14).standard_normal(19).astype(np.float32)
    bias[11] = np.nan
    for ctype, nm, a in (("uint16_t", "perm", ws.perm), ("uint32_t", "steps", ws.steps), ("uint32_t", "start", ws.start),
                         ("uint32_t", "advance", ws.advance), ("uint8_t", "index", ws.index),
                         ("float", "values", ws.values), ("float", "bias", bias), ("float", "x", x)):
        src.append(_c_array(ctype, "sp_" + nm, a))
    src.append("static const prunec_wsell_f32 sp_w = {19u, 45u, sp_perm, sp_steps, sp_start, sp_advance, sp_index, "
               "sp_values};\n")
    if len(kernels) > 1 and kernels[-1].endswith("__portable"):
        for lo, hi in ACTS:
            calls.append(f"  fails += special(\"{kernels[0]}\", {kernels[0]}, {kernels[-1]}, &sp_w, sp_bias, sp_x, 19u, "
                         f"{_c_float(lo)}, {_c_float(hi)});\n")
    src += calls
    src.append('  printf("wsell edge cases: %d failures\\n", fails);\n  return fails;\n}\n')
    path.write_text("".join(src))


@pytest.mark.parametrize("target", ["aarch64-neon", "armv7a-neon"])
def test_neon_kernel_matches_reference_on_edge_cases_under_qemu(tmp_path, target):
    t = targets.get(target)
    _skip_if_missing(t)
    prog = tmp_path / "wsell_edge.c"
    kernels = ["prunec_f32_fc_wsell__neon", "prunec_f32_fc_wsell__portable"]
    _edge_program(prog, kernels)
    exe = tmp_path / "wsell_edge"
    runners.compile_program(t, [prog, RT / "src/neon/f32-fc-wsell-neon.c", RT / "src/portable/f32-fc-wsell-portable.c"],
                            exe, include_dirs=[RT / "include"])
    r = runners.run_program(t, exe, cwd=tmp_path, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "wsell edge cases: 0 failures" in out, out[-3000:]


def test_portable_kernel_matches_reference_on_edge_cases(tmp_path):
    """The same cases on the host, through cffi (the kernel `host` builds run with --fc-layout wsell)."""
    ffi, lib = kh.build_kernels(["src/portable/f32-fc-wsell-portable.c"], [], tmpdir=tmp_path)
    rng = np.random.default_rng(12)
    for i, ((rows, cols), d) in enumerate(EDGE):
        w = _layer((rows, cols), d, 300 + i)
        ws = encode.encode_wsell(w)
        keep = kh._Keep()
        st = kh.wsell_struct(ffi, keep, ws)
        buf = np.full(cols + 32, np.nan, np.float32)
        buf[16:16 + cols] = rng.standard_normal(cols).astype(np.float32)
        want = w.astype(np.float64) @ buf[16:16 + cols].astype(np.float64)
        y = np.full(rows, 7.0, np.float32)
        xb = ffi.from_buffer("float[]", buf)
        lib.prunec_f32_fc_wsell__portable(st, ffi.NULL, xb + 16, ffi.from_buffer("float[]", y, require_writable=True),
                                          float("-inf"), float("inf"))
        assert np.isfinite(y).all() and np.allclose(y, want, rtol=1e-4, atol=1e-4), (rows, cols, d)


def test_bench_arm_models_counts_both_layouts(tmp_path):
    """benchmarks/bench_arm_models.py builds, verifies and counts a model per fc layout on AArch64; the windowed
    build runs fewer instructions and stores more bytes than the relative-indexed one."""
    import sys

    t = targets.get("aarch64-neon")
    _skip_if_missing(t)
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import bench_arm_models

    pt2, _, _ = _mlp_case(tmp_path, widths=(300, 70, 10), density=0.1, seed=5)
    out = tmp_path / "r.json"
    assert bench_arm_models.main(["--model", f"mlp={pt2}", "--targets", "aarch64-neon", "--layouts", "auto,rcsr",
                                  "--iters", "1", "--json", str(out)]) == 0
    auto, rcsr = json.loads(out.read_text())
    assert auto["formats"] == {"fcs.0": "wsell", "fcs.1": "wsell"} and set(rcsr["formats"].values()) == {"rcsr"}
    assert 0 < auto["insns_per_inference"] < rcsr["insns_per_inference"]
    assert auto["weights_bytes"] > rcsr["weights_bytes"]


@pytest.mark.parametrize("shape,density", [((300, 784), 0.08), ((17, 33), 0.5), ((5, 700), 0.01), ((64, 64), 1.0),
                                           ((0, 16), 0.5), ((9, 3000), 0.002)])
def test_min_steps_is_a_lower_bound(shape, density):
    """build._wsell_or skips laying out a layer whose bound already exceeds the limits: the bound must never exceed
    the encoder's steps (whatever row order it takes)."""
    w = _layer(shape, density, 7 + shape[0])
    low = encode.wsell_min_steps(w)
    for rounds in (0, 2, 8):
        assert low <= int(encode.encode_wsell(w, rounds=rounds).steps.sum())
    assert low == sum(sorted(np.count_nonzero(w, axis=1).tolist(), reverse=True)[::4])


def test_cli_build_says_which_layers_trade_bytes_for_speed(tmp_path):
    from click.testing import CliRunner

    from prunec.cli import main

    pt2, _, _ = _mlp_case(tmp_path, widths=(64, 20, 10), density=0.2)  # (at 0.5 the windows outweigh dense)
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", "aarch64-neon", "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "fcs.0, fcs.1: in the windowed sliced layout" in r.output and "--fc-layout rcsr" in r.output
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", "aarch64-neon", "--out", str(tmp_path / "b"),
                                  "--fc-layout", "rcsr"])
    assert r.exit_code == 0 and "sliced layout" not in r.output, r.output
