"""Frames held in numpy arrays: one byte buffer, offsets, lengths, timestamps.

The fast engine reads and writes frames in this form, so that a run of a
million messages never builds a million Python objects: pcap files are parsed
and written by compiled loops, and the output digest is computed over the
buffer.  A `FrameArrays` still behaves as a sequence of (timestamp_ns, frame)
pairs for code that wants Python objects.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numba import njit

from tickcore.refmodel.pcap import (
    LINKTYPE_ETHERNET,
    MAGIC_NS,
    MAGIC_US,
    SNAPLEN,
    PcapError,
    read_pcap,
)

GLOBAL_HEADER = 24
RECORD_HEADER = 16


class FrameArrays:
    def __init__(self, buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                 ts: np.ndarray):
        self.buf, self.offsets, self.lengths, self.ts = buf, offsets, lengths, ts

    @classmethod
    def from_records(cls, records) -> FrameArrays:
        records = list(records)
        frames = [f for _, f in records]
        lengths = np.fromiter((len(f) for f in frames), np.int64, len(frames))
        offsets = np.zeros(len(frames), np.int64)
        if len(frames) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        buf = np.frombuffer(b"".join(frames) + b"\0", np.uint8)
        ts = np.fromiter((t for t, _ in records), np.int64, len(frames))
        return cls(buf, offsets, lengths, ts)

    @classmethod
    def concatenate(cls, parts: list) -> FrameArrays:
        if not parts:
            return cls(np.zeros(1, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64),
                       np.zeros(0, np.int64))
        bufs, offsets, base = [], [], 0
        for p in parts:
            used = int(p.offsets[-1] + p.lengths[-1]) if len(p) else 0
            bufs.append(p.buf[:used])
            offsets.append(p.offsets + base)
            base += used
        bufs.append(np.zeros(1, np.uint8))
        return cls(np.concatenate(bufs), np.concatenate(offsets),
                   np.concatenate([p.lengths for p in parts]),
                   np.concatenate([p.ts for p in parts]))

    @classmethod
    def from_pcap(cls, path) -> FrameArrays:
        """Parse a pcap file (microsecond or nanosecond, either byte order)."""
        data = np.fromfile(path, np.uint8)
        if data.size < GLOBAL_HEADER:
            raise PcapError(f"{path}: too short for a pcap header")
        magic_le = int.from_bytes(data[:4].tobytes(), "little")
        magic_be = int.from_bytes(data[:4].tobytes(), "big")
        if magic_le in (MAGIC_US, MAGIC_NS):
            big, magic = False, magic_le
        elif magic_be in (MAGIC_US, MAGIC_NS):
            big, magic = True, magic_be
        else:
            raise PcapError(f"{path}: not a pcap file (magic {data[:4].tobytes().hex()})")
        linktype = int.from_bytes(data[20:24].tobytes(), "big" if big else "little") & 0x0FFFFFFF
        if linktype != LINKTYPE_ETHERNET:
            raise PcapError(f"{path}: link type {linktype} is not Ethernet (1)")
        n, bad = _count_records(data, big)
        if bad >= 0:
            # let the reference reader produce the precise message
            for _ in read_pcap(path):
                pass
            raise PcapError(f"{path}: record {bad} truncated")
        offsets = np.zeros(n, np.int64)
        lengths = np.zeros(n, np.int64)
        ts = np.zeros(n, np.int64)
        _index_records(data, big, 1 if magic == MAGIC_NS else 1000, offsets, lengths, ts)
        return cls(data, offsets, lengths, ts)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i):
        off, n = int(self.offsets[i]), int(self.lengths[i])
        return int(self.ts[i]), self.buf[off:off + n].tobytes()

    def __iter__(self):
        data = self.buf.tobytes()
        for off, n, t in zip(self.offsets.tolist(), self.lengths.tolist(), self.ts.tolist(),
                             strict=True):
            yield t, data[off:off + n]

    def serialized(self, pcap: bool) -> np.ndarray:
        """Records back to back: pcap records, or the digest form
        (8-byte big-endian ts, 4-byte big-endian length, frame)."""
        size = int(self.lengths.sum()) + len(self) * (RECORD_HEADER if pcap else 12)
        out = np.empty(size + (GLOBAL_HEADER if pcap else 0), np.uint8)
        start = 0
        if pcap:
            header = np.array([MAGIC_NS, 2 | (4 << 16), 0, 0, SNAPLEN, LINKTYPE_ETHERNET],
                              "<u4").tobytes()
            out[:GLOBAL_HEADER] = np.frombuffer(header, np.uint8)
            start = GLOBAL_HEADER
        _serialize(self.buf, self.offsets, self.lengths, self.ts, out, start, pcap)
        return out

    def write_pcap(self, path) -> int:
        self.serialized(True).tofile(path)
        return len(self)

    def sha256(self) -> str:
        """The digest `tickcore run` prints (host/cli.py digest), over the buffer."""
        return hashlib.sha256(self.serialized(False)).hexdigest()


@njit(cache=True)
def _u32(d, p, big):
    if big:
        return (np.int64(d[p]) << 24) | (np.int64(d[p + 1]) << 16) | \
            (np.int64(d[p + 2]) << 8) | np.int64(d[p + 3])
    return (np.int64(d[p + 3]) << 24) | (np.int64(d[p + 2]) << 16) | \
        (np.int64(d[p + 1]) << 8) | np.int64(d[p])


@njit(cache=True)
def _count_records(d, big):
    """(records, index of the first truncated record or -1)."""
    p, n = GLOBAL_HEADER, 0
    while p < d.size:
        if p + RECORD_HEADER > d.size:
            return n, n
        incl = _u32(d, p + 8, big)
        if p + RECORD_HEADER + incl > d.size:
            return n, n
        p += RECORD_HEADER + incl
        n += 1
    return n, -1


@njit(cache=True)
def _index_records(d, big, frac_ns, offsets, lengths, ts):
    p = GLOBAL_HEADER
    for i in range(offsets.size):
        incl = _u32(d, p + 8, big)
        ts[i] = _u32(d, p, big) * 1_000_000_000 + _u32(d, p + 4, big) * frac_ns
        offsets[i] = p + RECORD_HEADER
        lengths[i] = incl
        p += RECORD_HEADER + incl


@njit(cache=True)
def _serialize(buf, offsets, lengths, ts, out, q, pcap):
    for i in range(offsets.size):
        n = lengths[i]
        t = ts[i]
        if pcap:
            sec = t // 1_000_000_000
            ns = t - sec * 1_000_000_000
            for k, v in enumerate((sec, ns, n, n)):
                for j in range(4):
                    out[q + 4 * k + j] = (v >> (8 * j)) & 0xFF
            q += RECORD_HEADER
        else:
            for j in range(8):
                out[q + j] = (t >> (8 * (7 - j))) & 0xFF
            for j in range(4):
                out[q + 8 + j] = (n >> (8 * (3 - j))) & 0xFF
            q += 12
        out[q:q + n] = buf[offsets[i]:offsets[i] + n]
        q += n
