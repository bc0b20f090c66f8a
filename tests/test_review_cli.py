"""Review of the CLI contracts: `info --json` is valid JSON with fractions, `info` never tracebacks, `export`
never overwrites its own input, and an interrupted run's checkpoint reports the accuracy of the model it holds."""
import json

import pytest
import torch
from click.testing import CliRunner

from prunec import checkpoint as C
from prunec import models
from prunec.cli import main


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("PRUNEC_THREADS", "1")
    monkeypatch.setenv("PRUNEC_SYNTHETIC_TRAIN", "300")
    monkeypatch.setenv("PRUNEC_SYNTHETIC_TEST", "100")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ckpt(path, zero=False, **kw):
    torch.manual_seed(0)
    m = models.create("lenet300")
    if zero:
        for p in m.parameters():
            p.data.zero_()
    C.save(path, m, "lenet300", **kw)
    return path


@pytest.mark.parametrize("metrics", [
    {"test_accuracy": float("nan"), "baseline_test_accuracy": 0.9},
    {"test_accuracy": float("inf"), "baseline_test_accuracy": 0.9},
    {"test_accuracy": 91.2, "baseline_test_accuracy": 0.9},  # a percent is not a fraction
    {"test_accuracy": torch.tensor(0.5), "baseline_test_accuracy": 0.9},  # a 0-d tensor is
])
def test_info_json_is_valid_json_with_fractions(tmp_path, metrics):
    ck = _ckpt(tmp_path / "c.pt", kind="pruned", metrics=metrics)
    r = run("info", ck, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    for k in ("test_accuracy", "baseline_test_accuracy"):
        assert d[k] is None or (isinstance(d[k], float) and 0.0 <= d[k] <= 1.0)
    assert d["baseline_test_accuracy"] == 0.9
    if torch.is_tensor(metrics["test_accuracy"]):
        assert d["test_accuracy"] == 0.5
    assert run("info", ck).exit_code == 0


def test_info_dense_is_its_own_baseline(tmp_path):
    ck = _ckpt(tmp_path / "c.pt", metrics={"test_accuracy": 0.8})
    d = json.loads(run("info", ck, "--json").output)
    assert d["kind"] == "dense" and d["test_accuracy"] == d["baseline_test_accuracy"] == 0.8
    d = json.loads(run("info", _ckpt(tmp_path / "n.pt"), "--json").output)  # no metrics at all
    assert d["test_accuracy"] is None and d["baseline_test_accuracy"] is None and d["compression"] == 1.0


def test_info_text_of_a_fully_pruned_model(tmp_path):
    ck = _ckpt(tmp_path / "z.pt", zero=True, kind="pruned", metrics={"test_accuracy": 0.1, "baseline_test_accuracy": 0.9})
    r = run("info", ck)
    assert r.exit_code == 0, r.output
    assert "compression" in r.output and "every weight pruned" in r.output
    d = json.loads(run("info", ck, "--json").output)
    assert d["params_nonzero"] == 0 and d["compression"] is None


def test_export_refuses_to_overwrite_its_checkpoint(tmp_path):
    ck = _ckpt(tmp_path / "c.pt", metrics={"test_accuracy": 0.5})
    before = ck.read_bytes()
    r = run("export", ck, "--out", ck)
    assert r.exit_code == 2 and "CKPT itself" in r.output
    assert ck.read_bytes() == before


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("rc")
    r = CliRunner().invoke(main, ["train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--quiet",
                                  "--out", str(d / "b.pt")],
                           env={"PRUNEC_THREADS": "1", "PRUNEC_SYNTHETIC_TRAIN": "300", "PRUNEC_SYNTHETIC_TEST": "100"})
    assert r.exit_code == 0, r.output
    return d / "b.pt"


def test_prune_to_nothing_does_not_traceback(base, tmp_path):
    out = tmp_path / "z.pt"
    r = run("prune", base, "--out", out, "--data", "synthetic", "--quality", "1000", "--steps", "1",
            "--retrain-epochs", "0", "--final-epochs", "0", "--keep-dead", "--quiet")
    assert r.exit_code == 0, r.output
    assert json.loads(run("info", out, "--json").output)["params_nonzero"] == 0


def test_interrupted_run_reports_the_kept_models_accuracy(base, tmp_path):
    """A step undone by --max-accuracy-drop restores the previous model; the resume checkpoint holds that model,
    so its test_accuracy must be that model's, not the undone step's."""
    from prunec import data as D
    from prunec.train import evaluate

    out = tmp_path / "p.pt"
    r = run("prune", base, "--out", out, "--data", "synthetic", "--sparsity", "fc1=0.999,fc2=0.999,fc3=0.999",
            "--schedule", "oneshot", "--steps", "2", "--retrain-epochs", "0", "--final-epochs", "0",
            "--max-accuracy-drop", "0", "--stop-after", "1", "--quiet")
    assert r.exit_code == 0, r.output
    res = C.load(C.resume_path(out))
    assert res.schedule["history"][-1].get("undone")
    ds = D.synthetic(n_train=300, n_test=100, seed=0, shape=models.input_shape("lenet300"))
    assert res.metrics["test_accuracy"] == pytest.approx(evaluate(res.model, ds.test))
    info = json.loads(run("info", C.resume_path(out), "--json").output)
    assert info["test_accuracy"] == pytest.approx(evaluate(res.model, ds.test))


def test_prune_a_pruned_base_without_a_recorded_baseline(tmp_path):
    """A pruned checkpoint written without baseline_test_accuracy (e.g. through the checkpoint API) can be pruned
    further: the base itself is the baseline, said on stderr, instead of a crash formatting None."""
    from click.testing import CliRunner

    from prunec import checkpoint as C
    from prunec.cli import main

    env = {"PRUNEC_THREADS": "1", "PRUNEC_SYNTHETIC_TRAIN": "200", "PRUNEC_SYNTHETIC_TEST": "100"}
    r = CliRunner().invoke(main, ["train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1",
                                  "--out", str(tmp_path / "b.pt"), "--quiet"], env=env)
    assert r.exit_code == 0, r.output
    b = C.load(tmp_path / "b.pt")
    C.save(tmp_path / "p.pt", b.model, "lenet300", kind="pruned", metrics={}, dataset="synthetic")
    r = CliRunner().invoke(main, ["prune", str(tmp_path / "p.pt"), "--out", str(tmp_path / "q.pt"), "--quiet",
                                  "--steps", "1", "--retrain-epochs", "0", "--final-epochs", "0"], env=env)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert (tmp_path / "q.pt").exists()


@pytest.mark.parametrize("exc,code,text", [
    (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
    (OSError(28, "No space left on device"), 1, "No space left on device"),
    (RuntimeError("a defect"), 1, "Traceback"),
])
def test_distributed_run_ends_every_rank_with_a_message_not_a_traceback(exc, code, text, monkeypatch, capsys):
    """Under torchrun, Ctrl-C and OS errors (disk full) print one line; only defects print a traceback."""
    from prunec import commands_prune as CP

    seen = []
    monkeypatch.setattr(CP.DIST, "shutdown", lambda c: seen.append(c))

    def fn():
        raise exc

    CP._run(True, fn)
    err = capsys.readouterr().err
    assert seen == [code] and text in err, (seen, err)
    if not isinstance(exc, RuntimeError):
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_verify_synthetic_uses_the_models_own_test_split(tmp_path):
    """Defect: `prunec verify --data synthetic` drew seed 0's data with another split size, so a model trained on
    seed 3 scored ~chance although C and PyTorch agreed. Now the seed comes with the model (checkpoint or .pt2
    metadata) and the split sizes are those of train/prune: the accuracy is the checkpoint's own."""
    from prunec.verify import verify

    base = tmp_path / "s3.pt"
    r = run("train", "--model", "lenet300", "--data", "synthetic", "--seed", "3", "--epochs", "2", "--quiet", "--out", base)
    assert r.exit_code == 0, r.output
    acc = C.load(base).metrics["test_accuracy"]
    assert acc > 0.5
    r = run("export", base, "--out", tmp_path / "s3.pt2")
    assert r.exit_code == 0, r.output
    for src in (base, tmp_path / "s3.pt2"):
        out = tmp_path / f"b_{src.suffix[1:]}"
        r = run("build", src, "--out", out)
        assert r.exit_code == 0, r.output
        rep = verify(out, data="synthetic")
        assert rep.ok and rep.n == 100, rep.text()  # PRUNEC_SYNTHETIC_TEST of this file's fixture
        assert abs(rep.accuracy_torch - acc) < 1e-9, (rep.accuracy_torch, acc)


def test_help_states_the_recipes_defaults():
    """Defect: `train --help` said label smoothing defaults to 0 and `prune --help` that the LeNets retrain at
    1/10 of the dense lr; the recipes use 0.1 and the dense peak."""
    import re

    from prunec.recipes import DEFAULT_RECIPES
    from prunec.train import DEFAULTS

    th = " ".join(run("train", "--help").output.split())
    ph = " ".join(run("prune", "--help").output.split())
    for m in ("lenet300", "lenet5"):
        assert f"{m}: {DEFAULTS[m].epochs}" in th and f"{m} {DEFAULTS[m].lr:g}" in th, th
        assert DEFAULT_RECIPES[m].lr == DEFAULTS[m].lr and DEFAULT_RECIPES[m].lr_span == "run"
        assert DEFAULTS[m].label_smoothing == DEFAULT_RECIPES[m].label_smoothing == 0.1
    assert re.search(r"smoothed by this weight \(default: the model's recipe, 0\.1 for the LeNets", th), th
    assert "the dense peak lr for the LeNets" in ph and "0.1 for the LeNets" in ph, ph
    for m in ("alexnet", "vgg16"):
        assert DEFAULT_RECIPES[m].lr == DEFAULTS[m].lr / 10 and DEFAULTS[m].label_smoothing == 0
