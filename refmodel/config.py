"""Venue configuration: symbols, firms, sessions, risk limits, capacity, addresses.

A configuration is a JSON object (docs/protocol.md, "Configuration"); every key
is optional and takes the value of `DEFAULT_CONFIG`.  Prices are integers in
ticks of 1/10000 of a dollar.  Derived limits (price band, market collar) are
computed once here with integer arithmetic, so every engine compares against
the same numbers.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from .packet import ip_from_str, is_multicast, mac_from_str, multicast_mac

STP_MODES = ("none", "cancel_newest", "cancel_oldest", "cancel_both")

MAX_SYMBOLS = 256
MAX_SESSIONS = 64
MAX_PRICE = 0x7FFFFFFE            # 0x7FFFFFFF means "market"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


DEFAULT_CONFIG = {
    "venue": {"mac": "02:00:00:00:00:01", "ip": "10.0.0.1", "oe_port": 4000, "ttl": 64,
              "max_payload": 1400},
    "feed": {"session": "TCFEED0001", "src_port": 5000, "ip": "239.1.1.1", "port": 5001,
             "mac": None},
    "capacity": {"orders": 8192, "levels_per_side": 64, "token_map_buckets": 4096,
                 "token_map_ways": 4},
    "risk": {"max_order_qty": 100_000, "max_notional": 50_000_000_000,
             "rate_limit": 400, "rate_window_log2_ns": 24},
    "symbols": [
        {"stock": s, "ref_price": p * 10000, "tick": 100, "band_bp": 1000, "collar_bp": 500}
        for s, p in (("AAPL", 185), ("MSFT", 410), ("NVDA", 120), ("AMZN", 180),
                     ("GOOG", 165), ("META", 500), ("TSLA", 250), ("AMD", 150))
    ],
    "firms": [{"firm": "FRMA", "stp": "none"}, {"firm": "FRMB", "stp": "cancel_newest"},
              {"firm": "FRMC", "stp": "cancel_oldest"}, {"firm": "FRMD", "stp": "cancel_both"},
              {"firm": "ADMN", "stp": "none"}],
    "sessions": [
        {"name": f"{firm}{k:02d}", "firm": firm, "ip": f"10.0.1.{2 * i + k}",
         "port": 40000 + 2 * i + k, "mac": f"02:00:00:00:01:{2 * i + k:02x}"}
        for i, firm in enumerate(("FRMA", "FRMB", "FRMC", "FRMD")) for k in (1, 2)
    ] + [{"name": "ADMIN", "firm": "ADMN", "ip": "10.0.1.100", "port": 40100,
          "mac": "02:00:00:00:01:64", "admin": True}],
}


@dataclass(frozen=True)
class Symbol:
    index: int
    stock: str                 # 8-byte alpha as on the wire (space padded)
    ref_price: int
    tick: int
    band_low: int
    band_high: int
    collar_buy: int            # effective limit of a market buy
    collar_sell: int           # effective limit of a market sell
    round_lot: int

    @property
    def locate(self) -> int:
        """ITCH Stock Locate: configuration index + 1 (0 is the system)."""
        return self.index + 1


@dataclass(frozen=True)
class Session:
    index: int
    name: str                  # 10-byte alpha as on the wire
    firm: str                  # 4-byte alpha
    firm_index: int
    stp: str
    admin: bool
    mac: int
    ip: int
    port: int
    max_order_qty: int
    max_notional: int
    rate_limit: int


@dataclass(frozen=True)
class Capacity:
    orders: int
    levels_per_side: int
    token_map_buckets: int
    token_map_ways: int


@dataclass(frozen=True)
class VenueConfig:
    mac: int
    ip: int
    oe_port: int
    ttl: int
    max_payload: int
    feed_session: str
    feed_src_port: int
    feed_ip: int
    feed_port: int
    feed_mac: int
    capacity: Capacity
    rate_window_log2_ns: int
    symbols: tuple
    sessions: tuple
    firms: tuple               # firm names, index = firm_index
    source: dict               # the merged JSON, for reproducibility

    def symbol_by_stock(self, stock: str):
        return self._symbols_by_stock.get(stock)

    def session_by_name(self, name: str):
        return self._sessions_by_name.get(name)

    def __post_init__(self):
        object.__setattr__(self, "_symbols_by_stock", {s.stock: s for s in self.symbols})
        object.__setattr__(self, "_sessions_by_name", {s.name: s for s in self.sessions})

    def to_json(self) -> str:
        return json.dumps(self.source, indent=2, sort_keys=True)


def _merge(base, override, path=""):
    if not isinstance(override, dict):
        raise ConfigError(f"{path or 'configuration'}: expected an object")
    out = copy.deepcopy(base)
    for key, val in override.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            raise ConfigError(f"{where}: unknown key")
        if isinstance(base[key], dict):
            out[key] = _merge(base[key], val, where)
        else:
            out[key] = copy.deepcopy(val)
    return out


def _int(obj, key, path, lo, hi, default=None):
    val = obj.get(key, default)
    if not isinstance(val, int) or isinstance(val, bool) or not lo <= val <= hi:
        raise ConfigError(f"{path}.{key}: expected an integer in [{lo}, {hi}], got {val!r}")
    return val


def _alpha(obj, key, path, size):
    val = obj.get(key)
    if not isinstance(val, str) or not 0 < len(val) <= size or not val.isascii() \
            or not val.strip() or val != val.strip():
        raise ConfigError(f"{path}.{key}: expected 1 to {size} ASCII characters, got {val!r}")
    return val.ljust(size)


def _addr(obj, key, path, parse):
    try:
        return parse(obj.get(key))
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"{path}.{key}: {exc}") from None


def load_config(source=None) -> VenueConfig:
    """Build a validated `VenueConfig` from None (defaults), a dict, or a JSON file path."""
    if source is None:
        raw = {}
    elif isinstance(source, dict):
        raw = source
    else:
        try:
            with open(source) as fh:
                raw = json.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {source}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from None
    merged = _merge(DEFAULT_CONFIG, raw)
    v, f, c, r = merged["venue"], merged["feed"], merged["capacity"], merged["risk"]

    capacity = Capacity(
        orders=_int(c, "orders", "capacity", 1, 1 << 20),
        levels_per_side=_int(c, "levels_per_side", "capacity", 1, 4096),
        token_map_buckets=_int(c, "token_map_buckets", "capacity", 1, 1 << 22),
        token_map_ways=_int(c, "token_map_ways", "capacity", 1, 16))
    if capacity.token_map_buckets & (capacity.token_map_buckets - 1):
        raise ConfigError("capacity.token_map_buckets: must be a power of two")

    symbols = []
    if not isinstance(merged["symbols"], list) or not 0 < len(merged["symbols"]) <= MAX_SYMBOLS:
        raise ConfigError(f"symbols: expected a list of 1 to {MAX_SYMBOLS} symbols")
    for i, s in enumerate(merged["symbols"]):
        p = f"symbols[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(f"{p}: expected an object")
        ref = _int(s, "ref_price", p, 1, MAX_PRICE)
        tick = _int(s, "tick", p, 1, 1_000_000, 100)
        band = ref * _int(s, "band_bp", p, 0, 9999, 1000) // 10000
        collar = ref * _int(s, "collar_bp", p, 0, 9999, 500) // 10000
        if ref % tick:
            raise ConfigError(f"{p}.ref_price: {ref} is not a multiple of tick {tick}")
        symbols.append(Symbol(index=i, stock=_alpha(s, "stock", p, 8), ref_price=ref, tick=tick,
                              band_low=ref - band, band_high=min(ref + band, MAX_PRICE),
                              collar_buy=min(ref + collar, MAX_PRICE), collar_sell=ref - collar,
                              round_lot=_int(s, "round_lot", p, 1, 1 << 31, 100)))
    if len({s.stock for s in symbols}) != len(symbols):
        raise ConfigError("symbols: stock names must be unique")

    firms, stp_of = [], {}
    for i, fm in enumerate(merged["firms"]):
        p = f"firms[{i}]"
        name = _alpha(fm, "firm", p, 4)
        stp = fm.get("stp", "none")
        if stp not in STP_MODES:
            raise ConfigError(f"{p}.stp: expected one of {', '.join(STP_MODES)}, got {stp!r}")
        if name in stp_of:
            raise ConfigError(f"{p}.firm: {name.strip()} listed twice")
        firms.append(name)
        stp_of[name] = stp

    sessions = []
    if not isinstance(merged["sessions"], list) or not 0 < len(merged["sessions"]) <= MAX_SESSIONS:
        raise ConfigError(f"sessions: expected a list of 1 to {MAX_SESSIONS} sessions")
    for i, s in enumerate(merged["sessions"]):
        p = f"sessions[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(f"{p}: expected an object")
        firm = _alpha(s, "firm", p, 4)
        if firm not in stp_of:
            raise ConfigError(f"{p}.firm: {firm.strip()} is not in firms")
        sessions.append(Session(
            index=i, name=_alpha(s, "name", p, 10), firm=firm, firm_index=firms.index(firm),
            stp=stp_of[firm], admin=bool(s.get("admin", False)),
            mac=_addr(s, "mac", p, mac_from_str), ip=_addr(s, "ip", p, ip_from_str),
            port=_int(s, "port", p, 1, 65535),
            max_order_qty=_int(s, "max_order_qty", p, 1, 0xFFFFFFFF, r["max_order_qty"]),
            max_notional=_int(s, "max_notional", p, 1, (1 << 64) - 1, r["max_notional"]),
            rate_limit=_int(s, "rate_limit", p, 1, 1 << 30, r["rate_limit"])))
    if len({s.name for s in sessions}) != len(sessions):
        raise ConfigError("sessions: names must be unique")

    feed_ip = _addr(f, "ip", "feed", ip_from_str)
    if f.get("mac") is None:
        if not is_multicast(feed_ip):
            raise ConfigError("feed.mac: required when feed.ip is not a multicast group")
        feed_mac = multicast_mac(feed_ip)
    else:
        feed_mac = _addr(f, "mac", "feed", mac_from_str)
    max_payload = _int(v, "max_payload", "venue", 120, 1472)
    return VenueConfig(
        mac=_addr(v, "mac", "venue", mac_from_str), ip=_addr(v, "ip", "venue", ip_from_str),
        oe_port=_int(v, "oe_port", "venue", 1, 65535), ttl=_int(v, "ttl", "venue", 1, 255),
        max_payload=max_payload,
        feed_session=_alpha(f, "session", "feed", 10),
        feed_src_port=_int(f, "src_port", "feed", 1, 65535), feed_ip=feed_ip,
        feed_port=_int(f, "port", "feed", 1, 65535), feed_mac=feed_mac,
        capacity=capacity,
        rate_window_log2_ns=_int(r, "rate_window_log2_ns", "risk", 10, 40),
        symbols=tuple(symbols), sessions=tuple(sessions), firms=tuple(firms), source=merged)
