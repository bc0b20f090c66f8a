"""`prunec build --skip-zero-inputs`: fc layers stored column by column (the relative-indexed CSR of W^T), whose
kernels skip the inputs that are zero (docs/BUILD.md "Skipping zero inputs"). Which layers each setting picks, the
manifest, the outputs (equal to the row-major build's and to PyTorch, on the host and under QEMU on Cortex-M4),
and the refusal of names that are not fc layers. The kernels themselves: kernel_harness (fc_rcsc cases with 0, 60
and 100 % zero inputs) and runtime_c/test/kernel_tester.c; their byte layout: test_format_spec.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import build_models as bm
from prunec import build as B
from prunec import frontend, models, targets
from prunec.cli import main
from prunec.errors import PrunecError


class Net(nn.Module):
    """conv -> relu -> max pool -> fc1 -> relu -> fc2 -> fc3 (fc3's input is not a ReLU's), and fc4 after a sigmoid."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(4 * 3 * 3, 40)
        self.fc2 = nn.Linear(40, 30)
        self.fc3 = nn.Linear(30, 20)
        self.fc4 = nn.Linear(20, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x))).flatten(1)
        x = torch.relu(self.fc1(x))
        x = self.fc3(self.fc2(x))
        return self.fc4(torch.sigmoid(x))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("sz")
    torch.manual_seed(0)
    m = bm.prune_random(Net().eval(), seed=1, lo=0.2, hi=0.5)
    return m, bm.export(m, (2, 8, 8), d / "net.pt2")


def _graph(pt2):
    return frontend.load(pt2)[0]


def test_which_layers(net):
    _, pt2 = net
    g = _graph(pt2)
    assert B.zero_skipping_layers(g, "none") == frozenset() == B.zero_skipping_layers(g, None)
    assert B.zero_skipping_layers(g, "relu") == {"fc1", "fc2"}  # fc1: relu then max pool; fc2: relu
    assert B.zero_skipping_layers(g, "all") == {"fc1", "fc2", "fc3", "fc4"}
    assert B.zero_skipping_layers(g, " fc3, fc4 ") == {"fc3", "fc4"}


@pytest.mark.parametrize("spec,words", [("conv", ["'conv'", "fc1, fc2, fc3, fc4"]), ("fc9", ["'fc9'"]),
                                        (",", ["(empty)"]), ("rows", ["'rows'", "none, relu, auto, all"])])
def test_unknown_layer_is_refused_with_the_choices(net, tmp_path, spec, words):
    _, pt2 = net
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "b"), "--skip-zero-inputs", spec])
    assert r.exit_code != 0 and not (tmp_path / "b").exists()
    for w in words:
        assert w in r.output, r.output


def test_zoo_models_relu_picks(tmp_path):
    """LeNet-300-100: fc2 and fc3 (fc1 reads the image); LeNet-5: fc2 only (fc1 reads a max pool of a conv without
    ReLU, Caffe's LeNet)."""
    for name, want in (("lenet300", {"fc2", "fc3"}), ("lenet5", {"fc2"})):
        m = models.create(name).eval()
        pt2 = bm.export(m, models.input_shape(name), tmp_path / f"{name}.pt2")
        assert B.zero_skipping_layers(_graph(pt2), "relu") == want, name


def _inputs(n=16):
    x = bm.random_inputs((2, 8, 8), n=n, seed=3)
    x[: n // 2] = np.maximum(x[: n // 2], 0)  # half the samples with many zero pixels too
    return x


def test_host_build_equals_the_row_major_one_and_pytorch(net, tmp_path):
    m, pt2 = net
    rows = B.build(pt2, "host", tmp_path / "rows")
    cols = B.build(pt2, "host", tmp_path / "cols", skip_zero_inputs="all")
    by = {l["name"]: l for l in cols.manifest["layers"]}
    for n in ("fc1", "fc2", "fc3", "fc4"):
        assert by[n]["orientation"] == "columns" and by[n]["kernel"] == "prunec_f32_fc_rcsc__portable"
        assert by[n]["nonzero"] == int(np.count_nonzero(m.get_submodule(n).weight.detach().numpy()))
    assert by["conv"]["orientation"] == "rows"
    assert {l["name"]: l["orientation"] for l in rows.manifest["layers"] if l["format"] == "rcsr"} == {
        "conv": "rows", "fc1": "rows", "fc2": "rows", "fc3": "rows", "fc4": "rows"}
    assert "stored by columns: zero inputs skipped" in (tmp_path / "cols" / "net.c").read_text()
    from prunec import bench
    t = bench.table(bench.bench(tmp_path / "cols", reps=1, target_s=0.001))
    assert sum("rcsr 8b cols" in line and "fc_rcsc" in line for line in t.splitlines()) == 4, t
    x = _inputs()
    a, b = bm.outputs(tmp_path / "rows", x), bm.outputs(tmp_path / "cols", x)
    # the portable kernels sum each output in the same order: equal floats (a -0.0 sum may stay -0.0)
    assert np.array_equal(a, b)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(b, want, rtol=1e-5, atol=1e-5)


def test_verify_on_the_host_and_on_cortex_m4_and_m55(net, tmp_path):
    m, pt2 = net
    x = _inputs(8)
    np.save(tmp_path / "x.npy", x)
    runs = [("host", "relu")]
    runs += [(t, "all") for t in ("cortex-m4", "cortex-m55") if not targets.get(t).missing_tools()]
    for target, spec in runs:
        out = tmp_path / target
        r = CliRunner().invoke(main, ["build", str(pt2), "-t", target, "--out", str(out), "--skip-zero-inputs", spec])
        assert r.exit_code == 0, r.output
        man = json.loads((out / "manifest.json").read_text())
        kern = {l["name"]: l["kernel"] for l in man["layers"]}
        if target != "host":  # the ISA's kernel (8-bit codes here): Cortex-M4 scalar, Cortex-M55 Helium
            isa = "cortexm" if target == "cortex-m4" else "mve"
            assert {kern[n] for n in ("fc1", "fc2", "fc3", "fc4")} == {f"prunec_f32_fc_rcsc__{isa}"}, kern
        r = CliRunner().invoke(main, ["verify", str(out), "--inputs", str(tmp_path / "x.npy"), "--json"])
        assert r.exit_code == 0, r.output
        rep = json.loads(r.output)
        assert rep["ok"] and rep["n"] == 8 and rep["max_rel_err"] < 1e-5, rep


def test_index_widths_and_row_alignment_apply(net, tmp_path):
    """--index-bits picks the width of W^T's gaps; a column-major layer is unpadded unless --row-align says so
    (x86_64-avx2 pads its row-major fc rows to 8)."""
    _, pt2 = net
    r = B.build(pt2, "x86_64-avx2", tmp_path / "a", skip_zero_inputs="fc2", fc_layout="rcsr")
    by = {l["name"]: l for l in r.manifest["layers"]}
    assert by["fc2"]["row_align"] == 1 and by["fc1"]["row_align"] == 8
    r = B.build(pt2, "host", tmp_path / "b", skip_zero_inputs="fc2", index_bits=["4"], row_align=2)
    by = {l["name"]: l for l in r.manifest["layers"]}
    assert by["fc2"]["row_align"] == 2 and by["fc2"]["index_bits"] == 4
    x = _inputs(4)
    np.testing.assert_allclose(bm.outputs(tmp_path / "b", x), bm.outputs(tmp_path / "a", x), rtol=1e-5, atol=1e-5)


def test_bad_spec_in_python_api(net):
    _, pt2 = net
    with pytest.raises(PrunecError, match="no fully connected layer named 'pool'"):
        B.zero_skipping_layers(_graph(pt2), "pool")


def test_relu_leaves_out_layers_with_few_entries_per_input(tmp_path):
    """A ReLU-fed fc layer whose columns average under RELU_MIN_PER_INPUT nonzeros stays row-major under 'relu' (the
    per-input cost outweighs what is skipped there); 'all' and its name still store it by columns."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 10)).eval()
    with torch.no_grad():
        m[2].weight[torch.rand(40, 64) < 0.9] = 0  # ~4 per input
        m[4].weight[torch.rand(10, 40) < 0.1] = 0  # ~9 per input
    g = _graph(bm.export(m, (16,), tmp_path / "m.pt2"))
    fcs = [n for n in g.nodes if n.op == "fc"]
    per_input = {n.name: np.count_nonzero(n.weight) / n.weight.shape[1] for n in fcs}
    want = {n for n, v in per_input.items() if v >= B.RELU_MIN_PER_INPUT and n != fcs[0].name}
    assert B.zero_skipping_layers(g, "relu") == want == {fcs[2].name}, per_input
    assert B.zero_skipping_layers(g, "all") == {n.name for n in fcs}


def test_a_target_sets_its_own_threshold(net, tmp_path, monkeypatch):
    """zero_skip_min_per_input (NEON targets: 20): Net's fc2 (40 -> 30 at 20-50 %: under 20 per input) is stored by
    columns for cortex-m4 but not for aarch64-neon; a bad value in a target file is refused by name."""
    m, pt2 = net
    per_input = np.count_nonzero(m.fc2.weight.detach().numpy()) / 40
    assert 8 <= per_input < 20, per_input
    assert targets.get("aarch64-neon").extra["zero_skip_min_per_input"] == 20
    g = _graph(pt2)
    assert "fc2" in B.zero_skipping_layers(g, "relu", 8) and "fc2" not in B.zero_skipping_layers(g, "relu", 20)
    files, man, _ = B.prepare(pt2, "aarch64-neon", skip_zero_inputs="relu")
    # by rows: relative-indexed CSR or the windowed layout, or dense where the windows would outweigh the matrix
    fc2 = {l["name"]: l for l in man["layers"]}["fc2"]
    assert (fc2["format"], fc2["orientation"]) in (("rcsr", "rows"), ("wsell", None), ("dense", None)), fc2
    files, man, _ = B.prepare(pt2, "cortex-m4", skip_zero_inputs="relu")
    assert {l["name"]: l["orientation"] for l in man["layers"]}["fc2"] == "columns"
    bad = tmp_path / "t"
    bad.mkdir()
    text = (targets.targets_dir() / "host.toml").read_text().replace('name = "host"', 'name = "host-z"')
    (bad / "host-z.toml").write_text('zero_skip_min_per_input = "many"\n' + text)  # top level: before any table
    monkeypatch.setenv(targets.TARGETS_ENV, str(bad))
    with pytest.raises(PrunecError, match="zero_skip_min_per_input must be a number"):
        B.prepare(pt2, "host-z", skip_zero_inputs="relu")


def _hook_shares(m, x):
    """Each fc layer's input zero share on samples x, by forward hooks on the PyTorch modules."""
    seen = {}

    def hook(name):
        def f(mod, args, out):
            z, n = seen.get(name, (0, 0))
            seen[name] = (z + int((args[0] == 0).sum()), n + args[0].numel())
        return f
    hs = [m.get_submodule(n).register_forward_hook(hook(n)) for n in ("fc1", "fc2", "fc3", "fc4")]
    with torch.no_grad():
        for s in x:
            m(torch.from_numpy(s[None]))
    for h in hs:
        h.remove()
    return {n: z / c for n, (z, c) in seen.items()}


def test_auto_measures_the_input_zero_shares_on_the_calibration_samples(net, tmp_path):
    """--skip-zero-inputs auto --calibration X.npy: each fc layer's share of zero inputs, from the PyTorch program
    run on the samples, equals what hooks on the modules see; the manifest records it (null without calibration)."""
    m, pt2 = net
    x = _inputs(12)
    np.save(tmp_path / "cal.npy", x)
    want = _hook_shares(m, x)
    got = B.input_zero_shares(frontend.load(pt2)[1].program, _graph(pt2), x)
    assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-12 for k in want), (got, want)
    assert want["fc3"] == want["fc4"] == 0.0 and want["fc2"] > 0.3, want
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "b"), "--skip-zero-inputs", "auto",
                                  "--calibration", str(tmp_path / "cal.npy")])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    layers = {l["name"]: l for l in man["layers"]}
    for n, share in want.items():
        assert layers[n]["input_zero_share"] == pytest.approx(share, abs=1e-6)
        assert layers[n]["orientation"] == ("columns" if share >= 0.1 else "rows"), (n, share)  # host: 0.1
    assert layers["conv"]["input_zero_share"] is None
    plain = B.build(pt2, "host", tmp_path / "c").manifest
    assert {l["input_zero_share"] for l in plain["layers"]} == {None}


def test_auto_follows_each_targets_break_even(net, tmp_path):
    """The same measured share picks a layer on a target whose break-even it reaches and not on another:
    zero_skip_break_even is 0.25 on cortex-m55, 0.4 on cortex-m4, 0.55 on x86_64-avx2."""
    m, pt2 = net
    x = _inputs(12)
    share = _hook_shares(m, x)["fc2"]
    g = _graph(pt2)
    shares = {"fc2": share}
    assert "fc2" in B.zero_skipping_layers(g, "auto", 8, shares, share)
    assert "fc2" not in B.zero_skipping_layers(g, "auto", 8, shares, share + 1e-9)
    np.save(tmp_path / "cal.npy", x)
    for t in ("cortex-m55", "cortex-m4", "x86_64-avx2"):
        be = targets.get(t).extra["zero_skip_break_even"]
        _, man, _ = B.prepare(pt2, t, skip_zero_inputs="auto", calibration=tmp_path / "cal.npy", fc_layout="rcsr")
        orient = {l["name"]: l["orientation"] for l in man["layers"]}["fc2"]
        assert orient == ("columns" if share >= be else "rows"), (t, be, share)


@pytest.mark.parametrize("args,says", [
    (["--skip-zero-inputs", "auto"], "give them with --calibration X.npy"),
    (["--calibration", "{cal}"], "add --skip-zero-inputs auto, or leave --calibration out"),
    (["--skip-zero-inputs", "auto", "--calibration", "{bad}"], "--calibration {bad} has shape (1, 8, 8, 2)"),
    (["--skip-zero-inputs", "auto", "--calibration", "{missing}"], "cannot read --calibration"),
])
def test_auto_and_calibration_refusals(net, tmp_path, args, says):
    _, pt2 = net
    np.save(tmp_path / "cal.npy", _inputs(2))
    np.save(tmp_path / "bad.npy", np.zeros((1, 8, 8, 2), np.float32))  # channels last: not the model's layout
    fill = {"cal": str(tmp_path / "cal.npy"), "bad": str(tmp_path / "bad.npy"), "missing": str(tmp_path / "no.npy")}
    r = CliRunner().invoke(main, ["build", str(pt2), "--out", str(tmp_path / "b"), *(a.format(**fill) for a in args)])
    assert r.exit_code != 0 and not (tmp_path / "b").exists()
    assert says.format(**fill) in r.output, r.output


def test_column_major_layers_at_odd_widths_keep_the_odd_width_decoders(tmp_path):
    """prunec_config.h gets PRUNEC_RCSR_ODD_WIDTHS 0 only when no relative-indexed layer needs another width than
    4/8/16: layers stored by columns (--skip-zero-inputs) count too, or their kernel (which honours the macro) would
    fill their output with NaN. Every fc layer here is column-major at 5 bits."""
    import build_models as bm
    from prunec import build as B

    pt2, x, want = bm.sparse_mlp_case(tmp_path, (64, 48, 10), 0.3, seed=2)
    out = tmp_path / "b"
    man = B.build(pt2, "host", out, name="cm", index_bits=[5], skip_zero_inputs="all").manifest
    fcs = [l for l in man["layers"] if l["op"] == "fc"]
    assert fcs and all(l["orientation"] == "columns" and l["index_bits"] == 5 for l in fcs), fcs
    assert "#define PRUNEC_RCSR_ODD_WIDTHS 1" in (out / "runtime" / "include" / "prunec_config.h").read_text()
    got = bm.outputs(out, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
