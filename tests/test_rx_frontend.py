"""Tests of the receiver front end (edges, dead time, counters, gates): gateware against its
model, and directed cases."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from timebin.gateware.rx.frontend import (
    COUNTER_BITS,
    ClickFrontEnd,
    DeadTimeMode,
    gate_frame_cycles,
)
from timebin.gateware.rx.layouts import Hit
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.rx.detector import click_words, poisson_clicks
from timebin.sim.rx.frontend import ClickFrontEndModel
from timebin.sim.words import bits_to_ints, ints_to_bits, pack_field, unpack_field

PER_DETECTOR, COMMON = DeadTimeMode.PER_DETECTOR.value, DeadTimeMode.COMMON.value
HIT_FIELDS = ("valid", "time", "symbol", "ui")
OUTPUTS = HIT_FIELDS + ("clicks", "dead_discards", "gates", "gate_starts", "settings_error")
GATE_SETTINGS = ("gate_enable", "gate_period", "gate_offset", "gate_width")


def _per_cycle(value, n, shape):
    """A setting as ``n`` port values (ints), from a scalar, per-channel or per-cycle array."""
    array = np.asarray(value, np.int64)
    if shape is None:                                   # a scalar port
        return [int(x) for x in np.broadcast_to(array, (n,))]
    channels, bits = shape
    array = np.broadcast_to(array, (n, channels)) if array.ndim < 2 else array
    packed = np.zeros((n, channels * bits), np.uint8)
    pack_field(packed, 0, array, bits)
    return bits_to_ints(packed)


def run_rtl(dut, samples, *, reset_at=None, **settings):
    """Simulate ``dut`` for ``len(samples)`` cycles from reset, with the inputs and settings
    :meth:`ClickFrontEndModel.run` takes. ``reset_at``: a cycle in which the domain's reset is
    high. Returns the outputs as the model's arrays, sampled in each cycle before its edge."""
    n, channels, uis = samples.shape
    S = dut.uis_per_symbol
    inputs = {"samples": bits_to_ints(samples.reshape(n, channels * uis))}
    for name, value in settings.items():
        if value is None:
            continue
        port = getattr(dut, name)
        if name in GATE_SETTINGS:
            inputs[name] = _per_cycle(value, n, (channels, len(port.as_value()) // channels))
        else:
            inputs[name] = _per_cycle(value, n, None)
    ports = [(getattr(dut, name), values) for name, values in inputs.items()]
    ports = [(port.as_value() if hasattr(port, "as_value") else port, values)
             for port, values in ports]
    outputs = {name: getattr(dut, name) for name in
               ("hits", "clicks", "dead_discards", "gates", "gate_starts", "settings_error")}
    outputs = {name: port.as_value() if hasattr(port, "as_value") else port
               for name, port in outputs.items()}
    got = {name: [] for name in outputs}

    top = Module()
    top.submodules.dut = dut
    top.domains.sync = domain = ClockDomain("sync")

    async def testbench(ctx):
        held = [None] * len(ports)
        for cycle in range(n):
            for i, (port, values) in enumerate(ports):
                if values[cycle] != held[i]:
                    ctx.set(port, values[cycle])
                    held[i] = values[cycle]
            if reset_at is not None:
                ctx.set(domain.rst, cycle == reset_at)
            for name, port in outputs.items():
                got[name].append(ctx.get(port))
            await ctx.tick()

    simulate(top, testbench)

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


def run_both(params, samples, **settings):
    """The gateware and the model on the same inputs; fail on the first difference."""
    rtl = run_rtl(ClickFrontEnd(**params), samples, **settings)
    model = ClickFrontEndModel(**params).run(samples, **settings)
    compare(rtl, model)
    return model


def traffic(rng, n, uis, channels, rate, jitter, pulse, **grid):
    times = poisson_clicks(rng, n, uis, rate, jitter, channels=channels, **grid)
    return click_words(times, pulse, n, uis), times


# --- gateware against model ---

RANDOM_CASES = [
    # (lanes, S, channels, cycles, mode, seed)
    (16, 2, 4, 10_000, PER_DETECTOR, 0xF0),
    (16, 2, 4, 10_000, COMMON, 0xF1),
    (4, 6, 3, 10_000, COMMON, 0xF2),
    (3, 4, 2, 10_000, PER_DETECTOR, 0xF3),
]


@pytest.mark.parametrize(("lanes", "span", "channels", "n", "mode", "seed"), RANDOM_CASES)
def test_rtl_matches_model(lanes, span, channels, n, mode, seed):
    """Poisson clicks in time bins with jitter and merged pulses; dead time, its mode and
    the gates change (and are refused) along the run."""
    rng = np.random.default_rng(seed)
    W = lanes * span
    samples, _ = traffic(rng, n, W, channels, 0.02, 1.5, 3, grid_uis=span // 2)
    samples[3000:3100] = 1                              # a blinded stretch: no edges
    samples[5000:5050, :, ::4] = 1                      # many edges per word
    params = {"channels": channels, "lanes": lanes, "uis_per_symbol": span,
              "max_dead_time": 20 * W, "max_gate_period": 8}
    dead_time = np.full(n, W + 3)
    dead_time[2000:] = 5 * W + 7
    dead_time[4000:4500] = W - 1                        # refused: the last accepted stays
    dead_time[4500:] = W
    dead_time[6000:6100] = 20 * W + 1                   # refused
    dead_time[7000:] = 3 * W
    dead_mode = np.full(n, mode)
    dead_mode[8000:8500] = 1 - mode
    epoch_load = np.zeros(n, bool)
    epoch_load[[100, 101, 6000]] = True
    epoch = rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    period = rng.integers(1, 9, channels)
    gates = {
        "gate_enable": (np.arange(channels) + 1) % 3 != 0,
        "gate_period": np.broadcast_to(period, (n, channels)).copy(),
        "gate_offset": np.broadcast_to(rng.integers(0, period * span), (n, channels)).copy(),
        "gate_width": np.broadcast_to(rng.integers(1, period * span + 1),
                                      (n, channels)).copy(),
    }
    gates["gate_period"][5000:, 0] = 3                  # a new period mid-run
    gates["gate_offset"][5000:, 0] = 3 * span - 1
    gates["gate_width"][5000:, 0] = 2
    gates["gate_period"][6500:6700, -1] = 9             # refused: above max_gate_period
    model = run_both(params, samples, epoch_load=epoch_load, epoch=epoch,
                     dead_time=dead_time, dead_mode=dead_mode, **gates)
    assert model.valid.sum() > 1000
    assert model.dead_discards[-1].sum() > 500
    assert model.settings_error.sum() == 500 + 100 + 200
    assert model.gates.any() and model.gate_starts.any()
