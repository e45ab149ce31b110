"""Bit-exact reference model of :class:`timebin.gateware.tx.health.HealthTests`.

# Ref: NIST SP 800-90B (January 2018), section 4.4.1 (Repetition Count Test) and 4.4.2
# (Adaptive Proportion Test).

The model runs both tests literally as the spec writes them, one sample at a time (a numba
loop), while the gateware evaluates a whole word of samples at once: the two meet only at the
per-cycle outputs, which is what the tests compare.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ...gateware.tx.health import FAILURE_COUNTER_BITS, HealthTests, check_health_parameters

__all__ = ["HealthTestsOutput", "HealthTestsModel", "pack_samples", "unpack_samples"]

_COUNTER_TOP = (1 << FAILURE_COUNTER_BITS) - 1


def pack_samples(bits):
    """Sample words (N,) uint64 from an (N, channels) array of 0/1, sample 0 in bit 0."""
    bits = np.asarray(bits)
    if bits.ndim != 2 or not 1 <= bits.shape[1] <= 64:
        raise ValueError(f"Samples must be an (N, 1..64) array, not of shape {bits.shape}")
    n, c = bits.shape
    padded = np.zeros((n, 64), np.uint8)
    padded[:, :c] = bits != 0
    return np.packbits(padded, axis=1, bitorder="little").view("<u8")[:, 0].astype(np.uint64)


def unpack_samples(words, channels):
    """The (N, channels) uint8 array of 0/1 of sample words, sample 0 from bit 0."""
    words = np.asarray(words, dtype=np.uint64)
    shifts = np.arange(channels, dtype=np.uint64)
    return ((words[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)


class HealthTestsOutput(NamedTuple):
    """Per-cycle outputs of :meth:`HealthTestsModel.run`, as the gateware shows them.

    ``fail``, ``alarm`` and ``settings_error`` (N,) bool; ``rct_failures`` and
    ``apt_failures`` (N,) uint32.
    """

    fail: np.ndarray
    alarm: np.ndarray
    rct_failures: np.ndarray
    apt_failures: np.ndarray
    settings_error: np.ndarray


@njit(cache=True)
def _run(samples, valid, clear, rct_cutoff, apt_cutoff, channels, window, rct_top, rct_init,
         apt_init, fail, alarm, rct_failures, apt_failures, settings_error):
    one = np.uint64(1)
    rct_a, rct_b = 0, 0                 # 4.4.1: A and B; B = 0 before the first sample
    apt_a, apt_b, pos = 0, 0, 0         # 4.4.2: A, B and the sample's index in its window
    latched = False
    rct_count, apt_count = 0, 0
    rct_applied, apt_applied = rct_init, apt_init
    for c in range(samples.shape[0]):
        # Cutoffs: a refused value leaves the last accepted one in use.
        rct_c, apt_c = rct_cutoff[c], apt_cutoff[c]
        rct_ok = rct_c >= 2
        apt_ok = 2 <= apt_c <= window
        if rct_ok:
            rct_applied = rct_c
        if apt_ok:
            apt_applied = apt_c
        rct_c, apt_c = rct_applied, apt_applied
        settings_error[c] = not (rct_ok and apt_ok)
        rct_failures[c] = rct_count
        apt_failures[c] = apt_count

        if clear[c]:
            rct_a, rct_b, apt_b, pos = 0, 0, 0, 0
        rct_fail = apt_fail = False
        if valid[c]:
            word = samples[c]
            for j in range(channels):
                s = int((word >> np.uint64(j)) & one)
                # 4.4.1 step 3: a repeat of A increments B (saturating as the counter does),
                # anything else restarts with A = the sample, B = 1; B >= C fails.
                if s == rct_a:
                    rct_b = min(rct_b + 1, rct_top)
                else:
                    rct_a, rct_b = s, 1
                if rct_b >= rct_c:
                    rct_fail = True
                # 4.4.2: the first sample of a window is A with B = 1; a later sample equal to
                # A increments B and fails when B >= C.
                if pos == 0:
                    apt_a, apt_b = s, 1
                elif s == apt_a:
                    apt_b += 1
                    if apt_b >= apt_c:
                        apt_fail = True
                pos = (pos + 1) % window

        fail[c] = rct_fail or apt_fail
        latched = (latched and not clear[c]) or fail[c]
        alarm[c] = latched
        if rct_fail and rct_count < _COUNTER_TOP:
            rct_count += 1
        if apt_fail and apt_count < _COUNTER_TOP:
            apt_count += 1


class HealthTestsModel:
    """Reference model of :class:`~timebin.gateware.tx.health.HealthTests`.

    Takes the same parameters with the same checks. :meth:`run` reproduces the gateware's
    outputs cycle for cycle from reset (cycle 0 is the first cycle after reset).
    """

    #: Cycles from the samples to the ``fail`` and ``alarm`` they cause.
    latency = HealthTests.latency

    def __init__(self, channels, window=1024, h_min=1.0, alpha=2**-20):
        self.default_rct_cutoff, self.default_apt_cutoff, self.rct_bits = \
            check_health_parameters(channels, window, h_min, alpha)
        self.channels = channels
        self.window = window
        self.h_min = float(h_min)
        self.alpha = float(alpha)

    def _per_cycle(self, name, value, n, default, port_bits):
        """``value`` (None, a scalar or N values) as (N,) int64, checked to fit its port."""
        if value is None:
            value = default
        array = np.asarray(value)
        if array.ndim == 0:
            array = np.full(n, array)
        if array.shape != (n,):
            raise ValueError(f"{name} must be a scalar or {n} values, not of shape "
                             f"{array.shape}")
        array = array.astype(np.int64)
        bad = (array < 0) | (array >= 1 << port_bits)
        if bad.any():
            raise ValueError(f"{name} must fit its {port_bits}-bit port, not "
                             f"{int(array[bad][0])!r}")
        return array

    def run(self, samples, valid, clear=None, rct_cutoff=None, apt_cutoff=None):
        """Outputs of the gateware for ``N`` cycles from reset, as a :class:`HealthTestsOutput`.

        ``samples`` holds N sample words (ints or uint64, sample ``j`` in bit ``j``; see
        :func:`pack_samples`); ``valid`` and ``clear`` are N bools or one for every cycle
        (``clear`` defaults to low); ``rct_cutoff`` and ``apt_cutoff`` are the port values, N
        ints or one for every cycle, by default the port's ``init``.
        """
        words = np.asarray(samples, dtype=np.uint64).reshape(-1)
        n = len(words)
        if self.channels < 64 and (words >> np.uint64(self.channels)).any():
            bad = words[(words >> np.uint64(self.channels)) != 0][0]
            raise ValueError(f"Sample words must fit {self.channels} channels, not {int(bad)!r}")
        valid = self._per_cycle("valid", valid, n, 1, 1).astype(np.bool_)
        clear = self._per_cycle("clear", clear, n, 0, 1).astype(np.bool_)
        rct_cutoff = self._per_cycle("rct_cutoff", rct_cutoff, n, self.default_rct_cutoff,
                                     self.rct_bits)
        apt_cutoff = self._per_cycle("apt_cutoff", apt_cutoff, n, self.default_apt_cutoff,
                                     self.window.bit_length())
        out = HealthTestsOutput(
            fail=np.zeros(n, np.bool_),
            alarm=np.zeros(n, np.bool_),
            rct_failures=np.zeros(n, np.uint32),
            apt_failures=np.zeros(n, np.uint32),
            settings_error=np.zeros(n, np.bool_),
        )
        _run(words, valid, clear, rct_cutoff, apt_cutoff, self.channels, self.window,
             (1 << self.rct_bits) - 1, self.default_rct_cutoff, self.default_apt_cutoff, *out)
        return out
