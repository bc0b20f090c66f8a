"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    """A small residual model (conv, in-place relu, add, linear) exported and built for the host:
    (model .pt2, build directory)."""
    import build_models as bm
    from prunec import build as B

    d = tmp_path_factory.mktemp("residual")
    m, shape = bm.make("residual", seed=5)
    p = bm.export(m, shape, d / "residual.pt2")
    B.build(p, "host", d / "out", name="residual")
    return p, d / "out"


def train_synthetic(folder, env: dict, model: str = "lenet300", epochs: int = 1):
    """A dense checkpoint of `model` trained on the synthetic data set through the CLI (`env`: PRUNEC_* variables
    such as the synthetic set's size), for tests of `prunec prune` and friends: its path."""
    from click.testing import CliRunner

    from prunec.cli import main

    out = folder / f"{model}_base.pt"
    r = CliRunner().invoke(main, ["train", "--model", model, "--data", "synthetic", "--out", str(out),
                                  "--epochs", str(epochs), "--quiet"], env=env)
    assert r.exit_code == 0, r.output
    return out


def pytest_configure(config):
    """One object cache for the whole run (prunec.objcache, PRUNEC_OBJECT_CACHE): the runtime's kernels compiled by
    one `prunec verify` or `prunec bench`, in any worker or subprocess, are reused by the others instead of being
    compiled again for each build (the AVX-512 conv kernel alone takes ~4 s). Set here, in the controller, before
    pytest-xdist starts its workers, which inherit it; removed when the run ends. A folder the caller set is kept."""
    import os
    import shutil
    import tempfile

    if hasattr(config, "workerinput") or os.environ.get("PRUNEC_OBJECT_CACHE", "").strip():
        return
    d = tempfile.mkdtemp(prefix="prunec-test-objects-")
    os.environ["PRUNEC_OBJECT_CACHE"] = d
    config.add_cleanup(lambda: (shutil.rmtree(d, ignore_errors=True), os.environ.pop("PRUNEC_OBJECT_CACHE", None)))
