"""Regression tests for defects found in review of the pruning half (CLI option checks, resume, damaged
checkpoints, output folders, the synthetic data seed). Synthetic data, tiny epochs: each test takes seconds."""
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import train_synthetic

from prunec import checkpoint as C
from prunec import data as D
from prunec.cli import main
from prunec.errors import PrunecError

FAST = ["--quiet", "--steps", "1", "--retrain-epochs", "0", "--final-epochs", "0"]
ENV = {"PRUNEC_THREADS": "1", "PRUNEC_SYNTHETIC_TRAIN": "300", "PRUNEC_SYNTHETIC_TEST": "200"}


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return train_synthetic(tmp_path_factory.mktemp("review"), ENV)


def _refused(r, *outs):
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "prunec: error:" in r.output and "Traceback" not in r.output
    for o in outs:
        assert not o.exists()


# --- report / sensitivity write into a folder, also an existing one -----------------------------------


def test_report_and_sensitivity_into_an_existing_folder(base, tmp_path):
    out = tmp_path / "figs"
    out.mkdir()
    r = run("report", base, "--out", out)
    assert r.exit_code == 0, r.output
    assert (out / "weights.png").exists()
    r = run("sensitivity", base, "--out", out)
    assert r.exit_code == 0, r.output
    assert (out / "sensitivity.json").exists()
    (tmp_path / "afile").write_text("x")
    assert run("report", base, "--out", tmp_path / "afile").exit_code == 2  # click refuses a file


# --- bad option values and combinations: exit 2 before any training, no output ------------------------


@pytest.mark.parametrize("opts", [
    ["--lr", "-1"], ["--lr", "0"], ["--reg-strength", "-1"], ["--retrain-epochs", "-1"], ["--final-epochs", "-2"],
    ["--quality", "1", "--sparsity", "fc1=0.5"], ["--quality", "1", "--global-threshold", "0.5"],
    ["--sparsity", "fc1=0.5", "--global-threshold", "0.5"], ["--quality", "1", "--target-compression", "30"],
    ["--global-threshold", "0.5", "--target-compression", "30"],
])
def test_prune_refuses_bad_values_and_conflicting_options(base, tmp_path, opts):
    out = tmp_path / "p.pt"
    r = run("prune", base, "--out", out, *FAST, *opts)
    _refused(r, out)
    assert "step 1/1" not in r.output  # refused before pruning


def test_train_refuses_negative_weight_decay(tmp_path):
    out = tmp_path / "t.pt"
    _refused(run("train", "--model", "lenet300", "--data", "synthetic", "--out", out, "--epochs", "1", "--quiet",
                 "--weight-decay", "-1"), out)


# --- resume: options that would change the run, or another base, are refused ---------------------------


def test_resume_refuses_a_changed_recipe_or_another_base(base, tmp_path):
    out = tmp_path / "p.pt"
    args = ["prune", base, "--out", out, "--sparsity", "fc1=0.9", "--quiet", "--steps", "2", "--retrain-epochs", "0",
            "--final-epochs", "0", "--keep-dead"]
    r = run(*args, "--stop-after", "1")
    assert r.exit_code == 0, r.output
    rpath = C.resume_path(out)
    assert rpath.exists()
    _refused(run("prune", base, "--out", out, "--resume", "--quiet", "--sparsity", "fc1=0.5"), out)
    _refused(run("prune", base, "--out", out, "--resume", "--quiet", "--steps", "5"), out)
    _refused(run("prune", base, "--out", out, "--resume", "--quiet", "--seed", "3"), out)
    other = tmp_path / "other.pt"
    ck = C.load(base)
    with torch.no_grad():
        ck.model.fc3.bias.add_(1.0)
    C.save(other, ck.model, "lenet300", metrics=ck.metrics, seed=0, dataset="synthetic")
    r = run("prune", other, "--out", out, "--resume", "--quiet")
    _refused(r, out)
    assert "another base" in r.output
    assert rpath.exists()  # nothing lost
    r = run(*args, "--resume")  # the same options as the interrupted run: accepted
    assert r.exit_code == 0, r.output
    assert "step 2/2" in r.output and "step 1/2" not in r.output
    assert C.load(out).schedule["step"] == 2 and not rpath.exists()


# --- --seed changes the retraining, not the (synthetic) data set --------------------------------------


def test_prune_seed_keeps_the_base_data_set(base, tmp_path):
    out = tmp_path / "s.pt"
    r = run("prune", base, "--out", out, "--sparsity", "fc1=0.1", "--seed", "7", *FAST)
    assert r.exit_code == 0, r.output
    info = json.loads(run("info", out, "--json").output)
    assert info["seed"] == 7
    assert info["baseline_test_accuracy"] == pytest.approx(C.load(base).metrics["test_accuracy"])


# --- damaged / foreign checkpoint contents: PrunecError, never a traceback -----------------------------


def _mutations():
    return {
        "weight_not_tensor": lambda o: o["state_dict"].__setitem__("fc1.weight", "x"),
        "weight_1d": lambda o: o["state_dict"].__setitem__("fc1.weight", torch.zeros(5)),
        "weight_3d": lambda o: o["state_dict"].__setitem__("fc1.weight", torch.zeros(5, 5, 5)),
        "layers_do_not_chain": lambda o: o["state_dict"].__setitem__("fc1.weight", torch.zeros(300, 700)),
        "num_classes_text": lambda o: o.__setitem__("num_classes", "ten"),
        "mask_not_tensor": lambda o: o.__setitem__("masks", {"fc1": "x"}),
        "masks_list": lambda o: o.__setitem__("masks", [1, 2]),
        "dropout_text": lambda o: o.__setitem__("dropout_p", {"fc1": "x"}),
        "metrics_list": lambda o: o.__setitem__("metrics", [1]),
        "input_shape_wrong": lambda o: o.__setitem__("input_shape", [3, 5]),
        "input_shape_int": lambda o: o.__setitem__("input_shape", 5),
    }


@pytest.mark.parametrize("kind", list(_mutations()))
def test_damaged_checkpoint_contents_raise_prunec_error(base, tmp_path, kind):
    obj = torch.load(base, weights_only=True)
    obj["state_dict"] = dict(obj["state_dict"])
    _mutations()[kind](obj)
    p = tmp_path / "bad.pt"
    torch.save(obj, p)
    with pytest.raises(PrunecError) as e:
        C.load(p)
    assert "bad.pt" in str(e.value)
    _refused(run("info", p, "--json"))


def test_load_error_names_the_mismatch(base, tmp_path):
    obj = torch.load(base, weights_only=True)
    obj["state_dict"] = {k: v for k, v in obj["state_dict"].items() if k != "fc2.bias"}
    torch.save(obj, tmp_path / "m.pt")
    with pytest.raises(PrunecError, match="fc2.bias"):
        C.load(tmp_path / "m.pt")


# --- IDX file whose header is cut short ----------------------------------------------------------------


def test_idx_with_truncated_header(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x05\x00\x00")  # 3 dims announced, 1.5 given
    with pytest.raises(PrunecError, match="truncated"):
        D.read_idx(p)


# --- torch.nn.utils.prune with pruned biases (e.g. global_unstructured over weights and biases) --------


def _torch_pruned_with_bias():
    from torch.nn.utils import prune as tp

    from prunec import models

    torch.manual_seed(0)
    m = models.create("lenet300")
    tp.global_unstructured([(m.fc1, "weight"), (m.fc1, "bias"), (m.fc2, "weight"), (m.fc2, "bias")],
                           pruning_method=tp.L1Unstructured, amount=0.6)
    return m


def test_save_and_load_a_module_with_torch_pruned_biases(tmp_path):
    m = _torch_pruned_with_bias()
    x = torch.randn(3, 1, 28, 28)
    ref = m(x).detach()
    C.save(tmp_path / "tp.pt", m, "lenet300")
    ck = C.load(tmp_path / "tp.pt")
    assert torch.allclose(ck.model(x), ref, atol=1e-5)
    assert torch.equal(ck.masks["fc1"], m.fc1.weight_mask != 0)
    assert (ck.model.fc1.bias == 0).sum() == (m.fc1.bias_mask == 0).sum()


def test_export_a_module_with_torch_pruned_biases():
    from prunec.export import export_program

    m = _torch_pruned_with_bias()
    x = torch.randn(1, 1, 28, 28)
    ep = export_program(m, (1, 28, 28))
    assert torch.allclose(ep.module()(x), m(x), atol=1e-5)
    assert hasattr(m.fc1, "bias_orig")  # the caller's module is left as it was


def test_prune_refuses_to_overwrite_its_base(base, tmp_path):
    import shutil

    b = tmp_path / "b.pt"
    shutil.copy(base, b)
    before = b.read_bytes()
    r = run("prune", b, "--out", b, *FAST)
    assert r.exit_code == 2 and "is BASE itself" in r.output, r.output
    assert b.read_bytes() == before


def test_info_on_an_exported_program_says_what_it_is(base, tmp_path):
    pt2 = tmp_path / "m.pt2"
    assert run("export", base, "--out", pt2).exit_code == 0
    r = run("info", pt2)  # a .pt2 is reported from the program itself (tests/test_review_own_models.py)
    assert r.exit_code == 0 and "exported program" in r.output and "Traceback" not in r.output, r.output


def test_sensitivity_refuses_torchrun_and_a_negative_tolerance(base, tmp_path, monkeypatch):
    r = run("sensitivity", base, "--out", tmp_path / "s", "--tolerance", "-0.1")
    assert r.exit_code == 2 and "--tolerance" in r.output and not (tmp_path / "s").exists(), r.output
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    r = run("sensitivity", base, "--out", tmp_path / "s")
    assert r.exit_code == 2 and "without torchrun" in r.output, r.output


def test_exported_compression_counts_the_dense_sizes_like_info(base, tmp_path):
    """After dead-neuron removal the layers are shrunk; the .pt2 metadata's compression must count them at their
    dense sizes, as `prunec info` does (docs/PRUNING.md), not at the shrunk ones."""
    from prunec.export import read_metadata

    p = tmp_path / "p.pt"
    r = run("prune", base, "--out", p, "--quiet", "--steps", "1", "--retrain-epochs", "0", "--final-epochs", "0",
            "--sparsity", "fc1=0.995,fc2=0.9,fc3=0.5")
    assert r.exit_code == 0, r.output
    info = json.loads(run("info", p, "--json").output)
    pt2 = tmp_path / "p.pt2"
    assert run("export", p, "--out", pt2).exit_code == 0
    assert C.load(p).model.fc1.out_features < 300  # neurons were removed: the sizes differ
    assert read_metadata(pt2)["compression"] == pytest.approx(info["compression"], rel=1e-9)
