"""Bit-exact reference model of :class:`timebin.gateware.rx.merge.RecordMerge`, and the
packing of its ports.

The FIFOs and the arbiter are sequential, so the model is one numba loop over cycles that
follows records by the (cycle, channel) of the slot they came from; the fields are gathered
from the inputs afterwards with numpy. The FIFOs behave as ``amaranth.lib.fifo.SyncFIFO``:
writable while fewer than ``depth`` records are in it at the start of the cycle, a record
readable from the cycle after it was written.
"""

from typing import NamedTuple

import numpy as np
from amaranth.hdl import Shape
from numba import njit

from ...gateware.records import INDEX_BITS
from ...gateware.rx.layouts import Binned, Detection
from ...gateware.rx.merge import (
    OVERFLOW_COUNTER_BITS,
    RecordMerge,
    check_merge_parameters,
)
from ..words import ints_to_bits, unpack_field
from .binning import pack_slots

__all__ = ["RecordMergeOutput", "RecordMergeModel", "pack_binned", "unpack_detections"]

_OVERFLOW_TOP = (1 << OVERFLOW_COUNTER_BITS) - 1


def pack_binned(uis_per_symbol, valid, index, phase, cls):
    """Values of a ``ArrayLayout(Binned(uis_per_symbol), C)`` port, one int per cycle, from
    (N, C) arrays of the slot fields (channel ``k`` in column ``k``)."""
    fields = {"valid": valid, "index": index, "phase": phase, "cls": cls}
    return pack_slots(Binned(uis_per_symbol), fields, np.shape(valid))


def unpack_detections(ints):
    """``Detection`` payload ints -> ``{field: (N,) uint64}``."""
    bits = ints_to_bits(ints, Detection.size)
    return {name: unpack_field(bits, field.offset, 1, Shape.cast(field.shape).width)[:, 0]
            for name, field in Detection}


class RecordMergeOutput(NamedTuple):
    """Per-cycle outputs of :meth:`RecordMergeModel.run` over ``N`` cycles of ``C`` channels,
    as the gateware shows them in each cycle (before its clock edge).

    ``valid`` (N,) bool and ``index``, ``phase``, ``channel``, ``cls``, ``alarm`` (N,) uint64:
    the ``records`` stream; the payload holds the last record loaded (zero before the first)
    also where ``valid`` is low. ``source`` (N,) int64: the cycle of the slot the payload came
    from (-1 before the first). ``overflows`` (N, C) uint32, ``overflow`` (N,) bool,
    ``records_out`` (N,) uint64: the status ports.
    """

    valid: np.ndarray
    index: np.ndarray
    phase: np.ndarray
    channel: np.ndarray
    cls: np.ndarray
    alarm: np.ndarray
    source: np.ndarray
    overflows: np.ndarray
    overflow: np.ndarray
    records_out: np.ndarray


@njit(cache=True)
def _run(valid, ready, depth, out_valid, source, channel, overflows, records_out):
    n, channels = valid.shape
    queue = np.empty((channels, depth), np.int64)       # source cycles of the records
    produce = np.zeros(channels, np.int64)
    consume = np.zeros(channels, np.int64)
    level = np.zeros(channels, np.int64)
    dropped = np.zeros(channels, np.int64)
    last = channels - 1
    held_valid, held_source, held_channel = False, -1, 0
    taken, pending = 0, 0       # `pending`: taken in the cycle before (a register's copy)
    for c in range(n):
        out_valid[c] = held_valid
        source[c] = held_source
        channel[c] = held_channel
        overflows[c] = dropped
        records_out[c] = taken

        taken += pending                                # 2**64 records: never saturates
        pending = 1 if held_valid and ready[c] else 0
        load = not held_valid or ready[c]
        grant = -1
        if load:
            for i in range(1, channels + 1):
                k = (last + i) % channels
                if level[k] != 0:
                    grant = k
                    break
        # Writes see the level at the start of the cycle: a full FIFO refuses the record even
        # if one leaves it in the same cycle.
        for k in range(channels):
            if not valid[c, k]:
                continue
            if level[k] == depth:
                if dropped[k] < _OVERFLOW_TOP:
                    dropped[k] += 1
            else:
                queue[k, produce[k]] = c
                produce[k] = (produce[k] + 1) % depth
                level[k] += 1
        if load:
            held_valid = grant >= 0
            if grant >= 0:
                held_source = queue[grant, consume[grant]]
                held_channel = grant
                consume[grant] = (consume[grant] + 1) % depth
                level[grant] -= 1
                last = grant


class RecordMergeModel:
    """Reference model of :class:`~timebin.gateware.rx.merge.RecordMerge`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset).
    """

    #: Cycles from a slot to the earliest cycle its record is offered on ``records``.
    latency = RecordMerge.latency

    def __init__(self, *, channels, uis_per_symbol, fifo_depth=16):
        check_merge_parameters(channels, uis_per_symbol, fifo_depth)
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.fifo_depth = fifo_depth

    def run(self, valid, index, phase, cls, alarm=False, ready=True):
        """Outputs of the gateware for ``N`` cycles from reset, as a :class:`RecordMergeOutput`.

        ``valid``, ``index``, ``phase``, ``cls`` (N, C) are the fields of each channel's
        ``binned`` slot; ``alarm`` and ``ready`` (``records.ready``) are N bools or one for
        every cycle.
        """
        valid = np.asarray(valid)
        if valid.ndim != 2 or valid.shape[1] != self.channels:
            raise ValueError(f"valid must have shape (N, {self.channels}), not {valid.shape}")
        n = len(valid)
        phase_bits = int(self.uis_per_symbol - 1).bit_length() or 1
        fields = {}
        for name, array, bits in (("valid", valid, 1), ("index", index, INDEX_BITS),
                                  ("phase", phase, phase_bits), ("cls", cls, 2)):
            array = np.asarray(array)
            if array.shape != valid.shape:
                raise ValueError(f"{name} must have shape {valid.shape}, not {array.shape}")
            if array.size and (array.min() < 0 or (bits < 64 and array.max() >= 1 << bits)):
                raise ValueError(f"{name} must hold integers in 0..{(1 << bits) - 1}, "
                                 f"not {array.min()}..{array.max()}")
            fields[name] = array.astype(np.uint64)
        per_cycle = {}
        for name, value in (("alarm", alarm), ("ready", ready)):
            array = np.asarray(value)
            if array.ndim == 0:
                array = np.full(n, array)
            if array.shape != (n,):
                raise ValueError(f"{name} must be a scalar or {n} values, not of shape "
                                 f"{array.shape}")
            per_cycle[name] = array.astype(np.bool_)

        out_valid = np.zeros(n, np.bool_)
        source = np.zeros(n, np.int64)
        channel = np.zeros(n, np.int64)
        overflows = np.zeros((n, self.channels), np.int64)
        records_out = np.zeros(n, np.int64)
        _run(fields["valid"].astype(np.bool_), per_cycle["ready"], self.fifo_depth, out_valid,
             source, channel, overflows, records_out)

        loaded = source >= 0
        cycle = np.maximum(source, 0)

        def gather(values):
            return np.where(loaded, values[cycle, channel], np.uint64(0))

        return RecordMergeOutput(
            valid=out_valid,
            index=gather(fields["index"]),
            phase=gather(fields["phase"]),
            channel=np.where(loaded, channel, 0).astype(np.uint64),
            cls=gather(fields["cls"]),
            alarm=np.where(loaded, per_cycle["alarm"][cycle], False).astype(np.uint64),
            source=source,
            overflows=overflows.astype(np.uint32),
            overflow=(overflows != 0).any(axis=1),
            records_out=records_out.astype(np.uint64),     # never near 2**64 in a run
        )
