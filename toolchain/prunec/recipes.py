"""Pruning recipes: per-model defaults and the per-layer profiles of Han et al. (2015).

A recipe says how much of each layer to prune in the end (`sparsity`: fraction pruned, per layer name) or
how to pick thresholds (`quality`: |w| < q·std), how many prune → retrain steps to take and how the
per-step amount grows (`schedule`), and how to retrain (epochs, lr, regulariser).

`PAPER_REMAINING` is the fraction of weights the paper kept per layer (Tables 1–5), the reference that
`prunec report` plots beside ours. The `DEFAULT_RECIPES` for the LeNets are the ones tuned on Fashion-MNIST
(docs/PRUNING.md says how); AlexNet and VGG-16 use the paper's profiles as they are.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import PrunecError

# Fraction of weights remaining per layer in the paper (Han et al. 2015, Tables 2–5).
PAPER_REMAINING: dict[str, dict[str, float]] = {
    "lenet300": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26},
    "lenet5": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19},
    "alexnet": {
        "features.0": 0.84, "features.3": 0.38, "features.6": 0.35, "features.8": 0.37, "features.10": 0.37,
        "classifier.0": 0.09, "classifier.3": 0.09, "classifier.6": 0.25,
    },
    "vgg16": {
        "features.0": 0.58, "features.2": 0.22, "features.5": 0.34, "features.7": 0.36,
        "features.10": 0.53, "features.12": 0.24, "features.14": 0.42,
        "features.17": 0.32, "features.19": 0.27, "features.21": 0.34,
        "features.24": 0.35, "features.26": 0.29, "features.28": 0.36,
        "classifier.0": 0.04, "classifier.3": 0.04, "classifier.6": 0.23,  # Table 5: 7.5 % of 138 M = 13x
    },
}

PAPER_COMPRESSION = {"lenet300": 12, "lenet5": 12, "alexnet": 9, "vgg16": 13}


# `prunec prune --reg l1` without --reg-strength: the recipes' strengths are L2 ones (5e-4), far too strong as an L1
# lambda; 1e-5 kept LeNet-300-100 at its L2 accuracy in a short check (docs/PRUNING.md)
DEFAULT_L1_STRENGTH = 1e-5

@dataclass
class Recipe:
    sparsity: dict[str, float] = field(default_factory=dict)  # final fraction pruned per layer
    quality: float | None = None  # if set: threshold = quality * std of the layer's dense weights
    global_sparsity: float | None = None  # if set: one magnitude threshold over all layers
    steps: int = 4  # prune → retrain iterations
    schedule: str = "cubic"  # how the pruned fraction grows per step: "cubic", "linear" or "oneshot"
    retrain_epochs: int = 10  # after each step
    final_epochs: int = 0  # extra epochs after the last step
    lr: float = 0.005  # retraining learning rate (the paper: 1/10 of the dense one; the LeNet recipes below use the dense peak with lr_span "run")
    lr_schedule: str = "cosine"
    lr_span: str = "step"  # cosine restarts at `lr` in every retraining phase ("step") or decays once over the run ("run")
    momentum: float = 0.9
    reg: str = "l2"  # "l2" (weight decay) or "l1"
    reg_strength: float | None = None  # None: the regulariser's own default, 1e-4 for L2, DEFAULT_L1_STRENGTH for L1
    batch_size: int = 128
    alternate: bool = False  # retrain fc with conv frozen, then conv with fc frozen
    dropout_rescale: bool = True
    remove_dead: bool = True
    distill: float = 0.0  # >0: retrain against the dense model's soft targets too (weight of that term)
    distill_temperature: float = 4.0
    label_smoothing: float = 0.0  # retraining loss: cross-entropy with smoothed targets (0 = off)
    final_average: bool = False  # final phase: constant lr, end with the mean of its epoch-end weights (SWA)
    target_compression: float | None = None  # scale the profile so total/nonzero weights reaches this
    max_accuracy_drop: float | None = None  # stop (and keep the previous step) beyond this drop (fraction)

    def __post_init__(self):
        if self.reg_strength is None:
            self.reg_strength = DEFAULT_L1_STRENGTH if self.reg == "l1" else 1e-4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if d.get("quality") is not None or d.get("global_sparsity") is not None:
            d["sparsity"] = {}  # recipes saved before validate refused both kept the default profile beside them
        return cls(**d)

    def validate(self) -> "Recipe":
        for name, s in self.sparsity.items():
            if not (0.0 <= s < 1.0):
                raise PrunecError(f"sparsity {s} for layer {name} is outside [0, 1): give the fraction of weights to prune, e.g. {name}=0.9")
        if self.global_sparsity is not None and not (0.0 <= self.global_sparsity < 1.0):
            raise PrunecError(f"--global-threshold {self.global_sparsity} is outside [0, 1): give the overall fraction to prune, e.g. 0.9")
        if self.quality is not None and not 0 <= self.quality < math.inf:
            raise PrunecError(f"--quality {self.quality} is not a finite number ≥ 0: the threshold is quality × std of the "
                              f"layer's weights, e.g. 1.0")
        if self.steps < 1:
            raise PrunecError(f"--steps {self.steps}: need at least 1 prune step")
        if self.retrain_epochs < 0:
            raise PrunecError(f"--retrain-epochs {self.retrain_epochs} is negative: give the epochs of retraining after each step (≥ 0)")
        if self.final_epochs < 0:
            raise PrunecError(f"--final-epochs {self.final_epochs} is negative: give the extra epochs after the last step (≥ 0)")
        if not 0 < self.lr < math.inf:
            raise PrunecError(f"--lr {self.lr} is not a finite number > 0: give the retraining learning rate, e.g. 0.005")
        if not 0 <= self.reg_strength < math.inf:
            raise PrunecError(f"--reg-strength {self.reg_strength} is not a finite number ≥ 0: give the L1/L2 strength, e.g. 1e-4")
        if self.batch_size < 1:
            raise PrunecError(f"--batch-size {self.batch_size}: need at least 1")
        if not 0 <= self.momentum < 1:
            raise PrunecError(f"--momentum {self.momentum} is outside [0, 1): give the SGD momentum, e.g. 0.9")
        if self.schedule not in ("cubic", "linear", "oneshot"):
            raise PrunecError(f"unknown schedule {self.schedule!r}; choose cubic, linear or oneshot")
        if self.lr_span not in ("step", "run"):
            raise PrunecError(f"unknown --lr-span {self.lr_span!r}; choose step or run")
        if self.reg not in ("l1", "l2"):
            raise PrunecError(f"unknown regulariser {self.reg!r}; choose l1 or l2")
        if self.quality is not None and self.global_sparsity is not None:
            raise PrunecError("quality and global_sparsity both choose what to prune; give only one of them")
        if self.sparsity and (self.quality is not None or self.global_sparsity is not None):
            raise PrunecError(f"sparsity and {'quality' if self.quality is not None else 'global_sparsity'} both choose "
                              f"what to prune (the sparsity per layer would be ignored); give only one of them")
        if self.target_compression is not None and (self.quality is not None or self.global_sparsity is not None):
            raise PrunecError("target_compression scales a per-layer sparsity profile; it does not apply to "
                              f"{'quality' if self.quality is not None else 'global_sparsity'} (it would be ignored)")
        if self.target_compression is not None and not 1 <= self.target_compression < math.inf:
            raise PrunecError(f"--target-compression {self.target_compression} is not a finite number ≥ 1: it is "
                              f"total/nonzero weights, e.g. 12")
        if not (0.0 <= self.label_smoothing < 1.0):
            raise PrunecError(f"--label-smoothing {self.label_smoothing} is outside [0, 1): it is the weight of the uniform target")
        if not (0.0 <= self.distill <= 1.0):
            raise PrunecError(f"--distill {self.distill} is outside [0, 1]: it is the weight of the distillation loss")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop < math.inf:
            raise PrunecError(f"--max-accuracy-drop {self.max_accuracy_drop} is not a finite number ≥ 0 (a fraction, "
                              f"e.g. 0.001 for 0.1 pp)")
        return self


def paper_sparsity(model_name: str) -> dict[str, float]:
    return {k: round(1.0 - v, 6) for k, v in PAPER_REMAINING[model_name].items()}


# The default `prunec prune` recipes. LeNets: tuned on Fashion-MNIST (docs/PRUNING.md, docs/RESULTS.md).
DEFAULT_RECIPES: dict[str, Recipe] = {
    "lenet300": Recipe(  # Zhu & Gupta style: prune a little every epoch inside one cosine at the dense lr
        sparsity={"fc1": 0.93, "fc2": 0.85, "fc3": 0.40},
        steps=14, schedule="cubic", retrain_epochs=1, final_epochs=6, lr=0.05, lr_span="run", reg="l2", reg_strength=5e-4,
        label_smoothing=0.1,  # as the dense recipe (train.DEFAULTS); docs/RESULTS.md, round 4
        batch_size=64,  # as the dense recipe: +0.12 pp pruned over 15 seeds, +0.24 pp dense (docs/RESULTS.md, round 6)
    ),
    "lenet5": Recipe(
        sparsity={"conv1": 0.34, "conv2": 0.88, "fc1": 0.925, "fc2": 0.70},  # same schedule shape as lenet300
        steps=14, schedule="cubic", retrain_epochs=1, final_epochs=6, lr=0.02, lr_span="run", reg="l2", reg_strength=5e-4,
        label_smoothing=0.1,
        momentum=0.95,  # as the dense recipe: +0.07 pp pruned over 10 seeds, +0.24 pp dense (docs/RESULTS.md, round 6)
    ),
    "alexnet": Recipe(sparsity=paper_sparsity("alexnet"), steps=4, retrain_epochs=10, lr=0.001, reg_strength=5e-4),
    "vgg16": Recipe(sparsity=paper_sparsity("vgg16"), steps=4, retrain_epochs=10, lr=0.001, reg_strength=5e-4),
}


# The paper's own recipe per model (`prunec prune --recipe paper`): the per-layer profile of its Tables 2-5, iterative
# prune -> retrain, retraining at 1/10 of the dense learning rate (the LeNets' retraining rate in the paper), a cosine
# restarted in every step, L2 as in dense training, no label smoothing (the paper has none), momentum 0.9 (Caffe's).
# The paper gives no step or epoch counts for the LeNets: 4 steps of 10 epochs. AlexNet's and VGG-16's tuned recipes
# are this one already.
PAPER_RECIPES: dict[str, Recipe] = {
    "lenet300": Recipe(sparsity=paper_sparsity("lenet300"), steps=4, retrain_epochs=10, lr=0.005, reg_strength=5e-4,
                       batch_size=64),  # 1/10 of the dense recipe's lr 0.05; its batch
    "lenet5": Recipe(sparsity=paper_sparsity("lenet5"), steps=4, retrain_epochs=10, lr=0.002, reg_strength=5e-4),  # 1/10 of 0.02
    "alexnet": DEFAULT_RECIPES["alexnet"],
    "vgg16": DEFAULT_RECIPES["vgg16"],
}

RECIPE_KINDS = ("tuned", "paper")


def default_recipe(model_name: str, kind: str = "tuned") -> Recipe:
    """The model's `prunec prune` recipe: "tuned" (DEFAULT_RECIPES, the default) or "paper" (PAPER_RECIPES)."""
    if kind not in RECIPE_KINDS:
        raise PrunecError(f"unknown recipe {kind!r}; choose one of: {', '.join(RECIPE_KINDS)}")
    table = DEFAULT_RECIPES if kind == "tuned" else PAPER_RECIPES
    if model_name not in table:
        raise PrunecError(f"no pruning recipe for model {model_name!r}; choose one of: {', '.join(table)}")
    r = table[model_name]
    return replace(r, sparsity=dict(r.sparsity))


def _sparsity_file(path: Path, model: str | None = None) -> str:
    """The `proposed_sparsity` of a `prunec sensitivity` output (sensitivity.json), as LAYER=FRACTION text."""
    if path.is_dir():
        hint = f" (give {path / 'sensitivity.json'})" if (path / "sensitivity.json").is_file() else ""
        raise PrunecError(f"--sparsity {path} is a folder{hint}: give the sensitivity.json that `prunec sensitivity` "
                          f"wrote, or LAYER=FRACTION pairs")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrunecError(f"--sparsity {path}: cannot read it as JSON ({e}); give the sensitivity.json that "
                          f"`prunec sensitivity BASE --out DIR` wrote, or LAYER=FRACTION pairs") from None
    prop = data.get("proposed_sparsity") if isinstance(data, dict) else None
    if not isinstance(prop, dict) or not prop:
        raise PrunecError(f"--sparsity {path}: no \"proposed_sparsity\" object in it; give the sensitivity.json that "
                          f"`prunec sensitivity BASE --out DIR` wrote, or LAYER=FRACTION pairs")
    other = data.get("model")
    if model and other and other != model:
        raise PrunecError(f"--sparsity {path} is the sensitivity of a {other} model, and this is a {model}: run "
                          f"`prunec sensitivity` on this model's dense checkpoint")
    return ",".join(f"{k}={v}" for k, v in prop.items())


def parse_sparsity(text: str, model: str | None = None) -> dict[str, float]:
    """'fc1=0.92,fc2=0.91' -> {'fc1': 0.92, 'fc2': 0.91}. A path to a JSON file (the sensitivity.json of
    `prunec sensitivity`; of a `model` model, where given) gives its proposed per-layer sparsity."""
    if text.strip().lower().endswith(".json") or ("=" not in text and Path(text.strip()).exists()):
        text = _sparsity_file(Path(text.strip()), model)
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise PrunecError(f"--sparsity entry {part!r} is not LAYER=FRACTION, e.g. fc1=0.92,fc2=0.91")
        k, v = part.split("=", 1)
        try:
            f = float(v)
        except ValueError:
            raise PrunecError(f"--sparsity {k}={v!r}: not a number; give the fraction pruned, e.g. {k}=0.9") from None
        if not (0.0 <= f < 1.0):
            raise PrunecError(f"--sparsity {k}={f} is outside [0, 1): give the fraction of weights to prune, e.g. {k}=0.9")
        if k.strip() in out:
            raise PrunecError(f"--sparsity names layer {k.strip()} twice ({k.strip()}={out[k.strip()]:g} and {f:g}); give it once")
        out[k.strip()] = f
    if not out:
        raise PrunecError("--sparsity is empty; give LAYER=FRACTION pairs, e.g. fc1=0.92,fc2=0.91")
    return out
