"""Interoperability: tools written by others read tickcore's traffic.

- tshark's MoldUDP64 dissector parses the feed (and the UFO-shaped order-entry
  packets) with the sessions, sequence numbers and message bytes we meant,
  and Wireshark verifies every IPv4 and UDP checksum as good;
- itchfeed (an independent ITCH 5.0 parser from PyPI) decodes every market
  data message to the field values refmodel encoded.

tshark is installed by `make test` when missing; this test fails (it does not
skip) without it.
"""

import shutil
import subprocess

import itch.messages as itchfeed
import pytest

from tickcore.host.gen import FlowGenerator, GenOptions
from tickcore.refmodel import moldudp64
from tickcore.refmodel.config import load_config
from tickcore.refmodel.decode import decode_records
from tickcore.refmodel.packet import parse_udp_frame
from tickcore.refmodel.pcap import write_pcap
from tickcore.refmodel.venue import run_records


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    cfg = load_config()
    recs = list(FlowGenerator(cfg, GenOptions(seed=11, orders=3000, malformed=0.01)).frames())
    out = list(run_records(cfg, recs))
    path = tmp_path_factory.mktemp("interop") / "out.pcap"
    write_pcap(path, out)
    return cfg, out, path


def tshark(path, *args):
    exe = shutil.which("tshark")
    assert exe, "tshark is not installed: run `make test`, which installs it"
    res = subprocess.run([exe, "-r", str(path), *args], capture_output=True, text=True,
                         check=True)
    return [line.split("\t") for line in res.stdout.splitlines()]


def test_tshark_reads_the_feed_as_moldudp64(flow):
    cfg, out, path = flow
    rows = tshark(path, "-d", f"udp.port=={cfg.feed_port},moldudp64",
                  "-d", f"udp.port=={cfg.oe_port},moldudp64",
                  "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                  "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
                  "-e", "frame.number", "-e", "ip.checksum.status", "-e", "udp.checksum.status",
                  "-e", "moldudp64.session", "-e", "moldudp64.sequence",
                  "-e", "moldudp64.count", "-e", "moldudp64.msgdata", "-e", "_ws.malformed")
    assert len(rows) == len(out)
    for row, (_, frame) in zip(rows, out, strict=True):
        number, ip_ok, udp_ok, session, seq, count, data, malformed = row
        assert (ip_ok, udp_ok, malformed) == ("1", "1", ""), f"frame {number}"
        _, dgram = parse_udp_frame(frame, mac=None, ip=None, port=None)
        header, messages = moldudp64.parse_packet(dgram.payload)
        assert session == header.session
        assert int(seq) == header.sequence and int(count) == header.count
        theirs = [bytes.fromhex(x.replace(":", "")) for x in data.split("|")] if data else []
        assert theirs == messages, f"frame {number}"


FIELDS = {  # our field name -> itchfeed attribute, per message type
    "S": {"event_code": "event_code"},
    "R": {"stock": "stock", "round_lot_size": "round_lot_size",
          "market_category": "market_category"},
    "H": {"stock": "stock", "trading_state": "trading_state"},
    "A": {"order_ref": "order_reference_number", "side": "buy_sell_indicator",
          "shares": "shares", "stock": "stock", "price": "price"},
    "E": {"order_ref": "order_reference_number", "shares": "executed_shares",
          "match_number": "match_number"},
    "X": {"order_ref": "order_reference_number", "shares": "cancelled_shares"},
    "D": {"order_ref": "order_reference_number"},
    "U": {"original_ref": "order_reference_number", "new_ref": "new_order_reference_number",
          "shares": "shares", "price": "price"},
    "P": {"order_ref": "order_reference_number", "side": "buy_sell_indicator",
          "shares": "shares", "stock": "stock", "price": "price",
          "match_number": "match_number"},
}


def test_itchfeed_parses_every_market_data_message(flow):
    cfg, out, _ = flow
    seen = set()
    for d, raw in _itch_messages(cfg, out):
        msg = itchfeed.messages[raw[:1]](raw)
        assert msg.message_size == len(raw)
        assert msg.stock_locate == d["locate"] and msg.timestamp == d["timestamp"]
        for ours, theirs in FIELDS[d["msg_type"]].items():
            value = getattr(msg, theirs)
            if isinstance(value, bytes):
                value = value.decode("latin-1").rstrip()
            assert value == d[ours], (d, theirs)
        assert msg.to_bytes() == raw
        seen.add(d["msg_type"])
    assert seen >= set("SRHAEXDUP"), f"the flow did not exercise every type: {seen}"


def _itch_messages(cfg, out):
    for d in decode_records(cfg, out):
        if d.get("stream") != "itch" or d["type"] in ("EndOfSession", "Heartbeat"):
            continue
        frame = out[d["frame"]][1]
        _, dgram = parse_udp_frame(frame, mac=None, ip=None, port=None)
        header, messages = moldudp64.parse_packet(dgram.payload)
        yield d, messages[d["seq"] - header.sequence]


OUCH_FIELDS = {  # tshark field -> our field, per message type (Wireshark's OUCH 4.x names)
    "EnterOrder": {"ouch.order_token": "token", "ouch.shares": "shares",
                   "ouch.stock": "stock", "ouch.min_quantity": "min_qty"},
    "ReplaceOrder": {"ouch.existing_order_token": "existing_token",
                     "ouch.replacement_order_token": "replacement_token",
                     "ouch.shares": "shares"},
    "CancelOrder": {"ouch.order_token": "token", "ouch.shares": "shares"},
    "Accepted": {"ouch.order_token": "token", "ouch.shares": "shares", "ouch.stock": "stock",
                 "ouch.order_reference_number": "order_ref", "ouch.firm": "firm"},
    "Replaced": {"ouch.replacement_order_token": "replacement_token",
                 "ouch.previous_order_token": "previous_token", "ouch.shares": "shares",
                 "ouch.order_reference_number": "order_ref"},
    "Canceled": {"ouch.order_token": "token", "ouch.decrement_shares": "decrement"},
    "Executed": {"ouch.order_token": "token", "ouch.executed_shares": "shares",
                 "ouch.match_number": "match_number"},
    "Rejected": {"ouch.order_token": "token"},
    "CancelReject": {"ouch.order_token": "token"},
    "SystemEvent": {},
}


def test_tshark_reads_order_entry_as_ouch(flow, tmp_path):
    """Every OUCH message of the flow (client requests and venue responses), carried
    in SoupBinTCP over TCP as a real OUCH port would, decoded by Wireshark's OUCH
    4.x dissector to the same field values."""
    from tickcore.host import soupbintcp
    from tickcore.host.serve_replay import build_tcp_frame
    cfg, out, _ = flow
    inbound = list(FlowGenerator(cfg, GenOptions(seed=11, orders=3000,
                                                 malformed=0.01)).frames())
    ours, frames, seq = [], [], {}
    for d, raw in _oe_messages(cfg, inbound, "ouch_in") + _oe_messages(cfg, out, "ouch_out"):
        to_venue = d["stream"] == "ouch_in"
        key = (d["session"], to_venue)
        pkt = soupbintcp.unsequenced(raw) if to_venue else soupbintcp.sequenced(raw)
        client = cfg.session_by_name(d["session"].ljust(10))
        ends = [(client.mac, client.ip, 50000 + client.index), (cfg.mac, cfg.ip, cfg.oe_port)]
        (smac, sip, sport), (dmac, dip, dport) = ends if to_venue else ends[::-1]
        frames.append((d["ts"], build_tcp_frame(
            src_mac=smac, dst_mac=dmac, src_ip=sip, dst_ip=dip, src_port=sport,
            dst_port=dport, seq=seq.get(key, 1), ack=1, payload=pkt, ttl=64)))
        seq[key] = seq.get(key, 1) + len(pkt)
        ours.append(d)
    path = tmp_path / "ouch.pcap"
    write_pcap(path, frames)
    fields = sorted({f for m in OUCH_FIELDS.values() for f in m})
    rows = tshark(path, "-d", f"tcp.port=={cfg.oe_port},soupbintcp", "-T", "fields",
                  "-e", "ouch.packet_type", *[x for f in fields for x in ("-e", f)])
    assert len(rows) == len(ours)
    seen = set()
    for row, d in zip(rows, ours, strict=True):
        values = dict(zip(fields, row[1:], strict=True))
        assert row[0].strip("'") == (d["msg_type"] if d["type"] != "Replaced" else "U"), d
        for theirs, mine in OUCH_FIELDS[d["type"]].items():
            assert values[theirs].strip() == str(d[mine]).strip(), (d, theirs, values[theirs])
        seen.add(d["type"])
    assert seen == set(OUCH_FIELDS), f"not every OUCH message type was exercised: {seen}"


def _oe_messages(cfg, records, stream):
    out = []
    for d in decode_records(cfg, records):
        if d.get("stream") != stream or "error" in d or d["type"] in (
                "Heartbeat", "MassCancel", "KillSwitch") \
                or cfg.session_by_name(d["session"].ljust(10)) is None:
            continue
        frame = records[d["frame"]][1]
        _, dgram = parse_udp_frame(frame, mac=None, ip=None, port=None)
        header, messages = moldudp64.parse_packet(dgram.payload)
        out.append((d, messages[d["seq"] - header.sequence]))
    return out
