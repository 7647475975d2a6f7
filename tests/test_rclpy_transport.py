"""The rclpy backend's message conversion, against stand-ins for rclpy's generated message
classes (ROS 2 cannot be installed here: a fake for ROS 2 only). The stand-ins behave as
rosidl's Python classes do where conversion can go wrong: fixed-size float arrays are numpy
arrays, ``byte`` fields are ``bytes`` of length 1, nested messages and sequences of messages
are message objects, every field has a default."""
import sys
import types

import numpy as np
import pytest

from ros_nodes import messages as m
from ros_nodes.rclpy_transport import from_ros, ros_class, to_ros


def _msg_class(name: str, fields: dict):
    def init(self, **kwargs):
        for key, default in fields.items():
            setattr(self, key, kwargs.get(key, default()))

    def fields_and_types(cls):
        return {k: "x" for k in fields}

    return type(name, (), {"__init__": init,
                           "get_fields_and_field_types": classmethod(fields_and_types)})


@pytest.fixture
def fake_rosidl(monkeypatch):
    f = float
    Time = _msg_class("Time", {"sec": int, "nanosec": int})
    Header = _msg_class("Header", {"stamp": Time, "frame_id": str})
    Point = _msg_class("Point", {"x": f, "y": f, "z": f})
    Vector3 = _msg_class("Vector3", {"x": f, "y": f, "z": f})
    Quaternion = _msg_class("Quaternion", {"x": f, "y": f, "z": f, "w": lambda: 1.0})
    Pose = _msg_class("Pose", {"position": Point, "orientation": Quaternion})
    PoseStamped = _msg_class("PoseStamped", {"header": Header, "pose": Pose})
    Twist = _msg_class("Twist", {"linear": Vector3, "angular": Vector3})
    TwistStamped = _msg_class("TwistStamped", {"header": Header, "twist": Twist})
    cov = lambda: np.zeros(36)  # noqa: E731
    PoseWithCovariance = _msg_class("PoseWithCovariance", {"pose": Pose, "covariance": cov})
    TwistWithCovariance = _msg_class("TwistWithCovariance", {"twist": Twist, "covariance": cov})
    Odometry = _msg_class("Odometry", {"header": Header, "child_frame_id": str,
                                       "pose": PoseWithCovariance,
                                       "twist": TwistWithCovariance})
    Path = _msg_class("Path", {"header": Header, "poses": list})
    KeyValue = _msg_class("KeyValue", {"key": str, "value": str})
    DiagnosticStatus = _msg_class("DiagnosticStatus", {
        "level": lambda: b"\x00", "name": str, "message": str, "hardware_id": str,
        "values": list})
    DiagnosticArray = _msg_class("DiagnosticArray", {"header": Header, "status": list})
    packages = {
        "builtin_interfaces": {"Time": Time}, "std_msgs": {"Header": Header},
        "geometry_msgs": {c.__name__: c for c in (Point, Vector3, Quaternion, Pose, PoseStamped,
                                                  Twist, TwistStamped, PoseWithCovariance,
                                                  TwistWithCovariance)},
        "nav_msgs": {"Odometry": Odometry, "Path": Path},
        "diagnostic_msgs": {c.__name__: c for c in (KeyValue, DiagnosticStatus,
                                                    DiagnosticArray)}}
    for pkg, classes in packages.items():
        mod = types.ModuleType(f"{pkg}.msg")
        for name, cls in classes.items():
            setattr(mod, name, cls)
        monkeypatch.setitem(sys.modules, pkg, types.ModuleType(pkg))
        monkeypatch.setitem(sys.modules, f"{pkg}.msg", mod)


def test_odometry_round_trips_through_rclpy_classes(fake_rosidl):
    msg = m.odometry("cf2", 3.5, [1.0, 2.0, 3.0], [0.1, 0.2, 0.3], [0.0, 0.0, 0.6, 0.8],
                     [0.01, 0.02, 0.03])
    ros = to_ros(msg)
    assert type(ros).__name__ == "Odometry" and ros.child_frame_id == "cf2"
    assert ros.pose.pose.orientation.w == 0.8 and ros.header.stamp.nanosec == 500_000_000
    ros.pose.covariance = np.arange(36.0)  # rclpy hands fixed arrays back as numpy
    back = from_ros(ros, m.Odometry)
    assert back.pose.covariance == list(np.arange(36.0))
    back.pose.covariance = [0.0] * 36
    assert back == msg


def test_path_and_diagnostics_round_trip(fake_rosidl):
    path = m.Path(m.header(1.0), [m.pose_stamped(1.0, [0, 0, 1]), m.pose_stamped(1.0, [2, 1, 1])])
    assert from_ros(to_ros(path), m.Path) == path
    diag = m.diagnostics(2.0, "cf1/robot_node", m.DIAG_ERROR, "land", {"ticks": 5})
    ros = to_ros(diag)
    assert ros.status[0].level == b"\x02"  # a .msg byte field is bytes in rclpy
    assert from_ros(ros, m.DiagnosticArray) == diag


def test_ros_class_names_follow_the_dds_type_names(fake_rosidl):
    assert ros_class(m.TwistStamped).__name__ == "TwistStamped"
    assert ros_class(m.DiagnosticStatus).__name__ == "DiagnosticStatus"
