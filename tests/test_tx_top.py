"""Tests of Alice's transmitter top: gateware against the model in Amaranth simulation, the
statistics of the symbols, the QRNG health alarm and the symbol log."""

import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from scipy import stats
from timebin.gateware.tx.driver import TimeBinDriver
from timebin.gateware.tx.entropy import EntropySelect
from timebin.gateware.tx.symbols import Protocol, SymbolSource, TrainingMode, probability_settings
from timebin.gateware.tx.top import Transmitter
from timebin.sim.tx.entropy import KEYSTREAM_FIRST_CYCLE
from timebin.sim.tx.rtl import compare_transmitter, run_transmitter
from timebin.sim.tx.top import TransmitterModel

KEY, IV = 0x0F62B5085BAE0154A7FA, 0x288FF65DC42B92F960C7


def both(params, n, settings, **inputs):
    """Run the gateware and the model on the same inputs; fail on the first difference."""
    dut = Transmitter(**params)
    got = run_transmitter(dut, n, settings, **inputs)
    want = TransmitterModel(**params).run(n, settings, **inputs)
    compare_transmitter(got, want)
    return want


def random_inputs(rng, n, *, log_ready=0.7):
    return {"enable": rng.random(n) < 0.95, "log_ready": rng.random(n) < log_ready}


@pytest.mark.parametrize(("params", "settings"), [
    ({"lanes": 16, "uis_per_symbol": 2},
     {"key": KEY, "iv": IV, "im_idle": 3, "delay_carver": 1, "delay_im": 3, "delay_pm": 0}),
    ({"lanes": 4, "uis_per_symbol": 4, "pm_bits": 2, "max_delay": 40, "dac_bits": 10},
     {"key": 0x1234, "iv": 0x5678, "protocol": Protocol.FOUR_STATE, "pulse_offset": 1,
      "pulse_width": 1, "im_idle": 17, "delay_carver": 37, "delay_im": 5, "delay_pm": 16,
      "pm_levels": [0, 0, 1, 2, 3, 0, 1, 3]}),
    # The iCEBreaker's reduced Alice: 32-bit Trivium cores, a 2-word log FIFO in RAM.
    ({"lanes": 1, "uis_per_symbol": 2, "dac_bits": 2, "health_window": 512, "log_depth": 2,
      "trivium_bits": 32, "log_ram": True},
     {"key": KEY, "iv": IV, "im_idle": 1, "delay_carver": 2, "delay_im": 1, "delay_pm": 0}),
])
def test_rtl_matches_model(params, settings):
    """At least 10^4 cycles, with enable gaps and a log reader that stalls (drops happen)."""
    n = 10_000
    rng = np.random.default_rng(params["lanes"])
    want = both(params, n, settings, **random_inputs(rng, n, log_ready=0.6))
    assert want.carver.any() and want.log_valid.sum() > n // 2
    assert want.log_dropped[-1] > 0 and want.underflow[-1] > 0   # warm-up underflows


def test_training_through_top():
    params = {"lanes": 3, "uis_per_symbol": 4}
    n = 400
    for mode in (TrainingMode.ALTERNATING, TrainingMode.PRBS31):
        want = both(params, n, {"training": mode, "training_intensity": 1},
                    **random_inputs(np.random.default_rng(mode.value), n))
        assert want.underflow[-1] == 0 and not want.symbols.sym_valid.any()


def qrng_inputs(rng, n, width, stuck_at=(), clear_at=()):
    bits = rng.integers(0, 2, (n, width), dtype=np.uint8)
    for start, length in stuck_at:
        bits[start:start + length, :] = 1
    clear = np.zeros(n, bool)
    clear[list(clear_at)] = True
    return {"qrng_valid": rng.random(n) < 0.9, "qrng_bits": bits, "alarm_clear": clear}


def test_qrng_alarm_blanks_until_cleared():
    """A stuck QRNG trips the alarm in the cycle of the stuck word; from then on, until the
    clear, no pulse leaves and every logged symbol is dark and not valid for key."""
    params = {"lanes": 2, "uis_per_symbol": 4}
    n = 2000
    rng = np.random.default_rng(7)
    width = TransmitterModel(**params).entropy.width
    inputs = qrng_inputs(rng, n, width, stuck_at=[(500, 3)], clear_at=[900])
    settings = {"source": EntropySelect.QRNG}
    want = both(params, n, settings, enable=True, log_ready=True, **inputs)

    # RCT cutoff 41 (alpha 2**-40): a stuck word of 50 samples trips it in its own cycle.
    first = int(np.argmax(want.alarm))
    stuck_taken = np.flatnonzero(inputs["qrng_valid"][500:503])
    assert first == 500 + stuck_taken[0]
    cleared = int(np.flatnonzero(~want.alarm[first:])[0]) + first
    assert cleared == 900
    # The symbols of the alarm cycles are dark and not key, and their pulses never leave.
    sym = want.symbols
    to_symbols = SymbolSource.latency
    alarm_words = slice(first + to_symbols, cleared + to_symbols)
    assert sym.dark[alarm_words].all() and not sym.sym_valid[alarm_words].any()
    latency = to_symbols + TimeBinDriver.latency         # driver at zero delay
    assert not want.carver[first + latency:cleared + latency].any()
    assert want.carver[cleared + latency:].any()
    assert want.blanked[-1] == cleared - first


@pytest.mark.parametrize("bias", [0.0, 0.95])
def test_health_trips_within_cutoff(bias):
    """Stuck (bias 0: all ones) trips the RCT after 41 equal samples; a heavily biased source
    (P(1) = 0.95) trips the APT within one window of 1024 samples (cutoff 625)."""
    params = {"lanes": 1, "uis_per_symbol": 2, "prob_bits": 4}        # 9 samples a cycle
    model = TransmitterModel(**params)
    width = model.entropy.width
    n = 400
    rng = np.random.default_rng(3)
    if bias == 0.0:
        bits = np.ones((n, width), np.uint8)
    else:
        bits = (rng.random((n, width)) < bias).astype(np.uint8)
    want = model.run(n, {"source": EntropySelect.QRNG}, qrng_valid=True, qrng_bits=bits)
    first = int(np.argmax(want.alarm))
    assert want.alarm[first:].all()
    if bias == 0.0:
        # The first word is taken in cycle 1 (the top registers `enable`).
        assert first == 1 + (41 - 1) // width
    else:
        assert first * width < 1024
    latency = SymbolSource.latency + TimeBinDriver.latency
    assert not want.carver[first + latency:].any()
    # The gateware agrees.
    got = run_transmitter(Transmitter(**params), n, {"source": EntropySelect.QRNG},
                          qrng_valid=True, qrng_bits=bits)
    compare_transmitter(got, want)


def test_symbol_statistics():
    """10^6 symbols: basis, bit and intensity frequencies within 5 sigma of the programmed
    values; lanes independent (chi-square on lane pairs of the 8 joint outcomes)."""
    lanes, prob_bits, p_z, probs = 8, 12, 0.85, (0.6, 0.3, 0.1)
    model = TransmitterModel(lanes=lanes, uis_per_symbol=2, prob_bits=prob_bits, p_z=p_z,
                             intensity_probs=probs)
    n = 1_000_000 // lanes + KEYSTREAM_FIRST_CYCLE + SymbolSource.latency
    want = model.run(n, {"key": KEY, "iv": IV, "protocol": Protocol.FOUR_STATE})
    sym = want.symbols
    ok = sym.sym_valid.astype(bool)
    count = ok.sum()
    assert count >= 1_000_000
    code, thresholds = probability_settings(prob_bits, p_z, probs)
    one = 1 << prob_bits

    def within(k, total, p, what):
        sigma = np.sqrt(total * p * (1 - p))
        assert abs(k - total * p) < 5 * sigma, f"{what}: {k} of {total}, expected p = {p}"

    within((sym.basis[ok] == 0).sum(), count, code / one, "P(Z)")
    within((sym.bit[ok] == 1).sum(), count, 0.5, "P(bit 1)")
    edges = [0, *thresholds[:len(probs) - 1], one]
    for k in range(len(probs)):
        within((sym.intensity[ok] == k).sum(), count, (edges[k + 1] - edges[k]) / one,
               f"P(intensity {k})")
    assert not (sym.intensity[ok] == 3).any()

    outcome = (sym.basis * 4 + sym.bit * 2 + (sym.intensity > 0)).astype(np.int64)
    rows = ok.all(axis=1)
    worst = 1.0
    for a in range(lanes):
        for b in range(a + 1, lanes):
            table = np.zeros((8, 8))
            np.add.at(table, (outcome[rows, a], outcome[rows, b]), 1)
            table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
            worst = min(worst, stats.chi2_contingency(table)[1])
    # 28 pairs: the smallest p-value of independent lanes is below 1e-4 with prob ~0.3%.
    assert worst > 1e-4


def test_three_state_never_sends_x_minus():
    model = TransmitterModel(lanes=4, uis_per_symbol=2, p_z=0.5)
    sym = model.run(5000, {"key": 9}).symbols
    ok = sym.sym_valid.astype(bool)
    assert (sym.basis[ok] == 1).any() and not sym.bit[ok & (sym.basis == 1)].any()


@pytest.mark.parametrize("settings", [
    {"p_z": (1 << 12) + 1},
    {"thresholds": [4000, 3000, 4096]},
    {"pulse_width": 0},
    {"delay_im": 9},                         # max_delay = 2 * S = 8
    {"rct_cutoff": 1},
    {"apt_cutoff": 1025},
])
def test_refused_settings_flagged(settings):
    """A bad register value raises settings_error (from the cycle after it appears: the flag
    is registered) and is not used (the default is)."""
    params = {"lanes": 2, "uis_per_symbol": 4}
    n = 60
    want = both(params, n, settings)
    assert not want.settings_error[0] and want.settings_error[1:].all()
    clean = TransmitterModel(**params).run(n, {})
    np.testing.assert_array_equal(want.carver, clean.carver)
    np.testing.assert_array_equal(want.im, clean.im)


def test_log_overflow_counted():
    params = {"lanes": 2, "uis_per_symbol": 2, "log_depth": 4}
    n = 50
    want = both(params, n, {}, enable=True, log_ready=False)
    # The top registers `enable`, so the first symbol word arrives in cycle 1 + latency;
    # the counter shows the drops of the cycles before the last: 44 words, four fit, the
    # rest are dropped and counted.
    words = n - 1 - SymbolSource.latency - 1
    assert want.log_dropped[-1] == words - 4
    model = TransmitterModel(**params)
    ready = np.zeros(n, bool)
    ready[30:] = True
    out = model.run(n, {}, log_ready=ready)
    taken = out.log_index[out.log_valid & ready]
    # The gap of dropped words shows in the indexes of the log.
    assert np.diff(taken.astype(np.int64)).max() > 2


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"lanes": 0, "uis_per_symbol": 2}, "Lane count must be at least 1, not 0"),
    ({"lanes": 1.5, "uis_per_symbol": 2}, "not 1.5"),
    ({"lanes": 2, "uis_per_symbol": 3}, "not 3"),
    ({"lanes": 2, "uis_per_symbol": 2, "max_delay": 10**6}, "not 1000000"),
    ({"lanes": 2, "uis_per_symbol": 2, "intensity_probs": (0.5, 0.6)}, r"0\.5, 0\.6"),
    ({"lanes": 2, "uis_per_symbol": 2, "log_depth": 1}, "not 1"),
])
def test_bad_construction(kwargs, text):
    with pytest.raises((TypeError, ValueError), match=text):
        Transmitter(**kwargs)
    if "log_depth" not in kwargs:
        with pytest.raises((TypeError, ValueError), match=text):
            TransmitterModel(**kwargs)


def test_keystream_words_in_order_while_enable_training_and_source_change():
    """The cores' clock enable is a register set a cycle ahead (``EntropySource.take_next``,
    from the top's registers of ``enable``, ``training`` and ``source``): with all three
    changing from cycle to cycle, QRNG words in between and a reseed, every keystream word
    the symbol source takes is the next of the keystream, none skipped or taken twice."""
    from timebin.sim.amaranth_helpers import simulate
    from timebin.sim.tx.entropy import csprng_bits
    from timebin.sim.words import bits_to_ints
    dut = Transmitter(lanes=2, uis_per_symbol=2)
    ent = dut.entropy_source
    n, reseed_at = 300, 150
    rng = np.random.default_rng(12)
    enable = rng.random(n) < 0.7
    training = np.where(rng.random(n) < 0.2, TrainingMode.ALTERNATING, TrainingMode.DATA)
    source = np.where((np.arange(n) // 13) % 3 == 2, EntropySelect.QRNG, EntropySelect.CSPRNG)
    taken = []

    async def testbench(ctx):
        ctx.set(dut.key, KEY)
        ctx.set(dut.iv, IV)
        for c in range(n):
            ctx.set(dut.enable, int(enable[c]))
            ctx.set(dut.training, training[c])
            ctx.set(dut.source, source[c])
            ctx.set(dut.reseed, c == reseed_at)
            ctx.set(dut.qrng.valid, 1)
            if (ctx.get(ent.entropy.valid) and ctx.get(ent.entropy.ready)
                    and ctx.get(ent.source) == EntropySelect.CSPRNG):
                taken.append((c, ctx.get(ent.entropy.payload.bits)))
            await ctx.tick()

    simulate(dut, testbench)
    expect = csprng_bits(KEY, IV, ent.width, n, ent.core_bits)
    words = bits_to_ints(expect)
    for first, last in ((0, reseed_at), (reseed_at + 1, n)):    # the load after `reseed`
        got = [word for c, word in taken if first <= c <= last]
        assert len(got) > 40, (first, len(got))
        assert got == words[:len(got)], first


@pytest.mark.parametrize("core_bits", [32, 48, 64])
def test_csprng_words_take_consecutive_keystream_bits(core_bits):
    """Word ``k`` of a core of ``B`` bits is keystream bits ``[B k, B k + B)`` (z_1 first)."""
    from timebin.sim.tx.entropy import csprng_bits
    from timebin.sim.tx.trivium import keystream_bytes
    n, width = 40, 2 * core_bits - 7                        # two cores, the second cut short
    got = csprng_bits(KEY, IV, width, n, core_bits)
    for c in range(2):
        raw = np.frombuffer(keystream_bytes(KEY, IV ^ c, n * core_bits // 8 + 8), np.uint8)
        stream = np.unpackbits(raw, bitorder="little")[:n * core_bits].reshape(n, core_bits)
        lo, hi = c * core_bits, min(width, (c + 1) * core_bits)
        assert np.array_equal(got[:, lo:hi], stream[:, :hi - lo])


def test_trivium_bits_in_params_only_when_not_default():
    with warnings.catch_warnings():                 # built for their parameters only
        warnings.simplefilter("ignore", UnusedElaboratable)
        default = Transmitter(lanes=1, uis_per_symbol=2)
        tx = Transmitter(lanes=1, uis_per_symbol=2, trivium_bits=32)
        assert "trivium_bits" not in default.params
        for obj in (default, tx, default.entropy_source, tx.entropy_source,
                    *default.entropy_source._health, *tx.entropy_source._health,
                    default.symbol_source, tx.symbol_source, default.driver, tx.driver):
            obj._MustUse__silence = True
    assert tx.params["trivium_bits"] == 32 and tx.entropy_source.core_bits == 32
    model = TransmitterModel(**tx.params)
    assert model.entropy.keystream_first_cycle == 2 + 1152 // 32


@pytest.mark.parametrize(("bits", "error", "match"), [
    (33, ValueError, "Trivium core width must divide 1152, not 33"),
    (128, ValueError, "Trivium core width must be at most 64"),
    (0, ValueError, "Trivium core width must be at least 1"),
    (32.0, TypeError, "32.0"),
])
def test_bad_trivium_bits_refused(bits, error, match):
    with pytest.raises(error, match=match):
        Transmitter(lanes=1, uis_per_symbol=2, trivium_bits=bits)
    with pytest.raises(error, match=match):
        TransmitterModel(lanes=1, uis_per_symbol=2, trivium_bits=bits)
