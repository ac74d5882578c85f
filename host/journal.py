"""The live venue's journal: every inbound message, written before it is acted on.

File `journal.tcj` in the journal directory (format in docs/serve.md, "Journal"):

    file header   magic "TICKJRNL" (8), version (2), reserved (6)
    record        size (4, payload bytes), crc (4), kind (1), ts (8), payload
                  crc = CRC-32 (zlib.crc32) of kind + ts + payload
                  kind: bits 0-6 the record kind, bit 7 set on the first record of
                  each append (the messages of one receive are appended together)

All integers big-endian.  Record kinds: CONFIG (first record; the effective
configuration as JSON), OPEN (start of day), UDP (a MoldUDP64 order-entry
datagram with its source address), TCP (one SoupBinTCP Unsequenced Data
payload of a logged-in session), CLOSE (end of day).  `ts` is the ingress
timestamp, ns since the Unix epoch.

A crash can leave a torn final record.  `JournalReader` stops at the first
record that is incomplete, or whose checksum fails when nothing but that
record (or zero bytes) follows it: that tail is reported (`torn_bytes`,
`torn_reason`) and `open_journal` truncates it.  A checksum failure with valid
data after it is corruption, not a torn write, and raises `JournalError`.

Durability (`fsync` policy), always with the write done before acting:
  always    fdatasync before acting on what was just received: nothing acknowledged
            is lost even on power loss.  Costs one fdatasync per receive.
  interval  a background thread fdatasyncs at most every `interval` seconds; a
            process crash (kill -9) loses nothing, a power loss or OS crash can lose
            up to `interval` of acknowledged messages.
  none      never fdatasync; the OS writes back when it likes.  kill -9 loses nothing,
            an OS crash can lose whatever was not yet written back.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib

from tickcore.refmodel.layout import Layout

FILE_NAME = "journal.tcj"
FILE_HEADER = Layout("JournalFileHeader", [("magic", "a", 8), ("version", "u", 2),
                                           ("reserved", "u", 6)])
MAGIC = "TICKJRNL"
VERSION = 1
RECORD = Layout("JournalRecord", [("size", "u", 4), ("crc", "u", 4), ("kind", "u", 1),
                                  ("ts", "u", 8)])
UDP_SOURCE = Layout("JournalUdpSource", [("ip", "u", 4), ("port", "u", 2)])
TCP_SESSION = Layout("JournalTcpSession", [("session", "u", 1)])

CONFIG, OPEN, UDP, TCP, CLOSE = 1, 2, 3, 4, 5
BATCH_START = 0x80
KIND_NAMES = {CONFIG: "config", OPEN: "open", UDP: "udp", TCP: "tcp", CLOSE: "close"}
MAX_PAYLOAD = 1 << 20
FSYNC_POLICIES = ("always", "interval", "none")

_CRC_OFFSET = 8          # crc covers the record header from `kind` on, then the payload
_INT = {1: "B", 2: "H", 4: "I", 8: "Q"}


class JournalError(Exception):
    """The journal cannot be used as it is; the message says why and where."""


_SIZE = struct.Struct(">" + _INT[RECORD.field("size").size])
_TAIL = struct.Struct(">" + _INT[RECORD.field("kind").size] + _INT[RECORD.field("ts").size])
assert _SIZE.size + 4 + _TAIL.size == RECORD.size and RECORD.field("crc").offset == 4


def encode(kind: int, ts: int, payload: bytes = b"", first: bool = True) -> bytes:
    """One record, ready to append; `first` marks the first record of an append.
    (The RECORD layout, packed with structs derived from it: this is the hot path.)"""
    tail = _TAIL.pack(kind | BATCH_START if first else kind, ts)
    crc = zlib.crc32(payload, zlib.crc32(tail))
    return _SIZE.pack(len(payload)) + crc.to_bytes(4, "big") + tail + payload


_HEAD = struct.Struct(">" + _INT[RECORD.field("size").size] + _INT[RECORD.field("crc").size])
_TCP_TAIL = struct.Struct(_TAIL.format + _INT[TCP_SESSION.size])     # kind, ts, session


def encode_tcp(ts: int, session: int, message: bytes, first: bool = True) -> bytes:
    """`encode(TCP, ts, tcp_payload(session, message), first)` with one copy of the
    message fewer (the live venue's hot path)."""
    tail = _TCP_TAIL.pack(TCP | BATCH_START if first else TCP, ts, session)
    crc = zlib.crc32(message, zlib.crc32(tail))
    return _HEAD.pack(len(message) + TCP_SESSION.size, crc) + tail + message


def udp_payload(ip: int, port: int, datagram: bytes) -> bytes:
    return UDP_SOURCE.pack((ip, port)) + datagram


def split_udp(payload: bytes):
    """(source ip, source port, datagram) of a UDP record payload."""
    ip, port = UDP_SOURCE.unpack(payload)
    return ip, port, payload[UDP_SOURCE.size:]


def tcp_payload(session: int, message: bytes) -> bytes:
    return bytes((session,)) + message


def split_tcp(payload: bytes):
    """(session index, message) of a TCP record payload."""
    return payload[0], payload[1:]


class JournalReader:
    """Iterate the valid records of a journal file: (kind, ts, payload).

    While iterating, `batch_start` tells whether the record just yielded began
    an append.  After iteration: `end` (offset after the last valid record),
    `count`, `torn_bytes` and `torn_reason` (None when the file ends cleanly).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.end = 0
        self.count = 0
        self.torn_bytes = 0
        self.torn_reason = None
        self.batch_start = False

    def __iter__(self):
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(FILE_HEADER.size)
            if len(head) < FILE_HEADER.size:
                raise JournalError(f"{self.path}: too short for a journal header")
            magic, version, _ = FILE_HEADER.unpack(head)
            if magic != MAGIC:
                raise JournalError(f"{self.path}: not a tickcore journal (magic {head[:8]!r})")
            if version != VERSION:
                raise JournalError(f"{self.path}: journal version {version}; this tickcore "
                                   f"reads version {VERSION}")
            pos = self.end = FILE_HEADER.size
            while pos < size:
                head = fh.read(RECORD.size)
                if len(head) < RECORD.size:
                    self._torn(size - pos, "partial record header")
                    return
                length, crc, kind, ts = RECORD.unpack(head)
                stop = pos + RECORD.size + length
                if length > MAX_PAYLOAD or stop > size:
                    self._torn(size - pos, "record extends past the end of the file")
                    return
                payload = fh.read(length)
                if zlib.crc32(payload, zlib.crc32(head[_CRC_OFFSET:])) != crc:
                    rest = head + payload + fh.read()
                    if stop == size or not rest.strip(b"\0"):
                        self._torn(size - pos, "checksum of the final record")
                        return
                    raise JournalError(f"{self.path}: record at byte {pos} fails its checksum "
                                       f"and {size - stop} bytes follow it: corrupt journal")
                self.batch_start = bool(kind & BATCH_START)
                kind &= ~BATCH_START
                if kind not in KIND_NAMES:
                    raise JournalError(f"{self.path}: record at byte {pos} has unknown kind "
                                       f"{kind}")
                if self.count == 0 and kind != CONFIG:
                    raise JournalError(f"{self.path}: first record is not the configuration")
                self.count += 1
                pos = self.end = stop
                yield kind, ts, payload

    def _torn(self, nbytes: int, reason: str) -> None:
        self.torn_bytes = nbytes
        self.torn_reason = reason


def read_config(path) -> dict:
    """The CONFIG record of a journal file, decoded."""
    for kind, _ts, payload in JournalReader(path):
        if kind == CONFIG:
            return json.loads(payload.decode("utf-8"))
    raise JournalError(f"{path}: empty journal (no configuration record)")


def journal_path(directory) -> str:
    return os.path.join(os.fspath(directory), FILE_NAME)


class JournalWriter:
    """Append records; durability per `fsync` (module docstring).

    `append(data)` writes bytes from `encode` (one record or several
    concatenated) with os.write, so they are in the kernel before the caller
    acts on them, and under "always" fdatasyncs before returning.
    """

    def __init__(self, path, fsync: str = "always", interval: float = 0.01):
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy {fsync!r}: expected one of "
                             f"{', '.join(FSYNC_POLICIES)}")
        self.path = os.fspath(path)
        self.policy = fsync
        self.interval = interval
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.bytes_written = 0
        self.syncs = 0
        self._dirty = False
        self._stop = threading.Event()
        self._thread = None
        if fsync == "interval":
            self._thread = threading.Thread(target=self._sync_loop, name="journal-fsync",
                                            daemon=True)
            self._thread.start()

    def append(self, data: bytes) -> None:
        n = os.write(self.fd, data)
        if n != len(data):                      # a short write: finish it
            view = memoryview(data)[n:]
            while view:
                view = view[os.write(self.fd, view):]
        self.bytes_written += len(data)
        if self.policy == "always":
            os.fdatasync(self.fd)
            self.syncs += 1
        else:
            self._dirty = True

    def sync(self) -> None:
        os.fdatasync(self.fd)
        self.syncs += 1
        self._dirty = False

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self._dirty:
                self._dirty = False
                try:
                    os.fdatasync(self.fd)
                    self.syncs += 1
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.fd >= 0:
            if self.policy != "none":
                os.fdatasync(self.fd)
            os.close(self.fd)
            self.fd = -1


def create_journal(directory, config: dict, ts: int, fsync: str = "always",
                   interval: float = 0.01) -> JournalWriter:
    """A new journal holding the header, the CONFIG record and OPEN at `ts`; both are
    on disk (fdatasync, and the directory fsynced) before this returns."""
    os.makedirs(directory, exist_ok=True)
    path = journal_path(directory)
    if os.path.exists(path) and os.path.getsize(path) > 0:
        raise JournalError(f"{path}: already exists")
    head = FILE_HEADER.pack((MAGIC, VERSION, 0))
    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8")
    writer = JournalWriter(path, fsync, interval)
    writer.append(head + encode(CONFIG, ts, cfg) + encode(OPEN, ts))
    writer.sync()
    dfd = os.open(os.fspath(directory), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return writer


def truncate_torn(reader: JournalReader) -> None:
    """Cut a torn tail reported by a fully iterated reader (and make the cut durable)."""
    if reader.torn_bytes:
        fd = os.open(reader.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, reader.end)
            os.fsync(fd)
        finally:
            os.close(fd)
