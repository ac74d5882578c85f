"""tickcore: an FPGA matching engine and its bit-exact Python twin.

Subpackages: refmodel (the specification in code), hdl (Amaranth gateware),
sim (cocotb testbenches), host (driver, software engine, CLI), boards.
"""

__version__ = "0.1.0"
