"""`tickcore bench` in a short form: the report has the promised shape.

Timings are never asserted; only that every engine ran on the same flow and
reported throughput and latency percentiles.
"""

import json

import pytest

from tickcore.host.cli import main


@pytest.mark.bench
def test_bench_short_form_json(capsys):
    assert main(["bench", "--orders", "3000", "--repeat", "1", "--serve-samples", "300",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for engine in ("reference", "software", "peer"):
        e = r[engine]
        assert set(e) >= {"msgs_per_s", "p50_ns", "p99_ns", "p999_ns"}, engine
        assert e["msgs_per_s"] > 0 and 0 < e["p50_ns"] <= e["p99_ns"] <= e["p999_ns"]
    assert r["peer"]["ops"] > 2500
    assert r["flow"]["messages"] > 2900
    for t in ("tcp", "udp"):
        for key in (f"serve_{t}", f"echo_floor_{t}"):
            s = r[key]
            assert s["samples"] == 300 and 0 < s["p50_ns"] <= s["p99_ns"] <= s["p999_ns"]
        assert r[f"serve_{t}"]["engine"] == "software"
    assert set(r["ratios"]) == {"software_vs_reference", "software_vs_peer"}


def test_bench_rejects_bad_arguments(capsys):
    assert main(["bench", "--engines", "reference,nope", "--no-serve"]) == 2
    assert main(["bench", "--orders", "10", "--no-serve"]) == 2
    assert "unknown engine" in capsys.readouterr().err
