"""prunec verify: C vs PyTorch through cffi, the report, the tolerance, runner dispatch, Fashion-MNIST."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import build_models as bm
from prunec import build as B
from prunec import verify as V
from prunec.cli import main
from prunec.errors import PrunecError

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists()


def test_verify_random_inputs_pass(residual):
    p, out = residual
    r = V.verify(out, random=20)
    assert r.ok and r.n == 20 and r.top1_agreement == 1.0 and r.max_abs_err < 1e-5
    assert r.accuracy_c is None
    assert "verify: PASS" in r.text() and "max abs error" in r.text() and "top-1 agreement" in r.text()


def test_verify_inputs_npy_and_limit(residual, tmp_path):
    p, out = residual
    x = bm.random_inputs(bm.MODELS["residual"][1], n=9, seed=3)
    np.save(tmp_path / "x.npy", x)
    r = V.verify(out, inputs=str(tmp_path / "x.npy"), limit=5)
    assert r.ok and r.n == 5
    np.save(tmp_path / "bad.npy", np.zeros(7, np.float32))
    with pytest.raises(PrunecError, match="whole number"):
        V.verify(out, inputs=str(tmp_path / "bad.npy"))


def test_cli_verify_pass_and_json(residual):
    p, out = residual
    r = CliRunner().invoke(main, ["verify", str(out), "--random", "10"])
    assert r.exit_code == 0, r.output
    assert "verify: PASS" in r.output
    r = CliRunner().invoke(main, ["verify", str(out), "--random", "4", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output[r.output.index("{"):])["ok"] is True


def test_tampered_build_fails_with_a_report(residual, tmp_path):
    p, out = residual
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    c = (bad / "residual.c").read_text()
    # change the first stored weight of the first conv
    i = c.index("static const float c1_values")
    j = c.index("\n", i) + 1
    k = c.index(",", j)
    c = c[:j] + "  100.0f" + c[k:]
    (bad / "residual.c").write_text(c)
    r = CliRunner().invoke(main, ["verify", str(bad), "--random", "10", "--model", str(p)])
    assert r.exit_code == 1, r.output
    assert "verify: FAIL" in r.output


def test_reference_model_checks(residual, tmp_path):
    p, out = residual
    moved = tmp_path / "out"
    shutil.copytree(out, moved)
    m = json.loads((moved / "manifest.json").read_text())
    m["source"]["path"] = str(tmp_path / "gone.pt2")
    (moved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PrunecError, match="--model"):
        V.verify(moved, random=2)
    assert V.verify(moved, random=2, model=str(p)).ok
    other = bm.export(bm.make("residual", seed=6)[0], bm.MODELS["residual"][1], tmp_path / "other.pt2")
    m["source"]["path"] = str(other)
    (moved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PrunecError, match="sha256"):
        V.verify(moved, random=2)
    with pytest.raises(PrunecError, match="not a prunec build|does not exist"):
        V.verify(tmp_path / "nothing", random=2)


def test_build_and_verify_a_prunec_checkpoint(tmp_path):
    from prunec import checkpoint, models

    torch.manual_seed(0)
    m = bm.prune_random(models.create("lenet5"), seed=1, lo=0.05, hi=0.3)
    ck = checkpoint.save(tmp_path / "lenet5.pt", m, "lenet5")
    r = B.build(ck, "host", tmp_path / "out", name="lenet5")
    assert r.manifest["source"]["kind"] == "checkpoint"
    rep = V.verify(tmp_path / "out", random=30)
    assert rep.ok and rep.top1_agreement == 1.0, rep.text()


def test_runner_dispatch(residual, monkeypatch):
    p, out = residual
    m = V.load_manifest(out)
    m["runner"] = "qemu-user"
    calls = []

    import prunec.runners as runners

    def fake(build_dir, inputs, info=None):
        calls.append(Path(build_dir))
        return V.run_host(build_dir, inputs)

    monkeypatch.setattr(runners, "run", fake)
    x = bm.random_inputs(bm.MODELS["residual"][1], n=2).reshape(2, -1)
    y = V.run_build(out, x, m)
    assert calls == [Path(out)] and y.shape == (2, m["output_size"])


def test_compare_tolerance_ties_nan_and_accuracy():
    t = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, -1.0], [0.0, 0.1, 0.0]])
    r = V.compare(t.copy(), t, labels=np.array([2, 0, 1]))
    assert r.ok and r.max_abs_err == 0 and r.accuracy_c == r.accuracy_torch == 1.0
    c = t.copy()
    c[0, 2] += 5e-5  # within 1e-4 * max(1, 3)
    assert V.compare(c, t).ok
    c[0, 2] += 1e-3
    r = V.compare(c, t)
    assert not r.ok and r.failing_samples == [0] and r.worst_sample == 0
    c = t.copy()
    c[1] = [5.0, 5.0 + 1e-6, -1.0]  # a tie in the reference: top-1 may flip
    r = V.compare(c, t)
    assert r.ok and r.top1_disagree == 1 and r.ties == 1
    c = t.copy()
    c[2, 1] = np.nan
    assert not V.compare(c, t).ok
    big = t * 1e4
    c = big.copy()
    c[1] += 4.0  # sample 1: max|ref| = 5e4, bound 5
    assert V.compare(c, big).ok
    c[2] += 0.2  # sample 2: max|ref| = 1e3, bound 0.1
    assert V.compare(c, big).failing_samples == [2]
    with pytest.raises(PrunecError):
        V.compare(t[:, :2], t)


@pytest.mark.skipif(not FASHION, reason="dataset-fashion-mnist not installed")
def test_lenet300_fashion_mnist_all_10000_agree(tmp_path):
    """A quickly trained LeNet-300-100 pruned to the paper's densities: C and PyTorch agree on every test image."""
    _train_and_check("lenet300", tmp_path, steps=300)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION, reason="dataset-fashion-mnist not installed")
def test_lenet5_fashion_mnist_all_10000_agree(tmp_path):
    _train_and_check("lenet5", tmp_path, steps=300)


def _train_and_check(name, tmp_path, steps):
    from prunec import data, models
    from prunec.recipes import PAPER_REMAINING

    torch.manual_seed(0)
    ds = data.load_fashion_mnist()
    m = models.create(name)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(ds.train), (128,), generator=g)
        loss = nn.functional.cross_entropy(m(ds.train.x[idx]), ds.train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # keep the largest weights of every layer at the paper's density (no retraining)
        for layer, mod in models.prunable_layers(m):
            keep = PAPER_REMAINING[name][layer]
            thr = mod.weight.abs().flatten().kthvalue(int((1 - keep) * mod.weight.numel())).values
            mod.weight.mul_((mod.weight.abs() > thr).float())
    p = bm.export(m.eval(), models.input_shape(name), tmp_path / f"{name}.pt2")
    B.build(p, "host", tmp_path / "out", name=name)
    r = V.verify(tmp_path / "out", data="fashion-mnist")
    assert r.n == 10000 and r.ok and r.top1_disagree == 0, r.text()
    assert r.accuracy_c == r.accuracy_torch and r.accuracy_c > 0.5


def test_fashion_mnist_test_only_reads_the_test_split_as_the_full_load_does():
    """verify reads only the test split; it is the same tensors as the full load's."""
    import torch

    from prunec import data

    try:
        full = data.load_fashion_mnist()
    except Exception as e:  # the Debian package dataset-fashion-mnist
        pytest.skip(str(e))
    part = data.load_fashion_mnist(test_only=True)
    assert torch.equal(part.test.x, full.test.x) and torch.equal(part.test.y, full.test.y)
    assert len(part.train) == 0 and len(full.train) == 60000
