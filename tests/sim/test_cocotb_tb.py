"""Run the directed cocotb tests (cocotb_directed.py) on the Verilator build."""

import os
import sys
from pathlib import Path

import pytest

from tickcore.refmodel.config import load_config
from tickcore.sim.build import build


@pytest.mark.parametrize("width", [8, 64])
def test_directed_cocotb(width, tmp_path):
    from cocotb_tools.runner import get_runner

    b = build(load_config(), width=width // 8)
    here = Path(__file__).parent
    runner = get_runner("verilator")
    runner.test(
        hdl_toplevel="harness", hdl_toplevel_lang="verilog", test_module="cocotb_directed",
        build_dir=b.directory / "obj", test_dir=tmp_path, results_xml=str(tmp_path / "r.xml"),
        extra_env={"TICKCORE_PORTS": str(b.directory / "ports.json"),
                   "TICKCORE_TMP": str(tmp_path),
                   "PYTHONPATH": os.pathsep.join([str(here)] + [p for p in sys.path if p])})
    xml = (tmp_path / "r.xml").read_text()
    assert xml.count("<testcase") == 2 and "<failure" not in xml, xml[-2000:]
