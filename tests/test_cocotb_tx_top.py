"""The transmitter top's generated Verilog under cocotb (Verilator, and Icarus when installed)
against the model, cycle by cycle: two CSPRNG configurations of 1.2 * 10^4 cycles with
non-default driver and symbol settings, the iCEBreaker's one-lane configuration (32-bit Trivium
cores, the log FIFO in block RAM), and a QRNG run whose stuck stretches raise the health
alarm and whose clear pulses lower it."""

import pytest
from timebin.gateware.tx.entropy import EntropySelect
from timebin.gateware.tx.symbols import Protocol, probability_settings
from timebin.gateware.tx.top import Transmitter
from timebin.sim.cocotb.runner import run_cocotb, simulators
from timebin.sim.tx.trivium import key_from_bytes

KEY = key_from_bytes(bytes.fromhex("0f62b5085bae0154a7fa"))
IV = key_from_bytes(bytes.fromhex("288ff65dc42b92f960c7"))

P_Z, THRESHOLDS = probability_settings(12, 0.8, (0.6, 0.3, 0.1))


def im_table(dac_bits, seed):
    """A non-default intensity-modulator table of 32 distinct-looking codes."""
    full = (1 << dac_bits) - 1
    return [(seed * 37 + i * 53) % (full + 1) for i in range(32)]


CONFIGS = {
    "L16-S2": dict(
        top={"lanes": 16, "uis_per_symbol": 2},
        n=12_000, seed=16,
        settings={"key": f"{KEY:x}", "iv": f"{IV:x}", "p_z": P_Z, "thresholds": THRESHOLDS,
                  # S = 2: one UI per bin, so pulse_width 1 / offset 0 (the defaults) are the
                  # only valid carver settings.
                  "pulse_offset": 0, "pulse_width": 1, "im_idle": 3,
                  "im_levels": im_table(8, 1), "pm_levels": [0, 1, 0, 1, 1, 0, 1, 0],
                  "delay_carver": 1, "delay_im": 3, "delay_pm": 2}),
    "L4-S4-pm2-d40": dict(
        top={"lanes": 4, "uis_per_symbol": 4, "pm_bits": 2, "max_delay": 40},
        n=12_000, seed=4,
        settings={"key": "1234abcd", "iv": "5678ef01", "protocol": Protocol.FOUR_STATE.value,
                  "pulse_offset": 1, "pulse_width": 1, "im_idle": 17,
                  "im_levels": im_table(8, 2),
                  # A word is 4 * 4 = 16 UIs: the carver delay spans more than two words.
                  "delay_carver": 37, "delay_im": 5, "delay_pm": 16,
                  "pm_levels": [0, 0, 1, 2, 3, 0, 1, 3]}),
    # The iCEBreaker's reduced Alice: 32-bit Trivium cores, a 2-word log FIFO in block RAM.
    "L1-S2-ice40": dict(
        top={"lanes": 1, "uis_per_symbol": 2, "dac_bits": 2, "health_window": 512,
             "log_depth": 2, "trivium_bits": 32, "log_ram": True},
        n=6000, seed=1,
        settings={"key": f"{KEY:x}", "iv": f"{IV:x}", "p_z": P_Z, "thresholds": THRESHOLDS,
                  "im_idle": 1, "im_levels": im_table(2, 3), "delay_carver": 2,
                  "delay_im": 1, "delay_pm": 3}),
    "qrng-L2-S4": dict(
        top={"lanes": 2, "uis_per_symbol": 4},
        n=3000, seed=7, qrng=True, expect_alarm=True,
        settings={"source": EntropySelect.QRNG.value, "im_idle": 5, "delay_im": 2}),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("config", list(CONFIGS))
def test_transmitter_cocotb(config, simulator):
    params = CONFIGS[config]
    result = run_cocotb(
        Transmitter(**params["top"]), toplevel="tx_top",
        test_module="timebin.sim.cocotb.tb_tx_top", params=params, simulator=simulator,
        timeout_s=900)
    assert result.tests == 1
