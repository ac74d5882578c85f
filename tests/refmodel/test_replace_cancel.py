"""Cancel, partial cancel and cancel/replace (docs/protocol.md section 8)."""

from tickcore.refmodel import itch, ouch
from tickcore.refmodel.book import BUY, SELL

from ..harness import T0, Harness, kinds

TOD = T0 % 86_400_000_000_000
P100 = 1_000_000


def two_bids():
    h = Harness()
    h.enter("S1", "B1", "B", 300, "AAA", P100)     # ref 1
    h.enter("S2", "B2", "B", 200, "AAA", P100)     # ref 2
    return h


def test_cancel_whole_order():
    h = two_bids()
    oe, md = h.cancel("S1", "B1")
    assert oe == [("S1", ouch.CANCELED.record(timestamp=TOD + 3000, token="B1".ljust(14),
                                              decrement=300, reason="U"))]
    assert md == [itch.ORDER_DELETE.record(locate=1, tracking=0, timestamp=TOD + 3000,
                                           order_ref=1)]
    assert h.levels("AAA", BUY) == [(P100, [("B2", 200)])]


def test_partial_cancel_keeps_priority():
    h = two_bids()
    oe, md = h.cancel("S1", "B1", shares=100)
    assert oe[0][1].decrement == 200 and oe[0][1].reason == "U"
    assert md == [itch.ORDER_CANCEL.record(locate=1, tracking=0, timestamp=TOD + 3000,
                                           order_ref=1, shares=200)]
    assert h.levels("AAA", BUY) == [(P100, [("B1", 100), ("B2", 200)])]
    oe, _ = h.enter("S2", "X", "S", 150, "AAA", P100)
    assert [(r.token.strip(), r.shares) for s, r in oe[1:] if r.liquidity == "A"] == \
        [("B1", 100), ("B2", 50)]


def test_cancel_unknown_or_not_reducing_is_rejected_and_changes_nothing():
    h = two_bids()
    oe, md = h.cancel("S1", "NOPE")
    assert oe == [("S1", ouch.CANCEL_REJECT.record(timestamp=TOD + 3000,
                                                   token="NOPE".ljust(14)))]
    assert md == []
    oe, md = h.cancel("S1", "B1", shares=300)
    assert kinds(oe) == ["CancelReject"] and md == []
    oe, _ = h.cancel("S1", "B2")                     # B2 belongs to S2
    assert kinds(oe) == ["CancelReject"]
    assert h.levels("AAA", BUY) == [(P100, [("B1", 300), ("B2", 200)])]
    c = h.core.counters
    assert c["cancel_reject_unknown_order"] == 2 and c["cancel_reject_not_reducing"] == 1


def test_cancel_of_a_filled_order_is_rejected():
    h = two_bids()
    h.enter("S2", "X", "S", 300, "AAA", P100)
    oe, _ = h.cancel("S1", "B1")
    assert kinds(oe) == ["CancelReject"]


def test_replace_pure_decrease_keeps_priority_and_reference():
    h = two_bids()
    oe, md = h.replace("S1", "B1", "B1R", 120, P100)
    assert oe == [("S1", ouch.REPLACED.record(
        timestamp=TOD + 3000, replacement_token="B1R".ljust(14), side="B", shares=120,
        stock="AAA".ljust(8), price=P100, tif=99999, firm="F1".ljust(4), display="Y",
        order_ref=1, capacity="A", iso="N", min_qty=0, cross_type="N", order_state="L",
        previous_token="B1".ljust(14), bbo_weight=" "))]
    assert md == [itch.ORDER_CANCEL.record(locate=1, tracking=0, timestamp=TOD + 3000,
                                           order_ref=1, shares=180)]
    assert h.levels("AAA", BUY) == [(P100, [("B1R", 120), ("B2", 200)])]
    oe, _ = h.cancel("S1", "B1")                     # the old token is gone
    assert kinds(oe) == ["CancelReject"]


def test_replace_same_quantity_same_price_publishes_nothing():
    h = two_bids()
    oe, md = h.replace("S1", "B1", "B1", 300, P100)
    assert kinds(oe) == ["Replaced"] and oe[0][1].order_ref == 1 and md == []
    assert h.levels("AAA", BUY) == [(P100, [("B1", 300), ("B2", 200)])]


def test_replace_quantity_increase_loses_priority():
    h = two_bids()
    oe, md = h.replace("S1", "B1", "B1R", 400, P100)
    assert oe[0][1].order_ref == 3 and oe[0][1].shares == 400
    assert md == [itch.ORDER_REPLACE.record(locate=1, tracking=0, timestamp=TOD + 3000,
                                            original_ref=1, new_ref=3, shares=400,
                                            price=P100)]
    assert h.levels("AAA", BUY) == [(P100, [("B2", 200), ("B1R", 400)])]


def test_replace_price_change_loses_priority():
    h = two_bids()
    h.enter("S2", "B3", "B", 100, "AAA", 999_900)
    oe, md = h.replace("S2", "B2", "B2R", 200, 999_900)
    assert kinds(md) == ["OrderReplace"] and md[0].new_ref == 4
    assert h.levels("AAA", BUY) == [(P100, [("B1", 300)]),
                                    (999_900, [("B3", 100), ("B2R", 200)])]


def test_marketable_replace_deletes_then_trades_then_adds():
    h = Harness()
    h.enter("S1", "A1", "S", 100, "AAA", P100)            # ref 1
    h.enter("S2", "B1", "B", 300, "AAA", 999_900)         # ref 2
    oe, md = h.replace("S2", "B1", "B1R", 300, P100)      # crosses A1
    assert kinds(oe) == ["Replaced", "Executed", "Executed"]
    assert oe[0][1].order_ref == 3
    assert [type(r).__name__ for r in md] == ["OrderDelete", "OrderExecuted", "AddOrder"]
    assert md[0].order_ref == 2 and md[1].order_ref == 1
    assert (md[2].order_ref, md[2].shares, md[2].price) == (3, 200, P100)
    assert h.levels("AAA", BUY) == [(P100, [("B1R", 200)])]
    assert h.levels("AAA", SELL) == []


def test_ioc_replace_takes_order_out():
    h = Harness()
    h.enter("S1", "A1", "S", 100, "AAA", P100)
    h.enter("S2", "B1", "B", 300, "AAA", 999_900)
    oe, md = h.replace("S2", "B1", "B1R", 300, P100, tif=0)
    assert kinds(oe) == ["Replaced", "Executed", "Executed", "Canceled"]
    assert oe[-1][1].decrement == 200 and oe[-1][1].token.strip() == "B1R"
    assert kinds(md) == ["OrderDelete", "OrderExecuted"]
    assert h.levels("AAA", BUY) == []


def test_replace_visibility_changes():
    h = Harness()
    h.enter("S1", "V", "B", 100, "AAA", 990_000)
    oe, md = h.replace("S1", "V", "H", 100, 990_000, display="N")
    assert oe[0][1].order_ref == 2 and kinds(md) == ["OrderDelete"]
    oe, md = h.replace("S1", "H", "H2", 50, 990_000, display="N")
    assert oe[0][1].order_ref == 2 and md == []      # hidden decrease: priority kept
    oe, md = h.replace("S1", "H2", "V2", 50, 990_000, display="Y")
    assert oe[0][1].order_ref == 3
    assert md == [itch.ADD_ORDER.record(locate=1, tracking=0, timestamp=TOD + 4000,
                                        order_ref=3, side="B", shares=50,
                                        stock="AAA".ljust(8), price=990_000)]
    oe, md = h.replace("S1", "V2", "P2", 50, 990_000, display="P")
    assert oe[0][1].order_ref == 3 and md == []      # displayed to post-only: still shown


def test_replace_rejects_leave_the_order_untouched():
    h = two_bids()
    h.enter("S1", "B9", "B", 100, "AAA", 999_900)
    before = h.levels("AAA", BUY)
    cases = [
        (("S1", "NOPE", "N2", 100, P100), "G"),            # unknown existing token
        (("S1", "B1", "B9", 100, P100), "U"),              # replacement token is live
        (("S1", "B1", "B1R", 0, P100), "Q"),
        (("S1", "B1", "B1R", 100, P100 + 1), "X"),         # off tick
        (("S1", "B1", "B1R", 100, 2_000_000), "B"),        # outside band
        (("S1", "B1", "B1R", 100, ouch.MARKET_PRICE), "X"),
        (("S1", "B1", "B1R", 200_000, P100), "Z"),
        (("S2", "B1", "B1R", 100, P100), "G"),             # B1 belongs to S1
    ]
    for args, reason in cases:
        oe, md = h.replace(*args)
        assert oe == [(args[0], ouch.REJECTED.record(
            timestamp=h.ts % 86_400_000_000_000, token=args[2].ljust(14),
            reason=reason))], args
        assert md == []
    oe, _ = h.replace("S1", "B1", "B1R", 100, P100, tif=7)
    assert oe[0][1].reason == "O"
    oe, _ = h.replace("S1", "B1", "B1R", 100, P100, min_qty=10)
    assert oe[0][1].reason == "N"                           # min qty only with IOC
    assert h.levels("AAA", BUY) == before


def test_post_only_replace_that_would_cross_is_rejected():
    h = Harness()
    h.enter("S2", "A1", "S", 100, "AAA", P100)
    h.enter("S1", "P1", "B", 100, "AAA", 999_900, display="P")
    oe, md = h.replace("S1", "P1", "P1R", 100, P100, display="P")
    assert oe[0][1].reason == "P" and md == []
    assert h.levels("AAA", BUY) == [(999_900, [("P1", 100)])]
