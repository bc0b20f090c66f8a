"""CLI of the benchmark step: `prunec bench DIR` (cli.py registers `COMMANDS`)."""
from __future__ import annotations

import json

import click


@click.command("bench")
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("--reps", type=int, default=7, show_default=True, help="interleaved repetitions (medians are reported)")
@click.option("--min-time", "target_ms", type=float, default=50.0, show_default=True,
              help="milliseconds of inferences per repetition")
@click.option("--no-layers", is_flag=True, help="whole-network time only (no instrumented per-layer run)")
@click.option("--cflags", default="-O3", show_default=True, help="flags appended to the build's CFLAGS")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
def bench_cmd(build_dir, reps, target_ms, no_layers, cflags, as_json):
    """Time BUILD_DIR's NAME_run on this host (the build's CFLAGS + -O3), whole network and per layer."""
    import shlex

    from .bench import CompiledBuild, bench, check_settings, table

    from .errors import PrunecError

    check_settings(reps, target_ms / 1e3)  # before compiling the build
    try:
        extra = tuple(shlex.split(cflags))
    except ValueError as e:  # an unclosed quote
        raise PrunecError(f"--cflags {cflags!r}: {e}; quote the flags as a shell would (e.g. --cflags '-O2 -DN=\"x\"')") from None
    cb = CompiledBuild(build_dir, extra_cflags=extra)
    r = bench(build_dir, reps=reps, target_s=target_ms / 1e3, layers=not no_layers, cb=cb)
    click.echo(json.dumps(r.as_dict(), indent=1) if as_json else table(r))


COMMANDS = [bench_cmd]
