"""cocotb test module for the replay harness (`sim.build`): clock, reset, then
wait for the harness to finish streaming; Python stays out of the per-cycle loop.

Environment: TICKCORE_RESULT names the file the counters and cycle count go to.
"""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge


async def reset(dut, ext_mode: int) -> None:
    dut.ext_mode.value = ext_mode
    dut.ext_i_valid.value = 0
    dut.ext_i_payload.value = 0
    dut.ext_o_ready.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0


@cocotb.test()
async def replay(dut):
    cocotb.start_soon(Clock(dut.clk, 8, unit="ns").start())
    await reset(dut, 0)
    await RisingEdge(dut.done)
    counters = int(dut.counters.value)
    cycles = int(dut.cycle.value)
    with open(os.environ["TICKCORE_RESULT"], "w") as fh:
        fh.write(f"{cycles:x} {counters:x}\n")
