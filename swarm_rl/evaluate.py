"""Policy evaluation, the logic behind ``swarm-rl eval``.

A policy is any callable that maps observations (B, obs_dim) float32 to normalised actions
(B, 4) (:data:`Policy`); the observations come from the one observation function
(:func:`sim.observation.observe_swarm`), so an exported ONNX policy, a torch actor wrapped in a
function and the scripted baselines below are evaluated the same way. The ONNX runner,
:class:`~swarm_rl.runtime.policy.OnnxPolicy`, belongs to the deploy-side runtime (the robot
nodes run the same class); it is re-exported here. A policy object may also
have a ``check_compatible(env_cfg)`` method; :func:`evaluate` calls it before flying.

Evaluation episodes are full, fixed-length episodes of :class:`sim.swarm_env.SwarmVecEnv`, run
in batches of environments stepped together, with the policy's deterministic action and the
episode metrics of :mod:`sim.metrics` (REFERENCE.md section 2) plus each agent's return.

Seeds. Episode k of an evaluation with seed S has the *eval seed* ``S + 10_000 * k`` and draws
its spawns, goals, drone randomisation and sensor noise from its own generator,
``numpy.random.default_rng([S + 10_000 * k, EVAL_STREAM])`` (:func:`episode_rng`). Because its
entropy is two 32-bit words with a non-zero tag, that stream differs from every stream seeded
with one integer below 2**32, which is how the trainer seeds its environments: evaluation never
replays a training episode. One generator per episode also makes an episode's outcome
independent of how episodes are grouped into batches (``num_envs``) and of how many are run.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from sim.config import EnvConfig
from sim.crazyflie import load_model
from sim.metrics import SETTLED_RMS_KEY
from sim.observation import ObsLayout
from sim.swarm_env import BACKENDS, SwarmVecEnv
from swarm_rl.errors import PolicyMismatchError
from swarm_rl.runtime.policy import NonFiniteObservation, OnnxPolicy  # noqa: F401 (re-exported)
from swarm_rl.runtime.shield import ShieldInput

log = logging.getLogger(__name__)

Policy = Callable[[np.ndarray], np.ndarray]
"""Observations (B, obs_dim) float32 -> normalised actions (B, 4), deterministic."""

EVAL_SEED_STRIDE = 10_000
EVAL_STREAM = 0x4556414C
"""Second entropy word of every evaluation generator ("EVAL")."""
MAX_PARALLEL_ENVS = 64
Z_95 = 1.959963984540054
"""Two-sided 95 % quantile of the standard normal distribution."""

TABLE_METRICS = ("success_rate", "collisions_per_drone_minute", "crash_rate",
                 "distance_last_1s_m", "distance_last_3s_m", "distance_last_5s_m",
                 SETTLED_RMS_KEY, "final_distance_m", "min_separation_m", "return",
                 "shield_intervention_rate", "shield_fallback_rate")
"""Rows of :attr:`EvalResult.table`, in order. ``min_separation_m`` is aggregated by its
minimum over episodes (``value``), the others by their mean."""

METRIC_RANGE = {"success_rate": (0.0, 1.0), "crash_rate": (0.0, 1.0),
                "shield_intervention_rate": (0.0, 1.0), "shield_fallback_rate": (0.0, 1.0),
                "collisions_per_drone_minute": (0.0, math.inf),
                "distance_last_1s_m": (0.0, math.inf), "distance_last_3s_m": (0.0, math.inf),
                "distance_last_5s_m": (0.0, math.inf), SETTLED_RMS_KEY: (0.0, math.inf),
                "final_distance_m": (0.0, math.inf),
                "min_separation_m": (0.0, math.inf)}
"""Where each metric can lie; the interval bounds ``low``/``high`` are clipped to it (the
normal approximation knows nothing of it)."""


# --- policies ------------------------------------------------------------------------------

class HoverPolicy:
    """Baseline: every drone always sends the action that holds a nominal drone in place
    (hover thrust in ``motors`` mode, zero velocity in ``velocity`` mode)."""

    def __init__(self, env: SwarmVecEnv | EnvConfig) -> None:
        cfg = env.cfg if isinstance(env, SwarmVecEnv) else env
        self.action_mode = cfg.action_mode
        if cfg.action_mode == "velocity":
            self.action = np.zeros(4, np.float32)
        else:
            self.action = np.full(4, 1.0 / load_model(cfg.model).thrust_to_weight, np.float32)

    def check_compatible(self, env_cfg: EnvConfig) -> None:
        if env_cfg.action_mode != self.action_mode:
            raise PolicyMismatchError(
                f"hover policy: policy expects action_mode={self.action_mode}, the scenario "
                f"uses {env_cfg.action_mode}",
                [("action_mode", self.action_mode, env_cfg.action_mode)])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.action, (obs.shape[0], 4)).copy()


class ScriptedGoalPolicy:
    """Baseline for the ``velocity`` action mode: fly straight at the goal.

    The velocity setpoint is ``-gain * goal_error`` (read from the observation's
    ``goal_error`` slice), saturated at ``cruise_speed_mps``; zero yaw rate. It ignores
    neighbours and obstacles, so drones whose straight paths cross collide.
    """

    def __init__(self, env_cfg: EnvConfig, gain: float = 1.5,
                 cruise_speed_mps: float = 1.0) -> None:
        if env_cfg.action_mode != "velocity":
            raise PolicyMismatchError(
                f"scripted goal policy: policy expects action_mode=velocity, the scenario uses "
                f"{env_cfg.action_mode}", [("action_mode", "velocity", env_cfg.action_mode)])
        self.layout = ObsLayout(env_cfg.neighbours_k)
        self.goal_error = self.layout.slices["goal_error"]
        self.max_speed_mps = env_cfg.max_speed_mps
        self.gain = gain
        self.cruise_speed_mps = min(cruise_speed_mps, env_cfg.max_speed_mps)

    def check_compatible(self, env_cfg: EnvConfig) -> None:
        checks = [("action_mode", "velocity", env_cfg.action_mode),
                  ("obs_dim", self.layout.dim, ObsLayout(env_cfg.neighbours_k).dim)]
        bad = [c for c in checks if c[1] != c[2]]
        if bad:
            raise PolicyMismatchError("scripted goal policy: " + "; ".join(
                f"policy expects {n}={a}, the scenario uses {b}" for n, a, b in bad), bad)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        v = -self.gain * obs[:, self.goal_error].astype(float)
        speed = np.linalg.norm(v, axis=-1, keepdims=True)
        v *= np.minimum(1.0, self.cruise_speed_mps / np.maximum(speed, 1e-9))
        out = np.zeros((obs.shape[0], 4), np.float32)
        out[:, :3] = v / self.max_speed_mps
        return out


# --- seeded episodes -----------------------------------------------------------------------

def eval_seeds(seed: int, episodes: int) -> list[int]:
    """The eval seed of each episode: ``seed + 10_000 * k``."""
    return [seed + EVAL_SEED_STRIDE * k for k in range(episodes)]


def episode_rng(eval_seed: int) -> np.random.Generator:
    """The generator of the episode with ``eval_seed`` (see the module docstring)."""
    if eval_seed < 0:
        raise ValueError(f"seed: must be >= 0, got {eval_seed}")
    return np.random.default_rng([eval_seed, EVAL_STREAM])


# --- evaluation ----------------------------------------------------------------------------

@dataclass
class Trajectory:
    """The recorded first episode: true positions and goals at control steps 0..T."""

    positions_m: np.ndarray
    """(T + 1, N, 3), world frame."""
    goals_m: np.ndarray
    """(T + 1, N, 3)."""
    dt_s: float


@dataclass
class EvalResult:
    per_episode: dict[str, np.ndarray]
    """Metric name -> (episodes,) values: those of :mod:`sim.metrics` plus ``return`` (the
    agents' mean return)."""
    agent_returns: np.ndarray
    """(episodes, N) undiscounted return of every agent."""
    table: dict[str, dict[str, float]]
    """Metric (:data:`TABLE_METRICS`) -> ``value`` (the headline: mean, or the minimum for
    ``min_separation_m``), ``mean``, ``ci95`` (half-width of the normal-approximation 95 %
    interval of the mean; NaN with one episode), ``low``/``high`` (mean -+ ci95, clipped to
    :data:`METRIC_RANGE`), ``min``, ``max``."""
    episodes: int
    seeds: list[int]
    """Eval seed of every episode, in order."""
    wall_s: float
    scenario: str = ""
    num_drones: int = 0
    backend: str = "batched"
    trajectory: Trajectory | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (non-finite numbers become None)."""
        return {
            "scenario": self.scenario, "drones": self.num_drones, "backend": self.backend,
            "episodes": self.episodes, "seeds": list(self.seeds),
            "wall_s": round(self.wall_s, 3),
            "metrics": {k: {s: _json_number(v) for s, v in row.items()}
                        for k, row in self.table.items()},
            "per_episode": {k: [_json_number(v) for v in vals]
                            for k, vals in self.per_episode.items()},
            **self.extra,
        }


def _json_number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def aggregate_table(per_episode: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """The rows of :attr:`EvalResult.table` from per-episode arrays."""
    table = {}
    for name in TABLE_METRICS:
        if name not in per_episode:
            continue
        x = np.asarray(per_episode[name], dtype=float)
        with np.errstate(invalid="ignore"):
            mean = float(x.mean())
            ci = float(Z_95 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
        if not math.isfinite(mean):
            ci = math.nan
        lo_bound, hi_bound = METRIC_RANGE.get(name, (-math.inf, math.inf))
        row = {"mean": mean, "ci95": ci, "low": max(mean - ci, lo_bound),
               "high": min(mean + ci, hi_bound),
               "min": float(x.min()), "max": float(x.max())}
        row["value"] = row["min"] if name == "min_separation_m" else mean
        table[name] = row
    return table


def _batches(episodes: int, num_envs: int) -> list[tuple[int, int]]:
    """(first episode, size) of each batch."""
    return [(k, min(num_envs, episodes - k)) for k in range(0, episodes, num_envs)]


def shield_actions(env: SwarmVecEnv, actions: np.ndarray,
                   shield: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filter velocity-mode actions (E, N, 4) through a runtime shield, drone by drone, as each
    robot's own node would: it sees its own true state (motion capture), the swarm-mates
    within ``neighbour_range_m`` and the known columns. Returns the shielded actions and
    (E, N) flags: intervened, fell back."""
    cfg = env.cfg
    s = env.physics.state()
    world = env.scenario.world
    out = actions.copy()
    intervened = np.zeros(actions.shape[:2], bool)
    fallback = np.zeros(actions.shape[:2], bool)
    for e in range(env.num_envs):
        columns = world.obstacle_xy[e][world.obstacle_mask[e]]
        radii = np.full(len(columns), world.obstacle_radius_m)
        for i in range(env.num_drones):
            others = np.arange(env.num_drones) != i
            near = others & (np.linalg.norm(s.pos[e] - s.pos[e, i], axis=1)
                             <= cfg.neighbour_range_m)
            result = shield.filter(ShieldInput(
                s.pos[e, i], s.vel[e, i], actions[e, i, :3] * cfg.max_speed_mps,
                s.pos[e, near], s.vel[e, near], column_centres_m=columns,
                column_radii_m=radii))
            out[e, i, :3] = np.clip(result.velocity_setpoint_mps / cfg.max_speed_mps, -1, 1)
            intervened[e, i], fallback[e, i] = result.intervened, result.fallback
    return out, intervened, fallback


def evaluate(policy: Policy, env_cfg: EnvConfig, episodes: int, seed: int = 0,
             backend: str = "batched", num_envs: int | None = None, record: bool = False,
             progress: bool | None = None, shield: Any = None) -> EvalResult:
    """Fly ``episodes`` full episodes of ``env_cfg`` with ``policy`` and measure them.

    ``num_envs``: episodes stepped together (default ``min(episodes, 64)`` on the batched
    engine, 1 on PyBullet); results do not depend on it. ``record``: keep the positions and
    goals of the first episode (:attr:`EvalResult.trajectory`). ``progress``: a tqdm bar in
    episodes on stderr (None: only when stderr is a terminal). Episode k uses eval seed
    ``seed + 10_000 * k`` (module docstring). ``shield``: a runtime
    :class:`~swarm_rl.runtime.shield.CBFShield` filtering every drone's velocity command
    (:func:`shield_actions`; velocity-mode policies only), which adds the per-episode
    ``shield_intervention_rate`` and ``shield_fallback_rate`` (shares of drone-steps).
    """
    env_cfg.validate()
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown backend '{backend}'; allowed: {', '.join(BACKENDS)}")
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    if seed < 0:
        raise ValueError(f"seed: must be >= 0, got {seed}")
    if num_envs is None:
        num_envs = min(episodes, MAX_PARALLEL_ENVS) if backend == "batched" else 1
    if num_envs < 1:
        raise ValueError(f"num_envs: must be >= 1, got {num_envs}")
    check = getattr(policy, "check_compatible", None)
    if check is not None:
        check(env_cfg)
    if shield is not None and env_cfg.action_mode != "velocity":
        raise ValueError(f"shield: the CBF shield filters velocity commands; this scenario uses "
                         f"action_mode={env_cfg.action_mode}")

    seeds = eval_seeds(seed, episodes)
    n, steps = env_cfg.num_drones, env_cfg.episode_steps
    summaries: list[dict[str, np.ndarray]] = []
    returns: list[np.ndarray] = []
    trajectory = None
    envs: dict[int, SwarmVecEnv] = {}
    start_time = time.perf_counter()
    bar = tqdm(total=episodes, unit="ep", desc=f"eval {env_cfg.scenario}", leave=False,
               disable=None if progress is None else not progress)
    try:
        with bar:
            for first, size in _batches(episodes, num_envs):
                if size not in envs:
                    envs[size] = SwarmVecEnv(env_cfg, size, backend)
                env = envs[size]
                obs = env.reset([episode_rng(s) for s in seeds[first:first + size]])
                ret = np.zeros((size, n))
                shield_hits, shield_falls = np.zeros((size, n)), np.zeros((size, n))
                rec = record and first == 0
                if rec:
                    pos_log = np.empty((steps + 1, n, 3))
                    goal_log = np.empty_like(pos_log)
                    pos_log[0], goal_log[0] = env.physics.state().pos[0], env.goals()[0]
                episode = None
                done_share = 0.0
                for t in range(1, steps + 1):
                    action = np.asarray(policy(obs.reshape(size * n, -1)))
                    if action.shape != (size * n, 4):
                        raise ValueError(f"policy: returned actions of shape {action.shape} for "
                                         f"observations {(size * n, obs.shape[-1])}; expected "
                                         f"{(size * n, 4)}")
                    action = action.reshape(size, n, 4)
                    if shield is not None:
                        action, hit, fell = shield_actions(env, action, shield)
                        shield_hits += hit
                        shield_falls += fell
                    result = env.step(action)
                    ret += result.reward
                    obs = result.obs
                    if "episode" in result.info:
                        episode = result.info["episode"]
                    if rec and episode is not None:
                        pos_log[t] = result.info["final_state"].pos[0]
                        goal_log[t] = result.info["final_goals"][0]
                    elif rec:
                        pos_log[t], goal_log[t] = env.physics.state().pos[0], env.goals()[0]
                    share = size * t / steps
                    if share - done_share >= 0.5 or t == steps:
                        bar.update(share - done_share)
                        done_share = share
                if episode is None:
                    raise RuntimeError(f"episodes did not end after {steps} steps")
                if shield is not None:
                    episode = {**episode,
                               "shield_intervention_rate": shield_hits.mean(axis=1) / steps,
                               "shield_fallback_rate": shield_falls.mean(axis=1) / steps}
                summaries.append(episode)
                returns.append(ret)
                if rec:
                    trajectory = Trajectory(pos_log, goal_log, env.control_dt_s)
    finally:
        for env in envs.values():
            env.close()
    wall_s = time.perf_counter() - start_time

    per_episode = {k: np.concatenate([np.asarray(s[k], dtype=float) for s in summaries])
                   for k in summaries[0]}
    agent_returns = np.concatenate(returns)
    per_episode["return"] = agent_returns.mean(axis=1)
    log.info("evaluated %d episodes of %s (%d drones) in %.2f s", episodes, env_cfg.scenario,
             n, wall_s)
    return EvalResult(per_episode, agent_returns, aggregate_table(per_episode), episodes, seeds,
                      wall_s, env_cfg.scenario, n, backend, trajectory)
