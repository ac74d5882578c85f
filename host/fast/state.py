"""The fast engine's state: the refmodel book, held in numpy arrays.

One struct `Engine` (a numba structref, passed to compiled code by reference)
carries the configuration tables and every piece of mutable state as arrays
shaped like refmodel's (and the gateware's): the
order pool with its free-list stack, per symbol and side a price-sorted level
array, the set-associative token map, the risk gate's per-session state, the
session layer's expected sequence numbers, the egress sequence numbers and
the counters.  Scalars live in `sc` at the `SC_*` indices.

Keys: an order token (14 bytes) is held as two big-endian integers, `hi`
(bytes 0-7) and `lo` (bytes 8-13); a stock (8 bytes) and a firm (4 bytes) as
one integer each; a session name (10 bytes) as hi (0-7) and lo (8-9).
"""

from __future__ import annotations

import struct
from collections import Counter, namedtuple
from enum import IntEnum

import numpy as np
from numba.core import types
from numba.experimental import structref

from tickcore.refmodel import ouch
from tickcore.refmodel.config import STP_MODES
from tickcore.refmodel.packet import (
    DROP_REASONS,
    ETHERNET,
    ETHERTYPE_IPV4,
    IP_FLAG_DF,
    IPV4,
    IPV4_VERSION_IHL,
    PROTO_UDP,
    UDP,
    ones_complement_sum,
)
from tickcore.refmodel.packet import HEADERS_SIZE as HEADERS

from .borrowed import register_struct

# -- counters: the refmodel names, one index each --------------------------------

SESSION_DROPS = ("session_truncated", "session_malformed", "unknown_session",
                 "seq_duplicate", "seq_gap", "unknown_type", "bad_length")
COUNTER_NAMES = (
    ["frames_in", "frames_out", "messages_in", "heartbeats"]
    + ["drop_" + r for r in DROP_REASONS + SESSION_DROPS]
    + ["msg_enter", "msg_replace", "msg_cancel", "msg_mass_cancel", "msg_kill_switch",
       "accepted", "replaced", "executions", "executed_shares"]
    + ["reject_" + name for name in sorted(ouch.REJECT_NAMES.values())]
    + ["canceled_" + name for name in sorted(ouch.CANCEL_REASON_NAMES.values())]
    + ["cancel_reject_unknown_order", "cancel_reject_not_reducing",
       "capacity_orders", "capacity_token_map", "capacity_levels",
       "kill_engaged", "kill_released", "kill_not_admin", "kill_unknown_target",
       "kill_invalid_action", "mass_cancel_unknown_stock", "loopback_ignored"]
)
C = IntEnum("C", {name.upper(): i for i, name in enumerate(COUNTER_NAMES)})
N_COUNTERS = len(COUNTER_NAMES)
DROP_BASE = COUNTER_NAMES.index("drop_" + DROP_REASONS[0])   # frame drops, in order

# reject code byte -> counter index; cancel reason byte -> counter index
REJECT_COUNTER = np.full(256, -1, np.int64)
for _code, _name in ouch.REJECT_NAMES.items():
    REJECT_COUNTER[ord(_code)] = COUNTER_NAMES.index("reject_" + _name)
CANCEL_COUNTER = np.full(256, -1, np.int64)
for _code, _name in ouch.CANCEL_REASON_NAMES.items():
    CANCEL_COUNTER[ord(_code)] = COUNTER_NAMES.index("canceled_" + _name)

# -- scalars ---------------------------------------------------------------------

SCALARS = ("NEXT_REF", "NEXT_MATCH", "VENUE_KILLED", "FREE_TOP", "TS", "TOD",
           "OE_N", "OE_BYTES", "MD_N", "MD_BYTES", "OUT_N", "OUT_BYTES", "RESUME_MSG",
           "LAT_N", "MODE", "FEED_SEQ", "LAT_ON", "DAY_START")
SC = IntEnum("SC", {name: i for i, name in enumerate(SCALARS)})

MODE_MATCH, MODE_LOOPBACK = 0, 1
STP_NONE, STP_NEWEST, STP_OLDEST, STP_BOTH = (STP_MODES.index(m) for m in STP_MODES)
NIL = -1
MAX_OE_MESSAGE = 80            # the longest message either stream carries (Replaced)
FRAME_OVERHEAD = 42 + 20 + 2 + 18   # headers, MoldUDP64 header, block length, padding slack
COPY_SLACK = 8                 # staged records are copied out in whole 8-byte words

FIELDS = ([
    # configuration
    "venue",                   # int64: see V_* below
    "feed_session",            # uint8[10]
    "sym_stock", "sym_stock_bytes", "sym_tick", "sym_band_low", "sym_band_high",
    "sym_collar_buy", "sym_collar_sell", "sym_round_lot",
    "sess_name_hi", "sess_name_lo", "sess_name_bytes", "sess_firm", "sess_firm_bytes",
    "sess_firm_index", "sess_stp", "sess_admin", "sess_mac", "sess_ip", "sess_port",
    "sess_max_qty", "sess_max_notional", "sess_rate_limit",
    "reject_counter", "cancel_counter",
    "tpl", "tpl_ip_sum", "tpl_udp_sum",     # frame header templates per destination
    # order pool
    "pool_symbol", "pool_side", "pool_side_code", "pool_price", "pool_leaves", "pool_ref",
    "pool_session", "pool_firm", "pool_tok_hi", "pool_tok_lo", "pool_display",
    "pool_hidden", "pool_tif", "pool_capacity", "pool_iso", "pool_prev", "pool_next",
    "pool_bucket",
    "free",
    # price levels [symbol, side, level]
    "lv_price", "lv_head", "lv_tail", "lv_displayed", "lv_count",
    # token map [bucket, way]
    "tm_session", "tm_hi", "tm_lo", "tm_slot",
    # risk gate and session layer, per session
    "session_killed", "rate_window", "rate_count", "expected_seq", "oe_seq",
    # egress staging of one inbound message's records
    "oe_buf", "oe_off", "oe_len", "oe_sess", "md_buf", "md_off", "md_len",
    # output frames
    "out_buf", "out_off", "out_len", "out_ts",
    # the order being matched, scratch for book walks, counters, scalars, latency samples
    "inc", "walk", "counters", "sc", "lat",
])

Arrays = namedtuple("Arrays", FIELDS)           # the same arrays, for Python code


@register_struct
class EngineType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class Engine(structref.StructRefProxy):
    """The compiled code's handle on the arrays (attributes exist in compiled code only)."""


structref.define_proxy(Engine, EngineType, FIELDS)

# The order being matched (refmodel matcher.Incoming), one record.
INCOMING = np.dtype([
    ("session", np.int64), ("firm", np.int64), ("stp", np.int64), ("tok_hi", np.uint64),
    ("tok_lo", np.uint64), ("symbol", np.int64), ("side", np.int64), ("side_code", np.uint8),
    ("price", np.int64), ("leaves", np.int64), ("ref", np.int64), ("display", np.uint8),
    ("hidden", np.bool_), ("tif", np.int64), ("capacity", np.uint8), ("iso", np.uint8),
    ("min_qty", np.int64), ("ioc", np.bool_), ("bucket", np.int64)])

VENUE_FIELDS = ("MAC", "IP", "OE_PORT", "TTL", "MAX_PAYLOAD", "FEED_SRC_PORT", "FEED_IP",
                "FEED_PORT", "FEED_MAC", "RATE_LOG2", "N_SYM", "N_SESS", "ORDERS", "LEVELS",
                "BUCKETS", "WAYS")
V = IntEnum("V", {name: i for i, name in enumerate(VENUE_FIELDS)})


def _key(text: str, size: int) -> int:
    return int.from_bytes(text.encode("latin-1").ljust(size, b" ")[:size], "big")


def header_templates(cfg):
    """Per destination (each session, then the feed) the constant frame header:
    Ethernet, IPv4 and UDP with lengths and checksums zero, and the MoldUDP64
    session name; with the ones' complement sums of the constant IPv4 header
    and of the UDP pseudo-header, ports and session (refmodel packet layouts)."""
    dests = [(s.mac, s.ip, cfg.oe_port, s.port, s.name) for s in cfg.sessions]
    dests.append((cfg.feed_mac, cfg.feed_ip, cfg.feed_src_port, cfg.feed_port, cfg.feed_session))
    tpl = np.zeros((len(dests), HEADERS + 10), np.uint8)
    ip_sum = np.zeros(len(dests), np.int64)
    udp_sum = np.zeros(len(dests), np.int64)
    for d, (mac, ip, sport, dport, session) in enumerate(dests):
        ip_hdr = IPV4.pack((IPV4_VERSION_IHL, 0, 0, 0, IP_FLAG_DF, cfg.ttl, PROTO_UDP, 0,
                            cfg.ip, ip))
        udp_hdr = UDP.pack((sport, dport, 0, 0))
        name = session.encode("latin-1")
        tpl[d] = np.frombuffer(ETHERNET.pack((mac, cfg.mac, ETHERTYPE_IPV4)) + ip_hdr
                               + udp_hdr + name, np.uint8)
        ip_sum[d] = ones_complement_sum(ip_hdr)
        pseudo = struct.pack("!IIBB", cfg.ip, ip, 0, PROTO_UDP)
        udp_sum[d] = ones_complement_sum(pseudo + udp_hdr + name)
    return tpl, ip_sum, udp_sum


def max_records_per_message(cfg) -> int:
    """An upper bound on the records one inbound message can cause."""
    return 2 * cfg.capacity.orders + 2 * len(cfg.sessions) + 2 * len(cfg.symbols) + 16


def output_reserve(cfg) -> int:
    """Output bytes one inbound message can need (every record in its own frame)."""
    return max_records_per_message(cfg) * (MAX_OE_MESSAGE + FRAME_OVERHEAD) + 4096


def new_engine(cfg, mode: str, out_bytes: int, lat_samples: int = 0):
    """(Engine for compiled code, Arrays for Python): two views of the same arrays."""
    n_sym, n_sess = len(cfg.symbols), len(cfg.sessions)
    cap = cfg.capacity
    n, L = cap.orders, cap.levels_per_side
    venue = np.zeros(len(VENUE_FIELDS), np.int64)
    venue[:] = [cfg.mac, cfg.ip, cfg.oe_port, cfg.ttl, cfg.max_payload, cfg.feed_src_port,
                cfg.feed_ip, cfg.feed_port, cfg.feed_mac, cfg.rate_window_log2_ns, n_sym,
                n_sess, n, L, cap.token_map_buckets, cap.token_map_ways]
    m = max_records_per_message(cfg)
    reserve = output_reserve(cfg)
    out_bytes = max(out_bytes, 4 * reserve)
    frames = out_bytes // 60 + 1
    sc = np.zeros(len(SCALARS), np.int64)
    sc[SC.NEXT_REF] = 1
    sc[SC.NEXT_MATCH] = 1
    sc[SC.FREE_TOP] = n
    sc[SC.FEED_SEQ] = 1
    sc[SC.DAY_START] = -(1 << 62)          # no day yet
    sc[SC.LAT_ON] = lat_samples > 0
    sc[SC.MODE] = MODE_MATCH if mode == "match" else MODE_LOOPBACK
    u8 = np.uint8
    tpl, tpl_ip_sum, tpl_udp_sum = header_templates(cfg)
    arrays = Arrays(
        venue=venue,
        feed_session=np.frombuffer(cfg.feed_session.encode("latin-1"), u8).copy(),
        sym_stock=np.array([_key(s.stock, 8) for s in cfg.symbols], np.uint64),
        sym_stock_bytes=np.array([list(s.stock.encode("latin-1")) for s in cfg.symbols], u8),
        sym_tick=np.array([s.tick for s in cfg.symbols], np.int64),
        sym_band_low=np.array([s.band_low for s in cfg.symbols], np.int64),
        sym_band_high=np.array([s.band_high for s in cfg.symbols], np.int64),
        sym_collar_buy=np.array([s.collar_buy for s in cfg.symbols], np.int64),
        sym_collar_sell=np.array([s.collar_sell for s in cfg.symbols], np.int64),
        sym_round_lot=np.array([s.round_lot for s in cfg.symbols], np.int64),
        sess_name_hi=np.array([_key(s.name[:8], 8) for s in cfg.sessions], np.uint64),
        sess_name_lo=np.array([_key(s.name[8:], 2) for s in cfg.sessions], np.uint64),
        sess_name_bytes=np.array([list(s.name.encode("latin-1")) for s in cfg.sessions], u8),
        sess_firm=np.array([_key(s.firm, 4) for s in cfg.sessions], np.uint64),
        sess_firm_bytes=np.array([list(s.firm.encode("latin-1")) for s in cfg.sessions], u8),
        sess_firm_index=np.array([s.firm_index for s in cfg.sessions], np.int64),
        sess_stp=np.array([STP_MODES.index(s.stp) for s in cfg.sessions], np.int64),
        sess_admin=np.array([s.admin for s in cfg.sessions], np.bool_),
        sess_mac=np.array([s.mac for s in cfg.sessions], np.int64),
        sess_ip=np.array([s.ip for s in cfg.sessions], np.int64),
        sess_port=np.array([s.port for s in cfg.sessions], np.int64),
        sess_max_qty=np.array([s.max_order_qty for s in cfg.sessions], np.int64),
        sess_max_notional=np.array([s.max_notional for s in cfg.sessions], np.uint64),
        sess_rate_limit=np.array([s.rate_limit for s in cfg.sessions], np.int64),
        reject_counter=REJECT_COUNTER, cancel_counter=CANCEL_COUNTER,
        tpl=tpl, tpl_ip_sum=tpl_ip_sum, tpl_udp_sum=tpl_udp_sum,
        pool_symbol=np.zeros(n, np.int64), pool_side=np.zeros(n, np.int64),
        pool_side_code=np.zeros(n, u8), pool_price=np.zeros(n, np.int64),
        pool_leaves=np.zeros(n, np.int64), pool_ref=np.zeros(n, np.int64),
        pool_session=np.zeros(n, np.int64), pool_firm=np.zeros(n, np.int64),
        pool_tok_hi=np.zeros(n, np.uint64), pool_tok_lo=np.zeros(n, np.uint64),
        pool_display=np.zeros(n, u8), pool_hidden=np.zeros(n, np.bool_),
        pool_tif=np.zeros(n, np.int64), pool_capacity=np.zeros(n, u8),
        pool_iso=np.zeros(n, u8), pool_prev=np.full(n, NIL, np.int64),
        pool_next=np.full(n, NIL, np.int64), pool_bucket=np.zeros(n, np.int64),
        free=np.arange(n - 1, -1, -1, dtype=np.int64),
        lv_price=np.zeros((n_sym, 2, L), np.int64), lv_head=np.full((n_sym, 2, L), NIL, np.int64),
        lv_tail=np.full((n_sym, 2, L), NIL, np.int64),
        lv_displayed=np.zeros((n_sym, 2, L), np.int64), lv_count=np.zeros((n_sym, 2), np.int64),
        tm_session=np.zeros((cap.token_map_buckets, cap.token_map_ways), np.int64),
        tm_hi=np.zeros((cap.token_map_buckets, cap.token_map_ways), np.uint64),
        tm_lo=np.zeros((cap.token_map_buckets, cap.token_map_ways), np.uint64),
        tm_slot=np.full((cap.token_map_buckets, cap.token_map_ways), NIL, np.int64),
        session_killed=np.zeros(n_sess, np.bool_), rate_window=np.full(n_sess, -1, np.int64),
        rate_count=np.zeros(n_sess, np.int64), expected_seq=np.ones(n_sess, np.int64),
        oe_seq=np.ones(n_sess, np.int64),
        oe_buf=np.zeros(m * MAX_OE_MESSAGE + COPY_SLACK, u8), oe_off=np.zeros(m, np.int64),
        oe_len=np.zeros(m, np.int64), oe_sess=np.zeros(m, np.int64),
        md_buf=np.zeros(m * MAX_OE_MESSAGE + COPY_SLACK, u8), md_off=np.zeros(m, np.int64),
        md_len=np.zeros(m, np.int64),
        out_buf=np.zeros(out_bytes, u8), out_off=np.zeros(frames, np.int64),
        out_len=np.zeros(frames, np.int64), out_ts=np.zeros(frames, np.int64),
        inc=np.zeros(1, INCOMING), walk=np.zeros(n, np.int64),
        counters=np.zeros(N_COUNTERS, np.int64), sc=sc,
        lat=np.zeros(max(lat_samples, 1), np.int64),
    )
    for a in arrays:                # commit every page now, not on first write mid-run
        if isinstance(a, np.ndarray) and a.flags.writeable and a.nbytes >= 4096:
            a.reshape(-1)[::512] = a.reshape(-1)[::512]
    return Engine(*arrays), arrays


def counters_of(arrays: Arrays) -> Counter:
    """The counters under refmodel's names (zero counts omitted, as a Counter does)."""
    return Counter({name: int(v) for name, v in zip(COUNTER_NAMES, arrays.counters,
                                                    strict=True) if v})
