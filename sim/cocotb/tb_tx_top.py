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

import time
from types import SimpleNamespace

import cocotb
import numpy as np
from amaranth.hdl import Const, Value
from amaranth.lib import data, wiring
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from timebin.gateware.tx.top import Transmitter
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.tx.rtl import STATUS_PORTS, compare_transmitter, decode_records
from timebin.sim.tx.stimulus import tx_stimulus
from timebin.sim.tx.top import TransmitterModel
from timebin.sim.words import bits_to_ints

CLK_PERIOD_NS = 10
RESET_CYCLES = 4

#: Inputs driven per cycle (not settings).
PER_CYCLE = ("enable", "alarm_clear", "reseed")

#: Settings given as hex strings of the port value.
HEX_SETTINGS = ("key", "iv")


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


def port_int(port, value):
    """The integer a flat Verilog port carries for the Amaranth port value ``value``."""
    if isinstance(port, data.View):
        return Const.cast(port.shape().const(value)).value
    if isinstance(value, str):
        value = int(value, 16)
    width = len(Value.cast(port))
    value = int(getattr(value, "value", value))
    if not 0 <= value < 1 << width:
        raise ValueError(f"setting {value} does not fit a port of {width} bits")
    return value


def setting_ports(top, settings):
    """``{verilog port name: int}`` of every settings input: the given ones, the rest at the
    port's ``init``."""
    out = {}
    for name, member in top.signature.members.items():
        if not member.is_port or member.flow != wiring.In or name in PER_CYCLE:
            continue
        out[name] = Value.cast(getattr(top, name)).init
    for name, value in settings.items():
        if name not in out:
            raise KeyError(f"{name!r} is not a settings port of the transmitter; "
                           f"those are {sorted(out)}")
        out[name] = port_int(getattr(top, name), value)
    return out


async def reset(dut, ports):
    """Hold reset for a few edges with every input at its cycle-0 value, then release it at a
    falling edge: the next rising edge ends the model's cycle 0."""
    dut.rst.value = 1
    for name, value in ports.items():
        getattr(dut, name).value = value
    for name in ("enable", "alarm_clear", "reseed", "log__ready", "qrng__valid",
                 "qrng__payload"):
        getattr(dut, name).value = 0
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


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
    ports = setting_ports(top, settings)
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
    await reset(dut, ports)

    d_enable, d_ready, d_clear = dut.enable, dut.log__ready, dut.alarm_clear
    d_qvalid, d_qpayload = dut.qrng__valid, dut.qrng__payload
    outputs = [("ser", dut.ser), ("ser_valid", dut.ser_valid), ("log_valid", dut.log__valid),
               ("log", dut.log__payload)] + [(name, getattr(dut, name)) for name in STATUS_PORTS]
    rec = {name: [] for name, _ in outputs}
    # 1-bit ports read as Logic (int()), wider ones as LogicArray (to_unsigned()).
    wide = [(rec[name], handle) for name, handle in outputs if len(handle) > 1]
    narrow = [(rec[name], handle) for name, handle in outputs if len(handle) == 1]
    falling, settled = FallingEdge(dut.clk), ReadOnly()
    t0 = time.monotonic()
    for c in range(n):
        d_enable.value = enable[c]
        d_ready.value = log_ready[c]
        d_clear.value = clear[c]
        d_qvalid.value = qrng_valid[c]
        d_qpayload.value = qrng_ints[c]
        await settled
        for values, handle in wide:
            values.append(handle.value.to_unsigned())
        for values, handle in narrow:
            values.append(int(handle.value))
        await falling
    t_sim = time.monotonic() - t0

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
