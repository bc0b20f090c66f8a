"""Locate the data folders that ship with prunec (templates/, runtime_c/, targets/).

An installed wheel carries them inside the package (prunec/templates, ...); a source checkout (editable
install) keeps them at the repository root, two levels above this file. That fallback is taken only in a
checkout (toolchain/prunec/ beside runtime_c/kernels.inc and targets/): an installed copy whose data is missing
must say so, not pick up whatever folder named `templates` or `targets` lies two levels up (`pip install
--target DIR` puts the package in DIR/prunec, so that would be a folder beside DIR).
"""
from __future__ import annotations

from pathlib import Path

from .errors import PrunecError

_PKG = Path(__file__).resolve().parent
_NAMES = ("templates", "runtime_c", "targets")


class MissingResource(PrunecError, FileNotFoundError):
    """A data folder of the package is missing (a broken install): the CLI prints it as one line."""


def _checkout_root() -> Path | None:
    """The repository root when this file runs from a source checkout (toolchain/prunec/), else None."""
    root = _PKG.parents[1]
    if (_PKG.parent.name == "toolchain" and (root / "runtime_c" / "kernels.inc").is_file()
            and (root / "targets").is_dir() and (root / "templates").is_dir()):
        return root
    return None


def data_dir(name: str) -> Path:
    if name not in _NAMES:
        raise ValueError(f"unknown resource folder {name!r}")
    if (_PKG / name).is_dir():
        return _PKG / name
    root = _checkout_root()
    if root is not None:
        return root / name
    raise MissingResource(f"prunec resource folder {name!r} is missing from {_PKG}: reinstall prunec "
                          "(pip install --force-reinstall prunec, or `pip install .` from a checkout)")


def templates_dir() -> Path:
    return data_dir("templates")


def runtime_dir() -> Path:
    return data_dir("runtime_c")


def targets_dir() -> Path:
    return data_dir("targets")
