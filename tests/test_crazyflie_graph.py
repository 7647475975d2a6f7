"""The hardware graph end to end without a radio: robot nodes (policy + CBF shield) and the
crazyflie_bridge on the real cflib library, talking CRTP over udp://127.0.0.1 to four virtual
Crazyflies (``swarm-rl virtual-crazyflie``, a separate process) and to each other over DDS
(loopback only)."""
import os
from pathlib import Path

import pytest
import yaml

from ros_nodes.launcher import load_launch_config, run_launch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_four_virtual_crazyflies_take_off_swap_corners_and_land(tmp_path):
    base_port = 21000 + (os.getpid() % 500) * 8
    crazyflies = yaml.safe_load((REPO / "config" / "crazyflies_virtual.yaml").read_text())
    for i, entry in enumerate(crazyflies["robots"].values()):
        entry["uri"] = f"udp://127.0.0.1:{base_port + i}"
    (tmp_path / "crazyflies.yaml").write_text(yaml.safe_dump(crazyflies))
    launch = yaml.safe_load((REPO / "config" / "virtual_crazyflies.yaml").read_text())
    launch["crazyflies"].update(config=str(tmp_path / "crazyflies.yaml"), base_port=base_port)
    launch["robots"]["policy"] = str(REPO / "policies" / "formation_velocity_8.onnx")
    launch["dds"]["domain_id"] = 100 + (os.getpid() * 7 + 19) % 120
    launch["out"] = str(tmp_path / "run")
    (tmp_path / "launch.yaml").write_text(yaml.safe_dump(launch))
    s = run_launch(load_launch_config(tmp_path / "launch.yaml"), progress=False)
    assert all(code == 0 for code in s["exit_codes"].values()), s["exit_codes"]
    assert s["success_rate"] == 1.0, "every drone reached the opposite corner"
    assert s["final_distance_m"] < 0.4
    assert s["collision_events"] == 0
    assert s["min_separation_m"] >= 0.3, "crossing paths kept apart (emulator ground truth)"
    assert set(s["landed"].values()) == {"idle"}, s["landed"]
    assert sum(s["link_losses"].values()) == 0 and sum(s["reconnects"].values()) == 0
    assert s["ticks"] > 4 * 50 * 10, "robots ran on the 100 Hz log stream"
    assert (Path(s["out"]) / "trajectories.png").exists()
