"""Bob's binning: each accepted click, after its channel's delay offset, becomes the index and
phase of the symbol Alice sent it in, and the window LUT gives its class.

Ref: DESIGN.md sections 2-3 (time-bin slots of the Z and X detectors; S UIs per symbol) and 7
(what the gateware cannot carry it counts: clicks outside every window are counted per
channel).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import (
    accepted_setting,
    check_int,
    count_saturating,
    refuses_quietly,
    registered_refusals,
    registered_setting,
)
from ..records import (
    CLASS_DISCARD,
    CLASS_EARLY,
    CLASS_LATE,
    CLASS_MIDDLE,
    DETECTION_CLASSES,
    MAX_CHANNELS,
    PHASE_BITS,
)
from .layouts import Binned, Hit

__all__ = ["MAX_DELAY", "DISCARD_COUNTER_BITS", "check_binner_parameters", "divider_period",
           "z_windows", "x_windows", "check_windows", "Binner"]

#: Largest ``max_delay``: the delay is one 32-bit host register. 2**32 UIs are 0.86 s at
#: 5 GUI/s, far beyond any fibre; the coarse offset of a long link belongs in Bob's ``epoch``.
MAX_DELAY = (1 << 32) - 1
#: Width of the saturating per-channel ``window_discards`` counters.
DISCARD_COUNTER_BITS = 32


def check_uis_per_symbol(uis_per_symbol):
    """Check S: an even integer, 2..256 (the ``phase`` field of a record is 8 bits)."""
    check_int("UIs per symbol", uis_per_symbol, minimum=2, maximum=1 << PHASE_BITS)
    if uis_per_symbol % 2:
        raise ValueError(f"UIs per symbol must be even (two time bins), not {uis_per_symbol!r}")


def check_binner_parameters(channels, uis_per_symbol, max_delay):
    """Check the construction parameters of :class:`Binner` (and of its reference model).

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
    naming the value.
    """
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_uis_per_symbol(uis_per_symbol)
    check_int("Maximum delay", max_delay, minimum=0, maximum=MAX_DELAY)


def divider_period(uis_per_symbol, max_delay):
    """Cycles per division of the delay by S: 0 when S is a power of two (the split is a bit
    slice, in use at once), else ``bits_for(max_delay)`` (one quotient bit per cycle)."""
    if uis_per_symbol & (uis_per_symbol - 1) == 0:
        return 0
    return bits_for(max_delay)


def z_windows(uis_per_symbol):
    """Window LUT of a Z-basis detector: the early bin (UIs ``0 .. S/2 - 1``) is early, the
    late bin (UIs ``S/2 .. S - 1``) late, as :class:`~timebin.gateware.tx.driver.TimeBinDriver`
    lays the bins out. The default of every channel."""
    check_uis_per_symbol(uis_per_symbol)
    k = uis_per_symbol // 2
    return [CLASS_EARLY] * k + [CLASS_LATE] * k


def x_windows(uis_per_symbol):
    """Window LUT of the X-basis detector behind its one-bin interferometer, with the delay
    set so that the short arm's early pulse arrives in UIs ``0 .. S/2 - 1``: the middle slot
    (short-late with long-early, UIs ``S/2 .. S - 1``) carries the X result; the first slot,
    which also holds the previous symbol's long-late pulse, is discarded."""
    check_uis_per_symbol(uis_per_symbol)
    k = uis_per_symbol // 2
    return [CLASS_DISCARD] * k + [CLASS_MIDDLE] * k


def check_windows(windows, channels, uis_per_symbol):
    """Check a window LUT given as ``channels`` sequences of ``uis_per_symbol`` classes (0 early,
    1 late, 2 middle, 3 discard) and return it as a list of lists of ints.

    Raises ``ValueError`` naming the bad length or value (``TypeError`` for a non-integer).
    """
    try:
        luts = list(windows)
    except TypeError:
        raise TypeError(f"Window LUT must be {channels} sequences of {uis_per_symbol} "
                        f"classes, not {windows!r}") from None
    if len(luts) != channels:
        raise ValueError(f"Window LUT must hold one table per channel ({channels}), "
                         f"not {len(luts)}")
    out = []
    for k, lut in enumerate(luts):
        lut = list(lut)
        if len(lut) != uis_per_symbol:
            raise ValueError(f"Window LUT of channel {k} must have {uis_per_symbol} entries "
                             f"(one per UI of the symbol), not {len(lut)}")
        row = []
        for value in lut:
            if hasattr(value, "__index__") and not isinstance(value, bool):
                value = int(value)
            check_int(f"Window class (one of {DETECTION_CLASSES}) of channel {k}", value,
                      minimum=0, maximum=len(DETECTION_CLASSES) - 1)
            row.append(value)
        out.append(row)
    return out


class Binner(wiring.Component):
    """Give each channel's click the symbol index and phase it was sent in, and its class.

    Takes one ``Hit`` slot per channel every cycle (no handshake). A hit at UI ``ui`` of Bob's
    symbol period ``symbol`` on a channel whose delay offset is ``delay`` UIs arrived
    ``delay`` UIs after Alice emitted it, at UI ``symbol * S + ui - delay`` of her frame. With
    ``dq = delay // S`` and ``dr = delay % S``::

        borrow = ui < dr
        index  = symbol - dq - borrow            (mod 2**64)
        phase  = ui - dr + (S if borrow else 0)  (= (ui - dr) mod S)
        cls    = windows[channel][phase]

    ``all_binned`` carries every hit (``valid`` = the hit's ``valid``) with these fields, for
    the phase histogram; ``binned`` carries the same fields with ``valid`` low for the hits
    of class discard, for the record merge. ``window_discards`` counts, per channel, the valid
    hits of class discard (saturating). A hit with ``ui >= S``, which the front end never
    makes, gets its ``phase`` by the same formula (then ``>= S``) and class discard.

    Timing: the hit of cycle ``c`` is shown on ``binned`` and ``all_binned`` in cycle ``c + 2``
    (:attr:`latency`; both are registers, whose fields are computed every cycle, valid or not)
    and is counted in the ``window_discards`` shown from cycle ``c + 3`` on. It uses the
    delay split in use in cycle ``c`` and the ``windows`` port of cycle ``c + 1``.

    Delay split: if S is a power of two, ``dq`` and ``dr`` are bit slices of the delay, in use
    from the cycle after the delay is accepted on the port (the delay in use is a register, so
    that the 64-bit ``index`` subtraction starts at flip-flops, not behind the port's check;
    cycle 0 uses delay 0). Otherwise a sequential divider per channel (one quotient bit per
    cycle) recomputes them without pause, every :attr:`divider_period` ``D`` cycles
    (``D = bits_for(max_delay)``): the division starting in cycle ``k * D`` (``k = 0, 1, ...``
    from reset) takes the delay accepted in that cycle, and its result is in use in cycles
    ``(k + 1) * D .. (k + 2) * D - 1``; cycles ``0 .. D - 1`` use delay 0. A delay change so
    takes effect after ``D`` to ``2 * D - 1`` cycles; meanwhile clicks are binned with the
    previous delay.

    Settings: a ``delay`` above ``max_delay`` is refused: the channel keeps the last delay it
    accepted (0 after reset) and ``settings_error`` is high in the cycle after each cycle where
    a refused value is present (the checks end at registers).
    Every window LUT is valid. The ``windows`` default to :func:`z_windows` on every channel.

    Parameters
    ----------
    channels : int
        Detector channels, 1..16.
    uis_per_symbol : int
        UIs per symbol (S), even, 2..256.
    max_delay : int
        Largest delay in UIs, ``0 .. MAX_DELAY``; sets the width of ``delay``.

    Members
    -------
    hits : In(ArrayLayout(Hit(S), channels))
        This cycle's accepted click of each channel.
    delay : In(ArrayLayout(bits_for(max_delay), channels)), init 0
        Each channel's total offset in UIs (fibre, cables, detector latency).
    windows : In(ArrayLayout(ArrayLayout(2, S), channels)), init :func:`z_windows`
        Each channel's class of each phase: 0 early, 1 late, 2 middle, 3 discard.
    binned : Out(ArrayLayout(Binned(S), channels))
        The binned hits, ``valid`` low for discarded ones (to the record merge).
    all_binned : Out(ArrayLayout(Binned(S), channels))
        The binned hits, discarded ones included (to the phase histogram).
    window_discards : Out(ArrayLayout(32, channels))
        Valid hits of class discard per channel, saturating.
    settings_error : Out(1)
        High from the cycle after a ``delay`` holds a refused value until the cycle after it
        holds none.
    """

    #: Cycles from ``hits`` to ``binned`` and ``all_binned``.
    latency = 2

    @refuses_quietly
    def __init__(self, *, channels, uis_per_symbol, max_delay=(1 << 20) - 1):
        check_binner_parameters(channels, uis_per_symbol, max_delay)
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.max_delay = max_delay
        #: Width of each ``delay`` element.
        self.delay_bits = bits_for(max_delay)
        #: Cycles per division of the delay by S (0: S is a power of two, no divider).
        self.divider_period = divider_period(uis_per_symbol, max_delay)
        slots = data.ArrayLayout(Binned(uis_per_symbol), channels)
        super().__init__({
            "hits": In(data.ArrayLayout(Hit(uis_per_symbol), channels)),
            "delay": In(data.ArrayLayout(self.delay_bits, channels)),
            "windows": In(data.ArrayLayout(data.ArrayLayout(2, uis_per_symbol), channels),
                          init=[z_windows(uis_per_symbol)] * channels),
            "binned": Out(slots),
            "all_binned": Out(slots),
            "window_discards": Out(data.ArrayLayout(DISCARD_COUNTER_BITS, channels)),
            "settings_error": Out(1),
        })

    def _divide(self, m, k, delay, start):
        """``(delay // S, delay % S)`` by restoring division, one quotient bit per cycle; the
        division starts on the cycles with ``start`` high and lands ``divider_period`` cycles
        later."""
        n, span = self.delay_bits, self.uis_per_symbol
        remainder = Signal(bits_for(span - 1), name=f"div_remainder_{k}")
        quotient = Signal(n, name=f"div_quotient_{k}")  # dividend bits shift out, quotient in
        rem_in = Mux(start, 0, remainder)
        quo_in = Mux(start, delay, quotient)
        shifted = Signal(bits_for(2 * span - 1), name=f"div_shifted_{k}")
        fits = Signal(name=f"div_fits_{k}")
        rem_next = Signal.like(remainder, name=f"div_remainder_next_{k}")
        quo_next = Signal.like(quotient, name=f"div_quotient_next_{k}")
        m.d.comb += [
            shifted.eq(Cat(quo_in[n - 1], rem_in)),
            fits.eq(shifted >= span),
            rem_next.eq(Mux(fits, shifted - span, shifted)),
            quo_next.eq(Cat(fits, quo_in[:n - 1])),
        ]
        m.d.sync += [remainder.eq(rem_next), quotient.eq(quo_next)]
        symbols = Signal(n, name=f"delay_symbols_{k}")
        uis = Signal.like(remainder, name=f"delay_uis_{k}")
        return symbols, uis, (symbols.eq(quo_next), uis.eq(rem_next))

    def elaborate(self, platform):
        m = Module()
        span, channels = self.uis_per_symbol, self.channels
        power_of_two = self.divider_period == 0
        shift = span.bit_length() - 1

        if not power_of_two:
            period = self.divider_period
            step = Signal(range(max(period, 2)))
            last_step = step == period - 1
            m.d.sync += step.eq(Mux(last_step, 0, step + 1))
            landings = []

        errors = []
        for k in range(channels):
            # Delay split: refused values never take effect.
            ok = self.delay[k] <= self.max_delay
            errors.append(~ok)
            delay = Signal(self.delay_bits, name=f"delay_{k}")
            if power_of_two:
                # The register of the last accepted delay: behind the port's check, the
                # index subtraction took 7.2-7.5 ns on the ULX3S.
                m.d.comb += delay.eq(registered_setting(m, f"delay_{k}", self.delay[k], ok, 0))
                symbols, uis = delay >> shift, delay[:shift]
            else:
                m.d.comb += delay.eq(accepted_setting(m, f"delay_{k}", self.delay[k], ok, 0))
                symbols, uis, land = self._divide(m, k, delay, step == 0)
                landings += land

            # Stage 1: index and phase in Alice's frame. The index is `symbol - symbols` here
            # and less the borrow in stage 2, from registers by the output, so that neither
            # the hit's routing from the front end nor the borrow's compare sits in front of
            # a long carry chain (64 bits with the borrow as carry in took 6.6-7.4 ns on the
            # ULX3S). `symbol - symbols` is two chains side by side: the low bits (as wide as
            # `symbols`) and the high bits of `symbol` less one, chosen by the low borrow.
            hit = self.hits[k]
            borrow = hit.ui < uis
            valid = Signal(name=f"valid_{k}")
            index = Signal(len(hit.symbol), name=f"index_{k}")       # before the borrow
            borrowed = Signal(name=f"borrow_{k}")
            phase = Signal(len(hit.ui), name=f"phase_{k}")
            width, low_bits = len(hit.symbol), len(symbols)
            low = hit.symbol[:low_bits] - symbols                   # its top bit: a borrow
            high = hit.symbol[low_bits:]
            high_less = (high - 1)[:width - low_bits]
            m.d.sync += [
                valid.eq(hit.valid),
                index.eq(Cat(low[:low_bits], Mux(low[low_bits], high_less, high))),
                borrowed.eq(borrow),
                phase.eq(Mux(borrow, hit.ui + span - uis, hit.ui - uis)),
            ]

            # Stage 2: the window LUT, then the output registers.
            cls = Signal(2, name=f"cls_{k}")
            if power_of_two:
                m.d.comb += cls.eq(self.windows[k][phase])
            else:
                m.d.comb += cls.eq(Mux(phase < span, self.windows[k][phase],
                                       Const(CLASS_DISCARD, 2)))
            discard = cls == CLASS_DISCARD
            every, kept = self.all_binned[k], self.binned[k]
            # `binned.valid` has a register of its own, so that the merge's FIFO writes start
            # at a flip-flop.
            m.d.sync += [
                every.valid.eq(valid),
                every.index.eq((index - borrowed)[:width]),
                every.phase.eq(phase),
                every.cls.eq(cls),
                kept.valid.eq(valid & ~discard),
            ]
            m.d.comb += [
                kept.index.eq(every.index),
                kept.phase.eq(every.phase),
                kept.cls.eq(every.cls),
            ]
            # Counted from the output registers: from the window LUT (whose port is a
            # setting) to the counter's 32 enables took 6.5 ns on the ULX3S.
            count_saturating(m, self.window_discards[k],
                             every.valid & (every.cls == CLASS_DISCARD), top_flag=True)

        if not power_of_two:
            with m.If(last_step):
                m.d.sync += landings
        m.d.comb += self.settings_error.eq(registered_refusals(m, "settings", errors))
        return m
