"""Tests of the time-bin driver: gateware against its reference model, and directed cases."""


import numpy as np
import pytest
from amaranth.hdl import Value
from timebin.gateware.tx.driver import (
    MAX_DELAY_WORDS,
    TimeBinDriver,
    UIDelay,
    default_im_levels,
    im_level_index,
)
from timebin.gateware.tx.layouts import SerializerWord
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.tx.driver import TimeBinDriverModel
from timebin.sim.words import bits_to_ints, ints_to_bits, pack_symbol_words, unpack_field

Z0, Z1, XP, XM = range(4)


def run_rtl(dut, valid, payloads, schedule):
    """Simulate ``dut`` for ``len(valid)`` cycles from reset.

    ``schedule`` is a list of ``(cycle, settings)``: the settings are set on the ports from
    that cycle on. Returns (carver, im, pm, o_valid, settings_error) as numpy arrays, one row
    per cycle, sampled in the cycle (before its clock edge).
    """
    n = len(valid)
    i_valid = dut.i_symbols.valid
    i_payload = Value.cast(dut.i_symbols.payload)
    o_payload = Value.cast(dut.o_ser.payload)
    changes = dict(schedule)
    outs, o_valid, errors = [], [], []

    async def testbench(ctx):
        for cycle in range(n):
            for name, value in changes.get(cycle, {}).items():
                ctx.set(getattr(dut, name), value)
            ctx.set(i_valid, int(valid[cycle]))
            ctx.set(i_payload, payloads[cycle])
            outs.append(ctx.get(o_payload))
            o_valid.append(ctx.get(dut.o_ser.valid))
            errors.append(ctx.get(dut.settings_error))
            await ctx.tick()

    simulate(dut, testbench)
    layout = SerializerWord(dut.lanes, dut.uis_per_symbol, dut.dac_bits, dut.pm_bits)
    uis = dut.lanes * dut.uis_per_symbol
    bits = ints_to_bits(outs, layout.size)
    carver = unpack_field(bits, layout["carver"].offset, uis, 1)
    im = unpack_field(bits, layout["im"].offset, uis, dut.dac_bits)
    pm = unpack_field(bits, layout["pm"].offset, uis, dut.pm_bits)
    return carver, im, pm, np.array(o_valid, bool), np.array(errors, bool)


def random_symbols(rng, n, lanes):
    """Random symbol fields with runs of invalid cycles and dark symbols."""
    valid = rng.random(n) < 0.85
    runs = (rng.integers(0, n, max(1, n // 50))[:, None] + np.arange(5)).ravel()
    valid[runs[runs < n]] = False
    fields = {
        "basis": rng.integers(0, 2, (n, lanes)),
        "bit": rng.integers(0, 2, (n, lanes)),
        "intensity": rng.integers(0, 4, (n, lanes)),
        "valid": rng.integers(0, 2, (n, lanes)),          # usable-for-key: ignored by the driver
        "dark": (rng.random((n, lanes)) < 0.1).astype(np.int64),
    }
    return valid, fields


def random_settings(rng, dut):
    k, uis = dut.uis_per_bin, dut.lanes * dut.uis_per_symbol
    offset = int(rng.integers(0, k))
    width = int(rng.integers(1, k - offset + 1))
    long_delay = int(rng.integers(uis + 1, dut.max_delay + 1))      # more than one word
    return {
        "pulse_offset": offset,
        "pulse_width": width,
        "im_levels": [int(x) for x in rng.integers(0, 1 << dut.dac_bits, 32)],
        "im_idle": int(rng.integers(1, 1 << dut.dac_bits)),
        "pm_levels": [int(x) for x in rng.integers(0, 1 << dut.pm_bits, 8)],
        "delay_carver": long_delay,
        "delay_im": int(rng.integers(0, dut.max_delay + 1)),
        "delay_pm": int(rng.integers(0, uis)),
    }


def model_of(dut):
    return TimeBinDriverModel(dut.lanes, dut.uis_per_symbol, dut.dac_bits, dut.pm_bits,
                              dut.max_delay)


def run_model(dut, valid, fields, settings):
    return model_of(dut).run(valid, fields["basis"], fields["bit"], fields["intensity"],
                             fields["dark"], settings)


# --- gateware against model ---

# (lanes, S, dac_bits, pm_bits, max_delay as (words, extra UIs), cycles)
RANDOM_CASES = [
    (4, 4, 8, 1, (3, 5), 10_000),
    (16, 2, 10, 2, (2, 7), 10_000),
    (16, 4, 16, 8, (1, 9), 10_000),
    (2, 6, 5, 3, (4, 1), 10_000),
]


@pytest.mark.parametrize(("lanes", "span", "dac_bits", "pm_bits", "delay_words", "cycles"),
                         RANDOM_CASES)
def test_rtl_matches_model(lanes, span, dac_bits, pm_bits, delay_words, cycles):
    seed = 0x7B1 + lanes * 100 + span
    rng = np.random.default_rng(seed)
    max_delay = delay_words[0] * lanes * span + delay_words[1]
    dut = TimeBinDriver(lanes=lanes, uis_per_symbol=span, dac_bits=dac_bits, pm_bits=pm_bits,
                        max_delay=max_delay)
    settings = random_settings(rng, dut)
    valid, fields = random_symbols(rng, cycles, lanes)
    index = np.arange(cycles, dtype=np.uint64) * np.uint64(lanes)
    carver, im, pm, o_valid, error = run_rtl(
        dut, valid, pack_symbol_words(lanes, fields, index), [(0, settings)])
    expected = run_model(dut, valid, fields, settings)
    assert expected.carver.shape == (cycles, lanes * span)
    assert expected.carver.dtype == np.uint8
    np.testing.assert_array_equal(carver, expected.carver, err_msg=f"carver, seed {seed}")
    np.testing.assert_array_equal(im, expected.im, err_msg=f"im, seed {seed}")
    np.testing.assert_array_equal(pm, expected.pm, err_msg=f"pm, seed {seed}")
    np.testing.assert_array_equal(o_valid, expected.valid)
    np.testing.assert_array_equal(error, expected.settings_error)
    assert not error.any()
    assert carver.any() and (im == settings["im_idle"]).any()


def test_rtl_matches_model_defaults():
    """Default settings and default ``max_delay``, from reset."""
    rng = np.random.default_rng(5)
    dut = TimeBinDriver(lanes=4, uis_per_symbol=4)
    assert dut.max_delay == 8
    valid, fields = random_symbols(rng, 500, 4)
    carver, im, pm, _, _ = run_rtl(dut, valid, pack_symbol_words(4, fields), [])
    expected = run_model(dut, valid, fields, {})
    np.testing.assert_array_equal(carver, expected.carver)
    np.testing.assert_array_equal(im, expected.im)
    np.testing.assert_array_equal(pm, expected.pm)


# --- directed ---

#: The cycle of the one valid word in these tests: settings written in cycle 0 act from
#: cycle 1 (the driver's registered settings hold their reset values in cycle 0).
AT = 1


def _one_word(lanes, n, **lane_fields):
    """``n`` cycles, cycle ``AT`` valid with the given per-lane fields, all others invalid."""
    valid = np.zeros(n, bool)
    valid[AT] = True
    fields = {}
    for name, values in lane_fields.items():
        fields[name] = np.zeros((n, lanes), np.int64)
        fields[name][AT] = values
    return valid, fields


def _states(states):
    states = np.asarray(states)
    return {"basis": states >> 1, "bit": states & 1}


def test_state_patterns():
    dut = TimeBinDriver(lanes=4, uis_per_symbol=4)
    latency = dut.latency
    valid, fields = _one_word(4, AT + latency + 1, **_states([Z0, Z1, XP, XM]))
    carver, im, pm, o_valid, _ = run_rtl(dut, valid, pack_symbol_words(4, fields), [])
    assert list(o_valid) == [False] + [True] * (AT + latency)
    latency += AT
    assert list(carver[latency]) == [1, 1, 0, 0,  0, 0, 1, 1,  1, 1, 1, 1,  1, 1, 1, 1]
    assert list(im[latency]) == [200, 200, 0, 0,  0, 0, 200, 200] + [200] * 8
    # 4-state table: X- alone gets a phase of pi, on its late bin.
    assert list(pm[latency]) == [0] * 12 + [0, 0, 1, 1]
    assert not carver[:latency].any()


def test_pulse_window_and_levels():
    """A pulse of one UI in the middle of a 3-UI bin; im levels on both bins, idle elsewhere."""
    dut = TimeBinDriver(lanes=4, uis_per_symbol=6, dac_bits=8, pm_bits=2)
    latency = dut.latency
    im_levels = list(range(100, 132))
    settings = {"pulse_offset": 1, "pulse_width": 1, "im_levels": im_levels, "im_idle": 9,
                "pm_levels": [0, 0, 0, 0, 0, 0, 3, 2]}
    valid, fields = _one_word(4, AT + latency + 1, intensity=[0, 1, 2, 3],
                              **_states([Z0, Z1, XP, XM]))
    carver, im, pm, _, _ = run_rtl(dut, valid, pack_symbol_words(4, fields), [(0, settings)])
    latency += AT
    assert list(carver[latency]) == [0, 1, 0, 0, 0, 0,  0, 0, 0, 0, 1, 0,
                                     0, 1, 0, 0, 1, 0,  0, 1, 0, 0, 1, 0]
    for lane, (state, intensity) in enumerate([(Z0, 0), (Z1, 1), (XP, 2), (XM, 3)]):
        early = im_levels[im_level_index(intensity, state, 0)]
        late = im_levels[im_level_index(intensity, state, 1)]
        assert list(im[latency, lane * 6:lane * 6 + 6]) == [9, early, 9, 9, late, 9]
    assert list(pm[latency]) == [0] * 18 + [3, 3, 3, 2, 2, 2]


def test_dark_symbols_emit_nothing():
    lanes, n = 4, 12
    dut = TimeBinDriver(lanes=lanes, uis_per_symbol=4, pm_bits=2)
    settings = {"im_idle": 7, "pm_levels": [3] * 8, "im_levels": [255] * 32}
    rng = np.random.default_rng(1)
    valid = np.arange(n) % 2 == 0                       # even cycles: valid but all dark
    fields = {**_states(rng.integers(0, 4, (n, lanes))),
              "intensity": rng.integers(0, 4, (n, lanes)),
              "dark": np.where(valid[:, None], 1, rng.integers(0, 2, (n, lanes)))}
    carver, im, pm, _, _ = run_rtl(dut, valid, pack_symbol_words(lanes, fields), [(0, settings)])
    filled = slice(dut.latency, None)
    assert not carver[filled].any()
    assert (im[filled] == 7).all()
    assert not pm[filled].any()
    # The pipeline and delay history start at zero, not at im_idle.
    assert not im[:dut.latency].any()


@pytest.mark.parametrize(("lanes", "span", "max_delay"), [(4, 4, 2 * 16 + 3), (1, 4, None)])
def test_delays(lanes, span, max_delay):
    """An impulse moves by exactly the delay: 0, 1, one word, max_delay; outputs separately."""
    top = max_delay if max_delay is not None else 2 * span
    uis, k, latency = lanes * span, span // 2, TimeBinDriver.latency
    n = AT + latency + -(-(top + span) // uis) + 1
    valid, fields = _one_word(lanes, n, **_states([Z0] * lanes))
    payloads = pack_symbol_words(lanes, fields)
    base = {"pulse_width": 1, "pm_levels": [1] + [0] * 7}
    cases = [(d, d, d) for d in (0, 1, uis, top)] + [(uis, top, 0)]
    for d_carver, d_im, d_pm in cases:
        dut = TimeBinDriver(lanes=lanes, uis_per_symbol=span, max_delay=max_delay)
        settings = {**base, "delay_carver": d_carver, "delay_im": d_im, "delay_pm": d_pm}
        carver, im, pm, _, error = run_rtl(dut, valid, payloads, [(0, settings)])
        assert not error.any()
        # Every lane carries Z0 with a 1-UI pulse: lane i's pulse is at UI i * span.
        pulses = (AT + latency) * uis + np.arange(lanes) * span
        expect_carver = np.zeros(n * uis, np.int64)
        expect_carver[pulses + d_carver] = 1
        expect_im = np.zeros(n * uis, np.int64)
        expect_im[pulses + d_im] = 200
        expect_pm = np.zeros(n * uis, np.int64)
        expect_pm[(pulses[:, None] + np.arange(k)).ravel() + d_pm] = 1   # whole early bin
        case = f"delays {(d_carver, d_im, d_pm)}"
        np.testing.assert_array_equal(carver.ravel(), expect_carver, err_msg=case)
        np.testing.assert_array_equal(im.ravel(), expect_im, err_msg=case)
        np.testing.assert_array_equal(pm.ravel(), expect_pm, err_msg=case)


def test_ui_delay_against_numpy():
    width, span, max_delay, n = 3, 5, 12, 40
    dut = UIDelay(width, span, max_delay)
    assert dut.history_words == 3
    rng = np.random.default_rng(2)
    words = rng.integers(0, 1 << width, (n, span))
    delays = np.repeat([0, 1, 5, 12, 7], n // 5)
    ints = bits_to_ints(((words[..., None] >> np.arange(width)) & 1).reshape(n, -1))
    outs = []

    async def testbench(ctx):
        for cycle in range(n):
            ctx.set(dut.i_uis.as_value(), ints[cycle])
            ctx.set(dut.delay, int(delays[cycle]))
            await ctx.tick()
            outs.append(ctx.get(dut.o_uis.as_value()))

    simulate(dut, testbench)
    got = unpack_field(ints_to_bits(outs, span * width), 0, span, width)
    stream = words.ravel()
    for cycle in range(n):                  # word out after the edge of cycle c: UIs c*span - D
        start = cycle * span - delays[cycle]
        expect = [stream[q] if q >= 0 else 0 for q in range(start, start + span)]
        assert list(got[cycle]) == expect, cycle


@pytest.mark.parametrize("max_delay", [0, 3, 12])
def test_ui_delay_groups_against_numpy(max_delay):
    """Each group of output UIs follows its own copy of the delay (equal in the driver)."""
    width, span, groups, n = 2, 6, 3, 40
    dut = UIDelay(width, span, max_delay, groups=groups)
    rng = np.random.default_rng(3 + max_delay)
    words = rng.integers(0, 1 << width, (n, span))
    delays = rng.integers(0, max_delay + 1, (n, groups))
    delays[n // 2:] = delays[n // 2:, :1]              # equal copies in the second half
    ints = bits_to_ints(((words[..., None] >> np.arange(width)) & 1).reshape(n, -1))
    outs = []

    async def testbench(ctx):
        for cycle in range(n):
            ctx.set(dut.i_uis.as_value(), ints[cycle])
            ctx.set(dut.delay.as_value(), bits_to_ints(
                ((delays[cycle:cycle + 1, :, None] >> np.arange(len(dut.delay[0]))) & 1)
                .reshape(1, -1))[0])
            await ctx.tick()
            outs.append(ctx.get(dut.o_uis.as_value()))

    simulate(dut, testbench)
    got = unpack_field(ints_to_bits(outs, span * width), 0, span, width)
    stream = words.ravel()
    for cycle in range(n):
        for j in range(span):
            q = cycle * span - delays[cycle, j // (span // groups)] + j
            assert got[cycle, j] == (stream[q] if q >= 0 else 0), (cycle, j)


def test_refused_settings_keep_last_accepted():
    lanes, span = 2, 6                                  # k = 3, max_delay = 12 in a 4-bit port
    dut = TimeBinDriver(lanes=lanes, uis_per_symbol=span)
    assert dut.max_delay == 12
    n = 60
    valid = np.ones(n, bool)
    fields = _states(np.full((n, lanes), Z0))
    schedule = [
        (0, {"pulse_offset": 1, "pulse_width": 2}),     # accepted
        (10, {"pulse_width": 0}),                       # refused: empty pulse
        (20, {"pulse_offset": 2, "pulse_width": 2}),    # refused: past the end of the bin
        (30, {"pulse_offset": 0, "pulse_width": 1,      # accepted ...
              "delay_carver": 13}),                     # ... refused: above max_delay
        (40, {"delay_carver": 1}),                      # accepted
        (50, {"delay_im": 15, "delay_pm": 14}),         # refused
    ]
    carver, im, pm, _, error = run_rtl(dut, valid, pack_symbol_words(lanes, fields), schedule)
    bad = np.zeros(n, bool)
    bad[10:30] = bad[30:40] = bad[50:] = True
    np.testing.assert_array_equal(error, bad)
    latency = dut.latency
    lane = {  # carver of one Z0 symbol
        "1+2": [0, 1, 1, 0, 0, 0],
        "0+1": [1, 0, 0, 0, 0, 0],
        "0+1, delayed 1": [0, 1, 0, 0, 0, 0],
    }
    # An accepted pulse window applies to the symbols of the same cycle, an accepted delay to
    # the output two cycles after (registered check, then the setting).
    for cycles, pattern in ((range(latency, 30 + latency), "1+2"),
                            (range(30 + latency, 42 + UIDelay.latency), "0+1"),
                            (range(42 + UIDelay.latency, n), "0+1, delayed 1")):
        for cycle in cycles:
            assert list(carver[cycle]) == lane[pattern] * lanes, (cycle, pattern)
    # The refused im/pm delays leave those outputs where they were: im follows the window.
    assert list(im[n - 1]) == [200, 0, 0, 0, 0, 0] * lanes
    assert not pm[latency:].any()


def test_model_refuses_like_rtl():
    model = TimeBinDriverModel(2, 6)
    applied, error = model.applied_settings({"pulse_offset": 2, "pulse_width": 2})
    assert error and (applied["pulse_offset"], applied["pulse_width"]) == (0, 3)
    applied, error = model.applied_settings({"delay_pm": 13})
    assert error and applied["delay_pm"] == 0
    applied, error = model.applied_settings({"delay_pm": 12, "pulse_offset": 2,
                                             "pulse_width": 1})
    assert not error and applied["delay_pm"] == 12
    with pytest.raises(ValueError, match="delay_pm"):
        model.applied_settings({"delay_pm": 16})        # does not fit the port at all
    with pytest.raises(ValueError, match="im_levels"):
        model.applied_settings({"im_levels": [256] * 32})
    with pytest.raises(KeyError, match="pulse"):
        model.applied_settings({"pulse": 1})


def test_default_tables():
    assert default_im_levels(8)[im_level_index(0, Z0, 0)] == 200
    assert default_im_levels(8)[im_level_index(0, Z0, 1)] == 0
    assert default_im_levels(8)[im_level_index(1, XP, 1)] == 100
    assert default_im_levels(1)[im_level_index(0, Z1, 1)] == 1


# --- construction ---

@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"lanes": 0}, ValueError, "0"),
    ({"lanes": 2.0}, TypeError, "2.0"),
    ({"lanes": True}, TypeError, "True"),
    ({"uis_per_symbol": 3}, ValueError, "3"),
    ({"uis_per_symbol": 0}, ValueError, "0"),
    ({"uis_per_symbol": "4"}, TypeError, "'4'"),
    ({"dac_bits": 0}, ValueError, "0"),
    ({"dac_bits": 17}, ValueError, "17"),
    ({"pm_bits": 9}, ValueError, "9"),
    ({"pm_bits": None}, TypeError, "None"),
    ({"max_delay": -1}, ValueError, "-1"),
    ({"max_delay": MAX_DELAY_WORDS * 16 + 1}, ValueError, str(MAX_DELAY_WORDS * 16 + 1)),
    ({"max_delay": 4.0}, TypeError, "4.0"),
])
def test_bad_construction(kwargs, error, bad, assert_refused):
    args = {"lanes": 4, "uis_per_symbol": 4, **kwargs}
    assert_refused(error, f"not {bad}$", lambda: TimeBinDriver(**args))
    with pytest.raises(error, match=f"not {bad}$"):
        TimeBinDriverModel(**args)


def test_keyword_only(assert_refused):
    assert_refused(TypeError, "positional", lambda: TimeBinDriver(4, 4))


@pytest.mark.parametrize(("args", "error"), [
    ((0, 4, 0), ValueError), ((1, 0, 0), ValueError), ((1, 4, 65), ValueError),
    ((1, 4, -1), ValueError), ((1, 4.0, 2), TypeError),
    ((1, 4, 2, 3), ValueError), ((1, 4, 2, 0), ValueError), ((1, 4, 2, 8), ValueError),
    ((1, 4, 2, 2.0), TypeError),
])
def test_ui_delay_bad_construction(args, error, assert_refused):
    kwargs = {"groups": args[3]} if len(args) > 3 else {}
    assert_refused(error, "not ", lambda: UIDelay(*args[:3], **kwargs))


def test_model_checks_inputs():
    model = TimeBinDriverModel(2, 4)
    ok = np.zeros((3, 2), np.int64)
    with pytest.raises(ValueError, match="intensity"):
        model.run(np.ones(3), ok, ok, ok + 4, ok)
    with pytest.raises(ValueError, match="basis"):
        model.run(np.ones(3), ok[:, :1], ok, ok, ok)
