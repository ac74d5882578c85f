"""Self-trade prevention, the risk gate, kill switch, mass cancel and capacity
(docs/protocol.md sections 3, 7, 8, 9); expectations worked out by hand."""

import pytest

from tickcore.refmodel import ouch
from tickcore.refmodel.book import BUY, SELL
from tickcore.refmodel.ouch import MARKET_PRICE
from tickcore.refmodel.tokenmap import TokenMap

from ..harness import Harness, kinds, small_config

P100 = 1_000_000


def stp(mode):
    return Harness(small_config(firms=[{"firm": "F1", "stp": mode},
                                       {"firm": "F2", "stp": "none"},
                                       {"firm": "ADM", "stp": "none"}]))


def asks_of_two_firms(h):
    h.enter("S1", "A1", "S", 100, "AAA", P100)     # F1, ref 1
    h.enter("S2", "A2", "S", 100, "AAA", P100)     # F2, ref 2


# -- self-trade prevention ----------------------------------------------------


def test_stp_cancel_newest_cancels_the_incoming_order():
    h = stp("cancel_newest")
    asks_of_two_firms(h)
    oe, md = h.enter("S3", "B1", "B", 300, "AAA", P100)     # S3 is firm F1 too
    assert [(s, type(r).__name__) for s, r in oe] == [("S3", "Accepted"), ("S3", "Canceled")]
    assert oe[1][1].decrement == 300 and oe[1][1].reason == "Q"
    assert md == []
    assert h.levels("AAA", SELL) == [(P100, [("A1", 100), ("A2", 100)])]


def test_stp_cancel_newest_after_trading_with_another_firm():
    h = stp("cancel_newest")
    h.enter("S2", "A2", "S", 100, "AAA", P100)
    h.enter("S1", "A1", "S", 100, "AAA", P100)
    oe, md = h.enter("S3", "B1", "B", 300, "AAA", P100)
    assert kinds(oe) == ["Accepted", "Executed", "Executed", "Canceled"]
    assert oe[-1][1].decrement == 200 and oe[-1][1].reason == "Q"
    assert kinds(md) == ["OrderExecuted"]
    assert h.levels("AAA", SELL) == [(P100, [("A1", 100)])]


def test_stp_cancel_oldest_cancels_resting_and_continues():
    h = stp("cancel_oldest")
    asks_of_two_firms(h)
    oe, md = h.enter("S3", "B1", "B", 300, "AAA", P100)
    assert [(s, type(r).__name__) for s, r in oe] == [
        ("S3", "Accepted"), ("S1", "Canceled"), ("S2", "Executed"), ("S3", "Executed")]
    assert oe[1][1].decrement == 100 and oe[1][1].reason == "Q"
    assert kinds(md) == ["OrderDelete", "OrderExecuted", "AddOrder"]
    assert md[0].order_ref == 1 and md[2].shares == 200
    assert h.levels("AAA", SELL) == []
    assert h.levels("AAA", BUY) == [(P100, [("B1", 200)])]


def test_stp_cancel_both():
    h = stp("cancel_both")
    asks_of_two_firms(h)
    oe, md = h.enter("S3", "B1", "B", 300, "AAA", P100)
    assert [(s, type(r).__name__, r.decrement) for s, r in oe[1:]] == [
        ("S1", "Canceled", 100), ("S3", "Canceled", 300)]
    assert all(r.reason == "Q" for _, r in oe[1:])
    assert kinds(md) == ["OrderDelete"]
    assert h.levels("AAA", SELL) == [(P100, [("A2", 100)])]
    assert h.levels("AAA", BUY) == []


def test_stp_none_lets_a_firm_trade_with_itself():
    h = stp("none")
    asks_of_two_firms(h)
    oe, _ = h.enter("S3", "B1", "B", 100, "AAA", P100)
    assert [(s, r.token.strip()) for s, r in oe[1:]] == [("S1", "A1"), ("S3", "B1")]


def test_minimum_quantity_counts_what_stp_would_let_trade():
    h = stp("cancel_newest")
    asks_of_two_firms(h)
    oe, md = h.enter("S3", "M1", "B", 100, "AAA", P100, tif=0, min_qty=100)
    assert kinds(oe) == ["Accepted", "Canceled"] and oe[1][1].reason == "I" and md == []
    h = stp("cancel_oldest")
    asks_of_two_firms(h)
    oe, md = h.enter("S3", "M1", "B", 100, "AAA", P100, tif=0, min_qty=100)
    assert kinds(oe) == ["Accepted", "Canceled", "Executed", "Executed"]
    assert kinds(md) == ["OrderDelete", "OrderExecuted"]


# -- risk gate ---------------------------------------------------------------


@pytest.mark.parametrize("price, reason", [
    (900_000, None), (899_900, "B"), (1_100_000, None), (1_100_100, "B"),
    (1_000_050, "X"), (0, "X")])
def test_band_and_tick(price, reason):
    h = Harness()
    oe, _ = h.enter("S1", "T", "B", 100, "AAA", price)
    assert (oe[0][1].reason if reason else "accepted") == (reason or "accepted")


@pytest.mark.parametrize("kw, reason", [
    (dict(side="X"), "O"), (dict(tif=5), "O"), (dict(capacity="Z"), "O"),
    (dict(iso="Q"), "O"), (dict(customer="Q"), "O"), (dict(cross="O"), "R"),
    (dict(display="Q"), "D"), (dict(display="P", tif=0), "D"),
    (dict(display="P", price=MARKET_PRICE), "D"), (dict(shares=0), "Q"),
    (dict(min_qty=101, tif=0), "N"), (dict(min_qty=50), "N"),
    (dict(shares=100_001), "Z"), (dict(firm="F2"), "L"), (dict(stock="ZZZ"), "S"),
    (dict(shares=60_000), "n"), (dict(shares=48_000, price=MARKET_PRICE, tif=0), "n"),
    (dict(side="X", shares=0), "O"), (dict(stock="ZZZ", price=1), "S"),
])
def test_reject_reasons_and_their_order(kw, reason):
    args = dict(side="B", shares=100, stock="AAA", price=P100)
    args.update(kw)
    h = Harness()
    oe, md = h.enter("S1", "T", args.pop("side"), args.pop("shares"), args.pop("stock"),
                     args.pop("price"), **args)
    assert kinds(oe) == ["Rejected"] and oe[0][1].reason == reason and md == []
    assert h.core.counters["reject_" + ouch.REJECT_NAMES[reason]] == 1


def test_limits_at_the_boundary_are_accepted():
    h = Harness()
    # max order qty 100 000 (on BBB at $20.00); notional exactly $5,000,000 on AAA
    for token, shares, stock, price in (("Q", 100_000, "BBB", 200_000),
                                        ("N", 50_000, "AAA", P100)):
        oe, _ = h.enter("S1", token, "B", shares, stock, price)
        assert kinds(oe) == ["Accepted"], token
    oe, _ = h.enter("S1", "F", "B", 100, "AAA", P100, firm="F1")
    assert kinds(oe) == ["Accepted"] and oe[0][1].firm == "F1".ljust(4)


def test_rate_limit_fixed_window():
    cfg = small_config(risk={"rate_limit": 3, "rate_window_log2_ns": 20})
    h = Harness(cfg)
    window = 1 << 20
    base = (h.ts // window + 1) * window          # start of the next window
    outcomes = []
    for i, dt in enumerate((0, 10, 20, 30, 40)):
        oe, _ = h.send("S1", _enter(f"R{i}", 990_000 if i != 1 else 1), ts=base + dt)
        outcomes.append(oe[0][1].reason if type(oe[0][1]).__name__ == "Rejected" else "ok")
    # R1 is rejected (tick) but still counts; R3 and R4 exceed the limit of 3
    assert outcomes == ["ok", "X", "ok", "V", "V"]
    oe, _ = h.send("S1", ouch.CANCEL_ORDER.build(token="R0", shares=0), ts=base + 50)
    assert kinds(oe) == ["Canceled"]                # cancels are never limited
    oe, _ = h.send("S2", _enter("OTHER", 990_000), ts=base + 60)
    assert kinds(oe) == ["Accepted"]                # per session
    oe, _ = h.send("S1", _enter("R5", 990_000), ts=base + window)
    assert kinds(oe) == ["Accepted"]                # next window


def _enter(token, price):
    return ouch.ENTER_ORDER.build(token=token, side="B", shares=100, stock="AAA", price=price,
                                  tif=99999, firm="", display="Y", capacity="A", iso="N",
                                  min_qty=0, cross_type="N", customer_type=" ")


# -- kill switch and mass cancel -------------------------------------------------


def book_of_two_sessions():
    h = Harness()
    h.enter("S1", "a", "B", 100, "AAA", 990_000)
    h.enter("S2", "b", "B", 100, "AAA", 995_000)
    h.enter("S1", "c", "S", 100, "AAA", 1_010_000)
    h.enter("S1", "d", "B", 100, "AAA", 995_000, display="N")
    h.enter("S1", "e", "B", 100, "BBB", 199_000)
    h.enter("S1", "f", "S", 100, "AAA", 1_005_000)
    return h


def test_kill_switch_session_cancels_in_book_walk_order_and_blocks():
    h = book_of_two_sessions()
    oe, md = h.kill("S1", "E")
    assert [(s, r.token.strip(), r.reason) for s, r in oe] == [
        ("S1", "d", "S"), ("S1", "a", "S"), ("S1", "f", "S"), ("S1", "c", "S"),
        ("S1", "e", "S")]
    assert [r.order_ref for r in md] == [1, 6, 3, 5]          # d is hidden: no delete
    assert h.live_tokens() == ["b"]
    oe, _ = h.enter("S1", "g", "B", 100, "AAA", 990_000)
    assert oe[0][1].reason == "a"
    oe, _ = h.replace("S1", "zz", "zz2", 100, 990_000)
    assert oe[0][1].reason == "G"                              # lookup comes first
    oe, _ = h.enter("S2", "h", "B", 100, "AAA", 990_000)
    assert kinds(oe) == ["Accepted"]
    oe, _ = h.kill("S1", "R")
    assert oe == [] and h.core.counters["kill_released"] == 1
    oe, _ = h.enter("S1", "g", "B", 100, "AAA", 990_000)
    assert kinds(oe) == ["Accepted"]


def test_kill_switch_whole_venue():
    h = book_of_two_sessions()
    oe, _ = h.kill("", "E")
    assert len(oe) == 6 and h.live_tokens() == []
    for s in ("S1", "S2", "ADMIN"):
        oe, _ = h.enter(s, "n", "B", 100, "AAA", 990_000)
        assert oe[0][1].reason == "a"
    h.kill("", "R")
    oe, _ = h.enter("S2", "n", "B", 100, "AAA", 990_000)
    assert kinds(oe) == ["Accepted"]


def test_kill_switch_misuse_is_ignored_and_counted():
    h = book_of_two_sessions()
    assert h.kill("S2", "E", session="S1") == ([], [])
    assert h.kill("NOBODY", "E") == ([], [])
    assert h.kill("S2", "X") == ([], [])
    c = h.core.counters
    assert (c["kill_not_admin"], c["kill_unknown_target"], c["kill_invalid_action"]) == \
        (1, 1, 1)
    assert len(h.live_tokens()) == 6


def test_mass_cancel_one_symbol_then_all():
    h = book_of_two_sessions()
    oe, md = h.mass_cancel("S1", "AAA")
    assert [r.token.strip() for _, r in oe] == ["d", "a", "f", "c"]
    assert all(r.reason == "U" for _, r in oe) and len(md) == 3
    assert h.live_tokens() == ["b", "e"]
    oe, _ = h.mass_cancel("S1")
    assert [r.token.strip() for _, r in oe] == ["e"]
    assert h.mass_cancel("S1", "NOPE") == ([], [])
    assert h.core.counters["mass_cancel_unknown_stock"] == 1
    assert h.live_tokens() == ["b"]


# -- capacity ------------------------------------------------------------------


def test_order_pool_full():
    h = Harness(small_config(capacity={"orders": 2}))
    h.enter("S1", "a", "B", 100, "AAA", 990_000)
    h.enter("S1", "b", "S", 100, "AAA", 1_010_000)
    oe, md = h.enter("S2", "c", "B", 100, "AAA", 990_000)
    assert oe[0][1].reason == "F" and md == []
    assert h.core.counters["capacity_orders"] == 1
    oe, _ = h.enter("S2", "d", "B", 50, "AAA", 1_010_000, tif=0)   # IOC needs no slot
    assert kinds(oe) == ["Accepted", "Executed", "Executed"]
    h.cancel("S1", "a")
    oe, _ = h.enter("S2", "c", "B", 100, "AAA", 990_000)
    assert kinds(oe) == ["Accepted"]


def test_price_levels_full():
    h = Harness(small_config(capacity={"levels_per_side": 2}))
    h.enter("S1", "a", "B", 100, "AAA", 990_000)
    h.enter("S1", "b", "B", 100, "AAA", 980_000)
    oe, _ = h.enter("S1", "c", "B", 100, "AAA", 970_000)
    assert oe[0][1].reason == "F" and h.core.counters["capacity_levels"] == 1
    oe, _ = h.enter("S1", "d", "B", 100, "AAA", 980_000)           # existing level
    assert kinds(oe) == ["Accepted"]
    oe, _ = h.enter("S1", "e", "S", 100, "AAA", 1_010_000)         # other side
    assert kinds(oe) == ["Accepted"]
    oe, _ = h.replace("S1", "a", "a2", 100, 960_000)               # alone at its level
    assert kinds(oe) == ["Replaced"]
    oe, _ = h.replace("S1", "b", "b2", 100, 950_000)               # d shares its level
    assert oe[0][1].reason == "F"
    assert h.levels("AAA", BUY) == [(980_000, [("b", 100), ("d", 100)]),
                                    (960_000, [("a2", 100)])]


def test_token_map_bucket_full():
    h = Harness(small_config(capacity={"token_map_buckets": 1, "token_map_ways": 2}))
    h.enter("S1", "a", "B", 100, "AAA", 990_000)
    h.enter("S2", "a", "B", 100, "AAA", 990_000)        # same token, other session
    oe, _ = h.enter("S1", "b", "B", 100, "AAA", 990_000)
    assert oe[0][1].reason == "F" and h.core.counters["capacity_token_map"] == 1
    oe, _ = h.replace("S1", "a", "a2", 100, 980_000)     # same bucket: its way is freed
    assert kinds(oe) == ["Replaced"]


def test_token_map_geometry_and_collisions():
    tm = TokenMap(4, 1)
    same = [t for t in (f"T{i}".ljust(14) for i in range(200))
            if tm.bucket(0, t) == tm.bucket(0, "T0".ljust(14))]
    assert len(same) >= 3
    tm.insert(0, same[0], 7)
    assert not tm.has_room(0, same[1]) and tm.lookup(0, same[1]) is None
    assert tm.lookup(0, same[0]) == 7
    tm.delete(0, same[0])
    assert tm.has_room(0, same[1]) and len(tm) == 0
    # bucket = crc32(session byte + token) & (buckets - 1), as documented
    import zlib
    assert tm.bucket(3, same[2]) == zlib.crc32(b"\x03" + same[2].encode()) & 3


def test_duplicate_live_token_rejected_and_reusable_after_death():
    h = Harness()
    h.enter("S1", "a", "B", 100, "AAA", 990_000)
    oe, _ = h.enter("S1", "a", "B", 100, "AAA", 990_000)
    assert oe[0][1].reason == "U"
    oe, _ = h.enter("S2", "a", "B", 100, "AAA", 990_000)           # per session
    assert kinds(oe) == ["Accepted"]
    h.cancel("S1", "a")
    oe, _ = h.enter("S1", "a", "B", 100, "AAA", 990_000)
    assert kinds(oe) == ["Accepted"]
