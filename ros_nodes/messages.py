"""ROS 2 standard messages as Cyclone DDS types, with ROS 2's wire names and field layout.

Each class mirrors one ``.msg`` definition of ROS 2 (Humble/Jazzy): the same fields in the same
order with the same IDL types, and the DDS type name ROS 2 gives it (``pkg::msg::dds_::Type_``).
Serialised as plain CDR (XCDR1, what rmw_cyclonedds_cpp writes), a sample is byte-for-byte what
a ROS 2 node sends, so ``ros2 topic echo`` on a ROS machine reads what these nodes publish and
the other way round (checked by ``tests/test_wire_compat.py`` against a subscriber built only
from the ``.msg`` texts).

Only standard message packages: the repository is one ament_python package and cannot carry
its own ``.msg`` files (DESIGN.md, "ROS 2 graph"). The rclpy transport converts these to and
from the real ``rclpy`` message classes field by field (:mod:`ros_nodes.rclpy_transport`).

Helpers at the bottom build and read the messages the nodes exchange; they say the frame and
units. Quaternions are (x, y, z, w) as in ROS.
"""


import math
import struct
from dataclasses import dataclass, field

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, byte, float64, int32, sequence, uint8, uint32

from ros_nodes.cdr_codec import HEADER, codec_for, put_count, put_string

WORLD_FRAME = "world"
"""``header.frame_id`` of every world-frame (ENU) message."""


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str = ""


@dataclass
class Float64(IdlStruct, typename="std_msgs::msg::dds_::Float64_"):
    data: float64 = 0.0


@dataclass
class Empty(IdlStruct, typename="std_msgs::msg::dds_::Empty_"):
    """ROS 2's Empty: IDL forbids empty structs, so rosidl adds this one byte."""

    structure_needs_at_least_one_member: uint8 = 0


@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0
    w: float64 = 1.0


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@dataclass
class PoseStamped(IdlStruct, typename="geometry_msgs::msg::dds_::PoseStamped_"):
    header: Header = field(default_factory=Header)
    pose: Pose = field(default_factory=Pose)


@dataclass
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


@dataclass
class TwistStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TwistStamped_"):
    header: Header = field(default_factory=Header)
    twist: Twist = field(default_factory=Twist)


def _zeros36() -> list[float]:
    return [0.0] * 36


@dataclass
class PoseWithCovariance(IdlStruct, typename="geometry_msgs::msg::dds_::PoseWithCovariance_"):
    pose: Pose = field(default_factory=Pose)
    covariance: array[float64, 36] = field(default_factory=_zeros36)


@dataclass
class TwistWithCovariance(IdlStruct,
                          typename="geometry_msgs::msg::dds_::TwistWithCovariance_"):
    twist: Twist = field(default_factory=Twist)
    covariance: array[float64, 36] = field(default_factory=_zeros36)


@dataclass
class Odometry(IdlStruct, typename="nav_msgs::msg::dds_::Odometry_"):
    """Pose in ``header.frame_id`` (world, ENU); twist in ``child_frame_id``. As published by
    the bridges here, the twist's linear part is the world-frame velocity and its angular part
    the body-frame (FLU) rates; docs/interfaces.md says so for ROS users."""

    header: Header = field(default_factory=Header)
    child_frame_id: str = ""
    pose: PoseWithCovariance = field(default_factory=PoseWithCovariance)
    twist: TwistWithCovariance = field(default_factory=TwistWithCovariance)


@dataclass
class Transform(IdlStruct, typename="geometry_msgs::msg::dds_::Transform_"):
    translation: Vector3 = field(default_factory=Vector3)
    rotation: Quaternion = field(default_factory=Quaternion)


@dataclass
class Wrench(IdlStruct, typename="geometry_msgs::msg::dds_::Wrench_"):
    force: Vector3 = field(default_factory=Vector3)
    torque: Vector3 = field(default_factory=Vector3)


@dataclass
class MultiDOFJointState(IdlStruct, typename="sensor_msgs::msg::dds_::MultiDOFJointState_"):
    """The swarm-state message (``/swarm/state``): one floating "joint" per robot, named
    after it; transforms in ``header.frame_id`` (world, ENU), twists as in :class:`Odometry`
    (linear: world-frame velocity, angular: body rates); ``wrench`` left empty."""

    header: Header = field(default_factory=Header)
    joint_names: sequence[str] = field(default_factory=list)
    transforms: sequence[Transform] = field(default_factory=list)
    twist: sequence[Twist] = field(default_factory=list)
    wrench: sequence[Wrench] = field(default_factory=list)


@dataclass
class Path(IdlStruct, typename="nav_msgs::msg::dds_::Path_"):
    header: Header = field(default_factory=Header)
    poses: sequence[PoseStamped] = field(default_factory=list)


@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str = ""
    value: str = ""


@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    level: byte = 0
    """``byte`` in the .msg (IDL octet); an int here, ``bytes`` of length 1 in rclpy."""
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: sequence[KeyValue] = field(default_factory=list)


DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3
"""``DiagnosticStatus.level`` constants (ROS's are bytes 0-3)."""


@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    header: Header = field(default_factory=Header)
    status: sequence[DiagnosticStatus] = field(default_factory=list)


@dataclass
class Clock(IdlStruct, typename="rosgraph_msgs::msg::dds_::Clock_"):
    clock: Time = field(default_factory=Time)


# --- helpers ---------------------------------------------------------------------------------

def to_time(t_s: float) -> Time:
    """Seconds (finite, >= 0) -> ``builtin_interfaces/Time``."""
    sec = math.floor(t_s)
    nanosec = int(round((t_s - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(int(sec), nanosec)


def from_time(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def header(t_s: float, frame_id: str = WORLD_FRAME) -> Header:
    return Header(to_time(t_s), frame_id)


def quats_xyzw_from_matrices(rots: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) body -> world to unit quaternions (N, 4) (x, y, z, w),
    w >= 0: the usual four-branch conversion (trace, or the largest diagonal entry), then
    normalised. A matrix that is not a rotation may give NaN, never an exception.

    Row by row in Python floats, on purpose: for a swarm's 8-64 matrices this is 3-4x
    faster than the same arithmetic vectorised in numpy, whose ~30 calls each cost more than
    a row here, and the bridge converts every drone's attitude between stamping a state and
    publishing it (16 drones: 35 against 122 us back to back, 129 against 532 us with the
    caches gone cold over the 16 ms between 50 Hz ticks). The same IEEE operations in the
    same order, so the same bits as the numpy version (``tests/test_robot_node.py``)."""
    out = [_quat_xyzw(*row) for row in np.asarray(rots, dtype=float).reshape(-1, 9).tolist()]
    return np.array(out, dtype=float).reshape(-1, 4)


def _sqrt(v: float) -> float:
    """math.sqrt, NaN (as numpy) for a negative or NaN argument."""
    return math.sqrt(v) if v >= 0.0 else math.nan


def _quat_xyzw(m00: float, m01: float, m02: float, m10: float, m11: float, m12: float,
               m20: float, m21: float, m22: float) -> tuple[float, float, float, float]:
    """One row of :func:`quats_xyzw_from_matrices`."""
    tr = m00 + m11 + m22
    try:
        if tr > 0:
            s = 2.0 * _sqrt(tr + 1.0)
            x, y, z, w = (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s, s / 4
        elif m00 > m11 and m00 > m22:
            s = 2.0 * _sqrt(1.0 + m00 - m11 - m22)
            x, y, z, w = s / 4, (m01 + m10) / s, (m02 + m20) / s, (m21 - m12) / s
        elif m11 > m22:
            s = 2.0 * _sqrt(1.0 + m11 - m00 - m22)
            x, y, z, w = (m01 + m10) / s, s / 4, (m12 + m21) / s, (m02 - m20) / s
        else:
            s = 2.0 * _sqrt(1.0 + m22 - m00 - m11)
            x, y, z, w = (m02 + m20) / s, (m12 + m21) / s, s / 4, (m10 - m01) / s
        norm = _sqrt(x * x + y * y + z * z + w * w)
        x, y, z, w = x / norm, y / norm, z / norm, w / norm
    except ZeroDivisionError:  # a degenerate matrix
        return (math.nan,) * 4
    return (-x, -y, -z, -w) if w < 0 else (x, y, z, w)


def matrix_from_quat_xyzw(q: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) -> rotation matrix body -> world. Not normalised first: a
    quaternion that is not unit gives a matrix that is not a rotation, which the robot's own
    state check rejects (``own_rotation_invalid``)."""
    x, y, z, w = (float(v) for v in q)
    return np.array(_matrix_entries(x, y, z, w)).reshape(3, 3)


def matrices_from_quats_xyzw(q: np.ndarray) -> np.ndarray:
    """:func:`matrix_from_quat_xyzw` of every row of ``q`` (N, 4) (x, y, z, w): (N, 3, 3)
    rotation matrices body -> world, the same arithmetic (the same bits). Row by row in Python
    floats, as :func:`quats_xyzw_from_matrices` and for the same reason: a host's 8-16 rows
    take 3x less than the stacked numpy operations, which cost most right after the host
    idled between ticks."""
    rows = np.asarray(q, dtype=float).reshape(-1, 4).tolist()
    return np.array([_matrix_entries(*row) for row in rows], dtype=float).reshape(-1, 3, 3)


def _matrix_entries(x: float, y: float, z: float, w: float) -> tuple[float, ...]:
    """The nine row-major entries of the rotation matrix of quaternion (x, y, z, w)."""
    return (1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y))


def odometry(name: str, t_s: float, pos_m: np.ndarray, vel_mps: np.ndarray,
             quat_xyzw: np.ndarray, omega_rad_s: np.ndarray) -> Odometry:
    """Robot ``name``'s state at ``t_s``: position (world ENU, m), velocity (world, m/s),
    orientation body -> world, body rates (FLU, rad/s)."""
    p, v, q, w = (np.asarray(a, dtype=float) for a in (pos_m, vel_mps, quat_xyzw, omega_rad_s))
    return Odometry(
        header(t_s), name,
        PoseWithCovariance(Pose(Point(*p.tolist()), Quaternion(*q.tolist()))),
        TwistWithCovariance(Twist(Vector3(*v.tolist()), Vector3(*w.tolist()))))


def swarm_state(t_s: float, names: list[str], pos_m: np.ndarray, vel_mps: np.ndarray,
                quat_xyzw: np.ndarray, omega_rad_s: np.ndarray) -> MultiDOFJointState:
    """Every robot's state at ``t_s`` in one message: (N, 3) positions (world ENU, m) and
    velocities (world, m/s), (N, 4) orientations body -> world, (N, 3) body rates (FLU,
    rad/s); robot ``i`` is ``names[i]``."""
    rows = zip(np.asarray(pos_m, float).tolist(), np.asarray(quat_xyzw, float).tolist(),
               np.asarray(vel_mps, float).tolist(), np.asarray(omega_rad_s, float).tolist())
    transforms, twists = [], []
    for p, q, v, w in rows:
        transforms.append(Transform(Vector3(*p), Quaternion(*q)))
        twists.append(Twist(Vector3(*v), Vector3(*w)))
    return MultiDOFJointState(header(t_s), list(names), transforms, twists, [])


@dataclass
class SwarmStateArrays:
    """A ``/swarm/state`` sample read straight into arrays (:func:`swarm_state_arrays`), for
    :func:`read_swarm_state`: the same numbers as the message's fields, without the 6 N
    objects of a :class:`MultiDOFJointState` (at 32 robots about 450 us a sample)."""

    header: Header
    joint_names: list[str]
    transforms: np.ndarray
    """(N, 7): translation x, y, z, rotation x, y, z, w."""
    twists: np.ndarray
    """(N, 6): linear x, y, z, angular x, y, z."""


def swarm_state_arrays(data: bytes) -> SwarmStateArrays:
    """A plain-CDR ``/swarm/state`` sample's bytes -> :class:`SwarmStateArrays`; raises
    :class:`ros_nodes.cdr_codec.NotPlainCdr` where the codec's ``decode`` would."""
    sec, nanosec, frame_id, names, transforms, twists, _wrench = codec_for(
        MultiDOFJointState).decode_flat(data)
    return SwarmStateArrays(Header(Time(sec, nanosec), frame_id), names, transforms, twists)


@dataclass
class TwistNumbers:
    """A ``TwistStamped`` sample's numbers (:func:`twist_numbers`), without the message's
    objects: what the sim bridge reads of each command."""

    stamp_s: float
    """``header.stamp`` in seconds, as :func:`from_time` gives it."""
    linear: tuple[float, float, float]
    angular: tuple[float, float, float]


def twist_numbers(data: bytes) -> TwistNumbers:
    """A plain-CDR ``TwistStamped`` sample's bytes -> :class:`TwistNumbers`; raises
    :class:`ros_nodes.cdr_codec.NotPlainCdr` where the codec's ``decode`` would."""
    sec, nanosec, _frame, lx, ly, lz, ax, ay, az = codec_for(TwistStamped).decode_flat(data)
    return TwistNumbers(sec + nanosec * 1e-9, (lx, ly, lz), (ax, ay, az))


def read_swarm_state(msg: MultiDOFJointState | SwarmStateArrays
                     ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(names, positions (N, 3), velocities (N, 3), quaternions (N, 4), body rates (N, 3)) of
    a swarm-state message (or its arrays), views of one (N, 13) array; ``ValueError`` naming
    the fields whose lengths differ."""
    if isinstance(msg, SwarmStateArrays):
        n = len(msg.joint_names)
        if len(msg.transforms) != n or len(msg.twists) != n:
            raise ValueError(f"swarm state: {n} joint_names but {len(msg.transforms)} "
                             f"transforms and {len(msg.twists)} twists")
        rows = np.empty((n, 13))
        rows[:, :7] = msg.transforms
        rows[:, 7:] = msg.twists
        return (list(msg.joint_names), rows[:, 0:3], rows[:, 7:10], rows[:, 3:7],
                rows[:, 10:13])
    n = len(msg.joint_names)
    if len(msg.transforms) != n or len(msg.twist) != n:
        raise ValueError(f"swarm state: {n} joint_names but {len(msg.transforms)} transforms "
                         f"and {len(msg.twist)} twists")
    rows = np.array([(t.translation.x, t.translation.y, t.translation.z, t.rotation.x,
                      t.rotation.y, t.rotation.z, t.rotation.w, w.linear.x, w.linear.y,
                      w.linear.z, w.angular.x, w.angular.y, w.angular.z)
                     for t, w in zip(msg.transforms, msg.twist)],
                    float).reshape(n, 13)  # one pass over the robots for all four arrays
    return (list(msg.joint_names), rows[:, 0:3], rows[:, 7:10], rows[:, 3:7], rows[:, 10:13])


def swarm_state_cdr(t_s: float, names: list[str], pos_m: np.ndarray, vel_mps: np.ndarray,
                    quat_xyzw: np.ndarray, omega_rad_s: np.ndarray) -> bytes:
    """The plain-CDR bytes of :func:`swarm_state`'s message (those ``DataWriter.write`` and
    :mod:`ros_nodes.cdr_codec` send, header included), written from the arrays without the
    message's 6 N objects."""
    stamp = to_time(t_s)
    out = bytearray(HEADER)
    out += _TIME.pack(stamp.sec, stamp.nanosec)
    put_string(out, WORLD_FRAME)
    put_count(out, len(names))
    for name in names:
        put_string(out, name)
    pos, vel = np.asarray(pos_m, float), np.asarray(vel_mps, float)
    quat, omega = np.asarray(quat_xyzw, float), np.asarray(omega_rad_s, float)
    for block in (np.concatenate([pos.reshape(-1, 3), quat.reshape(-1, 4)], axis=1),
                  np.concatenate([vel.reshape(-1, 3), omega.reshape(-1, 3)], axis=1)):
        put_count(out, len(block))
        if len(block):
            out += b"\0" * (-(len(out) - 4) % 8)
            out += block.astype("<f8").tobytes()
    put_count(out, 0)  # wrench
    out += b"\0" * (-len(out) % 4)
    return bytes(out)


_TIME = struct.Struct("<iI")


def twist_stamped_cdr(t_s: float, vel_mps: np.ndarray, yaw_rate_rad_s: float) -> bytes:
    """The plain-CDR bytes of :func:`twist_stamped`'s message, without building it."""
    stamp = to_time(t_s)
    out = bytearray(HEADER)
    out += _TIME.pack(stamp.sec, stamp.nanosec)
    put_string(out, WORLD_FRAME)
    out += b"\0" * (-(len(out) - 4) % 8)
    out += _TWIST.pack(*np.asarray(vel_mps, dtype=float).tolist(), 0.0, 0.0,
                       float(yaw_rate_rad_s))
    return bytes(out)


_TWIST = struct.Struct("<6d")


def pose_stamped(t_s: float, pos_m: np.ndarray,
                 quat_xyzw: np.ndarray = (0.0, 0.0, 0.0, 1.0)) -> PoseStamped:
    p, q = np.asarray(pos_m, dtype=float), np.asarray(quat_xyzw, dtype=float)
    return PoseStamped(header(t_s), Pose(Point(*p.tolist()), Quaternion(*q.tolist())))


def twist_stamped(t_s: float, vel_mps: np.ndarray, yaw_rate_rad_s: float) -> TwistStamped:
    v = np.asarray(vel_mps, dtype=float)
    return TwistStamped(header(t_s), Twist(Vector3(*v.tolist()),
                                           Vector3(0.0, 0.0, float(yaw_rate_rad_s))))


def vec(v: Vector3 | Point) -> np.ndarray:
    return np.array([v.x, v.y, v.z], dtype=float)


def quat(q: Quaternion) -> np.ndarray:
    return np.array([q.x, q.y, q.z, q.w], dtype=float)


def diagnostics(t_s: float, name: str, level: int, message: str,
                values: dict[str, object], hardware_id: str = "") -> DiagnosticArray:
    """One ``DiagnosticStatus`` named ``name`` with ``values`` rendered as strings."""
    kv = [KeyValue(str(k), _fmt(v)) for k, v in values.items()]
    return DiagnosticArray(header(t_s, ""), [DiagnosticStatus(level, name, message,
                                                              hardware_id, kv)])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
