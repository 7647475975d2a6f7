"""``swarm-rl bench runtime``'s figures of the stacked path (swarm_rl/bench_runtime.py): the
shield timed as the nodes run it, from the step_robots commands' diagnostics."""
from __future__ import annotations

import time

import numpy as np
import pytest

from sim.errors import ConfigError
from swarm_rl.bench_runtime import POLICY, _stacked_shield_row, measure, run_bench
from swarm_rl.runtime.policy import OnnxPolicy


def test_stacked_shield_figures_come_from_every_batched_command():
    row = measure(OnnxPolicy(POLICY), robots=6, steps=30, warmup_ticks=5)
    assert 0 < row["batched_shield_p50_us"] <= row["batched_shield_p99_us"]
    assert 0 < row["batched_shield_tick_p50_ms"] <= row["batched_shield_tick_p99_ms"]
    # a robot's share of the pass is a part of the whole step_robots call
    assert row["batched_shield_tick_p50_ms"] < row["batched_steps_p99_ms"]
    assert 0.0 <= row["batched_qp_solve_share"] <= 1.0
    per_robot_tables = measure(OnnxPolicy(POLICY), robots=3, steps=5, warmup_ticks=1,
                               shared_table=False)
    assert "batched_shield_p50_us" not in per_robot_tables  # no step_robots run then


def test_stacked_shield_row_sums_each_tick_and_counts_the_solves():
    filter_us = np.array([[10.0, 20.0, np.nan], [30.0, 40.0, 50.0]])
    solve_us = np.array([[np.nan, 5.0, np.nan], [np.nan, np.nan, np.nan]])
    row = _stacked_shield_row(filter_us, solve_us)
    assert row["batched_shield_tick_p50_ms"] == np.percentile([0.03, 0.12], 50)
    assert row["batched_shield_p50_us"] == 30.0
    assert row["batched_qp_solve_p50_us"] == 5.0 and row["batched_qp_solve_share"] == 1 / 6
    empty = _stacked_shield_row(filter_us, np.full_like(solve_us, np.nan))
    assert empty["batched_qp_solve_p50_us"] is None and empty["batched_qp_solve_share"] == 0.0


def test_idle_between_ticks_changes_only_the_timings():
    """``--idle-ms`` sleeps before each timed part (robot by robot, then step_robots), as a
    node waits for its next state: the wall time grows by that, the flight does not change."""
    policy = OnnxPolicy(POLICY)
    back_to_back = measure(policy, robots=4, steps=10, warmup_ticks=2)
    start = time.perf_counter()
    idle = measure(policy, robots=4, steps=10, warmup_ticks=2, idle_s=0.01)
    assert time.perf_counter() - start >= 10 * 2 * 0.01
    for key in ("shield_intervention_share", "qp_solve_share", "mean_neighbours",
                "non_policy_share", "batched_qp_solve_share"):
        assert idle[key] == back_to_back[key], key


def test_idle_ms_out_of_range_is_refused_by_name():
    with pytest.raises(ConfigError, match="--idle-ms"):
        run_bench((2,), steps=2, idle_ms=-1.0, progress=False)
