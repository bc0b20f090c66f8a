"""Retraining under DistributedDataParallel on gloo: the ranks end with identical masks and weights."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from prunec import checkpoint as C


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    import torch.distributed as dist

    from prunec import data as D
    from prunec import distributed as DIST
    from prunec.models import LeNet300
    from prunec.prune import run_schedule
    from prunec.recipes import Recipe

    # a file store in the test's folder: no TCP port to race for with other jobs on the machine
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # different initial weights per rank: rank 0's must win
    model = LeNet300()
    ds = D.synthetic(n_train=512, n_test=128, seed=0)
    recipe = Recipe(sparsity={"fc1": 0.9, "fc2": 0.8}, steps=2, retrain_epochs=1, batch_size=64)
    model, masks, st = run_schedule(model, ds, recipe, baseline_accuracy=0.5, progress=False, log=lambda s: None)
    DIST.check_identical(model, masks)
    std0 = ",".join(f"{k}={v:.9g}" for k, v in sorted(st["std0"].items()))  # schedule state: rank 0's too
    Path(out_dir, f"rank{rank}.txt").write_text(DIST.digest(model, masks) + f" {int(masks['fc1'].sum())} {std0}")
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # ../shared/NOTES.md: gloo can abort at interpreter exit; the spawned process ends here


def test_two_ranks_spawn_identical_masks(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    d0 = (tmp_path / "rank0.txt").read_text().split()
    d1 = (tmp_path / "rank1.txt").read_text().split()
    assert d0 == d1
    assert int(d0[1]) == round(0.1 * 235200)


def test_prunec_prune_under_torchrun(tmp_path):
    env = {**os.environ, "PRUNEC_SYNTHETIC_TRAIN": "512", "PRUNEC_SYNTHETIC_TEST": "128", "OMP_NUM_THREADS": "1"}
    py = sys.executable
    base = tmp_path / "base.pt"
    r = subprocess.run([py, "-m", "prunec.cli", "train", "--model", "lenet300", "--data", "synthetic", "--out", str(base),
                        "--epochs", "1", "--quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "pruned.pt"
    torchrun = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "prunec"]  # the documented command (docs/PRUNING.md)
    r = subprocess.run(torchrun + ["prune", str(base), "--out", str(out), "--sparsity", "fc1=0.9,fc2=0.85", "--steps", "2",
                                   "--retrain-epochs", "1", "--final-epochs", "0", "--quiet",
                                   "--device", "cpu"],  # gloo on the CPU on any machine, a GPU one included
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identical on 2 ranks" in r.stdout
    ck = C.load(out)
    assert ck.meta["world_size"] == 2 and ck.kind == "pruned"
    assert int(ck.masks["fc1"].sum()) == round(0.1 * 235200)


def _dropout_worker(rank, world, port, out_dir):
    import torch.distributed as dist
    from torch import nn

    from prunec import distributed as DIST
    from prunec.errors import PrunecError

    # a file store in the test's folder: no TCP port to race for with other jobs on the machine
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    masks = {"0": torch.ones(8, 8, dtype=torch.bool), "2": torch.ones(2, 8, dtype=torch.bool)}
    model[1].p = 0.5 if rank == 0 else 0.3  # same weights and masks, different (rescaled) dropout rates
    try:
        DIST.check_identical(model, masks)
        verdict = "agree"
    except PrunecError:
        verdict = "disagree"
    Path(out_dir, f"rank{rank}.txt").write_text(verdict)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # ../shared/NOTES.md: gloo can abort at interpreter exit; the spawned process ends here


def test_check_identical_sees_diverged_dropout_rates(tmp_path):
    mp.spawn(_dropout_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["disagree", "disagree"]


def _steps_worker(rank, world, port, out_dir):
    import torch.distributed as dist

    from prunec import data as D
    from prunec.models import LeNet300
    from prunec.train import TrainConfig, fit

    # a file store in the test's folder: no TCP port to race for with other jobs on the machine
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world)
    ds = D.synthetic(n_train=512, n_test=64, seed=0)
    hist = fit(LeNet300(), ds.train, TrainConfig(epochs=1, lr=0.01, batch_size=128), progress=False)
    Path(out_dir, f"steps{rank}.txt").write_text(str(hist[0]["steps"]))
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # ../shared/NOTES.md: gloo can abort at interpreter exit; the spawned process ends here


def test_ranks_share_the_global_minibatch(tmp_path):
    """N ranks take the steps of one process: each takes batch/N of the global minibatch (512 samples at batch
    128: 4 steps per epoch alone and on each of 2 ranks)."""
    from prunec import data as D
    from prunec.models import LeNet300
    from prunec.train import TrainConfig, fit

    alone = fit(LeNet300(), D.synthetic(n_train=512, n_test=64, seed=0).train, TrainConfig(epochs=1, lr=0.01, batch_size=128),
                progress=False)
    mp.spawn(_steps_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert alone[0]["steps"] == 4
    assert [int((tmp_path / f"steps{r}.txt").read_text()) for r in (0, 1)] == [4, 4]


# --- one rank fails mid-schedule: every rank exits within seconds, non-zero, with one clear message -------------

# Runs `prunec` with a failure injected on one rank (PRUNEC_TEST_FAIL), and records its pid so that the test can
# end the workers if they hang (torchrun starts each worker in its own session).
_DRIVER = r'''
import os, sys, time
from pathlib import Path
rank = int(os.environ["RANK"])
Path(os.environ["PRUNEC_TEST_PIDS"], f"pid{rank}").write_text(str(os.getpid()))
fail, msg = os.environ["PRUNEC_TEST_FAIL"], os.environ["PRUNEC_TEST_MSG"]  # msg: not in a traceback's source line
import torch
import prunec.checkpoint as C, prunec.prune as P

def after(n, fn, exc):  # fn, except that its n-th call raises exc
    calls = [0]
    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise exc
        return fn(*a, **k)
    return wrapped

if fail == "resume-write-rank0" and rank == 0:  # disk full half-way through the first resume checkpoint
    save = torch.save
    def full(obj, f, *a, **k):
        if ".resume" in str(f):
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(28, msg)
        return save(obj, f, *a, **k)
    torch.save = full
if fail == "final-write-rank0" and rank == 0:  # the pruned checkpoint cannot be written; rank 1 is at the barrier
    C.save = after(3, C.save, OSError(13, msg))  # resume 1, resume 2, final
if fail == "nan-rank1" and rank == 1:  # a check only rank 1 hits, after step 1's retraining
    P.evaluate = after(2, P.evaluate, FloatingPointError(msg))
if fail == "data-rank1-during-write" and rank == 1:  # rank 1 fails at step 2 while rank 0 writes a checkpoint
    P._broadcast_masks = after(3, P._broadcast_masks, ValueError(msg))
if fail == "data-rank1-during-write" and rank == 0:
    save = torch.save
    def slow(obj, f, *a, **k):
        if ".resume" in str(f):
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            time.sleep(30)  # torchrun's SIGTERM comes in here
        return save(obj, f, *a, **k)
    torch.save = slow
from prunec.cli import main
sys.argv[0] = "prunec"
main()
'''

_INJECTED = {"resume-write-rank0": "No space left on device (injected)", "final-write-rank0": "Permission denied (injected)",
             "nan-rank1": "NaN in rank 1's test accuracy (injected)", "data-rank1-during-write": "corrupt minibatch on rank 1 (injected)"}


@pytest.fixture(scope="module")
def small_base(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    env = {**os.environ, "PRUNEC_SYNTHETIC_TRAIN": "512", "PRUNEC_SYNTHETIC_TEST": "128", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "prunec.cli", "train", "--model", "lenet300", "--data", "synthetic", "--out",
                        str(d / "base.pt"), "--epochs", "1", "--quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return d / "base.pt"


def _run_failing(tmp_path, base, fail, launcher, bound=60.0):
    """Start a 2-rank `prunec prune` with `fail` injected; returns (exit codes, output, seconds until all exited)."""
    import signal
    import time

    (tmp_path / "driver.py").write_text(_DRIVER)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "PRUNEC_SYNTHETIC_TRAIN": "512", "PRUNEC_SYNTHETIC_TEST": "128", "OMP_NUM_THREADS": "1",
           "PRUNEC_TEST_FAIL": fail, "PRUNEC_TEST_MSG": _INJECTED[fail], "PRUNEC_TEST_PIDS": str(pids)}
    env.pop("PRUNEC_DIST_TIMEOUT", None)  # the default: a hang would last 10 minutes
    args = [str(tmp_path / "driver.py"), "prune", str(base), "--out", str(tmp_path / "out" / "pruned.pt"),
            "--sparsity", "fc1=0.9,fc2=0.85", "--steps", "3", "--retrain-epochs", "1", "--final-epochs", "0", "--quiet",
            "--device", "cpu"]  # gloo on the CPU on any machine, a GPU one included
    (tmp_path / "out").mkdir()
    if launcher == "torchrun":
        cmds = [([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] + args, env)]
    else:  # started by hand (or a batch system) with the env:// variables: nobody stops the other rank for it
        port = str(_free_port())
        cmds = [([sys.executable] + args, {**env, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for r in (0, 1)]
    t0 = time.monotonic()
    procs = [subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c, e in cmds]
    outs, codes = [], []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, bound - (time.monotonic() - t0)))
            outs.append(out)
            codes.append(p.returncode)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{fail} ({launcher}): the ranks were still running after {bound:.0f} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for f in pids.iterdir():  # workers under torchrun are in their own sessions
            try:
                os.kill(int(f.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    return codes, "\n".join(outs), time.monotonic() - t0


@pytest.mark.parametrize("fail,launcher", [("resume-write-rank0", "torchrun"), ("data-rank1-during-write", "torchrun"),
                                           ("nan-rank1", "env"), ("final-write-rank0", "env")])
def test_one_rank_failing_stops_every_rank(tmp_path, small_base, fail, launcher):
    """Before the fix the failing rank waited in the closing barrier and the other in its next collective, each for
    gloo's timeout (30 minutes). Now every rank exits within seconds with a non-zero code, the failing rank's error
    is printed once, the other ranks say in one line why they stopped, and no half-written checkpoint is left."""
    codes, out, seconds = _run_failing(tmp_path, small_base, fail, launcher)
    assert all(c != 0 for c in codes), (codes, out)
    assert seconds < 60, (seconds, out)
    assert out.count(_INJECTED[fail]) == 1, out
    failing = 0 if fail.endswith("rank0") else 1
    other = 1 - failing
    if fail == "data-rank1-during-write":  # rank 0 was writing, not in a collective: torchrun's SIGTERM stopped it
        assert f"prunec: error: rank {other} stopped by SIGTERM" in out, out
    elif launcher == "env":  # nobody sends SIGTERM: the other rank learns of the failure from its collective
        assert f"prunec: error: rank {other} stopped: a collective with the other ranks failed" in out, out
    else:  # the collective's error, or (on a busy machine) torchrun's SIGTERM first
        assert f"prunec: error: rank {other} stopped" in out, out
    assert "GLHF" not in out and "pair.cc" not in out, out  # no gloo traceback besides the real error
    if launcher == "torchrun":  # its summary names the rank that failed first
        import re

        root = re.search(r"Root Cause.*?\brank\s*:\s*(\d+)", out, re.S)
        assert root and int(root.group(1)) == failing, out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    # nothing half-written: no temporary file, no pruned checkpoint; a resume file only when one was completed
    assert written == (["pruned.pt.resume"] if fail == "final-write-rank0" else []), written
    if written:
        assert C.load(tmp_path / "out" / "pruned.pt.resume").kind == "pruning"


def _ranks_worker(rank, world, port, out_dir):
    import torch.distributed as dist
    from torch import nn

    from prunec import data as D
    from prunec.errors import PrunecError
    from prunec.train import TrainConfig, fit

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 10))
    first = []
    model[0].register_forward_hook(lambda m, i, o: first.append((o == 0)[:8].flatten().tolist()) if not first else None)
    ds = D.synthetic(n_train=256, n_test=16, seed=0, shape=(1, 8, 8))
    hist = fit(model, ds.train, TrainConfig(epochs=1, lr=0.05, batch_size=64), seed=5, progress=False)
    try:
        fit(model, ds.train, TrainConfig(epochs=1, lr=0.05, batch_size=63), seed=5, progress=False)
        refused = "no"
    except PrunecError as e:
        refused = str(e)
    Path(out_dir, f"r{rank}.txt").write_text(repr({
        "mask": first[0], "loss": hist[0]["loss"], "refused": refused,
        "running_mean": model[2].running_mean.tolist(), "threads": torch.get_num_threads()}))
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # gloo can abort at interpreter exit; the spawned process ends here


def test_ranks_draw_their_own_dropout_and_agree_on_buffers_and_loss(tmp_path):
    """Each rank draws its own dropout masks (they drew the same ones: a weaker dropout than one process's);
    batch norm's running statistics are the same on every rank (rank 0's, sent at each forward); the loss
    recorded is the epoch's over every rank's share; a global batch the ranks cannot share equally is refused."""
    import ast

    mp.spawn(_ranks_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (ast.literal_eval((tmp_path / f"r{r}.txt").read_text()) for r in (0, 1))
    assert r0["mask"] != r1["mask"]
    assert 0.3 < sum(r0["mask"]) / len(r0["mask"]) < 0.7
    assert r0["running_mean"] == r1["running_mean"]
    assert r0["loss"] == r1["loss"]
    assert "--batch-size 63 is not a multiple of the 2 ranks" in r0["refused"] and r0["refused"] == r1["refused"]
