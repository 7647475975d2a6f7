"""Scripted formation flight, the logic behind ``swarm-rl demo``.

A simulated swarm (PyBullet by default, the reference physics) flies from random spawns into a
formation in the ``velocity`` action mode. No learned policy is involved: each drone's velocity
setpoint is a saturated P law towards its goal plus a short-range repulsion from its neighbours,
both read from the drone's own observation vector through :class:`sim.observation.ObsLayout`,
the same observation a trained policy sees. The flight is recorded and written out as
``metrics.json``, ``summary.md`` and ``trajectories.png``.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sim.config import EnvConfig, make_config
from sim.errors import ConfigError
from sim.metrics import aggregate
from sim.observation import ObsLayout
from sim.swarm_env import SwarmVecEnv
from swarm_rl import files, plots
from swarm_rl.bench_report import figure

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.md"
PLOT_FILE = "trajectories.png"


@dataclass(frozen=True)
class ScriptedGains:
    """Gains of :class:`ScriptedFormationController` (tuned on 8 drones, circle and grid)."""

    goal_p: float = 1.5
    """Goal error -> velocity (1/s)."""
    cruise_speed_mps: float = 1.0
    """Saturation of the goal-seeking velocity."""
    repulsion_radius_m: float = 0.5
    """Neighbours closer than this (centre distance) push the drone away."""
    repulsion_mps: float = 1.5
    """Repulsion speed from one neighbour at zero distance; falls linearly to 0 at the radius."""
    swirl: float = 0.5
    """Share of the repulsion turned 90 degrees about z (to the right), so that two drones
    meeting head-on pass each other instead of stalling."""
    closing_gain: float = 1.0
    """Extra push away per m/s of closing speed towards a neighbour inside ``brake_radius_m``."""
    brake_radius_m: float = 1.0


class ScriptedFormationController:
    """Observation (..., dim) -> normalised ``velocity``-mode action (..., 4), zero yaw rate."""

    def __init__(self, layout: ObsLayout, max_speed_mps: float,
                 gains: ScriptedGains = ScriptedGains()) -> None:
        self.layout, self.max_speed_mps, self.gains = layout, max_speed_mps, gains
        self._slices = layout.slices

    def velocity_setpoint(self, obs: np.ndarray) -> np.ndarray:
        """World-frame velocity setpoints (..., 3) in m/s."""
        g, sl, k = self.gains, self._slices, self.layout.k
        goal_error = obs[..., sl["goal_error"]]
        v = _saturate(-g.goal_p * goal_error, g.cruise_speed_mps)
        if k:
            neighbours = obs[..., sl["neighbours"]].reshape(obs.shape[:-1] + (k, 6))
            rel_pos = neighbours[..., :3]
            mask = obs[..., sl["neighbour_mask"]] > 0.5
            dist = np.linalg.norm(rel_pos, axis=-1)
            weight = np.clip(1.0 - dist / g.repulsion_radius_m, 0.0, 1.0) * mask
            away = -rel_pos / np.maximum(dist, 1e-6)[..., None]
            # rel_vel is neighbour minus own velocity; it points along ``away`` when closing in.
            closing = np.maximum(np.einsum("...i,...i->...", neighbours[..., 3:], away), 0.0)
            brake = np.clip(1.0 - dist / g.brake_radius_m, 0.0, 1.0) * mask
            strength = g.repulsion_mps * weight + g.closing_gain * closing * brake
            push = (strength[..., None] * away).sum(axis=-2)
            right = np.stack([push[..., 1], -push[..., 0], np.zeros_like(push[..., 2])], -1)
            v = v + push + g.swirl * right
        return _saturate(v, self.max_speed_mps)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        v = self.velocity_setpoint(obs)
        return np.concatenate([v / self.max_speed_mps, np.zeros(v.shape[:-1] + (1,))], axis=-1)


def _saturate(v: np.ndarray, limit: float) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v * np.minimum(1.0, limit / np.maximum(norm, 1e-9))


@dataclass
class Flight:
    """One recorded episode of environment 0."""

    cfg: EnvConfig
    backend: str
    seed: int
    times_s: np.ndarray
    """(T + 1,) from 0 to the episode length."""
    positions_m: np.ndarray
    """(T + 1, N, 3) true positions, world frame."""
    goals_m: np.ndarray
    """(T + 1, N, 3)."""
    metrics: dict[str, float]
    """Episode metrics of :mod:`sim.metrics`."""
    wall_s: float

    @property
    def real_time_factor(self) -> float:
        """Simulated seconds per wall-clock second."""
        return float(self.times_s[-1] / max(self.wall_s, 1e-9))

    def summary(self) -> dict:
        """Metrics plus what was flown, JSON-ready (non-finite numbers become None)."""
        out = {k: _finite_or_none(v) for k, v in self.metrics.items()}
        out.update(drones=self.cfg.num_drones, seconds=self.cfg.episode_s,
                   formation=self.cfg.formation, backend=self.backend, seed=self.seed,
                   wall_s=round(self.wall_s, 3),
                   real_time_factor=round(self.real_time_factor, 3))
        return out


def _finite_or_none(value: float) -> float | int | None:
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value) if np.isfinite(value) else None


def demo_config(drones: int = 8, formation: str = "circle", seconds: float = 15.0) -> EnvConfig:
    """The demo's environment: ``static_formation`` in ``velocity`` mode, one episode long."""
    return make_config(scenario="static_formation", num_drones=drones, formation=formation,
                       episode_s=seconds, action_mode="velocity")


def check_gui_possible(backend: str) -> None:
    """Raise :class:`ConfigError` when the PyBullet viewer cannot open."""
    if backend != "pybullet":
        raise ConfigError(f"--gui: only the pybullet backend has a viewer, got '{backend}'")
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        raise ConfigError("--gui: the PyBullet viewer needs a display, but DISPLAY is unset; "
                          "run on a desktop session (or with X forwarding), or drop --gui")


def fly(cfg: EnvConfig, backend: str = "pybullet", seed: int = 0, gui: bool = False,
        gains: ScriptedGains = ScriptedGains(), progress: bool | None = None) -> Flight:
    """Fly one episode of ``cfg`` with the scripted controller and record it.

    ``progress``: show a tqdm bar on stderr (None: only on a terminal). With ``gui``, the flight
    is paced to real time so that the viewer shows it at its true speed.
    """
    if gui:
        check_gui_possible(backend)
    env = SwarmVecEnv(cfg, num_envs=1, backend=backend, seed=seed, gui=gui)
    try:
        controller = ScriptedFormationController(env.layout, cfg.max_speed_mps, gains)
        obs = env.reset()
        steps = cfg.episode_steps
        positions = np.empty((steps + 1, cfg.num_drones, 3))
        goals = np.empty_like(positions)
        positions[0], goals[0] = env.physics.state().pos[0], env.goals()[0]
        episode = None
        start = time.perf_counter()
        bar = tqdm(total=steps, unit="step", desc=f"demo {backend}", leave=False,
                   disable=None if progress is None else not progress)
        with bar:
            for t in range(1, steps + 1):
                goals[t] = env.goals()[0]
                # The step that ends the episode also resets the physics, which then holds a
                # new state object: the engines step their state in place, so the object taken
                # before the step holds the final positions.
                state = env.physics.state()
                result = env.step(controller(obs))
                positions[t] = state.pos[0]
                if "episode" in result.info:
                    episode = result.info["episode"]
                    if env.physics.state() is state:  # reset in place: use what was sensed
                        final_error = result.info["final_obs"][0, :, env.layout.slices[
                            "goal_error"]]
                        positions[t] = goals[t] + final_error
                obs = result.obs
                bar.update()
                if gui:
                    time.sleep(max(0.0, start + t * env.control_dt_s - time.perf_counter()))
        wall_s = time.perf_counter() - start
    finally:
        env.close()
    if episode is None:
        raise RuntimeError(f"the episode did not end after {steps} steps")
    metrics = aggregate([episode])
    times = np.arange(steps + 1) * env.control_dt_s
    log.info("flew %d drones for %.1f s on %s in %.2f s wall", cfg.num_drones, times[-1],
             backend, wall_s)
    return Flight(cfg, backend, seed, times, positions, goals, metrics, wall_s)


def summary_markdown(summary: dict) -> str:
    """A small human-readable report of :meth:`Flight.summary`."""
    rows = [
        ("drones", summary["drones"]),
        ("formation", summary["formation"]),
        ("backend", summary["backend"]),
        ("seed", summary["seed"]),
        ("episode length (s)", summary["seconds"]),
        ("success rate", figure(summary["success_rate"], "{:.0%}")),
        ("collisions per drone-minute", figure(summary["collisions_per_drone_minute"], "{:.3f}")),
        ("crash rate", figure(summary["crash_rate"], "{:.0%}")),
        ("min separation (m)", figure(summary["min_separation_m"], "{:.3f}")),
        ("final distance to goal (m)", figure(summary["final_distance_m"], "{:.3f}")),
        ("distance to goal, last 1 s (m)", figure(summary["distance_last_1s_m"], "{:.3f}")),
        ("distance to goal, last 3 s (m)", figure(summary["distance_last_3s_m"], "{:.3f}")),
        ("distance to goal, last 5 s (m)", figure(summary["distance_last_5s_m"], "{:.3f}")),
        ("wall time (s)", figure(summary["wall_s"], "{:.2f}")),
        ("real-time factor", figure(summary["real_time_factor"], "{:.1f}")),
    ]
    width = max(len(name) for name, _ in rows)
    lines = ["# swarm-rl demo: scripted formation flight", "",
             f"| {'metric':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    lines += ["", f"Trajectories: [{PLOT_FILE}]({PLOT_FILE}); all figures: [{METRICS_FILE}]"
              f"({METRICS_FILE}).", ""]
    return "\n".join(lines)


def plot_trajectories(flight: Flight) -> bytes:
    """PNG: top view of the paths, altitude and distance to goal against time, per drone."""
    summary = flight.summary()
    sep = summary["min_separation_m"]
    title = (f"{flight.cfg.num_drones} drones, {flight.cfg.formation} formation, "
             f"{flight.backend} physics: success rate {summary['success_rate']:.0%}, "
             f"min separation {'n/a' if sep is None else f'{sep:.2f} m'}")
    dt_s = float(flight.times_s[1] - flight.times_s[0]) if len(flight.times_s) > 1 else 1.0
    return plots.render_trajectories(flight.positions_m, flight.goals_m, dt_s, title,
                                     flight.cfg.success_radius_m)


def write_report(flight: Flight, out_dir: str | Path) -> dict:
    """Write metrics.json, summary.md and trajectories.png into ``out_dir`` (created)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot create directory '{out}': {exc.strerror}") from exc
    summary = flight.summary()
    files.write_json(out / METRICS_FILE, summary)
    files.write_text(out / SUMMARY_FILE, summary_markdown(summary))
    files.write_bytes(out / PLOT_FILE, plot_trajectories(flight))
    log.info("wrote %s, %s and %s to %s", METRICS_FILE, SUMMARY_FILE, PLOT_FILE, out)
    return summary


def run_demo(out_dir: str | Path, drones: int = 8, formation: str = "circle",
             seconds: float = 15.0, backend: str = "pybullet", gui: bool = False, seed: int = 0,
             progress: bool | None = None) -> dict:
    """Fly the demo, write its report into ``out_dir`` and return the summary."""
    cfg = demo_config(drones, formation, seconds)
    flight = fly(cfg, backend, seed, gui, progress=progress)
    summary = write_report(flight, out_dir)
    summary["out"] = str(Path(out_dir))
    return summary
