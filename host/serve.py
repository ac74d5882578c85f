"""`tickcore serve`: the engine as a live venue on this machine (docs/serve.md).

One thread, one asyncio loop.  Edges:

  TCP  SoupBinTCP 3.0 (host/soupbintcp.py) carrying OUCH 4.2, or OUCH 5.0 per
       user (host/ouch5.py); login checked against the users file
  UDP  order entry in the MoldUDP64 framing of refmodel/session.py; responses
       in the same framing to the address the session last sent from
  feed ITCH 5.0 in MoldUDP64 to a multicast group or UDP address, and a
       retransmission server on its own port (host/feed.py)

Every inbound message that can change the venue is journaled (host/journal.py)
with its ingress timestamp (the receive time, never earlier than the previous
one) before the engine sees it; the deterministic part (host/serve_pipeline.py)
turns it into outbound streams.  A restart replays the journal through the same
pipeline, so the book, order reference numbers and every sequence number carry
on where they stopped.

Nothing in the matching path waits for a client: TCP writes go to the
transport's buffer and a connection whose buffer passes `max_output_buffer`
bytes is dropped and counted (its messages stay in its stream for a re-login);
sends on UDP never block.  Replays on re-login run in the connection's own
task with flow control and switch to direct writes once caught up.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

from tickcore.refmodel.config import ConfigError
from tickcore.refmodel.packet import ip_from_str

from . import journal as jr
from . import soupbintcp as sb
from .feed import FeedPublisher, RetransmissionServer
from .serve_config import build_spec, canonical, describe_difference, read_users
from .serve_limits import RateLimiter
from .serve_pipeline import OUT_TCP, OUT_UDP, Pipeline


class ServeError(Exception):
    """The server cannot start as asked; the message says why."""


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 0                       # SoupBinTCP; 0 picks a free port
    udp_port: int | None = None         # None: the TCP port's number; -1: no UDP order entry
    retrans_port: int | None = None     # None: TCP port + 1 (0 when port is 0); -1: none
    feed: tuple | None = None           # (host, port); None: the configured group and port
    feed_interface: str | None = None   # address of the interface for a multicast feed
    fsync: str = "always"
    fsync_interval: float = 0.01
    engine: str = "software"
    heartbeat_interval: float = 1.0     # server heartbeat after this long without sending
    heartbeat_timeout: float = 15.0     # drop a client silent for this long
    login_timeout: float = 5.0          # drop a connection not logged in after this long
    max_connections: int = 256
    max_pending_logins: int = 64
    login_rate: float = 10.0            # login attempts per second per client IP
    login_burst: float = 20.0
    max_packet: int = 1024              # largest inbound SoupBinTCP Packet Length
    max_output_buffer: int = 8 << 20    # bytes queued to a client before it is dropped
    tcp_sndbuf: int = 0                 # SO_SNDBUF of client connections (0: the OS's)
    feed_heartbeat: float = 1.0
    retrans_rate: float = 2000.0
    test_clock: tuple | None = None     # (start, step): synthetic ingress timestamps
    busy_poll: bool = False             # spin instead of sleeping in the event loop


class SpinSelector(selectors.DefaultSelector):
    """A selector that polls without sleeping until something is ready or the timeout
    passes: the loop keeps one core busy and never pays a wakeup (tens of microseconds
    on a virtual machine) between a packet's arrival and its handling."""

    def select(self, timeout=None):
        if timeout is not None and timeout <= 0:
            return super().select(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = super().select
        while True:
            ready = poll(0)
            if ready or (deadline is not None and time.monotonic() >= deadline):
                return ready


def new_event_loop(busy_poll: bool = False) -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(SpinSelector()) if busy_poll else asyncio.new_event_loop()


def session_name_of(open_ts: int) -> str:
    """The SoupBinTCP session name: the journal's start of day in Unix seconds."""
    return f"{open_ts // 1_000_000_000:010d}"[-10:]


class Clock:
    """Ingress timestamps: the receive time (ns since the epoch), never decreasing; or,
    for tests, start, start + step, ... continuing after the journal's last record."""

    def __init__(self, test_clock=None):
        self.last = 0
        self.test = test_clock

    def resume(self, last_ts: int) -> None:
        self.last = max(self.last, last_ts)

    def __call__(self) -> int:
        if self.test is not None:
            start, step = self.test
            ts = self.last + step if self.last else start
        else:
            ts = time.time_ns()
            if ts < self.last:
                ts = self.last
        self.last = ts
        return ts


# -- SoupBinTCP connections ------------------------------------------------------------

_U, _R, _L, _O, _DEBUG = ord("U"), ord("R"), ord("L"), ord("O"), ord("+")
_REPLAY_CHUNK = 512
_DIRECT_REPLAY = 256


class SoupBinConnection(asyncio.BufferedProtocol):
    """One SoupBinTCP connection.  A BufferedProtocol: the socket reads into the
    connection's own buffer (soupbintcp.PacketBuffer), with no allocation per read."""

    def __init__(self, server: VenueServer):
        self.server = server
        self.transport = None
        self.peer = ("?", 0)
        self.reader = sb.PacketBuffer(server.options.max_packet)
        self.session = None          # engine session index once logged in
        self.live = False            # caught up: the engine writes to it directly
        self.cursor = 0              # messages of the session's stream written
        self.closing = False
        self.refused = False
        self.connected_at = self.last_recv = self.last_sent = time.monotonic()
        self._resume = None

    # asyncio callbacks

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ("?", 0)
        s = self.server
        if not s.accepting:
            self.refused = True
            transport.abort()
            return
        if len(s.connections) >= s.options.max_connections:
            s.counters["tcp_refused_max_connections"] += 1
            self.refused = True
            transport.abort()
            return
        if s.pending_logins >= s.options.max_pending_logins:
            s.counters["tcp_refused_login_flood"] += 1
            self.refused = True
            transport.abort()
            return
        s.pending_logins += 1
        s.connections.add(self)
        s.counters["tcp_connections"] += 1
        transport.set_write_buffer_limits(high=256 << 10, low=64 << 10)
        if s.options.tcp_sndbuf:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, s.options.tcp_sndbuf)

    def connection_lost(self, exc) -> None:
        s = self.server
        if self.refused:
            return
        self.closing = True
        self.live = False
        s.connections.discard(self)
        if self.session is None:
            s.pending_logins -= 1
        elif s.tcp_conns[self.session] is self:
            s.tcp_conns[self.session] = None
        if self.reader.pending:
            s.counters["tcp_truncated_packet"] += 1
        s.counters["tcp_disconnects"] += 1
        if self._resume is not None:
            self._resume.set()

    def pause_writing(self) -> None:
        if self._resume is None:
            self._resume = asyncio.Event()
        self._resume.clear()

    def resume_writing(self) -> None:
        if self._resume is not None:
            self._resume.set()

    def get_buffer(self, sizehint: int):
        return self.reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:
            return
        s = self.server
        self.last_recv = time.monotonic()
        try:
            packets = self.reader.advance(nbytes)
        except sb.ProtocolError as exc:
            s.counters["tcp_" + exc.reason] += 1
            self.abort()
            return
        if len(packets) == 1 and packets[0][0] == _U and self.session is not None:
            s.on_tcp_message(self.session, packets[0][1])     # the common case, kept short
            return
        batch = None
        for ptype, payload in packets:
            if ptype == _U:
                if self.session is None:
                    s.counters["tcp_data_before_login"] += 1
                    self.abort()
                    return
                if batch is None:
                    batch = [payload]
                else:
                    batch.append(payload)
                continue
            if batch:
                s.on_tcp_messages(self.session, batch)
                batch = None
                if self.closing:
                    return
            if ptype == _R:
                s.counters["tcp_client_heartbeats"] += 1
            elif ptype == _L:
                if self.session is not None:
                    s.counters["tcp_login_repeated"] += 1
                    self.abort()
                    return
                self.login(payload)
            elif ptype == _O:
                s.counters["tcp_logouts"] += 1
                self.close()
                return
            elif ptype == _DEBUG:
                s.counters["tcp_debug_packets"] += 1
            else:
                s.counters["tcp_unknown_packet_type"] += 1
                self.abort()
                return
            if self.closing:
                return
        if batch:
            s.on_tcp_messages(self.session, batch)

    # actions

    def abort(self) -> None:
        self.closing = True
        self.live = False
        self.transport.abort()

    def close(self) -> None:
        self.closing = True
        self.live = False
        self.transport.close()

    def reject(self, reason: str, counter: str) -> None:
        self.server.counters[counter] += 1
        self.transport.write(sb.login_rejected(reason))
        self.close()

    def login(self, payload: bytes) -> None:
        s = self.server
        if not s.login_limiter.allow(self.peer[0], time.monotonic()):
            return self.reject(sb.REJECT_NOT_AUTHORIZED, "tcp_login_rate_limited")
        if len(payload) != sb.LOGIN_REQUEST.size - 1:
            return self.reject(sb.REJECT_NOT_AUTHORIZED, "tcp_login_malformed")
        req = sb.LOGIN_REQUEST.unpack(b"L" + payload)
        # alpha fields should be left-justified; some clients (ouch-connect) right-justify
        name = req.username.strip(" ")
        password = s.passwords.get(name)
        given = req.password.strip(" ").encode("latin-1")
        if password is None or not hmac.compare_digest(given, password):
            return self.reject(sb.REJECT_NOT_AUTHORIZED, "tcp_login_bad_credentials")
        sequence = sb.parse_numeric(req.sequence)
        if sequence is None:
            return self.reject(sb.REJECT_NOT_AUTHORIZED, "tcp_login_malformed")
        wanted = req.session.strip(" ")
        if wanted and wanted != s.session_name:
            return self.reject(sb.REJECT_SESSION_NOT_AVAILABLE, "tcp_login_unknown_session")
        index = s.user_session[name]
        if s.tcp_conns[index] is not None:
            return self.reject(sb.REJECT_SESSION_NOT_AVAILABLE, "tcp_login_duplicate")
        stream = s.pipeline.streams[index]
        next_seq = len(stream) + 1
        start = next_seq if sequence == 0 or sequence > next_seq else sequence
        self.session = index
        s.pending_logins -= 1
        s.tcp_conns[index] = self
        s.counters["tcp_logins"] += 1
        self.cursor = start - 1
        self.transport.write(sb.login_accepted(s.session_name, start))
        self.last_sent = time.monotonic()
        if next_seq - start <= _DIRECT_REPLAY:
            self._write_backlog()
            self._caught_up()
        else:
            s.counters["tcp_replays"] += 1
            asyncio.get_running_loop().create_task(self._replay())

    def _write_backlog(self) -> None:
        stream = self.server.pipeline.streams[self.session]
        if self.cursor < len(stream):
            self.transport.write(b"".join(sb.sequenced(m) for m in stream[self.cursor:]))
            self.cursor = len(stream)

    async def _replay(self) -> None:
        stream = self.server.pipeline.streams[self.session]
        while self.cursor < len(stream) and not self.closing:
            chunk = stream[self.cursor:self.cursor + _REPLAY_CHUNK]
            self.transport.write(b"".join(sb.sequenced(m) for m in chunk))
            self.cursor += len(chunk)
            self.last_sent = time.monotonic()
            if self._resume is not None and not self._resume.is_set():
                await self._resume.wait()
        if not self.closing:
            self._caught_up()

    def _caught_up(self) -> None:
        self.live = True
        if self.server.pipeline.closed:
            self.end_of_session()

    def end_of_session(self) -> None:
        self.transport.write(sb.END_OF_SESSION_PACKET)
        self.server.counters["tcp_end_of_session_sent"] += 1
        self.close()

    def send(self, data: bytes, count: int, now: float) -> None:
        """Direct write of `count` Sequenced Data packets (caught-up connections)."""
        t = self.transport
        t.write(data)
        self.cursor += count
        self.last_sent = now
        if t.get_write_buffer_size() > self.server.options.max_output_buffer:
            self.server.counters["tcp_slow_consumer_dropped"] += 1
            self.abort()


class OrderEntryUdp:
    """The UDP order-entry socket, read and written directly from the event loop.

    Each datagram is read with recvfrom_into into one preallocated buffer (asyncio's
    datagram transport allocates 256 KiB for every read, which glibc maps and unmaps
    each time).  Responses are sent at once; only when the socket's buffer is full
    are they queued, in order, until it drains.  Errors of either direction are
    counted (`udp_errors`), as asyncio reports them to a DatagramProtocol."""

    MAX_READS = 64                    # datagrams read per readiness, before yielding

    def __init__(self, server: VenueServer, sock: socket.socket):
        self.server = server
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self._buf = bytearray(1 << 16)
        self._view = memoryview(self._buf)
        self._queue = collections.deque()
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recv, view, on_udp = self.sock.recvfrom_into, self._view, self.server.on_udp
        for _ in range(self.MAX_READS):
            try:
                n, addr = recv(self._buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.server.counters["udp_errors"] += 1
                return
            on_udp(view[:n].tobytes(), addr)
            if self.sock.fileno() < 0:
                return

    def sendto(self, data: bytes, addr) -> None:
        if self._queue:
            self._queue.append((data, addr))
            return
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue.append((data, addr))
            self.loop.add_writer(self.sock.fileno(), self._writable)
        except OSError:
            self.server.counters["udp_errors"] += 1

    def _writable(self) -> None:
        queue = self._queue
        while queue:
            data, addr = queue[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.server.counters["udp_errors"] += 1
            queue.popleft()
        self.loop.remove_writer(self.sock.fileno())

    def get_extra_info(self, name: str):
        return self.sock.getsockname() if name == "sockname" else None

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            if self._queue:
                self.loop.remove_writer(self.sock.fileno())
            self.sock.close()


# -- the server --------------------------------------------------------------------


class VenueServer:
    def __init__(self, spec, users, journal_dir, options: ServeOptions | None = None):
        self.spec = spec
        self.options = options or ServeOptions()
        self.journal_dir = os.fspath(journal_dir)
        self.counters = Counter()
        self.passwords = {u.name: u.password.encode("latin-1") for u in users}
        names = spec.session_names()
        self.user_session = {u.name: names.index(u.name) for u in users}
        self.pipeline = Pipeline(spec, self.options.engine)
        n = len(spec.cfg.sessions)
        self.tcp_conns: list = [None] * n
        self.udp_addr: list = [None] * n
        self.connections: set = set()
        self.pending_logins = 0
        self.accepting = False
        self.clock = Clock(self.options.test_clock)
        self.login_limiter = RateLimiter(self.options.login_rate, self.options.login_burst)
        self.journal = None
        self.session_name = ""
        self.recovered_records = 0
        self.torn_bytes = 0
        self.torn_reason = None
        self._resend = []
        self.tcp_port = self.udp_port = self.retrans_port = None
        self.feed = None
        self._udp = None
        self._servers = []
        self._transports = []
        self._housekeeping = None
        self._stopped = None

    # -- journal -----------------------------------------------------------------

    def open_journal(self) -> None:
        """Recover from an existing journal, or create one and open the day."""
        o = self.options
        path = jr.journal_path(self.journal_dir)
        p = self.pipeline
        if os.path.exists(path) and os.path.getsize(path) > 0:
            reader = jr.JournalReader(path)
            last = []              # outputs of the records of the last append
            try:
                for kind, ts, payload in reader:
                    self.clock.resume(ts)
                    if reader.batch_start:
                        last = []
                    out = []
                    if kind == jr.CONFIG:
                        stored = json.loads(payload.decode("utf-8"))
                        if canonical(stored) != canonical(self.spec.effective):
                            raise ServeError(
                                f"{path}: the journal was written with another configuration: "
                                f"{describe_difference(stored, self.spec.effective)}; "
                                f"restart with the original --config and users, or use a "
                                f"new --journal directory")
                        continue
                    if kind == jr.OPEN:
                        out = p.open(ts)
                        self.session_name = session_name_of(ts)
                    elif kind == jr.UDP:
                        ip, port, datagram = jr.split_udp(payload)
                        index = p.udp_index.get(datagram[:10].decode("latin-1"))
                        if index is not None:
                            self.udp_addr[index] = (_ip_str(ip), port)
                        out = p.on_udp(ts, datagram)
                    elif kind == jr.TCP:
                        session, message = jr.split_tcp(payload)
                        out = p.on_tcp(ts, session, message)
                    elif kind == jr.CLOSE:
                        out = p.close(ts)
                    last.extend(out)
            except jr.JournalError as exc:
                raise ServeError(str(exc)) from None
            self.recovered_records = reader.count
            self.torn_bytes, self.torn_reason = reader.torn_bytes, reader.torn_reason
            if reader.torn_bytes:
                self.counters["journal_torn_tail_truncated"] += 1
                self.counters["journal_torn_tail_bytes"] += reader.torn_bytes
                jr.truncate_torn(reader)
            try:
                self.journal = jr.JournalWriter(path, o.fsync, o.fsync_interval)
            except OSError as exc:
                raise ServeError(f"cannot append to {path}: {exc.strerror}") from None
            # the last append (one receive) may have been journaled but not (fully) acted
            # on: send its feed and UDP outputs again (receivers drop duplicates by
            # sequence number; SoupBinTCP clients get theirs by logging in again)
            self._resend = [x for x in last if x[0] != OUT_TCP]
            self.counters["recovery_resent_packets"] += len(self._resend)
            if not p.opened:
                ts = self.clock()
                self.journal.append(jr.encode(jr.OPEN, ts))
                self.session_name = session_name_of(ts)
                self._resend = p.open(ts)
        else:
            ts = self.clock()
            try:
                self.journal = jr.create_journal(self.journal_dir, self.spec.effective, ts,
                                                 o.fsync, o.fsync_interval)
            except OSError as exc:
                raise ServeError(f"cannot create journal in {self.journal_dir}: "
                                 f"{exc.strerror}") from None
            self.session_name = session_name_of(ts)
            self._resend = p.open(ts)

    # -- inbound -------------------------------------------------------------------

    def on_tcp_message(self, session: int, message: bytes) -> None:
        """One Unsequenced Data payload of a logged-in session: journaled, then acted on."""
        p = self.pipeline
        if p.closed:
            self.counters["tcp_data_after_close"] += 1
            return
        ts = self.clock()
        self.journal.append(jr.encode_tcp(ts, session, message))
        self.dispatch(p.on_tcp(ts, session, message))

    def on_tcp_messages(self, session: int, messages: list) -> None:
        """The Unsequenced Data payloads of one read: journaled in one append, then
        acted on in order."""
        if len(messages) == 1:
            return self.on_tcp_message(session, messages[0])
        p = self.pipeline
        if p.closed:
            self.counters["tcp_data_after_close"] += len(messages)
            return
        clock, encode = self.clock, jr.encode_tcp
        stamped = [(clock(), m) for m in messages]
        self.journal.append(b"".join(encode(ts, session, m, k == 0)
                                     for k, (ts, m) in enumerate(stamped)))
        for ts, m in stamped:
            self.dispatch(p.on_tcp(ts, session, m))

    def on_udp(self, data: bytes, addr) -> None:
        p = self.pipeline
        index, reason = p.udp_check(data)
        if index is None:
            self.counters["drop_" + reason] += 1
            return
        if p.closed:
            self.counters["udp_data_after_close"] += 1
            return
        ts = self.clock()
        try:
            ip = ip_from_str(addr[0])
        except ValueError:
            ip = 0
        self.journal.append(jr.encode(jr.UDP, ts, jr.udp_payload(ip, addr[1], data)))
        self.counters["udp_datagrams_journaled"] += 1
        self.udp_addr[index] = addr
        self.dispatch(p.on_udp(ts, data))

    def close_day(self) -> None:
        """End of day: journaled, then End of Day events, the ITCH closing sequence, the
        feed's end-of-session packet, and SoupBinTCP End of Session to every client."""
        p = self.pipeline
        if p.closed:
            return
        ts = self.clock()
        self.journal.append(jr.encode(jr.CLOSE, ts))
        self.dispatch(p.close(ts))
        for conn in list(self.connections):
            if conn.live and not conn.closing:
                conn.end_of_session()

    # -- outbound ------------------------------------------------------------------

    def dispatch(self, out: list) -> None:
        """Send outputs: order entry first (one write per SoupBinTCP connection), then
        the feed."""
        if not out:
            return
        conns = self.tcp_conns
        tcp = None                      # connection -> [Sequenced Data packets]
        feed = None
        sequenced = sb.sequenced
        for kind, session, data in out:
            if kind == OUT_TCP:
                conn = conns[session]
                if conn is not None and conn.live:
                    if tcp is None:
                        tcp = {conn: [sequenced(data)]}
                    else:
                        packets = tcp.get(conn)
                        if packets is None:
                            tcp[conn] = [sequenced(data)]
                        else:
                            packets.append(sequenced(data))
            elif kind == OUT_UDP:
                addr = self.udp_addr[session]
                if addr is None or self._udp is None:
                    self.counters["udp_oe_unaddressed"] += 1
                else:
                    self._udp.sendto(data, addr)
            elif feed is None:
                feed = [data]
            else:
                feed.append(data)
        if tcp is not None:
            now = time.monotonic()
            for conn, packets in tcp.items():
                conn.send(packets[0] if len(packets) == 1 else b"".join(packets),
                          len(packets), now)
        if feed is not None:
            send = self.feed.send
            for data in feed:
                send(data)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        o = self.options
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        if self.journal is None:
            self.open_journal()
        try:
            server = await loop.create_server(lambda: SoupBinConnection(self), o.host, o.port,
                                              backlog=512)
        except OSError as exc:
            raise ServeError(f"cannot listen on {o.host}:{o.port}: {exc.strerror}") from None
        self._servers.append(server)
        self.tcp_port = server.sockets[0].getsockname()[1]
        udp_port = o.udp_port if o.udp_port is not None else self.tcp_port
        if udp_port >= 0:
            try:
                family, kind, proto, _, addr = socket.getaddrinfo(
                    o.host, udp_port, type=socket.SOCK_DGRAM)[0]
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    sock.bind(addr)
                except OSError:
                    sock.close()
                    raise
            except OSError as exc:
                raise ServeError(f"cannot bind UDP {o.host}:{udp_port}: {exc.strerror}") from None
            _large_rcvbuf(sock)
            self._udp = OrderEntryUdp(self, sock)
            self._transports.append(self._udp)
            self.udp_port = sock.getsockname()[1]
        retrans_port = o.retrans_port
        if retrans_port is None:
            retrans_port = self.tcp_port + 1 if o.port else 0
        if retrans_port >= 0:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: RetransmissionServer(self.pipeline, self.counters,
                                                 self.spec.cfg.max_payload, o.retrans_rate),
                    local_addr=(o.host, retrans_port))
            except OSError as exc:
                raise ServeError(f"cannot bind retransmission port {o.host}:{retrans_port}: "
                                 f"{exc.strerror}") from None
            self._transports.append(transport)
            self.retrans_port = transport.get_extra_info("sockname")[1]
        cfg = self.spec.cfg
        dest = o.feed or (_ip_str(cfg.feed_ip), cfg.feed_port)
        self.feed = FeedPublisher(self.pipeline, dest, self.counters, o.feed_heartbeat,
                                  o.feed_interface)
        self.accepting = True
        if self._resend:
            self.dispatch(self._resend)
            self._resend = []
        self._housekeeping = loop.create_task(self._housekeep())

    async def _housekeep(self) -> None:
        o = self.options
        period = max(0.005, min(o.heartbeat_interval, o.heartbeat_timeout, o.login_timeout,
                                o.feed_heartbeat or 1.0) / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.closing:
                    continue
                if conn.session is None:
                    if now - conn.connected_at >= o.login_timeout:
                        self.counters["tcp_login_timeout"] += 1
                        conn.abort()
                    continue
                if now - conn.last_recv >= o.heartbeat_timeout:
                    self.counters["tcp_heartbeat_timeout"] += 1
                    conn.abort()
                    continue
                if conn.live and now - conn.last_sent >= o.heartbeat_interval:
                    conn.send(sb.SERVER_HEARTBEAT_PACKET, 0, now)
                    self.counters["tcp_server_heartbeats"] += 1
            self.feed.tick(now)

    def stop(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def wait_stopped(self) -> None:
        await self._stopped

    async def shutdown(self) -> None:
        """Stop serving without ending the day (a restart resumes from the journal)."""
        self.accepting = False
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close()
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            await server.wait_closed()
        if self.feed is not None:
            self.feed.close()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def all_counters(self) -> Counter:
        return self.counters + self.pipeline.all_counters()

    def ready_info(self) -> dict:
        return {"event": "ready", "host": self.options.host, "tcp_port": self.tcp_port,
                "udp_port": self.udp_port, "retrans_port": self.retrans_port,
                "feed": f"{self.feed.dest[0]}:{self.feed.dest[1]}",
                "session": self.session_name, "journal": self.journal_dir,
                "recovered_records": self.recovered_records, "torn_bytes": self.torn_bytes,
                "feed_next_seq": self.pipeline.feed_next_seq}


def _large_rcvbuf(sock) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    except OSError:
        pass


def _ip_str(ip: int) -> str:
    return ".".join(str(b) for b in ip.to_bytes(4, "big"))


# -- running it ------------------------------------------------------------------------


class ServerThread:
    """A VenueServer on its own thread and loop (tests, benchmarks, embedding).

    Use as a context manager; `call(fn)` runs fn(server) on the server's loop and
    returns its result."""

    def __init__(self, spec, users, journal_dir, options: ServeOptions | None = None):
        self.server = VenueServer(spec, users, journal_dir, options)
        self.loop = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tickcore-serve", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise ServeError("server did not start within 30 s")

    def _run(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                await self.server.shutdown()
                return
            self._ready.set()
            await self.server.wait_stopped()
            await self.server.shutdown()
        busy = self.server.options.busy_poll
        with asyncio.Runner(loop_factory=lambda: new_event_loop(busy)) as runner:
            runner.run(main())

    def call(self, fn, timeout: float = 10.0):
        async def run():
            return fn(self.server)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def counters(self) -> Counter:
        return self.call(lambda s: Counter(s.all_counters()))

    def close_day(self) -> None:
        self.call(lambda s: s.close_day())

    def stop(self) -> None:
        if self._thread is None:
            return
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.stop)
        self._thread.join(30)
        self._thread = None

    @property
    def tcp_port(self):
        return self.server.tcp_port

    @property
    def udp_port(self):
        return self.server.udp_port

    @property
    def retrans_port(self):
        return self.server.retrans_port

    @property
    def session_name(self):
        return self.server.session_name


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


async def _serve_main(server: VenueServer) -> None:
    loop = asyncio.get_running_loop()
    await server.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    loop.add_signal_handler(signal.SIGUSR1, server.close_day)
    _emit(server.ready_info())
    await server.wait_stopped()
    await server.shutdown()
    _emit({"event": "stopped", "counters": dict(sorted(server.all_counters().items()))})


def _host_port(text: str) -> tuple:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeError(f"--feed {text}: expected HOST:PORT")
    try:
        socket.inet_aton(host)
    except OSError:
        raise ServeError(f"--feed {text}: {host} is not an IPv4 address") from None
    return host, int(port)


def _ipv4(text: str | None, option: str):
    if text is None:
        return None
    try:
        socket.inet_aton(text)
    except OSError:
        raise ServeError(f"{option} {text}: not an IPv4 address") from None
    return text


def _test_clock(text: str | None):
    if text is None:
        return None
    try:
        start, step = (int(x) for x in text.split(","))
    except ValueError:
        raise ServeError(f"--test-clock {text}: expected START,STEP in ns") from None
    if start <= 0 or step <= 0:
        raise ServeError("--test-clock: START and STEP must be positive")
    return start, step


def options_from_args(args) -> ServeOptions:
    return ServeOptions(
        host=args.host, port=args.port, udp_port=args.udp_port, retrans_port=args.retrans_port,
        feed=_host_port(args.feed) if args.feed else None,
        feed_interface=_ipv4(args.feed_interface, "--feed-interface"), fsync=args.fsync,
        fsync_interval=args.fsync_interval_ms / 1000.0, engine=args.engine,
        heartbeat_interval=args.heartbeat_interval, heartbeat_timeout=args.heartbeat_timeout,
        login_timeout=args.login_timeout, max_connections=args.max_connections,
        login_rate=args.login_rate, max_packet=args.max_packet,
        max_output_buffer=args.max_output_buffer, tcp_sndbuf=args.tcp_sndbuf,
        feed_heartbeat=args.feed_heartbeat,
        test_clock=_test_clock(args.test_clock), busy_poll=args.busy_poll)


def main_serve(args) -> int:
    """`tickcore serve`: run until SIGTERM/SIGINT (SIGUSR1 ends the trading day)."""
    try:
        users = read_users(args.users)
        spec = build_spec(args.config, users, args.default_firm)
    except ConfigError as exc:
        raise ServeError(str(exc)) from None
    if not 0 <= args.port < 65536:
        raise ServeError(f"--port {args.port}: expected 0 to 65535")
    server = VenueServer(spec, users, args.journal, options_from_args(args))
    server.open_journal()
    with asyncio.Runner(loop_factory=lambda: new_event_loop(args.busy_poll)) as runner:
        runner.run(_serve_main(server))
    return 0


def add_arguments(p) -> None:
    """The `tickcore serve` options (docs/serve.md)."""
    p.add_argument("--port", type=int, required=True, metavar="P",
                   help="SoupBinTCP port (0: any free port; the ready line says which)")
    p.add_argument("--users", required=True, metavar="FILE",
                   help="one username:password[:firm[:protocol]] a line")
    p.add_argument("--journal", required=True, metavar="DIR",
                   help="journal directory (created, or recovered after a restart)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--udp-port", type=int, default=None, metavar="P",
                   help="UDP order-entry port (default: the --port number; -1: none)")
    p.add_argument("--retrans-port", type=int, default=None, metavar="P",
                   help="MoldUDP64 retransmission port (default --port + 1; -1: none)")
    p.add_argument("--feed", metavar="HOST:PORT",
                   help="feed destination (default: the configured multicast group and port)")
    p.add_argument("--feed-interface", metavar="ADDR",
                   help="send a multicast feed out of the interface with this address")
    p.add_argument("--fsync", choices=jr.FSYNC_POLICIES, default="always",
                   help="journal durability (default always; see docs/serve.md)")
    p.add_argument("--fsync-interval-ms", type=float, default=10.0, metavar="MS",
                   help="fsync period of --fsync interval (default 10)")
    p.add_argument("--engine", default="software", choices=("reference", "software"),
                   help="matching core (default software: the fast engine)")
    p.add_argument("--default-firm", metavar="FIRM",
                   help="firm of users without one (default: the first configured firm)")
    p.add_argument("--heartbeat-interval", type=float, default=1.0, metavar="S")
    p.add_argument("--heartbeat-timeout", type=float, default=15.0, metavar="S")
    p.add_argument("--login-timeout", type=float, default=5.0, metavar="S")
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--login-rate", type=float, default=10.0, metavar="PER_S",
                   help="login attempts per second per client address (default 10)")
    p.add_argument("--max-packet", type=int, default=1024, metavar="BYTES",
                   help="largest inbound SoupBinTCP packet length (default 1024)")
    p.add_argument("--max-output-buffer", type=int, default=8 << 20, metavar="BYTES",
                   help="bytes queued to one client before it is dropped (default 8 MiB)")
    p.add_argument("--tcp-sndbuf", type=int, default=0, metavar="BYTES",
                   help="kernel send buffer of each client connection (default: the OS's)")
    p.add_argument("--feed-heartbeat", type=float, default=1.0, metavar="S",
                   help="feed heartbeat after S idle seconds (0: none)")
    p.add_argument("--busy-poll", action="store_true",
                   help="poll without sleeping: lowest latency, one core kept busy")
    p.add_argument("--test-clock", metavar="START,STEP",
                   help="testing aid: ingress timestamps START, START+STEP, ... instead of "
                        "the receive time")
    p.add_argument("--config", metavar="CFG",
                   help="venue configuration JSON (default: built-in venue)")
