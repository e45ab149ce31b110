"""Tests of ``count_saturating``: its ``top_flag`` form counts as the compare form does."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from timebin.gateware.common import count_saturating
from timebin.sim.amaranth_helpers import simulate


class _Counters(Elaboratable):
    def __init__(self, width, clear):
        self.condition = Signal()
        self.clear = Signal() if clear else None
        self.plain = Signal(width)
        self.flagged = Signal(width)

    def elaborate(self, platform):
        m = Module()
        count_saturating(m, self.plain, self.condition, clear=self.clear)
        count_saturating(m, self.flagged, self.condition, top_flag=True, clear=self.clear)
        return m


def _expected(conditions, clears, width):
    """The counts shown in each cycle: since the last clear, saturating."""
    out, count = [], 0
    for condition, clear in zip(conditions, clears, strict=True):
        out.append(count)
        count = 0 if clear else min(count + int(condition), (1 << width) - 1)
    return np.array(out)


@pytest.mark.parametrize("clear_rate", [0.0, 0.02])
@pytest.mark.parametrize("width, rate, seed", [(1, 0.5, 1), (3, 0.7, 2), (4, 0.3, 3),
                                               (5, 1.0, 4)])
def test_top_flag_counts_as_the_compare_does(width, rate, seed, clear_rate):
    """Both forms on the same conditions (and clears) agree in every cycle, up to and past
    the top, and neither wraps."""
    rng = np.random.default_rng(seed)
    cycles = int(3 * (1 << width) / rate) + 300
    conditions = rng.random(cycles) < rate
    clears = rng.random(cycles) < clear_rate
    clears[-(1 << width) * 2:] = False                   # a run to the top at the end
    conditions[-(1 << width) * 2:] = True
    dut = _Counters(width, clear=clear_rate > 0)
    got = []

    async def testbench(ctx):
        for condition, clear in zip(conditions, clears, strict=True):
            ctx.set(dut.condition, int(condition))
            if dut.clear is not None:
                ctx.set(dut.clear, int(clear))
            got.append((ctx.get(dut.plain), ctx.get(dut.flagged)))
            await ctx.tick()

    simulate(dut, testbench)
    plain, flagged = np.array(got).T
    expected = _expected(conditions, clears, width)
    if clear_rate:
        assert clears.any() and (expected[1:][clears[:-1]] == 0).all()
    np.testing.assert_array_equal(plain, expected)
    np.testing.assert_array_equal(flagged, expected)
    assert flagged[-1] == (1 << width) - 1          # the run reached the top and stayed
