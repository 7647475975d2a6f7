"""The decentralised node graph as separate processes over real Cyclone DDS (loopback only).

ROS 2 itself cannot be installed here; these tests run the same nodes on the DDS transport
with ROS 2 wire conventions (see tests/test_wire_compat.py for the wire format). Every test uses
its own DDS domain, and the transport's localhost configuration (interface lo, multicast off,
peers on 127.0.0.1), so nothing leaves the machine. The bridge runs in lockstep with the robots
(``real_time_factor: 0``) where a test asserts flight outcomes, so results do not depend on how
loaded the machine is; the degraded-link test runs in real time because delay is wall time.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ros_nodes import messages as m
from ros_nodes.dds_transport import DdsTransport
from ros_nodes.launcher import (DdsSection, LaunchConfig, RobotsSection, SimSection,
                                _may_use_fifo, node_commands, run_launch)
from ros_nodes.sim_bridge import REPORT_FILE, TRAJECTORY_FILE
from ros_nodes.transport import QosKind
from sim.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
POLICY = str(REPO / "policies" / "formation_velocity_8.onnx")
SAFETY_M = 0.3


def domain(offset: int) -> int:
    """A DDS domain of this test alone (parallel runs on one machine stay apart)."""
    return 100 + (os.getpid() * 7 + offset) % 120


def config(tmp_path: Path, dom: int, duration_s: float = 12.0, per_process: int = 0,
           rtf: float = 0.0, **dds) -> LaunchConfig:
    return LaunchConfig(
        duration_s=duration_s, out=str(tmp_path / "run"),
        sim=SimSection(drones=8, scenario="circle_8", seed=0, real_time_factor=rtf),
        robots=RobotsSection(policy=POLICY, shield=True, robots_per_process=per_process,
                             params={"safety_distance_m": SAFETY_M}),
        dds=DdsSection(domain_id=dom, **dds)).validate("test")


def pair_distances(positions: np.ndarray) -> np.ndarray:
    """(T, N, N) centre distances, inf on the diagonal."""
    d = np.linalg.norm(positions[:, :, None] - positions[:, None], axis=-1)
    d[:, np.arange(d.shape[1]), np.arange(d.shape[1])] = np.inf
    return d


@pytest.mark.slow
def test_eight_robot_processes_reach_their_goals_without_collisions(tmp_path):
    summary = run_launch(config(tmp_path, domain(1), per_process=1), progress=False)
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert summary["robots_reporting"] == 8
    assert summary["success_rate"] == 1.0
    assert summary["collisions_per_drone_minute"] == 0.0
    assert summary["min_separation_m"] >= SAFETY_M
    assert summary["final_distance_m"] < 0.3
    assert summary["ticks"] >= 8 * 1100  # every robot answered (almost) every 100 Hz tick
    assert summary["shield_fallbacks"] == 0
    out = Path(summary["out"])
    assert (out / "trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "success rate" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["drones"] == 8


@pytest.mark.slow
def test_killed_robot_process_others_keep_flying_and_clear_of_it(tmp_path):
    cfg = config(tmp_path, domain(2), duration_s=12.0, per_process=1)
    out = Path(cfg.out)
    out.mkdir(parents=True)
    env = {**os.environ, "ROS_DOMAIN_ID": str(cfg.dds.domain_id), "SWARM_RL_TRANSPORT": "dds"}
    (_, bridge_cmd), *robot_cmds = node_commands(cfg, out)
    robots = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) for _, argv in robot_cmds]
    bridge = subprocess.Popen(bridge_cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        clock = DdsTransport("test_clock", domain_id=cfg.dds.domain_id)
        sim_t = []
        clock.create_subscription(m.Clock, "/clock",
                                  lambda c: sim_t.append(m.from_time(c.clock)), QosKind.SENSOR)
        clock.spin_until(lambda: bool(sim_t) and sim_t[-1] >= 3.0, 120.0)
        clock.close()
        robots[0].send_signal(signal.SIGKILL)  # cf1's process dies mid-flight, at t = 3 s
        assert bridge.wait(timeout=240) == 0, bridge.stderr.read()
    finally:
        for p in robots + [bridge]:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in robots + [bridge]:
            p.wait(timeout=20)
    report = json.loads((out / REPORT_FILE).read_text())
    with np.load(out / TRAJECTORY_FILE) as traj:
        pos, goals = traj["positions_m"], traj["goals_m"]
    assert 250 < report["commands"][0] < 0.5 * report["commands"][1], "killed mid-flight"
    assert report["watchdog_land"][0] == 1, "the bridge lands the robot nobody commands"
    assert sum(report["watchdog_land"][1:]) == 0
    assert pos[-1, 0, 2] < 0.15, "the orphaned drone landed"
    d = pair_distances(pos)
    assert d[:, 0, 1:].min() >= SAFETY_M - 0.02, "the others kept clear of it"
    assert report["collisions_per_drone_minute"] == 0.0
    survivors = np.linalg.norm(pos[-1, 1:] - goals[-1, 1:], axis=-1)
    assert (survivors < 0.5).all(), survivors


@pytest.mark.slow
def test_message_loss_and_delay_cause_no_collisions(tmp_path):
    summary = run_launch(config(tmp_path, domain(3), duration_s=12.0, rtf=1.0, loss=0.2,
                                delay_s=0.05), progress=False)
    assert summary["collisions_per_drone_minute"] == 0.0
    assert summary["min_separation_m"] >= SAFETY_M - 0.02
    assert summary["latency_p50_ms"] >= 50.0, "the delay was injected"
    assert summary["ticks_land"] == 0


def test_launch_cli_stops_cleanly_on_ctrl_c_and_still_reports(tmp_path):
    cfg = tmp_path / "swarm.yaml"
    cfg.write_text(f"fileversion: 1\nduration_s: 600\nout: {tmp_path / 'run'}\n"
                   "sim: {drones: 2, scenario: hover}\n"
                   f"robots: {{policy: {POLICY}}}\ndds: {{domain_id: {domain(4)}}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "swarm_rl.cli", "launch", str(cfg), "--json"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "SWARM_RL_LOG": "INFO"})
    bridge_log = tmp_path / "run" / "logs" / "sim_bridge.log"
    deadline = time.monotonic() + 120.0  # a loaded machine: imports and numba caches take long
    while not (bridge_log.exists() and "flight: clock started" in bridge_log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "the flight never started"
        time.sleep(0.2)
    time.sleep(2.0)  # some simulated time to report
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True
    assert 0 < summary["sim_seconds"] < 600
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert (tmp_path / "run" / "trajectories.png").exists()


def test_bench_graph_measures_a_small_swarm_on_either_engine():
    """``swarm-rl bench graph`` end to end on 4 robots for 2 s, with the batched engine behind
    the bridge: latencies measured, ticks answered, the engine recorded. (Timings are not
    asserted; they belong in docs/benchmarks.md.)"""
    from ros_nodes.bench_graph import format_table, run_bench

    fifo = 10 if _may_use_fifo(10) else 0  # root here; elsewhere the default scheduler
    report = run_bench((4,), processes=2, seconds=2.0, domain_id=domain(5), backend="batched",
                       realtime_priority=fifo)
    row, = report["rows"]
    assert report["backend"] == "batched" and row["processes"] == 2
    assert report["realtime_priority"] == fifo
    assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"] < 1e3
    # real time: ticks before the robot processes are up go unanswered (seconds on a busy box)
    assert row["ticks_answered"] > 0.05 and row["collisions_per_drone_minute"] == 0.0
    assert ("batched physics; nodes under SCHED_FIFO 10" if fifo else
            "batched physics; default scheduler") in format_table(report)


@pytest.mark.skipif(not _may_use_fifo(30), reason="SCHED_FIFO needs root or CAP_SYS_NICE")
def test_realtime_priority_starts_the_control_nodes_under_sched_fifo(tmp_path):
    """``realtime_priority``: the bridge and every robot host start under ``chrt -f N`` (the
    task server does not); out-of-range values are refused naming the key."""
    cfg = config(tmp_path, domain(6), per_process=4)
    cfg.realtime_priority = 30
    cmds = node_commands(cfg.validate("test"), tmp_path)
    assert [name for name, _ in cmds] == ["sim_bridge", "robots_cf1_cf4", "robots_cf5_cf8"]
    for _, argv in cmds:
        assert argv[:3] == ["chrt", "-f", "30"] and argv[3] == sys.executable
    from ros_nodes.launcher import with_realtime
    assert with_realtime([("task_server", ["python"])], 30) == [("task_server", ["python"])]
    cfg.realtime_priority = 100
    with pytest.raises(ConfigError, match="realtime_priority: must be 0 .* 1-99"):
        cfg.validate("test")
