"""Swarm state and per-drone parameters shared by both physics engines.

Arrays have a leading batch shape ``(E, N)``: E independent environments of N drones.
Positions in metres, world frame ENU; ``rot`` maps body (FLU) vectors to world vectors;
``omega`` is the body-frame angular velocity in rad/s; ``thrust`` the motors' actual thrusts (N).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.crazyflie import QuadParams


@dataclass
class SwarmState:
    pos: np.ndarray
    vel: np.ndarray
    rot: np.ndarray
    omega: np.ndarray
    thrust: np.ndarray

    @classmethod
    def hovering(cls, pos: np.ndarray, params: "DroneParams") -> "SwarmState":
        """Level, at rest, motors spinning at hover thrust, at positions ``pos`` (E, N, 3)."""
        shape = pos.shape[:-1]
        rot = np.broadcast_to(np.eye(3), shape + (3, 3)).copy()
        thrust = np.repeat((params.mass_kg * 9.81 / 4.0)[..., None], 4, axis=-1)
        return cls(pos.astype(float).copy(), np.zeros(shape + (3,)), rot,
                   np.zeros(shape + (3,)), thrust)

    def copy(self) -> "SwarmState":
        return SwarmState(self.pos.copy(), self.vel.copy(), self.rot.copy(), self.omega.copy(),
                          self.thrust.copy())


@dataclass
class DroneParams:
    """Per-drone values that domain randomisation varies, each (E, N)."""

    model: QuadParams
    mass_kg: np.ndarray
    max_thrust_n: np.ndarray
    """Per-motor maximum thrust."""
    motor_tau_s: np.ndarray
    kf_n_per_rpm2: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.kf_n_per_rpm2 is None:
            scale = self.max_thrust_n / self.model.max_thrust_per_motor_n
            self.kf_n_per_rpm2 = self.model.kf_n_per_rpm2 * scale

    @classmethod
    def nominal(cls, model: QuadParams, shape: tuple[int, ...]) -> "DroneParams":
        return cls(model, np.full(shape, model.mass_kg),
                   np.full(shape, model.max_thrust_per_motor_n), np.full(shape, model.motor_tau_s))

    @classmethod
    def randomised(cls, model: QuadParams, shape: tuple[int, ...], rng: np.random.Generator,
                   mass_frac: float, thrust_frac: float, motor_tau_frac: float) -> "DroneParams":
        """Nominal values each scaled by an independent uniform factor in [1 - f, 1 + f]."""
        def scale(frac: float) -> np.ndarray:
            return rng.uniform(1.0 - frac, 1.0 + frac, size=shape)
        return cls(model, model.mass_kg * scale(mass_frac),
                   model.max_thrust_per_motor_n * scale(thrust_frac),
                   model.motor_tau_s * scale(motor_tau_frac))
