"""Port plumbing shared by the cocotb testbenches of generated Verilog tops.

Verilog inputs have no initial value, so a testbench drives every settings port with the
Amaranth ``init`` of the port (or the test's value) from reset; per-cycle inputs are driven
at the falling edge and outputs sampled once settled (``ReadOnly``), which is what the
Amaranth-simulation drivers in ``sim/*/rtl.py`` do with ``ctx.set``/``ctx.get``.
"""

import time

from amaranth.hdl import Const, Value
from amaranth.lib import data, wiring
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

__all__ = ["port_int", "setting_ports", "reset", "run_cycles"]


def port_int(port, value):
    """The integer a flat Verilog port carries for the Amaranth port value ``value`` (ints,
    enums, hex strings, or nested lists/dicts for ``data`` layouts)."""
    if isinstance(port, data.View):
        return Const.cast(port.shape().const(value)).value
    if isinstance(value, str):
        value = int(value, 16)
    width = len(Value.cast(port))
    value = int(getattr(value, "value", value))
    if not 0 <= value < 1 << width:
        raise ValueError(f"setting {value} does not fit a port of {width} bits")
    return value


def setting_ports(top, settings, per_cycle=()):
    """``{verilog port name: int}`` of every plain input of ``top`` except ``per_cycle``:
    the given ``settings``, the rest at the port's ``init``."""
    out = {}
    for name, member in top.signature.members.items():
        if not member.is_port or member.flow != wiring.In or name in per_cycle:
            continue
        out[name] = Value.cast(getattr(top, name)).init
    for name, value in settings.items():
        if name not in out:
            raise KeyError(f"{name!r} is not a settings port of {type(top).__name__}; "
                           f"those are {sorted(out)}")
        out[name] = port_int(getattr(top, name), value)
    return out


async def reset(dut, ports, zero=(), cycles=4):
    """Hold reset for ``cycles`` edges with the settings ``ports`` driven and the inputs in
    ``zero`` at 0, then release it at a falling edge: the next rising edge ends cycle 0."""
    dut.rst.value = 1
    for name, value in ports.items():
        getattr(dut, name).value = value
    for name in zero:
        getattr(dut, name).value = 0
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def run_cycles(dut, n, inputs, outputs):
    """Drive ``inputs`` (``{port: list of n ints}``) cycle by cycle and sample ``outputs``
    (``{key: port name}``) after each cycle's inputs settle. Returns ``({key: list of
    ints}, seconds)``."""
    drives = [(getattr(dut, name), values) for name, values in inputs.items()]
    rec = {key: [] for key in outputs}
    handles = [(rec[key], getattr(dut, name)) for key, name in outputs.items()]
    # 1-bit ports read as Logic (int()), wider ones as LogicArray (to_unsigned()).
    wide = [(values, h) for values, h in handles if len(h) > 1]
    narrow = [(values, h) for values, h in handles if len(h) == 1]
    falling, settled = FallingEdge(dut.clk), ReadOnly()
    start = time.monotonic()
    for c in range(n):
        for handle, values in drives:
            handle.value = values[c]
        await settled
        for values, handle in wide:
            values.append(handle.value.to_unsigned())
        for values, handle in narrow:
            values.append(int(handle.value))
        await falling
    return rec, time.monotonic() - start
