"""The FT245 synchronous FIFO PHY's generated Verilog under cocotb (Verilator, and Icarus
when installed): random traffic both ways through the same FTDI chip model as
``tests/test_link_ft245.py``, checked against the expected outcome and, cycle for cycle,
against the Amaranth simulation of the same seed (same cycle count, same pin-trace digest)."""

import pytest
from timebin.gateware.link.ft245 import FT245SyncFIFO
from timebin.sim.cocotb.runner import run_cocotb, simulators
from timebin.sim.link.ft245 import expected_outcome, make_stimulus, simulate_rtl


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("width", [8, 32])
def test_ft245_cocotb(width, simulator):
    stimulus_args = {"width": width, "seed": 20 + width, "n_rx": 2000, "n_tx": 2000}
    stimulus = make_stimulus(**stimulus_args)
    reference = simulate_rtl(stimulus)
    assert reference.outcome == expected_outcome(stimulus)
    result = run_cocotb(
        FT245SyncFIFO(width=width), toplevel=f"ft245_w{width}",
        test_module="timebin.sim.cocotb.tb_ft245",
        params={"stimulus": stimulus_args,
                "expected": {"cycles": reference.cycles, "digest": reference.digest}},
        simulator=simulator, timeout_s=600)
    assert result.tests == 1
