"""Book storage for the fast engine: refmodel/book.py and tokenmap.py in numba.

Same geometry as refmodel: an order pool with a free-list stack (slot 0 handed
out first), per symbol and side a price-sorted array of at most
`levels_per_side` levels holding FIFO queues linked through
`pool_prev`/`pool_next`, and the set-associative token map (bucket = CRC-32 of
[session, token] & (buckets - 1), lowest free way, no tombstones).

One difference of layout, invisible on the wire: the level array is held
worst first, best last (refmodel lists best first), so that the levels that
come and go near the touch shift few entries.  Index `lv_count - 1` is the
best level.  Every function is O(levels) or O(ways) at most.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .state import NIL, SC, V
from .wire import crc32_token, prefetch

BUY, SELL = 0, 1


@njit(cache=True, inline="always")
def better(side, a, b):
    return a > b if side == BUY else a < b


# -- order pool -------------------------------------------------------------------


@njit(cache=True, inline="always")
def pool_has_free(E):
    return E.sc[SC.FREE_TOP] > 0


@njit(cache=True, inline="always")
def pool_alloc(E):
    E.sc[SC.FREE_TOP] -= 1
    return E.free[E.sc[SC.FREE_TOP]]


@njit(cache=True, inline="always")
def pool_release(E, slot):
    E.free[E.sc[SC.FREE_TOP]] = slot
    E.sc[SC.FREE_TOP] += 1


# -- price levels ---------------------------------------------------------------------


@njit(cache=True, inline="always")
def level_find(E, sym, side, price):
    """(index, found): the level at `price`, or where it would be inserted.
    Searches from the best level, where most activity is."""
    prices = E.lv_price[sym, side]
    i = E.lv_count[sym, side] - 1
    if side == BUY:                      # ascending prices: best (highest) last
        while i >= 0 and prices[i] > price:
            i -= 1
    else:                                # descending prices: best (lowest) last
        while i >= 0 and prices[i] < price:
            i -= 1
    if i >= 0 and prices[i] == price:
        return i, True
    return i + 1, False


@njit(cache=True, inline="always")
def can_rest(E, sym, side, price, leaving):
    """refmodel Book.can_rest: the level exists, one is free, or `leaving` frees one."""
    _, found = level_find(E, sym, side, price)
    if found:
        return True
    if E.lv_count[sym, side] < E.venue[V.LEVELS]:
        return True
    if leaving != NIL:
        return E.pool_prev[leaving] == NIL and E.pool_next[leaving] == NIL
    return False


@njit(cache=True, inline="always")
def book_append(E, slot):
    sym, side, price = E.pool_symbol[slot], E.pool_side[slot], E.pool_price[slot]
    i, found = level_find(E, sym, side, price)
    if not found:
        n = E.lv_count[sym, side]
        for j in range(n, i, -1):
            E.lv_price[sym, side, j] = E.lv_price[sym, side, j - 1]
            E.lv_head[sym, side, j] = E.lv_head[sym, side, j - 1]
            E.lv_tail[sym, side, j] = E.lv_tail[sym, side, j - 1]
            E.lv_displayed[sym, side, j] = E.lv_displayed[sym, side, j - 1]
        E.lv_price[sym, side, i] = price
        E.lv_head[sym, side, i] = NIL
        E.lv_tail[sym, side, i] = NIL
        E.lv_displayed[sym, side, i] = 0
        E.lv_count[sym, side] = n + 1
    tail = E.lv_tail[sym, side, i]
    E.pool_prev[slot] = tail
    E.pool_next[slot] = NIL
    if tail == NIL:
        E.lv_head[sym, side, i] = slot
    else:
        E.pool_next[tail] = slot
    E.lv_tail[sym, side, i] = slot
    if not E.pool_hidden[slot]:
        E.lv_displayed[sym, side, i] += E.pool_leaves[slot]


@njit(cache=True, inline="always")
def book_reduce(E, slot, qty):
    E.pool_leaves[slot] -= qty
    if not E.pool_hidden[slot]:
        sym, side = E.pool_symbol[slot], E.pool_side[slot]
        i, _ = level_find(E, sym, side, E.pool_price[slot])
        E.lv_displayed[sym, side, i] -= qty


@njit(cache=True, inline="always")
def book_unlink(E, slot):
    sym, side = E.pool_symbol[slot], E.pool_side[slot]
    i, _ = level_find(E, sym, side, E.pool_price[slot])
    if not E.pool_hidden[slot]:
        E.lv_displayed[sym, side, i] -= E.pool_leaves[slot]
    prv, nxt = E.pool_prev[slot], E.pool_next[slot]
    if prv == NIL:
        E.lv_head[sym, side, i] = nxt
    else:
        E.pool_next[prv] = nxt
    if nxt == NIL:
        E.lv_tail[sym, side, i] = prv
    else:
        E.pool_prev[nxt] = prv
    E.pool_prev[slot] = NIL
    E.pool_next[slot] = NIL
    if E.lv_head[sym, side, i] == NIL:
        n = E.lv_count[sym, side] - 1
        for j in range(i, n):
            E.lv_price[sym, side, j] = E.lv_price[sym, side, j + 1]
            E.lv_head[sym, side, j] = E.lv_head[sym, side, j + 1]
            E.lv_tail[sym, side, j] = E.lv_tail[sym, side, j + 1]
            E.lv_displayed[sym, side, j] = E.lv_displayed[sym, side, j + 1]
        E.lv_count[sym, side] = n


@njit(cache=True)
def walk_symbol(E, sym, n):
    """Append the slots of a symbol in book-walk order to E.walk from index n:
    bids best to worst, then asks, FIFO within a level.  Returns the new n."""
    for side in range(2):
        for i in range(E.lv_count[sym, side] - 1, -1, -1):
            slot = E.lv_head[sym, side, i]
            while slot != NIL:
                E.walk[n] = slot
                n += 1
                slot = E.pool_next[slot]
    return n


# -- token map --------------------------------------------------------------------


@njit(cache=True, inline="always")
def tm_bucket(E, session, hi, lo):
    return np.int64(crc32_token(session, hi, lo)) & (E.venue[V.BUCKETS] - 1)


@njit(cache=True, inline="always")
def tm_prefetch(E, b):
    """Start loading bucket b's ways: a random bucket, so usually a cache miss,
    which the checks made before the lookup can then overlap."""
    i = b * E.venue[V.WAYS]
    prefetch(E.tm_slot, i)
    prefetch(E.tm_hi, i)
    prefetch(E.tm_lo, i)
    prefetch(E.tm_session, i)


@njit(cache=True, inline="always")
def tm_way(E, b, session, hi, lo):
    """The way of bucket b holding (session, token), or NIL."""
    tm_slot = E.tm_slot
    for way in range(E.venue[V.WAYS]):
        if tm_slot[b, way] != NIL and E.tm_hi[b, way] == hi and E.tm_lo[b, way] == lo \
                and E.tm_session[b, way] == session:
            return way
    return NIL


@njit(cache=True, inline="always")
def tm_lookup(E, b, session, hi, lo):
    """The slot of (session, token) in bucket b, or NIL."""
    way = tm_way(E, b, session, hi, lo)
    return NIL if way == NIL else E.tm_slot[b, way]


@njit(cache=True, inline="always")
def tm_has_room(E, b):
    for way in range(E.venue[V.WAYS]):
        if E.tm_slot[b, way] == NIL:
            return True
    return False


@njit(cache=True, inline="always")
def tm_insert(E, b, session, hi, lo, slot):
    """Into the lowest free way of bucket b (the caller checked there is one)."""
    for way in range(E.venue[V.WAYS]):
        if E.tm_slot[b, way] == NIL:
            E.tm_session[b, way] = session
            E.tm_hi[b, way] = hi
            E.tm_lo[b, way] = lo
            E.tm_slot[b, way] = slot
            return


@njit(cache=True, inline="always")
def tm_delete(E, b, session, hi, lo):
    way = tm_way(E, b, session, hi, lo)
    if way != NIL:
        E.tm_slot[b, way] = NIL
