"""Detector inputs for the receiver's models and testbenches: click times as sample words.

A detector's output is a pulse of a few UIs per click, deserialized into one word of ``W``
UIs per cycle (UI 0 first) like :func:`timebin.gateware.rx.layouts.SampleWord`. Clicks come
from a Poisson process, optionally on a grid of arrival slots, with Gaussian timing jitter.
"""

import numpy as np

__all__ = ["click_words", "poisson_clicks"]


def click_words(times_per_channel, pulse_uis, n_cycles, uis_per_word):
    """Sample words with a pulse of ``pulse_uis`` UIs starting at each click time.

    ``times_per_channel``: one array of click times (UIs from the start, any order) per
    channel. Pulses that overlap merge into one (the detector output stays high), and times
    outside ``0 .. n_cycles * uis_per_word - 1`` are dropped; pulses are cut at the end.
    Returns (n_cycles, C, uis_per_word) uint8.
    """
    if not isinstance(pulse_uis, int | np.integer) or pulse_uis < 1:
        raise ValueError(f"Pulse length must be a positive number of UIs, not {pulse_uis!r}")
    total = n_cycles * uis_per_word
    channels = len(times_per_channel)
    stream = np.zeros((channels, total), np.uint8)
    for k, times in enumerate(times_per_channel):
        times = np.asarray(times, np.int64)
        times = times[(times >= 0) & (times < total)]
        for offset in range(pulse_uis):
            ui = times + offset
            stream[k, ui[ui < total]] = 1
    return stream.reshape(channels, n_cycles, uis_per_word).transpose(1, 0, 2).copy()


def poisson_clicks(rng, n_cycles, uis_per_word, rate_per_ui, jitter_uis=0.0, *, channels=1,
                   grid_uis=1, grid_offset=0):
    """Click times (UIs) of ``channels`` independent detectors over ``n_cycles`` words.

    Each channel clicks as a Poisson process of ``rate_per_ui`` clicks per UI. With
    ``grid_uis`` > 1 each click falls on an arrival slot ``grid_offset + j * grid_uis`` (a
    time bin); then a Gaussian jitter of ``jitter_uis`` (standard deviation, UIs) moves it,
    rounded to whole UIs. Times outside the run are dropped. Returns one sorted int64 array
    of distinct times per channel. ``rng`` is a ``numpy.random.Generator``: the caller seeds.
    """
    total = n_cycles * uis_per_word
    out = []
    for _ in range(channels):
        times = rng.integers(0, total, rng.poisson(rate_per_ui * total))
        times = times // grid_uis * grid_uis + grid_offset
        if jitter_uis > 0:
            times = times + np.rint(rng.normal(0.0, jitter_uis, times.size)).astype(np.int64)
        out.append(np.unique(times[(times >= 0) & (times < total)]))
    return out
