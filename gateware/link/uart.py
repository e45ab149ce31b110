"""A UART for the board-host link: 8 data bits, no parity, one stop bit (8N1), at a fixed
number of clock cycles per bit.

Ref: the asynchronous start-stop framing of ITU-T V.4 / EIA-232 as USB-UART bridges
(FT2232H, CP2102) use it: an idle line is high, a byte is a low start bit, 8 data bits least
significant first, and a high stop bit. What the receiver cannot deliver it counts and flags,
never drops silently (DESIGN.md section 7).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import cdc, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import check_int, refuses_quietly
from .framer import EventCounters, check_counters, count_events

__all__ = ["MIN_DIVISOR", "MAX_DIVISOR", "ERROR_COUNTER_BITS", "check_divisor",
           "UARTTx", "UARTRx"]

#: Fewest clock cycles per bit: the receiver needs a few cycles to find the middle of a bit.
MIN_DIVISOR = 4
#: Most clock cycles per bit (150 baud at 156.25 MHz).
MAX_DIVISOR = 1 << 20
#: Width of the saturating error counters.
ERROR_COUNTER_BITS = 32
#: Bits of one character on the line: start, 8 data, stop.
CHARACTER_BITS = 10


def check_divisor(divisor):
    """Check a UART's ``divisor`` (clock cycles per bit), ``MIN_DIVISOR .. MAX_DIVISOR``.

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
    naming the value.
    """
    check_int("UART divisor (clock cycles per bit)", divisor, minimum=MIN_DIVISOR,
              maximum=MAX_DIVISOR)


class UARTTx(wiring.Component):
    """Send the bytes of ``data`` on ``tx``, 8N1, ``divisor`` clock cycles per bit.

    A byte taken from ``data`` in cycle ``c`` (``valid & ready``) drives its start bit on
    ``tx`` in cycles ``c + 1 .. c + divisor``, data bit ``i`` (least significant first) in the
    ``divisor`` cycles from ``c + 1 + (1 + i) * divisor``, and its stop bit from
    ``c + 1 + 9 * divisor``. ``ready`` is high while the line is idle and in the last cycle of
    a stop bit, so a stream of bytes leaves back to back, one every ``10 * divisor`` cycles.
    ``tx`` is high (idle) after reset and between bytes. ``ready`` does not depend on
    ``valid``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, 4 .. 2**20 (the clock frequency over the baud rate).

    Members
    -------
    data : In(stream.Signature(8))
        The bytes to send.
    tx : Out(1)
        The serial line, high when idle.
    """

    data: In(stream.Signature(8))
    tx:   Out(1, init=1)

    @refuses_quietly
    def __init__(self, *, divisor):
        check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))         # cycles left in this bit, minus one
        bits = Signal(range(CHARACTER_BITS + 1))    # bits left, this one included
        shift = Signal(CHARACTER_BITS - 1)          # the bits after the current one
        tx = Signal(init=1)
        m.d.comb += [
            self.tx.eq(tx),
            self.data.ready.eq((bits == 0) | ((bits == 1) & (timer == 0))),
        ]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [
                tx.eq(0),                           # start bit
                shift.eq(Cat(self.data.payload, 1)),
                bits.eq(CHARACTER_BITS),
                timer.eq(self.divisor - 1),
            ]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    tx.eq(shift[0]),                # after the stop bit, a 1: idle
                    shift.eq(Cat(shift[1:], 1)),
                    bits.eq(bits - 1),
                    timer.eq(self.divisor - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """Receive the bytes on ``rx``, 8N1, ``divisor`` clock cycles per bit, onto ``data``.

    ``rx`` passes a 2-flop synchroniser (it may come straight from a pin). A fall of the
    synchronised line while idle starts a character; the line is sampled ``divisor // 2``
    cycles later, in the middle of the start bit, and then every ``divisor`` cycles: 8 data
    bits, then the stop bit. A start bit that is high again at its middle is a glitch and
    ignored. The receiver is idle again from the middle of the stop bit, so it follows a
    sender whose bit time differs from its own by up to about ``(divisor // 2 - 2) /
    (9.5 * divisor)`` (5 % at a ``divisor`` of 100, 3 % at 13).

    A character whose stop bit is high delivers its byte: if its start bit falls on ``rx``
    in cycle ``f``, ``data`` shows the byte from cycle ``f + 3 + divisor // 2 + 9 * divisor``
    (:meth:`latency`) until it is taken (a register: ``valid`` and ``payload`` do not depend
    on ``ready``). Errors, each dropping the character's byte and counted saturating:

    - ``framing_errors``: the stop bit was low (a wrong baud rate, noise, or a break); the
      receiver then waits for the line to go high before it looks for a start bit again, so
      a break (a line held low) counts once.
    - ``overruns``: a byte arrived while the previous one was still shown on ``data`` and not
      taken in that cycle; the previous byte stays and the new one is dropped.

    ``framing_error`` and ``overrun`` are high from the cycle after the first such error on.
    ``errors`` counts both (a character is one or the other, never both), saturating: what a
    board shows as its link PHY's errors.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, 4 .. 2**20 (the clock frequency over the baud rate).
    counter_bits : int
        Width of the counters behind ``framing_errors`` and ``overruns``
        (:func:`~timebin.gateware.link.framer.count_events`: a narrower one sticks at its
        own maximum).
    counter_dsp : bool
        The ``errors`` counter in an iCE40 DSP
        (:class:`~timebin.gateware.link.framer.EventCounters`).

    Members
    -------
    rx : In(1)
        The serial line, high when idle.
    data : Out(stream.Signature(8))
        The bytes received.
    framing_errors : Out(32)
        Characters dropped because their stop bit was low, saturating.
    framing_error : Out(1)
        A framing error since reset.
    overruns : Out(32)
        Bytes dropped because the previous one was not taken, saturating.
    overrun : Out(1)
        An overrun since reset.
    errors : Out(32)
        Framing errors and overruns, saturating.
    """

    rx:             In(1, init=1)
    data:           Out(stream.Signature(8))
    framing_errors: Out(ERROR_COUNTER_BITS)
    framing_error:  Out(1)
    overruns:       Out(ERROR_COUNTER_BITS)
    overrun:        Out(1)
    errors:         Out(ERROR_COUNTER_BITS)

    @refuses_quietly
    def __init__(self, *, divisor, counter_bits=ERROR_COUNTER_BITS, counter_dsp=False):
        check_divisor(divisor)
        check_counters(counter_bits, counter_dsp)
        self.counter_dsp = counter_dsp
        self.divisor = divisor
        self.counter_bits = counter_bits
        super().__init__()

    def latency(self):
        """Cycles from the fall of ``rx`` that starts a character to its byte on ``data``."""
        return 3 + self.divisor // 2 + 9 * self.divisor

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.synchroniser = cdc.FFSynchronizer(self.rx, line, init=1, stages=2)

        timer = Signal(range(self.divisor))         # cycles to the next sample, minus one
        index = Signal(range(8))                    # data bit being received
        shift = Signal(8)
        out = self.data
        stop_high = Signal()
        stop_low = Signal()

        with m.If(out.ready):
            m.d.sync += out.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"                 # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), index.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [
                        shift.eq(Cat(shift[1:], line)),     # least significant bit first
                        index.eq(index + 1),
                        timer.eq(self.divisor - 1),
                    ]
                    with m.If(index == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.d.comb += stop_high.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += stop_low.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"

        lost = stop_high & out.valid & ~out.ready
        with m.If(stop_high & ~lost):
            m.d.sync += [out.valid.eq(1), out.payload.eq(shift)]
        count_events(m, self.framing_errors, stop_low, self.counter_bits)
        count_events(m, self.overruns, lost, self.counter_bits)
        counters = EventCounters(m, self.counter_bits, dsp=self.counter_dsp)
        counters.count(self.errors, stop_low | lost)
        counters.finish()
        m.d.comb += [
            self.framing_error.eq(self.framing_errors != 0),
            self.overrun.eq(self.overruns != 0),
        ]
        return m
