"""The flash a firmware needs: libNAME.a as a link with --gc-sections from NAME_run keeps it (manifest size "linked",
`prunec size`, the build's board check), not the whole archive, which also counts kernels the model never calls."""
import json
import re
import shutil
import subprocess

import pytest
import torch
from click.testing import CliRunner

import build_models as bm
from prunec import build as B
from prunec import runners, targets
from prunec.cli import main


@pytest.fixture(scope="module")
def m4():
    t = targets.get("cortex-m4")
    bm.skip_if_missing(t)
    return t


def _board(tmp_path, monkeypatch, flash: int) -> str:
    """A copy of the cortex-m4 target named small-m4 with `flash` bytes of flash, found through PRUNEC_TARGETS."""
    mine = tmp_path / "boards"
    mine.mkdir(exist_ok=True)
    text = (targets.targets_dir() / "cortex-m4.toml").read_text()
    text = re.sub(r'^name = ".*"$', 'name = "small-m4"', text, count=1, flags=re.M)
    text = re.sub(r"^flash_bytes = .*$", f"flash_bytes = {flash}", text, count=1, flags=re.M)
    (mine / "small-m4.toml").write_text(text)
    monkeypatch.setenv(targets.TARGETS_ENV, str(mine))
    return "small-m4"


@pytest.fixture(scope="module")
def mlp_m4(tmp_path_factory, m4):
    """(.pt2, its default cortex-m4 build directory, the build's manifest) of a small sparse MLP."""
    d = tmp_path_factory.mktemp("mlp")
    pt2, _, _ = bm.sparse_mlp_case(d, (64, 32, 10), 0.2, seed=3)
    r = B.build(pt2, "cortex-m4", d / "b", name="mlp")
    return pt2, d / "b", r.manifest


def test_linked_size_keeps_only_what_the_model_calls(mlp_m4, m4):
    _, out, manifest = mlp_m4
    size = manifest["size"]
    lib, ln = size["library"], size["linked"]
    # the archive carries the relative-indexed conv kernels of the same source file; an fc-only firmware drops them
    assert ln["text"] < lib["text"] - 4000, size
    assert ln["rodata"] >= manifest["totals"]["weights_bytes"], size  # the weights are all referenced
    assert ln["flash"] == ln["text"] + ln["rodata"] + ln["data"] and ln["flash"] < lib["flash"], size
    assert ln["ram"] == ln["data"] + ln["bss"] + manifest["arena_bytes"]
    # `prunec size` measures the same, prints it and leaves the linked image where its symbols can be read
    res = CliRunner().invoke(main, ["size", str(out)])
    assert res.exit_code == 0, res.output
    assert f"flash {ln['flash']:,}" in res.output and "linked with --gc-sections from mlp_run" in res.output
    assert json.loads((out / "manifest.json").read_text())["size"]["linked"] == ln
    nm = runners.nm_for(m4.extra["size"])
    syms = subprocess.run([nm, str(out / runners.WORK / "cortex-m4" / "linked.elf")], capture_output=True, text=True,
                          check=True).stdout
    assert "prunec_f32_fc_rcsr__cortexm" in syms and "prunec_f32_conv2d" not in syms


def test_the_linked_image_counts_libm(tmp_path, m4):
    """A model that calls expf (a sigmoid): the firmware carries libm's expf, which the archive does not hold."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(16, 8)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))

    pt2 = tmp_path / "sig.pt2"
    bm.export(M().eval(), (16,), pt2)
    r = B.build(pt2, "cortex-m4", tmp_path / "b", name="sig")
    size = r.manifest["size"]
    assert "expf" in size["external_symbols"], size
    res = CliRunner().invoke(main, ["size", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    nm = runners.nm_for(m4.extra["size"])
    syms = subprocess.run([nm, str(tmp_path / "b" / runners.WORK / "cortex-m4" / "linked.elf")], capture_output=True,
                          text=True, check=True).stdout
    assert re.search(r"\bexpf\b", syms), syms


def test_the_board_check_weighs_the_linked_firmware(tmp_path, monkeypatch, mlp_m4):
    """A board with room for the linked firmware but not for the whole archive takes the build; one too small for
    the linked firmware refuses it, names the measure, and nothing is written."""
    pt2, _, manifest = mlp_m4
    size = manifest["size"]
    lib, ln = size["library"]["flash"], size["linked"]["flash"]
    assert ln < lib
    name = _board(tmp_path, monkeypatch, (ln + lib) // 2)
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", name, "--out", str(tmp_path / "fits")])
    assert r.exit_code == 0, r.output
    shutil.rmtree(tmp_path / "boards")
    name = _board(tmp_path, monkeypatch, ln - 1)
    out = tmp_path / "too-big"
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", name, "--out", str(out)])
    assert r.exit_code != 0 and "does not fit target 'small-m4'" in r.output, r.output
    assert f"linked with --gc-sections from mlp_run needs {ln:,} bytes of flash" in r.output, r.output
    assert not out.exists()


def test_no_linked_figure_off_bare_metal(tmp_path):
    t = targets.get("aarch64-neon")
    assert runners.measure_linked(t, tmp_path / "libx.a", "x", tmp_path / "x.elf") is None
