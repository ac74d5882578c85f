"""Nasdaq TotalView-ITCH 5.0 market data, field for field.

Section references are to the ITCH 5.0 specification: 1.1 System Event,
1.2.1 Stock Directory, 1.2.2 Stock Trading Action, 1.3.1 Add Order,
1.4.1 Order Executed, 1.4.3 Order Cancel, 1.4.4 Order Delete,
1.4.5 Order Replace, 1.5.1 Trade (non-cross).  Every message starts with
Stock Locate (2), Tracking Number (2) and a 6-byte nanoseconds-since-midnight
Timestamp.
"""

from __future__ import annotations

from .layout import Layout, layouts_by_type

_HEAD = [("locate", "u", 2), ("tracking", "u", 2), ("timestamp", "u", 6)]

SYSTEM_EVENT = Layout("ItchSystemEvent", _HEAD + [("event_code", "c", 1)], type_code="S")

STOCK_DIRECTORY = Layout("StockDirectory", _HEAD + [
    ("stock", "a", 8), ("market_category", "c", 1), ("financial_status", "c", 1),
    ("round_lot_size", "u", 4), ("round_lots_only", "c", 1),
    ("issue_classification", "c", 1), ("issue_subtype", "a", 2), ("authenticity", "c", 1),
    ("short_sale_threshold", "c", 1), ("ipo_flag", "c", 1), ("luld_tier", "c", 1),
    ("etp_flag", "c", 1), ("etp_leverage", "u", 4), ("inverse", "c", 1),
], type_code="R")

TRADING_ACTION = Layout("StockTradingAction", _HEAD + [
    ("stock", "a", 8), ("trading_state", "c", 1), ("reserved", "c", 1), ("reason", "a", 4),
], type_code="H")

ADD_ORDER = Layout("AddOrder", _HEAD + [
    ("order_ref", "u", 8), ("side", "c", 1), ("shares", "u", 4), ("stock", "a", 8),
    ("price", "u", 4),
], type_code="A")

ORDER_EXECUTED = Layout("OrderExecuted", _HEAD + [
    ("order_ref", "u", 8), ("shares", "u", 4), ("match_number", "u", 8),
], type_code="E")

ORDER_CANCEL = Layout("OrderCancel", _HEAD + [
    ("order_ref", "u", 8), ("shares", "u", 4),
], type_code="X")

ORDER_DELETE = Layout("OrderDelete", _HEAD + [("order_ref", "u", 8)], type_code="D")

ORDER_REPLACE = Layout("OrderReplace", _HEAD + [
    ("original_ref", "u", 8), ("new_ref", "u", 8), ("shares", "u", 4), ("price", "u", 4),
], type_code="U")

TRADE = Layout("Trade", _HEAD + [
    ("order_ref", "u", 8), ("side", "c", 1), ("shares", "u", 4), ("stock", "a", 8),
    ("price", "u", 4), ("match_number", "u", 8),
], type_code="P")

MESSAGES = layouts_by_type(SYSTEM_EVENT, STOCK_DIRECTORY, TRADING_ACTION, ADD_ORDER,
                           ORDER_EXECUTED, ORDER_CANCEL, ORDER_DELETE, ORDER_REPLACE, TRADE)

# System Event codes (1.1)
EVENT_START_OF_MESSAGES = "O"
EVENT_START_OF_SYSTEM_HOURS = "S"
EVENT_START_OF_MARKET_HOURS = "Q"
EVENT_END_OF_MARKET_HOURS = "M"
EVENT_END_OF_SYSTEM_HOURS = "E"
EVENT_END_OF_MESSAGES = "C"

OPENING_EVENTS = (EVENT_START_OF_SYSTEM_HOURS, EVENT_START_OF_MARKET_HOURS)
CLOSING_EVENTS = (EVENT_END_OF_MARKET_HOURS, EVENT_END_OF_SYSTEM_HOURS,
                  EVENT_END_OF_MESSAGES)

TRADING_STATE_TRADING = "T"

NS_PER_DAY = 86_400_000_000_000


def ns_since_midnight(ts_ns: int) -> int:
    """Ingress timestamp (ns since the Unix epoch) to ITCH/OUCH time of day (UTC)."""
    return ts_ns % NS_PER_DAY


# Stock Directory attributes tickcore publishes for every symbol (docs/protocol.md)
DIRECTORY_ATTRIBUTES = dict(
    market_category="Q", financial_status="N", round_lots_only="N",
    issue_classification="C", issue_subtype="Z ", authenticity="P",
    short_sale_threshold="N", ipo_flag="N", luld_tier="1", etp_flag="N",
    etp_leverage=0, inverse="N")
