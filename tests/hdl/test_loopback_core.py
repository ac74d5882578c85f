"""LoopbackCore against refmodel.loopback.LoopbackCore on random decoded messages
of every inbound type (back-pressure on both outputs), and the whole loopback top
under amaranth.sim against Venue(cfg, "loopback") with idle gaps and output
back-pressure, at both widths."""

import random

import pytest
from amaranth.sim import Simulator
from hdl_helpers import random_record, record_to_struct, struct_to_record

from tickcore.hdl.layouts import INBOUND_LAYOUTS, ITCH_LAYOUTS, OUCH_OUT_LAYOUTS
from tickcore.hdl.loopback import LoopbackCore
from tickcore.host.gen import FlowGenerator, GenOptions
from tickcore.refmodel import itch, loopback, ouch
from tickcore.refmodel.config import load_config
from tickcore.refmodel.venue import Venue, run_records
from tickcore.sim.pysim import run_loopback_pysim
from tickcore.sim.streams import StreamDriver, StreamSink

CFG = load_config()


def test_loopback_core_against_refmodel():
    seed = 5
    rng = random.Random(seed)
    ref = loopback.LoopbackCore(CFG)
    items, want_oe, want_md = [], [], []
    stocks = [s.stock for s in CFG.symbols] + ["NOPE    "]
    for n in range(120):
        k = rng.choice((0, 0, 0, 1, 2, 3, 4))
        lay = INBOUND_LAYOUTS[k]
        rec = random_record(lay, rng)
        if lay is ouch.ENTER_ORDER:
            rec = rec._replace(stock=rng.choice(stocks), side=rng.choice("BSTEX"))
        session = rng.randrange(len(CFG.sessions))
        ts = rng.randrange(1 << 62)          # since the epoch; the gateware gets the time of day
        items.append({"kind": k, "session": session, "ts": itch.ns_since_midnight(ts),
                      "tag": n,
                      "body": {lay.name: record_to_struct(lay, rec)}})
        ref.handle(session, ts, rec)
        oe, md = ref.take()
        want_oe += [(s, r) for s, r in oe]
        want_md += md

    dut = LoopbackCore(session_bits=4, stocks=[s.stock for s in CFG.symbols])
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    oe_sink = StreamSink(dut.oe, rng=random.Random(seed + 1), stall=0.5)
    md_sink = StreamSink(dut.md, rng=random.Random(seed + 2), stall=0.3)
    counts = {}

    async def source(ctx):
        drv = StreamDriver(dut.i, rng=random.Random(seed + 3), idle=0.2)
        for item in items:
            await drv.send(ctx, item)
        for _ in range(50):
            await ctx.tick()
        c = ctx.get(dut.counters)
        counts.update({name: c[name] for name, _ in c.shape()})

    sim.add_testbench(source)
    sim.add_testbench(oe_sink.run, background=True)
    sim.add_testbench(md_sink.run, background=True)
    sim.run()
    acc = ouch.ACCEPTED
    got_oe = [(x.session, struct_to_record(acc, x.body[acc.name])) for x in oe_sink.items]
    assert all(OUCH_OUT_LAYOUTS[int(x.kind.value if hasattr(x.kind, "value") else x.kind)]
               is acc for x in oe_sink.items)
    add = ITCH_LAYOUTS[[lay.name for lay in ITCH_LAYOUTS].index("AddOrder")]
    got_md = [struct_to_record(add, x.body[add.name]) for x in md_sink.items]
    assert got_oe == want_oe, f"seed {seed}"
    assert got_md == want_md, f"seed {seed}"
    assert counts == {"accepted": ref.counters["accepted"],
                      "loopback_ignored": ref.counters["loopback_ignored"]}


@pytest.mark.parametrize("width", [1, 8])
def test_loopback_top_pysim(width):
    seed = 60 + width
    records = list(FlowGenerator(CFG, GenOptions(seed=seed, orders=25 if width == 1 else 80,
                                                 malformed=0.1)).frames())
    venue = Venue(CFG, "loopback")
    want = list(run_records(CFG, records, venue=venue))
    got, counters, _ = run_loopback_pysim(CFG, records, width=width, seed=seed, idle=0.1,
                                          stall=0.3)
    assert got == want, f"seed {seed}"
    assert {k: v for k, v in counters.items() if v} == \
        {k: v for k, v in venue.all_counters().items() if v}, f"seed {seed}"
