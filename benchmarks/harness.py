"""Shared machinery of the benchmarks: the C kernels compiled in-process, interleaved timing, machine limits.

* `kernels_lib()` compiles every x86-usable kernel of runtime_c/kernels.inc (portable, avx2, avx512, ...)
  for fc/conv, plus benchmarks/c/bench_driver.c (C timing loops, clock_gettime), into one cffi module with
  -O3 -march=native ($PRUNEC_BENCH_CFLAGS replaces these, e.g. with the x86_64-avx2 target's own flags: the
  avx512x4 fc of LeNet-size layers runs ~15 % faster with them). Python hands the kernel a function pointer and
  the encoded layer; the loop runs in C.
* `measure(contenders, reps)` times every contender once per repetition, in a rotating order, so that all
  of them see the same machine noise; each figure is the median over repetitions of the mean time per call
  of a calibrated inner loop (>= `target_s` per repetition). Ratios are taken between medians of one run.
* `machine_limits()` compiles and runs benchmarks/probe_machine.c (bandwidths and peak FMA rate).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime_c"
BENCH = ROOT / "benchmarks"
CACHE = ROOT / "build" / "bench-cache"
X86_ISAS = ("portable", "avx2", "avx512", "avx512x4")
OPS = ("fc_rcsr", "fc_rcsc", "fc_dense", "fc_bsell", "fc_rsell", "conv2d_rcsr", "conv2d_dense")
CFLAGS = ["-O3", "-march=native", "-std=c99", "-fPIC"]
if os.environ.get("PRUNEC_BENCH_CFLAGS"):  # e.g. the x86_64-avx2 target's own flags, what `prunec build` compiles with
    CFLAGS = os.environ["PRUNEC_BENCH_CFLAGS"].split()

@dataclass(frozen=True)
class Kernel:
    name: str
    op: str
    isa: str
    source: str


def registry() -> list:
    """The registered kernels (prunec.runtime's reading of kernels.inc, PRUNEC_KERNEL_USES included)."""
    from prunec import runtime

    return list(runtime.kernels())


def bench_kernels() -> list[Kernel]:
    """Registered fc/conv kernels that this x86 host can run (ISA names not of another architecture), plus
    any listed in $PRUNEC_BENCH_EXTRA as `name:op:isa:source;...` (to try a kernel before registering it)."""
    arm = ("neon", "cortexm", "mve", "helium")
    ks = registry()
    names = {k.name for k in ks}
    for item in filter(None, os.environ.get("PRUNEC_BENCH_EXTRA", "").split(";")):
        k = Kernel(*item.split(":"))
        if k.name not in names:
            ks.append(k)
    return [k for k in ks if k.op in OPS and not any(a in k.isa for a in arm) and (RUNTIME / k.source).exists()]


_CDEF_TYPES = """
typedef struct prunec_rcsr_f32 { uint32_t rows; uint32_t cols; uint32_t index_bits; const float *values;
  const uint8_t *index; const uint32_t *row_ptr; } prunec_rcsr_f32;
typedef struct prunec_dense_f32 { uint32_t rows; uint32_t cols; const float *values; } prunec_dense_f32;
typedef struct prunec_bsell_f32 { uint32_t rows; uint32_t cols; const uint16_t *perm; const uint8_t *steps;
  const uint8_t *index; const float *values; } prunec_bsell_f32;
typedef struct prunec_rsell_f32 { uint32_t rows; uint32_t cols; const uint16_t *perm; const uint32_t *steps;
  const uint8_t *index; const float *values; } prunec_rsell_f32;
typedef struct prunec_conv2d_params { uint32_t in_c, in_h, in_w; uint32_t out_c, out_h, out_w; uint32_t kh, kw;
  uint32_t stride_h, stride_w; uint32_t pad_h, pad_w; uint32_t dil_h, dil_w; uint32_t groups; } prunec_conv2d_params;
typedef void (*bench_fc_rcsr_fn)(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float);
typedef void (*bench_fc_dense_fn)(const prunec_dense_f32 *, const float *, const float *, float *, float, float);
typedef void (*bench_conv_rcsr_fn)(const prunec_conv2d_params *, const prunec_rcsr_f32 *, const float *,
                                   const float *, float *, float, float);
typedef void (*bench_fc_bsell_fn)(const prunec_bsell_f32 *, const float *, const float *, float *, float, float);
typedef void (*bench_fc_rsell_fn)(const prunec_rsell_f32 *, const float *, const float *, float *, float, float);
typedef void (*bench_conv_dense_fn)(const prunec_conv2d_params *, const prunec_dense_f32 *, const float *,
                                    const float *, float *, float, float);
double bench_fc_rcsr(bench_fc_rcsr_fn f, const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                     int batch, long iters, float lo, float hi);
double bench_fc_dense(bench_fc_dense_fn f, const prunec_dense_f32 *w, const float *bias, const float *x, float *y,
                      int batch, long iters, float lo, float hi);
double bench_fc_bsell(bench_fc_bsell_fn f, const prunec_bsell_f32 *w, const float *bias, const float *x, float *y,
                      int batch, long iters, float lo, float hi);
double bench_fc_rsell(bench_fc_rsell_fn f, const prunec_rsell_f32 *w, const float *bias, const float *x, float *y,
                      int batch, long iters, float lo, float hi);
double bench_conv_rcsr(bench_conv_rcsr_fn f, const prunec_conv2d_params *p, const prunec_rcsr_f32 *w,
                       const float *bias, const float *x, float *y, long iters, float lo, float hi);
double bench_conv_dense(bench_conv_dense_fn f, const prunec_conv2d_params *p, const prunec_dense_f32 *w,
                        const float *bias, const float *x, float *y, long iters, float lo, float hi);
"""

_SIG = {
    "fc_rcsr": "void {n}(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float);",
    "fc_rcsc": "void {n}(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float);",
    "fc_dense": "void {n}(const prunec_dense_f32 *, const float *, const float *, float *, float, float);",
    "fc_bsell": "void {n}(const prunec_bsell_f32 *, const float *, const float *, float *, float, float);",
    "fc_rsell": "void {n}(const prunec_rsell_f32 *, const float *, const float *, float *, float, float);",
    "conv2d_rcsr": "void {n}(const prunec_conv2d_params *, const prunec_rcsr_f32 *, const float *, const float *, float *, float, float);",
    "conv2d_dense": "void {n}(const prunec_conv2d_params *, const prunec_dense_f32 *, const float *, const float *, float *, float, float);",
}


def kernels_lib():
    """(ffi, lib, kernels) with every bench kernel and the timing driver; cached by source contents."""
    import cffi

    from prunec import runtime

    ks = bench_kernels()
    sources = runtime.sources_for(ks)  # callees included (ISA kernels hand other index widths to portable)
    h = hashlib.sha256()
    for p in [*(RUNTIME / s for s in sources), BENCH / "c" / "bench_driver.c", Path(__file__), *sorted((RUNTIME / "include").glob("*.h"))]:
        h.update(p.read_bytes())
    h.update(" ".join(CFLAGS + [k.name for k in ks]).encode())
    tag = h.hexdigest()[:12]
    modname = f"_prunec_bench_{tag}"
    CACHE.mkdir(parents=True, exist_ok=True)
    ffi = cffi.FFI()
    ffi.cdef(_CDEF_TYPES + "\n".join(_SIG[k.op].format(n=k.name) for k in ks))
    built = list(CACHE.glob(f"{modname}*.so"))
    if not built:
        decls = "\n".join(_SIG[k.op].format(n=k.name) for k in ks)  # kernels not (yet) in prunec_kernels.h
        ffi.set_source(modname, '#include "prunec_kernels.h"\n#include "bench_driver.h"\n' + decls,
                       sources=[str(RUNTIME / s) for s in sources] + [str(BENCH / "c" / "bench_driver.c")],
                       include_dirs=[str(RUNTIME / "include"), str(BENCH / "c")],
                       extra_compile_args=CFLAGS, libraries=["m"])
        # compiled in a private folder, then moved into the cache in one rename: two processes (pytest-xdist
        # workers, two benchmark runs) building the same module never see each other's half-written files
        work = Path(tempfile.mkdtemp(prefix=f"{modname}-", dir=CACHE))
        try:
            so = Path(ffi.compile(tmpdir=str(work), verbose=False))
            dest = CACHE / so.name
            os.replace(so, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        built = [dest]
    spec = importlib.util.spec_from_file_location(modname, built[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ffi, mod.lib, ks


# ---------------------------------------------------------------------------------------------- timing

@dataclass
class Contender:
    name: str
    run: Callable[[int], float]  # run(n) -> seconds per call, averaged over n calls
    group: str = ""  # "prunec-sparse", "prunec-dense", "pytorch", "scipy", "onnxruntime"
    iters: int = 1
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def calibrate(c: Contender, target_s: float) -> None:
    c.run(1)  # warm up (page faults, lazy init)
    t = c.run(1)
    n = 1
    while t * n < target_s / 4 and n < 1 << 20:
        n *= 4
        t = c.run(n)
    c.iters = max(1, int(target_s / max(t, 1e-9)))


def measure(contenders: list[Contender], reps: int = 7, target_s: float = 0.03) -> None:
    """Interleaved repetitions: rep r runs the contenders starting at position r (rotation)."""
    for c in contenders:
        calibrate(c, target_s)
    k = len(contenders)
    for r in range(reps):
        for j in range(k):
            c = contenders[(r + j) % k]
            c.times.append(c.run(c.iters))


def py_timer(fn: Callable[[], object]) -> Callable[[int], float]:
    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n
    return run


def pin_one_core(core: int | None = None) -> int:
    """Pin this process to one core (the last one by default) and return it."""
    cores = sorted(os.sched_getaffinity(0))
    core = cores[-1] if core is None else core
    os.sched_setaffinity(0, {core})
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return core


# ---------------------------------------------------------------------------------------------- machine

def machine_limits(quick: bool = False) -> dict[str, float]:
    CACHE.mkdir(parents=True, exist_ok=True)
    exe = CACHE / "probe_machine"
    src = BENCH / "probe_machine.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        tmp = exe.with_name(f"{exe.name}.{os.getpid()}")  # then one rename: concurrent runs never exec a partial file
        subprocess.run(["cc", "-O3", "-march=native", str(src), "-o", str(tmp)], check=True)
        os.replace(tmp, exe)
    out = subprocess.run([str(exe)] + (["--quick"] if quick else []), check=True, capture_output=True, text=True).stdout
    return {k: float(v) for k, v in (line.split() for line in out.splitlines() if line.strip())}


def machine_description() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        fam = next(line.split(":")[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("cpu family"))
        cpu += f" (family {fam})"
    except (OSError, StopIteration):
        pass
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": platform.release(), "cc": cc,
            "python": sys.version.split()[0]}


def bound_seconds(bytes_moved: float, flops: float, lim: dict[str, float]) -> tuple[float, str]:
    """Lower bound on a layer's time: max(bytes / bandwidth of the level the working set fits in, flops / peak).
    The working set is what one call streams; in a timing loop it stays in the smallest cache that holds it."""
    if bytes_moved <= 32 << 10:
        bw, lvl = lim["l1_read_gbs"], "L1"
    elif bytes_moved <= 1 << 20:
        bw, lvl = lim["l2_read_gbs"], "L2"
    elif bytes_moved <= 16 << 20:
        bw, lvl = lim.get("l3_read_gbs", lim["dram_read_gbs"]), "L3"
    else:
        bw, lvl = lim["dram_read_gbs"], "DRAM"
    tb = bytes_moved / (bw * 1e9)
    tf = flops / (lim["peak_fma_gflops"] * 1e9)
    return (tb, f"bytes/{lvl}") if tb >= tf else (tf, "flops")


# ---------------------------------------------------------------------------------------------- arguments
# Checks shared by the scripts' argument parsers: a bad value ends in one `error: ...` line (argparse's
# parser.error, exit 2) rather than a traceback or, worse, a run of the wrong thing.

def int_at_least(lo: int) -> Callable[[str], int]:
    """argparse type: an integer >= lo (--reps and --iters: 1; recipe_sweep's slot counts: 0)."""
    import argparse

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{v} is below {lo}: give an integer of at least {lo}")
        return v

    return parse


positive_int = int_at_least(1)


def key_paths(ap, opt: str, value: str) -> dict[str, str]:
    """`key=PATH,...` as {key: PATH}; parser.error on an item without `key=`, an empty path or a key given twice."""
    out: dict[str, str] = {}
    for item in filter(None, value.split(",")):
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            ap.error(f"{opt} {item!r}: give KEY=PATH (e.g. lenet5=lenet5_pruned.pt)")
        if key in out:
            ap.error(f"{opt}: {key} given twice")
        out[key] = path
    return out


def check_checkpoints(ap, opt: str, ckpts: dict[str, str]) -> None:
    """Each key a zoo model and its checkpoint a checkpoint of that model (prunec.checkpoint's model_name):
    `lenet300=<a LeNet-5 checkpoint>` would otherwise run and time LeNet-5 under the name lenet300."""
    from prunec import checkpoint, models
    from prunec.errors import PrunecError

    for key, path in ckpts.items():
        if key not in models.MODELS:
            ap.error(f"{opt} {key}=...: unknown model {key!r}; choose one of: {', '.join(models.MODELS)}")
        try:
            name = checkpoint.load(path).model_name
        except PrunecError as e:
            ap.error(f"{opt} {key}={path}: {e}")
        if name != key:
            ap.error(f"{opt} {key}={path}: that checkpoint is a {name} model, not {key} (give {name}={path})")


def layer_keys(ap, opt: str, value: str, allowed=None) -> list[str]:
    """Comma-separated layer keys of benchmarks/workloads.py (net.layer); parser.error naming the keys that exist
    (or `allowed`, where a script takes only some) on an unknown one."""
    import workloads

    known = [l.key for l in workloads.LAYERS] if allowed is None else list(allowed)
    keys = [k for k in value.split(",") if k]
    if not keys:
        ap.error(f"{opt}: no layer given; choose from: {', '.join(known)}")
    bad = [k for k in keys if k not in known]
    if bad:
        ap.error(f"{opt}: unknown layer {', '.join(bad)}; choose from: {', '.join(known)}")
    return keys


def target_names(ap, opt: str, value: str, allowed) -> list[str]:
    """Comma-separated target names, each one of `allowed`."""
    names = [t for t in value.split(",") if t]
    bad = [t for t in names if t not in allowed]
    if bad or not names:
        ap.error(f"{opt}: {'unknown or unsupported target ' + ', '.join(bad) if bad else 'no target given'}; "
                 f"this script runs {', '.join(allowed)}")
    return names


def index_widths(ap, opt: str, value: str) -> tuple[int, ...]:
    """`prunec build --index-bits` syntax (e.g. 4,8 or 1-16), checked by prunec.encode.check_index_bits."""
    from prunec.encode import check_index_bits
    from prunec.errors import PrunecError

    try:
        return tuple(check_index_bits(value.split(","), opt))
    except (PrunecError, ValueError) as e:
        ap.error(str(e))
