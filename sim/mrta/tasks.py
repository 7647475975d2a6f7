"""The task table of E environments: where tasks are, their level, and how they appear.

Arrays are shaped (E, M) with M = ``max_tasks`` slots; ``active`` marks the slots holding a
task. Every task ever spawned in an environment gets a new integer ``uid`` (stable for the
task's lifetime: what robots name in their intentions). Positions are ENU (x, y) in metres.
Each environment draws from its own generator, so an episode does not depend on its
batch-mates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.mrta.config import LEVELS, MRTAConfig

_PLACEMENT_TRIES = 30


@dataclass
class TaskTable:
    xy: np.ndarray
    """(E, M, 2) task positions (m)."""
    level: np.ndarray
    """(E, M) int, 1..LEVELS (0 in empty slots)."""
    active: np.ndarray
    """(E, M) bool."""
    uid: np.ndarray
    """(E, M) int, -1 in empty slots."""
    next_uid: np.ndarray
    """(E,) next uid to hand out."""
    dropped: np.ndarray
    """(E,) arrivals lost because the table was full."""

    @classmethod
    def empty(cls, num_envs: int, max_tasks: int) -> "TaskTable":
        return cls(np.zeros((num_envs, max_tasks, 2)), np.zeros((num_envs, max_tasks), int),
                   np.zeros((num_envs, max_tasks), bool), np.full((num_envs, max_tasks), -1),
                   np.zeros(num_envs, int), np.zeros(num_envs, int))

    def copy(self) -> "TaskTable":
        return TaskTable(self.xy.copy(), self.level.copy(), self.active.copy(), self.uid.copy(),
                         self.next_uid.copy(), self.dropped.copy())


def level_weights(cfg: MRTAConfig) -> np.ndarray:
    """Probabilities of levels 1..LEVELS for new tasks (the initial mix)."""
    counts = np.asarray(cfg.initial_tasks, float)
    return counts / counts.sum()


def _place(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, others: np.ndarray,
           spacing_m: float) -> np.ndarray:
    """A uniform point in the box [lo, hi] at least ``spacing_m`` from ``others`` (K, 2); after
    ``_PLACEMENT_TRIES`` misses, the last draw (a crowded region still gets its task)."""
    point = rng.uniform(lo, hi)
    for _ in range(_PLACEMENT_TRIES):
        if len(others) == 0 or np.min(np.linalg.norm(others - point, axis=1)) >= spacing_m:
            return point
        point = rng.uniform(lo, hi)
    return point


def spawn(table: TaskTable, e: int, level: int, rng: np.random.Generator, lo: np.ndarray,
          hi: np.ndarray, spacing_m: float, slot: int | None = None) -> int:
    """Put a new task of ``level`` into environment ``e`` (in ``slot``, or the first free
    one); returns the slot, or -1 (and counts a drop) when the table is full."""
    if slot is None:
        free = np.flatnonzero(~table.active[e])
        if free.size == 0:
            table.dropped[e] += 1
            return -1
        slot = int(free[0])
    others = table.xy[e][table.active[e]]
    table.xy[e, slot] = _place(rng, lo, hi, others, spacing_m)
    table.level[e, slot] = level
    table.active[e, slot] = True
    table.uid[e, slot] = table.next_uid[e]
    table.next_uid[e] += 1
    return slot


def world_box(cfg: MRTAConfig) -> tuple[np.ndarray, np.ndarray]:
    hx, hy = cfg.half_extent_m
    return np.array([-hx, -hy]), np.array([hx, hy])


def region_box(cfg: MRTAConfig) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = cfg.arrival_region_m
    return np.array([x0, y0]), np.array([x1, y1])


def initial_tasks(cfg: MRTAConfig, rngs: list[np.random.Generator]) -> TaskTable:
    """The tasks of fresh episodes: ``initial_tasks[L - 1]`` of each level, uniform in the
    world, at least ``task_min_spacing_m`` apart where possible."""
    table = TaskTable.empty(len(rngs), cfg.max_tasks)
    lo, hi = world_box(cfg)
    for e, rng in enumerate(rngs):
        for level in range(1, LEVELS + 1):
            for _ in range(cfg.initial_tasks[level - 1]):
                spawn(table, e, level, rng, lo, hi, cfg.task_min_spacing_m)
    return table


def replenish(table: TaskTable, cfg: MRTAConfig, completed: np.ndarray,
              rngs: list[np.random.Generator]) -> None:
    """After a decision step: remove ``completed`` (E, M) tasks, then respawn them (respawn
    mode: same slot, same level, a new uid, anywhere in the world) or let new tasks arrive
    (arrival mode: Poisson(rate x free area) per step inside the region, a free square metre
    being one not taken by a task, levels drawn from :func:`level_weights`)."""
    table.active &= ~completed
    if cfg.task_mode == "respawn":
        lo, hi = world_box(cfg)
        for e, m in zip(*np.nonzero(completed)):
            spawn(table, int(e), int(table.level[e, m]), rngs[e], lo, hi,
                  cfg.task_min_spacing_m, slot=int(m))
        return
    table.level[completed] = 0
    table.uid[completed] = -1
    lo, hi = region_box(cfg)
    area = float(np.prod(hi - lo))
    weights = level_weights(cfg)
    inside = np.all((table.xy >= lo) & (table.xy <= hi), axis=-1) & table.active
    for e, rng in enumerate(rngs):
        free_area = max(area - float(inside[e].sum()), 0.0)
        for _ in range(int(rng.poisson(cfg.arrival_rate * free_area))):
            level = int(rng.choice(LEVELS, p=weights)) + 1
            spawn(table, e, level, rng, lo, hi, cfg.task_min_spacing_m)
