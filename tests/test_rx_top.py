"""Tests of the receiver top: the gateware against its model in Amaranth's simulator on link
traffic with settings changing along the run, and the directed cases of the whole pipeline."""

import numpy as np
import pytest
from amaranth.back import verilog
from timebin.gateware.records import CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE
from timebin.gateware.rx.binning import Binner, x_windows, z_windows
from timebin.gateware.rx.frontend import ClickFrontEnd, DeadTimeMode
from timebin.gateware.rx.histogram import PhaseHistogram
from timebin.gateware.rx.top import SETTINGS, Receiver
from timebin.sim.rx.histogram import histogram_from_sweep
from timebin.sim.rx.rtl import compare_receiver, run_receiver
from timebin.sim.rx.stimulus import SWEEP_SETTLE, link_samples, receiver_stimulus
from timebin.sim.rx.top import ReceiverModel

PER_DETECTOR, COMMON = DeadTimeMode.PER_DETECTOR.value, DeadTimeMode.COMMON.value


def run_both(params, samples, ready=True, **settings):
    """The gateware and the model on the same inputs; fail on the first difference."""
    model = ReceiverModel(**params).run(samples, ready=ready, **settings)
    rtl = run_receiver(Receiver(**params), samples, ready, **settings)
    compare_receiver(rtl, model)
    return rtl, model


@pytest.mark.parametrize(("params", "n", "seed"), [
    (dict(channels=4, lanes=16, uis_per_symbol=2), 5_000, 0xA1),
    (dict(channels=3, lanes=4, uis_per_symbol=6, oversampling=2, histogram_period=4,
          fifo_depth=4, max_delay=1000), 4_000, 0xA2),
])
def test_rtl_matches_model(params, n, seed):
    """Link traffic with jitter and dark counts; every setting moves along the run; the
    stream is back-pressured; a histogram read sweep ends the run."""
    C, S = params["channels"], params["uis_per_symbol"]
    padded, ready, settings = receiver_stimulus(params, n, seed)
    rtl, model = run_both(params, padded, ready, **settings)
    bins = params.get("histogram_period", 1) * S
    sweep = histogram_from_sweep(rtl["histogram_data"][n:], C, bins, settle=SWEEP_SETTLE)
    assert np.array_equal(sweep, model.histogram)
    assert model.histogram.sum() > 100
    # Everything the run exercises did happen.
    assert model.records_valid.sum() > 300
    assert model.dead_discards[-1].sum() > 0 and model.window_discards[-1].sum() > 0
    assert model.alarm.any() and model.records["alarm"][model.records_valid].any()
    assert model.settings_error.any()
    assert model.overflows[-1].sum() > 0 and model.overflow[-1]
    wrapped = model.records["index"][model.records_valid]
    assert wrapped.min() < 1000 and wrapped.max() > (1 << 63)


def test_burst_one_click_per_channel_per_cycle():
    """Every channel clicks once per cycle for 3,000 cycles: the front end accepts all, the
    merge carries one record a cycle and counts exactly what it cannot carry."""
    params = dict(channels=4, lanes=16, uis_per_symbol=2)
    n, drain = 3_000, 200
    samples = np.zeros((n + drain, 4, 32), np.uint8)
    samples[:n, :, 5] = 1                                       # UI 5: symbol 2, late bin
    rtl, model = run_both(params, samples)
    accepted = model.accepted[-1].astype(np.int64)
    assert accepted.tolist() == [n] * 4
    assert model.dead_discards[-1].sum() == 0 and model.window_discards[-1].sum() == 0
    taken = int(model.records_out[-1])
    lost = int(model.overflows[-1].sum())
    assert taken + lost == 4 * n                                # nothing silent
    assert lost > 0 and model.overflow[-1]
    assert taken >= n                                           # one record per cycle
    records = model.taken()
    assert (records["phase"] == 1).all() and (records["cls"] == CLASS_LATE).all()


def test_latency_and_fields_of_one_click():
    """One click on channel 2 at UI 37 of cycle 10 (L=16, S=4: symbol 9 of the word, UI 1)
    with a delay of 2 symbols and 3 UIs: index 10*16 + 9 - 2 - 1, phase 2, class late;
    offered exactly ``latency`` cycles after its word."""
    params = dict(channels=3, lanes=16, uis_per_symbol=4)
    samples = np.zeros((30, 3, 64), np.uint8)
    samples[10, 2, 37:39] = 1
    rtl, model = run_both(params, samples, delay=[0, 0, 2 * 4 + 3])
    (cycle,) = np.flatnonzero(model.records_valid)
    assert cycle == 10 + Receiver.latency
    record = {name: int(values[cycle]) for name, values in model.records.items()}
    assert record == {"index": 10 * 16 + 9 - 2 - 1, "phase": 2, "channel": 2,
                      "cls": CLASS_LATE, "alarm": 0}


def test_classes_of_z_and_x_detectors():
    """A Z detector's early and late bins and the X detector's three slots."""
    params = dict(channels=2, lanes=2, uis_per_symbol=4)
    samples = np.zeros((13 + Receiver.latency, 2, 8), np.uint8)  # the last click's records
    samples[2, 0, 1] = samples[4, 0, 6] = 1                     # Z: early, late
    for cycle, ui in ((6, 0), (8, 2), (10, 4 + 0), (12, 4 + 3)):
        samples[cycle, 1, ui] = 1                               # X slots
    rtl, model = run_both(params, samples, windows=[z_windows(4), x_windows(4)])
    records = model.taken()
    got = list(zip(records["channel"].tolist(), records["cls"].tolist(), strict=True))
    assert got == [(0, CLASS_EARLY), (0, CLASS_LATE), (1, CLASS_MIDDLE), (1, CLASS_MIDDLE)]
    assert model.window_discards[-1].tolist() == [0, 2]


def test_common_and_per_detector_dead_time():
    """Channel 1 clicks 10 UIs after channel 0: a dead-time discard under the common dead
    time, accepted per detector."""
    params = dict(channels=2, lanes=4, uis_per_symbol=2)
    samples = np.zeros((40, 2, 8), np.uint8)
    samples[5, 0, 2] = 1
    samples[6, 1, 4] = 1                                        # 10 UIs later
    for mode, accepted in ((COMMON, [1, 0]), (PER_DETECTOR, [1, 1])):
        rtl, model = run_both(params, samples, dead_time=16, dead_mode=mode)
        assert model.accepted[-1].tolist() == accepted
        assert model.dead_discards[-1].tolist() == [0, 1 - accepted[1]]


def test_reset_mid_stream():
    """A reset mid-run restarts time, counters, dead time and the pipeline; after it the
    gateware matches the model run from reset on the words after the reset. The histogram
    memory survives a reset: a sweep clears it after the reset, and until it has, a read
    shows what was counted before (the model starts from zeroes), so those reads are left
    out."""
    params = dict(channels=2, lanes=4, uis_per_symbol=2)
    rng = np.random.default_rng(7)
    samples, _ = link_samples(rng, 600, 4, 2, 2, click_probability=0.1)
    at = 250
    rtl = run_receiver(Receiver(**params), samples, reset_at=at, dead_time=24)
    after = ReceiverModel(**params).run(samples[at + 1:], dead_time=24)
    tail = {name: (value[at + 1:] if name != "records"
                   else {k: v[at + 1:] for k, v in value.items()})
            for name, value in rtl.items()}
    stale = 2 * 2 + PhaseHistogram.read_latency                 # sweep of 2 x 2 bins
    tail["histogram_data"][:stale] = after.histogram_data[:stale]
    compare_receiver(tail, after)
    assert after.records_valid.sum() > 20


def test_alarm_flags_records_until_cleared():
    """The rate check trips on the 4th click of a channel in a window: that click's record
    and those after it carry the flag (the alarm is set one cycle after the click leaves the
    front end, one cycle before its slot reaches the merge), until a clear drops it."""
    params = dict(channels=1, lanes=2, uis_per_symbol=2, max_window=1 << 10)
    samples = np.zeros((200, 1, 4), np.uint8)
    samples[10:100:10, 0, 0] = 1                                # 9 clicks
    clear = np.zeros(200, bool)
    clear[70 + ClickFrontEnd.latency + Binner.latency] = True   # as click 70 reaches the merge
    rtl, model = run_both(params, samples, watchdog_max_clicks=3, alarm_clear=clear)
    records = model.taken()
    assert records["alarm"].tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert int(model.alarm_trips[-1]) >= 1


@pytest.mark.parametrize(("name", "value"), [
    ("dead_time", 7),                                            # below one word (8 UIs)
    ("dead_time", 101),                                          # above max_dead_time
    ("gate_width", 0),                                           # a zero-width gate
    ("gate_period", 0),
    ("watchdog_window", 0),
])
def test_bad_settings_are_refused(name, value):
    """A refused value raises ``settings_error`` and leaves the default in use."""
    params = dict(channels=2, lanes=4, uis_per_symbol=2, max_dead_time=100)
    samples = np.zeros((20, 2, 8), np.uint8)
    samples[5, :, 3] = 1
    rtl, model = run_both(params, samples, **{name: value})
    assert not model.settings_error[0] and model.settings_error[1:].all()   # a cycle late
    assert model.accepted[-1].tolist() == [1, 1]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(channels=0), ValueError, "Channel count must be at least 1, not 0"),
    (dict(channels=17), ValueError, "not 17"),
    (dict(uis_per_symbol=3), ValueError, "even.*3"),
    (dict(oversampling=0), ValueError, "Oversampling.*not 0"),
    (dict(max_dead_time=4), ValueError, "dead time.*not 4"),
    (dict(histogram_period=3), ValueError, "3"),
    (dict(fifo_depth=0), ValueError, "FIFO depth.*not 0"),
    (dict(lanes=2.0), TypeError, "Lane count must be an integer, not 2.0"),
])
def test_bad_construction(kwargs, error, match):
    params = {**dict(channels=2, lanes=4, uis_per_symbol=2), **kwargs}
    with pytest.raises(error, match=match):
        Receiver(**params)
    with pytest.raises(error, match=match):
        ReceiverModel(**params)


def test_model_refuses_bad_inputs():
    model = ReceiverModel(channels=2, lanes=4, uis_per_symbol=2)
    samples = np.zeros((10, 2, 8), np.uint8)
    with pytest.raises(ValueError, match="Unknown receiver setting 'dead_tme'"):
        model.run(samples, dead_tme=10)
    with pytest.raises(ValueError, match="Window LUT|windows"):
        model.run(samples, windows=[[0, 1, 1]] * 2)              # 3 entries for S = 2
    with pytest.raises(ValueError, match="samples"):
        model.run(np.zeros((10, 3, 8), np.uint8))


def test_settings_are_the_input_ports():
    dut = Receiver(channels=2, lanes=4, uis_per_symbol=2)
    inputs = {name for name, member in dut.signature.members.items()
              if member.is_port and member.flow.value == "In"} - {"samples"}
    assert inputs == set(SETTINGS)
    verilog.convert(dut, name="rx_top")


def test_converts_to_verilog_at_full_width():
    """L = 16 lanes of S = 2 UIs and 4 channels: 2.5 GS/s at 156.25 MHz."""
    text = verilog.convert(Receiver(channels=4, lanes=16, uis_per_symbol=2), name="rx_top")
    assert "module rx_top" in text and "records__payload" in text
