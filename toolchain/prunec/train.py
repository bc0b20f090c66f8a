"""Training and evaluation on whole in-memory tensors (minibatches by index permutation, no DataLoader).

`fit` trains a model, optionally holding a mask set (pruned weights stay exactly 0, see masks.py), with L2
(SGD weight decay) or L1 regularisation, a cosine or constant learning rate, a subset of parameters
trainable (the paper's alternate fc/conv retraining) and, when torch.distributed is initialised with more
than one rank, DistributedDataParallel with each rank taking its share of the same permutation.

`DEFAULTS` holds each model's dense training recipe (the `prunec train` defaults).
"""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as DIST
from . import masks as M
from .data import Dataset, Split
from .errors import PrunecError, env_int


@dataclass
class TrainConfig:
    epochs: int = 20
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4  # L2 (SGD weight decay)
    l1: float = 0.0  # L1 strength on prunable weights (sign(w) added to the gradient)
    batch_size: int = 128
    lr_schedule: str = "cosine"  # "cosine" (per iteration, to 0) or "constant"
    lr_offset: int = 0  # cosine: epochs of the decay already done before this call (one decay across several calls)
    lr_total: int | None = None  # cosine: epochs the decay spans (default: `epochs`)
    nesterov: bool = False
    distill: float = 0.0  # weight of the distillation term (soft targets of a teacher), 0 = plain cross-entropy
    distill_temperature: float = 4.0
    label_smoothing: float = 0.0  # cross-entropy against (1 - e) one-hot + e uniform targets
    average: bool = False  # keep the mean of the weights at each epoch's end and end with it (SWA)

    def validate(self) -> "TrainConfig":
        """PrunecError for a value that would train wrong rather than fail (NaN, inf, out of range: an lr of NaN gives
        NaN weights, a momentum of 1.5 diverges); returns self. The messages name the CLI's flags, --FIELD-NAME."""
        checks = (
            ("epochs", self.epochs, self.epochs >= 0, "is negative"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "must be ≥ 1"),
            ("lr", self.lr, 0 < self.lr < math.inf, "is not a finite number > 0: give the peak learning rate, e.g. 0.05"),
            ("weight_decay", self.weight_decay, 0 <= self.weight_decay < math.inf,
             "is not a finite number ≥ 0: give the L2 strength, e.g. 5e-4"),
            ("l1", self.l1, 0 <= self.l1 < math.inf, "is not a finite number ≥ 0: give the L1 strength, e.g. 1e-5"),
            ("momentum", self.momentum, 0 <= self.momentum < 1, "is outside [0, 1): give the SGD momentum, e.g. 0.9"),
            ("label_smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1,
             "is outside [0, 1): it is the weight of the uniform target, e.g. 0.1"),
            ("distill", self.distill, 0 <= self.distill <= 1, "is outside [0, 1]: it is the weight of the distillation loss"),
            ("distill_temperature", self.distill_temperature, 0 < self.distill_temperature < math.inf,
             "is not a finite number > 0, e.g. 4"),
        )
        for name, value, ok, need in checks:
            if not ok:
                raise PrunecError(f"--{name.replace('_', '-')} {value} {need}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise PrunecError(f"unknown lr schedule {self.lr_schedule!r}; choose cosine or constant")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# Dense training recipes (SGD, momentum 0.9 unless given, cosine decay). LeNets were tuned on Fashion-MNIST (see
# docs/PRUNING.md); AlexNet/VGG-16 follow their papers' SGD settings (ImageNet is not shipped). The LeNets' batch
# (LeNet-300-100) and momentum (LeNet-5) match their pruning recipes: each lifts the dense model as much as the pruned one.
DEFAULTS: dict[str, TrainConfig] = {
    "lenet300": TrainConfig(epochs=40, lr=0.05, weight_decay=5e-4, batch_size=64, label_smoothing=0.1),  # 64: RESULTS round 6
    "lenet5": TrainConfig(epochs=20, lr=0.02, weight_decay=5e-4, batch_size=128, label_smoothing=0.1, momentum=0.95),  # 0.95: round 6
    "alexnet": TrainConfig(epochs=90, lr=0.01, weight_decay=5e-4, batch_size=256),
    "vgg16": TrainConfig(epochs=74, lr=0.01, weight_decay=5e-4, batch_size=256),
}


def default_config(model_name: str) -> TrainConfig:
    if model_name not in DEFAULTS:
        raise PrunecError(f"unknown model {model_name!r}; choose one of: {', '.join(DEFAULTS)}")
    return replace(DEFAULTS[model_name])


def resolve_device(text: str | None = "auto") -> torch.device:
    """The torch device of a --device option: "auto" (a CUDA GPU when torch sees one, else the CPU), "cpu",
    "cuda" (the current CUDA device: under torchrun, the rank's LOCAL_RANK one) or "cuda:N"."""
    text = (text or "auto").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text in ("cpu", "cpu:0"):  # torch names the one CPU device cpu:0 too
        return torch.device("cpu")
    if text == "cuda" or re.fullmatch(r"cuda:\d+", text):
        if not torch.cuda.is_available():
            raise PrunecError(f"--device {text}: torch {torch.__version__} sees no CUDA GPU here (a CPU-only build, or "
                              f"no driver); use --device cpu (or auto, which falls back to the CPU)")
        dev = torch.device(text)
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise PrunecError(f"--device {text}: torch sees {torch.cuda.device_count()} CUDA device(s), "
                              f"numbered from 0; give one of them")
        _check_one_gpu_per_rank(text)
        return dev
    raise PrunecError(f"--device {text!r} is not a device; choose auto, cpu, cuda or cuda:N")


def _check_one_gpu_per_rank(text: str) -> None:
    """Under torchrun, nccl refuses two ranks on one GPU ("Duplicate GPU detected"), which every rank would then
    report as another's failure: refuse it here, before any work, with the fix."""
    if not DIST.launched_by_torchrun():
        return
    local = env_int("LOCAL_WORLD_SIZE", 1, 1, "the processes on this machine (torchrun sets it)")
    if local <= 1:
        return
    if text != "cuda":
        raise PrunecError(f"--device {text} under torchrun would put all {local} ranks of this machine on one GPU, "
                          f"which nccl refuses; give --device cuda (each rank its LOCAL_RANK GPU) or --device cpu")
    if local > torch.cuda.device_count():
        raise PrunecError(f"{local} ranks on this machine but torch sees {torch.cuda.device_count()} CUDA GPU(s): nccl "
                          f"needs one GPU per rank; run torchrun --nproc_per_node={torch.cuda.device_count()}, or "
                          f"--device cpu")


def to_device(data, device: torch.device):
    """The data set (or split) with its tensors on `device`, so that a GPU run indexes its minibatches there
    instead of copying each one from host memory."""
    if isinstance(data, Dataset):
        return replace(data, train=to_device(data.train, device), test=to_device(data.test, device))
    return replace(data, x=data.x.to(device), y=data.y.to(device))


# torch's own choice of intra-op threads (the physical cores), taken before anything here changes it
_TORCH_THREADS = torch.get_num_threads()


def set_threads(n: int | None = None) -> int:
    """Use PRUNEC_THREADS, else `n`, else torch's default (the physical cores) intra-op threads on the CPU."""
    k = env_int("PRUNEC_THREADS", 0, 1, "the intra-op threads per process") or n or _TORCH_THREADS
    torch.set_num_threads(max(1, k))
    return k


def _dist():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """The model's outputs on all of x (eval mode), e.g. a dense teacher's soft targets for distillation."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 2000) -> float:
    """Top-1 accuracy (a fraction) on the whole split, eval mode; restores the previous mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(split), batch_size):
        x = split.x[i : i + batch_size].to(device)
        y = split.y[i : i + batch_size].to(device)
        correct += int((model(x).argmax(1) == y).sum())
    model.train(was_training)
    return correct / max(1, len(split))


@DIST.peer_errors
def fit(
    model: nn.Module,
    data: Split,
    cfg: TrainConfig,
    *,
    masks: M.Masks | None = None,
    seed: int = 0,
    trainable: Callable[[str], bool] | None = None,
    progress: bool = True,
    desc: str = "train",
    on_epoch: Callable[[int, dict], None] | None = None,
    teacher_logits: torch.Tensor | None = None,
) -> list[dict]:
    """Train in place with SGD; returns one dict per epoch (mean train loss, lr at the end)."""
    from tqdm import tqdm

    cfg.validate()

    dist = _dist()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    device = next(model.parameters()).device
    # parameters the caller froze (requires_grad False) stay frozen, and only those this phase freezes are thawed
    # after it
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and (trainable is None or trainable(n))]
    frozen = [p for n, p in model.named_parameters() if p.requires_grad and trainable is not None and not trainable(n)]
    for p in frozen:
        p.requires_grad_(False)
    # normalisation layers whose parameters this phase freezes keep their running statistics too (eval mode)
    frozen_ids = {id(p) for p in frozen}
    still = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
             and any(True for _ in m.parameters(recurse=False))
             and all(id(q) in frozen_ids for q in m.parameters(recurse=False))]
    params = [p for _, p in named]
    if not params:
        raise PrunecError("nothing to train: no parameter selected")
    l1_weights = [model.get_submodule(n).weight for n in (masks or M.dense_masks(model))] if cfg.l1 else []
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)

    net: nn.Module = model
    if dist:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if cfg.batch_size % world:
            lo, hi = cfg.batch_size - cfg.batch_size % world, cfg.batch_size - cfg.batch_size % world + world
            raise PrunecError(f"--batch-size {cfg.batch_size} is not a multiple of the {world} ranks: each rank takes "
                              f"an equal share of the global minibatch; give {lo or hi} or {hi}")
        if len(data) < world:
            raise PrunecError(f"the training set has {len(data)} samples, fewer than the {world} ranks: every rank "
                              f"needs a share of it; run with fewer ranks")
        # rank 0's buffers (batch norm's running statistics) go to every rank at each forward, so the ranks agree
        net = DDP(model)
        if rank:  # each rank its own dropout masks (the same ones on every run and resume): the global RNG is
            torch.manual_seed((seed * 1_000_003 + rank) % 2**63)  # what Dropout draws from; rank 0 keeps the
            # caller's stream, so its draws are those of a one-process run

    if masks:
        M.apply_masks(model, masks)
    n = len(data)
    per_rank = n // world
    # The global minibatch is cfg.batch_size: each of `world` ranks takes its share, so that N ranks take the
    # steps of one process (same steps per epoch, same lr schedule); DDP averages the ranks' gradients.
    bs = max(1, cfg.batch_size // world)
    steps = max(1, math.ceil(per_rank / bs))
    total = steps * (cfg.lr_total if cfg.lr_total is not None else cfg.epochs)
    g = torch.Generator().manual_seed(seed)
    history = []
    t = 0
    t0 = steps * cfg.lr_offset  # iterations of the cosine already done
    avg = {k: torch.zeros_like(v) for k, v in model.state_dict().items() if v.is_floating_point()} if cfg.average else None
    model.train()
    try:
        for epoch in range(cfg.epochs):
            for m in still:  # each epoch: an on_epoch callback that evaluates puts the whole model back in train mode
                m.eval()
            perm = torch.randperm(n, generator=g)  # same on every rank; each takes its slice
            perm = perm[rank * per_rank : (rank + 1) * per_rank] if dist else perm
            bar = tqdm(range(steps), desc=f"{desc} {epoch + 1}/{cfg.epochs}", leave=False, disable=True if (not progress or rank != 0) else None,
                       unit="batch", dynamic_ncols=True)  # None: a bar on a terminal, a line per epoch in a log
            loss_sum = 0.0
            for s in bar:
                lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (t0 + t) / total))) if cfg.lr_schedule == "cosine" else cfg.lr
                for group in opt.param_groups:
                    group["lr"] = lr
                idx = perm[s * bs : (s + 1) * bs]
                di = idx.to(data.x.device)  # the data may live on the GPU (to_device); the teacher's logits do not
                x, y = data.x[di].to(device), data.y[di].to(device)
                opt.zero_grad(set_to_none=True)
                out = net(x)
                loss = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
                if cfg.distill and teacher_logits is not None:
                    T = cfg.distill_temperature
                    soft = F.kl_div(F.log_softmax(out / T, 1), F.log_softmax(teacher_logits[idx].to(device) / T, 1),
                                    log_target=True, reduction="batchmean") * (T * T)
                    loss = (1 - cfg.distill) * loss + cfg.distill * soft
                loss.backward()
                if cfg.l1:
                    with torch.no_grad():
                        for w in l1_weights:
                            if w.grad is not None:
                                w.grad.add_(torch.sign(w), alpha=cfg.l1)
                M.masked_step(opt, model, masks)
                loss_sum += float(loss.detach())
                t += 1
                if s % 50 == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2g}")
            bar.close()
            if dist:
                tot = torch.tensor([loss_sum], dtype=torch.float64, device=device)
                dist.all_reduce(tot)  # the epoch's loss over every rank's share, not rank 0's alone
                loss_sum = float(tot) / world
                with torch.no_grad():  # each rank's last forward moved its own running statistics: rank 0's for all
                    for b in model.buffers():
                        dist.broadcast(b, 0)
            if bar.disable and progress and rank == 0:
                print(f"{desc} {epoch + 1}/{cfg.epochs}: mean loss {loss_sum / max(1, steps):.4f}, lr {lr:.2g}",
                      file=sys.stderr, flush=True)
            if avg is not None:  # running mean; pruned weights are 0 at every epoch end, so they stay 0
                with torch.no_grad():
                    for k, v in model.state_dict().items():
                        if k in avg:
                            avg[k].mul_(epoch / (epoch + 1)).add_(v, alpha=1 / (epoch + 1))
            rec = {"epoch": epoch + 1, "loss": loss_sum / steps, "lr": lr, "steps": steps}
            history.append(rec)
            if on_epoch:
                on_epoch(epoch, rec)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for m in still:
            m.train(model.training)
    if avg is not None and cfg.epochs:
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if k in avg:
                    v.copy_(avg[k])
        if masks:
            M.apply_masks(model, masks)
    model.eval()
    return history
