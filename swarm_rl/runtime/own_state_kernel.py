"""The robot host's own-state screen compiled (numba): which hosted robots' states certainly
pass :meth:`~swarm_rl.runtime.robot.RobotController._check_own`, in one call.

The screen is conservative by construction: every limit is tightened by a relative margin
(``keep`` < 1) far larger than rounding, so a borderline state is sent to the exact one-robot
check (which names its reason) and a state this screen passes would pass that check. It may
therefore round differently from numpy (the determinant is expanded by cofactors here), and
the commands do not change. In numpy the screen was ~25 calls on (B, 3) arrays, slow right
after a host idles between ticks with its caches gone cold.

Units: m, m/s, rad/s, s; world frame.
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def own_states_pass(pos, vel, rot, omega, age, stale, keep, max_position_m, max_speed_mps,
                    max_body_rate_rad_s, rotation_tol):
    """(B,) True where robot b's state is finite, its position, speed and body rate are
    within ``keep`` times their limits, its attitude is a rotation to ``keep`` times
    ``rotation_tol`` (entries, orthogonality, determinant) and its age is within
    +-``stale[b]``. ``pos``, ``vel``, ``omega`` (B, 3), ``rot`` (B, 3, 3), ``age``, ``stale``
    (B,)."""
    b_count = pos.shape[0]
    ok = np.zeros(b_count, np.bool_)
    for b in range(b_count):
        finite = math.isfinite(age[b])
        for k in range(3):
            finite = (finite and math.isfinite(pos[b, k]) and math.isfinite(vel[b, k])
                      and math.isfinite(omega[b, k]))
            for j in range(3):
                finite = finite and math.isfinite(rot[b, k, j])
        if not finite:
            continue
        p2 = pos[b, 0] * pos[b, 0] + pos[b, 1] * pos[b, 1] + pos[b, 2] * pos[b, 2]
        v2 = vel[b, 0] * vel[b, 0] + vel[b, 1] * vel[b, 1] + vel[b, 2] * vel[b, 2]
        w2 = (omega[b, 0] * omega[b, 0] + omega[b, 1] * omega[b, 1]
              + omega[b, 2] * omega[b, 2])
        if not (p2 < (keep * max_position_m) ** 2 and v2 < (keep * max_speed_mps) ** 2
                and w2 < (keep * max_body_rate_rad_s) ** 2):
            continue
        r = rot[b]
        tol = keep * rotation_tol
        rotation = True
        for i in range(3):
            for j in range(3):
                gram = r[0, i] * r[0, j] + r[1, i] * r[1, j] + r[2, i] * r[2, j]
                if i == j:
                    gram -= 1.0
                rotation = (rotation and abs(r[i, j]) <= 1.0 + tol and abs(gram) <= tol)
        det = (r[0, 0] * (r[1, 1] * r[2, 2] - r[1, 2] * r[2, 1])
               - r[0, 1] * (r[1, 0] * r[2, 2] - r[1, 2] * r[2, 0])
               + r[0, 2] * (r[1, 0] * r[2, 1] - r[1, 1] * r[2, 0]))
        ok[b] = (rotation and abs(det - 1.0) <= tol
                 and age[b] <= stale[b] and age[b] >= -stale[b])
    return ok
