"""Bit-exact reference model of :class:`timebin.gateware.rx.histogram.PhaseHistogram`, and the
read sweep that takes a whole histogram out of it.

The bins are a read-modify-write memory and the clear a sweep in time, so the model is one
numba loop over cycles that keeps the memories, the sweep and the two-stage pipeline as the
gateware does. Stimulus for the ``binned`` port is packed with
:func:`timebin.sim.rx.merge.pack_binned`.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ...gateware.records import INDEX_BITS
from ...gateware.rx.histogram import (
    CLICK_COUNTER_BITS,
    PhaseHistogram,
    check_histogram_parameters,
)
from .binning import check_slots

__all__ = ["PhaseHistogramOutput", "PhaseHistogramModel", "read_sweep_schedule",
           "histogram_from_sweep"]

_COUNTER_TOP = (1 << CLICK_COUNTER_BITS) - 1


def read_sweep_schedule(channels, bins, *, settle=0, latency=PhaseHistogram.read_latency):
    """The ``read_channel`` and ``read_bin`` of a read sweep: (M,) int64 arrays, one value per
    cycle, ``M = settle + channels * bins + latency``.

    The first ``settle`` cycles read bin 0 of channel 0 (their data is not used); then every
    bin of channel 0, of channel 1, ...; then ``latency`` cycles for the last data to come
    out. Give the sweep at least ``B`` cycles (:attr:`PhaseHistogram.clear_cycles`) of settle
    after the last slot or ``clear`` reaches the histogram: the last click is written and any
    sweep in progress has ended before the first read. ``latency`` is the read latency seen
    where the sweep is driven (the histogram's own by default).
    """
    total = channels * bins
    read_channel = np.zeros(settle + total + latency, np.int64)
    read_bin = np.zeros_like(read_channel)
    read_channel[settle:settle + total] = np.repeat(np.arange(channels), bins)
    read_bin[settle:settle + total] = np.tile(np.arange(bins), channels)
    return read_channel, read_bin


def histogram_from_sweep(read_data, channels, bins, *, settle=0,
                         latency=PhaseHistogram.read_latency):
    """The (C, B) uint64 histogram from the ``read_data`` of the cycles of a sweep made with
    :func:`read_sweep_schedule` (same arguments; ``read_data`` starts with the sweep's first
    cycle)."""
    read_data = np.asarray(read_data, np.uint64)
    total = channels * bins
    if len(read_data) < settle + total + latency:
        raise ValueError(f"A read sweep of {channels} x {bins} bins takes "
                         f"{settle + total + latency} cycles, not {len(read_data)}")
    start = settle + latency
    return read_data[start:start + total].reshape(channels, bins)


class PhaseHistogramOutput(NamedTuple):
    """Outputs of :meth:`PhaseHistogramModel.run` over ``N`` cycles of ``C`` channels.

    Per cycle, as the gateware shows them in each cycle (before its clock edge):
    ``read_data`` (N,) uint64, ``clearing`` (N,) bool, ``counted`` and ``dropped`` (N, C)
    uint32. ``bins`` (C, B) uint64: the bins after the run, once the last click is written
    and any sweep in progress has ended (what a read sweep after the run reads, with no more
    clicks and no ``clear``).
    """

    read_data: np.ndarray
    clearing: np.ndarray
    counted: np.ndarray
    dropped: np.ndarray
    bins: np.ndarray


@njit(cache=True)
def _run(add, refused, address, clear, read_channel, read_bin, top, tail,
         memory, read_data, clearing, counted, dropped):
    n, channels = add.shape
    bins = memory.shape[1]
    one = np.uint64(1)
    sweeping, sweep_bin = True, 0                   # a reset starts a sweep
    held_add = np.zeros(channels, np.bool_)         # stage 2: the slots of the cycle before
    held_refused = np.zeros(channels, np.bool_)
    held_bin = np.zeros(channels, np.int64)
    clicks = np.zeros(channels, np.int64)
    lost = np.zeros(channels, np.int64)
    out_1, out_2 = np.uint64(0), np.uint64(0)       # read data one and two cycles on
    for c in range(n + tail):
        live = c < n
        if live:
            read_data[c] = out_2
            clearing[c] = sweeping
            counted[c] = clicks
            dropped[c] = lost
            # The host read samples the memories before this cycle's writes.
            out_2 = out_1
            k, b = read_channel[c], read_bin[c]
            out_1 = memory[k, b] if k < channels and b < bins else np.uint64(0)

        restart = live and clear[c]
        for k in range(channels):
            if sweeping:
                memory[k, sweep_bin] = 0
            elif held_add[k]:
                count = memory[k, held_bin[k]]
                if count != top:
                    memory[k, held_bin[k]] = count + one
            if held_refused[k] or (held_add[k] and sweeping):
                if lost[k] < _COUNTER_TOP:
                    lost[k] += 1
            if restart:
                clicks[k] = 0
            elif held_add[k] and not sweeping and clicks[k] < _COUNTER_TOP:
                clicks[k] += 1
            held_add[k] = live and add[c, k]
            held_refused[k] = live and refused[c, k]
            held_bin[k] = address[c, k] if live else 0

        if restart:
            sweeping, sweep_bin = True, 0
        elif sweeping:
            sweeping = sweep_bin != bins - 1
            sweep_bin = 0 if sweep_bin == bins - 1 else sweep_bin + 1


class PhaseHistogramModel:
    """Reference model of :class:`~timebin.gateware.rx.histogram.PhaseHistogram`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset),
    with the memories zero at the start, as after configuration (the reset sweep zeroes them
    anyway).
    """

    #: Cycles from ``read_channel`` and ``read_bin`` to ``read_data``.
    read_latency = PhaseHistogram.read_latency
    #: Cycles from a slot on ``binned`` to ``counted`` and ``dropped``.
    count_latency = PhaseHistogram.count_latency

    def __init__(self, *, channels, uis_per_symbol, period_symbols=1, count_bits=32):
        check_histogram_parameters(channels, uis_per_symbol, period_symbols, count_bits)
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.period_symbols = period_symbols
        self.count_bits = count_bits
        #: Bins per channel, ``P * S``.
        self.bins = period_symbols * uis_per_symbol
        #: Cycles a sweep lasts.
        self.clear_cycles = self.bins
        self.phase_bits = int(uis_per_symbol - 1).bit_length()
        self.channel_bits = int(channels - 1).bit_length() or 1
        self.bin_bits = int(self.bins - 1).bit_length()

    def bin_of(self, index, phase):
        """The bin of clicks of ``index`` and ``phase`` (arrays): ``(index mod P) * S + phase``
        (meaningful for ``phase < S``)."""
        index = np.asarray(index, np.uint64)
        period = index % np.uint64(self.period_symbols)
        return period.astype(np.int64) * self.uis_per_symbol + np.asarray(phase, np.int64)

    def _per_cycle(self, name, value, n, bits):
        array = np.zeros(n, np.int64) if value is None else np.asarray(value)
        if array.ndim == 0:
            array = np.full(n, array)
        if array.shape != (n,):
            raise ValueError(f"{name} must be a scalar or {n} values, not of shape "
                             f"{array.shape}")
        if array.size and (array.min() < 0 or array.max() >= 1 << bits):
            raise ValueError(f"{name} must hold integers in 0..{(1 << bits) - 1}, "
                             f"not {array.min()}..{array.max()}")
        return array.astype(np.int64)

    def run(self, valid, index, phase, *, clear=None, read_channel=None, read_bin=None):
        """Outputs of the gateware for ``N`` cycles from reset, as a
        :class:`PhaseHistogramOutput`.

        ``valid``, ``index``, ``phase`` (N, C) are the fields of each channel's ``binned``
        slot (``phase`` may exceed S - 1 up to the width of the field). ``clear``,
        ``read_channel``, ``read_bin`` are the ports, N values or one for every cycle
        (default 0).
        """
        C = self.channels
        valid = np.asarray(valid)
        if valid.ndim != 2 or valid.shape[1] != C:
            raise ValueError(f"valid must have shape (N, {C}), not {valid.shape}")
        n = len(valid)
        fields = check_slots(valid.shape, (("valid", valid, 1), ("index", index, INDEX_BITS),
                                           ("phase", phase, self.phase_bits)))
        slot_valid = fields["valid"].astype(np.bool_)
        phase = fields["phase"].astype(np.int64)
        bad = phase >= self.uis_per_symbol
        address = np.where(bad, 0, self.bin_of(fields["index"], phase))
        clear = self._per_cycle("clear", clear, n, 1).astype(np.bool_)
        read_channel = self._per_cycle("read_channel", read_channel, n, self.channel_bits)
        read_bin = self._per_cycle("read_bin", read_bin, n, self.bin_bits)

        memory = np.zeros((C, self.bins), np.uint64)
        read_data = np.zeros(n, np.uint64)
        clearing = np.zeros(n, np.bool_)
        counted = np.zeros((n, C), np.int64)
        dropped = np.zeros((n, C), np.int64)
        top = np.uint64((1 << self.count_bits) - 1)
        # Idle cycles after the run write the last click and end a sweep in progress.
        _run(slot_valid & ~bad, slot_valid & bad, address, clear, read_channel, read_bin,
             top, self.bins + 1, memory, read_data, clearing, counted, dropped)
        return PhaseHistogramOutput(
            read_data=read_data,
            clearing=clearing,
            counted=counted.astype(np.uint32),
            dropped=dropped.astype(np.uint32),
            bins=memory,
        )
