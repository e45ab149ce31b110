"""Bit-exact reference model of :class:`timebin.gateware.tx.driver.TimeBinDriver`.

Vectorised over cycles: one numpy pass per run, no Python loop per cycle.
"""

from typing import NamedTuple

import numpy as np

from ...gateware.tx.driver import (
    IM_LEVELS,
    PM_LEVELS,
    TimeBinDriver,
    check_driver_parameters,
    default_im_levels,
    default_pm_levels,
    im_level_index,
    pm_level_index,
)

__all__ = ["SETTING_NAMES", "TimeBinDriverOutput", "TimeBinDriverModel"]

#: The settings of the driver, named as its ports.
SETTING_NAMES = ("pulse_offset", "pulse_width", "im_levels", "im_idle", "pm_levels",
                 "delay_carver", "delay_im", "delay_pm")


class TimeBinDriverOutput(NamedTuple):
    """Per-cycle outputs of :meth:`TimeBinDriverModel.run`, ``N`` cycles of ``L * S`` UIs.

    ``carver`` (N, L*S) uint8, ``im`` (N, L*S) uint8 or uint16, ``pm`` (N, L*S) uint8, UI 0
    first; ``valid`` (N,) bool, ``o_ser.valid``; ``settings_error`` (N,) bool.
    """

    carver: np.ndarray
    im: np.ndarray
    pm: np.ndarray
    valid: np.ndarray
    settings_error: np.ndarray


class TimeBinDriverModel:
    """Reference model of :class:`~timebin.gateware.tx.driver.TimeBinDriver`.

    Takes the same parameters with the same checks. :meth:`run` reproduces the gateware's
    output cycle for cycle from reset: cycle 0 is the first cycle after reset, the pipeline
    (:attr:`latency` cycles) and the delay histories start empty (all-zero UIs).
    """

    #: Cycles from a word of symbols to its serializer word at zero delay.
    latency = TimeBinDriver.latency

    def __init__(self, lanes, uis_per_symbol, dac_bits=8, pm_bits=1, max_delay=None):
        self.max_delay = check_driver_parameters(
            lanes, uis_per_symbol, dac_bits, pm_bits, max_delay)
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.uis_per_bin = uis_per_symbol // 2
        self.dac_bits = dac_bits
        self.pm_bits = pm_bits

    def default_settings(self):
        """The settings after reset (the ``init`` of the driver's ports), as a dict."""
        return {
            "pulse_offset": 0,
            "pulse_width": self.uis_per_bin,
            "im_levels": default_im_levels(self.dac_bits),
            "im_idle": 0,
            "pm_levels": default_pm_levels(self.pm_bits),
            "delay_carver": 0,
            "delay_im": 0,
            "delay_pm": 0,
        }

    def applied_settings(self, settings=None):
        """The settings the driver uses when its ports hold ``settings`` from reset on.

        ``settings`` maps port names to values; missing names keep their defaults. Returns
        ``(applied, error)``: out-of-range values (those the driver refuses) are replaced by
        their defaults, and ``error`` is the driver's ``settings_error``. Values that do not
        fit the port at all raise ``ValueError``; unknown names raise ``KeyError``.
        """
        k, max_delay = self.uis_per_bin, self.max_delay
        applied = self.default_settings()
        for name, value in (settings or {}).items():
            if name not in applied:
                raise KeyError(f"Unknown driver setting {name!r}; known are {SETTING_NAMES}")
            applied[name] = value
        port_bits = {
            "pulse_offset": int(k).bit_length(), "pulse_width": int(k).bit_length(),
            "im_idle": self.dac_bits,
            "delay_carver": int(max_delay).bit_length() or 1,
            "delay_im": int(max_delay).bit_length() or 1,
            "delay_pm": int(max_delay).bit_length() or 1,
        }
        for name, bits in port_bits.items():
            value = applied[name]
            if not isinstance(value, (int, np.integer)) or not 0 <= value < (1 << bits):
                raise ValueError(
                    f"Setting {name} must be an integer in 0..{(1 << bits) - 1}, not {value!r}")
            applied[name] = int(value)
        for name, count, bits in (("im_levels", IM_LEVELS, self.dac_bits),
                                  ("pm_levels", PM_LEVELS, self.pm_bits)):
            table = np.asarray(applied[name])
            if (table.shape != (count,) or not np.issubdtype(table.dtype, np.integer)
                    or (table < 0).any() or (table >= (1 << bits)).any()):
                raise ValueError(f"Setting {name} must be {count} integers in "
                                 f"0..{(1 << bits) - 1}, not {applied[name]!r}")
            applied[name] = table.astype(np.int64)

        error = False
        offset, width = applied["pulse_offset"], applied["pulse_width"]
        if width == 0 or offset + width > k:
            error = True
            applied["pulse_offset"], applied["pulse_width"] = 0, k
        for name in ("delay_carver", "delay_im", "delay_pm"):
            if applied[name] > max_delay:
                error = True
                applied[name] = 0
        return applied, error

    def _check_symbols(self, valid, basis, bit, intensity, dark):
        valid = np.asarray(valid)
        if valid.ndim != 1:
            raise ValueError(f"valid must have shape (N,), not {valid.shape}")
        shape = (len(valid), self.lanes)
        out = [valid.astype(bool)]
        for name, array, bits in (("basis", basis, 1), ("bit", bit, 1),
                                  ("intensity", intensity, 2), ("dark", dark, 1)):
            array = np.asarray(array)
            if array.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, not {array.shape}")
            if array.size and (array.min() < 0 or array.max() >= (1 << bits)):
                raise ValueError(f"{name} must hold integers in 0..{(1 << bits) - 1}, "
                                 f"not {array.min()}..{array.max()}")
            out.append(array.astype(np.int64))
        return out

    def run(self, valid, basis, bit, intensity, dark, settings=None):
        """Run the driver from reset over ``N`` cycles of symbols.

        ``valid`` (N,) is ``i_symbols.valid``; ``basis``, ``bit``, ``intensity``, ``dark``
        (N, L) are the symbol fields of each lane. ``settings`` (see :meth:`applied_settings`)
        hold from reset to the end of the run (the gateware's registered settings act on the
        symbols from the first cycle; a delay's first cycles are invisible).
        Returns a :class:`TimeBinDriverOutput`: what the driver offers on ``o_ser`` in each
        of the ``N`` cycles.
        """
        valid, basis, bit, intensity, dark = self._check_symbols(
            valid, basis, bit, intensity, dark)
        applied, error = self.applied_settings(settings)
        n, k = len(valid), self.uis_per_bin

        u = np.arange(k)
        offset, width = applied["pulse_offset"], applied["pulse_width"]
        in_pulse = np.empty((n, 1, 1, k), bool)                         # (N, 1, 1, k)
        in_pulse[:] = (u >= offset) & (u < offset + width)
        bins = np.arange(2)
        state = (basis << 1) | bit                                      # (N, L)
        on = (valid[:, None] & (dark == 0))[..., None]                  # (N, L, 1)
        lit = np.stack([state != 1, state != 0], axis=-1)               # (N, L, 2)

        carver = (on & lit)[..., None] & in_pulse                       # (N, L, 2, k)
        im_code = applied["im_levels"][
            im_level_index(intensity[..., None], state[..., None], bins)]
        im = np.where(on[..., None] & in_pulse, im_code[..., None], applied["im_idle"])
        pm_code = applied["pm_levels"][pm_level_index(state[..., None], bins)]
        pm = np.broadcast_to(np.where(on, pm_code, 0)[..., None], carver.shape)

        im_dtype = np.uint8 if self.dac_bits <= 8 else np.uint16
        return TimeBinDriverOutput(
            carver=self._delay(carver, applied["delay_carver"], np.uint8),
            im=self._delay(im, applied["delay_im"], im_dtype),
            pm=self._delay(pm, applied["delay_pm"], np.uint8),
            valid=np.arange(n) >= 1,
            settings_error=np.full(n, error),
        )

    def _delay(self, words, delay, dtype):
        """The UI stream of ``words`` after the pipeline and ``delay`` UIs, zeros before."""
        n = words.shape[0]
        uis = self.lanes * self.uis_per_symbol
        stream = words.reshape(-1).astype(dtype)
        shift = min(self.latency * uis + delay, stream.size)
        out = np.zeros_like(stream)
        out[shift:] = stream[:stream.size - shift]
        return out.reshape(n, uis)
