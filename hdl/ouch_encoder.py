"""OUCH 4.2 response encoder (Nasdaq OUCH 4.2 section 3; refmodel ouch.OUTBOUND).

Every outbound OUCH layout refmodel defines (System Event, Accepted, Replaced,
Canceled, Executed, Rejected, Cancel Reject) is serialized from its record,
addressed to the record's session: see `BlockEncoder` for the block format,
latency and back-pressure.
"""

from __future__ import annotations

from .block_encoder import BlockEncoder
from .layouts import OUCH_OUT_LAYOUTS, ouch_out


class OuchEncoder(BlockEncoder):
    def __init__(self, *, session_bits: int, width: int, dest_bits: int):
        super().__init__(ouch_out(session_bits), OUCH_OUT_LAYOUTS, width=width,
                         dest_bits=dest_bits)

    def dest(self, record):
        return record.session
