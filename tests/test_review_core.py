"""Review of the pruning core: dead-neuron removal corner cases and the AlexNet dropout placement."""
import math

import pytest
import torch
from torch import nn

from prunec import masks as M
from prunec import prune as P
from prunec.models import AlexNet, LeNet300, prunable_layers
from prunec.recipes import PAPER_REMAINING, Recipe, paper_sparsity


def _remove(model):
    return P.remove_dead_neurons(model, M.masks_from_weights(model))


@pytest.mark.parametrize("n_hidden", [1, 3])
def test_layer_without_any_input_keeps_its_constant_output(n_hidden):
    """Every neuron of a layer has no input, all with relu(bias) > 0: one neuron is kept for the shapes, and
    its constant must not be folded into the next bias as well (it was counted twice)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 2)).eval()
    with torch.no_grad():
        m[0].weight.zero_()
        m[0].bias.copy_(torch.linspace(0.2, 0.7, n_hidden))
    x = torch.randn(5, 4)
    ref = m(x)
    m, masks, removed = _remove(m)
    assert m[0].out_features == 1 and removed["0"] == n_hidden - 1
    assert torch.allclose(m(x), ref, atol=1e-6)


def test_all_dead_prefers_keeping_a_neuron_the_next_layer_never_reads():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        m[0].weight[:2] = 0  # neurons 0, 1: no input, constant relu(bias) > 0
        m[0].bias[:2] = 0.5
        m[2].weight[:, 2] = 0  # neuron 2: no output
    x = torch.randn(5, 4)
    ref = m(x)
    m, _, _ = _remove(m)
    assert m[0].out_features == 1 and torch.count_nonzero(m[2].weight) == 0  # the kept one feeds nothing
    assert torch.allclose(m(x), ref, atol=1e-6)


def test_conv_into_linear_without_flatten_is_not_read_as_channel_blocks():
    """A Linear applied to a conv's last (width) axis: its columns are positions, not channel blocks."""
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        m[2].weight[:, :2] = 0  # width positions 0 and 1 unused; every channel is still read
    x = torch.randn(2, 1, 8, 8)
    ref = m(x)
    m, _, removed = _remove(m)
    assert removed["0"] == 0 and m[0].out_channels == 4
    assert torch.allclose(m(x), ref, atol=1e-6)


def test_linear_then_flatten_is_position_major():
    """Linear over [N, T, F] then Flatten: column t·F + j belongs to neuron j, not j·T + t."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.f, self.b = nn.Linear(3, 4), nn.Flatten(), nn.Linear(8, 2)

        def forward(self, x):
            return self.b(self.f(self.a(x)))

    torch.manual_seed(3)
    m = Net().eval()
    with torch.no_grad():
        m.b.weight[:, :2] = 0  # t = 0, neurons 0 and 1; t = 1 still reads them
    x = torch.randn(5, 2, 3)
    ref = m(x)
    m, _, _ = _remove(m)
    assert torch.allclose(m(x), ref, atol=1e-6)


def test_dead_removal_conv_relu_pool_conv_flatten_with_biases():
    """Constant channels (nonzero bias, no input) through ReLU and max-pool, folded or kept; outputs unchanged."""
    torch.manual_seed(4)
    m = nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 5, 3), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 2 * 2, 3)).eval()
    with torch.no_grad():
        m[0].weight[0] = 0
        m[0].bias[0] = 0.4  # constant 0.4 into an unpadded conv: folded
        m[0].weight[1] = 0
        m[0].bias[1] = -0.4  # relu → 0: removed
        m[3].weight[2] = 0
        m[3].bias[2] = 0.3  # constant block of fc columns: folded
        m[7].weight[:, 4 * 4 : 4 * 5] = 0  # conv channel 4 unread by the fc
    x = torch.randn(3, 2, 14, 14)
    ref = m(x)
    m, masks, removed = _remove(m)
    assert removed == {"0": 2, "3": 2, "7": 0}
    assert m[7].in_features == 3 * 4
    assert torch.allclose(m(x), ref, atol=1e-5)


def test_alexnet_dropouts_follow_fc6_and_fc7_as_in_caffe():
    m = AlexNet()
    fcs = [n for n, mod in prunable_layers(m) if isinstance(mod, nn.Linear)]
    assert fcs == ["classifier.0", "classifier.3", "classifier.6"]
    assert P.feeding_dropouts(m) == {"classifier.3": "classifier.2", "classifier.6": "classifier.5"}
    assert set(PAPER_REMAINING["alexnet"]) == {n for n, _ in prunable_layers(m)}


def test_alexnet_dropout_rescale_with_the_paper_profile():
    """Dr = Do·sqrt(Cr/Co) of the fc layer each dropout feeds: drop6 → fc7 (9 %), drop7 → fc8 (25 %)."""
    m = AlexNet(num_classes=1000)
    sp = paper_sparsity("alexnet")
    masks = M.dense_masks(m)
    for n in ("classifier.3", "classifier.6"):
        masks[n] = P.sparsity_mask(m.get_submodule(n).weight, masks[n], sp[n])
    state = P.new_state(m, Recipe(sparsity=sp), masks)
    rates = P.rescale_dropout(m, masks, state["dropout_p0"], state["weights0"])
    assert rates["classifier.2"] == pytest.approx(0.5 * math.sqrt(0.09), rel=1e-4)
    assert rates["classifier.5"] == pytest.approx(0.5 * math.sqrt(0.25), rel=1e-4)


def test_quality_threshold_uses_the_dense_std_at_every_step():
    from prunec import data as D

    torch.manual_seed(5)
    tiny = D.synthetic(n_train=64, n_test=32, seed=0)
    m = LeNet300()
    dense = {n: mod.weight.detach().clone() for n, mod in prunable_layers(m)}
    recipe = Recipe(quality=1.0, steps=3, schedule="linear", retrain_epochs=0, remove_dead=False)
    m, masks, _ = P.run_schedule(m, tiny, recipe, baseline_accuracy=0.0, progress=False, log=lambda s: None)
    for n, w in dense.items():  # q·σ_dense, not q·σ of the survivors (which is larger after step 1)
        assert torch.equal(masks[n], w.abs() >= float(w.std()))
