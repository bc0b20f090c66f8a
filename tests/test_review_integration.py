"""Regression tests from a review of integrating the generated C into other projects: the Makefile's flags when a
project overrides CFLAGS (link-time optimisation, a CFLAGS in the environment), and `make shared` on a target whose
link flags say -static (a Linux aarch64 .so, loaded with dlopen under qemu-aarch64)."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import build_models as bm
from prunec import build as B
from prunec import targets, verify


class TinyNet(nn.Module):  # conv + relu + max pool (fused on Cortex-M), conv, fc: every kernel family a LeNet uses
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 5), nn.Conv2d(4, 6, 3)
        self.fc = nn.Linear(6 * 2 * 2, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc(torch.flatten(x, 1))


SHAPE = (1, 16, 16)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return bm.export(bm.prune_random(TinyNet(), seed=3, lo=0.3, hi=0.6), SHAPE,
                     tmp_path_factory.mktemp("m") / "tiny.pt2")


def _have(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def _inputs(n=6):
    return bm.random_inputs(SHAPE, n=n, seed=5).reshape(n, -1).astype(np.float32)


# A main that runs the model on inputs compiled in as hex-float literals (exact) and prints every output with
# %.9g (exact for float32; newlib's printf has no %a), one sample per line.
MAIN = r"""
#include <stdio.h>
#include "tiny.h"
static const float X[%(n)d][tiny_INPUT_SIZE] = {%(x)s};
static unsigned char arena[tiny_ARENA_BYTES] __attribute__((aligned(16)));
static float out[tiny_OUTPUT_SIZE];
int main(int argc, char **argv) {
  int s, i;
  (void)argc; (void)argv;
  for (s = 0; s < %(n)d; s++) {
    if (tiny_run(X[s], out, arena) != 0) return 1;
    for (i = 0; i < tiny_OUTPUT_SIZE; i++) printf("%%.9g ", (double)out[i]);
    printf("\n");
  }
  return 0;
}
"""


def _main_c(x: np.ndarray) -> str:
    rows = ",\n".join("{" + ",".join(float(v).hex() + "f" for v in r) + "}" for r in x)
    return MAIN % {"n": len(x), "x": rows}


def _check_outputs(stdout: str, x: np.ndarray, model: Path):
    c = np.array([[float(v) for v in ln.split()] for ln in stdout.strip().splitlines()], dtype=np.float32)
    t = verify.reference_outputs(model, x, (1, *SHAPE)).reshape(c.shape)
    r = verify.compare(c, t)
    assert r.ok and r.top1_agreement == 1.0, r.text()


def _make(d: Path, *args, env=None):
    r = subprocess.run(["make", "-s", "-C", str(d), *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def _defined(t, lib: Path) -> set[str]:
    nm = t.ar[:-2] + "nm" if t.ar.endswith("ar") else "nm"
    _have(nm)
    r = subprocess.run([nm, "--defined-only", "-g", str(lib)], capture_output=True, text=True, check=True)
    return {ln.split()[-1] for ln in r.stdout.splitlines() if len(ln.split()) == 3}


KERNEL_TARGETS = ["x86_64-avx2", "cortex-m4", "aarch64-neon", "armv7a-neon"]


@pytest.mark.parametrize("how", ["argument", "environment"])
@pytest.mark.parametrize("name", KERNEL_TARGETS)
def test_a_projects_cflags_keep_the_targets_instruction_set(name, how, model, tmp_path):
    """`make CFLAGS="-O2 -flto"` (or a CFLAGS exported by the shell, which `prunec verify` inherits when it runs
    make for a QEMU target) used to replace the target's -mavx2 / -mcpu / -march flags: the ISA kernels compiled to
    nothing and the library did not link (undefined prunec_f32_*__cortexm / __avx512x4 / __neon)."""
    _have("make")
    t = targets.get(name)
    _have(t.cc, t.ar)
    if name == "x86_64-avx2" and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86 target on a non-x86 machine")
    d = tmp_path / "b"
    B.build(model, name, d, name="tiny")
    kernels = (d / "manifest.json").read_text()
    env = dict(os.environ)
    args = ["CFLAGS=-O2 -g"] if how == "argument" else []
    if how == "environment":
        env["CFLAGS"] = "-O1"
    _make(d, *args, env=env)
    # a build whose layers all use 4/8/16-bit indices links its rcsr kernels as NAME_w3 (prunec_kernels.h)
    odd = "#define PRUNEC_RCSR_ODD_WIDTHS 1" in (d / "runtime" / "include" / "prunec_config.h").read_text()
    want = {k if odd or "_rcsr" not in k else k + "_w3" for k in json.loads(kernels)["kernels"]} | {"tiny_run"}
    have = _defined(t, d / "libtiny.a")
    assert want <= have, f"{name}: {sorted(want - have)} missing from libtiny.a built with {args or env['CFLAGS']}"


def test_lto_build_on_x86_equals_pytorch(model, tmp_path):
    """make CFLAGS="-std=c99 -O2 -flto" LDFLAGS=-flto on x86_64-avx2, linked into a program compiled with -flto (and
    without -std=c99 or any -m flag): outputs equal PyTorch's."""
    _have("make", "gcc")
    if platform.machine() != "x86_64":
        pytest.skip("x86 only")
    d = tmp_path / "b"
    B.build(model, "x86_64-avx2", d, name="tiny")
    verify.check_host_isa(d, verify.load_manifest(d))
    _make(d, "CC=gcc", "CFLAGS=-std=c99 -O2 -flto", "LDFLAGS=-flto")
    x = _inputs()
    (tmp_path / "main.c").write_text(_main_c(x))
    exe = tmp_path / "prog"
    r = subprocess.run(["gcc", "-O2", "-flto", f"-I{d}", str(tmp_path / "main.c"), str(d / "libtiny.a"), "-lm",
                        "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    _check_outputs(r.stdout, x, model)


def test_lto_build_on_cortex_m4_equals_pytorch(model, tmp_path):
    """The same on Cortex-M4: libtiny.a from make CFLAGS="-std=c99 -O2 -flto", linked with -flto, the start-up file
    and rdimon as prunec's runner does, run under qemu-system-arm (mps2-an386, semihosting)."""
    t = targets.get("cortex-m4")
    _have("make", t.cc, t.ar, t.extra["emulator"])
    d = tmp_path / "b"
    B.build(model, "cortex-m4", d, name="tiny")
    _make(d, "CFLAGS=-std=c99 -O2 -flto", "LDFLAGS=-flto")
    x = _inputs()
    (tmp_path / "main.c").write_text(_main_c(x))
    from prunec.resources import runtime_dir
    arch = [f for f in t.cflags if f.startswith("-m")]
    elf = tmp_path / "prog.elf"
    r = subprocess.run([t.cc, "-std=c99", "-O2", "-flto", *arch, f"-I{d}", str(tmp_path / "main.c"),
                        str(runtime_dir() / t.extra["startup"]), str(d / "libtiny.a"), *t.ldflags, *t.libs,
                        "-o", str(elf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([t.extra["emulator"], "-M", t.extra["machine"], "-semihosting", "-nographic", "-kernel",
                        str(elf)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    _check_outputs(r.stdout, x, model)


DLOPEN = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
%(inputs)s
int main(int argc, char **argv) {
  int (*run)(const float *, float *, void *);
  void *h, *arena = aligned_alloc(16, 1 << 20);
  float out[64];
  int s, i;
  if (argc < 2 || !(h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL))) { printf("dlopen: %%s\n", dlerror()); return 2; }
  *(void **)&run = dlsym(h, "tiny_run");
  if (!run) return 3;
  for (s = 0; s < NS; s++) {
    if (run(X[s], out, arena) != 0) return 1;
    for (i = 0; i < NO; i++) printf("%%.9g ", (double)out[i]);
    printf("\n");
  }
  return 0;
}
"""


def test_make_shared_drops_static_from_the_link_flags(model, tmp_path):
    """aarch64-neon links its verification programs -static; `make shared` passed those LDFLAGS to `cc -shared`,
    which then pulled libc.a into the .so and failed (R_AARCH64 relocations, __fini_array_start). The target is
    marked shared_library = true (what a phone app loads): the .so builds, dlopens under qemu-aarch64 and computes
    what PyTorch does."""
    t = targets.get("aarch64-neon")
    assert t.shared_library and targets.get("armv7a-neon").shared_library
    _have("make", t.cc, "qemu-aarch64")
    sysroot = Path("/usr/aarch64-linux-gnu")
    if not (sysroot / "lib").is_dir():
        pytest.skip("no aarch64 sysroot for qemu-aarch64 -L")
    d = tmp_path / "b"
    B.build(model, "aarch64-neon", d, name="tiny")
    assert "-static" in (d / "Makefile").read_text()
    _make(d, "shared")
    x = _inputs(4)
    rows = ",\n".join("{" + ",".join(float(v).hex() + "f" for v in r) + "}" for r in x)
    src = DLOPEN % {"inputs": f"#define NS {len(x)}\n#define NO 10\nstatic const float X[NS][{x.shape[1]}] = {{{rows}}};"}
    (tmp_path / "dl.c").write_text(src)
    exe = tmp_path / "dl"
    r = subprocess.run([t.cc, "-std=c11", "-O1", str(tmp_path / "dl.c"), "-o", str(exe), "-ldl"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["qemu-aarch64", "-L", str(sysroot), str(exe), str(d / "libtiny.so")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    _check_outputs(r.stdout, x, model)


def test_cmake_optimisation_level_can_be_overridden(model, tmp_path):
    """The target's -O2 came after CMAKE_C_FLAGS (target options), so a firmware project's -Os could not win; it is
    now the cache variable <NAME>_OPT: the target's level by default, -D<NAME>_OPT=-Os replaces it."""
    _have("cmake", "make")
    d = tmp_path / "b"
    B.build(model, "host", d, name="tiny")
    for opt, want, not_want in ((None, "-O2", "-Os"), ("-Os", "-Os", "-O2")):
        b = tmp_path / f"cmake{opt or ''}"
        cmd = ["cmake", "-S", str(d), "-B", str(b), "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", "-DCMAKE_C_FLAGS=-Os"]
        if opt:
            cmd.append(f"-DTINY_OPT={opt}")
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        cc = json.loads((b / "compile_commands.json").read_text())
        model_cmd = next(c["command"] for c in cc if c["file"].endswith("tiny.c")).split()
        assert want in model_cmd, model_cmd
        if opt:  # the project's -Os is the only level left
            assert not_want not in model_cmd, model_cmd
        else:  # the target's -O2 comes last and wins, as in the verified build
            assert model_cmd.index("-O2") > model_cmd.index("-Os"), model_cmd
        r = subprocess.run(["cmake", "--build", str(b)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_shared_library_binds_its_own_kernels(model, tmp_path):
    """Two model .so files from different prunec versions export the same prunec_f32_* kernel names; ELF bound
    the second library's kernel calls to the first-loaded definition (interposition). `make shared` links with
    -Bsymbolic: each .so calls its own kernels. Shown with an impostor library loaded first, RTLD_GLOBAL."""
    _have("make", "cc")
    d = tmp_path / "b"
    B.build(model, "host", d, name="tiny")
    man = json.loads((d / "manifest.json").read_text())
    r = subprocess.run(["make", "-C", str(d), "shared"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    fake = tmp_path / "impostor.c"
    fake.write_text("".join(f"void {k}(void) {{ }}\n" for k in man["kernels"]))  # does nothing: output unwritten
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "libimpostor.so"), str(fake)], check=True)
    # in a child process: the impostor, loaded RTLD_GLOBAL, must not leak into this process's later tests
    np.save(tmp_path / "x.npy", _inputs(1)[0])
    code = f"""
import ctypes, numpy as np
ctypes.CDLL({str(tmp_path / "libimpostor.so")!r}, mode=ctypes.RTLD_GLOBAL)
lib = ctypes.CDLL({str(d / "libtiny.so")!r})
x = np.load({str(tmp_path / "x.npy")!r})
out = np.full({man["output_size"]}, np.nan, np.float32)
arena = np.zeros({man["arena_bytes"]} // 4 + 16, np.float32)
a = arena[(-arena.ctypes.data // 4) % 16:]
P = ctypes.POINTER(ctypes.c_float)
rc = lib.tiny_run(x.ctypes.data_as(P), out.ctypes.data_as(P), a.ctypes.data_as(ctypes.c_void_p))
print(rc, bool(np.isfinite(out).all()))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["0", "True"], r.stdout + r.stderr
