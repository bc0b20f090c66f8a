"""Review of index widths 1..16 (relative-indexed CSR): encoder edge cases, the CLI's width lists, prunec_config.h,
and the Cortex-M kernels' odd-width C steps on the host under AddressSanitizer / UBSan.

The Cortex-M fc reads the codes of b = 5, 6, 7 as 32-bit words at fixed offsets from each group of 8 entries, with
a rule for the one byte past a group it may touch (docs in runtime_c/src/cortexm/f32-rcsr-cortexm.c); on the
bare-metal boards nothing catches a read past the index array. Its C steps (PRUNEC_CORTEXM_NO_ASM) read the same
words in the same order as the inline assembly, so they are compiled here for the host (the file's Cortex-M guard
forced on) with -fsanitize=address,undefined, every input array malloc'ed at its exact size: a read of the asm's
words past the stream's last byte is reported by ASan.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from prunec import encode
from prunec.errors import PrunecError
from prunec.resources import runtime_dir

RT = runtime_dir()

# ---------------------------------------------------------------------------------------------------------------
# encoder


@pytest.mark.parametrize("bits", list(range(1, 17)))
def test_gaps_of_exactly_2b_and_2b_plus_1_round_trip(bits):
    span = 1 << bits
    cols = 3 * span + 5
    w = np.zeros((4, cols), np.float32)
    w[0, span - 1] = 1.0  # first entry at gap 2^b: code 2^b - 1, no filler
    w[1, span] = 2.0  # gap 2^b + 1: one filler, then code 0
    w[2, [0, span, 2 * span + 1]] = [3.0, 4.0, 5.0]  # gaps 1, 2^b, 2^b + 1
    w[3, cols - 1] = 6.0
    r = encode.encode_rcsr(w, bits)
    assert r.codes[r.row_ptr[0]] == span - 1 and r.row_ptr[1] - r.row_ptr[0] == 1
    assert r.row_ptr[2] - r.row_ptr[1] == 2 and r.codes[r.row_ptr[1] + 1] == 0
    packed = r.packed_index()
    assert len(packed) == (r.entries * bits + 7) // 8
    assert np.array_equal(encode.unpack_codes(packed, bits, r.entries), r.codes)
    assert np.array_equal(encode.decode_rcsr(r), w)


@pytest.mark.parametrize("bits", list(range(1, 17)))
def test_pack_matches_a_reference_bit_stream(bits):
    rng = np.random.default_rng(bits)
    for n in (0, 1, 7, 8, 9, 15, 17, 63):
        codes = rng.integers(0, 1 << bits, n).astype(np.uint16)
        acc = 0
        for i, c in enumerate(codes.tolist()):
            acc |= c << (bits * i)
        ref = acc.to_bytes((n * bits + 7) // 8, "little")
        assert encode.pack_codes(codes, bits) == ref
        assert np.array_equal(encode.unpack_codes(ref, bits, n), codes)


@pytest.mark.parametrize("spec", ["0", "17", "4-", "16-4", "", " ", "-4", "4--8", "1-17", "a", "4.5", "0-4"])
def test_bad_index_bit_lists_are_refused(spec):
    with pytest.raises(PrunecError):
        encode.check_index_bits([s.strip() for s in spec.split(",")], "--index-bits")


@pytest.mark.parametrize("spec,want", [(" 6 ", (6,)), ("1-16", tuple(range(1, 17))), ("3,5", (3, 5)),
                                       ("16-16", (16,)), ("4 - 6,8", (4, 5, 6, 8))])
def test_good_index_bit_lists(spec, want):
    assert encode.check_index_bits([s.strip() for s in spec.split(",")], "--index-bits") == want


# ---------------------------------------------------------------------------------------------------------------
# the Cortex-M C steps under the sanitizers

DRIVER = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "prunec_kernels.h"

void prunec_f32_fc_rcsr__cortexm(const prunec_rcsr_f32 *w, const float *bias, const float *x, float *y,
                                 float out_min, float out_max);
void prunec_f32_conv2d_rcsr__cortexm(const prunec_conv2d_params *p, const prunec_rcsr_f32 *w, const float *bias,
                                     const float *x, float *y, float out_min, float out_max);

static void *rd(FILE *f, size_t n) { /* exactly n bytes on the heap (ASan: a read past them is reported) */
  void *p = malloc(n ? n : 1);
  if (n && fread(p, 1, n, f) != n) { fprintf(stderr, "short read\n"); exit(3); }
  return p;
}

int main(int argc, char **argv) {
  FILE *f = fopen(argv[1], "rb"), *o = fopen(argv[2], "wb");
  uint32_t ncase, c;
  if (!f || !o || fread(&ncase, 4, 1, f) != 1) return 2;
  for (c = 0; c < ncase; c++) {
    uint32_t h[22];
    prunec_rcsr_f32 w;
    prunec_conv2d_params p;
    float *x, *bias, *y0, *y1;
    size_t nx, ny, i;
    if (fread(h, 4, 22, f) != 22) return 2;
    /* h: op, rows, cols, bits, entries, idx_len, has_bias, nx, ny, then conv: in_c in_h in_w out_c out_h out_w
     * kh kw stride pad dil groups */
    w.rows = h[1]; w.cols = h[2]; w.index_bits = h[3];
    w.values = rd(f, (size_t)h[4] * 4);
    w.index = rd(f, h[5]);
    w.row_ptr = rd(f, ((size_t)h[1] + 1) * 4);
    nx = h[7]; ny = h[8];
    x = rd(f, nx * 4);
    bias = h[6] ? rd(f, (size_t)h[1] * 4) : NULL;
    y0 = malloc(ny * 4 + 4); y1 = malloc(ny * 4 + 4);
    for (i = 0; i < ny; i++) y0[i] = y1[i] = NAN;
    if (h[0] == 0) {
      prunec_f32_fc_rcsr__cortexm(&w, bias, x, y0, -INFINITY, INFINITY);
      prunec_f32_fc_rcsr__portable(&w, bias, x, y1, -INFINITY, INFINITY);
    } else {
      p.in_c = h[9]; p.in_h = h[10]; p.in_w = h[11]; p.out_c = h[12]; p.out_h = h[13]; p.out_w = h[14];
      p.kh = h[15]; p.kw = h[16]; p.stride_h = p.stride_w = h[17]; p.pad_h = p.pad_w = h[18];
      p.dil_h = p.dil_w = h[19]; p.groups = h[20];
      prunec_f32_conv2d_rcsr__cortexm(&p, &w, bias, x, y0, -INFINITY, INFINITY);
      prunec_f32_conv2d_rcsr__portable(&p, &w, bias, x, y1, -INFINITY, INFINITY);
    }
    fwrite(y0, 4, ny, o);
    fwrite(y1, 4, ny, o);
    free((void *)w.values); free((void *)w.index); free((void *)w.row_ptr); free(x); free(bias); free(y0); free(y1);
  }
  fclose(o);
  return 0;
}
"""

WRAP = r"""
#include "prunec_isa.h"
#undef PRUNEC_HAVE_CORTEXM_FPU
#define PRUNEC_HAVE_CORTEXM_FPU 1
#include "%s"
"""


def _cc():
    cc = shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    return cc


def _build_cortexm_host(tmp: Path, opt: str) -> Path:
    cc = _cc()
    (tmp / "driver.c").write_text(DRIVER)
    (tmp / "wrap_cortexm.c").write_text(WRAP % (RT / "src" / "cortexm" / "f32-rcsr-cortexm.c"))
    srcs = [tmp / "driver.c", tmp / "wrap_cortexm.c", RT / "src/portable/f32-fc-rcsr-portable.c",
            RT / "src/portable/f32-conv2d-rcsr-portable.c"]
    exe = tmp / "drv"
    res = subprocess.run([cc, "-std=gnu99", opt, "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                          "-fno-omit-frame-pointer", "-DPRUNEC_CORTEXM_NO_ASM=1", "-I", str(RT / "include"),
                          *map(str, srcs), "-lm", "-o", str(exe)], capture_output=True, text=True)
    if res.returncode != 0 and "asan" in res.stderr.lower():
        pytest.skip("sanitizer runtime not installed")
    assert res.returncode == 0, res.stderr[-3000:]
    return exe


def _fc_case(w: np.ndarray, bits: int, x, bias) -> tuple[bytes, int]:
    r = encode.encode_rcsr(w, bits)
    idx = r.packed_index()
    hdr = [0, r.rows, r.cols, bits, r.entries, len(idx), int(bias is not None), r.cols, r.rows] + [0] * 13
    blob = struct.pack("<22I", *hdr) + r.values.astype("<f4").tobytes() + idx + r.row_ptr.astype("<u4").tobytes()
    blob += np.asarray(x, "<f4").tobytes() + (b"" if bias is None else np.asarray(bias, "<f4").tobytes())
    return blob, r.rows


def _conv_case(wt: np.ndarray, bits: int, x: np.ndarray, bias, stride=1, pad=0) -> tuple[bytes, int]:
    oc, ic, kh, kw = wt.shape
    r = encode.encode_rcsr(wt.reshape(oc, -1), bits)
    idx = r.packed_index()
    _, ih, iw = x.shape
    oh, ow = (ih + 2 * pad - kh) // stride + 1, (iw + 2 * pad - kw) // stride + 1
    hdr = [1, r.rows, r.cols, bits, r.entries, len(idx), int(bias is not None), x.size, oc * oh * ow,
           ic, ih, iw, oc, oh, ow, kh, kw, stride, pad, 1, 1, 0]
    blob = struct.pack("<22I", *hdr) + r.values.astype("<f4").tobytes() + idx + r.row_ptr.astype("<u4").tobytes()
    blob += x.astype("<f4").tobytes() + (b"" if bias is None else np.asarray(bias, "<f4").tobytes())
    return blob, oc * oh * ow


def _run(exe: Path, tmp: Path, cases: list) -> None:
    (tmp / "cases.bin").write_bytes(struct.pack("<I", len(cases)) + b"".join(b for b, _ in cases))
    res = subprocess.run([str(exe), str(tmp / "cases.bin"), str(tmp / "out.bin")], capture_output=True, text=True,
                         timeout=300, env={"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "halt_on_error=1"})
    assert res.returncode == 0 and "runtime error" not in res.stderr, res.stderr[-4000:]
    out = np.frombuffer((tmp / "out.bin").read_bytes(), "<f4")
    at = 0
    for i, (_, ny) in enumerate(cases):
        a, b = out[at:at + ny], out[at + ny:at + 2 * ny]
        at += 2 * ny
        assert not np.isnan(b).any()
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"case {i}")


def _rows_case(rng, lengths, cols, bits):
    w = np.zeros((len(lengths), cols), np.float32)
    for r, n in enumerate(lengths):
        c = np.sort(rng.choice(cols, n, replace=False))
        w[r, c] = rng.standard_normal(n).astype(np.float32) + 0.1
    return w


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_cortexm_fc_odd_widths_read_nothing_past_the_index_stream(tmp_path, opt):
    """b = 5, 6, 7 (grouped word reads) and the other widths, every row length 0 .. 17 and longer rows, layers
    whose last row ends at bit 0 of a byte (the case the one-byte rule sends to the bytewise loop) and ones that do
    not, on exactly sized heap arrays under ASan."""
    exe = _build_cortexm_host(tmp_path, opt)
    rng = np.random.default_rng(5)
    cases = []
    for bits in (1, 2, 3, 5, 6, 7, 9, 12, 15):
        for t in range(4):
            lengths = rng.permutation(np.r_[np.arange(18), [31, 40]]).tolist()
            w = _rows_case(rng, lengths, 60, bits)
            cases.append(_fc_case(w, bits, rng.standard_normal(60), rng.standard_normal(len(lengths))))
        for first in range(1, 17):  # layers of a few entries: first groups before entry 0, last at the stream end
            for last in range(0, 17):
                w = _rows_case(rng, [first, 0, last], 40, bits)
                cases.append(_fc_case(w, bits, rng.standard_normal(40), None))
        # gaps of 2^b - 1, 2^b, 2^b + 1 (fillers) in long rows
        span = 1 << bits
        cols = min(4000, 5 * span + 9)
        w = np.zeros((3, cols), np.float32)
        for r in range(3):
            c, k = r, 0
            while c < cols:
                w[r, c] = 1.0 + c % 7
                c += [span - 1, span, span + 1][(k + r) % 3]
                k += 1
        cases.append(_fc_case(w, bits, rng.standard_normal(cols), None))
    _run(exe, tmp_path, cases)


def test_cortexm_conv_odd_widths_under_sanitizers(tmp_path):
    exe = _build_cortexm_host(tmp_path, "-O2")
    rng = np.random.default_rng(6)
    cases = []
    for bits in (1, 3, 5, 6, 7, 9, 12, 15, 4, 8, 16):
        for _ in range(3):
            oc, ic, k = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 6))
            wt = rng.standard_normal((oc, ic, k, k)).astype(np.float32)
            wt[rng.random(wt.shape) < 0.7] = 0
            x = rng.standard_normal((ic, 12, 13)).astype(np.float32)
            cases.append(_conv_case(wt, bits, x, rng.standard_normal(oc), pad=int(rng.integers(0, 2))))
    _run(exe, tmp_path, cases)


# ---------------------------------------------------------------------------------------------------------------
# x86 kernels compiled without the other widths (PRUNEC_RCSR_ODD_WIDTHS 0): NaN for them, 4/8/16 computed


def _x86_ok() -> bool:
    from prunec import verify

    return {"avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify.cpu_flags() or set())


@pytest.mark.skipif(not _x86_ok(), reason="needs AVX2/FMA/AVX-512")
@pytest.mark.parametrize("odd", [0, 1])
def test_x86_kernels_with_and_without_odd_widths(tmp_path, odd):
    import kernel_harness as kh
    from prunec import runtime

    ks = [k for k in runtime.kernels() if k.op in ("fc_rcsr", "conv2d_rcsr") and k.isa in ("avx2", "avx512", "avx512x4")
          and "maxpool" not in k.name]
    ffi, lib = kh.build_kernels(sorted({k.source for k in ks}),
                                ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq",
                                 f"-DPRUNEC_RCSR_ODD_WIDTHS={odd}"], tmpdir=tmp_path, kernels=ks)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((9, 70)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    x = rng.standard_normal(70).astype(np.float32)
    wc = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    wc[rng.random(wc.shape) < 0.6] = 0
    xc = rng.standard_normal((3, 8, 9)).astype(np.float32)
    import torch

    yc_ref = torch.nn.functional.conv2d(torch.from_numpy(xc)[None], torch.from_numpy(wc), padding=1)[0].numpy()
    for bits in (1, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16):
        ok = odd or bits in (4, 8, 16)
        for k in ks:
            keep = kh._Keep()
            if k.op == "fc_rcsr":
                ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(w, bits))
                y = np.full(9, np.nan, np.float32)
                getattr(lib, k.name)(ws, ffi.NULL, keep.buf(ffi, "float[]", x), keep.buf(ffi, "float[]", y, True),
                                     -np.inf, np.inf)
                want = w @ x
            else:
                ws = kh.rcsr_struct(ffi, keep, encode.encode_rcsr(wc.reshape(4, -1), bits))
                p = ffi.new("prunec_conv2d_params *", {"in_c": 3, "in_h": 8, "in_w": 9, "out_c": 4, "out_h": 8,
                                                       "out_w": 9, "kh": 3, "kw": 3, "stride_h": 1, "stride_w": 1,
                                                       "pad_h": 1, "pad_w": 1, "dil_h": 1, "dil_w": 1, "groups": 1})
                y = np.full(4 * 8 * 9, np.nan, np.float32)
                getattr(lib, k.name)(p, ws, ffi.NULL, keep.buf(ffi, "float[]", xc), keep.buf(ffi, "float[]", y, True),
                                     -np.inf, np.inf)
                want = yc_ref.ravel()
            if ok:
                np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4, err_msg=f"{k.name} b={bits}")
            else:
                assert np.isnan(y).all(), f"{k.name} b={bits}: decoded a width the build left out"


# ---------------------------------------------------------------------------------------------------------------
# PRUNEC_RCSR_ODD_WIDTHS 0 leaves the other widths' decoders out of the object code (prunec_config.h, docs/BUILD.md)

ODD_CODE = {  # source -> (compiler, flags)
    "src/portable/f32-fc-rcsr-portable.c": ("gcc", []),
    "src/avx2/f32-rcsr-avx2.c": ("gcc", ["-mavx2", "-mfma"]),
    "src/avx512/f32-rcsr-avx512.c": ("gcc", ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]),
    "src/neon/f32-rcsr-neon.c": ("aarch64-linux-gnu-gcc", []),
    "src/cortexm/f32-rcsr-cortexm.c": ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                                             "-mfpu=fpv4-sp-d16"]),
    "src/mve/f32-rcsr-mve.c": ("arm-none-eabi-gcc", ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"]),
}


@pytest.mark.parametrize("src", sorted(ODD_CODE))
def test_builds_without_odd_widths_leave_their_decoders_out(src, tmp_path):
    """Compiled with -fno-inline, the static functions that decode the other widths (named *_any / *_odd /
    *_widen) are in the object with PRUNEC_RCSR_ODD_WIDTHS 1 and absent with 0. (The NEON fc's pre-pass for the
    other widths, and the AVX2 / AVX-512 conv's generic column decoder, stayed in builds configured without them.)"""
    cc, flags = ODD_CODE[src]
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    nm = cc.replace("gcc", "nm") if cc != "gcc" else "nm"
    syms = {}
    for odd in (0, 1):
        obj = tmp_path / f"k{odd}.o"
        r = subprocess.run([cc, *flags, "-O1", "-fno-inline", "-I", str(RT / "include"), f"-DPRUNEC_RCSR_ODD_WIDTHS={odd}",
                            "-c", str(RT / src), "-o", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        out = subprocess.run([nm, str(obj)], capture_output=True, text=True, check=True).stdout
        syms[odd] = {ln.split()[-1] for ln in out.splitlines()
                     if ln.split()[-1].endswith(("_any", "_odd", "_widen", "_bany", "fill_blocks"))}
    assert syms[1], f"{src}: no odd-width decoder found with PRUNEC_RCSR_ODD_WIDTHS 1 (test out of date?)"
    assert not syms[0], f"{src}: PRUNEC_RCSR_ODD_WIDTHS 0 still has {sorted(syms[0])}"


# ---------------------------------------------------------------------------------------------------------------
# Two builds linked into one program (docs/BUILD.md: "Two models linked into one program share the runtime
# kernels' symbols ... linking both libNAME.a works, the linker taking each kernel from the first archive")

TWO_MAIN = r"""
#include <math.h>
#include <stdio.h>
#include "fa.h"
#include "fb.h"
static float in[fb_INPUT_SIZE], out[fb_OUTPUT_SIZE];
static unsigned char arena[fa_ARENA_BYTES > fb_ARENA_BYTES ? fa_ARENA_BYTES : fb_ARENA_BYTES]
    __attribute__((aligned(64)));
int main(void) {
  int i, bad = 0;
  for (i = 0; i < fb_INPUT_SIZE; i++) in[i] = (float)((i * 37) % 11) / 11.0f;
  if (fa_run(in, out, arena) != 0 || fb_run(in, out, arena) != 0) return 2;
  for (i = 0; i < fb_OUTPUT_SIZE; i++) bad += isnan(out[i]);
  printf("%d NaN outputs of model b\n", bad);
  return bad != 0;
}
"""


def test_two_builds_with_different_widths_link_into_one_program(tmp_path):
    """Build a (every layer 4/8/16 bits: PRUNEC_RCSR_ODD_WIDTHS 0) and build b (--index-bits 1-16: 6-bit layers),
    both libNAME.a linked as docs/BUILD.md says, a's first. The linker used to take b's kernels from a's archive,
    compiled without the other widths, and model b's output was all NaN; a runtime configured without them now
    names its rcsr kernels *_w3 (prunec_kernels.h), so each model calls its own."""
    import torch

    from prunec.build import build

    if shutil.which("make") is None:
        pytest.skip("no make")
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 300), torch.nn.ReLU(), torch.nn.Linear(300, 10))
    with torch.no_grad():
        for lin in (m[1], m[3]):
            lin.weight[torch.rand_like(lin.weight) > 0.08] = 0
    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(m.eval(), (torch.zeros(1, 64),)), pt2)
    build(pt2, "host", tmp_path / "fa", "fa")
    rb = build(pt2, "host", tmp_path / "fb", "fb", index_bits=["1-16"])
    assert any(l.get("index_bits") not in (0, 4, 8, 16) for l in rb.manifest["layers"])
    for n in ("fa", "fb"):
        r = subprocess.run(["make", "-s", f"lib{n}.a"], cwd=tmp_path / n, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
    (tmp_path / "two.c").write_text(TWO_MAIN)
    r = subprocess.run([_cc(), "-std=c99", "-O2", "-I", str(tmp_path / "fa"), "-I", str(tmp_path / "fb"),
                        str(tmp_path / "two.c"), str(tmp_path / "fa" / "libfa.a"), str(tmp_path / "fb" / "libfb.a"),
                        "-lm", "-o", str(tmp_path / "two")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([str(tmp_path / "two")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_every_rcsr_kernel_has_its_link_name_for_builds_without_odd_widths(tmp_path):
    """prunec_kernels.h renames every relative-indexed CSR kernel (ops fc_rcsr, fc_rcsc, conv2d_rcsr, conv2d_rcsr_maxpool2d)
    to *_w3 when PRUNEC_RCSR_ODD_WIDTHS is 0; a kernel registered without its line would again be shared by two
    builds of different configurations. And an object compiled with 0 defines only the *_w3 names."""
    import re

    from prunec import runtime

    header = (RT / "include" / "prunec_kernels.h").read_text()
    renamed = set(re.findall(r"^#define (prunec_f32_\w+) \1_w3$", header, flags=re.M))
    rcsr = {k.name for k in runtime.kernels() if k.op in ("fc_rcsr", "fc_rcsc", "conv2d_rcsr", "conv2d_rcsr_maxpool2d")}
    assert rcsr and renamed == rcsr, sorted(rcsr ^ renamed)
    cc = _cc()
    for src, plain in (("src/portable/f32-fc-rcsr-portable.c", "prunec_f32_fc_rcsr__portable"),
                       ("src/portable/f32-fc-rcsc-portable.c", "prunec_f32_fc_rcsc__portable"),
                       ("src/portable/f32-conv2d-rcsr-portable.c", "prunec_f32_conv2d_rcsr__portable")):
        for odd, want in (("0", plain + "_w3"), ("1", plain)):
            obj = tmp_path / f"k{odd}.o"
            r = subprocess.run([cc, "-std=c99", "-O2", f"-DPRUNEC_RCSR_ODD_WIDTHS={odd}", "-I", str(RT / "include"),
                                "-c", str(RT / src), "-o", str(obj)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            syms = subprocess.run(["nm", str(obj)], capture_output=True, text=True).stdout.split()
            assert want in syms and (odd == "1" or plain not in syms), (src, odd, syms)
