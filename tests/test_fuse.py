"""Conv + pool fusion (prunec.fuse, `prunec build --fuse-pool`): the fused build computes bit for bit what the
unfused one computes and what PyTorch computes, its memory plan is valid for the fused schedule, the target's
default and the CLI flags decide, and the RAM check sees the fused arena."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import build_models as bm
from prunec import fuse, frontend, plan as planner, targets
from prunec.build import build
from prunec.cli import main
from prunec.errors import PrunecError
from prunec.verify import verify


class Zoo(nn.Module):
    """Every shape of fusion: grouped conv with relu into an overlapping 3x3/2 max pool, a bias-free conv into an
    average pool, a nearly dense conv (stored dense) into a max pool that is the graph's output."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 6, 3, padding=1, groups=2)
        self.c2 = nn.Conv2d(6, 8, 3, bias=False)
        self.c3 = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 3, stride=2)
        x = F.avg_pool2d(self.c2(x), 2)
        return F.max_pool2d(self.c3(x), 2)


class Branch(nn.Module):
    """conv1's output is read by the pool and by the add: it must exist whole, so it is not fused."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        y = self.c1(x)
        return F.max_pool2d(y, 2) + F.avg_pool2d(y, 2)


def _model(tmp_path, case):
    if case == "zoo":
        torch.manual_seed(0)
        m = bm.prune_random(Zoo(), 0)
        with torch.no_grad():  # c3 nearly dense: stored dense, the dense view path
            m.c3.weight.copy_(torch.randn_like(m.c3.weight))
        shape = (4, 15, 15)
    else:
        m, shape = bm.make(case)
    return m, shape, bm.export(m, shape, tmp_path / f"{case}.pt2")


_outputs = bm.outputs


CASES = ["zoo", "pools", "batchnorm", "activations", "conv3_pad1"]


@pytest.mark.parametrize("case", CASES)
def test_fused_build_equals_unfused_and_pytorch(case, tmp_path):
    m, shape, p = _model(tmp_path, case)
    fused = build(p, "host", tmp_path / "f", name="net", fuse_pool=True)
    plain = build(p, "host", tmp_path / "u", name="net", fuse_pool=False)
    pairs = fused.manifest["plan"]["fused_conv_pool"]
    assert plain.manifest["plan"]["fused_conv_pool"] == []
    if case == "conv3_pad1":  # no pool: nothing to fuse, the same build
        assert pairs == [] and fused.manifest["arena_bytes"] == plain.manifest["arena_bytes"]
    else:
        assert pairs, fused.manifest["plan"]
        assert fused.manifest["arena_bytes"] < plain.manifest["arena_bytes"]
        assert fused.manifest["plan"]["arena_bytes_unfused"] == plain.manifest["arena_bytes"]
    if case == "zoo":
        assert len(pairs) == 3
        assert {l["name"]: l["format"] for l in fused.manifest["layers"]}["c3"] == "dense"
    xs = bm.random_inputs(shape, 6, seed=1)
    a, b = _outputs(tmp_path / "f", xs), _outputs(tmp_path / "u", xs)
    assert np.array_equal(a, b), np.max(np.abs(a - b))  # the same kernels on the same data, per channel
    with torch.no_grad():
        ref = np.stack([m(torch.from_numpy(x)[None]).numpy().ravel() for x in xs])
    np.testing.assert_allclose(a.reshape(ref.shape), ref, rtol=1e-4, atol=1e-5)
    rep = verify(tmp_path / "f", random=20)
    assert rep.ok, rep.text()


def test_branch_is_not_fused(tmp_path):
    torch.manual_seed(0)
    p = bm.export(Branch().eval(), (2, 6, 6), tmp_path / "b.pt2")
    g, _ = frontend.load(p)
    assert fuse.find_conv_pool(g) == {}
    r = build(p, "host", tmp_path / "o", name="net", fuse_pool=True)
    assert r.manifest["plan"]["fused_conv_pool"] == []


@pytest.mark.parametrize("case", ["zoo", "pools", "batchnorm", "activations"])
def test_fused_plan_keeps_the_fused_step_apart(case, tmp_path):
    """Checked independently of plan.check: while a fused pair runs, the conv's inputs, its plane, the pool's
    output and every buffer live across the pair occupy disjoint bytes of the arena."""
    _, _, p = _model(tmp_path, case)
    g, _ = frontend.load(p)
    pairs = fuse.find_conv_pool(g)
    assert pairs
    pg = fuse.planning_graph(g, pairs)
    plan = planner.make_plan(pg)
    bm.check_fused_steps(g, pairs, plan)


def test_cli_flag_and_target_default(tmp_path):
    _, _, p = _model(tmp_path, "zoo")
    r = CliRunner().invoke(main, ["build", str(p), "--target", "host", "--out", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "h" / "manifest.json").read_text())["plan"]["fused_conv_pool"] == []
    r = CliRunner().invoke(main, ["build", str(p), "--target", "host", "--fuse-pool", "--out", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert len(man["plan"]["fused_conv_pool"]) == 3
    assert "3 conv+pool fused" in r.output and f"{man['plan']['arena_bytes_unfused']:,} unfused" in r.output
    src = (tmp_path / "f" / "zoo.c").read_text()
    assert src.count("for (uint32_t c = 0u;") == 3 and "fused: runs inside the channel loop of c1" in src
    for t in ("cortex-m4", "cortex-m7", "cortex-m55"):
        assert targets.get(t).extra.get("fuse_conv_pool") is True
        man = build(p, t, tmp_path / t, name="net").manifest if not targets.get(t).missing_tools() else None
        if man is not None:
            assert len(man["plan"]["fused_conv_pool"]) == 3
    if not targets.get("cortex-m4").missing_tools():
        r = CliRunner().invoke(main, ["build", str(p), "--target", "cortex-m4", "--no-fuse-pool", "--out",
                                      str(tmp_path / "m4u")])
        assert r.exit_code == 0, r.output
        assert json.loads((tmp_path / "m4u" / "manifest.json").read_text())["plan"]["fused_conv_pool"] == []


def test_ram_check_sees_the_fused_arena(tmp_path, monkeypatch):
    _, _, p = _model(tmp_path, "zoo")
    fused = build(p, "host", tmp_path / "f", name="net", fuse_pool=True).manifest["arena_bytes"]
    plain = build(p, "host", tmp_path / "u", name="net", fuse_pool=False).manifest["arena_bytes"]
    assert fused < plain
    small = dataclasses.replace(targets.get("host"), ram_bytes=(fused + plain) // 2)
    import prunec.build as B

    monkeypatch.setattr(B.targets_mod, "get", lambda name: small)
    assert build(p, "host", tmp_path / "ok", name="net", fuse_pool=True).manifest["arena_bytes"] == fused
    with pytest.raises(PrunecError, match="does not fit"):
        build(p, "host", tmp_path / "no", name="net", fuse_pool=False)
    assert not (tmp_path / "no").exists()


def test_fused_build_verifies_on_cortex_m4(tmp_path):
    t = targets.get("cortex-m4")
    if t.missing_tools():
        pytest.skip(", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in t.missing_tools()))
    _, _, p = _model(tmp_path, "zoo")
    r = build(p, "cortex-m4", tmp_path / "m4", name="net")
    assert len(r.manifest["plan"]["fused_conv_pool"]) == 3
    assert r.manifest["size"]["library"]["ram"] == r.manifest["arena_bytes"]  # no RAM beyond the arena
    rep = verify(tmp_path / "m4", random=20)
    assert rep.ok, rep.text()


def test_bench_table_names_the_fused_pools(tmp_path):
    from prunec.bench import bench, table

    _, _, p = _model(tmp_path, "zoo")
    build(p, "host", tmp_path / "f", name="net", fuse_pool=True)
    res = bench(tmp_path / "f", reps=1, target_s=0.002)
    rows = {line.split()[1]: line for line in table(res).splitlines() if line[:2].strip().isdigit()}
    assert sum("in c1" in r or "in c2" in r or "in c3" in r for r in rows.values()) == 3, table(res)
    assert len(res.layer_medians()) == len(res.manifest["layers"])


def test_target_setting_must_be_a_bool_or_one_call(tmp_path, monkeypatch):
    _, _, p = _model(tmp_path, "zoo")
    t = targets.get("host")
    bad = dataclasses.replace(t, extra={**t.extra, "fuse_conv_pool": "false"})
    import prunec.build as B

    monkeypatch.setattr(B.targets_mod, "get", lambda name: bad)
    with pytest.raises(PrunecError, match='fuse_conv_pool must be true, false or "one-call"'):
        build(p, "host", tmp_path / "o", name="net")
    assert not (tmp_path / "o").exists()
    assert build(p, "host", tmp_path / "o2", name="net", fuse_pool=False).manifest["plan"]["fused_conv_pool"] == []


def test_ram_refusal_suggests_fusion_with_its_arena(tmp_path, monkeypatch):
    _, _, p = _model(tmp_path, "zoo")
    fused = build(p, "host", tmp_path / "f", name="net", fuse_pool=True).manifest["arena_bytes"]
    plain = build(p, "host", tmp_path / "u", name="net", fuse_pool=False).manifest["arena_bytes"]
    small = dataclasses.replace(targets.get("host"), ram_bytes=(fused + plain) // 2)
    import prunec.build as B

    monkeypatch.setattr(B.targets_mod, "get", lambda name: small)
    with pytest.raises(PrunecError) as e:
        build(p, "host", tmp_path / "no", name="net", fuse_pool=False)
    msg = str(e.value)
    assert f"--fuse-pool (3 convolution(s) feed a pool: the arena would be {fused:,} bytes, which fits)" in msg, msg
    assert "caller's input and output buffers" in msg
    short = dataclasses.replace(small, ram_bytes=fused - 16)
    monkeypatch.setattr(B.targets_mod, "get", lambda name: short)
    with pytest.raises(PrunecError, match=f"--fuse-pool would not be enough .* would still be {fused:,} bytes"):
        build(p, "host", tmp_path / "no", name="net", fuse_pool=False)
    tiny = dataclasses.replace(small, ram_bytes=16)
    monkeypatch.setattr(B.targets_mod, "get", lambda name: tiny)
    with pytest.raises(PrunecError, match="Prune harder .* or pick a target with more RAM") as e:
        build(p, "host", tmp_path / "no", name="net", fuse_pool=True)
    assert "--fuse-pool" not in str(e.value)
