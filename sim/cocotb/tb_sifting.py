"""cocotb testbench: the generated Verilog of :class:`~timebin.gateware.sifting.LoopbackSifter`
against :class:`~timebin.sim.sifting.LoopbackSifterModel`, cycle by cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``top``   keyword arguments the ``LoopbackSifter`` was built with
``n``     cycles to run (after reset)
``seed``  seed of :func:`~timebin.sim.sifting.sifting_stimulus`: Alice's log with dropped
          words, Bob's records of recent, too old, not yet logged and dropped symbols on
          channels of every role (changing half-way), ``sifted_records`` back-pressure with
          stalls, two ``clear`` pulses; as ``tests/test_sifting.py::test_rtl_matches_model``

Every input (:func:`~timebin.sim.sifting.sifter_inputs`: both streams, ``roles`` and
``clear``) is driven at the falling edge and every output port
(:data:`~timebin.sim.sifting.OUTPUT_PORTS`) sampled once settled (``ReadOnly``), as
:func:`~timebin.sim.sifting.run_sifter` does in Amaranth's simulator; the outputs are decoded
and checked with :func:`~timebin.sim.sifting.compare_sifter`. During reset every input is at
its Amaranth ``init`` (``roles`` all ignored, the rest 0), which is how Amaranth's simulator
starts.
"""

import cocotb
import numpy as np
from amaranth.hdl import Value
from cocotb.clock import Clock
from timebin.gateware.sifting import OUTCOME_COUNTERS, LoopbackSifter
from timebin.sim.cocotb.ports import reset, run_cycles
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.sifting import (
    OUTPUT_PORTS,
    LoopbackSifterModel,
    compare_sifter,
    decode_sifter_outputs,
    port_of,
    sifter_inputs,
    sifting_stimulus,
)

CLK_PERIOD_NS = 10
RESET_CYCLES = 4


@cocotb.test()
async def sifter_matches_model(dut):
    p = tb_params()
    params = dict(p["top"])
    n = int(p["n"])
    top = LoopbackSifter(**params)
    stimulus = sifting_stimulus(params, n, int(p["seed"]))
    model = LoopbackSifterModel(**params).run(**stimulus)
    inputs = sifter_inputs(top, stimulus, model)
    for name in (*inputs, *OUTPUT_PORTS):
        width = len(Value.cast(port_of(top, name)))
        assert len(getattr(dut, name)) == width, \
            f"port {name}: DUT width {len(getattr(dut, name))} differs from the design's {width}"
    start = {name: Value.cast(port_of(top, name)).init for name in inputs}

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut, start, cycles=RESET_CYCLES)
    rec, t_sim = await run_cycles(dut, n, inputs, {name: name for name in OUTPUT_PORTS})

    compare_sifter(decode_sifter_outputs(top, rec), model)
    # Nothing of the run went unexercised.
    assert (~model.records_ready).sum() > 10 and len(model.taken["index"]) > 50
    assert stimulus["clear"].sum() == 2
    for name in OUTCOME_COUNTERS:
        assert np.asarray(getattr(model, name)).max() > 0, f"no {name} in the run"
    dut._log.info("%d cycles match the model (%.0f cycles/s in cocotb); %d records decided, "
                  "%d sifted records taken, %d stalled cycles", n, n / t_sim,
                  int((model.decided_cycle >= 0).sum()), len(model.taken["index"]),
                  int((~model.records_ready).sum()))
