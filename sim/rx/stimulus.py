"""Detector words of a time-bin link for the receiver's tests, demo and benchmarks.

Each channel is a detector: a Z detector clicks in the early or the late time bin of a symbol
(bit 0 or 1, DESIGN.md section 2); the X detector behind its one-bin interferometer clicks in
one of three slots (short-early, the middle slot where the two arms overlap, long-late) with
probabilities 1/4, 1/2, 1/4. Arrivals are at the centre of their slot, plus the channel's
delay and a Gaussian jitter; dark counts are uniform in time. The clicks become PHY words with
:func:`~timebin.sim.rx.detector.click_words`.
"""

import numpy as np

from ...gateware.records import CLASS_DISCARD
from ...gateware.rx.binning import x_windows, z_windows
from ...gateware.rx.frontend import DeadTimeMode
from .detector import click_words
from .histogram import read_sweep_schedule

__all__ = ["SWEEP_SETTLE", "STALL_CYCLES", "link_click_times", "link_samples", "varied_settings",
           "with_histogram_sweep", "receiver_stimulus"]

#: Cycles a test's histogram read sweep waits before its first read (clicks still in flight).
SWEEP_SETTLE = 64
#: In a test run the host stops taking records for this many cycles from a third of the run.
STALL_CYCLES = 400


def link_click_times(rng, n_cycles, lanes, uis_per_symbol, channels, *, click_probability=0.05,
                     x_channels=(), delays=0, jitter_uis=0.0, dark_per_ui=0.0, oversampling=1):
    """Click times, in samples (``oversampling`` per UI), of ``channels`` detectors.

    Each symbol period gives each detector a click with ``click_probability`` (after the
    channel's loss; one pulse per symbol). Channels in ``x_channels`` are X detectors, the
    others Z detectors. ``delays``: each channel's delay in UIs (a scalar or one per channel).
    Returns one sorted int64 array per channel; ``rng`` is a ``numpy.random.Generator``.
    """
    S = uis_per_symbol
    symbols = n_cycles * lanes
    total = n_cycles * lanes * S * oversampling
    delays = np.broadcast_to(np.asarray(delays, np.int64), (channels,))
    half = S // 2
    out = []
    for k in range(channels):
        chosen = np.flatnonzero(rng.random(symbols) < click_probability)
        if k in x_channels:
            slot = rng.choice(3, size=chosen.size, p=(0.25, 0.5, 0.25))
        else:
            slot = rng.integers(0, 2, chosen.size)
        ui = chosen * S + slot * half + half / 2 + delays[k]
        if jitter_uis > 0:
            ui = ui + rng.normal(0.0, jitter_uis, chosen.size)
        times = np.floor(ui * oversampling).astype(np.int64)
        dark = rng.integers(0, total, rng.poisson(dark_per_ui * total / oversampling))
        times = np.concatenate((times, dark))
        out.append(np.unique(times[(times >= 0) & (times < total)]))
    return out


def link_samples(rng, n_cycles, lanes, uis_per_symbol, channels, *, pulse_uis=2,
                 oversampling=1, **kwargs):
    """PHY words (N, C, W * oversampling) of :func:`link_click_times`; detector pulses last
    ``pulse_uis`` UIs. Returns ``(samples, times)``."""
    times = link_click_times(rng, n_cycles, lanes, uis_per_symbol, channels,
                             oversampling=oversampling, **kwargs)
    words = click_words(times, pulse_uis * oversampling, n_cycles,
                        lanes * uis_per_symbol * oversampling)
    return words, times


def varied_settings(rng, params, n):
    """Receiver settings for a test run of ``n`` cycles that change along it: dead time and
    its mode, delays (one beyond a symbol), window LUTs (Z and X detectors), an epoch load
    near 2**64 (the index wraps), watchdog thresholds that trip and clears, a histogram
    clear, gates, and values refused for a while. ``params``: the receiver's parameters."""
    C, L, S = params["channels"], params["lanes"], params["uis_per_symbol"]
    W = L * S
    dead_time = np.full(n, 3 * W + 1)
    dead_time[n // 4:] = W
    dead_time[n // 3:n // 3 + 50] = W - 1                       # refused
    dead_mode = np.full(n, DeadTimeMode.COMMON.value)
    dead_mode[n // 2:] = DeadTimeMode.PER_DETECTOR.value
    delay = np.broadcast_to(rng.integers(0, 5 * S, C), (n, C)).copy()
    delay[n // 2:, 0] += 7 * S + 1                              # beyond a symbol, mid-run
    windows = np.broadcast_to(np.array([z_windows(S)] * (C - 1) + [x_windows(S)]),
                              (n, C, S)).copy()
    windows[2 * n // 3:, min(1, C - 1), 0] = CLASS_DISCARD
    epoch_load = np.zeros(n, bool)
    epoch_load[n // 5] = True
    epoch = np.full(n, (1 << 64) - 3 * L, np.uint64)            # the index wraps
    max_clicks = np.full(n, 1 << 20)
    max_clicks[n // 2:] = 40                                    # the watchdog trips
    alarm_clear = np.zeros(n, bool)
    alarm_clear[[n // 2, 3 * n // 4]] = True
    histogram_clear = np.zeros(n, bool)
    histogram_clear[n // 6] = True
    gate_width = np.full((n, C), S // 2)
    gate_width[n // 7:n // 7 + 20, 0] = 0                       # refused: zero width
    return {
        "dead_time": dead_time, "dead_mode": dead_mode, "delay": delay, "windows": windows,
        "epoch_load": epoch_load, "epoch": epoch, "watchdog_window": 1000,
        "watchdog_max_clicks": max_clicks, "alarm_clear": alarm_clear,
        "histogram_clear": histogram_clear, "gate_enable": [1] * C,
        "gate_period": [2] * C, "gate_width": gate_width,
    }


def with_histogram_sweep(params, samples, settle, **settings):
    """``samples`` followed by a histogram read sweep with no clicks
    (:func:`~timebin.sim.rx.histogram.read_sweep_schedule`): returns the padded samples and
    settings (per-cycle values, those with ``len(samples)`` rows, go on with their last
    value) with the sweep's ``histogram_channel`` and ``histogram_bin``. The sweep's data is
    ``histogram_data[len(samples):]``, for :func:`~timebin.sim.rx.histogram.histogram_from_sweep`.
    """
    channels = params["channels"]
    bins = params.get("histogram_period", 1) * params["uis_per_symbol"]
    read_channel, read_bin = read_sweep_schedule(channels, bins, settle=settle)
    n, pad = len(samples), len(read_channel)
    padded = np.concatenate((samples, np.zeros((pad, *samples.shape[1:]), samples.dtype)))
    out = {}
    for name, value in settings.items():
        value = np.asarray(value)
        if value.ndim > _ELEMENT_DIMS.get(name, 0):
            value = np.concatenate((value, np.repeat(value[-1:], pad, axis=0)))
        out[name] = value
    out["histogram_channel"] = np.concatenate((np.zeros(n, np.int64), read_channel))
    out["histogram_bin"] = np.concatenate((np.zeros(n, np.int64), read_bin))
    return padded, out


#: Element dims of the array-valued settings (the rest are scalars): a value with more dims
#: than these has one row per cycle.
_ELEMENT_DIMS = {"gate_enable": 1, "gate_period": 1, "gate_offset": 1, "gate_width": 1,
                 "delay": 1, "windows": 2}


def receiver_stimulus(params, n, seed):
    """``(samples, ready, settings)`` of a test run of the receiver of ``params``: ``n``
    cycles of link traffic (jitter, dark counts, an X detector on the last channel) with every
    setting moving (:func:`varied_settings`) and the stream back-pressured (a stall of
    :data:`STALL_CYCLES`), then a histogram read sweep settling :data:`SWEEP_SETTLE` cycles."""
    rng = np.random.default_rng(seed)
    C, L, S = params["channels"], params["lanes"], params["uis_per_symbol"]
    samples, _ = link_samples(rng, n, L, S, C, click_probability=0.03, x_channels=(C - 1,),
                              jitter_uis=0.4, dark_per_ui=1e-3,
                              oversampling=params.get("oversampling", 1))
    settings = varied_settings(rng, params, n)
    padded, settings = with_histogram_sweep(params, samples, settle=SWEEP_SETTLE, **settings)
    ready = rng.random(len(padded)) < 0.7
    ready[n // 3:n // 3 + STALL_CYCLES] = False
    return padded, ready, settings
