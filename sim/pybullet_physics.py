"""PyBullet reference engine: the independent check on :mod:`sim.batched_physics`.

Each environment is its own PyBullet client (headless ``DIRECT`` by default, ``GUI`` on request)
holding a floor, four walls and a ceiling, obstacle columns and N drones with the Crazyflie's
collision cylinder, mass and inertia. Every step sums the four motors' thrusts (with ground
effect), drag and downwash into one force at the centre of mass and the motors' roll, pitch and
yaw torques into one torque (:func:`sim.forces.body_wrench`), applies both, then lets Bullet
integrate the motion and resolve contacts. (Applying each motor's force at its own position is
equivalent but costs four API calls per drone instead of one.)
"""
from __future__ import annotations

import numpy as np
import pybullet as pb

from sim.forces import (YAW_SIGNS, Effects, body_wrench, downwash_force_world,
                        drag_force_world, ground_effect_thrust, motor_lag)
from sim.state import DroneParams, SwarmState
from sim.world import Collisions, World

WALL_THICKNESS_M = 0.1


def quat_to_rot(q_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from unit quaternions in ROS/PyBullet order (x, y, z, w)."""
    x, y, z, w = np.moveaxis(np.asarray(q_xyzw, dtype=float), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rot_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of one rotation matrix (3, 3)."""
    m = rot
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = s / 4
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q)


class _Client:
    """One PyBullet world: body ids and what each contact means."""

    def __init__(self, gui: bool, dt_s: float) -> None:
        self.cid = pb.connect(pb.GUI if gui else pb.DIRECT)
        pb.setGravity(0, 0, -9.81, physicsClientId=self.cid)
        pb.setTimeStep(dt_s, physicsClientId=self.cid)
        self.drones: list[int] = []
        self.static: dict[int, str] = {}

    def static_body(self, shape: int, pos) -> int:
        """A fixed (massless) body with collision ``shape`` at ``pos``."""
        return pb.createMultiBody(0.0, shape, -1, basePosition=list(pos),
                                  physicsClientId=self.cid)

    def close(self) -> None:
        pb.disconnect(physicsClientId=self.cid)


class PyBulletPhysics:
    """Implements :class:`sim.physics.Physics` with one PyBullet client per environment."""

    def __init__(self, num_envs: int, num_drones: int, dt_s: float,
                 effects: Effects = Effects(), gui: bool = False) -> None:
        if gui and num_envs != 1:
            raise ValueError("the PyBullet GUI shows one environment; use num_envs=1")
        self.dt_s = dt_s
        self.effects = effects
        self.gui = gui
        self.shape = (num_envs, num_drones)
        self._clients: list[_Client] = []
        self._state: SwarmState | None = None
        self._params: DroneParams | None = None
        self._world: World | None = None

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients = []

    def __del__(self) -> None:
        if self._clients and pb is not None:
            self.close()

    def reset(self, state: SwarmState, params: DroneParams, world: World) -> None:
        self.close()
        self._state, self._params, self._world = state.copy(), params, world
        self._clients = [self._build(e) for e in range(self.shape[0])]

    def _build(self, e: int) -> _Client:
        """Create env ``e``'s world from the stored world, params and state."""
        model, world = self._params.model, self._world
        c = _Client(self.gui, self.dt_s)
        lo, hi = world.lower, world.upper
        size = hi - lo
        centre = (hi + lo) / 2
        t = WALL_THICKNESS_M
        slab_xy = [size[0] / 2 + t, size[1] / 2 + t, t / 2]
        wall_x = [t / 2, size[1] / 2 + t, size[2] / 2]
        wall_y = [size[0] / 2 + t, t / 2, size[2] / 2]
        cx, cy, cz = centre
        boxes = {
            "floor": (slab_xy, [cx, cy, -t / 2]),
            "ceiling": (slab_xy, [cx, cy, hi[2] + t / 2]),
            "wall-x-": (wall_x, [lo[0] - t / 2, cy, cz]),
            "wall-x+": (wall_x, [hi[0] + t / 2, cy, cz]),
            "wall-y-": (wall_y, [cx, lo[1] - t / 2, cz]),
            "wall-y+": (wall_y, [cx, hi[1] + t / 2, cz]),
        }
        for name, (half, pos) in boxes.items():
            shape = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c.cid)
            c.static[c.static_body(shape, pos)] = "floor" if name == "floor" else "wall"
        for xy in world.obstacle_xy[e][world.obstacle_mask[e]]:
            shape = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=world.obstacle_radius_m,
                                            height=hi[2], physicsClientId=c.cid)
            c.static[c.static_body(shape, [xy[0], xy[1], hi[2] / 2])] = "obstacle"
        drone_shape = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=model.collision_radius_m,
                                              height=model.collision_height_m,
                                              physicsClientId=c.cid)
        visual = -1
        if self.gui:
            visual = pb.createVisualShape(pb.GEOM_CYLINDER, radius=model.collision_radius_m,
                                          length=model.collision_height_m,
                                          rgbaColor=[0.1, 0.3, 0.9, 1.0], physicsClientId=c.cid)
        s = self._state
        for i in range(self.shape[1]):
            body = pb.createMultiBody(float(self._params.mass_kg[e, i]), drone_shape, visual,
                                      basePosition=s.pos[e, i].tolist(),
                                      baseOrientation=rot_to_quat(s.rot[e, i]).tolist(),
                                      physicsClientId=c.cid)
            pb.changeDynamics(body, -1, localInertiaDiagonal=list(model.inertia_kgm2),
                              linearDamping=0.0, angularDamping=0.0, physicsClientId=c.cid)
            pb.resetBaseVelocity(body, s.vel[e, i].tolist(),
                                 (s.rot[e, i] @ s.omega[e, i]).tolist(), physicsClientId=c.cid)
            c.drones.append(body)
        return c

    def state(self) -> SwarmState:
        return self._state

    def step(self, cmd_n: np.ndarray) -> None:
        s, p, dt = self._state, self._params, self.dt_s
        model = p.model
        cmd = np.clip(cmd_n, 0.0, p.max_thrust_n[..., None])
        s.thrust = motor_lag(s.thrust, cmd, p.motor_tau_s, dt)
        thrust = s.thrust
        if self.effects.ground_effect:
            motor_z = s.pos[..., None, 2] + np.einsum("...j,mj->...m", s.rot[..., 2, :],
                                                      model.motor_positions_body())
            thrust = thrust + ground_effect_thrust(thrust, motor_z, model)
        collective, torque_body = body_wrench(thrust, model)
        # Rotor drag torque follows the rotors' own thrust; ground effect adds lift only.
        torque_body[..., 2] = model.yaw_torque_per_thrust_m * (s.thrust @ YAW_SIGNS)
        force = s.rot[..., :, 2] * collective[..., None]
        if self.effects.drag:
            force += drag_force_world(s.rot, s.vel, s.thrust, p.kf_n_per_rpm2, model)
        if self.effects.downwash:
            force += downwash_force_world(s.pos, model)
        torque = np.einsum("...ij,...j->...i", s.rot, torque_body)
        force_l, pos_l, torque_l = force.tolist(), s.pos.tolist(), torque.tolist()
        for e, c in enumerate(self._clients):
            for i, body in enumerate(c.drones):
                pb.applyExternalForce(body, -1, force_l[e][i], pos_l[e][i], pb.WORLD_FRAME,
                                      physicsClientId=c.cid)
                pb.applyExternalTorque(body, -1, torque_l[e][i], pb.WORLD_FRAME,
                                       physicsClientId=c.cid)
            pb.stepSimulation(physicsClientId=c.cid)
        self._read_back()

    def _read_back(self) -> None:
        poses, vels = [], []
        for c in self._clients:
            for body in c.drones:
                poses.append(pb.getBasePositionAndOrientation(body, physicsClientId=c.cid))
                vels.append(pb.getBaseVelocity(body, physicsClientId=c.cid))
        s = self._state
        s.pos = np.array([p for p, _ in poses]).reshape(self.shape + (3,))
        s.rot = quat_to_rot(np.array([q for _, q in poses]).reshape(self.shape + (4,)))
        s.vel = np.array([v for v, _ in vels]).reshape(self.shape + (3,))
        omega_world = np.array([w for _, w in vels]).reshape(self.shape + (3,))
        s.omega = np.einsum("...ji,...j->...i", s.rot, omega_world)

    def collisions(self) -> Collisions:
        flags = {k: np.zeros(self.shape, bool) for k in ("drone", "obstacle", "floor", "wall")}
        for e, c in enumerate(self._clients):
            index = {body: i for i, body in enumerate(c.drones)}
            for contact in pb.getContactPoints(physicsClientId=c.cid):
                a, b, distance = contact[1], contact[2], contact[8]
                if distance > 0.0:
                    continue
                for me, other in ((a, b), (b, a)):
                    if me not in index:
                        continue
                    kind = "drone" if other in index else c.static.get(other, "wall")
                    flags[kind][e, index[me]] = True
        return Collisions(**flags)
