"""Review of option and input checking in `prunec train` / `prunec prune` (a walkthrough of docs/PRUNING.md):
non-finite or out-of-range numbers are refused before any work, an interrupted run's progress is not
overwritten silently, L1 without a strength gets an L1 strength, and messages say what to do."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import train_synthetic

from prunec import checkpoint as C
from prunec.cli import main
from prunec.recipes import DEFAULT_L1_STRENGTH
from prunec.train import resolve_device

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--quiet", "--steps", "1", "--retrain-epochs", "1", "--final-epochs", "0"]
ENV = {"PRUNEC_THREADS": "1", "PRUNEC_SYNTHETIC_TRAIN": "600", "PRUNEC_SYNTHETIC_TEST": "200"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env=ENV)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return train_synthetic(tmp_path_factory.mktemp("inputs"), ENV)


@pytest.mark.parametrize("opt", [["--quality", "nan"], ["--quality", "inf"], ["--target-compression", "nan"],
                                 ["--target-compression", "inf"], ["--momentum", "nan"], ["--momentum", "1.5"],
                                 ["--momentum", "inf"], ["--max-accuracy-drop", "nan"], ["--lr", "inf"],
                                 ["--reg-strength", "nan"]])
def test_prune_refuses_non_finite_or_out_of_range_numbers(base, tmp_path, opt):
    out = tmp_path / "p.pt"
    r = invoke("prune", base, "--out", out, *opt, *FAST)
    assert r.exit_code == 2, r.output
    assert "prunec: error:" in r.output and opt[0] in r.output
    assert not out.exists() and not C.resume_path(out).exists()


@pytest.mark.parametrize("opt", [["--lr", "nan"], ["--lr", "inf"], ["--weight-decay", "nan"], ["--momentum", "nan"],
                                 ["--label-smoothing", "nan"]])
def test_train_refuses_non_finite_numbers(tmp_path, opt):
    out = tmp_path / "t.pt"
    r = invoke("train", "--model", "lenet300", "--data", "synthetic", "--out", out, "--epochs", "1", "--quiet", *opt)
    assert r.exit_code == 2, r.output
    assert "prunec: error:" in r.output and opt[0] in r.output and not out.exists()


def test_l1_without_a_strength_gets_an_l1_strength(base, tmp_path):
    r = invoke("prune", base, "--out", tmp_path / "l1.pt", "--reg", "l1", *FAST)
    assert r.exit_code == 0, r.output
    rec = C.load(tmp_path / "l1.pt").meta["recipe"]
    assert rec["reg"] == "l1" and rec["reg_strength"] == DEFAULT_L1_STRENGTH
    r = invoke("prune", base, "--out", tmp_path / "l1b.pt", "--reg", "l1", "--reg-strength", "3e-5", *FAST)
    assert r.exit_code == 0 and C.load(tmp_path / "l1b.pt").meta["recipe"]["reg_strength"] == 3e-5


def test_an_interrupted_runs_progress_is_not_overwritten(base, tmp_path):
    out = tmp_path / "p.pt"
    args = ["prune", base, "--out", out, "--quiet", "--steps", "3", "--retrain-epochs", "1", "--final-epochs", "0"]
    r = invoke(*args, "--stop-after", "1")
    assert r.exit_code == 0 and C.resume_path(out).exists(), r.output
    before = C.resume_path(out).read_bytes()
    r = invoke(*args)  # no --resume
    assert r.exit_code == 2 and "--resume" in r.output and "delete" in r.output, r.output
    assert C.resume_path(out).read_bytes() == before and not out.exists()
    r = invoke(*args, "--resume")
    assert r.exit_code == 0, r.output
    assert out.exists() and not C.resume_path(out).exists()


def test_ctrl_c_during_prune_says_how_to_resume(base, tmp_path):
    out = tmp_path / "p.pt"
    # a run far longer than the signal takes to arrive (a loaded CI machine once finished 40 short steps first); the
    # process is interrupted after its first step, so the length costs nothing
    env = dict(os.environ, **{**ENV, "PRUNEC_SYNTHETIC_TRAIN": "3000"}, PYTHONPATH=str(ROOT / "toolchain"))
    p = subprocess.Popen([sys.executable, "-m", "prunec", "prune", str(base), "--out", str(out), "--quiet", "--steps", "500",
                          "--retrain-epochs", "3", "--final-epochs", "0"], env=env, stderr=subprocess.PIPE, text=True,
                         # a test run started in the background of a non-interactive shell inherits SIGINT ignored,
                         # and Python keeps an ignored SIGINT ignored: give the child the default, as a terminal would
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not C.resume_path(out).exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert C.resume_path(out).exists(), "no step finished"  # written atomically: complete once it exists
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err and "--resume" in err and str(C.resume_path(out)) in err


def test_sparsity_names_a_layer_once(base, tmp_path):
    r = invoke("prune", base, "--out", tmp_path / "p.pt", "--sparsity", "fc1=0.5,fc1=0.9", *FAST)
    assert r.exit_code == 2 and "names layer fc1 twice" in r.output, r.output


def test_sparsity_given_the_sensitivity_folder_or_another_models_file(base, tmp_path):
    sens = tmp_path / "sens"
    sens.mkdir()
    (sens / "sensitivity.json").write_text(json.dumps({"model": "lenet5", "proposed_sparsity": {"conv1": 0.3}}))
    r = invoke("prune", base, "--out", tmp_path / "p.pt", "--sparsity", sens, *FAST)
    assert r.exit_code == 2 and "is a folder" in r.output and "sensitivity.json" in r.output, r.output
    r = invoke("prune", base, "--out", tmp_path / "p.pt", "--sparsity", sens / "sensitivity.json", *FAST)
    assert r.exit_code == 2 and "sensitivity of a lenet5 model" in r.output and "lenet300" in r.output, r.output
    assert not (tmp_path / "p.pt").exists()


def test_corrupt_non_zip_checkpoint_gives_the_reason_not_a_torch_issue_request(tmp_path):
    bad = tmp_path / "rand.pt"
    bad.write_bytes(bytes(range(7, 107)))
    txt = tmp_path / "txt.pt"
    txt.write_text("hello world\n")
    for f in (bad, txt):
        r = invoke("info", f)
        assert r.exit_code == 2, r.output
        assert "not a torch.save pickle" in r.output and "file an issue" not in r.output, r.output


def test_cpu_0_is_the_cpu():
    assert resolve_device("cpu:0") == torch.device("cpu")


def test_alternate_log_names_both_phases(tmp_path):
    r = CliRunner().invoke(main, ["train", "--model", "lenet5", "--data", "synthetic", "--out", str(tmp_path / "b5.pt"),
                                  "--epochs", "1", "--quiet"], env={**ENV, "PRUNEC_SYNTHETIC_TRAIN": "128"})
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["prune", str(tmp_path / "b5.pt"), "--out", str(tmp_path / "p5.pt"), "--alternate", *FAST],
                           env={**ENV, "PRUNEC_SYNTHETIC_TRAIN": "128"})
    assert r.exit_code == 0, r.output
    assert "1 epoch of fc then 1 of conv of retraining" in r.output, r.output


@pytest.mark.parametrize("tol", ["nan", "-0.1", "2"])
def test_sensitivity_refuses_a_tolerance_that_is_not_an_accuracy_drop(base, tmp_path, tol):
    r = invoke("sensitivity", base, "--out", tmp_path / "s", "--tolerance", tol)
    assert r.exit_code == 2 and "--tolerance" in r.output, r.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("field, value", [("lr", float("nan")), ("lr", 0.0), ("weight_decay", float("inf")), ("l1", -1e-5),
                                          ("momentum", 1.5), ("label_smoothing", float("nan")), ("distill", 2.0),
                                          ("batch_size", 0), ("epochs", -1), ("lr_schedule", "step")])
def test_fit_refuses_a_config_that_would_train_wrong(field, value):
    """The Python API's fit() checks its TrainConfig as the CLI does (a NaN lr gave NaN weights without an error)."""
    from dataclasses import replace

    import torch

    from prunec import models
    from prunec.data import synthetic
    from prunec.errors import PrunecError
    from prunec.train import TrainConfig, fit

    model = models.create("lenet300")
    before = [p.detach().clone() for p in model.parameters()]
    ds = synthetic(n_train=64, n_test=16, seed=0, shape=(1, 28, 28))
    with pytest.raises(PrunecError, match="--" + field.replace("_", "-") if field != "lr_schedule" else "lr schedule"):
        fit(model, ds.train, replace(TrainConfig(epochs=1), **{field: value}), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing trained
