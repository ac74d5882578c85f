"""Ethernet II / IPv4 / UDP build and parse (RFC 894, RFC 791, RFC 768).

Frames are stored without the Ethernet FCS (pcap LINKTYPE_ETHERNET); the MAC
adds and checks it.  `parse_udp_frame` applies the venue's ingress filter and
returns a drop reason from `DROP_REASONS`, first failing check wins, in the
order listed there.
"""

from __future__ import annotations

import struct

from .layout import Layout

ETHERNET = Layout("Ethernet", [("dst", "u", 6), ("src", "u", 6), ("ethertype", "u", 2)])
IPV4 = Layout("IPv4", [
    ("version_ihl", "u", 1), ("dscp_ecn", "u", 1), ("total_length", "u", 2),
    ("identification", "u", 2), ("flags_fragment", "u", 2), ("ttl", "u", 1),
    ("protocol", "u", 1), ("checksum", "u", 2), ("src", "u", 4), ("dst", "u", 4),
])
UDP = Layout("UDP", [("src_port", "u", 2), ("dst_port", "u", 2), ("length", "u", 2),
                     ("checksum", "u", 2)])

ETHERTYPE_IPV4 = 0x0800
IPV4_VERSION_IHL = 0x45            # version 4, 5-word header: options are not accepted
IP_FLAG_DF = 0x4000
IP_FLAG_MF = 0x2000
IP_FRAGMENT_OFFSET_MASK = 0x1FFF
PROTO_UDP = 17
HEADERS_SIZE = ETHERNET.size + IPV4.size + UDP.size   # 42
MIN_FRAME = 60                     # without FCS; shorter frames are zero-padded

# Ingress drop reasons, in precedence order (first failing check is counted).
DROP_REASONS = (
    "truncated",      # frame shorter than the headers it claims
    "mac_filter",     # destination MAC is not the venue's
    "not_ipv4",       # EtherType is not IPv4 (VLAN tags included)
    "ip_header",      # IPv4 version/IHL not 4/5 (no options)
    "ip_length",      # total length below 28 or beyond the frame
    "ip_checksum",    # IPv4 header checksum wrong
    "ip_fragment",    # MF set or fragment offset non-zero
    "not_udp",        # protocol is not UDP
    "ip_filter",      # destination IP is not the venue's
    "udp_length",     # UDP length differs from IPv4 total length - 20
    "port_filter",    # destination port is not the order-entry port
    "udp_checksum",   # UDP checksum non-zero and wrong
)


def ones_complement_sum(data: bytes, initial: int = 0) -> int:
    """16-bit ones' complement sum of `data` (odd length padded with a zero byte).

    Computed as the big-endian integer of the data modulo 0xFFFF, which equals
    the end-around-carry sum of its 16-bit words (a non-zero multiple of 0xFFFF
    sums to 0xFFFF, never 0).
    """
    if len(data) & 1:
        data = data + b"\0"
    n = int.from_bytes(data, "big") + initial
    r = n % 0xFFFF
    return 0xFFFF if r == 0 and n else r


def internet_checksum(data: bytes) -> int:
    return ~ones_complement_sum(data) & 0xFFFF


def udp_checksum(src_ip: int, dst_ip: int, udp_segment: bytes) -> int:
    """UDP checksum over the IPv4 pseudo-header; a computed zero is sent as 0xFFFF."""
    pseudo = struct.pack("!IIBBH", src_ip, dst_ip, 0, PROTO_UDP, len(udp_segment))
    csum = ~ones_complement_sum(udp_segment, ones_complement_sum(pseudo)) & 0xFFFF
    return csum or 0xFFFF


def build_udp_frame(*, src_mac: int, dst_mac: int, src_ip: int, dst_ip: int,
                    src_port: int, dst_port: int, payload: bytes, ttl: int,
                    identification: int = 0) -> bytes:
    """An Ethernet/IPv4/UDP frame with both checksums computed, padded to 60 bytes.

    Header rules (docs/protocol.md): DSCP/ECN 0, DF set, identification 0 unless
    given, no IP options.
    """
    udp_len = UDP.size + len(payload)
    ip_hdr = IPV4.pack((IPV4_VERSION_IHL, 0, IPV4.size + udp_len, identification,
                        IP_FLAG_DF, ttl, PROTO_UDP, 0, src_ip, dst_ip))
    ip_hdr = ip_hdr[:10] + struct.pack("!H", internet_checksum(ip_hdr)) + ip_hdr[12:]
    udp_hdr = UDP.pack((src_port, dst_port, udp_len, 0))
    csum = udp_checksum(src_ip, dst_ip, udp_hdr + payload)
    udp_hdr = udp_hdr[:6] + struct.pack("!H", csum)
    frame = ETHERNET.pack((dst_mac, src_mac, ETHERTYPE_IPV4)) + ip_hdr + udp_hdr + payload
    if len(frame) < MIN_FRAME:
        frame += bytes(MIN_FRAME - len(frame))
    return frame


class UdpDatagram:
    """What the ingress filter passes on: addressing plus the UDP payload."""
    __slots__ = ("src_mac", "src_ip", "src_port", "dst_port", "payload")

    def __init__(self, src_mac, src_ip, src_port, dst_port, payload):
        self.src_mac = src_mac
        self.src_ip = src_ip
        self.src_port = src_port
        self.dst_port = dst_port
        self.payload = payload


def parse_udp_frame(frame: bytes, *, mac: int | None, ip: int | None,
                    port: int | None):
    """Parse and filter one frame.  Returns (drop_reason, None) or (None, UdpDatagram).

    `mac`, `ip`, `port` are the accepted destination; None accepts any (decoders).
    Bytes after the IPv4 total length (Ethernet padding) are ignored.
    """
    n = len(frame)
    if n < ETHERNET.size:
        return "truncated", None
    dst_mac, src_mac, ethertype = ETHERNET.unpack(frame)
    if mac is not None and dst_mac != mac:
        return "mac_filter", None
    if ethertype != ETHERTYPE_IPV4:
        return "not_ipv4", None
    if n < ETHERNET.size + IPV4.size:
        return "truncated", None
    ip_hdr = IPV4.unpack(frame, ETHERNET.size)
    if ip_hdr.version_ihl != IPV4_VERSION_IHL:
        return "ip_header", None
    total = ip_hdr.total_length
    if total < IPV4.size + UDP.size or ETHERNET.size + total > n:
        return "ip_length", None
    if ones_complement_sum(frame[ETHERNET.size:ETHERNET.size + IPV4.size]) != 0xFFFF:
        return "ip_checksum", None
    if ip_hdr.flags_fragment & (IP_FLAG_MF | IP_FRAGMENT_OFFSET_MASK):
        return "ip_fragment", None
    if ip_hdr.protocol != PROTO_UDP:
        return "not_udp", None
    if ip is not None and ip_hdr.dst != ip:
        return "ip_filter", None
    udp_off = ETHERNET.size + IPV4.size
    udp_hdr = UDP.unpack(frame, udp_off)
    if udp_hdr.length != total - IPV4.size:
        return "udp_length", None
    if port is not None and udp_hdr.dst_port != port:
        return "port_filter", None
    segment = frame[udp_off:ETHERNET.size + total]
    if udp_hdr.checksum != 0:
        pseudo = struct.pack("!IIBBH", ip_hdr.src, ip_hdr.dst, 0, PROTO_UDP, len(segment))
        if ones_complement_sum(segment, ones_complement_sum(pseudo)) != 0xFFFF:
            return "udp_checksum", None
    return None, UdpDatagram(src_mac, ip_hdr.src, udp_hdr.src_port, udp_hdr.dst_port,
                             segment[UDP.size:])


def mac_from_str(text: str) -> int:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return int("".join(parts), 16)


def mac_to_str(mac: int) -> str:
    return ":".join(f"{b:02x}" for b in mac.to_bytes(6, "big"))


def ip_from_str(text: str) -> int:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def ip_to_str(ip: int) -> str:
    return ".".join(str(b) for b in ip.to_bytes(4, "big"))


def multicast_mac(ip: int) -> int:
    """RFC 1112 mapping of an IPv4 multicast group to 01:00:5e + low 23 bits."""
    return 0x01005E000000 | (ip & 0x7FFFFF)


def is_multicast(ip: int) -> bool:
    return (ip >> 28) == 0xE
