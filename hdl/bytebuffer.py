"""A byte-addressed buffer of `banks` one-byte-wide memories, any alignment.

Byte address ``a`` lives in bank ``a % banks`` at row ``a // banks``.  One write
of up to `write_width` bytes and one read of `read_width` bytes per cycle, each
at any byte address: the lanes are rotated onto the banks, so no access ever
takes two cycles.  The ingress frame buffer and the MoldUDP64 packet buffer are
built on it.

Ports (plain memory-style ports, not streams):

- write: ``w_en``, ``w_addr``, ``w_data`` (byte ``j`` goes to ``w_addr + j``),
  ``w_mask`` (lane ``j`` written when bit ``j`` is set).
- read: ``r_en``, ``r_addr``; ``r_data`` byte ``j`` is the byte at ``r_addr + j``
  `read_latency` cycles after ``r_en``: 3, or 4 with ``out_reg``.  The request
  is registered (the reader's address arithmetic stays out of the memory's
  address path), the bank outputs are registered before the lane rotation (an
  ECP5 EBR's unregistered output alone takes over 4 ns), and with ``out_reg``
  the rotated bytes are registered too, so the reader's logic starts from
  flip-flops.  Requests may be issued every cycle.

A read and a write of the same byte in one cycle return the old byte.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2


class ByteBuffer(wiring.Component):
    def __init__(self, depth: int, *, banks: int, write_width: int, read_width: int,
                 out_reg: bool = False):
        if banks & (banks - 1) or not 1 <= write_width <= banks or not 1 <= read_width <= banks:
            raise ValueError("banks must be a power of two, at least the access widths")
        if depth % banks:
            raise ValueError("depth must be a multiple of banks")
        self.depth = depth
        self.banks = banks
        self.write_width = write_width
        self.read_width = read_width
        self.out_reg = out_reg
        self.read_latency = 3 + int(out_reg)
        abits = ceil_log2(depth)
        super().__init__({
            "w_en": In(1),
            "w_addr": In(abits),
            "w_data": In(data.ArrayLayout(unsigned(8), write_width)),
            "w_mask": In(write_width),
            "r_en": In(1),
            "r_addr": In(abits),
            "r_data": Out(data.ArrayLayout(unsigned(8), read_width)),
        })

    def elaborate(self, platform):
        m = Module()
        nb = self.banks
        sbits = ceil_log2(nb)
        rows = self.depth // nb

        w_shift = self.w_addr[:sbits] if sbits else Const(0, 1)
        w_row = self.w_addr[sbits:]
        r_en = Signal()
        r_addr = Signal.like(self.r_addr)
        m.d.sync += [r_en.eq(self.r_en), r_addr.eq(self.r_addr)]
        r_shift = r_addr[:sbits] if sbits else Const(0, 1)
        r_row = r_addr[sbits:]

        pad = nb - self.write_width
        lanes = Cat(self.w_data.as_value(), Const(0, 8 * pad))
        mask = Cat(self.w_mask, Const(0, pad))
        # bank k takes lane (k - shift) mod nb: a left rotation of the lanes by `shift`
        lanes2 = Cat(lanes, lanes)
        mask2 = Cat(mask, mask)
        rot_data = Signal(8 * nb)
        rot_mask = Signal(nb)
        w_back = Signal(sbits + 1)
        m.d.comb += [
            w_back.eq(nb - w_shift),
            rot_data.eq(lanes2.bit_select(w_back * 8, 8 * nb)),
            rot_mask.eq(mask2.bit_select(w_back, nb)),
        ]

        r_shift_q = Signal(max(1, sbits))
        r_shift_qq = Signal(max(1, sbits))
        r_en_q = Signal()
        m.d.sync += r_en_q.eq(r_en)
        with m.If(r_en):
            m.d.sync += r_shift_q.eq(r_shift)
        with m.If(r_en_q):
            m.d.sync += r_shift_qq.eq(r_shift_q)
        bank_out = []
        for k in range(nb):
            mem = Memory(shape=8, depth=rows, init=[])
            m.submodules[f"bank{k}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [
                wp.addr.eq(w_row + (k < w_shift)),
                wp.data.eq(rot_data[8 * k:8 * k + 8]),
                wp.en.eq(self.w_en & rot_mask[k]),
                rp.addr.eq(r_row + (k < r_shift)),
                rp.en.eq(r_en),
            ]
            q = Signal(8, name=f"bank{k}_q")
            with m.If(r_en_q):
                m.d.sync += q.eq(rp.data)
            bank_out.append(q)
        out = Cat(*bank_out)
        out2 = Cat(out, out)
        rotated = out2.bit_select(r_shift_qq * 8, 8 * self.read_width)
        if self.out_reg:
            m.d.sync += self.r_data.eq(rotated)
        else:
            m.d.comb += self.r_data.eq(rotated)
        return m
