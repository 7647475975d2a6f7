"""ONNX export: parity with the torch actor (random and recorded observations), graph checks,
metadata, and bad input (mismatched, corrupt checkpoints; bad policy files; failed exports).

The checkpoints are real: the trainer runs two tiny PPO updates per configuration.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import swarm_rl
from sim.observation import ObsLayout
from sim.swarm_env import SwarmVecEnv
from swarm_rl.export import (PARITY_TOL, REQUIRED_KEYS, PolicyFileError, action_bounds,
                             deterministic_policy, export_onnx, load_actor, parity,
                             random_observations, read_policy_metadata)
from swarm_rl.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from swarm_rl.train.config import load_preset
from swarm_rl.train.ppo import Trainer

ROOT = Path(__file__).resolve().parents[1]
N_PARITY = 10_000
COMMON = ["threads=1", "init_from=", "env.episode_s=0.2", "ppo.rollout_steps=20",
          "ppo.epochs=2"]
# name: (preset, overrides); two PPO updates each.
RUNS = {
    "hover_motors_deepsets": ("hover_single", ["total_steps=320", "ppo.num_envs=8"]),
    "hover_velocity_attention_k3": ("hover_single", [
        "total_steps=320", "ppo.num_envs=8", "env.action_mode=velocity",
        "model.encoder=attention", "env.neighbours_k=3"]),
    "swarm8_motors_attention": ("swap_goals_8", [
        "total_steps=1280", "ppo.num_envs=4", "curriculum.num_drones=[]",
        "env.neighbour_range_m=1.5", "model.encoder=attention"]),
    "swarm8_velocity_deepsets": ("swap_goals_8", [
        "total_steps=1280", "ppo.num_envs=4", "curriculum.num_drones=[]",
        "env.neighbour_range_m=1.5", "env.action_mode=velocity"]),
}
SWARM_RUNS = [name for name in RUNS if name.startswith("swarm8")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Per configuration: checkpoint, exported .onnx, export summary, loaded actor/config."""
    out = {}
    before = torch.get_num_threads()
    try:
        for name, (preset, overrides) in RUNS.items():
            run_dir = tmp_path_factory.mktemp(name)
            cfg = load_preset(preset, COMMON + overrides)
            Trainer(cfg, run_dir).train(progress_bar=False)
            onnx_path = run_dir / "policy.onnx"
            summary = export_onnx(run_dir, onnx_path)  # a run directory works as well
            actor, saved_cfg, data = load_actor(run_dir / "checkpoint.pt")
            out[name] = {"dir": run_dir, "checkpoint": run_dir / "checkpoint.pt",
                         "onnx": onnx_path, "summary": summary, "actor": actor,
                         "cfg": saved_cfg, "data": data,
                         "policy": deterministic_policy(actor, saved_cfg.env.action_mode)}
    finally:
        torch.set_num_threads(before)
    return out


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def recorded_observations(run: dict, n: int, seed: int = 0) -> np.ndarray:
    """``n`` observations from SwarmVecEnv driven by the torch actor (sampled like in
    training: mean + std * noise), across episode resets."""
    cfg = run["cfg"]
    per_step = n // 50
    num_envs = max(1, per_step // cfg.env.num_drones)
    env = SwarmVecEnv(cfg.env, num_envs, "batched", seed=seed)
    obs = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    actor, rows = run["actor"], []
    std = actor.log_std.detach().exp()
    with torch.no_grad():
        while sum(len(r) for r in rows) < n:
            flat = obs.reshape(-1, obs.shape[-1])
            rows.append(flat.copy())
            mean = actor(torch.from_numpy(flat))
            action = mean + std * torch.randn(mean.shape, generator=gen)
            obs = env.step(action.reshape(num_envs, env.num_drones, 4).numpy()).obs
    env.close()
    return np.concatenate(rows)[:n]


# --- the trained checkpoints and the exported graph ----------------------------------------------
@pytest.mark.parametrize("name", RUNS)
def test_trained_normaliser_is_nontrivial(runs, name):
    norm = runs[name]["actor"].norm
    assert torch.any(norm.mean != 0) and torch.any(norm.var != 1)
    assert float(norm.count.min()) > 100


@pytest.mark.parametrize("name", RUNS)
def test_parity_random_observations(runs, name):
    run = runs[name]
    obs = random_observations(run["actor"].layout, N_PARITY, np.random.default_rng(1))
    if run["actor"].k:  # masks: both values, and masked features are zero
        mask = obs[:, run["actor"].layout.slices["neighbour_mask"]]
        assert 0.3 < mask.mean() < 0.7
        feats = obs[:, run["actor"].layout.slices["neighbours"]].reshape(N_PARITY, -1, 6)
        assert np.all(feats[mask == 0] == 0)
    err = parity(run["policy"], run["onnx"], obs)
    assert err <= PARITY_TOL, err
    assert parity(run["actor"], run["onnx"], obs) == err  # a bare Actor is clamped the same


@pytest.mark.parametrize("name", RUNS)
def test_parity_recorded_observations(runs, name):
    run = runs[name]
    obs = recorded_observations(run, N_PARITY)
    assert obs.shape == (N_PARITY, run["actor"].layout.dim) and np.isfinite(obs).all()
    if name in SWARM_RUNS:  # the neighbour encoder sees real and masked neighbours
        mask = obs[:, run["actor"].layout.slices["neighbour_mask"]]
        assert 0.0 < mask.mean() < 1.0
    err = parity(run["policy"], run["onnx"], obs)
    assert err <= PARITY_TOL, err


@pytest.mark.parametrize("name", RUNS)
def test_graph_is_valid_with_dynamic_batch(runs, name):
    run = runs[name]
    model = onnx.load(str(run["onnx"]))
    onnx.checker.check_model(model, full_check=True)
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset >= 17 and run["summary"]["opset"] == opset
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("obs", "action")
    for value, width in ((inp, run["actor"].layout.dim), (out, 4)):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        batch, last = value.type.tensor_type.shape.dim
        assert batch.dim_param and not batch.HasField("dim_value") and last.dim_value == width
    sess = _session(run["onnx"])
    obs = random_observations(run["actor"].layout, 1000, np.random.default_rng(2))
    for batch in (1, 7, 1000):
        got = sess.run(["action"], {"obs": obs[:batch]})[0]
        assert got.shape == (batch, 4) and got.dtype == np.float32
        with torch.no_grad():
            ref = run["policy"](torch.from_numpy(obs[:batch])).numpy()
        assert np.abs(got - ref).max() <= PARITY_TOL


@pytest.mark.parametrize("name", RUNS)
def test_metadata(runs, name):
    run = runs[name]
    cfg, data, layout = run["cfg"], run["data"], run["actor"].layout
    meta = read_policy_metadata(run["onnx"])
    assert set(REQUIRED_KEYS) <= set(meta)
    assert {k: meta[k] for k in layout.metadata()} == layout.metadata()
    assert int(meta["obs_dim"]) == ObsLayout(cfg.env.neighbours_k).dim
    assert int(meta["obs_neighbours_k"]) == cfg.env.neighbours_k
    env = SwarmVecEnv(cfg.env, 1)
    assert meta["action_mode"] == cfg.env.action_mode
    np.testing.assert_array_equal([float(v) for v in meta["action_low"].split(",")],
                                  env.action_low)
    np.testing.assert_array_equal([float(v) for v in meta["action_high"].split(",")],
                                  env.action_high)
    assert int(meta["control_hz"]) == cfg.env.control_hz
    assert float(meta["max_speed_mps"]) == cfg.env.max_speed_mps
    assert float(meta["neighbour_range_m"]) == cfg.env.neighbour_range_m
    assert meta["scenario"] == cfg.env.scenario
    assert int(meta["num_drones"]) == (8 if name in SWARM_RUNS else 1)
    assert int(meta["training_steps"]) == data["steps"] == cfg.total_steps
    assert meta["model_preset"] == cfg.model.preset == "deploy"
    assert meta["encoder"] == cfg.model.encoder
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", meta["source_commit"])
    assert meta["swarm_rl_version"] == swarm_rl.__version__
    assert "torch" in meta["producer"]
    model = onnx.load(str(run["onnx"]))
    assert (model.producer_name, model.producer_version) == ("swarm_rl", swarm_rl.__version__)
    summary = run["summary"]
    assert summary["metadata"] == meta and summary["path"] == str(run["onnx"])
    assert 0 < summary["params"] <= 5000  # the deploy preset fits the Crazyflie
    assert summary["parity_max_abs_error"] <= PARITY_TOL


@pytest.mark.parametrize("mode", ["motors", "velocity"])
def test_action_bounds_match_the_env(runs, mode):
    cfg = runs["hover_motors_deepsets"]["cfg"].env
    env = SwarmVecEnv(dataclasses.replace(cfg, action_mode=mode), 1)
    low, high = action_bounds(mode)
    np.testing.assert_array_equal(low, env.action_low)
    np.testing.assert_array_equal(high, env.action_high)
    with pytest.raises(ValueError, match="action_mode"):
        action_bounds("attitude")


def test_clamp_is_in_the_graph(runs, tmp_path):
    """A policy whose mean leaves the bounds is clamped by the exported graph too."""
    run = runs["swarm8_velocity_deepsets"]
    data = load_checkpoint(run["checkpoint"])
    data["actor"]["trunk.2.weight"] *= 300.0
    data["actor"]["trunk.2.bias"] += 0.5
    loud = tmp_path / "loud.pt"
    save_checkpoint(loud, {k: v for k, v in data.items() if k != "format_version"})
    out = tmp_path / "loud.onnx"
    export_onnx(loud, out)
    obs = recorded_observations(run, 2000, seed=3)
    actor, cfg, _ = load_actor(loud)
    with torch.no_grad():
        mean = actor(torch.from_numpy(obs)).numpy()
    assert (mean > 1).mean() > 0.05 and (mean < -1).mean() > 0.05
    got = _session(out).run(["action"], {"obs": obs})[0]
    assert got.min() == -1.0 and got.max() == 1.0
    assert parity(deterministic_policy(actor, cfg.env.action_mode), out, obs) <= PARITY_TOL


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("section, key, value, named", [
    ("model", "preset", "offboard",
     r"own\.0\.0\.weight: checkpoint \(32, 19\) vs model \(64, 19\)"),
    ("model", "encoder", "attention", r"missing neighbours\.query\.weight"),
    ("env", "neighbours_k", 4, r"norm\.mean: checkpoint \(70,\) vs model \(56,\)"),
])
def test_checkpoint_of_another_model_shape(runs, tmp_path, section, key, value, named):
    data = load_checkpoint(runs["hover_motors_deepsets"]["checkpoint"])
    data["config"][section][key] = value
    other = tmp_path / "other.pt"
    save_checkpoint(other, {k: v for k, v in data.items() if k != "format_version"})
    out = tmp_path / "other.onnx"
    with pytest.raises(CheckpointError, match=named) as err:
        export_onnx(other, out)
    assert str(other) in str(err.value) and "actor" in str(err.value)
    assert not out.exists()


def test_corrupt_checkpoints(runs, tmp_path):
    good = runs["hover_motors_deepsets"]["checkpoint"].read_bytes()
    cases = {
        "random.pt": np.random.default_rng(0).bytes(4096),
        "truncated.pt": good[: len(good) // 2],
        "truncated_tail.pt": good[:-100],
        "empty.pt": b"",
        # a pickle FRAME of absurd length: unpickling raises OverflowError, not a RuntimeError
        "overflow.pt": b"\x80\x04\x95" + b"\xff" * 8,
        "text.pt": b"checkpoint = 'not really'\n",
    }
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as err:
            export_onnx(path, tmp_path / "out.onnx")
        assert str(path) in str(err.value), name
    torch.save({"format_version": 1, "config": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks 'actor'"):
        export_onnx(tmp_path / "partial.pt", tmp_path / "out.onnx")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_policy_files_that_are_not_onnx(tmp_path):
    cases = {"random.onnx": np.random.default_rng(0).bytes(2048),
             "text.onnx": b"this is a text file, not a policy\n",
             "empty.onnx": b""}
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(PolicyFileError, match=re.escape(str(path))):
            read_policy_metadata(path)
    with pytest.raises(PolicyFileError, match="no such policy file"):
        read_policy_metadata(tmp_path / "missing.onnx")
    assert issubclass(PolicyFileError, ValueError)


def _rewrite(src: Path, dst: Path, drop: str | None = None, **values: str) -> Path:
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props if p.key != drop}
    props.update(values)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("key", ["obs_layout_version", "obs_dim", "action_mode", "control_hz",
                                 "training_steps", "source_commit"])
def test_policy_file_missing_a_metadata_key(runs, tmp_path, key):
    path = _rewrite(runs["hover_motors_deepsets"]["onnx"], tmp_path / "p.onnx", drop=key)
    with pytest.raises(PolicyFileError, match=f"lacks '{key}'") as err:
        read_policy_metadata(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("key, value", [
    ("obs_dim", "71"), ("obs_neighbours_k", "five"), ("action_mode", "attitude"),
    ("action_low", "0,0,0"), ("action_high", "0,0,0,0"), ("obs_slices", "goal_error:0"),
    ("control_hz", "0"), ("num_drones", "-1"),
])
def test_policy_file_with_an_invalid_metadata_value(runs, tmp_path, key, value):
    path = _rewrite(runs["hover_motors_deepsets"]["onnx"], tmp_path / "p.onnx", **{key: value})
    with pytest.raises(PolicyFileError, match=f"metadata '{key}'") as err:
        read_policy_metadata(path)
    assert str(path) in str(err.value)


def test_policy_file_whose_graph_does_not_match_its_metadata(runs, tmp_path):
    """obs_dim, obs_slices and K consistent with each other, but not with the graph input."""
    src = runs["hover_motors_deepsets"]["onnx"]
    other = ObsLayout(3).metadata()
    path = _rewrite(src, tmp_path / "p.onnx", **other)
    with pytest.raises(PolicyFileError, match=r"graph input 'obs' must be float32 \[batch, 49\]"):
        read_policy_metadata(path)


@pytest.mark.parametrize("failure", ["checker", "fsync"])
def test_failed_export_leaves_the_previous_file(runs, tmp_path, monkeypatch, failure):
    out = tmp_path / "policy.onnx"
    previous = runs["hover_motors_deepsets"]["onnx"].read_bytes()
    out.write_bytes(previous)

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash in the middle of the export")

    if failure == "checker":
        monkeypatch.setattr(onnx.checker, "check_model", boom)
    else:  # while the new file is being written
        monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export_onnx(runs["swarm8_motors_attention"]["checkpoint"], out)
    assert out.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.onnx"]


def test_bad_opset(runs, tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(runs["hover_motors_deepsets"]["checkpoint"], tmp_path / "p.onnx", opset=13)


def test_reading_metadata_needs_no_torch(runs):
    code = ("import sys; from swarm_rl.export import read_policy_metadata as r; "
            f"m = r({str(runs['hover_motors_deepsets']['onnx'])!r}); "
            "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules; "
            "print(m['obs_dim'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "70"
