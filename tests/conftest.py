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
