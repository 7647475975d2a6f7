"""ROS 2 message definitions, as published in ROS 2's interface packages (rolling/jazzy/humble
agree on these), turned into Cyclone DDS types by a small .msg parser.

Deliberately independent of ``ros_nodes``: nothing here imports the project. A subscriber
built from these types reads what a ROS 2 node would read, so it checks the project's topic
names, type names, field layout and CDR encoding from the outside.
"""
from cyclonedds.idl import make_idl_struct
from cyclonedds.idl import types as t

# package/Type -> .msg text (comments and constants dropped)
MSG = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "std_msgs/Float64": "float64 data",
    "std_msgs/Empty": "",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Quaternion": "float64 x\nfloat64 y\nfloat64 z\nfloat64 w",
    "geometry_msgs/Pose": "Point position\nQuaternion orientation",
    "geometry_msgs/PoseStamped": "std_msgs/Header header\nPose pose",
    "geometry_msgs/Twist": "Vector3 linear\nVector3 angular",
    "geometry_msgs/TwistStamped": "std_msgs/Header header\nTwist twist",
    "geometry_msgs/PoseWithCovariance": "Pose pose\nfloat64[36] covariance",
    "geometry_msgs/TwistWithCovariance": "Twist twist\nfloat64[36] covariance",
    "nav_msgs/Odometry": ("std_msgs/Header header\nstring child_frame_id\n"
                          "geometry_msgs/PoseWithCovariance pose\n"
                          "geometry_msgs/TwistWithCovariance twist"),
    "geometry_msgs/Transform": "Vector3 translation\nQuaternion rotation",
    "geometry_msgs/Wrench": "Vector3 force\nVector3 torque",
    "sensor_msgs/MultiDOFJointState": ("std_msgs/Header header\nstring[] joint_names\n"
                                       "geometry_msgs/Transform[] transforms\n"
                                       "geometry_msgs/Twist[] twist\n"
                                       "geometry_msgs/Wrench[] wrench"),
    "nav_msgs/Path": "std_msgs/Header header\ngeometry_msgs/PoseStamped[] poses",
    "diagnostic_msgs/KeyValue": "string key\nstring value",
    "diagnostic_msgs/DiagnosticStatus": ("byte level\nstring name\nstring message\n"
                                         "string hardware_id\nKeyValue[] values"),
    "diagnostic_msgs/DiagnosticArray": "std_msgs/Header header\nDiagnosticStatus[] status",
    "rosgraph_msgs/Clock": "builtin_interfaces/Time clock",
}
PRIMITIVES = {"float64": t.float64, "float32": t.float32, "int32": t.int32, "uint32": t.uint32,
              "uint8": t.uint8, "byte": t.byte, "int64": t.int64, "string": str}
_built: dict[str, type] = {}


def msg_type(name: str) -> type:
    """The DDS type of ROS message ``pkg/Type``, with ROS 2's DDS type name."""
    if name in _built:
        return _built[name]
    pkg, leaf = name.split("/")
    fields = {}
    text = MSG[name] or "uint8 structure_needs_at_least_one_member"  # rosidl's rule
    for line in text.splitlines():
        ftype, fname = line.split()
        fields[fname] = _field_type(ftype, pkg)
    cls = make_idl_struct(leaf, f"{pkg}::msg::dds_::{leaf}_", fields)
    _built[name] = cls
    return cls


def _field_type(ftype: str, pkg: str):
    if ftype.endswith("[]"):
        return t.sequence[_field_type(ftype[:-2], pkg)]
    if ftype.endswith("]"):
        base, size = ftype[:-1].split("[")
        return t.array[_field_type(base, pkg), int(size)]
    if ftype in PRIMITIVES:
        return PRIMITIVES[ftype]
    return msg_type(ftype if "/" in ftype else f"{pkg}/{ftype}")

