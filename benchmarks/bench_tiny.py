#!/usr/bin/env python3
"""Beyond the paper's networks: the four model shapes of MLPerf Tiny (what embedded engineers run today under TFLite
Micro and CMSIS-NN), pruned, built for x86_64-avx2 and timed side by side with ONNX Runtime, in one run.

  ResNet-8           image classification, 32x32x3 (3x3 stride-2 convs, 1x1 stride-2 shortcuts, residual adds)
  DS-CNN             keyword spotting, 49x10x1 MFCC (10x4 stride-2 conv, 4 depthwise-separable blocks)
  MobileNetV1-0.25   visual wake words, 96x96x3 (13 depthwise-separable blocks, relu6)
  FC autoencoder     anomaly detection, 640 inputs (10 fc layers with batch norm)

Each model gets random weights and random batch-norm statistics (timing does not depend on the values), then
`torch.nn.utils.prune.l1_unstructured` removes --sparsity of every conv and fc layer's weights (per layer, as a
per-layer recipe would; biases and batch norm kept), the pruned model is exported (`torch.export`) and built with
`prunec build --target x86_64-avx2`, and its C output is checked against PyTorch before timing. Contenders, timed
with interleaved repetitions (medians), batch 1, one thread:

  prunec pruned [x86_64-avx2]   the pruned build (sparse layers in relative-indexed CSR, the rest dense)
  prunec dense [x86_64-avx2]    the same architecture unpruned, built the same way (prunec's dense kernels)
  onnxruntime dense / pruned    ONNX Runtime 1 intra-op thread, all graph optimisations (its MLAS kernels are
                                dense: the pruned model runs at the dense model's speed)

With --arm TARGETS (e.g. cortex-m4,aarch64-neon) the pruned and the dense model are also built for each Arm
target and their instructions per inference counted under QEMU with the project's counter plugin (as
benchmarks/bench_fuse.py counts whole models: a program calls NAME_run N times, (insns(N) - insns(0)) / N), each
each build verified against PyTorch first (`prunec verify`, 8 random inputs under QEMU).

  .venv/bin/python benchmarks/bench_tiny.py [--models resnet8,dscnn,mbv1,ae] [--sparsity 0.8] [--reps 7]
                                            [--core 1] [--arm cortex-m4,...] [--json OUT.json]
Needs the bench extra (onnxruntime, onnx): `pip install -e .[test,bench]`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import Contender, measure, py_timer  # noqa: E402

warnings.filterwarnings("ignore")


def _models():
    import torch
    from torch import nn

    class ResNet8(nn.Module):
        def __init__(self):
            super().__init__()

            def block(cin, cout, s):
                return nn.ModuleDict(dict(
                    c1=nn.Conv2d(cin, cout, 3, s, 1), b1=nn.BatchNorm2d(cout),
                    c2=nn.Conv2d(cout, cout, 3, 1, 1), b2=nn.BatchNorm2d(cout),
                    sc=nn.Conv2d(cin, cout, 1, s) if (s != 1 or cin != cout) else nn.Identity()))
            self.stem, self.bn = nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16)
            self.blocks = nn.ModuleList([block(16, 16, 1), block(16, 32, 2), block(32, 64, 2)])
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.stem(x)))
            for b in self.blocks:
                y = b["b2"](b["c2"](torch.relu(b["b1"](b["c1"](x)))))
                x = torch.relu(y + b["sc"](x))
            return self.fc(nn.functional.avg_pool2d(x, 8).flatten(1))

    class DSCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0, self.b0 = nn.Conv2d(1, 64, (10, 4), (2, 2), padding=(5, 1)), nn.BatchNorm2d(64)
            layers = []
            for _ in range(4):
                layers += [nn.Conv2d(64, 64, 3, 1, 1, groups=64), nn.BatchNorm2d(64), nn.ReLU(),
                           nn.Conv2d(64, 64, 1), nn.BatchNorm2d(64), nn.ReLU()]
            self.body, self.fc = nn.Sequential(*layers), nn.Linear(64, 12)

        def forward(self, x):
            return self.fc(self.body(torch.relu(self.b0(self.c0(x)))).mean((2, 3)))

    class MobileNetV1(nn.Module):
        def __init__(self, alpha=0.25):
            super().__init__()

            def c(n):
                return max(8, int(n * alpha))
            cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
            layers = [nn.Conv2d(3, c(32), 3, 2, 1), nn.BatchNorm2d(c(32)), nn.ReLU6()]
            cin = c(32)
            for n, s in cfg:
                layers += [nn.Conv2d(cin, cin, 3, s, 1, groups=cin), nn.BatchNorm2d(cin), nn.ReLU6(),
                           nn.Conv2d(cin, c(n), 1), nn.BatchNorm2d(c(n)), nn.ReLU6()]
                cin = c(n)
            self.features, self.fc = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1)), nn.Linear(cin, 2)

        def forward(self, x):
            return self.fc(self.features(x).flatten(1))

    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
            layers = []
            for i in range(len(dims) - 1):
                layers.append(nn.Linear(dims[i], dims[i + 1]))
                if i < len(dims) - 2:
                    layers += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU()]
            self.net = nn.Sequential(*layers)

        def forward(self, x):
            return self.net(x)

    return {"resnet8": (ResNet8, (3, 32, 32)), "dscnn": (DSCNN, (1, 49, 10)),
            "mbv1": (MobileNetV1, (3, 96, 96)), "ae": (AutoEncoder, (640,))}


MODELS = ("resnet8", "dscnn", "mbv1", "ae")


def make(key: str, sparsity: float, seed: int = 0):
    """(dense model, pruned model, input shape): the same random weights, the pruned one with `sparsity` of every
    conv / fc layer's weights removed by magnitude (torch.nn.utils.prune.l1_unstructured, then baked in)."""
    import copy

    import torch
    from torch import nn
    from torch.nn.utils import prune

    cls, shape = _models()[key]
    torch.manual_seed(seed)
    dense = cls()
    for m in dense.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    dense.eval()
    pruned = copy.deepcopy(dense)
    if sparsity > 0:
        for m in pruned.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                prune.l1_unstructured(m, "weight", amount=sparsity)
                prune.remove(m, "weight")
    return dense, pruned.eval(), shape


def bench_model(key: str, sparsity: float, tmp: Path, reps: int, target_s: float, arm=(),
                plugin: Path | None = None) -> dict:
    """One model's contenders timed, plus its instruction counts on the `arm` targets (QEMU counter `plugin`)."""
    import torch

    from bench_models import ort_session
    from prunec.bench import CompiledBuild
    from prunec.build import build

    torch.set_num_threads(1)
    dense, pruned, shape = make(key, sparsity)
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    res = {"model": key, "input_shape": list(shape), "sparsity": sparsity}
    cs = []
    for label, m in (("prunec pruned [x86_64-avx2]", pruned), ("prunec dense [x86_64-avx2]", dense)):
        pt2 = tmp / f"{key}-{label.split()[1]}.pt2"
        torch.export.save(torch.export.export(m, (torch.from_numpy(x),)), str(pt2))
        out = tmp / f"{key}-{label.split()[1]}"
        r = build(pt2, "x86_64-avx2", out, key)
        cb = CompiledBuild(out)
        cb.set_input(x)
        cb.run_total(1)
        with torch.inference_mode():
            ref = m(torch.from_numpy(x)).numpy().ravel()
        err = float(np.max(np.abs(cb.output() - ref)) / (np.max(np.abs(ref)) + 1e-30))
        assert err < 1e-3, f"{key} {label}: output differs from PyTorch (rel err {err:.1e})"
        t = r.manifest["totals"]
        res.setdefault("builds", {})[label] = {
            "weights_bytes": t["weights_bytes"], "dense_weights_bytes": t["dense_weights_bytes"], "macs": t["macs"],
            "dense_macs": t["dense_macs"], "arena_bytes": r.manifest["arena_bytes"], "max_rel_err_vs_pytorch": err}
        cs.append(Contender(label, (lambda cb: lambda n: cb.run_total(n))(cb), "prunec"))
    for label, m in (("onnxruntime dense", dense), ("onnxruntime pruned", pruned)):
        s = ort_session(m, shape, tmp / f"{key}-{label.split()[-1]}.onnx")
        cs.append(Contender(label, (lambda s: py_timer(lambda: s.run(None, {"x": x})))(s), "onnxruntime"))
    measure(cs, reps=reps, target_s=target_s)
    res["median_s"] = {c.name: c.median for c in cs}
    res["times_s"] = {c.name: c.times for c in cs}
    for t in arm:
        res.setdefault("arm_insns_per_inference", {})[t] = arm_counts(key, t, {"pruned": pruned, "dense": dense},
                                                                      tmp, plugin)
    return res


def arm_counts(key: str, target: str, models: dict, tmp: Path, plugin: Path) -> dict:
    """Instructions per inference of each model built for `target`; each build verified first (`prunec verify`:
    8 random inputs under QEMU against the PyTorch model)."""
    from bench_fuse import arm_counts as count
    from prunec import targets as T
    from prunec.build import build
    from prunec.verify import verify

    out = {}
    for label in models:
        pt2 = tmp / f"{key}-{label}.pt2"
        d = tmp / f"{key}-{label}-{target}"
        build(pt2, target, d, key)
        rep = verify(d, random=8)
        assert rep.ok, f"{key} {label} on {target}: verify failed\n{rep.text()}"
        work = tmp / f"{key}-{label}-{target}-count"
        work.mkdir(exist_ok=True)
        out[label] = count(T.get(target), d, key, 2, work, plugin)[0]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--sparsity", type=float, default=0.8, help="fraction of each conv/fc layer's weights removed")
    ap.add_argument("--reps", type=harness.int_at_least(1), default=7)
    ap.add_argument("--target-ms", type=float, default=30.0, help="milliseconds per contender per repetition")
    ap.add_argument("--core", type=int, default=None, help="pin to this CPU core")
    ap.add_argument("--arm", default="", help="Arm targets to count instructions on (e.g. cortex-m4,aarch64-neon)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    arm = [t.strip() for t in a.arm.split(",") if t.strip()]
    from prunec import targets as T
    arm_ok = [n for n, t in T.all_targets().items() if t.runner != "cffi"]
    bad_t = [t for t in arm if t not in arm_ok]
    if bad_t:
        ap.error(f"--arm: {', '.join(bad_t)} is not an Arm target (choose from {', '.join(sorted(arm_ok))})")
    keys = [k.strip() for k in a.models.split(",") if k.strip()]
    bad = [k for k in keys if k not in MODELS]
    if bad:
        ap.error(f"--models: unknown {', '.join(bad)} (choose from {', '.join(MODELS)})")
    if not 0 <= a.sparsity < 1:
        ap.error("--sparsity must be in [0, 1)")
    if a.core is not None:
        harness.pin_one_core(a.core)
    out = {"machine": harness.machine_description(), "command": " ".join(sys.argv), "models": []}
    with tempfile.TemporaryDirectory(prefix="prunec-tiny-") as td:
        plugin = None
        if arm:
            import bench_arm

            plugin = bench_arm.build_plugin(Path(td))  # the QEMU counter plugin, built once for every count
        for k in keys:
            r = bench_model(k, a.sparsity, Path(td), a.reps, a.target_ms / 1e3, arm, plugin)
            out["models"].append(r)
            m = r["median_s"]
            b = r["builds"]["prunec pruned [x86_64-avx2]"]
            print(f"\n{k}: {a.sparsity:.0%} of each layer's weights pruned, weights {b['weights_bytes']:,} B "
                  f"(x{b['dense_weights_bytes'] / b['weights_bytes']:.2f} smaller than dense), "
                  f"{b['macs']:,} of {b['dense_macs']:,} MACs")
            for name, t in sorted(m.items(), key=lambda kv: kv[1]):
                print(f"  {name:32s} {t * 1e6:10.1f} us")
            p = m["prunec pruned [x86_64-avx2]"]
            print(f"  prunec pruned: x{m['onnxruntime dense'] / p:.2f} ONNX Runtime dense, "
                  f"x{m['prunec dense [x86_64-avx2]'] / p:.2f} prunec dense")
            for t, c in r.get("arm_insns_per_inference", {}).items():
                print(f"  {t}: pruned {c['pruned']:,.0f} instructions per inference, dense {c['dense']:,.0f} "
                      f"(x{c['dense'] / c['pruned']:.2f} fewer)")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
