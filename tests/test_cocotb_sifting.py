"""The loopback sifter's generated Verilog under cocotb (Verilator, and Icarus when installed)
against the model, cycle by cycle from reset, on the seeded traffic of
``tests/test_sifting.py::test_rtl_matches_model`` (dropped log words; records of recent, too
old, not yet logged and dropped symbols on channels of every role; back-pressure with stalls;
two clears)."""

import pytest
from timebin.gateware.sifting import LoopbackSifter
from timebin.sim.cocotb.runner import run_cocotb, simulators

CONFIGS = {
    # 16 lanes (2.5 GS/s at 156.25 MHz), 4 detectors: Z, X+, X-, and one more.
    "C4-L16-D64": dict(top={"channels": 4, "lanes": 16, "depth_words": 64}, n=3000, seed=31),
    # One symbol a word, a shallow memory: many records too old.
    "C3-L1-D8": dict(top={"channels": 3, "lanes": 1, "depth_words": 8}, n=2000, seed=12),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("config", list(CONFIGS))
def test_sifter_cocotb(config, simulator):
    params = CONFIGS[config]
    result = run_cocotb(
        LoopbackSifter(**params["top"]), toplevel="sifter",
        test_module="timebin.sim.cocotb.tb_sifting", params=params, simulator=simulator,
        timeout_s=600)
    assert result.tests == 1
