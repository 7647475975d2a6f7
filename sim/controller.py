"""Simulated onboard velocity controller, a cascade like the Crazyflie's firmware PID.

World-frame velocity setpoint + yaw-rate setpoint -> (velocity PI) desired acceleration ->
collective thrust and desired attitude -> (attitude P) body-rate setpoint -> (rate P with
gyroscopic feed-forward) body torque -> motor mixer. It runs at the physics rate, knows only the
nominal model (not the randomised mass or thrust), and the velocity integrator absorbs the
difference, as on the real drone. Vectorised over any batch shape ``B``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.crazyflie import GRAVITY_MPS2, QuadParams
from sim.forces import mixer


@dataclass(frozen=True)
class VelocityGains:
    vel_p: float = 4.0
    """Velocity error -> acceleration (1/s)."""
    vel_i: float = 4.0
    """Integrated velocity error -> acceleration (1/s^2)."""
    att_p: float = 12.0
    """Attitude error -> body rate (1/s)."""
    rate_p: float = 40.0
    """Body-rate error -> angular acceleration (1/s)."""
    max_tilt_rad: float = 0.6
    max_acc_mps2: float = 8.0
    integral_limit_mps: float = 1.0


def _vee_skew_part(m: np.ndarray) -> np.ndarray:
    """vee(0.5 (M - M^T)) for (..., 3, 3)."""
    return 0.5 * np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                           m[..., 1, 0] - m[..., 0, 1]], axis=-1)


class VelocityController:
    """Tracks world-frame velocity and yaw-rate setpoints with motor thrust commands."""

    def __init__(self, model: QuadParams, shape: tuple[int, ...], dt_s: float,
                 gains: VelocityGains = VelocityGains()) -> None:
        self.model, self.dt_s, self.gains = model, dt_s, gains
        self.integral = np.zeros(shape + (3,))
        self.yaw_rad = np.zeros(shape)

    def reset(self, rot: np.ndarray, env_index: np.ndarray | slice = slice(None)) -> None:
        """Clear the integrator and hold the current heading, for all or some envs."""
        self.integral[env_index] = 0.0
        self.yaw_rad[env_index] = np.arctan2(rot[..., 1, 0], rot[..., 0, 0])

    def __call__(self, vel: np.ndarray, rot: np.ndarray, omega: np.ndarray,
                 vel_sp: np.ndarray, yaw_rate_sp: np.ndarray) -> np.ndarray:
        """Motor thrust commands (..., 4) in newtons."""
        g, m, dt = self.gains, self.model, self.dt_s
        err = vel_sp - vel
        self.integral = np.clip(self.integral + err * dt, -g.integral_limit_mps,
                                g.integral_limit_mps)
        acc = g.vel_p * err + g.vel_i * self.integral
        acc_norm = np.linalg.norm(acc, axis=-1, keepdims=True)
        acc = acc * np.minimum(1.0, g.max_acc_mps2 / np.maximum(acc_norm, 1e-9))
        acc[..., 2] += GRAVITY_MPS2
        acc[..., 2] = np.maximum(acc[..., 2], 0.3 * GRAVITY_MPS2)
        horiz = np.linalg.norm(acc[..., :2], axis=-1, keepdims=True)
        max_horiz = acc[..., 2:3] * np.tan(g.max_tilt_rad)
        acc[..., :2] *= np.minimum(1.0, max_horiz / np.maximum(horiz, 1e-9))

        self.yaw_rad = self.yaw_rad + yaw_rate_sp * dt
        z_des = acc / np.linalg.norm(acc, axis=-1, keepdims=True)
        heading = np.stack([np.cos(self.yaw_rad), np.sin(self.yaw_rad),
                            np.zeros_like(self.yaw_rad)], axis=-1)
        y_des = np.cross(z_des, heading)
        y_des /= np.linalg.norm(y_des, axis=-1, keepdims=True)
        x_des = np.cross(y_des, z_des)
        rot_des = np.stack([x_des, y_des, z_des], axis=-1)

        collective = m.mass_kg * np.einsum("...i,...i->...", acc, rot[..., :, 2])
        e_rot = _vee_skew_part(np.einsum("...ji,...jk->...ik", rot_des, rot))
        rate_sp = -g.att_p * e_rot
        rate_sp[..., 2] += yaw_rate_sp
        inertia = np.asarray(m.inertia_kgm2)
        torque = inertia * g.rate_p * (rate_sp - omega) + np.cross(omega, inertia * omega)
        return np.clip(mixer(collective, torque, m), 0.0, m.max_thrust_per_motor_n)
