"""MoldUDP64 packetizer (Nasdaq MoldUDP64 1.00; refmodel moldudp64.Packetizer).

Message blocks (`layouts.block_beat`, from the encoders via `EventMux`) are
packed into packets by refmodel's framing rule: a packet closes after a block
marked `flush` (the end of an inbound message's group), before a block for
another destination, and before a block that would take the payload past
`max_payload` bytes.  Sequence numbers are per destination (each session, and
the feed) and start at 1; a packet carries the number of its first message.

Each packet is assembled in a slot of a packet buffer at its final frame
offset (42 on), then sent as frame beats (`layouts.packet_beat`) whose bytes
0..41 are left zero for `UdpFramer`, with the MoldUDP64 header (session name of
the destination, sequence number, message count) in bytes 42..61, and held
beside them: destination, UDP payload length and the payload's ones'
complement sum (header included), so the framer can put the UDP checksum in
front of data it has not yet seen.

Latency: a packet's first beat leaves 5 cycles after the beat that closes it
(close, push, metadata queue, buffer read of 2).  Throughput: input one beat per
cycle plus two cycles per packet (the close); output one beat per cycle with no gap
between packets while a closed packet waits.  Back-pressure: input stalls when
both slots hold packets not yet sent; output beats hold until taken.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tickcore.refmodel import moldudp64
from tickcore.refmodel.packet import HEADERS_SIZE

from .bytebuffer import ByteBuffer
from .layouts import block_beat, packet_beat

MOLD = moldudp64.HEADER.size              # 20
PAYLOAD_OFF = HEADERS_SIZE                # 42
BLOCKS_OFF = PAYLOAD_OFF + MOLD           # 62


def name_sum(name: str) -> int:
    raw = name.encode("latin-1")
    return sum(int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2))


class Packetizer(wiring.Component):
    def __init__(self, *, names, max_payload: int, width: int, dest_bits: int, slots: int = 2,
                 slot_bytes: int = 2048):
        self.names = tuple(names)              # MoldUDP64 session name per destination
        self.max_payload = max_payload
        self.width = width
        self.dest_bits = dest_bits
        self.slots = slots
        self.slot_bytes = slot_bytes
        if PAYLOAD_OFF + max_payload > slot_bytes:
            raise ValueError("max_payload does not fit a packet slot")
        super().__init__({
            "i": In(stream.Signature(block_beat(width, dest_bits))),
            "o": Out(stream.Signature(packet_beat(width, dest_bits))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.width
        nd = len(self.names)
        m.submodules.buf = buf = ByteBuffer(self.slots * self.slot_bytes, banks=w,
                                            write_width=w, read_width=w)
        beat = self.i.payload

        # -- per-destination next sequence number
        m.submodules.seqs = seqs = Memory(shape=64, depth=nd, init=[1] * nd)
        seq_rd = seqs.read_port()
        seq_wr = seqs.write_port()
        # memories keep their contents through a reset: a destination not yet written
        # since reset starts at 1, whatever its row holds
        fresh = Signal(nd, init=(1 << nd) - 1)
        fresh_q = Signal()

        meta_shape = data.StructLayout({
            "slot": range(self.slots), "dest": self.dest_bits, "length": 16, "count": 16,
            "seq": 64, "sum": 32, "tag": 32,
        })
        m.submodules.closed = closed = SyncFIFOBuffered(width=meta_shape.size, depth=self.slots)

        full = Signal(self.slots)
        release = Signal(self.slots)
        occupy = Signal(self.slots)
        m.d.sync += full.eq((full | occupy) & ~release)

        # -- write side: assemble the open packet
        is_open = Signal()
        cur_dest = Signal(self.dest_bits)
        size = Signal(16)                       # payload bytes so far (header included)
        count = Signal(16)
        psum = Signal(32)
        wpos = Signal(range(self.slot_bytes))
        wslot = Signal(range(self.slots))
        tag = Signal(32)
        sum_a = Signal(32)
        sum_b = Signal(32)

        must_close = is_open & beat.first & (
            (beat.dest != cur_dest) | (size + beat.length > self.max_payload))
        pos = Mux(is_open, wpos, BLOCKS_OFF)
        m.d.comb += [
            buf.w_addr.eq(wslot * self.slot_bytes + pos),
            buf.w_data.eq(beat.data),
            buf.w_mask.eq(Cat(*(j < beat.nbytes for j in range(w)))),
            seq_rd.addr.eq(beat.dest),
            seq_rd.en.eq(0),                    # read ports are enabled by default
        ]
        contrib = []
        for j in range(w):
            hi = (pos[0] ^ (j & 1)) == 0                   # even frame offset: high byte
            val = Mux(j < beat.nbytes, beat.data[j], 0)
            contrib.append(Mux(hi, Cat(Const(0, 8), val), val))
        block_sum = sum(contrib[1:], contrib[0])

        with m.FSM():
            with m.State("FILL"):
                with m.If(self.i.valid):
                    with m.If(must_close):
                        m.next = "CLOSE"
                    with m.Elif(is_open | ~full.bit_select(wslot, 1)):
                        m.d.comb += [self.i.ready.eq(1), buf.w_en.eq(1)]
                        m.d.sync += wpos.eq(pos + beat.nbytes)
                        with m.If(~is_open):
                            m.d.comb += seq_rd.en.eq(1)
                            m.d.sync += fresh_q.eq(fresh.bit_select(beat.dest, 1))
                            m.d.sync += [
                                is_open.eq(1), cur_dest.eq(beat.dest), tag.eq(beat.tag),
                                size.eq(MOLD + beat.length), count.eq(1), psum.eq(block_sum),
                            ]
                        with m.Else():
                            m.d.sync += psum.eq(psum + block_sum)
                            with m.If(beat.first):
                                m.d.sync += [size.eq(size + beat.length), count.eq(count + 1)]
                        with m.If(beat.last & beat.flush):
                            m.next = "CLOSE"
            with m.State("CLOSE"):
                # the header's share of the checksum, in two halves (timing), then close
                seq = Mux(fresh_q, 1, seq_rd.data)
                name_sums = Signal(32)
                with m.Switch(cur_dest):
                    for d, name in enumerate(self.names):
                        with m.Case(d):
                            m.d.comb += name_sums.eq(name_sum(name))
                m.d.sync += [
                    sum_a.eq(psum + name_sums),
                    sum_b.eq(seq[0:16] + seq[16:32] + seq[32:48] + seq[48:64] + count),
                ]
                m.next = "PUSH"
            with m.State("PUSH"):
                seq = Mux(fresh_q, 1, seq_rd.data)
                meta = Signal(meta_shape)
                m.d.comb += [
                    meta.slot.eq(wslot), meta.dest.eq(cur_dest), meta.length.eq(size),
                    meta.count.eq(count), meta.seq.eq(seq), meta.tag.eq(tag),
                    meta.sum.eq(sum_a + sum_b),
                    closed.w_data.eq(meta),
                    closed.w_en.eq(1),
                    occupy.eq(1 << wslot),
                    seq_wr.addr.eq(cur_dest),
                    seq_wr.data.eq(seq + count),
                    seq_wr.en.eq(1),
                ]
                m.d.sync += [is_open.eq(0), wslot.eq(wslot + 1),
                             fresh.eq(fresh & ~(1 << cur_dest))]
                m.next = "FILL"

        # -- read side: stream closed packets, one row per cycle
        active = Signal()
        cur = Signal(meta_shape)
        row = Signal(range(self.slot_bytes // w + 1))
        # the last row and its byte count, worked out when the packet is loaded (timing)
        last_row = Signal.like(row)
        last_nbytes = Signal(range(w + 1))
        is_last = row == last_row
        new_meta = Signal(meta_shape)
        m.d.comb += new_meta.eq(closed.r_data)
        end = Signal(16)                        # frame length - 1
        m.d.comb += end.eq(PAYLOAD_OFF - 1 + new_meta.length)

        out_shape = packet_beat(w, self.dest_bits)
        depth = 16
        m.submodules.outq = outq = SyncFIFOBuffered(width=out_shape.size, depth=depth)
        lat = buf.read_latency
        inflight = [Signal(name=f"inflight{k}") for k in range(lat)]
        credit = (outq.level + sum(inflight[1:], inflight[0])) < depth - 1
        issue = active & credit
        load = closed.r_rdy & (~active | (issue & is_last))
        m.d.comb += [
            closed.r_en.eq(load),
            buf.r_en.eq(issue),
            buf.r_addr.eq(cur.slot * self.slot_bytes + row * w),
        ]
        m.d.sync += inflight[0].eq(issue)
        m.d.sync += [inflight[k].eq(inflight[k - 1]) for k in range(1, lat)]
        with m.If(issue):
            m.d.sync += row.eq(row + 1)
            with m.If(is_last):
                m.d.sync += active.eq(0)
                m.d.comb += release.eq(1 << cur.slot)
        with m.If(load):
            m.d.sync += [cur.eq(closed.r_data), active.eq(1), row.eq(0),
                         last_row.eq(end >> ceil_log2(w)),
                         last_nbytes.eq((end & (w - 1)) + 1 if w > 1 else 1)]

        # what each read in flight is, for when its data arrives `lat` cycles later
        stages = []
        for k in range(lat):
            stages.append((Signal.like(row, name=f"s{k}_row"),
                           Signal(meta_shape, name=f"s{k}_meta"),
                           Signal(name=f"s{k}_last"),
                           Signal(range(w + 1), name=f"s{k}_nbytes")))
        m.d.sync += [
            stages[0][0].eq(row), stages[0][1].eq(cur), stages[0][2].eq(is_last),
            stages[0][3].eq(Mux(is_last, last_nbytes, w)),
        ]
        for k in range(1, lat):
            m.d.sync += [a.eq(b) for a, b in zip(stages[k], stages[k - 1], strict=True)]
        s_row, s_meta, s_last, s_nbytes = stages[-1]
        ob = Signal(out_shape)
        head = [Const(0, 8)] * PAYLOAD_OFF
        name_bytes = [Signal(8, name=f"name{k}") for k in range(10)]
        with m.Switch(s_meta.dest):
            for d, name in enumerate(self.names):
                with m.Case(d):
                    m.d.comb += [nb.eq(b) for nb, b in zip(name_bytes, name.encode("latin-1"),
                                                           strict=True)]
        head += name_bytes
        head += [s_meta.seq[8 * (7 - k):8 * (8 - k)] for k in range(8)]
        head += [s_meta.count[8:16], s_meta.count[0:8]]
        assert len(head) == BLOCKS_OFF
        for j in range(w):
            m.d.comb += ob.data[j].eq(buf.r_data[j])
        for o, value in enumerate(head):
            with m.If(s_row == o // w):
                m.d.comb += ob.data[o % w].eq(value)
        m.d.comb += [
            ob.nbytes.eq(s_nbytes),
            ob.first.eq(s_row == 0),
            ob.last.eq(s_last),
            ob.dest.eq(s_meta.dest),
            ob.length.eq(s_meta.length),
            ob.sum.eq(s_meta.sum),
            ob.tag.eq(s_meta.tag),
            outq.w_data.eq(ob),
            outq.w_en.eq(inflight[-1]),
            self.o.valid.eq(outq.r_rdy),
            self.o.payload.eq(outq.r_data),
            outq.r_en.eq(self.o.ready),
            self.idle.eq(~is_open & ~closed.r_rdy & ~active & ~inflight[0] & ~inflight[-1]
                         & ~outq.r_rdy),
        ]
        return m
