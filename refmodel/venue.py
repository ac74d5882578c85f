"""The whole reference pipeline: frames in, frames out.

    frame -> eth/ipv4/udp parse and filter    (packet.parse_udp_frame)
          -> session layer: sequence check, decode (session.SessionLayer)
          -> core: matching (risk gate, book) or packet loopback
          -> egress framing                     (egress.Egress)

Counters named "drop_<reason>" count what never reached the core: whole frames
for packet-level reasons, single messages for sequence and decode reasons.
"""

from __future__ import annotations

from collections import Counter

from .egress import Egress
from .loopback import LoopbackCore
from .matcher import MatchingCore
from .packet import parse_udp_frame
from .session import SessionLayer

MODES = ("match", "loopback")


class Venue:
    def __init__(self, cfg, mode: str = "match"):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.cfg = cfg
        self.mode = mode
        self.core = MatchingCore(cfg) if mode == "match" else LoopbackCore(cfg)
        self.egress = Egress(cfg)
        self.counters = Counter()
        self.sessions = SessionLayer(cfg, self.counters)

    def all_counters(self) -> Counter:
        return self.counters + self.core.counters

    def _emit(self) -> list[bytes]:
        frames = self.egress.frames(*self.core.take())
        self.counters["frames_out"] += len(frames)
        return frames

    def open(self, ts: int) -> list[bytes]:
        """Start of day, stamped with the first inbound frame's timestamp."""
        self.core.open(ts)
        return self._emit()

    def close(self, ts: int) -> list[bytes]:
        """End of day, stamped with the last inbound frame's timestamp; in match mode
        the feed ends with a MoldUDP64 end-of-session packet."""
        self.core.close(ts)
        frames = self._emit()
        if self.mode == "match":
            frames.append(self.egress.end_of_session())
            self.counters["frames_out"] += 1
        return frames

    def process(self, ts: int, frame: bytes) -> list[bytes]:
        """One inbound frame with its ingress timestamp (ns since the epoch)."""
        cfg = self.cfg
        self.counters["frames_in"] += 1
        reason, dgram = parse_udp_frame(frame, mac=cfg.mac, ip=cfg.ip, port=cfg.oe_port)
        if reason:
            self.counters["drop_" + reason] += 1
            return []
        out = []
        for session, msg in self.sessions.accept(dgram.payload):
            self.core.handle(session, ts, msg)
            out.extend(self._emit())
        return out


def run_records(cfg, records, mode: str = "match", venue: Venue | None = None):
    """Run (ts, frame) records through a venue; yield (ts, frame) outputs.

    Start of day is stamped with the first record's time, end of day with the
    last's; an empty input produces no output.
    """
    venue = venue or Venue(cfg, mode)
    ts = None
    for ts_in, frame in records:
        if ts is None:
            for out in venue.open(ts_in):
                yield ts_in, out
        ts = ts_in
        for out in venue.process(ts, frame):
            yield ts, out
    if ts is not None:
        for out in venue.close(ts):
            yield ts, out
