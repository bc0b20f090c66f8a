"""prunec build: every op built and run through cffi against PyTorch; generated C warning-free under gcc and
clang, clean under ASan+UBSan; reproducible; manifest; Makefile/CMake; bad input and atomic output."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import build_models as bm
from prunec import build as B
from prunec import targets, verify
from prunec.errors import PrunecError

WFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O2"]
HAVE = {cc: shutil.which(cc) is not None for cc in ("gcc", "clang", "cmake", "make")}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def _pt2(models_dir: Path, case: str) -> Path:
    p = models_dir / f"{case}.pt2"
    if not p.exists():
        m, shape = bm.make(case, seed=len(case))
        bm.export(m, shape, p)
    return p


@pytest.fixture(scope="module")
def built(models_dir, tmp_path_factory):
    """case -> build directory (C-array storage), built once per module."""
    out = tmp_path_factory.mktemp("builds")
    cache = {}

    def get(case: str, storage: str = "c") -> Path:
        key = (case, storage)
        if key not in cache:
            d = out / f"{case}_{storage}"
            B.build(_pt2(models_dir, case), "host", d, name=case, storage=storage)
            cache[key] = d
        return cache[key]

    return get


@pytest.mark.parametrize("case", list(bm.MODELS))
def test_every_op_matches_pytorch(case, built, models_dir):
    d = built(case)
    m = json.loads((d / "manifest.json").read_text())
    _, shape = bm.MODELS[case]
    x = bm.random_inputs(shape, n=12, seed=1)
    c = verify.run_host(d, x.reshape(len(x), -1))
    t = verify.reference_outputs(_pt2(models_dir, case), x, m["input_shape"])
    r = verify.compare(c, t)
    assert r.ok and r.top1_agreement == 1.0, r.text()
    assert r.max_abs_err <= 2e-6 * max(1.0, float(np.abs(t).max()))


def test_blob_storage_gives_bit_identical_outputs(built):
    x = bm.random_inputs(bm.MODELS["batchnorm"][1], n=6, seed=2).reshape(6, -1)
    a = verify.run_host(built("batchnorm", "c"), x)
    b = verify.run_host(built("batchnorm", "blob"), x)
    assert np.array_equal(a, b)
    d = built("batchnorm", "blob")
    assert (d / "batchnorm_weights.bin").is_file() and (d / "batchnorm_weights.S").is_file()
    assert "static const float" not in (d / "batchnorm.c").read_text()


WARN_CASES = ["pools", "activations", "addmm", "batchnorm", "residual", "conv_rect"]


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_generated_c_is_warning_free(cc, built, tmp_path):
    if not HAVE[cc]:
        pytest.skip(f"{cc} not installed")
    for case, storage in [(c, "c") for c in WARN_CASES] + [("batchnorm", "blob")]:
        d = built(case, storage)
        srcs = [d / f"{case}.c"] + sorted((d / "runtime" / "src").rglob("*.c"))
        for s in srcs + ([d / f"{case}_weights.S"] if storage == "blob" else []):
            r = subprocess.run([cc, *WFLAGS, "-I", str(d), "-I", str(d / "runtime" / "include"), f"-Wa,-I{d}",
                                "-c", str(s), "-o", str(tmp_path / (s.stem + ".o"))], capture_output=True, text=True)
            assert r.returncode == 0 and not r.stderr, f"{cc} {s}:\n{r.stderr}"


DRIVER = r"""
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "%(name)s.h"

int main(void) {
  float *in = malloc(sizeof(float) * %(name)s_INPUT_SIZE);
  float *out = malloc(sizeof(float) * %(name)s_OUTPUT_SIZE);
  unsigned char *arena = malloc(%(name)s_ARENA_BYTES);  /* exact size: ASan sees any overrun */
  unsigned char *skew = malloc(%(name)s_ARENA_BYTES + 16);
  uint32_t s = 12345u;
  size_t i;
  if (!in || !out || !arena || !skew || ((uintptr_t)arena & 15u)) return 3;
  for (i = 0; i < %(name)s_INPUT_SIZE; i++) {
    s = s * 1664525u + 1013904223u;
    in[i] = (float)((double)(s >> 8) / 8388608.0 - 1.0) * 2.0f;
  }
  if (%(name)s_run(NULL, out, arena) != -1) return 4;
  if (%(name)s_run(in, NULL, arena) != -1) return 4;
  if (%(name)s_run(in, out, arena) != 0) return 1;
  for (i = 0; i < %(name)s_OUTPUT_SIZE; i++) {
    if (!isfinite(out[i])) return 2;
    printf("%%.9g\n", out[i]);
  }
  %(misaligned)s
  free(in); free(out); free(arena); free(skew);
  return 0;
}
"""


@pytest.mark.parametrize("case", ["activations", "pools", "residual", "batchnorm", "mlp"])
def test_sanitizers_clean(case, built, tmp_path):
    cc = "gcc" if HAVE["gcc"] else "clang"
    d = built(case, "blob" if case == "batchnorm" else "c")
    m = json.loads((d / "manifest.json").read_text())
    uses_arena = "a + " in (d / f"{case}.c").read_text()
    mis = f"if ({case}_run(in, out, skew + 4) != -2) return 5;" if uses_arena else ""
    (tmp_path / "main.c").write_text(DRIVER % {"name": case, "misaligned": mis})
    srcs = [str(d / s) for s in m["files"]["sources"]] + [str(d / s) for s in m["files"]["asm"]]
    exe = tmp_path / "prog"
    r = subprocess.run([cc, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                        "-fno-omit-frame-pointer", "-I", str(d), "-I", str(d / "runtime" / "include"), f"-Wa,-I{d}",
                        str(tmp_path / "main.c"), *srcs, "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stderr == "", f"exit {r.returncode}\n{r.stderr}"
    out = np.array([float(v) for v in r.stdout.split()], dtype=np.float32)
    assert out.size == m["output_size"]


def test_rebuild_is_byte_identical(models_dir, tmp_path):
    p = _pt2(models_dir, "batchnorm")
    for storage in ("c", "blob"):
        a, b = tmp_path / f"a_{storage}", tmp_path / "elsewhere" / f"b_{storage}"
        b.parent.mkdir(exist_ok=True)
        B.build(p, "host", a, name="net", storage=storage)
        B.build(p, "host", b, name="net", storage=storage)
        fa = sorted(f.relative_to(a) for f in a.rglob("*") if f.is_file())
        fb = sorted(f.relative_to(b) for f in b.rglob("*") if f.is_file())
        assert fa == fb
        for f in fa:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
            text = (a / f).read_bytes()
            assert str(tmp_path).encode() not in text, f"{f} mentions the output path"


def test_generated_files_carry_banner_and_sha(built, models_dir):
    d = built("mlp")
    sha = B.sha256_file(_pt2(models_dir, "mlp"))
    for f in ("mlp.h", "mlp.c", "Makefile", "CMakeLists.txt"):
        first = (d / f).read_text().splitlines()[0]
        assert "Generated by prunec" in first and sha in first, f
    m = json.loads((d / "manifest.json").read_text())
    assert m["generator"].startswith("prunec ") and m["source"]["sha256"] == sha


def test_manifest_contract(built, models_dir):
    d = built("batchnorm")
    m = json.loads((d / "manifest.json").read_text())
    for k in ("name", "target", "input_shape", "output_shape", "arena_bytes", "layers", "totals", "source", "prunec_version"):
        assert k in m, k
    assert m["name"] == "batchnorm" and m["target"] == "host"
    assert m["input_shape"] == [1, 3, 10, 10] and m["output_shape"] == [1, 5]
    assert m["source"]["path"] == str(_pt2(models_dir, "batchnorm").resolve())
    weighted = [l for l in m["layers"] if l["shape"] is not None]
    assert [l["op"] for l in weighted] == ["conv2d", "conv2d", "fc", "fc"]
    for l in m["layers"]:
        for k in ("name", "op", "shape", "nonzero", "density", "format", "index_bits", "fillers", "bytes", "macs"):
            assert k in l, k
        assert set(l["bytes"]) >= {"values", "index", "pointers"}
    t = m["totals"]
    assert t["weights_bytes"] == sum(l["bytes"]["values"] + l["bytes"]["index"] + l["bytes"]["pointers"] for l in weighted)
    assert t["dense_weights_bytes"] == sum(4 * int(np.prod(l["shape"])) for l in weighted)
    conv = weighted[0]
    assert conv["macs"] == conv["nonzero"] * 8 * 8  # one MAC per nonzero per output pixel (8x8)
    h = (d / "batchnorm.h").read_text()
    assert f"#define batchnorm_INPUT_SIZE {3 * 10 * 10}" in h and "#define batchnorm_OUTPUT_SIZE 5" in h
    assert f"#define batchnorm_ARENA_BYTES {m['arena_bytes']}" in h
    assert "int batchnorm_run(const float *input, float *output, void *arena);" in h


def test_only_needed_runtime_sources_are_copied(built):
    d = built("mlp")
    srcs = sorted(p.name for p in (d / "runtime" / "src").rglob("*.c"))
    assert all("fc" in s or "elementwise" in s for s in srcs) and not any("conv" in s or "pool" in s for s in srcs)
    assert (d / "runtime" / "include" / "prunec_kernels.h").is_file()


class _OnlyGenericMaxPool(nn.Module):  # the one pool is 3x3/2 padded ceil-mode: no avx512x4 fast path
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 6)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(self.conv(x), 3, stride=2, padding=1, ceil_mode=True)
        return self.fc(torch.flatten(x, 1))


def test_a_kernel_ships_the_kernels_it_calls(tmp_path):
    """x86_64-avx2 (with the AVX-512 probe on): the avx512x4 max pool hands this geometry to the portable kernel
    (PRUNEC_KERNEL_USES), so the build must carry the portable pool source although no layer selects a
    portable pool kernel, link, and match PyTorch."""
    torch.manual_seed(0)
    shape = (2, 9, 9)
    pt2 = tmp_path / "gpool.pt2"
    bm.export(bm.prune_random(_OnlyGenericMaxPool(), 0), shape, pt2)
    d = tmp_path / "gpool_x86"
    B.build(pt2, "x86_64-avx2", d, name="gpool")
    m = json.loads((d / "manifest.json").read_text())
    srcs = {str(p.relative_to(d / "runtime")) for p in (d / "runtime" / "src").rglob("*.c")}
    pool_kernels = {L["kernel"] for L in m["layers"] if L["op"] == "maxpool2d"}
    if pool_kernels == {"prunec_f32_maxpool2d__avx512x4"}:
        assert {"src/avx512/f32-maxpool2d-avx512-x4.c", "src/portable/f32-pool2d-portable.c"} <= srcs
    x = bm.random_inputs(shape, n=8, seed=3)
    r = verify.compare(verify.run_host(d, x.reshape(len(x), -1)), verify.reference_outputs(pt2, x, m["input_shape"]))
    assert r.ok and r.top1_agreement == 1.0, r.text()


@pytest.mark.skipif(not HAVE["make"], reason="make not installed")
def test_makefile_static_and_shared(built, tmp_path):
    src = built("residual", "blob")
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    r = subprocess.run(["make", "-s", "-C", str(d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (d / "libresidual.a").is_file()
    r = subprocess.run(["make", "-s", "-C", str(d), "shared", "CC=clang" if HAVE["clang"] else "CC=cc"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (d / "libresidual.so").is_file()
    nm = subprocess.run(["nm", "-D", "--defined-only", str(d / "libresidual.so")], capture_output=True, text=True).stdout
    assert "residual_run" in nm and "residual_c1_values" not in nm  # weights stay hidden


@pytest.mark.skipif(not HAVE["cmake"], reason="cmake not installed")
def test_cmake_builds_the_library(built, tmp_path):
    src = built("residual", "blob")
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["cmake", "--build", str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "b" / "libresidual.a").is_file()
    assert not list(src.rglob("*.o"))  # the build directory itself was not written


# --- bad input ---------------------------------------------------------------------------------------------

def test_unsupported_op_writes_nothing(tmp_path):
    class LogSigmoid(nn.Module):
        def forward(self, x):
            return torch.nn.functional.logsigmoid(x)

    p = bm.export(LogSigmoid(), (4,), tmp_path / "g.pt2")
    out = tmp_path / "out"
    with pytest.raises(PrunecError, match=r"aten\.log_sigmoid\.default at .*test_build\.py:\d+"):
        B.build(p, "host", out)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["g.pt2"]


def test_existing_output_replaced_atomically_and_kept_on_failure(models_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # an empty directory is taken
    B.build(_pt2(models_dir, "mlp"), "host", out, name="mlp")
    (out / "stale.txt").write_text("old")  # an earlier build is replaced as a whole
    B.build(_pt2(models_dir, "mlp"), "host", out, name="mlp")
    assert not (out / "stale.txt").exists() and (out / "mlp.c").is_file()
    before = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"garbage")
    with pytest.raises(PrunecError):
        B.build(bad, "host", out, name="mlp")
    assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file()} == before
    assert sorted(os.listdir(tmp_path)) == ["bad.pt2", "out"]  # no temporaries left behind


def test_refuses_to_replace_a_directory_that_is_not_a_build(models_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(PrunecError, match="not an earlier prunec build"):
        B.build(_pt2(models_dir, "mlp"), "host", out, name="mlp")
    assert sorted(os.listdir(out)) == ["notes.txt"]
    (out / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(PrunecError, match="not an earlier prunec build"):
        B.build(_pt2(models_dir, "mlp"), "host", out, name="mlp")
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no temporaries left behind


def test_unknown_target_and_bad_names(models_dir, tmp_path):
    p = _pt2(models_dir, "mlp")
    with pytest.raises(PrunecError, match="unknown target"):
        B.build(p, "no-such-board", tmp_path / "o")
    for name in ("1abc", "a-b", "int", "", "prunec_x", "x" * 60):
        with pytest.raises(PrunecError, match="C identifier|reserved"):
            B.build(p, "host", tmp_path / "o", name=name)
    assert not (tmp_path / "o").exists()


def test_unwritable_output(models_dir, tmp_path):
    p = _pt2(models_dir, "mlp")
    with pytest.raises(PrunecError, match="cannot write"):
        B.build(p, "host", Path("/proc/prunec-out"))
    with pytest.raises(PrunecError, match="does not exist"):
        B.build(p, "host", tmp_path / "no" / "such" / "dir")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(PrunecError, match="a file of that name"):
        B.build(p, "host", f)
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(PrunecError, match="not writable"):
                B.build(p, "host", ro / "out")
        finally:
            ro.chmod(0o755)


def test_refuses_model_too_big_for_the_target(models_dir, tmp_path, monkeypatch):
    host = targets.get("host")
    p = _pt2(models_dir, "batchnorm")
    monkeypatch.setattr(targets, "get", lambda name: dataclasses.replace(host, flash_bytes=2000))
    with pytest.raises(PrunecError, match=r"flash.*2,000"):
        B.build(p, "host", tmp_path / "o")
    monkeypatch.setattr(targets, "get", lambda name: dataclasses.replace(host, ram_bytes=64))
    with pytest.raises(PrunecError, match=r"arena needs [\d,]+ bytes of RAM.*64"):
        B.build(p, "host", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(targets, "get", lambda name: dataclasses.replace(host, ram_bytes=1 << 20, flash_bytes=1 << 22))
    B.build(p, "host", tmp_path / "o")


def test_cli_build(models_dir, tmp_path):
    from click.testing import CliRunner

    from prunec.cli import main

    r = CliRunner().invoke(main, ["build", str(_pt2(models_dir, "mlp")), "--target", "host", "--out", str(tmp_path / "o"),
                                  "--name", "mlp"])
    assert r.exit_code == 0, r.output
    assert "built mlp for host" in r.output
    r = CliRunner().invoke(main, ["build", str(_pt2(models_dir, "mlp")), "--target", "nope", "--out", str(tmp_path / "p")])
    assert r.exit_code == 2 and "unknown target" in r.output


class _Fc25(nn.Module):  # one fc at 25 % density: 4-bit codes are the smaller storage, 8-bit the faster
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(96, 12)

    def forward(self, x):
        return self.fc(x)


def _fc25_case(tmp_path, seed, input_seed):
    """A 96->12 fc at 25 % density exported to .pt2, six random inputs and PyTorch's outputs for them."""
    torch.manual_seed(seed)
    m = _Fc25()
    with torch.no_grad():
        m.fc.weight.mul_((torch.rand_like(m.fc.weight) < 0.25).float())
    pt2 = tmp_path / "fc25.pt2"
    bm.export(m, (96,), pt2)
    x = bm.random_inputs((96,), n=6, seed=input_seed).reshape(6, -1)
    return pt2, x, verify.reference_outputs(pt2, x, [1, 96])


def test_index_widths_follow_the_op_the_target_and_the_flag(tmp_path):
    from click.testing import CliRunner

    from prunec.cli import main

    pt2, x, ref = _fc25_case(tmp_path, 1, 2)
    out = {}
    for tag, bits in (("default", None), ("size", [4, 8, 16]), ("b16", [16]), ("any", ["1-16"]), ("b6", [6])):
        d = tmp_path / tag
        man = B.build(pt2, "host", d, name="fc25", index_bits=bits).manifest
        out[tag] = man["layers"][0]
        r = verify.compare(verify.run_host(d, x), ref)
        assert r.ok and r.top1_agreement == 1.0, (tag, r.text())
    assert out["default"]["index_bits"] == 8  # fc: 8 or 16 bits unless told otherwise
    assert out["size"]["index_bits"] == 4 and sum(out["size"]["bytes"].values()) < sum(out["default"]["bytes"].values())
    assert out["b16"]["index_bits"] == 16 and out["b6"]["index_bits"] == 6
    # every width allowed: the fewest bytes of all (at 25 % with fp32 values 4 bits is the best width; 3 needs
    # a filler for 1 gap in 10)
    assert sum(out["any"]["bytes"].values()) <= sum(out["size"]["bytes"].values())
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "cli"), "--index-bits", "4,8,16"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["layers"][0]["index_bits"] == 4
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "cli6"), "--index-bits", "5-7"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "cli6" / "manifest.json").read_text())["layers"][0]["index_bits"] in (5, 6, 7)
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "bad"), "--index-bits", "4,17"])
    assert r.exit_code == 2 and "index widths must be" in r.output and not (tmp_path / "bad").exists()


def test_row_alignment_follows_the_target_and_the_flag(tmp_path):
    """x86_64-avx2 pads relative-indexed fc rows (--fc-layout rcsr: none in the blocked sliced layout) to a multiple
    of 8 entries (its [row_align_by_op]); --row-align overrides it on any target; every build computes what PyTorch computes (trailing zero entries through the real kernels)."""
    from click.testing import CliRunner

    from prunec import targets as T
    from prunec.cli import main

    pt2, x, ref = _fc25_case(tmp_path, 3, 4)
    assert T.get("x86_64-avx2").row_align_for("fc") == 8 and T.get("host").row_align_for("fc") == 1
    layer = {}
    for tag, target, align in (("x86", "x86_64-avx2", None), ("x86-1", "x86_64-avx2", 1), ("host-8", "host", 8),
                               ("host", "host", None)):
        d = tmp_path / tag
        layer[tag] = B.build(pt2, target, d, name="fc25", row_align=align, fc_layout="rcsr").manifest["layers"][0]
        r = verify.compare(verify.run_host(d, x), ref)
        assert r.ok and r.top1_agreement == 1.0, (tag, r.text())
    assert layer["x86"]["row_align"] == 8 and layer["host-8"]["row_align"] == 8
    assert layer["x86-1"]["row_align"] == 1 and layer["host"]["row_align"] == 1
    assert (layer["x86"]["nonzero"] + layer["x86"]["fillers"]) % 8 == 0
    assert sum(layer["x86"]["bytes"].values()) > sum(layer["x86-1"]["bytes"].values())
    assert layer["x86-1"]["bytes"] == layer["host"]["bytes"]
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "cli"), "-t", "x86_64-avx2", "--row-align", "1",
                                  "--fc-layout", "rcsr"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["layers"][0]["row_align"] == 1
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "bad"), "--row-align", "0"])
    assert r.exit_code == 2 and "row alignment" in r.output and not (tmp_path / "bad").exists()
    bad = tmp_path / "t.toml"
    bad.write_text('name = "t"\nisa = ["portable"]\ncc = "cc"\n[row_align_by_op]\nfc = 3.5\n')
    with pytest.raises(PrunecError, match="row_align_by_op.fc"):
        T._load(bad)


@pytest.mark.slow
def test_alexnet_at_paper_density_builds_and_compiles(tmp_path):
    """AlexNet with the paper's per-layer densities (6.7 M nonzeros): build, then compile the output."""
    from prunec import models
    from prunec.recipes import PAPER_REMAINING

    torch.manual_seed(0)
    m = models.create("alexnet").eval()
    with torch.no_grad():
        for name, mod in models.prunable_layers(m):
            mod.weight.mul_((torch.rand(mod.weight.shape) < PAPER_REMAINING["alexnet"][name]).float())
    p = bm.export(m, models.input_shape("alexnet"), tmp_path / "alexnet.pt2")
    r = B.build(p, "host", tmp_path / "out", name="alexnet")
    assert r.manifest["storage"] == "blob" and 6.0e6 < r.manifest["totals"]["nonzero"] < 7.5e6
    res = subprocess.run(["make", "-s", "-C", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    x = np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32)
    c = verify.run_host(tmp_path / "out", x.reshape(1, -1))
    t = verify.reference_outputs(p, x, r.manifest["input_shape"])
    assert verify.compare(c, t).ok


def test_float_literals_round_trip_exactly(tmp_path):
    """Weights printed as C literals come back bit-exact: y = W x with x = [1] returns W's column."""
    special = np.array([0.1, -1 / 3, 1e-45, 1.17549435e-38, 3.4028235e38, -2.5e-40, 123456789.0, 1.0, -7.0,
                        np.nextafter(np.float32(1), np.float32(2)), 6.0e-8, np.pi], dtype=np.float32)
    m = nn.Linear(1, special.size, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(special).reshape(-1, 1))
    p = bm.export(m, (1,), tmp_path / "f.pt2")
    for storage in ("c", "blob"):
        B.build(p, "host", tmp_path / storage, name="f", storage=storage)
        y = verify.run_host(tmp_path / storage, np.ones((1, 1), np.float32))
        assert np.array_equal(y[0].view(np.uint32), special.view(np.uint32)), storage


def test_x86_fuses_only_the_pairs_it_runs_as_one_call(tmp_path):
    """x86_64-avx2's `fuse_conv_pool = "one-call"`: a conv + max pool pair becomes one avx512x4 call by default
    (where the build machine has AVX-512), a conv + average pool pair stays unfused (its per-channel loop would
    repack the conv's input per channel), --fuse-pool / --no-fuse-pool still decide for every pair, and a bad
    value in a target file is named."""
    from prunec import verify as V

    if not {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (V.cpu_flags() or set()):
        pytest.skip("this CPU lacks AVX-512: the x86 build has no one-call kernel to fuse with")
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 6, 3), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3), nn.AvgPool2d(2), nn.Flatten(),
                      nn.Linear(8 * 2 * 2, 10)).eval()
    with torch.no_grad():
        for layer in (m[0], m[2], m[5]):
            layer.weight.mul_((torch.rand_like(layer.weight) < 0.5).float())
    pt2 = tmp_path / "mixed.pt2"
    torch.export.save(torch.export.export(m, (torch.zeros(1, 1, 14, 14),)), str(pt2))
    x = bm.random_inputs((1, 14, 14), n=4, seed=3).reshape(4, -1)
    ref = verify.reference_outputs(pt2, x, [1, 1, 14, 14])
    fused = {}
    for tag, fp in (("default", None), ("all", True), ("none", False)):
        r = B.build(pt2, "x86_64-avx2", tmp_path / tag, name="mixed", fuse_pool=fp)
        fused[tag] = r.manifest["plan"]["fused_conv_pool"]
        rep = verify.compare(verify.run_host(tmp_path / tag, x), ref)
        assert rep.ok, (tag, rep.text())
    assert fused["default"] == [["0", "1"]] and fused["all"] == [["0", "1"], ["2", "3"]] and fused["none"] == []
    kernels = json.loads((tmp_path / "default" / "manifest.json").read_text())["kernels"]
    assert "prunec_f32_conv2d_rcsr_maxpool2d__avx512x4" in kernels
    t = targets.get("x86_64-avx2")
    bad = dataclasses.replace(t, extra={**t.extra, "fuse_conv_pool": "sometimes"})
    import unittest.mock as um
    with um.patch.object(targets, "get", return_value=bad), pytest.raises(PrunecError, match="one-call"):
        B.build(pt2, "x86_64-avx2", tmp_path / "bad", name="mixed")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("target", ["host", "x86_64-avx2", "cortex-m4"])
@pytest.mark.parametrize("storage", ["c", "blob"])
def test_flash_estimate_counts_the_stored_bytes(models_dir, target, storage):
    """manifest totals.flash_bytes_estimate (what refuses a model too big for a firmware target when its library
    cannot be measured) = the bytes of every stored array (weights, indices, pointers, biases: totals.weights_bytes
    + totals.bias_bytes) + the code estimate per runtime source and per layer."""
    from prunec import build as B
    from prunec import codegen

    files, man, _ = B.prepare(_pt2(models_dir, "batchnorm"), target, storage=storage)
    tot = man["totals"]
    code = (codegen.CODE_BYTES_PER_KERNEL_SOURCE * (len(man["files"]["sources"]) - 1)
            + codegen.CODE_BYTES_PER_LAYER * len(man["layers"]))
    assert tot["flash_bytes_estimate"] == tot["weights_bytes"] + tot["bias_bytes"] + code
    if storage == "blob":  # the blob holds exactly those bytes, plus alignment padding
        blob = files["batchnorm_weights.bin"]
        assert tot["weights_bytes"] + tot["bias_bytes"] <= len(blob) < tot["weights_bytes"] + tot["bias_bytes"] + 64 * 16
