"""Bob's phase histogram: per detector channel, how many clicks fell in each UI of the symbol
period (or of a period of several symbols), for timing calibration and the delay alignment.

Ref: DESIGN.md sections 2-3 (S UIs per symbol; the Z and X detectors' arrival slots, whose
positions the histogram shows) and 7 (what the gateware cannot carry it counts: clicks lost
to a clear are counted per channel).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import check_int, count_saturating, refuses_quietly
from ..records import MAX_CHANNELS
from .binning import check_uis_per_symbol
from .layouts import Binned

__all__ = ["MAX_PERIOD_SYMBOLS", "MAX_COUNT_BITS", "CLICK_COUNTER_BITS",
           "check_histogram_parameters", "PhaseHistogram"]

#: Longest histogram period in symbols.
MAX_PERIOD_SYMBOLS = 256
#: Widest bin.
MAX_COUNT_BITS = 64
#: Width of the saturating per-channel ``counted`` and ``dropped`` counters.
CLICK_COUNTER_BITS = 32


def check_histogram_parameters(channels, uis_per_symbol, period_symbols, count_bits):
    """Check the construction parameters of :class:`PhaseHistogram` (and of its reference
    model).

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
    naming the value.
    """
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_uis_per_symbol(uis_per_symbol)
    check_int("Period in symbols", period_symbols, minimum=1, maximum=MAX_PERIOD_SYMBOLS)
    if period_symbols & (period_symbols - 1):
        raise ValueError(f"Period in symbols must be a power of two, not {period_symbols!r}")
    check_int("Bin width", count_bits, minimum=1, maximum=MAX_COUNT_BITS)


class PhaseHistogram(wiring.Component):
    """Count each channel's clicks per phase: the UI of the symbol period they were sent in,
    optionally within a period of ``P`` symbols.

    Channel ``k`` has ``B = P * S`` bins of ``count_bits`` bits. A valid slot of ``binned[k]``
    with ``phase < S`` adds one to bin ``(index mod P) * S + phase`` of channel ``k``; a bin
    at ``2**count_bits - 1`` stays there (saturates, never wraps). One click per channel per
    cycle is always counted, also when consecutive clicks hit the same bin. ``counted[k]``
    counts the clicks added to channel ``k``'s bins since the last clear (so it is the sum of
    the channel's bins while none saturates), and itself saturates at ``2**32 - 1``.

    Dropped clicks: a valid slot is not added, and is counted in ``dropped[k]`` (saturating,
    never cleared), if its ``phase`` is ``S`` or more (the binner never makes one; the port
    allows it when S is not a power of two) or if ``clearing`` is high in the cycle after
    the one it is shown on ``binned`` (its increment would fall in a sweep cycle).

    Clear: ``clear`` high in cycle ``c`` starts a sweep that writes zero to bin ``i`` of every
    channel in cycle ``c + 1 + i``, ``i = 0 .. B - 1``; ``clearing`` is high in these cycles
    (:attr:`clear_cycles` of them). A ``clear`` during a sweep starts it again from bin 0. So
    a clear in cycle ``c`` drops the valid slots shown in cycles ``c .. c + B - 1``; the
    clicks shown before cycle ``c`` are counted and then zeroed; the clicks shown from cycle
    ``c + B`` on are counted. ``counted`` shows 0 from cycle ``c + 1``. The memories keep
    their contents across a reset, so a reset starts a sweep too, as a ``clear`` in the
    cycle before cycle 0 would (``clearing`` is high in cycles ``0 .. B - 1``).

    Timing: the slot shown on ``binned`` in cycle ``t`` is in ``counted`` or ``dropped`` from
    cycle ``t + 2`` (:attr:`count_latency`). The value of bin ``read_bin`` of channel
    ``read_channel`` given in cycle ``r`` is shown on ``read_data`` in cycle ``r + 2``
    (:attr:`read_latency`): it holds exactly the clicks of the slots shown up to cycle
    ``r - 2``, the same as the ``counted`` shown in cycle ``r``, and the sweep writes of the
    cycles before ``r`` (a read given in a cycle where ``clearing`` is low after a clear sees
    the whole sweep). A ``read_bin`` of ``B`` or more, or a ``read_channel`` of ``C`` or more,
    reads 0.

    Parameters
    ----------
    channels : int
        Detector channels (C), 1..16.
    uis_per_symbol : int
        UIs per symbol (S), even, 2..256.
    period_symbols : int
        Symbols per histogram period (P), a power of two, 1..256.
    count_bits : int
        Width of each bin, 1..64.

    Members
    -------
    binned : In(ArrayLayout(Binned(S), channels))
        This cycle's binned click of each channel, class discard included (the binner's
        ``all_binned``).
    clear : In(1)
        Start a sweep that zeroes every bin, and restart ``counted``.
    clearing : Out(1)
        A sweep is zeroing a bin in this cycle.
    read_channel : In(bits_for(channels - 1))
        Channel of the bin to read.
    read_bin : In(bits_for(P * S - 1))
        Bin to read, ``(index mod P) * S + phase``.
    read_data : Out(count_bits)
        The bin given ``read_latency`` cycles ago.
    counted : Out(ArrayLayout(32, channels))
        Clicks added to each channel's bins since the last clear, saturating.
    dropped : Out(ArrayLayout(32, channels))
        Valid slots of each channel not added (phase ``>= S``, or lost to a sweep),
        saturating.
    """

    #: Cycles from ``read_channel`` and ``read_bin`` to ``read_data``.
    read_latency = 2
    #: Cycles from a slot on ``binned`` to ``counted`` and ``dropped``; a read sees the slots
    #: shown at least this many cycles before it is given.
    count_latency = 2

    @refuses_quietly
    def __init__(self, *, channels, uis_per_symbol, period_symbols=1, count_bits=32):
        check_histogram_parameters(channels, uis_per_symbol, period_symbols, count_bits)
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.period_symbols = period_symbols
        self.count_bits = count_bits
        #: Bins per channel, ``P * S``.
        self.bins = period_symbols * uis_per_symbol
        #: Cycles a sweep lasts (one bin a cycle): ``clearing`` is high this long.
        self.clear_cycles = self.bins
        super().__init__({
            "binned": In(data.ArrayLayout(Binned(uis_per_symbol), channels)),
            "clear": In(1),
            "clearing": Out(1),
            "read_channel": In(unsigned(bits_for(channels - 1))),
            "read_bin": In(unsigned(bits_for(self.bins - 1))),
            "read_data": Out(count_bits),
            "counted": Out(data.ArrayLayout(CLICK_COUNTER_BITS, channels)),
            "dropped": Out(data.ArrayLayout(CLICK_COUNTER_BITS, channels)),
        })

    def elaborate(self, platform):
        m = Module()
        span, bins = self.uis_per_symbol, self.bins

        # Sweep: one bin of every channel a cycle; from reset too (the memories keep their
        # contents across a reset, the counters do not).
        sweeping = Signal(init=1)
        sweep_bin = Signal(range(bins))
        last_bin = sweep_bin == bins - 1
        sweeping_next = self.clear | (sweeping & ~last_bin)
        m.d.sync += sweeping.eq(sweeping_next)
        with m.If(self.clear):
            m.d.sync += sweep_bin.eq(0)
        with m.Elif(sweeping):
            m.d.sync += sweep_bin.eq(Mux(last_bin, 0, sweep_bin + 1))
        m.d.comb += self.clearing.eq(sweeping)

        # Host reads: the address of cycle r is checked and its channel kept for cycle r + 1,
        # where the memories' data is selected into the output register.
        read_ok = (self.read_channel < self.channels) & (self.read_bin < bins)
        read_channel = Signal.like(self.read_channel, name="read_channel_held")
        read_valid = Signal(name="read_valid_held")
        m.d.sync += [read_channel.eq(self.read_channel), read_valid.eq(read_ok)]
        selected = Signal(self.count_bits)

        for k in range(self.channels):
            memory = m.submodules[f"bins_{k}"] = Memory(shape=unsigned(self.count_bits),
                                                        depth=bins, init=[])
            write = memory.write_port()
            # Read-modify-write over three stages: the count computed in cycle t is written in
            # cycle t + 1 from registers. The reads see the write of their own cycle
            # (transparent), and the count computed in the cycle before a read's data is used
            # is forwarded from its register, so that a click on the bin the click before it
            # counted counts on top of it, and the host sees the counts computed up to the
            # cycle before its read, as if written at once.
            # The click's read is a register of its own, loaded with the bin or, when the
            # write of the same cycle is to that bin, the written count (the transparency),
            # so that the adder starts at flip-flops: behind the read's multiplexer (a read
            # port's register holds the address) it took 6.5-6.9 ns on the ULX3S.
            fetch = memory.read_port(domain="comb")
            host = memory.read_port(transparent_for=(write,))
            m.d.comb += host.addr.eq(self.read_bin)
            with m.If(read_channel == k):
                m.d.comb += selected.eq(host.data)

            # Stage 1 (cycle t): the bin of the slot, and the read of its count.
            slot = self.binned[k]
            bad = slot.phase >= span
            address = Signal(range(bins), name=f"bin_{k}")
            if self.period_symbols == 1:
                m.d.comb += address.eq(slot.phase)
            else:
                period_bits = self.period_symbols.bit_length() - 1
                m.d.comb += address.eq(slot.index[:period_bits] * span + slot.phase)
            m.d.comb += fetch.addr.eq(address)
            fetched = Signal(self.count_bits, name=f"fetched_{k}")
            m.d.sync += fetched.eq(Mux(write.en & (write.addr == address), write.data,
                                       fetch.data))
            add = Signal(name=f"add_{k}")
            refused = Signal(name=f"refused_{k}")
            held = Signal.like(address, name=f"bin_held_{k}")
            m.d.sync += [add.eq(slot.valid & ~bad), refused.eq(slot.valid & bad),
                         held.eq(address)]

            # Stage 2 (cycle t + 1): the incremented count, or the sweep's zero, is computed.
            # The saturating increment from the adder's carry out (the count saturates
            # exactly when the sum carries, and then it stays all ones), so that no compare
            # of the whole count sits beside the adder in this loop.
            # The count forwarded is not chosen in front of the adder: the click before, on
            # the same bin, counted from the value this click's read returns (a read sees
            # every count but the one computed in its own cycle), so this one adds 2 to the
            # read; after a sweep of the bin (the write not seen either) its count is 1.
            # (The choice in front of the adder and the read's took 6.4-6.9 ns on the ULX3S.)
            # The count written is `sweeping ? 0 : swept ? 1 : saturated`, from a register
            # of `sweeping | swept` (`fixed`), so that one gate follows the adder, not two.
            new_en = Signal(name=f"new_en_{k}")
            new_addr = Signal.like(address, name=f"new_bin_{k}")
            new_data = Signal(self.count_bits, name=f"new_count_{k}")
            forward = Signal(name=f"forward_{k}")       # the bin of stage 2 was just counted
            fixed = Signal(name=f"count_fixed_{k}", init=1)    # sweeping, or the bin swept
            increment = Signal(self.count_bits + 1, name=f"increment_{k}")
            m.d.comb += increment.eq(fetched + Cat(~forward, forward))
            saturated = increment[:-1] | increment[-1].replicate(self.count_bits)
            m.d.comb += new_data.eq(Mux(fixed, ~sweeping, saturated))
            with m.If(sweeping):
                m.d.comb += [new_addr.eq(sweep_bin), new_en.eq(1)]
            with m.Elif(add):
                m.d.comb += [new_addr.eq(held), new_en.eq(1)]
            # Stage 3 (cycle t + 2): the write, from registers.
            same = new_addr == address
            m.d.sync += [
                write.addr.eq(new_addr), write.data.eq(new_data), write.en.eq(new_en),
                forward.eq(add & ~sweeping & same),
                fixed.eq(sweeping_next | (sweeping & same)),
            ]

            count_saturating(m, self.counted[k], add & ~sweeping, top_flag=True,
                             clear=self.clear)
            count_saturating(m, self.dropped[k], refused | (add & sweeping), top_flag=True)

        m.d.sync += self.read_data.eq(Mux(read_valid, selected, Const(0, self.count_bits)))
        return m
