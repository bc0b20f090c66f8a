"""The model zoo: the four networks of Han et al. (2015).

LeNet-300-100 and the Caffe LeNet-5 take 1x28x28 images; AlexNet and VGG-16 take ImageNet crops (AlexNet: Caffe's 3x227x227, VGG-16: 3x224x224) and
carry dropout on the outputs of fc6 and fc7 (so it feeds fc7 and fc8), as in the Caffe models the paper pruned. Layer names are stable: the pruning
recipes, the reports and the generated C refer to them.
"""
from __future__ import annotations

import operator
from typing import Callable

import torch
from torch import nn

from .errors import PrunecError


class LeNet300(nn.Module):
    """LeNet-300-100: 784-300-100-10 fully connected, ReLU."""

    def __init__(self, num_classes: int = 10, in_features: int = 784):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 300)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(300, 100)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x):
        x = self.flatten(x)
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe LeNet-5: conv 20@5x5, maxpool 2, conv 50@5x5, maxpool 2, fc 500, ReLU, fc 10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.flatten(x)
        x = self.relu1(self.fc1(x))
        return self.fc2(x)


class AlexNet(nn.Module):
    """AlexNet (Caffe/paper shapes): 5 conv (grouped conv2/4/5 as in the original), 3 fc, dropout 0.5.

    As in Caffe's bvlc_alexnet (the model the paper pruned) the dropouts follow fc6 and fc7 (fc6 → relu6 →
    drop6 → fc7 → relu7 → drop7 → fc8), not torchvision's placement before fc6 and fc7; the dropout rescale
    (prune.rescale_dropout) therefore scales drop6 by fc7's and drop7 by fc8's remaining connections. LRN is
    left out (no weights; the parameter count is Caffe's)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def _vgg_block(cin: int, cout: int, n: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
    return layers + [nn.MaxPool2d(2, 2)]


class VGG16(nn.Module):
    """VGG-16 (configuration D): 13 conv 3x3, 3 fc, dropout 0.5."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        cfg = [(3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3)]
        self.features = nn.Sequential(*[m for c in cfg for m in _vgg_block(*c)])
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


# name -> (constructor, input shape without batch, default num_classes)
MODELS: dict[str, tuple[Callable[..., nn.Module], tuple[int, ...], int]] = {
    "lenet300": (LeNet300, (1, 28, 28), 10),
    "lenet5": (LeNet5, (1, 28, 28), 10),
    "alexnet": (AlexNet, (3, 227, 227), 1000),
    "vgg16": (VGG16, (3, 224, 224), 1000),
}


def create(name: str, num_classes: int | None = None) -> nn.Module:
    """The zoo model `name`, freshly initialised, with `num_classes` outputs (None: the model's default)."""
    if name not in MODELS:
        raise PrunecError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    ctor, _, default_classes = MODELS[name]
    if num_classes is None:
        num_classes = default_classes
    try:
        n = -1 if isinstance(num_classes, bool) else operator.index(num_classes)  # ints, numpy ints; not 2.0, True
    except TypeError:
        n = -1
    if n < 1:
        raise PrunecError(f"{name}: num_classes must be a positive integer (the number of output classes), not "
                          f"{num_classes!r}; leave it out for the model's default of {default_classes}")
    return ctor(num_classes=n)


def input_shape(name: str) -> tuple[int, ...]:
    if name not in MODELS:
        raise PrunecError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name][1]


PRUNABLE = (nn.Conv2d, nn.Conv1d, nn.Linear)  # the module types whose weights prunec prunes
CONV = (nn.Conv2d, nn.Conv1d)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose weights are pruned, in forward order: every Conv2d, Conv1d and Linear."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]


def require_prunable(model: nn.Module, names, what: str) -> None:
    """PrunecError when `names` hold a name that is not a prunable layer of `model`: a module of another kind is
    named with its type (a Conv1d is no unknown layer, it is one prunec does not prune), any other name as unknown."""
    layers = [n for n, _ in prunable_layers(model)]
    bad = sorted(set(names) - set(layers))
    if not bad:
        return
    mods = dict(model.named_modules())
    unknown = [n for n in bad if n not in mods]
    pieces = ([f"unknown layer(s) {unknown}"] if unknown else []) + \
        [f"{n} is a {type(mods[n]).__name__}" for n in bad if n in mods]
    raise PrunecError(f"{what}: {'; '.join(pieces)}. prunec prunes the weights of nn.Linear, nn.Conv1d and nn.Conv2d layers; this "
                      f"model's are {layers}")


def dropout_rates(model: nn.Module) -> dict[str, float]:
    """Every Dropout module's rate, by module name (what the paper's rescale changes and checkpoints keep)."""
    return {n: float(m.p) for n, m in model.named_modules() if isinstance(m, nn.Dropout)}
