"""Differential tests: the fast engine against refmodel, byte for byte.

Every comparison runs the same frames through refmodel.venue and the fast
engine and demands identical output frames (bytes and timestamps) and
identical counters.  A mismatch reports the seed and the first differing
frame decoded on both sides.
"""

import itertools
import os
import random

import pytest

from tickcore.host.fast.engine import FastEngine
from tickcore.host.gen import FlowGenerator, GenOptions
from tickcore.refmodel import moldudp64, ouch
from tickcore.refmodel.client import ClientSession
from tickcore.refmodel.config import STP_MODES, load_config
from tickcore.refmodel.decode import decode_frame
from tickcore.refmodel.venue import Venue, run_records

from ..harness import T0, enter_bytes, small_config
from ..refmodel.test_properties import Harness, config, op_bytes, random_op

SOAK = os.environ.get("TICKCORE_SOAK") == "full"


def assert_engines_agree(cfg, records, mode="match", label=""):
    venue = Venue(cfg, mode)
    expected = list(run_records(cfg, records, venue=venue))
    fast = FastEngine(cfg, mode, out_bytes=1 << 20)     # small: exercises draining
    got = fast.run(records)
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            ours = list(decode_frame(cfg, i, *want))
            theirs = list(decode_frame(cfg, i, *have))
            pytest.fail(f"{label}: output frame {i} differs\n refmodel: {ours}\n fast:     "
                        f"{theirs}\n refmodel bytes {want[1].hex()}\n fast bytes     "
                        f"{have[1].hex()}")
    assert len(got) == len(expected), f"{label}: {len(got)} frames, refmodel {len(expected)}"
    assert fast.counters() == venue.all_counters(), label
    if mode == "match":
        book = venue.core.book
        assert fast.top_of_book() == {
            sym.stock.rstrip(): {"bid": book.top(sym.index, 0), "ask": book.top(sym.index, 1)}
            for sym in cfg.symbols}, label
    return len(records)


@pytest.mark.parametrize("seed", range(5))
def test_generated_flows(seed):
    """5 seeds x 22 000 messages = 110 000 messages in CI (TICKCORE_SOAK=full: 10x)."""
    cfg = load_config()
    n = 220_000 if SOAK else 22_000
    records = list(FlowGenerator(cfg, GenOptions(seed=100 + seed, orders=n,
                                                 malformed=0.02)).frames())
    assert_engines_agree(cfg, records, label=f"seed {100 + seed}")


def test_generated_flow_loopback_mode():
    cfg = load_config()
    records = list(FlowGenerator(cfg, GenOptions(seed=7, orders=5000, malformed=0.05)).frames())
    assert_engines_agree(cfg, records, "loopback", label="loopback seed 7")


def test_tight_capacity_and_every_stp_mode():
    for stp in STP_MODES:
        cfg = load_config({
            "capacity": {"orders": 64, "levels_per_side": 3, "token_map_buckets": 16,
                          "token_map_ways": 2},
            "firms": [{"firm": f, "stp": stp} for f in ("FRMA", "FRMB", "FRMC", "FRMD")]
            + [{"firm": "ADMN", "stp": "none"}],
            "risk": {"rate_limit": 30, "rate_window_log2_ns": 20},
            "venue": {"max_payload": 200},
        })
        records = list(FlowGenerator(cfg, GenOptions(seed=3, orders=6000, symbols=2,
                                                     malformed=0.03)).frames())
        assert_engines_agree(cfg, records, label=f"stp {stp}")


def _frames_from_ops(cfg, ops):
    clients = {s.name.strip(): ClientSession(cfg, s) for s in cfg.sessions}
    return [(T0 + 1000 * i, clients[session].frame([raw]))
            for i, (session, raw) in enumerate(op_bytes(op) for op in ops)]


@pytest.mark.parametrize("seed", range(8))
def test_adversarial_op_streams(seed):
    """The property tests' op language (kills, mass cancels, tiny capacity, every
    reject), through frames, in both engines."""
    rng = random.Random(seed)
    cfg = config(rng.choice(STP_MODES), rng.choice(STP_MODES),
                 orders=rng.choice([4, 24, 200]), levels=rng.choice([1, 2, 16]),
                 buckets=rng.choice([1, 8, 64]), ways=rng.choice([1, 2, 4]))
    h = Harness(cfg)
    counter = itertools.count()
    ops = []
    for _ in range(2000):
        op = random_op(rng, h, lambda: f"N{next(counter)}")
        ops.append(op)
        h.send(*op_bytes(op))
    assert_engines_agree(cfg, _frames_from_ops(cfg, ops), label=f"ops seed {seed}")


@pytest.mark.parametrize("seed", range(4))
def test_damaged_frames(seed):
    """Random corruption of valid frames: every drop reason, identically counted."""
    rng = random.Random(seed)
    cfg = small_config()
    base = list(FlowGenerator(load_config(), GenOptions(seed=seed, orders=1)).frames())
    clients = [ClientSession(cfg, s) for s in cfg.sessions]
    records = []
    for i in range(3000):
        c = rng.choice(clients)
        price = 1_000_000 + 100 * rng.randint(-5, 5)
        frame = bytearray(c.frame([enter_bytes(f"T{i}", rng.choice("BS"), rng.randint(1, 300),
                                               "AAA", price)], seq=c.next_seq))
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                kind = rng.random()
                if kind < 0.6:
                    frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
                elif kind < 0.8 and len(frame) > 1:
                    del frame[rng.randrange(1, len(frame)):]
                else:
                    frame += rng.randbytes(rng.randint(1, 8))
        else:
            c.next_seq += 1
        records.append((T0 + i, bytes(frame)))
    records += base
    assert_engines_agree(cfg, records, label=f"damage seed {seed}")


def test_empty_input_and_single_frame():
    cfg = load_config()
    assert len(FastEngine(cfg).run([])) == 0
    records = list(FlowGenerator(cfg, GenOptions(seed=1, orders=1)).frames())
    assert_engines_agree(cfg, records[:1], label="single frame")


def test_per_message_core_matches_refmodel_record_for_record():
    """FastCore (the live venue's software engine) against MatchingCore."""
    from tickcore.host.fast.message_core import FastCore
    from tickcore.refmodel.matcher import MatchingCore
    rng = random.Random(5)
    cfg = config("cancel_oldest", "cancel_both", orders=30, levels=3, buckets=8, ways=2)
    h = Harness(cfg)
    ref, fast = MatchingCore(cfg), FastCore(cfg)
    for core in (ref, fast):
        core.open(T0)
    assert ref.take() == fast.take()
    counter = itertools.count()
    for i in range(3000):
        op = random_op(rng, h, lambda: f"N{next(counter)}")
        session, raw = op_bytes(op)
        h.send(session, raw)
        _, msg = ouch.decode_inbound(raw)
        for core in (ref, fast):
            core.handle(h.sid(session), T0 + i, msg)
        assert ref.take() == fast.take(), f"message {i}: {op}"
    for core in (ref, fast):
        core.close(T0 + 3001)
    assert ref.take() == fast.take()
    assert ref.counters == fast.counters


def test_raw_path_matches_refmodel_packed_byte_for_byte():
    """FastCore's bytes interface (handle_raw / take_raw, and process_raw, the live
    venue's hot path) against MatchingCore's records packed with the refmodel layouts,
    on a random op stream in which many messages stage several records."""
    from tickcore.host.fast.message_core import FastCore
    from tickcore.refmodel.matcher import MatchingCore

    def packed(core):
        oe, md = core.take()
        return ([(s, rec.layout.pack(rec)) for s, rec in oe],
                [rec.layout.pack(rec) for rec in md])

    rng = random.Random(11)
    cfg = config("cancel_newest", "cancel_oldest", orders=40, levels=4, buckets=8, ways=2)
    h = Harness(cfg)
    ref, fast = MatchingCore(cfg), FastCore(cfg)
    ref.open(T0)
    fast.open(T0)
    assert packed(ref) == fast.take_raw()
    counter = itertools.count()
    multi = 0
    for i in range(3000):
        op = random_op(rng, h, lambda: f"R{next(counter)}")
        session, raw = op_bytes(op)
        h.send(session, raw)
        _, msg = ouch.decode_inbound(raw)
        ref.handle(h.sid(session), T0 + 7 * i, msg)
        if i & 1:
            got = fast.process_raw(h.sid(session), T0 + 7 * i, raw)
        else:
            fast.handle_raw(h.sid(session), T0 + 7 * i, raw)
            got = fast.take_raw()
        want = packed(ref)
        assert want == got, f"message {i}: {op}"
        multi += len(got[0]) > 1 or len(got[1]) > 1
    assert multi > 20                    # messages that staged several records
    ref.close(T0 + 30_000)
    fast.close(T0 + 30_000)
    assert packed(ref) == fast.take_raw()
    assert fast.take_raw() == ([], [])
    assert ref.counters == fast.counters


def test_foundation_adversarial_frames():
    """Every hand-made bad frame and session-layer case of the foundation tests
    (tests/refmodel/test_venue.py), in one flow, through both engines."""
    from ..refmodel import test_venue as tv
    cfg = small_config()
    good = tv.good_frame(cfg, seq=1)
    frames = [make(good) for make, _ in tv.BAD_FRAMES]
    c1 = ClientSession(cfg, cfg.session_by_name("S1".ljust(10)))
    msg = ouch.CANCEL_ORDER.build(token="X", shares=0)
    frames += [
        c1.raw_frame(b"S1".ljust(10) + bytes(5)),
        c1.raw_frame(moldudp64.pack_packet("S1", 1, [msg])[:-1]),
        c1.raw_frame(moldudp64.pack_packet("S1", 1, [msg]) + b"x"),
        c1.raw_frame(moldudp64.end_of_session("S1", 1)),
        c1.raw_frame(moldudp64.pack_packet("NOBODY", 1, [msg])),
        c1.frame([]),
        c1.frame([b"Q123", b"", enter_bytes("A", "B", 1, "AAA", 1_000_000)[:-1], msg]),
        c1.frame([msg], seq=1), c1.frame([msg], seq=99), c1.frame([msg], seq=2**64 - 1),
        good + bytes(30),
    ]
    assert_engines_agree(cfg, [(T0 + i, f) for i, f in enumerate(frames)],
                         label="foundation adversarial frames")



def test_compiled_crc_is_zlib_crc32():
    """The token map's bucket hash in the compiled engine is CRC-32 as refmodel's."""
    import zlib

    import numpy as np

    from tickcore.host.fast.wire import crc32_token
    rng = random.Random(9)
    for _ in range(5000):
        session, token = rng.randrange(64), rng.randbytes(14)
        hi, lo = int.from_bytes(token[:8], "big"), int.from_bytes(token[8:], "big")
        assert crc32_token(session, np.uint64(hi), np.uint64(lo)) == \
            zlib.crc32(bytes([session]) + token)
