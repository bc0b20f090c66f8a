"""CLI commands of the build step: `prunec build` and `prunec verify` (cli.py registers `COMMANDS`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .codegen import STORAGES
from .errors import SEED_MAX


@click.command("build")
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("--target", "-t", "target", default="host", show_default=True, help="target name (targets/*.toml)")
@click.option("--out", "-o", "out", required=True, type=click.Path(), help="build directory (replaced atomically)")
@click.option("--name", default=None, help="C name of the model (default: MODEL's file name)")
@click.option("--weights", "storage", type=click.Choice(STORAGES), default="auto", show_default=True,
              help="weights as C arrays, as a binary blob (.incbin), or by size (blob above 1 MiB)")
@click.option("--index-bits", "index_bits", default=None, metavar="B[,B...]",
              help="index widths (1 to 16 bits; ranges like 4-16 allowed) every layer may be stored with, the smallest "
                   "storage among them chosen per layer (default: the target's per-op widths: fc 8 or 16, conv 4, 8 "
                   "or 16; --index-bits 1-16 gives the fewest bytes, 4,8,16 the fewest among the widths every "
                   "kernel has a fast path for; on x86_64-avx2 add --fc-layout rcsr, or small fc layers take the "
                   "blocked layout)")
@click.option("--row-align", "row_align", type=int, default=None, metavar="A",
              help="pad every relative-indexed row to a multiple of A entries with zero fillers, for kernels that take "
                   "entries in groups (default: the target's per-op choice, 8 for fc on x86_64-avx2; 1 = none, the "
                   "fewest bytes)")
@click.option("--fuse-pool/--no-fuse-pool", "fuse_pool", default=None,
              help="run each convolution that feeds a pool one output channel at a time, pooling each plane at once, "
                   "so that the convolution's output never exists whole: less RAM, one kernel call per channel "
                   "(default: the target's choice, on for the Cortex-M targets)")
@click.option("--skip-zero-inputs", "skip_zero_inputs", default="none", show_default=True, metavar="WHICH",
              help="fc layers stored column by column, whose kernel skips the inputs that are zero (after a ReLU, "
                   "often most): 'relu' (those fed by a ReLU whose columns hold enough weights: at least the target's "
                   "zero_skip_min_per_input, 8 by default), 'auto' (with --calibration: those whose inputs were zero "
                   "often enough there to pay on the target: its zero_skip_break_even), 'all', 'none', or layer names "
                   "separated by commas. Faster when enough inputs are zero, slower otherwise (docs/BUILD.md "
                   "\"Skipping zero inputs\")")
@click.option("--calibration", "calibration", type=click.Path(), default=None, metavar="X.npy",
              help="sample inputs ([N, *input shape] or [N, numel]) on which --skip-zero-inputs auto measures each fc "
                   "layer's share of zero inputs")
@click.option("--fc-layout", "fc_layout", type=click.Choice(["auto", "rcsr", "rsell", "wsell", "acsr"]), default="auto",
              show_default=True,
              help="'auto': fc layers small enough (the target's fc_bsell_max_bytes; x86_64-avx2 with AVX-512: 4 MiB) "
                   "are stored in the blocked sliced layout, 3-4x faster there for ~2x the bytes (docs/FORMAT.md "
                   "\"Blocked fc layers\"); on aarch64-neon those of at most fc_wsell_max_bytes (1 MiB) in the "
                   "windowed sliced layout (\"Windowed fc layers\": one table lookup per 4 rows, ~2.5x the bytes of "
                   "CSR); the other sparse fc layers, where the target names the build "
                   "machine's CPU vendor (fc_rsell_vendors; x86_64-avx2: Intel), in the relative-indexed sliced "
                   "layout (\"Sliced fc layers\": 8-bit gaps, about the bytes of CSR, one gather per 16 rows); a layer "
                   "whose layout would take more bytes than its dense matrix is stored dense; 'rcsr': "
                   "every sparse layer in relative-indexed CSR, the fewest bytes; 'rsell': every sparse fc layer in "
                   "the sliced layout; 'wsell': every sparse fc layer of at least 16 inputs in the windowed layout; "
                   "'acsr': every sparse fc layer in absolute-indexed CSR (a 32-bit column per nonzero: ~1.6x the "
                   "bytes of CSR for ~30 % fewer instructions on Cortex-M, \"Absolute-indexed fc layers\")")
def build_cmd(model, target, out, name, storage, index_bits, row_align, fuse_pool, skip_zero_inputs, calibration,
              fc_layout):
    """Generate C for MODEL (a .pt2 from `prunec export`/torch.export.save, or a prunec checkpoint)."""
    from .bench import weights_summary
    from .build import build

    bits = None if index_bits is None else [b.strip() for b in index_bits.split(",")]
    r = build(model, target, out, name, storage, bits, row_align, fuse_pool, skip_zero_inputs, calibration, fc_layout)
    t = r.manifest["totals"]
    fused = r.manifest["plan"]["fused_conv_pool"]
    arena = f"arena {r.manifest['arena_bytes']:,} bytes"
    if fused:
        arena += (f" ({len(fused)} conv+pool fused; {r.manifest['plan']['arena_bytes_unfused']:,} unfused)")
    click.echo(f"built {r.manifest['name']} for {r.manifest['target']} in {r.out_dir}: {len(r.manifest['layers'])} layers, "
               f"{weights_summary(t)}; {arena}, {t['macs']:,} MACs")
    from .build import speed_layout_layers

    fast, kinds = speed_layout_layers(r.manifest["layers"])  # layouts that trade bytes for speed (docs/FORMAT.md)
    if fast:
        click.echo(f"  {', '.join(fast)}: in the {kinds} layout (faster, for "
                   f"more bytes than relative-indexed CSR); `--fc-layout rcsr` stores the fewest bytes")
    hint = _acsr_hint(r.manifest, fc_layout)
    if hint:
        click.echo(hint)
    if name is None and r.manifest["name"] == "model" and Path(model).stem != "model":
        click.echo(f"  named 'model': the file name {Path(model).stem!r} is not a usable C name (a C keyword or standard "
                   f"name, or not an identifier); --name NAME chooses the API's prefix")
    size = r.manifest.get("size") or {}
    if size.get("measured") is False:  # a firmware target whose toolchain is missing: only the estimate was checked
        click.echo(f"prunec: warning: lib{r.manifest['name']}.a was not compiled, so its flash and RAM were not measured "
                   f"against the board ({size.get('reason', 'toolchain missing')}); only the estimate "
                   f"({t.get('flash_bytes_estimate', 0):,} bytes of flash, {t.get('ram_bytes', 0):,} of RAM) was checked. "
                   f"Install it and build again, or run `prunec size {r.out_dir}` once it is installed.", err=True)


def _acsr_hint(manifest: dict, fc_layout: str) -> str:
    """Where the build kept relative-indexed fc layers (the fewest bytes) on a target with an absolute-indexed CSR
    kernel of its own (Cortex-M: docs/FORMAT.md "Absolute-indexed fc layers"), a line naming the faster choice."""
    from . import runtime
    from . import targets as targets_mod

    if fc_layout != "auto":
        return ""
    t = targets_mod.get(manifest["target"])
    if runtime.select("fc_acsr", t.isa_for("fc_acsr")).isa == runtime.PORTABLE:
        return ""
    fcs = [l["name"] for l in manifest["layers"] if l["op"] == "fc" and l.get("format") == "rcsr"
           and l.get("orientation") == "rows" and not l.get("shares_weights_of")]
    if not fcs:
        return ""
    return (f"  {', '.join(fcs)}: `--fc-layout acsr` (absolute-indexed CSR, ~1.6x the bytes) runs sparse fc layers in "
            f"~30-55 % fewer instructions on this target; fewer cycles by less on a Cortex-M4, whose 3-cycle FMA "
            f"dominates (docs/BENCHMARKS.md \"Sixteenth session\")")


@click.command("verify")
@click.argument("build_dir", type=click.Path())
@click.option("--data", type=click.Choice(["fashion-mnist", "synthetic"]), default=None, help="a data set's test split")
@click.option("--inputs", "inputs", type=click.Path(), default=None, help="a .npy of N samples: [N, *input shape without the batch] or [N, numel] (C order)")
@click.option("--random", "random", type=int, default=None, help="N random normal inputs (the default: 100)")
@click.option("--model", default=None, type=click.Path(), help="the reference model (default: the one the build came from)")
@click.option("--data-dir", default=None, type=click.Path(), help="folder of the data set's files")
@click.option("--limit", type=int, default=None, help="use only the first N inputs")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True, help="seed of --random")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="tolerance: a sample passes when max|C - PyTorch| <= ATOL x max(1, max|PyTorch|)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def verify_cmd(build_dir, data, inputs, random, model, data_dir, limit, seed, atol, as_json):
    """Run BUILD_DIR's C and the PyTorch model on the same inputs; compare (exit 1 beyond tolerance)."""
    from .verify import verify

    r = verify(build_dir, data=data, inputs=inputs, random=random, model=model, data_dir=data_dir, limit=limit, seed=seed,
               atol=atol)
    click.echo(json.dumps(r.as_dict(), indent=2) if as_json else r.text())
    if not r.ok:
        sys.exit(1)


COMMANDS = [build_cmd, verify_cmd]
# `prunec targets` lives in commands_targets.py (the targets step), registered by cli.py beside these.
