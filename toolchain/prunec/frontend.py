"""MODEL (.pt2 from torch.export.save, or a prunec checkpoint) -> Graph.

The ExportedProgram's ATen graph is walked node by node (no decomposition: the export IR of torch 2.13 keeps
aten.linear / conv2d / batch_norm / max_pool2d, and the decomposed spellings addmm, convolution,
_native_batch_norm_legit_no_training, max_pool2d_with_indices are matched too). Values are either constants
(parameters, buffers, lifted constants, and anything computed from constants alone, which is evaluated here:
`t(W)` feeding an addmm, say) or activations (a buffer name and a torch shape with batch 1). Views and
identities (flatten, view, reshape, clone, dropout, ...) only relabel a buffer. In-place ops (relu_, add_)
produce a new SSA buffer and every alias of the mutated tensor is redirected to it.

Passes after the walk: a symmetric zero pad folded into the convolution that reads it, batch norm folded into the
conv/linear it follows, clamps (relu, relu6, hardtanh) fused into the fc/conv/add they follow, dead nodes dropped,
the result renamed `output`.

Any other op is refused with its name and the user's source line, before anything is written.
"""
from __future__ import annotations

import itertools
import logging
import math
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import PrunecError, brief
from .graph import CLAMP_FUSABLE_OPS, INPUT, OUTPUT, Graph, Node, numel

INF = float("inf")

SUPPORTED = (
    "linear, addmm, mm (x @ W.t()), conv2d / conv1d / convolution, relu, relu6 / hardtanh, clamp, sigmoid, tanh, softmax, log_softmax, "
    "silu, hardsigmoid, hardswish, leaky_relu, gelu (exact or tanh), elu / celu / selu, softplus, mish, mul of two "
    "tensors (same shape, or a per-channel gate), constant pad of the last two dims (F.pad, ZeroPad2d, ConstantPad1d/2d), "
    "nearest upsampling by integer factors and bilinear / linear upsampling (interpolate, Upsample), permute / transpose "
    "/ t / channel_shuffle (up to 4 moved dims, the batch staying first), "
    "max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d, mean over H and W or over L (global average pooling), flatten / view / reshape / squeeze / unsqueeze, add and sub "
    "(two tensors of one shape, alpha 1), batch_norm (folded into the conv2d/linear before it, else per-channel), add / sub / mul / div with a scalar or a per-channel "
    "constant, cat (not along the batch), dropout, clone / contiguous / detach"
)


# --- loading ---------------------------------------------------------------------------------------------

@dataclass
class Loaded:
    program: torch.export.ExportedProgram
    kind: str  # "pt2" or "checkpoint"
    model_name: str | None = None
    # per-layer weight counts before pruning (dead-neuron removal may have shrunk layers since): a checkpoint's, or
    # what `prunec export` stored in the .pt2; None where unknown
    weights0: dict[str, int] | None = None


def is_pt2(path: Path) -> bool:
    """Whether MODEL is read as an exported program: a torch.export archive by its contents, or named .pt2 unless
    its contents are a torch.save archive (a checkpoint renamed .pt2 is read as the checkpoint it is)."""
    from .archive import exported_program, torch_save, zip_names

    names = zip_names(path)
    return exported_program(names) or (path.suffix == ".pt2" and not torch_save(names))


def load_exported(path: str | os.PathLike, **kw):
    """torch.export.load, without the traceback torch logs (logger torch.export, level WARNING) before it tries
    its fallback reader on an archive it cannot read: the caller's one-line error says what went wrong."""
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return torch.export.load(str(path), **kw)
    finally:
        log.setLevel(level)


def load_program(path: str | os.PathLike) -> Loaded:
    """Read MODEL: a .pt2 (torch.export.save) or a prunec checkpoint (exported here at batch 1)."""
    path = Path(path)
    if not path.exists():
        raise PrunecError(f"model {path} does not exist")
    if path.is_dir():
        raise PrunecError(f"model {path} is a directory; pass a .pt2 file (prunec export) or a prunec checkpoint")
    if is_pt2(path):
        try:
            program = load_exported(path)
        except Exception as e:  # torch raises many types for a damaged archive
            raise PrunecError(f"{path} is not a readable torch.export program (.pt2): {brief(e)}. "
                              f"Write one with `prunec export` or torch.export.save.") from None
        from . import export

        return Loaded(program, "pt2", weights0=export.original_weights(path))
    from . import checkpoint, export

    ck = checkpoint.load(path)
    return Loaded(export.export_program(ck.model, ck.input_shape), "checkpoint", ck.model_name,
                  export.weights_before_pruning(ck))


def reference_module(path: str | os.PathLike) -> torch.nn.Module:
    """The PyTorch model a build came from, to run as the reference (eval mode)."""
    path = Path(path)
    if not path.exists():
        raise PrunecError(f"reference model {path} does not exist; pass --model with the model the build came from")
    if is_pt2(path):
        try:
            return load_exported(path).module()
        except Exception as e:
            raise PrunecError(f"{path} is not a readable torch.export program: {brief(e)}") from None
    from . import checkpoint

    return checkpoint.load(path).model.eval()


# --- values ----------------------------------------------------------------------------------------------

@dataclass
class Const:
    tensor: torch.Tensor
    origin: str = ""  # fully qualified parameter name it derives from ("fc1.weight"), if any


@dataclass
class Act:
    buffer: str
    shape: tuple[int, ...]
    group: int  # alias group: views share their base's; clone starts a new one


def _source(node: torch.fx.Node) -> str:
    """The user's file:line for a node: the deepest stack frame outside torch itself."""
    st = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+)', st)
    if not frames:
        return "unknown location"
    torch_dir = os.path.dirname(torch.__file__)
    user = [f for f in frames if not os.path.abspath(f[0]).startswith(torch_dir)]
    f, line = (user or frames)[-1]
    return f"{f}:{line}"


def _where(node: torch.fx.Node) -> str:
    """`_source` for messages: where every frame is torch's own (an nn.Sequential of library modules), the
    file:line is torch's, so the module path and type are added to say which layer of the user's model it is."""
    where = _source(node)
    torch_dir = os.path.dirname(torch.__file__)
    if where != "unknown location" and not os.path.abspath(where.rsplit(":", 1)[0]).startswith(torch_dir):
        return where
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, typ = list(stack.values())[-1]
        typ = typ.rsplit(".", 1)[-1] if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
        where += f" (module {path or '<root>'}, {typ})"
    return where


def _opname(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target._schema.name.split('::')[-1]}.{target._schema.overload_name or 'default'}" \
            if target._schema.name.startswith("aten::") else str(target)
    return getattr(target, "__name__", str(target))


def _packet(target) -> str:
    if isinstance(target, torch._ops.OpOverload) and target._schema.name.startswith("aten::"):
        return target._schema.name.split("::")[-1]
    return ""


def _bind(node: torch.fx.Node) -> dict:
    """The node's arguments by schema name, defaults filled in."""
    schema = node.target._schema
    out = {}
    for i, a in enumerate(schema.arguments):
        if i < len(node.args) and not a.kwarg_only:
            out[a.name] = node.args[i]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def _pair(v, default=None) -> tuple[int, int]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        if default is None:
            raise ValueError("missing value")
        return default
    if isinstance(v, (list, tuple)):
        v = [int(x) for x in v]
        return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])
    return (int(v), int(v))


def _spec_children(spec) -> list:
    ch = getattr(spec, "children", None)
    return list(ch()) if callable(ch) else list(spec.children_specs)


def _spec_str(spec) -> str:
    """A pytree structure in words: 'a tensor', 'a tuple of 1 tensor(s)', 'a dict of 1 tensor(s)' (an input
    spec, the (args, kwargs) pair, is described by its one positional argument)."""
    if spec.is_leaf():
        return "a tensor"
    ch = _spec_children(spec)
    if spec.type is tuple and len(ch) == 2 and ch[1].type is dict and ch[0].type is tuple:
        args = _spec_children(ch[0])
        if len(args) == 1 and not _spec_children(ch[1]):
            return _spec_str(args[0])
        return f"{len(args)} positional and {len(_spec_children(ch[1]))} keyword arguments"
    return f"a {getattr(spec.type, '__name__', spec.type)} of {spec.num_leaves} tensor(s)"


_REPARAMETRIZED = (
    # torch.nn.utils.parametrize: fc.parametrizations.weight.original
    re.compile(r"(?:^|\.)parametrizations\.(\w+)\.original\d*$"),
    # torch.nn.utils.prune's hooks still attached: fc.weight_orig, fc.weight_mask
    re.compile(r"(?:^|\.)(\w+)_(?:orig|mask)$"),
)


def param_origin(name: str) -> str:
    """The parameter a program's parameter or buffer stands for: fc.weight for fc.weight_orig / fc.weight_mask
    (torch.nn.utils.prune's hooks exported with the model) or fc.parametrizations.weight.original, so that layers are
    named after their module whichever way the masks were attached."""
    for rx in _REPARAMETRIZED:
        m = rx.search(name)
        if m:
            head = name[: m.start()]
            return f"{head}.{m.group(1)}" if head else m.group(1)
    return name


class _Unsupported(Exception):
    pass


IDENTITY = {"clone", "contiguous", "detach", "detach_", "alias", "lift_fresh_copy", "dropout", "dropout_",
            "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "_to_copy", "to"}
VIEWS = {"flatten", "view", "reshape", "_unsafe_view", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_",
         "view_copy", "_reshape_copy"}
IGNORED = {"_assert_tensor_metadata", "sym_constrain_range_for_size", "sym_constrain_range", "_assert_scalar",
           "_assert_async"}


class _Converter:
    def __init__(self, ep: torch.export.ExportedProgram):
        self.ep = ep
        self.env: dict[torch.fx.Node, object] = {}
        self.nodes: list[Node] = []
        self.buffers: dict[str, int] = {}
        self.names: set[str] = set()
        self.groups = itertools.count()
        # alias group of a permute's output (a copy here, a strided view in PyTorch) -> the group of its input
        self.permuted: dict[int, int] = {}
        self.fx_node: torch.fx.Node | None = None
        self.input_shape: tuple[int, ...] | None = None
        self._folded: dict[tuple, object] = {}  # fold's results by op and the ids of its input constants

    # helpers ---------------------------------------------------------------------------------------------
    def fail(self, msg: str):
        node = self.fx_node
        where = _where(node) if node is not None else "unknown location"
        op = _opname(node.target) if node is not None and node.op == "call_function" else "?"
        raise PrunecError(f"cannot build {op} at {where}: {msg}; nothing was written")

    def val_shape(self, node: torch.fx.Node) -> tuple[int, ...]:
        v = node.meta.get("val")
        if not isinstance(v, torch.Tensor):
            self.fail("no tensor metadata on the node (was the program made by torch.export?)")
        try:
            shape = tuple(int(s) for s in v.shape)
        except (TypeError, ValueError):
            self.fail(f"dynamic shape {tuple(v.shape)}; export with a static batch-1 example input")
        if v.dtype != torch.float32:
            self.fail(f"dtype {v.dtype}; prunec builds float32 models")
        return shape

    def batch1(self, x: Act) -> None:
        """conv, pooling and batch norm kernels compute one sample: a view that moved elements into the batch
        dimension (y.view(2, C // 2, H, W)) would be computed for its first 'sample' only."""
        if int(x.shape[0]) != 1:
            self.fail(f"its input has shape {x.shape}, batch dimension {x.shape[0]} (a view changed the batch); "
                      f"prunec builds batch-1 models: keep the batch dimension 1")

    def act(self, v, what: str = "input") -> Act:
        if isinstance(v, torch.fx.Node):
            v = self.env.get(v)
        if not isinstance(v, Act):
            self.fail(f"its {what} must be a tensor computed from the model input")
        return v

    def const(self, v, what: str) -> Const | None:
        if v is None:
            return None
        if isinstance(v, torch.fx.Node):
            v = self.env.get(v)
        if not isinstance(v, Const):
            self.fail(f"its {what} must be a parameter or constant (prunec bakes weights into flash)")
        return v

    def layer_name(self, origin: str = "", suffix: str = "") -> str:
        """The node's layer name (see docs/BUILD.md); `suffix` marks a first part of one op built as two layers
        (silu: "act.sigmoid" before "act")."""
        node = self.fx_node
        base = ""
        if origin:
            base = origin[: -len(".weight")] if origin.endswith(".weight") else origin
        if not base:
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, _ = list(stack.values())[-1]
                base = path
        if suffix:
            base = (base or node.name) + suffix
        if not base or base in self.names:
            base = f"{base}.{node.name}" if base else node.name
        while base in self.names:
            base += "_"
        self.names.add(base)
        return base

    def emit(self, op: str, inputs: list[Act], attrs: dict | None = None, weight=None, bias=None,
             origin: str = "", out_shape: tuple[int, ...] | None = None, part: str = "") -> Act:
        """One graph node for the current fx node; `part` names a second node of the same fx node (silu: sigmoid,
        then the product), so that its buffer is another."""
        node = self.fx_node
        shape = out_shape if out_shape is not None else self.val_shape(node)
        buf = f"t_{node.name}{part}"
        self.buffers[buf] = numel(shape)
        w = None if weight is None else weight.detach().to(torch.float32).contiguous().numpy()
        b = None if bias is None else bias.detach().to(torch.float32).contiguous().numpy().copy()
        if w is not None and not np.all(np.isfinite(w)):
            self.fail("its weights contain inf or NaN")
        if b is not None and not np.all(np.isfinite(b)):
            self.fail("its bias contains inf or NaN")
        self.nodes.append(Node(
            name=self.layer_name(origin, part.replace("_", ".", 1)), op=op, inputs=[a.buffer for a in inputs], output=buf,
            in_shapes=[a.shape for a in inputs], out_shape=shape, attrs=dict(attrs or {}), weight=w, bias=b,
            source=_source(node), torch_op=_opname(node.target),
        ))
        return Act(buf, shape, next(self.groups))

    # the walk --------------------------------------------------------------------------------------------
    def run(self) -> Graph:
        ep = self.ep
        sig = ep.graph_signature
        specs = {s.arg.name: s for s in sig.input_specs}
        consts = dict(ep.constants)
        sd = ep.state_dict
        user_inputs = []
        self.check_call_spec()
        for node in ep.graph.nodes:
            self.fx_node = node
            if node.op == "placeholder":
                spec = specs.get(node.name)
                kind = spec.kind.name if spec is not None else "USER_INPUT"
                if kind == "USER_INPUT":
                    user_inputs.append(node)
                    if len(user_inputs) > 1:
                        raise PrunecError("the model takes more than one input; prunec builds single-input models")
                    v = node.meta.get("val")
                    if not isinstance(v, torch.Tensor):
                        raise PrunecError(f"model input {node.name} is not a tensor; prunec builds models of one float32 tensor")
                    shape = self.val_shape(node)
                    if len(shape) < 2 or shape[0] != 1:
                        raise PrunecError(f"model input has shape {shape}; export the model with a batch-1 example input "
                                          f"(prunec export does)")
                    self.input_shape = shape
                    self.buffers[INPUT] = numel(shape)
                    self.env[node] = Act(INPUT, shape, next(self.groups))
                elif kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                    t = sd.get(spec.target) if spec.target in sd else consts.get(spec.target)
                    if t is None:
                        raise PrunecError(f"the program lacks the value of {spec.target}; it is damaged, re-export it")
                    self.env[node] = Const(t.detach(), param_origin(spec.target))
                else:
                    raise PrunecError(f"model input {node.name} of kind {kind} is not supported; export a plain nn.Module")
            elif node.op == "call_function":
                self.call(node)
            elif node.op == "output":
                return self.finish(node)
            else:
                self.fail(f"graph node kind {node.op!r} is not supported")
        raise PrunecError("the program has no output node; it is damaged, re-export it")

    def check_call_spec(self) -> None:
        """One positional tensor in, one tensor out: the C API's shape, and what `verify` calls the reference with.
        A model taking a list, or returning a tuple/list/dict, even of one tensor, is refused."""
        spec = getattr(self.ep, "call_spec", None)
        pytree = torch.utils._pytree
        one = torch.zeros(1)
        if spec is not None and spec.in_spec is not None and spec.in_spec != pytree.tree_structure(((one,), {})):
            n_leaves = spec.in_spec.num_leaves
            if n_leaves == 1:
                raise PrunecError(f"the model's forward takes its input as {_spec_str(spec.in_spec)}; prunec builds "
                                  f"models called as model(x) with one float32 tensor x")
        if spec is not None and spec.out_spec is not None and not spec.out_spec.is_leaf():
            if spec.out_spec.num_leaves == 1:
                raise PrunecError(f"the model returns {_spec_str(spec.out_spec)}, not a tensor; prunec builds models "
                                  f"whose forward returns exactly one output tensor (return the tensor itself)")

    def call(self, node: torch.fx.Node) -> None:
        target = node.target
        if target is operator.getitem:
            seq, idx = node.args
            v = self.env.get(seq)
            if isinstance(v, (tuple, list)):
                self.env[node] = v[idx]
            elif isinstance(v, Const):
                self.env[node] = Const(v.tensor[idx], v.origin)
            else:
                self.fail("indexing an activation is not supported")
            return
        name = _packet(target)
        if name in IGNORED:
            return
        arg_nodes = node.all_input_nodes
        if all(isinstance(self.env.get(a), Const) for a in arg_nodes):
            self.env[node] = self.fold(node)
            return
        if not node.users and not name.endswith("_"):
            return  # unused and not mutating: dead code
        handler = getattr(self, f"op_{name.lstrip('_')}", None) if name else None
        if handler is None:
            self.unsupported(node)
        args = _bind(node)
        result = handler(node, args)
        self.env[node] = result
        if isinstance(target, torch._ops.OpOverload) and target._schema.is_mutable and name.endswith("_"):
            # In-place op: every alias of the mutated tensor now reads the result.
            base = self.act(args[target._schema.arguments[0].name])
            if base.group in self.permuted or base.group in self.permuted.values():
                # PyTorch's permute is a view: the change would reach the other side, which here is a copy
                self.fail(f"in-place {name} on a tensor that is a permuted view of another (or has one) is not "
                          f"supported: in PyTorch it changes both, in the build only one; use the out-of-place op "
                          f"({name.rstrip('_')}) or .contiguous() before it")
            for k, v in list(self.env.items()):
                if isinstance(v, Act) and v.group == base.group:
                    self.env[k] = Act(result.buffer, v.shape, result.group)

    def unsupported(self, node: torch.fx.Node):
        raise PrunecError(
            f"unsupported op {_opname(node.target)} at {_where(node)}; prunec build supports {SUPPORTED}. "
            f"Nothing was written."
        )

    def fold(self, node: torch.fx.Node) -> Const:
        # the same op on the same constant tensors gives the same Const: a pruned module called twice (its mask still
        # a torch.nn.utils.prune hook: weight_orig * weight_mask in the graph at each call, the mask through an
        # aten.to that returns its input) keeps one weight array, which the build stores once (graph.shared_weights).
        # The ids stay those of the same objects: constants in self.env are never replaced or dropped during the walk.
        key = (node.target, repr(torch.fx.node.map_arg((node.args, node.kwargs),
                                                        lambda n: id(getattr(self.env[n], "tensor", self.env[n])))))
        if key not in self._folded:
            self._folded[key] = self._fold(node)
        return self._folded[key]

    def _fold(self, node: torch.fx.Node) -> Const:
        args = torch.fx.node.map_arg(node.args, lambda n: self.env[n].tensor)
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: self.env[n].tensor)
        origin = next((self.env[a].origin for a in node.all_input_nodes if self.env[a].origin), "")
        try:
            with torch.no_grad():
                out = node.target(*args, **kwargs)
        except Exception as e:
            self.fail(f"evaluating it on constants failed: {e}")
        if isinstance(out, (tuple, list)):
            return [Const(t, origin) if isinstance(t, torch.Tensor) else t for t in out]
        return Const(out, origin)

    def finish(self, node: torch.fx.Node) -> Graph:
        sig = self.ep.graph_signature
        outs = node.args[0]
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        user = [o for o, s in zip(outs, sig.output_specs) if s.kind.name == "USER_OUTPUT"]
        if len(user) != 1:
            raise PrunecError(f"the model returns {len(user)} outputs; prunec builds models with exactly one output tensor")
        v = self.env.get(user[0]) if isinstance(user[0], torch.fx.Node) else None
        if not isinstance(v, Act):
            raise PrunecError("the model output does not depend on its input; nothing to build")
        if self.input_shape is None:
            raise PrunecError("the model has no tensor input")
        out_shape = v.shape
        if v.buffer == INPUT:  # the output is (a view of) the input: copy it
            self.fx_node = user[0]
            v = self.emit("clamp", [v], {"out_min": -INF, "out_max": INF}, out_shape=v.shape)
        g = Graph(self.input_shape, out_shape, self.nodes, self.buffers)
        _rename(g, v.buffer, OUTPUT)
        return g

    # op handlers: each returns the Act of its result -----------------------------------------------------
    def op_linear(self, node, a):
        w = self.const(a["weight"], "weight")
        b = self.const(a["bias"], "bias")
        return self._fc(node, self.act(a["input"]), w.tensor, b.tensor if b else None, w.origin)

    def op_addmm(self, node, a):
        if a["beta"] != 1 or a["alpha"] != 1:
            self.fail("addmm with alpha or beta other than 1")
        w = self.const(a["mat2"], "second matrix")
        b = self.const(a["self"], "bias")
        if w.tensor.dim() != 2:
            self.fail("its weight is not a matrix")
        return self._fc(node, self.act(a["mat1"]), w.tensor.t(), b.tensor, w.origin)

    def op_mm(self, node, a):
        w = self.const(a["mat2"], "second matrix")
        if w.tensor.dim() != 2:
            self.fail("its weight is not a matrix")
        return self._fc(node, self.act(a["self"]), w.tensor.t(), None, w.origin)

    def op_matmul(self, node, a):
        return self.op_mm(node, {"self": a["self"], "mat2": a["other"]})

    def _fc(self, node, x: Act, w: torch.Tensor, b, origin):
        if w.dim() != 2:
            self.fail(f"weight of shape {tuple(w.shape)} is not a matrix")
        out_f, in_f = w.shape
        if numel(x.shape) != in_f or x.shape[-1] != in_f:
            self.fail(f"input of shape {x.shape} is not one vector of {in_f} features; flatten it first")
        if b is not None:
            b = b.reshape(-1)
            if b.numel() != out_f:
                self.fail(f"bias of {b.numel()} elements for {out_f} outputs (broadcast bias is not supported)")
        return self.emit("fc", [x], {"out_min": -INF, "out_max": INF}, weight=w, bias=b, origin=origin)

    def op_conv2d(self, node, a):
        return self._conv(node, a, transposed=False)

    def op_convolution(self, node, a):
        if a.get("transposed"):
            self.fail("transposed convolution is not supported")
        return self._conv(node, a, transposed=False)

    def op_conv1d(self, node, a):
        return self._conv(node, a, transposed=False)

    @staticmethod
    def _as2d(x: Act) -> Act:
        """An [N, C, L] activation seen as [N, C, 1, L] (the same bytes): 1-d convolution and pooling run as 2-d
        ones with a kernel of height 1."""
        return Act(x.buffer, (int(x.shape[0]), int(x.shape[1]), 1, int(x.shape[2])), x.group)

    def _emit_1d(self, node, op: str, x: Act, attrs: dict, shape=None, **kw) -> Act:
        """emit a 2-d op on the [N, C, 1, L] view of x; the result seen as the node's [N, C, L] (`shape`)."""
        shape = self.val_shape(node) if shape is None else tuple(int(d) for d in shape)
        r = self.emit(op, [self._as2d(x)], attrs, out_shape=(int(shape[0]), int(shape[1]), 1, int(shape[2])), **kw)
        return Act(r.buffer, shape, r.group)

    def _conv(self, node, a, transposed):
        x = self.act(a["input"])
        w = self.const(a["weight"], "weight")
        b = self.const(a["bias"], "bias")
        one_d = w.tensor.dim() == 3 and len(x.shape) == 3
        if not one_d and (w.tensor.dim() != 4 or len(x.shape) != 4):
            self.fail(f"only 1-d and 2-d convolution on NCL / NCHW input is supported (weight "
                      f"{tuple(w.tensor.shape)}, input {x.shape})")
        if one_d:  # a height-1 2-d convolution over the [N, C, 1, L] view
            wt = w.tensor.unsqueeze(2)
            kh, kw = 1, int(wt.shape[3])
            stride, dil = (1, _pair(a["stride"], (1, 1))[1]), (1, _pair(a["dilation"], (1, 1))[1])
            pad = a["padding"] if isinstance(a["padding"], str) else (0, _pair(a["padding"], (0, 0))[1])
        else:
            wt = w.tensor
            kh, kw = int(wt.shape[2]), int(wt.shape[3])
            stride = _pair(a["stride"], (1, 1))
            dil = _pair(a["dilation"], (1, 1))
            pad = a["padding"]
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0, 0)
            elif pad == "same":
                tot = (dil[0] * (kh - 1), dil[1] * (kw - 1))
                if tot[0] % 2 or tot[1] % 2:
                    self.fail("padding='same' with an even kernel pads asymmetrically, which is not supported")
                pad = (tot[0] // 2, tot[1] // 2)
            else:
                self.fail(f"padding {pad!r}")
        else:
            pad = _pair(pad, (0, 0))
        if any(p < 0 for p in pad) or min(stride) < 1 or min(dil) < 1:
            self.fail("negative padding or non-positive stride/dilation")
        self.batch1(x)
        groups = int(a["groups"] or 1)
        if int(x.shape[1]) != int(w.tensor.shape[1]) * groups:
            self.fail("input channels do not match weight and groups")
        attrs = {"stride": stride, "padding": pad, "dilation": dil, "groups": groups, "kernel": (kh, kw),
                 "out_min": -INF, "out_max": INF}
        if one_d:
            return self._emit_1d(node, "conv2d", x, attrs, weight=wt, bias=b.tensor if b else None, origin=w.origin)
        return self.emit("conv2d", [x], attrs, weight=wt, bias=b.tensor if b else None, origin=w.origin,
                         out_shape=self.val_shape(node))

    def _clamp(self, node, x, lo, hi):
        return self.emit("clamp", [self.act(x)], {"out_min": float(lo), "out_max": float(hi)})

    def op_relu(self, node, a):
        return self._clamp(node, a["self"], 0.0, INF)

    op_relu_ = op_relu

    def op_relu6(self, node, a):
        return self._clamp(node, a["self"], 0.0, 6.0)

    def op_hardtanh(self, node, a):
        return self._clamp(node, a["self"], a["min_val"], a["max_val"])

    op_hardtanh_ = op_hardtanh

    def op_clamp(self, node, a):
        if node.target._schema.overload_name not in ("", "default"):
            self.fail("clamp with tensor bounds")
        lo, hi = a.get("min"), a.get("max")
        return self._clamp(node, a["self"], -INF if lo is None else lo, INF if hi is None else hi)

    op_clamp_ = op_clamp

    def op_clamp_min(self, node, a):
        if node.target._schema.overload_name not in ("", "default"):
            self.fail("clamp_min with a tensor bound")
        return self._clamp(node, a["self"], a["min"], INF)

    op_clamp_min_ = op_clamp_min

    def op_clamp_max(self, node, a):
        if node.target._schema.overload_name not in ("", "default"):
            self.fail("clamp_max with a tensor bound")
        return self._clamp(node, a["self"], -INF, a["max"])

    op_clamp_max_ = op_clamp_max

    def op_sigmoid(self, node, a):
        return self.emit("sigmoid", [self.act(a["self"])])

    op_sigmoid_ = op_sigmoid

    def op_tanh(self, node, a):
        return self.emit("tanh", [self.act(a["self"])])

    op_tanh_ = op_tanh

    def op_softmax(self, node, a, op: str = "softmax"):
        if node.target._schema.overload_name not in ("int", "", "default"):
            self.fail(f"{op} by dimension name")
        if "dtype" in a and a["dtype"] not in (None, torch.float32):
            self.fail(f"{op} to dtype {a['dtype']}")
        if a.get("half_to_float"):
            self.fail(f"half-precision {op}")
        x = self.act(a["self"])
        d = int(a["dim"])
        if d < 0:
            d += len(x.shape)
        if not 0 <= d < len(x.shape):
            self.fail(f"{op} dim {a['dim']} out of range for shape {x.shape}")
        attrs = {"outer": numel(x.shape[:d]), "n": int(x.shape[d]), "inner": numel(x.shape[d + 1:]), "dim": d}
        return self.emit(op, [x], attrs)

    def op_log_softmax(self, node, a):
        return self.op_softmax(node, a, "log_softmax")

    def _pool_in(self, a, one_d: bool = False) -> Act:
        x = self.act(a["self"])
        if len(x.shape) != (3 if one_d else 4):
            self.fail(f"{'1-d pooling needs NCL' if one_d else 'pooling needs NCHW'} input, got shape {x.shape}")
        self.batch1(x)
        return x

    @staticmethod
    def _window(a, one_d: bool) -> dict:
        """kernel, stride, padding and ceil_mode of a pooling op as pairs; a 1-d one's as (1, k) on [N, C, 1, L]."""
        k = _pair(a["kernel_size"])
        if one_d:
            return {"kernel": (1, k[0]), "stride": (1, _pair(a["stride"], k)[1]),
                    "padding": (0, _pair(a["padding"], (0, 0))[1]), "ceil_mode": bool(a["ceil_mode"])}
        return {"kernel": k, "stride": _pair(a["stride"], k), "padding": _pair(a["padding"], (0, 0)),
                "ceil_mode": bool(a["ceil_mode"])}

    def _max_pool(self, node, a, one_d: bool) -> Act:
        x = self._pool_in(a, one_d)
        if max(_pair(a["dilation"], (1, 1))) != 1:
            self.fail("dilated max pooling is not supported")
        out = self.val_shape(node) if not node.target._schema.name.endswith("_with_indices") else \
            tuple(int(s) for s in node.meta["val"][0].shape)  # (values, indices): the indices are never used
        if one_d:
            return self._emit_1d(node, "maxpool2d", x, self._window(a, True), shape=out)
        return self.emit("maxpool2d", [x], self._window(a, False), out_shape=out)

    def _avg_pool(self, node, a, one_d: bool) -> Act:
        x = self._pool_in(a, one_d)
        if a.get("divisor_override") is not None:
            self.fail("avg_pool2d with divisor_override is not supported")
        attrs = {**self._window(a, one_d), "count_include_pad": bool(a["count_include_pad"])}
        return self._emit_1d(node, "avgpool2d", x, attrs) if one_d else self.emit("avgpool2d", [x], attrs)

    def op_max_pool2d(self, node, a):
        return self._max_pool(node, a, one_d=False)

    def op_max_pool1d(self, node, a):
        return self._max_pool(node, a, one_d=True)

    def op_max_pool2d_with_indices(self, node, a):
        return [self.op_max_pool2d(node, a), None]

    def op_max_pool1d_with_indices(self, node, a):
        return [self.op_max_pool1d(node, a), None]

    def op_avg_pool2d(self, node, a):
        return self._avg_pool(node, a, one_d=False)

    def op_avg_pool1d(self, node, a):
        return self._avg_pool(node, a, one_d=True)

    def op_adaptive_avg_pool2d(self, node, a):
        x = self._pool_in(a)
        out = self.val_shape(node)
        return self.emit("adaptive_avgpool2d", [x], {"output_size": (out[2], out[3])})

    def op_adaptive_avg_pool1d(self, node, a):
        x = self._pool_in(a, one_d=True)
        return self._emit_1d(node, "adaptive_avgpool2d", x, {"output_size": (1, int(self.val_shape(node)[2]))})

    def op_mean(self, node, a):
        """Global average pooling written as x.mean((2, 3)) / x.mean([-2, -1], keepdim=...) (MobileNet-style heads):
        the adaptive average pool to 1x1, then, without keepdim, a view to [N, C]. Other means are refused."""
        if node.target._schema.overload_name != "dim":
            self.fail("mean over every element is not supported (mean over dims 2 and 3 of an NCHW tensor is: "
                      "global average pooling)")
        x = self.act(a["self"])
        dims = a["dim"] if isinstance(a["dim"], (list, tuple)) else [a["dim"]]
        rank = len(x.shape)
        if rank == 3 and [int(d) % 3 for d in dims] == [2]:  # NCL: over L, through the [N, C, 1, L] view
            x = self._as2d(x)
        elif rank != 4 or sorted(int(d) % 4 for d in dims) != [2, 3]:
            self.fail(f"mean over dims {list(dims)} of a tensor of shape {x.shape} is not supported (only over dims 2 "
                      f"and 3 of an NCHW tensor, or dim 2 of an NCL one: global average pooling)")
        if a.get("dtype") is not None and a["dtype"] != torch.float32:
            self.fail(f"mean with dtype {a['dtype']} is not supported (float32 only)")
        self.batch1(x)
        pooled = self.emit("adaptive_avgpool2d", [x], {"output_size": (1, 1)},
                           out_shape=(int(x.shape[0]), int(x.shape[1]), 1, 1))
        return Act(pooled.buffer, self.val_shape(node), pooled.group)  # [N, C] or, keepdim, [N, C, 1(, 1)]

    # --- arithmetic with constants: one per-channel affine node y = x * scale + shift ---------------------

    def _constant(self, v) -> np.ndarray | None:
        """An operand that is a constant, as float64: a Python number or a constant tensor (parameter, buffer,
        literal); None for a tensor computed from the input."""
        if isinstance(v, bool) or v is None:
            return None
        if isinstance(v, (int, float)):
            return np.array(float(v))
        if isinstance(v, torch.fx.Node):
            v = self.env.get(v)
        if isinstance(v, Const):
            if not v.tensor.is_floating_point() and v.tensor.dtype not in (torch.int32, torch.int64):
                self.fail(f"a constant of dtype {v.tensor.dtype} is not supported")
            return v.tensor.detach().double().cpu().numpy()
        return None

    def _affine(self, node, x: Act, scale, shift) -> Act:
        """y = x * scale + shift, constants that are scalars or vary along the channel axis only (dim 1: a channel
        of NCHW, a feature of [N, F]); anything else (a constant image, a broadcast that grows x) is refused."""
        shape = tuple(int(d) for d in x.shape)
        c = shape[1] if len(shape) >= 2 else 1

        def per_channel(v) -> np.ndarray:
            v = np.asarray(v, dtype=np.float64)
            if v.size == 1:
                return np.full(c, float(v.reshape(-1)[0]))
            right = (1,) * (len(shape) - v.ndim) + v.shape if v.ndim <= len(shape) else None
            if right is None or len(shape) < 2 or right[1] != c or any(e != 1 for i, e in enumerate(right) if i != 1):
                self.fail(f"arithmetic with a constant of shape {tuple(v.shape)} on a tensor of shape {shape} is not "
                          f"supported (only scalars, or constants that vary along dim 1, the channels: e.g. "
                          f"mean.view(1, {c}, 1, 1))")
            self.batch1(x)
            return v.reshape(-1)

        if self.val_shape(node) != shape:
            self.fail(f"the result's shape {self.val_shape(node)} differs from the input's {shape} (a broadcast that "
                      f"grows the tensor is not supported)")
        sc, sh = per_channel(scale), per_channel(shift)
        if not (np.all(np.isfinite(sc)) and np.all(np.isfinite(sh))):
            self.fail("the constant is inf or NaN (or a division by zero)")
        return self.emit("affine", [x], {"scale": sc, "shift": sh, "out_min": -INF, "out_max": INF})

    def _arith(self, node, a, kind: str):
        """add / sub / rsub / mul / div where one operand is a constant and the other a tensor of the model."""
        other = a.get("other")
        k_self, k_other = self._constant(a["self"]), self._constant(other)
        alpha = a.get("alpha", 1)
        alpha = 1.0 if alpha is None else float(alpha)
        if k_self is not None and k_other is not None:
            self.fail("arithmetic on two constants at run time is not supported")
        if k_self is None and k_other is None:
            if kind == "mul":
                return self._mul(self.act(a["self"]), self.act(other), self.val_shape(node))
            self.fail(f"{kind} of two tensors computed from the input is not supported (only add, sub and mul of two "
                      f"same-shape tensors, mul by a per-channel gate; or arithmetic with a constant)")
        x = self.act(a["self"] if k_other is not None else other)
        k = k_other if k_other is not None else k_self
        if kind == "add":  # x + alpha*k, or k + alpha*x
            return self._affine(node, x, 1.0, alpha * k) if k_other is not None else self._affine(node, x, alpha, k)
        if kind == "sub":  # x - alpha*k, or k - alpha*x
            return self._affine(node, x, 1.0, -alpha * k) if k_other is not None else self._affine(node, x, -alpha, k)
        if kind == "rsub":  # other - alpha*self: k - alpha*x (self is the tensor), or x - alpha*k
            return self._affine(node, x, -alpha, k) if k_other is not None else self._affine(node, x, 1.0, -alpha * k)
        if kind == "mul":
            return self._affine(node, x, k, 0.0)
        if a.get("rounding_mode") is not None:
            self.fail(f"division with rounding_mode={a['rounding_mode']!r} is not supported")
        if k_self is not None:
            self.fail("dividing a constant by a tensor is not supported")
        with np.errstate(divide="ignore"):
            return self._affine(node, x, 1.0 / k, 0.0)  # a zero divisor gives inf, which _affine refuses

    def _mul(self, x: Act, y: Act, shape) -> Act:
        """x * y of two tensors computed from the input: the same shape, or one of them a per-channel gate
        ([N, C, 1, 1] or [N, C, 1] scaling [N, C, H, W] / [N, C, L]: squeeze-and-excitation)."""
        sx, sy = tuple(int(d) for d in x.shape), tuple(int(d) for d in y.shape)
        if sx == sy:
            return self.emit("mul", [x, y], {"channels": 1, "inner": numel(sx), "b_inner": numel(sx)}, out_shape=sx)
        full, gate = (x, y) if numel(sx) >= numel(sy) else (y, x)
        sf, sg = tuple(int(d) for d in full.shape), tuple(int(d) for d in gate.shape)
        if not (len(sf) in (3, 4) and len(sg) == len(sf) and sg[:2] == sf[:2] and all(d == 1 for d in sg[2:])) \
                or tuple(shape) != sf:
            self.fail(f"mul of tensors of shapes {sx} and {sy} is not supported (the same shape, or a per-channel "
                      f"gate [N, C, 1, 1] times [N, C, H, W])")
        self.batch1(full)
        return self.emit("mul", [full, gate], {"channels": sf[1], "inner": numel(sf[2:]), "b_inner": 1}, out_shape=sf)

    def op_silu(self, node, a):  # x * sigmoid(x)
        x = self.act(a["self"])
        return self._mul(x, self.emit("sigmoid", [x], part="_sigmoid"), x.shape)  # layers NAME.sigmoid, NAME

    def _hardsigmoid(self, x: Act, part: str = "") -> Act:  # relu6(x + 3) / 6 = clamp(x / 6 + 1/2, 0, 1)
        n = x.shape[1] if len(x.shape) >= 2 else 1
        return self.emit("affine", [x], {"scale": np.full(n, 1.0 / 6.0), "shift": np.full(n, 0.5), "out_min": 0.0,
                                         "out_max": 1.0}, part=part)

    def op_hardsigmoid(self, node, a):
        return self._hardsigmoid(self.act(a["self"]))

    def op_hardswish(self, node, a):  # x * hardsigmoid(x): layers NAME.gate, NAME
        x = self.act(a["self"])
        return self._mul(x, self._hardsigmoid(x, part="_gate"), x.shape)

    def op_leaky_relu(self, node, a):
        slope = float(a["negative_slope"])
        if not math.isfinite(slope):
            self.fail(f"leaky_relu with negative_slope {slope}")
        return self.emit("leaky_relu", [self.act(a["self"])], {"slope": slope})

    op_silu_, op_hardsigmoid_, op_hardswish_, op_leaky_relu_ = op_silu, op_hardsigmoid, op_hardswish, op_leaky_relu

    def op_gelu(self, node, a):
        approx = a.get("approximate") or "none"
        if approx not in ("none", "tanh"):
            self.fail(f"gelu with approximate={approx!r} (only 'none' and 'tanh')")
        return self.emit("gelu", [self.act(a["self"])], {"approximate": approx})

    def _elu(self, x, scale: float, input_scale: float, neg_scale: float, what: str) -> Act:
        """y = x > 0 ? x * scale : expm1(x * input_scale) * neg_scale, PyTorch's elu with its three coefficients."""
        if not all(math.isfinite(v) for v in (scale, input_scale, neg_scale)):
            self.fail(f"{what} gives the coefficients scale {scale}, input_scale {input_scale}, alpha * scale "
                      f"{neg_scale}: they must be finite")
        return self.emit("elu", [self.act(x)], {"scale": scale, "input_scale": input_scale, "neg_scale": neg_scale})

    def op_elu(self, node, a):
        alpha, scale = float(a["alpha"]), float(a["scale"])
        return self._elu(a["self"], scale, float(a["input_scale"]), alpha * scale, f"elu with alpha {alpha}")

    def op_celu(self, node, a):  # elu(x, alpha) on x / alpha
        alpha = float(a["alpha"])
        if alpha == 0:
            self.fail("celu with alpha 0")
        return self._elu(a["self"], 1.0, 1.0 / alpha, alpha, f"celu with alpha {alpha}")

    def op_selu(self, node, a):  # ATen's SELU_ALPHA, SELU_SCALE
        alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        return self._elu(a["self"], scale, 1.0, alpha * scale, "selu")

    def op_softplus(self, node, a):
        beta, threshold = float(a["beta"]), float(a["threshold"])
        if beta == 0 or not math.isfinite(beta) or math.isnan(threshold):
            self.fail(f"softplus with beta {beta}, threshold {threshold} (beta must be finite and nonzero)")
        return self.emit("softplus", [self.act(a["self"])], {"beta": beta, "threshold": threshold})

    def op_mish(self, node, a):
        return self.emit("mish", [self.act(a["self"])])

    op_gelu_, op_elu_, op_celu_, op_selu_, op_mish_ = op_gelu, op_elu, op_celu, op_selu, op_mish

    # --- data movement: pad, upsample, permute -------------------------------------------------------------

    def _pad(self, x: Act, pad, value: float) -> Act:
        """Constant padding (negative amounts crop) of the last one or two dims, never the batch: one pad2d node over
        `planes` planes of in_hw, pads (top, bottom, left, right); a one-dim pad is a pad of planes of height 1."""
        pad = [int(p) for p in pad]
        shape = tuple(int(d) for d in x.shape)
        if len(pad) % 2 or len(pad) // 2 > len(shape):
            self.fail(f"pad {pad} for a tensor of shape {shape}")
        if any(pad[4:]):
            self.fail(f"padding of more than the last two dims (pad {pad}) is not supported")
        pad = (pad + [0, 0, 0, 0])[:4]
        if len(shape) < 2 or (len(shape) < 3 and any(pad[2:])):
            self.fail(f"pad {pad} of a tensor of shape {shape} pads the batch dimension")
        if math.isnan(value):
            self.fail("pad with value NaN")
        left, right, top, bottom = pad
        two = any(pad[2:])
        planes = numel(shape[:-2] if two else shape[:-1])
        in_hw = (shape[-2], shape[-1]) if two else (1, shape[-1])
        return self.emit("pad2d", [x], {"planes": planes, "in_hw": in_hw, "pads": (top, bottom, left, right),
                                        "value": float(value)})

    def op_constant_pad_nd(self, node, a):
        return self._pad(self.act(a["self"]), a["pad"], float(a["value"]))

    def op_pad(self, node, a):
        mode = a.get("mode") or "constant"
        if mode != "constant":
            self.fail(f"pad mode {mode!r} is not supported (only 'constant': F.pad with a value, nn.ZeroPad2d, "
                      f"nn.ConstantPad1d/2d)")
        return self._pad(self.act(a["self"]), a["pad"], 0.0 if a.get("value") is None else float(a["value"]))

    @staticmethod
    def _scales(a, n: int) -> list:
        """The upsampling op's scale factor per spatial dim (None where it gives none): `scale_factors` of a .vec
        spelling, scales_h / scales_w (scales in 1-d) of the other."""
        if "scale_factors" in a:
            return list(a["scale_factors"]) if a["scale_factors"] is not None else [None] * n
        return [a.get("scales")] if n == 1 else [a.get("scales_h"), a.get("scales_w")]

    def _upsample_nearest(self, node, a, one_d: bool) -> Act:
        """Nearest upsampling by an integer factor per dim, checked against PyTorch's own source index (nearest_idx:
        floor(i * float(1 / scale)) or floor(i * float(in / out))): other factors are refused."""
        x = self._pool_in({"self": a["input" if "input" in a else "self"]}, one_d)
        out = self.val_shape(node)
        ins, outs = x.shape[2:], out[2:]
        factors = []
        for i, o, s in zip(ins, outs, self._scales(a, len(ins))):
            if o == i or o == 2 * i:
                src = np.arange(o) // (o // i)
            else:
                step = np.float32(1.0 / s) if s is not None and s > 0 else np.float32(i) / np.float32(o)
                src = np.minimum(np.floor(np.arange(o, dtype=np.float32) * step).astype(np.int64), i - 1)
            if o % i or not np.array_equal(src, np.arange(o) // (o // i)):
                self.fail(f"nearest upsampling from {i} to {o} (scale factor {s}) is not a whole-number factor; only "
                          f"integer scale factors are supported")
            factors.append(o // i)
        if one_d:
            return self._emit_1d(node, "upsample_nearest2d", x, {"scale": (1, factors[0])})
        return self.emit("upsample_nearest2d", [x], {"scale": tuple(factors)})

    def op_upsample_nearest2d(self, node, a):
        return self._upsample_nearest(node, a, one_d=False)

    def op_upsample_nearest1d(self, node, a):
        return self._upsample_nearest(node, a, one_d=True)

    def _upsample_linear(self, node, a, one_d: bool) -> Act:
        """Bilinear (linear in 1-d) upsampling; the kernel takes PyTorch's float scale per dim (area_pixel_compute_scale:
        align_corners (in - 1) / (out - 1), else 1 / scale_factor, or in / out without one)."""
        x = self._pool_in({"self": a["input" if "input" in a else "self"]}, one_d)
        out = self.val_shape(node)
        align = bool(a["align_corners"])
        scales = []
        for i, o, s in zip(x.shape[2:], out[2:], self._scales(a, len(out) - 2)):
            if align:
                scales.append(float(np.float32(i - 1) / np.float32(o - 1)) if o > 1 else 0.0)
            else:
                scales.append(float(np.float32(1.0 / s)) if s is not None and s > 0 else
                              float(np.float32(i) / np.float32(o)))
        if one_d:
            return self._emit_1d(node, "upsample_bilinear2d", x, {"scale": (1.0, scales[0]), "align_corners": align})
        return self.emit("upsample_bilinear2d", [x], {"scale": tuple(scales), "align_corners": align})

    def op_upsample_bilinear2d(self, node, a):
        return self._upsample_linear(node, a, one_d=False)

    def op_upsample_linear1d(self, node, a):
        return self._upsample_linear(node, a, one_d=True)

    def _permute(self, node, x: Act, perm) -> Act:
        """Output dim k is input dim perm[k]. Dims of size 1 are dropped and runs of input dims that stay together
        merged: what is left is identity (the same bytes: a view) or a permutation of at most 4 dims, one permute
        node (y contiguous of `shape`, strides into x per output dim), the batch dimension staying first."""
        shape = tuple(int(d) for d in x.shape)
        rank = len(shape)
        perm = [int(p) % rank if rank else 0 for p in perm]
        if sorted(perm) != list(range(rank)):
            self.fail(f"permutation {perm} of a tensor of shape {shape}")
        keep = [d for d in perm if shape[d] > 1]
        if shape and shape[0] > 1 and keep and keep[0] != 0:
            self.fail(f"permutation {perm} of a tensor of shape {shape} moves its batch dimension (dim 0, which a view "
                      f"made {shape[0]}): the batch dimension must stay first")
        kept = sorted(keep)
        runs: list[list[int]] = []  # in output order, each run input dims that are next to each other in x too
        for d in keep:
            if runs and kept.index(d) == kept.index(runs[-1][-1]) + 1:
                runs[-1].append(d)
            else:
                runs.append([d])
        order = sorted(range(len(runs)), key=lambda k: runs[k][0])  # the runs in input order
        if order == list(range(len(runs))):
            return Act(x.buffer, self.val_shape(node), x.group)  # only size-1 dims move: a view
        if len(runs) > 4:
            self.fail(f"permutation {perm} of a tensor of shape {shape} moves {len(runs)} groups of dims (at most 4)")
        sizes = [numel([shape[d] for d in r]) for r in runs]
        in_stride = {}
        acc = 1
        for k in reversed(order):
            in_stride[k] = acc
            acc *= sizes[k]
        pad = 4 - len(runs)
        y = self.emit("permute", [x], {"shape": (1,) * pad + tuple(sizes),
                                       "stride": (0,) * pad + tuple(in_stride[k] for k in range(len(runs)))})
        self.permuted[y.group] = x.group
        return y

    def op_permute(self, node, a):
        return self._permute(node, self.act(a["self"]), a["dims"])

    def _swap(self, node, x: Act, d0: int, d1: int) -> Act:
        rank = len(x.shape)
        perm = list(range(rank))
        if rank:
            d0, d1 = int(d0) % rank, int(d1) % rank
            perm[d0], perm[d1] = perm[d1], perm[d0]
        return self._permute(node, x, perm)

    def op_transpose(self, node, a):
        return self._swap(node, self.act(a["self"]), a["dim0"], a["dim1"])

    def op_swapaxes(self, node, a):
        return self._swap(node, self.act(a["self"]), a["axis0"], a["axis1"])

    def op_swapdims(self, node, a):
        return self._swap(node, self.act(a["self"]), a["dim0"], a["dim1"])

    def op_t(self, node, a):  # 2-d and smaller
        x = self.act(a["self"])
        return self._swap(node, x, 0, 1) if len(x.shape) == 2 else Act(x.buffer, x.shape, x.group)

    def op_mT(self, node, a):
        return self._swap(node, self.act(a["self"]), -2, -1)

    def op_channel_shuffle(self, node, a):  # [N, C, ...] seen as [N, g, C / g, ...], dims 1 and 2 swapped
        x = self.act(a["self"])
        g, shape = int(a["groups"]), tuple(int(d) for d in x.shape)
        if len(shape) < 3 or g < 1 or shape[1] % g:
            self.fail(f"channel_shuffle with {g} groups of a tensor of shape {shape}")
        split = Act(x.buffer, (shape[0], g, shape[1] // g, numel(shape[2:])), x.group)
        return self._swap(node, split, 1, 2)

    def op_sub(self, node, a):
        return self._add_or_sub(node, a, "sub")

    def op_rsub(self, node, a):
        return self._arith(node, a, "rsub")

    def op_mul(self, node, a):
        return self._arith(node, a, "mul")

    def op_div(self, node, a):
        return self._arith(node, a, "div")

    op_sub_, op_mul_, op_div_ = op_sub, op_mul, op_div

    def op_cat(self, node, a):
        """torch.cat of tensors computed from the input, along any dim but the batch: one concat node whose kernel
        copies each input's runs into place (outer runs of each input's trailing block)."""
        vals = list(a["tensors"])
        if any(not isinstance(self.env.get(v) if isinstance(v, torch.fx.Node) else v, Act) for v in vals):
            self.fail("concatenating a constant tensor is not supported (only tensors computed from the input)")
        xs = [self.act(v) for v in vals]
        rank = len(xs[0].shape)
        dim = int(a["dim"])
        dim = dim + rank if dim < 0 else dim
        if dim == 0:
            self.fail("concatenation along the batch dimension is not supported (prunec builds batch-1 models)")
        if any(len(x.shape) != rank or tuple(x.shape[:dim]) + tuple(x.shape[dim + 1:]) !=
               tuple(xs[0].shape[:dim]) + tuple(xs[0].shape[dim + 1:]) for x in xs):
            self.fail(f"concatenation of shapes {[tuple(x.shape) for x in xs]} along dim {dim} (they must agree on "
                      f"every other dim; no broadcasting)")
        outer = numel(xs[0].shape[:dim])
        sizes = [numel(x.shape[dim:]) for x in xs]
        return self.emit("concat", xs, {"outer": outer, "sizes": sizes})

    def op_add(self, node, a):
        return self._add_or_sub(node, a, "add")

    def _add_or_sub(self, node, a, op: str):
        """add / sub: of two same-shape tensors computed from the input (alpha 1), one node of `op`; with a constant
        operand, an affine layer (_arith)."""
        if node.target._schema.overload_name != "Tensor" or not isinstance(self.env.get(a["other"]), Act) or \
                not isinstance(self.env.get(a["self"]), Act):
            return self._arith(node, a, op)  # a constant operand
        if a["alpha"] not in (None, 1):
            self.fail(f"{op} with alpha={a['alpha']} is not supported (alpha must be 1)")
        x, y = self.act(a["self"]), self.act(a["other"])
        if x.shape != y.shape:
            self.fail(f"broadcasting {op} of shapes {x.shape} and {y.shape} is not supported")
        return self.emit(op, [x, y], {"out_min": -INF, "out_max": INF})

    op_add_ = op_add

    def _bn(self, node, x, w, b, mean, var, eps):
        x = self.act(x)
        mean, var = self.const(mean, "running mean"), self.const(var, "running variance")
        if mean is None or var is None:
            self.fail("batch norm without running statistics")
        if len(x.shape) < 2:
            self.fail(f"batch norm needs an (N, C, ...) input, got shape {x.shape}")
        self.batch1(x)
        c = int(x.shape[1])
        scale = 1.0 / torch.sqrt(var.tensor.double() + float(eps))
        if w is not None:
            scale = scale * self.const(w, "weight").tensor.double()
        shift = -mean.tensor.double() * scale
        if b is not None:
            shift = shift + self.const(b, "bias").tensor.double()
        if scale.numel() != c:
            self.fail("batch norm channels do not match its input")
        # out_shape: the decomposed spellings (_native_batch_norm_legit_no_training) return a tuple
        return self.emit("batchnorm", [x], {"scale": scale.numpy(), "shift": shift.numpy()}, out_shape=x.shape)

    def op_batch_norm(self, node, a):
        if a["running_mean"] is None or a["running_var"] is None:
            self.fail("batch norm without running statistics (track_running_stats=False normalises by the batch's "
                      "own statistics even in eval mode); only batch norm with running statistics can be folded")
        if a["training"]:
            self.fail("batch norm in training mode: call model.eval() before torch.export")
        return self._bn(node, a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"])

    def op_native_batch_norm_legit_no_training(self, node, a):
        r = self._bn(node, a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"])
        return [r, None, None]

    def op_native_batch_norm(self, node, a):
        if a["training"]:
            self.fail("batch norm in training mode: call model.eval() before torch.export")
        return [self._bn(node, a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"]),
                None, None]

    def _identity(self, node, a):
        first = node.target._schema.arguments[0].name
        x = self.act(a[first])
        name = _packet(node.target)
        if name.startswith(("dropout", "feature_dropout", "alpha_dropout", "feature_alpha")) and a.get("train"):
            self.fail("dropout in training mode: call model.eval() before torch.export")
        if name in ("_to_copy", "to"):
            self.val_shape(node)  # refuses a dtype change
        if name in ("clone", "_to_copy", "to", "lift_fresh_copy") or (name == "contiguous" and x.group in self.permuted):
            # a copy (contiguous of a permuted view copies too): mutations of it do not reach x
            return Act(x.buffer, x.shape, next(self.groups))
        return x

    def _view(self, node, a):
        first = node.target._schema.arguments[0].name
        x = self.act(a[first])
        shape = self.val_shape(node)
        if numel(shape) != numel(x.shape):
            self.fail(f"view from {x.shape} to {shape} changes the element count")
        return Act(x.buffer, shape, x.group)


for _n in IDENTITY:
    setattr(_Converter, f"op_{_n.lstrip('_')}", _Converter._identity)
for _n in VIEWS:
    setattr(_Converter, f"op_{_n.lstrip('_')}", _Converter._view)


# --- passes ----------------------------------------------------------------------------------------------

def _rename(g: Graph, old: str, new: str) -> None:
    if old == new:
        return
    g.buffers = {(new if k == old else k): v for k, v in g.buffers.items()}
    for n in g.nodes:
        n.inputs = [new if b == old else b for b in n.inputs]
        if n.output == old:
            n.output = new


def _sole_consumer(g: Graph, buf: str) -> bool:
    return buf != g.output and sum(n.inputs.count(buf) for n in g.nodes) == 1


def _absorb(g: Graph, p: Node, n: Node) -> None:
    """Node n, its input's producer p's only reader, becomes part of p: p writes n's output, n goes."""
    del g.buffers[p.output]
    p.output = n.output
    g.nodes.remove(n)


def fold_batchnorm(g: Graph) -> None:
    """conv/fc -> batch_norm becomes one conv/fc with scaled weights and shifted bias; a batch norm anywhere else
    (before a conv, after an add, on the input) runs as a per-channel affine node."""
    for bn in [n for n in g.nodes if n.op == "batchnorm"]:
        p = g.producer(bn.inputs[0])
        if p is None or p.op not in ("fc", "conv2d") or not _sole_consumer(g, bn.inputs[0]) \
                or p.attrs["out_min"] != -INF or p.attrs["out_max"] != INF \
                or np.asarray(bn.attrs["scale"]).shape[0] != p.weight.shape[0]:  # a view between: other channels
            bn.op = "affine"
            bn.attrs = {"scale": np.asarray(bn.attrs["scale"], np.float64), "shift": np.asarray(bn.attrs["shift"], np.float64),
                        "out_min": -INF, "out_max": INF}
            continue
        scale, shift = bn.attrs["scale"], bn.attrs["shift"]
        rows = p.weight.shape[0]
        w = p.weight.astype(np.float64) * scale.reshape((rows,) + (1,) * (p.weight.ndim - 1))
        b = (p.bias.astype(np.float64) if p.bias is not None else np.zeros(rows)) * scale + shift
        p.weight = w.astype(np.float32)
        p.bias = b.astype(np.float32)
        p.weight[p.weight == 0] = 0.0  # no -0.0 from a negative scale: keep the encoding's zeros exact
        _absorb(g, p, bn)


def fold_pads(g: Graph) -> None:
    """A zero pad2d of a convolution's H and W, the same amount on both sides of each (the conv kernels pad
    symmetrically), whose output only that convolution reads, becomes part of the convolution's padding."""
    for p in [n for n in g.nodes if n.op == "pad2d"]:
        top, bottom, left, right = p.attrs["pads"]
        if p.attrs["value"] != 0 or top != bottom or left != right or min(top, left) < 0 \
                or not _sole_consumer(g, p.output):
            continue
        c = g.consumers(p.output)[0]
        ih, iw = p.attrs["in_hw"]
        if c.op != "conv2d" or tuple(c.in_shapes[0][1:]) != (p.attrs["planes"], ih + 2 * top, iw + 2 * left):
            continue
        c.attrs["padding"] = (c.attrs["padding"][0] + top, c.attrs["padding"][1] + left)
        c.inputs[0], c.in_shapes[0] = p.inputs[0], (c.in_shapes[0][0], p.attrs["planes"], ih, iw)
        del g.buffers[p.output]
        g.nodes.remove(p)


def _fuse_into_producers(g: Graph, op: str, fits, merge) -> None:
    """Every node of `op` whose input's producer p it is the only reader of, and for which fits(p, n), becomes part
    of p (merge(p, n) updates p's attributes), until no more do."""
    changed = True
    while changed:
        changed = False
        for n in g.nodes:
            if n.op != op:
                continue
            p = g.producer(n.inputs[0])
            if p is None or not _sole_consumer(g, n.inputs[0]) or not fits(p, n):
                continue
            merge(p, n)
            _absorb(g, p, n)
            changed = True
            break


def merge_affines(g: Graph) -> None:
    """Consecutive affine nodes ((x - m) / s: two) become one, y = x * (s1 s2) + (t1 s2 + t2), in float64 before the
    float32 rounding of the stored constants; then every affine's constants are float32."""

    def merge(p, n):
        s1, t1, s2, t2 = p.attrs["scale"], p.attrs["shift"], n.attrs["scale"], n.attrs["shift"]
        p.attrs["scale"], p.attrs["shift"] = s1 * s2, t1 * s2 + t2
        p.attrs["out_min"], p.attrs["out_max"] = n.attrs["out_min"], n.attrs["out_max"]

    # the same number of channels means the same split of the flat buffer into channels (a view between that
    # regroups them, [1, 4] -> [1, 2, 2], does not merge)
    _fuse_into_producers(g, "affine", lambda p, n: p.op == "affine" and p.attrs["out_min"] == -INF and
                         p.attrs["out_max"] == INF and np.size(p.attrs["scale"]) == np.size(n.attrs["scale"]), merge)
    for n in g.nodes:
        if n.op == "affine":
            n.attrs["scale"] = np.asarray(n.attrs["scale"], np.float64).astype(np.float32)
            n.attrs["shift"] = np.asarray(n.attrs["shift"], np.float64).astype(np.float32)


def fuse_clamps(g: Graph) -> None:
    """A clamp (relu, relu6, hardtanh) right after fc/conv/add/affine/clamp, as its input's only user, is fused
    into that node's output clamp (not when the two ranges do not meet: PyTorch's order of min/max is kept)."""

    def fits(p, c):
        return p.op in CLAMP_FUSABLE_OPS + ("clamp",) and \
            max(p.attrs["out_min"], c.attrs["out_min"]) <= min(p.attrs["out_max"], c.attrs["out_max"])

    def merge(p, c):
        p.attrs["out_min"] = max(p.attrs["out_min"], c.attrs["out_min"])
        p.attrs["out_max"] = min(p.attrs["out_max"], c.attrs["out_max"])

    _fuse_into_producers(g, "clamp", fits, merge)


def drop_dead(g: Graph) -> None:
    live = {g.output}
    keep = []
    for n in reversed(g.nodes):
        if n.output in live:
            keep.append(n)
            live.update(n.inputs)
    g.nodes = keep[::-1]
    g.buffers = {k: v for k, v in g.buffers.items() if k in live or k == g.input}


def from_program(ep: torch.export.ExportedProgram) -> Graph:
    g = _Converter(ep).run()
    drop_dead(g)
    fold_pads(g)
    fold_batchnorm(g)
    merge_affines(g)
    fuse_clamps(g)
    drop_dead(g)
    g.validate()
    return g


def load(path: str | os.PathLike) -> tuple[Graph, Loaded]:
    loaded = load_program(path)
    return from_program(loaded.program), loaded
