"""Bit-exact reference model of :class:`timebin.gateware.tx.entropy.EntropySource`."""

from typing import NamedTuple

import numpy as np

from ...gateware.common import check_int
from ...gateware.tx.entropy import CORE_BITS, EntropySelect, check_core_bits, core_count
from ...gateware.tx.trivium import warmup_cycles
from .health import HealthTestsModel, pack_samples
from .trivium import trivium_words

__all__ = ["KEYSTREAM_FIRST_CYCLE", "keystream_first_cycle", "csprng_bits", "EntropyOutput",
           "EntropySourceModel"]


def keystream_first_cycle(core_bits=CORE_BITS):
    """First cycle after reset in which the keystream of cores of ``core_bits`` is valid: the
    cores load in cycle 0, then spend ``1152 / core_bits + 1`` cycles warming up
    (:func:`~timebin.gateware.tx.trivium.warmup_cycles`)."""
    check_core_bits(core_bits)
    return 1 + warmup_cycles(core_bits)


#: :func:`keystream_first_cycle` of the default 64-bit cores (20).
KEYSTREAM_FIRST_CYCLE = keystream_first_cycle()


def csprng_bits(key, iv, width, n, core_bits=CORE_BITS):
    """The first ``n`` entropy words of the CSPRNG, as (n, width) uint8 bits, LSB first:
    word ``k`` holds bits ``[B k, B k + B)`` of each core's keystream (``B = core_bits``),
    core ``c`` (IV ``iv ^ c``) at bits ``[B c, B c + B)`` of the word."""
    check_int("Entropy width", width, minimum=1)
    check_core_bits(core_bits)
    cores = core_count(width, core_bits)
    words64 = -(-n * core_bits // 64)
    per_core = []
    for c in range(cores):
        raw = trivium_words(key, iv ^ c, words64).astype("<u8").view(np.uint8)
        bits = np.unpackbits(raw, bitorder="little")[:n * core_bits]
        per_core.append(bits.reshape(n, core_bits))
    if not per_core:
        return np.zeros((n, width), np.uint8)
    return np.concatenate(per_core, axis=1)[:, :width]


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

    def __init__(self, width, *, health_window=1024, h_min=1.0, alpha=2**-40,
                 core_bits=CORE_BITS):
        check_int("Entropy width", width, minimum=1)
        check_core_bits(core_bits)
        self.width = width
        self.cores = core_count(width)
        self.core_bits = core_bits
        self.keystream_first_cycle = keystream_first_cycle(core_bits)
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
            valid = np.arange(n) >= self.keystream_first_cycle
            moved = valid & ready
            used = np.cumsum(moved) - moved                   # words taken before each cycle
            bits = csprng_bits(key, iv, self.width, int(used[-1]) + 1 if n else 0,
                               self.core_bits)[used]
            healthy = np.ones(n, bool)
            qrng_ready = np.zeros(n, bool)
        else:
            valid, bits, healthy, qrng_ready = qrng_valid, qrng_bits, ~alarm, ready
        return EntropyOutput(valid=valid, bits=bits, healthy=healthy, qrng_ready=qrng_ready,
                             alarm=alarm, health_fail_cycles=fail_cycles,
                             settings_error=error)
