"""One exception type for every user-facing failure: its message names the problem and the fix."""


SEED_MAX = 2**32 - 1  # seeds of the CLI: 0 .. SEED_MAX (what numpy's and torch's generators take everywhere)


class PrunecError(Exception):
    """A failure caused by the user's input or environment; the CLI prints it and exits non-zero."""


def report(e: BaseException) -> int | None:
    """Print the one-line message (stderr) of a failure the user can act on and return its exit status: 2 for a
    PrunecError, 130 for Ctrl-C, 1 for an OSError the system raised (a full disk, a permission: its message is the
    diagnosis; not a closed pipe, which click ends quietly). None for anything else: a defect, whose traceback the
    caller keeps. Shared by the CLI and the distributed path of `prunec prune` (each rank ends with this status)."""
    import errno

    import click

    if isinstance(e, PrunecError):
        click.echo(f"prunec: error: {e}", err=True)
        return 2
    if isinstance(e, KeyboardInterrupt):
        click.echo("\nprunec: interrupted (Ctrl-C)", err=True)
        return 130
    if isinstance(e, OSError) and e.errno != errno.EPIPE:
        click.echo(f"prunec: error: {e}", err=True)
        return 1
    return None


def brief(e: BaseException | str, limit: int = 200) -> str:
    """The gist of a library's error text for a one-line message: its first non-empty line, cut after the first
    sentence, and at a word boundary with '…' if still longer than `limit` (never mid-word, no trailing '.')."""
    text = str(e)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(e).__name__
    cut = line.find(". ")
    if cut > 0:
        line = line[:cut]
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    return line.rstrip(".")


def env_int(name: str, default: int, minimum: int, what: str) -> int:
    """The integer in environment variable `name` (unset or empty: `default`); PrunecError naming the variable, what
    it sets and the accepted range for anything else (not an integer, below `minimum`)."""
    import os

    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        v = None
    if v is None or v < minimum:
        raise PrunecError(f"{name}={raw!r}: give {what} as an integer >= {minimum}, or unset it")
    return v
