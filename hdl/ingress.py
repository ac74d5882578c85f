"""Ingress: Ethernet II / IPv4 / UDP parse, filter and checksum (RFC 894, 791, 768).

The executable specification is `refmodel.packet.parse_udp_frame`: the same
checks in the same precedence order (`refmodel.packet.DROP_REASONS`), the first
failing one counted as ``drop_<reason>``.

A frame arrives as beats of `width` bytes (`hdl.layouts.frame_beat`) and is
written, whole, into one slot of a frame buffer while its header bytes are
captured and both checksums are summed on the fly.  The cycle after its last
beat the verdict is known: a good frame is announced on `o` as a descriptor
(slot, UDP payload length, time of day, tag); a bad one is counted and its slot
reused.  Nothing of a frame is passed on before its last byte has been checked
(store and forward), so no stage ever sees a half-parsed frame.

The consumer reads the payload through `rd` (a `ByteBuffer` read port: bytes at
slot * slot_bytes + 42 + offset, `read_latency` (3) cycles after the request) and completes the
`o` transfer when it is done with the frame, which frees the slot.

Latency: the descriptor is valid 4 cycles after the last beat is accepted
(checks registered, UDP checksum folded, verdict, descriptor FIFO).
Throughput: one beat per cycle, back to
back, no gap between frames, as long as a slot is free: `i.ready` is only ever
low between frames, when all `slots` slots hold frames the consumer has not
released.  Frames whose IPv4 datagram does not fit a slot are counted
``drop_oversize`` (a gateware capacity limit refmodel does not have; with the
default 2048-byte slots no standard 1514-byte frame is affected).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tickcore.refmodel import packet

from .bytebuffer import ByteBuffer
from .layouts import counters_layout, fold16, frame_beat, frame_desc

HDR = packet.HEADERS_SIZE            # 42
IP_OFF = packet.ETHERNET.size        # 14
UDP_OFF = IP_OFF + packet.IPV4.size  # 34

COUNTERS = ("frames_in",) + tuple("drop_" + r for r in packet.DROP_REASONS) + ("drop_oversize",)


def read_signature(addr_bits: int, width: int) -> wiring.Signature:
    """A buffer read port seen from the reader: request `addr` with `en`, get `data`
    (byte j = byte at addr + j) the next cycle."""
    return wiring.Signature({
        "en": Out(1),
        "addr": Out(addr_bits),
        "data": In(data.ArrayLayout(unsigned(8), width)),
    })


class Ingress(wiring.Component):
    def __init__(self, *, mac: int, ip: int, port: int, width: int = 8, slots: int = 4,
                 slot_bytes: int = 2048):
        if width & (width - 1) or not 1 <= width <= 16:
            raise ValueError("width must be 1, 2, 4, 8 or 16 bytes")
        if slot_bytes & (slot_bytes - 1) or slot_bytes < 64 or slots & (slots - 1):
            raise ValueError("slots and slot_bytes must be powers of two")
        self.mac, self.ip, self.port = mac, ip, port
        self.width = width
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.read_width = max(width, 2)
        self.read_latency = ByteBuffer.read_latency
        self.addr_bits = ceil_log2(slots * slot_bytes)
        super().__init__({
            "i": In(stream.Signature(frame_beat(width))),
            "o": Out(stream.Signature(frame_desc(slots))),
            "rd": In(read_signature(self.addr_bits, self.read_width)),
            "counters": Out(counters_layout(COUNTERS)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.width
        m.submodules.buf = buf = ByteBuffer(self.slots * self.slot_bytes,
                                            banks=self.read_width, write_width=w,
                                            read_width=self.read_width)
        m.d.comb += [
            buf.r_en.eq(self.rd.en),
            buf.r_addr.eq(self.rd.addr),
            self.rd.data.eq(buf.r_data),
        ]

        beat = self.i.payload
        take = self.i.valid & self.i.ready

        in_frame = Signal()
        index = Signal(16)                      # beat number in the frame (saturating)
        length = Signal(17)                     # bytes so far (saturating at 0x10000)
        hdr = [Signal(8, name=f"hdr{k}") for k in range(HDR)]
        ip_sum = Signal(32)                     # bytes 14..33
        pseudo_sum = Signal(32)                 # bytes 26..33 (source and destination IP)
        udp_sum = Signal(32)                    # bytes 34 .. 14 + total - 1
        cur_slot = Signal(range(self.slots))
        ts = Signal.like(beat.ts)
        tag = Signal.like(beat.tag)

        used = Signal(self.slots)               # slots holding announced frames
        pend = Signal()                         # a frame awaits its verdict this cycle
        pend_slot = Signal(range(self.slots))

        # -- slot allocation: lowest slot that is neither announced nor awaiting a verdict
        busy = Signal(self.slots)
        pend2_busy = Signal(self.slots)        # filled in below: slots still in the verdict
        m.d.comb += busy.eq(used | (pend << pend_slot) | pend2_busy)
        free_any = Signal()
        new_slot = Signal(range(self.slots))
        m.d.comb += free_any.eq(~busy != 0)
        for k in reversed(range(self.slots)):
            with m.If(~busy[k]):
                m.d.comb += new_slot.eq(k)
        m.d.comb += self.i.ready.eq(in_frame | free_any)

        first = ~in_frame
        idx = Signal(16)                        # index of the beat being taken
        slot = Signal(range(self.slots))
        m.d.comb += [idx.eq(index), slot.eq(cur_slot)]
        with m.If(first):
            m.d.comb += [idx.eq(0), slot.eq(new_slot)]

        # -- the buffer write: the whole frame, as far as the slot goes
        slot_beats = self.slot_bytes // w
        m.d.comb += [
            buf.w_en.eq(take & (idx < slot_beats)),
            buf.w_addr.eq(slot * self.slot_bytes + idx * w),
            buf.w_data.eq(beat.data),
        ]
        lane_ok = [Signal(name=f"lane_ok{j}") for j in range(w)]
        for j in range(w):
            m.d.comb += lane_ok[j].eq(j < beat.nbytes)
        m.d.comb += buf.w_mask.eq(Cat(*lane_ok))

        # -- header capture and checksum sums
        total = Signal(16)
        m.d.comb += total.eq(Cat(hdr[17], hdr[16]))
        end_off = Signal(17)                    # 14 + IPv4 total length
        m.d.comb += end_off.eq(IP_OFF + total)

        def first_beat_at(offset, lane):
            """Smallest beat number at which `lane` holds a byte at or past `offset`."""
            return max(0, -(-(offset - lane) // w))

        ip_add, pseudo_add, udp_add = [], [], []
        for j in range(w):
            byte = beat.data[j]
            # the parity of the byte's offset: even bytes are the high half of a word
            if w == 1:
                weighted = Signal(16, name=f"wbyte{j}")
                m.d.comb += weighted.eq(Cat(byte, Const(0, 8)))
                with m.If(~idx[0]):
                    m.d.comb += weighted.eq(Cat(Const(0, 8), byte))
            else:
                weighted = Cat(Const(0, 8), byte) if j % 2 == 0 else byte
            off = Signal(17, name=f"off{j}")
            m.d.comb += off.eq(idx * w + j)
            in_ip = (idx >= first_beat_at(IP_OFF, j)) & (idx < first_beat_at(UDP_OFF, j))
            in_pseudo = (idx >= first_beat_at(IP_OFF + 12, j)) & (idx < first_beat_at(UDP_OFF, j))
            in_udp = (idx >= first_beat_at(UDP_OFF, j)) & (off < end_off)
            ip_add.append(Signal(16, name=f"ipadd{j}"))
            pseudo_add.append(Signal(16, name=f"psadd{j}"))
            udp_add.append(Signal(16, name=f"udpadd{j}"))
            m.d.comb += [
                ip_add[-1].eq(Const(0, 16)),
                pseudo_add[-1].eq(Const(0, 16)),
                udp_add[-1].eq(Const(0, 16)),
            ]
            with m.If(lane_ok[j]):
                with m.If(in_ip):
                    m.d.comb += ip_add[-1].eq(weighted)
                with m.If(in_pseudo):
                    m.d.comb += pseudo_add[-1].eq(weighted)
                with m.If(in_udp):
                    m.d.comb += udp_add[-1].eq(weighted)

        def tree(values):
            values = list(values)
            while len(values) > 1:
                values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                          for i in range(0, len(values), 2)]
            return values[0]

        with m.If(take):
            m.d.sync += [
                in_frame.eq(~beat.last),
                index.eq(Mux(idx == 0xFFFF, 0xFFFF, idx + 1)),
            ]
            base = Signal(17)
            m.d.comb += base.eq(Mux(first, 0, length))
            new_len = base + beat.nbytes
            m.d.sync += length.eq(Mux(new_len[17:] != 0, 0x1FFFF, new_len[:17]))
            for o in range(HDR):
                with m.If((idx == o // w) & lane_ok[o % w]):
                    m.d.sync += hdr[o].eq(beat.data[o % w])
            ip_base = Mux(first, 0, ip_sum)
            ps_base = Mux(first, 0, pseudo_sum)
            udp_base = Mux(first, 0, udp_sum)
            m.d.sync += [
                ip_sum.eq(ip_base + tree(ip_add)),
                pseudo_sum.eq(ps_base + tree(pseudo_add)),
                udp_sum.eq(udp_base + tree(udp_add)),
            ]
            with m.If(first):
                m.d.sync += [cur_slot.eq(new_slot), ts.eq(beat.ts), tag.eq(beat.tag)]
            m.d.sync += [pend.eq(beat.last), pend_slot.eq(slot)]
        with m.Else():
            m.d.sync += pend.eq(0)

        # -- the verdict, the cycle after the last beat, from the registered header
        def u(*octets):
            return Cat(*reversed(octets))

        n = length
        dst_mac = u(*hdr[0:6])
        ethertype = u(*hdr[12:14])
        flags = u(*hdr[20:22])
        proto = hdr[23]
        dst_ip = u(*hdr[30:34])
        dport = u(*hdr[36:38])
        udp_len = u(*hdr[38:40])
        udp_csum = u(*hdr[40:42])
        checks = {
            "truncated_eth": n < packet.ETHERNET.size,
            "mac_filter": dst_mac != self.mac,
            "not_ipv4": ethertype != packet.ETHERTYPE_IPV4,
            "truncated": n < UDP_OFF,
            "ip_header": hdr[14] != packet.IPV4_VERSION_IHL,
            "ip_length": (total < packet.IPV4.size + packet.UDP.size) | (end_off > n),
            "ip_checksum": fold16(ip_sum) != 0xFFFF,
            "ip_fragment": (flags & (packet.IP_FLAG_MF | packet.IP_FRAGMENT_OFFSET_MASK)) != 0,
            "not_udp": proto != packet.PROTO_UDP,
            "ip_filter": dst_ip != self.ip,
            "udp_length": udp_len != (total - packet.IPV4.size)[:16],
            "port_filter": dport != self.port,
            "udp_checksum": None,           # a cycle later, below (timing)
            "oversize": end_off > self.slot_bytes,
        }
        order = ["truncated_eth", "mac_filter", "not_ipv4", "truncated", "ip_header",
                 "ip_length", "ip_checksum", "ip_fragment", "not_udp", "ip_filter",
                 "udp_length", "port_filter", "udp_checksum", "oversize"]
        # refmodel checks "truncated" twice: before the Ethernet header and before IPv4
        assert set(order) - {"truncated_eth"} == set(packet.DROP_REASONS) | {"oversize"}
        # the checks are registered in the verdict cycle (the header registers may take
        # the next frame's bytes from then on), the UDP checksum is folded the cycle
        # after, and priority and counting come a cycle later still (timing)
        held = {name: Signal(name=f"c_{name}") for name in order}
        held3 = {name: Signal(name=f"c3_{name}") for name in order}
        pend2 = Signal()
        pend3 = Signal()
        pend2_slot = Signal(range(self.slots))
        pend3_slot = Signal(range(self.slots))
        desc_shape = frame_desc(self.slots)
        desc2 = Signal(desc_shape)
        desc = Signal(desc_shape)
        udp_acc = Signal(32)
        udp_nz = Signal()
        m.d.sync += [pend2.eq(pend), pend3.eq(pend2)]
        with m.If(pend):
            m.d.sync += [held[name].eq(checks[name]) for name in order
                         if checks[name] is not None]
            m.d.sync += [
                # pseudo-header (addresses, protocol, UDP length) + the segment
                udp_acc.eq(pseudo_sum + udp_sum + (total - packet.IPV4.size
                                                   + packet.PROTO_UDP)[:16]),
                udp_nz.eq(udp_csum != 0),
                pend2_slot.eq(pend_slot),
                desc2.slot.eq(pend_slot),
                desc2.length.eq(total - packet.IPV4.size - packet.UDP.size),
                desc2.ts.eq(ts),
                desc2.tag.eq(tag),
            ]
        with m.If(pend2):
            m.d.sync += [held3[name].eq(held[name]) for name in order
                         if name != "udp_checksum"]
            m.d.sync += [
                held3["udp_checksum"].eq(udp_nz & (fold16(udp_acc) != 0xFFFF)),
                pend3_slot.eq(pend2_slot),
                desc.eq(desc2),
            ]
        held = held3
        verdict = {name: Signal(name=f"v_{name}") for name in order}
        accept = Signal()
        rest = Const(1, 1)
        for name in order:
            m.d.comb += verdict[name].eq(rest & held[name])
            rest = rest & ~held[name]
        m.d.comb += accept.eq(rest)

        cnt = self.counters
        with m.If(pend3):
            m.d.sync += cnt.frames_in.eq(cnt.frames_in + 1)
            for name in order:
                field = "drop_truncated" if name == "truncated_eth" else "drop_" + name
                with m.If(verdict[name]):
                    m.d.sync += cnt[field].eq(cnt[field] + 1)

        # -- descriptors of accepted frames, in arrival order
        m.submodules.descq = descq = SyncFIFOBuffered(width=desc_shape.size, depth=self.slots)
        m.d.comb += [
            descq.w_data.eq(desc),
            descq.w_en.eq(pend3 & accept),
            self.o.valid.eq(descq.r_rdy),
            self.o.payload.eq(descq.r_data),
            descq.r_en.eq(self.o.ready),
        ]
        set_mask = Signal(self.slots)
        clr_mask = Signal(self.slots)
        with m.If(pend3 & accept):
            m.d.comb += set_mask.eq(1 << pend3_slot)
        with m.If(self.o.valid & self.o.ready):
            m.d.comb += clr_mask.eq(1 << self.o.payload.slot)
        m.d.sync += used.eq((used | set_mask) & ~clr_mask)
        m.d.comb += pend2_busy.eq((pend2 << pend2_slot) | (pend3 << pend3_slot))
        m.d.comb += self.idle.eq(~in_frame & ~pend & ~pend2 & ~pend3 & (used == 0))
        return m
