"""``swarm-rl bench train`` on a tiny budget: its figures and the load it ran under."""
from __future__ import annotations

from swarm_rl.bench_train import format_table, run_bench


def test_bench_reports_rates_and_load_average() -> None:
    report = run_bench("hover_single", updates=1, overrides=[
        "ppo.num_envs=4", "ppo.rollout_steps=10", "ppo.minibatch_size=20", "threads=1"])
    assert report["samples_per_update"] == 40
    assert report["agent_steps_per_s"] > 0
    before, after = report["machine"]["load_average_1min"]
    assert before >= 0 and after >= 0
    assert "load average" in format_table(report)
