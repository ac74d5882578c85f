"""Ingress -> Session -> OuchDecoder against refmodel's parse_udp_frame,
SessionLayer.accept and decode_inbound: damaged session headers, block
structures, sequence numbers, unknown types, bad lengths; back-pressure on the
decoder output; both widths."""

import random
from collections import Counter

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from hdl_helpers import struct_to_record

from tickcore.hdl.ingress import Ingress
from tickcore.hdl.layouts import INBOUND_LAYOUTS
from tickcore.hdl.ouch_decoder import OuchDecoder
from tickcore.hdl.session import Session, session_bits
from tickcore.refmodel.config import load_config
from tickcore.refmodel.packet import parse_udp_frame
from tickcore.refmodel.session import SessionLayer
from tickcore.sim.corpus import Corpus
from tickcore.sim.streams import StreamDriver, StreamSink, frame_beats

CFG = load_config()


def expected(frames):
    counts = Counter()
    layer = SessionLayer(CFG, counts)
    out = []
    for tag, frame in enumerate(frames):
        counts["frames_in"] += 1
        reason, dgram = parse_udp_frame(frame, mac=CFG.mac, ip=CFG.ip, port=CFG.oe_port)
        if reason:
            counts["drop_" + reason] += 1
            continue
        for session, msg in layer.accept(dgram.payload):
            out.append((tag, session, msg))
    return out, {k: v for k, v in counts.items() if v}


@pytest.mark.parametrize("width", [1, 8])
def test_session_and_decoder(width):
    seed = 40 + width
    corpus = Corpus(CFG, seed, damage=0.6)
    frames = [corpus.frame() for _ in range(80 if width == 1 else 200)]
    want, want_counts = expected(frames)

    m = Module()
    m.submodules.ing = ing = Ingress(mac=CFG.mac, ip=CFG.ip, port=CFG.oe_port, width=width)
    m.submodules.ses = ses = Session(session_names=[s.name for s in CFG.sessions],
                                     slots=ing.slots, slot_bytes=ing.slot_bytes,
                                     read_width=ing.read_width,
                                     read_latency=ing.read_latency)
    m.submodules.dec = dec = OuchDecoder(session_bits=session_bits(len(CFG.sessions)))
    wiring.connect(m, ing.o, ses.i)
    wiring.connect(m, ing.v, ses.v)
    wiring.connect(m, ing.rd, ses.rd)
    wiring.connect(m, ses.o, dec.i)
    sim = Simulator(m)
    sim.add_clock(1e-8)
    sink = StreamSink(dec.o, rng=random.Random(seed), stall=0.5)
    counts = {}

    async def source(ctx):
        drv = StreamDriver(ing.i, rng=random.Random(seed + 1), idle=0.1)
        for tag, frame in enumerate(frames):
            for beat in frame_beats(frame, width, ts=tag, tag=tag):
                await drv.send(ctx, beat)
        quiet = 0
        while quiet < 50:
            await ctx.tick()
            busy = not ctx.get(ing.idle) or not ctx.get(ses.idle) or ctx.get(dec.o.valid)
            quiet = 0 if busy else quiet + 1
        for block in (ing, ses, dec):
            c = ctx.get(block.counters)
            counts.update({name: c[name] for name, _ in c.shape() if c[name]})

    sim.add_testbench(source)
    sim.add_testbench(sink.run, background=True)
    sim.run()
    got = []
    for item in sink.items:
        lay = INBOUND_LAYOUTS[item.kind.value if hasattr(item.kind, "value") else item.kind]
        got.append((item.tag, item.session, struct_to_record(lay, item.body[lay.name])))
    assert got == want, f"seed {seed}"
    assert counts == want_counts, f"seed {seed}"
