"""Property tests on random message streams (hypothesis).

An `Auditor` rebuilds what it can from the outputs alone (each session's view
from OUCH, the public book from ITCH) and checks it against the spec and the
reference book after every message:

- the book is never crossed; levels are sorted and consistent;
- quantity is conserved: each order's open quantity implied by Accepted,
  Replaced, Executed and Canceled equals what rests in the book;
- executions pair up, at the resting order's price, within the incoming limit;
- the ITCH-only rebuild of the displayed book equals the reference book, and
  every Order Executed hits the head of the best level (price-time priority);
- IOC, FOK, minimum quantity and post-only semantics;
- every output record packs and decodes; runs are deterministic.
"""

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickcore.refmodel import itch, ouch
from tickcore.refmodel.book import BUY, SELL
from tickcore.refmodel.config import STP_MODES, load_config
from tickcore.refmodel.ouch import MARKET_PRICE

from ..harness import Harness, cancel_bytes, enter_bytes, replace_bytes

STOCKS = ("AAA", "BBB")
REF = {"AAA": 1_000_000, "BBB": 200_000}
TICK = {"AAA": 100, "BBB": 1}
SESSIONS = ("S1", "S2", "S3")


def config(stp_f1, stp_f2, orders=24, levels=4, buckets=8, ways=2):
    return load_config({
        "capacity": {"orders": orders, "levels_per_side": levels,
                     "token_map_buckets": buckets, "token_map_ways": ways},
        "risk": {"rate_limit": 40, "rate_window_log2_ns": 16},
        "symbols": [{"stock": s, "ref_price": REF[s], "tick": TICK[s], "band_bp": 1000,
                     "collar_bp": 300} for s in STOCKS],
        "firms": [{"firm": "F1", "stp": stp_f1}, {"firm": "F2", "stp": stp_f2},
                  {"firm": "ADM", "stp": "none"}],
        "sessions": [{"name": n, "firm": f, "ip": f"10.0.1.{i}", "port": 40000 + i,
                      "mac": f"02:00:00:00:01:0{i}", "admin": n == "ADM"}
                     for i, (n, f) in enumerate((("S1", "F1"), ("S2", "F2"), ("S3", "F1"),
                                                 ("ADM", "ADM")), 1)],
    })


tokens = st.integers(0, 9).map(lambda i: f"K{i}")
sessions = st.sampled_from(SESSIONS)
stocks = st.sampled_from(STOCKS)
shares = st.one_of(*[st.integers(1, 400)] * 8, st.sampled_from([0, 1, 100, 100_000_000]))
offsets = st.integers(-6, 6)
displays = st.sampled_from("YYYYNPA")

enter_op = st.tuples(st.just("enter"), sessions, tokens, st.sampled_from("BSBST"), shares,
                     stocks, offsets, st.sampled_from(["day", "day", "ioc", "mkt", "fok",
                                                       "minq"]), displays,
                     st.sampled_from([0, 0, 0, 1, 37]))
cancel_op = st.tuples(st.just("cancel"), sessions, tokens, st.integers(0, 300))
replace_op = st.tuples(st.just("replace"), sessions, tokens, tokens, shares, offsets,
                       st.sampled_from(["day", "day", "ioc"]), displays)
mass_op = st.tuples(st.just("mass"), sessions, st.sampled_from(["", "AAA", "BBB", "ZZZ"]))
kill_op = st.tuples(st.just("kill"), st.sampled_from(["", "S1", "S2", "S3"]),
                    st.sampled_from("ERRR"))
rare_op = st.one_of(mass_op, kill_op, st.just(("noop",)))
ops_strategy = st.lists(st.one_of(enter_op, enter_op, enter_op, enter_op, enter_op, cancel_op,
                                  cancel_op, replace_op, replace_op, replace_op, rare_op),
                        min_size=5, max_size=120)


def op_bytes(op):
    kind = op[0]
    if kind == "noop":
        return "S1", ouch.CANCEL_ORDER.build(token="NOTHING", shares=0)
    if kind == "enter":
        _, s, tok, side, qty, stock, off, tif, display, odd = op
        price = REF[stock] + off * TICK[stock] + (odd if odd == 37 else 0)
        kw = {"display": display}
        if tif == "ioc":
            kw["tif"] = 0
        elif tif == "mkt":
            price, kw["tif"] = MARKET_PRICE, 0
        elif tif == "fok":
            kw.update(tif=0, min_qty=qty)
        elif tif == "minq":
            kw.update(tif=0, min_qty=max(1, qty // 2))
        return s, enter_bytes(tok, side, qty, stock, price, **kw)
    if kind == "cancel":
        return op[1], cancel_bytes(op[2], op[3])
    if kind == "replace":
        _, s, old, new, qty, price, tif, display = op
        if price < 1000:                  # an offset in AAA ticks from the reference
            price = REF["AAA"] + price * TICK["AAA"]
        return s, replace_bytes(old, new, qty, price, tif=0 if tif == "ioc" else 99999,
                                display=display)
    if kind == "mass":
        return op[1], ouch.MASS_CANCEL.build(stock=op[2])
    return "ADM", ouch.KILL_SWITCH.build(target_session=op[1], action=op[2])


class Auditor:
    def __init__(self, h: Harness):
        self.h = h
        self.leaves = defaultdict(int)           # (session, token) -> open qty from OUCH
        self.limit = {}                          # (session, token) -> (buy, limit price)
        self.itch_orders = {}                    # ref -> [stock, side, price, shares]
        self.itch_queue = defaultdict(list)      # (stock, side, price) -> [ref] FIFO

    def message(self, session, raw):
        oe, md = self.h.send(session, raw)
        _, msg = ouch.decode_inbound(raw)
        for _, rec in oe:
            assert rec.layout.unpack(rec.layout.pack(rec)) == rec
        for rec in md:
            assert rec.layout.unpack(rec.layout.pack(rec)) == rec
        self._check_ouch(session, msg, oe)
        self._apply_itch(md)
        self._check_book()

    # -- OUCH: each session's view -------------------------------------------------

    def _check_ouch(self, session, msg, oe):
        executed_by_incoming = 0
        fills = defaultdict(list)
        incoming = None
        for s, rec in oe:
            name = type(rec).__name__
            if name == "Accepted":
                key = (s, rec.token)
                assert s == session and self.leaves[key] == 0
                self.leaves[key] = rec.shares
                market = rec.price == MARKET_PRICE
                self.limit[key] = (rec.side == "B", None if market else rec.price)
                incoming = key
            elif name == "Replaced":
                old, new = (s, rec.previous_token), (s, rec.replacement_token)
                assert s == session and self.leaves[old] > 0
                self.leaves[old] = 0
                self.leaves[new] = rec.shares
                self.limit[new] = (self.limit[old][0], rec.price)
                incoming = new
            elif name == "Executed":
                key = (s, rec.token)
                self.leaves[key] -= rec.shares
                assert self.leaves[key] >= 0
                fills[rec.match_number].append((key, rec))
                if rec.liquidity == "R":
                    executed_by_incoming += rec.shares
            elif name == "Canceled":
                key = (s, rec.token)
                self.leaves[key] -= rec.decrement
                assert self.leaves[key] >= 0 and rec.decrement > 0
            elif name == "Rejected":
                assert s == session
        self._check_self_trade(incoming, oe, fills)
        for pair in fills.values():
            assert len(pair) == 2
            (rk, resting), (ik, inc) = pair
            assert resting.liquidity in "AJ" and inc.liquidity == "R" and ik == incoming
            assert resting.shares == inc.shares and resting.price == inc.price
            assert resting.price == self.limit[rk][1]            # at the resting price
            buy, limit = self.limit[ik]
            if limit is not None:
                assert inc.price <= limit if buy else inc.price >= limit
        if incoming is not None and type(msg).__name__ in ("EnterOrder", "ReplaceOrder"):
            ioc = msg.tif == 0 or msg.price == MARKET_PRICE
            if ioc:
                assert self.leaves[incoming] == 0                # IOC never rests
            if msg.min_qty:
                assert executed_by_incoming == 0 or executed_by_incoming >= msg.min_qty
            if msg.display in "PL":
                assert executed_by_incoming == 0                 # post-only never takes

    def _firm(self, session_name):
        return self.h.cfg.session_by_name(session_name.ljust(10)).firm

    def _check_self_trade(self, incoming, oe, fills):
        """Self-trade prevention by the incoming order's firm mode (section 8)."""
        if incoming is None:
            return
        firm = self._firm(incoming[0])
        mode = self.h.cfg.session_by_name(incoming[0].ljust(10)).stp
        for pair in fills.values():
            if self._firm(pair[0][0][0]) == firm:
                assert mode == "none", "same-firm execution under self-trade prevention"
        q = [(i, (s, r.token) == incoming) for i, (s, r) in enumerate(oe)
             if type(r).__name__ == "Canceled" and r.reason == "Q"]
        resting_q = [i for i, inc in q if not inc]
        incoming_q = [i for i, inc in q if inc]
        if mode == "none":
            assert not q
        elif mode == "cancel_newest":
            assert not resting_q and len(incoming_q) <= 1
        elif mode == "cancel_oldest":
            assert not incoming_q
        else:
            assert len(resting_q) <= 1 and len(incoming_q) == len(resting_q)
            if resting_q:
                assert incoming_q[0] == resting_q[0] + 1 == len(oe) - 1

    # -- ITCH: the public book -----------------------------------------------------

    def _apply_itch(self, md):
        for rec in md:
            name = type(rec).__name__
            if name == "AddOrder":
                o = [rec.stock, rec.side, rec.price, rec.shares]
                self.itch_orders[rec.order_ref] = o
                self.itch_queue[tuple(o[:3])].append(rec.order_ref)
            elif name == "OrderExecuted":
                o = self.itch_orders[rec.order_ref]
                q = self.itch_queue[tuple(o[:3])]
                assert q[0] == rec.order_ref                       # head of its level
                best = self._best(o[0], o[1])
                assert best == o[2]                                # best level first
                self._reduce(rec.order_ref, rec.shares)
            elif name == "OrderCancel":
                self._reduce(rec.order_ref, rec.shares)
                assert rec.order_ref in self.itch_orders           # partial only
            elif name == "OrderDelete":
                self._reduce(rec.order_ref, self.itch_orders[rec.order_ref][3])
            elif name == "OrderReplace":
                o = self.itch_orders[rec.original_ref]
                self._reduce(rec.original_ref, o[3])
                n = [o[0], o[1], rec.price, rec.shares]
                self.itch_orders[rec.new_ref] = n
                self.itch_queue[tuple(n[:3])].append(rec.new_ref)

    def _best(self, stock, side):
        prices = [k[2] for k, q in self.itch_queue.items() if q and k[0] == stock
                  and k[1] == side]
        return max(prices) if side == "B" else min(prices)

    def _reduce(self, ref, qty):
        o = self.itch_orders[ref]
        o[3] -= qty
        assert o[3] >= 0
        if o[3] == 0:
            self.itch_queue[tuple(o[:3])].remove(ref)
            del self.itch_orders[ref]

    # -- the reference book ----------------------------------------------------------

    def _check_book(self):
        core = self.h.core
        book, pool = core.book, core.book.pool
        live = {}
        for sym in self.h.cfg.symbols:
            for side in (BUY, SELL):
                levels = book.levels(sym.index, side)
                prices = [lv.price for lv in levels]
                assert prices == sorted(prices, reverse=side == BUY)
                assert len(set(prices)) == len(prices) <= book.levels_per_side
                for lv in levels:
                    slots = list(book.queue(lv))
                    assert slots and lv.displayed == sum(pool.leaves[s] for s in slots
                                                         if not pool.hidden[s])
                    itch_refs = self.itch_queue[(sym.stock, "B" if side == BUY else "S",
                                                 lv.price)]
                    assert itch_refs == [pool.ref[s] for s in slots if not pool.hidden[s]]
                    for s in slots:
                        live[(self.h.cfg.sessions[pool.session[s]].name.strip(),
                              pool.token[s])] = pool.leaves[s]
            bid, ask = book.best(sym.index, BUY), book.best(sym.index, SELL)
            assert bid is None or ask is None or bid.price < ask.price   # never crossed
        assert {k: v for k, v in self.leaves.items() if v} == live       # conservation
        assert len(core.tokens) == len(live) == pool.live
        assert sum(len(q) for q in self.itch_queue.values()) == len(self.itch_orders)


def run_ops(cfg, ops):
    h = Harness(cfg)
    auditor = Auditor(h)
    out = []
    for op in ops:
        session, raw = op_bytes(op)
        auditor.message(session, raw)
    oe, md = h.core.take()
    out.append((oe, md))
    return h, auditor


modes = st.sampled_from(STP_MODES)


def live_tokens_of(h, session):
    pool, sid = h.core.book.pool, h.sid(session)
    return [pool.token[s].strip() for sym in h.cfg.symbols for s in h.core.book.walk(sym.index)
            if pool.session[s] == sid]


def random_op(rng, h, fresh):
    """One op of a long seeded stream, weighted like a busy book; cancels and
    replaces mostly name the session's live orders, as a client's would."""
    s = rng.choice(SESSIONS)
    live = live_tokens_of(h, s)
    known = rng.choice(live) if live and rng.random() < 0.85 else f"K{rng.randrange(24)}"
    r = rng.random()
    if r < 0.45:
        return ("enter", s, fresh(), rng.choice("BBSST"),
                rng.choice([rng.randint(1, 400)] * 30 + [0, 100_000_000]),
                rng.choice(STOCKS), rng.randint(-6, 6),
                rng.choice(["day"] * 6 + ["ioc", "mkt", "fok", "minq"]),
                rng.choice("YYYYYYNNPA"), rng.choice([0] * 20 + [1, 37]))
    if r < 0.68:
        return ("cancel", s, known, rng.choice([0, 0, rng.randint(1, 300)]))
    if r < 0.97:
        slot = h.core.tokens.lookup(h.sid(s), known.ljust(14))
        price = rng.randint(-6, 6)
        if slot is not None:
            sym = h.cfg.symbols[h.core.book.pool.symbol[slot]]
            price = h.core.book.pool.price[slot] + rng.choice([0, 0, price]) * sym.tick
        return ("replace", s, known, rng.choice([fresh(), known, f"K{rng.randrange(24)}"]),
                rng.randint(1, 400), price, rng.choice(["day"] * 5 + ["ioc"]),
                rng.choice("YYYYYNP"))
    if r < 0.99:
        return ("mass", s, rng.choice(["", "AAA", "BBB", "ZZZ"]))
    return ("kill", rng.choice(["", "S1", "S2", "S3"]), rng.choice("ERR"))


@pytest.mark.parametrize("seed", range(24))
def test_long_seeded_streams(seed):
    import itertools
    import random
    rng = random.Random(seed)
    cfg = config(rng.choice(STP_MODES), rng.choice(STP_MODES),
                 orders=rng.choice([8, 24, 200]), levels=rng.choice([2, 4, 16]),
                 buckets=rng.choice([2, 8, 64]), ways=rng.choice([1, 2, 4]))
    h = Harness(cfg)
    auditor = Auditor(h)
    counter = itertools.count()
    for _ in range(1500):
        op = random_op(rng, h, lambda: f"N{next(counter)}")
        session, raw = op_bytes(op)
        try:
            auditor.message(session, raw)
        except AssertionError:
            print(f"seed {seed}: failed at {op}")
            raise
    c = h.core.counters
    assert c["executions"] > 0 and c["replaced"] > 0, f"seed {seed}: stream did not trade"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modes, modes, ops_strategy)
def test_random_streams_keep_every_invariant(stp1, stp2, ops):
    run_ops(config(stp1, stp2), ops)


@settings(max_examples=60, deadline=None)
@given(modes, ops_strategy)
def test_tiny_capacity_streams(stp1, ops):
    run_ops(config(stp1, "none", orders=3, levels=2, buckets=2, ways=1), ops)


@settings(max_examples=40, deadline=None)
@given(modes, modes, ops_strategy)
def test_deterministic(stp1, stp2, ops):
    cfg = config(stp1, stp2)
    runs = []
    for _ in range(2):
        h = Harness(cfg)
        trace = []
        for op in ops:
            session, raw = op_bytes(op)
            trace.append(h.send(session, raw))
        runs.append(trace)
    assert runs[0] == runs[1]


def test_auditor_catches_a_broken_book():
    """The auditor is not vacuous: corrupting the book is detected."""
    h = Harness(config("none", "none"))
    a = Auditor(h)
    a.message("S1", enter_bytes("K1", "B", 100, "AAA", 1_000_000))
    h.core.book.pool.leaves[0] += 1
    try:
        a._check_book()
    except AssertionError:
        return
    raise AssertionError("a corrupted book went unnoticed")


def test_itch_rebuild_matches_on_a_generated_flow():
    """The ITCH-only rebuild over a realistic flow equals the reference book."""
    from tickcore.host.gen import FlowGenerator, GenOptions
    from tickcore.refmodel.decode import decode_records
    from tickcore.refmodel.venue import Venue, run_records
    cfg = load_config()
    recs = list(FlowGenerator(cfg, GenOptions(seed=3, orders=3000, malformed=0.02)).frames())
    v = Venue(cfg)
    out = list(run_records(cfg, recs, venue=v))
    layouts = {lay.name: lay for lay in itch.MESSAGES.values()}
    h = Harness.__new__(Harness)
    h.cfg, h.core = cfg, v.core
    a = Auditor(h)
    for d in decode_records(cfg, out):
        if d.get("stream") == "itch" and d["type"] in layouts:
            lay = layouts[d["type"]]
            rec = lay.record(*(d[f.name] if f.kind != "a" else d[f.name].ljust(f.size)
                               for f in lay.fields))
            a._apply_itch([rec])
    for sym in cfg.symbols:
        for side in (BUY, SELL):
            for lv in v.core.book.levels(sym.index, side):
                refs = [v.core.book.pool.ref[s] for s in v.core.book.queue(lv)
                        if not v.core.book.pool.hidden[s]]
                assert a.itch_queue[(sym.stock, "B" if side == BUY else "S",
                                     lv.price)] == refs
    assert sum(len(q) for q in a.itch_queue.values()) == sum(
        1 for sym in cfg.symbols for s in v.core.book.walk(sym.index)
        if not v.core.book.pool.hidden[s])
