"""Review of what the commands print and draw: the build's compression figures against the network before
pruning (build line, bench header, manifest, export metadata), masks.png titles and schedule.png's legend,
where `prunec verify` ran, a firmware build whose size could not be measured, and the CMakeLists of cross targets."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import build_models as bm
from prunec import checkpoint as C
from prunec import report as R
from prunec import targets
from prunec import verify as V
from prunec.cli import main
from prunec.models import LeNet300

torch.set_num_threads(1)

DENSE_LENET300 = 784 * 300 + 300 * 100 + 100 * 10  # 266,200 weights, 1,064,800 B as fp32


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory):
    """A LeNet-300-100 checkpoint whose fc1 lost 100 of its 300 neurons to dead-neuron removal (fc1 200x784, fc2
    100x200), saved as `prunec prune` saves one (schedule["weights0"]: the layer sizes before pruning)."""
    from prunec.prune import remove_dead_neurons

    d = tmp_path_factory.mktemp("shrunk")
    torch.manual_seed(0)
    m = LeNet300()
    weights0 = {n: mod.weight.numel() for n, mod in m.named_modules() if isinstance(mod, nn.Linear)}
    with torch.no_grad():
        m.fc1.weight[:100] = 0  # 100 neurons without input
        m.fc1.bias[:100] = -1.0  # ReLU(-1) = 0: removable
        m.fc1.weight[100:].masked_fill_(torch.rand(200, 784) < 0.9, 0.0)
        m.fc2.weight.masked_fill_(torch.rand(100, 300) < 0.8, 0.0)
    m, masks, removed = remove_dead_neurons(m)
    assert m.fc1.weight.shape == (200, 784) and m.fc2.weight.shape == (100, 200)
    hist = [{"step": s, "compression": 1.5 * s, "accuracy_after_prune": 0.5 + 0.1 * s, "test_accuracy": 0.9 + 0.01 * s}
            for s in (1, 2, 3, 4)]
    sched = {"weights0": weights0, "history": hist, "dead_removed": removed, "step": 4, "done": True}
    ck = d / "pruned.pt"
    C.save(ck, m, "lenet300", masks=masks, kind="pruned", schedule=sched, metrics={"baseline_test_accuracy": 0.95})
    return ck


@pytest.fixture(scope="module")
def builds(shrunk, tmp_path_factory):
    """The checkpoint built for the host directly, and through `prunec export`: {"checkpoint"|"pt2": (printed line,
    manifest, build dir)}."""
    d = tmp_path_factory.mktemp("builds")
    pt2 = d / "pruned.pt2"
    run("export", shrunk, "--out", pt2)
    out = {}
    for kind, model in (("checkpoint", shrunk), ("pt2", pt2)):
        line = run("build", model, "--target", "host", "--out", d / kind)
        out[kind] = (line, json.loads((d / kind / "manifest.json").read_text()), d / kind)
    return out


# --- A: compression against the layers as built and against the network before pruning --------------------


@pytest.mark.parametrize("kind", ["checkpoint", "pt2"])
def test_build_reports_compression_against_the_network_before_pruning(builds, shrunk, kind):
    line, m, _ = builds[kind]
    t = m["totals"]
    info = json.loads(run("info", shrunk, "--json"))
    assert info["params_total"] == DENSE_LENET300
    # the existing keys keep their meaning: the layers as built (fc1 200x784, fc2 100x200)
    built = 200 * 784 + 100 * 200 + 10 * 100
    assert t["weights"] == built and t["dense_weights_bytes"] == 4 * built
    assert t["compression"] == pytest.approx(4 * built / t["weights_bytes"], rel=1e-5)
    # the new ones: the network before pruning, as `prunec info` counts it
    assert t["weights_before_pruning"] == info["params_total"]
    assert t["dense_weights_bytes_before_pruning"] == 4 * DENSE_LENET300
    assert t["compression_before_pruning"] == pytest.approx(4 * DENSE_LENET300 / t["weights_bytes"], rel=1e-5)
    layers = {l["name"]: l for l in m["layers"] if l["shape"]}
    assert {n: l["weights_before_pruning"] for n, l in layers.items()} == {"fc1": 235200, "fc2": 30000, "fc3": 1000}
    assert layers["fc1"]["weights"] == 200 * 784
    wb = t["weights_bytes"]
    assert f"weights {wb:,} B: x{4 * built / wb:.2f} vs dense layers as built ({4 * built:,} B), " \
           f"x{4 * DENSE_LENET300 / wb:.2f} vs the network before pruning (1,064,800 B)" in line, line


def test_export_stores_the_sizes_before_pruning(builds, shrunk, tmp_path):
    from prunec.export import read_metadata

    meta = read_metadata(builds["pt2"][2].parent / "pruned.pt2")
    assert meta["weights0"] == {"fc1": 235200, "fc2": 30000, "fc3": 1000} and meta["weights0_total"] == DENSE_LENET300


def test_metadata_and_sizes_read_without_loading_the_program_again(builds, shrunk, monkeypatch):
    """read_metadata takes prunec.json straight from the archive, and a checkpoint build takes the sizes from the
    checkpoint the frontend already loaded: no second deserialisation (VGG-16: 0.5 GB each)."""
    from prunec import export as E
    from prunec import frontend

    pt2 = builds["pt2"][2].parent / "pruned.pt2"

    def refuse(*a, **k):
        raise AssertionError("the program was deserialised again")

    monkeypatch.setattr(torch.export, "load", refuse)
    assert E.read_metadata(pt2)["weights0_total"] == DENSE_LENET300
    monkeypatch.undo()
    loaded = frontend.load_program(shrunk)
    assert loaded.kind == "checkpoint" and sum(loaded.weights0.values()) == DENSE_LENET300


def test_a_pt2_without_prunec_metadata_lacks_only_the_extra_figure(shrunk, tmp_path):
    from prunec import export

    pt2 = tmp_path / "plain.pt2"
    torch.export.save(export.export_program(C.load(shrunk).model, (1, 28, 28)), str(pt2))
    line = run("build", pt2, "--target", "host", "--out", tmp_path / "b")
    t = json.loads((tmp_path / "b" / "manifest.json").read_text())["totals"]
    assert t["weights_before_pruning"] is None and t["dense_weights_bytes_before_pruning"] is None
    assert t["compression_before_pruning"] is None and t["compression"] > 1
    assert "vs dense layers as built" in line and "before pruning" not in line


def test_bench_header_gives_both_figures(builds):
    from prunec.bench import BenchResult, table

    _, m, _ = builds["checkpoint"]
    t = m["totals"]
    text = table(BenchResult(name=m["name"], target="host", cflags=["-O3"], total_s=[1e-5], iters=1, manifest=m,
                             layers_requested=False))
    assert f"vs dense layers as built ({t['dense_weights_bytes']:,} B), x{t['compression_before_pruning']:.2f} vs the " \
           f"network before pruning (1,064,800 B); arena" in text, text


# --- B: report figures -------------------------------------------------------------------------------------


def _record_titles(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    titles = []
    real = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, t, *a, **kw: (titles.append(t), real(self, t, *a, **kw))[1])
    return titles


def test_mask_titles_name_both_denominators(shrunk, tmp_path, monkeypatch):
    """masks.png said "fc1 mask (200, 784): 2.5% kept" over a 200x784 matrix that is 3.8% nonzero: the % counted
    the layer before dead-neuron removal without saying so."""
    titles = _record_titles(monkeypatch)
    ck = C.load(shrunk)
    R.write_report(ck, tmp_path)
    w = ck.model.fc1.weight
    nz = int((w != 0).sum())
    (t1,) = [t for t in titles if t.startswith("fc1 mask")]
    shown, before = f"{100 * nz / w.numel():.1f}%", f"{100 * nz / 235200:.1f}%"
    assert shown != before
    assert f"{shown} of the shown matrix kept" in t1 and f"235,200 weights before pruning: {before} kept" in t1, t1
    (t3,) = [t for t in titles if t.startswith("fc3 mask")]  # not shrunk: one figure, as before
    assert t3.count("%") == 1 and t3.endswith("% kept")


def test_schedule_legend_has_every_series_and_covers_no_data(shrunk, tmp_path, monkeypatch):
    """schedule.png's legend sat in the lower left over the first points, and the compression series (right
    axis) had no entry."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figs = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **kw: (figs.append(self), real(self, *a, **kw))[1])
    ck = C.load(shrunk)
    hist = ck.schedule["history"] + [{"step": 5, "compression": 9.0, "accuracy_after_prune": 0.2,
                                      "test_accuracy": 0.5, "undone": True}]
    assert R.plot_schedule(hist, 0.95, tmp_path / "s.png")
    (fig,) = figs
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # pyplot.close left the figure without its canvas: lay it out again, as saved
    canvas.draw()
    renderer = canvas.get_renderer()
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    leg = legends[0]
    entries = [t.get_text() for t in leg.get_texts()]
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert len(lines) == 5 and sorted(entries) == sorted(ln.get_label() for ln in lines), entries
    assert any("compression" in e for e in entries)
    box = leg.get_window_extent(renderer)
    for ln in lines:
        pts = ln.get_transform().transform(np.asarray(ln.get_xydata(), dtype=float))
        covered = [tuple(p) for p in pts if np.all(np.isfinite(p)) and box.contains(*p)]
        assert not covered, (ln.get_label(), covered)
    for ax in fig.axes:  # outside the plotting area altogether
        assert not box.overlaps(ax.get_window_extent(renderer))


# --- C: where verify ran -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlp")
    m, shape = bm.make("mlp", seed=3)
    return bm.export(m, shape, d / "mlp.pt2")


def test_verify_says_target_and_runner_host(mlp, tmp_path):
    run("build", mlp, "--target", "host", "--out", tmp_path / "b")
    text = run("verify", tmp_path / "b", "--random", "3")
    assert text.splitlines()[0].startswith("target host, ran on this machine (cffi, compiled with "), text
    d = json.loads(run("verify", tmp_path / "b", "--random", "3", "--json"))
    assert d["target"] == "host" and d["runner"] == "cffi" and d["ran_under"].startswith("this machine (cffi")
    assert d["ok"] is True and d["n"] == 3  # the existing keys are still there


def test_runner_descriptions_of_the_cross_targets():
    assert V.describe_runner({"target": "cortex-m4", "runner": "qemu-system"}) == "qemu-system-arm -M mps2-an386"
    assert V.describe_runner({"target": "aarch64-neon", "runner": "qemu-user"}) == "qemu-aarch64-static -cpu cortex-a53"
    assert V.describe_runner({"target": "no-such-target", "runner": "qemu-user"}) == "qemu-user"


@pytest.mark.skipif(bool(targets.get("cortex-m4").missing_tools()), reason="arm-none-eabi-gcc / qemu-system-arm missing")
def test_verify_says_target_and_runner_cortex_m4(mlp, tmp_path):
    run("build", mlp, "--target", "cortex-m4", "--out", tmp_path / "m4")
    text = run("verify", tmp_path / "m4", "--random", "2")
    assert text.splitlines()[0] == "target cortex-m4, ran under qemu-system-arm -M mps2-an386", text
    d = json.loads(run("verify", tmp_path / "m4", "--random", "2", "--json"))
    assert (d["target"], d["runner"], d["ran_under"]) == ("cortex-m4", "qemu-system", "qemu-system-arm -M mps2-an386")


# --- firmware builds: an unmeasured size is said, and the CMakeLists of a cross target builds alone ----------

def _path_without(tmp_path, *exes):
    """A PATH of links to every executable of PATH except `exes` (the other tools stay usable)."""
    d = tmp_path / "bin"
    d.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for f in os.listdir(folder):
            src = os.path.join(folder, f)
            if f not in exes and not (d / f).exists() and os.access(src, os.X_OK) and os.path.isfile(src):
                (d / f).symlink_to(src)
    return str(d)


def test_firmware_build_without_its_compiler_warns_that_size_was_not_measured(mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_without(tmp_path, "arm-none-eabi-gcc"))
    r = CliRunner().invoke(main, ["build", str(mlp), "--target", "cortex-m4", "--out", str(tmp_path / "m4")])
    assert r.exit_code == 0, r.output
    assert "prunec: warning: libmlp.a was not compiled, so its flash and RAM were not measured" in r.output
    assert "arm-none-eabi-gcc (Debian package gcc-arm-none-eabi)" in r.output
    m = json.loads((tmp_path / "m4" / "manifest.json").read_text())
    assert m["size"]["measured"] is False


@pytest.mark.skipif(bool(targets.get("cortex-m4").missing_tools()), reason="arm-none-eabi-gcc / qemu-system-arm missing")
def test_firmware_build_without_qemu_still_measures_its_size(mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_without(tmp_path, "qemu-system-arm"))
    r = CliRunner().invoke(main, ["build", str(mlp), "--target", "cortex-m4", "--out", str(tmp_path / "m4")])
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    assert json.loads((tmp_path / "m4" / "manifest.json").read_text())["size"]["measured"] is True


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
@pytest.mark.parametrize("target, storage, objdump", [("cortex-m4", "blob", "arm-none-eabi-objdump"),
                                                      ("armv7a-neon", "c", "arm-linux-gnueabihf-objdump")])
def test_cmake_of_a_cross_target_builds_alone_with_its_compiler(mlp, tmp_path, target, storage, objdump):
    if targets.get(target).missing_tools() or shutil.which(objdump) is None:
        pytest.skip(f"{target}'s toolchain is not installed")
    run("build", mlp, "--target", target, "--out", tmp_path / "src", "--weights", storage)
    r = subprocess.run(["cmake", "-S", str(tmp_path / "src"), "-B", str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["cmake", "--build", str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr  # the host cc would reject -mthumb / -mfpu
    lib = tmp_path / "b" / "libmlp.a"
    arch = subprocess.run([objdump, "-f", str(lib)], capture_output=True, text=True).stdout
    assert "architecture: arm" in arch, arch


@pytest.mark.skipif(bool(targets.get("cortex-m4").missing_tools()), reason="arm-none-eabi-gcc / qemu-system-arm missing")
def test_size_keeps_the_shape_build_writes(mlp, tmp_path):
    run("build", mlp, "--target", "cortex-m4", "--out", tmp_path / "m4")
    built = json.loads((tmp_path / "m4" / "manifest.json").read_text())["size"]
    run("size", tmp_path / "m4")
    after = json.loads((tmp_path / "m4" / "manifest.json").read_text())["size"]
    assert built["measured"] is True and after["measured"] is True
    assert set(built) <= set(after) and after["library"] == built["library"]


# --- the generated C from a firmware engineer's review: no in-place call, no big-endian blob ------------------

def test_run_refuses_overlapping_input_output_and_arena(tmp_path):
    """A one-layer model written in place gave wrong outputs with return code 0; NAME_run now returns -3."""
    from cffi import FFI

    m = nn.Sequential(nn.Linear(16, 16))
    pt2 = bm.export(m, (16,), tmp_path / "one.pt2")
    run("build", pt2, "--target", "host", "--out", tmp_path / "b", "--name", "one")
    ffi = FFI()
    ffi.cdef("int one_run(const float *input, float *output, void *arena);")
    src = tmp_path / "b"
    ffi.set_source("_one_overlap", '#include "one.h"', sources=[str(p) for p in sorted(src.glob("*.c"))] +
                   [str(p) for p in sorted((src / "runtime").rglob("*.c"))],
                   include_dirs=[str(src), str(src / "runtime" / "include")], extra_compile_args=["-std=c99"])
    lib_path = ffi.compile(tmpdir=str(tmp_path / "cffi"), verbose=False)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_one_overlap", lib_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    buf = ffi.new("float[64]")
    arena = ffi.new("char[4096]")
    a16 = ffi.cast("void *", (int(ffi.cast("uintptr_t", arena)) + 15) & ~15)
    assert mod.lib.one_run(buf, buf, a16) == -3  # in place
    assert mod.lib.one_run(buf, buf + 8, a16) == -3  # output overlapping the input's tail
    assert mod.lib.one_run(buf, buf + 16, a16) == 0  # adjacent, not overlapping
    header = (src / "one.h").read_text()
    assert "-3 if input, output" in header and "must not overlap" in header


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_blob_refuses_a_big_endian_build(mlp, tmp_path):
    run("build", mlp, "--target", "cortex-m4", "--out", tmp_path / "b", "--weights", "blob")
    s = tmp_path / "b" / "mlp_weights.S"
    flags = ["-mcpu=cortex-m4", "-mthumb", f"-Wa,-I{tmp_path / 'b'}", "-c", str(s), "-o", str(tmp_path / "w.o")]
    assert subprocess.run(["arm-none-eabi-gcc", *flags], capture_output=True).returncode == 0
    r = subprocess.run(["arm-none-eabi-gcc", "-mbig-endian", *flags], capture_output=True, text=True)
    assert r.returncode != 0 and "little-endian" in r.stderr, r.stderr


def test_run_refuses_an_arena_overlapping_the_input_or_the_output(tmp_path):
    """NAME_run returns -3 when its arena overlaps the input or the output (a layer's output written into the arena
    may overwrite the input still being read); the model here uses its arena (three layers), and an arena merely
    adjacent to them is accepted."""
    import importlib.util

    from cffi import FFI

    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    pt2 = bm.export(m, (16,), tmp_path / "three.pt2")
    run("build", pt2, "--target", "host", "--out", tmp_path / "b", "--name", "three")
    src = tmp_path / "b"
    man = json.loads((src / "manifest.json").read_text())
    arena_bytes = man["arena_bytes"]
    assert arena_bytes > 0
    ffi = FFI()
    ffi.cdef("int three_run(const float *input, float *output, void *arena);")
    ffi.set_source("_three_overlap", '#include "three.h"', sources=[str(p) for p in sorted(src.glob("*.c"))] +
                   [str(p) for p in sorted((src / "runtime").rglob("*.c"))],
                   include_dirs=[str(src), str(src / "runtime" / "include")], extra_compile_args=["-std=c99"])
    spec = importlib.util.spec_from_file_location("_three_overlap", ffi.compile(tmpdir=str(tmp_path / "cffi")))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    n = 16 + 4 + arena_bytes // 4 + 64
    raw = ffi.new("float[]", n + 4)
    buf = ffi.cast("float *", (int(ffi.cast("uintptr_t", raw)) + 15) & ~15)  # 16-byte aligned
    inp, arena = buf, buf + 16  # arena right after the input: adjacent
    out = buf + 16 + arena_bytes // 4  # output right after the arena: adjacent
    assert mod.lib.three_run(inp, out, arena) == 0
    assert mod.lib.three_run(inp, out, buf + 12) == -3  # arena over the input's last 4 floats (16-byte aligned)
    out2, arena2 = buf + 8, buf + 4  # arena over the output (input after both)
    assert mod.lib.three_run(buf + 8 + arena_bytes // 4, out2, arena2) == -3
