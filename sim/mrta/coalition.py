"""Coalition completion: when a task is done, who did it, and the reward.

The rule (checked at the end of every decision step, after the robots have moved):

- a robot *serves* task m when m is its target and its centre is within
  ``completion_radius_m`` of the task (horizontal distance; robots fly at one height);
- a task of level L is *completed* when at least L robots serve it at the same time;
- a completed task pays L^2 to the team (shared by all robots of the environment), and every
  robot that served it is released (its target is cleared).

Robots passing close to a task they do not target never count: a coalition is the robots
that chose the task. Extra robots beyond L are released too (they were there; the task is
gone).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.mrta.config import LEVELS

NO_TARGET = -1
"""Target slot of a robot that has none."""


@dataclass
class Completion:
    completed: np.ndarray
    """(E, M) bool: tasks completed this step."""
    served: np.ndarray
    """(E, N) bool: robots that were serving a task completed this step."""
    reward: np.ndarray
    """(E,) team reward: the sum of L^2 over completed tasks."""
    by_level: np.ndarray
    """(E, LEVELS) completed tasks per level."""


def servers(robot_xy: np.ndarray, target: np.ndarray, task_xy: np.ndarray,
            task_active: np.ndarray, radius_m: float) -> np.ndarray:
    """(E, N) bool: robot i targets an active task and is within ``radius_m`` of it.

    ``robot_xy`` (E, N, 2) m; ``target`` (E, N) task slot or :data:`NO_TARGET`;
    ``task_xy`` (E, M, 2) m; ``task_active`` (E, M)."""
    has = target >= 0
    slot = np.where(has, target, 0)
    tx = np.take_along_axis(task_xy, slot[..., None], axis=1)
    act = np.take_along_axis(task_active, slot, axis=1)
    close = np.linalg.norm(robot_xy - tx, axis=-1) <= radius_m
    return has & act & close


def complete(robot_xy: np.ndarray, target: np.ndarray, task_xy: np.ndarray,
             task_level: np.ndarray, task_active: np.ndarray, radius_m: float) -> Completion:
    """Apply the completion rule (module docstring) to one decision step of E environments."""
    e, m = task_level.shape
    serving = servers(robot_xy, target, task_xy, task_active, radius_m)
    count = np.zeros((e, m), int)
    env_idx, robot_idx = np.nonzero(serving)
    np.add.at(count, (env_idx, target[env_idx, robot_idx]), 1)
    completed = task_active & (count >= task_level) & (task_level >= 1)
    slot = np.where(target >= 0, target, 0)
    served = serving & np.take_along_axis(completed, slot, axis=1)
    reward = (completed * task_level ** 2).sum(axis=1).astype(float)
    by_level = np.stack([(completed & (task_level == lv)).sum(axis=1)
                         for lv in range(1, LEVELS + 1)], axis=1)
    return Completion(completed, served, reward, by_level)
