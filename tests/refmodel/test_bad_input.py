"""Bad input never raises and never corrupts the book (docs/protocol.md 1-3).

Random bytes, mutated and truncated valid frames and hostile message bodies go
through the whole pipeline; every frame is accounted for by exactly one
outcome and a dropped frame leaves the book as it was.
"""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tickcore.refmodel import ouch
from tickcore.refmodel.client import ClientSession
from tickcore.refmodel.venue import Venue

from ..harness import T0, enter_bytes, small_config

CFG = small_config()
FRAME_DROPS = ("truncated", "mac_filter", "not_ipv4", "ip_header", "ip_length",
               "ip_checksum", "ip_fragment", "not_udp", "ip_filter", "udp_length",
               "port_filter", "udp_checksum", "session_truncated", "session_malformed",
               "unknown_session")


def snapshot(v):
    pool = v.core.book.pool
    return (tuple((s, pool.token[s], pool.leaves[s], pool.price[s]) for sym in CFG.symbols
                  for s in v.core.book.walk(sym.index)), v.core.next_ref, v.core.next_match)


def seeded_venue():
    v = Venue(CFG)
    v.open(T0)
    c = ClientSession(CFG, CFG.sessions[1])
    for i, price in enumerate((990_000, 995_000, 1_005_000)):
        v.process(T0 + i, c.frame([enter_bytes(f"R{i}", "B" if price < 1_000_000 else "S",
                                               100, "AAA", price)]))
    return v, c


def frame_outcomes(v):
    c = v.all_counters()
    return sum(c["drop_" + r] for r in FRAME_DROPS) + c["heartbeats"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data):
    v, _ = seeded_venue()
    before = snapshot(v)
    assert v.process(T0 + 10, data) == []
    assert frame_outcomes(v) == 1 and snapshot(v) == before


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 6))
def test_mutated_valid_frames(seed, flips):
    rng = random.Random(seed)
    v, c = seeded_venue()
    msg = rng.choice([enter_bytes("NEW", "S", 50, "AAA", 990_000),
                      ouch.CANCEL_ORDER.build(token="R0", shares=0),
                      ouch.REPLACE_ORDER.build(existing_token="R1", replacement_token="R9",
                                               shares=10, price=999_900, tif=99999,
                                               display="Y", iso="N", min_qty=0)])
    frame = bytearray(c.frame([msg], seq=c.next_seq))
    for _ in range(flips):
        op = rng.random()
        if op < 0.6:
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        elif op < 0.8:
            del frame[rng.randrange(len(frame)):]
            if not frame:
                break
        else:
            frame[rng.randrange(len(frame)):rng.randrange(len(frame))] = rng.randbytes(3)
    before = snapshot(v)
    msgs_before = v.all_counters()["messages_in"]
    v.process(T0 + 10, bytes(frame))
    c = v.all_counters()
    if c["messages_in"] == msgs_before:       # not acted on: nothing may have changed
        assert snapshot(v) == before, f"seed {seed}"
    outcomes = frame_outcomes(v) + c["messages_in"] - msgs_before + sum(
        c["drop_" + r] for r in ("seq_duplicate", "seq_gap", "unknown_type", "bad_length"))
    assert outcomes >= 1, f"seed {seed}: frame vanished without a counted outcome"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=5))
def test_hostile_message_blocks(blocks):
    v, c = seeded_venue()
    v.process(T0 + 10, c.frame(blocks))
    counted = v.all_counters()
    assert counted["messages_in"] + counted["drop_unknown_type"] + \
        counted["drop_bad_length"] == len(blocks) + 3


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([ouch.ENTER_ORDER, ouch.REPLACE_ORDER, ouch.CANCEL_ORDER,
                        ouch.MASS_CANCEL, ouch.KILL_SWITCH]), st.data())
def test_random_field_values_in_well_formed_messages(layout, data):
    """Any value in any field of a right-length message: defined outcome, no raise."""
    raw = bytearray(layout.type_code.encode() + data.draw(st.binary(
        min_size=layout.size - 1, max_size=layout.size - 1)))
    v, c = seeded_venue()
    out = v.process(T0 + 10, c.frame([bytes(raw)]))
    assert v.all_counters()["messages_in"] == 4
    assert isinstance(out, list)


def test_zero_and_huge_quantities_and_prices():
    v, c = seeded_venue()
    before = snapshot(v)
    for shares, price in ((0, 990_000), (0xFFFFFFFF, 990_000), (100, 0),
                          (100, 2_147_483_600), (100, 100)):
        v.process(T0 + 20, c.frame([enter_bytes("Z", "B", shares, "AAA", price)]))
    counted = v.all_counters()
    assert (counted["reject_zero_shares"], counted["reject_max_qty"],
            counted["reject_invalid_price"], counted["reject_price_band"]) == (1, 1, 1, 2)
    assert snapshot(v)[0] == before[0]
