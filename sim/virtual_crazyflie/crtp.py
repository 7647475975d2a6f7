"""CRTP framing as cflib's UDP driver carries it: one packet per datagram.

Byte 0 is the header ``port << 4 | 0b11 << 2 | channel`` (the two link bits are ignored on
receive, as the firmware ignores them); bytes 1..30 are the payload. A datagram that is empty
or longer than 31 bytes is not a CRTP packet and is dropped.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_PAYLOAD = 30
NULL_HEADER = 0xFF
"""A header byte of 0xFF is the link layer's null packet (cflib's scan probe)."""


class Port(enum.IntEnum):
    CONSOLE = 0
    PARAM = 2
    COMMANDER = 3
    MEM = 4
    LOG = 5
    LOCALIZATION = 6
    GENERIC_SETPOINT = 7
    HIGH_LEVEL = 8
    SUPERVISOR = 9
    PLATFORM = 13
    LINKCTRL = 15


@dataclass(frozen=True)
class CrtpPacket:
    port: int
    channel: int
    data: bytes = b""

    @property
    def header(self) -> int:
        return ((self.port & 0x0F) << 4) | (0x3 << 2) | (self.channel & 0x03)

    def to_bytes(self) -> bytes:
        if len(self.data) > MAX_PAYLOAD:
            raise ValueError(f"CRTP payload is {len(self.data)} bytes, at most {MAX_PAYLOAD}")
        return bytes([self.header]) + bytes(self.data)

    @classmethod
    def from_bytes(cls, datagram: bytes) -> "CrtpPacket | None":
        """The packet in ``datagram``, or None if it is not one (empty or too long)."""
        if not 1 <= len(datagram) <= MAX_PAYLOAD + 1:
            return None
        header = datagram[0]
        return cls((header >> 4) & 0x0F, header & 0x03, bytes(datagram[1:]))


def is_null(datagram: bytes) -> bool:
    """True for the link layer's null packet (header 0xFF, as cflib's scan sends)."""
    return len(datagram) >= 1 and datagram[0] == NULL_HEADER
