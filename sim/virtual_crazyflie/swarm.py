"""All virtual drones in one simulated room: physics, onboard control, battery, telemetry.

The batched engine (:mod:`sim.batched_physics`, one environment of N drones) integrates at
``physics_hz``; the simulated cascaded controller (:mod:`sim.controller`) runs at every physics
step; the onboard stack (:mod:`.onboard`) and the battery at ``control_hz``. Drone-drone contacts
are detected and counted, not resolved (the batched engine's known departure); the floor stops
the drones. One :meth:`VirtualSwarm.step` advances one control period.

Why the batched engine and not PyBullet: the emulator must keep real time on one core next to
its UDP loop; with the batched engine 8 drones in flight cost about 2.3 ms of each 10 ms control
period, 16 drones 3.4 ms (most of it the per-drone Python of the onboard stack).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.batched_physics import BatchedPhysics
from sim.controller import VelocityController, VelocityGains
from sim.crazyflie import GRAVITY_MPS2, load_model
from sim.forces import Effects
from sim.state import DroneParams, SwarmState
from sim.virtual_crazyflie.battery import Battery, BatteryParams
from sim.virtual_crazyflie.config import VirtualSwarmConfig
from sim.virtual_crazyflie.onboard import Estimate, Onboard
from sim.virtual_crazyflie.param_service import ParamStore
from sim.virtual_crazyflie.variables import Telemetry, param_variables
from sim.world import World

AIRBORNE_Z_M = 0.05
VELOCITY_GAINS = VelocityGains(vel_i=1.0)
"""The simulated controller's gains with a slower velocity integrator: under the onboard
position loop the default (4 /s^2) leaves a slow tail (6 cm below a 1 m takeoff target after
0.5 s), where 1 /s^2 settles within 2 cm, as a well-tuned Crazyflie does."""
"""Above this height a drone counts as airborne for separation statistics."""


def rot_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a rotation matrix (body -> world)."""
    m = rot
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s,
                      (m[1, 0] - m[0, 1]) / s, s / 4])
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = np.zeros(4)
        q[i], q[j], q[k] = s / 4, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
        q[3] = (m[k, j] - m[j, k]) / s
    return q / np.linalg.norm(q)


@dataclass
class SwarmStats:
    sim_time_s: float = 0.0
    min_separation_m: float = math.inf
    """Smallest centre distance between two airborne drones."""
    collision_events: int = 0
    """Drone-drone contacts that started (a pair touching over several ticks counts once)."""
    max_altitude_m: float = 0.0


class VirtualSwarm:
    def __init__(self, cfg: VirtualSwarmConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        n = cfg.drones
        self.model = load_model("cf2x")
        self.dt_s = 1.0 / cfg.physics_hz
        self.control_dt_s = 1.0 / cfg.control_hz
        self.substeps = cfg.physics_hz // cfg.control_hz
        self.gains = VELOCITY_GAINS
        self.physics = BatchedPhysics(1, n, self.dt_s, Effects(True, True, cfg.downwash))
        self.drone_params = DroneParams.nominal(self.model, (1, n))
        z0 = self.model.collision_height_m / 2
        pos = np.concatenate([cfg.spawn_xy(), np.full((n, 1), z0)], axis=-1)[None]
        state = SwarmState.hovering(pos, self.drone_params)
        state.thrust[:] = 0.0
        self.world = World.empty(cfg.room_size_m, 1)
        self.physics.reset(state, self.drone_params, self.world)
        self.controller = VelocityController(self.model, (1, n), self.dt_s, self.gains)
        self.controller.reset(self.physics.state().rot)
        self.params = [ParamStore(param_variables(cfg.battery_drain_scale)) for _ in range(n)]
        self.onboard = [Onboard(p, self.model) for p in self.params]
        self.batteries = [Battery(BatteryParams(drain_scale=cfg.battery_drain_scale),
                                  cfg.battery_soc) for _ in range(n)]
        self.telemetry = [Telemetry() for _ in range(n)]
        self.rng = np.random.default_rng(cfg.seed)
        self.time_s = 0.0
        self.stats = SwarmStats()
        self._touching = np.zeros((n, n), bool)
        self._last_vel = np.zeros((n, 3))
        self._estimates = [self._estimate(i) for i in range(n)]
        for i in range(n):
            self._telemetry(i, np.zeros(4), np.zeros(3))

    @property
    def num_drones(self) -> int:
        return self.cfg.drones

    def true_positions(self) -> np.ndarray:
        return self.physics.state().pos[0].copy()

    def estimate(self, i: int) -> Estimate:
        return self._estimates[i]

    def _estimate(self, i: int) -> Estimate:
        s = self.physics.state()
        rot = s.rot[0, i]
        pos = s.pos[0, i] + self.rng.normal(0.0, self.cfg.estimate_noise_m, 3)
        vel = s.vel[0, i] + self.rng.normal(0.0, self.cfg.estimate_vel_noise_mps, 3)
        return Estimate(pos, vel, math.atan2(rot[1, 0], rot[0, 0]), float(rot[2, 2]))

    def step(self) -> None:
        """Advance one control period (``1 / control_hz`` seconds)."""
        n, s = self.num_drones, self.physics.state()
        self._estimates = [self._estimate(i) for i in range(n)]
        targets = [self.onboard[i].update(self.time_s, self._estimates[i],
                                          float(self.controller.yaw_rad[0, i]),
                                          self.batteries[i].shut_down) for i in range(n)]
        on = np.array([t.motors_on for t in targets])
        acc_mode = np.stack([t.acc_mode for t in targets])[None]
        acc_sp = np.stack([t.acc_sp_mps2 for t in targets])[None]
        vel_sp = np.stack([t.vel_sp_mps + t.acc_ff_mps2 / self.gains.vel_p
                           for t in targets])[None]
        yaw_rate = np.array([t.yaw_rate_rad_s for t in targets])[None]
        for i, t in enumerate(targets):
            if t.yaw_abs_rad is not None:
                self.controller.yaw_rad[0, i] = t.yaw_abs_rad
        thrust_sum = np.zeros(n)
        for _ in range(self.substeps):
            self.controller.integral[acc_mode] = 0.0
            sp = np.where(acc_mode, s.vel + acc_sp / self.gains.vel_p, vel_sp)
            cmd = self.controller(s.vel, s.rot, s.omega, sp, yaw_rate)
            cmd[0, ~on] = 0.0
            self.physics.step(cmd)
            thrust_sum += cmd[0].sum(axis=-1)
        s = self.physics.state()
        off = ~on
        self.controller.integral[0, off] = 0.0
        self.controller.yaw_rad[0, off] = np.arctan2(s.rot[0, off, 1, 0], s.rot[0, off, 0, 0])
        self.time_s += self.control_dt_s
        hover_n = self.model.weight_n
        mean_cmd = thrust_sum / self.substeps
        for i in range(n):
            self.batteries[i].step(self.control_dt_s, float(s.thrust[0, i].sum()), hover_n,
                                   self.params[i]["vcf.drainScale"])
            self.telemetry[i].target_pos_m = targets[i].target_pos_m
            self.telemetry[i].target_vel_mps = targets[i].vel_sp_mps
            self._telemetry(i, cmd[0, i], np.full(1, mean_cmd[i]))
        self._update_stats()

    def _telemetry(self, i: int, cmd: np.ndarray, mean_cmd: np.ndarray) -> None:
        s, t, est = self.physics.state(), self.telemetry[i], self._estimates[i]
        rot, vel = s.rot[0, i], s.vel[0, i]
        acc = (vel - self._last_vel[i]) / self.control_dt_s
        self._last_vel[i] = vel
        t.pos_m, t.vel_mps, t.acc_mps2 = est.pos_m, est.vel_mps, acc
        t.quat_xyzw = rot_to_quat(rot)
        roll = math.atan2(rot[2, 1], rot[2, 2])
        pitch = math.asin(max(-1.0, min(1.0, -rot[2, 0])))
        t.rpy_deg = np.degrees([roll, -pitch, est.yaw_rad])
        t.gyro_deg_s = np.degrees(s.omega[0, i])
        t.acc_body_g = rot.T @ (acc + np.array([0.0, 0.0, GRAVITY_MPS2])) / GRAVITY_MPS2
        max_n = self.model.max_thrust_per_motor_n
        t.motor_ratio = np.clip(cmd / max_n, 0.0, 1.0)
        t.thrust_raw = float(np.clip(mean_cmd[0] / (4 * max_n), 0.0, 1.0) * 65535.0)
        b = self.batteries[i]
        t.vbat_v, t.battery_level_pct, t.pm_state = b.vbat_v, b.level_pct, b.pm_state
        t.is_flying = bool(s.pos[0, i, 2] > AIRBORNE_Z_M and cmd.sum() > 0.0)
        t.is_tumbled = bool(rot[2, 2] < 0.0)
        ob = self.onboard[i]
        t.can_fly = ob.armed and not (ob.locked or ob.crashed)
        t.supervisor_info = ob.supervisor_bits(t.is_flying, t.is_tumbled)
        t.target_yaw_deg = math.degrees(float(self.controller.yaw_rad[0, i]))

    def _update_stats(self) -> None:
        s = self.physics.state()
        pos = s.pos[0]
        st = self.stats
        st.sim_time_s = self.time_s
        st.max_altitude_m = max(st.max_altitude_m, float(pos[:, 2].max()))
        if self.num_drones > 1:
            d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
            air = pos[:, 2] > AIRBORNE_Z_M
            pair_air = air[:, None] & air[None] & ~np.eye(self.num_drones, dtype=bool)
            if pair_air.any():
                st.min_separation_m = min(st.min_separation_m, float(d[pair_air].min()))
        r, h = self.model.collision_radius_m, self.model.collision_height_m
        dz = np.abs(pos[:, None, 2] - pos[None, :, 2])
        dxy = np.linalg.norm(pos[:, None, :2] - pos[None, :, :2], axis=-1)
        touching = (dxy < 2 * r) & (dz < h) & ~np.eye(self.num_drones, dtype=bool)
        st.collision_events += int((touching & ~self._touching).sum() // 2)
        self._touching = touching
