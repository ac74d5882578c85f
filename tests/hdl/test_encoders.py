"""OUCH and ITCH encoders against refmodel Layout.pack: every outbound layout,
random field values, both widths, back-pressure on the output."""

import random
import struct

import pytest
from amaranth.sim import Simulator
from hdl_helpers import random_record, record_to_struct

from tickcore.hdl.itch_encoder import ItchEncoder
from tickcore.hdl.layouts import ITCH_LAYOUTS, OUCH_OUT_LAYOUTS
from tickcore.hdl.ouch_encoder import OuchEncoder
from tickcore.sim.streams import StreamDriver, StreamSink


def run(dut, items, layouts, width, seed, stall):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sink = StreamSink(dut.o, rng=random.Random(seed), stall=stall)
    done = []

    async def source(ctx):
        drv = StreamDriver(dut.i, rng=random.Random(seed + 1), idle=0.2)
        for payload in items:
            await drv.send(ctx, payload)
        for _ in range(200):
            await ctx.tick()
        done.append(1)

    sim.add_testbench(source)
    sim.add_testbench(sink.run, background=True)
    sim.run()
    blocks, cur = [], bytearray()
    for b in sink.items:
        if b.first:
            cur = bytearray()
            assert b.length and b.nbytes
        cur += bytes(list(b.data)[:b.nbytes])
        if b.last:
            blocks.append((bytes(cur), b.dest, b.flush, b.tag, b.length))
    return blocks


@pytest.mark.parametrize("width", [1, 8])
@pytest.mark.parametrize("encoder", ["ouch", "itch"])
def test_encoder_every_layout(encoder, width):
    seed = width * 10 + (encoder == "itch")
    rng = random.Random(seed)
    layouts = OUCH_OUT_LAYOUTS if encoder == "ouch" else ITCH_LAYOUTS
    if encoder == "ouch":
        dut = OuchEncoder(session_bits=4, width=width, dest_bits=4)
    else:
        dut = ItchEncoder(width=width, dest_bits=4, feed_dest=9)
    items, want = [], []
    for n in range(4 * len(layouts)):
        k = rng.randrange(len(layouts))
        lay = layouts[k]
        rec = random_record(lay, rng)
        session = rng.randrange(9)
        flush = rng.randrange(2)
        payload = {"kind": k, "flush": flush, "tag": n,
                   "body": {lay.name: record_to_struct(lay, rec)}}
        if encoder == "ouch":
            payload["session"] = session
        items.append(payload)
        raw = lay.pack(rec)
        want.append((struct.pack(">H", len(raw)) + raw, session if encoder == "ouch" else 9,
                     flush, n, 2 + len(raw)))
    got = run(dut, items, layouts, width, seed, stall=0.5)
    assert got == want, f"seed {seed}"
