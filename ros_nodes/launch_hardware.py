"""``swarm-rl launch`` for the hardware graph: robot nodes + ``crazyflie_bridge`` over DDS.

Selected by a launch config with a ``crazyflies:`` section (``config/virtual_crazyflies.yaml``
is the reference). With ``virtual: N`` the launcher first starts ``swarm-rl virtual-crazyflie``
(N emulated Crazyflies on udp://127.0.0.1, the real cflib talks to them) so the whole radio
path runs without a radio; with ``virtual: 0`` the URIs of the crazyflies file are real radios.

The run: the bridge connects and takes every drone off; the launcher publishes each robot's
goal from ``mission.goals`` (latched, every second); the robots fly for ``duration_s`` wall
seconds with their policy and shield; then the launcher records where they are (success: within
``success_radius_m`` of the goal), lands them all (``/all/land``), waits until they are down and
stops the processes. The report has the emulator's ground truth where there is one (minimum
separation, collisions) and the bridge's link figures (losses, reconnects, rejected commands).
"""
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ros_nodes import messages as m
from ros_nodes.crazyflie_bridge import REPORT_FILE, TRAJECTORY_FILE
from ros_nodes.crazyflie_config import load_crazyflies
from ros_nodes.transport import QosKind, host_groups, robot_topic

log = logging.getLogger(__name__)
LANDED_M = 0.1
LAND_WAIT_S = 15.0


def hardware_commands(cfg, out: Path, names: list[str]) -> list[tuple[str, list[str]]]:
    from ros_nodes.launcher import _ros_args, with_realtime

    c = cfg.crazyflies
    bridge = {"config": c.config, "robots": names, "auto_takeoff": True,
              "report_dir": str(out), "dds.network": cfg.dds.network}
    cmds = [("crazyflie_bridge", [sys.executable, "-m", "ros_nodes.crazyflie_bridge",
                                  *_ros_args(bridge)])]
    for node, hosted in host_groups(names, cfg.robots.robots_per_process):
        robot = {"robots": hosted, "swarm": names, "policy": cfg.robots.policy,
                 "shield": cfg.robots.shield, "dds.network": cfg.dds.network,
                 **cfg.robots.params}
        cmds.append((node, [sys.executable, "-m", "ros_nodes.robot_node", *_ros_args(robot),
                            "-r", f"__node:={node}"]))
    return with_realtime(cmds, cfg.realtime_priority)


def run_hardware_launch(cfg, progress: bool | None = None) -> dict[str, Any]:
    from ros_nodes.launcher import StatusMonitor, _stop, write_summary_files
    from sim.virtual_crazyflie.process import VirtualCrazyflieProcess

    out = Path(cfg.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name in (REPORT_FILE, TRAJECTORY_FILE):
        (out / name).unlink(missing_ok=True)
    entries = [e for e in load_crazyflies(cfg.crazyflies.config) if e.enabled]
    names = [e.name for e in entries]
    goals = {n: np.asarray(cfg.mission.goals[n], float) for n in names}
    env = {**os.environ, "SWARM_RL_TRANSPORT": "dds"}
    if cfg.dds.domain_id >= 0:
        env["ROS_DOMAIN_ID"] = str(cfg.dds.domain_id)
    prev_domain = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = env.get("ROS_DOMAIN_ID", "0")
    virtual = None
    procs: list[tuple[str, subprocess.Popen]] = []
    monitor = StatusMonitor(names, cfg.dds.network)
    goal_pubs = {n: monitor.transport.create_publisher(m.PoseStamped, robot_topic(n, "goal"),
                                                       QosKind.LATCHED) for n in names}
    land = monitor.transport.create_publisher(m.Empty, "/all/land", QosKind.EVENTS)
    interrupted, snapshot, virtual_summary = False, None, None
    try:
        if cfg.crazyflies.virtual:
            virtual = VirtualCrazyflieProcess(
                drones=cfg.crazyflies.virtual, base_port=cfg.crazyflies.base_port).start()
        for name, argv in hardware_commands(cfg, out, names)[::-1]:  # robots first
            with open(logs / f"{name}.log", "w") as log_file:
                procs.append((name, subprocess.Popen(argv, env=env, stdout=log_file,
                                                     stderr=subprocess.STDOUT,
                                                     start_new_session=True)))
        start = time.monotonic()
        bar = tqdm(total=cfg.duration_s, unit="s", desc="swarm", leave=False,
                   disable=None if progress is None else not progress,
                   bar_format="{desc} {n:.1f}/{total:.0f} s [{elapsed}<{remaining}] {postfix}")
        with bar:
            while time.monotonic() - start < cfg.duration_s:
                for n, pub in goal_pubs.items():
                    pub.publish(m.pose_stamped(time.time(), goals[n]))
                monitor.transport.spin_until(lambda: False, 1.0)
                bar.n = min(time.monotonic() - start, cfg.duration_s)
                bar.set_postfix_str(monitor.line(), refresh=True)
        snapshot = monitor.pos.copy()
        land.publish(m.Empty())
        deadline = time.monotonic() + LAND_WAIT_S
        monitor.transport.spin_until(
            lambda: time.monotonic() > deadline or bool((monitor.pos[:, 2] < LANDED_M).all()))
        monitor.transport.spin_until(lambda: False, 0.6)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _stop(procs, timeout_s=30.0)
        monitor.close()
        if virtual is not None:
            try:
                virtual_summary = virtual.stop()
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                virtual.kill()
        if prev_domain is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = prev_domain
    if not (out / REPORT_FILE).exists():
        raise RuntimeError(f"crazyflie_bridge wrote no report; see {logs}")
    bridge = json.loads((out / REPORT_FILE).read_text())
    summary = summarise_hardware(cfg, names, goals, snapshot, bridge, virtual_summary,
                                 monitor.status, interrupted,
                                 {n: p.returncode for n, p in procs})
    with np.load(out / TRAJECTORY_FILE) as traj:
        positions = traj["positions_m"]
        dt_s = float(traj["dt_s"])
    goal_array = np.broadcast_to(np.array([goals[n] for n in names]), positions.shape)
    write_summary_files(out, summary, positions, goal_array, dt_s)
    return summary


def summarise_hardware(cfg, names, goals, snapshot, bridge, virtual_summary, status,
                       interrupted, exit_codes) -> dict[str, Any]:
    from ros_nodes.launcher import robot_totals

    dist = None if snapshot is None else np.linalg.norm(
        snapshot - np.array([goals[n] for n in names]), axis=1)
    truth = virtual_summary or {}
    minutes = max(cfg.duration_s, 1e-9) / 60.0
    collisions = truth.get("collision_events")
    return {
        "drones": len(names), "scenario": "crazyflies", "backend": (
            f"virtual Crazyflies ({cfg.crazyflies.virtual})" if cfg.crazyflies.virtual
            else "Crazyflie radios"),
        "policy": cfg.robots.policy, "shield": cfg.robots.shield,
        "robots_per_process": cfg.robots.robots_per_process or len(names),
        "sim_seconds": cfg.duration_s, "wall_seconds": cfg.duration_s,
        "real_time_factor": 1.0,
        "success_rate": None if dist is None else float(
            (dist < cfg.mission.success_radius_m).mean()),
        "final_distance_m": None if dist is None else float(dist.mean()),
        "collisions_per_drone_minute": None if collisions is None
        else collisions / len(names) / minutes,
        "collision_events": collisions,
        "crash_rate": None,
        "min_separation_m": truth.get("min_separation_m",
                                      bridge["min_separation_estimated_m"]),
        "min_separation_estimated_m": bridge["min_separation_estimated_m"],
        "landed": bridge["final_modes"], "link_losses": bridge["link_losses"],
        "reconnects": bridge["reconnects"], "rejected_commands": bridge["rejected_commands"],
        "latency_p50_ms": None, "latency_p99_ms": None, "watchdog_hover": 0,
        "watchdog_land": 0, **robot_totals(status), "interrupted": interrupted,
        "exit_codes": exit_codes, "out": cfg.out, "seed": 0,
    }
