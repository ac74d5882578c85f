"""The fast software engine: the same pipeline as refmodel.venue, compiled.

    engine = FastEngine(cfg, "match")
    outputs = engine.run(records)        # [(ts, frame)], byte-identical to refmodel
    engine.counters()                    # refmodel counter names

Inbound frames are packed into one numpy buffer; the compiled loop
(pipeline.process_frames) parses, matches and frames them into an output
buffer that this wrapper drains whenever it runs low.  Compiled code is cached
on disk by numba (first use compiles for a few seconds; later starts load the
cache).
"""

from __future__ import annotations

import numpy as np

from .pipeline import process_frames, venue_close, venue_open
from .state import SC, counters_of, new_engine, output_reserve


def pack_frames(records):
    """(buffer, offsets, lengths, timestamps) numpy arrays for [(ts, frame)]."""
    frames = [f for _, f in records]
    lengths = np.fromiter((len(f) for f in frames), np.int64, len(frames))
    offsets = np.zeros(len(frames), np.int64)
    if len(frames) > 1:
        np.cumsum(lengths[:-1], out=offsets[1:])
    buf = np.frombuffer(b"".join(frames) or b"\0", np.uint8)
    ts = np.fromiter((t for t, _ in records), np.int64, len(frames))
    return buf, offsets, lengths, ts


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

    def _drain(self, out: list) -> None:
        E = self.arrays
        n = int(E.sc[SC.OUT_N])
        if n:
            data = E.out_buf[:E.sc[SC.OUT_BYTES]].tobytes()
            for off, length, ts in zip(E.out_off[:n].tolist(), E.out_len[:n].tolist(),
                                       E.out_ts[:n].tolist(), strict=True):
                out.append((ts, data[off:off + length]))
        E.sc[SC.OUT_N] = 0
        E.sc[SC.OUT_BYTES] = 0

    def run(self, records) -> list:
        """Open at the first record's time, process every frame, close at the last's."""
        import time
        records = list(records)
        out: list = []
        if not records:
            return out
        buf, offsets, lengths, ts = pack_frames(records)
        E = self.E
        venue_open(E, int(ts[0]))
        f, n = 0, len(records)
        while f < n:
            t0 = time.perf_counter()
            f = process_frames(E, buf, offsets, lengths, ts, f, n, self.reserve)
            self.kernel_seconds += time.perf_counter() - t0
            self._drain(out)
        venue_close(E, int(ts[-1]))
        self._drain(out)
        return out

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
                for i in range(int(a.lv_count[sym.index, side])):
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
