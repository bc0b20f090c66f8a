"""Every ISA kernel against its portable twin, through one C tester (runtime_c/test/kernel_tester.c).

The tester includes the kernel registry and runs each kernel linked into it on deterministic edge cases
(shapes around the vector widths, empty rows, all-zero layers, gaps beyond 2^b, stride/pad/dilation/groups).
It is built with each target's compiler and flags and run natively (x86: AVX2, and AVX-512 when this CPU
has it), under qemu-aarch64-static / qemu-arm-static (NEON) and on QEMU's Cortex-M boards via semihosting.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from prunec import runners, runtime, targets, verify
from prunec.resources import runtime_dir

RT = runtime_dir()
TESTER = RT / "test" / "kernel_tester.c"

# target name -> ISAs whose kernels must have run on it
CROSS = {
    "aarch64-neon": ("neon",),
    "armv7a-neon": ("neon",),
    "cortex-m4": ("cortexm",),
    "cortex-m7": ("cortexm",),
    "cortex-m55": ("mve", "cortexm"),
    "cortex-m33": ("cortexm",),
}


def _cpu_flags() -> set[str]:
    return verify.cpu_flags() or set()


def _sources() -> list[Path]:
    return [RT / s for s in runtime.sources_for(runtime.kernels())]


def _skip_if_missing(t: targets.Target):
    missing = t.missing_tools()
    if missing:
        pytest.skip(f"target {t.name}: " + ", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in missing))


def _build_and_run(t: targets.Target, tmp_path: Path, extra_sources=(), args=()) -> tuple[int, str]:
    prog = tmp_path / ("kernel_tester.elf" if t.runner == "qemu-system" else "kernel_tester")
    srcs = [TESTER, *_sources()]
    for extra in extra_sources:  # replace the registry's source of the same ISA file
        srcs = [s for s in srcs if s.name != Path(extra).name.replace("broken-", "")] + [Path(extra)]
    runners.compile_program(t, srcs, prog, include_dirs=[RT / "include"], extra_cflags=["-w"])
    r = runners.run_program(t, prog, list(args), cwd=tmp_path, timeout=240)
    return r.returncode, r.stdout + r.stderr


def _runs(out: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(prunec_\w+)\s+\w+\s+runs\s+(\d+)", out, re.M)}


def _x86(avx512: bool) -> targets.Target:
    t = targets.get("x86_64-avx2")
    base = [f for f in t.cflags if not f.startswith("-mavx512")]
    if avx512:
        base += list(t.extra["probe"]["avx512"]["cflags"])
    return replace(t, cflags=tuple(base))


def _assert_passed(rc: int, out: str, isas: tuple[str, ...]):
    assert rc == 0 and re.search(r"kernel_tester: \d+ kernel runs, 0 failures", out), out[-4000:]
    runs = _runs(out)
    for k in runtime.kernels():
        if k.isa in isas and k.op in ("fc_rcsr", "fc_rcsc", "conv2d_rcsr", "fc_dense", "conv2d_dense", "fc_acsr"):
            assert runs.get(k.name, 0) > 0, f"{k.name} did not run:\n{out[-3000:]}"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (Debian package gcc)")
def test_avx2_kernels_match_portable(tmp_path):
    if not {"avx2", "fma"} <= _cpu_flags():
        pytest.skip("this CPU lacks AVX2/FMA")
    rc, out = _build_and_run(_x86(False), tmp_path)
    _assert_passed(rc, out, ("avx2",))
    assert "__avx512" not in "".join(_runs(out)), "AVX-512 kernels ran without AVX-512 flags"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (Debian package gcc)")
def test_avx512_kernels_match_portable(tmp_path):
    if not {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= _cpu_flags():
        pytest.skip("this CPU lacks AVX-512 (F, VL, BW, DQ): /proc/cpuinfo")
    rc, out = _build_and_run(_x86(True), tmp_path)
    _assert_passed(rc, out, ("avx512", "avx2"))


@pytest.mark.cross
@pytest.mark.parametrize("name", list(CROSS))
def test_arm_kernels_match_portable_under_qemu(name, tmp_path):
    t = targets.get(name)
    _skip_if_missing(t)
    rc, out = _build_and_run(t, tmp_path)
    _assert_passed(rc, out, CROSS[name])


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (Debian package gcc)")
def test_tester_catches_a_wrong_kernel(tmp_path):
    """A portable twin renamed as the AVX2 kernel but off by one column must be reported, with its case."""
    if not {"avx2", "fma"} <= _cpu_flags():
        pytest.skip("this CPU lacks AVX2/FMA")
    src = (RT / "src/portable/f32-fc-rcsr-portable.c").read_text()
    src = src.replace("prunec_f32_fc_rcsr__portable", "prunec_f32_fc_rcsr__avx2")
    src = src.replace("const uint32_t col = next + index[e];", "const uint32_t col = next + index[e] + (e == 3);")
    src = src.replace('#include "prunec_kernels.h"', '#include "prunec_kernels.h"\n'
                      'void prunec_f32_conv2d_rcsr__avx2(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,'
                      ' const float *bias, const float *x, float *y, float lo, float hi) {'
                      ' prunec_f32_conv2d_rcsr__portable(p, w, bias, x, y, lo, hi); }')
    broken = tmp_path / "broken-f32-rcsr-avx2.c"
    broken.write_text(src)
    rc, out = _build_and_run(_x86(False), tmp_path, extra_sources=[broken])
    assert rc != 0
    assert re.search(r"FAIL prunec_f32_fc_rcsr__avx2 vs prunec_f32_fc_rcsr__portable: case .* b=8 .*index \d+", out), out[-3000:]
    assert "FAIL prunec_f32_fc_rcsr__portable" not in out


STRICT = ["-Wall", "-Wextra", "-Wpedantic", "-Wconversion", "-Wshadow", "-Wcast-qual", "-Wstrict-prototypes",
          "-Wmissing-prototypes", "-Wundef", "-Werror"]  # what firmware projects use


# (a plain -O0 build is not a case of its own: O0-strict is the same flags plus warnings as errors, so it fails
# wherever -O0 alone would)
@pytest.mark.parametrize("how", ["strict", "O0-strict", "strict-fast-widths"])
@pytest.mark.parametrize("name", sorted(CROSS) + ["x86_64-avx2"])
def test_every_kernel_compiles_unoptimised_and_warning_free(name, how, tmp_path):
    """`make CFLAGS="-O0 -g"` (debugging) must build: the inline-assembly kernels fall back to their C steps when
    the compiler does not optimise (GCC cannot allocate their registers at -O0). And the runtime compiles without
    a warning under the strict flags firmware projects use (-Wconversion -Wshadow ... -Werror)."""
    import subprocess

    t = targets.get(name)
    _skip_if_missing(t)
    flags = [f for f in t.cflags if not f.startswith("-O")] + ["-I", str(RT / "include")]
    flags += {"strict": ["-O2", *STRICT], "O0-strict": ["-O0", "-g", *STRICT],
              # a build whose layers all use 4/8/16 bits (prunec_config.h: the other widths' decoders left out)
              "strict-fast-widths": ["-O2", *STRICT, "-DPRUNEC_RCSR_ODD_WIDTHS=0"]}[how]
    for src in _sources():
        r = subprocess.run([t.cc, *flags, "-c", str(src), "-o", str(tmp_path / "k.o")], capture_output=True, text=True)
        assert r.returncode == 0, f"{name}: {src.name} ({how}):\n{r.stderr[-2000:]}"


@pytest.mark.parametrize("name", ["cortex-m4", "cortex-m7", "cortex-m55"])
def test_cortex_m_kernels_need_no_libm_fmaf_when_freestanding(name, tmp_path):
    """Firmware built with -ffreestanding (or -fno-builtin) turned each fmaf() of the Cortex-M kernels into a call
    to newlib's software fmaf (double arithmetic, hundreds of cycles) instead of one VFMA: the kernels use
    __builtin_fmaf."""
    import subprocess

    t = targets.get(name)
    _skip_if_missing(t)
    nm = t.cc.replace("gcc", "nm")
    flags = [f for f in t.cflags if not f.startswith("-O")] + ["-O2", "-ffreestanding", "-I", str(RT / "include")]
    srcs = [s for s in _sources() if "/cortexm/" in str(s) or "/mve/" in str(s)]
    assert srcs
    for src in srcs:
        obj = tmp_path / (src.stem + ".o")
        r = subprocess.run([t.cc, *flags, "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        undef = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
        assert "fmaf" not in undef, f"{name}: {src.name} calls libm's fmaf under -ffreestanding"
