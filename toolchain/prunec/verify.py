"""`prunec verify`: run a build and the PyTorch model it came from on the same inputs and compare.

How the build runs depends on its target's runner (manifest.json "runner"):
  cffi        `run_host`: the build's C sources and the runtime kernels it copied are compiled on this
              machine into a Python extension (cffi API mode, in a temporary directory; the build
              directory is never written) and NAME_run is called for each input.
  other       `prunec.runners.run(build_dir, inputs) -> outputs` (qemu-user, qemu-system: cross builds),
              imported lazily; inputs float32 [N, NAME_INPUT_SIZE], outputs float32 [N, NAME_OUTPUT_SIZE].

The reference is the model at manifest "source.path" (or --model): a .pt2 runs as
torch.export.load(...).module(), a prunec checkpoint as its nn.Module, in eval mode, fp32, on CPU.

Tolerance (docs/BUILD.md): sample i passes when max_j |c_ij - t_ij| <= ATOL * max(1, max_j |t_ij|), with
ATOL = 1e-4. The C kernels sum in another order than PyTorch (and batch norm is folded into the weights),
so outputs differ by float32 rounding: measured <= 6e-7 relative on the LeNets and ~1.5e-6 on AlexNet and
VGG-16 at paper densities, so 1e-4 leaves a wide margin while still catching any wrong index, offset or
stride (those give errors of order 1). A top-1 disagreement fails verification unless the reference's
top-two margin for that sample is itself within the tolerance (a tie that rounding may break either way).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PrunecError
from .graph import numel

ATOL = 1e-4
_MODULES: dict[str, object] = {}  # compiled host extensions, by content hash (one compile per process)


def load_manifest(build_dir: str | os.PathLike) -> dict:
    p = Path(build_dir) / "manifest.json"
    if Path(build_dir).exists() and not Path(build_dir).is_dir():
        raise PrunecError(f"{build_dir} is a file, not a build directory; give the folder `prunec build --out` wrote")
    if not Path(build_dir).is_dir():
        raise PrunecError(f"build directory {build_dir} does not exist; create it with `prunec build`")
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError:
        raise PrunecError(f"{build_dir} has no manifest.json; it is not a prunec build directory") from None
    except (OSError, ValueError) as e:
        raise PrunecError(f"{p} is unreadable ({e}); rebuild with `prunec build`") from None
    check_manifest(m, p)
    return m


def check_manifest(m, p: Path) -> None:
    """The manifest `m` (read from `p`) holds the entries verify, bench and size read, of the types they read them
    as; PrunecError naming the first that does not."""
    if not isinstance(m, dict):
        raise PrunecError(f"{p} is not a build manifest (a JSON {type(m).__name__}); rebuild with `prunec build`")
    for k in ("name", "target", "input_shape", "output_shape", "arena_bytes", "files"):
        if k not in m:
            raise PrunecError(f"{p} lacks {k!r}; rebuild with `prunec build`")
    from .build import MANIFEST_VERSION

    def bad(what: str) -> PrunecError:
        return PrunecError(f"{p}: {what}; the manifest is damaged, rebuild with `prunec build`")

    def count(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    version = m.get("format_version", MANIFEST_VERSION)
    if count(version) and version > MANIFEST_VERSION:
        raise PrunecError(f"{p}: build format version {version} is newer than this prunec reads ({MANIFEST_VERSION}); "
                          f"upgrade prunec, or rebuild with this one")
    if version != MANIFEST_VERSION:
        raise bad(f"format_version {version!r} is not {MANIFEST_VERSION}")
    if not (isinstance(m["name"], str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", m["name"])):
        raise bad(f"name {m['name']!r} is not a C identifier")
    if not isinstance(m["target"], str):
        raise bad(f"target {m['target']!r} is not a target name")
    for k in ("input_shape", "output_shape"):
        v = m[k]
        if not (isinstance(v, list) and v and all(count(d) and d > 0 for d in v)):
            raise bad(f"{k} {v!r} is not a list of positive sizes")
        size = k.replace("shape", "size")
        if size in m and m[size] != math.prod(v):
            raise bad(f"{size} {m[size]!r} is not the product of {k} {v}")
    if not count(m["arena_bytes"]):
        raise bad(f"arena_bytes {m['arena_bytes']!r} is not a byte count")
    f = m["files"]
    if not isinstance(f, dict):
        raise bad("'files' is not an object")
    if not isinstance(f.get("header"), str):
        raise bad(f"files.header {f.get('header')!r} is not a file name")
    for k in ("sources", "asm", "include_dirs"):
        if k in f and not (isinstance(f[k], list) and all(isinstance(x, str) for x in f[k])):
            raise bad(f"files.{k} {f[k]!r} is not a list of paths")
    if not f.get("sources"):
        raise bad("files.sources names no source")


# --- running the build on this machine (cffi) ------------------------------------------------------------

def _makefile_var(text: str, var: str) -> str | None:
    m = re.search(rf"^{var}[ \t]*[:?]?=[ \t]*(.*)$", text, re.M)
    return m.group(1).strip() if m else None


def build_cflags(build_dir: Path) -> list[str] | None:
    """The flags `make -C build_dir` compiles with: the Makefile's TARGET_CFLAGS, then its CFLAGS less those
    (ALL_CFLAGS), without -fPIC; None when the build has no Makefile stating them. These, not the target's flags as
    probed now, are what the build's code was generated for (an x86_64-avx2 build made with AVX-512 kernels needs the
    -mavx512* flags it was made with even where PRUNEC_AVX512=0 is set now)."""
    try:
        text = (Path(build_dir) / "Makefile").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    tf, cf = _makefile_var(text, "TARGET_CFLAGS"), _makefile_var(text, "CFLAGS")
    if tf is None and cf is None:
        return None
    try:
        t = shlex.split(tf or "")
        flags = t + [f for f in shlex.split(cf or "") if f not in t]
    except ValueError:
        return None
    return [f for f in flags if f != "-fPIC"]


def _cflags(manifest: dict, build_dir: Path | None = None) -> list[str]:
    flags = build_cflags(build_dir) if build_dir is not None else None
    if flags is not None:
        return flags
    try:
        from . import targets

        t = targets.get(manifest["target"])
        flags = [f for f in t.cflags if f != "-fPIC"]
    except PrunecError:
        flags = ["-std=c99", "-O2"]
    return flags


# CPU features (Linux /proc/cpuinfo flags) the x86 kernel families need at run time.
_ISA_CPU_FLAGS = {"avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512vl", "avx512bw", "avx512dq"},
                  "avx512x4": {"avx512f", "avx512vl", "avx512bw", "avx512dq"}}
# x86 -m flags of a build's Makefile and the CPU feature (Linux /proc/cpuinfo flag) each lets the compiler use.
_MFLAG_CPU_FLAGS = {"-mavx": "avx", "-mavx2": "avx2", "-mfma": "fma", "-mf16c": "f16c", "-mbmi": "bmi1",
                    "-mbmi2": "bmi2", "-mssse3": "ssse3", "-msse4.1": "sse4_1", "-msse4.2": "sse4_2",
                    "-mavx512f": "avx512f", "-mavx512vl": "avx512vl", "-mavx512bw": "avx512bw",
                    "-mavx512dq": "avx512dq", "-mavx512cd": "avx512cd"}


def _cpuinfo(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo (Linux), or None when it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field):
            return line.split(":", 1)[1]
    return None


def cpu_flags() -> set[str] | None:
    """This CPU's feature flags (Linux), or None when they cannot be read (then nothing is checked)."""
    flags = _cpuinfo("flags")
    return None if flags is None else set(flags.split())


def cpu_vendor() -> str | None:
    """This CPU's vendor string as CPUID gives it (Linux: "GenuineIntel", "AuthenticAMD"), or None when unknown."""
    return (_cpuinfo("vendor_id") or "").strip() or None


GDS_STATUS = Path("/sys/devices/system/cpu/vulnerabilities/gather_data_sampling")


def gathers_slowed() -> bool:
    """Whether this CPU's vector gathers run under the Gather Data Sampling ("Downfall") microcode mitigation, which
    makes them several times slower (Intel Skylake to Tiger Lake; Linux says "Mitigation: ..." in GDS_STATUS). False
    where the file is missing or says "Not affected" / "Vulnerable"."""
    try:
        return GDS_STATUS.read_text().strip().startswith("Mitigation")
    except OSError:
        return False


def check_host_isa(build_dir: Path, manifest: dict) -> None:
    """PrunecError if the build's kernels need CPU features this machine lacks (an x86_64-avx2 build made on a
    machine with AVX-512 picks AVX-512 kernels; run here, it would die of an illegal instruction)."""
    flags = cpu_flags()
    if flags is None:
        return
    isas = sorted({k.rsplit("__", 1)[-1] for k in manifest.get("kernels", []) if "__" in k})
    missing = {f"{isa} kernels": sorted(_ISA_CPU_FLAGS[isa] - flags)
               for isa in isas if _ISA_CPU_FLAGS.get(isa, set()) - flags}
    # The compiler may use any instruction set its -m flags enable anywhere in the build (the network, the portable
    # and AVX2 kernels), not only in the kernels named for it: an x86_64-avx2 build made where AVX-512 exists is
    # compiled with -mavx512f... even when none of its kernels is an AVX-512 one.
    cc_flags = build_cflags(Path(build_dir)) or []
    need = sorted({_MFLAG_CPU_FLAGS[f] for f in cc_flags if f in _MFLAG_CPU_FLAGS} - flags)
    if need:
        opts = sorted({f for f in cc_flags if _MFLAG_CPU_FLAGS.get(f) in need})
        missing[f"its compile flags ({' '.join(opts)})"] = need
    if missing:
        what = "; ".join(f"{isa} need {', '.join(f)}" for isa, f in missing.items())
        raise PrunecError(f"build {build_dir} cannot run on this CPU: {what} (it was built where they exist). "
                          f"Rebuild it here with `prunec build` (the target keeps only the ISAs this machine has), "
                          f"or build it with PRUNEC_AVX512=0 for machines without AVX-512")


def _compile_host(build_dir: Path, manifest: dict):
    from cffi import FFI

    check_host_isa(build_dir, manifest)

    name = manifest["name"]
    files = manifest["files"]
    sources = [build_dir / s for s in files["sources"]]
    asm = [build_dir / s for s in files.get("asm", [])]
    for f in sources + asm + [build_dir / files["header"]]:
        if not f.is_file():
            raise PrunecError(f"build file {f} is missing; rebuild with `prunec build`")
    include_dirs = [build_dir / d for d in files.get("include_dirs", [".", "runtime/include"])]
    cflags = _cflags(manifest, build_dir)
    from .objcache import host_cc

    cc = host_cc()
    # Everything the compiled module depends on: the sources, every header the include directories hold (a runtime
    # header changed in a copy of a build must not reuse the module compiled from the original), the blob, the
    # compiler and its flags.
    h = hashlib.sha256(json.dumps([manifest, cflags, cc], sort_keys=True).encode())
    headers = {f for d in include_dirs if d.is_dir() for f in d.glob("*.h")}
    for f in sorted(set(sources + asm + [build_dir / files["header"]]) | headers) + sorted(build_dir.glob("*.bin")):
        h.update(str(f.relative_to(build_dir) if f.is_relative_to(build_dir) else f).encode() + b"\0")
        h.update(f.read_bytes())
    key = h.hexdigest()[:16]
    if key in _MODULES:
        return _MODULES[key]
    modname = f"_prunec_host_{name}_{key}"
    ffi = FFI()
    ffi.cdef(f"int {name}_run(const float *input, float *output, void *arena);\n"
             f"int prunec_verify_batch(size_t n, const float *x, float *y, void *arena);")
    src = (f'#include "{files["header"]}"\n'
           f"static int prunec_verify_batch(size_t n, const float *x, float *y, void *arena) {{\n"
           f"  size_t i;\n  for (i = 0; i < n; i++) {{\n"
           f"    int rc = {name}_run(x + i * (size_t){name}_INPUT_SIZE, y + i * (size_t){name}_OUTPUT_SIZE, arena);\n"
           f"    if (rc != 0) return rc;\n  }}\n  return 0;\n}}\n")
    tmp = Path(tempfile.mkdtemp(prefix="prunec-verify-"))
    try:
        # the runtime's kernels (the same in every build of a target) from this process's object cache; the build's
        # own sources through cffi
        from .objcache import compile_objects, runtime_sources

        kernels = runtime_sources(build_dir, sources)
        sources = [s for s in sources if s not in kernels]
        objs = compile_objects(cc, cflags, kernels, include_dirs, build_dir)
        for a in asm:  # distutils does not assemble .S: do it here, the way the Makefile does
            o = tmp / (a.stem + ".o")
            r = subprocess.run([*shlex.split(cc), *cflags, "-fPIC", f"-Wa,-I{build_dir}", "-c", str(a), "-o", str(o)],
                               capture_output=True, text=True)
            if r.returncode:
                raise PrunecError(f"assembling {a} failed:\n{r.stderr.strip()}")
            objs.append(str(o))
        ffi.set_source(modname, src, sources=[str(s) for s in sources],
                       include_dirs=[str(d) for d in include_dirs],
                       extra_compile_args=cflags, extra_objects=objs, libraries=["m"])
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            saved = os.dup(1)
            os.dup2(devnull, 1)  # distutils prints every command on stdout
            try:
                so = ffi.compile(tmpdir=str(tmp), verbose=False)
            finally:
                os.dup2(saved, 1)
                os.close(saved)
                os.close(devnull)
        except Exception as e:  # CompileError, LinkError, VerificationError
            raise PrunecError(f"compiling build {build_dir} on this machine failed: {e}") from None
        spec = importlib.util.spec_from_file_location(modname, so)
        try:
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        except ImportError as e:  # e.g. an undefined kernel: its source compiled to nothing under these flags
            raise PrunecError(f"the build {build_dir} compiled on this machine does not load ({e}); compiled with "
                              f"{' '.join(cflags)}: rebuild it with `prunec build`") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _MODULES[key] = mod
    return mod


def run_host(build_dir: str | os.PathLike, inputs: np.ndarray) -> np.ndarray:
    """Compile the build on this machine (cffi) and run NAME_run on each row of `inputs` [N, INPUT_SIZE]."""
    build_dir = Path(build_dir).resolve()
    m = load_manifest(build_dir)
    mod = _compile_host(build_dir, m)
    ffi, lib = mod.ffi, mod.lib
    n_in, n_out = int(m["input_size"]), int(m["output_size"])
    x = np.ascontiguousarray(inputs, dtype=np.float32).reshape(-1, n_in)
    y = np.full((x.shape[0], n_out), np.nan, dtype=np.float32)  # unwritten outputs show up as NaN
    raw = np.zeros(int(m["arena_bytes"]) + 32, dtype=np.uint8)
    off = (-raw.ctypes.data) % 16
    arena = raw[off:]
    rc = lib.prunec_verify_batch(x.shape[0], ffi.from_buffer("float[]", x),
                                 ffi.from_buffer("float[]", y, require_writable=True),
                                 ffi.from_buffer("char[]", arena, require_writable=True))
    if rc != 0:
        raise PrunecError(f"{m['name']}_run returned {rc}")
    return y


def describe_runner(manifest: dict) -> str:
    """Where and how `run_build` runs a build, in words: "this machine (cffi, compiled with cc)" for the cffi
    runner, else the emulator's command without the program ("qemu-system-arm -M mps2-an386",
    "qemu-aarch64-static -cpu cortex-a53")."""
    runner = manifest.get("runner", "cffi")
    if runner == "cffi":
        return f"this machine (cffi, compiled with {os.environ.get('CC', 'cc')})"
    try:
        from . import runners, targets

        t = targets.get(manifest["target"])
        if t.runner == runner and runner in ("qemu-system", "qemu-user"):
            cmd = runners.emulator_command(t, "PROGRAM")  # the command the runner runs, less the program's part
            return " ".join(map(str, cmd[:cmd.index("-nographic")] if runner == "qemu-system" else cmd[:-1]))
    except (PrunecError, KeyError, AttributeError, ValueError):  # a target this prunec does not know: its runner's name
        pass
    return runner


def run_build(build_dir: str | os.PathLike, inputs: np.ndarray, manifest: dict | None = None,
              info: dict | None = None) -> np.ndarray:
    """Run the build by its target's runner: cffi here, the others through prunec.runners (`info` receives what
    they measured: prunec.runners.run)."""
    m = manifest or load_manifest(build_dir)
    runner = m.get("runner", "cffi")
    if runner == "cffi":
        return run_host(build_dir, inputs)
    try:
        from .runners import run as run_target
    except ModuleNotFoundError as e:
        if e.name != "prunec.runners":
            raise
        raise PrunecError(f"target {m['target']!r} runs builds with {runner!r}, which this prunec cannot run yet") from None
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    y = np.asarray(run_target(Path(build_dir), x, info=info), dtype=np.float32)
    n_out = int(m["output_size"])
    n = x.size // int(m["input_size"]) if m.get("input_size") else x.shape[0]
    if y.size != n * n_out:
        raise PrunecError(f"the {runner} runner of {build_dir} returned {y.size} output values for {n} inputs "
                          f"(expected {n} x {n_out} = {n * n_out}): its results cannot be matched to the inputs")
    return y.reshape(n, n_out)


# --- the reference ---------------------------------------------------------------------------------------

def reference_outputs(model_path: str | os.PathLike, inputs: np.ndarray, input_shape, chunk: int = 256) -> np.ndarray:
    """The PyTorch model's outputs for inputs [N, *input_shape[1:]], flattened per sample."""
    import torch

    from .frontend import reference_module

    mod = reference_module(model_path)
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).reshape(-1, *input_shape[1:])
    n_out = None
    # A .pt2 module is traced at batch 1 (its views may spell the 1 out): run it per sample, vectorised with
    # vmap; a checkpoint's nn.Module takes batches as they are. Per-sample calls are the fallback.
    ways = ["vmap", "batch"] if isinstance(mod, torch.fx.GraphModule) else ["batch", "vmap"]
    outs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            xb = x[i:i + chunk]
            y = None
            while ways and y is None:
                try:
                    y = torch.func.vmap(mod)(xb[:, None]) if ways[0] == "vmap" else mod(xb)
                    if not isinstance(y, torch.Tensor) or y.shape[0] != xb.shape[0] or \
                            (n_out is not None and y[0].numel() != n_out):
                        y = None
                except Exception:  # no batching rule, or a shape guard: try the next way
                    y = None
                if y is None:
                    ways.pop(0)
            if y is None:
                try:
                    y = torch.cat([_as_tensor(mod(xb[j:j + 1])).reshape(1, -1) for j in range(xb.shape[0])])
                except Exception as e:  # noqa: BLE001 - a model of other input shapes (--model), or no tensor out
                    msg = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
                    raise PrunecError(f"the reference model {model_path} does not run on the build's input of shape "
                                      f"{tuple(input_shape)} ({type(e).__name__}: {msg}); pass --model with the "
                                      f"model the build came from") from None
            y = y.reshape(xb.shape[0], -1)
            n_out = y.shape[1]
            outs.append(y.float().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def _as_tensor(y):
    import torch

    if not isinstance(y, torch.Tensor):
        raise TypeError(f"the model returned a {type(y).__name__}, not one tensor")
    return y


# --- comparison ------------------------------------------------------------------------------------------

@dataclass
class Report:
    n: int
    max_abs_err: float
    max_rel_err: float  # per sample: max |c - t| / max |t|, the worst sample
    top1_agreement: float
    top1_disagree: int
    ties: int  # disagreements where the reference's top-2 margin is within tolerance
    failing_samples: list[int] = field(default_factory=list)
    accuracy_c: float | None = None
    accuracy_torch: float | None = None
    atol: float = ATOL
    worst_sample: int = -1
    ok: bool = True
    ref_max: float = 0.0  # the largest finite |reference output| over all samples
    ref_finite: int = -1  # how many reference output values are finite (-1: not counted)
    target: str | None = None  # the build's target (manifest "target"); None for a bare compare()
    runner: str | None = None  # how the build ran: cffi, qemu-user or qemu-system (the target's runner)
    ran_under: str | None = None  # the same in words: "this machine (cffi, compiled with cc)", "qemu-system-arm -M mps2-an386"
    # the stack one inference took below NAME_run's caller, painted under the emulator (None on the host), whether
    # it filled the painted window (then a lower bound), and the build's static bound (manifest size.stack)
    stack_bytes_used: int | None = None
    stack_saturated: bool = False
    stack_bytes_bound: int | None = None

    def weak(self) -> bool:
        """Whether the reference outputs are so small that the tolerance's absolute floor (atol) hides errors:
        all within 100 x atol of zero (max(1, max|ref|) is then 1)."""
        return self.ref_max < 100 * self.atol

    def text(self) -> str:
        on = "on" if self.runner == "cffi" else "under"  # "ran on this machine (cffi, ...)", "ran under qemu-..."
        lines = [f"target {self.target}, ran {on} {self.ran_under or self.runner}"] if self.target else []
        lines += [
            f"samples            {self.n}",
            f"max abs error      {self.max_abs_err:.3e}   (sample {self.worst_sample})",
            f"max rel error      {self.max_rel_err:.3e}   (tolerance {self.atol:.0e} x max(1, max|ref|) per sample)",
            f"top-1 agreement    {self.top1_agreement:.4%}   ({self.n - self.top1_disagree}/{self.n}"
            + (f", {self.ties} ties within tolerance" if self.ties else "") + ")",
        ]
        if self.stack_bytes_used is not None:
            bound = "" if self.stack_bytes_bound is None else f"; the build's static bound {self.stack_bytes_bound:,}"
            lines.append(f"stack              {'at least ' if self.stack_saturated else ''}{self.stack_bytes_used:,} bytes "
                         f"below the caller (one inference, painted{bound})")
        if self.accuracy_c is not None:
            lines.append(f"accuracy C         {self.accuracy_c:.4%}")
            lines.append(f"accuracy PyTorch   {self.accuracy_torch:.4%}")
        if self.ref_finite == 0:
            lines.append("warning: every reference output is NaN or infinite (NaN or infinite inputs?): the C and "
                         "PyTorch agree on where, nothing else was compared; give finite inputs")
        elif self.weak():
            lines.append(f"warning: the reference outputs are at most {self.ref_max:.1e} in magnitude, within 100x of "
                         f"the tolerance's absolute floor {self.atol:.0e}: this comparison cannot tell them from much "
                         f"larger errors; rerun with --atol {max(self.ref_max, 1e-30) * 1e-4:.0e}")
        if self.ok:
            lines.append("verify: PASS")
        else:
            shown = ", ".join(map(str, self.failing_samples[:10]))
            lines.append(f"verify: FAIL: {len(self.failing_samples)} samples beyond tolerance or disagreeing on top-1 "
                         f"(first: {shown})")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """The report as JSON-safe values: an infinite or NaN error (a NaN or inf in one output and not in the
        other) is None, as JSON has no such numbers (json.dumps would write the invalid token `Infinity`)."""
        d = dict(self.__dict__)
        d["failing_samples"] = self.failing_samples[:100]
        for k, v in d.items():
            if isinstance(v, float) and not np.isfinite(v):
                d[k] = None
        return d


def compare(c: np.ndarray, t: np.ndarray, labels: np.ndarray | None = None, atol: float = ATOL) -> Report:
    c = np.asarray(c, dtype=np.float64).reshape(len(c), -1)
    t = np.asarray(t, dtype=np.float64).reshape(len(t), -1)
    if c.shape != t.shape:
        raise PrunecError(f"the build produced outputs of shape {c.shape} (samples, values), the model {t.shape}")
    n = c.shape[0]
    if n == 0:
        raise PrunecError("no inputs to verify")
    with np.errstate(invalid="ignore"):
        d = np.abs(c - t)  # inf - inf is NaN: settled below, so that it cannot hide another element's error
    d[c == t] = 0.0  # equal values, equal infinities included
    d[np.isnan(c) != np.isnan(t)] = np.inf
    d[np.isnan(c) & np.isnan(t)] = 0.0
    scale = np.max(np.abs(np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)), axis=1)
    per_abs = d.max(axis=1)
    per_rel = per_abs / np.maximum(scale, np.finfo(np.float32).tiny)
    bound = atol * np.maximum(1.0, scale)
    bad = per_abs > bound
    top_c, top_t = np.nanargmax(np.nan_to_num(c, nan=-np.inf), axis=1), np.argmax(np.nan_to_num(t, nan=-np.inf), axis=1)
    dis = top_c != top_t
    srt = np.sort(t, axis=1)
    margin = srt[:, -1] - srt[:, -2] if t.shape[1] > 1 else np.full(n, np.inf)
    ties = dis & (margin <= 2 * bound)
    fail = bad | (dis & ~ties)
    worst = int(np.argmax(per_abs))
    r = Report(n=n, max_abs_err=float(per_abs.max()), max_rel_err=float(per_rel.max()),
               top1_agreement=float(1.0 - dis.mean()), top1_disagree=int(dis.sum()), ties=int(ties.sum()),
               failing_samples=[int(i) for i in np.nonzero(fail)[0]], atol=atol, worst_sample=worst,
               ok=not bool(fail.any()), ref_max=float(scale.max()) if scale.size else 0.0,
               ref_finite=int(np.isfinite(t).sum()))
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        r.accuracy_c = float((top_c == labels).mean())
        r.accuracy_torch = float((top_t == labels).mean())
    return r


def _data_seed(model_path) -> int:
    """The synthetic-data seed recorded with the model (a prunec checkpoint's, or a .pt2's metadata from
    `prunec export`); 0 when none is recorded (a .pt2 from torch.export.save)."""
    if model_path is None:
        return 0
    try:
        from . import checkpoint as C

        meta = C.load(model_path).meta
        return int(meta.get("data_seed", meta.get("seed")) or 0)
    except Exception:  # noqa: BLE001 - not a checkpoint: a .pt2
        pass
    try:
        from .export import read_metadata

        return int(read_metadata(model_path).get("data_seed") or 0)
    except Exception:  # noqa: BLE001 - no metadata: the default seed
        return 0


def load_samples(path, shape, option: str) -> np.ndarray:
    """The samples of the .npy at `path` as float32 [N, *shape[1:]] for a model whose input is `shape` (batch 1):
    [N, *sample] or [N, numel] (each sample flattened in C order); anything else is refused, naming `option`."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        if "allow_pickle" in str(e):  # numpy's advice (load it unsafely) is not ours to give
            raise PrunecError(f"cannot read {option} {path}: it is not a numeric .npy array (it holds pickled Python "
                              f"objects, or is not an .npy file); save a float array with np.save") from None
        raise PrunecError(f"cannot read {option} {path}: {e}") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        what = "an .npz archive" if not isinstance(x, np.ndarray) else f"an array of dtype {x.dtype}"
        raise PrunecError(f"{option} {path} is {what}; give one numeric array [N, ...] saved with np.save")
    size = numel(shape)
    if x.size % size or x.size == 0:
        raise PrunecError(f"{option} {path} holds {x.size} values, not a whole number of inputs of {size}")
    sample = tuple(int(d) for d in shape[1:])
    # [N, *sample], or [N, numel] (each sample flattened in C order); any other layout with the right number of
    # values (a transposed 10x49 for a 49x10 model) would be reshaped into wrong samples and compared as if right
    if not (x.ndim == 1 + len(sample) and tuple(x.shape[1:]) == sample) and not (x.ndim == 2 and x.shape[1] == size):
        raise PrunecError(
            f"{option} {path} has shape {tuple(x.shape)}, but the model takes samples of shape {sample} "
            f"(its input is {tuple(shape)}, batch 1): give an array [N, {', '.join(map(str, sample))}] or [N, {size}] "
            f"(each sample flattened in C order). Not reshaped: samples of another shape would be silently misread; "
            f"if the values are in another layout, transpose them (e.g. np.transpose) before np.save")
    return x.astype(np.float32).reshape(-1, *shape[1:])


RANDOM_BYTES_MAX = 1 << 30  # --random: at most 1 GiB of inputs


def _inputs(manifest: dict, data: str | None, inputs_path: str | None, random: int | None, data_dir, limit, seed,
            model_path=None):
    shape = tuple(manifest["input_shape"])
    labels = None
    chosen = sum(x is not None for x in (data, inputs_path, random))
    if chosen > 1:
        raise PrunecError("choose one of --data, --inputs, --random")
    if random is not None and int(random) < 1:
        raise PrunecError(f"--random {random}: give the number of random inputs, at least 1 (e.g. --random 100)")
    if limit is not None and int(limit) < 1:
        raise PrunecError(f"--limit {limit}: give the number of inputs to use, at least 1")
    if random is not None:
        per = 4 * math.prod(shape[1:])
        most = max(1, RANDOM_BYTES_MAX // per)
        if int(random) > most:
            raise PrunecError(f"--random {random}: that many inputs of shape {list(shape[1:])} take "
                              f"{int(random) * per / 2**30:,.1f} GiB; give at most {most:,}")
    from . import data as data_mod

    data_mod.check_data_dir(data, data_dir)
    if data is not None:
        if data == "synthetic":  # the test split the model was evaluated on when it was trained and pruned
            ds = data_mod.synthetic_for(shape[1:], _data_seed(model_path))
        elif data == "fashion-mnist":  # its test split only
            ds = data_mod.load_fashion_mnist(data_dir, test_only=True)
        else:
            ds = data_mod.load(data, data_dir)
        x, labels = ds.test.x.numpy(), ds.test.y.numpy()
        if tuple(x.shape[1:]) != shape[1:]:
            raise PrunecError(f"data set {data} has inputs of shape {tuple(x.shape[1:])}, the build takes {shape[1:]}")
    elif inputs_path is not None:
        x = load_samples(inputs_path, shape, "--inputs")
    else:
        n = 100 if random is None else int(random)
        x = np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(np.float32)
    if limit is not None:
        x = x[:limit]
        labels = labels[:limit] if labels is not None else None
    return np.ascontiguousarray(x, dtype=np.float32), labels


def verify(build_dir: str | os.PathLike, data: str | None = None, inputs: str | None = None, random: int | None = None,
           model: str | None = None, data_dir: str | None = None, limit: int | None = None, seed: int = 0,
           atol: float = ATOL) -> Report:
    if not (isinstance(atol, (int, float)) and math.isfinite(atol) and atol > 0):
        raise PrunecError(f"--atol {atol}: give the tolerance, a number > 0 (default {ATOL:g})")
    m = load_manifest(build_dir)
    model_path = model or (m.get("source") or {}).get("path")
    if not model_path:
        raise PrunecError("the manifest names no source model; pass --model")
    if model is None and not Path(model_path).exists():
        raise PrunecError(f"the model this build came from, {model_path}, is gone; pass --model with it")
    if model is None and m.get("source", {}).get("sha256"):
        from .checkpoint import sha256 as sha256_file

        if sha256_file(model_path) != m["source"]["sha256"]:
            raise PrunecError(f"{model_path} changed since the build (sha256 differs); rebuild, or pass --model")
    x, labels = _inputs(m, data, inputs, random, data_dir, limit, seed, model_path)
    info: dict = {}
    c = run_build(build_dir, x.reshape(len(x), -1), m, info=info)
    t = reference_outputs(model_path, x, m["input_shape"])
    r = compare(c, t, labels, atol)
    r.target, r.runner, r.ran_under = m["target"], m.get("runner", "cffi"), describe_runner(m)
    r.stack_bytes_used, r.stack_saturated = info.get("stack_bytes_used"), bool(info.get("stack_saturated"))
    stack = (m.get("size") or {}).get("stack") or {}
    r.stack_bytes_bound = stack.get("bytes") if stack.get("measured") else None
    return r
