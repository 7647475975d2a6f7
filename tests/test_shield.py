"""The decentralised CBF shield (swarm_rl/runtime/shield.py).

Adversarial closed-loop trials: each robot runs its OWN shield on what it observes (its own
state, the others' current states, the column map); the velocity setpoint is tracked by a
first-order lag v' = (v_sp - v) / TAU (the model behind the shield's k_v = 1 / TAU), integrated
exactly at 100 Hz with the shield at 50 Hz. Tolerance: a distance may fall short of its limit
by at most 2 % of the safety distance (6 mm), for discretisation (the barrier is a
continuous-time argument, the setpoint is held for a control period and the lag lets the
acceleration decay within it).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from swarm_rl.runtime.shield import (ROW_TOL, CBFShield, ShieldConfig, ShieldInput,
                                     ShieldStatus, _barrier_rows, _barrier_terms, filter_many)

TAU_S = 0.1
PHYSICS_DT_S = 0.01
SHIELD_EVERY = 2  # shield at 50 Hz
CONFIG = ShieldConfig(k_v_per_s=1.0 / TAU_S, dt_s=PHYSICS_DT_S * SHIELD_EVERY)
TOL_M = 0.02 * CONFIG.safety_distance_m


def _nominal(p, goal, speed, slow_radius_m):
    """Go-to-goal velocity: ``speed`` towards the goal, slowing linearly inside the radius."""
    err = goal - p
    dist = np.linalg.norm(err)
    return speed * err / max(dist, 1e-9) * min(1.0, dist / slow_radius_m)


def _simulate(start, goal, speed, centres, radii, duration_s=4.0, check_nominal=False,
              slow_radius_m=0.3, flying_start=False):
    """Closed loop from rest (or, ``flying_start``, at the nominal velocity); returns (min
    pairwise distance, min column clearance, min distance to a position bound, number of
    fallback ticks, final positions)."""
    n = len(start)
    p, v_sp = start.copy(), np.zeros_like(start)
    v = np.zeros_like(start)
    if flying_start:
        v = np.array([_nominal(p[i], goal[i], speed[i], slow_radius_m) for i in range(n)])
    shields = [CBFShield(CONFIG, centres, radii) for _ in range(n)]
    decay = np.exp(-PHYSICS_DT_S / TAU_S)
    lo, hi = CONFIG.lower_bounds_m, CONFIG.upper_bounds_m
    has_lo, has_hi = np.isfinite(lo), np.isfinite(hi)
    min_sep = min_col = min_bound = np.inf
    fallbacks = 0
    for step in range(int(round(duration_s / PHYSICS_DT_S))):
        if step % SHIELD_EVERY == 0:
            for i in range(n):
                v_nom = _nominal(p[i], goal[i], speed[i], slow_radius_m)
                others = np.arange(n) != i
                out = shields[i].filter(ShieldInput(p[i], v[i], v_nom, p[others], v[others]))
                assert np.isfinite(out.velocity_setpoint_mps).all()
                assert (np.abs(out.velocity_setpoint_mps) <= CONFIG.v_max_mps).all()
                if check_nominal:
                    assert not out.intervened and out.status is ShieldStatus.OK
                    np.testing.assert_allclose(out.velocity_setpoint_mps, v_nom, rtol=0,
                                               atol=1e-9)
                fallbacks += out.fallback
                v_sp[i] = out.velocity_setpoint_mps
        p = p + v_sp * PHYSICS_DT_S + (v - v_sp) * TAU_S * (1.0 - decay)
        v = v_sp + (v - v_sp) * decay
        if n > 1:
            d = np.linalg.norm(p[:, None] - p[None], axis=-1)
            min_sep = min(min_sep, d[~np.eye(n, dtype=bool)].min())
        if len(centres):
            clear = np.linalg.norm(p[:, None, :2] - centres[None], axis=-1) - radii[None]
            min_col = min(min_col, clear.min())
        min_bound = min(min_bound, (p[:, has_lo] - lo[has_lo]).min(),
                        (hi[has_hi] - p[:, has_hi]).min())
    return min_sep, min_col, min_bound, fallbacks, p


def _trial(rng: np.random.Generator, kind: str):
    """2-8 robots on a circle sent to the antipodes (head-on through the centre); ``column``:
    a column in the way; ``wall``: the circle next to the geofence, half of the robots sent
    through it and one into the floor."""
    n = int(rng.integers(2, 9))
    radius = rng.uniform(1.0, 2.0)
    angle = rng.uniform(0, 2 * np.pi) + np.arange(n) * 2 * np.pi / n
    start = np.stack([radius * np.cos(angle), radius * np.sin(angle),
                      rng.uniform(0.8, 1.6) + rng.uniform(-0.05, 0.05, n)], axis=1)
    start[:, :2] += rng.uniform(-0.05, 0.05, (n, 2))
    goal = start * np.array([-1.0, -1.0, 1.0])
    speed = rng.uniform(0.8, 1.5, n)
    centres, radii = np.zeros((0, 2)), np.zeros(0)
    if kind == "column":
        centres, radii = rng.uniform(-0.1, 0.1, (1, 2)), np.array([rng.uniform(0.1, 0.3)])
    elif kind == "wall":
        shift = np.array([CONFIG.geofence_upper_m[0] - radius - 0.4, 0.0, 0.0])
        start, goal = start + shift, goal + shift
        goal[rng.permutation(n)[:max(1, n // 2)], 0] = CONFIG.geofence_upper_m[0] + 2.0
        goal[rng.integers(n), 2] = -1.0
    return _simulate(start, goal, speed, centres, radii)


def test_adversarial_trials_keep_every_distance():
    rng = np.random.default_rng(20261123)
    worst = {"pair": np.inf, "column": np.inf, "bound": np.inf}
    trials_with_fallback = 0
    for k in range(100):
        kind = ("swap", "column", "wall")[k % 3]
        min_sep, min_col, min_bound, fallbacks, _ = _trial(rng, kind)
        assert min_sep >= CONFIG.safety_distance_m - TOL_M, (k, kind, min_sep)
        assert min_col >= CONFIG.obstacle_clearance_m - TOL_M, (k, kind, min_col)
        assert min_bound >= -TOL_M, (k, kind, min_bound)
        worst = {"pair": min(worst["pair"], min_sep), "column": min(worst["column"], min_col),
                 "bound": min(worst["bound"], min_bound)}
        trials_with_fallback += fallbacks > 0
    print(f"worst distances {worst}; trials with a braking fallback: {trials_with_fallback}/100")
    assert trials_with_fallback <= 15  # crowds can make a QP infeasible; not the rule


def test_no_intervention_when_far_apart():
    """Four robots flying in formation 1.5 m apart, far from walls, with a nominal command
    whose acceleration stays inside the box: every tick's output is the nominal setpoint
    (1e-9), and they arrive. (A nominal step asking for more than a_max is rate-limited by the
    acceleration box: that is an intervention.)"""
    start = np.array([[x, y, 1.5] for x in (-2.0, -0.5) for y in (-0.75, 0.75)])
    goal = start + np.array([3.0, 0.5, 0.3])
    *_, p_end = _simulate(start, goal, np.full(4, 1.2), np.zeros((0, 2)), np.zeros(0),
                          duration_s=5.0, check_nominal=True, slow_radius_m=1.0,
                          flying_start=True)
    assert np.linalg.norm(p_end - goal, axis=1).max() < 0.05


def test_single_tick_far_neighbour_is_untouched():
    shield = CBFShield(CONFIG)
    inp = ShieldInput([0, 0, 1.5], [1.0, 0, 0], [1.2, 0.1, 0], [[3.5, 0, 1.5]], [[-0.5, 0, 0]])
    out = shield.filter(inp)
    assert out.status is ShieldStatus.OK and not out.intervened and not out.fallback
    assert out.solve_time_us == 0.0 and out.num_rows == 0
    np.testing.assert_array_equal(out.velocity_setpoint_mps, inp.nominal_velocity_mps)


# -- the barrier: h and b consistent, responsibility split ------------------------------------

@pytest.mark.parametrize("dim", [3, 2])
def test_barrier_row_is_the_derivative_of_h(dim):
    """The bound's gamma-free part is exactly h' - n.(u_i - u_j) (finite differences), on both
    sides of the safety distance: h and b come from one square root (REFERENCE section 6)."""
    rng = np.random.default_rng(1)
    a_sum, safety = 8.0, 0.3
    for _ in range(200):
        dp = rng.uniform(-1.5, 1.5, dim)
        if abs(np.linalg.norm(dp) - safety) < 0.02:
            continue
        dv, du = rng.uniform(-2, 2, dim), rng.uniform(-4, 4, dim)
        n, rhs, h = _barrier_rows(dp[None], dv[None], np.array([safety]), a_sum, 1.0, 0.0)
        eps = 1e-6
        _, _, h_next = _barrier_rows((dp + dv * eps + 0.5 * du * eps**2)[None],
                                     (dv + du * eps)[None], np.array([safety]), a_sum, 1.0, 0.0)
        h_dot = (h_next[0] - h[0]) / eps
        assert h_dot == pytest.approx(rhs[0] + n[0] @ du, rel=1e-4, abs=1e-4)


def test_position_bound_barrier_is_the_derivative_of_h():
    rng = np.random.default_rng(2)
    for _ in range(100):
        gap, vel, acc = rng.uniform(0.01, 2.0), rng.uniform(-2, 2), rng.uniform(-4, 4)
        h, rate = _barrier_terms(np.array([gap]), np.array([vel]), 4.0)
        eps = 1e-7
        h_next, _ = _barrier_terms(np.array([gap + vel * eps]), np.array([vel + acc * eps]), 4.0)
        assert (h_next[0] - h[0]) / eps == pytest.approx(rate[0] + acc, rel=1e-4, abs=1e-4)


def test_pairwise_rows_split_by_responsibility():
    """Robot i's row and robot j's row (each from its own shield) add up to the pairwise
    constraint -n.(u_i - u_j) <= b / d, half each for identical robots."""
    shield = CBFShield(CONFIG)
    p_i, v_i = np.array([0.0, 0.0, 1.0]), np.array([0.8, 0.1, 0.0])
    p_j, v_j = np.array([0.9, 0.3, 1.1]), np.array([-0.7, 0.0, 0.05])
    qi = shield.build_qp(ShieldInput(p_i, v_i, v_i, [p_j], [v_j]), 1.0)
    qj = shield.build_qp(ShieldInput(p_j, v_j, v_j, [p_i], [v_i]), 1.0)
    np.testing.assert_allclose(qi.g[0], -qj.g[0])
    assert qi.rhs[0] == pytest.approx(qj.rhs[0])
    n, full, _ = _barrier_rows((p_i - p_j)[None], (v_i - v_j)[None],
                               np.array([CONFIG.safety_distance_m]), 2 * CONFIG.a_max_mps2,
                               1.0, 1.0)
    assert CONFIG.agent_responsibility == 0.5 and CONFIG.obstacle_responsibility == 1.0
    assert qi.rhs[0] + qj.rhs[0] == pytest.approx(full[0])


def test_stale_neighbour_extra_radius_is_more_conservative():
    shield = CBFShield(CONFIG)
    args = ([0, 0, 1], [1.0, 0, 0], [1.0, 0, 0], [[0.7, 0, 1]], [[0.0, 0, 0]])
    fresh = shield.build_qp(ShieldInput(*args), 1.0)
    stale = shield.build_qp(ShieldInput(*args, neighbour_extra_radius_m=[0.3]), 1.0)
    negative = shield.build_qp(ShieldInput(*args, neighbour_extra_radius_m=[-0.3]), 1.0)
    assert stale.barrier[0] < fresh.barrier[0] and stale.rhs[0] < fresh.rhs[0]
    assert negative.rhs[0] == fresh.rhs[0]  # a negative extra radius counts as 0
    v_fresh = shield.filter(ShieldInput(*args)).velocity_setpoint_mps
    v_stale = shield.filter(ShieldInput(*args, neighbour_extra_radius_m=[0.3]))
    assert v_stale.velocity_setpoint_mps[0] < v_fresh[0]


# -- faults ------------------------------------------------------------------------------------

def test_infeasible_brakes_and_flags():
    """Already inside the safety distance and closing fast: no acceleration in the box can
    satisfy the row, so the robot brakes along -v (no reversal) and says why."""
    shield = CBFShield(CONFIG)
    v = np.array([1.5, 0.0, 0.0])
    out = shield.filter(ShieldInput([0, 0, 1], v, v, [[0.28, 0, 1]], [[-1.5, 0, 0]]))
    assert out.status is ShieldStatus.INFEASIBLE and out.fallback and out.violated
    assert out.reason == "infeasible" and out.intervened
    np.testing.assert_allclose(out.acceleration_mps2, [-CONFIG.brake_accel_mps2, 0, 0])
    assert 0.0 <= out.velocity_setpoint_mps[0] < v[0]


def test_violated_but_feasible_is_solved_and_flagged():
    """Just inside the safety distance at rest: h < 0, the QP is feasible and pushes apart."""
    shield = CBFShield(CONFIG)
    out = shield.filter(ShieldInput([0, 0, 1], np.zeros(3), np.zeros(3), [[0.29, 0, 1]],
                                    [[0.0, 0, 0]]))
    assert out.status is ShieldStatus.VIOLATED and not out.fallback and out.violated
    assert out.reason == "violated" and out.intervened
    assert out.acceleration_mps2[0] < 0 and out.velocity_setpoint_mps[0] < 0


def test_brake_with_nonfinite_velocity_hovers():
    out = CBFShield(CONFIG).filter(ShieldInput([0, 0, 1], [np.nan, 0, 0], [1, 0, 0]))
    assert out.status is ShieldStatus.NONFINITE_INPUT and out.fallback
    np.testing.assert_array_equal(out.velocity_setpoint_mps, np.zeros(3))


def test_shape_errors_name_the_field():
    with pytest.raises(ValueError, match="neighbour_velocities_mps"):
        ShieldInput(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="k_v_per_s"):
        ShieldConfig(k_v_per_s=100.0, dt_s=0.02)
    with pytest.raises(ValueError, match="safety_distance_m"):
        ShieldConfig(safety_distance_m=float("nan"))


# -- gamma -------------------------------------------------------------------------------------

def test_density_gamma_decreases_with_neighbours():
    shield = CBFShield(CONFIG)
    values = [shield.density_gamma(k) for k in range(30)]
    assert values[0] == CONFIG.gamma
    assert all(b <= a for a, b in zip(values, values[1:]))
    above_floor = [g for g in values if g > CONFIG.gamma_min]
    assert len(above_floor) > 3
    assert all(b < a for a, b in zip(above_floor, above_floor[1:]))
    assert values[-1] == CONFIG.gamma_min


def test_gamma_priority_override_then_set_then_density():
    shield = CBFShield(CONFIG)
    near = ShieldInput([0, 0, 1], np.zeros(3), np.zeros(3), [[1.0, 0, 1], [0, 1.0, 1]],
                       np.zeros((2, 3)))
    assert shield.gamma is None
    assert shield.gamma_for(near) == shield.density_gamma(2) < CONFIG.gamma
    shield.gamma = 3.0
    assert shield.gamma_for(near) == 3.0
    near.gamma = 0.7
    assert shield.gamma_for(near) == 0.7 and shield.filter(near).gamma == 0.7
    shield.gamma = 1e9
    assert shield.gamma == CONFIG.gamma_max
    with pytest.raises(ValueError, match="gamma"):
        shield.gamma = -1.0
    shield.gamma = None
    near.gamma = None
    assert shield.gamma_for(near) == shield.density_gamma(2)


# -- property-based: the QP layer ------------------------------------------------------------

_F = dict(allow_nan=False, allow_infinity=False)


@st.composite
def shield_inputs(draw):
    m = draw(st.integers(0, 10))
    c = draw(st.integers(0, 4))
    vec = lambda lo, hi, shape: draw(hnp.arrays(np.float64, shape,  # noqa: E731
                                                elements=st.floats(lo, hi, **_F)))
    if draw(st.booleans()):  # inside the geofence, or anywhere around it
        pos = vec(-4.0, 4.0, 3) * np.array([1.0, 1.0, 0.35]) + np.array([0.0, 0.0, 1.8])
    else:
        pos = vec(-6.0, 6.0, 3) + np.array([0.0, 0.0, 1.5])
    near = draw(st.booleans())  # crowd the neighbours around the robot half of the time
    nb = pos + vec(-1.5, 1.5, (m, 3)) if near else vec(-5.0, 5.0, (m, 3))
    return ShieldInput(pos, vec(-3.0, 3.0, 3), vec(-3.0, 3.0, 3), nb, vec(-3.0, 3.0, (m, 3)),
                       vec(0.0, 0.5, m), pos[:2] + vec(-2.0, 2.0, (c, 2)), vec(0.05, 0.4, c),
                       draw(st.one_of(st.none(), st.floats(0.01, 50.0, **_F))))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(shield_inputs())
def test_random_inputs_give_safe_finite_output(inp):
    shield = CBFShield(CONFIG)
    out = shield.filter(inp)
    assert np.isfinite(out.velocity_setpoint_mps).all()
    assert np.isfinite(out.acceleration_mps2).all()
    assert (np.abs(out.velocity_setpoint_mps) <= CONFIG.v_max_mps).all()
    if out.fallback:
        assert out.status in (ShieldStatus.INFEASIBLE, ShieldStatus.SOLVER_ERROR)
        assert out.intervened
        return
    qp = shield.build_qp(inp, out.gamma)
    u = out.acceleration_mps2
    assert (qp.g @ u <= qp.rhs + ROW_TOL).all()
    assert (qp.lb - ROW_TOL <= u).all() and (u <= qp.ub + ROW_TOL).all()
    assert (out.status is ShieldStatus.VIOLATED) == (out.min_barrier < 0)
    if not out.intervened:
        np.testing.assert_allclose(out.velocity_setpoint_mps, inp.nominal_velocity_mps,
                                   atol=1e-9, rtol=0)


_FIELDS = ("position_m", "velocity_mps", "nominal_velocity_mps", "neighbour_positions_m",
           "neighbour_velocities_mps", "neighbour_extra_radius_m", "column_centres_m",
           "column_radii_m", "gamma")


@settings(max_examples=150, deadline=None, derandomize=True)
@given(shield_inputs(), st.sampled_from(_FIELDS), st.sampled_from([np.nan, np.inf, -np.inf]),
       st.integers(0, 100))
def test_nonfinite_inputs_brake(inp, name, bad, where):
    value = getattr(inp, name)
    if name == "gamma":
        inp.gamma = bad
    else:
        if value.size == 0:
            return
        value = value.copy()
        value.flat[where % value.size] = bad
        setattr(inp, name, value)
    out = CBFShield(CONFIG).filter(inp)
    assert out.status is ShieldStatus.NONFINITE_INPUT and out.fallback
    assert out.reason == "nonfinite_input"
    assert np.isfinite(out.velocity_setpoint_mps).all()
    assert (np.abs(out.velocity_setpoint_mps) <= CONFIG.v_max_mps).all()
    if np.isfinite(inp.velocity_mps).all():  # braking never speeds up or reverses
        assert np.all(np.abs(out.velocity_setpoint_mps) <= np.abs(inp.velocity_mps) + 1e-12)
        assert np.all(out.velocity_setpoint_mps * inp.velocity_mps >= 0)


def test_runtime_protocol_call():
    """``CBFShield`` is the runtime's ``VelocityShield``: (setpoint, diagnostics mapping)."""
    shield = CBFShield(CONFIG, np.array([[1.0, 0.0]]), np.array([0.2]))
    v_sp, info = shield(np.array([0, 0, 1.0]), np.array([1.5, 0, 0]), np.array([1.5, 0, 0]),
                        np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))
    assert v_sp.shape == (3,) and v_sp[0] < 1.5  # the column ahead slows it
    assert info["intervened"] is True and info["fallback"] is False
    assert {"reason", "min_barrier", "gamma", "solve_time_us", "active_constraints"} <= set(info)


def test_imports_neither_torch_nor_pybullet():
    code = ("import sys, swarm_rl.runtime.shield, swarm_rl.runtime.qp; "
            "bad = [m for m in ('torch', 'pybullet') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def _same_output(a, b) -> None:
    """Equal ShieldOutputs up to the timings."""
    np.testing.assert_array_equal(a.velocity_setpoint_mps, b.velocity_setpoint_mps)
    np.testing.assert_array_equal(a.acceleration_mps2, b.acceleration_mps2)
    assert (a.status, a.intervened, a.active_constraints, a.gamma, a.num_rows, a.detail) == (
        b.status, b.intervened, b.active_constraints, b.gamma, b.num_rows, b.detail)
    assert a.min_barrier == b.min_barrier or (np.isnan(a.min_barrier) and np.isnan(b.min_barrier))


@pytest.mark.parametrize("seed", range(20))
def test_filter_many_gives_each_robot_what_filter_gives_it(seed):
    """Co-hosted robots filtered together: bit-identical outputs to one filter call each, over
    crowded scenes (fast path and QP solves), robots at the floor and ceiling, a robot with its
    own gamma, stale neighbours, a NaN state and a shield with a column map (both take filter's
    own path)."""
    rng = np.random.default_rng(seed)
    n = 12
    crowded = seed % 2 == 0  # else: cruising, spread out, away from floor and ceiling
    if crowded:
        pos = np.c_[rng.uniform(-1.5, 1.5, (n, 2)), rng.uniform(0.1, 3.6, n)]
        vel = rng.normal(0.0, 1.0, (n, 3))
        nominal = rng.normal(0.0, 1.0, (n, 3))
    else:
        pos = np.c_[rng.uniform(-5.0, 5.0, (n, 2)), rng.uniform(0.8, 2.8, n)]
        vel = rng.normal(0.0, 0.3, (n, 3))
        nominal = vel + rng.normal(0.0, 0.05, (n, 3))
    shields = [CBFShield(CONFIG) for _ in range(n)]
    shields[3].gamma = 4.0
    shields[5] = CBFShield(CONFIG, column_centres_m=[[0.0, 0.0]], column_radii_m=[0.2])
    inputs = []
    for i in range(n):
        others = [j for j in range(n) if j != i and np.linalg.norm(pos[j] - pos[i]) < 2.0]
        extra = rng.uniform(-0.1, 0.2, len(others))
        inputs.append(ShieldInput(pos[i], vel[i], nominal[i], pos[others], vel[others], extra))
    inputs[7] = ShieldInput([np.nan, 0.0, 1.0], vel[7], nominal[7])
    batch = filter_many(shields, inputs)
    single = [sh.filter(inp) for sh, inp in zip(shields, inputs)]
    for a, b in zip(batch, single):
        _same_output(a, b)
    screened = sum(not o.intervened for o in single)
    solved = sum(o.num_rows > 0 for o in single)
    assert (solved >= 3) if crowded else (screened >= 6), (screened, solved)


def test_filter_many_sends_robots_with_non_finite_input_to_filter():
    """The stacked finiteness check: a NaN neighbour row, an infinite extra radius or a NaN
    gamma override sends that robot to ``filter`` (braking); the others are filtered together,
    bit-identical to one filter call each."""
    rng = np.random.default_rng(1)
    n = 6
    pos = np.c_[rng.uniform(-1.0, 1.0, (n, 2)), rng.uniform(0.8, 2.0, n)]
    vel = rng.normal(0.0, 0.5, (n, 3))
    nominal = rng.normal(0.0, 0.5, (n, 3))
    inputs = [ShieldInput(pos[i], vel[i], nominal[i], np.delete(pos, i, 0),
                          np.delete(vel, i, 0)) for i in range(n)]
    inputs[1].neighbour_positions_m[2, 0] = np.nan
    inputs[3].neighbour_extra_radius_m[0] = np.inf
    inputs[4].gamma = np.nan
    shields = [CBFShield(CONFIG) for _ in range(n)]
    batch = filter_many(shields, inputs)
    single = [sh.filter(inp) for sh, inp in zip(shields, inputs)]
    for a, b in zip(batch, single):
        _same_output(a, b)
    assert [o.status is ShieldStatus.NONFINITE_INPUT for o in batch] == [
        False, True, False, True, True, False]
    for a, b in zip(filter_many(shields[:2], [inputs[1], inputs[3]]), (single[1], single[3])):
        _same_output(a, b)  # none left for the stacked pass


def test_filter_many_refuses_mismatched_lists():
    with pytest.raises(ValueError, match="2 shields but 1 inputs"):
        filter_many([CBFShield(CONFIG)] * 2, [ShieldInput(np.zeros(3), np.zeros(3),
                                                          np.zeros(3))])
