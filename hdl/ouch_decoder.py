"""OUCH 4.2 inbound decoder (Nasdaq OUCH 4.2 section 2; refmodel ouch.decode_inbound).

Input `i`: sequence-accepted message blocks from `Session`.  Output `o`: typed
messages, `layouts.inbound_msg`: the kind (`layouts.InboundKind`, one per
refmodel `ouch.INBOUND` layout) and the fields in a `data.UnionLayout` of the
structs built from those same layouts.  Drops, as refmodel: an empty block or
one whose length is not its type's size is ``drop_bad_length``; a first byte
that names no inbound message is ``drop_unknown_type``.  Each message passed on
counts ``messages_in``.

Latency: 2 cycles (classify, then the typed fields).  Back-pressure: a
two-register pipeline whose first register takes a block only when empty (so
`i.ready` comes straight from a flip-flop): at most one block every 2 cycles,
which the session layer never exceeds.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (
    INBOUND_LAYOUTS,
    InboundKind,
    counters_layout,
    from_wire,
    inbound_block,
    inbound_msg,
)

COUNTERS = ("drop_unknown_type", "drop_bad_length", "messages_in")


class OuchDecoder(wiring.Component):
    def __init__(self, *, session_bits: int):
        super().__init__({
            "i": In(stream.Signature(inbound_block(session_bits))),
            "o": Out(stream.Signature(inbound_msg(session_bits))),
            "counters": Out(counters_layout(COUNTERS)),
        })

    def elaborate(self, platform):
        m = Module()
        blk = self.i.payload
        cnt = self.counters

        # stage 1: hold the block with its classification (type byte, length); it
        # takes a block when empty, so `i.ready` is a register's (timing)
        known = Signal()
        size_ok = Signal()
        kind = Signal(InboundKind)
        for k, lay in enumerate(INBOUND_LAYOUTS):
            with m.If(blk.data[0] == ord(lay.type_code)):
                m.d.comb += [known.eq(1), kind.eq(k), size_ok.eq(blk.length == lay.size)]
        s1_valid = Signal()
        s1 = Signal.like(blk)
        s1_kind = Signal(InboundKind)
        s1_known = Signal()
        s1_size_ok = Signal()
        s1_empty = Signal()
        m.d.comb += self.i.ready.eq(~s1_valid)
        with m.If(self.i.valid & ~s1_valid):
            m.d.sync += [s1_valid.eq(1), s1.eq(blk), s1_kind.eq(kind), s1_known.eq(known),
                         s1_size_ok.eq(size_ok), s1_empty.eq(blk.length == 0)]

        # stage 2: the verdict, counted, and the typed fields (a fixed byte
        # permutation per kind)
        out = self.o.payload
        s2_free = ~self.o.valid | self.o.ready
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(s1_valid & s2_free):
            m.d.sync += s1_valid.eq(0)
            with m.If(s1_empty):
                m.d.sync += cnt.drop_bad_length.eq(cnt.drop_bad_length + 1)
            with m.Elif(~s1_known):
                m.d.sync += cnt.drop_unknown_type.eq(cnt.drop_unknown_type + 1)
            with m.Elif(~s1_size_ok):
                m.d.sync += cnt.drop_bad_length.eq(cnt.drop_bad_length + 1)
            with m.Else():
                m.d.sync += [
                    cnt.messages_in.eq(cnt.messages_in + 1),
                    self.o.valid.eq(1),
                ]
            wire = Cat(*s1.data)
            m.d.sync += [
                out.kind.eq(s1_kind),
                out.session.eq(s1.session),
                out.ts.eq(s1.ts),
                out.tag.eq(s1.tag),
            ]
            with m.Switch(s1_kind):
                for k, lay in enumerate(INBOUND_LAYOUTS):
                    with m.Case(k):
                        view = from_wire(lay, wire[:8 * lay.size])
                        m.d.sync += out.body.eq(view.as_value())
        return m
