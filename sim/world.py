"""Static world geometry: floor, room bounds and obstacle columns, and collision tests.

The room spans ``[-x/2, x/2] x [-y/2, y/2] x [0, z]`` metres (world frame ENU, floor at z = 0).
Obstacles are vertical columns from floor to ceiling, given by their centres in the xy plane.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from sim.crazyflie import QuadParams
from sim.jit import kernel


@dataclass
class World:
    room_size_m: tuple[float, float, float]
    obstacle_xy: np.ndarray
    """(E, M, 2) column centres; rows with ``obstacle_mask`` False are unused."""
    obstacle_mask: np.ndarray
    """(E, M) which columns exist."""
    obstacle_radius_m: float

    @classmethod
    def empty(cls, room_size_m: tuple[float, float, float], num_envs: int) -> "World":
        return cls(room_size_m, np.zeros((num_envs, 0, 2)), np.zeros((num_envs, 0), bool), 0.0)

    @property
    def lower(self) -> np.ndarray:
        x, y, _ = self.room_size_m
        return np.array([-x / 2, -y / 2, 0.0])

    @property
    def upper(self) -> np.ndarray:
        x, y, z = self.room_size_m
        return np.array([x / 2, y / 2, z])


@dataclass
class Collisions:
    """Per-drone contact flags for one step, each (E, N) bool."""

    drone: np.ndarray
    obstacle: np.ndarray
    floor: np.ndarray
    wall: np.ndarray

    @property
    def any(self) -> np.ndarray:
        return self.drone | self.obstacle | self.floor | self.wall


def pairwise_delta(pos: np.ndarray) -> np.ndarray:
    """(E, N, N, 3) with ``[e, i, j] = pos[e, j] - pos[e, i]``."""
    return pos[:, None, :, :] - pos[:, :, None, :]


def obstacle_distance_xy(points_xy: np.ndarray, world: World) -> np.ndarray:
    """Distance (m) from points (E, ..., 2) to the nearest column surface, ``inf`` if none."""
    e = points_xy.shape[0]
    if world.obstacle_xy.shape[1] == 0:
        return np.full(points_xy.shape[:-1], np.inf)
    flat = points_xy.reshape(e, -1, 1, 2)
    d = np.linalg.norm(flat - world.obstacle_xy[:, None, :, :], axis=-1) - world.obstacle_radius_m
    d = np.where(world.obstacle_mask[:, None, :], d, np.inf).min(axis=-1)
    return d.reshape(points_xy.shape[:-1])


@kernel
def _pair_kernel(pos, radius, height, nearest, contact):
    e_count, n = pos.shape[0], pos.shape[1]
    for flat in numba.prange(e_count * n):
        e = flat // n
        i = flat % n
        best = np.inf
        touch = False
        for j in range(n):
            if j == i:
                continue
            dx = pos[e, j, 0] - pos[e, i, 0]
            dy = pos[e, j, 1] - pos[e, i, 1]
            dz = pos[e, j, 2] - pos[e, i, 2]
            dxy2 = dx * dx + dy * dy
            best = min(best, np.sqrt(dxy2 + dz * dz))
            if dxy2 < 4.0 * radius * radius and abs(dz) < height:
                touch = True
        nearest[e, i] = best
        contact[e, i] = touch


def pair_stats(pos: np.ndarray, model: QuadParams) -> tuple[np.ndarray, np.ndarray]:
    """For drones (E, N, 3): distance to the nearest swarm-mate (E, N) in metres (inf when
    alone) and whether each drone's collision cylinder touches another's (E, N) bool."""
    nearest = np.empty(pos.shape[:2])
    contact = np.empty(pos.shape[:2], bool)
    _pair_kernel(pos.shape[0] * pos.shape[1], np.ascontiguousarray(pos, dtype=np.float64),
                 model.collision_radius_m, model.collision_height_m, nearest, contact)
    return nearest, contact


def detect_collisions(pos: np.ndarray, world: World, model: QuadParams) -> Collisions:
    """Contacts of level collision cylinders (radius r, height h, centred on ``pos`` (E, N, 3)).

    Two drones touch when their axes are closer than 2r and their centres closer than h
    vertically; a drone touches a column when its axis is within r of the column's surface,
    the floor when its centre is at or below h/2, a wall or the ceiling when it is within r
    (h/2) or touching it. Touching counts because the batched engine stops a drone exactly there.
    """
    r, h = model.collision_radius_m, model.collision_height_m
    drone = pair_stats(pos, model)[1]
    obstacle = obstacle_distance_xy(pos[..., :2], world) < r
    floor = pos[..., 2] <= h / 2
    lo, hi = world.lower, world.upper
    margin = np.array([r, r, h / 2])
    wall = ((pos[..., :2] <= lo[:2] + margin[:2]) | (pos[..., :2] >= hi[:2] - margin[:2])).any(-1)
    wall |= pos[..., 2] >= hi[2] - margin[2]
    return Collisions(drone, obstacle, floor, wall)


def min_pairwise_distance(pos: np.ndarray) -> np.ndarray:
    """(E,) smallest centre-to-centre distance between any two drones (inf for one drone)."""
    n = pos.shape[1]
    if n < 2:
        return np.full(pos.shape[0], np.inf)
    d = np.linalg.norm(pairwise_delta(pos), axis=-1)
    d[:, np.arange(n), np.arange(n)] = np.inf
    return d.min(axis=(1, 2))
