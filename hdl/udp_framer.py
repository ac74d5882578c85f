"""UDP / IPv4 / Ethernet framer (RFC 768, RFC 791, RFC 894; refmodel packet.build_udp_frame).

Fills bytes 0..41 of each packet from `Packetizer` with the Ethernet II, IPv4
and UDP headers by refmodel's header rules: source MAC/IP the venue's,
destination MAC/IP/port and source port per destination (a session: its
address, from the order-entry port; the feed: the feed's group, MAC and ports),
DSCP/ECN 0, identification 0, DF set, the configured TTL, no options.  Both
checksums are computed here: the IPv4 header checksum from the per-destination
constant part and the length, the UDP checksum from the pseudo-header, the UDP
header and the payload sum the packetizer hands over (a computed 0 is sent as
0xFFFF).  MoldUDP64 packets are at least 62 bytes, so no frame needs padding.

The checksums are summed and folded in a few two-operand steps from the
frame's first beat on; they are first needed in beats 24 // width >= 3 (IPv4)
and 40 // width >= 5 (UDP), so `width` is at most 8 bytes.

Latency: 1 cycle (output register).  Throughput: one beat per cycle, frames
back to back.  Back-pressure: `i.ready` follows the output register.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickcore.refmodel import packet

from .layouts import out_beat, packet_beat

HDR = packet.HEADERS_SIZE


def _words(raw: bytes) -> int:
    return sum(int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2))


class UdpFramer(wiring.Component):
    def __init__(self, *, src_mac: int, src_ip: int, ttl: int, dests, width: int,
                 dest_bits: int):
        """`dests`: per destination index, (dst_mac, dst_ip, src_port, dst_port)."""
        if width > 8:
            raise ValueError("the framer needs two beats before the IPv4 checksum: width <= 8")
        self.src_mac, self.src_ip, self.ttl = src_mac, src_ip, ttl
        self.dests = tuple(dests)
        self.width = width
        super().__init__({
            "i": In(stream.Signature(packet_beat(width, dest_bits))),
            "o": Out(stream.Signature(out_beat(width))),
        })

    def header_template(self, dest) -> bytes:
        """The 42 header bytes of a destination with length and checksum fields zero."""
        dst_mac, dst_ip, sport, dport = dest
        eth = packet.ETHERNET.pack((dst_mac, self.src_mac, packet.ETHERTYPE_IPV4))
        ip = packet.IPV4.pack((packet.IPV4_VERSION_IHL, 0, 0, 0, packet.IP_FLAG_DF, self.ttl,
                               packet.PROTO_UDP, 0, self.src_ip, dst_ip))
        udp = packet.UDP.pack((sport, dport, 0, 0))
        return eth + ip + udp

    def elaborate(self, platform):
        m = Module()
        w = self.width
        beat = self.i.payload
        ip_off = packet.ETHERNET.size

        # per-destination constants: header bytes and checksum partial sums
        templ = [Signal(8, name=f"templ{k}") for k in range(HDR)]
        ip_const = Signal(20)
        udp_const = Signal(20)
        with m.Switch(beat.dest):
            for d, dest in enumerate(self.dests):
                t = self.header_template(dest)
                ipc = _words(t[ip_off:ip_off + packet.IPV4.size]) + packet.IPV4.size \
                    + packet.UDP.size
                # pseudo-header (addresses, protocol, UDP length) + UDP header (ports, length)
                udpc = _words(t[ip_off + 12:ip_off + 20]) + packet.PROTO_UDP \
                    + _words(t[ip_off + 20:ip_off + 24]) + 2 * packet.UDP.size
                with m.Case(d):
                    m.d.comb += [s.eq(b) for s, b in zip(templ, t, strict=True)]
                    m.d.comb += [ip_const.eq(ipc), udp_const.eq(udpc)]

        # checksums, from the first beat on, in a few two-operand steps (timing): the
        # IPv4 one is first needed in the beat holding byte 24, the UDP one in the beat
        # holding byte 40, at least 3 and 5 beats after the first for width <= 8
        take = self.i.valid & self.i.ready
        ip_a = Signal(18)
        u_a = Signal(21)
        u_b = Signal(29)
        u_c = Signal(20)
        total = Signal(16)
        udp_len = Signal(16)
        with m.If(take & beat.first):
            m.d.sync += [
                ip_a.eq(ip_const + beat.length),
                u_a.eq(udp_const + (beat.length << 1)),
                u_b.eq((beat.sum_hi << 8) + beat.sum_lo),
                u_c.eq(beat.sum_hdr),
                total.eq(beat.length + packet.IPV4.size + packet.UDP.size),
                udp_len.eq(beat.length + packet.UDP.size),
            ]
        ip_f1 = Signal(17)
        ip_csum = Signal(16)
        u_d = Signal(30)
        u_e = Signal(31)
        u_f1 = Signal(17)
        udp_csum = Signal(16)
        udp_fold = Signal(16)
        m.d.comb += udp_fold.eq(~(u_f1[:16] + u_f1[16])[:16])
        m.d.sync += [
            ip_f1.eq(ip_a[:16] + ip_a[16:]),
            ip_csum.eq(~(ip_f1[:16] + ip_f1[16])[:16]),
            u_d.eq(u_a + u_c),
            u_e.eq(u_b + u_d),
            u_f1.eq(u_e[:16] + u_e[16:]),
            udp_csum.eq(Mux(udp_fold == 0, 0xFFFF, udp_fold)),
        ]

        head = list(templ)
        head[ip_off + 2], head[ip_off + 3] = total[8:16], total[0:8]
        head[ip_off + 10], head[ip_off + 11] = ip_csum[8:16], ip_csum[0:8]
        head[HDR - 4], head[HDR - 3] = udp_len[8:16], udp_len[0:8]
        head[HDR - 2], head[HDR - 1] = udp_csum[8:16], udp_csum[0:8]
        # the lengths are first needed in the beat holding byte 16, after the first
        assert w <= 16
        # the beat number in the frame (0 for a first beat), saturating
        nrows = -(-HDR // w)
        row = Signal(range(nrows + 1))
        with m.If(take):
            m.d.sync += row.eq(Mux(beat.last, 0, Mux(row == nrows, nrows, row + 1)))

        out = self.o.payload
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += [
                self.o.valid.eq(1),
                out.nbytes.eq(beat.nbytes),
                out.first.eq(beat.first),
                out.last.eq(beat.last),
                out.tag.eq(beat.tag),
            ]
            for j in range(w):
                with m.Switch(row):
                    for r in range(nrows):
                        o = r * w + j
                        if o < HDR:
                            with m.Case(r):
                                m.d.sync += out.data[j].eq(head[o])
                    with m.Default():
                        m.d.sync += out.data[j].eq(beat.data[j])
        return m
