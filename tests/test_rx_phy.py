"""Tests of the deserializer interface: the UI sampler against its model."""

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator
from timebin.gateware.rx.phy import DeserializerSignature, UiSampler
from timebin.sim.rx.phy import reduce_oversampled
from timebin.sim.words import bits_to_ints, ints_to_bits


@pytest.mark.parametrize(("channels", "uis", "k"), [(4, 32, 1), (3, 8, 4), (1, 5, 3)])
def test_sampler_matches_model(channels, uis, k):
    """A UI is high iff any of its samples is: a pulse shorter than a UI still marks it."""
    rng = np.random.default_rng(channels * 100 + k)
    n = 300
    samples = (rng.random((n, channels, uis * k)) < 0.1).astype(np.uint8)
    dut = UiSampler(channels=channels, uis=uis, oversampling=k)
    words = bits_to_ints(samples.reshape(n, -1))
    got = []

    async def testbench(ctx):                                   # combinational: no clock
        for word in words:
            ctx.set(Value.cast(dut.samples), word)
            got.append(ctx.get(Value.cast(dut.uis_out)))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    have = ints_to_bits(got, channels * uis).reshape(n, channels, uis)
    want = reduce_oversampled(samples, k)
    np.testing.assert_array_equal(have, want)
    if k > 1:
        assert (want.sum() < samples.sum()) and want.any()


def test_single_sample_pulse_marks_its_ui():
    samples = np.zeros((1, 1, 12), np.uint8)
    samples[0, 0, 7] = 1                                          # sample 7 of UI 1 (k = 4)
    assert reduce_oversampled(samples, 4)[0, 0].tolist() == [0, 1, 0]


def test_signature_of_a_phy():
    signature = DeserializerSignature(4, 32)
    assert set(signature.members) == {"samples", "locked"}


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(channels=0, uis=8), ValueError, "Channel count must be at least 1, not 0"),
    (dict(channels=2, uis=0), ValueError, "UIs per word must be at least 1, not 0"),
    (dict(channels=2, uis=8, oversampling=17), ValueError, "at most 16, not 17"),
    (dict(channels=2, uis=8, oversampling=1.5), TypeError, "not 1.5"),
])
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        UiSampler(**kwargs)


def test_model_refuses_partial_uis():
    with pytest.raises(ValueError, match="A word of 10 samples is not a whole number of UIs "
                                         "of 4 samples"):
        reduce_oversampled(np.zeros((2, 1, 10), np.uint8), 4)
