"""The ``swarm-rl`` command line, run as a user runs it: in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None, timeout_s: float = 120):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "swarm_rl.cli", *args], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout_s)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_demo_flies_formation_and_writes_report(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--seconds", "8", "--drones", "4", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = last_json(proc.stdout)
    assert summary["success_rate"] == 1.0
    assert summary["collisions_per_drone_minute"] == 0.0
    assert summary["crash_rate"] == 0.0
    assert summary["drones"] == 4 and summary["backend"] == "pybullet"
    assert summary["min_separation_m"] > 0.2
    assert summary["real_time_factor"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["success_rate"] == 1.0 and metrics["seconds"] == 8.0
    assert "success rate" in (out / "summary.md").read_text()
    png = (out / "trajectories.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temp files left"


def test_bench_sim_reports_both_engines():
    proc = run_cli("bench", "sim", "--drones", "1,8", "--seconds", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "agent-steps/s" in proc.stdout
    report = last_json(proc.stdout)
    assert [r["drones"] for r in report["results"]] == [1, 8]
    for row in report["results"]:
        assert row["batched_agent_steps_per_s"] > 0
        assert row["pybullet_agent_steps_per_s"] > 0
        assert row["pybullet_real_time_factor"] > 0
        assert row["batched_num_envs"] * row["drones"] == pytest.approx(16384, rel=0.01)
    assert report["machine"]["cpu_count"] >= 1


@pytest.mark.parametrize("args, words", [
    (["bench", "sim", "--drones", "0"], ["--drones", ">= 1"]),
    (["bench", "sim", "--drones", "1,eight"], ["--drones"]),
    (["demo", "--formation", "hexagon"], ["--formation", "circle", "grid", "random"]),
    (["demo", "--backend", "foo"], ["--backend", "batched", "pybullet"]),
    (["demo", "--seconds", "-1"], ["--seconds", "> 0"]),
])
def test_bad_values_name_the_flag(args, words):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr


def test_config_error_inside_a_command_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run([sys.executable, "-m", "swarm_rl.cli", "demo", "--gui", "--out",
                           str(tmp_path)], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error: --gui" in proc.stderr and "DISPLAY" in proc.stderr


def test_unknown_subcommand_fails():
    proc = run_cli("fly-to-the-moon")
    assert proc.returncode != 0
    assert "fly-to-the-moon" in proc.stderr


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "swarm-rl 0.1.0"


TINY_TRAIN = ["--set", "ppo.num_envs=16", "--set", "ppo.rollout_steps=20",
              "--set", "env.episode_s=0.4", "--set", "ppo.minibatch_size=320"]


def test_train_then_export_round_trip(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("train", "--preset", "hover_single", "--steps", "640", "--out", str(run),
                   *TINY_TRAIN, "--json")
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    assert result["steps"] == 640
    assert (run / "policy.onnx").stat().st_size > 1000
    assert (run / "checkpoint.pt").exists() and (run / "progress.jsonl").exists()
    proc = run_cli("export", "onnx", str(run), "-o", str(tmp_path / "p.onnx"), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = last_json(proc.stdout)
    assert summary["parity_max_abs_error"] <= 1e-5
    assert summary["metadata"]["training_steps"] == "640"


@pytest.mark.parametrize("args, words", [
    (["train", "--preset", "nope"], ["--preset", "unknown preset 'nope'", "hover_single"]),
    (["train", "--set", "ppo.lrr=1"], ["ppo.lrr", "unknown option"]),
    (["train", "--set", "env.action_mode=thrust"], ["env.action_mode", "motors, velocity"]),
    (["export", "onnx", "/nonexistent/run", "-o", "x.onnx"], ["no such checkpoint"]),
])
def test_training_bad_input_is_one_clear_line(args, words):
    proc = run_cli(*args)
    assert proc.returncode == 2
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_shipped_policy_writes_table_and_plot(tmp_path):
    plot = tmp_path / "traj.png"
    proc = run_cli("eval", "--policy", "policies/hover_single_motors.onnx", "--scenario",
                   "hover_single", "--episodes", "4", "--plot", str(plot), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "success rate" in proc.stdout
    result = last_json(proc.stdout)
    assert result["episodes"] == 4 and len(result["per_episode"]["success_rate"]) == 4
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_refuses_a_policy_for_another_action_mode():
    proc = run_cli("eval", "--policy", "policies/hover_single_motors.onnx", "--scenario",
                   "obstacles_8", "--episodes", "1")
    assert proc.returncode == 2
    assert "action_mode=motors" in proc.stderr and "velocity" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_runtime_reports_latency_per_swarm_size():
    proc = run_cli("bench", "runtime", "--robots", "1,4", "--steps", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "max_robots_realtime_50hz" in proc.stdout
    report = last_json(proc.stdout)
    assert [r["robots"] for r in report["results"]] == [1, 4]
    for row in report["results"]:
        for part in ("step", "policy", "shield", "tick"):
            unit = "ms" if part == "tick" else "us"
            assert 0 < row[f"{part}_p50_{unit}"] <= row[f"{part}_p99_{unit}"], (part, row)
        assert 0.0 <= row["shield_intervention_share"] <= 1.0
        assert row["steps_timed"] == 30 * row["robots"]
    four = report["results"][1]
    assert four["mean_neighbours"] > 0 and four["table_updates_per_tick"] == 4  # shared table
    assert 0 < four["batched_steps_p50_ms"] <= four["batched_steps_p99_ms"]
    assert four["batched_speedup_p50"] > 0
    fits = [r["robots"] for r in report["results"] if r["tick_p99_ms"] <= 20.0]
    assert report["max_robots_realtime_50hz"] == (max(fits) if fits else None)
    assert report["machine"]["cpu_count"] >= 1
    assert report["layout"] == {"name": "formation", "scenario": "static_formation", "seed": 0}

    proc = run_cli("bench", "runtime", "--robots", "0")
    assert proc.returncode == 2
    assert "--robots" in proc.stderr and "Traceback" not in proc.stderr
