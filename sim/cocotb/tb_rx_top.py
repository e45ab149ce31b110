"""cocotb testbench: the generated Verilog of :class:`~timebin.gateware.rx.top.Receiver`
against :class:`~timebin.sim.rx.top.ReceiverModel`, cycle by cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``top``   keyword arguments the ``Receiver`` was built with
``n``     cycles of link traffic (after reset); a histogram read sweep follows them
``seed``  seed of :func:`~timebin.sim.rx.stimulus.receiver_stimulus` (link traffic, every
          setting moving, back-pressure, a histogram read sweep), as in
          ``tests/test_rx_top.py``

Every per-cycle input (:func:`~timebin.sim.rx.rtl.receiver_inputs`) is driven at the falling
edge and the outputs are sampled once they have settled (``ReadOnly``), as
:func:`~timebin.sim.rx.rtl.run_receiver` does in Amaranth's simulator; the other inputs hold
their Amaranth ``init`` (Verilog inputs have none). During reset every input is at its
``init`` and ``records.ready`` low, which is how Amaranth's simulator starts; the model runs
from reset, including the histogram's clearing sweep after it. Outputs are decoded with
:func:`~timebin.sim.rx.rtl.decode_outputs` and checked with
:func:`~timebin.sim.rx.rtl.compare_receiver`; the read sweep must give ``model.histogram``.
"""

import cocotb
import numpy as np
from amaranth.hdl import Value
from cocotb.clock import Clock
from timebin.gateware.rx.top import Receiver
from timebin.sim.cocotb.ports import reset, run_cycles, setting_ports
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.rx.histogram import histogram_from_sweep
from timebin.sim.rx.rtl import OUTPUT_PORTS, compare_receiver, decode_outputs, receiver_inputs
from timebin.sim.rx.stimulus import SWEEP_SETTLE, receiver_stimulus
from timebin.sim.rx.top import ReceiverModel

CLK_PERIOD_NS = 10
RESET_CYCLES = 4

@cocotb.test()
async def receiver_matches_model(dut):
    p = tb_params()
    params = dict(p["top"])
    n = int(p["n"])
    top = Receiver(**params)
    samples, ready, settings = receiver_stimulus(params, n, int(p["seed"]))
    cycles = len(samples)
    inputs = receiver_inputs(top, samples, ready, **settings)
    # The settings not driven per cycle hold their init from reset on; the per-cycle inputs
    # start at theirs too, as in Amaranth's simulator, until cycle 0 drives them.
    held = setting_ports(top, {}, per_cycle=inputs)
    start = {name: Value.cast(getattr(top, name)).init for name in inputs
             if name != "records__ready"}
    outputs = {"records__valid": "records__valid", "records__payload": "records__payload",
               **{name: name for name in OUTPUT_PORTS}}
    widths = {name: len(Value.cast(getattr(top, name)))
              for name in [*held, *start, *OUTPUT_PORTS]}
    widths.update(records__ready=1, records__valid=1,
                  records__payload=len(Value.cast(top.records.payload)))
    for name, width in widths.items():
        assert len(getattr(dut, name)) == width, \
            f"port {name}: DUT width {len(getattr(dut, name))} differs from the design's {width}"

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut, {**held, **start}, zero=("records__ready",), cycles=RESET_CYCLES)
    rec, t_sim = await run_cycles(dut, cycles, inputs, outputs)

    rtl = decode_outputs(top, rec)
    model = ReceiverModel(**params).run(samples, ready=ready, **settings)
    compare_receiver(rtl, model)
    bins = params.get("histogram_period", 1) * params["uis_per_symbol"]
    sweep = histogram_from_sweep(rtl["histogram_data"][n:], params["channels"], bins,
                                 settle=SWEEP_SETTLE)
    assert np.array_equal(sweep, model.histogram), \
        f"histogram read sweep {sweep.tolist()} differs from the model's " \
        f"{model.histogram.tolist()}"
    # Nothing of the run went unexercised.
    assert model.records_valid.sum() > 300 and model.histogram.sum() > 100
    assert model.overflows[-1].sum() > 0 and model.records["alarm"][model.records_valid].any()

    dut._log.info("%d cycles match the model (%.0f cycles/s in cocotb); %d records taken, "
                  "%d overflows, %d histogram counts", cycles, cycles / t_sim,
                  len(model.taken(ready)["index"]), int(model.overflows[-1].sum()),
                  int(model.histogram.sum()))
