#!/usr/bin/env python3
"""Whole networks, batch 1, one thread, side by side in one process: prunec's generated C (host portable and
x86_64-avx2 builds of the pruned model, and of the dense model) against ONNX Runtime (1 intra-op thread, all
graph optimisations) and LiteRT (the TFLite runtime, 1 thread, its default XNNPACK delegate; the model written
as .tflite by benchmarks/tflite_export.py, checked against PyTorch on 100 Fashion-MNIST test images first) on
the dense and on the pruned model, and PyTorch eager. LiteRT is skipped, with a note, when ai-edge-litert /
tflite / flatbuffers are not installed (they are in the bench extra).

prunec builds are timed by `prunec bench`'s driver (C loop around NAME_run, loaded with ctypes); ONNX Runtime,
LiteRT and PyTorch through their Python APIs (their per-call Python overhead is included, as in any Python use;
each runtime's floor is reported: an Identity model's call time for ONNX Runtime, a one-RESHAPE model's for
LiteRT, both with the same copy in / run / copy out per call). Medians of >= 5 interleaved repetitions.

    .venv/bin/python benchmarks/bench_models.py --pruned lenet5=P.pt[,lenet300=Q.pt] [--dense lenet5=B.pt,...] [--input test]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "toolchain"))

import harness  # noqa: E402
from harness import Contender, py_timer  # noqa: E402

warnings.filterwarnings("ignore")


def ort_session(model, shape, path: Path):
    import onnxruntime as ort
    import torch

    torch.onnx.export(model.eval(), (torch.randn(1, *shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_floor(tmp: Path):
    """An Identity model of the same input size: what one ONNX Runtime call from Python costs by itself."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 784])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 784])])
    p = tmp / "identity.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    return s


# compile flags of a build variant beyond its target's own (CompiledBuild's extra_cflags), by the target's suffix
EXTRA_CFLAGS = {"bc": ("-O3", "-DPRUNEC_X86_FC_GATHER=0")}


def build(model_path: Path, target: str, out: Path, name: str):
    """`prunec build`; target "x86_64-avx2+x4" is x86_64-avx2 with the avx512x4 kernels preferred (the target
    file's ISA order is the codegen's kernel choice; this tries another order without a new target file), and
    "T@ra1" is target T built with `--row-align 1` (rows not padded: the fewest bytes), "T@sz" with
    `--skip-zero-inputs relu` (docs/BUILD.md "Skipping zero inputs"), "T@csr" with `--fc-layout rcsr` (every fc
    layer relative-indexed, none in the blocked sliced layout), "T@bc" that build compiled with
    -DPRUNEC_X86_FC_GATHER=0 (the avx512x4 fc's broadcast path on any CPU: on Intel cores the kernel otherwise
    takes its gather path; docs/BENCHMARKS.md "Intel")."""
    from dataclasses import replace

    from prunec import targets
    from prunec.build import build as do_build

    if target.endswith("@bc"):  # relative-indexed fc, compiled with -DPRUNEC_X86_FC_GATHER=0 (EXTRA_CFLAGS)
        return do_build(model_path, target[:-3], out, name, fc_layout="rcsr")
    if target.endswith("@csr"):
        return do_build(model_path, target[:-4], out, name, fc_layout="rcsr")
    if target.endswith("@ra1"):
        return do_build(model_path, target[:-4], out, name, row_align=1)
    if target.endswith("@sz"):
        return do_build(model_path, target[:-3], out, name, skip_zero_inputs="relu")
    if target != "x86_64-avx2+x4":
        return do_build(model_path, target, out, name)
    orig = targets.get

    def patched(n):
        t = orig(n)
        return replace(t, isa=("avx512x4",) + tuple(t.isa)) if n == "x86_64-avx2" else t
    targets.get = patched
    try:
        return do_build(model_path, "x86_64-avx2", out, name)
    finally:
        targets.get = orig


def litert_contenders(dm, pm, shape, x, tmp: Path, key: str, builtin: bool) -> tuple[list[Contender], dict]:
    """LiteRT on the dense and the pruned model (and the call floor), each .tflite checked against PyTorch on
    100 Fashion-MNIST test images; [] and a note when LiteRT is not installed. Per call, as onnxruntime's
    session.run: the input array copied in (set_tensor), invoke, the output copied out (get_tensor)."""
    import tflite_export as te

    why = te.available()
    if why:
        print(f"note: LiteRT skipped ({why})", file=sys.stderr)
        return [], {"skipped": why}
    imgs = te.test_images(100)
    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x  # NHWC (C = 1: same memory)
    cs, info = [], {}
    variants = [("litert dense", dm, True), ("litert pruned", pm, True)]
    if builtin:
        variants += [("litert dense [builtin kernels, no XNNPACK]", dm, False),
                     ("litert pruned [builtin kernels, no XNNPACK]", pm, False)]
    for label, m, xnn in variants:
        path = tmp / f"{key}-{label.split()[1]}.tflite"
        if not path.exists():
            te.export(m, shape, path, description=f"prunec {key} {label.split()[1]}")
        rt = te.LiteRT(path, num_threads=1, xnnpack=xnn)
        err = te.verify(m, rt, imgs)
        if xnn and not rt.xnnpack():
            print(f"warning: {label}: XNNPACK did not take the whole graph (nodes {rt.ops()})", file=sys.stderr)
        info[label] = {"max_abs_diff_vs_pytorch_100_images": err, "xnnpack_whole_graph": rt.xnnpack(),
                       "nodes": rt.ops(), "tflite_bytes": path.stat().st_size}
        cs.append(Contender(label, (lambda rt: py_timer(lambda: rt.run(xn)))(rt), "litert"))
    floor = te.LiteRT(te.identity_model(784), num_threads=1)
    xin = np.zeros((1, 784), np.float32)
    cs.append(Contender("litert call floor (RESHAPE)", py_timer(lambda: floor.run(xin)), "floor"))
    info["litert call floor (RESHAPE)"] = {"xnnpack_whole_graph": floor.xnnpack(), "nodes": floor.ops()}
    return cs, info


def bench_model(key: str, pruned_ckpt: Path, dense_ckpt: Path | None, tmp: Path, reps: int, target_s: float,
                litert_builtin: bool = False, test_input: bool = False):
    import torch

    from prunec import checkpoint
    from prunec.bench import CompiledBuild

    torch.set_num_threads(1)
    ck = checkpoint.load(pruned_ckpt)
    pm = ck.model.eval()
    shape = tuple(ck.input_shape) if getattr(ck, "input_shape", None) else None
    if shape is None:
        from prunec import models
        shape = models.input_shape(key)
    if dense_ckpt is not None:
        dm = checkpoint.load(dense_ckpt).model.eval()
    else:  # same architecture, dense random weights: timing does not depend on the values
        from prunec import models
        dm = models.create(key).eval()
    if test_input:  # the first Fashion-MNIST test image, normalised as in training: a ReLU's zeros as in use
        from prunec import data
        x = data.load("fashion-mnist").test.x[:1].numpy().reshape(1, *shape).astype(np.float32)
    else:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, *shape)).astype(np.float32)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        ref = pm(xt).numpy().ravel()

    cs = []
    results = {"model": key, "pruned": str(pruned_ckpt), "dense": str(dense_ckpt) if dense_ckpt else "random",
               "input": "fashion-mnist test image 0" if test_input else "random normal (seed 0)"}
    builds = {}
    from prunec import targets as targets_mod

    x86_isas = targets_mod.get("x86_64-avx2").isa  # after the AVX-512 probe
    for label, ckpt, target in (("prunec pruned [host: portable]", pruned_ckpt, "host"),
                                ("prunec pruned [x86_64-avx2]", pruned_ckpt, "x86_64-avx2"),
                                ("prunec pruned [x86_64-avx2, avx512x4 first]", pruned_ckpt, "x86_64-avx2+x4"),
                                ("prunec pruned [x86_64-avx2, --row-align 1]", pruned_ckpt, "x86_64-avx2@ra1"),
                                ("prunec pruned [x86_64-avx2, --fc-layout rcsr]", pruned_ckpt, "x86_64-avx2@csr"),
                                ("prunec pruned [x86_64-avx2, --fc-layout rcsr, fc broadcast path]", pruned_ckpt,
                                 "x86_64-avx2@bc"),
                                ("prunec pruned [x86_64-avx2, --skip-zero-inputs relu]", pruned_ckpt, "x86_64-avx2@sz"),
                                ("prunec dense [x86_64-avx2]", dense_ckpt, "x86_64-avx2")):
        if ckpt is None:
            continue
        if target.endswith(("+x4", "@bc")) and "avx512x4" not in x86_isas:  # (PRUNEC_AVX512=0, or a CPU without it:
            continue  # these two variants are about the avx512x4 kernels)
        out = tmp / f"{key}-{target.replace('+', '-').replace('@', '-')}-{'p' if ckpt == pruned_ckpt else 'd'}"
        r = build(ckpt, target, out, key)
        cb = CompiledBuild(out, EXTRA_CFLAGS.get(target.rpartition("@")[2], ("-O3",)))
        cb.set_input(x)
        cb.run_total(1)
        if ckpt == pruned_ckpt:
            err = float(np.max(np.abs(cb.output() - ref)) / (np.max(np.abs(ref)) + 1e-30))
            assert err < 1e-3, f"{label}: output differs from PyTorch (rel err {err:.1e})"
        builds[label] = (cb, r.manifest)
        cs.append(Contender(label, (lambda cb: lambda n: cb.run_total(n))(cb), "prunec"))
        results.setdefault("manifests", {})[label] = {k: r.manifest["totals"][k] for k in
                                                      ("weights_bytes", "dense_weights_bytes", "macs", "dense_macs")}
        results["manifests"][label]["arena_bytes"] = r.manifest["arena_bytes"]
        results["manifests"][label]["kernels"] = r.manifest["kernels"]

    feeds = {"x": x}
    for label, m in (("onnxruntime dense", dm), ("onnxruntime pruned", pm)):
        s = ort_session(m, shape, tmp / f"{key}-{label.split()[-1]}.onnx")
        if label.endswith("pruned"):
            got = s.run(None, feeds)[0].ravel()
            assert np.max(np.abs(got - ref)) / (np.max(np.abs(ref)) + 1e-30) < 1e-3
        cs.append(Contender(label, (lambda s: py_timer(lambda: s.run(None, feeds)))(s), "onnxruntime"))
    idn = ort_floor(tmp)
    xin = np.zeros((1, 784), np.float32)
    cs.append(Contender("onnxruntime call floor (Identity)", py_timer(lambda: idn.run(None, {"x": xin})), "floor"))
    lcs, results["litert"] = litert_contenders(dm, pm, shape, x, tmp, key, litert_builtin)
    cs += lcs

    def torch_fwd(m):
        def f():
            with torch.inference_mode():
                return m(xt)
        return f
    cs.append(Contender("pytorch eager dense", py_timer(torch_fwd(dm)), "pytorch"))
    cs.append(Contender("pytorch eager pruned", py_timer(torch_fwd(pm)), "pytorch"))
    harness.measure(cs, reps=reps, target_s=target_s)
    results["median_s"] = {c.name: c.median for c in cs}
    results["times_s"] = {c.name: c.times for c in cs}
    # per-layer split of the best prunec pruned build
    best = min((c for c in cs if c.name.startswith("prunec pruned")), key=lambda c: c.median)
    from prunec.bench import bench as pbench
    cb, man = builds[best.name]
    lr = pbench(None, reps=reps, target_s=target_s, cb=cb)
    results["best"] = best.name
    results["layers"] = [{"name": l["name"], "op": l["op"], "kernel": l["kernel"], "time_s": t,
                          "macs": l["macs"], "density": l["density"]} for l, t in zip(man["layers"], lr.layer_medians())]
    return results


def print_results(r, out=sys.stdout):
    m = r["median_s"]
    best = m[r["best"]]
    print(f"\n## {r['model']} (batch 1, one thread; medians of interleaved repetitions)", file=out)
    print("| contender | time per inference | × vs best prunec |", file=out)
    print("|---|---|---|", file=out)
    for name, t in sorted(m.items(), key=lambda kv: kv[1]):
        print(f"| {name} | {t * 1e6:.1f} µs | {t / best:.2f} |", file=out)
    lite = (f"× LiteRT dense {m['litert dense'] / best:.2f}, × LiteRT pruned {m['litert pruned'] / best:.2f}, "
            if "litert dense" in m else "")
    print(f"\nbest prunec ({r['best']}): × ONNX Runtime dense {m['onnxruntime dense'] / best:.2f}, "
          f"× ONNX Runtime pruned {m['onnxruntime pruned'] / best:.2f}, {lite}× PyTorch eager dense "
          f"{m['pytorch eager dense'] / best:.2f}", file=out)
    li = r.get("litert", {})
    if "litert dense" in li:
        print("LiteRT: " + "; ".join(
            f"{k}: {'whole graph on XNNPACK' if v['xnnpack_whole_graph'] else 'not on XNNPACK'}, max abs diff vs "
            f"PyTorch {v['max_abs_diff_vs_pytorch_100_images']:.1e} (100 test images), .tflite {v['tflite_bytes']} B"
            for k, v in li.items() if "max_abs_diff_vs_pytorch_100_images" in v), file=out)
    print("per layer: " + ", ".join(f"{l['name']} {l['time_s'] * 1e6:.2f} µs" for l in r["layers"]), file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pruned", required=True, help="model=checkpoint,... (prunec checkpoints)")
    ap.add_argument("--dense", default="", help="model=checkpoint,... (dense baselines; default random weights)")
    ap.add_argument("--reps", type=harness.positive_int, default=9)
    ap.add_argument("--target-ms", type=float, default=40.0)
    ap.add_argument("--json", default="")
    ap.add_argument("--input", choices=("random", "test"), default="random",
                    help="the input every contender runs: random normal (the default; what the goals are measured on) "
                         "or the first Fashion-MNIST test image (a ReLU's zeros as in use: what --skip-zero-inputs "
                         "meets)")
    ap.add_argument("--litert-builtin", action="store_true",
                    help="also time LiteRT with its builtin kernels (no default XNNPACK delegate)")
    a = ap.parse_args(argv)
    if not a.target_ms > 0:
        ap.error(f"--target-ms {a.target_ms}: give a positive time per contender per repetition")
    pruned = harness.key_paths(ap, "--pruned", a.pruned)
    dense = harness.key_paths(ap, "--dense", a.dense)
    if not pruned:
        ap.error("--pruned: give at least one KEY=CHECKPOINT (e.g. lenet5=lenet5_pruned.pt)")
    alone = [k for k in dense if k not in pruned]
    if alone:
        ap.error(f"--dense {alone[0]}=...: no --pruned {alone[0]}=... to compare it with")
    harness.check_checkpoints(ap, "--pruned", pruned)
    harness.check_checkpoints(ap, "--dense", dense)
    harness.pin_one_core()
    allr = []
    with tempfile.TemporaryDirectory(prefix="prunec-models-") as tmp:
        for key, p in pruned.items():
            r = bench_model(key, Path(p), Path(dense[key]) if key in dense else None, Path(tmp), a.reps,
                            a.target_ms / 1e3, a.litert_builtin, a.input == "test")
            print_results(r)
            allr.append(r)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"machine": harness.machine_description(), "models": allr}, indent=1))


if __name__ == "__main__":
    main()
