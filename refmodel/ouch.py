"""OUCH 4.2 order entry (Nasdaq "O*U*C*H Version 4.2"), field for field.

Section references are to the OUCH 4.2 specification: 2 (inbound), 3
(outbound).  Layouts match Wireshark's OUCH 4.x dissector (Enter Order 49
bytes, Accepted 66, Replaced 80).  tickcore extensions are marked "extension"
and documented in docs/protocol.md; they reuse letters OUCH 4.2 leaves free.
"""

from __future__ import annotations

from .layout import Layout, layouts_by_type

# -- 2. Inbound messages ------------------------------------------------------

ENTER_ORDER = Layout("EnterOrder", [
    ("token", "a", 14), ("side", "c", 1), ("shares", "u", 4), ("stock", "a", 8),
    ("price", "u", 4), ("tif", "u", 4), ("firm", "a", 4), ("display", "c", 1),
    ("capacity", "c", 1), ("iso", "c", 1), ("min_qty", "u", 4),
    ("cross_type", "c", 1), ("customer_type", "c", 1),
], type_code="O")

REPLACE_ORDER = Layout("ReplaceOrder", [
    ("existing_token", "a", 14), ("replacement_token", "a", 14), ("shares", "u", 4),
    ("price", "u", 4), ("tif", "u", 4), ("display", "c", 1), ("iso", "c", 1),
    ("min_qty", "u", 4),
], type_code="U")

CANCEL_ORDER = Layout("CancelOrder", [
    ("token", "a", 14), ("shares", "u", 4),
], type_code="X")

# extension: cancel every live order of the sending session (stock all spaces = every symbol)
MASS_CANCEL = Layout("MassCancel", [("stock", "a", 8)], type_code="C")

# extension, admin sessions only: engage ('E') or release ('R') the kill switch
# of one session, or of the whole venue when target_session is all spaces
KILL_SWITCH = Layout("KillSwitch", [
    ("target_session", "a", 10), ("action", "c", 1),
], type_code="K")

INBOUND = layouts_by_type(ENTER_ORDER, REPLACE_ORDER, CANCEL_ORDER, MASS_CANCEL, KILL_SWITCH)

# -- 3. Outbound messages -----------------------------------------------------

SYSTEM_EVENT = Layout("SystemEvent", [
    ("timestamp", "u", 8), ("event_code", "c", 1),
], type_code="S")

ACCEPTED = Layout("Accepted", [
    ("timestamp", "u", 8), ("token", "a", 14), ("side", "c", 1), ("shares", "u", 4),
    ("stock", "a", 8), ("price", "u", 4), ("tif", "u", 4), ("firm", "a", 4),
    ("display", "c", 1), ("order_ref", "u", 8), ("capacity", "c", 1), ("iso", "c", 1),
    ("min_qty", "u", 4), ("cross_type", "c", 1), ("order_state", "c", 1),
    ("bbo_weight", "c", 1),
], type_code="A")

REPLACED = Layout("Replaced", [
    ("timestamp", "u", 8), ("replacement_token", "a", 14), ("side", "c", 1),
    ("shares", "u", 4), ("stock", "a", 8), ("price", "u", 4), ("tif", "u", 4),
    ("firm", "a", 4), ("display", "c", 1), ("order_ref", "u", 8), ("capacity", "c", 1),
    ("iso", "c", 1), ("min_qty", "u", 4), ("cross_type", "c", 1),
    ("order_state", "c", 1), ("previous_token", "a", 14), ("bbo_weight", "c", 1),
], type_code="U")

CANCELED = Layout("Canceled", [
    ("timestamp", "u", 8), ("token", "a", 14), ("decrement", "u", 4), ("reason", "c", 1),
], type_code="C")

EXECUTED = Layout("Executed", [
    ("timestamp", "u", 8), ("token", "a", 14), ("shares", "u", 4), ("price", "u", 4),
    ("liquidity", "c", 1), ("match_number", "u", 8),
], type_code="E")

REJECTED = Layout("Rejected", [
    ("timestamp", "u", 8), ("token", "a", 14), ("reason", "c", 1),
], type_code="J")

CANCEL_REJECT = Layout("CancelReject", [
    ("timestamp", "u", 8), ("token", "a", 14),
], type_code="I")

OUTBOUND = layouts_by_type(SYSTEM_EVENT, ACCEPTED, REPLACED, CANCELED, EXECUTED,
                           REJECTED, CANCEL_REJECT)

# -- Field values ---------------------------------------------------------------

MARKET_PRICE = 0x7FFFFFFF          # price $214,748.3647 marks a market order
TIF_IOC = 0
TIF_DAY = (99998, 99999)           # market hours, system hours: both rest for the day
SIDES = "BSTE"                     # buy, sell, sell short, sell short exempt
CAPACITIES = "APRO"
ISO_VALUES = "YN"
CUSTOMER_TYPES = "RN "
DISPLAY_VISIBLE = "YA"             # displayed (anonymous, attributable)
DISPLAY_HIDDEN = "N"               # non-displayed
DISPLAY_POST_ONLY = "PL"           # post-only, displayed
DISPLAYS = DISPLAY_VISIBLE + DISPLAY_HIDDEN + DISPLAY_POST_ONLY
CROSS_NONE = "N"

EVENT_START_OF_DAY = "S"
EVENT_END_OF_DAY = "E"

ORDER_STATE_LIVE = "L"
BBO_WEIGHT_UNSPECIFIED = " "

LIQUIDITY_ADDED = "A"
LIQUIDITY_ADDED_HIDDEN = "J"
LIQUIDITY_REMOVED = "R"

KILL_ENGAGE = "E"
KILL_RELEASE = "R"


class Reject:
    """Rejected-message reason codes.  OUCH 4.2 codes keep their meaning;
    extension codes use letters 4.2 leaves free."""
    INVALID_FIELD = "O"        # side, time in force, capacity, ISO or customer type not allowed
    INVALID_DISPLAY = "D"      # display not allowed (or post-only with IOC or market)
    CROSS_NOT_ALLOWED = "R"    # cross type other than 'N'
    INVALID_PRICE = "X"        # price zero, off the symbol's tick, or market in a Replace
    INVALID_MIN_QTY = "N"      # min qty above shares, or min qty on a non-IOC order
    KILL_SWITCH = "a"          # "Reject All enabled": kill switch engaged
    FIRM_NOT_AUTHORIZED = "L"  # firm field neither blank nor the session's firm
    INVALID_STOCK = "S"        # stock not configured
    MAX_QTY = "Z"              # shares above the session's max order quantity
    MAX_NOTIONAL = "n"         # shares x price above the session's max notional
    ZERO_SHARES = "Q"          # extension: shares zero
    PRICE_BAND = "B"           # extension: limit price outside the symbol's band
    RATE_LIMIT = "V"           # extension: session order-rate limit exceeded
    DUPLICATE_TOKEN = "U"      # extension: token already names a live order of the session
    CAPACITY = "F"             # extension: order pool, price levels or token map full
    POST_ONLY_CROSS = "P"      # extension: post-only order would remove liquidity
    UNKNOWN_ORDER = "G"        # extension: Replace names no live order


REJECT_NAMES = {v: k.lower() for k, v in vars(Reject).items() if not k.startswith("_")}


class CancelReason:
    """Canceled-message reason codes (OUCH 4.2 section 3)."""
    USER = "U"                 # Cancel Order, Mass Cancel, or Replace reducing shares
    IOC = "I"                  # unfilled remainder of an IOC, FOK or market order
    SUPERVISORY = "S"          # kill switch
    SELF_MATCH = "Q"           # self-trade prevention


CANCEL_REASON_NAMES = {v: k.lower() for k, v in vars(CancelReason).items()
                       if not k.startswith("_")}


def is_buy(side: str) -> bool:
    return side == "B"


def itch_side(side: str) -> str:
    """ITCH carries only 'B' or 'S': short sales are sells."""
    return "B" if side == "B" else "S"


def validate_enter(msg) -> str | None:
    """Static field checks of an Enter Order (decode stage), in this order.

    Returns a `Reject` code or None.  Needs no venue state, so the gateware
    decoder applies it before the risk gate.
    """
    if msg.side not in SIDES:
        return Reject.INVALID_FIELD
    if msg.tif != TIF_IOC and msg.tif not in TIF_DAY:
        return Reject.INVALID_FIELD
    if msg.capacity not in CAPACITIES or msg.iso not in ISO_VALUES:
        return Reject.INVALID_FIELD
    if msg.customer_type not in CUSTOMER_TYPES:
        return Reject.INVALID_FIELD
    if msg.cross_type != CROSS_NONE:
        return Reject.CROSS_NOT_ALLOWED
    return _validate_terms(msg.shares, msg.price, msg.tif, msg.display, msg.min_qty,
                           market_allowed=True)


def validate_replace(msg) -> str | None:
    """Static field checks of a Replace Order (decode stage)."""
    if msg.tif != TIF_IOC and msg.tif not in TIF_DAY:
        return Reject.INVALID_FIELD
    if msg.iso not in ISO_VALUES:
        return Reject.INVALID_FIELD
    return _validate_terms(msg.shares, msg.price, msg.tif, msg.display, msg.min_qty,
                           market_allowed=False)


def _validate_terms(shares, price, tif, display, min_qty, *, market_allowed) -> str | None:
    market = price == MARKET_PRICE
    if display not in DISPLAYS:
        return Reject.INVALID_DISPLAY
    if display in DISPLAY_POST_ONLY and (tif == TIF_IOC or market):
        return Reject.INVALID_DISPLAY
    if shares == 0:
        return Reject.ZERO_SHARES
    if price == 0 or (market and not market_allowed):
        return Reject.INVALID_PRICE
    if min_qty > shares or (min_qty and tif != TIF_IOC and not market):
        return Reject.INVALID_MIN_QTY
    return None


def decode_inbound(raw: bytes):
    """Decode one inbound message block.  Returns (drop reason, None) or (None, record).

    Drop reasons: "unknown_type" (first byte names no inbound message) and
    "bad_length" (empty, or not the exact length of its type).
    """
    if not raw:
        return "bad_length", None
    layout = INBOUND.get(chr(raw[0]))
    if layout is None:
        return "unknown_type", None
    if len(raw) != layout.size:
        return "bad_length", None
    return None, layout.unpack(raw)
