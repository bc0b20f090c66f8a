"""Review of the pruning engine (eighteenth session): the paper's details on models other than the zoo's.

* The Dropout rescaled for an fc layer is the one that feeds it in forward's dataflow (was: declaration order,
  which on PyTorch's MNIST example net rescaled the Dropout before the output layer with fc1's fraction).
* --target-compression counts what a pruned base's masks still keep (false "unreachable", 20x for 14x).
* --global-threshold and each step's `remaining` count against the dense sizes of layers dead-neuron removal shrank.
* --alternate freezes a conv's batch norm with the conv (parameters and running statistics), and leaves parameters
  the caller froze frozen.
* Recipe refuses a sparsity profile beside quality / global_sparsity (it was ignored); L1's default strength in the
  API is the CLI's.
* The dropout rate after dead-neuron removal is Do·sqrt(Cr/Co) of what remains; `info` counts the kept steps only.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunec import data as D
from prunec import masks as M
from prunec import prune as P
from prunec.errors import PrunecError
from prunec.recipes import DEFAULT_L1_STRENGTH, Recipe


class MnistExample(nn.Module):
    """pytorch/examples mnist/main.py: dropout1 and dropout2 declared before fc1, used after conv2 and fc1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1)
        self.conv2 = nn.Conv2d(4, 8, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(8 * 12 * 12, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = torch.flatten(self.dropout1(x), 1)
        return self.fc2(self.dropout2(F.relu(self.fc1(x))))


def test_the_dropout_rescaled_is_the_one_feeding_the_layer_in_forward():
    net = MnistExample()
    assert P.feeding_dropouts(net) == {"fc1": "dropout1", "fc2": "dropout2"}
    masks = M.dense_masks(net)
    keep = torch.zeros(net.fc1.weight.numel(), dtype=torch.bool)
    keep[: net.fc1.weight.numel() // 25] = True  # 4 % of fc1 kept, fc2 dense
    masks["fc1"] = keep.view_as(masks["fc1"])
    sizes = {n: m.numel() for n, m in masks.items()}
    P.rescale_dropout(net, masks, P.dropout_rates(net), sizes)
    assert net.dropout1.p == pytest.approx(0.25 * math.sqrt(0.04), rel=1e-3)
    assert net.dropout2.p == pytest.approx(0.5)  # feeds the unpruned fc2


def test_a_dropout_feeding_two_layers_or_an_untraceable_model_is_left_alone():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.d = nn.Dropout(0.5)
            self.a, self.b = nn.Linear(8, 4), nn.Linear(8, 4)

        def forward(self, x):
            x = self.d(x)
            return self.a(x) + self.b(x)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.d = nn.Dropout(0.5)
            self.a = nn.Linear(8, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent: fx cannot trace it
                x = self.d(x)
            return self.a(x)

    assert P.feeding_dropouts(Two()) == {}
    assert P.feeding_dropouts(Branchy()) == {}


def _lenet300_masked():
    from prunec import models

    torch.manual_seed(0)
    net = models.create("lenet300")
    masks = {}
    for name, frac in (("fc1", 0.07), ("fc2", 0.15), ("fc3", 0.60)):
        w = net.get_submodule(name).weight
        m = torch.zeros(w.numel(), dtype=torch.bool)
        m[torch.randperm(w.numel())[: round(frac * w.numel())]] = True
        masks[name] = m.view_as(w)
    M.apply_masks(net, masks)
    return net, masks


@pytest.mark.parametrize("profile, target", [({"fc1": 0.97}, 20.0), ({"fc1": 0.97}, 12.5),
                                             ({"fc1": 0.95, "fc2": 0.5, "fc3": 0.0}, 14.0)])
def test_target_compression_counts_what_the_masks_still_keep(profile, target):
    net, masks = _lenet300_masked()
    sizes = {n: m.numel() for n, m in masks.items()}
    s = P.sparsity_for_compression(net, profile, target, sizes, masks)
    new = dict(masks)
    for n, frac in s.items():
        new[n] = P.sparsity_mask(net.get_submodule(n).weight, masks[n], frac, sizes[n])
    got = sum(sizes.values()) / sum(int(m.sum()) for m in new.values())
    assert got == pytest.approx(target, rel=0.002), (s, got)


def test_target_compression_beyond_what_the_other_layers_keep_is_named():
    net, masks = _lenet300_masked()
    sizes = {n: m.numel() for n, m in masks.items()}
    with pytest.raises(PrunecError, match="keep 5100 of 266200 weights"):
        P.sparsity_for_compression(net, {"fc1": 0.99}, 60.0, sizes, masks)
    # below what the base already has (12.34x): no weight comes back
    with pytest.raises(PrunecError, match="below the model's own compression \\(12.34x"):
        P.sparsity_for_compression(net, {"fc1": 0.97}, 12.0, sizes, masks)


def test_global_threshold_counts_against_the_dense_sizes():
    from prunec import models

    net = models.create("lenet300")
    masks = M.dense_masks(net)
    dense = {n: m.numel() for n, m in masks.items()}
    dense["fc1"] += 6 * 784  # as if dead-neuron removal had taken 6 of fc1's neurons
    out = P.global_masks(net, masks, 0.5, dense)
    assert sum(int(m.sum()) for m in out.values()) == round(0.5 * sum(dense.values()))


def test_each_steps_remaining_counts_against_the_dense_sizes():
    from prunec import models

    torch.manual_seed(0)
    net = models.create("lenet300")
    ds = D.synthetic(n_train=32, n_test=16)
    base = {"weights0": {"fc1": 235200 + 6 * 784, "fc2": 30000 + 6 * 100, "fc3": 1000}}
    r = Recipe(sparsity={"fc1": 0.5, "fc2": 0.5, "fc3": 0.5}, steps=1, retrain_epochs=0, remove_dead=False)
    _, masks, state = P.run_schedule(net, ds, r, baseline_accuracy=0.1, progress=False, log=lambda s: None,
                                     base_schedule=base)
    rem = state["history"][-1]["remaining"]
    for n, w0 in base["weights0"].items():
        assert rem[n] == pytest.approx(int(masks[n].sum()) / w0) and rem[n] == pytest.approx(0.5, abs=1e-3)


class ConvBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2), 1))


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_alternate_freezes_a_convs_batch_norm_with_the_conv():
    from prunec.train import fit

    torch.manual_seed(0)
    net = ConvBn()
    kind = P._param_kind(net)
    assert kind("bn.weight") == "conv" and kind("bn.bias") == "conv" and kind("fc.weight") == "fc"
    ds = D.synthetic(n_train=32, n_test=8, shape=(1, 8, 8))
    cfg = P.retrain_config(Recipe(sparsity={"fc": 0.5}, lr=0.05), 1)
    before = _state(net)
    fit(net, ds.train, cfg, masks=M.dense_masks(net), seed=0, progress=False, trainable=lambda n: kind(n) != "conv")
    after = _state(net)
    for k in ("conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        assert torch.equal(before[k], after[k]), k  # frozen: parameters and running statistics
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert net.bn.training == net.training and all(p.requires_grad for p in net.parameters())  # as it was
    fit(net, ds.train, cfg, masks=M.dense_masks(net), seed=1, progress=False, trainable=lambda n: kind(n) != "fc")
    assert not torch.equal(after["bn.weight"], net.bn.weight) and not torch.equal(after["bn.running_mean"], net.bn.running_mean)


def test_alternate_leaves_what_the_caller_froze_frozen():
    torch.manual_seed(0)
    net = ConvBn()
    net.conv.bias.requires_grad_(False)
    bias = net.conv.bias.detach().clone()
    ds = D.synthetic(n_train=32, n_test=8, shape=(1, 8, 8))
    r = Recipe(sparsity={"fc": 0.5}, alternate=True, lr=0.05)
    P.retrain(net, ds, r, M.dense_masks(net), 1, seed=0, progress=False, desc="t")
    assert torch.equal(net.conv.bias, bias) and not net.conv.bias.requires_grad
    assert all(p.requires_grad for n, p in net.named_parameters() if n != "conv.bias")


def test_recipe_refuses_a_profile_beside_quality_or_a_global_threshold():
    with pytest.raises(PrunecError, match="sparsity and quality both choose"):
        Recipe(sparsity={"fc1": 0.9}, quality=1.0).validate()
    with pytest.raises(PrunecError, match="sparsity and global_sparsity both choose"):
        Recipe(sparsity={"fc1": 0.9}, global_sparsity=0.5).validate()
    # a recipe saved by an earlier version (the default profile beside --quality) still loads, without the profile
    assert Recipe.from_dict({"sparsity": {"fc1": 0.9}, "quality": 1.0}).validate().sparsity == {}
    assert Recipe(reg="l1").reg_strength == DEFAULT_L1_STRENGTH and Recipe().reg_strength == 1e-4
    assert Recipe(reg="l1", reg_strength=1e-3).reg_strength == 1e-3


def test_dropout_after_dead_neuron_removal_is_that_of_what_remains():
    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.4)
            self.fc1 = nn.Linear(64, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(self.drop(torch.flatten(x, 1)))))

    torch.manual_seed(0)
    net = Mlp()
    ds = D.synthetic(n_train=32, n_test=16, shape=(1, 8, 8))
    r = Recipe(sparsity={"fc1": 0.5, "fc2": 0.9}, steps=1, retrain_epochs=0, remove_dead=True)
    net, masks, state = P.run_schedule(net, ds, r, baseline_accuracy=0.1, progress=False, log=lambda s: None)
    assert state["dead_removed"].get("fc1", 0) > 0, state["dead_removed"]  # fc2 at 10 % leaves fc1 neurons unread
    assert net.drop.p == pytest.approx(0.4 * math.sqrt(int(masks["fc1"].sum()) / (64 * 32)))


def test_info_counts_the_steps_whose_model_was_kept():
    from prunec.commands_prune import _kept_steps

    assert _kept_steps({"step": 2, "history": [{"step": 1}, {"step": 2, "undone": True}]}) == 1
    assert _kept_steps({"step": 3, "history": [{"step": k} for k in (1, 2, 3)]}) == 3
    assert _kept_steps({"step": 2}) == 2 and _kept_steps({}) is None


# --- sensitivity, report, info, export (a second review of this session) ---------------------------------------


def test_sensitivity_counts_fractions_against_the_dense_sizes(monkeypatch):
    """A layer shrunk by dead-neuron removal: sensitivity's fraction 0.9 must keep what prune's 0.9 keeps."""
    from prunec import models
    from prunec import sensitivity as S

    net = models.create("lenet300")
    seen = []
    real = S.sparsity_mask
    monkeypatch.setattr(S, "sparsity_mask", lambda w, m, f, dense=None: seen.append(dense) or real(w, m, f, dense))
    ds = D.synthetic(n_train=8, n_test=8)
    S.analyse(net, ds.test, fractions=[0.9], layers=["fc1"], dense_sizes={"fc1": 240000})
    assert seen == [240000]


def _tiny_pruned_chain(tmp_path):
    from click.testing import CliRunner

    from prunec.cli import main

    env = {"PRUNEC_SYNTHETIC_TRAIN": "64", "PRUNEC_SYNTHETIC_TEST": "32", "PRUNEC_THREADS": "1"}
    r = CliRunner()
    base, p1, p2 = tmp_path / "base.pt", tmp_path / "p1.pt", tmp_path / "p2.pt"
    for args in (["train", "--model", "lenet300", "--data", "synthetic", "--out", str(base), "--epochs", "1", "--quiet"],
                 ["prune", str(base), "--out", str(p1), "--sparsity", "fc1=0.5,fc2=0.5,fc3=0.2", "--steps", "1",
                  "--retrain-epochs", "0", "--final-epochs", "0", "--quiet"],
                 ["prune", str(p1), "--out", str(p2), "--sparsity", "fc1=0.8,fc2=0.8,fc3=0.4", "--steps", "1",
                  "--retrain-epochs", "0", "--final-epochs", "0", "--quiet"]):
        out = r.invoke(main, args, env=env)
        assert out.exit_code == 0, out.output
    return base, p1, p2


def test_repruning_keeps_the_dense_models_histograms_and_export_keeps_the_baseline(tmp_path):
    from click.testing import CliRunner

    from prunec import checkpoint as C
    from prunec.cli import main
    from prunec.commands_prune import info_dict_pt2

    base, p1, p2 = _tiny_pruned_chain(tmp_path)
    h1, h2 = C.load(p1).meta["weight_hist_before"], C.load(p2).meta["weight_hist_before"]
    assert h2 == h1  # "before pruning" of the re-pruned model is the dense model's, not p1's
    pt2 = tmp_path / "p2.pt2"
    out = CliRunner().invoke(main, ["export", str(p2), "--out", str(pt2)])
    assert out.exit_code == 0, out.output
    assert info_dict_pt2(pt2)["baseline_test_accuracy"] == C.load(p2).metrics["baseline_test_accuracy"] is not None


def test_report_titles_a_dense_models_histograms_as_dense(tmp_path, monkeypatch):
    from prunec import checkpoint as C
    from prunec import report as R

    base, _, p2 = _tiny_pruned_chain(tmp_path)
    titles = {}
    for name, path in (("dense", base), ("pruned", p2)):
        monkeypatch.setattr(R, "plot_weights", lambda before, after, p, title="x", _n=name: titles.__setitem__(_n, title))
        R._draw(C.load(path), lambda fname, fn, *a: fn(*a, tmp_path / fname) if fname == "weights.png" else None)
    assert titles == {"dense": "dense (not pruned)", "pruned": "after pruning + retraining"}
