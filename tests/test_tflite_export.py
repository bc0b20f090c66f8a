"""benchmarks/tflite_export.py: a LeNet written as a .tflite flatbuffer runs in LiteRT (XNNPACK and builtin
kernels) with PyTorch's outputs. Skipped where the bench extra (ai-edge-litert, tflite, flatbuffers) is absent."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert (bench extra) is not installed")
pytest.importorskip("tflite", reason="tflite (bench extra) is not installed")
pytest.importorskip("flatbuffers", reason="flatbuffers (bench extra) is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import tflite_export as te  # noqa: E402

from prunec import data, models  # noqa: E402


def _sparse(m: nn.Module, density: float = 0.2) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, layer in models.prunable_layers(m):
            layer.weight.mul_((torch.rand(layer.weight.shape, generator=g) < density).float())
    return m.eval()


def _shrunk_lenet5() -> nn.Module:
    """LeNet-5 as dead-neuron removal leaves it: fewer conv2 channels and fc1 neurons than the zoo's."""
    m = models.create("lenet5")
    m.conv2 = nn.Conv2d(20, 37, 5)
    m.fc1 = nn.Linear(37 * 4 * 4, 213)
    m.fc2 = nn.Linear(213, 10)
    return m


@pytest.mark.parametrize("make", [lambda: models.create("lenet300"), lambda: models.create("lenet5"),
                                  lambda: _sparse(_shrunk_lenet5()), lambda: _sparse(models.create("lenet300"))],
                         ids=["lenet300", "lenet5", "lenet5-shrunk-sparse", "lenet300-sparse"])
def test_litert_matches_pytorch(make, tmp_path):
    """Random weights: LeNet-5's fc1 matches only with its columns permuted from (C, H, W) to NHWC's (H, W, C)."""
    torch.manual_seed(0)
    m = make().eval()
    path = tmp_path / "m.tflite"
    blob = te.export(m, (1, 28, 28), path)
    assert path.read_bytes() == blob and blob[4:8] == b"TFL3"
    x = data.synthetic(n_train=1, n_test=20, seed=3).test.x.numpy()
    rt = te.LiteRT(path)
    assert rt.in_shape == (1, 28, 28, 1)
    assert rt.xnnpack(), rt.ops()
    assert te.verify(m, rt, x) < 1e-4
    ref = te.LiteRT(blob, xnnpack=False)  # TFLite's builtin kernels: no delegate node
    assert not ref.xnnpack() and "DELEGATE" not in ref.ops()
    assert te.verify(m, ref, x) < 1e-4


def test_identity_floor_and_unsupported():
    rt = te.LiteRT(te.identity_model(784))
    x = np.arange(784, dtype=np.float32).reshape(1, 784)
    np.testing.assert_array_equal(rt.run(x), x)
    with pytest.raises(NotImplementedError):
        te.export(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1)).eval())
