"""Tests from a third mutation audit of the Python side (build's board limits and layout choices, targets,
`prunec targets`/`build` CLI, bench, the object cache, atomic output, sensitivity, report, distributed): each
test is named after the mutant id(s) it kills (B: build.py, T: targets.py, C: commands_targets/commands_build,
E: bench.py, O: objcache.py, A: atomic.py, R: report.py, D: distributed.py), a behaviour a real bug would have
changed without any other test noticing."""
from __future__ import annotations

import dataclasses
import os
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import build_models as bm
from prunec import bench, distributed, encode, frontend, fuse, objcache, runtime, targets, verify
from prunec import build as B
from prunec import plan as planner
from prunec.atomic import atomic_dir
from prunec.bench import BenchResult
from prunec.cli import main
from prunec.commands_build import _acsr_hint
from prunec.errors import PrunecError
from prunec.graph import Graph, Node
from prunec.report import layer_table


def _cpu_has_avx512() -> bool:
    return {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= (verify.cpu_flags() or set())


def _host_like_target(folder, name: str, extra: str = "") -> None:
    """A user target file: the host target under another name, with `extra` lines."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(
        f'name = "{name}"\nisa = ["portable"]\ncc = "cc"\nar = "ar"\ncflags = ["-std=c99", "-O2", "-fPIC"]\n'
        f'libs = ["-lm"]\nrunner = "cffi"\nshared_library = true\n{extra}\n[packages]\ncc = "gcc"\nar = "binutils"\n')


@pytest.mark.skipif(not _cpu_has_avx512(), reason="the blocked layout is used only with the AVX-512 kernel")
def test_B03_a_layer_exactly_at_fc_bsell_max_bytes_takes_the_blocked_layout(tmp_path):
    """fc_bsell_max_bytes is the most bytes a layer may take blocked: a layer of exactly that many is blocked."""
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (300, 200, 10), 0.3, 3)
    g = frontend.load(pt2)[0]
    t = targets.get("x86_64-avx2")
    first = next(iter(B.encode_graph(g, t).values()))
    assert first.format == "bsell"
    exact = dataclasses.replace(t, extra={**t.extra, "fc_bsell_max_bytes": first.total_bytes})
    assert next(iter(B.encode_graph(g, exact).values())).format == "bsell"


def test_B04_a_fast_layout_of_exactly_the_dense_bytes_is_stored_dense():
    """_or_dense: the dense matrix wherever it takes no more bytes than the faster layout (a tie goes dense)."""
    w = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    fast = types.SimpleNamespace(value_bytes=4, total_bytes=4 * w.size, format="bsell")
    assert B._or_dense(fast, w).format == "dense"
    assert B._or_dense(types.SimpleNamespace(value_bytes=4, total_bytes=4 * w.size + 1, format="bsell"),
                       w).format == "dense"
    assert B._or_dense(types.SimpleNamespace(value_bytes=4, total_bytes=4 * w.size - 1, format="bsell"),
                       w).format == "bsell"


def _relu_fc_graph(w2: np.ndarray) -> Graph:
    """x -> fc1 (ReLU fused: out_min 0) -> fc2 (weight w2)."""
    k = w2.shape[1]
    fc1 = Node("fc1", "fc", ["input"], "t_h", [(k,)], (k,), attrs={"out_min": 0.0},
               weight=np.ones((k, k), np.float32), bias=np.zeros(k, np.float32))
    fc2 = Node("fc2", "fc", ["t_h"], "output", [(k,)], (w2.shape[0],), weight=w2,
               bias=np.zeros(w2.shape[0], np.float32))
    return Graph(input_shape=(k,), output_shape=(w2.shape[0],), nodes=[fc1, fc2])


def test_B06_relu_keeps_a_layer_exactly_at_the_minimum_nonzeros_per_input():
    """--skip-zero-inputs relu: a layer whose columns average exactly min_per_input nonzeros is stored by columns
    ("at least min_per_input")."""
    w2 = np.zeros((4, 3), np.float32)
    w2[:2, :] = 1.0  # 6 nonzeros over 3 inputs: 2 per input
    g = _relu_fc_graph(w2)
    assert "fc2" in B.zero_skipping_layers(g, "relu", min_per_input=2)
    assert "fc2" not in B.zero_skipping_layers(g, "relu", min_per_input=2.01)


def test_B07_zero_skip_break_even_of_exactly_1_is_a_valid_share(tmp_path, monkeypatch):
    """zero_skip_break_even is a share in [0, 1]: 1 (only layers whose inputs are all zero) is accepted, 1.5 not."""
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (20, 10), 0.5, 0)
    _host_like_target(tmp_path / "t", "be_one", "zero_skip_break_even = 1.0")
    _host_like_target(tmp_path / "t", "be_big", "zero_skip_break_even = 1.5")
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    files, manifest, _ = B.prepare(pt2, "be_one", skip_zero_inputs="relu")
    assert manifest["target"] == "be_one" and "manifest.json" in files
    with pytest.raises(PrunecError, match="zero_skip_break_even"):
        B.prepare(pt2, "be_big", skip_zero_inputs="relu")


def test_B09_a_model_exactly_the_size_of_the_targets_flash_fits(tmp_path, monkeypatch):
    """flash_bytes is what the board has: a build whose estimate is exactly that fits; one byte less is refused."""
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (20, 10), 0.5, 0)
    need = B.prepare(pt2, "host")[1]["totals"]["flash_bytes_estimate"]
    _host_like_target(tmp_path / "t", "exact_flash", f"flash_bytes = {need}")
    _host_like_target(tmp_path / "t", "short_flash", f"flash_bytes = {need - 1}")
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    assert B.prepare(pt2, "exact_flash")[1]["totals"]["flash_bytes_estimate"] == need
    with pytest.raises(PrunecError, match="does not fit target 'short_flash'"):
        B.prepare(pt2, "short_flash")


def test_B10_an_arena_exactly_the_size_of_the_targets_ram_fits(tmp_path, monkeypatch):
    """ram_bytes is what the board has: an arena of exactly that many bytes fits; one byte less is refused."""
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (20, 10), 0.5, 0)
    arena = B.prepare(pt2, "host")[1]["arena_bytes"]
    assert arena > 0
    _host_like_target(tmp_path / "t", "exact_ram", f"ram_bytes = {arena}")
    _host_like_target(tmp_path / "t", "short_ram", f"ram_bytes = {arena - 1}")
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    assert B.prepare(pt2, "exact_ram")[1]["arena_bytes"] == arena
    with pytest.raises(PrunecError, match="its arena needs"):
        B.prepare(pt2, "short_ram")


def test_B11_the_flash_estimate_decides_where_the_targets_size_tool_is_missing(tmp_path, monkeypatch):
    """A firmware target names a size tool, but where it is not installed the library cannot be measured: the
    estimate must then refuse a model too big for the board (else nothing checks the flash at all)."""
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (20, 10), 0.5, 0)
    _host_like_target(tmp_path / "t", "no_size_tool", 'flash_bytes = 64\nsize = "prunec-no-such-size-tool"')
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    assert targets.get("no_size_tool").missing_tools(("size",))
    with pytest.raises(PrunecError, match="does not fit target 'no_size_tool'"):
        B.build(pt2, "no_size_tool", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_B15_the_ram_hint_offers_fuse_pool_when_the_fused_arena_exactly_fits(tmp_path):
    """_ram_fix: where the fused arena is exactly the board's RAM, --fuse-pool is the fix (it fits)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 7 * 7, 10))
    g = frontend.load(bm.export(m, (1, 16, 16), tmp_path / "cp.pt2"))[0]
    cand = fuse.find_conv_pool(g)
    assert cand
    fused = planner.make_plan(fuse.planning_graph(g, cand)).arena_bytes
    assert "Build with --fuse-pool" in B._ram_fix(g, {}, fused)
    assert "would not be enough" in B._ram_fix(g, {}, fused - 1)


def test_B16_the_flash_hint_names_index_bits_for_16_bit_layers_too():
    """_flash_fix: a relative-indexed layer at 16 bits (not byte-optimal either) gets the --index-bits 1-16 hint."""
    assert "--index-bits 1-16" in B._flash_fix([{"name": "fc1", "format": "rcsr", "index_bits": 16}])
    assert "--index-bits 1-16" in B._flash_fix([{"name": "fc1", "format": "rcsr", "index_bits": 8}])
    assert "--index-bits" not in B._flash_fix([{"name": "fc1", "format": "rcsr", "index_bits": 5}])


def test_B17_calibration_measures_the_zeros_of_the_models_own_input(tmp_path):
    """--skip-zero-inputs auto: the first fc layer reads the model's input; its zero share is measured there too."""
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (8, 6, 4), 0.5, 0)
    g, loaded = frontend.load(pt2)
    first = next(n.name for n in g.nodes if n.op == "fc")
    assert next(n for n in g.nodes if n.op == "fc").inputs[0] == g.input
    x = np.ones((4, 8), np.float32)
    x[:, :6] = 0.0  # 3/4 of the inputs are zero
    shares = B.input_zero_shares(loaded.program, g, x)
    assert shares.get(first) == pytest.approx(0.75)


def test_B18_zero_skip_min_per_input_of_0_is_accepted(tmp_path, monkeypatch):
    """zero_skip_min_per_input is a number >= 0: 0 (every ReLU-fed layer, however sparse) is valid, -1 not."""
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (20, 10, 4), 0.5, 0)
    _host_like_target(tmp_path / "t", "mpi_zero", "zero_skip_min_per_input = 0")
    _host_like_target(tmp_path / "t", "mpi_neg", "zero_skip_min_per_input = -1")
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    layers = B.prepare(pt2, "mpi_zero", skip_zero_inputs="relu")[1]["layers"]
    assert [l["orientation"] for l in layers if l["op"] == "fc"][1:] == ["columns"]
    with pytest.raises(PrunecError, match="zero_skip_min_per_input"):
        B.prepare(pt2, "mpi_neg", skip_zero_inputs="relu")


def test_B20_fc_layout_wsell_windows_a_layer_of_exactly_16_inputs(tmp_path):
    """--fc-layout wsell: every sparse fc layer of at least 16 inputs (the window) takes the windowed layout."""
    assert encode.wsell_cols(4) == 16
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (16, 8), 0.5, 0)
    layers = B.prepare(pt2, "host", fc_layout="wsell")[1]["layers"]
    assert [l["format"] for l in layers] == ["wsell"]


def test_T01_missing_tools_of_some_roles_ignores_the_others(tmp_path, monkeypatch):
    """Target.missing_tools(roles) names only the tools of those roles: a missing emulator does not make the
    compiler, archiver and size tool (which `prunec build` measures the flash with) count as missing."""
    _host_like_target(tmp_path / "t", "emu_missing", 'emulator = "prunec-no-such-emulator"')
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    t = targets.get("emu_missing")
    assert t.missing_tools(("cc", "ar")) == []
    assert t.missing_tools() == [("prunec-no-such-emulator", "?")]


def test_T05_two_target_files_of_one_name_are_refused(tmp_path, monkeypatch):
    """A user target file named like one of prunec's own would silently replace it (or be ignored): refused."""
    _host_like_target(tmp_path / "t", "host")
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    with pytest.raises(PrunecError, match="both define target 'host'"):
        targets.get("host")


def test_T08_isa_by_op_keeps_portable_even_where_isa_does_not_list_it():
    """[isa_by_op]: an op's list is restricted to the ISAs the build machine kept, 'portable' always among them: an
    entry that prefers the portable kernel for one op (ISA kernel slower there) keeps that preference."""
    t = targets.Target(name="t", description="", isa=("avx2",), cc="cc", ar="ar", cflags=(),
                       extra={"isa_by_op": {"fc_rcsr": ["portable", "avx2"]}})
    assert t.isa_for("fc_rcsr") == ("portable", "avx2")
    assert runtime.select("fc_rcsr", t.isa_for("fc_rcsr")).isa == runtime.PORTABLE


def test_T12_require_tools_says_to_install_the_tools_no_package_is_named_for():
    """Two missing tools, one with a Debian package and one without: the fix names the package and says the other
    must be installed too (not only `apt-get install` of the one)."""
    t = targets.Target(name="t", description="", isa=("portable",), cc="prunec-no-such-cc", ar="prunec-no-such-ar",
                       cflags=(), packages={"cc": "gcc-prunec-test"})
    with pytest.raises(PrunecError) as e:
        t.require_tools()
    msg = str(e.value)
    assert "apt-get install gcc-prunec-test" in msg and "and install the others" in msg
    assert "prunec-no-such-ar (its target file names no Debian package" in msg


def test_C02_prunec_targets_shows_the_boards_flash_and_ram(tmp_path, monkeypatch):
    """`prunec targets`: the flash/RAM column is flash over RAM, each in KiB."""
    _host_like_target(tmp_path / "t", "board_2k_1k", "flash_bytes = 2048\nram_bytes = 1024")
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    r = CliRunner().invoke(main, ["targets"])
    assert r.exit_code == 0, r.output
    line = next(l for l in r.output.splitlines() if l.startswith("board_2k_1k"))
    assert " 2K/1K " in line


def test_C03_build_warns_only_where_the_board_check_could_not_measure(tmp_path, monkeypatch):
    """`prunec build`: a firmware target whose size tool is missing gets the "not measured" warning; a host build
    (no size measurement at all) gets none."""
    pt2, _, _ = bm.sparse_mlp_case(tmp_path, (20, 10), 0.5, 0)
    _host_like_target(tmp_path / "t", "no_size_tool2", 'size = "prunec-no-such-size-tool"')
    monkeypatch.setenv(targets.TARGETS_ENV, str(tmp_path / "t"))
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", "no_size_tool2", "--out", str(tmp_path / "fw")])
    assert r.exit_code == 0, r.output
    assert "were not measured" in r.output
    r = CliRunner().invoke(main, ["build", str(pt2), "-t", "host", "--out", str(tmp_path / "host")])
    assert r.exit_code == 0, r.output
    assert "not measured" not in r.output and "warning" not in r.output


def test_C04_the_acsr_hint_is_given_only_under_fc_layout_auto():
    """`prunec build`'s line suggesting --fc-layout acsr (Cortex-M) is for builds that left the layout to prunec:
    one that chose a layout itself (rsell, wsell) does not get it."""
    m = {"target": "cortex-m4", "layers": [{"name": "fc1", "op": "fc", "format": "rcsr", "orientation": "rows"}]}
    assert "--fc-layout acsr" in _acsr_hint(m, "auto")
    for layout in ("rcsr", "rsell", "wsell", "acsr"):
        assert _acsr_hint(m, layout) == "", layout


def test_E01_bench_refuses_zero_repetitions_before_compiling(tmp_path):
    """--reps 0 would time nothing (the median of no repetitions): refused, naming --reps, before the build is
    even looked at."""
    with pytest.raises(PrunecError, match="--reps must be at least 1"):
        bench.check_settings(0, 0.05)
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "nowhere"), "--reps", "0"])
    assert r.exit_code != 0 and "--reps must be at least 1" in r.output, r.output


def test_E03_E04_bench_reports_medians_and_takes_the_clock_read_off_each_layer():
    """BenchResult: the whole-network figure is the median of the repetitions (one slow repetition does not move
    it), each layer's the median of its repetitions less the measured cost of one clock read (not below 0)."""
    r = BenchResult("m", "host", ["-O3"], total_s=[1.0, 2.0, 30.0],
                    layers_s=[[5.0, 0.1], [6.0, 0.2], [100.0, 0.3]], clock_cost_s=0.5)
    assert r.total == 2.0
    assert r.layer_medians() == [5.5, 0.0]
    assert r.as_dict()["layers_s"] == [5.5, 0.0] and r.as_dict()["total_s"] == 2.0


class _FakeLib:
    def __init__(self, costs):
        self.costs = iter(costs)

    def prunec_bench_clock_cost(self, n):
        return next(self.costs)


def test_E05_E06_bench_takes_the_cheapest_clock_read_and_times_layers_over_the_calibrated_count():
    """bench(): the clock's cost is the least of its three measurements (noise only adds); each repetition times
    the whole network and then the layers over the same calibrated number of inferences, interleaved."""
    calls = []
    cb = types.SimpleNamespace(
        name="m", manifest={"target": "host", "layers": [{"name": "fc1"}]}, cflags=["-O3"], nlayers=1,
        lib=_FakeLib([3e-9, 1e-9, 2e-9]), calibrate=lambda target_s: 37,
        run_total=lambda iters: calls.append(("total", iters)) or 1e-3,
        run_layers=lambda iters: calls.append(("layers", iters)) or [5e-4])
    r = bench.bench("unused", reps=3, target_s=0.01, cb=cb)
    assert r.clock_cost_s == 1e-9 and r.iters == 37
    assert calls == [("total", 37), ("layers", 37)] * 3


def _c_tree(root, value: int):
    (root / "inc").mkdir(parents=True)
    (root / "inc" / "k.h").write_text(f"#define K {value}\n")
    src = root / "kernel.c"
    src.write_text('#include "k.h"\nint kernel(int x) { return x * K; }\n')
    return src, root / "inc"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (Debian package gcc)")
def test_O03_the_shared_cache_compiles_under_a_temporary_name(tmp_path, monkeypatch):
    """PRUNEC_OBJECT_CACHE: the compiler writes the object under a temporary name of this process and it is
    renamed into place, so another process sharing the folder never picks up half an object."""
    monkeypatch.setenv("PRUNEC_OBJECT_CACHE", str(tmp_path / "objs"))
    monkeypatch.setattr(objcache, "_OBJECTS", {})
    outs = []
    real_run = objcache.subprocess.run

    def run(cmd, *a, **k):
        if "-c" in cmd:
            outs.append(cmd[cmd.index("-o") + 1])
        return real_run(cmd, *a, **k)

    monkeypatch.setattr(objcache.subprocess, "run", run)
    src, inc = _c_tree(tmp_path / "a", 3)
    [obj] = objcache.compile_objects("cc", ["-O2"], [src], [inc], tmp_path)
    assert Path(obj).is_file() and len(outs) == 1
    assert outs[0] != obj and Path(outs[0]).name.startswith(".") and outs[0].endswith(".tmp")
    assert not Path(outs[0]).exists()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (Debian package gcc)")
def test_O04_an_object_removed_from_the_cache_is_compiled_again(tmp_path, monkeypatch):
    """An object this process compiled and that has since been removed (the shared folder cleaned) is compiled
    again, not handed to the linker as a path to nothing."""
    monkeypatch.setenv("PRUNEC_OBJECT_CACHE", str(tmp_path / "objs"))
    monkeypatch.setattr(objcache, "_OBJECTS", {})
    src, inc = _c_tree(tmp_path / "a", 3)
    [obj] = objcache.compile_objects("cc", ["-O2"], [src], [inc], tmp_path)
    Path(obj).unlink()
    [again] = objcache.compile_objects("cc", ["-O2"], [src], [inc], tmp_path)
    assert Path(again).is_file()


def test_A03_atomic_dir_refuses_to_replace_a_file(tmp_path):
    """A build directory's --out naming an existing file is refused, and the file is left as it was (replacing it
    would delete the user's file)."""
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    with pytest.raises(PrunecError, match="a file of that name exists"):
        with atomic_dir(f) as tmp:
            (tmp / "x").write_text("new")
    assert f.is_file() and f.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_R01_R02_layer_table_counts_conv1d_macs_per_output_position():
    """report.layer_table: a Conv1d's MACs are its weights times its output length (dense and nonzero)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 8, 4))
    with torch.no_grad():
        m[0].weight[0].zero_()
    rows = {r["name"]: r for r in layer_table(m, (1, 10))}
    conv = rows["0"]
    assert conv["weights"] == 6 and conv["nonzero"] == 3
    assert conv["macs"] == 6 * 8 and conv["macs_nonzero"] == 3 * 8
    assert rows["2"]["macs"] == 64


@pytest.mark.parametrize("value", ["inf", "0", "-5", "nan", "soon"])
def test_D01_prunec_dist_timeout_must_be_a_finite_positive_number(monkeypatch, value):
    """PRUNEC_DIST_TIMEOUT: seconds, > 0 and finite (an infinite timeout would let a stuck rank hang forever)."""
    monkeypatch.setenv("PRUNEC_DIST_TIMEOUT", value)
    with pytest.raises(PrunecError, match="PRUNEC_DIST_TIMEOUT"):
        distributed.timeout_s()
    monkeypatch.setenv("PRUNEC_DIST_TIMEOUT", "12.5")
    assert distributed.timeout_s() == 12.5


@pytest.mark.parametrize("key", ["flash", "ram"])
def test_T03_a_misspelt_memory_limit_key_is_refused(tmp_path, monkeypatch, key):
    """`flash = ...` / `ram = ...` for flash_bytes / ram_bytes would silently drop the board's limit: refused."""
    _host_like_target(tmp_path / "t", "typo", f"{key} = 1024")
    with pytest.raises(PrunecError, match=f"unknown key '{key}'; did you mean '{key}_bytes'"):
        targets._load(tmp_path / "t" / "typo.toml")  # ("flash" was once taken for a typo of "cflags")


def test_T10_a_negative_part_memory_size_is_refused(tmp_path):
    """[part] flash_bytes / ram_bytes are whole numbers of bytes >= 0, like the target's own."""
    _host_like_target(tmp_path / "t", "neg_part", "[part]\nflash_bytes = -1")
    with pytest.raises(PrunecError, match="part.flash_bytes"):
        targets._load(tmp_path / "t" / "neg_part.toml")


def test_O02_the_compiler_identity_changes_with_the_executables_time(tmp_path, monkeypatch):
    """PRUNEC_OBJECT_CACHE keys on the compiler executable's size and modification time besides --version: a
    compiler rebuilt in place with the same size and version text gives another key."""
    cc = tmp_path / "fakecc"
    cc.write_text("#!/bin/sh\necho fakecc 1.0\n")
    cc.chmod(0o755)
    monkeypatch.setattr(objcache, "_CC_IDS", {})
    first = objcache._cc_identity([str(cc)])
    st = cc.stat()
    os.utime(cc, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    monkeypatch.setattr(objcache, "_CC_IDS", {})
    assert objcache._cc_identity([str(cc)]) != first
