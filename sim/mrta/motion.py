"""Kinematic flight between decisions: the training stand-in for the flight stack.

Each robot is a point flown straight at its waypoint at ``speed_mps`` (it stops on the
waypoint), integrated in ``motion_substeps`` steps per decision step. After every substep a
separation rule moves any two robots closer than ``separation_m`` apart along the line that
joins them, each by half of the overlap (two relaxation sweeps): the position-level
equivalent of the CBF shield's pairwise barrier, which in the flown system keeps the same
distance (``ShieldConfig.safety_distance_m``). Robots are confined to the world box.

``motion: drones`` in the config flies the same decisions on the simulated Crazyflies
instead (:mod:`swarm_rl.mrta.flight`).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from sim.mrta.config import MRTAConfig

_SWEEPS = 2


class FlightBackend(Protocol):
    """What flies a decision step when the kinematic model does not (``motion: drones``):
    positions (x, y) are ENU metres at the flight height, shaped (E, N, 2)."""

    def reset(self, robot_xy: np.ndarray) -> None:
        """Place the robots of fresh episodes."""

    def fly(self, waypoint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fly ``decision_dt_s`` towards ``waypoint``; return positions and distance flown
        (E, N) in metres."""


def separate(xy: np.ndarray, separation_m: float) -> np.ndarray:
    """Push apart pairs of robots (E, N, 2) closer than ``separation_m``; returns new xy."""
    if separation_m <= 0 or xy.shape[1] < 2:
        return xy
    out = xy.copy()
    n = xy.shape[1]
    eye = np.eye(n, dtype=bool)
    for _ in range(_SWEEPS):
        d = out[:, :, None, :] - out[:, None, :, :]  # d[e, i, j] = x_i - x_j
        dist = np.linalg.norm(d, axis=-1)
        overlap = np.where(eye, 0.0, np.maximum(separation_m - dist, 0.0))
        if not overlap.any():
            break
        # Coincident robots: split along a fixed, index-dependent direction.
        direction = np.where(dist[..., None] > 1e-9, d / np.maximum(dist, 1e-9)[..., None],
                             np.stack([np.sign(np.arange(n)[:, None] - np.arange(n)[None, :]),
                                       np.zeros((n, n))], -1)[None])
        out = out + 0.5 * (overlap[..., None] * direction).sum(axis=2)
    return out


def fly_kinematic(xy: np.ndarray, waypoint: np.ndarray, cfg: MRTAConfig
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Advance robots (E, N, 2) one decision step towards ``waypoint`` (E, N, 2).

    Returns the new positions and the distance each robot travelled (E, N) in metres."""
    dt = cfg.decision_dt_s / cfg.motion_substeps
    step = cfg.speed_mps * dt
    hx, hy = cfg.half_extent_m
    lo, hi = np.array([-hx, -hy]), np.array([hx, hy])
    travel = np.zeros(xy.shape[:2])
    for _ in range(cfg.motion_substeps):
        delta = waypoint - xy
        dist = np.linalg.norm(delta, axis=-1, keepdims=True)
        move = delta * np.minimum(1.0, step / np.maximum(dist, 1e-9))
        new = np.clip(separate(xy + move, cfg.separation_m), lo, hi)
        travel += np.linalg.norm(new - xy, axis=-1)
        xy = new
    return xy, travel
