"""Targets: one TOML file each in targets/ (adding a target is adding a file).

A target names its compiler and flags, the kernel ISAs it may use (in preference order, 'portable' last),
how a build is run for verification, and the board's flash and RAM (0: not checked).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .errors import PrunecError
from .resources import targets_dir


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    isa: tuple[str, ...]
    cc: str
    ar: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    libs: tuple[str, ...] = ()
    runner: str = "cffi"
    shared_library: bool = False
    flash_bytes: int = 0
    ram_bytes: int = 0
    packages: dict = field(default_factory=dict)  # tool -> Debian package
    extra: dict = field(default_factory=dict)  # every other key of the file, for runners and codegen

    def isa_for(self, op: str) -> tuple[str, ...]:
        """Kernel ISA preference for one op: the file's `[isa_by_op]` entry where it has one (the best kernel
        differs by op), restricted to the ISAs this build machine kept (probes), else `isa`."""
        order = (self.extra.get("isa_by_op") or {}).get(op)
        if not order:
            return self.isa
        return tuple(i for i in order if i in self.isa or i == "portable")

    def index_bits_for(self, op: str) -> tuple[int, ...]:
        """Index widths (relative-indexed CSR) a layer of `op` may be stored with on this target: the file's
        `[index_bits_by_op]` entry where it has one, else prunec.encode's default for the op."""
        from .encode import index_bits_for

        return index_bits_for(op, self.extra.get("index_bits_by_op"))

    def row_align_for(self, op: str) -> int:
        """Entries per row a relative-indexed layer of `op` is padded to a multiple of on this target: the file's
        `[row_align_by_op]` entry where it has one (kernels that take entries in groups), else 1."""
        from .encode import row_align_for

        return row_align_for(op, self.extra.get("row_align_by_op"))

    def tools(self) -> dict[str, str]:
        """Executables this target needs, by role (cc, ar, and the runner's emulator if any)."""
        t = {"cc": self.cc, "ar": self.ar}
        if self.extra.get("emulator"):
            t["emulator"] = self.extra["emulator"]
        if self.extra.get("size"):
            t["size"] = self.extra["size"]
        return t

    def missing_tools(self) -> list[tuple[str, str]]:
        """(executable, Debian package) for each tool not found on PATH."""
        return [(exe, self.packages.get(role, "?")) for role, exe in self.tools().items() if shutil.which(exe) is None]

    def require_tools(self, roles: tuple[str, ...] | None = None) -> None:
        missing = [(exe, pkg) for role, exe in self.tools().items()
                   if (roles is None or role in roles) and shutil.which(exe) is None
                   for pkg in [self.packages.get(role, "?")]]
        if missing:
            what = ", ".join(f"{exe} (Debian package {pkg})" for exe, pkg in missing)
            pkgs = " ".join(sorted({pkg for _, pkg in missing}))
            raise PrunecError(f"target {self.name!r} needs {what}, not installed: run `apt-get install {pkgs}` (or `make setup`)")


_KNOWN = {"name", "description", "isa", "cc", "ar", "cflags", "ldflags", "libs", "runner", "shared_library",
          "flash_bytes", "ram_bytes", "packages"}


def _load(path: Path) -> Target:
    try:
        d = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PrunecError(f"target file {path} is unreadable: {e}") from e
    def strings(key: str, default=()) -> tuple[str, ...]:
        v = d.get(key, default)
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise PrunecError(f"target file {path}: {key} must be a list of strings, e.g. {key} = [\"...\"] (got {v!r})")
        return tuple(v)

    for key in ("flash_bytes", "ram_bytes"):
        v = d.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise PrunecError(f"target file {path}: {key} must be a whole number of bytes >= 0 (0 = no limit), got {v!r}")
    if "isa" in d and not strings("isa"):
        raise PrunecError(f"target file {path}: isa is empty; list the kernel ISAs in order of preference, e.g. isa = [\"portable\"]")
    try:
        t = Target(
            name=d["name"], description=d.get("description", ""), isa=strings("isa"), cc=d["cc"], ar=d.get("ar", "ar"),
            cflags=strings("cflags"), ldflags=strings("ldflags"), libs=strings("libs"),
            runner=d.get("runner", "cffi"), shared_library=bool(d.get("shared_library", False)),
            flash_bytes=int(d.get("flash_bytes", 0)), ram_bytes=int(d.get("ram_bytes", 0)),
            packages=dict(d.get("packages", {})), extra={k: v for k, v in d.items() if k not in _KNOWN},
        )
    except KeyError as e:
        raise PrunecError(f"target file {path} lacks the key {e.args[0]!r}") from e
    from .encode import check_index_bits, check_row_align

    for table, check in (("index_bits_by_op", check_index_bits), ("row_align_by_op", check_row_align)):
        by_op = t.extra.get(table)
        if by_op is None:
            continue
        if not isinstance(by_op, dict) or set(by_op) - {"fc", "conv2d"}:
            raise PrunecError(f"target file {path}: [{table}] takes the keys fc and conv2d (got {by_op!r})")
        for op, v in by_op.items():
            check(v, f"target file {path}, {table}.{op}")
    return t


@lru_cache(maxsize=None)
def _native_macros(cc: str) -> frozenset[str]:
    """Macros the build machine's compiler predefines with -march=native (empty if it cannot say)."""
    if shutil.which(cc) is None:
        return frozenset()
    try:
        out = subprocess.run([cc, "-march=native", "-dM", "-E", "-x", "c", os.devnull], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split()[1] for line in out.splitlines() if line.startswith("#define "))


def _apply_probes(t: Target) -> Target:
    """Optional ISAs, chosen at build time: a `[probe.<isa>]` table (macros, cflags, env, and `isas`, the kernel
    families it gates, default [<isa>]) keeps them in the preference list and adds its cflags when the build machine's compiler with -march=native defines every
    macro, or when the environment variable `env` is 1; `env` = 0 drops it."""
    probes = t.extra.get("probe") or {}
    isa, cflags = list(t.isa), list(t.cflags)
    for name, spec in probes.items():
        forced = os.environ.get(spec.get("env", ""), "") if spec.get("env") else ""
        if forced in ("0", "1"):
            on = forced == "1"
        else:
            on = set(spec.get("macros", ())) <= _native_macros(t.cc)
        if on:
            cflags += [f for f in spec.get("cflags", ()) if f not in cflags]
        else:
            isa = [i for i in isa if i not in spec.get("isas", [name])]
    if not probes:
        return t
    return replace(t, isa=tuple(isa), cflags=tuple(cflags))


def all_targets() -> dict[str, Target]:
    out = {}
    for p in sorted(targets_dir().glob("*.toml")):
        t = _apply_probes(_load(p))
        out[t.name] = t
    return out


def get(name: str) -> Target:
    targets = all_targets()
    if name not in targets:
        raise PrunecError(f"unknown target {name!r}; choose one of: {', '.join(targets)} (`prunec targets` lists them)")
    return targets[name]
