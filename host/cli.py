"""The `tickcore` command line.

Exit codes: 0 success; 1 a check failed (--verify mismatch); 2 bad usage or
unreadable input; 3 the requested engine is not available here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

from tickcore.refmodel.config import ConfigError, load_config
from tickcore.refmodel.decode import decode_records
from tickcore.refmodel.pcap import PcapError, write_pcap
from tickcore.refmodel.venue import MODES

from . import engines
from .gen import FlowGenerator, GenOptions
from .summary import summary_dict, summary_text

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


class Progress:
    """One status line on stderr, at most every half second, only on a terminal."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total = label, total
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.enabled and now - self._last > 0.5:
            self._last = now
            pct = 100 * done / self.total if self.total else 100
            print(f"\r{self.label}: {done}/{self.total} ({pct:.0f}%)", end="",
                  file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and self._last:
            print(file=sys.stderr)


def _config(args):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None


def _read(path: str):
    """The frames of a pcap file, as FrameArrays (a sequence of (ts, frame))."""
    from .fast.frames import FrameArrays
    try:
        return FrameArrays.from_pcap(path)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except PcapError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None


def _write(path: str, records) -> int:
    try:
        if hasattr(records, "write_pcap"):
            return records.write_pcap(path)
        return write_pcap(path, records)
    except OSError as exc:
        raise CliError(f"{path}: cannot write ({exc.strerror})") from None


def digest(records) -> str:
    """SHA-256 over every record as 8-byte big-endian ts, 4-byte length, frame."""
    if hasattr(records, "sha256"):
        return records.sha256()
    h = hashlib.sha256()
    for ts, frame in records:
        h.update(ts.to_bytes(8, "big"))
        h.update(len(frame).to_bytes(4, "big"))
        h.update(frame)
    return h.hexdigest()


# -- gen ---------------------------------------------------------------------


def cmd_gen(args) -> int:
    cfg = _config(args)
    try:
        gen = FlowGenerator(cfg, GenOptions(seed=args.seed, orders=args.orders,
                                            symbols=args.symbols, malformed=args.malformed))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    progress = Progress("gen", args.orders, not args.quiet)
    records = []
    for rec in gen.frames():
        records.append(rec)
        if len(records) % 4096 == 0:
            progress.update(len(records))
    progress.done()
    n = _write(args.output, records)
    if not args.quiet:
        span = (records[-1][0] - records[0][0]) / 1e9 if records else 0.0
        print(f"wrote {n} frames ({args.orders} messages, seed {args.seed}, "
              f"{span:.3f} s of market time) to {args.output}")
    return EXIT_OK


# -- run ---------------------------------------------------------------------


def _run_once(args, cfg, records):
    progress = Progress(f"run ({args.engine})", len(records),
                        not getattr(args, "quiet", False) and not getattr(args, "json", False))
    try:
        _, runner, notes = engines.resolve(args.engine)
        result = runner(cfg, args.mode, records, progress=lambda done, _: progress.update(done))
    except engines.EngineUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    progress.done()
    result.notes = notes + result.notes
    return result


def cmd_run(args) -> int:
    cfg = _config(args)
    records = _read(args.input)
    result = _run_once(args, cfg, records)
    out_digest = digest(result.outputs)
    verified = None
    if args.verify:
        again = _run_once(args, cfg, records)
        verified = digest(again.outputs) == out_digest
    if args.output:
        _write(args.output, result.outputs)
    span = records[-1][0] - records[0][0] if records else 0
    s = summary_dict(cfg, result, input_frames=len(records), span_ns=span)
    s["output_sha256"] = out_digest
    if verified is not None:
        s["verified"] = verified
    if args.json:
        print(json.dumps(s))
    elif not args.quiet:
        print(summary_text(s))
        print(f"output sha256: {out_digest}" + (f" -> {args.output}" if args.output else ""))
        if verified is not None:
            print("verify: second run " + ("byte-identical (same digest)" if verified
                                           else "DIFFERS: outputs are not deterministic"))
    return EXIT_OK if verified is not False else EXIT_CHECK_FAILED


# -- decode ------------------------------------------------------------------


def _text_line(d: dict) -> str:
    head = f"#{d['frame']:<6} {d['ts']}"
    if "error" in d:
        return f"{head} {d.get('stream', '?'):<8} ERROR {d['error']}"
    fields = " ".join(f"{k}={v}" for k, v in d.items()
                      if k not in ("frame", "ts", "stream", "session", "seq", "type",
                                   "msg_type"))
    return f"{head} {d['stream']:<8} {d['session']:<10} {d['seq']:>8} {d['type']:<16} {fields}"


def cmd_decode(args) -> int:
    cfg = _config(args)
    records = _read(args.input)
    out = sys.stdout
    try:
        for d in decode_records(cfg, records):
            out.write((json.dumps(d) if args.json else _text_line(d)) + "\n")
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


# -- demo --------------------------------------------------------------------


def cmd_demo(args) -> int:
    cfg = _config(args)
    workdir = args.dir or tempfile.mkdtemp(prefix="tickcore-demo-")
    os.makedirs(workdir, exist_ok=True)
    flow = os.path.join(workdir, "flow.pcap")
    out = os.path.join(workdir, "out.pcap")
    print(f"== tickcore demo in {workdir}")
    print(f"== 1. generate {args.orders} order-entry messages (1% damaged frames): "
          f"tickcore gen --seed {args.seed} --orders {args.orders} --malformed 0.01 -o {flow}")
    records = list(FlowGenerator(cfg, GenOptions(seed=args.seed, orders=args.orders,
                                                 malformed=0.01)).frames())
    _write(flow, records)
    print(f"== 2. match them: tickcore run {flow} -o {out} --verify")
    run_args = argparse.Namespace(engine=args.engine, mode="match")
    result = _run_once(run_args, cfg, records)
    again = _run_once(run_args, cfg, records)
    _write(out, result.outputs)
    s = summary_dict(cfg, result, input_frames=len(records),
                     span_ns=records[-1][0] - records[0][0])
    print(summary_text(s))
    same = digest(again.outputs) == digest(result.outputs)
    print(f"verify: two runs {'byte-identical' if same else 'DIFFER'} "
          f"(sha256 {digest(result.outputs)[:16]}...)")
    print(f"== 3. the first trade on the wire: tickcore decode {out}")
    decoded = list(decode_records(cfg, result.outputs))
    first = next((i for i, d in enumerate(decoded) if d.get("type") == "OrderExecuted"), None)
    if first is not None:
        match = decoded[first]["match_number"]
        for d in decoded:
            if d.get("match_number") == match:
                print("  " + _text_line(d))
    return EXIT_OK if same else EXIT_CHECK_FAILED


# -- serve, replay (the live venue: host/serve.py, host/serve_replay.py) -----


def cmd_serve(args) -> int:
    from .serve import ServeError, main_serve
    try:
        return main_serve(args)
    except ServeError as exc:
        raise CliError(str(exc)) from None


def cmd_replay(args) -> int:
    from .serve_replay import ReplayError, main_replay
    try:
        return main_replay(args)
    except ReplayError as exc:
        raise CliError(str(exc)) from None


# -- sim (the gateware under Verilator: sim/cli.py) --------------------------


def cmd_sim(args) -> int:
    from tickcore.sim.cli import SimError, main_sim
    cfg = _config(args)
    records = _read(args.input)
    try:
        return main_sim(args, cfg, records, _write)
    except SimError as exc:
        raise CliError(str(exc), exc.code) from None


# -- bench -------------------------------------------------------------------


def cmd_bench(args) -> int:
    from .bench import json_report, markdown_report, run_bench, text_report
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    unknown = set(engines) - {"reference", "software", "peer"}
    if unknown:
        raise CliError(f"unknown engine(s) for bench: {', '.join(sorted(unknown))}")
    if args.orders < 1000:
        raise CliError("--orders must be at least 1000")
    progress = None if args.json or args.quiet else \
        (lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    result = run_bench(orders=args.orders, seed=args.seed, repeat=args.repeat,
                       serve=not args.no_serve, serve_samples=args.serve_samples,
                       engines=engines, progress=progress)
    if args.markdown:
        print(markdown_report(result, "tickcore bench " + " ".join(sys.argv[2:])))
    else:
        print(json_report(result) if args.json else text_report(result))
    return EXIT_OK


# -- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickcore", description=__doc__.split("\n")[0] + " "
                                "FPGA matching engine and its bit-exact Python twin.")
    p.add_argument("--version", action="version", version="tickcore 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp):
        sp.add_argument("--config", metavar="CFG",
                        help="venue configuration JSON (default: built-in venue)")
        sp.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    g = sub.add_parser("gen", help="generate a synthetic order flow as a pcap file",
                       description="Generate realistic synthetic order-entry traffic.")
    g.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    g.add_argument("--orders", type=int, required=True, metavar="N",
                   help="number of order-entry messages")
    g.add_argument("--symbols", type=int, metavar="K", help="use the first K symbols")
    g.add_argument("--malformed", type=float, default=0.0, metavar="F",
                   help="fraction of frames damaged on purpose (0..1)")
    g.add_argument("-o", "--output", required=True, metavar="FLOW.pcap")
    common(g)
    g.set_defaults(func=cmd_gen)

    r = sub.add_parser("run", help="run a pcap of order entry through an engine",
                       description="The main job: frames in, frames out, and a summary.")
    r.add_argument("input", metavar="FLOW.pcap")
    r.add_argument("-o", "--output", metavar="OUT.pcap", help="write the output frames here")
    r.add_argument("--engine", default="auto", choices=engines.ENGINES,
                   help="auto (a board if one answers, else software), reference, "
                        "software, fpga or sim (default auto)")
    r.add_argument("--mode", default="match", choices=MODES,
                   help="match (the venue) or loopback (packet path only)")
    r.add_argument("--verify", action="store_true",
                   help="run twice and check the outputs are byte-identical")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    common(r)
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("decode", help="decode a pcap of tickcore traffic",
                       description="Every message decoded, one per line.")
    d.add_argument("input", metavar="FILE.pcap")
    d.add_argument("--json", action="store_true", help="one JSON object per line")
    common(d)
    d.set_defaults(func=cmd_decode)

    m = sub.add_parser("demo", help="generate, match and decode a small flow",
                       description="A short tour: gen, run --verify, decode.")
    m.add_argument("--dir", help="working directory (default: a new temporary one)")
    m.add_argument("--orders", type=int, default=20_000, help="messages (default 20000)")
    m.add_argument("--seed", type=int, default=7)
    m.add_argument("--engine", default="auto", choices=engines.ENGINES)
    common(m)
    m.set_defaults(func=cmd_demo)

    from . import serve, serve_replay
    b = sub.add_parser("bench", help="benchmark the engines side by side and the live venue",
                       description="Throughput and per-message latency of refmodel, the fast "
                                   "engine and a peer order-book library on one generated "
                                   "flow, and the serve round trip over loopback.")
    b.add_argument("--orders", type=int, default=200_000, help="flow size (default 200000)")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--repeat", type=int, default=3, help="runs per engine; medians reported")
    b.add_argument("--engines", default="reference,software,peer",
                   help="comma-separated subset of reference,software,peer")
    b.add_argument("--no-serve", action="store_true", help="skip the serve round trip")
    b.add_argument("--serve-samples", type=int, default=5_000,
                   help="round trips per transport (default 5000)")
    b.add_argument("--json", action="store_true",
                   help="one JSON object: a key per engine with msgs_per_s, p50_ns, p99_ns, "
                        "p999_ns")
    b.add_argument("--markdown", action="store_true",
                   help="print the docs/benchmarks.md section for this run")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    b.set_defaults(func=cmd_bench)

    sv = sub.add_parser("serve", help="run the live venue (SoupBinTCP/OUCH, UDP, ITCH feed)",
                        description="The engine as a live venue; see docs/serve.md.")
    serve.add_arguments(sv)
    sv.set_defaults(func=cmd_serve)
    rp = sub.add_parser("replay", help="rebuild a live venue's outbound streams from its journal",
                        description="Journal in, the outbound streams as a pcap out.")
    serve_replay.add_arguments(rp)
    rp.set_defaults(func=cmd_replay)

    from tickcore.sim import cli as sim_cli
    sm = sub.add_parser("sim", help="run a pcap through the simulated gateware (Verilator)",
                        description="Frames in, through the gateware under cocotb + Verilator, "
                                    "frames out.")
    sim_cli.add_arguments(sm)
    common(sm)
    sm.set_defaults(func=cmd_sim)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"tickcore {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"tickcore {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
