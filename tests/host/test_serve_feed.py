"""The live venue's UDP side: MoldUDP64 retransmission, feed heartbeats and multicast, and
UDP order entry byte-identical to the reference pipeline (`tickcore run`)."""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest

from tickcore.host import journal as jr
from tickcore.host.feed import retransmission
from tickcore.host.gen import FlowGenerator, GenOptions
from tickcore.host.serve import ServeOptions, ServerThread
from tickcore.host.serve_client import FeedReceiver, UdpOrderEntry
from tickcore.host.serve_config import build_spec, parse_users
from tickcore.refmodel import moldudp64, ouch
from tickcore.refmodel.packet import build_udp_frame, parse_udp_frame
from tickcore.refmodel.venue import Venue

SEED = 7
USERS = "alice:alice1:FRMA\n"


def enter(token, side="B", shares=100, price=1_850_000, tif=99999):
    return ouch.ENTER_ORDER.build(token=token, side=side, shares=shares, stock="AAPL",
                                  price=price, tif=tif, firm="", display="Y", capacity="A",
                                  iso="N", min_qty=0, cross_type="N", customer_type=" ")


def _server(tmp_path, **opts):
    users = parse_users(USERS)
    spec = build_spec(None, users)
    options = dict(port=0, fsync="none")
    options.update(opts)
    return ServerThread(spec, users, tmp_path / "journal", ServeOptions(**options))


def test_retransmission_returns_exactly_the_requested_messages(tmp_path):
    feed = FeedReceiver()
    rng = random.Random(SEED)
    try:
        with _server(tmp_path, feed=feed.dest) as srv:
            udp = UdpOrderEntry("127.0.0.1", srv.udp_port, "FRMA01")
            for i in range(60):                          # 60 Add Orders after the 19 of open
                udp.send([enter(f"T{i}", "B", 100, 1_800_000 + 100 * (i % 20))])
                udp.recv(5)
            udp.close()
            published = srv.call(lambda s: list(s.pipeline.feed_messages))
            assert len(published) == 79
            addr = ("127.0.0.1", srv.retrans_port)
            session = srv.call(lambda s: s.pipeline.feed_session)
            feed.session = session
            for _ in range(40):
                first = rng.randint(1, len(published))
                count = rng.randint(1, 12)
                header, msgs = feed.request(addr, first, count)
                want = published[first - 1:first - 1 + count]
                assert (header.session, header.sequence) == (session, first), (SEED, first)
                assert msgs == want, f"seed {SEED}: request {first}+{count}"
            # more than fits: the longest prefix within max_payload, from the first asked
            header, msgs = feed.request(addr, 1, 1000)
            size = moldudp64.HEADER.size + sum(2 + len(m) for m in msgs)
            max_payload = srv.call(lambda s: s.spec.cfg.max_payload)
            assert msgs == published[:len(msgs)] and size <= max_payload
            assert size + 2 + len(published[len(msgs)]) > max_payload
            # beyond the end: a heartbeat with the next sequence number
            header, msgs = feed.request(addr, 500, 3)
            assert (header.sequence, header.count, msgs) == (80, 0, [])
            # refused without an answer: another session, a short packet, count 0
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.3)
            for bad in (moldudp64.HEADER.pack(("OTHERFEED ", 1, 1)), b"\0" * 19,
                        moldudp64.HEADER.pack((session, 1, 0))):
                s.sendto(bad, addr)
                with pytest.raises(TimeoutError):
                    s.recvfrom(2000)
            s.close()
            n = srv.counters()
            assert n["retrans_unknown_session"] == 1 and n["retrans_malformed"] == 2
            assert n["retrans_beyond"] == 1 and n["retrans_requests"] == 42
            # gap filling from the feed actually received gives the published stream
            feed.drain(0.2)
            feed.messages = {k: v for k, v in feed.messages.items() if k % 3}
            feed.fill_gaps(addr, len(published))
            assert feed.in_order(len(published)) == published
    finally:
        feed.close()


def test_retransmission_answer_is_capped_by_the_payload_limit():
    msgs = [bytes([65]) * 30] * 100
    packet = retransmission(msgs, "S" * 10, 3, 100, 200)
    header, got = moldudp64.parse_packet(packet)
    assert header.sequence == 3 and got == msgs[2:2 + 5] and len(packet) <= 200


def test_feed_heartbeats_and_end_of_session(tmp_path):
    feed = FeedReceiver()
    try:
        with _server(tmp_path, feed=feed.dest, feed_heartbeat=0.05) as srv:
            while feed.heartbeats < 2:
                assert feed.drain(2.0, limit=0.5), "no feed heartbeat"
            assert feed.session.rstrip() == "TCFEED0001"
            srv.close_day()
            while feed.end_of_session is None:
                assert feed.drain(2.0, limit=0.5), "no end of session"
            assert feed.end_of_session == srv.call(lambda s: s.pipeline.feed_next_seq)
    finally:
        feed.close()


def test_multicast_feed_on_the_loopback_interface(tmp_path):
    group = ("239.255.17.3", 0)
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    r.bind((group[0], 0))
    port = r.getsockname()[1]
    r.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 struct.pack("4s4s", socket.inet_aton(group[0]), socket.inet_aton("127.0.0.1")))
    r.settimeout(5)
    try:
        with _server(tmp_path, feed=(group[0], port), feed_interface="127.0.0.1"):
            data, _ = r.recvfrom(65536)
            header, msgs = moldudp64.parse_packet(data)
            assert header.sequence == 1 and msgs[0][:1] == b"S"      # start of messages
    finally:
        r.close()


@pytest.mark.parametrize("engine", ["reference", "software"])
def test_udp_order_entry_is_byte_identical_to_the_reference_pipeline(tmp_path, engine):
    """A generated flow (tickcore gen, with damaged messages) sent to the live venue over
    UDP: every response and feed packet equals what refmodel's Venue emits for the same
    datagrams and ingress timestamps, whichever engine the venue runs."""
    users = parse_users(USERS)
    spec = build_spec(None, users)
    cfg = spec.cfg
    datagrams = []
    gen = FlowGenerator(cfg, GenOptions(seed=SEED, orders=500, malformed=0.03))
    for _, frame in gen.frames():
        reason, dgram = parse_udp_frame(frame, mac=cfg.mac, ip=cfg.ip, port=cfg.oe_port)
        if reason is None:
            datagrams.append(dgram.payload)
    marker = moldudp64.pack_packet("FRMA01", gen.clients[0].link.next_seq,
                                   [enter("MARKER", "B", 100, 1_000_000)])
    datagrams.append(marker)          # FRMA01's next message, answered after all the others
    feed = FeedReceiver()
    sockets = {}
    received = {}
    try:
        with ServerThread(spec, users, tmp_path / "journal",
                          ServeOptions(port=0, fsync="none", feed=feed.dest,
                                       engine=engine)) as srv:
            udp_names = spec.session_names({"udp"})
            for name in udp_names:
                sockets[name] = UdpOrderEntry("127.0.0.1", srv.udp_port, name)
            for d in datagrams:
                name = d[:10].decode("latin-1").rstrip()
                sock = sockets.get(name, sockets[udp_names[0]])
                sock.send_raw(d)
            def handled(n):
                return n["udp_datagrams_journaled"] + sum(
                    v for k, v in n.items() if k.startswith("drop_udp_"))
            deadline = time.monotonic() + 20
            while handled(srv.counters()) < len(datagrams):
                assert time.monotonic() < deadline, srv.counters()
                time.sleep(0.01)
            # FRMA01 first, until the answer to the marker: by then everything was sent
            for name in ["FRMA01"] + [n for n in sockets if n != "FRMA01"]:
                got = []
                while True:
                    pkt = sockets[name].recv(5 if name == "FRMA01" else 0.05)
                    if pkt is None:
                        break
                    got.append(moldudp64.pack_packet(pkt[0].session, pkt[0].sequence, pkt[1]))
                    if name == "FRMA01" and b"MARKER" in b"".join(pkt[1]):
                        break
                received[name] = got
            feed_next = srv.call(lambda s: s.pipeline.feed_next_seq)
            feed.wait_for(feed_next - 1)
            counters = srv.counters()
        journal = list(jr.JournalReader(jr.journal_path(tmp_path / "journal")))
    finally:
        for sock in sockets.values():
            sock.close()
        feed.close()

    # the reference: refmodel's Venue on the datagrams in the order the server received them
    # (the journal's; datagrams from different sockets may overtake each other) and with
    # their ingress timestamps
    venue = Venue(cfg)
    opened = next(ts for kind, ts, _ in journal if kind == jr.OPEN)
    udp_records = [(ts, jr.split_udp(p)[2]) for kind, ts, p in journal if kind == jr.UDP]
    out = list(venue.open(opened))
    for ts, d in udp_records:
        frame = build_udp_frame(src_mac=0x020000000999, dst_mac=cfg.mac, src_ip=0x0A000909,
                                dst_ip=cfg.ip, src_port=9, dst_port=cfg.oe_port, payload=d,
                                ttl=64)
        out.extend(venue.process(ts, frame))
    # every datagram sent was journaled or counted as dropped (and the reference agrees
    # that the dropped ones change nothing: it never saw them)
    dropped = sum(v for k, v in counters.items() if k.startswith("drop_udp_"))
    assert len(udp_records) + dropped == len(datagrams)
    assert counters["udp_datagrams_journaled"] == len(udp_records)
    expected = {name: [] for name in sockets}
    expected_feed = []
    for frame in out:
        _, dgram = parse_udp_frame(frame, mac=None, ip=None, port=None)
        if dgram.src_port == cfg.feed_src_port:
            expected_feed.append(dgram.payload)
            continue
        name = dgram.payload[:10].decode("latin-1").rstrip()
        if name in expected:
            expected[name].append(dgram.payload)
    for name in sockets:
        # a session's first packet (start of day) went out before it had an address
        assert received[name] == expected[name][1:1 + len(received[name])], name
        assert len(received[name]) == len(expected[name]) - 1, name
    assert feed.packets == expected_feed
    assert counters["drop_udp_seq_duplicate"] + counters["drop_udp_seq_gap"] > 0
    assert counters["drop_unknown_type"] + counters["drop_bad_length"] > 0
