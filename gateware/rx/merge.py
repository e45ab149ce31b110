"""Bob's record merge: the binned clicks of every detector channel become detection records
on one stream, with a FIFO per channel and a round-robin arbiter.

Ref: DESIGN.md sections 4 and 7 (one named record layout; what the gateware cannot carry it
counts and flags, never drops silently).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import check_int, count_saturating, refuses_quietly, register_copies
from ..fifo import FlagFIFO
from ..records import INDEX_BITS, MAX_CHANNELS, PHASE_BITS
from .layouts import Binned, Detection

__all__ = ["MAX_FIFO_DEPTH", "OVERFLOW_COUNTER_BITS", "RECORDS_COUNTER_BITS",
           "check_merge_parameters", "RecordMerge"]

#: Deepest per-channel FIFO.
MAX_FIFO_DEPTH = 1 << 16
#: Width of the saturating per-channel ``overflows`` counters.
OVERFLOW_COUNTER_BITS = 32
#: Width of the ``records_out`` counter: it never saturates in practice (2**64 records at
#: 156.25 MHz take 3700 years), so the host can check every record it should have received.
RECORDS_COUNTER_BITS = 64


def check_merge_parameters(channels, uis_per_symbol, fifo_depth):
    """Check the construction parameters of :class:`RecordMerge` (and of its reference model).

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
    naming the value.
    """
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_int("UIs per symbol", uis_per_symbol, minimum=1, maximum=1 << PHASE_BITS)
    check_int("FIFO depth", fifo_depth, minimum=1, maximum=MAX_FIFO_DEPTH)


class RecordMerge(wiring.Component):
    """Turn each channel's valid ``Binned`` slot into a ``Detection`` record on ``records``.

    Every cycle, the slot of channel ``k`` with ``valid`` high becomes the record (``index``,
    ``phase``, ``channel = k``, ``cls``, ``alarm``), ``alarm`` being this cycle's ``alarm``
    input, and enters channel ``k``'s FIFO (``fifo_depth`` records, an
    :class:`~timebin.gateware.fifo.FlagFIFO`, which behaves as
    ``amaranth.lib.fifo.SyncFIFO``). The slots are taken as they come: the binner never marks
    a discarded click valid, so ``cls`` is never ``discard``. A record that finds its FIFO
    full (``fifo_depth`` records at the start of the cycle, even if one leaves in that cycle)
    is dropped and counted in ``overflows[k]`` (saturating); ``overflow`` is high from the
    cycle after the first drop on.

    Records leave through an output register, one per cycle at most. In every cycle where
    the register is empty or its record is being taken (``~records.valid | records.ready``),
    the arbiter loads it from the first channel with a record in its FIFO, searching from the
    channel after the last one granted (``last + 1, last + 2, ...`` modulo ``channels``;
    ``last`` is ``channels - 1`` after reset, so the search starts at channel 0); if every FIFO
    is empty the register empties. A record written to a FIFO in cycle ``c`` can be loaded in
    cycle ``c + 1`` at the earliest and offered on ``records`` from cycle ``c + 2``
    (:attr:`latency`). The records of one channel leave in the order of their slots.

    ``records`` is a normal stream: ``valid`` and ``payload`` come from the register and do
    not depend on ``ready`` in the same cycle; ``ready`` gates the FIFO read. ``records_out``
    counts the records taken (``valid & ready``) before the cycle before this one (a record
    taken in cycle ``c`` is counted from cycle ``c + 2``).

    Parameters
    ----------
    channels : int
        Detector channels, 1..16.
    uis_per_symbol : int
        UIs per symbol (S), 1..256: sets the width of the slots' ``phase``.
    fifo_depth : int
        Records each channel's FIFO holds, 1..65536.

    Members
    -------
    binned : In(ArrayLayout(Binned(uis_per_symbol), channels))
        This cycle's slot of each channel.
    alarm : In(1)
        The watchdog's alarm, copied into the records of this cycle's slots.
    records : Out(stream.Signature(Detection))
        The detection records.
    overflows : Out(ArrayLayout(32, channels))
        Records each channel dropped because its FIFO was full, saturating.
    overflow : Out(1)
        A record was dropped since reset.
    records_out : Out(64)
        Records taken from ``records``, saturating.
    """

    #: Cycles from a slot to the earliest cycle its record is offered on ``records``.
    latency = 2

    @refuses_quietly
    def __init__(self, *, channels, uis_per_symbol, fifo_depth=16):
        check_merge_parameters(channels, uis_per_symbol, fifo_depth)
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.fifo_depth = fifo_depth
        super().__init__({
            "binned": In(data.ArrayLayout(Binned(uis_per_symbol), channels)),
            "alarm": In(1),
            "records": Out(stream.Signature(Detection)),
            "overflows": Out(data.ArrayLayout(OVERFLOW_COUNTER_BITS, channels)),
            "overflow": Out(1),
            "records_out": Out(RECORDS_COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        channels = self.channels
        # A FIFO entry is a record without its channel, which the FIFO's position gives.
        entry = data.StructLayout({
            "index": INDEX_BITS,
            "phase": bits_for(self.uis_per_symbol - 1),
            "cls": 2,
            "alarm": 1,
        })

        fifos = []
        for k in range(channels):
            # A FlagFIFO (SyncFIFO's behaviour, its full flag a flip-flop): SyncFIFO's level
            # compare sat in front of its own write enable and level, 8.2 ns on the ULX3S.
            queue = m.submodules[f"fifo_{k}"] = FlagFIFO(width=entry.size,
                                                         depth=self.fifo_depth)
            slot = self.binned[k]
            record = Signal(entry, name=f"entry_{k}")
            m.d.comb += [
                record.index.eq(slot.index),
                record.phase.eq(slot.phase),
                record.cls.eq(slot.cls),
                record.alarm.eq(self.alarm),
                queue.w_en.eq(slot.valid),
                queue.w_data.eq(record),
            ]
            count_saturating(m, self.overflows[k], slot.valid & ~queue.w_rdy, top_flag=True)
            fifos.append(queue)
        m.d.comb += self.overflow.eq(self.overflows.as_value() != 0)

        # Round-robin arbiter: the first channel with a record after the last one granted.
        # The requests are registers kept equal to the FIFOs' `r_rdy` (level != 0), so that
        # the arbiter starts at flip-flops instead of behind each FIFO's level compare.
        # `requests` and `last` are each kept in two copies (`*_replica*`, kept apart in the
        # board build): one for the grant that chooses the record (a multiplexer as wide as
        # the record), one for the FIFOs' read enables. From one copy the grant's LUT sat
        # by the record's multiplexer, and the read enables and the FIFOs' flags behind it
        # took 6.7-7.2 ns on the ULX3S.
        requests_next = Signal(channels)
        requests, requests_enable = register_copies(m, "requests", requests_next, 2)
        for k, queue in enumerate(fifos):
            level = queue.level
            written = self.binned[k].valid & queue.w_rdy
            # A FIFO with one record has its request up: its `r_en` reads it.
            m.d.comb += requests_next[k].eq(written | (level >= 2) | ((level == 1) & ~queue.r_en))
        last_bits = bits_for(channels - 1)
        last_next = Signal(last_bits)
        last, last_enable = register_copies(m, "last", last_next, 2, init=channels - 1)

        def arbiter(requests, last, name):
            grant = Signal(last_bits, name=name)
            with m.Switch(last):
                for previous in range(channels):
                    with m.Case(previous):
                        order = [(previous + 1 + i) % channels for i in range(channels)]
                        for k in reversed(order):       # the last assignment wins: order[0]
                            with m.If(requests[k]):
                                m.d.comb += grant.eq(k)
            return grant

        grant = arbiter(requests, last, "grant")
        grant_enable = arbiter(requests_enable, last_enable, "grant_enable")
        head = Signal(entry)
        with m.Switch(grant):
            for k, queue in enumerate(fifos):
                with m.Case(k):
                    m.d.comb += head.eq(queue.r_data)

        out = self.records
        load = ~out.valid | out.ready
        for k, queue in enumerate(fifos):
            m.d.comb += queue.r_en.eq(load & (grant_enable == k))
        m.d.comb += last_next.eq(Mux(load & requests.any(), grant, last))
        with m.If(load):
            m.d.sync += out.valid.eq(requests.any())
            with m.If(requests.any()):
                m.d.sync += [
                    out.payload.index.eq(head.index),
                    out.payload.phase.eq(head.phase),
                    out.payload.channel.eq(grant),
                    out.payload.cls.eq(head.cls),
                    out.payload.alarm.eq(head.alarm),
                ]
        # The count takes a registered copy of `valid & ready`: from the stream's `ready`
        # straight to the enable of all 64 bits the route took 7.0 ns on the ULX3S. Its
        # maximum is a flag (a compare of the 64 bits in front of the enable: 6.6 ns).
        taken = Signal(name="records_taken")
        m.d.sync += taken.eq(out.valid & out.ready)
        count_saturating(m, self.records_out, taken, top_flag=True)
        return m
