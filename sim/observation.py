"""The one observation function: what a drone's policy sees.

Used by the training environments, by ``swarm-rl eval`` and (later) by the robot node on live
data, so the layout below is a contract. It is versioned: the version, K and the slices go into
every exported policy's metadata, and a runtime refuses a policy whose layout differs.

Layout version 1, all world-frame SI values, for one drone:

==================  =====  ===============================================================
part                size   meaning
==================  =====  ===============================================================
``goal_error``      3      own position minus goal (m)
``velocity``        3      own velocity (m/s)
``rotation``        9      body -> world rotation matrix, row-major
``body_rates``      3      angular velocity in the body frame (rad/s)
``height``          1      own height above the floor (m)
``neighbours``      6 K    K nearest neighbours in range, nearest first: position relative to
                           the drone, then velocity relative to the drone (m, m/s); zeros when
                           masked
``neighbour_mask``  K      1 for a real neighbour, 0 for padding
``obstacles``       9      3 x 3 patch of distances from points around the drone (xy grid,
                           ``OBSTACLE_PATCH_SPACING_M`` apart) to the nearest column surface,
                           clipped to ``OBSTACLE_RANGE_M``
==================  =====  ===============================================================
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from sim.jit import kernel

LAYOUT_VERSION = 1
OWN_DIM = 19
OBSTACLE_PATCH_SPACING_M = 0.2
OBSTACLE_RANGE_M = 2.0
_PATCH = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], indexing="ij"), -1).reshape(9, 2)
PATCH_OFFSETS_M = _PATCH * OBSTACLE_PATCH_SPACING_M


@dataclass(frozen=True)
class ObsLayout:
    """Sizes and slices of the observation vector for ``k`` neighbours."""

    k: int
    version: int = LAYOUT_VERSION

    @property
    def slices(self) -> dict[str, slice]:
        sizes = [("goal_error", 3), ("velocity", 3), ("rotation", 9), ("body_rates", 3),
                 ("height", 1), ("neighbours", 6 * self.k), ("neighbour_mask", self.k),
                 ("obstacles", 9)]
        out, start = {}, 0
        for name, size in sizes:
            out[name] = slice(start, start + size)
            start += size
        return out

    @property
    def dim(self) -> int:
        return OWN_DIM + 7 * self.k + 9

    def metadata(self) -> dict[str, str]:
        """Key-value pairs to store with a policy (e.g. ONNX metadata_props)."""
        return {"obs_layout_version": str(self.version), "obs_neighbours_k": str(self.k),
                "obs_dim": str(self.dim),
                "obs_slices": ";".join(f"{n}:{s.start}:{s.stop}" for n, s in self.slices.items())}


@dataclass(frozen=True)
class SensorNoise:
    pos_sigma_m: float = 0.0
    vel_sigma_mps: float = 0.0
    gyro_sigma_rad_s: float = 0.0


def nearest_neighbours(rel_pos: np.ndarray, rel_vel: np.ndarray, valid: np.ndarray, k: int,
                       range_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Pick the K nearest valid neighbours within ``range_m``.

    ``rel_pos``/``rel_vel`` are (B, M, 3) neighbour minus self, ``valid`` (B, M). Returns the
    (B, K, 6) features (zeros where masked) and the (B, K) mask, nearest first.
    """
    b, m = valid.shape
    dist = np.linalg.norm(rel_pos, axis=-1)
    dist = np.where(valid & (dist <= range_m), dist, np.inf)
    if m > k:
        idx = np.argpartition(dist, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((b, 0), int)
    else:
        idx = np.broadcast_to(np.arange(m), (b, m))
    d = np.take_along_axis(dist, idx, axis=1)
    order = np.argsort(d, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    d = np.take_along_axis(d, order, axis=1)
    mask = np.isfinite(d)
    feats = np.concatenate([np.take_along_axis(rel_pos, idx[..., None], axis=1),
                            np.take_along_axis(rel_vel, idx[..., None], axis=1)], axis=-1)
    feats = np.where(mask[..., None], feats, 0.0)
    if idx.shape[1] < k:
        pad = k - idx.shape[1]
        feats = np.concatenate([feats, np.zeros((b, pad, 6))], axis=1)
        mask = np.concatenate([mask, np.zeros((b, pad), bool)], axis=1)
    return feats, mask


def build_observation(goal_error: np.ndarray, vel: np.ndarray, rot: np.ndarray,
                      omega: np.ndarray, height: np.ndarray, neighbour_feats: np.ndarray,
                      neighbour_mask: np.ndarray, obstacle_patch: np.ndarray) -> np.ndarray:
    """Concatenate the parts, each (B, ...), into (B, dim) float32 in layout order."""
    b = goal_error.shape[0]
    return np.concatenate([
        goal_error, vel, rot.reshape(b, 9), omega, height.reshape(b, 1),
        neighbour_feats.reshape(b, -1), neighbour_mask.astype(float), obstacle_patch,
    ], axis=1).astype(np.float32)


@kernel
def _observe_kernel(pos, vel, rot, omega, goal, patch, k, range_m, out):
    """Write layout-v1 observations of all (E, N) drones into ``out`` (E, N, dim).

    Same result as :func:`nearest_neighbours` + :func:`build_observation` per drone (a test
    checks it), fused into one pass: neighbours are kept sorted by insertion, nearest first.
    """
    e_count, n = pos.shape[0], pos.shape[1]
    nb = OWN_DIM
    mask_at = OWN_DIM + 6 * k
    obst_at = mask_at + k
    for flat in numba.prange(e_count * n):
        e = flat // n
        i = flat % n
        row = out[e, i]
        row[:] = 0.0
        for c in range(3):
            row[c] = pos[e, i, c] - goal[e, i, c]
            row[3 + c] = vel[e, i, c]
            row[15 + c] = omega[e, i, c]
        for a in range(3):
            for b in range(3):
                row[6 + 3 * a + b] = rot[e, i, a, b]
        row[18] = pos[e, i, 2]
        best_d = np.full(k, np.inf)
        best_j = np.full(k, -1)
        for j in range(n):
            if j == i:
                continue
            dx = pos[e, j, 0] - pos[e, i, 0]
            dy = pos[e, j, 1] - pos[e, i, 1]
            dz = pos[e, j, 2] - pos[e, i, 2]
            d = np.sqrt(dx * dx + dy * dy + dz * dz)
            if d > range_m or k == 0 or d >= best_d[k - 1]:
                continue
            slot = k - 1
            while slot > 0 and best_d[slot - 1] > d:
                best_d[slot] = best_d[slot - 1]
                best_j[slot] = best_j[slot - 1]
                slot -= 1
            best_d[slot] = d
            best_j[slot] = j
        for s in range(k):
            j = best_j[s]
            if j < 0:
                continue
            for c in range(3):
                row[nb + 6 * s + c] = pos[e, j, c] - pos[e, i, c]
                row[nb + 6 * s + 3 + c] = vel[e, j, c] - vel[e, i, c]
            row[mask_at + s] = 1.0
        for c in range(9):
            row[obst_at + c] = patch[e, i, c]


def observe_swarm(pos: np.ndarray, vel: np.ndarray, rot: np.ndarray, omega: np.ndarray,
                  goal: np.ndarray, obstacle_dist_fn, layout: ObsLayout, range_m: float,
                  noise: SensorNoise = SensorNoise(),
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Observations (E, N, dim) float32 of every drone of E swarms from states (E, N, ...).

    ``obstacle_dist_fn(points_xy (E, N, 9, 2)) -> (E, N, 9)`` gives the distance from points to
    the nearest column surface. With ``noise`` and ``rng``, positions, velocities and gyro
    readings are perturbed by Gaussian noise once per step, so every observer sees the same
    perturbed neighbour states (as with a shared motion-capture broadcast).
    """
    if rng is not None and (noise.pos_sigma_m or noise.vel_sigma_mps or noise.gyro_sigma_rad_s):
        pos = pos + rng.normal(0.0, noise.pos_sigma_m, pos.shape)
        vel = vel + rng.normal(0.0, noise.vel_sigma_mps, vel.shape)
        omega = omega + rng.normal(0.0, noise.gyro_sigma_rad_s, omega.shape)
    points = pos[..., None, :2] + PATCH_OFFSETS_M
    patch = np.minimum(obstacle_dist_fn(points), OBSTACLE_RANGE_M)
    out = np.empty(pos.shape[:2] + (layout.dim,), np.float32)
    _observe_kernel(pos.shape[0] * pos.shape[1],
                    np.ascontiguousarray(pos, dtype=np.float64),
                    np.ascontiguousarray(vel, dtype=np.float64),
                    np.ascontiguousarray(rot, dtype=np.float64),
                    np.ascontiguousarray(omega, dtype=np.float64),
                    np.ascontiguousarray(goal, dtype=np.float64),
                    np.ascontiguousarray(patch, dtype=np.float64), layout.k, float(range_m), out)
    return out
