"""Wire compatibility with ROS 2: what the nodes publish is what a ROS 2 node reads.

Two checks, neither trusting the project's message classes:
- the CDR bytes of an Odometry sample, decoded by hand from the XCDR1 rules and the .msg field
  order (4-byte encapsulation header, then each field aligned to its own size);
- a subscriber process built only from ROS 2's published .msg definitions
  (tests/ros2_wire/ros2_msgs.py, no project import) reading the live nodes over DDS with
  rmw_cyclonedds's conventions (``rt/`` topics, ``pkg::msg::dds_::Type_`` names, XCDR1 only).
ROS 2 itself cannot be installed here; a ROS machine is the remaining check (docs).
"""
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ros_nodes import messages as m

REPO = Path(__file__).resolve().parents[1]
WIRE = Path(__file__).resolve().parent / "ros2_wire"


class CdrReader:
    """Plain little-endian CDR (XCDR1): primitives aligned to their size from the body start."""

    def __init__(self, data: bytes) -> None:
        assert data[:2] == b"\x00\x01", f"encapsulation {data[:2].hex()}: expected CDR_LE"
        self.body, self.at = data[4:], 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        self.at += -self.at % size
        (value,) = struct.unpack_from("<" + fmt, self.body, self.at)
        self.at += size
        return value

    def string(self) -> str:
        n = self.read("I")
        raw = self.body[self.at:self.at + n]
        self.at += n
        assert raw.endswith(b"\x00")
        return raw[:-1].decode()


def test_odometry_bytes_follow_the_ros2_msg_layout():
    msg = m.odometry("cf3", 12.25, [1.0, -2.0, 0.5], [0.1, 0.2, -0.3], [0.0, 0.0, 0.6, 0.8],
                     [0.01, 0.02, 0.03])
    msg.pose.covariance[0] = 7.0
    r = CdrReader(msg.serialize())
    assert (r.read("i"), r.read("I")) == (12, 250_000_000)  # header.stamp
    assert r.string() == "world"  # header.frame_id
    assert r.string() == "cf3"  # child_frame_id
    assert [r.read("d") for _ in range(3)] == [1.0, -2.0, 0.5]  # pose.pose.position
    assert [r.read("d") for _ in range(4)] == [0.0, 0.0, 0.6, 0.8]  # orientation x y z w
    cov = [r.read("d") for _ in range(36)]
    assert cov[0] == 7.0 and not any(cov[1:])
    assert np.allclose([r.read("d") for _ in range(3)], [0.1, 0.2, -0.3])  # twist.linear
    assert np.allclose([r.read("d") for _ in range(3)], [0.01, 0.02, 0.03])  # angular
    assert [r.read("d") for _ in range(36)] == [0.0] * 36
    assert r.at == len(r.body), "no trailing fields"


def test_diagnostic_status_level_is_one_octet():
    arr = m.diagnostics(1.0, "cf1/robot_node", m.DIAG_WARN, "hover", {"ticks": 3})
    r = CdrReader(arr.serialize())
    r.read("i"), r.read("I"), r.string()  # header
    assert r.read("I") == 1  # status[] length
    assert r.read("B") == m.DIAG_WARN  # level: byte
    assert (r.string(), r.string(), r.string()) == ("cf1/robot_node", "hover", "")
    assert r.read("I") == 1 and (r.string(), r.string()) == ("ticks", "3")


def test_subscriber_from_ros2_definitions_reads_the_live_nodes(tmp_path):
    dom = 100 + (os.getpid() * 7 + 5) % 120
    env = {**os.environ, "ROS_DOMAIN_ID": str(dom), "SWARM_RL_TRANSPORT": "dds",
           "PYTHONPATH": str(REPO)}
    py = sys.executable
    bridge = subprocess.Popen(
        [py, "-m", "ros_nodes.sim_bridge", "--ros-args", "-p", "drones:=2", "-p",
         "scenario:=static_formation", "-p", "control_rate_hz:=100", "-p", "duration_s:=9.0"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    robot = subprocess.Popen(
        [py, "-m", "ros_nodes.robot_node", "--ros-args", "-p", "robots:=[cf1, cf2]", "-p",
         f"policy:={REPO / 'policies' / 'formation_velocity_8.onnx'}",
         "-p", "neighbour_source:=swarm_state"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        sub = subprocess.run([py, str(WIRE / "subscriber.py"), str(dom), "cf1", "5.0"],
                             env={**env, "PYTHONPATH": str(WIRE)}, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert sub.returncode == 0, sub.stderr
    finally:
        for p in (robot, bridge):
            p.terminate()
            p.wait(timeout=20)
    got = json.loads(sub.stdout.strip().splitlines()[-1])
    counts = got["counts"]
    assert counts["odom"] > 200 and counts["pose"] > 200, counts  # ~100 Hz for 5 s
    assert counts["cmd_velocity_world"] > 200, counts
    assert counts["goal"] >= 1 and counts["intention"] >= 5 and counts["status"] >= 3, counts
    assert counts["swarm_state"] > 200, counts
    assert got["swarm_names"] == [["cf1", "cf2"]] and got["swarm_sizes"] == [[2, 2, 0]]
    assert np.all(np.diff(got["swarm_stamps"]) > 0) and min(got["swarm_z"]) > 0.2
    assert got["odom_child_frame"] == ["cf1"] and got["odom_frame"] == ["world"]
    assert np.allclose(got["odom_quat_norms"], 1.0, atol=1e-9)
    assert min(got["odom_z"]) > 0.2
    assert np.all(np.diff(got["odom_stamps"]) > 0), "stamps increase"
    # each command answers a published state: its stamp is one of the odometry stamps
    odom_stamps = np.array(got["odom_stamps"])
    matched = [np.abs(odom_stamps - s).min() < 1e-6 for s in got["cmd_stamps"]
               if odom_stamps[0] <= s <= odom_stamps[-1]]
    assert np.mean(matched) > 0.95
    assert max(got["cmd_speeds"]) <= 1.5 * np.sqrt(3) + 1e-9
    assert np.allclose(got["intention_last"], got["goal"]), "intention ends at the goal"
    assert got["status_names"] == ["cf1/robot_node"]
    assert set(got["status_levels"]) <= {0, 1, 2}
    assert {"mode", "ticks", "shield_interventions"} <= set(got["status_keys"])
