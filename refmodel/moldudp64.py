"""MoldUDP64 (Nasdaq "MoldUDP64 Protocol Specification" v1.00).

Downstream packet: Session (10 alpha), Sequence Number (8, of the first
message), Message Count (2), then Message Blocks of Message Length (2) + data.
Count 0 is a heartbeat, 0xFFFF end of session.  A request packet
(retransmission) has the same 20-byte header with the requested count.

tickcore uses the same header for order entry over UDP in both directions
(the public shape of Nasdaq's UFO framing): Session names the client session
and the sequence numbers are that session's.
"""

from __future__ import annotations

import struct

from .layout import Layout

HEADER = Layout("MoldUDP64Header", [("session", "a", 10), ("sequence", "u", 8),
                                      ("count", "u", 2)])
BLOCK_LENGTH = struct.Struct("!H")
COUNT_END_OF_SESSION = 0xFFFF


def pack_packet(session: str, sequence: int, messages) -> bytes:
    parts = [HEADER.pack((session, sequence, len(messages)))]
    for msg in messages:
        parts.append(BLOCK_LENGTH.pack(len(msg)))
        parts.append(msg)
    return b"".join(parts)


def end_of_session(session: str, next_sequence: int) -> bytes:
    return HEADER.pack((session, next_sequence, COUNT_END_OF_SESSION))


def parse_packet(payload: bytes):
    """Split a packet into (header, [message bytes]).

    Returns None when the blocks do not exactly fill the payload (truncated,
    overlong, or trailing bytes); end-of-session packets carry no blocks.
    """
    if len(payload) < HEADER.size:
        return None
    header = HEADER.unpack(payload)
    if header.count == COUNT_END_OF_SESSION:
        return (header, []) if len(payload) == HEADER.size else None
    messages = split_blocks(payload, HEADER.size, header.count)
    return None if messages is None else (header, messages)


def split_blocks(payload: bytes, pos: int, count: int):
    """The `count` message blocks from `pos` on, as [message bytes], or None unless
    they exactly fill the rest of the payload."""
    messages = []
    end = len(payload)
    for _ in range(count):
        if pos + 2 > end:
            return None
        (length,) = BLOCK_LENGTH.unpack_from(payload, pos)
        pos += 2
        if pos + length > end:
            return None
        messages.append(payload[pos:pos + length])
        pos += length
    return messages if pos == end else None


class Packetizer:
    """Packs one stream's messages into packets by the framing rule.

    A packet closes at the end of an inbound message's events (`flush`), when
    the next message is for another destination, or when the next message would
    take the payload past `max_payload` bytes.  Sequence numbers are per
    destination session name and start at 1.
    """

    def __init__(self, max_payload: int):
        self.max_payload = max_payload
        self.next_seq: dict[str, int] = {}
        self._dest = None
        self._session = None
        self._msgs: list[bytes] = []
        self._size = 0
        self.packets: list[tuple[object, bytes]] = []

    def add(self, dest, session: str, msg: bytes) -> None:
        if self._msgs and (dest != self._dest or self._size + 2 + len(msg) > self.max_payload):
            self._close()
        if not self._msgs:
            self._dest = dest
            self._session = session
            self._size = HEADER.size
        self._msgs.append(msg)
        self._size += 2 + len(msg)

    def flush(self) -> list[tuple[object, bytes]]:
        """Close the open packet; return and forget all closed (dest, payload) pairs."""
        if self._msgs:
            self._close()
        out, self.packets = self.packets, []
        return out

    def _close(self) -> None:
        seq = self.next_seq.get(self._session, 1)
        self.packets.append((self._dest, pack_packet(self._session, seq, self._msgs)))
        self.next_seq[self._session] = seq + len(self._msgs)
        self._msgs = []
