"""The emulated firmware's loggable state, log variables and parameters.

Names and types follow the Crazyflie firmware (``stateEstimate``, ``stateEstimateZ``, ``pm``,
``supervisor``, ``stabilizer``, ``commander.enHighLevel``, ...), so scripts written against a
real Crazyflie log and set the same names. Group ``vcf`` holds the emulator's own knobs.
Angles in the firmware's units: degrees, with the firmware's legacy pitch sign (positive pitch
is nose up, the negative of the right-handed FLU pitch).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim.virtual_crazyflie.toc import LOG_TYPES, PARAM_READ_ONLY, PARAM_TYPES, TocEntry


@dataclass
class Telemetry:
    """What one drone's firmware knows about itself, refreshed every control tick."""

    pos_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """Estimated position, world ENU."""
    vel_mps: np.ndarray = field(default_factory=lambda: np.zeros(3))
    acc_mps2: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """World-frame acceleration without gravity."""
    quat_xyzw: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))
    rpy_deg: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """Roll, pitch (firmware sign, nose up positive), yaw."""
    gyro_deg_s: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """Body rates (FLU)."""
    acc_body_g: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    """Accelerometer (specific force, body frame) in g."""
    motor_ratio: np.ndarray = field(default_factory=lambda: np.zeros(4))
    """Motor commands as fractions of full power, M1..M4."""
    thrust_raw: float = 0.0
    """Collective thrust command in the firmware's 0..65535 PWM units."""
    target_pos_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    target_vel_mps: np.ndarray = field(default_factory=lambda: np.zeros(3))
    target_yaw_deg: float = 0.0
    vbat_v: float = 4.2
    battery_level_pct: float = 100.0
    pm_state: int = 0
    """0 battery, 3 low power, 4 shut down (firmware ``pm.state``)."""
    supervisor_info: int = 0
    """Supervisor bitfield as cflib's ``Supervisor.STATES`` decodes it."""
    is_flying: bool = False
    can_fly: bool = True
    is_tumbled: bool = False
    kalman_var_m2: float = 1e-4


@dataclass(frozen=True)
class LogVariable:
    entry: TocEntry
    read: Callable[[Telemetry], float]


@dataclass(frozen=True)
class ParamVariable:
    entry: TocEntry
    default: float

    @property
    def read_only(self) -> bool:
        return bool(self.entry.type_byte & PARAM_READ_ONLY)

    @property
    def value_type(self):
        return PARAM_TYPES[self.entry.type_byte & 0x0F]


_LOG_TYPE_ID = {t.name: i for i, t in LOG_TYPES.items()}
_PARAM_TYPE_ID = {t.name: i for i, t in PARAM_TYPES.items()}


def _log(group: str, name: str, ctype: str, read: Callable[[Telemetry], float]) -> LogVariable:
    return LogVariable(TocEntry(group, name, _LOG_TYPE_ID[ctype]), read)


def _param(group: str, name: str, ctype: str, default: float,
           read_only: bool = False) -> ParamVariable:
    flags = PARAM_READ_ONLY if read_only else 0
    return ParamVariable(TocEntry(group, name, _PARAM_TYPE_ID[ctype] | flags), default)


def compress_quaternion(q_xyzw: np.ndarray) -> int:
    """The firmware's 32-bit "smallest three" quaternion (quatcompress.h): index of the
    largest component in the top 2 bits, then 3 x (sign bit, 9-bit magnitude / (1/sqrt 2))."""
    q = np.asarray(q_xyzw, dtype=float)
    norm = float(np.linalg.norm(q))
    q = q / norm if norm > 0 and np.isfinite(norm) else np.array([0.0, 0.0, 0.0, 1.0])
    largest = int(np.argmax(np.abs(q)))
    negate = q[largest] < 0
    comp = largest
    for i in range(4):
        if i != largest:
            negbit = int((q[i] < 0) ^ negate)
            mag = int(511 * (abs(q[i]) * np.sqrt(2.0)) + 0.5)
            comp = (comp << 10) | (negbit << 9) | min(mag, 511)
    return comp


def _mm(v: float) -> float:
    return 1000.0 * v


def log_variables() -> list[LogVariable]:
    """The log TOC, in TOC order."""
    v: list[LogVariable] = []
    for i, axis in enumerate("xyz"):
        v.append(_log("stateEstimate", axis, "float", lambda t, i=i: t.pos_m[i]))
    for i, axis in enumerate("xyz"):
        v.append(_log("stateEstimate", "v" + axis, "float", lambda t, i=i: t.vel_mps[i]))
    for i, axis in enumerate("xyz"):
        v.append(_log("stateEstimate", "a" + axis, "float", lambda t, i=i: t.acc_mps2[i]))
    for i, name in enumerate(("roll", "pitch", "yaw")):
        v.append(_log("stateEstimate", name, "float", lambda t, i=i: t.rpy_deg[i]))
    for i, name in enumerate(("qx", "qy", "qz", "qw")):
        v.append(_log("stateEstimate", name, "float", lambda t, i=i: t.quat_xyzw[i]))
    for i, axis in enumerate("xyz"):
        v.append(_log("stateEstimateZ", axis, "int16_t", lambda t, i=i: _mm(t.pos_m[i])))
    for i, axis in enumerate("xyz"):
        v.append(_log("stateEstimateZ", "v" + axis, "int16_t",
                      lambda t, i=i: _mm(t.vel_mps[i])))
    for i, axis in enumerate("xyz"):
        v.append(_log("stateEstimateZ", "a" + axis, "int16_t",
                      lambda t, i=i: _mm(t.acc_mps2[i])))
    v.append(_log("stateEstimateZ", "quat", "uint32_t",
                  lambda t: compress_quaternion(t.quat_xyzw)))
    for i, (name, sign) in enumerate((("rateRoll", 1.0), ("ratePitch", -1.0),
                                      ("rateYaw", 1.0))):  # the firmware's: -gyro.y
        v.append(_log("stateEstimateZ", name, "int16_t",
                      lambda t, i=i, sign=sign: sign * np.radians(t.gyro_deg_s[i]) * 1000.0))
    for i, name in enumerate(("roll", "pitch", "yaw")):
        v.append(_log("stabilizer", name, "float", lambda t, i=i: t.rpy_deg[i]))
    v.append(_log("stabilizer", "thrust", "float", lambda t: t.thrust_raw))
    for i, axis in enumerate("xyz"):
        v.append(_log("ctrltarget", axis, "float", lambda t, i=i: t.target_pos_m[i]))
    for i, axis in enumerate("xyz"):
        v.append(_log("ctrltarget", "v" + axis, "float", lambda t, i=i: t.target_vel_mps[i]))
    v.append(_log("ctrltarget", "yaw", "float", lambda t: t.target_yaw_deg))
    for axis in "XYZ":
        v.append(_log("kalman", "varP" + axis, "float", lambda t: t.kalman_var_m2))
    for i, axis in enumerate("XYZ"):
        v.append(_log("kalman", "state" + axis, "float", lambda t, i=i: t.pos_m[i]))
    for i, axis in enumerate("xyz"):
        v.append(_log("gyro", axis, "float", lambda t, i=i: t.gyro_deg_s[i]))
    for i, axis in enumerate("xyz"):
        v.append(_log("acc", axis, "float", lambda t, i=i: t.acc_body_g[i]))
    for i in range(4):
        v.append(_log("motor", f"m{i + 1}", "uint32_t",
                      lambda t, i=i: 65535.0 * t.motor_ratio[i]))
    v += [
        _log("pm", "vbat", "float", lambda t: t.vbat_v),
        _log("pm", "vbatMV", "uint16_t", lambda t: 1000.0 * t.vbat_v),
        _log("pm", "batteryLevel", "uint8_t", lambda t: t.battery_level_pct),
        _log("pm", "state", "int8_t", lambda t: t.pm_state),
        _log("supervisor", "info", "uint16_t", lambda t: t.supervisor_info),
        _log("sys", "canfly", "uint8_t", lambda t: t.can_fly),
        _log("sys", "isFlying", "uint8_t", lambda t: t.is_flying),
        _log("sys", "isTumbled", "uint8_t", lambda t: t.is_tumbled),
    ]
    return v


def param_variables(drain_scale: float = 1.0) -> list[ParamVariable]:
    """The param TOC, in TOC order, with the firmware's defaults."""
    return [
        _param("stabilizer", "controller", "uint8_t", 1),
        _param("stabilizer", "estimator", "uint8_t", 2),
        _param("stabilizer", "stop", "uint8_t", 0),
        _param("commander", "enHighLevel", "uint8_t", 1),
        _param("kalman", "resetEstimation", "uint8_t", 0),
        _param("posCtlPid", "xKp", "float", 2.0),
        _param("posCtlPid", "yKp", "float", 2.0),
        _param("posCtlPid", "zKp", "float", 2.0),
        _param("posCtlPid", "xyVelMax", "float", 1.0),
        _param("posCtlPid", "zVelMax", "float", 1.0),
        _param("hlCommander", "vtoff", "float", 0.5),
        _param("hlCommander", "vland", "float", 0.5),
        _param("supervisor", "tmblChckEn", "uint8_t", 1),
        _param("vcf", "drainScale", "float", drain_scale),
        _param("firmware", "revision0", "uint32_t", 0x5F0C1A2B, read_only=True),
        _param("firmware", "revision1", "uint16_t", 0, read_only=True),
        _param("firmware", "modified", "uint8_t", 0, read_only=True),
        _param("cpu", "flash", "uint16_t", 1024, read_only=True),
        _param("deck", "bcFlow2", "uint8_t", 0, read_only=True),
        _param("deck", "bcLighthouse4", "uint8_t", 0, read_only=True),
        _param("deck", "bcMultiranger", "uint8_t", 0, read_only=True),
        _param("deck", "bcZRanger2", "uint8_t", 0, read_only=True),
    ]
