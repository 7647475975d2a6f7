"""The transport contract the nodes are written against, and the QoS profiles they use.

Two backends implement :class:`Transport`: :mod:`ros_nodes.rclpy_transport` (a real ROS 2
node, on Humble/Jazzy) and :mod:`ros_nodes.dds_transport` (Cyclone DDS with ROS 2's wire names,
for machines without ROS 2). A node gets one transport, creates its publishers, subscriptions
and timers on it, and the transport's executor calls the callbacks from one thread
(:meth:`Transport.spin_until`), as rclpy's single-threaded executor does. Messages are the
:mod:`ros_nodes.messages` classes on both backends.

Topic names are ROS names (``/cf1/odom``); the DDS backend maps them to DDS topics as ROS 2
does (``rt/cf1/odom``).
"""
import enum
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class QosKind(enum.Enum):
    """The QoS profiles of the graph (docs/interfaces.md lists which topic uses which)."""

    SENSOR = "sensor"
    """High-rate state (odometry, pose): best effort, keep last 1, volatile; a late sample is
    worth less than the next one (ROS's ``qos_profile_sensor_data`` with depth 1)."""
    COMMAND = "command"
    """Setpoints and per-tick outputs: reliable, keep last 1, volatile (only the newest
    command matters, but it must not be silently dropped on a lossless link)."""
    LATCHED = "latched"
    """Rarely changing state a late joiner must see (goals, tasks): reliable, keep last 1,
    transient local (ROS's latched-topic idiom)."""
    EVENTS = "events"
    """Status and operator events: reliable, keep last 10, volatile."""


class Publisher(Protocol[T]):
    def publish(self, msg: T) -> None:
        ...

    def subscribers(self) -> int:
        """Subscriptions matched right now (rclpy's ``get_subscription_count``), so that a
        node can skip building messages nobody reads."""
        ...


class Transport(Protocol):
    """What a node needs from ROS: topics, timers, a clock and an executor."""

    name: str
    """The node's name (used in logs and as the DDS participant's name)."""

    def create_publisher(self, msg_type: type[T], topic: str, qos: QosKind) -> Publisher[T]:
        ...

    def create_subscription(self, msg_type: type[T], topic: str,
                            callback: Callable[[T], None], qos: QosKind,
                            decode: Callable[[bytes], Any] | None = None) -> Any:
        """``decode``: a decoder of a sample's plain-CDR bytes into what ``callback`` gets
        instead of a ``msg_type`` object (e.g. :func:`ros_nodes.messages.swarm_state_arrays`),
        for a transport that sees the bytes (Cyclone DDS). A transport that does not (rclpy)
        ignores it and hands over the message object, so a callback given a decoder takes
        both forms."""
        ...

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        """Call ``callback`` every ``period_s`` seconds of the transport's clock."""
        ...

    def now_s(self) -> float:
        """The node's clock (s): wall time, or ``/clock`` under ``use_sim_time``."""
        ...

    def spin_until(self, done: Callable[[], bool], timeout_s: float | None = None) -> None:
        """Run callbacks until ``done()`` is true or ``timeout_s`` of wall time has passed."""
        ...

    def close(self) -> None:
        ...


SWARM_STATE_TOPIC = "/swarm/state"
"""Every robot's state in one sensor_msgs/MultiDOFJointState per tick (a simulator or a
motion-capture system publishes it): one message per tick for a robot process instead of one
per robot (DESIGN.md "Transport")."""


def robot_topic(robot: str, leaf: str) -> str:
    """``/cfN/<leaf>``: the per-robot topic names of DESIGN.md's graph."""
    return f"/{robot}/{leaf}"


def check_robot_name(name: str) -> str:
    """Robot names are ROS name tokens (``cf1``, ``cf2``, ...): a letter, then letters, digits
    or underscores. Raises ``ValueError`` naming the bad name."""
    if not (isinstance(name, str) and name[:1].isalpha()
            and all(c.isalnum() or c == "_" for c in name) and name.isascii()):
        raise ValueError(f"robot name {name!r}: must be a letter followed by letters, digits or "
                         "underscores (e.g. cf1)")
    return name


def host_groups(names: list[str], per_process: int) -> list[tuple[str, list[str]]]:
    """The robot_node processes of a swarm: (node name, hosted robots) for ``per_process``
    robots each (0: all in one), in order; node names ``robots_cf1`` or ``robots_cf1_cf4``."""
    per = per_process or len(names)
    groups = [names[start:start + per] for start in range(0, len(names), per)]
    return [(f"robots_{g[0]}" + (f"_{g[-1]}" if len(g) > 1 else ""), g) for g in groups]
