"""Evaluation: metrics of scripted policies with known outcomes, seeding, the ONNX policy and its
compatibility checks, and the report figures and table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sim.config import load_config, make_config
from sim.observation import LAYOUT_VERSION, ObsLayout
from sim.scenarios import make_scenario
from sim.swarm_env import SwarmVecEnv
from swarm_rl.errors import PolicyFileError
from swarm_rl.evaluate import (
    EVAL_SEED_STRIDE,
    METRIC_RANGE,
    TABLE_METRICS,
    HoverPolicy,
    OnnxPolicy,
    PolicyMismatchError,
    ScriptedGoalPolicy,
    episode_rng,
    eval_seeds,
    evaluate,
)
from swarm_rl.export import REQUIRED_KEYS
from swarm_rl.plots import format_table, plot_learning_curve, plot_trajectories

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def _swap_cfg(**overrides):
    """Two drones on opposite sides of a 1 m circle, flying to each other's spawn."""
    base = {"scenario": "swap_goals", "num_drones": 2, "episode_s": 3.0,
            "action_mode": "velocity", "neighbours_k": 2}
    return make_config(**{**base, **overrides})


# --- scripted policies with known outcomes -------------------------------------------------

def test_hover_policy_stays_at_spawn_and_fails():
    # motors mode without ground effect: hover thrust holds a nominal drone exactly in place
    cfg = make_config(scenario="hover", num_drones=1, episode_s=2.0, action_mode="motors",
                      effects={"ground_effect": False})
    result = evaluate(HoverPolicy(cfg), cfg, episodes=2, seed=3)
    expected = []
    for s in result.seeds:  # the env's own scenario draw for each episode
        inst = make_scenario(cfg, episode_rng(s), 1)
        expected.append(np.linalg.norm(inst.spawn - inst.goals.base, axis=-1).mean())
    assert min(expected) > cfg.success_radius_m  # hover never starts on its goal
    np.testing.assert_array_equal(result.per_episode["success_rate"], [0.0, 0.0])
    for key in ("final_distance_m", "distance_last_1s_m", "distance_last_3s_m",
                "distance_last_5s_m"):
        np.testing.assert_allclose(result.per_episode[key], expected, atol=1e-4)
    np.testing.assert_array_equal(result.per_episode["collisions_per_drone_minute"], [0, 0])
    np.testing.assert_array_equal(result.per_episode["crash_rate"], [0, 0])
    assert np.isinf(result.per_episode["min_separation_m"]).all()  # one drone: no neighbour
    assert result.agent_returns.shape == (2, 1)
    # distance costs 1 per metre-second: the return is about -(distance x episode length)
    np.testing.assert_allclose(result.per_episode["return"], -np.array(expected) * 2.0,
                               rtol=0.05)


def test_scripted_goal_policy_reaches_goal():
    cfg = make_config(scenario="hover", num_drones=1, episode_s=5.0, action_mode="velocity",
                      spawn_area_m=1.0)
    result = evaluate(ScriptedGoalPolicy(cfg, cruise_speed_mps=1.5), cfg, episodes=2, seed=0,
                      record=True)
    np.testing.assert_array_equal(result.per_episode["success_rate"], [1.0, 1.0])
    np.testing.assert_array_equal(result.per_episode["collisions_per_drone_minute"], [0, 0])
    np.testing.assert_array_equal(result.per_episode["crash_rate"], [0, 0])
    assert (result.per_episode["distance_last_1s_m"] < 0.1).all()
    tr = result.trajectory
    assert tr.positions_m.shape == tr.goals_m.shape == (cfg.episode_steps + 1, 1, 3)
    assert tr.dt_s == pytest.approx(1 / cfg.control_hz)
    final = np.linalg.norm(tr.positions_m[-1] - tr.goals_m[-1], axis=-1).mean()
    assert final == pytest.approx(result.per_episode["final_distance_m"][0], abs=1e-12)


def test_straight_lines_through_each_other_collide():
    # no noise: both drones fly the same line at the same height and meet at the centre
    cfg = _swap_cfg(grace_s=0.0, noise={"enabled": False})
    result = evaluate(ScriptedGoalPolicy(cfg, cruise_speed_mps=1.0), cfg, episodes=2, seed=1)
    assert (result.per_episode["collisions_per_drone_minute"] > 0).all()
    assert (result.per_episode["success_rate"] < 1).all()
    assert (result.per_episode["min_separation_m"] < 0.05).all()
    assert result.table["success_rate"]["value"] < 1


# --- aggregation, determinism, batching ----------------------------------------------------

@pytest.fixture(scope="module")
def swap_runs():
    cfg = _swap_cfg(randomisation={"mass_frac": 0.1, "thrust_frac": 0.1})
    policy = ScriptedGoalPolicy(cfg, cruise_speed_mps=1.0)
    return {
        "grouped": evaluate(policy, cfg, episodes=3, seed=5, num_envs=2),  # batches of 2 + 1
        "parallel": evaluate(policy, cfg, episodes=3, seed=5),
        "again": evaluate(policy, cfg, episodes=3, seed=5),
        "single": evaluate(policy, cfg, episodes=1, seed=5),
        "other": evaluate(policy, cfg, episodes=1, seed=6),
    }


def test_table_matches_per_episode_arrays(swap_runs):
    result = swap_runs["parallel"]
    assert result.episodes == 3 and len(result.seeds) == 3
    assert list(result.table) == [m for m in TABLE_METRICS if not m.startswith("shield_")]
    for name, row in result.table.items():
        x = result.per_episode[name]
        assert x.shape == (3,)
        assert row["mean"] == pytest.approx(x.mean())
        assert row["ci95"] == pytest.approx(1.959964 * x.std(ddof=1) / math.sqrt(3))
        lo, hi = METRIC_RANGE.get(name, (-math.inf, math.inf))
        assert row["low"] == pytest.approx(max(x.mean() - row["ci95"], lo))
        assert row["high"] == pytest.approx(min(x.mean() + row["ci95"], hi))
        assert (row["min"], row["max"]) == (x.min(), x.max())
        assert row["value"] == (x.min() if name == "min_separation_m" else row["mean"])
    np.testing.assert_allclose(result.per_episode["return"], result.agent_returns.mean(axis=1))
    data = json.loads(json.dumps(result.to_dict()))  # JSON-ready
    assert data["metrics"]["success_rate"]["mean"] == pytest.approx(
        result.table["success_rate"]["mean"])
    assert result.wall_s > 0


def test_same_seed_same_results_whatever_the_batching(swap_runs):
    ref = swap_runs["parallel"]
    for name in ("again", "grouped"):
        for key, values in ref.per_episode.items():
            np.testing.assert_allclose(swap_runs[name].per_episode[key], values, rtol=1e-9,
                                       atol=1e-12, err_msg=f"{name}: {key}")
    for key, values in ref.per_episode.items():  # one episode alone == first of three
        np.testing.assert_allclose(swap_runs["single"].per_episode[key], values[:1], rtol=1e-9,
                                   atol=1e-12, err_msg=key)
    assert swap_runs["other"].per_episode["return"][0] != ref.per_episode["return"][0]


def test_eval_seeds_are_their_own_streams():
    assert eval_seeds(7, 3) == [7, 7 + EVAL_SEED_STRIDE, 7 + 2 * EVAL_SEED_STRIDE]
    # an eval episode never draws what an env seeded with the same integer would draw
    assert episode_rng(7).random() != np.random.default_rng(7).random()
    assert episode_rng(7).random() == episode_rng(7).random()


def test_per_env_seeding_draws_like_a_one_env_swarm_env():
    """Per-environment generators draw scenario, randomisation and noise in the same order as
    the shared generator of a one-environment env."""
    cfg = _swap_cfg(episode_s=0.5, randomisation={"mass_frac": 0.2})
    base, mine = SwarmVecEnv(cfg, 1, seed=11), SwarmVecEnv(cfg, 1)
    obs_a, obs_b = base.reset(), mine.reset([np.random.default_rng(11)])
    policy = ScriptedGoalPolicy(cfg)
    for _ in range(cfg.episode_steps):
        np.testing.assert_array_equal(obs_a, obs_b)
        action = policy(obs_a.reshape(2, -1)).reshape(1, 2, 4)
        step_a, step_b = base.step(action), mine.step(action)
        np.testing.assert_array_equal(step_a.reward, step_b.reward)
        obs_a, obs_b = step_a.obs, step_b.obs
    for key, value in step_a.info["episode"].items():
        np.testing.assert_array_equal(step_b.info["episode"][key], value, err_msg=key)


def test_pybullet_backend_runs_one_env_at_a_time():
    pytest.importorskip("pybullet")
    cfg = make_config(scenario="hover", num_drones=1, episode_s=2.0, action_mode="velocity",
                      spawn_area_m=0.5)
    policy = ScriptedGoalPolicy(cfg, cruise_speed_mps=1.5)
    bullet = evaluate(policy, cfg, episodes=2, seed=0, backend="pybullet")
    batched = evaluate(policy, cfg, episodes=2, seed=0)
    assert bullet.backend == "pybullet" and bullet.episodes == 2
    np.testing.assert_allclose(bullet.per_episode["final_distance_m"],
                               batched.per_episode["final_distance_m"], atol=0.02)


def test_bad_arguments_and_bad_policies_are_named():
    cfg = _swap_cfg(episode_s=0.2)
    with pytest.raises(ValueError, match="episodes"):
        evaluate(HoverPolicy(cfg), cfg, episodes=0)
    with pytest.raises(ValueError, match="backend"):
        evaluate(HoverPolicy(cfg), cfg, episodes=1, backend="mujoco")
    with pytest.raises(ValueError, match=r"policy: returned actions of shape \(2, 3\)"):
        evaluate(lambda obs: np.zeros((obs.shape[0], 3)), cfg, episodes=1)
    with pytest.raises(PolicyMismatchError, match="action_mode=velocity, the scenario uses "
                                                  "motors"):
        evaluate(HoverPolicy(cfg), _swap_cfg(action_mode="motors"), episodes=1)
    with pytest.raises(PolicyMismatchError, match="action_mode"):
        ScriptedGoalPolicy(_swap_cfg(action_mode="motors"))


# --- ONNX policies -------------------------------------------------------------------------

def _onnx_policy_file(path, cfg, gain=1.0, **meta_overrides):
    """An affine ONNX policy, action = obs @ W: W sends -gain * goal_error to the velocity
    setpoint (a P controller towards the goal), with export-style metadata."""
    layout = ObsLayout(cfg.neighbours_k)
    weight = np.zeros((layout.dim, 4), np.float32)
    goal = layout.slices["goal_error"]
    weight[goal.start:goal.stop, :3] = -gain * np.eye(3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "W"], ["action"])], "affine_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", layout.dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {**layout.metadata(), "action_mode": cfg.action_mode, "action_low": "-1,-1,-1,-1",
            "action_high": "1,1,1,1", "control_hz": str(cfg.control_hz),
            "max_speed_mps": str(cfg.max_speed_mps),
            "max_yaw_rate_rad_s": str(cfg.max_yaw_rate_rad_s),
            "neighbour_range_m": str(cfg.neighbour_range_m), "drone_model": cfg.model,
            "scenario": cfg.scenario, "num_drones": str(cfg.num_drones),
            "training_steps": "0", "model_preset": "test", "encoder": "none",
            "source_commit": "test", "swarm_rl_version": "0", "producer": "tests"}
    assert set(REQUIRED_KEYS) <= set(meta)
    meta.update(meta_overrides)
    meta = {k: v for k, v in meta.items() if v is not None}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_policy_flies_in_evaluate(tmp_path):
    cfg = make_config(scenario="hover", num_drones=1, episode_s=4.0, action_mode="velocity",
                      spawn_area_m=1.0, neighbours_k=2)
    policy = OnnxPolicy(_onnx_policy_file(tmp_path / "p.onnx", cfg))
    assert policy.obs_dim == ObsLayout(2).dim and policy.action_mode == "velocity"
    assert policy.metadata["scenario"] == "hover"
    policy.check_compatible(cfg)
    obs = np.random.default_rng(0).normal(size=(5, policy.obs_dim)).astype(np.float32)
    out = policy(obs)
    assert out.shape == (5, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :3], -obs[:, :3], rtol=1e-6)
    result = evaluate(policy, cfg, episodes=2, seed=0)
    np.testing.assert_array_equal(result.per_episode["success_rate"], [1.0, 1.0])
    assert (result.per_episode["distance_last_1s_m"] < 0.1).all()


@pytest.mark.parametrize("field, policy_value, scenario_value", [
    ("action_mode", "motors", "velocity"),
    ("obs_layout_version", str(LAYOUT_VERSION + 1), str(LAYOUT_VERSION)),
])
def test_check_compatible_names_the_field(tmp_path, field, policy_value, scenario_value):
    target = make_config(scenario="hover", num_drones=1, action_mode="velocity", neighbours_k=2)
    policy = OnnxPolicy(_onnx_policy_file(tmp_path / "p.onnx", target, **{field: policy_value}))
    with pytest.raises(PolicyMismatchError) as err:
        policy.check_compatible(target)
    assert f"policy expects {field}={policy_value}, the scenario uses {scenario_value}" in str(
        err.value)
    assert field in err.value.fields and str(tmp_path / "p.onnx") in str(err.value)
    with pytest.raises(PolicyMismatchError, match=field):  # evaluate checks before flying
        evaluate(policy, target, episodes=1)


def test_check_compatible_rejects_another_neighbour_count(tmp_path):
    # a policy exported for K = 2 on a scenario with K = 6: obs_neighbours_k and obs_dim differ
    policy = OnnxPolicy(_onnx_policy_file(tmp_path / "p.onnx", make_config(
        action_mode="velocity", neighbours_k=2)))
    with pytest.raises(PolicyMismatchError) as err:
        policy.check_compatible(make_config(action_mode="velocity", neighbours_k=6))
    message = str(err.value)
    assert "policy expects obs_neighbours_k=2, the scenario uses 6" in message
    assert f"policy expects obs_dim={ObsLayout(2).dim}, the scenario uses {ObsLayout(6).dim}" \
        in message
    assert err.value.fields == ["obs_neighbours_k", "obs_dim"]


def test_velocity_scales_are_part_of_the_action_contract(tmp_path, caplog):
    cfg = make_config(scenario="hover", num_drones=1, action_mode="velocity", neighbours_k=2)
    policy = OnnxPolicy(_onnx_policy_file(tmp_path / "p.onnx", cfg))
    with pytest.raises(PolicyMismatchError,
                       match="policy expects max_speed_mps=1.5, the scenario uses 1.0"):
        policy.check_compatible(make_config(action_mode="velocity", neighbours_k=2,
                                            max_speed_mps=1.0))
    # another control rate is an experiment, not an error: a warning names it
    policy.check_compatible(make_config(action_mode="velocity", neighbours_k=2, control_hz=50))
    assert "control_hz=100, the scenario uses 50" in caplog.text


def test_bad_policy_files_are_named(tmp_path):
    cfg = make_config(action_mode="velocity", neighbours_k=2)
    lying = _onnx_policy_file(tmp_path / "dim.onnx", cfg, obs_dim="99")
    with pytest.raises(PolicyFileError, match="dim.onnx: metadata 'obs_dim'"):
        OnnxPolicy(lying)
    bare = _onnx_policy_file(tmp_path / "bare.onnx", cfg, action_mode=None,
                             obs_layout_version=None)
    with pytest.raises(PolicyFileError, match="lacks 'obs_layout_version', 'action_mode'"):
        OnnxPolicy(bare)
    with pytest.raises(PolicyFileError, match="no such policy file"):
        OnnxPolicy(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(PolicyFileError, match="junk.onnx: not"):
        OnnxPolicy(tmp_path / "junk.onnx")


def test_shipped_policy_evaluates_on_its_scenario():
    shipped = ROOT / "policies" / "hover_single_motors.onnx"
    cfg = load_config(ROOT / "config" / "scenarios" / "hover_single.yaml")
    policy = OnnxPolicy(shipped)
    result = evaluate(policy, cfg, episodes=4, seed=0)
    assert result.table["success_rate"]["mean"] >= 0.5
    with pytest.raises(PolicyMismatchError, match="action_mode=motors, the scenario uses "
                                                  "velocity"):
        evaluate(policy, make_config(scenario="hover", num_drones=1, action_mode="velocity"),
                 episodes=1)


# --- figures and table ---------------------------------------------------------------------

def _check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    assert not list(path.parent.glob(f".{path.name}*"))  # no temporary file left behind


def test_plot_trajectories_from_synthetic_data(tmp_path):
    t = np.linspace(0.0, 5.0, 251)[:, None]
    n = 3
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)[None, :]
    pos = np.stack([np.cos(angle + t), np.sin(angle + t), 1.0 + 0.1 * t + 0 * angle], -1)
    goals = np.broadcast_to(pos[-1], pos.shape)
    out = plot_trajectories(pos, goals, 0.02, tmp_path / "traj.png", "synthetic",
                            success_radius_m=0.5)
    assert out == tmp_path / "traj.png"
    _check_png(out)
    with pytest.raises(ValueError, match="positions and goals"):
        plot_trajectories(pos[:, :, :2], goals, 0.02, tmp_path / "bad.png")


def test_plot_learning_curve_with_missing_keys(tmp_path):
    lines = [json.dumps({"steps": 1000, "steps_per_s": 5000.0}),
             json.dumps({"steps": 2000, "return": -40.0}),
             ""]
    for i in range(3, 40):
        lines.append(json.dumps({"steps": 1000 * i, "return": -40.0 + i, "success_rate": i / 40,
                                 "collisions_per_drone_minute": 3.0 / i,
                                 "steps_per_s": 5000.0 + i}))
    lines.append('{"steps": 41000, "ret')  # a line still being written
    progress = tmp_path / "progress.jsonl"
    progress.write_text("\n".join(lines))
    _check_png(plot_learning_curve(progress, tmp_path / "curve.png"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no progress records"):
        plot_learning_curve(empty, tmp_path / "never.png")
    assert not (tmp_path / "never.png").exists()


def test_format_table_lists_every_metric(swap_runs):
    table = swap_runs["parallel"].table
    text = format_table(table)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + len(table)
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert "success rate" in text and "collisions per drone-minute" in text
    row = table["distance_last_1s_m"]
    assert f"{row['mean']:.3f}" in text
    assert f"{row['mean'] - row['ci95']:.3f} .. {row['mean'] + row['ci95']:.3f}" in text
    single = format_table(swap_runs["single"].table)  # one episode: no interval
    assert "n/a" in single
    assert "0.500" in format_table({"success_rate": 0.5})


def test_cbf_shield_keeps_the_shipped_swarm_policy_apart():
    """The runtime shield, unchanged, inside the simulator: 8 drones swapping through the
    centre with the shipped velocity policy keep the shield's 0.3 m safety distance (2 %
    numerical tolerance) and still arrive; without it they come within centimetres."""
    from swarm_rl.runtime.shield import CBFShield, ShieldConfig

    cfg = make_config(scenario="swap_goals", num_drones=8, episode_s=15.0,
                      action_mode="velocity")
    policy = OnnxPolicy(ROOT / "policies" / "formation_velocity_8.onnx")
    bare = evaluate(policy, cfg, episodes=2, seed=3)
    shield = CBFShield(ShieldConfig(v_max_mps=cfg.max_speed_mps * math.sqrt(3)))
    safe = evaluate(policy, cfg, episodes=2, seed=3, shield=shield)
    assert bare.per_episode["min_separation_m"].min() < 0.2
    assert safe.per_episode["min_separation_m"].min() >= 0.3 * 0.98
    assert safe.per_episode["collisions_per_drone_minute"].max() == 0.0
    assert safe.per_episode["success_rate"].mean() >= 0.9
    assert safe.per_episode["shield_intervention_rate"].mean() > 0.0
    motors = make_config(scenario="swap_goals", num_drones=2)
    with pytest.raises(ValueError, match="velocity commands"):
        evaluate(HoverPolicy(motors), motors, 1, shield=shield)
