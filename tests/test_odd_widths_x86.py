"""The x86 fc/conv kernels (avx2, avx512, avx512x4) on index widths other than 4/8/16, at the limits of their
paths, against the portable kernel (docs/FORMAT.md: any width 1..16, one LSB-first bit stream).

avx512x4 fc: b <= 7 widens codes to bytes per block of at most 16384 entries (WIDEN_MAX) and runs the 8-bit path on
each block; a row longer than a block takes the decode pass, as do 9..15. Layers of 16383 / 16384 / 16385 / 32769
entries, rows of 16384 / 16385 entries, blocks that end mid-byte (b odd), rows of 31 / 32 / 33 entries (the
32-codes step and its scalar tail), and every input ending at a PROT_NONE page (the stream's last byte included:
the widener's 16-byte loads must stop before it). avx512x4 conv, b < 8: a row's codes are widened to bytes (at
most PK_COLS = 2048 of them, one per column at most) for the fused 8-bit decode of planes of <= 4 vectors and for
the row-pair 8x8 layout, a chunk's codes for the offset list; 9..15 and the register tiles read the bit stream
code by code. Shared helpers come from test_review_x86_kernels.
"""
from __future__ import annotations

import numpy as np
import pytest

import test_review_x86_kernels as rx
from test_review_x86_kernels import Mem, check_conv, check_fc, in_child

pytestmark = rx.pytestmark

WIDTHS = (1, 3, 5, 6, 7, 9, 12, 15)


@pytest.fixture(scope="module")
def o3(tmp_path_factory):
    return rx._build(tmp_path_factory.mktemp("oddw"), "-O3")


def _layer_with_entries(rng, rows: int, cols: int, total: int) -> np.ndarray:
    """rows x cols with exactly `total` nonzeros, every row the same length +-1, at random columns (cols is only
    slightly more than a row's length: no fillers for b >= 2, so entries == total)."""
    m = np.zeros((rows, cols), np.float32)
    per = [total // rows + (1 if r < total % rows else 0) for r in range(rows)]
    for r, n in enumerate(per):
        cs = np.sort(rng.choice(cols, n, replace=False))
        m[r, cs] = rng.standard_normal(n).astype(np.float32) + 0.1
    return m


@pytest.mark.parametrize("bits", WIDTHS)
def test_fc_block_thresholds_guarded(o3, bits):
    """Layers just below / at / above one and two widening blocks (16384 entries), rows that fill a block
    exactly or overflow it by one entry, every input at a PROT_NONE page (end, then start)."""
    def body():
        rng = np.random.default_rng(100 + bits)
        # dense enough that no filler is needed (gaps < 2), so entries == nonzeros exactly
        for rows, total in ((8, 16383), (8, 16384), (8, 16385), (3, 32769), (1, 16384), (1, 16385), (2, 16385 * 2)):
            cols = total // rows + 2
            m = _layer_with_entries(rng, rows, cols, total)
            x = rng.standard_normal(cols).astype(np.float32)
            b = rng.standard_normal(rows).astype(np.float32)
            check_fc(o3, m, x, b, bits, rx.RELU6 if rows % 2 else rx.NONE, what=f"{rows} rows, {total} entries")
    in_child(body)


@pytest.mark.parametrize("bits", WIDTHS)
def test_fc_row_lengths_around_the_widening_step(o3, bits):
    """Rows of 1..70 entries (the widener's 32-code step and its tail, the 8-bit path's groups of 8) in a view
    that starts at an odd entry (a row starting mid-byte), x wider and narrower than the four-row threshold."""
    def body():
        rng = np.random.default_rng(200 + bits)
        for cols in (300, 12300):
            rows = 70
            m = np.zeros((rows, cols), np.float32)
            for r in range(rows):
                cs = np.sort(rng.choice(cols, r + 1, replace=False))
                m[r, cs] = rng.standard_normal(r + 1).astype(np.float32)
            x = rng.standard_normal(cols).astype(np.float32)
            check_fc(o3, m, x, None, bits, rx.RELU, pre_rows=1 + bits % 3, what=f"row lengths, {cols} cols")
    in_child(body)


@pytest.mark.parametrize("bits", (1, 3, 6, 7, 9, 15))
def test_conv_widened_rows_guarded(o3, bits):
    """LeNet-5-like planes (avx512x4: the row-pair 8x8 layout, the fused 8-bit decode of a 6-vector plane... and
    the offset list), rows of many fillers (b = 1: a filler every 2 columns), rows of 2048 entries (the most a
    widened row holds) and of 2049 (register tiles); avx2 / avx512 on the same."""
    def body():
        rng = np.random.default_rng(300 + bits)
        # 8x8 output, 20 input channels (500 columns): paired; 12x12 input, 4x4 kernel: 9x9 output (6 vectors:
        # offset list); 6x6 input, 3x3 kernel: 4x4 output (1 vector, fused decode); 2048 columns, all entries
        for in_c, hw, k, dens in ((20, 12, 5, 0.12), (20, 12, 5, 0.9), (3, 12, 4, 0.5), (4, 6, 3, 0.7),
                                  (1, 8, 1, 1.0), (128, 6, 4, 1.0)):
            w = (rng.standard_normal((6, in_c, k, k)) * (rng.random((6, in_c, k, k)) < dens)).astype(np.float32)
            w[2] = 0
            x = rng.standard_normal((in_c, hw, hw)).astype(np.float32)
            check_conv(o3, w, x, rng.standard_normal(6).astype(np.float32), bits, pre_rows=1,
                       what=f"widened rows in_c={in_c}")
        # layers of more than 16384 entries (avx512x4 widens a b < 8 layer's codes once per call up to that, row by
        # row / chunk by chunk beyond): row pairs, fused decode, offset list
        for in_c, hw, k, out_c in ((20, 12, 5, 40), (4, 6, 3, 500), (3, 12, 4, 400)):
            w = rng.standard_normal((out_c, in_c, k, k)).astype(np.float32) + 0.01
            x = rng.standard_normal((in_c, hw, hw)).astype(np.float32)
            check_conv(o3, w, x, None, bits, pre_rows=1, mems=[Mem("end")], what=f"{out_c * in_c * k * k} entries")
        # 2049 columns, all entries: beyond the packed paths (register tiles)
        w = rng.standard_normal((2, 2049, 1, 1)).astype(np.float32) + 0.01
        x = rng.standard_normal((2049, 2, 3)).astype(np.float32)
        check_conv(o3, w, x, None, bits, mems=[Mem("end")], what="2049-entry rows")
    in_child(body)


def test_fused_rows_start_mid_byte(o3):
    """One-row views (conv + pool fusion) of a 5- and a 3-bit stream: every row starts at another bit of its byte."""
    def body():
        rng = np.random.default_rng(9)
        for bits in (3, 5):
            wt = (rng.standard_normal((8, 20, 5, 5)) * (rng.random((8, 20, 5, 5)) < 0.3)).astype(np.float32)
            x = rng.standard_normal((20, 12, 12)).astype(np.float32)
            for pre in range(1, 4):
                check_conv(o3, wt, x, None, bits, pre_rows=pre, what=f"pre_rows={pre}")
    in_child(body)
