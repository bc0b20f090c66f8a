"""--device for train / prune / sensitivity, and prune's --batch-size / --momentum.

The CUDA tests run only where torch sees a GPU (they ran on an H200 of the project's lent GPU machine, see
docs/RESULTS.md round 6); everywhere else the device plumbing is checked on the CPU and with torch's "meta"
device, which keeps shapes and devices without data."""
from __future__ import annotations

import re

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from prunec import checkpoint as C
from prunec import data as D
from prunec import masks as M
from prunec.cli import main
from prunec.errors import PrunecError
from prunec.prune import _shrunk_like, remove_dead_neurons
from prunec.train import evaluate, resolve_device, to_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_resolve_device_cpu_and_auto(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(PrunecError, match="sees no CUDA GPU.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(PrunecError, match="sees no CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(PrunecError, match="not a device; choose auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_to_device_moves_every_tensor():
    ds = D.synthetic(n_train=8, n_test=4)
    moved = to_device(ds, torch.device("meta"))
    for t in (moved.train.x, moved.train.y, moved.test.x, moved.test.y):
        assert t.device.type == "meta"
    assert ds.train.x.device.type == "cpu"  # the original is untouched
    assert moved.name == ds.name and moved.num_classes == ds.num_classes


@pytest.mark.parametrize("make", [lambda: nn.Linear(6, 5), lambda: nn.Conv2d(3, 4, 3, padding=1)])
def test_shrunk_layer_stays_on_the_weights_device(make):
    """Dead-neuron removal builds smaller layers: they must land where the weights are (a GPU run's model
    would otherwise come back half on the CPU)."""
    m = make().to("meta")
    new = _shrunk_like(m, m.weight[:2], m.bias[:2])
    assert new.weight.device.type == "meta" and new.bias.device.type == "meta"
    assert new.weight.shape[0] == 2


@pytest.mark.parametrize("cmd", [["train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1"],
                                 ["sensitivity", "BASE"], ["prune", "BASE", "--steps", "1", "--retrain-epochs", "1"]])
def test_bad_device_fails_before_any_output(tmp_path, cmd):
    base = tmp_path / "b.pt"
    assert run("train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--out", base, "--quiet").exit_code == 0
    out = tmp_path / ("o" if cmd[0] == "sensitivity" else "o.pt")
    r = run(*[base if a == "BASE" else a for a in cmd], "--out", out, "--device", "gpu0")
    assert r.exit_code != 0 and "--device 'gpu0' is not a device" in r.output
    assert not out.exists()
    if not torch.cuda.is_available():
        r = run(*[base if a == "BASE" else a for a in cmd], "--out", out, "--device", "cuda")
        assert r.exit_code != 0 and "sees no CUDA GPU" in r.output and "--device cpu" in r.output
        assert not out.exists()


def test_prune_batch_size_and_momentum_reach_the_recipe(tmp_path):
    base, out = tmp_path / "b.pt", tmp_path / "p.pt"
    assert run("train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--out", base, "--quiet").exit_code == 0
    r = run("prune", base, "--out", out, "--steps", "1", "--retrain-epochs", "1", "--final-epochs", "0",
            "--batch-size", "32", "--momentum", "0.5", "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    recipe = C.load(out).meta["recipe"]
    assert recipe["batch_size"] == 32 and recipe["momentum"] == 0.5
    for bad, msg in ((["--batch-size", "0"], "--batch-size 0"), (["--momentum", "-0.1"], "--momentum -0.1"), (["--momentum", "1.0"], "--momentum 1.0")):
        r = run("prune", base, "--out", tmp_path / "q.pt", "--steps", "1", *bad, "--quiet")
        assert r.exit_code != 0 and msg in r.output and not (tmp_path / "q.pt").exists()


def test_a_smaller_batch_takes_more_steps(tmp_path):
    """--batch-size is not only recorded: the retraining takes len/bs steps per epoch."""
    from prunec import prune as P

    seen = []
    real = P.fit

    def spy(model, split, cfg, **kw):
        seen.append(cfg.batch_size)
        return real(model, split, cfg, **kw)

    base = tmp_path / "b.pt"
    assert run("train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--out", base, "--quiet").exit_code == 0
    mp = pytest.MonkeyPatch()
    mp.setattr(P, "fit", spy)
    try:
        r = run("prune", base, "--out", tmp_path / "p.pt", "--steps", "1", "--retrain-epochs", "1", "--batch-size", "16", "--quiet")
    finally:
        mp.undo()
    assert r.exit_code == 0, r.output
    assert seen and set(seen) == {16}


@cuda
def test_train_and_prune_on_the_gpu(tmp_path):
    base, out = tmp_path / "b.pt", tmp_path / "p.pt"
    r = run("train", "--model", "lenet5", "--data", "synthetic", "--epochs", "2", "--out", base, "--quiet", "--device", "cuda")
    assert r.exit_code == 0, r.output
    r = run("prune", base, "--out", out, "--steps", "2", "--retrain-epochs", "1", "--final-epochs", "1", "--quiet",
            "--device", "cuda", "--distill", "0.5")
    assert r.exit_code == 0, r.output
    c = C.load(out)  # readable on the CPU; masks baked in as exact zeros
    assert all(v.device.type == "cpu" for v in c.model.state_dict().values())
    for name, mask in c.masks.items():
        w = c.model.get_submodule(name).weight
        assert w.shape == mask.shape and bool((w[~mask] == 0).all())
    assert c.meta["schedule"]["history"][-1]["compression"] > 5
    ds = D.synthetic_for((1, 28, 28), 0)  # the CPU and the GPU agree on the pruned model's accuracy
    acc_cpu = evaluate(c.model, ds.test)
    acc_gpu = evaluate(c.model.to("cuda"), to_device(ds.test, torch.device("cuda")))
    assert abs(acc_cpu - acc_gpu) <= 2 / len(ds.test)


@cuda
def test_dead_neuron_removal_on_the_gpu_keeps_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).cuda()
    masks = M.dense_masks(model)
    masks["0"][2] = False  # neuron 2 of the first layer has no input left
    M.apply_masks(model, masks)
    x = torch.randn(5, 8, device="cuda")
    before = model(x)
    model, masks, removed = remove_dead_neurons(model, masks)
    assert sum(removed.values()) >= 1
    assert all(p.is_cuda for p in model.parameters())
    torch.testing.assert_close(model(x), before)



@cuda
def test_mask_selection_stays_on_the_weights_device():
    """The masks a prune step computes live where the weights are (the first GPU sweep failed here: a CPU
    bool buffer and-ed with a CUDA mask)."""
    from prunec.prune import global_masks, sparsity_mask

    w = torch.randn(30, 20, device="cuda")
    mask = torch.ones(30, 20, dtype=torch.bool, device="cuda")
    got = sparsity_mask(w, mask, 0.9)
    assert got.is_cuda and int(got.sum()) == 60
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4)).cuda()
    masks = {n: torch.ones_like(model.get_submodule(n).weight, dtype=torch.bool) for n in ("0", "2")}
    out = global_masks(model, masks, 0.9)
    assert all(m.is_cuda for m in out.values()) and sum(int(m.sum()) for m in out.values()) == 72


def test_train_momentum_and_the_lenet300_batch_default(tmp_path):
    base = tmp_path / "b.pt"
    r = run("train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--momentum", "0.8", "--out", base, "--quiet")
    assert r.exit_code == 0, r.output
    args = C.load(base).meta["train_args"]
    assert args["momentum"] == 0.8 and args["batch_size"] == 64  # the LeNet-300-100 dense default since round 6
    r = run("train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--momentum", "1", "--out", tmp_path / "c.pt")
    assert r.exit_code != 0 and "--momentum 1.0 is outside [0, 1)" in r.output and not (tmp_path / "c.pt").exists()
    from prunec.recipes import default_recipe

    assert default_recipe("lenet300").batch_size == 64 and default_recipe("lenet5").momentum == 0.95
    from prunec.train import DEFAULTS

    assert DEFAULTS["lenet300"].batch_size == 64 and DEFAULTS["lenet5"].momentum == 0.95  # dense = retraining (round 6)


@pytest.mark.parametrize("text, says", [
    ("cuda", "2 ranks on this machine but torch sees 1 CUDA GPU(s): nccl needs one GPU per rank; run torchrun "
             "--nproc_per_node=1"),
    ("auto", "2 ranks on this machine but torch sees 1 CUDA GPU(s)"),
    ("cuda:0", "--device cuda:0 under torchrun would put all 2 ranks of this machine on one GPU"),
])
def test_two_ranks_on_one_gpu_are_refused_before_any_work(monkeypatch, text, says):
    """nccl refuses two ranks on one GPU ("Duplicate GPU detected"), and every rank then reported another's
    failure; the device is refused first, with the fix (a GPU machine simulated: one device)."""
    import torch

    from prunec.errors import PrunecError
    from prunec.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(PrunecError, match=re.escape(says)):
        resolve_device(text)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # one rank per machine (or no torchrun): its GPU
    assert str(resolve_device("cuda")) == "cuda:0"
