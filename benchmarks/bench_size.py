#!/usr/bin/env python3
"""Size and memory: weight storage against dense fp32 (from `prunec build` manifests), the arena against the
sum of all activations and against the planner's lower bound (the largest live set), and for Cortex-M4 the
section sizes of the model library and of a whole linked image (arm-none-eabi-size -A), and the worst-case stack of
NAME_run (prunec.stack) that the board's RAM must hold beside the arena.

LeNet-300-100 and LeNet-5 come from pruned checkpoints (`prunec prune`); AlexNet and VGG-16 get the paper's
per-layer densities as uniformly random masks on random weights (storage depends only on the masks), encoded
by the same per-layer choice as `prunec build` (prunec.encode.choose_encoding). Storage is compared with the
dense fp32 size of the layers as built and, for checkpoints, with the network before pruning (dead-neuron removal
shrinks layers; the checkpoint keeps their original sizes).

    .venv/bin/python benchmarks/bench_size.py --pruned lenet300=P.pt,lenet5=Q.pt [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "toolchain"))

import harness  # noqa: E402

# Han et al. 2015, Tables 4 and 5 (AlexNet, VGG-16): fraction of weights kept per layer.
PAPER = {
    "alexnet": {"conv1": 0.84, "conv2": 0.38, "conv3": 0.35, "conv4": 0.37, "conv5": 0.37,
                "fc6": 0.09, "fc7": 0.09, "fc8": 0.25},
    "vgg16": {"conv1_1": 0.58, "conv1_2": 0.22, "conv2_1": 0.34, "conv2_2": 0.36, "conv3_1": 0.53, "conv3_2": 0.24,
              "conv3_3": 0.42, "conv4_1": 0.32, "conv4_2": 0.27, "conv4_3": 0.34, "conv5_1": 0.35, "conv5_2": 0.29,
              "conv5_3": 0.36, "fc6": 0.04, "fc7": 0.04, "fc8": 0.23},
}


def paper_storage(net: str, seed: int = 0, index_bits=None) -> dict:
    """Per-layer storage of `net` at the paper's densities (random masks), without building C."""
    import torch

    from prunec import models
    from prunec.encode import choose_encoding, index_bits_for

    rng = np.random.default_rng(seed)
    m = models.create(net)
    names = list(PAPER[net])
    layers = models.prunable_layers(m)
    assert len(layers) == len(names), (net, [n for n, _ in layers])
    rows, tot, dense = [], 0, 0
    for (mod_name, mod), lname in zip(layers, names):
        w = mod.weight.detach().numpy().reshape(mod.weight.shape[0], -1).astype(np.float32)
        d = PAPER[net][lname]
        keep = rng.random(w.shape, dtype=np.float32) < d
        op = "conv2d" if mod.weight.dim() == 4 else "fc"
        enc = choose_encoding(np.where(keep, w, 0).astype(np.float32), bits_options=index_bits or index_bits_for(op))
        rows.append({"layer": lname, "density": d, "format": enc.format, "index_bits": enc.index_bits,
                     "bytes": enc.total_bytes, "dense_bytes": w.size * 4, "fillers": enc.fillers})
        tot += enc.total_bytes
        dense += w.size * 4
        del w, keep, enc
    del m, torch
    return {"net": net, "weights_bytes": tot, "dense_weights_bytes": dense, "ratio": dense / tot, "layers": rows}


def activations(manifest: dict) -> dict:
    """Sum of every layer's output (fp32) and the input, against the arena and the live-set lower bound."""
    outs = [4 * math.prod(l["output_shape"]) for l in manifest["layers"]]
    return {"arena_bytes": manifest["arena_bytes"], "live_bytes_bound": manifest["plan"]["live_bytes_bound"],
            "sum_activations_bytes": sum(outs[:-1]),  # the last output goes to the caller's buffer
            "sum_activations_with_io_bytes": sum(outs) + 4 * manifest["input_size"]}


def lenet_sizes(key: str, ckpt: Path, tmp: Path, index_bits=None) -> dict:
    from prunec import runners
    from prunec.build import build

    r = build(ckpt, "host", tmp / f"{key}-host", key, index_bits=index_bits)
    t = r.manifest["totals"]
    out = {"net": key, "weights_bytes": t["weights_bytes"], "dense_weights_bytes": t["dense_weights_bytes"],
           "ratio": t["dense_weights_bytes"] / t["weights_bytes"], "bias_bytes": t["bias_bytes"],
           "layers": [{"layer": l["name"], "density": l["density"], "format": l["format"],
                       "index_bits": l["index_bits"], "bytes": sum(l["bytes"].values()) - l["bytes"]["bias"],
                       "dense_bytes": l["dense_bytes"]} for l in r.manifest["layers"] if l["format"]],
           "memory": activations(r.manifest)}
    # the network as it was before pruning: dead-neuron removal shrinks layers, so the built layers' own dense
    # size understates what pruning saved; the checkpoint keeps each layer's original weight count
    from prunec import checkpoint
    from prunec.commands_prune import info_dict

    total = info_dict(checkpoint.load(ckpt))["params_total"]
    out["original_dense_weights_bytes"] = 4 * total
    out["ratio_original"] = 4 * total / t["weights_bytes"]
    try:
        m4 = build(ckpt, "cortex-m4", tmp / f"{key}-m4", key, index_bits=index_bits)
        runners.build_runner(tmp / f"{key}-m4", m4.manifest, "cortex-m4")
        size = runners.record_size(tmp / f"{key}-m4", m4.manifest, "cortex-m4")
        out["cortex_m4"] = size
        # Cortex-M targets fuse each conv with the pool after it (prunec.fuse): their arena is smaller than host's
        out["memory_cortex_m4"] = {**activations(m4.manifest), "fused_conv_pool": m4.manifest["plan"]["fused_conv_pool"]}
        # the same network stored dense, for comparison
        import torch

        from prunec import checkpoint
        ck = checkpoint.load(ckpt)
        dm = ck.model
        with torch.no_grad():
            for p in dm.parameters():
                p.add_(1e-3)  # no exact zeros left: every layer is stored dense
        ep = torch.export.export(dm.eval(), (torch.randn(1, *ck.input_shape),))
        torch.export.save(ep, str(tmp / f"{key}-dense.pt2"))
        dd = build(tmp / f"{key}-dense.pt2", "cortex-m4", tmp / f"{key}-m4d", key)
        runners.build_runner(tmp / f"{key}-m4d", dd.manifest, "cortex-m4")
        out["cortex_m4_dense"] = runners.record_size(tmp / f"{key}-m4d", dd.manifest, "cortex-m4")
    except Exception as e:  # noqa: BLE001 - a missing cross toolchain must not hide the host figures
        out["cortex_m4_error"] = f"{type(e).__name__}: {e}"
    return out


def print_report(res: list[dict]) -> None:
    print("| network | weights stored | dense fp32 of the layers built | × smaller | dense fp32 before pruning | × smaller |")
    print("|---|---|---|---|---|---|")
    for r in res:
        orig = r.get("original_dense_weights_bytes", r["dense_weights_bytes"])
        print(f"| {r['net']} | {r['weights_bytes']:,} | {r['dense_weights_bytes']:,} | {r['ratio']:.2f} | {orig:,} | "
              f"{orig / r['weights_bytes']:.2f} |")
    for r in res:
        if "memory" in r:
            m = r["memory"]
            print(f"{r['net']}: arena {m['arena_bytes']:,} B, live-set lower bound {m['live_bytes_bound']:,} B, sum of "
                  f"intermediate activations {m['sum_activations_bytes']:,} B (with input and output "
                  f"{m['sum_activations_with_io_bytes']:,} B)")
        if "memory_cortex_m4" in r:
            m = r["memory_cortex_m4"]
            fused = ", ".join("+".join(p) for p in m["fused_conv_pool"]) or "none"
            print(f"{r['net']} cortex-m4 (conv+pool fused: {fused}): arena {m['arena_bytes']:,} B, live-set lower bound "
                  f"{m['live_bytes_bound']:,} B")
        for k in ("cortex_m4", "cortex_m4_dense"):
            if k in r:
                lib, img = r[k]["library"], r[k].get("verification_image", {})
                ln = r[k].get("linked")
                print(f"{r['net']} {k}: library text {lib['text']:,} rodata {lib['rodata']:,} data {lib['data']:,} "
                      f"bss {lib['bss']:,}"
                      + (f"; linked with --gc-sections from NAME_run (firmware's share) text {ln['text']:,} rodata "
                         f"{ln['rodata']:,}, flash {ln['flash']:,}" if ln else "")
                      + f"; whole image text+rodata {img.get('text', 0) + img.get('rodata', 0):,}"
                      + (f"; stack of NAME_run {lib['stack']:,}, RAM with arena, data and stack {lib['ram_with_stack']:,}"
                         if "stack" in lib else ""))
        if "cortex_m4_error" in r:
            print(f"{r['net']}: cortex-m4 sizes unavailable: {r['cortex_m4_error']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pruned", default="", help="lenet300=CKPT,lenet5=CKPT")
    ap.add_argument("--paper", default="alexnet,vgg16")
    ap.add_argument("--index-bits", default="", metavar="B[,B...]",
                    help="index widths every layer may use, as `prunec build --index-bits` (e.g. 1-16: the fewest "
                         "bytes); default: the build's per-op defaults")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    bits = harness.index_widths(ap, "--index-bits", a.index_bits) if a.index_bits else None
    pruned = harness.key_paths(ap, "--pruned", a.pruned)
    harness.check_checkpoints(ap, "--pruned", pruned)
    papers = [n for n in a.paper.split(",") if n]
    bad = [n for n in papers if n not in PAPER]
    if bad:
        ap.error(f"--paper {bad[0]}: no paper densities for it; choose from: {', '.join(PAPER)}")
    res = []
    with tempfile.TemporaryDirectory(prefix="prunec-size-") as tmp:
        for key, p in pruned.items():
            res.append(lenet_sizes(key, Path(p), Path(tmp), bits))
    for net in papers:
        res.append(paper_storage(net, index_bits=bits))
    print_report(res)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
