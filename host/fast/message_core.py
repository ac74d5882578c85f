"""The fast engine one message at a time, for the live venue.

`FastCore` has the interface of refmodel.matcher.MatchingCore (open, close,
handle, take, counters): a decoded OUCH record goes in, OUCH records per
session and ITCH records come out, so `tickcore serve --engine software` runs
the compiled book.  Records are packed to bytes on the way in and unpacked
from the staging buffers on the way out with the refmodel layouts.
"""

from __future__ import annotations

import numpy as np

from tickcore.refmodel import itch, ouch

from .pipeline import core_close, core_message, core_open
from .state import SC, counters_of, new_engine


class FastCore:
    def __init__(self, cfg, mode: str = "match"):
        self.cfg = cfg
        self.E, self.arrays = new_engine(cfg, mode, 0)
        self._msg = np.zeros(64, np.uint8)

    @property
    def counters(self):
        return counters_of(self.arrays)

    def open(self, ts: int) -> None:
        core_open(self.E, ts)

    def close(self, ts: int) -> None:
        core_close(self.E, ts)

    def handle(self, session: int, ts: int, msg) -> None:
        raw = msg.layout.pack(msg)
        self._msg[:len(raw)] = np.frombuffer(raw, np.uint8)
        core_message(self.E, session, ts, self._msg, raw[0])

    def take(self):
        """Return and clear the records staged since the last call."""
        a = self.arrays
        oe_n, md_n = int(a.sc[SC.OE_N]), int(a.sc[SC.MD_N])
        oe_data = a.oe_buf[:a.sc[SC.OE_BYTES]].tobytes()
        md_data = a.md_buf[:a.sc[SC.MD_BYTES]].tobytes()
        oe = []
        for s, off in zip(a.oe_sess[:oe_n].tolist(), a.oe_off[:oe_n].tolist(), strict=True):
            oe.append((s, ouch.OUTBOUND[chr(oe_data[off])].unpack(oe_data, off)))
        md = [itch.MESSAGES[chr(md_data[off])].unpack(md_data, off)
              for off in a.md_off[:md_n].tolist()]
        a.sc[SC.OE_N] = a.sc[SC.OE_BYTES] = a.sc[SC.MD_N] = a.sc[SC.MD_BYTES] = 0
        return oe, md
