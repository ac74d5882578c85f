"""Record -> MoldUDP64 message block serializer, shared by the OUCH and ITCH encoders.

A record (a kind plus a `data.UnionLayout` of message structs built from
refmodel layouts) becomes one block: the 2-byte big-endian Message Length (of
the message alone), then the message's wire bytes packed by `layouts.to_wire`
from the same layout (MoldUDP64 1.00, "Message Block"), sent as beats of
`width` bytes.  The beats' `length` is the whole block's (2 + message).

The block is converted to its wire bytes when the record is taken and held in
a shift register: the beat offered is always its low `width` bytes, and each
beat taken shifts it by one beat (no beat-select multiplexer between a register
and the output; the output's ready is a shift enable).

Latency: the first beat is valid 1 cycle after the record is taken.
Throughput: ceil((2 + size) / width) beats per record and one idle cycle
between blocks: a new record is taken the cycle after the last beat goes.
Back-pressure: each beat holds until taken; `i.ready` is a register's.
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
        nbeats_max = -(-self.max_block // w)
        blk = Signal(8 * w * nbeats_max)
        bi = Signal(range(nbeats_max))          # beat being offered
        last_bi = Signal(range(nbeats_max))
        last_nbytes = Signal(range(w + 1))
        is_last = Signal()

        m.d.comb += [
            out.data.eq(blk[:8 * w]),
            out.nbytes.eq(Mux(is_last, last_nbytes, w)),
            out.last.eq(is_last),
            self.i.ready.eq(~self.o.valid),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [bi.eq(bi + 1), is_last.eq(bi + 1 == last_bi), out.first.eq(0),
                         blk.eq(blk >> 8 * w)]
            with m.If(is_last):
                m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & ~self.o.valid):
            m.d.sync += [
                self.o.valid.eq(1),
                out.first.eq(1),
                out.dest.eq(self.dest(rec)),
                out.flush.eq(rec.flush),
                out.tag.eq(rec.tag),
                bi.eq(0),
            ]
            with m.Switch(rec.kind):
                for k, lay in enumerate(self.layouts):
                    with m.Case(k):
                        size = 2 + lay.size
                        nb = -(-size // w)
                        block = Cat(Const(lay.size >> 8, 8), Const(lay.size & 0xFF, 8),
                                    to_wire(lay, rec.body[lay.name]))
                        m.d.sync += [blk.eq(block), out.length.eq(size),
                                     last_bi.eq(nb - 1), is_last.eq(nb == 1),
                                     last_nbytes.eq(size - (nb - 1) * w)]
        return m
