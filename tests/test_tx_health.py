"""Tests of the SP 800-90B health tests: cutoffs, gateware against its model, directed cases."""


import numpy as np
import pytest
from scipy.stats import binom
from timebin.gateware.formulas import _critbinom_exact, _critbinom_log
from timebin.gateware.tx.health import HealthTests, sp800_90b_cutoffs
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.tx.health import HealthTestsModel, pack_samples, unpack_samples
from timebin.sim.tx.trivium import trivium_words

OUTPUTS = ("fail", "alarm", "rct_failures", "apt_failures", "settings_error")


def run_rtl(dut, words, valid=True, clear=False, rct_cutoff=None, apt_cutoff=None):
    """Simulate ``dut`` for ``len(words)`` cycles from reset.

    Inputs are per-cycle arrays or one value for every cycle (cutoffs: None keeps the port's
    init). Returns a dict of the outputs as numpy arrays, sampled in each cycle before its
    clock edge.
    """
    n = len(words)
    inputs = {"samples": np.asarray(words, np.uint64), "valid": valid, "clear": clear,
              "rct_cutoff": rct_cutoff, "apt_cutoff": apt_cutoff}
    inputs = {name: [int(x) for x in np.broadcast_to(value, n)]
              for name, value in inputs.items() if value is not None}
    ports = [(getattr(dut, name), values) for name, values in inputs.items()]
    got = {name: [] for name in OUTPUTS}
    outs = [(got[name], getattr(dut, name)) for name in OUTPUTS]

    async def testbench(ctx):
        last = [None] * len(ports)
        for cycle in range(n):
            for i, (port, values) in enumerate(ports):
                if values[cycle] != last[i]:                # each set settles the design
                    ctx.set(port, values[cycle])
                    last[i] = values[cycle]
            for values, port in outs:
                values.append(ctx.get(port))
            await ctx.tick()

    simulate(dut, testbench)
    return {name: np.array(values, np.int64) for name, values in got.items()}


def assert_same(rtl, model, context):
    for name in OUTPUTS:
        np.testing.assert_array_equal(rtl[name], getattr(model, name).astype(np.int64),
                                      err_msg=f"{name}, {context}")


def first(flags):
    """Index of the first true element (asserting there is one)."""
    hits = np.flatnonzero(flags)
    assert hits.size, "never"
    return int(hits[0])


# --- cutoffs ---

def test_cutoffs_of_the_spec():
    # SP 800-90B 4.4.1 and 4.4.2 (Table 2, binary, W = 1024): H = 1, alpha = 2**-20.
    assert sp800_90b_cutoffs() == (21, 589)
    assert sp800_90b_cutoffs(1.0, 2**-20, 1024) == (21, 589)
    # Table 2, W = 512 (non-binary), and the RCT cutoffs of H = 0.5, 1, ..., 8; these are also
    # the tables OpenSSL's continuous RNG test (providers/.../crngt) carries.
    for h, rct, apt in [(0.5, 41, 410), (1, 21, 311), (2, 11, 177), (3, 8, 103), (4, 6, 62),
                        (5, 5, 39), (6, 5, 25), (7, 4, 18), (8, 4, 13)]:
        assert sp800_90b_cutoffs(h, 2**-20, 512) == (rct, apt), h
    # RCT: C = 1 + ceil(20 / 0.3) = 1 + 67; exact quotients are not rounded up.
    assert sp800_90b_cutoffs(0.3)[0] == 68
    assert sp800_90b_cutoffs(0.5, 2**-40)[0] == 81


@pytest.mark.parametrize(("h_min", "window", "alpha"), [
    (1.0, 1024, 2**-20), (1.0, 1024, 2**-40), (0.5, 1024, 2**-20), (0.8, 512, 2**-20),
    (0.95, 4096, 2**-30), (1.0, 64, 2**-10), (0.25, 256, 1e-6),
])
def test_apt_cutoff_against_scipy(h_min, window, alpha):
    p = 2.0 ** -h_min
    expected = 1 + int(binom.ppf(1 - alpha, window, p))
    assert sp800_90b_cutoffs(h_min, alpha, window)[1] == expected


@pytest.mark.parametrize(("n", "p", "alpha"), [
    (1024, 0.5, 2**-20), (1000, 0.7071067811865476, 1e-9), (333, 0.3, 2**-20), (64, 0.5, 0.3),
])
def test_apt_cutoff_exact_and_log_space_agree(n, p, alpha):
    assert _critbinom_exact(n, p, alpha) == _critbinom_log(n, p, alpha)


def test_apt_cutoff_tie_resolved_exactly():
    # W = 20, p = 1/2: P(X >= 20) = 2**-20 exactly, so CDF(19) = 1 - alpha and CRITBINOM = 19.
    assert sp800_90b_cutoffs(1.0, 2**-20, 20)[1] == 20
    # A window too short for alpha: no count can fail, the cutoff is W + 1.
    assert sp800_90b_cutoffs(1.0, 2**-20, 16)[1] == 17


@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"h_min": 0}, ValueError, "0"),
    ({"h_min": "1"}, TypeError, "'1'"),
    ({"alpha": 1.0}, ValueError, "1.0"),
    ({"alpha": 0}, ValueError, "0"),
    ({"window": 0}, ValueError, "0"),
    ({"window": 2.0}, TypeError, "2.0"),
])
def test_cutoffs_refuse_bad_arguments(kwargs, error, bad):
    with pytest.raises(error, match=f"not {bad}$"):
        sp800_90b_cutoffs(**kwargs)


# --- gateware against model ---

def random_stimulus(rng, n, channels, dut):
    """Sample words mixing unbiased, biased, stuck and alternating stretches; valid gaps,
    random clears, and cutoff changes (accepted and refused) mid-run."""
    lengths = rng.integers(1, 40, n)
    kinds = rng.choice(6, n, p=[0.45, 0.15, 0.15, 0.1, 0.1, 0.05])
    stretch = np.repeat(np.arange(n), lengths)[:n]
    kind = kinds[stretch]
    p_one = np.select([kind == 1, kind == 2], [0.85, 0.12], 0.5)
    bits = (rng.random((n, channels)) < p_one[:, None]).astype(np.uint8)
    bits[kind == 3] = (stretch[kind == 3] % 2)[:, None]                 # stuck at 0 or 1
    alternating = (np.arange(n * channels).reshape(n, channels) % 2).astype(np.uint8)
    bits[kind == 4] = alternating[kind == 4]
    bits[kind == 5] = rng.integers(0, 2, (int((kind == 5).sum()), 1))    # stuck per cycle
    valid = rng.random(n) < 0.9
    valid[rng.integers(0, n, 20)] = False
    clear = rng.random(n) < 0.005

    def schedule(defaults, choices, hold):
        values = np.full(n, defaults)
        for start in rng.integers(0, n, n // hold):
            values[start:start + hold] = rng.choice(choices)
        return values

    top_rct, top_apt = (1 << dut.rct_bits) - 1, (1 << dut.window.bit_length()) - 1
    rct = schedule(dut.default_rct_cutoff,
                   [0, 1, 2, 3, 5, 9, 17, channels, channels + 1, 70, top_rct], 150)
    w = dut.window
    apt = schedule(dut.default_apt_cutoff,
                   [0, 1, 2, 3, w // 2 + 2, w // 2 + w // 8, w - 1, w, w + 1, top_apt], 400)
    return pack_samples(bits), valid, clear, rct, apt


# (channels, window, alpha, cycles): windows that start mid-word for 13 and 64 channels.
RANDOM_CASES = [
    (1, 8, 0.05, 10_000),
    (8, 1024, 2**-20, 10_000),
    (13, 32, 0.01, 10_000),
    (64, 128, 2**-20, 10_000),
]


@pytest.mark.parametrize(("channels", "window", "alpha", "cycles"), RANDOM_CASES)
def test_rtl_matches_model(channels, window, alpha, cycles):
    seed = 0x90B + channels * 1000 + window
    rng = np.random.default_rng(seed)
    dut = HealthTests(channels, window=window, alpha=alpha)
    model = HealthTestsModel(channels, window=window, alpha=alpha)
    assert (model.default_rct_cutoff, model.default_apt_cutoff) == \
        (dut.default_rct_cutoff, dut.default_apt_cutoff)
    words, valid, clear, rct, apt = random_stimulus(rng, cycles, channels, dut)
    rtl = run_rtl(dut, words, valid, clear, rct, apt)
    expected = model.run(words, valid, clear, rct, apt)
    assert_same(rtl, expected, f"seed {seed}")
    # The stimulus exercised what it is meant to.
    assert 0 < expected.fail.sum() < cycles
    assert expected.rct_failures[-1] > 10 and expected.apt_failures[-1] > 10
    assert 0 < expected.settings_error.sum() < cycles
    assert 0 < expected.alarm.sum() < cycles


def test_rtl_matches_model_defaults():
    """Unbiased samples, default cutoffs, always valid: nothing fails, counters stay 0."""
    rng = np.random.default_rng(7)
    words = rng.integers(0, 1 << 16, 2000, dtype=np.uint64)
    dut = HealthTests(16)
    rtl = run_rtl(dut, words)
    assert_same(rtl, HealthTestsModel(16).run(words, True), "defaults")
    assert not rtl["alarm"].any() and not rtl["settings_error"].any()


# --- directed ---

@pytest.mark.parametrize("channels", [1, 8, 64])
@pytest.mark.parametrize("value", [0, 1])
def test_stuck_input_trips_rct_on_sample_c(channels, value):
    """The RCT fails on the C-th identical sample (index C - 1), in the cycle holding it."""
    dut = HealthTests(channels)
    cutoff = dut.default_rct_cutoff
    assert cutoff == 21
    trip = (cutoff - 1) // channels
    n = trip + 4
    word = (1 << channels) - 1 if value else 0
    clear = np.zeros(n, bool)
    clear[trip + 2] = True
    rtl = run_rtl(dut, [word] * n, clear=clear)
    assert first(rtl["fail"]) == trip
    assert first(rtl["alarm"]) == trip
    assert not rtl["alarm"][:trip].any()
    assert list(rtl["rct_failures"][trip:trip + 3]) == [0, 1, 2]
    assert not rtl["apt_failures"].any()                 # 589 samples are far off
    # Clear restarts the RCT: with C - 1 > channels samples to go, the alarm drops.
    if channels < cutoff - 1:
        assert not rtl["alarm"][trip + 2] and not rtl["fail"][trip + 2]
    assert_same(rtl, HealthTestsModel(channels).run([word] * n, True, clear), "stuck")


def test_alarm_latches_until_clear():
    """One short stuck stretch: alarm stays high after the samples recover, until clear."""
    channels, n = 8, 40
    bits = np.tile([0, 1], (n, channels // 2)).astype(np.uint8)    # alternating: no runs
    bits[5:8] = 1                                                   # 24 ones: fails in cycle 7
    clear = np.zeros(n, bool)
    clear[30] = True
    words = pack_samples(bits)
    rtl = run_rtl(HealthTests(channels), words, clear=clear)
    assert list(np.flatnonzero(rtl["fail"])) == [7]
    expected_alarm = np.zeros(n, bool)
    expected_alarm[7:30] = True
    np.testing.assert_array_equal(rtl["alarm"], expected_alarm)
    assert rtl["rct_failures"][-1] == 1


def test_alternating_pattern_trips_apt_at_predicted_sample():
    """1110 repeated: 75% ones, runs of 3 (no RCT failure). A = 1, and the 589th one of the
    window is sample 588 + 588 // 3 = 784, in cycle 98 of 8 samples."""
    channels, n = 8, 140
    bits = np.tile([1, 1, 1, 0], (n, channels // 4)).astype(np.uint8)
    dut = HealthTests(channels)
    rtl = run_rtl(dut, pack_samples(bits))
    assert first(rtl["fail"]) == 784 // channels
    assert not rtl["rct_failures"].any()
    assert rtl["apt_failures"][-1] > 0
    # Every further one of the window fails; the window ends with cycle 127, and the next
    # one starts over (its first failure would be in cycle 128 + 98).
    assert list(np.flatnonzero(rtl["fail"])) == list(range(98, 128))


def test_biased_input_trips_apt_within_one_window():
    """P(1) = 0.9 with the RCT cutoff raised to 255: the APT fails in the first window, at
    the sample where the count of ones reaches C."""
    channels, window, n = 16, 1024, 200
    rng = np.random.default_rng(11)
    bits = (rng.random((n, channels)) < 0.9).astype(np.uint8)
    bits[0, 0] = 1                                              # A = 1 in window 0
    stream = bits.ravel()
    cutoff = sp800_90b_cutoffs(window=window)[1]
    predicted = first(np.cumsum(stream[:window] == 1) >= cutoff)
    assert predicted < window
    dut = HealthTests(channels, window=window)
    rtl = run_rtl(dut, pack_samples(bits), rct_cutoff=255)
    assert first(rtl["fail"]) == predicted // channels
    assert not rtl["rct_failures"].any()
    assert rtl["apt_failures"][-1] > 0
    model = HealthTestsModel(channels).run(pack_samples(bits), True, rct_cutoff=255)
    assert_same(rtl, model, "biased")


def rct_failing_cycles(words, channels, cutoff):
    """Cycles holding a sample that ends >= ``cutoff`` identical samples, from run lengths."""
    stream = unpack_samples(words, channels).ravel()
    starts = np.flatnonzero(np.diff(stream, prepend=1 - stream[0]))
    run_start = starts[np.searchsorted(starts, np.arange(stream.size), side="right") - 1]
    run_length = np.arange(stream.size) - run_start + 1
    return np.unique(np.flatnonzero(run_length >= cutoff) // channels)


def test_unbiased_trivium_does_not_trip_apt():
    """10**6 samples of Trivium keystream at the default alpha = 2**-20 per window: no APT
    failure. The RCT's alpha is per sample (a run of 21 about once in 2**21 samples): its
    failures are exactly the runs counted independently."""
    words = trivium_words(0x0123456789ABCDEF0123, 0xFEDCBA9876543210FEDC, 15_625 + 1)
    valid = np.ones(words.size, bool)
    valid[-1] = False                                   # one more cycle to read the counters
    model = HealthTestsModel(64)
    out = model.run(words, valid)
    assert out.apt_failures[-1] == 0
    rct = np.flatnonzero(np.diff(out.rct_failures.astype(np.int64)))
    np.testing.assert_array_equal(rct, rct_failing_cycles(words[:-1], 64, 21))
    np.testing.assert_array_equal(out.fail, np.isin(np.arange(words.size), rct))


def test_unbiased_source_does_not_alarm_at_alpha_2_40():
    """6.4e7 samples (numpy and Trivium) at alpha = 2**-40: no alarm at all."""
    model = HealthTestsModel(64, alpha=2**-40)
    assert (model.default_rct_cutoff, model.default_apt_cutoff) == (41, 625)
    rng = np.random.default_rng(2024)
    for words in (rng.integers(0, 2**64 - 1, 500_000, dtype=np.uint64, endpoint=True),
                  trivium_words(1, 2, 500_000)):
        out = model.run(words, True)
        assert not out.alarm.any()


def test_refused_settings_keep_last_accepted():
    channels, window, n = 1, 16, 80
    dut = HealthTests(channels, window=window, alpha=0.01)
    schedule = [  # (cycle, rct_cutoff, apt_cutoff, clear)
        (0, 4, 8, False),
        (20, 1, 8, True),         # rct refused: keeps 4, not 1 (which would fail at once)
        (40, 6, 17, True),        # rct accepted; apt refused (above the window): keeps 8
        (60, 0, 2, True),         # rct refused: keeps 6; apt accepted
    ]
    rct, apt, clear = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
    for cycle, r, a, c in schedule:
        rct[cycle:], apt[cycle:], clear[cycle] = r, a, c
    rtl = run_rtl(dut, [0] * n, True, clear, rct, apt)
    error = np.zeros(n, bool)
    error[20:40] = error[40:60] = error[60:] = True
    np.testing.assert_array_equal(rtl["settings_error"], error)
    # Cycles in which each test failed, from its counter (which counts them a cycle later).
    rct_fails = np.flatnonzero(np.diff(rtl["rct_failures"]))
    apt_fails = np.flatnonzero(np.diff(rtl["apt_failures"]))

    def first_from(fails, cycle):
        return int(fails[fails >= cycle][0])

    assert first_from(rct_fails, 0) == 3                        # C = 4: the 4th sample
    assert first_from(rct_fails, 20) == 23                      # C = 4 kept, not 1
    assert first_from(rct_fails, 40) == 45                      # C = 6
    assert first_from(apt_fails, 40) == 47                      # C = 8 kept, not 17
    assert first_from(rct_fails, 60) == 65                      # C = 6 kept, not 0
    assert first_from(apt_fails, 60) == 61                      # C = 2 accepted
    assert_same(rtl, HealthTestsModel(channels, window, alpha=0.01).run(
        [0] * n, True, clear, rct, apt), "refused")


# --- construction ---

@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"channels": 0}, ValueError, "0"),
    ({"channels": 65}, ValueError, "65"),
    ({"channels": 8.0}, TypeError, "8.0"),
    ({"channels": True}, TypeError, "True"),
    ({"window": 1000}, ValueError, "1000"),
    ({"window": 1}, ValueError, "1"),
    ({"window": 131072}, ValueError, "131072"),
    ({"window": 1024.0}, TypeError, "1024.0"),
    ({"window": 4, "alpha": 0.3}, ValueError, "4"),             # shorter than 8 channels
    ({"window": 16}, ValueError, "16"),                         # too short for alpha
    ({"h_min": 0}, ValueError, "0"),
    ({"h_min": 1.5}, ValueError, "1.5"),
    ({"h_min": "1"}, TypeError, "'1'"),
    ({"alpha": 0}, ValueError, "0"),
    ({"alpha": 1}, ValueError, "1"),
    ({"alpha": None}, TypeError, "None"),
])
def test_bad_construction(kwargs, error, bad, assert_refused):
    args = {"channels": 8, **kwargs}
    assert_refused(error, f"not {bad}$", lambda: HealthTests(**args))
    with pytest.raises(error, match=f"not {bad}$"):
        HealthTestsModel(**args)


def test_model_refuses_values_that_do_not_fit_the_ports():
    model = HealthTestsModel(8)
    with pytest.raises(ValueError, match="rct_cutoff.*not 256$"):
        model.run([0, 0], True, rct_cutoff=256)
    with pytest.raises(ValueError, match="apt_cutoff.*not 2048$"):
        model.run([0, 0], True, apt_cutoff=[5, 2048])
    with pytest.raises(ValueError, match="not 256$"):
        model.run([256], True)
