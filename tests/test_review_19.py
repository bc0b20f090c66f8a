"""Nineteenth session: the two findings the eighteenth session's report review left open.

* schedule.png ended at the compression before dead-neuron removal (141x on a run whose checkpoint and `info` say
  191.76x), and nothing on the figure said so: the saved model's compression is now its own point, labelled.
* A model of one's own, pruned with `run_schedule` and exported with `export_program` + `torch.export.save`, lost
  the layer sizes before pruning: after dead-neuron removal `prunec info` and `prunec build` counted against the
  shrunk layers. `prunec.export.save_program` writes the metadata `prunec export` writes for a checkpoint.
"""
from __future__ import annotations

import json
import math

import matplotlib.figure
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from prunec import checkpoint as C
from prunec import data as D
from prunec import export as E
from prunec import masks as M
from prunec import prune as P
from prunec import report as R
from prunec.cli import main
from prunec.errors import PrunecError
from prunec.recipes import Recipe


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def _pruned_with_dead_neurons():
    """fc2 at 10 % leaves fc1 neurons unread; their nonzero incoming weights go with them."""
    torch.manual_seed(0)
    ds = D.synthetic(n_train=32, n_test=16, shape=(1, 8, 8))
    r = Recipe(sparsity={"fc1": 0.5, "fc2": 0.9}, steps=1, retrain_epochs=1, remove_dead=True, batch_size=16)
    net, masks, state = P.run_schedule(Mlp(), ds, r, baseline_accuracy=0.1, progress=False, log=lambda s: None)
    assert state["dead_removed"].get("fc1", 0) > 0, state["dead_removed"]
    return net, masks, state


# --- schedule.png ---------------------------------------------------------------------------------------------


def _legend_texts(monkeypatch) -> list[list[str]]:
    """The legend labels of every figure saved while the patch holds."""
    seen = []
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, *a, **k):
        seen.append([t.get_text() for lg in fig.legends for t in lg.get_texts()])
        return real(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return seen


def test_schedule_figure_shows_the_compression_after_dead_neuron_removal(tmp_path, monkeypatch):
    hist = [{"step": 1, "compression": 3.0, "accuracy_after_prune": 0.5, "test_accuracy": 0.6},
            {"step": 2, "compression": 10.0, "accuracy_after_prune": 0.5, "test_accuracy": 0.6}]
    seen = _legend_texts(monkeypatch)
    assert R.plot_schedule(hist, 0.7, tmp_path / "a.png", final_compression=13.5)
    assert R.plot_schedule(hist, 0.7, tmp_path / "b.png", final_compression=10.0)  # nothing removed: no extra point
    assert R.plot_schedule(hist, 0.7, tmp_path / "c.png")
    assert "after dead-neuron removal: 13.50x" in seen[0], seen[0]
    assert not any("dead-neuron" in t for t in seen[1] + seen[2]), seen


def test_report_passes_the_saved_models_compression_to_the_schedule_figure(tmp_path, monkeypatch):
    net, masks, state = _pruned_with_dead_neurons()
    ck = C.Checkpoint(model=net, model_name="mine", input_shape=(1, 8, 8), masks=masks,
                      meta={"kind": "pruned", "schedule": state,
                            "metrics": {"test_accuracy": 0.5, "baseline_test_accuracy": 0.5}})
    calls = {}
    monkeypatch.setattr(R, "plot_schedule", lambda *a: calls.setdefault("schedule", a))
    R._draw(ck, lambda name, fn, *args: fn(*args, tmp_path / name))
    final = calls["schedule"][-1]
    saved = M.compression(net, dense_sizes=state["weights0"])
    assert final == pytest.approx(saved)
    assert final > state["history"][-1]["compression"] * 1.01  # the removal took nonzero weights with it


# --- save_program: a model of one's own with its sizes before pruning --------------------------------------------


def _info(path) -> dict:
    r = CliRunner().invoke(main, ["info", str(path), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_save_program_keeps_the_sizes_before_pruning_for_info_and_build(tmp_path):
    net, masks, state = _pruned_with_dead_neurons()
    assert net.fc1.out_features < 32  # shrunk
    p = E.save_program(net, (1, 8, 8), tmp_path / "mine.pt2", state=state, baseline_test_accuracy=0.5,
                       model_name="mine", dataset="synthetic")
    info = _info(p)
    assert {l["name"]: l["weights"] for l in info["layers"]} == {"fc1": 64 * 32, "fc2": 32 * 10}
    assert info["compression"] == pytest.approx(M.compression(net, dense_sizes=state["weights0"]))
    assert info["test_accuracy"] == pytest.approx(state["history"][-1]["test_accuracy"])
    assert info["baseline_test_accuracy"] == 0.5 and info["model"] == "mine" and info["dataset"] == "synthetic"
    # the bare route counts against the layers as they are now: what save_program is for
    bare = tmp_path / "bare.pt2"
    torch.export.save(E.export_program(net, (1, 8, 8)), bare)
    assert _info(bare)["layers"][0]["weights"] == 64 * net.fc1.out_features
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["build", str(p), "--out", str(out)])
    assert r.exit_code == 0, r.output
    man = json.loads((out / "manifest.json").read_text())
    before = {l["name"]: l["weights_before_pruning"] for l in man["layers"] if l.get("weights_before_pruning")}
    assert before == {"fc1": 64 * 32, "fc2": 32 * 10}, man["layers"]


def test_save_program_without_state_is_the_model_as_it_is(tmp_path):
    torch.manual_seed(1)
    net = Mlp()
    with torch.no_grad():
        net.fc1.weight[:, ::2] = 0
    info = _info(E.save_program(net, (1, 8, 8), tmp_path / "m.pt2"))
    assert info["compression"] == pytest.approx((64 * 32 + 320) / (32 * 32 + 320))
    assert info["test_accuracy"] is None and info["baseline_test_accuracy"] is None and info["model"] is None


@pytest.mark.parametrize("kwargs, match", [
    ({"test_accuracy": 90.0}, "test_accuracy must be a fraction"),
    ({"baseline_test_accuracy": -0.1}, "baseline_test_accuracy must be a fraction"),
    ({"baseline_test_accuracy": True}, "baseline_test_accuracy must be a fraction"),
    ({"state": [1, 2]}, "state must be the dict"),
    ({"state": {"weights0": {"conv9": 10}}}, "names layers the model does not have.*conv9"),
    ({"state": {"weights0": {"fc1": 10}}}, "fewer weights than the layer has now"),
    ({"state": {"weights0": {"fc1": "many"}}}, "must map layer names to weight counts"),
    ({"model_name": 3}, "model_name must be a string"),
])
def test_save_program_refuses_what_does_not_fit_and_writes_nothing(tmp_path, kwargs, match):
    out = tmp_path / "x.pt2"
    with pytest.raises(PrunecError, match=match):
        E.save_program(Mlp(), (1, 8, 8), out, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_save_program_takes_the_last_kept_steps_accuracy(tmp_path):
    state = {"history": [{"step": 1, "test_accuracy": 0.8}, {"step": 2, "test_accuracy": 0.3, "undone": True}]}
    info = _info(E.save_program(Mlp(), (1, 8, 8), tmp_path / "m.pt2", state=state))
    assert info["test_accuracy"] == 0.8
    # the last of several kept steps, not the first (mutant X8 of the audit)
    several = {"history": [{"step": 1, "test_accuracy": 0.9}, {"step": 2, "test_accuracy": 0.8},
                           {"step": 3, "test_accuracy": 0.3, "undone": True}]}
    assert E.read_metadata(E.save_program(Mlp(), (1, 8, 8), tmp_path / "x8.pt2", state=several))["test_accuracy"] == 0.8
    assert math.isclose(_info(E.save_program(Mlp(), (1, 8, 8), tmp_path / "n.pt2", state=state,
                                             test_accuracy=0.75))["test_accuracy"], 0.75)


# --- prunec prune --recipe paper: the paper's own recipe one option away -----------------------------------------


def test_paper_recipe_is_the_papers_profile_at_a_tenth_of_the_dense_lr():
    from prunec.recipes import PAPER_REMAINING, default_recipe
    from prunec.train import DEFAULTS

    for name in ("lenet300", "lenet5"):
        r = default_recipe(name, "paper").validate()
        assert {k: round(1 - v, 6) for k, v in r.sparsity.items()} == PAPER_REMAINING[name]
        assert r.lr == pytest.approx(DEFAULTS[name].lr / 10) and r.lr_span == "step"
        assert r.label_smoothing == 0 and r.reg == "l2" and r.momentum == 0.9 and (r.steps, r.retrain_epochs) == (4, 10)
        assert default_recipe(name) == default_recipe(name, "tuned") != r
    assert default_recipe("alexnet", "paper") == default_recipe("alexnet")  # already the paper's
    with pytest.raises(PrunecError, match="unknown recipe 'mine'"):
        default_recipe("lenet300", "mine")


@pytest.fixture(scope="module")
def synthetic_base(tmp_path_factory):
    from conftest import train_synthetic

    return train_synthetic(tmp_path_factory.mktemp("r19"), {"PRUNEC_SYNTHETIC_TRAIN": "300", "PRUNEC_SYNTHETIC_TEST": "100",
                                                            "PRUNEC_THREADS": "1"})


def _prune(*args):
    env = {"PRUNEC_SYNTHETIC_TRAIN": "300", "PRUNEC_SYNTHETIC_TEST": "100", "PRUNEC_THREADS": "1"}
    return CliRunner().invoke(main, ["prune", *[str(a) for a in args], "--quiet"], env=env)


def test_prune_recipe_paper_through_the_cli_and_its_resume(synthetic_base, tmp_path):
    from prunec.recipes import default_recipe

    out = tmp_path / "p.pt"
    few = ["--steps", "2", "--retrain-epochs", "1"]
    r = _prune(synthetic_base, "--out", out, "--recipe", "paper", *few, "--stop-after", "1")
    assert r.exit_code == 0, r.output
    stored = C.load(C.resume_path(out)).meta["recipe"]
    paper = default_recipe("lenet300", "paper").to_dict()
    assert {k: stored[k] for k in ("sparsity", "lr", "lr_span", "label_smoothing", "batch_size")} == \
           {k: paper[k] for k in ("sparsity", "lr", "lr_span", "label_smoothing", "batch_size")}
    r = _prune(synthetic_base, "--out", out, "--recipe", "tuned", *few, "--resume")  # another recipe: refused
    assert r.exit_code != 0 and "--recipe differ" in r.output, r.output
    r = _prune(synthetic_base, "--out", out, "--recipe", "paper", *few, "--resume")  # the same command line: continues
    assert r.exit_code == 0, r.output
    final = C.load(out)
    assert final.meta["recipe"]["lr"] == paper["lr"] and final.schedule["step"] == 2
    r = _prune(synthetic_base, "--out", tmp_path / "q.pt", "--recipe", "mine")
    assert r.exit_code == 2 and "'mine' is not one of 'tuned', 'paper'" in r.output, r.output


# --- export: gaps found by the mutation audit (tests/test_review_mutation_audit.py has the rest) ----------------


def test_X1_export_checkpoint_compression_counts_against_the_dense_network(tmp_path):
    from prunec.models import LeNet300

    torch.manual_seed(0)
    model = LeNet300()
    w0 = {n: m.weight.numel() for n, m in [("fc1", model.fc1), ("fc2", model.fc2), ("fc3", model.fc3)]}
    with torch.no_grad():
        model.fc1.weight[:10] = 0.0  # ten fc1 neurons without input and with output 0: removed
        model.fc1.bias[:10] = 0.0
        model.fc2.weight[:, 300 - 50:] = 0.0
    model, masks, removed = P.remove_dead_neurons(model)
    assert removed["fc1"] > 0 and model.fc1.weight.shape[0] < 300
    ck = tmp_path / "p.pt"
    C.save(ck, model, "lenet300", masks=masks, kind="pruned", schedule={"weights0": w0, "history": []})
    meta = E.read_metadata(E.export_checkpoint(ck, tmp_path / "p.pt2"))
    nz = sum(int((m.weight != 0).sum()) for m in (model.fc1, model.fc2, model.fc3))
    assert meta["weights0_total"] == sum(w0.values())
    assert abs(meta["compression"] - sum(w0.values()) / nz) < 1e-9


def test_X3_export_checkpoint_keeps_the_data_seed_over_the_seed(tmp_path):
    from prunec.models import LeNet300

    ck = tmp_path / "p.pt"
    C.save(ck, LeNet300(), "lenet300", seed=1, extra={"data_seed": 7})
    assert E.read_metadata(E.export_checkpoint(ck, tmp_path / "p.pt2"))["data_seed"] == 7


def test_X9_original_weights_ignores_non_positive_counts(tmp_path):
    ep = E.export_program(Mlp(), (1, 8, 8))
    p = E._save(ep, {"weights0": {"fc1": 1024, "fc2": 0}}, tmp_path / "m.pt2")
    assert E.original_weights(p) is None
