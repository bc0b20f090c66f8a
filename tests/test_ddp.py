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

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
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
    torchrun = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "prunec.cli"]
    r = subprocess.run(torchrun + ["prune", str(base), "--out", str(out), "--sparsity", "fc1=0.9,fc2=0.85", "--steps", "2",
                                   "--retrain-epochs", "1", "--final-epochs", "0", "--quiet"],
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

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
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


def test_check_identical_sees_diverged_dropout_rates(tmp_path):
    mp.spawn(_dropout_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["disagree", "disagree"]


def _steps_worker(rank, world, port, out_dir):
    import torch.distributed as dist

    from prunec import data as D
    from prunec.models import LeNet300
    from prunec.train import TrainConfig, fit

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ds = D.synthetic(n_train=512, n_test=64, seed=0)
    hist = fit(LeNet300(), ds.train, TrainConfig(epochs=1, lr=0.01, batch_size=128), progress=False)
    Path(out_dir, f"steps{rank}.txt").write_text(str(hist[0]["steps"]))
    dist.barrier()
    dist.destroy_process_group()


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
