"""Bit-exact reference model of :class:`timebin.gateware.tx.entropy.EntropySource`."""

from typing import NamedTuple

import numpy as np

from ...gateware.common import check_int
from ...gateware.tx.entropy import CORE_BITS, EntropySelect, core_count
from ...gateware.tx.trivium import WARMUP_ROUNDS
from .health import HealthTestsModel, pack_samples
from .trivium import trivium_words

__all__ = ["KEYSTREAM_FIRST_CYCLE", "csprng_bits", "EntropyOutput", "EntropySourceModel"]

#: First cycle after reset in which the keystream is valid: the cores load in cycle 0, then
#: spend 1152 / 64 cycles warming up.
KEYSTREAM_FIRST_CYCLE = 1 + WARMUP_ROUNDS // CORE_BITS


def csprng_bits(key, iv, width, n):
    """The first ``n`` entropy words of the CSPRNG, as (n, width) uint8 bits, LSB first."""
    check_int("Entropy width", width, minimum=1)
    cores = core_count(width)
    words = np.stack([trivium_words(key, iv ^ c, n) for c in range(cores)], axis=1)
    raw = words.astype("<u8").view(np.uint8).reshape(n, cores * 8)
    return np.unpackbits(raw, axis=1, bitorder="little")[:, :width]


class EntropyOutput(NamedTuple):
    """Per-cycle outputs of :meth:`EntropySourceModel.run` (``N`` cycles).

    ``valid``, ``healthy``, ``qrng_ready``, ``alarm``, ``settings_error`` (N,) bool; ``bits``
    (N, width) uint8, meaningful where ``valid``; ``health_fail_cycles`` (N,) as the port.
    """

    valid: np.ndarray
    bits: np.ndarray
    healthy: np.ndarray
    qrng_ready: np.ndarray
    alarm: np.ndarray
    health_fail_cycles: np.ndarray
    settings_error: np.ndarray


class EntropySourceModel:
    """Reference model of :class:`~timebin.gateware.tx.entropy.EntropySource` from reset,
    with ``source``, ``key``, ``iv`` and the cutoffs held over a run and no ``reseed``."""

    def __init__(self, width, *, health_window=1024, h_min=1.0, alpha=2**-40):
        check_int("Entropy width", width, minimum=1)
        self.width = width
        self.cores = core_count(width)
        self.health = [
            HealthTestsModel(min(CORE_BITS, width - c * CORE_BITS), window=health_window,
                             h_min=h_min, alpha=alpha)
            for c in range(self.cores)]

    def run(self, ready, *, source=EntropySelect.CSPRNG, key=0, iv=0, qrng_valid=None,
            qrng_bits=None, alarm_clear=None, rct_cutoff=None, apt_cutoff=None):
        """Run over ``N = len(ready)`` cycles; ``ready`` is ``entropy.ready`` per cycle.

        For the QRNG, ``qrng_valid`` (N,) and ``qrng_bits`` (N, width) are the port values.
        """
        ready = np.asarray(ready, bool)
        n = len(ready)
        source = EntropySelect(source)
        if qrng_valid is None:
            qrng_valid = np.zeros(n, bool)
        qrng_valid = np.broadcast_to(np.asarray(qrng_valid, bool), (n,))
        if qrng_bits is None:
            qrng_bits = np.zeros((n, self.width), np.uint8)
        qrng_bits = np.asarray(qrng_bits, np.uint8)
        if qrng_valid.shape != (n,) or qrng_bits.shape != (n, self.width):
            raise ValueError(f"qrng_valid and qrng_bits must have shapes ({n},) and "
                             f"{(n, self.width)}, not {qrng_valid.shape} and {qrng_bits.shape}")
        clear = np.zeros(n, bool) if alarm_clear is None else np.asarray(alarm_clear, bool)

        taken = (qrng_valid & ready) if source == EntropySelect.QRNG else np.zeros(n, bool)
        fails = np.zeros(n, bool)
        alarm = np.zeros(n, bool)
        error = np.zeros(n, bool)
        for c, health in enumerate(self.health):
            samples = pack_samples(qrng_bits[:, c * CORE_BITS:c * CORE_BITS + health.channels])
            out = health.run(samples, taken, clear, rct_cutoff, apt_cutoff)
            fails |= out.fail
            alarm |= out.alarm
            error |= out.settings_error
        fail_cycles = np.minimum(np.cumsum(fails) - fails, (1 << 32) - 1)

        if source == EntropySelect.CSPRNG:
            valid = np.arange(n) >= KEYSTREAM_FIRST_CYCLE
            moved = valid & ready
            used = np.cumsum(moved) - moved                   # words taken before each cycle
            bits = csprng_bits(key, iv, self.width, int(used[-1]) + 1 if n else 0)[used]
            healthy = np.ones(n, bool)
            qrng_ready = np.zeros(n, bool)
        else:
            valid, bits, healthy, qrng_ready = qrng_valid, qrng_bits, ~alarm, ready
        return EntropyOutput(valid=valid, bits=bits, healthy=healthy, qrng_ready=qrng_ready,
                             alarm=alarm, health_fail_cycles=fail_cycles,
                             settings_error=error)
