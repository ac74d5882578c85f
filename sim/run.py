"""Run inbound frames through the simulated gateware (Verilator, driven by cocotb).

    simulate(cfg, records, design="loopback", width=8) -> SimResult

`records` are (ts_ns, frame) as read from a pcap.  Each frame goes in with its
time of day (`refmodel.itch.ns_since_midnight(ts)`) and its index as tag; each
output frame comes back with the tag of the inbound frame that caused it, and
is given that frame's pcap timestamp, exactly like
`refmodel.venue.run_records(cfg, records, mode="loopback")`.  `counters` holds
the non-zero counters under refmodel's names, so it compares equal to
`Venue(cfg, "loopback").all_counters()`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tickcore.refmodel.itch import ns_since_midnight

from .build import Build, ToolchainMissing, build

__all__ = ["Build", "SimResult", "ToolchainMissing", "build", "simulate"]


@dataclass
class SimResult:
    outputs: list                        # [(ts_ns, frame)]
    counters: Counter                    # refmodel's counter names, non-zero ones
    cycles: int                          # clock cycles from reset release to done
    seconds: float                       # wall time of the simulation run (not the build)
    width: int
    latencies: list = field(default_factory=list)   # [(tag, cycles last-in -> first-out)]
    frame_cycles: list = field(default_factory=list)  # [(first-beat cycle, last-beat cycle)]
    in_last_cycles: list = field(default_factory=list)


def write_inputs(records, width: int, nb_bits: int, beats_path: Path, frames_path: Path):
    shift_nb = 8 * width
    shift_last = 8 * width + nb_bits
    with open(beats_path, "w") as fb, open(frames_path, "w") as ff:
        for tag, (ts, frame) in enumerate(records):
            ff.write(f"{(ns_since_midnight(ts) << 32) | tag:x}\n")
            n = len(frame)
            lines = []
            for off in range(0, max(n, 1), width):
                chunk = frame[off:off + width]
                last = off + width >= n
                word = (int(last) << shift_last) | (len(chunk) << shift_nb) \
                    | int.from_bytes(chunk, "little")
                lines.append(f"{word:x}")
            fb.write("\n".join(lines))
            fb.write("\n")


def read_outputs(path: Path, b: Build, records):
    f = b.ports.fields_out
    w = b.width
    d_off, d_w = f["data"]
    nb_off, nb_w = f["nbytes"]
    first_off = f["first"][0]
    last_off = f["last"][0]
    tag_off, tag_w = f["tag"]
    outputs, spans, first_out = [], [], {}
    cur = bytearray()
    start = 0
    with open(path) as fh:
        for line in fh:
            cyc_s, pay_s = line.split()
            cyc, pay = int(cyc_s, 16), int(pay_s, 16)
            nb = (pay >> nb_off) & ((1 << nb_w) - 1)
            if (pay >> first_off) & 1:
                cur = bytearray()
                start = cyc
            cur += ((pay >> d_off) & ((1 << d_w) - 1)).to_bytes(w, "little")[:nb]
            if (pay >> last_off) & 1:
                tag = (pay >> tag_off) & ((1 << tag_w) - 1)
                outputs.append((records[tag][0], bytes(cur)))
                spans.append((start, cyc))
                first_out.setdefault(tag, start)
    return outputs, spans, first_out


def simulate(cfg, records, *, design: str = "loopback", width: int = 8, build_dir=None,
             idle: float = 0.0, stall: float = 0.0, seed: int = 1, log=None) -> SimResult:
    """Run `records` through the gateware; `idle` / `stall` are the probabilities of
    an idle cycle between inbound frames and of output back-pressure per cycle."""
    try:
        from cocotb_tools.runner import get_runner
    except ImportError:
        raise ToolchainMissing("cocotb is not installed (pip install 'tickcore[hdl]')") from None

    records = list(records)
    if width % 8 or not 8 <= width <= 64:
        raise ValueError(f"width is the datapath in bits (8 or 64), got {width}")
    width //= 8
    b = build(cfg, design=design, width=width, build_dir=build_dir, log=log)
    nb_bits = b.ports.fields_in["nbytes"][1]
    with tempfile.TemporaryDirectory(prefix="tickcore-sim-") as tmp:
        tmp = Path(tmp)
        write_inputs(records, width, nb_bits, tmp / "beats.hex", tmp / "frames.hex")
        result = tmp / "result.txt"
        runner = get_runner("verilator")
        t0 = time.perf_counter()
        with open(tmp / "sim.log", "w") as logf, contextlib.redirect_stdout(logf):
            runner.test(
                hdl_toplevel="harness", hdl_toplevel_lang="verilog",
                test_module="tickcore.sim.cocotb_replay",
                build_dir=b.directory / "obj", test_dir=tmp, results_xml=str(tmp / "r.xml"),
                plusargs=[f"+IN={tmp / 'beats.hex'}", f"+FRAMES={tmp / 'frames.hex'}",
                          f"+OUT={tmp / 'out.txt'}", f"+EV={tmp / 'ev.txt'}",
                          f"+IDLE={int(idle * 1000)}", f"+STALL={int(stall * 1000)}",
                          f"+SEED={seed}"],
                extra_env={"TICKCORE_RESULT": str(result), "COCOTB_LOG_LEVEL": "WARNING",
                           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
                log_file=tmp / "sim.log")
        seconds = time.perf_counter() - t0
        if not result.exists():
            log_text = (tmp / "sim.log").read_text()[-3000:]
            raise RuntimeError(f"the simulation did not finish:\n{log_text}")
        cyc_s, cnt_s = result.read_text().split()
        outputs, spans, first_out = read_outputs(tmp / "out.txt", b, records)
        in_last = [int(x, 16) for x in (tmp / "ev.txt").read_text().split()]
    cnt = int(cnt_s, 16)
    counters = Counter()                 # like Venue.all_counters(): only what was counted
    for k, name in enumerate(b.ports.counter_names):
        value = (cnt >> (32 * k)) & 0xFFFFFFFF
        if value:
            counters[name] = value
    latencies = [(tag, first_out[tag] - in_last[tag]) for tag in sorted(first_out)]
    return SimResult(outputs, counters, int(cyc_s, 16), seconds, width, latencies, spans,
                     in_last)
