"""The round-trip benchmark hook runs and reports (it measures; it asserts no times)."""

from __future__ import annotations

import pytest

from tickcore.host.serve_bench import echo_floor, round_trip


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_round_trip_reports_percentiles(transport):
    r = round_trip(transport, samples=300, warmup=30, busy_poll=transport == "udp")
    assert r["samples"] == 300 and r["transport"] == transport
    assert 0 < r["p50_ns"] <= r["p99_ns"] <= r["p999_ns"] <= r["max_ns"]


def test_echo_floor_reports_percentiles():
    r = echo_floor("tcp", samples=300, warmup=30, spin_server=True)
    assert r["samples"] == 300 and 0 < r["p50_ns"] <= r["p99_ns"] <= r["p999_ns"]
