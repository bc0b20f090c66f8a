"""Tests from a mutation audit of the Python toolchain (nineteenth session): each pins a behaviour that a one-line
change of the code (a "mutant") altered without any test failing. 77 mutants of encode, plan, masks, prune,
checkpoint and export: 39 killed by the existing tests, 30 real gaps (these tests and four in test_review_19.py), 8
equivalent. Test names carry the mutant's id of the audit's report."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunec import checkpoint as C
from prunec import data as D
from prunec import encode
from prunec import masks as M
from prunec import plan as PL
from prunec import prune as P
from prunec.errors import PrunecError
from prunec.models import LeNet300
from prunec.recipes import Recipe


# --- checkpoint.load: damaged metadata ----------------------------------------------------------------------


def _tampered(tmp_path, **change):
    p = tmp_path / "m.pt"
    C.save(p, LeNet300(), "lenet300")
    obj = torch.load(p, weights_only=True)
    for k, v in change.items():
        if v is KeyError:
            del obj[k]
        else:
            obj[k] = v
    torch.save(obj, p)
    return p


@pytest.mark.parametrize("change", [
    {"version": KeyError},                       # C1: no version at all
    {"num_classes": "10"},                       # C2: not an integer
    {"num_classes": 10.0},
    {"input_shape": [1, 32, 32]},                # C3: another model's input
    {"masks": {"fc1": [1, 0, 1]}},               # C4: a mask that is no tensor
    {"schedule": {"weights0": {"fc1": -5}}},     # C7: a negative dense size
])
def test_damaged_metadata_is_a_prunec_error(tmp_path, change):
    p = _tampered(tmp_path, **change)
    with pytest.raises(PrunecError):
        C.load(p)


def test_C5_dropout_rate_above_one_is_refused_as_such(tmp_path):
    # LeNet-300 has no Dropout: the range check must fire before the module lookup (for AlexNet / VGG-16 the
    # module is a Dropout and a rate of 1.5 would otherwise be set silently)
    p = _tampered(tmp_path, dropout_p={"fc1": 1.5})
    with pytest.raises(PrunecError, match=r"not a number in \[0, 1\]"):
        C.load(p)


def test_C8_shrunk_layers_that_no_longer_chain_are_refused(tmp_path):
    # fc1 shrunk to 200 outputs, fc2 still reading 300 inputs: load must say so, not hand back a model that fails later
    p = tmp_path / "m.pt"
    C.save(p, LeNet300(), "lenet300")
    obj = torch.load(p, weights_only=True)
    obj["state_dict"]["fc1.weight"] = obj["state_dict"]["fc1.weight"][:200].clone()
    obj["state_dict"]["fc1.bias"] = obj["state_dict"]["fc1.bias"][:200].clone()
    torch.save(obj, p)
    with pytest.raises(PrunecError, match="inconsistent layer shapes"):
        C.load(p)


def test_C11_float_masks_are_read_as_bool(tmp_path):
    m = LeNet300()
    masks = {n: torch.rand_like(mod.weight) < 0.5 for n, mod in [("fc1", m.fc1), ("fc2", m.fc2), ("fc3", m.fc3)]}
    p = _tampered(tmp_path, masks={k: v.float() for k, v in masks.items()})
    ck = C.load(p)
    assert all(v.dtype == torch.bool for v in ck.masks.values())
    assert all(torch.equal(ck.masks[k], masks[k]) for k in masks)


# --- encode -------------------------------------------------------------------------------------------------


def test_E5_count_entries_pads_a_row_that_has_exactly_the_room_it_needs():
    # 1x4 row with nonzeros at columns 0..2: padding to 4 entries needs 1 filler, and column 3 is free.
    w = np.array([[1.0, 2.0, 3.0, 0.0]], dtype=np.float32)
    padded = encode.pad_rows(encode.encode_rcsr(w, 8), 4)
    assert padded.entries == 4
    assert encode.count_entries(w, 8, row_align=4) == (padded.entries, padded.fillers) == (4, 1)


def test_E6_pack_codes_refuses_a_code_of_exactly_2_pow_bits():
    for bits in (4, 5, 8):
        with pytest.raises(ValueError):
            encode.pack_codes(np.array([1 << bits], dtype=np.uint16), bits)


def test_E7_odd_width_stream_longer_than_one_chunk_is_one_bit_stream():
    bits = 5
    n = encode._CHUNK + 3  # past the packer's first chunk
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 1 << bits, n).astype(np.uint16)
    packed = encode.pack_codes(codes, bits)
    assert len(packed) == (n * bits + 7) // 8
    # reference for the codes around the chunk boundary: code i in bits 5*i .. 5*i+4 of the LSB-first stream
    stream = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), bitorder="little")
    for i in (encode._CHUNK - 2, encode._CHUNK - 1, encode._CHUNK, n - 1):
        assert int((stream[bits * i:bits * i + bits] * (1 << np.arange(bits))).sum()) == codes[i]
    np.testing.assert_array_equal(encode.unpack_codes(packed, bits, n), codes)


def test_E8_dense_wins_a_tie():
    # 1x12, 8 nonzeros, b = 8: 8*4 values + 8 index bytes + 2*4 pointer bytes = 48 = 12*4 dense bytes
    w = np.array([[1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0]], dtype=np.float32)
    e = encode.choose_encoding(w, bits_options=(8,))
    assert e.format == "dense"


def test_E11_row_align_accepts_its_documented_maximum():
    assert encode.check_row_align(encode.ROW_ALIGN_MAX, "x") == encode.ROW_ALIGN_MAX


def test_E12_decode_refuses_an_entry_at_column_cols():
    # one row, cols = 4, a filler (value 0) at column 4: a kernel would read past the row
    r = encode.RCSR(1, 4, 4, np.zeros(1, np.float32), np.array([4], np.uint16), np.array([0, 1], np.uint32), 0, 1)
    with pytest.raises(ValueError):
        encode.decode_rcsr(r)


def test_E17_unpack_refuses_a_stream_one_byte_short():
    with pytest.raises(ValueError):
        encode.unpack_codes(b"\x00", 8, 2)
    with pytest.raises(ValueError):
        encode.unpack_codes(b"\x00\x00", 6, 3)  # 16 bits hold only 2 codes of 6 bits


# --- masks --------------------------------------------------------------------------------------------------


def test_M3_masked_step_zeroes_pruned_weights_even_if_they_were_not_zero_before():
    torch.manual_seed(0)
    model = LeNet300()
    masks = {n: torch.rand_like(m.weight) < 0.5 for n, m in [("fc1", model.fc1), ("fc2", model.fc2), ("fc3", model.fc3)]}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # no decay, no momentum: nothing else would move them
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    M.masked_step(opt, model, masks)
    for n, mask in masks.items():
        assert torch.count_nonzero(model.get_submodule(n).weight[~mask]) == 0


def test_M6_compression_of_a_model_without_nonzero_weights_is_infinite():
    model = LeNet300()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    assert M.compression(model) == float("inf")


def test_M8_from_torch_prune_bakes_a_pruned_bias_too():
    torch.manual_seed(0)
    model = LeNet300()
    torch_prune.l1_unstructured(model.fc1, "weight", amount=0.5)
    torch_prune.l1_unstructured(model.fc1, "bias", amount=0.5)
    bias_mask = model.fc1.bias_mask.clone()
    M.from_torch_prune(model)
    assert not hasattr(model.fc1, "bias_orig") and not hasattr(model.fc1, "bias_mask")
    assert isinstance(model.fc1.bias, nn.Parameter) and not model.fc1._forward_pre_hooks
    assert torch.count_nonzero(model.fc1.bias[bias_mask == 0]) == 0


def test_M9_state_dict_import_bakes_a_pruned_bias():
    torch.manual_seed(0)
    model = LeNet300()
    torch_prune.l1_unstructured(model.fc1, "bias", amount=0.5)
    sd = model.state_dict()
    plain, masks = M.from_torch_prune_state_dict(sd)
    assert "fc1.bias" in plain and "fc1.bias_orig" not in plain and "fc1.bias_mask" not in plain
    assert torch.count_nonzero(plain["fc1.bias"][sd["fc1.bias_mask"] == 0]) == 0


# --- plan ---------------------------------------------------------------------------------------------------


def test_P4_greedy_uses_a_gap_of_exactly_the_slot_size():
    # x (steps 0-1) and z (0-3) conflict; y (2-3) conflicts only with z and fits exactly where x was
    slots = [PL.Slot(["x"], 64, 0, 1), PL.Slot(["z"], 64, 0, 3), PL.Slot(["y"], 64, 2, 3)]
    assert PL._greedy(slots) == 128
    assert {s.buffers[0]: s.offset for s in slots} == {"x": 0, "z": 64, "y": 0}


def test_P9_check_catches_a_misaligned_slot():
    s = PL.Slot(["a"], 32, 0, 1, offset=8)
    plan = PL.Plan(arena_bytes=64, offsets={"a": 8}, slots=[s])
    with pytest.raises(PL.PlanError):
        PL.check(plan)


# --- prune --------------------------------------------------------------------------------------------------


def test_R1_quality_keeps_a_weight_exactly_at_the_threshold():
    w = torch.tensor([0.5, 1.0, 2.0, -1.0])
    new = P.quality_mask(w, torch.ones(4, dtype=torch.bool), 1.0, std=1.0)  # prune |w| < 1.0
    assert new.tolist() == [False, True, True, True]


def test_R5_sparsity_mask_of_a_shrunk_layer_keeps_at_most_what_it_has():
    # a layer shrunk from 100 to 50 weights by dead-neuron removal, pruned to 20 % of its dense size: keep 80 > 50
    w = torch.randn(5, 10)
    mask = torch.ones_like(w, dtype=torch.bool)
    new = P.sparsity_mask(w, mask, 0.2, dense_size=100)
    assert torch.equal(new, mask)


def test_R9_max_accuracy_drop_zero_allows_no_drop_but_keeps_an_equal_accuracy(monkeypatch):
    monkeypatch.setattr(P, "evaluate", lambda model, data: 0.5)
    torch.manual_seed(0)
    tiny = D.synthetic(n_train=64, n_test=32, seed=0)
    recipe = Recipe(sparsity={"fc1": 0.5}, steps=2, schedule="linear", retrain_epochs=0, max_accuracy_drop=0.0,
                    remove_dead=False)
    _, masks, st = P.run_schedule(LeNet300(), tiny, recipe, baseline_accuracy=0.5, progress=False, log=lambda s: None)
    assert not st["stopped"] and not any(h.get("undone") for h in st["history"]) and len(st["history"]) == 2
    assert int(masks["fc1"].sum()) == round(0.5 * masks["fc1"].numel())


class _PaddedConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3, padding=1)
        self.c2 = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.c2(torch.relu(self.c1(x)))


def test_R13_a_constant_channel_is_not_folded_into_a_padded_conv():
    torch.manual_seed(0)
    m = _PaddedConvs()
    with torch.no_grad():
        m.c1.weight[0] = 0.0  # channel 0: no input, constant relu(bias) = 0.5 everywhere ...
        m.c1.bias[0] = 0.5    # ... but c2's zero padding makes it not constant at the borders
    x = torch.randn(2, 1, 6, 6)
    ref = m(x)
    m2, _, removed = P.remove_dead_neurons(copy.deepcopy(m))
    assert removed["c1"] == 0
    assert torch.allclose(m2(x), ref, atol=1e-6)


def test_R16_cubic_schedule_values():
    # f(x) = 1 - (1 - x)^3 (module docstring)
    assert [P.schedule_fraction(k, 4, "cubic") for k in range(1, 5)] == pytest.approx([1 - 0.75 ** 3, 1 - 0.5 ** 3,
                                                                                     1 - 0.25 ** 3, 1.0])
