"""Scripted task allocators: greedy nearest task, and a market with project managers.

Both are pure numpy and decentralisable:

- :func:`greedy_actions` reads only a robot's own observation (the MRTA observation
  function's output): it picks the nearest task it knows (its current target or a visible
  one), any level, and explores when it knows none. No coordination: robots on a level-3 task
  wait until two more happen to pick it.
- :func:`market_targets` clears a market in the spirit of PCFA (the seed paper's baseline):
  every visible task gets a *project manager*, the robot nearest to it among those that see
  it; the manager hears bids from the robots within ``comm_range_m`` of itself (itself
  included), a robot's bid being its arrival time (distance / speed, in decision steps). A
  coalition for a level-L task is the L fastest bidders; its fitness is
  ``L^2 exp(-lambda T)``, T the arrival time of its slowest member (all must be there; lambda
  is the preset's ``market_lambda``, per decision step). Tasks
  are awarded one at a time, best fitness first, each robot to at most one task (a sequential
  single-item auction; consensus auctions such as CBBA converge to the same outcome), until
  no remaining task can gather its coalition. With revision the market is cleared afresh
  every decision step; without it, robots keep their targets and only the free ones bid,
  topping up the coalitions already formed.
"""
from __future__ import annotations

import numpy as np

from sim.mrta.coalition import NO_TARGET
from sim.mrta.config import MRTAConfig
from sim.mrta.observation import MRTALayout

def greedy_actions(obs: np.ndarray, layout: MRTALayout) -> np.ndarray:
    """Greedy nearest task: observations (..., dim) -> actions (...,) in [0, K_t]."""
    sl = layout.slices
    kt = layout.task_slots
    tasks = obs[..., sl["tasks"]].reshape(obs.shape[:-1] + (kt, layout.task_feats))
    legal = obs[..., sl["action_mask"]] > 0.5
    dist = np.where(legal[..., :kt], tasks[..., 2], np.inf)
    best = np.argmin(dist, axis=-1)
    has = np.isfinite(np.min(dist, axis=-1))
    return np.where(has, best, kt)


def market_env(robot_xy: np.ndarray, target: np.ndarray, task_xy: np.ndarray,
               task_level: np.ndarray, task_active: np.ndarray, cfg: MRTAConfig
               ) -> np.ndarray:
    """One environment's market (module docstring): robots (N, 2), their targets (N,) as
    task slots (-1: none), tasks (M, 2) / (M,) / (M,) -> new targets (N,)."""
    lam = cfg.market_lambda
    n, m = robot_xy.shape[0], task_xy.shape[0]
    dist = np.linalg.norm(robot_xy[:, None] - task_xy[None], axis=-1)  # (N, M)
    eta = dist / cfg.step_length_m
    sees = (dist <= cfg.view_range_m) & task_active[None]
    if not cfg.revision:
        # Robots keep targets; they also know their target tasks beyond view range.
        sees |= (target[:, None] == np.arange(m)[None]) & (target[:, None] >= 0)
    managed = sees.any(axis=0)
    manager = np.argmin(np.where(sees, dist, np.inf), axis=0)  # (M,)
    rr = np.linalg.norm(robot_xy[:, None] - robot_xy[None], axis=-1)
    bidders = (rr[manager] <= cfg.comm_range_m).T  # (N, M): robot i can bid on task m
    out = target.copy() if not cfg.revision else np.full(n, NO_TARGET)
    committed = np.zeros(m, int)
    slowest = np.zeros(m)
    for i in np.flatnonzero(out >= 0):
        committed[out[i]] += 1
        slowest[out[i]] = max(slowest[out[i]], eta[i, out[i]])
    open_task = managed & task_active & (committed < task_level)
    while open_task.any():
        free = out < 0
        need = np.maximum(task_level - committed, 1)
        cand = np.where(free[:, None] & bidders & open_task[None], eta, np.inf)
        ranked = np.sort(cand, axis=0)  # (N, M)
        kth = ranked[np.minimum(need, n) - 1, np.arange(m)]
        feasible = open_task & (need <= n) & np.isfinite(kth)
        if not feasible.any():
            break
        arrival = np.maximum(kth, slowest)
        fitness = np.where(feasible, task_level ** 2 * np.exp(-lam * arrival), -np.inf)
        best = int(np.argmax(fitness))
        chosen = np.argsort(cand[:, best], kind="stable")[:need[best]]
        out[chosen] = best
        open_task[best] = False
    return out


def market_targets(robot_xy: np.ndarray, target: np.ndarray, task_xy: np.ndarray,
                   task_level: np.ndarray, task_active: np.ndarray, cfg: MRTAConfig
                   ) -> np.ndarray:
    """The market of every environment: arrays shaped (E, N, 2), (E, N), (E, M, 2), (E, M),
    (E, M) -> targets (E, N) as task slots (-1: no task, explore)."""
    return np.stack([market_env(robot_xy[e], target[e], task_xy[e], task_level[e],
                                task_active[e], cfg) for e in range(target.shape[0])])
