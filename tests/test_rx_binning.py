"""Tests of the binner: gateware against its model, and directed cases."""


import numpy as np
import pytest
from amaranth.back import verilog
from timebin.gateware.records import CLASS_DISCARD, CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE
from timebin.gateware.rx.binning import (
    MAX_DELAY,
    Binner,
    check_windows,
    x_windows,
    z_windows,
)
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.rx.binning import BinnerModel, pack_hits, unpack_binned

FIELDS = ("valid", "all_valid", "index", "phase", "cls", "window_discards", "settings_error")
MASK64 = (1 << 64) - 1


def run_rtl(dut, valid, symbol, ui, delay=None, windows=None):
    """Simulate ``dut`` for ``len(valid)`` cycles from reset with the inputs of
    :meth:`BinnerModel.run` (``delay`` C values or (N, C); ``windows`` C lists or an (N, C, S)
    array). Returns a dict
    of per-cycle arrays named as the fields of :class:`BinnerOutput`, sampled in each cycle
    before its edge."""
    n, channels = np.shape(valid)
    hits = pack_hits(dut.uis_per_symbol, valid, symbol, ui)
    if delay is None:
        delays = [None] * n
    else:
        delay = np.broadcast_to(np.asarray(delay), (n, channels))
        width = dut.delay_bits
        delays = [sum(int(d) << (width * k) for k, d in enumerate(row)) for row in delay]
    i_hits, i_delay = dut.hits.as_value(), dut.delay.as_value()
    ports = {name: getattr(dut, name).as_value()
             for name in ("binned", "all_binned", "window_discards")}
    got = {name: [] for name in (*ports, "settings_error")}

    per_cycle = isinstance(windows, np.ndarray)
    if per_cycle:
        luts = [[[int(x) for x in lut] for lut in row] for row in windows]

    async def testbench(ctx):
        if windows is not None and not per_cycle:
            ctx.set(dut.windows, windows)
        held = None
        for cycle in range(n):
            ctx.set(i_hits, hits[cycle])
            if per_cycle:
                ctx.set(dut.windows, luts[cycle])
            if delays[cycle] is not None and delays[cycle] != held:
                ctx.set(i_delay, delays[cycle])
                held = delays[cycle]
            for name, port in ports.items():
                got[name].append(ctx.get(port))
            got["settings_error"].append(ctx.get(dut.settings_error))
            await ctx.tick()

    simulate(dut, testbench)
    kept = unpack_binned(dut.uis_per_symbol, channels, got["binned"])
    every = unpack_binned(dut.uis_per_symbol, channels, got["all_binned"])
    for name in ("index", "phase", "cls"):
        np.testing.assert_array_equal(kept[name], every[name], err_msg=name)
    words = np.array([[(w >> (32 * k)) & 0xFFFF_FFFF for k in range(channels)]
                      for w in got["window_discards"]], np.uint32).reshape(n, channels)
    return {"valid": kept["valid"].astype(bool), "all_valid": every["valid"].astype(bool),
            "index": every["index"], "phase": every["phase"], "cls": every["cls"],
            "window_discards": words, "settings_error": np.array(got["settings_error"], bool)}


def run_both(params, valid, symbol, ui, delay=None, windows=None):
    """The gateware and the model on the same inputs; fail on the first difference."""
    rtl = run_rtl(Binner(**params), valid, symbol, ui, delay, windows)
    model = BinnerModel(**params).run(valid, symbol, ui, delay, windows)
    for name in FIELDS:
        want = getattr(model, name)
        have = rtl[name].astype(want.dtype)
        diff = np.flatnonzero((have != want).reshape(len(want), -1).any(axis=1))
        assert not diff.size, (f"{name} differs first in cycle {diff[0]}: gateware "
                               f"{have[diff[0]]}, model {want[diff[0]]}")
    return model


def random_hits(rng, n, channels, uis_per_symbol, rate=0.5):
    """Random hits on every channel; symbols over the whole 64 bits and near 0."""
    valid = rng.random((n, channels)) < rate
    symbol = rng.integers(0, 1 << 63, (n, channels), dtype=np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, (n, channels), dtype=np.uint64)
    small = rng.random((n, channels)) < 0.2
    symbol[small] = rng.integers(0, 8, small.sum(), dtype=np.uint64)       # index wrap
    ui = rng.integers(0, uis_per_symbol, (n, channels))
    return valid, symbol, ui


def random_windows(rng, channels, uis_per_symbol):
    return [[int(x) for x in rng.integers(0, 4, uis_per_symbol)] for _ in range(channels)]


# --- gateware against model ---

@pytest.mark.parametrize(("channels", "span", "max_delay", "n"), [
    (4, 2, (1 << 20) - 1, 10_000),      # S a power of two: the split is a slice
    (3, 6, 1000, 10_000),               # S = 6: the sequential divider (10 cycles a division)
])
def test_rtl_matches_model(channels, span, max_delay, n):
    """Random hits, LUTs and delays (longer than a symbol, 0, refused), changing mid-run."""
    seed = channels * 100 + span
    rng = np.random.default_rng(seed)
    params = {"channels": channels, "uis_per_symbol": span, "max_delay": max_delay}
    valid, symbol, ui = random_hits(rng, n, channels, span)
    windows = random_windows(rng, channels, span)
    windows[0][:2] = [CLASS_EARLY, CLASS_LATE]
    windows[1][:2] = [CLASS_MIDDLE, CLASS_DISCARD]
    delay = np.empty((n, channels), np.int64)
    top = (1 << BinnerModel(**params).delay_bits) - 1
    for i, start in enumerate(range(0, n, n // 8)):
        row = rng.integers(0, max_delay + 1, channels)
        row[0] = 7 * span + 1
        row[-1] = (0, max_delay, top)[i % 3]                # top is refused unless = max
        delay[start:start + n // 8] = row
    delay[n // 3:n // 3 + 3, 1] = 0                           # a short blip
    model = run_both(params, valid, symbol, ui, delay, windows)
    assert model.settings_error.any() == (top > max_delay)
    has_discard = [CLASS_DISCARD in lut for lut in windows]
    np.testing.assert_array_equal(model.window_discards[-1] > 0, has_discard)
    assert set(np.unique(model.cls[model.all_valid])) == {0, 1, 2, 3}


def test_rtl_matches_model_defaults():
    """Default LUTs and delays, all hits valid, from reset."""
    rng = np.random.default_rng(3)
    valid, symbol, ui = random_hits(rng, 300, 2, 4, rate=1.0)
    model = run_both({"channels": 2, "uis_per_symbol": 4}, valid, symbol, ui)
    assert not model.window_discards.any()
    np.testing.assert_array_equal(model.index[2:], symbol[:-2])
    np.testing.assert_array_equal(model.cls[2:], (ui[:-2] >= 2).astype(np.uint8))


def test_bad_ui_is_discarded():
    """A hit with ``ui >= S`` (never made by the front end) is discarded and counted."""
    n = 6
    valid = np.ones((n, 1), bool)
    symbol = np.full((n, 1), 10, np.uint64)
    ui = np.array([[6], [7], [0], [5], [6], [7]])
    model = run_both({"channels": 1, "uis_per_symbol": 6, "max_delay": 20}, valid, symbol, ui,
                     windows=[[CLASS_EARLY] * 6])
    assert list(model.cls[2:, 0]) == [CLASS_DISCARD, CLASS_DISCARD, CLASS_EARLY, CLASS_EARLY]
    assert list(model.window_discards[:, 0]) == [0, 0, 0, 1, 2, 2]


# --- directed ---

def one_hit(symbol, ui, n=4):
    """One valid hit on channel 0 in cycle 0."""
    valid = np.zeros((n, 1), bool)
    valid[0] = True
    return valid, np.full((n, 1), symbol, np.uint64), np.full((n, 1), ui)


@pytest.mark.parametrize("span", [4, 6])
@pytest.mark.parametrize(("symbol", "ui", "delay"), [
    (100, 3, 0),                 # delay 0: index and phase unchanged
    (100, 3, 7),                 # less than a symbol
    (100, 1, 3),                 # ui < dr: the phase wraps, the index drops one more
    (100, 3, "7S+1"),            # longer than a symbol
    (100, 0, "7S+1"),            # longer than a symbol, phase wrap
    (3, 0, "7S+1"),              # index wraps below 0, mod 2**64
    (0, 0, 1),
    (MASK64, 1, 2),              # the top index
])
def test_index_and_phase(span, symbol, ui, delay):
    if delay == "7S+1":
        delay = 7 * span + 1
    ui = min(ui, span - 1)
    params = {"channels": 1, "uis_per_symbol": span, "max_delay": 100}
    period = BinnerModel(**params).divider_period
    n = 2 * period + 4
    valid = np.zeros((n, 1), bool)
    valid[-3] = True                                   # after the divider has landed
    windows = [([CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE, CLASS_DISCARD] * span)[:span]]
    model = run_both(params, valid, np.full((n, 1), symbol, np.uint64), np.full((n, 1), ui),
                     [delay], windows)
    ui_frame = symbol * span + ui - delay
    assert model.all_valid[-1, 0]
    assert int(model.index[-1, 0]) == (ui_frame // span) & MASK64
    assert int(model.phase[-1, 0]) == ui_frame % span
    assert model.cls[-1, 0] == windows[0][ui_frame % span]


def test_all_four_classes_and_discard_count():
    """Each phase goes to its LUT class; discards leave ``binned`` and are counted."""
    span, n = 4, 10
    lut = [CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE, CLASS_DISCARD]
    valid = np.zeros((n, 2), bool)
    valid[:8, 0] = True
    valid[4:8, 1] = True                # after cycle 0, which uses delay 0
    ui = np.tile(np.arange(span), (n // span + 1))[:n, None].repeat(2, axis=1)
    symbol = np.full((n, 2), 5, np.uint64)
    model = run_both({"channels": 2, "uis_per_symbol": span}, valid, symbol, ui, [0, 1],
                     [lut, x_windows(span)])
    assert list(model.cls[2:6, 0]) == lut
    assert list(model.valid[2:10, 0]) == [True, True, True, False] * 2
    assert list(model.all_valid[2:10, 0]) == [True] * 8
    assert list(model.window_discards[:, 0]) == [0] * 6 + [1] * 4
    # Channel 1 (X LUT, delay 1): UIs 0..3 are phases 3, 0, 1, 2 -> middle, discard, d, m.
    assert list(model.cls[6:10, 1]) == [CLASS_MIDDLE, CLASS_DISCARD, CLASS_DISCARD,
                                        CLASS_MIDDLE]
    assert list(model.index[6:10, 1]) == [4, 5, 5, 5]
    assert model.window_discards[-1, 1] == 2


def test_divider_schedule():
    """With S not a power of two a new delay takes effect at the next division's landing."""
    params = {"channels": 1, "uis_per_symbol": 6, "max_delay": 100}
    period = BinnerModel(**params).divider_period
    assert period == 7
    n = 5 * period
    valid = np.ones((n, 1), bool)
    symbol = np.full((n, 1), 50, np.uint64)
    ui = np.zeros((n, 1), np.int64)
    delay = np.zeros((n, 1), np.int64)
    delay[period + 2:] = 13                         # accepted in cycle D + 2
    model = run_both(params, valid, symbol, ui, delay)
    index = model.index[2:, 0].astype(np.int64)     # hit of cycle c in row c
    # The division starting in cycle 2D latches 13 and lands in cycle 3D.
    assert (index[:3 * period] == 50).all()
    assert (index[3 * period:] == 50 - 2 - 1).all()   # 13 = 2 * 6 + 1, ui 0 < 1 borrows


def test_power_of_two_delay_acts_from_the_next_cycle():
    params = {"channels": 1, "uis_per_symbol": 4, "max_delay": 100}
    assert BinnerModel(**params).divider_period == 0
    n = 8
    delay = np.zeros((n, 1), np.int64)
    delay[4:] = 9
    model = run_both(params, np.ones((n, 1), bool), np.full((n, 1), 20, np.uint64),
                     np.full((n, 1), 2), delay)
    # The delay presented in cycle 4 bins the hits of cycle 5 on (rows 7 on).
    assert list(model.index[2:, 0]) == [20, 20, 20, 20, 20, 18]
    assert list(model.phase[2:, 0]) == [2, 2, 2, 2, 2, 1]


def test_refused_delay_keeps_last_accepted():
    params = {"channels": 2, "uis_per_symbol": 4, "max_delay": 40}
    n = 10
    delay = np.zeros((n, 2), np.int64)
    delay[:, 1] = 8
    delay[2:5, 0] = 4
    delay[5:8, 0] = 41                              # refused: stays 4
    delay[8:, 0] = 63
    model = run_both(params, np.ones((n, 2), bool), np.full((n, 2), 100, np.uint64),
                     np.zeros((n, 2), np.int64), delay)
    assert list(model.settings_error) == [False] * 6 + [True] * 4     # a cycle late
    assert list(model.index[2:, 0]) == [100, 100, 100, 99, 99, 99, 99, 99]
    assert model.index[2, 1] == 100 and (model.index[3:, 1] == 98).all()   # 0 in cycle 0


def test_windows_change_takes_effect_in_stage_two():
    """The LUT of cycle c + 1 classifies the hit of cycle c."""
    n = 6
    windows = np.zeros((n, 1, 2), np.int64)
    windows[3:] = CLASS_MIDDLE
    model = run_both({"channels": 1, "uis_per_symbol": 2}, np.ones((n, 1), bool),
                     np.zeros((n, 1), np.uint64), np.zeros((n, 1), np.int64), windows=windows)
    assert list(model.cls[2:, 0]) == [CLASS_EARLY, CLASS_EARLY, CLASS_MIDDLE, CLASS_MIDDLE]


# --- construction and checks ---

@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"channels": 0}, ValueError, "0"),
    ({"channels": 17}, ValueError, "17"),
    ({"channels": 2.0}, TypeError, "2.0"),
    ({"uis_per_symbol": 0}, ValueError, "0"),
    ({"uis_per_symbol": 5}, ValueError, "5"),
    ({"uis_per_symbol": 258}, ValueError, "258"),
    ({"uis_per_symbol": "4"}, TypeError, "'4'"),
    ({"max_delay": -1}, ValueError, "-1"),
    ({"max_delay": MAX_DELAY + 1}, ValueError, str(MAX_DELAY + 1)),
    ({"max_delay": None}, TypeError, "None"),
])
def test_bad_construction(kwargs, error, bad, assert_refused):
    args = {"channels": 4, "uis_per_symbol": 4, **kwargs}
    assert_refused(error, f"not {bad}$", lambda: Binner(**args))
    with pytest.raises(error, match=f"not {bad}$"):
        BinnerModel(**args)


def test_keyword_only(assert_refused):
    assert_refused(TypeError, "positional", lambda: Binner(4, 4))


def test_window_lut_checks():
    assert z_windows(4) == [0, 0, 1, 1]
    assert x_windows(6) == [3, 3, 3, 2, 2, 2]
    with pytest.raises(ValueError, match="channel 1 must have 4 entries .*, not 3$"):
        check_windows([[0] * 4, [0] * 3], 2, 4)
    with pytest.raises(ValueError, match="one table per channel \\(2\\), not 3$"):
        check_windows([[0] * 4] * 3, 2, 4)
    with pytest.raises(ValueError, match="not 4$"):
        check_windows([[0, 1, 2, 4]], 1, 4)
    model = BinnerModel(channels=2, uis_per_symbol=4)
    ok = np.zeros((3, 2), np.int64)
    with pytest.raises(ValueError, match="not 5$"):
        model.run(ok, ok, ok, windows=[[0] * 4, [0] * 5])
    with pytest.raises(ValueError, match="shape"):
        model.run(ok, ok, ok, windows=np.zeros((3, 2, 5), np.int64))


def test_model_checks_inputs():
    model = BinnerModel(channels=2, uis_per_symbol=6, max_delay=20)
    ok = np.zeros((3, 2), np.int64)
    with pytest.raises(ValueError, match="ui must hold integers in 0..7"):
        model.run(ok, ok, ok + 8)
    with pytest.raises(ValueError, match="valid"):
        model.run(ok[:, :1], ok, ok)
    with pytest.raises(ValueError, match="5-bit port .*, not 32"):
        model.run(ok, ok, ok, delay=[0, 32])
    with pytest.raises(ValueError, match="delay must have 2 values"):
        model.run(ok, ok, ok, delay=[0, 1, 2])


def test_converts_to_verilog():
    verilog.convert(Binner(channels=2, uis_per_symbol=6, max_delay=300))
    verilog.convert(Binner(channels=1, uis_per_symbol=2, max_delay=0))
