"""Dead-neuron removal follows the model's dataflow (torch.fx), not the order its modules are declared: a neuron is
removed, or its constant folded into the next layer's bias, only where the next layer alone reads it, through ReLU
(module, function or method), max-pool, flatten or dropout; the outputs stay the same (docs/PRUNING.md)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunec import models, prune


def _kill(layer, j, bias):
    """Neuron j of `layer` gets no input (its weights zero) and a constant output set by `bias`."""
    with torch.no_grad():
        layer.weight[j] = 0.0
        layer.bias[j] = bias


def _same_outputs(model, shape, **kw):
    torch.manual_seed(1)
    x = torch.randn(4, *shape)
    before = model.eval()(x)
    new, _, removed = prune.remove_dead_neurons(copy.deepcopy(model), **kw)
    torch.testing.assert_close(new.eval()(x), before, rtol=1e-5, atol=1e-6)
    return new, removed


class Functional(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(6, 5), nn.Linear(5, 3), act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("act, folded", [
    (F.relu, True), (torch.relu, True), (lambda t: t.relu(), True),  # relu(-1) = 0 folded, the neuron removed
    (torch.sigmoid, False), (torch.tanh, False),  # not a pass-through: nothing removed
])
def test_the_activation_between_is_the_one_the_graph_has(act, folded):
    torch.manual_seed(0)
    m = Functional(act)
    _kill(m.fc1, 0, -1.0)
    new, removed = _same_outputs(m, (6,))
    assert removed["fc1"] == (1 if folded else 0) and new.fc1.out_features == (4 if folded else 5)


def test_a_positive_constant_through_a_functional_relu_goes_into_the_next_bias():
    torch.manual_seed(0)
    m = Functional(F.relu)
    _kill(m.fc1, 2, 0.7)
    new, removed = _same_outputs(m, (6,))
    assert removed["fc1"] == 1


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0, self.c1, self.fc = nn.Linear(6, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = F.relu(self.c0(x))
        h = F.relu(h + self.c1(h))  # c0's neurons are read by c1 and by the add
        return self.fc(h)


def test_a_neuron_that_a_residual_add_also_reads_stays():
    torch.manual_seed(0)
    m = Residual()
    with torch.no_grad():
        m.c1.weight[:, 0] = 0.0  # c1 never reads c0's neuron 0, but the add does
    new, removed = _same_outputs(m, (6,))
    assert removed["c0"] == 0 and new.c0.out_features == 4
    assert ("c0", "c1", True, False) not in prune._pairs(m)


class OutOfOrder(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 3)  # declared first, runs last
        self.body = nn.Linear(8, 16)

    def forward(self, x):
        return self.head(F.relu(self.body(x)))


def test_layers_are_paired_in_the_order_they_run():
    torch.manual_seed(0)
    m = OutOfOrder()
    with torch.no_grad():
        m.head.weight[:, 3] = 0.0  # body's neuron 3 feeds nothing
    assert prune._pairs(m) == [("body", "head", True, False)]
    new, removed = _same_outputs(m, (8,))
    assert removed["body"] == 1 and new.body.out_features == 15 and new.head.in_features == 15


class ConvView(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(h.view(h.size(0), -1))


def test_conv_to_fc_through_a_view_of_the_batch():
    torch.manual_seed(0)
    m = ConvView()
    _kill(m.conv, 1, -0.5)  # relu(-0.5) = 0 everywhere: no contribution, removed
    assert prune._pairs(m) == [("conv", "fc", True, True)]
    new, removed = _same_outputs(m, (1, 6, 6))
    assert removed["conv"] == 1 and new.fc.in_features == 12


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.mid, self.out = nn.Linear(6, 4), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(F.relu(self.mid(F.relu(self.mid(F.relu(self.fc1(x)))))))  # mid runs twice


def test_a_layer_that_runs_twice_is_not_shrunk():
    torch.manual_seed(0)
    m = Shared()
    with torch.no_grad():
        m.mid.weight[:, 1] = 0.0
        m.out.weight[:, 2] = 0.0
    assert prune._pairs(m) == []
    _, removed = _same_outputs(m, (6,))
    assert not any(removed.values())


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        if h.sum() > 1e9:  # data-dependent control flow: fx cannot trace it
            h = h * 2
        return self.fc2(h)


def test_a_model_fx_cannot_trace_keeps_every_neuron():
    torch.manual_seed(0)
    m = Untraceable()
    with torch.no_grad():
        m.fc2.weight[:, 0] = 0.0
    assert prune._pairs(m) == []
    _, removed = _same_outputs(m, (6,))
    assert not any(removed.values())


@pytest.mark.parametrize("name, pairs", [
    ("lenet300", [("fc1", "fc2", True, False), ("fc2", "fc3", True, False)]),
    ("lenet5", [("conv1", "conv2", False, False), ("conv2", "fc1", False, True), ("fc1", "fc2", True, False)]),
])
def test_the_zoo_models_keep_their_pairs(name, pairs):
    assert prune._pairs(models.create(name)) == pairs


def test_run_schedule_keeps_the_network_whole_when_removal_would_change_its_outputs(monkeypatch):
    """The safety net: whatever removal does is checked on test inputs, and a change of outputs is refused."""
    from prunec import data as D
    from prunec import recipes as R

    real = prune.remove_dead_neurons

    def broken(model, masks=None):  # removes as usual, then spoils a bias: the kind of bug the net must catch
        new, masks, removed = real(model, masks)
        with torch.no_grad():
            new.fc2.bias.add_(0.5)
        return new, masks, removed

    torch.manual_seed(0)
    m = Functional(F.relu)
    _kill(m.fc1, 0, -1.0)
    ds = D.synthetic(n_train=32, n_test=16, shape=(6,), num_classes=3)
    rec = R.Recipe(sparsity={"fc1": 0.05}, steps=1, retrain_epochs=0, schedule="oneshot")
    logs = []
    monkeypatch.setattr(prune, "remove_dead_neurons", broken)
    out, masks, state = prune.run_schedule(copy.deepcopy(m), ds, rec, baseline_accuracy=0.0, progress=False,
                                           log=logs.append)
    assert any("would change this model's outputs" in s for s in logs), logs
    assert out.fc1.out_features == 5 and not any(state["dead_removed"].values())
    assert masks["fc1"].shape == out.fc1.weight.shape
    monkeypatch.setattr(prune, "remove_dead_neurons", real)
    out, _, state = prune.run_schedule(copy.deepcopy(m), ds, rec, baseline_accuracy=0.0, progress=False,
                                       log=logs.append)
    assert out.fc1.out_features == 4 and state["dead_removed"]["fc1"] == 1
