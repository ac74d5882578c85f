"""A balanced adder tree: the sum of a few values in ceil(log2(n)) adder levels,
each sum as wide as its operands need (Amaranth widens `+` by one bit).  Used by
the ingress and packetizer checksum sums.  Combinational."""

from __future__ import annotations


def adder_tree(values):
    """Sum of `values` (Amaranth values or ints), added pairwise level by level."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]
