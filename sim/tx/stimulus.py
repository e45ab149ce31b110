"""Reproducible per-cycle stimulus of the transmitter top, shared by the Amaranth-simulator
tests, the cocotb testbench (``timebin.sim.cocotb.tb_tx_top``) and the model.

Both sides of a comparison call :func:`tx_stimulus` with the same ``(n, seed, entropy_width,
qrng)`` and get the same arrays, so only those four values need to cross into a simulator
process.
"""

import numpy as np

from ...gateware.tx.entropy import CORE_BITS

__all__ = ["RCT_CUTOFF", "tx_stimulus"]

#: Repetition-count cutoff of the health tests at the default ``alpha = 2**-40``.
RCT_CUTOFF = 41


def _gaps(rng, n, rate, min_len, max_len):
    """(N,) bool: True in gaps that start with probability ``rate`` a cycle and last
    ``min_len..max_len`` cycles."""
    mask = np.zeros(n, bool)
    for start in np.flatnonzero(rng.random(n) < rate):
        mask[start:start + int(rng.integers(min_len, max_len + 1))] = True
    return mask


def tx_stimulus(n, seed, entropy_width, qrng=False):
    """Per-cycle inputs of the transmitter top for ``n`` cycles, deterministic in ``seed``.

    Returns a dict of numpy arrays, keyword arguments of :meth:`TransmitterModel.run` and
    :func:`~timebin.sim.tx.rtl.run_transmitter`:

    ``enable`` (N,) bool
        High about 95% of the time: gaps of 1 to 16 cycles start at 0.3% of the cycles.
    ``log_ready`` (N,) bool
        Random, high with probability 0.7 (the log FIFO fills and drops words).
    ``alarm_clear`` (N,) bool
        Rare one-cycle pulses (0.1% of the cycles); with ``qrng``, also one pulse 20 to 300
        cycles after each stuck stretch, so the alarm is raised and cleared repeatedly.
    ``qrng_valid`` (N,) bool and ``qrng_bits`` (N, entropy_width) uint8, only with ``qrng``
        Valid about 90% of the time; uniform random bits, except for about one stuck stretch
        per 700 cycles (at least one when ``n >= 200``), all ones or all zeros, long enough
        that each health-test core sees at least twice the RCT cutoff of equal samples.
    """
    n = int(n)
    rng = np.random.default_rng(seed)
    out = {
        "enable": ~_gaps(rng, n, 0.003, 1, 16),
        "log_ready": rng.random(n) < 0.7,
        "alarm_clear": rng.random(n) < 0.001,
    }
    if not qrng:
        return out
    width = int(entropy_width)
    valid = rng.random(n) < 0.9
    bits = rng.integers(0, 2, (n, width), dtype=np.uint8)
    # The narrowest health-test core sees the fewest samples a cycle; qrng_valid gaps take
    # about one cycle in ten, hence the margin.
    core = min(CORE_BITS, width - (width - 1) // CORE_BITS * CORE_BITS) or CORE_BITS
    stuck_cycles = -(-2 * RCT_CUTOFF // core) + 3
    count = max(1 if n >= 200 else 0, n // 700)
    if count:
        starts = np.sort(rng.choice(np.arange(50, max(51, n - stuck_cycles - 50)),
                                    size=count, replace=False))
        for start in starts:
            bits[start:start + stuck_cycles, :] = rng.integers(0, 2)
            clear = start + stuck_cycles + int(rng.integers(20, 301))
            if clear < n:
                out["alarm_clear"][clear] = True
    out["qrng_valid"] = valid
    out["qrng_bits"] = bits
    return out
