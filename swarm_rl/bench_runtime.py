"""Deploy-runtime latency, the logic behind ``swarm-rl bench runtime``.

Times the per-robot control step of the robot runtime (:meth:`swarm_rl.runtime.robot.
RobotController.step`: input checks, neighbour snapshot, observation, ONNX policy, CBF shield)
on the shipped velocity policy, for swarms of R robots all run in ONE process on one thread,
as a single companion computer stepping every robot would:

- layout ``formation`` (the default): the ``static_formation`` scenario of the simulator and
  of ``swarm-rl bench graph`` (:mod:`sim.scenarios`, seed 0): R robots from random spawns at
  rest fly into a formation, so the shield acts in about half the steps and its QP runs, as in
  the node graph; layout ``spread``: R robots at random positions in a 6 x 6 x 1.5 m box
  (:data:`BOX_LOW_M` .. :data:`BOX_HIGH_M`) at least :data:`MIN_SPACING_M` apart, small random
  velocities, each with a goal within :data:`GOAL_OFFSET_M` of its start (the shield hardly
  ever acts: the policy's own cost);
- per robot: a :class:`~swarm_rl.runtime.robot.RobotController` with its own
  :class:`~swarm_rl.runtime.neighbours.NeighbourTable` (K and range from the policy's
  metadata) and its own :class:`~swarm_rl.runtime.shield.CBFShield`
  (``ShieldConfig(v_max_mps=1.5 * sqrt(3))``, the speed a velocity action can reach). The
  robots share one :class:`~swarm_rl.runtime.policy.OnnxPolicy` session (one intra-op
  thread), as they would in one process;
- each 20 ms tick (50 Hz, on a simulated clock): every robot's table is updated with every
  other robot's state (as a robot node receiving an aggregated swarm-state message would),
  every robot steps, then the robots move: each velocity tracks its command as the shield's
  model of the velocity loop says (``v' = k_v (v_sp - v)``, exact over 20 ms), positions
  integrate it. Only the table updates and the steps are timed.

With the shared table, each tick also steps a second set of controllers for the same robots
with :func:`~swarm_rl.runtime.robot.step_robots` (one policy call and one stacked shield pass
for all of them, as a ``robot_node`` host does), timed on its own: the ratio of the two, in
the same run, is the batching's speed-up (its commands match ``step``'s; tests check that).

After :data:`WARMUP_TICKS` untimed ticks, ``steps`` ticks are timed with
:func:`time.perf_counter_ns`: each robot's step on its own, and the whole tick (table updates +
all steps). The policy and shield parts come from each command's diagnostics
(``policy_latency_us``; the shield's ``filter_time_us`` and ``solve_time_us``, the latter only
on ticks where the QP solver ran, i.e. the nominal command was not already safe). The
``batched_shield_*`` and ``batched_qp_solve_*`` figures are the same diagnostics of the
``step_robots`` commands: the shield as the nodes run it, one stacked pass for all robots
(per robot: its share of the pass; per tick: the shares summed).

Imports neither torch nor pybullet.
"""
from __future__ import annotations

import gc
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sim.config import resolve_scenario
from sim.errors import ConfigError
from sim.scenarios import make_scenario
from swarm_rl.runtime.neighbours import NeighbourTable
from swarm_rl.runtime.policy import OnnxPolicy
from swarm_rl.runtime.robot import (Command, CommandMode, OwnState, RobotController,
                                    step_robots)
from swarm_rl.runtime.shield import CBFShield, ShieldConfig
from swarm_rl.bench_report import aligned_table, cpu_model, package_version

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
POLICY = REPO_ROOT / "policies" / "formation_velocity_8.onnx"
DEFAULT_ROBOTS = (1, 8, 16, 32)
DEFAULT_STEPS = 500
WARMUP_TICKS = 20
TICK_S = 0.02
"""The control period timed against: 50 Hz."""
BOX_LOW_M = np.array([-3.0, -3.0, 0.5])
BOX_HIGH_M = np.array([3.0, 3.0, 2.0])
"""Where the robots start: a 6 x 6 x 1.5 m box (x, y centred on the origin)."""
MIN_SPACING_M = 0.5
INITIAL_SPEED_MPS = 0.2
"""Initial velocity components are uniform in +-this."""
GOAL_OFFSET_M = np.array([1.0, 1.0, 0.5])
"""Goal = start + uniform offset within +-this per axis (z kept inside the box)."""
TABLE = {"stale_after_s": 0.5, "drop_after_s": 2.0, "inflate_mps": 0.5}
"""NeighbourTable ageing parameters (all updates here are fresh, so they never apply)."""
TARGETS = {"step_p99_us": 1000.0, "qp_solve_p99_us": 200.0, "tick_p99_ms": TICK_S * 1e3}
SEED = 0


def place_robots(n: int, rng: np.random.Generator, max_tries: int = 200_000) -> np.ndarray:
    """(n, 3) positions in the box, pairwise at least :data:`MIN_SPACING_M` apart (rejection
    sampling); :class:`ConfigError` naming ``--robots`` if they do not fit."""
    pos = np.empty((n, 3))
    placed = tries = 0
    while placed < n:
        tries += 1
        if tries > max_tries:
            raise ConfigError(f"--robots: cannot place {n} robots {MIN_SPACING_M} m apart in "
                              f"the {_box_text()} box")
        p = rng.uniform(BOX_LOW_M, BOX_HIGH_M)
        if placed == 0 or np.min(np.linalg.norm(pos[:placed] - p, axis=1)) >= MIN_SPACING_M:
            pos[placed] = p
            placed += 1
    return pos


def _box_text() -> str:
    return " x ".join(f"{v:g}" for v in BOX_HIGH_M - BOX_LOW_M) + " m"


def shield_config() -> ShieldConfig:
    return ShieldConfig(v_max_mps=1.5 * math.sqrt(3))


def _pct(values: np.ndarray) -> tuple[float, float, float]:
    """(p50, p99, max) of ``values``."""
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99), float(np.max(values))


LAYOUTS = ("formation", "spread")


def start_and_goals(layout: str, robots: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, velocities, goals), each (robots, 3), of a :data:`LAYOUTS` layout."""
    if layout == "formation":
        cfg = resolve_scenario("static_formation", num_drones=robots)
        scenario = make_scenario(cfg, rng, 1)
        return scenario.spawn[0], np.zeros((robots, 3)), scenario.goals.base[0]
    if layout != "spread":
        raise ConfigError(f"--layout: must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    pos = place_robots(robots, rng)
    vel = rng.uniform(-INITIAL_SPEED_MPS, INITIAL_SPEED_MPS, (robots, 3))
    goals = pos + rng.uniform(-GOAL_OFFSET_M, GOAL_OFFSET_M, (robots, 3))
    goals[:, 2] = np.clip(goals[:, 2], BOX_LOW_M[2], BOX_HIGH_M[2])
    return pos, vel, goals


def measure(policy: OnnxPolicy, robots: int, steps: int, seed: int = SEED,
            warmup_ticks: int = WARMUP_TICKS, shared_table: bool = True,
            layout: str = "formation", idle_s: float = 0.0) -> dict[str, Any]:
    """Run ``warmup_ticks`` + ``steps`` ticks of an ``robots``-robot swarm; one result row.

    ``idle_s``: wall time (s) to sleep before each timed part of a tick (the robot-by-robot
    part, then ``step_robots``), as a node idles between ticks waiting for the next state;
    0 runs the ticks back to back (caches stay warm).

    ``shared_table``: the robots hosted in this process share one neighbour table, fed once
    per robot per tick (one reader per topic, DESIGN.md "Transport": O(N) updates); otherwise
    each robot has its own table fed with every other robot's state (O(N^2) updates, as one
    process per robot would see)."""
    rng = np.random.default_rng([seed, robots])
    names = [f"cf{i + 1}" for i in range(robots)]
    pos, vel, goals = start_and_goals(layout, robots, rng)
    cfg = shield_config()
    def table() -> NeighbourTable:
        return NeighbourTable(policy.neighbours_k, policy.neighbour_range_m, **TABLE)

    shared = table() if shared_table else None
    controllers = [RobotController(policy, shared if shared is not None else table(), name,
                                   shield=CBFShield(cfg))
                   for name in names]
    # the same robots stepped together (step_robots, as a robot_node host does), same states
    batched = ([RobotController(policy, shared, name, shield=CBFShield(cfg)) for name in names]
               if shared is not None else None)
    batch_ns = np.empty(steps, np.int64)
    batch_filter_us = np.full((steps, robots), np.nan)  # the stacked shield pass, per robot
    batch_solve_us = np.full((steps, robots), np.nan)
    rot, omega = np.eye(3), np.zeros(3)
    decay = math.exp(-cfg.k_v_per_s * TICK_S)  # velocity loop over one tick, exact
    ticks = warmup_ticks + steps
    n = robots * steps
    step_ns = np.empty(n, np.int64)
    policy_us, filter_us, solve_us = np.empty(n), np.empty(n), np.empty(n)
    intervened = np.zeros(n, bool)
    fallback = np.zeros(n, bool)
    not_policy = np.zeros(n, bool)
    neighbours = np.empty(n, np.int32)
    tick_ns = np.empty(steps, np.int64)
    table_ns = np.empty(steps, np.int64)
    cmd = np.zeros((robots, 3))
    perf_ns = time.perf_counter_ns
    cpu0 = wall0 = 0
    for tick in range(ticks):
        now = tick * TICK_S
        timed = tick >= warmup_ticks
        if tick == warmup_ticks:
            cpu0, wall0 = time.process_time_ns(), perf_ns()
        if idle_s and timed:
            time.sleep(idle_s)
        t0 = perf_ns()
        if shared is not None:  # one aggregated swarm-state message, one shared reader
            for j in range(robots):
                shared.update(names[j], now, pos[j], vel[j], now)
        else:  # the same message, read by every robot's own table
            for i, ctrl in enumerate(controllers):
                for j in range(robots):
                    if j != i:
                        ctrl.neighbours.update(names[j], now, pos[j], vel[j], now)
        t1 = perf_ns()
        for i, ctrl in enumerate(controllers):
            own = OwnState(pos[i], vel[i], rot, omega, now)
            s0 = perf_ns()
            command = ctrl.step(now, own, goals[i])
            s1 = perf_ns()
            cmd[i] = command.velocity_mps
            if timed:
                k = (tick - warmup_ticks) * robots + i
                d = command.diagnostics
                step_ns[k] = s1 - s0
                policy_us[k] = np.nan if d.policy_latency_us is None else d.policy_latency_us
                filter_us[k] = d.shield_info.get("filter_time_us", np.nan)
                solve_us[k] = d.shield_info.get("solve_time_us", np.nan)
                intervened[k] = d.shield_intervened
                fallback[k] = d.shield_fallback
                not_policy[k] = command.mode is not CommandMode.POLICY
                neighbours[k] = d.neighbours
        t2 = perf_ns()
        if timed:
            tick_ns[tick - warmup_ticks] = t2 - t0
            table_ns[tick - warmup_ticks] = t1 - t0
        if batched is not None:
            owns = [OwnState(pos[i], vel[i], rot, omega, now) for i in range(robots)]
            if idle_s and timed:
                time.sleep(idle_s)
            b0 = perf_ns()
            batch_cmds = step_robots(batched, now, owns, list(goals))
            if timed:
                batch_ns[tick - warmup_ticks] = perf_ns() - b0
                _shield_times(batch_cmds, batch_filter_us[tick - warmup_ticks],
                              batch_solve_us[tick - warmup_ticks])
        # move: v tracks the setpoint (first order, gain k_v), p integrates v over the tick
        new_vel = cmd + (vel - cmd) * decay
        pos += cmd * TICK_S + (vel - cmd) * (1.0 - decay) / cfg.k_v_per_s
        vel = new_vel
    cpu_ns, wall_ns = time.process_time_ns() - cpu0, perf_ns() - wall0

    step_us = step_ns / 1e3
    s50, s99, smax = _pct(step_us)
    p50, p99, pmax = _pct(policy_us[np.isfinite(policy_us)])
    f50, f99, fmax = _pct(filter_us[np.isfinite(filter_us)])
    solved = solve_us[np.isfinite(solve_us) & (solve_us > 0)]
    q50, q99, qmax = _pct(solved) if solved.size else (None, None, None)
    other = step_us - np.nan_to_num(policy_us) - np.nan_to_num(filter_us)
    o50, o99, _ = _pct(other)
    t50, t99, tmax = _pct(tick_ns / 1e6)
    b50, b99, _ = _pct(batch_ns / 1e6) if batched is not None else (None, None, None)
    u50, u99, _ = _pct(table_ns / 1e6)
    stacked = (_stacked_shield_row(batch_filter_us, batch_solve_us) if batched is not None
               else {})
    if not_policy.any():
        log.warning("%d robots: %d of %d steps were not plain policy commands", robots,
                    int(not_policy.sum()), n)
    return _rounded({
        "robots": robots, "ticks": steps, "steps_timed": n,
        "step_p50_us": s50, "step_p99_us": s99, "step_max_us": smax,
        "policy_p50_us": p50, "policy_p99_us": p99, "policy_max_us": pmax,
        "shield_p50_us": f50, "shield_p99_us": f99, "shield_max_us": fmax,
        "other_p50_us": o50, "other_p99_us": o99,
        "qp_solves": int(solved.size), "qp_solve_share": solved.size / n,
        "qp_solve_p50_us": q50, "qp_solve_p99_us": q99, "qp_solve_max_us": qmax,
        "shield_intervention_share": float(intervened.mean()),
        "shield_fallback_share": float(fallback.mean()),
        "non_policy_share": float(not_policy.mean()),
        "mean_neighbours": float(neighbours.mean()),
        "shared_table": shared_table,
        "table_updates_per_tick": robots if shared_table else robots * (robots - 1),
        "table_update_p50_ms": u50, "table_update_p99_ms": u99,
        "table_update_per_entry_us": (u50 * 1e3 / (robots * (robots - 1))
                                      if robots > 1 else None),
        "tick_p50_ms": t50, "tick_p99_ms": t99, "tick_max_ms": tmax,
        "batched_steps_p50_ms": b50, "batched_steps_p99_ms": b99,
        "batched_speedup_p50": (((t50 - u50) / b50) if b50 else None),
        **stacked,
        "cpu_per_wall": cpu_ns / wall_ns if wall_ns else None,
        "step_p99_within_target": s99 <= TARGETS["step_p99_us"],
        "qp_solve_p99_within_target": None if q99 is None else q99 <= TARGETS["qp_solve_p99_us"],
        "tick_p99_within_50hz": t99 <= TARGETS["tick_p99_ms"],
    })


def _shield_times(commands: list[Command], filter_us: np.ndarray, solve_us: np.ndarray
                  ) -> None:
    """Each command's shield times (us) into ``filter_us`` / ``solve_us`` (robots,): its
    ``filter_time_us`` (a robot's share of the stacked pass, plus its share of the solving
    stage when it solved) and, where the QP solver ran, its ``solve_time_us``; NaN where the
    robot had no shield output."""
    for k, command in enumerate(commands):
        info = command.diagnostics.shield_info
        filter_us[k] = info.get("filter_time_us", np.nan)
        solve = info.get("solve_time_us", 0.0)
        if solve > 0:
            solve_us[k] = solve


def _stacked_shield_row(filter_us: np.ndarray, solve_us: np.ndarray) -> dict[str, Any]:
    """The stacked shield pass of ``step_robots`` as the nodes run it, from the per-robot
    times of :func:`_shield_times` ((ticks, robots), us): per robot (its share, p50 / p99),
    per tick (the shares summed: the whole pass), and the QP solves (DAQP call, p50 / p99,
    over the robots that solved, with their share of the steps)."""
    per_robot = filter_us[np.isfinite(filter_us)]
    per_tick = np.nansum(filter_us, axis=1)
    solved = solve_us[np.isfinite(solve_us)]
    r50, r99, _ = _pct(per_robot) if per_robot.size else (None, None, None)
    t50, t99, _ = _pct(per_tick / 1e3)
    q50, q99, _ = _pct(solved) if solved.size else (None, None, None)
    return {"batched_shield_p50_us": r50, "batched_shield_p99_us": r99,
            "batched_shield_tick_p50_ms": t50, "batched_shield_tick_p99_ms": t99,
            "batched_qp_solve_p50_us": q50, "batched_qp_solve_p99_us": q99,
            "batched_qp_solve_share": solved.size / filter_us.size}


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Floats to a readable precision: 0.1 us, 1 us in ms, 4 decimals for shares."""
    digits = {"_us": 1, "_ms": 3}
    out = {}
    for key, value in row.items():
        if isinstance(value, float):
            value = round(value, next((d for end, d in digits.items() if key.endswith(end)),
                                      4))
        out[key] = value
    return out


def machine_info(policy: OnnxPolicy) -> dict[str, Any]:
    """What the figures were measured on (and how busy it was)."""
    uname = platform.uname()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "processor": cpu_model() or platform.processor() or uname.machine,
        "system": f"{uname.system} {uname.release}",
        "machine": uname.machine,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_average_1_5_15_min": load,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": package_version("onnxruntime"),
        "daqp": package_version("daqp"),
        "policy_intra_op_threads": policy.session.get_session_options().intra_op_num_threads,
    }


def run_bench(robot_counts: tuple[int, ...] = DEFAULT_ROBOTS, steps: int = DEFAULT_STEPS,
              policy_path: Path = POLICY, progress: bool | None = None,
              shared_table: bool = True, layout: str = "formation",
              idle_ms: float = 0.0) -> dict[str, Any]:
    """Measure every robot count; return a JSON-ready report.

    ``progress``: show a tqdm bar on stderr (None: only on a terminal). ``shared_table``,
    ``layout``: see :func:`measure` and the module docstring; ``idle_ms``: :func:`measure`'s
    ``idle_s`` in ms.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout: must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not robot_counts or min(robot_counts) < 1:
        raise ConfigError(f"--robots: robot counts must be >= 1, got {list(robot_counts)}")
    if steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {steps}")
    if not 0.0 <= idle_ms <= 1000.0:
        raise ConfigError(f"--idle-ms: must be in [0, 1000], got {idle_ms}")
    policy = OnnxPolicy(policy_path)
    rows = []
    bar = tqdm(robot_counts, desc="bench runtime", unit="swarm", leave=False,
               disable=None if progress is None else not progress)
    with bar:
        for r in bar:
            bar.set_postfix_str(f"{r} robots")
            gc.collect()  # start each measurement with the same heap; GC stays on (as deployed)
            rows.append(measure(policy, r, steps, shared_table=shared_table,
                                layout=layout, idle_s=idle_ms / 1e3))
    fits = [row["robots"] for row in rows if row["tick_p99_within_50hz"]]
    cfg = shield_config()
    try:
        shown = str(policy_path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        shown = str(policy_path)
    return {
        "bench": "runtime",
        "what": "per-robot RobotController.step (checks, neighbour snapshot, observation, "
                "ONNX policy, CBF shield) and whole 50 Hz ticks (neighbour-table updates + "
                "every robot's step), all robots in one process on one thread",
        "policy": shown,
        "policy_neighbours_k": policy.neighbours_k,
        "neighbour_range_m": policy.neighbour_range_m,
        "layout": ({"name": "formation", "scenario": "static_formation", "seed": SEED}
                   if layout == "formation" else
                   {"name": "spread", "box_low_m": BOX_LOW_M, "box_high_m": BOX_HIGH_M,
                    "min_spacing_m": MIN_SPACING_M, "initial_speed_mps": INITIAL_SPEED_MPS,
                    "goal_offset_m": GOAL_OFFSET_M, "seed": SEED}),
        "shield": {"v_max_mps": cfg.v_max_mps, "safety_distance_m": cfg.safety_distance_m,
                   "gamma": cfg.gamma, "k_v_per_s": cfg.k_v_per_s},
        "neighbour_table": {**TABLE, "shared": shared_table},
        "control_hz": round(1 / TICK_S),
        "warmup_ticks": WARMUP_TICKS,
        "ticks_timed": steps,
        "idle_ms_before_each_timed_part": idle_ms,
        "targets": TARGETS,
        "max_robots_realtime_50hz": max(fits) if fits else None,
        "machine": machine_info(policy),
        "results": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    """Plain aligned text table of :func:`run_bench`'s results, with the targets."""
    def us(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    head = ("robots", "step p50/p99/max us", "policy p50/p99 us", "shield p50/p99 us",
            "QP solve p99 us (solves)", "intervened", "table upd p50/p99 ms",
            "tick p50/p99 ms", "step_robots p50/p99 ms (x faster)",
            "stacked shield p50/p99 us per robot (per tick ms)", "50 Hz")
    body = [(str(r["robots"]),
             f"{us(r['step_p50_us'])} / {us(r['step_p99_us'])} / {us(r['step_max_us'])}",
             f"{us(r['policy_p50_us'])} / {us(r['policy_p99_us'])}",
             f"{us(r['shield_p50_us'])} / {us(r['shield_p99_us'])}",
             f"{us(r['qp_solve_p99_us'])} ({r['qp_solve_share']:.1%})",
             f"{r['shield_intervention_share']:.1%}",
             f"{r['table_update_p50_ms']:.2f} / {r['table_update_p99_ms']:.2f}",
             f"{r['tick_p50_ms']:.2f} / {r['tick_p99_ms']:.2f}",
             "-" if r["batched_steps_p50_ms"] is None else
             f"{r['batched_steps_p50_ms']:.2f} / {r['batched_steps_p99_ms']:.2f} "
             f"({r['batched_speedup_p50']:.1f})",
             "-" if r.get("batched_shield_p50_us") is None else
             f"{us(r['batched_shield_p50_us'])} / {us(r['batched_shield_p99_us'])} "
             f"({r['batched_shield_tick_p50_ms']:.2f} / {r['batched_shield_tick_p99_ms']:.2f})",
             "yes" if r["tick_p99_within_50hz"] else "no")
            for r in report["results"]]
    lines = aligned_table(head, body)
    t = report["targets"]
    rows = report["results"]
    step_ok = all(r["step_p99_within_target"] for r in rows)
    qp = [r["qp_solve_p99_us"] for r in rows if r["qp_solve_p99_us"] is not None]
    qp_ok = all(r["qp_solve_p99_within_target"] in (True, None) for r in rows)
    worst_step = max(r["step_p99_us"] for r in rows)
    best = report["max_robots_realtime_50hz"]
    m = report["machine"]
    entry = [r["table_update_per_entry_us"] for r in rows
             if r["table_update_per_entry_us"] is not None]
    per_entry = (f"about {np.median(entry):.0f} us per update at p50" if entry
                 else "none with 1 robot")
    lines += [
        "",
        f"targets: per-robot step p99 <= {t['step_p99_us']:,.0f} us: "
        f"{'met' if step_ok else 'MISSED'} (worst p99 {worst_step:,.0f} us); "
        f"QP solve p99 <= {t['qp_solve_p99_us']:,.0f} us: "
        + (("met" if qp_ok else "MISSED") + f" (worst p99 {max(qp):,.0f} us)" if qp
           else "no QP solved"),
        f"max_robots_realtime_50hz: {best if best is not None else 'none'} (largest measured "
        f"swarm whose whole tick p99 <= {t['tick_p99_ms']:g} ms)",
        f"table upd = one tick's NeighbourTable.update calls, R x (R - 1) ({per_entry}); "
        f"{report['what']}; policy {report['policy']} (K = {report['policy_neighbours_k']}, "
        f"range {report['neighbour_range_m']:g} m); {report['warmup_ticks']} warm-up + "
        f"{report['ticks_timed']} timed ticks per swarm; layout {report['layout']['name']}; "
        "QP solve over the steps that needed the solver (share in brackets); intervened = "
        "share of steps the shield changed",
        f"machine: {m['processor']}, {m['cpu_count']} CPUs, {m['system']}, load average "
        f"{m['load_average_1_5_15_min']}, numpy {m['numpy']}, onnxruntime {m['onnxruntime']}, "
        f"daqp {m['daqp']}",
    ]
    return "\n".join(lines)
