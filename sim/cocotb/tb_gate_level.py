"""cocotb testbench: the loopback board (:func:`timebin.sim.gate_level.loopback_top`) as RTL
Verilog or as its synthesised ECP5 netlist, driven through its ports as a host and a board
would drive it, every output recorded in every cycle.

Run through :func:`timebin.sim.gate_level.run_verilog` by ``tests/test_gate_level.py``, once
on the RTL and once on the netlist with the same parameters; the test compares the traces.
Parameters (``tb_params()``):

``cycles``       cycles to run after reset
``seed``         seed of the inputs other than ``link_rx``
                 (:func:`~timebin.sim.gate_level.input_patterns`)
``quiet``        cycles from reset in which ``link_tx`` is always ready
``extra_click``  probability of an extra detector click per UI on ``samples``
``requests``     ``[[cycle, frame hex], ...]`` for ``link_rx``
                 (:func:`~timebin.sim.gate_level.loopback_requests`)
``trace``        path of the ``.npz`` file the trace is written to: one array per output of
                 :data:`~timebin.sim.gate_level.OUTPUTS` and per input, cycle 0 first

Inputs are driven at the falling edge, outputs sampled once settled (``ReadOnly``); during
reset every input is 0. ``link_rx`` offers the next request byte from its frame's cycle on
and moves on when the board takes it.
"""

import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly
from timebin.sim.cocotb.ports import reset
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.gate_level import OUTPUTS, RequestFeeder, input_patterns

CLK_PERIOD_NS = 10
RESET_CYCLES = 4
_INPUTS = ("link_rx__valid", "link_rx__payload", "link_tx__ready", "qrng__valid",
           "qrng__payload", "samples", "phy_errors")


def _reader(handle):
    if len(handle) == 1:
        return lambda: int(handle.value)
    return lambda: handle.value.to_unsigned()


@cocotb.test()
async def loopback_trace(dut):
    p = tb_params()
    n = int(p["cycles"])
    feeder = RequestFeeder([(cycle, bytes.fromhex(frame)) for cycle, frame in p["requests"]])
    inputs = input_patterns(n, int(p["seed"]), qrng_bits=len(dut.qrng__payload),
                            sample_bits=len(dut.samples), quiet=int(p["quiet"]),
                            extra_click=float(p["extra_click"]))
    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut, {}, zero=_INPUTS, cycles=RESET_CYCLES)

    handles = {name: getattr(dut, name) for name in _INPUTS}
    readers = [(name, _reader(getattr(dut, name))) for name in OUTPUTS]
    rec = {name: [] for name in (*OUTPUTS, *_INPUTS)}
    held = dict.fromkeys(_INPUTS, 0)
    settled, falling = ReadOnly(), FallingEdge(dut.clk)
    t0 = time.monotonic()
    for c in range(n):
        valid, payload = feeder.drive(c)
        drive = {name: inputs[name][c] for name in inputs}
        drive["link_rx__valid"], drive["link_rx__payload"] = valid, payload
        for name, value in drive.items():
            if held[name] != value:
                handles[name].value = value
                held[name] = value
            rec[name].append(value)
        await settled
        for name, read in readers:
            rec[name].append(read())
        feeder.advance(valid, rec["link_rx__ready"][-1])
        await falling
    t_sim = time.monotonic() - t0

    np.savez(p["trace"], **{name: np.array(values, dtype=np.uint64)
                            for name, values in rec.items()})
    assert feeder.done, f"the board took only {feeder.frame} of {len(feeder.frames)} requests"
    dut._log.info("%d cycles (%.0f cycles/s), trace in %s", n, n / t_sim, p["trace"])
