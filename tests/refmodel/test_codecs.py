"""Layouts against the published sizes and offsets, checksums, pcap, configuration."""

import io
import json
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickcore.refmodel import itch, moldudp64, ouch
from tickcore.refmodel.config import ConfigError, load_config
from tickcore.refmodel.layout import Layout
from tickcore.refmodel.packet import (
    build_udp_frame,
    internet_checksum,
    multicast_mac,
    parse_udp_frame,
)
from tickcore.refmodel.pcap import PcapError, read_pcap, read_pcap_stream, write_pcap

# Sizes from the OUCH 4.2 and ITCH 5.0 specifications (and Wireshark's OUCH dissector)
SPEC_SIZES = {
    ouch.ENTER_ORDER: 49, ouch.REPLACE_ORDER: 47, ouch.CANCEL_ORDER: 19,
    ouch.SYSTEM_EVENT: 10, ouch.ACCEPTED: 66, ouch.REPLACED: 80, ouch.CANCELED: 28,
    ouch.EXECUTED: 40, ouch.REJECTED: 24, ouch.CANCEL_REJECT: 23,
    itch.SYSTEM_EVENT: 12, itch.STOCK_DIRECTORY: 39, itch.TRADING_ACTION: 25,
    itch.ADD_ORDER: 36, itch.ORDER_EXECUTED: 31, itch.ORDER_CANCEL: 23,
    itch.ORDER_DELETE: 19, itch.ORDER_REPLACE: 35, itch.TRADE: 44,
    moldudp64.HEADER: 20,
}


@pytest.mark.parametrize("layout, size", SPEC_SIZES.items(), ids=lambda x: str(x))
def test_sizes_match_the_specifications(layout, size):
    assert layout.size == size


def test_offsets_of_key_fields():
    # ITCH 5.0 Add Order: Order Reference Number at 11, Price at 32
    assert itch.ADD_ORDER.field("order_ref").offset == 11
    assert itch.ADD_ORDER.field("price").offset == 32
    # OUCH 4.2 Accepted: Order Reference Number at 49, Order State at 64
    assert ouch.ACCEPTED.field("order_ref").offset == 49
    assert ouch.ACCEPTED.field("order_state").offset == 64
    assert ouch.REPLACED.field("previous_token").offset == 65


def _record_strategy(layout):
    fields = []
    for f in layout.fields:
        if f.kind == "u":
            fields.append(st.integers(0, (1 << (8 * f.size)) - 1))
        else:
            fields.append(st.text(st.characters(min_codepoint=0, max_codepoint=255),
                                  min_size=f.size, max_size=f.size))
    return st.tuples(*fields).map(layout.record._make)


@pytest.mark.parametrize("layout", list(SPEC_SIZES), ids=lambda x: x.name)
def test_pack_unpack_round_trip(layout):
    @given(_record_strategy(layout))
    def check(rec):
        raw = layout.pack(rec)
        assert len(raw) == layout.size
        if layout.type_code:
            assert raw[:1] == layout.type_code.encode()
        assert layout.unpack(raw) == rec
    check()


def test_pack_pads_alpha_with_spaces_and_refuses_overflow():
    raw = ouch.CANCEL_ORDER.build(token="AB", shares=1)
    assert raw == b"XAB" + b" " * 12 + b"\0\0\0\1"
    with pytest.raises(ValueError):
        ouch.CANCEL_ORDER.build(token="A" * 15, shares=1)
    with pytest.raises(ValueError):
        ouch.CANCEL_ORDER.build(token="A", shares=1 << 32)
    with pytest.raises(ValueError):
        itch.ORDER_DELETE.build(locate=0, tracking=0, timestamp=1 << 48, order_ref=1)
    with pytest.raises(ValueError):
        Layout("bad", [("x", "u", 3)])


def test_internet_checksum_rfc1071_example():
    # RFC 1071 section 3 example words 0001 f203 f4f5 f6f7 sum to ddf2
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == (~0xDDF2) & 0xFFFF


def test_built_frame_checksums_verify_and_parse_back():
    payload = bytes(range(37))
    f = build_udp_frame(src_mac=1, dst_mac=2, src_ip=0x0A000001, dst_ip=0x0A000002,
                        src_port=5, dst_port=6, payload=payload, ttl=9)
    reason, d = parse_udp_frame(f, mac=2, ip=0x0A000002, port=6)
    assert reason is None and d.payload == payload and d.src_port == 5
    assert internet_checksum(f[14:34]) == 0
    small = build_udp_frame(src_mac=1, dst_mac=2, src_ip=1, dst_ip=2, src_port=5,
                            dst_port=6, payload=b"x", ttl=9)
    assert len(small) == 60 and parse_udp_frame(small, mac=2, ip=2, port=6)[1].payload == b"x"


def test_multicast_mac():
    assert multicast_mac(0xEF010101) == 0x01005E010101        # 239.1.1.1


def test_pcap_round_trip_and_microsecond_big_endian(tmp_path):
    recs = [(1_700_000_000_123_456_789, b"\x01" * 60), (1_700_000_001_000_000_001, b"\x02")]
    p = tmp_path / "a.pcap"
    assert write_pcap(p, recs) == 2
    assert list(read_pcap(p)) == recs
    # a microsecond, big-endian file written by hand
    be = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    be += struct.pack(">IIII", 10, 5, 3, 3) + b"abc"
    assert list(read_pcap_stream(io.BytesIO(be))) == [(10_000_005_000, b"abc")]


@pytest.mark.parametrize("data, message", [
    (b"", "too short"), (b"\0" * 24, "not a pcap"),
    (struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101), "link type"),
    (struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1) + b"\0" * 5, "header truncated"),
    (struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
     + struct.pack("<IIII", 1, 1, 9, 9) + b"abc", "data truncated"),
])
def test_pcap_errors(data, message):
    with pytest.raises(PcapError, match=message):
        list(read_pcap_stream(io.BytesIO(data)))


def test_default_config_is_the_documented_venue():
    cfg = load_config()
    assert [s.stock.strip() for s in cfg.symbols] == \
        ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD"]
    aapl = cfg.symbols[0]
    assert (aapl.band_low, aapl.band_high, aapl.collar_buy, aapl.collar_sell) == \
        (1_665_000, 2_035_000, 1_942_500, 1_757_500)
    assert sum(s.admin for s in cfg.sessions) == 1 and len(cfg.sessions) == 9
    assert {s.stp for s in cfg.sessions} == {"none", "cancel_newest", "cancel_oldest",
                                             "cancel_both"}
    assert cfg.feed_mac == 0x01005E010101
    assert load_config(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize("override, message", [
    ({"bogus": 1}, "bogus: unknown key"),
    ({"venue": {"ttl": 0}}, "venue.ttl"),
    ({"venue": {"mac": "zz"}}, "venue.mac"),
    ({"capacity": {"token_map_buckets": 3}}, "power of two"),
    ({"symbols": []}, "symbols"),
    ({"symbols": [{"stock": "A", "ref_price": 101, "tick": 100}]}, "multiple of tick"),
    ({"symbols": [{"stock": "TOOLONGNAME", "ref_price": 100}]}, "symbols[0].stock"),
    ({"firms": [{"firm": "F", "stp": "maybe"}]}, "firms[0].stp"),
    ({"sessions": [{"name": "X", "firm": "NOPE", "ip": "1.2.3.4", "port": 1,
                    "mac": "02:00:00:00:00:01"}]}, "not in firms"),
    ({"feed": {"ip": "10.0.0.5"}}, "feed.mac"),
])
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(override)
    assert message in str(exc.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)


def test_crc_is_ieee():
    assert zlib.crc32(b"123456789") == 0xCBF43926
