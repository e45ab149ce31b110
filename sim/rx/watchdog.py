"""Bit-exact reference model of :class:`timebin.gateware.rx.watchdog.Watchdog`.

The window logic is sequential (a window's end depends on every ``clear`` before it), so the
model is one numba loop over cycles, written as the gateware's docstring states the rules.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ...gateware.rx.watchdog import (
    FILL_SCALE,
    TRIP_COUNTER_BITS,
    Watchdog,
    check_watchdog_parameters,
)

__all__ = ["WatchdogOutput", "WatchdogModel"]

_TRIPS_TOP = (1 << TRIP_COUNTER_BITS) - 1
#: Cycles from an input to the cycle the gateware acts on it (its input registers).
_INPUT_DELAY = Watchdog.input_latency
#: Cycles from the fill check (the cycle after a window ends) to its trip.
_FILL_DELAY = Watchdog.fill_latency - _INPUT_DELAY - 2


class WatchdogOutput(NamedTuple):
    """Per-cycle outputs of :meth:`WatchdogModel.run` over ``N`` cycles of ``C`` channels, as
    the gateware shows them in each cycle (before its clock edge).

    ``alarm`` and ``settings_error`` (N,) bool; ``alarm_channels`` (N, C) bool, column ``k``
    is bit ``k`` of the port; ``trips`` (N,) uint32.
    """

    alarm: np.ndarray
    alarm_channels: np.ndarray
    trips: np.ndarray
    settings_error: np.ndarray


@njit(cache=True)
def _run(clicks, gate_starts, clear, window, max_clicks, max_fill, max_window, fill_delay,
         start, alarm, alarm_channels, trips, settings_error):
    n, channels = clicks.shape
    applied_window, applied_fill = max_window, FILL_SCALE
    elapsed = start                                 # cycles of this window before this one
    counts = np.zeros(channels, np.int64)           # clicks of this window so far
    gates = np.zeros(channels, np.int64)
    rate_tripped = np.zeros(channels, np.bool_)
    total_clicks = np.zeros(channels, np.int64)     # of the last window that ended
    total_gates = np.zeros(channels, np.int64)
    pending, fill_limit = False, FILL_SCALE
    latched = np.zeros(channels, np.bool_)
    trip = np.zeros(channels, np.bool_)
    # Fill checks made but not yet tripped: row j trips FILL_DELAY - j cycles from now.
    # (An argument, not the module's constant: numba's cache would keep a stale global.)
    fill_pipe = np.zeros((fill_delay, channels), np.bool_)
    trip_count = 0
    for c in range(n):
        # Settings: a refused value leaves the last accepted one in use; an accepted
        # `window` acts from the next cycle, the others at once.
        window_in_use = applied_window
        window_ok = 1 <= window[c] <= max_window
        fill_ok = max_fill[c] <= FILL_SCALE
        if window_ok:
            applied_window = window[c]
        if fill_ok:
            applied_fill = max_fill[c]
        settings_error[c] = not (window_ok and fill_ok)      # `run` puts in the ports' checks
        alarm[c] = latched.any()
        alarm_channels[c] = latched
        trips[c] = trip_count

        position = 0 if clear[c] else elapsed
        last = position + 1 >= window_in_use
        # The fill check of the window that ended in the previous cycle trips FILL_DELAY
        # cycles later (the pipeline of the gateware).
        fill_due = pending and not clear[c] and fill_limit != FILL_SCALE
        for k in range(channels):
            trip[k] = fill_pipe[0, k]
        for j in range(fill_delay - 1):
            fill_pipe[j] = fill_pipe[j + 1]
        for k in range(channels):
            fill_pipe[fill_delay - 1, k] = (
                fill_due and total_gates[k] != 0
                and total_clicks[k] * FILL_SCALE > fill_limit * total_gates[k])
        pending = last
        if last:
            fill_limit = applied_fill
        for k in range(channels):
            click = clicks[c, k]
            new_clicks = (0 if clear[c] else counts[k]) + click
            new_gates = (0 if clear[c] else gates[k]) + gate_starts[c, k]
            tripped = rate_tripped[k] and not clear[c]
            rate_trip = click and not tripped and new_clicks > max_clicks[c]
            trip[k] = trip[k] or rate_trip
            if last:
                counts[k], gates[k], rate_tripped[k] = 0, 0, False
                total_clicks[k], total_gates[k] = new_clicks, new_gates
            else:
                counts[k], gates[k], rate_tripped[k] = new_clicks, new_gates, tripped or rate_trip
            latched[k] = (latched[k] and not clear[c]) or trip[k]
        if trip.any() and trip_count < _TRIPS_TOP:
            trip_count += 1
        elapsed = 0 if last else position + 1


class WatchdogModel:
    """Reference model of :class:`~timebin.gateware.rx.watchdog.Watchdog`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset).

    The gateware registers its inputs: the model runs its rules on the inputs delayed by
    :attr:`input_latency` cycles (``max_clicks`` one cycle more), the ports' reset values in
    the first cycles (which do not count in the first window); ``settings_error`` shows the
    checks one cycle late.
    """

    #: Cycles from the click that trips the rate check to ``alarm``.
    rate_latency = Watchdog.rate_latency
    #: Cycles from the last cycle of a window that trips the fill check to ``alarm``.
    fill_latency = Watchdog.fill_latency
    #: Cycles from a ``clear`` to the first cycle without the alarms it drops.
    clear_latency = Watchdog.clear_latency
    #: Cycles from an input to the cycle the gateware acts on it.
    input_latency = Watchdog.input_latency

    def __init__(self, *, channels, gate_count_bits=6, max_window=1 << 24):
        check_watchdog_parameters(channels, gate_count_bits, max_window)
        self.channels = channels
        self.gate_count_bits = gate_count_bits
        self.max_window = max_window
        self.count_bits = int(max_window).bit_length()

    def _per_cycle(self, name, value, n, default, port_bits):
        """``value`` (None, a scalar or N values) as (N,) int64, checked to fit its port."""
        array = np.asarray(default if value is None else value)
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

    def run(self, clicks, gate_starts, clear=None, window=None, max_clicks=None,
            max_fill=None):
        """Outputs of the gateware for ``N`` cycles from reset, as a :class:`WatchdogOutput`.

        ``clicks`` (N, C) of 0/1 and ``gate_starts`` (N, C) are the per-channel inputs of each
        cycle; ``clear`` is N bools or one for every cycle (default low); ``window``,
        ``max_clicks`` and ``max_fill`` are the port values, N ints or one for every cycle, by
        default the port's ``init``.
        """
        clicks = np.asarray(clicks)
        gate_starts = np.asarray(gate_starts)
        if clicks.ndim != 2 or clicks.shape[1] != self.channels:
            raise ValueError(f"clicks must have shape (N, {self.channels}), not "
                             f"{clicks.shape}")
        if gate_starts.shape != clicks.shape:
            raise ValueError(f"gate_starts must have shape {clicks.shape}, not "
                             f"{gate_starts.shape}")
        for name, array, bits in (("clicks", clicks, 1),
                                  ("gate_starts", gate_starts, self.gate_count_bits)):
            if array.size and (array.min() < 0 or array.max() >= 1 << bits):
                raise ValueError(f"{name} must hold integers in 0..{(1 << bits) - 1}, "
                                 f"not {array.min()}..{array.max()}")
        n = len(clicks)
        clear = self._per_cycle("clear", clear, n, 0, 1).astype(np.bool_)
        window = self._per_cycle("window", window, n, self.max_window, self.count_bits)
        max_clicks = self._per_cycle("max_clicks", max_clicks, n, self.max_window,
                                     self.count_bits)
        max_fill = self._per_cycle("max_fill", max_fill, n, FILL_SCALE,
                                   FILL_SCALE.bit_length())
        # `settings_error` shows the checks of the cycle before (they end at registers).
        refused = ~((window >= 1) & (window <= self.max_window) & (max_fill <= FILL_SCALE))
        settings_error = np.concatenate(([False], refused[:-1]))[:n]
        # The input registers: each input as of `_INPUT_DELAY` cycles before, the reset
        # values (the ports' init) before cycle 0; the first window starts with cycle 0's
        # inputs (`start`: the cycles before do not count).
        def delayed(array, init):
            head = np.full((_INPUT_DELAY,) + array.shape[1:], init, array.dtype)
            return np.concatenate([head, array])[:n]

        clicks = delayed(clicks.astype(np.int64), 0)
        gate_starts = delayed(gate_starts.astype(np.int64), 0)
        clear = delayed(clear, False)
        window = delayed(window, self.max_window)
        # `max_clicks` acts from the cycle after it is presented (a register in front of the
        # input register).
        max_clicks = delayed(delayed(max_clicks, self.max_window), self.max_window)
        max_fill = delayed(max_fill, FILL_SCALE)
        out = WatchdogOutput(
            alarm=np.zeros(n, np.bool_),
            alarm_channels=np.zeros((n, self.channels), np.bool_),
            trips=np.zeros(n, np.uint32),
            settings_error=np.zeros(n, np.bool_),
        )
        _run(clicks, gate_starts, clear, window, max_clicks,
             max_fill, self.max_window, _FILL_DELAY, -_INPUT_DELAY, *out)
        out.settings_error[:] = settings_error
        return out
