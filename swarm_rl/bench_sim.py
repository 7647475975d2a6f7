"""Simulator throughput, the logic behind ``swarm-rl bench sim``.

Measures agent-steps per second of the full environment step (physics substeps, collisions,
rewards, metrics and observations: :meth:`sim.swarm_env.SwarmVecEnv.step`) with hover actions,
for the batched engine and the PyBullet reference in the same run. The batched engine steps
about :data:`BATCHED_AGENTS` drones at once (``num_envs * drones``), PyBullet one environment.
Each measurement runs a few warm-up steps, then steps for about ``seconds`` of wall time;
episodes are made long enough that no reset falls inside the timed window (resets that still
happen are counted and timed with the rest).
"""
from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from sim.config import make_config
from sim.errors import ConfigError
from sim.swarm_env import SwarmVecEnv
from swarm_rl.bench_report import aligned_table, cpu_model, package_version

log = logging.getLogger(__name__)

DEFAULT_DRONES = (1, 8, 32, 128)
BATCHED_AGENTS = 16384
WARMUP_STEPS = 3
SCENARIO = "static_formation"
ACTION_MODE = "motors"
EPISODE_S = 1.0e5
"""Longer than any measurement: at 100 Hz no engine here reaches 10^7 steps in minutes."""


@dataclass
class Measurement:
    backend: str
    drones: int
    num_envs: int
    steps: int
    """Timed env steps (each advances every environment by one control period)."""
    wall_s: float
    resets: int
    control_dt_s: float

    @property
    def agent_steps_per_s(self) -> float:
        return self.steps * self.num_envs * self.drones / self.wall_s

    @property
    def real_time_factor(self) -> float:
        """Simulated seconds per wall-clock second, per environment."""
        return self.steps * self.control_dt_s / self.wall_s


def batched_num_envs(drones: int, agents: int = BATCHED_AGENTS) -> int:
    """Environments so that ``num_envs * drones`` is about ``agents`` (at least one)."""
    return max(1, round(agents / drones))


def measure(backend: str, drones: int, num_envs: int, seconds: float, seed: int = 0,
            warmup_steps: int = WARMUP_STEPS) -> Measurement:
    """Time :meth:`SwarmVecEnv.step` with hover actions for about ``seconds`` of wall time."""
    cfg = make_config(scenario=SCENARIO, action_mode=ACTION_MODE, num_drones=drones,
                      episode_s=EPISODE_S)
    env = SwarmVecEnv(cfg, num_envs=num_envs, backend=backend, seed=seed)
    try:
        env.reset()
        action = env.hover_action()
        for _ in range(warmup_steps):
            env.step(action)
        steps = resets = 0
        start = time.perf_counter()
        while True:
            result = env.step(action)
            steps += 1
            resets += bool(result.truncated.any())
            wall_s = time.perf_counter() - start
            if wall_s >= seconds:
                break
    finally:
        env.close()
    if resets:
        log.warning("%s, %d drones: %d episode reset(s) inside the timed window (counted)",
                    backend, drones, resets)
    return Measurement(backend, drones, num_envs, steps, wall_s, resets, env.control_dt_s)


def machine_info() -> dict[str, str | int | None]:
    """What the figures were measured on."""
    import pybullet

    uname = platform.uname()
    return {
        "processor": cpu_model() or platform.processor() or uname.machine,
        "system": f"{uname.system} {uname.release}",
        "machine": uname.machine,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pybullet": package_version("pybullet"),
        "pybullet_api": pybullet.getAPIVersion(),
    }


def run_bench(drone_counts: tuple[int, ...] = DEFAULT_DRONES, seconds: float = 3.0,
              progress: bool | None = None) -> dict:
    """Measure both engines for every drone count; return a JSON-ready report.

    ``progress``: show a tqdm bar on stderr (None: only on a terminal).
    """
    if not drone_counts or min(drone_counts) < 1:
        raise ConfigError(f"--drones: drone counts must be >= 1, got {list(drone_counts)}")
    if seconds <= 0:
        raise ConfigError(f"--seconds: must be > 0, got {seconds}")
    rows = []
    control_dt_s = 1.0
    plan = [(n, backend) for n in drone_counts for backend in ("batched", "pybullet")]
    bar = tqdm(plan, desc="bench sim", unit="run", leave=False,
               disable=None if progress is None else not progress)
    results: dict[tuple[int, str], Measurement] = {}
    with bar:
        for n, backend in bar:
            bar.set_postfix_str(f"{backend}, {n} drones")
            num_envs = batched_num_envs(n) if backend == "batched" else 1
            results[n, backend] = measure(backend, n, num_envs, seconds)
            control_dt_s = results[n, backend].control_dt_s
    for n in drone_counts:
        b, p = results[n, "batched"], results[n, "pybullet"]
        rows.append({
            "drones": n,
            "batched_num_envs": b.num_envs,
            "batched_agent_steps_per_s": round(b.agent_steps_per_s, 1),
            "pybullet_agent_steps_per_s": round(p.agent_steps_per_s, 1),
            "ratio_batched_over_pybullet": round(b.agent_steps_per_s / p.agent_steps_per_s, 2),
            "pybullet_real_time_factor": round(p.real_time_factor, 2),
            "batched_steps": b.steps,
            "pybullet_steps": p.steps,
            "resets": b.resets + p.resets,
        })
    return {
        "bench": "sim",
        "what": "agent-steps/s of SwarmVecEnv.step (physics + sensing + reward), hover actions",
        "scenario": SCENARIO,
        "action_mode": ACTION_MODE,
        "control_hz": int(round(1 / control_dt_s)),
        "seconds_per_measurement": seconds,
        "batched_agents_target": BATCHED_AGENTS,
        "machine": machine_info(),
        "results": rows,
    }


def format_table(report: dict) -> str:
    """Plain aligned text table of :func:`run_bench`'s results."""
    head = ("drones", "batched envs", "batched agent-steps/s", "pybullet agent-steps/s",
            "batched/pybullet", "pybullet RTF")
    body = [(str(r["drones"]), str(r["batched_num_envs"]),
             f"{r['batched_agent_steps_per_s']:,.0f}", f"{r['pybullet_agent_steps_per_s']:,.0f}",
             f"{r['ratio_batched_over_pybullet']:.1f}x", f"{r['pybullet_real_time_factor']:.2f}")
            for r in report["results"]]
    lines = aligned_table(head, body)
    m = report["machine"]
    lines += ["", f"{report['what']}; {report['scenario']}, {report['action_mode']} mode, "
              f"{report['control_hz']} Hz control; about {report['seconds_per_measurement']} s "
              "per measurement; RTF = simulated s per wall s (PyBullet, one environment)",
              f"machine: {m['processor']}, {m['cpu_count']} CPUs, {m['system']}, "
              f"numpy {m['numpy']}, pybullet {m['pybullet']}"]
    return "\n".join(lines)

