"""Retraining under torchrun: DistributedDataParallel on gloo (CPU tensors; nccl is added for CUDA ones).

Under `torchrun --nproc_per_node=N -m prunec prune ...` every rank loads the same checkpoint and data; DDP
broadcasts rank 0's parameters when it wraps the model and all-reduces gradients, so the weights stay
identical. Pruning decisions (the masks) are computed on rank 0 and broadcast (prune._broadcast_masks);
every rank applies the same masked step. `check_identical` all-gathers a digest of the masks and weights
and fails loudly if the ranks ever disagree. Only rank 0 writes files.

Shutdown: `dist.barrier(); dist.destroy_process_group(); os._exit(code)`. Without the hard exit, gloo
aborts about one run in five at interpreter exit ("terminate called without an active exception") after
correct results (../shared/NOTES.md).

When one rank fails (an exception on that rank only: a data error, a failed checkpoint write on rank 0, a NaN
check, Ctrl-C), every rank has to stop within seconds, not block in its next collective until the group's
timeout (gloo's default: 30 minutes):
- the failing rank skips the barrier (`shutdown(code != 0)`: the others are in a different collective, or
  in none, so it would wait for the whole timeout) and exits at once. Its sockets close, so a rank blocked in a
  gloo collective gets "Connection reset/closed by peer" within milliseconds; `peer_errors` turns that into a
  one-line `PeerFailed` ("rank 1 stopped: another rank failed ...") instead of a second gloo traceback, so
  the failing rank's own error is the one message that explains the failure.
- under torchrun, the agent stops the other ranks with SIGTERM as soon as one exits non-zero. `init` makes
  SIGTERM raise `Terminated`, so `finally` blocks run: a checkpoint being written is not left behind as a
  half-written temporary file (atomic.py removes it), and the rank exits with a one-line message.
- a rank that learned of the failure from the transport waits `PEER_GRACE_S` before exiting, so that
  torchrun sees the rank that failed first and names it as the "Root Cause" of its summary.
- a rank that hangs instead of exiting (stuck I/O, a collective only some ranks call) is caught by the group
  timeout, 600 s by default instead of 30 minutes (`PRUNEC_DIST_TIMEOUT`, seconds).
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import os
import re
import signal
import sys
import threading
import time

import torch
from torch import nn

from .errors import PrunecError, env_int

DEFAULT_TIMEOUT_S = 600.0
PEER_GRACE_S = 1.0


class PeerFailed(PrunecError):
    """A collective failed on this rank because another rank stopped (raised, was killed) or hung."""


class Terminated(PrunecError):
    """This rank received SIGTERM (torchrun sends it to the other ranks when one fails)."""


_peer_failed = False  # set when this rank's failure is a consequence of another rank's (see shutdown)


def launched_by_torchrun() -> bool:
    return env_int("WORLD_SIZE", 1, 1, "the number of processes (torchrun sets it)") > 1 and "RANK" in os.environ


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
        torch.cuda.set_device(env_int("LOCAL_RANK", 0, 0, "this process's rank on its machine (torchrun sets it)")
                              % max(1, torch.cuda.device_count()))
    dist.init_process_group(backend=b, timeout=datetime.timedelta(seconds=timeout_s()))
    _install_sigterm()
    threads = env_int("PRUNEC_THREADS", 0, 1, "the intra-op threads per process")
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    return dist.get_rank(), dist.get_world_size()


def timeout_s() -> float:
    """The process group's timeout (seconds): PRUNEC_DIST_TIMEOUT, else DEFAULT_TIMEOUT_S. It bounds how long a
    rank waits in a collective for a rank that is alive but stuck; a rank that exits is noticed at once."""
    v = os.environ.get("PRUNEC_DIST_TIMEOUT")
    if not v:
        return DEFAULT_TIMEOUT_S
    try:
        t = float(v)
    except ValueError:
        t = float("nan")
    if not t > 0 or t == float("inf"):
        raise PrunecError(f"PRUNEC_DIST_TIMEOUT={v!r}: give the collective timeout in seconds (> 0, e.g. 600)")
    return t


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise Terminated(f"rank {rank()} stopped by SIGTERM (torchrun sends it to the other ranks when one has stopped: "
                     f"that rank's error says why)")


def _install_sigterm() -> None:
    """SIGTERM raises Terminated on this rank (only from the main thread, only if nobody else handles it)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


_COMM = re.compile(r"gloo|nccl|Connection (?:reset|closed) by peer|Broken pipe", re.IGNORECASE)


def is_comm_error(e: BaseException) -> bool:
    """An error of the process group's transport (gloo raises plain RuntimeErrors naming its sources)."""
    import torch.distributed as dist

    return isinstance(e, getattr(dist, "DistError", ())) or (isinstance(e, RuntimeError) and bool(_COMM.search(str(e))))


def _comm_detail(e: BaseException) -> str:
    """gloo's message without its source location and advice: "Read error [127.0.0.1]:4711: Connection reset by peer"."""
    msg = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return msg.split(". ")[0].rstrip(".")


def _peer_failure(e: BaseException) -> PeerFailed:
    global _peer_failed
    _peer_failed = True
    return PeerFailed(f"rank {rank()} stopped: a collective with the other ranks failed ({_comm_detail(e)}); "
                      f"another rank failed or hung first, see its error")


def peer_errors(fn):
    """Decorate a function that runs collectives: a transport error there (another rank failed and closed its
    connections, or the group timed out) becomes a one-line PeerFailed; other errors pass unchanged."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PrunecError:
            raise
        except RuntimeError as e:
            if is_initialized() and is_comm_error(e):
                raise _peer_failure(e) from e
            raise

    return wrapper


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


@peer_errors
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
    """End a torchrun rank: on success barrier, destroy the group, hard exit (see module docstring); after an
    error (code != 0) hard exit at once, since the other ranks will not come to the barrier.

    A rank that finished its part but finds another rank failed at the barrier exits non-zero."""
    import torch.distributed as dist

    if not is_initialized():
        return
    r = rank()
    try:
        if code == 0:
            try:
                dist.barrier()
                dist.destroy_process_group()
            except BaseException as e:  # another rank failed after this one finished (or SIGTERM came)
                code = 2
                if is_comm_error(e):
                    msg = str(_peer_failure(e))
                else:
                    msg = str(e) if isinstance(e, PrunecError) else f"rank {r}: {type(e).__name__}: {e}"
                print(f"prunec: error: {msg}", file=sys.stderr)
        if code != 0 and _peer_failed:
            # torchrun names the first rank it sees exit as the root cause: let the rank that failed first go first
            time.sleep(PEER_GRACE_S)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
