"""What a model file is, by the entries of its zip archive: a torch.export program (.pt2) or a torch.save archive
(prunec's checkpoints). Shared by the checkpoint reader and `prunec build`'s model reader."""
from __future__ import annotations

import zipfile
from pathlib import Path


def zip_names(path: Path) -> list[str]:
    """The entry names of a zip archive ([] for any other file)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def exported_program(names: list[str]) -> bool:
    """Entries of a torch.export archive (torch.export.save)."""
    return any(n.endswith(("serialized_exported_program.json", "models/model.json")) or "/models/" in n for n in names)


def torch_save(names: list[str]) -> bool:
    """Entries of a torch.save archive."""
    return any(n.endswith("/data.pkl") or n == "data.pkl" for n in names)
