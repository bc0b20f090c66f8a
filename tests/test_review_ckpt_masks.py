"""Review of masks, checkpoints, atomic writes and the model zoo (masks.py, checkpoint.py, atomic.py, models.py)."""
import dataclasses
import os
import pathlib
import stat

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunec import atomic
from prunec import checkpoint as C
from prunec import masks as M
from prunec import models
from prunec.errors import PrunecError
from prunec.models import LeNet5, LeNet300

torch.set_num_threads(1)


def _random_masks(model, keep=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(m.weight.shape, generator=g) < keep for n, m in models.prunable_layers(model)}


def _train(model, masks, opt, steps=3, dtype=torch.float32):
    torch.manual_seed(1)
    x, y = torch.randn(32, 1, 28, 28, dtype=dtype), torch.randint(0, 10, (32,))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x).float(), y).backward()
        M.masked_step(opt, model, masks)


def _pruned_nonzero(model, masks):
    return sum(int(torch.count_nonzero(model.get_submodule(n).weight.detach()[~m.bool()])) for n, m in masks.items())


# --- masks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.int64])
def test_non_bool_masks_are_read_as_nonzero_kept(dtype):
    """torch.nn.utils.prune's weight_mask is float; 0/1 integer masks are common too. They were a TypeError
    (`~` on a float tensor) or a RuntimeError (masked_fill with a uint8 mask) in apply_masks / masked_step."""
    torch.manual_seed(0)
    model = LeNet300()
    masks = _random_masks(model)
    given = {n: m.to(dtype) for n, m in masks.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    _train(model, None, opt, steps=2)  # fill the momentum buffers while dense
    M.apply_masks(model, given)
    assert _pruned_nonzero(model, masks) == 0
    _train(model, given, opt)
    assert _pruned_nonzero(model, masks) == 0
    assert int(torch.count_nonzero(opt.state[model.fc1.weight]["momentum_buffer"][~masks["fc1"]])) == 0
    assert torch.count_nonzero(model.fc1.weight[masks["fc1"]]) == int(masks["fc1"].sum())  # survivors alive


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_masks_hold_on_other_dtypes(dtype):
    torch.manual_seed(0)
    model = LeNet300().to(dtype)
    masks = _random_masks(model)
    M.apply_masks(model, masks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    _train(model, masks, opt, dtype=dtype)
    assert _pruned_nonzero(model, masks) == 0
    M.to_torch_prune(model, masks)
    assert model.fc1.weight_mask.dtype == dtype and model.fc1.weight.dtype == dtype
    assert M.same_masks(M.from_torch_prune(model), masks)


def test_mask_of_a_missing_layer_or_stale_shape_is_named():
    """Masks of another model (a layer it lacks) or from before dead-neuron removal (old shapes): a ValueError that
    names the layer and the model's layers, before any optimizer step (was AttributeError / a broadcast error)."""
    model = LeNet300()
    with pytest.raises(ValueError, match=r"'fc9'.*fc1, fc2, fc3"):
        M.apply_masks(model, {"fc9": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"'conv1'.*fc1, fc2, fc3"):
        M.to_torch_prune(model, {"conv1": torch.ones(20, 1, 5, 5, dtype=torch.bool)})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.fc1.weight.detach().clone()
    F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    with pytest.raises(ValueError, match=r"fc1 has shape \(300, 700\), weight \(300, 784\)"):
        M.masked_step(opt, model, {"fc1": torch.ones(300, 700, dtype=torch.bool)})
    assert torch.equal(model.fc1.weight, before)


def test_from_torch_prune_keeps_the_zeros_of_a_pruning_made_permanent():
    """prune.remove (torch's way to make pruning permanent) drops weight_mask and leaves the zeros baked in; the
    layer's mask was all-True, so retraining with masked_step revived the pruned weights."""
    torch.manual_seed(3)
    model = LeNet300()
    torch_prune.l1_unstructured(model.fc1, "weight", amount=0.6)
    torch_prune.remove(model.fc1, "weight")
    torch_prune.random_unstructured(model.fc2, "weight", amount=0.5)
    torch_prune.l1_unstructured(model.fc2, "weight", amount=0.5)  # a PruningContainer, still re-parametrised
    fc2_mask = model.fc2.weight_mask.bool().clone()
    masks = M.from_torch_prune(model)
    assert int((~masks["fc1"]).sum()) == round(0.6 * 784 * 300)
    assert torch.equal(masks["fc2"], fc2_mask) and masks["fc3"].all()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    _train(model, masks, opt)
    assert _pruned_nonzero(model, masks) == 0
    assert int(torch.count_nonzero(model.fc1.weight)) == int(masks["fc1"].sum())


def test_masks_from_dead_neuron_removal_hold_on_the_shrunk_model():
    from prunec.prune import remove_dead_neurons

    torch.manual_seed(4)
    model = LeNet300()
    masks = _random_masks(model, keep=0.5)
    masks["fc2"][:, :40] = False  # 40 fc1 neurons feed nothing: removed
    M.apply_masks(model, masks)
    model, new_masks, removed = remove_dead_neurons(model, masks)
    assert removed["fc1"] >= 40 and new_masks["fc1"].shape == model.fc1.weight.shape
    with pytest.raises(ValueError, match="fc1 has shape"):
        M.apply_masks(model, masks)  # the old masks no longer fit
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, new_masks, opt)
    assert _pruned_nonzero(model, new_masks) == 0


# --- checkpoints ---------------------------------------------------------------------------------------


def test_save_refuses_another_models_weights(tmp_path):
    """A LeNet-5 saved as 'lenet300' was written, and only the load failed ('foreign or damaged')."""
    with pytest.raises(PrunecError, match=r"cannot save as 'lenet300'.*it is a lenet5: pass model_name='lenet5'"):
        C.save(tmp_path / "c.pt", LeNet5(), "lenet300")
    with pytest.raises(PrunecError, match=r"cannot save as 'lenet5'"):
        C.save(tmp_path / "c.pt", nn.Sequential(nn.Linear(4, 2)), "lenet5")
    assert list(tmp_path.iterdir()) == []


def test_save_of_a_wrapped_model_loads(tmp_path):
    """DataParallel / DistributedDataParallel prefix every key with 'module.': the file did not load."""
    torch.manual_seed(5)
    inner = LeNet300().eval()
    masks = _random_masks(inner)
    M.apply_masks(inner, masks)
    C.save(tmp_path / "c.pt", nn.DataParallel(inner), "lenet300", masks=masks)
    ck = C.load(tmp_path / "c.pt")
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(ck.model(x), inner(x)) and M.same_masks(ck.masks, masks)


def test_metadata_with_numpy_and_paths_round_trips(tmp_path):
    """numpy scalars (an accuracy from numpy) and paths were written, and then torch.load(weights_only=True)
    refused the whole file: a checkpoint that save() wrote and load() could not read."""
    model = LeNet300()
    sched = {"step": np.int64(2), "history": [{"test_accuracy": np.float32(0.75)}], "std0": {"fc1": np.float64(0.03)},
             "hist": np.arange(4, dtype=np.int32)}
    C.save(tmp_path / "c.pt", model, "lenet300", schedule=sched, metrics={"test_accuracy": np.float64(0.9)},
           train_args={"data_dir": pathlib.Path("/data/fm")}, seed=np.int64(3))
    ck = C.load(tmp_path / "c.pt")
    assert ck.metrics["test_accuracy"] == 0.9 and type(ck.metrics["test_accuracy"]) is float
    assert ck.schedule["step"] == 2 and ck.schedule["history"][0]["test_accuracy"] == pytest.approx(0.75)
    assert torch.equal(ck.schedule["hist"], torch.arange(4, dtype=torch.int32))
    assert ck.meta["train_args"] == {"data_dir": "/data/fm"} and ck.meta["seed"] == 3


def test_unloadable_metadata_or_clashing_extra_is_refused_at_save(tmp_path):
    @dataclasses.dataclass
    class Cfg:
        lr: float = 0.1

    model = LeNet300()
    with pytest.raises(PrunecError, match=r"train_args\['cfg'\].*Cfg is not a plain value"):
        C.save(tmp_path / "c.pt", model, "lenet300", train_args={"cfg": Cfg()})
    with pytest.raises(PrunecError, match=r"extra keys \['kind', 'state_dict'\] would overwrite"):
        C.save(tmp_path / "c.pt", model, "lenet300", extra={"state_dict": {}, "kind": "pruned"})
    assert list(tmp_path.iterdir()) == []


def test_a_pickled_module_is_named_and_no_code_runs(tmp_path):
    """torch.save(model) of a whole module was reported as 'not written by torch.save'; a zip-format pickle whose
    object would run code when unpickled must be refused without running it."""
    torch.save(LeNet300(), tmp_path / "whole.pt")
    with pytest.raises(PrunecError, match=r"pickled Python object \(prunec.models.LeNet300\).*model.state_dict\(\)"):
        C.load(tmp_path / "whole.pt")

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    torch.save({"format": C.FORMAT, "version": C.VERSION, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(PrunecError, match="pickled Python object"):
        C.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_newer_format_version_says_upgrade(tmp_path):
    C.save(tmp_path / "c.pt", LeNet300(), "lenet300")
    obj = torch.load(tmp_path / "c.pt", weights_only=True)
    obj["version"] = C.VERSION + 1
    torch.save(obj, tmp_path / "new.pt")
    with pytest.raises(PrunecError, match="newer prunec: upgrade prunec"):
        C.load(tmp_path / "new.pt")
    obj["version"] = 0
    torch.save(obj, tmp_path / "old.pt")
    with pytest.raises(PrunecError, match="version 0 is not supported.*re-create it with `prunec train`"):
        C.load(tmp_path / "old.pt")


# --- atomic writes -------------------------------------------------------------------------------------


def test_atomic_file_refuses_a_read_only_file_and_a_directory(tmp_path):
    """A read-only file was silently replaced (os.replace ignores the file's mode); a directory gave a raw
    IsADirectoryError after the whole checkpoint had been written."""
    ro = tmp_path / "ro.pt"
    ro.write_bytes(b"keep")
    ro.chmod(0o444)
    with pytest.raises(PrunecError, match=r"read-only; make it writable \(chmod u\+w"):
        C.save(ro, LeNet300(), "lenet300")
    assert ro.read_bytes() == b"keep"
    (tmp_path / "d").mkdir()
    with pytest.raises(PrunecError, match="it is a directory"):
        C.save(tmp_path / "d", LeNet300(), "lenet300")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "ro.pt"]


def test_atomic_file_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    """A private (0600) checkpoint became world-readable (0644) when rewritten."""
    p = tmp_path / "c.pt"
    p.write_bytes(b"old")
    p.chmod(0o600)
    C.save(p, LeNet300(), "lenet300")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert C.load(p).model_name == "lenet300"


def test_atomic_file_follows_a_symlink(tmp_path):
    """Writing through a symlink replaced the link by a plain file and left its target stale."""
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.pt"
    target.write_bytes(b"old")
    link = tmp_path / "latest.pt"
    link.symlink_to(target)
    C.save(link, LeNet300(), "lenet300")
    assert link.is_symlink() and C.load(target).model_name == "lenet300"
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["real.pt"]


def test_atomic_file_flushes_before_the_rename_and_survives_ctrl_c(tmp_path, monkeypatch):
    """Without an fsync before os.replace, a crash soon after can leave an empty file under the new name."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a))), real_replace(a, b))[1])
    out = tmp_path / "c.bin"
    with atomic.atomic_file(out) as tmp:
        tmp.write_bytes(b"new")
    assert events.index(("fsync", str(tmp))) < events.index(("replace", str(tmp)))
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_file(out) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert out.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["c.bin"]


# --- model zoo -----------------------------------------------------------------------------------------


def _shapes(name):
    with torch.device("meta"):
        m = models.create(name)
    return [(type(mod).__name__, tuple(mod.weight.shape)) for _, mod in models.prunable_layers(m)], m


def test_zoo_layer_shapes_are_the_papers():
    lenet5, _ = _shapes("lenet5")
    assert lenet5 == [("Conv2d", (20, 1, 5, 5)), ("Conv2d", (50, 20, 5, 5)), ("Linear", (500, 800)), ("Linear", (10, 500))]
    alex, _ = _shapes("alexnet")
    assert [s for _, s in alex] == [(96, 3, 11, 11), (256, 48, 5, 5), (384, 256, 3, 3), (384, 192, 3, 3), (256, 192, 3, 3),
                                    (4096, 9216), (4096, 4096), (1000, 4096)]
    vgg, m = _shapes("vgg16")
    convs = [s[0] for k, s in vgg if k == "Conv2d"]
    assert convs == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert [s for k, s in vgg if k == "Linear"] == [(4096, 25088), (4096, 4096), (1000, 4096)]
    kinds = [type(x).__name__ for x in m.classifier]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]  # dropout after fc6, fc7


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_create_refuses_a_bad_class_count(bad):
    """num_classes=0 silently gave the default 1000/10 outputs; -1 and 2.5 raised torch errors."""
    with pytest.raises(PrunecError, match=r"num_classes must be a positive integer"):
        models.create("lenet300", num_classes=bad)
    assert models.create("lenet300", num_classes=np.int64(3)).fc3.out_features == 3


def test_unknown_model_lists_every_choice():
    with pytest.raises(PrunecError) as e:
        models.create("LeNet-300")
    assert all(n in str(e.value) for n in models.MODELS)


def test_atomic_dir_follows_a_symlink(tmp_path):
    """A build folder reached through a symlink: the link was replaced by a real folder, and the moved-aside link
    (rmtree refuses symlinks, errors ignored) was left behind as a hidden .build.*.old entry."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "old.txt").write_text("old")
    (tmp_path / "build").symlink_to(tmp_path / "real")
    with atomic.atomic_dir(tmp_path / "build") as tmp:
        (tmp / "new.txt").write_text("new")
    assert (tmp_path / "build").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "real"]
    assert [p.name for p in (tmp_path / "real").iterdir()] == ["new.txt"]


def test_checkpoint_kind_is_one_of_three(tmp_path):
    """kind decides what `prunec prune` does with a base ("pruning" = resume only); a misspelt kind was written and
    read back as it was, and then treated as a dense base."""
    with pytest.raises(PrunecError, match=r"kind 'Pruned' is not one of dense, pruned, pruning"):
        C.save(tmp_path / "c.pt", LeNet300(), "lenet300", kind="Pruned")
    assert list(tmp_path.iterdir()) == []
    C.save(tmp_path / "c.pt", LeNet300(), "lenet300", kind="pruned")
    obj = torch.load(tmp_path / "c.pt", weights_only=True)
    obj["kind"] = "prunning"
    torch.save(obj, tmp_path / "c.pt")
    with pytest.raises(PrunecError, match=r"kind 'prunning' is not one of"):
        C.load(tmp_path / "c.pt")


def test_a_partly_torch_pruned_model_saves_a_full_mask_set(tmp_path):
    """Saving a module where only fc1 is still re-parametrised (fc2 pruned and made permanent) stored a mask for fc1
    alone; `prunec prune` on that checkpoint (run_schedule with its masks) then failed with KeyError 'fc2'."""
    from prunec import data as D
    from prunec import prune as P
    from prunec.recipes import Recipe

    torch.manual_seed(6)
    model = LeNet300()
    torch_prune.l1_unstructured(model.fc1, "weight", amount=0.5)
    torch_prune.l1_unstructured(model.fc2, "weight", amount=0.4)
    torch_prune.remove(model.fc2, "weight")
    C.save(tmp_path / "c.pt", model, "lenet300")
    ck = C.load(tmp_path / "c.pt")
    assert sorted(ck.masks) == ["fc1", "fc2", "fc3"]
    assert int((~ck.masks["fc2"]).sum()) == 12000 and ck.masks["fc3"].all()
    tiny = D.synthetic(n_train=64, n_test=32, seed=0)
    recipe = Recipe(sparsity={"fc1": 0.6, "fc3": 0.2}, steps=1, retrain_epochs=1, final_epochs=0, remove_dead=False)
    m, masks, _ = P.run_schedule(ck.model, tiny, recipe, baseline_accuracy=0.0, masks=ck.masks, progress=False,
                                 log=lambda s: None)
    assert not masks["fc2"][~ck.masks["fc2"]].any()  # the zeros made permanent stay pruned through retraining
    assert _pruned_nonzero(m, masks) == 0


@pytest.mark.parametrize("name", ["fc1", "nope"])
def test_dropout_rate_for_a_non_dropout_module_is_named(tmp_path, name):
    """A rate for a Linear (or a module the model lacks) was set as an attribute `.p` on it, or skipped."""
    import torch as _t

    from prunec import checkpoint as _C, models as _m
    from prunec.errors import PrunecError as _E

    p = tmp_path / "c.pt"
    _C.save(p, _m.create("lenet300"), "lenet300")
    obj = _t.load(p, weights_only=True)
    obj["dropout_p"] = {name: 0.5}
    _t.save(obj, p)
    with pytest.raises(_E, match="dropout rate for"):
        _C.load(p)


def test_umask_is_read_without_being_changed(monkeypatch):
    """atomic._umask set the process umask to 022 for a moment to read it: a file another thread created then got
    the wrong mode. On Linux it is now read from /proc/self/status, never set."""
    import os as _os

    from prunec import atomic

    if not _os.path.exists("/proc/self/status"):
        pytest.skip("no /proc/self/status")
    calls = []
    real = _os.umask
    monkeypatch.setattr(atomic.os, "umask", lambda m: calls.append(m) or real(m))
    old = real(0o027)
    try:
        assert atomic._umask() == 0o027 and calls == []
    finally:
        real(old)
