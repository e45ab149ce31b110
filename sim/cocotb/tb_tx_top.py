"""cocotb testbench: the generated Verilog of :class:`~timebin.gateware.tx.top.Transmitter`
against :class:`~timebin.sim.tx.top.TransmitterModel`, cycle by cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``top``           keyword arguments the ``Transmitter`` was built with (JSON: lists for tuples)
``n``             cycles to run (after reset)
``seed``          seed of :func:`timebin.sim.tx.stimulus.tx_stimulus` (enable, log ready,
                  alarm clear, and with ``qrng`` the QRNG port)
``qrng``          drive the ``qrng`` port with random bits and stuck stretches (default False)
``settings``      port name -> value held from reset, as for ``TransmitterModel.run``: ints
                  (enums by value), lists for array ports (``im_levels``, ``pm_levels``,
                  ``thresholds``: element ``i`` at bits ``[i*w, (i+1)*w)``), ``key``/``iv`` as
                  hex strings (or ints). Ports not named keep their Amaranth ``init`` value,
                  which the testbench drives (Verilog inputs have none).
``expect_alarm``  require that the QRNG health alarm went high at least once, in the RTL and
                  in the model (default False)

Every cycle the per-cycle inputs are driven at the falling edge and the outputs are sampled
once they have settled (``ReadOnly``), as :func:`timebin.sim.tx.rtl.run_transmitter` does in
Amaranth's simulator (``alarm`` is combinational from the ``qrng`` port). The records are
decoded with :func:`~timebin.sim.tx.rtl.decode_records` and checked with
:func:`~timebin.sim.tx.rtl.compare_transmitter`.
"""

from types import SimpleNamespace

import cocotb
import numpy as np
from amaranth.hdl import Value
from cocotb.clock import Clock
from timebin.gateware.tx.top import Transmitter
from timebin.sim.cocotb.ports import reset, run_cycles, setting_ports
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.tx.rtl import STATUS_PORTS, compare_transmitter, decode_records
from timebin.sim.tx.stimulus import tx_stimulus
from timebin.sim.tx.top import TransmitterModel
from timebin.sim.words import bits_to_ints

CLK_PERIOD_NS = 10
RESET_CYCLES = 4

#: Inputs driven per cycle (not settings).
PER_CYCLE = ("enable", "alarm_clear", "reseed")



def top_params(p):
    """The ``Transmitter`` keyword arguments of the params, tuples restored."""
    top = dict(p["top"])
    if "intensity_probs" in top:
        top["intensity_probs"] = tuple(top["intensity_probs"])
    return top


def model_settings(settings):
    """Settings as :meth:`TransmitterModel.run` takes them (hex strings -> ints)."""
    return {name: (int(value, 16) if isinstance(value, str) else value)
            for name, value in settings.items()}


@cocotb.test()
async def transmitter_matches_model(dut):
    p = tb_params()
    params = top_params(p)
    n = int(p["n"])
    seed = int(p["seed"])
    qrng = bool(p.get("qrng", False))
    settings = dict(p.get("settings", {}))
    top = Transmitter(**params)
    width = top.entropy_source.width
    ports = setting_ports(top, settings, PER_CYCLE)
    stim = tx_stimulus(n, seed, width, qrng=qrng)
    for name in ports:
        assert len(getattr(dut, name)) == len(Value.cast(getattr(top, name))), \
            f"port {name}: DUT width {len(getattr(dut, name))} differs from the design"

    enable = [int(x) for x in stim["enable"]]
    log_ready = [int(x) for x in stim["log_ready"]]
    clear = [int(x) for x in stim["alarm_clear"]]
    if qrng:
        qrng_valid = [int(x) for x in stim["qrng_valid"]]
        qrng_ints = bits_to_ints(stim["qrng_bits"])
    else:
        qrng_valid = qrng_ints = [0] * n

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut, ports, zero=("enable", "alarm_clear", "reseed", "log__ready",
                                  "qrng__valid", "qrng__payload"), cycles=RESET_CYCLES)
    inputs = {"enable": enable, "log__ready": log_ready, "alarm_clear": clear,
              "qrng__valid": qrng_valid, "qrng__payload": qrng_ints}
    outputs = {"ser": "ser", "ser_valid": "ser_valid", "log_valid": "log__valid",
               "log": "log__payload", **{name: name for name in STATUS_PORTS}}
    rec, t_sim = await run_cycles(dut, n, inputs, outputs)

    got = decode_records(SimpleNamespace(lanes=top.lanes, uis_per_symbol=top.uis_per_symbol,
                                         dac_bits=top.dac_bits, pm_bits=top.pm_bits), rec)
    inputs = {k: stim[k] for k in ("enable", "log_ready", "alarm_clear")}
    if qrng:
        inputs.update(qrng_valid=stim["qrng_valid"], qrng_bits=stim["qrng_bits"])
    want = TransmitterModel(**params).run(n, model_settings(settings), **inputs)
    compare_transmitter(got, want)

    if p.get("expect_alarm", False):
        assert got["alarm"].any(), "the QRNG health alarm never went high in the RTL"
        assert want.alarm.any(), "the QRNG health alarm never went high in the model"
        rises = int(np.count_nonzero(np.diff(want.alarm.astype(np.int8)) == 1) + want.alarm[0])
        dut._log.info("alarm: %d raises, high %d of %d cycles, %d health-fail cycles",
                      rises, int(want.alarm.sum()), n, int(want.health_fail_cycles[-1]))
    dut._log.info("%d cycles match the model (%.0f cycles/s in cocotb); %d log words read, "
                  "%d dropped, %d underflows", n, n / t_sim,
                  int((want.log_valid & stim["log_ready"]).sum()), int(want.log_dropped[-1]),
                  int(want.underflow[-1]))
