"""Batched rigid-body engine in numpy, vectorised over E environments x N drones.

Same force model as the PyBullet reference (:mod:`sim.forces`) and the same integrator that
Bullet uses for a free body: semi-implicit Euler (velocities first, then positions with the new
velocities) and an exponential-map rotation update. Drone-drone and drone-column contacts are
detected but not resolved (drones pass through each other); the floor, walls and ceiling stop
the drone. That is enough for training, where any contact is penalised.
"""
from __future__ import annotations

import numpy as np

from sim.crazyflie import GRAVITY_MPS2
from sim.forces import (Effects, body_wrench, downwash_force_world, drag_force_world,
                        ground_effect_thrust, motor_lag)
from sim.state import DroneParams, SwarmState
from sim.world import Collisions, World, detect_collisions


def rotation_exp(phi: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation matrices (..., 3, 3) of rotation vectors ``phi`` (..., 3) in rad."""
    theta2 = np.einsum("...i,...i->...", phi, phi)
    theta = np.sqrt(theta2)
    small = theta2 < 1e-12
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(safe)) / (safe * safe))
    x, y, z = phi[..., 0], phi[..., 1], phi[..., 2]
    out = np.empty(phi.shape + (3,))
    out[..., 0, 0] = 1.0 - b * (y * y + z * z)
    out[..., 1, 1] = 1.0 - b * (x * x + z * z)
    out[..., 2, 2] = 1.0 - b * (x * x + y * y)
    out[..., 0, 1] = b * x * y - a * z
    out[..., 1, 0] = b * x * y + a * z
    out[..., 0, 2] = b * x * z + a * y
    out[..., 2, 0] = b * x * z - a * y
    out[..., 1, 2] = b * y * z - a * x
    out[..., 2, 1] = b * y * z + a * x
    return out


class BatchedPhysics:
    """Implements :class:`sim.physics.Physics` for (E, N) drones with numpy."""

    def __init__(self, num_envs: int, num_drones: int, dt_s: float,
                 effects: Effects = Effects()) -> None:
        self.dt_s = dt_s
        self.effects = effects
        self.shape = (num_envs, num_drones)
        self._state: SwarmState | None = None
        self._params: DroneParams | None = None
        self._world: World | None = None

    def reset(self, state: SwarmState, params: DroneParams, world: World) -> None:
        self._state, self._params, self._world = state.copy(), params, world

    def state(self) -> SwarmState:
        return self._state

    def collisions(self) -> Collisions:
        return detect_collisions(self._state.pos, self._world, self._params.model)

    def step(self, cmd_n: np.ndarray) -> None:
        s, p, dt = self._state, self._params, self.dt_s
        model = p.model
        cmd = np.clip(cmd_n, 0.0, p.max_thrust_n[..., None])
        s.thrust = motor_lag(s.thrust, cmd, p.motor_tau_s, dt)
        thrust = s.thrust
        if self.effects.ground_effect:
            motor_z = s.pos[..., None, 2] + np.einsum(
                "...j,mj->...m", s.rot[..., 2, :], model.motor_positions_body())
            thrust = thrust + ground_effect_thrust(thrust, motor_z, model)
        collective, torque = body_wrench(thrust, model)
        torque[..., 2] = model.yaw_torque_per_thrust_m * (s.thrust @ np.array([1, -1, 1, -1.0]))
        force = s.rot[..., :, 2] * collective[..., None]
        if self.effects.drag:
            force += drag_force_world(s.rot, s.vel, s.thrust, p.kf_n_per_rpm2, model)
        if self.effects.downwash:
            force += downwash_force_world(s.pos, model)
        inertia = np.asarray(model.inertia_kgm2)
        acc = force / p.mass_kg[..., None]
        acc[..., 2] -= GRAVITY_MPS2
        gyro = np.cross(s.omega, s.omega * inertia)
        s.vel += acc * dt
        s.omega += (torque - gyro) / inertia * dt
        s.pos += s.vel * dt
        s.rot = s.rot @ rotation_exp(s.omega * dt)
        self._contact_floor_and_walls()

    def _contact_floor_and_walls(self) -> None:
        """Inelastic stop at the floor, walls and ceiling: clamp, cancel the inward velocity."""
        s, model, world = self._state, self._params.model, self._world
        margin = np.array([model.collision_radius_m, model.collision_radius_m,
                           model.collision_height_m / 2])
        lo, hi = world.lower + margin, world.upper - margin
        below, above = s.pos < lo, s.pos > hi
        if not (below.any() or above.any()):
            return
        s.pos = np.clip(s.pos, lo, hi)
        s.vel = np.where(below, np.maximum(s.vel, 0.0), np.where(above, np.minimum(s.vel, 0.0),
                                                                 s.vel))
        on_floor = below[..., 2]
        s.vel[on_floor, :2] *= 0.5
        s.omega[on_floor] *= 0.5
