"""`tickcore bench`: throughput and per-message latency, side by side in one run.

On one generated flow (`tickcore gen` mix):

- reference: refmodel's Venue, frame by frame; latency = time.perf_counter_ns
  around each inbound frame's processing (frames mostly carry one message).
- software: the fast engine; throughput of the compiled loop (frames in the
  input buffer to frames in the output buffer) and end to end;
  latency = the CPU cycle counter around each message's processing, converted
  to ns with the counter's rate measured against time.perf_counter_ns; end to
  end also counts turning a list of (ts, frame) objects into the input buffer.
- peer: cython-orderbook (PyPI, a compiled price-time order book), given only
  the book operations of the same flow, decoded in advance outside the timing:
  Enter -> add_limit_order / add_market_order (IOC remainders canceled),
  Cancel -> cancel_order (a partial cancel is a cancel and a re-add), Replace
  -> cancel_order + add_limit_order.  It does no parsing, risk checks,
  encoding or framing, so the ratio flatters the peer.
- serve: the live venue's round trip (client send to Accepted received) over
  loopback TCP and UDP with the software engine, and beside it the same round
  trip to a bare Python echo server: what the machine costs before any venue
  work (host/serve_bench.py).

Throughput is the median of `repeat` runs; latency percentiles come from the
run with the median throughput.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime

import numpy as np

from tickcore.refmodel import ouch
from tickcore.refmodel.config import load_config
from tickcore.refmodel.session import SessionLayer
from tickcore.refmodel.venue import Venue

from .gen import FlowGenerator, GenOptions


def percentiles(ns) -> dict:
    a = np.asarray(ns, dtype=np.float64)
    if a.size == 0:
        return {"p50_ns": 0, "p99_ns": 0, "p999_ns": 0}
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return {"p50_ns": int(p50), "p99_ns": int(p99), "p999_ns": int(p999)}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _median_run(runs: list) -> dict:
    runs = sorted(runs, key=lambda r: r["msgs_per_s"])
    return runs[len(runs) // 2]


def bench_reference(cfg, records, messages: int, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        venue = Venue(cfg)
        lat = np.empty(len(records), np.int64)
        clock = time.perf_counter_ns
        t0 = time.perf_counter()
        venue.open(records[0][0])
        for i, (ts, frame) in enumerate(records):
            a = clock()
            venue.process(ts, frame)
            lat[i] = clock() - a
        venue.close(records[-1][0])
        seconds = time.perf_counter() - t0
        runs.append({"msgs_per_s": messages / seconds, "seconds": seconds,
                     **percentiles(lat)})
    return _median_run(runs)


def cycles_per_ns() -> float:
    """The cycle counter's rate, from two readings 0.2 s apart."""
    from .fast.wire import read_cycles
    c0, t0 = read_cycles(), time.perf_counter_ns()
    time.sleep(0.2)
    c1, t1 = read_cycles(), time.perf_counter_ns()
    return (c1 - c0) / (t1 - t0)


def bench_software(cfg, records, messages: int, repeat: int) -> dict:
    from .fast.engine import FastEngine
    FastEngine(cfg).run(records[:100])                      # load the compiled code
    rate = cycles_per_ns()
    runs = []
    for _ in range(repeat):
        engine = FastEngine(cfg, latency_samples=len(records) * 4)
        t0 = time.perf_counter()
        engine.run(records)
        end_to_end = time.perf_counter() - t0
        lat = engine.latencies_cycles() / rate
        runs.append({"msgs_per_s": messages / engine.kernel_seconds,
                     "seconds": engine.kernel_seconds,
                     "end_to_end_msgs_per_s": messages / end_to_end, **percentiles(lat)})
    # throughput without the cycle counter reads
    plain = []
    for _ in range(repeat):
        engine = FastEngine(cfg)
        engine.run(records)
        plain.append(messages / engine.kernel_seconds)
    out = _median_run(runs)
    out["msgs_per_s_with_latency_probes"] = out["msgs_per_s"]
    out["msgs_per_s"] = statistics.median(plain)
    out["cycles_per_ns"] = round(rate, 4)
    return out


def peer_operations(cfg, records) -> list:
    """The book operations of the flow, as (op, symbol, key, side, price, qty, ioc)."""
    layer = SessionLayer(cfg)
    from tickcore.refmodel.packet import parse_udp_frame
    ops = []
    for _, frame in records:
        reason, dgram = parse_udp_frame(frame, mac=cfg.mac, ip=cfg.ip, port=cfg.oe_port)
        if reason:
            continue
        for session, m in layer.accept(dgram.payload):
            kind = type(m)
            if kind is ouch.ENTER_ORDER.record:
                market = m.price == ouch.MARKET_PRICE
                ops.append(("add", m.stock, (session, m.token), m.side == "B",
                            None if market else m.price, m.shares,
                            market or m.tif == ouch.TIF_IOC))
            elif kind is ouch.CANCEL_ORDER.record:
                ops.append(("cancel", None, (session, m.token), None, None, m.shares, False))
            elif kind is ouch.REPLACE_ORDER.record:
                ops.append(("replace", (session, m.existing_token),
                            (session, m.replacement_token), None, m.price, m.shares,
                            m.tif == ouch.TIF_IOC))
    return ops


def bench_peer(cfg, records, repeat: int) -> dict:
    try:
        from decimal import Decimal

        from cython_orderbook import Order, OrderBook, OrderSide
    except ImportError:
        return {"error": "cython-orderbook is not installed (pip install cython-orderbook)"}
    ops = peer_operations(cfg, records)
    prices = {p for op in ops for p in (op[4],) if p is not None}
    dec = {p: Decimal(p) / 10000 for p in prices}
    runs = []
    for _ in range(repeat):
        books = {}
        live = {}                     # key -> (book, order, buy, price)
        lat = np.empty(len(ops), np.int64)
        clock = time.perf_counter_ns
        t0 = time.perf_counter()
        for i, (op, a, key, buy, price, qty, ioc) in enumerate(ops):
            start = clock()
            if op == "add":
                book = books.get(a)
                if book is None:
                    book = books[a] = OrderBook()
                side = OrderSide.BID if buy else OrderSide.ASK
                if price is None:
                    book.add_market_order(Order(side=side, original_quantity=qty))
                else:
                    order = Order(side=side, price=dec[price], original_quantity=qty)
                    book.add_limit_order(order)
                    if ioc:
                        book.cancel_order(order.order_id)
                    else:
                        live[key] = (book, order, buy, price)
            elif op == "cancel":
                entry = live.pop(key, None)
                if entry is not None:
                    book, order, buy, price = entry
                    book.cancel_order(order.order_id)
                    if qty:
                        again = Order(side=order.side, price=order.price, original_quantity=qty)
                        book.add_limit_order(again)
                        live[key] = (book, again, buy, price)
            else:
                entry = live.pop(a, None)
                if entry is not None and price in dec:
                    book, order, buy, _ = entry
                    book.cancel_order(order.order_id)
                    again = Order(side=order.side, price=dec[price], original_quantity=qty)
                    book.add_limit_order(again)
                    if ioc:
                        book.cancel_order(again.order_id)
                    else:
                        live[key] = (book, again, buy, price)
            lat[i] = clock() - start
        seconds = time.perf_counter() - t0
        runs.append({"msgs_per_s": len(ops) / seconds, "seconds": seconds, "ops": len(ops),
                     **percentiles(lat)})
    return _median_run(runs)


def run_bench(orders: int = 200_000, seed: int = 1, repeat: int = 3, serve: bool = True,
              serve_samples: int = 5_000, engines=("reference", "software", "peer"),
              progress=None) -> dict:
    say = progress or (lambda msg: None)
    cfg = load_config()
    say(f"generating {orders} messages (seed {seed})")
    records = list(FlowGenerator(cfg, GenOptions(seed=seed, orders=orders)).frames())
    venue = Venue(cfg)
    venue.open(records[0][0])
    for ts, frame in records:
        venue.process(ts, frame)
    messages = venue.all_counters()["messages_in"]
    result = {"flow": {"orders": orders, "seed": seed, "frames": len(records),
                       "messages": messages}, "machine": machine(), "repeat": repeat}
    if "reference" in engines:
        say("reference model")
        result["reference"] = bench_reference(cfg, records, messages, repeat)
    if "software" in engines:
        say("fast software engine")
        result["software"] = bench_software(cfg, records, messages, repeat)
    if "peer" in engines:
        say("peer library (cython-orderbook)")
        result["peer"] = bench_peer(cfg, records, repeat)
    sw = result.get("software", {}).get("msgs_per_s")
    if sw:
        result["ratios"] = {f"software_vs_{k}": round(sw / result[k]["msgs_per_s"], 2)
                            for k in ("reference", "peer")
                            if k in result and "msgs_per_s" in result[k]}
    if serve:
        from .serve_bench import echo_floor, round_trip
        warmup = max(500, serve_samples // 10)
        for transport in ("tcp", "udp"):
            say(f"serve round trip over {transport} (software engine), and the echo floor")
            result[f"serve_{transport}"] = round_trip(transport, samples=serve_samples,
                                                      warmup=warmup, engine="software")
            result[f"echo_floor_{transport}"] = echo_floor(transport, samples=serve_samples,
                                                           warmup=warmup)
    return result


def text_report(r: dict) -> str:
    f = r["flow"]
    m = r["machine"]
    lines = [f"flow: {f['messages']} messages in {f['frames']} frames "
             f"(tickcore gen --seed {f['seed']} --orders {f['orders']})",
             f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}",
             f"{'engine':<12} {'msgs/s':>12} {'p50 ns':>9} {'p99 ns':>9} {'p99.9 ns':>9}"]
    for k in ("reference", "software", "peer"):
        e = r.get(k)
        if not e:
            continue
        if "error" in e:
            lines.append(f"{k:<12} {e['error']}")
            continue
        lines.append(f"{k:<12} {e['msgs_per_s']:>12,.0f} {e['p50_ns']:>9,} {e['p99_ns']:>9,} "
                     f"{e['p999_ns']:>9,}")
    if "software" in r:
        lines.append(f"software end to end (from Python (ts, frame) objects): "
                     f"{r['software']['end_to_end_msgs_per_s']:,.0f} msgs/s")
    for k, v in r.get("ratios", {}).items():
        lines.append(f"{k}: {v}x")
    for t in ("tcp", "udp"):
        for key, label in ((f"serve_{t}", f"serve round trip {t}"),
                           (f"echo_floor_{t}", f"echo server {t} (machine floor)")):
            s = r.get(key)
            if s:
                lines.append(f"{label}: p50 {s['p50_ns']:,} ns, p99 {s['p99_ns']:,} ns, "
                             f"p99.9 {s['p999_ns']:,} ns ({s['samples']} samples)")
    return "\n".join(lines)


def markdown_report(r: dict, command: str) -> str:
    """The engines and live-venue part of docs/benchmarks.md, from one run."""
    f, m = r["flow"], r["machine"]
    out = [f"Command: `{command}`  ",
           f"Machine: {m['cpu']}, {m['cores']} cores (shared VM), Linux {m['kernel']}, "
           f"Python {m['python']}.  Date: {m['date']}.  ",
           f"Flow: `tickcore gen --seed {f['seed']} --orders {f['orders']}`: {f['messages']:,} "
           f"order-entry messages in {f['frames']:,} frames.  Throughput is the median of "
           f"{r['repeat']} runs; latency percentiles come from the median run.", "",
           "| engine | messages/s | p50 | p99 | p99.9 | what is timed |",
           "|---|---|---|---|---|---|"]
    what = {"reference": "refmodel Venue.process per frame: parse, match, encode, frame",
            "software": "the compiled loop per message: match, encode, frame (cycle counter)",
            "peer": "cython-orderbook per book operation (no parsing, risk or encoding)"}
    for k in ("reference", "software", "peer"):
        e = r.get(k)
        if e and "error" not in e:
            out.append(f"| {k} | {e['msgs_per_s']:,.0f} | {e['p50_ns']:,} ns | "
                       f"{e['p99_ns']:,} ns | {e['p999_ns']:,} ns | {what[k]} |")
    if "software" in r:
        sw = r["software"]
        out += ["", f"The software engine end to end, from a list of (ts, frame) Python "
                    f"objects to the output frames in numpy buffers: "
                    f"{sw['end_to_end_msgs_per_s']:,.0f} messages/s; with the per-message "
                    f"cycle-counter probes on: {sw['msgs_per_s_with_latency_probes']:,.0f}."]
    if r.get("ratios"):
        out += ["", "Ratios, measured side by side in this run: " + ", ".join(
            f"{k.replace('_', ' ')} **{v}x**" for k, v in r["ratios"].items()) + "."]
    rows = [(k, label) for t in ("tcp", "udp")
            for k, label in ((f"serve_{t}", f"serve, {t.upper()}, software engine"),
                             (f"echo_floor_{t}", f"echo server, {t.upper()} (machine floor)"))
            if k in r]
    if rows:
        out += ["", "| live venue round trip (send to Accepted) | p50 | p99 | p99.9 | samples |",
                "|---|---|---|---|---|"]
        for k, label in rows:
            s = r[k]
            out.append(f"| {label} | {s['p50_ns'] / 1000:,.0f} µs | {s['p99_ns'] / 1000:,.0f} µs"
                       f" | {s['p999_ns'] / 1000:,.0f} µs | {s['samples']:,} |")
    return "\n".join(out)


def json_report(r: dict) -> str:
    """One object with a key per engine holding msgs_per_s, p50_ns, p99_ns, p999_ns."""
    return json.dumps(r)


if __name__ == "__main__":
    print(text_report(run_bench(progress=lambda m: print(m, file=sys.stderr))))
