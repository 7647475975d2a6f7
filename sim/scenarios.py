"""Swarm scenarios: where drones spawn, where their goals are (and how they move), and the
obstacle columns. Each scenario is a function of (config, rng, number of environments),
dispatched by name through :data:`SCENARIOS`.

Spawns never overlap: drones are placed in distinct cells of a jittered grid whose cells are
at least ``spawn_min_separation_m`` apart. All positions are world-frame ENU metres.

``obstacles`` mixes two kinds of episode, per environment: a share ``1 - obstacle_mix``
crosses the column field (spawns west of it, goals east of it), the share ``obstacle_mix``
scatters both spawns and goals in and around the field, clear of the columns, so that a policy
also learns to settle at goals among columns and to detour round them over short distances.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sim.config import EnvConfig, FORMATIONS
from sim.errors import ConfigError
from sim.world import World, obstacle_distance_xy

MIN_GOAL_HEIGHT_M = 0.4
LOOSE_GRID = 1.4
ROOM_MARGIN_M = 0.3
"""Spawns and goals keep this far from the walls and the ceiling."""
SCATTER_MARGIN_M = 1.0
"""Scattered obstacle episodes use the column field grown by this much (m) on every side."""
SCATTER_CLEARANCE_M = 0.35
"""Spawns and goals of scattered obstacle episodes keep this far (m, horizontally) from every
column surface."""


@dataclass
class Goals:
    """Goal of each drone, ``base + amplitude * (sin(omega t + phase) - sin(phase))``."""

    base: np.ndarray
    """(E, N, 3) goals at t = 0."""
    amplitude_m: np.ndarray
    """(E, 1, 3) amplitude of the shared goal motion (zero for static goals)."""
    omega_rad_s: np.ndarray
    phase_rad: np.ndarray

    @classmethod
    def static(cls, base: np.ndarray) -> "Goals":
        zeros = np.zeros((base.shape[0], 1, 3))
        return cls(base, zeros, zeros.copy(), zeros.copy())

    def at(self, t_s: float) -> np.ndarray:
        """(E, N, 3) goal positions at episode time ``t_s``."""
        return self.base + self.amplitude_m * (np.sin(self.omega_rad_s * t_s + self.phase_rad)
                                               - np.sin(self.phase_rad))


@dataclass
class ScenarioInstance:
    spawn: np.ndarray
    """(E, N, 3) initial positions."""
    goals: Goals
    world: World


def formation(shape: str, n: int, spacing_m: float) -> np.ndarray:
    """(n, 3) offsets of a formation centred on the origin, neighbours ``spacing_m`` apart."""
    i = np.arange(n)
    if shape == "circle":
        radius = spacing_m / (2 * np.sin(np.pi / n)) if n > 1 else 0.0  # chord = spacing
        angle = 2 * np.pi * i / max(n, 1)
        return np.stack([radius * np.cos(angle), radius * np.sin(angle), 0 * angle], -1)
    if shape == "line":
        return np.stack([(i - (n - 1) / 2) * spacing_m, 0 * i, 0 * i], -1).astype(float)
    if shape == "grid":
        cols = int(np.ceil(np.sqrt(n)))
        xy = np.stack([i % cols, i // cols], -1) * spacing_m
        xy = xy - xy.mean(axis=0)
        return np.concatenate([xy, np.zeros((n, 1))], -1)
    if shape == "sphere":
        if n == 1:
            return np.zeros((1, 3))
        radius = max(1.2 * spacing_m * np.sqrt(n / (4 * np.pi)), spacing_m)
        z = 1 - 2 * (i + 0.5) / n
        phi = i * np.pi * (3 - np.sqrt(5))
        r = np.sqrt(1 - z * z)
        return radius * np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)
    if shape == "pyramid":
        points, layer = [], 0
        while len(points) < n:
            side = layer + 1
            for a in range(side):
                for b in range(side):
                    points.append([(a - layer / 2) * spacing_m, (b - layer / 2) * spacing_m,
                                   -layer * spacing_m])
            layer += 1
        pts = np.array(points[:n])
        return pts - np.array([0.0, 0.0, pts[:, 2].mean()])
    raise ConfigError(f"formation: unknown formation '{shape}'; allowed: {', '.join(FORMATIONS)}")


def _rotate_z(points: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Rotate (E, N, 3) points about z by per-env angles (E,)."""
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    out = points.copy()
    out[..., 0] = c * points[..., 0] - s * points[..., 1]
    out[..., 1] = s * points[..., 0] + c * points[..., 1]
    return out


def sample_separated(rng: np.random.Generator, num_envs: int, n: int, lower: np.ndarray,
                     upper: np.ndarray, min_sep_m: float, what: str) -> np.ndarray:
    """(E, n, 3) points in the box [lower, upper], pairwise at least ``min_sep_m`` apart.

    Each point sits on its own node of a grid whose nodes are ``LOOSE_GRID`` times
    ``min_sep_m`` apart (exactly ``min_sep_m`` if the looser grid has too few nodes), jittered
    by up to half the spare distance so that neighbours never come closer than ``min_sep_m``.
    """
    nodes, jitter_room = _separated_grid(n, lower, upper, min_sep_m, what)
    pick = rng.random((num_envs, len(nodes))).argsort(axis=1)[:, :n]
    jitter = rng.uniform(-1.0, 1.0, (num_envs, n, 3)) * jitter_room
    return np.clip(nodes[pick] + jitter, lower, upper)


def _separated_grid(n: int, lower: np.ndarray, upper: np.ndarray, min_sep_m: float,
                    what: str) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (G, 3) of the grid :func:`sample_separated` draws ``n`` points from, and the
    jitter (3,) each may move by (either way) while staying ``min_sep_m`` from its neighbours."""
    extent = np.maximum(upper - lower, 0.0)
    for factor in (LOOSE_GRID, 1.0):
        counts = np.maximum(np.floor(extent / (factor * min_sep_m)).astype(int) + 1, 1)
        if np.prod(counts) >= n:
            break
    else:
        raise ConfigError(f"{what}: {n} drones do not fit {min_sep_m} m apart in a "
                          f"{extent.round(2).tolist()} m region; enlarge it or use fewer drones")
    cell = np.where(counts > 1, extent / np.maximum(counts - 1, 1), 0.0)
    grid = np.stack(np.meshgrid(*[np.arange(c) for c in counts], indexing="ij"), -1).reshape(-1, 3)
    return lower + grid * cell, np.maximum(cell - min_sep_m, 0.0) / 2


def sample_clear_of_columns(rng: np.random.Generator, world: World, n: int, lower: np.ndarray,
                            upper: np.ndarray, min_sep_m: float, clearance_m: float,
                            what: str) -> np.ndarray:
    """(E, n, 3) points in the box [lower, upper], pairwise at least ``min_sep_m`` apart and at
    least ``clearance_m`` (horizontally) from every column surface of their environment.

    The grid of :func:`sample_separated`, every node jittered; the ``n`` points are drawn at
    random among the jittered nodes clear of the columns.
    """
    nodes, jitter_room = _separated_grid(n, lower, upper, min_sep_m, what)
    e = world.obstacle_mask.shape[0]
    points = np.clip(nodes + rng.uniform(-1.0, 1.0, (e,) + nodes.shape) * jitter_room,
                     lower, upper)
    clear = obstacle_distance_xy(points[..., :2], world) >= clearance_m  # (E, G)
    if (clear.sum(axis=1) < n).any():
        raise ConfigError(f"{what}: {n} drones do not fit {min_sep_m} m apart and "
                          f"{clearance_m} m from the columns; enlarge the room or use fewer "
                          "drones")
    pick = np.where(clear, rng.random(clear.shape), 2.0).argsort(axis=1)[:, :n]
    return np.take_along_axis(points, pick[..., None], axis=1)


def _spawn_box(cfg: EnvConfig) -> tuple[np.ndarray, np.ndarray]:
    a = cfg.spawn_area_m
    lo, hi = cfg.spawn_height_m
    return np.array([-a, -a, lo]), np.array([a, a, hi])


def _formation_goals(cfg: EnvConfig, rng: np.random.Generator, e: int) -> np.ndarray:
    """Formations at random yaw, centred within 1 m of the room's axis and inside the room.

    ``random`` draws among the shapes that fit the room in any rotation; a named shape that
    does not fit raises :class:`ConfigError`.
    """
    n = cfg.num_drones
    half_xy = min(cfg.room_size_m[:2]) / 2 - ROOM_MARGIN_M
    candidates = [s for s in FORMATIONS if s != "random"] if cfg.formation == "random" else [
        cfg.formation]
    shapes, radii = [], []
    for name in candidates:
        offsets = formation(name, n, cfg.formation_spacing_m)
        radius_xy = np.linalg.norm(offsets[:, :2], axis=-1).max()
        top = max(cfg.goal_height_m, MIN_GOAL_HEIGHT_M - offsets[:, 2].min()) + offsets[:, 2].max()
        if radius_xy <= half_xy and top <= cfg.room_size_m[2] - ROOM_MARGIN_M:
            shapes.append(offsets)
            radii.append(radius_xy)
    if not shapes:
        raise ConfigError(f"formation: a '{cfg.formation}' formation of {n} drones "
                          f"{cfg.formation_spacing_m} m apart does not fit the {cfg.room_size_m} "
                          "m room; enlarge room_size_m or shrink formation_spacing_m")
    chosen = rng.integers(len(shapes), size=e)
    offsets = _rotate_z(np.stack(shapes)[chosen], rng.uniform(-np.pi, np.pi, e))
    centre = np.zeros((e, 1, 3))
    shift_m = np.minimum(1.0, half_xy - np.array(radii)[chosen])
    centre[..., :2] = rng.uniform(-1.0, 1.0, (e, 1, 2)) * shift_m[:, None, None]
    low = MIN_GOAL_HEIGHT_M - offsets[..., 2].min(axis=1, keepdims=True)
    centre[..., 2] = np.maximum(cfg.goal_height_m, low)
    return offsets + centre


def _check_inside(cfg: EnvConfig, points: np.ndarray, what: str) -> None:
    margin = ROOM_MARGIN_M
    half = np.array(cfg.room_size_m[:2]) / 2 - margin
    too_high = points[..., 2] > cfg.room_size_m[2] - margin
    if (np.abs(points[..., :2]) > half).any() or too_high.any():
        raise ConfigError(f"{what}: positions leave the {cfg.room_size_m} m room; enlarge "
                          "room_size_m or shrink formation_spacing_m / spawn_area_m")


def hover(cfg: EnvConfig, rng: np.random.Generator, e: int) -> ScenarioInstance:
    """Every drone flies to its own random goal."""
    lo, hi = _spawn_box(cfg)
    spawn = sample_separated(rng, e, cfg.num_drones, lo, hi, cfg.spawn_min_separation_m,
                             "spawn_area_m")
    goal_lo = np.array([lo[0], lo[1], max(MIN_GOAL_HEIGHT_M, lo[2])])
    goals = sample_separated(rng, e, cfg.num_drones, goal_lo, hi, cfg.spawn_min_separation_m,
                             "spawn_area_m")
    return ScenarioInstance(spawn, Goals.static(goals), World.empty(cfg.room_size_m, e))


def static_formation(cfg: EnvConfig, rng: np.random.Generator, e: int) -> ScenarioInstance:
    """Random spawns; goals form a shape (circle, grid, line, sphere, pyramid)."""
    lo, hi = _spawn_box(cfg)
    spawn = sample_separated(rng, e, cfg.num_drones, lo, hi, cfg.spawn_min_separation_m,
                             "spawn_area_m")
    goals = _formation_goals(cfg, rng, e)
    return ScenarioInstance(spawn, Goals.static(goals), World.empty(cfg.room_size_m, e))


def swap_goals(cfg: EnvConfig, rng: np.random.Generator, e: int) -> ScenarioInstance:
    """Drones start on a circle and fly to the opposite point: every path crosses the centre."""
    n = cfg.num_drones
    chord_radius = cfg.spawn_min_separation_m / (2 * np.sin(np.pi / n)) if n > 1 else 0.0
    radius = max(chord_radius, 1.0)  # neighbours on the circle >= spawn_min_separation_m apart
    angle = 2 * np.pi * np.arange(n) / n + rng.uniform(-np.pi, np.pi, (e, 1))
    height = rng.uniform(*cfg.spawn_height_m, (e, 1))
    spawn = np.stack([radius * np.cos(angle), radius * np.sin(angle),
                      np.broadcast_to(height, angle.shape)], -1)
    goals = spawn.copy()
    goals[..., :2] *= -1
    goals[..., 2] = np.maximum(goals[..., 2], MIN_GOAL_HEIGHT_M)
    return ScenarioInstance(spawn, Goals.static(goals), World.empty(cfg.room_size_m, e))


def dynamic_goals(cfg: EnvConfig, rng: np.random.Generator, e: int) -> ScenarioInstance:
    """A formation whose centre follows a random Lissajous curve at ``goal_speed_mps`` peak.

    Amplitudes shrink where needed so that every goal stays inside the room at all times.
    """
    inst = static_formation(cfg, rng, e)
    amplitude = np.zeros((e, 1, 3))
    amplitude[..., :2] = rng.uniform(0.5, 1.5, (e, 1, 2))
    amplitude[..., 2] = rng.uniform(0.0, 0.3, (e, 1))
    phase = rng.uniform(-np.pi, np.pi, (e, 1, 3))
    # the offset A (sin(w t + phase) - sin(phase)) spans [-A (1 + sin phase), A (1 - sin phase)]
    base = inst.goals.base
    x, y, z = cfg.room_size_m
    upper = np.array([x / 2, y / 2, z]) - ROOM_MARGIN_M
    lower = np.array([-upper[0], -upper[1], MIN_GOAL_HEIGHT_M])
    sin_phase = np.sin(phase)
    room_up = (upper - base.max(axis=1, keepdims=True)) / np.maximum(1.0 - sin_phase, 1e-9)
    room_down = (base.min(axis=1, keepdims=True) - lower) / np.maximum(1.0 + sin_phase, 1e-9)
    amplitude = np.clip(np.minimum(amplitude, np.minimum(room_up, room_down)), 0.0, None)
    speed_share = np.sqrt(3.0)
    omega = np.where(amplitude > 1e-6,
                     cfg.goal_speed_mps / (speed_share * np.maximum(amplitude, 1e-6)), 0.0)
    inst.goals = Goals(base, amplitude, omega, phase)
    return inst


def obstacles(cfg: EnvConfig, rng: np.random.Generator, e: int) -> ScenarioInstance:
    """Cross a field of columns: spawn on the -x side, goals on the +x side; or, in a share
    ``obstacle_mix`` of the environments, spawns and goals scattered in and around the field
    (:func:`_scattered_in_field`). With ``obstacle_mix`` 0 no extra random numbers are drawn."""
    ax, ay = cfg.obstacle_area_m
    s = cfg.obstacle_spacing_m
    gx = np.arange(-ax / 2 + s / 2, ax / 2, s)
    gy = np.arange(-ay / 2 + s / 2, ay / 2, s)
    cells = np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
    mask = rng.random((e, len(cells))) < cfg.obstacle_density
    world = World(cfg.room_size_m, np.broadcast_to(cells, (e,) + cells.shape).copy(), mask,
                  cfg.obstacle_radius_m)
    x_edge = ax / 2 + cfg.obstacle_radius_m + 0.5
    half_y = min(ay / 2, cfg.room_size_m[1] / 2 - 0.5)
    lo_h, hi_h = cfg.spawn_height_m
    lo = np.array([-cfg.room_size_m[0] / 2 + 0.5, -half_y, lo_h])
    hi = np.array([-x_edge, half_y, hi_h])
    spawn = sample_separated(rng, e, cfg.num_drones, lo, hi, cfg.spawn_min_separation_m,
                             "room_size_m (space beside the obstacle field)")
    goals = sample_separated(rng, e, cfg.num_drones, np.array([x_edge, -half_y,
                                                               max(lo_h, MIN_GOAL_HEIGHT_M)]),
                             np.array([-lo[0], half_y, hi_h]), cfg.spawn_min_separation_m,
                             "room_size_m (space beside the obstacle field)")
    if cfg.obstacle_mix > 0.0:
        scatter = (rng.random(e) < cfg.obstacle_mix)[:, None, None]
        spawn = np.where(scatter, _scattered_in_field(cfg, rng, world, goals=False), spawn)
        goals = np.where(scatter, _scattered_in_field(cfg, rng, world, goals=True), goals)
    return ScenarioInstance(spawn, Goals.static(goals), world)


def _scattered_in_field(cfg: EnvConfig, rng: np.random.Generator, world: World,
                        goals: bool) -> np.ndarray:
    """(E, N, 3) spawns (or goals) anywhere in the column field grown by ``SCATTER_MARGIN_M``
    (within the room's margin), ``spawn_min_separation_m`` apart and ``SCATTER_CLEARANCE_M``
    clear of the columns; goals no lower than ``MIN_GOAL_HEIGHT_M``."""
    half = np.minimum(np.array(cfg.obstacle_area_m) / 2 + SCATTER_MARGIN_M,
                      np.array(cfg.room_size_m[:2]) / 2 - ROOM_MARGIN_M)
    lo_h, hi_h = cfg.spawn_height_m
    lo = np.array([-half[0], -half[1], max(lo_h, MIN_GOAL_HEIGHT_M) if goals else lo_h])
    hi = np.array([half[0], half[1], hi_h])
    return sample_clear_of_columns(rng, world, cfg.num_drones, lo, hi,
                                   cfg.spawn_min_separation_m, SCATTER_CLEARANCE_M,
                                   "room_size_m (scattered obstacle episodes)")


SCENARIOS: dict[str, Callable[[EnvConfig, np.random.Generator, int], ScenarioInstance]] = {
    "hover": hover,
    "static_formation": static_formation,
    "swap_goals": swap_goals,
    "dynamic_goals": dynamic_goals,
    "obstacles": obstacles,
}


def make_scenario(cfg: EnvConfig, rng: np.random.Generator, num_envs: int) -> ScenarioInstance:
    """Sample ``num_envs`` instances of ``cfg.scenario``."""
    inst = SCENARIOS[cfg.scenario](cfg, rng, num_envs)
    _check_inside(cfg, inst.spawn, "spawn")
    _check_inside(cfg, inst.goals.base, "goals")
    return inst
