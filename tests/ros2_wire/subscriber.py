"""A ROS-2-style subscriber that knows only ROS 2's message definitions (ros2_msgs.py), not the
project: ``python subscriber.py DOMAIN ROBOT SECONDS`` reads the robot's topics the way
rmw_cyclonedds_cpp does (``rt/`` names, XCDR1 only) and prints one JSON line of what it got.
Loopback only: interface lo, multicast off, peers on 127.0.0.1."""
import json
import sys
import time

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ros2_msgs import msg_type

LOOPBACK = ("<CycloneDDS><Domain Id=\"any\"><General><Interfaces><NetworkInterface name=\"lo\"/>"
            "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
            "<ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>120"
            "</MaxAutoParticipantIndex><Peers><Peer address=\"127.0.0.1\"/></Peers></Discovery>"
            "</Domain></CycloneDDS>")


def main() -> None:
    domain_id, robot, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    domain = Domain(domain_id, LOOPBACK)  # noqa: F841  (keeps the configuration alive)
    dp = DomainParticipant(domain_id)
    xcdr1 = Policy.DataRepresentation(use_cdrv0_representation=True)
    best_effort = Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(100), xcdr1)
    reliable = Qos(Policy.Reliability.Reliable(duration(milliseconds=100)),
                   Policy.History.KeepLast(100), xcdr1)
    latched = Qos(Policy.Reliability.Reliable(duration(milliseconds=100)),
                  Policy.History.KeepLast(1), Policy.Durability.TransientLocal, xcdr1)
    topics = {"odom": ("nav_msgs/Odometry", best_effort),
              "pose": ("geometry_msgs/PoseStamped", best_effort),
              "cmd_velocity_world": ("geometry_msgs/TwistStamped", reliable),
              "goal": ("geometry_msgs/PoseStamped", latched),
              "intention": ("nav_msgs/Path", reliable),
              "status": ("diagnostic_msgs/DiagnosticArray", reliable)}
    readers = {leaf: DataReader(dp, Topic(dp, f"rt/{robot}/{leaf}", msg_type(name)), qos)
               for leaf, (name, qos) in topics.items()}
    readers["swarm_state"] = DataReader(
        dp, Topic(dp, "rt/swarm/state", msg_type("sensor_msgs/MultiDOFJointState")), best_effort)
    got: dict[str, list] = {leaf: [] for leaf in readers}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for leaf, reader in readers.items():
            got[leaf] += [s for s in reader.take(N=100) if hasattr(s, "header")]
        time.sleep(0.01)
    odom = got["odom"]
    status = [st for arr in got["status"] for st in arr.status]
    swarm = got["swarm_state"]
    out = {
        "counts": {k: len(v) for k, v in got.items()},
        "swarm_names": sorted({tuple(s.joint_names) for s in swarm}),
        "swarm_sizes": sorted({(len(s.transforms), len(s.twist), len(s.wrench)) for s in swarm}),
        "swarm_stamps": [s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 for s in swarm],
        "swarm_z": [s.transforms[0].translation.z for s in swarm if s.transforms],
        "odom_child_frame": sorted({o.child_frame_id for o in odom}),
        "odom_frame": sorted({o.header.frame_id for o in odom}),
        "odom_stamps": [o.header.stamp.sec + o.header.stamp.nanosec * 1e-9 for o in odom],
        "odom_quat_norms": [sum(getattr(o.pose.pose.orientation, c) ** 2 for c in "xyzw")
                            for o in odom],
        "odom_z": [o.pose.pose.position.z for o in odom],
        "odom_pose_equals_pose_topic": bool(odom) and bool(got["pose"]),
        "cmd_stamps": [c.header.stamp.sec + c.header.stamp.nanosec * 1e-9
                       for c in got["cmd_velocity_world"]],
        "cmd_speeds": [(c.twist.linear.x ** 2 + c.twist.linear.y ** 2 + c.twist.linear.z ** 2)
                       ** 0.5 for c in got["cmd_velocity_world"]],
        "goal": [[g.pose.position.x, g.pose.position.y, g.pose.position.z]
                 for g in got["goal"]][-1:],
        "intention_last": [[p.poses[-1].pose.position.x, p.poses[-1].pose.position.y,
                            p.poses[-1].pose.position.z] for p in got["intention"]
                           if p.poses][-1:],
        "status_names": sorted({st.name for st in status}),
        "status_levels": sorted({int(st.level) for st in status}),
        "status_keys": sorted({kv.key for st in status for kv in st.values}),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
