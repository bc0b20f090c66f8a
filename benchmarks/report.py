#!/usr/bin/env python3
"""Markdown tables and the goal check from the JSON files of run_all.py (build/bench/*.json).

    .venv/bin/python benchmarks/report.py [--in build/bench] > build/bench/report.md
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _load(d: Path, name: str):
    p = d / name
    return json.loads(p.read_text()) if p.exists() else None


def _t(s):
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def _best(r, group):
    items = [(t, n) for n, t in r["median_s"].items() if r["group"].get(n) == group]
    return min(items) if items else (float("nan"), "-")


def layers_section(doc, out):
    import bench_layers

    for b in (1, 8):
        rs = [r for r in doc["layers"] if r["batch"] == b]
        if not rs:
            continue
        print(f"\n### Batch {b}" + (" (fc layers; prunec calls its batch-1 kernel 8 times)" if b > 1 else ""), file=out)
        bench_layers.print_table(rs, out=out)
    print("\nPer-kernel medians (batch 1):\n", file=out)
    print("| layer | " + " | ".join(["portable", "avx2", "avx512", "avx512x4"]) + " | prunec dense (best) |", file=out)
    print("|---|---|---|---|---|---|", file=out)
    for r in doc["layers"]:
        if r["batch"] != 1:
            continue
        m = r["median_s"]
        cells = [_t(m[f"prunec sparse [{i}]"]) if f"prunec sparse [{i}]" in m else "-"
                 for i in ("portable", "avx2", "avx512", "avx512x4")]
        print(f"| {r['layer']} | " + " | ".join(cells) + f" | {_t(_best(r, 'prunec-dense')[0])} |", file=out)


def sweep_section(doc, out):
    print("\n| density | b | sparse bytes ÷ dense | best sparse (kernel) | × prunec dense | × PyTorch dense | "
          "× PyTorch CSR int32 |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for r in doc["sweep"]:
        ts, ns = _best(r, "prunec-sparse")
        td, _ = _best(r, "prunec-dense")
        m = r["median_s"]
        print(f"| {r['density']:.0%} | {r['index_bits']} | {r['sparse_bytes'] / r['dense_bytes']:.3f} | {_t(ts)} "
              f"({ns.split('[')[-1].rstrip(']')}) | {td / ts:.2f} | {m['pytorch dense'] / ts:.2f} | "
              f"{m['pytorch csr int32'] / ts:.2f} |", file=out)


def models_section(doc, out):
    for r in doc["models"]:
        m = r["median_s"]
        best = m[r["best"]]
        print(f"\n#### {r['model']}\n", file=out)
        print("| contender | median per inference | ÷ best prunec |", file=out)
        print("|---|---|---|", file=out)
        for name, t in sorted(m.items(), key=lambda kv: kv[1]):
            print(f"| {name} | {_t(t)} | {t / best:.2f} |", file=out)
        print("\nPer layer (" + r["best"] + "): " + ", ".join(f"{l['name']} {_t(l['time_s'])}" for l in r["layers"]),
              file=out)


def size_section(res, out):
    # as docs/BENCHMARKS.md's table: against the layers as built and against the network before pruning (dead-neuron
    # removal shrinks layers; bench_size's ratio_original); the paper networks' random masks shrink nothing
    print("\n| network | weights stored (B) | dense fp32 of the layers built (B) | × smaller | dense fp32 before pruning (B) "
          "| × smaller |", file=out)
    print("|---|---|---|---|---|---|", file=out)
    for r in res:
        orig = r.get("original_dense_weights_bytes", r["dense_weights_bytes"])
        ratio_orig = r.get("ratio_original", orig / r["weights_bytes"])
        print(f"| {r['net']} | {r['weights_bytes']:,} | {r['dense_weights_bytes']:,} | {r['ratio']:.2f} | {orig:,} | "
              f"{ratio_orig:.2f} |", file=out)
    print("\n| network | arena (B) | largest live set (B) | sum of intermediate activations (B) | with input + output (B) |",
          file=out)
    print("|---|---|---|---|---|", file=out)
    for r in res:
        if "memory" in r:
            m = r["memory"]
            print(f"| {r['net']} | {m['arena_bytes']:,} | {m['live_bytes_bound']:,} | {m['sum_activations_bytes']:,} | "
                  f"{m['sum_activations_with_io_bytes']:,} |", file=out)
    rows = [(r["net"], k, r[k]) for r in res for k in ("cortex_m4", "cortex_m4_dense") if k in r]
    if rows:
        print("\n| Cortex-M4 build | library text | library rodata | whole image text + rodata | image data + bss |",
              file=out)
        print("|---|---|---|---|---|", file=out)
        for net, k, s in rows:
            lib, img = s["library"], s.get("verification_image", {})
            print(f"| {net} {'sparse' if k == 'cortex_m4' else 'dense'} | {lib['text']:,} | {lib['rodata']:,} | "
                  f"{img.get('text', 0) + img.get('rodata', 0):,} | {img.get('data', 0) + img.get('bss', 0):,} |", file=out)


def arm_section(rows, out):
    """bench_arm.py's rows. Sparse per nonzero: fc per nonzero weight (= per nonzero MAC at batch 1); conv per nonzero
    MAC (`sparse_per_nz_mac`: nonzeros x output pixels), as bench_arm prints and docs/BENCHMARKS.md quotes, not its
    per nonzero weight (`sparse_per_nnz`, hundreds of instructions: each weight is used at every output pixel)."""
    print("\n| target | layer | density | best dense (instr, /MAC) | best sparse (instr, /nonzero) | sparse ÷ dense | "
          "goal 3·d | met |", file=out)
    print("|---|---|---|---|---|---|---|---|", file=out)
    for r in rows:
        if r.get("kind") == "conv":
            per = f"{r['sparse_per_nz_mac']:.2f} per nonzero MAC"
        else:
            per = f"{r['sparse_per_nnz']:.2f}"
        print(f"| {r['target']} | {r['layer']} | {r['density']:.0%} | {r['best_dense']:,.0f} ({r['dense_per_mac']:.2f}) | "
              f"{r['best_sparse']:,.0f} ({per}) | {r['ratio']:.3f} | {r['goal']:.2f} | "
              f"{'yes' if r['ratio'] <= r['goal'] else 'no'} |", file=out)


def goals(d: Path, out):
    L = _load(d, "layers.json")
    M = _load(d, "models.json")
    print("\n| goal | measured | met |", file=out)
    print("|---|---|---|", file=out)
    if L:
        by = {(r["layer"], r["batch"]): r for r in L["layers"]}
        r = by.get(("synthetic.fc4096", 1))
        if r:
            ts, ns = _best(r, "prunec-sparse")
            a, b = r["median_s"]["pytorch dense"] / ts, r["median_s"]["pytorch csr int32"] / ts
            print(f"| 4096x4096 fc at 10%: >= 10x PyTorch dense | {a:.2f}x ({ns}) | {'yes' if a >= 10 else 'no'} |", file=out)
            print(f"| 4096x4096 fc at 10%: >= 1.5x PyTorch CSR int32 | {b:.2f}x | {'yes' if b >= 1.5 else 'no'} |", file=out)
        for key in ("alexnet.fc6", "vgg16.fc6"):
            r = by.get((key, 1))
            if r:
                ts, ns = _best(r, "prunec-sparse")
                sp = r["median_s"]["pytorch dense"] / ts
                bound = r["dense_bytes"] / r["sparse_bytes"]
                print(f"| {key}: >= 70% of the byte bound ({bound:.1f}x) vs PyTorch dense | {sp:.2f}x = "
                      f"{100 * sp / bound:.0f}% ({ns}) | {'yes' if sp >= 0.7 * bound else 'no'} |", file=out)
    if M:
        for r in M["models"]:
            m = r["median_s"]
            best = m[r["best"]]
            a, b = m["onnxruntime dense"] / best, m["onnxruntime pruned"] / best
            print(f"| {r['model']} whole: >= 5x ONNX Runtime dense | {a:.2f}x ({r['best']}) | {'yes' if a >= 5 else 'no'} |",
                  file=out)
            print(f"| {r['model']} whole: faster than ONNX Runtime pruned | {b:.2f}x | {'yes' if b > 1 else 'no'} |", file=out)
            if "litert dense" in m:  # the phone anchor; no numeric goal in the issue
                print(f"| {r['model']} whole: vs LiteRT (XNNPACK) dense / pruned | {m['litert dense'] / best:.2f}x / "
                      f"{m['litert pruned'] / best:.2f}x | (no goal) |", file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--in", dest="inp", default=str(HERE.parent / "build" / "bench"),
                    help="run_all.py's --out (default: build/bench of this checkout)")
    a = ap.parse_args(argv)
    d = Path(a.inp)
    names = ("layers.json", "sweep.json", "models.json", "size.json", "arm.json")
    if not d.is_dir():
        ap.error(f"--in {a.inp}: not a folder (the --out of run_all.py, e.g. build/bench)")
    if not any((d / n).is_file() for n in names):
        ap.error(f"--in {a.inp}: none of {', '.join(names)} there; nothing to report")
    out = io.StringIO()
    print("## Goals", file=out)
    goals(d, out)
    for name, title, fn in (("layers.json", "Single layers", lambda j: layers_section(j, out)),
                            ("sweep.json", "Density sweep", lambda j: sweep_section(j, out)),
                            ("models.json", "Whole networks", lambda j: models_section(j, out)),
                            ("size.json", "Size and memory", lambda j: size_section(j, out)),
                            ("arm.json", "Arm instruction counts", lambda j: arm_section(j, out))):
        j = _load(d, name)
        if j is not None:
            print(f"\n## {title}", file=out)
            fn(j)
    sys.stdout.write(out.getvalue())


if __name__ == "__main__":
    main()
