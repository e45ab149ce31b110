"""Bit-exact reference model of :class:`timebin.gateware.tx.top.Transmitter`.

Composes the block models (entropy, symbol source, driver) the way the top wires the blocks,
plus the symbol-log FIFO (``amaranth.lib.fifo.SyncFIFO``: first word readable the cycle
after it is written, full at ``depth`` words).
"""

from typing import NamedTuple

import numba
import numpy as np

from ...gateware.common import check_int
from ...gateware.tx.entropy import CORE_BITS, EntropySelect, check_core_bits
from ...gateware.tx.symbols import TrainingMode
from .driver import TimeBinDriverModel
from .entropy import EntropySourceModel
from .symbols import SymbolSourceModel, lane_chunks

__all__ = ["ENTROPY_SETTINGS", "SYMBOL_SETTINGS", "DRIVER_SETTINGS", "TransmitterOutput",
           "TransmitterModel", "sync_fifo"]

ENTROPY_SETTINGS = ("source", "key", "iv", "rct_cutoff", "apt_cutoff")
SYMBOL_SETTINGS = ("protocol", "p_z", "thresholds", "training", "training_intensity")
DRIVER_SETTINGS = ("pulse_offset", "pulse_width", "im_levels", "im_idle", "pm_levels",
                   "delay_carver", "delay_im", "delay_pm")


@numba.njit(cache=True)
def _sync_fifo(write, read_ready, depth, head, readable, dropped):
    n = write.shape[0]
    queue = np.empty(depth, np.int64)
    produce = consume = level = lost = 0
    for c in range(n):
        dropped[c] = lost
        readable[c] = level != 0
        head[c] = queue[consume] if level else -1
        do_read = level != 0 and read_ready[c]
        do_write = level != depth and write[c]
        if write[c] and level == depth:
            lost += 1
        if do_write:
            queue[produce] = c
            produce = (produce + 1) % depth
        if do_read:
            consume = (consume + 1) % depth
        level += int(do_write) - int(do_read)


def sync_fifo(write, read_ready, depth):
    """Cycle model of a ``SyncFIFO`` of ``depth`` whose writer never waits.

    Returns ``(readable, head, dropped)`` per cycle: ``r_rdy``; the cycle whose word is at
    the head (-1 when empty); words dropped before this cycle because the FIFO was full.
    """
    write = np.asarray(write, np.bool_)
    read_ready = np.asarray(read_ready, np.bool_)
    n = len(write)
    head = np.empty(n, np.int64)
    readable = np.empty(n, np.bool_)
    dropped = np.empty(n, np.int64)
    _sync_fifo(write, read_ready, depth, head, readable, dropped)
    return readable, head, np.minimum(dropped, (1 << 32) - 1)


class TransmitterOutput(NamedTuple):
    """Per-cycle outputs of :meth:`TransmitterModel.run` over ``N`` cycles.

    ``carver``, ``im``, ``pm`` (N, L*S) and ``ser_valid`` (N,): the ``ser`` port.
    ``log_valid`` (N,), ``log_index`` (N,) and ``log_fields`` ({field: (N, L)}): the ``log``
    stream, payload meaningful where ``log_valid``. Status ports (N,) as named.
    ``symbols`` is the symbol source's own output (every symbol word, log drops or not).
    """

    carver: np.ndarray
    im: np.ndarray
    pm: np.ndarray
    ser_valid: np.ndarray
    log_valid: np.ndarray
    log_index: np.ndarray
    log_fields: dict
    alarm: np.ndarray
    settings_error: np.ndarray
    underflow: np.ndarray
    blanked: np.ndarray
    health_fail_cycles: np.ndarray
    log_dropped: np.ndarray
    symbols: tuple


class TransmitterModel:
    """Reference model of :class:`~timebin.gateware.tx.top.Transmitter` from reset.

    Takes the same keyword parameters. Settings (named as the top's ports) hold over a run.
    """

    def __init__(self, *, lanes, uis_per_symbol, prob_bits=12, p_z=0.9,
                 intensity_probs=(0.7, 0.3), dac_bits=8, pm_bits=1, max_delay=None,
                 health_window=1024, h_min=1.0, alpha=2**-40, log_depth=16,
                 trivium_bits=CORE_BITS, log_ram=False):
        # log_ram (the log FIFO's words in block RAM) does not change the behaviour.
        check_int("Log FIFO depth", log_depth, minimum=2, maximum=1 << 16)
        if not isinstance(log_ram, bool):
            raise TypeError(f"Log FIFO in RAM must be a bool, not {log_ram!r}")
        check_core_bits(trivium_bits)
        self.symbols = SymbolSourceModel(lanes, prob_bits, p_z, intensity_probs)
        self.driver = TimeBinDriverModel(lanes, uis_per_symbol, dac_bits, pm_bits, max_delay)
        self.entropy = EntropySourceModel(self.symbols.entropy_width,
                                          health_window=health_window, h_min=h_min,
                                          alpha=alpha, core_bits=trivium_bits)
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.log_depth = log_depth

    def run(self, n, settings=None, *, enable=True, log_ready=True, qrng_valid=None,
            qrng_bits=None, alarm_clear=None, driver=True):
        """Run ``n`` cycles from reset. ``driver=False``: skip the time-bin driver (its
        outputs ``carver``, ``im``, ``pm``, ``ser_valid`` are then ``None`` and its settings
        errors are not checked): for runs that need the symbols only.

        ``settings`` maps port names to values held from reset; ``enable``, ``log_ready``,
        ``alarm_clear`` are per-cycle (N,) or one value for all cycles; ``qrng_valid`` (N,)
        and ``qrng_bits`` (N, entropy width) drive the ``qrng`` port.
        """
        settings = dict(settings or {})
        known = ENTROPY_SETTINGS + SYMBOL_SETTINGS + DRIVER_SETTINGS
        for name in settings:
            if name not in known:
                raise KeyError(f"Unknown transmitter setting {name!r}; known are {known}")
        # The top registers `enable` (and `training` and `source`, held from reset here:
        # their registers' reset values show in cycle 0 only, where nothing is enabled).
        enable_port = np.broadcast_to(np.asarray(enable, bool), (n,))
        enable = np.zeros(n, bool)
        enable[1:] = enable_port[:-1]
        log_ready = np.broadcast_to(np.asarray(log_ready, bool), (n,))
        clear = (None if alarm_clear is None
                 else np.broadcast_to(np.asarray(alarm_clear, bool), (n,)))
        training = TrainingMode(settings.get("training", TrainingMode.DATA))

        ent_settings = {k: settings[k] for k in ENTROPY_SETTINGS if k in settings}
        ent_settings["source"] = EntropySelect(ent_settings.get("source", 0))
        ready = enable & (training == TrainingMode.DATA)
        ent = self.entropy.run(ready, qrng_valid=qrng_valid, qrng_bits=qrng_bits,
                               alarm_clear=clear, **ent_settings)

        sym_settings = {k: settings[k] for k in SYMBOL_SETTINGS if k in settings}
        chunks = lane_chunks(ent.bits, self.lanes, self.symbols.bits_per_lane)
        sym = self.symbols.run(enable, ent.valid, chunks, ent.healthy, ent.alarm,
                               **sym_settings)

        drv_settings = {k: settings[k] for k in DRIVER_SETTINGS if k in settings}
        if driver:
            ser = self.driver.run(sym.valid, sym.basis, sym.bit, sym.intensity, sym.dark,
                                  drv_settings)
            ser_error = ser.settings_error
        else:
            ser, ser_error = None, False

        readable, head, dropped = sync_fifo(sym.valid, log_ready, self.log_depth)
        src = np.maximum(head, 0)
        log_fields = {"basis": sym.basis[src], "bit": sym.bit[src],
                      "intensity": sym.intensity[src], "valid": sym.sym_valid[src],
                      "dark": sym.dark[src]}
        # The top registers the entropy's and the driver's flags (the symbol source's is
        # registered already): a refused setting shows one cycle later.
        error = sym.settings_error.copy()
        error[1:] |= (ent.settings_error | ser_error)[:-1]
        return TransmitterOutput(
            carver=ser and ser.carver, im=ser and ser.im, pm=ser and ser.pm,
            ser_valid=ser and ser.valid,
            log_valid=readable, log_index=sym.index[src], log_fields=log_fields,
            alarm=ent.alarm,
            settings_error=error,
            underflow=sym.underflow, blanked=sym.blanked,
            health_fail_cycles=ent.health_fail_cycles, log_dropped=dropped,
            symbols=sym,
        )
