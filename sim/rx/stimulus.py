"""Detector words of a time-bin link for the receiver's tests, demo and benchmarks.

Each channel is a detector: a Z detector clicks in the early or the late time bin of a symbol
(bit 0 or 1, DESIGN.md section 2); the X detector behind its one-bin interferometer clicks in
one of three slots (short-early, the middle slot where the two arms overlap, long-late) with
probabilities 1/4, 1/2, 1/4. Arrivals are at the centre of their slot, plus the channel's
delay and a Gaussian jitter; dark counts are uniform in time. The clicks become PHY words with
:func:`~timebin.sim.rx.detector.click_words`.
"""

import numpy as np

from .detector import click_words

__all__ = ["link_click_times", "link_samples"]


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
