"""x86 and portable kernel paths that gcov showed no test executing (seventeenth session: the suite's kernel tests
under gcc --coverage on this Intel machine), each now run against the float64 reference of the kernel harness.

The avx512x4 fc kernel picks its path by CPU maker at run time (gather on Intel, broadcast elsewhere) unless
PRUNEC_X86_FC_GATHER fixes it at compile time: the layers here run both ways, so that neither path is tested only on
the machine kind that happens to run the suite. Paths: the prefetching copies of layers over 262,144 entries (pair
and four-row passes, 8-bit and widened), a row longer than one widened block, the 4-bit decode of a row longer than
16,384 entries (starting at an odd entry too); avx2 conv: the tap decode of kernels over 64 taps outside the packed
and flat paths, the column pass of channels with more than 256 entries; avx512x4 conv: packing for stride_w 4 and
the 8-wide tile on 4 output rows; portable: a tap whose valid outputs all lie past the plane, the column kernel's
NaN fill for an index width outside 1..16."""
from __future__ import annotations

import numpy as np
import pytest

import kernel_harness as kh
from prunec import encode, verify

AVX512 = ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]

pytestmark = pytest.mark.skipif(
    not {"avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify.cpu_flags() or set()),
    reason="this CPU lacks AVX2/FMA/AVX-512 (F, VL, BW, DQ)")

FC_CASES = [
    kh.FcCase(2, 20000, pattern="full", bits=4),  # a 4-bit row > 16384 entries: the decode pass
    kh.FcCase(3, 20001, density=0.9, bits=4, seed=1),  # ... rows starting at odd entries (odd first nibble)
    kh.FcCase(2, 40000, density=0.6, bits=6),  # b <= 7: a row longer than one widened block
    kh.FcCase(64, 8000, density=0.6, bits=8),  # > 262144 entries: the pair pass's prefetching copies
    kh.FcCase(40, 13000, density=0.6, bits=8),  # ... x wider than 12288: the four-row pass's copies
    kh.FcCase(64, 8000, density=0.6, bits=6),  # widened and prefetched
    kh.FcCase(41, 13000, density=0.6, bits=5),  # widened, four-row pass, rows % 4 == 1
]


@pytest.fixture(scope="module", params=[0, 1], ids=["broadcast", "gather"])
def fc_x4(request, tmp_path_factory):
    return kh.build_kernels(["src/avx512/f32-fc-rcsr-avx512-x4.c"],
                            [*AVX512, f"-DPRUNEC_X86_FC_GATHER={request.param}"],
                            tmpdir=tmp_path_factory.mktemp(f"fcx4g{request.param}"))


@pytest.mark.parametrize("case", FC_CASES, ids=lambda c: c.id)
def test_avx512x4_fc_long_and_big_layers_both_paths(fc_x4, case):
    kh.check(*fc_x4, "prunec_f32_fc_rcsr__avx512x4", case)


@pytest.fixture(scope="module")
def conv_x4(tmp_path_factory):
    return kh.build_kernels(["src/avx512/f32-conv2d-rcsr-avx512-x4.c", "src/portable/f32-conv2d-rcsr-portable.c",
                             "src/portable/f32-conv2d-dense-portable.c"], AVX512, tmpdir=tmp_path_factory.mktemp("cx4"))


@pytest.mark.parametrize("bits", [8, 5])
@pytest.mark.parametrize("case", [
    kh.ConvCase(4, 6, 6, 10),  # output 4 rows x 8 columns: the 8-wide tile's 4-row case
    kh.ConvCase(3, 5, 32, 32, k=(5, 5), stride=(1, 4)),  # packed, stride_w 4 (the generic column pick)
    kh.ConvCase(2, 4, 29, 31, k=(5, 5), stride=(4, 4), pad=(2, 2)),
    kh.ConvCase(2, 3, 5, 1, k=(3, 3), pad=(2, 2), dil=(2, 2)),  # taps whose outputs all lie past the plane
], ids=lambda c: c.id)
def test_avx512x4_conv_shapes(conv_x4, case, bits):
    from dataclasses import replace

    kh.check(*conv_x4, "prunec_f32_conv2d_rcsr__avx512x4", replace(case, bits=bits))


@pytest.fixture(scope="module")
def avx2(tmp_path_factory):
    return kh.build_kernels(["src/avx2/f32-rcsr-avx2.c", "src/portable/f32-conv2d-rcsr-portable.c",
                             "src/portable/f32-conv2d-dense-portable.c", "src/portable/f32-fc-rcsr-portable.c"],
                            ["-mavx2", "-mfma"], tmpdir=tmp_path_factory.mktemp("a2"))


@pytest.mark.parametrize("bits", [8, 4, 16, 5])
@pytest.mark.parametrize("case", [
    kh.ConvCase(2, 3, 64, 64, k=(9, 9)),  # 81 taps, neither packed nor flat: the per-channel tap decode
    kh.ConvCase(40, 300, 20, 40, pad=(1, 1), density=0.9),  # > 256 entries per output channel: the column pass
], ids=lambda c: c.id)
def test_avx2_conv_generic_paths(avx2, case, bits):
    from dataclasses import replace

    kh.check(*avx2, "prunec_f32_conv2d_rcsr__avx2", replace(case, bits=bits))


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    return kh.build_kernels(["src/portable/f32-conv2d-rcsr-portable.c", "src/portable/f32-conv2d-dense-portable.c",
                             "src/portable/f32-fc-rcsc-portable.c"], [], tmpdir=tmp_path_factory.mktemp("pt"))


@pytest.mark.parametrize("name", ["prunec_f32_conv2d_rcsr__portable", "prunec_f32_conv2d_dense__portable"])
def test_portable_conv_taps_past_the_plane(portable, name):
    kh.check(*portable, name, kh.ConvCase(2, 3, 5, 1, k=(3, 3), pad=(2, 2), dil=(2, 2),
                                          bits=8 if "rcsr" in name else None))


@pytest.mark.parametrize("bad", [0, 17, 32])
def test_portable_column_kernel_fills_nan_for_a_bad_index_width(portable, bad):
    """docs/FORMAT.md: an index width outside 1..16 fills the output with NaN (the avx2 column kernel hands such a
    layer to this one)."""
    ffi, lib = portable
    keep = kh._Keep()
    r = encode.encode_rcsr(np.eye(6, dtype=np.float32).T.copy(), 8)  # W^T: the columns of a 6x6 identity
    ws = kh.rcsr_struct(ffi, keep, r)
    ws.index_bits = bad
    y = np.zeros(6, np.float32)
    lib.prunec_f32_fc_rcsc__portable(ws, ffi.NULL, keep.buf(ffi, "float[]", np.ones(6, np.float32)),
                                     keep.buf(ffi, "float[]", y, True), float("-inf"), float("inf"))
    assert np.isnan(y).all(), y
