"""Ingress: Ethernet II / IPv4 / UDP parse, filter and checksum (RFC 894, 791, 768).

The executable specification is `refmodel.packet.parse_udp_frame`: the same
checks in the same precedence order (`refmodel.packet.DROP_REASONS`), the first
failing one counted as ``drop_<reason>``.

A frame arrives as beats of `width` bytes (`hdl.layouts.frame_beat`) and is
written, whole, into one slot of a frame buffer while its header bytes are
captured and both checksums are summed on the fly.  The first `HEAD_BYTES`
bytes of the UDP payload (the MoldUDP64 header, the first block's length and
message) are also captured, into registers of the frame's slot, so the session
layer reads them without going through the buffer (`rd.slot`, `rd.head`).

Two streams go out, one item per frame on each, in arrival order:

- `o`, the descriptor (slot, UDP payload length, time of day, tag), the cycle
  after the frame's last beat, before the checks are done, so the consumer can
  start on it (speculatively: it must not act on the frame before its verdict);
- `v`, the verdict (``ok``): 4 cycles after the last beat (checks registered,
  checksums compared, priority, queue).

The consumer takes the verdict, reads the payload through `rd` (a `ByteBuffer`
read port: bytes at slot * slot_bytes + 42 + offset, `read_latency` (4)
cycles after the request) if it wants to, and completes the `o` transfer when
it is done with the frame, which frees the slot (a cycle later), for dropped
frames too.  Nothing of a frame must be acted on before its verdict is ``ok``
(store and forward: the UDP checksum covers the last byte).

Latency: descriptor 2 cycles after the last beat is accepted, verdict 5.
Throughput: one beat per cycle, back to back, no gap between frames, as long
as a slot is free: `i.ready` is only ever low between frames, when all `slots`
slots hold frames the consumer has not released.  Frames whose IPv4 datagram
does not fit a slot are counted ``drop_oversize`` (a gateware capacity limit
refmodel does not have; with the default 2048-byte slots no standard 1514-byte
frame is affected).

Timing: the input beat is registered with its lane masks (stage 0), written,
captured and summed per beat from registers (stage 1), the beat sums are
accumulated in partially folded 17-bit ones' complement sums (stage 2), and
the checksum comparison, the priority of the checks and the counters each get
a cycle of their own.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tickcore.refmodel import packet

from .adder_tree import adder_tree
from .bytebuffer import ByteBuffer
from .layouts import HEAD_BYTES, counters_layout, frame_beat, frame_desc, slot_shape

HDR = packet.HEADERS_SIZE            # 42
IP_OFF = packet.ETHERNET.size        # 14
UDP_OFF = IP_OFF + packet.IPV4.size  # 34
PSEUDO_OFF = IP_OFF + 12             # 26: the source address, the pseudo-header's first field

COUNTERS = ("frames_in",) + tuple("drop_" + r for r in packet.DROP_REASONS) + ("drop_oversize",)


def read_signature(addr_bits: int, width: int, slots: int) -> wiring.Signature:
    """The frame buffer seen from the reader: request `addr` with `en`, get `data`
    (byte j = byte at addr + j) `read_latency` cycles later; `head` is the captured
    head of the UDP payload in slot `slot` (combinational)."""
    return wiring.Signature({
        "en": Out(1),
        "addr": Out(addr_bits),
        "data": In(data.ArrayLayout(unsigned(8), width)),
        "slot": Out(slot_shape(slots)),
        "head": In(data.ArrayLayout(unsigned(8), HEAD_BYTES)),
    })


def verdict_layout() -> data.StructLayout:
    return data.StructLayout({"ok": 1})


def fold_acc(acc, add, first):
    """Next value of a partially folded ones' complement accumulator: (acc or 0 at a
    frame's first beat) + add, with bits 16 and up added back in at bit 0.  With
    `add` below 2**19 the result stays below 0x10008, and it is congruent to the
    plain sum modulo 0xFFFF."""
    s = Mux(first, 0, acc) + add
    return s[:16] + s[16:]


class Ingress(wiring.Component):
    def __init__(self, *, mac: int, ip: int, port: int, width: int = 8, slots: int = 4,
                 slot_bytes: int = 2048):
        if width not in (1, 2, 4, 8):
            raise ValueError("width must be 1, 2, 4 or 8 bytes")
        if slot_bytes & (slot_bytes - 1) or slot_bytes < 128 or slots & (slots - 1):
            raise ValueError("slots and slot_bytes must be powers of two")
        self.mac, self.ip, self.port = mac, ip, port
        self.width = width
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.read_width = max(width, 2)
        self.read_latency = 4
        self.addr_bits = ceil_log2(slots * slot_bytes)
        super().__init__({
            "i": In(stream.Signature(frame_beat(width))),
            "o": Out(stream.Signature(frame_desc(slots))),
            "v": Out(stream.Signature(verdict_layout())),
            "rd": In(read_signature(self.addr_bits, self.read_width, slots)),
            "counters": Out(counters_layout(COUNTERS)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.width
        ns = self.slots
        sb = ceil_log2(self.slot_bytes)
        m.submodules.buf = buf = ByteBuffer(ns * self.slot_bytes, banks=self.read_width,
                                            write_width=w, read_width=self.read_width,
                                            out_reg=True)
        assert buf.read_latency == self.read_latency
        m.d.comb += [
            buf.r_en.eq(self.rd.en),
            buf.r_addr.eq(self.rd.addr),
            self.rd.data.eq(buf.r_data),
        ]

        # beats 0 .. npos - 1 are told apart (a thermometer code of the beat number),
        # later ones are all alike: npos covers every byte captured
        npos = -(-(HDR + HEAD_BYTES) // w)

        def first_beat_at(offset, lane):
            """Smallest beat number at which `lane` holds a byte at or past `offset`."""
            return max(0, -(-(offset - lane) // w))

        # ---- stage 0: take the beat, allocate a slot at a frame's first beat, lane masks
        beat = self.i.payload
        in_frame = Signal()
        held = Signal(ns)                       # slots owned by a frame until released
        alloc_ok = Signal()
        alloc_slot = Signal(slot_shape(ns))
        cur_slot = Signal(slot_shape(ns))
        m.d.comb += self.i.ready.eq(in_frame | alloc_ok)
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)
        slot = Signal(slot_shape(ns))
        m.d.comb += slot.eq(Mux(in_frame, cur_slot, alloc_slot))

        therm = Signal(npos + 1, init=1)        # therm[k]: this beat's number >= k
        pos = Signal(18)                        # this beat's byte offset (sticky bit 17)
        prel = Signal(range(-IP_OFF, 1 << 18), init=-IP_OFF)  # pos - 14
        f_ts = Signal.like(beat.ts)
        f_tag = Signal.like(beat.tag)
        with m.If(take):
            m.d.sync += in_frame.eq(~beat.last)
            with m.If(beat.last):
                m.d.sync += [therm.eq(1), pos.eq(0), prel.eq(-IP_OFF)]
            with m.Else():
                m.d.sync += [
                    therm.eq(Cat(Const(1, 1), therm[:npos])),
                    pos.eq(Mux(pos[17], pos, pos + w)),
                    prel.eq(Mux(pos[17], prel, prel + w)),
                ]
            with m.If(~in_frame):
                m.d.sync += [cur_slot.eq(alloc_slot), f_ts.eq(beat.ts), f_tag.eq(beat.tag)]

        def beat_in(lo, hi):
            """This beat's number is in [lo, hi)."""
            a = therm[lo] if lo <= npos else Const(0, 1)
            b = therm[hi] if hi <= npos else Const(0, 1)
            return a & ~b

        # the IPv4 total length (bytes 16, 17) is captured well before any beat that
        # holds a byte at or past 42 (the smallest datagram end that passes the length
        # checks), so the UDP sum's end is only applied from there on
        hdr = [Signal(8, name=f"hdr{k}") for k in range(HDR)]
        total = Signal(16)
        m.d.comb += total.eq(Cat(hdr[17], hdr[16]))
        d = Signal(range(-(1 << 18), 1 << 17))   # bytes of the datagram from this beat on
        m.d.comb += d.eq(total - prel)
        lb = ceil_log2(w)
        d_big = (d >= w)
        lane_ok = [Signal(name=f"lane_ok{j}") for j in range(w)]
        ipm = [Signal(name=f"ipm{j}") for j in range(w)]
        udpm = [Signal(name=f"udpm{j}") for j in range(w)]
        for j in range(w):
            k42 = first_beat_at(HDR, j)
            if lb:
                in_dgram = d_big | (~d[-1] & (d[:lb] > j))
            else:
                in_dgram = d_big
            m.d.comb += [
                lane_ok[j].eq(j < beat.nbytes),
                ipm[j].eq(beat_in(first_beat_at(IP_OFF, j), first_beat_at(UDP_OFF, j))),
                udpm[j].eq(beat_in(first_beat_at(PSEUDO_OFF, j), npos + 1)
                           & (~beat_in(k42, npos + 1) | in_dgram)),
            ]

        # ---- stage 1 registers
        s_take = Signal()
        s_first = Signal()
        s_last = Signal()
        s_data = Signal(data.ArrayLayout(unsigned(8), w))
        s_nbytes = Signal.like(beat.nbytes)
        s_ok = Signal(w)
        s_ipm = Signal(w)
        s_udpm = Signal(w)
        s_slot = Signal(slot_shape(ns))
        s_slot_oh = Signal(ns)
        s_pos = Signal(18)
        s_hot = Signal(npos)
        m.d.sync += [
            s_take.eq(take),
            s_first.eq(~in_frame),
            s_last.eq(beat.last),
            s_data.eq(beat.data),
            s_nbytes.eq(beat.nbytes),
            s_ok.eq(Cat(*lane_ok)),
            s_ipm.eq(Cat(*lane_ok) & Cat(*ipm)),
            s_udpm.eq(Cat(*lane_ok) & Cat(*udpm)),
            s_slot.eq(slot),
            s_slot_oh.eq(1 << slot),
            s_pos.eq(pos),
            s_hot.eq(therm[:npos] & ~therm[1:npos + 1]),
        ]

        # ---- stage 1: buffer write, header and head capture, beat sums, frame length
        m.d.comb += [
            buf.w_en.eq(s_take & (s_pos[sb:] == 0)),
            buf.w_addr.eq(Cat(s_pos[:sb], s_slot)),
            buf.w_data.eq(s_data),
            buf.w_mask.eq(s_ok),
        ]
        for o in range(HDR):
            k, j = divmod(o, w)
            with m.If(s_take & s_hot[k]):
                m.d.sync += hdr[o].eq(s_data[j])
        head = [[Signal(8, name=f"head{s}_{p}") for p in range(HEAD_BYTES)] for s in range(ns)]
        for p in range(HEAD_BYTES):
            k, j = divmod(HDR + p, w)
            for s in range(ns):
                with m.If(s_take & s_hot[k] & s_slot_oh[s]):
                    m.d.sync += head[s][p].eq(s_data[j])
        with m.Switch(self.rd.slot):
            for s in range(ns):
                with m.Case(s):
                    m.d.comb += [self.rd.head[p].eq(head[s][p]) for p in range(HEAD_BYTES)]

        def words(mask):
            """The beat's bytes under `mask` as 16-bit words by the parity of their offset
            (an even offset is the high byte)."""
            b = [Mux(mask[j], s_data[j], 0) for j in range(w)]
            if w == 1:
                return [Mux(s_pos[0], b[0], Cat(Const(0, 8), b[0]))]
            return [Cat(b[j + 1], b[j]) for j in range(0, w, 2)]

        s2_take = Signal()
        s2_first = Signal()
        bs_ip = Signal(19)
        bs_udp = Signal(19)
        m.d.sync += [
            s2_take.eq(s_take), s2_first.eq(s_first),
            bs_ip.eq(adder_tree(words(s_ipm))),
            bs_udp.eq(adder_tree(words(s_udpm))),
        ]
        n = Signal(17)                          # frame length (saturating at 0x1FFFF)
        with m.If(s_take & s_last):
            full = s_pos + s_nbytes
            m.d.sync += n.eq(Mux(full[17:] != 0, 0x1FFFF, full[:17]))

        # ---- stage 2: the sums, partially folded
        acc_ip = Signal(17)
        acc_udp = Signal(17)
        with m.If(s2_take):
            m.d.sync += [acc_ip.eq(fold_acc(acc_ip, bs_ip, s2_first)),
                         acc_udp.eq(fold_acc(acc_udp, bs_udp, s2_first))]

        # ---- the descriptor, as soon as the last beat is through stage 1
        desc_shape = frame_desc(ns)
        m.submodules.descq = descq = SyncFIFO(width=desc_shape.size, depth=ns)
        desc_w = Signal(desc_shape)
        m.d.comb += [
            desc_w.slot.eq(s_slot),
            desc_w.length.eq(total - packet.IPV4.size - packet.UDP.size),
            desc_w.ts.eq(f_ts),
            desc_w.tag.eq(f_tag),
            descq.w_data.eq(desc_w),
            descq.w_en.eq(s_take & s_last),
            self.o.valid.eq(descq.r_rdy),
            self.o.payload.eq(descq.r_data),
            descq.r_en.eq(self.o.ready),
        ]

        # ---- the verdict: checks registered the cycle after stage 1 (the header
        # registers may take the next frame's bytes from then on), checksums compared
        # the cycle after, priority and counting a cycle later still
        def u(*octets):
            return Cat(*reversed(octets))

        end_off = Signal(17)                    # 14 + IPv4 total length
        m.d.comb += end_off.eq(IP_OFF + total)
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
            "ip_checksum": None,            # a cycle later, below
            "ip_fragment": (flags & (packet.IP_FLAG_MF | packet.IP_FRAGMENT_OFFSET_MASK)) != 0,
            "not_udp": proto != packet.PROTO_UDP,
            "ip_filter": dst_ip != self.ip,
            "udp_length": udp_len != (total - packet.IPV4.size)[:16],
            "port_filter": dport != self.port,
            "udp_checksum": None,           # a cycle later, below
            "oversize": end_off > self.slot_bytes,
        }
        order = ["truncated_eth", "mac_filter", "not_ipv4", "truncated", "ip_header",
                 "ip_length", "ip_checksum", "ip_fragment", "not_udp", "ip_filter",
                 "udp_length", "port_filter", "udp_checksum", "oversize"]
        # refmodel checks "truncated" twice: before the Ethernet header and before IPv4
        assert set(order) - {"truncated_eth"} == set(packet.DROP_REASONS) | {"oversize"}
        p1 = Signal()
        p2 = Signal()
        p3 = Signal()
        m.d.sync += [p1.eq(s_take & s_last), p2.eq(p1), p3.eq(p2)]
        held1 = {name: Signal(name=f"c_{name}") for name in order}
        held2 = {name: Signal(name=f"c2_{name}") for name in order}
        # the UDP sum must come to -(protocol + UDP length) modulo 0xFFFF: the
        # accumulator (below 0x10008) equals t0 or t0 + 0xFFFF (t0 = 0x10002 - total,
        # from 3 to 0xFFE6 for every length that passes the length checks)
        udp_nz = Signal()
        t0 = Signal(17)
        t1 = Signal(18)
        with m.If(p1):
            m.d.sync += [held1[name].eq(checks[name]) for name in order
                         if checks[name] is not None]
            m.d.sync += [
                udp_nz.eq(udp_csum != 0),
                t0.eq(0x10002 - total),
                t1.eq(0x20001 - total),
            ]
        with m.If(p2):
            m.d.sync += [held2[name].eq(held1[name]) for name in order
                         if checks[name] is not None]
            m.d.sync += [
                held2["ip_checksum"].eq(acc_ip != 0xFFFF),
                held2["udp_checksum"].eq(udp_nz & (acc_udp != t0) & (acc_udp != t1)),
            ]
        verdict = {name: Signal(name=f"v_{name}") for name in order}
        accept = Signal()
        rest = Const(1, 1)
        for name in order:
            m.d.comb += verdict[name].eq(rest & held2[name])
            rest = rest & ~held2[name]
        m.d.comb += accept.eq(rest)

        m.submodules.verdictq = verdictq = SyncFIFO(width=1, depth=ns)
        m.d.comb += [
            verdictq.w_data.eq(accept),
            verdictq.w_en.eq(p3),
            self.v.valid.eq(verdictq.r_rdy),
            self.v.payload.ok.eq(verdictq.r_data),
            verdictq.r_en.eq(self.v.ready),
        ]

        cnt = self.counters
        p4 = Signal()
        bumps = {name: Signal(name=f"bump_{name}") for name in order}
        m.d.sync += p4.eq(p3)
        with m.If(p3):
            m.d.sync += [bumps[name].eq(verdict[name]) for name in order]
        with m.If(p4):
            m.d.sync += cnt.frames_in.eq(cnt.frames_in + 1)
            for name in order:
                field = "drop_truncated" if name == "truncated_eth" else "drop_" + name
                with m.If(bumps[name]):
                    m.d.sync += cnt[field].eq(cnt[field] + 1)

        # ---- slots: owned from a frame's first beat until the consumer releases it
        rel = Signal()
        rel_slot = Signal(slot_shape(ns))
        m.d.sync += [rel.eq(self.o.valid & self.o.ready), rel_slot.eq(self.o.payload.slot)]
        set_mask = Signal(ns)
        clr_mask = Signal(ns)
        held_next = Signal(ns)
        m.d.comb += [
            set_mask.eq(Mux(take & ~in_frame, 1 << alloc_slot, 0)),
            clr_mask.eq(Mux(rel, 1 << rel_slot, 0)),
            held_next.eq((held | set_mask) & ~clr_mask),
        ]
        m.d.sync += [held.eq(held_next), alloc_ok.eq(~held_next != 0)]
        for k in reversed(range(ns)):
            with m.If(~held_next[k]):
                m.d.sync += alloc_slot.eq(k)
        m.d.comb += self.idle.eq(~in_frame & ~s_take & ~s2_take & ~p1 & ~p2 & ~p3 & ~p4
                                 & (held == 0))
        return m
