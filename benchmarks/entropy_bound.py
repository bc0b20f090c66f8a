#!/usr/bin/env python3
"""How small can a benchmark layer's weights be stored without loss? The entropy bound behind issue 5's "10x PyTorch
dense" goal for the 4096x4096 fc at 10 %.

The single-layer workloads (benchmarks/workloads.py) are fp32 weights drawn from N(0, 1/cols) under a uniformly
random mask of the layer's density d. Any lossless storage of such a matrix takes on average at least its entropy:
  positions: the mask, H_b(d) bits per weight = H_b(d) / d bits per nonzero (H_b the binary entropy);
  values:    1 bit of sign + the entropy of the fp32 exponent (measured on the layer's own nonzeros) + the entropy of
             the 23 mantissa bits given the exponent (for the normal density within each binade: 23 bits minus its
             Kullback-Leibler divergence from uniform, integrated over 4096 sub-bins of the binade).
A batch-1 fc layer streams its weights once per call, so time ratio <= byte ratio; the dense fp32 matrix is 32 bits
per weight, hence dense / sparse <= 32 / (d * bits per nonzero). The script prints that bound beside the byte ratio
of prunec's formats (8-bit relative-indexed CSR: 40 bits per nonzero plus fillers) and the share of the bound a
kernel must reach for a given goal.

    .venv/bin/python benchmarks/entropy_bound.py [--layers synthetic.fc4096,alexnet.fc6,vgg16.fc6] [--goal 10]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads  # noqa: E402

SUB_BINS = 4096


def binary_entropy(p: float) -> float:
    return 0.0 if p <= 0.0 or p >= 1.0 else -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def normal_cdf(x: np.ndarray, sigma: float) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return 0.5 * (1.0 + erf(np.asarray(x, dtype=np.float64) / (sigma * math.sqrt(2.0))))


def mantissa_entropy(sigma: float, exponents: np.ndarray, weights: np.ndarray) -> float:
    """Bits of the 23-bit mantissa given the binade, averaged with `weights` over the binades 2^e .. 2^(e+1) of
    |N(0, sigma^2)| for e in `exponents` (unbiased)."""
    total = 0.0
    for e, p in zip(exponents, weights):
        t = np.linspace(2.0 ** e, 2.0 ** (e + 1), SUB_BINS + 1)
        q = np.diff(normal_cdf(t, sigma))
        if q.sum() <= 0.0:
            total += p * 23.0
            continue
        q = q / q.sum()
        q = q[q > 0]
        total += p * (23.0 - float(np.sum(q * np.log2(q * SUB_BINS))))
    return total


def bound(key: str) -> dict:
    layer = workloads.by_key(key)
    w, _, _ = workloads.random_layer(layer)
    rows, cols = w.shape
    nz = w[w != 0]
    d = nz.size / w.size
    bits = nz.view(np.uint32)
    exps = ((bits >> 23) & 0xFF).astype(np.int64)
    uniq, counts = np.unique(exps, return_counts=True)
    p = counts / counts.sum()
    h_exp = float(-(p * np.log2(p)).sum())
    sign = binary_entropy(float((nz < 0).mean()))
    h_man = mantissa_entropy(1.0 / math.sqrt(cols), uniq - 127, p)
    pos = binary_entropy(d) / d
    per_nz = pos + sign + h_exp + h_man
    return {"layer": key, "shape": f"{cols}->{rows}", "density": d, "positions": pos, "sign": sign,
            "exponent": h_exp, "mantissa": h_man, "bits_per_nonzero": per_nz,
            "entropy_ratio": 32.0 / (d * per_nz), "csr8_ratio": 32.0 / (d * 40.0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="synthetic.fc4096,alexnet.fc6,vgg16.fc6")
    ap.add_argument("--goal", type=float, default=10.0, help="a dense/sparse time goal to set against the bound")
    args = ap.parse_args(argv)
    print("| layer | shape | density | positions | sign | exponent | mantissa | bits per nonzero | dense / entropy "
          f"bound | 8-bit CSR byte ratio | {args.goal:g}x needs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in [k.strip() for k in args.layers.split(",") if k.strip()]:
        r = bound(key)
        need = args.goal / r["entropy_ratio"]
        print(f"| {r['layer']} | {r['shape']} | {100 * r['density']:.2f} % | {r['positions']:.2f} | {r['sign']:.2f} | "
              f"{r['exponent']:.2f} | {r['mantissa']:.2f} | {r['bits_per_nonzero']:.2f} "
              f"({r['bits_per_nonzero'] / 8:.2f} B) | {r['entropy_ratio']:.2f}x | {r['csr8_ratio']:.2f}x | "
              f"{100 * need:.0f} % of the bound |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
