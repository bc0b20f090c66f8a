"""Checkpoint save/load, bad files, and torch.export of pruned models."""
import pickle

import pytest
import torch
from torch import nn

from prunec import checkpoint as C
from prunec import export as E
from prunec import masks as M
from prunec.errors import PrunecError
from prunec.models import LeNet5, LeNet300

torch.set_num_threads(1)


def pruned_lenet300(seed=0, keep=0.2):
    torch.manual_seed(seed)
    model = LeNet300().eval()
    masks = {n: torch.rand(m.weight.shape) < keep for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    M.apply_masks(model, masks)
    return model, masks


def test_round_trip_keeps_everything(tmp_path):
    model, masks = pruned_lenet300()
    sched = {"step": 2, "steps": 4, "history": [{"step": 1, "test_accuracy": 0.8}], "weights0": {"fc1": 235200}}
    p = C.save(tmp_path / "c.pt", model, "lenet300", masks=masks, kind="pruned", schedule=sched,
               metrics={"test_accuracy": 0.9, "baseline_test_accuracy": 0.91}, train_args={"epochs": 3}, seed=7,
               dataset="synthetic")
    ck = C.load(p)
    assert ck.model_name == "lenet300" and ck.input_shape == (1, 28, 28)
    assert not ck.model.training
    assert M.same_masks(ck.masks, masks)
    assert ck.meta["schedule"] == sched and ck.meta["seed"] == 7 and ck.meta["train_args"] == {"epochs": 3}
    assert ck.metrics == {"test_accuracy": 0.9, "baseline_test_accuracy": 0.91}
    for n, m in masks.items():
        w = ck.model.get_submodule(n).weight
        assert type(w) is nn.Parameter and torch.count_nonzero(w[~m]) == 0
        assert torch.equal(w, model.get_submodule(n).weight)
    assert all(not mod._forward_pre_hooks for mod in ck.model.modules())


def test_save_bakes_masks_and_accepts_torch_pruned_modules(tmp_path):
    model, masks = pruned_lenet300(1)
    with torch.no_grad():
        model.fc1.weight.add_(1.0)  # pruned entries nonzero in memory: the file must still hold exact zeros
    M.to_torch_prune(model, {"fc1": masks["fc1"]})
    C.save(tmp_path / "c.pt", model, "lenet300")
    ck = C.load(tmp_path / "c.pt")
    assert torch.equal(ck.masks["fc1"], masks["fc1"])
    assert torch.count_nonzero(ck.model.fc1.weight[~masks["fc1"]]) == 0


def test_write_is_atomic(tmp_path, monkeypatch):
    model, _ = pruned_lenet300()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        C.save(tmp_path / "c.pt", model, "lenet300")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["missing", "random", "truncated", "empty", "state_dict", "torch_prune_sd", "pickle_list", "other_format", "dir"])
def test_bad_files_raise_prunec_error(tmp_path, kind):
    good = tmp_path / "good.pt"
    model, masks = pruned_lenet300()
    C.save(good, model, "lenet300", masks=masks)
    p = tmp_path / "bad.pt"
    if kind == "random":
        p.write_bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8).numpy().tobytes())
    elif kind == "truncated":
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "state_dict":
        torch.save(model.state_dict(), p)
    elif kind == "torch_prune_sd":
        torch.save(M.to_torch_prune_state_dict(model.state_dict(), masks), p)
    elif kind == "pickle_list":
        torch.save([1, 2, 3], p)
    elif kind == "other_format":
        torch.save({"format": "something-else", "state_dict": model.state_dict()}, p)
    elif kind == "dir":
        p.mkdir()
    with pytest.raises(PrunecError) as e:
        C.load(p)
    assert str(p.name) in str(e.value)
    if kind in ("state_dict", "torch_prune_sd"):
        assert "plain state_dict" in str(e.value)


def test_arbitrary_pickle_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(PrunecError):
        C.load(p)


def test_unknown_model_in_checkpoint(tmp_path):
    model, _ = pruned_lenet300()
    C.save(tmp_path / "c.pt", model, "lenet300")
    obj = torch.load(tmp_path / "c.pt", weights_only=True)
    obj["model_name"] = "resnet50"
    torch.save(obj, tmp_path / "c.pt")
    with pytest.raises(PrunecError, match="unknown model"):
        C.load(tmp_path / "c.pt")


def test_export_program_matches_and_has_zeros(tmp_path):
    model, masks = pruned_lenet300(2)
    M.to_torch_prune(model, masks)  # hooks must not leak into the program
    ep = E.export_program(model, (1, 28, 28))
    x = torch.randn(1, 1, 28, 28)
    assert torch.allclose(ep.module()(x), model(x), atol=1e-6)
    w = ep.state_dict["fc1.weight"]
    assert torch.count_nonzero(w[~masks["fc1"]]) == 0
    assert "weight_orig" not in " ".join(ep.state_dict)


def test_export_checkpoint_metadata_and_dropout_inert(tmp_path):
    torch.manual_seed(3)
    model = LeNet5().eval()
    masks = {n: torch.rand(model.get_submodule(n).weight.shape) < 0.3 for n in ("conv2", "fc1")}
    M.apply_masks(model, masks)
    ck = C.save(tmp_path / "c.pt", model, "lenet5", masks=masks, kind="pruned")
    out = E.export_checkpoint(ck, tmp_path / "m.pt2")
    meta = E.read_metadata(out)
    assert meta["model_name"] == "lenet5" and meta["input_shape"] == [1, 28, 28]
    assert meta["source_checkpoint_sha256"] == C.sha256(ck)
    ep = torch.export.load(out)
    x = torch.randn(1, 1, 28, 28)
    assert torch.allclose(ep.module()(x), model(x), atol=1e-5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("dropout" in o for o in ops)
