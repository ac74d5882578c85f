"""The tickcore CLI: gen, run, decode, demo; errors and exit codes."""

import json
from collections import Counter

import pytest

from tickcore.host.cli import main
from tickcore.host.gen import FlowGenerator, GenOptions
from tickcore.refmodel import ouch
from tickcore.refmodel.config import load_config
from tickcore.refmodel.pcap import read_pcap


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    path = d / "flow.pcap"
    assert main(["gen", "--seed", "5", "--orders", "2000", "--malformed", "0.02",
                 "-o", str(path), "-q"]) == 0
    return path


def test_gen_is_deterministic_and_seeded(tmp_path, flow):
    again = tmp_path / "again.pcap"
    other = tmp_path / "other.pcap"
    main(["gen", "--seed", "5", "--orders", "2000", "--malformed", "0.02", "-o", str(again),
          "-q"])
    main(["gen", "--seed", "6", "--orders", "2000", "--malformed", "0.02", "-o", str(other),
          "-q"])
    assert again.read_bytes() == flow.read_bytes()
    assert other.read_bytes() != flow.read_bytes()


def test_gen_mix_is_realistic():
    cfg = load_config()
    recs = list(FlowGenerator(cfg, GenOptions(seed=2, orders=20_000)).frames())
    from tickcore.refmodel.venue import Venue, run_records
    v = Venue(cfg)
    list(run_records(cfg, recs, venue=v))
    c = v.all_counters()
    total = c["msg_enter"] + c["msg_cancel"] + c["msg_replace"]
    assert c["msg_cancel"] + c["msg_replace"] > 0.45 * total        # cancels/replaces dominate
    assert c["executions"] > 0.03 * total and c["accepted"] > 0.3 * total
    assert c["cancel_reject_unknown_order"] < 0.1 * c["msg_cancel"]
    gaps = [b[0] - a[0] for a, b in zip(recs, recs[1:], strict=False)]
    assert min(gaps) >= 1 and sum(g < 2_500 for g in gaps) > 100           # bursts
    sessions = Counter(f[26:30] for _, f in recs)                            # source IPs
    assert len(sessions) >= 8
    types = Counter()
    for _, f in recs:
        payload = f[42 + 20:]
        if len(payload) > 2:
            types[chr(payload[2])] += 1
    assert types["O"] and types["U"] and types["X"]


def test_gen_symbols_and_errors(tmp_path, capsys):
    p = tmp_path / "one.pcap"
    assert main(["gen", "--orders", "300", "--symbols", "1", "-o", str(p), "-q"]) == 0
    stocks = {f[42 + 20 + 2 + 20:42 + 20 + 2 + 28] for _, f in read_pcap(p)
              if len(f) > 42 + 22 + 49 and f[42 + 22:42 + 23] == b"O"}
    assert stocks <= {b"AAPL    "}
    assert main(["gen", "--orders", "10", "--symbols", "99", "-o", str(p)]) == 2
    assert main(["gen", "--orders", "10", "--malformed", "1.5", "-o", str(p)]) == 2
    err = capsys.readouterr().err
    assert "error: symbols must be between 1 and 8" in err and "malformed" in err


def test_run_summary_json_and_verify(flow, tmp_path, capsys):
    out = tmp_path / "out.pcap"
    assert main(["run", str(flow), "-o", str(out), "--verify", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["verified"] is True and 1900 < s["frames_in"] <= 2000
    assert s["frames_out"] == len(list(read_pcap(out)))
    assert s["messages_in"] > 1900 and s["executions"] > 0
    assert set(s["drops"]) and set(s["rejects"]) and s["top_of_book"]["AAPL"]["bid"]
    assert all(k in ouch.REJECT_NAMES.values() for k in s["rejects"])
    assert "auto: " in s["notes"][0]


def test_run_text_summary(flow, capsys):
    assert main(["run", str(flow), "--engine", "reference"]) == 0
    text = capsys.readouterr().out
    for needle in ("engine: reference", "throughput:", "trades:", "rejects by reason:",
                   "drops by reason:", "top of book", "AAPL", "output sha256:"):
        assert needle in text


def test_engines_agree_and_loopback_mode(flow, capsys):
    digests = {}
    for engine in ("reference", "software", "auto"):
        main(["run", str(flow), "--engine", engine, "--json"])
        digests[engine] = json.loads(capsys.readouterr().out)["output_sha256"]
    assert len(set(digests.values())) == 1
    main(["run", str(flow), "--mode", "loopback", "--json"])
    s = json.loads(capsys.readouterr().out)
    assert s["output_sha256"] != digests["reference"] and s["accepted"] > 0


def test_decode_json_lines(flow, tmp_path, capsys):
    out = tmp_path / "out.pcap"
    main(["run", str(flow), "-o", str(out), "-q"])
    capsys.readouterr()
    assert main(["decode", str(out), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["type"] == "SystemEvent" and lines[-1]["type"] == "EndOfSession"
    assert {x["stream"] for x in lines} == {"itch", "ouch_out"}
    assert main(["decode", str(flow)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert any("ouch_in" in t and "EnterOrder" in t for t in text)
    assert any("ERROR" in t for t in text)                     # the damaged frames


@pytest.mark.parametrize("argv, code, message", [
    (["run", "/nonexistent.pcap"], 2, "no such file"),
    (["decode", "PYPROJECT"], 2, "not a pcap"),
    (["run", "FLOW", "--engine", "fpga"], 3, "engine fpga"),
    (["run", "FLOW", "--engine", "sim"], 3, "runs --mode loopback"),
    (["run", "FLOW", "--config", "/nonexistent.json"], 2, "configuration"),
])
def test_errors_are_one_line_with_exit_codes(flow, capsys, argv, code, message):
    import pathlib
    pyproject = pathlib.Path(__file__).parents[2] / "pyproject.toml"
    argv = [str(flow) if a == "FLOW" else str(pyproject) if a == "PYPROJECT" else a
            for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("tickcore ")


@pytest.mark.parametrize("cmd", ["gen", "run", "decode", "demo"])
def test_help_on_every_command(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0 and "usage: tickcore " + cmd in capsys.readouterr().out


def test_demo(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path), "--orders", "1500"]) == 0
    text = capsys.readouterr().out
    assert "byte-identical" in text and "Executed" in text and "OrderExecuted" in text
    assert (tmp_path / "flow.pcap").exists() and (tmp_path / "out.pcap").exists()
