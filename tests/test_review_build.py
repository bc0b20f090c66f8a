"""Regression tests from a review of the build half: verify's comparison and input checks, the default C
name, and an --out that would swallow the model."""
from __future__ import annotations

import numpy as np
import pytest
from torch import nn

import build_models as bm
from prunec import build as B
from prunec import codegen
from prunec import verify as V
from prunec.errors import PrunecError


def test_equal_infinities_do_not_hide_another_elements_error():
    # inf - inf is NaN; it used to make the sample's max error NaN, which compares False against the bound,
    # so a wrong element beside an infinite output passed.
    t = np.array([[np.inf, 0.0, 1.0], [1.0, 2.0, 3.0]])
    c = np.array([[np.inf, 5.0, 1.0], [1.0, 2.0, 3.0]])
    r = V.compare(c, t)
    assert not r.ok and r.failing_samples == [0] and r.max_abs_err == 5.0
    assert V.compare(t.copy(), t).ok  # equal infinities are equal
    c = t.copy()
    c[0, 0] = -np.inf
    assert not V.compare(c, t).ok


MANIFEST = {"input_shape": [1, 3], "input_size": 3}


@pytest.mark.parametrize("kw, msg", [({"random": 0}, "--random 0"), ({"random": -1}, "--random -1"),
                                     ({"limit": 0}, "--limit 0"), ({"random": 5, "limit": -1}, "--limit -1")])
def test_verify_refuses_empty_or_negative_input_counts(kw, msg):
    args = dict(data=None, inputs_path=None, random=None, data_dir=None, limit=None, seed=0)
    args.update(kw)
    with pytest.raises(PrunecError, match=msg):
        V._inputs(MANIFEST, **args)


def test_verify_refuses_npz_and_non_numeric_inputs(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    np.save(tmp_path / "s.npy", np.array(["a", "b", "c"]))
    for f, msg in (("x.npz", "npz archive"), ("s.npy", "dtype")):
        with pytest.raises(PrunecError, match=msg):
            V._inputs(MANIFEST, None, str(tmp_path / f), None, None, None, 0)


@pytest.mark.parametrize("stem, want", [("lenet-5", "lenet_5"), ("prunec_lenet", "model"), ("x" * 60, "model"),
                                        ("int", "model"), ("9net", "model")])
def test_default_name_is_always_a_name_build_accepts(stem, want):
    assert B.default_name(f"/some/dir/{stem}.pt2") == want
    assert codegen.validate_name(B.default_name(f"{stem}.pt2"))


def test_build_named_after_a_reserved_stem_succeeds(tmp_path):
    p = bm.export(nn.Sequential(nn.Linear(3, 2)), (3,), tmp_path / "prunec_tiny.pt2")
    r = B.build(p, "host", tmp_path / "out")
    assert r.manifest["name"] == "model" and (tmp_path / "out" / "model.c").is_file()


def test_out_dir_holding_the_model_is_refused_and_left_alone(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    p = bm.export(nn.Sequential(nn.Linear(3, 2)), (3,), d / "tiny.pt2")
    (d / "notes.txt").write_text("keep")
    for out in (d, tmp_path):
        with pytest.raises(PrunecError, match="holds the model.*choose another --out"):
            B.build(p, "host", out)
    assert p.is_file() and (d / "notes.txt").read_text() == "keep"


def test_a_build_whose_kernels_this_cpu_lacks_is_refused_not_run(tmp_path, monkeypatch):
    """An x86_64-avx2 build made where AVX-512 exists picks AVX-512 kernels; verify/bench on a CPU without
    them must say so instead of dying of an illegal instruction."""
    import json

    from prunec import verify as V

    man = {"name": "m", "kernels": ["prunec_f32_fc_rcsr__avx512x4", "prunec_f32_maxpool2d__portable"]}
    monkeypatch.setattr(V, "cpu_flags", lambda: {"sse2", "avx2", "fma"})
    with pytest.raises(PrunecError, match="avx512x4 kernels need avx512bw, avx512dq, avx512f, avx512vl"):
        V.check_host_isa(tmp_path, man)
    monkeypatch.setattr(V, "cpu_flags", lambda: {"avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"})
    V.check_host_isa(tmp_path, man)  # fine where they exist
    monkeypatch.setattr(V, "cpu_flags", lambda: None)
    V.check_host_isa(tmp_path, man)  # unknown CPU: not checked
    man["kernels"] = ["prunec_f32_fc_rcsr__portable"]
    monkeypatch.setattr(V, "cpu_flags", lambda: set())
    V.check_host_isa(tmp_path, man)  # portable needs nothing
