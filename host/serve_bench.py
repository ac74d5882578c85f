"""Round-trip latency of the live venue: client send to Accepted received.

`round_trip()` starts `tickcore serve` in a child process (its own interpreter,
so client and server do not share a GIL), with a fresh journal, and runs one
client in this process over loopback:

  tcp  SoupBinTCP 3.0 + OUCH 4.2, one logged-in user
  udp  the MoldUDP64 order-entry framing, one configured UDP session

Each sample is one Enter Order of a resting day order: the clock starts just
before the send and stops when the packet holding its Accepted has been read
and parsed (the client is a blocking socket with minimal parsing).  Each enter
is then canceled (waited for, not timed), so the book stays small and the feed
carries an Add Order and an Order Delete per sample.
Samples are taken one at a time (no pipelining).  The venue configuration is
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


def _spin_recv(sock):
    """recv on a non-blocking socket, polling until data is there."""
    recv = sock.recv
    while True:
        try:
            return recv(65536)
        except BlockingIOError:
            pass


class _LeanSoupBin:
    """The benchmark's client: a socket and just enough SoupBinTCP parsing, so the client
    adds as little as it can to what is measured; `spin` polls instead of blocking."""

    def __init__(self, port: int, spin: bool = False):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        if spin:
            self.sock.setblocking(False)
            self.recv = lambda: _spin_recv(self.sock)
        else:
            self.recv = lambda: self.sock.recv(65536)

    def packet(self) -> bytes:
        """The next packet: type byte + payload."""
        buf = self.buf
        while True:
            if len(buf) >= 2:
                n = (buf[0] << 8) | buf[1]
                if len(buf) >= 2 + n:
                    self.buf = buf[2 + n:]
                    return buf[2:2 + n]
            data = self.recv()
            if not data:
                raise RuntimeError("server closed the connection")
            buf += data

    def sequenced(self) -> bytes:
        while True:
            p = self.packet()
            if p[:1] == b"S":
                return p[1:]

    def close(self) -> None:
        self.sock.close()


def _tcp_samples(info, n: int, spin: bool = False) -> list:
    out = []
    c = _LeanSoupBin(info["tcp_port"], spin)
    try:
        c.sock.sendall(sb.login_request(*BENCH_USER, sequence=0))
        if c.packet()[:1] != b"A":
            raise RuntimeError("bench login rejected")
        sendall, read = c.sock.sendall, c.sequenced
        clock = time.perf_counter_ns
        for i in range(n):
            token = f"T{i:013d}"
            packet = sb.unsequenced(_enter(token, "BS"[i & 1]))
            t0 = clock()
            sendall(packet)
            reply = read()
            t1 = clock()
            if reply[:1] != b"A":
                raise RuntimeError(f"expected Accepted, got {reply[:1]!r}")
            out.append(t1 - t0)
            sendall(sb.unsequenced(_cancel(token)))
            while read()[:1] != b"C":
                pass
    finally:
        c.close()
    return out


def _udp_samples(info, n: int, spin: bool = False) -> list:
    out = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.connect(("127.0.0.1", info["udp_port"]))
    if spin:
        sock.setblocking(False)
    else:
        sock.settimeout(5.0)
    session = BENCH_UDP_SESSION
    seq = 1
    try:
        send = sock.send
        recv = (lambda _n: _spin_recv(sock)) if spin else sock.recv
        clock = time.perf_counter_ns
        for i in range(n):
            token = f"U{i:013d}"
            packet = moldudp64.pack_packet(session, seq, [_enter(token, "BS"[i & 1])])
            seq += 1
            t0 = clock()
            send(packet)
            reply = recv(65536)
            t1 = clock()
            # one response packet: Accepted, the first (and only) message
            if reply[22:23] != b"A":
                raise RuntimeError(f"expected Accepted, got {reply[20:40]!r}")
            out.append(t1 - t0)
            send(moldudp64.pack_packet(session, seq, [_cancel(token)]))
            seq += 1
            if recv(65536)[22:23] != b"C":
                raise RuntimeError("expected Canceled")
    finally:
        sock.close()
    return out


def round_trip(transport: str = "tcp", samples: int = 20_000, warmup: int = 2_000,
               engine: str = "reference", fsync: str = "none", busy_poll: bool = False,
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
        ns = run(info, warmup + samples, client_spin)[warmup:]
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

def _echo_server(transport: str, spin: bool) -> None:
    """Child process: echo every TCP read / UDP datagram back, forever."""
    if transport == "tcp":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        print(listener.getsockname()[1], flush=True)
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if spin:
            conn.setblocking(False)
        recv = (lambda: _spin_recv(conn)) if spin else (lambda: conn.recv(65536))
        while True:
            data = recv()
            if not data:
                return
            conn.sendall(data)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    if spin:
        sock.setblocking(False)
    while True:
        while True:
            try:
                data, addr = sock.recvfrom(65536)
                break
            except BlockingIOError:
                pass
        sock.sendto(data, addr)


def echo_floor(transport: str = "tcp", samples: int = 20_000, warmup: int = 2_000,
               spin_server: bool = False, client_spin: bool = False) -> dict:
    """The loopback round trip of a 67-byte message to a Python echo server, measured
    like `round_trip`: what this machine costs before any venue work is done."""
    cmd = [sys.executable, "-m", "tickcore.host.serve_bench", "_echo", transport,
           "spin" if spin_server else "block"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        if transport == "tcp":
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect(("127.0.0.1", port))
        if client_spin:
            sock.setblocking(False)
        recv = (lambda: _spin_recv(sock)) if client_spin else (lambda: sock.recv(65536))
        payload = bytes(67)
        clock = time.perf_counter_ns
        ns = []
        for _ in range(warmup + samples):
            t0 = clock()
            sock.send(payload)
            got = 0
            while got < len(payload):
                got += len(recv())
            ns.append(clock() - t0)
        sock.close()
        ns = sorted(ns[warmup:])
        return {"transport": transport, "echo": True, "spin_server": spin_server,
                "client_spin": client_spin, "samples": len(ns),
                "p50_ns": _percentile(ns, 0.50), "p99_ns": _percentile(ns, 0.99),
                "p999_ns": _percentile(ns, 0.999)}
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_echo":
        _echo_server(sys.argv[2], sys.argv[3] == "spin")
    else:
        for t in ("tcp", "udp"):
            print(json.dumps(echo_floor(t)))
            print(json.dumps(round_trip(t)))
            print(json.dumps(round_trip(t, busy_poll=True)))
