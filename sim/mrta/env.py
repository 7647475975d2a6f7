"""The decision-level MRTA environment: E episodes of N robots stepped together.

One decision step: every robot picks a target (an observation slot, or "no task" = explore);
targets it may not change (revision off) are kept; intentions are published (target and
planned path); robots fly for ``decision_dt_s`` (:mod:`sim.mrta.motion`, or a ``flight``
backend such as the simulated drones of :mod:`swarm_rl.mrta.flight`); the coalition rule
pays the team (:mod:`sim.mrta.coalition`); completed tasks are replaced
(:mod:`sim.mrta.tasks`). Robots without a target fly to an
exploration waypoint drawn uniformly where tasks appear, and draw a new one on arrival.

Intentions in the simulator are delivered without loss or delay within ``comm_range_m``; a
robot observes, at step t, what its neighbours announced after step t - 1's choice. With
``negotiation_rounds`` R > 1 the robots then exchange tentative choices R - 1 more times
before acting (:meth:`MRTAVecEnv.propose`, :meth:`MRTAVecEnv.negotiate`): each round's
observation carries the previous round's announcements. Episodes
have a fixed length and all E end together; the step that ends them returns ``done`` True and
the episode statistics in ``info["episode"]``, and the first observations of fresh episodes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sim.mrta.coalition import NO_TARGET, complete
from sim.mrta.config import LEVELS, MRTAConfig
from sim.mrta.intention import path_steps
from sim.mrta.motion import FlightBackend, fly_kinematic
from sim.mrta.observation import MRTALayout, MRTAObservation, observe
from sim.mrta.tasks import TaskTable, initial_tasks, region_box, replenish, world_box
from sim.scenarios import sample_separated

ROBOT_SPAWN_SEPARATION_M = 0.5
EXPLORE_REACHED_M = 0.5
CRITIC_ROBOT_FEATS = 5
CRITIC_TASK_FEATS = 7


@dataclass
class MRTAStep:
    obs: MRTAObservation
    reward: np.ndarray
    """(E,) team reward of this step (sum of L^2 over completed tasks)."""
    done: bool
    info: dict


class MRTAVecEnv:
    """E MRTA episodes in lock-step; robot positions are ENU (x, y) at ``flight_height_m``."""

    def __init__(self, cfg: MRTAConfig, num_envs: int = 1, seed: int = 0,
                 flight: FlightBackend | None = None) -> None:
        cfg.validate()
        if num_envs < 1:
            raise ValueError(f"num_envs: must be >= 1, got {num_envs}")
        self.cfg, self.num_envs, self.num_robots = cfg, num_envs, cfg.num_robots
        self.layout = MRTALayout.of(cfg)
        self.rngs = [np.random.default_rng([seed, e]) for e in range(num_envs)]
        self.flight = flight
        if cfg.motion == "drones" and flight is None:
            raise ValueError("flight: motion 'drones' needs a flight backend, e.g. "
                             "swarm_rl.mrta.flight.DroneFlight(cfg, num_envs) (the shield "
                             "lives in swarm_rl.runtime, which sim does not import)")
        self.step_count = 0
        self.tasks: TaskTable | None = None

    # --- episode -----------------------------------------------------------------------
    def reset(self, seeds: Sequence[int | np.random.Generator] | None = None
              ) -> MRTAObservation:
        """Fresh episodes. ``seeds``: one seed or generator per environment (evaluation: an
        episode then depends on its own seed only); None: continue the current generators."""
        if seeds is not None:
            if len(seeds) != self.num_envs:
                raise ValueError(f"seeds: expected {self.num_envs}, got {len(seeds)}")
            self.rngs = [s if isinstance(s, np.random.Generator) else np.random.default_rng(s)
                         for s in seeds]
        cfg = self.cfg
        hx, hy = cfg.half_extent_m
        lo = np.array([-hx, -hy, cfg.flight_height_m])
        hi = np.array([hx, hy, cfg.flight_height_m])
        self.robot_xy = np.concatenate([
            sample_separated(rng, 1, cfg.num_robots, lo, hi, ROBOT_SPAWN_SEPARATION_M,
                             "num_robots")[..., :2] for rng in self.rngs])
        self.tasks = initial_tasks(cfg, self.rngs)
        self.target = np.full((self.num_envs, self.num_robots), NO_TARGET)
        self.explore_xy = np.zeros_like(self.robot_xy)
        self._new_waypoints(np.ones(self.target.shape, bool))
        self.step_count = 0
        self.episode_return = np.zeros(self.num_envs)
        self.episode_by_level = np.zeros((self.num_envs, LEVELS), int)
        self.episode_travel = np.zeros((self.num_envs, self.num_robots))
        if self.flight is not None:
            self.flight.reset(self.robot_xy)
        self.last_obs = self.observe()
        return self.last_obs

    def _new_waypoints(self, which: np.ndarray) -> None:
        lo, hi = region_box(self.cfg) if self.cfg.task_mode == "arrival" else world_box(self.cfg)
        for e, i in zip(*np.nonzero(which)):
            self.explore_xy[e, i] = self.rngs[e].uniform(lo, hi)

    # --- what robots know ----------------------------------------------------------------
    def heard(self) -> np.ndarray:
        """(E, N, N) robot i hears robot k (within ``comm_range_m``, k != i)."""
        d = np.linalg.norm(self.robot_xy[:, :, None] - self.robot_xy[:, None], axis=-1)
        return (d <= self.cfg.comm_range_m) & ~np.eye(self.num_robots, dtype=bool)[None]

    def intention_eta(self, targets: np.ndarray | None = None) -> np.ndarray:
        """(E, N) each robot's announced arrival time in decision steps (path length), for
        its target (or for ``targets``, task slots, -1: none)."""
        tx = self.target_xy(targets)
        dist = np.linalg.norm(tx - self.robot_xy, axis=-1)
        return path_steps(dist, self.cfg.step_length_m, self.cfg.intention_horizon)

    def target_xy(self, targets: np.ndarray | None = None) -> np.ndarray:
        """(E, N, 2) each robot's target position (its own position when it has none)."""
        target = self.target if targets is None else targets
        slot = np.where(target >= 0, target, 0)
        tx = np.take_along_axis(self.tasks.xy, slot[..., None], axis=1)
        return np.where((target >= 0)[..., None], tx, self.robot_xy)

    def observe(self, intents: np.ndarray | None = None) -> MRTAObservation:
        """Every robot's observation. ``intents`` (E, N) task slots: the choices announced in
        the previous negotiation round (they replace the targets as intentions, and, with
        revision, as each robot's own current choice); None: the targets."""
        heard = self.heard()
        left = np.full(self.num_envs, 1.0 - self.step_count / self.cfg.decision_steps)
        if intents is None:
            own, intent, locked = self.target, self.target, None
        else:
            intent = intents
            own = intents if self.cfg.revision else np.where(self.target >= 0, self.target,
                                                             intents)
            locked = self.target >= 0
        return observe(self.robot_xy, own, self.tasks.xy, self.tasks.level,
                       self.tasks.active, intent, self.intention_eta(intent), heard, heard,
                       left, self.cfg, locked=locked)

    def propose(self, actions: np.ndarray) -> MRTAObservation:
        """One negotiation round (``negotiation_rounds`` > 1): every robot announces the
        choice ``actions`` (E, N) (observation slots, as for :meth:`step`) without flying;
        returns the observations built from these announcements, on which the next round's
        (or the step's) choices are made. Nothing moves and no target changes."""
        self.last_obs = self.observe(self.actions_to_targets(actions))
        return self.last_obs

    def negotiate(self, choose: Callable[[MRTAObservation], np.ndarray],
                  obs: MRTAObservation | None = None) -> tuple[MRTAObservation, np.ndarray]:
        """Run the ``negotiation_rounds`` of one decision step with ``choose`` (observations
        -> actions (E, N)): R - 1 rounds of :meth:`propose`, then the final choice. Returns
        the observations the final choice was made on and that choice (for :meth:`step`)."""
        obs = self.last_obs if obs is None else obs
        for _ in range(self.cfg.negotiation_rounds - 1):
            obs = self.propose(choose(obs))
        return obs, choose(obs)

    def redundant(self) -> np.ndarray:
        """(E, N) bool: robot i targets a task that at least L other robots targeting it
        reach before it (arrival time in decision steps; ties go to the lower index), so
        it is not needed there (the potential of ``redundancy_shaping`` in training)."""
        dist = np.linalg.norm(self.target_xy() - self.robot_xy, axis=-1)
        eta = path_steps(dist, self.cfg.step_length_m, self.cfg.intention_horizon)
        n = self.num_robots
        same = ((self.target[:, :, None] == self.target[:, None, :])
                & (self.target >= 0)[:, :, None])
        before = (eta[:, None, :] < eta[:, :, None]) | (
            (eta[:, None, :] == eta[:, :, None]) & (np.arange(n)[None, None, :]
                                                     < np.arange(n)[None, :, None]))
        ahead = (same & before & ~np.eye(n, dtype=bool)[None]).sum(-1)  # [e, i]
        slot = np.where(self.target >= 0, self.target, 0)
        level = np.take_along_axis(self.tasks.level, slot, axis=1)
        return (self.target >= 0) & (ahead >= level)

    def critic_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global state for a centralised critic: robots (E, N, 5) [x, y scaled by the half
        extent, has target, target dx, dy scaled likewise], tasks (E, M, 7) [x, y, level
        one-hot, committed robots / 3, active] and the task mask (E, M)."""
        hx, hy = self.cfg.half_extent_m
        scale = np.array([hx, hy])
        tx = self.target_xy()
        robots = np.concatenate([self.robot_xy / scale, (self.target >= 0)[..., None],
                                 (tx - self.robot_xy) / scale], axis=-1)
        m = self.tasks.level.shape[1]
        committed = ((self.target[:, :, None] == np.arange(m)[None, None]).sum(axis=1))
        lv = self.tasks.level
        tasks = np.concatenate([self.tasks.xy / scale,
                                np.stack([lv == j + 1 for j in range(LEVELS)], -1),
                                committed[..., None] / LEVELS,
                                self.tasks.active[..., None]], axis=-1)
        tasks *= self.tasks.active[..., None]
        return (robots.astype(np.float32), tasks.astype(np.float32),
                self.tasks.active.astype(np.float32))

    # --- one decision step -----------------------------------------------------------------
    def actions_to_targets(self, actions: np.ndarray) -> np.ndarray:
        """Observation-slot choices (E, N) in [0, K_t] -> task-table slots (-1: no task).
        Illegal choices (masked slots) raise."""
        actions = np.asarray(actions)
        if actions.shape != self.target.shape:
            raise ValueError(f"actions: expected shape {self.target.shape}, got "
                             f"{actions.shape}")
        mask = self.last_obs.action_mask
        kt = self.layout.task_slots
        if (actions < 0).any() or (actions > kt).any():
            raise ValueError(f"actions: must be in [0, {kt}]")
        if not np.take_along_axis(mask, actions[..., None], axis=-1).all():
            raise ValueError("actions: a robot chose a slot its action mask forbids")
        slot = np.take_along_axis(self.last_obs.slot_task, np.minimum(actions, kt - 1)[..., None],
                                  axis=-1)[..., 0]
        return np.where(actions == kt, NO_TARGET, slot)

    def step(self, actions: np.ndarray) -> MRTAStep:
        """Step with each robot's choice of observation slot (E, N) int in [0, K_t] (slots of
        the latest observation: after negotiation rounds, the last round's)."""
        return self.step_targets(self.actions_to_targets(actions))

    def step_targets(self, targets: np.ndarray) -> MRTAStep:
        """Step with task-table slots (E, N) (-1: no task), e.g. from the market allocator
        (whose project managers tell bidders about tasks they cannot see themselves)."""
        cfg = self.cfg
        targets = np.asarray(targets, int)
        m = self.tasks.level.shape[1]
        bad = (targets >= m) | (targets < NO_TARGET)
        safe = np.where(bad | (targets < 0), 0, targets)
        inactive = (targets >= 0) & ~np.take_along_axis(self.tasks.active, safe, axis=1)
        if bad.any() or inactive.any():
            raise ValueError("targets: must be -1 or the slot of an active task")
        if not cfg.revision:
            targets = np.where(self.target >= 0, self.target, targets)
        self.target = targets
        waypoint = np.where((targets >= 0)[..., None], self.target_xy(), self.explore_xy)
        if self.flight is not None:
            new_xy, travel = self.flight.fly(waypoint)
        else:
            new_xy, travel = fly_kinematic(self.robot_xy, waypoint, cfg)
        self.robot_xy = new_xy
        self.episode_travel += travel
        reached = (targets < 0) & (np.linalg.norm(self.robot_xy - self.explore_xy, axis=-1)
                                   <= EXPLORE_REACHED_M)
        self._new_waypoints(reached)

        result = complete(self.robot_xy, self.target, self.tasks.xy, self.tasks.level,
                          self.tasks.active, cfg.completion_radius_m)
        slot = np.where(self.target >= 0, self.target, 0)
        lost = (self.target >= 0) & np.take_along_axis(result.completed, slot, axis=1)
        self.target = np.where(lost, NO_TARGET, self.target)
        replenish(self.tasks, cfg, result.completed, self.rngs)
        self.episode_return += result.reward
        self.episode_by_level += result.by_level
        self.step_count += 1
        info = {"completed_by_level": result.by_level, "served": result.served}
        done = self.step_count >= cfg.decision_steps
        if done:
            info["episode"] = {
                "return": self.episode_return.copy(),
                **{f"completed_L{j + 1}": self.episode_by_level[:, j].astype(float)
                   for j in range(LEVELS)},
                "travel_per_robot_m": self.episode_travel.mean(axis=1),
                "dropped_tasks": self.tasks.dropped.astype(float),
            }
            obs = self.reset()
        else:
            obs = self.last_obs = self.observe()
        return MRTAStep(obs, result.reward, done, info)
