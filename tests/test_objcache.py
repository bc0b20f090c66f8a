"""The per-process object cache of `prunec verify` / `prunec bench` (prunec.objcache): a kernel source is compiled once
for the same preprocessed text, compiler and flags, and again when any of them changes (a header of one build's copy,
another configuration header, other flags); a source that does not compile is an error naming it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prunec import objcache
from prunec.errors import PrunecError

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (Debian package gcc)")


def _tree(root: Path, value: int) -> tuple[Path, Path]:
    (root / "inc").mkdir(parents=True)
    (root / "inc" / "k.h").write_text(f"#define K {value}\n")
    src = root / "kernel.c"
    src.write_text('#include "k.h"\nint kernel(int x) { return x * K; }\n')
    return src, root / "inc"


def test_same_source_in_another_folder_reuses_the_object(tmp_path):
    a, ia = _tree(tmp_path / "a", 3)
    b, ib = _tree(tmp_path / "b", 3)
    [oa] = objcache.compile_objects("cc", ["-O2"], [a], [ia], tmp_path)
    [ob] = objcache.compile_objects("cc", ["-O2"], [b], [ib], tmp_path)
    assert oa == ob and Path(oa).is_file()


def test_a_changed_header_or_flag_gives_another_object(tmp_path):
    a, ia = _tree(tmp_path / "a", 3)
    c, ic = _tree(tmp_path / "c", 5)  # the same source, another value in its header
    [oa] = objcache.compile_objects("cc", ["-O2"], [a], [ia], tmp_path)
    [oc] = objcache.compile_objects("cc", ["-O2"], [c], [ic], tmp_path)
    [o1] = objcache.compile_objects("cc", ["-O1"], [a], [ia], tmp_path)
    assert len({oa, oc, o1}) == 3
    assert Path(oa).read_bytes() != Path(oc).read_bytes()  # 3 and 5 compiled in


def test_a_source_that_does_not_compile_is_named(tmp_path):
    bad = tmp_path / "broken.c"
    bad.write_text("int f(void) { return }\n")
    with pytest.raises(PrunecError, match="compiling .*broken.c failed"):
        objcache.compile_objects("cc", ["-O2"], [bad], [], tmp_path)
    missing = tmp_path / "nohdr.c"
    missing.write_text('#include "absent.h"\n')
    with pytest.raises(PrunecError, match="nohdr.c failed \\(preprocessing\\)"):
        objcache.compile_objects("cc", ["-O2"], [missing], [], tmp_path)
