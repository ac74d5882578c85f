"""The packet-loopback design: the whole packet path before the book exists.

    i -> Ingress -> Session -> OuchDecoder -> LoopbackCore -+-> FIFO -> OuchEncoder -+-> EventMux
                                                            +-> FIFO -> ItchEncoder -+
      -> Packetizer -> UdpFramer -> o

It is refmodel's `Venue(cfg, "loopback")` in gateware: for the same frames and
ingress times it emits the same frames in the same order, and its counters
carry refmodel's names (`COUNTERS`).  The venue configuration (addresses,
ports, sessions, symbols, feed, TTL, max_payload) is fixed at elaboration from
a `refmodel.config.VenueConfig`.

Ports: `i` frame beats in (`layouts.frame_beat`: time of day in ns and a tag
held with the first beat); `o` frame beats out, each frame with the tag of the
inbound frame that caused it; `counters`; `idle` (no frame anywhere inside).

Latency from an inbound frame's last beat to its response's first beat and
throughput are measured in simulation (docs/gateware.md, docs/benchmarks.md).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from . import ingress, loopback, ouch_decoder, session
from .event_mux import EventMux
from .ingress import Ingress
from .itch_encoder import ItchEncoder
from .layouts import counters_layout, frame_beat, itch_out, ouch_out, out_beat
from .loopback import LoopbackCore
from .ouch_decoder import OuchDecoder
from .ouch_encoder import OuchEncoder
from .packetizer import Packetizer
from .session import Session, session_bits
from .stream_fifo import StreamFIFO
from .udp_framer import UdpFramer

COUNTERS = (ingress.COUNTERS + session.COUNTERS + ouch_decoder.COUNTERS + loopback.COUNTERS
            + ("frames_out",))


def destinations(cfg):
    """Per egress destination index (each session, then the feed): the MoldUDP64
    session name and (dst MAC, dst IP, src port, dst port), as refmodel's Egress."""
    names = [s.name for s in cfg.sessions] + [cfg.feed_session]
    addrs = [(s.mac, s.ip, cfg.oe_port, s.port) for s in cfg.sessions]
    addrs.append((cfg.feed_mac, cfg.feed_ip, cfg.feed_src_port, cfg.feed_port))
    return names, addrs


class PacketLoopback(wiring.Component):
    def __init__(self, cfg, *, width: int = 8, slots: int = 4, slot_bytes: int = 2048):
        self.cfg = cfg
        self.width = width
        self.slots = slots
        self.slot_bytes = slot_bytes
        super().__init__({
            "i": In(stream.Signature(frame_beat(width))),
            "o": Out(stream.Signature(out_beat(width))),
            "counters": Out(counters_layout(COUNTERS)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, w = self.cfg, self.width
        sbits = session_bits(len(cfg.sessions))
        names, addrs = destinations(cfg)
        dbits = max(1, ceil_log2(len(names)))

        m.submodules.ingress = ing = Ingress(mac=cfg.mac, ip=cfg.ip, port=cfg.oe_port, width=w,
                                             slots=self.slots, slot_bytes=self.slot_bytes)
        m.submodules.session = ses = Session(session_names=names[:-1], slots=self.slots,
                                             slot_bytes=self.slot_bytes,
                                             read_width=ing.read_width,
                                             read_latency=ing.read_latency)
        m.submodules.decoder = dec = OuchDecoder(session_bits=sbits)
        m.submodules.core = core = LoopbackCore(session_bits=sbits,
                                                stocks=[s.stock for s in cfg.symbols])
        # FIFOs on the core's outputs cut the ready chain (timing); records are many
        # beats apart, so depth 2 (one record per two cycles) is plenty
        m.submodules.oe_fifo = oe_fifo = StreamFIFO(ouch_out(sbits), depth=2)
        m.submodules.md_fifo = md_fifo = StreamFIFO(itch_out(), depth=2)
        m.submodules.ouch_enc = oenc = OuchEncoder(session_bits=sbits, width=w, dest_bits=dbits)
        m.submodules.itch_enc = ienc = ItchEncoder(width=w, dest_bits=dbits,
                                                   feed_dest=len(names) - 1)
        m.submodules.mux = mux = EventMux(width=w, dest_bits=dbits)
        m.submodules.packetizer = pkt = Packetizer(names=names, max_payload=cfg.max_payload,
                                                   width=w, dest_bits=dbits)
        m.submodules.framer = fr = UdpFramer(src_mac=cfg.mac, src_ip=cfg.ip, ttl=cfg.ttl,
                                             dests=addrs, width=w, dest_bits=dbits)

        wiring.connect(m, wiring.flipped(self.i), ing.i)
        wiring.connect(m, ing.o, ses.i)
        wiring.connect(m, ing.v, ses.v)
        wiring.connect(m, ing.rd, ses.rd)
        wiring.connect(m, ses.o, dec.i)
        wiring.connect(m, dec.o, core.i)
        wiring.connect(m, core.oe, oe_fifo.i)
        wiring.connect(m, oe_fifo.o, oenc.i)
        wiring.connect(m, core.md, md_fifo.i)
        wiring.connect(m, md_fifo.o, ienc.i)
        wiring.connect(m, oenc.o, mux.oe)
        wiring.connect(m, ienc.o, mux.md)
        wiring.connect(m, mux.o, pkt.i)
        wiring.connect(m, pkt.o, fr.i)
        wiring.connect(m, fr.o, wiring.flipped(self.o))

        for block in (ing, ses, dec, core):
            for name, _ in block.counters.shape():
                m.d.comb += self.counters[name].eq(block.counters[name])
        frames_out = Signal(32)
        with m.If(self.o.valid & self.o.ready & self.o.payload.last):
            m.d.sync += frames_out.eq(frames_out + 1)
        m.d.comb += self.counters.frames_out.eq(frames_out)

        quiet = Signal()
        m.d.comb += quiet.eq(~dec.o.valid & ~core.oe.valid & ~core.md.valid & ~oe_fifo.o.valid
                             & ~md_fifo.o.valid & ~oenc.o.valid
                             & ~ienc.o.valid & ~mux.o.valid & ~fr.o.valid)
        m.d.comb += self.idle.eq(ing.idle & ses.idle & quiet & pkt.idle)
        return m
