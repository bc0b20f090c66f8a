"""The object cache of `prunec verify` / `prunec bench` (prunec.objcache): a kernel source is compiled once
for the same preprocessed text, compiler and flags, and again when any of them changes (a header of one build's copy,
another configuration header, other flags); a source that does not compile is an error naming it. With
PRUNEC_OBJECT_CACHE the objects are kept in a folder that other processes reuse."""
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


def _fresh_process_cache(monkeypatch):
    """As a new process sees it: nothing compiled yet."""
    monkeypatch.setattr(objcache, "_OBJECTS", {})
    monkeypatch.setattr(objcache, "_CC_IDS", {})


def test_a_shared_folder_keeps_objects_for_another_process(tmp_path, monkeypatch):
    shared = tmp_path / "objs"
    monkeypatch.setenv("PRUNEC_OBJECT_CACHE", str(shared))
    _fresh_process_cache(monkeypatch)
    a, ia = _tree(tmp_path / "a", 3)
    [oa] = objcache.compile_objects("cc", ["-O2"], [a], [ia], tmp_path)
    assert Path(oa).parent == shared and Path(oa).is_file()
    assert not list(shared.glob(".*.tmp"))  # written under a temporary name, renamed into place
    stamp = Path(oa).stat().st_mtime_ns
    _fresh_process_cache(monkeypatch)  # "another process": reuses the file, compiles nothing
    calls = []
    real_run = objcache.subprocess.run

    def run(cmd, *a_, **k):
        calls.append(cmd)
        return real_run(cmd, *a_, **k)

    monkeypatch.setattr(objcache.subprocess, "run", run)
    b, ib = _tree(tmp_path / "b", 3)
    [ob] = objcache.compile_objects("cc", ["-O2"], [b], [ib], tmp_path)
    assert ob == oa and Path(ob).stat().st_mtime_ns == stamp
    assert not [c for c in calls if "-c" in c]  # preprocessing and --version only
    # another header value, another object beside it
    c, ic = _tree(tmp_path / "c", 5)
    [oc] = objcache.compile_objects("cc", ["-O2"], [c], [ic], tmp_path)
    assert oc != oa and len(list(shared.glob("*.o"))) == 2


def test_a_shared_folder_keys_on_the_compiler_itself(tmp_path, monkeypatch):
    """The same command naming an upgraded compiler (another --version) does not reuse the old object."""
    monkeypatch.setenv("PRUNEC_OBJECT_CACHE", str(tmp_path / "objs"))
    _fresh_process_cache(monkeypatch)
    a, ia = _tree(tmp_path / "a", 3)
    [o1] = objcache.compile_objects("cc", ["-O2"], [a], [ia], tmp_path)
    _fresh_process_cache(monkeypatch)
    monkeypatch.setattr(objcache, "_cc_identity", lambda ccv: b"cc (upgraded) 99.1")
    [o2] = objcache.compile_objects("cc", ["-O2"], [a], [ia], tmp_path)
    assert o1 != o2 and Path(o2).is_file()


def test_a_shared_folder_that_cannot_be_one_is_named(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("PRUNEC_OBJECT_CACHE", str(f))
    _fresh_process_cache(monkeypatch)
    a, ia = _tree(tmp_path / "a", 3)
    with pytest.raises(PrunecError, match="PRUNEC_OBJECT_CACHE=.*file.*writable folder"):
        objcache.compile_objects("cc", ["-O2"], [a], [ia], tmp_path)


def test_a_failed_compile_leaves_nothing_in_the_shared_folder(tmp_path, monkeypatch):
    shared = tmp_path / "objs"
    monkeypatch.setenv("PRUNEC_OBJECT_CACHE", str(shared))
    _fresh_process_cache(monkeypatch)
    bad = tmp_path / "broken.c"
    bad.write_text("int f(void) { return }\n")
    with pytest.raises(PrunecError, match="broken.c failed"):
        objcache.compile_objects("cc", ["-O2"], [bad], [], tmp_path)
    assert list(shared.iterdir()) == []
