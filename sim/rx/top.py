"""Bit-exact reference model of :class:`timebin.gateware.rx.top.Receiver`: the blocks' models
wired as the top wires the blocks."""

from typing import NamedTuple

import numpy as np

from ...gateware.rx.frontend import DEFAULT_MAX_DEAD_TIME
from ...gateware.rx.phy import check_sampler_parameters
from ...gateware.rx.top import ACCEPTED_COUNTER_BITS, FORWARDED, SETTINGS, Receiver
from .binning import BinnerModel
from .frontend import ClickFrontEndModel
from .histogram import PhaseHistogramModel
from .merge import RecordMergeModel
from .phy import reduce_oversampled
from .watchdog import WatchdogModel

__all__ = ["RECORD_FIELDS", "COUNTERS", "check_setting_names", "taken_records",
           "ReceiverOutput", "ReceiverModel"]

#: Fields of a detection record, as the models and decoders name them.
RECORD_FIELDS = ("index", "phase", "channel", "cls", "alarm")
#: The per-channel counters of the receiver top.
COUNTERS = ("clicks", "accepted", "dead_discards", "window_discards", "overflows",
            "histogram_dropped", "histogram_counted")


def check_setting_names(settings):
    """Raise ``ValueError`` naming the first of ``settings`` (names) that is not one of the
    receiver's :data:`~timebin.gateware.rx.top.SETTINGS`."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"Unknown receiver setting {unknown[0]!r}; the settings are "
                         f"{', '.join(SETTINGS)}")


def taken_records(records_valid, records, ready=True):
    """The records taken from the stream (``valid & ready``), in order: ``{field: array}``
    of the per-cycle ``records`` plus ``cycle``."""
    ready = np.broadcast_to(np.asarray(ready, bool), np.shape(records_valid))
    cycles = np.flatnonzero(np.asarray(records_valid, bool) & ready)
    out = {name: np.asarray(values)[cycles] for name, values in records.items()}
    out["cycle"] = cycles.astype(np.uint64)
    return out


class ReceiverOutput(NamedTuple):
    """Per-cycle outputs of :meth:`ReceiverModel.run` over ``N`` cycles of ``C`` channels, as
    the gateware shows them in each cycle (before its clock edge), plus the final histogram.

    ``records_valid`` (N,) bool and ``records`` ``{field: (N,) array}`` (fields of
    :data:`RECORD_FIELDS`, zero where not valid): the ``records`` stream. ``gates``
    (N, C, W) uint8. The counters of :data:`COUNTERS` (N, C). ``overflow`` (N,) bool,
    ``records_out`` (N,) uint64, ``alarm`` (N,) bool, ``alarm_channels`` (N, C) bool,
    ``alarm_trips`` (N,) uint32, ``histogram_data`` (N,), ``histogram_clearing`` (N,) bool,
    ``settings_error`` (N,) bool. ``histogram`` (C, bins) uint64: the histogram memory after
    the last cycle.
    """

    records_valid: np.ndarray
    records: dict
    gates: np.ndarray
    clicks: np.ndarray
    accepted: np.ndarray
    dead_discards: np.ndarray
    window_discards: np.ndarray
    overflows: np.ndarray
    histogram_dropped: np.ndarray
    histogram_counted: np.ndarray
    overflow: np.ndarray
    records_out: np.ndarray
    alarm: np.ndarray
    alarm_channels: np.ndarray
    alarm_trips: np.ndarray
    histogram_data: np.ndarray
    histogram_clearing: np.ndarray
    settings_error: np.ndarray
    histogram: np.ndarray

    def taken(self, ready=True):
        """:func:`taken_records` of this run."""
        return taken_records(self.records_valid, self.records, ready)


class ReceiverModel:
    """Reference model of :class:`~timebin.gateware.rx.top.Receiver`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset).
    """

    latency = Receiver.latency

    def __init__(self, *, channels, lanes, uis_per_symbol, oversampling=1,
                 max_dead_time=DEFAULT_MAX_DEAD_TIME, max_gate_period=256,
                 max_delay=(1 << 20) - 1, fifo_depth=16, histogram_period=1,
                 histogram_bits=32, max_window=1 << 24):
        self.frontend = ClickFrontEndModel(channels=channels, lanes=lanes,
                                           uis_per_symbol=uis_per_symbol,
                                           max_dead_time=max_dead_time,
                                           max_gate_period=max_gate_period)
        W = self.frontend.uis_per_word
        check_sampler_parameters(channels, W, oversampling)
        self.binner = BinnerModel(channels=channels, uis_per_symbol=uis_per_symbol,
                                  max_delay=max_delay)
        self.watchdog = WatchdogModel(channels=channels, gate_count_bits=W.bit_length(),
                                      max_window=max_window)
        self.merge = RecordMergeModel(channels=channels, uis_per_symbol=uis_per_symbol,
                                      fifo_depth=fifo_depth)
        self.histogram = PhaseHistogramModel(channels=channels, uis_per_symbol=uis_per_symbol,
                                             period_symbols=histogram_period,
                                             count_bits=histogram_bits)
        self.channels = channels
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.uis_per_word = W
        self.oversampling = oversampling
        self.params = dict(channels=channels, lanes=lanes, uis_per_symbol=uis_per_symbol,
                           oversampling=oversampling, max_dead_time=max_dead_time,
                           max_gate_period=max_gate_period, max_delay=max_delay,
                           fifo_depth=fifo_depth, histogram_period=histogram_period,
                           histogram_bits=histogram_bits, max_window=max_window)

    def run(self, samples, *, ready=True, **settings):
        """Outputs of the gateware for ``N`` cycles from reset, as a :class:`ReceiverOutput`.

        ``samples`` (N, C, W * oversampling) of 0/1: the PHY's words, sample 0 first.
        ``ready``: ``records.ready``, N bools or one for the whole run. ``settings``: the
        top's input ports named in :data:`SETTINGS`, each in the form its block's model
        takes (a scalar, per channel, or per cycle).
        """
        check_setting_names(settings)
        blocks = {block: {block_name: settings[top_name]
                          for top_name, block_name in inputs.items() if top_name in settings}
                  for block, (inputs, _) in FORWARDED.items()}
        words = reduce_oversampled(samples, self.oversampling)
        n = len(words)

        fe = self.frontend.run(words, **blocks["frontend"])
        binned = self.binner.run(fe.valid, fe.symbol, fe.ui, **blocks["binner"])
        wd = self.watchdog.run(fe.valid.astype(np.uint8), fe.gate_starts,
                               **blocks["watchdog"])
        merged = self.merge.run(binned.valid, binned.index, binned.phase, binned.cls,
                                alarm=wd.alarm, ready=ready)
        hist = self.histogram.run(binned.all_valid, binned.index, binned.phase,
                                  **blocks["histogram"])

        accepted = np.zeros((n, self.channels), np.uint32)
        if n > 1:
            total = np.cumsum(fe.valid[:-1], axis=0)
            accepted[1:] = np.minimum(total, (1 << ACCEPTED_COUNTER_BITS) - 1)
        return ReceiverOutput(
            records_valid=merged.valid,
            records={name: getattr(merged, name) for name in RECORD_FIELDS},
            gates=fe.gates,
            clicks=fe.clicks,
            accepted=accepted,
            dead_discards=fe.dead_discards,
            window_discards=binned.window_discards,
            overflows=merged.overflows,
            histogram_dropped=hist.dropped,
            histogram_counted=hist.counted,
            overflow=merged.overflow,
            records_out=merged.records_out,
            alarm=wd.alarm,
            alarm_channels=wd.alarm_channels,
            alarm_trips=wd.trips,
            histogram_data=hist.read_data,
            histogram_clearing=hist.clearing,
            settings_error=fe.settings_error | binned.settings_error | wd.settings_error,
            histogram=hist.bins,
        )
