"""``swarm-rl bench graph``: the whole node graph over DDS, in real time, at growing swarm sizes.

For each swarm size N the graph of ``swarm-rl launch`` runs for ``seconds`` of simulated time
in real time (``real_time_factor`` 1) at ``rate_hz``: one ``sim_bridge`` process (PyBullet, or
the batched engine with ``backend="batched"``) and the robots split over ``processes``
``robot_node`` processes (each host shares one reader per topic and one neighbour table),
under the default scheduler or, with ``realtime_priority``, SCHED_FIFO (``chrt -f``).
Figures per size:

- state-to-command latency (ms, p50 / p99): from the bridge publishing a state to the robot
  node writing the command computed from that state (the command's DDS source timestamp):
  DDS delivery, the neighbour table, observation, ONNX policy, CBF shield, and the wait behind
  the other robots of the same process;
- achieved real-time factor of the simulator, and the share of ticks every robot answered;
- watchdog hover events (a robot's command older than the bridge's 0.2 s timeout).

A size *runs in real time* when the simulator keeps real time (factor >= 0.98), robots answer
>= 99 % of ticks, the latency p99 stays under one control period, and no watchdog fires.
"""
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from ros_nodes.launcher import DdsSection, LaunchConfig, RobotsSection, SimSection, run_launch
from swarm_rl.bench_report import aligned_table, cpu_model, figure, package_version

DEFAULT_ROBOTS = (8, 16, 32, 48)
POLICY = Path(__file__).resolve().parents[1] / "policies" / "formation_velocity_8.onnx"


def measure(robots: int, processes: int, rate_hz: int, seconds: float, domain_id: int,
            policy: Path = POLICY, backend: str = "pybullet", realtime_priority: int = 0
            ) -> dict[str, Any]:
    per = -(-robots // processes)
    with tempfile.TemporaryDirectory(prefix="bench_graph_") as tmp:
        cfg = LaunchConfig(
            duration_s=seconds, out=tmp,
            sim=SimSection(drones=robots, scenario="static_formation", seed=0,
                           control_rate_hz=rate_hz, real_time_factor=1.0, backend=backend),
            robots=RobotsSection(policy=str(policy), shield=True, robots_per_process=per),
            dds=DdsSection(domain_id=domain_id),
            realtime_priority=realtime_priority).validate("bench graph")
        s = run_launch(cfg, progress=False)
    answered = s["ticks_answered_share"] or 0.0  # flight ticks answered in time, bridge-side
    period_ms = 1e3 / rate_hz
    realtime = (s["real_time_factor"] is not None and s["real_time_factor"] >= 0.98
                and answered >= 0.99 and s["latency_p99_ms"] is not None
                and s["latency_p99_ms"] < period_ms
                and s["watchdog_hover"] == 0)
    return {"robots": robots, "processes": -(-robots // per), "rate_hz": rate_hz,
            "latency_p50_ms": s["latency_p50_ms"], "latency_p99_ms": s["latency_p99_ms"],
            "real_time_factor": s["real_time_factor"], "ticks_answered": answered,
            "watchdog_hover": s["watchdog_hover"], "real_time": realtime,
            "collisions_per_drone_minute": s["collisions_per_drone_minute"]}


def run_bench(robot_counts: tuple[int, ...] = DEFAULT_ROBOTS, processes: int = 2,
              rate_hz: int = 50, seconds: float = 10.0, domain_id: int = 201,
              backend: str = "pybullet", realtime_priority: int = 0) -> dict[str, Any]:
    rows = [measure(n, min(processes, n), rate_hz, seconds, domain_id, backend=backend,
                    realtime_priority=realtime_priority)
            for n in robot_counts]
    fits = [r["robots"] for r in rows if r["real_time"]]
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"rows": rows, "largest_real_time_swarm": max(fits) if fits else 0,
            "targets": {"latency_p99_ms_at_16": 5.0, "largest_real_time_swarm": 32},
            "machine": {"processor": cpu_model() or platform.processor(),
                        "cpu_count": os.cpu_count(), "load_average_after": load,
                        "cyclonedds": package_version("cyclonedds"),
                        "pybullet": package_version("pybullet")},
            "seconds": seconds, "backend": backend, "realtime_priority": realtime_priority}


def format_table(report: dict[str, Any]) -> str:
    head = ("robots", "processes", "rate Hz", "latency p50 ms", "p99 ms", "sim RTF",
            "ticks answered", "watchdog", "real time")
    body = [(str(r["robots"]), str(r["processes"]), str(r["rate_hz"]),
             figure(r["latency_p50_ms"], "{:.2f}"), figure(r["latency_p99_ms"], "{:.2f}"),
             figure(r["real_time_factor"], "{:.3f}"), f"{r['ticks_answered']:.1%}",
             str(r["watchdog_hover"]), "yes" if r["real_time"] else "no")
            for r in report["rows"]]
    lines = aligned_table(head, body)
    lines.append(f"largest swarm in real time: {report['largest_real_time_swarm']} robots "
                 f"(target >= {report['targets']['largest_real_time_swarm']}; sim bridge on "
                 f"{report.get('backend', 'pybullet')} physics; "
                 + (f"nodes under SCHED_FIFO {report['realtime_priority']})"
                    if report.get("realtime_priority") else "default scheduler)"))
    return "\n".join(lines)
