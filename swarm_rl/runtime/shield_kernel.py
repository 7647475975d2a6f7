"""The CBF shield's stacked pass compiled (numba): every hosted robot's QP rows and bounds and
the fast-path screen in one call.

:func:`swarm_rl.runtime.shield._screen` used to build the stacked QP with some 70 numpy calls
on arrays of a few dozen rows. Each call costs microseconds of dispatch, and far more in a
robot host, whose caches go cold in the ~16 ms it idles between 50 Hz ticks: there the numpy
pass took about as long as the rest of the shield. This kernel loops over the rows instead.

It computes exactly what :meth:`~swarm_rl.runtime.shield.CBFShield.build_qp` computes for each
robot alone (no columns), with the same IEEE operations in the same order: the dot products
are written out (:func:`~swarm_rl.runtime.shield._dot_rows`, as ``build_qp`` now computes them
too), ``np.maximum`` / ``np.minimum`` keep numpy's NaN and signed-zero rules
(:func:`_max`, :func:`_min`), and ``h ** 3`` is ``pow`` as numpy's. So the stacked and the
single-robot shield give the same bits (``tests/test_shield_stacked.py``).

Units: positions m, velocities m/s, accelerations m/s^2, world frame; gains s/m^2.
"""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _max(a: float, b: float) -> float:
    """``np.maximum(a, b)``: a NaN of either wins; of two equal values (0.0, -0.0), ``b``."""
    return a if (a > b or a != a) else b


@numba.njit(cache=True, inline="always")
def _min(a: float, b: float) -> float:
    """``np.minimum(a, b)``, with the same rules as :func:`_max`."""
    return a if (a < b or a != a) else b


@numba.njit(cache=True, inline="always")
def _terms(gap: float, v_r: float, a_sum: float, floor: float) -> tuple[float, float]:
    """``shield._barrier_terms`` of one row: h and the rate term of its bound."""
    root = math.sqrt(2.0 * a_sum * abs(gap))
    h = math.copysign(root, gap) + v_r
    return h, a_sum * v_r / _max(root, floor)


@numba.njit(cache=True)
def stacked_qp(pos, vel, nominal, owner, nb_pos, nb_vel, extra, fixed_gamma,
               lo, lo_axes, hi, hi_axes, safety_m, a_sum, share, a_max, k_v, v_max,
               gamma0, gamma_min, density_slope, density_radius_m, min_gap_m, min_dist_m,
               row_tol):
    """Every robot's QP and its fast-path screen.

    ``pos``, ``vel``, ``nominal`` (n, 3): own states and nominal setpoints; ``owner`` (R,),
    ``nb_pos``, ``nb_vel`` (R, 3), ``extra`` (R,): the neighbour rows, robot after robot;
    ``fixed_gamma`` (n,): a robot's gain where set, NaN for the density rule; ``lo`` /
    ``hi``: the finite position bounds on the axes ``lo_axes`` / ``hi_axes``. The rest are
    the shield config's scalars (``a_sum``: a_i + a_j; ``share``: the agent responsibility).

    Returns ``g`` (R, 3), ``rhs`` (R,), ``u_nom``, ``lb``, ``ub`` (n, 3), ``gamma``,
    ``min_h`` (n,), ``well`` (n,) (no NaN in the QP), ``fast`` (n,) (well, and the nominal
    acceleration meets every row and bound) and ``active`` (n,) (rows and bounds within
    ``row_tol`` of binding at the nominal acceleration).
    """
    n, rows = pos.shape[0], owner.shape[0]
    near = np.zeros(n, np.int64)
    r2 = density_radius_m ** 2
    for r in range(rows):
        i = owner[r]
        d0 = nb_pos[r, 0] - pos[i, 0]
        d1 = nb_pos[r, 1] - pos[i, 1]
        d2 = nb_pos[r, 2] - pos[i, 2]
        if d0 * d0 + d1 * d1 + d2 * d2 <= r2:
            near[i] += 1
    gamma = np.empty(n)
    for i in range(n):
        gamma[i] = (fixed_gamma[i] if fixed_gamma[i] == fixed_gamma[i]
                    else _max(gamma_min, gamma0 / (1.0 + density_slope * near[i])))
    floor_pair = math.sqrt(2.0 * min_gap_m) * math.sqrt(a_sum)
    g = np.empty((rows, 3))
    rhs = np.empty(rows)
    min_h = np.full(n, np.inf)
    for r in range(rows):
        i = owner[r]
        dp0 = pos[i, 0] - nb_pos[r, 0]
        dp1 = pos[i, 1] - nb_pos[r, 1]
        dp2 = pos[i, 2] - nb_pos[r, 2]
        dv0 = vel[i, 0] - nb_vel[r, 0]
        dv1 = vel[i, 1] - nb_vel[r, 1]
        dv2 = vel[i, 2] - nb_vel[r, 2]
        d = math.sqrt(dp0 * dp0 + dp1 * dp1 + dp2 * dp2)
        if d < min_dist_m:
            nrm0, nrm1, nrm2 = 1.0, 0.0, 0.0
        else:
            nrm0, nrm1, nrm2 = dp0 / d, dp1 / d, dp2 / d
        v_r = nrm0 * dv0 + nrm1 * dv1 + nrm2 * dv2
        tangential = _max(dv0 * dv0 + dv1 * dv1 + dv2 * dv2 - v_r * v_r, 0.0)
        h, rate = _terms(d - (safety_m + _max(extra[r], 0.0)), v_r, a_sum, floor_pair)
        b_over_d = gamma[i] * math.pow(h, 3.0) + rate + tangential / _max(d, min_gap_m)
        g[r, 0], g[r, 1], g[r, 2] = -nrm0, -nrm1, -nrm2
        rhs[r] = share * b_over_d
        min_h[i] = _min(min_h[i], h)
    u_nom = np.empty((n, 3))
    lb = np.empty((n, 3))
    ub = np.empty((n, 3))
    floor_bound = math.sqrt(2.0 * min_gap_m) * math.sqrt(a_max)
    for i in range(n):
        for k in range(3):
            u_nom[i, k] = k_v * (nominal[i, k] - vel[i, k])
            ub[i, k] = _min(a_max, _max(-a_max, k_v * (v_max - vel[i, k])))
            lb[i, k] = _max(-a_max, _min(a_max, k_v * (-v_max - vel[i, k])))
        bound_h = np.inf
        for j in range(lo_axes.shape[0]):
            k = lo_axes[j]
            h, rate = _terms(pos[i, k] - lo[j], vel[i, k], a_max, floor_bound)
            lb[i, k] = _max(lb[i, k], -(gamma[i] * math.pow(h, 3.0) + rate))
            bound_h = _min(bound_h, h)
        for j in range(hi_axes.shape[0]):
            k = hi_axes[j]
            h, rate = _terms(hi[j] - pos[i, k], -vel[i, k], a_max, floor_bound)
            ub[i, k] = _min(ub[i, k], gamma[i] * math.pow(h, 3.0) + rate)
            bound_h = _min(bound_h, h)
        min_h[i] = _min(min_h[i], bound_h)
    well = np.ones(n, np.bool_)
    fast = np.ones(n, np.bool_)
    active = np.zeros(n, np.int64)
    for r in range(rows):
        i = owner[r]
        g_u = g[r, 0] * u_nom[i, 0] + g[r, 1] * u_nom[i, 1] + g[r, 2] * u_nom[i, 2]
        if not (math.isfinite(g[r, 0]) and math.isfinite(g[r, 1]) and math.isfinite(g[r, 2])
                and rhs[r] == rhs[r]):
            well[i] = False
        if not (rhs[r] - g_u >= 0):
            fast[i] = False
        if g_u >= rhs[r] - row_tol:
            active[i] += 1
    for i in range(n):
        for k in range(3):
            if not math.isfinite(u_nom[i, k]) or lb[i, k] != lb[i, k] or ub[i, k] != ub[i, k]:
                well[i] = False
            if not (lb[i, k] <= u_nom[i, k] and u_nom[i, k] <= ub[i, k]):
                fast[i] = False
            if u_nom[i, k] <= lb[i, k] + row_tol:
                active[i] += 1
            if u_nom[i, k] >= ub[i, k] - row_tol:
                active[i] += 1
        fast[i] = fast[i] and well[i]
    return g, rhs, u_nom, lb, ub, gamma, min_h, well, fast, active


@numba.njit(cache=True)
def prune_rows(solve, owner, g, rhs, lb, ub):
    """The rows of the robots ``solve`` (S,) (increasing) that can bind somewhere in their
    box: ``shield._reach`` of a row above its bound. ``owner`` (R,), ``g`` (R, 3), ``rhs``
    (R,) are every robot's rows, ``lb``, ``ub`` (n, 3) every robot's box.

    Returns the solving robots' rows ``sel_g`` (Rs, 3), ``sel_rhs`` (Rs,), ``sel_own`` (Rs,)
    (the row's index into ``solve``), which of them are ``kept`` (Rs,), and ``rows`` (S,),
    each robot's kept rows."""
    member = np.full(lb.shape[0], -1, np.int64)
    for s in range(solve.shape[0]):
        member[solve[s]] = s
    count = 0
    for r in range(owner.shape[0]):
        if member[owner[r]] >= 0:
            count += 1
    sel_g = np.empty((count, 3))
    sel_rhs = np.empty(count)
    sel_own = np.empty(count, np.int64)
    kept = np.empty(count, np.bool_)
    rows = np.zeros(solve.shape[0], np.int64)
    j = 0
    for r in range(owner.shape[0]):
        s = member[owner[r]]
        if s < 0:
            continue
        i = solve[s]
        reach = 0.0
        for k in range(3):
            sel_g[j, k] = g[r, k]
            corner = _max(g[r, k] * lb[i, k], g[r, k] * ub[i, k])
            reach = corner if k == 0 else reach + corner
        sel_rhs[j] = rhs[r]
        sel_own[j] = s
        kept[j] = not (reach <= rhs[r])
        if kept[j]:
            rows[s] += 1
        j += 1
    return sel_g, sel_rhs, sel_own, kept, rows


@numba.njit(cache=True)
def check_solutions(x, lb, ub, g, rhs, own, vel, nominal, k_v, v_max, row_tol):
    """The solving stage's checks for S solutions ``x`` (S, 3) of boxes ``lb``, ``ub`` (S, 3)
    and rows ``g`` (Rs, 3), ``rhs`` (Rs,) of robot ``own`` (Rs,) (all their rows, pruned or
    not): ``u`` = x clipped to the box, the ``worst`` violation of a bound or row at u (>= 0),
    the ``active`` rows and bounds (within ``row_tol``), the setpoint ``v_sp`` = vel + u / k_v
    clipped to +-v_max (``vel``, ``nominal`` (S, 3) m/s), and whether it ``intervened``
    (differs from the nominal by more than 1e-9 m/s on an axis)."""
    s_count = x.shape[0]
    u = np.empty((s_count, 3))
    v_sp = np.empty((s_count, 3))
    worst = np.empty(s_count)
    active = np.zeros(s_count, np.int64)
    intervened = np.zeros(s_count, np.bool_)
    for s in range(s_count):
        below = -np.inf
        above = -np.inf
        for k in range(3):
            u[s, k] = _min(_max(x[s, k], lb[s, k]), ub[s, k])
            below = _max(below, lb[s, k] - u[s, k]) if k else lb[s, k] - u[s, k]
            above = _max(above, u[s, k] - ub[s, k]) if k else u[s, k] - ub[s, k]
            if u[s, k] <= lb[s, k] + row_tol:
                active[s] += 1
            if u[s, k] >= ub[s, k] - row_tol:
                active[s] += 1
            v = vel[s, k] + u[s, k] / k_v
            v_sp[s, k] = _min(_max(v, -v_max), v_max)
            if abs(v_sp[s, k] - nominal[s, k]) > 1e-9:
                intervened[s] = True
        worst[s] = _max(_max(below, above), 0.0)
    for r in range(own.shape[0]):
        s = own[r]
        g_u = g[r, 0] * u[s, 0] + g[r, 1] * u[s, 1] + g[r, 2] * u[s, 2]
        worst[s] = _max(worst[s], g_u - rhs[r])
        if g_u >= rhs[r] - row_tol:
            active[s] += 1
    return u, worst, active, v_sp, intervened
