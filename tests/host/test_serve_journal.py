"""The live venue's journal: format, torn tails, corruption, restarts and configuration checks."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from tickcore.host import journal as jr
from tickcore.host import soupbintcp as sb
from tickcore.host.serve import ServeError, ServeOptions, ServerThread
from tickcore.host.serve_client import FeedReceiver, SoupBinClient, UdpOrderEntry
from tickcore.host.serve_config import build_spec, parse_users
from tickcore.refmodel import moldudp64, ouch

USERS = "alice:alice1:FRMA\nbob:bob1:FRMB\n"


def enter(token, side="B", shares=100, price=1_850_000, tif=99999):
    return ouch.ENTER_ORDER.build(token=token, side=side, shares=shares, stock="AAPL",
                                  price=price, tif=tif, firm="", display="Y", capacity="A",
                                  iso="N", min_qty=0, cross_type="N", customer_type=" ")


def decode(msg):
    return ouch.OUTBOUND[chr(msg[0])].unpack(msg)


def _journal(tmp_path, n=3):
    d = tmp_path / "j"
    w = jr.create_journal(d, {"format": 1, "x": 1}, 100, fsync="none")
    for i in range(n):
        w.append(jr.encode(jr.TCP, 101 + i, jr.tcp_payload(9, b"payload%d" % i)))
    w.close()
    return jr.journal_path(d)


def test_records_round_trip(tmp_path):
    path = _journal(tmp_path)
    reader = jr.JournalReader(path)
    records = list(reader)
    assert [(k, ts) for k, ts, _ in records] == [(jr.CONFIG, 100), (jr.OPEN, 100),
                                                  (jr.TCP, 101), (jr.TCP, 102), (jr.TCP, 103)]
    assert jr.read_config(path) == {"format": 1, "x": 1}
    assert jr.split_tcp(records[3][2]) == (9, b"payload1")
    assert reader.torn_bytes == 0 and reader.end == os.path.getsize(path)
    ip, port, dg = jr.split_udp(jr.udp_payload(0x7F000001, 4000, b"dgram"))
    assert (ip, port, dg) == (0x7F000001, 4000, b"dgram")


def _tail_cases(good: bytes):
    last = jr.encode(jr.TCP, 200, jr.tcp_payload(1, b"x" * 40))
    bad_crc = bytearray(last)
    bad_crc[-1] ^= 0xFF
    return {
        "partial header": last[:10],
        "partial payload": last[:-5],
        "checksum of the final record": bytes(bad_crc),
        "zero-filled tail": bytes(300),
    }


@pytest.mark.parametrize("case", ["partial header", "partial payload",
                                  "checksum of the final record", "zero-filled tail"])
def test_torn_tails_are_detected_counted_and_cut(tmp_path, case):
    path = _journal(tmp_path)
    good = open(path, "rb").read()
    tail = _tail_cases(good)[case]
    with open(path, "ab") as fh:
        fh.write(tail)
    reader = jr.JournalReader(path)
    assert len(list(reader)) == 5                     # the torn record is never yielded
    assert reader.torn_bytes == len(tail) and reader.end == len(good)
    jr.truncate_torn(reader)
    assert open(path, "rb").read() == good
    w = jr.JournalWriter(path, "none")                 # appending after the cut is clean
    w.append(jr.encode(jr.CLOSE, 300))
    w.close()
    assert [k for k, _, _ in jr.JournalReader(path)][-1] == jr.CLOSE


def test_corruption_before_the_end_is_refused(tmp_path):
    path = _journal(tmp_path)
    data = bytearray(open(path, "rb").read())
    data[-30] ^= 0x01                                  # inside the next-to-last record
    open(path, "wb").write(bytes(data))
    with pytest.raises(jr.JournalError, match="corrupt"):
        list(jr.JournalReader(path))


def test_headers_are_checked(tmp_path):
    path = _journal(tmp_path)
    data = bytearray(open(path, "rb").read())
    data[9] = 99                                       # version
    open(path, "wb").write(bytes(data))
    with pytest.raises(jr.JournalError, match="version 99"):
        list(jr.JournalReader(path))
    open(path, "wb").write(b"NOTAJRNL" + bytes(8))
    with pytest.raises(jr.JournalError, match="not a tickcore journal"):
        list(jr.JournalReader(path))


def _server(tmp_path, users=USERS, config=None, **opts):
    u = parse_users(users)
    spec = build_spec(config, u)
    options = dict(port=0, fsync="none", feed=("127.0.0.1", 9))
    options.update(opts)
    return ServerThread(spec, u, tmp_path / "journal", ServeOptions(**options))


def test_restart_keeps_book_references_and_sequence_numbers(tmp_path):
    feed = FeedReceiver()
    udp = udp2 = None
    try:
        with _server(tmp_path, feed=feed.dest) as srv:
            alice = SoupBinClient("127.0.0.1", srv.tcp_port)
            alice.login("alice", "alice1")
            alice.send(enter("A1", shares=300))
            assert decode(alice.read_sequenced(5)).layout is ouch.SYSTEM_EVENT
            acc = decode(alice.read_sequenced(5))
            udp = UdpOrderEntry("127.0.0.1", srv.udp_port, "FRMB01")
            udp.send([enter("U1", "S", 100, 1_850_000, tif=0)])     # fills 100 of A1
            packets = [udp.recv(5), udp.recv(5)]                      # Accepted, Executed
            assert decode(alice.read_sequenced(5)).layout is ouch.EXECUTED
            before = dict(alice.sequenced)
            feed_next = srv.call(lambda s: s.pipeline.feed_next_seq)
            session = srv.session_name
            alice.close()
        with _server(tmp_path, feed=feed.dest) as srv:          # same journal
            assert srv.session_name == session
            assert srv.call(lambda s: s.pipeline.feed_next_seq) == feed_next
            alice = SoupBinClient("127.0.0.1", srv.tcp_port)
            assert alice.login("alice", "alice1", session=session)[0] == sb.ACCEPTED
            replayed = [alice.read_sequenced(5) for _ in before]
            assert replayed == [before[k] for k in sorted(before)]   # the same bytes
            assert alice.sequenced == before                         # and numbers
            alice.send(enter("A2"))
            acc2 = decode(alice.read_sequenced(5))
            assert acc2.order_ref == acc.order_ref + 2          # references carry on (U1 took one)
            alice.send(ouch.CANCEL_ORDER.build(token="A1", shares=0))
            can = decode(alice.read_sequenced(5))               # the order is still there
            assert (can.layout, can.decrement) == (ouch.CANCELED, 200)
            udp2 = UdpOrderEntry("127.0.0.1", srv.udp_port, "FRMB01")
            udp2.next_seq = udp.next_seq                        # the UDP session's numbers too
            udp2.send([enter("U2", "S", 100, 1_900_000)])
            header, msgs = udp2.recv(5)
            last = packets[-1]
            assert header.sequence == last[0].sequence + len(last[1])
            assert decode(msgs[0]).token.rstrip() == "U2"
            assert srv.counters()["tcp_logins"] == 1
            alice.close()
    finally:
        for u in (udp, udp2):
            if u is not None:
                u.close()
        feed.close()


def test_journaled_but_unanswered_messages_are_delivered_after_restart(tmp_path):
    """A crash between the journal write and the sends: the restart answers them."""
    feed = FeedReceiver()
    udp = UdpOrderEntry("127.0.0.1", 1, "FRMB01")
    try:
        with _server(tmp_path, feed=feed.dest) as srv:
            session = srv.session_name
            alice_index = srv.call(lambda s: s.user_session["alice"])
        path = jr.journal_path(tmp_path / "journal")
        records = list(jr.JournalReader(path))
        ts = records[-1][1]
        ip = 0x7F000001
        port = udp.sock.getsockname()[1]
        w = jr.JournalWriter(path, "none")               # what a crashed server left behind
        w.append(jr.encode(jr.TCP, ts + 1, jr.tcp_payload(alice_index, enter("A1"))))
        w.append(jr.encode(jr.UDP, ts + 2, jr.udp_payload(
            ip, port, moldudp64.pack_packet("FRMB01", 1, [enter("U1", "S", 50, tif=0)]))))
        w.close()
        feed.drain(0.1)
        with _server(tmp_path, feed=feed.dest) as srv:
            assert srv.session_name == session
            header, msgs = udp.recv(5)                    # resent to the journaled address
            assert [decode(m).layout for m in msgs][0] is ouch.ACCEPTED
            alice = SoupBinClient("127.0.0.1", srv.tcp_port)
            alice.login("alice", "alice1")
            got = [decode(alice.read_sequenced(5)) for _ in range(3)]
            assert [g.layout for g in got] == [ouch.SYSTEM_EVENT, ouch.ACCEPTED,
                                              ouch.EXECUTED]
            alice.close()
            feed.drain(0.2)
            # the feed of the last append is sent again; the earlier gap is for retransmission
            last = srv.call(lambda s: s.pipeline.feed_next_seq - 1)
            assert feed.missing(last) == [last - 1]
            assert srv.counters()["recovery_resent_packets"] == 3     # 2 UDP + 1 feed
    finally:
        udp.close()
        feed.close()


def test_restart_after_a_torn_tail(tmp_path):
    with _server(tmp_path) as srv:
        c = SoupBinClient("127.0.0.1", srv.tcp_port)
        c.login("alice", "alice1")
        c.send(enter("A1"))
        c.read_sequenced(5)
        c.read_sequenced(5)
        c.close()
    path = jr.journal_path(tmp_path / "journal")
    size = os.path.getsize(path)
    with open(path, "ab") as fh:                        # a record torn by the crash
        fh.write(jr.encode(jr.TCP, 1, jr.tcp_payload(5, enter("A2")))[:25])
    with _server(tmp_path) as srv:
        n = srv.counters()
        assert n["journal_torn_tail_truncated"] == 1 and n["journal_torn_tail_bytes"] == 25
        assert srv.server.torn_reason == "record extends past the end of the file"
        c = SoupBinClient("127.0.0.1", srv.tcp_port)
        c.login("alice", "alice1", sequence=2)
        assert decode(c.read_sequenced(5)).token.rstrip() == "A1"
        c.close()
    reader = jr.JournalReader(path)
    assert len(list(reader)) == 3 and reader.torn_bytes == 0    # cut for good
    assert os.path.getsize(path) == size


def test_restart_with_another_configuration_is_refused(tmp_path):
    with _server(tmp_path):
        pass
    with pytest.raises(ServeError, match="sessions differ"):
        with _server(tmp_path, users=USERS + "carol:carol1\n"):
            pass
    with pytest.raises(ServeError, match="protocols differ"):
        with _server(tmp_path, users="alice:alice1:FRMA:ouch50\nbob:bob1:FRMB\n"):
            pass
    with pytest.raises(ServeError, match="symbols"):
        with _server(tmp_path, config={"symbols": [{"stock": "AAPL", "ref_price": 1_850_000}]}):
            pass
    with _server(tmp_path, users="alice:newpass:FRMA\nbob:bob1:FRMB\n") as srv:   # passwords
        c = SoupBinClient("127.0.0.1", srv.tcp_port)
        assert c.login("alice", "newpass")[0] == sb.ACCEPTED
        c.close()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tickcore.host.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    users = tmp_path / "users"
    users.write_text("alice:alice1:NOPE\n")
    r = _cli("serve", "--port", "0", "--users", str(users), "--journal", str(tmp_path / "j"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "firm NOPE is not in the configuration's firms" in r.stderr
    r = _cli("replay", str(tmp_path / "missing"), "-o", str(tmp_path / "x.pcap"))
    assert r.returncode == 2 and "no journal there" in r.stderr


def test_cli_serve_replay_round_trip(tmp_path):
    users = tmp_path / "users"
    users.write_text(USERS)
    journal = tmp_path / "j"
    proc = subprocess.Popen([sys.executable, "-m", "tickcore.host.cli", "serve", "--port", "0",
                             "--users", str(users), "--journal", str(journal),
                             "--feed", "127.0.0.1:9", "--fsync", "interval"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        c = SoupBinClient("127.0.0.1", info["tcp_port"])
        c.login("bob", "bob1")
        c.send(enter("B1", "S"))
        got = [c.read_sequenced(5), c.read_sequenced(5)]
        c.close()
        proc.terminate()
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        stopped = json.loads(out.splitlines()[-1])
        assert stopped["event"] == "stopped" and stopped["counters"]["tcp_logins"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    r = _cli("replay", str(journal), "-o", str(tmp_path / "out.pcap"), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["tcp_messages"] == 2 + 1 and summary["journal_records"] == 3
    assert got[1][:1] == b"A"


def test_encode_tcp_is_encode_of_the_tcp_payload():
    rng = random.Random(8)
    for _ in range(500):
        ts, session = rng.randrange(1 << 63), rng.randrange(64)
        message, first = rng.randbytes(rng.randint(0, 80)), rng.random() < 0.5
        assert jr.encode_tcp(ts, session, message, first) == \
            jr.encode(jr.TCP, ts, jr.tcp_payload(session, message), first)
