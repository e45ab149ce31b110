"""cocotb testbench: the generated Verilog of :class:`~timebin.gateware.emulator.ChannelEmulator`
against :class:`~timebin.sim.emulator.ChannelEmulatorModel`, cycle by cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``top``       keyword arguments the ``ChannelEmulator`` was built with
``settings``  port name -> value held from reset, as for ``ChannelEmulatorModel.run`` (lists
              for ``thresholds`` and ``p_click``); ports not named hold their Amaranth
              ``init``, which the testbench drives (Verilog inputs have none)
``n``         cycles to run (after reset)
``seed``      seed of :func:`~timebin.sim.emulator.emulator_stimulus`: Alice's driver words
              and stretches of random words, ``ser_valid`` low for a while, two reseeds

Every input (:func:`~timebin.sim.emulator.emulator_inputs`) is driven at the falling edge and
every output port (:data:`~timebin.sim.emulator.OUTPUT_PORTS`) sampled once settled
(``ReadOnly``), as :func:`~timebin.sim.emulator.run_emulator` does in Amaranth's simulator;
the outputs are decoded and checked with :func:`~timebin.sim.emulator.compare_emulator`.
During reset every input is at its Amaranth ``init``, which is how Amaranth's simulator
starts.
"""

import cocotb
from amaranth.hdl import Value
from cocotb.clock import Clock
from timebin.gateware.emulator import ChannelEmulator
from timebin.sim.cocotb.ports import reset, run_cycles
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.emulator import (
    OUTPUT_PORTS,
    ChannelEmulatorModel,
    compare_emulator,
    decode_emulator_outputs,
    emulator_inputs,
    emulator_stimulus,
)

CLK_PERIOD_NS = 10
RESET_CYCLES = 4


@cocotb.test()
async def emulator_matches_model(dut):
    p = tb_params()
    params = dict(p["top"])
    settings = dict(p.get("settings", {}))
    n = int(p["n"])
    top = ChannelEmulator(**params)
    stimulus = emulator_stimulus(params, n, int(p["seed"]), reseeds=2)
    model = ChannelEmulatorModel(**params).run(**stimulus, settings=settings)
    inputs = emulator_inputs(top, stimulus, settings)
    for name in (*inputs, *OUTPUT_PORTS):
        width = len(Value.cast(getattr(top, name)))
        assert len(getattr(dut, name)) == width, \
            f"port {name}: DUT width {len(getattr(dut, name))} differs from the design's {width}"
    start = {name: Value.cast(getattr(top, name)).init for name in inputs}

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut, start, cycles=RESET_CYCLES)
    rec, t_sim = await run_cycles(dut, n, inputs, {name: name for name in OUTPUT_PORTS})

    compare_emulator(decode_emulator_outputs(top, rec), model)
    # Nothing of the run went unexercised.
    assert model.samples.sum() > 50 and model.lost[-1].sum() > 0
    assert len(model.photons["cycle"]) > 50 and stimulus["reseed"].sum() == 2
    dut._log.info("%d cycles match the model (%.0f cycles/s in cocotb); %d clicks shown, "
                  "%d lost, %d unseen", n, n / t_sim, int(model.samples.sum()),
                  int(model.lost[-1].sum()), int(model.unseen[-1]))
