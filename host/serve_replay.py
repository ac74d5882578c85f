"""`tickcore replay JOURNAL -o out.pcap`: the live venue's outbound streams, offline.

The journal's events go through the same `Pipeline` the server ran
(host/serve_pipeline.py), with the configuration stored in the journal, and
every output becomes one pcap record stamped with the ingress timestamp of the
inbound message that caused it, in emission order (docs/serve.md, "Replay"):

  feed       the MoldUDP64 payload in an Ethernet/IPv4/UDP frame built by the
             refmodel egress rules (refmodel/egress.py `feed_frame`): the
             configured venue MAC/IP, feed source port, group MAC/IP and port
  UDP OE     the MoldUDP64 payload in the frame refmodel builds for that session
             (venue address and order-entry port to the session's configured
             MAC/IP/port), as `tickcore run` does
  SoupBinTCP one Sequenced Data packet per frame: Ethernet/IPv4/TCP from the venue
             MAC/IP and the configured order-entry port to the session's synthetic
             address (host/serve_config.py); TCP flags PSH|ACK, sequence number 1 +
             the bytes of that session's stream before it (as after a SYN with ISN 0),
             acknowledgment 1, window 65535, checksums computed

What this reproduces byte for byte is the payloads: each feed packet the
server published (not heartbeats or retransmission answers), each UDP
order-entry response, and each session's SoupBinTCP Sequenced Data packets in
sequence-number order.  Frame headers come from the configuration, not from
the live sockets, and record times are ingress timestamps, not send times.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter

from tickcore.refmodel.egress import Egress
from tickcore.refmodel.layout import Layout
from tickcore.refmodel.packet import (
    ETHERNET,
    ETHERTYPE_IPV4,
    IP_FLAG_DF,
    IPV4,
    IPV4_VERSION_IHL,
    MIN_FRAME,
    build_udp_frame,
    internet_checksum,
    ones_complement_sum,
)
from tickcore.refmodel.pcap import PcapWriter

from . import journal as jr
from . import soupbintcp as sb
from .serve_config import spec_from_effective
from .serve_pipeline import OUT_FEED, OUT_TCP, OUT_UDP, Pipeline

TCP = Layout("TCP", [
    ("src_port", "u", 2), ("dst_port", "u", 2), ("seq", "u", 4), ("ack", "u", 4),
    ("offset_flags", "u", 2), ("window", "u", 2), ("checksum", "u", 2), ("urgent", "u", 2),
])
PROTO_TCP = 6
TCP_PSH_ACK = 0x18
TCP_DATA_OFFSET = 5 << 12          # 20-byte header, no options


class ReplayError(Exception):
    """The journal cannot be replayed; the message says why."""


def build_tcp_frame(*, src_mac: int, dst_mac: int, src_ip: int, dst_ip: int, src_port: int,
                    dst_port: int, seq: int, ack: int, payload: bytes, ttl: int) -> bytes:
    """Ethernet/IPv4/TCP, PSH|ACK, both checksums computed, padded to 60 bytes."""
    seg_len = TCP.size + len(payload)
    ip_hdr = IPV4.pack((IPV4_VERSION_IHL, 0, IPV4.size + seg_len, 0, IP_FLAG_DF, ttl,
                        PROTO_TCP, 0, src_ip, dst_ip))
    ip_hdr = ip_hdr[:10] + struct.pack("!H", internet_checksum(ip_hdr)) + ip_hdr[12:]
    tcp_hdr = TCP.pack((src_port, dst_port, seq & 0xFFFFFFFF, ack, TCP_DATA_OFFSET | TCP_PSH_ACK,
                        65535, 0, 0))
    pseudo = struct.pack("!IIBBH", src_ip, dst_ip, 0, PROTO_TCP, seg_len)
    csum = ~ones_complement_sum(tcp_hdr + payload, ones_complement_sum(pseudo)) & 0xFFFF
    tcp_hdr = tcp_hdr[:16] + struct.pack("!H", csum) + tcp_hdr[18:]
    frame = ETHERNET.pack((dst_mac, src_mac, ETHERTYPE_IPV4)) + ip_hdr + tcp_hdr + payload
    if len(frame) < MIN_FRAME:
        frame += bytes(MIN_FRAME - len(frame))
    return frame


def journal_file(path) -> str:
    path = os.fspath(path)
    return jr.journal_path(path) if os.path.isdir(path) else path


def replay_events(path, engine: str = "reference"):
    """Run a journal through the pipeline.  Returns (spec, pipeline, outputs, reader)
    with outputs = [(ts, kind, session, bytes)] in emission order."""
    reader = jr.JournalReader(journal_file(path))
    outputs = []
    pipeline = spec = None
    try:
        for kind, ts, payload in reader:
            if kind == jr.CONFIG:
                spec = spec_from_effective(json.loads(payload.decode("utf-8")))
                pipeline = Pipeline(spec, engine)
                continue
            if kind == jr.OPEN:
                out = pipeline.open(ts)
            elif kind == jr.UDP:
                out = pipeline.on_udp(ts, jr.split_udp(payload)[2])
            elif kind == jr.TCP:
                out = pipeline.on_tcp(ts, *jr.split_tcp(payload))
            else:
                out = pipeline.close(ts)
            outputs.extend((ts, k, s, data) for k, s, data in out)
    except FileNotFoundError:
        raise ReplayError(f"{path}: no journal there") from None
    except (jr.JournalError, ValueError, KeyError) as exc:
        raise ReplayError(str(exc)) from None
    if spec is None:
        raise ReplayError(f"{path}: empty journal")
    return spec, pipeline, outputs, reader


def frames(spec, outputs):
    """pcap records (ts, frame) of replayed outputs (module docstring)."""
    cfg = spec.cfg
    egress = Egress(cfg)
    tcp_seq = Counter()
    for ts, kind, session, data in outputs:
        if kind == OUT_FEED:
            yield ts, egress.feed_frame(data)
        elif kind == OUT_UDP:
            s = cfg.sessions[session]
            yield ts, build_udp_frame(src_mac=cfg.mac, dst_mac=s.mac, src_ip=cfg.ip,
                                      dst_ip=s.ip, src_port=cfg.oe_port, dst_port=s.port,
                                      payload=data, ttl=cfg.ttl)
        elif kind == OUT_TCP:
            s = cfg.sessions[session]
            packet = sb.sequenced(data)
            yield ts, build_tcp_frame(src_mac=cfg.mac, dst_mac=s.mac, src_ip=cfg.ip,
                                      dst_ip=s.ip, src_port=cfg.oe_port, dst_port=s.port,
                                      seq=1 + tcp_seq[session], ack=1, payload=packet,
                                      ttl=cfg.ttl)
            tcp_seq[session] += len(packet)


def write_replay(path, output, engine: str = "reference") -> dict:
    """Replay a journal into a pcap file; returns a summary."""
    spec, pipeline, outputs, reader = replay_events(path, engine)
    n = 0
    try:
        with PcapWriter(output) as w:
            for ts, frame in frames(spec, outputs):
                w.write(ts, frame)
                n += 1
    except OSError as exc:
        raise ReplayError(f"{output}: cannot write ({exc.strerror})") from None
    kinds = Counter(k for _, k, _, _ in outputs)
    return {"journal_records": reader.count, "torn_bytes": reader.torn_bytes,
            "frames": n, "feed_packets": kinds[OUT_FEED], "udp_packets": kinds[OUT_UDP],
            "tcp_messages": kinds[OUT_TCP], "feed_messages": len(pipeline.feed_messages),
            "closed": pipeline.closed}


def main_replay(args) -> int:
    summary = write_replay(args.journal, args.output, args.engine)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    elif not args.quiet:
        torn = f", torn tail of {summary['torn_bytes']} bytes ignored" \
            if summary["torn_bytes"] else ""
        print(f"replayed {summary['journal_records']} journal records{torn}: "
              f"{summary['frames']} frames ({summary['feed_packets']} feed packets, "
              f"{summary['udp_packets']} UDP order-entry packets, {summary['tcp_messages']} "
              f"SoupBinTCP messages) to {args.output}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("journal", metavar="JOURNAL", help="journal directory (or its journal.tcj)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.pcap")
    p.add_argument("--engine", default="reference", choices=("reference", "software"))
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true")
