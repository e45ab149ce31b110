"""cocotb testbench: the generated Verilog of
:class:`~timebin.gateware.link.ft245.FT245SyncFIFO` against the FTDI chip model
(:class:`~timebin.sim.link.ft245.FT245Bench`), cycle by cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``stimulus``  keyword arguments of :func:`timebin.sim.link.ft245.make_stimulus` (``width``,
              ``seed``, byte counts, stall and gap rates)
``expected``  what the Amaranth simulation of the same stimulus gave: ``cycles`` and
              ``digest`` (the pin trace of :class:`FT245Bench`), and optionally the
              :class:`~timebin.sim.link.ft245.Outcome` counters; omitted keys are not checked

Each cycle the outputs are sampled just after the falling edge (every output is a register,
so they are settled there and do not depend on the inputs), the bench computes the chip's
pins and the fabric's stream signals, and those are driven for the coming rising edge: what
:func:`timebin.sim.link.ft245.simulate_rtl` does with ``ctx.get``/``ctx.set``.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.link.ft245 import COUNTERS, FT245Bench, expected_outcome, make_stimulus

CLK_PERIOD_NS = 10
RESET_CYCLES = 4


def _read(handle):
    return int(handle.value) if len(handle) == 1 else handle.value.to_unsigned()


@cocotb.test()
async def link_matches_model(dut):
    p = tb_params()
    stimulus = make_stimulus(**p["stimulus"])
    expected = p.get("expected", {})
    bench = FT245Bench(stimulus)
    assert len(dut.data_o) == stimulus.width, \
        f"DUT bus is {len(dut.data_o)} bits, the stimulus says {stimulus.width}"
    outputs = [(name, getattr(dut, name)) for name in bench.output_names]
    inputs = {name: getattr(dut, name) for name in bench.input_names}

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    idle = {"rxf_n": 1, "txe_n": 1}
    for name, handle in inputs.items():
        handle.value = idle.get(name, 0)
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    max_cycles = int(expected.get("cycles", 0)) + 1000 + 20 * (
        len(stimulus.host_to_fpga) + len(stimulus.fpga_to_host))
    falling = FallingEdge(dut.clk)
    for _ in range(max_cycles):
        values = bench.step({name: _read(handle) for name, handle in outputs})
        for name, value in values.items():
            inputs[name].value = value
        await falling
        if bench.done:
            break
    else:
        raise AssertionError(f"not done after {max_cycles} cycles")
    result = bench.result({name: _read(getattr(dut, name)) for name in COUNTERS})

    want = expected_outcome(stimulus)
    got = result.outcome
    assert got.rx == want.rx, f"rx bytes differ from the host's (got {len(got.rx)} bytes)"
    assert got.tx == want.tx, f"bytes at the host differ from tx (got {len(got.tx)} bytes)"
    assert got == want, f"counters: got {got.rx_bytes}, {got.tx_bytes}, {got.overruns}"
    if "cycles" in expected:
        assert result.cycles == expected["cycles"], \
            f"{result.cycles} cycles, the Amaranth simulation took {expected['cycles']}"
    if "digest" in expected:
        assert result.digest == expected["digest"], "pin trace differs from the Amaranth one"
    dut._log.info("width %d seed %d: %d bytes in, %d out in %d cycles (%d refused writes)",
                  stimulus.width, stimulus.seed, len(got.rx), len(got.tx), result.cycles,
                  result.chip.refused)
