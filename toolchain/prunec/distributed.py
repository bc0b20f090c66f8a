"""Retraining under torchrun: DistributedDataParallel on gloo (CPU tensors; nccl is added for CUDA ones).

Under `torchrun --nproc_per_node=N prunec prune ...` every rank loads the same checkpoint and data; DDP
broadcasts rank 0's parameters when it wraps the model and all-reduces gradients, so the weights stay
identical. Pruning decisions (the masks) are computed on rank 0 and broadcast (prune._broadcast_masks);
every rank applies the same masked step. `check_identical` all-gathers a digest of the masks and weights
and fails loudly if the ranks ever disagree. Only rank 0 writes files.

Shutdown: `dist.barrier(); dist.destroy_process_group(); os._exit(code)`. Without the hard exit, gloo
aborts about one run in five at interpreter exit ("terminate called without an active exception") after
correct results (../shared/NOTES.md).
"""
from __future__ import annotations

import hashlib
import os
import sys

import torch
from torch import nn

from .errors import PrunecError


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def is_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if is_initialized() else 1


def is_rank0() -> bool:
    return rank() == 0


def backend() -> str:
    """The process-group backend: gloo for CPU tensors always, plus nccl for CUDA tensors when there is a GPU.

    prunec trains and prunes on CPU tensors (models, masks and the mask/weight broadcasts all live on the CPU),
    and nccl has no CPU support: a plain "nccl" group fails at the first broadcast or DDP wrap on any machine
    with a GPU. "cpu:gloo,cuda:nccl" routes each collective by the device of its tensors."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def init() -> tuple[int, int]:
    """Join the torchrun process group (see `backend`); one CPU thread per rank by default."""
    import torch.distributed as dist

    if is_initialized():
        return rank(), world_size()
    if not dist.is_available():
        raise PrunecError("torch.distributed is not available in this torch build; run without torchrun")
    b = backend()
    if "nccl" in b:  # before the group is made, so its CUDA work lands on this rank's GPU (ranks may share one)
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % max(1, torch.cuda.device_count()))
    dist.init_process_group(backend=b)
    if "PRUNEC_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    return dist.get_rank(), dist.get_world_size()


def digest(model: nn.Module, masks: dict[str, torch.Tensor]) -> str:
    """sha256 of the masks, the state_dict and the Dropout rates. The rates are not in the state_dict but are
    part of what the ranks must agree on: the dropout rescale (Dr = Do·sqrt(Cr/Co)) changes them every step,
    and ranks training with different rates compute different gradients."""
    h = hashlib.sha256()
    for name in sorted(masks):
        h.update(name.encode())
        h.update(masks[name].detach().cpu().to(torch.uint8).contiguous().numpy().tobytes())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    for n, m in model.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            h.update(f"{n}.p={float(m.p)!r}".encode())
    return h.hexdigest()


def check_identical(model: nn.Module, masks: dict[str, torch.Tensor]) -> str:
    """All ranks must hold the same masks and weights; returns the shared digest."""
    import torch.distributed as dist

    d = digest(model, masks)
    if not is_initialized():
        return d
    all_d: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(all_d, d)
    if len(set(all_d)) != 1:
        raise PrunecError(f"ranks disagree on masks/weights after pruning: {all_d}; this is a prunec bug, please report it")
    return d


def shutdown(code: int = 0) -> None:
    """End a torchrun rank cleanly: barrier, destroy the group, hard exit (see module docstring)."""
    import torch.distributed as dist

    if is_initialized():
        try:
            dist.barrier()
            dist.destroy_process_group()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
