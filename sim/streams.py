"""Stream helpers for `amaranth.sim` testbenches (async, Amaranth 0.5).

`StreamDriver` and `StreamSink` move payloads across a `stream.Signature`
interface with optional random idle gaps (source side) and random back-pressure
(sink side); `frame_beats` and `beats_to_frame` convert between frames and the
`hdl.layouts` beat structs.
"""

from __future__ import annotations

import random


def frame_beats(frame: bytes, width: int, **extra) -> list[dict]:
    """The beats (as dicts for `ctx.set` on a struct) of one frame."""
    beats = []
    n = len(frame)
    for off in range(0, max(n, 1), width):
        chunk = frame[off:off + width]
        beats.append({
            "data": list(chunk.ljust(width, b"\0")),
            "nbytes": len(chunk),
            "first": int(off == 0),
            "last": int(off + width >= n),
            **extra,
        })
    return beats


def beats_bytes(beats) -> bytes:
    out = bytearray()
    for b in beats:
        out += bytes(b["data"][:b["nbytes"]])
    return bytes(out)


class StreamDriver:
    """Drive `stream` from a testbench: `await send(ctx, payload)`; `idle` is the
    probability of an idle cycle before each transfer."""

    def __init__(self, stream, *, rng: random.Random | None = None, idle: float = 0.0):
        self.stream = stream
        self.rng = rng or random.Random(0)
        self.idle = idle

    async def send(self, ctx, payload) -> None:
        while self.idle and self.rng.random() < self.idle:
            ctx.set(self.stream.valid, 0)
            await ctx.tick()
        ctx.set(self.stream.payload, payload)
        ctx.set(self.stream.valid, 1)
        await ctx.tick().until(self.stream.ready)
        ctx.set(self.stream.valid, 0)


class StreamSink:
    """Accept transfers from `stream`; `stall` is the probability of holding
    `ready` low in a cycle.  Each transfer's payload goes to `items`."""

    def __init__(self, stream, *, rng: random.Random | None = None, stall: float = 0.0):
        self.stream = stream
        self.rng = rng or random.Random(1)
        self.stall = stall
        self.items = []

    async def run(self, ctx) -> None:
        """Run for ever (start it with `add_process` or as a background testbench)."""
        while True:
            ready = not (self.stall and self.rng.random() < self.stall)
            ctx.set(self.stream.ready, int(ready))
            _, _, valid, payload = await ctx.tick().sample(self.stream.valid,
                                                            self.stream.payload)
            if valid and ready:
                self.items.append(payload)
