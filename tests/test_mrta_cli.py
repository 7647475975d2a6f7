"""``swarm-rl train`` and ``swarm-rl eval`` on task-allocation presets, run as a user runs
them: in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout_s: float = 180):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "swarm_rl.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_eval_baselines_table_json_and_bar_chart(tmp_path):
    png = tmp_path / "bars.png"
    proc = run_cli("eval", "--baseline", "market", "--baseline", "greedy", "--scenario",
                   "mrta_small", "--seeds", "2", "--episodes", "16", "--plot", str(png),
                   "--json")
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    assert out["seeds"] == [0, 1] and out["episodes_per_seed"] == 16
    market, greedy = out["methods"]
    assert market["label"].startswith("market") and greedy["label"].startswith("greedy")
    for m in (market, greedy):
        assert set(m["table"]) == {"return", "completed_L1", "completed_L2", "completed_L3",
                                   "travel_per_robot_m"}
        assert len(m["per_seed"]["return"]) == 2
    assert market["table"]["return"]["mean"] > greedy["table"]["return"]["mean"]
    assert "| market (PCFA-style, lambda 0.1) |" in proc.stdout  # mrta_small's discount
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_rejects_an_unknown_baseline_and_a_missing_policy():
    proc = run_cli("eval", "--baseline", "auction", "--scenario", "mrta_small")
    assert proc.returncode == 2
    assert "--baseline" in proc.stderr and "market, greedy" in proc.stderr
    proc = run_cli("eval", "--scenario", "hover")
    assert proc.returncode == 2 and "--policy" in proc.stderr


def test_train_preset_then_eval_the_policy_with_ablations(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("train", "--preset", "mrta_small", "--steps", "100", "--set",
                   "ppo.num_envs=2", "--out", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    assert result["steps"] == 320 and Path(result["policy"]).exists()
    proc = run_cli("eval", "--policy", result["policy"], "--scenario", "mrta_small",
                   "--seeds", "1", "--episodes", "4", "--ablations", "--json")
    assert proc.returncode == 0, proc.stderr
    labels = [m["label"] for m in last_json(proc.stdout)["methods"]]
    assert labels == ["policy", "policy, revision off", "policy, sharing off at test time"]
    exported = tmp_path / "again.onnx"
    proc = run_cli("export", "onnx", str(run / "checkpoint.pt"), "-o", str(exported), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = last_json(proc.stdout)
    assert summary["opset"] == 17 and summary["parity_max_abs_error"] < 1e-4
    assert exported.read_bytes() == Path(result["policy"]).read_bytes(), \
        "export onnx of an MRTA checkpoint writes the task policy train wrote"
    proc = run_cli("train", "--preset", "mrta_small", "--set", "ppo.lr=-1")
    assert proc.returncode == 2 and "ppo.lr" in proc.stderr
