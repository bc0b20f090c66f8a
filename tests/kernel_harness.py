"""Reusable tester for the C kernels of runtime_c/ (not a test file itself).

What it gives a test:
  build_kernels(sources, extra_cflags, cc=None)  -> (ffi, lib): a cffi API-mode extension of those sources,
      declaring every registered kernel they define (signatures come from the kernel's op).
  cases_for(op)                                  -> the edge-case list for one op (fc_rcsr, conv2d_dense, ...)
  check(ffi, lib, kernel, case)                   runs one kernel on one case against a float64 numpy/torch
      reference; raises AssertionError naming the kernel, the case and the first failing index.
  run(ffi, lib, kernel, case)                     just the kernel's output (to compare twins directly).
  case_params(kernels), twin_of(kernel)           parametrisation rows; the portable twin of a kernel.

A new ISA kernel is tested by building its source with its flags and reusing the portable cases, e.g.

    ffi, lib = build_kernels(["src/avx2/f32-fc-rcsr-avx2.c"], ["-mavx2", "-mfma"], tmpdir=d)
    for k in [k for k in runtime.kernels() if k.isa == "avx2"]:
        for case in cases_for(k.op):
            check(ffi, lib, k, case)

Conventions (after XNNPACK's microkernel testers): outputs are filled with NaN before every call so an
unwritten element fails; the reference is float64; the failure message prints the index and the case.

Tolerance (fp32 kernel vs float64 reference), per output element i:
    |got_i - want_i| <= max(ATOL, RTOL * mag_i) * max(1, K * 2^-24 / RTOL)
where mag_i = sum_k |w_k x_k| + |bias| is the magnitude of the terms summed into element i (for elementwise
ops, |want_i|) and K the number of terms. RTOL = ATOL = 1e-5. Relative to mag, the worst-case error of a
K-term fp32 sum in any order is about K * 2^-24 * mag, so the second factor widens the bound only for
reductions longer than ~170 terms, and then to the worst case, so ISA kernels may sum in any order.
Max pooling and clamp are exact (tolerance 0).
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prunec import encode, runtime
from prunec.resources import runtime_dir

RTOL = 1e-5
ATOL = 1e-5
U32 = 2.0 ** -24  # unit roundoff of fp32
BASE_CFLAGS = ("-std=c99", "-O2")
WIDTHS = (3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33)  # around 4-, 8- and 16-lane vector widths
# Index widths the sparse cases run with: the three fast paths of every ISA kernel, and widths decoded through the
# generic bit stream (1: a filler every other column; 5, 6, 7: byte-straddling codes; 12: codes across 3 bytes).
CASE_BITS = tuple(sorted(set(encode.FAST_INDEX_BITS) | {1, 5, 6, 7, 12}))
ACTS = {"none": (-math.inf, math.inf), "relu": (0.0, math.inf), "relu6": (0.0, 6.0)}
ACT_NAMES = tuple(ACTS)

# --------------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------------

CDEF_TYPES = """
typedef struct prunec_rcsr_f32 {
  uint32_t rows; uint32_t cols; uint32_t index_bits;
  const float *values; const uint8_t *index; const uint32_t *row_ptr;
} prunec_rcsr_f32;
typedef struct prunec_dense_f32 { uint32_t rows; uint32_t cols; const float *values; } prunec_dense_f32;
typedef struct prunec_bsell_f32 {
  uint32_t rows; uint32_t cols; const uint16_t *perm; const uint8_t *steps; const uint8_t *index; const float *values;
} prunec_bsell_f32;
typedef struct prunec_rsell_f32 {
  uint32_t rows; uint32_t cols; const uint16_t *perm; const uint32_t *steps; const uint8_t *index; const float *values;
} prunec_rsell_f32;
typedef struct prunec_wsell_f32 {
  uint32_t rows; uint32_t cols; const uint16_t *perm; const uint32_t *steps; const uint32_t *start;
  const uint32_t *advance; const uint8_t *index; const float *values;
} prunec_wsell_f32;
typedef struct prunec_acsr_f32 {
  uint32_t rows; uint32_t cols; const float *values; const uint32_t *columns; const uint32_t *row_ptr;
} prunec_acsr_f32;
typedef struct prunec_conv2d_params {
  uint32_t in_c, in_h, in_w; uint32_t out_c, out_h, out_w; uint32_t kh, kw;
  uint32_t stride_h, stride_w; uint32_t pad_h, pad_w; uint32_t dil_h, dil_w; uint32_t groups;
} prunec_conv2d_params;
typedef struct prunec_pool2d_params {
  uint32_t channels; uint32_t in_h, in_w; uint32_t out_h, out_w; uint32_t kh, kw;
  uint32_t stride_h, stride_w; uint32_t pad_h, pad_w; uint32_t count_include_pad;
} prunec_pool2d_params;
"""

# One C signature per op: every kernel of an op (portable or ISA) has the same one (prunec_kernels.h).
SIGNATURES = {
    "fc_rcsr": "void {}(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, float, float);",
    "fc_rcsc": "void {}(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y, float, float);",
    "fc_dense": "void {}(const prunec_dense_f32 *w, const float *bias, const float *x, float *y, float, float);",
    "fc_bsell": "void {}(const prunec_bsell_f32 *w, const float *bias, const float *x, float *y, float, float);",
    "fc_rsell": "void {}(const prunec_rsell_f32 *w, const float *bias, const float *x, float *y, float, float);",
    "fc_wsell": "void {}(const prunec_wsell_f32 *w, const float *bias, const float *x, float *y, float, float);",
    "fc_acsr": "void {}(const prunec_acsr_f32 *w, const float *bias, const float *x, float *y, float, float);",
    "conv2d_rcsr": "void {}(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias, "
                   "const float *x, float *y, float, float);",
    "conv2d_dense": "void {}(const prunec_conv2d_params *p, const prunec_dense_f32 *w, const float *bias, "
                    "const float *x, float *y, float, float);",
    "conv2d_rcsr_maxpool2d": "void {}(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias, "
                             "const prunec_pool2d_params *pp, const float *x, float *plane, float *y, float, float);",
    "maxpool2d": "void {}(const prunec_pool2d_params *p, const float *x, float *y);",
    "avgpool2d": "void {}(const prunec_pool2d_params *p, const float *x, float *y);",
    "adaptive_avgpool2d": "void {}(uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, const float *x, float *y);",
    "clamp": "void {}(size_t n, const float *x, float *y, float, float);",
    "sigmoid": "void {}(size_t n, const float *x, float *y);",
    "tanh": "void {}(size_t n, const float *x, float *y);",
    "softmax": "void {}(size_t outer, size_t n, size_t inner, const float *x, float *y);",
    "log_softmax": "void {}(size_t outer, size_t n, size_t inner, const float *x, float *y);",
    "add": "void {}(size_t n, const float *a, const float *b, float *y, float, float);",
    "sub": "void {}(size_t n, const float *a, const float *b, float *y, float, float);",
    "affine": "void {}(size_t channels, size_t inner, const float *scale, const float *shift, const float *x, "
              "float *y, float, float);",
    "concat": "void {}(size_t outer, size_t n, size_t y_stride, const float *x, float *y);",
    "mul": "void {}(size_t channels, size_t inner, size_t b_inner, const float *a, const float *b, float *y);",
    "leaky_relu": "void {}(size_t n, float slope, const float *x, float *y);",
    "gelu": "void {}(size_t n, uint32_t tanh_approx, const float *x, float *y);",
    "elu": "void {}(size_t n, float scale, float input_scale, float neg_scale, const float *x, float *y);",
    "softplus": "void {}(size_t n, float beta, float threshold, const float *x, float *y);",
    "mish": "void {}(size_t n, const float *x, float *y);",
    "pad2d": "void {}(size_t planes, size_t in_h, size_t in_w, size_t out_h, size_t out_w, int32_t top, int32_t left, "
             "float value, const float *x, float *y);",
    "upsample_nearest2d": "void {}(size_t planes, size_t in_h, size_t in_w, size_t scale_h, size_t scale_w, "
                          "const float *x, float *y);",
    "upsample_bilinear2d": "void {}(size_t planes, size_t in_h, size_t in_w, size_t out_h, size_t out_w, float scale_h, "
                           "float scale_w, uint32_t align_corners, const float *x, float *y);",
    "permute": "void {}(const uint32_t *shape, const uint32_t *stride, const float *x, float *y);",
}


def _resolve(src: str | Path) -> Path:
    p = Path(src)
    return p if p.is_absolute() else runtime_dir() / p


@contextmanager
def _compiler_env(cc: str | None):
    """setuptools takes the compiler from $CC (and rewrites the link command's leading gcc to it)."""
    if cc is None:
        yield
        return
    old = os.environ.get("CC")
    os.environ["CC"] = cc
    try:
        yield
    finally:
        if old is None:
            del os.environ["CC"]
        else:
            os.environ["CC"] = old


def build_kernels(sources, extra_cflags=(), cc: str | None = None, *, tmpdir: str | Path | None = None,
                  kernels=None):
    """Compile `sources` (paths relative to runtime_c/, or absolute) into a cffi extension; return (ffi, lib).

    `kernels` (runtime.Kernel list) are the functions declared to cffi; by default every registered kernel
    whose source is among `sources`. Flags: -std=c99 -O2 then `extra_cflags` (e.g. -mavx2 -mfma). The
    module name hashes everything that affects the build, so several variants can live in one process.
    """
    from cffi import FFI

    srcs = [_resolve(s) for s in sources]
    if kernels is None:
        wanted = {str(s) for s in srcs}
        kernels = [k for k in runtime.kernels() if str(_resolve(k.source)) in wanted]
    if not kernels:
        raise ValueError(f"no registered kernel is defined in {sources}")
    # sources of the kernels these call (PRUNEC_KERNEL_USES), as a build would copy them
    have = {str(s) for s in srcs}
    srcs += [p for p in map(_resolve, runtime.sources_for([k for k in kernels if isinstance(k, runtime.Kernel)]))
             if str(p) not in have]
    cdef = CDEF_TYPES + "\n".join(SIGNATURES[k.op].format(k.name) for k in kernels)
    flags = [*BASE_CFLAGS, *extra_cflags]
    key = "\n".join([cdef, *map(str, srcs), *flags, cc or ""]).encode()
    modname = "_prunec_kt_" + hashlib.sha1(key).hexdigest()[:12]
    tmpdir = Path(tmpdir) if tmpdir is not None else Path(tempfile.mkdtemp(prefix="prunec_kt_"))

    ffi = FFI()
    ffi.cdef(cdef)
    ffi.set_source(modname, '#include "prunec_kernels.h"', sources=[str(s) for s in srcs],
                   include_dirs=[str(runtime_dir() / "include")], extra_compile_args=flags, libraries=["m"])
    with _compiler_env(cc):
        path = ffi.compile(tmpdir=str(tmpdir))
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ffi, mod.lib


# --------------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------------


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _sparse(rng, shape, density: float, pattern: str) -> np.ndarray:
    """A float32 weight array; `pattern` shapes the mask of its [shape[0] x rest] matrix view."""
    w = rng.standard_normal(shape).astype(np.float32)
    m = w.reshape(shape[0], -1)
    rows, cols = m.shape
    if pattern == "zero":
        m[:] = 0
    elif pattern == "full":
        m[m == 0] = 1.0
    elif pattern == "far":  # first and last column only: one gap of cols-1 per row (fillers for small b)
        keep = np.zeros_like(m, dtype=bool)
        keep[:, 0] = keep[:, -1] = True
        m[~keep] = 0
    else:
        m[rng.random(m.shape) >= density] = 0
        if pattern == "empty_rows":  # every other row empty, first and last included
            m[0::2] = 0
            m[-1] = 0
    return w


def _pattern_id(pattern: str, density: float) -> str:
    return f"{pattern}{density:g}" if pattern in ("random", "empty_rows") else pattern


@dataclass(frozen=True)
class FcCase:
    rows: int
    cols: int
    density: float = 0.3
    pattern: str = "random"  # random | empty_rows | zero | full | far
    bits: int | None = None  # rcsr index bits; None for dense kernels
    act: str = "none"
    bias: bool = True
    seed: int = 0
    x_zeros: float = 0.0  # fraction of the inputs set to zero (+0.0 and -0.0 alike), e.g. a ReLU's output

    @property
    def id(self) -> str:
        b = f"-b{self.bits}" if self.bits else ""
        nb = "" if self.bias else "-nobias"
        z = f"-xz{self.x_zeros:g}" if self.x_zeros else ""
        return f"fc{self.rows}x{self.cols}-{_pattern_id(self.pattern, self.density)}{b}-{self.act}{nb}{z}-s{self.seed}"

    def data(self):
        rng = _rng(self.seed)
        w = _sparse(rng, (self.rows, self.cols), self.density, self.pattern)
        x = rng.standard_normal(self.cols).astype(np.float32)
        if self.x_zeros:
            x[rng.random(self.cols) < self.x_zeros] = 0.0
            x[::7][x[::7] == 0] = -0.0
        b = (rng.standard_normal(self.rows) * 2).astype(np.float32) if self.bias else None
        return w, b, x


@dataclass(frozen=True)
class ConvCase:
    in_c: int
    out_c: int
    h: int
    w: int
    k: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dil: tuple[int, int] = (1, 1)
    groups: int = 1
    density: float = 0.5
    pattern: str = "random"
    bits: int | None = None
    act: str = "none"
    bias: bool = True
    seed: int = 0

    @property
    def id(self) -> str:
        b = f"-b{self.bits}" if self.bits else ""
        nb = "" if self.bias else "-nobias"
        return (f"conv{self.in_c}to{self.out_c}-{self.h}x{self.w}-k{self.k[0]}x{self.k[1]}-s{self.stride[0]}"
                f"{self.stride[1]}-p{self.pad[0]}{self.pad[1]}-d{self.dil[0]}{self.dil[1]}-g{self.groups}-"
                f"{_pattern_id(self.pattern, self.density)}{b}-{self.act}{nb}-s{self.seed}")

    def out_hw(self) -> tuple[int, int]:
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                     for n, p, d, k, s in zip((self.h, self.w), self.pad, self.dil, self.k, self.stride))

    def data(self):
        rng = _rng(self.seed)
        w = _sparse(rng, (self.out_c, self.in_c // self.groups, *self.k), self.density, self.pattern)
        x = rng.standard_normal((self.in_c, self.h, self.w)).astype(np.float32)
        b = (rng.standard_normal(self.out_c) * 2).astype(np.float32) if self.bias else None
        return w, b, x


@dataclass(frozen=True)
class PoolCase:
    channels: int
    h: int
    w: int
    k: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    pad: tuple[int, int] = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    nan: bool = False  # one NaN in the input: it must propagate to the windows that cover it, as in PyTorch
    seed: int = 0

    @property
    def id(self) -> str:
        return (f"pool{self.channels}-{self.h}x{self.w}-k{self.k[0]}x{self.k[1]}-s{self.stride[0]}{self.stride[1]}"
                f"-p{self.pad[0]}{self.pad[1]}{'-ceil' if self.ceil_mode else ''}"
                f"{'' if self.count_include_pad else '-nopadcount'}{'-nan' if self.nan else ''}-s{self.seed}")

    def out_hw(self) -> tuple[int, int]:
        """PyTorch's pooling output size, ceil_mode's last-window rule included."""
        out = []
        for n, k, s, p in zip((self.h, self.w), self.k, self.stride, self.pad):
            num = n + 2 * p - k
            o = (-(-num // s) if self.ceil_mode else num // s) + 1
            if self.ceil_mode and (o - 1) * s >= n + p:
                o -= 1
            out.append(o)
        return tuple(out)

    def data(self):
        x = _rng(self.seed).standard_normal((self.channels, self.h, self.w)).astype(np.float32)
        if self.nan:
            x[0, self.h // 2, self.w // 2] = np.nan
        return x


@dataclass(frozen=True)
class ConvPoolCase:
    """A convolution with the max pool after it fused (op conv2d_rcsr_maxpool2d): the conv case, the pool's
    window, stride, padding and ceil_mode. `nan`: one NaN in the input (with every weight nonzero, pattern
    "full", so that the sparse kernels and the dense reference agree where it spreads)."""
    conv: ConvCase
    k: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    pad: tuple[int, int] = (0, 0)
    ceil_mode: bool = False
    nan: bool = False

    @property
    def id(self) -> str:
        return (f"{self.conv.id}-maxpool{self.k[0]}x{self.k[1]}-s{self.stride[0]}{self.stride[1]}"
                f"-p{self.pad[0]}{self.pad[1]}{'-ceil' if self.ceil_mode else ''}{'-nan' if self.nan else ''}")

    def pool(self) -> PoolCase:
        """The pool as a PoolCase over the conv's output (its out_hw is PyTorch's)."""
        oh, ow = self.conv.out_hw()
        return PoolCase(self.conv.out_c, oh, ow, k=self.k, stride=self.stride, pad=self.pad, ceil_mode=self.ceil_mode)

    def out_hw(self) -> tuple[int, int]:
        return self.pool().out_hw()

    def data(self):
        w, b, x = self.conv.data()
        if self.nan:
            x[0, self.conv.h // 2, self.conv.w // 2] = np.nan
        return w, b, x


@dataclass(frozen=True)
class AdaptiveCase:
    channels: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    seed: int = 0

    @property
    def id(self) -> str:
        return f"adaptive{self.channels}-{self.in_hw[0]}x{self.in_hw[1]}to{self.out_hw[0]}x{self.out_hw[1]}"

    def data(self):
        return _rng(self.seed).standard_normal((self.channels, *self.in_hw)).astype(np.float32)


@dataclass(frozen=True)
class EltCase:
    n: int
    scale: float = 3.0
    act: str = "none"
    inplace: bool = False
    shape: tuple[int, int, int] | None = None  # softmax (outer, n, inner); affine (channels, inner, 0)
    seed: int = 0
    variant: str = ""  # gelu's approximate; a key of ELU_VARIANTS / SOFTPLUS_VARIANTS

    @property
    def id(self) -> str:
        s = f"{self.shape[0]}x{self.shape[1]}x{self.shape[2]}" if self.shape else str(self.n)
        v = f"-{self.variant}" if self.variant else ""
        return f"elt{s}-x{self.scale:g}-{self.act}{v}{'-inplace' if self.inplace else ''}-s{self.seed}"

    def data(self, count: int = 1):
        rng = _rng(self.seed)
        return [(rng.standard_normal(self.n) * self.scale).astype(np.float32) for _ in range(count)]


@dataclass(frozen=True)
class PadCase:
    """pad2d: `planes` planes of h x w padded by (top, bottom, left, right); a negative amount crops."""
    planes: int
    h: int
    w: int
    pads: tuple[int, int, int, int]
    value: float = 0.0
    seed: int = 0

    @property
    def id(self) -> str:
        return f"pad{self.planes}-{self.h}x{self.w}-p{'_'.join(map(str, self.pads))}-v{self.value:g}-s{self.seed}"

    def out_hw(self) -> tuple[int, int]:
        t, b, l, r = self.pads
        return self.h + t + b, self.w + l + r

    def data(self):
        return _rng(self.seed).standard_normal((self.planes, self.h, self.w)).astype(np.float32)


@dataclass(frozen=True)
class UpsampleCase:
    """Upsampling `planes` planes of h x w to out_hw: nearest (integer factors) or bilinear, whose `factor`
    (PyTorch's scale_factor) is what the kernel's scales come from, or, None, in / out (a size was given)."""
    planes: int
    h: int
    w: int
    out_hw: tuple[int, int]
    factor: tuple[float, float] | None = None
    align_corners: bool = False
    seed: int = 0

    @property
    def id(self) -> str:
        f = f"-f{self.factor[0]:g}x{self.factor[1]:g}" if self.factor else ""
        return (f"up{self.planes}-{self.h}x{self.w}to{self.out_hw[0]}x{self.out_hw[1]}{f}"
                f"{'-align' if self.align_corners else ''}-s{self.seed}")

    def scales(self) -> tuple[float, float]:
        """The bilinear kernel's float32 scales, as PyTorch's area_pixel_compute_scale computes them."""
        out = []
        for k, (i, o) in enumerate(zip((self.h, self.w), self.out_hw)):
            if self.align_corners:
                out.append(np.float32(i - 1) / np.float32(o - 1) if o > 1 else np.float32(0))
            else:
                out.append(np.float32(1.0 / self.factor[k]) if self.factor else np.float32(i) / np.float32(o))
        return float(out[0]), float(out[1])

    def data(self):
        return _rng(self.seed).standard_normal((self.planes, self.h, self.w)).astype(np.float32)


@dataclass(frozen=True)
class PermuteCase:
    """permute: x of `shape` (4 dims, leading ones 1 for fewer), y = x.permute(perm)."""
    shape: tuple[int, int, int, int]
    perm: tuple[int, int, int, int]
    seed: int = 0

    @property
    def id(self) -> str:
        return f"perm{'x'.join(map(str, self.shape))}-{''.join(map(str, self.perm))}-s{self.seed}"

    def data(self):
        return _rng(self.seed).standard_normal(self.shape).astype(np.float32)


def fc_cases(bits: tuple[int | None, ...] = (None,)) -> list[FcCase]:
    """Edge shapes for fully connected kernels, once per entry of `bits` (None: dense)."""
    out: list[FcCase] = []
    for b in bits:
        base: list[FcCase] = [
            FcCase(1, 1), FcCase(1, 1, pattern="full"), FcCase(1, 1, pattern="zero"),
            FcCase(1, 40), FcCase(40, 1, density=0.5), FcCase(1, 100, pattern="far"),
            FcCase(9, 33, pattern="empty_rows"), FcCase(17, 17, pattern="zero"), FcCase(8, 33, pattern="full"),
            FcCase(7, 300, pattern="far"), FcCase(16, 31, density=0.05), FcCase(5, 9, bias=False),
            FcCase(64, 1500, density=0.3, seed=1),  # long reductions
        ]
        for i, n in enumerate(WIDTHS):
            base.append(FcCase(n, 33, density=0.4, seed=10 + i))
            base.append(FcCase(3, n, density=0.6, seed=30 + i))
        if b in (None, 16):  # one gap beyond 2^16 (fillers for every b)
            base.append(FcCase(2, 70000, pattern="far"))
        for i, c in enumerate(base):
            act = ACT_NAMES[i % len(ACT_NAMES)]
            out.append(FcCase(**{**c.__dict__, "bits": b, "act": act}))
    return out


def _sliced_cases(shapes, seed: int, far: bool = True) -> list[FcCase]:
    """The sliced layouts' extra fc cases: `shapes` (rows, cols, density) with activations and bias cycling, seeds
    seed + i; then empty rows (relu), an all-zero layer and, with `far`, one gap beyond 2^16 (seeds seed + 20..22)."""
    out = [FcCase(r, c, density=d, act=ACT_NAMES[i % 3], bias=i % 4 != 3, seed=seed + i)
           for i, (r, c, d) in enumerate(shapes)]
    out.append(FcCase(37, 70, pattern="empty_rows", act="relu", seed=seed + 20))
    out.append(FcCase(18, 40, pattern="zero", seed=seed + 21))
    if far:
        out.append(FcCase(2, 70000, pattern="far", seed=seed + 22))
    return out


def bsell_cases() -> list[FcCase]:
    """Shapes for the blocked sliced layout: rows around multiples of 16 (slices), columns around multiples of 32
    (blocks; the last block's inputs are loaded masked), blocks holding 0 to 32 entries of a row (odd and even
    step counts), empty rows and all-zero slices."""
    return _sliced_cases([(15, 31, 0.3), (16, 32, 1.0), (17, 33, 0.5), (31, 63, 0.2), (33, 65, 0.9), (48, 96, 0.05),
                          (5, 200, 0.6), (40, 7, 0.8), (300, 784, 0.07), (20, 1000, 0.01)], 100, far=False)


def rsell_cases() -> list[FcCase]:
    """Shapes for the relative-indexed sliced layout: rows around multiples of 16 (slices; lanes past the last row),
    step counts around multiples of 4 (the AVX-512 kernel's unrolling), rows of very different lengths in one slice
    (fillers at the lowest free columns), gaps over 256 (fillers inside a row), rows as long as the matrix is wide,
    empty rows and all-zero slices."""
    return _sliced_cases([(15, 31, 0.3), (16, 32, 1.0), (17, 33, 0.5), (31, 63, 0.2), (33, 65, 0.9), (48, 96, 0.05),
                          (5, 200, 0.6), (40, 7, 0.8), (300, 784, 0.07), (20, 1000, 0.01), (64, 3000, 0.004),
                          (16, 4, 1.0)], 200)


def wsell_cases() -> list[FcCase]:
    """Shapes for the windowed sliced layout (at least 16 columns: one window): the dense kernels' shapes that have
    them, plus rows around multiples of 4 (slices; lanes past the last row), step counts 0..9 per slice (the NEON
    kernel takes 4, 2 and 1 at a time), windows at both ends of x, long gaps between windows, empty rows and all-zero
    slices."""
    return [c for c in fc_cases() if c.cols >= 16] + _sliced_cases(
        [(3, 16, 1.0), (4, 17, 0.9), (5, 40, 0.5), (7, 64, 0.3), (8, 100, 0.1), (9, 21, 1.0), (30, 784, 0.08),
         (33, 70, 0.25), (13, 5000, 0.002)], 400)


def acsr_cases() -> list[FcCase]:
    """Shapes for absolute-indexed CSR: the dense kernels' shapes, plus rows of 0 to 17 entries (a group of 4 and 0, 1
    or 2 groups of 8 in the Cortex-M kernel; fillers after 1, 2 or 3 nonzeros), rows as long as the matrix is wide,
    columns beyond 2^16, empty rows and all-zero layers."""
    return fc_cases() + _sliced_cases([(18, 17, 0.5), (40, 12, 0.3), (16, 8, 1.0), (9, 9, 1.0), (300, 784, 0.08),
                                       (100, 300, 0.09), (10, 500, 0.19), (3, 70000, 0.0003)], 500)


def conv_cases(bits: tuple[int | None, ...] = (None,)) -> list[ConvCase]:
    """Edge geometries for conv2d kernels, once per entry of `bits` (None: dense)."""
    out: list[ConvCase] = []
    for b in bits:
        base: list[ConvCase] = [
            ConvCase(1, 1, 1, 1, k=(1, 1)),
            ConvCase(3, 4, 8, 8),
            ConvCase(3, 4, 9, 9, stride=(2, 2)),
            ConvCase(3, 4, 7, 7, pad=(1, 1)),
            ConvCase(2, 3, 6, 7, pad=(2, 2), stride=(2, 2)),
            ConvCase(3, 4, 11, 10, dil=(2, 2)),
            ConvCase(3, 4, 11, 10, dil=(2, 2), pad=(2, 2), stride=(2, 2)),
            ConvCase(4, 6, 8, 8, groups=2, pad=(1, 1)),
            ConvCase(4, 4, 9, 9, groups=4, pad=(1, 1), density=0.7),  # depthwise
            ConvCase(3, 6, 8, 9, groups=3, stride=(2, 2), pad=(1, 1), density=0.7),  # depthwise, multiplier 2
            # depthwise planes on both sides of the Arm kernels' hand-over to the portable one (prunec_conv_few_taps:
            # 100 / 144 pixels or narrower than 8 columns; AArch64 every plane)
            ConvCase(3, 3, 10, 10, groups=3, pad=(1, 1), density=0.5),
            ConvCase(3, 3, 13, 13, groups=3, pad=(1, 1), density=0.5),
            ConvCase(3, 3, 31, 5, groups=3, pad=(1, 1), density=0.5),
            ConvCase(5, 7, 6, 6, k=(1, 1)),
            ConvCase(5, 7, 6, 6, k=(1, 1), stride=(2, 2)),
            ConvCase(3, 2, 5, 5, k=(5, 5)),  # kernel == input
            ConvCase(2, 3, 4, 6, k=(4, 6), pad=(1, 1)),
            ConvCase(2, 3, 7, 11, k=(3, 5), stride=(2, 1), pad=(1, 2)),  # non-square everything
            ConvCase(2, 3, 6, 13, k=(2, 4), stride=(1, 3), pad=(0, 1), dil=(2, 1)),
            ConvCase(4, 5, 6, 6, pattern="zero"),
            ConvCase(4, 5, 6, 6, pattern="empty_rows"),
            ConvCase(4, 5, 6, 6, pattern="full", bias=False),
            ConvCase(4, 3, 5, 5, pattern="far", pad=(1, 1)),  # 36 columns: fillers for b = 4
            ConvCase(32, 3, 5, 5, pattern="far"),  # 288 columns: fillers for b = 4, 8
            ConvCase(16, 8, 12, 12, density=0.2, pad=(1, 1), seed=3),  # longer reductions
        ]
        for i, n in enumerate(WIDTHS):
            base.append(ConvCase(2, 3, 5, n, pad=(1, 1), seed=50 + i))
        if b in (None, 16):  # 73728 columns: fillers for every b
            base.append(ConvCase(8192, 2, 3, 3, pattern="far", pad=(1, 1)))
        for i, c in enumerate(base):
            act = ACT_NAMES[i % len(ACT_NAMES)]
            out.append(ConvCase(**{**c.__dict__, "bits": b, "act": act}))
    return out


def pool_cases(avg: bool) -> list[PoolCase]:
    base = [
        PoolCase(1, 1, 1, k=(1, 1), stride=(1, 1)),
        PoolCase(3, 8, 8),
        PoolCase(2, 5, 5, ceil_mode=True),  # overhanging last window
        PoolCase(2, 7, 9, k=(3, 3), stride=(2, 2), pad=(1, 1)),
        PoolCase(2, 7, 9, k=(3, 3), stride=(2, 2), pad=(1, 1), ceil_mode=True),
        PoolCase(2, 6, 6, k=(3, 3), stride=(2, 2), pad=(1, 1), ceil_mode=True),
        PoolCase(2, 10, 7, k=(3, 2), stride=(3, 1), pad=(1, 1), ceil_mode=True),
        PoolCase(2, 5, 5, k=(5, 5), stride=(1, 1)),  # kernel == input
        PoolCase(2, 6, 9, k=(2, 3), stride=(1, 2)),
        PoolCase(1, 4, 4, k=(4, 4), stride=(4, 4), pad=(2, 2)),
        PoolCase(2, 7, 7, k=(3, 3), stride=(2, 2), pad=(1, 1), nan=True),
    ] + [PoolCase(2, 4, n, k=(2, 2), stride=(2, 2), ceil_mode=bool(i % 2), seed=i) for i, n in enumerate(WIDTHS)]
    if not avg:
        return base
    return base + [PoolCase(**{**c.__dict__, "count_include_pad": False}) for c in base if any(c.pad)]


def conv_pool_cases(bits: tuple[int, ...] = CASE_BITS) -> list[ConvPoolCase]:
    """Edge geometries of a convolution + max pool, once per index width: LeNet-5's two pairs (the packed and
    row-pair paths of the avx512x4 kernel), odd sizes, ceil_mode and padded pools (the portable pool behind the
    fast one), groups, strided / dilated / large convolutions (the per-channel fallback), empty and filler-only
    rows, NaN, every clamp."""
    out: list[ConvPoolCase] = []
    for b in bits:
        base = [
            ConvPoolCase(ConvCase(1, 20, 28, 28, k=(5, 5), density=0.6)),  # LeNet-5 conv1 + pool1
            ConvPoolCase(ConvCase(20, 50, 12, 12, k=(5, 5), density=0.1, seed=1)),  # LeNet-5 conv2 + pool2
            ConvPoolCase(ConvCase(1, 1, 1, 1, k=(1, 1)), k=(1, 1), stride=(1, 1)),
            ConvPoolCase(ConvCase(3, 4, 9, 11)),  # 7x9 -> 3x4 (odd: the last row / column unread)
            ConvPoolCase(ConvCase(3, 4, 9, 11), ceil_mode=True),
            ConvPoolCase(ConvCase(2, 3, 9, 9, pad=(1, 1)), k=(3, 3), stride=(2, 2), pad=(1, 1)),
            ConvPoolCase(ConvCase(2, 3, 8, 13, k=(3, 5), pad=(1, 2)), k=(3, 2), stride=(3, 1), pad=(1, 1),
                         ceil_mode=True),
            ConvPoolCase(ConvCase(4, 6, 8, 8, groups=2, pad=(1, 1))),
            ConvPoolCase(ConvCase(4, 4, 9, 9, groups=4, pad=(1, 1), density=0.7)),  # depthwise
            ConvPoolCase(ConvCase(3, 4, 9, 9, stride=(2, 2)), ceil_mode=True),  # strided conv: fallback
            ConvPoolCase(ConvCase(3, 4, 11, 10, dil=(2, 2), pad=(2, 2))),  # dilated conv: fallback
            ConvPoolCase(ConvCase(3, 2, 40, 40, pad=(1, 1), density=0.4)),  # too large to pack: tiles
            ConvPoolCase(ConvCase(4, 5, 6, 6, pattern="empty_rows")),
            ConvPoolCase(ConvCase(4, 5, 6, 6, pattern="zero", bias=False)),
            ConvPoolCase(ConvCase(32, 3, 5, 5, pattern="far", k=(3, 3))),  # fillers for b = 4, 8
            ConvPoolCase(ConvCase(16, 40, 10, 10, density=0.2, seed=3)),  # many channels, 8x8 planes
            ConvPoolCase(ConvCase(3, 5, 10, 26, pattern="full")),  # 8x24 planes
            ConvPoolCase(ConvCase(2, 3, 14, 28, k=(5, 5), density=0.4)),  # 10x24: one segment pooled in registers
            ConvPoolCase(ConvCase(2, 3, 12, 12, pattern="full", k=(5, 5)), nan=True),
            ConvPoolCase(ConvCase(2, 3, 9, 11, pattern="full", pad=(1, 1)), k=(3, 3), stride=(2, 2), nan=True),
        ]
        for i, c in enumerate(base):
            act = ACT_NAMES[i % len(ACT_NAMES)]
            out.append(ConvPoolCase(ConvCase(**{**c.conv.__dict__, "bits": b, "act": act}), c.k, c.stride, c.pad,
                                    c.ceil_mode, c.nan))
    return out


def adaptive_cases() -> list[AdaptiveCase]:
    pairs = [((1, 1), (1, 1)), ((7, 7), (1, 1)), ((8, 8), (4, 4)), ((5, 7), (3, 2)), ((10, 10), (3, 3)),
             ((3, 3), (5, 5)), ((1, 1), (2, 2)), ((6, 13), (6, 13)), ((9, 17), (4, 7))]
    return [AdaptiveCase(2, a, b, seed=i) for i, (a, b) in enumerate(pairs)]


def elementwise_cases(op: str) -> list[EltCase]:
    ns = (1, *WIDTHS, 1000)
    if op in ("softmax", "log_softmax"):
        shapes = [(1, 1, 1), (1, 10, 1), (3, 7, 4), (2, 1, 5), (1, 1000, 1), (4, 33, 1), (1, 16, 17), (2, 3, 9)]
        out = [EltCase(o * n * i, shape=(o, n, i), seed=j) for j, (o, n, i) in enumerate(shapes)]
        out.append(EltCase(3 * 9, scale=100.0, shape=(3, 9, 1), seed=99))  # large logits: needs max-subtraction
        out.append(EltCase(2 * 7 * 3, shape=(2, 7, 3), inplace=True, seed=98))
        return out
    if op == "mul":  # (channels, inner, b_inner): b of a's shape or one value per channel
        shapes = [(1, 1, 1), (3, 5, 5), (4, 9, 1), (1, 17, 17), (16, 33, 1), (5, 64, 64), (300, 1, 1)]
        out = [EltCase(c * i, shape=(c, i, bi), seed=j) for j, (c, i, bi) in enumerate(shapes)]
        out += [EltCase(4 * 9, shape=(4, 9, 1), inplace=True, seed=97), EltCase(5 * 7, shape=(5, 7, 7), inplace=True, seed=96)]
        return out
    if op == "leaky_relu":
        out = [EltCase(n, seed=i) for i, n in enumerate(ns)]
        return out + [EltCase(17, inplace=True, seed=95)]
    if op == "concat":  # (outer, n, y_stride): the output's other elements must stay untouched
        shapes = [(1, 1, 1), (1, 5, 9), (3, 4, 4), (4, 3, 10), (7, 1, 3), (2, 33, 40), (16, 9, 18)]
        return [EltCase(o * n, shape=(o, n, st), seed=j) for j, (o, n, st) in enumerate(shapes)]
    if op == "affine":
        shapes = [(1, 1), (3, 1), (1, 17), (4, 9), (16, 33), (300, 1), (5, 64)]
        out = [EltCase(c * i, act=ACT_NAMES[j % 3], shape=(c, i, 0), seed=j) for j, (c, i) in enumerate(shapes)]
        out.append(EltCase(6 * 7, act="relu6", shape=(6, 7, 0), inplace=True, seed=97))
        return out
    if op in ("gelu", "elu", "softplus"):
        variants = {"gelu": ("none", "tanh"), "elu": tuple(ELU_VARIANTS), "softplus": tuple(SOFTPLUS_VARIANTS)}[op]
        out = [EltCase(n, seed=i, variant=variants[i % len(variants)]) for i, n in enumerate(ns)]
        out += [EltCase(64, scale=30.0, seed=96, variant=v) for v in variants]  # far tails
        return out + [EltCase(17, inplace=True, seed=95, variant=variants[-1])]
    out = [EltCase(n, seed=i) for i, n in enumerate(ns)]
    if op in ("clamp", "add", "sub"):
        out = [EltCase(c.n, act=ACT_NAMES[i % 3], seed=c.seed) for i, c in enumerate(out)]
        out.append(EltCase(33, act="relu6", inplace=True, seed=97))
    if op in ("sigmoid", "tanh", "mish"):
        out.append(EltCase(64, scale=60.0, seed=96))  # saturation, no overflow (mish: exp overflows to inf)
        out.append(EltCase(17, inplace=True, seed=95))
    return out


def pad_cases() -> list[PadCase]:
    pads = [(0, 0, 0, 0), (1, 1, 1, 1), (0, 0, 2, 1), (2, 0, 0, 3), (3, 3, 0, 0), (0, 1, 5, 0), (4, 4, 4, 4),
            (-1, 0, 1, -2), (0, -2, -1, 0), (1, -1, -3, 2)]  # negative: crops
    out = [PadCase(2, 5, 7, p, value=(0.0, 0.5, -np.inf)[i % 3], seed=i) for i, p in enumerate(pads)]
    out += [PadCase(1, 1, 1, (1, 2, 3, 4), seed=20), PadCase(3, 1, 9, (0, 0, 2, 2), seed=21),
            PadCase(1, 3, 3, (0, 0, -3, 1), value=2.0, seed=22),  # every input column cropped
            PadCase(1, 3, 3, (-3, 1, 0, 0), value=2.0, seed=23)]  # every input row cropped
    out += [PadCase(2, 3, n, (1, 0, 1, 2), seed=30 + i) for i, n in enumerate(WIDTHS)]
    return out


def upsample_cases(bilinear: bool) -> list[UpsampleCase]:
    if not bilinear:  # integer factors
        factors = [(1, 1), (2, 2), (3, 1), (1, 3), (2, 3), (4, 4), (1, 5)]
        out = [UpsampleCase(2, 3, 5, (3 * fh, 5 * fw), seed=i) for i, (fh, fw) in enumerate(factors)]
        out.append(UpsampleCase(1, 1, 1, (3, 2)))
        return out + [UpsampleCase(2, 2, n, (4, 2 * n), seed=40 + i) for i, n in enumerate(WIDTHS)]
    out = []
    for align in (False, True):
        out += [UpsampleCase(2, 3, 5, (6, 10), (2.0, 2.0), align), UpsampleCase(2, 4, 4, (12, 8), (3.0, 2.0), align),
                UpsampleCase(1, 5, 7, (7, 12), None, align), UpsampleCase(2, 1, 6, (1, 18), (1.0, 3.0), align),
                UpsampleCase(1, 1, 1, (3, 2), (3.0, 2.0), align), UpsampleCase(2, 6, 6, (9, 9), (1.5, 1.5), align),
                UpsampleCase(1, 8, 5, (4, 3), None, align),  # smaller: also what PyTorch computes
                UpsampleCase(2, 3, 3, (3, 3), (1.0, 1.0), align)]
    return out


def permute_cases() -> list[PermuteCase]:
    cases = [((1, 1, 1, 1), (0, 1, 2, 3)), ((1, 1, 3, 5), (0, 1, 3, 2)), ((1, 2, 3, 4), (0, 2, 3, 1)),
             ((1, 2, 3, 4), (0, 3, 1, 2)), ((2, 3, 4, 5), (3, 2, 1, 0)), ((2, 3, 4, 5), (1, 0, 3, 2)),
             ((3, 1, 4, 2), (2, 0, 3, 1)), ((1, 4, 2, 9), (0, 2, 1, 3)), ((5, 7, 2, 3), (0, 1, 3, 2)),
             ((2, 2, 2, 33), (2, 0, 1, 3)), ((1, 16, 1, 17), (0, 3, 2, 1))]
    return [PermuteCase(s, p, seed=i) for i, (s, p) in enumerate(cases)]


def cases_for(op: str) -> list:
    """The edge-case list of one op (the registry's op key)."""
    if op == "fc_rcsr":
        return fc_cases(CASE_BITS)
    if op == "fc_dense":
        return fc_cases()
    if op == "fc_bsell":  # the layout has no index width: the dense kernels' shapes, plus slices and blocks cut
        return fc_cases() + bsell_cases()  # at every remainder
    if op == "fc_rsell":  # 8-bit gaps always: the dense kernels' shapes, plus slices, step counts and gaps
        return fc_cases() + rsell_cases()
    if op == "fc_wsell":  # layers of at least one window (16 inputs)
        return wsell_cases()
    if op == "fc_acsr":  # no index width: rows of every length modulo 8
        return acsr_cases()
    if op == "fc_rcsc":  # the column-major kernels: inputs with no, some and only zeros
        return [FcCase(**{**c.__dict__, "x_zeros": (0.0, 0.6, 1.0)[i % 3]}) for i, c in enumerate(fc_cases(CASE_BITS))]
    if op == "conv2d_rcsr":
        return conv_cases(CASE_BITS)
    if op == "conv2d_dense":
        return conv_cases()
    if op == "conv2d_rcsr_maxpool2d":
        return conv_pool_cases()
    if op in ("maxpool2d", "avgpool2d"):
        return pool_cases(avg=op == "avgpool2d")
    if op == "adaptive_avgpool2d":
        return adaptive_cases()
    if op in ("clamp", "sigmoid", "tanh", "softmax", "log_softmax", "add", "sub", "affine", "concat", "mul", "leaky_relu", "gelu", "elu",
              "softplus", "mish"):
        return elementwise_cases(op)
    if op == "pad2d":
        return pad_cases()
    if op in ("upsample_nearest2d", "upsample_bilinear2d"):
        return upsample_cases(bilinear=op == "upsample_bilinear2d")
    if op == "permute":
        return permute_cases()
    raise KeyError(f"no cases for op {op!r}")


def case_params(kernels) -> list[tuple]:
    """(kernel, case, test id) for every kernel and every case of its op: one line to parametrise a test,
    e.g. [pytest.param(k, c, id=i) for k, c, i in case_params(avx2_kernels)]."""
    return [(k, c, f"{k.name}-{c.id}") for k in kernels for c in cases_for(k.op)]


def twin_of(kernel) -> runtime.Kernel:
    """The portable kernel an ISA kernel must agree with (same op)."""
    return runtime.select(kernel.op if not isinstance(kernel, str) else _op_of(kernel), ())


# --------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Keep:
    """cdata objects that must outlive the call (cffi frees a from_buffer's hold when it is collected)."""
    items: list = field(default_factory=list)

    def buf(self, ffi, ctype: str, a: np.ndarray, writable: bool = False):
        c = ffi.from_buffer(ctype, a, require_writable=writable)
        self.items.append((a, c))
        return c


def rcsr_struct(ffi, keep: _Keep, r: encode.RCSR):
    index = np.frombuffer(r.packed_index(), dtype=np.uint8).copy()
    values = np.ascontiguousarray(r.values, dtype=np.float32)
    row_ptr = np.ascontiguousarray(r.row_ptr, dtype=np.uint32)
    s = ffi.new("prunec_rcsr_f32 *", {
        "rows": r.rows, "cols": r.cols, "index_bits": r.index_bits,
        "values": keep.buf(ffi, "float[]", values), "index": keep.buf(ffi, "uint8_t[]", index),
        "row_ptr": keep.buf(ffi, "uint32_t[]", row_ptr)})
    keep.items.append(s)
    return s


def sliced_struct(ffi, keep: _Keep, sl, kind: str):
    """A sliced layout as C sees it (`kind` "bsell": prunec_bsell_f32, uint8 steps; "rsell": prunec_rsell_f32,
    uint32 steps); each array gets a private copy of exactly its size (a kernel that reads past one is caught by the
    sanitizer build, and by the guard words of the layout tests)."""
    steps = np.uint8 if kind == "bsell" else np.uint32
    s = ffi.new(f"prunec_{kind}_f32 *", {
        "rows": sl.rows, "cols": sl.cols,
        "perm": keep.buf(ffi, "uint16_t[]", np.ascontiguousarray(sl.perm, dtype=np.uint16).copy()),
        "steps": keep.buf(ffi, f"{np.dtype(steps).name}_t[]", np.ascontiguousarray(sl.steps, dtype=steps).copy()),
        "index": keep.buf(ffi, "uint8_t[]", np.ascontiguousarray(sl.index, dtype=np.uint8).copy()),
        "values": keep.buf(ffi, "float[]", np.ascontiguousarray(sl.values, dtype=np.float32).copy())})
    keep.items.append(s)
    return s


def wsell_struct(ffi, keep: _Keep, ws: encode.WSELL):
    """The windowed sliced layout as C sees it; each array a private copy of exactly its size."""
    def u32(a):
        return keep.buf(ffi, "uint32_t[]", np.ascontiguousarray(a, dtype=np.uint32).copy())
    s = ffi.new("prunec_wsell_f32 *", {
        "rows": ws.rows, "cols": ws.cols,
        "perm": keep.buf(ffi, "uint16_t[]", np.ascontiguousarray(ws.perm, dtype=np.uint16).copy()),
        "steps": u32(ws.steps), "start": u32(ws.start), "advance": u32(ws.advance),
        "index": keep.buf(ffi, "uint8_t[]", np.ascontiguousarray(ws.index, dtype=np.uint8).copy()),
        "values": keep.buf(ffi, "float[]", np.ascontiguousarray(ws.values, dtype=np.float32).copy())})
    keep.items.append(s)
    return s


def acsr_struct(ffi, keep: _Keep, a: encode.ACSR):
    """Absolute-indexed CSR as C sees it; each array a private copy of exactly its size."""
    s = ffi.new("prunec_acsr_f32 *", {
        "rows": a.rows, "cols": a.cols,
        "values": keep.buf(ffi, "float[]", np.ascontiguousarray(a.values, dtype=np.float32).copy()),
        "columns": keep.buf(ffi, "uint32_t[]", np.ascontiguousarray(a.columns, dtype=np.uint32).copy()),
        "row_ptr": keep.buf(ffi, "uint32_t[]", np.ascontiguousarray(a.row_ptr, dtype=np.uint32).copy())})
    keep.items.append(s)
    return s


def dense_struct(ffi, keep: _Keep, w: np.ndarray):
    m = np.ascontiguousarray(w.reshape(w.shape[0], -1), dtype=np.float32)
    s = ffi.new("prunec_dense_f32 *", {"rows": m.shape[0], "cols": m.shape[1],
                                        "values": keep.buf(ffi, "float[]", m)})
    keep.items.append(s)
    return s


def _bias(ffi, keep, b):
    return ffi.NULL if b is None else keep.buf(ffi, "float[]", b)


def conv_params(ffi, c: ConvCase):
    oh, ow = c.out_hw()
    return ffi.new("prunec_conv2d_params *", {
        "in_c": c.in_c, "in_h": c.h, "in_w": c.w, "out_c": c.out_c, "out_h": oh, "out_w": ow,
        "kh": c.k[0], "kw": c.k[1], "stride_h": c.stride[0], "stride_w": c.stride[1],
        "pad_h": c.pad[0], "pad_w": c.pad[1], "dil_h": c.dil[0], "dil_w": c.dil[1], "groups": c.groups})


def pool_params(ffi, c: PoolCase):
    oh, ow = c.out_hw()
    return ffi.new("prunec_pool2d_params *", {
        "channels": c.channels, "in_h": c.h, "in_w": c.w, "out_h": oh, "out_w": ow,
        "kh": c.k[0], "kw": c.k[1], "stride_h": c.stride[0], "stride_w": c.stride[1],
        "pad_h": c.pad[0], "pad_w": c.pad[1], "count_include_pad": int(c.count_include_pad)})


PLANE_GUARD = 64  # floats after the plane that a fused conv + pool kernel must leave alone


def _kname(kernel) -> str:
    return kernel if isinstance(kernel, str) else kernel.name


def run(ffi, lib, kernel, case) -> np.ndarray:
    """The kernel's float32 output on `case`, the output buffer NaN-filled before the call."""
    name = _kname(kernel)
    fn = getattr(lib, name)
    keep = _Keep()
    if isinstance(case, FcCase):
        w, b, x = case.data()
        y = np.full(case.rows, np.nan, np.float32)
        if _op_of(kernel) == "fc_bsell":  # the blocked sliced layout
            ws = sliced_struct(ffi, keep, encode.encode_bsell(w), "bsell")
        elif _op_of(kernel) == "fc_rsell":  # the relative-indexed sliced layout
            ws = sliced_struct(ffi, keep, encode.encode_rsell(w), "rsell")
        elif _op_of(kernel) == "fc_wsell":  # the windowed sliced layout
            ws = wsell_struct(ffi, keep, encode.encode_wsell(w))
        elif _op_of(kernel) == "fc_acsr":  # absolute-indexed CSR
            ws = acsr_struct(ffi, keep, encode.encode_acsr(w))
        elif _op_of(kernel) == "fc_rcsc":  # stored column by column: the relative-indexed CSR of W^T
            ws = rcsr_struct(ffi, keep, encode.encode_rcsr(np.ascontiguousarray(w.T), case.bits))
        else:
            ws = rcsr_struct(ffi, keep, encode.encode_rcsr(w, case.bits)) if case.bits else dense_struct(ffi, keep, w)
        lo, hi = ACTS[case.act]
        fn(ws, _bias(ffi, keep, b), keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True), lo, hi)
        return y
    if isinstance(case, ConvCase):
        w, b, x = case.data()
        oh, ow = case.out_hw()
        y = np.full((case.out_c, oh, ow), np.nan, np.float32)
        ws = rcsr_struct(ffi, keep, encode.encode_rcsr(w, case.bits)) if case.bits else dense_struct(ffi, keep, w)
        p = ffi.new("prunec_conv2d_params *", {
            "in_c": case.in_c, "in_h": case.h, "in_w": case.w, "out_c": case.out_c, "out_h": oh, "out_w": ow,
            "kh": case.k[0], "kw": case.k[1], "stride_h": case.stride[0], "stride_w": case.stride[1],
            "pad_h": case.pad[0], "pad_w": case.pad[1], "dil_h": case.dil[0], "dil_w": case.dil[1],
            "groups": case.groups})
        lo, hi = ACTS[case.act]
        fn(p, ws, _bias(ffi, keep, b), keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True), lo, hi)
        return y
    if isinstance(case, ConvPoolCase):
        w, b, x = case.data()
        c = case.conv
        oh, ow = case.out_hw()
        ch, cw = c.out_hw()
        y = np.full((c.out_c, oh, ow), np.nan, np.float32)
        plane = np.full(ch * cw + PLANE_GUARD, np.nan, np.float32)
        plane[ch * cw:] = 7.0
        ws = rcsr_struct(ffi, keep, encode.encode_rcsr(w, c.bits))
        lo, hi = ACTS[c.act]
        fn(conv_params(ffi, c), ws, _bias(ffi, keep, b), pool_params(ffi, case.pool()), keep.buf(ffi, "float[]", x),
           keep.buf(ffi, "float[]", plane, True), keep.buf(ffi, "float[]", y, True), lo, hi)
        if not (plane[ch * cw:] == 7.0).all():
            raise AssertionError(f"{name} on {case!r}: wrote past the {ch * cw}-float plane")
        return y
    if isinstance(case, PoolCase):
        x = case.data()
        oh, ow = case.out_hw()
        y = np.full((case.channels, oh, ow), np.nan, np.float32)
        p = ffi.new("prunec_pool2d_params *", {
            "channels": case.channels, "in_h": case.h, "in_w": case.w, "out_h": oh, "out_w": ow,
            "kh": case.k[0], "kw": case.k[1], "stride_h": case.stride[0], "stride_w": case.stride[1],
            "pad_h": case.pad[0], "pad_w": case.pad[1], "count_include_pad": int(case.count_include_pad)})
        fn(p, keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True))
        return y
    if isinstance(case, AdaptiveCase):
        x = case.data()
        y = np.full((case.channels, *case.out_hw), np.nan, np.float32)
        fn(case.channels, *case.in_hw, *case.out_hw, keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True))
        return y
    if isinstance(case, EltCase):
        op = _op_of(kernel)
        if op in ("add", "sub"):
            a, b = case.data(2)
            y = a if case.inplace else np.full(case.n, np.nan, np.float32)
            ya = keep.buf(ffi, "float[]", a, True)
            yb = ya if case.inplace else keep.buf(ffi, "float[]", y, True)
            fn(case.n, ya, keep.buf(ffi, "float[]", b), yb, *ACTS[case.act])
            return y
        if op == "mul":
            a, b = _mul_operands(case)
            y = a if case.inplace else np.full(case.n, np.nan, np.float32)
            ya = keep.buf(ffi, "float[]", a, True)
            yb = ya if case.inplace else keep.buf(ffi, "float[]", y, True)
            fn(case.shape[0], case.shape[1], case.shape[2], ya, keep.buf(ffi, "float[]", b), yb)
            return y
        if op == "leaky_relu":
            (x,) = case.data(1)
            y = x if case.inplace else np.full(case.n, np.nan, np.float32)
            xb = keep.buf(ffi, "float[]", x, True)
            fn(case.n, LEAKY_SLOPE, xb, xb if case.inplace else keep.buf(ffi, "float[]", y, True))
            return y
        if op == "concat":
            (x,) = case.data(1)
            o, n, st = case.shape
            y = np.full(o * st, CONCAT_SENTINEL, np.float32)
            fn(o, n, st, keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True))
            return y
        (x,) = case.data(1)
        y = x if case.inplace else np.full(case.n, np.nan, np.float32)
        xb = keep.buf(ffi, "float[]", x, True)
        yb = xb if case.inplace else keep.buf(ffi, "float[]", y, True)
        if op == "affine":
            sc, sh = _affine_params(case)
            fn(case.shape[0], case.shape[1], keep.buf(ffi, "float[]", sc), keep.buf(ffi, "float[]", sh), xb, yb,
               *ACTS[case.act])
        elif op == "clamp":
            fn(case.n, xb, yb, *ACTS[case.act])
        elif op in ("softmax", "log_softmax"):
            fn(*case.shape, xb, yb)
        elif op == "gelu":
            fn(case.n, int(case.variant == "tanh"), xb, yb)
        elif op == "elu":
            fn(case.n, *ELU_VARIANTS[case.variant], xb, yb)
        elif op == "softplus":
            fn(case.n, *SOFTPLUS_VARIANTS[case.variant], xb, yb)
        else:
            fn(case.n, xb, yb)
        return y
    if isinstance(case, PadCase):
        x = case.data()
        oh, ow = case.out_hw()
        y = np.full((case.planes, oh, ow), np.nan, np.float32)
        t, _, l, _ = case.pads
        fn(case.planes, case.h, case.w, oh, ow, t, l, case.value, keep.buf(ffi, "float[]", x),
           keep.buf(ffi, "float[]", y, True))
        return y
    if isinstance(case, UpsampleCase):
        x = case.data()
        y = np.full((case.planes, *case.out_hw), np.nan, np.float32)
        xb, yb = keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True)
        if _op_of(kernel) == "upsample_nearest2d":
            fn(case.planes, case.h, case.w, case.out_hw[0] // case.h, case.out_hw[1] // case.w, xb, yb)
        else:
            fn(case.planes, case.h, case.w, *case.out_hw, *case.scales(), int(case.align_corners), xb, yb)
        return y
    if isinstance(case, PermuteCase):
        x = case.data()
        strides = [int(np.prod(case.shape[d + 1:])) for d in range(4)]
        shape = np.array([case.shape[d] for d in case.perm], np.uint32)
        stride = np.array([strides[d] for d in case.perm], np.uint32)
        y = np.full(shape, np.nan, np.float32)
        fn(keep.buf(ffi, "uint32_t[]", shape), keep.buf(ffi, "uint32_t[]", stride), keep.buf(ffi, "float[]", x),
           keep.buf(ffi, "float[]", y, True))
        return y
    raise TypeError(f"unknown case type {type(case).__name__}")


CONCAT_SENTINEL = 7.25  # what a concat case's output holds outside the run it copies
LEAKY_SLOPE = 0.1
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
ELU_VARIANTS = {  # the elu kernel's (scale, input_scale, neg_scale)
    "elu": (1.0, 1.0, 1.0), "elu0.3": (1.0, 1.0, 0.3), "celu2": (1.0, 0.5, 2.0),
    "selu": (SELU_SCALE, 1.0, SELU_ALPHA * SELU_SCALE)}
SOFTPLUS_VARIANTS = {"b1t20": (1.0, 20.0), "b2t5": (2.0, 5.0), "b0.5t1": (0.5, 1.0)}  # (beta, threshold)


def _mul_operands(case) -> tuple[np.ndarray, np.ndarray]:
    c, i, bi = case.shape
    rng = _rng(case.seed)
    return ((rng.standard_normal(c * i) * case.scale).astype(np.float32),
            (rng.standard_normal(c * bi) * case.scale).astype(np.float32))


def _affine_params(case) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel scale (some negative, one 0 when there are several channels) and shift of an affine case."""
    rng = _rng(case.seed + 1000)
    c = case.shape[0]
    sc = (rng.standard_normal(c) * 2).astype(np.float32)
    if c > 1:
        sc[1] = 0.0
    return sc, (rng.standard_normal(c) * case.scale).astype(np.float32)


def _clamp(a: np.ndarray, act: str) -> np.ndarray:
    lo, hi = ACTS[act]
    return np.minimum(np.maximum(a, lo), hi)


def _reduction_tol(mag: np.ndarray, k: int) -> np.ndarray:
    return np.maximum(ATOL, RTOL * mag) * max(1.0, k * U32 / RTOL)


def reference(op: str, case) -> tuple[np.ndarray, np.ndarray]:
    """(want, tol): the float64 reference output of `op` on `case` and the per-element tolerance."""
    import torch
    import torch.nn.functional as F

    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    if isinstance(case, FcCase):
        w, b, x = case.data()
        w64, x64 = w.astype(np.float64), x.astype(np.float64)
        b64 = np.zeros(case.rows) if b is None else b.astype(np.float64)
        want = _clamp(w64 @ x64 + b64, case.act)
        return want, _reduction_tol(np.abs(w64) @ np.abs(x64) + np.abs(b64), case.cols + 1)
    if isinstance(case, ConvPoolCase):
        c = case.conv
        w, b, x = case.data()
        kw = dict(stride=c.stride, padding=c.pad, dilation=c.dil, groups=c.groups)
        b64 = np.zeros(c.out_c) if b is None else b.astype(np.float64)
        conv = _clamp(F.conv2d(t(x)[None], t(w), t(b64), **kw)[0].numpy(), c.act)
        mag = F.conv2d(t(np.abs(x))[None], t(np.abs(w)), t(np.abs(b64)), **kw)[0].numpy()
        tol = _reduction_tol(np.nan_to_num(mag, nan=0.0, posinf=0.0), w[0].size + 1)
        pk = dict(kernel_size=case.k, stride=case.stride, padding=case.pad, ceil_mode=case.ceil_mode)
        # |max(a) - max(b)| <= max |a - b|: a pooled output's tolerance is the largest of its window's
        want = F.max_pool2d(t(conv)[None], **pk)[0].numpy()
        return want, F.max_pool2d(t(tol)[None], **pk)[0].numpy()
    if isinstance(case, ConvCase):
        w, b, x = case.data()
        kw = dict(stride=case.stride, padding=case.pad, dilation=case.dil, groups=case.groups)
        b64 = np.zeros(case.out_c) if b is None else b.astype(np.float64)
        want = F.conv2d(t(x)[None], t(w), t(b64), **kw)[0].numpy()
        mag = F.conv2d(t(np.abs(x))[None], t(np.abs(w)), t(np.abs(b64)), **kw)[0].numpy()
        k = w[0].size + 1
        return _clamp(want, case.act), _reduction_tol(mag, k)
    if isinstance(case, PoolCase):
        x = case.data()
        kw = dict(kernel_size=case.k, stride=case.stride, padding=case.pad, ceil_mode=case.ceil_mode)
        if op == "maxpool2d":
            want = F.max_pool2d(t(x)[None], **kw)[0].numpy()
            return want, np.zeros_like(want)
        kw["count_include_pad"] = case.count_include_pad
        want = F.avg_pool2d(t(x)[None], **kw)[0].numpy()
        mag = F.avg_pool2d(t(np.abs(x))[None], **kw)[0].numpy()
        return want, _reduction_tol(mag, case.k[0] * case.k[1])
    if isinstance(case, AdaptiveCase):
        x = case.data()
        want = F.adaptive_avg_pool2d(t(x)[None], case.out_hw)[0].numpy()
        mag = F.adaptive_avg_pool2d(t(np.abs(x))[None], case.out_hw)[0].numpy()
        k = max(-(-i // o) + 1 for i, o in zip(case.in_hw, case.out_hw)) ** 2
        return want, _reduction_tol(mag, k)
    if isinstance(case, EltCase):
        if op in ("add", "sub"):
            a, b = (v.astype(np.float64) for v in case.data(2))
            return _clamp(a + b if op == "add" else a - b, case.act), _reduction_tol(np.abs(a) + np.abs(b), 2)
        if op == "mul":
            a, b = (v.astype(np.float64) for v in _mul_operands(case))
            c, i, bi = case.shape
            want = (a.reshape(c, i) * b.reshape(c, bi)).reshape(-1)
            return want, np.maximum(1e-7, 1e-6 * np.abs(want))
        (x,) = case.data(1)
        if op == "leaky_relu":
            want = np.where(x > 0, x.astype(np.float64), x.astype(np.float64) * np.float32(LEAKY_SLOPE))
            return want, np.maximum(1e-7, 1e-6 * np.abs(want))
        if op == "concat":
            o, n, st = case.shape
            want = np.full((o, st), CONCAT_SENTINEL)
            want[:, :n] = x.reshape(o, n)
            return want.reshape(-1), np.zeros(o * st)
        if op == "affine":
            sc, sh = (v.astype(np.float64)[:, None] for v in _affine_params(case))
            xs = x.astype(np.float64).reshape(case.shape[0], case.shape[1])
            want = _clamp(xs * sc + sh, case.act).reshape(-1)
            return want, np.maximum(ATOL, RTOL * (np.abs(xs * sc) + np.abs(sh)).reshape(-1))
        if op == "clamp":
            want = _clamp(x.astype(np.float64), case.act)
            return want, np.zeros_like(want)
        if op == "sigmoid":
            want = torch.sigmoid(t(x)).numpy()
        elif op == "tanh":
            want = torch.tanh(t(x)).numpy()
        elif op == "softmax":
            o, n, i = case.shape
            want = F.softmax(t(x).reshape(o, n, i), dim=1).reshape(-1).numpy()
            return want, _reduction_tol(np.abs(want), n)
        elif op == "log_softmax":
            o, n, i = case.shape
            want = F.log_softmax(t(x).reshape(o, n, i), dim=1).reshape(-1).numpy()
            return want, _reduction_tol(np.abs(want) + 1.0, n)
        elif op == "gelu":
            want = F.gelu(t(x), approximate=case.variant).numpy()
        elif op == "elu":  # aten.elu(x, alpha, scale, input_scale), the kernel's float32 coefficients
            s, i, ng = (float(np.float32(v)) for v in ELU_VARIANTS[case.variant])
            want = torch.ops.aten.elu(t(x), ng / s, s, i).numpy()
        elif op == "softplus":
            want = F.softplus(t(x), *SOFTPLUS_VARIANTS[case.variant]).numpy()
        elif op == "mish":
            want = F.mish(t(x)).numpy()
        else:
            raise KeyError(op)
        return want, np.maximum(1e-6, RTOL * np.abs(want))
    if isinstance(case, PadCase):
        t_, b_, l_, r_ = case.pads
        want = F.pad(t(case.data()), (l_, r_, t_, b_), value=case.value).numpy()
        return want, np.zeros_like(want)
    if isinstance(case, UpsampleCase):
        x = t(case.data())[None]
        if op == "upsample_nearest2d":
            want = F.interpolate(x, size=case.out_hw, mode="nearest")[0].numpy()
            return want, np.zeros_like(want)
        kw = dict(scale_factor=case.factor) if case.factor else dict(size=case.out_hw)
        want = F.interpolate(x, mode="bilinear", align_corners=case.align_corners, **kw)[0].numpy()
        return want, np.full(want.shape, max(ATOL, RTOL * float(x.abs().max())))
    if isinstance(case, PermuteCase):
        want = np.transpose(case.data(), case.perm).astype(np.float64)
        return want, np.zeros_like(want)
    raise TypeError(f"unknown case type {type(case).__name__}")


def _op_of(kernel) -> str:
    if not isinstance(kernel, str):
        return kernel.op
    for k in runtime.kernels():
        if k.name == kernel:
            return k.op
    raise KeyError(f"{kernel} is not in runtime_c/kernels.inc")


def assert_close(got: np.ndarray, want: np.ndarray, tol: np.ndarray, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: output shape {got.shape}, expected {want.shape}")
    with np.errstate(invalid="ignore"):  # inf - inf: an infinity is right only where it is the same one
        bad = ~((got == want) | (np.abs(got - want) <= tol))  # NaN (an unwritten output) fails here too
    bad &= ~(np.isnan(want) & np.isnan(got))
    if bad.any():
        flat = np.flatnonzero(bad)
        i = np.unravel_index(flat[0], want.shape)
        raise AssertionError(
            f"{what}: {flat.size} of {want.size} outputs wrong; first at index {tuple(int(v) for v in i)}: "
            f"got {got[i]!r}, want {want[i]!r}, tolerance {tol[i]:.3g}")


def check(ffi, lib, kernel, case) -> None:
    """Run `kernel` (a runtime.Kernel or its name) on `case` and compare with the float64 reference."""
    op = _op_of(kernel)
    got = run(ffi, lib, kernel, case)
    want, tol = reference(op, case)
    assert_close(got, want, tol, f"{_kname(kernel)} on {case!r}")


def encode_rows(rows_entries, bits: int):
    """Relative-indexed CSR by hand, for tests that need exact control of the entries (edge cases the encoder
    never produces). rows_entries[r]: row r's (column, value) list in increasing column order; zero values stay
    entries (row padding, rows of fillers only); fillers (value 0, code 2^b - 1) bridge gaps beyond 2^b. Returns
    (values, packed index bytes, row_ptr)."""
    span = 1 << bits
    vals, codes, rp = [], [], [0]
    for ent in rows_entries:
        prev = -1
        for c, v in ent:
            gap = c - prev
            assert gap >= 1
            while gap > span:
                vals.append(0.0)
                codes.append(span - 1)
                gap -= span
            vals.append(v)
            codes.append(gap - 1)
            prev = c
        rp.append(len(vals))
    return (np.array(vals, np.float32), encode.pack_codes(np.array(codes, np.uint32), bits), np.array(rp, np.uint32))
