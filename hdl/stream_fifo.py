"""A stream FIFO: `lib.fifo.SyncFIFOBuffered` behind `stream.Signature` ports.

Used to cut combinational `ready` chains between stages (timing), not for
capacity.  Latency: 1 cycle.  Throughput: one transfer per cycle.  `i.ready`
depends only on the FIFO's level, never on `o.ready`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out


class StreamFIFO(wiring.Component):
    def __init__(self, shape, depth: int = 4):
        self.shape = shape
        self.depth = depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=Shape.cast(self.shape).width,
                                                    depth=self.depth)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        return m
