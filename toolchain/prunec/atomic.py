"""Write files and directories so that a failure never leaves half-written output behind."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import PrunecError


def _check_parent(path: Path) -> Path:
    parent = path.resolve().parent
    if not parent.is_dir():
        raise PrunecError(f"cannot write {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise PrunecError(f"cannot write {path}: directory {parent} is not writable; choose another --out")
    return parent


def _umask() -> int:
    """The process umask, read without changing it where the OS tells it (Linux: /proc/self/status), so that
    another thread creating a file meanwhile is not affected; else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush `path` to disk (best effort for a directory: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds.

    As open(path, "w") would: a symlink is followed (the file it points to is replaced, the link kept), an
    existing file keeps its permissions, a read-only file or a directory is refused. The data is flushed to
    disk before the rename, so a crash leaves the old file or the new one, never an empty or partial one.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.is_dir():
        raise PrunecError(f"cannot write {path}: it is a directory; give a file name")
    if path.exists() and not path.is_file():  # a device, a FIFO, a socket: replacing it would remove the node
        raise PrunecError(f"cannot write {path}: it is not a regular file (a device, pipe or socket); give a file name")
    mode = None
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if not os.access(path, os.W_OK) or not mode & 0o222:  # root passes os.access; the mode still says read-only
            raise PrunecError(f"cannot write {path}: the file is read-only; make it writable (chmod u+w {path}) or "
                              f"choose another file name")
    parent = _check_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes 0600; give the file the mode open() would: the old file's, else 0666 less the umask
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(parent, directory=True)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; on success it replaces `path` (old one removed).

    A symlink is followed: the directory it points to is replaced and the link kept."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    parent = _check_parent(path)
    if path.exists() and not path.is_dir():
        raise PrunecError(f"cannot write build directory {path}: a file of that name exists; remove it or choose another --out")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
