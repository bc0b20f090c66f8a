"""Review of `prunec verify` and `prunec bench`: the defects found, each with the check that failed before its fix.

- --json wrote `Infinity` (not JSON) when one side had a NaN/inf the other lacked;
- a --model of other input shapes died with a torch traceback instead of a clear error;
- verify compiled the build with the target's flags as probed now, not the build's own (PRUNEC_AVX512=0 at verify
  time on an AVX-512 build: `undefined symbol ...__avx512x4` ImportError traceback);
- the in-process module cache ignored the runtime headers: a copy of a build with a changed header reused the module
  compiled from the original, and PASSED;
- a runner returning the wrong number of outputs was not caught where it happens (a flat [N*OUT] answer was refused);
- verify / bench checked only the kernels' ISAs against this CPU, not the -mavx512* flags the whole build is compiled
  with (an x86_64-avx2 build made on an AVX-512 machine with AVX2-only kernels).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import build_models as bm
from prunec import build as B
from prunec import verify as V
from prunec.cli import main
from prunec.errors import PrunecError

AVX512 = {"avx512f", "avx512vl", "avx512bw", "avx512dq"}


def _cpu():
    return V.cpu_flags() or set()


def _no_constants(s):
    raise ValueError(f"not JSON: {s}")


def test_json_report_is_valid_json_when_an_output_is_nan(residual, tmp_path):
    p, out = residual
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    c = (bad / "residual.c").read_text()
    i = c.rindex("  return 0;\n}")
    (bad / "residual.c").write_text(c[:i] + "  output[0] = NAN;\n" + c[i:])
    r = CliRunner().invoke(main, ["verify", str(bad), "--random", "3", "--model", str(p), "--json"])
    assert r.exit_code == 1, r.output
    d = json.loads(r.output[r.output.index("{"):], parse_constant=_no_constants)
    assert d["ok"] is False and d["failing_samples"] == [0, 1, 2]
    assert d["max_abs_err"] is None and d["max_rel_err"] is None  # infinite: no JSON number
    t = np.array([[1.0, 2.0, 3.0]])
    rep = V.compare(np.array([[1.0, np.inf, 3.0]]), t).as_dict()
    json.dumps(rep, allow_nan=False)
    assert set(rep) == set(V.compare(t, t).as_dict())  # the same keys, pass or fail


def test_a_model_of_other_input_shapes_is_a_clear_error(residual, tmp_path):
    from prunec import checkpoint, models

    p, out = residual
    other = bm.export(*bm.make("mlp", seed=1), tmp_path / "mlp.pt2")  # a .pt2 traced for (3, 4, 4)
    ck = checkpoint.save(tmp_path / "lenet300.pt", models.create("lenet300"), "lenet300")  # an nn.Module, 28x28
    for m in (other, ck):
        with pytest.raises(PrunecError, match=r"does not run on the build's input of shape \(1, 4, 6, 6\)"):
            V.verify(out, random=2, model=str(m))
        r = CliRunner().invoke(main, ["verify", str(out), "--random", "2", "--model", str(m)])
        assert r.exit_code == 2 and "pass --model" in r.output and "Traceback" not in r.output, r.output


def _avx512_build(tmp_path, monkeypatch, dense=False):
    if not AVX512 | {"avx2", "fma"} <= _cpu():
        pytest.skip("needs a CPU with AVX2, FMA and AVX-512")
    monkeypatch.setenv("PRUNEC_AVX512", "1")
    torch.manual_seed(0)
    if dense:
        m, shape = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4)), (20,)
    else:
        m, shape = bm.make("conv3_pad1", seed=1)
        m = bm.prune_random(m, seed=1, lo=0.1, hi=0.3)
    p = bm.export(m, shape, tmp_path / "m.pt2")
    B.build(p, "x86_64-avx2", tmp_path / "b", name="net")
    monkeypatch.delenv("PRUNEC_AVX512")
    return tmp_path / "b", V.load_manifest(tmp_path / "b")


def test_verify_compiles_with_the_builds_own_flags(tmp_path, monkeypatch):
    d, man = _avx512_build(tmp_path, monkeypatch)
    assert any(k.endswith("__avx512x4") for k in man["kernels"]), man["kernels"]
    monkeypatch.setenv("PRUNEC_AVX512", "0")  # the target as probed now has no AVX-512 flags
    r = V.verify(d, random=5)
    assert r.ok and r.n == 5, r.text()
    assert "-mavx512f" in V.build_cflags(d) and "-fPIC" not in V.build_cflags(d)


def test_the_compile_flags_cpu_features_are_checked_not_only_the_kernels(tmp_path, monkeypatch):
    from prunec import bench

    d, man = _avx512_build(tmp_path, monkeypatch, dense=True)
    assert not any("avx512" in k for k in man["kernels"]), man["kernels"]  # AVX2 kernels only...
    assert "-mavx512f" in (d / "Makefile").read_text()  # ...compiled with -mavx512f: the compiler may use it anywhere
    monkeypatch.setattr(V, "cpu_flags", lambda: {"sse2", "avx", "avx2", "fma"})
    with pytest.raises(PrunecError, match=r"cannot run on this CPU: its compile flags .*-mavx512f.* need avx512bw"):
        V.check_host_isa(d, man)
    with pytest.raises(PrunecError, match="cannot run on this CPU"):
        V.verify(d, random=2)
    with pytest.raises(PrunecError, match="cannot run on this CPU"):
        bench.CompiledBuild(d)
    monkeypatch.setattr(V, "cpu_flags", lambda: {"sse2", "avx", "avx2", "fma"} | AVX512)
    V.check_host_isa(d, man)


def test_a_changed_runtime_header_is_recompiled_not_served_from_the_cache(residual, tmp_path):
    p, out = residual
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(out, a)
    shutil.copytree(out, b)
    assert V.verify(a, random=4, model=str(p)).ok  # compiled and cached in this process
    h = b / "runtime" / "include" / "prunec_kernels.h"
    assert h.is_file() and "INFINITY" in (b / "residual.c").read_text()
    h.write_text(h.read_text() + "\n#undef INFINITY\n#define INFINITY 0.0f\n")  # every clamp now [x, 0]
    r = V.verify(b, random=4, model=str(p))
    assert not r.ok, r.text()


def test_runner_output_count_is_checked(residual, monkeypatch):
    import prunec.runners as runners

    p, out = residual
    m = V.load_manifest(out)
    m["runner"] = "qemu-user"
    x = bm.random_inputs(bm.MODELS["residual"][1], n=3).reshape(3, -1)
    want = V.run_host(out, x)
    monkeypatch.setattr(runners, "run", lambda d, xs, **kw: V.run_host(d, xs)[:-1])  # one sample short
    with pytest.raises(PrunecError, match=r"returned \d+ output values for 3 inputs"):
        V.run_build(out, x, m)
    monkeypatch.setattr(runners, "run", lambda d, xs, **kw: V.run_host(d, xs).ravel())  # flat [N * OUTPUT_SIZE]
    y = V.run_build(out, x, m)
    assert y.shape == want.shape and np.array_equal(y, want)


def test_verify_writes_nothing_into_the_build(residual):
    p, out = residual

    def snap():
        return {str(f.relative_to(out)): (f.stat().st_mtime_ns, f.stat().st_size) for f in out.rglob("*")}

    before = snap()
    r = CliRunner().invoke(main, ["verify", str(out), "--random", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert snap() == before


def test_bench_times_a_fused_build_per_layer(tmp_path):
    """conv+pool fused: the pool's comment follows the channel loop; the conv row holds both, the pool's is ~0."""
    from prunec import bench, models

    torch.manual_seed(0)
    p = bm.export(models.create("lenet5").eval(), models.input_shape("lenet5"), tmp_path / "l5.pt2")
    B.build(p, "host", tmp_path / "b", name="l5", fuse_pool=True)
    res = bench.bench(tmp_path / "b", reps=1, target_s=0.0)
    names = [l["name"] for l in res.manifest["layers"]]
    lt = res.layer_medians()
    assert len(lt) == len(names) and res.manifest["plan"]["fused_conv_pool"]
    for conv, pool in res.manifest["plan"]["fused_conv_pool"]:
        assert lt[names.index(conv)] > 10 * lt[names.index(pool)]
    assert "in conv1" in bench.table(res)


def test_tiny_outputs_are_flagged_and_atol_tightens_the_check(residual, tmp_path):
    """The bound atol x max(1, max|ref|) is absolute below 1: reference outputs of ~1e-6 against all-zero C passed
    silently. The report now warns (with an --atol to use), and --atol makes the same comparison fail."""
    from click.testing import CliRunner

    from prunec.cli import main

    t = np.array([[1e-6, 2e-6, 3e-6]] * 4)
    c = np.zeros_like(t)
    r = V.compare(c, t)
    assert r.ok and r.weak() and "warning: the reference outputs are at most 3.0e-06" in r.text()
    assert "--atol 3e-10" in r.text() and r.as_dict()["ref_max"] == pytest.approx(3e-6)
    assert not V.compare(c, t, atol=1e-10).ok
    assert not V.compare(np.array([[5.0, 1.0]]), np.array([[5.0, 1.0]])).weak()
    p, out = residual
    for bad in ("0", "-1", "nan", "inf"):
        res = CliRunner().invoke(main, ["verify", str(out), "--random", "2", "--atol", bad])
        assert res.exit_code == 2 and "--atol" in res.output, (bad, res.output)
    res = CliRunner().invoke(main, ["verify", str(out), "--random", "5", "--atol", "1e-3"])
    assert res.exit_code == 0 and "tolerance 1e-03" in res.output, res.output
