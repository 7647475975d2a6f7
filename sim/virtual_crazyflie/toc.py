"""Value types and the table-of-contents (TOC) protocol shared by the LOG and PARAM ports.

A TOC is an ordered list of named variables. cflib asks for its size and CRC (``INFO``, or
``INFO_V2`` with 16-bit counts), then for each item (``ITEM`` / ``ITEM_V2``); the CRC keys
cflib's TOC cache, so it must change whenever an item does. Item payload:
``cmd, id (1 or 2 bytes LE), type byte, group NUL name NUL``.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

CMD_ITEM_V1 = 0
CMD_INFO_V1 = 1
CMD_ITEM_V2 = 2
CMD_INFO_V2 = 3


@dataclass(frozen=True)
class ValueType:
    name: str
    code: str
    """struct format character (little endian)."""
    integer: bool

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.code)

    def pack(self, value: float) -> bytes:
        """``value`` as the firmware would store it in this type: integers truncate towards
        zero and saturate; FP16 saturates at +-65504; NaN becomes 0 in integer types."""
        if self.integer:
            if not math.isfinite(value):
                value = 0 if math.isnan(value) else value
            lo, hi = _int_range(self.code)
            v = int(max(min(value, hi), lo)) if math.isfinite(value) else (hi if value > 0
                                                                              else lo)
            return struct.pack("<" + self.code, v)
        if self.code == "e" and math.isfinite(value):
            value = max(min(value, 65504.0), -65504.0)
        return struct.pack("<" + self.code, value)

    def unpack(self, raw: bytes) -> float | int:
        return struct.unpack("<" + self.code, raw[:self.size])[0]


def _int_range(code: str) -> tuple[int, int]:
    bits = 8 * struct.calcsize(code)
    if code.islower():
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


LOG_TYPES: dict[int, ValueType] = {
    1: ValueType("uint8_t", "B", True), 2: ValueType("uint16_t", "H", True),
    3: ValueType("uint32_t", "I", True), 4: ValueType("int8_t", "b", True),
    5: ValueType("int16_t", "h", True), 6: ValueType("int32_t", "i", True),
    7: ValueType("float", "f", False), 8: ValueType("FP16", "e", False),
}
"""Log type ids as in the firmware's log.h (and cflib's ``LogTocElement.types``)."""

PARAM_TYPES: dict[int, ValueType] = {
    0x08: ValueType("uint8_t", "B", True), 0x09: ValueType("uint16_t", "H", True),
    0x0A: ValueType("uint32_t", "I", True), 0x0B: ValueType("uint64_t", "Q", True),
    0x00: ValueType("int8_t", "b", True), 0x01: ValueType("int16_t", "h", True),
    0x02: ValueType("int32_t", "i", True), 0x03: ValueType("int64_t", "q", True),
    0x05: ValueType("FP16", "e", False), 0x06: ValueType("float", "f", False),
    0x07: ValueType("double", "d", False),
}
"""Param type ids as in the firmware's param.h (and cflib's ``ParamTocElement.types``)."""
PARAM_READ_ONLY = 0x40


@dataclass(frozen=True)
class TocEntry:
    group: str
    name: str
    type_byte: int
    """The byte sent in the TOC item: type id, plus flags (param read-only 0x40)."""

    @property
    def full_name(self) -> str:
        return f"{self.group}.{self.name}"

    def naming(self) -> bytes:
        return self.group.encode("ascii") + b"\0" + self.name.encode("ascii") + b"\0"


class Toc:
    """An ordered TOC and its CRC; answers the TOC channel's requests."""

    MAX_NAMING_BYTES = 26
    """30-byte payload minus cmd, 16-bit id and type byte."""

    def __init__(self, entries: list[TocEntry], info_extra: bytes = b"") -> None:
        for e in entries:
            if len(e.naming()) > self.MAX_NAMING_BYTES:
                raise ValueError(f"TOC entry {e.full_name}: name too long for one packet")
        names = [e.full_name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError("TOC entries must have unique names")
        self.entries = entries
        self.info_extra = info_extra
        self.index = {e.full_name: i for i, e in enumerate(entries)}
        self.crc = zlib.crc32(b"".join(bytes([e.type_byte]) + e.naming() for e in entries))

    def __len__(self) -> int:
        return len(self.entries)

    def handle(self, data: bytes) -> bytes | None:
        """The reply payload to a TOC-channel request, or None for an unknown command."""
        if not data:
            return None
        cmd, n = data[0], len(self.entries)
        if cmd == CMD_INFO_V2:
            return struct.pack("<BHI", cmd, n, self.crc) + self.info_extra
        if cmd == CMD_INFO_V1:
            return struct.pack("<BBI", cmd, min(n, 255), self.crc) + self.info_extra
        if cmd == CMD_ITEM_V2:
            if len(data) < 3:
                return None
            ident = data[1] | data[2] << 8
            if ident >= n:
                return bytes([cmd])
            e = self.entries[ident]
            return struct.pack("<BHB", cmd, ident, e.type_byte) + e.naming()
        if cmd == CMD_ITEM_V1:
            if len(data) < 2:
                return None
            ident = data[1]
            if ident >= n:
                return bytes([cmd])
            e = self.entries[ident]
            return struct.pack("<BBB", cmd, ident, e.type_byte) + e.naming()
        return None
