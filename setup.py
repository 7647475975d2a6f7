from glob import glob

from setuptools import find_packages, setup

package_name = "swarm_rl"

setup(
    name=package_name,
    version="0.1.0",
    description=(
        "Multi-agent RL control stack for Crazyflie quadrotor swarms "
        "(simulation, training, ONNX export, ROS 2 nodes, firmware export)"
    ),
    maintainer="swarm_rl developers",
    maintainer_email="swarm-rl@users.noreply.github.com",
    license="Apache-2.0",
    packages=find_packages(
        include=[
            "swarm_rl",
            "swarm_rl.*",
            "sim",
            "sim.*",
            "ros_nodes",
            "ros_nodes.*",
            "firmware_export",
            "firmware_export.*",
        ]
    ),
    package_data={"sim": ["models/*.yaml"],
                  "firmware_export": ["c/*.c", "c/*.h", "c/*.ld"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", sorted(glob("launch/*.launch.py"))),
        ("share/" + package_name + "/config",
         sorted(glob("config/*.yaml") + glob("config/*.rviz"))),
        ("share/" + package_name + "/config/scenarios", sorted(glob("config/scenarios/*.yaml"))),
        ("share/" + package_name + "/config/train", sorted(glob("config/train/*.yaml"))),
        ("share/" + package_name + "/config/mrta", sorted(glob("config/mrta/*.yaml"))),
        (
            "share/" + package_name + "/policies",
            sorted(glob("policies/*.onnx") + glob("policies/*.md")),
        ),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "pyyaml>=6",
        "pybullet>=3.2.6",
        "matplotlib>=3.7",
        "tqdm>=4.66",
        "pettingzoo>=1.24",
        "gymnasium>=0.29",
        "typer>=0.12",
        "cyclonedds>=0.10.5",
        "cflib>=0.1.34",
    ],
    extras_require={
        "train": ["torch==2.13.0", "tensorboard>=2.14", "onnx>=1.16"],
        "runtime": ["onnxruntime>=1.17", "onnx>=1.16", "daqp>=0.11"],
        "dev": ["pytest>=8", "hypothesis>=6", "pytest-timeout>=2", "ruff>=0.5"],
    },
    entry_points={
        "console_scripts": [
            "swarm-rl = swarm_rl.cli:main",
            "robot_node = ros_nodes.robot_node:main",
            "sim_bridge = ros_nodes.sim_bridge:main",
            "task_server = ros_nodes.task_server:main",
            "crazyflie_bridge = ros_nodes.crazyflie_bridge:main",
        ],
    },
    zip_safe=True,
)
