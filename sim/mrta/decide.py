"""What a robot node's task layer calls: its observation of tasks and received intentions,
its choice of target, and the intention it publishes. Numpy only (no torch, no pybullet).

A robot ``cfN`` at each decision step (``decision_dt_s``)::

    inbox.receive(msg)                       # for every /cfN/intention heard (IntentionInbox)
    heard = inbox.current(own_pos, now_s, own_name="cfN")
    target = choose_target(own_pos, own_target, tasks, heard, cfg, policy)
    publish(make_intention("cfN", now_s, own_pos, target, tasks, cfg))   # /cfN/intention
    goal = task_position(tasks, target)      # -> /cfN/goal (None: explore / hold)

``tasks`` is the list from ``/swarm/tasks`` (:class:`Task`: id, ENU position, level); the robot
filters by its own view range here, exactly as in the simulator, because the observation is
built by the one MRTA observation function (:func:`sim.mrta.observation.observe`) with E = 1.
``policy`` is ``"greedy"`` or any callable mapping observations (B, dim) float32 to choices
(B,) (e.g. :class:`swarm_rl.mrta.onnx_policy.TaskPolicy`, onnxruntime only).
:func:`market_assign` is the market baseline for a task server that clears it centrally.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sim.mrta.allocators import greedy_actions, market_env
from sim.mrta.config import LEVELS, MRTAConfig
from sim.mrta.intention import NO_TASK, Intention, intention_path
from sim.mrta.observation import MRTALayout, observe

TaskChooser = Callable[[np.ndarray], np.ndarray]
"""Observations (B, dim) float32 -> choices (B,) int in [0, K_t] (K_t: no task)."""


@dataclass(frozen=True)
class Task:
    """One task of ``/swarm/tasks``: a stable id, its ENU position (m) and level 1..3."""

    task_id: int
    position_m: tuple[float, float, float]
    level: int

    def __post_init__(self) -> None:
        if isinstance(self.task_id, bool) or not isinstance(self.task_id, (int, np.integer)) \
                or self.task_id < 0:
            raise ValueError(f"Task.task_id: must be an integer >= 0, got {self.task_id!r}")
        pos = tuple(float(v) for v in self.position_m)
        if len(pos) != 3 or not np.isfinite(pos).all():
            raise ValueError(f"Task.position_m: must be 3 finite numbers, got "
                             f"{self.position_m!r}")
        object.__setattr__(self, "position_m", pos)
        if self.level not in range(1, LEVELS + 1):
            raise ValueError(f"Task.level: must be 1..{LEVELS}, got {self.level!r}")


@dataclass(frozen=True)
class RobotObservation:
    obs: np.ndarray
    """(dim,) float32, layout :class:`sim.mrta.observation.MRTALayout`."""
    slot_ids: tuple[int, ...]
    """Task id behind each of the K_t task slots (-1: empty)."""
    action_mask: np.ndarray
    """(K_t + 1,) bool; the last entry is "no task"."""
    neighbours: tuple[str, ...]
    """Names of the robots the observation was built from (intentions and positions)."""


def observe_robot(own_position_m: np.ndarray, own_target_id: int, tasks: Sequence[Task],
                  intentions: Sequence[Intention], cfg: MRTAConfig,
                  neighbour_positions_m: Mapping[str, np.ndarray] | None = None,
                  time_left_frac: float = 1.0, locked: bool | None = None
                  ) -> RobotObservation:
    """One robot's MRTA observation from live data.

    ``own_position_m`` (3,) ENU; ``own_target_id``: its current target (-1: none; an id no
    longer in ``tasks`` counts as none); ``intentions``: the usable ones
    (:meth:`IntentionInbox.current`); ``neighbour_positions_m``: other robots' positions by
    name (odometry), used in place of an intention's first path point when both exist;
    ``time_left_frac``: share of the mission left, in [0, 1]; ``locked``: without revision,
    whether the robot may only keep ``own_target_id`` (default: whenever it has one; in a
    negotiation round pass the previous round's choice as ``own_target_id`` and whether the
    robot holds a committed target as ``locked``, as :meth:`sim.mrta.env.MRTAVecEnv.observe`
    does). Intentions naming a task not in ``tasks`` still give the sender's position,
    without an intention."""
    own = np.asarray(own_position_m, float).reshape(3)
    ids = [t.task_id for t in tasks]
    index = {tid: m for m, tid in enumerate(ids)}
    by_name: dict[str, Intention] = {msg.sender: msg for msg in intentions}
    positions = dict(neighbour_positions_m or {})
    names = sorted(set(by_name) | set(positions))
    n = 1 + len(names)
    robot_xy = np.zeros((1, n, 2))
    robot_xy[0, 0] = own[:2]
    intent_slot = np.full((1, n), -1)
    intent_eta = np.ones((1, n), int)
    for k, name in enumerate(names, start=1):
        pos = positions.get(name)
        msg = by_name.get(name)
        robot_xy[0, k] = (np.asarray(pos, float).reshape(3) if pos is not None
                          else msg.position_m)[:2]
        if msg is not None and msg.target_id in index:
            intent_slot[0, k] = index[msg.target_id]
            intent_eta[0, k] = min(msg.eta_steps, cfg.intention_horizon)
    m = max(len(tasks), 1)
    task_xy = np.zeros((1, m, 2))
    level = np.zeros((1, m), int)
    active = np.zeros((1, m), bool)
    for j, t in enumerate(tasks):
        task_xy[0, j] = t.position_m[:2]
        level[0, j] = t.level
        active[0, j] = True
    target = np.array([[index.get(own_target_id, -1)] + [-1] * (n - 1)])
    heard = np.zeros((1, n, n), bool)
    heard[0, 0, 1:] = True  # only the robot's own row is used
    lock = None if locked is None else np.full((1, n), bool(locked))
    out = observe(robot_xy, target, task_xy, level, active, intent_slot, intent_eta,
                  heard, heard, np.array([float(np.clip(time_left_frac, 0.0, 1.0))]), cfg,
                  locked=lock)
    slots = tuple(int(ids[s]) if s >= 0 else -1 for s in out.slot_task[0, 0])
    return RobotObservation(out.obs[0, 0], slots, out.action_mask[0, 0], tuple(names))


def choose_target(own_position_m: np.ndarray, own_target_id: int, tasks: Sequence[Task],
                  intentions: Sequence[Intention], cfg: MRTAConfig,
                  policy: str | TaskChooser = "greedy",
                  neighbour_positions_m: Mapping[str, np.ndarray] | None = None,
                  time_left_frac: float = 1.0, locked: bool | None = None) -> int:
    """The task id this robot should target now, or -1 (no task: explore or hold).

    Arguments as :func:`observe_robot`; ``policy``: ``"greedy"`` (nearest known task) or a
    :data:`TaskChooser`. A choice the action mask forbids (a broken policy) raises."""
    ro = observe_robot(own_position_m, own_target_id, tasks, intentions, cfg,
                       neighbour_positions_m, time_left_frac, locked)
    layout = MRTALayout.of(cfg)
    if isinstance(policy, str):
        if policy != "greedy":
            raise ValueError(f"policy: unknown policy '{policy}'; allowed: greedy or a "
                             "callable")
        choice = int(greedy_actions(ro.obs[None], layout)[0])
    else:
        choice = int(np.asarray(policy(ro.obs[None])).reshape(-1)[0])
    if not 0 <= choice <= layout.task_slots or not ro.action_mask[choice]:
        raise ValueError(f"policy: chose {choice}, which the action mask forbids "
                         f"({ro.action_mask.astype(int).tolist()})")
    return NO_TASK if choice == layout.task_slots else ro.slot_ids[choice]


def task_position(tasks: Sequence[Task], task_id: int) -> np.ndarray | None:
    """ENU position (3,) of task ``task_id``, or None (no such task, or -1)."""
    for t in tasks:
        if t.task_id == task_id:
            return np.array(t.position_m)
    return None


def task_goal(tasks: Sequence[Task], task_id: int, cfg: MRTAConfig) -> np.ndarray | None:
    """Where a robot serving task ``task_id`` flies: the task's (x, y) at the preset's flight
    height (ENU (3,), m); None for no such task or -1."""
    pos = task_position(tasks, task_id)
    return None if pos is None else np.array([pos[0], pos[1], cfg.flight_height_m])


def make_intention(sender: str, stamp_s: float, own_position_m: np.ndarray, target_id: int,
                   tasks: Sequence[Task], cfg: MRTAConfig) -> Intention:
    """The intention to publish: target id and the straight planned path to it at the
    flight height (ENU, one point per decision step; :func:`intention_path`)."""
    own = np.asarray(own_position_m, float).reshape(3)
    goal = task_goal(tasks, target_id, cfg)
    path = intention_path(own, goal, cfg.step_length_m, cfg.intention_horizon)
    return Intention(sender, float(stamp_s), int(target_id) if goal is not None else NO_TASK,
                     path)


def market_assign(robot_positions_m: Mapping[str, np.ndarray],
                  robot_targets: Mapping[str, int], tasks: Sequence[Task], cfg: MRTAConfig
                  ) -> dict[str, int]:
    """The market baseline cleared for a whole swarm (e.g. by a task server): robot name ->
    task id (-1: none). See :func:`sim.mrta.allocators.market_env`."""
    names = sorted(robot_positions_m)
    ids = [t.task_id for t in tasks]
    index = {tid: m for m, tid in enumerate(ids)}
    xy = np.array([np.asarray(robot_positions_m[k], float).reshape(3)[:2] for k in names]
                  ).reshape(-1, 2)
    target = np.array([index.get(robot_targets.get(k, NO_TASK), -1) for k in names], int)
    task_xy = np.array([t.position_m[:2] for t in tasks], float).reshape(-1, 2)
    level = np.array([t.level for t in tasks], int)
    out = market_env(xy, target, task_xy, level, np.ones(len(tasks), bool), cfg)
    return {k: (ids[s] if s >= 0 else NO_TASK) for k, s in zip(names, out)}
