"""Matching core: continuous trading under price-time priority, many symbols.

Input: one decoded order-entry message with its session and ingress
timestamp.  Output: OUCH records for sessions and ITCH records for the feed,
in the order the rules below produce them (docs/protocol.md, "Matching").

Allocation rules: order reference numbers and match numbers are venue-wide
counters starting at 1.  A reference number is taken by every Accepted and by
every Replace that loses priority; a match number by every execution.

Events of one execution: Executed to the resting order's owner, Executed to
the incoming order's owner, then ITCH Order Executed (E) for a displayed
resting order or Trade (P, reference 0) for a non-displayed one.
"""

from __future__ import annotations

from collections import Counter

from . import itch, ouch
from .book import BUY, NIL, SELL, Book
from .ouch import (
    DISPLAY_HIDDEN,
    DISPLAY_POST_ONLY,
    MARKET_PRICE,
    TIF_IOC,
    CancelReason,
    Reject,
    itch_side,
)
from .risk import RiskGate
from .tokenmap import TokenMap


class Incoming:
    """An order being matched: an Enter Order, or a Replace that lost priority."""
    __slots__ = ("session", "firm", "stp", "token", "symbol", "side", "side_code", "price",
                 "leaves", "ref", "display", "hidden", "tif", "capacity_code", "iso",
                 "min_qty", "ioc")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


class MatchingCore:
    def __init__(self, cfg):
        self.cfg = cfg
        cap = cfg.capacity
        self.book = Book(len(cfg.symbols), cap.orders, cap.levels_per_side)
        self.tokens = TokenMap(cap.token_map_buckets, cap.token_map_ways)
        self.risk = RiskGate(cfg)
        self.next_ref = 1
        self.next_match = 1
        self.counters = Counter()
        self.oe: list = []             # (session index, OUCH record), emission order
        self.md: list = []             # ITCH records, emission order
        self._ts = 0
        self._tod = 0
        self._handlers = {
            ouch.ENTER_ORDER.record: self.enter,
            ouch.REPLACE_ORDER.record: self.replace,
            ouch.CANCEL_ORDER.record: self.cancel,
            ouch.MASS_CANCEL.record: self.mass_cancel,
            ouch.KILL_SWITCH.record: self.kill_switch,
        }

    # -- entry points ------------------------------------------------------------

    def take(self):
        """Return and clear the records emitted since the last call."""
        out = self.oe, self.md
        self.oe, self.md = [], []
        return out

    def _at(self, ts: int) -> None:
        self._ts = ts
        self._tod = itch.ns_since_midnight(ts)

    def open(self, ts: int) -> None:
        """Start of day: OUCH System Event to every session, ITCH opening sequence."""
        self._at(ts)
        for s in self.cfg.sessions:
            self._send(s.index, ouch.SYSTEM_EVENT, event_code=ouch.EVENT_START_OF_DAY)
        self._publish(itch.SYSTEM_EVENT, 0, event_code=itch.EVENT_START_OF_MESSAGES)
        for sym in self.cfg.symbols:
            self._publish(itch.STOCK_DIRECTORY, sym.locate, stock=sym.stock,
                          round_lot_size=sym.round_lot, **itch.DIRECTORY_ATTRIBUTES)
            self._publish(itch.TRADING_ACTION, sym.locate, stock=sym.stock,
                          trading_state=itch.TRADING_STATE_TRADING, reserved=" ", reason="    ")
        for code in itch.OPENING_EVENTS:
            self._publish(itch.SYSTEM_EVENT, 0, event_code=code)

    def close(self, ts: int) -> None:
        """End of day: OUCH System Event to every session, ITCH closing sequence."""
        self._at(ts)
        for s in self.cfg.sessions:
            self._send(s.index, ouch.SYSTEM_EVENT, event_code=ouch.EVENT_END_OF_DAY)
        for code in itch.CLOSING_EVENTS:
            self._publish(itch.SYSTEM_EVENT, 0, event_code=code)

    def handle(self, session: int, ts: int, msg) -> None:
        """Act on one decoded inbound message (an `ouch.INBOUND` record)."""
        self._at(ts)
        self._handlers[type(msg)](session, msg)

    # -- emission ----------------------------------------------------------------

    def _send(self, session: int, layout, **fields) -> None:
        self.oe.append((session, layout.record(timestamp=self._tod, **fields)))

    def _publish(self, layout, locate: int, **fields) -> None:
        self.md.append(layout.record(locate=locate, tracking=0, timestamp=self._tod, **fields))

    def _reject(self, session: int, token: str, reason: str) -> None:
        self.counters["reject_" + ouch.REJECT_NAMES[reason]] += 1
        self._send(session, ouch.REJECTED, token=token, reason=reason)

    def _alloc_ref(self) -> int:
        ref = self.next_ref
        self.next_ref += 1
        return ref

    # -- Enter Order -------------------------------------------------------------

    def enter(self, s: int, m) -> None:
        self.counters["msg_enter"] += 1
        reason = ouch.validate_enter(m)
        symbol = None
        if reason is None:
            reason, symbol = self.risk.check_enter(s, self._ts, m)
        if reason is None:
            sess = self.cfg.sessions[s]
            buy = m.side == "B"
            market = m.price == MARKET_PRICE
            o = Incoming(
                session=s, firm=sess.firm_index, stp=sess.stp, token=m.token, symbol=symbol,
                side=BUY if buy else SELL, side_code=m.side,
                price=(symbol.collar_buy if buy else symbol.collar_sell) if market else m.price,
                leaves=m.shares, ref=0, display=m.display, hidden=m.display in DISPLAY_HIDDEN,
                tif=m.tif, capacity_code=m.capacity, iso=m.iso, min_qty=m.min_qty,
                ioc=market or m.tif == TIF_IOC)
            reason = self._entry_checks(o)
        if reason is not None:
            self._reject(s, m.token, reason)
            return
        o.ref = self._alloc_ref()
        self.counters["accepted"] += 1
        self._send(s, ouch.ACCEPTED, token=m.token, side=m.side, shares=m.shares,
                   stock=m.stock, price=m.price, tif=m.tif, firm=sess.firm, display=m.display,
                   order_ref=o.ref, capacity=m.capacity, iso=m.iso, min_qty=m.min_qty,
                   cross_type=m.cross_type, order_state=ouch.ORDER_STATE_LIVE,
                   bbo_weight=ouch.BBO_WEIGHT_UNSPECIFIED)
        self._finish(o, self._match(o))

    def _entry_checks(self, o: Incoming) -> str | None:
        """Book-stage checks of an Enter Order: duplicate token, post-only, capacity."""
        if self.tokens.lookup(o.session, o.token) is not None:
            return Reject.DUPLICATE_TOKEN
        if o.display in DISPLAY_POST_ONLY and self._marketable(o):
            return Reject.POST_ONLY_CROSS
        if not o.ioc:
            if not self.book.pool.free:
                self.counters["capacity_orders"] += 1
                return Reject.CAPACITY
            if not self.tokens.has_room(o.session, o.token):
                self.counters["capacity_token_map"] += 1
                return Reject.CAPACITY
            if not self.book.can_rest(o.symbol.index, o.side, o.price):
                self.counters["capacity_levels"] += 1
                return Reject.CAPACITY
        return None

    # -- matching ----------------------------------------------------------------

    @staticmethod
    def _crosses(o: Incoming, price: int) -> bool:
        return price <= o.price if o.side == BUY else price >= o.price

    def _marketable(self, o: Incoming) -> bool:
        best = self.book.best(o.symbol.index, 1 - o.side)
        return best is not None and self._crosses(o, best.price)

    def _same_firm_blocks(self, o: Incoming, slot: int) -> bool:
        return o.stp != "none" and self.book.pool.firm[slot] == o.firm

    def _executable(self, o: Incoming) -> int:
        """Quantity `_match` would fill, stopping once `o.min_qty` is reached."""
        total = 0
        for level in self.book.levels(o.symbol.index, 1 - o.side):
            if not self._crosses(o, level.price):
                break
            for slot in self.book.queue(level):
                if self._same_firm_blocks(o, slot):
                    if o.stp != "cancel_oldest":
                        return total
                    continue
                total += self.book.pool.leaves[slot]
                if total >= o.min_qty:
                    return total
        return total

    def _match(self, o: Incoming) -> bool:
        """Execute `o` against the opposite side.  True when self-trade prevention
        stopped it (its remainder is then canceled)."""
        if o.min_qty and self._executable(o) < o.min_qty:
            return False
        opposite = self.book.levels(o.symbol.index, 1 - o.side)
        pool = self.book.pool
        while o.leaves and opposite and self._crosses(o, opposite[0].price):
            slot = opposite[0].head
            while slot != NIL and o.leaves:
                nxt = pool.next[slot]
                if self._same_firm_blocks(o, slot):
                    if o.stp != "cancel_newest":
                        self._cancel_resting(slot, CancelReason.SELF_MATCH)
                    if o.stp != "cancel_oldest":
                        return True
                else:
                    self._execute(o, slot)
                slot = nxt
        return False

    def _execute(self, o: Incoming, slot: int) -> None:
        pool = self.book.pool
        qty = min(o.leaves, pool.leaves[slot])
        price = pool.price[slot]
        match = self.next_match
        self.next_match += 1
        hidden = pool.hidden[slot]
        self._send(pool.session[slot], ouch.EXECUTED, token=pool.token[slot], shares=qty,
                   price=price, match_number=match,
                   liquidity=ouch.LIQUIDITY_ADDED_HIDDEN if hidden else ouch.LIQUIDITY_ADDED)
        self._send(o.session, ouch.EXECUTED, token=o.token, shares=qty, price=price,
                   liquidity=ouch.LIQUIDITY_REMOVED, match_number=match)
        if hidden:
            self._publish(itch.TRADE, o.symbol.locate, order_ref=0,
                          side=itch_side(pool.side_code[slot]), shares=qty,
                          stock=o.symbol.stock, price=price, match_number=match)
        else:
            self._publish(itch.ORDER_EXECUTED, o.symbol.locate, order_ref=pool.ref[slot],
                          shares=qty, match_number=match)
        self.counters["executions"] += 1
        self.counters["executed_shares"] += qty
        o.leaves -= qty
        if pool.leaves[slot] == qty:
            self._remove(slot)
        else:
            self.book.reduce(slot, qty)

    def _finish(self, o: Incoming, stopped: bool) -> None:
        """After matching: cancel the remainder (STP, IOC) or rest it."""
        if not o.leaves:
            return
        if stopped or o.ioc:
            reason = CancelReason.SELF_MATCH if stopped else CancelReason.IOC
            self.counters["canceled_" + ouch.CANCEL_REASON_NAMES[reason]] += 1
            self._send(o.session, ouch.CANCELED, token=o.token, decrement=o.leaves,
                       reason=reason)
            return
        self._rest(o, publish=True)

    def _rest(self, o: Incoming, publish: bool) -> None:
        pool = self.book.pool
        slot = pool.alloc()
        pool.symbol[slot] = o.symbol.index
        pool.side[slot] = o.side
        pool.side_code[slot] = o.side_code
        pool.price[slot] = o.price
        pool.leaves[slot] = o.leaves
        pool.ref[slot] = o.ref
        pool.session[slot] = o.session
        pool.firm[slot] = o.firm
        pool.token[slot] = o.token
        pool.display[slot] = o.display
        pool.hidden[slot] = o.hidden
        pool.tif[slot] = o.tif
        pool.capacity_code[slot] = o.capacity_code
        pool.iso[slot] = o.iso
        self.book.append(slot)
        self.tokens.insert(o.session, o.token, slot)
        if publish and not o.hidden:
            self._publish(itch.ADD_ORDER, o.symbol.locate, order_ref=o.ref,
                          side=itch_side(o.side_code), shares=o.leaves, stock=o.symbol.stock,
                          price=o.price)

    def _remove(self, slot: int) -> None:
        pool = self.book.pool
        self.book.unlink(slot)
        self.tokens.delete(pool.session[slot], pool.token[slot])
        pool.release(slot)

    def _cancel_resting(self, slot: int, reason: str) -> None:
        pool = self.book.pool
        self.counters["canceled_" + ouch.CANCEL_REASON_NAMES[reason]] += 1
        self._send(pool.session[slot], ouch.CANCELED, token=pool.token[slot],
                   decrement=pool.leaves[slot], reason=reason)
        if not pool.hidden[slot]:
            self._publish(itch.ORDER_DELETE, self.cfg.symbols[pool.symbol[slot]].locate,
                          order_ref=pool.ref[slot])
        self._remove(slot)

    # -- Replace Order -----------------------------------------------------------

    def replace(self, s: int, m) -> None:
        self.counters["msg_replace"] += 1
        pool = self.book.pool
        new_token = m.replacement_token
        reason = ouch.validate_replace(m)
        slot = self.tokens.lookup(s, m.existing_token)
        if reason is None and slot is None:
            reason = Reject.UNKNOWN_ORDER
        if reason is None:
            symbol = self.cfg.symbols[pool.symbol[slot]]
            side = pool.side[slot]
            reason = self.risk.check_replace(s, self._ts, m, symbol, side == BUY)
        if reason is None:
            hidden = m.display in DISPLAY_HIDDEN
            ioc = m.tif == TIF_IOC
            keep = (not ioc and m.price == pool.price[slot] and m.shares <= pool.leaves[slot]
                    and hidden == pool.hidden[slot])
            sess = self.cfg.sessions[s]
            o = Incoming(
                session=s, firm=sess.firm_index, stp=sess.stp, token=new_token, symbol=symbol,
                side=side, side_code=pool.side_code[slot], price=m.price, leaves=m.shares,
                ref=pool.ref[slot], display=m.display, hidden=hidden, tif=m.tif,
                capacity_code=pool.capacity_code[slot], iso=m.iso, min_qty=m.min_qty, ioc=ioc)
            reason = self._replace_checks(o, slot, m.existing_token, keep)
        if reason is not None:
            self._reject(s, new_token, reason)
            return
        self.counters["replaced"] += 1
        if keep:
            self._replace_in_place(o, slot, m.existing_token)
        else:
            self._replace_to_back(o, slot, m.existing_token)

    def _replace_checks(self, o: Incoming, slot: int, old_token: str, keep: bool):
        if o.token != old_token:
            if self.tokens.lookup(o.session, o.token) is not None:
                return Reject.DUPLICATE_TOKEN
        if not keep and o.display in DISPLAY_POST_ONLY and self._marketable(o):
            return Reject.POST_ONLY_CROSS
        if o.token != old_token and not self.tokens.has_room(o.session, o.token) \
                and self.tokens.bucket(o.session, o.token) != \
                self.tokens.bucket(o.session, old_token):
            self.counters["capacity_token_map"] += 1
            return Reject.CAPACITY
        if not keep and not o.ioc and \
                not self.book.can_rest(o.symbol.index, o.side, o.price, leaving=slot):
            self.counters["capacity_levels"] += 1
            return Reject.CAPACITY
        return None

    def _send_replaced(self, o: Incoming, previous_token: str, shares: int) -> None:
        self._send(o.session, ouch.REPLACED, replacement_token=o.token, side=o.side_code,
                   shares=shares, stock=o.symbol.stock, price=o.price, tif=o.tif,
                   firm=self.cfg.sessions[o.session].firm, display=o.display,
                   order_ref=o.ref, capacity=o.capacity_code, iso=o.iso, min_qty=o.min_qty,
                   cross_type=ouch.CROSS_NONE, order_state=ouch.ORDER_STATE_LIVE,
                   previous_token=previous_token, bbo_weight=ouch.BBO_WEIGHT_UNSPECIFIED)

    def _replace_in_place(self, o: Incoming, slot: int, old_token: str) -> None:
        """Same price, no more shares, same visibility: time priority is kept."""
        pool = self.book.pool
        decrement = pool.leaves[slot] - o.leaves
        if decrement:
            self.book.reduce(slot, decrement)
        if o.token != old_token:
            self.tokens.delete(o.session, old_token)
            self.tokens.insert(o.session, o.token, slot)
            pool.token[slot] = o.token
        pool.display[slot] = o.display
        pool.tif[slot] = o.tif
        pool.iso[slot] = o.iso
        self._send_replaced(o, old_token, o.leaves)
        if decrement and not o.hidden:
            self._publish(itch.ORDER_CANCEL, o.symbol.locate, order_ref=o.ref, shares=decrement)

    def _replace_to_back(self, o: Incoming, slot: int, old_token: str) -> None:
        """Priority lost: the old order leaves the book, the replacement arrives
        with a new reference number."""
        pool = self.book.pool
        old_ref, old_hidden = pool.ref[slot], pool.hidden[slot]
        self._remove(slot)
        o.ref = self._alloc_ref()
        self._send_replaced(o, old_token, o.leaves)
        if o.ioc or self._marketable(o):
            if not old_hidden:
                self._publish(itch.ORDER_DELETE, o.symbol.locate, order_ref=old_ref)
            self._finish(o, self._match(o))
            return
        self._rest(o, publish=False)
        if not old_hidden and not o.hidden:
            self._publish(itch.ORDER_REPLACE, o.symbol.locate, original_ref=old_ref,
                          new_ref=o.ref, shares=o.leaves, price=o.price)
        elif not o.hidden:
            self._publish(itch.ADD_ORDER, o.symbol.locate, order_ref=o.ref,
                          side=itch_side(o.side_code), shares=o.leaves, stock=o.symbol.stock,
                          price=o.price)
        elif not old_hidden:
            self._publish(itch.ORDER_DELETE, o.symbol.locate, order_ref=old_ref)

    # -- Cancel Order, Mass Cancel, Kill Switch ---------------------------------

    def cancel(self, s: int, m) -> None:
        self.counters["msg_cancel"] += 1
        pool = self.book.pool
        slot = self.tokens.lookup(s, m.token)
        if slot is None or m.shares >= pool.leaves[slot]:
            self.counters["cancel_reject_unknown_order" if slot is None
                          else "cancel_reject_not_reducing"] += 1
            self._send(s, ouch.CANCEL_REJECT, token=m.token)
            return
        decrement = pool.leaves[slot] - m.shares
        if m.shares == 0:
            self._cancel_resting(slot, CancelReason.USER)
            return
        self.counters["canceled_user"] += 1
        self._send(s, ouch.CANCELED, token=m.token, decrement=decrement,
                   reason=CancelReason.USER)
        if not pool.hidden[slot]:
            self._publish(itch.ORDER_CANCEL, self.cfg.symbols[pool.symbol[slot]].locate,
                          order_ref=pool.ref[slot], shares=decrement)
        self.book.reduce(slot, decrement)

    def _cancel_all(self, symbols, session: int | None, reason: str) -> None:
        """Cancel resting orders of `session` (None: everyone) in book-walk order."""
        pool = self.book.pool
        for sym in symbols:
            for slot in list(self.book.walk(sym.index)):
                if session is None or pool.session[slot] == session:
                    self._cancel_resting(slot, reason)

    def mass_cancel(self, s: int, m) -> None:
        self.counters["msg_mass_cancel"] += 1
        if m.stock.strip(" "):
            symbol = self.cfg.symbol_by_stock(m.stock)
            if symbol is None:
                self.counters["mass_cancel_unknown_stock"] += 1
                return
            symbols = [symbol]
        else:
            symbols = self.cfg.symbols
        self._cancel_all(symbols, s, CancelReason.USER)

    def kill_switch(self, s: int, m) -> None:
        self.counters["msg_kill_switch"] += 1
        if not self.cfg.sessions[s].admin:
            self.counters["kill_not_admin"] += 1
            return
        target = None
        if m.target_session.strip(" "):
            target = self.cfg.session_by_name(m.target_session)
            if target is None:
                self.counters["kill_unknown_target"] += 1
                return
        if m.action not in (ouch.KILL_ENGAGE, ouch.KILL_RELEASE):
            self.counters["kill_invalid_action"] += 1
            return
        engage = m.action == ouch.KILL_ENGAGE
        if target is None:
            self.risk.venue_killed = engage
        else:
            self.risk.session_killed[target.index] = engage
        self.counters["kill_engaged" if engage else "kill_released"] += 1
        if engage:
            self._cancel_all(self.cfg.symbols, None if target is None else target.index,
                             CancelReason.SUPERVISORY)
