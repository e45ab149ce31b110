"""The receiver top's generated Verilog under cocotb (Verilator, and Icarus when installed)
against the model, cycle by cycle from reset: link traffic with jitter and dark counts, every
setting moving along the run, a back-pressured record stream with a stall, and a histogram
read sweep at the end. The cocotb twin of ``tests/test_rx_top.py::test_rtl_matches_model``."""

import pytest
from timebin.gateware.rx.top import Receiver
from timebin.sim.cocotb.runner import run_cocotb, simulators

CONFIGS = {
    # L = 16 lanes of S = 2 UIs, 4 channels: the 2.5 GS/s receiver at 156.25 MHz.
    "L16-S2-C4": dict(top={"channels": 4, "lanes": 16, "uis_per_symbol": 2},
                      n=6000, seed=0xC1),
    # Oversampled PHY words, a 4-symbol histogram period and a shallow merge FIFO.
    "L4-S6-C3-os2": dict(top={"channels": 3, "lanes": 4, "uis_per_symbol": 6,
                              "oversampling": 2, "histogram_period": 4, "fifo_depth": 4,
                              "max_delay": 1000},
                         n=3000, seed=0xC2),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("config", list(CONFIGS))
def test_receiver_cocotb(config, simulator):
    params = CONFIGS[config]
    result = run_cocotb(
        Receiver(**params["top"]), toplevel="rx_top",
        test_module="timebin.sim.cocotb.tb_rx_top", params=params, simulator=simulator,
        timeout_s=900)
    assert result.tests == 1
