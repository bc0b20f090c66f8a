"""Masks stay exactly zero through optimizer steps; torch.nn.utils.prune interoperability."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunec import masks as M
from prunec.models import LeNet5, LeNet300

torch.set_num_threads(1)


def random_masks(model, keep=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(m.weight.shape, generator=g) < keep for n, m in
            [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]}


OPTIMIZERS = {
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero(opt_name):
    torch.manual_seed(0)
    model = LeNet300()
    opt = OPTIMIZERS[opt_name](model.parameters())
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    # fill the optimizer state while the network is dense: stale momentum would move pruned weights
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    masks = random_masks(model)
    M.apply_masks(model, masks)
    before = {n: model.get_submodule(n).weight.detach().clone() for n in masks}
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        M.masked_step(opt, model, masks)
    for n, mask in masks.items():
        w = model.get_submodule(n).weight
        assert torch.count_nonzero(w[~mask]) == 0, n
        assert not torch.equal(w[mask], before[n][mask]), f"{n}: kept weights did not train"
        for v in opt.state[w].values():
            if torch.is_tensor(v) and v.shape == w.shape:
                assert torch.count_nonzero(v[~mask]) == 0, f"{n}: optimizer state alive at pruned positions"


def test_unmasked_step_would_revive_weights():
    """The property above is not vacuous: a plain step after pruning does move pruned weights."""
    torch.manual_seed(0)
    model = LeNet300()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    F.cross_entropy(model(x), y).backward()
    opt.step()
    masks = random_masks(model)
    M.apply_masks(model, masks)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    assert torch.count_nonzero(model.fc1.weight[~masks["fc1"]]) > 0


def test_apply_masks_exact_even_for_nonfinite():
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight[0, 0] = float("inf")
        lin.weight[1, 1] = float("nan")
    model = nn.Sequential(lin)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 0] = mask[1, 1] = False
    M.apply_masks(model, {"0": mask})
    assert lin.weight[0, 0].item() == 0.0 and lin.weight[1, 1].item() == 0.0


def test_stats_and_compression():
    model = LeNet300()
    masks = random_masks(model, keep=0.25)
    rows = M.layer_stats(model, masks)
    assert [r["name"] for r in rows] == ["fc1", "fc2", "fc3"]
    total = sum(r["weights"] for r in rows)
    nz = sum(int(m.sum()) for m in masks.values())
    assert M.compression(model, masks) == pytest.approx(total / nz)
    assert total == 784 * 300 + 300 * 100 + 100 * 10


def test_torch_prune_round_trip():
    torch.manual_seed(1)
    model = LeNet5()
    masks = random_masks(model, keep=0.4)
    M.apply_masks(model, masks)
    x = torch.randn(3, 1, 28, 28)
    ref = model(x)
    M.to_torch_prune(model, masks)
    for n in masks:
        mod = model.get_submodule(n)
        assert hasattr(mod, "weight_orig") and torch.equal(mod.weight_mask.bool(), masks[n])
    sd = model.state_dict()
    assert any(k.endswith(".weight_mask") for k in sd)
    assert torch.allclose(model(x), ref)
    back = M.from_torch_prune(model)
    assert M.same_masks(back, masks)
    for n in masks:
        mod = model.get_submodule(n)
        assert not hasattr(mod, "weight_orig") and isinstance(mod.weight, nn.Parameter)
        assert not mod._forward_pre_hooks
    assert torch.allclose(model(x), ref)
    plain, m2 = M.from_torch_prune_state_dict(sd)
    assert M.same_masks(m2, masks)
    assert M.is_torch_prune_state_dict(M.to_torch_prune_state_dict(plain, m2))


def test_import_model_pruned_by_torch():
    """A module pruned with torch.nn.utils.prune (twice, i.e. a PruningContainer) imports its combined mask."""
    torch.manual_seed(2)
    model = LeNet300()
    torch_prune.l1_unstructured(model.fc1, "weight", amount=0.5)
    torch_prune.random_unstructured(model.fc1, "weight", amount=0.5)
    torch_prune.l1_unstructured(model.fc2, "weight", amount=0.8)
    expect1 = model.fc1.weight_mask.bool().clone()
    masks = M.from_torch_prune(model)
    assert torch.equal(masks["fc1"], expect1)
    assert int(masks["fc1"].sum()) == 784 * 300 // 4
    assert masks["fc3"].all()
    assert torch.count_nonzero(model.fc1.weight[~masks["fc1"]]) == 0
