"""CLI commands of the pruning half: train, prune, sensitivity, export, report, info.

Each command validates its input first (so a bad option costs no training time) and writes its output
atomically; errors are PrunecError (exit 2 through cli.py). `prunec prune` also runs under
`torchrun --nproc_per_node=N -m prunec ...` (DistributedDataParallel, see distributed.py).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import replace
from pathlib import Path

import click
import torch

from . import checkpoint as C
from . import data as D
from . import distributed as DIST
from . import masks as M
from . import models
from .errors import SEED_MAX, PrunecError, report
from .recipes import DEFAULT_L1_STRENGTH, PAPER_REMAINING, RECIPE_KINDS, default_recipe, parse_sparsity


def _check_out_parent(out: Path) -> None:
    parent = out.resolve().parent
    if not parent.is_dir():
        raise PrunecError(f"cannot write {out}: directory {parent} does not exist; create it first")
    if out.is_dir():
        raise PrunecError(f"cannot write {out}: it is a directory; give a file name")


def _check_not_input(out: Path, src, what: str, why: str) -> None:
    """Refuse an --out that is the command's own input file `src` (named `what`), which writing would destroy."""
    if out.exists() and out.resolve() == Path(src).resolve():
        raise PrunecError(f"--out {out} is {what} itself: {why}; give another file name")


def _check_out_dir(out: Path) -> None:
    """--out of sensitivity/report: a folder (created if missing, existing one reused) whose parent exists."""
    parent = out.resolve().parent
    if not parent.is_dir():
        raise PrunecError(f"cannot write into {out}: directory {parent} does not exist; create it first")
    if out.exists() and not out.is_dir():
        raise PrunecError(f"cannot write into {out}: it is a file, not a folder; give a folder name")


def _load_data(name: str, data_dir: str | None, model_name: str, seed: int = 0) -> D.Dataset:
    shape = models.input_shape(model_name)
    D.check_data_dir(name, data_dir)
    if name == "synthetic":
        return D.synthetic_for(shape, seed)
    ds = D.load(name, data_dir)
    if ds.input_shape != tuple(shape):
        raise PrunecError(f"model {model_name} takes {'x'.join(map(str, shape))} inputs but {name} has "
                          f"{'x'.join(map(str, ds.input_shape))} images; use lenet300/lenet5 with {name}, or --data synthetic")
    return ds


def _data_seed(ckpt: C.Checkpoint) -> int:
    """The seed of the synthetic data set `ckpt`'s model was trained on: a dense checkpoint's seed, or the
    `data_seed` a pruned one inherited from its base (`prune --seed` changes the retraining, not the data)."""
    return int(ckpt.meta.get("data_seed", ckpt.meta.get("seed")) or 0)


# Intra-op threads per model when PRUNEC_THREADS is unset: LeNet-300-100's small matmuls run fastest on one
# thread (a second one mostly spins, and on a shared 2-core machine it slows everyone down); the other models use
# torch's default, the physical cores (docs/PRUNING.md "Devices").
THREADS = {"lenet300": 1}


def _session(model_name: str | None = None):
    """(distributed?, rank0?) — joins the torchrun group when launched by torchrun."""
    from .train import set_threads

    if DIST.launched_by_torchrun():
        DIST.init()
        return True, DIST.is_rank0()
    set_threads(THREADS.get(model_name or ""))
    return False, True


def _finish(distributed: bool, code: int = 0) -> None:
    if distributed:
        DIST.shutdown(code)


def _run(distributed: bool, fn):
    """Run fn; under torchrun end every rank with the clean shutdown, whatever happened."""
    if not distributed:
        return fn()
    code = 0
    try:
        fn()
    except BaseException as e:  # every rank ends with the clean shutdown and the status the CLI would give
        code = report(e)
        if code is None:  # a defect: the traceback is what a bug report needs
            import traceback

            traceback.print_exc()
            code = 1
    _finish(True, code)


device_option = click.option(
    "--device", default="auto", show_default=True,
    help="where to run: auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N (under torchrun, "
         "cuda is each rank's LOCAL_RANK GPU)")

data_options = [
    click.option("--data", "data_name", type=click.Choice(D.DATASETS), default=None,
                 help="data set (default: the one the checkpoint was trained on, else fashion-mnist)"),
    click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="folder of Fashion-MNIST IDX files"),
]


def _with(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f
    return deco


# --- train --------------------------------------------------------------------------------------------


@click.command("train")
@click.option("--model", "model_name", required=True, type=str, help="lenet300, lenet5, alexnet or vgg16")
@click.option("--data", "data_name", type=click.Choice(D.DATASETS), default="fashion-mnist", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="folder of Fashion-MNIST IDX files")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="dense checkpoint to write (BASE.pt)")
@click.option("--epochs", type=int, default=None, help="default: the model's recipe (lenet300: 40, lenet5: 20)")
@click.option("--lr", type=float, default=None, help="peak SGD learning rate, cosine decay (default: the model's recipe, "
              "lenet300 0.05, lenet5 0.02)")
@click.option("--weight-decay", type=float, default=None, help="L2 strength")
@click.option("--batch-size", type=int, default=None, help="default: the model's recipe (lenet300: 64, else 128)")
@click.option("--momentum", type=float, default=None, help="SGD momentum (default: the model's recipe: 0.95 for lenet5, 0.9 otherwise)")
@click.option("--label-smoothing", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="cross-entropy against targets smoothed by this weight (default: the model's recipe, 0.1 for the "
                   "LeNets, 0 otherwise)")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True)
@device_option
@click.option("--quiet", is_flag=True, help="no progress bars")
def train_cmd(model_name, data_name, data_dir, out, epochs, lr, weight_decay, batch_size, momentum, label_smoothing, seed, device,
              quiet):
    """Train a dense baseline with the model's default recipe (SGD, momentum, cosine lr)."""
    from .train import default_config, evaluate, fit, resolve_device, to_device

    out = Path(out)
    models.input_shape(model_name)  # unknown model -> PrunecError
    _check_out_parent(out)
    if epochs is not None and epochs < 1:
        raise PrunecError(f"--epochs {epochs} must be ≥ 1")
    cfg = default_config(model_name)
    cfg = replace(cfg, **{k: v for k, v in dict(epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                                                momentum=momentum, label_smoothing=label_smoothing).items() if v is not None})
    cfg.validate()  # NaN, inf and out-of-range values fail here, before any work
    resolve_device(device)  # a bad --device fails before any work
    distributed, rank0 = _session(model_name)

    def body():
        dev = resolve_device(device)  # after _session: under torchrun "cuda" is the rank's GPU
        ds = to_device(_load_data(data_name, data_dir, model_name, seed), dev)
        torch.manual_seed(seed)
        model = models.create(model_name, num_classes=ds.num_classes).to(dev)
        fit(model, ds.train, cfg, seed=seed, progress=not quiet, desc="epoch")
        acc = evaluate(model, ds.test)
        if rank0:
            C.save(out, model, model_name, kind="dense", metrics={"test_accuracy": acc, "baseline_test_accuracy": acc},
                   train_args=cfg.to_dict(), seed=seed, dataset=data_name, num_classes=ds.num_classes)
            click.echo(f"{model_name}: test accuracy {acc:.4f} after {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} -> {out}")

    _run(distributed, body)


# --- prune --------------------------------------------------------------------------------------------


@click.command("prune")
@click.argument("base", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="pruned checkpoint to write")
@click.option("--recipe", "recipe_kind", type=click.Choice(RECIPE_KINDS), default=None,
              help="the model's recipe the other options change (default tuned): tuned (for the LeNets, tuned on Fashion-MNIST: "
                   "docs/PRUNING.md) or paper (Han et al.'s: their per-layer profile, 4 steps x 10 epochs at 1/10 of "
                   "the dense lr, no label smoothing)")
@click.option("--quality", type=float, default=None, help="threshold = QUALITY × std of each layer's dense weights")
@click.option("--sparsity", "sparsity_text", type=str, default=None, help="fraction pruned per layer, e.g. fc1=0.92,fc2=0.91, or the sensitivity.json of `prunec sensitivity` (its proposal)")
@click.option("--global-threshold", "global_sparsity", type=float, default=None,
              help="prune this fraction of all weights with one magnitude threshold across layers")
@click.option("--steps", type=int, default=None, help="prune → retrain iterations")
@click.option("--schedule", type=click.Choice(["cubic", "linear", "oneshot"]), default=None, help="how the pruned amount grows per step")
@click.option("--retrain-epochs", type=int, default=None, help="retraining epochs after each step")
@click.option("--final-epochs", type=int, default=None, help="extra retraining epochs after the last step")
@click.option("--reg", type=click.Choice(["l1", "l2"]), default=None, help="regulariser during retraining (default l2)")
@click.option("--reg-strength", type=float, default=None,
              help="strength of the regulariser (default: the model's recipe, 5e-4 for L2; 1e-5 with --reg l1)")
@click.option("--lr", type=float, default=None, help="retraining lr (default: the model's recipe: the dense peak lr for the LeNets, one cosine over "
                   "the run; 1/10 of the dense lr, restarted per step, otherwise)")
@click.option("--lr-span", type=click.Choice(["step", "run"]), default=None,
              help="cosine lr restarted in every retraining phase (step) or one decay over the whole run (run)")
@click.option("--target-compression", type=float, default=None, help="scale the per-layer profile to reach this total/nonzero")
@click.option("--max-accuracy-drop", type=float, default=None, help="stop when accuracy falls more than this (fraction) below the dense one")
@click.option("--distill", type=float, default=None, help="weight (0..1) of a distillation loss on the dense model's soft targets during retraining")
@click.option("--label-smoothing", type=float, default=None,
              help="retraining loss: cross-entropy against targets smoothed by this weight (0..1; default: the "
                   "model's recipe, 0.1 for the LeNets)")
@click.option("--alternate/--no-alternate", default=None, help="retrain fc with conv frozen, then conv with fc frozen")
@click.option("--remove-dead/--keep-dead", default=None, help="remove neurons with no input or no output connections")
@click.option("--batch-size", type=int, default=None, help="retraining minibatch (default: the model's recipe: 64 for lenet300, 128 otherwise)")
@click.option("--momentum", type=float, default=None, help="SGD momentum while retraining (default: the model's recipe: 0.95 for lenet5, 0.9 otherwise)")
@click.option("--resume", is_flag=True, help="continue an interrupted run from OUT.resume")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=None, help="default: the base checkpoint's seed")
@_with(data_options)
@device_option
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.option("--stop-after", type=int, default=None, hidden=True, help="(tests) stop after this step as if interrupted")
def prune_cmd(base, out, recipe_kind, quality, sparsity_text, global_sparsity, steps, schedule, retrain_epochs, final_epochs, reg,
              reg_strength, lr, lr_span, target_compression, max_accuracy_drop, distill, label_smoothing, alternate, remove_dead,
              batch_size, momentum, resume, seed, data_name, data_dir, device, quiet, stop_after):
    """Prune BASE (train → prune → retrain, repeated) with the model's tuned recipe unless options say otherwise."""
    from .prune import run_schedule
    from .report import weight_histograms
    from .train import evaluate, resolve_device, to_device

    out = Path(out)
    _check_out_parent(out)
    _check_not_input(out, base, "BASE", "the pruned model would replace the dense one it is compared with (and resumed from)")
    rpath = C.resume_path(out)
    base_ckpt = C.load(base)
    name = base_ckpt.model_name
    state = None
    kind = recipe_kind or "tuned"
    # recipe options the user gave (None = not given), as Recipe fields
    given = {k: v for k, v in dict(steps=steps, schedule=schedule, retrain_epochs=retrain_epochs, final_epochs=final_epochs,
                                   reg=reg, reg_strength=reg_strength, lr=lr, lr_span=lr_span, target_compression=target_compression,
                                   max_accuracy_drop=max_accuracy_drop, distill=distill, label_smoothing=label_smoothing,
                                   alternate=alternate, remove_dead=remove_dead, batch_size=batch_size,
                                   momentum=momentum).items() if v is not None}
    selectors = [o for o, v in (("--sparsity", sparsity_text), ("--quality", quality), ("--global-threshold", global_sparsity)) if v is not None]
    if len(selectors) > 1:
        raise PrunecError(f"{' and '.join(selectors)} both choose what to prune; give only one of --sparsity, --quality, --global-threshold")
    if target_compression is not None and (quality is not None or global_sparsity is not None):
        raise PrunecError(f"--target-compression scales a per-layer --sparsity profile; it does not apply to {selectors[0]}. "
                          f"Drop one of them (--global-threshold S alone gives a compression of 1/(1-S))")
    if reg == "l1" and reg_strength is None and default_recipe(name, kind).reg != "l1":
        # the recipes' L2 strengths are far too strong as an L1 lambda (LeNet-300-100 at 5e-4: -1.5 pp after two
        # steps, a third of fc1's neurons dead); L1 without a strength takes its own default
        given["reg_strength"] = DEFAULT_L1_STRENGTH
    if sparsity_text is not None:
        given.update(sparsity=parse_sparsity(sparsity_text, model=name), quality=None, global_sparsity=None)
    if quality is not None:
        given.update(quality=quality, global_sparsity=None, sparsity={})
    if global_sparsity is not None:
        given.update(global_sparsity=global_sparsity, quality=None, sparsity={})
    if resume and rpath.exists():
        try:
            res = C.load(rpath)
        except PrunecError as e:
            raise PrunecError(f"the interrupted run's state {rpath} cannot be resumed ({e}); delete it and run without "
                              f"--resume to start over") from None
        if res.kind != "pruning" or res.model_name != name:
            raise PrunecError(f"{rpath} is not an interrupted prune run of {name}; delete it or run without --resume")
        started_from = res.meta.get("base_checkpoint_sha256")
        if started_from and started_from != C.sha256(base):
            raise PrunecError(f"{rpath} was started from another base checkpoint than {base}; resume with the same BASE, "
                              f"or delete {rpath} to start over")
        from .recipes import Recipe

        recipe = Recipe.from_dict(res.meta["recipe"])
        stored = recipe.to_dict()
        differ = sorted(k for k, v in given.items() if stored.get(k) != v)
        if recipe_kind is not None:  # --recipe given again: the fields it sets and no option overrides must match
            want = replace(default_recipe(name, recipe_kind), **given).to_dict()
            if any(stored.get(k) != v for k, v in want.items() if k not in given):
                differ.append("recipe")
        if seed is not None and seed != (res.meta.get("seed") or 0):
            differ.append("seed")
        if differ:
            raise PrunecError(f"--resume continues {rpath} with the recipe it was started with, but "
                              f"{', '.join('--' + k.replace('_', '-') for k in differ)} differ from it; drop those options, "
                              f"or delete {rpath} to start a new run")
        model, masks, state = res.model, res.masks, res.meta["schedule"]
        seed = res.meta.get("seed") or 0
        baseline = res.metrics["baseline_test_accuracy"]
        hist_before = res.meta.get("weight_hist_before")
        data_name = data_name or res.meta.get("dataset") or "fashion-mnist"
        if state.get("done"):
            raise PrunecError(f"{rpath} holds a finished run; delete it")
    else:
        if resume:
            click.echo(f"no interrupted run at {rpath}; starting from the beginning", err=True)
        elif rpath.exists():
            raise PrunecError(f"{rpath} holds the progress of an interrupted run to {out}: continue it with --resume, "
                              f"or delete {rpath} to start over (a new run would overwrite it)")
        if base_ckpt.kind == "pruning":
            raise PrunecError(f"{base} is an interrupted prune run, not a base model; continue it with --resume --out <its OUT>")
        recipe = replace(default_recipe(name, kind), **given)
        recipe.validate()
        model, masks = base_ckpt.model, (base_ckpt.masks or None)
        seed = base_ckpt.meta.get("seed") or 0 if seed is None else seed
        data_name = data_name or base_ckpt.meta.get("dataset") or "fashion-mnist"
        baseline = None
        # "before pruning" is the dense model's: a pruned base passes on the histograms it was pruned from
        hist_before = (base_ckpt.kind == "pruned" and base_ckpt.meta.get("weight_hist_before")) or weight_histograms(model)
    data_seed = _data_seed(base_ckpt)
    resolve_device(device)  # a bad --device fails before any work
    distributed, rank0 = _session(name)

    def body():
        nonlocal baseline, model, masks
        dev = resolve_device(device)  # after _session: under torchrun "cuda" is the rank's GPU
        ds = to_device(_load_data(data_name, data_dir, name, data_seed), dev)
        model = model.to(dev)
        base_ckpt.model.to(dev)  # the teacher of --distill and the baseline's model (the same object unless resuming)
        masks = {k: v.to(dev) for k, v in masks.items()} if masks else masks
        if baseline is None:
            baseline = base_ckpt.metrics.get("baseline_test_accuracy") if base_ckpt.kind == "pruned" else None
            if baseline is None:  # a dense base; or a pruned one that does not record its dense model's accuracy
                if base_ckpt.kind == "pruned" and rank0:
                    click.echo(f"note: {base} records no dense baseline accuracy; comparing against {base} itself", err=True)
                baseline = evaluate(base_ckpt.model, ds.test)
        torch.manual_seed(seed)
        extra = {"weight_hist_before": hist_before, "base_checkpoint_sha256": C.sha256(base), "data_seed": data_seed}

        def on_step(model, masks, st):
            if rank0:
                # the accuracy of the model saved: the last step kept (an undone step's model is not the one saved)
                kept = [h for h in st["history"] if not h.get("undone")]
                acc_now = kept[-1]["test_accuracy"] if kept else (
                    baseline if base_ckpt.kind == "dense" else base_ckpt.metrics.get("test_accuracy"))
                C.save(rpath, model, name, masks=masks, kind="pruning", schedule=st, recipe=recipe.to_dict(),
                       metrics={"baseline_test_accuracy": baseline, "test_accuracy": acc_now},
                       train_args=base_ckpt.meta.get("train_args"), seed=seed, dataset=data_name, extra=extra)
            if stop_after is not None and st["step"] >= stop_after and not st.get("done"):
                raise _Interrupted()

        model.train()
        try:
            # a pruned base: fractions, compression, std and dropout rates count from the first run's dense model
            base_schedule = base_ckpt.schedule if base_ckpt.kind == "pruned" else None
            pruned, pmasks, st = run_schedule(model, ds, recipe, baseline_accuracy=baseline, seed=seed, masks=masks,
                                              state=state, on_step=on_step, progress=not quiet, teacher=base_ckpt.model,
                                              base_schedule=base_schedule,
                                              log=(lambda s: click.echo(s, err=True)) if rank0 else (lambda s: None))
        except _Interrupted:
            if rank0:
                click.echo(f"stopped after step {stop_after}; continue with --resume", err=True)
            return
        except KeyboardInterrupt:
            if rank0 and rpath.exists():
                click.echo(f"\nprunec: the run's finished steps are in {rpath}; run the same command with --resume "
                           f"to continue from there", err=True)
            raise
        d = DIST.check_identical(pruned, pmasks) if distributed else None
        acc = evaluate(pruned, ds.test)
        if rank0:
            C.save(out, pruned, name, masks=pmasks, kind="pruned", schedule=st, recipe=recipe.to_dict(),
                   metrics={"test_accuracy": acc, "baseline_test_accuracy": baseline},
                   train_args=base_ckpt.meta.get("train_args"), seed=seed, dataset=data_name,
                   extra={**extra, "world_size": DIST.world_size()})
            if rpath.exists():
                rpath.unlink()
            total = sum(st["weights0"].values())
            nz = sum(int(m.sum()) for m in pmasks.values())
            ratio = f"{total / nz:.2f}x fewer weights" if nz else "every weight pruned"
            msg = (f"{name}: {ratio} ({nz}/{total}), test accuracy {acc:.4f} "
                   f"(dense {baseline:.4f}, {100 * (acc - baseline):+.2f} pp) -> {out}")
            if d:
                msg += f"\nmasks and weights identical on {DIST.world_size()} ranks (sha256 {d[:16]})"
            click.echo(msg)

    _run(distributed, body)


class _Interrupted(Exception):
    pass


# --- sensitivity, export, report, info ----------------------------------------------------------------


@click.command("sensitivity")
@click.argument("base", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder for sensitivity.json and sensitivity.png")
@click.option("--tolerance", type=float, default=0.005, show_default=True, help="accuracy drop allowed when proposing a fraction")
@_with(data_options)
@device_option
def sensitivity_cmd(base, out, tolerance, data_name, data_dir, device):
    """Accuracy vs fraction pruned, each layer alone, no retraining (the paper's Figure 6)."""
    from . import sensitivity as S
    from .train import resolve_device, to_device

    S.check_tolerance(tolerance)  # before the analysis, which takes a while
    if DIST.launched_by_torchrun():
        raise PrunecError("prunec sensitivity runs in one process (it only evaluates); run it without torchrun")
    ckpt = C.load(base)
    _check_out_dir(Path(out))
    dev = resolve_device(device)
    _session(ckpt.model_name)
    ds = _load_data(data_name or ckpt.meta.get("dataset") or "fashion-mnist", data_dir, ckpt.model_name, _data_seed(ckpt))
    result = S.analyse(ckpt.model.to(dev), to_device(ds.test, dev),
                       dense_sizes=(ckpt.schedule or {}).get("weights0"))  # as prune counts a pruned base's layers
    proposal = S.propose(result, tolerance)
    S.write(result, proposal, Path(out), ckpt.model_name)
    click.echo(f"baseline accuracy {result['baseline']:.4f}; proposed sparsity (drop ≤ {tolerance}): "
               + ",".join(f"{k}={v:g}" for k, v in proposal.items()))
    click.echo(f"wrote {Path(out) / 'sensitivity.png'} and sensitivity.json")


@click.command("export")
@click.argument("ckpt", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="torch.export program to write (.pt2)")
def export_cmd(ckpt, out):
    """Export a checkpoint as a torch.export program (eval, batch 1, zeros baked in)."""
    from .export import export_checkpoint

    _check_out_parent(Path(out))
    _check_not_input(Path(out), ckpt, "CKPT", "the exported program would replace the checkpoint it comes from "
                     f"(e.g. --out {Path(out).with_suffix('.pt2').name})")
    p = export_checkpoint(ckpt, out)
    click.echo(f"wrote {p}")


@click.command("report")
@click.argument("ckpt", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder for the PNGs")
def report_cmd(ckpt, out):
    """Figures: weight histograms, fc masks, remaining % vs the paper, accuracy over the schedule."""
    from .report import write_report

    c = C.load(ckpt)
    _check_out_dir(Path(out))
    for p in write_report(c, Path(out)):
        click.echo(f"wrote {p}")


def _fraction(v):
    """A metric as a JSON-safe fraction: a finite number in [0, 1] (0-d tensors and numpy scalars included), else None."""
    import math

    if torch.is_tensor(v) and v.numel() == 1:
        v = v.item()
    try:
        import numbers

        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return None
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and 0.0 <= v <= 1.0 else None


def _int_or_none(v):
    if torch.is_tensor(v) and v.numel() == 1:
        v = v.item()
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _layers_and_totals(rows: list[dict], weights0: dict | None) -> tuple[list[dict], dict]:
    """`prunec info`'s per-layer entries and totals from report's layer rows; `weights0`: each layer's weight count
    before pruning (dead-neuron removal may have shrunk it since), where known."""
    weights0 = weights0 or {}
    layers = []
    for r in rows:
        w = int(weights0.get(r["name"], r["weights"]))  # the dense layer's count, also after dead-neuron removal
        dense_macs = r["macs"] * w // r["weights"] if r["weights"] else 0
        layers.append({"name": r["name"], "weights": w, "nonzero": r["nonzero"], "remaining": r["nonzero"] / w if w else 0.0,
                       "shape": r["shape"], "macs": dense_macs, "macs_nonzero": r["macs_nonzero"],
                       "flops_remaining": r["macs_nonzero"] / dense_macs if dense_macs else 0.0})
    total = sum(x["weights"] for x in layers)
    nz = sum(x["nonzero"] for x in layers)
    macs, macs_nz = sum(x["macs"] for x in layers), sum(x["macs_nonzero"] for x in layers)
    return layers, {"params_total": total, "params_nonzero": nz, "compression": total / nz if nz else None,
                    "flops_remaining": macs_nz / macs if macs else None}


def info_dict(c: C.Checkpoint) -> dict:
    """The `prunec info --json` object. Every value is JSON-valid (no NaN/inf): an accuracy that is missing or is
    not a fraction in [0, 1] is null; a dense checkpoint is its own baseline."""
    from .report import layer_table

    layers, totals = _layers_and_totals(layer_table(c.model, c.input_shape), (c.schedule or {}).get("weights0"))
    m = c.metrics
    acc, base = _fraction(m.get("test_accuracy")), _fraction(m.get("baseline_test_accuracy"))
    if c.kind == "dense" and base is None:
        base = acc  # the dense model is the baseline it would be pruned from
    sched = c.schedule or {}
    dead = sched.get("dead_removed")
    dead = {str(k): int(v) for k, v in dead.items() if isinstance(v, int)} if isinstance(dead, dict) else None
    dataset = c.meta.get("dataset")
    return {
        "model": c.model_name,
        "kind": c.kind,
        "source": "checkpoint",
        "input_shape": list(c.input_shape),
        "params_total": totals["params_total"],
        "params_nonzero": totals["params_nonzero"],
        "compression": totals["compression"],
        "biases": sum(mod.bias.numel() for _, mod in models.prunable_layers(c.model) if mod.bias is not None),
        "flops_remaining": totals["flops_remaining"],
        "test_accuracy": acc,
        "baseline_test_accuracy": base,
        "dataset": dataset if isinstance(dataset, str) else None,
        "seed": _int_or_none(c.meta.get("seed")),
        "schedule_steps": _kept_steps(sched),
        "dead_neurons_removed": dead,
        "layers": layers,
    }


def _kept_steps(sched: dict) -> int | None:
    """The prune steps the saved model went through: a step --max-accuracy-drop undid is counted in the schedule's
    `step` (the run stopped there) but its model was not kept."""
    step = _int_or_none(sched.get("step"))
    hist = sched.get("history")
    if step is None or not isinstance(hist, list):
        return step
    return max(0, step - sum(1 for h in hist if isinstance(h, dict) and h.get("undone")))


def info_dict_pt2(path: str | os.PathLike) -> dict:
    """`info_dict` for an exported program (.pt2), e.g. of a model of the user's own, which has no checkpoint:
    the same keys, from the program as `prunec build` reads it (frontend: batch norm folded, which keeps the zeros).
    What only a checkpoint records is null: the accuracies (a .pt2 from `prunec export` carries the test accuracy,
    model name, dataset and each layer's size before pruning, which are used), seed, schedule, dead neurons.
    `biases` counts the bias values the build stores (batch norm folded into a conv gives it one)."""
    from . import frontend
    from .export import read_metadata
    from .report import graph_layer_table

    path = Path(path)
    try:
        g, loaded = frontend.load(path)
    except PrunecError as e:
        msg = re.sub(r"(; nothing was written|\s*Nothing was written\.)", "", str(e))  # a build's words; info writes nothing
        raise PrunecError(f"prunec info reads a .pt2 as `prunec build` does, and that refuses {path.name}: {msg}") from None
    try:
        meta = read_metadata(path)
    except Exception:  # noqa: BLE001 - the metadata is extra (a .pt2 from torch.export.save has none)
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    rows = graph_layer_table(g)
    layers, totals = _layers_and_totals(rows, loaded.weights0)
    name, dataset = meta.get("model_name"), meta.get("dataset")
    return {
        "model": name if isinstance(name, str) else None,
        "kind": None,  # dense / pruned / pruning: recorded in checkpoints only
        "source": "pt2",
        "input_shape": list(g.input_shape[1:]),
        "params_total": totals["params_total"],
        "params_nonzero": totals["params_nonzero"],
        "compression": totals["compression"],
        "biases": sum(r["bias"] for r in rows),
        "flops_remaining": totals["flops_remaining"],
        "test_accuracy": _fraction(meta.get("test_accuracy")),
        "baseline_test_accuracy": _fraction(meta.get("baseline_test_accuracy")),
        "dataset": dataset if isinstance(dataset, str) else None,
        "seed": None,
        "schedule_steps": None,
        "dead_neurons_removed": None,
        "layers": layers,
    }


@click.command("info")
@click.argument("ckpt", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
def info_cmd(ckpt, as_json):
    """Per-layer weights, remaining % and FLOP % (like the paper's Tables 2–3), compression and accuracy.

    CKPT is a prunec checkpoint or an exported program (.pt2, e.g. of a model of your own); a .pt2 has no
    accuracies (null) unless `prunec export` recorded them."""
    from .frontend import is_pt2

    pt2 = Path(ckpt).is_file() and is_pt2(Path(ckpt))
    d = info_dict_pt2(ckpt) if pt2 else info_dict(C.load(ckpt))
    if as_json:
        click.echo(json.dumps(d, allow_nan=False))
        return
    paper = PAPER_REMAINING.get(d["model"], {})
    head = (f"{Path(ckpt).name}: exported program" + (f" of {d['model']}" if d["model"] else "")
            + ", read as `prunec build` reads it (batch norm folded)") if pt2 else f"{d['model']} ({d['kind']})"
    width = max([14] + [len(x["name"]) + 2 for x in d["layers"]])
    lines = [head, f"{'layer':<{width}}{'weights':>10}{'nonzero':>10}{'remaining':>11}{'FLOP%':>8}{'paper':>8}"]
    for x in d["layers"]:
        p = f"{100 * paper[x['name']]:.0f}%" if x["name"] in paper else "-"
        lines.append(f"{x['name']:<{width}}{x['weights']:>10}{x['nonzero']:>10}{100 * x['remaining']:>10.1f}%{100 * x['flops_remaining']:>7.1f}%{p:>8}")
    kept = 100 * d["params_nonzero"] / d["params_total"] if d["params_total"] else 0.0
    lines.append(f"{'total':<{width}}{d['params_total']:>10}{d['params_nonzero']:>10}{kept:>10.1f}%"
                 f"{100 * (d['flops_remaining'] or 0):>7.1f}%")
    ratio = (f"{d['compression']:.2f}x" if d["compression"] is not None else
             "- (every weight pruned)" if d["params_total"] else "- (no Conv/Linear weights)")
    lines.append(f"compression {ratio} (weights of Conv/Linear layers; biases, {d['biases']}, not counted)")
    acc, base = d["test_accuracy"], d["baseline_test_accuracy"]
    if acc is not None:
        lines.append(f"test accuracy {100 * acc:.2f}%" + (f" (dense baseline {100 * base:.2f}%, {100 * (acc - base):+.2f} pp)" if base is not None else ""))
    elif pt2:
        lines.append("test accuracy unknown: a .pt2 records none unless `prunec export` wrote it from a checkpoint")
    click.echo("\n".join(lines))


COMMANDS = [train_cmd, prune_cmd, sensitivity_cmd, export_cmd, report_cmd, info_cmd]
