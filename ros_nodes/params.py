"""ROS-style node parameters: declared with types, defaults, descriptions and limits, validated
with an error that names the node and the parameter.

Each node declares its parameters as a frozen dataclass; a field's ``metadata`` holds its
``help`` text and optional ``min`` / ``max`` / ``choices``. Values come from ROS 2's command
line syntax on both transports (``--ros-args -p name:=value --params-file FILE.yaml``, values
parsed as YAML like ROS does), and on rclpy through ``declare_parameter`` as well
(:func:`declare_on_rclpy`), so ``ros2 param describe`` shows the same descriptions.
"""
import dataclasses
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

P = TypeVar("P")


class ParamError(ValueError):
    """A parameter is unknown, of the wrong type or out of range; the message names it."""


def spec(default: Any, help: str, min: float | None = None, max: float | None = None,
         choices: Sequence[str] | None = None) -> Any:
    """A declared parameter (a dataclass field with its description and limits)."""
    meta = {"help": help, "min": min, "max": max, "choices": tuple(choices or ())}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def parse_ros_args(argv: Sequence[str]) -> tuple[str | None, dict[str, Any]]:
    """``[--ros-args] -p a:=1 -p b:=[x,y] --params-file f.yaml -r __node:=name`` ->
    (node name or None, {param: value}). Later values win; ``-p`` after a file overrides it."""
    values: dict[str, Any] = {}
    node_name = None
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--ros-args":
            i += 1
            continue
        if arg in ("-p", "--param", "-r", "--remap", "--params-file"):
            if i + 1 >= len(args):
                raise ParamError(f"{arg}: expects a value")
            value = args[i + 1]
            if arg == "--params-file":
                values.update(_params_file(Path(value), node_name))
            elif ":=" not in value:
                raise ParamError(f"{arg} {value!r}: expected NAME:=VALUE")
            else:
                name, raw = value.split(":=", 1)
                if arg in ("-r", "--remap"):
                    if name != "__node":
                        raise ParamError(f"{arg} {value!r}: only __node:=NAME is supported")
                    node_name = raw
                else:
                    values[name] = _yaml_value(raw, name)
            i += 2
            continue
        raise ParamError(f"unexpected argument {arg!r} (expected --ros-args -p NAME:=VALUE)")
    return node_name, values


def _yaml_value(raw: str, name: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ParamError(f"parameter {name}: cannot parse {raw!r}: {exc}") from None


def _params_file(path: Path, node_name: str | None) -> dict[str, Any]:
    """A ROS 2 parameter file: ``{node or /**: {ros__parameters: {...}}}``."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamError(f"--params-file {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ParamError(f"--params-file {path}: expected a mapping of node names")
    out: dict[str, Any] = {}
    for key in ("/**", node_name):
        section = doc.get(key) if key else None
        if section is None:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            raise ParamError(f"--params-file {path}: {key}: expected ros__parameters mapping")
        out.update(section["ros__parameters"])
    return out


def build_params(cls: type[P], values: dict[str, Any], node: str) -> P:
    """An instance of the parameter dataclass ``cls`` from ``values`` (defaults elsewhere),
    each value type- and range-checked; :class:`ParamError` names ``node`` and the field."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamError(f"{node}: unknown parameter(s) {', '.join(unknown)}; declared: "
                         f"{', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    checked = {name: _check(node, fields[name], hints[name], value)
               for name, value in values.items()}
    return cls(**checked)


def _check(node: str, field: dataclasses.Field, hint: Any, value: Any) -> Any:
    where = f"{node}: parameter {field.name}"
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{where}: expected a list of {item.__name__}, got {value!r}")
        return [_scalar(where, item, v, field) for v in value]
    return _scalar(where, hint, value, field)


def _scalar(where: str, hint: type, value: Any, field: dataclasses.Field) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{where}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value):
            raise ParamError(f"{where}: must not be NaN")
    elif hint is str:
        if not isinstance(value, str):
            raise ParamError(f"{where}: expected a string, got {value!r}")
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            raise ParamError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
        return value
    lo, hi = field.metadata.get("min"), field.metadata.get("max")
    if lo is not None and value < lo:
        raise ParamError(f"{where}: must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ParamError(f"{where}: must be <= {hi}, got {value}")
    return value


def launch_bool(text: str, name: str) -> bool:
    """A ``ros2 launch`` argument ``name:=true|false`` as a bool; ``ValueError`` otherwise."""
    if text.lower() not in ("true", "false"):
        raise ValueError(f"{name}:={text}: expected true or false")
    return text.lower() == "true"


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) of every declared parameter, for docs and ``--help``."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def declare_on_rclpy(node: Any, cls: type[P]) -> P:
    """Declare every field of ``cls`` on an rclpy node (typed, with its description and
    limits), read the values the launch gave, and validate them; run-time changes are checked
    by the same rules and refused with the reason."""
    from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                    SetParametersResult)

    hints = typing.get_type_hints(cls)
    for f, (_, default, help_text) in zip(dataclasses.fields(cls), describe(cls)):
        desc = ParameterDescriptor(name=f.name, description=help_text)
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if hints[f.name] is float and (lo is not None or hi is not None):
            desc.floating_point_range = [FloatingPointRange(
                from_value=-math.inf if lo is None else float(lo),
                to_value=math.inf if hi is None else float(hi))]
        elif hints[f.name] is int and (lo is not None or hi is not None):
            desc.integer_range = [IntegerRange(from_value=int(lo if lo is not None else -2**63),
                                               to_value=int(hi if hi is not None else 2**63 - 1),
                                               step=1)]
        node.declare_parameter(f.name, default, desc)
    values = {f.name: node.get_parameter(f.name).value for f in dataclasses.fields(cls)}
    params = build_params(cls, values, node.get_name())

    def on_set(changes: list) -> Any:
        try:
            build_params(cls, {**values, **{c.name: c.value for c in changes}}, node.get_name())
        except ParamError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return params
