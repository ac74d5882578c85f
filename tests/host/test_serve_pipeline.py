"""The live venue's fast-path helpers against the plainer code they stand in for."""

import random

import pytest

from tickcore.host import soupbintcp as sb
from tickcore.host.serve_config import User, build_spec
from tickcore.host.serve_pipeline import (
    OUT_FEED,
    OUT_TCP,
    MoldFramer,
    Pipeline,
    inbound_drop,
    parse_packet,
)
from tickcore.refmodel import moldudp64, ouch


def test_parse_packet_is_refmodel_s():
    rng = random.Random(3)
    good = [moldudp64.pack_packet("S1", rng.randrange(1 << 40),
                                  [rng.randbytes(rng.randrange(60)) for _ in range(k)])
            for k in range(6)]
    cases = list(good) + [moldudp64.end_of_session("S1", 9), b"", bytes(19), bytes(20)]
    for _ in range(3000):
        p = bytearray(rng.choice(good))
        kind = rng.random()
        if kind < 0.4 and p:
            p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
        elif kind < 0.7:
            del p[rng.randrange(len(p) + 1):]
        else:
            p += rng.randbytes(rng.randint(1, 4))
        cases.append(bytes(p))
    for payload in cases:
        want = moldudp64.parse_packet(payload)
        got = parse_packet(payload)
        if want is None:
            assert got is None, payload.hex()
        else:
            header, messages = want
            assert got == (header.session, header.sequence, header.count, messages)


def test_mold_framer_frames_as_the_refmodel_packetizer():
    rng = random.Random(4)
    for max_payload in (40, 100, 1400):
        ref, ours = moldudp64.Packetizer(max_payload), MoldFramer(max_payload)
        for _ in range(500):
            dest = rng.choice(["A", "B", "LONGNAME10"])
            msgs = [rng.randbytes(rng.randint(1, 50)) for _ in range(rng.choice([1, 1, 2, 9]))]
            for m in msgs:
                ref.add(dest, dest, m)
            assert ours.frame(dest, dest, msgs) == ref.flush()
        assert ours.next_seq == ref.next_seq


def test_inbound_drop_is_decode_inbound_s():
    rng = random.Random(5)
    samples = [b""] + [bytes([t]) + rng.randbytes(n) for t in range(256) for n in (0, 18, 48)]
    samples += [ouch.CANCEL_ORDER.build(token="X", shares=0)]
    for raw in samples:
        assert inbound_drop(raw) == ouch.decode_inbound(raw)[0]


def test_both_engines_give_the_same_outputs():
    """The pipeline's bytes path (software engine) and records path (reference)."""
    users = [User("alice", "pw", None, "ouch42"), User("bob", "pw", None, "ouch50")]
    spec = build_spec(None, users)
    pipes = [Pipeline(spec, "reference"), Pipeline(spec, "software")]
    outs = [p.open(10**18) for p in pipes]
    assert outs[0] == outs[1]
    alice, bob = spec.session_names().index("alice"), spec.session_names().index("bob")
    rng = random.Random(6)
    from tickcore.host import ouch5
    lay = ouch5.LAYOUTS["ouch50"]
    for i in range(400):
        ts = 10**18 + 1000 * i
        price = 1_800_000 + 100 * rng.randint(-3, 3)
        side = rng.choice("BS")
        if rng.random() < 0.5:
            msg = ouch.ENTER_ORDER.build(
                token=f"A{i}", side=side, shares=rng.randint(1, 300), stock="AAPL",
                price=price, tif=99999, firm="", display="Y", capacity="A", iso="N",
                min_qty=0, cross_type="N", customer_type=" ")
            outs = [p.on_tcp(ts, alice, msg) for p in pipes]
        else:
            msg = lay["enter"].build(
                user_ref_num=i + 1, side=side, quantity=rng.randint(1, 300), symbol="AAPL",
                price=price, tif="0", display="Y", capacity="A", iso="N", cross_type="N",
                cl_ord_id=f"C{i}", appendage_length=0)
            outs = [p.on_tcp(ts, bob, msg) for p in pipes]
        assert outs[0] == outs[1], i
        assert any(k == OUT_TCP for k, _, _ in outs[0])
        assert any(k == OUT_FEED for k, _, _ in outs[0])
    closes = [p.close(10**18 + 10**9) for p in pipes]
    assert closes[0] == closes[1]
    assert pipes[0].streams == pipes[1].streams
    assert pipes[0].feed_messages == pipes[1].feed_messages
    assert pipes[0].all_counters() == pipes[1].all_counters()


@pytest.mark.parametrize("seed", range(3))
def test_packet_buffer_splits_as_packet_reader(seed):
    """PacketBuffer (reads into its own buffer) against PacketReader (fed bytes): the
    same packets and errors for one stream cut into reads at random points."""
    rng = random.Random(seed)
    limit = 60
    packets = []
    for _ in range(2000):
        r = rng.random()
        if r < 0.002:
            packets.append(b"\x00\x00")                              # empty packet
        elif r < 0.004:
            packets.append(sb.LENGTH.pack(limit + 1) + b"U" + bytes(limit))  # oversized
        else:
            packets.append(sb.pack(rng.choice(b"ULRO+").to_bytes(1, "big"),
                                   rng.randbytes(rng.randint(0, limit - 1))))
    stream = b"".join(packets)
    reader, buffer = sb.PacketReader(limit), sb.PacketBuffer(limit, size=256)
    pos = 0
    while pos < len(stream):
        view = buffer.get_buffer()
        n = min(len(view), rng.choice([1, 2, 3, 7, 50, 300]), len(stream) - pos)
        chunk = stream[pos:pos + n]
        view[:n] = chunk
        pos += n
        try:
            want = reader.feed(chunk)
        except sb.ProtocolError as exc:
            want = exc.reason
        try:
            got = buffer.advance(n)
        except sb.ProtocolError as exc:
            got = exc.reason
        assert got == want
        assert buffer.pending == reader.pending
