"""The worst-case stack of NAME_run, from the compiler's own call graph.

A firmware engineer sizes a thread's or the start-up's stack from this figure, so it is computed, not guessed:
each C source of the build is compiled again exactly as `make` compiles it (the commands of `make -n`, so the
Makefile's CC and flags, a CC/CFLAGS override in the environment included), with `-fstack-usage
-fcallgraph-info=su` added (GCC 10 and later; neither changes the generated code), into a scratch folder. The
`.ci` files give every function's frame and every call it makes; the figure is the deepest chain from NAME_run:
NAME_run's frame plus the largest of its callees', recursively, i.e. what NAME_run needs below its caller's frame.

It is an upper bound when every function on every chain has a static frame (no VLA, no alloca), nothing calls
through a pointer and nothing recurses; `bounded` says whether that holds. Functions outside the build (the C
library's memcpy, expf, ...) have no frame in it: they are listed in `external_calls` and not counted. The
Cortex-M kernels call none; an interrupt taken during inference adds its own frame on top (32 bytes, 104 with
the FPU context, plus the handler's).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from pathlib import Path

from .errors import PrunecError

FLAGS = ("-fstack-usage", "-fcallgraph-info=su")
METHOD = "gcc -fstack-usage -fcallgraph-info=su on the build's own compile commands (make -n)"

_NODE = re.compile(r'^node: \{ title: "([^"]+)" label: "([^"]*)"')
_EDGE = re.compile(r'^edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
_FRAME = re.compile(r"\\n(\d+) bytes \(([a-z,]+)\)")


def compile_commands(build_dir: Path, lib_name: str) -> list[list[str]]:
    """The commands `make` would run to compile the build's C sources into lib_name (a dry run, every target
    considered out of date), as argument lists."""
    try:
        r = subprocess.run(["make", "-n", "-B", "-C", str(build_dir), "--no-print-directory", lib_name],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PrunecError(f"cannot ask make for the compile commands of {build_dir}: {e}") from None
    if r.returncode != 0:
        raise PrunecError(f"make -n {lib_name} failed in {build_dir}: {(r.stderr or r.stdout).strip()[-400:]}")
    cmds = []
    for line in r.stdout.splitlines():
        try:
            argv = shlex.split(line)
        except ValueError:
            continue
        if "-c" in argv and argv and argv[-1].endswith(".c"):
            cmds.append(argv)
    return cmds


def parse_callgraph(texts: list[str]) -> tuple[dict[str, tuple[str, int | None, str]], dict[str, list[str]]]:
    """Nodes {title: (name, frame bytes or None, qualifier)} and edges {title: [callee titles]} of the `.ci` files
    (VCG). A function defined in one file appears in the others that call it as a node without a frame; the
    defining file's node wins. Static functions are titled FILE:NAME, so equal names in two files stay apart."""
    nodes: dict[str, tuple[str, int | None, str]] = {}
    edges: dict[str, list[str]] = {}
    for text in texts:
        for line in text.splitlines():
            m = _NODE.match(line)
            if m:
                title, label = m.groups()
                f = _FRAME.search(label)
                name = label.split("\\n", 1)[0]
                if f:
                    nodes[title] = (name, int(f.group(1)), f.group(2))
                else:
                    nodes.setdefault(title, (name, None, ""))
                continue
            m = _EDGE.match(line)
            if m:
                src, dst = m.groups()
                lst = edges.setdefault(src, [])
                if dst not in lst:
                    lst.append(dst)
    return nodes, edges


def worst_case(nodes, edges, root: str) -> dict:
    """The deepest chain from `root`: bytes, the chain of functions with their frames, whether the figure is a
    bound, why not, and the callees outside the build."""
    external: set[str] = set()
    unbounded: list[str] = []
    memo: dict[str, tuple[int, list[str]]] = {}

    def visit(title: str, active: tuple[str, ...]) -> tuple[int, list[str]]:
        if title in memo:
            return memo[title]
        if title in active:
            unbounded.append(f"recursion through {nodes.get(title, (title,))[0]}")
            return 0, []
        name, frame, qual = nodes.get(title, (title, None, ""))
        if title == "__indirect_call":
            unbounded.append("a call through a function pointer")
            return 0, []
        if frame is None:
            external.add(name)
            return 0, []
        if "dynamic" in qual and "bounded" not in qual:
            unbounded.append(f"{name}'s frame is dynamic (a VLA or alloca)")
        best, chain = 0, []
        for callee in edges.get(title, []):
            b, c = visit(callee, active + (title,))
            if b > best:
                best, chain = b, c
        memo[title] = (frame + best, [title] + chain)
        return memo[title]

    if root not in nodes or nodes[root][1] is None:
        raise PrunecError(f"the call graph has no frame for {root}: it was not compiled from the build's sources")
    total, chain = visit(root, ())
    return {"bytes": total, "bounded": not unbounded, "unbounded_because": sorted(set(unbounded)),
            "path": [{"function": nodes[t][0], "frame_bytes": nodes[t][1]} for t in chain],
            "external_calls": sorted(external)}


def measure(build_dir: str | Path, manifest: dict) -> dict:
    """The worst-case stack of NAME_run for the build in build_dir (see the module's doc). Returns
    {"measured": True, "bytes", "bounded", "unbounded_because", "path", "external_calls", "method"}, or
    {"measured": False, "reason"} when the compiler cannot write call graphs (clang, GCC before 10)."""
    build_dir = Path(build_dir).resolve()
    name = manifest["name"]
    cmds = compile_commands(build_dir, f"lib{name}.a")
    if not cmds:
        raise PrunecError(f"make -n lib{name}.a in {build_dir} compiles no C source")
    texts = []
    with tempfile.TemporaryDirectory(prefix="prunec-stack-") as scratch:
        for i, argv in enumerate(cmds):
            argv = list(argv)
            if "-o" in argv:
                j = argv.index("-o")
                del argv[j:j + 2]
            obj = Path(scratch) / f"unit{i}.o"
            argv = argv[:-1] + list(FLAGS) + ["-o", str(obj), argv[-1]]
            try:
                r = subprocess.run(argv, cwd=build_dir, capture_output=True, text=True, timeout=600)
            except OSError as e:
                return {"measured": False, "reason": f"{argv[0]} did not run: {e}"}
            except subprocess.TimeoutExpired:
                return {"measured": False, "reason": f"{argv[0]} took over 600 s on {argv[-1]}"}
            if r.returncode != 0:
                err = (r.stderr or r.stdout).strip()
                if "callgraph-info" in err or "stack-usage" in err:
                    return {"measured": False, "reason": f"{argv[0]} cannot write call graphs (-fcallgraph-info needs "
                                                         f"GCC 10 or later): {err.splitlines()[0][:200]}"}
                raise PrunecError(f"compiling {argv[-1]} for the stack measurement failed: {err[-400:]}")
            ci = obj.with_suffix(".ci")
            if not ci.is_file():
                return {"measured": False, "reason": f"{argv[0]} wrote no call graph for {argv[-1]}"}
            texts.append(ci.read_text(errors="replace"))
    nodes, edges = parse_callgraph(texts)
    return {"measured": True, **worst_case(nodes, edges, f"{name}_run"), "method": METHOD}
