"""The live venue's deterministic part: journal events in, outbound streams out.

`Pipeline` is what both `tickcore serve` and `tickcore replay` run, so the
replayed streams are the served ones by construction.  Its outputs are a pure
function of (effective configuration, journal events, their timestamps):

  open(ts)                   start of day
  on_udp(ts, datagram)       a MoldUDP64 order-entry datagram (refmodel SessionLayer)
  on_tcp(ts, session, msg)   one Unsequenced Data payload of a SoupBinTCP session
  close(ts)                  end of day

Each returns the outputs it caused, in emission order, as (kind, session, bytes):

  OUT_TCP   one OUCH message for a SoupBinTCP session (4.2, or 5.0 via
            host/ouch5.py); it is also appended to `streams[session]`, whose
            position + 1 is its SoupBinTCP sequence number
  OUT_UDP   one MoldUDP64 payload for a UDP session (refmodel framing rule:
            a packet closes at the end of the message's events, on a change of
            destination, or at max_payload)
  OUT_FEED  one MoldUDP64 payload of the ITCH feed; its messages are also kept
            in `feed_messages` (index + 1 = MoldUDP64 sequence number) for
            retransmission

As in refmodel/egress.py, a message's order-entry outputs precede its feed
outputs, so UDP sessions and the feed are byte-identical to `tickcore run` on
the same datagrams and timestamps.

Two ways through the core, with the same outputs:

  bytes    a core with `handle_raw` / `take_raw` (the software engine's FastCore):
           OUCH 4.2 and UDP messages go in as received and come out as the core
           encoded them; only OUCH 5.0 sessions see records (ouch5.py translates
           records), made with the refmodel layouts
  records  any other core (refmodel MatchingCore): messages are decoded with
           ouch.decode_inbound and outputs packed with their layouts

MoldUDP64 packets (UDP order entry and the feed) are framed by `MoldFramer`,
refmodel moldudp64.Packetizer's rule with the session names encoded once.
"""

from __future__ import annotations

import struct
from collections import Counter

from tickcore.refmodel import itch, moldudp64, ouch

from .engines import make_core
from .ouch5 import Ouch5Session

OUT_TCP, OUT_UDP, OUT_FEED = 0, 1, 2

# the MoldUDP64 header after the session name, and one message block's length, as
# structs derived from the refmodel layout (the wire format is defined there once)
_H = moldudp64.HEADER
_SESSION = _H.field("session")
_SEQUENCE, _COUNT = _H.field("sequence"), _H.field("count")
assert (_SESSION.offset, _SEQUENCE.offset, _COUNT.offset) == (0, _SESSION.size, _SEQUENCE.offset
                                                              + _SEQUENCE.size)
_UINT = {2: "H", 8: "Q"}
_SEQ_COUNT = struct.Struct(">" + _UINT[_SEQUENCE.size] + _UINT[_COUNT.size])
_SEQ_COUNT_BLOCK = struct.Struct(_SEQ_COUNT.format + moldudp64.BLOCK_LENGTH.format.lstrip("!>"))
_BLOCK = moldudp64.BLOCK_LENGTH
_PACKET_HEAD = struct.Struct(f">{_SESSION.size}s" + _SEQ_COUNT.format.lstrip(">"))
assert _PACKET_HEAD.size == _H.size

# inbound OUCH 4.2: type byte -> message size (what ouch.decode_inbound accepts)
_INBOUND_SIZE = {ord(code): layout.size for code, layout in ouch.INBOUND.items()}
_OUTBOUND = {ord(code): layout for code, layout in ouch.OUTBOUND.items()}


def inbound_drop(raw) -> str | None:
    """The drop reason ouch.decode_inbound gives `raw`, or None when it decodes."""
    if not raw:
        return "bad_length"
    size = _INBOUND_SIZE.get(raw[0])
    if size is None:
        return "unknown_type"
    if len(raw) != size:
        return "bad_length"
    return None


def parse_packet(payload):
    """refmodel moldudp64.parse_packet with the header read by one struct (the blocks
    by moldudp64.split_blocks): (session name, sequence, count, [message bytes]), or
    None when the blocks do not exactly fill the payload (end-of-session packets carry
    no blocks)."""
    if len(payload) < _PACKET_HEAD.size:
        return None
    name, sequence, count = _PACKET_HEAD.unpack_from(payload)
    session = name.decode("latin-1")
    if count == moldudp64.COUNT_END_OF_SESSION:
        return (session, sequence, count, []) if len(payload) == _PACKET_HEAD.size else None
    messages = moldudp64.split_blocks(payload, _PACKET_HEAD.size, count)
    return None if messages is None else (session, sequence, count, messages)


class MoldFramer:
    """refmodel moldudp64.Packetizer's framing rule: a packet closes at the end of
    `frame`'s messages (one inbound message's events), when the next message is for
    another destination, or when the next message would take the payload past
    `max_payload` bytes; sequence numbers per session name, from 1.  The session
    names are encoded once and the headers packed by one struct."""

    def __init__(self, max_payload: int):
        self.max_payload = max_payload
        self.next_seq: dict[str, int] = {}
        self._names: dict[str, bytes] = {}

    def _name(self, session: str) -> bytes:
        name = self._names.get(session)
        if name is None:
            name = session.encode("latin-1")
            if len(name) > _SESSION.size:
                raise ValueError(f"MoldUDP64 session {session!r} longer than {_SESSION.size}")
            name = self._names[session] = name.ljust(_SESSION.size, b" ")
        return name

    def one(self, session: str, msg: bytes) -> bytes:
        """The packet of a single message (the common case of `frame`)."""
        seq = self.next_seq.get(session, 1)
        self.next_seq[session] = seq + 1
        return self._name(session) + _SEQ_COUNT_BLOCK.pack(seq, 1, len(msg)) + msg

    def frame(self, dest, session: str, msgs) -> list:
        """[(dest, payload)] for messages to one destination, in order."""
        if len(msgs) == 1:
            return [(dest, self.one(session, msgs[0]))]
        out = []
        limit = self.max_payload
        name = self._name(session)
        seq = self.next_seq.get(session, 1)
        first = 0
        size = _H.size
        for i, msg in enumerate(msgs):
            if i > first and size + 2 + len(msg) > limit:
                out.append((dest, self._packet(name, seq, msgs[first:i])))
                seq += i - first
                first, size = i, _H.size
            size += 2 + len(msg)
        out.append((dest, self._packet(name, seq, msgs[first:])))
        self.next_seq[session] = seq + len(msgs) - first
        return out

    @staticmethod
    def _packet(name: bytes, seq: int, msgs) -> bytes:
        parts = [name, _SEQ_COUNT.pack(seq, len(msgs))]
        for m in msgs:
            parts.append(_BLOCK.pack(len(m)))
            parts.append(m)
        return b"".join(parts)


class Pipeline:
    def __init__(self, spec, engine: str = "reference"):
        cfg = spec.cfg
        self.spec = spec
        self.cfg = cfg
        self.core = make_core(cfg, engine)
        self.raw = hasattr(self.core, "handle_raw")
        self.counters = Counter()
        self.is_udp = [p == "udp" for p in spec.protocols]
        self.names = [s.name for s in cfg.sessions]
        self.udp_index = {s.name: s.index for s in cfg.sessions if self.is_udp[s.index]}
        self.expected_seq = [1] * len(cfg.sessions)      # UDP sessions' next sequence number
        self.streams = [None if udp else [] for udp in self.is_udp]
        self.ouch5 = [Ouch5Session(p, self.counters) if p.startswith("ouch50") else None
                      for p in spec.protocols]
        self.oe = MoldFramer(cfg.max_payload)
        self.feed = MoldFramer(cfg.max_payload)
        self.feed_session = cfg.feed_session
        self.feed_messages: list[bytes] = []
        self.opened = False
        self.closed = False

    @property
    def feed_next_seq(self) -> int:
        return len(self.feed_messages) + 1

    # -- events ----------------------------------------------------------------------

    def open(self, ts: int) -> list:
        self.opened = True
        self.core.open(ts)
        return self._emit([])

    def close(self, ts: int) -> list:
        """End of day; the feed's last output is its end-of-session packet."""
        if self.closed:
            return []
        self.closed = True
        self.core.close(ts)
        out = self._emit([])
        out.append((OUT_FEED, None,
                    moldudp64.end_of_session(self.feed_session, self.feed_next_seq)))
        return out

    def udp_check(self, datagram: bytes):
        """(session index, None) when the datagram would advance a UDP session (it is
        well formed, names a UDP session and holds that session's next expected
        sequence number); else (None, drop reason).  Changes nothing: the server
        journals only datagrams that pass, and counts the rest."""
        if len(datagram) < _H.size:
            return None, "udp_truncated"
        parsed = parse_packet(datagram)
        if parsed is None or parsed[2] == moldudp64.COUNT_END_OF_SESSION:
            return None, "udp_malformed"
        name, sequence, _, messages = parsed
        index = self.udp_index.get(name)
        if index is None:
            return None, "udp_unknown_session"
        if not messages:
            return None, "udp_heartbeat"
        expected = self.expected_seq[index]
        if not sequence <= expected < sequence + len(messages):
            return None, ("udp_seq_duplicate" if sequence < expected else "udp_seq_gap")
        return index, None

    def on_udp(self, ts: int, datagram: bytes) -> list:
        """A datagram of a UDP session: refmodel SessionLayer.accept's rule (sequence
        check and dedup per session, then decode), with its counters."""
        out = []
        counters = self.counters
        index = self.udp_index.get(datagram[:_SESSION.size].decode("latin-1"))
        if index is None:
            counters["drop_udp_unknown_session"] += 1
            return out
        if len(datagram) < _H.size:
            counters["drop_session_truncated"] += 1
            return out
        parsed = parse_packet(datagram)
        if parsed is None or parsed[2] == moldudp64.COUNT_END_OF_SESSION:
            counters["drop_session_malformed"] += 1
            return out
        _, sequence, _, messages = parsed
        if not messages:
            counters["heartbeats"] += 1
            return out
        core = self.core
        expected_seq = self.expected_seq
        for i, raw in enumerate(messages):
            seq = sequence + i
            expected = expected_seq[index]
            if seq < expected:
                counters["drop_seq_duplicate"] += 1
                continue
            if seq > expected:
                counters["drop_seq_gap"] += 1
                continue
            expected_seq[index] = expected + 1
            reason = inbound_drop(raw)
            if reason:
                counters["drop_" + reason] += 1
                continue
            counters["messages_in"] += 1
            if self.raw:
                self._emit_staged(out, *core.process_raw(index, ts, raw))
            else:
                core.handle(index, ts, ouch.INBOUND[chr(raw[0])].unpack(raw))
                self._emit(out)
        return out

    def on_tcp(self, ts: int, session: int, message: bytes) -> list:
        self.counters["tcp_messages_in"] += 1
        tr = self.ouch5[session]
        if tr is None:
            size = _INBOUND_SIZE.get(message[0]) if message else None
            if size is None or len(message) != size:
                self.counters["drop_" + inbound_drop(message)] += 1
                return []
            if self.raw:
                return self._emit_staged([], *self.core.process_raw(session, ts, message))
            self.core.handle(session, ts, ouch.INBOUND[chr(message[0])].unpack(message))
            return self._emit([])
        out = []
        msg, replies, _reason = tr.inbound(itch.ns_since_midnight(ts), message)
        for reply in replies:
            self.streams[session].append(reply)
            out.append((OUT_TCP, session, reply))
        if msg is None:
            return out
        self.core.handle(session, ts, msg)
        return self._emit(out)

    # -- outputs ---------------------------------------------------------------------

    def _emit(self, out: list) -> list:
        """Append the outputs of what the core staged to `out` and return it."""
        if self.raw:
            return self._emit_staged(out, *self.core.take_raw())
        return self._emit_staged(out, *self.core.take())

    def _emit_staged(self, out: list, oe, md) -> list:
        """Append the outputs of the core's OUCH (session, message) and ITCH messages
        (bytes from a bytes core, records from a records core) to `out`; return it."""
        raw = self.raw
        if oe:
            is_udp, streams, ouch5 = self.is_udp, self.streams, self.ouch5
            udp = None                  # (session, [messages]) of the open UDP packet run
            for s, x in oe:
                if is_udp[s]:
                    msg = x if raw else x.layout.pack(x)
                    if udp is not None and udp[0] != s:
                        self._udp_packets(out, udp)
                        udp = None
                    if udp is None:
                        udp = (s, [msg])
                    else:
                        udp[1].append(msg)
                    continue
                if udp is not None:
                    self._udp_packets(out, udp)
                    udp = None
                tr = ouch5[s]
                if tr is None:
                    msg = x if raw else x.layout.pack(x)
                else:
                    msg = tr.outbound(_OUTBOUND[x[0]].unpack(x) if raw else x)
                streams[s].append(msg)
                out.append((OUT_TCP, s, msg))
            if udp is not None:
                self._udp_packets(out, udp)
        if md:
            if not raw:
                md = [rec.layout.pack(rec) for rec in md]
            self.feed_messages.extend(md)
            if len(md) == 1:
                out.append((OUT_FEED, None, self.feed.one(self.feed_session, md[0])))
            else:
                for _, payload in self.feed.frame(None, self.feed_session, md):
                    out.append((OUT_FEED, None, payload))
        return out

    def _udp_packets(self, out: list, run) -> None:
        s, msgs = run
        for dest, payload in self.oe.frame(s, self.names[s], msgs):
            out.append((OUT_UDP, dest, payload))

    def all_counters(self) -> Counter:
        return self.counters + self.core.counters
