"""The matching core of the fast engine: refmodel/matcher.py, risk.py and
loopback.py in numba, rule for rule and in the same order.

A handler reads the inbound message straight from the frame buffer `b` at
offset `p` (field offsets from the refmodel layouts) and stages its output
records, already encoded, in `E.oe_*` (order entry, with the destination
session) and `E.md_*` (market data).  The pipeline frames them afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tickcore.refmodel import ouch
from tickcore.refmodel.itch import NS_PER_DAY

from . import wire as w
from .book import (
    BUY,
    SELL,
    book_append,
    book_reduce,
    book_unlink,
    can_rest,
    pool_alloc,
    pool_has_free,
    pool_release,
    tm_bucket,
    tm_delete,
    tm_has_room,
    tm_insert,
    tm_lookup,
    tm_prefetch,
    walk_symbol,
)
from .state import NIL, SC, STP_NEWEST, STP_NONE, STP_OLDEST, C, V

MARKET = ouch.MARKET_PRICE
MASK48 = np.uint64(0xFFFFFFFFFFFF)
TIF_IOC = ouch.TIF_IOC
TIF_DAY_A, TIF_DAY_B = ouch.TIF_DAY
SPACE = ord(" ")
R = ouch.Reject
REJ_INVALID_FIELD, REJ_DISPLAY, REJ_CROSS, REJ_PRICE = (ord(R.INVALID_FIELD),
                                                        ord(R.INVALID_DISPLAY),
                                                        ord(R.CROSS_NOT_ALLOWED),
                                                        ord(R.INVALID_PRICE))
REJ_MIN_QTY, REJ_KILL, REJ_FIRM, REJ_STOCK = (ord(R.INVALID_MIN_QTY), ord(R.KILL_SWITCH),
                                              ord(R.FIRM_NOT_AUTHORIZED), ord(R.INVALID_STOCK))
REJ_MAX_QTY, REJ_NOTIONAL, REJ_ZERO, REJ_BAND = (ord(R.MAX_QTY), ord(R.MAX_NOTIONAL),
                                                 ord(R.ZERO_SHARES), ord(R.PRICE_BAND))
REJ_RATE, REJ_DUP, REJ_CAPACITY, REJ_POST_ONLY = (ord(R.RATE_LIMIT), ord(R.DUPLICATE_TOKEN),
                                                  ord(R.CAPACITY), ord(R.POST_ONLY_CROSS))
REJ_UNKNOWN = ord(R.UNKNOWN_ORDER)
CR = ouch.CancelReason
CXL_USER, CXL_IOC, CXL_SUPERVISORY, CXL_SELF = (ord(CR.USER), ord(CR.IOC),
                                                ord(CR.SUPERVISORY), ord(CR.SELF_MATCH))
LIQ_ADDED, LIQ_HIDDEN, LIQ_REMOVED = (ord(ouch.LIQUIDITY_ADDED),
                                      ord(ouch.LIQUIDITY_ADDED_HIDDEN),
                                      ord(ouch.LIQUIDITY_REMOVED))
CH_B, CH_S, CH_T, CH_E = ord("B"), ord("S"), ord("T"), ord("E")
CH_A, CH_P, CH_R, CH_O = ord("A"), ord("P"), ord("R"), ord("O")
CH_Y, CH_N, CH_L = ord("Y"), ord("N"), ord("L")
CH_LIVE = ord(ouch.ORDER_STATE_LIVE)
KILL_ENGAGE, KILL_RELEASE = ord(ouch.KILL_ENGAGE), ord(ouch.KILL_RELEASE)


# -- staging records ------------------------------------------------------------


@njit(cache=True, inline="always")
def oe_begin(E, session, size, type_byte):
    n = E.sc[SC.OE_N]
    p = E.sc[SC.OE_BYTES]
    E.oe_off[n] = p
    E.oe_len[n] = size
    E.oe_sess[n] = session
    E.sc[SC.OE_N] = n + 1
    E.sc[SC.OE_BYTES] = p + size
    E.oe_buf[p] = type_byte
    return p


@njit(cache=True, inline="always")
def md_begin(E, size, type_byte, locate):
    n = E.sc[SC.MD_N]
    p = E.sc[SC.MD_BYTES]
    E.md_off[n] = p
    E.md_len[n] = size
    E.sc[SC.MD_N] = n + 1
    E.sc[SC.MD_BYTES] = p + size
    b = E.md_buf
    b[p] = type_byte
    w.put_u16(b, p + w.F_ISYS_LOCATE, locate)
    w.put_u16(b, p + w.F_ISYS_TRACKING, 0)
    w.put_u48(b, p + w.F_ISYS_TIMESTAMP, E.sc[SC.TOD])
    return p


@njit(cache=True, inline="always")
def put_token(b, p, hi, lo):
    w.put_key(b, p, hi, 8)
    w.put_key(b, p + 8, lo, 6)


@njit(cache=True, inline="always")
def send_canceled(E, s, hi, lo, decrement, reason):
    E.counters[E.cancel_counter[reason]] += 1
    p = oe_begin(E, s, w.S_CANCELED, w.T_CANCELED)
    b = E.oe_buf
    w.put_u64(b, p + w.F_CANCELED_TIMESTAMP, E.sc[SC.TOD])
    put_token(b, p + w.F_CANCELED_TOKEN, hi, lo)
    w.put_u32(b, p + w.F_CANCELED_DECREMENT, decrement)
    b[p + w.F_CANCELED_REASON] = reason


@njit(cache=True, inline="always")
def send_rejected(E, s, hi, lo, reason):
    E.counters[E.reject_counter[reason]] += 1
    p = oe_begin(E, s, w.S_REJECTED, w.T_REJECTED)
    b = E.oe_buf
    w.put_u64(b, p + w.F_REJECTED_TIMESTAMP, E.sc[SC.TOD])
    put_token(b, p + w.F_REJECTED_TOKEN, hi, lo)
    b[p + w.F_REJECTED_REASON] = reason


@njit(cache=True, inline="always")
def send_executed(E, s, hi, lo, shares, price, liquidity, match):
    p = oe_begin(E, s, w.S_EXECUTED, w.T_EXECUTED)
    b = E.oe_buf
    w.put_u64(b, p + w.F_EXECUTED_TIMESTAMP, E.sc[SC.TOD])
    put_token(b, p + w.F_EXECUTED_TOKEN, hi, lo)
    w.put_u32(b, p + w.F_EXECUTED_SHARES, shares)
    w.put_u32(b, p + w.F_EXECUTED_PRICE, price)
    b[p + w.F_EXECUTED_LIQUIDITY] = liquidity
    w.put_u64(b, p + w.F_EXECUTED_MATCH_NUMBER, match)


@njit(cache=True)
def send_system_event(E, s, code):
    p = oe_begin(E, s, w.S_OSYS, w.T_OSYS)
    w.put_u64(E.oe_buf, p + w.F_OSYS_TIMESTAMP, E.sc[SC.TOD])
    E.oe_buf[p + w.F_OSYS_EVENT_CODE] = code


@njit(cache=True, inline="always")
def publish_add(E, sym, ref, side_code, shares, price):
    p = md_begin(E, w.S_ADD, w.T_ADD, sym + 1)
    b = E.md_buf
    w.put_u64(b, p + w.F_ADD_ORDER_REF, ref)
    b[p + w.F_ADD_SIDE] = CH_B if side_code == CH_B else CH_S
    w.put_u32(b, p + w.F_ADD_SHARES, shares)
    w.copy_bytes(b, p + w.F_ADD_STOCK, E.sym_stock_bytes[sym], 0, 8)
    w.put_u32(b, p + w.F_ADD_PRICE, price)


@njit(cache=True, inline="always")
def publish_delete(E, sym, ref):
    p = md_begin(E, w.S_DELETE, w.T_DELETE, sym + 1)
    w.put_u64(E.md_buf, p + w.F_DELETE_ORDER_REF, ref)


@njit(cache=True, inline="always")
def publish_cancel(E, sym, ref, shares):
    p = md_begin(E, w.S_XCANCEL, w.T_XCANCEL, sym + 1)
    w.put_u64(E.md_buf, p + w.F_XCANCEL_ORDER_REF, ref)
    w.put_u32(E.md_buf, p + w.F_XCANCEL_SHARES, shares)


@njit(cache=True)
def publish_system_event(E, code):
    p = md_begin(E, w.S_ISYS, w.T_ISYS, 0)
    E.md_buf[p + w.F_ISYS_EVENT_CODE] = code


# -- time, references --------------------------------------------------------------


@njit(cache=True, inline="always")
def at(E, ts):
    """Set the ingress timestamp and its time of day (the division only at a new day)."""
    E.sc[SC.TS] = ts
    tod = ts - E.sc[SC.DAY_START]
    if tod < 0 or tod >= NS_PER_DAY:
        tod = ts % NS_PER_DAY
        E.sc[SC.DAY_START] = ts - tod
    E.sc[SC.TOD] = tod


@njit(cache=True, inline="always")
def alloc_ref(E):
    ref = E.sc[SC.NEXT_REF]
    E.sc[SC.NEXT_REF] = ref + 1
    return ref


# -- start and end of day ---------------------------------------------------------------


@njit(cache=True)
def core_open(E, ts):
    at(E, ts)
    for s in range(E.venue[V.N_SESS]):
        send_system_event(E, s, ord("S"))
    publish_system_event(E, ord("O"))
    b = E.md_buf
    for sym in range(E.venue[V.N_SYM]):
        p = md_begin(E, w.S_DIRECTORY, w.T_DIRECTORY, sym + 1)
        w.copy_bytes(b, p + w.F_DIRECTORY_STOCK, E.sym_stock_bytes[sym], 0, 8)
        b[p + w.F_DIRECTORY_MARKET_CATEGORY] = ord("Q")
        b[p + w.F_DIRECTORY_FINANCIAL_STATUS] = ord("N")
        w.put_u32(b, p + w.F_DIRECTORY_ROUND_LOT_SIZE, E.sym_round_lot[sym])
        b[p + w.F_DIRECTORY_ROUND_LOTS_ONLY] = ord("N")
        b[p + w.F_DIRECTORY_ISSUE_CLASSIFICATION] = ord("C")
        b[p + w.F_DIRECTORY_ISSUE_SUBTYPE] = ord("Z")
        b[p + w.F_DIRECTORY_ISSUE_SUBTYPE + 1] = SPACE
        b[p + w.F_DIRECTORY_AUTHENTICITY] = ord("P")
        b[p + w.F_DIRECTORY_SHORT_SALE_THRESHOLD] = ord("N")
        b[p + w.F_DIRECTORY_IPO_FLAG] = ord("N")
        b[p + w.F_DIRECTORY_LULD_TIER] = ord("1")
        b[p + w.F_DIRECTORY_ETP_FLAG] = ord("N")
        w.put_u32(b, p + w.F_DIRECTORY_ETP_LEVERAGE, 0)
        b[p + w.F_DIRECTORY_INVERSE] = ord("N")
        p = md_begin(E, w.S_ACTION, w.T_ACTION, sym + 1)
        w.copy_bytes(b, p + w.F_ACTION_STOCK, E.sym_stock_bytes[sym], 0, 8)
        b[p + w.F_ACTION_TRADING_STATE] = ord("T")
        b[p + w.F_ACTION_RESERVED] = SPACE
        for i in range(4):
            b[p + w.F_ACTION_REASON + i] = SPACE
    publish_system_event(E, ord("S"))
    publish_system_event(E, ord("Q"))


@njit(cache=True)
def core_close(E, ts):
    at(E, ts)
    for s in range(E.venue[V.N_SESS]):
        send_system_event(E, s, ord("E"))
    publish_system_event(E, ord("M"))
    publish_system_event(E, ord("E"))
    publish_system_event(E, ord("C"))


# -- static checks (ouch.validate_enter / validate_replace) -----------------------------


@njit(cache=True, inline="always")
def is_day(tif):
    return tif == TIF_DAY_A or tif == TIF_DAY_B


@njit(cache=True, inline="always")
def validate_terms(shares, price, tif, display, min_qty, market_allowed):
    market = price == MARKET
    if not (display == CH_Y or display == CH_A or display == CH_N or display == CH_P
            or display == CH_L):
        return REJ_DISPLAY
    if (display == CH_P or display == CH_L) and (tif == TIF_IOC or market):
        return REJ_DISPLAY
    if shares == 0:
        return REJ_ZERO
    if price == 0 or (market and not market_allowed):
        return REJ_PRICE
    if min_qty > shares or (min_qty != 0 and tif != TIF_IOC and not market):
        return REJ_MIN_QTY
    return 0


@njit(cache=True, inline="always")
def validate_enter(b, p):
    side = b[p + w.F_ENTER_SIDE]
    tif = w.get_u32(b, p + w.F_ENTER_TIF)
    cap = b[p + w.F_ENTER_CAPACITY]
    iso = b[p + w.F_ENTER_ISO]
    cust = b[p + w.F_ENTER_CUSTOMER_TYPE]
    if not (side == CH_B or side == CH_S or side == CH_T or side == CH_E):
        return REJ_INVALID_FIELD
    if tif != TIF_IOC and not is_day(tif):
        return REJ_INVALID_FIELD
    if not (cap == CH_A or cap == CH_P or cap == CH_R or cap == CH_O) \
            or not (iso == CH_Y or iso == CH_N):
        return REJ_INVALID_FIELD
    if not (cust == ord("R") or cust == CH_N or cust == SPACE):
        return REJ_INVALID_FIELD
    if b[p + w.F_ENTER_CROSS_TYPE] != CH_N:
        return REJ_CROSS
    return validate_terms(w.get_u32(b, p + w.F_ENTER_SHARES), w.get_u32(b, p + w.F_ENTER_PRICE),
                          tif, b[p + w.F_ENTER_DISPLAY], w.get_u32(b, p + w.F_ENTER_MIN_QTY),
                          True)


@njit(cache=True)
def validate_replace(b, p):
    tif = w.get_u32(b, p + w.F_REPLACE_TIF)
    iso = b[p + w.F_REPLACE_ISO]
    if tif != TIF_IOC and not is_day(tif):
        return REJ_INVALID_FIELD
    if not (iso == CH_Y or iso == CH_N):
        return REJ_INVALID_FIELD
    return validate_terms(w.get_u32(b, p + w.F_REPLACE_SHARES),
                          w.get_u32(b, p + w.F_REPLACE_PRICE), tif,
                          b[p + w.F_REPLACE_DISPLAY], w.get_u32(b, p + w.F_REPLACE_MIN_QTY),
                          False)


# -- risk gate (refmodel/risk.py) --------------------------------------------------------


@njit(cache=True, inline="always")
def killed(E, s):
    return E.sc[SC.VENUE_KILLED] != 0 or E.session_killed[s]


@njit(cache=True, inline="always")
def rate_ok(E, s):
    window = E.sc[SC.TS] >> E.venue[V.RATE_LOG2]
    if window != E.rate_window[s]:
        E.rate_window[s] = window
        E.rate_count[s] = 0
    E.rate_count[s] += 1
    return E.rate_count[s] <= E.sess_rate_limit[s]


@njit(cache=True, inline="always")
def risk_terms(E, s, sym, buy, shares, price):
    market = price == MARKET
    if not market and np.uint32(price) % np.uint32(E.sym_tick[sym]) != 0:
        return REJ_PRICE
    if shares > E.sess_max_qty[s]:
        return REJ_MAX_QTY
    if not market and not (E.sym_band_low[sym] <= price <= E.sym_band_high[sym]):
        return REJ_BAND
    if market:
        effective = E.sym_collar_buy[sym] if buy else E.sym_collar_sell[sym]
    else:
        effective = price
    if np.uint64(shares) * np.uint64(effective) > E.sess_max_notional[s]:
        return REJ_NOTIONAL
    return 0


@njit(cache=True, inline="always")
def find_symbol(E, stock):
    for i in range(E.venue[V.N_SYM]):
        if E.sym_stock[i] == stock:
            return i
    return -1


@njit(cache=True, inline="always")
def find_session(E, hi, lo):
    for i in range(E.venue[V.N_SESS]):
        if E.sess_name_hi[i] == hi and E.sess_name_lo[i] == lo:
            return i
    return -1


# -- matching -------------------------------------------------------------------------


@njit(cache=True, inline="always")
def crosses(o, price):
    return price <= o.price if o.side == BUY else price >= o.price


@njit(cache=True, inline="always")
def marketable(E, o):
    opp = 1 - o.side
    best = E.lv_count[o.symbol, opp] - 1
    return best >= 0 and crosses(o, E.lv_price[o.symbol, opp, best])


@njit(cache=True, inline="always")
def same_firm_blocks(E, o, slot):
    return o.stp != STP_NONE and E.pool_firm[slot] == o.firm


@njit(cache=True)
def executable(E, o):
    total = 0
    opp = 1 - o.side
    for i in range(E.lv_count[o.symbol, opp] - 1, -1, -1):       # best first
        if not crosses(o, E.lv_price[o.symbol, opp, i]):
            break
        slot = E.lv_head[o.symbol, opp, i]
        while slot != NIL:
            if same_firm_blocks(E, o, slot):
                if o.stp != STP_OLDEST:
                    return total
            else:
                total += E.pool_leaves[slot]
                if total >= o.min_qty:
                    return total
            slot = E.pool_next[slot]
    return total


@njit(cache=True, inline="always")
def remove_order(E, slot):
    book_unlink(E, slot)
    tm_delete(E, E.pool_bucket[slot], E.pool_session[slot], E.pool_tok_hi[slot],
              E.pool_tok_lo[slot])
    pool_release(E, slot)


@njit(cache=True)
def cancel_resting(E, slot, reason):
    send_canceled(E, E.pool_session[slot], E.pool_tok_hi[slot], E.pool_tok_lo[slot],
                  E.pool_leaves[slot], reason)
    if not E.pool_hidden[slot]:
        publish_delete(E, E.pool_symbol[slot], E.pool_ref[slot])
    remove_order(E, slot)


@njit(cache=True, inline="always")
def execute(E, o, slot):
    qty = min(o.leaves, E.pool_leaves[slot])
    price = E.pool_price[slot]
    match = E.sc[SC.NEXT_MATCH]
    E.sc[SC.NEXT_MATCH] = match + 1
    hidden = E.pool_hidden[slot]
    send_executed(E, E.pool_session[slot], E.pool_tok_hi[slot], E.pool_tok_lo[slot], qty,
                  price, LIQ_HIDDEN if hidden else LIQ_ADDED, match)
    send_executed(E, o.session, o.tok_hi, o.tok_lo, qty, price, LIQ_REMOVED, match)
    if hidden:
        p = md_begin(E, w.S_TRADE, w.T_TRADE, o.symbol + 1)
        b = E.md_buf
        w.put_u64(b, p + w.F_TRADE_ORDER_REF, 0)
        b[p + w.F_TRADE_SIDE] = CH_B if E.pool_side_code[slot] == CH_B else CH_S
        w.put_u32(b, p + w.F_TRADE_SHARES, qty)
        w.copy_bytes(b, p + w.F_TRADE_STOCK, E.sym_stock_bytes[o.symbol], 0, 8)
        w.put_u32(b, p + w.F_TRADE_PRICE, price)
        w.put_u64(b, p + w.F_TRADE_MATCH_NUMBER, match)
    else:
        p = md_begin(E, w.S_EXEC, w.T_EXEC, o.symbol + 1)
        w.put_u64(E.md_buf, p + w.F_EXEC_ORDER_REF, E.pool_ref[slot])
        w.put_u32(E.md_buf, p + w.F_EXEC_SHARES, qty)
        w.put_u64(E.md_buf, p + w.F_EXEC_MATCH_NUMBER, match)
    E.counters[C.EXECUTIONS] += 1
    E.counters[C.EXECUTED_SHARES] += qty
    o.leaves -= qty
    if E.pool_leaves[slot] == qty:
        remove_order(E, slot)
    else:
        book_reduce(E, slot, qty)


@njit(cache=True)
def match_order(E, o):
    """refmodel MatchingCore._match: True when self-trade prevention stopped it."""
    if o.min_qty != 0 and executable(E, o) < o.min_qty:
        return False
    opp = 1 - o.side
    sym = o.symbol
    while o.leaves > 0 and E.lv_count[sym, opp] > 0 and \
            crosses(o, E.lv_price[sym, opp, E.lv_count[sym, opp] - 1]):
        slot = E.lv_head[sym, opp, E.lv_count[sym, opp] - 1]
        while slot != NIL and o.leaves > 0:
            nxt = E.pool_next[slot]
            if same_firm_blocks(E, o, slot):
                if o.stp != STP_NEWEST:
                    cancel_resting(E, slot, CXL_SELF)
                if o.stp != STP_OLDEST:
                    return True
            else:
                execute(E, o, slot)
            slot = nxt
    return False


@njit(cache=True, inline="always")
def rest(E, o, publish):
    slot = pool_alloc(E)
    E.pool_symbol[slot] = o.symbol
    E.pool_side[slot] = o.side
    E.pool_side_code[slot] = o.side_code
    E.pool_price[slot] = o.price
    E.pool_leaves[slot] = o.leaves
    E.pool_ref[slot] = o.ref
    E.pool_session[slot] = o.session
    E.pool_firm[slot] = o.firm
    E.pool_tok_hi[slot] = o.tok_hi
    E.pool_tok_lo[slot] = o.tok_lo
    E.pool_display[slot] = o.display
    E.pool_hidden[slot] = o.hidden
    E.pool_tif[slot] = o.tif
    E.pool_capacity[slot] = o.capacity
    E.pool_iso[slot] = o.iso
    book_append(E, slot)
    E.pool_bucket[slot] = o.bucket
    tm_insert(E, o.bucket, o.session, o.tok_hi, o.tok_lo, slot)
    if publish and not o.hidden:
        publish_add(E, o.symbol, o.ref, o.side_code, o.leaves, o.price)


@njit(cache=True, inline="always")
def finish(E, o, stopped):
    if o.leaves == 0:
        return
    if stopped or o.ioc:
        send_canceled(E, o.session, o.tok_hi, o.tok_lo, o.leaves,
                      CXL_SELF if stopped else CXL_IOC)
        return
    rest(E, o, True)


# -- Enter Order ------------------------------------------------------------------------


@njit(cache=True)
def enter(E, s, b, p):
    E.counters[C.MSG_ENTER] += 1
    hi = w.get_u64(b, p + w.F_ENTER_TOKEN)
    lo = w.get_u64(b, p + w.F_ENTER_TOKEN + 6) & MASK48
    bucket = tm_bucket(E, s, hi, lo)
    tm_prefetch(E, bucket)
    reason = validate_enter(b, p)
    side_code = b[p + w.F_ENTER_SIDE]
    shares = w.get_u32(b, p + w.F_ENTER_SHARES)
    price = w.get_u32(b, p + w.F_ENTER_PRICE)
    buy = side_code == CH_B
    sym = -1
    if reason == 0:                                   # risk.check_enter
        if killed(E, s):
            reason = REJ_KILL
        elif not rate_ok(E, s):
            reason = REJ_RATE
        else:
            firm = w.get_bytes_u64(b, p + w.F_ENTER_FIRM, 4)
            if firm != np.uint64(0x20202020) and firm != E.sess_firm[s]:
                reason = REJ_FIRM
            else:
                sym = find_symbol(E, w.get_u64(b, p + w.F_ENTER_STOCK))
                if sym < 0:
                    reason = REJ_STOCK
                else:
                    reason = risk_terms(E, s, sym, buy, shares, price)
    o = E.inc[0]
    if reason == 0:
        market = price == MARKET
        tif = w.get_u32(b, p + w.F_ENTER_TIF)
        display = b[p + w.F_ENTER_DISPLAY]
        o.session = s
        o.firm = E.sess_firm_index[s]
        o.stp = E.sess_stp[s]
        o.tok_hi = hi
        o.tok_lo = lo
        o.symbol = sym
        o.side = BUY if buy else SELL
        o.side_code = side_code
        if market:
            o.price = E.sym_collar_buy[sym] if buy else E.sym_collar_sell[sym]
        else:
            o.price = price
        o.leaves = shares
        o.ref = 0
        o.display = display
        o.hidden = display == CH_N
        o.tif = tif
        o.capacity = b[p + w.F_ENTER_CAPACITY]
        o.iso = b[p + w.F_ENTER_ISO]
        o.min_qty = w.get_u32(b, p + w.F_ENTER_MIN_QTY)
        o.ioc = market or tif == TIF_IOC
        o.bucket = bucket
        reason = entry_checks(E, o)
    if reason != 0:
        send_rejected(E, s, hi, lo, reason)
        return
    o.ref = alloc_ref(E)
    E.counters[C.ACCEPTED] += 1
    send_accepted(E, s, b, p, o.ref, E.sess_firm_bytes[s])
    finish(E, o, match_order(E, o))


@njit(cache=True, inline="always")
def send_accepted(E, s, b, p, ref, firm_bytes):
    """Accepted echoing the Enter Order at b[p:], with the given firm and reference."""
    q = oe_begin(E, s, w.S_ACCEPTED, w.T_ACCEPTED)
    o = E.oe_buf
    w.put_u64(o, q + w.F_ACCEPTED_TIMESTAMP, E.sc[SC.TOD])
    w.copy_bytes(o, q + w.F_ACCEPTED_TOKEN, b, p + w.F_ENTER_TOKEN, 14)
    o[q + w.F_ACCEPTED_SIDE] = b[p + w.F_ENTER_SIDE]
    w.copy_bytes(o, q + w.F_ACCEPTED_SHARES, b, p + w.F_ENTER_SHARES, 4)
    w.copy_bytes(o, q + w.F_ACCEPTED_STOCK, b, p + w.F_ENTER_STOCK, 8)
    w.copy_bytes(o, q + w.F_ACCEPTED_PRICE, b, p + w.F_ENTER_PRICE, 4)
    w.copy_bytes(o, q + w.F_ACCEPTED_TIF, b, p + w.F_ENTER_TIF, 4)
    w.copy_bytes(o, q + w.F_ACCEPTED_FIRM, firm_bytes, 0, 4)
    o[q + w.F_ACCEPTED_DISPLAY] = b[p + w.F_ENTER_DISPLAY]
    w.put_u64(o, q + w.F_ACCEPTED_ORDER_REF, ref)
    o[q + w.F_ACCEPTED_CAPACITY] = b[p + w.F_ENTER_CAPACITY]
    o[q + w.F_ACCEPTED_ISO] = b[p + w.F_ENTER_ISO]
    w.copy_bytes(o, q + w.F_ACCEPTED_MIN_QTY, b, p + w.F_ENTER_MIN_QTY, 4)
    o[q + w.F_ACCEPTED_CROSS_TYPE] = b[p + w.F_ENTER_CROSS_TYPE]
    o[q + w.F_ACCEPTED_ORDER_STATE] = CH_LIVE
    o[q + w.F_ACCEPTED_BBO_WEIGHT] = SPACE


@njit(cache=True, inline="always")
def entry_checks(E, o):
    if tm_lookup(E, o.bucket, o.session, o.tok_hi, o.tok_lo) != NIL:
        return REJ_DUP
    if (o.display == CH_P or o.display == CH_L) and marketable(E, o):
        return REJ_POST_ONLY
    if not o.ioc:
        if not pool_has_free(E):
            E.counters[C.CAPACITY_ORDERS] += 1
            return REJ_CAPACITY
        if not tm_has_room(E, o.bucket):
            E.counters[C.CAPACITY_TOKEN_MAP] += 1
            return REJ_CAPACITY
        if not can_rest(E, o.symbol, o.side, o.price, NIL):
            E.counters[C.CAPACITY_LEVELS] += 1
            return REJ_CAPACITY
    return 0


# -- Replace Order --------------------------------------------------------------------


@njit(cache=True)
def replace(E, s, b, p):
    E.counters[C.MSG_REPLACE] += 1
    old_hi = w.get_u64(b, p + w.F_REPLACE_EXISTING_TOKEN)
    old_lo = w.get_u64(b, p + w.F_REPLACE_EXISTING_TOKEN + 6) & MASK48
    new_hi = w.get_u64(b, p + w.F_REPLACE_REPLACEMENT_TOKEN)
    new_lo = w.get_u64(b, p + w.F_REPLACE_REPLACEMENT_TOKEN + 6) & MASK48
    shares = w.get_u32(b, p + w.F_REPLACE_SHARES)
    price = w.get_u32(b, p + w.F_REPLACE_PRICE)
    tif = w.get_u32(b, p + w.F_REPLACE_TIF)
    display = b[p + w.F_REPLACE_DISPLAY]
    old_bucket = tm_bucket(E, s, old_hi, old_lo)
    tm_prefetch(E, old_bucket)
    reason = validate_replace(b, p)
    slot = tm_lookup(E, old_bucket, s, old_hi, old_lo)
    if reason == 0 and slot == NIL:
        reason = REJ_UNKNOWN
    if reason == 0:                                   # risk.check_replace
        sym = E.pool_symbol[slot]
        if killed(E, s):
            reason = REJ_KILL
        elif not rate_ok(E, s):
            reason = REJ_RATE
        else:
            reason = risk_terms(E, s, sym, E.pool_side[slot] == BUY, shares, price)
    keep = False
    o = E.inc[0]
    if reason == 0:
        hidden = display == CH_N
        ioc = tif == TIF_IOC
        keep = (not ioc and price == E.pool_price[slot] and shares <= E.pool_leaves[slot]
                and hidden == E.pool_hidden[slot])
        o.session = s
        o.firm = E.sess_firm_index[s]
        o.stp = E.sess_stp[s]
        o.tok_hi = new_hi
        o.tok_lo = new_lo
        o.symbol = E.pool_symbol[slot]
        o.side = E.pool_side[slot]
        o.side_code = E.pool_side_code[slot]
        o.price = price
        o.leaves = shares
        o.ref = E.pool_ref[slot]
        o.display = display
        o.hidden = hidden
        o.tif = tif
        o.capacity = E.pool_capacity[slot]
        o.iso = b[p + w.F_REPLACE_ISO]
        o.min_qty = w.get_u32(b, p + w.F_REPLACE_MIN_QTY)
        o.ioc = ioc
        o.bucket = old_bucket if (new_hi == old_hi and new_lo == old_lo) \
            else tm_bucket(E, s, new_hi, new_lo)
        reason = replace_checks(E, o, slot, old_hi, old_lo, keep)
    if reason != 0:
        send_rejected(E, s, new_hi, new_lo, reason)
        return
    E.counters[C.REPLACED] += 1
    if keep:
        replace_in_place(E, o, slot, old_hi, old_lo)
    else:
        replace_to_back(E, o, slot, old_hi, old_lo)


@njit(cache=True)
def replace_checks(E, o, slot, old_hi, old_lo, keep):
    same_token = o.tok_hi == old_hi and o.tok_lo == old_lo
    if not same_token and tm_lookup(E, o.bucket, o.session, o.tok_hi, o.tok_lo) != NIL:
        return REJ_DUP
    if not keep and (o.display == CH_P or o.display == CH_L) and marketable(E, o):
        return REJ_POST_ONLY
    if not same_token and not tm_has_room(E, o.bucket) and o.bucket != E.pool_bucket[slot]:
        E.counters[C.CAPACITY_TOKEN_MAP] += 1
        return REJ_CAPACITY
    if not keep and not o.ioc and not can_rest(E, o.symbol, o.side, o.price, slot):
        E.counters[C.CAPACITY_LEVELS] += 1
        return REJ_CAPACITY
    return 0


@njit(cache=True)
def send_replaced(E, o, prev_hi, prev_lo):
    q = oe_begin(E, o.session, w.S_REPLACED, w.T_REPLACED)
    b = E.oe_buf
    w.put_u64(b, q + w.F_REPLACED_TIMESTAMP, E.sc[SC.TOD])
    put_token(b, q + w.F_REPLACED_REPLACEMENT_TOKEN, o.tok_hi, o.tok_lo)
    b[q + w.F_REPLACED_SIDE] = o.side_code
    w.put_u32(b, q + w.F_REPLACED_SHARES, o.leaves)
    w.copy_bytes(b, q + w.F_REPLACED_STOCK, E.sym_stock_bytes[o.symbol], 0, 8)
    w.put_u32(b, q + w.F_REPLACED_PRICE, o.price)
    w.put_u32(b, q + w.F_REPLACED_TIF, o.tif)
    w.copy_bytes(b, q + w.F_REPLACED_FIRM, E.sess_firm_bytes[o.session], 0, 4)
    b[q + w.F_REPLACED_DISPLAY] = o.display
    w.put_u64(b, q + w.F_REPLACED_ORDER_REF, o.ref)
    b[q + w.F_REPLACED_CAPACITY] = o.capacity
    b[q + w.F_REPLACED_ISO] = o.iso
    w.put_u32(b, q + w.F_REPLACED_MIN_QTY, o.min_qty)
    b[q + w.F_REPLACED_CROSS_TYPE] = CH_N
    b[q + w.F_REPLACED_ORDER_STATE] = CH_LIVE
    put_token(b, q + w.F_REPLACED_PREVIOUS_TOKEN, prev_hi, prev_lo)
    b[q + w.F_REPLACED_BBO_WEIGHT] = SPACE


@njit(cache=True)
def replace_in_place(E, o, slot, old_hi, old_lo):
    decrement = E.pool_leaves[slot] - o.leaves
    if decrement:
        book_reduce(E, slot, decrement)
    if not (o.tok_hi == old_hi and o.tok_lo == old_lo):
        tm_delete(E, E.pool_bucket[slot], o.session, old_hi, old_lo)
        tm_insert(E, o.bucket, o.session, o.tok_hi, o.tok_lo, slot)
        E.pool_bucket[slot] = o.bucket
        E.pool_tok_hi[slot] = o.tok_hi
        E.pool_tok_lo[slot] = o.tok_lo
    E.pool_display[slot] = o.display
    E.pool_tif[slot] = o.tif
    E.pool_iso[slot] = o.iso
    send_replaced(E, o, old_hi, old_lo)
    if decrement and not o.hidden:
        publish_cancel(E, o.symbol, o.ref, decrement)


@njit(cache=True)
def replace_to_back(E, o, slot, old_hi, old_lo):
    old_ref = E.pool_ref[slot]
    old_hidden = E.pool_hidden[slot]
    remove_order(E, slot)
    o.ref = alloc_ref(E)
    send_replaced(E, o, old_hi, old_lo)
    if o.ioc or marketable(E, o):
        if not old_hidden:
            publish_delete(E, o.symbol, old_ref)
        finish(E, o, match_order(E, o))
        return
    rest(E, o, False)
    if not old_hidden and not o.hidden:
        q = md_begin(E, w.S_IREPLACE, w.T_IREPLACE, o.symbol + 1)
        w.put_u64(E.md_buf, q + w.F_IREPLACE_ORIGINAL_REF, old_ref)
        w.put_u64(E.md_buf, q + w.F_IREPLACE_NEW_REF, o.ref)
        w.put_u32(E.md_buf, q + w.F_IREPLACE_SHARES, o.leaves)
        w.put_u32(E.md_buf, q + w.F_IREPLACE_PRICE, o.price)
    elif not o.hidden:
        publish_add(E, o.symbol, o.ref, o.side_code, o.leaves, o.price)
    elif not old_hidden:
        publish_delete(E, o.symbol, old_ref)


# -- Cancel Order, Mass Cancel, Kill Switch -----------------------------------------------


@njit(cache=True)
def cancel(E, s, b, p):
    E.counters[C.MSG_CANCEL] += 1
    hi = w.get_u64(b, p + w.F_CANCEL_TOKEN)
    lo = w.get_u64(b, p + w.F_CANCEL_TOKEN + 6) & MASK48
    shares = w.get_u32(b, p + w.F_CANCEL_SHARES)
    slot = tm_lookup(E, tm_bucket(E, s, hi, lo), s, hi, lo)
    if slot == NIL or shares >= E.pool_leaves[slot]:
        if slot == NIL:
            E.counters[C.CANCEL_REJECT_UNKNOWN_ORDER] += 1
        else:
            E.counters[C.CANCEL_REJECT_NOT_REDUCING] += 1
        q = oe_begin(E, s, w.S_CANCEL_REJECT, w.T_CANCEL_REJECT)
        w.put_u64(E.oe_buf, q + w.F_CANCEL_REJECT_TIMESTAMP, E.sc[SC.TOD])
        put_token(E.oe_buf, q + w.F_CANCEL_REJECT_TOKEN, hi, lo)
        return
    decrement = E.pool_leaves[slot] - shares
    if shares == 0:
        cancel_resting(E, slot, CXL_USER)
        return
    send_canceled(E, s, hi, lo, decrement, CXL_USER)
    if not E.pool_hidden[slot]:
        publish_cancel(E, E.pool_symbol[slot], E.pool_ref[slot], decrement)
    book_reduce(E, slot, decrement)


@njit(cache=True)
def cancel_all(E, first_sym, last_sym, session, reason):
    """Cancel resting orders of `session` (-1: everyone) in book-walk order."""
    n = 0
    for sym in range(first_sym, last_sym):
        n = walk_symbol(E, sym, n)
    for i in range(n):
        slot = E.walk[i]
        if session < 0 or E.pool_session[slot] == session:
            cancel_resting(E, slot, reason)


@njit(cache=True)
def mass_cancel(E, s, b, p):
    E.counters[C.MSG_MASS_CANCEL] += 1
    stock = w.get_u64(b, p + w.F_MASS_STOCK)
    if stock != np.uint64(0x2020202020202020):
        sym = find_symbol(E, stock)
        if sym < 0:
            E.counters[C.MASS_CANCEL_UNKNOWN_STOCK] += 1
            return
        cancel_all(E, sym, sym + 1, s, CXL_USER)
    else:
        cancel_all(E, 0, E.venue[V.N_SYM], s, CXL_USER)


@njit(cache=True)
def kill_switch(E, s, b, p):
    E.counters[C.MSG_KILL_SWITCH] += 1
    if not E.sess_admin[s]:
        E.counters[C.KILL_NOT_ADMIN] += 1
        return
    hi = w.get_u64(b, p + w.F_KILL_TARGET_SESSION)
    lo = w.get_bytes_u64(b, p + w.F_KILL_TARGET_SESSION + 8, 2)
    target = -1
    if not (hi == np.uint64(0x2020202020202020) and lo == np.uint64(0x2020)):
        target = find_session(E, hi, lo)
        if target < 0:
            E.counters[C.KILL_UNKNOWN_TARGET] += 1
            return
    action = b[p + w.F_KILL_ACTION]
    if action != KILL_ENGAGE and action != KILL_RELEASE:
        E.counters[C.KILL_INVALID_ACTION] += 1
        return
    engage = action == KILL_ENGAGE
    if target < 0:
        E.sc[SC.VENUE_KILLED] = 1 if engage else 0
    else:
        E.session_killed[target] = engage
    if engage:
        E.counters[C.KILL_ENGAGED] += 1
        cancel_all(E, 0, E.venue[V.N_SYM], target, CXL_SUPERVISORY)
    else:
        E.counters[C.KILL_RELEASED] += 1


# -- loopback (refmodel/loopback.py) ------------------------------------------------------


@njit(cache=True)
def loopback(E, s, b, p, type_byte):
    if type_byte != w.T_ENTER:
        E.counters[C.LOOPBACK_IGNORED] += 1
        return
    ref = alloc_ref(E)
    E.counters[C.ACCEPTED] += 1
    send_accepted(E, s, b, p, ref, b[p + w.F_ENTER_FIRM:p + w.F_ENTER_FIRM + 4])
    sym = find_symbol(E, w.get_u64(b, p + w.F_ENTER_STOCK))
    q = md_begin(E, w.S_ADD, w.T_ADD, sym + 1)
    m = E.md_buf
    w.put_u64(m, q + w.F_ADD_ORDER_REF, ref)
    m[q + w.F_ADD_SIDE] = CH_B if b[p + w.F_ENTER_SIDE] == CH_B else CH_S
    w.copy_bytes(m, q + w.F_ADD_SHARES, b, p + w.F_ENTER_SHARES, 4)
    w.copy_bytes(m, q + w.F_ADD_STOCK, b, p + w.F_ENTER_STOCK, 8)
    w.copy_bytes(m, q + w.F_ADD_PRICE, b, p + w.F_ENTER_PRICE, 4)


@njit(cache=True)
def handle(E, s, b, p, type_byte, loopback_mode):
    """Act on one decoded message of the right length at b[p:]."""
    if loopback_mode:
        loopback(E, s, b, p, type_byte)
    elif type_byte == w.T_ENTER:
        enter(E, s, b, p)
    elif type_byte == w.T_REPLACE:
        replace(E, s, b, p)
    elif type_byte == w.T_CANCEL:
        cancel(E, s, b, p)
    elif type_byte == w.T_MASS:
        mass_cancel(E, s, b, p)
    else:
        kill_switch(E, s, b, p)

