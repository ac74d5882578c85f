"""Queue-style cocotb testbench for the replay harness in external mode.

    tb = TB(dut)                 # the harness toplevel of a `sim.build` build
    await tb.start()             # clock, reset, ports driven from Python
    await tb.send(frame, ts)     # queue one inbound frame (ts: ns since the epoch)
    ts, frame = await tb.recv()  # the next outbound frame, with its cause's ts

Python drives every cycle here (tens of thousands of cycles per second): use
it for directed tests; `sim.run.simulate` replays whole flows in Verilog.
`PcapSource` and `PcapSink` feed a pcap file in and write what comes out.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import ClockCycles, RisingEdge

from tickcore.refmodel.itch import ns_since_midnight
from tickcore.refmodel.pcap import PcapWriter, read_pcap


def ports_file() -> Path:
    return Path(os.environ["TICKCORE_PORTS"])


class TB:
    def __init__(self, dut, *, ports: dict | None = None, period_ns: float = 8,
                 stall: float = 0.0, idle: float = 0.0, seed: int = 0):
        self.dut = dut
        self.ports = ports or json.loads(ports_file().read_text())
        self.width = self.ports["width"]
        self.period_ns = period_ns
        self.stall = stall
        self.idle = idle
        self.rng = random.Random(seed)
        self._in: Queue = Queue()
        self._out: Queue = Queue()
        self._ts: list[int] = []

    def _field(self, name):
        off, width = self.ports["fields_in"][name]
        return off, width

    def _pack(self, **values) -> int:
        word = 0
        for name, value in values.items():
            off, width = self._field(name)
            word |= (value & ((1 << width) - 1)) << off
        return word

    async def start(self) -> None:
        d = self.dut
        cocotb.start_soon(Clock(d.clk, self.period_ns, unit="ns").start())
        d.ext_mode.value = 1
        d.ext_i_valid.value = 0
        d.ext_i_payload.value = 0
        d.ext_o_ready.value = 0
        d.rst.value = 1
        await ClockCycles(d.clk, 4)
        d.rst.value = 0
        cocotb.start_soon(self._source())
        cocotb.start_soon(self._sink())

    async def send(self, frame: bytes, ts: int = 0) -> None:
        tag = len(self._ts)
        self._ts.append(ts)
        await self._in.put((tag, ns_since_midnight(ts), frame))

    async def recv(self, timeout_cycles: int = 100_000):
        """The next outbound frame as (ts of the inbound frame that caused it, frame)."""
        for _ in range(timeout_cycles):
            if not self._out.empty():
                return self._out.get_nowait()
            await RisingEdge(self.dut.clk)
        raise TimeoutError(f"no outbound frame within {timeout_cycles} cycles")

    async def idle_wait(self, cycles: int = 64) -> None:
        """Wait until the design has been idle for `cycles` cycles with nothing queued."""
        quiet = 0
        while quiet < cycles:
            await RisingEdge(self.dut.clk)
            busy = not self._in.empty() or int(self.dut.ext_o_valid.value) \
                or not int(self.dut.idle.value)
            quiet = 0 if busy else quiet + 1

    def counters(self) -> dict:
        value = int(self.dut.counters.value)
        return {name: (value >> (32 * k)) & 0xFFFFFFFF
                for k, name in enumerate(self.ports["counter_names"])}

    async def _source(self) -> None:
        d, w = self.dut, self.width
        while True:
            tag, tod, frame = await self._in.get()
            n = len(frame)
            for off in range(0, max(n, 1), w):
                while self.idle and self.rng.random() < self.idle:
                    d.ext_i_valid.value = 0
                    await RisingEdge(d.clk)
                chunk = frame[off:off + w]
                d.ext_i_payload.value = self._pack(
                    data=int.from_bytes(chunk, "little"), nbytes=len(chunk),
                    first=int(off == 0), last=int(off + w >= n), ts=tod, tag=tag)
                d.ext_i_valid.value = 1
                await RisingEdge(d.clk)
                while not int(d.ext_i_ready.value):
                    await RisingEdge(d.clk)
            d.ext_i_valid.value = 0

    async def _sink(self) -> None:
        d, w = self.dut, self.width
        f = self.ports["fields_out"]
        cur = bytearray()
        while True:
            ready = not (self.stall and self.rng.random() < self.stall)
            d.ext_o_ready.value = int(ready)
            await RisingEdge(d.clk)
            if ready and int(d.ext_o_valid.value):
                pay = int(d.ext_o_payload.value)

                def get(name, pay=pay):
                    off, width = f[name]
                    return (pay >> off) & ((1 << width) - 1)

                if get("first"):
                    cur = bytearray()
                cur += get("data").to_bytes(w, "little")[:get("nbytes")]
                if get("last"):
                    self._out.put_nowait((self._ts[get("tag")], bytes(cur)))


class PcapSource:
    """Send every record of a pcap file through `tb` (frame source driver)."""

    def __init__(self, tb: TB, path):
        self.tb = tb
        self.records = list(read_pcap(path))

    async def run(self) -> int:
        for ts, frame in self.records:
            await self.tb.send(frame, ts)
        return len(self.records)


class PcapSink:
    """Write every frame `tb` emits to a pcap file (frame sink driver)."""

    def __init__(self, tb: TB, path):
        self.tb = tb
        self.writer = PcapWriter(path)
        self.frames = []

    async def drain(self, idle_cycles: int = 64) -> list:
        await self.tb.idle_wait(idle_cycles)
        while not self.tb._out.empty():
            ts, frame = self.tb._out.get_nowait()
            self.frames.append((ts, frame))
            self.writer.write(ts, frame)
        self.writer.close()
        return self.frames
