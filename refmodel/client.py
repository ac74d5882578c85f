"""The client side of order entry over UDP: what a trading session sends.

Used by the flow generator and the tests to build inbound frames the same way
a real client would: MoldUDP64-shaped header with the session name and the
sequence number of the first message, OUCH 4.2 message blocks, UDP to the
venue's order-entry port with both checksums.
"""

from __future__ import annotations

from . import moldudp64
from .packet import build_udp_frame


class ClientSession:
    def __init__(self, cfg, session):
        self.cfg = cfg
        self.session = session
        self.next_seq = 1

    def frame(self, messages: list[bytes], seq: int | None = None) -> bytes:
        """A frame carrying `messages`; without `seq` they take the next sequence
        numbers (a given `seq` leaves the session's numbering alone)."""
        if seq is None:
            seq = self.next_seq
            self.next_seq += len(messages)
        payload = moldudp64.pack_packet(self.session.name, seq, messages)
        return self.raw_frame(payload)

    def raw_frame(self, payload: bytes) -> bytes:
        s, cfg = self.session, self.cfg
        return build_udp_frame(src_mac=s.mac, dst_mac=cfg.mac, src_ip=s.ip, dst_ip=cfg.ip,
                               src_port=s.port, dst_port=cfg.oe_port, payload=payload,
                               ttl=64)
