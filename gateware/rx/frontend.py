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

from ..common import accepted_setting, check_int, refuses_quietly
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
    with room for the 64 division steps, ``2 * uis_per_word`` pattern steps and 4 more."""
    return 1 << bits_for(max(GATE_DIVIDEND_BITS, 2 * uis_per_word) + 4)


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
    ``dead_discards``, never passed on. There is no dead interval after reset. With ``D >= W``
    a channel accepts at most one click per word: the first one outside its interval (in
    ``COMMON`` mode, the earliest such UI over all channels, on each channel with a click
    there). ``dead_mode`` is read every cycle.

    **Hits.** For each accepted click, the channel's slot of ``hits`` is valid with ``time``
    (the UI of the edge), ``symbol`` (the symbol counter of the word plus the lane of the
    edge, modulo 2**64) and ``ui`` (the UI within that symbol, ``u mod S``). Slots without a
    click are all zero. The word taken in cycle ``c`` shows on ``hits`` in cycle ``c + 6``
    (:attr:`latency`), and is counted in ``clicks`` and ``dead_discards`` from cycle
    ``c + 6`` on (both saturate at 2**32 - 1).

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
    port's init after reset) and ``settings_error`` is high while a refused value is present.
    An accepted ``dead_time`` acts from the next cycle (see **Dead time**).

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
        High while a setting holds a refused value.
    """

    #: Cycles from the word on ``samples`` to its ``hits``, and until it is counted.
    latency = 6

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
        errors = self._dead_time(m)
        errors += self._gates(m)
        m.d.comb += self.settings_error.eq(Cat(errors).any())
        return m

    def _dead_time(self, m):
        C, L, S, W = self.channels, self.lanes, self.uis_per_symbol, self.uis_per_word
        u_bits = bits_for(W - 1)
        # The dead time in use is a register: an accepted value acts from the next cycle.
        # It is kept as `D - W = q * W + r` (0 <= r < W), and as the threshold rows of the
        # alive masks below, all registers.
        ok = (self.dead_time >= W) & (self.dead_time <= self.max_dead_time)
        extra_port = (self.dead_time - W)[:len(self.dead_time)]
        q_max = (self.max_dead_time - W) // W
        q = Signal(range(q_max + 1), name="dead_q")
        q_zero = Signal(name="dead_q_zero", init=1)
        q_one = Signal(name="dead_q_one")
        # m_lo[d]: d >= r (d = 0..W-1); m_hi[d]: d + W >= r (d = -(W-1)..-1, index d + W - 1)
        m_lo = Signal(W, name="dead_m_lo", init=(1 << W) - 1)
        m_hi = Signal(W - 1, name="dead_m_hi", init=(1 << (W - 1)) - 1)
        with m.If(ok):
            r_port = extra_port % W
            q_port = extra_port // W
            m.d.sync += [
                q.eq(q_port),
                q_zero.eq(q_port == 0),
                q_one.eq(q_port == 1),
                m_lo.eq(Cat(Const(d, u_bits + 1) >= r_port for d in range(W))),
                m_hi.eq(Cat(Const(d + W, u_bits + 2) >= r_port for d in range(-(W - 1), 0))),
            ]
        common = self.dead_mode == DeadTimeMode.COMMON

        # Bob's time and symbol counter of the word on `samples`.
        time = Signal(TIME_BITS)
        symbol = Signal(INDEX_BITS)
        m.d.sync += [
            time.eq(time + W),
            symbol.eq(Mux(self.epoch_load, self.epoch, symbol + L)),
        ]

        # Stage 0, on the word on `samples`: its edges, registered (in two replicas, one per
        # half of the terms below). Stage 1: the products of each edge with the threshold rows
        # of the dead time in use for that word (replicas of the rows, per channel and half,
        # a cycle behind them), registered. The dead-time loop of stage 2 then only ANDs them
        # with its state (one AND-OR from the state register back to it), as the loop cannot
        # be pipelined. Replicas keep each register's loads few and near (see
        # `replicated_setting`); the board build keeps them apart.
        # lo_terms[u][v] = edge v & (u - v >= r), v <= u: "an accepted click at v leaves UI u
        # of the next word alive when q = 0"; hi_terms[u][v] = edge v & (u + W - v >= r),
        # v > u (for v <= u it is the edge alone): the same for the word after next.
        half = W // 2
        edges_1, lo_terms, hi_terms = [], [], []      # edges_1: of the word in stage 2
        for k in range(C):
            word = self.samples[k]
            last = Signal(name=f"last_ui_{k}")
            edge = Signal(W, name=f"edges_{k}")
            m.d.sync += last.eq(word[W - 1])
            m.d.comb += edge.eq(word & ~Cat(last, word[:W - 1]))
            edge_rows = [Signal(W, name=f"edges_{k}_replica{h}") for h in range(2)]
            lo_rows = [Signal(W, name=f"dead_m_lo_{k}_replica{h}", init=(1 << W) - 1)
                       for h in range(2)]
            hi_rows = [Signal(W - 1, name=f"dead_m_hi_{k}_replica{h}", init=(1 << (W - 1)) - 1)
                       for h in range(2)]
            m.d.sync += [row.eq(edge) for row in edge_rows]
            m.d.sync += [row.eq(m_lo) for row in lo_rows] + [row.eq(m_hi) for row in hi_rows]
            edge_1 = Signal(W, name=f"edges_1_{k}")
            m.d.sync += edge_1.eq(edge_rows[1])
            edges_1.append(edge_1)
            lo_k, hi_k = [], []
            for u in range(W):
                h = int(u >= half)
                lo = Signal(u + 1, name=f"dead_lo_terms_{k}_{u}")
                m.d.sync += lo.eq(Cat(edge_rows[h][v] & lo_rows[h][u - v] for v in range(u + 1)))
                lo_k.append(lo)
                if u < W - 1:
                    hi = Signal(W - 1 - u, name=f"dead_hi_terms_{k}_{u}")
                    m.d.sync += hi.eq(Cat(edge_rows[h][v] & hi_rows[h][u - v + W - 1]
                                          for v in range(u + 1, W)))
                    hi_k.append(hi)
            lo_terms.append(lo_k)
            hi_terms.append(hi_k)
        # The settings of the word in stage 2 (two cycles behind), and its time and symbol
        # counter.
        q_0 = Signal.like(q, name="dead_q_0")
        q_1 = Signal.like(q, name="dead_q_1")
        q_zero_0 = Signal(name="dead_q_zero_0", init=1)
        q_zero_1 = Signal(name="dead_q_zero_1", init=1)
        q_one_0 = Signal(name="dead_q_one_0")
        q_one_1 = Signal(name="dead_q_one_1")
        common_0 = Signal(name="common_0", init=1)
        common_1 = Signal(name="common_1", init=1)
        time_0, time_1 = Signal(TIME_BITS), Signal(TIME_BITS)
        symbol_0, symbol_1 = Signal(INDEX_BITS), Signal(INDEX_BITS)
        m.d.sync += [q_0.eq(q), q_zero_0.eq(q_zero), q_one_0.eq(q_one), common_0.eq(common),
                     time_0.eq(time), symbol_0.eq(symbol),
                     q_1.eq(q_0), q_zero_1.eq(q_zero_0), q_one_1.eq(q_one_0),
                     common_1.eq(common_0), time_1.eq(time_0), symbol_1.eq(symbol_0)]

        # Stage 2: the dead-time loop. `alive[k]` (a register) marks the UIs of this word
        # outside channel k's dead interval; the candidates are its edges there. After an
        # accepted click at UI p (earliest candidate of the channel, or of all channels in
        # COMMON mode) the next q words are dead, then come `lo` (UIs u >= p + r), `hi`
        # (u >= p + r - W) and all alive: each a mask of "some candidate v <= u - threshold",
        # the AND-OR of `alive` with the stage-1 terms (OR over the channels in COMMON mode).
        # `following` is the next word's mask if nothing is picked now (from registers
        # only); the pick selects between it and `lo` at the end of the loop.
        # `alive` is kept in four equal registers (replicas, kept apart in the board build),
        # each feeding a quarter of the AND-OR, so that no state bit drives some 2 W loads.
        cands, alive_regs = [], []
        for k in range(C):
            replicas = [Signal(W, name=f"alive_{k}_replica{i}", init=(1 << W) - 1)
                        for i in range(4)]
            cand = Signal(W, name=f"candidates_{k}")
            m.d.comb += cand.eq(edges_1[k] & replicas[3])
            cands.append(cand)
            alive_regs.append(replicas)
        own_lo, own_hi = [], []
        for k, replicas in enumerate(alive_regs):
            def alive(u, v, hi, replicas=replicas):
                return replicas[2 * hi + (u >= half)][v]
            lo_own = Cat(Cat(alive(u, v, 0) & lo_terms[k][u][v] for v in range(u + 1)).any()
                         for u in range(W))
            # For v <= u the term is the candidate itself: a prefix OR.
            hi_own = Cat(Cat(*(alive(u, v, 1) & edges_1[k][v] for v in range(u + 1)),
                             *(alive(u, v, 1) & hi_terms[k][u][v - u - 1]
                               for v in range(u + 1, W))).any()
                         for u in range(W))
            own_lo.append(lo_own)
            own_hi.append(hi_own)
        any_lo, any_hi = _or_all(own_lo, W), _or_all(own_hi, W)

        for k, replicas in enumerate(alive_regs):
            lo_new = Signal(W, name=f"dead_lo_new_{k}")
            hi_new = Signal(W, name=f"dead_hi_new_{k}")
            m.d.comb += [lo_new.eq(Mux(common_1, any_lo, own_lo[k])),
                         hi_new.eq(Mux(common_1, any_hi, own_hi[k]))]
            picked = Signal(name=f"picked_{k}")
            m.d.comb += picked.eq(hi_new[W - 1])         # some candidate in the word
            # After the pick: the state of the word after next. `step` counts the words
            # to the `lo` one from the next word: > 0 dead, 0 lo, -1 hi, -2 all alive.
            picked_1 = Signal(name=f"picked_1_{k}")
            lo_picked = Signal(W, name=f"dead_lo_picked_{k}")
            hi_picked = Signal(W, name=f"dead_hi_picked_{k}")
            lo_held = Signal(W, name=f"dead_lo_held_{k}")
            hi_held = Signal(W, name=f"dead_hi_held_{k}")
            lo = Signal(W, name=f"dead_lo_{k}")
            hi = Signal(W, name=f"dead_hi_{k}")
            m.d.comb += [lo.eq(Mux(picked_1, lo_picked, lo_held)),
                         hi.eq(Mux(picked_1, hi_picked, hi_held))]
            step = Signal(range(-2, q_max + 1), name=f"dead_step_{k}", init=-2)
            f_dead = Signal(name=f"dead_next_dead_{k}")
            f_lo = Signal(name=f"dead_next_lo_{k}")
            f_hi = Signal(name=f"dead_next_hi_{k}")
            f_ones = Signal(name=f"dead_next_ones_{k}", init=1)
            following = Signal(W, name=f"dead_following_{k}")    # next word, no pick now
            m.d.comb += following.eq(
                (lo & f_lo.replicate(W)) | (hi & f_hi.replicate(W)) | f_ones.replicate(W))
            m.d.sync += [
                *(alive.eq(Mux(picked, lo_new & q_zero_1.replicate(W), following))
                  for alive in replicas),
                picked_1.eq(picked),
                lo_picked.eq(lo_new), hi_picked.eq(hi_new),
                lo_held.eq(lo), hi_held.eq(hi),
            ]
            with m.If(picked):
                m.d.sync += [
                    step.eq(q_1 - 1),
                    # The word after next: dead if q >= 2, lo if q == 1, hi if q == 0.
                    f_dead.eq(~q_zero_1 & ~q_one_1), f_lo.eq(q_one_1), f_hi.eq(q_zero_1),
                    f_ones.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    step.eq(Mux(step == -2, -2, step - 1)),
                    f_dead.eq(step > 1), f_lo.eq(step == 1), f_hi.eq(step == 0),
                    f_ones.eq(step < 0),
                ]

        # Stage 3 registers: the candidates (and the mode they were taken in), partial edge
        # counts per group of 8 UIs.
        groups = [(g, min(g + 8, W)) for g in range(0, W, 8)]
        time_2 = Signal(TIME_BITS)
        symbol_2 = Signal(INDEX_BITS)
        common_2 = Signal()
        m.d.sync += [time_2.eq(time_1), symbol_2.eq(symbol_1), common_2.eq(common_1)]
        cands_2, parts_2 = [], []
        for k in range(C):
            cand_2 = Signal(W, name=f"candidates_2_{k}")
            m.d.sync += cand_2.eq(cands[k])
            cands_2.append(cand_2)
            parts = []
            for i, (a, b) in enumerate(groups):
                part = Signal(bits_for(b - a), name=f"edge_part_{k}_{i}")
                m.d.sync += part.eq(_popcount(edges_1[k][a:b], b - a))
                parts.append(part)
            parts_2.append(parts)

        # Stage 3, per group of 8 UIs: whether it holds a candidate and the encodings of its
        # earliest one (of each channel, and of all channels for COMMON mode, with the
        # channels that have a candidate there), registered.
        def group_first(bits, name):
            """Registers (any, u, lane, ui) of the earliest set bit of each group, and its
            one-hot."""
            out, onehots = [], []
            for i, (a, b) in enumerate(groups):
                part = bits[a:b]
                onehot = Cat(part[j] & ~part[:j].any() if j else part[0]
                             for j in range(b - a))
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

        common_groups, common_onehots = group_first(_or_all(cands_2, W), "first_common")
        own_groups, at_common_3 = [], []
        for k in range(C):
            own_groups.append(group_first(cands_2[k], f"first_{k}")[0])
            hits = []
            for i, (a, b) in enumerate(groups):
                hit = Signal(name=f"first_common_{i}_at_{k}")
                m.d.sync += hit.eq((cands_2[k][a:b] & common_onehots[i]).any())
                hits.append(hit)
            at_common_3.append(hits)
        time_3 = Signal(TIME_BITS)
        symbol_3 = Signal(INDEX_BITS)
        common_3 = Signal()
        m.d.sync += [time_3.eq(time_2), symbol_3.eq(symbol_2), common_3.eq(common_2)]
        parts_3 = []
        for k in range(C):
            parts = [Signal.like(part, name=f"edge_part_3_{k}_{i}")
                     for i, part in enumerate(parts_2[k])]
            m.d.sync += [reg.eq(part) for reg, part in zip(parts, parts_2[k], strict=True)]
            parts_3.append(parts)

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

        # Stage 4: the earliest candidate of each channel, or of all of them in COMMON mode.
        common_u, common_lane, common_ui = picks(common_groups)
        time_4 = Signal(TIME_BITS)
        symbol_4 = Signal(INDEX_BITS)
        m.d.sync += [time_4.eq(time_3), symbol_4.eq(symbol_3)]
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
            m.d.sync += [
                accepted.eq(Mux(common_3, common_hit, own_any)),
                u.eq(Mux(common_3, common_u, own_u)),
                lane.eq(Mux(common_3, common_lane, own_lane)),
                ui.eq(Mux(common_3, common_ui, own_ui)),
                count.eq(_sum_tree(parts_3[k])),
            ]
            stage.append((accepted, u, lane, ui, count))

        # Stage 5: the registered hits and counters.
        power_of_two = W & (W - 1) == 0
        for k, (accepted, u, lane, ui, count) in enumerate(stage):
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
            _add_saturating(m, self.dead_discards[k], count - accepted)
        return [~ok]

    def _gates(self, m):
        C, L, S, W = self.channels, self.lanes, self.uis_per_symbol, self.uis_per_word
        F = self.gate_frame
        max_n = self.max_gate_period
        period_uis = unsigned(bits_for(max_n * S))

        # Frame schedule (step = cycle mod F): step 0 samples the settings in use and the
        # symbol time of the frame's commit word (cycle F later); steps 1..64 divide it by
        # the period, MSB first; steps 2..2W+1 build the short-period pattern; then the phase;
        # step F - 4 commits, so that the word of cycle F (shown then, through three register
        # stages) is the first under the new settings. F >= max(64, 2W) + 8 leaves room.
        step = Signal(range(F))
        m.d.sync += step.eq(step + 1)
        start = step == 0
        dividing = (step >= 1) & (step <= GATE_DIVIDEND_BITS)
        building = (step >= 2) & (step <= 2 * W + 1)
        counting = (step >= 2) & (step <= W + 1)
        at_delta = step == W + 2
        at_x = step == max(GATE_DIVIDEND_BITS, 2 * W) + 1
        at_phase = step == max(GATE_DIVIDEND_BITS, 2 * W) + 2
        commit = step == F - 4

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
            n_use = accepted_setting(m, f"gate_period_{k}", n_port, ok, 1)
            offset_use = accepted_setting(m, f"gate_offset_{k}", offset_port, ok, 0)
            width_use = accepted_setting(m, f"gate_width_{k}", width_port, ok, S // 2)

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
            wraps = reg("wraps", bits_for(W))
            st_delta = reg("st_delta", period_uis)           # W mod P
            st_quotient = reg("st_quotient", bits_for(W))    # W // P
            st_pattern = reg("st_pattern", 2 * W)            # bit i: (i mod P) < width
            x = reg("x", signed(period_uis.width + 1))
            st_phase = reg("st_phase", period_uis)
            with m.If(start):
                m.d.sync += [
                    st_enable.eq(self.gate_enable[k]),
                    st_n.eq(n_use),
                    st_period.eq(n_use * S),
                    st_offset.eq(offset_use),
                    st_width.eq(width_use),
                    rem.eq(0),
                    count.eq(0),
                    wraps.eq(0),
                ]
            with m.If(step == 1):
                m.d.sync += left.eq(st_period)
            twice = Cat(dividend_bit, rem)
            with m.If(dividing):
                m.d.sync += rem.eq(Mux(twice >= st_n, twice - st_n, twice))
            wrap = left == 1
            with m.If(building):
                m.d.sync += [
                    count.eq(Mux(wrap, 0, count + 1)),
                    left.eq(Mux(wrap, st_period, left - 1)),
                    st_pattern.eq(Cat(st_pattern[1:], count < st_width)),
                ]
            with m.If(counting & wrap):
                m.d.sync += wraps.eq(wraps + 1)
            with m.If(at_delta):
                m.d.sync += [st_delta.eq(count), st_quotient.eq(wraps)]
            with m.If(at_x):
                m.d.sync += x.eq(rem * S - st_offset)
            with m.If(at_phase):
                m.d.sync += st_phase.eq(Mux(x < 0, x + st_period, x))

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
            phase = reg("phase", period_uis)
            x1 = reg("x1", signed(period_uis.width + 1), S // 2)
            x2 = reg("x2", signed(period_uis.width + 2), S // 2 + S)
            x3 = reg("x3", period_uis, S)
            # phase + delta wraps iff phase - (P - delta) >= 0: both sums side by side.
            wrapped = Signal(signed(period_uis.width + 1), name=f"gate_wrapped_{k}")
            m.d.comb += wrapped.eq(phase - period_less_delta)
            wraps_now = ~wrapped[-1]
            with m.If(commit):
                m.d.sync += [
                    enable.eq(st_enable),
                    delta.eq(st_delta),
                    quotient.eq(st_quotient),
                    period_less_delta.eq(st_period - st_delta),
                    long.eq(st_period > W),
                    pattern.eq(st_pattern),
                    phase.eq(st_phase),
                    x1.eq(st_width - st_phase),
                    x2.eq(st_width + st_period - st_phase),
                    x3.eq(st_period - st_phase),
                ]
            with m.Else():
                m.d.sync += phase.eq(Mux(wraps_now, wrapped, phase + delta))
                for x in (x1, x2, x3):
                    m.d.sync += x.eq(Mux(wraps_now, x + period_less_delta, x - delta))

            # Stage B. P <= W: a window of the pattern. P > W: at most one wrap in the word.
            enable_b = reg("enable_b", 1)
            long_b = reg("long_b", 1)
            quotient_b = reg("quotient_b", bits_for(W))
            starts_b = reg("starts_b", 1)
            short_b = reg("short_b", W)
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
                short_b.eq((pattern >> phase[:bits_for(W - 1)])[:W]),
            ]
            # Stage C.
            enable_c = reg("enable_c", 1)
            long_c = reg("long_c", 1)
            quotient_c = reg("quotient_c", bits_for(W))
            starts_c = reg("starts_c", 1)
            short_c = reg("short_c", W)
            below = [reg(f"below{i}_c", W) for i in (1, 2, 3)]
            m.d.sync += [enable_c.eq(enable_b), long_c.eq(long_b), quotient_c.eq(quotient_b),
                         starts_c.eq(starts_b), short_c.eq(short_b)]
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

