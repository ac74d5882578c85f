"""Compile the fast engine once and cache it: `python -m tickcore.host.fast.warmup`.

numba keeps compiled code on disk next to the sources; the first import after
installation otherwise spends about half a minute compiling.  `make` runs this
right after building the virtual environment.
"""

from __future__ import annotations

import time


def main() -> None:
    from tickcore.host.gen import FlowGenerator, GenOptions
    from tickcore.refmodel.config import load_config

    from .engine import FastEngine
    t0 = time.perf_counter()
    cfg = load_config()
    records = list(FlowGenerator(cfg, GenOptions(seed=1, orders=300, malformed=0.1)).frames())
    for mode in ("match", "loopback"):
        FastEngine(cfg, mode, latency_samples=1).run(records)
        FastEngine(cfg, mode).run(records)
    print(f"fast engine compiled and cached in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
