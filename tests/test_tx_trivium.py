"""Trivium: model and gateware against the eSTREAM test vectors, and against each other."""

import numpy as np
import pytest
from timebin.gateware.tx.trivium import Trivium
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.tx.trivium import key_from_bytes, keystream_bytes, trivium_words

# eSTREAM Trivium verified test vectors (80-bit IV), windows of 64 keystream bytes.
# Ref: eSTREAM submissions/trivium/verified.test-vectors, Set 1 vector 0 and Set 6 vector 3.
VECTORS = [
    ("80000000000000000000", "00000000000000000000", {
        0: "38eb86ff730d7a9caf8df13a4420540dbb7b651464c87501552041c249f29a64"
           "d2fbf515610921ebe06c8f92cecf7f8098ff20cccc6a62b97be8ef7454fc80f9",
        448: "ebf14772061c210843c18cea2d2a275ae02fcb18e5d7942455ff77524e8a4ca5"
             "1e369a847d1aeefb9002fcd02342983ceafa9d487cc2032b10192cd416310fa4",
    }),
    ("0f62b5085bae0154a7fa", "288ff65dc42b92f960c7", {
        0: "a4386c6d7624983fea8dbe7314e5fe1f9d102004c2cec99ac3bfbf003a66433f"
           "3089a98fad8512c49d7aabc0639f90c5ffed06f9d35aa8c86630e76a838e26d7",
        65536: "613009063d291c419d0194d59aded6249d9365dae8d6a62864cf649f5842a214"
               "57bfad03153db891e63ac9a859bb91511c475a8bd44756480ffbf14aa766b443",
        131008: "cb18518e27f7f95a5207ae008c760f33c26947e5231847ad32a5adc1ac74df45"
                "9526b62a2cd6956d14d3f48677ac338b13cd7b7a1b3a0c834e64ac03307f8830",
    }),
]


@pytest.mark.parametrize("key,iv,windows", VECTORS)
def test_model_matches_estream_vectors(key, iv, windows):
    k, v = key_from_bytes(bytes.fromhex(key)), key_from_bytes(bytes.fromhex(iv))
    stream = keystream_bytes(k, v, max(windows) + 64)
    for offset, expected in windows.items():
        assert stream[offset:offset + 64].hex() == expected, f"window at byte {offset}"


def run_rtl(width, key, iv, n_words, ready_pattern=None, external_advance=False):
    """The words taken until ``n_words`` are; ``external_advance``: the testbench drives the
    core's ``advance`` with the formula its docstring asks of the user."""
    dut = Trivium(width, external_advance=external_advance)
    out = []

    async def tb(ctx):
        ctx.set(dut.key, key)
        ctx.set(dut.iv, iv)
        ctx.set(dut.load, 1)
        if external_advance:
            ctx.set(dut.advance, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        cycle = 0
        predicted = None
        while len(out) < n_words:
            ready = 1 if ready_pattern is None else ready_pattern[cycle % len(ready_pattern)]
            ctx.set(dut.keystream.ready, ready)
            valid, payload = ctx.get(dut.keystream.valid), ctx.get(dut.keystream.payload)
            if external_advance:
                warming = ctx.get(dut.warming)
                # The `_next` outputs of the cycle before foretold this cycle's values.
                if predicted is not None:
                    assert (warming, valid) == predicted, f"cycle {cycle}"
                predicted = (ctx.get(dut.warming_next), ctx.get(dut.valid_next))
                ctx.set(dut.advance, warming | (valid & ready))
            if valid and ready:
                out.append(payload)
            await ctx.tick()
            cycle += 1

    simulate(dut, tb)
    return out


def words_to_bits(words, width):
    return np.array([(w >> i) & 1 for w in words for i in range(width)], np.uint8)


@pytest.mark.parametrize("key,iv,windows", VECTORS)
def test_rtl_matches_estream_vectors(key, iv, windows):
    k, v = key_from_bytes(bytes.fromhex(key)), key_from_bytes(bytes.fromhex(iv))
    words = run_rtl(64, k, v, 8)
    got = b"".join(w.to_bytes(8, "little") for w in words)
    assert got.hex() == windows[0]


@pytest.mark.parametrize("width", [64, 32, 9])
def test_rtl_matches_model_with_backpressure(width):
    rng = np.random.default_rng(width)
    k, v = (int(rng.integers(0, 1 << 40)) << 40 | int(rng.integers(0, 1 << 40)) for _ in "kv")
    n_bits = 64 * 40
    words = run_rtl(width, k, v, n_bits // width, ready_pattern=[1, 0, 1, 1, 0, 0, 1])
    model = trivium_words(k, v, n_bits // 64)
    model_bits = np.unpackbits(model.astype("<u8").view(np.uint8), bitorder="little")
    got = words_to_bits(words, width)
    np.testing.assert_array_equal(got, model_bits[:len(got)])


@pytest.mark.parametrize("width", [64, 9])
def test_external_advance_matches_the_model(width):
    """A core whose enable comes from outside (as the entropy source's cores in lockstep)
    gives the same keystream under back-pressure."""
    rng = np.random.default_rng(200 + width)
    k, v = (int(rng.integers(0, 1 << 40)) << 40 | int(rng.integers(0, 1 << 40)) for _ in "kv")
    n_bits = 64 * 12
    words = run_rtl(width, k, v, n_bits // width, ready_pattern=[1, 0, 0, 1, 1],
                    external_advance=True)
    model = trivium_words(k, v, n_bits // 64)
    model_bits = np.unpackbits(model.astype("<u8").view(np.uint8), bitorder="little")
    got = words_to_bits(words, width)
    np.testing.assert_array_equal(got, model_bits[:len(got)])


def test_next_outputs_foretell_warming_and_valid_across_a_reload():
    """``warming_next`` and ``valid_next`` give the next cycle's ``warming`` and ``valid``
    in every cycle, also when a load comes while the keystream is valid."""
    dut = Trivium(32, external_advance=True)
    loads = {0, 45, 46, 90}                    # a reload while valid, and one twice over
    seen = []

    async def tb(ctx):
        predicted = None
        for cycle in range(140):
            ctx.set(dut.load, cycle in loads)
            ctx.set(dut.keystream.ready, cycle % 3 != 1)
            await ctx.delay(1e-9)
            warming, valid = ctx.get(dut.warming), ctx.get(dut.keystream.valid)
            if predicted is not None:
                assert (warming, valid) == predicted, f"cycle {cycle}"
            predicted = (ctx.get(dut.warming_next), ctx.get(dut.valid_next))
            ctx.set(dut.advance, (cycle in loads) | warming | (valid & (cycle % 3 != 1)))
            seen.append(valid)
            await ctx.tick()

    simulate(dut, tb)
    assert 0 < sum(seen[:45]) and 0 < sum(seen[90:])  # valid before each reload


@pytest.mark.parametrize("width", [0, 65, 10, -64, 64.0, "64"])
def test_bad_width_is_refused(width):
    with pytest.raises((TypeError, ValueError), match="width"):
        Trivium(width)


def test_model_refuses_bad_key():
    with pytest.raises(ValueError, match="key"):
        trivium_words(1 << 80, 0, 1)
    with pytest.raises(ValueError, match="10 bytes"):
        key_from_bytes(b"short")
