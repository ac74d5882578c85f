"""Decode tickcore traffic (either direction) into plain dicts, one per message.

A frame is classified by its UDP ports against the configuration:
  - to the feed port from the feed source port: ITCH 5.0 in MoldUDP64 ("itch")
  - from the order-entry port: OUCH 4.2 responses ("ouch_out")
  - to the order-entry port: OUCH 4.2 requests ("ouch_in")
Each dict carries frame index, timestamp, stream, MoldUDP64 session and
sequence number, message type and every field (alpha fields without padding).
Undecodable input gives a dict with an "error" key instead; nothing raises.
"""

from __future__ import annotations

from . import itch, moldudp64, ouch
from .layout import to_json_value
from .packet import parse_udp_frame

STREAMS = {"itch": itch.MESSAGES, "ouch_out": ouch.OUTBOUND, "ouch_in": ouch.INBOUND}


def classify(cfg, dgram) -> str | None:
    if dgram.dst_port == cfg.feed_port and dgram.src_port == cfg.feed_src_port:
        return "itch"
    if dgram.src_port == cfg.oe_port:
        return "ouch_out"
    if dgram.dst_port == cfg.oe_port:
        return "ouch_in"
    return None


def message_dict(layout, rec) -> dict:
    out = {"type": layout.name, "msg_type": layout.type_code}
    for field, value in zip(layout.fields, rec, strict=True):
        out[field.name] = to_json_value(field, value)
    return out


def decode_message(table, raw: bytes) -> dict:
    if not raw:
        return {"error": "bad_length", "raw": ""}
    layout = table.get(chr(raw[0]))
    if layout is None:
        return {"error": "unknown_type", "raw": raw.hex()}
    if len(raw) != layout.size:
        return {"error": "bad_length", "type": layout.name, "raw": raw.hex()}
    return message_dict(layout, layout.unpack(raw))


def decode_frame(cfg, index: int, ts: int, frame: bytes):
    """Yield one dict per message of the frame (or one error dict)."""
    base = {"frame": index, "ts": ts}
    reason, dgram = parse_udp_frame(frame, mac=None, ip=None, port=None)
    if reason:
        yield {**base, "error": reason}
        return
    stream = classify(cfg, dgram)
    if stream is None:
        yield {**base, "error": "unknown_stream", "src_port": dgram.src_port,
               "dst_port": dgram.dst_port}
        return
    parsed = moldudp64.parse_packet(dgram.payload)
    if parsed is None:
        yield {**base, "stream": stream, "error": "session_malformed"}
        return
    header, messages = parsed
    base.update(stream=stream, session=header.session.rstrip(" "))
    if header.count == moldudp64.COUNT_END_OF_SESSION:
        yield {**base, "seq": header.sequence, "type": "EndOfSession"}
        return
    if not messages:
        yield {**base, "seq": header.sequence, "type": "Heartbeat"}
        return
    table = STREAMS[stream]
    for i, raw in enumerate(messages):
        yield {**base, "seq": header.sequence + i, **decode_message(table, raw)}


def decode_records(cfg, records):
    """Decode (ts, frame) records; yields message dicts in order."""
    for index, (ts, frame) in enumerate(records):
        yield from decode_frame(cfg, index, ts, frame)
