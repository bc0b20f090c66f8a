"""A plain (non-editable) `pip install .` carries templates/, runtime_c/ and targets/ inside the package."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = (".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")


def checkout_files() -> list[str] | None:
    """The files a clean clone would have (tracked, plus new files git does not ignore), or None outside git.
    A developer's ignored folders (virtual environments, data sets, sweep checkpoints) are not copied."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             check=True, capture_output=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def test_wheel_install_ships_package_data(tmp_path):
    src = tmp_path / "src"
    files = checkout_files()
    if files is None:
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*SKIP))
    else:
        for f in files:
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, capture_output=True, text=True)
    code = ("import prunec.resources as r, prunec, pathlib; "
            "print(pathlib.Path(prunec.__file__).parent); "
            "print(r.runtime_dir()); print(r.targets_dir()); print(r.templates_dir()); "
            "assert (r.runtime_dir() / 'include' / 'prunec_kernels.h').is_file(); "
            "assert (r.runtime_dir() / 'kernels.inc').is_file(); "
            "assert (r.targets_dir() / 'host.toml').is_file(); "
            "assert (r.runtime_dir() / 'platform' / 'cortexm_startup.c').is_file(); "
            "assert (r.templates_dir() / 'model.c.j2').is_file()")
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.split("\n")
    for line in out[:4]:
        assert line.startswith(str(site)), out  # resources come from the installed copy, not the checkout
    # every file of the checkout's data folders, whatever its suffix, is in the installed copy (a file whose
    # suffix package-data does not list would otherwise be dropped silently); build outputs are not data
    for folder in ("runtime_c", "templates", "targets"):
        for f in (src / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in {".o", ".a", ".so", ".pyc"}:
                assert (site / "prunec" / folder / f.relative_to(src / folder)).is_file(), f
