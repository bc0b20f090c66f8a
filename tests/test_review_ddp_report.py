"""Review fixes: report figures, sensitivity proposal, IDX loader errors, distributed digest and backend."""
import gzip
import struct

import numpy as np
import pytest
import torch
from torch import nn

from prunec import checkpoint as C
from prunec import data as D
from prunec import distributed as DIST
from prunec import report as R
from prunec import sensitivity as S
from prunec.errors import PrunecError
from prunec.models import LeNet300

torch.set_num_threads(1)


def _capture(monkeypatch, method):
    """Record the calls of a matplotlib Axes method (args and kwargs), still calling it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    calls = []
    orig = getattr(Axes, method)

    def rec(self, *a, **k):
        calls.append((a, k))
        return orig(self, *a, **k)

    monkeypatch.setattr(Axes, method, rec)
    return calls


# --- report -------------------------------------------------------------------------------------------


def _dead_neuron_checkpoint(tmp_path):
    """A LeNet-300-100 with 100 fc1 neurons removed by dead-neuron removal, saved like `prunec prune` does."""
    from prunec.prune import remove_dead_neurons

    torch.manual_seed(0)
    m = LeNet300()
    weights0 = {n: mod.weight.numel() for n, mod in m.named_modules() if isinstance(mod, nn.Linear)}
    with torch.no_grad():
        m.fc1.weight[:100] = 0  # 100 neurons with no input
        m.fc1.bias[:100] = -1.0  # ReLU(-1) = 0: removable
        m.fc1.weight[100:].masked_fill_(torch.rand(200, 784) < 0.9, 0.0)
    m, masks, removed = remove_dead_neurons(m)
    assert removed["fc1"] == 100 and m.fc1.weight.shape[0] == 200
    sched = {"weights0": weights0, "history": [], "dead_removed": removed, "step": 1, "done": True}
    p = tmp_path / "dead.pt"
    C.save(p, m, "lenet300", masks=masks, kind="pruned", schedule=sched)
    return C.load(p)


def test_remaining_figure_counts_against_dense_sizes_like_info(tmp_path, monkeypatch):
    from prunec.commands_prune import info_dict

    ck = _dead_neuron_checkpoint(tmp_path)
    seen = {}
    orig = R.plot_remaining

    def rec(rows, name, path):
        seen["rows"] = [dict(r) for r in rows]
        return orig(rows, name, path)

    monkeypatch.setattr(R, "plot_remaining", rec)
    R.write_report(ck, tmp_path / "figs")
    ours = {r["name"]: r["remaining"] for r in seen["rows"]}
    info = {x["name"]: x["remaining"] for x in info_dict(ck)["layers"]}
    assert ours == pytest.approx(info)
    nz = int((ck.model.fc1.weight != 0).sum())
    assert ours["fc1"] == pytest.approx(nz / 235200)  # not nz / (200 * 784)


def test_mask_figure_draws_a_dense_layer_white(tmp_path):
    from matplotlib.image import imread

    R.plot_masks(LeNet300(), tmp_path / "m.png")  # every weight kept
    img = imread(tmp_path / "m.png")[..., :3]
    dark = (img.mean(-1) < 0.2).mean()
    assert dark < 0.05, f"{100 * dark:.0f}% of the figure is black: kept weights drawn black"


def test_mask_figure_of_a_big_fc_layer_is_block_averaged(tmp_path, monkeypatch):
    calls = _capture(monkeypatch, "imshow")
    m = nn.Sequential(nn.Linear(3000, 2000))
    with torch.no_grad():
        m[0].weight.masked_fill_(torch.rand(2000, 3000, generator=torch.Generator().manual_seed(0)) < 0.75, 0.0)
    R.plot_masks(m, tmp_path / "m.png")
    (img,), kw = calls[0]
    assert max(img.shape) <= R.MASK_IMAGE_MAX
    assert float(img.mean()) == pytest.approx(float((m[0].weight != 0).float().mean()), abs=1e-3)
    assert kw["extent"] == (-0.5, 2999.5, 1999.5, -0.5)  # axes still in input/output indices


def test_schedule_figure_does_not_count_an_undone_step(tmp_path, monkeypatch):
    calls = _capture(monkeypatch, "plot")
    hist = [{"step": 1, "compression": 2.0, "accuracy_after_prune": 0.8, "test_accuracy": 0.9},
            {"step": 2, "compression": 5.0, "accuracy_after_prune": 0.5, "test_accuracy": 0.6, "undone": True}]
    R.plot_schedule(hist, 0.9, tmp_path / "s.png")
    compression = [a[1] for a, k in calls if k.get("label") == "compression" or (len(a) > 2 and a[2] == "s-")]
    assert compression == [[2.0]]


def test_weight_histograms_of_a_diverged_model():
    m = LeNet300()
    with torch.no_grad():
        m.fc1.weight[0, 0] = float("nan")
        m.fc2.weight[0, 0] = float("inf")
    h = R.weight_histograms(m)  # was: RuntimeError from torch.histc (prunec prune crashed on such a base)
    assert h["fc1"]["nonfinite"] == 1 and h["fc2"]["nonfinite"] == 1 and "nonfinite" not in h["fc3"]
    assert sum(h["fc1"]["counts"]) == 235200 - 1


# --- sensitivity ----------------------------------------------------------------------------------------


def test_propose_accepts_a_drop_equal_to_the_tolerance():
    res = {"baseline": 0.9, "curves": {"fc1": [[0.0, 0.9], [0.5, 0.895], [0.9, 0.8]]}}
    assert 0.9 - 0.895 > 0.005  # floating point
    assert S.propose(res, 0.005) == {"fc1": 0.5}


def test_propose_stops_at_the_first_fraction_out_of_tolerance():
    res = {"baseline": 0.9, "curves": {"fc1": [[0.0, 0.9], [0.5, 0.9], [0.8, 0.7], [0.9, 0.9], [0.95, 0.5]]}}
    assert S.propose(res, 0.01) == {"fc1": 0.5}


def test_propose_refuses_a_negative_tolerance():
    with pytest.raises(PrunecError, match="negative"):
        S.propose({"baseline": 0.9, "curves": {}}, -0.01)


def test_analyse_restores_weights_when_a_probe_fails(monkeypatch):
    torch.manual_seed(0)
    m = LeNet300()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    split = D.synthetic(n_train=8, n_test=16).test
    calls = {"n": 0}
    real = S.evaluate

    def flaky(model, s):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(model, s)

    monkeypatch.setattr(S, "evaluate", flaky)
    with pytest.raises(KeyboardInterrupt):
        S.analyse(m, split)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


# --- data loader ----------------------------------------------------------------------------------------


def _idx(data: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, data.ndim) + struct.pack(">" + "I" * data.ndim, *data.shape) + data.tobytes()


def _fmnist(d, n_train=6, n_test=4, swap=False, labels=None, gz_names=True, plain_gz=False):
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        img = _idx(rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        lab = _idx((labels if labels is not None else rng.integers(0, 10, n)).astype(np.uint8))
        if swap and prefix == "train":
            img, lab = lab, img
        for stem, raw in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lab)):
            if plain_gz:  # gzip content under a name without .gz
                (d / stem).write_bytes(gzip.compress(raw))
            else:
                (d / (stem + ".gz" if gz_names else stem)).write_bytes(gzip.compress(raw) if gz_names else raw)
    return d


def test_swapped_image_and_label_files_are_named(tmp_path):
    d = _fmnist(tmp_path / "fm", n_train=28, swap=True)  # 28 labels vs 28 images: the counts would even match
    with pytest.raises(PrunecError, match="but an image file .* was expected here; are the images and labels files swapped"):
        D.load_fashion_mnist(d)  # (not "swapped" alone: this test's tmp_path holds that word)


def test_gzip_file_without_gz_suffix_reads(tmp_path):
    ds = D.load_fashion_mnist(_fmnist(tmp_path / "fm", plain_gz=True))
    assert ds.train.x.shape == (6, 1, 28, 28) and len(ds.test) == 4


def test_data_dir_that_is_a_file(tmp_path):
    f = tmp_path / "notadir"
    f.write_text("x")
    with pytest.raises(PrunecError, match="is a file"):
        D.load_fashion_mnist(f)


def test_label_out_of_range(tmp_path):
    d = _fmnist(tmp_path / "fm", n_train=4, n_test=4, labels=np.array([0, 1, 2, 200]))
    with pytest.raises(PrunecError, match="label 200 is out of range"):
        D.load_fashion_mnist(d)


def test_count_mismatch_names_the_files(tmp_path):
    d = _fmnist(tmp_path / "fm")
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(3, np.uint8))))
    with pytest.raises(PrunecError, match=r"test images \(4 in t10k-images.*labels \(3 in t10k-labels"):
        D.load_fashion_mnist(d)


# --- distributed ----------------------------------------------------------------------------------------


def test_digest_covers_dropout_rates():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    masks = {"0": torch.ones(4, 4, dtype=torch.bool)}
    d = DIST.digest(m, masks)
    m[1].p = 0.25  # what the dropout rescale changes every step; not in the state_dict
    assert DIST.digest(m, masks) != d


def test_backend_keeps_cpu_collectives_on_gloo_with_a_gpu(monkeypatch):
    # prunec's models, masks and broadcasts are CPU tensors; nccl alone cannot carry them
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "cpu:gloo" in DIST.backend()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert DIST.backend() == "gloo"


# --- torch.nn.utils.prune interop -----------------------------------------------------------------------


def test_from_torch_prune_also_bakes_modules_prunec_does_not_prune():
    from torch.nn.utils import prune as tp

    from prunec import masks as M

    torch.manual_seed(0)
    m = nn.Sequential(nn.ConvTranspose1d(1, 4, 3), nn.Flatten(), nn.Sequential(nn.Linear(40, 3)))  # prunec: no ConvTranspose
    tp.l1_unstructured(m[0], "weight", 0.5)
    tp.l1_unstructured(m[2][0], "weight", 0.5)
    tp.l1_unstructured(m[2][0], "weight", 0.5)  # twice: a PruningContainer
    x = torch.randn(2, 1, 8)
    ref = m(x).detach()
    kept = m[2][0].weight_mask.bool().clone()
    masks = M.from_torch_prune(m)
    assert list(masks) == ["2.0"] and torch.equal(masks["2.0"], kept)
    assert not any(n.endswith("_orig") for n, _ in m.named_parameters())
    assert all(not mod._forward_pre_hooks for mod in m.modules())
    assert torch.allclose(m(x), ref)
