"""Bit-exact, cycle-exact reference model of :class:`timebin.gateware.sifting.LoopbackSifter`,
a whole-array sifting reference, seeded loopback traffic, and the packing of the sifter's
ports for the Amaranth and cocotb testbenches.

The lookup pipeline stalls on the output's back-pressure, and whether it stalls depends on the
lookups' answers, so the model is one numba loop over cycles that keeps the symbol memory
(written as :class:`~timebin.sim.tx.symbol_memory.SymbolMemoryModel` writes it), the memory's
two pipeline registers with Bob's side beside them, the output register and the counters.
The memory's part is then checked against ``SymbolMemoryModel`` run on the lookups and
back-pressure the loop produced, which also gives the memory's status outputs.

:func:`sift_reference` is the plain definition of sifting, with no cycles: the model agrees
with it on traffic where every symbol looked up is held by the memory.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ..gateware.records import (
    BASIS_X,
    BASIS_Z,
    CLASS_EARLY,
    CLASS_LATE,
    CLASS_MIDDLE,
    DETECTION_FIELDS,
    INDEX_BITS,
    MAX_CHANNELS,
    MAX_INTENSITY_CLASSES,
    field_offsets,
)
from ..gateware.rx.layouts import Detection
from ..gateware.sifting import (
    ROLE_BITS,
    ROLE_IGNORED,
    ROLE_X_MINUS,
    ROLE_X_PLUS,
    ROLE_Z,
    SIFT_COUNTER_BITS,
    SIFT_COUNTERS,
    SIFTED_FIELDS,
    LoopbackSifter,
    check_sifter_parameters,
)
from ..gateware.tx.symbol_memory import STORED_FIELDS
from .amaranth_helpers import run_per_cycle
from .rx.rtl import port_arrays, port_ints
from .tx.symbol_memory import SymbolMemoryModel
from .words import bits_to_ints, ints_to_bits, pack_field, pack_symbol_words, unpack_field

__all__ = ["RECORD_FIELDS", "bob_reading", "sift_reference", "LoopbackSifterOutput",
           "LoopbackSifterModel", "sifting_stimulus", "OUTPUT_PORTS", "pack_detections",
           "sifter_inputs", "port_of", "decode_sifter_outputs", "run_sifter", "compare_sifter"]

#: Fields of a detection record (``DETECTION_FIELDS``), as the model takes and gives them.
RECORD_FIELDS = tuple(name for name, _ in DETECTION_FIELDS)
_RECORD_WIDTHS = dict(DETECTION_FIELDS)
_SIFTED_NAMES = tuple(name for name, _ in SIFTED_FIELDS)
#: ``{name: (offset, width)}`` of the stored symbol fields packed into one byte per symbol.
_PACKED = field_offsets(STORED_FIELDS)
_SYMBOL_WIDTHS = dict(STORED_FIELDS, dark=1)
_TOP = (1 << SIFT_COUNTER_BITS) - 1
#: Column of each counter element in the loop's counter array.
_COLUMNS = {}
_start = 0
for _name, _elements in SIFT_COUNTERS.items():
    _COLUMNS[_name] = slice(_start, _start + max(_elements, 1))
    _start += max(_elements, 1)
_N_COUNTERS = _start
del _name, _elements, _start
# The loop numbers its counters in this order.
assert [_COLUMNS[name].start for name in ("ignored", "basis_mismatch", "sifted", "errors")] \
    == [1, 5, 7, 15] and _N_COUNTERS == 23


def bob_reading(role, cls):
    """What records of window class ``cls`` on channels of role ``role`` read (ints or
    arrays): ``(measured, basis, bit)`` bool, uint8, uint8 arrays; ``measured`` is False for
    an ignored channel or a class that does not fit the role (DESIGN.md section 2: a Z
    detector reads early as 0 and late as 1, an X detector reads the middle slot, its bit set
    by the interferometer port it sits at)."""
    role, cls = np.asarray(role), np.asarray(cls)
    is_z = role == ROLE_Z
    is_x = (role == ROLE_X_PLUS) | (role == ROLE_X_MINUS)
    measured = (is_z & ((cls == CLASS_EARLY) | (cls == CLASS_LATE))) | (is_x
                                                                         & (cls == CLASS_MIDDLE))
    basis = np.where(is_z, BASIS_Z, BASIS_X).astype(np.uint8)
    bit = np.where(is_z, cls == CLASS_LATE, role == ROLE_X_MINUS).astype(np.uint8)
    return measured, basis, bit


def _roles_of(roles, channel):
    """The role of each record's channel; channels beyond ``roles`` are ignored."""
    roles = np.asarray(roles, np.int64)
    channel = np.asarray(channel, np.int64)
    inside = channel < len(roles)
    return np.where(inside, roles[np.minimum(channel, len(roles) - 1)], ROLE_IGNORED)


def sift_reference(symbols, records, roles):
    """Sift whole arrays, with no notion of cycles: the definition the gateware implements.

    ``symbols``: ``{field: (M,) array}`` with ``basis``, ``bit``, ``intensity``, ``valid``:
    symbol ``i`` has index ``i``. ``records``: ``{field: (R,) array}`` with ``index``,
    ``channel``, ``cls``, ``alarm``, in order. ``roles``: the role of each channel (C,).
    A record whose index is not below M is unavailable.

    Returns ``(sifted, counts)``: ``sifted`` ``{field: array}`` of the sifted records in
    order (fields of ``SIFTED_FIELDS``), ``counts`` ``{counter: int or array}`` as the
    counters of ``LoopbackSifter`` after every record is decided (``basis_mismatch`` (2,),
    ``sifted`` and ``errors`` (8,), element ``basis * 4 + intensity``; not saturated).
    """
    index = np.asarray(records["index"], np.uint64)
    role = _roles_of(roles, records["channel"])
    measured, bob_basis, bob_bit = bob_reading(role, np.asarray(records["cls"]))
    m = len(symbols["basis"])
    available = index < np.uint64(m)
    at = np.where(available, index, 0).astype(np.int64)
    field = {name: np.asarray(symbols[name], np.uint8)[at] if m else np.zeros(len(at), np.uint8)
             for name in ("basis", "bit", "intensity", "valid")}
    ignored = role == ROLE_IGNORED
    usable = measured & available & (field["valid"] == 1)
    same = usable & (field["basis"] == bob_basis)
    element = field["basis"].astype(np.int64) * MAX_INTENSITY_CLASSES + field["intensity"]
    wrong = same & (field["bit"] != bob_bit)
    counts = {
        "records_in": len(index),
        "ignored": int(ignored.sum()),
        "unclassified": int((~ignored & ~measured).sum()),
        "unavailable": int((measured & ~available).sum()),
        "not_valid": int((measured & available & (field["valid"] == 0)).sum()),
        "basis_mismatch": np.bincount(field["basis"][usable & ~same], minlength=2),
        "sifted": np.bincount(element[same], minlength=2 * MAX_INTENSITY_CLASSES),
        "errors": np.bincount(element[wrong], minlength=2 * MAX_INTENSITY_CLASSES),
    }
    sifted = {
        "index": index[same],
        "basis": field["basis"][same].astype(np.uint64),
        "intensity": field["intensity"][same].astype(np.uint64),
        "alice_bit": field["bit"][same].astype(np.uint64),
        "bob_bit": bob_bit[same].astype(np.uint64),
        "alarm": np.asarray(records["alarm"], np.uint64)[same],
    }
    return sifted, counts


class LoopbackSifterOutput(NamedTuple):
    """Outputs of :meth:`LoopbackSifterModel.run` over ``N`` cycles, as the gateware shows
    them in each cycle (before its clock edge), and what the run took.

    ``records_valid`` (N,) bool and ``records`` ``{field: (N,) uint64}`` (:data:`RECORD_FIELDS`,
    zero where not valid): the ``records`` stream as the model's source offered it, to drive
    the gateware with; ``records_ready`` (N,) bool. ``sifted_valid`` (N,) bool and
    ``sifted_records`` ``{field: (N,) uint64}`` (``SIFTED_FIELDS``; the payload keeps its last
    value where not valid): the ``sifted_records`` stream. The counters as the ports of the
    same names: ``records_in``, ``ignored``, ``unclassified``, ``unavailable``, ``not_valid``
    (N,), ``basis_mismatch`` (N, 2), ``sifted``, ``errors`` (N, 8), uint32;
    ``memory_clearing`` (N,) bool, ``log_written`` (N,) uint64, ``log_missed`` (N,) uint32.

    ``taken_cycle``, ``decided_cycle`` (R,) int64: the cycle each record of the source was
    taken and decided in (-1: not in the run). ``taken``: ``{field: array}`` of the sifted
    records taken from ``sifted_records`` (``valid & ready``), in order, plus ``cycle``.
    """

    records_valid: np.ndarray
    records: dict
    records_ready: np.ndarray
    sifted_valid: np.ndarray
    sifted_records: dict
    records_in: np.ndarray
    ignored: np.ndarray
    unclassified: np.ndarray
    unavailable: np.ndarray
    not_valid: np.ndarray
    basis_mismatch: np.ndarray
    sifted: np.ndarray
    errors: np.ndarray
    memory_clearing: np.ndarray
    log_written: np.ndarray
    log_missed: np.ndarray
    taken_cycle: np.ndarray
    decided_cycle: np.ndarray
    taken: dict


#: Per-cycle outputs of :class:`LoopbackSifterOutput` compared with the gateware.
COMPARED = ("records_valid", "records_ready", "sifted_valid", *SIFT_COUNTERS,
            "memory_clearing", "log_written", "log_missed")


@njit(cache=True)
def _run(log_valid, log_address, log_tag, log_symbols, rec_index, rec_address, rec_tag,
         rec_lane, rec_channel, rec_cls, rec_alarm, arrival, roles, clear, sifted_ready,
         present, tags, symbols,
         out_rec_valid, out_rec_at, out_ready, out_valid, out_sifted, out_counters,
         out_r_valid, out_r_symbol, out_r_available, taken_cycle, decided_cycle):
    n = len(log_valid)
    depth = len(present)
    n_records = len(rec_index)
    n_channels = roles.shape[1]
    top = np.int64(0xFFFF_FFFF)
    clearing, sweep = True, 0
    # The source: the record at ``head`` is offered while ``offering``.
    head, offering = 0, False
    # Stage 1: the lookup held, the entry it read, and Bob's side beside it.
    h_valid, h_blind, h_record, h_tag = False, False, -1, np.uint64(0)
    f_present, f_tag, f_symbol = False, np.uint64(0), 0
    h_measured, h_basis, h_bit = False, 0, 0
    # The memory's result register (symbol packed as in the memory) and Bob's side.
    r_valid, r_record, r_symbol, r_available = False, -1, 0, False
    s_measured, s_ignored, s_basis, s_bit = False, False, 0, 0
    h_ignored = False
    # The output register: index, basis, intensity, alice_bit, bob_bit, alarm.
    o_valid = False
    o = np.zeros(6, np.uint64)
    counters = np.zeros(out_counters.shape[1], np.int64)
    for c in range(n):
        # What the gateware shows in cycle c.
        basis = (r_symbol >> 0) & 1
        bit = (r_symbol >> 1) & 1
        intensity = (r_symbol >> 2) & 3
        valid = (r_symbol >> 4) & 1
        usable = s_measured and r_available and valid == 1
        same = basis == s_basis
        sift = r_valid and usable and same
        out_advance = (not o_valid) or sifted_ready[c]
        r_ready = out_advance or not sift
        advance = (not r_valid) or r_ready
        if not offering and head < n_records and arrival[head] <= c:
            offering = True
        out_rec_valid[c] = offering
        out_rec_at[c] = head if offering else -1
        out_ready[c] = advance
        out_valid[c] = o_valid
        out_sifted[c, :] = o
        out_counters[c, :] = counters
        out_r_valid[c] = r_valid
        out_r_symbol[c] = r_symbol
        out_r_available[c] = r_available

        # Counters: the record decided in this cycle, if any, adds to records_in (column 0),
        # one outcome and maybe an error; ``clear`` restarts them.
        outcome, error = -1, -1
        if r_valid and r_ready:
            decided_cycle[r_record] = c
            if s_ignored:
                outcome = 1
            elif not s_measured:
                outcome = 2
            elif not r_available:
                outcome = 3
            elif valid == 0:
                outcome = 4
            elif not same:
                outcome = 5 + basis
            else:
                outcome = 7 + basis * 4 + intensity
                if bit != s_bit:
                    error = outcome + 8
        if clear[c]:
            counters[:] = 0
        if outcome >= 0:
            for k in (0, outcome, error):
                if k >= 0 and counters[k] != top:
                    counters[k] += 1

        # The output register.
        if out_advance:
            o_valid = sift
            if sift:
                o[0] = rec_index[r_record]
                o[1] = basis
                o[2] = intensity
                o[3] = bit
                o[4] = s_bit
                o[5] = rec_alarm[r_record]

        # The memory's write of this cycle: the sweep's empty entry, or the log word.
        if clearing:
            present[sweep] = False
            tags[sweep] = 0
            symbols[sweep, :] = 0
        elif log_valid[c]:
            a = log_address[c]
            present[a] = True
            tags[a] = log_tag[c]
            symbols[a, :] = log_symbols[c, :]

        if advance:
            r_valid = h_valid
            if h_valid:
                hit = f_present and f_tag == h_tag and not h_blind
                r_record = h_record
                r_symbol = f_symbol if hit else 0
                r_available = hit
            s_measured, s_ignored, s_basis, s_bit = h_measured, h_ignored, h_basis, h_bit
            # Stage 1 takes the offered record; the read sees this cycle's write.
            h_valid = offering
            h_blind = clearing
            if offering:
                k = head
                h_record = k
                h_tag = rec_tag[k]
                a = rec_address[k]
                f_present = present[a]
                f_tag = tags[a]
                f_symbol = symbols[a, rec_lane[k]]
                channel = rec_channel[k]
                role = roles[c, channel] if channel < n_channels else 3
                cls = rec_cls[k]
                h_ignored = role == 3
                if role == 0:
                    h_measured = cls == 0 or cls == 1
                    h_basis, h_bit = 0, 1 if cls == 1 else 0
                else:
                    h_measured = role != 3 and cls == 2
                    h_basis, h_bit = 1, 1 if role == 2 else 0
                taken_cycle[k] = c
                head += 1
                offering = False

        if clearing:
            clearing = sweep != depth - 1
            sweep = (sweep + 1) % depth


class LoopbackSifterModel:
    """Reference model of :class:`~timebin.gateware.sifting.LoopbackSifter`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset),
    with the memory empty at the start.
    """

    #: Cycles from a record taken to its decision, without back-pressure.
    latency = LoopbackSifter.latency

    def __init__(self, *, channels, lanes, depth_words):
        check_sifter_parameters(channels, lanes, depth_words)
        self.channels = channels
        self.lanes = lanes
        self.depth_words = depth_words
        self.memory = SymbolMemoryModel(lanes=lanes, depth_words=depth_words)

    def run(self, log_valid, log_index, log_fields, records, arrival=None, roles=None,
            clear=False, sifted_ready=True):
        """Outputs of the gateware for ``N`` cycles from reset, as a
        :class:`LoopbackSifterOutput`.

        ``log_valid`` (N,), ``log_index`` (N,) and ``log_fields`` ({field: (N, L)}, fields of
        ``SYMBOL_FIELDS``; missing ones are 0) are the ``log`` stream, as
        :meth:`SymbolMemoryModel.run` takes them. ``records`` ({field: (R,) array}, fields of
        :data:`RECORD_FIELDS`; missing ones are 0) are the records Bob's side sends, in
        order, and ``arrival`` (R,) the cycle each arrives in (non-decreasing; default: all
        in cycle 0). The model is their source, a queue: it offers each record from its
        arrival or from the cycle after the record before it was taken, whichever is later,
        until it is taken (stream rules). ``roles``: the ``roles`` setting, (C,) or (N, C)
        (default: all ``ROLE_IGNORED``, the port's init); ``clear`` and ``sifted_ready`` (the
        ``sifted_records`` stream's ``ready``): N values, or one for every cycle.
        """
        log_valid = np.asarray(log_valid)
        if log_valid.ndim != 1:
            raise ValueError(f"log_valid must have shape (N,), not {log_valid.shape}")
        n = len(log_valid)
        C, L = self.channels, self.lanes
        log_valid = _per_cycle("log_valid", log_valid, n, 1).astype(np.bool_)
        log_index = _per_cycle("log_index", log_index, n, INDEX_BITS)
        clear = _per_cycle("clear", clear, n, 1).astype(np.bool_)
        sifted_ready = _per_cycle("sifted_ready", sifted_ready, n, 1).astype(np.bool_)
        roles = np.full(C, ROLE_IGNORED) if roles is None else np.asarray(roles)
        if roles.shape not in ((C,), (n, C)):
            raise ValueError(f"roles must have shape {(C,)} or {(n, C)}, not {roles.shape}")
        if roles.size and (roles.min() < 0 or roles.max() >= 1 << ROLE_BITS):
            raise ValueError(f"roles must hold integers in 0..{(1 << ROLE_BITS) - 1}, not "
                             f"{roles.min()}..{roles.max()}")
        roles = np.ascontiguousarray(np.broadcast_to(roles, (n, C)), np.int64)
        log_symbols = _pack_log(log_fields, n, L)
        records = _check_records(records)
        rec_index = records["index"]
        R = len(rec_index)
        arrival = np.zeros(R, np.int64) if arrival is None else np.asarray(arrival)
        if arrival.shape != (R,):
            raise ValueError(f"arrival must have shape {(R,)}, not {arrival.shape}")
        if R and (arrival.min() < 0 or (np.diff(arrival) < 0).any()):
            raise ValueError("arrival must hold non-decreasing cycles from 0")
        arrival = arrival.astype(np.int64)

        log_address, log_tag, _ = self.memory.locate(log_index)
        rec_address, rec_tag, rec_lane = self.memory.locate(rec_index)
        depth = self.depth_words
        present = np.zeros(depth, np.bool_)
        tags = np.zeros(depth, np.uint64)
        symbols = np.zeros((depth, L), np.uint8)
        rec_valid = np.zeros(n, np.bool_)
        rec_at = np.zeros(n, np.int64)
        ready = np.zeros(n, np.bool_)
        sifted_valid = np.zeros(n, np.bool_)
        sifted = np.zeros((n, len(SIFTED_FIELDS)), np.uint64)
        counters = np.zeros((n, _N_COUNTERS), np.uint32)
        r_valid = np.zeros(n, np.bool_)
        r_symbol = np.zeros(n, np.int64)
        r_available = np.zeros(n, np.bool_)
        taken_cycle = np.full(R, -1, np.int64)
        decided_cycle = np.full(R, -1, np.int64)
        _run(log_valid, log_address, log_tag, log_symbols, rec_index, rec_address, rec_tag,
             rec_lane, records["channel"].astype(np.int64), records["cls"].astype(np.int64),
             records["alarm"], arrival, roles, clear, sifted_ready, present, tags, symbols,
             rec_valid, rec_at, ready, sifted_valid, sifted, counters, r_valid, r_symbol,
             r_available, taken_cycle, decided_cycle)

        # The memory stage against the memory's own model, on the same lookups and stalls.
        offered = {name: np.zeros(n, np.uint64) for name in records}
        for name, values in records.items():
            offered[name][rec_valid] = values[rec_at[rec_valid]]
        memory = self.memory.run(log_valid, log_index, log_fields, rec_valid, offered["index"],
                                 result_ready=ready)
        _check_memory_stage(memory, ready, r_valid, r_symbol, r_available)

        fields = {name: sifted[:, i] for i, name in enumerate(_SIFTED_NAMES)}
        taken_at = np.flatnonzero(sifted_valid & sifted_ready)
        taken = {name: values[taken_at] for name, values in fields.items()}
        taken["cycle"] = taken_at.astype(np.uint64)
        counts = {name: counters[:, columns]
                  for name, columns in _COLUMNS.items()}
        for name, elements in SIFT_COUNTERS.items():
            if not elements:
                counts[name] = counts[name][:, 0]
        return LoopbackSifterOutput(
            records_valid=rec_valid, records=offered, records_ready=ready,
            sifted_valid=sifted_valid, sifted_records=fields, **counts,
            memory_clearing=memory.clearing, log_written=memory.written,
            log_missed=memory.missed, taken_cycle=taken_cycle, decided_cycle=decided_cycle,
            taken=taken)


def _check_memory_stage(memory, ready, r_valid, r_symbol, r_available):
    """The loop's copy of the memory pipeline must be ``SymbolMemoryModel``'s."""
    symbol = sum(getattr(memory, name).astype(np.int64) << offset
                 for name, (offset, _) in _PACKED.items())
    shown = r_valid.copy()
    bad = np.flatnonzero((memory.lookup_ready != ready) | (memory.result_valid != r_valid)
                         | (shown & ((memory.available != r_available) | (symbol != r_symbol))))
    if bad.size:
        raise AssertionError(f"the sifter model's memory stage differs from SymbolMemoryModel "
                             f"first in cycle {bad[0]}")


def _pack_log(log_fields, n, lanes):
    """(N, L) uint8 symbols packed as the memory stores them; checks each field."""
    packed = np.zeros((n, lanes), np.uint8)
    for name, values in log_fields.items():
        if name not in _SYMBOL_WIDTHS:
            raise ValueError(f"log_fields has no field {name!r}: symbol fields are "
                             f"{', '.join(_SYMBOL_WIDTHS)}")
        values = np.asarray(values)
        if values.shape != (n, lanes):
            raise ValueError(f"log_fields[{name!r}] must have shape {(n, lanes)}, not "
                             f"{values.shape}")
        bits = _SYMBOL_WIDTHS[name]
        if values.size and (values.min() < 0 or values.max() >= 1 << bits):
            raise ValueError(f"log_fields[{name!r}] must hold integers in "
                             f"0..{(1 << bits) - 1}, not {values.min()}..{values.max()}")
        if name in _PACKED:
            packed |= (values.astype(np.uint8) << _PACKED[name][0]).astype(np.uint8)
    return packed


def _check_records(records):
    """``records`` as ``{field: (R,) uint64}`` with every field of :data:`RECORD_FIELDS`."""
    unknown = set(records) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"records has no field {sorted(unknown)[0]!r}: record fields are "
                         f"{', '.join(RECORD_FIELDS)}")
    if "index" not in records:
        raise ValueError("records must have an 'index' field")
    count = len(np.asarray(records["index"]))
    out = {}
    for name in RECORD_FIELDS:
        values = np.asarray(records.get(name, np.zeros(count, np.uint64)))
        if values.shape != (count,):
            raise ValueError(f"records[{name!r}] must have shape {(count,)}, not "
                             f"{values.shape}")
        bits = _RECORD_WIDTHS[name]
        if values.size and (values.min() < 0 or (bits < 64 and values.max() >= 1 << bits)):
            raise ValueError(f"records[{name!r}] must hold integers in 0..{(1 << bits) - 1}, "
                             f"not {values.min()}..{values.max()}")
        out[name] = values.astype(np.uint64)
    return out


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


# --- Seeded loopback traffic --------------------------------------------------------------

def sifting_stimulus(params, n, seed, *, clean=False):
    """Keyword arguments of :meth:`LoopbackSifterModel.run` for ``n`` cycles of seeded
    loopback traffic for a sifter built with ``params`` (``channels``, ``lanes``,
    ``depth_words``).

    Alice logs a word of random symbols (70 % Z, 90 % valid, all four intensity classes)
    in most cycles from half-way through the memory's sweep (the first words are missed),
    with a few words dropped. Bob's records refer to symbols logged a little earlier, in
    near time order as the record merge gives them, and some to symbols too old, not yet
    logged or dropped; their channels have random roles (including ignored, and channels
    beyond ``channels``) that change half-way through; their classes mostly fit the role and,
    on Z channels, mostly Alice's bit. They arrive in half the cycles, with idle and
    full-rate stretches; ``sifted_ready`` has random back-pressure with stalls; ``clear`` is
    pulsed twice.

    ``clean``: no dropped words, records only from the memory's sweep on and of symbols
    logged 1 .. D/8 words before, no channels beyond ``channels``, constant roles, no
    ``clear`` and lighter back-pressure: traffic on which every record finds its symbol
    (for :func:`sift_reference`) as long as ``D`` is 64 or more.
    """
    C, L, D = params["channels"], params["lanes"], params["depth_words"]
    rng = np.random.default_rng(seed)
    start = D if clean else D // 2
    log_valid = (np.arange(n) >= start) & (clean | (rng.random(n) < 0.9))
    step = np.ones(n, np.int64)
    if not clean:
        drops = rng.random(n) < 0.02
        step[drops] += rng.integers(1, 4, drops.sum())
    word = np.cumsum(np.where(log_valid, step, 0)) - 1      # word logged in each cycle
    last = np.where(np.cumsum(log_valid) > 0, word, -1)     # last word logged up to then
    log_word = np.where(log_valid, word, 0)
    shape = (n, L)
    basis = (rng.random(shape) < 0.3).astype(np.uint8)
    valid = (rng.random(shape) < 0.9).astype(np.uint8)
    log_fields = {"basis": basis, "bit": rng.integers(0, 2, shape, dtype=np.uint8),
                  "intensity": rng.integers(0, MAX_INTENSITY_CLASSES, shape, dtype=np.uint8),
                  "valid": valid,
                  "dark": ((valid == 0) & (rng.random(shape) < 0.5)).astype(np.uint8)}
    log_index = (log_word * L).astype(np.uint64)
    # Alice's symbols by word, where logged after the sweep (to correlate Bob's clicks).
    stored = np.flatnonzero(log_valid & (np.arange(n) >= D))
    cycle_of_word = np.full(int(word[-1]) + 2 if n else 1, -1, np.int64)
    cycle_of_word[word[stored]] = stored

    # Roles: every role present when there are channels enough, then shuffled again.
    def assignment():
        base = [ROLE_Z, ROLE_X_PLUS, ROLE_X_MINUS, ROLE_IGNORED]
        extra = rng.integers(0, 4, max(C - 4, 0)).tolist()
        chosen = (base[:min(C, 3)] + ([ROLE_IGNORED] if C > 3 else []) + extra)[:C]
        return rng.permutation(chosen)
    first = assignment()
    roles = np.tile(first, (n, 1))
    if not clean:
        roles[n // 2:] = assignment()

    # Records: arriving in half the cycles, with idle and full-rate stretches, of symbols
    # some words back from the last one logged.
    arriving = rng.random(n) < 0.5
    for _ in range(3):
        where = int(rng.integers(0, max(n - 60, 1)))
        arriving[where:where + int(rng.integers(20, 60))] = True
        where = int(rng.integers(0, max(n - 30, 1)))
        arriving[where:where + int(rng.integers(5, 30))] = False
    arriving[:D + 2 if clean else start + 2] = False
    arriving[n - 10:] = False
    cycles = np.flatnonzero(arriving)
    R = len(cycles)
    if clean:
        back = rng.integers(1, max(D // 8, 2), R)
    else:
        kind = rng.random(R)
        back = np.select([kind < 0.75, kind < 0.83, kind < 0.9],
                         [rng.integers(0, max(D // 2, 1), R), rng.integers(D, 3 * D, R),
                          -rng.integers(1, 4, R)],
                         rng.integers(0, D + 1, R))
    rec_word = np.maximum(last[cycles] - back, 0)
    index = (rec_word * L + rng.integers(0, L, R)).astype(np.uint64)
    channel = rng.integers(0, C, R)
    if not clean and C < MAX_CHANNELS:
        beyond = rng.random(R) < 0.03
        channel[beyond] = rng.integers(C, MAX_CHANNELS, beyond.sum())
    role = _roles_of(roles[0], channel)
    role[cycles >= n // 2] = _roles_of(roles[-1], channel[cycles >= n // 2])
    at = cycle_of_word[np.minimum(rec_word, len(cycle_of_word) - 1)]
    lane = (index % np.uint64(L)).astype(np.int64)
    known = at >= 0
    a_basis = np.where(known, basis[np.maximum(at, 0), lane], 2)
    a_bit = np.where(known, log_fields["bit"][np.maximum(at, 0), lane], 0)
    right = (rng.random(R) < 0.9).astype(np.int64)
    z_cls = np.where(a_basis == BASIS_Z, a_bit ^ (1 - right), rng.integers(0, 2, R))
    odd = rng.random(R)
    cls = np.where(role == ROLE_Z, np.where(odd < 0.05, CLASS_MIDDLE, z_cls),
                   np.where(odd < 0.1, rng.integers(0, 2, R), CLASS_MIDDLE))
    cls = np.where(role == ROLE_IGNORED, rng.integers(0, 3, R), cls)
    if not clean:
        cls[rng.random(R) < 0.01] = 3                           # discard: never from Bob
    records = {"index": index, "phase": rng.integers(0, 256, R, dtype=np.uint64),
               "channel": channel.astype(np.uint64), "cls": cls.astype(np.uint64),
               "alarm": (rng.random(R) < 0.05).astype(np.uint64)}

    sifted_ready = rng.random(n) < (0.85 if clean else 0.7)
    for _ in range(0 if clean else 3):
        where = int(rng.integers(0, max(n - 30, 1)))
        sifted_ready[where:where + int(rng.integers(5, 30))] = False
    clear = np.zeros(n, bool)
    if not clean:
        clear[[n // 3, int(rng.integers(n // 2, n))]] = True
    return dict(log_valid=log_valid, log_index=log_index, log_fields=log_fields,
                records=records, arrival=cycles, roles=roles, clear=clear,
                sifted_ready=sifted_ready)


# --- Ports of the gateware ------------------------------------------------------------------

#: Output ports of the sifter sampled every cycle, named as in the Verilog.
OUTPUT_PORTS = ("log__ready", "records__ready", "sifted_records__valid",
                "sifted_records__payload", *SIFT_COUNTERS, "memory_clearing", "log_written",
                "log_missed")


def pack_detections(fields):
    """``Detection`` payload ints from ``{field: (N,) array}`` (missing fields are 0)."""
    n = len(next(iter(fields.values())))
    bits = np.zeros((n, Detection.size), np.uint8)
    for name, field in Detection:
        if name in fields:
            pack_field(bits, field.offset, np.asarray(fields[name], np.uint64)[:, None],
                       _RECORD_WIDTHS[name])
    return bits_to_ints(bits)


def sifter_inputs(dut, stimulus, model):
    """``{port name: N ints}`` of every input of the sifter ``dut`` (Verilog names, e.g.
    ``records__payload``) for :meth:`LoopbackSifterModel.run`'s keyword arguments
    ``stimulus`` and the records its source offered (``model``, its output)."""
    n = len(stimulus["log_valid"])
    roles = stimulus.get("roles")
    roles = np.full(dut.channels, ROLE_IGNORED) if roles is None else roles

    def flags(value):
        return [int(x) for x in np.broadcast_to(np.asarray(value, bool), (n,))]
    return {
        "log__valid": flags(stimulus["log_valid"]),
        "log__payload": pack_symbol_words(dut.lanes, stimulus["log_fields"],
                                          stimulus["log_index"]),
        "records__valid": flags(model.records_valid),
        "records__payload": pack_detections(model.records),
        "sifted_records__ready": flags(stimulus.get("sifted_ready", True)),
        "roles": port_ints(dut.roles, roles, n),
        "clear": flags(stimulus.get("clear", False)),
    }


def port_of(dut, name):
    """The port of ``dut`` of a Verilog name: ``records__ready`` is ``dut.records.ready``."""
    port = dut
    for part in name.split("__"):
        port = getattr(port, part)
    return port


def decode_sifter_outputs(dut, got):
    """Per-cycle ints of :data:`OUTPUT_PORTS` -> arrays named as the fields of
    :class:`LoopbackSifterOutput` (plus ``log_ready``)."""
    out = {"log_ready": np.asarray(got["log__ready"], bool),
           "records_ready": np.asarray(got["records__ready"], bool),
           "sifted_valid": np.asarray(got["sifted_records__valid"], bool)}
    bits = ints_to_bits(got["sifted_records__payload"], sum(w for _, w in SIFTED_FIELDS))
    out["sifted_records"] = {name: unpack_field(bits, offset, 1, width)[:, 0]
                             for name, (offset, width) in field_offsets(SIFTED_FIELDS).items()}
    for name in (*SIFT_COUNTERS, "log_written", "log_missed"):
        out[name] = port_arrays(getattr(dut, name), got[name])
    out["memory_clearing"] = np.asarray(got["memory_clearing"], bool)
    return out


def run_sifter(dut, inputs, *, reset_at=None):
    """Simulate the sifter ``dut`` in Amaranth for the cycles of ``inputs`` (from
    :func:`sifter_inputs`) from reset; returns :func:`decode_sifter_outputs`."""
    n = len(inputs["log__valid"])
    ports = [(port_of(dut, name), values) for name, values in inputs.items()]
    watched = {name: port_of(dut, name) for name in OUTPUT_PORTS}
    got = run_per_cycle(dut, ports, watched, n, reset_at=reset_at)
    return decode_sifter_outputs(dut, got)


def compare_sifter(rtl, model):
    """Fail on the first cycle where the gateware's outputs (:func:`decode_sifter_outputs`)
    differ from the model's, naming the output, the cycle and both values."""
    assert rtl["log_ready"].all(), "log.ready went low"
    pairs = [(name, rtl[name], getattr(model, name)) for name in COMPARED
             if name != "records_valid"]
    pairs += [(f"sifted_records.{name}", rtl["sifted_records"][name],
               model.sifted_records[name]) for name in _SIFTED_NAMES]
    for name, got, want in pairs:
        got = np.asarray(got).astype(np.uint64)
        want = np.asarray(want).astype(np.uint64)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, model {want.shape}"
        diff = np.flatnonzero((got != want).reshape(len(got), -1).any(axis=1))
        assert not diff.size, (f"{name} differs first in cycle {diff[0]}: gateware "
                               f"{got[diff[0]].tolist()}, model {want[diff[0]].tolist()}")
