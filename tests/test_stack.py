"""The stack of NAME_run: the static worst case from GCC's call graph (prunec.stack, recorded by `prunec build` for
firmware targets and by `prunec size`), counted in the board's RAM check, and the stack one inference really took,
painted by the emulated runner and reported by `prunec verify` beside the bound."""
import json
import re
import shutil

import pytest
from click.testing import CliRunner

import build_models as bm
from prunec import stack, targets
from prunec.cli import main
from prunec.errors import PrunecError
from prunec.resources import targets_dir


def _ci(title: str, *items: str) -> str:
    return f'graph: {{ title: "{title}"\n' + "\n".join(items) + "\n}\n"


def _node(title, frame=None, qual="static", name=None):
    name = name or title.rsplit(":", 1)[-1]
    label = f"{name}\\nf.c:1:1" + (f"\\n{frame} bytes ({qual})" if frame is not None else "")
    return f'node: {{ title: "{title}" label: "{label}"' + (" }" if frame is not None else ' shape : ellipse }')


def _edge(a, b):
    return f'edge: {{ sourcename: "{a}" targetname: "{b}" label: "f.c:2:3" }}'


def test_the_deepest_chain_across_files_wins_and_static_names_stay_apart():
    # m_run -> k1 (defined in b.c) -> b.c:helper; m_run -> k2 -> c.c:helper (another static function of that name)
    a = _ci("a.c", _node("m_run", 100), _node("k1"), _node("k2"), _edge("m_run", "k1"), _edge("m_run", "k2"))
    b = _ci("b.c", _node("k1", 40), _node("b.c:helper", 500), _edge("k1", "b.c:helper"))
    c = _ci("c.c", _node("k2", 1000), _node("c.c:helper", 8), _node("memcpy"), _edge("k2", "c.c:helper"),
            _edge("c.c:helper", "memcpy"))
    nodes, edges = stack.parse_callgraph([a, b, c])
    r = stack.worst_case(nodes, edges, "m_run")
    assert r["bytes"] == 100 + 1000 + 8
    assert [p["function"] for p in r["path"]] == ["m_run", "k2", "helper"]
    assert [p["frame_bytes"] for p in r["path"]] == [100, 1000, 8]
    assert r["bounded"] and r["external_calls"] == ["memcpy"]


@pytest.mark.parametrize("case, why", [
    ("recursion", "recursion through f"),
    ("pointer", "function pointer"),
    ("vla", "dynamic"),
])
def test_what_makes_the_figure_no_bound_is_said(case, why):
    items = [_node("m_run", 16), _edge("m_run", "f")]
    if case == "recursion":
        items += [_node("f", 32), _node("g", 8), _edge("f", "g"), _edge("g", "f")]
    elif case == "pointer":
        items += [_node("f", 32), _node("__indirect_call"), _edge("f", "__indirect_call")]
    else:
        items += [_node("f", 32, "dynamic")]
    nodes, edges = stack.parse_callgraph([_ci("a.c", *items)])
    r = stack.worst_case(nodes, edges, "m_run")
    assert not r["bounded"] and any(why in u for u in r["unbounded_because"]), r
    assert r["bytes"] >= 48
    bounded = stack.parse_callgraph([_ci("a.c", _node("m_run", 16), _node("f", 32, "dynamic,bounded"), _edge("m_run", "f"))])
    assert stack.worst_case(*bounded, "m_run")["bounded"]


def test_a_root_without_a_frame_is_an_error():
    nodes, edges = stack.parse_callgraph([_ci("a.c", _node("other", 8))])
    with pytest.raises(PrunecError, match="m_run"):
        stack.worst_case(nodes, edges, "m_run")


def _host_build(tmp_path, case="conv3_pad1"):
    m, shape = bm.make(case, seed=3)
    pt2 = bm.export(m, shape, tmp_path / f"{case}.pt2")
    out = tmp_path / "b"
    r = CliRunner().invoke(main, ["build", str(pt2), "--target", "host", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_prunec_size_records_the_stack_of_a_host_build(tmp_path):
    out = _host_build(tmp_path)
    r = CliRunner().invoke(main, ["size", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    st, lib = m["size"]["stack"], m["size"]["library"]
    assert st["measured"] and st["bounded"], st
    assert st["path"][0]["function"] == f"{m['name']}_run" and st["bytes"] == sum(f["frame_bytes"] for f in st["path"])
    assert len(st["path"]) >= 2  # NAME_run calls a kernel
    assert lib["stack"] == st["bytes"] and lib["ram_with_stack"] == lib["ram"] + st["bytes"]
    assert re.search(rf"stack of {m['name']}_run: [\d,]+ bytes below its caller", r.output), r.output
    assert not list(out.rglob("*.su")) and not list(out.rglob("*.ci"))  # measured in a scratch folder


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")
def test_a_compiler_without_call_graphs_leaves_the_stack_unmeasured(tmp_path, monkeypatch):
    out = _host_build(tmp_path)
    monkeypatch.setenv("CC", "clang")  # the Makefile takes CC from the environment, so make -n names clang
    r = CliRunner().invoke(main, ["size", str(out)])
    assert r.exit_code == 0, r.output
    st = json.loads((out / "manifest.json").read_text())["size"]["stack"]
    assert st["measured"] is False and "callgraph" in st["reason"], st
    assert "stack not measured" in r.output


def _need(name):
    t = targets.get(name)
    if t.missing_tools():
        pytest.skip(", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in t.missing_tools()))
    return t


@pytest.mark.parametrize("tname", ["cortex-m4", "armv7a-neon"])
def test_the_painted_stack_stays_within_the_static_bound(tmp_path, tname):
    _need(tname)
    m, shape = bm.make("pools", seed=2)
    pt2 = bm.export(m, shape, tmp_path / "pools.pt2")
    out = tmp_path / tname
    r = CliRunner().invoke(main, ["build", str(pt2), "--target", tname, "--out", str(out)])
    assert r.exit_code == 0, r.output
    if tname != "cortex-m4":  # the firmware targets record it at build time, the others on `prunec size`
        assert CliRunner().invoke(main, ["size", str(out)]).exit_code == 0
    bound = json.loads((out / "manifest.json").read_text())["size"]["stack"]
    assert bound["measured"] and bound["bounded"] and bound["bytes"] > 0
    r = CliRunner().invoke(main, ["verify", str(out), "--random", "2", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    used = rep["stack_bytes_used"]
    assert rep["stack_bytes_bound"] == bound["bytes"] and not rep["stack_saturated"]
    # the painted figure is measured from a frame main calls, the bound from NAME_run's own: they differ by a
    # frame of a few words at most, and the bound is never below the real use
    assert 0 < used <= bound["bytes"] and bound["bytes"] - used <= 64, (used, bound)


def test_the_ram_check_counts_the_stack(tmp_path, monkeypatch):
    _need("cortex-m4")
    m, shape = bm.make("pools", seed=2)
    pt2 = bm.export(m, shape, tmp_path / "pools.pt2")
    r = CliRunner().invoke(main, ["build", str(pt2), "--target", "cortex-m4", "--out", str(tmp_path / "ok")])
    assert r.exit_code == 0, r.output
    lib = json.loads((tmp_path / "ok" / "manifest.json").read_text())["size"]["library"]
    assert lib["stack"] > 0
    # a board whose RAM holds the arena and data but not the stack as well
    mine = tmp_path / "boards"
    mine.mkdir()
    text = (targets_dir() / "cortex-m4.toml").read_text()
    text = re.sub(r'^name = ".*"$', 'name = "tight-m4"', text, count=1, flags=re.M)
    text = re.sub(r"^ram_bytes = .*$", f"ram_bytes = {lib['ram'] + lib['stack'] // 2}", text, count=1, flags=re.M)
    (mine / "tight-m4.toml").write_text(text)
    monkeypatch.setenv(targets.TARGETS_ENV, str(mine))
    out = tmp_path / "tight"
    r = CliRunner().invoke(main, ["build", str(pt2), "--target", "tight-m4", "--out", str(out)])
    assert r.exit_code != 0 and "does not fit target 'tight-m4'" in r.output, r.output
    assert f"the stack of {json.loads((tmp_path / 'ok' / 'manifest.json').read_text())['name']}_run" in r.output
    assert not out.exists()  # nothing half-written
