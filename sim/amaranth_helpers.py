"""Helpers for Amaranth simulation testbenches, shared by every block's tests.

Ref: Amaranth 0.5 simulator API (``Simulator``, ``add_testbench``, ``ctx.tick().sample()``).
"""

from amaranth.sim import Simulator

__all__ = ["SYS_PERIOD", "stream_put", "stream_get", "simulate"]

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
