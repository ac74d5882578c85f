"""`tickcore sim IN.pcap -o OUT.pcap --design loopback`: a pcap through the simulated gateware.

The frames of IN.pcap go through the design under Verilator (built on first
use, then cached in the build folder) and every frame it emits is written to
OUT.pcap, stamped with the ingress time of the inbound frame that caused it.
Prints the counters, the cycles taken and the simulation speed.
"""

from __future__ import annotations

import json
import sys

from .build import DESIGNS, ToolchainMissing


class SimError(Exception):
    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def add_arguments(sp) -> None:
    sp.add_argument("input", metavar="IN.pcap")
    sp.add_argument("-o", "--output", metavar="OUT.pcap", help="write the emitted frames here")
    sp.add_argument("--design", default="loopback", choices=DESIGNS,
                    help="gateware design (default loopback: the packet path, no book)")
    sp.add_argument("--width", type=int, default=8, choices=(8, 64),
                    help="datapath width in bits: 8 (1 GbE) or 64 (10 GbE); default 8")
    sp.add_argument("--build-dir", metavar="DIR",
                    help="Verilator build cache (default ./build/sim or $TICKCORE_BUILD/sim)")
    sp.add_argument("--stall", type=float, default=0.0, metavar="P",
                    help="probability of output back-pressure per cycle (default 0)")
    sp.add_argument("--idle", type=float, default=0.0, metavar="P",
                    help="probability of an idle cycle between inbound frames (default 0)")
    sp.add_argument("--seed", type=int, default=1, help="seed of the stall/idle pattern")
    sp.add_argument("--json", action="store_true", help="print the result as one JSON object")


def main_sim(args, cfg, records, write) -> int:
    from .run import simulate

    for name, p in (("--stall", args.stall), ("--idle", args.idle)):
        if not 0.0 <= p < 1.0:
            raise SimError(f"{name} must be a probability in [0, 1)")
    log = None if args.quiet or args.json else (lambda msg: print(msg, file=sys.stderr))
    try:
        res = simulate(cfg, records, design=args.design, width=args.width,
                       build_dir=args.build_dir, stall=args.stall, idle=args.idle,
                       seed=args.seed, log=log)
    except ToolchainMissing as exc:
        raise SimError(f"simulation toolchain missing: {exc}", 3) from None
    if args.output:
        write(args.output, res.outputs)
    rate = len(records) / res.seconds if res.seconds else 0.0
    summary = {
        "design": args.design, "width": args.width, "frames_in": len(records),
        "frames_out": len(res.outputs), "cycles": res.cycles,
        "seconds": round(res.seconds, 3), "frames_per_second": round(rate, 1),
        "counters": {k: v for k, v in res.counters.items() if v},
    }
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        print(f"{args.design} at {args.width} bits: {len(records)} frames in, "
              f"{len(res.outputs)} out, {res.cycles} cycles, {res.seconds:.2f} s "
              f"({rate:.0f} frames/s)" + (f" -> {args.output}" if args.output else ""))
        for k, v in summary["counters"].items():
            print(f"  {k:<24} {v}")
    return 0
