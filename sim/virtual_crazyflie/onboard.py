"""One emulated drone's onboard stack above the attitude loop.

What the firmware's ``commander.c``, ``crtp_commander_high_level.c``, ``supervisor.c`` and
position controller do, reduced to what a flight needs:

- **Arbitration.** A low-level (CRTP) setpoint takes priority over the high-level planner and
  stops its plan. It stays valid for 0.5 s; then the commander levels the drone (x, y level,
  z mode kept) and after 2 s cuts the motors, unless the planner flies it. ``notify setpoint
  stop`` hands control back to the planner, keeping the last setpoint valid for the given time.
- **Position loop** (100 Hz, ``posCtlPid`` gains): position error -> velocity setpoint, clamped
  per axis to ``xyVelMax`` / ``zVelMax``, plus the setpoint's feed-forward velocity.
- **Attitude-mode setpoints** (RPYT, manual, z-distance) become an acceleration demand.
- **Supervisor.** Auto-armed; emergency stop (or a lapsed emergency-stop watchdog) locks the
  motors off until the emulator restarts; a tumble (upside down for 0.5 s) marks the drone
  crashed until a crash-recovery request while level; ``stabilizer.stop`` cuts the motors.

The output, a :class:`ControlTarget`, is what :mod:`sim.virtual_crazyflie.swarm` feeds the
simulated cascaded controller of :mod:`sim.controller`. Units SI, world ENU, radians.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.crazyflie import GRAVITY_MPS2, QuadParams
from sim.virtual_crazyflie.param_service import ParamStore
from sim.virtual_crazyflie.planner import (CMD_GO_TO, CMD_GO_TO_2, CMD_LAND, CMD_LAND_2,
                                           CMD_LAND_WITH_VELOCITY, CMD_SET_GROUP_MASK,
                                           CMD_STOP, CMD_TAKEOFF, CMD_TAKEOFF_2,
                                           CMD_TAKEOFF_WITH_VELOCITY, HighLevelCommand,
                                           Planner, PlannerState, PlanKind)
from sim.virtual_crazyflie.setpoints import Setpoint, XYMode, YawMode, ZMode

STABILIZE_TIMEOUT_S = 0.5
SHUTDOWN_TIMEOUT_S = 2.0
EMERGENCY_WATCHDOG_S = 1.0
TUMBLE_HOLD_S = 0.5
MAX_YAW_RATE_RAD_S = 3.0
RAW_THRUST_FULL = 65535.0

BIT_CAN_BE_ARMED, BIT_IS_ARMED, BIT_AUTO_ARMED, BIT_CAN_FLY, BIT_IS_FLYING = 0, 1, 2, 3, 4
BIT_TUMBLED, BIT_LOCKED, BIT_CRASHED, BIT_HL_ACTIVE, BIT_HL_FINISHED = 5, 6, 7, 8, 9
BIT_HL_DISABLED = 10


@dataclass
class ControlTarget:
    """Input to the velocity controller for one drone, world ENU."""

    motors_on: bool
    vel_sp_mps: np.ndarray = field(default_factory=lambda: np.zeros(3))
    acc_mode: np.ndarray = field(default_factory=lambda: np.zeros(3, bool))
    """Axes driven by ``acc_sp_mps2`` directly instead of by a velocity setpoint."""
    acc_sp_mps2: np.ndarray = field(default_factory=lambda: np.zeros(3))
    acc_ff_mps2: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """Feed-forward acceleration on the velocity-driven axes."""
    yaw_rate_rad_s: float = 0.0
    yaw_abs_rad: float | None = None
    target_pos_m: np.ndarray = field(default_factory=lambda: np.zeros(3))


OFF = ControlTarget(False)


@dataclass
class Estimate:
    """What the onboard estimator reports (world ENU)."""

    pos_m: np.ndarray
    vel_mps: np.ndarray
    yaw_rad: float
    up_z: float
    """World z component of the body z axis (1 level, < 0 upside down)."""


class Onboard:
    """Commander, planner and supervisor of one drone."""

    def __init__(self, params: ParamStore, model: QuadParams) -> None:
        self.params, self.model = params, model
        self.planner = Planner()
        self.ll: Setpoint | None = None
        self.ll_stamp_s = -math.inf
        self.crtp_active = False
        self.thrust_locked = True
        self.armed = True
        self.locked = False
        self.crashed = False
        self.emergency_deadline_s: float | None = None
        self._tumble_s = 0.0
        self._att = np.zeros(2)
        self._last_s = 0.0
        self.source = "none"
        """Which setpoint drives the motors: none, crtp, crtp-level, high-level."""

    # --- inputs ---------------------------------------------------------------------------

    def on_setpoint(self, sp: Setpoint, now_s: float) -> None:
        if sp.kind == "manual" and sp.attitude_rate and (self.ll is None or
                                                         self.ll.kind != "manual"):
            self._att[:] = 0.0
        self.ll, self.ll_stamp_s, self.crtp_active = sp, now_s, True
        self.planner.stop()

    def rpyt_thrust_lock(self, wire_thrust: int) -> bool:
        """Update and return the RPYT thrust lock for a packet with ``wire_thrust``: locked
        whenever no setpoint source is active, released by a zero-thrust packet."""
        if not self.crtp_active:
            self.thrust_locked = True
        if wire_thrust == 0:
            self.thrust_locked = False
        return self.thrust_locked

    def on_notify_stop(self, remain_s: float, now_s: float) -> None:
        self.crtp_active = False
        if self.ll is not None:
            self.ll_stamp_s = now_s - STABILIZE_TIMEOUT_S + remain_s

    def emergency_stop(self) -> None:
        self.locked = True

    def emergency_watchdog(self, now_s: float) -> None:
        self.emergency_deadline_s = now_s + EMERGENCY_WATCHDOG_S

    def arm(self, do_arm: bool) -> bool:
        if not self.locked:
            self.armed = bool(do_arm)
        return self.armed

    def recover(self, est: Estimate) -> bool:
        if self.crashed and est.up_z > 0.9:
            self.crashed = False
        return not self.crashed

    def on_high_level(self, cmd: HighLevelCommand, est: Estimate, now_s: float) -> bool:
        """Apply a high-level command; False when ignored (other group, disabled, refused)."""
        if not self.params["commander.enHighLevel"]:
            return False
        if cmd.cmd == CMD_SET_GROUP_MASK:
            self.planner.group_mask = cmd.group_mask
            return True
        if not self.planner.in_group(cmd.group_mask):
            return False
        if cmd.cmd == CMD_STOP:
            self.planner.stop()
            return True
        start = self.planner.evaluate(now_s) if self.planner.active else None
        if start is None:
            start = PlannerState(est.pos_m.copy(), est.vel_mps.copy(), np.zeros(3),
                                 est.yaw_rad)
        yaw = start.yaw_rad if cmd.use_current_yaw else cmd.yaw_rad
        if cmd.cmd in (CMD_TAKEOFF, CMD_TAKEOFF_2, CMD_TAKEOFF_WITH_VELOCITY):
            if self.planner.active:
                return False
            return self._vertical(PlanKind.TAKEOFF, cmd, start, yaw, now_s,
                                  self.params["hlCommander.vtoff"])
        if cmd.cmd in (CMD_LAND, CMD_LAND_2, CMD_LAND_WITH_VELOCITY):
            return self._vertical(PlanKind.LAND, cmd, start, yaw, now_s,
                                  self.params["hlCommander.vland"])
        if cmd.cmd in (CMD_GO_TO, CMD_GO_TO_2):
            goal = np.asarray(cmd.goal_m, dtype=float)
            if cmd.relative:
                goal, yaw = start.pos_m + goal, start.yaw_rad + cmd.yaw_rad
            self.planner.plan(PlanKind.GO_TO, start, goal, yaw, cmd.duration_s, now_s,
                              cmd.linear)
            return True
        return False

    def _vertical(self, kind: PlanKind, cmd: HighLevelCommand, start: PlannerState,
                  yaw: float, now_s: float, default_speed: float) -> bool:
        height = cmd.height_m + (start.pos_m[2] if cmd.relative else 0.0)
        height = max(height, 0.0)
        duration = cmd.duration_s
        if cmd.cmd in (CMD_TAKEOFF_WITH_VELOCITY, CMD_LAND_WITH_VELOCITY):
            speed = cmd.velocity_mps if cmd.velocity_mps > 0 else default_speed
            duration = abs(height - start.pos_m[2]) / max(speed, 1e-3)
        goal = np.array([start.pos_m[0], start.pos_m[1], height])
        self.planner.plan(kind, start, goal, yaw, duration, now_s)
        self.crtp_active = False
        return True

    # --- control tick ---------------------------------------------------------------------

    def update(self, now_s: float, est: Estimate, yaw_ref_rad: float,
               battery_shut_down: bool) -> ControlTarget:
        """The control target for this tick (called at the position-loop rate)."""
        dt = min(max(now_s - self._last_s, 0.0), 0.1)
        self._last_s = now_s
        if self.emergency_deadline_s is not None and now_s > self.emergency_deadline_s:
            self.locked = True
        if self.params["supervisor.tmblChckEn"] and est.up_z < 0.0:
            self._tumble_s += dt
            if self._tumble_s >= TUMBLE_HOLD_S:
                self.crashed = True
        else:
            self._tumble_s = 0.0
        if (self.locked or self.crashed or not self.armed or battery_shut_down
                or self.params["stabilizer.stop"]):
            self.source = "none"
            self.planner.stop()
            return OFF
        sp, level = self._select(now_s)
        if sp is None or sp.stop:
            return OFF
        return self._track(sp, level, est, yaw_ref_rad, dt)

    def _select(self, now_s: float) -> tuple[Setpoint | None, bool]:
        age = now_s - self.ll_stamp_s
        if self.crtp_active and age <= STABILIZE_TIMEOUT_S:
            self.source = "crtp"
            return self.ll, False
        self.crtp_active = False
        hl = self.planner.evaluate(now_s) if self.params["commander.enHighLevel"] else None
        if hl is not None:
            self.source = "high-level"
            return Setpoint("high_level", xy=XYMode.POSITION, z=ZMode.POSITION,
                            yaw=YawMode.ANGLE, pos_m=hl.pos_m, vel_mps=hl.vel_mps,
                            acc_mps2=hl.acc_mps2, yaw_rad=hl.yaw_rad,
                            yaw_rate_rad_s=hl.yaw_rate_rad_s), False
        if self.ll is not None and age <= STABILIZE_TIMEOUT_S:
            self.source = "crtp"
            return self.ll, False
        if self.ll is not None and age <= SHUTDOWN_TIMEOUT_S:
            self.source = "crtp-level"
            return self.ll, True
        self.source = "none"
        return None, False

    def _track(self, sp: Setpoint, level: bool, est: Estimate, yaw_ref: float,
               dt: float) -> ControlTarget:
        p = self.params
        out = ControlTarget(True, target_pos_m=est.pos_m.copy())
        kp = np.array([p["posCtlPid.xKp"], p["posCtlPid.yKp"], p["posCtlPid.zKp"]])
        vmax = np.array([p["posCtlPid.xyVelMax"]] * 2 + [p["posCtlPid.zVelMax"]])
        if sp.attitude_rate:
            self._att += np.array([sp.roll_rad, sp.pitch_rad]) * dt
            roll, pitch = self._att
        else:
            roll, pitch = sp.roll_rad, sp.pitch_rad
        yaw_now = est.yaw_rad
        if sp.z == ZMode.THRUST:
            if sp.thrust_raw <= 0:
                return OFF
            thrust_n = sp.thrust_raw / RAW_THRUST_FULL * 4 * self.model.max_thrust_per_motor_n
            out.acc_mode[:] = True
            out.acc_sp_mps2 = thrust_n / self.model.mass_kg * _body_z(roll, pitch, yaw_now) \
                - np.array([0.0, 0.0, GRAVITY_MPS2])
        elif sp.z == ZMode.POSITION:
            vz = sp.vel_mps[2] + kp[2] * (sp.pos_m[2] - est.pos_m[2])
            out.vel_sp_mps[2] = np.clip(vz, -vmax[2], vmax[2])
            out.target_pos_m[2] = sp.pos_m[2]
        else:
            out.vel_sp_mps[2] = sp.vel_mps[2]
        if level:
            out.acc_mode[:2] = True
            out.acc_sp_mps2[:2] = 0.0
        elif sp.xy == XYMode.POSITION:
            v = sp.vel_mps[:2] + kp[:2] * (sp.pos_m[:2] - est.pos_m[:2])
            out.vel_sp_mps[:2] = np.clip(v, -vmax[:2], vmax[:2])
            out.target_pos_m[:2] = sp.pos_m[:2]
        elif sp.xy == XYMode.VELOCITY:
            v = sp.vel_mps[:2]
            if sp.body_velocity:
                c, s = math.cos(yaw_now), math.sin(yaw_now)
                v = np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])
            out.vel_sp_mps[:2] = v
        elif sp.z != ZMode.THRUST:
            z = _body_z(roll, pitch, yaw_now)
            out.acc_mode[:2] = True
            out.acc_sp_mps2[:2] = GRAVITY_MPS2 * z[:2] / max(z[2], 0.2)
        out.acc_ff_mps2 = np.where(out.acc_mode, 0.0, sp.acc_mps2)
        if sp.yaw == YawMode.ANGLE:
            step = MAX_YAW_RATE_RAD_S * max(dt, 0.01)
            delta = math.remainder(sp.yaw_rad - yaw_ref, 2 * math.pi)
            out.yaw_abs_rad = yaw_ref + float(np.clip(delta, -step, step))
        else:
            out.yaw_rate_rad_s = float(np.clip(sp.yaw_rate_rad_s, -MAX_YAW_RATE_RAD_S,
                                               MAX_YAW_RATE_RAD_S))
        return out

    def supervisor_bits(self, is_flying: bool, tumbled: bool) -> int:
        can_fly = self.armed and not (self.locked or self.crashed)
        hl_finished = self.planner.active and self.planner.finished(self._last_s)
        bits = {BIT_CAN_BE_ARMED: not self.locked, BIT_IS_ARMED: self.armed,
                BIT_AUTO_ARMED: True, BIT_CAN_FLY: can_fly, BIT_IS_FLYING: is_flying,
                BIT_TUMBLED: tumbled, BIT_LOCKED: self.locked, BIT_CRASHED: self.crashed,
                BIT_HL_ACTIVE: self.source == "high-level", BIT_HL_FINISHED: hl_finished,
                BIT_HL_DISABLED: not self.planner.active}
        return sum(1 << bit for bit, on in bits.items() if on)


def _body_z(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """World direction of the body z axis for right-handed roll, pitch (FLU) and yaw (rad)."""
    cr, sr, cp, spi = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([cy * spi * cr + sy * sr, sy * spi * cr - cy * sr, cp * cr])
