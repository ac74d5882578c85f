"""Nasdaq OUCH 5.0 order entry, translated to and from the engine's messages.

The engine speaks one protocol-neutral message set, the OUCH 4.2 records of
refmodel/ouch.py.  An OUCH 5.0 session is translated at the edge, one message
at a time, by `Ouch5Session`; docs/serve.md ("OUCH 5.0") is the full mapping.

Layouts follow the Nasdaq "OUCH Version 5.0" specification field for field
(section 2 inbound: Enter Order, Replace Order Request, Cancel Order Request,
Modify Order Request, Account Query Request; section 3 outbound: System
Event, Order Accepted, Order Replaced, Order Canceled, Order Executed, Order
Rejected, Cancel Reject, Account Query Response; appendix: optional
appendages), cross-checked against the Open Markets Initiative Wireshark
dissector for 5.0.  Prices are 8 bytes with 4 implied decimals; 0x7FFFFFFF
means a market order, as in 4.2.  Optional appendages are TLV elements:
Length (1, counts the tag and the value), Tag (1), Value.

Two dialects:
  "ouch50"     the specification: Symbol is 8 bytes, Order Canceled is 18 bytes.
  "ouch50-oc"  what the `ouch-connect` 5.0.x package (PyPI) encodes and decodes:
               Symbol is 9 bytes, and Order Canceled carries an Orig UserRefNum
               (4) before the UserRefNum (22 bytes).  Everything else is equal.

UserRefNum <-> engine order token (reversible): token = the UserRefNum in
decimal, zero-padded to 10 digits, then 4 spaces ("0000000042    ").
"""

from __future__ import annotations

from collections import Counter

from tickcore.refmodel import ouch
from tickcore.refmodel.layout import Layout, layouts_by_type

DIALECTS = ("ouch50", "ouch50-oc")


def _messages(symbol_size: int, canceled_orig: bool) -> dict:
    """Every OUCH 5.0 layout of one dialect (each message is defined here once)."""
    sym = ("symbol", "a", symbol_size)
    lay = {}
    # -- inbound (fixed part; appendages follow Enter and Replace) --
    lay["enter"] = Layout("Ouch5EnterOrder", [
        ("user_ref_num", "u", 4), ("side", "c", 1), ("quantity", "u", 4), sym,
        ("price", "u", 8), ("tif", "c", 1), ("display", "c", 1), ("capacity", "c", 1),
        ("iso", "c", 1), ("cross_type", "c", 1), ("cl_ord_id", "a", 14),
        ("appendage_length", "u", 2),
    ], type_code="O")
    lay["replace"] = Layout("Ouch5ReplaceOrder", [
        ("orig_user_ref_num", "u", 4), ("user_ref_num", "u", 4), ("quantity", "u", 4),
        ("price", "u", 8), ("tif", "c", 1), ("display", "c", 1), ("iso", "c", 1),
        ("cl_ord_id", "a", 14), ("appendage_length", "u", 2),
    ], type_code="U")
    lay["cancel"] = Layout("Ouch5CancelOrder", [
        ("user_ref_num", "u", 4), ("quantity", "u", 4)], type_code="X")
    lay["modify"] = Layout("Ouch5ModifyOrder", [
        ("user_ref_num", "u", 4), ("side", "c", 1), ("quantity", "u", 4)], type_code="M")
    lay["account_query"] = Layout("Ouch5AccountQuery", [], type_code="Q")
    # -- outbound --
    ts = ("timestamp", "u", 8)
    lay["system_event"] = Layout("Ouch5SystemEvent", [ts, ("event_code", "c", 1)],
                                 type_code="S")
    lay["accepted"] = Layout("Ouch5OrderAccepted", [
        ts, ("user_ref_num", "u", 4), ("side", "c", 1), ("quantity", "u", 4), sym,
        ("price", "u", 8), ("tif", "c", 1), ("display", "c", 1), ("order_ref", "u", 8),
        ("capacity", "c", 1), ("iso", "c", 1), ("cross_type", "c", 1),
        ("order_state", "c", 1), ("cl_ord_id", "a", 14), ("appendage_length", "u", 2),
    ], type_code="A")
    lay["replaced"] = Layout("Ouch5OrderReplaced", [
        ts, ("orig_user_ref_num", "u", 4), ("user_ref_num", "u", 4), ("side", "c", 1),
        ("quantity", "u", 4), sym, ("price", "u", 8), ("tif", "c", 1), ("display", "c", 1),
        ("order_ref", "u", 8), ("capacity", "c", 1), ("iso", "c", 1), ("cross_type", "c", 1),
        ("order_state", "c", 1), ("cl_ord_id", "a", 14), ("appendage_length", "u", 2),
    ], type_code="U")
    lay["canceled"] = Layout("Ouch5OrderCanceled", [ts]
                             + ([("orig_user_ref_num", "u", 4)] if canceled_orig else [])
                             + [("user_ref_num", "u", 4), ("quantity", "u", 4),
                                ("reason", "c", 1)], type_code="C")
    lay["executed"] = Layout("Ouch5OrderExecuted", [
        ts, ("user_ref_num", "u", 4), ("quantity", "u", 4), ("price", "u", 8),
        ("liquidity", "c", 1), ("match_number", "u", 8), ("appendage_length", "u", 2),
    ], type_code="E")
    lay["rejected"] = Layout("Ouch5OrderRejected", [
        ts, ("user_ref_num", "u", 4), ("reason", "u", 2), ("cl_ord_id", "a", 14)],
        type_code="J")
    lay["cancel_reject"] = Layout("Ouch5CancelReject", [ts, ("user_ref_num", "u", 4)],
                                  type_code="I")
    lay["account_query_response"] = Layout("Ouch5AccountQueryResponse", [
        ts, ("next_user_ref_num", "u", 4)], type_code="Q")
    return lay


LAYOUTS = {"ouch50": _messages(8, False), "ouch50-oc": _messages(9, True)}


def inbound_table(dialect: str) -> dict:
    lay = LAYOUTS[dialect]
    return layouts_by_type(lay["enter"], lay["replace"], lay["cancel"], lay["modify"],
                           lay["account_query"])


def outbound_table(dialect: str) -> dict:
    lay = LAYOUTS[dialect]
    return layouts_by_type(lay["system_event"], lay["accepted"], lay["replaced"],
                           lay["canceled"], lay["executed"], lay["rejected"],
                           lay["cancel_reject"], lay["account_query_response"])


# -- optional appendages (TLV) ---------------------------------------------------

OPTION_HEADER = Layout("Ouch5OptionHeader", [("length", "u", 1), ("tag", "u", 1)])

# tag -> (name, value layout): the value sizes of the specification's appendix
OPTIONS = {
    2: Layout("Firm", [("value", "a", 4)]),
    3: Layout("MinQty", [("value", "u", 4)]),
    4: Layout("CustomerType", [("value", "c", 1)]),
    5: Layout("MaxFloor", [("value", "u", 4)]),
    6: Layout("PriceType", [("value", "c", 1)]),
    7: Layout("PegOffset", [("value", "u", 4)]),
    9: Layout("DiscretionPrice", [("value", "u", 8)]),
    10: Layout("DiscretionPriceType", [("value", "c", 1)]),
    11: Layout("DiscretionPegOffset", [("value", "u", 4)]),
    12: Layout("PostOnly", [("value", "c", 1)]),
    13: Layout("RandomReserves", [("value", "u", 4)]),
    14: Layout("Route", [("value", "a", 4)]),
    15: Layout("ExpireTime", [("value", "u", 4)]),
    16: Layout("TradeNow", [("value", "c", 1)]),
    17: Layout("HandleInst", [("value", "c", 1)]),
    18: Layout("BBOWeightIndicator", [("value", "c", 1)]),
    22: Layout("DisplayQuantity", [("value", "u", 4)]),
    23: Layout("DisplayPrice", [("value", "u", 8)]),
    24: Layout("GroupID", [("value", "u", 2)]),
    25: Layout("SharesLocated", [("value", "c", 1)]),
    26: Layout("LocateBroker", [("value", "a", 4)]),
    27: Layout("Side", [("value", "c", 1)]),
    28: Layout("UserRefIdx", [("value", "u", 1)]),
}
TAG = {lay.name: tag for tag, lay in OPTIONS.items()}

POST_ONLY_YES = "P"
POST_ONLY_NO = "N"


def encode_options(items) -> bytes:
    """(tag, value) pairs, in the order given, as TLV elements."""
    out = []
    for tag, value in items:
        body = OPTIONS[tag].pack((value,))
        out.append(OPTION_HEADER.pack((len(body) + 1, tag)) + body)
    return b"".join(out)


def decode_options(buf: bytes):
    """TLV elements -> {tag: value}; None when an element overruns, is empty, repeats a
    tag or has the wrong size for a known tag.  Unknown tags are kept as raw bytes."""
    out = {}
    pos, end = 0, len(buf)
    while pos < end:
        if end - pos < 2:
            return None
        length, tag = buf[pos], buf[pos + 1]
        stop = pos + 1 + length
        if length == 0 or stop > end or tag in out:
            return None
        raw = buf[pos + 2:stop]
        lay = OPTIONS.get(tag)
        if lay is None:
            out[tag] = raw
        elif len(raw) != lay.size:
            return None
        else:
            out[tag] = lay.unpack(raw)[0]
        pos = stop
    return out


# -- field mappings --------------------------------------------------------------

MARKET_PRICE = ouch.MARKET_PRICE
TIF_TO_42 = {"0": ouch.TIF_DAY[0], "3": ouch.TIF_IOC, "5": ouch.TIF_DAY[1]}
TIF_FROM_42 = {v: k for k, v in TIF_TO_42.items()}

# (5.0 Display, post-only) -> 4.2 Display; 4.2 has no hidden post-only order
DISPLAY_POST_ONLY_42 = {"Y": "P", "A": "L", "P": "P", "L": "L"}
DISPLAY_FROM_42 = {"Y": ("Y", False), "A": ("A", False), "N": ("N", False),
                   "P": ("Y", True), "L": ("A", True)}
INVALID_DISPLAY_42 = "?"         # not an OUCH 4.2 Display: the engine rejects it ('D')


class Reason:
    """OUCH 5.0 Rejected reason codes tickcore sends (appendix, "Reject Reason")."""
    DESTINATION_CLOSED = 0x0002
    INVALID_DISPLAY = 0x0003
    INVALID_MAX_FLOOR = 0x0004
    INVALID_PEG_TYPE = 0x0005
    FAT_FINGER = 0x0006
    PROCESSING_ERROR = 0x000A
    FIRM_NOT_AUTHORIZED = 0x000C
    INVALID_MIN_QTY = 0x000D
    OTHER = 0x000F
    CROSSED_MARKET = 0x0012
    INVALID_QUANTITY = 0x0013
    INVALID_CROSS = 0x0014
    REPLACE_NOT_ALLOWED = 0x0015
    INVALID_SYMBOL = 0x0017
    INVALID_PRICE = 0x001D
    SHARES_EXCEED_THRESHOLD = 0x001E
    EXCEEDS_NOTIONAL = 0x001F


R = ouch.Reject
REJECT_TO_50 = {
    R.INVALID_FIELD: Reason.OTHER, R.INVALID_DISPLAY: Reason.INVALID_DISPLAY,
    R.CROSS_NOT_ALLOWED: Reason.INVALID_CROSS, R.INVALID_PRICE: Reason.INVALID_PRICE,
    R.INVALID_MIN_QTY: Reason.INVALID_MIN_QTY, R.KILL_SWITCH: Reason.DESTINATION_CLOSED,
    R.FIRM_NOT_AUTHORIZED: Reason.FIRM_NOT_AUTHORIZED, R.INVALID_STOCK: Reason.INVALID_SYMBOL,
    R.MAX_QTY: Reason.SHARES_EXCEED_THRESHOLD, R.MAX_NOTIONAL: Reason.EXCEEDS_NOTIONAL,
    R.ZERO_SHARES: Reason.INVALID_QUANTITY, R.PRICE_BAND: Reason.FAT_FINGER,
    R.RATE_LIMIT: Reason.OTHER, R.DUPLICATE_TOKEN: Reason.OTHER,
    R.CAPACITY: Reason.PROCESSING_ERROR, R.POST_ONLY_CROSS: Reason.CROSSED_MARKET,
    R.UNKNOWN_ORDER: Reason.REPLACE_NOT_ALLOWED,
}


def token_of(user_ref_num: int) -> str:
    """The engine order token of a UserRefNum."""
    return f"{user_ref_num:010d}    "


def user_ref_num_of(token: str) -> int | None:
    """Inverse of `token_of`; None for a token no OUCH 5.0 message can produce."""
    digits = token[:10]
    if len(token) != 14 or token[10:] != "    " or not digits.isdigit() \
            or not digits.isascii():
        return None
    return int(digits)


def _option_reject(opts: dict, quantity: int) -> int | None:
    """Reject reason for an appendage value tickcore does not implement, or None.

    Values that ask for nothing are accepted and ignored (docs/serve.md)."""
    for tag, value in opts.items():
        if tag not in OPTIONS:
            return Reason.OTHER                                 # unknown tag
        if tag == 5 and value and value < quantity:
            return Reason.INVALID_MAX_FLOOR                     # reserve orders
        if tag == 6 and value != "L":
            return Reason.INVALID_PEG_TYPE                      # pegged orders
        if tag == 9 and value != 0:
            return Reason.OTHER                                 # discretion
        if tag in (13, 15) and value != 0:
            return Reason.OTHER                                 # random reserves, expiry
        if tag == 12 and value not in (POST_ONLY_YES, POST_ONLY_NO):
            return Reason.INVALID_DISPLAY
        if tag == 17 and value != " ":
            return Reason.OTHER                                 # handling instructions
    return None


class Ouch5Session:
    """The OUCH 5.0 edge of one session: inbound bytes -> engine record, engine
    records -> OUCH 5.0 bytes.

    State, all derived from the session's inbound messages and the engine's
    outputs (so journal replay rebuilds it): the highest UserRefNum used, and
    for each order that may still answer, its ClOrdID and open quantity (an
    entry goes when the engine reports the order done).
    """

    def __init__(self, dialect: str, counters: Counter | None = None):
        if dialect not in DIALECTS:
            raise ValueError(f"unknown OUCH 5.0 dialect {dialect!r}")
        self.dialect = dialect
        self.lay = LAYOUTS[dialect]
        self.inbound_layouts = inbound_table(dialect)
        self.counters = Counter() if counters is None else counters
        self.last_user_ref_num = 0
        self.orders: dict[int, list] = {}          # UserRefNum -> [ClOrdID, open quantity]
        self._sym = self.lay["enter"].field("symbol").size
        self._encode = {
            ouch.SYSTEM_EVENT.record: self._system_event,
            ouch.ACCEPTED.record: self._accepted,
            ouch.REPLACED.record: self._replaced,
            ouch.CANCELED.record: self._canceled,
            ouch.EXECUTED.record: self._executed,
            ouch.REJECTED.record: self._rejected,
            ouch.CANCEL_REJECT.record: self._cancel_reject,
        }

    # -- inbound -------------------------------------------------------------------

    def decode(self, raw: bytes):
        """(drop reason, None) or (None, (layout, record, options))."""
        if not raw:
            return "bad_length", None
        lay = self.inbound_layouts.get(chr(raw[0]))
        if lay is None:
            return "unknown_type", None
        if len(raw) < lay.size:
            return "bad_length", None
        rec = lay.unpack(raw)
        opts = {}
        if "appendage_length" in rec._fields:
            if rec.appendage_length != len(raw) - lay.size:
                return "bad_length", None
            opts = decode_options(raw[lay.size:])
            if opts is None:
                return "bad_appendage", None
        elif len(raw) != lay.size:
            return "bad_length", None
        return None, (lay, rec, opts)

    def inbound(self, tod: int, raw: bytes):
        """One inbound OUCH 5.0 message.

        Returns (engine record or None, [immediate OUCH 5.0 replies], drop reason or
        None).  Immediate replies are rejects the engine cannot express and
        Account Query Responses; they are stamped `tod` (ns since midnight).
        """
        reason, decoded = self.decode(raw)
        if reason:
            self.counters["drop_ouch50_" + reason] += 1
            return None, [], reason
        lay, m, opts = decoded
        name = lay.name
        if name == "Ouch5EnterOrder":
            return self._enter(tod, m, opts)
        if name == "Ouch5ReplaceOrder":
            return self._replace(tod, m, opts)
        if name == "Ouch5CancelOrder":
            return ouch.CANCEL_ORDER.record(token=token_of(m.user_ref_num),
                                            shares=m.quantity), [], None
        if name == "Ouch5AccountQuery":
            reply = self.lay["account_query_response"].build(
                timestamp=tod, next_user_ref_num=self.last_user_ref_num + 1)
            return None, [reply], None
        self.counters["drop_ouch50_unsupported"] += 1        # Modify Order Request
        return None, [], "unsupported"

    def _reject_now(self, tod, urn, reason, cl_ord_id) -> bytes:
        self.counters["ouch50_reject_" + hex(reason)] += 1
        return self.lay["rejected"].build(timestamp=tod, user_ref_num=urn, reason=reason,
                                          cl_ord_id=cl_ord_id)

    def _new_ref(self, tod, urn, cl_ord_id, opts, quantity):
        """Checks shared by Enter and Replace; returns a reply or None and takes the URN."""
        if urn <= self.last_user_ref_num:
            self.counters["ouch50_user_ref_num_not_increasing"] += 1
            return self._reject_now(tod, urn, Reason.OTHER, cl_ord_id)
        self.last_user_ref_num = urn
        reason = _option_reject(opts, quantity)
        if reason is not None:
            return self._reject_now(tod, urn, reason, cl_ord_id)
        return None

    @staticmethod
    def _price_42(price: int) -> int:
        # 4.2 prices are 4 bytes; anything wider becomes 0, which the engine rejects ('X')
        return price if price <= MARKET_PRICE else 0

    @staticmethod
    def _display_42(display: str, opts: dict) -> str:
        if opts.get(12) == POST_ONLY_YES:
            return DISPLAY_POST_ONLY_42.get(display, INVALID_DISPLAY_42)
        return display

    def _admit(self, tod, m, opts):
        """An Enter or Replace's new UserRefNum and time in force checked: (its OUCH
        4.2 time in force, None) with the order recorded, or (None, the reply)."""
        reply = self._new_ref(tod, m.user_ref_num, m.cl_ord_id, opts, m.quantity)
        if reply is not None:
            return None, reply
        tif = TIF_TO_42.get(m.tif)
        if tif is None:
            return None, self._reject_now(tod, m.user_ref_num, Reason.OTHER, m.cl_ord_id)
        self.orders[m.user_ref_num] = [m.cl_ord_id, 0]
        return tif, None

    def _enter(self, tod, m, opts):
        tif, reply = self._admit(tod, m, opts)
        if reply is not None:
            return None, [reply], None
        rec = ouch.ENTER_ORDER.record(
            token=token_of(m.user_ref_num), side=m.side, shares=m.quantity,
            stock=m.symbol[:8] if m.symbol[8:].strip(" ") == "" else "?" * 8,
            price=self._price_42(m.price), tif=tif, firm=opts.get(2, ""),
            display=self._display_42(m.display, opts), capacity=m.capacity, iso=m.iso,
            min_qty=opts.get(3, 0), cross_type=m.cross_type,
            customer_type=opts.get(4, " "))
        return rec, [], None

    def _replace(self, tod, m, opts):
        tif, reply = self._admit(tod, m, opts)
        if reply is not None:
            return None, [reply], None
        rec = ouch.REPLACE_ORDER.record(
            existing_token=token_of(m.orig_user_ref_num),
            replacement_token=token_of(m.user_ref_num), shares=m.quantity,
            price=self._price_42(m.price), tif=tif, display=self._display_42(m.display, opts),
            iso=m.iso, min_qty=opts.get(3, 0))
        return rec, [], None

    # -- outbound ------------------------------------------------------------------

    def outbound(self, rec) -> bytes:
        """The OUCH 5.0 message for one engine record addressed to this session."""
        return self._encode[type(rec)](rec)

    def _urn(self, token: str) -> int:
        urn = user_ref_num_of(token)
        if urn is None:                       # cannot happen: every token came from token_of
            raise ValueError(f"token {token!r} is not an OUCH 5.0 UserRefNum")
        return urn

    def _reduce(self, urn: int, qty: int) -> None:
        entry = self.orders.get(urn)
        if entry is not None:
            entry[1] -= qty
            if entry[1] <= 0:
                del self.orders[urn]

    def _cl_ord_id(self, urn: int) -> str:
        entry = self.orders.get(urn)
        return entry[0] if entry is not None else ""

    def _symbol(self, stock: str) -> str:
        return stock.ljust(self._sym)

    def _appendage(self, firm, min_qty, post_only) -> bytes:
        items = []
        if firm is not None:
            items.append((2, firm))
        if min_qty:
            items.append((3, min_qty))
        if post_only:
            items.append((12, POST_ONLY_YES))
        return encode_options(items)

    def _system_event(self, r) -> bytes:
        return self.lay["system_event"].build(timestamp=r.timestamp, event_code=r.event_code)

    def _accepted(self, r) -> bytes:
        urn = self._urn(r.token)
        entry = self.orders.get(urn)
        if entry is not None:
            entry[1] = r.shares
        display, post_only = DISPLAY_FROM_42[r.display]
        app = self._appendage(r.firm, r.min_qty, post_only)
        head = self.lay["accepted"].build(
            timestamp=r.timestamp, user_ref_num=urn, side=r.side, quantity=r.shares,
            symbol=self._symbol(r.stock), price=r.price, tif=TIF_FROM_42[r.tif],
            display=display, order_ref=r.order_ref, capacity=r.capacity, iso=r.iso,
            cross_type=r.cross_type, order_state=r.order_state,
            cl_ord_id=entry[0] if entry is not None else "", appendage_length=len(app))
        return head + app

    def _replaced(self, r) -> bytes:
        urn = self._urn(r.replacement_token)
        orig = self._urn(r.previous_token)
        self.orders.pop(orig, None)
        entry = self.orders.get(urn)
        if entry is not None:
            entry[1] = r.shares
        display, post_only = DISPLAY_FROM_42[r.display]
        app = self._appendage(None, r.min_qty, post_only)
        head = self.lay["replaced"].build(
            timestamp=r.timestamp, orig_user_ref_num=orig, user_ref_num=urn, side=r.side,
            quantity=r.shares, symbol=self._symbol(r.stock), price=r.price,
            tif=TIF_FROM_42[r.tif], display=display, order_ref=r.order_ref,
            capacity=r.capacity, iso=r.iso, cross_type=r.cross_type,
            order_state=r.order_state, cl_ord_id=entry[0] if entry is not None else "",
            appendage_length=len(app))
        return head + app

    def _canceled(self, r) -> bytes:
        urn = self._urn(r.token)
        self._reduce(urn, r.decrement)
        fields = dict(timestamp=r.timestamp, user_ref_num=urn, quantity=r.decrement,
                      reason=r.reason)
        if self.dialect == "ouch50-oc":
            fields["orig_user_ref_num"] = urn
        return self.lay["canceled"].build(**fields)

    def _executed(self, r) -> bytes:
        urn = self._urn(r.token)
        self._reduce(urn, r.shares)
        return self.lay["executed"].build(
            timestamp=r.timestamp, user_ref_num=urn, quantity=r.shares, price=r.price,
            liquidity=r.liquidity, match_number=r.match_number, appendage_length=0)

    def _rejected(self, r) -> bytes:
        urn = self._urn(r.token)
        cl_ord_id = self._cl_ord_id(urn)
        self.orders.pop(urn, None)
        return self.lay["rejected"].build(
            timestamp=r.timestamp, user_ref_num=urn,
            reason=REJECT_TO_50.get(r.reason, Reason.OTHER), cl_ord_id=cl_ord_id)

    def _cancel_reject(self, r) -> bytes:
        return self.lay["cancel_reject"].build(timestamp=r.timestamp,
                                               user_ref_num=self._urn(r.token))
