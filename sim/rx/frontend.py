"""Bit-exact reference model of :class:`timebin.gateware.rx.frontend.ClickFrontEnd`.

The dead time is sequential (a click's fate depends on every accepted click before it), so
edges and dead time are one numba loop over cycles, written as the gateware's docstring
states the rules; the gates follow the formula in Bob's time directly, not the gateware's
engine. Everything else is numpy.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ...gateware.rx.frontend import (
    COUNTER_BITS,
    DEFAULT_MAX_DEAD_TIME,
    ClickFrontEnd,
    DeadTimeMode,
    check_frontend_parameters,
    gate_frame_cycles,
)

__all__ = ["ClickFrontEndOutput", "ClickFrontEndModel"]

_COUNTER_TOP = (1 << COUNTER_BITS) - 1


class ClickFrontEndOutput(NamedTuple):
    """Per-cycle outputs of :meth:`ClickFrontEndModel.run` over ``N`` cycles of ``C``
    channels of ``W`` UIs, as the gateware shows them in each cycle (before its clock edge).

    ``valid`` (N, C) bool, ``time`` and ``symbol`` (N, C) uint64, ``ui`` (N, C) uint16: the
    ``hits`` slots (fields zero where ``valid`` is low). ``clicks`` and ``dead_discards``
    (N, C) uint32. ``gates`` (N, C, W) uint8, UI 0 first; ``gate_starts`` (N, C) uint16.
    ``settings_error`` (N,) bool.
    """

    valid: np.ndarray
    time: np.ndarray
    symbol: np.ndarray
    ui: np.ndarray
    clicks: np.ndarray
    dead_discards: np.ndarray
    gates: np.ndarray
    gate_starts: np.ndarray
    settings_error: np.ndarray


@njit(cache=True)
def _dead_time(samples, dead_time, common, accepted, first_ui, edge_count):
    """Edges and dead time of each word: ``accepted[c, k]`` and the UI ``first_ui[c, k]`` of
    the accepted click, ``edge_count[c, k]`` the rising edges."""
    n, channels, uis = samples.shape
    last = np.zeros(channels, np.uint8)
    dead_left = np.zeros(channels, np.int64)    # leading UIs of this word still dead
    first = np.empty(channels, np.int64)
    was_common = True                           # the mode's reset value
    for c in range(n):
        if common[c] and not was_common:
            # A switch to COMMON: an interval of D UIs from the word's first UI, everywhere.
            dead_left[:] = dead_time[c]
        was_common = common[c]
        for k in range(channels):
            previous = last[k]
            count, found = 0, -1
            for u in range(uis):
                sample = samples[c, k, u]
                if sample and not previous:
                    count += 1
                    if found < 0 and u >= dead_left[k]:
                        found = u
                previous = sample
            last[k] = previous
            edge_count[c, k] = count
            first[k] = found
        extra = dead_time[c] - uis
        if common[c]:
            earliest = -1
            for k in range(channels):
                if first[k] >= 0 and (earliest < 0 or first[k] < earliest):
                    earliest = first[k]
            for k in range(channels):
                if earliest >= 0:
                    accepted[c, k] = first[k] == earliest
                    first_ui[c, k] = earliest
                    dead_left[k] = earliest + extra
                else:
                    dead_left[k] = max(dead_left[k] - uis, 0)
        else:
            for k in range(channels):
                if first[k] >= 0:
                    accepted[c, k] = True
                    first_ui[c, k] = first[k]
                    dead_left[k] = first[k] + extra
                else:
                    dead_left[k] = max(dead_left[k] - uis, 0)


@njit(cache=True)
def _gates(enable, period, offset, width, uis, frame, gates, gate_starts):
    """Gate words: the settings sampled in cycle ``j * frame`` (row ``j`` of the arrays)
    govern cycles ``(j + 1) * frame ...``; before that the gates are off."""
    n, channels, _ = gates.shape
    for c in range(frame, n):
        j = c // frame - 1
        for k in range(channels):
            if not enable[j, k]:
                continue
            p, o, w = period[j, k], offset[j, k], width[j, k]
            phase = (c * uis - o) % p
            starts = 0
            for u in range(uis):
                gates[c, k, u] = phase < w
                if phase == 0:
                    starts += 1
                phase += 1
                if phase == p:
                    phase = 0
            gate_starts[c, k] = starts


def _last_accepted(values, ok, init):
    """Per cycle: ``values`` where ``ok``, else the last value that was ok (``init`` before).
    ``values`` and ``ok`` have cycles on axis 0."""
    n = len(ok)
    index = np.where(ok, np.arange(n).reshape((n,) + (1,) * (ok.ndim - 1)), -1)
    index = np.maximum.accumulate(index, axis=0)
    taken = np.take_along_axis(values, np.maximum(index, 0), axis=0)
    return np.where(index >= 0, taken, init)


class ClickFrontEndModel:
    """Reference model of :class:`~timebin.gateware.rx.frontend.ClickFrontEnd`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset).
    """

    #: Cycles from the word on ``samples`` to its ``hits``, and until it is counted.
    latency = ClickFrontEnd.latency
    discard_latency = ClickFrontEnd.discard_latency

    def __init__(self, *, channels, lanes, uis_per_symbol,
                 max_dead_time=DEFAULT_MAX_DEAD_TIME, max_gate_period=256):
        check_frontend_parameters(channels, lanes, uis_per_symbol, max_dead_time,
                                  max_gate_period)
        self.channels = channels
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.uis_per_word = lanes * uis_per_symbol
        self.max_dead_time = max_dead_time
        self.max_gate_period = max_gate_period
        #: Cycles per frame of the gate engine.
        self.gate_frame = gate_frame_cycles(self.uis_per_word)

    def _setting(self, name, value, n, default, port_bits, per_channel):
        """``value`` as (N,) or (N, C) int64: None (``default``), a scalar, C values (per
        channel), N values (per cycle) or (N, C); checked to fit its port."""
        C = self.channels
        array = np.asarray(default if value is None else value)
        if per_channel:
            if array.ndim == 0 or array.shape == (C,):
                array = np.broadcast_to(array, (n, C))
            want = (n, C)
        else:
            if array.ndim == 0:
                array = np.broadcast_to(array, (n,))
            want = (n,)
        if array.shape != want:
            shapes = f"a scalar, {C} values or shape {want}" if per_channel else \
                f"a scalar or {n} values"
            raise ValueError(f"{name} must be {shapes}, not of shape {array.shape}")
        if array.size and not np.issubdtype(array.dtype, np.integer) \
                and array.dtype != np.bool_:
            raise ValueError(f"{name} must hold integers, not {array.dtype}")
        array = array.astype(np.int64)
        bad = (array < 0) | (array >= 1 << port_bits)
        if bad.any():
            raise ValueError(f"{name} must fit its {port_bits}-bit port, not "
                             f"{int(array[bad][0])!r}")
        return array

    def run(self, samples, *, epoch_load=None, epoch=None, dead_time=None, dead_mode=None,
            gate_enable=None, gate_period=None, gate_offset=None, gate_width=None):
        """Outputs of the gateware for ``N`` cycles from reset, as a
        :class:`ClickFrontEndOutput`.

        ``samples`` (N, C, W) of 0/1, integers or bools: the words taken, UI 0 first.
        ``epoch_load`` (N,) bools and ``epoch`` (N,) uint64 per cycle (default: never
        loaded). The settings are port values, by default the port's ``init``: ``dead_time``
        and ``dead_mode`` a scalar or N values; ``gate_enable``, ``gate_period``,
        ``gate_offset`` and ``gate_width`` a scalar, C values (one per channel) or an (N, C)
        array.
        """
        C, L, S, W = self.channels, self.lanes, self.uis_per_symbol, self.uis_per_word
        samples = np.asarray(samples)
        if samples.ndim != 3 or samples.shape[1:] != (C, W):
            raise ValueError(f"samples must have shape (N, {C}, {W}), not {samples.shape}")
        if samples.dtype != np.bool_ and not np.issubdtype(samples.dtype, np.integer):
            raise ValueError(f"samples must hold integers, not {samples.dtype}")
        if samples.size and (samples.min() < 0 or samples.max() > 1):
            raise ValueError(f"samples must hold 0 or 1, not {samples.min()}..{samples.max()}")
        n = len(samples)
        if isinstance(dead_mode, DeadTimeMode):
            dead_mode = dead_mode.value
        dead_bits = int(self.max_dead_time).bit_length()
        gate_bits = int(self.max_gate_period * S).bit_length()
        epoch_load = self._setting("epoch_load", epoch_load, n, 0, 1, False).astype(bool)
        if epoch is None:
            epoch = np.zeros(n, np.uint64)
        epoch = np.asarray(epoch, np.uint64)
        if epoch.shape != (n,):
            raise ValueError(f"epoch must have shape ({n},), not {epoch.shape}")
        dead_time = self._setting("dead_time", dead_time, n, W, dead_bits, False)
        dead_mode = self._setting("dead_mode", dead_mode, n, DeadTimeMode.COMMON.value, 1,
                                  False)
        gate_enable = self._setting("gate_enable", gate_enable, n, 0, 1, True)
        gate_period = self._setting("gate_period", gate_period, n, 1,
                                    int(self.max_gate_period).bit_length(), True)
        gate_offset = self._setting("gate_offset", gate_offset, n, 0, gate_bits, True)
        gate_width = self._setting("gate_width", gate_width, n, S // 2, gate_bits, True)

        # Settings: refused values leave the last accepted one in use.
        dead_ok = (dead_time >= W) & (dead_time <= self.max_dead_time)
        # An accepted dead time acts from the next cycle (the gateware keeps it in registers).
        dead_in_use = np.concatenate(([W], _last_accepted(dead_time, dead_ok, W)[:-1])) \
            if n else dead_time
        period_uis = gate_period * S
        gate_ok = ((gate_period >= 1) & (gate_period <= self.max_gate_period)
                   & (gate_width >= 1) & (gate_width <= period_uis) & (gate_offset < period_uis))
        # `settings_error` shows the checks of the cycle before (they end at registers).
        refused = ~dead_ok | ~gate_ok.all(axis=1)
        settings_error = np.concatenate(([False], refused[:-1]))[:n]

        # Edges and dead time, then the pipeline.
        accepted = np.zeros((n, C), np.bool_)
        first_ui = np.zeros((n, C), np.int64)
        edge_count = np.zeros((n, C), np.int64)
        _dead_time(samples.astype(np.uint8), dead_in_use, dead_mode.astype(np.bool_),
                   accepted, first_ui, edge_count)

        # Symbol counter of each word: `epoch` of the last load before it, plus L per cycle.
        cycles = np.arange(n, dtype=np.int64)
        loads = np.where(epoch_load, cycles, -1)
        last_load = np.concatenate(([-1], np.maximum.accumulate(loads)[:-1])) if n else loads
        since = np.where(last_load >= 0, cycles - last_load - 1, cycles).astype(np.uint64)
        base = np.where(last_load >= 0, epoch[np.maximum(last_load, 0)], np.uint64(0))
        word_symbol = base + since * np.uint64(L)
        word_time = cycles.astype(np.uint64) * np.uint64(W)

        delay = self.latency
        valid = np.zeros((n, C), np.bool_)
        time = np.zeros((n, C), np.uint64)
        symbol = np.zeros((n, C), np.uint64)
        ui = np.zeros((n, C), np.uint16)
        if n > delay:
            ok = accepted[:n - delay]
            u = first_ui[:n - delay].astype(np.uint64)
            valid[delay:] = ok
            time[delay:] = np.where(ok, word_time[:n - delay, None] + u, 0)
            symbol[delay:] = np.where(ok, word_symbol[:n - delay, None] + u // np.uint64(S), 0)
            ui[delay:] = np.where(ok, u % np.uint64(S), 0)
        clicks = np.zeros((n, C), np.uint32)
        dead_discards = np.zeros((n, C), np.uint32)
        if n > delay:
            total = np.cumsum(edge_count[:n - delay], axis=0)
            lost = np.cumsum(edge_count[:n - delay] - accepted[:n - delay], axis=0)
            clicks[delay:] = np.minimum(total, _COUNTER_TOP)
            # A cycle later than the hits (ClickFrontEnd.discard_latency).
            later = self.discard_latency - delay
            dead_discards[delay + later:] = np.minimum(lost[:len(lost) - later], _COUNTER_TOP)

        # Gates: the settings in use at each frame start.
        frame = self.gate_frame
        sampled = np.arange(0, n, frame)
        in_use = {}
        for name, values, init in (("period", gate_period, 1), ("offset", gate_offset, 0),
                                   ("width", gate_width, S // 2)):
            in_use[name] = _last_accepted(values, gate_ok, init)[sampled] if n else values
        gates = np.zeros((n, C, W), np.uint8)
        gate_starts = np.zeros((n, C), np.uint16)
        _gates(gate_enable[sampled].astype(np.bool_), in_use["period"] * S, in_use["offset"],
               in_use["width"], W, frame, gates, gate_starts)

        return ClickFrontEndOutput(
            valid=valid, time=time, symbol=symbol, ui=ui,
            clicks=clicks, dead_discards=dead_discards,
            gates=gates, gate_starts=gate_starts,
            settings_error=settings_error,
        )
