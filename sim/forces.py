"""Force and torque model of a quadrotor, shared by both physics engines.

Everything here is vectorised over any leading batch shape ``B`` (``(E, N)`` in the batched
engine, ``(N,)`` in PyBullet). These functions say *which* forces act; each engine then
integrates the motion itself (PyBullet with its own solver), so the two stay independent.

Frames: positions and velocities in the world frame (ENU), body frame FLU, ``rot`` maps body
vectors to world vectors. Thrusts in newtons.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from sim.crazyflie import QuadParams

RPM_TO_RAD_S = 2.0 * np.pi / 60.0
YAW_SIGNS = np.array([1.0, -1.0, 1.0, -1.0])
"""Yaw drag torque sign per motor: M1 and M3 spin clockwise, pushing the body +z."""


@dataclass(frozen=True)
class Effects:
    """Switchable aerodynamic effects beyond rotor thrust and yaw torque."""

    drag: bool = True
    ground_effect: bool = True
    downwash: bool = False


def motor_lag(thrust_n: np.ndarray, cmd_n: np.ndarray, tau_s: np.ndarray | float,
              dt_s: float) -> np.ndarray:
    """Exact discretisation of the first-order lag ``dT/dt = (cmd - T) / tau`` over ``dt_s``.

    ``tau_s`` broadcasts against ``thrust_n[..., 0]`` (one time constant per drone).
    """
    alpha = 1.0 - np.exp(-dt_s / np.asarray(tau_s, dtype=float))
    return thrust_n + np.asarray(alpha)[..., None] * (cmd_n - thrust_n)


def rotor_speed_rad_s(thrust_n: np.ndarray, kf_n_per_rpm2: np.ndarray | float) -> np.ndarray:
    """Rotor angular speed (rad/s) that produces ``thrust_n`` (..., 4)."""
    kf = np.asarray(kf_n_per_rpm2, dtype=float)
    if kf.ndim:
        kf = kf[..., None]
    return np.sqrt(np.maximum(thrust_n, 0.0) / kf) * RPM_TO_RAD_S


def ground_effect_thrust(thrust_n: np.ndarray, motor_height_m: np.ndarray,
                         params: QuadParams) -> np.ndarray:
    """Extra thrust per motor (N) near the floor (Shi et al. 2019).

    ``motor_height_m`` (..., 4) is each rotor's height above the floor.
    """
    h = np.maximum(motor_height_m, params.ground_effect_min_height_m)
    return thrust_n * params.ground_effect_coeff * (params.prop_radius_m / (4.0 * h)) ** 2


def drag_force_world(rot: np.ndarray, vel_world: np.ndarray, thrust_n: np.ndarray,
                     kf_n_per_rpm2: np.ndarray | float, params: QuadParams) -> np.ndarray:
    """Rotor drag (N, world frame): ``-R diag(c) R^T v`` scaled by the summed rotor speed."""
    speed_sum = rotor_speed_rad_s(thrust_n, kf_n_per_rpm2).sum(axis=-1)
    vel_body = np.einsum("...ji,...j->...i", rot, vel_world)
    drag_body = -np.asarray(params.drag_coeff) * speed_sum[..., None] * vel_body
    return np.einsum("...ij,...j->...i", rot, drag_body)


def downwash_force_world(pos: np.ndarray, params: QuadParams) -> np.ndarray:
    """Downward force (N, world z) on each drone from the drones above it in the same swarm.

    ``pos`` is (..., N, 3). gym-pybullet-drones' fit: ``Fz = -a exp(-0.5 (dxy / b)^2)`` with
    ``a = c1 (r / (4 dz))^2`` and ``b = c2 dz + c3``. The fit is only meaningful for
    ``dz >= 0.1 m`` and ``|b| >= 0.05 m``; both are clipped there so the force stays finite.
    """
    c1, c2, c3 = params.downwash_coeffs
    delta = pos[..., None, :, :] - pos[..., :, None, :]  # [i, j] = p_j - p_i
    dz = delta[..., 2]
    dxy = np.linalg.norm(delta[..., :2], axis=-1)
    above = dz > 0.0
    dz_c = np.maximum(dz, 0.1)
    a = c1 * (params.prop_radius_m / (4.0 * dz_c)) ** 2
    b = np.maximum(np.abs(c2 * dz_c + c3), 0.05)
    fz = np.where(above, -a * np.exp(-0.5 * (dxy / b) ** 2), 0.0).sum(axis=-1)
    force = np.zeros_like(pos)
    force[..., 2] = fz
    return force


def body_wrench(thrust_n: np.ndarray, params: QuadParams) -> tuple[np.ndarray, np.ndarray]:
    """Total thrust (N, along body z) and body torque (N m, FLU) from motor thrusts (..., 4).

    Roll and pitch torques are ``r_i x (0, 0, T_i)`` summed over motors; yaw torque is the
    rotors' drag torque, ``k (T1 - T2 + T3 - T4)``.
    """
    r = params.motor_positions_body()
    torque = np.empty(thrust_n.shape[:-1] + (3,))
    torque[..., 0] = thrust_n @ r[:, 1]
    torque[..., 1] = -(thrust_n @ r[:, 0])
    torque[..., 2] = params.yaw_torque_per_thrust_m * (thrust_n @ YAW_SIGNS)
    return thrust_n.sum(axis=-1), torque


@numba.njit(cache=True)
def mix_one(collective_n: float, tx: float, ty: float, tz: float, arm_m: float,
            yaw_torque_per_thrust_m: float) -> tuple[float, float, float, float]:
    """Motor thrusts M1..M4 (N) giving one collective thrust and body torque (N m): the
    inverse of :func:`body_wrench` for the X layout. Compiled, so the simulated onboard
    controller's kernel calls this very function."""
    a = arm_m / np.sqrt(2.0)
    base = collective_n / 4.0
    rx, ry, rz = tx / (4.0 * a), ty / (4.0 * a), tz / (4.0 * yaw_torque_per_thrust_m)
    return (base - rx - ry + rz, base - rx + ry - rz, base + rx + ry + rz, base + rx - ry - rz)


def mixer(collective_n: np.ndarray, torque_nm: np.ndarray, params: QuadParams) -> np.ndarray:
    """Motor thrusts (..., 4) for collective thrusts (...) and body torques (..., 3):
    :func:`mix_one` over a batch."""
    collective_n = np.asarray(collective_n, dtype=float)
    torque_nm = np.asarray(torque_nm, dtype=float)
    shape = np.broadcast_shapes(collective_n.shape, torque_nm.shape[:-1])
    c = np.broadcast_to(collective_n, shape).reshape(-1)
    t = np.broadcast_to(torque_nm, shape + (3,)).reshape(-1, 3)
    out = np.array([mix_one(c[i], t[i, 0], t[i, 1], t[i, 2], params.arm_m,
                            params.yaw_torque_per_thrust_m) for i in range(len(c))])
    return out.reshape(shape + (4,))
