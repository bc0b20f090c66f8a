"""Review of the Arm kernels (runtime_c/src/neon, cortexm, mve) against their portable twins, under QEMU.

One small C driver (DRIVER_C below) is built per target with that target's compiler and flags and every runtime
source, and runs a batch of cases in one emulator launch: for each case the Arm kernel and its portable twin on
the same inputs, outputs NaN-filled first and framed by guard words. On qemu-user (AArch64, Armv7-A) every input
array (values, index, row_ptr, bias, x) ends exactly at a PROT_NONE page, so a read past any of them faults; on
the bare-metal boards each is followed by NaN / 0xFF bytes, the index 0..3 bytes and x, values and y 0..3 floats
past a 16-byte boundary. Cases are encoded here (fillers for gaps beyond 2^b, explicit zero-valued entries:
padded rows, rows made only of fillers) and compared in Python: NaN exactly where the portable kernel has NaN,
infinities equal, finite values within the fp32 reassociation tolerance of docs/FORMAT.md.

Defects these tests found (each test names its own):
  * AArch64 NEON fc: a row's last entry taken alone (odd entry count) added 0 * x[col] in a spare lane, so an
    infinite x[col] gave NaN instead of the infinity (portable: the infinity).
  * NEON, Cortex-M and Helium fc/conv: an index_bits other than 4/8/16 was decoded as 4 or 16 bits (Cortex-M and
    Helium fc read 2 bytes per entry past the index array) instead of filling the output with NaN
    (docs/FORMAT.md, conventions shared by all kernels).

Widths: every width 1..16 is valid; the cases draw from all of them, more often the fast three (4, 8, 16) and the
ones size-first builds pick for fc layers (5, 6, 7). tests/test_odd_widths_arm.py has the directed odd-width cases.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import kernel_harness as kh
from prunec import runners, runtime, targets
from prunec.resources import runtime_dir

pytestmark = pytest.mark.cross

RT = runtime_dir()
# target -> the Arm ISAs whose kernels run there
ARM = {
    "aarch64-neon": ("neon",),
    "armv7a-neon": ("neon",),
    "cortex-m4": ("cortexm",),
    "cortex-m7": ("cortexm",),
    "cortex-m55": ("mve", "cortexm"),
}
OPS = {"fc_rcsr": 0, "fc_dense": 1, "conv2d_rcsr": 2, "conv2d_dense": 3}
ISAS = {"neon": 1, "cortexm": 2, "mve": 3}
NONE, RELU, RELU6 = (-math.inf, math.inf), (0.0, math.inf), (0.0, 6.0)
ACTS = (NONE, RELU, RELU6)
# index widths the cases draw from: the fast three, the fc widths of size-first builds, and the rest
BITS = (4, 8, 16, 5, 6, 7, 1, 2, 3, 9, 10, 11, 12, 13, 14, 15)
BITS_P = np.array([4, 4, 3, 3, 3, 3] + [1] * 10, float) / 30.0
DIRECTED_BITS = (1, 3, 4, 5, 6, 7, 8, 12, 16)

# The batch driver: reads cases.bin, writes out.bin (one status word and two outputs per case).
DRIVER_C = r"""/* Batch driver: runs one Arm ISA kernel and its portable twin on every case of cases.bin, writes out.bin. */
#if defined(__linux__)
#define _DEFAULT_SOURCE 1
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prunec_kernels.h"

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#define GUARD_PAGES 1
#else
#define GUARD_PAGES 0
#endif

#define W(name) extern __typeof__(name) name __attribute__((weak));
W(prunec_f32_fc_rcsr__neon) W(prunec_f32_fc_rcsr__cortexm) W(prunec_f32_fc_rcsr__mve)
W(prunec_f32_fc_dense__neon) W(prunec_f32_fc_dense__cortexm) W(prunec_f32_fc_dense__mve)
W(prunec_f32_conv2d_rcsr__neon) W(prunec_f32_conv2d_rcsr__cortexm) W(prunec_f32_conv2d_rcsr__mve)
W(prunec_f32_conv2d_dense__neon) W(prunec_f32_conv2d_dense__cortexm)

typedef void (*fc_rcsr_fn)(const prunec_rcsr_f32 *, const float *, const float *, float *, float, float);
typedef void (*fc_dense_fn)(const prunec_dense_f32 *, const float *, const float *, float *, float, float);
typedef void (*conv_rcsr_fn)(const prunec_conv2d_params *, const prunec_rcsr_f32 *, const float *, const float *,
                             float *, float, float);
typedef void (*conv_dense_fn)(const prunec_conv2d_params *, const prunec_dense_f32 *, const float *, const float *,
                              float *, float, float);

/* op x isa (1 neon, 2 cortexm, 3 mve) */
static void *kernel(uint32_t op, uint32_t isa) {
  void *t[4][4] = {
      {(void *)prunec_f32_fc_rcsr__portable, (void *)prunec_f32_fc_rcsr__neon, (void *)prunec_f32_fc_rcsr__cortexm,
       (void *)prunec_f32_fc_rcsr__mve},
      {(void *)prunec_f32_fc_dense__portable, (void *)prunec_f32_fc_dense__neon, (void *)prunec_f32_fc_dense__cortexm,
       (void *)prunec_f32_fc_dense__mve},
      {(void *)prunec_f32_conv2d_rcsr__portable, (void *)prunec_f32_conv2d_rcsr__neon,
       (void *)prunec_f32_conv2d_rcsr__cortexm, (void *)prunec_f32_conv2d_rcsr__mve},
      {(void *)prunec_f32_conv2d_dense__portable, (void *)prunec_f32_conv2d_dense__neon,
       (void *)prunec_f32_conv2d_dense__cortexm, NULL},
  };
  return op < 4 && isa < 4 ? t[op][isa] : NULL;
}

#define SLACK 64 /* bytes after each input array: NaN floats / 0xFF bytes (bare metal), or a PROT_NONE page */

/* A copy of n bytes. Linux: it ends exactly where readable memory ends (the next page is PROT_NONE), so a read
 * past it faults. Bare metal: `mis` bytes past a 16-byte boundary, followed by SLACK bytes of `fill`. */
static void *bases[8];
static size_t base_len[8];
static int nbases = 0;
static unsigned char *place(const unsigned char *src, size_t n, uint8_t fill, size_t mis) {
  unsigned char *p;
#if GUARD_PAGES
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  const size_t need = (n + pg - 1) / pg * pg + pg;
  unsigned char *base = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  (void)fill;
  (void)mis;
  if (base == MAP_FAILED) {
    printf("mmap failed\n");
    exit(3);
  }
  mprotect(base + need - pg, pg, PROT_NONE);
  p = base + need - pg - n;
  base_len[nbases] = need;
#else
  unsigned char *base = malloc(n + mis + SLACK + 16);
  size_t i;
  if (base == NULL) {
    printf("out of memory\n");
    exit(3);
  }
  p = (unsigned char *)(((uintptr_t)base + 15u) & ~(uintptr_t)15u) + mis;
  for (i = 0; i < SLACK; i++) p[n + i] = fill;
#endif
  memcpy(p, src, n);
  bases[nbases++] = base;
  return p;
}
static void unplace_all(void) {
  int i;
  for (i = 0; i < nbases; i++) {
#if GUARD_PAGES
    munmap(bases[i], base_len[i]);
#else
    free(bases[i]);
#endif
  }
  nbases = 0;
}

#define NGUARD 8
#define GUARD 1234.5f

int main(void) {
  FILE *fi = fopen("cases.bin", "rb");
  FILE *fo = fopen("out.bin", "wb");
  uint32_t ncases, ci;
  if (fi == NULL || fo == NULL || fread(&ncases, 4, 1, fi) != 1) {
    printf("cannot read cases.bin / write out.bin\n");
    return 2;
  }
  for (ci = 0; ci < ncases; ci++) {
    size_t pos = 0, plen;
    unsigned char *in;
    uint32_t h[32];
    uint32_t op, isa, bits, rows, cols, nval, nidx, has_bias, xlen, ylen, nbias, idx_mis, x_mis, y_mis;
    float lo, hi;
    prunec_conv2d_params p;
    unsigned char *values, *index = NULL, *row_ptr = NULL, *bias = NULL, *x;
    float *ybuf[2];
    uint32_t status = 0, k, i;
    if (fread(h, sizeof h, 1, fi) != 1) {
      printf("short header\n");
      return 2;
    }
    op = h[0]; isa = h[1]; bits = h[2]; rows = h[3]; cols = h[4]; nval = h[5]; nidx = h[6]; has_bias = h[7];
    xlen = h[8]; ylen = h[9]; nbias = has_bias ? h[10] : 0; idx_mis = h[11]; x_mis = h[12];
    memcpy(&lo, &h[13], 4);
    memcpy(&hi, &h[14], 4);
    memcpy(&p, &h[15], sizeof p); /* 15 uint32 */
    plen = h[30];
    y_mis = h[31] & 3u; /* y (and, bare metal, values) this many floats past a 16-byte boundary */
    in = malloc(plen ? plen : 1);
    if (in == NULL || fread(in, 1, plen, fi) != plen) {
      printf("short payload / out of memory\n");
      return 3;
    }
    values = place(in + pos, (size_t)nval * 4, 0xFF, 4u * y_mis);
    pos += (size_t)nval * 4;
    if (op == 0 || op == 2) {
      index = place(in + pos, nidx, 0xFF, idx_mis);
      pos += (nidx + 3u) & ~3u;
      row_ptr = place(in + pos, (size_t)(rows + 1) * 4, 0xFF, 0);
      pos += (size_t)(rows + 1) * 4;
    }
    if (has_bias) {
      bias = place(in + pos, (size_t)nbias * 4, 0xFF, 0);
      pos += (size_t)nbias * 4;
    }
    x = place(in + pos, (size_t)xlen * 4, 0xFF, 4u * x_mis);
    pos += (size_t)xlen * 4;
    for (k = 0; k < 2; k++) {
      void *fn = kernel(op, k == 0 ? isa : 0);
      float *y = malloc(((size_t)ylen + 2 * NGUARD + 3) * sizeof(float));
      float *yo = y + NGUARD + y_mis;
      ybuf[k] = yo;
      for (i = 0; i < NGUARD; i++) yo[(ptrdiff_t)i - NGUARD] = yo[ylen + i] = GUARD;
      for (i = 0; i < ylen; i++) {
        uint32_t nanbits = 0x7fc0dead;
        memcpy(&yo[i], &nanbits, 4);
      }
      if (fn == NULL) {
        status |= 1u;
        continue;
      }
      if (op == 0 || op == 2) {
        prunec_rcsr_f32 w;
        w.rows = rows;
        w.cols = cols;
        w.index_bits = bits;
        w.values = (const float *)values;
        w.index = index;
        w.row_ptr = (const uint32_t *)row_ptr;
        if (op == 0) ((fc_rcsr_fn)fn)(&w, (const float *)bias, (const float *)x, yo, lo, hi);
        else ((conv_rcsr_fn)fn)(&p, &w, (const float *)bias, (const float *)x, yo, lo, hi);
      } else {
        prunec_dense_f32 w;
        w.rows = rows;
        w.cols = cols;
        w.values = (const float *)values;
        if (op == 1) ((fc_dense_fn)fn)(&w, (const float *)bias, (const float *)x, yo, lo, hi);
        else ((conv_dense_fn)fn)(&p, &w, (const float *)bias, (const float *)x, yo, lo, hi);
      }
      for (i = 0; i < NGUARD; i++) {
        if (yo[(ptrdiff_t)i - NGUARD] != GUARD || yo[ylen + i] != GUARD) status |= 2u << k;
      }
    }
    fwrite(&status, 4, 1, fo);
    fwrite(ybuf[0], 4, ylen, fo);
    fwrite(ybuf[1], 4, ylen, fo);
    free(ybuf[0] - NGUARD - y_mis);
    free(ybuf[1] - NGUARD - y_mis);
    unplace_all();
    free(in);
  }
  fclose(fo);
  printf("driver: %u cases\n", (unsigned)ncases);
  return 0;
}
"""


def _has_kernel(isa: str, op: str) -> bool:
    return any(k.isa == isa and k.op == op for k in runtime.kernels())


# ---- encoding -----------------------------------------------------------------------------------------------

encode_rows = kh.encode_rows


@dataclass
class Case:
    op: str
    isa: str
    desc: str
    dense: np.ndarray  # the weights as a dense [rows x cols] (conv: [out_c, cin_g, kh, kw]) array, for the tolerance
    values: np.ndarray
    x: np.ndarray
    ylen: int
    rows: int
    cols: int
    bits: int = 0
    index: bytes = b""
    row_ptr: np.ndarray | None = None
    bias: np.ndarray | None = None
    lo: float = -math.inf
    hi: float = math.inf
    conv: tuple = (0,) * 15
    idx_mis: int = 0  # bare metal: index this many bytes past a 16-byte boundary
    x_mis: int = 0  # bare metal: x this many floats past a 16-byte boundary
    y_mis: int = 0  # y (bare metal: values too) this many floats past malloc's alignment

    def pack(self) -> bytes:
        body = np.asarray(self.values, "<f4").tobytes()
        if self.op in ("fc_rcsr", "conv2d_rcsr"):
            body += bytes(self.index) + b"\0" * (-len(self.index) % 4) + np.asarray(self.row_ptr, "<u4").tobytes()
        if self.bias is not None:
            body += np.asarray(self.bias, "<f4").tobytes()
        body += np.asarray(self.x, "<f4").tobytes()
        h = struct.pack("<13I", OPS[self.op], ISAS[self.isa], self.bits, self.rows, self.cols, len(self.values),
                        len(self.index), int(self.bias is not None), len(self.x), self.ylen,
                        0 if self.bias is None else len(self.bias), self.idx_mis, self.x_mis)
        h += struct.pack("<2f", self.lo, self.hi) + struct.pack("<15I", *self.conv)
        return h + struct.pack("<2I", len(body), self.y_mis) + body


def _entries(m: np.ndarray, extra_zero) -> list:
    out = []
    for r in range(m.shape[0]):
        cols = set(np.flatnonzero(m[r]).tolist())
        if extra_zero is not None:
            cols |= set(extra_zero[r])
        out.append([(c, float(m[r, c])) for c in sorted(cols)])
    return out


def fc_case(isa, w, x, bias, bits, act=NONE, desc="", extra_zero=None, dense=False, **kw) -> Case:
    """fc over w [rows x cols] (rcsr with `bits`, or dense); extra_zero[r]: columns stored as zero entries."""
    rows, cols = w.shape
    common = dict(isa=isa, dense=w, x=np.asarray(x, np.float32), bias=bias, ylen=rows, rows=rows, cols=cols,
                  lo=act[0], hi=act[1], **kw)
    if dense:
        return Case("fc_dense", desc=f"dense {desc}", values=w.reshape(-1), **common)
    v, idx, rp = encode_rows(_entries(w, extra_zero), bits)
    return Case("fc_rcsr", desc=desc, values=v, index=idx, row_ptr=rp, bits=bits, **common)


def _out(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_case(isa, w, x, bias, bits, stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1, act=NONE, desc="",
              dense=False, extra_zero=None, **kw) -> Case:
    out_c, cin_g, kh, kw_ = w.shape
    in_c, ih, iw = x.shape
    oh, ow = _out(ih, kh, stride[0], pad[0], dil[0]), _out(iw, kw_, stride[1], pad[1], dil[1])
    assert oh >= 1 and ow >= 1 and in_c == cin_g * groups and out_c % groups == 0
    geo = (in_c, ih, iw, out_c, oh, ow, kh, kw_, stride[0], stride[1], pad[0], pad[1], dil[0], dil[1], groups)
    m = w.reshape(out_c, -1)
    common = dict(isa=isa, dense=w, x=np.asarray(x, np.float32).reshape(-1), bias=bias, ylen=out_c * oh * ow,
                  rows=out_c, cols=m.shape[1], lo=act[0], hi=act[1], conv=geo, **kw)
    desc = (f"{desc} conv in={in_c}x{ih}x{iw} out_c={out_c} k={kh}x{kw_} s={stride} p={pad} d={dil} g={groups} "
            f"act={act} bias={bias is not None}")
    if dense:
        return Case("conv2d_dense", desc=f"dense {desc}", values=m.reshape(-1), **common)
    v, idx, rp = encode_rows(_entries(m, extra_zero), bits)
    return Case("conv2d_rcsr", desc=desc, values=v, index=idx, row_ptr=rp, bits=bits, **common)


# ---- building and running -----------------------------------------------------------------------------------

_BUILT: dict = {}


def _target(name: str) -> targets.Target:
    t = targets.get(name)
    missing = t.missing_tools()
    if missing:
        pytest.skip(f"target {name}: " + ", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in missing))
    return t


def _build(name: str, root: Path, cflags: tuple = ()) -> tuple[targets.Target, Path]:
    key = (name, cflags)
    if key not in _BUILT:
        t = _target(name)
        d = root / f"{name}{'_'.join(f.strip('-') for f in cflags)}"
        d.mkdir(parents=True, exist_ok=True)
        drv = d / "review_driver.c"
        drv.write_text(DRIVER_C)
        prog = d / ("driver.elf" if t.runner == "qemu-system" else "driver")
        srcs = [drv, *[RT / s for s in runtime.sources_for(runtime.kernels())]]
        runners.compile_program(t, srcs, prog, include_dirs=[RT / "include"], extra_cflags=["-w", *cflags])
        _BUILT[key] = (t, prog)
    return _BUILT[key]


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("arm_review")


def run_cases(name: str, cases: list[Case], root: Path, cflags: tuple = ()) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(status, Arm output, portable output) per case; status bit 0: kernel not linked, bits 1/2: the Arm /
    portable kernel wrote outside its output."""
    t, prog = _build(name, root, cflags)
    work = prog.parent
    (work / "cases.bin").write_bytes(struct.pack("<I", len(cases)) + b"".join(c.pack() for c in cases))
    out_path = work / "out.bin"
    if out_path.exists():
        out_path.unlink()
    r = runners.run_program(t, prog, [], cwd=work, timeout=300)
    out = out_path.read_bytes() if out_path.exists() else b""
    assert r.returncode == 0, f"{name}: driver exit status {r.returncode} (a fault?):\n{(r.stdout + r.stderr)[-2000:]}"
    res, pos = [], 0
    for c in cases:
        st = struct.unpack_from("<I", out, pos)[0]
        a = np.frombuffer(out, "<f4", c.ylen, pos + 4).copy()
        b = np.frombuffer(out, "<f4", c.ylen, pos + 4 + 4 * c.ylen).copy()
        pos += 4 + 8 * c.ylen
        res.append((st, a, b))
    assert pos == len(out)
    return res


def _finite_abs(a) -> np.ndarray:
    return np.abs(np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=0.0, neginf=0.0))


def _magnitude(c: Case) -> np.ndarray:
    """sum |w x| + |b| per output (special values counted as 0): the scale of the rounding error."""
    b = 0.0 if c.bias is None else _finite_abs(c.bias)
    if c.op.startswith("fc"):
        return _finite_abs(c.dense) @ _finite_abs(c.x) + b
    import torch
    import torch.nn.functional as F

    in_c, ih, iw, out_c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, g = c.conv
    m = F.conv2d(torch.from_numpy(_finite_abs(c.x).reshape(1, in_c, ih, iw)), torch.from_numpy(_finite_abs(c.dense)),
                 stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=g)[0].numpy()
    return (m + np.reshape(b, (-1, 1, 1))).reshape(-1)


def mismatch(c: Case, st: int, got: np.ndarray, want: np.ndarray) -> str | None:
    """Why the Arm output `got` differs from the portable `want`, or None."""
    if st & 1:
        return "kernel not linked"
    if st & 6:
        return f"{'the Arm' if st & 2 else 'the portable'} kernel wrote outside its output"
    k = c.cols + 1
    tol = np.maximum(1e-6, 1e-4 * _magnitude(c)) * max(1.0, k * 2.0 ** -24 / 1e-5)
    for i in range(c.ylen):
        g, w = float(got[i]), float(want[i])
        if math.isnan(w) or math.isnan(g) or math.isinf(w) or math.isinf(g):
            ok = math.isnan(g) if math.isnan(w) else g == w
        else:
            ok = abs(g - w) <= tol[i]
        if not ok:
            return f"index {i}: got {g!r}, portable {w!r} (tolerance {tol[i]:.3g})"
    return None


def check(name: str, cases: list[Case], root: Path, cflags: tuple = ()) -> None:
    bad = []
    for c, (st, a, b) in zip(cases, run_cases(name, cases, root, cflags)):
        why = mismatch(c, st, a, b)
        if why:
            bad.append(f"{c.isa} {c.op} b={c.bits} {c.desc}: {why}")
    assert not bad, f"{name}{' ' + ' '.join(cflags) if cflags else ''}: {len(bad)} of {len(cases)} cases differ " \
                    f"from the portable kernel:\n" + "\n".join(bad[:25])


def _isas(name: str, op: str) -> list[str]:
    return [isa for isa in ARM[name] if _has_kernel(isa, op)]


# ---- directed tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ARM))
def test_fc_last_single_entry_reading_an_infinity(name, build_root):
    """AArch64 NEON loaded a row's lone last entry with LD1R .2S, whose lane 1 added 0 * x[col]: NaN where x[col]
    is +-inf (portable: +-inf). Rows of 1..9 entries (the last one the infinity), every width, every clamp."""
    rng = np.random.default_rng(11)
    cases = []
    for isa in _isas(name, "fc_rcsr"):
        for n in (1, 2, 3, 5, 7, 8, 9, 15):
            for bits in DIRECTED_BITS:
                w = np.zeros((5, 24), np.float32)
                for r in range(5):
                    cols = sorted(rng.choice(23, n - 1, replace=False).tolist()) + [23]
                    w[r, cols] = rng.uniform(0.5, 1.0, n) * rng.choice([-1.0, 1.0], n)
                x = rng.standard_normal(24).astype(np.float32)
                x[23] = np.inf if n % 2 else -np.inf
                for act in ACTS:
                    cases.append(fc_case(isa, w, x, rng.standard_normal(5).astype(np.float32), bits, act=act,
                                         desc=f"{n} entries per row, x[last] = {x[23]}"))
    check(name, cases, build_root)


@pytest.mark.parametrize("name", list(ARM))
def test_invalid_index_bits_fill_the_output_with_nan(name, build_root):
    """docs/FORMAT.md: an index_bits outside 1..16 fills the output with NaN (the portable kernels do). The Arm
    kernels decoded such a layer as 4- or 16-bit codes (Cortex-M and Helium fc: 2 bytes per entry, past the end
    of the index array) and stored finite garbage."""
    rng = np.random.default_rng(12)
    cases = []
    for bad in (0, 17, 32):
        for isa in _isas(name, "fc_rcsr"):
            c = fc_case(isa, np.eye(6, dtype=np.float32), np.ones(6, np.float32), None, 8, desc=f"index_bits={bad}")
            c.bits = bad
            cases.append(c)
        for isa in _isas(name, "conv2d_rcsr"):
            c = conv_case(isa, rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
                          rng.standard_normal((1, 6, 6)).astype(np.float32), None, 8, desc=f"index_bits={bad}")
            c.bits = bad
            cases.append(c)
    for c, (st, a, b) in zip(cases, run_cases(name, cases, build_root)):
        assert st == 0 and np.isnan(b).all(), f"portable twin: {c.desc}"
        assert np.isnan(a).all(), f"{name} {c.isa} {c.op} with {c.desc}: {a[:6]} instead of NaN"


@pytest.mark.parametrize("name", list(ARM))
def test_edge_shapes(name, build_root):
    """Conv channels whose decode chunks hold only zero entries (first, middle, last, all), more taps than every
    chunk size (NEON 256, Cortex-M 96, Helium 64), large and tiny planes, out_w/out_h 1, fc rows longer than the
    NEON decode window (2049 entries), gaps of exactly 2^b and 2^b + 1, out_features 1."""
    rng = np.random.default_rng(13)
    cases = []
    for isa in _isas(name, "conv2d_rcsr"):
        for bits in (4, 6, 8, 16):
            for zs in (range(0, 300), range(100, 330), range(60, 360), range(0, 360)):
                w = rng.standard_normal((3, 40, 3, 3)).astype(np.float32)
                m = w.reshape(3, -1)
                m[:, list(zs)] = 0
                extra = [list(zs)] * 3
                x = rng.standard_normal((40, 12, 14)).astype(np.float32)
                cases.append(conv_case(isa, w, x, rng.standard_normal(3).astype(np.float32), bits, pad=(1, 1),
                                       act=ACTS[len(cases) % 3], desc=f"zero entries {zs}", extra_zero=extra))
        w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
        x = rng.standard_normal((1, 70, 150)).astype(np.float32)
        cases.append(conv_case(isa, w, x, None, 8, pad=(1, 1), act=RELU, desc="large plane"))
        cases.append(conv_case(isa, w, x, None, 4, act=RELU6, desc="large plane"))
        if _has_kernel(isa, "conv2d_dense"):
            cases.append(conv_case(isa, w, x, None, 0, pad=(1, 1), act=RELU, desc="large plane", dense=True))
        for ih, iw, k in ((1, 1, 1), (3, 3, 3), (1, 9, 1), (9, 1, 1), (5, 30, 5), (30, 5, 5), (2, 17, 2)):
            w = rng.standard_normal((3, 2, k, k)).astype(np.float32)
            x = rng.standard_normal((2, ih, iw)).astype(np.float32)
            for bits in DIRECTED_BITS:
                cases.append(conv_case(isa, w, x, rng.standard_normal(3).astype(np.float32), bits, desc="tiny"))
    for isa in _isas(name, "fc_rcsr"):
        for bits in DIRECTED_BITS:
            span = 1 << bits
            cols = 70000 if bits == 16 else 9000
            w = np.zeros((4, cols), np.float32)
            w[0, rng.random(cols) < 0.5] = 1.0
            w[0] *= rng.standard_normal(cols).astype(np.float32)
            w[2, cols - 1] = 3.0
            w[3, span - 1::span] = 1.5  # gaps of exactly 2^b: no fillers
            x = rng.standard_normal(cols).astype(np.float32)
            cases.append(fc_case(isa, w, x, rng.standard_normal(4).astype(np.float32), bits, desc=f"long rows {cols}"))
            w1 = np.zeros((1, cols), np.float32)
            w1[0, span::span + 1] = -0.5  # gaps of 2^b + 1: one filler each
            cases.append(fc_case(isa, w1, x, None, bits, act=RELU, desc="out_features 1, gaps 2^b + 1"))
    check(name, cases, build_root)


# ---- randomised property test -------------------------------------------------------------------------------

SPECIAL = (np.inf, -np.inf, np.nan, -np.nan, -0.0)


def random_fc(rng, isa: str, bits: int, dense: bool = False) -> Case:
    rows = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 33])) if rng.random() < 0.7 else int(rng.integers(1, 70))
    cols = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 255, 256, 257, 300]))
    if rng.random() < 0.1 and not dense:
        cols, rows = int(rng.integers(2000, 5000)), min(rows, 5)
    dens = float(rng.choice([0.0, 0.02, 0.1, 0.3, 0.7, 1.0]))
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[rng.random((rows, cols)) >= dens] = 0
    extra = [[] for _ in range(rows)]
    mode = int(rng.integers(0, 5))
    if mode == 1:  # empty rows
        w[rng.random(rows) < 0.4] = 0
    elif mode == 2 and not dense:  # rows of zero entries only
        for r in range(rows):
            if rng.random() < 0.4:
                w[r] = 0
                extra[r] = rng.choice(cols, int(rng.integers(1, min(cols, 12) + 1)), replace=False).tolist()
    elif mode == 3 and not dense:  # rows padded to a multiple of 8 entries after their last entry
        for r in range(rows):
            nz = np.flatnonzero(w[r])
            last = int(nz[-1]) if nz.size else -1
            pad = -nz.size % 8
            if pad <= cols - 1 - last:
                extra[r] = list(range(last + 1, last + 1 + pad))
    elif mode == 4 and not dense:  # gaps of exactly 2^b and 2^b + 1
        span = 1 << bits
        for r in range(rows):
            if cols > span and rng.random() < 0.7:
                w[r] = 0
                c = span - 1 + int(rng.integers(0, 2))
                while c < cols:
                    w[r, c] = rng.uniform(0.5, 2) * rng.choice([-1, 1])
                    c += span + int(rng.integers(0, 2))
    x = rng.standard_normal(cols).astype(np.float32)
    bias = (rng.standard_normal(rows) * 2).astype(np.float32) if rng.random() < 0.7 else None
    if rng.random() < 0.2:
        for _ in range(int(rng.integers(1, 4))):
            x[rng.integers(cols)] = rng.choice(SPECIAL)
        if bias is not None and rng.random() < 0.5:
            bias[rng.integers(rows)] = rng.choice(SPECIAL)
    act = ACTS[int(rng.integers(3))]
    return fc_case(isa, w, x, bias, bits, act=act, desc=f"fc {rows}x{cols} density {dens} mode {mode} act {act}",
                   extra_zero=None if dense else extra, dense=dense, idx_mis=int(rng.integers(0, 4)),
                   x_mis=int(rng.integers(0, 4)), y_mis=int(rng.integers(0, 4)))


def random_conv(rng, isa: str, bits: int, dense: bool = False) -> Case:
    groups, cin_g, cout_g = int(rng.choice([1, 1, 1, 2, 3])), int(rng.choice([1, 2, 3, 4])), int(rng.choice([1, 2, 3]))
    if rng.random() < 0.15:  # depthwise
        cin_g, cout_g, groups = 1, 1, int(rng.choice([4, 8]))
    kh, kw = int(rng.choice([1, 2, 3, 5])), int(rng.choice([1, 2, 3, 5]))
    if rng.random() < 0.05:
        kh, kw = 9, 9  # 81 taps: no tap table
    sh, sw = int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 1, 1, 2, 3]))
    dh, dw = int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2]))
    ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    ih = int(rng.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 30))
    iw = int(rng.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 40))
    dens = float(rng.choice([0.0, 0.1, 0.3, 0.6, 1.0]))
    w = rng.standard_normal((cout_g * groups, cin_g, kh, kw)).astype(np.float32)
    w[rng.random(w.shape) >= dens] = 0
    m = w.reshape(w.shape[0], -1)
    extra = [[] for _ in range(w.shape[0])]
    if not dense and rng.random() < 0.3:
        for r in range(w.shape[0]):
            if rng.random() < 0.4:
                m[r] = 0
                extra[r] = rng.choice(m.shape[1], int(rng.integers(1, min(m.shape[1], 6) + 1)), replace=False).tolist()
    x = rng.standard_normal((cin_g * groups, ih, iw)).astype(np.float32)
    bias = (rng.standard_normal(w.shape[0]) * 2).astype(np.float32) if rng.random() < 0.7 else None
    if rng.random() < 0.2:
        for _ in range(int(rng.integers(1, 4))):
            x.reshape(-1)[rng.integers(x.size)] = rng.choice(SPECIAL)
    return conv_case(isa, w, x, bias, bits, stride=(sh, sw), pad=(ph, pw), dil=(dh, dw), groups=groups,
                     act=ACTS[int(rng.integers(3))], desc=f"density {dens}", dense=dense,
                     extra_zero=None if dense else extra, idx_mis=int(rng.integers(0, 4)), x_mis=int(rng.integers(0, 4)),
                     y_mis=int(rng.integers(0, 4)))


def random_batch(name: str, seed: int, n_fc: int, n_conv: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for isa in ARM[name]:
        for _ in range(n_fc):
            bits = int(rng.choice(BITS, p=BITS_P))
            if _has_kernel(isa, "fc_rcsr"):
                cases.append(random_fc(rng, isa, bits))
            if _has_kernel(isa, "fc_dense"):
                cases.append(random_fc(rng, isa, bits, dense=True))
        for _ in range(n_conv):
            bits = int(rng.choice(BITS, p=BITS_P))
            if _has_kernel(isa, "conv2d_rcsr"):
                cases.append(random_conv(rng, isa, bits))
            if _has_kernel(isa, "conv2d_dense"):
                cases.append(random_conv(rng, isa, bits, dense=True))
    return cases


@pytest.mark.parametrize("name", list(ARM))
def test_random_shapes_match_portable(name, build_root):
    """Random fc and conv layers (seeded), index widths 1..16: shapes around the vector widths, empty rows, rows of
    zero entries only, padded rows, gaps of 2^b and 2^b + 1, every clamp, special values in x and bias, misaligned index and x
    (bare metal), inputs ending at a guard page (qemu-user)."""
    check(name, random_batch(name, 2024, 120, 40), build_root)


@pytest.mark.parametrize("name", ["aarch64-neon", "armv7a-neon", "cortex-m4", "cortex-m55"])
def test_random_shapes_unoptimised_and_c_paths(name, build_root):
    """The same property at -O0 (Cortex-M and Helium take their C steps instead of the inline assembly there) and,
    NEON, with a 9-entry fc decode window (every row crosses window refills)."""
    flags = ("-DPRUNEC_NEON_FC_WINDOW=9u",) if "neon" in name else ("-O0",)
    check(name, random_batch(name, 7, 60, 20), build_root, flags)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARM))
@pytest.mark.parametrize("seed", range(1, 9))
def test_random_shapes_more_seeds(name, seed, build_root):
    check(name, random_batch(name, seed, 200, 60), build_root)


# ---- clamps other than none / relu / relu6 (mutation audit) ----------------------------------------------------
# torch.clamp(max=c) / clamp_max fuse as (-inf, c), hardtanh as (-1, 1), clamp(min=c) as (c, inf): every case above
# uses only NONE, RELU and RELU6, so a kernel that takes its ReLU fast path for out_min > 0, or picks its clamp
# specialisation from the wrong bound, went unnoticed.
OTHER_CLAMPS = ((-math.inf, 0.25), (-1.0, 1.0), (0.25, math.inf), (0.5, 6.0), (-0.5, math.inf))


@pytest.mark.parametrize("name", list(ARM))
def test_clamps_other_than_relu_match_portable(name, build_root):
    """Every Arm fc and conv kernel with one-sided and two-sided clamps whose bounds are not 0 / +inf / 6: conv
    planes with full 8-column, 2-row interior tiles (Cortex-M's assembly ReLU store) and border pixels."""
    rng = np.random.default_rng(31)
    cases = []
    for act in OTHER_CLAMPS:
        for isa in _isas(name, "conv2d_rcsr"):
            for bits in (4, 8, 16, 6):
                w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
                w[rng.random(w.shape) >= 0.5] = 0
                x = rng.standard_normal((3, 14, 20)).astype(np.float32)
                cases.append(conv_case(isa, w, x, rng.standard_normal(4).astype(np.float32) * 0.3, bits, pad=(1, 1),
                                       act=act, desc="clamp"))
            if _has_kernel(isa, "conv2d_dense"):
                cases.append(conv_case(isa, w, x, None, 0, pad=(1, 1), act=act, desc="clamp", dense=True))
        for isa in _isas(name, "fc_rcsr"):
            for bits in (4, 8, 16, 5):
                w = rng.standard_normal((17, 40)).astype(np.float32)
                w[rng.random(w.shape) >= 0.4] = 0
                x = rng.standard_normal(40).astype(np.float32)
                cases.append(fc_case(isa, w, x, rng.standard_normal(17).astype(np.float32) * 0.3, bits, act=act,
                                     desc="clamp"))
            if _has_kernel(isa, "fc_dense"):
                cases.append(fc_case(isa, w, x, None, 0, act=act, desc="clamp", dense=True))
    check(name, cases, build_root)


@pytest.mark.parametrize("name", list(ARM))
def test_padded_and_strided_1x1_convs_on_narrow_planes(name, build_root):
    """1x1 convolutions that are not plain pointwise ones (padding, stride) on planes narrower than 8 columns, where
    the Arm kernels run an unpadded stride-1 1x1 plane as one row (prunec_conv_plane_as_row): the random cases never
    pad a 1x1 kernel (pad < k) and the edge cases have no padded 1x1 either."""
    rng = np.random.default_rng(41)
    cases = []
    for isa in _isas(name, "conv2d_rcsr"):
        for (ih, iw), pad, stride in [((3, 3), (1, 1), (1, 1)), ((5, 6), (0, 1), (1, 1)), ((4, 5), (2, 0), (1, 1)),
                                      ((6, 6), (1, 1), (2, 2)), ((7, 5), (0, 0), (1, 2))]:
            w = rng.standard_normal((5, 4, 1, 1)).astype(np.float32)
            w[rng.random(w.shape) >= 0.6] = 0
            x = rng.standard_normal((4, ih, iw)).astype(np.float32)
            b = rng.standard_normal(5).astype(np.float32)
            for bits in (4, 8):
                cases.append(conv_case(isa, w, x, b, bits, pad=pad, stride=stride, act=ACTS[len(cases) % 3],
                                       desc="1x1"))
            if _has_kernel(isa, "conv2d_dense"):
                cases.append(conv_case(isa, w, x, b, 0, pad=pad, stride=stride, desc="1x1", dense=True))
    check(name, cases, build_root)
