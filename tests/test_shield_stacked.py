"""The CBF shield's stacked path for co-hosted robots (swarm_rl/runtime/shield.py,
swarm_rl/runtime/qp.py): the pruning, solving, checking and counting of all solving robots at
once must give each robot bit for bit what its own ``filter`` call gives it, including
infeasible QPs, barriers already violated, solver errors and solutions that violate a row."""
from __future__ import annotations

import numpy as np
import pytest

from swarm_rl.runtime import qp as qp_module
from swarm_rl.runtime import shield as shield_module
from swarm_rl.runtime.qp import QPStatus, solve_nearest_point, solve_nearest_points
from swarm_rl.runtime.shield import (ROW_TOL, CBFShield, ShieldBatch, ShieldConfig, ShieldInput,
                                     ShieldStatus, _reach, filter_batch, filter_many)

CONFIG = ShieldConfig(k_v_per_s=10.0, dt_s=0.02)


def _same_output(a, b) -> None:
    """Equal ShieldOutputs up to the timings."""
    np.testing.assert_array_equal(a.velocity_setpoint_mps, b.velocity_setpoint_mps)
    np.testing.assert_array_equal(a.acceleration_mps2, b.acceleration_mps2)
    assert (a.status, a.intervened, a.fallback, a.active_constraints, a.gamma, a.num_rows,
            a.detail) == (b.status, b.intervened, b.fallback, b.active_constraints, b.gamma,
                          b.num_rows, b.detail)
    assert a.min_barrier == b.min_barrier or (np.isnan(a.min_barrier) and np.isnan(b.min_barrier))


def _crowd(seed: int, n: int = 14) -> list[ShieldInput]:
    """A tight, fast crowd (1.2 m cube, speeds ~1.5 m/s, some at the floor): many robots
    inside each other's safety distance, so QPs are solved, violated and infeasible."""
    rng = np.random.default_rng(seed)
    pos = np.c_[rng.uniform(-0.6, 0.6, (n, 2)), rng.uniform(0.15, 1.35, n)]
    vel = rng.normal(0.0, 1.5, (n, 3))
    nominal = rng.normal(0.0, 1.5, (n, 3))
    inputs = []
    for i in range(n):
        others = np.flatnonzero(np.arange(n) != i)[: rng.integers(0, n)]
        inputs.append(ShieldInput(pos[i], vel[i], nominal[i], pos[others], vel[others],
                                  rng.uniform(-0.05, 0.15, len(others))))
    return inputs


def test_solve_nearest_points_gives_each_problem_one_call_s_result():
    """Stacked bound vectors, then one solver call per problem: the same solutions, statuses
    and details as one solve_nearest_point call each (rows 0 to 6, inconsistent bounds)."""
    rng = np.random.default_rng(3)
    s = 40
    counts = rng.integers(0, 7, s)
    g = rng.normal(size=(int(counts.sum()), 3))
    g /= np.linalg.norm(g, axis=1)[:, None]
    rhs = rng.normal(0.0, 2.0, g.shape[0])
    rhs[rng.random(rhs.shape[0]) < 0.1] = np.inf
    x_nom = rng.normal(0.0, 3.0, (s, 3))
    lb, ub = -rng.uniform(0.5, 4.0, (s, 3)), rng.uniform(0.5, 4.0, (s, 3))
    lb[::9, 1] = ub[::9, 1] + 0.1  # lb > ub
    stacked = solve_nearest_points(x_nom, g, rhs, counts, lb, ub)
    ends = np.cumsum(counts)
    for k, got in enumerate(stacked):
        rows = slice(ends[k] - counts[k], ends[k])
        want = solve_nearest_point(x_nom[k], g[rows], rhs[rows], lb[k], ub[k])
        np.testing.assert_array_equal(got.x, want.x)
        assert (got.status, got.detail) == (want.status, want.detail)
    statuses = {r.status for r in stacked}
    assert {QPStatus.OPTIMAL, QPStatus.INFEASIBLE} <= statuses, statuses


def test_stacked_pruning_equals_the_per_robot_pruning():
    """_reach on stacked rows with per-row boxes gives each robot's rows the bits its own
    box gives them (so the same rows reach the solver)."""
    rng = np.random.default_rng(5)
    g = rng.normal(size=(50, 3))
    owner = np.sort(rng.integers(0, 6, 50))
    lb, ub = -rng.uniform(0.0, 4.0, (6, 3)), rng.uniform(0.0, 4.0, (6, 3))
    stacked = _reach(g, lb[owner], ub[owner])
    for k in range(6):
        np.testing.assert_array_equal(stacked[owner == k], _reach(g[owner == k], lb[k], ub[k]))
        np.testing.assert_array_equal(
            stacked[owner == k],
            np.maximum(g[owner == k] * lb[k], g[owner == k] * ub[k]).sum(axis=1))


@pytest.mark.parametrize("seed", range(12))
def test_stacked_solving_equals_filter_in_crowds(seed):
    """Random tight neighbourhoods: every robot's output of filter_many (fast path, solved,
    violated, infeasible with the braking fallback) is bit for bit its own filter call's."""
    inputs = _crowd(seed)
    shields = [CBFShield(CONFIG) for _ in inputs]
    stacked = filter_many(shields, inputs)
    single = [sh.filter(inp) for sh, inp in zip(shields, inputs)]
    for a, b in zip(stacked, single):
        _same_output(a, b)


def test_crowds_reach_every_outcome():
    """The crowds above do exercise the stacked solver's outcomes: solved, solved although
    already violated, and infeasible (braking)."""
    seen = set()
    for seed in range(12):
        inputs = _crowd(seed)
        for out in filter_many([CBFShield(CONFIG) for _ in inputs], inputs):
            if out.num_rows or out.fallback:
                seen.add(out.status)
    assert {ShieldStatus.OK, ShieldStatus.VIOLATED, ShieldStatus.INFEASIBLE} <= seen, seen


class _FaultyDaqp:
    """DAQP with faults chosen by the problem itself (so that filter and filter_many meet the
    same ones): an exception, an error flag, a solution pushed past a row by 1e-3 (a solver
    error) or by 8e-7 (within ROW_TOL: checked again exactly, then accepted)."""

    def __init__(self, real) -> None:
        self.real = real

    def solve(self, h, f, a, bupper, blower, sense):
        kind = int(abs(f[0]) * 1e6) % 5
        if kind == 0:
            raise RuntimeError("injected")
        x, fval, flag, info = self.real.solve(h, f, a, bupper, blower, sense)
        if kind == 1:
            return x, fval, -6, info
        if kind in (2, 3) and a.shape[0]:
            slack = bupper[3:] - a @ x
            k = int(np.argmin(slack))
            x = x + (slack[k] + (1e-3 if kind == 2 else 8e-7)) * a[k]
        return x, fval, flag, info


def test_stacked_solver_faults_equal_filter(monkeypatch):
    """Solver exceptions, error flags and solutions that violate a row: the stacked checks
    flag each robot as its own filter call does (status, braking, detail)."""
    real = qp_module._daqp()
    monkeypatch.setattr(qp_module, "_daqp", lambda: _FaultyDaqp(real))
    exact_check, exact = shield_module._violation, []

    def counted(qp, u):
        exact.append(exact_check(qp, u))
        return exact[-1]

    details = set()
    for seed in range(12):
        inputs = _crowd(seed)
        shields = [CBFShield(CONFIG) for _ in inputs]
        monkeypatch.setattr(shield_module, "_violation", counted)
        stacked = filter_many(shields, inputs)
        monkeypatch.setattr(shield_module, "_violation", exact_check)
        for a, b in zip(stacked, [sh.filter(inp) for sh, inp in zip(shields, inputs)]):
            _same_output(a, b)
            details.add(a.detail.split(" by ")[0])
    assert {"daqp raised RuntimeError('injected')", "daqp exit flag -6",
            "solution violates a row", "daqp exit flag 1"} <= details, details
    exact = np.array(exact)  # the stacked pass's exact re-checks: failed and accepted ones
    assert (exact > ROW_TOL).any() and ((exact > ROW_TOL / 2) & (exact <= ROW_TOL)).any()


def test_filter_batch_equals_filter_many():
    """The batch built from arrays (as step_robots builds it) is the batch of the robots'
    ShieldInputs, and filter_batch gives filter_many's outputs, also with a non-finite robot,
    a robot with its own gamma and a shield with a column map in it."""
    inputs = _crowd(7, n=10)
    inputs[2] = ShieldInput(inputs[2].position_m, [np.inf, 0.0, 0.0],
                            inputs[2].nominal_velocity_mps, inputs[2].neighbour_positions_m,
                            inputs[2].neighbour_velocities_mps)
    shields = [CBFShield(CONFIG) for _ in inputs]
    shields[4].gamma = 3.0
    shields[6] = CBFShield(CONFIG, column_centres_m=[[0.0, 0.0]], column_radii_m=[0.2])
    batch = ShieldBatch.of_arrays(
        np.array([i.position_m for i in inputs]), np.array([i.velocity_mps for i in inputs]),
        np.array([i.nominal_velocity_mps for i in inputs]),
        [i.neighbour_positions_m for i in inputs], [i.neighbour_velocities_mps for i in inputs],
        [i.neighbour_extra_radius_m for i in inputs])
    of = ShieldBatch.of(inputs)
    for name in ("pos", "vel", "nominal", "owner", "nb_pos", "nb_vel", "extra"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(of, name))
    assert batch.counts == of.counts
    for k, inp in enumerate(inputs):
        back = batch.input(k)
        np.testing.assert_array_equal(back.neighbour_positions_m, inp.neighbour_positions_m)
        np.testing.assert_array_equal(back.neighbour_extra_radius_m,
                                      inp.neighbour_extra_radius_m)
    for a, b in zip(filter_batch(shields, batch), filter_many(shields, inputs)):
        _same_output(a, b)
    assert filter_batch(shields, batch)[2].status is ShieldStatus.NONFINITE_INPUT


def test_batch_take_keeps_the_chosen_robots_rows():
    inputs = _crowd(2, n=6)
    batch = ShieldBatch.of(inputs)
    sub = batch.take(np.array([1, 4]))
    want = ShieldBatch.of([inputs[1], inputs[4]])
    for name in ("pos", "vel", "nominal", "owner", "nb_pos", "nb_vel", "extra"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(want, name))
    assert sub.counts == want.counts


def test_batch_shape_errors_name_the_field():
    z3, z23 = np.zeros(3), np.zeros((2, 3))
    with pytest.raises(ValueError, match="ShieldBatch.nb_vel"):
        ShieldBatch.of_arrays(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 3)), [z23],
                              [np.zeros((3, 3))], [np.zeros(2)])
    with pytest.raises(ValueError, match="ShieldBatch.extra"):
        ShieldBatch.of_arrays(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 3)), [z23],
                              [z23], [np.zeros(3)])
    with pytest.raises(ValueError, match="ShieldBatch.nb_pos"):
        ShieldBatch.of_arrays(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 3)), [z3],
                              [z23], [np.zeros(2)])
    with pytest.raises(ValueError, match="ShieldBatch.pos"):
        ShieldBatch.of_arrays(np.zeros((2, 3)), np.zeros((1, 3)), np.zeros((1, 3)), [z23],
                              [z23], [np.zeros(2)])
    with pytest.raises(ValueError, match="2 shields but 1 inputs"):
        filter_batch([CBFShield(CONFIG)] * 2, ShieldBatch.of_arrays(
            np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 3)), [z23], [z23], [np.zeros(2)]))


def test_batch_of_rows_is_the_batch_of_the_robots_runs():
    """ShieldBatch.of_rows (neighbour rows already stacked, as step_robots reads them from
    the stacked snapshot) is of_arrays' batch of the same runs; a wrong count is named."""
    inputs = _crowd(4, n=7)
    counts = [i.neighbour_positions_m.shape[0] for i in inputs]
    own = [np.array([getattr(i, f) for i in inputs])
           for f in ("position_m", "velocity_mps", "nominal_velocity_mps")]
    rows = ShieldBatch.of_rows(*own, counts,
                               np.concatenate([i.neighbour_positions_m for i in inputs]),
                               np.concatenate([i.neighbour_velocities_mps for i in inputs]),
                               np.concatenate([i.neighbour_extra_radius_m for i in inputs]))
    want = ShieldBatch.of(inputs)
    for name in ("pos", "vel", "nominal", "owner", "nb_pos", "nb_vel", "extra"):
        np.testing.assert_array_equal(getattr(rows, name), getattr(want, name))
    assert rows.counts == want.counts
    with pytest.raises(ValueError, match="ShieldBatch.nb_pos"):
        ShieldBatch.of_rows(*own, [c + 1 for c in counts], rows.nb_pos, rows.nb_vel, rows.extra)
    with pytest.raises(ValueError, match="ShieldBatch.counts"):
        ShieldBatch.of_rows(*own, [-1] + counts[1:], rows.nb_pos, rows.nb_vel, rows.extra)


@pytest.mark.parametrize("seed", range(3))
def test_stacked_pass_with_open_geofence_sides_equals_filter(seed):
    """Position bounds on some axes only (an open geofence side: the bound axes gathered by
    index, not all three as a view): the stacked pass still gives filter's outputs."""
    config = ShieldConfig(k_v_per_s=10.0, dt_s=0.02, geofence_lower_m=(-0.5, -np.inf, -np.inf),
                          geofence_upper_m=(np.inf, 0.4, np.inf))
    inputs = _crowd(seed, n=12)
    shields = [CBFShield(config) for _ in inputs]
    for a, b in zip(filter_many(shields, inputs), [s.filter(i) for s, i in zip(shields, inputs)]):
        _same_output(a, b)


def test_compile_stacked_pass_compiles_what_a_host_tick_runs():
    """A robot host calls compile_stacked_pass before its first tick: the kernel is then
    compiled for the very types a tick passes it (no compile of seconds inside a tick), and
    the crowds' outputs are still each robot's own filter's."""
    from swarm_rl.runtime.shield import compile_stacked_pass
    from swarm_rl.runtime.shield_kernel import check_solutions, prune_rows, stacked_qp

    compile_stacked_pass(CONFIG)
    kernels = (stacked_qp, prune_rows, check_solutions)
    compiled = [len(k.signatures) for k in kernels]
    assert min(compiled) >= 1
    for seed in range(3):
        inputs = _crowd(seed)
        shields = [CBFShield(CONFIG) for _ in inputs]
        for got, inp, sh in zip(filter_many(shields, inputs), inputs, shields):
            _same_output(got, sh.filter(inp))
    assert [len(k.signatures) for k in kernels] == compiled
