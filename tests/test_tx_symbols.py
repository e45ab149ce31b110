"""Tests of the symbol source: gateware against its model, training patterns, bad settings."""

import numpy as np
import pytest
from amaranth.hdl import Value
from timebin.gateware.tx.layouts import Basis
from timebin.gateware.tx.symbols import (
    Protocol,
    SymbolSource,
    TrainingMode,
    probability_settings,
)
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.tx.symbols import SymbolSourceModel, lane_chunks, prbs_sequence
from timebin.sim.words import bits_to_ints, unpack_symbol_words


def run_rtl(dut, enable, entropy_valid, entropy_bits, healthy, blank, settings):
    """Simulate from reset; ``settings`` are set in cycle 0 and held. Returns a dict of
    per-cycle outputs named as :class:`SymbolSourceOutput` fields."""
    n = len(enable)
    width = dut.entropy_width
    payloads = [b | (int(h) << width) for b, h in zip(bits_to_ints(entropy_bits), healthy,
                                                       strict=True)]
    sym_payload = Value.cast(dut.symbols.payload)
    ent_payload = Value.cast(dut.entropy.payload)
    rec = {"valid": [], "payload": [], "entropy_ready": [], "underflow": [], "blanked": [],
           "settings_error": []}

    async def testbench(ctx):
        for name, value in settings.items():
            ctx.set(getattr(dut, name), value)
        for c in range(n):
            ctx.set(dut.enable, int(enable[c]))
            ctx.set(dut.blank, int(blank[c]))
            ctx.set(dut.entropy.valid, int(entropy_valid[c]))
            ctx.set(ent_payload, payloads[c])
            rec["valid"].append(ctx.get(dut.symbols.valid))
            rec["payload"].append(ctx.get(sym_payload))
            rec["entropy_ready"].append(ctx.get(dut.entropy.ready))
            rec["underflow"].append(ctx.get(dut.underflow))
            rec["blanked"].append(ctx.get(dut.blanked))
            rec["settings_error"].append(ctx.get(dut.settings_error))
            await ctx.tick()

    simulate(dut, testbench)
    index, fields = unpack_symbol_words(dut.lanes, rec.pop("payload"))
    out = {name: np.array(values) for name, values in rec.items()}
    out.update(index=index, sym_valid=fields.pop("valid"), **fields)
    return out


def random_inputs(rng, n, width, mostly=0.9):
    enable = rng.random(n) < mostly
    entropy_valid = rng.random(n) < mostly
    healthy = rng.random(n) < mostly
    blank = rng.random(n) < 0.03
    bits = rng.integers(0, 2, (n, width), dtype=np.uint8)
    return enable, entropy_valid, bits, healthy, blank


def compare(dut, model, inputs, settings, **model_settings):
    enable, entropy_valid, bits, healthy, blank = inputs
    got = run_rtl(dut, enable, entropy_valid, bits, healthy, blank, settings)
    chunks = lane_chunks(bits, dut.lanes, model.bits_per_lane)
    want = model.run(enable, entropy_valid, chunks, healthy, blank, **model_settings)
    for name, value in want._asdict().items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    return want


CASES = [  # lanes, prob_bits, p_z, intensity probabilities
    (16, 12, 0.9, (0.7, 0.3)),
    (4, 8, 0.5, (0.5, 0.25, 0.125, 0.125)),
    (3, 5, 0.75, (1.0,)),
]


@pytest.mark.parametrize(("lanes", "prob_bits", "p_z", "probs"), CASES)
@pytest.mark.parametrize("protocol", list(Protocol))
def test_data_mode_matches_model(lanes, prob_bits, p_z, probs, protocol):
    seed = lanes * 1000 + prob_bits + 7 * protocol.value
    rng = np.random.default_rng(seed)
    dut = SymbolSource(lanes=lanes, prob_bits=prob_bits, p_z=p_z, intensity_probs=probs)
    model = SymbolSourceModel(lanes, prob_bits, p_z, probs)
    n = 10_000 if (lanes == 16 and protocol == Protocol.FOUR_STATE) else 2_000
    inputs = random_inputs(rng, n, dut.entropy_width)
    want = compare(dut, model, inputs, {"protocol": protocol}, protocol=protocol)
    assert want.sym_valid.any() and want.dark.any() and want.underflow[-1] > 0
    if protocol == Protocol.THREE_STATE:
        assert not (want.bit[want.basis == 1]).any()


def test_programmed_settings_match_model():
    rng = np.random.default_rng(99)
    dut = SymbolSource(lanes=5, prob_bits=6)
    model = SymbolSourceModel(5, 6)
    p_z, thresholds = probability_settings(6, 0.3, (0.1, 0.2, 0.3, 0.4))
    inputs = random_inputs(rng, 3_000, dut.entropy_width)
    settings = {"p_z": p_z, "thresholds": thresholds, "protocol": Protocol.FOUR_STATE}
    want = compare(dut, model, inputs, settings, p_z=p_z, thresholds=thresholds,
                   protocol=Protocol.FOUR_STATE)
    assert set(np.unique(want.intensity[want.sym_valid == 1])) == {0, 1, 2, 3}


@pytest.mark.parametrize("mode", [m for m in TrainingMode if m != TrainingMode.DATA])
@pytest.mark.parametrize("lanes", [3, 16])
def test_training_matches_model(mode, lanes):
    rng = np.random.default_rng(lanes + 11 * mode.value)
    dut = SymbolSource(lanes=lanes)
    model = SymbolSourceModel(lanes)
    inputs = random_inputs(rng, 600, dut.entropy_width)
    settings = {"training": mode, "training_intensity": 2}
    want = compare(dut, model, inputs, settings, training=mode, training_intensity=2)
    lit = want.valid[:, None] & (want.dark == 0)
    assert not want.sym_valid.any() and not want.entropy_ready.any()
    assert (want.basis[lit] == 0).all() and (want.intensity[lit] == 2).all()
    # The lit symbols carry the pattern, bit k of the stream being that of symbol index k.
    bits = want.bit[lit]
    number = (want.index[:, None] + np.arange(lanes, dtype=np.uint64))[lit]
    if mode == TrainingMode.ALL_EARLY:
        assert not bits.any()
    elif mode == TrainingMode.ALL_LATE:
        assert bits.all()
    elif mode == TrainingMode.ALTERNATING:
        np.testing.assert_array_equal(bits, number % 2)
    else:
        seq = prbs_sequence(mode.name.lower(), int(number.max()) + 1)
        np.testing.assert_array_equal(bits, seq[number.astype(np.int64)])


def test_prbs_sequences():
    # PRBS7 has period 127 with 64 ones; PRBS31 starts with the all-ones seed shifted.
    seq = prbs_sequence("prbs7", 127 * 3)
    np.testing.assert_array_equal(seq[:127], seq[127:254])
    assert seq[:127].sum() == 64
    assert all(not np.array_equal(np.roll(seq[:127], k), seq[:127]) for k in range(1, 127))
    seq31 = prbs_sequence("prbs31", 100_000)
    assert abs(seq31.mean() - 0.5) < 0.01
    # Direct check of the recurrence against a bit-serial register.
    state, bits = (1 << 31) - 1, []
    for _ in range(200):
        b = ((state >> 30) ^ (state >> 27)) & 1
        bits.append(b)
        state = ((state << 1) | b) & ((1 << 31) - 1)
    np.testing.assert_array_equal(seq31[:200], bits)
    with pytest.raises(ValueError, match="prbs9"):
        prbs_sequence("prbs9", 10)


@pytest.mark.parametrize(("setting", "value"), [
    ("p_z", 4097),                               # above one (2**12)
    ("thresholds", [3000, 2000, 4096]),          # not non-decreasing
    ("thresholds", [100, 200, 5000]),            # above one
])
def test_refused_settings(setting, value):
    rng = np.random.default_rng(3)
    dut = SymbolSource(lanes=2)
    model = SymbolSourceModel(2)
    inputs = random_inputs(rng, 400, dut.entropy_width)
    want = compare(dut, model, inputs, {setting: value}, **{setting: value})
    assert not want.settings_error[0] and want.settings_error[1:].all()    # registered
    # The refused value is not in use: the defaults are, so draws match a default model.
    default = SymbolSourceModel(2).run(*inputs[:2], lane_chunks(inputs[2], 2, 25), *inputs[3:])
    np.testing.assert_array_equal(want.intensity, default.intensity)
    np.testing.assert_array_equal(want.basis, default.basis)


def test_refused_setting_keeps_last_accepted():
    """A good value, then a bad one: the source keeps the good one, not the reset default."""
    dut = SymbolSource(lanes=1, prob_bits=4, p_z=0.5)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.enable, 1)
        ctx.set(dut.entropy.valid, 1)
        ctx.set(dut.entropy.payload.healthy, 1)
        ctx.set(dut.entropy.payload.bits, 0b0_0_1110)       # r_basis = 14
        ctx.set(dut.p_z, 15)                                  # accepted: 14 < 15 -> Z
        await ctx.tick()
        ctx.set(dut.p_z, 17)                                  # refused (> 16)
        for _ in range(SymbolSource.latency + 3):
            await ctx.tick()
            if ctx.get(dut.symbols.valid):
                seen.append((ctx.get(dut.symbols.payload.symbols[0].basis),
                             ctx.get(dut.settings_error)))

    simulate(dut, testbench)
    # The words out were drawn from the entropy of cycles 0, 1, ...: the first two with the
    # reset p_z (8: 14 -> X); the accepted 15 acts on the entropy from cycle 2 (compared in
    # cycle 4 against the lane copy) and stays when 17 is refused.
    assert [Basis(basis) for basis, _ in seen] == [Basis.X] * 2 + [Basis.Z] * 3
    assert all(error for _, error in seen)


def test_probability_settings():
    assert probability_settings(12, 0.9, (0.7, 0.3)) == (3686, [2867, 4096, 4096])
    assert probability_settings(4, 1.0, (0.25, 0.25, 0.25, 0.25)) == (16, [4, 8, 12])
    with pytest.raises(ValueError, match="1.5"):
        probability_settings(12, 1.5, (1.0,))
    with pytest.raises(ValueError, match="0.7, 0.2"):
        probability_settings(12, 0.5, (0.7, 0.2))
    with pytest.raises(ValueError, match="not 5"):
        probability_settings(12, 0.5, (0.2,) * 5)


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"lanes": 0}, ValueError, "Lane count must be at least 1, not 0"),
    ({"lanes": 2.5}, TypeError, "Lane count must be an integer, not 2.5"),
    ({"lanes": "4"}, TypeError, "'4'"),
    ({"lanes": 4, "prob_bits": 0}, ValueError, "not 0"),
    ({"lanes": 4, "p_z": -0.1}, ValueError, "-0.1"),
])
def test_bad_construction(kwargs, error, text):
    with pytest.raises(error, match=text):
        SymbolSource(**kwargs)
    with pytest.raises(error, match=text):
        SymbolSourceModel(**kwargs)
