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
