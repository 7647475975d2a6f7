"""The ros2 launch files, run against a stand-in for ROS 2's launch API.

ROS 2 cannot be installed here, so ``launch``, ``launch_ros`` and ``ament_index_python`` are
replaced by minimal stand-ins that record what the launch file asks for (a fake, for ROS 2
only). What is checked is real: every node the file starts gets parameters its own parameter
declaration accepts (the same validation the nodes run at start-up), for the default arguments
and for one process per robot."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from ros_nodes.crazyflie_bridge import CrazyflieBridgeParams
from ros_nodes.params import build_params
from ros_nodes.robot_node import RobotParams
from ros_nodes.sim_bridge import SimBridgeParams
from ros_nodes.task_server import TaskServerParams

REPO = Path(__file__).resolve().parents[1]
PARAMS = {"robot_node": RobotParams, "sim_bridge": SimBridgeParams,
          "task_server": TaskServerParams, "crazyflie_bridge": CrazyflieBridgeParams}


class Node:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class LaunchConfiguration:
    values: dict[str, str] = {}

    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


def fake_ros(monkeypatch, share: Path) -> None:
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda entities: entities
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = lambda name, default_value, description: (name,
                                                                               default_value)
    actions.OpaqueFunction = lambda function: function
    subst = types.ModuleType("launch.substitutions")
    subst.LaunchConfiguration = LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = Node
    ament = types.ModuleType("ament_index_python")
    packages = types.ModuleType("ament_index_python.packages")
    packages.get_package_share_directory = lambda name: str(share)
    for name, mod in {"launch": launch, "launch.actions": actions,
                      "launch.substitutions": subst, "launch_ros": launch_ros,
                      "launch_ros.actions": ros_actions, "ament_index_python": ament,
                      "ament_index_python.packages": packages}.items():
        monkeypatch.setitem(sys.modules, name, mod)


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("overrides, processes", [({}, 1), ({"robots_per_process": "1"}, 8),
                                                  ({"robots": "5", "robots_per_process": "2"},
                                                   3), ({"mission": "tasks"}, 1)])
def test_sim_swarm_launch_starts_nodes_with_valid_parameters(monkeypatch, overrides,
                                                             processes):
    fake_ros(monkeypatch, REPO)
    module = load(REPO / "launch" / "sim_swarm.launch.py")
    entities = module.generate_launch_description()
    declared = dict(e for e in entities if isinstance(e, tuple))
    assert {"robots", "policy", "scenario", "shield", "rviz"} <= set(declared)
    context = {**declared, **overrides}
    nodes = entities[-1](context)
    robots = [n for n in nodes if n.kwargs["executable"] == "robot_node"]
    assert len(robots) == processes
    hosted = [r for n in robots for r in n.kwargs["parameters"][0]["robots"]]
    assert hosted == [f"cf{i + 1}" for i in range(int(context["robots"]))]
    servers = [n for n in nodes if n.kwargs["executable"] == "task_server"]
    assert len(servers) == (context.get("mission") == "tasks")
    for n in nodes:
        (params,) = n.kwargs["parameters"]
        build_params(PARAMS[n.kwargs["executable"]], params, n.kwargs["name"])
        for value in params.values():
            if isinstance(value, str) and value.endswith((".onnx", ".yaml")):
                assert Path(value).is_file(), value


def test_rviz_is_started_only_on_request(monkeypatch):
    fake_ros(monkeypatch, REPO)
    module = load(REPO / "launch" / "sim_swarm.launch.py")
    entities = module.generate_launch_description()
    declared = dict(e for e in entities if isinstance(e, tuple))
    assert not [n for n in entities[-1](declared) if n.kwargs["executable"] == "rviz2"]
    rviz = [n for n in entities[-1]({**declared, "rviz": "true"})
            if n.kwargs["executable"] == "rviz2"]
    assert Path(rviz[0].kwargs["arguments"][1]).is_file()
    with pytest.raises(ValueError, match="shield:=yes: expected true or false"):
        entities[-1]({**declared, "shield": "yes"})


def test_realtime_priority_prefixes_the_control_nodes_with_chrt(monkeypatch):
    fake_ros(monkeypatch, REPO)
    module = load(REPO / "launch" / "sim_swarm.launch.py")
    entities = module.generate_launch_description()
    declared = dict(e for e in entities if isinstance(e, tuple))
    assert all("prefix" not in n.kwargs for n in entities[-1](declared))
    nodes = entities[-1]({**declared, "realtime_priority": "40", "mission": "tasks"})
    prefixes = {n.kwargs["executable"]: n.kwargs.get("prefix") for n in nodes}
    assert prefixes == {"sim_bridge": "chrt -f 40", "robot_node": "chrt -f 40",
                        "task_server": None}
    with pytest.raises(ValueError, match="realtime_priority:=120"):
        entities[-1]({**declared, "realtime_priority": "120"})


@pytest.mark.parametrize("groups, bridges", [("", 1), ("cf1,cf2;cf3", 2)])
def test_crazyflie_swarm_launch_starts_bridges_and_robots(monkeypatch, groups, bridges):
    fake_ros(monkeypatch, REPO)
    module = load(REPO / "launch" / "crazyflie_swarm.launch.py")
    entities = module.generate_launch_description()
    declared = dict(e for e in entities if isinstance(e, tuple))
    nodes = entities[-1]({**declared, "bridge_groups": groups})
    found = [n for n in nodes if n.kwargs["executable"] == "crazyflie_bridge"]
    assert len(found) == bridges
    robots = [n for n in nodes if n.kwargs["executable"] == "robot_node"]
    assert robots[0].kwargs["parameters"][0]["robots"] == ["cf1", "cf2", "cf3"]  # cf4 disabled
    for n in nodes:
        (params,) = n.kwargs["parameters"]
        build_params(PARAMS[n.kwargs["executable"]], params, n.kwargs["name"])
    with pytest.raises(ValueError, match="bridge_groups: not enabled"):
        entities[-1]({**declared, "bridge_groups": "cf4"})
