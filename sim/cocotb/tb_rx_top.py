"""cocotb testbench: the generated Verilog of :class:`~timebin.gateware.rx.top.Receiver`
against :class:`~timebin.sim.rx.top.ReceiverModel`, cycle by cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``top``   keyword arguments the ``Receiver`` was built with
``n``     cycles of link traffic (after reset); a histogram read sweep follows them
``seed``  seed of the ``numpy.random.default_rng`` the stimulus is drawn from, as in
          ``tests/test_rx_top.py``: :func:`~timebin.sim.rx.stimulus.link_samples` (jitter,
          dark counts, an X detector on the last channel),
          :func:`~timebin.sim.rx.stimulus.varied_settings`, random ``records.ready`` with a
          400-cycle stall, then :func:`~timebin.sim.rx.stimulus.with_histogram_sweep`

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
from timebin.sim.rx.stimulus import link_samples, varied_settings, with_histogram_sweep
from timebin.sim.rx.top import ReceiverModel

CLK_PERIOD_NS = 10
RESET_CYCLES = 4

#: Cycles the histogram read sweep waits before its first read (clicks still in flight).
SWEEP_SETTLE = 64

#: The host stops taking records for this many cycles from a third of the run.
STALL_CYCLES = 400


def receiver_stimulus(params, n, seed):
    """``(samples, ready, settings)`` of a run: ``n`` cycles of link traffic with every
    setting moving and the stream back-pressured, then a histogram read sweep."""
    rng = np.random.default_rng(seed)
    C, L, S = params["channels"], params["lanes"], params["uis_per_symbol"]
    samples, _ = link_samples(rng, n, L, S, C, click_probability=0.03, x_channels=(C - 1,),
                              jitter_uis=0.4, dark_per_ui=1e-3,
                              oversampling=params.get("oversampling", 1))
    settings = varied_settings(rng, params, n)
    padded, settings = with_histogram_sweep(params, samples, settle=SWEEP_SETTLE, **settings)
    ready = rng.random(len(padded)) < 0.7
    ready[n // 3:n // 3 + STALL_CYCLES] = False
    return padded, ready, settings


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
