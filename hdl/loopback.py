"""Packet-loopback core (refmodel/loopback.py, LoopbackCore): proves the packet path.

Every Enter Order is answered with an OUCH Accepted echoing its fields, with
the next order reference number (from 1) and order state 'L', and published
as an ITCH Add Order (Stock Locate of the configured symbol, 0 when the stock
is not configured; side 'B' or 'S').  No validation, no risk gate, no book.
Every other message counts ``loopback_ignored`` and produces nothing.

Input `i`: decoded messages (`layouts.inbound_msg`).  Outputs `oe` (OUCH
records, `layouts.ouch_out`) and `md` (ITCH records, `layouts.itch_out`), each
record marked `flush` (it is the last of its stream for the inbound message).
Both timestamps are the inbound message's time of day.

Latency: 1 cycle to both outputs.  Back-pressure: a message is taken only when
both output registers are empty (at most one message every 2 cycles).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickcore.refmodel import itch, ouch

from .layouts import (
    InboundKind,
    ItchKind,
    OuchKind,
    counters_layout,
    inbound_msg,
    itch_out,
    ouch_out,
)

COUNTERS = ("accepted", "loopback_ignored")


class LoopbackCore(wiring.Component):
    def __init__(self, *, session_bits: int, stocks):
        self.stocks = tuple(stocks)           # configured symbols' 8-byte stock names, in order
        super().__init__({
            "i": In(stream.Signature(inbound_msg(session_bits))),
            "oe": Out(stream.Signature(ouch_out(session_bits))),
            "md": Out(stream.Signature(itch_out())),
            "counters": Out(counters_layout(COUNTERS)),
        })

    def elaborate(self, platform):
        m = Module()
        msg = self.i.payload
        enter = msg.body.EnterOrder
        cnt = self.counters
        next_ref = Signal(64, init=1)

        locate = Signal(16)
        for k, stock in enumerate(self.stocks):
            with m.If(Cat(*enter.stock) == Cat(*(Const(b, 8) for b in stock.encode("latin-1")))):
                m.d.comb += locate.eq(k + 1)

        # a message is taken when both output registers are empty: `i.ready` comes from
        # flip-flops, not from the consumers' ready (timing); one message per 2 cycles
        m.d.comb += self.i.ready.eq(~self.oe.valid & ~self.md.valid)
        with m.If(self.oe.ready):
            m.d.sync += self.oe.valid.eq(0)
        with m.If(self.md.ready):
            m.d.sync += self.md.valid.eq(0)

        with m.If(self.i.valid & self.i.ready):
            with m.If(msg.kind == InboundKind.EnterOrder):
                acc = self.oe.payload.body.Accepted
                add = self.md.payload.body.AddOrder
                m.d.sync += [
                    cnt.accepted.eq(cnt.accepted + 1),
                    next_ref.eq(next_ref + 1),
                    self.oe.valid.eq(1),
                    self.oe.payload.kind.eq(OuchKind.Accepted),
                    self.oe.payload.session.eq(msg.session),
                    self.oe.payload.flush.eq(1),
                    self.oe.payload.tag.eq(msg.tag),
                    self.oe.payload.body.eq(0),
                    acc.timestamp.eq(msg.ts),
                    acc.order_ref.eq(next_ref),
                    acc.order_state.eq(ord(ouch.ORDER_STATE_LIVE)),
                    acc.bbo_weight.eq(ord(ouch.BBO_WEIGHT_UNSPECIFIED)),
                    self.md.valid.eq(1),
                    self.md.payload.kind.eq(ItchKind.AddOrder),
                    self.md.payload.flush.eq(1),
                    self.md.payload.tag.eq(msg.tag),
                    self.md.payload.body.eq(0),
                    add.locate.eq(locate),
                    add.tracking.eq(0),
                    add.timestamp.eq(msg.ts),
                    add.order_ref.eq(next_ref),
                    add.side.eq(Mux(enter.side == ord("B"), ord("B"), ord("S"))),
                    add.shares.eq(enter.shares),
                    add.stock.eq(enter.stock),
                    add.price.eq(enter.price),
                ]
                # every other Accepted field echoes the Enter Order field of the same name
                for f in ouch.ACCEPTED.fields:
                    if f.name not in ("timestamp", "order_ref", "order_state", "bbo_weight"):
                        m.d.sync += acc[f.name].eq(enter[f.name])
                assert itch.ADD_ORDER.field("stock").size == ouch.ENTER_ORDER.field("stock").size
            with m.Else():
                m.d.sync += cnt.loopback_ignored.eq(cnt.loopback_ignored + 1)
        return m
