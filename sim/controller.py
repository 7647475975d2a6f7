"""Simulated onboard velocity controller, a cascade like the Crazyflie's firmware PID.

World-frame velocity setpoint + yaw-rate setpoint -> (velocity PI) desired acceleration ->
collective thrust and desired attitude -> (attitude P) body-rate setpoint -> (rate P with
gyroscopic feed-forward) body torque -> motor mixer. It runs at the physics rate, knows only the
nominal model (not the randomised mass or thrust), and the velocity integrator absorbs the
difference, as on the real drone. Vectorised over any batch shape ``B``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from sim.crazyflie import GRAVITY_MPS2, QuadParams
from sim.forces import mix_one
from sim.jit import kernel


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


@kernel
def _control(vel, rot, omega, vel_sp, yaw_rate_sp, integral, yaw, gains, mass, inertia, arm,
             yaw_k, max_thrust, dt, out):
    """Motor thrusts (M, 4) for M drones; updates ``integral`` (M, 3) and ``yaw`` (M,)."""
    vel_p, vel_i, att_p, rate_p, max_tilt, max_acc, i_lim = gains
    tan_tilt = np.tan(max_tilt)
    for i in numba.prange(vel.shape[0]):
        acc = np.empty(3)
        for c in range(3):
            err = vel_sp[i, c] - vel[i, c]
            integral[i, c] = min(max(integral[i, c] + err * dt, -i_lim), i_lim)
            acc[c] = vel_p * err + vel_i * integral[i, c]
        norm = np.sqrt(acc[0] ** 2 + acc[1] ** 2 + acc[2] ** 2)
        scale = min(1.0, max_acc / max(norm, 1e-9))
        for c in range(3):
            acc[c] *= scale
        acc[2] = max(acc[2] + GRAVITY_MPS2, 0.3 * GRAVITY_MPS2)
        horiz = np.sqrt(acc[0] ** 2 + acc[1] ** 2)
        scale = min(1.0, acc[2] * tan_tilt / max(horiz, 1e-9))
        acc[0] *= scale
        acc[1] *= scale

        yaw[i] += yaw_rate_sp[i] * dt
        norm = np.sqrt(acc[0] ** 2 + acc[1] ** 2 + acc[2] ** 2)
        z0, z1, z2 = acc[0] / norm, acc[1] / norm, acc[2] / norm
        h0, h1 = np.cos(yaw[i]), np.sin(yaw[i])
        y0, y1, y2 = -z2 * h1, z2 * h0, z0 * h1 - z1 * h0  # z_des x heading
        norm = np.sqrt(y0 * y0 + y1 * y1 + y2 * y2)
        y0, y1, y2 = y0 / norm, y1 / norm, y2 / norm
        x0, x1, x2 = y1 * z2 - y2 * z1, y2 * z0 - y0 * z2, y0 * z1 - y1 * z0
        r = rot[i]
        collective = mass * (acc[0] * r[0, 2] + acc[1] * r[1, 2] + acc[2] * r[2, 2])
        # e_R = vee(0.5 (Rd^T R - R^T Rd)); m = Rd^T R, columns of Rd are x, y, z.
        m = np.empty((3, 3))
        for col in range(3):
            m[0, col] = x0 * r[0, col] + x1 * r[1, col] + x2 * r[2, col]
            m[1, col] = y0 * r[0, col] + y1 * r[1, col] + y2 * r[2, col]
            m[2, col] = z0 * r[0, col] + z1 * r[1, col] + z2 * r[2, col]
        e0 = 0.5 * (m[2, 1] - m[1, 2])
        e1 = 0.5 * (m[0, 2] - m[2, 0])
        e2 = 0.5 * (m[1, 0] - m[0, 1])
        w0, w1, w2 = omega[i, 0], omega[i, 1], omega[i, 2]
        sp0, sp1, sp2 = -att_p * e0, -att_p * e1, -att_p * e2 + yaw_rate_sp[i]
        t0 = inertia[0] * rate_p * (sp0 - w0) + (w1 * inertia[2] * w2 - w2 * inertia[1] * w1)
        t1 = inertia[1] * rate_p * (sp1 - w1) + (w2 * inertia[0] * w0 - w0 * inertia[2] * w2)
        t2 = inertia[2] * rate_p * (sp2 - w2) + (w0 * inertia[1] * w1 - w1 * inertia[0] * w0)
        cmd = mix_one(collective, t0, t1, t2, arm, yaw_k)
        for k in range(4):
            out[i, k] = min(max(cmd[k], 0.0), max_thrust)


class VelocityController:
    """Tracks world-frame velocity and yaw-rate setpoints with motor thrust commands."""

    def __init__(self, model: QuadParams, shape: tuple[int, ...], dt_s: float,
                 gains: VelocityGains = VelocityGains()) -> None:
        self.model, self.dt_s, self.gains = model, dt_s, gains
        self.shape = shape
        self.integral = np.zeros(shape + (3,))
        self.yaw_rad = np.zeros(shape)

    def reset(self, rot: np.ndarray) -> None:
        """Clear the integrator and hold the current heading."""
        self.integral[:] = 0.0
        self.yaw_rad[:] = np.arctan2(rot[..., 1, 0], rot[..., 0, 0])

    def __call__(self, vel: np.ndarray, rot: np.ndarray, omega: np.ndarray,
                 vel_sp: np.ndarray, yaw_rate_sp: np.ndarray) -> np.ndarray:
        """Motor thrust commands (..., 4) in newtons."""
        g, m = self.gains, self.model
        n = int(np.prod(self.shape))
        out = np.empty((n, 4))

        def flat(x: np.ndarray, *tail: int) -> np.ndarray:
            return np.ascontiguousarray(np.broadcast_to(x, self.shape + tail),
                                        dtype=np.float64).reshape((n,) + tail)

        gains = np.array([g.vel_p, g.vel_i, g.att_p, g.rate_p, g.max_tilt_rad, g.max_acc_mps2,
                          g.integral_limit_mps])
        _control(n, flat(vel, 3), flat(rot, 3, 3), flat(omega, 3), flat(vel_sp, 3),
                 flat(yaw_rate_sp), self.integral.reshape(n, 3), self.yaw_rad.reshape(n),
                 gains, m.mass_kg, np.asarray(m.inertia_kgm2), m.arm_m,
                 m.yaw_torque_per_thrust_m, m.max_thrust_per_motor_n, self.dt_s, out)
        return out.reshape(self.shape + (4,))
