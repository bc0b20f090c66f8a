"""One exception type for every user-facing failure: its message names the problem and the fix."""


class PrunecError(Exception):
    """A failure caused by the user's input or environment; the CLI prints it and exits non-zero."""
