"""Retraining under torchrun: DistributedDataParallel on gloo (CPU) or nccl (CUDA).

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


def init() -> tuple[int, int]:
    """Join the torchrun process group (nccl with CUDA, else gloo); one CPU thread per rank by default."""
    import torch.distributed as dist

    if is_initialized():
        return rank(), world_size()
    if not dist.is_available():
        raise PrunecError("torch.distributed is not available in this torch build; run without torchrun")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if "PRUNEC_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    return dist.get_rank(), dist.get_world_size()


def digest(model: nn.Module, masks: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(masks):
        h.update(name.encode())
        h.update(masks[name].to(torch.uint8).numpy().tobytes())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
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
