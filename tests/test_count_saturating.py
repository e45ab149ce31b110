"""Tests of ``count_saturating``: its ``top_flag`` form counts as the compare form does."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from timebin.gateware.common import count_saturating
from timebin.sim.amaranth_helpers import simulate


class _Counters(Elaboratable):
    def __init__(self, width):
        self.condition = Signal()
        self.plain = Signal(width)
        self.flagged = Signal(width)

    def elaborate(self, platform):
        m = Module()
        count_saturating(m, self.plain, self.condition)
        count_saturating(m, self.flagged, self.condition, top_flag=True)
        return m


@pytest.mark.parametrize("width, rate, seed", [(1, 0.5, 1), (3, 0.7, 2), (4, 0.3, 3),
                                               (5, 1.0, 4)])
def test_top_flag_counts_as_the_compare_does(width, rate, seed):
    """Both forms on the same conditions agree in every cycle, up to and past the top, and
    neither wraps."""
    rng = np.random.default_rng(seed)
    cycles = int(3 * (1 << width) / rate) + 8
    conditions = rng.random(cycles) < rate
    dut = _Counters(width)
    got = []

    async def testbench(ctx):
        for condition in conditions:
            ctx.set(dut.condition, int(condition))
            got.append((ctx.get(dut.plain), ctx.get(dut.flagged)))
            await ctx.tick()

    simulate(dut, testbench)
    plain, flagged = np.array(got).T
    expected = np.minimum(np.concatenate(([0], np.cumsum(conditions)[:-1])),
                          (1 << width) - 1)
    np.testing.assert_array_equal(plain, expected)
    np.testing.assert_array_equal(flagged, expected)
    assert flagged[-1] == (1 << width) - 1          # the run reached the top and stayed
