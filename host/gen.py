"""Synthetic order flow: `tickcore gen`.

A deterministic function of (configuration, seed, options).  Sessions learn
their fills the way real clients do: the generator runs the reference
matching core in lockstep on the messages it sends, and a session forgets an
order once the core no longer holds it.  A few percent of cancels and
replaces still race a fill (`STALE_VIEW`), which the venue answers with Cancel
Reject / Rejected, as it would in production.

Mix per message (weights in `MIX`): passive limit orders around a moving mid,
cancels and replaces dominant, aggressive orders (IOC, FOK, market, minimum
quantity, sweeps that rest) often in bursts from one session, hidden and
post-only orders, rare mass cancels, kill-switch episodes from the admin
session and runaway sessions that hit the rate limit.  With `malformed` > 0 a
fraction of frames is damaged in one of the ways listed in `MALFORMED_KINDS`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tickcore.refmodel import moldudp64, ouch
from tickcore.refmodel.book import BUY, SELL
from tickcore.refmodel.client import ClientSession
from tickcore.refmodel.matcher import MatchingCore
from tickcore.refmodel.packet import ETHERNET, IPV4

DEFAULT_START_NS = 1_796_049_000_000_000_000   # Mon 2026-11-30 14:30 UTC: the New York open

MIX = (
    ("passive", 34), ("cancel", 31), ("replace", 28), ("reduce", 4), ("aggressive", 5),
    ("heartbeat", 1.5), ("mass_cancel", 0.2), ("multi", 1.3),
)

MALFORMED_KINDS = (
    "ip_checksum", "udp_checksum", "truncated", "mac_filter", "port_filter", "not_ipv4",
    "unknown_session", "session_malformed", "seq_gap", "seq_duplicate", "unknown_type",
    "bad_length", "off_tick", "out_of_band", "zero_shares", "huge_shares", "unknown_token",
    "bad_side", "wrong_firm", "unknown_stock",
)

TARGET_LIVE_PER_SESSION = 80      # sessions quote about this many orders
MAX_LIVE_PER_SESSION = 400
STALE_VIEW = 0.04          # chance a session acts on an order without knowing it traded


@dataclass
class GenOptions:
    seed: int = 1
    orders: int = 10_000
    symbols: int | None = None          # use the first K configured symbols
    malformed: float = 0.0              # fraction of frames damaged
    start_ns: int = DEFAULT_START_NS


class _Client:
    def __init__(self, cfg, session):
        self.link = ClientSession(cfg, session)
        self.session = session
        self.live: dict[str, list] = {}    # token -> [symbol, side, price, shares, display, tif]
        self.tokens = 0

    def new_token(self) -> str:
        self.tokens += 1
        return f"O{self.tokens:013d}"


class FlowGenerator:
    def __init__(self, cfg, opts: GenOptions):
        if opts.orders < 0:
            raise ValueError("orders must be >= 0")
        if not 0.0 <= opts.malformed <= 1.0:
            raise ValueError("malformed must be a fraction between 0 and 1")
        self.cfg = cfg
        self.opts = opts
        self.rng = random.Random(opts.seed)
        k = len(cfg.symbols) if opts.symbols is None else opts.symbols
        if not 1 <= k <= len(cfg.symbols):
            raise ValueError(f"symbols must be between 1 and {len(cfg.symbols)} "
                             "(the configured symbols)")
        self.symbols = cfg.symbols[:k]
        self.symbol_weights = [1.0 / (i + 1) for i in range(k)]
        self.clients = [_Client(cfg, s) for s in cfg.sessions if not s.admin]
        if not self.clients:
            raise ValueError("the configuration has no trading (non-admin) session")
        admins = [s for s in cfg.sessions if s.admin]
        self.admin = _Client(cfg, admins[0]) if admins else None
        self.mid = {s.index: s.ref_price for s in self.symbols}
        self.ts = opts.start_ns
        self.burst = 0
        self.burst_client = None
        self.runaway = 0
        self.killed = {}                   # session index -> messages until release
        self.core = MatchingCore(cfg)
        self.mix_names = [m for m, _ in MIX]
        self.mix_weights = [w for _, w in MIX]

    # -- time and prices ------------------------------------------------------

    def _advance(self) -> None:
        r = self.rng
        if self.runaway:
            self.runaway -= 1
            self.ts += r.randint(500, 3000)
        elif self.burst:
            self.burst -= 1
            self.ts += r.randint(100, 2000)
        else:
            self.ts += max(1, int(r.expovariate(1 / 20_000)))

    def _move_mid(self, sym) -> None:
        r = self.rng
        if r.random() < 0.08:
            mid = self.mid[sym.index] + sym.tick * r.choice((-1, 1))
            half_band = (sym.band_high - sym.band_low) // 4
            if abs(mid - sym.ref_price) <= half_band:
                self.mid[sym.index] = mid

    def _passive_price(self, sym, buy: bool) -> int:
        """Some ticks behind the fair value, never through the opposite best."""
        away = 1
        while self.rng.random() < 0.7 and away < 40:
            away += 1
        if buy:
            price = self.mid[sym.index] - sym.tick * away
            best = self.core.book.best(sym.index, SELL)
            return min(price, best.price - sym.tick) if best else price
        price = self.mid[sym.index] + sym.tick * away
        best = self.core.book.best(sym.index, BUY)
        return max(price, best.price + sym.tick) if best else price

    def _shares(self) -> int:
        r = self.rng.random()
        if r < 0.08:
            return self.rng.randint(1, 99)
        if r < 0.99:
            return 100 * self.rng.randint(1, 10)
        return 100 * self.rng.randint(20, 200)

    # -- messages --------------------------------------------------------------

    def _enter(self, c: _Client, sym, side, shares, price, *, tif=99999, display="Y",
               min_qty=0, firm="", stock=None, track=True) -> bytes:
        token = c.new_token()
        if track and tif != 0 and price != ouch.MARKET_PRICE:
            c.live[token] = [sym, side, price, shares, display, tif]
        return ouch.ENTER_ORDER.build(
            token=token, side=side, shares=shares, stock=stock or sym.stock, price=price,
            tif=tif, firm=firm, display=display, capacity=self.rng.choice("AAAPR"), iso="N",
            min_qty=min_qty, cross_type="N", customer_type=" ")

    def _passive(self, c: _Client, track: bool = True) -> bytes:
        r = self.rng
        sym = r.choices(self.symbols, self.symbol_weights)[0]
        self._move_mid(sym)
        side = r.choice("BBSST" if r.random() < 0.1 else "BS")
        display = r.choices("YNPA", (88, 5, 5, 2))[0]
        firm = c.session.firm if r.random() < 0.2 else ""
        price = self._passive_price(sym, side == "B")
        return self._enter(c, sym, side, self._shares(), price, display=display, firm=firm,
                           tif=r.choice((99998, 99999)), track=track)

    def _aggressive(self, c: _Client) -> bytes:
        r = self.rng
        sym = r.choices(self.symbols, self.symbol_weights)[0]
        self._move_mid(sym)
        side = r.choice("BS")
        through = sym.tick * r.randint(0, 3)
        price = self.mid[sym.index] + (through if side == "B" else -through)
        shares = self._shares() // 2 or 1
        kind = r.choices(("ioc", "day", "market", "fok", "minqty"), (55, 20, 8, 9, 8))[0]
        if kind == "day":
            return self._enter(c, sym, side, shares, price)
        if kind == "market":
            return self._enter(c, sym, side, shares, ouch.MARKET_PRICE, tif=0)
        if kind == "fok":
            return self._enter(c, sym, side, shares, price, tif=0, min_qty=shares)
        if kind == "minqty":
            return self._enter(c, sym, side, shares, price, tif=0,
                               min_qty=max(1, shares // r.randint(2, 4)))
        return self._enter(c, sym, side, shares, price, tif=0)

    def _pick_live(self, c: _Client):
        """A token the session believes live (None when it knows of none)."""
        while c.live:
            token = self.rng.choice(list(c.live))
            slot = self.core.tokens.lookup(c.session.index, token)
            if slot is not None:
                c.live[token][3] = self.core.book.pool.leaves[slot]
                return token
            if self.rng.random() < STALE_VIEW:
                return token
            del c.live[token]
        return None

    def _sent(self, c: _Client, messages: list[bytes]) -> bytes:
        """The frame carrying `messages`, after the core has acted on them."""
        for raw in messages:
            _, rec = ouch.decode_inbound(raw)
            if rec is not None:
                self.core.handle(c.session.index, self.ts, rec)
        self.core.take()
        return c.link.frame(messages)

    def _cancel(self, c: _Client, token: str, reduce: bool) -> bytes:
        order = c.live[token]
        if reduce and order[3] > 1:
            keep = self.rng.randint(1, order[3] - 1)
            order[3] = keep
        else:
            keep = 0
            del c.live[token]
        return ouch.CANCEL_ORDER.build(token=token, shares=keep)

    def _replace(self, c: _Client, token: str) -> bytes:
        r = self.rng
        sym, side, price, shares, display, tif = c.live[token]
        del c.live[token]
        how = r.random()
        if how < 0.5:
            step = sym.tick * r.randint(1, 3)
            price = price + step if r.random() < 0.5 else max(sym.tick, price - step)
        elif how < 0.8 and shares > 1:
            shares = r.randint(1, shares - 1)
        else:
            shares += 100 * r.randint(1, 5)
        new = c.new_token()
        c.live[new] = [sym, side, price, shares, display, tif]
        return ouch.REPLACE_ORDER.build(existing_token=token, replacement_token=new,
                                        shares=shares, price=price, tif=tif, display=display,
                                        iso="N", min_qty=0)

    def _mass_cancel(self, c: _Client) -> bytes:
        if self.rng.random() < 0.5:
            c.live.clear()
            return ouch.MASS_CANCEL.build(stock="")
        sym = self.rng.choice(self.symbols)
        for token in [t for t, o in c.live.items() if o[0] is sym]:
            del c.live[token]
        return ouch.MASS_CANCEL.build(stock=sym.stock)

    def _one_message(self, c: _Client, action: str) -> bytes:
        fill = len(c.live) / TARGET_LIVE_PER_SESSION
        if action in ("cancel", "reduce") and self.rng.random() > fill:
            action = "passive"
        elif action == "passive" and (len(c.live) >= MAX_LIVE_PER_SESSION
                                      or self.rng.random() < fill - 1):
            action = "cancel"
        token = self._pick_live(c) if action in ("cancel", "reduce", "replace") else None
        if token is None and action in ("cancel", "reduce", "replace"):
            action = "passive"
        if action == "passive":
            return self._passive(c)
        if action == "aggressive":
            return self._aggressive(c)
        if action in ("cancel", "reduce"):
            return self._cancel(c, token, action == "reduce")
        if action == "replace":
            return self._replace(c, token)
        return self._mass_cancel(c)

    # -- damage --------------------------------------------------------------

    def _malformed(self, c: _Client) -> bytes:
        r = self.rng
        kind = r.choice(MALFORMED_KINDS)
        sym = r.choice(self.symbols)
        if kind in ("off_tick", "out_of_band", "zero_shares", "huge_shares", "bad_side",
                    "wrong_firm", "unknown_stock"):
            side, price, shares, firm, stock = r.choice("BS"), self.mid[sym.index], 100, "", None
            if kind == "off_tick":
                price += r.randint(1, sym.tick - 1) if sym.tick > 1 else 0
            elif kind == "out_of_band":
                price = sym.band_high + sym.tick * r.randint(1, 100) if r.random() < 0.5 \
                    else max(sym.tick, sym.band_low - sym.tick * r.randint(1, 100))
            elif kind == "zero_shares":
                shares = 0
            elif kind == "huge_shares":
                shares = r.choice((10_000_000, 0xFFFFFFFF))
            elif kind == "bad_side":
                side = r.choice("XQ1 ")
            elif kind == "wrong_firm":
                firm = "ZZZZ"
            else:
                stock = "NOPE"
            return self._sent(c, [self._enter(c, sym, side, shares, price, firm=firm,
                                              stock=stock, track=False)])
        if kind == "unknown_token":
            return self._sent(c, [ouch.CANCEL_ORDER.build(token=c.new_token(), shares=0)])
        if kind == "unknown_type":
            return self._sent(c, [b"Q" + bytes(r.randint(0, 40))])
        if kind == "bad_length":
            good = self._passive(c, track=False)
            return self._sent(c, [good[:r.randint(1, len(good) - 1)] if r.random() < 0.7
                                  else good + b" "])
        seq = c.link.next_seq
        msg = ouch.CANCEL_ORDER.build(token=c.new_token(), shares=0)
        if kind == "seq_gap":
            return c.link.frame([msg], seq=seq + r.randint(1, 5))
        if kind == "seq_duplicate":
            return c.link.frame([msg], seq=max(1, seq - r.randint(1, 5)))
        if kind == "unknown_session":
            return c.link.raw_frame(moldudp64.pack_packet("NOSUCHSESS", seq, [msg]))
        if kind == "session_malformed":
            payload = moldudp64.pack_packet(c.session.name, seq, [msg])
            return c.link.raw_frame(payload[:-r.randint(1, len(msg))])
        frame = bytearray(c.link.frame([msg], seq=seq))    # does not use up the sequence
        ip_off = ETHERNET.size
        udp_off = ip_off + IPV4.size
        if kind == "ip_checksum":
            frame[ip_off + 10] ^= 1 << r.randrange(8)
        elif kind == "udp_checksum":
            frame[-1] ^= 1 << r.randrange(8)
        elif kind == "truncated":
            del frame[r.randint(0, len(frame) - 1):]
        elif kind == "mac_filter":
            frame[r.randrange(6)] ^= 0x40
        elif kind == "port_filter":
            frame[udp_off + 3] ^= 0x01
        elif kind == "not_ipv4":
            frame[12:14] = r.choice((b"\x86\xdd", b"\x81\x00", b"\x08\x06"))
        return bytes(frame)

    # -- the flow --------------------------------------------------------------

    def frames(self):
        """Yield (timestamp_ns, frame) until `orders` messages have been produced."""
        r = self.rng
        produced = 0
        while produced < self.opts.orders:
            self._advance()
            if self.admin is not None:
                release = [s for s, left in self.killed.items() if left <= 1]
                for s in list(self.killed):
                    self.killed[s] -= 1
                if release:
                    target = self.cfg.sessions[release[0]].name
                    del self.killed[release[0]]
                    produced += 1
                    yield self.ts, self._sent(self.admin, [ouch.KILL_SWITCH.build(
                        target_session=target, action=ouch.KILL_RELEASE)])
                    continue
                if r.random() < 1 / 20_000 and not self.killed:
                    victim = r.choice(self.clients)
                    self.killed[victim.session.index] = r.randint(50, 400)
                    victim.live.clear()
                    produced += 1
                    yield self.ts, self._sent(self.admin, [ouch.KILL_SWITCH.build(
                        target_session=victim.session.name, action=ouch.KILL_ENGAGE)])
                    continue
            if self.runaway:
                c = self.burst_client
            elif self.burst:
                c = self.burst_client
            else:
                c = r.choice(self.clients)
                if r.random() < 1 / 40_000:
                    self.runaway, self.burst_client = r.randint(400, 900), c
                elif r.random() < 0.003:
                    self.burst, self.burst_client = r.randint(4, 30), c
            if self.opts.malformed and r.random() < self.opts.malformed:
                produced += 1
                yield self.ts, self._malformed(c)
                continue
            if self.burst or self.runaway:
                action = "aggressive" if self.burst else "passive"
            else:
                action = r.choices(self.mix_names, self.mix_weights)[0]
            if action == "heartbeat":
                yield self.ts, c.link.frame([])
                continue
            if action == "multi":
                n = min(r.randint(2, 4), self.opts.orders - produced)
                msgs = [self._one_message(c, r.choice(("passive", "cancel", "replace")))
                        for _ in range(n)]
                produced += n
                yield self.ts, self._sent(c, msgs)
                continue
            produced += 1
            yield self.ts, self._sent(c, [self._one_message(c, action)])
