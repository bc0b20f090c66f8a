"""The `prunec` command line. Commands live beside the step they drive; this module only assembles them.

Every PrunecError becomes a one-paragraph message on stderr and exit status 2.
"""
from __future__ import annotations

import sys

import click

from . import __version__
from .errors import PrunecError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PrunecError as e:
            click.echo(f"prunec: error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="prunec")
def main():
    """prunec: prune networks (Han et al. 2015) and emit verified, firmware-ready sparse C."""


def _register():
    import importlib

    for mod in ("commands_prune", "commands_build", "commands_targets", "commands_bench"):
        try:
            m = importlib.import_module(f"prunec.{mod}")
        except ModuleNotFoundError as e:  # a step not yet present in this checkout
            if e.name != f"prunec.{mod}":
                raise
            continue
        for cmd in m.COMMANDS:
            main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
