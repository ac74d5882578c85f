"""Session layer of order entry over UDP: MoldUDP64-shaped packets from clients.

A packet carries the client session's name, the sequence number of its first
message and message blocks (refmodel/moldudp64.py).  Per session the venue
expects sequence numbers 1, 2, 3, ...: a message numbered below the expected
one is a duplicate and one above it is a gap; both are dropped and counted and
leave the expected number alone (the client must resend from it).  Accepted
messages are decoded (ouch.decode_inbound); a message that does not decode is
dropped and counted but still uses up its sequence number.
"""

from __future__ import annotations

from collections import Counter

from . import moldudp64, ouch


class SessionLayer:
    def __init__(self, cfg, counters: Counter | None = None):
        self.cfg = cfg
        self.expected_seq = [1] * len(cfg.sessions)
        self.counters = Counter() if counters is None else counters

    def _drop(self, reason: str) -> None:
        self.counters["drop_" + reason] += 1

    def accept(self, payload: bytes):
        """Yield (session index, decoded message) for each message to act on, in order."""
        if len(payload) < moldudp64.HEADER.size:
            self._drop("session_truncated")
            return
        parsed = moldudp64.parse_packet(payload)
        if parsed is None or parsed[0].count == moldudp64.COUNT_END_OF_SESSION:
            self._drop("session_malformed")
            return
        header, messages = parsed
        session = self.cfg.session_by_name(header.session)
        if session is None:
            self._drop("unknown_session")
            return
        if not messages:
            self.counters["heartbeats"] += 1
            return
        for i, raw in enumerate(messages):
            seq = header.sequence + i
            expected = self.expected_seq[session.index]
            if seq < expected:
                self._drop("seq_duplicate")
                continue
            if seq > expected:
                self._drop("seq_gap")
                continue
            self.expected_seq[session.index] = expected + 1
            reason, msg = ouch.decode_inbound(raw)
            if reason:
                self._drop(reason)
                continue
            self.counters["messages_in"] += 1
            yield session.index, msg
