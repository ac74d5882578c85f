"""ITCH 5.0 in MoldUDP64 (Nasdaq "MoldUDP64 Protocol Specification" v1.00) for the live venue.

`FeedPublisher` sends the feed packets the pipeline frames (host/serve_pipeline.py)
to one UDP destination: a multicast group (TTL 1, loopback on, out of the
interface with the given address when one is given) or a unicast address.
Sends never block: a full socket buffer drops the packet and counts it
(`feed_send_dropped`), receivers recover it by retransmission.  When nothing
was sent for `heartbeat` seconds it sends a heartbeat (message count 0, the
next sequence number), and after end of day an end-of-session packet (count
0xFFFF) instead, as the specification asks.  Heartbeats carry no messages and
are not part of the replayed stream.

`RetransmissionServer` answers request packets (the 20-byte header: session,
first sequence number, message count) on its own UDP port with one packet
holding the requested messages, from the first requested, as many as fit in
`max_payload` (a client asking for more asks again from where the answer
stopped).  A request beyond the last published message is answered with a
heartbeat carrying the next sequence number.  Requests of another session,
of the wrong size, for count 0 or 0xFFFF, or for sequence 0 are dropped and
counted; requests are rate limited per source address.
"""

from __future__ import annotations

import asyncio
import socket
import time

from tickcore.refmodel import moldudp64

from .serve_limits import RateLimiter


def feed_socket(dest: tuple[str, int], interface: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    first = int(dest[0].split(".")[0]) if dest[0][:1].isdigit() else 0
    if 224 <= first <= 239:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if interface:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            socket.inet_aton(interface))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    except OSError:
        pass
    return sock


class FeedPublisher:
    def __init__(self, pipeline, dest: tuple[str, int], counters, heartbeat: float = 1.0,
                 interface: str | None = None):
        self.pipeline = pipeline
        self.dest = dest
        self.counters = counters
        self.heartbeat_interval = heartbeat
        self.sock = feed_socket(dest, interface)
        self.last_send = time.monotonic()

    def send(self, payload: bytes) -> None:
        try:
            self.sock.sendto(payload, self.dest)
            self.counters["feed_packets_sent"] += 1
        except BlockingIOError:
            self.counters["feed_send_dropped"] += 1
        except OSError:
            self.counters["feed_send_errors"] += 1
        self.last_send = time.monotonic()

    def tick(self, now: float) -> None:
        """Heartbeat (or end of session, once the day is closed) when idle."""
        if self.heartbeat_interval and now - self.last_send >= self.heartbeat_interval:
            p = self.pipeline
            if p.closed:
                packet = moldudp64.end_of_session(p.feed_session, p.feed_next_seq)
            else:
                packet = moldudp64.HEADER.pack((p.feed_session, p.feed_next_seq, 0))
            self.send(packet)
            self.counters["feed_heartbeats"] += 1

    def close(self) -> None:
        self.sock.close()


def retransmission(messages: list[bytes], session: str, first: int, count: int,
                   max_payload: int) -> bytes:
    """The answer to a request for `count` messages from sequence `first`."""
    start = first - 1
    if start >= len(messages):
        return moldudp64.HEADER.pack((session, len(messages) + 1, 0))
    size = moldudp64.HEADER.size
    stop = start
    limit = min(len(messages), start + count)
    while stop < limit:
        size += 2 + len(messages[stop])
        if size > max_payload and stop > start:
            break
        stop += 1
    return moldudp64.pack_packet(session, first, messages[start:stop])


class RetransmissionServer(asyncio.DatagramProtocol):
    def __init__(self, pipeline, counters, max_payload: int, rate: float = 2000.0,
                 burst: float = 200.0):
        self.pipeline = pipeline
        self.counters = counters
        self.max_payload = max_payload
        self.limiter = RateLimiter(rate, burst)
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        c = self.counters
        if len(data) != moldudp64.HEADER.size:
            c["retrans_malformed"] += 1
            return
        session, first, count = moldudp64.HEADER.unpack(data)
        p = self.pipeline
        if session != p.feed_session:
            c["retrans_unknown_session"] += 1
            return
        if count == 0 or count == moldudp64.COUNT_END_OF_SESSION or first == 0:
            c["retrans_malformed"] += 1
            return
        if not self.limiter.allow(addr[0], time.monotonic()):
            c["retrans_rate_limited"] += 1
            return
        if first > len(p.feed_messages):
            c["retrans_beyond"] += 1
        answer = retransmission(p.feed_messages, session, first, count, self.max_payload)
        c["retrans_requests"] += 1
        self.transport.sendto(answer, addr)

    def error_received(self, exc) -> None:
        self.counters["retrans_errors"] += 1
