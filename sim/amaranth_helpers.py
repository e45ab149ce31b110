"""Helpers for Amaranth simulation testbenches, shared by every block's tests.

Ref: Amaranth 0.5 simulator API (``Simulator``, ``add_testbench``, ``ctx.tick().sample()``).
"""

from amaranth.hdl import ClockDomain, Module, Value
from amaranth.sim import Simulator

__all__ = ["SYS_PERIOD", "stream_put", "stream_get", "simulate", "run_per_cycle", "port_signal",
           "run_bench"]

#: The fabric clock period of the reference design, 156.25 MHz (DESIGN.md section 3).
SYS_PERIOD = 1 / 156.25e6


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` on ``stream`` and wait until the sink takes it."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Wait for the source on ``stream`` and take one payload from it."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def simulate(dut, *testbenches, processes=(), period=SYS_PERIOD, vcd=None):
    """Run ``testbenches`` (async functions of ``ctx``) against ``dut`` on one clock.

    Returns when every testbench has returned. ``vcd`` names a waveform file to write.
    """
    sim = Simulator(dut)
    sim.add_clock(period)
    for tb in testbenches:
        sim.add_testbench(tb)
    for proc in processes:
        sim.add_process(proc)
    if vcd is not None:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def run_per_cycle(dut, inputs, outputs, n, *, reset_at=None):
    """Simulate ``dut`` (a component in the ``sync`` domain) for ``n`` cycles from reset: in
    each cycle set ``inputs`` (``(port, n ints)`` pairs; a port only when its value changes), read
    ``outputs`` (``{name: port}``) and tick. ``reset_at``: cycles with the domain's reset
    high. Returns ``{name: n ints}``: each output in each cycle before its edge."""
    drives = [(Value.cast(port), values) for port, values in inputs]
    watched = {name: Value.cast(port) for name, port in outputs.items()}
    resets = set() if reset_at is None else {int(c) for c in _as_list(reset_at)}
    got = {name: [] for name in watched}
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = domain = ClockDomain("sync")

    async def testbench(ctx):
        held = [None] * len(drives)
        for cycle in range(n):
            for i, (port, values) in enumerate(drives):
                if values[cycle] != held[i]:
                    ctx.set(port, values[cycle])
                    held[i] = values[cycle]
            if resets:
                ctx.set(domain.rst, cycle in resets)
            for name, port in watched.items():
                got[name].append(ctx.get(port))
            await ctx.tick()

    simulate(top, testbench)
    return got


def _as_list(value):
    """``value`` as a list: an int or an iterable of ints."""
    return list(value) if hasattr(value, "__iter__") else [value]


def port_signal(component, name):
    """The signal of ``component`` for a model port name: ``start_0__valid`` is
    ``component.start_0.valid``."""
    target = component
    for part in name.split("__"):
        target = getattr(target, part)
    return Value.cast(target)


def run_bench(dut, bench, model, max_cycles, *, preset=None, tail_cycles=40):
    """Drive ``dut`` from ``bench`` (``drive``/``advance``) until ``bench.done`` and
    ``tail_cycles`` more, at most ``max_cycles``; ``preset`` gives registers (by port
    name) a value before the first cycle. Returns ``(inputs, outputs)``, per cycle, named as
    the ``model``'s ports."""
    ins = {name: port_signal(dut, name) for name in model.INPUTS}
    outs = {name: port_signal(dut, name) for name in model.OUTPUTS}
    rec_in = {name: [] for name in ins}
    rec_out = {name: [] for name in outs}

    async def testbench(ctx):
        for name, value in (preset or {}).items():
            ctx.set(port_signal(dut, name), value)
        held, tail = {}, tail_cycles
        for _ in range(max_cycles):
            for name, value in bench.drive().items():
                if held.get(name) != value:
                    ctx.set(ins[name], value)
                    held[name] = value
                rec_in[name].append(value)
            outputs = {name: ctx.get(port) for name, port in outs.items()}
            for name, value in outputs.items():
                rec_out[name].append(value)
            bench.advance(outputs)
            await ctx.tick()
            tail -= bench.done
            if tail == 0:
                return
        raise AssertionError(f"bench not done after {max_cycles} cycles")

    simulate(dut, testbench)
    return rec_in, rec_out
