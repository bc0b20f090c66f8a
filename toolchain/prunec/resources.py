"""Locate the data folders that ship with prunec (templates/, runtime_c/, targets/).

An installed wheel carries them inside the package (prunec/templates, ...); a source checkout (editable
install) keeps them at the repository root, two levels above this file.
"""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_NAMES = ("templates", "runtime_c", "targets")


def data_dir(name: str) -> Path:
    if name not in _NAMES:
        raise ValueError(f"unknown resource folder {name!r}")
    for candidate in (_PKG / name, _PKG.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"prunec resource folder {name!r} is missing: reinstall prunec")


def templates_dir() -> Path:
    return data_dir("templates")


def runtime_dir() -> Path:
    return data_dir("runtime_c")


def targets_dir() -> Path:
    return data_dir("targets")
