"""Intentions: what a robot tells its neighbours it will do, and how a receiver checks them.

An intention is the robot's target task id plus its planned path: ENU points (m), the first
where the robot is now, then where it expects to be after each of the next decision steps,
flying straight at ``speed_mps``, the last one on the target (``/cfN/intention`` carries it as
a nav_msgs/Path whose last pose is the target; DESIGN.md). A robot without a target publishes
``target_id = -1`` and a one-point path (where it is). The number of steps in the path is the
sender's arrival time ``eta`` (at least 1), so a receiver knows when the sender will be at the
task: the point reached after i steps carries the paper's path-map weight ``discount ** i``
(its "cell i, 0.67^(i+1)" counts cells from the first one ahead), the target
``discount ** eta``.

Receivers ignore intentions that are malformed, stale (older than ``stale_after_s``) or out of
communication range (sender's first path point farther than ``comm_range_m``), and count
each kind (:class:`IntentionInbox`). Pure numpy: the robot node uses this module as is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NO_TASK = -1
"""``target_id`` of a robot that has no target."""
MAX_COORD_M = 1.0e4
"""Coordinates beyond this are treated as malformed."""


@dataclass(frozen=True)
class Intention:
    """One robot's published intention. ``path_m`` (H, 3), ENU, metres, H >= 1."""

    sender: str
    stamp_s: float
    target_id: int
    path_m: np.ndarray

    @property
    def position_m(self) -> np.ndarray:
        """Where the sender was when it published (the path's first point)."""
        return self.path_m[0]

    @property
    def eta_steps(self) -> int:
        """Decision steps until the sender reaches its target (points after the first; at
        least 1, as in the simulator)."""
        return max(int(self.path_m.shape[0]) - 1, 1)


def path_steps(distance_m: np.ndarray | float, step_m: float, horizon: int) -> np.ndarray:
    """Decision steps of a planned path over ``distance_m``: ceil(distance / step), in
    [1, horizon] (the path then has one point more: where it starts)."""
    steps = np.ceil(np.asarray(distance_m, float) / step_m - 1e-9)
    return np.clip(steps, 1, horizon).astype(int)


def intention_path(position_m: np.ndarray, target_m: np.ndarray | None, step_m: float,
                   horizon: int) -> np.ndarray:
    """The planned path (H + 1, 3) from ``position_m`` to ``target_m`` (ENU, m): the start,
    then the points reached after each of the next H decision steps, ``step_m`` apart, the
    last one on the target when it is within ``horizon`` steps. No target: the one-point path
    ``[position_m]``."""
    p = np.asarray(position_m, float).reshape(3)
    if target_m is None:
        return p[None].copy()
    t = np.asarray(target_m, float).reshape(3)
    dist = float(np.linalg.norm(t - p))
    n = int(path_steps(dist, step_m, horizon))
    frac = np.minimum(1.0, np.arange(0, n + 1) * step_m / max(dist, 1e-12))
    return p + frac[:, None] * (t - p)


def check_intention(msg: object, max_points: int) -> str | None:
    """Why ``msg`` is not a usable :class:`Intention` (a short reason), or None when it is."""
    if not isinstance(msg, Intention):
        return f"not an Intention: {type(msg).__name__}"
    if not isinstance(msg.sender, str) or not msg.sender:
        return "sender: empty or not a string"
    if not isinstance(msg.stamp_s, (int, float)) or not math.isfinite(msg.stamp_s):
        return f"stamp_s: not a finite number: {msg.stamp_s!r}"
    if isinstance(msg.target_id, bool) or not isinstance(msg.target_id, (int, np.integer)) \
            or msg.target_id < NO_TASK:
        return f"target_id: must be an integer >= {NO_TASK}, got {msg.target_id!r}"
    path = msg.path_m
    if not isinstance(path, np.ndarray) or path.ndim != 2 or path.shape[1] != 3:
        return f"path_m: expected shape (H, 3), got {getattr(path, 'shape', type(path))}"
    if not 1 <= path.shape[0] <= max_points:
        return f"path_m: {path.shape[0]} points, allowed 1..{max_points}"
    if not np.isfinite(path).all() or np.abs(path).max() > MAX_COORD_M:
        return "path_m: non-finite or implausibly large coordinates"
    return None


@dataclass
class IntentionInbox:
    """The latest intention heard from each neighbour, filtered at use time.

    ``receive`` validates and stores (a message older than the one held for its sender is
    ignored); ``current`` returns the usable ones for a robot at ``own_position_m`` at
    ``now_s``. ``counts`` says how many messages were accepted, malformed, stale, out of range
    or out of order; a message is counted at most once per kind."""

    comm_range_m: float
    stale_after_s: float
    max_points: int = 101
    latest: dict[str, Intention] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {
        "received": 0, "accepted": 0, "malformed": 0, "stale": 0, "out_of_range": 0,
        "out_of_order": 0})
    last_reason: str | None = None
    _judged: dict[str, tuple[float, set[str]]] = field(default_factory=dict)

    def receive(self, msg: object) -> bool:
        """Store ``msg`` if well formed and newer than what its sender sent before."""
        reason = check_intention(msg, self.max_points)
        if reason is not None:
            self.reject(reason)
            return False
        self.counts["received"] += 1
        held = self.latest.get(msg.sender)
        if held is not None and msg.stamp_s < held.stamp_s:
            self.counts["out_of_order"] += 1
            return False
        self.latest[msg.sender] = msg
        return True

    def reject(self, reason: str) -> None:
        """Count a received message that could not be used (malformed, ``reason`` says why),
        for a decoder that found it unusable before it became an :class:`Intention`."""
        self.counts["received"] += 1
        self.counts["malformed"] += 1
        self.last_reason = reason

    def current(self, own_position_m: np.ndarray, now_s: float, own_name: str | None = None,
                positions: dict[str, np.ndarray] | None = None) -> list[Intention]:
        """Usable intentions: fresh, within range, not the robot's own; sorted by sender.

        ``positions``: where senders are now (m, world frame; e.g. from odometry), for the
        range check, as the simulator decides who hears whom; a sender not in it is judged
        from where it published."""
        own = np.asarray(own_position_m, float).reshape(3)
        positions = positions or {}
        out = []
        for name in sorted(self.latest):
            msg = self.latest[name]
            if name == own_name:
                continue
            if now_s - msg.stamp_s > self.stale_after_s:
                self._count_once(msg, "stale")
                del self.latest[name]
                continue
            where = positions.get(name, msg.position_m)
            if np.linalg.norm(where[:2] - own[:2]) > self.comm_range_m:
                self._count_once(msg, "out_of_range")
                continue
            self._count_once(msg, "accepted")
            out.append(msg)
        return out

    def _count_once(self, msg: Intention, kind: str) -> None:
        stamp, kinds = self._judged.get(msg.sender, (math.nan, set()))
        if stamp != msg.stamp_s:
            stamp, kinds = msg.stamp_s, set()
        if kind not in kinds:
            kinds.add(kind)
            self.counts[kind] += 1
        self._judged[msg.sender] = (stamp, kinds)
