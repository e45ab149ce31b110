"""Tests of the receiver front end (edges, dead time, counters, gates): gateware against its
model, and directed cases."""

import numpy as np
import pytest
from timebin.gateware.rx.frontend import (
    COUNTER_BITS,
    ClickFrontEnd,
    DeadTimeMode,
    gate_frame_cycles,
)
from timebin.gateware.rx.layouts import Hit
from timebin.sim.amaranth_helpers import run_per_cycle
from timebin.sim.rx.detector import click_words, poisson_clicks
from timebin.sim.rx.frontend import ClickFrontEndModel, ClickFrontEndOutput
from timebin.sim.rx.rtl import port_ints
from timebin.sim.words import bits_to_ints, ints_to_bits, unpack_field

PER_DETECTOR, COMMON = DeadTimeMode.PER_DETECTOR.value, DeadTimeMode.COMMON.value
HIT_FIELDS = ("valid", "time", "symbol", "ui")
OUTPUTS = HIT_FIELDS + ("clicks", "dead_discards", "gates", "gate_starts", "settings_error")


def run_rtl(dut, samples, *, reset_at=None, **settings):
    """Simulate ``dut`` for ``len(samples)`` cycles from reset, with the inputs and settings
    :meth:`ClickFrontEndModel.run` takes. ``reset_at``: a cycle in which the domain's reset is
    high. Returns the outputs as the model's arrays, sampled in each cycle before its edge."""
    n, channels, uis = samples.shape
    S = dut.uis_per_symbol
    inputs = {"samples": bits_to_ints(samples.reshape(n, channels * uis))}
    for name, value in settings.items():
        if value is not None:
            inputs[name] = port_ints(getattr(dut, name), value, n)
    ports = [(getattr(dut, name), values) for name, values in inputs.items()]
    outputs = {name: getattr(dut, name) for name in
               ("hits", "clicks", "dead_discards", "gates", "gate_starts", "settings_error")}
    got = run_per_cycle(dut, ports, outputs, n, reset_at=reset_at)

    hit = Hit(S)
    bits = ints_to_bits(got["hits"], hit.size * channels).reshape(n, channels, hit.size)
    out = {}
    for name in HIT_FIELDS:
        field = hit[name]
        width = field.shape.width if hasattr(field.shape, "width") else field.shape
        out[name] = unpack_field(bits.reshape(n * channels, hit.size), field.offset, 1,
                                 width).reshape(n, channels)
    for name in ("clicks", "dead_discards"):
        out[name] = unpack_field(ints_to_bits(got[name], COUNTER_BITS * channels), 0,
                                 channels, COUNTER_BITS)
    out["gates"] = ints_to_bits(got["gates"], channels * uis).reshape(n, channels, uis)
    start_bits = len(dut.gate_starts.as_value()) // channels
    out["gate_starts"] = unpack_field(ints_to_bits(got["gate_starts"], start_bits * channels),
                                      0, channels, start_bits)
    out["settings_error"] = np.array(got["settings_error"], np.int64)
    return out


def compare(rtl, model, what=""):
    """Fail on the first cycle where the gateware and the model differ."""
    for name in OUTPUTS:
        want = np.asarray(getattr(model, name)).astype(np.uint64)
        have = np.asarray(rtl[name]).astype(np.uint64)
        assert have.shape == want.shape, (name, have.shape, want.shape)
        diff = np.flatnonzero((have != want).reshape(len(want), -1).any(axis=1))
        assert not diff.size, (f"{what}{name} differs first in cycle {diff[0]}: gateware "
                               f"{have[diff[0]]}, model {want[diff[0]]}")


def run_both(params, samples, dut=None, **settings):
    """The gateware (``dut``, or one built from ``params``) and the model on the same
    inputs; fail on the first difference. Returns the gateware's outputs."""
    rtl = run_rtl(dut or ClickFrontEnd(**params), samples, **settings)
    model = ClickFrontEndModel(**params).run(samples, **settings)
    compare(rtl, model)
    return ClickFrontEndOutput(**rtl)


def traffic(rng, n, uis, channels, rate, jitter, pulse, **grid):
    times = poisson_clicks(rng, n, uis, rate, jitter, channels=channels, **grid)
    return click_words(times, pulse, n, uis), times


# --- gateware against model ---

RANDOM_CASES = [
    # (lanes, S, channels, cycles, mode, seed)
    (16, 2, 4, 5_000, PER_DETECTOR, 0xF0),
    (16, 2, 4, 5_000, COMMON, 0xF1),
    (4, 6, 3, 5_000, COMMON, 0xF2),
    (3, 4, 2, 5_000, PER_DETECTOR, 0xF3),
    # Words of more than four groups of 8 UIs (the dead-time table's and the click search's
    # picks among groups): the L=32 boards' 64 UIs, and 40.
    (32, 2, 2, 2_000, PER_DETECTOR, 0xF4),
    (20, 2, 1, 2_000, COMMON, 0xF5),
]


@pytest.mark.parametrize(("lanes", "span", "channels", "n", "mode", "seed"), RANDOM_CASES)
def test_rtl_matches_model(lanes, span, channels, n, mode, seed):
    """Poisson clicks in time bins with jitter and merged pulses; dead time, its mode and
    the gates change (and are refused) along the run."""
    rng = np.random.default_rng(seed)
    W = lanes * span
    samples, _ = traffic(rng, n, W, channels, 0.02, 1.5, 3, grid_uis=span // 2)
    at = lambda cycle: cycle * n // 10_000   # noqa: E731  (the schedule, for 10**4 cycles)
    samples[at(3000):at(3100)] = 1                      # a blinded stretch: no edges
    samples[at(5000):at(5050), :, ::4] = 1              # many edges per word
    params = {"channels": channels, "lanes": lanes, "uis_per_symbol": span,
              "max_dead_time": 20 * W, "max_gate_period": 8}
    dead_time = np.full(n, W + 3)
    dead_time[at(2000):] = 5 * W + 7
    dead_time[at(4000):at(4500)] = W - 1                # refused: the last accepted stays
    dead_time[at(4500):] = W
    dead_time[at(6000):at(6100)] = 20 * W + 1           # refused
    dead_time[at(7000):] = 3 * W
    dead_time[at(9000):] = 2 * W + 5                    # one whole word dead, and a carry
    dead_time[at(9500):] = 4 * W + W - 1                # four whole words and W - 1 UIs
    dead_mode = np.full(n, mode)
    dead_mode[at(8000):at(8500)] = 1 - mode
    epoch_load = np.zeros(n, bool)
    epoch_load[[100, 101, at(6000)]] = True
    epoch = rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    period = rng.integers(1, 9, channels)
    gates = {
        "gate_enable": (np.arange(channels) + 1) % 3 != 0,
        "gate_period": np.broadcast_to(period, (n, channels)).copy(),
        "gate_offset": np.broadcast_to(rng.integers(0, period * span), (n, channels)).copy(),
        "gate_width": np.broadcast_to(rng.integers(1, period * span + 1),
                                      (n, channels)).copy(),
    }
    gates["gate_period"][at(5000):, 0] = 3              # a new period mid-run
    gates["gate_offset"][at(5000):, 0] = 3 * span - 1
    gates["gate_width"][at(5000):, 0] = 2
    gates["gate_period"][at(6500):at(6700), -1] = 9     # refused: above max_gate_period
    out = run_both(params, samples, epoch_load=epoch_load, epoch=epoch,
                   dead_time=dead_time, dead_mode=dead_mode, **gates)
    assert out.valid.sum() > n * channels // 20          # 1,000 clicks at 5,000 x 4
    assert out.dead_discards[-1].sum() > n * channels // 40
    assert out.settings_error.sum() == at(500) + at(100) + at(200)
    assert out.gates.any() and out.gate_starts.any()


@pytest.mark.parametrize(("lanes", "span", "seed"), [(2, 4, 0xD0), (1, 2, 0xD1), (3, 4, 0xD2)])
def test_dead_time_loop_under_changing_settings(lanes, span, seed):
    """The dead-time loop against the model under dense clicks, with the dead time redrawn
    every three cycles (W to 6 W: every count of whole dead words, with and without a carry)
    and the mode switched every five: each way the loop's state moves (a live word's entry,
    a dead word counted down, a switch to COMMON) and every change between them."""
    rng = np.random.default_rng(seed)
    n, channels = 3_000, 3
    W = lanes * span
    samples = (rng.random((n, channels, W)) < 0.12).astype(np.uint8)
    dead_time = np.repeat(rng.integers(W, 6 * W + 1, n // 3 + 1), 3)[:n]
    dead_mode = np.repeat(rng.integers(0, 2, n // 5 + 1), 5)[:n]
    params = {"channels": channels, "lanes": lanes, "uis_per_symbol": span,
              "max_dead_time": 6 * W}
    out = run_both(params, samples, dead_time=dead_time, dead_mode=dead_mode)
    accepted = out.valid.sum()
    assert 0.1 * n < accepted < out.clicks[-1].sum() / 2


# --- directed cases: expected values worked out by hand from the contract ---

def frontend(channels, lanes, span, **more):
    """Construction parameters of a front end."""
    return {"channels": channels, "lanes": lanes, "uis_per_symbol": span, **more}


def pulse_words(n, uis, pulses):
    """Sample words with one channel per entry of ``pulses``: each a list of ``(first, stop)``
    UI spans held high (``stop`` excluded; None: to the end of the run)."""
    stream = np.zeros((len(pulses), n * uis), np.uint8)
    for k, spans in enumerate(pulses):
        for first, stop in spans:
            stream[k, first:stop] = 1
    return stream.reshape(len(pulses), n, uis).transpose(1, 0, 2).copy()


def single_clicks(n, uis, times_per_channel):
    """Sample words with a one-UI pulse at each click time."""
    return click_words([np.asarray(t, np.int64) for t in times_per_channel], 1, n, uis)


def hits_on(out, k):
    """``(cycle, time, symbol, ui)`` of each hit shown on channel ``k``, in order."""
    cycles = np.flatnonzero(out.valid[:, k])
    return [(int(c), int(out.time[c, k]), int(out.symbol[c, k]), int(out.ui[c, k]))
            for c in cycles]


def accepted_times(out, k):
    return [int(t) for t in out.time[out.valid[:, k].astype(bool), k]]


def assert_idle_slots_zero(out):
    """Slots without a hit are all zero."""
    idle = ~out.valid.astype(bool)
    for name in ("time", "symbol", "ui"):
        assert not np.asarray(getattr(out, name))[idle].any(), name


def shown_counts(times, n, uis):
    """Per cycle, how many of the edges at ``times`` are counted: the word of cycle ``c``
    counts from cycle ``c + latency``."""
    words = np.asarray(times, np.int64) // uis
    return np.array([(words + ClickFrontEnd.latency <= c).sum() for c in range(n)])


def ui_word(uis, *set_uis):
    """A gate word (UI 0 first) with ``set_uis`` high."""
    word = np.zeros(uis, np.uint8)
    word[list(set_uis)] = 1
    return word


def one_per_cycle(n, values):
    """An (n,) array of per-cycle values from ``(first_cycle, value)`` steps."""
    out = np.zeros(n, np.int64)
    for first, value in values:
        out[first:] = value
    return out


# W = 8 UIs (2 lanes of 4 UIs) unless a case needs more: words short enough to work by hand.
W8 = {"lanes": 2, "span": 4}


@pytest.mark.parametrize("mode", [PER_DETECTOR, COMMON])
def test_edges_on_word_boundaries(mode):
    """Rising edges at UI 0 after a low last UI, across a word boundary, under a level held
    over whole words, and at UI 0 of the first word after reset."""
    n, W = 7 + ClickFrontEnd.latency, 8
    samples = pulse_words(n, W, [
        [(0, 3),        # high in cycle 0: an edge at UI 0 (nothing before reset)
         (16, 19),      # UI 0 of word 2 after a low UI 7 of word 1
         (31, 34),      # UI 7 of word 3 into word 4: one edge, at 31
         (43, None)],   # high from word 5 over whole words 6..9: one edge
        [(0, None)],    # high for the whole run: one edge at 0
    ])
    out = run_both(frontend(2, **W8), samples, dead_mode=mode)
    # (cycle shown = word + latency, time, symbol = 2 * word + u // 4, ui = u % 4)
    lat = ClickFrontEnd.latency
    assert hits_on(out, 0) == [(lat, 0, 0, 0), (2 + lat, 16, 4, 0), (3 + lat, 31, 7, 3),
                               (5 + lat, 43, 10, 3)]
    assert hits_on(out, 1) == [(lat, 0, 0, 0)]
    assert out.clicks[:, 0].tolist() == shown_counts([0, 16, 31, 43], n, W).tolist()
    assert out.clicks[:, 1].tolist() == [0] * lat + [1] * (n - lat)
    assert not out.dead_discards.any()
    assert_idle_slots_zero(out)


@pytest.mark.parametrize(("dead_time", "accepted"), [(8, [9, 17, 25]), (19, [9, 29])])
def test_one_accepted_click_per_word(dead_time, accepted):
    """Several edges in a word: the first outside the dead interval is accepted; the rest of
    the word is dead (D >= W), and a click at exactly t_a + D is accepted."""
    n, W = 5 + ClickFrontEnd.latency, 8
    edges = [9, 12, 14, 17, 25, 27, 29, 31]
    samples = single_clicks(n, W, [edges])
    out = run_both(frontend(1, **W8), samples, dead_time=dead_time, dead_mode=PER_DETECTOR)
    assert accepted_times(out, 0) == accepted
    assert out.clicks[:, 0].tolist() == shown_counts(edges, n, W).tolist()
    assert out.dead_discards[-1, 0] == len(edges) - len(accepted)


# Clicks of four channels, D = 20 UIs: three channels at the same UI 10; channel 1 two UIs
# after channel 0 in word 4; channel 3 inside the common interval of the clicks at 10.
SAME_UI_CLICKS = [[10, 35], [10, 37], [10], [25, 60]]


@pytest.mark.parametrize(("mode", "accepted"), [
    (COMMON, [[10, 35], [10], [10], [60]]),
    (PER_DETECTOR, SAME_UI_CLICKS),
])
def test_clicks_at_the_same_ui(mode, accepted):
    n, W = 9 + ClickFrontEnd.latency, 8
    samples = single_clicks(n, W, SAME_UI_CLICKS)
    out = run_both(frontend(4, **W8), samples, dead_time=20, dead_mode=mode)
    for k in range(4):
        assert accepted_times(out, k) == accepted[k], k
        assert out.dead_discards[-1, k] == len(SAME_UI_CLICKS[k]) - len(accepted[k]), k
    # UI 10 is UI 2 of word 1: symbol 2, ui 2, shown in cycle 1 + latency on all three
    # channels.
    for k in range(3):
        assert hits_on(out, k)[0] == (1 + ClickFrontEnd.latency, 10, 2, 2)
    assert_idle_slots_zero(out)


def test_dead_time_over_many_cycles():
    """D = 37 W + 5 = 301 UIs against regular click trains (per detector): a click at
    exactly t_a + D is accepted, one at t_a + D - 1 is not. The dead time set in cycle 0
    acts from cycle 1, so the trains start in word 1."""
    W = 8
    D = 37 * W + 5
    last = 3150                   # word 393: counted from cycle 393 + discard_latency
    n = last // W + ClickFrontEnd.discard_latency + 1
    trains = [np.arange(W + 5, last, 43),         # 7 * 43 = D: every 7th click at t_a + D
              np.arange(W + 7, last, D - 1),      # every other click at t_a + D - 1
              np.arange(W, last, 2)]              # an edge every other UI, from word 1
    samples = single_clicks(n, W, trains)
    out = run_both(frontend(3, **W8), samples, dead_time=D, dead_mode=PER_DETECTOR)
    accepted = [trains[0][::7], trains[1][::2], np.arange(W, last, D + 1)]
    for k in range(3):
        assert accepted_times(out, k) == accepted[k].tolist(), k
        assert out.clicks[-1, k] == len(trains[k])
        assert out.dead_discards[-1, k] == len(trains[k]) - len(accepted[k])
    assert [len(t) for t in trains] == [73, 11, 1571]
    assert out.dead_discards[-1].tolist() == [73 - 11, 11 - 6, 1571 - 11]


# D = 3 W = 24 UIs: accepted sets in time order over both channels (common) or per channel.
MODE_CLICKS = [[10, 40, 70], [20, 45, 64, 95]]


@pytest.mark.parametrize(("mode", "accepted"), [
    # 10 blanks all to 33; 40 to 63; 64 (= 40 + D) to 87; 95.
    (COMMON, [[10, 40], [64, 95]]),
    # channel 1: 45 = 20 + 25 accepted, 64 = 45 + 19 dead.
    (PER_DETECTOR, [[10, 40, 70], [20, 45, 95]]),
])
def test_common_and_per_detector_dead_time(mode, accepted):
    n, W = 13 + ClickFrontEnd.latency, 8
    samples = single_clicks(n, W, MODE_CLICKS)
    out = run_both(frontend(2, **W8), samples, dead_time=3 * W, dead_mode=mode)
    for k in range(2):
        assert accepted_times(out, k) == accepted[k], k
        assert out.dead_discards[-1, k] == len(MODE_CLICKS[k]) - len(accepted[k]), k


def test_switch_to_common_mode_blanks_every_channel_for_one_dead_time():
    """D = 20, W = 8. Per detector, channel 0 accepts 10 (dead to 29) while channel 1 is
    alive. The switch to COMMON in word 3 (UIs 24..31) starts one interval of D UIs from UI
    24 on both channels: 26 and 40 on channel 1 are lost (26 would have been accepted per
    detector), 44 on channel 0 is accepted and blanks both to 63; 50 is lost, 64 accepted.
    Back to per detector at word 9: channel 0 keeps the common interval of 64 (to 83)."""
    n, W = 14 + ClickFrontEnd.latency, 8
    clicks = [[10, 44, 80, 84], [26, 40, 50, 64]]
    samples = single_clicks(n, W, clicks)
    mode = np.full(n, PER_DETECTOR)
    mode[3:9] = COMMON
    out = run_both(frontend(2, **W8), samples, dead_time=20, dead_mode=mode)
    assert accepted_times(out, 0) == [10, 44, 84]
    assert accepted_times(out, 1) == [64]
    assert out.dead_discards[-1].tolist() == [1, 3]


@pytest.mark.parametrize("extra", [0, 1])
def test_burst_of_one_click_per_channel_per_cycle(extra):
    """L = 16, S = 2, 4 channels, a click per channel in every word for 3,000 cycles. With
    D = W every click is accepted; with D = W + 1 every other one."""
    n, lanes, S = 3_000, 16, 2
    W = lanes * S
    uis = [0, 9, 22, 31]
    times = [np.arange(n) * W + u for u in uis]
    samples = single_clicks(n, W, times)
    out = run_both(frontend(4, lanes, S), samples, dead_time=W + extra,
                   dead_mode=PER_DETECTOR)
    lat = ClickFrontEnd.latency
    # The words whose click is accepted: the dead time set in cycle 0 acts from word 1, so
    # word 0 is under the reset value D = W.
    words = np.concatenate(([0], np.arange(1, n - lat)[::1 + extra]))
    assert (out.clicks[-1] == n - lat).all()
    # dead_discards counts a word a cycle after clicks does.
    counted = n - ClickFrontEnd.discard_latency
    assert (out.dead_discards[-1] == counted - (words < counted).sum()).all()
    assert out.dead_discards[-1, 0] == (0 if extra == 0 else (counted - 1) // 2)
    for k, u in enumerate(uis):
        assert out.valid[:, k].sum() == len(words)
        assert out.valid[words + lat, k].all()
        assert (out.time[words + lat, k] == words * W + u).all()
        assert (out.symbol[words + lat, k] == words * lanes + u // S).all()
        assert (out.ui[words + lat, k] == u % S).all()


def test_symbol_index_wraps():
    """``epoch_load`` with 2**64 - 3: symbols of the hits are modulo 2**64 (also within a
    word, lane 1 of the word at 2**64 - 1); time and ``ui`` are unaffected."""
    n, W = 5 + ClickFrontEnd.latency, 8
    top = 1 << 64
    epoch_load = np.zeros(n, bool)
    epoch_load[0] = True                          # word 1 starts at symbol 2**64 - 3
    epoch = np.full(n, top - 3, np.uint64)
    samples = single_clicks(n, W, [[1, 9, 17, 29], [12, 22, 32]])
    out = run_both(frontend(2, **W8), samples, epoch_load=epoch_load, epoch=epoch,
                   dead_mode=PER_DETECTOR)
    # word symbols: 0, 2**64 - 3, 2**64 - 1, 1, 3; symbol = word's + u // 4, ui = u % 4
    assert [h[1:] for h in hits_on(out, 0)] == [
        (1, 0, 1), (9, top - 3, 1), (17, top - 1, 1), (29, 2, 1)]
    assert [h[1:] for h in hits_on(out, 1)] == [(12, top - 2, 0), (22, 0, 2), (32, 3, 0)]


@pytest.mark.parametrize("start", [(1 << 32) - 7, (1 << 32) - 4, (1 << 32) - 1, (1 << 64) - 5,
                                   (1 << 33) - 2])
def test_symbol_counter_carries_between_its_halves(start):
    """The symbol counter counts in two 32-bit halves: loaded just below a carry out of the
    lower half (at, and off, multiples of L = 2 from it), the words go on as one 64-bit count,
    RTL against model, with a second load landing in the carry window too."""
    n, W, L = 12 + ClickFrontEnd.latency, 8, 2
    epoch_load = np.zeros(n, bool)
    epoch_load[[0, 6]] = True                     # words 1 and 7 start at the epochs
    epoch = np.full(n, start, np.uint64)
    epoch[6] = (1 << 32) - 2 * L                  # word 8 is the last before a carry
    samples = single_clicks(n, W, [np.arange(n) * W + 1])     # a click in every word
    out = run_both(frontend(1, **W8), samples, epoch_load=epoch_load, epoch=epoch,
                   dead_mode=PER_DETECTOR)
    words = [0] + [(start + L * j) % (1 << 64) for j in range(6)] \
        + [(1 << 32) - 2 * L + L * j for j in range(n - 7)]
    got = [h[2] for h in hits_on(out, 0)]
    assert got == words[:len(got)] and len(got) == n - ClickFrontEnd.latency


def test_reset_mid_stream():
    """A reset restarts time, the symbol counter, the counters, the dead intervals and the
    previous UI: after it the gateware is the model run from the reset."""
    W, F = 8, gate_frame_cycles(8)
    r = F + 72                                    # reset high in cycle r: cycle r + 1 is 0
    n = r + 1 + F + 12                            # the gates on before and after the reset
    a = (r + 1) * W                               # UI 0 after the reset
    rng = np.random.default_rng(0xF7)
    samples = pulse_words(n, W, [
        [(a - 37, a - 36),   # accepted, dead to a + 2 (UI 2 of word 0 after the reset)
         (a - 10, a + 3)],   # high into word 0 after the reset: an edge at its UI 0
        [(a - 15, a - 14),   # accepted, dead to a + 24
         (a + 11, a + 12)],  # UI 3 of word 1 after the reset: accepted
        [],
    ])
    samples[:, 2] = click_words(poisson_clicks(rng, n, W, 0.03), 2, n, W)[:, 0]
    settings = {
        "epoch_load": one_per_cycle(n, [(10, 1), (11, 0)]),
        "epoch": np.full(n, 1000, np.uint64),
        "dead_time": 5 * W, "dead_mode": PER_DETECTOR,
        "gate_enable": [1, 1, 0], "gate_period": [3, 1, 1], "gate_offset": [1, 0, 0],
        "gate_width": [4, 1, 2],
    }
    dut = ClickFrontEnd(**frontend(3, **W8))
    rtl = run_rtl(dut, samples, reset_at=r, **settings)
    model = ClickFrontEndModel(**frontend(3, **W8))

    def cycles(span):
        """The per-cycle settings of the cycles in ``span``; the others as they are."""
        return {name: value[span] if np.ndim(value) and len(value) == n else value
                for name, value in settings.items()}

    before, after = slice(0, r + 1), slice(r + 1, n)
    compare({name: value[before] for name, value in rtl.items()},
            model.run(samples[before], **cycles(before)), "before the reset: ")
    after_rtl = {name: value[after] for name, value in rtl.items()}
    compare(after_rtl, model.run(samples[after], **cycles(after)), "after the reset: ")
    after = ClickFrontEndOutput(**after_rtl)
    assert rtl["clicks"][r].any()                 # counted before the reset
    lat = ClickFrontEnd.latency
    assert not after.clicks[:lat].any() and not after.valid[:lat].any()
    assert hits_on(after, 0)[0] == (lat, 0, 0, 0)
    assert hits_on(after, 1)[0] == (1 + lat, 11, 2, 3)
    assert rtl["gates"][r].any()
    assert not after.gates[:F].any() and after.gates[F:].any()


def test_refused_dead_time():
    """``dead_time`` below W, above ``max_dead_time`` or 0 is refused while present: the
    last accepted value (W from reset) stays in use, seen in the spacing of accepted
    clicks of a train of one click every 10 UIs."""
    n, W = 100 + ClickFrontEnd.discard_latency, 8   # word 99 is counted by the last cycle
    dead_time = one_per_cycle(n, [(0, 7), (20, 30), (40, 7), (60, 101), (80, 0), (100, 30)])
    train = np.arange(3, 800, 10)
    samples = single_clicks(n, W, [train])
    out = run_both(frontend(1, **W8, max_dead_time=100), samples, dead_time=dead_time,
                   dead_mode=PER_DETECTOR)
    # words 0..20 (UIs < 168): D = W, every click (the 30 set in cycle 20 acts from word
    # 21); then D = 30 to the end.
    accepted = train[train < 168].tolist() + list(range(173, 800, 30))
    assert accepted_times(out, 0) == accepted
    assert out.dead_discards[-1, 0] == len(train) - len(accepted) == 42
    error = np.zeros(n, bool)
    error[1:21] = error[41:101] = True                  # a cycle late
    assert out.settings_error.astype(bool).tolist() == error.tolist()


def test_refused_gate_settings():
    """Refused gate triples (period 0 or above the maximum, width 0 or above the period,
    offset of a period) leave the last accepted triple in use, as a whole."""
    n_frames, W = 8, 8
    params = frontend(2, **W8, max_gate_period=8)
    F = gate_frame_cycles(W)
    n = n_frames * F
    # channel 0's (period, offset, width) through frames 0..7, each held for the frame
    triples = [(2, 1, 3), (0, 1, 3), (9, 1, 3), (3, 0, 0), (2, 1, 9), (2, 8, 3),
               (3, 2, 5), (3, 2, 5)]
    gates = {name: np.repeat([[t[i], value] for t in triples], F, axis=0)
             for i, (name, value) in enumerate((("gate_period", 1), ("gate_offset", 0),
                                                 ("gate_width", 2)))}
    samples = np.zeros((n, 2, W), np.uint8)
    out = run_both(params, samples, gate_enable=1, **gates)
    error = np.repeat([t in triples[1:6] for t in triples], F)
    error[:F] = False
    error = np.r_[False, error[:-1]]                    # a cycle late
    assert out.settings_error.astype(bool).tolist() == error.tolist()
    assert not out.gates[:F].any() and not out.gate_starts[:F].any()
    # frames 1..6 show (2, 1, 3): P = 8, UIs 1..3 of every word, one start.
    assert (out.gates[F:7 * F, 0] == ui_word(W, 1, 2, 3)).all()
    assert (out.gate_starts[F:7 * F, 0] == 1).all()
    # frame 7 shows (3, 2, 5): P = 12, t mod 12 in 2..6; word 7F starts at t mod 12 = 4.
    words = [ui_word(W, 0, 1, 2), ui_word(W, 2, 3, 4, 5, 6), ui_word(W, 6, 7)]
    for c in range(7 * F, n):
        assert out.gates[c, 0].tolist() == words[(c - 7 * F) % 3].tolist(), c
        assert out.gate_starts[c, 0] == [0, 1, 1][(c - 7 * F) % 3], c
    # channel 1, always (1, 0, 2): P = 4, UIs 0, 1, 4, 5; two starts.
    assert (out.gates[F:, 1] == ui_word(W, 0, 1, 4, 5)).all()
    assert (out.gate_starts[F:, 1] == 2).all()


BAD_PARAMETERS = [
    ({"channels": 0}, ValueError, r"Channel count must be at least 1, not 0"),
    ({"channels": 17}, ValueError, r"Channel count must be at most 16, not 17"),
    ({"channels": 2.0}, TypeError, r"Channel count must be an integer, not 2\.0"),
    ({"channels": True}, TypeError, r"Channel count must be an integer, not True"),
    ({"lanes": 0}, ValueError, r"Lane count must be at least 1, not 0"),
    ({"lanes": "2"}, TypeError, r"Lane count must be an integer, not '2'"),
    ({"uis_per_symbol": 3}, ValueError, r"UIs per symbol must be even, not 3"),
    ({"uis_per_symbol": 258}, ValueError, r"UIs per symbol must be at most 256, not 258"),
    ({"max_dead_time": 7}, ValueError,
     r"Maximum dead time \(at least one word of 8 UIs\) must be at least 8, not 7"),
    ({"max_dead_time": 100.0}, TypeError, r"Maximum dead time .* integer, not 100\.0"),
    ({"max_gate_period": 0}, ValueError, r"Maximum gate period must be at least 1, not 0"),
    ({"max_gate_period": 65537}, ValueError, r"Maximum gate period .* not 65537"),
]


@pytest.mark.parametrize("cls", [ClickFrontEnd, ClickFrontEndModel])
@pytest.mark.parametrize(("bad", "error", "match"), BAD_PARAMETERS)
def test_bad_parameters(cls, bad, error, match):
    with pytest.raises(error, match=match):
        cls(**{**frontend(2, **W8), **bad})


BAD_MODEL_INPUTS = [
    ({"samples": np.zeros((4, 2, 9))}, r"samples must have shape \(N, 2, 8\), not \(4, 2, 9\)"),
    ({"samples": np.zeros((4, 16))}, r"samples must have shape \(N, 2, 8\), not \(4, 16\)"),
    ({"samples": np.full((4, 2, 8), 2)}, r"samples must hold 0 or 1, not 2\.\.2"),
    ({"samples": np.full((4, 2, 8), 0.5)}, r"samples must hold integers, not float64"),
    ({"dead_time": [8, 9, 10]}, r"dead_time must be a scalar or 4 values, not of shape \(3,\)"),
    ({"dead_time": 128}, r"dead_time must fit its 7-bit port, not 128"),
    ({"dead_time": 8.5}, r"dead_time must hold integers, not float64"),
    ({"gate_width": [1, 2, 3]},
     r"gate_width must be a scalar, 2 values or shape \(4, 2\), not of shape \(3,\)"),
    ({"epoch": [1, 2, 3]}, r"epoch must have shape \(4,\), not \(3,\)"),
]


@pytest.mark.parametrize(("bad", "match"), BAD_MODEL_INPUTS)
def test_model_refuses_bad_inputs(bad, match):
    model = ClickFrontEndModel(**frontend(2, **W8, max_dead_time=100))
    inputs = {"samples": np.zeros((4, 2, 8), np.uint8), **bad}
    with pytest.raises(ValueError, match=match):
        model.run(**inputs)


def test_gate_words():
    """L = 4, S = 4 (W = 16): channel 0 with period 3 symbols (P = 12 UIs), offset 5, width
    2, disabled from the second frame; channel 1 free-running; channel 2 with a period
    longer than a word (5 symbols, offset 0, width 7). Clicks outside the gates still
    count."""
    lanes, S, W = 4, 4, 16
    params = frontend(3, lanes, S)
    dut = ClickFrontEnd(**params)
    F = gate_frame_cycles(W)
    assert dut.gate_frame == ClickFrontEndModel(**params).gate_frame == F == 128
    n = 2 * F + 8
    enable = np.array([[1, 0, 1]] * n)
    enable[F:, 0] = 0                             # sampled in cycle F: off from cycle 2F
    # clicks in ungated UIs of the first frames: words 130 (t mod 12 = 4), 129, 5
    clicks = [[130 * W], [40 * W + 3], [129 * W + 10, 5 * W + 1]]
    samples = single_clicks(n, W, clicks)
    out = run_both(params, samples, dut, gate_enable=enable, gate_period=[3, 1, 5],
                   gate_offset=[5, 0, 0], gate_width=[2, 2, 7], dead_mode=PER_DETECTOR)
    assert not out.gates[:F].any() and not out.gate_starts[:F].any()
    # channel 0: word F starts at t = 2048, t mod 12 = 8; gated where t mod 12 is 5 or 6.
    short = [(ui_word(W, 9, 10), 1), (ui_word(W, 5, 6), 1), (ui_word(W, 1, 2, 13, 14), 2)]
    # channel 2: t mod 20 = 8 at word F; gated where t mod 20 < 7.
    long = [(ui_word(W, 12, 13, 14, 15), 1), (ui_word(W, 0, 1, 2), 0),
            (ui_word(W, *range(7)), 1), (ui_word(W, *range(4, 11)), 1),
            (ui_word(W, *range(8, 15)), 1)]
    for c in range(F, n):
        if c < 2 * F:
            word, starts = short[(c - F) % 3]
            assert out.gates[c, 0].tolist() == word.tolist(), c
            assert out.gate_starts[c, 0] == starts, c
        word, starts = long[(c - F) % 5]
        assert out.gates[c, 2].tolist() == word.tolist(), c
        assert out.gate_starts[c, 2] == starts, c
    assert not out.gates[2 * F:, 0].any() and not out.gate_starts[2 * F:, 0].any()
    assert not out.gates[:, 1].any() and not out.gate_starts[:, 1].any()
    for k in range(3):
        assert accepted_times(out, k) == sorted(clicks[k]), k


def test_converts_to_verilog():
    from amaranth.back import verilog

    text = verilog.convert(ClickFrontEnd(**frontend(4, 16, 2)))
    assert "module" in text and "settings_error" in text
