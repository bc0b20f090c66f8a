"""Data sources: Fashion-MNIST from IDX files (the Debian package dataset-fashion-mnist) and a small
synthetic set for fast tests. Both give whole tensors in memory (no DataLoader workers: faster on 2 cores).

Images are returned as float32 [N, 1, 28, 28], normalised with the training set's mean and std; the same
normalisation is the input contract of a built model (`prunec verify --data fashion-mnist` applies it).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import PrunecError, env_int

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DATASETS = ("fashion-mnist", "synthetic")


@dataclass
class Split:
    x: torch.Tensor  # float32 [N, C, H, W]
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


def _open(path: Path):
    """gzip or plain, decided by the file's first bytes (not its name): a gunzipped file still named .gz, or a
    gzip file without the suffix, both read."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        p = data_dir / name
        if p.exists():
            return p
    raise PrunecError(
        f"Fashion-MNIST file {stem}[.gz] not found in {data_dir}. Install the Debian package "
        f"'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist, or `make setup`), "
        f"or pass --data-dir with a folder of IDX files."
    )


_IDX_KIND = {1: "a label file (IDX magic 2049, 1 dimension)", 3: "an image file (IDX magic 2051, 3 dimensions)"}


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip or plain): big-endian magic, dims, then uint8 data. With `ndim`, the file must
    have that many dimensions (3: images, 1: labels), so swapped or misnamed files are named as such."""
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise PrunecError(f"cannot read IDX file {path}: {e}; the file is corrupt, reinstall dataset-fashion-mnist") from e
    if len(raw) < 8:
        raise PrunecError(f"{path} is not an IDX file (too short)")
    want = ndim
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise PrunecError(f"{path} is not a uint8 IDX file (magic {raw[:4].hex()}; Fashion-MNIST images have "
                          f"00000803 = 2051, labels 00000801 = 2049)")
    if want is not None and ndim != want:
        raise PrunecError(f"{path} is {_IDX_KIND[ndim]} but {_IDX_KIND[want]} was expected here; "
                          f"are the images and labels files swapped or misnamed?")
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise PrunecError(f"{path}: IDX header is truncated ({len(raw)} bytes, need {offset}); the file is corrupt, "
                          f"reinstall dataset-fashion-mnist")
    dims = struct.unpack(">" + "I" * ndim, raw[4:offset])
    count = int(np.prod(dims))
    if len(raw) - offset != count:
        raise PrunecError(f"{path}: header says {dims} but the file holds {len(raw) - offset} bytes; it is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def normalise(images_u8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images_u8.astype(np.float32) / 255.0)
    x = (x - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    return x.unsqueeze(1).contiguous()


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, test_only: bool = False) -> Dataset:
    """Both splits, normalised; test_only: the train split left empty (unread), for what evaluates only
    (`prunec verify`: a third of a second instead of a second)."""
    d = Path(data_dir) if data_dir else FASHION_MNIST_DIR
    if d.exists() and not d.is_dir():
        raise PrunecError(f"--data-dir {d} is a file, not a folder; give the folder that holds the Fashion-MNIST "
                          f"IDX files (train-images-idx3-ubyte[.gz] and the three others)")
    if not d.is_dir():
        raise PrunecError(
            f"Fashion-MNIST directory {d} does not exist. Install the Debian package 'dataset-fashion-mnist' "
            f"(apt-get install dataset-fashion-mnist, or `make setup`), or pass --data-dir."
        )
    splits = {"train": Split(torch.zeros((0, 1, 28, 28)), torch.zeros(0, dtype=torch.int64))}
    for split, prefix in (("test", "t10k"),) if test_only else (("train", "train"), ("test", "t10k")):
        images_path, labels_path = _find(d, f"{prefix}-images-idx3-ubyte"), _find(d, f"{prefix}-labels-idx1-ubyte")
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        if images.shape[0] == 0:
            raise PrunecError(f"{d}: the {split} split has no images ({images_path.name} holds 0); give a folder with "
                              f"the full data set (reinstall dataset-fashion-mnist, or fix --data-dir)")
        if images.shape[0] != labels.shape[0]:
            raise PrunecError(f"{d}: {split} images ({images.shape[0]} in {images_path.name}) and labels "
                              f"({labels.shape[0]} in {labels_path.name}) differ in count")
        if labels.size and int(labels.max()) >= len(CLASSES):
            raise PrunecError(f"{labels_path}: label {int(labels.max())} is out of range; Fashion-MNIST labels are "
                              f"0..{len(CLASSES) - 1}")
        splits[split] = Split(normalise(images), torch.from_numpy(labels.astype(np.int64)))
    return Dataset("fashion-mnist", splits["train"], splits["test"])


def synthetic(n_train: int = 2000, n_test: int = 500, seed: int = 0, shape=(1, 28, 28), num_classes: int = 10) -> Dataset:
    """A learnable stand-in for fast tests: each class is a fixed random prototype plus noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn((num_classes,) + tuple(shape), generator=g)

    def make(n: int) -> Split:
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = protos[y] + 1.5 * torch.randn((n,) + tuple(shape), generator=g)
        return Split(x.float().contiguous(), y)

    return Dataset("synthetic", make(n_train), make(n_test), num_classes)


def synthetic_for(shape, seed: int = 0) -> Dataset:
    """The synthetic data set `prunec train/prune/verify --data synthetic` use for a model taking `shape` inputs:
    sizes from PRUNEC_SYNTHETIC_TRAIN / PRUNEC_SYNTHETIC_TEST (default 2000 / 500 for inputs up to 3x28x28, else
    64 / 32), prototypes and splits drawn from `seed` (the dense model's training seed: its test split is the
    one every later step evaluates on)."""
    shape = tuple(int(v) for v in shape)
    small = math.prod(shape) <= 28 * 28 * 3
    n_train = env_int("PRUNEC_SYNTHETIC_TRAIN", 2000 if small else 64, 1, "the synthetic training images")
    n_test = env_int("PRUNEC_SYNTHETIC_TEST", 500 if small else 32, 1, "the synthetic test images")
    return synthetic(n_train=n_train, n_test=n_test, seed=seed, shape=shape)


def check_data_dir(data: str | None, data_dir) -> None:
    """--data-dir names the folder of fashion-mnist's files: refuse it beside a data source that reads none (`data`
    None: --inputs or --random)."""
    if data_dir is not None and data != "fashion-mnist":
        raise PrunecError(f"--data-dir names the folder of --data fashion-mnist's files; "
                          f"{'--data ' + data if data else '--inputs/--random'} reads none: leave --data-dir out")


def load(name: str, data_dir: str | os.PathLike | None = None, **kw) -> Dataset:
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir)
    if name == "synthetic":
        return synthetic(**kw)
    raise PrunecError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
