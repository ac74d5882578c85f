"""Risk gate before the book: kill switch, rate limit, firm, symbol, price and size.

Checks run in the order of `check_enter` / `check_replace`; the first failing
one gives the reject reason.  The rate limit is a fixed window of
2**rate_window_log2_ns nanoseconds of ingress time: window = ts >> log2, and a
session may send `rate_limit` Enter/Replace messages per window.  Every message
that reaches the rate check counts, rejected or not.
"""

from __future__ import annotations

from .ouch import MARKET_PRICE, Reject


class RiskGate:
    def __init__(self, cfg):
        self.cfg = cfg
        n = len(cfg.sessions)
        self.venue_killed = False
        self.session_killed = [False] * n
        self.rate_window = [-1] * n
        self.rate_count = [0] * n

    def killed(self, session: int) -> bool:
        return self.venue_killed or self.session_killed[session]

    def _rate_ok(self, session: int, ts: int) -> bool:
        window = ts >> self.cfg.rate_window_log2_ns
        if window != self.rate_window[session]:
            self.rate_window[session] = window
            self.rate_count[session] = 0
        self.rate_count[session] += 1
        return self.rate_count[session] <= self.cfg.sessions[session].rate_limit

    def _terms(self, session, symbol, buy: bool, shares: int, price: int) -> str | None:
        """Tick, max quantity, band and notional checks for one order."""
        market = price == MARKET_PRICE
        if not market and price % symbol.tick:
            return Reject.INVALID_PRICE
        if shares > session.max_order_qty:
            return Reject.MAX_QTY
        if not market and not symbol.band_low <= price <= symbol.band_high:
            return Reject.PRICE_BAND
        effective = (symbol.collar_buy if buy else symbol.collar_sell) if market else price
        if shares * effective > session.max_notional:
            return Reject.MAX_NOTIONAL
        return None

    def check_enter(self, session: int, ts: int, msg):
        """Returns (reject reason or None, Symbol or None)."""
        sess = self.cfg.sessions[session]
        if self.killed(session):
            return Reject.KILL_SWITCH, None
        if not self._rate_ok(session, ts):
            return Reject.RATE_LIMIT, None
        if msg.firm.strip(" ") and msg.firm != sess.firm:
            return Reject.FIRM_NOT_AUTHORIZED, None
        symbol = self.cfg.symbol_by_stock(msg.stock)
        if symbol is None:
            return Reject.INVALID_STOCK, None
        return self._terms(sess, symbol, msg.side == "B", msg.shares, msg.price), symbol

    def check_replace(self, session: int, ts: int, msg, symbol, buy: bool) -> str | None:
        """Replace of a live order of `symbol`; side and symbol are the order's."""
        if self.killed(session):
            return Reject.KILL_SWITCH
        if not self._rate_ok(session, ts):
            return Reject.RATE_LIMIT
        return self._terms(self.cfg.sessions[session], symbol, buy, msg.shares, msg.price)
