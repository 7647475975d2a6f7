"""A box geofence for commanded velocities and positions (world ENU, metres).

The velocity towards each face is limited to what a drone that starts braking after
``reaction_time_s`` (its velocity loop's lag) at ``brake_acc_mps2`` can still stop from before
the face: ``v`` with ``v tau + v^2 / (2 a) = d`` at distance ``d``; outside the box the
outward component is replaced by a push back in at ``return_gain`` per metre of overshoot,
capped at ``max_return_mps``. Pure numpy: no ROS, no cflib.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geofence:
    lower_m: tuple[float, float, float] = (-2.0, -2.0, 0.0)
    upper_m: tuple[float, float, float] = (2.0, 2.0, 2.0)
    brake_acc_mps2: float = 1.0
    reaction_time_s: float = 0.3
    return_gain: float = 1.0
    """Push-back speed per metre outside the box (1/s)."""
    max_return_mps: float = 0.3

    def validate(self) -> None:
        lo, hi = np.asarray(self.lower_m, float), np.asarray(self.upper_m, float)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.isfinite(lo).all()
                                                        and np.isfinite(hi).all()):
            raise ValueError(f"geofence: lower_m and upper_m must be 3 finite numbers, got "
                             f"{self.lower_m}, {self.upper_m}")
        if not (hi > lo).all():
            raise ValueError(f"geofence: upper_m must exceed lower_m on every axis, got "
                             f"{self.lower_m} .. {self.upper_m}")
        if self.brake_acc_mps2 <= 0 or min(self.reaction_time_s, self.return_gain,
                                           self.max_return_mps) < 0:
            raise ValueError("geofence: brake_acc_mps2 must be > 0, reaction_time_s and the "
                             "return terms >= 0")

    def stopping_speed(self, room_m: np.ndarray) -> np.ndarray:
        """The speed from which a drone stops within ``room_m`` (>= 0) metres."""
        a, tau = self.brake_acc_mps2, self.reaction_time_s
        return np.sqrt((a * tau) ** 2 + 2 * a * np.maximum(room_m, 0.0)) - a * tau

    def contains(self, pos_m: np.ndarray) -> bool:
        p = np.asarray(pos_m, float)
        return bool((p >= self.lower_m).all() and (p <= self.upper_m).all())

    def clamp_position(self, pos_m: np.ndarray) -> np.ndarray:
        """The point of the box nearest to ``pos_m``."""
        return np.clip(np.asarray(pos_m, float), self.lower_m, self.upper_m)

    def clamp_velocity(self, pos_m: np.ndarray, vel_mps: np.ndarray) -> np.ndarray:
        """``vel_mps`` limited per axis so that a drone at ``pos_m`` can brake before the fence
        (and is pushed back in when outside it)."""
        p, v = np.asarray(pos_m, float), np.asarray(vel_mps, float)
        room_up = np.asarray(self.upper_m) - p
        room_down = p - np.asarray(self.lower_m)
        up = np.where(room_up >= 0, self.stopping_speed(room_up),
                      -np.minimum(self.return_gain * -room_up, self.max_return_mps))
        down = np.where(room_down >= 0, self.stopping_speed(room_down),
                        -np.minimum(self.return_gain * -room_down, self.max_return_mps))
        return np.clip(v, -down, up)
