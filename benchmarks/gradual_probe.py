"""Throwaway probe loop behind the 'gradual pruning inside one cosine' rows of docs/RESULTS.md (not a test).

Loads the dense LeNet-300-100 checkpoint of a seed (the benchmark's, or $BASE), then for each JSON config:
E epochs of SGD (momentum 0.9, batch 128, one optimizer for the whole run) with the lr decaying once by
cosine from `lr` to 0 (optional linear warm-up of `warm` epochs), pruning at the start of each of the first
P epochs to the cubic fraction (1 − (1 − k/P)³) of the per-layer target `sp` (default fc1/fc2/fc3 =
.93/.85/.40), masks held (masks.masked_step). `wd`: L2; `l1` for the first `l1_ep` epochs (L2 off then);
`ls`: label smoothing. `dpf`: dynamic pruning with feedback (Lin et al. 2020) instead of a held mask while
pruning: the masked model's gradient updates the dense weights, the mask is recomputed from their magnitudes
every `freq` iterations (the cubic fraction per iteration), and held from epoch `fix` (default P) on, recomputed
from the dense weights then unless `keep`. Prints test accuracy vs the dense one. `prunec prune` with `--lr-span run` does the
same schedule (steps = P, retrain-epochs 1, final-epochs E − P), with a fresh optimizer each step.

    PRUNEC_THREADS=1 .venv/bin/python benchmarks/gradual_probe.py 0 '{"E":20,"P":14,"lr":0.05,"wd":1e-3}'
"""
import argparse, json, os, sys


def _config(text):
    """argparse type: one JSON config, an object with at least E (epochs) and lr."""
    try:
        c = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({e})") from None
    if not isinstance(c, dict) or "E" not in c or "lr" not in c:
        raise argparse.ArgumentTypeError(f"{text!r}: give a JSON object with at least E and lr, e.g. "
                                         f"'{{\"E\":20,\"P\":14,\"lr\":0.05}}'")
    return c


ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("seed", type=int, help="seed of the dense checkpoint (and of the runs)")
ap.add_argument("configs", nargs="+", type=_config, metavar="JSON", help="one run per config")
_a = ap.parse_args()
BASE = os.environ.get("BASE") or f"/tmp/pr/bench_N/lenet300_s{_a.seed}_dense.pt"
if not os.path.isfile(BASE):
    ap.error(f"dense checkpoint {BASE} not found (set BASE to a LeNet-300-100 checkpoint)")
import time, copy, math, torch
import torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "toolchain"))
from prunec import data, models, train, prune, recipes, masks as M, checkpoint as C
torch.set_num_threads(1)
seed, cfgs = _a.seed, _a.configs
ds = data.load("fashion-mnist")
base = C.load(BASE).model
b = train.evaluate(base, ds.test)
print("dense", b, "train", round(train.evaluate(base, ds.train),4), flush=True)
SP = {"fc1": 0.93, "fc2": 0.85, "fc3": 0.40}
def run(c):
    m = copy.deepcopy(base); torch.manual_seed(seed)
    sp = c.get("sp", SP)
    E = c["E"]; P = c.get("P", E//2); lr0 = c["lr"]; warm = c.get("warm", 0)
    l1 = c.get("l1", 0.0); l1_ep = c.get("l1_ep", 0); wd = c.get("wd", 1e-4); ls = c.get("ls", 0.0)
    pre = c.get("pre", 0)  # epochs of L1 dense fine-tuning before pruning starts
    dpf = c.get("dpf", False); freq = c.get("freq", 16); fix = c.get("fix", pre + P)
    masks = M.dense_masks(m)
    opt = torch.optim.SGD(m.parameters(), lr=lr0, momentum=0.9, weight_decay=wd)
    n = len(ds.train); bs = 128; steps = math.ceil(n/bs); total = steps*E
    g = torch.Generator().manual_seed(seed*1000+1)
    t = 0; ws = [m.get_submodule(k).weight for k in masks]
    for ep in range(E):
        if dpf and ep == fix:  # hold the mask from here on
            if not c.get("keep"):
                masks = {k: prune.sparsity_mask(m.get_submodule(k).weight, torch.ones_like(masks[k]), s) for k, s in sp.items()}
            M.apply_masks(m, masks)
            for k in sp:
                st = opt.state.get(m.get_submodule(k).weight)
                if st and "momentum_buffer" in st: st["momentum_buffer"].masked_fill_(~masks[k], 0)
        if not dpf and ep >= pre and ep < pre + P:
            f = 1 - (1 - (ep - pre + 1)/P)**3
            masks = {k: prune.sparsity_mask(m.get_submodule(k).weight, masks[k], s*f) for k, s in sp.items()}
            M.apply_masks(m, masks)
        m.train(); perm = torch.randperm(n, generator=g)
        for s in range(steps):
            if t < warm*steps: lr = lr0 * (t+1)/(warm*steps)
            else: lr = lr0*0.5*(1+math.cos(math.pi*(t-warm*steps)/(total-warm*steps)))
            for gr in opt.param_groups: gr["lr"] = lr; gr["weight_decay"] = 0.0 if (l1 and ep < l1_ep) else wd
            idx = perm[s*bs:(s+1)*bs]
            opt.zero_grad(set_to_none=True)
            feedback = dpf and ep < fix
            if feedback:
                if t % freq == 0:
                    f = 1 - (1 - min(1.0, (t + 1) / (P*steps)))**3
                    masks = {k: prune.sparsity_mask(m.get_submodule(k).weight, torch.ones_like(masks[k]), s_*f) for k, s_ in sp.items()}
                saved = {k: m.get_submodule(k).weight.detach().clone() for k in sp}
                M.apply_masks(m, masks)
            loss = F.cross_entropy(m(ds.train.x[idx]), ds.train.y[idx], label_smoothing=ls)
            loss.backward()
            if feedback:  # the masked model's gradient, applied to the dense weights
                with torch.no_grad():
                    for k in sp: m.get_submodule(k).weight.copy_(saved[k])
                opt.step(); t += 1
                continue
            if l1 and ep < l1_ep:
                with torch.no_grad():
                    for w in ws: w.grad.add_(torch.sign(w), alpha=l1)
            M.masked_step(opt, m, masks); t += 1
    if dpf and fix >= E:  # never held: the last mask
        M.apply_masks(m, masks)
    acc = train.evaluate(m, ds.test)
    return m, masks, acc
for c in cfgs:
    t0 = time.time()
    m, mk, acc = run(c)
    print(json.dumps(c), "train", round(train.evaluate(m, ds.train),4), f"comp {M.compression(m, mk):.2f}", "acc", acc, f"diff {100*(acc-b):+.2f}pp", f"{time.time()-t0:.0f}s", flush=True)
