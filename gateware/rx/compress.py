"""Bob's record compression: detection records leave as blocks of Golomb-Rice coded index
gaps and packed fields, a bitstream of 32-bit words that the host decodes without the
gateware's help.

Ref: S. W. Golomb, "Run-length encodings", IEEE Trans. Inf. Theory 12(3), 399 (1966);
R. F. Rice, "Some practical universal noiseless coding techniques", JPL Publication 79-22
(1979). The block format is written down in :mod:`timebin.host.records`, with its decoder.
"""

import functools
import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import accepted_setting, check_int, count_saturating, refuses_quietly
from ..records import (
    DEFAULT_K,
    DEFAULT_MAX_RECORDS,
    DEFAULT_TIMEOUT,
    ESCAPE_QUOTIENT,
    HEADER_WORDS,
    INDEX_BITS,
    K_PORT_BITS,
    MAGIC,
    MAX_BLOCK_RECORDS,
    MAX_CHANNELS,
    MAX_K,
    PHASE_BITS,
    SEQUENCE_BITS,
    SLOT_CLASS,
    SLOT_HALF,
    TIMEOUT_BITS,
    field_widths,
)
from .layouts import Detection

__all__ = ["DEFAULT_K", "K_PORT_BITS", "DEFAULT_TIMEOUT", "TIMEOUT_BITS", "DEFAULT_MAX_RECORDS",
           "COUNTER_BITS", "BLOCK_QUEUE_DEPTH", "ADMIT_MARGIN", "OUTPUT_QUEUE_DEPTH",
           "PIPELINE_STAGES", "check_compressor_parameters", "record_queue_depth",
           "unary_queue_depth", "suffix_or", "RecordCompressor"]

#: Width of the counters: they never saturate in practice.
COUNTER_BITS = 64
#: Closed blocks the block queue holds.
BLOCK_QUEUE_DEPTH = 16
#: Queue entries that records already taken may still write: ``records.ready`` is a register
#: that stays low unless every queue has this much room. A record is written 5 cycles after
#: it is taken and the level the register sees is a cycle old: up to 7 writes, one a cycle;
#: and the open block's close may write a unary word and a block any time later: one more.
ADMIT_MARGIN = 8
#: Words the output queue holds (it decouples ``words.ready`` from the packer).
OUTPUT_QUEUE_DEPTH = 4

_UNARY_MAX_BITS = ESCAPE_QUOTIENT + 1
#: Register stages from a record taken to its queue writes (``entry``, ``measure``, ``block``,
#: ``code``, ``pack``).
PIPELINE_STAGES = 5


def check_compressor_parameters(channels, uis_per_symbol, max_records):
    """Check the construction parameters of :class:`RecordCompressor` (and of its model).

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
    naming the value.
    """
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_int("UIs per symbol", uis_per_symbol, minimum=1, maximum=1 << PHASE_BITS)
    check_int("Records per block", max_records, minimum=1, maximum=MAX_BLOCK_RECORDS)


def record_queue_depth(max_records):
    """Entries of the record queue: one open block whatever its records, plus the margin of
    the records in flight, so that an open block never waits for a block behind it."""
    return max_records + ADMIT_MARGIN + 1


def unary_queue_depth(max_records):
    """Words of the unary queue: one open block's unary section whatever its codes, plus the
    margin of the records in flight."""
    return (max_records * _UNARY_MAX_BITS + 31) // 32 + ADMIT_MARGIN + 1


def suffix_or(m, value, name):
    """A ``Signal(len(value) + 1)`` whose bit ``i`` is high when a bit ``i`` or above of
    ``value`` is (the top bit is low): a parallel suffix scan of 4-input ORs, three levels
    deep for 64 bits."""
    width = len(value)
    level, span, step = value, 1, 0
    while span < width:
        wider = Signal(width, name=f"{name}_{step}")
        m.d.comb += wider.eq(Cat(*(
            functools.reduce(operator.or_, (level[j] for j in range(i, width, span)
                                            if j < i + 4 * span))
            for i in range(width))))
        level, span, step = wider, span * 4, step + 1
    out = Signal(width + 1, name=name)
    m.d.comb += out.eq(level)
    return out


class RecordCompressor(wiring.Component):
    """Compress the detection record stream into blocks of 32-bit words.

    **Blocks.** Records taken from ``records`` are gathered into blocks (format:
    :mod:`timebin.host.records`); every record of a block has the block's ``alarm`` and is
    coded with the block's ``k``. Block decisions are made one record slot at a time, two
    cycles after the slot's cycle on ``records`` (the *block cycle*; a slot may hold no
    record). In the block cycle of a slot, the open block closes if

    * it holds ``max_records`` records;
    * a flush is pending: ``flush`` was high in the cycle of an earlier slot, and the block
      was open after that slot (so it holds every record taken up to the flush);
    * it has been open ``timeout + 1`` cycles or more (``timeout = 0``: never): the age of a
      block is 1 in the cycle after its first record's block cycle, and counts up, and the
      block times out in the cycle after its age reaches ``timeout``; this bounds the
      latency of a record at low detection rates;
    * the slot's record has another ``alarm`` than the block (the alarm costs nothing per
      record).

    The slot's record then opens the next block (or joins the open one), which takes the
    ``k`` in force in the cycle before. Nothing is dropped: ``records.ready`` is a register,
    high while every queue has room for the records already taken (``ADMIT_MARGIN``).

    **Codes.** Each record's index is coded as the gap to the previous record's (modulo
    2**64) in Golomb-Rice code with divisor ``2**k``; the first record of each block, a
    record below the previous one (the record merge interleaves its channels), a gap of
    ``16 * 2**k`` or more, and a (phase, class) pair without a slot code escape to the raw
    64-bit index. ``channel`` must be below ``channels`` and ``phase`` below
    ``uis_per_symbol``, as :class:`~timebin.gateware.rx.merge.RecordMerge` gives them.

    **Timing.** Records are taken one per cycle while ``records.ready`` is high; a record
    taken in cycle ``c`` has its block cycle in ``c + 2`` and is written to the queues in
    cycle ``c + 5``. A block closed in block cycle ``t`` offers its first header word on
    ``words`` from cycle ``t + 6`` at the earliest (:attr:`header_latency`). The coder then
    writes one word per cycle to the output queue while it has room: per block, one idle
    cycle, the three header words, the unary section, then one record per cycle while
    fewer than 64 bits wait in the packer (a long code, such as an escape's 64-bit index,
    makes the next wait for words to leave), and the last, padded word. At 10**-3
    detections per symbol (``k = 9``, 4 channels, S = 2, blocks of 1024 records) that is
    1024 records in about 1110 cycles: 0.92 records per cycle with ``words.ready`` always
    high.

    ``words`` is a normal stream from a small queue: ``valid`` and ``payload`` do not depend
    on ``ready`` in the same cycle; while ``valid`` is low, ``payload`` is the queue's stale
    entry.

    **Settings.** ``k`` above ``MAX_K`` (31) is refused: the last accepted value stays in use
    (``DEFAULT_K`` after reset) and ``settings_error`` is high while the refused value is
    present. ``timeout`` and ``flush`` take any value.

    Parameters
    ----------
    channels : int
        Detector channels, 1..16.
    uis_per_symbol : int
        UIs per symbol (S), 1..256.
    max_records : int
        Records after which a block closes, 1..4096; sets the record queue
        (:func:`record_queue_depth` entries of up to 86 bits, block RAM) and the unary queue
        (:func:`unary_queue_depth` words).

    Members
    -------
    records : In(stream.Signature(Detection))
        The detection records.
    words : Out(stream.Signature(32))
        The compressed stream.
    flush : In(1)
        Close the open block after the records taken up to this cycle.
    k : In(6), init ``DEFAULT_K``
        Rice parameter of the blocks that open, 0..31.
    timeout : In(32), init ``DEFAULT_TIMEOUT``
        Cycles a block stays open at most, less one; 0 disables.
    settings_error : Out(1)
        ``k`` holds a refused value.
    records_in : Out(64)
        Records taken from ``records``.
    words_out : Out(64)
        Words taken from ``words``.
    escapes : Out(64)
        Records coded with their raw index other than the first of a block (index below the
        previous one, huge gap, or unusual phase and class).
    """

    #: Cycles from a block's close (its block cycle) to its first header word on ``words``,
    #: at the earliest.
    header_latency = 6
    #: Cycles from a record taken to its block cycle.
    block_latency = 2

    @refuses_quietly
    def __init__(self, *, channels, uis_per_symbol, max_records=DEFAULT_MAX_RECORDS):
        check_compressor_parameters(channels, uis_per_symbol, max_records)
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.max_records = max_records
        self.widths = field_widths(channels, uis_per_symbol)
        super().__init__({
            "records": In(stream.Signature(Detection)),
            "words": Out(stream.Signature(32)),
            "flush": In(1),
            "k": In(K_PORT_BITS, init=DEFAULT_K),
            "timeout": In(TIMEOUT_BITS, init=DEFAULT_TIMEOUT),
            "settings_error": Out(1),
            "records_in": Out(COUNTER_BITS),
            "words_out": Out(COUNTER_BITS),
            "escapes": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        widths = self.widths
        M = self.max_records
        code_bits = INDEX_BITS + max(widths.normal, widths.escape)
        longest = max(INDEX_BITS + widths.escape, MAX_K + widths.normal)   # a fixed code
        length_bits = bits_for(longest)

        entry = data.StructLayout({"code": code_bits, "length": length_bits, "offset": 5})
        block = data.StructLayout({
            "count": bits_for(M), "k": 5, "alarm": 1, "sequence": SEQUENCE_BITS,
            "unary": 16, "fixed": 16,
        })
        queue = m.submodules.record_queue = fifo.SyncFIFOBuffered(
            width=entry.size, depth=record_queue_depth(M))
        unary = m.submodules.unary_queue = fifo.SyncFIFOBuffered(
            width=32, depth=unary_queue_depth(M))
        blocks = m.submodules.block_queue = fifo.SyncFIFO(width=block.size,
                                                          depth=BLOCK_QUEUE_DEPTH)

        k_ok = self.k <= MAX_K
        next_k = Signal(5, init=DEFAULT_K)          # the k of a block opening next cycle
        m.d.comb += self.settings_error.eq(~k_ok)
        m.d.sync += next_k.eq(accepted_setting(m, "k", self.k, k_ok, DEFAULT_K))

        # --- Admission: a record is taken only if the queues can hold every record in flight.
        admit = Signal(init=1)                  # the queues are empty after reset
        m.d.sync += admit.eq(
            (queue.level <= queue.depth - ADMIT_MARGIN)
            & (unary.level <= unary.depth - ADMIT_MARGIN)
            & (blocks.level <= blocks.depth - ADMIT_MARGIN))
        src = self.records
        taken = src.valid & admit
        m.d.comb += src.ready.eq(admit)
        count_saturating(m, self.records_in, taken)

        def stage(name, layout):
            return Signal(data.StructLayout(layout), name=name)

        # --- Entry: the gap to the previous record.
        record_layout = {"index": INDEX_BITS, "phase": PHASE_BITS, "channel": 4, "cls": 2,
                         "alarm": 1}
        s1 = stage("entry", {"valid": 1, "flush": 1, "delta": INDEX_BITS, **record_layout})
        last_index = Signal(INDEX_BITS)
        m.d.sync += [s1.valid.eq(taken), s1.flush.eq(self.flush)]
        with m.If(taken):
            m.d.sync += [
                s1.delta.eq(src.payload.index - last_index),
                last_index.eq(src.payload.index),
            ] + [getattr(s1, name).eq(getattr(src.payload, name)) for name in record_layout]

        # --- Measure: which bits of the gap are set, and the slot code of (phase, class).
        # ``above[i]``: a bit ``i + 4`` or above of the gap is set, i.e. ``gap >> i >= 16``.
        s2 = stage("measure", {"valid": 1, "flush": 1, "delta": INDEX_BITS, **record_layout,
                               "above": INDEX_BITS - 3, "slot": 2, "usual": 1,
                               "offset": max(widths.offset, 1)})
        above = suffix_or(m, s1.delta, "above")
        half = s1.phase >= widths.half
        slot, usual = Signal(2), Signal()
        with m.Switch(Cat(s1.cls, half)):
            for code, (in_second, cls) in enumerate(zip(SLOT_HALF, SLOT_CLASS, strict=True)):
                with m.Case(cls | in_second << 2):
                    m.d.comb += [slot.eq(code), usual.eq(1)]
        m.d.sync += [
            s2.valid.eq(s1.valid), s2.flush.eq(s1.flush), s2.delta.eq(s1.delta),
            s2.above.eq(above[4:]), s2.slot.eq(slot), s2.usual.eq(usual),
            s2.offset.eq(s1.phase - Mux(half, widths.half, 0)),
        ] + [getattr(s2, name).eq(getattr(s1, name)) for name in record_layout]

        # --- Block: close the open block, open one, pick k (the block cycle).
        is_open = Signal()
        count = Signal(range(M + 1))
        full = Signal()
        block_k = Signal(5)
        block_alarm = Signal()
        age = Signal(TIMEOUT_BITS)
        timed_out = Signal()
        flush_pending = Signal()
        close = Signal()
        first = Signal()
        m.d.comb += [
            close.eq(is_open & (full | flush_pending | timed_out
                                | (s2.valid & (s2.alarm != block_alarm)))),
            first.eq(s2.valid & (~is_open | close)),
        ]
        open_after = s2.valid | (is_open & ~close)
        m.d.sync += [
            is_open.eq(open_after),
            full.eq(s2.valid & Mux(first, M == 1, count == M - 1)),
            flush_pending.eq(s2.flush & open_after),
            timed_out.eq(is_open & ~close & (self.timeout != 0) & (age >= self.timeout)),
        ]
        with m.If(s2.valid):
            m.d.sync += count.eq(Mux(first, 1, count + 1))
        with m.If(first):
            m.d.sync += [block_k.eq(next_k), block_alarm.eq(s2.alarm), age.eq(1)]
        with m.Elif(is_open & ~close):
            m.d.sync += age.eq(Mux(age == (1 << TIMEOUT_BITS) - 1, age, age + 1))
        closing = {"close": 1, "close_count": bits_for(M), "close_k": 5, "close_alarm": 1}
        carried = {"delta": INDEX_BITS, "index": INDEX_BITS, "phase": PHASE_BITS,
                   "channel": 4, "cls": 2, "slot": 2, "offset": max(widths.offset, 1)}
        s3 = stage("block", {"valid": 1, "first": 1, "k": 5, "above": INDEX_BITS - 3,
                             "usual": 1, **carried, **closing})
        m.d.sync += [
            s3.valid.eq(s2.valid), s3.first.eq(first), s3.k.eq(Mux(first, next_k, block_k)),
            s3.above.eq(s2.above), s3.usual.eq(s2.usual),
            s3.close.eq(close), s3.close_count.eq(count), s3.close_k.eq(block_k),
            s3.close_alarm.eq(block_alarm),
        ] + [getattr(s3, name).eq(getattr(s2, name)) for name in carried]

        # --- Code: escape or not, the quotient and the length of the fixed code.
        escape = Signal()
        m.d.comb += escape.eq(s3.first | s3.above.bit_select(s3.k, 1) | ~s3.usual)
        count_saturating(m, self.escapes, s3.valid & escape & ~s3.first)
        s4 = stage("code", {"valid": 1, "first": 1, "k": 5, "escape": 1,
                            "q": range(ESCAPE_QUOTIENT + 1), "length": length_bits,
                            **carried, **closing})
        m.d.sync += [
            s4.valid.eq(s3.valid), s4.first.eq(s3.first), s4.k.eq(s3.k), s4.escape.eq(escape),
            s4.q.eq(Mux(escape, ESCAPE_QUOTIENT, s3.delta.bit_select(s3.k, 4))),
            s4.length.eq(Mux(escape, INDEX_BITS + widths.escape, s3.k + widths.normal)),
        ] + [getattr(s4, name).eq(getattr(s3, name)) for name in (*carried, *closing)]

        # --- Pack: running offsets of the open block's sections, the fixed code, the header
        # of a closing block.
        usum = Signal(5)                        # unary bits of the open block, modulo 32
        uwords = Signal(16)                     # unary words of the open block written
        fsum = Signal(5)                        # fixed bits of the open block, modulo 32
        fbits = Signal(bits_for(M * longest))   # fixed bits of the open block
        sequence = Signal(SEQUENCE_BITS)
        ushift = Mux(s4.first, 0, usum)
        utotal = Signal(6)
        foffset = Mux(s4.first, 0, fsum)
        m.d.comb += utotal.eq(ushift + s4.q + 1)
        mask = Array(Const((1 << i) - 1, MAX_K) for i in range(MAX_K + 1))[s4.k]
        channel = s4.channel[:widths.channel]
        normal = ((s4.delta[:MAX_K] & mask)
                  | (Cat(channel, s4.slot, s4.offset[:widths.offset]) << s4.k))
        raw = Cat(s4.index, channel, s4.phase[:widths.phase], s4.cls)
        # The unary code (q ones, then a zero), already at its place in the open word.
        unary_code = Array(Const((1 << i) - 1, _UNARY_MAX_BITS)
                           for i in range(ESCAPE_QUOTIENT + 1))[s4.q]
        s5 = stage("pack", {"valid": 1, "close": 1, "partial": 1, "push": 1,
                            "unary": 32 + _UNARY_MAX_BITS - 1, "entry": entry, "block": block})
        m.d.sync += [
            s5.valid.eq(s4.valid), s5.close.eq(s4.close), s5.partial.eq(usum != 0),
            s5.push.eq(utotal[5]), s5.unary.eq(unary_code << ushift),
            s5.entry.code.eq(Mux(s4.escape, raw, normal)),
            s5.entry.length.eq(s4.length),
            s5.entry.offset.eq(foffset),
            s5.block.count.eq(s4.close_count), s5.block.k.eq(s4.close_k),
            s5.block.alarm.eq(s4.close_alarm), s5.block.sequence.eq(sequence),
            s5.block.unary.eq(uwords + (usum != 0)),
            s5.block.fixed.eq((fbits + 31) >> 5),
        ]
        with m.If(s4.close):
            m.d.sync += sequence.eq(sequence + 1)
        with m.If(s4.valid):
            m.d.sync += [
                usum.eq(utotal[:5]),
                uwords.eq(Mux(s4.first, 0, uwords) + utotal[5]),
                fsum.eq(foffset + s4.length),
                fbits.eq(Mux(s4.first, 0, fbits) + s4.length),
            ]

        # --- Write: the fixed code, the unary code packed into words, a closed block.
        uacc = Signal(32 + _UNARY_MAX_BITS - 1)
        placed = Signal.like(uacc)
        m.d.comb += [
            placed.eq(Mux(s5.close, 0, uacc) | s5.unary),
            queue.w_en.eq(s5.valid),
            queue.w_data.eq(s5.entry),
            blocks.w_en.eq(s5.close),
            blocks.w_data.eq(s5.block),
            unary.w_en.eq((s5.close & s5.partial) | (s5.valid & s5.push)),
            # A record after a close opens its block with a 17-bit escape: never a push.
            unary.w_data.eq(Mux(s5.close & s5.partial, uacc[:32], placed[:32])),
        ]
        with m.If(s5.valid):
            m.d.sync += uacc.eq(Mux(s5.push, placed[32:], placed))
        with m.Elif(s5.close):
            m.d.sync += uacc.eq(0)

        # --- Coder: header, unary section, then the fixed codes packed into words, through
        # an output queue. Block RAM read data goes straight into small prefetch queues (on
        # ECP5 at 156.25 MHz it wants the DP16KD output register, which inference does not
        # give).
        out = m.submodules.output_queue = fifo.SyncFIFO(width=32, depth=OUTPUT_QUEUE_DEPTH)
        m.d.comb += [
            self.words.valid.eq(out.r_rdy),
            self.words.payload.eq(out.r_data),
            out.r_en.eq(self.words.ready),
        ]
        count_saturating(m, self.words_out, self.words.valid & self.words.ready)
        unary_head = m.submodules.unary_prefetch = fifo.SyncFIFO(width=32, depth=2)
        record_head = m.submodules.record_prefetch = fifo.SyncFIFO(width=entry.size, depth=2)
        m.d.comb += [
            unary.r_en.eq(unary_head.w_rdy),
            unary_head.w_en.eq(unary.r_rdy),
            unary_head.w_data.eq(unary.r_data),
            queue.r_en.eq(record_head.w_rdy),
            record_head.w_en.eq(queue.r_rdy),
            record_head.w_data.eq(queue.r_data),
        ]
        # The next fixed code, shifted to its place in a word.
        ready_code = Signal()
        ready_bits = Signal(code_bits + 31)
        ready_length = Signal(length_bits)
        append = Signal()
        head = Signal(entry)
        m.d.comb += [
            head.eq(record_head.r_data),
            record_head.r_en.eq(~ready_code | append),
        ]
        with m.If(~ready_code | append):
            m.d.sync += ready_code.eq(record_head.r_rdy)
            with m.If(record_head.r_rdy):
                m.d.sync += [ready_bits.eq(head.code << head.offset),
                             ready_length.eq(head.length)]

        current = Signal(block)
        header_index = Signal(range(HEADER_WORDS))
        unary_left = Signal(16)
        records_left = Signal(range(M + 1))
        acc_bits = 64 + longest
        acc = Signal(acc_bits)
        fill = Signal(range(acc_bits + 1))
        room = out.w_rdy
        headers = [
            Cat(Const(MAGIC, 8), Const(self.channels - 1, 4), Const(self.uis_per_symbol - 1, 8),
                current.k, current.alarm, Const(0, 6)),
            Cat(current.count, Const(0, 16 - len(current.count)), current.sequence),
            Cat(current.unary, current.fixed),
        ]
        with m.FSM(name="coder"):
            with m.State("IDLE"):
                with m.If(blocks.r_rdy):
                    m.d.comb += blocks.r_en.eq(1)
                    m.d.sync += [current.eq(blocks.r_data), header_index.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(room):
                    m.d.comb += [out.w_en.eq(1),
                                 out.w_data.eq(Array(headers)[header_index])]
                    m.d.sync += header_index.eq(header_index + 1)
                    with m.If(header_index == HEADER_WORDS - 1):
                        m.d.sync += unary_left.eq(current.unary)
                        m.next = "UNARY"
            with m.State("UNARY"):
                with m.If(room & unary_head.r_rdy):
                    m.d.comb += [out.w_en.eq(1), out.w_data.eq(unary_head.r_data),
                                 unary_head.r_en.eq(1)]
                    m.d.sync += unary_left.eq(unary_left - 1)
                    with m.If(unary_left == 1):
                        m.d.sync += records_left.eq(current.count)
                        m.next = "FIXED"
            with m.State("FIXED"):
                over = fill >= 32
                pop = room & over
                drained = records_left == 0
                pad = room & ~over & drained & (fill != 0)
                m.d.comb += append.eq(~drained & ready_code & (fill < 64))
                fill_next = Signal.like(fill)
                left_next = Signal.like(records_left)
                m.d.comb += [
                    out.w_en.eq(pop | pad),
                    out.w_data.eq(acc[:32]),
                    fill_next.eq(Mux(pad, 0, Mux(pop, fill - 32, fill))
                                 + Mux(append, ready_length, 0)),
                    left_next.eq(records_left - append),
                ]
                # The code goes at bit ``fill`` before the pop: its offset is ``fill % 32``.
                placed_code = Mux(over & ~pop, ready_bits << 32, ready_bits)
                m.d.sync += [
                    acc.eq(Mux(pop, acc >> 32, Mux(pad, 0, acc))
                           | Mux(append, placed_code, 0)),
                    fill.eq(fill_next),
                    records_left.eq(left_next),
                ]
                # Done when no record is left and the last word leaves (a fixed code is never
                # empty, so a record appended now leaves bits behind).
                with m.If(drained & ((fill == 0) | pad | (pop & (fill == 32)))):
                    m.next = "IDLE"
        return m
