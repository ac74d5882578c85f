"""pcap files (the classic libpcap format), LINKTYPE_ETHERNET.

Reads microsecond and nanosecond files in either byte order; writes
nanosecond files (magic 0xa1b23c4d), little-endian, snaplen 65535.
Timestamps are integers: nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapError(ValueError):
    """The file is not a pcap file tickcore can read."""


def read_pcap(path) -> Iterator[tuple[int, bytes]]:
    """Yield (timestamp_ns, frame) for every record of a pcap file."""
    with open(path, "rb") as fh:
        yield from read_pcap_stream(fh, str(path))


def read_pcap_stream(fh: BinaryIO, name: str = "<stream>") -> Iterator[tuple[int, bytes]]:
    head = fh.read(_GLOBAL.size)
    if len(head) < _GLOBAL.size:
        raise PcapError(f"{name}: too short for a pcap header")
    (magic,) = struct.unpack("<I", head[:4])
    if magic in (MAGIC_US, MAGIC_NS):
        endian = "<"
    else:
        (magic,) = struct.unpack(">I", head[:4])
        if magic not in (MAGIC_US, MAGIC_NS):
            raise PcapError(f"{name}: not a pcap file (magic {head[:4].hex()})")
        endian = ">"
    linktype = struct.unpack(endian + "I", head[20:24])[0] & 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise PcapError(f"{name}: link type {linktype} is not Ethernet (1)")
    frac_ns = 1 if magic == MAGIC_NS else 1000
    record = struct.Struct(endian + "IIII")
    index = 0
    while True:
        rec = fh.read(record.size)
        if not rec:
            return
        if len(rec) < record.size:
            raise PcapError(f"{name}: record {index} header truncated")
        sec, frac, incl, _orig = record.unpack(rec)
        data = fh.read(incl)
        if len(data) < incl:
            raise PcapError(f"{name}: record {index} data truncated")
        yield sec * 1_000_000_000 + frac * frac_ns, data
        index += 1


class PcapWriter:
    """Write a nanosecond pcap file record by record."""

    def __init__(self, path):
        self._fh = open(path, "wb")
        self._fh.write(_GLOBAL.pack(MAGIC_NS, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def write(self, ts_ns: int, frame: bytes) -> None:
        sec, ns = divmod(ts_ns, 1_000_000_000)
        self._fh.write(_RECORD.pack(sec, ns, len(frame), len(frame)))
        self._fh.write(frame)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_pcap(path, records) -> int:
    """Write (timestamp_ns, frame) records; returns how many."""
    n = 0
    with PcapWriter(path) as w:
        for ts, frame in records:
            w.write(ts, frame)
            n += 1
    return n
