"""Config loading and validation: every bad input names its field (and the allowed values)."""
from __future__ import annotations

import pytest

from sim.config import (ACTION_MODES, FORMATIONS, SCENARIOS, EffectsConfig, EnvConfig,
                        load_config, make_config)
from sim.errors import ConfigError


def test_defaults_are_valid():
    cfg = make_config()
    assert cfg == EnvConfig()
    assert cfg.substeps == 2 and cfg.episode_steps == 1500


@pytest.mark.parametrize("overrides, field, allowed", [
    ({"scenario": "tag"}, "scenario", SCENARIOS),
    ({"action_mode": "attitude"}, "action_mode", ACTION_MODES),
    ({"formation": "star"}, "formation", FORMATIONS),
])
def test_unknown_choice_lists_allowed_values(overrides, field, allowed):
    with pytest.raises(ConfigError) as err:
        make_config(**overrides)
    message = str(err.value)
    assert message.startswith(field)
    assert all(value in message for value in allowed)


def test_unknown_options():
    with pytest.raises(ConfigError, match=r"^speed: unknown option; allowed: scenario, ") as err:
        make_config(speed=3)
    assert "num_drones" in str(err.value)
    with pytest.raises(ConfigError, match=r"^effects\.xyz: unknown option") as err:
        make_config(effects={"xyz": True})
    assert all(name in str(err.value) for name in ("drag", "ground_effect", "downwash"))


@pytest.mark.parametrize("overrides, field", [
    ({"num_drones": 0}, "num_drones"),
    ({"obstacle_density": -0.1}, "obstacle_density"),
    ({"obstacle_density": 1.5}, "obstacle_density"),
    ({"room_size_m": [10.0, 10.0]}, "room_size_m"),
    ({"control_hz": 150}, "control_hz"),
    ({"num_drones": "eight"}, "num_drones"),
    ({"num_drones": 2.5}, "num_drones"),
    ({"effects": {"drag": "yes"}}, "effects.drag"),
    ({"effects": "on"}, "effects"),
    ({"episode_s": True}, "episode_s"),
    ({"scenario": 3}, "scenario"),
    ({"randomisation": {"mass_frac": 1.0}}, "randomisation.mass_frac"),
    ({"num_drones": float("inf")}, "num_drones"),
    ({"goal_speed_mps": -0.5}, "goal_speed_mps"),
    ({"spawn_area_m": 0.0}, "spawn_area_m"),
    ({"success_radius_m": -1.0}, "success_radius_m"),
    ({"grace_s": -1.0}, "grace_s"),
    ({"obstacle_area_m": [6.0, 0.0]}, "obstacle_area_m"),
    ({"noise": {"pos_sigma_m": -0.01}}, "noise.pos_sigma_m"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        make_config(**overrides)
    assert str(err.value).startswith(field + ":"), str(err.value)


def test_room_size_with_two_values_in_the_dataclass():
    with pytest.raises(ConfigError, match="^room_size_m"):
        EnvConfig(room_size_m=(10.0, 10.0)).validate()  # type: ignore[arg-type]


def test_model_yaml_with_negative_mass(tmp_path):
    path = tmp_path / "heavy.yaml"
    path.write_text("mass_kg: -0.03\n")
    with pytest.raises(ConfigError, match="mass_kg must be > 0"):
        make_config(model=str(path))
    path.write_text("mass_kg: 0.034\n")
    assert make_config(model=str(path)).model == str(path)


def test_unknown_model_lists_built_in_models():
    with pytest.raises(ConfigError, match="^model: unknown model 'cf9'.*cf2x"):
        make_config(model="cf9")


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("scenario: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_yaml_list_instead_of_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- scenario\n- hover\n")
    with pytest.raises(ConfigError, match="expected a mapping.*got list"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_errors_carry_path_and_field(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("num_drones: eight\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "num_drones" in str(err.value)
    path.write_text("effects:\n  drag: yes please\n")
    with pytest.raises(ConfigError, match="effects.drag"):
        load_config(path)


def test_valid_yaml_round_trips(tmp_path):
    path = tmp_path / "swarm.yaml"
    path.write_text(
        "scenario: obstacles\n"
        "num_drones: 16\n"
        "episode_s: 10\n"
        "room_size_m: [12, 8, 3]\n"
        "action_mode: velocity\n"
        "obstacle_density: 0.4\n"
        "effects:\n"
        "  downwash: true\n"
        "noise:\n"
        "  enabled: false\n"
        "reward:\n"
        "  collision: 2.5\n"
    )
    cfg = load_config(path)
    expected = EnvConfig(scenario="obstacles", num_drones=16, episode_s=10.0,
                         room_size_m=(12.0, 8.0, 3.0), action_mode="velocity",
                         obstacle_density=0.4,
                         effects=EffectsConfig(drag=True, ground_effect=True, downwash=True))
    expected.noise.enabled = False
    expected.reward.collision = 2.5
    assert cfg == expected
    assert isinstance(cfg.episode_s, float) and isinstance(cfg.room_size_m[0], float)
    assert load_config(path, {"num_drones": 4}).num_drones == 4
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == EnvConfig()
