"""Review of the x86 kernels (runtime_c/src/avx2, runtime_c/src/avx512) against their portable twins.

Every input array (values, index, row_ptr, bias, x) is placed so that it ends exactly at a PROT_NONE page (a read
past its end faults) or, in a second pass, starts right after one (a read before its start faults); the output
ends at a PROT_NONE page too and is NaN-filled first. Inputs are also shifted by 1..15 bytes (the index) or
1..15 floats (x, y, values) off any alignment. Cases are encoded here with explicit zero-valued entries (rows
padded with fillers, rows made only of fillers) and fillers for gaps beyond 2^b, then compared with the portable
kernel: NaN exactly where the portable kernel has NaN, infinities equal, finite values within the fp32
reassociation tolerance of docs/FORMAT.md, and (where the docs promise it) zeros with the portable kernel's sign.

Kernel calls on guarded memory run in a forked child (in_child), so that a fault fails the test, not the run.

Defects these tests found (each test names its own):
  * avx512x4 conv, register tiles (conv_tiled / tiles8): each tap's ky was kept in a byte, so with kh > 255 the
    border tiles' row test used ky mod 256: rows past the input were read (past the end of x) or valid rows
    masked off (wrong sums with padding). Kernels taller than 255 rows now take the generic loop
    (test_x4_conv_tall_kernels_on_the_tiles).
  * avx512 conv: at -O0 with -Wconversion -Werror, GCC's gather intrinsic (a macro there) failed to compile with
    -Wsign-conversion (test_x86_kernels_compile_strict_unoptimised).
"""
from __future__ import annotations

import ctypes
import math
import mmap
from dataclasses import dataclass, field

import numpy as np
import pytest

import kernel_harness as kh
from prunec import encode, runtime, verify

X86_ISAS = ("avx2", "avx512", "avx512x4")
OPS = ("fc_rcsr", "fc_dense", "conv2d_rcsr", "maxpool2d")
FLAGS = ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]
NONE, RELU, RELU6 = (-math.inf, math.inf), (0.0, math.inf), (0.0, 6.0)
ACTS = (NONE, RELU, RELU6)
PAGE = mmap.PAGESIZE


def _cpu_ok() -> bool:
    return {"avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify.cpu_flags() or set())


pytestmark = pytest.mark.skipif(not _cpu_ok(), reason="this CPU lacks AVX2/FMA/AVX-512 (F, VL, BW, DQ)")

KERNELS = [k for k in runtime.kernels() if k.op in OPS and k.isa in (*X86_ISAS, "portable")]
ISA_KERNELS = [k for k in KERNELS if k.isa in X86_ISAS]


def _build(tmp, opt: str, cc: str | None = None):
    return kh.build_kernels(sorted({k.source for k in KERNELS}), [*FLAGS, opt], cc, tmpdir=tmp, kernels=KERNELS)


@pytest.fixture(scope="module")
def o3(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("x86o3"), "-O3")


@pytest.fixture(scope="module")
def o0(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("x86o0"), "-O0")


# ---- guarded memory -------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mprotect.restype = ctypes.c_int
PROT_NONE = 0


class Guarded:
    """`data` (bytes) in its own mapping: `where="end"`: its last byte is the last one before a PROT_NONE page;
    `"start"`: its first byte is `mis` bytes after a PROT_NONE page; `"mis"`: `mis` bytes past a 64-byte
    boundary, no guard."""

    def __init__(self, data: bytes, where: str = "end", mis: int = 0):
        n = len(data)
        pages = (n + mis + PAGE - 1) // PAGE + 2
        self.mm = mmap.mmap(-1, pages * PAGE)
        self._anchor = ctypes.c_char.from_buffer(self.mm)
        base = ctypes.addressof(self._anchor)
        if where == "end":
            off, guard = (pages - 1) * PAGE - n, (pages - 1) * PAGE
        elif where == "start":
            off, guard = PAGE + mis, 0
        else:
            off, guard = 64 + mis, None
        self.mm[off:off + n] = data
        self.n, self.off = n, off
        self.addr = base + off
        if guard is not None and _libc.mprotect(base + guard, PAGE, PROT_NONE) != 0:
            raise OSError(ctypes.get_errno(), "mprotect")

    def read(self) -> bytes:
        return bytes(self.mm[self.off:self.off + self.n])


@dataclass
class Mem:
    where: str = "end"
    mis: int = 0  # start: bytes after the guard; mis: bytes past 64-byte alignment (x, y, values: times 4)
    keep: list = field(default_factory=list)

    def put(self, ffi, ctype: str, data: bytes, scale: int = 1):
        g = Guarded(data, self.where, self.mis * scale)
        self.keep.append(g)
        return ffi.cast(ctype, g.addr), g


# ---- encoding -------------------------------------------------------------------------------------------------

encode_rows = kh.encode_rows


def entries_of(m: np.ndarray, zero_cols=None) -> list:
    out = []
    for r in range(m.shape[0]):
        cols = set(np.flatnonzero(m[r]).tolist())
        if zero_cols is not None:
            cols |= set(zero_cols[r])
        out.append([(c, float(m[r, c])) for c in sorted(cols)])
    return out


@dataclass
class Layer:
    """An rcsr layer: `pre` leading entries (rows before row 0 of the view) give row_ptr[0] > 0."""
    values: np.ndarray
    index: bytes
    row_ptr: np.ndarray
    bits: int
    rows: int
    cols: int


def make_layer(m: np.ndarray, bits: int, zero_cols=None, pre_rows: int = 0, rng=None) -> Layer:
    """m [rows x cols]; with pre_rows, that many random rows are encoded before m's and the view skips them."""
    rows, cols = m.shape
    ent = entries_of(m, zero_cols)
    if pre_rows:
        rng = rng or np.random.default_rng(0)
        extra = (rng.standard_normal((pre_rows, cols)) * (rng.random((pre_rows, cols)) < 0.3)).astype(np.float32)
        ent = entries_of(extra) + ent
    v, idx, rp = encode_rows(ent, bits)
    return Layer(v, idx, rp[pre_rows:].copy(), bits, rows, cols)


# ---- running --------------------------------------------------------------------------------------------------

def _f32(a) -> bytes:
    return np.ascontiguousarray(a, np.float32).tobytes()


def run_rcsr(ffi, lib, name, op, layer: Layer, x, bias, ylen, lo, hi, mem: Mem, conv=None, bits=None):
    vp, _ = mem.put(ffi, "float *", _f32(layer.values) if layer.values.size else b"", 4)
    ip, _ = mem.put(ffi, "uint8_t *", bytes(layer.index))
    rp, _ = mem.put(ffi, "uint32_t *", np.ascontiguousarray(layer.row_ptr, np.uint32).tobytes())
    xp, _ = mem.put(ffi, "float *", _f32(x), 4)
    bp = ffi.NULL if bias is None else mem.put(ffi, "float *", _f32(bias), 4)[0]
    yp, yg = mem.put(ffi, "float *", _f32(np.full(ylen, np.nan)), 4)
    w = ffi.new("prunec_rcsr_f32 *", {"rows": layer.rows, "cols": layer.cols,
                                        "index_bits": layer.bits if bits is None else bits,
                                        "values": vp, "index": ip, "row_ptr": rp})
    fn = getattr(lib, name)
    if op == "fc_rcsr":
        fn(w, bp, xp, yp, lo, hi)
    else:
        p = ffi.new("prunec_conv2d_params *", dict(zip(
            ("in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "kh", "kw", "stride_h", "stride_w", "pad_h",
             "pad_w", "dil_h", "dil_w", "groups"), conv)))
        fn(p, w, bp, xp, yp, lo, hi)
    return np.frombuffer(yg.read(), np.float32).copy()


def run_dense(ffi, lib, name, m, x, bias, lo, hi, mem: Mem):
    vp, _ = mem.put(ffi, "float *", _f32(m), 4)
    xp, _ = mem.put(ffi, "float *", _f32(x), 4)
    bp = ffi.NULL if bias is None else mem.put(ffi, "float *", _f32(bias), 4)[0]
    yp, yg = mem.put(ffi, "float *", _f32(np.full(m.shape[0], np.nan)), 4)
    w = ffi.new("prunec_dense_f32 *", {"rows": m.shape[0], "cols": m.shape[1], "values": vp})
    getattr(lib, name)(w, bp, xp, yp, lo, hi)
    return np.frombuffer(yg.read(), np.float32).copy()


def run_pool(ffi, lib, name, geo, x, ylen, mem: Mem):
    xp, _ = mem.put(ffi, "float *", _f32(x), 4)
    yp, yg = mem.put(ffi, "float *", _f32(np.full(ylen, np.nan)), 4)
    p = ffi.new("prunec_pool2d_params *", dict(zip(
        ("channels", "in_h", "in_w", "out_h", "out_w", "kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w",
         "count_include_pad"), geo)))
    getattr(lib, name)(p, xp, yp)
    return np.frombuffer(yg.read(), np.float32).copy()


def _fin(a) -> np.ndarray:
    return np.abs(np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=0.0, neginf=0.0))


def compare(got, want, mag, k, what, zero_sign=False):
    """NaN exactly where `want` has NaN, infinities equal, finite values within the FORMAT.md tolerance; with
    zero_sign, zeros of `want` bit-equal."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    tol = np.maximum(kh.ATOL, kh.RTOL * mag) * max(1.0, k * kh.U32 / kh.RTOL)
    nan_w, nan_g = np.isnan(want), np.isnan(got)
    bad = nan_w != nan_g
    inf_w = np.isinf(want) | np.isinf(got)
    bad |= ~nan_w & ~nan_g & inf_w & (got != want)
    fin = ~nan_w & ~nan_g & ~inf_w
    bad |= fin & ~(np.abs(got - want) <= tol)
    if zero_sign:
        z = fin & (want == 0)
        bad |= z & (np.signbit(got) != np.signbit(want))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} outputs differ; first at {i}: got {got[i]!r}, "
                             f"portable {want[i]!r} (tolerance {tol[i]:.3g})")


def _isa_names(op):
    return [k.name for k in ISA_KERNELS if k.op == op]


def check_fc(built, m, x, bias, bits, act=NONE, zero_cols=None, pre_rows=0, mems=None, names=None, what="",
             zero_sign=False):
    ffi, lib = built
    layer = make_layer(m, bits, zero_cols, pre_rows)
    mag = _fin(m) @ _fin(x) + (0.0 if bias is None else _fin(bias))
    want = run_rcsr(ffi, lib, "prunec_f32_fc_rcsr__portable", "fc_rcsr", layer, x, bias, m.shape[0], *act, Mem("mis"))
    for mem in mems or (Mem("end"), Mem("start")):
        for name in names or _isa_names("fc_rcsr"):
            got = run_rcsr(ffi, lib, name, "fc_rcsr", layer, x, bias, m.shape[0], *act, mem)
            compare(got, want, mag, m.shape[1] + 1, f"{name} b={bits} {what} {mem.where}+{mem.mis}", zero_sign)
    return want


def conv_out(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_mag(w, x, bias, stride, pad, dil, groups):
    """conv2d(|x|, |w|) + |bias| (special values as 0), in numpy: no torch in the forked children."""
    w, x = _fin(w), _fin(x)
    out_c, cin_g, kh_, kw_ = w.shape
    in_c, ih, iw = x.shape
    oh, ow = conv_out(ih, kh_, stride[0], pad[0], dil[0]), conv_out(iw, kw_, stride[1], pad[1], dil[1])
    xp = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    out = np.zeros((out_c, oh, ow))
    cout_g = out_c // groups
    for g in range(groups):
        xg = xp[g * cin_g:(g + 1) * cin_g]
        wg = w[g * cout_g:(g + 1) * cout_g]
        for ky in range(kh_):
            for kx in range(kw_):
                y0, x0 = ky * dil[0], kx * dil[1]
                sl = xg[:, y0:y0 + (oh - 1) * stride[0] + 1:stride[0], x0:x0 + (ow - 1) * stride[1] + 1:stride[1]]
                out[g * cout_g:(g + 1) * cout_g] += np.einsum("oc,chw->ohw", wg[:, :, ky, kx], sl)
    if bias is not None:
        out += _fin(bias).reshape(-1, 1, 1)
    return out.reshape(-1)


def check_conv(built, w, x, bias, bits, stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1, act=NONE, zero_cols=None,
               pre_rows=0, mems=None, names=None, what="", zero_sign=False):
    ffi, lib = built
    out_c, cin_g, kh_, kw_ = w.shape
    in_c, ih, iw = x.shape
    oh, ow = conv_out(ih, kh_, stride[0], pad[0], dil[0]), conv_out(iw, kw_, stride[1], pad[1], dil[1])
    geo = (in_c, ih, iw, out_c, oh, ow, kh_, kw_, *stride, *pad, *dil, groups)
    layer = make_layer(w.reshape(out_c, -1), bits, zero_cols, pre_rows)
    mag = conv_mag(w, x, bias, stride, pad, dil, groups)
    ylen = out_c * oh * ow
    want = run_rcsr(ffi, lib, "prunec_f32_conv2d_rcsr__portable", "conv2d_rcsr", layer, x, bias, ylen, *act,
                    Mem("mis"), conv=geo)
    what = f"{what} conv in={x.shape} w={w.shape} s={stride} p={pad} d={dil} g={groups} act={act}"
    for mem in mems or (Mem("end"), Mem("start")):
        for name in names or _isa_names("conv2d_rcsr"):
            got = run_rcsr(ffi, lib, name, "conv2d_rcsr", layer, x, bias, ylen, *act, mem, conv=geo)
            compare(got, want, mag, cin_g * kh_ * kw_ + 1, f"{name} b={bits} {what} {mem.where}+{mem.mis}", zero_sign)
    return want


def pool_out(n, k, s, p, ceil):
    num = n + 2 * p - k
    o = (-(-num // s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


def check_pool(built, x, k, s, p, ceil=False, mems=None, what=""):
    """The x86 max pools against the portable one: NaN where it has NaN, every other value bit-equal except a
    +0.0 / -0.0 tie (docs/TARGETS.md: the avx512x4 pool may return the other zero)."""
    ffi, lib = built
    c, ih, iw = x.shape
    oh, ow = pool_out(ih, k[0], s[0], p[0], ceil), pool_out(iw, k[1], s[1], p[1], ceil)
    geo = (c, ih, iw, oh, ow, *k, *s, *p, 0)
    want = run_pool(ffi, lib, "prunec_f32_maxpool2d__portable", geo, x, c * oh * ow, Mem("mis"))
    for mem in mems or (Mem("end"), Mem("start")):
        for name in _isa_names("maxpool2d"):
            got = run_pool(ffi, lib, name, geo, x, c * oh * ow, mem)
            same = (np.isnan(got) & np.isnan(want)) | (got == want)
            assert same.all(), f"{name} {what} pool {x.shape} k={k} s={s} p={p} ceil={ceil} {mem.where}+{mem.mis}: " \
                               f"first difference at {int(np.flatnonzero(~same)[0])}"
    return want


def in_child(fn) -> None:
    """Run fn in a forked child, so that a read past a guarded array (SIGSEGV) fails this test instead of killing
    the test run."""
    import os
    import signal

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        os.close(r)
        code, msg = 0, b""
        try:
            fn()
        except BaseException as e:  # noqa: BLE001
            code, msg = 1, f"{type(e).__name__}: {e}".encode()[:20000]
        os.write(w, msg)
        os._exit(code)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise AssertionError(f"the kernel call was killed by {signal.Signals(os.WTERMSIG(status)).name}: "
                             "an access outside one of its arrays (each ends at a PROT_NONE page)")
    assert os.WEXITSTATUS(status) == 0, b"".join(chunks).decode(errors="replace")


# ---- fc ---------------------------------------------------------------------------------------------------------

def fc_edge_matrix(bits: int, rng):
    """Rows of every kind: empty, only fillers (zero-valued entries), one lone entry reading +inf / -inf / NaN,
    gaps of 2^b - 1, 2^b, 2^b + 1 (and more) columns, lengths 1..20 (every tail of a group of 4, 8 or 16), the
    last of them alone in its group reading +inf. Returns (m, x, zero_cols)."""
    span = 1 << bits
    cols = 2 * span + 40
    inf, ninf, nan = cols - 4, cols - 3, cols - 2
    x = rng.standard_normal(cols).astype(np.float32)
    x[[inf, ninf, nan]] = [np.inf, -np.inf, np.nan]
    rows, zero = [{}, {}], [[], [0, 17, cols - 1]]  # empty; only zero-valued entries (fillers before cols - 1)
    for c in (inf, ninf, nan, cols - 1, 0):  # one lone entry
        rows.append({c: 1.5}), zero.append([])
    for g in (span - 1, span, span + 1, 2 * span, 2 * span + 1):
        rows.append({6: 0.5, 6 + g: 1.25}), zero.append([])  # gap g between two entries
        rows.append({g - 1: -0.75}), zero.append([])  # gap g from the row start
    for n in range(1, 21):
        cs = np.sort(rng.choice(np.arange(0, cols - 5), n, replace=False)).tolist()
        rows.append(dict(zip(cs, rng.standard_normal(n).tolist()))), zero.append([])
        rows.append({**dict(zip(cs[:-1], rng.standard_normal(n).tolist())), inf: 0.5}), zero.append([])
        rows.append(dict(zip(cs, rng.standard_normal(n).tolist()))), zero.append([cols - 1])  # padded row
    m = np.zeros((len(rows), cols), np.float32)
    for r, d in enumerate(rows):
        for c, v in d.items():
            m[r, c] = v
    return m, x, zero


# every width the format allows has its own path somewhere (avx512x4 fc: 8-bit pairs, 4-bit and b <= 7 widened
# to bytes, 9..16 decode pass); 1..3, 5..7, 9, 12, 15 are read by the generic bit-stream decoders
ODD_BITS = (1, 2, 3, 5, 6, 7, 9, 12, 15)
ALL_BITS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_fc_edge_rows_guarded(o3, bits):
    """Every x86 fc kernel (avx2, avx512, avx512x4: 8-bit pairs, 4-bit widened, 4/16-bit decode pass) on rows of
    every kind, with a view whose row_ptr[0] > 0, every clamp, inputs ending at / starting after a PROT_NONE page."""
    def body():
        rng = np.random.default_rng(bits)
        m, x, zero = fc_edge_matrix(bits, rng)
        for i, act in enumerate(ACTS):
            bias = None if i == 0 else rng.standard_normal(m.shape[0]).astype(np.float32)
            check_fc(o3, m, x, bias, bits, act, zero_cols=zero, pre_rows=i, what=f"edge rows act={act}")
    in_child(body)


def _fc_big_cases():
    # (rows, cols, density, bits): rows longer than the chunks (avx2/avx512 256, avx512x4 1024 entries); mean row
    # >= YLONG_ROW (192: the 16-entry pass); x wider than 12288 floats (four-row pass, every rows % 4); 4-bit
    # layers beyond B4_WIDEN_MAX (16384 entries: widened block by block); more than 262144 entries (prefetching
    # copies). On an Intel CPU these run the gather path; tests/test_x86_paths_by_coverage.py runs such layers on
    # both paths
    return [(3, 3000, 0.9, 8), (5, 2100, 0.5, 4), (5, 2100, 0.5, 16), (7, 700, 0.4, 8), (2, 400, 0.99, 8),
            (4, 5000, 0.3, 8), (5, 12289, 0.03, 8), (6, 13000, 0.02, 8), (7, 20000, 0.01, 8), (9, 14000, 0.05, 4),
            (11, 12500, 0.04, 16), (40, 1000, 0.5, 4), (100, 12000, 0.25, 8), (28, 13000, 0.75, 8),
            # other widths: b <= 7 widened to bytes per block of <= 16384 entries (several blocks, rows
            # longer than a block: the decode pass; x wider than 12288: four-row pass on the blocks), 9..15 the
            # decode pass
            (3, 3000, 0.9, 7), (5, 2100, 0.5, 6), (5, 2100, 0.5, 12), (9, 14000, 0.05, 5), (11, 12500, 0.04, 9),
            (40, 1000, 0.5, 3), (2, 40000, 0.6, 6), (100, 12000, 0.25, 5), (28, 13000, 0.75, 6), (7, 20000, 0.01, 15),
            (33, 1100, 0.9, 1), (50, 700, 0.6, 2)]


def test_fc_long_rows_and_shape_paths_guarded(o3):
    def body():
        rng = np.random.default_rng(7)
        for rows, cols, d, bits in _fc_big_cases():
            m = (rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < d)).astype(np.float32)
            for r in range(rows):
                m[r, : (r * 37) % 200] = 0  # unequal row lengths
            if rows > 4:
                m[3] = 0
            x = rng.standard_normal(cols).astype(np.float32)
            b = rng.standard_normal(rows).astype(np.float32)
            if rows * cols * d < 100000:
                check_fc(o3, m, x, b, bits, RELU6 if rows % 2 else NONE, pre_rows=1, what=f"{rows}x{cols}")
            else:  # large: the vectorised encoder, one guard
                r = encode.encode_rcsr(m, bits)
                layer = Layer(r.values.astype(np.float32), r.packed_index(), r.row_ptr.astype(np.uint32), bits, rows,
                              cols)
                ffi, lib = o3
                want = run_rcsr(ffi, lib, "prunec_f32_fc_rcsr__portable", "fc_rcsr", layer, x, b, rows, *NONE,
                                Mem("mis"))
                for name in _isa_names("fc_rcsr"):
                    got = run_rcsr(ffi, lib, name, "fc_rcsr", layer, x, b, rows, *NONE, Mem("end"))
                    compare(got, want, _fin(m) @ _fin(x) + _fin(b), cols + 1, f"{name} {rows}x{cols} b={bits}")
    in_child(body)


def test_fc_misaligned_inputs(o3):
    """values, x, y and bias 1..15 floats and the index 1..15 bytes past a 64-byte boundary."""
    rng = np.random.default_rng(11)
    for bits in ALL_BITS:
        m = (rng.standard_normal((13, 77)) * (rng.random((13, 77)) < 0.4)).astype(np.float32)
        x = rng.standard_normal(77).astype(np.float32)
        check_fc(o3, m, x, rng.standard_normal(13).astype(np.float32), bits, pre_rows=1,
                 mems=[Mem("mis", k) for k in range(16)], what="misaligned")


def test_fc_dense_avx2_guarded(o3):
    def body():
        ffi, lib = o3
        rng = np.random.default_rng(12)
        for rows in (1, 3, 4, 5, 8, 9):
            for cols in (1, 7, 8, 9, 15, 16, 17, 33):
                m = rng.standard_normal((rows, cols)).astype(np.float32)
                x = rng.standard_normal(cols).astype(np.float32)
                b = rng.standard_normal(rows).astype(np.float32) if cols % 2 else None
                want = run_dense(ffi, lib, "prunec_f32_fc_dense__portable", m, x, b, *RELU, Mem("mis"))
                for mem in (Mem("end"), Mem("start"), Mem("mis", cols % 16)):
                    got = run_dense(ffi, lib, "prunec_f32_fc_dense__avx2", m, x, b, *RELU, mem)
                    compare(got, want, _fin(m) @ _fin(x) + (0 if b is None else _fin(b)), cols + 1,
                            f"dense {rows}x{cols} {mem}")
    in_child(body)


# ---- conv -------------------------------------------------------------------------------------------------------

# (in_c, out_c, h, w, k, stride, pad, dil, groups, density): every path of the three x86 conv kernels.
CONV_SHAPES = [
    (1, 4, 28, 28, (5, 5), (1, 1), (0, 0), (1, 1), 1, 0.66),  # x4 packed, 36 vectors, list decode (LeNet conv1)
    (6, 5, 12, 12, (5, 5), (1, 1), (0, 0), (1, 1), 1, 0.3),  # x4 packed, 4 vectors: 8-bit rows in the FMA loop
    (4, 4, 12, 12, (5, 5), (1, 1), (0, 0), (1, 1), 2, 0.5),  # x4 paired (8x8), no padding, groups
    (4, 4, 6, 8, (3, 3), (1, 1), (1, 1), (1, 1), 2, 0.6),  # x4 paired with padding (S = 3)
    (3, 2, 6, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, 0.7),  # x4 packed with the twin copy (rows of 8 floats)
    (2, 3, 10, 26, (3, 3), (1, 1), (1, 1), (1, 1), 1, 0.6),  # x4 packed, rows of 24: twin copy
    (3, 4, 40, 40, (1, 1), (1, 1), (0, 0), (1, 1), 1, 0.9),  # x4 packed, 100 vectors: segments
    (600, 2, 4, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1, 0.95),  # x4 packed, rows beyond one chunk of 512
    (48, 3, 19, 21, (3, 5), (1, 1), (1, 2), (1, 1), 1, 0.3),  # x4 tiles 16 wide, border rows
    (64, 4, 18, 18, (3, 3), (1, 1), (1, 1), (1, 1), 2, 0.35),  # x4 tiles, groups
    (200, 2, 11, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, 0.2),  # x4 tiles 8 wide
    (700, 2, 4, 40, (1, 1), (1, 1), (0, 0), (1, 1), 1, 0.9),  # x4 tiles, > 512 taps; avx2/avx512 > 256 taps
    (8, 2, 30, 40, (3, 17), (1, 1), (1, 8), (1, 1), 1, 0.4),  # x4 generic: kw > 16
    (520, 2, 4, 20, (3, 3), (1, 1), (1, 1), (1, 1), 1, 0.1),  # x4 generic: in_c*kh*kw > 4608
    (3, 4, 9, 9, (3, 3), (2, 2), (0, 0), (1, 1), 1, 0.6),  # stride 2
    (2, 3, 7, 11, (3, 5), (2, 1), (1, 2), (1, 1), 1, 0.6),  # stride_h only
    (2, 3, 6, 13, (2, 4), (1, 3), (0, 1), (2, 1), 1, 0.6),  # stride_w 3, dilation
    (3, 4, 11, 10, (3, 3), (1, 1), (2, 2), (2, 2), 1, 0.6),  # dilation 2, padding
    (4, 4, 9, 9, (3, 3), (1, 1), (1, 1), (1, 1), 4, 0.8),  # depthwise
    (3, 6, 8, 9, (3, 3), (2, 2), (1, 1), (1, 1), 3, 0.8),  # depthwise, multiplier 2, stride 2
    (2, 3, 5, 37, (3, 3), (1, 1), (1, 1), (1, 1), 1, 0.5),  # avx2 16- and 8-wide blocks and gathered tails
    (2, 2, 3, 3, (3, 3), (1, 1), (0, 0), (1, 1), 1, 1.0),  # kernel == input: one output pixel
]


@pytest.mark.parametrize("bits", ALL_BITS)
def test_conv_paths_guarded(o3, bits):
    """Every conv path against the portable twin, rows padded with zero-valued entries and an empty row, a view
    whose row_ptr[0] > 0, inputs ending at / starting after a PROT_NONE page."""
    def body():
        rng = np.random.default_rng(bits)
        for i, (in_c, out_c, h, w_, k, s, p, d, g, dens) in enumerate(CONV_SHAPES):
            w = (rng.standard_normal((out_c, in_c // g, *k)) * (rng.random((out_c, in_c // g, *k)) < dens))
            w = w.astype(np.float32)
            w[-1] = 0
            cols = w[0].size
            zc = [rng.choice(cols, 2, replace=False).tolist() for _ in range(out_c)] if i % 2 else None
            x = rng.standard_normal((in_c, h, w_)).astype(np.float32)
            b = rng.standard_normal(out_c).astype(np.float32) if i % 3 else None
            check_conv(o3, w, x, b, bits, s, p, d, g, ACTS[i % 3], zero_cols=zc, pre_rows=i % 2, what=f"shape {i}")
    in_child(body)


def test_conv_fused_one_row_views(o3):
    """conv + pool fusion (prunec.codegen._fused_conv_pool) calls the conv kernel once per output channel c with
    out_c = 1, groups = 1, in_c = in_c / groups, row_ptr + c, bias + c and x at the channel's group."""
    def body():
        ffi, lib = o3
        rng = np.random.default_rng(21)
        for (in_c, out_c, h, w_, k, pad, groups, bits) in [(1, 6, 28, 28, (5, 5), (0, 0), 1, 4),
                                                           (6, 4, 12, 12, (5, 5), (0, 0), 2, 8),
                                                           (4, 4, 8, 10, (3, 3), (1, 1), 1, 16),
                                                           (64, 2, 18, 18, (3, 3), (1, 1), 1, 8),
                                                           (1, 6, 28, 28, (5, 5), (0, 0), 1, 5),
                                                           (6, 4, 12, 12, (5, 5), (0, 0), 2, 6),
                                                           (4, 4, 8, 10, (3, 3), (1, 1), 1, 3),
                                                           (64, 2, 18, 18, (3, 3), (1, 1), 1, 11)]:
            cin_g = in_c // groups
            wt = (rng.standard_normal((out_c, cin_g, *k)) * (rng.random((out_c, cin_g, *k)) < 0.5)).astype(np.float32)
            x = rng.standard_normal((in_c, h, w_)).astype(np.float32)
            b = rng.standard_normal(out_c).astype(np.float32)
            v, idx, rp = encode_rows(entries_of(wt.reshape(out_c, -1)), bits)
            oh, ow = conv_out(h, k[0], 1, pad[0], 1), conv_out(w_, k[1], 1, pad[1], 1)
            geo = (cin_g, h, w_, 1, oh, ow, *k, 1, 1, *pad, 1, 1, 1)
            for c in range(out_c):
                layer = Layer(v, idx, rp[c:c + 2].copy(), bits, 1, wt[0].size)
                xc = x[(c // (out_c // groups)) * cin_g:][:cin_g]
                want = run_rcsr(ffi, lib, "prunec_f32_conv2d_rcsr__portable", "conv2d_rcsr", layer, xc, b[c:c + 1],
                                oh * ow, *RELU, Mem("mis"), conv=geo)
                mag = conv_mag(wt[c:c + 1], xc, b[c:c + 1], (1, 1), pad, (1, 1), 1)
                for name in _isa_names("conv2d_rcsr"):
                    for mem in (Mem("end"), Mem("start")):
                        got = run_rcsr(ffi, lib, name, "conv2d_rcsr", layer, xc, b[c:c + 1], oh * ow, *RELU, mem,
                                       conv=geo)
                        compare(got, want, mag, wt[0].size + 1, f"{name} fused view c={c} b={bits} {mem}")
    in_child(body)


def test_conv_misaligned_inputs(o3):
    rng = np.random.default_rng(22)
    for i in (1, 3, 8, 10, 15, 20):
        in_c, out_c, h, w_, k, s, p, d, g, dens = CONV_SHAPES[i]
        w = (rng.standard_normal((out_c, in_c // g, *k)) * (rng.random((out_c, in_c // g, *k)) < dens)).astype(np.float32)
        x = rng.standard_normal((in_c, h, w_)).astype(np.float32)
        check_conv(o3, w, x, rng.standard_normal(out_c).astype(np.float32), ALL_BITS[(5 * i) % len(ALL_BITS)], s, p, d, g,
                   mems=[Mem("mis", m) for m in (1, 5, 7, 13)], what=f"misaligned shape {i}")


# No padding and no fillers: there the docs (docs/TARGETS.md) promise NaN exactly where the portable kernel has
# NaN and zeros of its sign. Shapes reach avx2/avx512 fast and gathered blocks, stride/dilation (gathers), and
# the avx512x4 tiles (16 and 8 wide) and generic loop, which test_avx512x4_kernels.py's special values do not.
SPECIAL_SHAPES = [(2, 12, 40, (3, 3), (1, 1), (1, 1)), (40, 20, 40, (3, 3), (1, 1), (1, 1)),
                  (64, 11, 8, (3, 3), (1, 1), (1, 1)), (3, 13, 35, (2, 4), (2, 1), (1, 1)),
                  (3, 14, 30, (3, 3), (1, 2), (2, 2)), (3, 9, 11, (3, 3), (1, 1), (1, 1))]


@pytest.mark.parametrize("act", ACTS, ids=["none", "relu", "relu6"])
def test_conv_special_values_and_zero_signs(o3, act):
    def body():
        rng = np.random.default_rng(len(act))
        for in_c, h, w_, k, stride, dil in SPECIAL_SHAPES:
            for bits in (6, 8, 12, 16):
                out_c = 4
                x = rng.standard_normal((in_c, h, w_)).astype(np.float32)
                x[1].flat[rng.choice(h * w_, 3, replace=False)] = [np.nan, -np.nan, np.inf]
                x[in_c - 1].flat[rng.choice(h * w_, 2, replace=False)] = [-np.inf, np.float32(np.nan)]
                x[0] = -0.0
                wt = (rng.standard_normal((out_c, in_c, *k)) * (rng.random((out_c, in_c, *k)) < 0.7)).astype(np.float32)
                wt[:, :, 0, 0] = 0.5  # every row starts at column 0: with <= 2^b columns between entries, no filler
                wt[3] = 0.0
                wt[3, 0] = np.abs(rng.standard_normal(k)).astype(np.float32) + 0.25  # reads only the -0.0 channel
                wt[2] = 0.0  # reads nothing: the -0.0 bias alone
                b = (rng.standard_normal(out_c) * 2).astype(np.float32)
                b[2] = b[3] = -0.0
                assert (make_layer(wt.reshape(out_c, -1), bits).values != 0).all()
                want = check_conv(o3, wt, x, b, bits, stride, (0, 0), dil, 1, act, zero_sign=True, mems=[Mem("end")])
                assert np.isnan(want).any() and np.signbit(want.reshape(out_c, -1)[2:]).all()
    in_child(body)


def test_conv_random_shapes_guarded(o3):
    in_child(lambda: random_convs(o3, seed=3, n=60))


def random_convs(built, seed: int, n: int, mems=None):
    rng = np.random.default_rng(seed)
    done = 0
    while done < n:
        groups = int(rng.choice([1, 1, 2, 3]))
        cin_g = int(rng.choice([1, 2, 3, 5, 20]))
        in_c, out_c = cin_g * groups, groups * int(rng.integers(1, 4))
        kh_, kw_ = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        unit = rng.random() < 0.6
        stride = (1, 1) if unit else (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
        dil = (1, 1) if unit else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pad = (int(rng.integers(0, 3)), int(rng.integers(0, 3))) if rng.random() < 0.6 else (0, 0)
        ih, iw = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        if rng.random() < 0.25:  # 8 output columns, an even number of rows: the paired path
            iw, ih = 8 + kw_ - 1 - 2 * pad[1], int(rng.choice([2, 4, 6, 8])) + kh_ - 1 - 2 * pad[0]
        oh, ow = conv_out(ih, kh_, stride[0], pad[0], dil[0]), conv_out(iw, kw_, stride[1], pad[1], dil[1])
        if min(oh, ow, ih, iw) < 1 or pad[0] >= kh_ * dil[0] or pad[1] >= kw_ * dil[1]:
            continue
        dens = float(rng.choice([0.05, 0.3, 0.7, 1.0]))
        w = (rng.standard_normal((out_c, cin_g, kh_, kw_)) * (rng.random((out_c, cin_g, kh_, kw_)) < dens))
        w = w.astype(np.float32)
        cols = cin_g * kh_ * kw_
        if out_c > 1:
            w[int(rng.integers(out_c))] = 0
        x = rng.standard_normal((in_c, ih, iw)).astype(np.float32)
        bits = int(rng.choice([4, 8, 16, *ODD_BITS]))
        zc = ([rng.choice(cols, int(rng.integers(0, 2)), replace=False).tolist() for _ in range(out_c)]
              if rng.random() < 0.4 else None)
        b = rng.standard_normal(out_c).astype(np.float32) if rng.random() < 0.7 else None
        check_conv(built, w, x, b, bits, stride, pad, dil, groups, ACTS[done % 3], zero_cols=zc,
                   pre_rows=int(rng.integers(0, 3)), mems=mems, what=f"random seed {seed} #{done}")
        done += 1


def test_x4_conv_tall_kernels_on_the_tiles(o3):
    """avx512x4 conv_tiled kept each tap's ky in a byte (col_ky, eky): with kh > 255, ky = 256 + j was taken as j,
    so the border tiles' row test let rows past the input through (a read past the end of x, seen here at the
    PROT_NONE page) or masked valid ones (with padding: wrong sums). Such kernels now take the generic loop."""
    rng = np.random.default_rng(31)
    name = ["prunec_f32_conv2d_rcsr__avx512x4"]
    # with padding: wrong values (no guard needed)
    w = (rng.standard_normal((2, 1, 258, 3)) * (rng.random((2, 1, 258, 3)) < 0.5)).astype(np.float32)
    x = rng.standard_normal((1, 270, 40)).astype(np.float32)
    check_conv(o3, w, x, None, 8, pad=(1, 1), names=name, mems=[Mem("mis")], what="kh=258 tiles")
    w = (rng.standard_normal((2, 4, 258, 2)) * (rng.random((2, 4, 258, 2)) < 0.5)).astype(np.float32)
    x = rng.standard_normal((4, 280, 7)).astype(np.float32)
    check_conv(o3, w, x, None, 16, pad=(1, 0), names=name, mems=[Mem("mis")], what="kh=258 tiles8")
    # no padding: the last tile's rows beyond the output read past x
    w = (rng.standard_normal((2, 1, 260, 1)) * (rng.random((2, 1, 260, 1)) < 0.5)).astype(np.float32)
    w[:, :, 256:] = 1.0
    x = rng.standard_normal((1, 300, 50)).astype(np.float32)
    in_child(lambda: check_conv(o3, w, x, None, 8, names=name, mems=[Mem("end")], what="kh=260 tiles"))


# ---- max pool ---------------------------------------------------------------------------------------------------

def random_pools(built, seed: int, n: int):
    rng = np.random.default_rng(seed)
    for trial in range(n):
        c, ih, iw = int(rng.integers(1, 6)), int(rng.integers(1, 40)), int(rng.integers(1, 70))
        if trial % 2:  # the 2x2/2 fast path (and ceil_mode / odd sizes around it)
            k, s, p, ceil = (2, 2), (2, 2), (0, 0), bool(rng.random() < 0.3)
        else:
            k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
            ceil = bool(rng.random() < 0.5)
        if ih + 2 * p[0] < k[0] or iw + 2 * p[1] < k[1]:
            continue
        x = rng.standard_normal((c, ih, iw)).astype(np.float32)
        idx = rng.choice(x.size, min(4, x.size), replace=False)
        x.flat[idx] = np.array([np.nan, -np.inf, np.inf, -np.nan], np.float32)[: idx.size]
        check_pool(built, x, k, s, p, ceil, what=f"seed {seed} #{trial}")


def test_maxpool_paths_guarded(o3):
    def body():
        for shape in [(50, 8, 8), (5, 9, 8), (3, 7, 24), (2, 6, 64), (2, 5, 70), (1, 2, 2), (7, 4, 9), (4, 8, 40)]:
            x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
            x.flat[[0, x.size - 1]] = [np.nan, np.inf]
            check_pool(o3, x, (2, 2), (2, 2), (0, 0))
        random_pools(o3, seed=1, n=120)
    in_child(body)


# ---- unoptimised builds -----------------------------------------------------------------------------------------

def test_unoptimised_builds_match(o0):
    """-O0 (the avx512x4 fc's inline assembly gets its registers there too): a sample of the above."""
    def body():
        for bits in (3, 4, 6, 8, 12, 16):
            m, x, zero = fc_edge_matrix(bits, np.random.default_rng(bits))
            check_fc(o0, m, x, None, bits, RELU, zero_cols=zero, pre_rows=1, mems=[Mem("end")])
        rng = np.random.default_rng(5)
        for rows, cols, d, bits in _fc_big_cases()[:11]:
            m = (rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < d)).astype(np.float32)
            check_fc(o0, m, rng.standard_normal(cols).astype(np.float32), None, bits, mems=[Mem("end")])
        random_convs(o0, seed=4, n=25, mems=[Mem("end")])
        random_pools(o0, seed=2, n=40)
    in_child(body)


def test_x86_kernels_compile_strict_unoptimised(tmp_path):
    """-O0 with the strict flags (-Wconversion ... -Werror): GCC's unoptimised gather intrinsic is a macro that
    passes the mask to a builtin taking a signed short, so f32-rcsr-avx512.c failed with -Wsign-conversion."""
    import shutil
    import subprocess

    from prunec.resources import runtime_dir

    rt = runtime_dir()
    for cc in [c for c in ("gcc", "clang") if shutil.which(c)]:
        for src in sorted({k.source for k in ISA_KERNELS} | {"src/avx2/f32-fc-dense-avx2.c"}):
            for opt in ("-O0", "-O2"):
                r = subprocess.run([cc, "-std=c99", opt, *FLAGS, "-Wall", "-Wextra", "-Wpedantic", "-Wconversion",
                                    "-Wshadow", "-Werror", "-I", str(rt / "include"), "-c", str(rt / src), "-o",
                                    str(tmp_path / "k.o")], capture_output=True, text=True)
                assert r.returncode == 0, f"{cc} {opt} {src}:\n{r.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 16))
def test_more_random_seeds(o3, o0, seed):
    def body():
        random_convs(o3, seed, 200)
        random_convs(o0, seed + 100, 60)
        random_pools(o3, seed, 300)
    in_child(body)
