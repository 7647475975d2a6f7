"""One virtual Crazyflie's CRTP dispatch: a packet in, the firmware's answers out.

Ports are dispatched through a table; each handler returns the reply packets (possibly none).
Whatever the firmware ignores is ignored here (unknown ports, channels and commands, packets
too short for their command), and counted in :attr:`VirtualCrazyflie.ignored`; no packet
raises. The platform reports CRTP protocol version 12, so cflib uses TOC v2, 16-bit param
ids, the current setpoint types and the supervisor port.
"""
from __future__ import annotations

import struct
from collections.abc import Callable

from sim.virtual_crazyflie.crtp import MAX_PAYLOAD, CrtpPacket, Port
from sim.virtual_crazyflie.log_service import LogService
from sim.virtual_crazyflie.param_service import ParamService
from sim.virtual_crazyflie.planner import decode_high_level
from sim.virtual_crazyflie.setpoints import decode_generic, decode_meta, decode_rpyt
from sim.virtual_crazyflie.swarm import VirtualSwarm
from sim.virtual_crazyflie.variables import log_variables

PROTOCOL_VERSION = 12
FIRMWARE_VERSION = b"2025.02 swarm_rl-virtual"
DEVICE_TYPE = b"CF21"
LINK_SOURCE_TEXT = b"Bitcraze Crazyflie"
LINK_ECHO, LINK_SOURCE, LINK_SINK = 0, 1, 2
PLATFORM_COMMAND, PLATFORM_VERSION, PLATFORM_APP = 0, 1, 2
VERSION_PROTOCOL, VERSION_FIRMWARE, VERSION_DEVICE = 0, 1, 2
PLATFORM_REQUEST_ARMING, PLATFORM_CRASH_RECOVERY = 1, 2
SUPERVISOR_INFO, SUPERVISOR_COMMAND = 0, 1
SUP_GET_STATE, SUP_ARM, SUP_RECOVER, SUP_ESTOP, SUP_ESTOP_WATCHDOG = 0x0C, 1, 2, 3, 4
LOC_POSITION, LOC_GENERIC = 0, 1
LOC_EMERGENCY_STOP, LOC_EMERGENCY_STOP_WATCHDOG = 3, 4
MEM_INFO, MEM_READ, MEM_WRITE = 0, 1, 2
MEM_INFO_VER, MEM_INFO_NBR, MEM_INFO_DETAILS = 0, 1, 2
MEM_ENOENT = 2

Replies = list[CrtpPacket]


class VirtualCrazyflie:
    """The firmware side of drone ``index`` of a :class:`VirtualSwarm`."""

    def __init__(self, swarm: VirtualSwarm, index: int, name: str) -> None:
        self.swarm, self.index, self.name = swarm, index, name
        self.onboard = swarm.onboard[index]
        self.log = LogService(log_variables())
        self.param = ParamService(swarm.params[index])
        self.ignored = 0
        self.received = 0
        self._console: list[bytes] = []
        self._handlers: dict[int, Callable[[int, bytes], Replies]] = {
            Port.LINKCTRL: self._linkctrl, Port.PLATFORM: self._platform,
            Port.LOG: self._log, Port.PARAM: self._param, Port.MEM: self._mem,
            Port.COMMANDER: self._rpyt, Port.GENERIC_SETPOINT: self._generic,
            Port.HIGH_LEVEL: self._high_level, Port.SUPERVISOR: self._supervisor,
            Port.LOCALIZATION: self._localization, Port.CONSOLE: lambda ch, d: [],
        }

    @property
    def now_s(self) -> float:
        return self.swarm.time_s

    def handle(self, packet: CrtpPacket) -> Replies:
        """The replies to one uplink packet."""
        self.received += 1
        handler = self._handlers.get(packet.port)
        replies = handler(packet.channel, packet.data) if handler else None
        if replies is None:
            self.ignored += 1
            return []
        return replies

    def print(self, text: str) -> None:
        """Queue console text (CONSOLE port), split into 30-byte packets."""
        raw = text.encode("ascii", "replace")
        self._console += [raw[k:k + MAX_PAYLOAD] for k in range(0, len(raw), MAX_PAYLOAD)]

    def downlink(self, now_ms: float) -> Replies:
        """Unsolicited packets due now: console text and log data."""
        out = [CrtpPacket(Port.CONSOLE, 0, c) for c in self._console]
        self._console.clear()
        out += [CrtpPacket(Port.LOG, ch, d)
                for ch, d in self.log.due_packets(now_ms, self.swarm.telemetry[self.index])]
        return out

    # --- ports ------------------------------------------------------------------------------

    def _linkctrl(self, ch: int, data: bytes) -> Replies | None:
        if ch == LINK_ECHO:
            return [CrtpPacket(Port.LINKCTRL, LINK_ECHO, data)]
        if ch == LINK_SOURCE:  # cflib's first request of a connection
            self.print(f"SYS: virtual Crazyflie {self.name} (swarm_rl), CRTP protocol "
                       f"{PROTOCOL_VERSION}\n")
            return [CrtpPacket(Port.LINKCTRL, LINK_SOURCE,
                               LINK_SOURCE_TEXT.ljust(MAX_PAYLOAD, b"\0"))]
        return [] if ch == LINK_SINK else None

    def _platform(self, ch: int, data: bytes) -> Replies | None:
        if not data:
            return None
        if ch == PLATFORM_VERSION:
            value = {VERSION_PROTOCOL: bytes([PROTOCOL_VERSION]),
                     VERSION_FIRMWARE: FIRMWARE_VERSION, VERSION_DEVICE: DEVICE_TYPE}.get(data[0])
            if value is None:
                return None
            return [CrtpPacket(Port.PLATFORM, PLATFORM_VERSION, bytes([data[0]]) + value)]
        if ch == PLATFORM_COMMAND:
            if data[0] == PLATFORM_REQUEST_ARMING and len(data) >= 2:
                self.onboard.arm(bool(data[1]))
            elif data[0] == PLATFORM_CRASH_RECOVERY:
                self.onboard.recover(self.swarm.estimate(self.index))
            return []
        return None

    def _log(self, ch: int, data: bytes) -> Replies:
        return [CrtpPacket(Port.LOG, c, d)
                for c, d in self.log.handle(ch, data, 1000.0 * self.now_s)] or None

    def _param(self, ch: int, data: bytes) -> Replies:
        return [CrtpPacket(Port.PARAM, c, d) for c, d in self.param.handle(ch, data)] or None

    def _mem(self, ch: int, data: bytes) -> Replies | None:
        if ch == MEM_INFO and data:
            if data[0] == MEM_INFO_NBR:
                return [CrtpPacket(Port.MEM, MEM_INFO, bytes([MEM_INFO_NBR, 0]))]
            if data[0] == MEM_INFO_VER:
                return [CrtpPacket(Port.MEM, MEM_INFO, bytes([MEM_INFO_VER, 1]))]
            if data[0] == MEM_INFO_DETAILS and len(data) >= 2:
                return [CrtpPacket(Port.MEM, MEM_INFO, data[:2])]
            return None
        if ch in (MEM_READ, MEM_WRITE) and len(data) >= 5:
            return [CrtpPacket(Port.MEM, ch, data[:5] + bytes([MEM_ENOENT]))]
        return None

    def _rpyt(self, ch: int, data: bytes) -> Replies | None:
        if ch != 0 or len(data) < 14:
            return None
        locked = self.onboard.rpyt_thrust_lock(struct.unpack_from("<H", data, 12)[0])
        sp = decode_rpyt(data, locked)
        if sp is None:
            return None
        self.onboard.on_setpoint(sp, self.now_s)
        return []

    def _generic(self, ch: int, data: bytes) -> Replies | None:
        if ch == 0:
            sp = decode_generic(data)
            if sp is None:
                return None
            self.onboard.on_setpoint(sp, self.now_s)
            return []
        if ch == 1:
            remain = decode_meta(data)
            if remain is None:
                return None
            self.onboard.on_notify_stop(remain, self.now_s)
            return []
        return None

    def _high_level(self, ch: int, data: bytes) -> Replies | None:
        cmd = decode_high_level(data) if ch == 0 else None
        if cmd is None:
            return None
        if self.onboard.on_high_level(cmd, self.swarm.estimate(self.index), self.now_s):
            return []
        return None

    def _supervisor(self, ch: int, data: bytes) -> Replies | None:
        if not data:
            return None
        if ch == SUPERVISOR_INFO and data[0] == SUP_GET_STATE:
            bits = self.swarm.telemetry[self.index].supervisor_info
            return [CrtpPacket(Port.SUPERVISOR, SUPERVISOR_INFO,
                               bytes([0x80 | SUP_GET_STATE]) + struct.pack("<H", bits))]
        if ch != SUPERVISOR_COMMAND:
            return None
        cmd = data[0]
        if cmd == SUP_ARM and len(data) >= 2:
            armed = self.onboard.arm(bool(data[1]))
            ok = armed == bool(data[1])
            return [CrtpPacket(Port.SUPERVISOR, SUPERVISOR_COMMAND,
                               bytes([0x80 | SUP_ARM, ok, armed]))]
        if cmd == SUP_RECOVER:
            ok = self.onboard.recover(self.swarm.estimate(self.index))
            return [CrtpPacket(Port.SUPERVISOR, SUPERVISOR_COMMAND,
                               bytes([0x80 | SUP_RECOVER, ok, ok]))]
        if cmd == SUP_ESTOP:
            self._emergency()
            return []
        if cmd == SUP_ESTOP_WATCHDOG:
            self.onboard.emergency_watchdog(self.now_s)
            return []
        return None

    def _localization(self, ch: int, data: bytes) -> Replies | None:
        if ch == LOC_POSITION:
            return [] if len(data) >= 12 else None  # external position: estimate is simulated
        if ch != LOC_GENERIC or not data:
            return None
        if data[0] == LOC_EMERGENCY_STOP:
            self._emergency()
        elif data[0] == LOC_EMERGENCY_STOP_WATCHDOG:
            self.onboard.emergency_watchdog(self.now_s)
        return []

    def _emergency(self) -> None:
        if not self.onboard.locked:
            self.print("SUP: emergency stop, motors locked\n")
        self.onboard.emergency_stop()
