"""Engine selection for `tickcore run`: one interface over every engine.

An engine takes (configuration, mode, frames) and returns a `RunResult` with
the output records and the counters; frames and outputs are sequences of
(ts, frame) (a list, or host/fast/frames.FrameArrays).  All engines must give
byte-identical outputs and identical counters for the same inputs.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from tickcore.refmodel.book import BUY, SELL
from tickcore.refmodel.venue import Venue, run_records

ENGINES = ("auto", "reference", "software", "fpga", "sim")


class EngineUnavailable(RuntimeError):
    """The requested engine cannot run here; the message says why."""


@dataclass
class RunResult:
    engine: str
    outputs: list                      # [(ts, frame)]
    counters: Counter
    seconds: float                     # processing time, excluding file I/O
    top_of_book: dict                  # {stock: {"bid": (price, qty) | None, "ask": ...}}
    notes: list = field(default_factory=list)


def _reporting(records: list, progress):
    for i, rec in enumerate(records):
        if progress is not None and i % 4096 == 0:
            progress(i, len(records))
        yield rec


def run_reference(cfg, mode: str, records, progress=None) -> RunResult:
    """`progress(done, total)`, when given, is called every 4096 inbound frames."""
    venue = Venue(cfg, mode)
    records = list(records)
    t0 = time.perf_counter()
    outputs = list(run_records(cfg, _reporting(records, progress), venue=venue))
    seconds = time.perf_counter() - t0
    top = {}
    if mode == "match":
        book = venue.core.book
        top = {sym.stock.rstrip(): {"bid": book.top(sym.index, BUY),
                                    "ask": book.top(sym.index, SELL)} for sym in cfg.symbols}
    return RunResult("reference", outputs, venue.all_counters(), seconds, top)


def run_software(cfg, mode: str, records, progress=None) -> RunResult:
    from .fast.engine import FastEngine
    engine = FastEngine(cfg, mode)
    outputs = engine.run(records)
    top = engine.top_of_book() if mode == "match" else {}
    # the compiled loop's time: like refmodel's, it excludes reading and writing files
    return RunResult("software", outputs, engine.counters(), engine.kernel_seconds, top)


def run_sim(cfg, mode: str, records, progress=None) -> RunResult:
    """The gateware under Verilator (sim/run.py); it holds the packet-loopback design."""
    if mode != "loopback":
        raise EngineUnavailable("engine sim: the gateware matching core is not built yet; the "
                                "simulated gateware runs --mode loopback")
    from tickcore.sim.run import ToolchainMissing, simulate
    try:
        result = simulate(cfg, records, design="loopback", width=8)
    except ToolchainMissing as exc:
        raise EngineUnavailable(f"engine sim: {exc}") from None
    return RunResult("sim", result.outputs, Counter(result.counters), result.seconds, {},
                     [f"sim: {result.cycles} clock cycles at 8-bit datapath"])


def detect_board():
    """Return a connected board's transport, or (None, why not)."""
    return None, "no FPGA board driver is built yet (the gateware matching core is not built)"


def resolve(name: str):
    """(engine name, runner, notes) for a requested engine name."""
    if name not in ENGINES:
        raise EngineUnavailable(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    notes = []
    if name in ("auto", "fpga"):
        board, why = detect_board()
        if board is None:
            if name == "fpga":
                raise EngineUnavailable(f"engine fpga: {why}")
            notes.append(f"auto: {why}; using the software engine")
            name = "software"
    if name == "sim":
        return "sim", run_sim, notes
    if name == "software":
        return "software", run_software, notes
    return "reference", run_reference, notes


def make_core(cfg, name: str = "reference"):
    """A per-message matching core for the live venue.

    Interface (that of refmodel.matcher.MatchingCore): open(ts), close(ts),
    handle(session_index, ts, message_record), take() -> (oe, md) where oe is
    [(session_index, OUCH record)] and md is [ITCH record], in emission order;
    `counters` is a Counter.
    """
    if name == "reference":
        from tickcore.refmodel.matcher import MatchingCore
        return MatchingCore(cfg)
    if name == "software":
        from .fast.message_core import FastCore
        return FastCore(cfg)
    raise EngineUnavailable(f"no per-message core for engine {name!r}")
