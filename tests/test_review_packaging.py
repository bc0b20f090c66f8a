"""Packaging review: what a plain (non-editable) install of prunec ships and whether it works.

One wheel is built per module from a copy of the working tree's files (tracked or untracked-but-not-ignored,
as `pip install .` from a checkout would see them) and installed into a scratch folder with `pip install
--target`; the tests then run the installed copy from an unrelated working directory.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import prunec
from prunec import PrunecError, runtime

ROOT = Path(__file__).resolve().parents[1]
DATA = ("runtime_c", "templates", "targets")
JUNK = re.compile(r"(^|/)(__pycache__|[^/]*\.egg-info)(/|$)|\.(pyc|pyo|o|a|so|obj|d)$")


def _tree_files() -> list[str]:
    """Files of the working tree a build would see: git's tracked plus untracked-not-ignored, else a walk."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode()
        return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())
    skip = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".hypothesis"}
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                  if p.is_file() and not skip & set(p.relative_to(ROOT).parts) and not JUNK.search(str(p)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    for rel in _tree_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    dist = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = dist.glob("prunec-*.whl")
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                        str(site), str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return {"wheel": wheel, "names": set(zipfile.ZipFile(wheel).namelist()), "site": site, "tmp": tmp}


def _run_installed(built, args, cwd, *, script=False):
    """Run the installed copy (PYTHONPATH first, so it wins over the dev venv's editable prunec)."""
    env = dict(os.environ, PYTHONPATH=str(built["site"]))
    cmd = [str(built["site"] / "bin" / "prunec")] if script else [sys.executable, "-m", "prunec"]
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_holds_exactly_the_package_and_its_data(built):
    """Every tracked file of runtime_c/, templates/, targets/ (whatever its suffix) and every module ships, and
    nothing else does (no __pycache__, objects, egg-info, stray build outputs)."""
    files = _tree_files()
    want = {f"prunec/{Path(f).name}" for f in files if re.fullmatch(r"toolchain/prunec/[^/]+\.py", f)}
    want |= {f"prunec/{f}" for f in files if f.split("/", 1)[0] in DATA and not JUNK.search(f)}
    got = {n for n in built["names"] if not n.startswith("prunec-") and not n.endswith("/")}
    assert sorted(want - got) == [], "in the tree but not in the wheel (add the suffix to package-data)"
    assert sorted(got - want) == [], "in the wheel but not in the tree"
    assert not [n for n in built["names"] if JUNK.search(n)]


def test_wheel_holds_what_every_target_needs(built):
    """Every kernel source any target can select (with its PRUNEC_KERNEL_USES callees), every header, the
    kernel registry, every template and every target file with the start-up file it names."""
    names = built["names"]
    need = {"prunec/runtime_c/kernels.inc"}
    need |= {f"prunec/runtime_c/{s}" for s in runtime.sources_for(runtime.kernels())}
    need |= {f"prunec/runtime_c/{h}" for h in runtime.headers()}
    need |= {f"prunec/templates/{p.name}" for p in (ROOT / "templates").glob("*.j2")}
    for p in sorted((ROOT / "targets").glob("*.toml")):
        need.add(f"prunec/targets/{p.name}")
        d = tomllib.loads(p.read_text())
        if d.get("startup"):
            need.add(f"prunec/runtime_c/{d['startup']}")
    assert "prunec/runtime_c/platform/cortexm_startup.c" in need
    assert sorted(need - names) == []


def test_version_is_one_number(built):
    """pyproject takes the version from prunec.__version__: the wheel, `prunec --version` and the generated
    files' banner (checked in the build test below) all say the same."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "prunec.__version__"}
    assert f"prunec-{prunec.__version__}.dist-info/METADATA" in built["names"]
    md = zipfile.ZipFile(built["wheel"]).read(f"prunec-{prunec.__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {prunec.__version__}\n" in md
    assert "Requires-Dist: torch==2.13.0" in md


def test_installed_wheel_trains_exports_builds_and_verifies_elsewhere(built, tmp_path):
    """The installed copy, run from a folder that is not the checkout: console script and `python -m prunec`
    (what `torchrun ... -m prunec prune` runs), train → export → build → verify --random, resources read from
    the installed copy."""
    work = tmp_path / "work"
    work.mkdir()
    r = _run_installed(built, ["--version"], work, script=True)
    assert r.returncode == 0 and r.stdout.strip() == f"prunec, version {prunec.__version__}", r.stdout + r.stderr
    r = _run_installed(built, ["--version"], work)
    assert r.returncode == 0 and r.stdout.strip() == f"prunec, version {prunec.__version__}", r.stdout + r.stderr
    steps = [["train", "--model", "lenet300", "--data", "synthetic", "--epochs", "1", "--out", "base.pt", "--quiet"],
             ["export", "base.pt", "--out", "net.pt2"],
             ["build", "net.pt2", "--target", "host", "--out", "out"],
             ["verify", "out", "--random", "5"]]
    for args in steps:
        r = _run_installed(built, args, work)
        assert r.returncode == 0, f"prunec {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    assert "verify: PASS" in r.stdout
    banner = (work / "out" / "net.c").read_text()[:400]
    assert f"prunec {prunec.__version__}" in banner
    inst = built["site"] / "prunec" / "runtime_c"
    for f in (work / "out" / "runtime").rglob("*"):
        rel = f.relative_to(work / "out" / "runtime")
        if f.is_file() and rel.as_posix() != "include/prunec_config.h":
            assert f.read_bytes() == (inst / rel).read_bytes(), f
    # the build's own configuration: the installed default with the build's values (prunec.build.config_header)
    cfg = (work / "out" / "runtime" / "include" / "prunec_config.h").read_text()
    assert cfg.replace("#define PRUNEC_RCSR_ODD_WIDTHS 0 /* prunec build: every layer uses 4, 8 or 16 bits */",
                       "#define PRUNEC_RCSR_ODD_WIDTHS 1") == (inst / "include" / "prunec_config.h").read_text()


def test_build_system_setuptools_reads_the_license_field():
    """project.license as an SPDX string (PEP 639) needs setuptools >= 77; an older one (allowed by the old
    `setuptools>=68`) refuses the whole pyproject.toml ("project.license must be valid exactly by one
    definition"), e.g. under `pip install --no-build-isolation .`."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(meta["project"]["license"], str)
    (req,) = [r for r in meta["build-system"]["requires"] if re.match(r"setuptools\b", r)]
    m = re.fullmatch(r"setuptools\s*>=\s*(\d+)(\.\d+)*", req)
    assert m and int(m.group(1)) >= 77, req


def test_installed_copy_without_its_data_refuses_instead_of_using_a_stranger_folder(tmp_path):
    """A copy of the package outside a checkout (`pip install --target DIR`) whose data folders are missing must
    say so, not pick up an unrelated `templates`/`targets`/`runtime_c` folder two levels up (beside DIR)."""
    vendor = tmp_path / "vendor"
    shutil.copytree(ROOT / "toolchain" / "prunec", vendor / "prunec",
                    ignore=shutil.ignore_patterns("__pycache__", "templates", "runtime_c", "targets"))
    for name in DATA:
        (tmp_path / name).mkdir()
    (tmp_path / "runtime_c" / "kernels.inc").write_text("/* someone else's */\n")
    code = ("import prunec.resources as r\n"
            "for f in (r.templates_dir, r.runtime_dir, r.targets_dir):\n"
            "    try:\n        print('FOUND', f())\n"
            "    except r.PrunecError as e:\n"
            "        assert isinstance(e, FileNotFoundError); print('MISSING', e)\n")
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(vendor)),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("MISSING") and "reinstall prunec" in line for line in lines), r.stdout


def test_checkout_still_finds_its_data():
    from prunec import resources

    assert resources.data_dir("runtime_c") == ROOT / "runtime_c"
    assert resources.data_dir("templates") == ROOT / "templates"
    assert resources.data_dir("targets") == ROOT / "targets"
    with pytest.raises(ValueError):
        resources.data_dir("docs")
    assert issubclass(resources.MissingResource, PrunecError)
