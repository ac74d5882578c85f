"""Egress: core records -> MoldUDP64-framed UDP/IPv4/Ethernet frames.

Framing is a pure function of the event sequence (docs/protocol.md,
"Framing"): the records caused by one inbound message are packed by
`moldudp64.Packetizer` (a packet closes at the end of the message's events, on
a change of destination session, or at `max_payload`), and the order-entry
frames of that message go out before its market-data frames.
"""

from __future__ import annotations

from . import moldudp64
from .packet import build_udp_frame


class Egress:
    def __init__(self, cfg):
        self.cfg = cfg
        self.oe = moldudp64.Packetizer(cfg.max_payload)
        self.md = moldudp64.Packetizer(cfg.max_payload)

    def frames(self, oe_records, md_records) -> list[bytes]:
        cfg = self.cfg
        for session, rec in oe_records:
            self.oe.add(session, cfg.sessions[session].name, rec.layout.pack(rec))
        for rec in md_records:
            self.md.add(None, cfg.feed_session, rec.layout.pack(rec))
        out = []
        for session, payload in self.oe.flush():
            s = cfg.sessions[session]
            out.append(build_udp_frame(src_mac=cfg.mac, dst_mac=s.mac, src_ip=cfg.ip,
                                       dst_ip=s.ip, src_port=cfg.oe_port, dst_port=s.port,
                                       payload=payload, ttl=cfg.ttl))
        out.extend(self.feed_frame(payload) for _, payload in self.md.flush())
        return out

    def feed_frame(self, payload: bytes) -> bytes:
        cfg = self.cfg
        return build_udp_frame(src_mac=cfg.mac, dst_mac=cfg.feed_mac, src_ip=cfg.ip,
                               dst_ip=cfg.feed_ip, src_port=cfg.feed_src_port,
                               dst_port=cfg.feed_port, payload=payload, ttl=cfg.ttl)

    def end_of_session(self) -> bytes:
        """The feed's MoldUDP64 end-of-session packet (count 0xFFFF)."""
        seq = self.md.next_seq.get(self.cfg.feed_session, 1)
        return self.feed_frame(moldudp64.end_of_session(self.cfg.feed_session, seq))
