"""Round-trip latency of the live venue: client send to Accepted received.

`round_trip()` starts `tickcore serve` in a child process (its own interpreter,
so client and server do not share a GIL), with a fresh journal, and runs one
client in this process over loopback:

  tcp  SoupBinTCP 3.0 + OUCH 4.2, one logged-in user
  udp  the MoldUDP64 order-entry framing, one configured UDP session

Each sample is one Enter Order of a resting day order: the clock starts just
before the send and stops when the packet holding its Accepted has been read
and parsed (the client is a blocking socket read into a preallocated buffer,
with minimal parsing: the echo floor's client reads the same way).  Each enter
is then canceled (waited for, not timed), so the book stays small and the feed
carries an Add Order and an Order Delete per sample.
Samples are taken one at a time (no pipelining), each sent to an idle venue:
before the next Enter the client waits for the feed packet of the Order Delete,
the last output of the previous sample (the echo server, too, is idle when an
echo is sent).  The venue configuration is
the default one with the session rate limit lifted, so no sample is a rate
reject.  Returns p50/p99/p99.9 in ns and the sample count.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from tickcore.refmodel import moldudp64, ouch

from . import soupbintcp as sb
from .serve_client import FeedReceiver

BENCH_USER = ("bench", "bench1")
BENCH_UDP_SESSION = "FRMA01"


def _percentile(sorted_ns: list, q: float) -> int:
    if not sorted_ns:
        return 0
    k = min(len(sorted_ns) - 1, max(0, int(round(q * (len(sorted_ns) - 1)))))
    return sorted_ns[k]


def start_server(workdir: str, engine: str = "reference", fsync: str = "none",
                 extra_args=(), feed=None):
    """Start `tickcore serve` in a child process; returns (process, ready info)."""
    users = os.path.join(workdir, "users")
    with open(users, "w") as fh:
        fh.write(f"{BENCH_USER[0]}:{BENCH_USER[1]}:FRMA\n")
    config = os.path.join(workdir, "venue.json")
    with open(config, "w") as fh:
        json.dump({"risk": {"rate_limit": 1 << 30}}, fh)
    cmd = [sys.executable, "-m", "tickcore.host.cli", "serve", "--port", "0", "--users", users,
           "--journal", os.path.join(workdir, "journal"), "--config", config,
           "--fsync", fsync, "--engine", engine, "--feed-heartbeat", "0",
           "--feed", f"127.0.0.1:{feed[1]}" if feed else "127.0.0.1:9", *extra_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read()
        proc.wait()
        raise RuntimeError(f"tickcore serve did not start: {err.strip()}")
    return proc, json.loads(line)


def _enter(token: str, side: str) -> bytes:
    return ouch.ENTER_ORDER.build(
        token=token, side=side, shares=100, stock="AAPL", price=1_800_000 if side == "B"
        else 1_900_000, tif=99999, firm="", display="Y", capacity="A", iso="N", min_qty=0,
        cross_type="N", customer_type=" ")


def _cancel(token: str) -> bytes:
    return ouch.CANCEL_ORDER.build(token=token, shares=0)


class _Reader:
    """Reads a socket into one preallocated buffer (recv_into: nothing allocated per
    read); `spin` polls a non-blocking socket instead of blocking.  The echo floor's
    client reads the same way, so both sides of the comparison pay the same."""

    def __init__(self, sock, spin: bool = False):
        self.sock = sock
        self.buf = bytearray(1 << 16)
        self.view = memoryview(self.buf)
        self.start = self.end = 0
        self.spin = spin
        if spin:
            sock.setblocking(False)

    def read(self) -> int:
        """Read once into the free part of the buffer; returns the byte count."""
        if self.start == self.end:
            self.start = self.end = 0
        elif len(self.buf) - self.end < 4096:
            n = self.end - self.start
            self.buf[:n] = bytes(self.view[self.start:self.end])
            self.start, self.end = 0, n
        target = self.view[self.end:] if self.end else self.buf
        recv_into = self.sock.recv_into
        while True:
            try:
                n = recv_into(target)
                break
            except BlockingIOError:
                if not self.spin:
                    raise
        if not n:
            raise RuntimeError("the server closed the connection")
        self.end += n
        return n


class _LeanSoupBin(_Reader):
    """The benchmark's client: a socket and just enough SoupBinTCP parsing, so the client
    adds as little as it can to what is measured."""

    def __init__(self, port: int, spin: bool = False):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(sock, spin)

    def packet_type(self) -> tuple[int, int]:
        """Consume the next packet; (packet type, first payload byte or -1)."""
        buf = self.buf
        while self.end - self.start < 2:
            self.read()
        n = (buf[self.start] << 8) | buf[self.start + 1]
        while self.end - self.start < 2 + n:
            self.read()
        p = self.start
        self.start = p + 2 + n
        return buf[p + 2], buf[p + 3] if n > 1 else -1

    def sequenced(self) -> int:
        """Consume packets up to the next Sequenced Data; its message type byte."""
        while True:
            ptype, first = self.packet_type()
            if ptype == _S:
                return first

    def close(self) -> None:
        self.sock.close()


_S, _A, _C, _D = ord("S"), ord("A"), ord("C"), ord("D")
_MOLD_FIRST_TYPE = moldudp64.HEADER.size + moldudp64.BLOCK_LENGTH.size  # first message's type


class _FeedWatch(_Reader):
    """Waits for the feed packet that carries an Order Delete: the venue has finished the
    previous sample (its last output is that packet), so every timed Enter reaches an
    idle venue, as every echo reaches an idle echo server."""

    def __init__(self, feed: FeedReceiver):
        feed.sock.settimeout(10.0)
        super().__init__(feed.sock)

    def until_delete(self) -> None:
        while True:
            self.start = self.end = 0
            n = self.read()
            if n > _MOLD_FIRST_TYPE and self.buf[_MOLD_FIRST_TYPE] == _D:
                return


def _tcp_samples(info, n: int, spin: bool, feed: _FeedWatch) -> list:
    out = []
    c = _LeanSoupBin(info["tcp_port"], spin)
    try:
        c.sock.sendall(sb.login_request(*BENCH_USER, sequence=0))
        if c.packet_type()[0] != _A:
            raise RuntimeError("bench login rejected")
        send, read = c.sock.send, c.sequenced
        clock = time.perf_counter_ns
        for i in range(n):
            token = f"T{i:013d}"
            packet = sb.unsequenced(_enter(token, "BS"[i & 1]))
            t0 = clock()
            send(packet)
            reply = read()
            t1 = clock()
            if reply != _A:
                raise RuntimeError(f"expected Accepted, got {chr(reply)!r}")
            out.append(t1 - t0)
            send(sb.unsequenced(_cancel(token)))
            while read() != _C:
                pass
            feed.until_delete()
    finally:
        c.close()
    return out


def _udp_samples(info, n: int, spin: bool, feed: _FeedWatch) -> list:
    out = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.connect(("127.0.0.1", info["udp_port"]))
    if not spin:
        sock.settimeout(5.0)
    r = _Reader(sock, spin)
    session = BENCH_UDP_SESSION
    seq = 1
    try:
        send, read, buf = sock.send, r.read, r.buf
        clock = time.perf_counter_ns
        for i in range(n):
            token = f"U{i:013d}"
            packet = moldudp64.pack_packet(session, seq, [_enter(token, "BS"[i & 1])])
            seq += 1
            t0 = clock()
            send(packet)
            r.start = r.end = 0
            read()
            t1 = clock()
            # one response packet: Accepted, the first (and only) message
            if buf[_MOLD_FIRST_TYPE] != _A:
                raise RuntimeError(f"expected Accepted, got {bytes(buf[20:40])!r}")
            out.append(t1 - t0)
            send(moldudp64.pack_packet(session, seq, [_cancel(token)]))
            seq += 1
            r.start = r.end = 0
            read()
            if buf[_MOLD_FIRST_TYPE] != _C:
                raise RuntimeError("expected Canceled")
            feed.until_delete()
    finally:
        sock.close()
    return out


def round_trip(transport: str = "tcp", samples: int = 20_000, warmup: int = 2_000,
               engine: str = "software", fsync: str = "none", busy_poll: bool = False,
               client_spin: bool = False) -> dict:
    """Measure client send -> Accepted received over loopback; see the module docstring.

    `busy_poll` runs the server with --busy-poll; `client_spin` makes the client poll
    its socket instead of blocking (each keeps one core busy)."""
    if transport not in ("tcp", "udp"):
        raise ValueError("transport must be 'tcp' or 'udp'")
    workdir = tempfile.mkdtemp(prefix="tickcore-bench-")
    feed = FeedReceiver()
    proc = None
    try:
        proc, info = start_server(workdir, engine, fsync, feed=feed.dest,
                                  extra_args=("--busy-poll",) if busy_poll else ())
        run = _tcp_samples if transport == "tcp" else _udp_samples
        ns = run(info, warmup + samples, client_spin, _FeedWatch(feed))[warmup:]
        ns.sort()
        return {"transport": transport, "engine": engine, "fsync": fsync,
                "busy_poll": busy_poll, "client_spin": client_spin,
                "samples": len(ns), "p50_ns": _percentile(ns, 0.50),
                "p99_ns": _percentile(ns, 0.99), "p999_ns": _percentile(ns, 0.999),
                "mean_ns": sum(ns) // max(1, len(ns)), "max_ns": ns[-1] if ns else 0}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        feed.close()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the floor: the same loopback round trip to a server that only echoes -------------

_JOURNAL_RECORD = 84          # a journal record of one Enter Order (header 17, session 1, 49 + ...)
_FEED_PACKET = 58             # a feed packet of one ITCH Add Order (MoldUDP64 20 + 2 + 36)


def _echo_server(transport: str, spin: bool, feed_port: int = 0) -> None:
    """Child process: echo every TCP read / UDP datagram back, forever.  It reads into
    one preallocated buffer, as the venue does.  With `feed_port` it also does the
    venue's I/O around each echo: a record appended to a file first, and a datagram of
    a feed packet's size to 127.0.0.1:feed_port after."""
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    journal = feed = None
    if feed_port:
        fd, path = tempfile.mkstemp(prefix="tickcore-echo-journal-")
        os.unlink(path)
        journal = (fd, bytes(_JOURNAL_RECORD))
        feed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        feed.setblocking(False)
        feed = (feed.sendto, bytes(_FEED_PACKET), ("127.0.0.1", feed_port))
    if transport == "tcp":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        print(listener.getsockname()[1], flush=True)
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(conn, spin)
        while True:
            try:
                n = reader.read()
            except RuntimeError:                  # the client closed the connection
                return
            reader.start = reader.end = 0
            if journal:
                os.write(*journal)
            conn.sendall(view[:n])
            if feed:
                feed[0](feed[1], feed[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    if spin:
        sock.setblocking(False)
    while True:
        while True:
            try:
                n, addr = sock.recvfrom_into(buf)
                break
            except BlockingIOError:
                pass
        if journal:
            os.write(*journal)
        sock.sendto(view[:n], addr)
        if feed:
            feed[0](feed[1], feed[2])


def echo_floor(transport: str = "tcp", samples: int = 20_000, warmup: int = 2_000,
               spin_server: bool = False, client_spin: bool = False,
               venue_io: bool = False) -> dict:
    """The loopback round trip of a 67-byte message to a Python echo server, measured
    like `round_trip` (the same client reads): what this machine costs before any venue
    work is done.  `venue_io` adds the I/O the venue cannot skip: the echo server
    appends a journal-sized record to a file before echoing and sends a feed-sized
    datagram after, which the client receives before its next sample (as round_trip
    waits for the feed)."""
    feed = FeedReceiver() if venue_io else None
    cmd = [sys.executable, "-m", "tickcore.host.serve_bench", "_echo", transport,
           "spin" if spin_server else "block", str(feed.port if feed else 0)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        if transport == "tcp":
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect(("127.0.0.1", port))
        reader = _Reader(sock, client_spin)
        feed_reader = None
        if feed is not None:
            feed.sock.settimeout(10.0)
            feed_reader = _Reader(feed.sock)
        payload = bytes(67)
        size = len(payload)
        send, read = sock.send, reader.read
        clock = time.perf_counter_ns
        ns = []
        for _ in range(warmup + samples):
            t0 = clock()
            send(payload)
            reader.start = reader.end = 0
            while reader.end < size:
                read()
            ns.append(clock() - t0)
            if feed_reader is not None:
                feed_reader.start = feed_reader.end = 0
                feed_reader.read()
        sock.close()
        ns = sorted(ns[warmup:])
        return {"transport": transport, "echo": True, "spin_server": spin_server,
                "client_spin": client_spin, "venue_io": venue_io, "samples": len(ns),
                "p50_ns": _percentile(ns, 0.50), "p99_ns": _percentile(ns, 0.99),
                "p999_ns": _percentile(ns, 0.999)}
    finally:
        proc.kill()
        proc.wait()
        if feed is not None:
            feed.close()


def main() -> None:
    """`python -m tickcore.host.serve_bench`: for TCP and UDP, one JSON line each for
    the echo floor, the echo floor with the venue's I/O, and the software engine's round
    trip with and without --busy-poll."""
    for t in ("tcp", "udp"):
        print(json.dumps(echo_floor(t)), flush=True)
        print(json.dumps(echo_floor(t, venue_io=True)), flush=True)
        print(json.dumps(round_trip(t, engine="software")), flush=True)
        print(json.dumps(round_trip(t, engine="software", busy_poll=True)), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_echo":
        _echo_server(sys.argv[2], sys.argv[3] == "spin", int(sys.argv[4]))
    else:
        main()
