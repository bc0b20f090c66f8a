"""benchmarks/entropy_bound.py: the lossless-storage bound behind the 4096x4096 "10x PyTorch dense" goal."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import entropy_bound  # noqa: E402


def test_binary_entropy():
    assert entropy_bound.binary_entropy(0.5) == pytest.approx(1.0)
    assert entropy_bound.binary_entropy(0.1) == pytest.approx(0.4689955935892812)
    assert entropy_bound.binary_entropy(0.0) == 0.0 and entropy_bound.binary_entropy(1.0) == 0.0


def test_mantissa_entropy_of_a_flat_binade_is_23_bits():
    # far below sigma the normal density is flat across a binade: nothing to gain on the mantissa
    assert entropy_bound.mantissa_entropy(1.0, [-20], [1.0]) == pytest.approx(23.0, abs=1e-6)
    # around sigma it is not: fewer than 23 bits, but not much fewer
    h = entropy_bound.mantissa_entropy(1.0, [0], [1.0])
    assert 22.0 < h < 23.0


def test_bound_of_a_layer():
    r = entropy_bound.bound("lenet300.fc1")
    d = r["density"]
    assert 0.07 < d < 0.09
    assert r["positions"] == pytest.approx(entropy_bound.binary_entropy(d) / d)
    assert r["sign"] == pytest.approx(1.0, abs=1e-3)
    assert 2.0 < r["exponent"] < 3.5  # |N(0, s^2)| spans a few binades
    assert 22.5 < r["mantissa"] < 23.0
    assert r["bits_per_nonzero"] == pytest.approx(r["positions"] + r["sign"] + r["exponent"] + r["mantissa"])
    # the entropy bound beats 8-bit CSR's byte ratio, but not by much: fp32 values are nearly incompressible
    assert r["csr8_ratio"] < r["entropy_ratio"] < 1.35 * r["csr8_ratio"]
    assert r["entropy_ratio"] == pytest.approx(32.0 / (d * r["bits_per_nonzero"]))


def test_cli_table(capsys):
    assert entropy_bound.main(["--layers", "lenet300.fc2", "--goal", "10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| layer |") and "10x needs" in out[0]
    assert len(out) == 3 and out[2].startswith("| lenet300.fc2 | 300->100 |")
    assert math.isfinite(float(out[2].split("|")[9].strip().rstrip("x")))
