"""Byte layouts: every wire header and message is defined once, here-style.

A `Layout` is an ordered list of fixed-size fields.  The same object packs and
unpacks (refmodel, fast engine, tests) and describes byte offsets for the
gateware (hdl builds its `data.StructLayout`s from `Layout.fields`), so the wire
format is never written twice.

Field kinds:
  'u'  unsigned big-endian integer of 1, 2, 4, 6 or 8 bytes (network order)
  'a'  alpha: ASCII, left-justified, padded with spaces on the right
  'c'  one-byte code, carried as a one-character str

Alpha and code values are Python `str` decoded as latin-1, so every byte value
round-trips exactly (order tokens may hold any byte).
"""

from __future__ import annotations

import struct
from collections import namedtuple
from typing import NamedTuple


class Field(NamedTuple):
    name: str
    kind: str
    size: int
    offset: int


_INT_CODES = {1: "B", 2: "H", 4: "I", 6: "HI", 8: "Q"}


class Layout:
    """A fixed-size record on the wire.

    `type_code`, when given, is the one-byte message type that starts the
    record; it is packed and checked automatically and is not a record field.
    """

    def __init__(self, name: str, fields, *, type_code: str | None = None):
        self.name = name
        self.type_code = type_code
        offset = 0
        all_fields = []
        if type_code is not None:
            all_fields.append(Field("type", "c", 1, 0))
            offset = 1
        for fname, kind, size in fields:
            if kind == "u" and size not in _INT_CODES:
                raise ValueError(f"{name}.{fname}: unsupported integer size {size}")
            if kind == "c" and size != 1:
                raise ValueError(f"{name}.{fname}: code fields are one byte")
            if kind not in "uac":
                raise ValueError(f"{name}.{fname}: unknown kind {kind!r}")
            all_fields.append(Field(fname, kind, size, offset))
            offset += size
        self.all_fields = tuple(all_fields)
        self.fields = tuple(f for f in all_fields if f.name != "type" or type_code is None)
        self.size = offset
        self.record = namedtuple(name, [f.name for f in self.fields])
        self.record.layout = self
        self._struct = struct.Struct(">" + "".join(
            _INT_CODES[f.size] if f.kind == "u" else f"{f.size}s" for f in all_fields))
        self._type_byte = type_code.encode("latin-1") if type_code is not None else None
        self._text_fields = tuple((i, f.size) for i, f in enumerate(self.fields) if f.kind != "u")
        self._wide_fields = tuple(i for i, f in enumerate(self.fields)
                                  if f.kind == "u" and f.size == 6)
        self._wide_raw = tuple(i + k for k, i in enumerate(self._wide_fields))  # unpacked H + I

    def __repr__(self):
        return f"Layout({self.name}, {self.size} bytes)"

    def field(self, name: str) -> Field:
        for f in self.all_fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def pack(self, rec) -> bytes:
        """Pack a record (or any sequence in field order) into exactly `size` bytes."""
        args = list(rec)
        for i, size in self._text_fields:
            b = args[i].encode("latin-1")
            if len(b) > size:
                raise ValueError(f"{self.name}.{self.fields[i].name}={args[i]!r} "
                                 f"longer than {size} bytes")
            args[i] = b.ljust(size, b" ")
        for i in reversed(self._wide_fields):       # 6-byte integers travel as H + I
            v = args[i]
            if v >> 48:
                raise ValueError(f"{self.name}.{self.fields[i].name}={v} does not fit 6 bytes")
            args[i:i + 1] = (v >> 32, v & 0xFFFFFFFF)
        if self._type_byte is not None:
            args.insert(0, self._type_byte)
        try:
            return self._struct.pack(*args)
        except struct.error as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    def build(self, **values) -> bytes:
        """Pack from keyword arguments (every field required)."""
        return self.pack(self.record(**values))

    def unpack(self, buf, offset: int = 0):
        """Unpack `size` bytes at `offset` into a record (length checked by caller)."""
        raw = list(self._struct.unpack_from(buf, offset))
        if self._type_byte is not None:
            del raw[0]
        for i in reversed(self._wide_raw):
            raw[i:i + 2] = ((raw[i] << 32) | raw[i + 1],)
        for i, _ in self._text_fields:
            raw[i] = raw[i].decode("latin-1")
        return self.record._make(raw)


def layouts_by_type(*layouts: Layout) -> dict[str, Layout]:
    """Index message layouts by their type code; codes must be unique."""
    table: dict[str, Layout] = {}
    for lay in layouts:
        if lay.type_code in table:
            raise ValueError(f"type code {lay.type_code!r} defined twice")
        table[lay.type_code] = lay
    return table


def to_json_value(field: Field, value):
    """A JSON-friendly rendering: alpha fields right-stripped of padding."""
    if field.kind == "a":
        return value.rstrip(" ")
    return value
