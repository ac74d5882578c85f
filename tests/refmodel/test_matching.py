"""Directed matching scenarios; expected outcomes worked out by hand from
docs/protocol.md section 8.

small_config: AAA ref $100.00 tick $0.01 band 10% [90.00, 110.00] collar 5%
[95.00, 105.00]; BBB ref $20.0000 tick $0.0001.  Sessions S1 and S3 belong to
firm F1, S2 to F2; self-trade prevention is off unless a test turns it on.
"""

from tickcore.refmodel import itch, ouch
from tickcore.refmodel.book import BUY, SELL
from tickcore.refmodel.ouch import MARKET_PRICE

from ..harness import T0, Harness, kinds

TOD = T0 % 86_400_000_000_000
P100 = 1_000_000                      # $100.00


def test_time_of_day_constant():
    assert TOD == 52_200_000_000_000  # 14:30:00 UTC


def test_day_order_rests_accepted_and_published():
    h = Harness()
    oe, md = h.enter("S1", "T1", "B", 300, "AAA", 999_900)
    assert oe == [("S1", ouch.ACCEPTED.record(
        timestamp=TOD + 1000, token="T1".ljust(14), side="B", shares=300,
        stock="AAA".ljust(8), price=999_900, tif=99999, firm="F1".ljust(4), display="Y",
        order_ref=1, capacity="A", iso="N", min_qty=0, cross_type="N", order_state="L",
        bbo_weight=" "))]
    assert md == [itch.ADD_ORDER.record(locate=1, tracking=0, timestamp=TOD + 1000,
                                        order_ref=1, side="B", shares=300,
                                        stock="AAA".ljust(8), price=999_900)]
    assert h.levels("AAA", BUY) == [(999_900, [("T1", 300)])]
    assert h.levels("AAA", SELL) == []


def test_price_then_time_priority():
    h = Harness()
    h.enter("S1", "B1", "B", 100, "AAA", 999_900)      # ref 1
    h.enter("S1", "B2", "B", 200, "AAA", P100)         # ref 2
    h.enter("S2", "B3", "B", 300, "AAA", P100)         # ref 3
    oe, md = h.enter("S2", "S1", "S", 450, "AAA", 999_900)   # ref 4, sweeps 100.00 first
    ts = TOD + 4000
    assert oe == [
        ("S2", oe[0][1]),
        ("S1", ouch.EXECUTED.record(timestamp=ts, token="B2".ljust(14), shares=200,
                                    price=P100, liquidity="A", match_number=1)),
        ("S2", ouch.EXECUTED.record(timestamp=ts, token="S1".ljust(14), shares=200,
                                    price=P100, liquidity="R", match_number=1)),
        ("S2", ouch.EXECUTED.record(timestamp=ts, token="B3".ljust(14), shares=250,
                                    price=P100, liquidity="A", match_number=2)),
        ("S2", ouch.EXECUTED.record(timestamp=ts, token="S1".ljust(14), shares=250,
                                    price=P100, liquidity="R", match_number=2)),
    ]
    assert type(oe[0][1]).__name__ == "Accepted" and oe[0][1].order_ref == 4
    assert md == [
        itch.ORDER_EXECUTED.record(locate=1, tracking=0, timestamp=ts, order_ref=2, shares=200,
                                   match_number=1),
        itch.ORDER_EXECUTED.record(locate=1, tracking=0, timestamp=ts, order_ref=3, shares=250,
                                   match_number=2),
    ]
    assert h.levels("AAA", BUY) == [(P100, [("B3", 50)]), (999_900, [("B1", 100)])]
    assert h.levels("AAA", SELL) == []


def test_fills_at_resting_price_and_remainder_rests():
    h = Harness()
    h.enter("S1", "A1", "S", 100, "AAA", 999_800)
    h.enter("S1", "A2", "S", 100, "AAA", 999_900)
    oe, md = h.enter("S2", "B1", "B", 500, "AAA", P100)
    prices = [r.price for _, r in oe if type(r).__name__ == "Executed"]
    assert prices == [999_800, 999_800, 999_900, 999_900]
    assert kinds(md) == ["OrderExecuted", "OrderExecuted", "AddOrder"]
    assert md[-1].shares == 300 and md[-1].price == P100 and md[-1].order_ref == 3
    assert h.levels("AAA", BUY) == [(P100, [("B1", 300)])]
    assert h.levels("AAA", SELL) == []


def test_ioc_remainder_canceled_never_rests():
    h = Harness()
    h.enter("S1", "B1", "B", 200, "AAA", P100)
    oe, md = h.enter("S2", "X1", "S", 500, "AAA", P100, tif=0)
    assert kinds(oe) == ["Accepted", "Executed", "Executed", "Canceled"]
    assert oe[-1] == ("S2", ouch.CANCELED.record(timestamp=TOD + 2000,
                                                 token="X1".ljust(14), decrement=300,
                                                 reason="I"))
    assert kinds(md) == ["OrderExecuted"]
    assert h.levels("AAA", SELL) == [] and h.levels("AAA", BUY) == []


def test_ioc_with_nothing_to_match_is_accepted_then_canceled():
    h = Harness()
    oe, md = h.enter("S2", "X1", "S", 500, "AAA", P100, tif=0)
    assert kinds(oe) == ["Accepted", "Canceled"]
    assert oe[1][1].decrement == 500 and oe[1][1].reason == "I"
    assert md == []


def test_fok_not_fully_fillable_executes_nothing():
    h = Harness()
    h.enter("S1", "B1", "B", 200, "AAA", P100)
    h.enter("S1", "B2", "B", 100, "AAA", 999_900)
    oe, md = h.enter("S2", "F1", "S", 500, "AAA", 999_900, tif=0, min_qty=500)
    assert kinds(oe) == ["Accepted", "Canceled"]
    assert oe[1][1].decrement == 500 and oe[1][1].reason == "I"
    assert md == []
    assert h.levels("AAA", BUY) == [(P100, [("B1", 200)]), (999_900, [("B2", 100)])]


def test_fok_fully_fillable_executes_all():
    h = Harness()
    h.enter("S1", "B1", "B", 200, "AAA", P100)
    h.enter("S1", "B2", "B", 300, "AAA", 999_900)
    oe, _ = h.enter("S2", "F1", "S", 500, "AAA", 999_900, tif=0, min_qty=500)
    assert kinds(oe) == ["Accepted"] + ["Executed"] * 4
    assert sum(r.shares for s, r in oe[1:] if s == "S2") == 500
    assert h.levels("AAA", BUY) == []


def test_minimum_quantity_met_partially_fills_and_cancels_rest():
    h = Harness()
    h.enter("S1", "B1", "B", 300, "AAA", P100)
    oe, _ = h.enter("S2", "M1", "S", 500, "AAA", P100, tif=0, min_qty=250)
    assert kinds(oe) == ["Accepted", "Executed", "Executed", "Canceled"]
    assert oe[2][1].shares == 300 and oe[3][1].decrement == 200


def test_minimum_quantity_not_met():
    h = Harness()
    h.enter("S1", "B1", "B", 200, "AAA", P100)
    oe, md = h.enter("S2", "M1", "S", 500, "AAA", P100, tif=0, min_qty=250)
    assert kinds(oe) == ["Accepted", "Canceled"] and md == []


def test_market_order_stops_at_collar():
    h = Harness()
    h.enter("S1", "A1", "S", 100, "AAA", P100)
    h.enter("S1", "A2", "S", 200, "AAA", 1_040_000)
    h.enter("S1", "A3", "S", 300, "AAA", 1_055_000)      # beyond the 105.00 collar
    oe, md = h.enter("S2", "MK", "B", 1000, "AAA", MARKET_PRICE, tif=99999)
    assert oe[0][1].price == MARKET_PRICE and oe[0][1].tif == 99999
    fills = [(r.shares, r.price) for s, r in oe if type(r).__name__ == "Executed"
             and s == "S2"]
    assert fills == [(100, P100), (200, 1_040_000)]
    assert oe[-1][1] == ouch.CANCELED.record(timestamp=TOD + 4000, token="MK".ljust(14),
                                             decrement=700, reason="I")
    assert h.levels("AAA", SELL) == [(1_055_000, [("A3", 300)])]
    assert h.levels("AAA", BUY) == []
    assert kinds(md) == ["OrderExecuted", "OrderExecuted"]


def test_market_sell_collar_and_empty_book():
    h = Harness()
    oe, md = h.enter("S2", "MK", "S", 100, "AAA", MARKET_PRICE, tif=0)
    assert kinds(oe) == ["Accepted", "Canceled"] and md == []
    h.enter("S1", "B1", "B", 100, "AAA", 949_900)         # below the 95.00 sell collar
    oe, md = h.enter("S2", "MK2", "S", 100, "AAA", MARKET_PRICE, tif=0)
    assert kinds(oe) == ["Accepted", "Canceled"] and md == []


def test_post_only_rests_or_is_rejected():
    h = Harness()
    h.enter("S1", "A1", "S", 100, "AAA", P100)
    oe, md = h.enter("S2", "P1", "B", 100, "AAA", P100, display="P")
    assert oe == [("S2", ouch.REJECTED.record(timestamp=TOD + 2000, token="P1".ljust(14),
                                              reason="P"))]
    assert md == []
    oe, md = h.enter("S2", "P2", "B", 100, "AAA", 999_900, display="P")
    assert kinds(oe) == ["Accepted"] and kinds(md) == ["AddOrder"]
    assert oe[0][1].order_ref == 2          # the rejected order took no reference number


def test_hidden_order_trades_as_p_with_reference_zero():
    h = Harness()
    oe, md = h.enter("S1", "H1", "B", 100, "AAA", P100, display="N")
    assert kinds(oe) == ["Accepted"] and md == []
    h.enter("S1", "V1", "B", 100, "AAA", P100)
    oe, md = h.enter("S2", "X1", "S", 150, "AAA", P100)
    assert [(s, r.token.strip(), r.shares, r.liquidity) for s, r in oe[1:]] == [
        ("S1", "H1", 100, "J"), ("S2", "X1", 100, "R"),
        ("S1", "V1", 50, "A"), ("S2", "X1", 50, "R")]
    assert md == [
        itch.TRADE.record(locate=1, tracking=0, timestamp=TOD + 3000, order_ref=0, side="B",
                          shares=100, stock="AAA".ljust(8), price=P100, match_number=1),
        itch.ORDER_EXECUTED.record(locate=1, tracking=0, timestamp=TOD + 3000, order_ref=2,
                                   shares=50, match_number=2),
    ]
    assert h.core.book.top(0, BUY) == (P100, 50)


def test_short_sale_sides_publish_as_sell():
    h = Harness()
    oe, md = h.enter("S1", "T1", "T", 100, "AAA", P100)
    assert oe[0][1].side == "T" and md[0].side == "S"
    oe, md = h.enter("S1", "E1", "E", 100, "AAA", P100)
    assert oe[0][1].side == "E" and md[0].side == "S"
    assert h.levels("AAA", SELL) == [(P100, [("T1", 100), ("E1", 100)])]


def test_reference_and_match_numbers_follow_the_allocation_rule():
    h = Harness()
    refs = []
    oe, _ = h.enter("S1", "R1", "B", 100, "AAA", P100)
    refs.append(oe[0][1].order_ref)
    h.enter("S1", "BAD", "B", 0, "AAA", P100)                  # rejected: no reference
    oe, _ = h.enter("S2", "R2", "S", 50, "AAA", P100, tif=0)   # IOC still takes one
    refs.append(oe[0][1].order_ref)
    matches = [oe[1][1].match_number]
    oe, _ = h.replace("S1", "R1", "R1b", 40, P100)              # keeps priority and ref
    assert oe[0][1].order_ref == 1
    oe, _ = h.replace("S1", "R1b", "R1c", 40, 999_900)          # loses priority: new ref
    refs.append(oe[0][1].order_ref)
    oe, _ = h.enter("S2", "R3", "S", 40, "AAA", 999_900)
    refs.append(oe[0][1].order_ref)
    matches.append(oe[1][1].match_number)
    assert refs == [1, 2, 3, 4] and matches == [1, 2]


def test_symbols_are_independent():
    h = Harness()
    h.enter("S1", "A1", "B", 100, "AAA", P100)
    oe, md = h.enter("S2", "B1", "S", 100, "BBB", 200_000)
    assert kinds(oe) == ["Accepted"] and md[0].locate == 2
    assert h.levels("AAA", BUY) == [(P100, [("A1", 100)])]
    assert h.levels("BBB", SELL) == [(200_000, [("B1", 100)])]


def test_start_and_end_of_day():
    h = Harness(open_day=False)
    h.core.open(T0)
    oe, md = h.core.take()
    assert [(s, r.event_code) for s, r in oe] == [(0, "S"), (1, "S"), (2, "S"), (3, "S")]
    assert [(type(r).__name__, r.locate) for r in md] == [
        ("ItchSystemEvent", 0), ("StockDirectory", 1), ("StockTradingAction", 1),
        ("StockDirectory", 2), ("StockTradingAction", 2), ("ItchSystemEvent", 0),
        ("ItchSystemEvent", 0)]
    assert [r.event_code for r in md if type(r).__name__ == "ItchSystemEvent"] == \
        ["O", "S", "Q"]
    assert md[1].stock == "AAA".ljust(8) and md[1].round_lot_size == 100
    for rec in [r for _, r in oe] + md:                 # records hold exact wire values
        assert rec.layout.unpack(rec.layout.pack(rec)) == rec
    assert md[2].trading_state == "T"
    h.core.close(T0 + 5)
    oe, md = h.core.take()
    assert [r.event_code for _, r in oe] == ["E"] * 4
    assert [r.event_code for r in md] == ["M", "E", "C"]
    assert all(r.timestamp == TOD + 5 for r in md)
