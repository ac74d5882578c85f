"""Test helpers: build wire messages and drive a reference core message by message.

Messages are packed to bytes and decoded again (ouch.decode_inbound) before
reaching the core, so every directed test also exercises the codec.
"""

from __future__ import annotations

from tickcore.refmodel import ouch
from tickcore.refmodel.config import load_config
from tickcore.refmodel.matcher import MatchingCore

T0 = 1_795_962_600_000_000_000        # an ingress timestamp (ns since epoch)
DAY = 99999


def enter_bytes(token, side, shares, stock, price, *, tif=DAY, display="Y", min_qty=0,
                firm="", capacity="A", iso="N", cross="N", customer=" ") -> bytes:
    return ouch.ENTER_ORDER.build(token=token, side=side, shares=shares, stock=stock,
                                  price=price, tif=tif, firm=firm, display=display,
                                  capacity=capacity, iso=iso, min_qty=min_qty,
                                  cross_type=cross, customer_type=customer)


def replace_bytes(old, new, shares, price, *, tif=DAY, display="Y", min_qty=0, iso="N"):
    return ouch.REPLACE_ORDER.build(existing_token=old, replacement_token=new, shares=shares,
                                    price=price, tif=tif, display=display, iso=iso,
                                    min_qty=min_qty)


def cancel_bytes(token, shares=0) -> bytes:
    return ouch.CANCEL_ORDER.build(token=token, shares=shares)


def small_config(**overrides):
    """Two symbols, three sessions of two firms, one admin; small capacity."""
    cfg = {
        "symbols": [
            {"stock": "AAA", "ref_price": 100_0000, "tick": 100, "band_bp": 1000,
             "collar_bp": 500},
            {"stock": "BBB", "ref_price": 20_0000, "tick": 1, "band_bp": 500,
             "collar_bp": 200},
        ],
        "firms": [{"firm": "F1", "stp": "none"}, {"firm": "F2", "stp": "none"},
                  {"firm": "ADM", "stp": "none"}],
        "sessions": [
            {"name": "S1", "firm": "F1", "ip": "10.0.1.1", "port": 40001,
             "mac": "02:00:00:00:01:01"},
            {"name": "S2", "firm": "F2", "ip": "10.0.1.2", "port": 40002,
             "mac": "02:00:00:00:01:02"},
            {"name": "S3", "firm": "F1", "ip": "10.0.1.3", "port": 40003,
             "mac": "02:00:00:00:01:03"},
            {"name": "ADMIN", "firm": "ADM", "ip": "10.0.1.9", "port": 40009,
             "mac": "02:00:00:00:01:09", "admin": True},
        ],
    }
    for key, val in overrides.items():
        cfg[key] = val
    return load_config(cfg)


class Harness:
    """A MatchingCore addressed by session name; each call returns what it emitted."""

    def __init__(self, cfg=None, open_day=True):
        self.cfg = cfg or small_config()
        self.core = MatchingCore(self.cfg)
        self.ts = T0
        if open_day:
            self.core.open(self.ts)
            self.core.take()

    def sid(self, name: str) -> int:
        return self.cfg.session_by_name(name.ljust(10)).index

    def send(self, session: str, raw: bytes, ts: int | None = None):
        """Act on one message; returns (oe, md): oe as [(session name, record)]."""
        self.ts = self.ts + 1000 if ts is None else ts
        reason, msg = ouch.decode_inbound(raw)
        assert reason is None, reason
        self.core.handle(self.sid(session), self.ts, msg)
        oe, md = self.core.take()
        return [(self.cfg.sessions[s].name.strip(), r) for s, r in oe], md

    def enter(self, session, token, side, shares, stock, price, **kw):
        return self.send(session, enter_bytes(token, side, shares, stock, price, **kw))

    def replace(self, session, old, new, shares, price, **kw):
        return self.send(session, replace_bytes(old, new, shares, price, **kw))

    def cancel(self, session, token, shares=0):
        return self.send(session, cancel_bytes(token, shares))

    def kill(self, target: str, action: str, session="ADMIN"):
        return self.send(session, ouch.KILL_SWITCH.build(target_session=target,
                                                         action=action))

    def mass_cancel(self, session, stock=""):
        return self.send(session, ouch.MASS_CANCEL.build(stock=stock))

    # -- book inspection ---------------------------------------------------------

    def levels(self, stock: str, side: int):
        """[(price, [(token, leaves), ...]), ...] best first."""
        sym = self.cfg.symbol_by_stock(stock.ljust(8))
        pool = self.core.book.pool
        out = []
        for level in self.core.book.levels(sym.index, side):
            out.append((level.price, [(pool.token[s].strip(), pool.leaves[s])
                                      for s in self.core.book.queue(level)]))
        return out

    def live_tokens(self):
        pool = self.core.book.pool
        return sorted(pool.token[s].strip() for sym in self.cfg.symbols
                      for s in self.core.book.walk(sym.index))


def kinds(records):
    """Message type names of OUCH (session, record) pairs or ITCH records."""
    out = []
    for r in records:
        rec = r if hasattr(r, "_fields") else r[1]
        out.append(type(rec).__name__)
    return out
