"""Bit-exact reference model of :class:`timebin.gateware.tx.symbol_memory.SymbolMemory`.

The memory is written and read in the same cycles and the lookup pipeline stalls on the
result's back-pressure, so the model is one numba loop over cycles that keeps the memory,
the sweep after reset and the two pipeline registers as the gateware does. The log inputs
are the fields :class:`timebin.sim.tx.top.TransmitterModel` gives for its ``log`` stream.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ...gateware.records import INDEX_BITS, field_offsets
from ...gateware.tx.symbol_memory import (
    MISSED_COUNTER_BITS,
    STORED_FIELDS,
    UNAVAILABLE_COUNTER_BITS,
    SymbolMemory,
    check_symbol_memory_parameters,
)

__all__ = ["SymbolMemoryOutput", "SymbolMemoryModel"]

#: ``{name: (offset, width)}`` of the stored fields packed into one byte per symbol.
_PACKED = field_offsets(STORED_FIELDS)


class SymbolMemoryOutput(NamedTuple):
    """Outputs of :meth:`SymbolMemoryModel.run` over ``N`` cycles, as the gateware shows them
    in each cycle (before its clock edge), each (N,).

    ``result_valid``: the ``result`` stream's ``valid``; ``index`` (uint64), ``basis``,
    ``bit``, ``intensity``, ``valid``, ``available`` (uint8): the fields of its payload
    (``valid`` is the symbol's field, not the stream's). ``lookup_ready``: the ``lookup``
    stream's ``ready``. ``clearing`` (bool) and the counters ``lookups``, ``written`` (uint64),
    ``unavailable``, ``missed`` (uint32) as the ports of the same names.
    """

    result_valid: np.ndarray
    index: np.ndarray
    basis: np.ndarray
    bit: np.ndarray
    intensity: np.ndarray
    valid: np.ndarray
    available: np.ndarray
    lookup_ready: np.ndarray
    clearing: np.ndarray
    lookups: np.ndarray
    unavailable: np.ndarray
    written: np.ndarray
    missed: np.ndarray


@njit(cache=True)
def _run(log_valid, log_address, log_tag, log_symbols, lookup_valid, lookup_address,
         lookup_tag, lookup_lane, lookup_index, result_ready, unavailable_top, missed_top,
         present, tags, symbols,
         out_valid, out_index, out_symbol, out_available, out_ready, out_clearing,
         out_lookups, out_unavailable, out_written, out_missed):
    n = len(log_valid)
    depth = len(present)
    one, top64 = np.uint64(1), np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    clearing, sweep = True, 0                   # a reset starts a sweep
    # Stage 1: the lookup taken, and the memory entry it read (only its lane is kept).
    held_valid, held_blind = False, False
    held_index, held_tag = np.uint64(0), np.uint64(0)
    found_present, found_tag, found_symbol = False, np.uint64(0), 0
    # The result register.
    r_valid, r_index, r_symbol, r_available = False, np.uint64(0), 0, False
    lookups, written = np.uint64(0), np.uint64(0)
    unavailable, missed = 0, 0
    for c in range(n):
        advance = not r_valid or result_ready[c]
        out_valid[c] = r_valid
        out_index[c] = r_index
        out_symbol[c] = r_symbol
        out_available[c] = r_available
        out_ready[c] = advance
        out_clearing[c] = clearing
        out_lookups[c] = lookups
        out_unavailable[c] = unavailable
        out_written[c] = written
        out_missed[c] = missed

        # This cycle's write: the sweep's empty entry, or the log word.
        if clearing:
            present[sweep] = False
            tags[sweep] = 0
            symbols[sweep, :] = 0
            if log_valid[c] and missed < missed_top:
                missed += 1
        elif log_valid[c]:
            a = log_address[c]
            present[a] = True
            tags[a] = log_tag[c]
            symbols[a, :] = log_symbols[c, :]
            if written != top64:
                written += one

        if advance:
            # Stage 2 into the result register, from what stage 1 holds.
            hit = held_valid and found_present and found_tag == held_tag and not held_blind
            r_valid = held_valid
            if held_valid:
                r_index = held_index
                r_symbol = found_symbol if hit else 0
                r_available = hit
                if not hit and unavailable < unavailable_top:
                    unavailable += 1
            # Stage 1 takes this cycle's lookup; the read sees this cycle's write.
            held_valid = lookup_valid[c]
            held_blind = clearing
            held_index = lookup_index[c]
            held_tag = lookup_tag[c]
            a = lookup_address[c]
            found_present = present[a]
            found_tag = tags[a]
            found_symbol = symbols[a, lookup_lane[c]]
            if lookup_valid[c] and lookups != top64:
                lookups += one

        if clearing:
            clearing = sweep != depth - 1
            sweep = (sweep + 1) % depth


class SymbolMemoryModel:
    """Reference model of :class:`~timebin.gateware.tx.symbol_memory.SymbolMemory`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset),
    with the memory empty at the start, as after configuration (the reset sweep empties it
    anyway).
    """

    #: Cycles from a lookup taken to the earliest cycle its result is offered.
    latency = SymbolMemory.latency

    def __init__(self, *, lanes, depth_words):
        check_symbol_memory_parameters(lanes, depth_words)
        self.lanes = lanes
        self.depth_words = depth_words
        self.lane_bits = lanes.bit_length() - 1
        self.address_bits = depth_words.bit_length() - 1
        self.tag_bits = INDEX_BITS - self.lane_bits - self.address_bits

    def locate(self, index):
        """``(address, tag, lane)`` int64, uint64, int64 arrays of symbol indexes (array)."""
        index = np.asarray(index, np.uint64)
        word = index >> np.uint64(self.lane_bits)
        address = (word & np.uint64(self.depth_words - 1)).astype(np.int64)
        tag = word >> np.uint64(self.address_bits)
        lane = (index & np.uint64(self.lanes - 1)).astype(np.int64)
        return address, tag, lane

    def run(self, log_valid, log_index, log_fields, lookup_valid, lookup_index,
            result_ready=True):
        """Outputs of the gateware for ``N`` cycles from reset, as a
        :class:`SymbolMemoryOutput`.

        ``log_valid`` (N,), ``log_index`` (N,) and ``log_fields`` ({field: (N, L)}, fields of
        ``SYMBOL_FIELDS``; missing ones are 0, ``dark`` is not stored) are the ``log``
        stream; ``lookup_valid``, ``lookup_index`` the ``lookup`` stream; ``result_ready`` the
        ``result`` stream's ``ready``. Each is N values, or one for every cycle.
        """
        L = self.lanes
        log_valid = np.asarray(log_valid)
        if log_valid.ndim != 1:
            raise ValueError(f"log_valid must have shape (N,), not {log_valid.shape}")
        n = len(log_valid)
        log_valid = _per_cycle("log_valid", log_valid, n, 1).astype(np.bool_)
        log_index = _per_cycle("log_index", log_index, n, INDEX_BITS)
        lookup_valid = _per_cycle("lookup_valid", lookup_valid, n, 1).astype(np.bool_)
        lookup_index = _per_cycle("lookup_index", lookup_index, n, INDEX_BITS)
        result_ready = _per_cycle("result_ready", result_ready, n, 1).astype(np.bool_)
        log_symbols = np.zeros((n, L), np.uint8)
        widths = dict(STORED_FIELDS, dark=1)
        for name, values in log_fields.items():
            if name not in widths:
                raise ValueError(f"log_fields has no field {name!r}: symbol fields are "
                                 f"{', '.join(widths)}")
            values = np.asarray(values)
            if values.shape != (n, L):
                raise ValueError(f"log_fields[{name!r}] must have shape {(n, L)}, not "
                                 f"{values.shape}")
            bits = widths[name]
            if values.size and (values.min() < 0 or values.max() >= 1 << bits):
                raise ValueError(f"log_fields[{name!r}] must hold integers in "
                                 f"0..{(1 << bits) - 1}, not {values.min()}..{values.max()}")
            if name in _PACKED:
                log_symbols |= (values.astype(np.uint8) << _PACKED[name][0]).astype(np.uint8)
        log_address, log_tag, _ = self.locate(log_index)
        lookup_address, lookup_tag, lookup_lane = self.locate(lookup_index)

        depth = self.depth_words
        present = np.zeros(depth, np.bool_)
        tags = np.zeros(depth, np.uint64)
        symbols = np.zeros((depth, L), np.uint8)
        out = {name: np.zeros(n, dtype) for name, dtype in (
            ("valid", np.bool_), ("index", np.uint64), ("symbol", np.uint8),
            ("available", np.bool_), ("ready", np.bool_), ("clearing", np.bool_),
            ("lookups", np.uint64), ("unavailable", np.int64), ("written", np.uint64),
            ("missed", np.int64))}
        _run(log_valid, log_address, log_tag, log_symbols, lookup_valid, lookup_address,
             lookup_tag, lookup_lane, lookup_index, result_ready,
             (1 << UNAVAILABLE_COUNTER_BITS) - 1, (1 << MISSED_COUNTER_BITS) - 1,
             present, tags, symbols,
             out["valid"], out["index"], out["symbol"], out["available"], out["ready"],
             out["clearing"], out["lookups"], out["unavailable"], out["written"],
             out["missed"])
        fields = {name: ((out["symbol"] >> offset) & ((1 << width) - 1)).astype(np.uint8)
                  for name, (offset, width) in _PACKED.items()}
        return SymbolMemoryOutput(
            result_valid=out["valid"],
            index=out["index"],
            **fields,
            available=out["available"].astype(np.uint8),
            lookup_ready=out["ready"],
            clearing=out["clearing"],
            lookups=out["lookups"],
            unavailable=out["unavailable"].astype(np.uint32),
            written=out["written"],
            missed=out["missed"].astype(np.uint32),
        )


def _per_cycle(name, value, n, bits):
    """``value`` as (n,) uint64: a scalar for every cycle or n values, each fitting ``bits``;
    raises ``ValueError`` naming it."""
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.full(n, array)
    if array.shape != (n,):
        raise ValueError(f"{name} must be a scalar or {n} values, not of shape {array.shape}")
    if array.size and (array.min() < 0 or (bits < 64 and array.max() >= 1 << bits)):
        raise ValueError(f"{name} must hold integers in 0..{(1 << bits) - 1}, "
                         f"not {array.min()}..{array.max()}")
    return array.astype(np.uint64)
