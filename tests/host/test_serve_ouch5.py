"""OUCH 5.0 at the live venue: layouts, translation, and ouch-connect (PyPI) as the client."""

from __future__ import annotations

import json
import threading
import time

import ouch_connect
import pytest
from hypothesis import given
from hypothesis import strategies as st
from itch.messages import messages as itch_parsers

from tickcore.host import ouch5
from tickcore.host import soupbintcp as sb
from tickcore.host.serve import ServeOptions, ServerThread
from tickcore.host.serve_client import FeedReceiver, SoupBinClient
from tickcore.host.serve_config import build_spec, parse_users
from tickcore.refmodel import ouch

USERS = "oc1:oc1pw:FRMA:ouch50-oc\nspec1:spec1pw:FRMA:ouch50\nbob:bob1:FRMB\n"


@given(st.integers(0, 2**32 - 1))
def test_user_ref_num_token_rule_is_reversible(urn):
    token = ouch5.token_of(urn)
    assert len(token) == 14 and ouch5.user_ref_num_of(token) == urn


@pytest.mark.parametrize("token", ["A1            ", "12345678901234", "0000000001 x  ",
                                   "000000001     ", "+000000001    "])
def test_tokens_no_user_ref_num_produces_are_refused(token):
    assert ouch5.user_ref_num_of(token) is None


def test_layout_sizes_are_the_specification_s():
    spec, oc = ouch5.LAYOUTS["ouch50"], ouch5.LAYOUTS["ouch50-oc"]
    sizes = {name: lay.size for name, lay in spec.items()}
    assert sizes == {"enter": 47, "replace": 40, "cancel": 9, "modify": 10, "account_query": 1,
                     "system_event": 10, "accepted": 64, "replaced": 68, "canceled": 18,
                     "executed": 36, "rejected": 29, "cancel_reject": 13,
                     "account_query_response": 13}
    # ouch-connect: Symbol is 9 bytes, Order Canceled carries Orig UserRefNum
    grown = {name for name in spec if oc[name].size != spec[name].size}
    assert grown == {"enter", "accepted", "replaced", "canceled"}
    assert oc["canceled"].size == 22 and oc["enter"].size == 48


def _enter(session, urn, opts=(), tif="0", display="Y", qty=100, price=1_850_000, extra=b""):
    lay = session.lay["enter"]
    app = ouch5.encode_options(opts) + extra
    return lay.build(user_ref_num=urn, side="B", quantity=qty, symbol="AAPL", price=price,
                     tif=tif, display=display, capacity="A", iso="N", cross_type="N",
                     cl_ord_id=f"C{urn}", appendage_length=len(app)) + app


def test_translation_of_enter_and_its_rejects():
    s = ouch5.Ouch5Session("ouch50")
    rec, replies, reason = s.inbound(7, _enter(s, 5, [(2, "FRMA"), (3, 10), (12, "P")], tif="3"))
    assert replies == [] and reason is None
    assert (rec.token, rec.firm, rec.min_qty, rec.display, rec.tif, rec.stock) == \
        (ouch5.token_of(5), "FRMA", 10, "P", ouch.TIF_IOC, "AAPL    ")

    def rejected(raw):
        rec, replies, _ = s.inbound(9, raw)
        assert rec is None and len(replies) == 1
        return s.lay["rejected"].unpack(replies[0])

    assert rejected(_enter(s, 5)).reason == ouch5.Reason.OTHER             # URN not increasing
    assert rejected(_enter(s, 6, [(5, 10)])).reason == ouch5.Reason.INVALID_MAX_FLOOR
    assert rejected(_enter(s, 7, [(6, "M")])).reason == ouch5.Reason.INVALID_PEG_TYPE
    assert rejected(_enter(s, 8, [(15, 30)])).reason == ouch5.Reason.OTHER  # expire time
    assert rejected(_enter(s, 9, tif="6")).reason == ouch5.Reason.OTHER     # GTT
    unknown_tag = bytes((2, 99, 1))
    assert rejected(_enter(s, 10, extra=unknown_tag)).cl_ord_id.rstrip() == "C10"
    assert s.inbound(9, _enter(s, 11, extra=bytes((5, 3, 0))))[2] == "bad_appendage"
    rec, _, _ = s.inbound(9, _enter(s, 12, [(5, 0), (6, "L"), (17, " ")]))  # neutral values
    assert rec is not None
    # hidden post-only has no 4.2 form: the engine rejects its Display ('D')
    rec, _, _ = s.inbound(9, _enter(s, 13, [(12, "P")], display="N"))
    assert ouch.validate_enter(rec) == ouch.Reject.INVALID_DISPLAY
    assert s.inbound(9, _enter(s, 14)[:-1]) == (None, [], "bad_length")
    q, replies, _ = s.inbound(9, b"Q")
    assert s.lay["account_query_response"].unpack(replies[0]).next_user_ref_num == 14


def test_translation_of_outbound_records():
    s = ouch5.Ouch5Session("ouch50")
    s.inbound(1, _enter(s, 3, [(2, "FRMA"), (12, "P")]))
    acc = ouch.ACCEPTED.record(
        timestamp=11, token=ouch5.token_of(3), side="B", shares=100, stock="AAPL    ",
        price=1_850_000, tif=99998, firm="FRMA", display="P", order_ref=77, capacity="A",
        iso="N", min_qty=0, cross_type="N", order_state="L", bbo_weight=" ")
    raw = s.outbound(acc)
    a = s.lay["accepted"].unpack(raw)
    assert (a.user_ref_num, a.order_ref, a.tif, a.display, a.cl_ord_id.rstrip()) == \
        (3, 77, "0", "Y", "C3")
    opts = ouch5.decode_options(raw[s.lay["accepted"].size:])
    assert opts == {2: "FRMA", 12: "P"}
    ex = s.outbound(ouch.EXECUTED.record(timestamp=12, token=ouch5.token_of(3), shares=40,
                                         price=1_850_000, liquidity="A", match_number=9))
    assert s.lay["executed"].unpack(ex).quantity == 40 and s.orders[3][1] == 60
    can = s.outbound(ouch.CANCELED.record(timestamp=13, token=ouch5.token_of(3), decrement=60,
                                          reason="U"))
    assert len(can) == 18 and 3 not in s.orders                   # done: forgotten
    oc = ouch5.Ouch5Session("ouch50-oc")
    c = oc.lay["canceled"].unpack(oc.outbound(ouch.CANCELED.record(
        timestamp=1, token=ouch5.token_of(4), decrement=5, reason="U")))
    assert (c.orig_user_ref_num, c.user_ref_num) == (4, 4)


def test_specification_dialect_over_soupbintcp(tmp_path):
    users = parse_users(USERS)
    spec = build_spec(None, users)
    with ServerThread(spec, users, tmp_path / "j",
                      ServeOptions(port=0, fsync="none", feed=("127.0.0.1", 9))) as srv:
        c = SoupBinClient("127.0.0.1", srv.tcp_port)
        try:
            assert c.login("spec1", "spec1pw")[0] == sb.ACCEPTED
            lay = ouch5.LAYOUTS["ouch50"]
            assert lay["system_event"].unpack(c.read_sequenced()).event_code == "S"
            s = ouch5.Ouch5Session("ouch50")
            c.send(_enter(s, 1, [(2, "FRMA")]))
            raw = c.read_sequenced()
            acc = lay["accepted"].unpack(raw)
            assert (acc.user_ref_num, acc.symbol, acc.cl_ord_id.rstrip()) == (1, "AAPL    ", "C1")
            c.send(lay["cancel"].build(user_ref_num=1, quantity=0))
            raw = c.read_sequenced()
            assert len(raw) == 18
            can = lay["canceled"].unpack(raw)
            assert (can.user_ref_num, can.quantity, can.reason) == (1, 100, "U")
        finally:
            c.close()


class Recorder:
    """An ouch-connect callback: keeps every received message (JSON dicts)."""

    def __init__(self):
        self.received = []
        self.cv = threading.Condition()

    def on_recv(self, con_id, msg):
        with self.cv:
            self.received.append(msg)
            self.cv.notify_all()

    def on_sent(self, con_id, msg):
        pass

    def payloads(self, kind):
        with self.cv:
            return [m["SPayload"][kind] for m in self.received
                    if kind in m.get("SPayload", {})]

    def wait(self, kind, count=1, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cv:
            while len([m for m in self.received if kind in m.get("SPayload", {})]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"ouch-connect: {count} x {kind} not received; got "
                                         f"{json.dumps(self.received)[:2000]}")
                self.cv.wait(left)
        return self.payloads(kind)


def _oc_client(port, callback, user="oc1", password="oc1pw", sequence=1, name="oc"):
    return ouch_connect.CltAuto(
        f"127.0.0.1:{port}", callback, username=user, password=password, session_id="",
        sequence=sequence, clt_max_hbeat_interval=2.5, svc_max_hbeat_interval=2.5,
        connect_timeout=2.0, io_timeout=1.0, name=name)


def _oc_enter(urn, side, qty, price, tif="MARKET_HOURS", clordid="", appendages=None):
    return {"UPayload": {"EnterOrder": {
        "user_ref_number": urn, "side": side, "quantity": qty, "symbol": "AAPL", "price": price,
        "time_in_force": tif, "display": "VISIBLE", "capacity": "AGENCY",
        "int_mkt_sweep_eligibility": "NOT_ELIGIBLE", "cross_type": "CONTINUOUS_MARKET",
        "clt_order_id": clordid or f"ord{urn}", "appendages": appendages or {}}}}


def test_ouch_connect_trades_and_its_fills_agree_with_the_itch_feed(tmp_path):
    users = parse_users(USERS)
    spec = build_spec(None, users)
    feed = FeedReceiver()
    opts = ServeOptions(port=0, fsync="none", feed=feed.dest, heartbeat_timeout=2.0)
    with ServerThread(spec, users, tmp_path / "j", opts) as srv:
        bob = SoupBinClient("127.0.0.1", srv.tcp_port)
        rec = Recorder()
        try:
            assert bob.login("bob", "bob1", sequence=0)[0] == sb.ACCEPTED
            with _oc_client(srv.tcp_port, rec) as clt:
                assert clt.is_connected(2.0)
                rec.wait("SystemEvent")
                clt.send(_oc_enter(1, "BUY", 100, 185.0, appendages={"firm": "FRMA",
                                                                      "post_only": "YES"}))
                acc = rec.wait("OrderAccepted")[0]
                assert (acc["user_ref_number"], acc["clt_order_id"], acc["price"]) == \
                    (1, "ord1", 185.0)
                assert acc["appendages"] == {"firm": "FRMA", "post_only": "YES"}
                clt.send({"UPayload": {"ReplaceOrder": {
                    "orig_user_ref_number": 1, "user_ref_number": 2, "quantity": 80,
                    "price": 185.01, "time_in_force": "MARKET_HOURS", "display": "VISIBLE",
                    "int_mkt_sweep_eligibility": "NOT_ELIGIBLE", "clt_order_id": "ord2",
                    "appendages": {}}}})
                rep = rec.wait("OrderReplaced")[0]
                assert (rep["orig_user_ref_number"], rep["user_ref_number"], rep["quantity"]) \
                    == (1, 2, 80)
                ref_resting = rep["order_reference_number"]
                # bob sells 30 into it (oc1 adds liquidity), then rests an offer
                bob.send(ouch.ENTER_ORDER.build(
                    token="B1", side="S", shares=30, stock="AAPL", price=1_850_100, tif=0,
                    firm="", display="Y", capacity="A", iso="N", min_qty=0, cross_type="N",
                    customer_type=" "))
                bob.send(ouch.ENTER_ORDER.build(
                    token="B2", side="S", shares=200, stock="AAPL", price=1_851_000,
                    tif=99999, firm="", display="Y", capacity="A", iso="N", min_qty=0,
                    cross_type="N", customer_type=" "))
                rec.wait("OrderExecuted", 1)
                # oc1 lifts 120 of bob's offer with an IOC (removes liquidity)
                clt.send(_oc_enter(3, "BUY", 120, 185.10, tif="IMMEDIATE_OR_CANCEL"))
                execs = rec.wait("OrderExecuted", 2)
                clt.send({"UPayload": {"CancelOrder": {"user_ref_number": 2, "quantity": 0}}})
                can = rec.wait("OrderCanceled")[0]
                assert (can["user_ref_number"], can["quantity"]) == (2, 50)
                # a second login of the same user is refused while the first is up
                with pytest.raises(OSError, match="LoginRejected.*'S'"):
                    _oc_client(srv.tcp_port, Recorder(), name="dup")
                # heartbeats keep the session alive past the server's timeout
                time.sleep(2.5)
                assert clt.is_connected(0.5)
                clt.send({"UPayload": {"AccountQueryRequest": {}}})
                assert rec.wait("AccountQueryResponse")[0]["next_user_ref_number"] == 4
            with pytest.raises(OSError, match="LoginRejected.*'A'"):
                _oc_client(srv.tcp_port, Recorder(), password="wrong", name="badpw")
            # fills agree with the ITCH feed: same match numbers, shares and references
            last = srv.call(lambda s: s.pipeline.feed_next_seq - 1)
            feed.wait_for(last)
            itch_msgs = [itch_parsers[m[:1]](m) for m in feed.in_order(last)]
            itch_execs = {m.match_number: m for m in itch_msgs if m.message_type == b"E"}
            adds = {m.order_reference_number: m for m in itch_msgs if m.message_type == b"A"}
            replaces = {m.new_order_reference_number: m for m in itch_msgs
                        if m.message_type == b"U"}
            passive, aggressive = execs
            assert passive["liquidity_flag"] == "ADDED" and passive["quantity"] == 30
            e = itch_execs[passive["match_number"]]
            assert e.order_reference_number == ref_resting and e.executed_shares == 30
            assert replaces[ref_resting].price == round(passive["price"] * 10000)
            assert aggressive["liquidity_flag"] == "REMOVED" and aggressive["quantity"] == 120
            e = itch_execs[aggressive["match_number"]]
            assert e.executed_shares == 120
            assert adds[e.order_reference_number].price == round(aggressive["price"] * 10000)
            # a re-login from sequence 1 replays the whole stream to ouch-connect
            n_before = len(rec.received)
            again = Recorder()
            with _oc_client(srv.tcp_port, again, sequence=1, name="again"):
                again.wait("AccountQueryResponse")               # the last one
                assert [m for m in again.received if "SPayload" in m] == \
                    [m for m in rec.received[:n_before] if "SPayload" in m]
        finally:
            bob.close()
            feed.close()


def test_a_silent_ouch_connect_client_times_out_and_its_session_is_freed(tmp_path):
    users = parse_users(USERS)
    spec = build_spec(None, users)
    opts = ServeOptions(port=0, fsync="none", feed=("127.0.0.1", 9), heartbeat_timeout=0.5)
    with ServerThread(spec, users, tmp_path / "j", opts) as srv:
        # a client heartbeat interval far beyond the server's timeout: it falls silent
        silent = ouch_connect.CltAuto(
            f"127.0.0.1:{srv.tcp_port}", Recorder(), username="oc1", password="oc1pw",
            session_id="", sequence=1, clt_max_hbeat_interval=60.0,
            svc_max_hbeat_interval=60.0, connect_timeout=2.0, io_timeout=1.0, name="silent")
        try:
            deadline = time.monotonic() + 10
            while srv.counters()["tcp_heartbeat_timeout"] < 1:
                assert time.monotonic() < deadline, srv.counters()
                time.sleep(0.05)
            rec = Recorder()                       # the session is free again
            with _oc_client(srv.tcp_port, rec, sequence=1, name="again"):
                assert rec.wait("SystemEvent")[0]["event_code"] == "START_OF_DAY"
        finally:
            silent.__exit__(None, None, None)
