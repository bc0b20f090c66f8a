"""Iterative magnitude pruning (Han, Pool, Tran & Dally, NIPS 2015): train → prune → retrain, repeated.

Thresholds, per layer unless `global_sparsity` is set:
  * quality:  prune |w| < q · std(w_dense), std of the layer's weights before pruning began;
  * sparsity: prune the smallest-magnitude weights until a fraction s of the layer is pruned (exact count);
  * global:   one magnitude threshold over all prunable layers, pruning a fraction s of all weights.
The schedule takes `steps` steps; at step k of K the amount (s or q) is the final one times f(k/K), with
f(x) = 1 − (1 − x)³ ("cubic": big steps while the network is redundant, small ones at the end), x
("linear") or 1 ("oneshot"). Masks only ever shrink: a pruned weight never returns, and surviving weights
are never re-initialised — retraining continues from them.

Between steps the network is retrained with the mask held (masks.py), with L2 or L1 regularisation, and
the dropout that feeds each fc layer is rescaled to Dr = Do·sqrt(Cr/Co), Cr/Co being that layer's
fraction of remaining connections (Section 3.2 of the paper). Optionally fc and conv layers are retrained
in turn with the other frozen (Section 3.3 of the paper).

Finally `remove_dead_neurons` deletes neurons with no input or no output connections and shrinks the
Linear/Conv2d layers, leaving the outputs unchanged (see its docstring).
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Callable

import torch
from torch import nn

from . import distributed as DIST
from . import masks as M
from .data import Dataset
from .errors import PrunecError
from .models import CONV, PRUNABLE, dropout_rates, prunable_layers, require_prunable
from .recipes import Recipe
from .train import TrainConfig, evaluate, fit

# --- thresholds ---------------------------------------------------------------------------------------


def schedule_fraction(k: int, steps: int, kind: str = "cubic") -> float:
    """How much of the final pruning amount is applied at step k (1-based) of `steps`."""
    x = min(1.0, max(0.0, k / steps))
    if kind == "cubic":
        return 1.0 - (1.0 - x) ** 3
    if kind == "linear":
        return x
    if kind == "oneshot":
        return 1.0
    raise PrunecError(f"unknown schedule {kind!r}; choose cubic, linear or oneshot")


def quality_threshold(w: torch.Tensor, quality: float, std: float | None = None) -> float:
    """The paper's threshold: quality parameter × standard deviation of the layer's weights."""
    return float(quality) * float(w.detach().float().std() if std is None else std)


def quality_mask(w: torch.Tensor, mask: torch.Tensor, quality: float, std: float | None = None) -> torch.Tensor:
    t = quality_threshold(w, quality, std)
    return mask & (w.detach().abs() >= t)


def sparsity_mask(w: torch.Tensor, mask: torch.Tensor, sparsity: float, dense_size: int | None = None) -> torch.Tensor:
    """Keep the round((1 − s)·n) largest-magnitude weights (already-pruned ones rank lowest); n is `dense_size`
    when given (a layer shrunk by dead-neuron removal: the fraction counts against its dense size)."""
    n = w.numel()
    keep = int(round((1.0 - sparsity) * (n if dense_size is None else dense_size)))
    keep = min(keep, int(mask.sum()))
    score = w.detach().abs().masked_fill(~mask, -1.0).flatten()
    new = torch.zeros(n, dtype=torch.bool, device=w.device)
    if keep > 0:
        new[torch.topk(score, keep, sorted=False).indices] = True
    return new.view_as(mask) & mask


def global_masks(model: nn.Module, masks: M.Masks, sparsity: float, dense_sizes: dict[str, int] | None = None) -> M.Masks:
    """One magnitude threshold over all layers in `masks`, pruning a fraction `sparsity` of their weights, counted
    against `dense_sizes` where given (layers shrunk by dead-neuron removal count at their dense sizes, as
    sparsity_mask counts them)."""
    names = list(masks)
    scores = [model.get_submodule(n).weight.detach().abs().masked_fill(~masks[n], -1.0).flatten() for n in names]
    allw = torch.cat(scores)
    total = sum(int((dense_sizes or {}).get(n, s.numel())) for n, s in zip(names, scores))
    keep = min(int(round((1.0 - sparsity) * total)), int(sum(int(m.sum()) for m in masks.values())))
    new_flat = torch.zeros(allw.numel(), dtype=torch.bool, device=allw.device)
    if keep > 0:
        new_flat[torch.topk(allw, keep, sorted=False).indices] = True
    out, i = {}, 0
    for n, s in zip(names, scores):
        out[n] = new_flat[i : i + s.numel()].view_as(masks[n]) & masks[n]
        i += s.numel()
    return out


def sparsity_for_compression(model: nn.Module, profile: dict[str, float], target: float,
                             dense_sizes: dict[str, int] | None = None, masks: M.Masks | None = None) -> dict[str, float]:
    """Scale a per-layer profile (fraction pruned) so total/nonzero weights over all layers equals `target`.

    The remaining fractions r_l = 1 − s_l are multiplied by one factor a (capped at 1); a is found by
    bisection. Layers missing from the profile keep what they have. A layer keeps at most the weights its mask
    still holds (`masks`: a base pruned before; sparsity_mask never revives one), so a layer already below its
    share counts with what it has and the others make up the rest.
    """
    layers = dict(prunable_layers(model))
    require_prunable(model, profile, "the sparsity profile")
    size = {n: int((dense_sizes or {}).get(n, m.weight.numel())) for n, m in layers.items()}
    alive = {n: int(masks[n].sum()) if masks is not None and n in masks else int(m.weight.numel())
             for n, m in layers.items()}
    total = sum(size.values())
    goal = total / target
    fixed = sum(alive[n] for n in size if n not in profile)
    if fixed >= goal:
        raise PrunecError(f"--target-compression {target} is unreachable: the layers not being pruned alone keep "
                          f"{fixed} of {total} weights; add them to --sparsity")

    def kept(a: float) -> float:
        return fixed + sum(min(alive[n], min(1.0, a * (1.0 - s)) * size[n]) for n, s in profile.items())

    most = fixed + sum(alive[n] for n in profile)
    if most < goal - 0.5:  # a pruned base already past the target: pruning never revives a weight
        raise PrunecError(f"--target-compression {target} is below the model's own compression "
                          f"({total / most:.2f}x: {most} of {total} weights kept); pruning never revives weights, "
                          f"give a target of at least {total / most:.2f}")

    lo, hi = 0.0, 1.0
    while kept(hi) < goal and hi < 1e6:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kept(mid) < goal else (lo, mid)
    a = (lo + hi) / 2
    return {n: max(0.0, 1.0 - min(1.0, a * (1.0 - s))) for n, s in profile.items()}


def step_masks(model: nn.Module, masks: M.Masks, recipe: Recipe, k: int, state: dict) -> M.Masks:
    """The masks after prune step k (1-based): cumulative (never grows back)."""
    f = schedule_fraction(k, recipe.steps, recipe.schedule)
    if recipe.global_sparsity is not None:
        return global_masks(model, masks, recipe.global_sparsity * f, state["weights0"])
    out = dict(masks)
    if recipe.quality is not None:
        for name in masks:
            w = model.get_submodule(name).weight
            out[name] = quality_mask(w, masks[name], recipe.quality * f, state["std0"][name])
        return out
    for name, s in state["sparsity"].items():
        out[name] = sparsity_mask(model.get_submodule(name).weight, masks[name], s * f, state["weights0"].get(name))
    return out


# --- dropout rescale ----------------------------------------------------------------------------------


def _fx_trace(model: nn.Module):
    """torch.fx's symbolic trace of forward (the dataflow the Dropout, batch norm and dead-neuron analyses follow), or
    None where fx cannot trace the model (data-dependent control flow, unsupported constructs): those analyses then
    leave the model as it is rather than guess."""
    import torch.fx as fx

    try:
        return fx.symbolic_trace(model)
    except Exception:
        return None


def feeding_dropouts(model: nn.Module) -> dict[str, str]:
    """{fc layer name: name of the Dropout module feeding it}: in torch.fx's trace of forward (the dataflow, not the
    order the modules are declared in), the nearest Dropout module on the fc layer's input path since the previous
    prunable layer, through ops of one tensor input (activations, flatten, pooling, reshapes). A Dropout that feeds
    more than one fc layer, an fc layer called more than once, and a model fx cannot trace give nothing: their
    rates are left as they are rather than guessed."""
    import torch.fx as fx

    gm = _fx_trace(model)
    if gm is None:
        return {}
    fcs = {n for n, m in prunable_layers(model) if isinstance(m, nn.Linear)}
    prunable = {n for n, _ in prunable_layers(model)}
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1

    def tensor_args(node) -> list:
        return [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node) and not (
            (a.op == "call_method" and a.target in ("size", "dim")) or
            (a.op == "call_function" and a.target is getattr))]

    found: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in fcs or calls[node.target] != 1:
            continue
        ins = tensor_args(node)
        cur = ins[0] if len(ins) == 1 else None
        while cur is not None and cur.op in ("call_module", "call_function", "call_method"):
            if cur.op == "call_module":
                m = gm.get_submodule(cur.target)
                if isinstance(m, nn.Dropout):
                    found[node.target] = cur.target
                    break
                if cur.target in prunable:
                    break
            ins = tensor_args(cur)
            cur = ins[0] if len(ins) == 1 else None
    feeds: dict[str, int] = {}
    for d in found.values():
        feeds[d] = feeds.get(d, 0) + 1
    return {fc: d for fc, d in found.items() if feeds[d] == 1 and calls.get(d) == 1}


def rescale_dropout(model: nn.Module, masks: M.Masks, original_p: dict[str, float], original_weights: dict[str, int]) -> dict[str, float]:
    """Dr = Do · sqrt(Cr / Co) for the Dropout feeding each fc layer; returns the new rates."""
    rates = {}
    for fc, drop in feeding_dropouts(model).items():
        if drop not in original_p or fc not in masks:
            continue
        cr = int(masks[fc].sum())
        co = original_weights[fc]
        p = original_p[drop] * math.sqrt(cr / co) if co else 0.0
        model.get_submodule(drop).p = p
        rates[drop] = p
    return rates


def _module_or_none(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


# --- retraining ---------------------------------------------------------------------------------------


def retrain_config(recipe: Recipe, epochs: int, average: bool = False, lr_offset: int = 0) -> TrainConfig:
    """With `recipe.lr_span == "run"` the cosine spans all retraining epochs of the run and this phase starts
    `lr_offset` epochs into it; otherwise it restarts at `recipe.lr` and decays to 0 within the phase."""
    run = recipe.lr_span == "run"
    return TrainConfig(
        lr_offset=lr_offset if run else 0,
        lr_total=recipe.steps * recipe.retrain_epochs + recipe.final_epochs if run else None,
        epochs=epochs, lr=recipe.lr, momentum=recipe.momentum, batch_size=recipe.batch_size,
        weight_decay=recipe.reg_strength if recipe.reg == "l2" else 0.0,
        l1=recipe.reg_strength if recipe.reg == "l1" else 0.0, lr_schedule=recipe.lr_schedule,
        distill=recipe.distill, distill_temperature=recipe.distill_temperature, average=average,
        label_smoothing=recipe.label_smoothing,
    )


def _param_kind(model: nn.Module) -> Callable[[str], str | None]:
    """"conv" or "fc" for a parameter's name: that of its prunable layer, and for the parameters of other modules
    (batch norm's scale and shift) that of the nearest prunable layer upstream of the module in torch.fx's trace of
    forward, so that `--alternate` freezes a conv's batch norm with the conv. None (trained in both phases) where
    no prunable layer is upstream or fx cannot trace the model."""
    kinds = {}
    for name, m in prunable_layers(model):
        kinds[name] = "conv" if isinstance(m, CONV) else "fc"
    gm = _fx_trace(model)
    if gm is not None:
        for node in gm.graph.nodes:
            if node.op != "call_module" or node.target in kinds or \
                    not any(True for _ in gm.get_submodule(node.target).parameters(recurse=False)):
                continue
            seen, todo, side = set(), [a for a in node.all_input_nodes], set()
            while todo:  # breadth-first upstream to the nearest prunable layers
                cur = todo.pop(0)
                if cur in seen:
                    continue
                seen.add(cur)
                if cur.op == "call_module" and cur.target in kinds:
                    side.add(kinds[cur.target])
                    continue
                todo.extend(cur.all_input_nodes)
            if len(side) == 1:
                kinds.setdefault(node.target, side.pop())

    def kind(param_name: str) -> str | None:
        return kinds.get(param_name.rsplit(".", 1)[0])

    return kind


def retrain(model: nn.Module, data: Dataset, recipe: Recipe, masks: M.Masks, epochs: int, *, seed: int,
            progress: bool, desc: str, teacher_logits: torch.Tensor | None = None, average: bool = False,
            lr_offset: int = 0) -> list[dict]:
    """Retrain with the masks held. The global RNG (what Dropout draws from) is seeded from `seed` for the phase
    and restored afterwards, so a phase draws the same dropout masks whatever ran before it: a run resumed from a
    checkpoint retrains exactly as the uninterrupted run did (the minibatch order has its own generator in fit)."""
    if epochs <= 0:
        return []
    cfg = retrain_config(recipe, epochs, average, lr_offset)
    kind = _param_kind(model)
    has_conv = any(isinstance(m, CONV) for _, m in prunable_layers(model))
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if recipe.alternate and has_conv:
            h = fit(model, data.train, cfg, masks=masks, seed=seed, progress=progress, desc=desc + " fc",
                    trainable=lambda n: kind(n) != "conv", teacher_logits=teacher_logits)
            h += fit(model, data.train, cfg, masks=masks, seed=seed + 7919, progress=progress, desc=desc + " conv",
                     trainable=lambda n: kind(n) != "fc", teacher_logits=teacher_logits)
            return h
        return fit(model, data.train, cfg, masks=masks, seed=seed, progress=progress, desc=desc, teacher_logits=teacher_logits)


# --- the iterative schedule ---------------------------------------------------------------------------


def _dist():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def _broadcast_masks(masks: M.Masks) -> M.Masks:
    """Rank 0's masks on every rank (the pruning decision is rank 0's)."""
    dist = _dist()
    if dist is None:
        return masks
    out = {}
    for name in sorted(masks):
        t = masks[name].to(torch.uint8).contiguous()
        dist.broadcast(t, src=0)
        out[name] = t.bool()
    return {n: out[n] for n in masks}


def _broadcast_object(obj):
    dist = _dist()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def new_state(model: nn.Module, recipe: Recipe, masks: M.Masks, base_schedule: dict | None = None) -> dict:
    """The schedule state kept in checkpoints (and restored by --resume).

    `base_schedule`: the schedule of the run that pruned the model before (pruning a pruned checkpoint again).
    Its dense sizes (weights0), dense std (std0) and dropout rates before any rescale (dropout_p0) are carried
    over, so fractions, compression and thresholds still count against the dense network and the dropout
    rescale Do·sqrt(Cr/Co) starts from the original Do instead of compounding on the already rescaled rate."""
    layers = dict(prunable_layers(model))
    base = base_schedule or {}
    weights0 = {n: int((base.get("weights0") or {}).get(n, m.weight.numel())) for n, m in layers.items()}
    std0 = {n: float((base.get("std0") or {}).get(n, m.weight.detach().float().std())) for n, m in layers.items()}
    dropout_p0 = {**dropout_rates(model), **{n: float(p) for n, p in (base.get("dropout_p0") or {}).items()
                                               if isinstance(_module_or_none(model, n), nn.Dropout)}}
    if recipe.quality is None and recipe.global_sparsity is None:
        require_prunable(model, recipe.sparsity, "the sparsity per layer (--sparsity)")
        if not recipe.sparsity:
            raise PrunecError("nothing to prune: give --sparsity LAYER=FRACTION, --quality Q or --global-threshold S")
        sparsity = dict(recipe.sparsity)
        if recipe.target_compression is not None:
            sparsity = sparsity_for_compression(model, sparsity, recipe.target_compression, weights0, masks)
    else:
        sparsity = {}
    return {
        "step": 0,
        "steps": recipe.steps,
        "sparsity": sparsity,
        "std0": std0,
        "weights0": weights0,
        "dropout_p0": dropout_p0,
        "history": [],
        "stopped": None,
        "done": False,
    }


@DIST.peer_errors
def run_schedule(
    model: nn.Module,
    data: Dataset,
    recipe: Recipe,
    *,
    baseline_accuracy: float,
    seed: int = 0,
    masks: M.Masks | None = None,
    state: dict | None = None,
    on_step: Callable[[nn.Module, M.Masks, dict], None] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    teacher: nn.Module | None = None,
    base_schedule: dict | None = None,
) -> tuple[nn.Module, M.Masks, dict]:
    """Prune → retrain `recipe.steps` times (continuing from `state` when resuming).

    After each step `on_step(model, masks, state)` is called (the CLI writes a resume checkpoint there).
    With `max_accuracy_drop`, a step whose accuracy falls more than that below `baseline_accuracy` is undone
    and the schedule stops. With `remove_dead`, dead neurons are removed at the end. With `recipe.distill`,
    retraining also fits the soft targets of `teacher` (default: the model as it is when the run starts,
    i.e. the dense one; pass the dense model when resuming). `base_schedule`: when the model was pruned by an
    earlier run, that run's schedule (see `new_state`); ignored when resuming (`state` has it).
    """
    recipe.validate()
    # Without masks, weights that are exactly zero (a base pruned elsewhere, e.g. torch.nn.utils.prune then
    # prune.remove) stay pruned: a dense mask would let retraining revive them. Layers a partial mask set
    # leaves out are read the same way.
    masks = {**M.masks_from_weights(model), **(masks or {})}
    state = new_state(model, recipe, masks, base_schedule) if state is None else state
    rank0 = _dist() is None or _dist().get_rank() == 0
    if _dist() is not None:  # every rank starts from rank 0's weights, masks and schedule state (std0,
        for t in model.state_dict().values():  # dropout_p0 and the scaled profile were computed per rank)
            _dist().broadcast(t, src=0)
        masks = _broadcast_masks(masks)
        state = _broadcast_object(state)
    M.apply_masks(model, masks)
    teacher_logits = None
    if recipe.distill:
        from .train import logits

        teacher_logits = logits(teacher if teacher is not None else model, data.train.x)
    for k in range(state["step"] + 1, recipe.steps + 1):
        if state.get("stopped"):
            break
        prev = (copy.deepcopy(model.state_dict()), M.clone_masks(masks), dropout_rates(model)) \
            if recipe.max_accuracy_drop is not None else None
        masks = step_masks(model, masks, recipe, k, state) if rank0 else M.clone_masks(masks)
        masks = _broadcast_masks(masks)
        M.apply_masks(model, masks)
        if recipe.dropout_rescale:
            rescale_dropout(model, masks, state["dropout_p0"], state["weights0"])
        acc_pruned = evaluate(model, data.test)
        if k == recipe.steps and recipe.final_average and recipe.final_epochs:
            epochs = recipe.retrain_epochs + recipe.final_epochs
            hist = retrain(model, data, recipe, masks, recipe.retrain_epochs, seed=seed * 1000 + k, progress=progress,
                           desc=f"step {k}/{recipe.steps}", teacher_logits=teacher_logits, lr_offset=(k - 1) * recipe.retrain_epochs)
            hist += retrain(model, data, replace(recipe, lr_schedule="constant"), masks, recipe.final_epochs,
                            seed=seed * 1000 + k + 500, progress=progress, desc="final (averaged)", teacher_logits=teacher_logits,
                            average=True)
        else:
            epochs = recipe.retrain_epochs + (recipe.final_epochs if k == recipe.steps else 0)
            hist = retrain(model, data, recipe, masks, epochs, seed=seed * 1000 + k, progress=progress,
                           desc=f"step {k}/{recipe.steps}", teacher_logits=teacher_logits, lr_offset=(k - 1) * recipe.retrain_epochs)
        acc = evaluate(model, data.test)
        rec = {
            "step": k,
            "compression": M.compression(model, masks, dense_sizes=state["weights0"]),
            "remaining": {n: int(m.sum()) / max(1, int(state["weights0"].get(n, m.numel()))) for n, m in masks.items()},
            "accuracy_after_prune": acc_pruned,
            "test_accuracy": acc,
            "train_loss": hist[-1]["loss"] if hist else None,
        }
        alternated = recipe.alternate and any(isinstance(m, CONV) for _, m in prunable_layers(model))
        trained = (f"{epochs} epoch{'s' if epochs != 1 else ''} of fc then {epochs} of conv" if alternated
                   else f"{epochs} epoch{'s' if epochs != 1 else ''}")  # --alternate: each phase its own epochs
        log(f"step {k}/{recipe.steps}: {rec['compression']:.2f}x, accuracy {acc_pruned:.4f} after pruning, "
            f"{acc:.4f} after {trained} of retraining (baseline {baseline_accuracy:.4f})")
        stop = recipe.max_accuracy_drop is not None and baseline_accuracy - acc > recipe.max_accuracy_drop + 1e-12
        stop = _broadcast_object(stop)
        if stop:
            rec["undone"] = True
            state["history"].append(rec)
            model.load_state_dict(prev[0])
            masks = prev[1]
            for name, p in prev[2].items():  # the rates the kept model had (a base pruned before the run, whose
                model.get_submodule(name).p = p  # masks are not all-True, did not have p0·sqrt(Cr/Co) at step 0)
            state["stopped"] = f"step {k} dropped accuracy by {baseline_accuracy - acc:.4f} > {recipe.max_accuracy_drop}; kept step {k - 1}"
            log(state["stopped"])
            state["step"] = k
            if on_step:
                on_step(model, masks, state)
            break
        state["history"].append(rec)
        state["step"] = k
        if on_step:
            on_step(model, masks, state)
    if recipe.remove_dead:
        model, masks, removed = remove_dead_neurons_checked(model, masks, data.test.x[:64], log)
        if any(removed.values()):
            log("dead neurons removed: " + ", ".join(f"{n}: {c}" for n, c in removed.items() if c))
            if recipe.dropout_rescale:  # the removed neurons' connections are gone too: Cr fell, so does Dr
                rescale_dropout(model, masks, state["dropout_p0"], state["weights0"])
        state["dead_removed"] = removed
    state["done"] = True
    return model, masks, state


# --- dead-neuron removal ------------------------------------------------------------------------------

def _pairs(model: nn.Module) -> list[tuple[str, str, bool, bool]]:
    """Consecutive prunable layers (A, B) of the model's dataflow: A's output goes to B and nowhere else, through
    ReLU / max-pool / flatten / dropout / identity only (modules, torch functions or tensor methods), and A and B
    each run once. bools: a ReLU between, a flatten between. Found in torch.fx's symbolic trace of forward, not in
    the order the modules are declared (which paired layers that a residual add also reads, or that run in another
    order); a model fx cannot trace gives no pairs, so no neuron of it is removed."""
    import operator

    import torch.fx as fx
    import torch.nn.functional as F

    gm = _fx_trace(model)
    if gm is None:  # data-dependent control flow, unsupported constructs: remove nothing rather than guess
        return []
    # the layers dead-neuron removal can shrink (Conv1d layers are pruned but not shrunk: never paired)
    prunable = {n for n, m in prunable_layers(model) if isinstance(m, (nn.Linear, nn.Conv2d))}
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in prunable:
            calls[node.target] = calls.get(node.target, 0) + 1
        elif node.op == "get_attr" and node.target.rpartition(".")[0] in prunable:
            calls[node.target.rpartition(".")[0]] = 2  # its parameters used directly (F.linear(x, fc.weight)): leave it
    once = {n for n, k in calls.items() if k == 1}

    def users(node):  # what reads the node's value, shape queries (x.size(0), x.shape) aside
        return [u for u in node.users
                if not (u.op == "call_method" and u.target in ("size", "dim")) and
                not (u.op == "call_function" and u.target is getattr and u.args[1:] == ("shape",))]

    def flatten1(node) -> bool:  # flattens [N, C, H, W] to [N, C·H·W] (channel-major), nothing else
        args = list(node.args[1:])
        start = args[0] if len(args) > 0 else node.kwargs.get("start_dim", 0)
        end = args[1] if len(args) > 1 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1

    def step(node, cur) -> str | None:  # "relu", "flat" or "same" when node passes cur's neurons on, else None
        if not node.args or node.args[0] is not cur or any(isinstance(a, fx.Node) for a in node.args[1:]
                                                            if not _is_size(a)):
            return None
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if isinstance(m, nn.ReLU):
                return "relu"
            if isinstance(m, nn.Flatten):
                return "flat" if m.start_dim == 1 and m.end_dim == -1 else None
            return "same" if isinstance(m, (nn.MaxPool2d, nn.Dropout, nn.Identity)) else None
        if node.op == "call_function":
            if node.target in (F.relu, torch.relu, torch.relu_):
                return "relu"
            if node.target is torch.flatten:
                return "flat" if flatten1(node) else None
            return "same" if node.target in (F.dropout, F.max_pool2d) else None
        if node.op == "call_method":
            if node.target in ("relu", "relu_"):
                return "relu"
            if node.target == "flatten":
                return "flat" if flatten1(node) else None
            if node.target in ("view", "reshape") and len(node.args) == 3 and node.args[2] == -1 and \
                    (_is_size(node.args[1]) or isinstance(node.args[1], int)):
                return "flat"  # x.view(x.size(0), -1)
            return "same" if node.target == "contiguous" else None
        return None

    def _is_size(a) -> bool:
        return isinstance(a, fx.Node) and (
            (a.op == "call_method" and a.target == "size") or
            (a.op == "call_function" and a.target is operator.getitem and isinstance(a.args[0], fx.Node) and
             a.args[0].op == "call_function" and a.args[0].target is getattr))

    out = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in once:
            continue
        cur, relu, flat = node, False, False
        while True:
            nxt = users(cur)
            if len(nxt) != 1:
                break
            u = nxt[0]
            if u.op == "call_module" and u.target in once:
                if u.args[:1] == (cur,) and len(u.args) == 1 and not u.kwargs:
                    out.append((node.target, u.target, relu, flat))
                break
            kind = step(u, cur)
            if kind is None:
                break
            relu, flat, cur = relu or kind == "relu", flat or kind == "flat", u
    return out


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _shrunk_like(m: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    if isinstance(m, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        new = nn.Conv2d(weight.shape[1] * m.groups, weight.shape[0], m.kernel_size, stride=m.stride, padding=m.padding,
                        dilation=m.dilation, groups=m.groups, bias=bias is not None, padding_mode=m.padding_mode)
    new = new.to(device=weight.device, dtype=weight.dtype)  # a model trained on the GPU stays there
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    new.train(m.training)
    return new


@torch.no_grad()
def remove_dead_neurons(model: nn.Module, masks: M.Masks | None = None) -> tuple[nn.Module, M.Masks, dict[str, int]]:
    """Remove neurons (fc outputs / conv channels) with no input or no output connections; outputs unchanged.

    For consecutive layers A → B of the dataflow (`_pairs`: A's output read by B alone, through ReLU / max-pool /
    flatten / dropout only, groups = 1; conv → fc only through a flatten):
      * neuron j of A with no outgoing weight in B (B's column j, or its H·W columns after a flatten, all
        zero): its row in A and its columns in B are deleted — B never read it;
      * neuron j of A with no incoming weight (row / filter j of A all zero) outputs the constant
        c = act(bias_j) everywhere; its contribution c·Σ W_B[:, cols_j] is folded into B's bias, then it is
        deleted. (Into a padded conv a constant channel is not constant at the borders: such a neuron is
        removed only when c = 0.)
    The network's inputs and outputs are never removed. Repeats until nothing changes, since removing a
    neuron can leave others dead. Modules are replaced by smaller ones; masks are cut to match.
    Returns (model, masks, {layer: neurons removed}).
    """
    masks = M.masks_from_weights(model) if masks is None else dict(masks)
    removed: dict[str, int] = {n: 0 for n, _ in prunable_layers(model)}
    pairs = _pairs(model)  # the dataflow does not change: shrunk layers keep their names and kinds
    changed = True
    while changed:
        changed = False
        for a_name, b_name, relu, flat in pairs:
            a, b = model.get_submodule(a_name), model.get_submodule(b_name)
            if getattr(a, "groups", 1) != 1 or getattr(b, "groups", 1) != 1:
                continue
            n_out = a.weight.shape[0]
            if isinstance(b, nn.Linear):
                if b.in_features % n_out:
                    continue
                per = b.in_features // n_out  # columns of B per neuron of A (H·W after a flatten)
                # Channel-major blocks of H·W columns only come from a conv's [C, H, W] output through a
                # Flatten; a Linear A feeds B one column per neuron (anything else is another layout).
                if (isinstance(a, nn.Conv2d) and not flat) or (isinstance(a, nn.Linear) and per != 1):
                    continue
                wb = b.weight.view(b.out_features, n_out, per)
            elif isinstance(b, nn.Conv2d) and isinstance(a, nn.Conv2d):
                per = None
                wb = b.weight  # [out, in, kh, kw]
            else:
                continue
            if wb.shape[1] != n_out:
                continue
            wa = a.weight.reshape(n_out, -1)
            no_out = (wb != 0).transpose(0, 1).reshape(n_out, -1).sum(1) == 0
            no_in = (wa != 0).sum(1) == 0
            dead = no_out.clone()
            fold = torch.zeros(n_out, dtype=torch.bool, device=dead.device)  # constant neurons whose contribution goes into B's bias
            const = a.bias.detach().clone() if a.bias is not None else torch.zeros(n_out, device=wa.device)
            if relu:
                const = const.clamp_min(0)
            for j in torch.nonzero(no_in & ~no_out).flatten().tolist():
                if float(const[j]) == 0.0:
                    dead[j] = True
                    continue
                if b.bias is None or (isinstance(b, nn.Conv2d) and any(p != 0 for p in b.padding)):
                    continue
                dead[j] = fold[j] = True
            if not dead.any():
                continue
            if bool(dead.all()):  # keep one neuron so the shapes stay valid: one B never reads if there is one,
                k = int(torch.nonzero(no_out)[0]) if no_out.any() else 0  # else one left unfolded (it still feeds B)
                dead[k] = fold[k] = False
                if not dead.any():
                    continue
            for j in torch.nonzero(fold).flatten().tolist():  # only now: a kept neuron must not be folded too
                c = float(const[j])
                if isinstance(b, nn.Linear):
                    b.bias.add_(wb[:, j, :].sum(1) * c)
                else:
                    b.bias.add_(wb[:, j].sum((1, 2)) * c)
            keep = ~dead
            new_a = _shrunk_like(a, a.weight[keep], a.bias[keep] if a.bias is not None else None)
            if per is not None:
                cols = keep.repeat_interleave(per)
                new_b = _shrunk_like(b, b.weight[:, cols], b.bias)
                masks[b_name] = masks[b_name][:, cols]
            else:
                new_b = _shrunk_like(b, b.weight[:, keep], b.bias)
                masks[b_name] = masks[b_name][:, keep]
            masks[a_name] = masks[a_name][keep]
            _set_module(model, a_name, new_a)
            _set_module(model, b_name, new_b)
            removed[a_name] += int(dead.sum())
            changed = True
    return model, masks, removed


@torch.no_grad()
def remove_dead_neurons_checked(model: nn.Module, masks: M.Masks | None, x: torch.Tensor,
                                log: Callable[[str], None] = print) -> tuple[nn.Module, M.Masks, dict[str, int]]:
    """remove_dead_neurons, proven on the inputs x: if the smaller network's outputs differ from the network's
    (beyond float32 rounding of the folded biases), the network is kept whole and that is said, instead of
    shipping a model whose outputs changed (which `prunec verify` could not notice: it compares the C with it)."""
    was_training = model.training
    model.eval()
    before_model = copy.deepcopy(model)
    before_masks = dict(masks) if masks is not None else None
    ref = model(x)
    new, new_masks, removed = remove_dead_neurons(model, masks)
    if any(removed.values()) and len(x):
        out = new(x)
        err = float((out - ref).abs().max()) if out.shape == ref.shape else math.inf
        scale = max(1.0, float(ref.abs().max()))
        if not err <= 1e-4 * scale:
            log(f"warning: dead-neuron removal would change this model's outputs (max difference {err:.3g}); every "
                f"neuron is kept. Please report it with the model's code.")
            before_model.train(was_training)
            return before_model, before_masks, {n: 0 for n in removed}
    new.train(was_training)
    return new, new_masks, removed


def resize_to_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Replace prunable layers whose saved weights have another shape (shrunk by dead-neuron removal)."""
    for name, m in prunable_layers(model):
        w = state_dict.get(name + ".weight")
        if w is None or tuple(w.shape) == tuple(m.weight.shape):
            continue
        b = state_dict.get(name + ".bias")
        _set_module(model, name, _shrunk_like(m, torch.zeros_like(w), torch.zeros_like(b) if b is not None else None))
    return model


def with_recipe_overrides(recipe: Recipe, **kw) -> Recipe:
    return replace(recipe, **{k: v for k, v in kw.items() if v is not None})
