"""Order book storage, held the way the gateware holds it.

- An order pool of `capacity.orders` slots: parallel fixed-size arrays indexed
  by slot, and a free list that is a stack (slot 0 is handed out first; a freed
  slot is the next one handed out).
- Per symbol and side, a price-sorted array of at most `levels_per_side`
  levels, best price first (bids descending, asks ascending).  A level holds
  its price, the head and tail slot of its FIFO queue and its displayed
  quantity; orders in a level are a doubly linked list through `prev`/`next`.
"""

from __future__ import annotations

BUY, SELL = 0, 1
NIL = -1


class Level:
    __slots__ = ("price", "head", "tail", "displayed")

    def __init__(self, price: int):
        self.price = price
        self.head = NIL
        self.tail = NIL
        self.displayed = 0

    def __repr__(self):
        return f"Level(price={self.price}, displayed={self.displayed})"


class OrderPool:
    """Fixed-capacity order storage with a LIFO free list."""

    def __init__(self, capacity: int):
        n = capacity
        self.capacity = n
        self.symbol = [0] * n
        self.side = [BUY] * n          # BUY or SELL
        self.side_code = [""] * n      # OUCH side as entered: B, S, T or E
        self.price = [0] * n
        self.leaves = [0] * n
        self.ref = [0] * n
        self.session = [0] * n
        self.firm = [0] * n            # firm index, for self-trade prevention
        self.token = [""] * n
        self.display = [""] * n        # OUCH display code as entered
        self.hidden = [False] * n
        self.tif = [0] * n
        self.capacity_code = [""] * n
        self.iso = [""] * n
        self.prev = [NIL] * n
        self.next = [NIL] * n
        self.free = list(range(n - 1, -1, -1))

    def alloc(self) -> int:
        return self.free.pop()

    def release(self, slot: int) -> None:
        self.free.append(slot)

    @property
    def live(self) -> int:
        return self.capacity - len(self.free)


class Book:
    """All symbols' price levels over one order pool."""

    def __init__(self, n_symbols: int, orders: int, levels_per_side: int):
        self.pool = OrderPool(orders)
        self.levels_per_side = levels_per_side
        self.sides = [([], []) for _ in range(n_symbols)]   # [symbol][BUY|SELL] -> [Level]

    @staticmethod
    def better(side: int, a: int, b: int) -> bool:
        """True when price a has priority over price b on this side."""
        return a > b if side == BUY else a < b

    def levels(self, symbol: int, side: int) -> list:
        return self.sides[symbol][side]

    def best(self, symbol: int, side: int):
        lv = self.sides[symbol][side]
        return lv[0] if lv else None

    def find(self, symbol: int, side: int, price: int):
        """(index, level) of the level at `price`, or (insert position, None)."""
        lv = self.sides[symbol][side]
        for i, level in enumerate(lv):
            if level.price == price:
                return i, level
            if self.better(side, price, level.price):
                return i, None
        return len(lv), None

    def can_rest(self, symbol: int, side: int, price: int, leaving: int = NIL) -> bool:
        """Room for an order at `price`: its level exists, or a level is free.

        `leaving` is a slot about to be removed from this side (a Replace), whose
        level is freed when it is the only order there.
        """
        _, level = self.find(symbol, side, price)
        if level is not None:
            return True
        lv = self.sides[symbol][side]
        if len(lv) < self.levels_per_side:
            return True
        if leaving != NIL:
            p = self.pool
            return p.prev[leaving] == NIL and p.next[leaving] == NIL
        return False

    def append(self, slot: int) -> None:
        """Put a filled-in pool slot at the back of its price level's queue."""
        p = self.pool
        symbol, side, price = p.symbol[slot], p.side[slot], p.price[slot]
        i, level = self.find(symbol, side, price)
        if level is None:
            level = Level(price)
            self.sides[symbol][side].insert(i, level)
        p.prev[slot] = level.tail
        p.next[slot] = NIL
        if level.tail == NIL:
            level.head = slot
        else:
            p.next[level.tail] = slot
        level.tail = slot
        if not p.hidden[slot]:
            level.displayed += p.leaves[slot]

    def reduce(self, slot: int, qty: int) -> None:
        """Take `qty` off a resting order's leaves (it stays in place)."""
        p = self.pool
        p.leaves[slot] -= qty
        if not p.hidden[slot]:
            _, level = self.find(p.symbol[slot], p.side[slot], p.price[slot])
            level.displayed -= qty

    def unlink(self, slot: int) -> None:
        """Remove a resting order from its level; an emptied level is removed."""
        p = self.pool
        i, level = self.find(p.symbol[slot], p.side[slot], p.price[slot])
        if not p.hidden[slot]:
            level.displayed -= p.leaves[slot]
        prv, nxt = p.prev[slot], p.next[slot]
        if prv == NIL:
            level.head = nxt
        else:
            p.next[prv] = nxt
        if nxt == NIL:
            level.tail = prv
        else:
            p.prev[nxt] = prv
        p.prev[slot] = p.next[slot] = NIL
        if level.head == NIL:
            del self.sides[p.symbol[slot]][p.side[slot]][i]

    def queue(self, level: Level):
        """Slots of a level in time priority."""
        slot = level.head
        while slot != NIL:
            nxt = self.pool.next[slot]
            yield slot
            slot = nxt

    def walk(self, symbol: int):
        """Every resting slot of a symbol: bids best to worst, then asks, FIFO in a level."""
        for side in (BUY, SELL):
            for level in list(self.sides[symbol][side]):
                yield from list(self.queue(level))

    def top(self, symbol: int, side: int):
        """(price, displayed quantity) of the best level with displayed quantity."""
        for level in self.sides[symbol][side]:
            if level.displayed:
                return level.price, level.displayed
        return None
