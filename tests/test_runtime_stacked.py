"""step_robots' stacked shield pass (swarm_rl/runtime/robot.py): the batch built from the
ticks' states and snapshots, and the setpoints' finiteness checked for all robots at once."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from swarm_rl.runtime import robot as robot_module
from swarm_rl.runtime.neighbours import NeighbourTable
from swarm_rl.runtime.policy import OnnxPolicy
from swarm_rl.runtime.robot import CommandMode, OwnState, RobotController, step_robots
from swarm_rl.runtime.shield import CBFShield, ShieldConfig, filter_batch, filter_many

POLICY = Path(__file__).resolve().parents[1] / "policies" / "formation_velocity_8.onnx"


def _crowd(seed: int, n: int = 12):
    """(controllers factory, owns, goals, now) of a crowd in which the shield acts, with a
    stale neighbour."""
    policy = OnnxPolicy(POLICY)
    rng = np.random.default_rng(seed)
    now = 20.0
    pos = rng.uniform([-1.0, -1.0, 0.3], [1.0, 1.0, 1.6], (n, 3))
    vel = rng.normal(0.0, 0.8, (n, 3))
    goals = list(rng.uniform([-3.0, -3.0, 0.5], [3.0, 3.0, 2.0], (n, 3)))
    owns = [OwnState(pos[i], vel[i], np.eye(3), np.zeros(3), now) for i in range(n)]

    def controllers() -> list[RobotController]:
        table = NeighbourTable(policy.neighbours_k, policy.neighbour_range_m, 0.1, 1.0, 1.0)
        for i in range(n):
            table.update(f"cf{i + 1}", now - (0.3 if i == 5 else 0.0), pos[i], vel[i])
        return [RobotController(policy, table, f"cf{i + 1}",
                                shield=CBFShield(ShieldConfig(safety_distance_m=0.4)))
                for i in range(n)]
    return controllers, owns, goals, now


def _by_inputs(shields, batch):
    """The shield pass as it was built before ShieldBatch: one ShieldInput per robot."""
    return filter_many(shields, [batch.input(k) for k in range(len(batch.counts))])


@pytest.mark.parametrize("seed", range(4))
def test_batch_from_snapshots_gives_the_commands_of_per_robot_inputs(monkeypatch, seed):
    """Commands bit for bit those of the shield pass over one ShieldInput per robot."""
    controllers, owns, goals, now = _crowd(seed)
    stacked = step_robots(controllers(), now, owns, goals)
    monkeypatch.setattr(robot_module, "filter_batch", _by_inputs)
    reference = step_robots(controllers(), now, owns, goals)
    for a, b in zip(stacked, reference):
        np.testing.assert_array_equal(a.velocity_mps, b.velocity_mps)
        assert (a.mode, a.diagnostics.reasons, a.diagnostics.shield_intervened,
                a.diagnostics.shield_fallback) == (b.mode, b.diagnostics.reasons,
                                                   b.diagnostics.shield_intervened,
                                                   b.diagnostics.shield_fallback)
    assert any(c.diagnostics.shield_intervened for c in stacked)


def test_non_finite_stacked_setpoint_hovers_that_robot_only(monkeypatch):
    """The stacked finiteness check: a shield output with a NaN setpoint makes that robot
    hover (flagged shield_output_invalid); the others keep their shielded setpoints."""
    controllers, owns, goals, now = _crowd(1)
    good = step_robots(controllers(), now, owns, goals)

    def broken(shields, batch):
        outs = filter_batch(shields, batch)
        outs[3] = dataclasses.replace(outs[3], velocity_setpoint_mps=np.array([np.nan, 0, 0]))
        return outs

    monkeypatch.setattr(robot_module, "filter_batch", broken)
    bad = step_robots(controllers(), now, owns, goals)
    assert bad[3].mode is CommandMode.HOVER and bad[3].diagnostics.shield_fallback
    assert bad[3].diagnostics.reasons == ("shield_output_invalid",)
    np.testing.assert_array_equal(bad[3].velocity_mps, np.zeros(3))
    for k in set(range(len(good))) - {3}:
        np.testing.assert_array_equal(bad[k].velocity_mps, good[k].velocity_mps)
        assert bad[k].diagnostics.reasons == good[k].diagnostics.reasons == ()


def _same_commands(got, want) -> None:
    """Bit for bit the same commands and diagnostics, up to the timings."""
    timings = {"filter_time_us", "solve_time_us"}
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.velocity_mps, b.velocity_mps)
        da, db = a.diagnostics, b.diagnostics
        assert (a.yaw_rate_rad_s, a.mode, da.reasons, da.shielded, da.shield_intervened,
                da.shield_fallback, da.neighbours, da.rejected) == (
                    b.yaw_rate_rad_s, b.mode, db.reasons, db.shielded, db.shield_intervened,
                    db.shield_fallback, db.neighbours, db.rejected)
        assert ({k: v for k, v in da.shield_info.items() if k not in timings}
                == {k: v for k, v in db.shield_info.items() if k not in timings})


def _batch_of_snapshots(ticks):
    """The shield batch as it was built before the stacked snapshot's rows were read
    directly: every robot's NeighbourSnapshot, concatenated by of_arrays."""
    snaps = [t.snapshot() for t in ticks]
    return robot_module.ShieldBatch.of_arrays(
        np.array([t.pos for t in ticks]), np.array([t.vel for t in ticks]),
        np.array([t.v_nominal for t in ticks]), [s.pos_m for s in snaps],
        [s.vel_mps for s in snaps], [s.extra_radius_m for s in snaps])


@pytest.mark.parametrize("seed", range(4))
def test_batch_from_the_stacked_snapshot_equals_the_snapshots_batch(monkeypatch, seed):
    """The shield rows read from the stacked snapshot in one pass give the commands and
    diagnostics of the per-robot snapshots concatenated, bit for bit (a stale neighbour,
    a robot without its own state, a robot with an invalid goal)."""
    controllers, owns, goals, now = _crowd(seed)
    owns[2] = None
    goals[7] = np.array([np.nan, 0.0, 1.0])
    stacked = step_robots(controllers(), now, owns, goals)
    monkeypatch.setattr(robot_module, "_shield_batch", _batch_of_snapshots)
    _same_commands(stacked, step_robots(controllers(), now, owns, goals))
    assert stacked[7].diagnostics.reasons == ("goal_invalid",)
    assert any(c.diagnostics.shield_intervened for c in stacked)


def test_robots_of_two_tables_get_the_commands_of_one_shared_table():
    """Co-hosted robots reading two neighbour tables of the same contents (two stacked
    snapshots, so the shield batch is built from their snapshots) get, bit for bit, what
    the same robots get from one shared table (rows read from its stacked snapshot)."""
    make, owns, goals, now = _crowd(2)
    first, second = make(), make()
    mixed = step_robots(first[:6] + second[6:], now, owns, goals)
    _same_commands(mixed, step_robots(make(), now, owns, goals))
    assert any(c.diagnostics.shield_intervened for c in mixed)


def test_compile_kernels_compiles_what_a_host_tick_runs():
    """A robot host calls compile_kernels before its first tick: the own-state screen and
    the shield's stacked pass are then compiled for the very types a tick passes them, with
    its own states stacked as a host hands them over or built from the OwnStates (a compile
    takes seconds: inside a real-time tick, every robot would fall back on the watchdog)."""
    from swarm_rl.runtime.own_state_kernel import own_states_pass
    from swarm_rl.runtime.robot import compile_kernels
    from swarm_rl.runtime.shield_kernel import check_solutions, prune_rows, stacked_qp

    compile_kernels(ShieldConfig(safety_distance_m=0.4))
    kernels = (own_states_pass, stacked_qp, prune_rows, check_solutions)
    compiled = [len(k.signatures) for k in kernels]
    assert min(compiled) >= 1
    controllers, owns, goals, now = _crowd(0)
    rows = tuple(np.array([getattr(o, key) for o in owns])
                 for key in ("pos_m", "vel_mps", "rot", "omega_rad_s"))
    strided = tuple(np.repeat(a, 2, axis=0)[::2] for a in rows)  # views, not C-ordered
    for own_arrays in (None, rows, strided):
        commands = step_robots(controllers(), now, owns, goals, own_arrays=own_arrays)
        assert sum(c.mode is CommandMode.POLICY for c in commands) >= len(owns) - 1
    assert [len(k.signatures) for k in kernels] == compiled
