"""Bad input found by the seventeenth session's review: damaged checkpoint metadata, environment variables, seeds,
empty data sets, special files as --out, damaged manifests, compilers and option values. Each gets a clear message
(exit 2, no traceback) and leaves nothing behind."""
from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from prunec import checkpoint as C
from prunec import models
from prunec.cli import main
from prunec.errors import PrunecError, env_int


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def refused(r, *says):
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    for s in says:
        assert s in r.output, r.output
    return r.output


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    m = models.create("lenet300")
    return C.save(d / "dense.pt", m, "lenet300", seed=3, metrics={"test_accuracy": 0.5})


def damaged(tmp_path, src, name, edit):
    obj = torch.load(src, weights_only=True)
    edit(obj)
    p = tmp_path / name
    torch.save(obj, p)
    return p


@pytest.mark.parametrize("name, edit, says", [
    ("seed.pt", lambda o: o.update(seed="abc"), "'seed' is 'abc', not an integer"),
    ("w0.pt", lambda o: o.update(schedule={"weights0": {"fc1": "abc"}}), "the schedule's 'weights0'"),
    ("w0list.pt", lambda o: o.update(schedule={"weights0": [1, 2]}), "the schedule's 'weights0'"),
    ("hist.pt", lambda o: o.update(schedule={"history": 5}), "the schedule's 'history' (5) is not a list"),
    ("hist2.pt", lambda o: o.update(schedule={"history": [5, 6]}), "is not a list of step records"),
    ("before.pt", lambda o: o.update(weight_hist_before={"fc1": "x"}), "'weight_hist_before' is not a map"),
    ("before2.pt", lambda o: o.update(weight_hist_before=7), "'weight_hist_before' is not a map"),
    ("int32.pt", lambda o: o["state_dict"].update({"fc1.weight": o["state_dict"]["fc1.weight"].int()}),
     "are torch.int32, not floating point"),
])
def test_damaged_metadata_is_refused_by_every_reader(tmp_path, ckpt, name, edit, says):
    p = damaged(tmp_path, ckpt, name, edit)
    for args in (["info", p], ["info", p, "--json"], ["export", p, "--out", tmp_path / "m.pt2"],
                 ["report", p, "--out", tmp_path / "figs"]):
        refused(run(*args), says)
    assert not (tmp_path / "m.pt2").exists() and not (tmp_path / "figs").exists()


def test_a_failing_figure_leaves_no_report_folder(tmp_path, ckpt, monkeypatch):
    from prunec import report as R

    def boom(*a, **k):
        raise PrunecError("no figure")

    monkeypatch.setattr(R, "plot_remaining", boom)
    c = C.load(ckpt)
    with pytest.raises(PrunecError):
        R.write_report(c, tmp_path / "figs")
    assert sorted(os.listdir(tmp_path)) == []  # neither the folder, nor the figures drawn before, nor scratch
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "mine.txt").write_text("kept")
    with pytest.raises(PrunecError):
        R.write_report(c, tmp_path / "figs")
    assert os.listdir(tmp_path / "figs") == ["mine.txt"] and sorted(os.listdir(tmp_path)) == ["figs"]
    monkeypatch.undo()
    written = R.write_report(c, tmp_path / "figs")
    assert {p.name for p in written} >= {"weights.png", "remaining.png"} and all(p.is_file() for p in written)
    assert sorted(os.listdir(tmp_path)) == ["figs"]


@pytest.mark.parametrize("var, value, says", [
    ("PRUNEC_THREADS", "abc", "PRUNEC_THREADS='abc': give the intra-op threads per process as an integer >= 1"),
    ("PRUNEC_THREADS", "-4", "PRUNEC_THREADS='-4'"),
    ("PRUNEC_SYNTHETIC_TRAIN", "abc", "PRUNEC_SYNTHETIC_TRAIN='abc'"),
    ("PRUNEC_SYNTHETIC_TEST", "0", "PRUNEC_SYNTHETIC_TEST='0': give the synthetic test images as an integer >= 1"),
    ("PRUNEC_SYNTHETIC_TEST", "-5", "PRUNEC_SYNTHETIC_TEST='-5'"),
])
def test_garbage_environment_variables(tmp_path, var, value, says):
    out = tmp_path / "a.pt"
    refused(run("train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--quiet", "--out", out,
                env={var: value}), says)
    assert not out.exists()


def test_env_int(monkeypatch):
    monkeypatch.delenv("PRUNEC_X", raising=False)
    assert env_int("PRUNEC_X", 7, 1, "x") == 7
    monkeypatch.setenv("PRUNEC_X", " 3 ")
    assert env_int("PRUNEC_X", 7, 1, "x") == 3
    monkeypatch.setenv("PRUNEC_X", "")
    assert env_int("PRUNEC_X", 7, 1, "x") == 7
    for bad in ("0", "1.5", "x"):
        monkeypatch.setenv("PRUNEC_X", bad)
        with pytest.raises(PrunecError, match=r"PRUNEC_X=.*give x as an integer >= 1, or unset it"):
            env_int("PRUNEC_X", 7, 1, "x")


def test_garbage_torchrun_and_probe_variables(monkeypatch):
    from prunec import distributed, targets

    monkeypatch.setenv("WORLD_SIZE", "abc")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(PrunecError, match="WORLD_SIZE='abc'"):
        distributed.launched_by_torchrun()
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("PRUNEC_AVX512", "abc")
    with pytest.raises(PrunecError, match="PRUNEC_AVX512='abc': 1 forces the avx512 kernels on, 0 off"):
        targets.get("x86_64-avx2")
    monkeypatch.setenv("PRUNEC_AVX512", "0")
    assert "avx512" not in targets.get("x86_64-avx2").isa


@pytest.mark.parametrize("args", [
    ["train", "--model", "lenet300", "--data", "synthetic", "--seed", "99999999999999999999"],
    ["train", "--model", "lenet300", "--data", "synthetic", "--seed", "-1"],
])
def test_seeds_out_of_range(tmp_path, args):
    r = run(*args, "--out", tmp_path / "a.pt")
    assert r.exit_code == 2 and "is not in the range 0<=x<=4294967295" in r.output, r.output
    assert not (tmp_path / "a.pt").exists()


def _idx(path: Path, dims, data=b""):
    magic = struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(">" + "I" * len(dims), *dims)
    path.write_bytes(magic + data)


def test_a_data_set_with_no_images(tmp_path):
    d = tmp_path / "fm"
    d.mkdir()
    for prefix in ("train", "t10k"):
        _idx(d / f"{prefix}-images-idx3-ubyte", (0, 28, 28))
        _idx(d / f"{prefix}-labels-idx1-ubyte", (0,))
    out = tmp_path / "a.pt"
    refused(run("train", "--model", "lenet300", "--data", "fashion-mnist", "--data-dir", d, "--epochs", "1", "--quiet",
                "--out", out), "the train split has no images")
    assert not out.exists()


def test_data_dir_without_a_data_set_that_reads_it(tmp_path):
    refused(run("train", "--model", "lenet300", "--data", "synthetic", "--data-dir", tmp_path, "--out", tmp_path / "a.pt"),
            "--data synthetic reads none: leave --data-dir out")


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_out_on_a_special_file_is_refused(tmp_path):
    from prunec.atomic import atomic_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PrunecError, match="it is not a regular file"):
        with atomic_file(fifo):
            pass
    assert fifo.exists() and not fifo.is_file()
    r = run("train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--quiet", "--out", fifo)
    refused(r, "not a regular file")


@pytest.fixture(scope="module")
def host_build(tmp_path_factory, ckpt):
    from prunec.build import build

    d = tmp_path_factory.mktemp("hb")
    build(ckpt, "host", d / "b", name="dense")
    return d / "b"


@pytest.mark.parametrize("edit, says", [
    (lambda m: m.update(input_shape=None), "input_shape None is not a list of positive sizes"),
    (lambda m: m.update(input_size="x"), "input_size 'x' is not the product of input_shape"),
    (lambda m: m.update(name="../../evil"), "name '../../evil' is not a C identifier"),
    (lambda m: m.update(format_version=99), "build format version 99 is newer than this prunec reads"),
    (lambda m: m.update(format_version="1"), "format_version '1' is not 1"),
    (lambda m: m["files"].update(sources="dense.c"), "files.sources 'dense.c' is not a list of paths"),
    (lambda m: m.update(arena_bytes=-1), "arena_bytes -1 is not a byte count"),
])
def test_damaged_manifest_fields(tmp_path, host_build, edit, says):
    b = tmp_path / "b"
    shutil.copytree(host_build, b)
    m = json.loads((b / "manifest.json").read_text())
    edit(m)
    (b / "manifest.json").write_text(json.dumps(m))
    for args in (["verify", b, "--random", "2"], ["bench", b, "--reps", "1"]):
        refused(run(*args), says)


def test_verify_options(tmp_path, host_build):
    refused(run("verify", host_build, "--random", "1000000000000"), "--random 1000000000000: that many inputs",
            "give at most")
    refused(run("verify", host_build, "--random", "2", "--data-dir", tmp_path), "leave --data-dir out")
    f = tmp_path / "afile"
    f.write_text("x")
    refused(run("verify", f), "is a file, not a build directory")
    bad = tmp_path / "obj.npy"
    np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    out = refused(run("verify", host_build, "--inputs", bad), "it is not a numeric .npy array")
    assert "allow_pickle" not in out


def test_a_missing_host_compiler_is_named(tmp_path, host_build):
    refused(run("verify", host_build, "--random", "2", env={"CC": "/nonexistent/cc"}),
            "the host C compiler (CC='/nonexistent/cc') is not installed", "apt-get install gcc")


def test_a_cc_with_flags_is_taken(tmp_path, host_build):
    from prunec.verify import verify

    os.environ["CC"] = f"{shutil.which('cc') or shutil.which('gcc')} -O1"
    try:
        rep = verify(host_build, random=3)
    finally:
        del os.environ["CC"]
    assert rep.ok and rep.n == 3


def test_bench_cflags_with_an_unclosed_quote(host_build):
    refused(run("bench", host_build, "--cflags", '-DFOO="'), "--cflags '-DFOO=\"'", "No closing quotation")


def test_a_checkpoint_named_pt2_is_read_as_the_checkpoint(tmp_path, ckpt):
    p = tmp_path / "ck.pt2"
    shutil.copy(ckpt, p)
    r = run("info", p, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["model"] == "lenet300"


def test_a_damaged_resume_file_says_to_start_over(tmp_path, ckpt):
    out = tmp_path / "p.pt"
    C.resume_path(out).write_bytes(b"junk")
    refused(run("prune", ckpt, "--out", out, "--data", "synthetic", "--resume", "--quiet"),
            "cannot be resumed", "delete it and run without --resume")
    assert not out.exists()


# --- own models (the review of the own-model path) ------------------------------------------------------------------

class _Shared(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.out = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.out(torch.relu(self.fc(torch.relu(self.fc(x)))))


def _hooked(model):
    import torch.nn.utils.prune as P

    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            P.l1_unstructured(m, "weight", amount=0.5)
    return model


@pytest.mark.parametrize("how", ["prune-hooks", "parametrize"])
def test_masks_attached_at_export_name_layers_after_their_modules(tmp_path, how):
    """A model exported with its masks still attached (torch.nn.utils.prune's hooks, or a parametrization): layers
    are named after their module (fc, out), not fc.weight_mask / fc.parametrizations.weight.original, and a module
    called twice keeps one stored weight."""
    from prunec.build import build
    from prunec.verify import verify

    torch.manual_seed(0)
    m = _Shared().eval()
    if how == "prune-hooks":
        _hooked(m)
    else:
        import torch.nn.utils.parametrize as PZ

        class Mask(torch.nn.Module):
            def __init__(self, w):
                super().__init__()
                self.register_buffer("mask", (w.abs() > w.abs().median()).float())

            def forward(self, w):
                return w * self.mask

        for lin in (m.fc, m.out):
            PZ.register_parametrization(lin, "weight", Mask(lin.weight.detach()))
    pt2 = tmp_path / "shared.pt2"
    torch.export.save(torch.export.export(m, (torch.randn(1, 8),)), str(pt2))
    r = build(pt2, "host", tmp_path / "b", name="shared")
    layers = [(l["name"], l.get("shares_weights_of")) for l in r.manifest["layers"] if l.get("weights")]
    assert [n for n, _ in layers][0] == "fc" and layers[-1][0] == "out", layers
    assert layers[1][1] == "fc", layers  # the second call of fc: its weight is fc's
    src = (tmp_path / "b" / "shared.c").read_text()
    assert "weight_mask" not in src and "parametrizations" not in src
    assert verify(tmp_path / "b", random=5).ok
    res = run("build", pt2, "-t", "host", "--out", tmp_path / "c", "--skip-zero-inputs", "out")
    assert res.exit_code == 0, res.output


def test_layouts_for_speed_never_take_more_bytes_than_dense(tmp_path):
    """x86_64-avx2 (with AVX-512 here) and aarch64-neon store fc layers in sliced / blocked / windowed layouts for
    speed, but a small layer whose slots would take more bytes than its dense matrix is stored dense (as fast, and
    smaller): a 7-row layer at 50 %; the layouts' own layers stay theirs."""
    import build_models as bm
    from prunec import build as B

    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (144, 7), 0.5, seed=2)
    for t in ("x86_64-avx2", "aarch64-neon"):
        m = B.prepare(pt2, t)[1]
        (layer,) = [l for l in m["layers"] if l.get("weights")]
        stored = sum(v for k, v in layer["bytes"].items() if k != "bias")
        assert layer["format"] == "dense" and stored == 4 * 144 * 7, (t, layer["format"], layer["bytes"])
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (300, 70, 10), 0.1, seed=2)
    assert [l["format"] for l in B.prepare(pt2, "aarch64-neon")[1]["layers"] if l.get("weights")][:2] == ["wsell"] * 2


class _Sub(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(12, 16), torch.nn.Linear(12, 16)
        self.out = torch.nn.Linear(16, 4)

    def forward(self, x):
        d = torch.relu(self.a(x) - self.b(x))  # the relu fuses into the sub's clamp
        e = torch.tanh(d) - d  # d's last use: the planner may write the result over either operand
        return torch.log_softmax(self.out(d - torch.sigmoid(e)), dim=1)


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
def test_sub_of_two_tensors_and_log_softmax_verify(tmp_path, target):
    import build_models as bm
    from prunec import targets
    from prunec.build import build
    from prunec.verify import verify

    if target != "host":
        bm.skip_if_missing(targets.get(target))
    torch.manual_seed(1)
    pt2 = tmp_path / "sub.pt2"
    bm.export(_Sub().eval(), (12,), pt2)
    r = build(pt2, target, tmp_path / "b", name="sub")
    ops = [l.get("op") for l in r.manifest["layers"]]
    assert ops.count("sub") == 3 and "log_softmax" in ops, ops
    rep = verify(tmp_path / "b", random=20)
    assert rep.ok and rep.n == 20, rep.text()


def test_all_nan_references_warn_without_an_atol_advice():
    from prunec.verify import compare

    t = np.full((2, 3), np.nan)
    r = compare(t.copy(), t)
    assert r.ok and r.ref_finite == 0
    assert "every reference output is NaN or infinite" in r.text() and "--atol" not in r.text()
    r = compare(np.array([[1e-9, 2e-9]]), np.array([[1e-9, 2e-9]]))
    assert r.ref_finite == 2 and "--atol" in r.text()  # small but finite: the advice stands


def test_a_file_name_that_is_no_c_name_is_said(tmp_path):
    import build_models as bm

    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (8, 4), 0.5, seed=1)
    math_pt2 = tmp_path / "math.pt2"
    pt2.rename(math_pt2)
    r = run("build", math_pt2, "-t", "host", "--out", tmp_path / "b")
    assert r.exit_code == 0 and "named 'model': the file name 'math' is not a usable C name" in r.output, r.output
    r = run("build", math_pt2, "-t", "host", "--out", tmp_path / "c", "--name", "mathnet")
    assert r.exit_code == 0 and "named 'model'" not in r.output, r.output
