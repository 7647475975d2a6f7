"""Batched swarm environment: E synchronous episodes of N drones, one physics backend.

One robot's data path inside the simulator: ``step(actions)`` turns each drone's normalised
action into motor thrusts (``motors`` mode directly, ``velocity`` mode through the simulated
onboard controller), advances the physics ``substeps`` times, then computes collisions,
per-agent rewards, metrics and the next observations with :func:`sim.observation.observe_swarm`.

Episodes have a fixed length and all E run in lock-step, so they end together; the step that
ends them returns ``truncated`` True, the final observations and the episode metrics in
``info``, and the first observations of fresh episodes as ``obs``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.batched_physics import BatchedPhysics
from sim.config import EnvConfig
from sim.controller import VelocityController
from sim.crazyflie import load_model
from sim.forces import Effects
from sim.metrics import EpisodeMetrics
from sim.observation import ObsLayout, SensorNoise, observe_swarm
from sim.physics import Physics
from sim.rewards import swarm_rewards
from sim.scenarios import ScenarioInstance, make_scenario
from sim.state import DroneParams, SwarmState
from sim.world import obstacle_distance_xy, pair_stats

BACKENDS = ("batched", "pybullet")
CRITIC_FEATS = 9


def make_physics(backend: str, num_envs: int, num_drones: int, dt_s: float, effects: Effects,
                 gui: bool = False) -> Physics:
    """The physics engine named ``backend`` (``batched`` or ``pybullet``)."""
    if backend == "batched":
        if gui:
            raise ValueError("gui: only the pybullet backend has a viewer")
        return BatchedPhysics(num_envs, num_drones, dt_s, effects)
    if backend == "pybullet":
        from sim.pybullet_physics import PyBulletPhysics
        return PyBulletPhysics(num_envs, num_drones, dt_s, effects, gui=gui)
    raise ValueError(f"backend: unknown backend '{backend}'; allowed: {', '.join(BACKENDS)}")


def concat_envs(items: Sequence[Any]) -> Any:
    """Join per-environment dataclasses (scenarios, drone parameters) along the env axis:
    arrays are concatenated on axis 0, recursively; other fields must agree."""
    first = items[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(items, axis=0)
    if dataclasses.is_dataclass(first):
        return type(first)(**{f.name: concat_envs([getattr(i, f.name) for i in items])
                              for f in dataclasses.fields(first) if f.init})
    if any(i != first for i in items[1:]):
        raise ValueError(f"cannot join per-environment values {items!r}")
    return first


@dataclass
class StepResult:
    obs: np.ndarray | None
    """(E, N, obs_dim) float32; None from ``step(observe=False)``."""
    reward: np.ndarray
    """(E, N) per-agent reward."""
    terminated: np.ndarray
    """(E, N) always False: drones are never removed mid-episode."""
    truncated: np.ndarray
    """(E, N) True on the last step of an episode; ``info`` then also holds ``final_obs``,
    ``final_critic_state``, ``final_drone_state``, ``final_state`` (true physics state),
    ``final_goals`` and ``episode`` (metrics)."""
    info: dict


class SwarmVecEnv:
    """E swarm episodes stepped together; the batched vector-env interface for training."""

    def __init__(self, cfg: EnvConfig, num_envs: int = 1, backend: str = "batched",
                 seed: int = 0, gui: bool = False) -> None:
        cfg.validate()
        if num_envs < 1:
            raise ValueError(f"num_envs: must be >= 1, got {num_envs}")
        self.cfg = cfg
        self.num_envs = num_envs
        self.num_drones = cfg.num_drones
        self.model = load_model(cfg.model)
        self.layout = ObsLayout(cfg.neighbours_k)
        self.physics_dt_s = 1.0 / cfg.physics_hz
        self.control_dt_s = 1.0 / cfg.control_hz
        shape = (num_envs, cfg.num_drones)
        effects = Effects(cfg.effects.drag, cfg.effects.ground_effect, cfg.effects.downwash)
        self.physics = make_physics(backend, num_envs, cfg.num_drones, self.physics_dt_s,
                                    effects, gui)
        self.controller = VelocityController(self.model, shape, self.physics_dt_s)
        self.metrics = EpisodeMetrics(num_envs, cfg.num_drones, cfg.control_hz, cfg.grace_s,
                                      cfg.success_radius_m)
        n = cfg.noise
        self.noise = SensorNoise(n.pos_sigma_m, n.vel_sigma_mps, n.gyro_sigma_rad_s) \
            if n.enabled else SensorNoise()
        self.collision_scale = 1.0
        self.rng = np.random.default_rng(seed)
        self.env_rngs: list[np.random.Generator] | None = None
        self.scenario: ScenarioInstance | None = None
        self.params: DroneParams | None = None
        self.step_count = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle (training checkpoints hold the env), filling attributes that environments
        pickled by older versions lack."""
        state.setdefault("env_rngs", None)
        self.__dict__.update(state)

    @property
    def obs_dim(self) -> int:
        return self.layout.dim

    @property
    def action_dim(self) -> int:
        return 4

    @property
    def action_low(self) -> np.ndarray:
        """Lower action bound: motors [0, 1] of max thrust; velocity [-1, 1] of max speed/rate."""
        return np.full(4, 0.0 if self.cfg.action_mode == "motors" else -1.0, np.float32)

    @property
    def action_high(self) -> np.ndarray:
        return np.ones(4, np.float32)

    def hover_action(self) -> np.ndarray:
        """(E, N, 4) normalised action that holds a nominal drone in place."""
        shape = (self.num_envs, self.num_drones, 4)
        if self.cfg.action_mode == "velocity":
            return np.zeros(shape, np.float32)
        return np.full(shape, 1.0 / self.model.thrust_to_weight, np.float32)

    def reset(self, seed: int | Sequence[int | np.random.Generator] | None = None
              ) -> np.ndarray:
        """Start fresh episodes in every environment; returns observations (E, N, obs_dim).

        ``seed``: an int reseeds the one generator all environments share (fast, for
        training); a sequence of E seeds or generators gives each environment its own stream
        for scenario, randomisation and sensor noise, so an episode does not depend on its
        batch-mates (for evaluation). Later automatic resets keep drawing from the same
        generators.
        """
        if isinstance(seed, (int, np.integer)):
            self.rng, self.env_rngs = np.random.default_rng(seed), None
        elif seed is not None:
            if len(seed) != self.num_envs:
                raise ValueError(f"seed: expected {self.num_envs} per-environment seeds, "
                                 f"got {len(seed)}")
            self.env_rngs = [s if isinstance(s, np.random.Generator)
                             else np.random.default_rng(s) for s in seed]
        cfg, r = self.cfg, self.cfg.randomisation
        if self.env_rngs is None:
            self.scenario = make_scenario(cfg, self.rng, self.num_envs)
            self.params = DroneParams.randomised(self.model, (self.num_envs, self.num_drones),
                                                 self.rng, r.mass_frac, r.thrust_frac,
                                                 r.motor_tau_frac)
        else:
            scenarios, params = [], []
            for rng in self.env_rngs:
                scenarios.append(make_scenario(cfg, rng, 1))
                params.append(DroneParams.randomised(self.model, (1, self.num_drones), rng,
                                                     r.mass_frac, r.thrust_frac,
                                                     r.motor_tau_frac))
            self.scenario, self.params = concat_envs(scenarios), concat_envs(params)
        state = SwarmState.hovering(self.scenario.spawn, self.params)
        self.physics.reset(state, self.params, self.scenario.world)
        self.controller.reset(state.rot)
        self.metrics.reset()
        self.step_count = 0
        return self._observe()

    def goals(self) -> np.ndarray:
        """(E, N, 3) current goals."""
        return self.scenario.goals.at(self.step_count * self.control_dt_s)

    def _observe(self) -> np.ndarray:
        s = self.physics.state()
        world = self.scenario.world
        pos, vel, omega, rng = s.pos, s.vel, s.omega, self.rng
        n = self.noise
        if self.env_rngs is not None:
            if n.pos_sigma_m or n.vel_sigma_mps or n.gyro_sigma_rad_s:
                shape = (1, self.num_drones, 3)
                draws = [(g.normal(0.0, n.pos_sigma_m, shape),
                          g.normal(0.0, n.vel_sigma_mps, shape),
                          g.normal(0.0, n.gyro_sigma_rad_s, shape)) for g in self.env_rngs]
                pos = pos + np.concatenate([d[0] for d in draws])
                vel = vel + np.concatenate([d[1] for d in draws])
                omega = omega + np.concatenate([d[2] for d in draws])
            rng = None
        return observe_swarm(pos, vel, s.rot, omega, self.goals(),
                             lambda pts: obstacle_distance_xy(pts, world), self.layout,
                             self.cfg.neighbour_range_m, self.noise, rng)

    def critic_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Agent-specific global state for a centralised critic (true, noise-free).

        Returns features (E, N, N, CRITIC_FEATS): for agent i and swarm-mate j, j's position
        and velocity relative to i and j's goal error (m, m/s, m, world frame); and a mask
        (E, N, N) that is 0 where j == i.
        """
        s = self.physics.state()
        e, n = self.num_envs, self.num_drones
        feats = np.empty((e, n, n, CRITIC_FEATS), dtype=np.float32)
        # float64 differences rounded once into the float32 array (as .astype(np.float32))
        np.subtract(s.pos[:, None, :, :], s.pos[:, :, None, :], out=feats[..., 0:3])
        np.subtract(s.vel[:, None, :, :], s.vel[:, :, None, :], out=feats[..., 3:6])
        feats[..., 6:9] = (s.pos - self.goals())[:, None, :, :]
        mask = np.broadcast_to(1.0 - np.eye(n, dtype=np.float32), (e, n, n))
        return feats, mask

    def drone_state(self) -> np.ndarray:
        """Global state for a pooled centralised critic (true, noise-free): each drone once,
        (E, N, CRITIC_FEATS) float32: its position relative to the swarm's centroid, its
        velocity and its goal error (m, m/s, m, world frame). N times smaller than
        :meth:`critic_state`, which repeats every drone relative to every agent."""
        s = self.physics.state()
        feats = np.empty((self.num_envs, self.num_drones, CRITIC_FEATS), dtype=np.float32)
        feats[..., 0:3] = s.pos - s.pos.mean(axis=1, keepdims=True)
        feats[..., 3:6] = s.vel
        feats[..., 6:9] = s.pos - self.goals()
        return feats

    def _motor_commands(self, action: np.ndarray, motors_off: np.ndarray | None) -> np.ndarray:
        if self.cfg.action_mode == "motors":
            thrust = action * self.params.max_thrust_n[..., None]
        else:
            s = self.physics.state()
            thrust = self.controller(s.vel, s.rot, s.omega,
                                     action[..., :3] * self.cfg.max_speed_mps,
                                     action[..., 3] * self.cfg.max_yaw_rate_rad_s)
        if motors_off is not None:
            thrust = np.where(motors_off[..., None], 0.0, thrust)
        return thrust

    def step(self, actions: np.ndarray, motors_off: np.ndarray | None = None,
             observe: bool = True) -> StepResult:
        """Apply normalised actions (E, N, 4) for one control period. ``motors_off`` (E, N)
        bool: drones whose motors are cut (an emergency stop), whatever their action.
        ``observe=False``: skip the policies' observations (``obs`` and ``final_obs`` None),
        for callers whose drones are flown by something else (the sim bridge's robot nodes,
        scripted flights). States, rewards and metrics are unchanged; no observation noise
        is drawn, so the random stream (and later episodes' spawns) differ."""
        if self.scenario is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=float)
        expected = (self.num_envs, self.num_drones, 4)
        if actions.shape != expected:
            raise ValueError(f"actions: expected shape {expected}, got {actions.shape}")
        if not np.isfinite(actions).all():
            raise ValueError("actions: contain NaN or inf")
        actions = np.clip(actions, self.action_low, self.action_high)
        for _ in range(self.cfg.substeps):
            self.physics.step(self._motor_commands(actions, motors_off))
        self.step_count += 1

        s = self.physics.state()
        collisions = self.physics.collisions()
        goal_dist = np.linalg.norm(s.pos - self.goals(), axis=-1)
        nearest = pair_stats(s.pos, self.model)[0]
        effort = actions - self.hover_action()
        rewards = swarm_rewards(self.cfg.reward, self.control_dt_s, goal_dist, s.rot, s.omega,
                                np.einsum("...i,...i->...", effort, effort), collisions,
                                nearest, 2 * self.model.collision_radius_m,
                                self.collision_scale)
        self.metrics.update(goal_dist, collisions, nearest)
        info = {"reward_terms": rewards, "collisions": collisions}
        done = self.step_count >= self.cfg.episode_steps
        truncated = np.full((self.num_envs, self.num_drones), done)
        obs = self._observe() if observe else None
        if done:
            info["final_obs"] = obs
            info["final_critic_state"] = self.critic_state()
            info["final_drone_state"] = self.drone_state()
            info["final_state"] = s.copy()
            info["final_goals"] = self.goals()
            info["episode"] = self.metrics.summary()
            obs = self.reset()
        return StepResult(obs, rewards["total"], np.zeros_like(truncated), truncated, info)

    def close(self) -> None:
        close = getattr(self.physics, "close", None)
        if close is not None:
            close()
