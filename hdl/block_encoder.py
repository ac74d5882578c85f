"""Record -> MoldUDP64 message block serializer, shared by the OUCH and ITCH encoders.

A record (a kind plus a `data.UnionLayout` of message structs built from
refmodel layouts) becomes one block: the 2-byte big-endian Message Length (of
the message alone), then the message's wire bytes packed by `layouts.to_wire`
from the same layout (MoldUDP64 1.00, "Message Block"), sent as beats of
`width` bytes.  The beats' `length` is the whole block's (2 + message).

Latency: the first beat is valid 1 cycle after the record is taken.
Throughput: ceil((2 + size) / width) beats per record, back to back: a new
record is taken in the cycle the previous block's last beat goes.
Back-pressure: each beat holds until taken.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import block_beat, to_wire


class BlockEncoder(wiring.Component):
    def __init__(self, record_shape, layouts, *, width: int, dest_bits: int):
        self.layouts = tuple(layouts)
        self.width = width
        self.max_block = 2 + max(lay.size for lay in self.layouts)
        super().__init__({
            "i": In(stream.Signature(record_shape)),
            "o": Out(stream.Signature(block_beat(width, dest_bits))),
        })

    def dest(self, record):
        """The destination index of a record (a session, or the feed)."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        w = self.width
        rec = self.i.payload
        out = self.o.payload
        sr = Signal(8 * self.max_block)
        remaining = Signal(range(self.max_block + 1))

        last = remaining <= w
        m.d.comb += [
            out.data.eq(sr[:8 * w]),
            out.nbytes.eq(Mux(last, remaining, w)),
            out.last.eq(last),
        ]
        m.d.comb += self.i.ready.eq(~self.o.valid | (self.o.ready & last))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [sr.eq(sr >> (8 * w)), remaining.eq(remaining - w), out.first.eq(0)]
            with m.If(last):
                m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                self.o.valid.eq(1),
                out.first.eq(1),
                out.dest.eq(self.dest(rec)),
                out.flush.eq(rec.flush),
                out.tag.eq(rec.tag),
            ]
            with m.Switch(rec.kind):
                for k, lay in enumerate(self.layouts):
                    with m.Case(k):
                        size = 2 + lay.size
                        block = Cat(Const(lay.size >> 8, 8), Const(lay.size & 0xFF, 8),
                                    to_wire(lay, rec.body[lay.name]))
                        m.d.sync += [sr.eq(block), remaining.eq(size), out.length.eq(size)]
        return m
