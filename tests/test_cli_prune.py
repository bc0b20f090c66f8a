"""The pruning CLI end to end on the synthetic data set (tiny epochs), and its bad-input cases."""
import json

import pytest
import torch
from click.testing import CliRunner

from prunec import checkpoint as C
from prunec.cli import main

FAST = ["--quiet", "--steps", "2", "--retrain-epochs", "1", "--final-epochs", "0"]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("PRUNEC_THREADS", "1")
    monkeypatch.setenv("PRUNEC_SYNTHETIC_TRAIN", "600")
    monkeypatch.setenv("PRUNEC_SYNTHETIC_TEST", "200")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import os

    os.environ.setdefault("PRUNEC_THREADS", "1")
    d = tmp_path_factory.mktemp("cli")
    r = CliRunner().invoke(main, ["train", "--model", "lenet300", "--data", "synthetic", "--out", str(d / "base.pt"),
                                  "--epochs", "2", "--quiet"], env={"PRUNEC_SYNTHETIC_TRAIN": "600", "PRUNEC_SYNTHETIC_TEST": "200"})
    assert r.exit_code == 0, r.output
    return d / "base.pt"


def test_train_prune_info_export_report(base, tmp_path):
    ck = C.load(base)
    assert ck.kind == "dense" and ck.metrics["test_accuracy"] > 0.5  # synthetic is learnable
    out = tmp_path / "p.pt"
    r = run("prune", base, "--out", out, "--sparsity", "fc1=0.95,fc2=0.9,fc3=0.5", *FAST)
    assert r.exit_code == 0, r.output
    r = run("info", out, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    for key in ("model", "params_total", "params_nonzero", "compression", "test_accuracy", "baseline_test_accuracy", "layers"):
        assert key in info
    assert info["model"] == "lenet300" and info["params_total"] == 266200
    assert info["compression"] == pytest.approx(info["params_total"] / info["params_nonzero"])
    fc1 = next(x for x in info["layers"] if x["name"] == "fc1")
    assert fc1["nonzero"] == round(0.05 * 235200) and fc1["remaining"] == pytest.approx(0.05, abs=1e-4)
    assert info["baseline_test_accuracy"] == pytest.approx(ck.metrics["test_accuracy"])
    r = run("info", out)
    assert r.exit_code == 0 and "fc1" in r.output and "compression" in r.output and "FLOP" in r.output
    r = run("export", out, "--out", tmp_path / "m.pt2")
    assert r.exit_code == 0, r.output
    ep = torch.export.load(tmp_path / "m.pt2")
    x = torch.randn(1, 1, 28, 28)
    assert torch.allclose(ep.module()(x), C.load(out).model(x), atol=1e-5)
    r = run("report", out, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    for png in ("weights.png", "masks.png", "remaining.png", "schedule.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG"


def test_quality_global_and_target_compression(base, tmp_path):
    r = run("prune", base, "--out", tmp_path / "q.pt", "--quality", "1.0", *FAST)
    assert r.exit_code == 0, r.output
    q = json.loads(run("info", tmp_path / "q.pt", "--json").output)
    assert 2 < q["compression"] < 5  # |w| < 1·σ prunes ~68% of Gaussian-like weights
    r = run("prune", base, "--out", tmp_path / "g.pt", "--global-threshold", "0.9", *FAST)
    assert r.exit_code == 0, r.output
    g = json.loads(run("info", tmp_path / "g.pt", "--json").output)
    assert g["compression"] == pytest.approx(10, rel=0.02)
    r = run("prune", base, "--out", tmp_path / "t.pt", "--target-compression", "20", "--keep-dead", *FAST)
    assert r.exit_code == 0, r.output
    t = json.loads(run("info", tmp_path / "t.pt", "--json").output)
    assert t["compression"] == pytest.approx(20, rel=0.01)


def test_sensitivity(base, tmp_path):
    r = run("sensitivity", base, "--out", tmp_path / "sens")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "sens" / "sensitivity.json").read_text())
    assert set(res["curves"]) == {"fc1", "fc2", "fc3"}
    assert res["curves"]["fc1"][0][1] == pytest.approx(res["baseline"])
    assert (tmp_path / "sens" / "sensitivity.png").exists()
    assert set(res["proposed_sparsity"]) == {"fc1", "fc2", "fc3"}
    # the proposal goes straight into prune: --sparsity takes the sensitivity.json itself
    prop = {k: v for k, v in res["proposed_sparsity"].items()}
    out = tmp_path / "p.pt"
    r = run("prune", base, "--out", out, "--sparsity", tmp_path / "sens" / "sensitivity.json", "--keep-dead", *FAST)
    assert r.exit_code == 0, r.output
    final = C.load(out)
    assert final.meta["recipe"]["sparsity"] == pytest.approx(prop)
    for name, frac in prop.items():
        m = final.masks[name]
        assert 1.0 - m.float().mean().item() == pytest.approx(frac, abs=2e-3)


def test_interrupted_prune_resumes_with_its_masks(base, tmp_path):
    out = tmp_path / "p.pt"
    args = ["prune", base, "--out", out, "--sparsity", "fc1=0.9,fc2=0.8", "--quiet", "--steps", "3", "--retrain-epochs", "1"]
    r = run(*args, "--stop-after", "2")
    assert r.exit_code == 0, r.output
    assert not out.exists()
    res = C.load(C.resume_path(out))
    assert res.kind == "pruning" and res.schedule["step"] == 2
    r = run(*args[:4], "--resume", "--quiet")
    assert r.exit_code == 0, r.output
    assert "step 3/3" in r.output and "step 1/3" not in r.output
    final = C.load(out)
    assert final.schedule["step"] == 3 and len(final.schedule["history"]) == 3
    for n, m in res.masks.items():
        assert not (final.masks[n] & ~m).any()
    assert not C.resume_path(out).exists()


@pytest.mark.parametrize("case", ["unknown_model", "corrupt", "foreign", "missing_data", "sparsity_one", "sparsity_negative",
                                  "unknown_layer", "missing_ckpt", "bad_out_dir", "label_smoothing_one",
                                  "sparsity_file_not_json", "sparsity_file_no_proposal", "sparsity_file_missing"])
def test_bad_input_exit_2_and_no_file(base, tmp_path, case):
    out = tmp_path / "out.pt"
    if case == "unknown_model":
        args = ["train", "--model", "resnet", "--data", "synthetic", "--out", out]
    elif case == "corrupt":
        (tmp_path / "c.pt").write_bytes(base.read_bytes()[:1000])
        args = ["prune", tmp_path / "c.pt", "--out", out]
    elif case == "foreign":
        torch.save(C.load(base).model.state_dict(), tmp_path / "sd.pt")
        args = ["info", tmp_path / "sd.pt"]
    elif case == "missing_data":
        args = ["train", "--model", "lenet300", "--data", "fashion-mnist", "--data-dir", tmp_path / "nowhere", "--out", out]
    elif case == "sparsity_one":
        args = ["prune", base, "--out", out, "--sparsity", "fc1=1.0"]
    elif case == "sparsity_negative":
        args = ["prune", base, "--out", out, "--sparsity", "fc1=-0.2"]
    elif case == "unknown_layer":
        args = ["prune", base, "--out", out, "--sparsity", "conv9=0.5", *FAST]
    elif case == "missing_ckpt":
        args = ["export", tmp_path / "nope.pt", "--out", out]
    elif case == "bad_out_dir":
        args = ["prune", base, "--out", tmp_path / "no" / "such" / "dir.pt"]
    elif case == "sparsity_file_not_json":
        (tmp_path / "s.json").write_text("fc1=0.9")
        args = ["prune", base, "--out", out, "--sparsity", tmp_path / "s.json"]
    elif case == "sparsity_file_no_proposal":
        (tmp_path / "s.json").write_text('{"model": "lenet300", "curves": {}}')
        args = ["prune", base, "--out", out, "--sparsity", tmp_path / "s.json"]
    elif case == "sparsity_file_missing":
        args = ["prune", base, "--out", out, "--sparsity", tmp_path / "nowhere.json"]
    elif case == "label_smoothing_one":
        args = ["prune", base, "--out", out, "--label-smoothing", "1.0"]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "prunec: error:" in r.output
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_info_and_report_of_a_dense_checkpoint(base, tmp_path):
    info = json.loads(run("info", base, "--json").output)
    assert info["compression"] == 1.0 and info["params_nonzero"] == info["params_total"]
    assert info["test_accuracy"] == info["baseline_test_accuracy"]
    r = run("report", base, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["masks.png", "remaining.png", "weights.png"]
