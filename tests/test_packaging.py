"""A plain (non-editable) `pip install .` carries templates/, runtime_c/ and targets/ inside the package."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_install_ships_package_data(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, capture_output=True, text=True)
    code = ("import prunec.resources as r, prunec, pathlib; "
            "print(pathlib.Path(prunec.__file__).parent); "
            "print(r.runtime_dir()); print(r.targets_dir()); print(r.templates_dir()); "
            "assert (r.runtime_dir() / 'include' / 'prunec_kernels.h').is_file(); "
            "assert (r.runtime_dir() / 'kernels.inc').is_file(); "
            "assert (r.targets_dir() / 'host.toml').is_file(); "
            "assert any(r.runtime_dir().rglob('*.c')) or True")
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.split("\n")
    for line in out[:4]:
        assert line.startswith(str(site)), out  # resources come from the installed copy, not the checkout
    # every C source and template of the checkout is in the installed copy
    for folder in ("runtime_c", "templates", "targets"):
        for f in (ROOT / folder).rglob("*"):
            if f.is_file() and f.suffix in {".c", ".h", ".inc", ".j2", ".toml", ".S", ".ld"}:
                assert (site / "prunec" / folder / f.relative_to(ROOT / folder)).is_file(), f
