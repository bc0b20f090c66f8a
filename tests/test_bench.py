"""`prunec bench` on a tiny host build prints its per-layer table; the QEMU counter plugin builds (and counts,
when qemu-user and an AArch64 cross compiler are present). Benchmarks themselves are never asserted in CI."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from prunec.cli import main

ROOT = Path(__file__).resolve().parent.parent


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    pytest.importorskip("prunec.build", reason="the build step is not in this checkout")
    d = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    m = Tiny().eval()
    with torch.no_grad():
        m.fc1.weight.mul_((torch.rand_like(m.fc1.weight) < 0.1).float())
    pt2 = d / "tiny.pt2"
    torch.export.save(torch.export.export(m, (torch.randn(1, 64),)), str(pt2))
    out = d / "build"
    from click.testing import CliRunner

    r = CliRunner().invoke(main, ["build", str(pt2), "--target", "host", "--out", str(out), "--name", "tiny"])
    assert r.exit_code == 0, r.output
    return out


def test_bench_prints_table(tiny_build):
    from click.testing import CliRunner

    r = CliRunner().invoke(main, ["bench", str(tiny_build), "--reps", "2", "--min-time", "2"])
    assert r.exit_code == 0, r.output
    assert "fc1" in r.output and "fc2" in r.output
    assert "tiny_run:" in r.output and "per inference" in r.output
    assert "prunec_f32_fc_rcsr__portable" in r.output


def test_bench_json(tiny_build):
    import json

    from click.testing import CliRunner

    r = CliRunner().invoke(main, ["bench", str(tiny_build), "--reps", "1", "--min-time", "1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert len(d["layers_s"]) == len(d["layer_names"]) == 2 and d["total_s"] > 0


def test_bench_refuses_non_build(tmp_path):
    from click.testing import CliRunner

    r = CliRunner().invoke(main, ["bench", str(tmp_path)])
    assert r.exit_code == 2 and "not a prunec build directory" in r.output


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
def test_qemu_plugin_builds_and_counts(tmp_path):
    so = tmp_path / "libinsn.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror",
                    str(ROOT / "benchmarks" / "qemu_plugin" / "insn_count.c"), "-o", str(so)], check=True)
    assert so.stat().st_size > 0
    if shutil.which("qemu-aarch64") is None or shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("qemu-user (dynamic qemu-aarch64) or the AArch64 cross compiler is not installed")
    src = tmp_path / "loop.c"
    src.write_text("int main(int c, char **v) { volatile long s = 0; long i;\n"
                   "  for (i = 0; i < 1000L * (c > 1 ? 1 : 0); i++) s += i; return 0; }\n")
    exe = tmp_path / "loop"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-static", str(src), "-o", str(exe)], check=True)

    def count(*args):
        p = subprocess.run(["env", "-i", "qemu-aarch64", "-plugin", str(so), "-d", "plugin", str(exe), *args],
                           capture_output=True, text=True, timeout=60)
        line = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("insns: ")]
        assert p.returncode == 0 and line, p.stdout + p.stderr
        return int(line[0].split()[1])

    n0, n1 = count(), count("x")
    assert 1000 <= n1 - n0 <= 20000  # a 1000-iteration loop, a few instructions each


def test_bench_accepts_a_relative_path(tiny_build, monkeypatch):
    from click.testing import CliRunner

    monkeypatch.chdir(tiny_build.parent)
    r = CliRunner().invoke(main, ["bench", tiny_build.name, "--reps", "1", "--min-time", "1", "--no-layers"])
    assert r.exit_code == 0, r.output
    assert "tiny_run:" in r.output
