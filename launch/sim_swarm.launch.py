"""``ros2 launch swarm_rl sim_swarm.launch.py robots:=8``: a simulated swarm, one decision
maker per robot.

Starts ``sim_bridge`` (N simulated Crazyflies in PyBullet) and the robot nodes: with
``robots_per_process:=1`` one ``robot_node`` process per robot, with ``0`` (the default) one
process hosting all robots (they share one subscription per topic: O(N) messages per tick).
Arguments: ``robots``, ``policy`` (ONNX, velocity mode), ``scenario`` (a name or YAML path),
``shield`` (true/false), ``robots_per_process``, ``rviz`` (true/false), ``duration_s``
(0: run until stopped), ``mission`` (``goals``, or ``tasks``: a ``task_server`` with coalition
tasks and each robot's task layer; ``task_preset``, ``task_policy``). The same graph runs
without ROS 2 as ``swarm-rl launch``.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ros_nodes.params import launch_bool
from ros_nodes.transport import host_groups

ARGS = {
    "robots": ("8", "Number of simulated robots (cf1 ... cfN)."),
    "policy": ("", "ONNX policy; empty: the shipped formation_velocity_8.onnx."),
    "scenario": ("", "Scenario name or YAML path; empty: the shipped circle_8.yaml."),
    "shield": ("true", "CBF safety shield on every robot."),
    "robots_per_process": ("0", "Robots per robot_node process; 0: all in one."),
    "rviz": ("false", "Start RViz with config/swarm.rviz."),
    "duration_s": ("0.0", "Stop the simulation after this many seconds; 0: never."),
    "control_rate_hz": ("100", "Odometry / command rate (the shipped policies' rate)."),
    "mission": ("goals", "goals: the scenario's goals; tasks: task_server + task layers."),
    "task_preset": ("mrta_room_8", "tasks mission: MRTA preset name or YAML path."),
    "task_policy": ("", "tasks mission: greedy, or an exported task policy (.onnx) trained "
                    "on task_preset; empty: policies/mrta_room_8_l5.onnx for mrta_room_8, "
                    "else greedy."),
    "realtime_priority": ("0", "1-99: sim_bridge and robot nodes under SCHED_FIFO (chrt -f N; "
                               "needs root or CAP_SYS_NICE); 0: the default scheduler."),
}


def _nodes(context):
    share = Path(get_package_share_directory("swarm_rl"))
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGS}
    n = int(arg["robots"])
    if n < 1:
        raise ValueError(f"robots:={n}: must be >= 1")
    names = [f"cf{i + 1}" for i in range(n)]
    policy = arg["policy"] or str(share / "policies" / "formation_velocity_8.onnx")
    scenario = arg["scenario"] or str(share / "config" / "scenarios" / "circle_8.yaml")
    rate = int(arg["control_rate_hz"])
    if arg["mission"] not in ("goals", "tasks"):
        raise ValueError(f"mission:={arg['mission']}: expected goals or tasks")
    tasks = arg["mission"] == "tasks"
    preset = arg["task_preset"]
    task_policy = arg["task_policy"] or (str(share / "policies" / "mrta_room_8_l5.onnx")
                                         if preset == "mrta_room_8" else "greedy")
    if tasks and not preset.endswith((".yaml", ".yml")):
        preset = str(share / "config" / "mrta" / f"{preset}.yaml")
    priority = int(arg["realtime_priority"])
    if not 0 <= priority <= 99:
        raise ValueError(f"realtime_priority:={priority}: expected 0 (off) or 1-99")
    fifo = {"prefix": f"chrt -f {priority}"} if priority else {}
    nodes = [Node(package="swarm_rl", executable="sim_bridge", name="sim_bridge",
                  output="screen", **fifo,
                  parameters=[{"drones": n, "scenario": scenario, "control_rate_hz": rate,
                               "duration_s": float(arg["duration_s"]),
                               "hold_at_start": True, "publish_goals": not tasks}])]
    if tasks:
        nodes.append(Node(package="swarm_rl", executable="task_server", name="task_server",
                          output="screen", parameters=[{"robots": names, "preset": preset}]))
    mission = ({"mission": "tasks", "task_preset": preset, "task_policy": task_policy}
               if tasks else {})
    for node, hosted in host_groups(names, int(arg["robots_per_process"])):
        nodes.append(Node(
            package="swarm_rl", executable="robot_node",
            name=node,
            output="screen", **fifo,
            parameters=[{"robots": hosted, "swarm": names, "neighbour_source": "swarm_state",
                         "policy": policy,
                         "shield": launch_bool(arg["shield"], "shield"),
                         "control_rate_hz": float(rate), **mission}]))
    if launch_bool(arg["rviz"], "rviz"):
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                          arguments=["-d", str(share / "config" / "swarm.rviz")]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGS.items()] + [OpaqueFunction(function=_nodes)])
