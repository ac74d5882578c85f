"""The pipeline on frames: ingress filter, session layer, framing, loopback
(docs/protocol.md sections 1, 2, 6, 12)."""

import struct

import pytest

from tickcore.refmodel import moldudp64, ouch
from tickcore.refmodel.client import ClientSession
from tickcore.refmodel.decode import decode_records
from tickcore.refmodel.packet import ETHERNET, IPV4, UDP, ones_complement_sum, parse_udp_frame
from tickcore.refmodel.venue import Venue, run_records

from ..harness import T0, cancel_bytes, enter_bytes, small_config

P100 = 1_000_000


@pytest.fixture
def cfg():
    return small_config()


def opened(cfg, mode="match"):
    v = Venue(cfg, mode)
    v.open(T0)
    return v


def client(cfg, name):
    return ClientSession(cfg, cfg.session_by_name(name.ljust(10)))


def book_snapshot(v):
    pool = v.core.book.pool
    return [(s, pool.token[s], pool.leaves[s]) for sym in v.cfg.symbols
            for s in v.core.book.walk(sym.index)]


def good_frame(cfg, seq=None):
    return client(cfg, "S1").frame([enter_bytes("T1", "B", 100, "AAA", P100)], seq=seq)


def corrupt(frame, offset, value):
    b = bytearray(frame)
    b[offset] = value
    return bytes(b)


IP = ETHERNET.size
UDP_OFF = IP + IPV4.size


def with_ip_checksum(frame):
    b = bytearray(frame)
    b[IP + 10:IP + 12] = b"\0\0"
    b[IP + 10:IP + 12] = struct.pack("!H", ~ones_complement_sum(bytes(b[IP:IP + 20])) & 0xFFFF)
    return bytes(b)


BAD_FRAMES = [   # (damage applied to a good frame, the drop reason it must get)
    (lambda f: f[:10], "truncated"),
    (lambda f: corrupt(f, 0, 0x03), "mac_filter"),
    (lambda f: f[:12] + b"\x86\xdd" + f[14:], "not_ipv4"),
    (lambda f: f[:20], "truncated"),
    (lambda f: with_ip_checksum(corrupt(f, IP, 0x46)), "ip_header"),
    (lambda f: with_ip_checksum(f[:IP + 2] + b"\x0f\xff" + f[IP + 4:]), "ip_length"),
    (lambda f: with_ip_checksum(f[:IP + 2] + b"\x00\x10" + f[IP + 4:]), "ip_length"),
    (lambda f: corrupt(f, IP + 8, 1), "ip_checksum"),
    (lambda f: with_ip_checksum(corrupt(f, IP + 6, 0x60)), "ip_fragment"),
    (lambda f: with_ip_checksum(f[:IP + 6] + b"\x00\x01" + f[IP + 8:]), "ip_fragment"),
    (lambda f: with_ip_checksum(corrupt(f, IP + 9, 6)), "not_udp"),
    (lambda f: with_ip_checksum(corrupt(f, IP + 19, 77)), "ip_filter"),
    (lambda f: corrupt(f, UDP_OFF + 5, 3), "udp_length"),
    (lambda f: corrupt(f, UDP_OFF + 3, 1), "port_filter"),
    (lambda f: corrupt(f, len(f) - 1, f[-1] ^ 0x10), "udp_checksum"),
]


@pytest.mark.parametrize("make, reason", BAD_FRAMES)
def test_each_bad_frame_is_dropped_with_its_reason(cfg, make, reason):
    v = opened(cfg)
    before = book_snapshot(v)
    bad = make(good_frame(cfg))
    assert parse_udp_frame(bad, mac=cfg.mac, ip=cfg.ip, port=cfg.oe_port)[0] == reason
    assert v.process(T0 + 1, bad) == []
    c = v.all_counters()
    assert c["drop_" + reason] == 1 and c["messages_in"] == 0
    assert book_snapshot(v) == before
    # the lost frame did not use up the sequence number: the good one is accepted
    assert len(v.process(T0 + 2, good_frame(cfg))) == 2


def test_precedence_first_failing_check_wins(cfg):
    f = good_frame(cfg)
    both = corrupt(corrupt(f, 0, 0x03), IP + 8, 1)          # wrong MAC and IP checksum
    assert parse_udp_frame(both, mac=cfg.mac, ip=cfg.ip, port=cfg.oe_port)[0] == "mac_filter"


def test_zero_udp_checksum_means_not_computed(cfg):
    f = bytearray(good_frame(cfg))
    f[UDP_OFF + 6:UDP_OFF + 8] = b"\0\0"
    v = opened(cfg)
    assert len(v.process(T0 + 1, bytes(f))) == 2


def test_ethernet_padding_is_ignored(cfg):
    v = opened(cfg)
    frame = client(cfg, "S1").frame([cancel_bytes("NOPE")]) + bytes(30)
    out = v.process(T0 + 1, frame)
    assert [d["type"] for d in decode_records(cfg, [(0, f) for f in out])] == ["CancelReject"]


def test_session_layer_outcomes(cfg):
    v = opened(cfg)
    c1 = client(cfg, "S1")
    msg = cancel_bytes("X")
    assert v.process(1, c1.raw_frame(b"S1".ljust(10) + bytes(5))) == []
    assert v.process(2, c1.raw_frame(moldudp64.pack_packet("S1", 1, [msg])[:-1])) == []
    assert v.process(3, c1.raw_frame(moldudp64.pack_packet("S1", 1, [msg]) + b"x")) == []
    assert v.process(4, c1.raw_frame(moldudp64.end_of_session("S1", 1))) == []
    assert v.process(5, c1.raw_frame(moldudp64.pack_packet("NOBODY", 1, [msg]))) == []
    assert v.process(6, c1.frame([])) == []
    c = v.all_counters()
    assert (c["drop_session_truncated"], c["drop_session_malformed"],
            c["drop_unknown_session"], c["heartbeats"]) == (1, 3, 1, 1)
    assert v.sessions.expected_seq[0] == 1


def test_sequence_duplicates_gaps_and_resend(cfg):
    v = opened(cfg)
    c1 = client(cfg, "S1")
    a = enter_bytes("A", "B", 100, "AAA", 990_000)
    b = enter_bytes("B", "B", 100, "AAA", 990_000)
    assert len(v.process(1, c1.frame([a]))) == 2             # seq 1
    assert v.process(2, c1.frame([a], seq=1)) == []          # duplicate
    assert v.process(3, c1.frame([b], seq=3)) == []          # gap: 2 expected
    out = v.process(4, c1.frame([a, b], seq=1))              # 1 is a duplicate, 2 is new
    assert [d["token"] for d in decode_records(cfg, [(0, f) for f in out])
            if "token" in d] == ["B"]
    c = v.all_counters()
    assert (c["drop_seq_duplicate"], c["drop_seq_gap"], c["messages_in"]) == (2, 1, 2)
    assert v.sessions.expected_seq[0] == 3


def test_undecodable_messages_use_up_their_sequence_number(cfg):
    v = opened(cfg)
    c1 = client(cfg, "S1")
    out = v.process(1, c1.frame([b"Q123", b"", enter_bytes("A", "B", 1, "AAA", P100)[:-1],
                                 cancel_bytes("Z")]))
    c = v.all_counters()
    assert (c["drop_unknown_type"], c["drop_bad_length"], c["messages_in"]) == (1, 2, 1)
    assert v.sessions.expected_seq[0] == 5 and len(out) == 1


def decoded(cfg, frames):
    return list(decode_records(cfg, [(0, f) for f in frames]))


def test_framing_order_entry_before_market_data_and_per_destination(cfg):
    v = opened(cfg)
    v.process(1, client(cfg, "S1").frame([enter_bytes("A1", "S", 100, "AAA", P100)]))
    v.process(2, client(cfg, "S2").frame([enter_bytes("A2", "S", 100, "AAA", P100)]))
    out = v.process(3, client(cfg, "S3").frame([enter_bytes("B1", "B", 300, "AAA", P100)]))
    d = decoded(cfg, out)
    # S3 accepted; per fill: owner's Executed, then S3's; then the ITCH packet
    assert [(x["frame"], x["stream"], x["session"], x["type"]) for x in d] == [
        (0, "ouch_out", "S3", "Accepted"), (1, "ouch_out", "S1", "Executed"),
        (2, "ouch_out", "S3", "Executed"), (3, "ouch_out", "S2", "Executed"),
        (4, "ouch_out", "S3", "Executed"),
        (5, "itch", "TCFEED0001", "OrderExecuted"), (5, "itch", "TCFEED0001",
                                                     "OrderExecuted"),
        (5, "itch", "TCFEED0001", "AddOrder")]
    # per-destination sequence numbers continue across packets
    s3 = [x["seq"] for x in d if x["session"] == "S3"]
    assert s3 == [2, 3, 4]                       # 1 was the start-of-day System Event


def test_packets_close_at_each_inbound_message(cfg):
    v = opened(cfg)
    c1 = client(cfg, "S1")
    out = v.process(1, c1.frame([enter_bytes(f"T{i}", "B", 10, "AAA", 990_000)
                                 for i in range(3)]))
    assert [x["type"] for x in decoded(cfg, out)] == ["Accepted", "AddOrder"] * 3
    assert len(out) == 6


def test_max_payload_splits_packets():
    cfg = small_config(venue={"max_payload": 150})
    v = Venue(cfg)
    frames = v.open(T0)
    d = decoded(cfg, frames)
    itch_frames = sorted({x["frame"] for x in d if x["stream"] == "itch"})
    # 7 opening messages: 12, 39, 25, 39, 25, 12, 12 bytes (+2 each) in 150-byte packets
    per_frame = [[x["type"] for x in d if x["frame"] == f] for f in itch_frames]
    assert per_frame == [["ItchSystemEvent", "StockDirectory", "StockTradingAction",
                          "StockDirectory"], ["StockTradingAction", "ItchSystemEvent",
                                              "ItchSystemEvent"]]
    assert [x["seq"] for x in d if x["stream"] == "itch"] == list(range(1, 8))
    for f in frames:
        payload_len = struct.unpack("!H", f[UDP_OFF + 4:UDP_OFF + 6])[0] - UDP.size
        assert payload_len <= 150


def test_every_output_frame_has_valid_headers(cfg):
    v = opened(cfg)
    c1 = client(cfg, "S1")
    frames = v.process(1, c1.frame([enter_bytes("T1", "B", 100, "AAA", 990_000)]))
    frames += v.close(2)
    for f in frames:
        assert len(f) >= 60
        reason, dgram = parse_udp_frame(f, mac=None, ip=None, port=None)
        assert reason is None
        ip = IPV4.unpack(f, IP)
        assert ip.ttl == 64 and ip.identification == 0 and ip.flags_fragment == 0x4000
        assert ip.src == cfg.ip and UDP.unpack(f, UDP_OFF).checksum != 0
    last = decoded(cfg, frames[-1:])[0]
    assert last["type"] == "EndOfSession" and last["seq"] == 12   # 7 + A + 3 = 11 sent


def test_feed_destination_follows_configuration():
    cfg = small_config(feed={"ip": "10.9.9.9", "mac": "02:99:00:00:00:01", "port": 7777})
    frames = Venue(cfg).open(T0)
    itch = [f for f in frames if struct.unpack("!H", f[UDP_OFF + 2:UDP_OFF + 4])[0] == 7777]
    assert itch and itch[0][:6] == bytes.fromhex("029900000001")
    assert IPV4.unpack(itch[0], IP).dst == 0x0A090909


def test_run_records_timestamps_and_empty_input(cfg):
    assert list(run_records(cfg, [])) == []
    recs = [(T0 + 5, good_frame(cfg)), (T0 + 9, client(cfg, "S1").frame([]))]
    out = list(run_records(cfg, recs))
    assert {ts for ts, _ in out} == {T0 + 5, T0 + 9}
    d = decoded(cfg, [f for _, f in out])
    assert d[0]["type"] == "SystemEvent" and d[0]["timestamp"] == (T0 + 5) % 86_400_000_000_000
    assert d[-1]["type"] == "EndOfSession"


def test_loopback_mode(cfg):
    c1 = client(cfg, "S2")
    recs = [(T0, c1.frame([enter_bytes("L1", "T", 7, "BBB", 12345, tif=3, display="Q"),
                           cancel_bytes("L1"), enter_bytes("L2", "B", 1, "ZZZ", 0)]))]
    v = Venue(cfg, "loopback")
    d = decoded(cfg, [f for _, f in run_records(cfg, recs, venue=v)])
    assert [(x["type"], x.get("order_ref")) for x in d] == [
        ("Accepted", 1), ("AddOrder", 1), ("Accepted", 2), ("AddOrder", 2)]
    assert d[0]["tif"] == 3 and d[0]["display"] == "Q" and d[0]["firm"] == ""
    assert (d[1]["locate"], d[1]["side"], d[3]["locate"]) == (2, "S", 0)
    assert v.all_counters()["loopback_ignored"] == 1


def test_decode_reports_errors_without_raising(cfg):
    out = list(decode_records(cfg, [(0, b"\x01\x02"), (1, good_frame(cfg)[:-3])]))
    assert [x["error"] for x in out] == ["truncated", "ip_length"]
    frame = ClientSession(cfg, cfg.sessions[0]).raw_frame(b"junk")
    bad_port = corrupt(frame, UDP_OFF + 3, 0x77)
    assert "error" in list(decode_records(cfg, [(0, bad_port)]))[0]


def test_inbound_decoder_table():
    for layout in ouch.INBOUND.values():
        raw = layout.pack(layout.record(*(0 if f.kind == "u" else " " for f in layout.fields)))
        assert ouch.decode_inbound(raw)[1] is not None
        assert ouch.decode_inbound(raw + b" ")[0] == "bad_length"
        assert ouch.decode_inbound(raw[:-1])[0] == "bad_length"
    assert ouch.decode_inbound(b"")[0] == "bad_length"
    assert ouch.decode_inbound(b"A" * 66)[0] == "unknown_type"     # outbound type inbound
