"""PettingZoo ``ParallelEnv`` view of one swarm episode (``SwarmVecEnv`` with one environment).

Agents are the robots ``cf1`` .. ``cfN`` (DESIGN.md names). Every agent observes the layout of
:class:`sim.observation.ObsLayout` (world-frame ENU, SI units: m, m/s, rad/s; float32) and acts
with 4 normalised numbers, the env's action mode deciding their meaning:

- ``motors``: per-motor thrust as a fraction of the maximum, in [0, 1] (M1..M4, body FLU);
- ``velocity``: world-frame (ENU) velocity setpoint in units of ``max_speed_mps`` and yaw rate in
  units of ``max_yaw_rate_rad_s``, each in [-1, 1].

An agent left out of the action dict of :meth:`SwarmParallelEnv.step` flies the hover action
(:meth:`SwarmVecEnv.hover_action`: hover thrust in ``motors`` mode, zero velocity in ``velocity``
mode). Drones are never removed mid-episode: terminations stay False and every agent is truncated
together after ``cfg.episode_steps`` control steps, when :attr:`agents` becomes empty.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sim.config import EnvConfig, make_config
from sim.swarm_env import SwarmVecEnv

AgentID = str


class SwarmParallelEnv(ParallelEnv[AgentID, np.ndarray, np.ndarray]):
    """N Crazyflies of one environment as PettingZoo parallel agents.

    ``cfg`` defaults to :func:`sim.config.make_config` of ``overrides``; when both are given,
    ``overrides`` replace top-level fields of ``cfg`` and the result is validated again.
    ``backend`` is ``batched`` or ``pybullet``; ``seed`` seeds the scenario sampler and the
    sensor noise (``reset(seed=...)`` reseeds them).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "swarm_rl_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, cfg: EnvConfig | None = None, backend: str = "batched", seed: int = 0,
                 **overrides: Any) -> None:
        if cfg is None:
            cfg = make_config(**overrides)
        elif overrides:
            cfg = make_config(**{**dataclasses.asdict(cfg), **overrides})
        self.cfg = cfg
        self.render_mode = None
        self._env = SwarmVecEnv(cfg, num_envs=1, backend=backend, seed=seed)
        self.possible_agents: list[AgentID] = [f"cf{i + 1}" for i in range(cfg.num_drones)]
        self.agents: list[AgentID] = []
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        obs_space = spaces.Box(-np.inf, np.inf, (self._env.obs_dim,), np.float32)
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {
            a: spaces.Box(self._env.action_low, self._env.action_high, (4,), np.float32)
            for a in self.possible_agents}
        self._hover = self._env.hover_action()

    @property
    def vec_env(self) -> SwarmVecEnv:
        """The wrapped single-environment :class:`SwarmVecEnv`."""
        return self._env

    def observation_space(self, agent: AgentID) -> spaces.Box:
        """Box(-inf, inf, (obs_dim,), float32); the same object on every call."""
        return self.observation_spaces[agent]

    def action_space(self, agent: AgentID) -> spaces.Box:
        """Box(action_low, action_high, (4,), float32); the same object on every call."""
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[AgentID, np.ndarray], dict[AgentID, dict]]:
        """Start a new episode; ``options`` is accepted and ignored."""
        obs = self._env.reset(seed)
        self.agents = list(self.possible_agents)
        return self._per_agent(obs[0]), {a: {} for a in self.agents}

    def step(self, actions: dict[AgentID, np.ndarray]) -> tuple[
            dict[AgentID, np.ndarray], dict[AgentID, float], dict[AgentID, bool],
            dict[AgentID, bool], dict[AgentID, dict]]:
        """Advance one control period (``1 / cfg.control_hz`` s) with each agent's action (4,).

        An agent missing from ``actions`` flies the hover action; actions outside the action
        space are clipped to it.

        Infos hold each agent's ``reward_terms`` (floats, already multiplied by dt), its
        ``collisions`` flags and, on the final step, the swarm's ``episode`` metrics (floats,
        see :mod:`sim.metrics`). The final step returns the final observations.
        """
        if not self.agents:
            raise RuntimeError("step() called with no live agents: the episode is over (or "
                               "never started); call reset() first")
        unknown = sorted(set(actions) - set(self.agents))
        if unknown:
            raise KeyError(f"actions: unknown agent(s) {unknown}; agents are {self.agents}")
        batch = self._hover.copy()
        for agent, action in actions.items():
            action = np.asarray(action, dtype=np.float32)
            if action.shape != (4,):
                raise ValueError(f"actions[{agent!r}]: expected shape (4,), got {action.shape}")
            batch[0, self._index[agent]] = action
        result = self._env.step(batch)
        info = result.info
        done = bool(result.truncated.all() or result.terminated.all())
        obs = info.get("final_obs", result.obs)
        terms, hits = info["reward_terms"], info["collisions"]
        episode = {k: float(v[0]) for k, v in info["episode"].items()} if "episode" in info \
            else None
        infos: dict[AgentID, dict] = {}
        for agent, i in self._index.items():
            infos[agent] = {
                "reward_terms": {k: float(v[0, i]) for k, v in terms.items()},
                "collisions": {k: bool(getattr(hits, k)[0, i])
                               for k in ("drone", "obstacle", "floor", "wall")},
            }
            if episode is not None:
                infos[agent]["episode"] = dict(episode)
        out = (self._per_agent(obs[0]),
               {a: float(result.reward[0, i]) for a, i in self._index.items()},
               {a: bool(result.terminated[0, i]) for a, i in self._index.items()},
               {a: bool(result.truncated[0, i]) for a, i in self._index.items()},
               infos)
        if done:
            self.agents = []
        return out

    def _per_agent(self, obs: np.ndarray) -> dict[AgentID, np.ndarray]:
        return {a: obs[i] for a, i in self._index.items()}

    def close(self) -> None:
        self._env.close()
