"""``sim_bridge``: a simulated swarm behind the same topics as the radio bridge.

One PyBullet world (or the batched engine) with N drones ``cf1`` ... ``cfN`` placed by a
scenario (:mod:`sim.scenarios`). Every control tick it publishes ``/swarm/state`` (all drones
in one message, first), each drone's ``/cfN/odom`` and ``/cfN/pose``, and ``/clock`` (wall
time, or simulation time in lockstep), then applies the
newest ``/cfN/cmd_velocity_world`` of each drone through the simulated onboard velocity
controller (:mod:`sim.controller`) for one control period. The scenario's goals are published
on ``/cfN/goal`` (latched; again on change and every ``GOAL_REPEAT_S``), so the scenario is the
mission.

Pacing: ``real_time_factor`` 1 runs in real time (stamps are wall time); larger runs faster;
0 is lockstep: each tick waits until every live robot has answered the published state (or
``lockstep_timeout_s``), stamps are simulation time, and robots must follow ``/clock``
(``use_sim_time``). Lockstep makes multi-process runs reproducible on a loaded machine.

Watchdog, per drone, on the bridge's clock: no command for ``cmd_timeout_s`` -> hover (zero
velocity); for ``land_timeout_s`` -> land (descend at ``landing_speed_mps``). ``/cfN/land`` and
``/all/land`` land a drone, ``/cfN/takeoff`` / ``/all/takeoff`` give it back to its commands,
``/cfN/emergency`` / ``/all/emergency`` cut its motors for good (std_msgs/Empty each).

On shutdown it writes, if ``report_dir`` is set, ``bridge_report.json`` (the episode metrics of
:mod:`sim.metrics` on the ground truth: success, collisions, minimum separation; latencies and
watchdog counts) and ``trajectories.npz`` (positions and goals per tick).
"""
import logging
import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from threading import Event

import numpy as np

from ros_nodes import messages as m
from ros_nodes.node_main import run_node
from ros_nodes.params import ParamError, spec
from ros_nodes.tick_trace import TickTrace
from ros_nodes.transport import SWARM_STATE_TOPIC, QosKind, Transport, robot_topic
from sim.config import resolve_scenario
from sim.swarm_env import SwarmVecEnv
from swarm_rl import files

log = logging.getLogger(__name__)
REPORT_FILE = "bridge_report.json"
TRAJECTORY_FILE = "trajectories.npz"
GOAL_REPEAT_S = 1.0
"""Goals are re-sent this often (s) as well as on change: a robot that lost one still gets it."""
READERS_CHECK_S = 0.2
"""In real time, whether anyone reads a drone's ``/cfN/odom`` and ``/cfN/pose`` is looked up
this often (wall s), not every tick: 2 N lookups a tick cost ~200 us at 32 drones, right
after ``/swarm/state`` goes out, when the robot hosts need both CPUs. A reader that appears
gets its first message within this time; lockstep and the hold at t = 0 look every time."""
LOCKSTEP_ABSENT_AFTER = 3
"""Lockstep: a robot that missed this many ticks in a row is not waited for until it answers."""


@dataclass(frozen=True)
class SimBridgeParams:
    """Parameters of ``sim_bridge``."""

    drones: int = spec(8, "Number of simulated drones, named cf1 ... cfN.", min=1, max=256)
    scenario: str = spec("static_formation", "Scenario name (hover, static_formation, "
                         "swap_goals, dynamic_goals, obstacles), a config/scenarios name, or "
                         "a YAML path.")
    seed: int = spec(0, "Scenario seed (spawns, goals).", min=0)
    backend: str = spec("pybullet", "Physics engine.", choices=("pybullet", "batched"))
    control_rate_hz: int = spec(50, "Odometry and command rate (Hz); must divide "
                                "physics_rate_hz.", min=1, max=1000)
    physics_rate_hz: int = spec(200, "Physics rate (Hz).", min=1, max=2000)
    max_speed_mps: float = spec(1.5, "Largest commanded speed per axis (m/s); larger "
                                "commands are clipped.", min=0.1, max=10.0)
    real_time_factor: float = spec(1.0, "Simulated seconds per wall second; 0: lockstep "
                                   "with the robots.", min=0.0, max=1000.0)
    lockstep_timeout_s: float = spec(0.5, "Lockstep: longest wait for the robots' commands "
                                     "per tick (wall s).", min=0.001, max=10.0)
    startup_timeout_s: float = spec(60.0, "Lockstep, or real time with hold_at_start: "
                                    "longest wait at t = 0 for every robot's first command "
                                    "(wall s); robot processes start slower than the bridge "
                                    "on a loaded machine.", min=0.0, max=3600.0)
    hold_at_start: bool = spec(False, "Real time: hold t = 0, publishing the first state at "
                               "the control rate, until every robot has answered once (as "
                               "lockstep always does), so robots that start after the "
                               "bridge do not begin on the watchdog. The launcher sets it.")
    duration_s: float = spec(0.0, "Stop after this much simulated time (s); 0: run until "
                             "stopped.", min=0.0, max=86400.0)
    cmd_timeout_s: float = spec(0.2, "No command for this long: hover (s).", min=0.0, max=60.0)
    land_timeout_s: float = spec(1.0, "No command for this long: land (s).", min=0.0, max=600.0)
    landing_speed_mps: float = spec(0.3, "Descent speed when landing (m/s).", min=0.05,
                                    max=2.0)
    report_dir: str = spec("", "Write bridge_report.json and trajectories.npz here on exit.")
    publish_goals: bool = spec(True, "Publish the scenario's goals on /cfN/goal (off when a "
                               "task layer or operator sets the goals).")


class SimBridge:
    def __init__(self, transport: Transport, params: SimBridgeParams) -> None:
        if params.physics_rate_hz % params.control_rate_hz:
            raise ParamError(f"sim_bridge: parameter control_rate_hz: must divide "
                             f"physics_rate_hz ({params.physics_rate_hz}), got "
                             f"{params.control_rate_hz}")
        if params.land_timeout_s < params.cmd_timeout_s:
            raise ParamError("sim_bridge: parameter land_timeout_s: must be >= cmd_timeout_s")
        self.transport = transport
        self.params = params
        dt_s = 1.0 / params.control_rate_hz
        self.dt_s = dt_s
        episode_s = (params.duration_s or 86400.0) + 10 * dt_s  # never reset mid-run
        self.cfg = resolve_scenario(params.scenario, num_drones=params.drones,
                                    action_mode="velocity", control_hz=params.control_rate_hz,
                                    physics_hz=params.physics_rate_hz, episode_s=episode_s,
                                    max_speed_mps=params.max_speed_mps)
        self.names = [f"cf{i + 1}" for i in range(params.drones)]
        self.env = SwarmVecEnv(self.cfg, num_envs=1, backend=params.backend, seed=params.seed)
        n = params.drones
        # The first step compiles the simulator's numba kernels (seconds where their cache is
        # cold: a fresh install). Take it now, before the clock starts, then start over from
        # the same seed: a real-time flight that began with that stall ran late, the robots
        # could not answer the catch-up ticks, and every drone fell back on the watchdog.
        self.env.reset(seed=params.seed)
        self.env.step(self.env.hover_action(), motors_off=np.zeros((1, n), bool), observe=False)
        self.env.reset(seed=params.seed)
        self.lockstep = params.real_time_factor == 0.0
        self.t_s = 0.0
        self.steps = 0
        self.cmd_vel = np.zeros((n, 3))
        self.cmd_yaw_rate = np.zeros(n)
        self.last_cmd_t_s = np.zeros(n)
        """Bridge-clock time each drone's newest command arrived (the start before the first:
        drones spawn hovering, and the watchdog counts from there)."""
        self.answered = np.zeros(n, bool)
        self.ticks_answered = np.zeros(n, int)
        """Flight ticks (not the hold at t = 0) each robot answered before the next one."""
        self.missed = np.zeros(n, int)
        self.landing = np.zeros(n, bool)
        self.motors_off = np.zeros(n, bool)
        self.watchdog_events = {"hover": np.zeros(n, int), "land": np.zeros(n, int)}
        self._watch_state = np.zeros(n, int)  # 0 commanded, 1 hover, 2 land
        self.bad_commands = np.zeros(n, int)
        self.commands = np.zeros(n, int)
        self._published_wall: deque[tuple[float, float]] = deque(maxlen=200)
        self.latencies_ms: list[float] = []
        self.positions: list[np.ndarray] = []
        self.goals: list[np.ndarray] = []
        self._odom = [transport.create_publisher(m.Odometry, robot_topic(name, "odom"),
                                                 QosKind.SENSOR) for name in self.names]
        self._pose = [transport.create_publisher(m.PoseStamped, robot_topic(name, "pose"),
                                                 QosKind.SENSOR) for name in self.names]
        self._goal = [transport.create_publisher(m.PoseStamped, robot_topic(name, "goal"),
                                                 QosKind.LATCHED) for name in self.names]
        self._clock = transport.create_publisher(m.Clock, "/clock", QosKind.SENSOR)
        self._swarm_state = transport.create_publisher(m.MultiDOFJointState, SWARM_STATE_TOPIC,
                                                       QosKind.SENSOR)
        for i, name in enumerate(self.names):
            transport.create_subscription(m.TwistStamped,
                                          robot_topic(name, "cmd_velocity_world"),
                                          self._command_callback(i), QosKind.COMMAND,
                                          decode=m.twist_numbers)
            for leaf, action in (("land", self._land), ("takeoff", self._takeoff),
                                 ("emergency", self._emergency)):
                transport.create_subscription(m.Empty, robot_topic(name, leaf),
                                              lambda _msg, i=i, a=action: a([i]),
                                              QosKind.EVENTS)
        every = list(range(n))
        for leaf, action in (("land", self._land), ("takeoff", self._takeoff),
                             ("emergency", self._emergency)):
            transport.create_subscription(m.Empty, f"/all/{leaf}",
                                          lambda _msg, a=action: a(every), QosKind.EVENTS)
        self.mission_goals = self.env.physics.state().pos[0].copy()
        """Without scenario goals: where each robot says it is going (its intention's last
        pose), recorded in place of the goals; the spawn until it says."""
        if not params.publish_goals:
            for i, name in enumerate(self.names):
                transport.create_subscription(m.Path, robot_topic(name, "intention"),
                                              lambda msg, i=i: self._on_intention(i, msg),
                                              QosKind.COMMAND)
        self._read = np.zeros((2, n), bool)
        """Whether each drone's odom (row 0) and pose (row 1) had a reader when last looked."""
        self._read_checked_s = -math.inf
        self._last_goals: np.ndarray | None = None
        self._goals_sent_t_s = -math.inf
        self._stamp_s = time.time()
        self.trace = TickTrace.from_env("sim_bridge", ("publish", "published", "spun",
                                                       "stepped"))
        """Per-tick timestamps of the flight (``SWARM_RL_TICK_TRACE``)."""
        self.command_trace: list[tuple[int, int, int, int]] = []
        """With the trace: (robot, stamp ns, source timestamp ns, arrival ns) per command."""

    # --- clock -------------------------------------------------------------------------------

    def stamp_s(self) -> float:
        """Stamp of the current state: sim time in lockstep, else the wall time it was
        published at (so a bridge that falls behind real time never sends old stamps)."""
        return self.t_s if self.lockstep else self._stamp_s

    # --- commands ----------------------------------------------------------------------------

    def _command_callback(self, i: int):
        finite = math.isfinite
        limit = self.params.max_speed_mps

        def on_command(msg: m.TwistStamped | m.TwistNumbers) -> None:
            # plain floats (the DDS transport hands over the numbers): ~15 us less a command
            # than numpy on 3 values, the same results (np.clip is max, then min)
            if isinstance(msg, m.TwistNumbers):
                (vx, vy, vz), yaw_rate, stamp = msg.linear, float(msg.angular[2]), msg.stamp_s
            else:
                lin = msg.twist.linear
                vx, vy, vz = float(lin.x), float(lin.y), float(lin.z)
                yaw_rate, stamp = float(msg.twist.angular.z), m.from_time(msg.header.stamp)
            if not (finite(vx) and finite(vy) and finite(vz) and finite(yaw_rate)):
                self.bad_commands[i] += 1
                return
            self.cmd_vel[i] = (min(max(vx, -limit), limit), min(max(vy, -limit), limit),
                               min(max(vz, -limit), limit))
            self.cmd_yaw_rate[i] = yaw_rate
            self.last_cmd_t_s[i] = self.t_s
            self.commands[i] += 1
            if self.trace is not None:
                info = getattr(msg, "sample_info", None)
                self.command_trace.append((i, round(stamp * 1e9),
                                           getattr(info, "source_timestamp", 0) or 0,
                                           time.time_ns()))
            if abs(stamp - self.stamp_s()) < 1e-6:
                self.answered[i] = True
            for published, wall in reversed(self._published_wall):  # newest first
                if abs(published - stamp) < 1e-6:
                    self.latencies_ms.append((_sent_wall_s(msg) - wall) * 1e3)
                    break
        return on_command

    def _on_intention(self, i: int, msg: m.Path) -> None:
        if msg.poses:
            target = m.vec(msg.poses[-1].pose.position)
            if np.isfinite(target).all():
                self.mission_goals[i] = target

    def _land(self, idx: list[int]) -> None:
        self.landing[idx] = True

    def _takeoff(self, idx: list[int]) -> None:
        self.landing[idx] = False

    def _emergency(self, idx: list[int]) -> None:
        self.motors_off[idx] = True
        log.warning("emergency stop: %s", ", ".join(self.names[i] for i in idx))

    # --- the loop ----------------------------------------------------------------------------

    def publish_state(self, record: bool = True) -> None:
        """Publish the clock, goals, odometry and pose of the current state; ``record``: also
        log it for the trajectory and latency report (off while waiting at t = 0)."""
        s = self.env.physics.state()
        self._stamp_s = time.time()
        stamp = self.stamp_s()
        self._clock.publish(m.Clock(m.to_time(stamp)))
        goals = self.env.goals()[0]
        changed = self._last_goals is None or not np.allclose(goals, self._last_goals,
                                                              atol=1e-3)
        if self.params.publish_goals and (
                changed or self.t_s - self._goals_sent_t_s >= GOAL_REPEAT_S):
            for i, pub in enumerate(self._goal):
                pub.publish(m.pose_stamped(stamp, goals[i]))
            self._last_goals, self._goals_sent_t_s = goals.copy(), self.t_s
        if record:
            self._published_wall.append((stamp, time.time()))
        self.answered[:] = False
        quats = m.quats_xyzw_from_matrices(s.rot[0])  # all robots at once, the same bits
        write_cdr = getattr(self._swarm_state, "publish_cdr", None)
        if write_cdr is not None:  # DDS: the bytes straight from the arrays
            write_cdr(m.swarm_state_cdr(stamp, self.names, s.pos[0], s.vel[0], quats,
                                        s.omega[0]))
        else:
            self._swarm_state.publish(m.swarm_state(stamp, self.names, s.pos[0], s.vel[0],
                                                    quats, s.omega[0]))
        # per-robot topics only where someone reads them (hosts on /swarm/state do not)
        wall = time.monotonic()
        if self.lockstep or not record or wall - self._read_checked_s >= READERS_CHECK_S:
            self._read = np.array([[pub.subscribers() > 0 for pub in pubs]
                                   for pubs in (self._odom, self._pose)], bool)
            self._read_checked_s = wall
        for i in np.flatnonzero(self._read.any(axis=0)).tolist():
            name, q = self.names[i], quats[i]
            if self._read[0, i]:
                self._odom[i].publish(m.odometry(name, stamp, s.pos[0, i], s.vel[0, i], q,
                                                 s.omega[0, i]))
            if self._read[1, i]:
                self._pose[i].publish(m.pose_stamped(stamp, s.pos[0, i], q))
        if not record:
            return
        self.positions.append(s.pos[0].copy())
        self.goals.append(goals.copy() if self.params.publish_goals
                          else self.mission_goals.copy())

    def actions(self) -> np.ndarray:
        """(1, N, 4) normalised velocity actions after the watchdog and landing rules."""
        p = self.params
        age = self.t_s - self.last_cmd_t_s
        state = np.where(age > p.land_timeout_s, 2, np.where(age > p.cmd_timeout_s, 1, 0))
        for level, key in ((1, "hover"), (2, "land")):
            self.watchdog_events[key] += (state == level) & (self._watch_state < level)
        self._watch_state = state
        vel = self.cmd_vel.copy()
        yaw = self.cmd_yaw_rate.copy()
        vel[state == 1], yaw[state == 1] = 0.0, 0.0
        land = (state == 2) | self.landing
        vel[land] = (0.0, 0.0, -p.landing_speed_mps)
        yaw[land] = 0.0
        out = np.zeros((1, len(self.names), 4))
        out[0, :, :3] = vel / self.cfg.max_speed_mps
        out[0, :, 3] = yaw / self.cfg.max_yaw_rate_rad_s
        return np.clip(out, -1.0, 1.0)

    def step(self) -> None:
        self.env.step(self.actions(), motors_off=self.motors_off[None], observe=False)
        self.steps += 1
        self.t_s = self.steps * self.dt_s

    def finished(self) -> bool:
        return bool(self.params.duration_s) and self.t_s >= self.params.duration_s - 1e-9

    def wait_for_robots(self, stop: Event, resend_s: float = 0.2) -> None:
        """Hold t = 0, re-sending the first state every ``resend_s`` (wall s), until
        every robot has answered once or ``startup_timeout_s`` has passed, so that robot
        processes that start slower than the bridge do not miss the flight. Robots still
        silent then are named in a warning and the flight goes on without waiting for them."""
        seen = np.zeros(len(self.names), bool)
        deadline = time.perf_counter() + self.params.startup_timeout_s
        while not (stop.is_set() or seen.all()) and time.perf_counter() < deadline:
            self.publish_state(record=False)
            self.transport.spin_until(
                lambda: stop.is_set() or bool((seen | self.answered).all()), resend_s)
            seen |= self.answered
        if not seen.all():
            log.warning("start: no command from %s after %.0f s; not waiting for them",
                        ", ".join(n for n, s in zip(self.names, seen) if not s),
                        self.params.startup_timeout_s)

    def run(self, stop: Event) -> None:
        rtf = self.params.real_time_factor
        if self.lockstep:
            self.wait_for_robots(stop)
        elif self.params.hold_at_start:
            self.wait_for_robots(stop, resend_s=self.dt_s / rtf)
        log.info("flight: clock started with %d robots", len(self.names))
        wall0 = time.perf_counter()
        trace = self.trace
        while not (stop.is_set() or self.finished()):
            if trace is not None:
                trace.begin(self.steps)
            self.publish_state()
            if trace is not None:
                trace.mark()
            if self.lockstep:
                waiting = self.missed < LOCKSTEP_ABSENT_AFTER
                self.transport.spin_until(
                    lambda: stop.is_set() or bool(self.answered[waiting].all()),
                    self.params.lockstep_timeout_s)
                self.missed = np.where(self.answered, 0, self.missed + 1)
            else:
                deadline = wall0 + (self.steps + 1) * self.dt_s / rtf
                self.transport.spin_until(lambda: stop.is_set(),
                                          max(0.0, deadline - time.perf_counter()))
            self.ticks_answered += self.answered
            if trace is not None:
                trace.mark()
            self.step()
            if trace is not None:
                trace.end(int(self.answered.sum()), round(self._stamp_s * 1e9))
        self.wall_s = time.perf_counter() - wall0

    # --- report ------------------------------------------------------------------------------

    def report(self) -> dict:
        # no tick flown (stopped while holding t = 0): no episode metrics, no latencies
        summary = {k: float(v[0]) if self.steps else None
                   for k, v in self.env.metrics.summary().items()}
        lat = np.array(self.latencies_ms) if self.latencies_ms else None
        return {
            "drones": len(self.names), "scenario": self.cfg.scenario,
            "backend": self.params.backend, "seed": self.params.seed,
            "sim_seconds": self.t_s, "wall_seconds": getattr(self, "wall_s", None),
            "real_time_factor": self.t_s / self.wall_s if getattr(self, "wall_s", 0) else None,
            **summary,
            "latency_p50_ms": None if lat is None else float(np.nanpercentile(lat, 50)),
            "latency_p99_ms": None if lat is None else float(np.nanpercentile(lat, 99)),
            "latency_samples": 0 if lat is None else int(np.isfinite(lat).sum()),
            "commands": self.commands.tolist(), "bad_commands": self.bad_commands.tolist(),
            "ticks": self.steps, "ticks_answered": self.ticks_answered.tolist(),
            "watchdog_hover": self.watchdog_events["hover"].tolist(),
            "watchdog_land": self.watchdog_events["land"].tolist(),
            "emergency": self.motors_off.tolist(), "names": self.names,
            "final_positions_m": self.positions[-1].tolist() if self.positions else [],
        }

    def shutdown(self) -> None:
        if self.trace is not None:
            self.trace.save(commands=np.array(self.command_trace, dtype=np.int64).reshape(-1, 4))
        if self.params.report_dir:
            out = Path(self.params.report_dir)
            out.mkdir(parents=True, exist_ok=True)
            files.write_json(out / REPORT_FILE, self.report())
            with files.atomic_open(out / TRAJECTORY_FILE, "wb") as f:
                shape = (-1, len(self.names), 3)  # (0, N, 3) when stopped before the first tick
                np.savez(f, positions_m=np.array(self.positions).reshape(shape),
                         goals_m=np.array(self.goals).reshape(shape), dt_s=self.dt_s,
                         names=np.array(self.names))
        self.env.close()


def _sent_wall_s(msg: object) -> float:
    """When the command was written (s, wall clock): the DDS source timestamp where the
    transport gives one, so the bridge's own busy time does not count; else now."""
    info = getattr(msg, "sample_info", None)
    stamp_ns = getattr(info, "source_timestamp", None)
    return stamp_ns * 1e-9 if isinstance(stamp_ns, int) and stamp_ns > 0 else time.time()


def main(argv: list[str] | None = None) -> int:
    return run_node("sim_bridge", SimBridgeParams, SimBridge,
                    sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
