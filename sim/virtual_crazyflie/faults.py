"""Optional faults on one drone's UDP link: packet loss, latency and blackouts."""
from __future__ import annotations

import numpy as np

from sim.virtual_crazyflie.config import LinkFaults
from sim.virtual_crazyflie.crtp import CrtpPacket, Port

STREAM_PORTS = frozenset({Port.COMMANDER, Port.GENERIC_SETPOINT})
"""Uplink ports whose packets are a stream (a lost one is replaced by the next)."""
LOG_DATA_CHANNEL = 2


class FaultyLink:
    """Decides, packet by packet, whether a fault drops or delays it (seeded, reproducible)."""

    def __init__(self, faults: LinkFaults, rng: np.random.Generator) -> None:
        self.faults, self.rng = faults, rng
        self.dropped = 0

    def blacked_out(self, t_s: float) -> bool:
        f = self.faults
        return f.blackout_after_s is not None and \
            f.blackout_after_s <= t_s < f.blackout_after_s + f.blackout_for_s

    def _lose(self, stream: bool) -> bool:
        f = self.faults
        if f.loss > 0.0 and (stream or f.loss_all) and self.rng.random() < f.loss:
            self.dropped += 1
            return True
        return False

    def drop_uplink(self, packet: CrtpPacket, t_s: float) -> bool:
        if self.blacked_out(t_s):
            self.dropped += 1
            return True
        return self._lose(packet.port in STREAM_PORTS)

    def drop_downlink(self, packet: CrtpPacket, t_s: float) -> bool:
        if self.blacked_out(t_s):
            self.dropped += 1
            return True
        return self._lose(packet.port == Port.LOG and packet.channel == LOG_DATA_CHANNEL)

    @property
    def latency_s(self) -> float:
        return self.faults.latency_s
