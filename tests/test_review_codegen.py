"""Regression tests from a review of the generated project files (NAME.c, Makefile, CMakeLists.txt) and of
`prunec bench`: names that shadow system headers or CMake targets, module names that end a C comment, one
argument contract for every model, CMake building what the Makefile builds, blobs in paths with spaces, and
bench's argument and build-directory checks."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from torch import nn

import build_models as bm
from prunec import bench as BN
from prunec import build as B
from prunec import codegen
from prunec.cli import main
from prunec.errors import PrunecError

CC = shutil.which("gcc") or shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no host C compiler")


def _odd_names_model(tmp_path):
    m = nn.Sequential()
    m.add_module("a*/b??/", nn.Linear(3, 4))  # add_module accepts any string without '.'
    m.add_module("r", nn.ReLU())
    m.add_module("/*c", nn.Linear(4, 2))
    return bm.export(m, (3,), tmp_path / "odd.pt2")


@pytest.mark.parametrize("name", ["math", "Math", "stdint", "time", "arm_neon", "immintrin", "all", "clean",
                                  "install", "m"])
def test_names_shadowing_a_system_header_or_a_cmake_target_are_refused(name):
    with pytest.raises(PrunecError, match="shadow|reserved"):
        codegen.validate_name(name)
    assert B.default_name(f"/models/{name}.pt2") == "model"  # a model file so named still builds


def test_ordinary_names_are_still_accepted():
    for name in ("lenet300", "mathnet", "m2", "test_net", "timeseries"):
        assert codegen.validate_name(name) == name


@needs_cc
def test_module_names_with_comment_delimiters_compile_warning_free(tmp_path):
    d = B.build(_odd_names_model(tmp_path), "host", tmp_path / "out").out_dir
    src = (d / "odd.c").read_text()
    r = subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-I", str(d), "-I",
                        str(d / "runtime" / "include"), "-c", str(d / "odd.c"), "-o", str(tmp_path / "odd.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert BN.instrument(src, "odd")[1] == 2  # bench still finds both layers


ARGS_DRIVER = r"""
#include <stdint.h>
#include "tiny.h"
static float in[tiny_INPUT_SIZE], out[tiny_OUTPUT_SIZE];
static _Alignas(16) unsigned char arena[tiny_ARENA_BYTES + 16];
int main(void) {
  if (tiny_run(in, out, (void *)0) != -1) return 1;
  if (tiny_run(in, out, arena + 4) != -2) return 2;
  if (tiny_run(in, out, arena + 8) != -2) return 4; /* 8-byte aligned is not enough: the contract is 16 */
  if (tiny_run(in, out, arena) != 0) return 3;
  return 0;
}
"""


@needs_cc
def test_null_or_misaligned_arena_is_refused_even_when_the_model_needs_none(tmp_path):
    p = bm.export(nn.Sequential(nn.Linear(3, 2)), (3,), tmp_path / "tiny.pt2")
    d = B.build(p, "host", tmp_path / "out").out_dir
    (tmp_path / "main.c").write_text(ARGS_DRIVER)
    m = json.loads((d / "manifest.json").read_text())
    exe = tmp_path / "prog"
    r = subprocess.run([CC, "-std=c11", "-I", str(d), "-I", str(d / "runtime" / "include"), str(tmp_path / "main.c"),
                        *[str(d / s) for s in m["files"]["sources"]], "-o", str(exe), "-lm"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(exe)]).returncode == 0


def _cmake_lists(tmp_path, target):
    p = bm.export(nn.Sequential(nn.Linear(3, 2)), (3,), tmp_path / "tiny.pt2")
    files, _, _ = B.prepare(p, target, storage="blob")
    return files["CMakeLists.txt"].decode()


def test_cmake_compiles_iso_c99_and_pic_only_where_the_target_asks():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as t:
        m4 = _cmake_lists(Path(t), "cortex-m4")
        host = _cmake_lists(Path(t), "host")
    for text in (m4, host):
        assert "C_EXTENSIONS OFF" in text  # -std=c99, not gnu99 (which lets GCC contract into FMAs)
    assert "POSITION_INDEPENDENT_CODE OFF" in m4 and "POSITION_INDEPENDENT_CODE ON" not in m4
    assert "POSITION_INDEPENDENT_CODE ON" in host


@pytest.mark.skipif(shutil.which("cmake") is None or CC is None, reason="needs cmake and a C compiler")
def test_cmake_configures_with_the_makefiles_language_mode(tmp_path):
    p = bm.export(nn.Sequential(nn.Linear(3, 2)), (3,), tmp_path / "tiny.pt2")
    d = B.build(p, "host", tmp_path / "out", storage="blob").out_dir
    b = tmp_path / "cmake-build"
    r = subprocess.run(["cmake", "-S", str(d), "-B", str(b), "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
                        "-DCMAKE_C_COMPILER=" + CC], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cmds = json.loads((b / "compile_commands.json").read_text())
    c_cmds = [c["command"] for c in cmds if c["file"].endswith(".c")]
    assert c_cmds and all("-std=c99" in c and "-std=gnu99" not in c for c in c_cmds), c_cmds


@needs_cc
def test_make_assembles_the_blob_in_a_directory_with_a_space(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")
    p = bm.export(nn.Sequential(nn.Linear(3, 2)), (3,), tmp_path / "tiny.pt2")
    (tmp_path / "with space").mkdir()
    d = B.build(p, "host", tmp_path / "with space" / "out", storage="blob").out_dir
    r = subprocess.run(["make", "-C", str(d), f"CC={CC}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (d / "libtiny.a").is_file()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    t = tmp_path_factory.mktemp("rvbench")
    p = bm.export(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)), (8,), t / "tiny.pt2")
    return B.build(p, "host", t / "out").out_dir


@pytest.mark.parametrize("v", ["-1", "nan", "inf"])
def test_bench_refuses_a_negative_or_non_finite_min_time(tiny_dir, v):
    r = CliRunner().invoke(main, ["bench", str(tiny_dir), "--min-time", v, "--reps", "1"])
    assert r.exit_code == 2 and "--min-time" in r.output, r.output
    with pytest.raises(PrunecError, match="reps"):
        BN.bench(tiny_dir, reps=0)


@needs_cc
def test_bench_no_layers_says_so(tiny_dir):
    r = CliRunner().invoke(main, ["bench", str(tiny_dir), "--min-time", "0", "--reps", "1", "--no-layers"])
    assert r.exit_code == 0, r.output
    assert "--no-layers" in r.output and "not recognised" not in r.output


def test_bench_on_a_broken_build_directory_says_what_is_wrong(tiny_dir, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(tiny_dir, d)
    (d / "Makefile").unlink()
    r = CliRunner().invoke(main, ["bench", str(d)])
    assert r.exit_code == 2 and "lacks Makefile" in r.output, r.output
    for text, msg in (("{bad", "not readable JSON"), ("{}", "lacks name"), ("[1]", "lacks name")):
        (d / "manifest.json").write_text(text)
        r = CliRunner().invoke(main, ["bench", str(d)])
        assert r.exit_code == 2 and msg in r.output, r.output
