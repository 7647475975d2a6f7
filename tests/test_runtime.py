"""Deploy-side runtime: the ONNX policy runner, the neighbour table and one robot's decision
step, checked against the simulator's observation function; and the no-torch import rule."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from sim.config import make_config
from sim.observation import LAYOUT_VERSION, PATCH_OFFSETS_M, ObsLayout, observe_swarm
from sim.world import World, obstacle_distance_xy
from swarm_rl.errors import PolicyMismatchError
from swarm_rl.export import REQUIRED_KEYS
from swarm_rl.runtime.neighbours import NeighbourTable
from swarm_rl.runtime.policy import NonFiniteObservation, OnnxPolicy
from swarm_rl.runtime.robot import CommandMode, OwnState, RobotController, step_robots
from swarm_rl.runtime.shield import CBFShield, ShieldConfig

ROOT = Path(__file__).resolve().parents[1]
K = 3
RANGE_M = 1.5


def _policy_file(path: Path, k: int = K, action_mode: str = "velocity",
                 weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                 max_speed_mps: float = 2.0, max_yaw_rate_rad_s: float = 3.0,
                 neighbour_range_m: float = RANGE_M, **meta_overrides: str) -> Path:
    """A hand-built affine policy, action = obs @ W + b, with export-style metadata."""
    layout = ObsLayout(k)
    weight = np.zeros((layout.dim, 4), np.float32) if weight is None else weight
    bias = np.zeros(4, np.float32) if bias is None else bias
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "W"], ["wx"]),
         helper.make_node("Add", ["wx", "b"], ["action"])], "affine_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", layout.dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weight.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    low = "-1,-1,-1,-1" if action_mode == "velocity" else "0,0,0,0"
    meta = {**layout.metadata(), "action_mode": action_mode, "action_low": low,
            "action_high": "1,1,1,1", "control_hz": "50",
            "max_speed_mps": str(max_speed_mps), "max_yaw_rate_rad_s": str(max_yaw_rate_rad_s),
            "neighbour_range_m": str(neighbour_range_m), "drone_model": "cf2x",
            "scenario": "swap_goals", "num_drones": "8", "training_steps": "0",
            "model_preset": "test", "encoder": "none", "source_commit": "test",
            "swarm_rl_version": "0", "producer": "tests"}
    assert set(REQUIRED_KEYS) <= set(meta)
    meta.update(meta_overrides)
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _goal_weight(k: int = K, gain: float = 0.5, yaw_gain: float = 0.5) -> np.ndarray:
    """W of a P controller: velocity action = -gain * goal_error, yaw action = yaw_gain *
    body rate z."""
    layout = ObsLayout(k)
    w = np.zeros((layout.dim, 4), np.float32)
    goal = layout.slices["goal_error"]
    w[goal.start:goal.stop, :3] = -gain * np.eye(3)
    w[layout.slices["body_rates"].start + 2, 3] = yaw_gain
    return w


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("policies")


@pytest.fixture(scope="module")
def goal_policy(policy_dir):
    return OnnxPolicy(_policy_file(policy_dir / "goal.onnx", weight=_goal_weight()))


def _table(k: int = K, range_m: float = RANGE_M, stale_after_s: float = 0.5,
           drop_after_s: float = 2.0, inflate_mps: float = 0.5) -> NeighbourTable:
    return NeighbourTable(k, range_m, stale_after_s, drop_after_s, inflate_mps)


def _own(pos=(0.0, 0.0, 1.0), vel=(0.0, 0.0, 0.0), rot=None, omega=(0.0, 0.0, 0.0),
         stamp_s=0.0) -> OwnState:
    return OwnState(np.asarray(pos, float), np.asarray(vel, float),
                    np.eye(3) if rot is None else np.asarray(rot, float),
                    np.asarray(omega, float), stamp_s)


# --- policy runner -------------------------------------------------------------------------

def test_policy_runs_one_observation_or_a_batch(policy_dir):
    rng = np.random.default_rng(0)
    layout = ObsLayout(K)
    w = rng.normal(size=(layout.dim, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    policy = OnnxPolicy(_policy_file(policy_dir / "affine.onnx", weight=w, bias=b))
    assert policy.session.get_providers() == ["CPUExecutionProvider"]
    obs = rng.normal(size=(5, layout.dim)).astype(np.float32)
    batch = policy(obs)
    assert batch.shape == (5, 4) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, obs @ w + b, rtol=1e-5, atol=1e-5)
    single = policy(obs[2])
    assert single.shape == (4,)
    np.testing.assert_array_equal(single, batch[2])
    with pytest.raises(ValueError, match=rf"obs: expected shape \({layout.dim},\)"):
        policy(obs[:, :-1])


def test_evaluate_uses_the_runtime_runner():
    import swarm_rl.evaluate as evaluate

    assert evaluate.OnnxPolicy is OnnxPolicy
    assert evaluate.PolicyMismatchError is PolicyMismatchError


@pytest.mark.parametrize("expected, fields, text", [
    (dict(layout=ObsLayout(K + 1), action_mode="velocity"), ["obs_neighbours_k", "obs_dim"],
     f"policy expects obs_neighbours_k={K}, the robot runtime uses {K + 1}"),
    (dict(layout=ObsLayout(K), action_mode="motors"), ["action_mode"],
     "policy expects action_mode=velocity, the robot runtime uses motors"),
    (dict(layout=ObsLayout(K, LAYOUT_VERSION + 1), action_mode="velocity"),
     ["obs_layout_version"], f"policy expects obs_layout_version={LAYOUT_VERSION}, the robot "
                             f"runtime uses {LAYOUT_VERSION + 1}"),
    (dict(layout=ObsLayout(K), action_mode="velocity", max_speed_mps=1.0), ["max_speed_mps"],
     "policy expects max_speed_mps=2.0, the robot runtime uses 1.0"),
])
def test_metadata_mismatch_is_refused_naming_the_field(goal_policy, expected, fields, text):
    goal_policy.check_layout(ObsLayout(K), "velocity", max_speed_mps=2.0,
                             against="the robot runtime")  # the matching contract passes
    with pytest.raises(PolicyMismatchError) as err:
        goal_policy.check_layout(**expected, against="the robot runtime")
    assert err.value.fields == fields
    assert text in str(err.value) and "goal.onnx" in str(err.value)


def test_check_compatible_still_reads_an_env_config(goal_policy):
    goal_policy.check_compatible(make_config(action_mode="velocity", neighbours_k=K,
                                             max_speed_mps=2.0, max_yaw_rate_rad_s=3.0))
    with pytest.raises(PolicyMismatchError, match="the scenario uses 6"):
        goal_policy.check_compatible(make_config(action_mode="velocity", neighbours_k=6))


def test_non_finite_observation_is_refused(goal_policy):
    layout = ObsLayout(K)
    obs = np.zeros((3, layout.dim), np.float32)
    obs[1, layout.slices["neighbours"].start + 4] = np.nan
    obs[2, layout.slices["height"].start] = np.inf
    with pytest.raises(NonFiniteObservation, match="non-finite values in height, neighbours"
                       ) as err:
        goal_policy(obs)
    assert err.value.parts == ["height", "neighbours"]
    assert isinstance(err.value, ValueError)
    single = np.zeros(layout.dim, np.float32)
    single[0] = -np.inf
    with pytest.raises(NonFiniteObservation, match="goal_error"):
        goal_policy(single)


def test_velocity_setpoint_uses_the_metadata_scales(policy_dir, goal_policy):
    assert (goal_policy.max_speed_mps, goal_policy.max_yaw_rate_rad_s) == (2.0, 3.0)
    v, yaw = goal_policy.to_velocity_setpoint(np.array([0.5, -0.25, 1.5, -0.5]))
    np.testing.assert_array_equal(v, [1.0, -0.5, 2.0])  # 1.5 clipped to the bound 1
    assert yaw == -1.5 and isinstance(yaw, float)
    v, yaw = goal_policy.to_velocity_setpoint(np.array([[0.0, 0.0, 0.0, 0.25],
                                                        [-2.0, 0.125, 0.0, 0.0]]))
    np.testing.assert_array_equal(v, [[0.0, 0.0, 0.0], [-2.0, 0.25, 0.0]])
    np.testing.assert_array_equal(yaw, [0.75, 0.0])
    slow = OnnxPolicy(_policy_file(policy_dir / "slow.onnx", max_speed_mps=0.5,
                                   max_yaw_rate_rad_s=1.0))
    v, yaw = slow.to_velocity_setpoint(np.array([0.5, -0.25, 1.0, -0.5]))
    np.testing.assert_array_equal(v, [0.25, -0.125, 0.5])
    assert yaw == -0.5
    with pytest.raises(ValueError, match="non-finite"):
        goal_policy.to_velocity_setpoint(np.array([np.nan, 0, 0, 0]))
    motors = OnnxPolicy(_policy_file(policy_dir / "motors.onnx", action_mode="motors"))
    with pytest.raises(PolicyMismatchError, match="action_mode=motors"):
        motors.to_velocity_setpoint(np.zeros(4))


# --- neighbour table -----------------------------------------------------------------------

def test_snapshot_keeps_range_inflates_stale_and_drops_old():
    table = _table(stale_after_s=0.5, drop_after_s=2.0, inflate_mps=0.5)
    vel = np.array([0.1, 0.0, 0.0])
    table.update("cf1", 10.0, [0.0, 0.0, 1.0], [0, 0, 0])  # the observer itself
    table.update("cf2", 10.0, [1.0, 0.0, 1.0], vel)        # fresh, 1 m
    table.update("cf3", 9.25, [0.0, 0.5, 1.0], vel)        # 0.75 s old, 0.5 m
    table.update("cf4", 9.5, [0.0, 0.0, 2.5], vel)         # exactly 0.5 s (not stale) at 1.5 m
    table.update("cf5", 8.0, [0.0, -1.0, 1.0], vel)        # exactly 2 s: kept, inflated
    table.update("cf6", 7.5, [0.2, 0.0, 1.0], vel)         # 2.5 s: dropped
    table.update("cf7", 10.0, [1.6, 0.0, 1.0], vel)        # out of range (1.6 m > 1.5 m)
    snap = table.snapshot("cf1", np.array([0.0, 0.0, 1.0]), now_s=10.0)
    assert snap.names == ("cf3", "cf2", "cf5", "cf4")  # nearest first, ties by name
    np.testing.assert_array_equal(snap.distance_m, [0.5, 1.0, 1.0, 1.5])
    np.testing.assert_array_equal(snap.age_s, [0.75, 0.0, 2.0, 0.5])
    np.testing.assert_array_equal(snap.extra_radius_m, [0.375, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(snap.pos_m[0], [0.0, 0.5, 1.0])  # last known, not moved
    np.testing.assert_array_equal(snap.vel_mps, np.tile(vel, (4, 1)))
    # later, cf2 goes stale and cf3 is dropped; a stamp from the future counts as age 0
    table.update("cf2", 10.5, [1.0, 0.0, 1.0], vel)
    snap = table.snapshot("cf1", np.array([0.0, 0.0, 1.0]), now_s=10.25)
    assert snap.names == ("cf3", "cf2", "cf4")
    np.testing.assert_array_equal(snap.age_s, [1.0, 0.0, 0.75])
    np.testing.assert_array_equal(snap.extra_radius_m, [0.5, 0.0, 0.375])
    # the policy sees the same neighbours, at their last known state, K nearest
    feats, mask = table.observation_features("cf1", [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], 10.25)
    np.testing.assert_array_equal(mask, [True, True, True])
    np.testing.assert_array_equal(feats[:, :3], snap.pos_m - [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(feats[:, 3:], np.tile(vel, (3, 1)))


def test_snapshot_stack_is_each_observers_snapshot_and_features():
    """The stacked snapshot of co-hosted observers (one sort and gather for all) gives each
    observer the snapshot and the features it gets alone: equal-distance neighbours (ties by
    name), stale and dropped entries, an observer the table does not hold, and features of a
    subset of the observers (the robots without a rejected input)."""
    rng = np.random.default_rng(3)
    table = _table(k=2, stale_after_s=0.5, drop_after_s=2.0, inflate_mps=0.5)
    grid = np.array([[x, y, 1.0] for x in (-0.5, 0.0, 0.5) for y in (-0.5, 0.0, 0.5)])
    for i, p in enumerate(grid):  # a grid: many exact ties in distance
        table.update(f"cf{9 - i}", 10.0 - (0.75 if i % 3 == 0 else 0.0) - (2.5 if i == 4 else 0),
                     p, rng.normal(0.0, 0.3, 3))
    names = ["cf1", "cf5", "cf9", "other", None]
    own_pos = np.vstack([grid[8], grid[4], grid[0], [0.1, 0.2, 1.3], [0.0, 0.0, 1.0]])
    own_vel = rng.normal(0.0, 0.3, (5, 3))
    stack = table.snapshot_stack(names, own_pos, 10.0)
    for name, pos, snap in zip(names, own_pos, stack.snapshots):
        alone = table.snapshot(name, pos, 10.0)
        assert snap.names == alone.names and len(snap) == len(alone)
        for field in ("pos_m", "vel_mps", "age_s", "extra_radius_m", "distance_m"):
            np.testing.assert_array_equal(getattr(snap, field), getattr(alone, field))
    assert any(len(set(s.distance_m.tolist())) < len(s) for s in stack.snapshots)  # ties
    rows = np.array([0, 2, 3])
    feats, mask = table.features_stack(stack, rows, own_pos[rows], own_vel[rows])
    want = table.features_many([stack.snapshots[b] for b in rows], own_pos[rows], own_vel[rows])
    np.testing.assert_array_equal(feats, want[0])
    np.testing.assert_array_equal(mask, want[1])
    nb_pos, nb_vel, extra = stack.neighbour_rows(rows)  # the shield's rows, one pass
    for got, field in ((nb_pos, "pos_m"), (nb_vel, "vel_mps"), (extra, "extra_radius_m")):
        np.testing.assert_array_equal(
            got, np.concatenate([getattr(stack.snapshots[b], field) for b in rows]))
    assert stack.snapshot(1).names == stack.snapshots[1].names
    empty = _table().snapshot_stack(["cf1", "cf2"], own_pos[:2], 0.0)
    assert [len(s) for s in empty.snapshots] == [0, 0]
    assert [a.shape for a in empty.neighbour_rows(np.arange(2))] == [(0, 3), (0, 3), (0,)]
    feats, mask = _table().features_stack(empty, np.arange(2), own_pos[:2], own_vel[:2])
    assert feats.shape == (2, K, 6) and not mask.any()


def test_observation_features_pad_when_nobody_is_near():
    table = _table(k=2)
    feats, mask = table.observation_features("cf1", [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], 0.0)
    assert feats.shape == (2, 6) and mask.shape == (2,)
    assert not mask.any() and not feats.any()
    table.update("cf2", 0.0, [0.5, 0.0, 1.0], [0.0, 0.0, 0.0])
    feats, mask = table.observation_features("cf1", [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], 0.0)
    np.testing.assert_array_equal(mask, [True, False])
    np.testing.assert_array_equal(feats, [[0.5, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    no_slots = _table(k=0)
    no_slots.update("cf2", 0.0, [0.5, 0.0, 1.0], [0.0, 0.0, 0.0])
    feats, mask = no_slots.observation_features("cf1", [0, 0, 1.0], [0, 0, 0], 0.0)
    assert feats.shape == (0, 6) and mask.shape == (0,)


def test_bad_updates_are_rejected_and_counted():
    table = _table()
    assert table.update("cf2", 1.0, [1.0, 0.0, 1.0], [0.0, 0.0, 0.0])
    bad = [("cf2", 2.0, [np.nan, 0.0, 1.0], [0, 0, 0]),
           ("cf2", 2.0, [1.0, 0.0, 1.0], [0, np.inf, 0]),
           ("cf2", np.nan, [1.0, 0.0, 1.0], [0, 0, 0]),
           ("cf2", 2.0, [1e3, 0.0, 0.0], [0, 0, 0]),
           ("cf2", 2.0, [1e300, 1e300, 0.0], [0, 0, 0]),
           ("cf2", 2.0, [1.0, 0.0, 1.0], [30.0, 40.0, 0.0]),
           ("cf2", 2.0, [1.0, 0.0], [0, 0, 0]),
           ("cf2", 2.0, "far away", [0, 0, 0]),
           ("", 2.0, [1.0, 0.0, 1.0], [0, 0, 0]),
           (None, 2.0, [1.0, 0.0, 1.0], [0, 0, 0]),
           ("cf2", 0.5, [1.1, 0.0, 1.0], [0, 0, 0])]  # older than what is held
    assert not any(table.update(*args) for args in bad)
    assert table.rejected == {"nonfinite": 3, "position_implausible": 2,
                              "velocity_implausible": 1, "bad_shape": 2, "bad_name": 2,
                              "out_of_order": 1}
    snap = table.snapshot("cf1", np.array([0.0, 0.0, 1.0]), 1.0)
    assert snap.names == ("cf2",)
    np.testing.assert_array_equal(snap.pos_m, [[1.0, 0.0, 1.0]])
    assert table.update("cf2", 1.0, [1.2, 0.0, 1.0], [0.0, 0.0, 0.0])  # same stamp: replaces
    with pytest.raises(ValueError, match="drop_after_s"):
        NeighbourTable(2, 1.0, stale_after_s=1.0, drop_after_s=0.5, inflate_mps=0.0)


@pytest.mark.parametrize("seed", range(8))
def test_update_many_keeps_the_table_update_by_update_would(seed):
    """One aggregated message applied at once: the same entries and the same rejection
    counts as one update per row, with rows at and beyond every limit, repeated and bad
    names, older and future stamps and a message of the wrong shape."""
    rng = np.random.default_rng(seed)
    names = ["cf1", "cf2", "cf2", "", None, "cf3", "cf4", "cf5", "cf6", "cf7"]
    n = len(names)
    one, many = _table(drop_after_s=2.0), _table(drop_after_s=2.0)
    for table in (one, many):
        table.update("cf3", 5.0, [0.0, 0.0, 1.0], [0.0, 0.0, 0.0])
    for stamp in (5.5, 4.0, 2.0, 9.0, np.nan, 6.0):
        pos = rng.uniform(-3.0, 3.0, (n, 3))
        vel = rng.uniform(-1.0, 1.0, (n, 3))
        pos[5] = [1e3 * (1 - 1e-12), 0.0, 0.0] if seed % 2 else [1e3, 0.0, 0.0]
        vel[6] = [30.0, 40.0 * (1 - 1e-15), 0.0]
        pos[7, rng.integers(3)] = rng.choice([np.nan, np.inf, 1e300])
        got = many.update_many(names, stamp, pos, vel, now_s=6.0)
        want = [one.update(name, stamp, p, v, now_s=6.0) for name, p, v in zip(names, pos, vel)]
        assert got.tolist() == want
        pos[:] = 99.0  # the caller's buffer is reused: the table must not follow it
    assert many.rejected == one.rejected and sum(one.rejected.values()) > 10
    assert {"out_of_order", "from_future", "bad_name", "nonfinite"} <= set(one.rejected)
    for name in ("cf1", "cf2", "cf3", "cf4", "cf5", "cf6", "cf7"):
        a, b = one._states.get(name), many._states.get(name)
        assert (a is None) == (b is None)
        if a is not None:
            assert a[0] == b[0]
            np.testing.assert_array_equal(a[1], b[1])
            np.testing.assert_array_equal(a[2], b[2])
    assert not many.update_many(["cf1"], 7.0, [[1.0, 0.0]], [[0.0, 0.0, 0.0]]).any()
    assert many.rejected["bad_shape"] == one.rejected.get("bad_shape", 0) + 1


def test_stamps_ahead_or_far_behind_cannot_lock_a_neighbour_out():
    table = _table(drop_after_s=2.0)
    buffer = np.array([1.0, 0.0, 1.0])
    assert table.update("cf2", 10.0, buffer, [0.0, 0.0, 0.0])
    buffer[0] = 99.0  # the caller reuses its message buffer: the table kept a copy
    assert not table.update("cf2", 12.5, [1.0, 0.0, 1.0], [0, 0, 0], now_s=10.0)  # 2.5 s ahead
    assert table.rejected == {"from_future": 1}
    assert table.update("cf2", 11.5, [1.0, 0.1, 1.0], [0, 0, 0], now_s=10.0)  # 1.5 s: skew
    snap = table.snapshot("cf1", np.array([0.0, 0.0, 1.0]), now_s=10.0)
    np.testing.assert_array_equal(snap.age_s, [0.0])
    np.testing.assert_array_equal(snap.pos_m, [[1.0, 0.1, 1.0]])
    assert table.update("cf3", 1e9, [0.0, 1.0, 1.0], [0, 0, 0])  # no clock given: kept, but
    assert table.snapshot("cf1", np.array([0.0, 0.0, 1.0]), 10.0).names == ("cf2",)  # unseen
    assert table.update("cf3", 10.0, [0.0, 1.0, 1.0], [0, 0, 0])  # and replaceable
    assert not table.update("cf2", 10.0, [1.0, 0.0, 1.0], [0, 0, 0])  # 1.5 s older: late
    assert table.update("cf2", 0.5, [1.0, 0.0, 1.0], [0, 0, 0])  # 11 s older: clock reset
    assert table.rejected == {"from_future": 1, "out_of_order": 1}
    assert table.snapshot("cf1", np.array([0.0, 0.0, 1.0]), 1.0).names == ("cf2",)
    with pytest.raises(ValueError, match="own_pos"):
        table.snapshot("cf1", np.array([np.nan, 0.0, 0.0]), 1.0)


def _random_swarm(seed: int, n: int = 8):
    rng = np.random.default_rng(seed)
    pos = rng.uniform([-1.5, -1.5, 0.3], [1.5, 1.5, 2.0], (1, n, 3))
    vel = rng.normal(0.0, 0.5, (1, n, 3))
    rot = np.linalg.qr(rng.normal(size=(1, n, 3, 3)))[0]
    rot[np.linalg.det(rot) < 0] *= -1  # proper rotations (det +1), as a drone has
    omega = rng.normal(0.0, 1.0, (1, n, 3))
    goal = rng.uniform([-1.5, -1.5, 0.5], [1.5, 1.5, 2.0], (1, n, 3))
    world = World((4.0, 4.0, 3.0), rng.uniform(-1.5, 1.5, (1, 3, 2)),
                  np.array([[True, True, False]]), 0.15)
    return pos, vel, rot, omega, goal, world


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_robot_observation_equals_the_simulators(goal_policy, seed):
    """Drone i's observation from the robot's own path (neighbour table fed with everyone's
    state, obstacle patch from the same distance function) equals observe_swarm's row i
    exactly, noise off; and the command is the policy's action on that row."""
    pos, vel, rot, omega, goal, world = _random_swarm(seed)
    n = pos.shape[1]
    layout = ObsLayout(K)
    sim_obs = observe_swarm(pos, vel, rot, omega, goal,
                            lambda p: obstacle_distance_xy(p, world), layout, RANGE_M)
    now_s = 3.0
    table = _table(stale_after_s=0.1)
    for j in range(n):  # one aggregated swarm-state message: the robot's own entry included
        assert table.update(f"cf{j + 1}", now_s - 0.01, pos[0, j], vel[0, j])
    masks = []
    for i in range(n):
        robot = RobotController(goal_policy, table, f"cf{i + 1}")
        own = OwnState(pos[0, i], vel[0, i], rot[0, i], omega[0, i], now_s - 0.01)
        patch = obstacle_distance_xy((pos[0, i, :2] + PATCH_OFFSETS_M)[None], world)[0]
        obs = robot.observe(now_s, own, goal[0, i], patch)
        np.testing.assert_array_equal(obs, sim_obs[0, i], err_msg=f"drone {i}")
        masks.append(obs[layout.slices["neighbour_mask"]])
        cmd = robot.step(now_s, own, goal[0, i], patch)
        assert cmd.mode is CommandMode.POLICY and cmd.diagnostics.reasons == ()
        v, yaw = goal_policy.to_velocity_setpoint(goal_policy(sim_obs[0, i]))
        np.testing.assert_array_equal(cmd.velocity_mps, v)
        assert cmd.yaw_rate_rad_s == yaw
        assert cmd.diagnostics.policy_latency_us > 0
    masks = np.array(masks)
    assert 0 < masks.sum() < masks.size  # some neighbours out of range or beyond K


# --- robot controller ----------------------------------------------------------------------

def test_velocity_command_is_scaled_by_the_policy_metadata(goal_policy):
    robot = RobotController(goal_policy, _table(), "cf1")
    cmd = robot.step(5.0, _own(pos=(0.0, 0.0, 1.0), omega=(0.0, 0.0, 0.5), stamp_s=4.98),
                     np.array([1.0, -0.5, 1.0]))
    # action = (-0.5 * goal_error, 0.5 * omega_z) = (0.5, -0.25, 0, 0.25); scales 2 m/s, 3 rad/s
    np.testing.assert_array_equal(cmd.velocity_mps, [1.0, -0.5, 0.0])
    assert cmd.yaw_rate_rad_s == 0.75
    assert cmd.mode is CommandMode.POLICY and not cmd.landing
    assert not cmd.diagnostics.shielded and cmd.diagnostics.rejected == {}


def test_bad_own_state_hovers_then_lands(goal_policy):
    robot = RobotController(goal_policy, _table(), "cf1", own_stale_s=0.1, land_after_s=1.0,
                            landing_speed_mps=0.3)
    goal = np.array([1.0, 0.0, 1.0])
    nan_state = _own(pos=(np.nan, 0.0, 1.0), stamp_s=0.0)
    modes = []
    for t in (0.0, 0.5, 0.999):
        cmd = robot.step(t, _own(pos=(np.nan, 0.0, 1.0), stamp_s=t), goal)
        modes.append(cmd.mode)
        np.testing.assert_array_equal(cmd.velocity_mps, 0.0)
        assert cmd.yaw_rate_rad_s == 0.0 and cmd.diagnostics.reasons == ("own_state_nonfinite",)
    assert modes == [CommandMode.HOVER] * 3
    for t in (1.0, 1.5):
        cmd = robot.step(t, nan_state, goal)
        assert cmd.mode is CommandMode.LAND and cmd.landing
        np.testing.assert_array_equal(cmd.velocity_mps, [0.0, 0.0, -0.3])
    assert cmd.diagnostics.rejected == {"own_state_nonfinite": 5}
    cmd = robot.step(2.0, None, goal)  # no odometry at all: still landing
    assert cmd.mode is CommandMode.LAND and cmd.diagnostics.reasons == ("own_state_missing",)
    cmd = robot.step(2.1, _own(stamp_s=2.05), goal)  # good state again: flying
    assert cmd.mode is CommandMode.POLICY
    np.testing.assert_array_equal(cmd.velocity_mps, [1.0, 0.0, 0.0])
    cmd = robot.step(2.5, _own(stamp_s=2.05), goal)  # 0.45 s old: stale; the timer restarts
    assert cmd.mode is CommandMode.HOVER and cmd.diagnostics.reasons == ("own_state_stale",)
    assert robot.step(3.49, _own(stamp_s=2.05), goal).mode is CommandMode.HOVER
    assert robot.step(3.5, _own(stamp_s=2.05), goal).mode is CommandMode.LAND
    assert robot.rejected == {"own_state_nonfinite": 5, "own_state_missing": 1,
                              "own_state_stale": 3}


@pytest.mark.parametrize("own, reason", [
    (_own(vel=(60.0, 0.0, 0.0)), "own_velocity_implausible"),
    (_own(pos=(2e3, 0.0, 1.0)), "own_position_implausible"),
    (_own(rot=np.diag([1.0, 1.0, -1.0])), "own_rotation_invalid"),  # a reflection
    (_own(rot=2 * np.eye(3)), "own_rotation_invalid"),
    (_own(omega=(0.0, 0.0)), "own_state_bad_shape"),
    (_own(stamp_s=1.0), "own_state_from_future"),
])
def test_implausible_own_states_hover(goal_policy, own, reason):
    cmd = RobotController(goal_policy, _table(), "cf1").step(0.0, own, np.zeros(3) + 1.0)
    assert cmd.mode is CommandMode.HOVER and cmd.diagnostics.reasons == (reason,)
    assert cmd.diagnostics.rejected == {reason: 1}


def test_bad_goal_patch_or_policy_output_hover_through_the_shield(policy_dir, goal_policy):
    calls = []

    def shield(own_pos, own_vel, v_nominal, nb_pos, nb_vel, nb_extra):
        calls.append(v_nominal.copy())
        return v_nominal, {}

    table = _table()
    robot = RobotController(goal_policy, table, "cf1", shield=shield)
    own = _own(stamp_s=0.0)
    for goal, patch, reason in (([np.nan, 0, 1], None, "goal_invalid"),
                                ([1.0, 0, 1], np.full(9, np.nan), "obstacle_patch_invalid"),
                                ([1.0, 0, 1], np.zeros(4), "obstacle_patch_invalid")):
        cmd = robot.step(0.0, own, np.array(goal), patch)
        assert cmd.mode is CommandMode.HOVER and cmd.diagnostics.reasons == (reason,)
        assert cmd.diagnostics.shielded and cmd.diagnostics.policy_latency_us is None
    assert len(calls) == 3 and not np.any(calls)
    assert robot.step(0.0, own, np.ones(3), np.full(9, np.inf)).mode is CommandMode.POLICY
    nan_policy = OnnxPolicy(_policy_file(policy_dir / "nan.onnx",
                                         bias=np.full(4, np.nan, np.float32)))
    cmd = RobotController(nan_policy, table, "cf1").step(0.0, own, np.ones(3))
    assert cmd.mode is CommandMode.HOVER
    assert cmd.diagnostics.reasons == ("policy_action_nonfinite",)
    np.testing.assert_array_equal(cmd.velocity_mps, 0.0)


def test_shield_gets_neighbours_and_its_failures_stop_the_robot(goal_policy):
    seen = {}

    def halving_shield(own_pos, own_vel, v_nominal, nb_pos, nb_vel, nb_extra):
        seen.update(pos=nb_pos, vel=nb_vel, extra=nb_extra)
        return 0.5 * v_nominal, {"intervened": True, "slack": 0.0}

    table = _table(stale_after_s=0.5, inflate_mps=0.5)
    table.update("cf2", 9.0, [0.5, 0.0, 1.0], [0.0, 0.2, 0.0])
    own, goal = _own(stamp_s=10.0), np.array([1.0, 0.0, 1.0])
    cmd = RobotController(goal_policy, table, "cf1", shield=halving_shield).step(10.0, own, goal)
    np.testing.assert_array_equal(cmd.velocity_mps, [0.5, 0.0, 0.0])
    d = cmd.diagnostics
    assert d.shielded and d.shield_intervened and not d.shield_fallback and d.neighbours == 1
    assert d.shield_info == {"intervened": True, "slack": 0.0}
    np.testing.assert_array_equal(seen["pos"], [[0.5, 0.0, 1.0]])
    np.testing.assert_array_equal(seen["extra"], [0.5])  # 1 s old at 0.5 m/s

    def nan_shield(*args):
        return np.array([np.nan, 0.0, 0.0]), {}

    def broken_shield(*args):
        raise RuntimeError("solver failed")

    for shield, reason in ((nan_shield, "shield_output_invalid"),
                           (broken_shield, "shield_error"),
                           (lambda *a: (np.zeros(2), {}), "shield_output_invalid")):
        cmd = RobotController(goal_policy, table, "cf1", shield=shield).step(10.0, own, goal)
        np.testing.assert_array_equal(cmd.velocity_mps, 0.0)
        assert cmd.diagnostics.shield_fallback and cmd.diagnostics.reasons == (reason,)
        assert cmd.mode is CommandMode.HOVER and cmd.diagnostics.policy_latency_us > 0
    cmd = RobotController(goal_policy, table, "cf1",
                          shield=lambda *a: (a[2], {})).step(10.0, own, goal)
    assert cmd.diagnostics.shielded and not cmd.diagnostics.shield_intervened
    braking = RobotController(goal_policy, table, "cf1", shield=lambda *a: (
        np.array([0.0, 0.0, 0.1]), {"intervened": True, "fallback": True}))
    cmd = braking.step(10.0, own, goal)  # the shield's own fallback setpoint is kept
    np.testing.assert_array_equal(cmd.velocity_mps, [0.0, 0.0, 0.1])
    assert cmd.diagnostics.shield_fallback and cmd.diagnostics.reasons == ("shield_fallback",)


@pytest.mark.parametrize("seed", range(6))
def test_step_robots_gives_each_robot_what_step_gives_it(seed):
    """Co-hosted robots stepped together (one policy call, one stacked shield pass): the same
    commands as one step each, on the shipped policy, with a crowd that makes the shield act,
    a stale neighbour, a NaN own state, a stale own state, a bad goal and a robot whose shield
    is not a CBFShield (it takes its own path)."""
    policy = OnnxPolicy(ROOT / "policies" / "formation_velocity_8.onnx")
    rng = np.random.default_rng(seed)
    n, now = 10, 50.0
    pos = rng.uniform([-1.5, -1.5, 0.6], [1.5, 1.5, 2.0], (n, 3))
    vel = rng.normal(0.0, 0.4, (n, 3))
    goals = list(rng.uniform([-3.0, -3.0, 0.5], [3.0, 3.0, 2.0], (n, 3)))
    goals[6] = np.array([np.nan, 0.0, 1.0])
    owns = [_own(pos[i], vel[i], stamp_s=now) for i in range(n)]
    owns[2] = _own([np.nan, 0.0, 1.0], stamp_s=now)
    owns[4] = _own(pos[4], vel[4], stamp_s=now - 1.0)

    def controllers() -> list[RobotController]:
        table = NeighbourTable(policy.neighbours_k, policy.neighbour_range_m, 0.1, 1.0, 1.0)
        for i in range(n):
            table.update(f"cf{i + 1}", now - (0.3 if i == 8 else 0.0), pos[i], vel[i])
        out = [RobotController(policy, table, f"cf{i + 1}",
                               shield=CBFShield(ShieldConfig(safety_distance_m=0.4)))
               for i in range(n)]
        out[9].shield = lambda p, v, v_nom, *_: (0.5 * v_nom, {"intervened": True})
        return out

    batch = step_robots(controllers(), now, owns, goals)
    single = [c.step(now, own, goal) for c, own, goal in zip(controllers(), owns, goals)]
    for a, b in zip(batch, single):
        assert (a.mode, a.diagnostics.reasons) == (b.mode, b.diagnostics.reasons)
        np.testing.assert_allclose(a.velocity_mps, b.velocity_mps, atol=1e-5)
        assert a.yaw_rate_rad_s == pytest.approx(b.yaw_rate_rad_s, abs=1e-5)
        assert a.diagnostics.rejected == b.diagnostics.rejected
    modes = [c.mode for c in batch]
    assert modes.count(CommandMode.POLICY) == 7 and batch[2].mode is CommandMode.HOVER
    assert batch[6].diagnostics.reasons == ("goal_invalid",)
    acted = [c.diagnostics.shield_intervened for c in batch[:9] if c.mode is CommandMode.POLICY]
    assert any(acted) and not all(acted), "both the stacked fast path and QP solves ran"


def test_step_robots_handles_non_finite_rows_of_the_batched_policy_call():
    """Rows of the one batched policy call that come back non-finite hover with
    ``policy_action_nonfinite``; the other robots' setpoints are those of one step each."""
    policy = OnnxPolicy(ROOT / "policies" / "formation_velocity_8.onnx")

    class HalfNaN:  # the shipped policy, NaN where the goal lies in -x (obs[0] > 0)
        def __getattr__(self, name):
            return getattr(policy, name)

        def __call__(self, obs):
            action = np.array(policy(obs), dtype=np.float32)
            action[np.asarray(obs)[..., 0] > 0] = np.nan
            return action

    rng = np.random.default_rng(0)
    n, now = 6, 5.0
    pos = rng.uniform([-2.0, -2.0, 0.8], [2.0, 2.0, 1.8], (n, 3))
    goals = list(pos + rng.uniform(-1.0, 1.0, (n, 3)))
    owns = [_own(pos[i], stamp_s=now) for i in range(n)]
    wrapped = HalfNaN()

    def controllers() -> list[RobotController]:
        table = NeighbourTable(policy.neighbours_k, policy.neighbour_range_m, 0.1, 1.0, 1.0)
        for i in range(n):
            table.update(f"cf{i + 1}", now, pos[i], np.zeros(3))
        out = [RobotController(policy, table, f"cf{i + 1}", shield=CBFShield())
               for i in range(n)]
        for c in out:
            c.policy = wrapped
        return out

    batch = step_robots(controllers(), now, owns, goals)
    single = [c.step(now, own, goal) for c, own, goal in zip(controllers(), owns, goals)]
    nan_rows = [bool(pos[i, 0] - goals[i][0] > 0) for i in range(n)]
    assert any(nan_rows) and not all(nan_rows)
    for a, b, nan in zip(batch, single, nan_rows):
        assert (a.mode, a.diagnostics.reasons) == (b.mode, b.diagnostics.reasons)
        assert (a.diagnostics.reasons == ("policy_action_nonfinite",)) == nan
        np.testing.assert_allclose(a.velocity_mps, b.velocity_mps, atol=1e-5)
        assert a.yaw_rate_rad_s == pytest.approx(b.yaw_rate_rad_s, abs=1e-5)


_LIMITS = {"pos": 1e3, "vel": 50.0, "omega": 100.0}  # runtime.neighbours / runtime.robot


def _near(limit: float) -> st.SearchStrategy:
    """Vector magnitudes around ``limit`` (both sides, down to the last few ulps)."""
    return st.floats(limit * (1 - 1e-8), limit * (1 + 1e-8)) | st.floats(0.0, 2 * limit)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stacked_own_state_screen_never_passes_what_the_exact_check_rejects(goal_policy, data):
    """step_robots screens every robot's own state at once; a state it passes must be one
    RobotController._check_own passes too, at the limits of every check (sizes, rotation,
    age), and states well inside them must pass (or the screen would do nothing)."""
    from swarm_rl.runtime.robot import _owns_acceptable

    owns = []
    for _ in range(4):
        vecs = {}
        for key, limit in _LIMITS.items():
            direction = np.array(data.draw(st.lists(st.floats(-1, 1), min_size=3, max_size=3)))
            norm = np.linalg.norm(direction)
            unit = direction / norm if norm > 1e-3 else np.array([1.0, 0.0, 0.0])
            vecs[key] = unit * data.draw(_near(limit))
        angle = data.draw(st.floats(-np.pi, np.pi))
        rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                        [0, 0, 1.0]])
        rot = rot * data.draw(st.floats(1 - 2e-3, 1 + 2e-3) | st.just(1.0))
        edge = [0.0, 0.1, -0.1, np.nextafter(0.1, 1.0), np.nextafter(-0.1, -1.0)]
        stamp = data.draw(st.floats(-0.10001, 0.10001) | st.sampled_from(edge))
        owns.append(OwnState(vecs["pos"], vecs["vel"], rot, vecs["omega"], stamp))
    robots = [RobotController(goal_policy, _table(), f"cf{i + 1}", own_stale_s=0.1)
              for i in range(len(owns))]
    passed = _owns_acceptable(robots, owns, 0.0)
    for robot, own, ok in zip(robots, owns, passed):
        if ok:
            assert robot._check_own(own, 0.0) is None, own
    stacked = tuple(np.array([getattr(o, key) for o in owns], float)
                    for key in ("pos_m", "vel_mps", "rot", "omega_rad_s"))
    assert (_owns_acceptable(robots, owns, 0.0, stacked) == passed).all()  # a host's rows
    calm = [_own(pos=(1.0, -2.0, 1.5), vel=(0.3, 0.1, 0.0), stamp_s=-0.05)] * 4
    assert _owns_acceptable(robots, calm, 0.0).all()
    assert not _owns_acceptable(robots[:3], calm[:3], 0.0).any()  # few: checked one by one


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stacked_goal_screen_never_passes_what_the_exact_check_rejects(data):
    """step_robots screens every goal at once; a goal it passes must be one the exact check
    passes as it is (the same array back, no reason), at the position limit, and goals well
    inside it must pass; other types and shapes go to the exact check."""
    from swarm_rl.runtime.robot import _goals_acceptable, _vector3

    goals = []
    for _ in range(5):
        direction = np.array(data.draw(st.lists(st.floats(-1, 1), min_size=3, max_size=3)))
        norm = np.linalg.norm(direction)
        unit = direction / norm if norm > 1e-3 else np.array([0.0, 1.0, 0.0])
        goal = unit * data.draw(_near(_LIMITS["pos"]))
        goal[data.draw(st.integers(0, 2))] = data.draw(
            st.sampled_from([np.nan, np.inf, 1.0]) | st.floats(-2e3, 2e3))
        goals.append(goal)
    for goal, ok in zip(goals, _goals_acceptable(goals)):
        if ok:
            back, why = _vector3(goal, _LIMITS["pos"], "goal")
            assert why is None and back is goal, goal
    calm = [np.array([1.0, -2.0, 1.5])] * 4
    assert _goals_acceptable(calm).all()
    assert not _goals_acceptable(calm[:3]).any()  # few: checked one by one
    assert not _goals_acceptable(calm[:3] + [[1.0, 2.0, 1.0]]).any()  # a list: exact check
    assert not _goals_acceptable(calm[:3] + [np.array([1, 2, 1])]).any()  # ints: exact check


def test_motors_or_mismatched_policies_are_refused(policy_dir, goal_policy):
    motors = OnnxPolicy(_policy_file(policy_dir / "motors.onnx", action_mode="motors"))
    with pytest.raises(PolicyMismatchError, match="action_mode=motors, the robot runtime uses "
                                                  "velocity") as err:
        RobotController(motors, _table(), "cf1")
    assert err.value.fields == ["action_mode"]
    with pytest.raises(PolicyMismatchError, match=f"obs_neighbours_k={K}, the robot runtime "
                                                  f"uses {K + 2}") as err:
        RobotController(goal_policy, _table(k=K + 2), "cf1")
    assert err.value.fields == ["obs_neighbours_k", "obs_dim"]


finite = st.floats(-5.0, 5.0, allow_nan=False)
vec3 = st.lists(finite, min_size=3, max_size=3).map(np.array)
BAD = st.sampled_from([np.nan, np.inf, -np.inf, 1e6, -1e300, 1e3, 60.0])
FIELDS = ("now", "stamp", "pos", "vel", "rot", "omega", "goal", "patch", "missing",
          "neighbour")


@st.composite
def _tick(draw):
    """One tick's inputs: plausible values (fresh stamps, a yaw rotation), then a few fields
    corrupted with NaN, inf or huge values."""
    now_s = draw(finite)
    yaw = draw(st.floats(-math.pi, math.pi))
    c, s = math.cos(yaw), math.sin(yaw)
    parts = {"now": np.array([now_s]), "stamp": np.array([now_s - draw(st.floats(0.0, 0.15))]),
             "pos": draw(vec3), "vel": draw(vec3), "omega": draw(vec3), "goal": draw(vec3),
             "rot": np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]),
             "patch": draw(st.one_of(st.none(), st.lists(finite, min_size=9, max_size=9).map(
                 np.array)))}
    updates = [(name, now_s - draw(st.floats(0.0, 3.0)), draw(vec3), draw(vec3))
               for name in draw(st.lists(st.sampled_from(["cf1", "cf2", "cf3", "cf4"]),
                                         max_size=4))]
    missing = False
    for name, bad, index in draw(st.lists(st.tuples(st.sampled_from(FIELDS), BAD,
                                                    st.integers(0, 8)), max_size=3)):
        if name == "missing":
            missing = True
        elif name == "neighbour":
            updates.append(("cf2", bad, np.full(3, bad), np.zeros(3)))
        elif parts[name] is not None:
            parts[name].reshape(-1)[index % parts[name].size] = bad
    own = None if missing else OwnState(parts["pos"], parts["vel"], parts["rot"],
                                        parts["omega"], float(parts["stamp"][0]))
    return float(parts["now"][0]), own, parts["goal"], parts["patch"], updates


@pytest.fixture(scope="module")
def wild_policy(policy_dir):
    w = np.random.default_rng(1).normal(0.0, 3.0, (ObsLayout(K).dim, 4)).astype(np.float32)
    return OnnxPolicy(_policy_file(policy_dir / "wild.onnx", weight=w))


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no overflow on any path
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticks=st.lists(_tick(), min_size=1, max_size=4),
       shield_kind=st.sampled_from(["none", "pass", "nan", "raise"]))
def test_commands_are_always_finite(wild_policy, ticks, shield_kind):
    shields = {"none": None, "pass": lambda *a: (a[2] + a[5].sum(), {}),
               "nan": lambda *a: (np.full(3, np.nan), {}),
               "raise": lambda *a: (_ for _ in ()).throw(RuntimeError("x"))}
    table = _table()
    robot = RobotController(wild_policy, table, "cf1", shield=shields[shield_kind])
    for now_s, own, goal, patch, updates in ticks:
        for update in updates:
            table.update(*update)
        cmd = robot.step(now_s, own, goal, patch)
        assert cmd.velocity_mps.shape == (3,) and np.isfinite(cmd.velocity_mps).all()
        assert math.isfinite(cmd.yaw_rate_rad_s)
        if cmd.mode is not CommandMode.POLICY:
            assert cmd.diagnostics.reasons
        if shield_kind != "none" and cmd.mode is not CommandMode.LAND and not any(
                r.startswith(("own_", "clock")) for r in cmd.diagnostics.reasons):
            assert cmd.diagnostics.shielded or cmd.diagnostics.shield_fallback


# --- import rule ---------------------------------------------------------------------------

def test_runtime_imports_neither_torch_nor_pybullet(policy_dir):
    path = _policy_file(policy_dir / "import.onnx", weight=_goal_weight())
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import swarm_rl.runtime.policy, swarm_rl.runtime.neighbours, swarm_rl.runtime.robot
        from swarm_rl.runtime.neighbours import NeighbourTable
        from swarm_rl.runtime.policy import OnnxPolicy
        from swarm_rl.runtime.robot import OwnState, RobotController
        robot = RobotController(OnnxPolicy({str(path)!r}),
                                NeighbourTable({K}, 1.5, 0.5, 2.0, 0.5), "cf1")
        own = OwnState(np.zeros(3) + 1, np.zeros(3), np.eye(3), np.zeros(3), 0.0)
        assert robot.step(0.0, own, np.ones(3)).mode.value == "policy"
        bad = sorted(m for m in sys.modules
                     if m.split(".")[0] in ("torch", "pybullet", "pybullet_data"))
        print("LOADED", bad)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout
