"""Target files (targets/*.toml), `prunec targets`, the AVX-512 build-time probe, and missing-tool errors."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from prunec import runners, targets
from prunec.resources import targets_dir
from prunec.cli import main
from prunec.errors import PrunecError

EXPECTED = {
    "host": ("cffi", None),
    "x86_64-avx2": ("cffi", None),
    "aarch64-neon": ("qemu-user", None),
    "armv7a-neon": ("qemu-user", None),
    "cortex-m4": ("qemu-system", "mps2-an386"),
    "cortex-m7": ("qemu-system", "mps2-an500"),
    "cortex-m55": ("qemu-system", "mps3-an547"),
    "cortex-m33": ("qemu-system", "mps2-an505"),
}


def test_every_target_file_loads_with_its_contract():
    ts = targets.all_targets()
    assert set(EXPECTED) <= set(ts)
    for name, (runner, machine) in EXPECTED.items():
        t = ts[name]
        assert t.runner == runner and t.extra.get("machine") == machine, name
        assert t.isa[-1] == "portable" and t.cc and t.ar
        assert all(role in t.packages for role in t.tools()), f"{name}: every tool names its Debian package"
    # the hard-float ABIs and FPUs are part of the contract
    assert {"-mfpu=neon-vfpv4", "-mfloat-abi=hard"} <= set(ts["armv7a-neon"].cflags)
    assert {"-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"} <= set(ts["cortex-m4"].cflags)
    assert {"-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"} <= set(ts["cortex-m7"].cflags)
    assert {"-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"} <= set(ts["cortex-m55"].cflags)
    assert ts["cortex-m55"].isa == ("mve", "cortexm", "portable")
    assert "-static" in ts["aarch64-neon"].ldflags and "-static" in ts["armv7a-neon"].ldflags
    assert {"-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"} <= set(ts["cortex-m33"].cflags)
    assert ts["cortex-m33"].isa == ("cortexm", "portable")
    for name in ("cortex-m4", "cortex-m7", "cortex-m55", "cortex-m33"):
        t = ts[name]
        assert t.flash_bytes > 0 and t.ram_bytes > 0
        # the vector table where the core reads it at reset: 0 on the MPS2/MPS3 boards, the Secure alias of
        # SSRAM1 on the Armv8-M AN505 (SVTOR)
        vectors = "0x10000000" if name == "cortex-m33" else "0x0"
        assert "--specs=rdimon.specs" in t.ldflags and f"-Wl,--section-start=.vectors={vectors}" in t.ldflags
        assert t.extra["startup"] and t.extra["size"] == "arm-none-eabi-size"
    assert {"-mavx2", "-mfma"} <= set(ts["x86_64-avx2"].cflags)


def test_avx512_probe_follows_the_environment(monkeypatch):
    monkeypatch.setenv("PRUNEC_AVX512", "0")
    t = targets.get("x86_64-avx2")
    assert "avx512" not in t.isa and not any(f.startswith("-mavx512") for f in t.cflags)
    monkeypatch.setenv("PRUNEC_AVX512", "1")
    t = targets.get("x86_64-avx2")
    assert t.isa[0] == "avx512" and "-mavx512f" in t.cflags


def test_prunec_targets_lists_every_target_and_its_toolchain():
    r = CliRunner().invoke(main, ["targets"])
    assert r.exit_code == 0, r.output
    for name in EXPECTED:
        assert name in r.output
    rows = json.loads(CliRunner().invoke(main, ["targets", "--json"]).output)
    by = {row["name"]: row for row in rows}
    assert by["cortex-m55"]["isa"] == ["mve", "cortexm", "portable"]
    for row in rows:
        assert row["installed"] == (not row["missing"])


def test_missing_tool_names_its_debian_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    r = CliRunner().invoke(main, ["targets"])
    assert r.exit_code == 0
    assert "MISSING" in r.output and "apt-get install gcc-arm-none-eabi" in r.output
    t = targets.get("aarch64-neon")
    with pytest.raises(PrunecError, match=r"aarch64-linux-gnu-gcc \(Debian package gcc-aarch64-linux-gnu\)"):
        t.require_tools()


def test_bogus_compiler_is_a_clear_error(tmp_path):
    t = replace(targets.get("cortex-m4"), cc="arm-bogus-eabi-gcc", packages={"cc": "gcc-arm-bogus-eabi"})
    with pytest.raises(PrunecError, match="gcc-arm-bogus-eabi"):
        runners.compile_program(t, [tmp_path / "x.c"], tmp_path / "x.elf")
    t = replace(targets.get("cortex-m4"), extra={**targets.get("cortex-m4").extra, "emulator": "qemu-bogus"},
                packages={**targets.get("cortex-m4").packages, "emulator": "qemu-bogus-pkg"})
    with pytest.raises(PrunecError, match="qemu-bogus-pkg"):
        runners.run_program(t, tmp_path / "x.elf")


def test_emulator_commands():
    a64 = targets.get("aarch64-neon")
    assert runners.emulator_command(a64, "/p", ["a", "b"]) == ["qemu-aarch64-static", "-cpu", "cortex-a53", "/p", "a", "b"]
    m4 = targets.get("cortex-m4")
    cmd = runners.emulator_command(m4, "prog.elf")
    assert cmd[:3] == ["qemu-system-arm", "-M", "mps2-an386"] and "-semihosting" in cmd and cmd[-2:] == ["-kernel", "prog.elf"]


def test_index_widths_per_op_and_bad_tables(tmp_path):
    from prunec import encode

    t = targets.get("host")
    assert t.index_bits_for("fc") == (8, 16) and t.index_bits_for("conv2d") == encode.FAST_INDEX_BITS
    t2 = replace(t, extra={**t.extra, "index_bits_by_op": {"fc": [4, 8, 16]}})
    assert t2.index_bits_for("fc") == (4, 8, 16)
    base = (targets_dir() / "host.toml").read_text()
    for table, msg in (('[index_bits_by_op]\nfc = [4, 17]\n', "index widths must be"),
                       ('[index_bits_by_op]\nfc = []\n', "index widths must be"),
                       ('[index_bits_by_op]\npool = [8]\n', "takes the keys fc and conv2d")):
        f = tmp_path / "t.toml"
        f.write_text(base + "\n" + table)
        with pytest.raises(PrunecError, match=msg):
            targets._load(f)


@pytest.mark.parametrize("line, says", [
    ('isa = "neon"', "isa must be a list of strings"),
    ("isa = []", "isa is empty"),
    ('cflags = "-O2"', "cflags must be a list of strings"),
    ('flash_bytes = "1M"', "flash_bytes must be a whole number"),
    ("ram_bytes = -1", "ram_bytes must be a whole number"),
])
def test_malformed_target_file_fields_are_named(tmp_path, line, says):
    base = {"name": '"t"', "isa": '["portable"]', "cc": '"cc"', "cflags": '["-O2"]', "flash_bytes": "0", "ram_bytes": "0"}
    key = line.split(" = ")[0]
    base[key] = line.split(" = ", 1)[1]
    p = tmp_path / "t.toml"
    p.write_text("".join(f"{k} = {v}\n" for k, v in base.items()))
    with pytest.raises(PrunecError, match=says):
        targets._load(p)
