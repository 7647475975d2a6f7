"""A 1-cell LiPo battery under a quadrotor's load.

Open-circuit voltage is a piecewise-linear function of the state of charge (4.2 V full, 3.0 V
empty), the terminal voltage sags by the internal resistance times the current, and the current
grows with thrust as momentum theory says (power ~ thrust^1.5): about 2.1 A at hover for a
Crazyflie 2.1 with its 250 mAh cell, so hover drains it in roughly 7 minutes. ``drain_scale``
multiplies the charge drawn per second, so a test can run a battery down in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SOC_POINTS = np.array([0.0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
OCV_POINTS_V = np.array([3.0, 3.3, 3.5, 3.65, 3.75, 3.85, 4.0, 4.2])
LOW_VOLTAGE_V = 3.2
"""Firmware ``pm`` low-power threshold (loaded terminal voltage)."""
SHUTDOWN_VOLTAGE_V = 3.0
SHUTDOWN_HOLD_S = 1.0


@dataclass
class BatteryParams:
    capacity_ah: float = 0.25
    internal_resistance_ohm: float = 0.15
    idle_current_a: float = 0.1
    hover_current_a: float = 2.1
    drain_scale: float = 1.0


class Battery:
    """One drone's battery; ``step`` once per control tick."""

    def __init__(self, params: BatteryParams, soc: float = 1.0) -> None:
        self.params = params
        self.soc = float(np.clip(soc, 0.0, 1.0))
        self.current_a = params.idle_current_a
        self.vbat_v = self.open_circuit_v()
        self.shut_down = False
        self._below_s = 0.0

    def open_circuit_v(self) -> float:
        return float(np.interp(self.soc, SOC_POINTS, OCV_POINTS_V))

    def step(self, dt_s: float, thrust_n: float, hover_thrust_n: float,
             drain_scale: float | None = None) -> None:
        """Draw the current for total motor thrust ``thrust_n`` over ``dt_s`` seconds."""
        p = self.params
        scale = p.drain_scale if drain_scale is None else drain_scale
        load = max(thrust_n, 0.0) / hover_thrust_n
        self.current_a = p.idle_current_a + p.hover_current_a * load ** 1.5
        self.soc = max(self.soc - self.current_a * dt_s * max(scale, 0.0) / 3600.0
                       / p.capacity_ah, 0.0)
        self.vbat_v = self.open_circuit_v() - p.internal_resistance_ohm * self.current_a
        self._below_s = self._below_s + dt_s if self.vbat_v < SHUTDOWN_VOLTAGE_V else 0.0
        if self._below_s >= SHUTDOWN_HOLD_S or self.soc <= 0.0:
            self.shut_down = True

    @property
    def level_pct(self) -> float:
        return 100.0 * self.soc

    @property
    def pm_state(self) -> int:
        """Firmware ``pm.state``: 0 on battery, 3 low power, 4 shut down."""
        if self.shut_down:
            return 4
        return 3 if self.vbat_v < LOW_VOLTAGE_V else 0
