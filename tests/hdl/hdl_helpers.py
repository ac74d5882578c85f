"""Shared pieces of the amaranth.sim unit tests: random records of any refmodel
layout, and conversions between records and struct values."""

import random


def random_record(layout, rng: random.Random):
    values = {}
    for f in layout.fields:
        if f.kind == "u":
            values[f.name] = rng.randrange(1 << (8 * f.size))
        elif f.kind == "a":
            values[f.name] = bytes(rng.randrange(256) for _ in range(f.size)).decode("latin-1")
        else:
            values[f.name] = chr(rng.randrange(256))
    return layout.record(**values)


def record_to_struct(layout, rec) -> dict:
    out = {}
    for f, v in zip(layout.fields, rec, strict=True):
        if f.kind == "u":
            out[f.name] = v
        elif f.kind == "a":
            out[f.name] = list(v.ljust(f.size).encode("latin-1"))
        else:
            out[f.name] = ord(v)
    return out


def struct_to_record(layout, const):
    values = []
    for f in layout.fields:
        v = const[f.name]
        if f.kind == "u":
            values.append(int(v))
        elif f.kind == "a":
            values.append(bytes(list(v)).decode("latin-1"))
        else:
            values.append(chr(int(v)))
    return layout.record(*values)
