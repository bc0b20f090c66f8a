"""Review of the pruning engine (prune.py, recipes.py, report.py): resume determinism with dropout, exact undo
of a step, alternate retraining, dead-neuron removal and report figures on every zoo model. Tiny synthetic
data and 0-1 retraining epochs; the VGG-16 cases are marked slow."""
import copy

import pytest
import torch
from torch import nn

from prunec import checkpoint as C
from prunec import data as D
from prunec import masks as M
from prunec import models
from prunec import prune as P
from prunec import report as R
from prunec.errors import PrunecError
from prunec.recipes import Recipe

torch.set_num_threads(1)
QUIET = dict(progress=False, log=lambda s: None)


@pytest.fixture(scope="module")
def tiny():
    return D.synthetic(n_train=192, n_test=96, seed=0)


class DropNet(nn.Module):
    """fc → relu → dropout → fc → relu → dropout → fc, as AlexNet/VGG-16's classifier (dropouts after fc6, fc7)."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1, self.relu1, self.drop1 = nn.Linear(784, 48), nn.ReLU(), nn.Dropout(0.5)
        self.fc2, self.relu2, self.drop2 = nn.Linear(48, 32), nn.ReLU(), nn.Dropout(0.4)
        self.fc3 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.drop1(self.relu1(self.fc1(self.flatten(x))))
        return self.fc3(self.drop2(self.relu2(self.fc2(x))))


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _rates(m):
    return {n: mod.p for n, mod in m.named_modules() if isinstance(mod, nn.Dropout)}


# --- resume: the same result as the uninterrupted run -------------------------------------------------


def test_resumed_run_of_a_model_with_dropout_equals_the_uninterrupted_one(tiny):
    """Dropout draws from the global RNG: a resumed process (which seeds it afresh) drew other dropout masks
    than the uninterrupted run at the same step, so the weights differed after resume."""
    torch.manual_seed(0)
    dense = DropNet()
    recipe = Recipe(sparsity={"fc1": 0.9, "fc2": 0.7, "fc3": 0.3}, steps=3, retrain_epochs=1, batch_size=64, lr=0.05,
                    remove_dead=False)
    snap = {}

    def on_step(m, mk, st):
        if st["step"] == 2:
            snap["s"] = (copy.deepcopy(m), M.clone_masks(mk), copy.deepcopy(st))

    torch.manual_seed(1)
    full, fmasks, _ = P.run_schedule(copy.deepcopy(dense), tiny, recipe, baseline_accuracy=0.0, seed=3, on_step=on_step, **QUIET)
    m, mk, st = snap["s"]
    torch.manual_seed(12345)  # another process: its global RNG is wherever its own start-up left it
    resumed, rmasks, rst = P.run_schedule(m, tiny, recipe, baseline_accuracy=0.0, seed=3, masks=mk, state=st, **QUIET)
    assert [h["step"] for h in rst["history"]] == [1, 2, 3]
    assert M.same_masks(fmasks, rmasks)
    assert _same(full, resumed)
    assert _rates(full) == _rates(resumed)


def test_resume_through_a_checkpoint_lenet5_alternate(tiny, tmp_path):
    """LeNet-5 with alternate fc/conv retraining, interrupted after step 1 of 3 and resumed from the saved
    checkpoint: bit-identical to the run that was not interrupted."""
    torch.manual_seed(0)
    dense = models.create("lenet5")
    recipe = Recipe(sparsity={"conv1": 0.3, "conv2": 0.8, "fc1": 0.9, "fc2": 0.5}, steps=3, retrain_epochs=1,
                    final_epochs=1, batch_size=64, lr=0.02, lr_span="run", alternate=True)
    path = tmp_path / "r.pt.resume"

    def save_at_1(m, mk, st):
        if st["step"] == 1:
            C.save(path, m, "lenet5", masks=mk, kind="pruning", schedule=st, recipe=recipe.to_dict())

    full, fmasks, fst = P.run_schedule(copy.deepcopy(dense), tiny, recipe, baseline_accuracy=0.0, seed=2, on_step=save_at_1,
                                       **QUIET)
    ck = C.load(path)
    resumed, rmasks, rst = P.run_schedule(ck.model, tiny, Recipe.from_dict(ck.meta["recipe"]), baseline_accuracy=0.0, seed=2,
                                          masks=ck.masks, state=ck.schedule, **QUIET)
    assert M.same_masks(fmasks, rmasks) and _same(full, resumed)
    assert fst["dead_removed"] == rst["dead_removed"]
    assert [h["test_accuracy"] for h in fst["history"]] == [h["test_accuracy"] for h in rst["history"]]


# --- max_accuracy_drop: the undone step leaves nothing behind -----------------------------------------


def test_undone_first_step_restores_the_dropout_rates_of_a_pre_pruned_base(tiny):
    """A base with zeros already (pruned elsewhere) starts from masks that are not all-True; undoing step 1
    recomputed the rates as p0·sqrt(Cr/Co) of those masks (0.35 instead of the 0.5 the model had)."""
    torch.manual_seed(0)
    m = DropNet()
    with torch.no_grad():
        m.fc2.weight[:, ::2] = 0.0
    ref, rates, masks0 = copy.deepcopy(m.state_dict()), _rates(m), M.masks_from_weights(m)
    recipe = Recipe(sparsity={"fc1": 0.99, "fc2": 0.99, "fc3": 0.9}, steps=2, schedule="oneshot", retrain_epochs=0,
                    max_accuracy_drop=0.0, remove_dead=False)
    m, masks, st = P.run_schedule(m, tiny, recipe, baseline_accuracy=2.0, **QUIET)  # every step falls short
    assert st["stopped"] and st["history"][0]["undone"] and st["step"] == 1
    assert _rates(m) == rates
    assert M.same_masks(masks, masks0)
    assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())


def test_undone_later_step_restores_the_previous_steps_rates(tiny, monkeypatch):
    torch.manual_seed(0)
    m = DropNet()
    after = {}
    recipe = Recipe(sparsity={"fc1": 0.9, "fc2": 0.9, "fc3": 0.5}, steps=3, schedule="linear", retrain_epochs=1, batch_size=64,
                    max_accuracy_drop=0.05, remove_dead=False)
    accs = iter([0.9, 0.9, 0.9, 0.9, 0.5, 0.5])  # (after pruning, after retraining) per step: step 3 drops 0.4
    monkeypatch.setattr(P, "evaluate", lambda model, split: next(accs))

    def on_step(model, mk, st):
        after[st["step"]] = (copy.deepcopy(model.state_dict()), M.clone_masks(mk), _rates(model))

    m, masks, st = P.run_schedule(m, tiny, recipe, baseline_accuracy=0.9, on_step=on_step, **QUIET)
    assert st["stopped"] and [h.get("undone", False) for h in st["history"]] == [False, False, True]
    sd2, masks2, rates2 = after[2]
    assert rates2["drop1"] < 0.5 and _rates(m) == rates2
    assert M.same_masks(masks, masks2)
    assert all(torch.equal(v, sd2[k]) for k, v in m.state_dict().items())


# --- alternate retraining freezes the other group, biases included ------------------------------------


def test_alternate_phases_freeze_the_other_group(tiny, monkeypatch):
    """Through prune.retrain (both phases, momentum, L2 and L1): the fc phase changes no conv weight or bias, the
    conv phase no fc weight or bias, and each phase does change its own group."""
    torch.manual_seed(0)
    model = models.create("lenet5")
    masks = {n: torch.rand_like(mod.weight) > 0.5 for n, mod in models.prunable_layers(model)}
    M.apply_masks(model, masks)
    snaps = []
    real_fit = P.fit

    def spy(mdl, *a, **kw):
        before = {k: v.detach().clone() for k, v in mdl.named_parameters()}
        h = real_fit(mdl, *a, **kw)
        snaps.append((kw["desc"], before, {k: v.detach().clone() for k, v in mdl.named_parameters()}))
        return h

    monkeypatch.setattr(P, "fit", spy)
    for reg in ("l2", "l1"):
        recipe = Recipe(alternate=True, batch_size=64, lr=0.05, reg=reg, reg_strength=1e-3)
        P.retrain(model, tiny, recipe, masks, 1, seed=0, progress=False, desc="t")
    assert [d for d, _, _ in snaps] == ["t fc", "t conv"] * 2
    for desc, before, after in snaps:
        frozen = "conv" if desc.endswith("fc") else "fc"
        for k in before:
            same = torch.equal(before[k], after[k])
            assert same == k.startswith(frozen), (desc, k)
    for n, mk in masks.items():
        assert torch.count_nonzero(model.get_submodule(n).weight[~mk]) == 0
    assert all(p.requires_grad for p in model.parameters())


# --- recipes: options that would be silently ignored ---------------------------------------------------


@pytest.mark.parametrize("kw", [dict(quality=1.0, target_compression=10.0), dict(global_sparsity=0.9, target_compression=10.0),
                                dict(quality=1.0, global_sparsity=0.9)])
def test_recipe_refuses_selectors_that_would_be_ignored(kw):
    """target_compression only scales a sparsity profile; with quality or global_sparsity it was dropped without a
    word (and quality was dropped when global_sparsity was also set)."""
    with pytest.raises(PrunecError):
        Recipe(**kw).validate()
    with pytest.raises(PrunecError):
        P.run_schedule(models.create("lenet300"), D.synthetic(n_train=8, n_test=8), Recipe(steps=1, retrain_epochs=0, **kw),
                       baseline_accuracy=0.0, **QUIET)


# --- dead-neuron removal on every zoo model ------------------------------------------------------------


def _kill_some(m: nn.Module, bias: bool, seed: int = 0) -> None:
    """Random 60 % sparsity; in each layer but the last, three neurons without input (relu(bias) > 0, < 0, = 0
    when `bias`) and, in the layer after it, two neurons' inputs cut (a whole H·W block after a flatten)."""
    g = torch.Generator().manual_seed(seed)
    layers = models.prunable_layers(m)
    with torch.no_grad():
        for i, (_, a) in enumerate(layers):
            a.weight.masked_fill_(torch.rand(a.weight.shape, generator=g) < 0.6, 0.0)
            if i + 1 == len(layers):
                continue
            b = layers[i + 1][1]
            a.weight[:3] = 0.0
            if bias:
                a.bias[:3] = torch.tensor([0.5, -0.5, 0.0])
            per = b.in_features // a.weight.shape[0] if isinstance(b, nn.Linear) else 1
            if getattr(b, "groups", 1) == 1:
                b.weight[:, 5 * per : 7 * per] = 0.0


def _without_biases(m: nn.Module) -> nn.Module:
    for n, mod in models.prunable_layers(m):
        P._set_module(m, n, P._shrunk_like(mod, mod.weight.detach(), None))
    return m


def _check_removal(name: str, bias: bool) -> dict:
    torch.manual_seed(0)
    m = models.create(name, num_classes=10).eval()
    _kill_some(m, bias)
    if not bias:
        m = _without_biases(m)
    x = torch.randn(2, *models.input_shape(name))
    with torch.no_grad():
        ref = m(x)
    nz = {n: int((mod.weight != 0).sum()) for n, mod in models.prunable_layers(m)}
    m, masks, removed = P.remove_dead_neurons(m, M.masks_from_weights(m))
    with torch.no_grad():
        out = m(x)
    assert torch.allclose(out, ref, atol=1e-6, rtol=1e-4), float((out - ref).abs().max())
    for n, mod in models.prunable_layers(m):
        assert torch.equal(masks[n], mod.weight != 0)
    assert sum(int((mod.weight != 0).sum()) for _, mod in models.prunable_layers(m)) <= sum(nz.values())
    return removed


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["lenet300", "lenet5", "alexnet"])
def test_dead_neuron_removal_on_zoo_models_keeps_outputs(name, bias):
    removed = _check_removal(name, bias)
    fcs = [n for n, mod in models.prunable_layers(models.create(name)) if isinstance(mod, nn.Linear)]
    assert removed[fcs[0]] >= 4  # at least the two unread and the two constant-zero neurons of the first fc


@pytest.mark.slow
@pytest.mark.parametrize("bias", [True, False])
def test_dead_neuron_removal_on_vgg16_keeps_outputs(bias):
    removed = _check_removal("vgg16", bias)
    assert removed["features.0"] >= 2  # padded convs: the constant-zero neurons go, relu(0.5) stays


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_a_whole_layer_dying_keeps_outputs(name):
    for layer, _ in models.prunable_layers(models.create(name))[:-1]:
        torch.manual_seed(1)
        m = models.create(name).eval()
        _kill_some(m, True)
        with torch.no_grad():
            m.get_submodule(layer).weight.zero_()
        x = torch.randn(3, 1, 28, 28)
        with torch.no_grad():
            ref = m(x)
        m, masks, _ = P.remove_dead_neurons(m, M.masks_from_weights(m))
        assert m.get_submodule(layer).weight.shape[0] == 1, layer
        with torch.no_grad():
            assert torch.allclose(m(x), ref, atol=1e-6, rtol=1e-4), layer


# --- report figures ------------------------------------------------------------------------------------


def _fake_ckpt(name: str):
    import types

    torch.manual_seed(0)
    m = models.create(name, num_classes=10).eval()
    before = R.weight_histograms(m)
    weights0 = {n: mod.weight.numel() for n, mod in models.prunable_layers(m)}
    _kill_some(m, True)
    m, _, _ = P.remove_dead_neurons(m)
    hist = [{"step": 1, "compression": 2.0, "accuracy_after_prune": 0.5, "test_accuracy": 0.6},
            {"step": 2, "compression": 2.5, "accuracy_after_prune": 0.4, "test_accuracy": 0.3, "undone": True}]
    return types.SimpleNamespace(model=m, input_shape=models.input_shape(name), meta={"weight_hist_before": before},
                                 schedule={"weights0": weights0, "history": hist}, model_name=name,
                                 metrics={"baseline_test_accuracy": 0.7}), weights0


def _report_files(name, tmp_path):
    ck, _ = _fake_ckpt(name)
    files = R.write_report(ck, tmp_path)
    assert sorted(f.name for f in files) == ["masks.png", "remaining.png", "schedule.png", "weights.png"]
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "alexnet"])
def test_report_pngs_for_every_model(name, tmp_path):
    _report_files(name, tmp_path)


@pytest.mark.slow
def test_report_pngs_for_vgg16(tmp_path):
    _report_files("vgg16", tmp_path)


def test_mask_figure_counts_kept_against_the_dense_layer(tmp_path, monkeypatch):
    """masks.png said "% kept" of the layer's current size: after dead-neuron removal shrank it, the figure
    overstated what was kept, disagreeing with remaining.png and `prunec info` (dense sizes)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    titles = []
    real = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, t, *a, **kw: (titles.append(t), real(self, t, *a, **kw))[1])
    ck, weights0 = _fake_ckpt("lenet300")
    assert ck.model.fc2.weight.numel() < weights0["fc2"]  # shrunk
    R.write_report(ck, tmp_path)
    for n in ("fc1", "fc2", "fc3"):
        w = ck.model.get_submodule(n).weight
        want = f"{100 * int((w != 0).sum()) / weights0[n]:.1f}% kept"
        assert any(t.startswith(f"{n} mask") and t.endswith(want) for t in titles), (n, want, titles)


# --- pruning a pruned model again ---------------------------------------------------------------------


def test_pruning_again_counts_against_the_first_runs_dense_network(tiny):
    """A second run on a pruned (and shrunk) model took the rescaled dropout rate for Do and the shrunk sizes
    for Co: pruning fc2 no further rescaled drop1 a second time and compression/fractions counted against
    the shrunk layers. With the first run's schedule the second run continues from its dense reference."""
    torch.manual_seed(0)
    m = DropNet()
    first = Recipe(sparsity={"fc1": 0.5, "fc2": 0.96}, steps=1, retrain_epochs=0)
    m, masks, st1 = P.run_schedule(m, tiny, first, baseline_accuracy=0.0, **QUIET)
    p1 = 0.5 * (int(masks["fc2"].sum()) / (48 * 32)) ** 0.5
    assert m.drop1.p == pytest.approx(p1) and m.fc1.weight.shape[0] < 48  # rescaled, and fc1 shrunk
    dense = {"fc1": 784 * 48, "fc2": 48 * 32, "fc3": 32 * 10}
    assert st1["weights0"] == dense
    again = Recipe(sparsity={"fc1": 0.8, "fc2": 0.96}, steps=1, retrain_epochs=0)
    m, masks, st2 = P.run_schedule(m, tiny, again, baseline_accuracy=0.0, masks=masks, base_schedule=st1, **QUIET)
    assert st2["weights0"] == dense and st2["dropout_p0"] == st1["dropout_p0"]
    assert int(masks["fc1"].sum()) == round(0.2 * dense["fc1"])  # 80 % of the dense fc1, not of the shrunk one
    assert m.drop1.p == pytest.approx(p1)  # fc2 unchanged: the rate stays Do·sqrt(Cr/Co), not rescaled twice
    nz = sum(int(mk.sum()) for mk in masks.values())
    assert st2["history"][-1]["compression"] == pytest.approx(sum(dense.values()) / nz)


def test_prunec_prune_of_a_pruned_checkpoint_counts_from_the_dense_model(tmp_path, monkeypatch):
    """`prunec prune PRUNED.pt` with the fractions PRUNED.pt was made with prunes nothing more: fractions count from
    the first run's dense layer sizes (carried in its schedule), not from the layers dead-neuron removal shrank
    (fc2 at 1 % kills fc1 neurons and fc2 rows: 1 % of the shrunk fc2 would prune more)."""
    from click.testing import CliRunner

    from prunec.cli import main

    for k, v in {"PRUNEC_THREADS": "1", "PRUNEC_SYNTHETIC_TRAIN": "300", "PRUNEC_SYNTHETIC_TEST": "100"}.items():
        monkeypatch.setenv(k, v)
    run = lambda *a: CliRunner().invoke(main, [str(x) for x in a])  # noqa: E731
    base, p1, p2 = tmp_path / "b.pt", tmp_path / "p1.pt", tmp_path / "p2.pt"
    assert run("train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--quiet", "--out", base).exit_code == 0
    args = ["--sparsity", "fc1=0.5,fc2=0.99,fc3=0.3", "--steps", "1", "--retrain-epochs", "0", "--final-epochs", "0",
            "--quiet"]
    r = run("prune", base, "--out", p1, *args)
    assert r.exit_code == 0, r.output
    r = run("prune", p1, "--out", p2, *args)
    assert r.exit_code == 0, r.output
    c1, c2 = C.load(p1), C.load(p2)
    n1 = {k: int(v.sum()) for k, v in c1.masks.items()}
    n2 = {k: int(v.sum()) for k, v in c2.masks.items()}
    assert c1.model.fc2.weight.shape[1] < 300  # the first run did shrink fc1/fc2
    assert n2 == n1, (n1, n2)


def test_sensitivity_refuses_unknown_layer_names(tiny):
    """analyse(layers=[...]) silently skipped names the model lacks (a typo gave an empty analysis)."""
    from prunec import sensitivity as S

    with pytest.raises(PrunecError, match="unknown layer"):
        S.analyse(models.create("lenet300"), tiny.test, fractions=(0.5,), layers=["fc1", "fc9"])
