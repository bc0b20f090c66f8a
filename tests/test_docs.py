"""The user documentation (README.md, docs/BUILD.md, TARGETS.md, FORMAT.md, PRUNING.md) against the code: every
`prunec CMD --flag` and value the docs write is one the CLI accepts, every target, file, kernel, Python name,
Makefile target and manifest key they name exists, the tables of targets match targets/*.toml, the worked
example of the format and the arena sizes are what the code computes, and the C snippets compile warning-free
and run against a generated build."""
from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import numpy as np
import pytest
import torch

import build_models as bm
from prunec import build as B
from prunec import encode, export, frontend, fuse, models, plan, runtime, targets, verify
from prunec.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/BUILD.md", "docs/TARGETS.md", "docs/FORMAT.md", "docs/PRUNING.md"]
TEXT = {d: (REPO / d).read_text() for d in DOCS}
TARGETS = {p.stem: tomllib.loads(p.read_text()) for p in sorted((REPO / "targets").glob("*.toml"))}
# commands whose options a bare `--flag` in a doc's prose refers to (None: the doc's flags are a compiler's)
PROSE_SCOPE = {"README.md": None, "docs/BUILD.md": ("build", "verify"), "docs/TARGETS.md": None,
               "docs/FORMAT.md": ("build",), "docs/PRUNING.md": ("train", "prune")}
CC = shutil.which("gcc") or shutil.which("cc")


def fences(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def prose(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", prose(text))


def code_lines(text: str) -> list[str]:
    """Lines of fenced blocks (an indented line continues the one before) and of 4-space indented blocks,
    comments (` # ...`) cut off."""
    lines = []
    for block in fences(text):
        for ln in block.splitlines():
            if ln[:1].isspace() and lines:
                lines[-1] += " " + ln.strip()
            else:
                lines.append(ln)
    lines += [ln for ln in prose(text).splitlines() if ln.startswith("    ") and ln.strip()]
    return [re.split(r"\s#\s", ln)[0] for ln in lines]


def invocations(text: str):
    """(command, argument tokens) for every `prunec CMD ...` in code lines and inline code spans."""
    for s in code_lines(text) + spans(text):
        for m in re.finditer(r"(?:^|[\s(])prunec\s+([a-z][a-z-]*)(.*)", s):
            rest = re.split(r"&&|;", m.group(2))[0]
            yield m.group(1), [t for t in rest.replace("[", " ").replace("]", " ").split() if t != "|"]


def options(cmd: click.Command) -> dict[str, click.Option]:
    return {o: p for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}


def placeholder(v: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_.]*(\[.*)?", v)) or "..." in v or "…" in v


def check_value(cmd: click.Command, opt: click.Option, value: str) -> list[str]:
    """Errors for a value the doc writes after an option (alternatives a|b each checked)."""
    errs = []
    for v in value.split("|") if isinstance(opt.type, click.Choice) else [value]:
        if placeholder(v):
            continue
        try:
            opt.type.convert(v, opt, None)
        except click.BadParameter as e:
            errs.append(f"prunec {cmd.name} {opt.opts[0]} {v}: {e.format_message()}")
        if opt.name == "target" and v not in TARGETS:
            errs.append(f"--target {v}: no targets/{v}.toml")
    return errs


def check_args(cmd: click.Command, tokens: list[str]) -> list[str]:
    opts, errs = options(cmd), []
    for i, tok in enumerate(tokens):
        if not tok.startswith("-") or tok in ("-", "--"):
            continue
        name = tok.split("=")[0]
        if name not in opts:
            errs.append(f"prunec {cmd.name} has no option {name}")
            continue
        opt = opts[name]
        value = tok.split("=", 1)[1] if "=" in tok else (tokens[i + 1] if i + 1 < len(tokens) else None)
        if not opt.is_flag and value is not None and not value.startswith("-"):
            errs += check_value(cmd, opt, value)
    return errs


# --- the command line ------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS)
def test_every_prunec_command_flag_and_value_in_the_docs_is_accepted(doc):
    errs, seen = [], 0
    for name, tokens in invocations(TEXT[doc]):
        if name not in main.commands:
            errs.append(f"no command `prunec {name}`")
            continue
        seen += 1
        errs += check_args(main.commands[name], tokens)
    scope = PROSE_SCOPE[doc]
    if scope is not None:  # bare `--flag [value]` spans in the prose
        cmds = [main.commands[c] for c in scope]
        for s in spans(TEXT[doc]):
            if not s.startswith("--"):
                continue
            tok = s.split()
            owners = [c for c in cmds if tok[0].split("=")[0] in options(c)]
            if not owners:
                errs.append(f"`{s}`: no option {tok[0]} in prunec {'/'.join(scope)}")
            elif len(tok) > 1 and all(check_args(c, tok) for c in owners):
                errs += check_args(owners[0], tok)
    assert seen or doc == "docs/FORMAT.md" or doc == "docs/TARGETS.md", f"no prunec command found in {doc}"
    assert not errs, f"{doc}:\n" + "\n".join(errs)


def test_build_and_verify_synopsis_lists_every_option():
    synopsis = code_lines(TEXT["docs/BUILD.md"].split("\n## ", 1)[0])
    for name in ("build", "verify"):
        line = next(ln for ln in synopsis if ln.startswith(f"prunec {name} "))
        written = set(re.findall(r"--[\w-]+", line))
        have = {max(p.opts, key=len) for p in main.commands[name].params if isinstance(p, click.Option) and not p.hidden}
        assert have - {"--help"} <= written, f"BUILD.md's `prunec {name}` synopsis lacks {sorted(have - written)}"


def test_documented_defaults_are_the_cli_defaults():
    found = 0
    for doc, scope in PROSE_SCOPE.items():
        for opt_name, value in re.findall(r"`(--[\w-]+) ([\w.-]+)` \(the default\)", TEXT[doc]):
            for c in scope or ():
                opt = options(main.commands[c]).get(opt_name)
                if opt is not None:
                    found += 1
                    assert str(opt.default) == value, f"{doc}: {opt_name} default is {opt.default}, not {value}"
    assert found, "no '`--opt value` (the default)' found; the check has nothing to do"
    assert "`T` defaults to `host`" in TEXT["docs/BUILD.md"] and options(main.commands["build"])["--target"].default == "host"


def test_benchmark_script_flags_in_the_docs_exist():
    n = 0
    for doc in DOCS:
        for s in code_lines(TEXT[doc]) + spans(TEXT[doc]):
            for m in re.finditer(r"benchmarks/(\w+\.py)((?:\s+[^\s`]+)*)", s):
                script = REPO / "benchmarks" / m.group(1)
                assert script.is_file(), f"{doc}: {script} does not exist"
                known = set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text()))
                for flag in re.findall(r"(?:^|\s)(--[\w-]+)", m.group(2)):
                    n += 1
                    assert flag in known, f"{doc}: benchmarks/{m.group(1)} has no option {flag}"
    assert n >= 5


def test_make_targets_named_in_the_readme_exist():
    mk = (REPO / "Makefile").read_text()
    rules = set(re.findall(r"^([\w-]+):", mk, flags=re.M))
    named = {t for s in code_lines(TEXT["README.md"]) + spans(TEXT["README.md"])
             for t in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", s)}
    assert named >= {"demo", "test", "setup"} and named <= rules, f"README names {sorted(named - rules)}, not in Makefile"


# --- targets ---------------------------------------------------------------------------------------------


def test_readme_lists_exactly_the_targets():
    para = TEXT["README.md"].split("Targets:", 1)[1].split("The generated C API", 1)[0]
    assert set(re.findall(r"`([\w-]+)`", para)) == set(TARGETS)


def test_targets_table_matches_the_target_files():
    body = TEXT["docs/TARGETS.md"].split("| target | compiler, flags", 1)[1].split("\n\n", 1)[0]
    rows = [ln for ln in body.splitlines()[1:] if ln.startswith("| ")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]
    assert {c[0] for c in cells} == set(TARGETS)
    for name, comp, isas, runner, _board in cells:
        t = TARGETS[name]
        head = comp.split("(")[0].replace(",", " ").split()
        if head[0] != "…":
            assert head[0] == t["cc"], f"{name}: compiler {head[0]}, file says {t['cc']}"
        for flag in (f for f in head if f.startswith("-")):
            assert flag in t["cflags"] + t.get("ldflags", []), f"{name}: {flag} is not in its cflags/ldflags"
        assert [s.strip() for s in isas.split("(")[0].split(",")] == t["isa"], f"{name}: ISAs {isas} vs {t['isa']}"
        assert runner.split()[0] in (t["runner"], t.get("emulator")), f"{name}: runner {runner}"
        if "-M " in runner:
            assert runner.split("-M ")[1].split()[0] == t["machine"]
        m = re.search(r"`(\S+) -cpu (\S+)`", runner)
        if m:
            assert m.group(1) == t["emulator"] and ["-cpu", m.group(2)] == t["emulator_args"]


# --- names: files, kernels, Python --------------------------------------------------------------------------


def _repo_paths() -> list[str]:
    out = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "__pycache__", "node_modules")]
        rel = Path(root).relative_to(REPO).as_posix()
        out += [f"{rel}/" if rel != "." else ""] + [f"{rel}/{f}" if rel != "." else f for f in files]
    return out


GENERATED = {"main.c", "manifest.json", "runtime/", "runtime/include/prunec_config.h"}  # files of a build directory


def test_every_file_the_docs_name_exists():
    paths, errs, n = _repo_paths(), [], 0
    for doc in DOCS:
        for s in spans(TEXT[doc]):
            if not re.fullmatch(r"[\w./<>*-]+\.(py|c|h|inc|j2|toml|S|md)|[\w./<>*-]+/", s):
                continue
            if "NAME" in s or "lenet" in s or s.startswith(("../", "hw/")) or s in GENERATED:
                continue
            pat = re.sub(r"<[^>]+>", "*", s)
            n += 1
            if not any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, "*/" + pat) for p in paths):
                errs.append(f"{doc}: `{s}`")
    assert n > 40 and not errs, "named in the docs, not in the repository:\n" + "\n".join(errs)


def test_every_kernel_and_runtime_source_the_docs_name_is_registered():
    names = {k.name for k in runtime.kernels()}
    n = 0
    for doc in DOCS:
        for k in re.findall(r"\bprunec_f32_\w+__\w+", TEXT[doc]):
            n += 1
            assert k in names, f"{doc}: kernel {k} is not in runtime_c/kernels.inc"
        for src in re.findall(r"\"(src/[\w/-]+\.c)\"", TEXT[doc]):
            assert (REPO / "runtime_c" / src).is_file(), f"{doc}: runtime_c/{src} does not exist"
    assert n >= 5


def test_every_python_name_the_docs_use_exists():
    mods = {p.stem for p in (REPO / "toolchain" / "prunec").glob("*.py")}
    errs, n = [], 0
    for doc in DOCS:
        for s in spans(TEXT[doc]):
            m = re.fullmatch(r"(?:prunec\.)?([a-z_]+)\.([A-Za-z_]\w*)(?:\(.*\)|\[.*\])?", s)
            if not m or m.group(1) not in mods or re.search(r"\.(py|c|h|md|toml|j2|inc|json|pt2?|npy)$", s):
                continue
            n += 1
            if not hasattr(importlib.import_module(f"prunec.{m.group(1)}"), m.group(2)):
                errs.append(f"{doc}: `{s}`")
    from prunec.recipes import Recipe

    for field in re.findall(r"`Recipe\.(\w+)`", "".join(TEXT.values())):
        n += 1
        if field not in Recipe.__dataclass_fields__:
            errs.append(f"Recipe.{field}")
    assert n >= 10 and not errs, "named in the docs, missing in toolchain/prunec:\n" + "\n".join(errs)


# --- what the code computes ----------------------------------------------------------------------------------


def test_format_worked_example_is_what_the_encoder_writes():
    doc = TEXT["docs/FORMAT.md"].split("### Worked example", 1)[1].split("### Choosing b", 1)[0]
    w = np.zeros((3, 20), np.float32)
    w[0, 1], w[0, 4], w[0, 19], w[2, 0], w[2, 18] = 0.5, -1.25, 2.0, 3.0, -0.75
    t4, t8 = re.findall(r"^bytes .*= (\d+)$", doc, flags=re.M)
    totals = {4: int(t4), 8: int(t8), 16: int(re.search(r"\*\*b = 16\*\*.*?= (\d+) bytes", doc, flags=re.S).group(1))}
    for b, total in totals.items():
        e = encode.choose_encoding(w, bits_options=(b,), allow_dense=False)
        assert e.index_bits == b and e.total_bytes == total, f"b={b}: {e.total_bytes} bytes, FORMAT.md says {total}"
    block4 = re.search(r"entry .*?bytes[^\n]*\n", doc, flags=re.S).group(0)
    e = encode.choose_encoding(w, bits_options=(4,), allow_dense=False)
    row = lambda key: block4.split(f"\n{key}", 1)[1].split("\n")[0].split()  # noqa: E731
    assert [float(v) for v in row("value")] == e.rcsr.values.tolist()
    assert [int(v) for v in row("code")] == e.rcsr.codes.tolist()
    assert json.loads(" ".join(row("row_ptr"))) == e.rcsr.row_ptr.tolist()
    assert row("index")[:3] == encode.pack_codes(e.rcsr.codes, 4).hex(" ").split()
    best = encode.choose_encoding(w)
    assert "picks relative-indexed CSR with b = 8" in doc and best.format == "rcsr" and best.index_bits == 8
    # the 6- and 5-bit lines: the stream bytes, the totals and the tie that every width allowed resolves to b = 5
    m6 = re.search(r"\*\*b = 6\*\*.*?`index` = `([0-9a-f ]+)`.*?= (\d+) bytes; b = 5 also takes (\d+) \(`([0-9a-f ]+)`\)",
                   doc, flags=re.S)
    for b, hexs, total in ((6, m6.group(1), int(m6.group(2))), (5, m6.group(4), int(m6.group(3)))):
        e = encode.choose_encoding(w, bits_options=(b,), allow_dense=False)
        assert e.rcsr.packed_index().hex(" ") == hexs and e.total_bytes == total, b
    assert encode.choose_encoding(w, bits_options=encode.INDEX_BITS).index_bits == 5


def _program(name: str):
    torch.manual_seed(0)
    return export.export_program(models.create(name).eval(), models.input_shape(name))


def test_documented_arenas_are_the_planned_ones():
    doc = TEXT["docs/BUILD.md"]
    m = re.search(r"LeNet-5: ([\d,]+) bytes .*?; LeNet-300-100: ([\d,]+)\.", doc, flags=re.S)
    fused = re.search(r"\(LeNet-5: ([\d,]+) bytes instead of ([\d,]+)\)", doc)
    assert fused.group(2) == m.group(1)
    num = lambda s: int(s.replace(",", ""))  # noqa: E731
    g5 = frontend.from_program(_program("lenet5"))
    assert plan.make_plan(g5).arena_bytes == num(m.group(1)), "LeNet-5 arena"
    fused_arena = plan.make_plan(fuse.planning_graph(g5, fuse.find_conv_pool(g5))).arena_bytes
    assert fused_arena == num(fused.group(1)), f"fused LeNet-5 arena {fused_arena}, BUILD.md says {fused.group(1)}"
    assert plan.make_plan(frontend.from_program(_program("lenet300"))).arena_bytes == num(m.group(2)), "LeNet-300 arena"
    on = sorted(n for n, t in TARGETS.items() if t.get("fuse_conv_pool") is True)
    assert on and all(n.startswith("cortex-m") for n in on), f"fusing targets {on}: BUILD.md says the Cortex-M ones"
    one_call = sorted(n for n, t in TARGETS.items() if t.get("fuse_conv_pool") == "one-call")
    assert one_call == ["x86_64-avx2"] and 'x86_64-avx2 sets `fuse_conv_pool = "one-call"`' in doc, one_call


# --- a generated build: the C API, the snippets, the manifest, make/cmake --------------------------------------


@pytest.fixture(scope="module")
def lenet300(tmp_path_factory):
    """A LeNet-300-100 (random weights, ~8 % kept) exported as lenet300.pt2 and built for host, as README does."""
    d = tmp_path_factory.mktemp("docs")
    m = bm.prune_random(models.create("lenet300"), seed=1, lo=0.06, hi=0.1)
    pt2 = d / "lenet300.pt2"
    torch.export.save(export.export_program(m, models.input_shape("lenet300")), str(pt2))
    (d / "build").mkdir()
    B.build(pt2, "host", d / "build" / "lenet300")
    return pt2, d / "build" / "lenet300"


def test_manifest_keys_are_the_documented_ones(lenet300, tmp_path):
    _, out = lenet300
    m = json.loads((out / "manifest.json").read_text())
    sec = TEXT["docs/BUILD.md"].split("### manifest.json (a contract)", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z_][a-z0-9_]*)`", sec))
    keys = {"": set(m), "source": set(m["source"]), "plan": set(m["plan"]), "files": set(m["files"]),
            "totals": set(m["totals"]), "layers[]": {k for l in m["layers"] for k in l},
            "layers[].bytes": {k for l in m["layers"] for k in l["bytes"]}}
    undocumented = {f"{where}.{k}" for where, ks in keys.items() for k in ks if k not in documented}
    assert not undocumented, f"manifest keys BUILD.md does not list: {sorted(undocumented)}"
    every = set().union(*keys.values())
    # the measured sizes of a target with a size tool (Cortex-M): `size` and its objects
    t = targets.get("cortex-m4")
    if t.missing_tools():
        pytest.skip("cortex-m4 tools missing: " + ", ".join(exe for exe, _ in t.missing_tools()))
    pt2, _ = lenet300
    m4 = tmp_path / "m4"
    B.build(pt2, "cortex-m4", m4)
    size = json.loads((m4 / "manifest.json").read_text())["size"]
    assert size["measured"], size
    size_keys = {"size": set(size), **{f"size.{k}": set(size[k]) for k in ("library", "linked", "part")}}
    undocumented = {f"{where}.{k}" for where, ks in size_keys.items() for k in ks if k not in documented}
    assert not undocumented, f"manifest size keys BUILD.md does not list: {sorted(undocumented)}"
    every |= set().union(*size_keys.values()) | {"size"}
    # `reason` (unmeasured) and `verification_image` (after prunec verify) are in other manifests
    extra = documented - every - {"null", "reason", "verification_image"}
    assert not extra, f"BUILD.md lists keys no manifest has: {sorted(extra)}"
    assert f"`format` (`{m['format']}`)" in sec
    assert m["name"] == "lenet300" and m["source"]["file"] == "lenet300.pt2"  # the README's naming


def test_c_api_header_is_the_documented_contract(lenet300):
    _, out = lenet300
    h = (out / "lenet300.h").read_text()
    contract = fences(TEXT["docs/BUILD.md"].split("### The C API (a contract)", 1)[1])[0]
    for name, value in re.findall(r"#define NAME_(\w+)\s+(\d+)", contract):
        assert re.search(rf"#define lenet300_{name} {value}\b", h), f"lenet300.h: lenet300_{name} is not {value}"
    proto = re.search(r"int NAME_run\(.*?\);", contract).group(0).replace("NAME", "lenet300")
    assert proto in h
    mk = (out / "Makefile").read_text()
    assert re.search(r"^shared:", mk, flags=re.M) and "CC, AR, CFLAGS, LDFLAGS and LIBS" in mk
    cm_opt = re.search(r"`-D(\w+)=ON`", TEXT["docs/BUILD.md"]).group(1)
    assert f"option({cm_opt} " in (out / "CMakeLists.txt").read_text()


def _compile_and_run(out: Path, c_text: str, tmp: Path, stdin: str) -> str:
    src = tmp / "main.c"
    src.write_text(c_text)
    subprocess.run(["make", "-s", "-C", str(out)], check=True, capture_output=True)  # libNAME.a, as BUILD.md says
    exe = tmp / "main"
    r = subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O1", f"-I{out}", str(src),
                        str(out / "liblenet300.a"), "-lm", "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


@pytest.mark.skipif(CC is None or shutil.which("make") is None, reason="needs a C compiler and make")
def test_readme_c_snippet_compiles_and_runs(lenet300, tmp_path):
    pt2, out = lenet300
    snippet = next(b for b in fences(TEXT["README.md"]) if "NAME_run" in b).replace("NAME", "lenet300")
    lines = snippet.strip().splitlines()
    top = [ln for ln in lines if ln.startswith(("#", "static"))]
    body = [ln for ln in lines if ln not in top]
    at = next(i for i, ln in enumerate(body) if "lenet300_run(" in ln)
    read = ("  { int i; for (i = 0; i < lenet300_INPUT_SIZE; i++) if (scanf(\"%f\", &in[i]) != 1) return 9; }\n"
            "  if (lenet300_run(NULL, out, arena) != -1) return 7;                       /* documented: -1 */\n"
            "  if (lenet300_run(in, out, (char *)arena + 4) != -2) return 8;             /* documented: -2 */")
    c = ("#include <stdio.h>\n#include <stddef.h>\n" + "\n".join(top) + "\nint main(void) {\n"
         + "\n".join(body[:at]) + "\n" + read + "\n" + "\n".join(body[at:]) + "\n"
         "  { int i; for (i = 0; i < lenet300_OUTPUT_SIZE; i++) printf(\"%.9g\\n\", out[i]); }\n  return rc;\n}\n")
    x = bm.random_inputs((1, 28, 28), n=1, seed=3)
    got = np.array(_compile_and_run(out, c, tmp_path, " ".join(f"{v:.9g}" for v in x.ravel())).split(), np.float32)
    want = verify.reference_outputs(pt2, x, [1, 1, 28, 28])
    r = verify.compare(got[None], want)
    assert r.ok and r.max_abs_err < 1e-4, r.text()


@pytest.mark.skipif(CC is None or shutil.which("make") is None, reason="needs a C compiler and make")
def test_build_md_usage_snippet_compiles_and_classifies(lenet300, tmp_path):
    pt2, out = lenet300
    usage = TEXT["docs/BUILD.md"].split("### The C API (a contract)", 1)[1]
    snippet = next(b for b in fences(usage) if "int classify(void)" in b)
    c = snippet + ("int main(void) {\n  int i;\n  for (i = 0; i < lenet300_INPUT_SIZE; i++)\n"
                   "    if (scanf(\"%f\", &image[i]) != 1) return 9;\n  printf(\"%d\\n\", classify());\n  return 0;\n}\n")
    x = bm.random_inputs((1, 28, 28), n=1, seed=4)
    got = int(_compile_and_run(out, c, tmp_path, " ".join(f"{v:.9g}" for v in x.ravel())))
    assert got == int(np.argmax(verify.reference_outputs(pt2, x, [1, 1, 28, 28])))


# --- PRUNING.md "Your own model": the example runs ---------------------------------------------------------------


def test_pruning_md_own_model_example_runs(tmp_path, monkeypatch):
    """The documented route for a model of one's own (not a zoo model): the Python block as written (prune with
    run_schedule on the user's Dataset, save_program), then the shell block's prunec
    commands (info, build, verify) on the .pt2 it wrote."""
    import shlex

    from click.testing import CliRunner

    sec = TEXT["docs/PRUNING.md"].split("\n## Your own model\n", 1)[1].split("\n## ", 1)[0]
    blocks = fences(sec)
    py = next(b for b in blocks if "save_program(" in b)
    shell = [ln.strip() for b in blocks if b is not py for ln in b.splitlines() if ln.strip()]
    shell = [re.split(r"\s#\s", ln)[0].strip() for ln in shell]
    assert [ln.split()[1] for ln in shell if ln.startswith("prunec ")] == ["info", "build", "verify"], shell
    monkeypatch.chdir(tmp_path)
    exec(compile(py, "docs/PRUNING.md", "exec"), {"__name__": "pruning_md_example"})
    pt2 = tmp_path / "mine.pt2"
    assert pt2.is_file()
    outputs = {}
    for ln in shell:
        args = shlex.split(ln)
        if args[0] == "mkdir":
            (tmp_path / args[-1]).mkdir(parents=True, exist_ok=True)
            continue
        assert args[0] == "prunec", ln
        r = CliRunner().invoke(main, args[1:])
        assert r.exit_code == 0, (ln, r.output)
        outputs[args[1]] = r.output
    assert "conv" in outputs["info"] and "fc" in outputs["info"] and "compression" in outputs["info"]
    assert "verify: PASS" in outputs["verify"]
    info = json.loads(CliRunner().invoke(main, ["info", str(pt2), "--json"]).output)
    assert {l["name"]: round(l["remaining"], 2) for l in info["layers"]} == {"conv": 0.5, "fc": 0.1}
    assert info["baseline_test_accuracy"] is not None and info["test_accuracy"] is not None  # save_program kept them


def test_every_environment_variable_the_package_reads_is_in_the_readme_table():
    """The README's table of environment variables names every PRUNEC_* variable the package reads, and only those."""
    src = "\n".join(p.read_text() for p in (REPO / "toolchain" / "prunec").glob("*.py"))
    read = set(re.findall(r"""(?:environ(?:\.get)?[\[(]|env_int\(|getenv\()\s*["'](PRUNEC_[A-Z0-9_]+)["']""", src))
    read |= set(re.findall(r"""^\s*[A-Z_]+_ENV\s*=\s*["'](PRUNEC_[A-Z0-9_]+)["']""", src, flags=re.M))
    read |= {probe["env"] for t in TARGETS.values() for probe in t.get("probe", {}).values() if "env" in probe}
    table = TEXT["README.md"].split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(PRUNEC_[A-Z0-9_]+)", table))
    assert {"PRUNEC_THREADS", "PRUNEC_OBJECT_CACHE", "PRUNEC_TARGETS"} <= read, read  # the pattern still finds them
    assert read <= listed, f"read by prunec, not in README's table: {sorted(read - listed)}"
    assert listed <= read, f"in README's table, read nowhere: {sorted(listed - read)}"
