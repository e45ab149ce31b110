"""cocotb testbench: the generated Verilog of :class:`~timebin.gateware.regbank.RegisterBank`
against :class:`~timebin.sim.regbank.RegisterBankModel`, every output in every cycle from
reset, under random bus traffic (:func:`~timebin.sim.regbank.bus_traffic`).

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``device``  ``"bob"`` or ``"alice"``: the map builder,
            :func:`~timebin.gateware.regmap.bob_registers` or ``alice_registers``
``map``     keyword arguments of the builder (those the bank was built with)
``n``       cycles of bus traffic after reset
``seed``    seed of the traffic and of the status ports' values

Ports of the generated top: ``clk``, ``rst``, ``bus__addr``, ``bus__wdata``, ``bus__we``,
``bus__re`` (inputs), ``bus__rdata``, ``bus__rvalid``, ``bus__werr`` (outputs), and one port
per port of the map, named after it: writable ones are outputs, status ones inputs. Inputs
are driven at the falling edge (a port only when its value changes), outputs sampled once
settled (``ReadOnly``); during reset every input is 0, as in Amaranth's simulator.
"""

import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly
from timebin.gateware.regmap import alice_registers, bob_registers
from timebin.sim.cocotb.ports import reset
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.regbank import BUS_OUTPUTS, RegisterBankModel, bus_traffic

CLK_PERIOD_NS = 10
RESET_CYCLES = 4
BUILDERS = {"bob": bob_registers, "alice": alice_registers}


def _value(handle):
    return int(handle.value) if len(handle) == 1 else handle.value.to_unsigned()


@cocotb.test()
async def bank_matches_model(dut):
    p = tb_params()
    regs = BUILDERS[p["device"]](**p["map"])
    n, seed = int(p["n"]), int(p["seed"])
    bus, status = bus_traffic(regs, n, seed)
    model = RegisterBankModel(regs)
    inputs = {f"bus__{name}": values for name, values in bus.items()}
    inputs.update(status)
    outputs = [f"bus__{name}" for name in BUS_OUTPUTS] + list(model.writable_ports)
    for name in list(status) + list(model.writable_ports):
        width = regs.port_width(name)
        assert len(getattr(dut, name)) == width, \
            f"port {name}: DUT width {len(getattr(dut, name))} differs from the map's {width}"

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut, {}, zero=list(inputs), cycles=RESET_CYCLES)
    drives = [(getattr(dut, name), values, [0]) for name, values in inputs.items()]
    probes = [(getattr(dut, name), []) for name in outputs]
    settled, falling = ReadOnly(), FallingEdge(dut.clk)
    t0 = time.monotonic()
    for c in range(n):
        for handle, values, held in drives:
            if values[c] != held[0]:
                handle.value = values[c]
                held[0] = values[c]
        await settled
        for handle, got in probes:
            got.append(_value(handle))
        await falling
    t_sim = time.monotonic() - t0

    want = model.run(**bus, status=status)
    for (_, got), name in zip(probes, outputs, strict=True):
        key = name.removeprefix("bus__")
        for c in range(n):
            assert got[c] == want[key][c], \
                f"{name} in cycle {c}: bank {got[c]:#x}, model {want[key][c]:#x}"
    counts = model.counts
    assert set(counts["refused"]) == {"rw", "ro", "rc", "strobe", "unmapped"}
    assert counts["committed"] > 0 and counts["cleared"] > 0 and counts["strobes"] > 0
    dut._log.info("%d cycles match the model (%.0f cycles/s): %d refused writes, %d accepted, "
                  "%d two-word commits", n, n / t_sim, sum(want["werr"]),
                  sum(counts["accepted"].values()), counts["committed"])
