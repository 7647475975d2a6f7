"""The high-level commander: takeoff, land, go_to and stop, planned onboard.

As in the firmware's ``planner.c``, each command becomes one 7th-order polynomial per axis
(x, y, z, yaw) from the current planner state (position, velocity, acceleration) to the goal
at rest (zero velocity, acceleration and jerk) in the given duration; ``linear`` go_to moves at
constant velocity instead. After a takeoff or go_to the planner holds the end point; after a
land it goes idle (motors off unless another setpoint arrives). Takeoff is refused while a plan
is running, as the firmware refuses it. Packets are cflib's ``high_level_commander.py``
layouts; each carries a group mask, and a drone obeys when the mask is 0 or shares a bit with
its own group mask.
"""
from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass

import numpy as np

CMD_SET_GROUP_MASK = 0
CMD_TAKEOFF = 1
CMD_LAND = 2
CMD_STOP = 3
CMD_GO_TO = 4
CMD_START_TRAJECTORY = 5
CMD_DEFINE_TRAJECTORY = 6
CMD_TAKEOFF_2 = 7
CMD_LAND_2 = 8
CMD_TAKEOFF_WITH_VELOCITY = 9
CMD_LAND_WITH_VELOCITY = 10
CMD_SPIRAL = 11
CMD_GO_TO_2 = 12
CMD_START_TRAJECTORY_2 = 13


class PlanKind(enum.IntEnum):
    TAKEOFF = 0
    LAND = 1
    GO_TO = 2


@dataclass
class PlannerState:
    pos_m: np.ndarray
    vel_mps: np.ndarray
    acc_mps2: np.ndarray
    yaw_rad: float
    yaw_rate_rad_s: float = 0.0


def poly7_coeffs(p0: float, v0: float, a0: float, p1: float, duration_s: float) -> np.ndarray:
    """Coefficients c0..c7 of p(t) with p(0)=p0, p'(0)=v0, p''(0)=a0, p'''(0)=0 and
    p(T)=p1, p'(T)=p''(T)=p'''(T)=0, T = ``duration_s``."""
    t = duration_s
    c = np.zeros(8)
    c[0], c[1], c[2] = p0, v0, a0 / 2.0
    # Remaining c4..c7 from the four end conditions (c3 = 0 for zero initial jerk).
    powers = np.array([4, 5, 6, 7], dtype=float)
    rows = np.array([t ** powers, powers * t ** (powers - 1),
                     powers * (powers - 1) * t ** (powers - 2),
                     powers * (powers - 1) * (powers - 2) * t ** (powers - 3)])
    rhs = np.array([p1 - (c[0] + c[1] * t + c[2] * t * t), -(c[1] + 2 * c[2] * t),
                    -2 * c[2], 0.0])
    c[4:] = np.linalg.solve(rows, rhs)
    return c


_POWERS = np.arange(8, dtype=float)
_D1 = _POWERS[1:]
_D2 = _POWERS[2:] * _POWERS[1:-1]


class Planner:
    """One drone's high-level planner; times in seconds of emulator time."""

    def __init__(self) -> None:
        self.group_mask = 0
        self.kind: PlanKind | None = None
        self._start_s = 0.0
        self._duration_s = 0.0
        self._coeffs = np.zeros((4, 8))
        """Per axis (x, y, z, yaw) polynomial coefficients c0..c7."""
        self._linear: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def active(self) -> bool:
        return self.kind is not None

    def stop(self) -> None:
        self.kind = None

    def in_group(self, mask: int) -> bool:
        return mask == 0 or (mask & self.group_mask) != 0

    def plan(self, kind: PlanKind, start: PlannerState, goal_pos: np.ndarray,
             goal_yaw: float, duration_s: float, now_s: float, linear: bool = False) -> None:
        duration_s = max(duration_s, 0.05)
        yaw_goal = start.yaw_rad + math.remainder(goal_yaw - start.yaw_rad, 2 * math.pi)
        p0 = np.append(start.pos_m, start.yaw_rad)
        p1 = np.append(goal_pos, yaw_goal)
        v0 = np.append(start.vel_mps, start.yaw_rate_rad_s)
        a0 = np.append(start.acc_mps2, 0.0)
        self.kind, self._start_s, self._duration_s = kind, now_s, duration_s
        if linear:
            self._linear = (p0, p1)
        else:
            self._linear = None
            self._coeffs = np.stack([poly7_coeffs(p0[k], v0[k], a0[k], p1[k], duration_s)
                                     for k in range(4)])

    def finished(self, now_s: float) -> bool:
        return self.active and now_s - self._start_s >= self._duration_s

    def evaluate(self, now_s: float) -> PlannerState | None:
        """The planned state at ``now_s``; None when idle. A finished land goes idle."""
        if not self.active:
            return None
        t = min(max(now_s - self._start_s, 0.0), self._duration_s)
        if self.kind == PlanKind.LAND and now_s - self._start_s >= self._duration_s:
            self.stop()
            return None
        if self._linear is not None:
            p0, p1 = self._linear
            s = t / self._duration_s
            moving = now_s - self._start_s < self._duration_s
            p = p0 + s * (p1 - p0)
            v = (p1 - p0) / self._duration_s if moving else np.zeros(4)
            return PlannerState(p[:3], v[:3], np.zeros(3), float(p[3]), float(v[3]))
        tp = t ** _POWERS
        c = self._coeffs
        pos, vel, acc = c @ tp, (c[:, 1:] * _D1) @ tp[:7], (c[:, 2:] * _D2) @ tp[:6]
        return PlannerState(pos[:3], vel[:3], acc[:3], float(pos[3]), float(vel[3]))


@dataclass(frozen=True)
class HighLevelCommand:
    """One decoded high-level packet (SI units, radians)."""

    cmd: int
    group_mask: int
    height_m: float = 0.0
    yaw_rad: float = 0.0
    use_current_yaw: bool = False
    duration_s: float = 0.0
    velocity_mps: float = 0.0
    relative: bool = False
    linear: bool = False
    goal_m: tuple[float, float, float] = (0.0, 0.0, 0.0)


_LAYOUTS = {
    CMD_SET_GROUP_MASK: "<B", CMD_STOP: "<B", CMD_TAKEOFF: "<Bff", CMD_LAND: "<Bff",
    CMD_TAKEOFF_2: "<Bff?f", CMD_LAND_2: "<Bff?f", CMD_TAKEOFF_WITH_VELOCITY: "<Bff?f?",
    CMD_LAND_WITH_VELOCITY: "<Bff?f?", CMD_GO_TO: "<BBfffff", CMD_GO_TO_2: "<BBBfffff",
}


def decode_high_level(data: bytes) -> HighLevelCommand | None:
    """Decode a HIGH_LEVEL packet; None if unknown, too short or not finite. Trajectory and
    spiral commands decode to None: the emulator holds no trajectory memory."""
    if not data or data[0] not in _LAYOUTS:
        return None
    cmd, fmt = data[0], _LAYOUTS[data[0]]
    if len(data) - 1 < struct.calcsize(fmt):
        return None
    v = struct.unpack_from(fmt, data, 1)
    if not all(math.isfinite(x) for x in v):
        return None
    if cmd in (CMD_SET_GROUP_MASK, CMD_STOP):
        return HighLevelCommand(cmd, v[0])
    if cmd in (CMD_TAKEOFF, CMD_LAND):
        return HighLevelCommand(cmd, v[0], height_m=v[1], duration_s=v[2],
                                use_current_yaw=True)
    if cmd in (CMD_TAKEOFF_2, CMD_LAND_2):
        return HighLevelCommand(cmd, v[0], height_m=v[1], yaw_rad=v[2],
                                use_current_yaw=bool(v[3]), duration_s=v[4])
    if cmd in (CMD_TAKEOFF_WITH_VELOCITY, CMD_LAND_WITH_VELOCITY):
        return HighLevelCommand(cmd, v[0], height_m=v[1], yaw_rad=v[2],
                                use_current_yaw=bool(v[3]), velocity_mps=v[4],
                                relative=bool(v[5]))
    if cmd == CMD_GO_TO:
        return HighLevelCommand(cmd, v[0], relative=bool(v[1]), goal_m=tuple(v[2:5]),
                                yaw_rad=v[5], duration_s=v[6])
    return HighLevelCommand(cmd, v[0], relative=bool(v[1]), linear=bool(v[2]),
                            goal_m=tuple(v[3:6]), yaw_rad=v[6], duration_s=v[7])
