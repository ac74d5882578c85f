"""The (session, order token) -> order slot map, as the gateware holds it.

Geometry: a set-associative hash table of `buckets` x `ways` entries.  The
bucket of a key is the low bits of CRC-32 (IEEE 802.3, as zlib.crc32) over 15
bytes: the session index, then the 14 token bytes.  Insert takes the lowest
free way of the bucket; a bucket with every way used is "full", which the
matching core turns into a capacity reject.  Delete frees the way; there are
no tombstones and nothing moves, so the outcome of every insert is a pure
function of the live keys.
"""

from __future__ import annotations

import zlib


def token_hash(session: int, token: str) -> int:
    return zlib.crc32(bytes((session,)) + token.encode("latin-1"))


class TokenMap:
    def __init__(self, buckets: int, ways: int):
        if buckets & (buckets - 1):
            raise ValueError("buckets must be a power of two")
        self.buckets = buckets
        self.ways = ways
        self._mask = buckets - 1
        self._keys: list[list] = [[None] * ways for _ in range(buckets)]
        self._slots: list[list[int]] = [[-1] * ways for _ in range(buckets)]

    def bucket(self, session: int, token: str) -> int:
        return token_hash(session, token) & self._mask

    def lookup(self, session: int, token: str) -> int | None:
        b = self.bucket(session, token)
        keys = self._keys[b]
        key = (session, token)
        for way in range(self.ways):
            if keys[way] == key:
                return self._slots[b][way]
        return None

    def has_room(self, session: int, token: str) -> bool:
        return None in self._keys[self.bucket(session, token)]

    def insert(self, session: int, token: str, slot: int) -> None:
        b = self.bucket(session, token)
        way = self._keys[b].index(None)          # caller checked has_room
        self._keys[b][way] = (session, token)
        self._slots[b][way] = slot

    def delete(self, session: int, token: str) -> None:
        b = self.bucket(session, token)
        way = self._keys[b].index((session, token))
        self._keys[b][way] = None
        self._slots[b][way] = -1

    def __len__(self) -> int:
        return sum(k is not None for keys in self._keys for k in keys)
