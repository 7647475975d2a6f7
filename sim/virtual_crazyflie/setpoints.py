"""Commander packets decoded into one :class:`Setpoint` type.

Wire layouts are cflib's ``commander.py`` (protocol >= 9): the generic setpoint port carries a
type byte then the packed values; the legacy RPYT port carries ``<fffH`` roll, pitch, yaw rate
(deg, deg/s) and thrust (0..65535). Conventions kept from the firmware: positions in m and
velocities in m/s, world ENU except the hover setpoint's body-frame (heading-aligned) vx, vy;
yaw angles and rates in degrees on the wire, right-handed about +z (counter-clockwise
positive) for the generic types, and clockwise positive on the legacy RPYT port; roll and pitch
in degrees with the firmware's legacy pitch sign (positive pitch is nose up).
A packet too short for its type, of an unknown type, or with a non-finite value decodes to
None and is ignored (the firmware would feed NaN into its controller; the emulator refuses).
"""
from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass, field

import numpy as np

TYPE_STOP = 0
TYPE_FULL_STATE = 6
TYPE_POSITION = 7
TYPE_VELOCITY_WORLD = 8
TYPE_ZDISTANCE = 9
TYPE_HOVER = 10
TYPE_MANUAL = 11
META_NOTIFY_SETPOINT_STOP = 0
RPYT_MIN_THRUST = 1000
RPYT_MAX_THRUST = 60000


class XYMode(enum.IntEnum):
    POSITION = 0
    VELOCITY = 1
    ATTITUDE = 2


class ZMode(enum.IntEnum):
    POSITION = 0
    VELOCITY = 1
    THRUST = 2


class YawMode(enum.IntEnum):
    ANGLE = 0
    RATE = 1


@dataclass(frozen=True)
class Setpoint:
    """What the onboard controller should track, in SI units (world ENU) and radians."""

    kind: str
    stop: bool = False
    """Motors off (a STOP setpoint)."""
    xy: XYMode = XYMode.VELOCITY
    z: ZMode = ZMode.VELOCITY
    yaw: YawMode = YawMode.RATE
    pos_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    vel_mps: np.ndarray = field(default_factory=lambda: np.zeros(3))
    acc_mps2: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """Feed-forward acceleration (full-state and planner setpoints)."""
    body_velocity: bool = False
    """vel_mps x, y are in the heading frame (hover setpoints)."""
    roll_rad: float = 0.0
    pitch_rad: float = 0.0
    """Right-handed FLU pitch (the firmware's wire pitch negated)."""
    attitude_rate: bool = False
    """roll_rad, pitch_rad are rates (rad/s) to integrate (manual setpoint in rate mode)."""
    thrust_raw: float = 0.0
    yaw_rad: float = 0.0
    yaw_rate_rad_s: float = 0.0


STOP = Setpoint("stop", stop=True)


def _finite(values: tuple) -> bool:
    return all(math.isfinite(v) for v in values)


def _unpack(fmt: str, data: bytes) -> tuple | None:
    size = struct.calcsize(fmt)
    if len(data) < size:
        return None
    values = struct.unpack_from(fmt, data)
    return values if _finite(values) else None


def decode_rpyt(data: bytes, thrust_locked: bool) -> Setpoint | None:
    """The legacy COMMANDER port: roll, pitch (deg), yaw rate (deg/s, clockwise), thrust.
    A locked thrust (until a zero-thrust packet arrives) and thrust under 1000 give 0."""
    v = _unpack("<fffH", data)
    if v is None:
        return None
    roll, pitch, yawrate, thrust = v
    if thrust_locked or thrust < RPYT_MIN_THRUST:
        thrust = 0
    return Setpoint("rpyt", xy=XYMode.ATTITUDE, z=ZMode.THRUST, yaw=YawMode.RATE,
                    roll_rad=math.radians(roll), pitch_rad=-math.radians(pitch),
                    thrust_raw=float(min(thrust, RPYT_MAX_THRUST)),
                    yaw_rate_rad_s=-math.radians(yawrate))


def _decompress_quaternion(comp: int) -> np.ndarray:
    q = np.zeros(4)
    largest = comp >> 30
    total = 0.0
    for i in range(3, -1, -1):
        if i != largest:
            mag, neg = comp & 511, (comp >> 9) & 1
            comp >>= 10
            q[i] = (-1 if neg else 1) * mag / 511 / math.sqrt(2.0)
            total += q[i] * q[i]
    q[largest] = math.sqrt(max(1.0 - total, 0.0))
    return q


def _yaw_of(q_xyzw: np.ndarray) -> float:
    x, y, z, w = q_xyzw
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def decode_generic(data: bytes) -> Setpoint | None:
    """The GENERIC_SETPOINT port, channel 0: type byte + values."""
    if not data:
        return None
    kind, body = data[0], data[1:]
    if kind == TYPE_STOP:
        return STOP
    if kind in (TYPE_POSITION, TYPE_VELOCITY_WORLD, TYPE_ZDISTANCE, TYPE_HOVER):
        v = _unpack("<ffff", body)
        if v is None:
            return None
        a, b, c, d = v
        if kind == TYPE_POSITION:
            return Setpoint("position", xy=XYMode.POSITION, z=ZMode.POSITION,
                            yaw=YawMode.ANGLE, pos_m=np.array([a, b, c]),
                            yaw_rad=math.radians(d))
        if kind == TYPE_VELOCITY_WORLD:
            return Setpoint("velocity_world", xy=XYMode.VELOCITY, z=ZMode.VELOCITY,
                            vel_mps=np.array([a, b, c]), yaw_rate_rad_s=math.radians(d))
        if kind == TYPE_ZDISTANCE:
            return Setpoint("zdistance", xy=XYMode.ATTITUDE, z=ZMode.POSITION,
                            roll_rad=math.radians(a), pitch_rad=-math.radians(b),
                            pos_m=np.array([0.0, 0.0, d]), yaw_rate_rad_s=math.radians(c))
        return Setpoint("hover", xy=XYMode.VELOCITY, z=ZMode.POSITION, body_velocity=True,
                        vel_mps=np.array([a, b, 0.0]), pos_m=np.array([0.0, 0.0, d]),
                        yaw_rate_rad_s=math.radians(c))
    if kind == TYPE_FULL_STATE:
        v = _unpack("<hhhhhhhhhIhhh", body)
        if v is None:
            return None
        q = _decompress_quaternion(v[9])
        return Setpoint("full_state", xy=XYMode.POSITION, z=ZMode.POSITION,
                        yaw=YawMode.ANGLE, pos_m=np.array(v[0:3]) / 1000.0,
                        vel_mps=np.array(v[3:6]) / 1000.0, acc_mps2=np.array(v[6:9]) / 1000.0,
                        yaw_rad=_yaw_of(q), yaw_rate_rad_s=math.radians(v[12] / 1000.0))
    if kind == TYPE_MANUAL:
        v = _unpack("<fffHB", body)
        if v is None:
            return None
        roll, pitch, yawrate, thrust, rate = v
        return Setpoint("manual", xy=XYMode.ATTITUDE, z=ZMode.THRUST, yaw=YawMode.RATE,
                        roll_rad=math.radians(roll), pitch_rad=-math.radians(pitch),
                        attitude_rate=bool(rate),
                        thrust_raw=float(min(thrust, RPYT_MAX_THRUST)),
                        yaw_rate_rad_s=math.radians(yawrate))
    return None


def decode_meta(data: bytes) -> float | None:
    """GENERIC_SETPOINT channel 1: notify-setpoint-stop's remain-valid time (s), else None."""
    if len(data) < 5 or data[0] != META_NOTIFY_SETPOINT_STOP:
        return None
    return struct.unpack_from("<I", data, 1)[0] / 1000.0
