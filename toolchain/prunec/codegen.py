"""Graph + encodings + plan + Target -> the files of a build directory (rendered from templates/).

Files (NAME is the model's C name):
  NAME.h             the API: NAME_INPUT_SIZE, NAME_OUTPUT_SIZE (floats), NAME_ARENA_BYTES, NAME_run
  NAME.c             static const kernel parameters, the layer calls in order over the planned arena;
                     weights as `static const` arrays (storage "c")
  NAME_weights.S     storage "blob": the weight arrays as symbols over NAME_weights.bin via .incbin
  NAME_weights.bin   storage "blob": every weight array, little-endian, each at a 16-byte aligned offset
  runtime/           the runtime headers and only the kernel sources the layers use
  Makefile, CMakeLists.txt, manifest.json

Storage. A C initialiser costs the compiler ~3 us and ~300 bytes of memory per element (gcc 12 and
clang 14, -O2, measured on 6.7 M floats: ~20 s and 2-3.6 GB for one file), so AlexNet-size weights as C
arrays take minutes and gigabytes. Above `BLOB_THRESHOLD` bytes of weights ("auto") the arrays go to a binary
blob assembled with `.incbin`, which gcc, clang and arm-none-eabi assemble in well under a second. Both
forms hold the same bytes; floats are bit-exact either way (C literals are printed with %.9g, which
round-trips float32).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from . import __version__
from . import runtime
from .encode import Encoding, stored
from .errors import PrunecError
from .graph import Graph, Node, numel, shared_weights
from .plan import Plan
from .resources import templates_dir
from .targets import Target

BLOB_THRESHOLD = 1 << 20  # bytes of weight arrays above which storage "auto" picks the blob
STORAGES = ("auto", "c", "blob")
BLOB_ALIGN = 16
# the values of a blocked or relative-indexed sliced layout (docs/FORMAT.md "Blocked fc layers", "Sliced fc layers"):
# 64-byte aligned, so that none of the kernels' 64-byte loads of 16 slots crosses a cache line (the real
# LeNet-300-100 fc1 in the blocked layout, in a C loop: 4.1 -> 3.1 us)
BSELL_ALIGN = 64
C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while",
    "_Bool", "_Complex", "_Imaginary", "asm", "bool", "true", "false", "main",
}
# Names whose NAME.h would shadow a header that the generated code, the runtime or the user's code includes
# with <...> (the build directory is on the include path: `-I DIR`); compared case-insensitively, as on
# case-insensitive file systems `Math.h` shadows <math.h> too.
SYSTEM_HEADER_STEMS = {
    "assert", "complex", "ctype", "errno", "fenv", "float", "inttypes", "iso646", "limits", "locale", "math",
    "setjmp", "signal", "stdalign", "stdarg", "stdatomic", "stdbool", "stddef", "stdint", "stdio", "stdlib",
    "stdnoreturn", "string", "tgmath", "threads", "time", "uchar", "wchar", "wctype", "unistd", "pthread",
    "strings", "alloca", "malloc", "features", "immintrin", "x86intrin", "xmmintrin", "emmintrin", "pmmintrin",
    "smmintrin", "nmmintrin", "avxintrin", "arm_neon", "arm_mve", "arm_acle", "arm_fp16", "arm_bf16", "arm_sve",
    "cmsis_gcc", "cmsis_compiler",
}
# Names CMake reserves for its own targets (add_library() refuses them), and libraries the build links (-lm:
# a libm.a of the model's would shadow the math library, and CMake refuses a target `m` linking `m`).
RESERVED_TARGET_NAMES = {
    "all", "clean", "help", "install", "test", "package", "package_source", "edit_cache", "rebuild_cache",
    "depend", "list_install_components", "all_build", "zero_check", "run_tests", "c", "m", "gcc", "rdimon",
    "nosys",
}
# Flash estimate of code: per kernel source linked, and per layer call (a generous figure for -O2 C).
CODE_BYTES_PER_KERNEL_SOURCE = 2048
CODE_BYTES_PER_LAYER = 96


def validate_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name or "") or name in C_KEYWORDS or len(name) > 48:
        raise PrunecError(f"--name {name!r} is not usable as a C identifier: use letters, digits and '_', starting "
                          f"with a letter, at most 48 characters, not a C keyword (e.g. --name lenet300)")
    if name.startswith("prunec_"):
        raise PrunecError(f"--name {name!r}: the prefix 'prunec_' is reserved for the runtime")
    if name.lower() in SYSTEM_HEADER_STEMS:
        raise PrunecError(f"--name {name!r}: {name}.h would shadow the system header <{name.lower()}.h> for every file "
                          f"compiled with -I<build dir>; choose another name (e.g. --name {name}_net)")
    if name.lower() in RESERVED_TARGET_NAMES:
        raise PrunecError(f"--name {name!r}: reserved as a CMake target or a system library name (lib{name}.a); "
                          f"choose another name (e.g. --name {name}_net)")
    return name


def c_comment(s: str) -> str:
    """`s` made safe inside a one-line C comment: no comment delimiters, no trigraphs, no control characters
    (module names are arbitrary strings: nn.Module.add_module accepts 'a*/b')."""
    s = "".join(c if c.isprintable() else "?" for c in str(s))
    while "*/" in s or "/*" in s or "??" in s:
        s = s.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    return s


def c_ident(s: str) -> str:
    """A layer's C identifier (before de-duplication): every character other than an ASCII letter, digit or `_`
    becomes `_` (ISO C99 identifiers, and assembler symbols, are ASCII), `l` in front unless it starts with a letter."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    return s if re.match(r"[A-Za-z]", s) else "l" + s


def c_float(x: float) -> str:
    """A C float literal that reads back to exactly the same float32."""
    x = float(x)
    if math.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    if math.isnan(x):
        raise PrunecError("NaN in the model's parameters")
    s = "%.9g" % x
    if not any(c in s for c in ".e"):
        s += ".0"
    return s + "f"


def _fmt_rows(items: list[str], per_line: int) -> str:
    return "\n".join("  " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


@dataclass
class Array:
    """One constant array of the model: a C type, a symbol, the bytes."""

    symbol: str
    ctype: str  # float, uint8_t, uint16_t, uint32_t
    data: np.ndarray
    align: int = 16  # bytes; more than 16 only for a sliced layout's values (a kernel loads them 64 bytes at a time)

    @property
    def count(self) -> int:
        return int(self.data.size)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def c_body(self) -> str:
        d = self.data.reshape(-1)
        if d.size == 0:
            return "  0"
        if self.ctype == "float":
            return _fmt_rows([c_float(v) for v in d.astype(np.float32).tolist()], 8)
        if self.ctype == "uint8_t":
            return _fmt_rows([str(v) for v in d.tolist()], 24)
        return _fmt_rows([f"{v}u" for v in d.tolist()], 12)


@dataclass
class Layer:
    """What codegen needs of one node: its kernel, parameter structs and call."""

    node: Node
    ident: str
    kernel: runtime.Kernel
    encoding: Encoding | None
    arrays: list[Array] = field(default_factory=list)
    structs: list[str] = field(default_factory=list)  # C definitions of static const structs
    call: str = ""
    comment: str = ""


def _buf(plan: Plan, g: Graph, name: str) -> str:
    if name == g.input:
        return "input"
    if name == g.output:
        return "output"
    return f"a + {plan.offsets[name] // 4}"


def _kernel_op(n: Node, enc: Encoding | None) -> str:
    if n.op == "fc" and enc.format == "bsell":
        return "fc_bsell"  # the blocked sliced layout (docs/FORMAT.md "Blocked fc layers")
    if n.op == "fc" and enc.format == "rsell":
        return "fc_rsell"  # the relative-indexed sliced layout (docs/FORMAT.md "Sliced fc layers")
    if n.op == "fc" and enc.format == "wsell":
        return "fc_wsell"  # the windowed sliced layout (docs/FORMAT.md "Windowed fc layers")
    if n.op == "fc" and enc.format == "acsr":
        return "fc_acsr"  # absolute-indexed CSR (docs/FORMAT.md "Absolute-indexed fc layers")
    if n.op == "fc" and enc.format == "rcsr" and enc.columns:
        return "fc_rcsc"  # stored column by column, zero inputs skipped
    if n.op in ("fc", "conv2d"):
        return f"{n.op}_{'rcsr' if enc.format == 'rcsr' else 'dense'}"
    return n.op


def _params(ctype: str, name: str, vals: list[int]) -> str:
    """A static const parameter struct of unsigned fields."""
    return f"static const {ctype} {name} = {{{', '.join(f'{v}u' for v in vals)}}};"


def _conv_vals(n: Node, in_c: int, out_c: int, groups: int) -> list[int]:
    """prunec_conv2d_params of conv node `n` with the given channel counts and groups (a per-channel call of a
    fused layer runs one output channel of one group)."""
    _, _, ih, iw = n.in_shapes[0]
    _, _, oh, ow = n.out_shape
    a = n.attrs
    return [in_c, ih, iw, out_c, oh, ow, *a["kernel"], *a["stride"], *a["padding"], *a["dilation"], groups]


def _pool_vals(n: Node, channels: int) -> list[int]:
    _, _, ih, iw = n.in_shapes[0]
    _, _, oh, ow = n.out_shape
    a = n.attrs
    return [channels, ih, iw, oh, ow, *a["kernel"], *a["stride"], *a["padding"], int(a.get("count_include_pad", False))]


# Kernels of one call for a fused conv + pool pair: (conv op, pool op) -> op key (runtime_c/kernels.inc). Used where
# the target selects a non-portable one (it computes the convolution's shared set-up, e.g. x86's packed input,
# once instead of once per channel); otherwise the per-channel loop of `_fused_conv_pool` runs the pair.
FUSED_OPS = {("conv2d_rcsr", "maxpool2d"): "conv2d_rcsr_maxpool2d"}


def fused_kernel(conv: Node, enc: Encoding | None, pool: Node, target: Target) -> runtime.Kernel | None:
    """The one-call kernel of the fused pair (conv, pool) on `target`, or None (the per-channel loop): only
    ISA kernels are used, the portable twin being the loop itself."""
    op = FUSED_OPS.get((_kernel_op(conv, enc), pool.op))
    if op is None:
        return None
    k = runtime.select(op, target.isa_for(op))
    return None if k.isa == runtime.PORTABLE else k


def _fused_conv_pool(L: Layer, g: Graph, plan: Plan, target: Target, ident: str, sym, bias: str, x: str, lo: str,
                     hi: str, pool: Node) -> str:
    """The C of a convolution with the pool after it fused (prunec.fuse): per output channel c, the conv kernel
    over the one-row view of its weights into the plane (the conv output's slot in the plan), then the pool
    kernel over the plane into channel c of the pool's output."""
    n = L.node
    _, ci, ih, iw = n.in_shapes[0]
    _, co, oh, ow = n.out_shape
    a = n.attrs
    groups = a["groups"]
    cin_g, cout_g = ci // groups, co // groups
    L.structs.insert(0, _params("prunec_conv2d_params", f"{ident}_pc", _conv_vals(n, cin_g, 1, 1)))
    # No suffix of a layer's symbols may be "<word>_<another suffix>": "pool_pc" was, so conv `x`'s pool
    # parameters and the conv parameters of a fused conv named `x_pool` were both `x_pool_pc`.
    if pool.op != "adaptive_avgpool2d":
        L.structs.append(_params("prunec_pool2d_params", f"{ident}_poolpc", _pool_vals(pool, 1)))
    enc = L.encoding
    if enc.format == "rcsr":
        r = enc.rcsr
        view = (f"const prunec_rcsr_f32 w_c = {{1u, {r.cols}u, {r.index_bits}u, {sym('values')}, {sym('index')}, "
                f"{sym('row_ptr')} + c}};")
    else:
        view = f"const prunec_dense_f32 w_c = {{1u, {enc.cols}u, {sym('values')} + c * {enc.cols}u}};"
    pk = runtime.select(_kernel_op(pool, None), target.isa_for(pool.op))
    plane = _buf(plan, g, n.output)
    y = _buf(plan, g, pool.output)
    pool_plane = numel(pool.out_shape[2:])
    if pool.op == "adaptive_avgpool2d":
        pool_args = f"1u, {oh}u, {ow}u, {pool.out_shape[2]}u, {pool.out_shape[3]}u"
    else:
        pool_args = f"&{ident}_poolpc"
    xin = x if groups == 1 else f"{x} + (c / {cout_g}u) * {cin_g * ih * iw}u"
    b = "NULL" if bias == "NULL" else f"{bias} + c"
    return "\n  ".join([
        f"for (uint32_t c = 0u; c < {co}u; c++) {{",
        f"  {view}",
        f"  {L.kernel.name}(&{ident}_pc, &w_c, {b}, {xin}, {plane}, {lo}, {hi});",
        f"  {pk.name}({pool_args}, {plane}, {y} + c * {pool_plane}u);",
        "}"])


def make_layers(g: Graph, encodings: dict[str, Encoding], plan: Plan, target: Target, name: str,
                blob: bool, fused: dict[int, int] | None = None) -> list[Layer]:
    """`fused`: conv node index -> index of the pool node fused into it (prunec.fuse; `plan` must be the plan of
    fuse.planning_graph)."""
    fused = fused or {}
    fused_into = {j: i for i, j in fused.items()}
    one_call: dict[int, runtime.Kernel] = {}  # fused conv index -> its one-call kernel (fused_kernel)
    layers = []
    used: set[str] = set()
    shared = shared_weights(g)
    syms: dict[str, object] = {}  # layer name -> its array symbol maker (a shared weight uses its first layer's)
    for i, n in enumerate(g.nodes):
        ident = c_ident(n.name)
        while ident in used:
            ident += "_"
        used.add(ident)
        enc = encodings.get(n.name)
        try:
            op = _kernel_op(n, enc)
            k = runtime.select(op, target.isa_for(op))
        except KeyError as e:
            raise PrunecError(f"layer {n.name}: {e.args[0]}") from None
        if i in fused:
            fk = fused_kernel(n, enc, g.nodes[fused[i]], target)
            if fk is not None:
                one_call[i] = k = fk
        elif i in fused_into and fused_into[i] in one_call:
            k = one_call[fused_into[i]]  # what runs this pool: the conv's one call (the manifest says so)
        sym = (lambda s, ident=ident: f"{name}_{ident}_{s}") if blob else (lambda s, ident=ident: f"{ident}_{s}")
        syms[n.name] = sym
        wsym = syms[shared[n.name]] if n.name in shared else sym  # the weight's arrays (values, index, row_ptr)
        L = Layer(n, ident, k, enc)
        x = [_buf(plan, g, b) for b in n.inputs]
        y = _buf(plan, g, n.output)
        lo, hi = c_float(n.attrs.get("out_min", -math.inf)), c_float(n.attrs.get("out_max", math.inf))
        bias = "NULL"
        if n.bias is not None:
            L.arrays.append(Array(sym("bias"), "float", n.bias.astype(np.float32)))
            bias = sym("bias")
        if n.op in ("fc", "conv2d"):
            own = n.name not in shared  # a layer sharing an earlier one's weight references its arrays
            if enc.sliced is not None:  # the sliced layouts (docs/FORMAT.md "Blocked fc layers", "Sliced fc layers"):
                sl = enc.sliced  # the same arrays; steps uint8 (bsell) or uint32 (rsell), as the encoder made them
                if own:
                    L.arrays += [Array(sym("values"), "float", sl.values.astype(np.float32), align=BSELL_ALIGN),
                                 Array(sym("index"), "uint8_t", sl.index.astype(np.uint8)),
                                 Array(sym("steps"), f"{sl.steps.dtype.name}_t", sl.steps),
                                 Array(sym("perm"), "uint16_t", sl.perm.astype(np.uint16))]
                L.structs.append(f"static const prunec_{enc.format}_f32 {ident}_w = {{{sl.rows}u, {sl.cols}u, "
                                 f"{wsym('perm')}, {wsym('steps')}, {wsym('index')}, {wsym('values')}}};")
            elif enc.format == "wsell":  # docs/FORMAT.md "Windowed fc layers"
                ws = enc.wsell
                if own:
                    L.arrays += [Array(sym("values"), "float", ws.values.astype(np.float32)),
                                 Array(sym("index"), "uint8_t", ws.index.astype(np.uint8)),
                                 Array(sym("advance"), "uint32_t", ws.advance.astype(np.uint32)),
                                 Array(sym("start"), "uint32_t", ws.start.astype(np.uint32)),
                                 Array(sym("steps"), "uint32_t", ws.steps.astype(np.uint32)),
                                 Array(sym("perm"), "uint16_t", ws.perm.astype(np.uint16))]
                L.structs.append(f"static const prunec_wsell_f32 {ident}_w = {{{ws.rows}u, {ws.cols}u, "
                                 f"{wsym('perm')}, {wsym('steps')}, {wsym('start')}, {wsym('advance')}, "
                                 f"{wsym('index')}, {wsym('values')}}};")
            elif enc.format == "acsr":  # docs/FORMAT.md "Absolute-indexed fc layers"
                a = enc.acsr
                if own:
                    L.arrays += [Array(sym("values"), "float", a.values.astype(np.float32)),
                                 Array(sym("columns"), "uint32_t", a.columns.astype(np.uint32)),
                                 Array(sym("row_ptr"), "uint32_t", a.row_ptr.astype(np.uint32))]
                L.structs.append(f"static const prunec_acsr_f32 {ident}_w = {{{a.rows}u, {a.cols}u, "
                                 f"{wsym('values')}, {wsym('columns')}, {wsym('row_ptr')}}};")
            elif enc.format == "rcsr":
                r = enc.rcsr
                if own:
                    L.arrays += [Array(sym("values"), "float", r.values.astype(np.float32)),
                                 Array(sym("index"), "uint8_t", np.frombuffer(r.packed_index(), dtype=np.uint8)),
                                 Array(sym("row_ptr"), "uint32_t", r.row_ptr.astype(np.uint32))]
                if i not in fused or i in one_call:  # a looped conv reads one-row views (an unused _w: a -Wall warning)
                    L.structs.append(f"static const prunec_rcsr_f32 {ident}_w = {{{r.rows}u, {r.cols}u, "
                                     f"{r.index_bits}u, {wsym('values')}, {wsym('index')}, {wsym('row_ptr')}}};")
            else:
                if own:
                    L.arrays.append(Array(sym("values"), "float", enc.dense.astype(np.float32)))
                if i not in fused or i in one_call:
                    L.structs.append(f"static const prunec_dense_f32 {ident}_w = {{{enc.rows}u, {enc.cols}u, "
                                     f"{wsym('values')}}};")
        if n.op == "fc":
            L.call = f"{k.name}(&{ident}_w, {bias}, {x[0]}, {y}, {lo}, {hi});"
        elif n.op == "conv2d" and i in one_call:
            pool = g.nodes[fused[i]]
            vals = _conv_vals(n, n.in_shapes[0][1], n.out_shape[1], n.attrs["groups"])
            L.structs.insert(0, _params("prunec_conv2d_params", f"{ident}_p", vals))
            L.structs.append(_params("prunec_pool2d_params", f"{ident}_poolp", _pool_vals(pool, pool.in_shapes[0][1])))
            L.call = (f"{k.name}(&{ident}_p, &{ident}_w, {bias}, &{ident}_poolp, {x[0]}, {y}, "
                      f"{_buf(plan, g, pool.output)}, {lo}, {hi});")
        elif n.op == "conv2d" and i in fused:
            L.call = _fused_conv_pool(L, g, plan, target, ident, wsym, bias, x[0], lo, hi, g.nodes[fused[i]])
        elif n.op == "conv2d":
            vals = _conv_vals(n, n.in_shapes[0][1], n.out_shape[1], n.attrs["groups"])
            L.structs.insert(0, _params("prunec_conv2d_params", f"{ident}_p", vals))
            L.call = f"{k.name}(&{ident}_p, &{ident}_w, {bias}, {x[0]}, {y}, {lo}, {hi});"
        elif i in fused_into:
            L.call = ""  # runs inside the convolution's channel loop
        elif n.op in ("maxpool2d", "avgpool2d"):
            L.structs.append(_params("prunec_pool2d_params", f"{ident}_p", _pool_vals(n, n.in_shapes[0][1])))
            L.call = f"{k.name}(&{ident}_p, {x[0]}, {y});"
        elif n.op == "adaptive_avgpool2d":
            _, c, ih, iw = n.in_shapes[0]
            _, _, oh, ow = n.out_shape
            L.call = f"{k.name}({c}u, {ih}u, {iw}u, {oh}u, {ow}u, {x[0]}, {y});"
        elif n.op == "clamp":
            L.call = f"{k.name}({n.out_size}u, {x[0]}, {y}, {lo}, {hi});"
        elif n.op in ("sigmoid", "tanh"):
            L.call = f"{k.name}({n.out_size}u, {x[0]}, {y});"
        elif n.op in ("softmax", "log_softmax"):
            a = n.attrs
            L.call = f"{k.name}({a['outer']}u, {a['n']}u, {a['inner']}u, {x[0]}, {y});"
        elif n.op == "sub":  # the kernel allows y == a and y == b: no operand swap (a - b is not b - a)
            L.call = f"{k.name}({n.out_size}u, {x[0]}, {x[1]}, {y}, {lo}, {hi});"
        elif n.op in ("add", "mul"):
            xa, xb = x
            if plan.in_place.get(i) == n.inputs[1]:  # the kernel allows y == a: put the overwritten one first
                xa, xb = xb, xa  # (a mul's b is overwritten only when of a's shape: plan._slots)
            a_ = n.attrs
            L.call = (f"{k.name}({n.out_size}u, {xa}, {xb}, {y}, {lo}, {hi});" if n.op == "add" else
                      f"{k.name}({a_['channels']}u, {a_['inner']}u, {a_['b_inner']}u, {xa}, {xb}, {y});")
        elif n.op == "leaky_relu":
            L.call = f"{k.name}({n.out_size}u, {c_float(n.attrs['slope'])}, {x[0]}, {y});"
        elif n.op == "gelu":
            L.call = f"{k.name}({n.out_size}u, {int(n.attrs['approximate'] == 'tanh')}u, {x[0]}, {y});"
        elif n.op == "elu":
            a_ = n.attrs
            L.call = (f"{k.name}({n.out_size}u, {c_float(a_['scale'])}, {c_float(a_['input_scale'])}, "
                      f"{c_float(a_['neg_scale'])}, {x[0]}, {y});")
        elif n.op == "softplus":
            L.call = (f"{k.name}({n.out_size}u, {c_float(n.attrs['beta'])}, {c_float(n.attrs['threshold'])}, "
                      f"{x[0]}, {y});")
        elif n.op == "mish":
            L.call = f"{k.name}({n.out_size}u, {x[0]}, {y});"
        elif n.op == "pad2d":
            a_ = n.attrs
            (ih, iw), (top, bottom, left, right) = a_["in_hw"], a_["pads"]
            L.call = (f"{k.name}({a_['planes']}u, {ih}u, {iw}u, {ih + top + bottom}u, {iw + left + right}u, {top}, "
                      f"{left}, {c_float(a_['value'])}, {x[0]}, {y});")
        elif n.op == "upsample_nearest2d":
            _, c, ih, iw = n.in_shapes[0]
            L.call = f"{k.name}({c}u, {ih}u, {iw}u, {n.attrs['scale'][0]}u, {n.attrs['scale'][1]}u, {x[0]}, {y});"
        elif n.op == "upsample_bilinear2d":
            _, c, ih, iw = n.in_shapes[0]
            _, _, oh, ow = n.out_shape
            sh, sw = n.attrs["scale"]
            L.call = (f"{k.name}({c}u, {ih}u, {iw}u, {oh}u, {ow}u, {c_float(sh)}, {c_float(sw)}, "
                      f"{int(n.attrs['align_corners'])}u, {x[0]}, {y});")
        elif n.op == "permute":
            for what in ("shape", "stride"):
                vals = ", ".join(f"{v}u" for v in n.attrs[what])
                L.structs.append(f"static const uint32_t {ident}_{what}[4] = {{{vals}}};")
            L.call = f"{k.name}({ident}_shape, {ident}_stride, {x[0]}, {y});"
        elif n.op == "concat":  # one copy per input, each into its place in every run of the output
            outer, sizes = n.attrs["outer"], n.attrs["sizes"]
            calls, off = [], 0
            for xi, sz in zip(x, sizes):
                calls.append(f"{k.name}({outer}u, {sz}u, {sum(sizes)}u, {xi}, ({y}) + {off}u);")
                off += sz
            L.call = "\n  ".join(calls)
        elif n.op == "affine":
            sc, sh = n.attrs["scale"], n.attrs["shift"]
            ch = int(sc.size)
            # the constants are always C arrays in NAME.c (a few floats per channel), never in the weight blob
            L.structs.append(f"static const float {ident}_scale[{ch}] = {{{', '.join(c_float(v) for v in sc)}}};")
            L.structs.append(f"static const float {ident}_shift[{ch}] = {{{', '.join(c_float(v) for v in sh)}}};")
            L.call = (f"{k.name}({ch}u, {n.out_size // ch}u, {ident}_scale, {ident}_shift, {x[0]}, {y}, {lo}, {hi});")
        else:
            raise PrunecError(f"layer {n.name}: no code generator for op {n.op!r}")
        ins = " + ".join(str(tuple(s[1:])) for s in n.in_shapes)
        what = n.op
        if enc is not None:
            what += f", {enc.format}" + (f" {enc.index_bits}-bit, {enc.nonzero / max(1, enc.rows * enc.cols):.1%} dense"
                                          if enc.format == "rcsr" else "")
            if enc.sliced is not None:
                kind = "(blocked sliced layout)," if enc.format == "bsell" else "(relative-indexed sliced layout) 8-bit,"
                what += f" {kind} {enc.nonzero / max(1, enc.rows * enc.cols):.1%} dense, {enc.sliced.slots} slots"
            if enc.wsell is not None:
                what += (f" (windowed sliced layout), {enc.nonzero / max(1, enc.rows * enc.cols):.1%} dense, "
                         f"{enc.wsell.slots} slots")
            if enc.acsr is not None:
                what += (f" (absolute-indexed CSR), {enc.nonzero / max(1, enc.rows * enc.cols):.1%} dense, "
                         f"{enc.acsr.entries} entries")
            if enc.columns:
                what += ", stored by columns: zero inputs skipped"
        if i in plan.in_place:
            what += ", in place"
        if i in fused:
            p = g.nodes[fused[i]]
            what += f", {p.name} fused: one output channel at a time through a {numel(n.out_shape[2:])}-float plane"
            if i in one_call:
                what += ", one kernel call"
        if i in fused_into:
            what += (f", fused: runs inside the kernel of {g.nodes[fused_into[i]].name}" if fused_into[i] in one_call
                     else f", fused: runs inside the channel loop of {g.nodes[fused_into[i]].name}")
        L.comment = c_comment(f"{n.name}: {what}; {ins} -> {tuple(n.out_shape[1:])}")
        layers.append(L)
    return layers


def blob_layout(arrays: list[Array]) -> tuple[list[tuple[Array, int]], bytes]:
    """Arrays at 16-byte aligned offsets (an Array's own `align` where larger) of one little-endian blob."""
    parts, placed, off = [], [], 0
    for a in arrays:
        pad = (-off) % max(BLOB_ALIGN, a.align)
        if pad:
            parts.append(b"\0" * pad)
            off += pad
        raw = a.data.astype(a.data.dtype.newbyteorder("<"), copy=False).tobytes()
        placed.append((a, off))
        parts.append(raw)
        off += len(raw)
    return placed, b"".join(parts)


def banner(sha256: str, target: Target, comment: str) -> str:
    text = (f"Generated by prunec {__version__} for target '{target.name}' from the model with sha256 {sha256}. "
            f"Do not edit: re-run `prunec build`.")
    if comment == "c":
        return f"/* {text} */"
    return f"# {text}"


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(templates_dir())), undefined=StrictUndefined,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["c_comment"] = c_comment
    return env


def render(g: Graph, encodings: dict[str, Encoding], plan: Plan, target: Target, name: str, sha256: str,
           storage: str = "auto", fused: dict[int, int] | None = None) -> tuple[dict[str, bytes], list[runtime.Kernel], dict]:
    """The generated files (relative path -> bytes), the kernels used, and facts for the manifest. `fused`: conv
    node index -> pool node index fused into it (prunec.fuse), `plan` then being the fused plan."""
    if storage not in STORAGES:
        raise PrunecError(f"unknown weight storage {storage!r}; choose one of {', '.join(STORAGES)}")
    weight_bytes = sum(e.total_bytes for e in stored(encodings)) + sum(
        4 * n.bias.size for n in g.nodes if n.bias is not None)
    blob = storage == "blob" or (storage == "auto" and weight_bytes > BLOB_THRESHOLD)
    layers = make_layers(g, encodings, plan, target, name, blob, fused)
    kernels = list(dict.fromkeys(L.kernel for L in layers))
    sources = runtime.sources_for(kernels)
    arrays = [a for L in layers for a in L.arrays]
    env = _env()
    cb, hb = banner(sha256, target, "c"), banner(sha256, target, "#")
    ctx = dict(name=name, NAME=name.upper(), banner_c=cb, banner_hash=hb, graph=g, plan=plan, layers=layers,
               arrays=arrays, blob=blob, target=target, version=__version__, sha256=sha256,
               input_size=numel(g.input_shape), output_size=numel(g.output_shape), arena_bytes=plan.arena_bytes,
               input_shape=g.input_shape, output_shape=g.output_shape, headers=runtime.headers(), sources=sources,
               kernels=kernels, uses_arena=bool(plan.offsets))
    files: dict[str, bytes] = {}
    files[f"{name}.h"] = env.get_template("model.h.j2").render(**ctx).encode()
    if blob:
        placed, data = blob_layout(arrays)
        ctx["placed"] = placed
        ctx["blob_file"] = f"{name}_weights.bin"
        files[f"{name}_weights.S"] = env.get_template("weights.S.j2").render(**ctx).encode()
        files[f"{name}_weights.bin"] = data
    files[f"{name}.c"] = env.get_template("model.c.j2").render(**ctx).encode()
    files["Makefile"] = env.get_template("Makefile.j2").render(**ctx).encode()
    files["CMakeLists.txt"] = env.get_template("CMakeLists.txt.j2").render(**ctx).encode()
    facts = {"storage": "blob" if blob else "c", "kernels": [k.name for k in kernels], "runtime_sources": sources,
             "stored_bytes": sum(a.nbytes for a in arrays),
             "code_bytes_estimate": CODE_BYTES_PER_KERNEL_SOURCE * len(sources) + CODE_BYTES_PER_LAYER * len(layers),
             "layer_kernels": {L.node.name: L.kernel.name for L in layers}}
    return files, kernels, facts


def manifest_json(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode()
