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
"""

from __future__ import annotations

from collections import Counter

from tickcore.refmodel import itch, moldudp64, ouch
from tickcore.refmodel.session import SessionLayer

from .engines import make_core
from .ouch5 import Ouch5Session

OUT_TCP, OUT_UDP, OUT_FEED = 0, 1, 2


class Pipeline:
    def __init__(self, spec, engine: str = "reference"):
        cfg = spec.cfg
        self.spec = spec
        self.cfg = cfg
        self.core = make_core(cfg, engine)
        self.counters = Counter()
        self.sessions = SessionLayer(cfg, self.counters)
        self.is_udp = [p == "udp" for p in spec.protocols]
        self.names = [s.name for s in cfg.sessions]
        self.udp_index = {s.name: s.index for s in cfg.sessions if self.is_udp[s.index]}
        self.streams = [None if udp else [] for udp in self.is_udp]
        self.ouch5 = [Ouch5Session(p, self.counters) if p.startswith("ouch50") else None
                      for p in spec.protocols]
        self.oe = moldudp64.Packetizer(cfg.max_payload)
        self.feed = moldudp64.Packetizer(cfg.max_payload)
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
        if len(datagram) < moldudp64.HEADER.size:
            return None, "udp_truncated"
        parsed = moldudp64.parse_packet(datagram)
        if parsed is None or parsed[0].count == moldudp64.COUNT_END_OF_SESSION:
            return None, "udp_malformed"
        header, messages = parsed
        index = self.udp_index.get(header.session)
        if index is None:
            return None, "udp_unknown_session"
        if not messages:
            return None, "udp_heartbeat"
        expected = self.sessions.expected_seq[index]
        if not header.sequence <= expected < header.sequence + len(messages):
            return None, ("udp_seq_duplicate" if header.sequence < expected else "udp_seq_gap")
        return index, None

    def on_udp(self, ts: int, datagram: bytes) -> list:
        out = []
        if datagram[:10].decode("latin-1") not in self.udp_index:
            self.counters["drop_udp_unknown_session"] += 1
            return out
        for session, msg in self.sessions.accept(datagram):
            self.core.handle(session, ts, msg)
            self._emit(out)
        return out

    def on_tcp(self, ts: int, session: int, message: bytes) -> list:
        out = []
        self.counters["tcp_messages_in"] += 1
        tr = self.ouch5[session]
        if tr is None:
            reason, msg = ouch.decode_inbound(message)
            if reason:
                self.counters["drop_" + reason] += 1
                return out
            self.core.handle(session, ts, msg)
        else:
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
        oe, md = self.core.take()
        if oe:
            packetizer = self.oe
            udp_open = False
            is_udp, streams, ouch5 = self.is_udp, self.streams, self.ouch5
            for s, rec in oe:
                if is_udp[s]:
                    packetizer.add(s, self.names[s], rec.layout.pack(rec))
                    udp_open = True
                    continue
                if udp_open:
                    for dest, payload in packetizer.flush():
                        out.append((OUT_UDP, dest, payload))
                    udp_open = False
                tr = ouch5[s]
                msg = rec.layout.pack(rec) if tr is None else tr.outbound(rec)
                streams[s].append(msg)
                out.append((OUT_TCP, s, msg))
            if udp_open:
                for dest, payload in packetizer.flush():
                    out.append((OUT_UDP, dest, payload))
        if md:
            feed, messages, session = self.feed, self.feed_messages, self.feed_session
            for rec in md:
                data = rec.layout.pack(rec)
                messages.append(data)
                feed.add(None, session, data)
            for _, payload in feed.flush():
                out.append((OUT_FEED, None, payload))
        return out

    def all_counters(self) -> Counter:
        return self.counters + self.core.counters
