"""The PARAM port: TOC, read, write and the misc channel (set by name, default values).

Replies as the firmware's ``param_logic.c`` does (TOC v2, 16-bit ids):
read ``id, status, value`` (status 0, or ENOENT with no value); write echoes ``id, value``
(the value now stored); set-by-name answers ``0, group NUL name NUL, error``.
"""
from __future__ import annotations

import errno
import struct

from sim.virtual_crazyflie.toc import PARAM_TYPES, Toc
from sim.virtual_crazyflie.variables import ParamVariable

CH_TOC, CH_READ, CH_WRITE, CH_MISC = 0, 1, 2, 3
MISC_SETBYNAME = 0
MISC_VALUE_UPDATED = 1
MISC_GET_EXTENDED_TYPE = 2
MISC_PERSISTENT_STORE = 3
MISC_PERSISTENT_GET_STATE = 4
MISC_PERSISTENT_CLEAR = 5
MISC_GET_DEFAULT_VALUE = 6
MISC_GET_EXTENDED_TYPE_V2 = 7
MISC_GET_DEFAULT_VALUE_V2 = 8


class ParamStore:
    """Parameter values of one drone, by full name ``group.name``."""

    def __init__(self, variables: list[ParamVariable]) -> None:
        self.variables = variables
        self.toc = Toc([v.entry for v in variables])
        self.values: dict[str, float] = {v.entry.full_name: v.default for v in variables}

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def set(self, ident: int, raw: bytes) -> bool:
        """Store the value packed in ``raw`` into parameter ``ident``; False if refused."""
        var = self.variables[ident]
        vt = var.value_type
        if var.read_only or len(raw) < vt.size:
            return False
        value = vt.unpack(raw)
        if not vt.integer and value != value:  # NaN is stored as the firmware stores it
            value = float("nan")
        self.values[var.entry.full_name] = value
        return True

    def packed(self, ident: int) -> bytes:
        var = self.variables[ident]
        return var.value_type.pack(self.values[var.entry.full_name])


class ParamService:
    """Answers PARAM-port packets for one :class:`ParamStore`."""

    def __init__(self, store: ParamStore) -> None:
        self.store = store

    def handle(self, channel: int, data: bytes) -> list[tuple[int, bytes]]:
        """Replies as ``(channel, payload)``; an empty list where the firmware stays silent."""
        if channel == CH_TOC:
            reply = self.store.toc.handle(data)
            return [] if reply is None else [(CH_TOC, reply)]
        if len(data) < 2:
            return []
        if channel == CH_READ:
            ident = data[0] | data[1] << 8
            if ident >= len(self.store.variables):
                return [(CH_READ, data[:2] + bytes([errno.ENOENT]))]
            return [(CH_READ, data[:2] + b"\0" + self.store.packed(ident))]
        if channel == CH_WRITE:
            ident = data[0] | data[1] << 8
            if ident >= len(self.store.variables):
                return [(CH_WRITE, data[:2] + bytes([errno.ENOENT]))]
            if not self.store.set(ident, data[2:]) and \
                    len(data) - 2 < self.store.variables[ident].value_type.size:
                return []
            return [(CH_WRITE, data[:2] + self.store.packed(ident))]
        return self._misc(data)

    def _misc(self, data: bytes) -> list[tuple[int, bytes]]:
        cmd = data[0]
        if cmd == MISC_SETBYNAME:
            return self._set_by_name(data)
        if len(data) < 3:
            return []
        ident = data[1] | data[2] << 8
        known = ident < len(self.store.variables)
        if cmd in (MISC_GET_DEFAULT_VALUE, MISC_GET_DEFAULT_VALUE_V2):
            if not known:
                return [(CH_MISC, data[:3] + bytes([errno.ENOENT]))]
            var = self.store.variables[ident]
            value = var.value_type.pack(var.default)
            status = b"\0" if cmd == MISC_GET_DEFAULT_VALUE_V2 else b""
            return [(CH_MISC, data[:3] + status + value)]
        if cmd in (MISC_GET_EXTENDED_TYPE, MISC_GET_EXTENDED_TYPE_V2,
                   MISC_PERSISTENT_STORE, MISC_PERSISTENT_GET_STATE, MISC_PERSISTENT_CLEAR):
            # No emulated parameter is extended or persistent.
            return [(CH_MISC, data[:3] + bytes([errno.ENOENT]))]
        return []

    def _set_by_name(self, data: bytes) -> list[tuple[int, bytes]]:
        parts = data[1:].split(b"\0", 2)
        if len(parts) < 3 or not parts[2]:
            return []
        group, name, rest = parts
        naming = group + b"\0" + name + b"\0"
        full = f"{group.decode('latin-1')}.{name.decode('latin-1')}"
        ident = self.store.toc.index.get(full)
        if ident is None:
            return [(CH_MISC, bytes([MISC_SETBYNAME]) + naming + bytes([errno.ENOENT]))]
        var = self.store.variables[ident]
        type_id = rest[0]
        if type_id not in PARAM_TYPES or PARAM_TYPES[type_id] != var.value_type:
            return [(CH_MISC, bytes([MISC_SETBYNAME]) + naming + bytes([errno.EINVAL]))]
        if var.read_only:
            return [(CH_MISC, bytes([MISC_SETBYNAME]) + naming + bytes([errno.EACCES]))]
        if not self.store.set(ident, rest[1:]):
            return [(CH_MISC, bytes([MISC_SETBYNAME]) + naming + bytes([errno.EINVAL]))]
        updated = struct.pack("<BH", MISC_VALUE_UPDATED, ident) + self.store.packed(ident)
        return [(CH_MISC, bytes([MISC_SETBYNAME]) + naming + b"\0"), (CH_MISC, updated)]
