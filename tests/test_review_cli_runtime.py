"""Review of the CLI's top-level error handling, the kernel registry's selection and Graph.validate."""
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from prunec import runtime
from prunec import targets as T
from prunec.cli import main
from prunec.errors import PrunecError
from prunec.graph import INPUT, OUTPUT, Graph, Node

PRUNEC = [sys.executable, "-m", "prunec"]


def _cli(args, stdout):
    return subprocess.run([*PRUNEC, *args], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)


@pytest.mark.parametrize("args", [["targets", "--json"], ["--version"]])
def test_write_error_on_stdout_is_one_line_not_a_traceback(args):
    # `prunec info --json > out.json` on a full disk: the system's message, exit 1, no traceback
    with open("/dev/full", "w") as full:
        r = _cli(args, full)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == ["prunec: error: [Errno 28] No space left on device"]


def test_closed_pipe_ends_quietly():
    # `prunec targets --json | head -1`: the reader is gone before the output is written
    rfd, wfd = os.pipe()
    os.close(rfd)
    try:
        r = _cli(["targets", "--json"], wfd)
    finally:
        os.close(wfd)
    assert r.returncode == 1
    assert r.stderr == ""


def _raise(exc):
    def f(*a, **k):
        raise exc
    return f


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch):
    monkeypatch.setattr(T, "all_targets", _raise(KeyboardInterrupt()))
    r = CliRunner().invoke(main, ["targets"])
    assert r.exit_code == 130
    assert "interrupted (Ctrl-C)" in r.output and "Aborted!" not in r.output


def test_eoferror_inside_a_command_is_not_reported_as_aborted(monkeypatch):
    # click reads any EOFError as the user closing a prompt ("Aborted!"); here it is a defect, keep the trace
    monkeypatch.setattr(T, "all_targets", _raise(EOFError("truncated stream")))
    r = CliRunner().invoke(main, ["targets"])
    assert r.exit_code == 1
    assert "Aborted!" not in r.output
    assert "EOFError: truncated stream" in r.output and "Traceback" in r.output


def test_prunec_error_and_usage_errors(monkeypatch):
    monkeypatch.setattr(T, "all_targets", _raise(PrunecError("bad target file x.toml: fix it")))
    r = CliRunner().invoke(main, ["targets"])
    assert (r.exit_code, r.output) == (2, "prunec: error: bad target file x.toml: fix it\n")
    for args in (["nosuch"], ["targets", "--bogus"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "Usage: " in r.output and "Traceback" not in r.output


def test_select_skips_isas_without_a_kernel_and_falls_back_to_portable():
    assert runtime.select("softmax", ("avx512x4", "neon")).isa == "portable"
    assert runtime.select("maxpool2d", ("neon", "avx512x4")).isa == "avx512x4"
    with pytest.raises(KeyError, match="no kernel for op 'nosuch'"):
        runtime.select("nosuch", ("avx2",))
    # every kernel's sources: the callee of a PRUNEC_KERNEL_USES line comes with its caller
    k = runtime.select("maxpool2d", ("avx512x4",))
    assert set(runtime.sources_for([k])) == {k.source, runtime.select("maxpool2d").source}


def _graph():
    g = Graph((1, 4), (1, 3))
    g.buffers = {INPUT: 4, "t0": 6, OUTPUT: 3}
    g.nodes = [Node("a", "fc", [INPUT], "t0", [(1, 4)], (1, 6)),
               Node("b", "fc", ["t0"], OUTPUT, [(1, 6)], (1, 3))]
    return g


def test_validate_accepts_a_good_graph():
    _graph().validate()


def test_validate_refuses_inputs_without_shapes():
    # an add whose second input has no recorded shape: zip() dropped it, an unwritten buffer went unnoticed
    g = _graph()
    g.nodes[1] = Node("b", "add", ["t0", "nowhere"], OUTPUT, [(1, 6)], (1, 6))
    g.buffers[OUTPUT] = 6
    g.output_shape = (1, 6)
    with pytest.raises(ValueError, match="2 inputs"):
        g.validate()


@pytest.mark.parametrize("where", ["input", "output"])
def test_validate_unknown_buffer_is_a_valueerror(where):
    g = _graph()
    if where == "input":
        g.nodes[1].inputs = ["ghost"]
        g.nodes.insert(1, Node("g", "clamp", ["t0"], "ghost", [(1, 6)], (1, 6)))
    else:
        g.nodes[0].output = "ghost"
        g.nodes[1].inputs = ["ghost"]
    with pytest.raises(ValueError, match="ghost"):
        g.validate()


def test_validate_refuses_cycles_and_double_writes():
    g = _graph()
    g.nodes.reverse()  # b reads t0 before a writes it (a cycle can only be listed this way)
    with pytest.raises(ValueError, match="before it is written"):
        g.validate()
    g = _graph()
    g.nodes[1].output = "t0"
    with pytest.raises(ValueError, match="written twice"):
        g.validate()
