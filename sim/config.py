"""Environment configuration: one dataclass tree, loaded from YAML, validated with errors that
name the field and the allowed values."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.crazyflie import available_models, load_model
from sim.errors import ConfigError

SCENARIOS = ("hover", "static_formation", "swap_goals", "dynamic_goals", "obstacles")
ACTION_MODES = ("motors", "velocity")
FORMATIONS = ("circle", "grid", "line", "sphere", "pyramid", "random")


@dataclass
class EffectsConfig:
    drag: bool = True
    ground_effect: bool = True
    downwash: bool = False


@dataclass
class NoiseConfig:
    """Gaussian sensor noise on what a drone observes (quad-swarm-rl ``sensor_noise.py``)."""

    enabled: bool = True
    pos_sigma_m: float = 0.005
    vel_sigma_mps: float = 0.01
    gyro_sigma_rad_s: float = 0.00175
    """Gyro noise density 1.75e-4 rad/s/sqrt(Hz) at a 100 Hz control rate."""


@dataclass
class RandomisationConfig:
    """Per-drone, per-episode uniform scaling of the nominal model by 1 +- fraction."""

    mass_frac: float = 0.0
    thrust_frac: float = 0.0
    motor_tau_frac: float = 0.0


@dataclass
class RewardConfig:
    """Per-agent reward weights; each term is integrated over time (multiplied by dt)."""

    distance: float = 1.0
    """Per metre of distance to the goal."""
    precision: float = 0.0
    """Bonus per second at the goal, ``precision * exp(-d / precision_scale_m)`` at distance d:
    bounded, and steep near the goal where the linear distance term gives the same small
    gradient at 1 cm as at 1 m (0: off, as in quad-swarm-rl)."""
    precision_scale_m: float = 0.1
    """Length scale (m) of the precision bonus."""
    effort: float = 0.05
    """Per unit of squared normalised action."""
    orientation: float = 0.2
    """Per unit of (1 - cos tilt)."""
    spin: float = 0.05
    """Per rad/s of body rate."""
    crash: float = 5.0
    """Per second touching the floor, a wall or the ceiling."""
    collision: float = 5.0
    """Per second in contact with another drone or a column (the curriculum anneals it)."""
    proximity: float = 1.0
    """Per second, scaled linearly from 0 at ``proximity_radius_m`` to 1 at contact."""
    proximity_radius_m: float = 0.4


@dataclass
class EnvConfig:
    """Everything that defines a swarm environment. SI units."""

    scenario: str = "static_formation"
    num_drones: int = 8
    episode_s: float = 15.0
    room_size_m: tuple[float, float, float] = (10.0, 10.0, 4.0)
    physics_hz: int = 200
    control_hz: int = 100
    action_mode: str = "motors"
    model: str = "cf2x"
    effects: EffectsConfig = field(default_factory=EffectsConfig)
    neighbours_k: int = 6
    """Neighbours in the observation (nearest first, masked when fewer are in range)."""
    neighbour_range_m: float = 4.0
    """Communication / sensing range for neighbours."""
    obstacle_density: float = 0.0
    """Fraction of the obstacle grid's cells holding a column, in [0, 1]."""
    obstacle_spacing_m: float = 1.0
    obstacle_radius_m: float = 0.15
    obstacle_area_m: tuple[float, float] = (6.0, 4.0)
    """Size of the obstacle field (x, y), centred in the room."""
    obstacle_mix: float = 0.0
    """``obstacles`` only: share of environments, in [0, 1], whose spawns and goals are both
    scattered in and around the column field (the rest cross it); see :mod:`sim.scenarios`."""
    formation: str = "random"
    formation_spacing_m: float = 0.6
    goal_height_m: float = 1.5
    goal_speed_mps: float = 0.5
    """Peak speed of moving goals in ``dynamic_goals``."""
    spawn_height_m: tuple[float, float] = (0.5, 1.5)
    spawn_min_separation_m: float = 0.5
    spawn_area_m: float = 3.0
    """Half-width of the square where drones spawn in goal-reaching scenarios."""
    success_radius_m: float = 0.5
    grace_s: float = 1.5
    """Collisions in the first ``grace_s`` seconds do not fail an episode."""
    max_speed_mps: float = 1.5
    """Velocity mode: speed at a normalised action of 1."""
    max_yaw_rate_rad_s: float = 1.0
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    randomisation: RandomisationConfig = field(default_factory=RandomisationConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)

    @property
    def substeps(self) -> int:
        return self.physics_hz // self.control_hz

    @property
    def episode_steps(self) -> int:
        return int(round(self.episode_s * self.control_hz))

    def validate(self) -> "EnvConfig":
        """Raise :class:`ConfigError` naming the first bad field; return self when all is well."""
        def need(ok: bool, name: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{name}: {message}")

        need(self.scenario in SCENARIOS, "scenario",
             f"unknown scenario '{self.scenario}'; allowed: {', '.join(SCENARIOS)}")
        need(self.action_mode in ACTION_MODES, "action_mode",
             f"unknown action mode '{self.action_mode}'; allowed: {', '.join(ACTION_MODES)}")
        need(self.formation in FORMATIONS, "formation",
             f"unknown formation '{self.formation}'; allowed: {', '.join(FORMATIONS)}")
        need(self.model in available_models() or Path(self.model).suffix in (".yaml", ".yml"),
             "model", f"unknown model '{self.model}'; allowed: {', '.join(available_models())} "
             "or a path to a YAML model file")
        load_model(self.model)
        need(self.num_drones >= 1, "num_drones", f"must be >= 1, got {self.num_drones}")
        need(self.episode_s > 0, "episode_s", f"must be > 0, got {self.episode_s}")
        need(len(self.room_size_m) == 3 and all(v > 0 for v in self.room_size_m), "room_size_m",
             f"must be three lengths > 0 (x, y, z), got {self.room_size_m}")
        need(self.physics_hz > 0 and self.control_hz > 0, "control_hz",
             f"rates must be > 0, got physics {self.physics_hz} Hz, control {self.control_hz} Hz")
        need(self.physics_hz % self.control_hz == 0, "control_hz",
             f"must divide physics_hz ({self.physics_hz}), got {self.control_hz}")
        need(self.neighbours_k >= 0, "neighbours_k", f"must be >= 0, got {self.neighbours_k}")
        need(self.neighbour_range_m > 0, "neighbour_range_m",
             f"must be > 0, got {self.neighbour_range_m}")
        need(0.0 <= self.obstacle_density <= 1.0, "obstacle_density",
             f"must be in [0, 1], got {self.obstacle_density}")
        need(self.obstacle_radius_m > 0 and self.obstacle_spacing_m > 2 * self.obstacle_radius_m,
             "obstacle_spacing_m", "columns must be > 0 wide and spaced wider than their diameter")
        need(self.formation_spacing_m > 0, "formation_spacing_m",
             f"must be > 0, got {self.formation_spacing_m}")
        need(0 < self.goal_height_m < self.room_size_m[2], "goal_height_m",
             f"must be inside the room (0, {self.room_size_m[2]}), got {self.goal_height_m}")
        lo, hi = self.spawn_height_m
        need(0 < lo <= hi < self.room_size_m[2], "spawn_height_m",
             f"must be (low, high) with 0 < low <= high < room height, got {self.spawn_height_m}")
        need(self.spawn_min_separation_m > 0, "spawn_min_separation_m",
             f"must be > 0, got {self.spawn_min_separation_m}")
        need(self.max_speed_mps > 0 and self.max_yaw_rate_rad_s > 0, "max_speed_mps",
             "velocity-mode scales must be > 0")
        need(self.goal_speed_mps >= 0, "goal_speed_mps",
             f"must be >= 0, got {self.goal_speed_mps}")
        need(self.spawn_area_m > 0, "spawn_area_m", f"must be > 0, got {self.spawn_area_m}")
        need(self.success_radius_m > 0, "success_radius_m",
             f"must be > 0, got {self.success_radius_m}")
        need(self.grace_s >= 0, "grace_s", f"must be >= 0, got {self.grace_s}")
        need(len(self.obstacle_area_m) == 2 and all(v > 0 for v in self.obstacle_area_m),
             "obstacle_area_m", f"must be two lengths > 0 (x, y), got {self.obstacle_area_m}")
        need(0.0 <= self.obstacle_mix <= 1.0, "obstacle_mix",
             f"must be in [0, 1], got {self.obstacle_mix}")
        need(self.obstacle_mix == 0.0 or self.scenario == "obstacles", "obstacle_mix",
             f"only the obstacles scenario mixes episodes, got scenario '{self.scenario}'")
        need(self.reward.precision_scale_m > 0, "reward.precision_scale_m",
             f"must be > 0, got {self.reward.precision_scale_m}")
        for name in ("pos_sigma_m", "vel_sigma_mps", "gyro_sigma_rad_s"):
            value = getattr(self.noise, name)
            need(value >= 0, f"noise.{name}", f"must be >= 0, got {value}")
        for name in ("mass_frac", "thrust_frac", "motor_tau_frac"):
            value = getattr(self.randomisation, name)
            need(0.0 <= value < 1.0, f"randomisation.{name}", f"must be in [0, 1), got {value}")
        return self


def build_dataclass(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, recursively, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where + '.' if where else ''}{unknown[0]}: unknown option; "
                          f"allowed: {', '.join(names)}")
    kwargs = {key: _coerce(hints[key], value, f"{where + '.' if where else ''}{key}")
              for key, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, name)
    origin = typing.get_origin(hint)
    try:
        if origin is list:
            (item,) = typing.get_args(hint)
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name}: expected a list, got {value!r}")
            return [_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
        if origin is tuple:
            items = typing.get_args(hint)
            if not isinstance(value, (list, tuple)) or len(value) != len(items):
                raise ConfigError(
                    f"{name}: expected a list of {len(items)} numbers, got {value!r}")
            return tuple(_coerce(t, v, name) for t, v in zip(items, value))
        if hint is bool:
            if isinstance(value, bool):
                return value
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        if hint is int:
            if isinstance(value, bool) or float(value) != int(value):
                raise ConfigError(f"{name}: expected an integer, got {value!r}")
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ConfigError(f"{name}: expected a number, got {value!r}")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ConfigError(f"{name}: expected a string, got {value!r}")
            return value
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{name}: cannot read {value!r} as {hint.__name__}") from exc
    return value


def config_from_dict(data: dict[str, Any]) -> EnvConfig:
    return build_dataclass(EnvConfig, data, "").validate()


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file: ``{}``); :class:`ConfigError` names
    the file when it is missing, malformed or not a mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    return data


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> EnvConfig:
    """Load an :class:`EnvConfig` from a YAML file; ``overrides`` replace top-level keys."""
    path = Path(path)
    data = read_yaml_mapping(path)
    data.update(overrides or {})
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


SCENARIO_DIR = Path(__file__).resolve().parents[1] / "config" / "scenarios"
"""Named scenario files (``config/scenarios/NAME.yaml``)."""


def scenario_file(scenario: str) -> Path | None:
    """The YAML file ``scenario`` names (a path, or a file in :data:`SCENARIO_DIR`), else
    None (a bare scenario name)."""
    path = Path(scenario)
    if path.suffix in (".yaml", ".yml"):
        return path
    named = SCENARIO_DIR / f"{scenario}.yaml"
    return named if named.exists() else None


def resolve_scenario(scenario: str, **overrides: Any) -> EnvConfig:
    """A scenario given as a file (:func:`scenario_file`) or a bare scenario name (the
    defaults); ``overrides`` replace top-level keys. ``ConfigError`` names the allowed values
    for an unknown one."""
    path = scenario_file(scenario)
    if path is not None:
        return load_config(path, overrides)
    if scenario not in SCENARIOS:
        names = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
        raise ConfigError(f"scenario: unknown scenario '{scenario}'; allowed: "
                          f"{', '.join(SCENARIOS + tuple(names))} or a YAML path")
    return make_config(scenario=scenario, **overrides)


def make_config(**overrides: Any) -> EnvConfig:
    """An :class:`EnvConfig` from keyword overrides of the defaults, validated."""
    return config_from_dict(overrides)
