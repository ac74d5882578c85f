"""Packet-loopback core: proves the packet path before the book exists.

Every Enter Order (of the right length) is answered with an Accepted echoing
its fields, with the next order reference number (from 1), state 'L', and is
published as an ITCH Add Order (Stock Locate of the configured symbol, 0 when
the stock is not configured).  No validation, no risk gate, no book.  Every
other message is counted as "loopback_ignored" and produces nothing.  There are
no start- or end-of-day events.
"""

from __future__ import annotations

from collections import Counter

from . import itch, ouch


class LoopbackCore:
    def __init__(self, cfg):
        self.cfg = cfg
        self.next_ref = 1
        self.counters = Counter()
        self.oe: list = []
        self.md: list = []

    def take(self):
        out = self.oe, self.md
        self.oe, self.md = [], []
        return out

    def open(self, ts: int) -> None:
        pass

    def close(self, ts: int) -> None:
        pass

    def handle(self, session: int, ts: int, m) -> None:
        if type(m) is not ouch.ENTER_ORDER.record:
            self.counters["loopback_ignored"] += 1
            return
        tod = itch.ns_since_midnight(ts)
        ref = self.next_ref
        self.next_ref += 1
        self.counters["accepted"] += 1
        self.oe.append((session, ouch.ACCEPTED.record(
            timestamp=tod, token=m.token, side=m.side, shares=m.shares, stock=m.stock,
            price=m.price, tif=m.tif, firm=m.firm, display=m.display, order_ref=ref,
            capacity=m.capacity, iso=m.iso, min_qty=m.min_qty, cross_type=m.cross_type,
            order_state=ouch.ORDER_STATE_LIVE, bbo_weight=ouch.BBO_WEIGHT_UNSPECIFIED)))
        symbol = self.cfg.symbol_by_stock(m.stock)
        self.md.append(itch.ADD_ORDER.record(
            locate=symbol.locate if symbol else 0, tracking=0, timestamp=tod, order_ref=ref,
            side=ouch.itch_side(m.side), shares=m.shares, stock=m.stock, price=m.price))
