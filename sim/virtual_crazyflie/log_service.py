"""The LOG port: TOC, log blocks (create, append, start, stop, delete, reset) and log data.

Control replies are ``cmd, block id, error`` as in the firmware's ``log.c``: 0 on success,
EEXIST (block id in use), ENOMEM (more than 16 blocks or 128 variables), ENOENT (no such block
or variable), E2BIG (values would not fit one 26-byte data packet), EINVAL (unknown type),
ENOEXEC (unknown command). Data packets: ``block id, 24-bit timestamp (ms), values``.
"""
from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from sim.virtual_crazyflie.toc import LOG_TYPES, Toc, ValueType
from sim.virtual_crazyflie.variables import LogVariable, Telemetry

CH_TOC, CH_SETTINGS, CH_DATA = 0, 1, 2
CREATE, APPEND, DELETE, START, STOP, RESET = 0, 1, 2, 3, 4, 5
CREATE_V2, APPEND_V2, START_V2 = 6, 7, 8
MAX_BLOCKS = 16
MAX_OPS = 128
MAX_DATA = 26


@dataclass
class LogBlock:
    ident: int
    ops: list[tuple[int, ValueType]] = field(default_factory=list)
    """(log variable index, type it is sent as)."""
    period_ms: int = 0
    started: bool = False
    next_due_ms: float = 0.0

    @property
    def size(self) -> int:
        return sum(t.size for _, t in self.ops)


class LogService:
    """Log blocks of one drone and the data packets they are due to send."""

    def __init__(self, variables: list[LogVariable]) -> None:
        self.variables = variables
        self.toc = Toc([v.entry for v in variables],
                       info_extra=bytes([MAX_BLOCKS, MAX_OPS]))
        self.blocks: dict[int, LogBlock] = {}
        self._handlers: dict[int, Callable[[bytes, float], int]] = {
            CREATE: lambda d, t: self._create(d, 1), CREATE_V2: lambda d, t: self._create(d, 2),
            APPEND: lambda d, t: self._append(d, 1), APPEND_V2: lambda d, t: self._append(d, 2),
            DELETE: lambda d, t: self._delete(d), STOP: lambda d, t: self._stop(d),
            START: lambda d, t: self._start(d, 1, t), START_V2: lambda d, t: self._start(d, 2, t),
            RESET: lambda d, t: self._reset(),
        }
        self._single_shots: list[int] = []

    def handle(self, channel: int, data: bytes, now_ms: float) -> list[tuple[int, bytes]]:
        """Replies as ``(channel, payload)`` to one LOG-port packet."""
        if channel == CH_TOC:
            reply = self.toc.handle(data)
            return [] if reply is None else [(CH_TOC, reply)]
        if channel != CH_SETTINGS or not data:
            return []
        cmd = data[0]
        block_id = data[1] if len(data) > 1 else 0
        handler = self._handlers.get(cmd)
        ret = errno.ENOEXEC if handler is None else handler(data, now_ms)
        return [(CH_SETTINGS, bytes([cmd, block_id, ret]))]

    def _ops(self, payload: bytes, version: int) -> list[tuple[int, ValueType]] | int:
        width = 2 if version == 2 else 1
        step = 1 + width
        ops = []
        for k in range(0, len(payload) - step + 1, step):
            type_byte = payload[k]
            ident = payload[k + 1] | (payload[k + 2] << 8 if width == 2 else 0)
            fetch = LOG_TYPES.get(type_byte & 0x0F)
            if ident >= len(self.variables) or (width == 1 and ident == 0xFF):
                return errno.ENOENT  # raw-memory variables are not emulated either
            if fetch is None:
                return errno.EINVAL
            ops.append((ident, fetch))
        return ops

    def _total_ops(self) -> int:
        return sum(len(b.ops) for b in self.blocks.values())

    def _create(self, data: bytes, version: int) -> int:
        if len(data) < 2:
            return errno.EINVAL
        ident = data[1]
        if ident in self.blocks:
            return errno.EEXIST
        if len(self.blocks) >= MAX_BLOCKS:
            return errno.ENOMEM
        ops = self._ops(data[2:], version)
        if isinstance(ops, int):
            return ops
        if self._total_ops() + len(ops) > MAX_OPS:
            return errno.ENOMEM
        block = LogBlock(ident, ops)
        if block.size > MAX_DATA:
            return errno.E2BIG
        self.blocks[ident] = block
        return 0

    def _append(self, data: bytes, version: int) -> int:
        block = self.blocks.get(data[1]) if len(data) >= 2 else None
        if block is None:
            return errno.ENOENT
        ops = self._ops(data[2:], version)
        if isinstance(ops, int):
            return ops
        if self._total_ops() + len(ops) > MAX_OPS:
            return errno.ENOMEM
        if block.size + sum(t.size for _, t in ops) > MAX_DATA:
            return errno.E2BIG
        block.ops += ops
        return 0

    def _delete(self, data: bytes) -> int:
        if len(data) < 2 or self.blocks.pop(data[1], None) is None:
            return errno.ENOENT
        return 0

    def _start(self, data: bytes, version: int, now_ms: float) -> int:
        need = 4 if version == 2 else 3
        block = self.blocks.get(data[1]) if len(data) >= need else None
        if block is None:
            return errno.ENOENT
        period = data[2] | data[3] << 8 if version == 2 else data[2] * 10
        if period <= 0:
            self._single_shots.append(block.ident)
            return 0
        block.period_ms, block.started, block.next_due_ms = period, True, now_ms + period
        return 0

    def _stop(self, data: bytes) -> int:
        block = self.blocks.get(data[1]) if len(data) >= 2 else None
        if block is None:
            return errno.ENOENT
        block.started = False
        return 0

    def _reset(self) -> int:
        self.blocks.clear()
        self._single_shots.clear()
        return 0

    def next_due_ms(self) -> float:
        due = [b.next_due_ms for b in self.blocks.values() if b.started]
        return min(due) if due else float("inf")

    def due_packets(self, now_ms: float, telemetry: Telemetry) -> list[tuple[int, bytes]]:
        """Data packets of every block due at ``now_ms``; advances their schedules."""
        out = []
        for ident in self._single_shots:
            if ident in self.blocks:
                out.append((CH_DATA, self._data(self.blocks[ident], now_ms, telemetry)))
        self._single_shots.clear()
        for block in self.blocks.values():
            if block.started and now_ms >= block.next_due_ms:
                out.append((CH_DATA, self._data(block, now_ms, telemetry)))
                block.next_due_ms += block.period_ms
                if block.next_due_ms < now_ms:  # fell behind: do not send a burst
                    block.next_due_ms = now_ms + block.period_ms
        return out

    def _data(self, block: LogBlock, now_ms: float, telemetry: Telemetry) -> bytes:
        stamp = int(now_ms) & 0xFFFFFF
        values = b"".join(fetch.pack(float(self.variables[i].read(telemetry)))
                          for i, fetch in block.ops)
        return bytes([block.ident]) + struct.pack("<I", stamp)[:3] + values
