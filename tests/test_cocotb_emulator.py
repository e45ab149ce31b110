"""The channel emulator's generated Verilog under cocotb (Verilator, and Icarus when
installed) against the model, cycle by cycle from reset, on the seeded traffic of
``tests/test_emulator.py::test_rtl_matches_model`` (Alice's driver words and random words,
``ser_valid`` gaps, reseeds; jitter, dark clicks and a delay through the memory)."""

import pytest
from timebin.gateware.emulator import ChannelEmulator
from timebin.sim.cocotb.runner import run_cocotb, simulators

ONE = 1 << 16

CONFIGS = {
    # 16 lanes (2.5 GS/s at 156.25 MHz), three detectors, every probability high.
    "L16-S2": dict(top={"lanes": 16, "uis_per_symbol": 2},
                   settings={"p_click": [ONE // 2, ONE // 4, ONE // 2, ONE], "p_z": ONE // 2,
                             "p_x_error": ONE // 8, "p_dark": ONE // 16, "jitter": 2,
                             "delay": 300, "seed": 12345},
                   n=1500, seed=31),
    # W = 18: the delay split by the reciprocal; two channels (X- unseen), 2-bit PM, 20-bit
    # probabilities, jitter 5.
    "L3-S6-C2": dict(top={"lanes": 3, "uis_per_symbol": 6, "channels": 2, "dac_bits": 6,
                          "pm_bits": 2, "max_delay": 50, "prob_bits": 20, "max_jitter": 5},
                     settings={"p_click": [1 << 19, 1 << 18, 1 << 19, 1 << 20],
                               "p_z": 1 << 19, "p_x_error": 1 << 18, "p_dark": 1 << 17,
                               "jitter": 5, "delay": 47, "seed": 2**63 + 5,
                               "thresholds": [3, 20, 40]},
                     n=1500, seed=2),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("config", list(CONFIGS))
def test_emulator_cocotb(config, simulator):
    params = CONFIGS[config]
    result = run_cocotb(
        ChannelEmulator(**params["top"]), toplevel="emulator",
        test_module="timebin.sim.cocotb.tb_emulator", params=params, simulator=simulator,
        timeout_s=600)
    assert result.tests == 1
