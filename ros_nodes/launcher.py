"""``swarm-rl launch CONFIG.yaml``: the ROS 2 node graph without ROS 2, as separate processes.

Starts one ``sim_bridge`` process and the ``robot_node`` processes (``robots_per_process``
robots each: 1 for one process per robot, the swarm size for one host) on the Cyclone DDS
transport, shows a live status line, stops them cleanly at the end or on Ctrl-C, and writes
into ``out``: ``summary.json`` and ``summary.md`` (success, minimum separation, collisions,
shield interventions, state-to-command latency) and ``trajectories.png``. It is the same graph
``launch/sim_swarm.launch.py`` starts under ``ros2 launch``.

The config (``config/sim_swarm.yaml`` is the reference) is validated on load; an error names
the file and the field. See :class:`LaunchConfig`.
"""
import json
import logging
import os
import signal
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from ros_nodes import messages as m
from ros_nodes.sim_bridge import REPORT_FILE, TRAJECTORY_FILE
from ros_nodes.task_server import REPORT_FILE as TASK_REPORT
from ros_nodes.transport import SWARM_STATE_TOPIC, QosKind, host_groups, robot_topic
from sim.errors import ConfigError
from swarm_rl import files
from swarm_rl.bench_report import figure

log = logging.getLogger(__name__)
FILE_VERSION = 1
SUMMARY_JSON, SUMMARY_MD, PLOT_FILE = "summary.json", "summary.md", "trajectories.png"


@dataclass
class SimSection:
    """The ``sim:`` block: the simulated swarm (``sim_bridge`` parameters)."""

    drones: int = 8
    scenario: str = "static_formation"
    seed: int = 0
    backend: str = "pybullet"
    control_rate_hz: int = 0
    """Odometry / command rate (Hz); 0: the policy's training rate (its metadata)."""
    real_time_factor: float = 1.0
    """1: real time; 0: lockstep (each tick waits for the robots; robots follow /clock)."""
    params: dict = field(default_factory=dict)
    """Any other sim_bridge parameter, by name."""


@dataclass
class RobotsSection:
    """The ``robots:`` block: the robot nodes."""

    policy: str = "policies/formation_velocity_8.onnx"
    shield: bool = True
    robots_per_process: int = 0
    """Robots hosted per process; 0: all in one process."""
    params: dict = field(default_factory=dict)
    """Any other robot_node parameter, by name (e.g. safety_distance_m)."""


@dataclass
class MissionSection:
    """The ``mission:`` block: where the robots' goals come from."""

    kind: str = "goals"
    """goals: the scenario's goals (sim_bridge); tasks: a task_server and each robot's task
    layer (coalition tasks of an MRTA preset)."""
    preset: str = "mrta_room_8"
    """tasks: the MRTA preset (config/mrta/)."""
    policy: str = "greedy"
    """tasks: greedy, or an exported task policy (.onnx)."""
    goals: dict = field(default_factory=dict)
    """goals on Crazyflies: robot name -> [x, y, z] (m, world ENU)."""
    success_radius_m: float = 0.5
    """goals on Crazyflies: a robot within this distance of its goal at the end succeeded."""


@dataclass
class CrazyfliesSection:
    """The ``crazyflies:`` block: fly Crazyflies (real or virtual) instead of the simulator."""

    config: str = ""
    """A crazyflies.yaml (ros_nodes/crazyflie_config.py); empty: the simulated graph."""
    virtual: int = 0
    """Start this many virtual Crazyflies first (swarm-rl virtual-crazyflie); 0: real radios."""
    base_port: int = 19850
    """Virtual Crazyflies: drone i listens on udp://127.0.0.1:base_port + i."""


@dataclass
class DdsSection:
    domain_id: int = -1
    """DDS domain (ROS_DOMAIN_ID); -1: the environment's ROS_DOMAIN_ID, else 0."""
    network: str = "localhost"
    """localhost (never leaves this machine) or system (CYCLONEDDS_URI decides)."""
    loss: float = 0.0
    """Injected loss of received messages in the robot nodes (tests of degraded links)."""
    delay_s: float = 0.0
    """Injected delay of received messages in the robot nodes (s)."""


@dataclass
class LaunchConfig:
    fileversion: int = FILE_VERSION
    duration_s: float = 20.0
    out: str = "results/launch"
    sim: SimSection = field(default_factory=SimSection)
    robots: RobotsSection = field(default_factory=RobotsSection)
    mission: MissionSection = field(default_factory=MissionSection)
    crazyflies: CrazyfliesSection = field(default_factory=CrazyfliesSection)
    dds: DdsSection = field(default_factory=DdsSection)
    realtime_priority: int = 0
    """1-99: run the sim bridge and the robot nodes under SCHED_FIFO at this priority (as
    ``chrt -f N``, the usual way to give ROS 2 control nodes real-time scheduling; needs root
    or CAP_SYS_NICE), so that other work on the machine cannot delay a tick. 0: the default
    scheduler."""

    def validate(self, where: str) -> "LaunchConfig":
        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{where}: {key}: {message}")

        need(self.fileversion == FILE_VERSION, "fileversion",
             f"this swarm-rl reads version {FILE_VERSION}, got {self.fileversion}")
        need(self.duration_s > 0, "duration_s", f"must be > 0, got {self.duration_s}")
        need(self.sim.drones >= 1, "sim.drones", f"must be >= 1, got {self.sim.drones}")
        need(self.sim.backend in ("pybullet", "batched"), "sim.backend",
             f"must be pybullet or batched, got {self.sim.backend!r}")
        need(self.sim.control_rate_hz >= 0, "sim.control_rate_hz", "must be >= 0")
        need(self.sim.real_time_factor >= 0, "sim.real_time_factor", "must be >= 0")
        need(self.robots.robots_per_process >= 0, "robots.robots_per_process", "must be >= 0")
        need(Path(self.robots.policy).is_file(), "robots.policy",
             f"no such file: {self.robots.policy}")
        need(self.mission.kind in ("goals", "tasks"), "mission.kind",
             f"must be goals or tasks, got {self.mission.kind!r}")
        need(self.mission.policy == "greedy" or Path(self.mission.policy).is_file(),
             "mission.policy", f"greedy or an existing .onnx file, got {self.mission.policy!r}")
        need(self.dds.network in ("localhost", "system"), "dds.network",
             f"must be localhost or system, got {self.dds.network!r}")
        need(-1 <= self.dds.domain_id <= 232, "dds.domain_id", "must be in [0, 232] or -1")
        need(0 <= self.dds.loss < 1, "dds.loss", "must be in [0, 1)")
        need(self.dds.delay_s >= 0, "dds.delay_s", "must be >= 0")
        for key, value in {**self.sim.params, **self.robots.params}.items():
            need(isinstance(key, str), "params", f"parameter names must be strings: {key!r}")
        need(0 <= self.realtime_priority <= 99, "realtime_priority",
             f"must be 0 (off) or a SCHED_FIFO priority 1-99, got {self.realtime_priority}")
        if self.realtime_priority:
            need(_may_use_fifo(self.realtime_priority), "realtime_priority",
                 "SCHED_FIFO is not allowed here (chrt missing, or no root / CAP_SYS_NICE); "
                 "use 0")
        if self.crazyflies.config:
            self._validate_crazyflies(need)
        return self

    def _validate_crazyflies(self, need) -> None:
        from ros_nodes.crazyflie_config import load_crazyflies

        need(Path(self.crazyflies.config).is_file(), "crazyflies.config",
             f"no such file: {self.crazyflies.config}")
        need(self.mission.kind == "goals", "mission.kind", "Crazyflies fly the goals mission")
        need(0 <= self.crazyflies.virtual <= 64, "crazyflies.virtual", "must be in 0..64")
        names = [e.name for e in load_crazyflies(self.crazyflies.config) if e.enabled]
        for name in names:
            goal = self.mission.goals.get(name)
            need(isinstance(goal, list) and len(goal) == 3
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                         for v in goal), f"mission.goals.{name}",
                 f"expected [x, y, z] for every enabled robot, got {goal!r}")


def load_launch_config(path: str | Path, overrides: dict[str, Any] | None = None
                       ) -> LaunchConfig:
    from sim.config import build_dataclass, read_yaml_mapping

    path = Path(path)
    data = read_yaml_mapping(path)
    data.update(overrides or {})
    try:
        cfg = build_dataclass(LaunchConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg.validate(str(path))


def _may_use_fifo(priority: int) -> bool:
    """Whether ``chrt -f priority`` can start a process here."""
    chrt = shutil.which("chrt")
    return chrt is not None and subprocess.run(
        [chrt, "-f", str(priority), "true"], capture_output=True).returncode == 0


def _ros_args(params: dict[str, Any]) -> list[str]:
    out = ["--ros-args"]
    for key, value in params.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        out += ["-p", f"{key}:={text}"]
    return out


def policy_rate_hz(policy: str) -> int:
    """The control rate a policy was trained at (its ``control_hz`` metadata)."""
    from swarm_rl.export import read_policy_metadata

    return int(read_policy_metadata(policy)["control_hz"])


def node_commands(cfg: LaunchConfig, out: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of every process of the graph: the bridge first, then the task server (a
    tasks mission), then the robot hosts."""
    names = [f"cf{i + 1}" for i in range(cfg.sim.drones)]
    lockstep = cfg.sim.real_time_factor == 0
    rate_hz = cfg.sim.control_rate_hz or policy_rate_hz(cfg.robots.policy)
    bridge = {"drones": cfg.sim.drones, "scenario": cfg.sim.scenario, "seed": cfg.sim.seed,
              "backend": cfg.sim.backend, "control_rate_hz": rate_hz,
              "real_time_factor": cfg.sim.real_time_factor, "hold_at_start": not lockstep,
              "duration_s": cfg.duration_s,
              "report_dir": str(out), "dds.network": cfg.dds.network,
              "publish_goals": cfg.mission.kind == "goals", **cfg.sim.params}
    cmds = [("sim_bridge", [sys.executable, "-m", "ros_nodes.sim_bridge",
                            *_ros_args(bridge)])]
    tasks = cfg.mission.kind == "tasks"
    if tasks:
        server = {"robots": names, "preset": cfg.mission.preset, "seed": cfg.sim.seed,
                  "report_dir": str(out), "use_sim_time": lockstep,
                  "dds.network": cfg.dds.network}
        cmds.append(("task_server", [sys.executable, "-m", "ros_nodes.task_server",
                                     *_ros_args(server)]))
    for node, hosted in host_groups(names, cfg.robots.robots_per_process):
        robot = {"robots": hosted, "swarm": names, "neighbour_source": "swarm_state",
                 "policy": cfg.robots.policy,
                 "shield": cfg.robots.shield, "control_rate_hz": float(rate_hz),
                 "use_sim_time": lockstep, "dds.network": cfg.dds.network,
                 **({"mission": "tasks", "task_preset": cfg.mission.preset,
                     "task_policy": cfg.mission.policy} if tasks else {}),
                 **cfg.robots.params}
        if cfg.dds.loss or cfg.dds.delay_s:
            robot.update({"dds.loss": cfg.dds.loss, "dds.delay_s": cfg.dds.delay_s,
                          "dds.seed": names.index(hosted[0])})
        cmds.append((node, [sys.executable, "-m", "ros_nodes.robot_node",
                            *_ros_args(robot), "-r", f"__node:={node}"]))
    return with_realtime(cmds, cfg.realtime_priority)


def with_realtime(cmds: list[tuple[str, list[str]]], priority: int
                  ) -> list[tuple[str, list[str]]]:
    """``cmds`` with the control loop's nodes (bridges, robot nodes; not the task server)
    started under ``chrt -f priority``; unchanged for priority 0."""
    if not priority:
        return cmds
    fifo = ["chrt", "-f", str(priority)]
    return [(name, argv if name == "task_server" else fifo + argv) for name, argv in cmds]


class StatusMonitor:
    """Follows /cfN/status, and /swarm/state (``swarm_state``: a simulator publishes it) or
    every /cfN/pose, on DDS for the live line and the summary."""

    def __init__(self, names: list[str], network: str, swarm_state: bool = False) -> None:
        from ros_nodes.dds_transport import DdsTransport

        self.transport = DdsTransport("swarm_rl_launch", network=network)
        self.names = names
        self.status: dict[str, dict[str, str]] = {}
        self.pos = np.full((len(names), 3), np.nan)
        self.sim_t_s = 0.0
        if swarm_state:
            self.transport.create_subscription(m.MultiDOFJointState, SWARM_STATE_TOPIC,
                                               self._on_swarm_state, QosKind.SENSOR,
                                               decode=m.swarm_state_arrays)
        for i, name in enumerate(names):
            self.transport.create_subscription(m.DiagnosticArray, robot_topic(name, "status"),
                                               self._on_status, QosKind.EVENTS)
            if not swarm_state:
                self.transport.create_subscription(m.PoseStamped, robot_topic(name, "pose"),
                                                   lambda msg, i=i: self._on_pose(i, msg),
                                                   QosKind.SENSOR)
        self.transport.create_subscription(m.Clock, "/clock", self._on_clock, QosKind.SENSOR)
        self._t0: float | None = None

    def _on_status(self, msg: m.DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.endswith("/robot_node"):
                self.status[st.name.split("/")[0]] = {kv.key: kv.value for kv in st.values}

    def _on_pose(self, i: int, msg: m.PoseStamped) -> None:
        self.pos[i] = m.vec(msg.pose.position)

    def _on_swarm_state(self, msg: m.MultiDOFJointState | m.SwarmStateArrays) -> None:
        try:
            names, pos, *_ = m.read_swarm_state(msg)
        except ValueError:
            return
        index = {name: i for i, name in enumerate(self.names)}
        for name, p in zip(names, pos):
            if name in index:
                self.pos[index[name]] = p

    def _on_clock(self, msg: m.Clock) -> None:
        t = m.from_time(msg.clock)
        if self._t0 is None:
            self._t0 = t
        self.sim_t_s = t - self._t0

    def line(self) -> str:
        modes = [s.get("mode", "?") for s in self.status.values()]
        d = np.linalg.norm(self.pos[:, None] - self.pos[None], axis=-1)
        d[np.eye(len(self.names), dtype=bool)] = np.inf
        sep = np.nanmin(d) if np.isfinite(d).any() else float("nan")
        hits = sum(int(s.get("shield_interventions", 0)) for s in self.status.values())
        return (f"robots {len(self.status)}/{len(self.names)} "
                f"policy {modes.count('policy')} hover {modes.count('hover')} "
                f"land {modes.count('land')} | min sep {sep:.2f} m | shield {hits}")

    def close(self) -> None:
        self.transport.close()


def _stop(procs: list[tuple[str, subprocess.Popen]], timeout_s: float = 10.0) -> None:
    for _, proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for name, proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop on SIGINT: killed", name)
            proc.kill()
            proc.wait()


def run_launch(cfg: LaunchConfig, progress: bool | None = None,
               log_dir: Path | None = None) -> dict[str, Any]:
    """Run the graph for ``cfg.duration_s`` of simulated time (or until Ctrl-C) and write
    the report; returns the summary. A config with ``crazyflies.config`` runs the hardware
    graph instead (:mod:`ros_nodes.launch_hardware`)."""
    if cfg.crazyflies.config:
        from ros_nodes.launch_hardware import run_hardware_launch

        return run_hardware_launch(cfg, progress)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).unlink(missing_ok=True)
    env = dict(os.environ)
    if cfg.dds.domain_id >= 0:
        env["ROS_DOMAIN_ID"] = str(cfg.dds.domain_id)
    env["SWARM_RL_TRANSPORT"] = "dds"
    prev_domain = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = env.get("ROS_DOMAIN_ID", "0")
    names = [f"cf{i + 1}" for i in range(cfg.sim.drones)]
    monitor = StatusMonitor(names, cfg.dds.network, swarm_state=True)
    procs: list[tuple[str, subprocess.Popen]] = []
    logs = log_dir or out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    interrupted = False
    try:
        (out / TASK_REPORT).unlink(missing_ok=True)
        robots_first = node_commands(cfg, out)
        for name, argv in robots_first[1:] + robots_first[:1]:  # robots listen before t = 0
            with open(logs / f"{name}.log", "w") as log_file:
                procs.append((name, subprocess.Popen(argv, env=env, stdout=log_file,
                                                     stderr=subprocess.STDOUT,
                                                     start_new_session=True)))
        bridge = procs[-1][1]
        reported: set[str] = set()
        bar = tqdm(total=cfg.duration_s, unit="sim s", desc="swarm", leave=False,
                   disable=None if progress is None else not progress,
                   bar_format="{desc} {n:.1f}/{total:.0f} s [{elapsed}<{remaining}] {postfix}")
        with bar:
            while bridge.poll() is None:
                monitor.transport.spin_until(lambda: False, 0.2)
                bar.n = min(monitor.sim_t_s, cfg.duration_s)
                bar.set_postfix_str(monitor.line(), refresh=True)
                for name, proc in procs:
                    if proc.poll() not in (None, 0) and name not in reported:
                        reported.add(name)
                        log.warning("%s exited with code %s (see %s)", name, proc.returncode,
                                    logs / f"{name}.log")
        monitor.transport.spin_until(lambda: False, 0.6)  # the last status messages
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _stop(procs)
        monitor.close()
        if prev_domain is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = prev_domain
    report_path = out / REPORT_FILE
    if not report_path.exists():
        raise RuntimeError(f"sim_bridge wrote no report; see {logs / 'sim_bridge.log'}")
    bridge_report = json.loads(report_path.read_text())
    summary = summarise(cfg, bridge_report, monitor.status, interrupted,
                        {n: p.returncode for n, p in procs})
    if (out / TASK_REPORT).exists():
        tasks = json.loads((out / TASK_REPORT).read_text())
        summary.update({"tasks_completed_by_level": tasks["completed_by_level"],
                        "task_return": tasks["return"], "task_preset": tasks["preset"],
                        "success_rate": None, "final_distance_m": None})  # no fixed goals
    write_report(out, summary)
    return summary


def robot_totals(status: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Swarm totals of the robot nodes' last /cfN/status values."""
    def total(key: str) -> int:
        return sum(int(float(s.get(key, 0))) for s in status.values())

    ticks = total("ticks")
    p99 = [float(s["policy_latency_p99_us"]) for s in status.values()
           if "policy_latency_p99_us" in s]
    rejected: dict[str, int] = {}
    for s in status.values():
        for k, v in s.items():
            if k.startswith("rejected_"):
                rejected[k[9:]] = rejected.get(k[9:], 0) + int(float(v))
    return {"shield_interventions": total("shield_interventions"),
            "shield_intervention_rate": total("shield_interventions") / ticks if ticks else None,
            "shield_fallbacks": total("shield_fallbacks"), "ticks": ticks,
            "ticks_hover": total("ticks_hover"), "ticks_land": total("ticks_land"),
            "rejected": rejected, "policy_latency_p99_us": max(p99) if p99 else None,
            "robots_reporting": len(status)}


def summarise(cfg: LaunchConfig, bridge: dict[str, Any], status: dict[str, dict[str, str]],
              interrupted: bool, exit_codes: dict[str, int]) -> dict[str, Any]:
    return {
        "drones": bridge["drones"], "scenario": bridge["scenario"], "seed": bridge["seed"],
        "backend": bridge["backend"], "policy": cfg.robots.policy, "shield": cfg.robots.shield,
        "robots_per_process": cfg.robots.robots_per_process or bridge["drones"],
        "sim_seconds": bridge["sim_seconds"], "wall_seconds": bridge["wall_seconds"],
        "real_time_factor": bridge["real_time_factor"],
        "success_rate": bridge["success_rate"],
        "collisions_per_drone_minute": bridge["collisions_per_drone_minute"],
        "crash_rate": bridge["crash_rate"], "min_separation_m": bridge["min_separation_m"],
        "final_distance_m": bridge["final_distance_m"],
        "latency_p50_ms": bridge["latency_p50_ms"], "latency_p99_ms": bridge["latency_p99_ms"],
        "ticks_answered_share": (sum(bridge["ticks_answered"])
                                 / (bridge["drones"] * bridge["ticks"])
                                 if bridge["ticks"] else None),
        "watchdog_hover": sum(bridge["watchdog_hover"]),
        "watchdog_land": sum(bridge["watchdog_land"]),
        **robot_totals(status), "interrupted": interrupted,
        "exit_codes": exit_codes, "out": cfg.out,
    }


def summary_markdown(s: dict[str, Any]) -> str:
    rows = [("drones", s["drones"]), ("scenario", s["scenario"]), ("policy", s["policy"]),
            ("shield", "CBF" if s["shield"] else "off"),
            ("robots per process", s["robots_per_process"]),
            ("simulated time (s)", figure(s["sim_seconds"], "{:.1f}")),
            ("real-time factor", figure(s["real_time_factor"], "{:.2f}")),
            ("success rate", figure(s["success_rate"], "{:.0%}")),
            ("collisions per drone-minute", figure(s["collisions_per_drone_minute"], "{:.3f}")),
            ("min separation (m)", figure(s["min_separation_m"], "{:.3f}")),
            ("final distance to goal (m)", figure(s["final_distance_m"], "{:.3f}")),
            ("shield interventions (share of ticks)",
             figure(s["shield_intervention_rate"], "{:.1%}")),
            ("shield fallbacks", s["shield_fallbacks"]),
            ("state-to-command latency p50 / p99 (ms)",
             f"{figure(s['latency_p50_ms'], '{:.2f}')} / {figure(s['latency_p99_ms'], '{:.2f}')}"),
            ("policy inference p99 (us)", figure(s["policy_latency_p99_us"], "{:.0f}")),
            ("ticks answered within the tick", figure(s.get("ticks_answered_share"), "{:.1%}")),
            ("watchdog hover / land events", f"{s['watchdog_hover']} / {s['watchdog_land']}")]
    if "link_losses" in s:
        rows += [("landed at the end", ", ".join(f"{k} {v}" for k, v in s["landed"].items())),
                 ("link losses / reconnects", f"{sum(s['link_losses'].values())} / "
                                              f"{sum(s['reconnects'].values())}"),
                 ("collision events (emulator ground truth)",
                  figure(s["collision_events"], "{}"))]
    if "task_return" in s:
        rows += [("tasks completed (level 1 / 2 / 3)",
                  " / ".join(str(v) for v in s["tasks_completed_by_level"])),
                 ("team return (sum of L^2)", f"{s['task_return']:.0f}")]
    width = max(len(r[0]) for r in rows)
    lines = ["# swarm-rl launch: decentralised swarm over DDS", "",
             f"| {'metric':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    lines += ["", f"Trajectories: [{PLOT_FILE}]({PLOT_FILE}); all figures: "
              f"[{SUMMARY_JSON}]({SUMMARY_JSON}).", ""]
    return "\n".join(lines)


def write_report(out: Path, summary: dict[str, Any]) -> None:
    with np.load(out / TRAJECTORY_FILE) as traj:
        write_summary_files(out, summary, traj["positions_m"], traj["goals_m"],
                            float(traj["dt_s"]))


def write_summary_files(out: Path, summary: dict[str, Any], positions: np.ndarray,
                        goals: np.ndarray, dt_s: float) -> None:
    """summary.json, summary.md and trajectories.png (positions, goals: (T, N, 3))."""
    from swarm_rl.plots import plot_trajectories

    files.write_json(out / SUMMARY_JSON, summary)
    files.write_text(out / SUMMARY_MD, summary_markdown(summary))
    known = np.isfinite(positions).all(axis=(1, 2))  # samples before every link was up: no
    positions, goals = positions[known], goals[known]
    if len(positions) > 1:
        if "task_return" in summary:
            outcome = ("tasks completed by level " + "/".join(
                str(v) for v in summary["tasks_completed_by_level"]) + " (goal: the "
                "robot's current target)")
        elif summary["success_rate"] is not None:
            outcome = f"success {summary['success_rate']:.0%}"
        else:
            outcome = "interrupted"
        sep = summary["min_separation_m"]
        plot_trajectories(positions, goals, dt_s, out / PLOT_FILE,
                          f"{summary['drones']} robots over DDS, {summary['scenario']}: "
                          f"{outcome}, min separation "
                          f"{figure(sep, '{:.2f} m')}")
