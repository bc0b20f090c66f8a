"""Portable kernel paths that gcov showed no test executing (seventeenth session: the suite's kernel tests under gcc
--coverage): a tap whose valid outputs all lie past the plane, the column kernel's NaN fill for an index width outside
1..16. The x86 paths found the same way are in tests/test_avx512x4_kernels.py (the fc's long and big layers on both
paths, conv shapes) and tests/test_avx2_kernels.py (the conv's generic paths)."""
from __future__ import annotations

import numpy as np
import pytest

import kernel_harness as kh
from prunec import encode


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
