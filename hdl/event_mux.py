"""Order-entry before market data, per inbound message (refmodel/egress.py framing).

Merges the OUCH block stream `oe` and the ITCH block stream `md` into `o`:
one order-entry group (blocks up to and including the one marked `flush`), then
one market-data group, and so on, so each inbound message's order-entry frames
go out before its market-data frames.  The core emits exactly one group on
each stream per inbound message that produces output.

Latency: 0 cycles (combinational).  Back-pressure: passed through to the
selected input; the other input waits.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import block_beat


class EventMux(wiring.Component):
    def __init__(self, *, width: int, dest_bits: int):
        shape = block_beat(width, dest_bits)
        super().__init__({
            "oe": In(stream.Signature(shape)),
            "md": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        sel_md = Signal()
        with m.If(sel_md):
            m.d.comb += [self.o.valid.eq(self.md.valid), self.o.payload.eq(self.md.payload),
                         self.md.ready.eq(self.o.ready)]
        with m.Else():
            m.d.comb += [self.o.valid.eq(self.oe.valid), self.o.payload.eq(self.oe.payload),
                         self.oe.ready.eq(self.o.ready)]
        p = self.o.payload
        with m.If(self.o.valid & self.o.ready & p.last & p.flush):
            m.d.sync += sel_md.eq(~sel_md)
        return m
