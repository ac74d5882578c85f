"""Run the loopback top under `amaranth.sim` (Python simulator): slow, for
unit-sized runs and debugging; `sim.run.simulate` is the Verilator path."""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from tickcore.hdl.loopback_top import PacketLoopback
from tickcore.refmodel.itch import ns_since_midnight

from .streams import StreamDriver, StreamSink, frame_beats


def run_loopback_pysim(cfg, records, *, width=8, seed=0, idle=0.0, stall=0.0, vcd=None):
    """Returns (outputs [(ts, frame)], counters dict, cycles)."""
    records = list(records)
    dut = PacketLoopback(cfg, width=width)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sink = StreamSink(dut.o, rng=random.Random(seed + 1), stall=stall)
    state = {"sent": False, "cycles": 0}

    async def source(ctx):
        drv = StreamDriver(dut.i, rng=random.Random(seed), idle=idle)
        for tag, (ts, frame) in enumerate(records):
            for beat in frame_beats(frame, width, ts=ns_since_midnight(ts), tag=tag):
                await drv.send(ctx, beat)
        state["sent"] = True

    async def watch(ctx):
        quiet = 0
        while quiet < 20:
            await ctx.tick()
            state["cycles"] += 1
            quiet = quiet + 1 if state["sent"] and ctx.get(dut.idle) else 0
        c = ctx.get(dut.counters)
        state["counters"] = {name: c[name] for name, _ in c.shape()}

    sim.add_testbench(source)
    sim.add_testbench(sink.run, background=True)
    sim.add_testbench(watch)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    outputs, cur = [], bytearray()
    for beat in sink.items:
        if beat.first:
            cur = bytearray()
        cur += bytes(list(beat.data)[:beat.nbytes])
        if beat.last:
            outputs.append((records[beat.tag][0], bytes(cur)))
    return outputs, state["counters"], state["cycles"]
