"""Review of the benchmark scripts (benchmarks/), second walkthrough: a biased count and inputs that ran wrong.

* bench_fuse.py's Cortex-M instruction counts: the ITERS = 0 build of its program never used `arena` or `in`, so
  the linker dropped them (start-up zeroed a smaller .bss) and the input fill disappeared; (insns(N) - insns(0)) / N
  carried that work / N (LeNet-5, Cortex-M4: 1.66 M at --iters 1, 1.51 M at 5, 1.49 M at 10; 1.47 M in fact).
* Inputs that ran the wrong thing with exit 0 or ended in a traceback are refused with one `error:` line, exit 2.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "toolchain"))


class ConvPool(nn.Module):
    """A conv + max pool pair and an fc over a 28x28 input: an input fill and an arena large enough that dropping
    them shows in the count."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))


def test_fuse_count_excludes_setup(tmp_path):
    """bench_fuse's per-inference count equals the marginal count of one more call ((insns(2N) - insns(N)) / N)."""
    import bench_arm
    import bench_fuse
    from prunec import runners
    from prunec import targets as T
    from prunec.build import build

    t = T.get("cortex-m4")
    missing = [exe for exe, _ in t.missing_tools()] + [e for e in ("cc",) if shutil.which(e) is None]
    if missing:
        pytest.skip(f"cortex-m4: missing {', '.join(missing)}")
    torch.manual_seed(0)
    pt2 = tmp_path / "cp.pt2"
    torch.export.save(torch.export.export(ConvPool().eval(), (torch.zeros(1, 1, 28, 28),)), str(pt2))
    d = tmp_path / "build"
    build(pt2, "cortex-m4", d, name="cp", fuse_pool=True)
    plugin = bench_arm.build_plugin(tmp_path)
    lib = runners.build_library(d, json.loads((d / "manifest.json").read_text()), t)
    w = tmp_path / "w"
    w.mkdir()
    n = 2
    c = {k: bench_arm.count(t, bench_fuse.compile_count_prog(t, d, "cp", k, w, lib), plugin) for k in (0, n, 2 * n)}
    per, marginal = (c[n] - c[0]) / n, (c[2 * n] - c[n]) / n
    # before the fix: 267,000 against 249,200 here (the 784-float input fill and the .bss of `in` and the arena, / 2);
    # what is left is printf's cost of the outputs' values against zeros (a few instructions per output)
    assert abs(per - marginal) <= 0.002 * marginal, (per, marginal)


# ---------------------------------------------------------------------------------------------- refused inputs

def _refused(script: str, *args: str, cwd=None, fork: bool = False) -> str:
    """Run benchmarks/SCRIPT with ARGS: exit 2, no traceback, the last line `SCRIPT: error: ...`; that line.
    fork: in a fork of this process (forkrun), for arguments refused before any torch work (a new interpreter
    spends ~2.5 s importing torch); a fork that loads a checkpoint can hang in torch's thread pools."""
    if fork:
        from forkrun import run_script

        p = run_script(BENCH / script, args, cwd=cwd, timeout=120)
    else:
        p = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=120,
                           cwd=cwd)
    err = p.stderr.strip()
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], err[-2000:])
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith(f"{script}: error: "), err
    return last


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """An untrained LeNet-5 and LeNet-300-100 checkpoint (the scripts refuse before they run anything)."""
    from prunec import checkpoint, models

    d = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    out = {}
    for key in ("lenet5", "lenet300"):
        out[key] = str(checkpoint.save(d / f"{key}.pt", models.create(key), key))
    return out


def test_bench_models_refuses_another_models_checkpoint(ckpts):
    """`--pruned lenet300=<a LeNet-5 checkpoint>` ran and timed LeNet-5 against a random dense LeNet-300-100."""
    last = _refused("bench_models.py", "--pruned", f"lenet300={ckpts['lenet5']}")
    assert "is a lenet5 model, not lenet300" in last
    assert "not lenet5" in _refused("bench_models.py", "--pruned", f"lenet5={ckpts['lenet5']}",
                                    "--dense", f"lenet5={ckpts['lenet300']}")


@pytest.mark.parametrize("args,says", [
    (["--pruned", "bogus={lenet5}"], "unknown model 'bogus'"),
    (["--pruned", "lenet5={lenet5}", "--dense", "lenet300={lenet300}"], "no --pruned lenet300"),
    (["--pruned", "{lenet5}"], "give KEY=PATH"),
    (["--pruned", "lenet5={lenet5}", "--reps", "0"], "--reps"),
])
def test_bench_models_refuses_bad_keys(ckpts, args, says):
    assert says in _refused("bench_models.py", *(a.format(**ckpts) for a in args))


@pytest.mark.parametrize("args,says", [
    (["--pruned", "lenet300={lenet5}", "--paper", ""], "is a lenet5 model, not lenet300"),
    (["--pruned", "lenet9={lenet5}", "--paper", ""], "unknown model 'lenet9'"),
    (["--pruned", "{lenet5}", "--paper", ""], "give KEY=PATH"),
    (["--index-bits", "17", "--paper", ""], "--index-bits"),
])
def test_bench_size_refuses_bad_keys(ckpts, args, says):
    assert says in _refused("bench_size.py", *(a.format(**ckpts) for a in args))


def test_bench_arm_bits_refuses_conv_layers():
    """lenet5.conv1 was counted as a 20x25 fc (insn_main.c calls the fc kernel once)."""
    last = _refused("bench_arm_bits.py", "--layers", "lenet300.fc1,lenet5.conv1", fork=True)
    assert "conv layer" in last and "bench_arm.py" in last


@pytest.mark.parametrize("args,says", [
    (["--layers", "bogus"], "choose from: lenet300.fc1"),
    (["--targets", "host"], "target host"),
    (["--bits", "0"], "--bits"),
    (["--bits", "17"], "--bits"),
    (["--kernels", "sse"], "--kernels"),
])
def test_bench_arm_bits_refuses_bad_arguments(args, says):
    assert says in _refused("bench_arm_bits.py", *args, fork=True)


def test_report_arm_conv_per_nonzero_mac_and_size_before_pruning(tmp_path):
    """report.py put a conv layer's instructions per nonzero weight (hundreds) where bench_arm and the doc give them
    per nonzero MAC; its size table lacked the ratio against the network before pruning."""
    conv = {"target": "aarch64-neon", "layer": "lenet5.conv1", "kind": "conv", "density": 0.66, "best_dense": 235591,
            "dense_per_mac": 0.82, "best_sparse": 182030, "sparse_per_nnz": 546.64, "sparse_per_nz_mac": 0.95,
            "ratio": 0.773, "goal": 1.98}
    fc = {"target": "cortex-m4", "layer": "lenet300.fc2", "density": 0.09, "best_dense": 38935, "dense_per_mac": 1.30,
          "best_sparse": 15391, "sparse_per_nnz": 5.75, "ratio": 0.395, "goal": 0.27}
    (tmp_path / "arm.json").write_text(json.dumps([conv, fc]))
    (tmp_path / "size.json").write_text(json.dumps([
        {"net": "lenet5", "weights_bytes": 175604, "dense_weights_bytes": 1615080, "ratio": 9.197,
         "original_dense_weights_bytes": 1722000, "ratio_original": 9.806}]))
    p = subprocess.run([sys.executable, str(BENCH / "report.py"), "--in", str(tmp_path)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "182,030 (0.95 per nonzero MAC)" in p.stdout and "546" not in p.stdout, p.stdout
    assert "15,391 (5.75)" in p.stdout
    assert "| lenet5 | 175,604 | 1,615,080 | 9.20 | 1,722,000 | 9.81 |" in p.stdout, p.stdout


@pytest.mark.parametrize("script,args,says", [
    ("bench_layers.py", ["--layers", "bogus"], "choose from: lenet300.fc1"),
    ("bench_layers.py", ["--reps", "0"], "--reps"),
    ("bench_layers.py", ["--index-bits", "17"], "--index-bits"),
    ("bench_arm.py", ["--layers", "bogus"], "choose from: lenet300.fc1"),
    ("bench_arm.py", ["--targets", "host"], "target host"),
    ("bench_arm.py", ["--densities", "1.5"], "(0, 1]"),
    ("bench_arm.py", ["--index-bits", "17"], "--index-bits"),
    ("bench_arm.py", ["--x-zeros", "1"], "--x-zeros 1.0: give the share of zero inputs, in [0, 1)"),
    ("bench_arm.py", ["--conv", "x=1,2,3@0.5"], "then 4 to 7 integers"),
    ("bench_arm.py", ["--conv", "dw=4,6,6,3,1,0,3@0.5"], "groups must divide in_c and out_c"),
    ("bench_arm.py", ["--conv", "pw=4,6,4,1@1.5"], "density must be in (0, 1]"),
    ("bench_arm.py", ["--conv", "pw 4,6,4,1"], "write NAME=IN_C,IN_HW,OUT_C,K"),
    ("bench_layers.py", ["--x-zeros", "-0.1"], "--x-zeros -0.1: give the share of zero inputs, in [0, 1)"),
    ("bench_fuse.py", ["--model", "lenet5={model}", "--iters", "0"], "--iters"),
    ("bench_fuse.py", ["--model", "{model}"], "give KEY=PATH"),
    ("bench_fuse.py", ["--model", "lenet5={model}", "--targets", "host,bogus"], "target bogus"),
    ("recipe_sweep.py", [], "--grid"),
    ("run_all.py", ["--only", "layers,foo"], "unknown step foo"),
    ("plots.py", ["--in", "{missing}"], "not a folder"),
    ("report.py", ["--in", "{missing}"], "not a folder"),
])
def test_bad_arguments_one_error_line(script, args, says, tmp_path):
    model = tmp_path / "lenet5.pt2"
    model.write_bytes(b"")
    fill = {"model": str(model), "missing": str(tmp_path / "missing")}
    assert says in _refused(script, *(a.format(**fill) for a in args), cwd=tmp_path, fork=True)


def test_gradual_probe_help():
    """`gradual_probe.py --help` was int('--help'): a traceback."""
    p = subprocess.run([sys.executable, str(BENCH / "gradual_probe.py"), "--help"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "usage: gradual_probe.py" in p.stdout, p.stderr
    assert "seed" in _refused("gradual_probe.py", "notanumber", '{"E": 1, "lr": 0.1}')


def test_run_all_relative_out_is_taken_from_the_current_directory(tmp_path):
    """A relative --out was taken from the checkout's root (report.py/plots.py take --in from the current one).
    The plots step of an empty folder fails at once (nothing to plot), before anything is written."""
    p = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--only", "plots", "--out", "rel"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode != 0 and "nothing to plot" in p.stdout + p.stderr, (p.stdout, p.stderr)
    assert (tmp_path / "rel").is_dir()
    assert not (ROOT / "rel").exists()


def test_bench_layers_times_the_zero_skipping_kernels_with_zero_inputs():
    """--x-zeros: the fc inputs are a ReLU's output with that share of zeros, and every fc_rcsc kernel runs on the
    layer stored by columns, checked against the float64 reference before timing (a wrong kernel raises)."""
    import harness
    import bench_layers as bl
    import workloads

    lib_t = harness.kernels_lib()
    layer = workloads.by_key("lenet300.fc2")
    w, bias, x = workloads.random_layer(layer, 0)
    for z, want in ((0.0, 0), (0.65, sum(k.op == "fc_rcsc" for k in lib_t[2]))):
        xz = bl._relu_like(x, z, np.random.default_rng(7))
        assert z == 0 or 0.5 < float(np.mean(xz == 0)) < 0.8
        cs, _ = bl.fc_contenders(layer, w, bias, xz, 1, lib_t, torch_csr=False, scipy_csr=False, x_zeros=z)
        names = [c.name for c in cs if "zero inputs skipped" in c.name]
        assert len(names) == want >= (1 if z else 0), names


def test_bench_arm_counts_an_adhoc_conv(tmp_path):
    """--conv NAME=...: an ad-hoc conv shape counted like the workloads' (the MLPerf Tiny layers of
    docs/BENCHMARKS.md were measured this way), alone when --layers is not given."""
    import shutil as sh

    if not (sh.which("qemu-system-arm") and sh.which("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (make setup)")
    out = tmp_path / "a.json"
    p = subprocess.run([sys.executable, str(BENCH / "bench_arm.py"), "--targets", "cortex-m4", "--conv",
                        "pw3=8,3,8,1@0.5", "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = json.loads(out.read_text())
    assert [r["layer"] for r in rows] == ["adhoc.pw3"]
    assert 0 < rows[0]["nonzero"] < 64 and rows[0]["macs"] == 64 * 9 and rows[0]["best_sparse"] > 0
