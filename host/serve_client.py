"""Minimal blocking clients of the live venue, for tests, benchmarks and scripts.

  SoupBinClient   SoupBinTCP 3.0 over TCP: login, Unsequenced Data out, packets in;
                  tracks Sequenced Data sequence numbers from Login Accepted and keeps
                  every received byte (`raw`) as a capture of what the server sent
  UdpOrderEntry   order entry in the MoldUDP64 framing (refmodel/session.py)
  FeedReceiver    the ITCH feed in MoldUDP64 on UDP, with gap filling through the
                  retransmission server

None of them parses OUCH or ITCH; they move bytes and sequence numbers.
"""

from __future__ import annotations

import select
import socket
import time

from tickcore.refmodel import moldudp64

from . import soupbintcp as sb


class SoupBinClient:
    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.reader = sb.PacketReader()
        self.raw = bytearray()
        self._queue: list = []
        self.session = None
        self.next_seq = None            # sequence number of the next Sequenced Data packet
        self.sequenced: dict[int, bytes] = {}
        self.closed = False

    # sending

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: bytes) -> None:
        self.sock.sendall(sb.unsequenced(message))

    def send_many(self, messages) -> None:
        self.sock.sendall(b"".join(sb.unsequenced(m) for m in messages))

    def heartbeat(self) -> None:
        self.sock.sendall(sb.CLIENT_HEARTBEAT_PACKET)

    def logout(self) -> None:
        self.sock.sendall(sb.LOGOUT_PACKET)

    # receiving

    def _fill(self, timeout: float) -> bool:
        """Read once; False on timeout.  Raises EOFError when the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            raise EOFError("server closed the connection")
        self.raw += data
        for ptype, payload in self.reader.feed(data):
            ptype = bytes((ptype,))
            if ptype == sb.SEQUENCED and self.next_seq is not None:
                self.sequenced[self.next_seq] = payload
                self.next_seq += 1
            elif ptype == sb.ACCEPTED:
                acc = sb.LOGIN_ACCEPTED.unpack(ptype + payload)
                self.session = acc.session
                self.next_seq = sb.parse_numeric(acc.sequence)
            self._queue.append((ptype, payload))
        return True

    def read(self, timeout: float | None = None):
        """The next packet (type, payload), or None when nothing came within timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self._queue:
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                return None
        return self._queue.pop(0)

    def read_until(self, predicate, timeout: float | None = None):
        """Read packets until predicate(type, payload) is true; returns (packet, skipped)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            pkt = self.read(max(0.0, deadline - time.monotonic()))
            if pkt is None:
                raise TimeoutError(f"no matching packet within {timeout} s "
                                   f"(skipped {len(skipped)})")
            if predicate(*pkt):
                return pkt, skipped
            skipped.append(pkt)

    def read_sequenced(self, timeout: float | None = None) -> bytes:
        """The payload of the next Sequenced Data packet (heartbeats skipped)."""
        (_, payload), _ = self.read_until(lambda t, p: t == sb.SEQUENCED, timeout)
        return payload

    def login(self, username: str, password: str, session: str = "", sequence: int = 1,
              timeout: float | None = None):
        """Send a Login Request; returns the answer (b"A" or b"J", payload)."""
        self.sock.sendall(sb.login_request(username, password, session, sequence))
        pkt, _ = self.read_until(lambda t, p: t in (sb.ACCEPTED, sb.REJECTED), timeout)
        return pkt

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Read (and keep) everything until the server closes; False on timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._fill(max(0.001, deadline - time.monotonic()))
        except EOFError:
            return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class UdpOrderEntry:
    def __init__(self, host: str, port: int, session: str, timeout: float = 5.0):
        self.addr = (host, port)
        self.session = session
        self.next_seq = 1
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def send(self, messages: list, seq: int | None = None) -> None:
        if seq is None:
            seq = self.next_seq
            self.next_seq += len(messages)
        self.sock.sendto(moldudp64.pack_packet(self.session, seq, messages), self.addr)

    def send_raw(self, payload: bytes) -> None:
        self.sock.sendto(payload, self.addr)

    def recv(self, timeout: float | None = None):
        """(header, [messages]) of the next response packet, or None on timeout."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data, _ = self.sock.recvfrom(65536)
        except TimeoutError:
            return None
        return moldudp64.parse_packet(data)

    def close(self) -> None:
        self.sock.close()


class FeedReceiver:
    """Receives feed packets on its own UDP port (give the server `--feed host:port`)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []            # every data packet, as received
        self.messages: dict[int, bytes] = {}      # sequence number -> message
        self.heartbeats = 0
        self.end_of_session = None                # next sequence number, once seen
        self.session = None

    @property
    def dest(self) -> tuple:
        return self.host, self.port

    def _take(self, data: bytes) -> None:
        parsed = moldudp64.parse_packet(data)
        if parsed is None:
            raise ValueError(f"malformed feed packet {data[:32].hex()}")
        header, msgs = parsed
        self.session = header.session
        if header.count == moldudp64.COUNT_END_OF_SESSION:
            self.end_of_session = header.sequence
            return
        if not msgs:
            self.heartbeats += 1
            return
        self.packets.append(data)
        for i, m in enumerate(msgs):
            self.messages[header.sequence + i] = m

    def drain(self, timeout: float = 0.2, limit: float = 10.0) -> int:
        """Read packets until none arrives for `timeout` s (or `limit` s have passed, as
        heartbeats never stop); returns how many arrived."""
        n = 0
        end = time.monotonic() + limit
        while True:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready or time.monotonic() > end:
                return n
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    break
                self._take(data)
                n += 1

    def wait_for(self, seq: int, timeout: float = 5.0) -> None:
        """Receive until message `seq` is held; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while seq not in self.messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"feed message {seq} not received")
            self.drain(0.05)

    def missing(self, upto: int) -> list[int]:
        return [s for s in range(1, upto + 1) if s not in self.messages]

    def request(self, retrans_addr, first: int, count: int, timeout: float = 2.0):
        """One retransmission request; returns (header, [messages]) of the answer."""
        session = self.session or " " * 10
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.settimeout(timeout)
            sock.sendto(moldudp64.HEADER.pack((session, first, count)), retrans_addr)
            data, _ = sock.recvfrom(65536)
        finally:
            sock.close()
        return moldudp64.parse_packet(data)

    def fill_gaps(self, retrans_addr, upto: int, session: str | None = None) -> int:
        """Request every missing message up to `upto`; returns how many were recovered."""
        if session is not None:
            self.session = session
        got = 0
        for _ in range(10_000):
            missing = self.missing(upto)
            if not missing:
                return got
            first = missing[0]
            count = 1
            while first + count <= upto and first + count not in self.messages:
                count += 1
            header, msgs = self.request(retrans_addr, first, count)
            if not msgs:
                raise ValueError(f"retransmission of {first} answered without messages")
            for i, m in enumerate(msgs):
                self.messages.setdefault(header.sequence + i, m)
                got += 1
        raise RuntimeError("gap filling did not converge")

    def in_order(self, upto: int | None = None) -> list[bytes]:
        upto = max(self.messages, default=0) if upto is None else upto
        return [self.messages[s] for s in range(1, upto + 1)]

    def close(self) -> None:
        self.sock.close()
