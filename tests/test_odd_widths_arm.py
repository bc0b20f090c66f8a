"""The Arm fc and conv kernels (Cortex-M, NEON, Helium) on index widths other than 4/8/16, against their portable
twins, under QEMU (the driver and the comparison of tests/test_review_arm_kernels.py).

The Cortex-M fc runs b = 5, 6, 7 in groups of 8 entries that end at a row's last entry, its first group starting
up to 7 entries before the row and entered in the middle, and reads each group's codes as 32-bit words that can
reach one byte past the group when the group starts at bit 0 of a byte; NEON widens the codes of other widths with
16-byte loads and table lookups, Helium with byte gathers into a buffer. So the cases put rows at every bit
offset, include rows of 0 .. 17 entries (first groups that would start before entry 0), fillers, rows of zero
entries only, a last row ending with the layer's last entry at bit 0 of a byte (total entries a multiple of 8),
rows longer than Helium's buffer (512) and NEON's decode window (2049, and 9 with -DPRUNEC_NEON_FC_WINDOW=9u). On
qemu-user the index array ends exactly at a PROT_NONE page, so a read past it faults.
"""
from __future__ import annotations

import numpy as np
import pytest

import test_review_arm_kernels as rak

pytestmark = pytest.mark.cross

ODD = (1, 2, 3, 5, 6, 7, 9, 12, 15)


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("arm_odd")


def _row_lengths_case(rng, isa, bits, lengths, cols, desc, total_mult8=False):
    """fc whose rows hold exactly `lengths` entries (fillers count: a gap beyond 2^b adds one)."""
    rows = len(lengths)
    w = np.zeros((rows, cols), np.float32)
    extra = [[] for _ in range(rows)]
    for r, n in enumerate(lengths):
        if n == 0:
            continue
        c = np.sort(rng.choice(cols, min(n, cols), replace=False))
        w[r, c] = rng.standard_normal(c.size).astype(np.float32)
        if rng.random() < 0.2:  # some stored zeros
            extra[r] = c[: max(1, c.size // 4)].tolist()
            w[r, extra[r]] = 0.0
    x = rng.standard_normal(cols).astype(np.float32)
    bias = rng.standard_normal(rows).astype(np.float32) if rng.random() < 0.7 else None
    c = rak.fc_case(isa, w, x, bias, bits, act=rak.ACTS[int(rng.integers(3))], desc=desc, extra_zero=extra,
                    idx_mis=int(rng.integers(0, 4)), x_mis=int(rng.integers(0, 4)), y_mis=int(rng.integers(0, 4)))
    if total_mult8 and len(c.values) % 8:
        return None
    return c


def fc_cases(name: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    cases = []
    for isa in rak._isas(name, "fc_rcsr"):
        for bits in ODD:
            span = 1 << bits
            # every row length 0 .. 17 in random order, then longer rows: rows start at every bit offset
            for t in range(3):
                lengths = rng.permutation(np.r_[np.arange(18), [31, 63, 64, 65]]).tolist()
                cases.append(_row_lengths_case(rng, isa, bits, lengths, 300, f"row lengths {lengths}"))
            # short first rows (a first group before entry 0), empty rows around them
            for first in range(1, 9):
                lengths = [first, 0, 9, 1, 0, 16, 23]
                cases.append(_row_lengths_case(rng, isa, bits, lengths, 200, f"first row {first}"))
            # the layer's last entry at bit 0 of a byte: total entries a multiple of 8, a long last row
            made = 0
            while made < 4:
                lengths = [int(v) for v in rng.integers(0, 30, size=int(rng.integers(1, 6)))] + [int(rng.integers(8, 40))]
                c = _row_lengths_case(rng, isa, bits, lengths, 120, f"last row ends the layer at a byte: {lengths}",
                                      total_mult8=True)
                if c is not None:
                    cases.append(c)
                    made += 1
            # fillers: gaps of 2^b - 1, 2^b, 2^b + 1 and much longer; rows of fillers only
            cols = min(3000, 40 * span + 50)
            w = np.zeros((6, cols), np.float32)
            for r in range(5):
                c, k = int(rng.integers(0, 3)), 0
                while c < cols:
                    w[r, c] = rng.uniform(0.5, 2.0) * rng.choice([-1.0, 1.0])
                    c += [span - 1, span, span + 1, 3 * span + 2, 1][(k + r) % 5]
                    k += 1
            x = rng.standard_normal(cols).astype(np.float32)
            extra = [[] for _ in range(6)]
            extra[5] = [cols - 1]  # a row whose only stored entry is a zero, after fillers
            cases.append(rak.fc_case(isa, w, x, None, bits, act=rak.RELU, desc=f"fillers, span {span}",
                                     extra_zero=extra, idx_mis=int(rng.integers(0, 4))))
            # rows longer than Helium's buffer and NEON's window
            cols = 6000
            w = np.zeros((3, cols), np.float32)
            w[0, rng.random(cols) < 0.6] = 1.0
            w[0] *= rng.standard_normal(cols).astype(np.float32)
            w[1, rng.random(cols) < 0.08] = 1.0
            w[2, cols - 1] = 2.0
            x = rng.standard_normal(cols).astype(np.float32)
            cases.append(rak.fc_case(isa, w, x, rng.standard_normal(3).astype(np.float32), bits, desc="long rows"))
            # random shapes
            for _ in range(6):
                cases.append(rak.random_fc(rng, isa, bits))
    return [c for c in cases if c is not None]


def conv_cases(name: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    cases = []
    for isa in rak._isas(name, "conv2d_rcsr"):
        for bits in ODD:
            for _ in range(4):
                cases.append(rak.random_conv(rng, isa, bits))
            w = rng.standard_normal((3, 12, 3, 3)).astype(np.float32)
            w[rng.random(w.shape) < 0.7] = 0
            x = rng.standard_normal((12, 10, 13)).astype(np.float32)
            cases.append(rak.conv_case(isa, w, x, rng.standard_normal(3).astype(np.float32), bits, pad=(1, 1),
                                       act=rak.RELU, desc="3x3"))
    return cases


@pytest.mark.parametrize("name", list(rak.ARM))
def test_odd_widths_fc_match_portable(name, build_root):
    rak.check(name, fc_cases(name, 31), build_root)


@pytest.mark.parametrize("name", list(rak.ARM))
def test_odd_widths_conv_match_portable(name, build_root):
    rak.check(name, conv_cases(name, 32), build_root)


@pytest.mark.parametrize("name", ["aarch64-neon", "armv7a-neon", "cortex-m4", "cortex-m55"])
def test_odd_widths_unoptimised_and_c_paths(name, build_root):
    """-O0 (the Cortex-M and Helium C steps instead of the inline assembly) and, NEON, a 9-entry decode window."""
    flags = ("-DPRUNEC_NEON_FC_WINDOW=9u",) if "neon" in name else ("-O0",)
    rak.check(name, fc_cases(name, 33) + conv_cases(name, 34)[:20], build_root, flags)
