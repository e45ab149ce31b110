"""Trivium's generated Verilog under cocotb (Verilator, and Icarus when installed) against the
numba model: 10^4 keystream words with random backpressure, plus a mid-stream reload."""

import pytest
from timebin.gateware.tx.trivium import Trivium
from timebin.sim.cocotb.runner import run_cocotb, simulators
from timebin.sim.tx.trivium import key_from_bytes

# eSTREAM Trivium Set 6 vector 3 (as in tests/test_tx_trivium.py).
KEY = key_from_bytes(bytes.fromhex("0f62b5085bae0154a7fa"))
IV = key_from_bytes(bytes.fromhex("288ff65dc42b92f960c7"))


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
def test_trivium_keystream_cocotb(simulator):
    width = 64
    result = run_cocotb(
        Trivium(width), toplevel="trivium", test_module="timebin.sim.cocotb.tb_trivium",
        params={"width": width, "key": f"{KEY:x}", "iv": f"{IV:x}", "n_words": 10_000,
                "seed": 2024, "p_ready": 0.6},
        simulator=simulator, timeout_s=600)
    assert result.tests == 2
