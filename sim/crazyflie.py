"""Quadrotor physical parameters.

The Crazyflie 2.x is the default model; every number carries its source. Other airframes (a
heavier Crazyflie with mocap markers, a custom quad) are data: YAML files in ``sim/models/``
or any path, loaded with :func:`load_model`.

Frames: body FLU (x forward, y left, z up). Motors are in the Crazyflie's X layout, numbered as
in the firmware: M1 front-right, M2 back-right, M3 back-left, M4 front-left. M1 and M3 spin
clockwise seen from above, so their drag torque on the body is +z (counter-clockwise).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from sim.errors import ConfigError

GRAVITY_MPS2 = 9.81
MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class QuadParams:
    """Rigid body, rotor and aerodynamic parameters of one quadrotor (SI units)."""

    name: str = "cf2x"
    mass_kg: float = 0.027
    """gym-pybullet-drones ``assets/cf2x.urdf``; quad-swarm-rl ``quad_models.py``."""
    arm_m: float = 0.0397
    """Motor to centre of mass, cf2x URDF."""
    inertia_kgm2: tuple[float, float, float] = (1.4e-5, 1.4e-5, 2.17e-5)
    """Principal moments (ixx, iyy, izz), cf2x URDF."""
    thrust_to_weight: float = 2.25
    """Max total thrust / weight, cf2x URDF (kf * max_rpm^2 * 4 / (m g))."""
    kf_n_per_rpm2: float = 3.16e-10
    """Thrust coefficient, cf2x URDF; used to convert thrust to rotor speed for drag."""
    km_nm_per_rpm2: float = 7.94e-12
    """Torque coefficient, cf2x URDF; yaw torque / thrust = km / kf (about 0.025 m)."""
    motor_tau_s: float = 0.04
    """First-order motor lag; quad-swarm-rl's filter gives about 0.04 s effective."""
    prop_radius_m: float = 0.0231
    """Propeller radius, cf2x URDF; ground effect and downwash scale with it."""
    collision_radius_m: float = 0.06
    """Collision cylinder radius, cf2x URDF."""
    collision_height_m: float = 0.025
    """Collision cylinder height, cf2x URDF."""
    drag_coeff: tuple[float, float, float] = (9.1785e-7, 9.1785e-7, 10.311e-7)
    """Rotor drag, N per (m/s) per (rad/s summed over rotors), body axes (Forster 2015)."""
    ground_effect_coeff: float = 11.36859
    """Ground effect gain (Shi et al. 2019, as in gym-pybullet-drones)."""
    ground_effect_min_height_m: float = 0.0378
    """Heights below this are clipped in the ground-effect formula."""
    downwash_coeffs: tuple[float, float, float] = (2267.18, 0.16, -0.11)
    """Downwash a-, b-slope and b-offset (gym-pybullet-drones, fitted on Crazyflies)."""

    @property
    def weight_n(self) -> float:
        return self.mass_kg * GRAVITY_MPS2

    @property
    def max_thrust_per_motor_n(self) -> float:
        return self.thrust_to_weight * self.weight_n / 4.0

    @property
    def hover_thrust_per_motor_n(self) -> float:
        return self.weight_n / 4.0

    @property
    def yaw_torque_per_thrust_m(self) -> float:
        """Yaw drag torque (N m) per newton of rotor thrust."""
        return self.km_nm_per_rpm2 / self.kf_n_per_rpm2

    def motor_positions_body(self) -> np.ndarray:
        """(4, 3) motor positions in the body frame (m), M1..M4."""
        a = self.arm_m / np.sqrt(2.0)
        return np.array([[a, -a, 0.0], [-a, -a, 0.0], [-a, a, 0.0], [a, a, 0.0]])

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first impossible parameter."""
        positive = ["mass_kg", "arm_m", "thrust_to_weight", "kf_n_per_rpm2", "km_nm_per_rpm2",
                    "motor_tau_s", "prop_radius_m", "collision_radius_m", "collision_height_m"]
        for name in positive:
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"model '{self.name}': {name} must be > 0, got {value}")
        if any(not np.isfinite(v) or v <= 0 for v in self.inertia_kgm2):
            raise ConfigError(f"model '{self.name}': inertia_kgm2 must be 3 values > 0, "
                              f"got {self.inertia_kgm2}")
        if self.thrust_to_weight <= 1.0:
            raise ConfigError(f"model '{self.name}': thrust_to_weight must be > 1 to fly, "
                              f"got {self.thrust_to_weight}")


CF2X = QuadParams()


def available_models() -> list[str]:
    """Names of the built-in models: ``cf2x`` plus every YAML file in ``sim/models``."""
    return ["cf2x"] + sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))


def load_model(name_or_path: str) -> QuadParams:
    """Return a built-in model by name, or load one from a YAML file.

    A YAML model lists any :class:`QuadParams` fields; the rest default to the Crazyflie 2.x.
    """
    if name_or_path == "cf2x":
        return CF2X
    path = Path(name_or_path)
    if not path.suffix:
        path = MODELS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown model '{name_or_path}'; built-in models: "
                          f"{', '.join(available_models())}, or a path to a YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of model fields, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(QuadParams)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{path}: unknown model field(s) {unknown}; allowed: {sorted(fields)}")
    for key in ("inertia_kgm2", "drag_coeff", "downwash_coeffs"):
        if key in data:
            data[key] = tuple(float(v) for v in data[key])
    data.setdefault("name", path.stem)
    params = dataclasses.replace(CF2X, **data)
    params.validate()
    return params
