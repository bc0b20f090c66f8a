"""`prunec build`: MODEL -> frontend -> encode -> plan -> codegen -> a build directory, written atomically.

Everything is computed in memory first; only then is the directory written, through prunec.atomic.atomic_dir
(an existing directory is replaced in one rename, a failure leaves the old one untouched and no temporary
behind). Nothing in the output depends on the time, the machine or the output path, so two builds of one
model are byte-identical.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from . import codegen, frontend, fuse, plan as planner, runtime
from . import targets as targets_mod
from .atomic import atomic_dir
from .checkpoint import sha256 as sha256_file
from .encode import (BSELL_MAX_ROWS, WSELL_ROWS, Encoding, as_acsr, as_bsell, as_rsell, as_wsell, check_index_bits,
                     check_row_align, choose_encoding, dense_encoding, encode_wsell, index_bits_for, stored,
                     wsell_cols, wsell_min_steps)
from .errors import PrunecError
from .graph import Graph, numel, shared_weights
from .resources import runtime_dir
from .verify import cpu_vendor, gathers_slowed

MANIFEST_FORMAT = "prunec-build"
MANIFEST_VERSION = 1


SKIP_ZERO_INPUTS = ("none", "relu", "auto", "all")
# --skip-zero-inputs auto: a layer is stored by columns when the measured share of zeros in its input is at least the
# target's break-even (`zero_skip_break_even`, docs/BUILD.md "Skipping zero inputs"; this default where a target
# gives none) and its columns hold at least min_per_input nonzeros
BREAK_EVEN = 0.5
# --skip-zero-inputs relu leaves out layers whose columns hold fewer nonzeros than this on average: there the
# per-input work (test, pointers) outweighs the entries skipped (LeNet-5 fc2, 3 per input: 2x the row kernel's
# Cortex-M4 instructions at 66 % zero inputs; lenet300.fc2, 9 per input: 0.82x; docs/BUILD.md). A target may set its
# own (`zero_skip_min_per_input`: 20 on the NEON targets, whose row kernels are the tightest)
RELU_MIN_PER_INPUT = 8


def _nonnegative(g: Graph, buffer: str) -> bool:
    """Whether `buffer` is a ReLU's output (a clamp to [0, ...] fused into the layer that writes it, or a clamp
    layer), possibly max-pooled since: the inputs whose zeros a column-major fc layer skips."""
    for n in g.nodes:
        if n.output == buffer:
            lo = n.attrs.get("out_min")
            if lo is not None and lo >= 0:
                return True
            return n.op == "maxpool2d" and _nonnegative(g, n.inputs[0])
    return False


def input_zero_shares(program, g: Graph, samples: np.ndarray) -> dict[str, float]:
    """Per fc layer, the share of its input's elements that are exactly zero over `samples` [N, *sample], measured by
    running the PyTorch program (its fx graph, one sample at a time) and reading the tensor each layer's input buffer
    holds (buffers are named after the fx node that writes them; views keep the writer's). Layers whose input cannot
    be traced back are left out."""
    import torch

    where: dict[str, list[str]] = {}  # fx node name (or the graph input) -> fc layers reading it
    for n in g.nodes:
        if n.op == "fc":
            b = n.inputs[0]
            where.setdefault(g.input if b == g.input else b[2:] if b.startswith("t_") else "", []).append(n.name)
    counts = {k: [0, 0] for k in where if k}
    gm = program.module()

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            c = counts.get(node.name)
            if c is not None and torch.is_tensor(out):
                c[0] += int((out == 0).sum())
                c[1] += out.numel()
            return out

    rec = _Recorder(gm)
    with torch.no_grad():
        for x in samples:
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(g.input_shape)
            if g.input in counts:
                counts[g.input][0] += int((t == 0).sum())
                counts[g.input][1] += t.numel()
            rec.run(t)
    return {layer: counts[k][0] / counts[k][1] for k, layers in where.items() if k in counts and counts[k][1]
            for layer in layers}


def zero_skipping_layers(g: Graph, spec: str | None, min_per_input: float = RELU_MIN_PER_INPUT,
                         shares: dict[str, float] | None = None, break_even: float = BREAK_EVEN) -> frozenset[str]:
    """The fc layers `prunec build --skip-zero-inputs SPEC` stores column by column (their kernel skips zero inputs,
    docs/BUILD.md "Skipping zero inputs"): 'none', 'relu' (those whose input is a ReLU's output and whose columns
    average at least `min_per_input` nonzeros), 'auto' (those whose measured input zero share, `shares`, is at least
    `break_even`, with the same minimum per column), 'all', or layer names separated by commas."""
    spec = (spec or "none").strip()
    fcs = [n.name for n in g.nodes if n.op == "fc"]
    if spec == "none":
        return frozenset()
    if spec == "all":
        return frozenset(fcs)

    def dense_enough(n) -> bool:  # a column holds enough entries to outweigh the per-input cost of the scatter
        return np.count_nonzero(n.weight) >= min_per_input * n.weight.shape[1]
    if spec == "relu":
        return frozenset(n.name for n in g.nodes if n.op == "fc" and _nonnegative(g, n.inputs[0]) and dense_enough(n))
    if spec == "auto":
        if shares is None:
            raise PrunecError("--skip-zero-inputs auto measures how many of each fc layer's inputs are zero on sample "
                              "inputs: give them with --calibration X.npy ([N, *input shape] or [N, numel], e.g. "
                              "a few hundred test samples), or choose relu / all / layer names")
        return frozenset(n.name for n in g.nodes if n.op == "fc" and shares.get(n.name, 0.0) >= break_even
                         and dense_enough(n))
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in names if s not in fcs]
    if bad or not names:
        raise PrunecError(f"--skip-zero-inputs {spec!r}: this model has no fully connected layer named "
                          f"{', '.join(map(repr, bad)) or '(empty)'}; give {', '.join(SKIP_ZERO_INPUTS)}, or names among: "
                          f"{', '.join(fcs) or '(it has no fully connected layers)'}")
    return frozenset(names)


# --fc-layout: "auto" stores an fc layer in the blocked sliced layout (docs/FORMAT.md "Blocked fc layers") where the
# target allows it (its fc_bsell_max_bytes, and a non-portable fc_bsell kernel on this build machine), or in the
# windowed sliced layout ("Windowed fc layers") where the target allows that (fc_wsell_max_bytes, a non-portable
# fc_wsell kernel), and the other sparse fc layers in the relative-indexed sliced layout ("Sliced fc layers") where the
# target allows that (rsell_allowed); "rcsr" never uses any; "rsell" stores every sparse fc layer in the sliced layout,
# "wsell" every sparse fc layer of at least 16 inputs in the windowed one (whatever the target: the portable kernel
# runs it where no ISA kernel does); "acsr" every sparse fc layer in absolute-indexed CSR ("Absolute-indexed fc
# layers": ~8 bytes per fp32 nonzero for ~30 % fewer instructions on Cortex-M; the portable kernel elsewhere)
FC_LAYOUTS = ("auto", "rcsr", "rsell", "wsell", "acsr")
# the windowed layout is chosen (auto) only where it holds at most this many slots per nonzero: its NEON kernel takes
# 5 instructions per step of 4 slots, the relative-indexed CSR kernel ~3 per nonzero (docs/BENCHMARKS.md "Windowed
# fc layers on AArch64"), so beyond ~2.4 slots per nonzero (very sparse rows spread over many windows) it loses
WSELL_MAX_SLOTS_PER_NONZERO = 2.0
# a layer whose layout without the row swaps is over a limit by more than this factor is not laid out with them
# (the swaps save up to ~10 % of the slots; on a 4096 x 1024 layer they take 6 of the 6.6 s of the encoding)
WSELL_ROUGH_MARGIN = 1.15
RSELL_ENV = "PRUNEC_FC_RSELL"  # 1 or 0: take the sliced layout under --fc-layout auto, or not, whatever the CPU


def _fc_layout(fc_layout: str | None) -> str:
    """--fc-layout as given (default "auto"), or a PrunecError naming the choices."""
    fc_layout = fc_layout or "auto"
    if fc_layout not in FC_LAYOUTS:
        raise PrunecError(f"--fc-layout {fc_layout!r}: choose one of {', '.join(FC_LAYOUTS)}")
    return fc_layout


def rsell_allowed(target, fc_layout: str | None) -> bool:
    """Whether sparse fc layers that do not take the blocked layout are stored in the relative-indexed sliced layout:
    always with --fc-layout rsell; with auto, when the target names CPU vendors whose gathers are fast
    (fc_rsell_vendors: x86_64-avx2 ["GenuineIntel"]), its fc_rsell kernel is an ISA kernel on this build machine, and
    this machine's vendor is one of them and its gathers are not slowed by the Gather Data Sampling mitigation
    (verify.gathers_slowed; PRUNEC_FC_RSELL=1/0 decides instead), as the AVX-512 kernels themselves are chosen by the
    build machine (an x86_64-avx2 build is for the machine it is made on)."""
    fc_layout = _fc_layout(fc_layout)
    if fc_layout == "rsell":
        return True
    if fc_layout != "auto" or target is None:
        return False
    vendors = target.extra.get("fc_rsell_vendors", [])
    if not isinstance(vendors, list) or not all(isinstance(v, str) for v in vendors):
        raise PrunecError(f"target {target.name!r}: fc_rsell_vendors must be a list of CPU vendor strings such as "
                          f"[\"GenuineIntel\"] (got {vendors!r}); fix the target file")
    if not vendors or runtime.select("fc_rsell", target.isa_for("fc_rsell")).isa == runtime.PORTABLE:
        return False
    force = os.environ.get(RSELL_ENV, "").strip()
    if force in ("0", "1"):
        return force == "1"
    if force:
        raise PrunecError(f"{RSELL_ENV}={force!r}: set it to 1 (use the sliced fc layout) or 0 (do not), or unset it")
    return cpu_vendor() in vendors and not gathers_slowed()


def bsell_limit(target, fc_layout: str | None) -> int:
    """The most bytes an fc layer may take in the blocked sliced layout on `target` (0: the layout is not used):
    the target's fc_bsell_max_bytes when its fc_bsell kernel is an ISA kernel on this build machine (the portable
    twin is slower than the relative-indexed CSR kernels) and --fc-layout is auto."""
    fc_layout = _fc_layout(fc_layout)
    if fc_layout != "auto" or target is None:
        return 0
    return _layout_limit(target, "fc_bsell")


def _layout_limit(target, op: str) -> int:
    """The target's `{op}_max_bytes` (a PrunecError naming the file's key if it is not a whole number >= 0), or 0
    where the target's kernel for `op` is the portable one on this build machine."""
    key = f"{op}_max_bytes"
    limit = target.extra.get(key, 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise PrunecError(f"target {target.name!r}: {key} must be a whole number of bytes >= 0 (got "
                          f"{limit!r}); fix the target file")
    if limit == 0 or runtime.select(op, target.isa_for(op)).isa == runtime.PORTABLE:
        return 0
    return limit


def wsell_limit(target, fc_layout: str | None) -> int:
    """The most bytes an fc layer may take in the windowed sliced layout on `target` (0: not used; -1: every sparse fc
    layer, --fc-layout wsell): the target's fc_wsell_max_bytes when its fc_wsell kernel is an ISA kernel on this build
    machine and --fc-layout is auto."""
    fc_layout = _fc_layout(fc_layout)
    if fc_layout == "wsell":
        return -1
    if fc_layout != "auto" or target is None:
        return 0
    return _layout_limit(target, "fc_wsell")


def _wsell_or(enc: Encoding, w: np.ndarray, limit: int) -> Encoding:
    """`enc` (a sparse fc layer in relative-indexed CSR), or its windowed sliced layout where `limit` allows it
    (wsell_limit; -1: whenever the layer has the window's 16 inputs) and, under a byte limit, where it holds at most
    WSELL_MAX_SLOTS_PER_NONZERO slots per nonzero."""
    if limit == 0 or w.shape[1] < wsell_cols(enc.value_bytes) or w.shape[0] > BSELL_MAX_ROWS:
        return enc
    if limit > 0:  # too big or too sparse already by a lower bound on its steps: not laid out to find out
        low = wsell_min_steps(w) * WSELL_ROWS
        if 2 * enc.value_bytes * low > limit or low > WSELL_MAX_SLOTS_PER_NONZERO * max(1, enc.nonzero):
            return enc
        # the rows by count only (no swaps: ~10x faster on big layers, <= ~10 % more slots) as a second filter
        rough = encode_wsell(w, enc.value_bytes, rounds=0)
        if sum(rough.bytes(enc.value_bytes).values()) > WSELL_ROUGH_MARGIN * limit or \
                rough.slots > WSELL_ROUGH_MARGIN * WSELL_MAX_SLOTS_PER_NONZERO * max(1, enc.nonzero):
            return enc
    windowed = as_wsell(enc, w)
    if limit < 0:
        return windowed
    if windowed.total_bytes <= limit and windowed.wsell.slots <= WSELL_MAX_SLOTS_PER_NONZERO * max(1, enc.nonzero):
        return _or_dense(windowed, w)
    return enc


def _or_dense(fast: Encoding, w: np.ndarray) -> Encoding:
    """`fast` (a layout that trades bytes for speed), or the dense matrix where that takes no more bytes: a small
    layer whose slices or windows cost more than its weights runs at least as fast dense (x86: LeNet-300-100's fc3,
    10x95 at 63 %, blocked 6,395 B in 95 ns, relative-indexed 3,284 B in 312-418 ns)."""
    return dense_encoding(w, fast.value_bytes) if fast.value_bytes * w.size <= fast.total_bytes else fast


def encode_graph(g: Graph, target=None, index_bits: tuple[int, ...] | None = None,
                 row_align: int | None = None, columns: frozenset[str] = frozenset(),
                 fc_layout: str | None = None) -> dict[str, Encoding]:
    """Per weighted layer, the smallest storage of its [out x in*kh*kw] matrix (relative-indexed CSR or dense),
    the index width drawn from `index_bits` if given, else from the target's widths for the layer's op
    (Target.index_bits_for: fc layers 8 or 16 bits by default, conv 4, 8 or 16), else from all widths; rows
    padded to a multiple of `row_align` entries if given, else of the target's alignment for the op
    (Target.row_align_for: 8 for fc on x86_64-avx2, else 1). The layers named in `columns` (zero_skipping_layers)
    store W^T, unpadded unless `row_align` is given: their kernel visits a column's entries only when its input
    is nonzero. A sparse fc layer (not in `columns`) whose blocked sliced layout takes at most bsell_limit bytes is
    stored in that layout instead (`fc_layout` "auto"; x86 with AVX-512: 3-4x faster on LeNet-size layers for
    ~2x the bytes of relative-indexed CSR); the other sparse fc layers not in `columns` are stored in the
    relative-indexed sliced layout where rsell_allowed (x86 with AVX-512 on a CPU with fast gathers: about the bytes
    of 8-bit relative-indexed CSR, 4096x4096 at 10 % 1.3x faster), whatever `index_bits` says."""
    def bits(op: str) -> tuple[int, ...]:
        if index_bits:
            return tuple(index_bits)
        return target.index_bits_for(op) if target is not None else index_bits_for(op)

    def align(op: str) -> int:
        if row_align is not None:
            return row_align
        return target.row_align_for(op) if target is not None else 1

    shared = shared_weights(g)
    limit = bsell_limit(target, fc_layout)
    wlimit = wsell_limit(target, fc_layout)
    sliced = rsell_allowed(target, fc_layout)
    acsr = _fc_layout(fc_layout) == "acsr"
    out: dict[str, Encoding] = {}
    for n in g.nodes:
        if n.weight is None:
            continue
        cm = n.name in columns
        if n.name in shared:
            out[n.name] = out[shared[n.name]]
            continue
        w = n.weight.reshape(n.weight.shape[0], -1)
        enc = choose_encoding(w, bits_options=bits(n.op), row_align=(row_align or 1) if cm else align(n.op), columns=cm)
        # (slots >= nonzeros: a layer whose nonzeros alone exceed the limit is not laid out to find out)
        if n.op == "fc" and enc.format == "rcsr" and not cm and (enc.value_bytes + 1) * enc.nonzero <= limit \
                and w.shape[0] <= BSELL_MAX_ROWS:
            blocked = as_bsell(enc, w)  # laid out once: its bytes decide, and it is what the build then stores
            if blocked.bsell.slots and blocked.total_bytes <= limit:
                enc = _or_dense(blocked, w)
        if n.op == "fc" and enc.format == "rcsr" and not cm:
            enc = _wsell_or(enc, w, wlimit)
        if acsr and n.op == "fc" and enc.format == "rcsr" and not cm:
            enc = as_acsr(enc, w)
        if sliced and n.op == "fc" and enc.format == "rcsr" and not cm and w.shape[0] <= BSELL_MAX_ROWS:
            sl = as_rsell(enc, w)
            # dense where its slices of 16 rows take more bytes than the dense matrix (a layer of a few rows), unless
            # --fc-layout rsell asks for the sliced layout
            enc = sl if _fc_layout(fc_layout) == "rsell" else _or_dense(sl, w)
        out[n.name] = enc
    return out  # a layer that shares another's weight has that layer's Encoding object


# layouts that store fc layers in more bytes than relative-indexed CSR, for speed (docs/FORMAT.md)
SPEED_LAYOUTS = {"bsell": "blocked sliced", "wsell": "windowed sliced", "acsr": "absolute-indexed CSR"}


def speed_layout_layers(layers: list[dict]) -> tuple[list[str], str]:
    """(names, kinds) of the manifest `layers` stored in a layout that trades bytes for speed (SPEED_LAYOUTS): their
    names in order, and the layouts' names joined by "and"."""
    fast = [l for l in layers if l.get("format") in SPEED_LAYOUTS]
    return [l["name"] for l in fast], " and ".join(sorted({SPEED_LAYOUTS[l["format"]] for l in fast}))


def _flash_fix(layers: list[dict]) -> str:
    """What stores a build that is too big for its target in fewer bytes (from its manifest `layers`): where layers
    take a layout that trades bytes for speed, `--fc-layout rcsr`; where relative-indexed layers are not at their
    byte-optimal widths, `--index-bits 1-16` (a sentence each, or "")."""
    own = [l for l in layers if not l.get("shares_weights_of")]
    fast, kinds = speed_layout_layers(own)
    out = ""
    if fast:
        out += (f"{', '.join(fast)} take the {kinds} layout, which trades bytes for speed: "
                f"`--fc-layout rcsr` stores their weights in the fewest bytes (relative-indexed CSR). ")
    if any(l.get("format") == "rcsr" and l.get("index_bits") in (8, 16) for l in own):
        out += "`--index-bits 1-16` lets each relative-indexed layer take its byte-optimal index width. "
    return out


def _macs(n, enc: Encoding | None) -> tuple[int, int]:
    """(sparse MACs: one per nonzero weight use, dense MACs) of a layer; 0 for layers without weights."""
    if enc is None:
        return 0, 0
    if n.op == "fc":
        return enc.nonzero, enc.rows * enc.cols
    pixels = numel(n.out_shape[2:])
    return enc.nonzero * pixels, enc.rows * enc.cols * pixels


def _r(x: float) -> float:
    return float(f"{x:.6g}")


def layer_rows(g: Graph, encodings: dict[str, Encoding], kernels: dict[str, str],
               weights0: dict[str, int] | None = None) -> list[dict]:
    """The manifest's `layers`; `weights0`: each layer's weight count before pruning, where known."""
    rows = []
    shared = shared_weights(g)
    for n in g.nodes:
        enc = encodings.get(n.name)
        macs, dense_macs = _macs(n, enc)
        own = enc if n.name not in shared else None  # the bytes of a shared weight are its first layer's
        row = {
            "name": n.name, "op": n.op, "kernel": kernels[n.name],
            "input_shape": [list(s) for s in n.in_shapes], "output_shape": list(n.out_shape),
            "shape": list(n.weight.shape) if n.weight is not None else None,
            "weights": int(n.weight.size) if n.weight is not None else 0,
            "nonzero": enc.nonzero if enc else 0,
            "density": _r(enc.nonzero / max(1, enc.rows * enc.cols)) if enc else None,
            "format": enc.format if enc else None,
            "index_bits": enc.index_bits if enc else 0,
            "fillers": enc.fillers if enc else 0,
            "row_align": enc.row_align if enc else 0,
            # relative-indexed CSR of W ("rows") or of W^T ("columns": the kernel skips zero inputs); null if none
            "orientation": ("columns" if enc.columns else "rows") if enc and enc.format == "rcsr" else None,
            "shares_weights_of": shared.get(n.name),
            "bytes": {"values": own.sizes["values"] if own else 0, "index": own.sizes["index"] if own else 0,
                      "pointers": own.sizes["pointers"] if own else 0,
                      "bias": 4 * int(n.bias.size) if n.bias is not None else 0},
            "dense_bytes": 4 * int(n.weight.size) if n.weight is not None else 0,
            # its weights before pruning (dead-neuron removal may have shrunk it since); null where not known
            "weights_before_pruning": (weights0 or {}).get(n.name) if n.weight is not None else None,
            "macs": macs, "dense_macs": dense_macs,
            "out_min": n.attrs.get("out_min"), "out_max": n.attrs.get("out_max"),
            "source": os.path.basename(n.source.rsplit(":", 1)[0]) + ":" + n.source.rsplit(":", 1)[-1] if ":" in n.source else n.source,
        }
        for k in ("out_min", "out_max"):  # JSON has no infinity
            v = row[k]
            row[k] = None if v is None or v in (float("inf"), float("-inf")) else v
        rows.append(row)
    return rows


def default_name(model_path: str | os.PathLike) -> str:
    import re

    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(model_path).stem)
    try:  # the stem only where --name would accept it (C identifier, not a keyword, <= 48 chars, no prunec_)
        return codegen.validate_name(stem)
    except PrunecError:
        return "model"


@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict
    graph: Graph


# target key fuse_conv_pool: true (every conv + pool pair that does not grow the arena), false, or ONE_CALL
ONE_CALL = "one-call"


def prepare(model_path: str | os.PathLike, target_name: str, name: str | None = None, storage: str = "auto",
            index_bits=None, row_align: int | None = None, fuse_pool: bool | None = None,
            skip_zero_inputs: str | None = None, calibration=None, fc_layout: str | None = None):
    """Everything `build` writes, computed in memory: (files: relative path -> bytes, manifest, graph).
    `index_bits`: the index widths every layer may use, `row_align`: the entries per row every relative-indexed
    layer is padded to a multiple of (default for both: the target's per-op choice); `fuse_pool`: run each
    convolution followed by a pool one channel at a time (prunec.fuse; default: the target's
    `fuse_conv_pool`); `skip_zero_inputs`: which fc layers skip zero inputs (zero_skipping_layers; default none),
    `calibration`: a .npy of sample inputs, which 'auto' measures each fc layer's input zero share on;
    `fc_layout`: 'auto' (default: the blocked sliced layout for the fc layers the target allows it for, bsell_limit,
    the windowed sliced layout for those the target allows it for, wsell_limit, and the relative-indexed sliced layout
    for the other sparse fc layers where rsell_allowed), 'rcsr', 'rsell', 'wsell' or 'acsr'."""
    target = targets_mod.get(target_name)
    bsell_limit(target, fc_layout)  # a bad --fc-layout is refused before the model is loaded
    rsell_allowed(target, fc_layout)  # and so are a bad fc_rsell_vendors or PRUNEC_FC_RSELL
    wsell_limit(target, fc_layout)  # and a bad fc_wsell_max_bytes
    if index_bits is not None:
        index_bits = check_index_bits(index_bits, "--index-bits")
    if row_align is not None:
        row_align = check_row_align(row_align, "--row-align")
    name = codegen.validate_name(default_name(model_path) if name is None else name)
    model_path = Path(model_path)
    g, loaded = frontend.load(model_path)
    sha = sha256_file(model_path)
    weights0 = loaded.weights0  # per layer, before pruning; None: unknown (a .pt2 that `prunec export` did not write)
    min_per_input = target.extra.get("zero_skip_min_per_input", RELU_MIN_PER_INPUT)
    if isinstance(min_per_input, bool) or not isinstance(min_per_input, (int, float)) or not min_per_input >= 0:
        raise PrunecError(f"target {target.name!r}: zero_skip_min_per_input must be a number >= 0 (got "
                          f"{min_per_input!r}); fix the target file")
    break_even = target.extra.get("zero_skip_break_even", BREAK_EVEN)
    if isinstance(break_even, bool) or not isinstance(break_even, (int, float)) or not 0 <= break_even <= 1:
        raise PrunecError(f"target {target.name!r}: zero_skip_break_even must be a share in [0, 1] (got "
                          f"{break_even!r}); fix the target file")
    shares = None
    if calibration is not None:
        if (skip_zero_inputs or "none").strip() != "auto":
            raise PrunecError("--calibration gives the samples that --skip-zero-inputs auto measures; add "
                              "--skip-zero-inputs auto, or leave --calibration out")
        from .verify import load_samples

        samples = load_samples(calibration, g.input_shape, "--calibration")
        shares = input_zero_shares(loaded.program, g, samples)
    encodings = encode_graph(g, target, index_bits, row_align,
                             zero_skipping_layers(g, skip_zero_inputs, min_per_input, shares, break_even), fc_layout)
    keep = None
    if fuse_pool is None:
        fuse_pool = target.extra.get("fuse_conv_pool", False)
        if fuse_pool == ONE_CALL:
            # fuse only the pairs this target runs as one kernel call (x86: avx512x4 conv + max pool); the
            # per-channel loop would pay the conv kernel's per-call set-up once per channel there
            fuse_pool = True
            keep = lambda c, p: codegen.fused_kernel(c, encodings.get(c.name), p, target) is not None  # noqa: E731
        elif not isinstance(fuse_pool, bool):
            raise PrunecError(f"target {target.name!r}: fuse_conv_pool must be true, false or \"{ONE_CALL}\" (got "
                              f"{fuse_pool!r}); fix the target file")
    pairs = fuse.find_conv_pool(g, keep) if fuse_pool else {}
    plan = planner.make_plan(fuse.planning_graph(g, pairs))
    unfused_arena = planner.make_plan(g).arena_bytes if pairs else plan.arena_bytes
    files, kernels, facts = codegen.render(g, encodings, plan, target, name, sha, storage, pairs)

    rows = layer_rows(g, encodings, facts["layer_kernels"], weights0)
    for r in rows:  # measured with --calibration; null otherwise
        r["input_zero_share"] = _r(shares[r["name"]]) if shares is not None and r["name"] in shares else None
    distinct = stored(encodings)  # a shared weight is stored (and counted) once
    weights_bytes = sum(e.total_bytes for e in distinct)
    dense_bytes = sum(4 * e.rows * e.cols for e in distinct)
    nonzero = sum(e.nonzero for e in distinct)
    n_weights = sum(e.rows * e.cols for e in distinct)
    weights_before = sum(weights0.values()) if weights0 else None
    bias_bytes = sum(4 * int(n.bias.size) for n in g.nodes if n.bias is not None)
    flash = facts["stored_bytes"] + facts["code_bytes_estimate"]
    # the estimate decides only where the build cannot measure the linked library (build: _measure_size)
    if target.flash_bytes and flash > target.flash_bytes and not _will_measure(target):
        raise PrunecError(
            f"the model does not fit target {target.name!r}: it needs about {flash:,} bytes of flash (weights and "
            f"biases {facts['stored_bytes']:,} + code estimate {facts['code_bytes_estimate']:,}), the target has "
            f"{target.flash_bytes:,}. {_flash_fix(rows)}Prune harder or pick a larger target; nothing was written.")
    if target.ram_bytes and plan.arena_bytes > target.ram_bytes:
        io = 4 * (numel(g.input_shape) + numel(g.output_shape))
        raise PrunecError(
            f"the model does not fit target {target.name!r}: its arena needs {plan.arena_bytes:,} bytes of RAM "
            f"(the caller's input and output buffers, {io:,} bytes, come on top), the target has "
            f"{target.ram_bytes:,}; nothing was written. {_ram_fix(g, pairs, target.ram_bytes)}")

    manifest = {
        "format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION,
        "generator": f"prunec {__version__}", "prunec_version": __version__,
        "name": name,
        "target": target.name, "runner": target.runner, "isa": list(target.isa),
        "source": {"path": str(model_path.resolve()), "file": model_path.name, "sha256": sha, "kind": loaded.kind,
                   "model_name": loaded.model_name},
        "input_shape": list(g.input_shape), "output_shape": list(g.output_shape),
        "input_size": numel(g.input_shape), "output_size": numel(g.output_shape),
        "arena_bytes": plan.arena_bytes,
        "plan": {"strategy": plan.strategy, "live_bytes_bound": plan.lower_bound, "in_place_layers": len(plan.in_place),
                 "fused_conv_pool": [[g.nodes[i].name, g.nodes[j].name] for i, j in sorted(pairs.items())],
                 "arena_bytes_unfused": unfused_arena},
        "storage": facts["storage"],
        "files": {"header": f"{name}.h", "sources": [f"{name}.c"] + [f"runtime/{s}" for s in facts["runtime_sources"]],
                  "asm": [f"{name}_weights.S"] if facts["storage"] == "blob" else [],
                  "include_dirs": [".", "runtime/include"]},
        "kernels": facts["kernels"],
        "layers": rows,
        "totals": {
            "weights": n_weights, "nonzero": nonzero, "density": _r(nonzero / max(1, n_weights)),
            "weights_bytes": weights_bytes, "dense_weights_bytes": dense_bytes,
            "compression": _r(dense_bytes / weights_bytes) if weights_bytes else None,
            # against the network before pruning (the sizes `prunec info` counts, before dead-neuron removal shrank
            # layers): known for a checkpoint and a .pt2 from `prunec export`, else null
            "weights_before_pruning": weights_before,
            "dense_weights_bytes_before_pruning": 4 * weights_before if weights_before else None,
            "compression_before_pruning": _r(4 * weights_before / weights_bytes) if weights_before and weights_bytes else None,
            "bias_bytes": bias_bytes,
            "macs": sum(r["macs"] for r in rows), "dense_macs": sum(r["dense_macs"] for r in rows),
            "flash_bytes_estimate": flash, "ram_bytes": plan.arena_bytes,
        },
    }
    files["manifest.json"] = codegen.manifest_json(manifest)
    rt = runtime_dir()
    for rel in list(runtime.headers()) + list(facts["runtime_sources"]):
        files[f"runtime/{rel}"] = (rt / rel).read_bytes()
    files[f"runtime/{CONFIG_HEADER}"] = config_header(files[f"runtime/{CONFIG_HEADER}"].decode(), rt, encodings)
    return files, manifest, g


CONFIG_HEADER = "include/prunec_config.h"


def config_header(text: str, rt, encodings) -> bytes:
    """runtime_c/include/prunec_config.h (`text`, the runtime's copy at `rt`) as this build needs it: PRUNEC_RCSR_ODD_WIDTHS 0 when every
    relative-indexed layer uses 4, 8 or 16 bits (the kernels then leave their other-width decoders out: ~2 KB of
    flash on Cortex-M), else the runtime's default, 1. Everything that compiles the build's sources (its Makefile,
    CMakeLists.txt, a firmware project's own build, prunec verify) includes this copy."""
    from .encode import FAST_INDEX_BITS

    odd = any(e is not None and e.format == "rcsr" and e.index_bits not in FAST_INDEX_BITS for e in encodings.values())
    default = "#define PRUNEC_RCSR_ODD_WIDTHS 1\n"
    if default not in text:
        raise PrunecError(f"{rt / CONFIG_HEADER} does not define PRUNEC_RCSR_ODD_WIDTHS 1: the runtime is damaged; "
                          f"reinstall prunec")
    if not odd:
        text = text.replace(default, "#define PRUNEC_RCSR_ODD_WIDTHS 0 /* prunec build: every layer uses 4, 8 or 16 bits */\n")
    return text.encode()


def _ram_fix(g: Graph, pairs: dict[int, int], ram_bytes: int) -> str:
    """What to do about an arena too big for the target's RAM."""
    if not pairs:
        cand = fuse.find_conv_pool(g)
        if cand:
            fused = planner.make_plan(fuse.planning_graph(g, cand)).arena_bytes
            if fused <= ram_bytes:
                return (f"Build with --fuse-pool ({len(cand)} convolution(s) feed a pool: the arena would be {fused:,} "
                        f"bytes, which fits), prune harder (dead-neuron removal shrinks layers), or pick a target with "
                        f"more RAM.")
            return (f"--fuse-pool would not be enough ({len(cand)} convolution(s) feed a pool: the arena would still be "
                    f"{fused:,} bytes): prune harder (dead-neuron removal shrinks layers) or pick a target with more RAM.")
    return "Prune harder (dead-neuron removal shrinks layers) or pick a target with more RAM."


def _will_measure(target) -> bool:
    """Whether `prunec build` compiles and measures the library for this target (it names a size tool and the
    compiler, archiver and size tool are installed): then the measured flash, not the estimate, decides the fit."""
    return bool(target.extra.get("size")) and not target.missing_tools(("cc", "ar", "size"))


def _measure_size(files: dict[str, bytes], manifest: dict, target) -> dict:
    """Compile libNAME.a in a scratch copy of the build and measure it (firmware targets): the manifest gets the
    exact flash and RAM figures, and a library that does not fit the board is refused with them."""
    from . import runners

    missing = target.missing_tools(("cc", "ar", "size"))  # not the emulator: nothing runs here
    if missing:
        return {"measured": False, "reason": "not installed: " + ", ".join(f"{exe} (Debian package {pkg})" for exe, pkg in missing)}
    with tempfile.TemporaryDirectory(prefix="prunec-size-") as scratch:
        for rel, data in files.items():
            p = Path(scratch) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        size = runners.measure_size(scratch, manifest, target)
    lib = size["library"]
    # what the firmware needs: the library as a firmware linked with --gc-sections keeps it, where that was measured
    fw = size.get("linked") or lib
    what = (f"lib{manifest['name']}.a linked with --gc-sections from {manifest['name']}_run" if "linked" in size
            else f"lib{manifest['name']}.a")
    if target.flash_bytes and fw["flash"] > target.flash_bytes:
        raise PrunecError(
            f"the model does not fit target {target.name!r}: {what} needs {fw['flash']:,} bytes of flash "
            f"(text {fw['text']:,} + rodata {fw['rodata']:,} + data {fw['data']:,}), the board has {target.flash_bytes:,}. "
            f"{_flash_fix(manifest['layers'])}Prune harder or pick a larger target; nothing was written.")
    need = lib.get("ram_with_stack", lib["ram"])
    if target.ram_bytes and need > target.ram_bytes:
        fused = manifest["plan"]["fused_conv_pool"]
        hint = ("Prune harder (dead-neuron removal shrinks layers) or pick a target with more RAM." if fused else
                "Build with --fuse-pool if the model has convolutions that feed pools, prune harder (dead-neuron "
                "removal shrinks layers), or pick a target with more RAM.")
        raise PrunecError(
            f"the model does not fit target {target.name!r}: it needs {need:,} bytes of RAM (arena "
            f"{manifest['arena_bytes']:,} + data/bss {lib['data'] + lib['bss']:,}"
            + (f" + the stack of {manifest['name']}_run {lib['stack']:,}" if "stack" in lib else "")
            + f"), the board has {target.ram_bytes:,}; "
            f"nothing was written. {hint}")
    return {"measured": True, **size}


def _is_build_dir(d: Path) -> bool:
    """Whether `d` holds an earlier build (its manifest.json says format prunec-build)."""
    try:
        return json.loads((d / "manifest.json").read_text()).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def build(model_path: str | os.PathLike, target_name: str, out_dir: str | os.PathLike, name: str | None = None,
          storage: str = "auto", index_bits=None, row_align: int | None = None,
          fuse_pool: bool | None = None, skip_zero_inputs: str | None = None, calibration=None,
          fc_layout: str | None = None) -> BuildResult:
    out_dir = Path(out_dir)
    model = Path(model_path)
    if model.exists() and out_dir.exists() and out_dir.resolve() in model.resolve().parents:
        raise PrunecError(f"--out {out_dir} holds the model {model_path}: the build replaces that directory as a "
                          f"whole, which would delete the model; choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_build_dir(out_dir):
        raise PrunecError(f"--out {out_dir} is a directory with other files in it, not an earlier prunec build (no build "
                          f"manifest.json): the build replaces its --out as a whole; choose a new or empty directory")
    files, manifest, g = prepare(model_path, target_name, name, storage, index_bits, row_align, fuse_pool,
                                 skip_zero_inputs, calibration, fc_layout)
    target = targets_mod.get(target_name)
    if target.extra.get("size"):
        manifest["size"] = _measure_size(files, manifest, target)
        files["manifest.json"] = codegen.manifest_json(manifest)
    try:
        with atomic_dir(out_dir) as tmp:
            for rel, data in sorted(files.items()):
                p = tmp / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
    except OSError as e:
        raise PrunecError(f"cannot write build directory {out_dir}: {e.strerror or e}; choose another --out") from None
    return BuildResult(out_dir, manifest, g)
