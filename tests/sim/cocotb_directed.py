"""Directed cocotb tests on the loopback top through the queue-style TB.

Run by tests/sim/test_cocotb_tb.py inside the simulator; every expectation is
asked of refmodel (Venue(cfg, "loopback")).
"""

import os

import cocotb

from tickcore.host.gen import FlowGenerator, GenOptions
from tickcore.refmodel.config import load_config
from tickcore.refmodel.pcap import read_pcap, write_pcap
from tickcore.refmodel.venue import Venue, run_records
from tickcore.sim.corpus import Corpus
from tickcore.sim.tb import TB, PcapSink, PcapSource

CFG = load_config()
SEED = int(os.environ.get("TICKCORE_SEED", "1"))


def reference(records):
    venue = Venue(CFG, "loopback")
    out = list(run_records(CFG, records, venue=venue))
    return out, {k: v for k, v in venue.all_counters().items() if v}


@cocotb.test()
async def queue_send_recv_with_backpressure(dut):
    records = list(FlowGenerator(CFG, GenOptions(seed=SEED, orders=40, malformed=0.1)).frames())
    records += list(Corpus(CFG, SEED).records(20, start_ns=records[-1][0]))
    want, want_counters = reference(records)
    tb = TB(dut, stall=0.4, idle=0.2, seed=SEED)
    await tb.start()
    for ts, frame in records:
        await tb.send(frame, ts)
    got = [await tb.recv() for _ in want]
    await tb.idle_wait()
    assert got == want, f"seed {SEED}"
    assert tb._out.empty(), f"seed {SEED}: frames beyond refmodel's"
    assert {k: v for k, v in tb.counters().items() if v} == want_counters, f"seed {SEED}"


@cocotb.test()
async def pcap_source_and_sink(dut):
    tmp = os.environ["TICKCORE_TMP"]
    records = list(FlowGenerator(CFG, GenOptions(seed=SEED + 1, orders=30)).frames())
    write_pcap(f"{tmp}/in.pcap", records)
    want, _ = reference(records)
    write_pcap(f"{tmp}/want.pcap", want)
    tb = TB(dut, seed=SEED + 1)
    await tb.start()
    sink = PcapSink(tb, f"{tmp}/out.pcap")
    await PcapSource(tb, f"{tmp}/in.pcap").run()
    await sink.drain()
    with open(f"{tmp}/out.pcap", "rb") as a, open(f"{tmp}/want.pcap", "rb") as b:
        assert a.read() == b.read(), f"seed {SEED + 1}"
    assert list(read_pcap(f"{tmp}/out.pcap")) == want
