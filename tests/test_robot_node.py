"""robot_node against hostile input, over real Cyclone DDS (loopback only): this test process
plays the bridge with the project's DDS transport; the robot node is its own process."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ros_nodes import messages as m
from ros_nodes.dds_transport import DdsTransport
from ros_nodes.launcher import load_launch_config
from ros_nodes.params import ParamError, build_params, parse_ros_args
from ros_nodes.robot_node import RobotParams
from ros_nodes.transport import QosKind
from sim.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
POLICY = str(REPO / "policies" / "formation_velocity_8.onnx")


def node(args: list[str], dom: int) -> subprocess.Popen:
    env = {**os.environ, "ROS_DOMAIN_ID": str(dom), "SWARM_RL_TRANSPORT": "dds"}
    return subprocess.Popen([sys.executable, "-m", "ros_nodes.robot_node", "--ros-args", *args],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_nan_and_out_of_range_odometry_is_rejected_counted_and_the_robot_holds():
    dom = 100 + (os.getpid() * 7 + 9) % 120
    os.environ["ROS_DOMAIN_ID"] = str(dom)
    proc = node(["-p", "robots:=[cf1]", "-p", "swarm:=[cf1, cf2]", "-p", f"policy:={POLICY}",
                 "-p", "status_rate_hz:=10.0", "-p", "land_after_s:=1.5"], dom)
    t = DdsTransport("fake_bridge", domain_id=dom)
    odom1 = t.create_publisher(m.Odometry, "/cf1/odom", QosKind.SENSOR)
    odom2 = t.create_publisher(m.Odometry, "/cf2/odom", QosKind.SENSOR)
    goal = t.create_publisher(m.PoseStamped, "/cf1/goal", QosKind.LATCHED)
    gamma = t.create_publisher(m.Float64, "/cf1/shield_gamma", QosKind.COMMAND)
    cmds: list[tuple[float, np.ndarray]] = []
    status: list[dict[str, str]] = []
    cmd_sub = t.create_subscription(
        m.TwistStamped, "/cf1/cmd_velocity_world",
        lambda c: cmds.append((time.monotonic(), m.vec(c.twist.linear))), QosKind.COMMAND)
    t.create_subscription(m.DiagnosticArray, "/cf1/status", lambda a: status.extend(
        {kv.key: kv.value for kv in st.values} for st in a.status), QosKind.EVENTS)
    try:
        t.spin_until(lambda: t.matched(cmd_sub) > 0, 30.0)
        assert t.matched(cmd_sub) > 0, proc.stderr.read() if proc.poll() is not None else ""
        goal.publish(m.pose_stamped(time.time(), [2.0, 0.0, 1.0]))
        here = np.array([0.0, 0.0, 1.0])

        def phase(seconds: float, own_pos, other_pos) -> tuple[float, float]:
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                now = time.time()
                odom1.publish(m.odometry("cf1", now, own_pos, [0, 0, 0], [0, 0, 0, 1], [0] * 3))
                odom2.publish(m.odometry("cf2", now, other_pos, [0, 0, 0], [0, 0, 0, 1],
                                         [0] * 3))
                t.spin_until(lambda: False, 0.01)
            return start, time.monotonic()

        good = phase(1.5, here, [-1.5, 0.0, 1.0])
        nan = phase(1.0, [np.nan, 0.0, 1.0], [np.nan, 0.0, 1.0])
        huge = phase(1.0, [1e5, 0.0, 1.0], [0.0, 1e5, 1.0])
        phase(0.3, here, [-1.5, 0.0, 1.0])
        gamma_before = status[-1]["shield_gamma"]
        gamma.publish(m.Float64(5.0))  # the shield's gamma, set at run time
        phase(0.5, here, [-1.5, 0.0, 1.0])
    finally:
        t.close()
        proc.terminate()
        proc.wait(timeout=20)

    def during(window: tuple[float, float], settle_s: float = 0.2) -> np.ndarray:
        return np.array([v for ts, v in cmds if window[0] + settle_s <= ts <= window[1]])

    moving = during(good, 0.5)
    assert len(moving) > 50 and np.linalg.norm(moving, axis=1).min() > 0.1, "policy flies"
    assert moving[:, 0].mean() > 0.1, "towards the goal at +x"
    held = during(nan)
    assert len(held) > 30
    assert np.abs(held).max() == 0.0, "bad own state: hold position (zero velocity)"
    still_bad = during((huge[0], huge[0] + 0.4))
    assert len(still_bad) > 10 and np.abs(still_bad).max() == 0.0
    landing = during((huge[0] + 0.6, huge[1]))
    assert len(landing) > 10, "bad for land_after_s = 1.5 s: land"
    assert np.allclose(landing, [0.0, 0.0, -0.3])
    last = status[-1]
    assert int(last["rejected_own_state_nonfinite"]) > 30
    assert int(last["rejected_own_position_implausible"]) > 30
    assert int(last["rejected_neighbour_nonfinite"]) > 30
    assert int(last["rejected_neighbour_position_implausible"]) > 30
    assert last["mode"] == "policy", "a good state resumes normal control"
    assert gamma_before == "density_rule" and last["shield_gamma"] == "5"


def test_neighbours_from_the_swarm_state_message_with_bad_ones_counted():
    """neighbour_source swarm_state: the robots' states, cf1's own included, come from
    /swarm/state only (nothing publishes odometry here); a message whose arrays disagree and a
    robot outside the swarm are dropped and counted."""
    dom = 100 + (os.getpid() * 7 + 13) % 120
    proc = node(["-p", "robots:=[cf1]", "-p", "swarm:=[cf1, cf2]", "-p", f"policy:={POLICY}",
                 "-p", "neighbour_source:=swarm_state", "-p", "status_rate_hz:=10.0"], dom)
    t = DdsTransport("fake_sim", domain_id=dom)
    swarm = t.create_publisher(m.MultiDOFJointState, "/swarm/state", QosKind.SENSOR)
    status: list[dict[str, str]] = []
    sub = t.create_subscription(m.DiagnosticArray, "/cf1/status", lambda a: status.extend(
        {kv.key: kv.value for kv in st.values} for st in a.status), QosKind.EVENTS)
    pos = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    quat = np.tile([0.0, 0.0, 0.0, 1.0], (3, 1))
    try:
        t.spin_until(lambda: t.matched(sub) > 0, 30.0)
        assert t.matched(sub) > 0, proc.stderr.read() if proc.poll() is not None else ""
        start, sent = time.monotonic(), 0
        while time.monotonic() - start < 2.0:
            now = time.time()
            state = m.swarm_state(now, ["cf1", "cf2", "cf9"], pos, np.zeros((3, 3)), quat,
                                  np.zeros((3, 3)))
            if sent % 4 == 0:  # 3 names, 2 twists: malformed; sent before the good one
                bad = m.swarm_state(now, ["cf1", "cf2", "cf9"], pos, np.zeros((3, 3)), quat,
                                    np.zeros((3, 3)))
                bad.twist.pop()
                swarm.publish(bad)
                t.spin_until(lambda: False, 0.005)
            swarm.publish(state)
            sent += 1
            t.spin_until(lambda: False, 0.02)
    finally:
        t.close()
        proc.terminate()
        proc.wait(timeout=20)
    last = status[-1]
    assert last["mode"] == "policy" and last["neighbours"] == "1", last
    assert int(last["dropped_swarm_state_malformed"]) > 5
    assert int(last["dropped_swarm_state_unknown_robot"]) > 20


@pytest.mark.parametrize("args, message", [
    (["-p", "robots:=[cf1]", "-p", "policy:=/no/such.onnx"], "/no/such.onnx"),
    (["-p", "robots:=[cf1]", "-p", f"policy:={POLICY}", "-p", "safety_distance_m:=-1.0"],
     "safety_distance_m: must be >= 0.05"),
    (["-p", "robots:=[cf1]", "-p", f"policy:={POLICY}", "-p", "gain:=2"],
     "unknown parameter(s) gain"),
    (["-p", "robots:=[1cf]", "-p", f"policy:={POLICY}"], "robot name '1cf'"),
    (["-p", "robots:=[cf1]", "-p", f"policy:={POLICY}", "-p", "shield:=maybe"],
     "shield: expected true or false"),
])
def test_bad_parameters_exit_2_naming_them(args, message):
    proc = node(args, 231)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert message in err and "Traceback" not in err


def test_ros_args_parsing_follows_ros2_syntax(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    shield: false\n    floor_m: 0.5\n"
                      "robots_a:\n  ros__parameters:\n    floor_m: 0.7\n")
    name, values = parse_ros_args(["--ros-args", "-r", "__node:=robots_a", "--params-file",
                                   str(params), "-p", "robots:=[cf1, cf2]",
                                   "-p", "ceiling_m:=3"])
    assert name == "robots_a"
    assert values == {"shield": False, "floor_m": 0.7, "robots": ["cf1", "cf2"],
                      "ceiling_m": 3}
    p = build_params(RobotParams, values, "robots_a")
    assert p.ceiling_m == 3.0 and isinstance(p.ceiling_m, float)
    with pytest.raises(ParamError, match="robots_a: parameter floor_m: expected a number"):
        build_params(RobotParams, {"floor_m": "low"}, "robots_a")
    with pytest.raises(ParamError, match="expected NAME:=VALUE"):
        parse_ros_args(["-p", "floor_m=1"])


def test_launch_config_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "swarm.yaml"
    bad.write_text("fileversion: 1\nsim:\n  drones: 8\n  speed: 3\n")
    with pytest.raises(ConfigError, match=r"swarm.yaml: sim.speed: unknown option"):
        load_launch_config(bad)
    bad.write_text("fileversion: 2\n")
    with pytest.raises(ConfigError, match="fileversion: this swarm-rl reads version 1"):
        load_launch_config(bad)
    bad.write_text("robots: {policy: nowhere.onnx}\n")
    with pytest.raises(ConfigError, match="robots.policy: no such file: nowhere.onnx"):
        load_launch_config(bad)
    assert load_launch_config(REPO / "config" / "sim_swarm.yaml").sim.drones == 8


def test_a_failing_batched_step_falls_back_to_one_step_per_robot(monkeypatch):
    """In-process host (real DDS transport, nothing published to it): the batched step raising
    must still leave every hosted robot with a policy command."""
    import ros_nodes.robot_node as robot_node

    dom = 100 + (os.getpid() * 7 + 17) % 120
    t = DdsTransport("host_under_test", domain_id=dom)
    params = build_params(RobotParams, {"robots": ["cf1", "cf2"], "swarm": ["cf1", "cf2"],
                                        "policy": POLICY, "neighbour_source": "swarm_state"},
                          "robots_cf1_cf2")
    host = robot_node.RobotHost(t, params)

    def broken(*_args, **_kwargs):
        raise RuntimeError("batched step bug")

    monkeypatch.setattr(robot_node, "step_robots", broken)
    now = time.time()
    pos = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0]])
    try:
        host.on_swarm_state(m.swarm_state(now, ["cf1", "cf2"], pos, np.zeros((2, 3)),
                                          np.tile([0.0, 0.0, 0.0, 1.0], (2, 1)),
                                          np.zeros((2, 3))))
    finally:
        t.close()
    for robot in host.robots.values():
        assert robot.ticks == 1 and robot.last_command.mode.value == "policy"


def test_status_and_intentions_go_out_after_ticks_at_their_rates():
    """In-process host fed swarm states at 50 Hz: status (10 Hz) and intentions (5 Hz) are
    published at their rates, each right after a tick (never while a state waits), and keep
    going from the watchdog's hover ticks once the states stop."""
    import ros_nodes.robot_node as robot_node

    dom = 100 + (os.getpid() * 7 + 19) % 120
    t = DdsTransport("host_under_test", domain_id=dom)
    params = build_params(RobotParams, {"robots": ["cf1", "cf2"], "swarm": ["cf1", "cf2"],
                                        "policy": POLICY, "neighbour_source": "swarm_state",
                                        "status_rate_hz": 10.0, "intention_rate_hz": 5.0},
                          "robots_cf1_cf2")
    host = robot_node.RobotHost(t, params)
    events: list[tuple[str, float]] = []
    for robot in host.robots.values():
        for kind in ("cmd", "status", "intention"):
            pub = getattr(robot, f"{kind}_pub")
            method = "publish_cdr" if kind == "cmd" else "publish"  # commands go as bytes
            original = getattr(pub, method)
            setattr(pub, method, lambda msg, kind=kind, original=original:
                    (events.append((kind, time.monotonic())), original(msg)))
    pos = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0]])
    start = time.monotonic()
    try:
        while time.monotonic() - start < 2.0:  # 2 s of states at 50 Hz
            tick_start = time.monotonic()
            host.on_swarm_state(m.swarm_state(time.time(), ["cf1", "cf2"], pos,
                                              np.zeros((2, 3)),
                                              np.tile([0.0, 0.0, 0.0, 1.0], (2, 1)),
                                              np.zeros((2, 3))))
            events.append(("state", tick_start))
            t.spin_until(lambda: False, max(0.0, tick_start + 0.02 - time.monotonic()))
        flowing = len(events)
        t.spin_until(lambda: False, 1.0)  # states stop: the watchdog hovers the robots
    finally:
        t.close()
    during = events[:flowing]
    status = [e for e in during if e[0] == "status"]
    intentions = [e for e in during if e[0] == "intention"]
    assert 2 * 18 <= len(status) <= 2 * 21 and 2 * 9 <= len(intentions) <= 2 * 11
    # everything a tick sends comes before the next state: outputs follow the commands
    last_kind = None
    for kind, _ in during:
        if kind in ("status", "intention"):
            assert last_kind in ("cmd", "status", "intention"), during
        last_kind = kind
    after = [e for e in events[flowing:] if e[0] == "status"]
    assert len(after) >= 2 * 5, "status goes on from the watchdog's ticks"
    assert all(r.last_command.mode.value == "hover" for r in host.robots.values())


def test_slack_collector_collects_cycles_between_ticks_not_during_them():
    """The host's collector: once started, automatic collection is off and reference cycles
    made during ticks are freed by the collection that follows a tick (generation 0 every
    tick, 1 and 2 at their periods)."""
    import gc
    import weakref

    from ros_nodes.robot_node import SlackCollector

    class Node:
        pass

    collector = SlackCollector(gen1_every=3, gen2_every=6)
    collector.after_tick()  # not started: a no-op, automatic collection untouched
    assert collector.ticks == 0 and gc.isenabled()
    counts = []
    gc.callbacks.append(lambda phase, info: phase == "stop" and counts.append(info["generation"]))
    try:
        collector.start()
        assert not gc.isenabled()
        counts.clear()
        for _ in range(6):
            a, b = Node(), Node()
            a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
            alive = weakref.ref(a)
            del a, b
            assert alive() is not None
            collector.after_tick()
            assert alive() is None
        assert counts == [0, 0, 1, 0, 0, 2]
    finally:
        gc.callbacks.pop()
        gc.unfreeze()
        gc.enable()


def test_swarm_state_rotations_are_the_per_robot_matrices():
    """The host turns every hosted robot's quaternion into its rotation matrix in one pass:
    bit for bit matrix_from_quat_xyzw's matrix of each (unit, non-unit, signed zeros, NaN,
    huge), and a robot whose quaternion is not a rotation still hovers for it."""
    import ros_nodes.robot_node as robot_node

    rng = np.random.default_rng(11)
    quats = rng.normal(size=(40, 4))
    quats[:30] /= np.linalg.norm(quats[:30], axis=1)[:, None]
    quats[30:34] = [[0.0, 0.0, 0.0, 1.0], [-0.0, 0.0, -0.0, -1.0], [np.nan, 0.0, 0.0, 1.0],
                    [1e300, 0.0, 0.0, 1.0]]
    want = np.array([m.matrix_from_quat_xyzw(q) for q in quats])
    assert m.matrices_from_quats_xyzw(quats).tobytes() == want.tobytes()
    assert m.matrices_from_quats_xyzw(np.zeros((0, 4))).shape == (0, 3, 3)

    dom = 100 + (os.getpid() * 7 + 23) % 120
    t = DdsTransport("host_under_test", domain_id=dom)
    names = [f"cf{i + 1}" for i in range(6)]
    params = build_params(RobotParams, {"robots": names[1:], "swarm": names, "policy": POLICY,
                                        "neighbour_source": "swarm_state"}, "robots_cf2_cf6")
    host = robot_node.RobotHost(t, params)
    pos = np.c_[np.arange(6.0) - 2.5, np.zeros(6), np.ones(6)]
    quat = quats[:6].copy()
    quat[4] *= 1.5  # not a unit quaternion: not a rotation
    try:
        host.on_swarm_state(m.swarm_state(time.time(), names, pos, np.zeros((6, 3)), quat,
                                          np.zeros((6, 3))))
    finally:
        t.close()
    for i, name in enumerate(names[1:], start=1):
        robot = host.robots[name]
        assert robot.own.rot.tobytes() == m.matrix_from_quat_xyzw(quat[i]).tobytes()
        assert robot.ticks == 1
    assert host.robots["cf5"].last_command.diagnostics.reasons == ("own_rotation_invalid",)
    assert host.robots["cf2"].last_command.mode.value == "policy"


def test_bridge_quaternions_are_the_unit_quaternions_of_the_attitudes():
    """The bridge's per-drone conversion against scipy's (another algorithm): the same
    rotation to rounding, w >= 0, unit length, back to the matrix through the hosts'
    conversion; every branch taken; a matrix that is not a rotation gives numbers or NaN,
    never an exception."""
    from scipy.spatial.transform import Rotation

    rots = np.concatenate([Rotation.random(400, random_state=3).as_matrix(),
                           [np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]),
                            np.diag([-1.0, -1.0, 1.0]),
                            Rotation.from_euler("x", 179.9, degrees=True).as_matrix()]])
    got = m.quats_xyzw_from_matrices(rots)
    want = Rotation.from_matrix(rots).as_quat(canonical=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert (got[:, 3] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=0, atol=4e-16)
    back = np.array([m.matrix_from_quat_xyzw(q) for q in got])
    np.testing.assert_allclose(back, rots, rtol=0, atol=2e-15)
    d = np.diagonal(rots, axis1=1, axis2=2)
    branch = np.select([d.sum(axis=1) > 0, (d[:, 0] > d[:, 1]) & (d[:, 0] > d[:, 2]),
                        d[:, 1] > d[:, 2]], [0, 1, 2], 3)
    assert set(branch.tolist()) == {0, 1, 2, 3}
    odd = m.quats_xyzw_from_matrices(np.array([np.zeros((3, 3)), np.full((3, 3), np.nan),
                                               -np.eye(3), 1.01 * rots[0]]))
    assert odd.shape == (4, 4) and np.isnan(odd[1]).all() and np.isfinite(odd[[0, 3]]).all()
    assert m.quats_xyzw_from_matrices(np.zeros((0, 3, 3))).shape == (0, 4)
