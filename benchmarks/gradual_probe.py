"""Throwaway probe loop behind the 'gradual pruning inside one cosine' rows of docs/RESULTS.md (not a test).

Loads the dense LeNet-300-100 checkpoint of a seed (the benchmark's, or $BASE), then for each JSON config:
E epochs of SGD (momentum 0.9, batch 128, one optimizer for the whole run) with the lr decaying once by
cosine from `lr` to 0 (optional linear warm-up of `warm` epochs), pruning at the start of each of the first
P epochs to the cubic fraction (1 − (1 − k/P)³) of the per-layer target `sp` (default fc1/fc2/fc3 =
.93/.85/.40), masks held (masks.masked_step). `wd`: L2; `l1` for the first `l1_ep` epochs (L2 off then);
`ls`: label smoothing. Prints test accuracy vs the dense one. `prunec prune` with `--lr-span run` does the
same schedule (steps = P, retrain-epochs 1, final-epochs E − P), with a fresh optimizer each step.

    PRUNEC_THREADS=1 .venv/bin/python benchmarks/gradual_probe.py 0 '{"E":20,"P":14,"lr":0.05,"wd":1e-3}'
"""
import sys, time, copy, math, torch, json
import torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "toolchain"))
from prunec import data, models, train, prune, recipes, masks as M, checkpoint as C
torch.set_num_threads(1)
seed = int(sys.argv[1]); cfgs = [json.loads(a) for a in sys.argv[2:]]
ds = data.load("fashion-mnist")
import os; base = C.load(os.environ.get("BASE") or f"/tmp/pr/bench_N/lenet300_s{seed}_dense.pt").model
b = train.evaluate(base, ds.test)
print("dense", b, "train", round(train.evaluate(base, ds.train),4), flush=True)
SP = {"fc1": 0.93, "fc2": 0.85, "fc3": 0.40}
def run(c):
    m = copy.deepcopy(base); torch.manual_seed(seed)
    sp = c.get("sp", SP)
    E = c["E"]; P = c.get("P", E//2); lr0 = c["lr"]; warm = c.get("warm", 0)
    l1 = c.get("l1", 0.0); l1_ep = c.get("l1_ep", 0); wd = c.get("wd", 1e-4); ls = c.get("ls", 0.0)
    pre = c.get("pre", 0)  # epochs of L1 dense fine-tuning before pruning starts
    masks = M.dense_masks(m)
    opt = torch.optim.SGD(m.parameters(), lr=lr0, momentum=0.9, weight_decay=wd)
    n = len(ds.train); bs = 128; steps = math.ceil(n/bs); total = steps*E
    g = torch.Generator().manual_seed(seed*1000+1)
    t = 0; ws = [m.get_submodule(k).weight for k in masks]
    for ep in range(E):
        if ep >= pre and ep < pre + P:
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
            loss = F.cross_entropy(m(ds.train.x[idx]), ds.train.y[idx], label_smoothing=ls)
            loss.backward()
            if l1 and ep < l1_ep:
                with torch.no_grad():
                    for w in ws: w.grad.add_(torch.sign(w), alpha=l1)
            M.masked_step(opt, m, masks); t += 1
    acc = train.evaluate(m, ds.test)
    return m, masks, acc
for c in cfgs:
    t0 = time.time()
    m, mk, acc = run(c)
    print(json.dumps(c), "train", round(train.evaluate(m, ds.train),4), f"comp {M.compression(m, mk):.2f}", "acc", acc, f"diff {100*(acc-b):+.2f}pp", f"{time.time()-t0:.0f}s", flush=True)
