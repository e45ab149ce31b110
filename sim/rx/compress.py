"""Bit-exact, cycle-exact reference model of :class:`timebin.gateware.rx.compress.RecordCompressor`,
a vectorised reference encoder of its block format, and the measurement of its bits per
detection against the entropy bound.

The words a block turns into depend only on its records and ``k``; when they leave depends on
the pipeline, the queues, the packer and the handshakes. So the model is one numba loop over
cycles that follows record and word numbers through the stage registers, the queue levels and
the packer's fill, written as the gateware is; the words themselves come from
:func:`encode_blocks` afterwards.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ...gateware.records import (
    CLASS_EARLY,
    CLASS_LATE,
    CLASS_MIDDLE,
    ESCAPE_QUOTIENT,
    HEADER_WORDS,
    INDEX_BITS,
    MAX_K,
    SEQUENCE_BITS,
    SLOT_CLASS,
    SLOT_HALF,
    field_widths,
    pack_header,
)
from ...gateware.rx.compress import (
    ADMIT_MARGIN,
    BLOCK_QUEUE_DEPTH,
    DEFAULT_K,
    DEFAULT_MAX_RECORDS,
    DEFAULT_TIMEOUT,
    K_PORT_BITS,
    OUTPUT_QUEUE_DEPTH,
    TIMEOUT_BITS,
    RecordCompressor,
    check_compressor_parameters,
    record_queue_depth,
    unary_queue_depth,
)
from ...host.records import entropy_bound

__all__ = ["RECORD_FIELDS", "slot_codes", "encode_blocks", "encode_records",
           "RecordCompressorOutput", "RecordCompressorModel", "link_records",
           "CompressionFigure", "measure_bits_per_detection"]

#: Fields of a detection record.
RECORD_FIELDS = ("index", "phase", "channel", "cls", "alarm")

_WORD = 32
_TOP = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def _check_records(records, channels, uis_per_symbol):
    """``{field: (N,) uint64}`` of ``records``; raises ``ValueError`` naming a field that is
    missing, of another length, or out of range."""
    missing = [name for name in RECORD_FIELDS if name not in records]
    if missing:
        raise ValueError(f"Records need the fields {', '.join(RECORD_FIELDS)}; "
                         f"{missing[0]!r} is missing")
    n = len(np.asarray(records["index"]))
    out = {}
    for name, limit in (("index", None), ("phase", uis_per_symbol), ("channel", channels),
                        ("cls", 4), ("alarm", 2)):
        values = np.asarray(records[name])
        if values.shape != (n,):
            raise ValueError(f"Record field {name} must have shape ({n},), not {values.shape}")
        if values.size and limit is not None and (values.min() < 0 or values.max() >= limit):
            raise ValueError(f"Record field {name} must hold 0..{limit - 1}, not "
                             f"{values.min()}..{values.max()}")
        out[name] = values.astype(np.uint64)
    return out


def slot_codes(phase, cls, uis_per_symbol):
    """``(slot, offset)``: the 2-bit slot code of each (phase, class) pair (-1 for a pair
    without one, coded as an escape) and the UI offset within its half."""
    widths = field_widths(1, uis_per_symbol)
    phase = np.asarray(phase, np.int64)
    half = (phase >= widths.half).astype(np.int64)
    table = np.full((2, 4), -1, np.int64)
    table[SLOT_HALF, SLOT_CLASS] = np.arange(len(SLOT_HALF))
    return table[half, np.asarray(cls, np.int64)], phase - half * widths.half


def _gaps(index):
    """Gap of each record's index to the previous one's, modulo 2**64 (0 before the first)."""
    return index - np.r_[np.uint64(0), index[:-1]]


def _bit_length(values):
    """Bit length of each uint64."""
    values = np.asarray(values, np.uint64)
    out = np.zeros(values.shape, np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        big = values >> (out + shift).astype(np.uint64) != 0
        out += np.where(big, shift, 0)
    return out + (values != 0)


def _scatter(total_words, pos, value, width):
    """Words holding each ``width``-bit ``value`` (uint64, width <= 64) at bit ``pos``; the
    pieces must not overlap."""
    pos = np.asarray(pos, np.int64)
    value = np.asarray(value, np.uint64)
    width = np.asarray(width, np.int64)
    value = value & np.where(width >= 64, _TOP,
                             (np.uint64(1) << np.minimum(width, 63).astype(np.uint64))
                             - np.uint64(1))
    word = pos >> 5
    shift = (pos & 31).astype(np.uint64)
    low = np.uint64(0xFFFF_FFFF)
    parts = ((word, (value << shift) & low),
             (word + 1, (value >> (np.uint64(32) - shift)) & low),
             (word + 2, ((value >> np.uint64(1)) >> (np.uint64(63) - shift)) & low))
    out = np.zeros(total_words + 3, np.float64)
    for where, part in parts:
        # Pieces do not overlap, so the sums are ORs, and stay below 2**32: exact in float64.
        out += np.bincount(where, weights=part.astype(np.float64), minlength=len(out))
    return out[:total_words].astype(np.uint32)


def encode_blocks(records, starts, k, *, channels, uis_per_symbol, first_sequence=0):
    """Words of the blocks that start at the records ``starts`` (record 0 first, increasing)
    and run to the next start or the end, with Rice parameters ``k`` (one per block).

    ``records``: ``{field: (N,) array}`` (:data:`RECORD_FIELDS`); the gaps are taken to the
    previous record of the whole sequence, as the gateware does. Each block's alarm is its
    first record's. Returns ``(words uint32, unary_words (B,), fixed_words (B,))``.
    """
    widths = field_widths(channels, uis_per_symbol)
    fields = _check_records(records, channels, uis_per_symbol)
    n = len(fields["index"])
    starts = np.asarray(starts, np.int64)
    if n == 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if starts.size == 0 or starts[0] != 0 or (np.diff(starts) <= 0).any() or starts[-1] >= n:
        raise ValueError("Block starts must increase from record 0 and stay below the count")
    k = np.broadcast_to(np.asarray(k, np.int64), starts.shape)
    if (k < 0).any() or (k > MAX_K).any():
        raise ValueError(f"Rice parameters must be in 0..{MAX_K}")
    count = np.diff(np.r_[starts, n])
    block = np.repeat(np.arange(len(starts)), count)
    rank = np.arange(n) - starts[block]
    kr = k[block]
    index = fields["index"]
    gap = _gaps(index)
    slot, offset = slot_codes(fields["phase"], fields["cls"], uis_per_symbol)
    escape = (rank == 0) | (_bit_length(gap) > kr + 4) | (slot < 0)
    q = np.where(escape, ESCAPE_QUOTIENT,
                 (gap >> kr.astype(np.uint64)).astype(np.int64) & (ESCAPE_QUOTIENT - 1))
    unary_length = q + 1
    fixed_length = np.where(escape, INDEX_BITS + widths.escape, kr + widths.normal)
    unary_bits = np.add.reduceat(unary_length, starts)
    fixed_bits = np.add.reduceat(fixed_length, starts)
    unary_words = (unary_bits + _WORD - 1) // _WORD
    fixed_words = (fixed_bits + _WORD - 1) // _WORD
    sizes = HEADER_WORDS + unary_words + fixed_words
    first_word = np.cumsum(sizes) - sizes
    total = int(sizes.sum())

    def within(lengths):
        ends = np.cumsum(lengths)
        return ends - lengths - (ends - lengths)[starts][block]

    sequence = (first_sequence + np.arange(len(starts))) % (1 << SEQUENCE_BITS)
    alarm = fields["alarm"][starts].astype(np.int64)
    header = np.array([pack_header(channels, uis_per_symbol, int(kb), int(a), int(c), int(s),
                                   int(u), int(f))
                       for kb, a, c, s, u, f in zip(k, alarm, count, sequence, unary_words,
                                                    fixed_words, strict=True)],
                      np.uint64).reshape(-1, HEADER_WORDS)
    header_pos = (first_word[:, None] + np.arange(HEADER_WORDS)) * _WORD
    unary_pos = (first_word + HEADER_WORDS)[block] * _WORD + within(unary_length)
    unary_value = (np.uint64(1) << q.astype(np.uint64)) - np.uint64(1)
    fixed_pos = (first_word + HEADER_WORDS + unary_words)[block] * _WORD + within(fixed_length)
    channel = fields["channel"]
    cb = np.uint64(widths.channel)
    normal = ((gap & ((np.uint64(1) << kr.astype(np.uint64)) - np.uint64(1)))
              | (channel << kr.astype(np.uint64))
              | (np.maximum(slot, 0).astype(np.uint64) << (kr.astype(np.uint64) + cb))
              | (offset.astype(np.uint64) << (kr.astype(np.uint64) + cb + np.uint64(2))))
    raw_fields = (channel | (fields["phase"] << cb)
                  | (fields["cls"] << (cb + np.uint64(widths.phase))))
    escaped = np.flatnonzero(escape)
    words = _scatter(
        total,
        np.concatenate((header_pos.ravel(), unary_pos, fixed_pos,
                        fixed_pos[escaped] + INDEX_BITS)),
        np.concatenate((header.ravel(), unary_value, np.where(escape, index, normal),
                        raw_fields[escaped])),
        np.concatenate((np.full(header.size, _WORD), unary_length,
                        np.where(escape, INDEX_BITS, kr + widths.normal),
                        np.full(escaped.size, widths.escape))))
    return words, unary_words, fixed_words


def encode_records(records, *, channels, uis_per_symbol, k=DEFAULT_K,
                   max_records=DEFAULT_MAX_RECORDS, breaks=None, first_sequence=0):
    """Words of ``records`` as the gateware codes them when it is never held up: blocks
    open at the first record, close after ``max_records`` records, before a record whose
    ``alarm`` differs, and before each record marked in ``breaks`` ((N,) bool: a flush or a
    timeout closed the block before it). ``k``: one value, or (N,) values of which a block
    uses its first record's. Returns the words (uint32)."""
    check_compressor_parameters(channels, uis_per_symbol, max_records)
    fields = _check_records(records, channels, uis_per_symbol)
    n = len(fields["index"])
    forced = np.zeros(n, bool)
    if n:
        forced[0] = True
        forced[1:] |= fields["alarm"][1:] != fields["alarm"][:-1]
    if breaks is not None:
        forced |= np.asarray(breaks, bool)
    run = np.cumsum(forced) - 1
    run_start = np.flatnonzero(forced)
    starts = np.flatnonzero((np.arange(n) - run_start[run]) % max_records == 0) if n else []
    k = np.broadcast_to(np.asarray(k, np.int64), (n,))
    return encode_blocks(fields, starts, k[starts] if n else [], channels=channels,
                         uis_per_symbol=uis_per_symbol, first_sequence=first_sequence)[0]


# --- cycle model -------------------------------------------------------------------------

class RecordCompressorOutput(NamedTuple):
    """Per-cycle outputs of :meth:`RecordCompressorModel.run` over ``N`` cycles, as the
    gateware shows them in each cycle (before its clock edge), plus the blocks closed.

    ``records_valid``, ``records_ready`` (N,) bool: the ``records`` handshake (the source's
    ``valid``, the gateware's ``ready``); ``record`` (N,) int64: the record offered (-1 for
    none). ``words_valid`` (N,) bool, ``words`` (N,) uint32: the ``words`` stream (while
    ``valid`` is low, the output queue's stale entry; 0 before its first use).
    ``records_in``, ``words_out``, ``escapes`` (N,) uint64; ``settings_error`` (N,) bool.
    ``stream`` (W,) uint32: every word of the blocks closed in the run, of which ``words``
    offers the first ones. ``blocks``: ``{first, count, k, alarm, sequence, closed}`` (B,)
    int64: each block's first record, record count, Rice parameter, alarm and sequence
    number, and the block cycle of its close.
    """

    records_valid: np.ndarray
    records_ready: np.ndarray
    record: np.ndarray
    words_valid: np.ndarray
    words: np.ndarray
    records_in: np.ndarray
    words_out: np.ndarray
    escapes: np.ndarray
    settings_error: np.ndarray
    stream: np.ndarray
    blocks: dict

    def taken_words(self, ready=True):
        """The words taken from ``words`` (``valid & ready``), in order."""
        ready = np.broadcast_to(np.asarray(ready, bool), self.words_valid.shape)
        return self.words[self.words_valid & ready]


_IDLE, _HEADER, _UNARY, _FIXED = range(4)
_CONSTANTS = np.array([DEFAULT_K, MAX_K, ADMIT_MARGIN, BLOCK_QUEUE_DEPTH, OUTPUT_QUEUE_DEPTH,
                       ESCAPE_QUOTIENT, HEADER_WORDS, INDEX_BITS, (1 << TIMEOUT_BITS) - 1],
                      np.int64)


@njit(cache=True)
def _fifo_buffered(inner, full, write, r_en):
    """Next ``(inner, full, read)`` of a ``SyncFIFOBuffered`` (inner level, output register
    full) with ``w_en`` = ``write`` (the caller checked ``w_rdy``) and ``r_en``."""
    read = full and r_en
    inner_read = inner > 0 and (not full or r_en)
    inner += (1 if write else 0) - (1 if inner_read else 0)
    if inner_read:
        full = True
    elif r_en:
        full = False
    return inner, full, read


@njit(cache=True)
def _run(alarm, unusual, gap_bits, gap_small, gaps, ready, flush, kport, timeout,
         max_records, record_depth, unary_depth, normal_bits, escape_bits, consts,
         out_offer, out_record, out_ready, out_words_valid, out_word, out_records_in,
         out_words_out, out_escapes, out_settings_error,
         block_first, block_count, block_k, block_alarm, block_unary, block_fixed,
         block_closed, record_length):
    # Constants come in as arguments: numba's cache would keep stale module globals.
    (DEFAULT_K, MAX_K, ADMIT_MARGIN, BLOCK_QUEUE_DEPTH, OUTPUT_QUEUE_DEPTH, ESCAPE_QUOTIENT,
     HEADER_WORDS, INDEX_BITS, _AGE_TOP) = consts
    n_records = len(alarm)
    # Source, settings, admission.
    offered, holding = 0, False
    applied_k, next_k, admit = DEFAULT_K, DEFAULT_K, True
    # Stage registers: (valid, ...) with the record's number.
    s1_valid, s1_flush, s1_rec = False, False, -1
    s2_valid, s2_flush, s2_rec = False, False, -1
    s3_valid, s3_first, s3_k, s3_rec, s3_close = False, False, 0, -1, False
    s4_valid, s4_first, s4_q, s4_length, s4_close = False, False, 0, 0, False
    s5_valid, s5_close, s5_partial, s5_push = False, False, False, False
    # Block state.
    is_open, count, full, blk_k, blk_alarm, age = False, 0, False, 0, 0, 0
    timed_out, flush_pending, open_first = False, False, -1
    blocks_closed = 0
    # Pack state: running sums of the open block's sections.
    usum, uwords, fsum, fbits, blocks_packed = 0, 0, 0, 0, 0
    # Queues: record and unary SyncFIFOBuffered (inner level, output register full); block,
    # prefetch and output SyncFIFO (level). Entries follow in order, so counters name them.
    rec_inner, rec_full, un_inner, un_full = 0, False, 0, False
    queued_blocks, unary_head, record_head = 0, 0, 0
    out_level, produce, consume = 0, 0, 0
    ring = np.full(OUTPUT_QUEUE_DEPTH, -1, np.int64)   # word numbers in the output queue
    # Coder.
    ready_code, code_rec, next_head = False, -1, 0
    state, header_index, unary_left, records_left, fill, coding = _IDLE, 0, 0, 0, 0, 0
    words, records_in, words_out, escapes = 0, 0, 0, 0
    for c in range(len(gaps)):
        k_ok = kport[c] <= MAX_K
        k_in_use = kport[c] if k_ok else applied_k
        offer = holding or (not gaps[c] and offered < n_records)
        taken = offer and admit
        out_offer[c] = offer
        out_record[c] = offered if offer else -1
        out_ready[c] = admit
        out_words_valid[c] = out_level > 0
        out_word[c] = ring[consume]
        out_records_in[c] = records_in
        out_words_out[c] = words_out
        out_escapes[c] = escapes
        out_settings_error[c] = not k_ok
        if out_level > 0 and ready[c]:
            words_out += 1
        if taken:
            records_in += 1
        rec_level = rec_inner + (1 if rec_full else 0)
        un_level = un_inner + (1 if un_full else 0)
        admit_next = (rec_level <= record_depth - ADMIT_MARGIN
                      and un_level <= unary_depth - ADMIT_MARGIN
                      and queued_blocks <= BLOCK_QUEUE_DEPTH - ADMIT_MARGIN)

        # --- write stage (from the pack registers)
        rec_write = s5_valid
        blk_write = s5_close
        un_write = (s5_close and s5_partial) or (s5_valid and s5_push)
        assert not (s5_close and s5_partial and s5_valid and s5_push)

        # --- pack stage (from the code registers)
        n5_valid, n5_close, n5_partial = s4_valid, s4_close, usum != 0
        n5_push = False
        if s4_close:
            block_unary[blocks_packed] = uwords + (1 if usum != 0 else 0)
            block_fixed[blocks_packed] = (fbits + 31) // 32
            blocks_packed += 1
        if s4_valid:
            ushift = 0 if s4_first else usum
            utotal = ushift + s4_q + 1
            n5_push = utotal >= 32
            foffset = 0 if s4_first else fsum
            usum = utotal & 31
            uwords = (0 if s4_first else uwords) + (1 if n5_push else 0)
            fsum = (foffset + s4_length) & 31
            fbits = (0 if s4_first else fbits) + s4_length

        # --- code stage (from the block registers)
        n4_q, n4_length = 0, 0
        if s3_valid:
            escape = s3_first or gap_bits[s3_rec] > s3_k + 4 or unusual[s3_rec]
            n4_q = ESCAPE_QUOTIENT if escape else gap_small[s3_rec] >> s3_k
            n4_length = INDEX_BITS + escape_bits if escape else s3_k + normal_bits
            record_length[s3_rec] = n4_length
            if escape and not s3_first:
                escapes += 1

        # --- block stage (from the measure registers): the block cycle
        close = is_open and (full or flush_pending or timed_out
                             or (s2_valid and alarm[s2_rec] != blk_alarm))
        first = s2_valid and (not is_open or close)
        open_after = s2_valid or (is_open and not close)
        n3_k = next_k if first else blk_k
        if close:
            block_first[blocks_closed] = open_first
            block_count[blocks_closed] = count
            block_k[blocks_closed] = blk_k
            block_alarm[blocks_closed] = blk_alarm
            block_closed[blocks_closed] = c
            blocks_closed += 1
        n_full = s2_valid and (max_records == 1 if first else count == max_records - 1)
        n_timed_out = (is_open and not close and timeout[c] != 0 and age >= timeout[c])
        if s2_valid:
            count = 1 if first else count + 1
        if first:
            blk_k, blk_alarm, age, open_first = next_k, alarm[s2_rec], 1, s2_rec
        elif is_open and not close:
            age = min(age + 1, _AGE_TOP)
        full, timed_out = n_full, n_timed_out
        flush_pending = s2_flush and open_after
        is_open = open_after

        # --- coder (from its registers and the queues' outputs)
        room = out_level != OUTPUT_QUEUE_DEPTH
        out_write, blk_read, uh_read, append = False, False, False, False
        if state == _IDLE:
            if queued_blocks > 0:
                blk_read = True
                state, header_index = _HEADER, 0
        elif state == _HEADER:
            if room:
                out_write = True
                header_index += 1
                if header_index == HEADER_WORDS:
                    unary_left = block_unary[coding]
                    state = _UNARY
        elif state == _UNARY:
            if room and unary_head > 0:
                out_write, uh_read = True, True
                unary_left -= 1
                if unary_left == 0:
                    records_left = block_count[coding]
                    state = _FIXED
        else:
            over = fill >= 32
            pop = room and over
            pad = room and not over and records_left == 0 and fill != 0
            append = records_left != 0 and ready_code and fill < 64
            out_write = pop or pad
            if pop:
                fill -= 32
            if pad:
                fill = 0
            if append:
                fill += record_length[code_rec]
                records_left -= 1
            if records_left == 0 and fill == 0:
                state = _IDLE
                coding += 1
        # The code register takes the record prefetch queue's head when free.
        rh_read = False
        if not ready_code or append:
            ready_code = record_head > 0
            if record_head > 0:
                rh_read = True
                code_rec = next_head
                next_head += 1
        if out_write:
            ring[produce] = words
            produce = (produce + 1) % OUTPUT_QUEUE_DEPTH
            words += 1

        # --- queues
        rec_r_en = record_head != 2
        un_r_en = unary_head != 2
        rec_to_head = rec_full and rec_r_en
        un_to_head = un_full and un_r_en
        rec_inner, rec_full, _ = _fifo_buffered(rec_inner, rec_full, rec_write, rec_r_en)
        un_inner, un_full, _ = _fifo_buffered(un_inner, un_full, un_write, un_r_en)
        assert rec_inner <= record_depth - 1 and un_inner <= unary_depth - 1
        record_head += (1 if rec_to_head else 0) - (1 if rh_read else 0)
        unary_head += (1 if un_to_head else 0) - (1 if uh_read else 0)
        queued_blocks += (1 if blk_write else 0) - (1 if blk_read else 0)
        assert queued_blocks <= BLOCK_QUEUE_DEPTH
        out_read = out_level > 0 and ready[c]
        out_level += (1 if out_write else 0) - (1 if out_read else 0)
        if out_read:
            consume = (consume + 1) % OUTPUT_QUEUE_DEPTH

        # --- registers of the stages, source and settings
        s5_valid, s5_close, s5_partial, s5_push = n5_valid, n5_close, n5_partial, n5_push
        s4_valid, s4_first, s4_q, s4_length, s4_close = (s3_valid, s3_first, n4_q, n4_length,
                                                         s3_close)
        s3_valid, s3_first, s3_k, s3_rec, s3_close = s2_valid, first, n3_k, s2_rec, close
        s2_valid, s2_flush, s2_rec = s1_valid, s1_flush, s1_rec
        s1_valid, s1_flush = taken, flush[c]
        if taken:
            s1_rec = offered
            offered += 1
            holding = False
        elif offer:
            holding = True
        if k_ok:
            applied_k = kport[c]
        next_k = k_in_use
        admit = admit_next
    assert blocks_packed >= blocks_closed - 3
    return blocks_closed


class RecordCompressorModel:
    """Reference model of :class:`~timebin.gateware.rx.compress.RecordCompressor`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset)
    for a record source that offers its records in order: it offers the next record in the
    first cycle after the last was taken in which ``gaps`` is low, and holds it until it is
    taken.
    """

    #: Cycles from a block's close to its first header word on ``words``, at the earliest.
    header_latency = RecordCompressor.header_latency
    #: Cycles from a record taken to its block cycle.
    block_latency = RecordCompressor.block_latency

    def __init__(self, *, channels, uis_per_symbol, max_records=DEFAULT_MAX_RECORDS):
        check_compressor_parameters(channels, uis_per_symbol, max_records)
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.max_records = max_records
        self.widths = field_widths(channels, uis_per_symbol)

    def _per_cycle(self, name, value, n, bits):
        array = np.asarray(value)
        if array.ndim == 0:
            array = np.full(n, array)
        if array.shape != (n,):
            raise ValueError(f"{name} must be a scalar or {n} values, not of shape "
                             f"{array.shape}")
        array = array.astype(np.int64)
        if array.size and (array.min() < 0 or array.max() >= 1 << bits):
            raise ValueError(f"{name} must fit its {bits}-bit port")
        return array

    def run(self, records, cycles, *, gaps=False, ready=True, flush=False, k=DEFAULT_K,
            timeout=DEFAULT_TIMEOUT):
        """Outputs of the gateware for ``cycles`` cycles from reset, as a
        :class:`RecordCompressorOutput`.

        ``records``: ``{field: (R,) array}`` (:data:`RECORD_FIELDS`) in the order the source
        offers them. ``gaps`` (the source's idle cycles), ``ready`` (``words.ready``),
        ``flush``, ``k`` and ``timeout`` (the port values) are ``cycles`` values or one for
        every cycle.
        """
        fields = _check_records(records, self.channels, self.uis_per_symbol)
        n = int(cycles)
        per_cycle = {name: self._per_cycle(name, value, n, bits) for name, value, bits in (
            ("gaps", gaps, 1), ("ready", ready, 1), ("flush", flush, 1),
            ("k", k, K_PORT_BITS), ("timeout", timeout, TIMEOUT_BITS))}
        gap = _gaps(fields["index"])
        gap_bits = _bit_length(gap)
        gap_small = np.where(gap_bits <= 40, gap, np.uint64(0)).astype(np.int64)
        slot, _ = slot_codes(fields["phase"], fields["cls"], self.uis_per_symbol)
        n_records = len(gap)
        most_blocks = n_records + 1
        out = {name: np.zeros(n, dtype) for name, dtype in (
            ("offer", np.bool_), ("record", np.int64), ("ready", np.bool_),
            ("words_valid", np.bool_), ("word", np.int64), ("records_in", np.int64),
            ("words_out", np.int64), ("escapes", np.int64), ("settings_error", np.bool_))}
        blocks = {name: np.zeros(most_blocks, np.int64) for name in (
            "first", "count", "k", "alarm", "unary", "fixed", "closed")}
        record_length = np.zeros(n_records, np.int64)
        closed = _run(fields["alarm"].astype(np.int64), slot < 0, gap_bits, gap_small,
                      per_cycle["gaps"].astype(np.bool_), per_cycle["ready"].astype(np.bool_),
                      per_cycle["flush"].astype(np.bool_), per_cycle["k"], per_cycle["timeout"],
                      self.max_records, record_queue_depth(self.max_records),
                      unary_queue_depth(self.max_records),
                      self.widths.normal, self.widths.escape, _CONSTANTS,
                      out["offer"], out["record"], out["ready"], out["words_valid"],
                      out["word"], out["records_in"], out["words_out"], out["escapes"],
                      out["settings_error"], blocks["first"], blocks["count"], blocks["k"],
                      blocks["alarm"], blocks["unary"], blocks["fixed"], blocks["closed"],
                      record_length)
        blocks = {name: values[:closed] for name, values in blocks.items()}
        if closed:
            coded = blocks["first"][-1] + blocks["count"][-1]
            subset = {name: values[:coded] for name, values in fields.items()}
            stream, unary, fixed = encode_blocks(
                subset, blocks["first"], blocks["k"], channels=self.channels,
                uis_per_symbol=self.uis_per_symbol)
            # The loop's section sizes come from its own code lengths: they must agree (for
            # the blocks whose close reached the pack stage).
            packed = blocks["unary"] > 0
            assert (unary[packed] == blocks["unary"][packed]).all()
            assert (fixed[packed] == blocks["fixed"][packed]).all()
        else:
            stream = np.zeros(0, np.uint32)
        assert out["word"].max(initial=-1) < len(stream)
        words = np.where(out["word"] >= 0, stream[np.maximum(out["word"], 0)]
                         if len(stream) else 0, 0).astype(np.uint32)
        blocks["sequence"] = np.arange(closed) % (1 << SEQUENCE_BITS)
        del blocks["unary"], blocks["fixed"]
        return RecordCompressorOutput(
            records_valid=out["offer"], records_ready=out["ready"], record=out["record"],
            words_valid=out["words_valid"], words=words,
            records_in=out["records_in"].astype(np.uint64),
            words_out=out["words_out"].astype(np.uint64),
            escapes=out["escapes"].astype(np.uint64),
            settings_error=out["settings_error"], stream=stream, blocks=blocks)


# --- measurement -------------------------------------------------------------------------

def link_records(rng, p, n, channels=4, uis_per_symbol=2):
    """``n`` detection records of a link with detection probability ``p`` per symbol: the
    indices a Bernoulli(p) process over symbols (from a random start), channels equally
    likely, the last of two or more the X detector (middle class, phase uniform over the
    second half), the others Z detectors (phase uniform, early or late by its half), no
    alarm. ``rng`` is a ``numpy.random.Generator``."""
    widths = field_widths(channels, uis_per_symbol)
    start = rng.integers(0, 1 << 62, dtype=np.uint64)
    index = start + np.cumsum(rng.geometric(p, n)).astype(np.uint64)
    channel = rng.integers(0, channels, n)
    x = (channel == channels - 1) & (channels > 1)
    phase = np.where(x, rng.integers(widths.half, max(uis_per_symbol, widths.half + 1), n),
                     rng.integers(0, uis_per_symbol, n))
    phase = np.minimum(phase, uis_per_symbol - 1)
    cls = np.where(x, CLASS_MIDDLE, np.where(phase >= widths.half, CLASS_LATE, CLASS_EARLY))
    return {"index": index, "phase": phase, "channel": channel, "cls": cls,
            "alarm": np.zeros(n, np.int64)}


class CompressionFigure(NamedTuple):
    """Bits per detection of the compressed stream (``bits``, with the Rice parameter
    ``k``) and the entropy bound (``bound``) at detection probability ``p``."""

    p: float
    k: int
    bits: float
    bound: float


def measure_bits_per_detection(p, k=None, channels=4, uis_per_symbol=2, n=200_000,
                               max_records=DEFAULT_MAX_RECORDS, seed=1):
    """Average bits per detection of the compressed stream (headers and padding included)
    for ``n`` records of :func:`link_records` at detection probability ``p``, in blocks of
    ``max_records``, with Rice parameter ``k`` (None: the best one), and the entropy bound
    (:func:`timebin.host.records.entropy_bound`). Returns a :class:`CompressionFigure`."""
    records = link_records(np.random.default_rng(seed), p, n, channels, uis_per_symbol)

    def bits(kk):
        words = encode_records(records, channels=channels, uis_per_symbol=uis_per_symbol,
                               k=kk, max_records=max_records)
        return len(words) * _WORD / n

    candidates = range(MAX_K + 1) if k is None else [k]
    best = min(candidates, key=bits)
    return CompressionFigure(p=p, k=best, bits=bits(best),
                             bound=entropy_bound(p, channels, uis_per_symbol))
