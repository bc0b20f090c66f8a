"""Tests from a second hand-made mutation audit of prunec's Python side (verify, fuse, data, frontend, graph, build,
train, commands): each fails on the mutant named in its name (ids as in the audit's findings.md) and passes on the
original code."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from prunec import data as D
from prunec import frontend, fuse
from prunec import plan as planner
from prunec import train as T
from prunec import verify as V
from prunec.build import MANIFEST_VERSION
from prunec.cli import main
from prunec.errors import PrunecError
from prunec.graph import Graph, Node, numel


def _idx_bytes(arr: np.ndarray, dtype_code: int = 0x08) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, dtype_code, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def _fmnist_dir(d, n=6, labels=None):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        (d / f"{prefix}-images-idx3-ubyte").write_bytes(_idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        lab = rng.integers(0, 10, n) if labels is None else np.asarray(labels)
        (d / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(lab))
    return d


def test_V1_an_error_exactly_at_the_tolerance_passes():
    # docs/BUILD.md: a sample passes when max |c - t| <= ATOL * max(1, max |t|) (inclusive); binary-exact values
    t = np.array([[1.0, 0.0]])
    c = np.array([[1.25, 0.0]])
    assert V.compare(c, t, atol=0.25).ok
    assert not V.compare(np.array([[1.2578125, 0.0]]), t, atol=0.25).ok


def test_V3_a_nan_in_both_outputs_does_not_hide_another_elements_error():
    r = V.compare(np.array([[np.nan, 5.0]]), np.array([[np.nan, 0.0]]))
    assert not r.ok and r.failing_samples == [0]
    assert r.max_abs_err == 5.0


def test_V4_an_equal_infinity_does_not_hide_another_elements_error():
    r = V.compare(np.array([[np.inf, 5.0]]), np.array([[np.inf, 0.0]]))
    assert not r.ok and r.failing_samples == [0]
    assert r.max_abs_err == 5.0


def test_V5_a_top1_flip_within_tolerance_of_a_reference_margin_under_twice_the_bound_is_a_tie():
    # margin 0.375 between the reference's top two (bound 0.25): each may move by the bound, so rounding can swap
    # them; the build's values are within the tolerance and the flip is counted as a tie, not a failure
    t = np.array([[1.0, 0.625]])
    c = np.array([[0.8125, 0.84375]])
    r = V.compare(c, t, atol=0.25)
    assert r.top1_disagree == 1 and r.ties == 1
    assert r.ok and r.failing_samples == []


def test_D1_an_idx_file_with_bytes_after_its_data_is_refused(tmp_path):
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(_idx_bytes(np.arange(5)) + b"\x00\x01")
    with pytest.raises(PrunecError, match="truncated or corrupt"):
        D.read_idx(p, ndim=1)
    p.write_bytes(_idx_bytes(np.arange(5)))
    assert D.read_idx(p, ndim=1).tolist() == [0, 1, 2, 3, 4]


def test_D3_label_10_is_out_of_range(tmp_path):
    d = _fmnist_dir(tmp_path / "fm", n=3, labels=[0, 9, 10])
    with pytest.raises(PrunecError, match="label 10 is out of range"):
        D.load_fashion_mnist(d)
    assert len(D.load_fashion_mnist(_fmnist_dir(tmp_path / "ok", n=3, labels=[0, 9, 9])).test) == 3


def test_D5_a_3x28x28_input_still_gets_the_small_synthetic_sizes(monkeypatch):
    monkeypatch.delenv("PRUNEC_SYNTHETIC_TRAIN", raising=False)
    monkeypatch.delenv("PRUNEC_SYNTHETIC_TEST", raising=False)
    ds = D.synthetic_for((3, 28, 28))
    assert (len(ds.train), len(ds.test)) == (2000, 500)
    ds = D.synthetic_for((3, 28, 29))
    assert (len(ds.train), len(ds.test)) == (64, 32)


def test_D8_an_idx_file_of_another_element_type_is_refused(tmp_path):
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(_idx_bytes(np.arange(5), dtype_code=0x0D))  # 0x0D: float32 elements
    with pytest.raises(PrunecError, match="not a uint8 IDX file"):
        D.read_idx(p, ndim=1)


def test_V8_an_empty_samples_file_is_refused_when_read(tmp_path):
    p = tmp_path / "empty.npy"
    np.save(p, np.zeros((0, 4), np.float32))
    with pytest.raises(PrunecError, match="holds 0 values"):
        V.load_samples(p, (1, 4), "--inputs")
    np.save(p, np.ones((2, 4), np.float32))
    assert V.load_samples(p, (1, 4), "--inputs").shape == (2, 4)


def test_V9_random_zero_is_refused_before_anything_runs():
    m = {"input_shape": [1, 4]}
    with pytest.raises(PrunecError, match="--random 0: give the number of random inputs, at least 1"):
        V._inputs(m, None, None, 0, None, None, 0)
    x, labels = V._inputs(m, None, None, 1, None, None, 0)
    assert x.shape == (1, 4) and labels is None


def _graph_of(model: nn.Module, shape):
    ep = torch.export.export(model.eval(), (torch.zeros((1, *shape)),))
    return frontend.from_program(ep)


class _ClampThenRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.relu(torch.clamp(self.fc(x), max=-1.0))  # always 0: the two ranges do not meet


def test_FE14_clamps_whose_ranges_do_not_meet_are_not_fused():
    g = _graph_of(_ClampThenRelu(), (4,))
    for n in g.nodes:
        lo, hi = n.attrs.get("out_min", -np.inf), n.attrs.get("out_max", np.inf)
        assert lo <= hi, g.summary()
    assert [n.op for n in g.nodes] == ["fc", "clamp"], g.summary()
    assert (g.nodes[0].attrs["out_max"], g.nodes[1].attrs["out_min"]) == (-1.0, 0.0)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_FE9_padding_same_with_an_even_kernel_width_is_refused():
    with pytest.raises(PrunecError, match="padding='same' with an even kernel"):
        _graph_of(nn.Conv2d(1, 1, (3, 2), padding="same"), (1, 5, 5))
    g = _graph_of(nn.Conv2d(1, 1, (3, 3), padding="same"), (1, 5, 5))
    assert g.nodes[0].attrs["padding"] == (1, 1)


def _tiny_fit(**cfg):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    g = torch.Generator().manual_seed(1)
    split = D.Split(torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g))
    hist = T.fit(model, split, T.TrainConfig(**{"epochs": 1, "lr": 0.1, "batch_size": 16, **cfg}), seed=0, progress=False)
    return model, hist


def test_T2_label_smoothing_reaches_the_loss():
    _, plain = _tiny_fit(label_smoothing=0.0)
    _, smooth = _tiny_fit(label_smoothing=0.5)
    assert abs(smooth[0]["loss"] - plain[0]["loss"]) > 1e-3


def test_T7_lr_offset_continues_one_cosine_decay():
    _, first = _tiny_fit(lr_total=2)
    _, second = _tiny_fit(lr_total=2, lr_offset=1)
    steps = first[0]["steps"]
    # the lr of the last step of each call: t = steps - 1, then steps + steps - 1 of 2 * steps iterations
    assert first[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * (steps - 1) / (2 * steps))))
    assert second[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * (2 * steps - 1) / (2 * steps))))
    assert second[0]["lr"] < 0.1 * first[0]["lr"]


def test_V11_outputs_within_100_atol_of_zero_are_weak():
    t = np.array([[5e-3, 0.0]])
    assert V.compare(t.copy(), t).weak()  # 5e-3 < 100 x 1e-4
    assert not V.compare(t.copy(), t, atol=1e-5).weak()  # 5e-3 >= 100 x 1e-5
    assert "absolute floor" in V.compare(t.copy(), t).text()


def test_V12_random_at_the_byte_limit_is_taken_and_one_more_refused(monkeypatch):
    monkeypatch.setattr(V, "RANDOM_BYTES_MAX", 64)  # inputs of 4 floats: at most 4 of them
    m = {"input_shape": [1, 4]}
    assert V._inputs(m, None, None, 4, None, None, 0)[0].shape == (4, 4)
    with pytest.raises(PrunecError, match="give at most 4"):
        V._inputs(m, None, None, 5, None, None, 0)


def _chain() -> Graph:
    g = Graph(input_shape=(4,), output_shape=(4,), buffers={"input": 4, "a": 4, "output": 4})
    g.nodes = [Node("r1", "clamp", ["input"], "a", [(1, 4)], (1, 4), {"out_min": 0.0, "out_max": np.inf}),
               Node("r2", "clamp", ["a"], "output", [(1, 4)], (1, 4), {"out_min": 0.0, "out_max": np.inf})]
    g.validate()
    return g


def test_G1_validate_refuses_an_input_shape_that_disagrees_with_its_buffer():
    g = _chain()
    g.nodes[1].in_shapes = [(1, 2)]
    with pytest.raises(ValueError, match="input a has 4 elements, shape"):
        g.validate()


def test_G2_validate_refuses_a_buffer_written_twice():
    g = _chain()
    g.nodes.insert(1, Node("r0", "clamp", ["input"], "a", [(1, 4)], (1, 4), {"out_min": 0.0, "out_max": np.inf}))
    with pytest.raises(ValueError, match="buffer a written twice"):
        g.validate()


def test_V14_a_manifest_one_version_newer_asks_for_a_newer_prunec(tmp_path):
    m = {"name": "m", "target": "host", "input_shape": [1, 4], "output_shape": [1, 2], "arena_bytes": 0,
         "files": {"header": "m.h", "sources": ["m.c"]}, "format_version": MANIFEST_VERSION}
    V.check_manifest(m, tmp_path / "manifest.json")
    with pytest.raises(PrunecError, match=f"build format version {MANIFEST_VERSION + 1} is newer than this prunec"):
        V.check_manifest({**m, "format_version": MANIFEST_VERSION + 1}, tmp_path / "manifest.json")


def test_V15_pytorch_accuracy_is_the_references_own():
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    c = np.array([[1.0, 0.0], [1.0, 0.0]])
    r = V.compare(c, t, labels=np.array([0, 1]))
    assert (r.accuracy_c, r.accuracy_torch) == (0.5, 1.0)
    assert not r.ok and r.failing_samples == [1]


def _stride1_pool_chain() -> Graph:
    """relu -> conv(1 ch) -> avgpool s1 -> conv(2 ch) -> avgpool s1 -> relu -> conv: pools that do not shrink, where no
    single unfusing shrinks the fused arena but fusing nothing does (found by search over random chains)."""
    conv = {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    pool = {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1)}
    relu = {"out_min": 0.0, "out_max": np.inf}
    s3, s1, s2 = (1, 3, 15, 15), (1, 1, 15, 15), (1, 2, 15, 15)
    g = Graph(input_shape=(3, 15, 15), output_shape=(2, 15, 15), buffers={"input": numel(s3)})
    g.nodes = [Node("relu1", "clamp", ["input"], "b1", [s3], s3, relu),
               Node("conv2", "conv2d", ["b1"], "b2", [s3], s1, conv),
               Node("pool3", "avgpool2d", ["b2"], "b3", [s1], s1, pool),
               Node("conv4", "conv2d", ["b3"], "b4", [s1], s2, conv),
               Node("pool5", "avgpool2d", ["b4"], "b5", [s2], s2, pool),
               Node("relu6", "clamp", ["b5"], "b6", [s2], s2, relu),
               Node("conv7", "conv2d", ["b6"], "output", [s2], s2, conv)]
    for n in g.nodes:
        g.buffers[n.output] = numel(n.out_shape)
    g.validate()
    return g


def test_F2_fusion_is_dropped_when_the_greedy_choice_still_grows_the_arena():
    g = _stride1_pool_chain()
    cand = fuse.conv_pool_candidates(g)
    assert cand == {1: 2, 3: 4}
    unfused = planner.make_plan(g).arena_bytes
    assert planner.make_plan(fuse.planning_graph(g, cand)).arena_bytes > unfused
    pairs = fuse.find_conv_pool(g)
    assert planner.make_plan(fuse.planning_graph(g, pairs)).arena_bytes <= unfused
    assert pairs == {}


def test_F6_keep_restricts_fusion_to_the_pairs_it_accepts():
    conv = {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    si, sc, sp = (1, 1, 8, 8), (1, 8, 8, 8), (1, 8, 4, 4)
    g = Graph(input_shape=(1, 8, 8), output_shape=(8, 4, 4), buffers={"input": 64, "a": 512, "output": 128})
    g.nodes = [Node("conv", "conv2d", ["input"], "a", [si], sc, conv),
               Node("pool", "maxpool2d", ["a"], "output", [sc], sp, {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)})]
    g.validate()
    assert fuse.find_conv_pool(g) == {0: 1}  # worth fusing: the 8-channel output becomes one plane
    assert fuse.find_conv_pool(g, keep=lambda c, p: True) == {0: 1}
    seen = []
    assert fuse.find_conv_pool(g, keep=lambda c, p: seen.append((c.name, p.name)) or False) == {}
    assert seen == [("conv", "pool")]


_SMALL = {"PRUNEC_THREADS": "1", "PRUNEC_SYNTHETIC_TRAIN": "200", "PRUNEC_SYNTHETIC_TEST": "100"}


def test_C1_train_refuses_zero_epochs(tmp_path):
    out = tmp_path / "base.pt"
    r = CliRunner().invoke(main, ["train", "--model", "lenet300", "--data", "synthetic", "--out", str(out), "--epochs", "0",
                                  "--quiet"], env=_SMALL)
    assert r.exit_code != 0 and "--epochs 0 must be ≥ 1" in r.output, r.output
    assert not out.exists()


def test_C3_target_compression_is_refused_beside_quality_or_global_threshold(tmp_path):
    base = tmp_path / "base.pt"
    r = CliRunner().invoke(main, ["train", "--model", "lenet300", "--data", "synthetic", "--out", str(base), "--epochs", "1",
                                  "--quiet"], env=_SMALL)
    assert r.exit_code == 0, r.output
    for sel in (["--quality", "1.0"], ["--global-threshold", "0.5"]):
        out = tmp_path / "p.pt"
        r = CliRunner().invoke(main, ["prune", str(base), "--out", str(out), *sel, "--target-compression", "20", "--quiet",
                                      "--steps", "1", "--retrain-epochs", "0", "--final-epochs", "0"], env=_SMALL)
        assert r.exit_code != 0 and f"it does not apply to {sel[0]}" in r.output, r.output
        assert not out.exists()


def test_FE13_avg_pool_with_divisor_override_is_refused():
    # the C kernel divides by the window (or its padded count): a divisor_override would be silently ignored
    with pytest.raises(PrunecError, match="divisor_override is not supported"):
        _graph_of(nn.AvgPool2d(2, divisor_override=3), (1, 4, 4))
    assert [n.op for n in _graph_of(nn.AvgPool2d(2), (1, 4, 4)).nodes] == ["avgpool2d"]


class _ConstMinusInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("c", torch.tensor([1.0, 2.0, 3.0]))

    def forward(self, x):
        return self.c - x  # aten.sub.Tensor with the constant first: k - x


def test_FE20_constant_minus_tensor_is_negated():
    g = _graph_of(_ConstMinusInput(), (3,))
    (n,) = g.nodes
    assert n.op == "affine"
    np.testing.assert_array_equal(n.attrs["scale"], [-1.0, -1.0, -1.0])
    np.testing.assert_array_equal(n.attrs["shift"], [1.0, 2.0, 3.0])


def test_D2_a_label_file_where_images_are_expected_is_named(tmp_path):
    # (the existing test matches "swapped", which its own tmp_path name contains: any error passes it)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(_idx_bytes(np.arange(5)))
    with pytest.raises(PrunecError, match=r"is a label file \(IDX magic 2049, 1 dimension\) but an image file"):
        D.read_idx(p, ndim=3)
    assert D.read_idx(p, ndim=1).shape == (5,)
