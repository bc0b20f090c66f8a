"""Target files of the user's own ($PRUNEC_TARGETS), and what a target file may not get wrong silently: an
unknown key (a misspelt flash_bytes dropped the board's limit) or an [isa_by_op] op that has no kernels; a
broken file does not stand in the way of another target."""
import json
import re

import pytest
from click.testing import CliRunner

import build_models as bm
from prunec import targets
from prunec.cli import main
from prunec.errors import PrunecError
from prunec.resources import targets_dir


def _host_copy(folder, name="my-host", extra=""):
    """host.toml renamed; `extra` goes at the end if it is a table, else among the top-level keys (after name)."""
    line = f'name = "{name}"' + ("" if extra.startswith("[") or not extra else "\n" + extra)
    text = re.sub(r'^name = ".*"$', line, (targets_dir() / "host.toml").read_text(), count=1, flags=re.M)
    f = folder / f"{name}.toml"
    f.write_text(text + ("\n" + extra + "\n" if extra.startswith("[") else ""))
    return f


def test_a_target_file_of_ones_own_builds_and_verifies(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    _host_copy(mine)
    monkeypatch.setenv(targets.TARGETS_ENV, str(mine))
    r = CliRunner().invoke(main, ["targets"])
    assert r.exit_code == 0 and "my-host" in r.output, r.output
    m, shape = bm.make("mlp", seed=1)
    pt2 = bm.export(m, shape, tmp_path / "mlp.pt2")
    r = CliRunner().invoke(main, ["build", str(pt2), "--target", "my-host", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["target"] == "my-host"
    r = CliRunner().invoke(main, ["verify", str(tmp_path / "b"), "--random", "3"])
    assert r.exit_code == 0 and "target my-host" in r.output, r.output


def test_unknown_target_says_where_ones_own_files_go(monkeypatch):
    monkeypatch.delenv(targets.TARGETS_ENV, raising=False)
    with pytest.raises(PrunecError, match="PRUNEC_TARGETS"):
        targets.get("cortex-m85")


def test_prunec_targets_must_name_folders(tmp_path, monkeypatch):
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(PrunecError, match="not a folder"):
        targets.get("host")


def test_a_broken_file_does_not_stand_in_the_way_of_another_target(tmp_path, monkeypatch):
    (tmp_path / "zz-bad.toml").write_text("name = \"bad\"\ncc = [\n")
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path))
    assert targets.get("host").name == "host"
    with pytest.raises(PrunecError, match="zz-bad.toml"):  # the one asked for may be the broken one: it is named
        targets.get("bad")
    with pytest.raises(PrunecError, match="zz-bad.toml"):  # the listing is strict
        targets.all_targets()


@pytest.mark.parametrize("extra, says", [
    ("flash_size = 65536", r"unknown key 'flash_size'"),
    ("ram_size = 1024", r"unknown key 'ram_size'"),
    ("fuse_pool = true", r"unknown key 'fuse_pool'; did you mean 'fuse_conv_pool'"),
    ("colour = 'blue'", r"unknown key 'colour'; the keys are"),
    ('[isa_by_op]\nfully_connected = ["portable"]', r"\[isa_by_op\] names op 'fully_connected', which has no kernels"),
])
def test_target_file_mistakes_are_refused(tmp_path, extra, says):
    f = _host_copy(tmp_path, extra=extra)
    with pytest.raises(PrunecError, match=says):
        targets._load(f)
