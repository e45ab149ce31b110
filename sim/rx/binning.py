"""Bit-exact reference model of :class:`timebin.gateware.rx.binning.Binner`, and the packing of
its ports.

Every output is a function of a few cycles of input, so the model is vectorised numpy over
cycles: the accepted delays are a forward fill, the divider's schedule a gather.
"""

from typing import NamedTuple

import numpy as np
from amaranth.hdl import Shape

from ...gateware.records import CLASS_DISCARD
from ...gateware.rx.binning import (
    DISCARD_COUNTER_BITS,
    Binner,
    check_binner_parameters,
    check_windows,
    divider_period,
    z_windows,
)
from ...gateware.rx.layouts import Binned, Hit
from ..words import bits_to_ints, ints_to_bits, pack_field, unpack_field

__all__ = ["pack_slots", "check_slots", "unpack_slots", "pack_hits", "unpack_binned",
           "BinnerOutput", "BinnerModel"]

_DISCARDS_TOP = (1 << DISCARD_COUNTER_BITS) - 1


def pack_slots(layout, fields, shape):
    """Values of an ``ArrayLayout(layout, C)`` port, one int per cycle, from (N, C) arrays of
    the fields of ``layout`` (a ``StructLayout``; missing fields are 0)."""
    n, channels = shape
    bits = np.zeros((n, channels * layout.size), np.uint8)
    for name, values in fields.items():
        values = np.asarray(values, np.uint64)
        if values.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, not {values.shape}")
        field = layout[name]
        width = Shape.cast(field.shape).width
        for k in range(channels):
            pack_field(bits, k * layout.size + field.offset, values[:, k:k + 1], width)
    return bits_to_ints(bits)


def check_slots(shape, fields):
    """``{name: array}`` of per-slot model inputs given as ``(name, values, bits)``: each must
    have ``shape`` and hold integers that fit ``bits``; raises ``ValueError`` naming it."""
    out = {}
    for name, array, bits in fields:
        array = np.asarray(array)
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, not {array.shape}")
        if array.size and (array.min() < 0 or (bits < 64 and array.max() >= 1 << bits)):
            raise ValueError(f"{name} must hold integers in 0..{(1 << bits) - 1}, "
                             f"not {array.min()}..{array.max()}")
        out[name] = array
    return out


def unpack_slots(layout, channels, ints):
    """Inverse of :func:`pack_slots`: ``{field: (N, C) uint64}``."""
    bits = ints_to_bits(ints, channels * layout.size)
    out = {}
    for name, field in layout:
        width = Shape.cast(field.shape).width
        out[name] = np.stack([unpack_field(bits, k * layout.size + field.offset, 1, width)[:, 0]
                              for k in range(channels)], axis=1)
    return out


def pack_hits(uis_per_symbol, valid, symbol, ui, time=None):
    """Values of the ``hits`` port (``ArrayLayout(Hit(S), C)``), one int per cycle, from (N, C)
    arrays of the hit fields (``time`` 0 if not given)."""
    fields = {"valid": valid, "symbol": symbol, "ui": ui}
    if time is not None:
        fields["time"] = time
    return pack_slots(Hit(uis_per_symbol), fields, np.shape(valid))


def unpack_binned(uis_per_symbol, channels, ints):
    """Values of a ``binned`` or ``all_binned`` port -> ``{valid, index, phase, cls: (N, C)}``."""
    return unpack_slots(Binned(uis_per_symbol), channels, ints)


class BinnerOutput(NamedTuple):
    """Per-cycle outputs of :meth:`BinnerModel.run` over ``N`` cycles of ``C`` channels, as the
    gateware shows them in each cycle (before its clock edge).

    ``valid`` (N, C) bool: ``binned.valid``; ``all_valid`` (N, C) bool: ``all_binned.valid``;
    ``index`` (N, C) uint64, ``phase`` (N, C) int64, ``cls`` (N, C) uint8: the fields of both
    ports; ``window_discards`` (N, C) uint32; ``settings_error`` (N,) bool.
    """

    valid: np.ndarray
    all_valid: np.ndarray
    index: np.ndarray
    phase: np.ndarray
    cls: np.ndarray
    window_discards: np.ndarray
    settings_error: np.ndarray


class BinnerModel:
    """Reference model of :class:`~timebin.gateware.rx.binning.Binner`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset).
    """

    #: Cycles from ``hits`` to ``binned`` and ``all_binned``.
    latency = Binner.latency

    def __init__(self, *, channels, uis_per_symbol, max_delay=(1 << 20) - 1):
        check_binner_parameters(channels, uis_per_symbol, max_delay)
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.max_delay = max_delay
        self.delay_bits = int(max_delay).bit_length() or 1
        self.ui_bits = int(uis_per_symbol - 1).bit_length()
        self.divider_period = divider_period(uis_per_symbol, max_delay)

    # --- settings ---

    def _delays(self, delay, n):
        """``delay`` (None, C values, or (N, C)) as (N, C) int64, checked to fit its port."""
        shape = (n, self.channels)
        array = np.zeros(self.channels, np.int64) if delay is None else np.asarray(delay)
        if array.shape == (self.channels,):
            array = np.broadcast_to(array, shape)
        if array.shape != shape:
            raise ValueError(f"delay must have {self.channels} values or shape {shape}, "
                             f"not shape {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"delay must hold integers, not {array.dtype}")
        top = (1 << self.delay_bits) - 1
        bad = (array < 0) | (array > top)
        if bad.any():
            raise ValueError(f"delay must fit its {self.delay_bits}-bit port (0..{top}), not "
                             f"{int(array[bad][0])!r}")
        return array.astype(np.int64)

    def _windows(self, windows, n):
        """``windows`` (None, C lists of S classes, or an (N, C, S) array) as (N, C, S)."""
        C, S = self.channels, self.uis_per_symbol
        if windows is None:
            windows = [z_windows(S)] * C
        if isinstance(windows, np.ndarray) and windows.ndim == 3:
            if windows.shape != (n, C, S):
                raise ValueError(f"Per-cycle windows must have shape {(n, C, S)}, not "
                                 f"{windows.shape}")
            if not np.issubdtype(windows.dtype, np.integer) or windows.size and (
                    windows.min() < 0 or windows.max() > CLASS_DISCARD):
                raise ValueError("Per-cycle windows must hold classes 0..3")
            return windows.astype(np.uint8)
        table = np.array(check_windows(windows, C, S), np.uint8)
        return np.broadcast_to(table, (n, C, S))

    def applied_delays(self, delay, n):
        """``(accepted, error)`` when the ``delay`` port holds ``delay`` (see :meth:`run`):
        ``accepted`` (N, C) the delay each channel accepts in each cycle (the port value, or
        the last accepted one when refused, 0 after reset), ``error`` (N,) ``settings_error``."""
        delay = self._delays(delay, n)
        ok = delay <= self.max_delay
        last = np.where(ok, np.arange(n)[:, None], -1)
        np.maximum.accumulate(last, axis=0, out=last)
        accepted = np.where(last >= 0, np.take_along_axis(delay, np.maximum(last, 0), axis=0),
                            0)
        return accepted, ~ok.all(axis=1)

    def delays_in_use(self, accepted):
        """The delay whose split bins the hits of each cycle, from the accepted delays (N, C):
        the cycle before's (0 in cycle 0) when S is a power of two, else the one the divider
        latched (see :class:`~timebin.gateware.rx.binning.Binner`)."""
        period = self.divider_period
        if period == 0:             # the accepted delay's register: the cycle before's
            return np.concatenate((np.zeros_like(accepted[:1]), accepted[:-1]))[:len(accepted)]
        cycle = np.arange(len(accepted))
        start = (cycle // period - 1) * period
        return np.where((start >= 0)[:, None], accepted[np.maximum(start, 0)], 0)

    # --- run ---

    def run(self, valid, symbol, ui, delay=None, windows=None):
        """Outputs of the gateware for ``N`` cycles from reset, as a :class:`BinnerOutput`.

        ``valid``, ``symbol``, ``ui`` (N, C) are the fields of each channel's ``hits`` slot
        (``ui`` may exceed S - 1 up to the width of the field). ``delay`` is the ``delay`` port:
        C values for the whole run or (N, C), default 0. ``windows`` is the ``windows`` port:
        C lists of S classes for the whole run, or an (N, C, S) array; default
        :func:`~timebin.gateware.rx.binning.z_windows` on every channel.
        """
        C, S = self.channels, self.uis_per_symbol
        valid = np.asarray(valid)
        if valid.ndim != 2 or valid.shape[1] != C:
            raise ValueError(f"valid must have shape (N, {C}), not {valid.shape}")
        n = len(valid)
        fields = check_slots(valid.shape, (("valid", valid, 1), ("symbol", symbol, 64),
                                           ("ui", ui, self.ui_bits)))
        hit_valid = fields["valid"].astype(np.bool_)
        symbol = fields["symbol"].astype(np.uint64)
        ui = fields["ui"].astype(np.int64)
        accepted, error = self.applied_delays(delay, n)
        table = self._windows(windows, n)

        # Stage 1 (registers shown in cycle c + 1 for the hit of cycle c; zero after reset).
        used = self.delays_in_use(accepted)
        dq, dr = used // S, used % S
        borrow = ui < dr
        s1_valid = np.zeros((n + 1, C), np.bool_)
        s1_index = np.zeros((n + 1, C), np.uint64)
        s1_phase = np.zeros((n + 1, C), np.int64)
        s1_valid[1:] = hit_valid
        s1_index[1:] = symbol - dq.astype(np.uint64) - borrow.astype(np.uint64)   # mod 2**64
        s1_phase[1:] = ui - dr + np.where(borrow, S, 0)

        # Stage 2: the window LUT of cycle c + 1; the output registers shown in cycle c + 2.
        phase = s1_phase[:n - 1] if n else s1_phase[:0]
        in_lut = phase < S
        cycle = np.arange(len(phase))[:, None]
        lut = table[cycle, np.arange(C)[None, :], np.where(in_lut, phase, 0)]
        cls2 = np.where(in_lut, lut, CLASS_DISCARD).astype(np.uint8)

        def shifted(values, dtype):
            out = np.zeros((n, C), dtype)
            out[1:] = values
            return out

        all_valid = shifted(s1_valid[:n - 1], np.bool_)
        cls = shifted(cls2, np.uint8)
        discards = all_valid & (cls == CLASS_DISCARD)
        return BinnerOutput(
            valid=all_valid & (cls != CLASS_DISCARD),
            all_valid=all_valid,
            index=shifted(s1_index[:n - 1], np.uint64),
            phase=shifted(phase, np.int64),
            cls=cls,
            # Counted from the output registers: shown a cycle after the slot.
            window_discards=shifted(np.minimum(np.cumsum(discards, axis=0), _DISCARDS_TOP)[:-1],
                                    np.uint32),
            # The checks of the cycle before (they end at registers).
            settings_error=np.concatenate(([False], error[:-1]))[:n],
        )

