"""The C runtime as data: which kernels exist, for which op and ISA, and which files a build must copy.

The single source of truth is runtime_c/kernels.inc, one line per kernel:

    PRUNEC_KERNEL(prunec_f32_fc_rcsr__portable, fc_rcsr, portable, "src/portable/f32-fc-rcsr-portable.c")

and, for a kernel that calls another registered kernel (an ISA kernel handing the geometries it has no fast
path for to the portable one), one line per callee:

    PRUNEC_KERNEL_USES(prunec_f32_maxpool2d__avx512x4, prunec_f32_maxpool2d__portable)

so that a build that selects the caller also copies the callee's source (`sources_for`).

Codegen uses it to pick one kernel per op for a target's ISA list and to copy only the sources it needs; the
tests use it to generate one test per kernel. Kernel names follow prunec_<type>_<op>[_<format>]__<isa>.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .resources import runtime_dir

PORTABLE = "portable"

_LINE = re.compile(
    r'^\s*PRUNEC_KERNEL\(\s*(?P<name>\w+)\s*,\s*(?P<op>\w+)\s*,\s*(?P<isa>\w+)\s*,\s*"(?P<source>[^"]+)"\s*\)'
)
_USES = re.compile(r'^\s*PRUNEC_KERNEL_USES\(\s*(?P<name>\w+)\s*,\s*(?P<callee>\w+)\s*\)')


@dataclass(frozen=True)
class Kernel:
    name: str
    op: str
    isa: str
    source: str  # relative to runtime_c/
    uses: tuple[str, ...] = ()  # names of the registered kernels this one calls (PRUNEC_KERNEL_USES)


def registry_path() -> Path:
    return runtime_dir() / "kernels.inc"


@lru_cache(maxsize=None)
def _parse(path: str, mtime_ns: int) -> tuple[Kernel, ...]:
    out = []
    seen = set()
    uses: dict[str, list[str]] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        u = _USES.match(line)
        if u:
            if u["name"] not in seen or u["callee"] not in seen:
                missing = u["name"] if u["name"] not in seen else u["callee"]
                raise ValueError(f"{path}:{lineno}: PRUNEC_KERNEL_USES names {missing}, which is not registered "
                                 "above this line")
            uses.setdefault(u["name"], []).append(u["callee"])
            continue
        m = _LINE.match(line)
        if not m:
            continue
        k = Kernel(m["name"], m["op"], m["isa"], m["source"])
        if k.name in seen:
            raise ValueError(f"{path}:{lineno}: kernel {k.name} registered twice")
        if not k.name.endswith("__" + k.isa):
            raise ValueError(f"{path}:{lineno}: kernel {k.name} does not end with __{k.isa}")
        seen.add(k.name)
        out.append(k)
    return tuple(Kernel(k.name, k.op, k.isa, k.source, tuple(uses.get(k.name, ()))) for k in out)


def kernels() -> list[Kernel]:
    """Every registered kernel, in registry order."""
    p = registry_path()
    return list(_parse(str(p), p.stat().st_mtime_ns))


def ops() -> list[str]:
    """Every op that has a kernel, in registry order."""
    return list(dict.fromkeys(k.op for k in kernels()))


def select(op: str, isas: tuple[str, ...] | list[str] = ()) -> Kernel:
    """The kernel for `op` of the first ISA in `isas` (preference order) that has one; 'portable' is always
    tried last."""
    by_isa = {k.isa: k for k in kernels() if k.op == op}
    if not by_isa:
        known = ", ".join(ops())
        raise KeyError(f"no kernel for op {op!r} (ops with kernels: {known})")
    for isa in (*isas, PORTABLE):
        if isa in by_isa:
            return by_isa[isa]
    raise KeyError(f"op {op!r} has no kernel for ISAs {list(isas)} and no portable fallback")


def sources_for(selected) -> list[str]:
    """Sorted unique source paths (relative to runtime_c/) that define the given kernels and every kernel they
    call (PRUNEC_KERNEL_USES, followed transitively). A copied source brings every kernel it defines, so the
    callees of its other kernels come too (the avx2 fc and conv share a file: a conv-only build links the fc,
    and the fc calls the portable one for the index widths it has no path for)."""
    every = kernels()
    by_name = {k.name: k for k in every}
    by_source: dict[str, list] = {}
    for k in every:
        by_source.setdefault(k.source, []).append(k)
    todo = list(selected)
    done: set[str] = set()
    out: set[str] = set()
    while todo:
        k = todo.pop()
        if k.name in done:
            continue
        done.add(k.name)
        out.add(k.source)
        # `selected` may hold kernels described elsewhere (the benchmarks' own records, extra contenders):
        # the registry's entry of the same name says what it calls
        todo.extend(by_name[c] for c in getattr(by_name.get(k.name, k), "uses", ()))
        todo.extend(by_source.get(k.source, ()))
    return sorted(out)


def headers() -> list[str]:
    """Header files (relative to runtime_c/) every build copies: all of runtime_c/include."""
    inc = runtime_dir() / "include"
    return sorted(str(p.relative_to(runtime_dir())) for p in inc.rglob("*.h"))
