"""prunec: prune neural networks (Han et al., NIPS 2015) and emit verified, firmware-ready sparse C."""

__version__ = "0.1.0"

from .errors import PrunecError  # noqa: E402,F401
