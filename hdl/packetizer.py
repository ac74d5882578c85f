"""MoldUDP64 packetizer (Nasdaq MoldUDP64 1.00; refmodel moldudp64.Packetizer).

Message blocks (`layouts.block_beat`, from the encoders via `EventMux`) are
packed into packets by refmodel's framing rule: a packet closes after a block
marked `flush` (the end of an inbound message's group), before a block for
another destination, and before a block that would take the payload past
`max_payload` bytes.  Sequence numbers are per destination (each session, and
the feed) and start at 1; a packet carries the number of its first message.

Each packet is assembled in a slot of a packet buffer at its final frame
offset (42 on), then sent as frame beats (`layouts.packet_beat`) whose bytes
0..41 are left for `UdpFramer` to fill, with the MoldUDP64 header (session
name of the destination, sequence number, message count) in bytes 42..61, and
held beside them: destination, UDP payload length and the payload's ones'
complement sum in three unfolded parts (high bytes, low bytes, header), so the
framer can put the UDP checksum in front of data it has not yet seen.

Timing: a block's first beat is held one cycle while the close decision is
registered; writes go to the buffer from registers that also feed the sum
(even and odd lanes summed, then accumulated as high and low bytes); the next
closed packet's metadata is prefetched, and the output credit and last-row
flag are registered, so no ready signal reaches the buffer or a wide register
through more than a few gates.

Latency: a packet's first beat is in the output queue 8 cycles after the beat
that closes it (sum pipeline 2, close 1, push 1, metadata queue 2, prefetch 1,
read 3; the queue adds 2 more to `o.valid`).  Throughput: input one beat per
cycle plus one cycle per block (the decision) and three per packet (the
close); output one beat per cycle with no gap between packets while closed
packets wait.  Back-pressure: input stalls when all slots hold packets not yet
sent; output beats hold until taken.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tickcore.refmodel import moldudp64
from tickcore.refmodel.packet import HEADERS_SIZE

from .adder_tree import adder_tree
from .bytebuffer import ByteBuffer
from .layouts import block_beat, packet_beat

MOLD = moldudp64.HEADER.size              # 20
PAYLOAD_OFF = HEADERS_SIZE                # 42
BLOCKS_OFF = PAYLOAD_OFF + MOLD           # 62


def tree_or(values):
    values = list(values)
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def name_sum(name: str) -> int:
    raw = name.encode("latin-1")
    return sum(int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2))


class Packetizer(wiring.Component):
    def __init__(self, *, names, max_payload: int, width: int, dest_bits: int, slots: int = 4,
                 slot_bytes: int = 2048):
        self.names = tuple(names)              # MoldUDP64 session name per destination
        self.max_payload = max_payload
        self.width = width
        self.dest_bits = dest_bits
        self.slots = slots
        self.slot_bytes = slot_bytes
        if PAYLOAD_OFF + max_payload > slot_bytes:
            raise ValueError("max_payload does not fit a packet slot")
        if slots & (slots - 1) or slot_bytes & (slot_bytes - 1):
            raise ValueError("slots and slot_bytes must be powers of two")
        super().__init__({
            "i": In(stream.Signature(block_beat(width, dest_bits))),
            "o": Out(stream.Signature(packet_beat(width, dest_bits))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.width
        nd = len(self.names)
        ns = self.slots
        sb = ceil_log2(self.slot_bytes)
        m.submodules.buf = buf = ByteBuffer(ns * self.slot_bytes, banks=w,
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
            "slot": range(ns), "dest": self.dest_bits, "length": 16, "count": 16,
            "seq": 64, "tag": 32,
        })
        m.submodules.closed = closed = SyncFIFO(width=meta_shape.size, depth=ns)
        # the payload's sum per slot, in parts, written the cycle after the push (the
        # last beat's bytes reach the sums then) and read when the packet goes out
        sums_shape = data.StructLayout({"hi": 20, "lo": 20, "hdr": 20})
        sums = [Signal(sums_shape, name=f"sums{k}") for k in range(ns)]

        full = Signal(ns)
        release = Signal(ns)
        occupy = Signal(ns)
        m.d.sync += full.eq((full | occupy) & ~release)

        # -- write side: assemble the open packet
        is_open = Signal()
        cur_dest = Signal(self.dest_bits)
        size = Signal(16)                       # payload bytes so far (header included)
        room = Signal(range(-(1 << 16), 1 << 16))   # max_payload - size
        count = Signal(16)
        wpos = Signal(range(self.slot_bytes))
        wslot = Signal(range(ns))
        slot_free = Signal()                    # ~full[wslot], registered
        tag = Signal(32)
        decided = Signal()                      # the head beat's close decision is registered
        need_close = Signal()
        push = Signal()
        wslot_next = (wslot + push)[:len(wslot)]
        m.d.sync += slot_free.eq(~((full | occupy) & ~release).bit_select(wslot_next, 1))

        # the write request and the sum's first stage, registered
        wr_en = Signal()
        wr_addr = Signal(ceil_log2(ns * self.slot_bytes))
        wr_data = Signal.like(beat.data)
        wr_mask = Signal(w)
        wr_par = Signal()                       # the beat's write position is odd
        wr_open = Signal()                      # the beat opens a packet: the sum restarts
        m.d.comb += [
            buf.w_en.eq(wr_en),
            buf.w_addr.eq(wr_addr),
            buf.w_data.eq(wr_data),
            buf.w_mask.eq(wr_mask),
            seq_rd.addr.eq(beat.dest),
            seq_rd.en.eq(0),                    # read ports are enabled by default
        ]
        take = Signal()
        pos = Mux(is_open, wpos, BLOCKS_OFF)
        m.d.sync += [
            wr_en.eq(take),
            wr_addr.eq(Cat(pos, wslot)),
            wr_par.eq(pos[0]),
            wr_open.eq(~is_open),
        ]
        for j in range(w):
            with m.If(j < beat.nbytes):
                m.d.sync += [wr_data[j].eq(beat.data[j]), wr_mask[j].eq(1)]
            with m.Else():
                m.d.sync += [wr_data[j].eq(0), wr_mask[j].eq(0)]

        # sum, stage 2: even and odd lanes; stage 3: into the high and low byte sums
        # (lane j is a high byte when its offset, write position + j, is even)
        even = Signal(11)
        odd = Signal(11)
        s2_en = Signal()
        s2_par = Signal()
        s2_open = Signal()
        m.d.sync += [
            even.eq(adder_tree(wr_data[j] for j in range(0, w, 2))),
            odd.eq(adder_tree(wr_data[j] for j in range(1, w, 2)) if w > 1 else 0),
            s2_en.eq(wr_en), s2_par.eq(wr_par), s2_open.eq(wr_open),
        ]
        acc_hi = Signal(20)
        acc_lo = Signal(20)
        with m.If(s2_en):
            m.d.sync += [
                acc_hi.eq(Mux(s2_open, 0, acc_hi) + Mux(s2_par, odd, even)),
                acc_lo.eq(Mux(s2_open, 0, acc_lo) + Mux(s2_par, even, odd)),
            ]

        hs_a = Signal(18)
        hs_b = Signal(17)
        hs_c = Signal(20)
        sum_slot = Signal(range(ns))
        seq_first = Signal(64)
        seq_after = Signal(64)
        with m.FSM():
            with m.State("FILL"):
                with m.If(self.i.valid):
                    with m.If(beat.first & ~decided):
                        m.d.sync += [
                            decided.eq(1),
                            need_close.eq(is_open & ((beat.dest != cur_dest)
                                                     | (beat.length > room))),
                        ]
                    with m.Elif(beat.first & need_close):
                        m.next = "CLOSE"
                    with m.Elif(is_open | slot_free):
                        m.d.comb += [self.i.ready.eq(1), take.eq(1)]
                        m.d.sync += wpos.eq(pos + beat.nbytes)
                        with m.If(beat.first):
                            m.d.sync += decided.eq(0)
                        with m.If(~is_open):
                            m.d.comb += seq_rd.en.eq(1)
                            m.d.sync += fresh_q.eq(fresh.bit_select(beat.dest, 1))
                            m.d.sync += [
                                is_open.eq(1), cur_dest.eq(beat.dest), tag.eq(beat.tag),
                                size.eq(MOLD + beat.length),
                                room.eq(self.max_payload - MOLD - beat.length),
                                count.eq(1),
                            ]
                        with m.Elif(beat.first):
                            m.d.sync += [size.eq(size + beat.length),
                                         room.eq(room - beat.length),
                                         count.eq(count + 1)]
                        with m.If(beat.last & beat.flush):
                            m.next = "CLOSE"
            with m.State("CLOSE"):
                # the header's share of the sum, in parts (timing)
                seq = Mux(fresh_q, 1, seq_rd.data)
                name_sums = Signal(20)
                with m.Switch(cur_dest):
                    for d, nm in enumerate(self.names):
                        with m.Case(d):
                            m.d.comb += name_sums.eq(name_sum(nm))
                m.d.sync += [
                    hs_a.eq(seq[0:16] + seq[16:32]),
                    hs_b.eq(seq[32:48] + seq[48:64]),
                    hs_c.eq(count + name_sums),
                    seq_first.eq(seq),
                    seq_after.eq(seq + count),
                ]
                m.next = "PUSH"
            with m.State("PUSH"):
                meta = Signal(meta_shape)
                m.d.comb += [
                    push.eq(1),
                    meta.slot.eq(wslot), meta.dest.eq(cur_dest), meta.length.eq(size),
                    meta.count.eq(count), meta.seq.eq(seq_first), meta.tag.eq(tag),
                    closed.w_data.eq(meta),
                    closed.w_en.eq(1),
                    occupy.eq(1 << wslot),
                    seq_wr.addr.eq(cur_dest),
                    seq_wr.data.eq(seq_after),
                    seq_wr.en.eq(1),
                ]
                m.d.sync += [is_open.eq(0), need_close.eq(0), wslot.eq(wslot + 1),
                             fresh.eq(fresh & ~(1 << cur_dest)),
                             hs_a.eq(hs_a + hs_b), sum_slot.eq(wslot)]
                m.next = "FILL"
        # the cycle after the push: the sums are complete
        pushed = Signal()
        m.d.sync += pushed.eq(push)
        for k in range(ns):
            with m.If(pushed & (sum_slot == k)):
                m.d.sync += [sums[k].hi.eq(acc_hi), sums[k].lo.eq(acc_lo),
                             sums[k].hdr.eq(hs_a + hs_c)]

        # -- read side: stream closed packets, one row per cycle
        lat = buf.read_latency
        row_bits = ceil_log2(self.slot_bytes // w + 1)
        # the next packet's metadata, prefetched from the queue with its last row
        nxt = Signal(meta_shape)
        nxt_valid = Signal()
        nxt_last_row = Signal(row_bits)
        nxt_last_nbytes = Signal(range(w + 1))
        new_meta = Signal(meta_shape)
        m.d.comb += new_meta.eq(closed.r_data)
        end = Signal(16)                        # frame length - 1
        m.d.comb += end.eq(PAYLOAD_OFF - 1 + new_meta.length)
        m.d.comb += closed.r_en.eq(~nxt_valid)
        with m.If(~nxt_valid & closed.r_rdy):
            m.d.sync += [
                nxt.eq(new_meta), nxt_valid.eq(1),
                nxt_last_row.eq(end >> ceil_log2(w)),
                nxt_last_nbytes.eq((end & (w - 1)) + 1 if w > 1 else 1),
            ]

        active = Signal()
        cur = Signal(meta_shape)
        row = Signal(row_bits)
        rows_left = Signal(row_bits)            # last row - row
        last_nbytes = Signal(range(w + 1))
        is_last = Signal()                      # rows_left == 0
        is_pen = Signal()                       # rows_left == 1
        # a packet is at least 62 bytes (the headers), so its last row is at least
        # 61 // w >= 7: neither flag is set when a packet is loaded
        assert (BLOCKS_OFF - 1) // w >= 2
        credit = Signal(init=1)                 # the output queue has room for one more read
        issue = Signal()
        m.d.comb += [
            issue.eq(active & credit),
            buf.r_en.eq(issue),
            buf.r_addr.eq(Cat(Const(0, ceil_log2(w)), row[:sb - ceil_log2(w)], cur.slot)),
        ]
        load = Signal()
        m.d.comb += load.eq(nxt_valid & (~active | (issue & is_last)))
        with m.If(issue):
            m.d.sync += [row.eq(row + 1), rows_left.eq(rows_left - 1), is_last.eq(is_pen),
                         is_pen.eq(rows_left == 2)]
            with m.If(is_last):
                m.d.sync += active.eq(0)
                m.d.comb += release.eq(1 << cur.slot)
        with m.If(load):
            m.d.sync += [cur.eq(nxt), active.eq(1), row.eq(0), rows_left.eq(nxt_last_row),
                         last_nbytes.eq(nxt_last_nbytes), is_last.eq(0), is_pen.eq(0),
                         nxt_valid.eq(0)]

        # rows 42 .. 61 hold the MoldUDP64 header: a thermometer code of the row
        hrow_lo, hrow_hi = PAYLOAD_OFF // w, (BLOCKS_OFF - 1) // w
        nh = hrow_hi + 2
        rtherm = Signal(nh)                     # rtherm[k]: row >= k
        with m.If(load):
            m.d.sync += rtherm.eq(1)
        with m.Elif(issue):
            m.d.sync += rtherm.eq(Cat(Const(1, 1), rtherm[:-1]))

        # what each read in flight is, for when its data arrives `lat` cycles later
        stages = []
        for k in range(lat):
            stages.append((Signal(name=f"s{k}_first"),
                           Signal(meta_shape, name=f"s{k}_meta"),
                           Signal(name=f"s{k}_last"),
                           Signal(range(w + 1), name=f"s{k}_nbytes"),
                           Signal(nh - hrow_lo - 1, name=f"s{k}_hrow"),
                           Signal(name=f"s{k}_valid")))
        hot = Cat(*(rtherm[r] & ~rtherm[r + 1] for r in range(hrow_lo, hrow_hi + 1)))
        m.d.sync += [
            stages[0][0].eq(rtherm[1:] == 0), stages[0][1].eq(cur), stages[0][2].eq(is_last),
            stages[0][3].eq(Mux(is_last, last_nbytes, w)), stages[0][4].eq(hot),
            stages[0][5].eq(issue),
        ]
        for k in range(1, lat):
            m.d.sync += [a.eq(b) for a, b in zip(stages[k], stages[k - 1], strict=True)]
        s_first, s_meta, s_last, s_nbytes, s_hrow, s_valid = stages[-1]

        out_shape = packet_beat(w, self.dest_bits)
        depth = 16
        m.submodules.outq = outq = SyncFIFOBuffered(width=out_shape.size, depth=depth)
        # free places in the queue not yet promised to a read in flight
        space = Signal(range(depth + 1), init=depth)
        space_next = Signal(range(-1, depth + 2))
        m.d.comb += space_next.eq(space - issue + (outq.r_rdy & outq.r_en))
        m.d.sync += [space.eq(space_next), credit.eq(space_next > 0)]

        ob = Signal(out_shape)
        name_bytes = [Signal(8, name=f"name{k}") for k in range(10)]
        with m.Switch(s_meta.dest):
            for d, nm in enumerate(self.names):
                with m.Case(d):
                    m.d.comb += [nb.eq(b) for nb, b in zip(name_bytes, nm.encode("latin-1"),
                                                           strict=True)]
        head = name_bytes
        head = head + [s_meta.seq[8 * (7 - k):8 * (8 - k)] for k in range(8)]
        head = head + [s_meta.count[8:16], s_meta.count[0:8]]
        assert len(head) == MOLD
        for j in range(w):
            terms, sel = [], []
            for r in range(hrow_lo, hrow_hi + 1):
                o = r * w + j
                if PAYLOAD_OFF <= o < BLOCKS_OFF:
                    terms.append(Mux(s_hrow[r - hrow_lo], head[o - PAYLOAD_OFF], 0))
                    sel.append(s_hrow[r - hrow_lo])
            if terms:
                m.d.comb += ob.data[j].eq(Mux(Cat(*sel).any(), tree_or(terms), buf.r_data[j]))
            else:
                m.d.comb += ob.data[j].eq(buf.r_data[j])
        s_sums = Signal(sums_shape)
        with m.Switch(s_meta.slot):
            for k in range(ns):
                with m.Case(k):
                    m.d.comb += s_sums.eq(sums[k])
        m.d.comb += [
            ob.nbytes.eq(s_nbytes),
            ob.first.eq(s_first),
            ob.last.eq(s_last),
            ob.dest.eq(s_meta.dest),
            ob.length.eq(s_meta.length),
            ob.sum_hi.eq(s_sums.hi),
            ob.sum_lo.eq(s_sums.lo),
            ob.sum_hdr.eq(s_sums.hdr),
            ob.tag.eq(s_meta.tag),
            outq.w_data.eq(ob),
            outq.w_en.eq(s_valid),
            self.o.valid.eq(outq.r_rdy),
            self.o.payload.eq(outq.r_data),
            outq.r_en.eq(self.o.ready),
            self.idle.eq(~is_open & ~closed.r_rdy & ~nxt_valid & ~active
                         & (Cat(*(st[5] for st in stages)) == 0) & ~outq.r_rdy
                         & ~wr_en & ~s2_en & ~push & ~pushed),
        ]
        return m
