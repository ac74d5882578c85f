"""Session layer of order entry over UDP (refmodel/session.py, SessionLayer.accept).

The UDP payload of each accepted frame is a MoldUDP64-shaped packet (Nasdaq
MoldUDP64 1.00, section "Downstream packet": Session 10, Sequence Number 8,
Message Count 2, then blocks of Message Length 2 + message).  In refmodel's
order, per frame:

1. payload shorter than the 20-byte header: ``drop_session_truncated``;
2. count 0xFFFF, or blocks that do not exactly fill the payload:
   ``drop_session_malformed`` (the whole block chain is walked first, so a bad
   packet never lets a single message through);
3. session name not configured: ``drop_unknown_session``;
4. count 0: ``heartbeats``;
5. per message, sequence number (first + i) against the session's expected
   one: below is ``drop_seq_duplicate``, above is ``drop_seq_gap`` (the expected
   number stays); equal takes the number and passes the block on, whatever it
   holds (the decoder judges type and length).

Input `i`: descriptors from `Ingress`, which come before the frame's verdict on
`v`: the session works on a frame speculatively (nothing counted, nothing
emitted) until it has taken the verdict, and releases every frame (taking the
descriptor frees the ingress slot), dropped ones at once.  The MoldUDP64
header, the first block's length and its message come from the ingress's
capture (`rd.head`), so a one-message packet needs no buffer read: its block
walk is one comparison.  Longer packets walk the chain through `rd` (one read
per block), then read each further message (its length with it).  Output `o`:
one `inbound_block` per sequence-accepted message: its length and its first 49
bytes (zero beyond the length), from registers.

Latency (cycles from the descriptor): 7 to the first message's `o.valid` (the
header latched, checked, the session looked up, the expected number loaded and
compared; the verdict is there by then); 6 to release a frame without
messages.  A packet of n > 1 blocks adds 6 per further block walked and, per
further message, ceil((2 + min(length, 49)) / R) reads (R = max(width, 2)
bytes each, at least L + 1) + L (L = 4, the buffer read latency) + 3.
Back-pressure: `o` holds its payload until taken; nothing else moves meanwhile.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tickcore.refmodel import moldudp64
from tickcore.refmodel.packet import HEADERS_SIZE

from .ingress import read_signature, verdict_layout
from .layouts import (
    MAX_INBOUND,
    TAG_BITS,
    TS_BITS,
    counters_layout,
    frame_desc,
    inbound_block,
    slot_shape,
)

HEADER = moldudp64.HEADER.size            # 20

COUNTERS = ("drop_session_truncated", "drop_session_malformed", "drop_unknown_session",
            "heartbeats", "drop_seq_duplicate", "drop_seq_gap")

# what a frame comes to once its header (and block chain) are checked
TRUNC, MALF, UNKNOWN, HEARTBEAT, MSGS = range(5)


def session_bits(n: int) -> int:
    return max(1, ceil_log2(n))


class Session(wiring.Component):
    def __init__(self, *, session_names, slots: int, slot_bytes: int, read_width: int,
                 read_latency: int = 4):
        self.names = tuple(session_names)
        if not 1 <= len(self.names) <= 64:
            raise ValueError("1 to 64 sessions")
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.read_width = read_width
        self.read_latency = read_latency
        self.sbits = session_bits(len(self.names))
        addr_bits = ceil_log2(slots * slot_bytes)
        super().__init__({
            "i": In(stream.Signature(frame_desc(slots))),
            "v": In(stream.Signature(verdict_layout())),
            "rd": Out(read_signature(addr_bits, read_width, slots)),
            "o": Out(stream.Signature(inbound_block(self.sbits))),
            "counters": Out(counters_layout(COUNTERS)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rw = self.read_width
        lat = self.read_latency
        cnt = self.counters
        desc = self.i.payload
        head = self.rd.head
        rdata = self.rd.data
        nsess = len(self.names)

        # -- the frame, latched from the descriptor and the captured head
        slot = Signal(slot_shape(self.slots))
        base = Signal(self.rd.addr.shape())
        length = Signal(16)
        ts = Signal(TS_BITS)
        tag = Signal(TAG_BITS)
        raws = [nm.encode("latin-1") for nm in self.names]
        assert all(len(raw) == 10 for raw in raws), "session names are padded to 10 bytes"
        mchunk = [Signal(5, name=f"mchunk{k}") for k in range(nsess)]
        name = [Signal(8, name=f"name{k}") for k in range(10)]
        seq = Signal(64)
        count = Signal(16)
        mlen = Signal(16)                       # the current message's length
        mbuf = [Signal(8, name=f"mbuf{k}") for k in range(MAX_INBOUND)]
        mask = Signal(MAX_INBOUND)              # byte k < mlen
        m.d.comb += self.rd.slot.eq(slot)

        def be(octets):
            return Cat(*reversed(octets))

        # -- flags, each registered from registers
        c_ffff = Signal()
        c_0 = Signal()
        c_1 = Signal()
        l_lt20 = Signal()
        l_eq20 = Signal()
        l_lt22 = Signal()
        lm2 = Signal(16)                        # length - 2
        p1 = Signal(17)                         # end of the first block: 22 + its length
        p1_gt = Signal()
        p1_eq = Signal()
        left = Signal(16)                       # messages after the current one
        match = Signal(nsess)
        m.d.comb += match.eq(Cat(*(mchunk[k].all() for k in range(nsess))))
        hit = Signal()
        sess = Signal(self.sbits)
        outcome = Signal(range(5))

        def thermometer(n):
            return Cat(*(n > k for k in range(MAX_INBOUND)))

        # -- expected sequence numbers per session
        m.submodules.expq = expq = Memory(shape=64, depth=nsess, init=[1] * nsess)
        exp_rd = expq.read_port()
        exp_wr = expq.write_port()
        # memories keep their contents through a reset: a session not yet written
        # since reset expects 1, whatever its row holds
        fresh = Signal(nsess, init=(1 << nsess) - 1)
        expected = Signal(64)
        sess_enc = Signal(self.sbits)
        hit_enc = Signal()
        # names are distinct: at most one matches (an OR of the matching indices)
        m.d.comb += [
            sess_enc.eq(Cat(*(Cat(*(match[k] for k in range(nsess) if k >> b & 1)).any()
                              for b in range(self.sbits)))),
            hit_enc.eq(match.any()),
        ]
        m.d.comb += [exp_rd.addr.eq(sess_enc), exp_wr.addr.eq(sess), exp_wr.data.eq(expected)]
        # sequence comparison, registered (valid a cycle after seq or expected change)
        seq_lt = Signal()
        seq_gt = Signal()
        m.d.sync += [seq_lt.eq(seq < expected), seq_gt.eq(seq > expected)]

        # -- the block walk (packets of 2 blocks or more)
        wpos = Signal(17)                       # payload offset of the next block
        windex = Signal(16)
        w_done = Signal()
        w_eq = Signal()
        w_fits = Signal()
        w_over = Signal()
        wait = Signal(range(lat + 1))

        # -- further messages: reads of the block (its length first), `lat` cycles each
        nch_max = -(-(2 + MAX_INBOUND) // rw)
        mpos = Signal(17)                       # payload offset of the current block
        raddr = Signal(self.rd.addr.shape())
        ci = Signal(range(nch_max + 2))         # next chunk to request
        nlim = Signal(range(nch_max + 1))       # chunks to request
        got_len = Signal()
        got_len_q = Signal()
        fl_valid = Signal(lat)
        fl_c = [Signal(range(nch_max + 2), name=f"fl_c{k}") for k in range(lat)]
        issue = Signal()
        m.d.comb += self.rd.addr.eq(raddr)

        def bump(field):
            m.d.sync += cnt[field].eq(cnt[field] + 1)

        # taking the descriptor (the RELEASE state) comes straight from a flip-flop
        releasing = Signal()
        m.d.comb += self.i.ready.eq(releasing)
        # and taking the verdict (the V1 state, or RELEASE for a frame dropped early)
        vready = Signal()
        m.d.comb += self.v.ready.eq(vready)

        # -- output registers
        out = self.o.payload
        o_data = [Signal(8, name=f"o_data{k}") for k in range(MAX_INBOUND)]
        m.d.comb += [out.data[k].eq(o_data[k]) for k in range(MAX_INBOUND)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                m.d.sync += [
                    slot.eq(desc.slot),
                    base.eq(desc.slot * self.slot_bytes + HEADERS_SIZE),
                    length.eq(desc.length),
                    ts.eq(desc.ts),
                    tag.eq(desc.tag),
                ]
                with m.If(self.i.valid):
                    with m.If(self.v.valid & ~self.v.payload.ok):
                        # a dropped frame whose verdict is already in: release it now
                        m.d.sync += [vready.eq(1), releasing.eq(1)]
                        m.next = "RELEASE"
                    with m.Else():
                        m.next = "HEAD"
            with m.State("HEAD"):
                # the captured head, latched (the slot select fans out to every byte)
                m.d.sync += [
                    [name[k].eq(head[k]) for k in range(10)],
                    seq.eq(be(head[10:18])),
                    count.eq(be(head[18:20])),
                    mlen.eq(be(head[20:22])),
                    [mbuf[k].eq(head[22 + k]) for k in range(MAX_INBOUND)],
                    l_lt20.eq(length < HEADER),
                    l_eq20.eq(length == HEADER),
                    l_lt22.eq(length < HEADER + 2),
                    lm2.eq(length - 2),
                    mpos.eq(HEADER),
                ]
                m.next = "D1"
            with m.State("D1"):
                # the session name, compared two bytes at a time here, whole in D2
                m.d.sync += [mchunk[k][c].eq(Cat(name[2 * c], name[2 * c + 1])
                                             == Cat(Const(raw[2 * c], 8),
                                                    Const(raw[2 * c + 1], 8)))
                             for k, raw in enumerate(raws) for c in range(5)]
                m.d.sync += [
                    c_ffff.eq(count == moldudp64.COUNT_END_OF_SESSION),
                    c_0.eq(count == 0),
                    c_1.eq(count == 1),
                    p1.eq(HEADER + 2 + mlen),
                    mask.eq(thermometer(mlen)),
                    left.eq(count - 1),
                ]
                m.next = "D2"
            with m.State("D2"):
                # the expected number is read with the session found here
                m.d.sync += [
                    sess.eq(sess_enc), hit.eq(hit_enc),
                    p1_gt.eq(p1 > length),
                    p1_eq.eq(p1 == length),
                    wpos.eq(p1),
                    windex.eq(1),
                ]
                m.next = "D3"
            with m.State("D3"):
                m.d.sync += expected.eq(Mux(fresh.bit_select(sess, 1), 1, exp_rd.data))
                m.d.sync += vready.eq(1)
                m.next = "V1"
                with m.If(l_lt20):
                    m.d.sync += outcome.eq(TRUNC)
                with m.Elif(c_ffff):
                    m.d.sync += outcome.eq(MALF)
                with m.Elif(c_0):
                    m.d.sync += outcome.eq(Mux(l_eq20, Mux(hit, HEARTBEAT, UNKNOWN), MALF))
                with m.Elif(l_lt22 | p1_gt):
                    m.d.sync += outcome.eq(MALF)
                with m.Elif(c_1):
                    m.d.sync += outcome.eq(Mux(p1_eq, Mux(hit, MSGS, UNKNOWN), MALF))
                with m.Else():
                    m.d.sync += vready.eq(0)
                    m.next = "W_FLG"
            with m.State("W_FLG"):
                m.d.sync += [
                    w_done.eq(windex == count),
                    w_eq.eq(wpos == length),
                    w_fits.eq(wpos <= lm2),
                    w_over.eq(wpos > length),
                ]
                m.next = "W_CHK"
            with m.State("W_CHK"):
                m.d.sync += [raddr.eq(base + wpos), vready.eq(w_over | w_done | ~w_fits)]
                with m.If(w_over):
                    m.d.sync += outcome.eq(MALF)
                    m.next = "V1"
                with m.Elif(w_done):
                    m.d.sync += outcome.eq(Mux(w_eq, Mux(hit, MSGS, UNKNOWN), MALF))
                    m.next = "V1"
                with m.Elif(~w_fits):
                    m.d.sync += outcome.eq(MALF)
                    m.next = "V1"
                with m.Else():
                    m.d.sync += wait.eq(0)
                    m.next = "W_READ"
            with m.State("W_READ"):
                m.d.comb += self.rd.en.eq(wait == 0)
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == lat):
                    m.d.sync += [wpos.eq(wpos + 2 + be(rdata[0:2])), windex.eq(windex + 1)]
                    m.next = "W_FLG"
            with m.State("V1"):
                # the verdict: nothing of the frame was acted on before it
                with m.If(self.v.valid):
                    m.d.sync += vready.eq(0)
                    with m.If(~self.v.payload.ok):
                        m.d.sync += releasing.eq(1)
                        m.next = "RELEASE"
                    with m.Elif(outcome == MSGS):
                        m.next = "MDEC"
                    with m.Else():
                        with m.Switch(outcome):
                            with m.Case(TRUNC):
                                bump("drop_session_truncated")
                            with m.Case(MALF):
                                bump("drop_session_malformed")
                            with m.Case(UNKNOWN):
                                bump("drop_unknown_session")
                            with m.Case(HEARTBEAT):
                                bump("heartbeats")
                        m.d.sync += releasing.eq(1)
                        m.next = "RELEASE"
            with m.State("MDEC"):
                # the message in mbuf/mlen/mask against the expected number
                m.d.sync += [
                    [o_data[k].eq(Mux(mask[k], mbuf[k], 0)) for k in range(MAX_INBOUND)],
                    out.length.eq(mlen),
                    out.session.eq(sess),
                    out.ts.eq(ts),
                    out.tag.eq(tag),
                ]
                with m.If(seq_lt):
                    bump("drop_seq_duplicate")
                    m.next = "NEXT"
                with m.Elif(seq_gt):
                    bump("drop_seq_gap")
                    m.next = "NEXT"
                with m.Else():
                    m.d.sync += expected.eq(expected + 1)
                    m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += [
                    mpos.eq(mpos + 2 + mlen),
                    seq.eq(seq + 1),
                    left.eq(left - 1),
                ]
                with m.If(left == 0):
                    m.next = "END"
                with m.Else():
                    m.next = "MSETUP"
            with m.State("MSETUP"):
                m.d.sync += [raddr.eq(base + mpos), ci.eq(0), nlim.eq(nch_max),
                             got_len.eq(0), got_len_q.eq(0)]
                m.next = "MREAD"
            with m.State("MREAD"):
                m.d.comb += [issue.eq(ci < nlim), self.rd.en.eq(issue)]
                with m.If(issue):
                    m.d.sync += [raddr.eq(raddr + rw), ci.eq(ci + 1)]
                m.d.sync += got_len_q.eq(got_len)
                with m.If(got_len_q & (ci >= nlim) & (fl_valid == 0)):
                    m.next = "MDEC"
            with m.State("END"):
                m.d.comb += exp_wr.en.eq(1)
                m.d.sync += [fresh.eq(fresh & ~(1 << sess)), releasing.eq(1)]
                m.next = "RELEASE"
            with m.State("RELEASE"):
                m.d.sync += [releasing.eq(0), vready.eq(0)]
                m.next = "IDLE"

        # reads in flight in MREAD, and what their data is when it comes back
        m.d.sync += [fl_valid.eq(Cat(issue, fl_valid[:-1])), fl_c[0].eq(ci)]
        m.d.sync += [fl_c[k].eq(fl_c[k - 1]) for k in range(1, lat)]
        ret = fl_valid[-1]
        ret_c = fl_c[-1]
        for c in range(nch_max):
            with m.If(ret & (ret_c == c)):
                for j in range(rw):
                    b = c * rw + j                # byte of the block
                    if 2 <= b < 2 + MAX_INBOUND:
                        m.d.sync += mbuf[b - 2].eq(rdata[j])
                if c == 0:
                    rlen = be(rdata[0:2])
                    clipped = Mux(rlen > MAX_INBOUND, MAX_INBOUND, rlen)
                    m.d.sync += [
                        mlen.eq(rlen),
                        mask.eq(thermometer(rlen)),
                        nlim.eq((clipped + 2 + rw - 1) >> ceil_log2(rw) if rw > 1
                                else clipped + 2),
                        got_len.eq(1),
                    ]
        return m
