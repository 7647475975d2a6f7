"""A lowered :class:`~firmware_export.graph.Network` -> plain C99 (one .c and one .h).

The generated code: weights as ``static const float`` arrays (in flash on the MCU), one
``static float`` arena for intermediate tensors whose size is fixed at export time (tensors
whose lifetimes do not overlap share it, first-fit), no dynamic allocation, no recursion, no
variable-length arrays, loops with compile-time bounds. It needs ``<math.h>`` (tanhf, expf,
... , single precision only, so it builds under the Crazyflie firmware's
``-Wdouble-promotion``) and nothing else.

API of the generated code (``PREFIX`` is ``swarm_policy`` unless chosen otherwise)::

    void PREFIX_run(const float obs[PREFIX_OBS_DIM], float action[PREFIX_ACTION_DIM]);

Not re-entrant (one arena); the firmware calls it from one task.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from firmware_export.graph import (BINARY_OPS, UNARY_OPS, FirmwareExportError, Network, Step,
                                   Value)

UNROLL = "#pragma GCC unroll 8"
"""Before every dot-product loop: the same additions in the same order, with less loop
overhead (16 % fewer instructions on the Cortex-M4 for the shipped policies, 1.3 KB more
code)."""
INLINE_RUNS = 16
"""An element move with at most this many contiguous runs is emitted as one loop per run;
more runs go into a table."""


def literal(value: float) -> str:
    """C float literal that parses back to exactly ``float32(value)``."""
    f = np.float32(value)
    if np.isnan(f):
        return "NAN"
    if np.isinf(f):
        return "INFINITY" if f > 0 else "(-INFINITY)"
    text = np.format_float_scientific(f, unique=True, trim="-")
    return f"{text}f" if not text.startswith("-") else f"({text}f)"


def c_identifier(text: str) -> str:
    out = re.sub(r"[^0-9A-Za-z_]", "_", text)
    return out if re.match(r"[A-Za-z_]", out) else f"_{out}"


def _comment(text: str) -> str:
    return text.replace("*/", "* /").replace("/*", "/ *")


@dataclass
class CSources:
    """Generated ``header`` and ``source`` text, their file names, and the arena size."""

    prefix: str
    header: str
    source: str
    arena_floats: int

    @property
    def files(self) -> dict[str, str]:
        return {f"{self.prefix}.h": self.header, f"{self.prefix}.c": self.source}


# --- loops ---------------------------------------------------------------------------------------
def _contiguous_strides(shape: Sequence[int]) -> list[int]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return strides[::-1]


def _broadcast_strides(shape: Sequence[int], out_shape: Sequence[int]) -> list[int]:
    """Element strides of a tensor of ``shape`` read as broadcast to ``out_shape``."""
    rank = len(out_shape)
    padded = [1] * (rank - len(shape)) + list(shape)
    strides = _contiguous_strides(padded)
    return [0 if padded[d] == 1 and out_shape[d] != 1 else strides[d] for d in range(rank)]


def _collapse(shape: Sequence[int], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop unit dimensions and merge neighbours every operand walks contiguously."""
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    out_shape = [shape[d] for d in dims]
    out_strides = [[s[d] for d in dims] for s in strides]
    d = len(out_shape) - 1
    while d > 0:
        if all(s[d - 1] == s[d] * out_shape[d] for s in out_strides):
            out_shape[d - 1] *= out_shape[d]
            for s in out_strides:
                s[d - 1] = s[d]
                del s[d]
            del out_shape[d]
        d -= 1
    return out_shape, out_strides


def _index(terms: Sequence[tuple[str, int]], offset: int = 0) -> str:
    parts = [(v if s == 1 else f"{v} * {s}") for v, s in terms if s != 0]
    if offset or not parts:
        parts.append(str(offset))
    return " + ".join(parts)


def _nest(extents: Sequence[tuple[str, int]], body: list[str], indent: int) -> list[str]:
    """``for`` loops over (variable, extent), outermost first, around ``body``; a loop of
    extent 1 is left out (its variable must not appear in ``body``)."""
    lines, pad = [], "    " * indent
    depth = 0
    for var, n in extents:
        if n == 1:
            continue
        lines.append(f"{pad}{'    ' * depth}for (int {var} = 0; {var} < {n}; ++{var}) {{")
        depth += 1
    lines += [f"{pad}{'    ' * depth}{line}" for line in body]
    lines += [f"{pad}{'    ' * d}}}" for d in reversed(range(depth))]
    return lines


def _drop_unit(terms: Sequence[tuple[str, int]], extents: dict[str, int]
               ) -> list[tuple[str, int]]:
    return [(v, s) for v, s in terms if extents.get(v, 2) != 1]


# --- the generator -------------------------------------------------------------------------------
class _Emitter:
    def __init__(self, net: Network, prefix: str) -> None:
        self.net = net
        self.prefix = prefix
        self.names: dict[int, str] = {}
        self.const_decls: list[str] = []
        self.body: list[str] = []
        self.arena_floats = 0
        self.offsets: dict[int, int] = {}

    # storage
    def ptr(self, v: Value) -> str:
        root = v.root
        if root.const is not None:
            base = self.const_array(root)
        else:
            base = self.names[id(root)]
        off = v.root_offset + self.offsets.get(id(root), 0)
        return base if off == 0 else f"({base} + {off})"

    def const_array(self, v: Value) -> str:
        if id(v) not in self.names:
            name = f"{self.prefix}_k{len(self.const_decls)}"
            data = np.asarray(v.const, dtype=np.float32).reshape(-1)
            vals = [literal(x) for x in data]
            rows = [", ".join(vals[i:i + 8]) for i in range(0, len(vals), 8)]
            body = ",\n    ".join(rows)
            self.const_decls.append(f"/* {_comment(v.name)}: shape {list(v.shape)} */\n"
                                    f"static const float {name}[{max(1, data.size)}] = {{\n"
                                    f"    {body}\n}};\n")
            self.names[id(v)] = name
        return self.names[id(v)]

    def elem(self, v: Value, index: str) -> str:
        """C lvalue of element ``index`` (an expression) of ``v``, view offset folded in."""
        root = v.root
        base = self.const_array(root) if root.const is not None else self.names[id(root)]
        off = v.root_offset + self.offsets.get(id(root), 0)
        if off:
            index = str(off) if index == "0" else f"{off} + {index}"
        return f"{base}[{index}]"

    def operand(self, v: Value, index: str) -> str:
        """C expression of element ``index`` of ``v``; constant scalars inline."""
        if v.const is not None and v.size == 1:
            return literal(float(np.asarray(v.const, dtype=np.float32).reshape(())))
        return self.elem(v, index)

    def allocate(self) -> None:
        """Give every step output a place: the action array for the graph output, else the
        arena (first fit among blocks whose tensors are dead)."""
        steps = self.net.steps
        out_root = self.net.output.root
        last_use: dict[int, int] = {}
        for i, step in enumerate(steps):
            for v in list(step.inputs) + list(step.attrs.get("sources", ())):
                if v is not None and v.const is None:
                    last_use[id(v.root)] = i
        last_use[id(out_root)] = len(steps)
        self.names[id(self.net.input)] = "obs"
        live: list[tuple[int, int, int]] = []  # (start, size, root id)
        for i, step in enumerate(steps):
            live = [blk for blk in live if last_use.get(blk[2], -1) >= i]
            out = step.output
            if out is out_root and out.base is None:
                self.names[id(out)] = "action"
                continue
            size = out.size
            start = 0
            for blk_start, blk_size, _ in sorted(live):
                if blk_start - start >= size:
                    break
                start = max(start, blk_start + blk_size)
            live.append((start, size, id(out)))
            self.arena_floats = max(self.arena_floats, start + size)
            self.names[id(out)] = f"{self.prefix}_arena"
            self.offsets[id(out)] = start

    # steps
    def emit(self) -> None:
        self.allocate()
        for step in self.net.steps:
            lines = self.lower(step)
            shape = list(step.output.shape)
            self.body.append(f"    /* {_comment(step.node)}: {step.attrs.get('onnx_op', step.op)}"
                             f" -> {shape} */")
            self.body.append("    {")
            self.body += [f"    {line}" if line else line for line in lines]
            self.body.append("    }")
        out = self.net.output
        if out.root is not out or self.names.get(id(out)) != "action":
            self.body.append("    /* graph output */")
            self.body.append(f"    for (int i = 0; i < {out.size}; ++i) {{")
            self.body.append(f"        action[i] = {self.elem(out, 'i')};")
            self.body.append("    }")

    def lower(self, step: Step) -> list[str]:
        if step.op in UNARY_OPS or step.op in BINARY_OPS:
            return self.elementwise(step)
        method: Callable[[Step], list[str]] = getattr(self, f"op_{step.op}", None)
        if method is None:  # pragma: no cover - graph.py only lets supported ops through
            raise FirmwareExportError(f"{self.net.source}: node '{step.node}': no C lowering "
                                      f"for {step.op}")
        return method(step)

    def elementwise(self, step: Step) -> list[str]:
        out = step.output
        operands = [v for v in step.inputs if v is not None]
        strides = [_contiguous_strides(out.shape)] + [_broadcast_strides(v.shape, out.shape)
                                                      for v in operands]
        shape, strides = _collapse(out.shape, strides)
        loop_vars = [f"i{d}" for d in range(len(shape))]
        extents = list(zip(loop_vars, shape))

        def at(k: int) -> str:
            return _index(list(zip(loop_vars, strides[k])))

        reads = [self.operand(v, at(k + 1)) for k, v in enumerate(operands)]
        xs = [f"x{k}" for k in range(len(reads))]
        body = [f"const float {x} = {r};" for x, r in zip(xs, reads)]
        body.append(f"{self.elem(out, at(0))} = {_expression(step, xs)};")
        return _nest(extents, body, 0)

    def op_Gemm(self, step: Step) -> list[str]:
        a, b, c = (list(step.inputs) + [None])[:3]
        at, bt = step.attrs.get("transA", 0), step.attrs.get("transB", 0)
        alpha, beta = float(step.attrs.get("alpha", 1.0)), float(step.attrs.get("beta", 1.0))
        m, k = (a.shape[1], a.shape[0]) if at else a.shape
        n = b.shape[0] if bt else b.shape[1]
        sa = (1, m) if at else (k, 1)  # strides of (row m, col k)
        sb = (1, k) if bt else (n, 1)  # strides of (k, n)
        ext = {"m": m, "n": n}
        a_idx = _index(_drop_unit([("m", sa[0]), ("k", sa[1])], ext))
        b_idx = _index(_drop_unit([("k", sb[0]), ("n", sb[1])], ext))
        acc = "acc" if alpha == 1.0 else f"{literal(alpha)} * acc"
        if c is not None and beta != 0.0:
            cs = _broadcast_strides(c.shape, (m, n))
            cval = self.operand(c, _index(_drop_unit([("m", cs[0]), ("n", cs[1])], ext)))
            acc += f" + {cval}" if beta == 1.0 else f" + {literal(beta)} * {cval}"
        o_idx = _index(_drop_unit([("m", n), ("n", 1)], ext))
        body = ["float acc = 0.0f;",
                UNROLL,
                f"for (int k = 0; k < {k}; ++k) {{",
                f"    acc += {self.elem(a, a_idx)} * {self.elem(b, b_idx)};",
                "}",
                f"{self.elem(step.output, o_idx)} = {acc};"]
        return _nest([("m", m), ("n", n)], body, 0)

    def op_MatMul(self, step: Step) -> list[str]:
        a, b = step.inputs[:2]
        out = step.output
        ash, bsh = list(a.shape), list(b.shape)
        if len(ash) == 1:
            ash = [1] + ash
        if len(bsh) == 1:
            bsh = bsh + [1]
        m, k, n = ash[-2], ash[-1], bsh[-1]
        batch = list(np.broadcast_shapes(tuple(ash[:-2]), tuple(bsh[:-2])))
        a_st = _broadcast_strides(ash[:-2], batch) if batch else []
        b_st = _broadcast_strides(bsh[:-2], batch) if batch else []
        a_st = [s * m * k for s in a_st]
        b_st = [s * k * n for s in b_st]
        o_st = [s * m * n for s in _contiguous_strides(batch)]
        bvars = [f"b{d}" for d in range(len(batch))]
        ext = dict(zip(bvars, batch)) | {"m": m, "n": n}
        a_idx = _index(_drop_unit(list(zip(bvars, a_st)) + [("m", k), ("k", 1)], ext))
        b_idx = _index(_drop_unit(list(zip(bvars, b_st)) + [("k", n), ("n", 1)], ext))
        o_idx = _index(_drop_unit(list(zip(bvars, o_st)) + [("m", n), ("n", 1)], ext))
        body = ["float acc = 0.0f;",
                UNROLL,
                f"for (int k = 0; k < {k}; ++k) {{",
                f"    acc += {self.elem(a, a_idx)} * {self.elem(b, b_idx)};",
                "}",
                f"{self.elem(out, o_idx)} = acc;"]
        return _nest(list(zip(bvars, batch)) + [("m", m), ("n", n)], body, 0)

    def _reduce(self, step: Step) -> list[str]:
        x, out = step.inputs[0], step.output
        axes = step.attrs["axes"]
        strides = _contiguous_strides(x.shape)
        kept = [d for d in range(len(x.shape)) if d not in axes]
        kvars = [(f"i{d}", x.shape[d], strides[d]) for d in kept]
        rvars = [(f"r{d}", x.shape[d], strides[d]) for d in axes]
        ext = {v: n for v, n, _ in kvars + rvars}
        out_st = _contiguous_strides([n for _, n, _ in kvars])
        o_idx = _index(_drop_unit([(v, s) for (v, _, _), s in zip(kvars, out_st)], ext))
        x_idx = _index(_drop_unit([(v, s) for v, _, s in kvars + rvars], ext))
        count = int(np.prod([n for _, n, _ in rvars])) if rvars else 1
        op = step.op
        init = {"ReduceSum": "0.0f", "ReduceMean": "0.0f", "ReduceMax": "(-INFINITY)",
                "ReduceMin": "INFINITY"}[op]
        xv = f"{self.elem(x, x_idx)}"
        update = {"ReduceSum": f"acc += {xv};", "ReduceMean": f"acc += {xv};",
                  "ReduceMax": f"if ({xv} > acc) {{ acc = {xv}; }}",
                  "ReduceMin": f"if ({xv} < acc) {{ acc = {xv}; }}"}[op]
        result = f"acc / {literal(count)}" if op == "ReduceMean" else "acc"
        inner = _nest([(v, n) for v, n, _ in rvars], [update], 0)
        body = [f"float acc = {init};"] + inner + [f"{self.elem(out, o_idx)} = {result};"]
        return _nest([(v, n) for v, n, _ in kvars], body, 0)

    op_ReduceSum = op_ReduceMean = op_ReduceMax = op_ReduceMin = _reduce

    def _softmax(self, step: Step) -> list[str]:
        x, out = step.inputs[0], step.output
        axis = step.attrs["axis"]
        outer = int(np.prod(x.shape[:axis]))
        n = x.shape[axis]
        inner = int(np.prod(x.shape[axis + 1:]))
        ext = {"o": outer, "j": inner}
        base = _drop_unit([("o", n * inner), ("j", 1)], ext)
        at = _index(base + [("a", inner)])
        def xp(i: str) -> str:
            return self.elem(x, i)

        def op_(i: str) -> str:
            return self.elem(out, i)

        body = [f"float mx = {xp(_index(base))};",
                f"for (int a = 1; a < {n}; ++a) {{",
                f"    if ({xp(at)} > mx) {{ mx = {xp(at)}; }}",
                "}",
                "float sum = 0.0f;",
                f"for (int a = 0; a < {n}; ++a) {{"]
        if step.op == "Softmax":
            body += [f"    const float e = expf({xp(at)} - mx);",
                     f"    {op_(at)} = e;",
                     "    sum += e;",
                     "}",
                     f"for (int a = 0; a < {n}; ++a) {{",
                     f"    {op_(at)} /= sum;",
                     "}"]
        else:
            body += [f"    sum += expf({xp(at)} - mx);",
                     "}",
                     "const float lse = mx + logf(sum);",
                     f"for (int a = 0; a < {n}; ++a) {{",
                     f"    {op_(at)} = {xp(at)} - lse;",
                     "}"]
        return _nest([("o", outer), ("j", inner)], body, 0)

    op_Softmax = op_LogSoftmax = _softmax

    def op_LayerNormalization(self, step: Step) -> list[str]:
        x, scale, bias = (list(step.inputs) + [None, None])[:3]
        out = step.output
        size = step.attrs["norm_size"]
        rows = out.size // size
        eps = step.attrs["epsilon"]
        for role, v in (("scale", scale), ("bias", bias)):
            if v is not None and v.size not in (1, size):
                raise FirmwareExportError(f"{self.net.source}: node '{step.node}' "
                                          f"(LayerNormalization): {role} of shape "
                                          f"{list(v.shape)} does not match the normalised "
                                          f"size {size}")
        row = _index(_drop_unit([("r", size)], {"r": rows}))
        at = f"{row} + c" if row != "0" else "c"
        def xp(i: str) -> str:
            return self.elem(x, i)

        def op_(i: str) -> str:
            return self.elem(out, i)

        y = "(x - mean) * inv"
        if scale is not None:
            y += f" * {self.operand(scale, 'c' if scale.size > 1 else '0')}"
        if bias is not None:
            y += f" + {self.operand(bias, 'c' if bias.size > 1 else '0')}"
        body = ["float mean = 0.0f;",
                f"for (int c = 0; c < {size}; ++c) {{ mean += {xp(at)}; }}",
                f"mean /= {literal(size)};",
                "float var = 0.0f;",
                f"for (int c = 0; c < {size}; ++c) {{",
                f"    const float d = {xp(at)} - mean;",
                "    var += d * d;",
                "}",
                f"var /= {literal(size)};",
                f"const float inv = 1.0f / sqrtf(var + {literal(eps)});",
                f"for (int c = 0; c < {size}; ++c) {{",
                f"    const float x = {xp(at)};",
                f"    {op_(at)} = {y};",
                "}"]
        return _nest([("r", rows)], body, 0)

    def op_Move(self, step: Step) -> list[str]:
        runs = step.attrs["runs"]
        sources = step.attrs["sources"]
        out = step.output
        if len(runs) <= INLINE_RUNS:
            lines = []
            for src, dst, at, n in runs:
                if n == 1:
                    lines.append(f"{self.elem(out, str(dst))} = "
                                 f"{self.elem(sources[src], str(at))};")
                else:
                    lines.append(f"for (int i = 0; i < {n}; ++i) {{ "
                                 f"{self.elem(out, _index([('i', 1)], dst))} = "
                                 f"{self.elem(sources[src], _index([('i', 1)], at))}; }}")
            return lines
        ctype = "unsigned short" if max(max(r) for r in runs) < 65536 else "unsigned long"
        table = ",\n".join(f"    {{{s}u, {d}u, {a}u, {n}u}}" for s, d, a, n in runs)
        srcs = ", ".join(self.ptr(s) for s in sources)
        return [f"static const {ctype} runs[{len(runs)}][4] = {{",
                table,
                "};",
                f"const float *const src[{len(sources)}] = {{{srcs}}};",
                f"for (int r = 0; r < {len(runs)}; ++r) {{",
                "    for (int i = 0; i < (int)runs[r][3]; ++i) {",
                f"        {self.elem(out, 'runs[r][1] + i')} = src[runs[r][0]][runs[r][2] + i];",
                "    }",
                "}"]


def _expression(step: Step, xs: list[str]) -> str:
    """The C expression of an element-wise step on operand expressions ``xs``."""
    op, a = step.op, step.attrs
    x = xs[0]
    unary = {
        "Tanh": f"tanhf({x})",
        "Relu": f"({x} > 0.0f ? {x} : 0.0f)",
        "Sigmoid": f"1.0f / (1.0f + expf(-{x}))",
        "Exp": f"expf({x})",
        "Log": f"logf({x})",
        "Sqrt": f"sqrtf({x})",
        "Neg": f"-{x}",
        "Abs": f"fabsf({x})",
        "Reciprocal": f"1.0f / {x}",
        "Erf": f"erff({x})",
        "Softsign": f"{x} / (1.0f + fabsf({x}))",
        "Not": f"({x} != 0.0f ? 0.0f : 1.0f)",
        "Cast": f"({x} != 0.0f ? 1.0f : 0.0f)",
    }
    if op in unary:
        return unary[op]
    if op == "LeakyRelu":
        return f"({x} >= 0.0f ? {x} : {literal(a['alpha'])} * {x})"
    if op == "Elu":
        return f"({x} >= 0.0f ? {x} : {literal(a['alpha'])} * (expf({x}) - 1.0f))"
    if op == "Clip":
        lo, hi = a["min"], a["max"]
        expr = x
        if hi < np.inf:
            expr = f"({x} > {literal(hi)} ? {literal(hi)} : {x})"
        if lo > -np.inf:
            expr = f"({x} < {literal(lo)} ? {literal(lo)} : {expr})"
        return expr
    if op == "Where":
        return f"({xs[0]} != 0.0f ? {xs[1]} : {xs[2]})"
    binary = {
        "Add": "({a} + {b})", "Sub": "({a} - {b})", "Mul": "({a} * {b})", "Div": "({a} / {b})",
        "Pow": "powf({a}, {b})", "Sum": "({a} + {b})",
        "Max": "({a} > {b} ? {a} : {b})", "Min": "({a} < {b} ? {a} : {b})",
        "Less": "({a} < {b} ? 1.0f : 0.0f)", "Greater": "({a} > {b} ? 1.0f : 0.0f)",
        "LessOrEqual": "({a} <= {b} ? 1.0f : 0.0f)",
        "GreaterOrEqual": "({a} >= {b} ? 1.0f : 0.0f)",
        "Equal": "({a} == {b} ? 1.0f : 0.0f)",
        "And": "(({a} != 0.0f) && ({b} != 0.0f) ? 1.0f : 0.0f)",
        "Or": "(({a} != 0.0f) || ({b} != 0.0f) ? 1.0f : 0.0f)",
        "Xor": "(({a} != 0.0f) != ({b} != 0.0f) ? 1.0f : 0.0f)",
    }
    if op == "Mean":
        return f"({' + '.join(xs)}) / {literal(len(xs))}"
    template = binary[op]
    expr = xs[0]
    for other in xs[1:]:
        expr = template.format(a=expr, b=other)
    return expr


def _layout_defines(net: Network, up: str) -> list[str]:
    meta = net.metadata
    lines = []
    if "obs_slices" in meta:
        lines.append("/* Observation layout (world frame ENU, SI units; see sim/observation.py): "
                     "offsets into obs[]. */")
        for key in ("obs_layout_version", "obs_neighbours_k"):
            if key in meta:
                name = key.replace("obs_", "OBS_").upper()
                lines.append(f"#define {up}_{name} {int(meta[key])}")
        for part in meta["obs_slices"].split(";"):
            name, start, stop = part.split(":")
            cname = c_identifier(name).upper()
            lines.append(f"#define {up}_OBS_{cname}_START {int(start)}")
            lines.append(f"#define {up}_OBS_{cname}_SIZE {int(stop) - int(start)}")
    if "action_mode" in meta:
        mode = meta["action_mode"]
        lines.append("/* Action: 'motors' = 4 normalised thrusts in [0, 1] (M1 front-right ... "
                     "M4 front-left); 'velocity' = (vx, vy, vz, yaw rate) in [-1, 1], world "
                     "frame, scaled by MAX_SPEED_MPS and MAX_YAW_RATE_RAD_S. */")
        lines.append(f"#define {up}_ACTION_MODE_MOTORS {int(mode == 'motors')}")
        lines.append(f"#define {up}_ACTION_MODE_VELOCITY {int(mode == 'velocity')}")
        for key in ("action_low", "action_high"):
            if key in meta:
                vals = ", ".join(literal(float(v)) for v in meta[key].split(","))
                lines.append(f"#define {up}_{key.upper()} {{{vals}}}")
    for key, cast in (("control_hz", int), ("max_speed_mps", float),
                      ("max_yaw_rate_rad_s", float), ("neighbour_range_m", float)):
        if key in meta:
            value = str(int(meta[key])) if cast is int else literal(float(meta[key]))
            lines.append(f"#define {up}_{key.upper()} {value}")
    return lines


def generate(net: Network, prefix: str = "swarm_policy") -> CSources:
    """C99 sources of ``net``: ``PREFIX.h`` (dimensions, observation layout and action mode
    from the ONNX metadata, figures) and ``PREFIX.c`` (weights and ``PREFIX_run``)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise ValueError(f"prefix: must be a lower-case C identifier, got {prefix!r}")
    em = _Emitter(net, prefix)
    em.emit()
    up = prefix.upper()
    params = net.weights
    guard = f"{up}_H"
    provenance = [f" * {k}: {_comment(net.metadata[k])}" for k in
                  ("scenario", "model_preset", "encoder", "training_steps", "source_commit",
                   "producer") if k in net.metadata]
    header = "\n".join([
        f"/* {prefix}.h - generated by swarm_rl firmware_export from {_comment(net.source)}.",
        " * Do not edit: re-run `swarm-rl export firmware`.",
        *provenance,
        " */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        f"#define {up}_OBS_DIM {net.obs_dim}",
        f"#define {up}_ACTION_DIM {net.action_dim}",
        f"#define {up}_MACS {net.macs} /* multiply-accumulates per call (matrix products) */",
        f"#define {up}_PARAMS {params} /* constant floats in flash */",
        f"#define {up}_ARENA_FLOATS {em.arena_floats} /* static scratch (RAM) */",
        *_layout_defines(net, up),
        "",
        "/* One inference: raw observation in (the normaliser is inside the network), "
        "clamped action out.",
        " * Not re-entrant: call it from one task only. */",
        f"void {prefix}_run(const float obs[{up}_OBS_DIM], float action[{up}_ACTION_DIM]);",
        "",
        f"#endif /* {guard} */",
        "",
    ])
    source = "\n".join([
        f"/* {prefix}.c - generated by swarm_rl firmware_export from {_comment(net.source)}.",
        f" * {net.macs} MACs, {params} weights, arena {em.arena_floats} floats. */",
        "#include <math.h>",
        "",
        f'#include "{prefix}.h"',
        "",
        *em.const_decls,
        *([f"static float {prefix}_arena[{em.arena_floats}];", ""] if em.arena_floats else []),
        f"void {prefix}_run(const float obs[{up}_OBS_DIM], float action[{up}_ACTION_DIM])",
        "{",
        *em.body,
        "}",
        "",
    ])
    return CSources(prefix, header, source, em.arena_floats)
