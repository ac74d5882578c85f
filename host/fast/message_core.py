"""The fast engine one message at a time, for the live venue.

`FastCore` has the interface of refmodel.matcher.MatchingCore (open, close,
handle, take, counters): a decoded OUCH record goes in, OUCH records per
session and ITCH records come out, so `tickcore serve --engine software` runs
the compiled book.

It also has a bytes interface, which is what the live venue uses on its hot
path: `handle_raw(session, ts, message)` takes an inbound OUCH 4.2 message as
it came off the wire, and `take_raw()` returns the outbound OUCH and ITCH
messages as the compiled core encoded them in its staging buffers
(host/fast/state.py `oe_*`, `md_*`).  No record is built on that path: the
records interface is the bytes interface plus the refmodel layouts' pack and
unpack, so both give the same messages by construction.
"""

from __future__ import annotations

import numpy as np
from numba import typeof, types

from tickcore.refmodel import itch, ouch

from .pipeline import core_close, core_message, core_message_take, core_open
from .state import SC, counters_of, new_engine

_OE_N, _OE_BYTES, _MD_N, _MD_BYTES = (int(SC.OE_N), int(SC.OE_BYTES), int(SC.MD_N),
                                      int(SC.MD_BYTES))
MAX_INBOUND = max(layout.size for layout in ouch.INBOUND.values())


class FastCore:
    def __init__(self, cfg, mode: str = "match"):
        self.cfg = cfg
        self.E, self.arrays = new_engine(cfg, mode, 0)
        a = self.arrays
        self._msg = np.zeros(64, np.uint8)
        # memoryviews of the staging arrays: indexing one gives a Python int without
        # building a numpy scalar, and slicing one copies no more than asked for
        self._msg_view = memoryview(self._msg)
        self._sc = memoryview(a.sc)
        self._oe = (memoryview(a.oe_buf), memoryview(a.oe_off), memoryview(a.oe_len),
                    memoryview(a.oe_sess))
        self._oe_sess = self._oe[3]
        self._md = (memoryview(a.md_buf), memoryview(a.md_off), memoryview(a.md_len))
        # the compiled functions themselves, for this engine's argument types: calling
        # one skips the dispatcher's type resolution of the engine struct (about 0.6 us)
        signature = (typeof(self.E), types.int64, types.int64, typeof(self._msg), types.int64)
        self._core_message = core_message.compile(signature)
        self._core_message_take = core_message_take.compile(signature)

    @property
    def counters(self):
        return counters_of(self.arrays)

    def open(self, ts: int) -> None:
        core_open(self.E, ts)

    def close(self, ts: int) -> None:
        core_close(self.E, ts)

    # -- bytes ------------------------------------------------------------------------

    def handle_raw(self, session: int, ts: int, message) -> None:
        """One inbound OUCH 4.2 message (bytes of exactly its type's length, as
        refmodel ouch.decode_inbound accepts it) from engine session `session`."""
        n = len(message)
        if not 0 < n <= MAX_INBOUND:
            raise ValueError(f"inbound message of {n} bytes")
        self._msg_view[:n] = message
        self._core_message(self.E, session, ts, self._msg, message[0])

    def take_raw(self):
        """Return and clear the messages staged since the last call: ([(session index,
        OUCH message bytes)], [ITCH message bytes]), each in emission order."""
        sc = self._sc
        staged = sc[_OE_N], sc[_OE_BYTES], sc[_MD_N], sc[_MD_BYTES]
        sc[_OE_N] = sc[_OE_BYTES] = sc[_MD_N] = sc[_MD_BYTES] = 0
        return self._copy_out(staged)

    def process_raw(self, session: int, ts: int, message):
        """`handle_raw` then `take_raw`, in one call into the compiled core."""
        n = len(message)
        if not 0 < n <= MAX_INBOUND:
            raise ValueError(f"inbound message of {n} bytes")
        self._msg_view[:n] = message
        staged = self._core_message_take(self.E, session, ts, self._msg, message[0])
        if staged[0] == 1 and staged[2] == 1:       # the common case: one of each
            return ([(self._oe_sess[0], self._oe[0][:staged[1]].tobytes())],
                    [self._md[0][:staged[3]].tobytes()])
        return self._copy_out(staged)

    def _copy_out(self, staged):
        """The staged messages as bytes: one copy per stream, then a slice per message."""
        oe_n, oe_bytes, md_n, md_bytes = staged
        oe: list = []
        md: list = []
        if oe_n:
            buf, off, size, sess = self._oe
            data = buf[:oe_bytes].tobytes()
            if oe_n == 1:
                oe = [(sess[0], data)]
            else:
                oe = [(sess[i], data[off[i]:off[i] + size[i]]) for i in range(oe_n)]
        if md_n:
            buf, off, size = self._md
            data = buf[:md_bytes].tobytes()
            if md_n == 1:
                md = [data]
            else:
                md = [data[off[i]:off[i] + size[i]] for i in range(md_n)]
        return oe, md

    # -- records (refmodel MatchingCore's interface) ------------------------------------

    def handle(self, session: int, ts: int, msg) -> None:
        self.handle_raw(session, ts, msg.layout.pack(msg))

    def take(self):
        """Return and clear the records staged since the last call."""
        oe, md = self.take_raw()
        return ([(s, ouch.OUTBOUND[chr(m[0])].unpack(m)) for s, m in oe],
                [itch.MESSAGES[chr(m[0])].unpack(m) for m in md])
