"""Bob's anomaly watchdog against detector blinding: per-channel click statistics over
consecutive windows, and a latched alarm that the record merge stamps on every detection.

Ref: DESIGN.md sections 2 and 8 ("detector blinding shows as anomalous click statistics").
Blinding and faked-state attacks on gated InGaAs/InP detectors: L. Lydersen et al., "Hacking
commercial quantum cryptography systems by tailored bright illumination", Nature Photonics 4,
686 (2010); the click statistics a blinded gated detector shows (clicks in almost every gate
under bright light): Z. L. Yuan, J. F. Dynes, A. J. Shields, "Avoiding the blinding attack in
QKD", Nature Photonics 4, 800 (2010).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import (
    accepted_setting,
    check_int,
    count_saturating,
    refuses_quietly,
    register_copies,
    registered_setting,
)
from ..records import MAX_CHANNELS

__all__ = ["FILL_SCALE", "MAX_WINDOW", "MAX_GATE_COUNT_BITS", "TRIP_COUNTER_BITS",
           "check_watchdog_parameters", "Watchdog"]

#: ``max_fill`` is in units of ``1 / FILL_SCALE``; ``max_fill = FILL_SCALE`` disables the check.
FILL_SCALE = 256
#: Largest ``max_window`` (cycles): 2**32 cycles is 27 s at 156.25 MHz.
MAX_WINDOW = 1 << 32
#: Widest ``gate_starts`` element.
MAX_GATE_COUNT_BITS = 16
#: Width of the saturating ``trips`` counter.
TRIP_COUNTER_BITS = 32


def check_watchdog_parameters(channels, gate_count_bits, max_window):
    """Check the construction parameters of :class:`Watchdog` (and of its reference model).

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
    naming the value.
    """
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_int("Gate count width", gate_count_bits, minimum=1, maximum=MAX_GATE_COUNT_BITS)
    check_int("Maximum window", max_window, minimum=1, maximum=MAX_WINDOW)


class Watchdog(wiring.Component):
    """Watch each detector channel's clicks for the statistics of a blinding attack.

    Time is cut into consecutive, non-overlapping windows of ``window`` cycles. The first
    window starts in the first cycle after reset; a cycle with ``clear`` high starts a new
    window too (its own clicks and gates are the first of that window), and the window in
    progress is forgotten. A window ends in the cycle where it has lasted ``window`` cycles,
    counting that cycle: a window starting in cycle ``s`` ends in cycle ``s + window - 1``
    (sooner if ``window`` is lowered below the cycles already counted: it then ends at once),
    and the next starts in the cycle after.

    Per channel and window the watchdog counts the accepted clicks (``clicks``, at most one
    per channel per cycle) and the gate periods that started (``gate_starts``), and runs two
    checks:

    * **Rate**: the channel trips in the cycle of the click that brings the window's count
      above ``max_clicks`` (the ``max_clicks + 1``-th click), at most once per window.
      ``max_clicks >= window`` never trips.
    * **Fill** ("a detector clicks in nearly every gate"): at the end of a window the channel
      trips if the window had gates and ``clicks * 256 > max_fill * gates``. ``max_fill`` is
      the one in force in the window's last cycle; ``max_fill = 256`` disables the check.
      The check is made in the cycle after the window's last cycle (a ``clear`` in that cycle
      cancels it) and, pipelined, trips 5 cycles later: the fill check of a window ending in
      cycle ``e`` trips in cycle ``e + 6``.

    A trip latches the channel's bit of ``alarm_channels`` and ``alarm`` (their OR) until a
    cycle with ``clear`` high and no trip; ``trips`` counts the cycles in which at least one
    check of one channel tripped (saturating; ``clear`` does not reset it).

    Timing: every input is registered before use, and the rules above apply to the inputs
    of each cycle as of the cycle after (a window "ending in cycle ``e``" ends with the
    inputs of cycle ``e``). All outputs are registered. The click of cycle ``c`` that trips
    the rate check shows on ``alarm`` from cycle ``c + 2`` (:attr:`rate_latency`); the fill
    check of a window ending in cycle ``e`` shows from cycle ``e + 8`` (:attr:`fill_latency`).
    A ``clear`` in cycle ``c`` drops the alarms from cycle ``c + 2`` (:attr:`clear_latency`)
    unless a check trips with it (the rate check with ``max_clicks = 0`` on a click of cycle
    ``c``, or the fill check of a window that ended in cycle ``c - 6``). ``settings_error``
    shows the settings of the cycle before (the checks end at registers).

    Settings are read every cycle; ``window`` acts from the cycle after the one it is
    presented in (the window in use is a register), as does ``max_clicks``; ``max_fill`` acts
    in the same cycle. A refused value (``window`` 0 or above ``max_window``, ``max_fill`` above
    256) leaves the last accepted one in use (the default after reset), and
    ``settings_error`` is high in the cycle after each cycle where a refused value is present.
    The defaults (``window = max_window``, ``max_clicks = max_window``, ``max_fill = 256``)
    trip on nothing: what is anomalous depends on the lab's detectors, gate rate and mean
    photon number, so the host sets the thresholds. Keep in mind that a channel takes at most
    one click per cycle: with ``G`` gates per cycle the fill ratio cannot exceed ``1 / G``.

    Parameters
    ----------
    channels : int
        Detector channels, 1..16.
    gate_count_bits : int
        Width of each ``gate_starts`` element, 1..16.
    max_window : int
        Longest window in cycles, 1..2**32; sets the width of the counters.

    Members
    -------
    clicks : In(channels)
        Bit ``k``: channel ``k`` accepted a click in this cycle.
    gate_starts : In(ArrayLayout(gate_count_bits, channels))
        Gate periods of each channel starting in this cycle (0 for a free-running detector).
    window : In(bits_for(max_window)), init ``max_window``
        Window length in cycles, 1..``max_window``.
    max_clicks : In(bits_for(max_window)), init ``max_window``
        Clicks a channel may take in a window.
    max_fill : In(9), init 256
        Largest fraction of gates, in 256ths, a channel may click in over a window.
    clear : In(1)
        Clear the alarms and start a new window.
    alarm : Out(1)
        A check tripped since the last ``clear``.
    alarm_channels : Out(channels)
        Bit ``k``: a check of channel ``k`` tripped since the last ``clear``.
    trips : Out(32)
        Cycles in which a check tripped, saturating.
    settings_error : Out(1)
        High from the cycle after a setting holds a refused value until the cycle after it
        holds none.
    """

    #: Cycles from the click that trips the rate check to ``alarm``.
    rate_latency = 2
    #: Cycles from the last cycle of a window that trips the fill check to ``alarm``.
    fill_latency = 8
    #: Cycles from a ``clear`` to the first cycle without the alarms it drops.
    clear_latency = 2
    #: Cycles from an input to the cycle the watchdog acts on it (the input registers).
    input_latency = 1

    @refuses_quietly
    def __init__(self, *, channels, gate_count_bits=6, max_window=1 << 24):
        check_watchdog_parameters(channels, gate_count_bits, max_window)
        self.channels = channels
        self.gate_count_bits = gate_count_bits
        self.max_window = max_window
        #: Width of the click counts (and of ``window``, ``max_clicks``).
        self.count_bits = bits_for(max_window)
        #: Width of the gate counts: a window holds up to ``max_window`` cycles of gates.
        self.gate_total_bits = bits_for(max_window * ((1 << gate_count_bits) - 1))
        count = unsigned(self.count_bits)
        super().__init__({
            "clicks": In(channels),
            "gate_starts": In(data.ArrayLayout(gate_count_bits, channels)),
            "window": In(count, init=max_window),
            "max_clicks": In(count, init=max_window),
            "max_fill": In(unsigned(bits_for(FILL_SCALE)), init=FILL_SCALE),
            "clear": In(1),
            "alarm": Out(1),
            "alarm_channels": Out(channels),
            "trips": Out(TRIP_COUNTER_BITS),
            "settings_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        channels = self.channels

        # Input registers: the block is the one its docstring describes, behind one register
        # stage on every input, so that no input net from outside fans out to the counters.
        # `clear` is kept in copies (`*_replica*`: kept apart in the board build), one per
        # group of loads; the logic below reads the inputs of the cycle before from these.
        def register(name, port):
            reg = Signal.like(port, name=f"{name}_in")
            m.d.sync += reg.eq(port)
            return reg

        clicks_in = register("clicks", self.clicks)
        gate_starts_in = [register(f"gate_starts_{k}", self.gate_starts[k])
                          for k in range(channels)]
        window_in = register("window", self.window)
        # `max_clicks` in a copy per channel, each by its channel's compares (one register
        # drove all of them, 6.9-7.3 ns into `above` on the ULX3S).
        max_clicks_in = register_copies(m, "max_clicks", self.max_clicks, channels,
                                        init=self.max_window)
        max_fill_in = register("max_fill", self.max_fill)
        window_ok_now = (self.window != 0) & (self.window <= self.max_window)
        fill_ok_now = self.max_fill <= FILL_SCALE
        window_ok = Signal(name="window_ok_in", init=1)
        fill_ok = Signal(name="fill_ok_in", init=1)
        m.d.sync += [window_ok.eq(window_ok_now), fill_ok.eq(fill_ok_now)]
        # The checks' registers are the error's (the checks end at flip-flops).
        m.d.comb += self.settings_error.eq(~window_ok | ~fill_ok)
        clear, *clear_copies = register_copies(m, "clear", self.clear, 1 + 2 * channels)

        # Settings: refuse a window that is empty or longer than the counters hold, and a fill
        # bound above one. The window in use is a register (an accepted value acts from the
        # next cycle), so that the end-of-window logic starts at flip-flops.
        window = registered_setting(m, "window", window_in, window_ok, self.max_window)

        def window_compare(name, holds):
            """``holds`` (a compare with a constant) of the input register, as a register made
            from the port (``window_in_<name>``), and of the window in use, as the register of
            that flag accepted with the window; and the latter's next value."""
            init = holds(self.max_window)
            port_flag = Signal(name=f"window_in_{name}", init=init)
            m.d.sync += port_flag.eq(holds(self.window))
            in_use = registered_setting(m, f"window_{name}", port_flag, window_ok, init)
            return port_flag, in_use, Mux(window_ok, port_flag, in_use)

        _, _, window_is_one_next = window_compare("is_one", lambda w: w == 1)
        in_to_two, window_to_two, window_to_two_next = window_compare(
            "to_two", lambda w: w <= 2)
        in_to_three, window_to_three, _ = window_compare("to_three", lambda w: w <= 3)
        max_fill = Signal.like(self.max_fill, name="max_fill_in_use")
        m.d.comb += max_fill.eq(accepted_setting(m, "max_fill", max_fill_in, fill_ok,
                                                 FILL_SCALE))

        # Window: `last` (this cycle ends the window) is
        #     clear ? window == 1 : count >= window,
        # `count` being the cycles of the window so far, counting this one. It is computed a
        # cycle ahead into registers (copies, one per group of loads), from `ahead`
        # (`count + 1`), the window of the next cycle and the next cycle's `clear`, which is
        # this cycle's input: count is 1 after a window ends, 2 after a clear, else count + 1.
        # In the first cycle after reset the input registers hold no input yet: the first
        # window starts in the cycle after (count 0 here).
        #
        # `ahead >= window_in` and `ahead >= window` are registers too, worked out the cycle
        # before from that cycle's port, its window and the next `ahead` (2 after a window
        # ends, 3 after a clear, else `ahead + 1`, kept as `ahead_plus`), so that only a few
        # gates of registers sit in front of the copies of `last` (the compares' carry
        # chains there took 6.5-7.6 ns on the ULX3S). The compare with the next cycle's
        # window when this cycle's port is refused, `ahead >= (window_ok ? window_in :
        # window)`, is two registers, one per choice, chosen after them by a register of
        # `window_ok`: with the choice in front of the carry chain it took 6.4-6.9 ns.
        ahead_plus = Signal(range(self.max_window + 4), init=2)     # ahead + 1
        last = Signal(name="last_replica")

        def reaches(bound, to_two, to_three):
            """`ahead >= bound` a cycle ahead; `to_two`, `to_three`: `bound <= 2`, `<= 3`."""
            return Mux(last, to_two, Mux(clear, to_three, ahead_plus >= bound))

        init = self.max_window == 1
        reaches_in = Signal(name="window_reached_in", init=init)
        reaches_held = Signal(name="window_reached_held", init=init)   # window_in before
        reaches_kept = Signal(name="window_reached_kept", init=init)   # window before
        window_ok_before = Signal(name="window_ok_before", init=1)
        reached = Mux(window_ok, reaches_in,
                      Mux(window_ok_before, reaches_held, reaches_kept))
        last_next = Mux(self.clear | last, window_is_one_next,
                        Mux(clear, window_to_two_next, reached))
        last_copies = register_copies(m, "last", last_next, 2 * channels)
        m.d.sync += [
            last.eq(last_next),
            ahead_plus.eq(Mux(last, 3, Mux(clear, 4, ahead_plus + 1))),
            reaches_in.eq(reaches(self.window, self.window <= 2, self.window <= 3)),
            reaches_held.eq(reaches(window_in, in_to_two, in_to_three)),
            reaches_kept.eq(reaches(window, window_to_two, window_to_three)),
            window_ok_before.eq(window_ok),
        ]

        # The fill check runs on the totals of a window in the cycle after it ends, from
        # registers, as a pipeline: `fill_limit * total_gates` in three adder stages (the
        # limit is below 256 when the check is on: 8 shifted partial products), then the
        # compare in two stages: its trip shows in `trip` 5 cycles after that cycle.
        pending = Signal()
        fill_limit = Signal.like(max_fill)
        fill_on = Signal()                      # fill_limit != FILL_SCALE
        m.d.sync += pending.eq(last)
        with m.If(last):
            m.d.sync += [fill_limit.eq(max_fill), fill_on.eq(max_fill != FILL_SCALE)]
        fill_due = pending & ~clear & fill_on

        trips = []
        for k in range(channels):
            click = clicks_in[k]
            clear_clicks, clear_gates = clear_copies[2 * k:2 * k + 2]
            last_clicks, last_gates = last_copies[2 * k:2 * k + 2]
            gate_starts = gate_starts_in[k]
            clicks = Signal(self.count_bits, name=f"clicks_{k}")         # this window, so far
            gates = Signal(self.gate_total_bits, name=f"gates_{k}")
            gates_nonzero = Signal(name=f"gates_nonzero_{k}")            # gates != 0
            rate_tripped = Signal(name=f"rate_tripped_{k}")              # this window
            total_clicks = Signal(self.count_bits, name=f"total_clicks_{k}")   # of the last
            total_gates = Signal(self.gate_total_bits, name=f"total_gates_{k}")  # window
            total_nonzero = Signal(name=f"total_gates_nonzero_{k}")
            new_clicks = Signal.like(clicks, name=f"new_clicks_{k}")
            new_gates = Signal.like(gates, name=f"new_gates_{k}")
            new_nonzero = Signal(name=f"new_gates_nonzero_{k}")
            tripped = Signal(name=f"rate_tripped_before_{k}")
            m.d.comb += [
                new_clicks.eq(Mux(clear_clicks, 0, clicks) + click),
                new_gates.eq(Mux(clear_gates, 0, gates) + gate_starts),
                # The counts never wrap (a window holds at most `max_window` cycles).
                new_nonzero.eq((~clear_gates & gates_nonzero) | (gate_starts != 0)),
                tripped.eq(rate_tripped & ~clear_clicks),
            ]
            # new_clicks > max_clicks, for a click: (clear ? 0 : clicks) + 1 > max_clicks, is
            #     above = clear ? max_clicks == 0 : clicks >= max_clicks,
            # computed a cycle ahead into a register from the next cycle's `clear` (this
            # cycle's input) and `max_clicks` (a register: the setting acts from the cycle
            # after it is presented) and the next `clicks`: 0 after a window ends,
            # else `(clear ? 0 : clicks) + click`, whose compares are made on `clicks` and
            # `clicks_plus` (`clicks + 1`, a register too) before the choice.
            clicks_plus = Signal(range(self.max_window + 2), name=f"clicks_plus_{k}", init=1)
            above = Signal(name=f"above_{k}")
            max_next = max_clicks_in[k]
            zero_next = max_next == 0
            above_next = Mux(
                self.clear | last_clicks, zero_next,
                Mux(clear_clicks, Mux(click, max_next <= 1, zero_next),
                    Mux(click, clicks_plus >= max_next, clicks >= max_next)))
            m.d.sync += above.eq(above_next)
            rate_trip = click & ~tripped & above
            with m.If(last_clicks):
                m.d.sync += [clicks.eq(0), clicks_plus.eq(1), rate_tripped.eq(0),
                             total_clicks.eq(new_clicks)]
            with m.Else():
                m.d.sync += [clicks.eq(new_clicks), rate_tripped.eq(tripped | rate_trip),
                             clicks_plus.eq(Mux(clear_clicks, 1, clicks_plus) + click)]
            with m.If(last_gates):
                m.d.sync += [gates.eq(0), gates_nonzero.eq(0), total_gates.eq(new_gates),
                             total_nonzero.eq(new_nonzero)]
            with m.Else():
                m.d.sync += [gates.eq(new_gates), gates_nonzero.eq(new_nonzero)]

            # Fill pipeline: stage 1 pairs of partial products, 2 and 3 their sums, then the
            # compare `total_clicks * 256 > fill_limit * total_gates`.
            product_bits = self.gate_total_bits + 8
            due = fill_due & total_nonzero
            terms = [Mux(fill_limit[b], total_gates << b, 0) for b in range(8)]
            sums = [terms[i] + terms[i + 1] for i in range(0, 8, 2)]
            fill_clicks = total_clicks
            for stage in range(3):
                regs = [Signal(product_bits, name=f"fill_sum{stage}_{k}_{i}")
                        for i in range(len(sums))]
                due_r = Signal(name=f"fill_due{stage}_{k}")
                clicks_r = Signal(self.count_bits, name=f"fill_clicks{stage}_{k}")
                m.d.sync += [r.eq(v) for r, v in zip(regs, sums, strict=True)]
                m.d.sync += [due_r.eq(due), clicks_r.eq(fill_clicks)]
                sums = [regs[i] + regs[i + 1] for i in range(0, len(regs) - 1, 2)] or regs
                due, fill_clicks = due_r, clicks_r
            # The compare `clicks * 256 > product` in two halves, each registered (in one
            # cycle, the compare of the whole width took 6.7-6.9 ns on the ULX3S).
            scaled, product = Cat(Const(0, 8), fill_clicks), sums[0]
            half = product_bits // 2
            above_high = Signal(name=f"fill_above_high_{k}")
            equal_high = Signal(name=f"fill_equal_high_{k}")
            above_low = Signal(name=f"fill_above_low_{k}")
            due_compare = Signal(name=f"fill_due_compare_{k}")
            m.d.sync += [above_high.eq(scaled[half:] > product[half:]),
                         equal_high.eq(scaled[half:] == product[half:]),
                         above_low.eq(scaled[:half] > product[:half]), due_compare.eq(due)]
            fill_trip = Signal(name=f"fill_trip_{k}")
            m.d.sync += fill_trip.eq(due_compare & (above_high | (equal_high & above_low)))
            trip = Signal(name=f"trip_{k}")
            m.d.comb += trip.eq(rate_trip | fill_trip)
            trips.append(trip)

        trip = Cat(trips)
        m.d.sync += self.alarm_channels.eq((self.alarm_channels & ~clear.replicate(len(trip)))
                                           | trip)
        m.d.comb += self.alarm.eq(self.alarm_channels.any())
        count_saturating(m, self.trips, trip.any(), top_flag=True)
        return m
