"""``benchmarks/market_lambda.py``, run as a user runs it: the market on a small preset for two
arrival discounts, the best one named, the chart written; bad flags refused."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/market_lambda.py", *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=300)


def test_sweep_names_the_best_lambda_and_draws_the_chart(tmp_path):
    png = tmp_path / "lambda.png"
    proc = run_script("--presets", "mrta_small", "--lambdas", "0.1,3", "--seeds", "2",
                      "--episodes", "8", "--plot", str(png), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    res, = report["results"]
    assert report["seeds"] == [50, 51] and res["preset_lambda"] == 0.1
    returns = {r["lambda"]: r["return"] for r in res["rows"]}
    assert res["best_lambda"] == max(returns, key=returns.get)
    assert all(len(r["return_per_seed"]) == 2 for r in res["rows"])
    assert returns[0.1] != returns[3.0], "the discount must change the market's choices"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mrta_small |" in proc.stdout


def test_bad_flags_are_refused_naming_them():
    proc = run_script("--lambdas", "0.1,abc")
    assert proc.returncode == 2 and "--lambdas" in proc.stderr
