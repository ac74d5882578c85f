"""SoupBinTCP 3.0 (Nasdaq "SoupBinTCP Version 3.00"): the session layer of order entry on TCP.

Section references are to that specification.  A logical packet (1.1) is a
2-byte big-endian Packet Length (the bytes that follow it: type + payload), a
1-byte Packet Type and the payload.  Packet types (2.2, 2.3):

  client -> server   'L' Login Request, 'U' Unsequenced Data, 'R' Client Heartbeat,
                     'O' Logout Request, '+' Debug
  server -> client   'A' Login Accepted, 'J' Login Rejected, 'S' Sequenced Data,
                     'H' Server Heartbeat, 'Z' End of Session, '+' Debug

Numeric fields of the login packets are ASCII decimal in alpha fields: tickcore
sends them right-justified (space padded on the left) and reads either
justification.  `PacketReader` splits a byte stream into packets and turns
protocol violations into one of `READ_ERRORS`; what the server does about each
is in docs/serve.md ("Outcomes").  Nothing here does I/O.
"""

from __future__ import annotations

import struct

from tickcore.refmodel.layout import Layout

LENGTH = struct.Struct("!H")

LOGIN_REQUEST = Layout("LoginRequest", [
    ("username", "a", 6), ("password", "a", 10), ("session", "a", 10), ("sequence", "a", 20),
], type_code="L")
LOGIN_ACCEPTED = Layout("LoginAccepted", [("session", "a", 10), ("sequence", "a", 20)],
                        type_code="A")
LOGIN_REJECTED = Layout("LoginRejected", [("reason", "c", 1)], type_code="J")

# packet types
LOGIN = b"L"
UNSEQUENCED = b"U"
CLIENT_HEARTBEAT = b"R"
LOGOUT = b"O"
DEBUG = b"+"
ACCEPTED = b"A"
REJECTED = b"J"
SEQUENCED = b"S"
SERVER_HEARTBEAT = b"H"
END_OF_SESSION = b"Z"

CLIENT_TYPES = frozenset(b"LURO+")
SERVER_TYPES = frozenset(b"AJSHZ+")

# Login Rejected reasons (2.3.2)
REJECT_NOT_AUTHORIZED = "A"
REJECT_SESSION_NOT_AVAILABLE = "S"

READ_ERRORS = (
    "empty_packet",      # Packet Length 0: no packet type
    "oversized_packet",  # Packet Length above the reader's limit
)

SERVER_HEARTBEAT_PACKET = b"\x00\x01H"
CLIENT_HEARTBEAT_PACKET = b"\x00\x01R"
END_OF_SESSION_PACKET = b"\x00\x01Z"
LOGOUT_PACKET = b"\x00\x01O"


def pack(ptype: bytes, payload: bytes = b"") -> bytes:
    """One logical packet."""
    return LENGTH.pack(len(payload) + 1) + ptype + payload


_SEQUENCED_HEADS: dict[int, bytes] = {}      # message length -> Packet Length + type


def sequenced(message: bytes) -> bytes:
    """A Sequenced Data packet carrying one higher-level message."""
    n = len(message)
    head = _SEQUENCED_HEADS.get(n)
    if head is None:
        head = _SEQUENCED_HEADS[n] = LENGTH.pack(n + 1) + SEQUENCED
    return head + message


def unsequenced(message: bytes) -> bytes:
    return LENGTH.pack(len(message) + 1) + b"U" + message


def numeric(value: int, size: int = 20) -> str:
    """A numeric alpha field: decimal, right-justified, space padded."""
    return str(value).rjust(size)


def parse_numeric(text: str) -> int | None:
    """Read a numeric alpha field; blank means 0; anything but digits and spaces is None."""
    digits = text.strip(" ")
    if not digits:
        return 0
    if not digits.isdigit() or not digits.isascii():
        return None
    return int(digits)


def login_request(username: str, password: str, session: str = "", sequence: int = 0) -> bytes:
    return LENGTH.pack(LOGIN_REQUEST.size) + LOGIN_REQUEST.build(
        username=username, password=password, session=session,
        sequence=numeric(sequence))


def login_accepted(session: str, sequence: int) -> bytes:
    return LENGTH.pack(LOGIN_ACCEPTED.size) + LOGIN_ACCEPTED.build(
        session=session, sequence=numeric(sequence))


def login_rejected(reason: str) -> bytes:
    return LENGTH.pack(LOGIN_REJECTED.size) + LOGIN_REJECTED.build(reason=reason)


class ProtocolError(Exception):
    """The byte stream broke SoupBinTCP framing; `reason` is one of READ_ERRORS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PacketReader:
    """Incremental splitter: bytes in, (packet type, payload) out, in order.

    `max_length` bounds Packet Length so a hostile length is refused before its
    body is buffered.  `pending` is the number of buffered bytes of an
    incomplete packet (non-zero at end of stream means a truncated packet).
    """

    __slots__ = ("max_length", "_buf")

    def __init__(self, max_length: int = 65535):
        self.max_length = max_length
        self._buf = b""

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Packets completed by `data`, as (type byte value, payload).  Raises ProtocolError."""
        buf = self._buf + data if self._buf else data
        out = []
        pos, end = 0, len(buf)
        limit = self.max_length
        while end - pos >= 2:
            n = (buf[pos] << 8) | buf[pos + 1]
            if n == 0:
                self._buf = b""
                raise ProtocolError("empty_packet")
            if n > limit:
                self._buf = b""
                raise ProtocolError("oversized_packet")
            stop = pos + 2 + n
            if stop > end:
                break
            out.append((buf[pos + 2], buf[pos + 3:stop]))
            pos = stop
        self._buf = buf[pos:] if pos < end else b""
        return out


class PacketBuffer:
    """`PacketReader` for a receive buffer the socket reads into (asyncio's
    BufferedProtocol): `get_buffer()` is where the next read goes, `advance(n)`
    returns the packets its n bytes completed, as (type byte value, payload bytes),
    with the same ProtocolErrors as `PacketReader.feed`.  Nothing is allocated per
    read but the payloads: a plain read allocates its full size (asyncio asks for
    256 KiB, which glibc maps and unmaps on every read).

    The buffer holds at least two packets of `max_length`; the bytes of an
    incomplete packet move to its start when less than one packet's room is left.
    """

    __slots__ = ("max_length", "_buf", "_view", "_start", "_end", "_room")

    def __init__(self, max_length: int = 65535, size: int = 1 << 16):
        self.max_length = max_length
        self._room = max_length + LENGTH.size            # one whole packet
        self._buf = bytearray(max(size, 2 * self._room))
        self._view = memoryview(self._buf)
        self._start = self._end = 0

    @property
    def pending(self) -> int:
        return self._end - self._start

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next read goes (asyncio's BufferedProtocol.get_buffer; the size
        hint is not needed: the buffer always has room for a whole packet)."""
        start, end = self._start, self._end
        if start == end:
            self._start = self._end = 0
            return self._view
        if len(self._buf) - end < self._room:
            n = end - start
            self._buf[:n] = bytes(self._view[start:end])      # may overlap: copy first
            self._start, self._end = 0, n
            return self._view[n:]
        return self._view[end:]

    def advance(self, nbytes: int) -> list[tuple[int, bytes]]:
        """Packets completed by the `nbytes` just read into `get_buffer()`.  Raises
        ProtocolError (and forgets what is buffered)."""
        buf = self._buf
        pos = self._start
        end = self._end = self._end + nbytes
        out = []
        limit = self.max_length
        while end - pos >= 2:
            n = (buf[pos] << 8) | buf[pos + 1]
            if n == 0 or n > limit:
                self._start = self._end = 0
                raise ProtocolError("empty_packet" if n == 0 else "oversized_packet")
            stop = pos + 2 + n
            if stop > end:
                break
            out.append((buf[pos + 2], bytes(buf[pos + 3:stop])))
            pos = stop
        if pos == end:
            self._start = self._end = 0
        else:
            self._start = pos
        return out
