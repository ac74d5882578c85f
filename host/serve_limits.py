"""Rate limits of the live venue's edges (logins, retransmission requests).

A token bucket per key (the client's IP address): `rate` tokens a second, at
most `burst` saved up.  Time is the monotonic clock of the edge, never the
ingress timestamp: these limits protect the server and never change what the
engine sees, so they are not part of the journal.  The table is bounded: when
it holds `max_keys` keys, the stalest half is forgotten.
"""

from __future__ import annotations


class RateLimiter:
    __slots__ = ("rate", "burst", "max_keys", "_buckets")

    def __init__(self, rate: float, burst: float, max_keys: int = 4096):
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict = {}

    def allow(self, key, now: float) -> bool:
        """Take one token for `key` at monotonic time `now`; False when none is left."""
        if self.rate <= 0:
            return True
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            stale = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for k in stale[:len(stale) // 2]:
                del self._buckets[k]
        self._buckets[key] = (tokens, now)
        return ok
