"""Gateware figures measured in simulation (Verilator): latency, throughput, speed.

    python -m tickcore.sim.bench [--width 8 64] [--orders 20000]

- Latency: cycles from an inbound frame's last beat to the first beat of the
  first frame it causes (the OUCH response) and of its ITCH frame, per inbound
  message kind, each frame alone in the pipeline.
- Throughput: back-to-back frames with no idle cycle offered; input cycles
  lost to back-pressure and idle cycles between output frames, for frames that
  produce nothing (heartbeats) and for Enter Orders (each answered by two
  frames, 230 bytes out per 113 in: the output is the bottleneck).
- Simulation speed: frames per second through simulate() on a generated flow.

Every run is also checked against refmodel (outputs byte-identical).
"""

from __future__ import annotations

import argparse
import json
import random

from tickcore.host.gen import FlowGenerator, GenOptions
from tickcore.refmodel import ouch
from tickcore.refmodel.client import ClientSession
from tickcore.refmodel.config import load_config
from tickcore.refmodel.venue import run_records

from .run import simulate

START = 1_795_962_600_000_000_000


def _enter(rng, n):
    return ouch.ENTER_ORDER.build(
        token=f"B{n:013d}", side="B", shares=100, stock="AAPL", price=1850000, tif=99999,
        firm="", display="Y", capacity="A", iso="N", min_qty=0, cross_type="N",
        customer_type=" ")


def _check(cfg, records, res):
    want = list(run_records(cfg, records, mode="loopback"))
    if res.outputs != want:
        raise SystemExit("gateware output differs from refmodel: run the tests")


def latency(cfg, width: int) -> dict:
    """Isolated frames (long idle gaps between them): per kind, cycles last-in -> first-out."""
    rng = random.Random(1)
    kinds = {
        "enter_order": lambda n: [_enter(rng, n)],
        "enter_order_x4": lambda n: [_enter(rng, 4 * n + k) for k in range(4)],
        "cancel_order (ignored)": lambda n: [ouch.CANCEL_ORDER.build(token="X", shares=0)],
        "heartbeat": lambda n: [],
    }
    out = {}
    for kind, make in kinds.items():
        c = ClientSession(cfg, cfg.sessions[0])
        records = [(START + i * 100_000, c.frame(make(i))) for i in range(20)]
        res = simulate(cfg, records, width=width, idle=0.999)
        _check(cfg, records, res)
        spans = {}
        for (ts, _), (start, _end) in zip(res.outputs, res.frame_cycles, strict=True):
            spans.setdefault(ts, []).append(start)
        firsts = [spans[ts][0] - res.in_last_cycles[i] for i, (ts, _) in enumerate(records)
                  if ts in spans]
        md = [spans[ts][1] - res.in_last_cycles[i] for i, (ts, _) in enumerate(records)
              if ts in spans and len(spans[ts]) > 1]
        out[kind] = {"first_out": min(firsts) if firsts else None,
                     "first_out_max": max(firsts) if firsts else None,
                     "itch_frame": min(md) if md else None}
    return out


def throughput(cfg, width: int, n: int = 400) -> dict:
    rng = random.Random(2)
    out = {}
    w = width // 8
    for kind in ("heartbeat", "enter_order"):
        clients = [ClientSession(cfg, s) for s in cfg.sessions]
        records = []
        for i in range(n):
            c = clients[i % len(clients)]
            records.append((START + i, c.frame([] if kind == "heartbeat" else [_enter(rng, i)])))
        res = simulate(cfg, records, width=width)
        _check(cfg, records, res)
        beats = sum(-(-len(f) // w) for _, f in records)
        first_in = res.in_last_cycles[0] - (-(-len(records[0][1]) // w)) + 1
        in_span = res.in_last_cycles[-1] - first_in + 1
        gaps = [b[0] - a[1] - 1 for a, b in zip(res.frame_cycles, res.frame_cycles[1:],
                                                strict=False)]
        out_beats = sum(-(-len(f) // w) for _, f in res.outputs)
        out_span = (res.frame_cycles[-1][1] - res.frame_cycles[0][0] + 1) if gaps else 0
        out[kind] = {
            "frames_in": n, "in_beats": beats, "in_cycles": in_span,
            "in_stall_cycles": in_span - beats,
            "frames_out": len(res.outputs), "out_beats": out_beats, "out_cycles": out_span,
            "out_gap_cycles_total": sum(gaps) if gaps else 0,
            "out_gap_max": max(gaps) if gaps else 0,
        }
    return out


def speed(cfg, width: int, orders: int) -> dict:
    records = list(FlowGenerator(cfg, GenOptions(seed=11, orders=orders,
                                                 malformed=0.05)).frames())
    res = simulate(cfg, records, width=width)
    _check(cfg, records, res)
    return {"frames": len(records), "cycles": res.cycles, "seconds": round(res.seconds, 2),
            "frames_per_second": round(len(records) / res.seconds),
            "cycles_per_second": round(res.cycles / res.seconds)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tickcore.sim.bench", description=__doc__)
    p.add_argument("--width", type=int, nargs="+", default=[8, 64], choices=(8, 64))
    p.add_argument("--orders", type=int, default=20_000)
    args = p.parse_args(argv)
    cfg = load_config()
    result = {}
    for width in args.width:
        print(f"== {width} bits", flush=True)
        r = {"latency": latency(cfg, width), "throughput": throughput(cfg, width),
             "speed": speed(cfg, width, args.orders)}
        result[width] = r
        print(json.dumps(r, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
