"""Foundation: data loading, the model zoo, packaged resources, atomic output."""
import gzip
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from prunec import PrunecError, atomic, data, models, resources

FMNIST = data.FASHION_MNIST_DIR


def _write_idx(path: Path, arr: np.ndarray, compress=True):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _fake_idx_dir(tmp_path, n_train=20, n_test=10, compress=True):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), compress)
    return tmp_path


@pytest.mark.parametrize("compress", [True, False])
def test_idx_loader_any_directory(tmp_path, compress):
    ds = data.load("fashion-mnist", data_dir=_fake_idx_dir(tmp_path, compress=compress))
    assert ds.train.x.shape == (20, 1, 28, 28) and ds.test.x.shape == (10, 1, 28, 28)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert int(ds.train.y.max()) < 10


def test_missing_dataset_names_the_package(tmp_path):
    with pytest.raises(PrunecError, match="dataset-fashion-mnist"):
        data.load("fashion-mnist", data_dir=tmp_path / "nope")
    with pytest.raises(PrunecError, match="dataset-fashion-mnist"):
        data.load("fashion-mnist", data_dir=tmp_path)


def test_truncated_idx_is_reported(tmp_path):
    _fake_idx_dir(tmp_path, compress=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(PrunecError, match="truncated or corrupt"):
        data.load("fashion-mnist", data_dir=tmp_path)


def test_unknown_dataset():
    with pytest.raises(PrunecError, match="unknown data set"):
        data.load("imagenet")


@pytest.mark.skipif(not FMNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    ds = data.load("fashion-mnist")
    assert len(ds.train) == 60000 and len(ds.test) == 10000
    assert torch.bincount(ds.test.y).tolist() == [1000] * 10
    assert abs(float(ds.train.x.mean())) < 0.01 and abs(float(ds.train.x.std()) - 1) < 0.01


def test_synthetic_is_deterministic_and_learnable():
    a, b = data.synthetic(seed=3), data.synthetic(seed=3)
    assert torch.equal(a.train.x, b.train.x)
    # nearest-prototype classification from class means beats chance by far
    means = torch.stack([a.train.x[a.train.y == c].mean(0) for c in range(10)])
    d = ((a.test.x[:, None] - means[None]) ** 2).flatten(2).sum(-1)
    assert (d.argmin(1) == a.test.y).float().mean() > 0.5


@pytest.mark.parametrize("name,params", [("lenet300", 266610), ("lenet5", 431080), ("alexnet", 60965224), ("vgg16", 138357544)])
def test_zoo_shapes(name, params):
    m = models.create(name)
    assert sum(p.numel() for p in m.parameters()) == params
    if name.startswith("lenet"):
        assert m(torch.zeros(2, *models.input_shape(name))).shape == (2, 10)


def test_zoo_forward_imagenet_shape():
    m = models.create("alexnet").eval()
    with torch.no_grad():
        assert m(torch.zeros(1, *models.input_shape("alexnet"))).shape == (1, 1000)


def test_unknown_model():
    with pytest.raises(PrunecError, match="unknown model"):
        models.create("resnet")


def test_resources_found():
    assert (resources.runtime_dir() / "include" / "prunec_types.h").is_file()
    assert (resources.targets_dir() / "host.toml").is_file()
    assert resources.templates_dir().is_dir()


def test_atomic_file_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic.atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_whole(tmp_path):
    out = tmp_path / "build"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["build"] and (out / "old.txt").exists()
    with atomic.atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["build"]


def test_atomic_unwritable_parent(tmp_path):
    with pytest.raises(PrunecError, match="does not exist"):
        with atomic.atomic_dir(tmp_path / "a" / "b"):
            pass


def test_atomic_outputs_get_the_usual_modes(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic.atomic_file(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("a")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "alexnet", "vgg16"])
def test_paper_profile_gives_the_papers_compression(name):
    """PAPER_REMAINING (Tables 2-5 of Han et al. 2015) must reproduce the paper's total: 12x, 12x, 9x, 13x."""
    from prunec.recipes import PAPER_COMPRESSION, PAPER_REMAINING
    with torch.device("meta"):
        m = models.create(name)
    layers = {n: mod.weight.numel() for n, mod in m.named_modules() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))}
    assert set(layers) == set(PAPER_REMAINING[name])
    kept = sum(n * PAPER_REMAINING[name][k] for k, n in layers.items())
    assert sum(layers.values()) / kept == pytest.approx(PAPER_COMPRESSION[name], rel=0.06)
