"""Ingress against refmodel.packet.parse_udp_frame: random and damaged frames,
idle gaps, back-pressure, back-to-back minimum-size frames, both widths."""

import random
from collections import Counter

import pytest
from amaranth.sim import Simulator

from tickcore.hdl.ingress import HDR, Ingress
from tickcore.refmodel.config import load_config
from tickcore.refmodel.packet import parse_udp_frame
from tickcore.sim.corpus import Corpus
from tickcore.sim.streams import StreamDriver, frame_beats

CFG = load_config()


def run_ingress(frames, width, *, seed, idle=0.0, hold=0.0):
    dut = Ingress(mac=CFG.mac, ip=CFG.ip, port=CFG.oe_port, width=width)
    rng = random.Random(seed)
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    done = []

    async def source(ctx):
        drv = StreamDriver(dut.i, rng=random.Random(seed + 1), idle=idle)
        for tag, frame in enumerate(frames):
            for beat in frame_beats(frame, width, ts=tag * 7, tag=tag):
                await drv.send(ctx, beat)
        done.append(True)

    async def consumer(ctx):
        rw = dut.read_width
        while True:
            await ctx.tick()
            if not ctx.get(dut.o.valid):
                continue
            while hold and rng.random() < hold:
                await ctx.tick()
            desc = ctx.get(dut.o.payload)
            # the descriptor comes first; the verdict follows, in the same order
            while not ctx.get(dut.v.valid):
                await ctx.tick()
            ok = ctx.get(dut.v.payload.ok)
            ctx.set(dut.v.ready, 1)
            await ctx.tick()
            ctx.set(dut.v.ready, 0)
            if ok:
                base = desc.slot * dut.slot_bytes + HDR
                payload = bytearray()
                for off in range(0, desc.length, rw):
                    ctx.set(dut.rd.en, 1)
                    ctx.set(dut.rd.addr, base + off)
                    await ctx.tick()
                    ctx.set(dut.rd.en, 0)
                    for _ in range(dut.read_latency - 1):
                        await ctx.tick()
                    payload += bytes(ctx.get(dut.rd.data))
                ctx.set(dut.rd.slot, desc.slot)
                head = bytes(ctx.get(dut.rd.head))
                n = min(len(head), desc.length)
                assert head[:n] == payload[:n], "captured head differs from the buffer"
                got.append((desc.tag, desc.ts, bytes(payload[:desc.length])))
            ctx.set(dut.o.ready, 1)
            await ctx.tick()
            ctx.set(dut.o.ready, 0)

    async def watchdog(ctx):
        while not done:
            await ctx.tick()
        quiet = 0
        while quiet < 20:                   # every frame released by the consumer
            await ctx.tick()
            quiet = quiet + 1 if ctx.get(dut.idle) else 0
        counters = ctx.get(dut.counters)
        got.append(("counters", {name: counters[name] for name, _ in counters.shape()}))

    sim.add_testbench(source)
    sim.add_testbench(consumer, background=True)
    sim.add_testbench(watchdog)
    sim.run()
    return got


def expected(frames):
    out, counts = [], Counter()
    for tag, frame in enumerate(frames):
        counts["frames_in"] += 1
        reason, dgram = parse_udp_frame(frame, mac=CFG.mac, ip=CFG.ip, port=CFG.oe_port)
        if reason:
            counts["drop_" + reason] += 1
        else:
            out.append((tag, tag * 7, dgram.payload))
    return out, counts


@pytest.mark.parametrize("width", [1, 8])
@pytest.mark.parametrize("seed", [1, 2])
def test_ingress_random_damaged(width, seed):
    corpus = Corpus(CFG, seed, damage=0.7)
    frames = [corpus.frame() for _ in range(60 if width == 1 else 150)]
    got = run_ingress(frames, width, seed=seed, idle=0.2, hold=0.3)
    counters = got.pop()[1]
    want, counts = expected(frames)
    assert got == want, f"seed {seed}"
    assert {k: v for k, v in counters.items() if v} == dict(counts), f"seed {seed}"


@pytest.mark.parametrize("width", [1, 8])
def test_ingress_back_to_back_minimum_frames(width):
    corpus = Corpus(CFG, 9, damage=0.0)
    frames = []
    while len(frames) < 40:
        c = corpus.clients[len(frames) % len(corpus.clients)]
        frames.append(c.frame([]))               # heartbeats: 62-byte frames
    frames[7] = frames[7][:30]                   # and short runts in between
    frames[20] = frames[20][:13]
    got = run_ingress(frames, width, seed=3)
    counters = got.pop()[1]
    want, counts = expected(frames)
    assert got == want
    assert {k: v for k, v in counters.items() if v} == dict(counts)
