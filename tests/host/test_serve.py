"""The live venue over SoupBinTCP 3.0 + OUCH 4.2: sessions, outcomes, back-pressure, replay.

Every test runs a VenueServer on its own thread (ephemeral ports) and talks to it
with the blocking clients of host/serve_client.py.  Nothing asserts wall-clock
times; timeouts only bound how long a test waits.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from tickcore.host import soupbintcp as sb
from tickcore.host.serve import ServeOptions, ServerThread
from tickcore.host.serve_client import FeedReceiver, SoupBinClient, UdpOrderEntry
from tickcore.host.serve_config import build_spec, parse_users
from tickcore.host.serve_pipeline import OUT_FEED, OUT_TCP, OUT_UDP
from tickcore.host.serve_replay import replay_events, write_replay
from tickcore.refmodel import itch, moldudp64, ouch

USERS = "alice:alice1:FRMA\nbob:bob1:FRMB\ncarol:carol1:FRMC\n"


def enter(token, side="B", shares=100, price=1_850_000, tif=99999, stock="AAPL", display="Y"):
    return ouch.ENTER_ORDER.build(token=token, side=side, shares=shares, stock=stock,
                                  price=price, tif=tif, firm="", display=display, capacity="A",
                                  iso="N", min_qty=0, cross_type="N", customer_type=" ")


def replace(old, new, shares, price, tif=99999):
    return ouch.REPLACE_ORDER.build(existing_token=old, replacement_token=new, shares=shares,
                                    price=price, tif=tif, display="Y", iso="N", min_qty=0)


def cancel(token, shares=0):
    return ouch.CANCEL_ORDER.build(token=token, shares=shares)


def decode(msg: bytes):
    return ouch.OUTBOUND[chr(msg[0])].unpack(msg)


def feed_decode(msg: bytes):
    return itch.MESSAGES[chr(msg[0])].unpack(msg)


class Venue:
    def __init__(self, tmp_path, users=USERS, **options):
        self.users = parse_users(users)
        self.spec = build_spec(None, self.users)
        self.feed = FeedReceiver()
        self.journal = tmp_path / "journal"
        opts = dict(port=0, feed=self.feed.dest, fsync="none")
        opts.update(options)
        self.server = ServerThread(self.spec, self.users, self.journal, ServeOptions(**opts))
        self.clients = []

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        for c in self.clients:
            c.close()
        self.server.stop()
        self.feed.close()

    def client(self, user=None, password=None, sequence=1, timeout=5.0):
        c = SoupBinClient("127.0.0.1", self.server.tcp_port, timeout=timeout)
        self.clients.append(c)
        if user is not None:
            kind, payload = c.login(user, password or user + "1", sequence=sequence)
            assert kind == sb.ACCEPTED, (kind, payload)
        return c

    def counters(self):
        return self.server.counters()

    def wait_counter(self, name, value=1, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.counters()[name] < value:
            if time.monotonic() > deadline:
                raise AssertionError(f"counter {name} did not reach {value}: {self.counters()}")
            time.sleep(0.01)


def read_until_type(client, code: str):
    """Read Sequenced Data until an OUCH message of type `code`; returns (it, skipped)."""
    skipped = []
    while True:
        msg = client.read_sequenced()
        if chr(msg[0]) == code:
            return decode(msg), skipped
        skipped.append(decode(msg))


def test_enter_replace_cancel_and_the_feed(tmp_path):
    with Venue(tmp_path) as v:
        alice = v.client("alice")
        start = decode(alice.read_sequenced())
        assert start.layout is ouch.SYSTEM_EVENT and start.event_code == "S"
        assert alice.session == v.server.session_name

        alice.send(enter("A1", "B", 100, 1_850_000))
        acc = decode(alice.read_sequenced())
        assert (acc.layout, acc.token.rstrip(), acc.shares, acc.firm) == \
            (ouch.ACCEPTED, "A1", 100, "FRMA")
        ref1 = acc.order_ref

        alice.send(replace("A1", "A2", 60, 1_850_000))          # same price, fewer: keeps priority
        rep = decode(alice.read_sequenced())
        assert (rep.layout, rep.order_ref, rep.shares) == (ouch.REPLACED, ref1, 60)

        alice.send(replace("A2", "A3", 60, 1_850_100))          # new price: new reference
        rep2 = decode(alice.read_sequenced())
        assert rep2.previous_token.rstrip() == "A2" and rep2.order_ref != ref1
        ref2 = rep2.order_ref

        bob = v.client("bob", sequence=0)
        bob.send(enter("B1", "S", 30, 1_850_100, tif=0))        # IOC, crosses alice
        bob_acc, _ = read_until_type(bob, "A")
        bob_exec, _ = read_until_type(bob, "E")
        alice_exec = decode(alice.read_sequenced())
        assert alice_exec.layout is ouch.EXECUTED and alice_exec.shares == 30
        assert alice_exec.match_number == bob_exec.match_number
        assert (bob_exec.liquidity, alice_exec.liquidity) == ("R", "A")

        alice.send(cancel("A3"))
        can = decode(alice.read_sequenced())
        assert (can.layout, can.decrement, can.reason) == (ouch.CANCELED, 30, "U")
        alice.send(cancel("A3"))
        assert decode(alice.read_sequenced()).layout is ouch.CANCEL_REJECT

        # Alice's stream is numbered 1, 2, ... without gaps
        assert sorted(alice.sequenced) == list(range(1, len(alice.sequenced) + 1))

        # the feed tells the same story
        last = v.server.call(lambda s: s.pipeline.feed_next_seq - 1)
        v.feed.wait_for(last)
        book = [feed_decode(m) for m in v.feed.in_order(last)
                if chr(m[0]) in "AUXDEPC"]
        kinds = [(m.layout.type_code, getattr(m, "order_ref", getattr(m, "original_ref", 0)))
                 for m in book]
        assert kinds == [("A", ref1), ("X", ref1), ("U", ref1), ("E", ref2), ("D", ref2)]
        assert book[1].shares == 40 and book[2].new_ref == ref2
        assert book[3].shares == 30 and book[3].match_number == alice_exec.match_number


def test_itchfeed_parses_the_feed(tmp_path):
    from itch.messages import messages as itch_parsers
    with Venue(tmp_path) as v:
        alice = v.client("alice", sequence=0)
        bob = v.client("bob", sequence=0)
        alice.send(enter("A1", "B", 200, 1_850_000))
        read_until_type(alice, "A")
        bob.send(enter("B1", "S", 150, 1_849_900, tif=0))
        bob_exec, _ = read_until_type(bob, "E")
        last = v.server.call(lambda s: s.pipeline.feed_next_seq - 1)
        v.feed.wait_for(last)
        parsed = [itch_parsers[m[:1]](m) for m in v.feed.in_order(last)]
        execs = [m for m in parsed if m.message_type == b"E"]
        assert len(execs) == 1
        assert execs[0].executed_shares == bob_exec.shares == 150
        assert execs[0].match_number == bob_exec.match_number


def test_login_outcomes(tmp_path):
    with Venue(tmp_path) as v:
        c = v.client()
        assert c.login("alice", "wrong") == (sb.REJECTED, b"A")
        assert c.wait_closed(3)
        c = v.client()
        assert c.login("nobody", "x") == (sb.REJECTED, b"A")
        ok = v.client("alice")
        dup = v.client()
        assert dup.login("alice", "alice1") == (sb.REJECTED, b"S")
        other = v.client()
        assert other.login("bob", "bob1", session="XXXXXXXXXX") == (sb.REJECTED, b"S")
        named = v.client()
        kind, _ = named.login("bob", "bob1", session=v.server.session_name)
        assert kind == sb.ACCEPTED
        bad = v.client()
        bad.send_raw(sb.pack(sb.LOGIN, b"short"))
        assert bad.read() == (sb.REJECTED, b"A")
        ok.send(enter("A1"))                     # the first session is untouched
        assert read_until_type(ok, "A")[0].token.rstrip() == "A1"
        n = v.counters()
        assert n["tcp_login_bad_credentials"] == 2
        assert n["tcp_login_duplicate"] == 1
        assert n["tcp_login_unknown_session"] == 1
        assert n["tcp_login_malformed"] == 1
        assert n["tcp_logins"] == 2


def test_relogin_replays_from_the_requested_sequence(tmp_path):
    with Venue(tmp_path) as v:
        alice = v.client("alice")
        for i in range(3):
            alice.send(enter(f"A{i}", "B", 100, 1_850_000 - 100 * i))
            read_until_type(alice, "A")
        alice.logout()
        assert alice.wait_closed(3)
        seen = dict(alice.sequenced)                     # 1: system event, 2-4: accepted
        assert sorted(seen) == [1, 2, 3, 4]
        bob = v.client("bob", sequence=0)                # trades against alice while she is away
        bob.send(enter("B1", "S", 250, 1_849_800, tif=0))
        read_until_type(bob, "E")
        v.wait_counter("executions", 3)

        again = v.client("alice", sequence=3)
        assert again.next_seq is not None
        again_msgs = [again.read_sequenced() for _ in range(5)]
        assert again_msgs[:2] == [seen[3], seen[4]]      # replayed byte for byte
        assert [decode(m).layout for m in again_msgs[2:]] == [ouch.EXECUTED] * 3
        assert sorted(again.sequenced) == list(range(3, 8))
        again.logout()
        assert again.wait_closed(3)

        fresh = v.client("alice", sequence=0)            # 0: only new messages
        assert fresh.next_seq == 8 and fresh.read(0.2) is None
        fresh.logout()
        fresh.wait_closed(3)
        beyond = v.client("alice", sequence=99)          # beyond the end: the next one
        assert beyond.next_seq == 8


def test_heartbeats_and_timeouts(tmp_path):
    with Venue(tmp_path, heartbeat_interval=0.05, heartbeat_timeout=1.0,
               login_timeout=0.3) as v:
        alice = v.client("alice", sequence=0)
        pkt, _ = alice.read_until(lambda t, p: t == sb.SERVER_HEARTBEAT, 3)
        assert pkt == (sb.SERVER_HEARTBEAT, b"")
        # a client that keeps sending heartbeats stays; a silent one is dropped
        bob = v.client("bob", sequence=0)
        done = threading.Event()

        def beat():
            while not done.wait(0.05):
                bob.heartbeat()

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        try:
            assert alice.wait_closed(5)
            idle = v.client()                          # never logs in
            assert idle.wait_closed(5)
            bob.send(enter("B1"))
            assert read_until_type(bob, "A")[0].token.rstrip() == "B1"
        finally:
            done.set()
            t.join(5)
        n = v.counters()
        assert n["tcp_heartbeat_timeout"] == 1 and n["tcp_login_timeout"] == 1
        assert n["tcp_server_heartbeats"] >= 1 and n["tcp_client_heartbeats"] >= 1


def test_malformed_streams_have_defined_outcomes(tmp_path):
    with Venue(tmp_path, max_packet=1024) as v:
        c = v.client()
        c.send_raw(b"\xff\xffL")                        # length beyond --max-packet
        assert c.wait_closed(3)
        c = v.client()
        c.send_raw(b"\x00\x00")                         # length 0: no packet type
        assert c.wait_closed(3)
        c = v.client()
        c.send_raw(sb.unsequenced(enter("X1")))         # data before login
        assert c.wait_closed(3)
        c = v.client()
        c.send_raw(sb.login_request("alice", "alice1")[:20])   # truncated, then gone
        c.close()
        v.wait_counter("tcp_truncated_packet")
        c = v.client("bob", sequence=0)
        c.send(b"Q" + bytes(10))                        # unknown OUCH type: dropped, counted
        c.send(enter("B1")[:-1])                        # OUCH message too short
        c.send(enter("B2"))                             # the session goes on
        assert read_until_type(c, "A")[0].token.rstrip() == "B2"
        c.send_raw(sb.pack(b"Q", b"?"))                 # unknown SoupBinTCP packet type
        assert c.wait_closed(3)
        c = v.client("carol", sequence=0)
        c.send_raw(sb.login_request("carol", "carol1"))  # a second login on a session
        assert c.wait_closed(3)
        n = v.counters()
        assert n["tcp_oversized_packet"] == 1 and n["tcp_empty_packet"] == 1
        assert n["tcp_data_before_login"] == 1 and n["tcp_truncated_packet"] == 1
        assert n["drop_unknown_type"] == 1 and n["drop_bad_length"] == 1
        assert n["tcp_unknown_packet_type"] == 1 and n["tcp_login_repeated"] == 1


def test_login_floods_are_limited(tmp_path):
    with Venue(tmp_path, login_rate=0.2, login_burst=3.0, max_pending_logins=4) as v:
        answers = []
        for _ in range(8):
            c = v.client()
            answers.append(c.login("alice", "wrong"))
            c.close()
        assert answers == [(sb.REJECTED, b"A")] * 8
        n = v.counters()
        assert n["tcp_login_rate_limited"] >= 4
        assert n["tcp_login_bad_credentials"] + n["tcp_login_rate_limited"] == 8
        # pending (not logged in) connections beyond the limit are refused at once
        idle = [SoupBinClient("127.0.0.1", v.server.tcp_port) for _ in range(6)]
        try:
            closed = 0
            for c in idle:
                try:
                    if c.read(0.3) is None and not c.closed:
                        continue
                except EOFError:
                    closed += 1
            assert closed >= 2
            assert v.counters()["tcp_refused_login_flood"] >= 2
        finally:
            for c in idle:
                c.close()


def test_a_slow_consumer_is_dropped_and_does_not_stall_the_engine(tmp_path):
    with Venue(tmp_path, max_output_buffer=32 << 10, tcp_sndbuf=16 << 10) as v:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", v.server.tcp_port))
        slow.sendall(sb.login_request("alice", "alice1", sequence=1))
        stop = threading.Event()
        sent = [0]

        def flood():                                  # sends, never reads
            try:
                for i in range(200_000):
                    if stop.is_set():
                        return
                    slow.sendall(sb.unsequenced(enter(f"S{i}", tif=0)))
                    sent[0] += 1
            except OSError:
                return

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            fast = v.client("bob", sequence=0)
            for i in range(50):
                fast.send(enter(f"F{i}", "S", 100, 1_900_000 + 100 * (i % 5)))
                assert read_until_type(fast, "A")[0].token.rstrip() == f"F{i}"
            v.wait_counter("tcp_slow_consumer_dropped", 1, timeout=60)
            fast.send(enter("F-last", "S", 100, 1_900_000))
            assert read_until_type(fast, "A")[0].token.rstrip() == "F-last"
        finally:
            stop.set()
            t.join(10)
            slow.close()
        # the dropped session's messages stayed in its stream: a re-login gets them all
        # (after one that leaves in the middle of its replay)
        total = v.server.call(lambda s: len(s.pipeline.streams[s.user_session["alice"]]))
        assert total > 1000
        quitter = v.client("alice", sequence=1)
        quitter.read_sequenced()
        quitter.close()
        deadline = time.monotonic() + 10
        while v.server.call(lambda s: s.tcp_conns[s.user_session["alice"]]) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        back = v.client("alice", sequence=1, timeout=20)
        while len(back.sequenced) < total:
            back.read_sequenced(20)
        assert sorted(back.sequenced) == list(range(1, total + 1))
        assert v.counters()["tcp_replays"] >= 2


def test_replay_is_byte_identical_to_what_clients_received(tmp_path):
    """tickcore replay vs a client-side capture of every stream the server sent."""
    with Venue(tmp_path) as v:
        alice = v.client("alice")
        bob = v.client("bob")
        udp = UdpOrderEntry("127.0.0.1", v.server.udp_port, "FRMC01")
        try:
            for i in range(4):
                alice.send(enter(f"A{i}", "B", 100 + i, 1_850_000 - 100 * i))
                read_until_type(alice, "A")
            bob.send(enter("B1", "S", 100, 1_900_000))
            read_until_type(bob, "A")
            udp.send([enter("U1", "S", 500, 1_849_700, tif=0)])   # fills alice, rest canceled
            udp_got = []
            while not udp_got or udp_got[-1][1][-1][:1] != b"C":
                got = udp.recv(5)
                assert got is not None, udp_got
                udp_got.append(got)
            bob.send(replace("A0", "A9", 50, 1_850_000))           # not bob's order: rejected
            read_until_type(bob, "J")
            bob.send(cancel("B1"))
            read_until_type(bob, "C")
            last = v.server.call(lambda s: s.pipeline.feed_next_seq - 1)
            v.feed.wait_for(last)
            v.server.close_day()
            assert alice.wait_closed(3) and bob.wait_closed(3)
            udp_got.append(udp.recv(5))                            # end of day
            v.feed.drain(0.2)
        finally:
            udp.close()
        udp_got = [moldudp64.pack_packet(h.session, h.sequence, m) for h, m in udp_got]
        received = {"alice": alice, "bob": bob}
        feed_packets = list(v.feed.packets)
    spec, pipeline, outputs, _ = replay_events(v.journal)
    names = spec.session_names()
    for user, client in received.items():
        index = names.index(user)
        replayed = [d for _, k, s, d in outputs if k == OUT_TCP and s == index]
        assert [client.sequenced[i] for i in range(1, len(replayed) + 1)] == replayed
        assert sorted(client.sequenced) == list(range(1, len(replayed) + 1))
        assert client.raw.endswith(sb.END_OF_SESSION_PACKET)
    feed = [d for _, k, _, d in outputs if k == OUT_FEED]
    assert feed[-1] == moldudp64.end_of_session(spec.cfg.feed_session,
                                                pipeline.feed_next_seq)
    assert v.feed.end_of_session == pipeline.feed_next_seq
    assert feed_packets == feed[:-1]            # the end-of-session packet is kept apart
    udp_index = names.index("FRMC01")
    replayed_udp = [d for _, k, s, d in outputs if k == OUT_UDP and s == udp_index]
    # FRMC01's first packet is its start-of-day event, sent before it had an address
    assert udp_got == replayed_udp[1:]


def test_tshark_decodes_the_replayed_soupbintcp_stream(tmp_path):
    with Venue(tmp_path) as v:
        alice = v.client("alice")
        alice.send(enter("TSHARK1", "B", 123, 1_850_100))
        acc, _ = read_until_type(alice, "A")
        alice.send(cancel("TSHARK1", 23))
        can, _ = read_until_type(alice, "C")
    pcap = tmp_path / "out.pcap"
    write_replay(v.journal, pcap)
    cfg = v.spec.cfg
    alice_ip = ".".join(str(b) for b in cfg.sessions[v.spec.session_names().index("alice")]
                        .ip.to_bytes(4, "big"))
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={cfg.oe_port},soupbintcp",
         "-Y", f"ip.dst=={alice_ip}", "-T", "fields", "-E", "separator=|",
         "-e", "soupbintcp.packet_type", "-e", "ouch.packet_type", "-e", "ouch.order_token",
         "-e", "ouch.shares", "-e", "ouch.order_reference_number", "-e", "ouch.decrement_shares",
         "-e", "tcp.checksum.status", "-o", "tcp.check_checksum:TRUE"],
        capture_output=True, text=True, check=True)
    rows = [line.split("|") for line in out.stdout.splitlines()]
    assert [r[0] for r in rows] == ["'S'"] * 3                      # Sequenced Data
    assert [r[1] for r in rows] == ["'S'", "'A'", "'C'"]
    assert rows[1][2].strip() == "TSHARK1" and rows[1][3] == "123"
    assert rows[1][4] == str(acc.order_ref)
    assert rows[2][5] == str(can.decrement) == "100"
    assert {r[6] for r in rows} == {"1"}                            # TCP checksum good
    # the feed frames: MoldUDP64 headers as the pipeline numbered them
    _, pipeline, outputs, _ = replay_events(v.journal)
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"udp.port=={cfg.feed_port},moldudp64",
         "-Y", "moldudp64", "-T", "fields", "-E", "separator=|", "-e", "moldudp64.session",
         "-e", "moldudp64.sequence", "-e", "moldudp64.count", "-e", "udp.checksum.status",
         "-o", "udp.check_checksum:TRUE"], capture_output=True, text=True, check=True)
    rows = [line.split("|") for line in out.stdout.splitlines()]
    packets = [moldudp64.HEADER.unpack(d) for _, k, _, d in outputs if k == OUT_FEED]
    assert rows == [[h.session.rstrip(), str(h.sequence), str(h.count), "1"] for h in packets]
    assert sum(h.count for h in packets) == len(pipeline.feed_messages)


def test_busy_poll_server_answers_heartbeats_and_stops(tmp_path):
    with Venue(tmp_path, busy_poll=True, heartbeat_interval=0.05) as v:
        c = v.client("alice", sequence=0)
        c.send(enter("A1"))
        assert read_until_type(c, "A")[0].token.rstrip() == "A1"
        pkt, _ = c.read_until(lambda t, p: t == sb.SERVER_HEARTBEAT, 5)   # timers still run
        assert pkt[0] == sb.SERVER_HEARTBEAT


@pytest.mark.parametrize("policy", ["always", "interval", "none"])
def test_fsync_policies(tmp_path, policy):
    with Venue(tmp_path, fsync=policy, fsync_interval=0.01) as v:
        alice = v.client("alice", sequence=0)
        for i in range(5):
            alice.send(enter(f"A{i}"))
            read_until_type(alice, "A")
        syncs = v.server.call(lambda s: s.journal.syncs)
        if policy == "always":
            assert syncs >= 5 + 1
        elif policy == "interval":
            deadline = time.monotonic() + 5
            while v.server.call(lambda s: s.journal.syncs) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        else:
            assert syncs == 1                       # the one at journal creation
