"""Fly MRTA decisions on the simulated Crazyflies: ``motion: drones``.

Each decision step, every robot flies towards its waypoint (target task, or exploration
point) for ``decision_dt_s`` on :class:`sim.swarm_env.SwarmVecEnv` in ``velocity`` mode: the
nominal setpoint is a P law towards the waypoint at the flight height, saturated at
``speed_mps``; each drone's setpoint is filtered by its own CBF shield
(:class:`swarm_rl.runtime.shield.CBFShield`, through :func:`swarm_rl.evaluate.shield_actions`,
as ``swarm-rl eval --shield cbf`` does), then tracked by the simulated onboard controller and
rigid-body physics (batched engine by default, PyBullet on request). This is the flight stack
the kinematic model of :mod:`sim.mrta.motion` stands in for during training; it is much slower
(a Python shield call per drone per control tick) and meant for evaluation.

Lives in swarm_rl, not sim, because the shield is part of the deploy runtime
(``swarm_rl.runtime``), which sim does not import.
"""
from __future__ import annotations

import numpy as np

from sim.config import make_config
from sim.mrta.config import MRTAConfig
from sim.state import SwarmState
from sim.swarm_env import SwarmVecEnv
from swarm_rl.evaluate import shield_actions
from swarm_rl.runtime.shield import CBFShield, ShieldConfig

CONTROL_HZ = 50
PHYSICS_HZ = 200
WAYPOINT_GAIN = 2.0
"""Velocity per metre of distance to the waypoint (1/s) before saturation."""
ROOM_MARGIN_M = 1.0
ROOM_HEIGHT_M = 3.0


class DroneFlight:
    """The ``flight`` backend of :class:`sim.mrta.env.MRTAVecEnv` for simulated drones."""

    def __init__(self, cfg: MRTAConfig, num_envs: int, backend: str = "batched",
                 shield: bool = True) -> None:
        x, y = cfg.world_size_m
        room = (x + 2 * ROOM_MARGIN_M, y + 2 * ROOM_MARGIN_M, ROOM_HEIGHT_M)
        self.cfg = cfg
        self.max_speed_mps = max(1.5, 1.5 * cfg.speed_mps)
        self.env_cfg = make_config(
            scenario="hover", num_drones=cfg.num_robots, room_size_m=room,
            action_mode="velocity", control_hz=CONTROL_HZ, physics_hz=PHYSICS_HZ,
            episode_s=cfg.decision_steps * cfg.decision_dt_s + 60.0,
            max_speed_mps=self.max_speed_mps, neighbour_range_m=min(cfg.comm_range_m, 4.0),
            noise={"enabled": False})
        self.env = SwarmVecEnv(self.env_cfg, num_envs, backend)
        self.shield = None
        if shield:
            self.shield = CBFShield(ShieldConfig(
                safety_distance_m=cfg.separation_m, ceiling_m=ROOM_HEIGHT_M - 0.5,
                geofence_lower_m=(-x / 2 - 0.5, -y / 2 - 0.5, -np.inf),
                geofence_upper_m=(x / 2 + 0.5, y / 2 + 0.5, np.inf),
                v_max_mps=self.max_speed_mps * np.sqrt(3), dt_s=1.0 / CONTROL_HZ))
        self.ticks = int(round(cfg.decision_dt_s * CONTROL_HZ))
        self.interventions = 0
        self.fallbacks = 0

    def reset(self, robot_xy: np.ndarray) -> None:
        """Place the drones, hovering, at ``robot_xy`` (E, N, 2) and the flight height."""
        env = self.env
        env.reset(seed=0)
        pos = np.concatenate([robot_xy, np.full(robot_xy.shape[:2] + (1,),
                                                self.cfg.flight_height_m)], axis=-1)
        state = SwarmState.hovering(pos, env.params)
        env.physics.reset(state, env.params, env.scenario.world)
        env.controller.reset(state.rot)
        env.step_count = 0

    def fly(self, waypoint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One decision step towards ``waypoint`` (E, N, 2); returns the drones' (x, y) and
        the horizontal distance each flew (m)."""
        env = self.env
        goal = np.concatenate([waypoint, np.full(waypoint.shape[:2] + (1,),
                                                 self.cfg.flight_height_m)], axis=-1)
        travel = np.zeros(waypoint.shape[:2])
        for _ in range(self.ticks):
            pos = env.physics.state().pos.copy()
            v = WAYPOINT_GAIN * (goal - pos)
            norm = np.linalg.norm(v, axis=-1, keepdims=True)
            v *= np.minimum(1.0, self.cfg.speed_mps / np.maximum(norm, 1e-9))
            actions = np.concatenate([v / self.max_speed_mps, np.zeros(v.shape[:2] + (1,))],
                                     axis=-1)
            if self.shield is not None:
                actions, hit, fell = shield_actions(env, actions, self.shield)
                self.interventions += int(hit.sum())
                self.fallbacks += int(fell.sum())
            env.step(actions, observe=False)
            new = env.physics.state().pos
            travel += np.linalg.norm(new[..., :2] - pos[..., :2], axis=-1)
        return env.physics.state().pos[..., :2].copy(), travel
