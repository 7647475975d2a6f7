"""rclpy backend of :class:`ros_nodes.transport.Transport` (ROS 2 Humble / Jazzy).

The nodes build :mod:`ros_nodes.messages` objects; this backend converts them field by field
to the real ROS message classes on publish and back on receipt. The class comes from the DDS
type name (``nav_msgs::msg::dds_::Odometry_`` -> ``nav_msgs.msg.Odometry``), so both backends
use one set of message definitions. QoS kinds map to rclpy QoS profiles with the same
reliability, history and durability as the DDS backend.

ROS 2 cannot be installed on the development machines of this project, so this module is
exercised only on a ROS machine; the DDS backend, which the tests run, shares every node's
logic and the message layouts (tests/test_wire_compat.py checks those against ROS 2's
definitions).
"""
import dataclasses
import importlib
import time
from collections.abc import Callable
from typing import Any

from ros_nodes.params import declare_on_rclpy
from ros_nodes.transport import QosKind


def ros_class(msg_type: type) -> type:
    """The rclpy message class of one of our message types."""
    pkg, _, _, leaf = msg_type.__idl_typename__.split("::")
    return getattr(importlib.import_module(f"{pkg}.msg"), leaf.rstrip("_"))


def to_ros(msg: Any) -> Any:
    out = ros_class(type(msg))()
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_ros(value)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            value = [to_ros(v) for v in value]
        elif isinstance(getattr(out, f.name), bytes) and isinstance(value, int):
            value = bytes([value])  # a .msg ``byte`` field
        setattr(out, f.name, value)
    return out


def from_ros(ros_msg: Any, msg_type: type) -> Any:
    kwargs = {}
    for f in dataclasses.fields(msg_type):
        value = getattr(ros_msg, f.name)
        default = msg_type.__dataclass_fields__[f.name]
        sample = default.default_factory() if default.default_factory is not \
            dataclasses.MISSING else default.default
        if dataclasses.is_dataclass(sample):
            value = from_ros(value, type(sample))
        elif isinstance(value, bytes):
            value = value[0] if value else 0
        elif hasattr(value, "tolist"):
            value = value.tolist()
        elif isinstance(value, (list, tuple)) and value and hasattr(value[0], "get_fields_and_"
                                                                              "field_types"):
            item_type = _item_type(msg_type, f.name)
            value = [from_ros(v, item_type) for v in value]
        else:
            value = list(value) if isinstance(value, tuple) else value
        kwargs[f.name] = value
    return msg_type(**kwargs)


def _item_type(msg_type: type, name: str) -> type:
    """Element type of a ``sequence[...]`` field of one of our message types."""
    import typing

    hint = typing.get_type_hints(msg_type, include_extras=True)[name]
    for arg in typing.get_args(hint):
        inner = getattr(arg, "subtype", None)
        if inner is not None:
            return inner
    raise TypeError(f"{msg_type.__name__}.{name}: not a sequence of messages")


def qos_profile(kind: QosKind) -> Any:
    from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile,
                           ReliabilityPolicy)

    reliable = kind is not QosKind.SENSOR
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=10 if kind is QosKind.EVENTS else 1,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if kind is QosKind.LATCHED
                    else DurabilityPolicy.VOLATILE))


class _Publisher:
    def __init__(self, pub: Any) -> None:
        self._pub = pub

    def publish(self, msg: Any) -> None:
        self._pub.publish(to_ros(msg))

    def subscribers(self) -> int:
        return self._pub.get_subscription_count()


class RclpyTransport:
    """One rclpy node; ``argv`` are the node's ROS arguments (``--ros-args ...``)."""

    def __init__(self, name: str, argv: list[str]) -> None:
        import rclpy

        self._rclpy = rclpy
        rclpy.init(args=["node", *argv])
        self.node = rclpy.create_node(name, cli_args=None)
        self.name = self.node.get_name()

    def declare(self, params_cls: type) -> Any:
        return declare_on_rclpy(self.node, params_cls)

    def create_publisher(self, msg_type: type, topic: str, qos: QosKind) -> _Publisher:
        return _Publisher(self.node.create_publisher(ros_class(msg_type), topic,
                                                     qos_profile(qos)))

    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QosKind, decode: Callable[[bytes], Any] | None = None) -> Any:
        """``decode`` is ignored: rclpy hands over message objects, which the callbacks of
        the Transport contract also take."""
        return self.node.create_subscription(
            ros_class(msg_type), topic, lambda ros_msg: callback(from_ros(ros_msg, msg_type)),
            qos_profile(qos))

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        return self.node.create_timer(period_s, callback)

    def now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def spin_until(self, done: Callable[[], bool], timeout_s: float | None = None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not done() and self._rclpy.ok():
            if deadline is not None and time.monotonic() >= deadline:
                return
            self._rclpy.spin_once(self.node, timeout_sec=0.01)

    def close(self) -> None:
        self.node.destroy_node()
        if self._rclpy.ok():
            self._rclpy.shutdown()
