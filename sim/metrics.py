"""Episode metrics of REFERENCE.md section 2 (quad-swarm-rl's definitions).

- success: a drone ends within ``success_radius_m`` of its goal and touched nothing (drone,
  column, floor, wall) after the first ``grace_s`` seconds;
- collisions per drone-minute: contact onsets with another drone or a column, per drone, per
  minute of flight;
- crash rate: share of drones that touched the floor, a wall or the ceiling after the grace;
- distance to goal averaged over the last 1, 3 and 5 s;
- RMS position error after settling: per drone, the root mean square of the distance to the
  goal over the last ``SETTLED_S`` seconds (the settled accuracy of a hover or goal-reaching
  policy), averaged over the drones;
- minimum separation: the smallest centre distance between two drones during the episode.
"""
from __future__ import annotations

import numpy as np

from sim.world import Collisions

WINDOWS_S = (1, 3, 5)
SETTLED_S = 2
"""Window (s) at the end of an episode over which the settled RMS position error is taken."""
SETTLED_RMS_KEY = f"rms_error_last_{SETTLED_S}s_m"


class EpisodeMetrics:
    """Accumulates metrics for E parallel episodes of N drones, one control step at a time."""

    def __init__(self, num_envs: int, num_drones: int, control_hz: int, grace_s: float,
                 success_radius_m: float) -> None:
        self.shape = (num_envs, num_drones)
        self.dt_s = 1.0 / control_hz
        self.grace_s = grace_s
        self.success_radius_m = success_radius_m
        self.history = max(*WINDOWS_S, SETTLED_S) * control_hz
        self.reset()

    def reset(self) -> None:
        e, n = self.shape
        self.t_s = 0.0
        self.steps = 0
        self.dist = np.zeros((self.history, e, n))
        self.in_contact = np.zeros((e, n), bool)
        self.contact_events = np.zeros((e, n))
        self.touched_after_grace = np.zeros((e, n), bool)
        self.crashed_after_grace = np.zeros((e, n), bool)
        self.min_separation_m = np.full(e, np.inf)

    def update(self, goal_dist_m: np.ndarray, collisions: Collisions,
               nearest_m: np.ndarray) -> None:
        self.t_s += self.dt_s
        self.dist[self.steps % self.history] = goal_dist_m
        self.steps += 1
        contact = collisions.drone | collisions.obstacle
        self.contact_events += contact & ~self.in_contact
        self.in_contact = contact
        if self.t_s > self.grace_s:
            self.touched_after_grace |= collisions.any
            self.crashed_after_grace |= collisions.floor | collisions.wall
        self.min_separation_m = np.minimum(self.min_separation_m, nearest_m.min(axis=1))

    def summary(self) -> dict[str, np.ndarray]:
        """Per-environment values (E,) for the episode so far (all NaN before its first
        step, when none is defined)."""
        if not self.steps:
            keys = ("success_rate", "collisions_per_drone_minute", "crash_rate",
                    "min_separation_m", "final_distance_m",
                    *(f"distance_last_{w}s_m" for w in WINDOWS_S), SETTLED_RMS_KEY)
            return {key: np.full(self.min_separation_m.shape[0], np.nan) for key in keys}
        final = self.dist[(self.steps - 1) % self.history]
        success = (final < self.success_radius_m) & ~self.touched_after_grace
        minutes = max(self.t_s, self.dt_s) / 60.0
        out = {
            "success_rate": success.mean(axis=1),
            "collisions_per_drone_minute": self.contact_events.mean(axis=1) / minutes,
            "crash_rate": self.crashed_after_grace.mean(axis=1),
            "min_separation_m": self.min_separation_m,
            "final_distance_m": final.mean(axis=1),
        }
        for w in WINDOWS_S:
            out[f"distance_last_{w}s_m"] = self._last(w).mean(axis=(0, 2))
        rms = np.sqrt((self._last(SETTLED_S) ** 2).mean(axis=0))
        out[SETTLED_RMS_KEY] = rms.mean(axis=1)
        return out

    def _last(self, window_s: float) -> np.ndarray:
        """Distances to the goal (k, E, N) in m over the last ``window_s`` seconds (all steps
        so far when the episode is shorter)."""
        k = min(self.steps, int(round(window_s / self.dt_s)))
        idx = (self.steps - 1 - np.arange(k)) % self.history
        return self.dist[idx]


def aggregate(summaries: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Mean of each metric over all episodes in ``summaries`` (min for min_separation_m)."""
    keys = summaries[0].keys()
    out = {}
    for k in keys:
        values = np.concatenate([np.atleast_1d(s[k]) for s in summaries])
        out[k] = float(values.min() if k == "min_separation_m" else values.mean())
    out["episodes"] = int(sum(len(np.atleast_1d(s["success_rate"])) for s in summaries))
    return out
