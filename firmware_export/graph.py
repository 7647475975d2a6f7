"""ONNX policy graph -> a static, batch-1 list of steps the C generator can lower.

What happens to each ONNX node, in graph order:

- every input known at export time (initialisers, ``Constant`` nodes, shapes): the node is
  evaluated now with the ``onnx`` package's reference implementation and becomes a constant;
- a view that moves no data (``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``,
  ``Identity``, ``Dropout``, a bool <-> float ``Cast``, a ``Slice`` that keeps one contiguous
  block): the output aliases its input's storage, at an offset;
- otherwise it becomes a :class:`Step`, if its operator is in :data:`SUPPORTED_OPS`; any other
  operator raises :class:`UnsupportedOperatorError` naming the operator and the node.

Shapes are static: the batch dimension of the input is fixed to 1 (one drone, one
observation per call), so every output shape is found by running the reference implementation
on zeros. Booleans (``Less``, ``Cast(to=BOOL)``) are held as floats 0/1, as in the C code.
Imports ``onnx`` and ``numpy`` only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

MIN_OPSET = 13
"""Oldest default-domain opset accepted (Softmax and ReduceSum changed meaning at 13)."""

UNARY_OPS = ("Tanh", "Relu", "Sigmoid", "LeakyRelu", "Elu", "Exp", "Log", "Sqrt", "Neg",
             "Abs", "Reciprocal", "Erf", "Softsign", "Clip", "Not", "Cast")
"""Element-wise operators of one tensor (``Cast`` only to or from float and bool)."""
BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Less", "Greater",
              "LessOrEqual", "GreaterOrEqual", "Equal", "And", "Or", "Xor", "Where")
"""Element-wise operators of several tensors with numpy broadcasting (``Max``, ``Min``,
``Sum``, ``Mean`` take any number of inputs; ``Where`` takes three)."""
MATRIX_OPS = ("Gemm", "MatMul")
REDUCE_OPS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin")
NORM_OPS = ("Softmax", "LogSoftmax", "LayerNormalization")
MOVE_OPS = ("Slice", "Concat", "Transpose", "Gather", "Expand", "Tile")
"""Operators that only move elements; lowered to copies found at export time."""
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
EXPORT_TIME_OPS = ("Constant", "Shape", "Size", "ConstantOfShape", "Range")
"""Operators whose result never depends on the observation (evaluated at export time)."""
SUPPORTED_OPS = (UNARY_OPS + BINARY_OPS + MATRIX_OPS + REDUCE_OPS + NORM_OPS + MOVE_OPS
                 + VIEW_OPS + EXPORT_TIME_OPS)

TRANSCENDENTAL_OPS = {"Tanh", "Sigmoid", "Elu", "Exp", "Log", "Sqrt", "Erf", "Pow", "Softmax",
                      "LogSoftmax", "LayerNormalization"}
"""Operators that call a libm function (tanhf, expf, ...) per output element."""

_RUNTIME_DTYPES = (np.float32, np.float64, np.bool_)
_CAST_OK = {onnx.TensorProto.FLOAT, onnx.TensorProto.BOOL}
# Inputs (by position) that must be known at export time for a runtime node.
_PARAM_INPUTS = {"Reshape": (1,), "Slice": (1, 2, 3, 4), "Squeeze": (1,), "Unsqueeze": (1,),
                 "Clip": (1, 2), "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,),
                 "ReduceMin": (1,), "Gather": (1,), "Expand": (1,), "Tile": (1,),
                 "Dropout": (1, 2)}


class FirmwareExportError(ValueError):
    """A policy cannot be compiled to C (bad file, unsupported graph, failed check); the
    message names the file and the node or field."""


class UnsupportedOperatorError(FirmwareExportError):
    """The graph uses an operator (or an operator usage) the C generator does not lower."""

    def __init__(self, message: str, op_type: str, node: str) -> None:
        super().__init__(message)
        self.op_type = op_type
        self.node = node


@dataclass(eq=False)
class Value:
    """One tensor of the batch-1 graph: static ``shape``; ``const`` when known at export
    time; ``base``/``offset`` when it is a view into another value's storage."""

    name: str
    shape: tuple[int, ...]
    const: np.ndarray | None = None
    base: Value | None = None
    offset: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def root(self) -> Value:
        """The value that owns the storage (itself unless a view)."""
        return self if self.base is None else self.base.root

    @property
    def root_offset(self) -> int:
        return self.offset + (self.base.root_offset if self.base is not None else 0)


@dataclass(eq=False)
class Step:
    """One runtime operation: ONNX ``op`` of node ``node`` on ``inputs`` (``None`` for an
    omitted optional input) writing ``output``. ``attrs`` holds the node's attributes plus,
    for some operators, facts found at export time (``runs`` of an element move, ``axes``)."""

    op: str
    node: str
    inputs: list[Value | None]
    output: Value
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of a matrix product (0 for other operators)."""
        if self.op == "Gemm":
            a = self.inputs[0].shape
            k = a[0] if self.attrs.get("transA", 0) else a[1]
            return self.output.size * k
        if self.op == "MatMul":
            return self.output.size * self.inputs[0].shape[-1]
        return 0

    @property
    def transcendentals(self) -> int:
        """libm calls per inference (one per output element, or per row for a norm)."""
        if self.op not in TRANSCENDENTAL_OPS:
            return 0
        if self.op == "LayerNormalization":
            return self.output.size // self.attrs["norm_size"]
        if self.op == "LogSoftmax":
            return self.output.size + self.output.size // self.output.shape[self.attrs["axis"]]
        return self.output.size


@dataclass
class Network:
    """A policy graph lowered to steps: input ``obs`` (1, obs_dim), output (1, action_dim)."""

    source: str
    input: Value
    output: Value
    steps: list[Step]
    opset: int
    metadata: dict[str, str]
    op_counts: dict[str, int]
    """ONNX operators of the original graph (node counts), export-time ones included."""

    @property
    def obs_dim(self) -> int:
        return self.input.size

    @property
    def action_dim(self) -> int:
        return self.output.size

    @property
    def weights(self) -> int:
        """Constant floats the C code stores as arrays (scalars become literals)."""
        return sum(v.size for v in self.constants if v.size > 1)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per inference in matrix products (Gemm, MatMul)."""
        return sum(s.macs for s in self.steps)

    @property
    def elementwise_ops(self) -> int:
        """Output elements of every step that is not a matrix product or a pure copy."""
        return sum(s.output.size for s in self.steps if s.op not in MATRIX_OPS + MOVE_OPS)

    @property
    def transcendentals(self) -> int:
        return sum(s.transcendentals for s in self.steps)

    @property
    def constants(self) -> list[Value]:
        """Constant tensors the steps read (each once), in first-use order."""
        seen: dict[int, Value] = {}
        for step in self.steps:
            for v in step.inputs:
                if v is not None and v.const is not None:
                    seen.setdefault(id(v), v)
            for src in step.attrs.get("sources", ()):
                if src.const is not None:
                    seen.setdefault(id(src), src)
        return list(seen.values())


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"#{index} ({node.op_type} -> {', '.join(node.output)})"


def _evaluate(node: onnx.NodeProto, feeds: dict[str, np.ndarray], opset: int
              ) -> list[np.ndarray]:
    """Outputs of one node by the onnx reference implementation."""
    with np.errstate(all="ignore"):  # zeros fed for shape inference may divide by zero
        results = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
    return [np.asarray(v) for v in results]


def _runs(index: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(source, dst_start, src_start, length) runs of an element move; ``index`` (n, 2) holds
    (source, element) for every output element."""
    runs: list[list[int]] = []
    for dst, (src, at) in enumerate(index.tolist()):
        if runs and runs[-1][0] == src and runs[-1][2] + runs[-1][3] == at:
            runs[-1][3] += 1
        else:
            runs.append([src, dst, at, 1])
    return [tuple(r) for r in runs]


def _load(model: str | Path | onnx.ModelProto | bytes) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "model"
    if isinstance(model, bytes):
        source = "model"
        blob = model
    else:
        source = str(model)
        path = Path(model)
        if not path.is_file():
            raise FirmwareExportError(f"{source}: no such policy file")
        blob = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(blob)
        onnx.checker.check_model(proto)
    except Exception as exc:  # DecodeError, ValidationError: junk bytes fail in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FirmwareExportError(f"{source}: not a valid ONNX model: {first}") from exc
    return proto, source


def lower(model: str | Path | onnx.ModelProto | bytes) -> Network:
    """Lower an ONNX policy (path, serialised bytes or ``ModelProto``) to a :class:`Network`.

    The graph must have one float input (batch, obs_dim) and one float output
    (batch, action_dim), batch dynamic or 1. Raises :class:`UnsupportedOperatorError` for an
    operator outside :data:`SUPPORTED_OPS` (or a supported one used in a way the generator
    does not lower, e.g. a runtime ``Reshape`` shape) and :class:`FirmwareExportError` for
    other problems; both name the file and the node.
    """
    proto, source = _load(model)
    graph = proto.graph
    opsets = {o.domain: o.version for o in proto.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    if opset < MIN_OPSET:
        raise FirmwareExportError(f"{source}: opset {opset}: firmware_export needs ONNX opset "
                                  f">= {MIN_OPSET}; re-export with a newer opset")
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise FirmwareExportError(f"{source}: expected one graph input and one output, got "
                                  f"{[i.name for i in inputs]} -> "
                                  f"{[o.name for o in graph.output]}")
    values: dict[str, Value] = {}
    for t in graph.initializer:
        values[t.name] = Value(t.name, tuple(t.dims), numpy_helper.to_array(t))
    obs_info = inputs[0]
    ttype = obs_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
    if (ttype.elem_type != onnx.TensorProto.FLOAT or len(dims) != 2 or dims[1] is None
            or dims[0] not in (None, 1)):
        raise FirmwareExportError(f"{source}: graph input '{obs_info.name}' must be float32 "
                                  f"[batch, obs_dim] with batch dynamic or 1, got "
                                  f"{onnx.TensorProto.DataType.Name(ttype.elem_type)} {dims}")
    obs = Value(obs_info.name, (1, dims[1]))
    values[obs.name] = obs
    steps: list[Step] = []
    op_counts: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1
        _lower_node(node, index, values, steps, opset, source)
    out_name = graph.output[0].name
    if out_name not in values:
        raise FirmwareExportError(f"{source}: graph output '{out_name}' is never produced")
    output = values[out_name]
    if output.const is not None:
        raise FirmwareExportError(f"{source}: graph output '{out_name}' does not depend on the "
                                  "observation")
    if len(output.shape) != 2 or output.shape[0] != 1:
        raise FirmwareExportError(f"{source}: graph output '{out_name}' must be "
                                  f"[batch, action_dim], got batch-1 shape {output.shape}")
    meta = {p.key: p.value for p in proto.metadata_props}
    return Network(source, obs, output, _live_steps(steps, output), opset, meta, op_counts)


def _live_steps(steps: list[Step], output: Value) -> list[Step]:
    """Drop steps whose result never reaches the output."""
    needed = {id(output.root)}
    keep = []
    for step in reversed(steps):
        if id(step.output.root) not in needed:
            continue
        keep.append(step)
        for v in list(step.inputs) + list(step.attrs.get("sources", ())):
            if v is not None and v.const is None:
                needed.add(id(v.root))
    return keep[::-1]


def _lower_node(node: onnx.NodeProto, index: int, values: dict[str, Value],
                steps: list[Step], opset: int, source: str) -> None:
    label = _node_label(node, index)
    op = node.op_type
    where = f"{source}: node '{label}' ({op})"
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedOperatorError(
            f"{where}: operator '{node.domain}.{op}' is not supported by firmware_export "
            f"(only the default ONNX domain); supported: {', '.join(sorted(SUPPORTED_OPS))}",
            op, label)
    if op not in SUPPORTED_OPS:
        raise UnsupportedOperatorError(
            f"{where}: operator '{op}' is not supported by firmware_export; supported: "
            f"{', '.join(sorted(SUPPORTED_OPS))}", op, label)
    ins: list[Value | None] = []
    for name in node.input:
        if not name:
            ins.append(None)
        elif name not in values:
            raise FirmwareExportError(f"{where}: input '{name}' is not produced by any node")
        else:
            ins.append(values[name])
    attrs = _attrs(node)
    present = [v for v in ins if v is not None]
    if op in ("Shape", "Size") and present:  # static shapes: known now
        feeds = {node.input[0]: np.zeros(present[0].shape, np.float32)}
        result = _evaluate(node, feeds, opset)
        values[node.output[0]] = Value(node.output[0], result[0].shape, result[0])
        return
    if all(v.const is not None for v in present):
        feeds = {name: v.const for name, v in zip(node.input, ins) if v is not None}
        try:
            results = _evaluate(node, feeds, opset)
        except Exception as exc:  # the reference implementation rejects a malformed node
            raise FirmwareExportError(f"{where}: cannot evaluate at export time: {exc}") from exc
        for name, result in zip(node.output, results):
            if name:
                values[name] = Value(name, result.shape, result)
        return
    for pos in _PARAM_INPUTS.get(op, ()):
        if pos < len(ins) and ins[pos] is not None and ins[pos].const is None:
            raise UnsupportedOperatorError(
                f"{where}: input {pos} ('{node.input[pos]}') depends on the observation; "
                "firmware_export needs it known at export time", op, label)
    outputs = [name for name in node.output if name]
    if op == "Dropout":
        outputs = outputs[:1]
    if len(outputs) != 1:
        raise UnsupportedOperatorError(f"{where}: nodes with {len(outputs)} outputs are not "
                                       "supported", op, label)
    feeds = {name: (v.const if v.const is not None else np.zeros(v.shape, np.float32))
             for name, v in zip(node.input, ins) if v is not None}
    try:
        result = _evaluate(node, feeds, opset)[0]
    except Exception as exc:
        raise FirmwareExportError(f"{where}: the reference implementation rejects this node "
                                  f"with batch 1: {exc}") from exc
    if op == "Cast" and attrs.get("to") not in _CAST_OK:
        raise UnsupportedOperatorError(
            f"{where}: Cast of an observation-dependent tensor to "
            f"{onnx.TensorProto.DataType.Name(attrs.get('to', 0))} is not supported (float and "
            "bool only)", op, label)
    if result.dtype.type not in _RUNTIME_DTYPES:
        raise UnsupportedOperatorError(
            f"{where}: produces an observation-dependent {result.dtype} tensor; the C code "
            "holds float32 (and bools as 0/1) only", op, label)
    out = Value(outputs[0], tuple(result.shape))
    values[out.name] = out
    data = ins[0]
    if op in VIEW_OPS or (op == "Cast" and attrs["to"] == onnx.TensorProto.FLOAT):
        out.base, out.offset = data, 0
        return
    if op in MOVE_OPS:
        sources = present if op == "Concat" else [data]
        index = _move_index(node, ins, sources, opset)
        runs = _runs(index)
        src0 = sources[runs[0][0]]
        if (len(runs) == 1 and runs[0][3] == out.size and src0.const is None):
            out.base, out.offset = src0, runs[0][2]
            return
        steps.append(Step("Move", label, [], out, {"sources": sources, "runs": runs,
                                                   "onnx_op": op}))
        return
    if op == "Clip":
        attrs = {"min": _scalar(ins, 1, attrs.get("min", -math.inf), where, label),
                 "max": _scalar(ins, 2, attrs.get("max", math.inf), where, label)}
        ins = ins[:1]
    elif op in REDUCE_OPS:
        attrs = _reduce_attrs(node, ins, attrs, opset, len(data.shape))
        ins = ins[:1]
    elif op in ("Softmax", "LogSoftmax"):
        axis = attrs.get("axis", -1)
        rank = len(data.shape)
        attrs = {"axis": axis + rank if axis < 0 else axis}  # opset >= 13: one axis
    elif op == "LayerNormalization":
        rank = len(data.shape)
        axis = attrs.get("axis", -1)
        axis = axis + rank if axis < 0 else axis
        attrs = {"axis": axis, "epsilon": float(attrs.get("epsilon", 1e-5)),
                 "norm_size": int(np.prod(data.shape[axis:]))}
    elif op in ("LeakyRelu", "Elu"):
        attrs = {"alpha": float(attrs.get("alpha", 0.01 if op == "LeakyRelu" else 1.0))}
    steps.append(Step(op, label, ins, out, attrs))


def _scalar(ins: list[Value | None], pos: int, default: float, where: str, label: str
            ) -> float:
    if pos >= len(ins) or ins[pos] is None:
        return float(default)
    v = ins[pos].const
    if v.size != 1:
        raise UnsupportedOperatorError(f"{where}: input {pos} must be a scalar", "Clip", label)
    return float(v.reshape(()))


def _reduce_attrs(node: onnx.NodeProto, ins: list[Value | None], attrs: dict[str, Any],
                  opset: int, rank: int) -> dict[str, Any]:
    if len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in ins[1].const.reshape(-1)]
    else:
        axes = list(attrs.get("axes", []))
    if not axes:
        axes = [] if attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    return {"axes": sorted(a + rank if a < 0 else a for a in axes),
            "keepdims": int(attrs.get("keepdims", 1))}


def _move_index(node: onnx.NodeProto, ins: list[Value | None], sources: list[Value],
                opset: int) -> np.ndarray:
    """For every output element of an element-moving node: (source number, element)."""
    feeds, base = {}, 0
    starts = []
    for name, v in zip(node.input, ins):
        if v is None:
            continue
        if any(v is s for s in sources):
            feeds[name] = (base + np.arange(v.size, dtype=np.float64)).reshape(v.shape)
            starts.append(base)
            base += v.size
        else:
            feeds[name] = v.const
    flat = _evaluate(node, feeds, opset)[0].reshape(-1).astype(np.int64)
    which = np.searchsorted(np.asarray(starts), flat, side="right") - 1
    return np.stack([which, flat - np.asarray(starts)[which]], axis=1)
