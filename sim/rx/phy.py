"""Model of the receiver's deserializer interface (:mod:`timebin.gateware.rx.phy`).

A simulated PHY is :func:`timebin.sim.rx.detector.click_words` with times in samples: with
``oversampling`` k, click times in samples and words of ``W * k`` samples give the PHY's
oversampled words, which :func:`reduce_oversampled` turns into the UI words the receiver times.
"""

import numpy as np

from ...gateware.common import check_int
from ...gateware.rx.phy import MAX_OVERSAMPLING, check_sampler_parameters

__all__ = ["reduce_oversampled"]


def reduce_oversampled(samples, oversampling):
    """Bit-exact model of :class:`~timebin.gateware.rx.phy.UiSampler`: (N, C, W * k) samples of
    0/1 -> (N, C, W) uint8, UI ``u`` the OR of samples ``u * k .. u * k + k - 1``."""
    samples = np.asarray(samples)
    if samples.ndim != 3:
        raise ValueError(f"samples must have shape (N, channels, samples per word), not "
                         f"{samples.shape}")
    n, channels, width = samples.shape
    check_int("Oversampling (samples per UI)", oversampling, minimum=1,
              maximum=MAX_OVERSAMPLING)
    if width % oversampling:
        raise ValueError(f"A word of {width} samples is not a whole number of UIs of "
                         f"{oversampling} samples")
    uis = width // oversampling
    check_sampler_parameters(channels, uis, oversampling)
    return samples.reshape(n, channels, uis, oversampling).any(axis=3).astype(np.uint8)
