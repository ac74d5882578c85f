"""Order-entry before market data, per inbound message (refmodel/egress.py framing).

Merges the OUCH block stream `oe` and the ITCH block stream `md` into `o`:
one order-entry group (blocks up to and including the one marked `flush`), then
one market-data group, and so on, so each inbound message's order-entry frames
go out before its market-data frames.  The core emits exactly one group on
each stream per inbound message that produces output.

Latency: 1 cycle (the output is a register).  Throughput: one beat per
cycle.  Back-pressure: a second register catches the beat taken while the
output is held, so the inputs' ready is a flip-flop's (`~skid_valid`), never
the consumer's ready passed through (timing).
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
        src_valid = Signal()
        src = Signal.like(self.o.payload)
        skid_valid = Signal()
        skid = Signal.like(self.o.payload)
        with m.If(sel_md):
            m.d.comb += [src_valid.eq(self.md.valid), src.eq(self.md.payload),
                         self.md.ready.eq(~skid_valid)]
        with m.Else():
            m.d.comb += [src_valid.eq(self.oe.valid), src.eq(self.oe.payload),
                         self.oe.ready.eq(~skid_valid)]
        take = src_valid & ~skid_valid
        with m.If(take & src.last & src.flush):
            m.d.sync += sel_md.eq(~sel_md)

        adv = ~self.o.valid | self.o.ready
        with m.If(adv):
            with m.If(skid_valid):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(src_valid), self.o.payload.eq(src)]
        with m.Elif(take):
            m.d.sync += [skid_valid.eq(1), skid.eq(src)]
        return m
