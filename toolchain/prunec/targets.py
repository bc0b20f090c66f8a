"""Targets: one TOML file each in targets/ (adding a target is adding a file).

A target names its compiler and flags, the kernel ISAs it may use (in preference order, 'portable' last),
how a build is run for verification, and the board's flash and RAM (0: not checked).
"""
from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .errors import PrunecError
from .resources import runtime_dir, targets_dir


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

    def missing_tools(self, roles: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
        """(executable, Debian package) for each tool (of `roles`, default all) not found on PATH ("?" where the
        file names no package)."""
        return [(exe, self.packages.get(role, "?")) for role, exe in self.tools().items()
                if (roles is None or role in roles) and shutil.which(exe) is None]

    def require_tools(self, roles: tuple[str, ...] | None = None) -> None:
        missing = [(exe, self.packages.get(role)) for role, exe in self.tools().items()
                   if (roles is None or role in roles) and shutil.which(exe) is None]
        if missing:
            what = ", ".join(f"{exe} (Debian package {pkg})" if pkg else
                             f"{exe} (its target file names no Debian package for it under [packages])"
                             for exe, pkg in missing)
            pkgs = " ".join(sorted({pkg for _, pkg in missing if pkg}))
            fix = f"run `apt-get install {pkgs}` (or `make setup`)" if pkgs else "install it"
            if pkgs and any(pkg is None for _, pkg in missing):
                fix += " and install the others"
            raise PrunecError(f"target {self.name!r} needs {what}, not installed: {fix}")


_KNOWN = {"name", "description", "isa", "cc", "ar", "cflags", "ldflags", "libs", "runner", "shared_library",
          "flash_bytes", "ram_bytes", "packages"}
# Optional keys that runners, codegen and the build read from Target.extra (docs/TARGETS.md).
_OPTIONAL = {"emulator", "emulator_args", "machine", "size", "startup", "part", "isa_by_op", "probe",
             "index_bits_by_op", "row_align_by_op", "fuse_conv_pool", "zero_skip_min_per_input",
             "zero_skip_break_even", "fc_bsell_max_bytes", "fc_rsell_vendors",
             "fc_wsell_max_bytes"}
# Folders of the user's own target files, searched after prunec's targets/ (os.pathsep-separated), so that adding a
# target is adding a file also for an installed prunec (docs/TARGETS.md)
TARGETS_ENV = "PRUNEC_TARGETS"
RUNNERS = ("cffi", "qemu-user", "qemu-system")


def _known_isas() -> set[str]:
    from . import runtime

    return {k.isa for k in runtime.kernels()} | {"portable"}


def _load(path: Path) -> Target:
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise PrunecError(f"target file {path} is unreadable: {e}; fix or remove the file") from e

    def bad(key: str, want: str, v) -> PrunecError:
        return PrunecError(f"target file {path}: {key} must be {want} (got {v!r})")

    def string(key: str, default=None, required: bool = False, where: dict | None = None, label: str | None = None) -> str:
        src = d if where is None else where
        if key not in src:
            if required:
                raise PrunecError(f"target file {path} lacks the key {label or key!r}; add it, e.g. {key} = \"...\"")
            return default
        v = src[key]
        if not isinstance(v, str) or (required and not v.strip()):
            raise bad(label or key, "a non-empty string" if required else "a string", v)
        return v

    def strings(key: str, default=(), where: dict | None = None, label: str | None = None) -> tuple[str, ...]:
        v = (d if where is None else where).get(key, default)
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise PrunecError(f"target file {path}: {label or key} must be a list of strings, e.g. {key} = [\"...\"] (got {v!r})")
        return tuple(v)

    def table(key: str) -> dict | None:
        v = d.get(key)
        if v is not None and not isinstance(v, dict):
            raise bad(key, f"a table ([{key}] followed by key = value lines)", v)
        return v

    for key in sorted(set(d) - _KNOWN - _OPTIONAL):  # a misspelt key would silently drop a setting (a memory limit)
        close = difflib.get_close_matches(key, sorted(_KNOWN | _OPTIONAL), n=1, cutoff=0.6)
        if key + "_bytes" in _KNOWN | _OPTIONAL:  # flash, ram: the unit left out ("flash" is closest to "cflags")
            close = [key + "_bytes"]
        hint = f"did you mean {close[0]!r}?" if close else f"the keys are {', '.join(sorted(_KNOWN | _OPTIONAL))}"
        raise PrunecError(f"target file {path}: unknown key {key!r}; {hint} (docs/TARGETS.md)")
    for key in ("flash_bytes", "ram_bytes"):
        v = d.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise PrunecError(f"target file {path}: {key} must be a whole number of bytes >= 0 (0 = no limit), got {v!r}")
    if "isa" in d and not strings("isa"):
        raise PrunecError(f"target file {path}: isa is empty; list the kernel ISAs in order of preference, e.g. isa = [\"portable\"]")
    known_isas = _known_isas()

    def check_isas(isas, label: str) -> None:
        unknown = [i for i in isas if i not in known_isas]
        if unknown:
            raise PrunecError(f"target file {path}: {label} names unknown kernel ISA(s) {', '.join(map(repr, unknown))}; "
                              f"the kernels (runtime_c/kernels.inc) have {', '.join(sorted(known_isas))}")

    check_isas(strings("isa"), "isa")
    shared = d.get("shared_library", False)
    if not isinstance(shared, bool):
        raise bad("shared_library", "true or false (unquoted)", shared)
    runner = string("runner", "cffi")
    if runner not in RUNNERS:
        raise PrunecError(f"target file {path}: runner {runner!r} is not one of {', '.join(RUNNERS)}")
    packages = table("packages") or {}
    for role, pkg in packages.items():
        if not isinstance(pkg, str) or not pkg.strip():
            raise bad(f"packages.{role}", "a Debian package name (a string)", pkg)
    for key in ("description", "emulator", "machine", "size", "startup"):
        string(key)
    strings("emulator_args")
    if runner in ("qemu-user", "qemu-system"):
        string("emulator", required=True)
    if runner == "qemu-system":
        string("machine", required=True)
    if d.get("startup") and not (runtime_dir() / d["startup"]).is_file():
        raise PrunecError(f"target file {path}: startup {d['startup']!r} is not a file under {runtime_dir()}")
    part = table("part")
    if part is not None:
        for key in ("flash_bytes", "ram_bytes"):
            v = part.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(f"part.{key}", "a whole number of bytes >= 0", v)
    by_op = table("isa_by_op") or {}
    from . import runtime

    ops = runtime.ops()
    for op in by_op:
        if op not in ops:
            raise PrunecError(f"target file {path}: [isa_by_op] names op {op!r}, which has no kernels; the ops are "
                              f"{', '.join(ops)}")
        check_isas(strings(op, where=by_op, label=f"isa_by_op.{op}"), f"isa_by_op.{op}")
    probes = table("probe") or {}
    for name, spec in probes.items():
        if not isinstance(spec, dict):
            raise bad(f"probe.{name}", f"a table ([probe.{name}] with macros, cflags, env, isas)", spec)
        for key in ("macros", "cflags", "isas"):
            strings(key, where=spec, label=f"probe.{name}.{key}")
        string("env", where=spec, label=f"probe.{name}.env")
        check_isas(spec.get("isas", [name]), f"probe.{name}")
    t = Target(
        name=string("name", required=True), description=string("description", ""), isa=strings("isa"),
        cc=string("cc", required=True), ar=string("ar", "ar", required="ar" in d),
        cflags=strings("cflags"), ldflags=strings("ldflags"), libs=strings("libs"),
        runner=runner, shared_library=shared,
        flash_bytes=int(d.get("flash_bytes", 0)), ram_bytes=int(d.get("ram_bytes", 0)),
        packages=dict(packages), extra={k: v for k, v in d.items() if k not in _KNOWN},
    )
    from .encode import check_index_bits, check_row_align

    for tbl, check in (("index_bits_by_op", check_index_bits), ("row_align_by_op", check_row_align)):
        by_op = t.extra.get(tbl)
        if by_op is None:
            continue
        if not isinstance(by_op, dict) or set(by_op) - {"fc", "conv2d"}:
            raise PrunecError(f"target file {path}: [{tbl}] takes the keys fc and conv2d (got {by_op!r})")
        for op, v in by_op.items():
            check(v, f"target file {path}, {tbl}.{op}")
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
        forced = os.environ.get(spec.get("env", ""), "").strip() if spec.get("env") else ""
        if forced not in ("", "0", "1"):
            raise PrunecError(f"{spec['env']}={forced!r}: 1 forces the {name} kernels on, 0 off; unset it to let the "
                              f"build machine's compiler decide (target {t.name!r})")
        if forced:
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


def target_files() -> list[Path]:
    """prunec's own target files, then those of the folders in $PRUNEC_TARGETS (in that order)."""
    files = sorted(targets_dir().glob("*.toml"))
    for folder in filter(None, os.environ.get(TARGETS_ENV, "").split(os.pathsep)):
        d = Path(folder).expanduser()
        if not d.is_dir():
            raise PrunecError(f"{TARGETS_ENV} names {folder!r}, which is not a folder; set it to the folder(s) of your "
                              f"target files, separated by {os.pathsep!r}")
        files += sorted(d.glob("*.toml"))
    return files


def _scan(strict: bool) -> tuple[dict[str, Target], list[PrunecError]]:
    """Every target by name; with `strict`, the first unreadable file raises, else it is collected."""
    out, where, broken = {}, {}, []
    for p in target_files():
        try:
            t = _load(p)
        except PrunecError as e:
            if strict:
                raise
            broken.append(e)
            continue
        t = _apply_probes(t)  # a bad probe variable (PRUNEC_AVX512=abc) is the environment's fault, not the file's
        if t.name in out:  # one would silently replace the other
            raise PrunecError(f"target files {where[t.name]} and {p} both define target {t.name!r}; rename one (name = ...)")
        out[t.name], where[t.name] = t, p
    return out, broken


def all_targets() -> dict[str, Target]:
    return _scan(strict=True)[0]


def get(name: str) -> Target:
    """The target called `name`. A broken file of another target does not stand in the way (it is named only
    when `name` is not found, since it may be the one meant)."""
    targets, broken = _scan(strict=False)
    if name not in targets:
        where = "" if os.environ.get(TARGETS_ENV) else (
            f"; a target file of your own goes in a folder named by {TARGETS_ENV} (docs/TARGETS.md)")
        also = "".join(f"; note: {e}" for e in broken)
        raise PrunecError(f"unknown target {name!r}; choose one of: {', '.join(targets)} (`prunec targets` lists them)"
                          f"{where}{also}")
    return targets[name]
