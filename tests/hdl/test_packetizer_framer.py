"""MoldUDP64 packetizer + UDP framer against refmodel moldudp64.Packetizer and
packet.build_udp_frame: multi-message packets, destination changes, the
max_payload limit, per-destination sequence numbers, back-pressure."""

import random
import struct

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from tickcore.hdl.loopback_top import destinations
from tickcore.hdl.packetizer import Packetizer
from tickcore.hdl.udp_framer import UdpFramer
from tickcore.refmodel import moldudp64
from tickcore.refmodel.config import load_config
from tickcore.refmodel.packet import build_udp_frame
from tickcore.sim.streams import StreamDriver, StreamSink, frame_beats

CFG = load_config()


def expected(cfg, groups, max_payload):
    names, addrs = destinations(cfg)
    pk = moldudp64.Packetizer(max_payload)
    out = []
    for group in groups:
        for dest, msg in group:
            pk.add(dest, names[dest], msg)
        for dest, payload in pk.flush():
            mac, ip, sport, dport = addrs[dest]
            out.append(build_udp_frame(src_mac=cfg.mac, dst_mac=mac, src_ip=cfg.ip, dst_ip=ip,
                                       src_port=sport, dst_port=dport, payload=payload,
                                       ttl=cfg.ttl))
    return out


@pytest.mark.parametrize("width", [1, 8])
@pytest.mark.parametrize("max_payload", [120, 400, 1472])
def test_packetizer_framer(width, max_payload):
    seed = width * 10000 + max_payload
    rng = random.Random(seed)
    names, addrs = destinations(CFG)
    groups = []
    for _ in range(25 if width == 1 else 60):
        group = []
        for _ in range(rng.choice((1, 1, 2, 3, 6, 12))):
            dest = rng.choice((rng.randrange(len(names)), len(names) - 1))
            if group and rng.random() < 0.6:
                dest = group[-1][0]
            size = rng.choice((1, 11, 36, 66, rng.randrange(1, 97)))
            group.append((dest, bytes(rng.randrange(256) for _ in range(size))))
        groups.append(group)
    want = expected(CFG, groups, max_payload)

    m = Module()
    m.submodules.pkt = pkt = Packetizer(names=names, max_payload=max_payload, width=width,
                                        dest_bits=4)
    m.submodules.fr = fr = UdpFramer(src_mac=CFG.mac, src_ip=CFG.ip, ttl=CFG.ttl, dests=addrs,
                                     width=width, dest_bits=4)
    wiring.connect(m, pkt.o, fr.i)
    sim = Simulator(m)
    sim.add_clock(1e-8)
    sink = StreamSink(fr.o, rng=random.Random(seed), stall=0.3)

    async def source(ctx):
        drv = StreamDriver(pkt.i, rng=random.Random(seed + 1), idle=0.1)
        for n, group in enumerate(groups):
            for k, (dest, msg) in enumerate(group):
                block = struct.pack(">H", len(msg)) + msg
                for beat in frame_beats(block, width, length=len(block), dest=dest,
                                        flush=int(k == len(group) - 1), tag=n):
                    await drv.send(ctx, beat)
        quiet = 0
        while quiet < 20:                                          # drain every packet
            await ctx.tick()
            quiet = quiet + 1 if ctx.get(pkt.idle) and not ctx.get(fr.o.valid) else 0

    sim.add_testbench(source)
    sim.add_testbench(sink.run, background=True)
    sim.run()
    got, cur = [], bytearray()
    for b in sink.items:
        if b.first:
            cur = bytearray()
        cur += bytes(list(b.data)[:b.nbytes])
        if b.last:
            got.append(bytes(cur))
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        assert a == b, f"seed {seed}: frame {i}\n{a.hex()}\n{b.hex()}"
    assert len(got) == len(want), f"seed {seed}: {len(got)} frames, refmodel {len(want)}"
