"""sim_bridge's safety rules over real DDS: watchdog (hover, then land), emergency stop,
land / takeoff, and commands that are not finite. This test process is the operator."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ros_nodes import messages as m
from ros_nodes.dds_transport import DdsTransport
from ros_nodes.sim_bridge import REPORT_FILE, TRAJECTORY_FILE
from ros_nodes.transport import QosKind

REPO = Path(__file__).resolve().parents[1]


def start_bridge(dom: int, report_dir: Path, *params: str) -> subprocess.Popen:
    """A sim_bridge process (hover scenario, 50 Hz) on DDS domain ``dom``; ``params``:
    more ``name:=value`` parameters."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(dom), "SWARM_RL_TRANSPORT": "dds"}
    args = ["scenario:=hover", "control_rate_hz:=50", f"report_dir:={report_dir}", *params]
    return subprocess.Popen(
        [sys.executable, "-m", "ros_nodes.sim_bridge", "--ros-args",
         *(x for arg in args for x in ("-p", arg))], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def bridge_outputs(report_dir: Path) -> tuple[dict, np.ndarray]:
    """The bridge's report and its recorded positions (T, N, 3)."""
    report = json.loads((report_dir / REPORT_FILE).read_text())
    with np.load(report_dir / TRAJECTORY_FILE) as traj:
        return report, traj["positions_m"]


def test_watchdog_emergency_and_bad_commands(tmp_path):
    dom = 100 + (os.getpid() * 7 + 11) % 120
    bridge = start_bridge(dom, tmp_path, "drones:=3", "duration_s:=6.0")
    t = DdsTransport("operator", domain_id=dom)
    cmd = [t.create_publisher(m.TwistStamped, f"/cf{i}/cmd_velocity_world", QosKind.COMMAND)
           for i in (1, 2, 3)]
    emergency = t.create_publisher(m.Empty, "/cf1/emergency", QosKind.EVENTS)
    odom_seen: list[float] = []
    t.create_subscription(m.Odometry, "/cf3/odom",
                          lambda o: odom_seen.append(o.pose.pose.position.z), QosKind.SENSOR)
    try:
        t.spin_until(lambda: len(odom_seen) > 5 and t.matched(emergency) > 0, 30.0)
        assert odom_seen, bridge.stderr.read() if bridge.poll() is not None else "no odometry"
        start = time.monotonic()
        sent_emergency = False
        while bridge.poll() is None and time.monotonic() - start < 30:
            now = time.time()
            cmd[0].publish(m.twist_stamped(now, [0.0, 0.0, 0.0], 0.0))
            cmd[1].publish(m.twist_stamped(now, [np.nan, 0.0, 0.0], 0.0))  # rejected
            if time.monotonic() - start < 1.0:  # cf3 commanded for 1 s, then silence
                cmd[2].publish(m.twist_stamped(now, [0.0, 0.0, 0.2], 0.0))
            elif not sent_emergency:
                emergency.publish(m.Empty())
                sent_emergency = True
            t.spin_until(lambda: False, 0.02)
        assert bridge.wait(timeout=30) == 0, bridge.stderr.read()
    finally:
        t.close()
        if bridge.poll() is None:
            bridge.kill()
    report, positions = bridge_outputs(tmp_path)
    z = positions[:, :, 2]
    assert report["emergency"] == [True, False, False]
    assert z[-1, 0] < 0.1, "cf1's motors were cut: it fell"
    assert report["bad_commands"][1] > 50 and report["commands"][1] == 0
    assert report["watchdog_hover"][1] == 1 and report["watchdog_land"][1] == 1
    assert report["watchdog_land"][2] == 1, "cf3: silent after 1 s -> hover -> land"
    assert z[-1, 2] < z[50, 2] - 0.5, "and it descended"
    assert abs(z[-1, 1] - z[0, 1]) > 0.5 and z[-1, 1] < z[0, 1], "cf2 (never commanded) landed"


@pytest.mark.parametrize("pacing", [["real_time_factor:=0.0"],
                                    ["real_time_factor:=1.0", "hold_at_start:=true"]],
                         ids=["lockstep", "real_time_hold"])
def test_bridge_waits_at_t0_for_robots_that_start_late(tmp_path, pacing):
    """Robot processes may start seconds after the bridge (imports on a loaded machine): a
    lockstep bridge, or a real-time one told to hold, keeps t = 0 until each has answered,
    instead of flying without them (and counting watchdog hovers for them)."""
    dom = 100 + (os.getpid() * 7 + 12 + len(pacing)) % 120
    bridge = start_bridge(dom, tmp_path, "drones:=2", "duration_s:=1.0", *pacing)
    lockstep = len(pacing) == 1
    t = DdsTransport("late_robots", domain_id=dom)
    clock: list[float] = []
    t.create_subscription(m.Clock, "/clock", lambda c: clock.append(m.from_time(c.clock)),
                          QosKind.SENSOR)
    try:
        t.spin_until(lambda: len(clock) > 3, 30.0)
        late_start = time.monotonic()
        t.spin_until(lambda: bridge.poll() is not None, 3.0)  # the robots are still starting
        assert bridge.poll() is None, "the bridge must hold t = 0 (its flight is 1 s long)"
        if lockstep:
            assert max(clock) == 0.0, "lockstep: the bridge's clock must stay at 0"
        for i in (1, 2):
            pub = t.create_publisher(m.TwistStamped, f"/cf{i}/cmd_velocity_world",
                                     QosKind.COMMAND)
            t.create_subscription(
                m.Odometry, f"/cf{i}/odom",
                lambda o, pub=pub: pub.publish(m.twist_stamped(m.from_time(o.header.stamp),
                                                               [0.0, 0.0, 0.0], 0.0)),
                QosKind.SENSOR)
        t.spin_until(lambda: bridge.poll() is not None, 60.0)
        assert bridge.wait(timeout=30) == 0, bridge.stderr.read()
        assert time.monotonic() - late_start > 3.0
    finally:
        t.close()
        if bridge.poll() is None:
            bridge.kill()
    report, positions = bridge_outputs(tmp_path)
    assert len(positions) == 50, "one recorded state per tick, none while waiting"
    assert report["sim_seconds"] == 1.0
    # in real time the answer to the last state or two may land after the flight's end
    assert min(report["commands"]) >= (50 if lockstep else 45)
    assert report["ticks"] == 50, "the hold at t = 0 is not part of the flight"
    assert min(report["ticks_answered"]) >= (50 if lockstep else 45)
    assert report["watchdog_hover"] == [0, 0], "every tick was answered: no watchdog hover"


class Quiet:
    """A publisher nobody reads."""

    def publish(self, msg):
        pass

    def publish_cdr(self, data):
        pass

    def subscribers(self):
        return 0


class FakeTransport:
    """Just enough of a transport to build a SimBridge in this process and call its
    command callbacks directly (no DDS)."""

    def __init__(self, decoders=False):
        self.decoders = decoders
        """Use the subscriptions' decoders, as DDS does; else ignore them, as rclpy does."""
        self.callbacks = {}

    def create_publisher(self, *args):
        return Quiet()

    def create_subscription(self, msg_type, topic, callback, qos, decode=None):
        self.callbacks[topic] = (callback, decode if self.decoders else None)

    def create_timer(self, *args):
        return None

    def now_s(self):
        return time.time()


def test_commands_as_numbers_set_what_the_message_objects_set():
    """On DDS the bridge reads each command's numbers straight from its bytes
    (m.twist_numbers); the commanded velocities, yaw rates, rejections and the answered
    flags must be those of the message objects, bit for bit (clipping, signed zeros, NaN)."""
    from ros_nodes.cdr_codec import codec_for
    from ros_nodes.params import build_params
    from ros_nodes.sim_bridge import SimBridge, SimBridgeParams

    params = build_params(SimBridgeParams, {"drones": 3, "scenario": "hover"}, "sim_bridge")
    fakes = [FakeTransport(False), FakeTransport(True)]
    bridges = [SimBridge(f, params) for f in fakes]
    codec = codec_for(m.TwistStamped)
    rng = np.random.default_rng(5)
    try:
        for bridge in bridges:
            bridge.publish_state()
        stamp = bridges[0].stamp_s()
        for bridge in bridges[1:]:
            bridge._stamp_s = stamp
            bridge._published_wall[-1] = bridges[0]._published_wall[-1]
        cases = [([0.1, -0.2, 0.3], 0.5), ([-0.0, 0.0, -0.0], -0.0), ([9.0, -9.0, 1.5], 1.0),
                 ([-1.5, 1.5, np.nextafter(1.5, 2)], 0.0), ([np.nan, 0.0, 0.0], 0.0),
                 ([0.0, 0.0, 0.0], np.inf), *((list(rng.normal(0, 2, 3)), rng.normal())
                                              for _ in range(30))]
        for k, (vel, yaw) in enumerate(cases):
            i = k % 3
            data = codec.encode(m.twist_stamped(stamp if k % 4 else stamp - 0.02, vel, yaw))
            for fake in fakes:
                callback, decode = fake.callbacks[f"/cf{i + 1}/cmd_velocity_world"]
                callback((decode or codec.decode)(data))
            a, b = bridges
            assert a.cmd_vel.tobytes() == b.cmd_vel.tobytes()
            assert a.cmd_yaw_rate.tobytes() == b.cmd_yaw_rate.tobytes()
            assert (a.bad_commands == b.bad_commands).all() and (a.answered == b.answered).all()
            assert (a.commands == b.commands).all() and len(a.latencies_ms) == len(b.latencies_ms)
        assert bridges[1].bad_commands.sum() == 2 and bridges[1].answered.any()
        assert np.abs(bridges[1].cmd_vel).max() <= params.max_speed_mps
    finally:
        for bridge in bridges:
            bridge.env.close()


def compiled_signatures() -> dict[str, int]:
    """How many type signatures each of the simulator's numba functions has compiled."""
    import numba

    from sim import batched_physics, controller, forces, observation, world
    from sim.jit import Kernel

    counts = {}
    for module in (batched_physics, controller, forces, observation, world):
        for name, obj in vars(module).items():
            kernels = ((obj.serial, obj.parallel) if isinstance(obj, Kernel)
                       else (obj,) if isinstance(obj, numba.core.registry.CPUDispatcher) else ())
            for k, fn in enumerate(kernels):
                counts[f"{module.__name__}.{name}/{k}"] = len(fn.signatures)
    return counts


@pytest.mark.parametrize("backend", ["pybullet", "batched"])
def test_bridge_compiles_before_its_clock_starts_and_flies_as_a_fresh_world(backend):
    """A real-time flight that began by compiling the simulator's kernels (seconds on a fresh
    install) ran late, and every robot fell back on the watchdog while the bridge caught up.
    The bridge takes that first step before its clock starts: its flight then compiles
    nothing, and the warm-up leaves no trace (the same states, bit for bit, as a world that
    never took it)."""
    from ros_nodes.params import build_params
    from ros_nodes.sim_bridge import SimBridge, SimBridgeParams
    from sim.swarm_env import SwarmVecEnv

    params = build_params(SimBridgeParams, {"drones": 4, "scenario": "static_formation",
                                            "backend": backend, "seed": 3}, "sim_bridge")
    bridge = SimBridge(FakeTransport(), params)
    fresh = SwarmVecEnv(bridge.cfg, num_envs=1, backend=backend, seed=3)
    fresh.reset(seed=3)
    try:
        before = compiled_signatures()
        velocities = np.random.default_rng(0).uniform(-0.5, 0.5, (40, 4, 3))
        for v in velocities:
            bridge.cmd_vel[:] = v
            bridge.last_cmd_t_s[:] = bridge.t_s
            action = bridge.actions()
            bridge.step()
            fresh.step(action, motors_off=np.zeros((1, 4), bool), observe=False)
        assert compiled_signatures() == before, "the flight compiled a kernel"
        a, b = bridge.env.physics.state(), fresh.physics.state()
        assert abs(a.pos[0] - a.pos[0, :1]).max() > 0.1
        for field in ("pos", "vel", "rot", "omega"):
            assert getattr(a, field).tobytes() == getattr(b, field).tobytes(), field
    finally:
        bridge.env.close()
        fresh.close()


@pytest.mark.filterwarnings("error")
def test_a_flight_stopped_before_its_first_tick_still_reports(tmp_path):
    """Ctrl-C while the bridge still holds t = 0 (robot processes slow to start): the bridge's
    trajectories are (0, N, 3), its episode metrics and latencies None (no NaN of empty
    means), and the launcher's summary and plot step are written from them instead of
    failing on a shapeless empty array."""
    from ros_nodes.launcher import LaunchConfig, summarise, write_report
    from ros_nodes.params import build_params
    from ros_nodes.sim_bridge import SimBridge, SimBridgeParams

    params = build_params(SimBridgeParams, {"drones": 3, "scenario": "hover",
                                            "report_dir": str(tmp_path)}, "sim_bridge")
    bridge = SimBridge(FakeTransport(), params)
    bridge.shutdown()
    report, positions = bridge_outputs(tmp_path)
    assert positions.shape == (0, 3, 3) and report["ticks"] == 0
    assert report["success_rate"] is None and report["latency_p99_ms"] is None
    summary = summarise(LaunchConfig(out=str(tmp_path)), report, {}, True, {"sim_bridge": 0})
    write_report(tmp_path, summary)
    assert json.loads((tmp_path / "summary.json").read_text())["interrupted"] is True
    assert re.search(r"\| simulated time \(s\) +\| 0\.0 \|", (tmp_path / "summary.md").read_text())
