"""The `prunec` command line. Commands live beside the step they drive; this module only assembles them.

Every PrunecError becomes a one-paragraph message on stderr and exit status 2. An OSError the system raises
while a command reads or writes (a full disk, a missing permission, stdout on a full device) is reported the
same way with exit status 1, its message being the diagnosis; a closed pipe (`prunec info --json | head`)
ends the command quietly (click's handling, exit status 1). Ctrl-C prints one line and exits 130, as the
distributed path of `prunec prune` does. Any other exception is a defect and keeps its traceback.
"""
from __future__ import annotations

import errno
import sys

import click

from . import __version__
from .errors import PrunecError, report


def _quiet_streams() -> None:
    """After a failed write to stdout, whatever is still buffered must not be flushed again at exit (a second
    error and an 'Exception ignored' message); click does the same for a closed pipe."""
    from click.utils import PacifyFlushWrapper

    sys.stdout = PacifyFlushWrapper(sys.stdout)


class _Group(click.Group):
    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except OSError as e:  # not EPIPE: click's main already ends a closed pipe quietly
            if e.errno == errno.EPIPE:
                raise
            _quiet_streams()
            sys.exit(report(e))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (PrunecError, KeyboardInterrupt) as e:  # click's own Ctrl-C handling says "Aborted!" and exits 1
            sys.exit(report(e))
        except EOFError:  # click would print "Aborted!" (its reading of a prompt's EOF): a defect, keep the trace
            import traceback

            traceback.print_exc()
            sys.exit(1)


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
