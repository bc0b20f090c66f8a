"""End to end on every cross target: a small pruned model is built (`prunec build`) and verified against
PyTorch (`prunec verify`) under QEMU on a subset of inputs; bare-metal builds record their section sizes.

Models: LeNet-300-100 (sparse fc) on every target and LeNet-5 (sparse conv + fc) on one target per kernel
family, random weights magnitude-pruned to the paper's densities (verification compares the C with
PyTorch, so no training is needed). Fashion-MNIST test images when the Debian package dataset-fashion-mnist
is installed, else random inputs. The full runs (10,000 images) are benchmarks/cross_verify_full.py.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from prunec import targets

pytestmark = pytest.mark.cross

torch = pytest.importorskip("torch")

# (target, model, images)
CASES = [
    ("x86_64-avx2", "lenet300", 200),
    ("aarch64-neon", "lenet300", 200),
    ("armv7a-neon", "lenet300", 200),
    ("cortex-m4", "lenet300", 100),
    ("cortex-m7", "lenet300", 100),
    ("cortex-m55", "lenet300", 100),
    ("cortex-m33", "lenet300", 100),
    ("aarch64-neon", "lenet5", 100),
    ("armv7a-neon", "lenet5", 50),
    ("cortex-m4", "lenet5", 50),
    ("cortex-m55", "lenet5", 50),
    ("cortex-m33", "lenet5", 50),
]
DENSITY = {"lenet300": 0.08, "lenet5": 0.2}


@functools.lru_cache(maxsize=None)
def _has_fashion_mnist() -> bool:
    try:
        from prunec import data

        data.load_fashion_mnist()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from prunec import export, models as zoo

    out = {}
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    for name, dens in DENSITY.items():
        m = zoo.create(name).eval()
        with torch.no_grad():
            for _, layer in zoo.prunable_layers(m):
                w = layer.weight
                thr = w.abs().flatten().kthvalue(int((1 - dens) * w.numel())).values
                w.mul_((w.abs() > thr).float())
        p = d / f"{name}.pt2"
        torch.export.save(export.export_program(m, zoo.input_shape(name)), str(p))
        out[name] = p
    return out


@pytest.mark.parametrize("target,model,n", CASES, ids=[f"{t}-{m}" for t, m, _ in CASES])
def test_build_and_verify_under_qemu(target, model, n, models, tmp_path):
    from prunec.build import build
    from prunec.verify import verify

    t = targets.get(target)
    missing = t.missing_tools()
    if missing:
        pytest.skip(", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in missing))
    out = tmp_path / "b"
    r = build(models[model], target, out, name=model)
    isa = t.isa_for("fc_rcsr")[0]  # the target's own sparse fc kernel is used, not the portable fallback
    # (x86 with AVX-512 stores small fc layers in the blocked sliced layout: its AVX-512 kernel then, never portable)
    ok = {f"prunec_f32_fc_rcsr__{isa}"} | ({"prunec_f32_fc_bsell__avx512x4"} if "avx512x4" in t.isa else set())
    # (aarch64-neon stores LeNet-size fc layers in the windowed sliced layout: its NEON kernel then)
    ok |= {f"prunec_f32_fc_wsell__{isa}"} if t.extra.get("fc_wsell_max_bytes") else set()
    assert ok & set(r.manifest["kernels"]), r.manifest["kernels"]
    assert not any(k.startswith("prunec_f32_fc_") and k.endswith("__portable") for k in r.manifest["kernels"])
    kw = {"data": "fashion-mnist"} if _has_fashion_mnist() else {"random": n}
    manifest_bytes = (out / "manifest.json").read_bytes()
    rep = verify(out, limit=n, **kw)
    assert rep.ok and rep.n == n and rep.top1_disagree == rep.ties, rep.text()
    assert (out / "manifest.json").read_bytes() == manifest_bytes  # verifying never rewrites the build
    if t.runner == "qemu-system":
        size = json.loads(manifest_bytes)["size"]  # measured by `prunec build` itself
        assert size["measured"], size
        lib = size["library"]
        weights = r.manifest["totals"]["weights_bytes"]
        assert lib["rodata"] >= weights, size  # weights are const: .rodata (flash), not .data
        assert lib["data"] == 0 and lib["text"] > 0, size
        from prunec import runners
        assert runners.measure_size(out, r.manifest, t)["verification_image"]["text"] > lib["text"]
        newlib = {"printf", "malloc", "fopen", "fwrite", "free", "_sbrk", "puts"}
        assert not newlib & set(size.get("external_symbols", [])), size  # firmware-ready: no newlib beyond libm


def test_builds_leave_out_the_odd_width_decoders_they_do_not_need(models, tmp_path):
    """prunec build writes the build's own runtime/include/prunec_config.h: PRUNEC_RCSR_ODD_WIDTHS 0 when every
    layer uses 4, 8 or 16 bits (the default widths), 1 when one does not (--index-bits 1-16). On Cortex-M4 the
    default build's library is then ~2 KB of code smaller, and both builds compute what PyTorch computes."""
    from prunec.build import build
    from prunec.verify import verify

    t = targets.get("cortex-m4")
    missing = t.missing_tools()
    if missing:
        pytest.skip(", ".join(f"{exe} not installed (Debian package {pkg})" for exe, pkg in missing))
    kw = {"data": "fashion-mnist"} if _has_fashion_mnist() else {"random": 20}
    text, config = {}, {}
    for tag, bits in (("fast", None), ("any", ["1-16"])):
        out = tmp_path / tag
        r = build(models["lenet5"], "cortex-m4", out, name="lenet5", index_bits=bits)
        widths = {l["index_bits"] for l in r.manifest["layers"] if l["format"] == "rcsr"}
        config[tag] = (out / "runtime" / "include" / "prunec_config.h").read_text()
        text[tag] = r.manifest["size"]["library"]["text"]
        rep = verify(out, limit=20, **kw)
        assert rep.ok and rep.n == 20, (tag, rep.text())
        if tag == "fast":
            assert widths <= {4, 8, 16}
        else:
            assert widths - {4, 8, 16}, widths  # the size-first widths of this model include odd ones
    assert "#define PRUNEC_RCSR_ODD_WIDTHS 0" in config["fast"] and "#define PRUNEC_RCSR_ODD_WIDTHS 1" in config["any"]
    assert text["any"] - text["fast"] > 1500, text
