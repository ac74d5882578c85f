"""The loopback top under cocotb + Verilator against refmodel's loopback venue.

Random generated flows (malformed frames included) and adversarial frames go
through `Venue(cfg, "loopback")` and through the gateware; the output pcaps
must be byte-identical and the counters equal.  Both datapath widths.  The
seed is in every failure message; TICKCORE_SOAK=full runs the long soak.
"""

import os

import pytest

from tickcore.host.gen import FlowGenerator, GenOptions
from tickcore.refmodel.config import load_config
from tickcore.refmodel.pcap import read_pcap, write_pcap
from tickcore.refmodel.venue import Venue, run_records
from tickcore.sim.corpus import Corpus
from tickcore.sim.run import simulate

CFG = load_config()
SEED = int(os.environ.get("TICKCORE_SEED", "1"))    # any other seed: TICKCORE_SEED=N


def reference(cfg, records):
    venue = Venue(cfg, "loopback")
    outputs = list(run_records(cfg, records, venue=venue))
    return outputs, {k: v for k, v in venue.all_counters().items() if v}


def compare(cfg, records, width, seed, tmp_path, **kw):
    kw.setdefault("seed", seed)
    want, want_counters = reference(cfg, records)
    got = simulate(cfg, records, width=width, **kw)
    got_counters = {k: v for k, v in got.counters.items() if v}
    # through pcap files, as the issue asks: byte-identical output pcaps
    write_pcap(tmp_path / "gateware.pcap", got.outputs)
    write_pcap(tmp_path / "refmodel.pcap", want)
    same = (tmp_path / "gateware.pcap").read_bytes() == (tmp_path / "refmodel.pcap").read_bytes()
    if not same:
        for i, (a, b) in enumerate(zip(got.outputs, want, strict=False)):
            if a != b:
                raise AssertionError(f"seed {seed}, width {width}: frame {i} differs\n"
                                     f"gateware {a[0]} {a[1].hex()}\nrefmodel {b[0]} {b[1].hex()}")
        raise AssertionError(f"seed {seed}, width {width}: {len(got.outputs)} frames out, "
                             f"refmodel {len(want)}")
    assert got_counters == want_counters, f"seed {seed}, width {width}"
    assert list(read_pcap(tmp_path / "gateware.pcap")) == want
    return got


@pytest.mark.parametrize("width", [8, 64])
def test_generated_flow_20000(width, tmp_path):
    seed = SEED + width
    records = list(FlowGenerator(CFG, GenOptions(seed=seed, orders=20_000,
                                                 malformed=0.05)).frames())
    assert len(records) >= 19_000
    got = compare(CFG, records, width, seed, tmp_path)
    print(f"width {width}: {len(records)} frames, {got.cycles} cycles, "
          f"{len(records) / got.seconds:.0f} frames/s")


@pytest.mark.parametrize("width", [8, 64])
def test_adversarial_frames_with_backpressure(width, tmp_path):
    seed = SEED + 1000 + width
    corpus = Corpus(CFG, seed, damage=0.6)
    records = list(corpus.records(3000))
    compare(CFG, records, width, seed, tmp_path, idle=0.2, stall=0.4)


def test_small_payload_limit_and_other_venue(tmp_path):
    """A venue with other addresses, sessions, TTL and the smallest max_payload."""
    cfg = load_config({
        "venue": {"mac": "02:aa:00:00:00:07", "ip": "192.168.7.9", "oe_port": 7001,
                  "ttl": 3, "max_payload": 120},
        "feed": {"session": "FEEDX", "ip": "239.9.9.9", "port": 6001, "src_port": 6000},
        "sessions": [{"name": "S1", "firm": "FRMA", "ip": "192.168.7.20", "port": 1111,
                      "mac": "02:aa:00:00:00:20"},
                     {"name": "SESSION002", "firm": "FRMB", "ip": "192.168.7.21",
                      "port": 2222, "mac": "02:aa:00:00:00:21"}],
    })
    seed = SEED + 77
    records = list(FlowGenerator(cfg, GenOptions(seed=seed, orders=1500,
                                                 malformed=0.1)).frames())
    records += list(Corpus(cfg, seed).records(500, start_ns=records[-1][0]))
    compare(cfg, records, 64, seed, tmp_path, stall=0.3)


@pytest.mark.soak
@pytest.mark.parametrize("width", [8, 64])
def test_soak(width, tmp_path):
    full = os.environ.get("TICKCORE_SOAK") == "full"
    seed = SEED + 5000 + width
    orders = 200_000 if full else 5_000
    records = list(FlowGenerator(CFG, GenOptions(seed=seed, orders=orders,
                                                 malformed=0.1)).frames())
    records += list(Corpus(CFG, seed, damage=0.8).records(20_000 if full else 1_000,
                                                         start_ns=records[-1][0]))
    compare(CFG, records, width, seed, tmp_path, idle=0.05, stall=0.2)
