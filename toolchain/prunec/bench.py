"""`prunec bench DIR`: time one host build directory, whole network and per layer.

The build's C is compiled on this machine with the build's own flags (its Makefile's TARGET_CFLAGS and CFLAGS,
verify.build_cflags) plus -O3, together with a small timing driver, into a shared library loaded with ctypes. The driver's loops are
C: `prunec_bench_total(n)` runs NAME_run n times between two clock_gettime calls; `prunec_bench_layers(n, t)`
runs an instrumented copy of NAME_run (a clock read before each layer's call, found by the generated
`/* i layer ... */` comments) and adds each layer's time into t[i]. Repetitions are interleaved (total, layers,
total, ...); every figure is the median over repetitions. The cost of one clock read is measured and subtracted
from the per-layer times (their sum is also compared with the uninstrumented total).

Only builds whose target runs on this host (runner "cffi") can be timed; Arm builds are measured by
instruction counts under QEMU (benchmarks/bench_arm.py).
"""
from __future__ import annotations

import ctypes
import json
import re
import shlex
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PrunecError

_DRIVER = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <time.h>
#include "%(name)s.h"

#define NLAYERS %(nlayers)d
static double prunec_bench_marks[NLAYERS + 1];
static double prunec_bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#define PRUNEC_BENCH_MARK(i) (prunec_bench_marks[(i)] = prunec_bench_now())
void prunec_bench_mark(int i) { PRUNEC_BENCH_MARK(i); }
int %(name)s_run_layers(const float *input, float *output, void *arena);

static float prunec_bench_in[%(name)s_INPUT_SIZE];
static float prunec_bench_out[%(name)s_OUTPUT_SIZE];
static _Alignas(64) unsigned char prunec_bench_arena[%(name)s_ARENA_BYTES + 64];

void prunec_bench_set_input(const float *x) {
  long i;
  for (i = 0; i < %(name)s_INPUT_SIZE; i++) prunec_bench_in[i] = x[i];
}
const float *prunec_bench_output(void) { return prunec_bench_out; }
int prunec_bench_nlayers(void) { return NLAYERS; }

double prunec_bench_total(long iters) {
  const double t0 = prunec_bench_now();
  long i;
  int rc = 0;
  for (i = 0; i < iters; i++) rc |= %(name)s_run(prunec_bench_in, prunec_bench_out, prunec_bench_arena);
  return rc != 0 ? -1.0 : (prunec_bench_now() - t0) / (double)iters;
}

/* Adds each layer's mean time over `iters` runs into t[0..NLAYERS-1]. */
int prunec_bench_layers(long iters, double *t) {
  long i;
  int k, rc = 0;
  for (k = 0; k < NLAYERS; k++) t[k] = 0.0;
  for (i = 0; i < iters; i++) {
    rc |= %(name)s_run_layers(prunec_bench_in, prunec_bench_out, prunec_bench_arena);
    for (k = 0; k < NLAYERS; k++) t[k] += prunec_bench_marks[k + 1] - prunec_bench_marks[k];
  }
  for (k = 0; k < NLAYERS; k++) t[k] /= (double)iters;
  return rc;
}

/* Seconds per clock read (subtracted from each layer's time). */
double prunec_bench_clock_cost(long iters) {
  const double t0 = prunec_bench_now();
  long i;
  for (i = 0; i < iters; i++) prunec_bench_mark(0);
  return (prunec_bench_now() - t0) / (double)iters;
}
"""

_LAYER_COMMENT = re.compile(r"^(\s*)/\* (\d+) (.*?) \*/\s*$")


def instrument(c_source: str, name: str) -> tuple[str, int]:
    """A copy of NAME.c whose run function is NAME_run_layers with a clock read before each layer and before
    the final `return 0;`. Returns (source, number of layers); 0 layers if the layout was not recognised."""
    lines = c_source.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith(f"int {name}_run(")), None)
    if start is None:
        return c_source, 0
    end = next((i for i in range(len(lines) - 1, start, -1) if lines[i].strip() == "return 0;"), None)
    if end is None:
        return c_source, 0
    out, n = [], 0
    for i, line in enumerate(lines):
        if i == start:
            line = line.replace(f"int {name}_run(", f"int {name}_run_layers(", 1)
        m = _LAYER_COMMENT.match(line) if start < i < end else None
        if m:
            if int(m.group(2)) != n:
                return c_source, 0
            out.append(f"{m.group(1)}PRUNEC_BENCH_MARK({n});")
            n += 1
        if i == end:
            out.append(f"  PRUNEC_BENCH_MARK({n});")
        out.append(line)
    src = "\n".join(out) + "\n"
    # Its own translation unit (its static weights do not clash with NAME.c's); the clock lives in the driver.
    src = src.replace(f'#include "{name}.h"', f'#include "{name}.h"\nvoid prunec_bench_mark(int i);\n'
                      f'#define PRUNEC_BENCH_MARK(i) prunec_bench_mark(i)', 1)
    return src, n


@dataclass
class BenchResult:
    name: str
    target: str
    cflags: list[str]
    total_s: list[float] = field(default_factory=list)
    layers_s: list[list[float]] = field(default_factory=list)  # [rep][layer]
    clock_cost_s: float = 0.0
    iters: int = 0
    manifest: dict = field(default_factory=dict)
    layers_requested: bool = True

    @property
    def total(self) -> float:
        return statistics.median(self.total_s)

    def layer_medians(self) -> list[float]:
        if not self.layers_s:
            return []
        return [max(0.0, statistics.median(rep[k] for rep in self.layers_s) - self.clock_cost_s)
                for k in range(len(self.layers_s[0]))]

    def as_dict(self) -> dict:
        return {"name": self.name, "target": self.target, "cflags": self.cflags, "iters": self.iters,
                "reps": len(self.total_s), "total_s": self.total, "total_reps_s": self.total_s,
                "layers_s": self.layer_medians(), "clock_cost_s": self.clock_cost_s,
                "layer_names": [l["name"] for l in self.manifest.get("layers", [])]}


class CompiledBuild:
    """A build directory compiled with the timing driver into a shared library (kept in a temporary dir)."""

    def __init__(self, build_dir: str | Path, extra_cflags: tuple[str, ...] = ("-O3",), cc: str | None = None):
        d = Path(build_dir).resolve()
        mpath = d / "manifest.json"
        if not mpath.is_file():
            raise PrunecError(f"{d} is not a prunec build directory (no manifest.json); make one with `prunec build`")
        try:
            self.manifest = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise PrunecError(f"{mpath} is not readable JSON ({e}); rebuild {d} with `prunec build`") from None
        missing = [k for k in ("name", "target", "input_size", "output_size")
                   if not isinstance(self.manifest, dict) or k not in self.manifest]
        if missing:
            raise PrunecError(f"{mpath} lacks {', '.join(missing)}: not a manifest of `prunec build`; rebuild {d}")
        from .verify import check_manifest

        check_manifest(self.manifest, mpath)  # the rest of what a build's manifest holds, of the types read here
        self.dir = d
        self.name = self.manifest["name"]
        from . import targets

        target = targets.get(self.manifest["target"])
        if target.runner != "cffi":
            raise PrunecError(f"build {d} is for target {target.name!r}, which does not run on this host; `prunec bench` "
                              f"times host builds (host, x86_64-avx2). For Arm targets count instructions under QEMU "
                              f"with benchmarks/bench_arm.py")
        for f in ("Makefile", f"{self.name}.c", f"{self.name}.h"):
            if not (d / f).is_file():
                raise PrunecError(f"{d} lacks {f}: an incomplete build directory; rebuild it with `prunec build`")
        from .verify import _makefile_var, build_cflags, check_host_isa

        check_host_isa(d, self.manifest)
        mk = (d / "Makefile").read_text()
        # the flags `make` compiles with (TARGET_CFLAGS, then CFLAGS), as verify uses them
        base = build_cflags(d) or []
        self.cflags = base + [f for f in extra_cflags if f not in base]  # no second -O3 after the build's own
        self.cflags = [f for f in self.cflags if f != "-fPIC"] + ["-fPIC"]
        srcs = shlex.split(_makefile_var(mk, "SRCS") or "") + shlex.split(_makefile_var(mk, "ASMS") or "")
        libs = shlex.split(_makefile_var(mk, "LIBS") or "") or ["-lm"]
        self.tmp = tempfile.TemporaryDirectory(prefix="prunec-bench-")
        t = Path(self.tmp.name)
        c_main = (d / f"{self.name}.c").read_text()
        inst, n = instrument(c_main, self.name)
        if n != len(self.manifest.get("layers", [])):
            n = 0  # layout not recognised: whole-network time only
        self.nlayers = n
        (t / f"{self.name}_layers.c").write_text(inst if n else
                                                 f"int {self.name}_run_layers(const float *i, float *o, void *a) "
                                                 f"{{ (void)i; (void)o; (void)a; return 0; }}\n")
        (t / "bench_driver.c").write_text(_DRIVER % {"name": self.name, "nlayers": max(n, 1)})
        so = t / f"libbench_{self.name}.so"
        cc = cc or target.cc
        from .objcache import compile_objects, runtime_sources

        # the runtime's kernels (the same in every build of a target) from this process's object cache
        kernels = runtime_sources(d, [d / s for s in srcs])
        objs = compile_objects(cc, [f for f in self.cflags if f != "-fPIC"], kernels, [d, d / "runtime" / "include"], d)
        cmd = [cc, *self.cflags, "-shared", f"-I{d}", f"-I{d / 'runtime' / 'include'}", f"-Wa,-I{d}",
               *[str(d / s) for s in srcs if d / s not in kernels], *objs, str(t / f"{self.name}_layers.c"),
               str(t / "bench_driver.c"), "-o", str(so), *libs]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=d)
        if p.returncode != 0:
            raise PrunecError(f"compiling {d} for benchmarking failed:\n$ {' '.join(cmd)}\n{p.stderr[-3000:]}")
        self.compile_cmd = cmd
        lib = ctypes.CDLL(str(so))
        lib.prunec_bench_total.restype = ctypes.c_double
        lib.prunec_bench_total.argtypes = [ctypes.c_long]
        lib.prunec_bench_layers.restype = ctypes.c_int
        lib.prunec_bench_layers.argtypes = [ctypes.c_long, ctypes.POINTER(ctypes.c_double)]
        lib.prunec_bench_clock_cost.restype = ctypes.c_double
        lib.prunec_bench_clock_cost.argtypes = [ctypes.c_long]
        lib.prunec_bench_set_input.argtypes = [ctypes.POINTER(ctypes.c_float)]
        lib.prunec_bench_output.restype = ctypes.POINTER(ctypes.c_float)
        self.lib = lib
        self.set_input(np.random.default_rng(0).standard_normal(self.manifest["input_size"]).astype(np.float32))

    def set_input(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32).ravel()
        self.lib.prunec_bench_set_input(x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))

    def output(self) -> np.ndarray:
        p = self.lib.prunec_bench_output()
        return np.ctypeslib.as_array(p, shape=(self.manifest["output_size"],)).copy()

    def run_total(self, iters: int) -> float:
        t = self.lib.prunec_bench_total(iters)
        if t < 0:
            raise PrunecError(f"{self.name}_run returned an error")
        return t

    def run_layers(self, iters: int) -> list[float]:
        n = max(self.nlayers, 1)
        buf = (ctypes.c_double * n)()
        self.lib.prunec_bench_layers(iters, buf)
        return list(buf)[: self.nlayers]

    def calibrate(self, target_s: float) -> int:
        self.run_total(1)
        n = 1
        while True:
            t = self.run_total(n) * n
            if t >= target_s / 4 or n >= 1 << 24:
                return max(1, int(n * target_s / max(t, 1e-9)))
            n *= 4


def check_settings(reps: int, target_s: float) -> None:
    """PrunecError unless reps >= 1 and 0 <= target_s < 1e4 (seconds of inferences per repetition; also NaN/inf)."""
    if reps < 1:
        raise PrunecError(f"--reps must be at least 1 (got {reps})")
    if not 0 <= target_s < 1e4:
        raise PrunecError(f"--min-time must be from 0 to 1e7 milliseconds (got {target_s * 1e3}); "
                          f"0 times one inference per repetition")


def bench(build_dir: str | Path, reps: int = 7, target_s: float = 0.05, layers: bool = True,
          cb: CompiledBuild | None = None) -> BenchResult:
    check_settings(reps, target_s)
    cb = cb or CompiledBuild(build_dir)
    res = BenchResult(cb.name, cb.manifest["target"], cb.cflags, manifest=cb.manifest, layers_requested=layers)
    res.iters = cb.calibrate(target_s)
    res.clock_cost_s = min(cb.lib.prunec_bench_clock_cost(100000) for _ in range(3))
    for _ in range(reps):
        res.total_s.append(cb.run_total(res.iters))
        if layers and cb.nlayers:
            res.layers_s.append(cb.run_layers(res.iters))
    return res


def _fmt_t(s: float) -> str:
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    return f"{s * 1e6:.2f} µs" if s < 1e-3 else f"{s * 1e3:.3f} ms"


def weights_summary(totals: dict) -> str:
    """The stored weights against their dense fp32 size, as `prunec build` and `prunec bench` print it: against
    the layers as built and, where the manifest knows it, against the network before pruning (dead-neuron
    removal shrinks layers, so the first understates what pruning saved)."""
    wb, dense = int(totals.get("weights_bytes") or 0), int(totals.get("dense_weights_bytes") or 0)
    if not wb and not dense:
        return "no weights (no conv or fc layer)"
    out = f"weights {wb:,} B: x{dense / wb if wb else 0:.2f} vs dense layers as built ({dense:,} B)"
    before = totals.get("dense_weights_bytes_before_pruning")
    if before and wb:
        out += f", x{before / wb:.2f} vs the network before pruning ({before:,} B)"
    return out


def table(res: BenchResult) -> str:
    m = res.manifest
    out = [f"prunec bench: {res.name} (target {res.target}), {len(res.total_s)} repetitions of {res.iters} "
           f"inferences, medians; cflags: {' '.join(res.cflags)}"]
    lt = res.layer_medians()
    if lt:
        hdr = f"{'#':>2} {'layer':12s} {'op':10s} {'kernel':34s} {'storage':10s} {'density':>7s} {'MACs':>11s} " \
              f"{'bytes':>10s} {'time':>11s} {'share':>6s} {'GMAC/s':>7s}"
        out += [hdr, "-" * len(hdr)]
        tot = sum(lt) or 1.0
        fused = {pool: conv for conv, pool in m.get("plan", {}).get("fused_conv_pool", [])}
        for i, (l, t) in enumerate(zip(m["layers"], lt)):
            if l["name"] in fused:  # its time is inside the convolution's row (prunec.fuse)
                out.append(f"{i:2d} {l['name'][:12]:12s} {l['op'][:10]:10s} {l['kernel'][:34]:34s} "
                           f"{'-':10s} {'-':>7s} {0:>11,} {0:>10,} {'in ' + fused[l['name']][:8]:>11s} {'-':>6s} {'-':>7s}")
                continue
            b = sum(l["bytes"].values()) if l.get("bytes") else 0
            storage = f"{l['format']} {l['index_bits']}b" if l.get("format") == "rcsr" else (l.get("format") or "-")
            if l.get("orientation") == "columns":  # W^T stored: the kernel skips zero inputs
                storage += " cols"
            dens = f"{l['density']:.1%}" if l.get("density") is not None else "-"
            gmacs = f"{l['macs'] / t * 1e-9:.2f}" if l.get("macs") and t > 0 else "-"
            out.append(f"{i:2d} {l['name'][:12]:12s} {l['op'][:10]:10s} {l['kernel'][:34]:34s} {storage:10s} {dens:>7s} "
                       f"{l.get('macs', 0):>11,} {b:>10,} {_fmt_t(t):>11s} {t / tot:6.1%} {gmacs:>7s}")
        out.append("-" * len(hdr))
        out.append(f"sum of layers {_fmt_t(sum(lt))} (instrumented run; clock read {_fmt_t(res.clock_cost_s)} subtracted per layer)")
    elif not res.layers_requested:
        out.append("(per-layer times not measured: --no-layers)")
    else:
        out.append("(per-layer times unavailable: the generated run function's layout was not recognised)")
    t = m.get("totals", {})
    spread = (max(res.total_s) - min(res.total_s)) / res.total if res.total_s else 0
    out.append(f"{res.name}_run: {_fmt_t(res.total)} per inference (min {_fmt_t(min(res.total_s))}, spread {spread:.0%}), "
               f"{t.get('macs', 0) / res.total * 1e-9:.2f} GMAC/s useful")
    if t:
        out.append(f"{weights_summary(t)}; arena "
                   f"{m.get('arena_bytes', 0):,} bytes (live-set lower bound {m.get('plan', {}).get('live_bytes_bound', 0):,})")
    return "\n".join(out)
