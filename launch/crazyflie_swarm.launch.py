"""``ros2 launch swarm_rl crazyflie_swarm.launch.py config:=my_swarm.yaml``: the same robot
nodes as the simulated swarm, driving real Crazyflies through the cflib radio bridge.

Starts one ``crazyflie_bridge`` for the enabled robots of ``config`` (a crazyflies.yaml; one
bridge per radio: list each radio's robots in ``bridge_groups`` as ``cf1,cf2;cf3,cf4``) and
the ``robot_node`` processes. Arguments: ``config``, ``policy``, ``shield``,
``robots_per_process``, ``auto_takeoff`` (true/false), ``bridge_groups``, ``rviz``. Goals come
from ``/cfN/goal`` (an operator or a mission node); ``/all/land`` lands everyone.
See docs/hardware.md before the first flight.
"""
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ros_nodes.params import launch_bool
from ros_nodes.transport import host_groups

ARGS = {
    "config": ("", "crazyflies.yaml; empty: the shipped config/crazyflies.yaml."),
    "policy": ("", "ONNX policy; empty: the shipped formation_velocity_8.onnx."),
    "shield": ("true", "CBF safety shield on every robot."),
    "robots_per_process": ("0", "Robots per robot_node process; 0: all in one."),
    "auto_takeoff": ("false", "Take every robot off once its link is up."),
    "bridge_groups": ("", "Robots per bridge (one per radio): 'cf1,cf2;cf3'; empty: one."),
    "rviz": ("false", "Start RViz with config/swarm.rviz."),
}


def _enabled_robots(config: Path) -> list[str]:
    doc = yaml.safe_load(config.read_text())
    return [name for name, entry in doc["robots"].items() if entry.get("enabled", True)]


def _nodes(context):
    share = Path(get_package_share_directory("swarm_rl"))
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGS}
    config = Path(arg["config"] or share / "config" / "crazyflies.yaml")
    policy = arg["policy"] or str(share / "policies" / "formation_velocity_8.onnx")
    names = _enabled_robots(config)
    groups = [g.split(",") for g in arg["bridge_groups"].split(";")] if arg["bridge_groups"] \
        else [names]
    unknown = sorted({r for g in groups for r in g} - set(names))
    if unknown:
        raise ValueError(f"bridge_groups: not enabled in {config}: {', '.join(unknown)}")
    nodes = [Node(package="swarm_rl", executable="crazyflie_bridge",
                  name=f"crazyflie_bridge_{k}", output="screen",
                  parameters=[{"config": str(config), "robots": group,
                               "auto_takeoff": launch_bool(arg["auto_takeoff"], "auto_takeoff")}])
             for k, group in enumerate(groups)]
    for node, hosted in host_groups(names, int(arg["robots_per_process"])):
        nodes.append(Node(
            package="swarm_rl", executable="robot_node",
            name=node,
            output="screen",
            parameters=[{"robots": hosted, "swarm": names, "policy": policy,
                         "shield": launch_bool(arg["shield"], "shield")}]))
    if launch_bool(arg["rviz"], "rviz"):
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                          arguments=["-d", str(share / "config" / "swarm.rviz")]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGS.items()] + [OpaqueFunction(function=_nodes)])
