"""``robot_node``: the decentralised controller of one or several robots.

Each hosted robot ``cfN`` decides for itself, every time its own state arrives (the bridge
publishes it at the control rate):

    /cfN/odom (own) ──► RobotController.step ──► /cfN/cmd_velocity_world
    /cfM/odom (all) ──► NeighbourTable ─┘  (policy + CBF shield, swarm_rl.runtime)
    /cfN/goal ────────► goal                    /cfN/intention, /cfN/status,
                                                /cfN/shield_intervention

or, with ``neighbour_source: swarm_state``, /swarm/state (every robot) in place of both
odometry lines: one message per tick updates the table and ticks each hosted robot in it.

Robots hosted in one process share one subscription per topic and one neighbour table
(DESIGN.md "Transport": O(N) received messages per tick per process, not O(N^2)); a process can
host one robot (one process per robot) or the whole swarm. With ``neighbour_source``
``swarm_state`` a process receives one message per tick whatever the swarm size, and the sim
bridge skips ``/cfN/odom`` while nobody reads it. The
command's ``header.stamp`` is the stamp of the own state it was computed from, so the bridge can
measure state-to-command latency. The low-rate outputs (status, intentions) are published
right after a tick, in the slack before the next state, never on timers of their own that
could fire just as a state arrives and hold up its tick.

Safety (DESIGN.md "Safety, faults and bad input"): every odometry message is validated (the
neighbour table and the controller reject and count NaN, implausible or out-of-order states);
a robot whose own state is missing, bad or stale commands hover, then landing, from its
watchdog timer; every command is finite and passed through the shield. The shield's gamma can
be changed per robot at run time on ``/cfN/shield_gamma`` (std_msgs/Float64; NaN or <= 0
returns to the neighbourhood-density rule).
"""
import gc
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from threading import Event

import numpy as np

from ros_nodes import messages as m
from ros_nodes.node_main import run_node
from ros_nodes.params import ParamError, spec
from ros_nodes.tick_trace import TickTrace
from ros_nodes.transport import (SWARM_STATE_TOPIC, QosKind, Transport, check_robot_name,
                                 robot_topic)
from swarm_rl.runtime.neighbours import NeighbourTable
from swarm_rl.runtime.policy import OnnxPolicy
from swarm_rl.runtime.robot import (Command, CommandMode, OwnArrays, OwnState,
                                    RobotController, compile_kernels, step_robots)
from swarm_rl.runtime.shield import CBFShield, ShieldConfig

log = logging.getLogger(__name__)
INF = math.inf


@dataclass(frozen=True)
class RobotParams:
    """Parameters of ``robot_node`` (ROS-style, see :mod:`ros_nodes.params`)."""

    robots: list[str] = spec(["cf1"], "Robots this process hosts; they share one subscription "
                             "per topic and one neighbour table.")
    swarm: list[str] = spec([], "Every robot in the swarm (whose odometry to follow); empty: "
                            "only the hosted robots.")
    neighbour_source: str = spec("odom", "Where the robots' states come from: odom (each "
                                 "robot's /cfN/odom; a hosted robot ticks on its own; works "
                                 "with every bridge) or swarm_state (one /swarm/state message "
                                 "per tick from a simulator or motion capture; every hosted "
                                 "robot in it ticks).", choices=("odom", "swarm_state"))
    policy: str = spec("", "ONNX policy file (velocity mode, exported by swarm-rl).")
    shield: bool = spec(True, "Filter every command through the CBF safety shield.")
    safety_distance_m: float = spec(0.3, "Shield: smallest allowed centre distance between "
                                    "two robots (m).", min=0.05, max=5.0)
    shield_gamma: float = spec(0.0, "Shield class-K gain (s/m^2); 0: the neighbourhood-density "
                               "rule.", min=0.0, max=100.0)
    v_max_mps: float = spec(0.0, "Speed limit per axis of the output (m/s); 0: the policy's "
                            "max_speed_mps x sqrt(3).", min=0.0, max=10.0)
    geofence_lower_m: list[float] = spec([-4.5, -4.5, -INF], "Geofence lower corner x, y, z (m, "
                                         "world ENU); .inf / -.inf disable a side.")
    geofence_upper_m: list[float] = spec([4.5, 4.5, INF], "Geofence upper corner (m).")
    floor_m: float = spec(0.2, "Lowest allowed height (m).", min=-10.0, max=100.0)
    ceiling_m: float = spec(3.5, "Highest allowed height (m).", min=-10.0, max=100.0)
    own_stale_s: float = spec(0.1, "Own state older than this: hover (s).", min=0.001, max=10.0)
    land_after_s: float = spec(2.0, "Own state bad for this long: land (s).", min=0.0, max=60.0)
    neighbour_stale_s: float = spec(0.1, "Neighbour older than this: inflated radius (s).",
                                    min=0.0, max=10.0)
    neighbour_drop_s: float = spec(1.0, "Neighbour older than this: ignored (s).", min=0.0,
                                   max=60.0)
    neighbour_inflate_mps: float = spec(1.0, "Radius inflation per second of a stale "
                                        "neighbour's age (m/s).", min=0.0, max=10.0)
    control_rate_hz: float = spec(0.0, "Expected odometry rate; the watchdog runs at it (Hz); "
                                  "0: the policy's training rate (its control_hz metadata).",
                                  min=0.0, max=1000.0)
    status_rate_hz: float = spec(2.0, "Rate of /cfN/status (Hz).", min=0.1, max=100.0)
    intention_rate_hz: float = spec(5.0, "Rate of /cfN/intention (Hz) in the goals mission.",
                                    min=0.1, max=100.0)
    mission: str = spec("goals", "goals: fly to /cfN/goal; tasks: choose tasks from "
                        "/swarm/tasks and share intentions (task layer).",
                        choices=("goals", "tasks"))
    task_preset: str = spec("mrta_room_8", "Tasks mission: the MRTA preset (config/mrta/).")
    task_policy: str = spec("greedy", "Tasks mission: greedy, or an exported task policy "
                            "(.onnx).")
    task_rounds: int = spec(0, "Tasks mission: intention exchanges per decision step; 0: "
                            "what the task policy was trained with (greedy: the preset's).",
                            min=0, max=20)


@dataclass
class LowRateOutput:
    """A periodic output of the host (status, intentions) with its period (s, monotonic)."""

    period_s: float
    publish: Callable[[], None]
    due_s: float = -INF

    def run_if_due(self, wall_s: float) -> None:
        if wall_s >= self.due_s:
            following = self.due_s + self.period_s  # keeps the rate over jittery ticks
            self.due_s = following if following > wall_s else wall_s + self.period_s
            self.publish()


@dataclass
class SlackCollector:
    """Python's cyclic garbage collection moved out of the ticks. Automatic collection would
    run inside whatever tick triggers it: a full pass over a host's objects takes 14-19 ms
    (measured), a generation-1 pass about 1 ms. Instead the objects of start-up are frozen out
    of it, automatic collection is off, and :meth:`after_tick` collects in the slack once a
    tick's commands are out: generation 0 every tick, 1 every ``gen1_every`` ticks, 2 every
    ``gen2_every``."""

    gen1_every: int = 10
    gen2_every: int = 500
    ticks: int = 0
    running: bool = False

    def start(self) -> None:
        """Take over from the automatic collector (for the life of the process)."""
        gc.collect()
        gc.freeze()
        gc.disable()
        self.running = True

    def after_tick(self) -> None:
        if not self.running:
            return
        self.ticks += 1
        gc.collect(2 if self.ticks % self.gen2_every == 0
                   else 1 if self.ticks % self.gen1_every == 0 else 0)


@dataclass
class HostedRobot:
    """What a host knows of one of its robots."""

    name: str
    controller: RobotController
    cmd_pub: object
    status_pub: object
    intention_pub: object
    intervention_pub: object
    goal_m: np.ndarray | None = None
    own: OwnState | None = None
    last_tick_wall_s: float = -INF
    last_command: Command | None = None
    ticks: int = 0
    modes: Counter = field(default_factory=Counter)
    interventions: int = 0
    reported_interventions: int = 0
    fallbacks: int = 0
    latencies_us: list[float] = field(default_factory=list)


class RobotHost:
    """The hosted robots of one process on one transport."""

    def __init__(self, transport: Transport, params: RobotParams) -> None:
        if not params.robots:
            raise ParamError("robot_node: parameter robots: list at least one robot")
        try:
            names = [check_robot_name(n) for n in params.robots]
            swarm = [check_robot_name(n) for n in (params.swarm or names)]
        except ValueError as exc:
            raise ParamError(f"robot_node: parameter robots / swarm: {exc}") from None
        missing = sorted(set(names) - set(swarm))
        if missing:
            raise ParamError(f"robot_node: parameter swarm: lacks hosted robot(s) "
                             f"{', '.join(missing)}")
        if not params.policy:
            raise ParamError("robot_node: parameter policy: give the ONNX policy file")
        if params.neighbour_drop_s < params.neighbour_stale_s:
            raise ParamError("robot_node: parameter neighbour_drop_s: must be >= "
                             f"neighbour_stale_s ({params.neighbour_stale_s})")
        self.transport = transport
        self.params = params
        self.policy = OnnxPolicy(params.policy)
        self.rate_hz = params.control_rate_hz or float(self.policy.metadata["control_hz"])
        if abs(self.rate_hz - float(self.policy.metadata["control_hz"])) > 1e-9:
            log.warning("robot_node: control_rate_hz %g differs from the rate the policy was "
                        "trained at (%s Hz); its behaviour may differ from evaluation",
                        self.rate_hz, self.policy.metadata["control_hz"])
        self.table = NeighbourTable(self.policy.neighbours_k, self.policy.neighbour_range_m,
                                    params.neighbour_stale_s, params.neighbour_drop_s,
                                    params.neighbour_inflate_mps)
        self.shield_config = self._shield_config()
        if len(names) > 1:  # co-hosted robots step together, through compiled passes
            compile_kernels(self.shield_config if params.shield else None)
        self.robots: dict[str, HostedRobot] = {}
        for name in names:
            shield = CBFShield(self.shield_config) if params.shield else None
            if shield is not None and params.shield_gamma > 0:
                shield.gamma = params.shield_gamma
            controller = RobotController(self.policy, self.table, name, shield=shield,
                                         own_stale_s=params.own_stale_s,
                                         land_after_s=params.land_after_s)
            self.robots[name] = HostedRobot(
                name, controller,
                transport.create_publisher(m.TwistStamped,
                                           robot_topic(name, "cmd_velocity_world"),
                                           QosKind.COMMAND),
                transport.create_publisher(m.DiagnosticArray, robot_topic(name, "status"),
                                           QosKind.EVENTS),
                transport.create_publisher(m.Path, robot_topic(name, "intention"),
                                           QosKind.COMMAND),
                transport.create_publisher(m.PoseStamped,
                                           robot_topic(name, "shield_intervention"),
                                           QosKind.EVENTS))
            if params.mission == "goals":
                transport.create_subscription(m.PoseStamped, robot_topic(name, "goal"),
                                              self._goal_callback(name), QosKind.LATCHED)
            transport.create_subscription(m.Float64, robot_topic(name, "shield_gamma"),
                                          self._gamma_callback(name), QosKind.COMMAND)
        self.swarm = frozenset(swarm)
        if params.neighbour_source == "swarm_state":
            transport.create_subscription(m.MultiDOFJointState, SWARM_STATE_TOPIC,
                                          self.on_swarm_state, QosKind.SENSOR,
                                          decode=m.swarm_state_arrays)
        else:
            for name in swarm:
                transport.create_subscription(m.Odometry, robot_topic(name, "odom"),
                                              self._odom_callback(name), QosKind.SENSOR)
        self.bad_messages: Counter[str] = Counter()
        """Messages dropped before reaching the runtime, by reason."""
        transport.create_timer(1.0 / self.rate_hz, self._watchdog)
        self.collector = SlackCollector()
        self.trace = TickTrace.from_env(
            f"robot_node_{names[0]}", ("callback", "table", "step", "writes", "after_tick"))
        """Per-tick timestamps of the /swarm/state ticks (``SWARM_RL_TICK_TRACE``)."""
        self._outputs = [LowRateOutput(1.0 / params.status_rate_hz, self._publish_status)]
        self.task_layer = None
        if params.mission == "tasks":
            from ros_nodes.task_layer import TaskLayer
            from sim.mrta.config import load_mrta_env

            self.task_layer = TaskLayer(transport, self, swarm,
                                        load_mrta_env(params.task_preset), params.task_policy,
                                        rounds=params.task_rounds or None)
        else:
            self._outputs.append(LowRateOutput(1.0 / params.intention_rate_hz,
                                               self._publish_intentions))

    def run(self, stop: Event) -> None:
        """The node's life (``node_main``): collect garbage between ticks, spin until stop."""
        self.collector.start()
        self.transport.spin_until(stop.is_set)

    def shutdown(self) -> None:
        if self.trace is not None:
            self.trace.save()

    def _shield_config(self) -> ShieldConfig:
        p = self.params
        v_max = p.v_max_mps or self.policy.max_speed_mps * math.sqrt(3)
        try:
            return ShieldConfig(safety_distance_m=p.safety_distance_m, v_max_mps=v_max,
                                floor_m=p.floor_m, ceiling_m=p.ceiling_m,
                                geofence_lower_m=tuple(p.geofence_lower_m),
                                geofence_upper_m=tuple(p.geofence_upper_m),
                                dt_s=1.0 / self.rate_hz)
        except ValueError as exc:
            raise ParamError(f"robot_node: shield parameters: {exc}") from None

    # --- callbacks ---------------------------------------------------------------------------

    def _odom_callback(self, name: str):
        def on_odom(msg: m.Odometry) -> None:
            self.on_odometry(name, msg)
        return on_odom

    def on_odometry(self, name: str, msg: m.Odometry) -> None:
        """A state of robot ``name``: into the neighbour table; for a hosted robot, a tick."""
        if msg.child_frame_id not in ("", name):
            self.bad_messages["odom_wrong_robot"] += 1
            return
        stamp_s = m.from_time(msg.header.stamp)
        pos = m.vec(msg.pose.pose.position)
        vel = m.vec(msg.twist.twist.linear)
        now_s = self.transport.now_s()
        self.table.update(name, stamp_s, pos, vel, now_s=now_s)
        robot = self.robots.get(name)
        if robot is None:
            return
        robot.own = OwnState(pos, vel, m.matrix_from_quat_xyzw(m.quat(msg.pose.pose.orientation)),
                             m.vec(msg.twist.twist.angular), stamp_s)
        self._tick(robot, now_s, stamp_s)
        self._after_tick()

    def on_swarm_state(self, msg: m.MultiDOFJointState | m.SwarmStateArrays) -> None:
        """Every robot's state from one swarm-state message (or its arrays, as the DDS
        transport hands it over): into the neighbour table, and a tick for each hosted robot
        in it (its own state is its entry)."""
        trace = self.trace
        if trace is not None:
            t = self.transport
            src = getattr(getattr(msg, "sample_info", None), "source_timestamp", 0)
            trace.begin(src if isinstance(src, int) else 0,
                        *(getattr(t, k, 0) for k in ("wait_start_ns", "wake_ns",
                                                     "spin_start_ns")))
        try:
            names, pos, vel, quat, omega = m.read_swarm_state(msg)
        except ValueError:
            self.bad_messages["swarm_state_malformed"] += 1
            return
        stamp_s = m.from_time(msg.header.stamp)
        now_s = self.transport.now_s()
        known = [i for i, name in enumerate(names) if name in self.swarm]
        self.bad_messages["swarm_state_unknown_robot"] += len(names) - len(known)
        self.table.update_many([names[i] for i in known], stamp_s, pos[known], vel[known],
                               now_s=now_s)
        if trace is not None:
            trace.mark()
        hosted = [i for i in known if names[i] in self.robots]
        rots = m.matrices_from_quats_xyzw(quat[hosted])  # every hosted robot's, at once
        due = []
        for i, rot in zip(hosted, rots):
            robot = self.robots[names[i]]
            robot.own = OwnState(pos[i], vel[i], rot, omega[i], stamp_s)
            due.append(robot)
        if due:  # after the table has every robot of this message
            self._tick_all(due, now_s, stamp_s,
                           (pos[hosted], vel[hosted], rots, omega[hosted]))
            self._after_tick()
        if trace is not None and trace.marked == 4:
            trace.end()

    def _goal_callback(self, name: str):
        def on_goal(msg: m.PoseStamped) -> None:
            goal = m.vec(msg.pose.position)
            if not (np.isfinite(goal).all() and np.abs(goal).max() < 1e3):
                self.bad_messages["goal_invalid"] += 1
                log.warning("%s: ignored invalid goal %s", name, goal)
                return
            self.robots[name].goal_m = goal
        return on_goal

    def _gamma_callback(self, name: str):
        def on_gamma(msg: m.Float64) -> None:
            shield = self.robots[name].controller.shield
            if shield is None:
                return
            value = float(msg.data)
            shield.gamma = value if math.isfinite(value) and value > 0 else None
        return on_gamma

    # --- the tick ----------------------------------------------------------------------------

    def _tick(self, robot: HostedRobot, now_s: float, stamp_s: float) -> None:
        self._send(robot, robot.controller.step(now_s, robot.own, self._goal(robot)), now_s,
                   stamp_s)

    def _tick_all(self, robots: list[HostedRobot], now_s: float, stamp_s: float,
                  own_arrays: OwnArrays | None = None) -> None:
        """Several hosted robots' ticks at once (one policy call, one stacked shield pass);
        should the batched step itself fail, each robot steps on its own instead.
        ``own_arrays``: their own states' fields stacked, as the swarm state gave them."""
        try:
            cmds = step_robots([r.controller for r in robots], now_s, [r.own for r in robots],
                               [self._goal(r) for r in robots], own_arrays=own_arrays)
        except Exception:
            log.exception("batched step of %d robots failed; stepping them one by one",
                          len(robots))
            for robot in robots:
                self._tick(robot, now_s, stamp_s)
            return
        if self.trace is not None:
            self.trace.mark()
        for robot, cmd in zip(robots, cmds):
            self._send(robot, cmd, now_s, stamp_s)
        if self.trace is not None:
            self.trace.mark()

    def _goal(self, robot: HostedRobot) -> np.ndarray:
        own = robot.own
        if robot.goal_m is None and own is not None:
            pos = np.asarray(own.pos_m, dtype=float)
            if pos.shape == (3,) and np.isfinite(pos).all() and np.abs(pos).max() < 1e3:
                robot.goal_m = pos.copy()  # no mission yet: hold where the robot is
        return robot.goal_m if robot.goal_m is not None else np.zeros(3)

    def _send(self, robot: HostedRobot, cmd: Command, now_s: float, stamp_s: float) -> None:
        """Publish a tick's command, stamped with the state it answers, then record it (the
        wire first: the bookkeeping is not part of the state-to-command latency)."""
        stamp = stamp_s if math.isfinite(stamp_s) else now_s
        write_cdr = getattr(robot.cmd_pub, "publish_cdr", None)
        if write_cdr is not None:  # DDS: the message's bytes straight from the numbers
            write_cdr(m.twist_stamped_cdr(stamp, cmd.velocity_mps, cmd.yaw_rate_rad_s))
        else:
            robot.cmd_pub.publish(m.twist_stamped(stamp, cmd.velocity_mps,
                                                  cmd.yaw_rate_rad_s))
        robot.last_command = cmd
        robot.last_tick_wall_s = time.monotonic()
        robot.ticks += 1
        robot.modes[cmd.mode.value] += 1
        d = cmd.diagnostics
        robot.interventions += d.shield_intervened
        robot.fallbacks += d.shield_fallback
        if d.policy_latency_us is not None:
            robot.latencies_us.append(d.policy_latency_us)
            del robot.latencies_us[:-1000]

    def _watchdog(self) -> None:
        """Robots whose own odometry stopped still get a command: hover, then land. It acts
        only once the own state is stale (``own_stale_s``), so a host that runs late is not
        loaded with extra policy ticks on top."""
        late_s = self.params.own_stale_s
        wall = time.monotonic()
        late = [r for r in self.robots.values() if wall - r.last_tick_wall_s > late_s]
        for robot in late:
            self._tick(robot, self.transport.now_s(), self.transport.now_s())
        if late:
            self._after_tick()

    def _after_tick(self) -> None:
        """The slack after a tick, before the next state: status and intentions when due, then
        garbage collection, so that neither holds up a tick (as independent timers or the
        automatic collector would, firing just as a state arrives)."""
        wall = time.monotonic()
        for output in self._outputs:
            output.run_if_due(wall)
        self.collector.after_tick()

    # --- outputs at low rate -----------------------------------------------------------------

    def _publish_status(self) -> None:
        now = self.transport.now_s()
        for robot in self.robots.values():
            robot.status_pub.publish(self.status(robot, now))
            if robot.interventions > robot.reported_interventions and robot.own is not None:
                robot.reported_interventions = robot.interventions
                pos = np.asarray(robot.own.pos_m, dtype=float)
                if np.isfinite(pos).all():  # where the shield acted, for RViz
                    robot.intervention_pub.publish(m.pose_stamped(now, pos))

    def status(self, robot: HostedRobot, now_s: float) -> m.DiagnosticArray:
        cmd = robot.last_command
        mode = cmd.mode if cmd is not None else CommandMode.HOVER
        level = {CommandMode.POLICY: m.DIAG_OK, CommandMode.HOVER: m.DIAG_WARN,
                 CommandMode.LAND: m.DIAG_ERROR}[mode]
        reasons = ",".join(cmd.diagnostics.reasons) if cmd is not None else "no_state_yet"
        lat = np.array(robot.latencies_us) if robot.latencies_us else np.zeros(1)
        values: dict[str, object] = {
            "mode": mode.value, "reasons": reasons, "ticks": robot.ticks,
            "ticks_policy": robot.modes["policy"], "ticks_hover": robot.modes["hover"],
            "ticks_land": robot.modes["land"], "shield_interventions": robot.interventions,
            "shield_fallbacks": robot.fallbacks,
            "neighbours": cmd.diagnostics.neighbours if cmd is not None else 0,
            "policy_latency_p50_us": float(np.percentile(lat, 50)),
            "policy_latency_p99_us": float(np.percentile(lat, 99)),
        }
        shield = robot.controller.shield
        if shield is not None:
            values["shield_gamma"] = "density_rule" if shield.gamma is None else shield.gamma
        if cmd is not None:
            values.update({f"rejected_{k}": v for k, v in cmd.diagnostics.rejected.items()})
        values.update({f"dropped_{k}": v for k, v in self.bad_messages.items()})
        if self.task_layer is not None:
            values.update(self.task_layer.status_values(robot.name))
        return m.diagnostics(now_s, f"{robot.name}/robot_node", level,
                             f"{mode.value}" + (f": {reasons}" if reasons else ""), values,
                             robot.name)

    def _publish_intentions(self) -> None:
        """The planned path: from the own position straight to the goal (the last pose)."""
        now = self.transport.now_s()
        for robot in self.robots.values():
            if robot.own is None or robot.goal_m is None:
                continue
            pos = np.asarray(robot.own.pos_m, float)
            if not np.isfinite(pos).all():
                continue
            robot.intention_pub.publish(m.Path(m.header(now), [
                m.pose_stamped(now, pos), m.pose_stamped(now, robot.goal_m)]))


def main(argv: list[str] | None = None) -> int:
    return run_node("robot_node", RobotParams, RobotHost,
                    sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
