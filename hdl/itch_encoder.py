"""ITCH 5.0 encoder (Nasdaq TotalView-ITCH 5.0 section 1; refmodel itch.MESSAGES).

Every ITCH layout refmodel defines is serialized from its record, addressed to
the feed (destination index `feed_dest`, after the sessions): see
`BlockEncoder` for the block format, latency and back-pressure.
"""

from __future__ import annotations

from .block_encoder import BlockEncoder
from .layouts import ITCH_LAYOUTS, itch_out


class ItchEncoder(BlockEncoder):
    def __init__(self, *, width: int, dest_bits: int, feed_dest: int):
        self.feed_dest = feed_dest
        super().__init__(itch_out(), ITCH_LAYOUTS, width=width, dest_bits=dest_bits)

    def dest(self, record):
        return self.feed_dest
