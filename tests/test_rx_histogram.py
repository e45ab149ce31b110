"""Tests of the phase histogram: gateware against its model, read sweeps, and directed cases."""


import numpy as np
import pytest
from amaranth.back import verilog
from timebin.gateware.rx.histogram import MAX_COUNT_BITS, PhaseHistogram
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.rx.histogram import (
    PhaseHistogramModel,
    histogram_from_sweep,
    read_sweep_schedule,
)
from timebin.sim.rx.merge import pack_binned

OUTPUTS = ("read_data", "clearing", "counted", "dropped")


def run_rtl(dut, valid, index, phase, clear=None, read_channel=None, read_bin=None):
    """Simulate ``dut`` for ``len(valid)`` cycles from reset with the inputs of
    :meth:`PhaseHistogramModel.run`. Returns a dict of per-cycle arrays named as the fields of
    :class:`PhaseHistogramOutput` (without ``bins``), sampled in each cycle before its edge."""
    n, channels = np.shape(valid)
    slots = pack_binned(dut.uis_per_symbol, valid, index, phase, np.zeros((n, channels)))
    inputs = {name: [int(x) for x in np.broadcast_to(0 if value is None else value, n)]
              for name, value in (("clear", clear), ("read_channel", read_channel),
                                  ("read_bin", read_bin))}
    binned = dut.binned.as_value()
    counters = {name: getattr(dut, name).as_value() for name in ("counted", "dropped")}
    got = {name: [] for name in OUTPUTS}

    async def testbench(ctx):
        for cycle in range(n):
            ctx.set(binned, slots[cycle])
            for name, values in inputs.items():
                ctx.set(getattr(dut, name), values[cycle])
            got["read_data"].append(ctx.get(dut.read_data))
            got["clearing"].append(ctx.get(dut.clearing))
            for name, port in counters.items():
                got[name].append(ctx.get(port))
            await ctx.tick()

    simulate(dut, testbench)
    out = {"read_data": np.array(got["read_data"], np.uint64),
           "clearing": np.array(got["clearing"], bool)}
    for name in counters:
        out[name] = np.array([[(w >> (32 * k)) & 0xFFFF_FFFF for k in range(channels)]
                              for w in got[name]], np.uint32).reshape(n, channels)
    return out


def run_both(params, valid, index, phase, clear=None, read_channel=None, read_bin=None):
    """The gateware and the model on the same inputs; fail on the first difference."""
    rtl = run_rtl(PhaseHistogram(**params), valid, index, phase, clear, read_channel, read_bin)
    model = PhaseHistogramModel(**params).run(valid, index, phase, clear=clear,
                                              read_channel=read_channel, read_bin=read_bin)
    for name in OUTPUTS:
        want = getattr(model, name)
        have = rtl[name].astype(want.dtype)
        diff = np.flatnonzero((have != want).reshape(len(want), -1).any(axis=1))
        assert not diff.size, (f"{name} differs first in cycle {diff[0]}: gateware "
                               f"{have[diff[0]]}, model {want[diff[0]]}")
    return model


def with_read_sweep(params, valid, index, phase, clear=None, read_channel=None,
                    read_bin=None):
    """The run, then a read sweep of the whole histogram with no more clicks, on the gateware
    and the model. Returns ``(model of the run, histogram the gateware's sweep read)``."""
    model = PhaseHistogramModel(**params)
    n, channels = np.shape(valid)
    settle = model.clear_cycles
    sweep_channel, sweep_bin = read_sweep_schedule(channels, model.bins, settle=settle)
    m = len(sweep_channel)

    def extend(values, tail, dtype):
        values = np.broadcast_to(0 if values is None else values, (n, *np.shape(tail)[1:]))
        return np.concatenate([values, tail]).astype(dtype)

    idle = np.zeros((m, channels))
    both = run_both(params, extend(valid, idle, bool), extend(index, idle, np.uint64),
                    extend(phase, idle, np.int64), extend(clear, np.zeros(m), bool),
                    extend(read_channel, sweep_channel, np.int64),
                    extend(read_bin, sweep_bin, np.int64))
    swept = histogram_from_sweep(both.read_data[n:], channels, model.bins, settle=settle)
    np.testing.assert_array_equal(swept, both.bins)
    return model.run(valid, index, phase, clear=clear, read_channel=read_channel,
                     read_bin=read_bin), swept


def random_run(rng, n, channels, span, period, count_bits):
    """Random clicks with bursts on one bin on every channel every cycle, clears mid-run
    (one during a sweep, one just after), reads every cycle anywhere on the ports."""
    model = PhaseHistogramModel(channels=channels, uis_per_symbol=span,
                                period_symbols=period, count_bits=count_bits)
    valid = rng.random((n, channels)) < 0.5
    index = rng.integers(0, 1 << 63, (n, channels), dtype=np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, (n, channels), dtype=np.uint64)
    phase = rng.integers(0, span, (n, channels))
    wide = 1 << model.phase_bits
    if wide > span:                                   # phases the port allows, S..2**bits - 1
        odd = rng.random((n, channels)) < 0.02
        phase[odd] = rng.integers(span, wide, odd.sum())
    for start in rng.choice(n - 100, 8, replace=False):
        length = int(rng.integers(20, 100))
        burst = slice(start, start + length)
        valid[burst] = True
        if start % 2:                                 # every channel on the same bin
            index[burst] = rng.integers(0, 1 << 20, dtype=np.uint64)
            phase[burst] = rng.integers(0, span)
        else:                                         # two bins in turn
            index[burst] = np.arange(length)[:, None] % 2
            phase[burst] = 1
    clear = np.zeros(n, bool)
    clear[rng.choice(np.arange(200, n - 200), 3, replace=False)] = True
    first = np.flatnonzero(clear)[0]
    clear[first + model.bins // 2] = True             # restart during the sweep
    clear[first + 2 * model.bins + 1] = True          # once the restarted sweep ended
    read_channel = rng.integers(0, 1 << model.channel_bits, n)
    read_bin = rng.integers(0, 1 << model.bin_bits, n)
    return valid, index, phase, clear, read_channel, read_bin


# --- gateware against model ---

@pytest.mark.parametrize(("channels", "span", "period", "count_bits", "n"), [
    (4, 2, 1, 8, 5_000),        # bins saturate
    (2, 2, 2, 1, 1_500),        # one-bit bins: all ones after one click
    (3, 6, 4, 32, 4_000),       # S not a power of two: phases >= S; channel 3 reads 0
])
def test_rtl_matches_model(channels, span, period, count_bits, n):
    rng = np.random.default_rng(channels * 100 + span)
    params = {"channels": channels, "uis_per_symbol": span, "period_symbols": period,
              "count_bits": count_bits}
    stimulus = random_run(rng, n, channels, span, period, count_bits)
    model, swept = with_read_sweep(params, *stimulus)
    valid, phase = stimulus[0], stimulus[2]
    bad = (valid & (phase >= span)).sum(axis=0)
    assert (model.dropped[-1] > bad).all()            # drops to the sweeps too
    assert model.clearing.sum() > 4 * model.bins.shape[1]
    top = (1 << count_bits) - 1
    assert (swept == top).any() == (count_bits <= 8)
    assert (model.read_data != 0).mean() > 0.5


# --- directed ---

def clicks_on(n, channels, cycles, channel=0, index=0, phase=0):
    """Slot fields with a valid click on ``channel`` in each of ``cycles``."""
    valid = np.zeros((n, channels), bool)
    valid[cycles, channel] = True
    return (valid, np.full((n, channels), index, np.uint64),
            np.full((n, channels), phase, np.int64))


def test_same_bin_every_cycle():
    """Every channel clicks on one bin in every cycle: none is lost to the read-modify-write.
    The reset sweep takes cycles 0..B-1 and drops the slots of cycles 0..B-2."""
    params = {"channels": 4, "uis_per_symbol": 4, "period_symbols": 2}
    bins, n = 8, 300
    valid = np.ones((n, 4), bool)
    index = np.full((n, 4), 5, np.uint64)
    phase = np.full((n, 4), 3)
    model, swept = with_read_sweep(params, valid, index, phase)
    assert list(model.clearing[:bins + 1]) == [True] * bins + [False]
    kept = n - (bins - 1)
    assert (swept[:, 7] == kept).all()
    swept[:, 7] = 0
    assert not swept.any()
    assert (model.dropped[-1] == bins - 1).all()
    assert (model.counted[-1] == kept - 2).all()      # the last two slots are in flight


def test_saturation():
    """A 3-bit bin stops at 7; ``counted`` goes on; the reads show it climb and stop."""
    params = {"channels": 2, "uis_per_symbol": 2, "count_bits": 3}
    n = 40
    valid, index, phase = clicks_on(n, 2, np.arange(10, 30), channel=1, phase=1)
    valid[10:15, 0] = True
    read_channel = np.ones(n, np.int64)
    read_bin = np.ones(n, np.int64)
    model, swept = with_read_sweep(params, valid, index, phase, read_channel=read_channel,
                                   read_bin=read_bin)
    np.testing.assert_array_equal(swept, [[0, 5], [0, 7]])
    assert list(model.counted[-1]) == [5, 20]
    # The read given in cycle r (shown in r + 2) sees the slots of cycles up to r - 2.
    r = np.arange(n - 2)
    seen = np.clip(r - 2 - 10 + 1, 0, 7)
    np.testing.assert_array_equal(model.read_data[r + 2], seen)


def test_clear_drops_exactly():
    """A clear in cycle c zeroes every bin, drops the slots of cycles c..c+B-1, counts the
    clicks shown before c then zeroes them, and counts the clicks from c+B on."""
    params = {"channels": 2, "uis_per_symbol": 2, "period_symbols": 2}
    bins, n, c = 4, 60, 30
    valid = np.zeros((n, 2), bool)
    valid[bins:, 0] = True                             # after the reset sweep
    valid[bins:c, 1] = True                            # channel 1 only before the clear
    index = np.arange(n, dtype=np.uint64)[:, None].repeat(2, axis=1)
    phase = (np.arange(n) // 2 % 2)[:, None].repeat(2, axis=1)
    clear = np.zeros(n, bool)
    clear[c] = True
    model, swept = with_read_sweep(params, valid, index, phase, clear=clear)
    assert list(np.flatnonzero(model.clearing)) == [*range(bins), *range(c + 1, c + 1 + bins)]
    assert list(model.dropped[-1]) == [bins, 0]
    assert model.counted[c, 0] == model.counted[c, 1] == c - 1 - bins   # c - 2 shown
    assert list(model.counted[c + 1]) == [0, 0]
    kept = np.arange(c + bins, n)
    expected = np.bincount(kept % 2 * 2 + kept // 2 % 2, minlength=bins)
    np.testing.assert_array_equal(swept, [expected, np.zeros(bins)])
    assert model.counted[-1, 0] == len(kept) - 2      # the last two slots are in flight
    # A read given while the sweep is on sees the bins it has zeroed.
    read_bin = np.full(n, 3, np.int64)
    during = PhaseHistogramModel(**params).run(valid, index, phase, clear=clear,
                                               read_bin=read_bin)
    # Bin 3 is zeroed in cycle c + 4, seen from the read of c + 5 on; its next click is
    # shown in cycle c + 5, seen from the read of c + 7 on.
    r = c + 1 + np.arange(7)
    assert list(during.read_data[r + 2] != 0) == [True] * 4 + [False] * 2 + [True]


@pytest.mark.parametrize("after", [0, 1, 5])
def test_click_right_after_its_bin_is_swept(after):
    """The slot shown in the last cycle of a sweep, on the bin swept then, counts from zero:
    its read came before the sweep's write, so the count it read (the slots before the clear)
    is the cleared one. ``after``: slots on the bin that follow it."""
    params = {"channels": 1, "uis_per_symbol": 2}
    n, c = 40, 20
    valid, index, phase = clicks_on(n, 1, [*range(c), *range(c + 2, c + 3 + after)], phase=1)
    clear = np.zeros(n, bool)
    clear[c] = True
    model, swept = with_read_sweep(params, valid, index, phase, clear=clear)
    assert list(np.flatnonzero(model.clearing)) == [0, 1, c + 1, c + 2]
    np.testing.assert_array_equal(swept, [[0, 1 + after]])          # from the slot of c + 2


def test_clear_during_sweep_restarts_it():
    params = {"channels": 1, "uis_per_symbol": 4}
    n = 30
    valid, index, phase = clicks_on(n, 1, np.arange(n))
    clear = np.zeros(n, bool)
    clear[[8, 10]] = True
    model, swept = with_read_sweep(params, valid, index, phase, clear=clear)
    assert list(np.flatnonzero(model.clearing)) == [0, 1, 2, 3, 9, 10, *range(11, 15)]
    assert model.dropped[-1, 0] == 3 + 6
    assert swept[0, 0] == n - 14


def test_phase_beyond_span_is_dropped():
    """S = 6: phases 6 and 7 fit the 3-bit field but are no bin; they are counted dropped."""
    params = {"channels": 2, "uis_per_symbol": 6, "period_symbols": 2}
    n = 40
    valid = np.zeros((n, 2), bool)
    valid[20:26] = True
    phase = np.array([6, 7, 5, 6, 0, 7])[:, None].repeat(2, axis=1)
    phase = np.concatenate([np.zeros((20, 2), np.int64), phase, np.zeros((14, 2), np.int64)])
    index = np.ones((n, 2), np.uint64)
    index[:, 1] = 2
    model, swept = with_read_sweep(params, valid, index, phase)
    assert list(model.dropped[-1]) == [4, 4]
    assert list(model.counted[-1]) == [2, 2]
    assert swept[0, 6 + 5] == swept[0, 6] == 1 and swept[0].sum() == 2
    assert swept[1, 5] == swept[1, 0] == 1 and swept[1].sum() == 2


def test_reads_out_of_range_are_zero():
    params = {"channels": 3, "uis_per_symbol": 6}
    n = 30
    valid, index, phase = clicks_on(n, 3, np.arange(10, 20), channel=2, phase=5)
    read_channel = np.array([2, 3, 2, 2] * (n // 4 + 1))[:n]
    read_bin = np.array([5, 5, 6, 7] * (n // 4 + 1))[:n]
    model, _ = with_read_sweep(params, valid, index, phase, read_channel=read_channel,
                               read_bin=read_bin)
    r = np.arange(21, n - 2)                            # the reads after the last click
    in_bin = (read_channel[r] == 2) & (read_bin[r] == 5)
    np.testing.assert_array_equal(model.read_data[r + 2], np.where(in_bin, 10, 0))
    assert in_bin.any() and not in_bin.all()


def test_widest_bins():
    """64-bit bins, 256 UIs, one channel: the model's uint64 arithmetic matches."""
    params = {"channels": 1, "uis_per_symbol": 256, "count_bits": MAX_COUNT_BITS}
    valid, index, phase = clicks_on(300, 1, np.arange(256, 300), phase=255)
    _, swept = with_read_sweep(params, valid, index, phase)
    assert swept[0, 255] == 44 and swept.sum() == 44


def test_read_sweep_schedule():
    channel, bin_ = read_sweep_schedule(2, 3, settle=1, latency=2)
    assert list(channel) == [0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert list(bin_) == [0, 0, 1, 2, 0, 1, 2, 0, 0]
    data = np.arange(9)
    np.testing.assert_array_equal(histogram_from_sweep(data, 2, 3, settle=1, latency=2),
                                  [[3, 4, 5], [6, 7, 8]])
    with pytest.raises(ValueError, match="takes 9 cycles, not 8"):
        histogram_from_sweep(data[:8], 2, 3, settle=1, latency=2)


# --- construction and checks ---

@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"channels": 0}, ValueError, "0"),
    ({"channels": 17}, ValueError, "17"),
    ({"channels": 2.0}, TypeError, "2.0"),
    ({"uis_per_symbol": 0}, ValueError, "0"),
    ({"uis_per_symbol": 5}, ValueError, "5"),
    ({"uis_per_symbol": 258}, ValueError, "258"),
    ({"period_symbols": 0}, ValueError, "0"),
    ({"period_symbols": 3}, ValueError, "3"),
    ({"period_symbols": 512}, ValueError, "512"),
    ({"period_symbols": True}, TypeError, "True"),
    ({"count_bits": 0}, ValueError, "0"),
    ({"count_bits": 65}, ValueError, "65"),
    ({"count_bits": None}, TypeError, "None"),
])
def test_bad_construction(kwargs, error, bad, assert_refused):
    args = {"channels": 4, "uis_per_symbol": 4, **kwargs}
    assert_refused(error, f"not {bad}$", lambda: PhaseHistogram(**args))
    with pytest.raises(error, match=f"not {bad}$"):
        PhaseHistogramModel(**args)


def test_period_error_says_power_of_two():
    with pytest.raises(ValueError, match="power of two, not 6$"):
        PhaseHistogramModel(channels=1, uis_per_symbol=2, period_symbols=6)


def test_keyword_only(assert_refused):
    assert_refused(TypeError, "positional", lambda: PhaseHistogram(4, 4))


def test_model_checks_inputs():
    model = PhaseHistogramModel(channels=3, uis_per_symbol=6, period_symbols=4)
    ok = np.zeros((3, 3), np.int64)
    with pytest.raises(ValueError, match="phase must hold integers in 0..7"):
        model.run(ok, ok, ok + 8)
    with pytest.raises(ValueError, match="valid"):
        model.run(ok[:, :1], ok, ok)
    with pytest.raises(ValueError, match="read_bin must hold integers in 0..31"):
        model.run(ok, ok, ok, read_bin=32)
    with pytest.raises(ValueError, match="read_channel must hold integers in 0..3"):
        model.run(ok, ok, ok, read_channel=[0, 4, 0])
    with pytest.raises(ValueError, match="clear must be a scalar or 3 values"):
        model.run(ok, ok, ok, clear=[0, 1])


def test_converts_to_verilog():
    verilog.convert(PhaseHistogram(channels=3, uis_per_symbol=6, period_symbols=4,
                                   count_bits=3))
    verilog.convert(PhaseHistogram(channels=1, uis_per_symbol=2, count_bits=64))
