"""Byte-level helpers for the fast engine, compiled with numba.

Every offset and size used by the compiled code is read here, at import time,
from the refmodel `Layout` definitions, so the fast engine never writes the
wire format a second time: `F_ACCEPTED_ORDER_REF` is
`ouch.ACCEPTED.field("order_ref").offset`, and so on.  Numba freezes module
globals as compile-time constants.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from tickcore.refmodel import itch, moldudp64, ouch
from tickcore.refmodel.packet import ETHERNET, IPV4, UDP

_LAYOUTS = {
    "ENTER": ouch.ENTER_ORDER, "REPLACE": ouch.REPLACE_ORDER, "CANCEL": ouch.CANCEL_ORDER,
    "MASS": ouch.MASS_CANCEL, "KILL": ouch.KILL_SWITCH,
    "OSYS": ouch.SYSTEM_EVENT, "ACCEPTED": ouch.ACCEPTED, "REPLACED": ouch.REPLACED,
    "CANCELED": ouch.CANCELED, "EXECUTED": ouch.EXECUTED, "REJECTED": ouch.REJECTED,
    "CANCEL_REJECT": ouch.CANCEL_REJECT,
    "ISYS": itch.SYSTEM_EVENT, "DIRECTORY": itch.STOCK_DIRECTORY,
    "ACTION": itch.TRADING_ACTION, "ADD": itch.ADD_ORDER, "EXEC": itch.ORDER_EXECUTED,
    "XCANCEL": itch.ORDER_CANCEL, "DELETE": itch.ORDER_DELETE, "IREPLACE": itch.ORDER_REPLACE,
    "TRADE": itch.TRADE,
    "MOLD": moldudp64.HEADER, "ETH": ETHERNET, "IP": IPV4, "UDP": UDP,
}

# F_<LAYOUT>_<FIELD> = byte offset, S_<LAYOUT> = size, T_<LAYOUT> = type byte
for _prefix, _layout in _LAYOUTS.items():
    globals()[f"S_{_prefix}"] = _layout.size
    if _layout.type_code is not None:
        globals()[f"T_{_prefix}"] = ord(_layout.type_code)
    for _f in _layout.all_fields:
        globals()[f"F_{_prefix}_{_f.name.upper()}"] = _f.offset

HEADERS = ETHERNET.size + IPV4.size + UDP.size


@njit(cache=True, inline="always")
def get_u16(b, p):
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


@njit(cache=True, inline="always")
def get_u32(b, p):
    return (get_u16(b, p) << 16) | get_u16(b, p + 2)


@njit(cache=True, inline="always")
def get_u48(b, p):
    return (get_u16(b, p) << 32) | get_u32(b, p + 2)


@intrinsic
def load_u64_le(typingctx, arr, pos):
    """An unaligned little-endian 8-byte load from a uint8 array."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(a.data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)
    return types.uint64(arr, pos), codegen


@intrinsic
def store_u64_le(typingctx, arr, pos, value):
    """An unaligned little-endian 8-byte store into a uint8 array."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(a.data, [args[1]]), ir.IntType(64).as_pointer())
        builder.store(context.cast(builder, args[2], sig.args[2], types.uint64), ptr, align=1)
        return context.get_dummy_value()
    return types.void(arr, pos, value), codegen


@intrinsic
def bswap64(typingctx, value):
    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.bswap", [ir.IntType(64)])
        return builder.call(fn, [args[0]])
    return types.uint64(types.uint64), codegen


@intrinsic
def copy_bytes(typingctx, dst, dp, src, sp, n):
    """memcpy(dst + dp, src + sp, n) between uint8 arrays (no overlap)."""
    def codegen(context, builder, sig, args):
        d = context.make_array(sig.args[0])(context, builder, args[0])
        s = context.make_array(sig.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(builder, builder.gep(d.data, [args[1]]),
                           builder.gep(s.data, [args[3]]), args[4], 1)
        return context.get_dummy_value()
    return types.void(dst, dp, src, sp, n), codegen


@intrinsic
def prefetch(typingctx, arr, pos):
    """A hint to bring the cache line holding arr[pos] in (llvm.prefetch: a read,
    high locality); never faults, whatever the address."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(a.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(arr, pos), codegen


@njit(cache=True, inline="always")
def get_u64(b, p):
    """Unsigned 64-bit big-endian, as uint64 (keys and token halves)."""
    return bswap64(load_u64_le(b, p))


@njit(cache=True, inline="always")
def get_bytes_u64(b, p, n):
    """Up to 8 bytes as a big-endian uint64 (alpha fields as comparable keys)."""
    v = np.uint64(0)
    for i in range(n):
        v = (v << np.uint64(8)) | np.uint64(b[p + i])
    return v


@njit(cache=True, inline="always")
def put_u8(b, p, v):
    b[p] = v & 0xFF


@njit(cache=True, inline="always")
def put_u16(b, p, v):
    b[p] = (v >> 8) & 0xFF
    b[p + 1] = v & 0xFF


@njit(cache=True, inline="always")
def put_u32(b, p, v):
    b[p] = (v >> 24) & 0xFF
    b[p + 1] = (v >> 16) & 0xFF
    b[p + 2] = (v >> 8) & 0xFF
    b[p + 3] = v & 0xFF


@njit(cache=True, inline="always")
def put_u48(b, p, v):
    put_u16(b, p, v >> 32)
    put_u32(b, p + 2, v & 0xFFFFFFFF)


@njit(cache=True, inline="always")
def put_u64(b, p, v):
    store_u64_le(b, p, bswap64(np.uint64(v)))


@njit(cache=True, inline="always")
def put_key(b, p, v, n):
    """Write the low n bytes of a uint64 key big-endian (inverse of get_bytes_u64)."""
    if n == 8:
        store_u64_le(b, p, bswap64(v))
        return
    for i in range(n):
        b[p + n - 1 - i] = np.uint8(v & np.uint64(0xFF))
        v = v >> np.uint64(8)


@njit(cache=True, inline="always")
def fold16(s):
    while s >> np.uint64(16):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return s


@njit(cache=True, inline="always")
def ones_sum(b, p, n, initial):
    """16-bit ones' complement sum of n bytes at p (odd length padded with zero),
    plus `initial`.  Sums 8-byte little-endian words and swaps the folded result:
    the ones' complement sum is independent of byte order (RFC 1071 2.B)."""
    s = np.uint64(0)
    i = 0
    while i + 8 <= n:
        v = load_u64_le(b, p + i)
        s += (v & np.uint64(0xFFFFFFFF)) + (v >> np.uint64(32))
        i += 8
    tail = np.uint64(0)
    k = np.uint64(0)
    while i < n:
        tail |= np.uint64(b[p + i]) << k
        i += 1
        k += np.uint64(8)
    s = fold16(s + (tail & np.uint64(0xFFFFFFFF)) + (tail >> np.uint64(32)))
    s = ((s & np.uint64(0xFF)) << np.uint64(8)) | (s >> np.uint64(8))
    return np.int64(fold16(s + np.uint64(initial)))


@njit(cache=True, inline="always")
def swap16(s):
    """A 16-bit ones' complement sum as if its bytes sat one position later."""
    return ((s & np.uint64(0xFF)) << np.uint64(8)) | (s >> np.uint64(8))


@njit(cache=True, inline="always")
def copy_sum(dst, dp, src, sp, n):
    """Copy src[sp:sp+n] to dst[dp:] eight bytes at a time and return the 16-bit
    ones' complement sum of those bytes (src[sp] at an even position), as
    ones_sum does.  Both buffers need 7 bytes of slack after the n: the last
    word is read and written whole (the bytes past n are masked out of the
    sum; the caller overwrites or never emits those it writes).  Summing the
    words as they pass avoids reading the frame back just after writing it,
    which stalls on store forwarding."""
    s = np.uint64(0)
    i = 0
    while i + 8 <= n:
        v = load_u64_le(src, sp + i)
        store_u64_le(dst, dp + i, v)
        s += (v & np.uint64(0xFFFFFFFF)) + (v >> np.uint64(32))
        i += 8
    if i < n:
        v = load_u64_le(src, sp + i)
        store_u64_le(dst, dp + i, v)
        v &= (np.uint64(1) << np.uint64(8 * (n - i))) - np.uint64(1)
        s += (v & np.uint64(0xFFFFFFFF)) + (v >> np.uint64(32))
    return swap16(fold16(s))


def crc32_tables() -> np.ndarray:
    """Slicing-by-8 tables of CRC-32 (IEEE 802.3, reflected 0xEDB88320)."""
    tables = np.zeros((8, 256), np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        tables[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            prev = int(tables[k - 1, i])
            tables[k, i] = (prev >> 8) ^ int(tables[0, prev & 0xFF])
    return tables


CRC_TABLES = crc32_tables()


@njit(cache=True, inline="always")
def crc32_token(session, tok_hi, tok_lo):
    """zlib.crc32 of [session byte, 14 token bytes] (refmodel/tokenmap.py) in two
    slicing steps: [session, token bytes 0-6] with the tables for 8 bytes, then
    token bytes 7-13 with those for 7 (byte i of a k-byte step looks up table
    k-1-i), so the fifteen lookups form two dependent rounds, not eight."""
    m = np.uint64(0xFF)
    first = (bswap64(tok_hi) << np.uint64(8)) | np.uint64(session & 0xFF)
    x = first ^ np.uint64(0xFFFFFFFF)
    c = (CRC_TABLES[7, x & m] ^ CRC_TABLES[6, (x >> np.uint64(8)) & m]
         ^ CRC_TABLES[5, (x >> np.uint64(16)) & m] ^ CRC_TABLES[4, (x >> np.uint64(24)) & m]
         ^ CRC_TABLES[3, (x >> np.uint64(32)) & m] ^ CRC_TABLES[2, (x >> np.uint64(40)) & m]
         ^ CRC_TABLES[1, (x >> np.uint64(48)) & m] ^ CRC_TABLES[0, x >> np.uint64(56)])
    second = (tok_hi & m) | ((bswap64(tok_lo) >> np.uint64(16)) << np.uint64(8))
    x = second ^ np.uint64(c)
    c = (CRC_TABLES[6, x & m] ^ CRC_TABLES[5, (x >> np.uint64(8)) & m]
         ^ CRC_TABLES[4, (x >> np.uint64(16)) & m] ^ CRC_TABLES[3, (x >> np.uint64(24)) & m]
         ^ CRC_TABLES[2, (x >> np.uint64(32)) & m] ^ CRC_TABLES[1, (x >> np.uint64(40)) & m]
         ^ CRC_TABLES[0, (x >> np.uint64(48)) & m])
    return c ^ np.uint32(0xFFFFFFFF)


@intrinsic
def rdtsc(typingctx):
    """The CPU cycle counter (llvm.readcyclecounter), for per-message latency."""
    from llvmlite import ir

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])
    return types.uint64(), codegen


@njit(cache=True)
def read_cycles():
    """The cycle counter, callable from Python (to calibrate its rate)."""
    return rdtsc()
