"""Review of the memory planner, the encoder, target files and the cross runners (plan.py, encode.py, targets.py,
runners.py, commands_targets.py): each test states the defect it guards against."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunec import encode as E
from prunec import plan as P
from prunec import runners, targets
from prunec.errors import PrunecError
from prunec.graph import INPUT, OUTPUT, Graph, Node
from prunec.resources import targets_dir

# ---- memory plan ----------------------------------------------------------------------------------------

ELEMENTWISE = ("clamp", "sigmoid", "tanh", "softmax")


def _graph_from_ops(ops) -> Graph:
    """A graph from drawn (kind, picks, size) triples: out-of-place layers of any size (0 and 1 element
    included), elementwise layers and adds over any earlier buffer, the caller's input among them (read late:
    residuals from the input)."""
    in_size = ops[0][2]
    g = Graph((1, in_size), (1, 1))
    g.buffers[INPUT] = in_size
    avail = [INPUT]
    for i, (kind, picks, size) in enumerate(ops[1:]):
        a = avail[picks[0] % len(avail)]
        if kind == "add":
            same = [b for b in avail if g.buffers[b] == g.buffers[a]]
            ins, size = [a, same[picks[1] % len(same)]], g.buffers[a]
        elif kind in ELEMENTWISE:
            ins, size = [a], g.buffers[a]
        else:
            ins = [a]
        out = f"t{i}"
        g.buffers[out] = size
        g.nodes.append(Node(f"n{i}", kind, ins, out, [(1, g.buffers[b]) for b in ins], (1, size)))
        avail.append(out)
    last = g.nodes[-1]
    g.buffers[OUTPUT] = g.buffers.pop(last.output)
    last.output = OUTPUT
    g.output_shape = (1, g.buffers[OUTPUT])
    g.validate()
    return g


OPS = st.lists(st.tuples(st.sampled_from(["fc", "conv2d", "maxpool2d", "add", *ELEMENTWISE]),
                         st.tuples(st.integers(0, 99), st.integers(0, 99)),
                         st.sampled_from([0, 1, 2, 3, 4, 5, 16, 17, 64, 250])), min_size=2, max_size=24)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_no_node_writes_over_a_buffer_still_needed(ops):
    """Step by step, as the generated C runs: the bytes node i writes never overlap the bytes of any other buffer
    live at step i (inputs it still reads, buffers later nodes read), except the one input an elementwise node
    may overwrite; every offset 16-aligned and inside the arena; the arena at least the live-bytes bound and at
    most every slot side by side. Zero-size and one-element tensors and reads of the caller's input after other
    layers ran are drawn on purpose."""
    g = _graph_from_ops(ops)
    plan = P.make_plan(g)
    life = P.lifetimes(g)
    assert set(plan.offsets) == set(life)
    for b, off in plan.offsets.items():
        assert off % 16 == 0 and 0 <= off and off + 4 * g.buffers[b] <= plan.arena_bytes
    span = lambda b: (plan.offsets[b], plan.offsets[b] + 4 * g.buffers[b])  # noqa: E731
    for i, n in enumerate(g.nodes):
        if n.output not in plan.offsets or g.buffers[n.output] == 0:
            continue
        lo, hi = span(n.output)
        for b, (f, l) in life.items():
            if b == n.output or not f <= i <= l or g.buffers[b] == 0:
                continue
            if plan.in_place.get(i) == b:
                assert n.op in (*ELEMENTWISE, "add") and l == i and plan.offsets[b] == lo
                continue
            blo, bhi = span(b)
            assert hi <= blo or bhi <= lo, f"step {i} ({n.op}) writes {n.output} [{lo},{hi}) over live {b} [{blo},{bhi})"
    assert plan.lower_bound <= plan.arena_bytes <= max(16, sum(s.size for s in plan.slots))


# ---- encoding -------------------------------------------------------------------------------------------

def test_index_width_is_chosen_with_the_padding_each_width_needs():
    """Defect: with row alignment, choose_encoding picked b by the unpadded byte count and padded afterwards. A row
    of 7 nonzeros with one gap of 20: b = 4 needs one filler (8 entries, already a multiple of 8: 44 bytes),
    b = 8 none (7 entries: 43 bytes unpadded, 48 once padded to 8). It stored b = 8, 48 bytes, against 44."""
    w = np.zeros((1, 64), np.float32)
    w[0, [0, 20, 21, 22, 23, 24, 25]] = [1, 2, 3, 4, 5, 6, 7]
    e = E.choose_encoding(w, bits_options=(4, 8), row_align=8, allow_dense=False)
    assert e.index_bits == 4 and e.total_bytes == 44 and e.rcsr.entries == 8
    np.testing.assert_array_equal(E.decode_rcsr(e.rcsr), w)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 6), st.integers(1, 120), st.sampled_from([0.0, 0.03, 0.15, 0.5, 0.9, 1.0]),
       st.sampled_from([2, 3, 8, 16]), st.integers(0, 2**32 - 1), st.booleans())
def test_padded_choice_is_the_smallest_padded_encoding(rows, cols, density, align, seed, allow_dense):
    """The stored size is the minimum over the allowed widths of the layer as actually stored (built, then padded
    by pad_rows), or dense when that is no larger; count_entries predicts pad_rows' entries and fillers."""
    rng = np.random.default_rng(seed)
    w = np.where(rng.random((rows, cols)) < density, rng.standard_normal((rows, cols)) + 3, 0).astype(np.float32)
    sizes = {}
    for b in E.INDEX_BITS:
        p = E.pad_rows(E.encode_rcsr(w, b), align)
        assert E.count_entries(w, b, align) == (p.entries, p.fillers)
        sizes[b] = sum(p.bytes().values())
    e = E.choose_encoding(w, allow_dense=allow_dense, row_align=align, bits_options=E.INDEX_BITS)
    best = min(sizes.values())
    if allow_dense and w.size * 4 <= best:
        assert e.format == "dense" and e.total_bytes == w.size * 4
    else:
        assert e.format == "rcsr" and e.total_bytes == best == sizes[e.index_bits]
        np.testing.assert_array_equal(E.decode_rcsr(e.rcsr), w)


@pytest.mark.parametrize("bits", E.INDEX_BITS)
def test_value_type_is_kept_through_encode_pad_and_decode(bits):
    """Defect: the encoder cast every matrix to float32, so a float64 or int32 matrix (quantised values, shared-
    weight indices) came back changed (2**24 + 1 and 0.1 are not float32 values). Gaps at the maximum, fillers,
    the last column and padding in the row's highest free columns are all in the matrix."""
    span = 1 << bits
    cols = 3 * span + 5
    for dtype, vals in ((np.float64, [0.1, 1 + 2**-40, -3.0, 7.25]), (np.int32, [2**24 + 1, -5, 9, 2**30 + 3]),
                        (np.float16, [0.5, -2.0, 3.0, 6.5e4])):
        w = np.zeros((3, cols), dtype)
        w[0, [0, span, 2 * span + 1, cols - 1]] = vals  # gaps 2^b (no filler), 2^b + 1 (one filler), the last column
        w[2, [cols - 3, cols - 2, cols - 1]] = vals[:3]  # ends at the last column: padding goes below it
        r = E.encode_rcsr(w, bits)
        for x in (r, E.pad_rows(r, 8)):
            assert x.values.dtype == dtype
            d = E.decode_rcsr(x)
            assert d.dtype == dtype
            np.testing.assert_array_equal(d, w)
        e = E.choose_encoding(w, bits_options=(bits,), row_align=8, allow_dense=False)
        assert e.rcsr.values.dtype == dtype and E.count_entries(w, bits, 8)[0] == e.rcsr.entries
        np.testing.assert_array_equal(E.decode_rcsr(e.rcsr), w)
    dense = E.choose_encoding(np.full((2, 2), 2**24 + 1, np.int64))
    assert dense.format == "dense" and dense.dense.dtype == np.int64 and int(dense.dense[0, 0]) == 2**24 + 1


# ---- target files ---------------------------------------------------------------------------------------

BASE = {"name": '"t"', "isa": '["portable"]', "cc": '"cc"', "cflags": '["-O2"]'}


def _target_file(tmp_path, extra_lines=(), drop=(), raw: bytes | None = None) -> Path:
    p = tmp_path / "t.toml"
    if raw is not None:
        p.write_bytes(raw)
        return p
    lines = [f"{k} = {v}" for k, v in BASE.items() if k not in drop]
    top = [ln for ln in extra_lines if not ln.startswith("[")]
    tables = [ln for ln in extra_lines if ln.startswith("[")]
    p.write_text("\n".join(lines + top + tables) + "\n")
    return p


@pytest.mark.parametrize("lines, drop, says", [
    # each used to load (or die of a TypeError, ValueError or AttributeError later) instead of naming the field
    (['shared_library = "false"'], (), "shared_library must be true or false"),  # bool("false") is True
    (['runner = "qemu"'], (), "runner 'qemu' is not one of cffi, qemu-user, qemu-system"),
    (['cc = ["gcc"]'], ("cc",), "cc must be a non-empty string"),
    (["name = 3"], ("name",), "name must be a non-empty string"),
    (['emulator = 5'], (), "emulator must be a string"),
    (['packages = "gcc"'], (), "packages must be a table"),
    (['[packages]\ncc = 1'], (), "packages.cc must be a Debian package name"),
    (['runner = "qemu-user"'], (), "lacks the key 'emulator'"),
    (['runner = "qemu-system"', 'emulator = "qemu-system-arm"'], (), "lacks the key 'machine'"),
    (['ram_byte = 1024'], (), "unknown key 'ram_byte'; did you mean 'ram_bytes'"),  # the limit was silently unset
    (['isa = ["neno", "portable"]'], ("isa",), "unknown kernel ISA.*'neno'"),  # silently fell back to portable
    (['[isa_by_op]\nfc_rcsr = ["avx9"]'], (), r"isa_by_op.fc_rcsr names unknown kernel ISA"),
    (['probe = 1'], (), "probe must be a table"),
    (['[probe.x]\nmacros = "A"'], (), "probe.x.macros must be a list of strings"),
    (['part = "STM32"'], (), "part must be a table"),
    (['startup = "platform/nosuch.c"'], (), "startup 'platform/nosuch.c' is not a file"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_target_fields_are_named_with_the_file(tmp_path, lines, drop, says):
    p = _target_file(tmp_path, lines, drop)
    with pytest.raises(PrunecError, match=says) as e:
        targets._load(p)
    assert str(p) in str(e.value)


def test_a_target_file_that_is_not_utf8_is_named(tmp_path):
    """Defect: a binary or Latin-1 file raised UnicodeDecodeError (a traceback) instead of naming the file."""
    p = _target_file(tmp_path, raw=b'name = "t\xe9"\ncc = "cc"\n')
    with pytest.raises(PrunecError, match=r"t\.toml is unreadable"):
        targets._load(p)


def test_two_files_defining_one_target_are_refused(tmp_path, monkeypatch):
    """Defect: a second file with the name of an existing target silently replaced it (sorted last wins)."""
    for f in ("host.toml", "x86_64-avx2.toml"):
        shutil.copy(targets_dir() / f, tmp_path / f)
    (tmp_path / "zz-host-copy.toml").write_text((targets_dir() / "host.toml").read_text().replace('cc = "cc"', 'cc = "tcc"'))
    monkeypatch.setattr(targets, "targets_dir", lambda: tmp_path)
    with pytest.raises(PrunecError, match=r"host\.toml and .*zz-host-copy\.toml both define target 'host'"):
        targets.get("host")


def test_every_shipped_target_still_loads():
    """The stricter checks accept every file in targets/ (runner keys present, ISAs known, no misspelt key)."""
    ts = targets.all_targets()
    assert {"host", "x86_64-avx2", "aarch64-neon", "armv7a-neon", "cortex-m4", "cortex-m7", "cortex-m55"} <= set(ts)
    for t in ts.values():
        assert isinstance(t.shared_library, bool) and t.runner in targets.RUNNERS


def test_a_missing_tool_without_a_package_gives_a_usable_fix(tmp_path, monkeypatch):
    """Defect: a tool whose target file names no Debian package was reported as `apt-get install ?`."""
    t = replace(targets.get("host"), cc="prunec-no-such-cc", packages={"ar": "binutils"})
    with pytest.raises(PrunecError) as e:
        t.require_tools()
    msg = str(e.value)
    assert "prunec-no-such-cc" in msg and "names no Debian package" in msg and "?" not in msg
    monkeypatch.setattr(targets, "all_targets", lambda: {"t": t})
    r = CliRunner().invoke(__import__("prunec.cli", fromlist=["main"]).main, ["targets"])
    assert r.exit_code == 0 and "MISSING" in r.output and "apt-get install ?" not in r.output
    assert "names no Debian package" in r.output


# ---- runners --------------------------------------------------------------------------------------------

def _tiny_build(d: Path, t: targets.Target, body: str = "") -> dict:
    """A hand-written build directory (header, source, Makefile, manifest facts) whose tiny_run adds and
    multiplies pairs of inputs after running `body`: fast to cross-compile, and easy to make crash or hang."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiny.h").write_text("#define tiny_INPUT_SIZE 4\n#define tiny_OUTPUT_SIZE 2\n#define tiny_ARENA_BYTES 16\n"
                              "int tiny_run(const float *input, float *output, void *arena);\n")
    (d / "tiny.c").write_text('#include "tiny.h"\nint tiny_run(const float *input, float *output, void *arena) {\n'
                              f"  (void)arena;\n  {body}\n  output[0] = input[0] + input[1];\n"
                              "  output[1] = input[2] * input[3];\n  return 0;\n}\n")
    cflags = " ".join(f for f in t.cflags if f != "-fPIC")
    (d / "Makefile").write_text(f"libtiny.a: tiny.o\n\t{t.ar} rcs $@ $^\ntiny.o: tiny.c tiny.h\n\t{t.cc} {cflags} -c tiny.c -o $@\n")
    return {"name": "tiny", "target": t.name, "input_size": 4, "output_size": 2, "arena_bytes": 16,
            "files": {"header": "tiny.h"}}


X = np.arange(8, dtype=np.float32).reshape(2, 4)


def _need(name: str) -> targets.Target:
    t = targets.get(name)
    if t.missing_tools():
        pytest.skip(", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in t.missing_tools()))
    return t


def test_tiny_build_runs_on_cortex_m4(tmp_path):
    """The harness of the tests below computes the right numbers when nothing goes wrong."""
    t = _need("cortex-m4")
    m = _tiny_build(tmp_path / "b", t)
    np.testing.assert_array_equal(runners.run(tmp_path / "b", m, t, X), [[1, 6], [9, 42]])


def test_bare_metal_cpu_fault_is_reported_as_a_fault(tmp_path):
    """Defect: a HardFault (the start-up's handler exits through semihosting, QEMU status 1) read 'the runner
    failed (exit status 1)' with no output at all: nothing said the program had crashed."""
    t = _need("cortex-m4")
    m = _tiny_build(tmp_path / "b", t, "__builtin_trap();")
    with pytest.raises(PrunecError, match=r"CPU fault.*no outputs were compared"):
        runners.run(tmp_path / "b", m, t, X)


def test_user_mode_crash_names_the_signal(tmp_path):
    """Defect: a segfault under qemu-user read 'exit status -11'."""
    t = _need("aarch64-neon")
    m = _tiny_build(tmp_path / "b", t, "*(volatile int *)0 = 1;")
    with pytest.raises(PrunecError, match=r"killed by SIGSEGV \(signal 11\): the program crashed"):
        runners.run(tmp_path / "b", m, t, X)


def test_hung_bare_metal_program_times_out_clearly(tmp_path):
    t = _need("cortex-m4")
    m = _tiny_build(tmp_path / "b", t, "for (;;) { __asm__ volatile(\"\"); }")
    with pytest.raises(PrunecError, match=r"did not finish within 2 s and was stopped.*larger timeout or fewer inputs"):
        runners.run(tmp_path / "b", m, t, X, timeout=2)


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_missing_newlib_names_its_package_before_anything_is_built(tmp_path):
    """Defect: with gcc-arm-none-eabi but not newlib, make built the library into the build directory and the
    link then failed with the compiler's 'cannot read spec file' and no package named."""
    t = _need("cortex-m4")
    t = replace(t, ldflags=tuple("--specs=prunec-nosuch.specs" if f.startswith("--specs=") else f for f in t.ldflags),
                packages={**t.packages, "libc": "libnewlib-prunec-test"})
    m = _tiny_build(tmp_path / "b", t)
    before = _listing(tmp_path / "b")
    with pytest.raises(PrunecError, match=r"prunec-nosuch\.specs not found; run `apt-get install libnewlib-prunec-test`"):
        runners.run(tmp_path / "b", m, t, X)
    assert _listing(tmp_path / "b") == before  # no library, objects or runner files half-written
    with pytest.raises(PrunecError, match="libnewlib-prunec-test"):  # a program compiled directly: the same words
        runners.compile_program(t, [tmp_path / "b" / "tiny.c"], tmp_path / "x.elf")


def test_missing_cross_libc_is_named_from_the_compiler_triple(tmp_path, monkeypatch):
    """A cross gcc without its C library (libc6-dev-arm64-cross is only a Recommends of gcc-aarch64-linux-gnu):
    a compiler that finds no libc.a is refused with that package, before make writes into the build directory."""
    t = _need("aarch64-neon")
    fake = tmp_path / "bin" / "aarch64-linux-gnu-gcc"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\ncase "$1" in -print-file-name=*) echo "${1#-print-file-name=}";; *) exit 1;; esac\n')
    fake.chmod(0o755)
    t = replace(t, cc=str(fake))
    m = _tiny_build(tmp_path / "b", t)
    before = _listing(tmp_path / "b")
    with pytest.raises(PrunecError, match=r"libc\.a not found; run `apt-get install libc6-dev-arm64-cross`"):
        runners.run(tmp_path / "b", m, t, X)
    assert _listing(tmp_path / "b") == before


def test_missing_qemu_names_its_package_and_writes_nothing(tmp_path):
    t = _need("cortex-m4")
    t = replace(t, extra={**t.extra, "emulator": "qemu-system-prunec-missing"},
                packages={**t.packages, "emulator": "qemu-prunec-test"})
    m = _tiny_build(tmp_path / "b", t)
    before = _listing(tmp_path / "b")
    with pytest.raises(PrunecError, match=r"qemu-system-prunec-missing \(Debian package qemu-prunec-test\).*apt-get install"):
        runners.run(tmp_path / "b", m, t, X)
    assert _listing(tmp_path / "b") == before


# ---- encoding: the checks the round-trip tests rely on --------------------------------------------------

@pytest.mark.parametrize("bits", E.INDEX_BITS)
def test_codes_too_wide_for_the_index_are_refused_not_truncated(bits):
    """Defect: pack_codes kept the low bits of a code that does not fit (b = 4: 16 packed as 0 with a stray 1 in
    the next nibble), and decode_rcsr decoded the unpacked codes, so a round trip through decode could not see
    an encoder bug that the C kernels (reading the packed bytes) would. 16-bit codes are uint16 and cannot be
    out of range, so the bad code is built at the width's limit only for 4 and 8 bits."""
    span = 1 << bits
    w = np.zeros((2, 3 * span), np.float32)
    w[0, [1, span + 2]] = [1.0, 2.0]
    w[1, -1] = 3.0
    r = E.encode_rcsr(w, bits)
    assert E.unpack_codes(E.pack_codes(r.codes, bits), bits, r.entries).tolist() == r.codes.tolist()
    if bits < 16:
        with pytest.raises(ValueError, match=f"for {bits}-bit indices"):
            E.pack_codes(np.array([0, span], np.uint16), bits)
        bad = replace(r, codes=r.codes.copy())
        bad.codes[0] = span  # one past the largest b-bit code
        with pytest.raises(ValueError, match=f"does not fit {bits} bits"):
            E.decode_rcsr(bad)
    with pytest.raises(ValueError, match="row_ptr must rise"):
        E.decode_rcsr(replace(r, row_ptr=r.row_ptr[::-1].copy()))
    with pytest.raises(ValueError, match="row_ptr must rise"):
        E.decode_rcsr(replace(r, row_ptr=np.array([0, 1, 1], np.uint32)))  # drops entries


# ---- runners: small helpers ------------------------------------------------------------------------------

def test_semihosting_arguments_with_commas_and_the_nm_of_a_size_tool():
    """Defects: a comma in a semihosting argument (a path) split QEMU's -semihosting-config option (QEMU refused
    to start: "Invalid parameter"); the nm next to
    a size tool was derived by cutting 4 characters off its name (llvm-size-14 gave llvm-siznm, so the external
    symbols were silently not listed)."""
    m4 = targets.get("cortex-m4")
    cmd = runners.emulator_command(m4, "/tmp/a,b/prog.elf", ["in,1.f32"])
    assert cmd[cmd.index("-semihosting-config") + 1] == "enable=on,target=native,arg=/tmp/a,,b/prog.elf,arg=in,,1.f32"
    assert runners.nm_for("arm-none-eabi-size") == "arm-none-eabi-nm"
    assert runners.nm_for("/usr/bin/llvm-size-14") == "/usr/bin/llvm-nm-14"
    assert runners.nm_for("size") == "nm"


@pytest.mark.parametrize("tname", ["cortex-m4", "cortex-m55"])
def test_bare_metal_main_gets_the_semihosting_arguments(tname, tmp_path):
    """Defect: the Cortex-M start-up called main(0, NULL), so arguments given to run_program never reached the
    program (the verification runner only worked through its default file names)."""
    t = targets.get(tname)
    if t.missing_tools():
        pytest.skip(", ".join(f"{exe} not installed" for exe, _ in t.missing_tools()))
    src = tmp_path / "args.c"
    src.write_text('#include <stdio.h>\nint main(int argc, char **argv) {\n  int i;\n  printf("argc=%d\\n", argc);\n'
                   '  for (i = 1; i < argc; i++) printf("[%s]\\n", argv[i]);\n  return argc;\n}\n')
    exe = runners.compile_program(t, [src], tmp_path / "args.elf")
    r = runners.run_program(t, exe, ["in.f32", "out,1.f32"])
    assert r.returncode == 3 and r.stdout.splitlines() == ["argc=3", "[in.f32]", "[out,1.f32]"], r.stdout + r.stderr
    r = runners.run_program(t, exe)  # no arguments: the program's name only (QEMU -semihosting)
    assert r.returncode == 1 and r.stdout.splitlines() == ["argc=1"], r.stdout + r.stderr
