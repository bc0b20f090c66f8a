#!/usr/bin/env python3
"""A prunec LeNet (LeNet-300-100 or Caffe LeNet-5, dense or pruned, shrunk layers included) as a float32
`.tflite` flatbuffer, written directly with the `flatbuffers` Builder and the `tflite` package's schema classes,
and run with LiteRT (`ai_edge_litert`, the TFLite runtime; fp32 graphs go to its default XNNPACK delegate).

This stands in for the litert-torch converter, which pulls several hundred MB (JAX, transformers, ...): the
three packages used here (ai-edge-litert, tflite, flatbuffers) are ~22 MB of wheels.

Graph: activations NHWC, input [1, H, W, C] (for LeNet's C = 1 the same memory as NCHW [1, 1, 28, 28]).
  nn.Conv2d   -> CONV_2D, weights OHWI, VALID padding (padding=0 only), stride as the module's, dilation 1
  nn.MaxPool2d -> MAX_POOL_2D, VALID (floor, as PyTorch's default ceil_mode=False)
  nn.Flatten  -> RESHAPE to [1, H*W*C]; the next Linear's input columns are permuted from PyTorch's (C, H, W)
                 flatten order to NHWC's (H, W, C) order, so no TRANSPOSE is needed
  nn.Linear   -> FULLY_CONNECTED, weights [out, in]
  nn.ReLU     -> fused into the preceding CONV_2D / FULLY_CONNECTED
Weights are the module's fp32 values exactly, zeros included: TFLite/XNNPACK run them dense.

    .venv/bin/python benchmarks/tflite_export.py CKPT.pt OUT.tflite [--verify N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "toolchain"))


def available() -> str | None:
    """None if ai_edge_litert, tflite and flatbuffers import; else what is missing (for a printed note)."""
    missing = []
    for mod in ("ai_edge_litert.interpreter", "tflite", "flatbuffers"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod.split(".")[0])
    return None if not missing else ("not installed: " + ", ".join(missing) +
                                     " (pip install -e '.[bench]' or pip install ai-edge-litert tflite flatbuffers)")


# ------------------------------------------------------------------------------------------------ export

def _schema(*names):
    """The tflite package's schema modules (`from tflite import X` gives the class X: the package re-exports
    every module's contents), whose module-level Start/AddX/End functions build the tables."""
    import importlib
    return tuple(importlib.import_module(f"tflite.{n}") for n in names)


class _Graph:
    """Tensors, constant buffers and operators of one subgraph, serialised by `finish()`."""

    def __init__(self):
        self.buffers: list[bytes] = [b""]  # buffer 0: the empty buffer, by convention for activations
        self.tensors: list[tuple[str, list[int], int, int]] = []  # name, shape, TensorType, buffer index
        self.ops: list[tuple[int, list[int], list[int], int, object]] = []  # builtin, inputs, outputs, options type, options fn
        self.opcodes: list[int] = []

    def tensor(self, name: str, shape, ttype: int | None = None, data: np.ndarray | None = None) -> int:
        from tflite.TensorType import TensorType

        buf = 0
        if data is not None:
            assert list(data.shape) == list(shape), (name, data.shape, shape)
            self.buffers.append(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes())
            buf = len(self.buffers) - 1
        self.tensors.append((name, [int(s) for s in shape], TensorType.FLOAT32 if ttype is None else ttype, buf))
        return len(self.tensors) - 1

    def op(self, builtin: int, inputs: list[int], outputs: list[int], options_type: int = 0, options=None) -> None:
        if builtin not in self.opcodes:
            self.opcodes.append(builtin)
        self.ops.append((builtin, inputs, outputs, options_type, options))

    def finish(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        import flatbuffers

        Buffer, Model, Operator, OperatorCode, SubGraph, Tensor = _schema(
            "Buffer", "Model", "Operator", "OperatorCode", "SubGraph", "Tensor")

        b = flatbuffers.Builder(1024 + sum(len(x) for x in self.buffers))

        def int_vector(start, values):
            start(b, len(values))
            for v in reversed(values):
                b.PrependInt32(v)
            return b.EndVector()

        def table_vector(start, offsets):
            start(b, len(offsets))
            for o in reversed(offsets):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()

        buf_offs = []
        for data in self.buffers:
            data_off = None
            if data:
                b.StartVector(1, len(data), 16)  # 16-byte aligned weights, as the TFLite converter writes them
                b.head -= len(data)
                b.Bytes[b.head:b.head + len(data)] = data
                data_off = b.EndVector()
            Buffer.Start(b)
            if data_off is not None:
                Buffer.AddData(b, data_off)
            buf_offs.append(Buffer.End(b))

        ten_offs = []
        for name, shape, ttype, buf in self.tensors:
            name_off = b.CreateString(name)
            shape_off = int_vector(Tensor.StartShapeVector, shape)
            Tensor.Start(b)
            Tensor.AddShape(b, shape_off)
            Tensor.AddType(b, ttype)
            Tensor.AddBuffer(b, buf)
            Tensor.AddName(b, name_off)
            ten_offs.append(Tensor.End(b))

        op_offs = []
        for builtin, ins, outs, opt_type, opt_fn in self.ops:
            opt_off = opt_fn(b) if opt_fn is not None else None
            ins_off = int_vector(Operator.StartInputsVector, ins)
            outs_off = int_vector(Operator.StartOutputsVector, outs)
            Operator.Start(b)
            Operator.AddOpcodeIndex(b, self.opcodes.index(builtin))
            Operator.AddInputs(b, ins_off)
            Operator.AddOutputs(b, outs_off)
            if opt_off is not None:
                Operator.AddBuiltinOptionsType(b, opt_type)
                Operator.AddBuiltinOptions(b, opt_off)
            op_offs.append(Operator.End(b))

        tensors_vec = table_vector(SubGraph.StartTensorsVector, ten_offs)
        ins_vec = int_vector(SubGraph.StartInputsVector, inputs)
        outs_vec = int_vector(SubGraph.StartOutputsVector, outputs)
        ops_vec = table_vector(SubGraph.StartOperatorsVector, op_offs)
        sg_name = b.CreateString("main")
        SubGraph.Start(b)
        SubGraph.AddTensors(b, tensors_vec)
        SubGraph.AddInputs(b, ins_vec)
        SubGraph.AddOutputs(b, outs_vec)
        SubGraph.AddOperators(b, ops_vec)
        SubGraph.AddName(b, sg_name)
        sg_off = SubGraph.End(b)

        code_offs = []
        for builtin in self.opcodes:
            OperatorCode.Start(b)
            OperatorCode.AddDeprecatedBuiltinCode(b, min(builtin, 127))  # int8 field; 127 = "see builtin_code"
            OperatorCode.AddBuiltinCode(b, builtin)
            OperatorCode.AddVersion(b, 1)
            code_offs.append(OperatorCode.End(b))

        codes_vec = table_vector(Model.StartOperatorCodesVector, code_offs)
        sgs_vec = table_vector(Model.StartSubgraphsVector, [sg_off])
        bufs_vec = table_vector(Model.StartBuffersVector, buf_offs)
        desc = b.CreateString(description)
        Model.Start(b)
        Model.AddVersion(b, 3)
        Model.AddOperatorCodes(b, codes_vec)
        Model.AddSubgraphs(b, sgs_vec)
        Model.AddDescription(b, desc)
        Model.AddBuffers(b, bufs_vec)
        b.Finish(Model.End(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _act(fused: bool) -> int:
    from tflite.ActivationFunctionType import ActivationFunctionType
    return ActivationFunctionType.RELU if fused else ActivationFunctionType.NONE


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def export(model, input_shape=(1, 28, 28), path: str | Path | None = None, description: str = "prunec") -> bytes:
    """The model (a prunec LeNet: its direct children in forward order, of the kinds listed in the module
    docstring) as a float32 .tflite flatbuffer; written to `path` if given. Shapes are read from the module
    by running it on a dummy input, so shrunk (dead-neuron-removed) layers export as they are."""
    import torch
    from torch import nn

    Conv2DOptions, FullyConnectedOptions, Pool2DOptions, ReshapeOptions = _schema(
        "Conv2DOptions", "FullyConnectedOptions", "Pool2DOptions", "ReshapeOptions")
    from tflite.BuiltinOperator import BuiltinOperator as Op
    from tflite.BuiltinOptions import BuiltinOptions as Opt
    from tflite.Padding import Padding
    from tflite.TensorType import TensorType

    model = model.eval()
    children = list(model.named_children())
    g = _Graph()
    x = torch.zeros((1, *input_shape))

    def nhwc(t: torch.Tensor) -> list[int]:  # the TFLite shape of a torch activation
        return [t.shape[0], *t.shape[2:], t.shape[1]] if t.dim() == 4 else list(t.shape)

    cur = g.tensor("input", nhwc(x))
    graph_in = cur
    flat_chw = None  # (C, H, W) of the last Flatten's input, for the next Linear's column order
    i = 0
    with torch.no_grad():
        while i < len(children):
            name, m = children[i]
            y = m(x)
            relu = i + 1 < len(children) and isinstance(children[i + 1][1], nn.ReLU)
            if isinstance(m, nn.Conv2d):
                if (m.groups != 1 or _pair(m.dilation) != (1, 1) or _pair(m.padding) != (0, 0)
                        or m.padding_mode != "zeros"):
                    raise NotImplementedError(f"{name}: only groups=1, dilation 1, padding 0 (VALID) convolutions")
                sh, sw = _pair(m.stride)
                w = m.weight.detach().float().permute(0, 2, 3, 1).contiguous().numpy()  # OIHW -> OHWI
                bias = (m.bias.detach().float().numpy() if m.bias is not None
                        else np.zeros(w.shape[0], np.float32))
                wt = g.tensor(f"{name}.weight", w.shape, data=w)
                bt = g.tensor(f"{name}.bias", bias.shape, data=bias)
                yt = g.tensor(name + ("+relu" if relu else ""), nhwc(y))

                def opts(b, sh=sh, sw=sw, relu=relu):
                    Conv2DOptions.Start(b)
                    Conv2DOptions.AddPadding(b, Padding.VALID)
                    Conv2DOptions.AddStrideH(b, sh)
                    Conv2DOptions.AddStrideW(b, sw)
                    Conv2DOptions.AddDilationHFactor(b, 1)
                    Conv2DOptions.AddDilationWFactor(b, 1)
                    Conv2DOptions.AddFusedActivationFunction(b, _act(relu))
                    return Conv2DOptions.End(b)
                g.op(Op.CONV_2D, [cur, wt, bt], [yt], Opt.Conv2DOptions, opts)
            elif isinstance(m, nn.MaxPool2d):
                kh, kw = _pair(m.kernel_size)
                sh, sw = _pair(m.stride if m.stride is not None else m.kernel_size)
                if _pair(m.padding) != (0, 0) or _pair(m.dilation) != (1, 1) or m.ceil_mode:
                    raise NotImplementedError(f"{name}: only padding 0, dilation 1, ceil_mode=False max pooling")
                yt = g.tensor(name, nhwc(y))

                def opts(b, kh=kh, kw=kw, sh=sh, sw=sw):
                    Pool2DOptions.Start(b)
                    Pool2DOptions.AddPadding(b, Padding.VALID)
                    Pool2DOptions.AddStrideH(b, sh)
                    Pool2DOptions.AddStrideW(b, sw)
                    Pool2DOptions.AddFilterHeight(b, kh)
                    Pool2DOptions.AddFilterWidth(b, kw)
                    Pool2DOptions.AddFusedActivationFunction(b, _act(False))
                    return Pool2DOptions.End(b)
                g.op(Op.MAX_POOL_2D, [cur], [yt], Opt.Pool2DOptions, opts)
                relu = False
            elif isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    raise NotImplementedError(f"{name}: only Flatten(1, -1)")
                flat_chw = tuple(x.shape[1:]) if x.dim() == 4 else None
                new_shape = [int(s) for s in y.shape]
                st = g.tensor(f"{name}.shape", [len(new_shape)], TensorType.INT32,
                              data=np.array(new_shape, np.int32))
                yt = g.tensor(name, new_shape)

                def opts(b, new_shape=new_shape):
                    ReshapeOptions.StartNewShapeVector(b, len(new_shape))
                    for v in reversed(new_shape):
                        b.PrependInt32(v)
                    vec = b.EndVector()
                    ReshapeOptions.Start(b)
                    ReshapeOptions.AddNewShape(b, vec)
                    return ReshapeOptions.End(b)
                g.op(Op.RESHAPE, [cur, st], [yt], Opt.ReshapeOptions, opts)
                relu = False
            elif isinstance(m, nn.Linear):
                w = m.weight.detach().float().numpy()
                if flat_chw is not None:  # PyTorch's (C, H, W) columns -> NHWC's (H, W, C)
                    c, h, ww = flat_chw
                    w = w.reshape(w.shape[0], c, h, ww).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
                    flat_chw = None
                w = np.ascontiguousarray(w, np.float32)
                bias = (m.bias.detach().float().numpy() if m.bias is not None
                        else np.zeros(w.shape[0], np.float32))
                wt = g.tensor(f"{name}.weight", w.shape, data=w)
                bt = g.tensor(f"{name}.bias", bias.shape, data=bias)
                yt = g.tensor(name + ("+relu" if relu else ""), list(y.shape))

                def opts(b, relu=relu):
                    FullyConnectedOptions.Start(b)
                    FullyConnectedOptions.AddFusedActivationFunction(b, _act(relu))
                    FullyConnectedOptions.AddKeepNumDims(b, False)
                    return FullyConnectedOptions.End(b)
                g.op(Op.FULLY_CONNECTED, [cur, wt, bt], [yt], Opt.FullyConnectedOptions, opts)
            elif isinstance(m, nn.Dropout):  # identity in inference
                x = y
                i += 1
                continue
            else:
                raise NotImplementedError(f"{name}: {type(m).__name__} has no .tflite mapping here")
            if relu:  # the ReLU module was fused into this op: step over it
                y = children[i + 1][1](y)
                i += 1
            cur, x = yt, y
            i += 1
    if not g.ops:
        raise NotImplementedError("the model has no exportable layers")
    with torch.no_grad():  # the walk over the children must be the model's forward
        ref = model(torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0)))
    if tuple(ref.shape[1:]) != tuple(x.shape[1:]):
        raise NotImplementedError("the model's forward is not its children in order")
    out = g.finish([graph_in], [cur], description)
    if path is not None:
        Path(path).write_bytes(out)
    return out


def identity_model(n: int = 784) -> bytes:
    """A one-op model (RESHAPE [1, n] -> [1, n]) for LiteRT's per-call floor from Python."""
    (ReshapeOptions,) = _schema("ReshapeOptions")
    from tflite.BuiltinOperator import BuiltinOperator as Op
    from tflite.BuiltinOptions import BuiltinOptions as Opt
    from tflite.TensorType import TensorType

    g = _Graph()
    xi = g.tensor("x", [1, n])
    st = g.tensor("shape", [2], TensorType.INT32, data=np.array([1, n], np.int32))
    yo = g.tensor("y", [1, n])

    def opts(b):
        ReshapeOptions.StartNewShapeVector(b, 2)
        b.PrependInt32(n)
        b.PrependInt32(1)
        vec = b.EndVector()
        ReshapeOptions.Start(b)
        ReshapeOptions.AddNewShape(b, vec)
        return ReshapeOptions.End(b)
    g.op(Op.RESHAPE, [xi, st], [yo], Opt.ReshapeOptions, opts)
    return g.finish([xi], [yo], "identity")


# ------------------------------------------------------------------------------------------------ run

class LiteRT:
    """One LiteRT interpreter (1 thread; default XNNPACK delegate unless xnnpack=False) on a .tflite model."""

    def __init__(self, model: bytes | str | Path, num_threads: int = 1, xnnpack: bool = True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kw = dict(num_threads=num_threads,
                  experimental_op_resolver_type=(OpResolverType.AUTO if xnnpack
                                                 else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        if isinstance(model, (bytes, bytearray)):
            self.interp = Interpreter(model_content=bytes(model), **kw)
        else:
            self.interp = Interpreter(model_path=str(model), **kw)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.in_index, self.out_index = self.inp["index"], self.out["index"]
        self.in_shape = tuple(int(s) for s in self.inp["shape"])

    def ops(self) -> list[str]:
        """The interpreter's node names. Delegation leaves the model's nodes in the list and appends one DELEGATE
        node per delegated partition (the execution plan then runs the DELEGATE nodes in their place)."""
        return [d["op_name"] for d in self.interp._get_ops_details()]

    def xnnpack(self) -> bool:
        """True when the default delegate (XNNPACK: LiteRT logs "Created TensorFlow Lite XNNPACK delegate for CPU",
        and it is the only default delegate of the CPU interpreter) took the whole graph: exactly one DELEGATE node,
        reading the graph's input and writing its output, so no op is left to the builtin kernels."""
        nodes = [d for d in self.interp._get_ops_details() if d["op_name"] == "DELEGATE"]
        return (len(nodes) == 1 and self.in_index in set(nodes[0]["inputs"].tolist())
                and self.out_index in set(nodes[0]["outputs"].tolist()))

    def run(self, x_nhwc: np.ndarray) -> np.ndarray:
        """One inference, the per-call convention of onnxruntime's session.run: copy in, invoke, copy out."""
        self.interp.set_tensor(self.in_index, x_nhwc)
        self.interp.invoke()
        return self.interp.get_tensor(self.out_index)

    def predict(self, x_nchw: np.ndarray) -> np.ndarray:
        """Outputs [N, classes] for a batch of NCHW images (or [N, features]), one call per image."""
        x_nchw = np.asarray(x_nchw, np.float32)
        outs = []
        for xi in x_nchw:
            xi = xi[None]
            if xi.ndim == 4:
                xi = xi.transpose(0, 2, 3, 1)
            outs.append(self.run(np.ascontiguousarray(xi.reshape(self.in_shape))))
        return np.concatenate(outs, 0)


def verify(model, rt: LiteRT, x_nchw, atol: float = 1e-4) -> float:
    """Max abs difference between PyTorch's outputs and LiteRT's on the NCHW images x; AssertionError above atol."""
    import torch

    x_nchw = np.ascontiguousarray(np.asarray(x_nchw, np.float32))
    with torch.inference_mode():
        ref = model.eval()(torch.from_numpy(x_nchw)).numpy()
    got = rt.predict(x_nchw)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    err = float(np.max(np.abs(got - ref)))
    if not err <= atol:
        raise AssertionError(f"LiteRT differs from PyTorch: max abs {err:.2e} > {atol:.0e}")
    return err


def test_images(n: int = 100) -> np.ndarray:
    """The first n Fashion-MNIST test images (normalised, NCHW); synthetic ones if the data set is not installed."""
    from prunec import data
    from prunec.errors import PrunecError

    try:
        ds = data.load("fashion-mnist")
    except PrunecError:
        ds = data.synthetic(n_train=10, n_test=n)
    return ds.test.x[:n].numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--verify", type=int, default=100, help="Fashion-MNIST test images to compare (0: none)")
    a = ap.parse_args(argv)
    from prunec import checkpoint

    ck = checkpoint.load(a.checkpoint)
    blob = export(ck.model, tuple(ck.input_shape), a.out, description=f"prunec {ck.model_name}")
    print(f"wrote {a.out}: {len(blob)} bytes")
    if a.verify:
        rt = LiteRT(a.out)
        err = verify(ck.model, rt, test_images(a.verify))
        print(f"LiteRT ({'whole graph on XNNPACK' if rt.xnnpack() else 'not (wholly) on XNNPACK'}; nodes "
              f"{', '.join(rt.ops())}) vs PyTorch on "
              f"{a.verify} images: max abs diff {err:.2e}")


if __name__ == "__main__":
    main()
