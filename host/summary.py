"""Run summaries for `tickcore run` and `tickcore demo`: text and JSON."""

from __future__ import annotations

from tickcore.refmodel import ouch


def price_str(price: int) -> str:
    return f"{price // 10000}.{price % 10000:04d}"


def grouped(counters, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sorted(counters.items())
            if k.startswith(prefix) and v}


def summary_dict(cfg, result, *, input_frames: int, span_ns: int) -> dict:
    c = result.counters
    seconds = result.seconds or 1e-9
    return {
        "engine": result.engine,
        "notes": result.notes,
        "frames_in": input_frames,
        "messages_in": c["messages_in"],
        "frames_out": len(result.outputs),
        "seconds": round(result.seconds, 6),
        "frames_per_s": round(input_frames / seconds),
        "messages_per_s": round(c["messages_in"] / seconds),
        "market_time_s": round(span_ns / 1e9, 6),
        "accepted": c["accepted"],
        "replaced": c["replaced"],
        "executions": c["executions"],
        "executed_shares": c["executed_shares"],
        "canceled": grouped(c, "canceled_"),
        "rejects": grouped(c, "reject_"),
        "cancel_rejects": grouped(c, "cancel_reject_"),
        "drops": grouped(c, "drop_"),
        "capacity": grouped(c, "capacity_"),
        "counters": dict(sorted(c.items())),
        "top_of_book": result.top_of_book,
    }


def _by_reason(d: dict, names: dict | None = None) -> str:
    if not d:
        return "none"
    codes = {v: k for k, v in names.items()} if names else {}
    parts = []
    for k, v in sorted(d.items(), key=lambda kv: -kv[1]):
        code = codes.get(k)
        parts.append(f"{k}{f' ({code})' if code else ''} {v}")
    return ", ".join(parts)


def summary_text(s: dict) -> str:
    lines = [f"engine: {s['engine']}"]
    lines += [f"  note: {n}" for n in s["notes"]]
    lines += [
        f"input: {s['frames_in']} frames, {s['messages_in']} order-entry messages, "
        f"{s['market_time_s']:.3f} s of market time",
        f"output: {s['frames_out']} frames",
        f"throughput: {s['messages_per_s']:,} messages/s ({s['frames_per_s']:,} frames/s, "
        f"{s['seconds']:.3f} s)",
        f"orders: accepted {s['accepted']}, replaced {s['replaced']}",
        f"trades: {s['executions']} executions, {s['executed_shares']:,} shares",
        f"canceled by reason: {_by_reason(s['canceled'])}",
        f"rejects by reason: {_by_reason(s['rejects'], ouch.REJECT_NAMES)}",
        f"cancel rejects: {_by_reason(s['cancel_rejects'])}",
        f"drops by reason: {_by_reason(s['drops'])}",
    ]
    if s["capacity"]:
        lines.append(f"capacity rejects by resource: {_by_reason(s['capacity'])}")
    if s["top_of_book"]:
        lines.append("top of book (displayed):")
        for stock, tob in s["top_of_book"].items():
            bid = f"{tob['bid'][1]:>7} @ {price_str(tob['bid'][0]):>11}" if tob["bid"] \
                else f"{'-':>7}   {'':>11}"
            ask = f"{tob['ask'][1]:>7} @ {price_str(tob['ask'][0]):>11}" if tob["ask"] \
                else f"{'-':>7}   {'':>11}"
            lines.append(f"  {stock:<8} bid {bid}   ask {ask}")
    return "\n".join(lines)
