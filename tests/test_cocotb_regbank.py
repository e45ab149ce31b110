"""The register bank's generated Verilog under cocotb (Verilator, and Icarus when installed)
against :class:`~timebin.sim.regbank.RegisterBankModel`, every output in every cycle: random
bus traffic on a Bob map with one- and two-word registers of every access kind. The cocotb
twin of ``tests/test_regbank_model.py::test_model_matches_bank``."""

import pytest
from timebin.gateware.regbank import RegisterBank
from timebin.gateware.regmap import bob_registers
from timebin.sim.cocotb.runner import run_cocotb_verilog, simulators, write_verilog
from timebin.sim.link.framer import ice40_cell_model

# 80-bit windows (a 64-bit and a 16-bit piece), a 33-bit watchdog window, 48-bit bins.
BOB_MAP = dict(channels=2, lanes=2, uis_per_symbol=40, max_window=1 << 32, histogram_bits=48,
               max_dead_time=(1 << 32) - 1, max_gate_period=1 << 16)


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("errors_dsp", [False, True], ids=["default", "ice40"])
def test_regbank_cocotb(simulator, errors_dsp):
    """With ``errors_dsp`` (the iCEBreaker's), ``write_errors`` is an iCE40 DSP's 32-bit
    accumulator, simulated with Yosys's ``SB_MAC16`` model: the same values every cycle."""
    params = dict(device="bob", map=BOB_MAP, n=3000, seed=0xB0B)
    bank = RegisterBank(bob_registers(**BOB_MAP), errors_dsp=errors_dsp)
    text, _ = write_verilog(bank, "regbank_bob")
    if errors_dsp:
        text += ice40_cell_model("SB_MAC16")
    result = run_cocotb_verilog(text, toplevel="regbank_bob",
                                test_module="timebin.sim.cocotb.tb_regbank", params=params,
                                simulator=simulator, timeout_s=600)
    assert result.tests == 1
