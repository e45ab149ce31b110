"""FlagFIFO against Amaranth's SyncFIFO: the same outputs in every cycle of random traffic."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import fifo
from timebin.gateware.fifo import FlagFIFO
from timebin.sim.amaranth_helpers import simulate


class _Pair(Elaboratable):
    def __init__(self, width, depth, ram=False, wide=False):
        self.ours = FlagFIFO(width=width, depth=depth, ram=ram, wide=wide)
        self.ref = fifo.SyncFIFO(width=width, depth=depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ours = self.ours
        m.submodules.ref = self.ref
        return m


@pytest.mark.parametrize(("width", "depth", "p_write", "p_read"),
                         [(8, 4, 0.7, 0.3), (8, 4, 0.3, 0.7), (13, 5, 0.5, 0.5), (3, 1, 0.6, 0.5),
                          (5, 2, 0.5, 0.5), (16, 16, 0.9, 0.85)])
@pytest.mark.parametrize("ram", [False, True])
@pytest.mark.parametrize("wide", [False, True])
def test_same_as_syncfifo(width, depth, p_write, p_read, ram, wide):
    rng = np.random.default_rng(width * 100 + depth)
    n = 600
    w_en = rng.random(n) < p_write
    r_en = rng.random(n) < p_read
    data = rng.integers(0, 1 << width, n)
    dut = _Pair(width, depth, ram, wide)
    mismatches, seen = [], {"full": 0, "empty": 0}

    async def tb(ctx):
        for c in range(n):
            for f in (dut.ours, dut.ref):
                ctx.set(f.w_en, int(w_en[c]))
                ctx.set(f.r_en, int(r_en[c]))
                ctx.set(f.w_data, int(data[c]))
            names = ("w_rdy", "r_rdy", "level") + (("r_data",) if ctx.get(dut.ref.r_rdy) else ())
            for name in names:
                a, b = ctx.get(getattr(dut.ours, name)), ctx.get(getattr(dut.ref, name))
                if a != b:
                    mismatches.append((c, name, a, b))
            seen["full"] += not ctx.get(dut.ref.w_rdy)
            seen["empty"] += not ctx.get(dut.ref.r_rdy)
            await ctx.tick()

    simulate(dut, tb)
    assert not mismatches, mismatches[:5]
    assert seen["full"] and seen["empty"]       # the traffic reached both ends


def test_ram_storage_same_data_every_cycle():
    """``ram=True`` shows the same ``r_data`` as the combinational read in every cycle, also
    while the FIFO is empty (the stale word)."""
    rng = np.random.default_rng(7)
    n = 500
    pair = _Pair(9, 3, ram=True)
    pair.ref._MustUse__silence = True                # replaced by the combinational FlagFIFO
    comb = pair.ref = FlagFIFO(width=9, depth=3)
    w_en, r_en = rng.random(n) < 0.5, rng.random(n) < 0.5
    data = rng.integers(0, 1 << 9, n)
    mismatches = []

    async def tb(ctx):
        for c in range(n):
            for f in (pair.ours, comb):
                ctx.set(f.w_en, int(w_en[c]))
                ctx.set(f.r_en, int(r_en[c]))
                ctx.set(f.w_data, int(data[c]))
            if ctx.get(pair.ours.r_data) != ctx.get(comb.r_data):
                mismatches.append(c)
            await ctx.tick()

    simulate(pair, tb)
    assert not mismatches, mismatches[:5]


def test_bad_parameters():
    with pytest.raises(ValueError, match="FIFO depth must be at least 1, not 0"):
        FlagFIFO(width=8, depth=0)
    with pytest.raises(TypeError, match="2.5"):
        FlagFIFO(width=2.5, depth=4)
    with pytest.raises(TypeError, match="FIFO ram must be a bool, not 1"):
        FlagFIFO(width=8, depth=4, ram=1)
    with pytest.raises(TypeError, match="FIFO wide must be a bool, not 'yes'"):
        FlagFIFO(width=8, depth=4, wide="yes")
