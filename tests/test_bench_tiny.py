"""benchmarks/bench_tiny.py: the MLPerf Tiny model shapes it times (ResNet-8, DS-CNN, MobileNetV1-0.25, the fc
autoencoder) are pruned as it says and build and verify for x86_64-avx2, whose conv kernels take their strided,
dilated and dense-stored layers through the register tiles (runtime_c/src/avx512/f32-conv2d-rcsr-avx512-x4.c).
ONNX Runtime, the contender, is not in the test environment: the timing itself is the benchmark's."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from prunec.cli import main

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_tiny  # noqa: E402



@pytest.mark.parametrize("key", bench_tiny.MODELS)
def test_each_layer_pruned_to_the_sparsity_and_dense_untouched(key):
    dense, pruned, shape = bench_tiny.make(key, 0.8)
    for (name, d), (_, p) in zip(dense.named_modules(), pruned.named_modules()):
        if isinstance(d, (nn.Conv2d, nn.Linear)):
            n = d.weight.numel()
            assert int((p.weight == 0).sum()) == round(0.8 * n), name
            assert int((d.weight == 0).sum()) == 0, name
    x = torch.randn(1, *shape)
    with torch.inference_mode():
        assert pruned(x).shape == dense(x).shape


@pytest.mark.parametrize("key, sparsity", [(k, 0.8) for k in bench_tiny.MODELS] + [("dscnn", 0.0)])
def test_pruned_model_builds_and_verifies_for_x86(key, sparsity, tmp_path):
    from prunec import verify

    if not verify.cpu_flags() or "avx512f" not in verify.cpu_flags():
        pytest.skip("this machine has no AVX-512: the x86 build would use other kernels")
    _, pruned, shape = bench_tiny.make(key, sparsity)
    pt2 = tmp_path / f"{key}.pt2"
    torch.export.save(torch.export.export(pruned, (torch.randn(1, *shape),)), str(pt2))
    out = tmp_path / "build"
    # the CLI in this process: a new interpreter per command would spend seconds importing torch again
    r = CliRunner().invoke(main, ["build", str(pt2), "--target", "x86_64-avx2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    kernels = (out / "manifest.json").read_text()
    if sparsity == 0:  # every conv stored dense: the dense register tiles (strided and depthwise included)
        assert "prunec_f32_conv2d_dense__avx512x4" in kernels
    elif key != "ae":  # strided, depthwise and 10x4 convs through the sparse tiles
        assert "prunec_f32_conv2d_rcsr__avx512x4" in kernels
    r = CliRunner().invoke(main, ["verify", str(out), "--random", "20"])
    assert r.exit_code == 0 and "verify: PASS" in r.output, r.output


@pytest.mark.parametrize("args, says", [
    (["--models", "resnet9"], "unknown resnet9"),
    (["--sparsity", "1.0"], "--sparsity must be in [0, 1)"),
    (["--arm", "x86_64-avx2"], "--arm: x86_64-avx2 is not an Arm target"),
])
def test_bad_arguments_one_error_line(args, says):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_tiny.py"), *args], capture_output=True,
                       text=True)
    assert r.returncode == 2 and says in r.stderr, r.stderr
