"""Gateware shapes derived from refmodel's wire layouts, plus the stream payloads.

Every message and header layout comes from one place, `refmodel.layout.Layout`;
this module turns a `Layout` into an Amaranth `data.StructLayout` and gives the
two conversions between the struct and the bytes on the wire, so the wire
format is never written twice:

- `struct_layout(layout)`: one member per field (the type byte is not a field):
  integers as `unsigned(8 * size)` holding the numeric value, alpha fields as an
  array of bytes (element 0 first on the wire), code fields as one byte.
- `to_wire(layout, view)`: the record's bytes as a value whose byte ``i`` (bits
  ``8i .. 8i+7``) is wire byte ``i`` (integers big-endian, the type byte first).
- `from_wire(layout, value)`: the inverse, a read-only `data.View`.

Byte vectors throughout the gateware keep the same convention: byte ``i`` of a
beat or buffer row sits at bits ``8i .. 8i+7`` and is the ``i``-th byte on the wire.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, unsigned
from amaranth.lib import data, enum

from tickcore.refmodel import itch, moldudp64, ouch

BYTE = unsigned(8)
TS_BITS = 48          # time of day in ns (< 86 400e9 < 2**47): ITCH's 6-byte timestamp
TAG_BITS = 32         # inbound frame number, carried to every output it causes


def struct_layout(layout) -> data.StructLayout:
    members = {}
    for f in layout.fields:
        if f.kind == "u":
            members[f.name] = unsigned(8 * f.size)
        elif f.kind == "a":
            members[f.name] = data.ArrayLayout(BYTE, f.size)
        else:
            members[f.name] = BYTE
    return data.StructLayout(members)


def field_bytes(field, value) -> list:
    """The wire bytes (first first) of one field value (a View member)."""
    if field.kind == "u":
        v = value.as_value() if hasattr(value, "as_value") else value
        return [v[8 * (field.size - 1 - i):8 * (field.size - i)] for i in range(field.size)]
    if field.kind == "a":
        return [value[i] for i in range(field.size)]
    return [value]


def to_wire(layout, view):
    """Wire bytes of a record view, type byte included: a value of 8 * layout.size bits."""
    parts = []
    if layout.type_code is not None:
        parts.append(Const(ord(layout.type_code), 8))
    for f in layout.fields:
        parts.extend(field_bytes(f, view[f.name]))
    return Cat(*parts)


def from_wire(layout, wire):
    """A view of `struct_layout(layout)` over wire bytes (type byte included, not checked)."""
    parts = []
    for f in layout.fields:
        b = [wire[8 * (f.offset + i):8 * (f.offset + i + 1)] for i in range(f.size)]
        if f.kind == "u":
            parts.append(Cat(*reversed(b)))
        else:
            parts.extend(b)
    return data.View(struct_layout(layout), Cat(*parts))


def const_bytes(values: bytes):
    return Cat(*(Const(b, 8) for b in values))


def layouts_enum(name: str, layouts) -> type:
    """An `enum.Enum` over message layouts, in table order, member names = layout names."""
    bits = max(1, (len(layouts) - 1).bit_length())
    namespace = enum.EnumType.__prepare__(name, (enum.Enum,))
    for i, lay in enumerate(layouts):
        namespace[lay.name] = i
    return enum.EnumType(name, (enum.Enum,), namespace, shape=unsigned(bits))


def union_of(layouts) -> data.UnionLayout:
    return data.UnionLayout({lay.name: struct_layout(lay) for lay in layouts})


# -- message sets (from refmodel's tables) -------------------------------------

INBOUND_LAYOUTS = tuple(ouch.INBOUND.values())
OUCH_OUT_LAYOUTS = tuple(ouch.OUTBOUND.values())
ITCH_LAYOUTS = tuple(itch.MESSAGES.values())
MAX_INBOUND = max(lay.size for lay in INBOUND_LAYOUTS)            # 49 (Enter Order)
# what `Ingress` captures of each UDP payload on the fly, per slot: the MoldUDP64
# header, the first block's length and the first MAX_INBOUND bytes of its message
HEAD_BYTES = moldudp64.HEADER.size + 2 + MAX_INBOUND                # 71

InboundKind = layouts_enum("InboundKind", INBOUND_LAYOUTS)
OuchKind = layouts_enum("OuchKind", OUCH_OUT_LAYOUTS)
ItchKind = layouts_enum("ItchKind", ITCH_LAYOUTS)


# -- stream payloads -----------------------------------------------------------

def nbytes_shape(width: int):
    return unsigned(width.bit_length())


def frame_beat(width: int) -> data.StructLayout:
    """One beat of an Ethernet frame (no FCS): `width` bytes, `nbytes` of them valid
    (only the last beat may be partial), frame start/end flags, and the frame's
    ingress time of day and tag (meaningful on the first beat, held for the frame)."""
    return data.StructLayout({
        "data": data.ArrayLayout(BYTE, width),
        "nbytes": nbytes_shape(width),
        "first": 1,
        "last": 1,
        "ts": TS_BITS,
        "tag": TAG_BITS,
    })


def slot_shape(slots: int):
    return unsigned(max(1, (slots - 1).bit_length()))


def frame_desc(slots: int) -> data.StructLayout:
    """An inbound frame held in the ingress buffer: its slot, UDP payload length
    (bytes, from the IPv4 total length), time of day and tag."""
    return data.StructLayout({
        "slot": slot_shape(slots),
        "length": 16,
        "ts": TS_BITS,
        "tag": TAG_BITS,
    })


def inbound_block(session_bits: int) -> data.StructLayout:
    """One sequence-accepted MoldUDP64 message block: its length and its first
    MAX_INBOUND bytes (zero beyond the length), with the session and frame context."""
    return data.StructLayout({
        "session": unsigned(session_bits),
        "length": 16,
        "data": data.ArrayLayout(BYTE, MAX_INBOUND),
        "ts": TS_BITS,
        "tag": TAG_BITS,
    })


def inbound_msg(session_bits: int) -> data.StructLayout:
    """A decoded OUCH 4.2 inbound message: its type and its typed fields."""
    return data.StructLayout({
        "kind": InboundKind,
        "session": unsigned(session_bits),
        "ts": TS_BITS,
        "tag": TAG_BITS,
        "body": union_of(INBOUND_LAYOUTS),
    })


def ouch_out(session_bits: int) -> data.StructLayout:
    """An outbound OUCH 4.2 record for one session.  `flush` marks the last
    order-entry record caused by the inbound message (the packet closes after it)."""
    return data.StructLayout({
        "kind": OuchKind,
        "session": unsigned(session_bits),
        "flush": 1,
        "tag": TAG_BITS,
        "body": union_of(OUCH_OUT_LAYOUTS),
    })


def itch_out() -> data.StructLayout:
    """An outbound ITCH 5.0 record for the feed; `flush` as in `ouch_out`."""
    return data.StructLayout({
        "kind": ItchKind,
        "flush": 1,
        "tag": TAG_BITS,
        "body": union_of(ITCH_LAYOUTS),
    })


def block_beat(width: int, dest_bits: int) -> data.StructLayout:
    """One beat of a MoldUDP64 message block (2-byte length, then the message).
    `length` (the whole block) and `dest` hold for the block; `flush` is set on
    the beats of the last block of an inbound message's group."""
    return data.StructLayout({
        "data": data.ArrayLayout(BYTE, width),
        "nbytes": nbytes_shape(width),
        "first": 1,
        "last": 1,
        "length": 16,
        "dest": unsigned(dest_bits),
        "flush": 1,
        "tag": TAG_BITS,
    })


def packet_beat(width: int, dest_bits: int) -> data.StructLayout:
    """One beat of an outbound frame whose Ethernet/IPv4/UDP header (bytes 0..41)
    is still to be filled: the MoldUDP64 payload sits at byte 42 on.  Held for the
    frame: destination, UDP payload length and the payload's ones' complement sum
    in three unfolded parts: 256 * `sum_hi` (bytes at even offsets) + `sum_lo`
    (bytes at odd offsets) + `sum_hdr` (the MoldUDP64 header's 16-bit words)."""
    return data.StructLayout({
        "data": data.ArrayLayout(BYTE, width),
        "nbytes": nbytes_shape(width),
        "first": 1,
        "last": 1,
        "dest": unsigned(dest_bits),
        "length": 16,
        "sum_hi": 20,
        "sum_lo": 20,
        "sum_hdr": 20,
        "tag": TAG_BITS,
    })


def out_beat(width: int) -> data.StructLayout:
    """One beat of an outbound Ethernet frame, with the tag of the inbound frame
    that caused it."""
    return data.StructLayout({
        "data": data.ArrayLayout(BYTE, width),
        "nbytes": nbytes_shape(width),
        "first": 1,
        "last": 1,
        "tag": TAG_BITS,
    })


def counters_layout(names) -> data.StructLayout:
    return data.StructLayout({name: 32 for name in names})


def fold16(value):
    """End-around-carry fold of a ones' complement sum of up to 32 bits to 16 bits."""
    s1 = value[:16] + value[16:32]            # 17 bits
    return (s1[:16] + s1[16])[:16]
