"""Fast plain-CDR (XCDR1, little-endian) encoding and decoding of the graph's ROS messages.

Cyclone DDS's Python binding serialises a sample by walking its type field by field in Python:
about 125 us for one ``nav_msgs/Odometry`` on this machine, which made serialisation the
largest single cost of the node graph (the bridge writes two messages per drone per tick, every
robot decodes every neighbour's odometry). The graph's messages are made of numbers, fixed-size
arrays of numbers, nested structs, strings and sequences of strings or structs. For those types
this module compiles the layout once into :mod:`struct` formats, so a sample is packed or
unpacked with one ``struct`` call per run of numbers (one for a whole sequence of all-float64
structs such as ``sensor_msgs/MultiDOFJointState``'s transforms).

The bytes are those of the binding's own serialiser (the 4-byte encapsulation header
``00 01 00 00``, XCDR1 alignment relative to the end of that header, at most 8, padded to a
multiple of 4 as ``DataWriter.write`` pads), which ``tests/test_cdr_codec.py`` checks byte for
byte on random messages of every type the nodes send. Other field types (bounded strings,
sequences of sequences, unions), other encodings and big-endian data are not handled here:
:func:`codec_for` returns None or :meth:`Codec.decode` raises :class:`NotPlainCdr`, and the
transport uses the binding's generic path for them.
"""
from __future__ import annotations

import struct
import typing
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any, Callable, Sequence

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, sequence

HEADER = b"\x00\x01\x00\x00"
"""Encapsulation header of plain CDR, little-endian (CDR_LE)."""

_SCALARS = {"int32": "i", "uint32": "I", "float64": "d", "float32": "f", "int64": "q",
            "uint64": "Q", "int16": "h", "uint16": "H", "int8": "b", "uint8": "B",
            "byte": "B"}
"""IDL scalar annotation -> struct code (sizes are struct's standard sizes under '<')."""

_MAX_ALIGN = 8
"""XCDR1 aligns each primitive to its size, up to 8 bytes."""


class NotPlainCdr(ValueError):
    """The bytes are not a little-endian plain-CDR sample of the codec's type."""


@dataclass(frozen=True)
class _Leaf:
    path: str
    """Dotted attribute path from the message root (``pose.pose.position.x``)."""
    code: str
    """struct code of one number, ``"s"`` a string, ``"strs"`` / ``"seq"`` a sequence."""
    count: int = 0
    """Elements of a fixed-size array; 0 for a scalar or a string."""
    element: type | None = None
    """For a sequence of structs (``code`` ``"seq"``; ``"strs"`` is a sequence of strings): the
    element type, all of whose fields are float64 (Transform, Twist, Point, ...)."""


def _leaves(cls: type, prefix: str = "") -> list[_Leaf] | None:
    """The leaves of ``cls`` in wire order, or None if it has a field this codec cannot do."""
    out: list[_Leaf] = []
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        path = f"{prefix}{name}"
        if hint is str:
            out.append(_Leaf(path, "s"))
        elif isinstance(hint, type) and issubclass(hint, IdlStruct):
            inner = _leaves(hint, path + ".")
            if inner is None:
                return None
            out.extend(inner)
        elif _scalar_code(hint) is not None:
            out.append(_Leaf(path, _scalar_code(hint)))
        elif _sequence_of(hint) is not None:
            inner_type = _sequence_of(hint)
            if inner_type is str:
                out.append(_Leaf(path, "strs"))
            elif _doubles(inner_type):
                out.append(_Leaf(path, "seq", _doubles(inner_type), inner_type))
            elif isinstance(inner_type, type) and codec_for(inner_type) is not None:
                out.append(_Leaf(path, "structs", 0, inner_type))
            else:
                return None
        else:
            meta = getattr(hint, "__metadata__", ())
            length = getattr(meta[0], "length", None) if meta else None
            code = _scalar_code(getattr(meta[0], "subtype", None)) if meta else None
            if not (meta and isinstance(meta[0], array) and isinstance(length, int)
                    and code is not None):
                return None  # sequences, bounded strings, unions, enums
            out.append(_Leaf(path, code, length))
    return out


def _sequence_of(hint: Any) -> Any:
    """The element type of an unbounded ``sequence[...]`` annotation, else None."""
    meta = getattr(hint, "__metadata__", ())
    if meta and isinstance(meta[0], sequence) and meta[0].max_length is None:
        return meta[0].subtype
    return None


def _doubles(cls: Any) -> int:
    """How many float64 a struct is made of, if nothing else (Vector3: 3, Transform: 7), else 0."""
    if not (isinstance(cls, type) and issubclass(cls, IdlStruct)):
        return 0
    leaves = _leaves(cls)
    if not leaves or any(leaf.code != "d" for leaf in leaves):
        return 0
    return sum(max(leaf.count, 1) for leaf in leaves)


def _scalar_code(hint: Any) -> str | None:
    meta = getattr(hint, "__metadata__", None)
    if meta and isinstance(meta[0], str):
        return _SCALARS.get(meta[0])
    return None


@dataclass(frozen=True)
class _Run:
    """Consecutive numeric leaves: packed with one struct call."""

    codes: tuple[tuple[str, int], ...]
    """(struct code, element count) per leaf; count 1 for a scalar."""

    def __post_init__(self) -> None:
        # compiled once: a struct for each start offset modulo 8, and the run's alignment
        object.__setattr__(self, "_structs", tuple(_run_struct(self.codes, start)
                                                   for start in range(_MAX_ALIGN)))
        object.__setattr__(self, "_align", min(struct.calcsize(self.codes[0][0]), _MAX_ALIGN))

    def fmt(self, offset: int) -> struct.Struct:
        """The run's struct when it starts ``offset`` bytes into the stream."""
        return self._structs[offset % _MAX_ALIGN]

    def align(self) -> int:
        """Bytes the run's first number aligns to."""
        return self._align


@lru_cache(maxsize=None)
def _run_struct(codes: tuple[tuple[str, int], ...], start_mod: int) -> struct.Struct:
    """The struct of a run that starts ``start_mod`` bytes past an 8-byte boundary, with
    XCDR1's padding written as pad bytes (``x``)."""
    parts, off = ["<"], start_mod
    for code, count in codes:
        size = struct.calcsize(code)
        pad = -off % min(size, _MAX_ALIGN)
        parts.append(f"{pad}x" if pad else "")
        parts.append(f"{count}{code}")
        off += pad + size * count
    return struct.Struct("".join(parts))


class Codec:
    """Encoder and decoder of one message type (see the module docstring).

    The leaves are grouped into segments in wire order: a run of numbers (one struct call), a
    string, a sequence of strings, or a sequence of all-float64 structs (one struct call for
    every element's numbers).
    """

    def __init__(self, msg_type: type, leaves: list[_Leaf]) -> None:
        self.msg_type = msg_type
        self._get: Callable[[Any], tuple] = attrgetter(*(leaf.path for leaf in leaves))
        self._single = len(leaves) == 1
        self._arrays = tuple(leaf.code in _NUMBER_CODES and leaf.count > 0 for leaf in leaves)
        self._has_arrays = any(self._arrays)
        self._segments: list[tuple] = []
        """(kind, values consumed, payload): ``run`` with a :class:`_Run`, ``str``,
        ``strs`` or ``seq`` with (doubles per element, element getter, element builder)."""
        for leaf in leaves:
            if leaf.code == "s":
                self._segments.append(("str", 1, None))
            elif leaf.code == "strs":
                self._segments.append(("strs", 1, None))
            elif leaf.code == "structs":
                self._segments.append(("structs", 1, codec_for(leaf.element)))
            elif leaf.code == "seq":
                names = [el.path for el in _leaves(leaf.element)]
                self._segments.append(("seq", 1, (leaf.count, attrgetter(*names),
                                                  _flat_builder(leaf.element)[0])))
            else:
                n = max(leaf.count, 1)
                if self._segments and self._segments[-1][0] == "run":
                    _, size, run = self._segments[-1]
                    self._segments[-1] = ("run", size + n, _Run(run.codes + ((leaf.code, n),)))
                else:
                    self._segments.append(("run", n, _Run(((leaf.code, n),))))
        self._build = _builder(msg_type)

    # --- encoding ----------------------------------------------------------------------------

    def encode(self, msg: Any) -> bytes:
        """The sample's bytes as ``DataWriter.write`` sends them (header included)."""
        out = bytearray(HEADER)
        self._encode_into(out, msg)
        out += b"\0" * (-len(out) % 4)
        return bytes(out)

    def _encode_into(self, out: bytearray, msg: Any) -> None:
        """Append ``msg`` to ``out``, aligned relative to the end of the header (XCDR1 aligns
        every primitive to the stream, however deep it is nested)."""
        got = self._get(msg)
        values: Sequence[Any] = (got,) if self._single else got
        if self._has_arrays:  # fixed-size arrays: their elements in line
            values = [v for value, is_array in zip(values, self._arrays)
                      for v in (value if is_array else (value,))]
        i = 0
        for kind, n, payload in self._segments:
            if kind == "run":
                out += b"\0" * (-(len(out) - 4) % payload.align())
                out += payload.fmt(len(out) - 4).pack(*values[i:i + n])
            elif kind == "str":
                put_string(out, values[i])
            elif kind == "strs":
                put_count(out, len(values[i]))
                for text in values[i]:
                    put_string(out, text)
            elif kind == "structs":
                put_count(out, len(values[i]))
                for item in values[i]:
                    payload._encode_into(out, item)
            else:
                per, get, _ = payload
                items = values[i]
                put_count(out, len(items))
                if items:
                    out += b"\0" * (-(len(out) - 4) % 8)
                    flat = [v for item in items for v in get(item)] if per > 1 else [
                        get(item) for item in items]
                    out += struct.pack(f"<{per * len(items)}d", *flat)
            i += n

    # --- decoding ----------------------------------------------------------------------------

    def decode(self, data: bytes) -> Any:
        """A sample from its bytes (header included); :class:`NotPlainCdr` if they are not a
        little-endian plain-CDR sample of this type (too short, other encoding)."""
        if len(data) < 4 or data[:2] != HEADER[:2]:
            raise NotPlainCdr(f"{self.msg_type.__name__}: encapsulation {bytes(data[:2])!r} "
                              "is not plain CDR little-endian")
        try:
            return self._decode_from(data, 4)[0]
        except (struct.error, UnicodeDecodeError) as exc:
            raise NotPlainCdr(f"{self.msg_type.__name__}: {exc}") from None

    def decode_flat(self, data: bytes) -> list[Any]:
        """The sample's leaf values in wire order, without building the message: numbers,
        strings and lists of strings as :meth:`decode` reads them, and each sequence of
        all-float64 structs as one float64 array (count, numbers per element), the same
        numbers as the structs' fields. Raises :class:`NotPlainCdr` as :meth:`decode` does.
        For hot paths that want arrays, not objects (``/swarm/state``: no 6 N objects)."""
        if len(data) < 4 or data[:2] != HEADER[:2]:
            raise NotPlainCdr(f"{self.msg_type.__name__}: encapsulation {bytes(data[:2])!r} "
                              "is not plain CDR little-endian")
        try:
            return self._decode_from(data, 4, leaves=True)[0]
        except (struct.error, UnicodeDecodeError, ValueError) as exc:  # ValueError: numpy's
            if isinstance(exc, NotPlainCdr):
                raise
            raise NotPlainCdr(f"{self.msg_type.__name__}: {exc}") from None

    def _decode_from(self, data: bytes, pos: int, leaves: bool = False) -> tuple[Any, int]:
        """The sample that starts at byte ``pos`` of ``data``, and the byte after it;
        ``leaves``: its leaf values instead (see :meth:`decode_flat`)."""
        values: list[Any] = []
        for kind, _, payload in self._segments:
            if kind == "run":
                pos += -(pos - 4) % payload.align()
                fmt = payload.fmt(pos - 4)
                values.extend(fmt.unpack_from(data, pos))
                pos += fmt.size
            elif kind == "str":
                text, pos = self._string(data, pos)
                values.append(text)
            elif kind in ("strs", "structs"):
                read = self._string if kind == "strs" else payload._decode_from
                count, pos = self._count(data, pos, 5 if kind == "strs" else 1)
                items = []
                for _ in range(count):
                    item, pos = read(data, pos)
                    items.append(item)
                values.append(items)
            else:
                per, _, build = payload
                count, pos = self._count(data, pos, 8 * per)
                if leaves:
                    if count:
                        pos += -(pos - 4) % 8
                    values.append(np.frombuffer(data, "<f8", per * count, pos).reshape(
                        count, per))
                    pos += 8 * per * count
                elif count:
                    pos += -(pos - 4) % 8
                    flat = struct.unpack_from(f"<{per * count}d", data, pos)
                    pos += 8 * per * count
                    values.append([build(flat, start) for start in range(0, per * count, per)])
                else:
                    values.append([])
        return (values if leaves else self._build(iter(values))), pos

    def _count(self, data: bytes, pos: int, min_item_bytes: int) -> tuple[int, int]:
        """A sequence length at ``pos`` (aligned to 4 first), checked against the bytes left."""
        pos += -(pos - 4) % 4
        (count,) = struct.unpack_from("<I", data, pos)
        if count * min_item_bytes > len(data) - pos - 4:
            raise NotPlainCdr(f"{self.msg_type.__name__}: sequence of {count} at byte {pos} "
                              "is longer than the sample")
        return count, pos + 4

    def _string(self, data: bytes, pos: int) -> tuple[str, int]:
        pos += -(pos - 4) % 4
        (length,) = struct.unpack_from("<I", data, pos)
        end = pos + 4 + length
        if length < 1 or end > len(data) or data[end - 1] != 0:
            raise NotPlainCdr(f"{self.msg_type.__name__}: bad string at byte {pos}")
        return bytes(data[pos + 4:end - 1]).decode("utf-8"), end


_NUMBER_CODES = frozenset(_SCALARS.values())


def put_count(out: bytearray, count: int) -> None:
    out += b"\0" * (-(len(out) - 4) % 4) + struct.pack("<I", count)


def put_string(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8") + b"\0"
    out += b"\0" * (-(len(out) - 4) % 4) + struct.pack("<I", len(raw)) + raw


def _builder(cls: type) -> Callable[[Any], Any]:
    """A function that builds a ``cls`` from an iterator over its flattened leaf values (a
    sequence field takes one value: the list)."""
    parts: list[Callable[[Any], Any]] = []
    for hint in typing.get_type_hints(cls, include_extras=True).values():
        if isinstance(hint, type) and issubclass(hint, IdlStruct):
            parts.append(_builder(hint))
        else:
            meta = getattr(hint, "__metadata__", ())
            if meta and isinstance(meta[0], array):
                parts.append(lambda it, n=meta[0].length: [next(it) for _ in range(n)])
            else:
                parts.append(next)
    return lambda it: cls(*[part(it) for part in parts])


def _flat_builder(cls: type) -> tuple[Callable[[tuple, int], Any], int]:
    """A function that builds a ``cls`` made of numbers only (a sequence element: Transform,
    Twist, ...) from a flat tuple of its values in wire order and the index of its first,
    and how many values it takes: :func:`_builder`'s object, without an iterator."""
    hints = list(typing.get_type_hints(cls, include_extras=True).values())
    if not any(isinstance(h, type) and issubclass(h, IdlStruct) or _is_array(h) for h in hints):
        width = len(hints)  # scalars only (Vector3, Quaternion): one slice
        return (lambda values, start: cls(*values[start:start + width])), width
    parts: list[tuple[Callable[[tuple, int], Any], int]] = []
    width = 0
    for hint in hints:
        if isinstance(hint, type) and issubclass(hint, IdlStruct):
            part, size = _flat_builder(hint)
        elif _is_array(hint):
            part, size = _array_part(hint.__metadata__[0].length)
        else:
            part, size = _scalar_part, 1
        parts.append((part, width))
        width += size
    return (lambda values, start: cls(*[part(values, start + offset)
                                        for part, offset in parts])), width


def _scalar_part(values: tuple, start: int) -> Any:
    return values[start]


def _array_part(length: int) -> tuple[Callable[[tuple, int], list], int]:
    """A fixed-size array field's builder (a list, as :func:`_builder` gives) and width."""
    return (lambda values, start: list(values[start:start + length])), length


def _is_array(hint: Any) -> bool:
    meta = getattr(hint, "__metadata__", ())
    return bool(meta) and isinstance(meta[0], array)


@lru_cache(maxsize=None)
def codec_for(msg_type: type) -> Codec | None:
    """The compiled codec of ``msg_type``, or None if it has a field this module does not
    encode (see the module docstring)."""
    leaves = _leaves(msg_type)
    return Codec(msg_type, leaves) if leaves else None
