"""Bob's receiver front end: rising-edge timing of the deserialized detector samples, dead
time per detector or common to all detectors, click counters, and the gate pattern of gated
detectors.

Ref: DESIGN.md sections 2-3 and 7. A common dead time across Bob's detectors defeats the
dead-time attack on passive-basis-choice receivers: H. Weier et al., "Quantum eavesdropping
without interception: an attack exploiting the dead time of single-photon detectors", New J.
Phys. 13, 073024 (2011). GHz-gated InGaAs/InP detectors: Z. L. Yuan et al., APL 91, 041114
(2007); Toshiba's gated systems, JLT 36, 3427 (2018).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import (
    accepted_setting,
    check_int,
    mux_tree,
    refuses_quietly,
    register_copies,
    registered_refusals,
)
from ..records import INDEX_BITS, MAX_CHANNELS, PHASE_BITS, TIME_BITS
from .layouts import Hit, SampleWord

__all__ = ["COUNTER_BITS", "DEFAULT_MAX_DEAD_TIME", "MAX_DEAD_TIME", "MAX_GATE_PERIOD",
           "GATE_DIVIDEND_BITS", "DeadTimeMode", "gate_frame_cycles",
           "check_frontend_parameters", "ClickFrontEnd"]

#: Width of the saturating ``clicks`` and ``dead_discards`` counters.
COUNTER_BITS = 32
#: Default ``max_dead_time`` in UIs: 26 us at 5 GUI/s, beyond the 10 us hold-off of gated
#: InGaAs/InP detectors.
DEFAULT_MAX_DEAD_TIME = (1 << 17) - 1
#: Largest ``max_dead_time`` in UIs.
MAX_DEAD_TIME = (1 << 32) - 1
#: Largest ``max_gate_period`` in symbols.
MAX_GATE_PERIOD = 1 << 16
#: Bits of the symbol time that the gate engine divides by the gate period.
GATE_DIVIDEND_BITS = INDEX_BITS


class DeadTimeMode(enum.Enum, shape=1):
    """Which accepted clicks blank a detector channel."""

    PER_DETECTOR = 0  #: a channel's own accepted clicks
    COMMON = 1        #: an accepted click on any channel (Weier et al. 2011)


def gate_frame_cycles(uis_per_word):
    """Cycles of the gate engine's frame for words of ``uis_per_word`` UIs: a power of two
    with room for the 64 division steps, ``2 * uis_per_word`` pattern steps and 8 more (the
    phase and its wrap slack, the commit, and the three register stages after it)."""
    return 1 << bits_for(max(GATE_DIVIDEND_BITS, 2 * uis_per_word) + 8)


def check_frontend_parameters(channels, lanes, uis_per_symbol, max_dead_time, max_gate_period):
    """Check the construction parameters of :class:`ClickFrontEnd` (and of its reference
    model). Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out
    of range, naming the value.
    """
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_int("Lane count", lanes, minimum=1)
    check_int("UIs per symbol", uis_per_symbol, minimum=2, maximum=1 << PHASE_BITS)
    if uis_per_symbol % 2:
        raise ValueError(f"UIs per symbol must be even, not {uis_per_symbol!r}")
    uis = lanes * uis_per_symbol
    check_int(f"Maximum dead time (at least one word of {uis} UIs)", max_dead_time,
              minimum=uis, maximum=MAX_DEAD_TIME)
    check_int("Maximum gate period", max_gate_period, minimum=1, maximum=MAX_GATE_PERIOD)


def _encode(onehot, width, of):
    """``of(u)`` for the one set bit ``u`` of ``onehot`` (0 if none): an OR per result bit."""
    top = max(of(u) for u in range(width))
    out = []
    for b in range(bits_for(top)):
        mask = sum(1 << u for u in range(width) if (of(u) >> b) & 1)
        out.append((onehot & mask).any() if mask else Const(0, 1))
    return Cat(*out)


def _first_onehot(bits):
    """The lowest set bit of ``bits`` alone (a priority one-hot; 0 if none)."""
    return Cat(bits[j] & ~bits[:j].any() if j else bits[0] for j in range(len(bits)))


def _or_all(values, width):
    out = Const(0, width)
    for value in values:
        out = out | value
    return out


def _popcount(bits, width):
    terms = [bits[i] for i in range(width)]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def _sum_tree(values):
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _below_parts(x, width):
    """``(x <= 0, x >= width, x mod 2**b)``, ``b = bits_for(width - 1)``: what
    :func:`_below_mask` needs of a signed ``x`` of any value."""
    return x <= 0, x >= width, x[:bits_for(width - 1)]


def _below_mask(parts, width):
    """The ``width`` bits ``u`` with ``u < x`` set, from :func:`_below_parts` of ``x``."""
    none, full, low = parts
    ones = Const((1 << width) - 1, width)
    return Mux(none, 0, Mux(full, ones, ~(ones << low)[:width]))


def _add_saturating(m, counter, amount):
    """Add to ``m.d.sync``: ``counter`` += ``amount``, sticking at its maximum."""
    width = len(counter)
    total = counter + amount
    m.d.sync += counter.eq(Mux(total[width:].any(), (1 << width) - 1, total[:width]))


class ClickFrontEnd(wiring.Component):
    """Time the rising edges of ``channels`` detector inputs, apply the dead time, count, and
    drive the detector gates.

    **Time.** Each cycle a word of ``W = lanes * uis_per_symbol`` UIs per channel is taken on
    ``samples`` (no handshake), UI 0 first in time. The word of the ``c``-th cycle after reset
    holds the UIs ``t = c * W .. c * W + W - 1`` of Bob's time (UIs since reset, modulo
    2**64; never loaded). Its symbol counter (the symbol period of UI 0) is 0 after reset and
    advances by ``lanes`` per cycle, modulo 2**64, except that ``epoch_load`` high in a cycle
    makes the next cycle's word start at symbol ``epoch``.

    **Clicks.** A click is a rising edge: UI ``u`` of a channel is 1 and the UI before it
    (for ``u = 0`` the last UI of the previous word, 0 after reset) is 0. A word may hold
    several clicks per channel; ``clicks`` counts them all.

    **Dead time.** Clicks are taken in time order. Each channel has a dead interval: an
    accepted click at UI ``t_a`` sets it to ``t_a + 1 .. t_a + D - 1`` (the detector is dead
    for ``D`` UIs counting the click's own, so accepted clicks are at least ``D`` apart),
    on its own channel in ``PER_DETECTOR`` mode and on every channel in ``COMMON`` mode,
    replacing the interval there was. ``D`` is the ``dead_time`` in use in the cycle the
    click's word is taken: the last accepted value up to the cycle before (the dead time
    acts from the cycle after the one it is presented in; ``W`` in the first cycle). A click
    is accepted iff it is outside its channel's dead interval; in ``COMMON`` mode clicks at
    the same UI on several channels are taken together, so all of them are accepted. Every
    other click is a dead-time discard: counted in
    ``dead_discards``, never passed on. There is no dead interval after reset. A word taken
    in ``COMMON`` mode after one taken in ``PER_DETECTOR`` mode starts a dead interval of
    ``D`` UIs from its first UI on every channel (as a click accepted at that UI would, on
    the UI itself too): the word accepts no click, and the channels' intervals, which could
    differ, become one that covers all of them. With ``D >= W``
    a channel accepts at most one click per word: the first one outside its interval (in
    ``COMMON`` mode, the earliest such UI over all channels, on each channel with a click
    there). ``dead_mode`` is read every cycle.

    **Hits.** For each accepted click, the channel's slot of ``hits`` is valid with ``time``
    (the UI of the edge), ``symbol`` (the symbol counter of the word plus the lane of the
    edge, modulo 2**64) and ``ui`` (the UI within that symbol, ``u mod S``). Slots without a
    click are all zero. The word taken in cycle ``c`` shows on ``hits`` in cycle ``c + 9``
    (:attr:`latency`), and is counted in ``clicks`` from cycle ``c + 9`` on and in
    ``dead_discards`` from cycle ``c + 10`` on (:attr:`discard_latency`; both saturate at
    2**32 - 1).

    **Gates.** For gated detectors each channel has a periodic gate, on ``gates``: UI ``t``
    (Bob's time, as above) is gated iff ``gate_enable`` and ``(t - gate_offset) mod P <
    gate_width``, with the period ``P = gate_period * S`` UIs. The word shown on ``gates`` in
    cycle ``c`` holds the UIs ``c * W .. c * W + W - 1``: the same time as the word taken on
    ``samples`` in that cycle, so the detector loop delay is for the integrator to align
    (``gate_offset``). ``gate_starts`` counts the gate periods starting in that word (UIs
    with ``(t - gate_offset) mod P == 0``; 0 while disabled), for the blinding watchdog. The
    gates do not mask the clicks.

    The gate settings pass through an engine that finds the phase of the new period in
    Bob's time (a 64-step division), in frames of :attr:`gate_frame` cycles (``F``,
    :func:`gate_frame_cycles`), the first starting in the first cycle after reset: the gate
    settings in use in cycle ``j * F`` govern the ``gates`` words of cycles ``(j + 1) * F``
    to ``(j + 2) * F - 1``. Until cycle ``F`` the gates are off. The formula holds while the
    symbol time ``t / S`` is below 2**64.

    **Settings.** ``dead_time`` below ``W`` or above ``max_dead_time`` is refused, and so is
    a channel's gate triple with ``gate_period`` 0 or above ``max_gate_period``,
    ``gate_width`` 0 or above ``P``, or ``gate_offset`` of ``P`` or more (the triple is
    accepted or refused as a whole, per channel): the last accepted value stays in use (the
    port's init after reset) and ``settings_error`` is high in the cycle after each cycle
    where a refused value is present (the checks end at registers). An accepted
    ``dead_time`` acts from the next cycle (see **Dead time**).

    Parameters
    ----------
    channels : int
        Detector channels (C), 1..16.
    lanes : int
        Symbols per cycle (L).
    uis_per_symbol : int
        UIs per symbol (S), even, 2..256.
    max_dead_time : int
        Largest ``dead_time`` in UIs, ``W .. 2**32 - 1``; sets the width of the dead state.
    max_gate_period : int
        Largest ``gate_period`` in symbols, 1..65536.

    Members
    -------
    samples : In(SampleWord(C, W))
        This cycle's samples, channel ``k`` in element ``k``, UI 0 in bit 0.
    epoch_load : In(1)
        Start the next word at symbol ``epoch``.
    epoch : In(64)
    dead_time : In(bits_for(max_dead_time)), init ``W``
        Dead time ``D`` in UIs.
    dead_mode : In(DeadTimeMode), init ``COMMON``
    gate_enable : In(ArrayLayout(1, C)), init 0
        0: free-running detector, its gate word is all zero.
    gate_period : In(ArrayLayout(bits_for(max_gate_period), C)), init 1
        Gate period ``n`` in symbols.
    gate_offset : In(ArrayLayout(bits_for(max_gate_period * S), C)), init 0
        Start of the gate in the period, in UIs.
    gate_width : In(ArrayLayout(bits_for(max_gate_period * S), C)), init ``S // 2``
        Gate length in UIs.
    hits : Out(ArrayLayout(Hit(S), C))
        Accepted clicks, registered.
    clicks, dead_discards : Out(ArrayLayout(32, C))
        Rising edges, and those not accepted, per channel; saturating.
    gates : Out(SampleWord(C, W))
        Gate words, registered.
    gate_starts : Out(ArrayLayout(bits_for(W), C))
        Gate periods starting in the ``gates`` word, registered.
    settings_error : Out(1)
        High from the cycle after a setting holds a refused value until the cycle after it
        holds none.
    """

    #: Cycles from the word on ``samples`` to its ``hits``, and until ``clicks`` counts it.
    latency = 9
    #: Cycles from a word to the cycle ``dead_discards`` counts its clicks not accepted.
    discard_latency = 10

    @refuses_quietly
    def __init__(self, *, channels, lanes, uis_per_symbol,
                 max_dead_time=DEFAULT_MAX_DEAD_TIME, max_gate_period=256):
        check_frontend_parameters(channels, lanes, uis_per_symbol, max_dead_time,
                                  max_gate_period)
        self.channels = channels
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.uis_per_word = lanes * uis_per_symbol
        self.max_dead_time = max_dead_time
        self.max_gate_period = max_gate_period
        #: Cycles per frame of the gate engine.
        self.gate_frame = gate_frame_cycles(self.uis_per_word)
        W, S = self.uis_per_word, uis_per_symbol
        gate_uis = unsigned(bits_for(max_gate_period * S))
        super().__init__({
            "samples": In(SampleWord(channels, W)),
            "epoch_load": In(1),
            "epoch": In(INDEX_BITS),
            "dead_time": In(unsigned(bits_for(max_dead_time)), init=W),
            "dead_mode": In(DeadTimeMode, init=DeadTimeMode.COMMON),
            "gate_enable": In(data.ArrayLayout(1, channels)),
            "gate_period": In(data.ArrayLayout(bits_for(max_gate_period), channels),
                              init=[1] * channels),
            "gate_offset": In(data.ArrayLayout(gate_uis, channels)),
            "gate_width": In(data.ArrayLayout(gate_uis, channels), init=[S // 2] * channels),
            "hits": Out(data.ArrayLayout(Hit(S), channels)),
            "clicks": Out(data.ArrayLayout(COUNTER_BITS, channels)),
            "dead_discards": Out(data.ArrayLayout(COUNTER_BITS, channels)),
            "gates": Out(SampleWord(channels, W)),
            "gate_starts": Out(data.ArrayLayout(bits_for(W), channels)),
            "settings_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        errors = self._dead_time(m, platform)
        errors += self._gates(m)
        m.d.comb += self.settings_error.eq(registered_refusals(m, "settings", errors))
        return m

    def _dead_time(self, m, platform):
        C, L, S, W = self.channels, self.lanes, self.uis_per_symbol, self.uis_per_word
        u_bits = bits_for(W - 1)
        # The dead time in use is a register: an accepted value acts from the next cycle.
        # It is kept as `D - W = q * W + r` (0 <= r < W).
        ok = (self.dead_time >= W) & (self.dead_time <= self.max_dead_time)
        extra_port = (self.dead_time - W)[:len(self.dead_time)]
        q_max = (self.max_dead_time - W) // W
        q = Signal(range(q_max + 1), name="dead_q")
        n_shape = unsigned(bits_for(q_max + 1))        # n: q + 1 at most
        n_top = (1 << n_shape.width) - 1
        q_less = Signal(n_shape, name="dead_q_less", init=n_top)    # q - 1, wrapping
        q_zero = Signal(name="dead_q_zero", init=1)
        q_one = Signal(name="dead_q_one")
        q_two = Signal(name="dead_q_two")
        r = Signal(max(u_bits, 1), name="dead_r")
        with m.If(ok):
            q_port = extra_port // W
            m.d.sync += [
                q.eq(q_port), q_less.eq(q_port - 1),
                q_zero.eq(q_port == 0), q_one.eq(q_port == 1), q_two.eq(q_port == 2),
                r.eq(extra_port % W),
            ]

        def delayed(value, cycles, name, init=0):
            """``value`` ``cycles`` cycles late: its registers, one per cycle (``[0]``: one
            cycle late)."""
            out = []
            for i in range(cycles):
                reg = Signal(len(value), name=f"{name}_d{i + 1}", init=init)
                m.d.sync += reg.eq(value)
                out.append(reg)
                value = reg
            return out

        # The word taken in cycle `c` is in stage `s` in cycle `c + s`: stage 0 takes its
        # edges, stages 1-4 tabulate its dead-time outcome for every state the loop could be
        # in, stage 5 is the loop, stages 6-8 find and encode the accepted clicks, and its
        # hits show in cycle `c + 9`.
        #
        # The loop's state (per channel) for a word is `n`, the whole words still dead before
        # it, and `e`, its first alive UI when `n == 0`. For each `e` the word's outcome is
        # known before the loop: the earliest edge `p >= e` (if any), after which the next
        # word has `n = q + carry` and `e = (p + r) mod W` (carry: `p + r >= W`); without
        # one, `n = e = 0`. So the loop selects the entry of `e` (a W:1 multiplexer on
        # registers; on an ECP5 two LUT levels of its slices' multiplexers, `mux_tree`) or,
        # in a dead word, counts `n` down: one multiplexer deep. In COMMON mode every
        # channel's state is the same (a switch to COMMON starts one interval on all of
        # them), and every channel takes the table of the OR of their edges.
        common = Signal(name="common", init=1)
        m.d.comb += common.eq(self.dead_mode == DeadTimeMode.COMMON)
        edges = []
        for k in range(C):
            word = self.samples[k]
            last = Signal(name=f"last_ui_{k}")
            m.d.sync += last.eq(word[W - 1])
            edge = Signal(W, name=f"edges_0_{k}")
            m.d.comb += edge.eq(word & ~Cat(last, word[:W - 1]))
            edges.append(edge)
        # Stage 1 registers: each table's edges (channel k's, then any channel's).
        table_edges = []
        for t, edge in enumerate(edges + [_or_all(edges, W)]):
            reg = Signal(W, name=f"edges_1_{t if t < C else 'any'}")
            m.d.sync += reg.eq(edge)
            table_edges.append(reg)
        tables = range(C + 1)
        span = 8                                       # stage 1: UIs per group

        # Stage 1: for every e, the earliest edge in UIs e .. e + 7 (absolute UI).
        first8 = []
        for t in tables:
            bits = table_edges[t]
            row = []
            for e in range(W):
                part = bits[e:min(e + span, W)]
                onehot = _first_onehot(part)
                found = Signal(name=f"dead_found8_{t}_{e}")
                at = Signal(max(u_bits, 1), name=f"dead_at8_{t}_{e}")
                m.d.sync += [found.eq(part.any()),
                             at.eq(_encode(onehot, len(part), lambda j, e=e: e + j))]
                row.append((found, at))
            first8.append(row)
        # Stage 2: for every e, the earliest edge in UIs e .. W - 1.
        first = []
        for t in tables:
            row = []
            for e in range(W):
                groups = [first8[t][g] for g in range(e, W, span)]
                found = Signal(name=f"dead_found_{t}_{e}")
                at = Signal(max(u_bits, 1), name=f"dead_at_{t}_{e}")
                pick = 0
                for i, (g_found, g_at) in enumerate(groups):
                    earliest = g_found & ~Cat(f for f, _ in groups[:i]).any() if i else g_found
                    pick = pick | (g_at & earliest.replicate(len(g_at)))
                m.d.sync += [found.eq(Cat(f for f, _ in groups).any()), at.eq(pick)]
                row.append((found, at))
            first.append(row)
        # The dead time and mode of the word, stage by stage.
        common_d = delayed(common, 7, "dead_common", init=1)    # common_d[s - 1]: stage s
        r_d = delayed(r, 3, "dead_r")
        q_zero_d = delayed(q_zero, 3, "dead_q_zero", init=1)
        q_one_d = delayed(q_one, 6, "dead_q_one")
        q_two_d = delayed(q_two, 6, "dead_q_two")
        q_d = delayed(q, 6, "dead_q")
        q_less_d = delayed(q_less, 6, "dead_q_less", init=n_top)
        # A switch to COMMON mode: the word is dead on every channel and starts an interval
        # of D UIs from its first UI, as a click accepted at its UI 0 (stage 4; the mode of
        # the word before is one register further).
        force_4 = common_d[3] & ~common_d[4]
        force_after_4 = common_d[1] & ~common_d[2]       # of the word after the next

        # Stages 3 and 4 read the mode and dead time of their word from copies, one per
        # channel and group of 8 entries (`*_replica`: kept apart in the board build), loaded
        # the cycle before: none of these registers drives every entry.
        def copy(value, name, k, group, init=0):
            return register_copies(m, f"dead_{name}_{k}_{group}", value, 1, init)[0]

        controls_3, controls_4 = {}, {}
        for k in range(C):
            for group in range(0, W, span):
                controls_3[k, group] = (copy(common_d[1], "common_3", k, group, init=1),
                                        copy(r_d[1], "r_3", k, group))
                controls_4[k, group] = {
                    "force": copy(common_d[2] & ~common_d[3], "force_4", k, group),
                    "next": copy(common_d[1] & ~common_d[2], "force_next_4", k, group),
                    "after": copy(common_d[0] & ~common_d[1], "force_after_4", k, group),
                    "r": copy(r_d[2], "r_4", k, group),
                    "zero": copy(q_zero_d[2], "q_zero_4", k, group, init=1),
                    "one": copy(q_one_d[2], "q_one_4", k, group),
                }
        # Stage 3: each channel's table (its own edges, or any channel's in COMMON mode),
        # and the next word's state after the pick: carry and e.
        stage3 = []
        for k in range(C):
            row = []
            for e in range(W):
                own, any_ = first[k][e], first[C][e]
                common_3, r_3 = controls_3[k, e - e % span]
                found = Mux(common_3, any_[0], own[0])
                at = Mux(common_3, any_[1], own[1])
                total = at + r_3
                carry = total >= W
                found_3 = Signal(name=f"dead_found_3_{k}_{e}")
                carry_3 = Signal(name=f"dead_carry_3_{k}_{e}")
                next_3 = Signal(max(u_bits, 1), name=f"dead_next_3_{k}_{e}")
                m.d.sync += [found_3.eq(found), carry_3.eq(carry & found),
                             next_3.eq(Mux(found, Mux(carry, total - W, total), 0))]
                row.append((found_3, carry_3, next_3))
            stage3.append(row)
        # Stage 4: the loop's entries. `zero`: the next word may be alive (n' == 0), or is
        # a switch; `one`: so may the word after it if the next one is dead (n' == 1).
        entries = []
        for k in range(C):
            row = []
            for e in range(W):
                found, carry, nxt = stage3[k][e]
                c = controls_4[k, e - e % span]
                zero = ~found | (c["zero"] & ~carry)
                one = found & ((c["one"] & ~carry) | (c["zero"] & carry))
                fields = (
                    ("found", Mux(c["force"], 1, found)),
                    ("carry", Mux(c["force"], 0, carry)),
                    ("next", Mux(c["force"], c["r"], nxt)),
                    ("zero", Mux(c["force"], c["zero"], zero) | c["next"]),
                    ("one", Mux(c["force"], c["one"], one) | c["after"]),
                )
                regs = {}
                for name, value in fields:
                    reg = Signal(len(nxt) if name == "next" else 1,
                                 name=f"dead_entry_{name}_{k}_{e}", init=name == "zero")
                    m.d.sync += reg.eq(value)
                    regs[name] = reg
                row.append(regs)
            entries.append(row)
        force_5 = Signal(name="dead_force_5")
        m.d.sync += force_5.eq(force_4)
        force_after_5 = Signal(name="dead_force_after_5")
        m.d.sync += force_after_5.eq(force_after_4)
        edges_d = [delayed(table_edges[k], 4, f"edges_{k}") for k in range(C)]   # stage 5

        # Stage 5: the loop. Per channel: `alive` (n == 0 or a switch: the entries apply),
        # `e`, `n` and `soon` (n == 1 or the word after is a switch: alive next if dead now).
        # `e` and `alive` are kept in replicas (kept apart in the board build), each driving
        # a share of the multiplexers, so that no state bit drives every one of them.
        cands = []
        for k in range(C):
            # One replica of `e` per multiplexer tree (one per bit of `next`, one per flag)
            # and one for the candidates; `alive` per group of loads.
            bits = max(u_bits, 1)
            trees = [f"next{b}" for b in range(bits)] + ["zero", "one", "found", "carry"]
            e_regs = {g: Signal(bits, name=f"dead_e_{k}_{g}_replica")
                      for g in trees + ["cands"]}
            alive = {g: Signal(name=f"dead_alive_{k}_{g}_replica", init=1)
                     for g in ("next", "flags", "count", "cands")}
            n = Signal(n_shape, name=f"dead_n_{k}")
            soon = Signal(name=f"dead_soon_{k}")

            def select(field, tree=None, bit=None, k=k, e_regs=e_regs):
                values = [entries[k][e][field] for e in range(W)]
                if bit is not None:
                    values = [value[bit] for value in values]
                return mux_tree(m, platform, e_regs[tree or field], values,
                                name=f"dead_mux_{k}_{tree or field}")

            sel_next = Cat(select("next", f"next{b}", b) for b in range(bits))
            sel_zero, sel_one = select("zero"), select("one")
            sel_found, sel_carry = select("found"), select("carry")
            # A dead word keeps `e`: `alive` is the replicas' clock enable, so the trees feed
            # their flip-flops directly.
            with m.If(alive["next"]):
                m.d.sync += [reg.eq(sel_next) for reg in e_regs.values()]
            m.d.sync += [reg.eq(Mux(alive["flags"], sel_zero, soon)) for reg in alive.values()]
            # `n` of a word after a live one is taken from that word's entry a cycle late
            # (`loaded`, with its pick and carry), so that no multiplexer tree feeds `n`.
            loaded = Signal(name=f"dead_loaded_{k}", init=1)
            found_6 = Signal(name=f"dead_found_6_{k}")
            carry_6 = Signal(name=f"dead_carry_6_{k}")
            m.d.sync += [loaded.eq(alive["count"]), found_6.eq(sel_found),
                         carry_6.eq(sel_carry)]
            # The next `n` is `n_now - 1`, `n_now` being this word's n: for a loaded word
            # `q + carry` after an edge, else 0, or else `n`. It is chosen after the
            # subtractions (`n - 1`, and `q - 1` or all ones (0 - 1) from registers), so that
            # the choice does not sit in front of a carry chain (6.4-6.5 ns on the ULX3S).
            n_less = Mux(loaded, Mux(found_6, Mux(carry_6, q_d[5], q_less_d[5]), n_top),
                         n - 1)
            # `n_now == 2` from flags of `q` (q + 1 == 2 is q == 1), not a compare behind
            # the choice of `n_now`: that took 6.5-7.1 ns into `soon` on the ULX3S.
            n_two = Mux(loaded, found_6 & Mux(carry_6, q_one_d[5], q_two_d[5]), n == 2)
            m.d.sync += [
                n.eq(n_less),
                soon.eq(Mux(alive["flags"], sel_one, n_two | force_after_5)),
            ]
            # This word's candidates: its edges at UIs e and on, none in a dead word.
            e = e_regs["cands"]
            live = alive["cands"] & ~force_5
            cand = Signal(W, name=f"candidates_{k}")
            m.d.comb += cand.eq(edges_d[k][3] & Cat((e <= u) & live for u in range(W)))
            cands.append(cand)
        # Bob's time and symbol counter of the word in stage 8 (the symbol counter is that of
        # the word on `samples`, eight registers on; the time is a count of its own that
        # starts eight words back), and the mode of the word in stage 7.
        time_4 = Signal(TIME_BITS, init=-8 * W % (1 << TIME_BITS))
        m.d.sync += time_4.eq(time_4 + W)
        symbol = self._symbol_counter(m)
        symbol_4 = delayed(symbol, 8, "symbol")[-1]
        common_3 = common_d[6]

        # Stage 6 registers: the candidates (and the mode they were taken in), partial edge
        # counts per group of 8 UIs.
        groups = [(g, min(g + 8, W)) for g in range(0, W, 8)]
        cands_2, parts_2 = [], []
        for k in range(C):
            cand_2 = Signal(W, name=f"candidates_2_{k}")
            m.d.sync += cand_2.eq(cands[k])
            cands_2.append(cand_2)
            parts = []
            for i, (a, b) in enumerate(groups):
                part = Signal(bits_for(b - a), name=f"edge_part_{k}_{i}")
                m.d.sync += part.eq(_popcount(edges_d[k][3][a:b], b - a))
                parts.append(part)
            parts_2.append(parts)
        # Any channel's candidates (for COMMON mode), a register of its own: the OR in
        # front of the earliest one's search took 6.6-6.9 ns on the ULX3S.
        any_cands_2 = Signal(W, name="candidates_2_any")
        m.d.sync += any_cands_2.eq(_or_all(cands, W))

        # Stage 6, per group of 8 UIs: whether it holds a candidate and the encodings of its
        # earliest one (of each channel, and of all channels for COMMON mode, with the
        # channels that have a candidate there), registered.
        def group_first(bits, name):
            """Registers (any, u, lane, ui) of the earliest set bit of each group, and its
            one-hot."""
            out, onehots = [], []
            for i, (a, b) in enumerate(groups):
                part = bits[a:b]
                onehot = _first_onehot(part)
                values = (part.any(),
                          _encode(onehot, b - a, lambda j, a=a: a + j),
                          _encode(onehot, b - a, lambda j, a=a: (a + j) // S),
                          _encode(onehot, b - a, lambda j, a=a: (a + j) % S))
                regs = tuple(Signal(len(value), name=f"{name}_{i}_{field}")
                             for value, field in zip(values, ("any", "u", "lane", "ui"),
                                                     strict=True))
                m.d.sync += [reg.eq(value) for reg, value in zip(regs, values, strict=True)]
                out.append(regs)
                onehots.append(onehot)
            return out, onehots

        common_groups, common_onehots = group_first(any_cands_2, "first_common")
        own_groups, at_common_3 = [], []
        for k in range(C):
            own_groups.append(group_first(cands_2[k], f"first_{k}")[0])
            hits = []
            for i, (a, b) in enumerate(groups):
                hit = Signal(name=f"first_common_{i}_at_{k}")
                m.d.sync += hit.eq((cands_2[k][a:b] & common_onehots[i]).any())
                hits.append(hit)
            at_common_3.append(hits)
        counts_3 = []                       # the edges of the word in stage 7
        for k in range(C):
            count = Signal(bits_for(W), name=f"edge_count_3_{k}")
            m.d.sync += count.eq(_sum_tree(parts_2[k]))
            counts_3.append(count)

        def pick(group_regs, values):
            """The values of the earliest group with a candidate (0 if none): an AND-OR."""
            anys = [regs[0] for regs in group_regs]
            out = 0
            for i, value in enumerate(values):
                first = anys[i] & ~Cat(anys[:i]).any() if i else anys[0]
                out = out | (value & first.replicate(len(value)))
            return out

        def picks(group_regs):
            return [pick(group_regs, [regs[j] for regs in group_regs]) for j in (1, 2, 3)]

        # Stage 7: the earliest candidate of each channel, or of all of them in COMMON mode.
        common_u, common_lane, common_ui = picks(common_groups)
        stage = []
        for k in range(C):
            own_u, own_lane, own_ui = picks(own_groups[k])
            own_any = Cat(regs[0] for regs in own_groups[k]).any()
            common_hit = pick(common_groups, [Cat(hit) for hit in at_common_3[k]])
            accepted = Signal(name=f"accepted_{k}")
            u = Signal(u_bits, name=f"hit_u_{k}")
            lane = Signal(bits_for(L - 1), name=f"hit_lane_{k}")
            ui = Signal(bits_for(S - 1), name=f"hit_ui_{k}")
            count = Signal(bits_for(W), name=f"edge_count_{k}")
            # The count less one, for the edges not accepted, `count - accepted`: chosen in
            # stage 8 into a register that `dead_discards` adds in stage 9 (a word with a
            # click taken has an edge, so that does not wrap). Worked out from `taken` in
            # this stage it took 7.2-7.9 ns on the ULX3S through a subtraction, 6.5-7.1 as
            # a choice between the count and the count less one.
            count_less = Signal(bits_for(W), name=f"edge_count_less_{k}")
            taken = Mux(common_3, common_hit, own_any)
            m.d.sync += [
                accepted.eq(taken),
                count_less.eq(counts_3[k] - 1),
                u.eq(Mux(common_3, common_u, own_u)),
                lane.eq(Mux(common_3, common_lane, own_lane)),
                ui.eq(Mux(common_3, common_ui, own_ui)),
                count.eq(counts_3[k]),
            ]
            stage.append((accepted, u, lane, ui, count, count_less))

        # Stage 8: the registered hits and counters.
        power_of_two = W & (W - 1) == 0
        for k, (accepted, u, lane, ui, count, count_less) in enumerate(stage):
            hit = self.hits[k]
            if power_of_two:
                hit_time = Cat(u, time_4[u_bits if W > 1 else 0:])
            else:
                hit_time = (time_4 + u)[:TIME_BITS]
            with m.If(accepted):
                m.d.sync += [
                    hit.time.eq(hit_time),
                    hit.symbol.eq((symbol_4 + lane)[:INDEX_BITS]),
                    hit.ui.eq(ui),
                ]
            with m.Else():
                m.d.sync += [hit.time.eq(0), hit.symbol.eq(0), hit.ui.eq(0)]
            m.d.sync += hit.valid.eq(accepted)
            _add_saturating(m, self.clicks[k], count)
            # The edges not accepted, into a register, added the cycle after: chosen in front
            # of the counter's adder it took 6.5-6.9 ns on the ULX3S.
            lost = Signal(bits_for(W), name=f"dead_lost_{k}")
            m.d.sync += lost.eq(Mux(accepted, count_less, count))
            _add_saturating(m, self.dead_discards[k], lost)
        return [~ok]

    def _symbol_counter(self, m):
        """The symbol counter of the word on ``samples``: ``epoch`` after a cycle with
        ``epoch_load``, else ``L`` more than in the cycle before (0 after reset).

        It counts in two halves of 32 bits, so that no carry chain spans all 64 (60 bits and
        the load's multiplexer took 6.8 ns on the ULX3S): the upper half adds a carry that a
        register holds, worked out the cycle before from compares of the next lower half with
        constants (``low + L`` wraps exactly when ``low >= 2**32 - L``)."""
        L, half = self.lanes, INDEX_BITS // 2
        top = 1 << half
        assert 2 * L <= top
        low = Signal(half, name="symbol_low")
        high = Signal(INDEX_BITS - half, name="symbol_high")
        carry = Signal(name="symbol_carry")         # low + L wraps in this cycle
        load, epoch = self.epoch_load, self.epoch
        m.d.sync += [
            low.eq(Mux(load, epoch[:half], low + L)),
            high.eq(Mux(load, epoch[half:], high + carry)),
            # The next cycle's low is epoch's, or low + L: that wraps in its turn when low
            # is in 2**32 - 2L .. 2**32 - L - 1 (low + L itself not wrapping).
            carry.eq(Mux(load, epoch[:half] >= top - L,
                         (low >= top - 2 * L) & (low < top - L))),
        ]
        return Cat(low, high)

    def _gates(self, m):
        C, L, S, W = self.channels, self.lanes, self.uis_per_symbol, self.uis_per_word
        u_bits = bits_for(W - 1)
        F = self.gate_frame
        max_n = self.max_gate_period
        period_uis = unsigned(bits_for(max_n * S))

        # Frame schedule (step = cycle mod F): step 0 samples the enable and the symbol time
        # of the frame's commit word (cycle F later), step 1 the triple in use in step 0 (the
        # register of the last accepted one); steps 2..65 divide the symbol time by the
        # period, MSB first; steps 3..2W+2 build the short-period pattern; then the phase;
        # step F - 4 commits, so that the word of cycle F (shown then, through three register
        # stages) is the first under the new settings. F > max(64, 2W) + 8 leaves room
        # (F - 4 > max(64, 2W) + 4: the phase's wrap slack is worked out the step after the
        # phase).
        # The decodes of the step are registers, set the cycle before from the next step.
        step = Signal(range(F))
        m.d.sync += step.eq(step + 1)                 # F is a power of two: wraps to 0

        def steps(first, last, name):
            # The next step is in first..last: this step in first - 1..last - 1, or the last
            # step (F - 1) when the range holds 0. Compares of `step` itself with constants:
            # behind `step + 1` they took 6.7 ns on the ULX3S.
            flag = Signal(name=f"gate_step_{name}", init=first <= 0 <= last)
            now = (step >= max(first - 1, 0)) & (step <= last - 1) if last >= 1 else Const(0)
            m.d.sync += flag.eq(now | (step == F - 1) if first <= 0 else now)
            return flag

        last = max(GATE_DIVIDEND_BITS, 2 * W) + 3               # the step of the phase
        assert last + 1 < F - 4, (W, F)
        start = steps(0, 0, "start")
        sampling = steps(1, 1, "sample")
        loading = steps(2, 2, "load")
        dividing = steps(2, GATE_DIVIDEND_BITS + 1, "dividing")
        building = steps(3, 2 * W + 2, "building")
        counting = steps(3, W + 2, "counting")
        at_delta = steps(W + 3, W + 3, "delta")
        at_x = steps(last - 1, last - 1, "x")
        at_phase = steps(last, last, "phase")
        at_slack = steps(last + 1, last + 1, "slack")
        commit = steps(F - 4, F - 4, "commit")

        mask64 = (1 << GATE_DIVIDEND_BITS) - 1
        commit_symbols = Signal(GATE_DIVIDEND_BITS, init=(F * L) & mask64)
        dividend = Signal(GATE_DIVIDEND_BITS)
        with m.If(start):
            m.d.sync += [
                dividend.eq(commit_symbols),
                commit_symbols.eq(commit_symbols + F * L),
            ]
        with m.Elif(dividing):
            m.d.sync += dividend.eq(dividend << 1)
        dividend_bit = dividend[GATE_DIVIDEND_BITS - 1]

        errors = []
        for k in range(C):
            n_port, offset_port = self.gate_period[k], self.gate_offset[k]
            width_port = self.gate_width[k]
            port_period = n_port * S
            ok = ((n_port >= 1) & (n_port <= max_n) & (width_port >= 1)
                  & (width_port <= port_period) & (offset_port < port_period))
            errors.append(~ok)
            # The engine samples the triple last accepted before its cycle: the accepted
            # triple of the cycle before, from registers of the ports and of their check
            # (`gate_*_port_*`, `gate_ok_port_*`) and the register of the triple accepted
            # before them. The check in front of the triple's enables took 6.4-7.0 ns on
            # the ULX3S.
            ok_port = Signal(name=f"gate_ok_port_{k}", init=1)
            m.d.sync += ok_port.eq(ok)
            uses = []
            for port, name, init in ((n_port, "period", 1), (offset_port, "offset", 0),
                                     (width_port, "width", S // 2)):
                held = Signal.like(port, name=f"gate_{name}_port_{k}", init=init)
                m.d.sync += held.eq(port)
                uses.append(accepted_setting(m, f"gate_{name}_{k}", held, ok_port, init))
            n_use, offset_use, width_use = uses

            def reg(name, shape, init=0, k=k):
                return Signal(shape, name=f"gate_{name}_{k}", init=init)

            # The engine: settings sampled at step 0, and what it derives from them.
            st_enable = reg("st_enable", 1)
            st_n = reg("st_n", len(n_port))
            st_period = reg("st_period", period_uis, S)
            st_offset = reg("st_offset", period_uis)
            st_width = reg("st_width", period_uis)
            rem = reg("rem", len(n_port))                    # symbol time mod n
            count = reg("count", period_uis)                 # UI index mod P
            left = reg("left", period_uis, S)                # P - count
            wrap = reg("left_one", 1)                        # left == 1 (P >= S >= 2)
            wraps = reg("wraps", bits_for(W))
            st_delta = reg("st_delta", period_uis)           # W mod P
            st_quotient = reg("st_quotient", bits_for(W))    # W // P
            st_pattern = reg("st_pattern", 2 * W)            # bit i: (i mod P) < width
            x = reg("x", signed(period_uis.width + 1))
            st_phase = reg("st_phase", period_uis)
            st_pld = reg("st_pld", period_uis, S)            # P - delta (>= 1)
            st_slack = reg("st_slack", signed(period_uis.width + 1), S - 1)
            with m.If(sampling):
                m.d.sync += [
                    st_n.eq(n_use),
                    st_period.eq(n_use * S),
                    st_offset.eq(offset_use),
                    st_width.eq(width_use),
                ]
            with m.If(start):
                m.d.sync += [
                    st_enable.eq(self.gate_enable[k]),
                    rem.eq(0),
                    count.eq(0),
                    wraps.eq(0),
                ]
            with m.If(loading):
                m.d.sync += [left.eq(st_period), wrap.eq(0)]
            twice = Cat(dividend_bit, rem)
            with m.If(dividing):
                m.d.sync += rem.eq(Mux(twice >= st_n, twice - st_n, twice))
            with m.If(building):
                m.d.sync += [
                    count.eq(Mux(wrap, 0, count + 1)),
                    left.eq(Mux(wrap, st_period, left - 1)),
                    wrap.eq(~wrap & (left == 2)),
                    st_pattern.eq(Cat(st_pattern[1:], count < st_width)),
                ]
            with m.If(counting & wrap):
                m.d.sync += wraps.eq(wraps + 1)
            with m.If(at_delta):
                m.d.sync += [st_delta.eq(count), st_quotient.eq(wraps)]
            with m.If(at_x):
                m.d.sync += x.eq(rem * S - st_offset)
            with m.If(at_phase):
                m.d.sync += [st_phase.eq(Mux(x < 0, x + st_period, x)),
                             st_pld.eq(st_period - st_delta)]
            with m.If(at_slack):
                # P - delta - 1 - phase, one adder: ~phase == -phase - 1 (as a signed value).
                m.d.sync += st_slack.eq(st_pld + ~Cat(st_phase, 0).as_signed())

            # In use, stage A: `phase` is (t - offset) mod P of the word shown on `gates` three
            # cycles later, with x1 = width - phase, x2 = width + P - phase, x3 = P - phase
            # (the bounds of the gate in that word) kept alongside. Stage B: the short word and
            # the compares of the bounds; stage C: the masks of the word; then the registered
            # gate word.
            enable = reg("enable", 1)
            delta = reg("delta", period_uis)
            quotient = reg("quotient", bits_for(W))
            period_less_delta = reg("period_less_delta", period_uis, S)
            long = reg("long", 1)
            pattern = reg("pattern", 2 * W)
            x1 = reg("x1", signed(period_uis.width + 1), S // 2)
            x2 = reg("x2", signed(period_uis.width + 2), S // 2 + S)
            x3 = reg("x3", period_uis, S)
            # `slack` = P - delta - phase - 1 is negative iff phase + delta wraps, so the
            # choice of every update is a register's sign bit, not the end of a carry chain.
            # It is kept in four equal registers (replicas, kept apart in the board build),
            # one each for phase, x1, x2 and x3, and each replica follows itself:
            # slack + (P - delta) after a wrap, slack - delta otherwise.
            phase = reg("phase", period_uis)
            slacks = [Signal(signed(period_uis.width + 1), name=f"gate_slack_{k}_replica{i}",
                             init=S - 1) for i in range(4)]
            with m.If(commit):
                m.d.sync += [
                    enable.eq(st_enable),
                    delta.eq(st_delta),
                    quotient.eq(st_quotient),
                    period_less_delta.eq(st_pld),
                    long.eq(st_period > W),
                    pattern.eq(st_pattern),
                    phase.eq(st_phase),
                    *(copy.eq(st_slack) for copy in slacks),
                    x1.eq(st_width - st_phase),
                    x2.eq(st_width + st_period - st_phase),
                    x3.eq(st_period - st_phase),
                ]
            with m.Else():
                for copy in slacks:
                    m.d.sync += copy.eq(Mux(copy[-1], copy + period_less_delta, copy - delta))
                m.d.sync += phase.eq(Mux(slacks[0][-1], phase - period_less_delta,
                                         phase + delta))
                for x, copy in zip((x1, x2, x3), slacks[1:], strict=True):
                    m.d.sync += x.eq(Mux(copy[-1], x + period_less_delta, x - delta))

            # Stage B. P <= W: a window of the pattern. P > W: at most one wrap in the word.
            enable_b = reg("enable_b", 1)
            long_b = reg("long_b", 1)
            quotient_b = reg("quotient_b", bits_for(W))
            starts_b = reg("starts_b", 1)
            # The window of the pattern at `phase` (P <= W, so phase < W) is shifted out in
            # two steps, by the multiple of 8 in stage B and the rest in stage C.
            fine = min(3, u_bits)
            coarse_b = reg("coarse_b", W + (1 << fine) - 1)
            fine_b = reg("fine_b", fine)
            bounds = []
            for i, x in zip((1, 2, 3), (x1, x2, x3), strict=True):
                parts = _below_parts(x, W)
                regs = (reg(f"none{i}_b", 1), reg(f"full{i}_b", 1),
                        reg(f"low{i}_b", len(parts[2])))
                m.d.sync += [r.eq(v) for r, v in zip(regs, parts, strict=True)]
                bounds.append(regs)
            m.d.sync += [
                enable_b.eq(enable), long_b.eq(long), quotient_b.eq(quotient),
                starts_b.eq(Mux(phase == 0, delta != 0, phase > period_less_delta)),
                coarse_b.eq((Cat(pattern, Const(0, 8)) >> Cat(Const(0, fine),
                                                               phase[fine:u_bits]))
                            [:len(coarse_b)]),
                fine_b.eq(phase[:fine]),
            ]
            # Stage C.
            enable_c = reg("enable_c", 1)
            long_c = reg("long_c", 1)
            quotient_c = reg("quotient_c", bits_for(W))
            starts_c = reg("starts_c", 1)
            short_c = reg("short_c", W)
            below = [reg(f"below{i}_c", W) for i in (1, 2, 3)]
            m.d.sync += [enable_c.eq(enable_b), long_c.eq(long_b), quotient_c.eq(quotient_b),
                         starts_c.eq(starts_b), short_c.eq((coarse_b >> fine_b)[:W])]
            m.d.sync += [b.eq(_below_mask(parts, W))
                         for b, parts in zip(below, bounds, strict=True)]
            long_word = below[0] | (below[1] & ~below[2])
            word = Signal(W, name=f"gate_word_{k}")
            m.d.comb += word.eq(Mux(long_c, long_word, short_c))
            with m.If(enable_c):
                m.d.sync += [self.gates[k].eq(word),
                             self.gate_starts[k].eq(quotient_c + starts_c)]
            with m.Else():
                m.d.sync += [self.gates[k].eq(0), self.gate_starts[k].eq(0)]
        return errors

