"""The fast software engine: the same pipeline as refmodel.venue, compiled.

    engine = FastEngine(cfg, "match")
    outputs = engine.run(records)        # FrameArrays: (ts, frame) pairs, byte-identical
    engine.counters()                    # refmodel counter names

Inbound frames are held in one numpy buffer (frames.FrameArrays); the compiled
loop (pipeline.process_frames) parses, matches and frames them into an output
buffer that this wrapper drains whenever it runs low.  Compiled code is cached
on disk by numba (first use compiles for a few seconds; later starts load the
cache).
"""

from __future__ import annotations

import time

import numpy as np

from .frames import FrameArrays
from .pipeline import process_frames, venue_close, venue_open
from .state import SC, counters_of, new_engine, output_reserve


class FastEngine:
    def __init__(self, cfg, mode: str = "match", *, out_bytes: int = 16 << 20,
                 latency_samples: int = 0):
        if mode not in ("match", "loopback"):
            raise ValueError(f"unknown mode {mode!r}")
        self.cfg = cfg
        self.mode = mode
        self.E, self.arrays = new_engine(cfg, mode, out_bytes, latency_samples)
        self.reserve = output_reserve(cfg)
        self.kernel_seconds = 0.0

    def _drain(self, parts: list) -> None:
        a = self.arrays
        n = int(a.sc[SC.OUT_N])
        if n:
            parts.append(FrameArrays(a.out_buf[:a.sc[SC.OUT_BYTES]].copy(),
                                     a.out_off[:n].copy(), a.out_len[:n].copy(),
                                     a.out_ts[:n].copy()))
        a.sc[SC.OUT_N] = 0
        a.sc[SC.OUT_BYTES] = 0

    def run(self, frames) -> FrameArrays:
        """Open at the first frame's time, process every frame, close at the last's.

        `frames`: a FrameArrays, or any iterable of (timestamp_ns, frame)."""
        if not isinstance(frames, FrameArrays):
            frames = FrameArrays.from_records(frames)
        parts: list = []
        n = len(frames)
        if not n:
            return FrameArrays.concatenate(parts)
        E = self.E
        venue_open(E, int(frames.ts[0]))
        # an empty call loads the compiled loop (from numba's cache) outside the timing
        process_frames(E, frames.buf, frames.offsets, frames.lengths, frames.ts, 0, 0,
                       self.reserve)
        f = 0
        while f < n:
            t0 = time.perf_counter()
            f = process_frames(E, frames.buf, frames.offsets, frames.lengths, frames.ts, f, n,
                               self.reserve)
            self.kernel_seconds += time.perf_counter() - t0
            self._drain(parts)
        venue_close(E, int(frames.ts[-1]))
        self._drain(parts)
        return FrameArrays.concatenate(parts)

    def counters(self):
        return counters_of(self.arrays)

    def top_of_book(self) -> dict:
        """{stock: {"bid": (price, displayed qty) | None, "ask": ...}}: the best level
        with displayed quantity, as refmodel Book.top."""
        a = self.arrays
        out = {}
        for sym in self.cfg.symbols:
            sides = []
            for side in (0, 1):
                best = None
                for i in range(int(a.lv_count[sym.index, side]) - 1, -1, -1):
                    if a.lv_displayed[sym.index, side, i]:
                        best = (int(a.lv_price[sym.index, side, i]),
                                int(a.lv_displayed[sym.index, side, i]))
                        break
                sides.append(best)
            out[sym.stock.rstrip()] = {"bid": sides[0], "ask": sides[1]}
        return out

    def latencies_cycles(self) -> np.ndarray:
        """Per-message processing time in CPU cycles (when latency_samples was given)."""
        return self.arrays.lat[:self.arrays.sc[SC.LAT_N]].copy()
