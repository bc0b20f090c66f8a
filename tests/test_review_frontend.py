"""Review of the frontend: models the C would have computed wrongly (or that `verify` could not run) are refused
clearly, naming the op and the user's file:line, and nothing is written; decomposed spellings build."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import build_models as bm
from prunec import build as B
from prunec import frontend
from prunec.errors import PrunecError


def graph_of(model: nn.Module, shape, decompose: bool = False):
    ep = torch.export.export(model.eval(), (torch.zeros((1, *shape)),))
    if decompose:
        ep = ep.run_decompositions()
    return frontend.from_program(ep)


def _line(tag: str) -> int:
    return next(i for i, l in enumerate(open(__file__).read().splitlines(), 1) if l.endswith(f"# {tag}"))


class BatchView(nn.Module):
    """A view that moves channels into the batch dimension, then a per-sample kernel: PyTorch pools/convolves
    every 'sample', the generated C (which drops the batch dimension) computed the first one only."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.d = nn.Conv2d(2, 2, 3)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        y = self.c(x)
        if self.what == "maxpool":
            return F.max_pool2d(y.view(2, 2, 6, 6), 2).reshape(1, -1)  # BATCHVIEW_MAXPOOL
        if self.what == "avgpool":
            return F.avg_pool2d(y.view(2, 2, 6, 6), 2).reshape(1, -1)  # BATCHVIEW_AVGPOOL
        if self.what == "adaptive":
            return F.adaptive_avg_pool2d(y.view(2, 2, 6, 6), 1).reshape(1, -1)  # BATCHVIEW_ADAPTIVE
        if self.what == "conv":
            return self.d(y.view(2, 2, 6, 6)).reshape(1, -1)  # BATCHVIEW_CONV
        # conv output (1, 4, 2, 2) seen as (4, 4): BatchNorm1d(4) normalises over the spatial index, which
        # has as many entries as the conv has output channels, so it was folded per output channel: wrong.
        bn = self.bn
        return F.batch_norm(y.view(4, 4), bn.running_mean, bn.running_var, bn.weight, bn.bias)  # BATCHVIEW_BN


@pytest.mark.parametrize("what, shape, op", [
    ("maxpool", (3, 6, 6), "max_pool2d"),
    ("avgpool", (3, 6, 6), "avg_pool2d"),
    ("adaptive", (3, 6, 6), "adaptive_avg_pool2d"),
    ("conv", (3, 6, 6), "conv2d"),
    ("bn", (3, 2, 2), "batch_norm"),
])
def test_view_that_changes_the_batch_is_refused_before_a_per_sample_kernel(what, shape, op):
    m = bm.prune_random(BatchView(what))
    with pytest.raises(PrunecError) as e:
        graph_of(m, shape)
    msg = str(e.value)
    assert f"aten.{op}." in msg and "batch" in msg
    assert f"test_review_frontend.py:{_line('BATCHVIEW_' + what.upper())}" in msg


def test_batch_view_refusal_writes_nothing(tmp_path):
    pt2 = bm.export(bm.prune_random(BatchView("maxpool")), (3, 6, 6), tmp_path / "bv.pt2")
    with pytest.raises(PrunecError, match=r"aten\.max_pool2d.*test_review_frontend\.py:\d+.*nothing was written"):
        B.build(pt2, "host", tmp_path / "out", name="bv")
    assert not (tmp_path / "out").exists()


def test_views_that_keep_the_batch_still_build():
    class Ok(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):  # (1, 4, 6, 6) -> (1, 2, 12, 6): the batch stays 1
            return F.max_pool2d(self.c(x).view(1, 2, 12, 6), 2).view(2, -1).softmax(0)

    g = graph_of(Ok(), (3, 6, 6))
    assert [n.op for n in g.nodes] == ["conv2d", "maxpool2d", "softmax"]


class Wrapped(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        if self.kind == "tuple":
            return (y,)
        if self.kind == "list":
            return [y]
        return {"logits": y}


@pytest.mark.parametrize("kind", ["tuple", "list", "dict"])
def test_one_tensor_in_a_container_is_refused(kind, tmp_path):
    """The C writes one tensor; the reference (`verify`) returned a container and crashed on it."""
    with pytest.raises(PrunecError, match=f"returns a {kind} of 1 tensor"):
        graph_of(Wrapped(kind), (4,))
    pt2 = bm.export(Wrapped(kind), (4,), tmp_path / "w.pt2")
    with pytest.raises(PrunecError, match="exactly one output tensor"):
        B.build(pt2, "host", tmp_path / "out", name="w")
    assert not (tmp_path / "out").exists()


def test_input_in_a_container_is_refused():
    class ListIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, xs):
            return self.fc(xs[0])

    ep = torch.export.export(ListIn(), ([torch.zeros(1, 4)],))
    with pytest.raises(PrunecError, match="takes its input as a list of 1 tensor"):
        frontend.from_program(ep)


def test_decomposed_batch_norm_is_folded_like_the_plain_one():
    """ep.run_decompositions() spells batch norm _native_batch_norm_legit_no_training, whose result is a
    tuple: the frontend failed with 'no tensor metadata on the node'."""
    m, shape = bm.make("batchnorm")
    plain = graph_of(m, shape)
    dec = graph_of(m, shape, decompose=True)
    assert [n.op for n in dec.nodes] == [n.op for n in plain.nodes] == ["conv2d", "conv2d", "maxpool2d", "fc", "fc"]
    for a, b in zip(plain.nodes, dec.nodes):
        assert a.out_shape == b.out_shape and a.attrs.keys() == b.attrs.keys()
        if a.weight is not None:
            np.testing.assert_allclose(b.weight, a.weight, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(b.bias, a.bias, rtol=1e-6, atol=1e-6)


def test_clamp_max_alone_is_a_clamp():
    class CM(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x).clamp_max(0.25)

    (fc,) = graph_of(CM(), (4,)).nodes
    assert fc.op == "fc" and fc.attrs["out_min"] == -math.inf and fc.attrs["out_max"] == 0.25


def test_batch_norm_without_running_stats_says_so():
    m = nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(PrunecError, match=re.escape("track_running_stats=False")):
        graph_of(m, (2, 5, 5))


def test_unsupported_op_in_a_sequential_names_the_module():
    """An nn.Sequential of library modules has no user frame in its stack trace: the file:line is torch's own,
    so the message adds the module path and type."""
    m = nn.Sequential(nn.Linear(4, 4), nn.LogSigmoid())
    with pytest.raises(PrunecError, match=r"aten\.log_sigmoid\.default at .*:\d+ \(module 1, LogSigmoid\)"):
        graph_of(m, (4,))
