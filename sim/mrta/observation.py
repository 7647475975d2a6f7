"""The one MRTA observation function: what a robot sees of tasks, neighbours and intentions.

Batched over E environments x N robots (numpy), used by the training env, by evaluation and,
with E = 1, by a robot node on live data (:func:`sim.mrta.decide.observe_robot`). Layout
version 2, 3 or 4 (``MRTAConfig.obs_layout``), one flat float32 vector per robot (ENU, distances
scaled by the ranges):

- ``own`` (4): x / (X/2), y / (Y/2), share of the episode left, has a target (0/1);
- ``tasks`` (K_t x 10, layout 3: K_t x 14), the robot's current target first, then the known
  tasks nearest first; a task is known when it is visible (within ``view_range_m``) or
  named in a heard intention (a neighbour heading there has told where it is), and in
  layout 4 also when a neighbour within ``comm_range_m`` sees it (shared sightings; the
  features are layout 3's): dx / view,
  dy / view,
  distance / view, level one-hot (3), is my target, intention weight (the sum over heard
  neighbours heading there of ``discount ** eta``, eta = their arrival time in decision
  steps: the paper's path map read at the task), heard neighbours heading there / 3, robots
  still missing ``max(L - heard - mine, 0) / 3``; layout 3 adds four: heard neighbours
  heading there that arrive no later than I would (their announced eta <= my eta to the
  task) / 3, places left for me ``max(L - those, 0) / 3``, neighbours within comm range that
  announced no target and are closer to the task than I am / 3, and all neighbours within comm
  range closer to it than I am / 3 (the last two capped at 6 / 3): the order in which robots
  would reach the task, which is what a market clears coalitions by; layout 5 adds two more:
  the coalition's reach, the distance from the task of its L-th nearest robot among me and
  the neighbours whose positions I know within comm range / view (when it would be served if
  the nearest robots formed its coalition; the market's fitness reads the same arrival time),
  and the nearest of those neighbours' distance to it / view (both capped at
  ``REACH_CAP``, which also stands for "fewer than L robots known");
- ``task_mask`` (K_t): slot holds a task;
- ``neighbours`` (K_n x 6), nearest within ``comm_range_m``: dx / comm, dy / comm, has an
  intention with a target (0/1), its target's dx / comm, dy / comm, eta / horizon;
- ``neighbour_mask`` (K_n);
- ``action_mask`` (K_t + 1): the legal choices, task slots then "no task" (explore). Without
  revision a robot that has a target may only keep it (slot 0).

With intention sharing off every intention-derived entry is 0. Neighbour positions stay (they
come with odometry, not with intentions).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.mrta.config import LEVELS, MRTAConfig

LAYOUT_VERSION = 5
"""The newest layout (the default for new policies is still ``MRTAConfig.obs_layout``).
5: layout 4 plus two coalition distances per task (its reach with the nearest robots, the
nearest neighbour's distance); 4: layout 3's features, and a task that a neighbour within
comm range sees is known too (robots share their sightings, as the market's project managers
tell bidders of tasks the bidders cannot see); 3: layout 2 plus four coalition features
per task (who is ahead of me, how many places are left for me, free and any neighbours
closer to the task than me); 2: tasks named in heard intentions are known (observable and
choosable) beyond view range; 1 offered visible tasks only (1 and 2 agree when intention
sharing is off)."""
LAYOUT_VERSIONS = (2, 3, 4, 5)
"""Layouts this code builds (a policy records its own; evaluation builds that one for it)."""
OWN_DIM = 4
TASK_FEATS_BY_VERSION = {2: 10, 3: 14, 4: 14, 5: 16}
TASK_FEATS = TASK_FEATS_BY_VERSION[2]
"""Task features of layout 2 (the first ten of every layout)."""
NEIGHBOUR_FEATS = 6
REACH_CAP = 4.0
"""Layout 5's coalition distances are capped at this many view ranges (also their value when
too few robots are known)."""


@dataclass(frozen=True)
class MRTALayout:
    """Where each part of the flat observation lies, for ``task_slots`` and
    ``neighbour_slots``."""

    task_slots: int
    neighbour_slots: int
    version: int = 2

    def __post_init__(self) -> None:
        if self.version not in LAYOUT_VERSIONS:
            raise ValueError(f"version: observation layout v{self.version} is not built by "
                             f"this code (allowed: {LAYOUT_VERSIONS})")

    @property
    def task_feats(self) -> int:
        return TASK_FEATS_BY_VERSION[self.version]

    @property
    def slices(self) -> dict[str, slice]:
        kt, kn = self.task_slots, self.neighbour_slots
        sizes = (("own", OWN_DIM), ("tasks", kt * self.task_feats), ("task_mask", kt),
                 ("neighbours", kn * NEIGHBOUR_FEATS), ("neighbour_mask", kn),
                 ("action_mask", kt + 1))
        out, start = {}, 0
        for name, size in sizes:
            out[name] = slice(start, start + size)
            start += size
        return out

    @property
    def dim(self) -> int:
        return self.slices["action_mask"].stop

    @property
    def num_actions(self) -> int:
        return self.task_slots + 1

    @classmethod
    def of(cls, cfg: MRTAConfig) -> "MRTALayout":
        return cls(cfg.task_slots, cfg.neighbour_slots, cfg.obs_layout)


@dataclass
class MRTAObservation:
    obs: np.ndarray
    """(E, N, dim) float32."""
    slot_task: np.ndarray
    """(E, N, K_t) the task-table slot behind each observation slot, -1 where empty."""
    action_mask: np.ndarray
    """(E, N, K_t + 1) bool."""


def _nearest(key: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (..., k) of the k smallest finite keys along the last axis, and their validity;
    padded with index 0 / invalid when fewer columns or finite keys exist."""
    cols = key.shape[-1]
    if cols < k:
        pad = np.full(key.shape[:-1] + (k - cols,), np.inf)
        key = np.concatenate([key, pad], axis=-1)
    order = np.argsort(key, axis=-1, kind="stable")[..., :k]
    valid = np.isfinite(np.take_along_axis(key, order, axis=-1))
    return np.where(valid & (order < cols), order, 0), valid & (order < cols)


def observe(robot_xy: np.ndarray, target: np.ndarray, task_xy: np.ndarray,
            task_level: np.ndarray, task_active: np.ndarray, intent_slot: np.ndarray,
            intent_eta: np.ndarray, intent_heard: np.ndarray, neighbour_heard: np.ndarray,
            time_left: np.ndarray, cfg: MRTAConfig, locked: np.ndarray | None = None
            ) -> MRTAObservation:
    """Observations of every robot (layout in the module docstring).

    ``robot_xy`` (E, N, 2) m; ``target`` (E, N) own target's task slot or -1; ``task_xy``
    (E, M, 2) m, ``task_level`` (E, M) 1..3, ``task_active`` (E, M); ``intent_slot`` (E, N)
    the task slot each robot last announced (-1: none); ``intent_eta`` (E, N) its arrival time
    in decision steps; ``intent_heard`` (E, N, N) robot i holds a usable intention of robot k;
    ``neighbour_heard`` (E, N, N) robot i knows where robot k is; ``time_left`` (E,) share of
    the episode left; ``locked`` (E, N): robots that, without revision, may only keep slot 0
    (default: those with a target; negotiation rounds pass the committed ones). The diagonals
    of the two ``heard`` arrays are ignored."""
    e, n = target.shape
    m = task_level.shape[1]
    kt, kn = cfg.task_slots, cfg.neighbour_slots
    layout = MRTALayout.of(cfg)
    hx, hy = cfg.half_extent_m
    view, comm = cfg.view_range_m, cfg.comm_range_m
    not_self = ~np.eye(n, dtype=bool)[None]
    intent_heard = intent_heard & not_self & (intent_slot >= 0)[:, None, :]
    if not cfg.intention_sharing:
        intent_heard = np.zeros_like(intent_heard)
    neighbour_heard = neighbour_heard & not_self

    # Intentions heard, per task.
    onehot = (np.arange(m)[None, None, :] == intent_slot[..., None]).astype(float)  # (E, K, M)
    weight = cfg.intention_discount ** intent_eta.astype(float)
    heard = intent_heard.astype(float)
    w_task = np.einsum("eik,ekm->eim", heard * weight[:, None, :], onehot)
    c_task = np.einsum("eik,ekm->eim", heard, onehot)

    # Tasks: own target first, then the known ones nearest first.
    rel = task_xy[:, None, :, :] - robot_xy[:, :, None, :]  # (E, N, M, 2)
    dist = np.linalg.norm(rel, axis=-1)
    rr = robot_xy[:, None, :, :] - robot_xy[:, :, None, :]  # [e, i, k] = x_k - x_i
    rdist = np.linalg.norm(rr, axis=-1)
    nb_known = neighbour_heard & (rdist <= comm)  # [e, i, k]: i knows where k is
    seen = dist <= view
    if layout.version >= 4 and cfg.intention_sharing:
        seen = seen | (np.einsum("eik,ekm->eim", nb_known.astype(float), seen) > 0)
    mine = (np.arange(m)[None, None, :] == target[..., None]) & task_active[:, None, :]
    known = (task_active[:, None, :] & (seen | (c_task > 0))) | mine
    order, valid = _nearest(np.where(mine, -1.0, np.where(known, dist, np.inf)), kt)
    gather = lambda a: np.take_along_axis(a, order, axis=-1)  # noqa: E731
    level = np.broadcast_to(task_level[:, None, :], (e, n, m))

    tasks = np.zeros((e, n, kt, layout.task_feats))
    tasks[..., 0] = gather(rel[..., 0]) / view
    tasks[..., 1] = gather(rel[..., 1]) / view
    tasks[..., 2] = gather(dist) / view
    lv = gather(level)
    for j in range(LEVELS):
        tasks[..., 3 + j] = lv == j + 1
    is_mine = gather(mine)
    tasks[..., 6] = is_mine
    tasks[..., 7] = gather(w_task)
    count = gather(c_task)
    tasks[..., 8] = count / LEVELS
    tasks[..., 9] = np.maximum(lv - count - is_mine, 0) / LEVELS
    if layout.version >= 3:
        # Coalition features: the order in which robots would reach the task (what a market
        # clears by), from heard intentions (etas) and neighbour positions.
        steps = cfg.step_length_m
        my_eta = np.clip(np.ceil(dist / steps - 1e-9), 1, cfg.intention_horizon)  # (E, N, M)
        ahead_k = (intent_eta[:, None, :, None] <= my_eta[:, :, None, :])  # [e, i, k, m]
        ahead = np.einsum("eik,eikm,ekm->eim", heard, ahead_k.astype(float), onehot)
        closer = (dist[:, None, :, :] < dist[:, :, None, :])  # [e, i, k, m]: k closer than i
        # (E, K) announced no target (unknown without sharing: nobody counts as free)
        free = (intent_slot < 0) & bool(cfg.intention_sharing)
        closer_any = np.einsum("eik,eikm->eim", nb_known.astype(float), closer.astype(float))
        closer_free = np.einsum("eik,eikm->eim", (nb_known & free[:, None, :]).astype(float),
                                closer.astype(float))
        ahead_g = gather(ahead)
        tasks[..., 10] = ahead_g / LEVELS
        tasks[..., 11] = np.maximum(lv - ahead_g, 0) / LEVELS
        tasks[..., 12] = np.minimum(gather(closer_free), 2 * LEVELS) / LEVELS
        tasks[..., 13] = np.minimum(gather(closer_any), 2 * LEVELS) / LEVELS
    if layout.version >= 5:
        # [e, i, k, m]: distance of robot k to task m for the neighbours i knows, else inf
        theirs = np.where(nb_known[..., None], dist[:, None, :, :], np.inf)
        other = theirs.min(axis=2)
        reach = np.sort(np.concatenate([dist[:, :, None, :], theirs], axis=2), axis=2)
        lth = np.broadcast_to(np.minimum(task_level, n)[:, None, None, :] - 1, (e, n, 1, m))
        coalition = np.take_along_axis(reach, lth, axis=2)[:, :, 0, :]
        tasks[..., 14] = np.minimum(gather(coalition) / view, REACH_CAP)
        tasks[..., 15] = np.minimum(gather(other) / view, REACH_CAP)
    tasks *= valid[..., None]
    slot_task = np.where(valid, order, -1)

    # Neighbours: nearest within comm range.
    n_order, n_valid = _nearest(np.where(nb_known, rdist, np.inf), kn)
    ngather = lambda a: np.take_along_axis(a, n_order, axis=-1)  # noqa: E731
    nb = np.zeros((e, n, kn, NEIGHBOUR_FEATS))
    nb[..., 0] = ngather(rr[..., 0]) / comm
    nb[..., 1] = ngather(rr[..., 1]) / comm
    has_int = ngather(intent_heard)
    slot_k = np.where(intent_slot >= 0, intent_slot, 0)
    t_xy = np.take_along_axis(task_xy, slot_k[..., None], axis=1)  # (E, N, 2) per sender
    t_rel = t_xy[:, None, :, :] - robot_xy[:, :, None, :]  # [e, i, k]
    nb[..., 2] = has_int
    nb[..., 3] = ngather(t_rel[..., 0]) / comm * has_int
    nb[..., 4] = ngather(t_rel[..., 1]) / comm * has_int
    eta = np.broadcast_to(intent_eta[:, None, :].astype(float), (e, n, n))
    nb[..., 5] = ngather(eta) / cfg.intention_horizon * has_int
    nb *= n_valid[..., None]

    has_target = target >= 0
    action_mask = np.concatenate([valid, np.ones((e, n, 1), bool)], axis=-1)
    if not cfg.revision:
        keep = np.zeros_like(action_mask)
        keep[..., 0] = True
        lock = has_target if locked is None else (np.asarray(locked, bool) & has_target)
        action_mask = np.where(lock[..., None], keep, action_mask)

    own = np.stack([robot_xy[..., 0] / hx, robot_xy[..., 1] / hy,
                    np.broadcast_to(np.asarray(time_left, float)[:, None], (e, n)),
                    has_target.astype(float)], axis=-1)
    obs = np.concatenate([own, tasks.reshape(e, n, -1), valid, nb.reshape(e, n, -1), n_valid,
                          action_mask], axis=-1).astype(np.float32)
    assert obs.shape[-1] == layout.dim
    return MRTAObservation(obs, slot_task, action_mask)
