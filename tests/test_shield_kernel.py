"""The shield's compiled stacked pass (swarm_rl/runtime/shield_kernel.py) against numpy
references written the plain way: the same bits, including at the tolerances where a
decision flips (a row within ROW_TOL of binding, a setpoint 1e-9 m/s from the nominal, a
violation at the recheck threshold) and with NaN where numpy's rules decide."""
from __future__ import annotations

import numpy as np
import pytest

from swarm_rl.runtime.shield import (_RECHECK, ROW_TOL, CBFShield, ShieldConfig, ShieldInput,
                                     _reach, _row_dot)
from swarm_rl.runtime.shield_kernel import check_solutions, prune_rows, stacked_qp

CONFIG = ShieldConfig(k_v_per_s=10.0, dt_s=0.02)


def _rows(rng: np.random.Generator, n: int, fewest: int = 0, most: int = 5):
    owner = np.repeat(np.arange(n), rng.integers(fewest, most + 1, n))
    g = rng.normal(size=(owner.size, 3))
    g /= np.linalg.norm(g, axis=1)[:, None]
    return owner, g


def check_solutions_reference(x, lb, ub, g, rhs, own, vel, nominal, k_v, v_max):
    u = np.clip(x, lb, ub)
    g_u = _row_dot(g, u[own])
    worst = np.maximum(np.maximum((lb - u).max(axis=1), (u - ub).max(axis=1)), 0.0)
    np.maximum.at(worst, own, g_u - rhs)
    active = (np.bincount(own[g_u >= rhs - ROW_TOL], minlength=len(x))
              + (u <= lb + ROW_TOL).sum(axis=1) + (u >= ub - ROW_TOL).sum(axis=1))
    v_sp = np.clip(vel + u / k_v, -v_max, v_max)
    intervened = (np.abs(v_sp - nominal) > 1e-9).any(axis=1)
    return u, worst, active, v_sp, intervened


@pytest.mark.parametrize("seed", range(20))
def test_check_solutions_is_the_numpy_checks_at_every_tolerance(seed):
    rng = np.random.default_rng(seed)
    s_count = 6
    own, g = _rows(rng, s_count, fewest=1)
    lb = -rng.uniform(1.0, 5.0, (s_count, 3))
    ub = rng.uniform(1.0, 5.0, (s_count, 3))
    x = rng.uniform(-6.0, 6.0, (s_count, 3))
    on_box = rng.random((s_count, 3)) < 0.3  # solutions on a bound, or within ROW_TOL of it
    x[on_box] = np.where(rng.random(on_box.sum()) < 0.5, lb[on_box], ub[on_box]) + rng.choice(
        [0.0, ROW_TOL, -ROW_TOL, 2 * ROW_TOL, np.nextafter(ROW_TOL, 1)], on_box.sum())
    u = np.clip(x, lb, ub)
    # each robot's rows around their value at u: binding, within tolerance, violated by
    # exactly the recheck threshold, by more, or slack
    offsets = rng.permutation([0.0, ROW_TOL, -ROW_TOL, -_RECHECK, -1e-3, 1.0])
    rhs = _row_dot(g, u[own]) + offsets[own]
    vel = rng.normal(0.0, 1.0, (s_count, 3))
    k_v, v_max = 10.0, 2.0
    nominal = np.clip(vel + u / k_v, -v_max, v_max)  # set off by 0 .. 0.1 m/s on one axis
    nominal[np.arange(s_count), rng.integers(0, 3, s_count)] += rng.permutation(
        [0.0, 1e-9, -1e-9, 2e-9, 0.1, 0.0])
    if seed == 0:
        x[0, 1] = np.nan  # a solver's NaN propagates as numpy's clip propagates it
    got = check_solutions(x, lb, ub, g, rhs, own, vel, nominal, k_v, v_max, ROW_TOL)
    want = check_solutions_reference(x, lb, ub, g, rhs, own, vel, nominal, k_v, v_max)
    for name, a, b in zip(("u", "worst", "active", "v_sp", "intervened"), got, want):
        assert a.tobytes() == b.astype(a.dtype).tobytes(), name
    assert got[4].any() and not got[4].all()
    assert (got[1] > _RECHECK).any() and (got[1] == 0.0).any()


@pytest.mark.parametrize("seed", range(10))
def test_prune_rows_keeps_the_rows_that_can_bind_in_the_box(seed):
    rng = np.random.default_rng(100 + seed)
    n = 8
    owner, g = _rows(rng, n)
    lb = -rng.uniform(0.5, 5.0, (n, 3))
    ub = rng.uniform(0.5, 5.0, (n, 3))
    reach = _reach(g, lb[owner], ub[owner])
    rhs = reach + rng.choice([0.0, 1e-12, -1e-12, 1.0, -1.0], owner.size)
    solve = np.flatnonzero(rng.random(n) < 0.6)
    sel_g, sel_rhs, sel_own, kept, rows = prune_rows(solve, owner, g, rhs, lb, ub)
    member = np.full(n, -1)
    member[solve] = np.arange(solve.size)
    own = member[owner]
    sel = own >= 0
    keep = ~(_reach(g[sel], lb[solve][own[sel]], ub[solve][own[sel]]) <= rhs[sel])
    assert sel_g.tobytes() == g[sel].tobytes() and sel_rhs.tobytes() == rhs[sel].tobytes()
    assert (sel_own == own[sel]).all() and (kept == keep).all()
    assert (rows == np.bincount(own[sel][keep], minlength=solve.size)).all()


def test_stacked_qp_is_build_qp_of_each_robot_and_its_screen():
    """Rows, bounds, gains and barrier values bit for bit those of build_qp, in a crowd with
    robots inside each other's safety distance, at the floor and one with a fixed gain."""
    rng = np.random.default_rng(7)
    n = 12
    pos = np.c_[rng.uniform(-0.6, 0.6, (n, 2)), rng.uniform(0.15, 1.35, n)]
    vel = rng.normal(0.0, 1.5, (n, 3))
    nominal = rng.normal(0.0, 1.5, (n, 3))
    nominal[:3] = 0.0
    pos[0], pos[1] = pos[2], pos[2]  # coincident robots
    shields = [CBFShield(CONFIG) for _ in range(n)]
    shields[4].gamma = 3.0
    owner, nb_pos, nb_vel, extra = [], [], [], []
    for i in range(n):
        others = np.flatnonzero(np.arange(n) != i)[: rng.integers(0, n)]
        owner += [i] * len(others)
        nb_pos.append(pos[others])
        nb_vel.append(vel[others])
        extra.append(rng.uniform(-0.05, 0.15, len(others)))
    owner = np.array(owner, np.int64)
    nb_pos, nb_vel, extra = (np.concatenate(a) for a in (nb_pos, nb_vel, extra))
    ref = shields[0]
    fixed = np.array([sh.gamma if sh.gamma is not None else np.nan for sh in shields])
    c = CONFIG
    g, rhs, u_nom, lb, ub, gamma, min_h, well, fast, active = stacked_qp(
        pos, vel, nominal, owner, nb_pos, nb_vel, extra, fixed, ref._lo, ref._lo_axes, ref._hi,
        ref._hi_axes, c.safety_distance_m, ref._a_sum, c.agent_responsibility, c.a_max_mps2,
        c.k_v_per_s, c.v_max_mps, c.gamma, c.gamma_min, c.density_slope, c.density_radius_m,
        1e-3, 1e-9, ROW_TOL)
    for i, sh in enumerate(shields):
        mine = owner == i
        inp = ShieldInput(pos[i], vel[i], nominal[i], nb_pos[mine], nb_vel[mine], extra[mine])
        want_gamma = sh.gamma_for(inp)
        qp = sh.build_qp(inp, want_gamma)
        assert gamma[i] == want_gamma
        assert g[mine].tobytes() == qp.g.tobytes() and rhs[mine].tobytes() == qp.rhs.tobytes()
        for name, a, b in (("u_nom", u_nom[i], qp.u_nom), ("lb", lb[i], qp.lb),
                           ("ub", ub[i], qp.ub)):
            assert a.tobytes() == b.tobytes(), (i, name)
        assert min_h[i] == qp.barrier.min()
        g_u = _row_dot(qp.g, qp.u_nom)
        assert well[i]
        assert fast[i] == bool((qp.rhs - g_u >= 0).all() and (qp.lb <= qp.u_nom).all()
                               and (qp.u_nom <= qp.ub).all())
        assert active[i] == (np.count_nonzero(g_u >= qp.rhs - ROW_TOL)
                             + np.count_nonzero(qp.u_nom <= qp.lb + ROW_TOL)
                             + np.count_nonzero(qp.u_nom >= qp.ub - ROW_TOL))
    assert fast.any() and not fast.all() and (min_h < 0).any()
