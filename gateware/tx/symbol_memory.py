"""Alice's symbol memory: a ring buffer of the symbol log in block RAM, looked up by global
symbol index when Bob's detections come back, for sifting.

Ref: DESIGN.md sections 4 and 7 (one named record layout; what the gateware cannot carry it
counts and flags, never drops silently); Lattice FPGA-DS-02012 (ECP5 family data sheet),
table 1.1: the LFE5U-85F has 208 sysMEM EBR blocks of 18 kbit, 3744 kbit in all.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common import check_int, count_saturating, refuses_quietly
from ..records import INDEX_BITS, SYMBOL_FIELDS
from .layouts import Basis, SymbolWord

__all__ = ["MAX_LANES", "MAX_DEPTH_WORDS", "LOOKUPS_COUNTER_BITS", "WRITTEN_COUNTER_BITS",
           "UNAVAILABLE_COUNTER_BITS", "MISSED_COUNTER_BITS", "STORED_FIELDS", "LookupResult",
           "check_symbol_memory_parameters", "SymbolMemory"]

#: Widest symbol word.
MAX_LANES = 256
#: Deepest ring buffer, in words (2**24 words of 16 lanes: 107 ms at 2.5 GS/s).
MAX_DEPTH_WORDS = 1 << 24
#: Width of the ``lookups`` and ``written`` counters: they never saturate in practice (2**64
#: cycles at 156.25 MHz take 3700 years), so the host can account for every lookup and word.
LOOKUPS_COUNTER_BITS = 64
WRITTEN_COUNTER_BITS = 64
#: Width of the saturating ``unavailable`` and ``missed`` counters.
UNAVAILABLE_COUNTER_BITS = 32
MISSED_COUNTER_BITS = 32

#: The symbol fields kept in the memory and given in a lookup result: sifting needs no
#: ``dark`` (a dark symbol is never ``valid``), so it is not stored.
STORED_FIELDS = tuple((name, width) for name, width in SYMBOL_FIELDS if name != "dark")

#: One lookup's answer: the symbol ``index`` looked up, its fields, and whether the memory
#: holds it (``available``); with ``available`` 0 every symbol field is 0.
LookupResult = data.StructLayout({
    "index": INDEX_BITS,
    **{name: (Basis if name == "basis" else width) for name, width in STORED_FIELDS},
    "available": 1,
})


def check_symbol_memory_parameters(lanes, depth_words):
    """Check the construction parameters of :class:`SymbolMemory` (and of its reference
    model).

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
    naming the value.
    """
    check_int("Lane count", lanes, minimum=1, maximum=MAX_LANES)
    if lanes & (lanes - 1):
        raise ValueError(f"Lane count must be a power of two, not {lanes!r}")
    check_int("Depth in words", depth_words, minimum=2, maximum=MAX_DEPTH_WORDS)
    if depth_words & (depth_words - 1):
        raise ValueError(f"Depth in words must be a power of two, not {depth_words!r}")


class SymbolMemory(wiring.Component):
    """Keep the last ``D`` words of Alice's symbol log and answer lookups by symbol index.

    Writes: ``log`` is always ready; a valid word is written in its cycle (one a cycle) to
    address ``w mod D`` of a ring buffer in block RAM, ``w = index >> log2(L)`` being its
    word index, together with the tag ``w >> log2(D)`` and a ``present`` bit. The symbol
    source's words are lane-aligned (``index`` a multiple of ``L``, lane ``i`` carrying symbol
    ``index + i``); the low ``log2(L)`` bits of a log index are ignored. Words may come with
    gaps (the transmitter's log FIFO drops words and counts them; the gap shows in the
    indexes): the tag makes sure a slot whose word was dropped is never read as the missing
    one. ``written`` counts the words written.

    Clear: the memory keeps its contents across a reset, so a reset starts a sweep that
    writes an empty entry to address ``i`` in cycle ``i``, ``i = 0 .. D - 1``; ``clearing``
    is high in these cycles. Log words shown while ``clearing`` are not stored and are
    counted in ``missed`` (the transmitter's log only starts once the host enables it).

    Lookups: ``lookup`` carries a global symbol index. A lookup is taken in every cycle where
    ``lookup.ready`` is high, which is whenever the result register is empty or its result is
    being taken (``lookup.ready = ~result.valid | result.ready``): one lookup a cycle while
    ``result`` is not back-pressured. The lookup taken in cycle ``t`` reads the memory as it
    is after the write of cycle ``t`` (a word logged in the same cycle is forwarded) and is
    offered on ``result`` from cycle ``t + 2`` (:attr:`latency`) while ``result.ready`` is
    high; back-pressure holds the result and the one behind it, in order. ``result.valid``
    and ``result.payload`` come from a register; the payload keeps its last value while
    ``result.valid`` is low.

    Availability: the lookup of symbol ``i`` taken in cycle ``t`` has ``available`` = 1, and
    the fields of lane ``i mod L`` of the word, exactly when ``clearing`` is low in cycle
    ``t``, the log word with word index ``i >> log2(L)`` was written in a cycle ``<= t``
    after the sweep, and no other log word was written to the same address after it up to
    cycle ``t``. For in-order log indexes, that is: ``i``'s word is not newer than the last
    word written (not yet written), was not dropped, and is less than ``D`` words older than
    the last word written (else overwritten; but a word whose overwriting word was dropped
    stays readable, its data being right). Otherwise ``available`` is 0, as are ``basis``,
    ``bit``, ``intensity`` and ``valid``; ``index`` is always the index looked up.
    ``lookups`` counts the lookups taken (from cycle ``t + 1``), ``unavailable`` those
    answered unavailable (saturating, from cycle ``t + 2``, with the result).

    Sizing: the buffer must span the time from a symbol's emission to the lookup of its
    index, i.e. the detection's return over the classical link. A 1 ms host round trip at
    2.5 GS/s is 2.5 M symbols; at 5 stored bits a symbol that is 12.5 Mbit of symbol data
    alone, three times the 3744 kbit of block RAM of an ECP5-85F: it needs the external DRAM
    of the boards that have it (a later block). What block RAM holds: with ``L = 16`` a word
    stores ``1 + 46 + 80 = 127`` bits (present, tag ``64 - 4 - log2(D)``, 16 x 5 bits), so
    ``D = 2**14`` words (262144 symbols, 105 us at 2.5 GS/s) is 2.08 Mbit, 128 of the 208
    EBRs of an ECP5-85F used as 512 x 36 (4 wide x 32 deep); ``D = 2**15`` does not fit. The
    full tag is over a third of each entry (without it, 3 EBRs wide, 96 in all); it buys
    exact answers whatever the gaps, and across a reset that restarts the indexes.

    Parameters
    ----------
    lanes : int
        Symbols per log word (L), a power of two, 1..256.
    depth_words : int
        Words the ring buffer holds (D), a power of two, 2..2**24.

    Members
    -------
    log : In(stream.Signature(SymbolWord(lanes)))
        Alice's symbol log (the transmitter's ``log``); ``ready`` is always high.
    lookup : In(stream.Signature(64))
        Global symbol indexes to look up.
    result : Out(stream.Signature(LookupResult))
        One answer per lookup, in order.
    clearing : Out(1)
        The sweep after reset is emptying an entry in this cycle.
    lookups : Out(64)
        Lookups taken, saturating.
    unavailable : Out(32)
        Results with ``available`` 0, saturating.
    written : Out(64)
        Log words written, saturating.
    missed : Out(32)
        Log words shown while ``clearing``, not stored, saturating.
    """

    #: Cycles from a lookup taken to the earliest cycle its result is offered.
    latency = 2

    @refuses_quietly
    def __init__(self, *, lanes, depth_words):
        check_symbol_memory_parameters(lanes, depth_words)
        self.lanes = lanes
        self.depth_words = depth_words
        #: Bits of a symbol index that give the lane, and then the address.
        self.lane_bits = lanes.bit_length() - 1
        self.address_bits = depth_words.bit_length() - 1
        #: Bits of the tag stored with each word: the word index above the address.
        self.tag_bits = INDEX_BITS - self.lane_bits - self.address_bits
        #: Layout of one memory entry.
        self.entry = data.StructLayout({
            "present": 1,
            "tag": self.tag_bits,
            "symbols": data.ArrayLayout(data.StructLayout(dict(STORED_FIELDS)), lanes),
        })
        #: Bits of block RAM the buffer takes.
        self.memory_bits = depth_words * self.entry.size
        super().__init__({
            "log": In(stream.Signature(SymbolWord(lanes))),
            "lookup": In(stream.Signature(INDEX_BITS)),
            "result": Out(stream.Signature(LookupResult)),
            "clearing": Out(1),
            "lookups": Out(LOOKUPS_COUNTER_BITS),
            "unavailable": Out(UNAVAILABLE_COUNTER_BITS),
            "written": Out(WRITTEN_COUNTER_BITS),
            "missed": Out(MISSED_COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        lane_bits, address_bits = self.lane_bits, self.address_bits
        depth = self.depth_words

        memory = m.submodules.memory = Memory(shape=self.entry, depth=depth, init=[])
        write = memory.write_port()
        # Transparent: a lookup sees the word logged in its own cycle.
        read = memory.read_port(transparent_for=(write,))

        # Sweep after reset: the memory keeps its contents across a reset, and indexes from
        # before it could match the tags of words logged after it.
        sweeping = Signal(init=1)
        sweep_address = Signal(address_bits)
        with m.If(sweeping):
            m.d.sync += [sweeping.eq(sweep_address != depth - 1),
                         sweep_address.eq(sweep_address + 1)]
        m.d.comb += self.clearing.eq(sweeping)

        # Writes: one log word a cycle, never back-pressured.
        log = self.log
        word_index = log.payload.index[lane_bits:]
        entry = Signal(self.entry)
        m.d.comb += [
            log.ready.eq(1),
            entry.present.eq(1),
            entry.tag.eq(word_index[address_bits:]),
        ]
        for lane in range(self.lanes):
            for name, _ in STORED_FIELDS:
                m.d.comb += entry.symbols[lane][name].eq(log.payload.symbols[lane][name])
        with m.If(sweeping):
            m.d.comb += [write.addr.eq(sweep_address), write.data.eq(0), write.en.eq(1)]
        with m.Else():
            m.d.comb += [write.addr.eq(word_index[:address_bits]), write.data.eq(entry),
                         write.en.eq(log.valid)]
        count_saturating(m, self.written, log.valid & ~sweeping)
        count_saturating(m, self.missed, log.valid & sweeping)

        # Lookups, stage 1 (cycle t): the read, and the lookup held beside it. The whole
        # pipeline stalls while the result register is full and not taken.
        result = self.result
        advance = ~result.valid | result.ready
        wanted = self.lookup.payload
        held_valid = Signal()
        held_index = Signal(INDEX_BITS)
        held_blind = Signal()                   # taken while sweeping: contents not yet known
        m.d.comb += [
            self.lookup.ready.eq(advance),
            read.addr.eq(wanted[lane_bits:lane_bits + address_bits]),
            read.en.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += [held_valid.eq(self.lookup.valid), held_index.eq(wanted),
                         held_blind.eq(sweeping)]
        count_saturating(m, self.lookups, self.lookup.valid & advance)

        # Stage 2 (cycle t + 1): check the tag, pick the lane, load the result register.
        found = read.data
        hit = Signal()
        m.d.comb += hit.eq(found.present & (found.tag == held_index[lane_bits + address_bits:])
                           & ~held_blind)
        if self.lanes == 1:
            symbol = found.symbols[0]
        else:
            symbol = found.symbols[held_index[:lane_bits]]
        with m.If(advance):
            m.d.sync += result.valid.eq(held_valid)
            with m.If(held_valid):
                m.d.sync += [result.payload.index.eq(held_index),
                             result.payload.available.eq(hit)]
                for name, _ in STORED_FIELDS:
                    m.d.sync += result.payload[name].eq(Mux(hit, symbol[name], 0))
        count_saturating(m, self.unavailable, advance & held_valid & ~hit)
        return m
