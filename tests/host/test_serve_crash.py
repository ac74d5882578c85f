"""Crash recovery: `tickcore serve` killed with SIGKILL mid-flow, restarted on its journal.

One scripted flow (seeded; the seed is printed on failure) runs twice against a
`tickcore serve` child process with a synthetic clock (--test-clock), so that
ingress timestamps depend only on the order of journaled messages:

  reference  uninterrupted: every message sent after the previous one was answered
  crashed    the same, except that in the middle one session sends a burst without
             waiting and the server is killed with SIGKILL right after; it is
             restarted on the same journal, every client logs in again asking for
             its next sequence number, resends what was not answered, and the
             flow goes on

Both runs end the day (SIGUSR1).  Every stream a client received (SoupBinTCP
sessions deduplicated by sequence number, UDP responses, the ITCH feed with
gaps filled from the retransmission server) must be identical between the two
runs, and `tickcore replay` of the two journals must give byte-identical pcaps.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tickcore.host import ouch5
from tickcore.host import soupbintcp as sb
from tickcore.host.serve_client import FeedReceiver, SoupBinClient, UdpOrderEntry
from tickcore.host.serve_pipeline import OUT_TCP
from tickcore.host.serve_replay import replay_events
from tickcore.refmodel import ouch

SEED = 20261203
BURST = 8
START_NS = 1_795_962_600_000_000_000
STEP_NS = 1_000_000
USERS = "alice:alice1:FRMA\nbob:bob1:FRMB\ncarl:carl1:FRMC:ouch50\n"
TCP_SESSIONS = ("alice", "bob", "carl")
UDP_SESSION = "FRMD01"
O5 = ouch5.LAYOUTS["ouch50"]


# -- the scripted flow ---------------------------------------------------------------

def _enter42(token, side, shares, price, tif):
    return ouch.ENTER_ORDER.build(token=token, side=side, shares=shares, stock="AAPL",
                                  price=price, tif=tif, firm="", display="Y", capacity="A",
                                  iso="N", min_qty=0, cross_type="N", customer_type=" ")


def script(seed: int, n: int = 90):
    """[(session, payload, ack)] with ack = (kind, key): what answers the message."""
    rng = random.Random(seed)
    live = {s: [] for s in (*TCP_SESSIONS, UDP_SESSION)}
    ops = []
    urn = 0
    for i in range(n):
        s = rng.choice((*TCP_SESSIONS, UDP_SESSION))
        r = rng.random()
        side = rng.choice("BS")
        price = 1_850_000 + rng.randint(-3, 3) * 100
        shares = rng.randint(1, 5) * 100
        tif = 0 if rng.random() < 0.2 else 99999
        if live[s] and r < 0.25:
            key = live[s].pop(rng.randrange(len(live[s])))
            if s == "carl":
                ops.append((s, O5["cancel"].build(user_ref_num=key, quantity=0), ("cancel", key)))
            else:
                ops.append((s, ouch.CANCEL_ORDER.build(token=key, shares=0), ("cancel", key)))
        elif live[s] and r < 0.45 and s != "carl":
            old = live[s].pop(rng.randrange(len(live[s])))
            new = f"{s[:2]}R{i:03d}"
            ops.append((s, ouch.REPLACE_ORDER.build(
                existing_token=old, replacement_token=new, shares=shares, price=price,
                tif=99999, display="Y", iso="N", min_qty=0), ("replace", new)))
            live[s].append(new)
        elif s == "carl":
            urn += 1
            ops.append((s, O5["enter"].build(
                user_ref_num=urn, side=side, quantity=shares, symbol="AAPL", price=price,
                tif="3" if tif == 0 else "0", display="Y", capacity="A", iso="N",
                cross_type="N", cl_ord_id=f"carl{urn}", appendage_length=0), ("enter", urn)))
            if tif:
                live[s].append(urn)
        else:
            token = f"{s[:2]}E{i:03d}"
            ops.append((s, _enter42(token, side, shares, price, tif), ("enter", token)))
            if tif:
                live[s].append(token)
    return ops


def _answers(session: str, msg: bytes):
    """The (kind, key) pairs a response message answers."""
    code = chr(msg[0])
    if session == "carl":
        if code in "AJ":
            return [("enter", O5["accepted" if code == "A" else "rejected"].unpack(msg)
                     .user_ref_num)]
        if code == "C":
            rec = O5["canceled"].unpack(msg)
            return [("cancel", rec.user_ref_num)] if rec.reason == "U" else []
        if code == "I":
            return [("cancel", O5["cancel_reject"].unpack(msg).user_ref_num)]
        return []
    rec = ouch.OUTBOUND[code].unpack(msg)
    if code == "A":
        return [("enter", rec.token.rstrip())]
    if code == "J":
        t = rec.token.rstrip()
        return [("enter", t), ("replace", t)]
    if code == "U":
        return [("replace", rec.replacement_token.rstrip())]
    if code == "C":
        return [("cancel", rec.token.rstrip())] if rec.reason == "U" else []
    if code == "I":
        return [("cancel", rec.token.rstrip())]
    return []


# -- driving a server process ----------------------------------------------------------

class Server:
    def __init__(self, workdir, feed_port):
        self.workdir = workdir
        self.users = os.path.join(workdir, "users")
        with open(self.users, "w") as fh:
            fh.write(USERS)
        self.journal = os.path.join(workdir, "journal")
        self.feed_port = feed_port
        self.proc = None
        self.info = None

    def start(self, fsync="always"):
        cmd = [sys.executable, "-m", "tickcore.host.cli", "serve", "--port", "0",
               "--users", self.users, "--journal", self.journal, "--fsync", fsync,
               "--feed", f"127.0.0.1:{self.feed_port}", "--feed-heartbeat", "0",
               "--test-clock", f"{START_NS},{STEP_NS}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        self.info = json.loads(line)
        return self.info

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        return json.loads(out.splitlines()[-1])


class Flow:
    """Clients of one run: every message each received, keyed by sequence number."""

    def __init__(self, server: Server, feed: FeedReceiver):
        self.server = server
        self.feed = feed
        self.tcp = {}
        self.streams = {s: {} for s in TCP_SESSIONS}
        self.udp_packets = {}              # first sequence number -> messages
        self.udp = None
        self.answered = set()

    def connect(self):
        info = self.server.info
        for s in TCP_SESSIONS:
            c = SoupBinClient("127.0.0.1", info["tcp_port"], timeout=10)
            seen = self.streams[s]
            kind, _ = c.login(s, s + "1", sequence=max(seen, default=0) + 1)
            assert kind == sb.ACCEPTED
            self.tcp[s] = c
        if self.udp is None:
            self.udp = UdpOrderEntry("127.0.0.1", info["udp_port"], UDP_SESSION, timeout=10)
        else:          # same socket (the server resends to the journaled address), new port
            self.udp.addr = ("127.0.0.1", info["udp_port"])

    def _take(self, session, msgs):
        for m in msgs:
            for answer in _answers(session, m):
                self.answered.add((session, answer))

    def pump(self, session, timeout=0.0, until=None):
        """Read one TCP session until it is quiet for `timeout` (or `until` is answered)."""
        c = self.tcp[session]
        try:
            while True:
                pkt = c.read(timeout)
                self._sync(session)
                if pkt is None or (until is not None and until in self.answered):
                    return
        except EOFError:
            self._sync(session)

    def _sync(self, session):
        c, stream = self.tcp[session], self.streams[session]
        new = sorted(k for k in c.sequenced if k not in stream)
        for k in c.sequenced:
            assert k in new or stream[k] == c.sequenced[k], f"{session}: seq {k} changed"
        for k in new:
            stream[k] = c.sequenced[k]
        self._take(session, [stream[k] for k in new])

    def udp_packet(self):
        got = self.udp.recv()
        assert got is not None, "UDP response lost"
        header, msgs = got
        assert self.udp_packets.get(header.sequence, tuple(msgs)) == tuple(msgs)
        self.udp_packets[header.sequence] = tuple(msgs)
        self._take(UDP_SESSION, msgs)
        return msgs

    def run(self, op):
        session, payload, ack = op
        if session == UDP_SESSION:
            self.udp.send([payload])
            while (session, ack) not in self.answered:
                self.udp_packet()
            return
        self.tcp[session].send(payload)
        self.pump(session, 10, until=(session, ack))
        assert (session, ack) in self.answered, f"no answer to {session} {ack}"

    def drain(self):
        for s in TCP_SESSIONS:
            self.pump(s, 0.2)

    def end_of_day(self):
        self.server.signal(signal.SIGUSR1)
        for s in TCP_SESSIONS:
            c = self.tcp[s]
            assert c.wait_closed(10)
            self.pump(s, 0.0)
            assert c.raw.endswith(sb.END_OF_SESSION_PACKET)
        while not any(m[:1] == b"S" for m in self.udp_packet()):   # End of Day event
            pass
        deadline = time.monotonic() + 10
        while self.feed.end_of_session is None:
            assert time.monotonic() < deadline
            self.feed.drain(0.05)
        self.feed.fill_gaps(("127.0.0.1", self.server.info["retrans_port"]),
                            self.feed.end_of_session - 1)

    def close(self):
        for c in self.tcp.values():
            c.close()
        if self.udp:
            self.udp.close()


def _run(workdir, ops, crash_at=None, burst=0, kill_after=0):
    feed = FeedReceiver()
    server = Server(workdir, feed.port)
    flow = Flow(server, feed)
    notes = {}
    try:
        server.start()
        flow.connect()
        i = 0
        while i < len(ops):
            if i == crash_at:
                window = ops[i:i + burst]
                session = window[0][0]
                for op in window:
                    flow.tcp[session].send(op[1])
                if kill_after:                       # wait until that many are answered
                    flow.pump(session, 10, until=window[kill_after - 1][::2])
                server.kill()                        # SIGKILL, mid-burst
                for c in flow.tcp.values():
                    c.close()
                info = server.start()
                notes["recovered_records"] = info["recovered_records"]
                flow.connect()
                flow.drain()
                answered = [op for op in window if (op[0], op[2]) in flow.answered]
                notes["burst"], notes["journaled"] = len(window), len(answered)
                assert window[:len(answered)] == answered   # a prefix was journaled
                for op in window[len(answered):]:
                    flow.run(op)
                i += burst
                continue
            flow.run(ops[i])
            i += 1
        flow.drain()
        flow.end_of_day()
        counters = server.stop()["counters"]
        return flow, notes, counters
    finally:
        flow.close()
        feed.close()
        if server.proc and server.proc.poll() is None:
            server.kill()


def _flow_ops():
    ops = script(SEED)
    # the burst: alice's next messages, moved together (in both runs) so that sending
    # them without waiting keeps the order of the uninterrupted run
    crash_at = next(i for i in range(len(ops) // 2, len(ops)) if ops[i][0] == "alice")
    burst = [op for op in ops[crash_at:] if op[0] == "alice"][:BURST]
    rest = [op for op in ops[crash_at:] if all(op is not b for b in burst)]
    return ops[:crash_at] + burst + rest, crash_at


def _replay_pcap(directory):
    pcap = directory / "out.pcap"
    subprocess.run([sys.executable, "-m", "tickcore.host.cli", "replay",
                    str(directory / "journal"), "-o", str(pcap), "-q"], check=True)
    return pcap.read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and `tickcore replay` of its journal."""
    d = tmp_path_factory.mktemp("reference")
    ops, _ = _flow_ops()
    flow, _, _ = _run(str(d), ops)
    return flow, _replay_pcap(d)


@pytest.mark.parametrize("kill_after", [0, 2], ids=["before-any-answer", "after-2-answers"])
def test_sigkill_mid_flow_then_restart_equals_an_uninterrupted_run(tmp_path, reference,
                                                                     kill_after):
    ref, ref_pcap = reference
    ops, crash_at = _flow_ops()
    crashed, notes, counters = _run(str(tmp_path), ops, crash_at=crash_at, burst=BURST,
                                    kill_after=kill_after)
    context = f"seed {SEED}, crash at op {crash_at}, kill after {kill_after}, {notes}"
    print(context)
    assert notes["recovered_records"] > crash_at, context
    assert notes["journaled"] >= kill_after, context

    for s in TCP_SESSIONS:                 # every acknowledged message, no gap, no duplicate
        assert sorted(crashed.streams[s]) == list(range(1, len(crashed.streams[s]) + 1))
        assert crashed.streams[s] == ref.streams[s], f"{s}: {context}"
    assert crashed.udp_packets == ref.udp_packets, context
    assert sorted(crashed.udp_packets)[0] == 2       # 1 is the start-of-day event
    n = crashed.feed.end_of_session - 1
    assert crashed.feed.in_order(n) == ref.feed.in_order(ref.feed.end_of_session - 1), context

    # the journals replay to byte-identical pcaps, holding what the clients received
    assert _replay_pcap(tmp_path) == ref_pcap, context
    spec, _, outputs, _ = replay_events(tmp_path / "journal")
    for s in TCP_SESSIONS:
        index = spec.session_names().index(s)
        replayed = [d for _, k, x, d in outputs if k == OUT_TCP and x == index]
        assert replayed == [crashed.streams[s][i] for i in range(1, len(replayed) + 1)]
    assert counters["tcp_logins"] == len(TCP_SESSIONS), counters   # since the restart
