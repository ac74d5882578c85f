"""Adversarial inbound frames for the gateware tests.

Every frame is built the way a client builds it (`refmodel.client`), then
optionally damaged: every header byte of Ethernet, IPv4, UDP and the MoldUDP64
session header can be corrupted, frames truncated at any length, padded, given
bad block structure, wrong sequence numbers, unknown types or bad lengths.
What the gateware must make of each frame is always asked of refmodel, never
written here.
"""

from __future__ import annotations

import random
import struct

from tickcore.refmodel import moldudp64, ouch
from tickcore.refmodel.client import ClientSession
from tickcore.refmodel.packet import (
    ETHERNET,
    IPV4,
    UDP,
    build_udp_frame,
    internet_checksum,
    parse_udp_frame,
    udp_checksum,
)
from tickcore.refmodel.session import SessionLayer

IP_OFF = ETHERNET.size
UDP_OFF = IP_OFF + IPV4.size


def enter_order(rng: random.Random, cfg, token: int) -> bytes:
    stock = rng.choice([s.stock for s in cfg.symbols] + ["NOPE", "ZZZZZZZZ"])
    return ouch.ENTER_ORDER.build(
        token=f"T{token:013d}", side=rng.choice("BSTEX"), shares=rng.randrange(1 << 32),
        stock=stock, price=rng.randrange(1 << 32), tif=rng.choice((0, 99998, 99999, 5)),
        firm=rng.choice(("", "FRMA", "ZZZZ")), display=rng.choice("YNPAL?"),
        capacity=rng.choice("APRO"), iso=rng.choice("YN"), min_qty=rng.randrange(1000),
        cross_type=rng.choice("NX"), customer_type=rng.choice("RN "))


def any_message(rng: random.Random, cfg, token: int) -> bytes:
    kind = rng.random()
    if kind < 0.55:
        return enter_order(rng, cfg, token)
    if kind < 0.65:
        return ouch.CANCEL_ORDER.build(token=f"T{token:013d}", shares=rng.randrange(100))
    if kind < 0.72:
        return ouch.REPLACE_ORDER.build(
            existing_token=f"T{token:013d}", replacement_token=f"R{token:013d}",
            shares=100, price=1850000, tif=99999, display="Y", iso="N", min_qty=0)
    if kind < 0.76:
        return ouch.MASS_CANCEL.build(stock="AAPL")
    if kind < 0.79:
        return ouch.KILL_SWITCH.build(target_session="FRMA01", action="E")
    if kind < 0.86:                                   # bad length: cut or extended
        good = enter_order(rng, cfg, token)
        return good[:rng.randrange(0, len(good))] if rng.random() < 0.6 else good + b"xy"
    if kind < 0.92:                                   # unknown type
        return bytes([rng.choice(b"QZ\x00\xff")]) + bytes(rng.randrange(0, 60))
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 70)))


def refix_checksums(frame: bytearray) -> None:
    """Recompute both checksums after editing header fields (so deeper checks run)."""
    if len(frame) < UDP_OFF + UDP.size:
        return
    frame[IP_OFF + 10:IP_OFF + 12] = b"\0\0"
    frame[IP_OFF + 10:IP_OFF + 12] = struct.pack(
        "!H", internet_checksum(bytes(frame[IP_OFF:UDP_OFF])))
    total = struct.unpack_from("!H", frame, IP_OFF + 2)[0]
    end = IP_OFF + total
    if end > len(frame) or total < IPV4.size + UDP.size:
        return
    src, dst = struct.unpack_from("!II", frame, IP_OFF + 12)
    frame[UDP_OFF + 6:UDP_OFF + 8] = b"\0\0"
    frame[UDP_OFF + 6:UDP_OFF + 8] = struct.pack(
        "!H", udp_checksum(src, dst, bytes(frame[UDP_OFF:end])))


class Corpus:
    """A deterministic stream of inbound frames, mostly good, often damaged."""

    def __init__(self, cfg, seed: int, *, damage: float = 0.5):
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.damage = damage
        self.clients = [ClientSession(cfg, s) for s in cfg.sessions]
        self.token = 0
        # what the venue expects next, so that good frames stay in sequence after damaged ones
        self._layer = SessionLayer(cfg)

    def messages(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            self.token += 1
            out.append(any_message(self.rng, self.cfg, self.token))
        return out

    def good_frame(self) -> bytes:
        r = self.rng
        c = r.choice(self.clients)
        n = r.choice((0, 1, 1, 1, 1, 2, 3, 5))
        seq = None
        if r.random() < 0.1:            # a replay or a gap, without using up the numbers
            seq = max(1, c.next_seq + r.choice((-3, -1, 1, 4)))
        return c.frame(self.messages(n), seq=seq)

    def frame(self) -> bytes:
        frame = self._frame()
        reason, dgram = parse_udp_frame(frame, mac=self.cfg.mac, ip=self.cfg.ip,
                                        port=self.cfg.oe_port)
        if not reason:
            for _ in self._layer.accept(dgram.payload):
                pass
        for c in self.clients:
            c.next_seq = self._layer.expected_seq[c.session.index]
        return frame

    def _frame(self) -> bytes:
        r = self.rng
        frame = bytearray(self.good_frame())
        if r.random() >= self.damage:
            return bytes(frame)
        kind = r.randrange(10)
        c = r.choice(self.clients)
        if kind == 0:                                     # any byte of the headers
            off = r.randrange(UDP_OFF + UDP.size)
            frame[off] ^= 1 << r.randrange(8)
        elif kind == 1:                                   # a header field, checksums fixed
            off = r.randrange(UDP_OFF + UDP.size)
            frame[off] = r.randrange(256)
            refix_checksums(frame)
        elif kind == 2:                                   # truncated anywhere
            del frame[r.randrange(len(frame)):]
        elif kind == 3:                                   # Ethernet padding / trailing bytes
            frame += bytes(r.randrange(256) for _ in range(r.randrange(1, 40)))
        elif kind == 4:                                   # session header damage
            payload = bytearray(moldudp64.pack_packet(c.session.name, c.next_seq,
                                                      self.messages(r.randrange(0, 3))))
            where = r.randrange(moldudp64.HEADER.size)
            payload[where] = r.randrange(256)
            frame = bytearray(c.raw_frame(bytes(payload)))
        elif kind == 5:                                   # block structure damage
            payload = bytearray(moldudp64.pack_packet(c.session.name, c.next_seq,
                                                      self.messages(r.randrange(1, 4))))
            how = r.randrange(3)
            if how == 0:
                del payload[-r.randrange(1, 6):]
            elif how == 1:
                payload += bytes(r.randrange(1, 4))
            else:
                payload[18:20] = struct.pack("!H", r.choice((0, 7, 0xFFFF, 0xFFFE)))
            frame = bytearray(c.raw_frame(bytes(payload)))
        elif kind == 6:                                   # session header too short
            frame = bytearray(c.raw_frame(bytes(r.randrange(256)
                                                for _ in range(r.randrange(20)))))
        elif kind == 7:                                   # end of session, heartbeat, unknown
            name = r.choice((c.session.name, "NOSUCHSESS"))
            count = r.choice((0, 0xFFFF))
            frame = bytearray(c.raw_frame(moldudp64.HEADER.pack((name, c.next_seq, count))))
        elif kind == 8:                                   # zero UDP checksum (not checked)
            frame[UDP_OFF + 6:UDP_OFF + 8] = b"\0\0"
        else:                                             # other destinations / addresses
            s = c.session
            frame = bytearray(build_udp_frame(
                src_mac=s.mac, dst_mac=r.choice((self.cfg.mac, 0x0200000000FF)), src_ip=s.ip,
                dst_ip=r.choice((self.cfg.ip, 0x0A0000FE)), src_port=s.port,
                dst_port=r.choice((self.cfg.oe_port, 4001)),
                payload=moldudp64.pack_packet(s.name, c.next_seq, self.messages(1)), ttl=64))
        return bytes(frame)

    def records(self, n: int, start_ns: int = 1_795_962_600_000_000_000):
        ts = start_ns
        for _ in range(n):
            ts += self.rng.randrange(1, 50_000)
            yield ts, self.frame()
