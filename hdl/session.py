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

Input `i`: descriptors from `Ingress`; the payload is read through `rd` and the
descriptor is taken (freeing the ingress slot) when the frame is done.  Output
`o`: one `inbound_block` per sequence-accepted message: its length and its
first 49 bytes (zero beyond the length).

Latency (cycles, R = read width in bytes = max(width, 2), L = buffer read
latency, 3): ceil(20/R) + L for the header (the first read leaves from IDLE),
L + 1 per block for the walk, 2 to fetch the expected number, then per message
L + 1 + ceil(min(length, 49)/R) + L to the `o` transfer, then 1 to take the
descriptor.  Back-pressure: `o` holds its payload
until taken; the next message is not read meanwhile.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tickcore.refmodel import moldudp64
from tickcore.refmodel.packet import HEADERS_SIZE

from .ingress import read_signature
from .layouts import MAX_INBOUND, counters_layout, frame_desc, inbound_block

HEADER = moldudp64.HEADER.size            # 20

COUNTERS = ("drop_session_truncated", "drop_session_malformed", "drop_unknown_session",
            "heartbeats", "drop_seq_duplicate", "drop_seq_gap")


def session_bits(n: int) -> int:
    return max(1, ceil_log2(n))


class Session(wiring.Component):
    def __init__(self, *, session_names, slots: int, slot_bytes: int, read_width: int,
                 read_latency: int = 3):
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
            "rd": Out(read_signature(addr_bits, read_width)),
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

        base = Signal(self.rd.addr.shape())
        length = Signal(16)
        hdr = [Signal(8, name=f"hdr{k}") for k in range(HEADER)]
        msg = [Signal(8, name=f"msg{k}") for k in range(MAX_INBOUND)]
        chunk = Signal(range(max(HEADER, MAX_INBOUND) // rw + 2 + lat))
        nchunks = Signal(range(MAX_INBOUND // rw + 2))
        pos = Signal(18)
        index = Signal(16)
        seq = Signal(64)
        expected = Signal(64)
        blen = Signal(16)
        nread = Signal(range(MAX_INBOUND + 1))
        count = Cat(hdr[19], hdr[18])
        sequence = Cat(*reversed(hdr[10:18]))
        rdata = self.rd.data
        rlen = Cat(rdata[1], rdata[0])

        # -- session lookup by name, from the captured header
        hit = Signal()
        sess = Signal(self.sbits)
        for k, name in enumerate(self.names):
            raw = name.encode("latin-1")
            match = Cat(*hdr[:10]) == Cat(*(Const(b, 8) for b in raw))
            with m.If(match):
                m.d.comb += [hit.eq(1), sess.eq(k)]

        m.submodules.expq = expq = Memory(shape=64, depth=len(self.names),
                                          init=[1] * len(self.names))
        exp_rd = expq.read_port()
        # memories keep their contents through a reset: a session not yet written
        # since reset expects 1, whatever its row holds
        fresh = Signal(len(self.names), init=(1 << len(self.names)) - 1)
        exp_wr = expq.write_port()
        m.d.comb += [exp_rd.addr.eq(sess), exp_rd.en.eq(0),   # read ports default enabled
                     exp_wr.addr.eq(sess), exp_wr.data.eq(expected)]

        def bump(field):
            m.d.sync += cnt[field].eq(cnt[field] + 1)

        def release():
            """Done with the frame: take the descriptor (frees the slot) from a state of
            its own, so `i.ready` never waits on this cycle's decisions (timing)."""
            m.next = "RELEASE"

        def capture(regs, n):
            """Store the read data of chunk `chunk - lat` into regs[0:n]."""
            for c in range(-(-n // rw)):
                with m.If(chunk == c + lat):
                    for j in range(rw):
                        if c * rw + j < n:
                            m.d.sync += regs[c * rw + j].eq(rdata[j])

        m.d.comb += [
            self.o.payload.session.eq(sess),
            self.o.payload.length.eq(blen),
            self.o.payload.ts.eq(desc.ts),
            self.o.payload.tag.eq(desc.tag),
        ]
        for k in range(MAX_INBOUND):
            m.d.comb += self.o.payload.data[k].eq(Mux(k < blen, msg[k], 0))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                m.d.sync += [
                    base.eq(desc.slot * self.slot_bytes + HEADERS_SIZE),
                    length.eq(desc.length),
                    chunk.eq(0),
                ]
                with m.If(self.i.valid):
                    with m.If(desc.length < HEADER):
                        bump("drop_session_truncated")
                        release()
                    with m.Else():
                        # the first header read goes out from here
                        m.d.comb += [self.rd.en.eq(1),
                                     self.rd.addr.eq(desc.slot * self.slot_bytes + HEADERS_SIZE)]
                        m.d.sync += chunk.eq(1)
                        m.next = "HEADER"
            with m.State("HEADER"):
                nh = -(-HEADER // rw)
                m.d.comb += [self.rd.en.eq(chunk < nh), self.rd.addr.eq(base + chunk * rw)]
                m.d.sync += chunk.eq(chunk + 1)
                capture(hdr, HEADER)
                with m.If(chunk == nh + lat - 1):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [pos.eq(HEADER), index.eq(0)]
                with m.If(count == moldudp64.COUNT_END_OF_SESSION):
                    bump("drop_session_malformed")
                    release()
                with m.Else():
                    m.next = "WALK"
            with m.State("WALK"):
                with m.If(index == count):
                    with m.If(pos == length):
                        m.next = "LOOKUP"
                    with m.Else():
                        bump("drop_session_malformed")
                        release()
                with m.Elif(pos + 2 > length):
                    bump("drop_session_malformed")
                    release()
                with m.Else():
                    m.d.comb += [self.rd.en.eq(1), self.rd.addr.eq(base + pos)]
                    m.next = "WALK_WAIT1" if lat > 1 else "WALK_LEN"
            for k in range(1, lat):
                with m.State(f"WALK_WAIT{k}"):
                    m.next = f"WALK_WAIT{k + 1}" if k + 1 < lat else "WALK_LEN"
            with m.State("WALK_LEN"):
                next_pos = pos + 2 + rlen
                with m.If(next_pos > length):
                    bump("drop_session_malformed")
                    release()
                with m.Else():
                    m.d.sync += [pos.eq(next_pos), index.eq(index + 1)]
                    m.next = "WALK"
            with m.State("LOOKUP"):
                m.d.sync += [pos.eq(HEADER), index.eq(0), seq.eq(sequence)]
                with m.If(~hit):
                    bump("drop_unknown_session")
                    release()
                with m.Elif(count == 0):
                    bump("heartbeats")
                    release()
                with m.Else():
                    m.d.comb += exp_rd.en.eq(1)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += expected.eq(Mux(fresh.bit_select(sess, 1), 1, exp_rd.data))
                m.next = "MSG"
            with m.State("MSG"):
                with m.If(index == count):
                    m.d.comb += exp_wr.en.eq(1)
                    m.d.sync += fresh.eq(fresh & ~(1 << sess))
                    release()
                with m.Else():
                    m.d.comb += [self.rd.en.eq(1), self.rd.addr.eq(base + pos)]
                    m.next = "MSG_WAIT1" if lat > 1 else "MSG_LEN"
            for k in range(1, lat):
                with m.State(f"MSG_WAIT{k}"):
                    m.next = f"MSG_WAIT{k + 1}" if k + 1 < lat else "MSG_LEN"
            with m.State("MSG_LEN"):
                clipped = Mux(rlen > MAX_INBOUND, MAX_INBOUND, rlen)
                m.d.sync += [blen.eq(rlen), nread.eq(clipped), chunk.eq(0),
                             nchunks.eq((clipped + (rw - 1)) >> ceil_log2(rw) if rw > 1
                                        else clipped)]
                skip = [pos.eq(pos + 2 + rlen), index.eq(index + 1), seq.eq(seq + 1)]
                with m.If(seq < expected):
                    bump("drop_seq_duplicate")
                    m.d.sync += skip
                    m.next = "MSG"
                with m.Elif(seq > expected):
                    bump("drop_seq_gap")
                    m.d.sync += skip
                    m.next = "MSG"
                with m.Else():
                    m.d.sync += expected.eq(expected + 1)
                    m.next = "MSG_READ"
            with m.State("MSG_READ"):
                m.d.comb += [self.rd.en.eq(chunk * rw < nread),
                             self.rd.addr.eq(base + pos + 2 + chunk * rw)]
                m.d.sync += chunk.eq(chunk + 1)
                capture(msg, MAX_INBOUND)
                with m.If(chunk == nchunks + lat - 1):
                    m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.d.sync += [pos.eq(pos + 2 + blen), index.eq(index + 1), seq.eq(seq + 1)]
                    m.next = "MSG"
            with m.State("RELEASE"):
                m.d.comb += self.i.ready.eq(1)
                m.next = "IDLE"
        return m
