"""Objects of a build's runtime sources, compiled once per process for `prunec verify` and `prunec bench` on this host.

Every build of a target carries the same kernel sources (runtime/src/...), and the biggest of them take seconds to
compile (the AVX-512 conv kernel: ~6 s at -O3); verifying or timing several builds in one process (a test session,
a benchmark script) compiled them again for each. `compile_objects` compiles each source with `cc -c` and the
build's own flags (what its Makefile does) and reuses the object for any later source whose *preprocessed* text
(`cc -E -P`: the source and every header it includes, macros expanded), compiler and flags are the same: the key is
what the compiler sees, so a header changed in one build's copy, another prunec_config.h or other flags give another
object, never a stale one. Objects live in a temporary folder removed at exit, unless the environment variable
PRUNEC_OBJECT_CACHE names a folder: objects are then kept there and shared by every process that names it (a test
session's workers, benchmark scripts that run `prunec verify` for each build). There the key also holds the
compiler's own identity (`cc --version` and the executable's size and time), so an upgraded compiler compiles anew,
and each object is written under a temporary name and renamed into place, so two processes never see half of one.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import PrunecError

_DIR: Path | None = None
_OBJECTS: dict[str, Path] = {}


def _dir() -> Path:
    global _DIR
    if _DIR is None:
        _DIR = Path(tempfile.mkdtemp(prefix="prunec-objects-"))
        atexit.register(shutil.rmtree, _DIR, True)
    return _DIR


def _shared_dir() -> Path | None:
    """The folder PRUNEC_OBJECT_CACHE names (created if missing), or None where it is unset or empty; PrunecError
    naming the variable where it is not a usable folder."""
    v = os.environ.get("PRUNEC_OBJECT_CACHE", "").strip()
    if not v:
        return None
    d = Path(v).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrunecError(f"PRUNEC_OBJECT_CACHE={v!r}: cannot use it as the object cache folder ({e.strerror or e}); "
                          f"name a writable folder, or unset it to compile into a temporary one") from None
    if not d.is_dir() or not os.access(d, os.W_OK | os.X_OK):
        raise PrunecError(f"PRUNEC_OBJECT_CACHE={v!r} is not a writable folder; name a writable folder, or unset it "
                          f"to compile into a temporary one")
    return d


_CC_IDS: dict[str, bytes] = {}


def _cc_identity(ccv: list[str]) -> bytes:
    """What tells one compiler from another behind the same command: its --version text and the executable's
    resolved path, size and modification time (a compiler upgraded in place gives another key)."""
    k = "\0".join(ccv)
    if k not in _CC_IDS:
        exe = shutil.which(ccv[0]) or ccv[0]
        try:
            real = os.path.realpath(exe)
            st = os.stat(real)
            ident = f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()
        except OSError:
            ident = exe.encode()
        r = subprocess.run([*ccv, "--version"], capture_output=True)
        _CC_IDS[k] = ident + b"\0" + r.stdout
    return _CC_IDS[k]


def runtime_sources(build_dir: Path, sources) -> list[Path]:
    """The runtime's kernel C sources among `sources` (runtime/src/... of the build in `build_dir`): the ones
    compile_objects caches, the same in every build of a target; the build's own code compiles each time."""
    root = Path(build_dir).resolve()
    out = []
    for src in map(Path, sources):
        try:
            rel = src.resolve().relative_to(root)
        except ValueError:
            continue
        if rel.parts[:2] == ("runtime", "src") and src.suffix == ".c":
            out.append(src)
    return out


def host_cc() -> str:
    """The host C compiler of `prunec verify` and `prunec bench` (cffi): $CC (flags allowed), else cc; PrunecError
    naming the variable and the fix where its program is not installed."""
    import os

    cc = os.environ.get("CC", "").strip() or "cc"
    try:
        exe = shlex.split(cc)[0]
    except (ValueError, IndexError):
        exe = ""
    if not exe or shutil.which(exe) is None:
        where = f"CC={cc!r}" if os.environ.get("CC", "").strip() else "cc"
        raise PrunecError(f"the host C compiler ({where}) is not installed or not on PATH; install one (apt-get install "
                          f"gcc, or `make setup`) or set CC to a compiler's path")
    return cc


def compile_objects(cc: str, cflags: list[str], sources: list[Path], include_dirs: list[Path], cwd: Path) -> list[str]:
    """Each of `sources` compiled to a position-independent object (`cc cflags -fPIC -I... -c`), from this process's
    cache (or PRUNEC_OBJECT_CACHE's folder) where the preprocessed source, compiler and flags are the same; the
    objects' paths, in order."""
    flags = [*cflags, "-fPIC", *(f"-I{d}" for d in include_dirs)]
    ccv = shlex.split(cc)  # a CC with flags (CC="gcc -m64"), as make and distutils take it
    shared = _shared_dir()
    out = []
    for src in sources:
        pre = subprocess.run([*ccv, *flags, "-E", "-P", str(src)], capture_output=True, cwd=cwd)
        if pre.returncode != 0:
            raise PrunecError(f"compiling {src} failed (preprocessing):\n{pre.stderr.decode(errors='replace')[-3000:]}")
        h = hashlib.sha256()
        for part in (cc, "\0".join(cflags), src.name):  # the name: objects keep their source's name in the link
            h.update(part.encode() + b"\0")
        if shared is not None:
            h.update(_cc_identity(ccv) + b"\0")
        h.update(pre.stdout)
        key = h.hexdigest()[:24]
        obj = _OBJECTS.get(key)
        if obj is None or not obj.is_file():
            obj = (shared or _dir()) / f"{key}-{src.stem}.o"
            if not (shared is not None and obj.is_file()):
                # written under a name of this process's own, then renamed: another process sharing the folder
                # sees the whole object or none
                tmp = obj.with_name(f".{obj.name}.{os.getpid()}.tmp")
                r = subprocess.run([*ccv, *flags, "-c", str(src), "-o", str(tmp)], capture_output=True, text=True,
                                   cwd=cwd)
                if r.returncode != 0:
                    tmp.unlink(missing_ok=True)
                    raise PrunecError(f"compiling {src} failed:\n$ {cc} {' '.join(flags)} -c {src}\n{r.stderr[-3000:]}")
                os.replace(tmp, obj)
            _OBJECTS[key] = obj
        out.append(str(obj))
    return out
