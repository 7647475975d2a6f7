"""Configuration of a virtual Crazyflie swarm and of its optional link faults."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.errors import ConfigError

HOST = "127.0.0.1"
"""The emulator binds to loopback only."""
DEFAULT_BASE_PORT = 19850


@dataclass(frozen=True)
class LinkFaults:
    """Faults injected on one drone's UDP link (both directions unless stated)."""

    loss: float = 0.0
    """Probability of dropping a streamed packet: log data down, setpoints up. Requests and
    their answers are not dropped unless ``loss_all`` is set: cflib's UDP driver never
    resends, so one lost TOC answer stalls a connection for good (the radio driver resends,
    so on a real radio link loss shows up in the streams only)."""
    loss_all: bool = False
    latency_s: float = 0.0
    """Added one-way delay, each direction."""
    blackout_after_s: float | None = None
    """Drop everything from this time (s since start) ..."""
    blackout_for_s: float = 0.0
    """... for this long: the radio going out of range."""

    def validate(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ConfigError(f"loss: must be in [0, 1], got {self.loss}")
        if self.latency_s < 0 or self.blackout_for_s < 0:
            raise ConfigError("latency_s and blackout_for_s must be >= 0")


@dataclass
class VirtualSwarmConfig:
    drones: int = 4
    base_port: int = DEFAULT_BASE_PORT
    """Drone i listens on base_port + i; 0 lets the system pick free ports."""
    room_size_m: tuple[float, float, float] = (10.0, 10.0, 4.0)
    spawn_spacing_m: float = 0.5
    """Drones start on the floor on a grid this far apart, centred on the origin."""
    spawn_positions_m: list[tuple[float, float]] | None = None
    """Explicit (x, y) start positions; overrides the grid."""
    physics_hz: int = 500
    control_hz: int = 100
    seed: int = 0
    estimate_noise_m: float = 0.001
    """Standard deviation of the position estimate around the true position."""
    estimate_vel_noise_mps: float = 0.005
    battery_drain_scale: float = 1.0
    """Multiplies the battery's discharge (1 = a real Crazyflie's ~7 min hover)."""
    battery_soc: float = 1.0
    """Initial state of charge, 0..1."""
    downwash: bool = False
    faults: dict[int, LinkFaults] = field(default_factory=dict)
    """Per drone index."""

    def validate(self) -> None:
        if self.drones < 1:
            raise ConfigError(f"drones: must be >= 1, got {self.drones}")
        if self.base_port != 0 and not 1024 <= self.base_port <= 65535 - self.drones:
            raise ConfigError(f"base_port: must be 0 or in 1024..{65535 - self.drones}, "
                              f"got {self.base_port}")
        if self.physics_hz % self.control_hz:
            raise ConfigError("physics_hz must be a multiple of control_hz")
        if not 0.0 <= self.battery_soc <= 1.0:
            raise ConfigError(f"battery_soc: must be in [0, 1], got {self.battery_soc}")
        if self.spawn_positions_m is not None and len(self.spawn_positions_m) != self.drones:
            raise ConfigError(f"spawn_positions_m: need {self.drones} positions, got "
                              f"{len(self.spawn_positions_m)}")
        for fault in self.faults.values():
            fault.validate()

    def spawn_xy(self) -> np.ndarray:
        """(drones, 2) start positions on the floor, metres."""
        if self.spawn_positions_m is not None:
            return np.asarray(self.spawn_positions_m, dtype=float)
        cols = int(np.ceil(np.sqrt(self.drones)))
        idx = np.arange(self.drones)
        xy = np.stack([idx % cols, idx // cols], axis=-1).astype(float) * self.spawn_spacing_m
        return xy - xy.mean(axis=0)
