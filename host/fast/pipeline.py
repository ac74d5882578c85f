"""Frames in, frames out, compiled: refmodel packet.py (ingress filter),
session.py (session layer), egress.py and moldudp64.Packetizer (framing).

`process_frames` runs a batch of inbound frames held in one byte buffer and
writes every output frame into `E.out_*`.  Before each message it checks that
the output has room for the worst case one message can cause; when it has not,
it records where it stopped (`SC.RESUME_MSG`) and returns, and the caller
drains the output and calls again.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import wire as w
from .borrowed import borrow
from .core import at, find_session, handle
from .core import core_close as core_close_day
from .core import core_open as core_open_day
from .state import DROP_BASE, MODE_LOOPBACK, SC, C, V

COUNT_END_OF_SESSION = 0xFFFF
MIN_FRAME = 60
(DROP_TRUNCATED, DROP_MAC, DROP_NOT_IPV4, DROP_IP_HEADER, DROP_IP_LENGTH, DROP_IP_CHECKSUM,
 DROP_IP_FRAGMENT, DROP_NOT_UDP, DROP_IP_FILTER, DROP_UDP_LENGTH, DROP_PORT,
 DROP_UDP_CHECKSUM) = range(12)
IP0 = w.S_ETH                       # IPv4 header offset in a frame
UDP0 = w.S_ETH + w.S_IP             # UDP header offset
PAY0 = w.HEADERS                    # UDP payload offset
AHEAD = 4                           # frames ahead to prefetch


@njit(cache=True)
def parse_frame(E, b, off, n):
    """refmodel parse_udp_frame with the venue's filter: (drop index or -1, payload
    offset, payload length)."""
    if n < w.S_ETH:
        return DROP_TRUNCATED, 0, 0
    if w.get_u48(b, off + w.F_ETH_DST) != E.venue[V.MAC]:
        return DROP_MAC, 0, 0
    if w.get_u16(b, off + w.F_ETH_ETHERTYPE) != 0x0800:
        return DROP_NOT_IPV4, 0, 0
    if n < w.S_ETH + w.S_IP:
        return DROP_TRUNCATED, 0, 0
    ip = off + IP0
    if b[ip + w.F_IP_VERSION_IHL] != 0x45:
        return DROP_IP_HEADER, 0, 0
    total = w.get_u16(b, ip + w.F_IP_TOTAL_LENGTH)
    if total < w.S_IP + w.S_UDP or w.S_ETH + total > n:
        return DROP_IP_LENGTH, 0, 0
    if w.ones_sum(b, ip, w.S_IP, 0) != 0xFFFF:
        return DROP_IP_CHECKSUM, 0, 0
    if w.get_u16(b, ip + w.F_IP_FLAGS_FRAGMENT) & 0x3FFF:
        return DROP_IP_FRAGMENT, 0, 0
    if b[ip + w.F_IP_PROTOCOL] != 17:
        return DROP_NOT_UDP, 0, 0
    if w.get_u32(b, ip + w.F_IP_DST) != E.venue[V.IP]:
        return DROP_IP_FILTER, 0, 0
    udp = off + UDP0
    udp_len = w.get_u16(b, udp + w.F_UDP_LENGTH)
    if udp_len != total - w.S_IP:
        return DROP_UDP_LENGTH, 0, 0
    if w.get_u16(b, udp + w.F_UDP_DST_PORT) != E.venue[V.OE_PORT]:
        return DROP_PORT, 0, 0
    if w.get_u16(b, udp + w.F_UDP_CHECKSUM) != 0:
        src = w.get_u32(b, ip + w.F_IP_SRC)
        dst = w.get_u32(b, ip + w.F_IP_DST)
        pseudo = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 17 + udp_len
        if w.ones_sum(b, udp, udp_len, pseudo) != 0xFFFF:
            return DROP_UDP_CHECKSUM, 0, 0
    return -1, off + PAY0, udp_len - w.S_UDP


# -- egress -------------------------------------------------------------------------


@njit(cache=True, inline="always")
def write_frame(E, ts, dest, seq, count, buf, offs, lens, first, last):
    """One UDP frame to destination `dest` (a session index, or the feed after the
    sessions): its header template, the MoldUDP64 sequence and count, and the
    blocks buf[offs[i]:offs[i]+lens[i]] for i in [first, last).  Checksums add
    the template's precomputed sums to the sum of what changes."""
    o = E.out_buf
    q = E.sc[SC.OUT_BYTES]
    w.copy_bytes(o, q, E.tpl[dest], 0, w.HEADERS + 10)
    m = q + PAY0
    w.put_u64(o, m + w.F_MOLD_SEQUENCE, seq)
    w.put_u16(o, m + w.F_MOLD_COUNT, count)
    p = m + w.S_MOLD
    blocks = np.uint64(0)          # sum of the message blocks, in two-byte steps from m
    for i in range(first, last):
        n = lens[i]
        w.put_u16(o, p, n)
        part = np.uint64(n) + w.copy_sum(o, p + 2, buf, offs[i], n)
        blocks += w.swap16(w.fold16(part)) if (p - m) & 1 else part
        p += 2 + n
    payload = p - m
    udp_len = w.S_UDP + payload
    ip_total = w.S_IP + udp_len
    w.put_u16(o, q + IP0 + w.F_IP_TOTAL_LENGTH, ip_total)
    w.put_u16(o, q + IP0 + w.F_IP_CHECKSUM,
              ~w.fold16(np.uint64(E.tpl_ip_sum[dest] + ip_total)) & 0xFFFF)
    w.put_u16(o, q + UDP0 + w.F_UDP_LENGTH, udp_len)
    variable = (E.tpl_udp_sum[dest] + 2 * udp_len + (seq >> 48) + ((seq >> 32) & 0xFFFF)
                + ((seq >> 16) & 0xFFFF) + (seq & 0xFFFF) + count)
    csum = ~np.int64(w.fold16(blocks + np.uint64(variable))) & 0xFFFF
    w.put_u16(o, q + UDP0 + w.F_UDP_CHECKSUM, csum if csum != 0 else 0xFFFF)
    size = p - q
    while size < MIN_FRAME:
        o[q + size] = 0
        size += 1
    n = E.sc[SC.OUT_N]
    E.out_off[n] = q
    E.out_len[n] = size
    E.out_ts[n] = ts
    E.sc[SC.OUT_N] = n + 1
    E.sc[SC.OUT_BYTES] = q + size
    E.counters[C.FRAMES_OUT] += 1


@njit(cache=True)
def flush_message(E, ts):
    """Frame the records staged for one inbound message: order entry first."""
    max_payload = E.venue[V.MAX_PAYLOAD]
    n = E.sc[SC.OE_N]
    i = 0
    while i < n:
        s = E.oe_sess[i]
        size = w.S_MOLD + 2 + E.oe_len[i]
        j = i + 1
        while j < n and E.oe_sess[j] == s and size + 2 + E.oe_len[j] <= max_payload:
            size += 2 + E.oe_len[j]
            j += 1
        write_frame(E, ts, s, E.oe_seq[s], j - i, E.oe_buf, E.oe_off, E.oe_len, i, j)
        E.oe_seq[s] += j - i
        i = j
    n = E.sc[SC.MD_N]
    i = 0
    while i < n:
        size = w.S_MOLD + 2 + E.md_len[i]
        j = i + 1
        while j < n and size + 2 + E.md_len[j] <= max_payload:
            size += 2 + E.md_len[j]
            j += 1
        write_frame(E, ts, E.venue[V.N_SESS], E.sc[SC.FEED_SEQ], j - i, E.md_buf, E.md_off,
                    E.md_len, i, j)
        E.sc[SC.FEED_SEQ] += j - i
        i = j
    E.sc[SC.OE_N] = 0
    E.sc[SC.OE_BYTES] = 0
    E.sc[SC.MD_N] = 0
    E.sc[SC.MD_BYTES] = 0


# -- per-message entry points (the live venue) and start/end of day ---------------------


@njit(cache=True)
def core_message(engine, session, ts, message, type_byte):
    """One decoded message of the right length at message[0:] into the core; its records
    stay staged in E.oe_* / E.md_* (the live venue frames them itself)."""
    E = borrow(engine)
    b = borrow(message)
    at(E, ts)
    handle(E, session, b, 0, type_byte, E.sc[SC.MODE] == MODE_LOOPBACK)


@njit(cache=True)
def core_message_take(engine, session, ts, message, type_byte):
    """core_message, then take what is staged (the live venue's bytes path): returns
    (OUCH records, their bytes, ITCH records, their bytes) staged in E.oe_* / E.md_*
    and empties the staging.  The staged bytes stay in the buffers until the next
    call stages over them: the caller copies them out first."""
    E = borrow(engine)
    b = borrow(message)
    at(E, ts)
    handle(E, session, b, 0, type_byte, E.sc[SC.MODE] == MODE_LOOPBACK)
    sc = E.sc
    staged = (sc[SC.OE_N], sc[SC.OE_BYTES], sc[SC.MD_N], sc[SC.MD_BYTES])
    sc[SC.OE_N] = 0
    sc[SC.OE_BYTES] = 0
    sc[SC.MD_N] = 0
    sc[SC.MD_BYTES] = 0
    return staged


@njit(cache=True)
def core_open(engine, ts):
    """Start of day into the staging buffers (nothing in loopback mode)."""
    E = borrow(engine)
    if E.sc[SC.MODE] != MODE_LOOPBACK:
        core_open_day(E, ts)


@njit(cache=True)
def core_close(engine, ts):
    """End of day into the staging buffers (nothing in loopback mode)."""
    E = borrow(engine)
    if E.sc[SC.MODE] != MODE_LOOPBACK:
        core_close_day(E, ts)


@njit(cache=True)
def venue_open(engine, ts):
    E = borrow(engine)
    core_open(E, ts)
    flush_message(E, ts)


@njit(cache=True)
def venue_close(engine, ts):
    E = borrow(engine)
    if E.sc[SC.MODE] != MODE_LOOPBACK:
        core_close_day(E, ts)
        flush_message(E, ts)
        write_frame(E, ts, E.venue[V.N_SESS], E.sc[SC.FEED_SEQ], COUNT_END_OF_SESSION,
                    E.md_buf, E.md_off, E.md_len, 0, 0)


# -- the session layer and the frame loop ------------------------------------------------


@njit(cache=True, inline="always")
def message_size(type_byte):
    if type_byte == w.T_ENTER:
        return w.S_ENTER
    if type_byte == w.T_REPLACE:
        return w.S_REPLACE
    if type_byte == w.T_CANCEL:
        return w.S_CANCEL
    if type_byte == w.T_MASS:
        return w.S_MASS
    if type_byte == w.T_KILL:
        return w.S_KILL
    return -1


@njit(cache=True, inline="always")
def blocks_fit(b, pp, pl, count):
    """The message blocks exactly fill the payload (refmodel moldudp64.parse_packet)."""
    pos = pp + w.S_MOLD
    end = pp + pl
    for _ in range(count):
        if pos + 2 > end:
            return False
        pos += 2 + w.get_u16(b, pos)
        if pos > end:
            return False
    return pos == end


@njit(cache=True)
def process_frames(engine, buf, in_off, in_len, in_ts, start, end, reserve):
    """Process frames [start, end).  Returns the index of the first frame not
    finished: `end`, or earlier when the output needs draining."""
    E = borrow(engine)
    b = borrow(buf)
    loop_mode = E.sc[SC.MODE] == MODE_LOOPBACK
    out_cap = E.out_buf.size
    frames_cap = E.out_off.size
    f = start
    while f < end:
        if f + AHEAD < end:                   # the frame AHEAD on, and its index entries
            w.prefetch(in_off, f + 2 * AHEAD)
            w.prefetch(in_len, f + 2 * AHEAD)
            w.prefetch(in_ts, f + 2 * AHEAD)
            w.prefetch(b, in_off[f + AHEAD])
            w.prefetch(b, in_off[f + AHEAD] + 64)
        off, n, ts = in_off[f], in_len[f], in_ts[f]
        resume = E.sc[SC.RESUME_MSG]          # 1 + the message to resume at, or 0
        if resume == 0:
            E.counters[C.FRAMES_IN] += 1
        reason, pp, pl = parse_frame(E, b, off, n)
        if reason >= 0:
            E.counters[DROP_BASE + reason] += 1
            f += 1
            continue
        if pl < w.S_MOLD:
            E.counters[C.DROP_SESSION_TRUNCATED] += 1
            f += 1
            continue
        count = w.get_u16(b, pp + w.F_MOLD_COUNT)
        if count == COUNT_END_OF_SESSION or not blocks_fit(b, pp, pl, count):
            E.counters[C.DROP_SESSION_MALFORMED] += 1
            f += 1
            continue
        s = find_session(E, w.get_u64(b, pp + w.F_MOLD_SESSION),
                         w.get_bytes_u64(b, pp + w.F_MOLD_SESSION + 8, 2))
        if s < 0:
            E.counters[C.DROP_UNKNOWN_SESSION] += 1
            f += 1
            continue
        if count == 0:
            E.counters[C.HEARTBEATS] += 1
            f += 1
            continue
        seq0 = w.get_u64(b, pp + w.F_MOLD_SEQUENCE)
        far = seq0 >= np.uint64(1 << 62)          # beyond any expected number: all gaps
        first_seq = np.int64(0) if far else np.int64(seq0)
        pos = pp + w.S_MOLD
        for k in range(count):
            length = w.get_u16(b, pos)
            mp = pos + 2
            pos = mp + length
            if k < resume - 1:
                continue
            if out_cap - E.sc[SC.OUT_BYTES] < reserve or frames_cap - E.sc[SC.OUT_N] < \
                    reserve // MIN_FRAME:
                E.sc[SC.RESUME_MSG] = k + 1
                return f
            expected = E.expected_seq[s]
            seq = first_seq + k
            if not far and seq < expected:
                E.counters[C.DROP_SEQ_DUPLICATE] += 1
                continue
            if far or seq > expected:
                E.counters[C.DROP_SEQ_GAP] += 1
                continue
            E.expected_seq[s] = expected + 1
            if length == 0:
                E.counters[C.DROP_BAD_LENGTH] += 1
                continue
            type_byte = b[mp]
            size = message_size(type_byte)
            if size < 0:
                E.counters[C.DROP_UNKNOWN_TYPE] += 1
                continue
            if length != size:
                E.counters[C.DROP_BAD_LENGTH] += 1
                continue
            E.counters[C.MESSAGES_IN] += 1
            at(E, ts)
            if E.sc[SC.LAT_ON]:
                t0 = w.rdtsc()
                handle(E, s, b, mp, type_byte, loop_mode)
                flush_message(E, ts)
                i = E.sc[SC.LAT_N]
                if i < E.lat.size:
                    E.lat[i] = np.int64(w.rdtsc() - t0)
                    E.sc[SC.LAT_N] = i + 1
            else:
                handle(E, s, b, mp, type_byte, loop_mode)
                flush_message(E, ts)
        E.sc[SC.RESUME_MSG] = 0
        f += 1
    return f
