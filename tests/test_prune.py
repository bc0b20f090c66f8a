"""Thresholds, schedule, dropout rescale, dead-neuron removal, the iterative schedule and its resume."""
import copy
import math

import pytest
import torch
from torch import nn

from prunec import checkpoint as C
from prunec import data as D
from prunec import masks as M
from prunec import prune as P
from prunec.errors import PrunecError
from prunec.models import LeNet5, LeNet300
from prunec.recipes import Recipe, parse_sparsity

torch.set_num_threads(1)


# --- thresholds ---------------------------------------------------------------------------------------

def test_quality_threshold_is_q_times_std():
    torch.manual_seed(0)
    w = torch.randn(200, 50)
    mask = torch.ones_like(w, dtype=torch.bool)
    q = 0.7
    new = P.quality_mask(w, mask, q)
    t = q * float(w.std())
    assert torch.equal(new, w.abs() >= t)
    frac = 1 - new.float().mean().item()
    assert abs(frac - math.erf(q / math.sqrt(2))) < 0.03  # Gaussian: P(|w| < q·σ)
    # an explicit std (the dense one) overrides the current one
    assert torch.equal(P.quality_mask(w, mask, q, std=2.0), w.abs() >= q * 2.0)


@pytest.mark.parametrize("s", [0.0, 0.3, 0.9, 0.999])
def test_sparsity_mask_exact_count_and_smallest_go(s):
    torch.manual_seed(1)
    w = torch.randn(100, 37)
    new = P.sparsity_mask(w, torch.ones_like(w, dtype=torch.bool), s)
    assert int(new.sum()) == round((1 - s) * w.numel())
    if 0 < s:
        assert w[~new].abs().max() <= w[new].abs().min()


def test_sparsity_mask_never_regrows():
    torch.manual_seed(2)
    w = torch.randn(50, 50)
    old = torch.rand(50, 50) > 0.5
    new = P.sparsity_mask(w, old, 0.2)  # asks for fewer pruned than already pruned
    assert not (new & ~old).any()


def test_global_threshold_one_magnitude_over_layers():
    torch.manual_seed(3)
    model = LeNet300()
    with torch.no_grad():
        model.fc3.weight.mul_(10)  # fc3 large: a global threshold should spare it
    masks = P.global_masks(model, M.dense_masks(model), 0.9)
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * total)
    kept_min = min(model.get_submodule(n).weight[m].abs().min() for n, m in masks.items() if m.any())
    pruned_max = max(model.get_submodule(n).weight[~m].abs().max() for n, m in masks.items() if (~m).any())
    assert pruned_max <= kept_min
    assert masks["fc3"].float().mean() > masks["fc1"].float().mean()


def test_schedule_fractions():
    for kind in ("cubic", "linear"):
        fs = [P.schedule_fraction(k, 6, kind) for k in range(1, 7)]
        assert all(a < b for a, b in zip(fs, fs[1:])) and fs[-1] == 1.0
    cubic = [P.schedule_fraction(k, 6, "cubic") for k in range(1, 7)]
    assert cubic[0] > 1 / 6  # big first steps, small last ones
    assert P.schedule_fraction(1, 5, "oneshot") == 1.0


def test_sparsity_for_compression_hits_target():
    model = LeNet300()
    sp = P.sparsity_for_compression(model, {"fc1": 0.9, "fc2": 0.9, "fc3": 0.5}, 20.0)
    n = {"fc1": 235200, "fc2": 30000, "fc3": 1000}
    kept = sum((1 - sp[k]) * n[k] for k in n)
    assert sum(n.values()) / kept == pytest.approx(20.0, rel=1e-6)
    assert sp["fc3"] < sp["fc1"]  # the profile's shape is kept
    with pytest.raises(PrunecError):
        P.sparsity_for_compression(model, {"fc3": 0.5}, 20.0)


def test_parse_sparsity_and_validation():
    assert parse_sparsity("fc1=0.92, fc2=0.91") == {"fc1": 0.92, "fc2": 0.91}
    for bad in ("fc1=1.0", "fc1=-0.1", "fc1", "fc1=abc", ""):
        with pytest.raises(PrunecError):
            parse_sparsity(bad)
    with pytest.raises(PrunecError):
        Recipe(sparsity={"fc1": 1.2}).validate()
    with pytest.raises(PrunecError, match="unknown layer"):
        P.new_state(LeNet300(), Recipe(sparsity={"fc9": 0.5}), {})


# --- dropout rescale ----------------------------------------------------------------------------------

def test_dropout_rescale_per_fc_layer():
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Dropout(0.5), nn.Linear(40, 30), nn.ReLU(),
                          nn.Dropout(0.4), nn.Linear(30, 5))
    assert P.feeding_dropouts(model) == {"3": "2", "6": "5"}
    masks = M.dense_masks(model)
    masks["3"] = P.sparsity_mask(model[3].weight, masks["3"], 0.91)
    masks["6"] = P.sparsity_mask(model[6].weight, masks["6"], 0.75)
    state = P.new_state(model, Recipe(sparsity={"3": 0.91}), masks)
    P.rescale_dropout(model, masks, state["dropout_p0"], state["weights0"])
    assert model[2].p == pytest.approx(0.5 * math.sqrt(0.09), rel=1e-3)
    assert model[5].p == pytest.approx(0.4 * math.sqrt(int(masks["6"].sum()) / 150), rel=1e-9)
    assert 0.19 < model[5].p < 0.21


# --- dead-neuron removal ------------------------------------------------------------------------------

def _kill(model, masks):
    M.apply_masks(model, masks)
    return model


def test_dead_neurons_removed_fc_outputs_unchanged():
    torch.manual_seed(4)
    model = LeNet300().eval()
    masks = {n: P.sparsity_mask(model.get_submodule(n).weight, torch.ones_like(model.get_submodule(n).weight, dtype=torch.bool), 0.5)
             for n in ("fc1", "fc2", "fc3")}
    masks["fc1"][:10] = False  # 10 fc1 neurons with no input (their bias still feeds fc2 through relu)
    with torch.no_grad():
        model.fc1.bias[:5] = 0.3  # positive: relu(bias) must be folded into fc2's bias
        model.fc1.bias[5:10] = -0.3  # negative: contributes nothing
    masks["fc2"][:, 20:27] = False  # 7 fc1 neurons with no output
    masks["fc3"][:, 90:] = False  # 10 fc2 neurons with no output
    _kill(model, masks)
    x = torch.randn(16, 1, 28, 28)
    ref = model(x)
    model, masks2, removed = P.remove_dead_neurons(model, masks)
    assert model.fc1.out_features == 300 - 17 and model.fc2.in_features == 283
    assert model.fc2.out_features == 90 and model.fc3.in_features == 90
    assert removed == {"fc1": 17, "fc2": 10, "fc3": 0}
    assert torch.allclose(model(x), ref, atol=1e-5)
    assert all(masks2[n].shape == model.get_submodule(n).weight.shape for n in masks2)


def test_dead_neurons_conv_flatten_fc_outputs_unchanged():
    torch.manual_seed(5)
    model = LeNet5().eval()
    masks = M.dense_masks(model)
    masks["conv1"][3] = False  # conv1 channel 3: no input -> constant bias through pool into conv2 (no padding)
    masks["conv2"][:, 7] = False  # conv1 channel 7: no output
    masks["conv2"][11] = False  # conv2 channel 11: no input -> constant over its 4x4 block of fc1 columns
    masks["fc1"][:, 16 * 20 : 16 * 21] = False  # conv2 channel 20: no output (its 16 flattened columns)
    masks["fc2"][:, 100:140] = False  # 40 fc1 neurons with no output
    _kill(model, masks)
    x = torch.randn(8, 1, 28, 28)
    ref = model(x)
    model, masks2, removed = P.remove_dead_neurons(model, masks)
    assert removed["conv1"] == 2 and removed["conv2"] == 2 and removed["fc1"] == 40
    assert model.conv2.in_channels == 18 and model.fc1.in_features == 48 * 16 and model.fc2.in_features == 460
    assert torch.allclose(model(x), ref, atol=1e-5)


def test_shrunk_model_checkpoint_round_trip(tmp_path):
    torch.manual_seed(6)
    model = LeNet5().eval()
    masks = M.dense_masks(model)
    masks["conv2"][:5] = False
    masks["fc2"][:, :50] = False
    _kill(model, masks)
    model, masks, _ = P.remove_dead_neurons(model, masks)
    x = torch.randn(2, 1, 28, 28)
    C.save(tmp_path / "s.pt", model, "lenet5", masks=masks, kind="pruned")
    ck = C.load(tmp_path / "s.pt")
    assert ck.model.fc1.out_features == 450 and ck.model.conv2.out_channels == 45
    assert torch.equal(ck.model(x), model(x))


# --- the schedule -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return D.synthetic(n_train=256, n_test=128, seed=0)


def _trained(tiny):
    from prunec.train import TrainConfig, fit

    torch.manual_seed(0)
    model = LeNet300()
    fit(model, tiny.train, TrainConfig(epochs=2, lr=0.05, batch_size=64), progress=False)
    return model


def test_schedule_masks_shrink_survivors_kept(tiny):
    model = _trained(tiny)
    original = copy.deepcopy(model)
    seen = []
    recipe = Recipe(sparsity={"fc1": 0.9, "fc2": 0.8, "fc3": 0.3}, steps=3, retrain_epochs=0, batch_size=64, remove_dead=False)
    model, masks, st = P.run_schedule(model, tiny, recipe, baseline_accuracy=0.5, progress=False, log=lambda s: None,
                                      on_step=lambda m, mk, s: seen.append(M.clone_masks(mk)))
    assert len(seen) == 3
    for a, b in zip(seen, seen[1:]):
        assert all(not (b[n] & ~a[n]).any() for n in a)  # a pruned weight never returns
    assert int(masks["fc1"].sum()) == round(0.1 * 235200)
    for n in masks:  # no retraining: survivors are exactly the dense weights (never re-initialised)
        w, w0 = model.get_submodule(n).weight, original.get_submodule(n).weight
        assert torch.equal(w[masks[n]], w0[masks[n]])
        assert torch.count_nonzero(w[~masks[n]]) == 0
    assert st["step"] == 3 and st["done"] and len(st["history"]) == 3


def test_schedule_retrains_with_mask_held(tiny):
    model = _trained(tiny)
    recipe = Recipe(sparsity={"fc1": 0.95, "fc2": 0.9}, steps=2, retrain_epochs=1, batch_size=64, reg="l1",
                    reg_strength=1e-5, remove_dead=True)
    model, masks, st = P.run_schedule(model, tiny, recipe, baseline_accuracy=0.5, progress=False, log=lambda s: None)
    for n, m in masks.items():
        assert torch.count_nonzero(model.get_submodule(n).weight[~m]) == 0
    assert st["history"][-1]["compression"] > 10


def test_max_accuracy_drop_undoes_the_step(tiny):
    model = _trained(tiny)
    from prunec.train import evaluate

    base = evaluate(model, tiny.test)
    ref = copy.deepcopy(model.state_dict())
    recipe = Recipe(sparsity={"fc1": 0.999, "fc2": 0.999, "fc3": 0.99}, steps=2, schedule="oneshot", retrain_epochs=0,
                    max_accuracy_drop=0.0, remove_dead=False)
    model, masks, st = P.run_schedule(model, tiny, recipe, baseline_accuracy=base, progress=False, log=lambda s: None)
    assert st["stopped"] and st["history"][0].get("undone")
    assert all(m.all() for m in masks.values())
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_resume_after_interruption_keeps_masks(tiny, tmp_path):
    model = _trained(tiny)
    recipe = Recipe(sparsity={"fc1": 0.9, "fc2": 0.8}, steps=3, retrain_epochs=1, batch_size=64, remove_dead=False)
    path = tmp_path / "run.pt.resume"

    class Stop(Exception):
        pass

    def on_step(m, mk, st):
        C.save(path, m, "lenet300", masks=mk, kind="pruning", schedule=st, recipe=recipe.to_dict())
        if st["step"] == 2:
            raise Stop

    with pytest.raises(Stop):
        P.run_schedule(copy.deepcopy(model), tiny, recipe, baseline_accuracy=0.5, progress=False, log=lambda s: None, on_step=on_step)
    ck = C.load(path)
    assert ck.kind == "pruning" and ck.schedule["step"] == 2
    saved = M.clone_masks(ck.masks)
    for n, m in saved.items():
        assert torch.count_nonzero(ck.model.get_submodule(n).weight[~m]) == 0
    steps_run = []
    model2, masks2, st = P.run_schedule(ck.model, tiny, Recipe.from_dict(ck.meta["recipe"]), baseline_accuracy=0.5,
                                        masks=ck.masks, state=ck.schedule, progress=False, log=lambda s: None,
                                        on_step=lambda m, mk, s: steps_run.append(s["step"]))
    assert steps_run == [3]
    assert all(not (masks2[n] & ~saved[n]).any() for n in saved)
    assert int(masks2["fc1"].sum()) == round(0.1 * 235200)
    assert [h["step"] for h in st["history"]] == [1, 2, 3]


def test_alternate_freezes_the_other_kind():
    from prunec.train import TrainConfig, fit

    data = D.synthetic(n_train=128, n_test=32, seed=1)
    torch.manual_seed(0)
    model = LeNet5()
    conv0 = model.conv1.weight.detach().clone()
    fc0 = model.fc1.weight.detach().clone()
    kind = P._param_kind(model)
    fit(model, data.train, TrainConfig(epochs=1, batch_size=64), trainable=lambda n: kind(n) != "conv", progress=False)
    assert torch.equal(model.conv1.weight, conv0) and not torch.equal(model.fc1.weight, fc0)
    assert model.conv1.weight.requires_grad  # unfrozen afterwards


def test_distillation_pulls_student_towards_teacher(tiny):
    import torch.nn.functional as F

    from prunec.train import TrainConfig, fit, logits


    # a teacher that disagrees with the labels: only the distillation term can pull the student to it
    t = 3 * torch.randn(len(tiny.train), 10, generator=torch.Generator().manual_seed(3))
    kls = {}
    for alpha in (0.0, 1.0):
        torch.manual_seed(9)
        student = LeNet300()
        masks = {"fc1": torch.rand(300, 784) < 0.1}
        fit(student, tiny.train, TrainConfig(epochs=2, lr=0.05, batch_size=64, distill=alpha, distill_temperature=2.0),
            masks=masks, teacher_logits=t, progress=False)
        assert torch.count_nonzero(student.fc1.weight[~masks["fc1"]]) == 0
        s = logits(student, tiny.train.x)
        kls[alpha] = float(F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="batchmean"))
    assert kls[1.0] < kls[0.0]


def test_label_smoothing_softens_the_retrained_outputs(tiny):
    """With smoothed targets the retrained network is less confident on its training set (masks still held)."""
    from prunec.recipes import Recipe
    from prunec.train import fit, logits

    conf = {}
    for e in (0.0, 0.3):
        torch.manual_seed(4)
        model = LeNet300()
        masks = {"fc1": torch.rand(300, 784) < 0.1}
        cfg = P.retrain_config(Recipe(lr=0.05, label_smoothing=e, retrain_epochs=15, batch_size=32), 15)
        assert cfg.label_smoothing == e
        fit(model, tiny.train, cfg, masks=masks, progress=False)
        assert torch.count_nonzero(model.fc1.weight[~masks["fc1"]]) == 0
        conf[e] = float(torch.softmax(logits(model, tiny.train.x), 1).max(1).values.mean())
    assert conf[0.3] < conf[0.0] - 0.05, conf


def test_weight_averaging_ends_on_the_mean_of_epoch_ends(tiny):
    from prunec.train import TrainConfig, fit

    torch.manual_seed(0)
    model = LeNet300()
    masks = {"fc1": torch.rand(300, 784) < 0.2}
    ends = []
    fit(model, tiny.train, TrainConfig(epochs=3, lr=0.01, batch_size=64, lr_schedule="constant"), masks=masks, progress=False,
        on_epoch=lambda e, rec: ends.append(model.fc1.weight.detach().clone()))
    torch.manual_seed(0)
    avg_model = LeNet300()
    fit(avg_model, tiny.train, TrainConfig(epochs=3, lr=0.01, batch_size=64, lr_schedule="constant", average=True), masks=masks,
        progress=False)
    assert torch.allclose(avg_model.fc1.weight, torch.stack(ends).mean(0), atol=1e-6)
    assert torch.count_nonzero(avg_model.fc1.weight[~masks["fc1"]]) == 0


@pytest.mark.parametrize("span", ["step", "run"])
def test_lr_span_one_cosine_over_the_run(tiny, monkeypatch, span):
    """lr_span="run": one cosine decay across all retraining phases; "step": it restarts in every phase."""
    lrs = []
    real_fit = P.fit

    def spy(*a, **kw):
        h = real_fit(*a, **kw)
        lrs.extend(r["lr"] for r in h)
        return h

    monkeypatch.setattr(P, "fit", spy)
    model = _trained(tiny)
    recipe = Recipe(sparsity={"fc1": 0.5}, steps=3, retrain_epochs=1, final_epochs=1, batch_size=64, lr=0.1,
                    lr_span=span, remove_dead=False)
    P.run_schedule(model, tiny, recipe, baseline_accuracy=0.5, progress=False, log=lambda s: None)
    assert len(lrs) == 4  # epoch-end lrs: 4 iterations per epoch (256 / 64), 16 in the whole run
    if span == "run":
        want = [0.1 * 0.5 * (1 + math.cos(math.pi * t / 16)) for t in (3, 7, 11, 15)]
        assert lrs == pytest.approx(want)
    else:  # each phase decays to (near) 0 on its own; the last one is 2 epochs (1 + the final one)
        end = 0.1 * 0.5 * (1 + math.cos(math.pi * 3 / 4))
        assert lrs == pytest.approx([end, end, 0.1 * 0.5 * (1 + math.cos(math.pi * 3 / 8)), 0.1 * 0.5 * (1 + math.cos(math.pi * 7 / 8))])
    with pytest.raises(PrunecError):
        Recipe(lr_span="epoch").validate()


def test_schedule_keeps_zeros_of_a_base_pruned_elsewhere_and_takes_partial_masks(tiny):
    """A base whose weights are already zero without masks (torch.nn.utils.prune then prune.remove) keeps them
    at zero: run_schedule started from all-True masks and retraining revived them. A mask set naming only some
    layers crashed with a KeyError; the others are read from their weights."""
    model = _trained(tiny)
    with torch.no_grad():
        model.fc1.weight[:, ::2] = 0.0
    zero = model.fc1.weight.detach() == 0
    recipe = Recipe(sparsity={"fc2": 0.5}, steps=1, retrain_epochs=1, lr=0.05, batch_size=64, remove_dead=False)
    m1, masks, _ = P.run_schedule(copy.deepcopy(model), tiny, recipe, baseline_accuracy=0.5, progress=False,
                                  log=lambda s: None)
    assert bool((m1.fc1.weight.detach()[zero] == 0).all()) and not bool(masks["fc1"][zero].any())
    assert bool((m1.fc1.weight.detach()[~zero] != 0).any())
    part = {"fc2": torch.ones_like(model.fc2.weight, dtype=torch.bool)}
    m2, masks2, _ = P.run_schedule(copy.deepcopy(model), tiny, recipe, baseline_accuracy=0.5, masks=part,
                                   progress=False, log=lambda s: None)
    assert set(masks2) == {"fc1", "fc2", "fc3"} and bool((m2.fc1.weight.detach()[zero] == 0).all())
