"""One-line errors: a library's error text is cut to its gist (errors.brief), and torch's own log lines do not
precede prunec's message (a damaged .pt2 made torch.export.load log a traceback first)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prunec.errors import brief

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, want", [
    ("PytorchStreamReader failed reading zip archive: failed finding central directory. This is an internal miniz "
     "error. If you are seeing this error, there is a high likelihood that your checkpoint file is corrupted.",
     "PytorchStreamReader failed reading zip archive: failed finding central directory"),
    ("\n\n  first line\nsecond line", "first line"),
    ("ends with a dot.", "ends with a dot"),
    ("word " * 100, ("word " * 40).strip() + " …"),
])
def test_brief_cuts_at_sentences_and_words(text, want):
    got = brief(text)
    assert got == want
    assert len(got) <= 202


def test_brief_of_an_empty_exception_names_its_type():
    assert brief(ValueError()) == "ValueError"


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "toolchain"), PRUNEC_THREADS="1")
    return subprocess.run([sys.executable, "-m", "prunec", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_damaged_pt2_gives_one_line_and_no_output(tmp_path):
    bad = tmp_path / "notamodel.pt2"
    bad.write_text("hello\n")
    r = _cli("build", bad, "--target", "host", "--out", tmp_path / "b", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("prunec: error:"), r.stderr  # no torch traceback before it
    assert "not a readable torch.export program" in lines[0] and "prunec export" in lines[0]
    assert not (tmp_path / "b").exists()


def test_truncated_checkpoint_message_is_whole_sentences(tmp_path):
    import torch

    good = tmp_path / "t.pt"
    torch.save({"format": "prunec-checkpoint", "state_dict": {"w": torch.zeros(4096)}}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:1000])
    r = _cli("info", cut, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    msg = r.stderr.strip()
    assert msg.startswith("prunec: error:") and msg.count("\n") == 0, msg
    assert "corrupt, truncated" in msg and msg.endswith("Re-create it with `prunec train` / `prunec prune`.")
    assert "file is." not in msg and "is. Re-create" not in msg  # the old message lost a word to a 200-char cut
