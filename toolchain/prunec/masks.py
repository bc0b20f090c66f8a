"""Mask bookkeeping: which weights are pruned, and keeping them exactly zero.

A mask set is a plain dict ``{layer name: bool tensor shaped like layer.weight}`` (True = kept). Layer
names are module paths (``fc1``, ``classifier.1``), the names of `models.prunable_layers`.

Holding a mask through training takes three things, all done by `masked_step`:
  1. zero the gradient at pruned positions before the optimizer step (no update, no momentum fed);
  2. zero the optimizer's per-parameter state at pruned positions (SGD momentum buffers, Adam's moments),
     so an old buffer cannot move a weight that was alive when the buffer was filled;
  3. re-apply the mask after the step (weight decay, AdamW's decoupled decay, eps terms: whatever else).
Weights are zeroed with ``masked_fill`` rather than multiplied, so the zeros are exact even for inf/NaN.
A mask of another dtype (torch.nn.utils.prune's float ``weight_mask``, 0/1 integers) is read as nonzero = kept,
and a mask on another device is moved to the weight's.

Interoperability with ``torch.nn.utils.prune``: `to_torch_prune` re-parametrises each layer as
``weight_orig`` + buffer ``weight_mask`` (a forward pre-hook multiplies them), `from_torch_prune` reads such
a module (or its state_dict) back into plain weights with zeros baked in plus a mask set.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .models import prunable_layers

Masks = dict[str, torch.Tensor]


def dense_masks(model: nn.Module) -> Masks:
    """All-True masks for every prunable layer."""
    return {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in prunable_layers(model)}


def masks_from_weights(model: nn.Module) -> Masks:
    """Masks that keep exactly the nonzero weights."""
    return {n: (m.weight.detach() != 0) for n, m in prunable_layers(model)}


def _weight(model: nn.Module, name: str) -> torch.Tensor:
    try:
        w = model.get_submodule(name).weight
    except AttributeError:
        w = None
    if not torch.is_tensor(w):
        layers = [n for n, _ in prunable_layers(model)]
        raise ValueError(f"mask names layer {name!r}, which {type(model).__name__} does not have (its prunable layers: "
                         f"{', '.join(layers)}); the masks belong to another model")
    return w


def _pruned(name: str, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bool tensor, True where `mask` prunes, on `like`'s device; a non-bool mask counts nonzero as kept."""
    if not torch.is_tensor(mask):
        raise ValueError(f"mask for {name} is a {type(mask).__name__}, not a tensor")
    if tuple(mask.shape) != tuple(like.shape):
        raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight {tuple(like.shape)}")
    pruned = ~mask if mask.dtype == torch.bool else mask == 0
    return pruned.to(like.device)


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Set pruned weights to exactly 0."""
    for name, mask in masks.items():
        w = _weight(model, name)
        w.masked_fill_(_pruned(name, mask, w), 0.0)


@torch.no_grad()
def mask_grads(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        w = _weight(model, name)
        if w.grad is not None:
            w.grad.masked_fill_(_pruned(name, mask, w.grad), 0.0)


@torch.no_grad()
def mask_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero every per-parameter state tensor shaped like a masked weight at its pruned positions."""
    for name, mask in masks.items():
        w = _weight(model, name)
        state = optimizer.state.get(w)
        if not state:
            continue
        for v in state.values():
            if torch.is_tensor(v) and v.shape == w.shape:
                v.masked_fill_(_pruned(name, mask, v), 0)


def masked_step(optimizer: torch.optim.Optimizer, model: nn.Module, masks: Mapping[str, torch.Tensor] | None) -> None:
    """optimizer.step() that leaves pruned weights at exactly 0 (call after backward)."""
    if not masks:
        optimizer.step()
        return
    mask_grads(model, masks)
    mask_optimizer_state(optimizer, model, masks)
    optimizer.step()
    apply_masks(model, masks)
    mask_optimizer_state(optimizer, model, masks)


def layer_stats(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None) -> list[dict]:
    """Per prunable layer: weights, nonzero weights, fraction remaining (biases excluded)."""
    rows = []
    for name, m in prunable_layers(model):
        total = m.weight.numel()
        nz = int(masks[name].sum()) if masks is not None and name in masks else int((m.weight != 0).sum())
        rows.append({"name": name, "weights": total, "nonzero": nz, "remaining": nz / total if total else 0.0})
    return rows


def compression(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None,
                dense_sizes: Mapping[str, int] | None = None) -> float:
    """Total weights / nonzero weights over all Conv2d, Conv1d and Linear layers (biases excluded). `dense_sizes` (a
    pruning run's schedule["weights0"]): count each layer at its size before dead-neuron removal shrank it."""
    rows = layer_stats(model, masks)
    total = sum(int((dense_sizes or {}).get(r["name"], r["weights"])) for r in rows)
    nz = sum(r["nonzero"] for r in rows)
    return total / nz if nz else float("inf")


def clone_masks(masks: Mapping[str, torch.Tensor]) -> Masks:
    return {k: v.clone() for k, v in masks.items()}


def same_masks(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- torch.nn.utils.prune interoperability -------------------------------------------------------------

def to_torch_prune(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Re-parametrise `model` in place the torch.nn.utils.prune way (weight_orig + weight_mask + hook).

    weight_mask gets the weight's dtype and device, as torch.nn.utils.prune's own methods give it."""
    for name, mask in masks.items():
        w = _weight(model, name)
        keep = ~_pruned(name, mask, w)
        torch_prune.custom_from_mask(model.get_submodule(name), "weight", keep.to(w.dtype))
    return model


def from_torch_prune(model: nn.Module) -> Masks:
    """Undo torch.nn.utils.prune re-parametrisation in place; return the masks (pruned weights baked to 0).

    Layers pruned more than once (a PruningContainer) carry the combined mask in weight_mask, which is
    what is read. A layer without weight_mask keeps its nonzero weights: never pruned, that is all of
    them (trained weights are not exactly 0); pruned and then made permanent with ``prune.remove`` (which
    drops weight_mask and leaves the zeros baked in), its zeros stay pruned. Other pruned tensors (a bias
    pruned with torch.nn.utils.prune) are baked in as they are, zeros included; prunec masks only weights.
    """
    masks: Masks = {}
    for name, m in prunable_layers(model):
        if hasattr(m, "weight_mask") and hasattr(m, "weight_orig"):
            mask = m.weight_mask.detach() != 0
            torch_prune.remove(m, "weight")
            masks[name] = mask
        else:
            masks[name] = m.weight.detach() != 0
    # Every other re-parametrised tensor (a pruned bias; any tensor of a module prunec does not prune, e.g. a
    # ConvTranspose1d) is baked too, so no module is left with X_orig and a hook but no X.
    for _, m in model.named_modules():
        for pname in [n[: -len("_orig")] for n, _ in m.named_parameters(recurse=False) if n.endswith("_orig")]:
            if hasattr(m, pname + "_mask"):
                torch_prune.remove(m, pname)
    apply_masks(model, masks)
    return masks


def _torch_prune_pairs(sd: Mapping[str, object]) -> list[str]:
    """Keys X.p of a state_dict that torch.nn.utils.prune re-parametrised (X.p_orig + X.p_mask present)."""
    return [k[: -len("_orig")] for k in sd if k.endswith("_orig") and k[: -len("_orig")] + "_mask" in sd]


def is_torch_prune_state_dict(sd: Mapping[str, object]) -> bool:
    return any(k.endswith(".weight_orig") for k in sd) or bool(_torch_prune_pairs(sd))


def from_torch_prune_state_dict(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Masks]:
    """Turn a state_dict with ``X.weight_orig`` / ``X.weight_mask`` into plain ``X.weight`` + masks.

    Any other pruned entry (``X.bias_orig`` / ``X.bias_mask``) becomes a plain ``X.bias`` with the mask
    baked in; only weights get a mask.
    """
    pairs = set(_torch_prune_pairs(sd))
    out: dict[str, torch.Tensor] = {}
    masks: Masks = {}
    for k, v in sd.items():
        if k.endswith(".weight_orig"):
            layer = k[: -len(".weight_orig")]
            mask_key = layer + ".weight_mask"
            mask = (sd[mask_key] != 0) if mask_key in sd else torch.ones_like(v, dtype=torch.bool)
            out[layer + ".weight"] = v.masked_fill(~mask, 0.0)
            masks[layer] = mask
        elif k.endswith("_orig") and k[: -len("_orig")] in pairs:
            key = k[: -len("_orig")]
            out[key] = v.masked_fill(sd[key + "_mask"] == 0, 0.0)
        elif k.endswith("_mask") and (k.endswith(".weight_mask") or k[: -len("_mask")] in pairs):
            continue
        else:
            out[k] = v
    return out, masks


def to_torch_prune_state_dict(sd: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict a torch.nn.utils.prune-pruned module would have (weight_orig + float weight_mask)."""
    out = dict(sd)
    for layer, mask in masks.items():
        w = out.pop(layer + ".weight")
        out[layer + ".weight_orig"] = w
        out[layer + ".weight_mask"] = mask.to(w.dtype)
    return out


def params_of(model: nn.Module, names: Iterable[str]) -> list[torch.Tensor]:
    return [model.get_submodule(n).weight for n in names]
