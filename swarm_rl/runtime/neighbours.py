"""What one robot knows of its neighbours: the latest validated state of each, filtered by
communication range and age in the receiving robot (so the same graph works for 4 or 64
robots).

Every update comes from outside (a ROS message, a radio packet) and is validated: a finite
stamp, position and velocity, a plausible magnitude (``|pos| < MAX_POSITION_M``,
``|vel| < MAX_SPEED_MPS``) and a stamp no older than the one already held (see
:meth:`NeighbourTable.update` for clocks that jump); a bad one is dropped and counted by reason
in :attr:`NeighbourTable.rejected`.

Ages. A neighbour's state is kept as last received, never extrapolated: a wrong extrapolation
(a neighbour that braked) is worse for the shield than a known age. Instead, a neighbour older
than ``stale_after_s`` gets an extra safety radius ``inflate_mps * age_s`` (how far it could
have moved since at ``inflate_mps``), and one older than ``drop_after_s`` is left out. A stamp
ahead of the receiver's clock (clock offset between machines) counts as age 0, up to
``drop_after_s`` ahead; further ahead it is left out too, so one corrupt stamp cannot make a
neighbour look fresh for ever.

:meth:`NeighbourTable.observation_features` gives the policy's neighbour features through
:func:`sim.observation.nearest_neighbours`, the function the simulator's fused kernel is
tested against, so a robot observes what the simulator would on the same states. Stale
neighbours appear there at their last known state (the simulator has no stale ones).
"""
from __future__ import annotations

import math

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sim.observation import nearest_neighbours

MAX_POSITION_M = 1e3
"""Updates with ``|pos| >= MAX_POSITION_M`` are rejected (``position_implausible``)."""
MAX_SPEED_MPS = 50.0
"""Updates with ``|vel| >= MAX_SPEED_MPS`` are rejected (``velocity_implausible``)."""

REJECT_REASONS = ("bad_name", "bad_shape", "nonfinite", "position_implausible",
                  "velocity_implausible", "from_future", "out_of_order")
"""Keys of :attr:`NeighbourTable.rejected`."""


@dataclass(frozen=True)
class NeighbourSnapshot:
    """Neighbours usable now, nearest first (ties by name). World frame, SI units."""

    names: tuple[str, ...]
    pos_m: np.ndarray
    """(M, 3) last received positions."""
    vel_mps: np.ndarray
    """(M, 3) last received velocities."""
    age_s: np.ndarray
    """(M,) ``now_s - stamp_s``, at least 0."""
    extra_radius_m: np.ndarray
    """(M,) ``inflate_mps * age_s`` where ``age_s > stale_after_s``, else 0."""
    distance_m: np.ndarray
    """(M,) distance from the observer's position."""

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class SnapshotStack:
    """The snapshots of B observers in padded arrays: row b holds observer b's neighbours
    nearest first (ties by name) in its first ``count[b]`` entries, then the entries it does
    not see (unspecified order; masked by ``count``). World frame, SI units. The per-observer
    :class:`NeighbourSnapshot` objects are built only when asked for (:meth:`snapshot`,
    :attr:`snapshots`); a host's tick reads the arrays (:meth:`neighbour_rows`)."""

    count: np.ndarray
    """(B,) neighbours each observer sees."""
    pos_m: np.ndarray
    """(B, N, 3) last received positions, N = entries in the table."""
    vel_mps: np.ndarray
    """(B, N, 3) last received velocities."""
    order: np.ndarray
    """(B, N) row b's entries: indices into the table's entries (``names``, ...)."""
    names: list[str]
    """The table's entry names, sorted."""
    entry_age_s: np.ndarray
    """(N,) each entry's age (s, at least 0), in ``names`` order."""
    entry_extra_radius_m: np.ndarray
    """(N,) each entry's extra safety radius (m; stale entries), in ``names`` order."""
    entry_distance_m: np.ndarray
    """(B, N) each entry's distance from each observer (m), in ``names`` order."""

    @classmethod
    def gather(cls, names: list[str], order: np.ndarray, count: np.ndarray, pos: np.ndarray,
               vel: np.ndarray, age_s: np.ndarray, extra: np.ndarray,
               distance: np.ndarray) -> SnapshotStack:
        """The stack from the table's entries (``pos``, ``vel`` (N, 3), ``age_s``, ``extra``
        (N,), ``distance`` (B, N) from each observer) and each row's entry ``order`` (B, N):
        positions and velocities gathered for every row (the policy's features read them),
        the rest when a snapshot or the shield's rows ask for it."""
        return cls(count, pos[order], vel[order], order, names, age_s, extra, distance)

    def snapshot(self, b: int) -> NeighbourSnapshot:
        """Observer b's :class:`NeighbourSnapshot`: row b's first ``count[b]`` entries."""
        c = int(self.count[b])
        seen = self.order[b, :c]
        return NeighbourSnapshot(tuple(self.names[i] for i in seen.tolist()),
                                 self.pos_m[b, :c], self.vel_mps[b, :c], self.entry_age_s[seen],
                                 self.entry_extra_radius_m[seen],
                                 self.entry_distance_m[b, seen])

    @cached_property
    def snapshots(self) -> tuple[NeighbourSnapshot, ...]:
        """Every observer's :meth:`snapshot`, in row order."""
        return tuple(self.snapshot(b) for b in range(len(self.count)))

    def neighbour_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The seen neighbours of the observers ``rows`` ((k,) int), one observer after the
        other, each nearest first: positions (R, 3) (m), velocities (R, 3) (m/s) and extra
        radii (R,) (m), R = ``count[rows].sum()``; the concatenation of their snapshots'
        ``pos_m``, ``vel_mps`` and ``extra_radius_m``, the same values."""
        seen = np.arange(self.order.shape[1]) < self.count[rows][:, None]
        return (self.pos_m[rows][seen], self.vel_mps[rows][seen],
                self.entry_extra_radius_m[self.order[rows][seen]])


def check_vector(value: object) -> tuple[np.ndarray | None, str | None]:
    """``value`` as a float (3,) array, or ``(None, reason)`` with a :data:`REJECT_REASONS`
    key (``bad_shape``, ``nonfinite``)."""
    try:
        arr = np.array(value, dtype=float)  # a copy: the caller may reuse its buffer
    except (TypeError, ValueError):
        return None, "bad_shape"
    if arr.shape != (3,):
        return None, "bad_shape"
    if not np.isfinite(arr).all():
        return None, "nonfinite"
    return arr, None


class NeighbourTable:
    """The latest state of each neighbour, by name (``cf1``, ``cf2``, ...).

    ``k``: neighbour slots of the policy's observation. ``range_m``: communication range;
    neighbours farther than it are not seen (``<=`` is seen, as in the simulator).
    ``stale_after_s`` / ``drop_after_s`` / ``inflate_mps``: see the module docstring (an age
    equal to a limit is still on the near side of it). The table may hold the observer's own
    entry (an aggregated swarm-state message has everyone); the queries leave ``own_name`` out.
    """

    def __init__(self, k: int, range_m: float, stale_after_s: float, drop_after_s: float,
                 inflate_mps: float) -> None:
        if k < 0:
            raise ValueError(f"k: must be >= 0, got {k}")
        for name, value in (("range_m", range_m), ("stale_after_s", stale_after_s),
                            ("drop_after_s", drop_after_s), ("inflate_mps", inflate_mps)):
            if not (_finite_scalar(value) and value >= 0):
                raise ValueError(f"{name}: must be a finite number >= 0, got {value}")
        if drop_after_s < stale_after_s:
            raise ValueError(f"drop_after_s: must be >= stale_after_s ({stale_after_s}), got "
                             f"{drop_after_s}")
        self.k = k
        self.range_m = float(range_m)
        self.stale_after_s = float(stale_after_s)
        self.drop_after_s = float(drop_after_s)
        self.inflate_mps = float(inflate_mps)
        self.rejected: Counter[str] = Counter()
        """Rejected updates by reason (:data:`REJECT_REASONS`)."""
        self._states: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def update(self, name: str, stamp_s: float, pos: np.ndarray, vel: np.ndarray,
               now_s: float | None = None) -> bool:
        """Record ``name``'s state at ``stamp_s`` (world frame, m and m/s). Returns whether it
        was accepted; a rejected update leaves the table as it was and counts its reason.

        With the receiver's clock ``now_s``, a stamp more than ``drop_after_s`` ahead of it is
        rejected (``from_future``). A stamp older than the one held is rejected
        (``out_of_order``) unless it is older by more than ``drop_after_s``: then the sender's
        clock went back (a restarted simulator) and the table starts over with it.
        """
        reason = None
        if not isinstance(name, str) or not name:
            reason = "bad_name"
        pos_arr, why_pos = check_vector(pos)
        vel_arr, why_vel = check_vector(vel)
        if reason is None:
            if "bad_shape" in (why_pos, why_vel):
                reason = "bad_shape"
            elif why_pos or why_vel or not _finite_scalar(stamp_s):
                reason = "nonfinite"
            elif too_large(pos_arr, MAX_POSITION_M):
                reason = "position_implausible"
            elif too_large(vel_arr, MAX_SPEED_MPS):
                reason = "velocity_implausible"
            elif now_s is not None and float(stamp_s) > float(now_s) + self.drop_after_s:
                reason = "from_future"
            elif name in self._states and (
                    self._states[name][0] - self.drop_after_s
                    <= float(stamp_s) < self._states[name][0]):
                reason = "out_of_order"
        if reason is not None:
            self.rejected[reason] += 1
            return False
        self._states[name] = (float(stamp_s), pos_arr, vel_arr)
        return True

    def update_many(self, names: list[str], stamp_s: float, pos: np.ndarray, vel: np.ndarray,
                    now_s: float | None = None) -> np.ndarray:
        """:meth:`update` for every robot of one aggregated message (one stamp; ``pos``,
        ``vel`` (N, 3)); returns the (N,) accepted flags. The checks run on all rows at once;
        a row that does not clearly pass them (or a message of another shape) goes through
        :meth:`update` alone, so every rejection is still counted with its reason."""
        try:
            pos_all = np.array(pos, dtype=float)  # copies: rows stay valid after the caller
            vel_all = np.array(vel, dtype=float)  # reuses its buffers
        except (TypeError, ValueError):
            pos_all = vel_all = np.zeros((0, 0))
        n = len(names)
        if pos_all.shape != (n, 3) or vel_all.shape != (n, 3):
            return np.array([self.update(name, stamp_s, p, v, now_s)
                             for name, p, v in zip(names, pos, vel)], bool)
        stamp_ok = _finite_scalar(stamp_s) and (
            now_s is None or float(stamp_s) <= float(now_s) + self.drop_after_s)
        keep = 1.0 - 1e-9  # stay clear of the limits that too_large decides exactly
        with np.errstate(all="ignore"):
            clear = (np.isfinite(pos_all).all(1) & np.isfinite(vel_all).all(1)
                     & (np.einsum("ij,ij->i", pos_all, pos_all) < (keep * MAX_POSITION_M) ** 2)
                     & (np.einsum("ij,ij->i", vel_all, vel_all) < (keep * MAX_SPEED_MPS) ** 2))
        accepted = []
        stamp = float(stamp_s) if stamp_ok else math.nan
        for name, ok, p, v in zip(names, clear.tolist(), pos_all, vel_all):
            held = self._states.get(name) if isinstance(name, str) else None
            if (stamp_ok and ok and isinstance(name, str) and name
                    and not (held is not None and held[0] - self.drop_after_s <= stamp < held[0])):
                self._states[name] = (stamp, p, v)
                accepted.append(True)
            else:
                accepted.append(self.update(name, stamp_s, p, v, now_s))
        return np.array(accepted, bool)

    def forget(self, name: str) -> None:
        """Drop ``name``'s entry (e.g. a robot that left the swarm)."""
        self._states.pop(name, None)

    def snapshot(self, own_name: str | None, own_pos: np.ndarray, now_s: float
                 ) -> NeighbourSnapshot:
        """Neighbours other than ``own_name`` within ``range_m`` of ``own_pos`` whose stamps
        are within ``drop_after_s`` of ``now_s`` (either side), nearest first, with their ages
        and extra radii."""
        return self.snapshots([own_name], _own_position(own_pos)[None], now_s)[0]

    def snapshots(self, own_names: list[str | None], own_pos: np.ndarray, now_s: float
                  ) -> list[NeighbourSnapshot]:
        """:meth:`snapshot` for several observers at once (the robots one process hosts):
        ``own_pos`` (B, 3) finite positions. One distance matrix for all of them."""
        return list(self.snapshot_stack(own_names, own_pos, now_s).snapshots)

    def snapshot_stack(self, own_names: list[str | None], own_pos: np.ndarray, now_s: float
                       ) -> SnapshotStack:
        """:meth:`snapshots` as one :class:`SnapshotStack`: one distance matrix, one sort and
        one gather for all B observers (``own_pos`` (B, 3) finite, world frame, m); each
        observer's snapshot is a view of its row."""
        if not _finite_scalar(now_s):
            raise ValueError(f"now_s: must be finite, got {now_s}")
        names = sorted(self._states)  # name order: a stable sort then breaks ties by name
        entries = [self._states[name] for name in names]
        stamp = np.array([e[0] for e in entries], dtype=float)
        pos = np.array([e[1] for e in entries], dtype=float).reshape(-1, 3)
        vel = np.array([e[2] for e in entries], dtype=float).reshape(-1, 3)
        age_s = float(now_s) - stamp
        rel = pos[None] - np.asarray(own_pos, float)[:, None]
        dist = np.sqrt(np.add.reduce(rel * rel, axis=-1))  # np.linalg.norm's arithmetic
        keep = (np.abs(age_s) <= self.drop_after_s)[None] & (dist <= self.range_m)
        index = {name: i for i, name in enumerate(names)}
        for b, name in enumerate(own_names):
            if name in index:
                keep[b, index[name]] = False  # the observer itself
        # kept entries first, each row's nearest first (ties by name), the rest after them
        order = np.argsort(np.where(keep, dist, np.inf), axis=-1, kind="stable")
        age_s = np.maximum(age_s, 0.0)
        extra = np.where(age_s > self.stale_after_s, self.inflate_mps * age_s, 0.0)
        count = np.count_nonzero(keep, axis=1)
        return SnapshotStack.gather(names, order, count, pos, vel, age_s, extra, dist)

    def observation_features(self, own_name: str | None, own_pos: np.ndarray,
                             own_vel: np.ndarray, now_s: float
                             ) -> tuple[np.ndarray, np.ndarray]:
        """The policy's neighbour part for the observer at ``own_pos``/``own_vel``: (K, 6)
        features (relative position, relative velocity; zeros where masked) and the (K,) bool
        mask, nearest first, from :func:`sim.observation.nearest_neighbours` on
        :meth:`snapshot` (stale neighbours at their last known state, dropped ones absent)."""
        return self.features(self.snapshot(own_name, own_pos, now_s), own_pos, own_vel)

    def features(self, snap: NeighbourSnapshot, own_pos: np.ndarray, own_vel: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`observation_features` from a :meth:`snapshot` taken at ``own_pos`` (one
        snapshot per tick serves both the policy and the shield)."""
        own = _own_position(own_pos)
        own_v, _ = check_vector(own_vel)
        if own_v is None:
            raise ValueError(f"own_vel: expected 3 finite numbers, got {own_vel!r}")
        feats, mask = self.features_many([snap], own[None], own_v[None])
        return feats[0], mask[0]

    def features_many(self, snaps: list[NeighbourSnapshot], own_pos: np.ndarray,
                      own_vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`features` of several observers, (B, K, 6) and (B, K), in one
        :func:`~sim.observation.nearest_neighbours` call: each snapshot padded to the
        longest, the padding masked out. ``own_pos``/``own_vel`` (B, 3), finite."""
        b, m = len(snaps), max((len(snap) for snap in snaps), default=0)
        rel_pos, rel_vel = np.zeros((b, m, 3)), np.zeros((b, m, 3))
        valid = np.zeros((b, m), bool)
        for i, snap in enumerate(snaps):
            rel_pos[i, :len(snap)] = snap.pos_m - own_pos[i]
            rel_vel[i, :len(snap)] = snap.vel_mps - own_vel[i]
            valid[i, :len(snap)] = True
        return nearest_neighbours(rel_pos, rel_vel, valid, self.k, self.range_m)

    def features_stack(self, stack: SnapshotStack, rows: np.ndarray, own_pos: np.ndarray,
                       own_vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`features_many` of the snapshots ``stack.snapshots[rows]`` (``rows`` (B,)
        int), the same arrays, without a per-observer loop. ``own_pos``/``own_vel`` (B, 3),
        finite, world frame (m, m/s)."""
        count = stack.count[rows]
        m = int(count.max(initial=0))
        valid = np.arange(m) < count[:, None]
        # entries past a row's count (features_many's zero padding) are masked out by
        # nearest_neighbours whatever they hold: their distance counts as inf, features as 0
        return nearest_neighbours(stack.pos_m[rows, :m] - own_pos[:, None],
                                  stack.vel_mps[rows, :m] - own_vel[:, None], valid, self.k,
                                  self.range_m)


def too_large(vector: np.ndarray, limit: float) -> bool:
    """``|vector| >= limit`` for a finite vector, without overflowing on huge entries
    (``math.hypot`` scales internally; also the cheapest call for a 3-vector)."""
    return math.hypot(*np.ravel(vector).tolist()) >= limit


def _finite_scalar(value: object) -> bool:
    try:
        return bool(np.isfinite(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _own_position(own_pos: np.ndarray) -> np.ndarray:
    own, _ = check_vector(own_pos)
    if own is None:
        raise ValueError(f"own_pos: expected 3 finite numbers, got {own_pos!r}")
    return own
