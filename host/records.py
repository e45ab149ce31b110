"""Bob's compressed detection records: the block format, its host decoder, and the entropy
bounds the format is measured against. Plain numpy: no Amaranth, no ``timebin.sim``.

The gateware (:class:`timebin.gateware.rx.compress.RecordCompressor`) and its reference model
take the format's constants from here, so the format is written down once.

Ref: S. W. Golomb, "Run-length encodings", IEEE Trans. Inf. Theory 12(3), 399 (1966): a
geometric source (the index gap of a Bernoulli detection process) is coded near its entropy
by a unary quotient and a binary remainder. R. F. Rice, "Some practical universal noiseless
coding techniques", JPL Publication 79-22 (1979): the divisor a power of two, ``2**k``, so that
the remainder is ``k`` plain bits.

Block format
------------
A stream is a sequence of 32-bit words; bit ``i`` of the stream is bit ``i % 32`` of word
``i // 32`` (LSB first), and every field below is written LSB first. A stream is a sequence
of blocks, each starting on a word. A block holds ``n >= 1`` records that share ``k`` and
the watchdog's ``alarm``, and can be decoded without any other block::

    word 0   [0:8] MAGIC  [8:12] channels - 1  [12:20] S - 1  [20:25] k  [25] alarm
             [26:32] 0
    word 1   [0:16] n (records)  [16:32] sequence (blocks since reset, modulo 2**16)
    word 2   [0:16] U (words of the unary section)  [16:32] F (words of the fixed section)
    U words  unary section: per record, q ones and a zero, 0 <= q <= ESCAPE_QUOTIENT;
             zeros after the n-th code
    F words  fixed section: per record, in record order,
               q < ESCAPE_QUOTIENT: remainder (k bits), channel (CB), slot (2), offset (OB)
               q = ESCAPE_QUOTIENT: index (64), channel (CB), phase (PB), cls (2)
             zeros after the last record

``CB = ceil(log2 channels)`` and ``PB = ceil(log2 S)`` bits (0 for one channel or one UI).

Index: a normal record's index is the previous record's plus ``q * 2**k + remainder``
(modulo 2**64); an escape record carries its index raw. The first record of every block is an
escape; the gateware also escapes a record whose index is below the previous one's (the record
merge interleaves channels) or ``16 * 2**k`` or more above it, and one whose (phase, class)
pair has no slot code.

Slot: the symbol's UIs are split into a first half ``0 .. H - 1`` and a second half
``H .. S - 1``, ``H = ceil(S / 2)``; ``offset`` (``OB = ceil(log2 H)`` bits) is the UI within
its half. The 2-bit slot code names the half and the class of the four pairs that the window
LUTs of the receiver give (``z_windows``: early in the first half, late in the second;
``x_windows``: middle in the second half; an X detector delayed by half a symbol: middle in
the first half). Any other pair is coded as an escape, raw: the format is lossless for every
record with ``channel < channels`` and ``phase < S``.
"""

import math

import numpy as np

from ..gateware.records import (
    ESCAPE_QUOTIENT,
    HEADER_WORDS,
    INDEX_BITS,
    MAGIC,
    MAX_BLOCK_RECORDS,
    MAX_K,
    SEQUENCE_BITS,
    SLOT_CLASS,
    SLOT_HALF,
    FieldWidths,
    field_widths,
    pack_header,
)

__all__ = ["MAGIC", "HEADER_WORDS", "ESCAPE_QUOTIENT", "MAX_K", "MAX_BLOCK_RECORDS",
           "SEQUENCE_BITS", "SLOT_HALF", "SLOT_CLASS", "FieldWidths", "field_widths",
           "pack_header", "read_block_headers", "decode_detections",
           "gap_entropy", "field_entropy", "entropy_bound", "rice_gap_bits", "best_k"]

_WORD = 32


# --- decoding ----------------------------------------------------------------------------

def _as_words(words):
    """``words`` as a 1-D uint32 array; raises ``ValueError`` for anything else."""
    array = np.asarray(words)
    if array.ndim != 1:
        raise ValueError(f"Words must be a 1-D array, not of shape {array.shape}")
    if array.size == 0:
        return array.astype(np.uint32)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"Words must be integers, not {array.dtype}")
    if array.dtype != np.uint32:
        if int(array.min()) < 0 or int(array.max()) >= 1 << _WORD:
            raise ValueError("Words must be 32-bit unsigned values")
        array = array.astype(np.uint32)
    return array


def read_block_headers(words, channels, uis_per_symbol):
    """Walk the blocks of a stream and check their headers.

    Returns ``{name: (B,) array}``: ``start`` (word of each header), ``k``, ``alarm``,
    ``count``, ``sequence``, ``unary_words``, ``fixed_words``. Raises ``ValueError`` naming
    the word of the first header that is not a header of this receiver's blocks, that leaves
    the stream before its end, or whose sequence number does not follow the last one's (a
    block is missing).
    """
    words = _as_words(words)
    shape_tag = (channels - 1) << 8 | (uis_per_symbol - 1) << 12
    total = len(words)
    rows = []
    pos = 0
    sequence = None
    while pos < total:
        if pos + HEADER_WORDS > total:
            raise ValueError(f"Block at word {pos}: the stream ends inside its header "
                             f"({total - pos} of {HEADER_WORDS} words)")
        h0, h1, h2 = words[pos:pos + HEADER_WORDS].tolist()
        if h0 & 0xFF != MAGIC:
            raise ValueError(f"Block at word {pos}: no block header (0x{h0:08x} does not start "
                             f"with the tag 0x{MAGIC:02x}): the stream is misaligned or "
                             f"corrupt")
        if h0 & 0xFFF00 != shape_tag:
            raise ValueError(f"Block at word {pos}: written for {((h0 >> 8) & 0xF) + 1} "
                             f"channels and {((h0 >> 12) & 0xFF) + 1} UIs per symbol, not "
                             f"{channels} and {uis_per_symbol}")
        if h0 >> 26:
            raise ValueError(f"Block at word {pos}: reserved header bits are set "
                             f"(0x{h0:08x})")
        k = (h0 >> 20) & 0x1F
        count, seq = h1 & 0xFFFF, h1 >> 16
        unary, fixed = h2 & 0xFFFF, h2 >> 16
        if not 1 <= count <= MAX_BLOCK_RECORDS:
            raise ValueError(f"Block at word {pos}: {count} records, not 1..{MAX_BLOCK_RECORDS}")
        if unary == 0 or fixed == 0:
            raise ValueError(f"Block at word {pos}: empty unary ({unary}) or fixed ({fixed}) "
                             f"section")
        if sequence is not None and seq != (sequence + 1) % (1 << SEQUENCE_BITS):
            raise ValueError(f"Block at word {pos}: sequence number {seq} follows {sequence}: "
                             f"blocks are missing or repeated")
        end = pos + HEADER_WORDS + unary + fixed
        if end > total:
            raise ValueError(f"Block at word {pos}: its {unary} + {fixed} words run past the "
                             f"end of the stream ({total} words): truncated capture")
        rows.append((pos, k, (h0 >> 25) & 1, count, seq, unary, fixed))
        sequence = seq
        pos = end
    table = np.array(rows, np.int64).reshape(-1, 7)
    names = ("start", "k", "alarm", "count", "sequence", "unary_words", "fixed_words")
    return {name: table[:, i] for i, name in enumerate(names)}


def _ranges(starts, lengths):
    """Concatenation of ``arange(s, s + n)`` for each pair (vectorised)."""
    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


class _BitReader:
    """Fields of up to 64 bits at any bit position of a word array (vectorised)."""

    def __init__(self, words):
        self.words = np.concatenate((words.astype(np.uint64), np.zeros(3, np.uint64)))

    def read(self, pos, width):
        """(N,) uint64: the ``width``-bit fields (``width`` a scalar or (N,), 0..64) at bit
        positions ``pos`` (N,)."""
        pos = np.asarray(pos, np.int64)
        word = pos >> 5
        shift = (pos & 31).astype(np.uint64)
        w = self.words
        low = w[word] | (w[word + 1] << np.uint64(32))
        high = w[word + 2]
        value = (low >> shift) | ((high << np.uint64(1)) << (np.uint64(63) - shift))
        width = np.broadcast_to(np.asarray(width, np.int64), pos.shape)
        mask = np.where(width > 0, np.uint64(0xFFFF_FFFF_FFFF_FFFF)
                        >> (np.uint64(64) - np.maximum(width, 1).astype(np.uint64)),
                        np.uint64(0))
        return value & mask


def _field(values, offset, width):
    """``width`` bits from bit ``offset`` of uint64 ``values``, as int64."""
    mask = np.uint64((1 << width) - 1)
    return ((values >> np.uint64(offset)) & mask).astype(np.int64)


def decode_detections(words, channels, uis_per_symbol):
    """Decode a compressed record stream into its detection records.

    ``words``: the 32-bit words as the gateware emitted them (any 1-D integer array of values
    below 2**32), starting at a block header and holding whole blocks (see the module
    docstring). ``channels``, ``uis_per_symbol``: the receiver's shape, checked against every
    header.

    Returns ``{"index": uint64, "phase": uint8, "channel": uint8, "cls": uint8,
    "alarm": bool}``, one element per record in stream order. The work is vectorised over
    records; only the walk over block headers is a Python loop.

    Raises ``ValueError`` naming the block (its word) and the problem for a stream that is
    not a sequence of well-formed blocks: a bad header or sequence number, a truncated
    block, a section whose length or padding disagrees with its header, or a field out of
    range.
    """
    words = _as_words(words)
    widths = field_widths(channels, uis_per_symbol)
    heads = read_block_headers(words, channels, uis_per_symbol)
    count = heads["count"]
    blocks = len(count)
    empty = {"index": np.zeros(0, np.uint64), "phase": np.zeros(0, np.uint8),
             "channel": np.zeros(0, np.uint8), "cls": np.zeros(0, np.uint8),
             "alarm": np.zeros(0, bool)}
    if blocks == 0:
        return empty
    start, k = heads["start"], heads["k"]
    unary_words, fixed_words = heads["unary_words"], heads["fixed_words"]

    def fail(block, problem):
        raise ValueError(f"Block at word {int(start[block])}: {problem}")

    # Unary section: the first n zeros of each block's section end its n codes.
    section = _ranges(start + HEADER_WORDS, unary_words)
    bits = np.unpackbits(words[section].astype("<u4").view(np.uint8), bitorder="little")
    section_bits = unary_words * _WORD
    section_start = np.cumsum(section_bits) - section_bits
    zeros = np.flatnonzero(bits == 0)
    first_zero = np.searchsorted(zeros, section_start)
    zeros_in = np.searchsorted(zeros, section_start + section_bits) - first_zero
    short = np.flatnonzero(zeros_in < count)
    if short.size:
        b = short[0]
        fail(b, f"its unary section holds {zeros_in[b]} codes, not {count[b]}")
    record_block = np.repeat(np.arange(blocks), count)
    first_record = np.cumsum(count) - count
    rank = np.arange(len(record_block)) - first_record[record_block]
    ends = zeros[first_zero[record_block] + rank]
    previous = np.where(rank == 0, section_start[record_block] - 1, np.roll(ends, 1))
    q = ends - previous - 1
    too_long = np.flatnonzero(q > ESCAPE_QUOTIENT)
    if too_long.size:
        fail(record_block[too_long[0]], f"record {rank[too_long[0]]} has a unary code of "
                                        f"{q[too_long[0]]} ones, above the escape "
                                        f"({ESCAPE_QUOTIENT})")
    ones = np.add.reduceat(bits, section_start, dtype=np.int64)
    coded = np.add.reduceat(q, first_record)
    padded = np.flatnonzero(ones != coded)
    if padded.size:
        fail(padded[0], "its unary section has set bits after its last code")
    escape = q == ESCAPE_QUOTIENT
    unescaped = np.flatnonzero(~escape[first_record])
    if unescaped.size:
        fail(unescaped[0], "its first record is not an escape (it has no index to start from)")

    # Fixed section: the record lengths follow from the escapes; positions are a cumsum.
    record_k = k[record_block]
    length = np.where(escape, INDEX_BITS + widths.escape, record_k + widths.normal)
    within = np.cumsum(length) - length
    within -= within[first_record][record_block]
    fixed_start = (start + HEADER_WORDS + unary_words) * _WORD
    used = np.add.reduceat(length, first_record)
    wrong = np.flatnonzero((used + _WORD - 1) // _WORD != fixed_words)
    if wrong.size:
        b = wrong[0]
        fail(b, f"its records need {used[b]} bits of fixed section, not {fixed_words[b]} "
                f"words")
    reader = _BitReader(words)
    padding = np.flatnonzero(reader.read(fixed_start + used, fixed_words * _WORD - used))
    if padding.size:
        fail(padding[0], "its fixed section has set bits after its last record")
    pos = fixed_start[record_block] + within
    head = np.where(escape, INDEX_BITS, record_k)          # bits before the channel
    value = reader.read(pos, head)
    tail = reader.read(pos + head, 64)                     # every field after index/remainder
    channel = _field(tail, 0, widths.channel)
    slot = _field(tail, widths.channel, 2)
    offset = _field(tail, widths.channel + 2, widths.offset)
    raw_phase = _field(tail, widths.channel, widths.phase)
    raw_cls = _field(tail, widths.channel + widths.phase, 2)
    half = np.asarray(SLOT_HALF)[slot]
    phase = np.where(escape, raw_phase, half * widths.half + offset)
    cls = np.where(escape, raw_cls, np.asarray(SLOT_CLASS)[slot])
    offset_limit = np.where(escape, 1, np.where(half == 0, widths.half,
                                                uis_per_symbol - widths.half))
    for name, values, limit in (("channel", channel, channels),
                                ("phase", phase, uis_per_symbol),
                                ("UI offset within its half", np.where(escape, 0, offset),
                                 offset_limit)):
        bad = np.flatnonzero(values >= limit)
        if bad.size:
            i = bad[0]
            fail(record_block[i], f"record {rank[i]} has {name} {values[i]}, not below "
                                  f"{np.broadcast_to(limit, values.shape)[i]}")

    # Index: a running sum of the deltas that restarts at every escape (its raw index).
    delta = np.where(escape, np.uint64(0),
                     (q.astype(np.uint64) << record_k.astype(np.uint64)) + value)
    total = np.cumsum(delta, dtype=np.uint64)
    last_escape = np.maximum.accumulate(np.where(escape, np.arange(len(q)), 0))
    index = value[last_escape] + (total - total[last_escape])
    return {"index": index, "phase": phase.astype(np.uint8), "channel": channel.astype(np.uint8),
            "cls": cls.astype(np.uint8), "alarm": heads["alarm"][record_block].astype(bool)}


# --- bounds ------------------------------------------------------------------------------

def gap_entropy(p):
    """Entropy in bits of the index gap between consecutive detections when each symbol
    gives a detection with probability ``p`` (a geometric gap, ``h(p) / p``)."""
    p = float(p)
    if not 0 < p < 1:
        raise ValueError(f"Detection probability must be in (0, 1), not {p!r}")
    return (-p * math.log2(p) - (1 - p) * math.log2(1 - p)) / p


def field_entropy(channels=4, uis_per_symbol=2):
    """Entropy in bits of (channel, phase, class) of a detection on the link of the tests:
    channels equally likely, the last one (of two or more) the X detector (middle class,
    phase uniform over the second half), the others Z detectors (phase uniform over the
    symbol, early or late by the half)."""
    widths = field_widths(channels, uis_per_symbol)
    x = 1 if channels > 1 else 0
    second = uis_per_symbol - widths.half
    per_channel = ((channels - x) * math.log2(uis_per_symbol)
                   + x * math.log2(max(second, 1)))
    return math.log2(channels) + per_channel / channels


def entropy_bound(p, channels=4, uis_per_symbol=2):
    """Bits per detection no lossless code can beat on average: :func:`gap_entropy` plus
    :func:`field_entropy`."""
    return gap_entropy(p) + field_entropy(channels, uis_per_symbol)


def rice_gap_bits(p, k):
    """Expected bits of the Golomb-Rice code of this format (unary quotient, ``k``-bit
    remainder; escape with a raw index at quotient 16) for a geometric gap of detection
    probability ``p``."""
    p, k = float(p), int(k)
    # P(gap >= g) = (1 - p)**(g - 1) for g >= 1.
    survive = np.exp(np.log1p(-p) * (np.arange(1, ESCAPE_QUOTIENT + 1) * 2.0 ** k - 1))
    unary = 1 + survive.sum()                   # E[min(q, 16)] ones and a zero
    escaped = survive[-1] * (INDEX_BITS - k)
    return unary + k + escaped


def best_k(p):
    """The Rice parameter (0..MAX_K) with the fewest expected bits per gap at detection
    probability ``p``: what the host should set for the measured detection rate."""
    return min(range(MAX_K + 1), key=lambda k: rice_gap_bits(p, k))
