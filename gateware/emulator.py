"""The loopback self-test's on-chip channel emulator: Alice's serializer word in, Bob's
detector samples out, with loss, Bob's basis choice, the interferometer, jitter, dark clicks
and a delay, drawn from seeded on-chip generators.

Ref: DESIGN.md section 2 (time-bin states; Bob's passive basis choice; the Z detector reads
the arrival bin; the X detector sits behind an unbalanced interferometer of one time bin,
which gives three arrival slots, only the middle one carrying the interference), section 3
(lanes and UIs) and section 7 (refused settings flagged, lost clicks counted).
:mod:`timebin.sim.channel` is the full physical model; this is a cheap on-chip version of
it, so that a loopback board shows the whole chain work on a bare board. The generators are
xoshiro128++ (D. Blackman, S. Vigna, "Scrambled linear pseudorandom number generators",
ACM Trans. Math. Softw. 47, 36 (2021); the reference C code of xoshiro128plusplus.c).

:class:`EmulatorGeometry` holds everything the gateware and its reference model
(:mod:`timebin.sim.emulator`) must agree on besides the settings: where each random draw
sits in the generators' output, the generators' seeding constants, the delay line's size.
"""

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .common import accepted_setting, refuses_quietly
from .regmap import (
    EMULATOR_DETECTORS,
    EMULATOR_LEVELS,
    check_emulator_parameters,
    emulator_resets,
)
from .rx.layouts import SampleWord
from .tx.layouts import SerializerWord

__all__ = ["POSITION_BITS", "GENERATOR_BITS", "xoshiro_output", "xoshiro_step",
           "generator_constants", "seeded_state", "EmulatorGeometry", "ChannelEmulator"]

#: Random bits that place a dark click in its word: the UI is ``(r * W) >> POSITION_BITS``.
POSITION_BITS = 16
#: Output bits of one generator per cycle.
GENERATOR_BITS = 32

_M32 = (1 << 32) - 1
_M64 = (1 << 64) - 1


# --- xoshiro128++, in plain Python (the definition the gateware and the model follow) ---------

def _rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & _M32


def xoshiro_output(state):
    """The output of xoshiro128++ in ``state`` (four 32-bit words ``s[0] .. s[3]``)."""
    s0, _, _, s3 = state
    return (_rotl((s0 + s3) & _M32, 7) + s0) & _M32


def xoshiro_step(state):
    """The state after ``state`` (xoshiro128plusplus.c, ``next()``)."""
    s0, s1, s2, s3 = state
    t = (s1 << 9) & _M32
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    return (s0, s1, s2, _rotl(s3, 11))


def _splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & _M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return x, z ^ (z >> 31)


def generator_constants(count):
    """Per-generator constants ``(c0, c1, c2, c3)`` that :func:`seeded_state` mixes the seed
    with: splitmix64 from a fixed start, skipping any with ``c2 == ~c0`` (so that no seed
    gives a generator the all-zero state, from which xoshiro never leaves)."""
    state, out = 0x74696D6562696E00, []          # ASCII "timebin\\0"
    while len(out) < count:
        state, a = _splitmix64(state)
        state, b = _splitmix64(state)
        words = (a & _M32, a >> 32, b & _M32, b >> 32)
        if words[2] != (~words[0] & _M32):
            out.append(words)
    return out


def seeded_state(constants, seed):
    """The state of the generator of ``constants`` after a (re)seed with the 64-bit ``seed``:
    ``constants`` XOR ``(lo, hi, ~lo, ~hi)`` of the seed's 32-bit halves. (Seeds that differ
    in a few bits give states that do too, and xoshiro needs some steps to spread such a
    difference: use random seeds for independent runs.)"""
    lo, hi = seed & _M32, (seed >> 32) & _M32
    return tuple(c ^ s for c, s in zip(constants, (lo, hi, ~lo & _M32, ~hi & _M32),
                                       strict=True))


# --- What the gateware and the model share ------------------------------------------------------

@dataclass(frozen=True)
class EmulatorGeometry:
    """The fixed structure of an emulator of given parameters (see :class:`ChannelEmulator`).

    Attributes
    ----------
    lanes, uis_per_symbol, channels, dac_bits, pm_bits, max_delay, max_jitter, prob_bits :
        The construction parameters (``max_delay`` filled in).
    uis_per_bin : int
        ``k = S / 2``.
    uis_per_word : int
        ``W = L * S``.
    detectors : int
        Detectors emulated, ``min(channels, 3)``: Z, X+, X-.
    margin : int
        UIs every click is placed later so that a jitter of ``-max_jitter`` never reaches
        into a word already sent: ``S * ceil(max_jitter / S)`` (a whole number of symbols, so
        that Bob's phases are Alice's at zero delay).
    span : int
        Positions a lane's click may take relative to the lane's first UI:
        ``3k + margin + max_jitter`` (the X detector's late side slot is ``3k - 1`` at most).
    extension : int
        UIs a word's clicks may reach into the next words: ``span - S``.
    lane_bits : int
        Random bits per lane per cycle: ``r_click``, ``r_basis``, ``r_error`` (``prob_bits``
        each), ``r_slot`` (2), ``r_port`` (1), ``r_jitter_a`` and ``r_jitter_b``
        (``max_jitter`` each), LSB first; lane ``i`` at bit ``i * lane_bits``.
    dark_bits : int
        Random bits per detector per cycle, after the lanes' (from bit ``L * lane_bits``):
        ``r_dark`` (``prob_bits``) and ``r_position`` (:data:`POSITION_BITS`).
    generators : int
        xoshiro128++ generators; their outputs, generator 0 in bits 0..31, are the cycle's
        random bits.
    constants : tuple
        :func:`generator_constants` of each generator.
    max_words : int
        ``max_delay // W``: the delay line's whole words.
    memory_depth : int
        Words of the delay memory: the power of two above ``max_words`` (0: no memory).
    """

    lanes: int
    uis_per_symbol: int
    channels: int
    dac_bits: int
    pm_bits: int
    max_delay: int
    max_jitter: int
    prob_bits: int

    @classmethod
    def of(cls, *, lanes, uis_per_symbol, channels=3, dac_bits=8, pm_bits=1, max_delay=None,
           max_jitter=3, prob_bits=16):
        """The geometry of the given parameters, checked (``TypeError``, ``ValueError``)."""
        max_delay = check_emulator_parameters(lanes, uis_per_symbol, channels, dac_bits,
                                              pm_bits, max_delay, max_jitter, prob_bits)
        return cls(lanes, uis_per_symbol, channels, dac_bits, pm_bits, max_delay, max_jitter,
                   prob_bits)

    @property
    def params(self):
        """The construction parameters, as a dict."""
        return dict(lanes=self.lanes, uis_per_symbol=self.uis_per_symbol,
                    channels=self.channels, dac_bits=self.dac_bits, pm_bits=self.pm_bits,
                    max_delay=self.max_delay, max_jitter=self.max_jitter,
                    prob_bits=self.prob_bits)

    @property
    def uis_per_bin(self):
        return self.uis_per_symbol // 2

    @property
    def uis_per_word(self):
        return self.lanes * self.uis_per_symbol

    @property
    def detectors(self):
        return min(self.channels, EMULATOR_DETECTORS)

    @property
    def margin(self):
        S = self.uis_per_symbol
        return S * -(-self.max_jitter // S)

    @property
    def span(self):
        return 3 * self.uis_per_bin + self.margin + self.max_jitter

    @property
    def extension(self):
        return self.span - self.uis_per_symbol

    @property
    def lane_bits(self):
        return 3 * self.prob_bits + 3 + 2 * self.max_jitter

    def lane_field(self, name):
        """``(offset, width)`` of a lane's random field within its ``lane_bits``."""
        P, J = self.prob_bits, self.max_jitter
        return {"r_click": (0, P), "r_basis": (P, P), "r_error": (2 * P, P),
                "r_slot": (3 * P, 2), "r_port": (3 * P + 2, 1),
                "r_jitter_a": (3 * P + 3, J), "r_jitter_b": (3 * P + 3 + J, J)}[name]

    @property
    def dark_bits(self):
        return self.prob_bits + POSITION_BITS

    @property
    def random_bits(self):
        return self.lanes * self.lane_bits + self.detectors * self.dark_bits

    @property
    def generators(self):
        return -(-self.random_bits // GENERATOR_BITS)

    @property
    def constants(self):
        return tuple(generator_constants(self.generators))

    @property
    def max_words(self):
        return self.max_delay // self.uis_per_word

    @property
    def memory_depth(self):
        if not self.max_words:
            return 0
        return 1 << bits_for(self.max_words)

    def word_split(self):
        """``(multiplier, shift)`` with ``d // W == (d * multiplier) >> shift`` for every
        ``d <= max_delay``: ``(1, log2 W)`` when W is a power of two, else the rounded-up
        reciprocal (T. Granlund, P. Montgomery, PLDI 1994: with ``shift = bits(max_delay) +
        ceil(log2 W)`` the rounding error times ``d`` stays below ``2**shift``)."""
        W = self.uis_per_word
        if W & (W - 1) == 0:
            return 1, W.bit_length() - 1
        shift = bits_for(self.max_delay) + (W - 1).bit_length()
        return -(-(1 << shift) // W), shift


class ChannelEmulator(wiring.Component):
    """Emulate the quantum channel and Bob's optics and detectors between Alice's serializer
    word and Bob's detector samples, one word a cycle.

    **Symbols.** Each lane of a word (``S`` UIs: the early bin ``0 .. k-1``, the late bin
    ``k .. 2k-1``) is one symbol period. A bin is *lit* when ``carver`` is 1 on one of its UIs;
    its position ``e0`` (early) or ``l0`` (late) is its first lit UI, and the IM and PM codes
    there are the bin's. Both bins lit is an X state; one, a Z state; none, no light. The
    symbol's IM code (the larger of the lit bins') gives its light *level*, the number of
    ``thresholds`` it reaches (0..3). The X state's phase is the PM code difference
    ``d = pm(l0) - pm(e0)`` modulo ``2**pm_bits``: the destructive port (X-) when ``d`` is in
    the half circle around pi (``(4 d) >> pm_bits`` is 1 or 2), else the constructive one
    (X+). A word with ``ser_valid`` low has no light. (Alice's fine delays should be
    multiples of ``S``: the emulator takes each lane's ``S`` UIs as one coherent symbol.)

    **Clicks.** A symbol with light clicks with probability ``p_click[level]`` (loss and
    detection together). The click goes to the Z detector (channel 0) with probability
    ``p_z``, at ``e0`` for a Z0 state, ``l0`` for Z1, and at either at random for an X state.
    Otherwise it leaves the interferometer (one bin delay): for an X state at the early side
    slot ``e0`` (probability 1/4, a random port), the late side slot ``l0 + k`` (1/4, a
    random port) or the middle slot ``e0 + k`` (1/2) at the port of the phase, the other
    one with probability ``p_x_error``; for a Z state in its bin or one bin later (1/2
    each) at a random port. Port + is channel 1, port - channel 2; a click for a channel the
    board does not have is counted in ``unseen``. Each detector also clicks in the dark with
    probability ``p_dark`` per word, at a uniform UI of the word. A photon click then moves
    by ``Binomial(2 J, 1/2) - J`` UIs (``J = jitter``: the difference of two popcounts of
    ``J`` random bits; standard deviation ``sqrt(J / 2)`` UIs).

    Probabilities are fractions of ``2**prob_bits``, compared with ``prob_bits`` random bits
    (an event happens when the draw is below the setting; ``2**prob_bits`` is certainty).
    The draws come from xoshiro128++ generators seeded from ``seed`` on ``reseed`` (and
    from ``seed``'s reset value at reset): every lane and detector has its own bits in every
    cycle, whatever happens (:class:`EmulatorGeometry` says where), so the samples depend
    on the inputs, the settings and the seed only.

    **Timing.** UI ``n`` of ``ser`` (counting from UI 0 of the word in cycle 0) reaches UI
    ``n + base_delay + delay`` of ``samples`` (plus the click's jitter), ``base_delay =
    latency * W + margin``: a Z detector click of the lane-0 early bin of the word in cycle
    ``c``, at zero delay and jitter, shows in cycle ``c + latency`` at UI ``margin`` (whole
    symbols). ``delay`` is a delay line of whole words in a memory (``max_delay // W`` of
    them) and a barrel shift of the rest.

    **Counting, never silent.** Two clicks in one UI of one detector are one sample: the
    other is counted in ``lost``. ``clicks`` counts the ones shown on ``samples``. Settings
    are read every cycle; an out-of-range value (a probability above ``2**prob_bits``,
    ``delay`` above ``max_delay``, ``jitter`` above ``max_jitter``, ``thresholds`` not
    non-decreasing, as a group) is refused: the last accepted value (the reset value after
    reset) stays in use and ``settings_error`` is high while the value is present. The
    delay acts one cycle after the value (its split into words and UIs is registered);
    changing it repeats or skips UIs of the click stream once.

    Parameters
    ----------
    lanes : int
        Symbols per word (L).
    uis_per_symbol : int
        UIs per symbol (S), even, 2..256.
    channels : int
        Bob's detector channels, 1..16; channels 0..2 are the Z, X+ and X- detectors, the
        others stay silent.
    dac_bits, pm_bits : int
        Bits of Alice's IM and PM codes, as :class:`~timebin.gateware.tx.driver.TimeBinDriver`.
    max_delay : int or None
        Largest ``delay``, UIs, ``0 .. 2**24 - 1``; default ``16 * L * S - 1``.
    max_jitter : int
        Largest ``jitter``, 0..7.
    prob_bits : int
        Precision of the probabilities, 16..24 bits.

    Members
    -------
    ser : In(SerializerWord(lanes, S, dac_bits, pm_bits))
        Alice's serializer word (the transmitter's ``ser``).
    ser_valid : In(1)
        The word holds Alice's output (else: no light).
    samples : Out(SampleWord(channels, L * S))
        Bob's detector samples, one bit per UI, registered.
    seed : In(64), init 0
    reseed : In(1)
        Load the generators from ``seed`` (the state of the next cycle).
    delay : In(bits_for(max_delay)), init 0
    jitter : In(bits_for(max_jitter)), init 0
    thresholds : In(ArrayLayout(dac_bits, 3))
    p_click : In(ArrayLayout(prob_bits + 1, 4))
    p_z, p_x_error, p_dark : In(prob_bits + 1)
        Resets: :func:`~timebin.gateware.regmap.emulator_resets`.
    symbols : Out(64)
        Symbol periods of words with ``ser_valid`` seen (``L`` a word), saturating.
    clicks, lost : Out(ArrayLayout(32, channels))
        Clicks emitted, and clicks lost to another in the same UI, per channel; saturating.
    unseen : Out(32)
        Clicks for an X channel the board does not have; saturating.
    settings_error : Out(1)
        A setting holds a refused value.
    """

    #: Cycles from a word on ``ser`` to its clicks on ``samples``, at zero delay (plus
    #: ``margin`` UIs).
    latency = 5

    @refuses_quietly
    def __init__(self, *, lanes, uis_per_symbol, channels=3, dac_bits=8, pm_bits=1,
                 max_delay=None, max_jitter=3, prob_bits=16):
        g = self.geometry = EmulatorGeometry.of(
            lanes=lanes, uis_per_symbol=uis_per_symbol, channels=channels, dac_bits=dac_bits,
            pm_bits=pm_bits, max_delay=max_delay, max_jitter=max_jitter, prob_bits=prob_bits)
        self.params = g.params
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.uis_per_word = g.uis_per_word
        self.channels = channels
        self.max_delay = g.max_delay
        self.max_jitter = max_jitter
        self.prob_bits = prob_bits
        #: UIs from ``ser`` to ``samples`` at zero delay and jitter.
        self.base_delay = self.latency * g.uis_per_word + g.margin
        reset = emulator_resets(dac_bits, prob_bits)
        P1 = prob_bits + 1
        super().__init__({
            "ser": In(SerializerWord(lanes, uis_per_symbol, dac_bits, pm_bits)),
            "ser_valid": In(1),
            "samples": Out(SampleWord(channels, g.uis_per_word)),
            "seed": In(64, init=reset["seed"]),
            "reseed": In(1),
            "delay": In(unsigned(bits_for(g.max_delay)), init=reset["delay"]),
            "jitter": In(unsigned(bits_for(max_jitter)), init=reset["jitter"]),
            "thresholds": In(data.ArrayLayout(dac_bits, EMULATOR_LEVELS - 1),
                             init=reset["thresholds"]),
            "p_click": In(data.ArrayLayout(P1, EMULATOR_LEVELS), init=reset["p_click"]),
            "p_z": In(P1, init=reset["p_z"]),
            "p_x_error": In(P1, init=reset["p_x_error"]),
            "p_dark": In(P1, init=reset["p_dark"]),
            "symbols": Out(64),
            "clicks": Out(data.ArrayLayout(32, channels)),
            "lost": Out(data.ArrayLayout(32, channels)),
            "unseen": Out(32),
            "settings_error": Out(1),
        })
        self._reset = reset

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        L, S, k, W, D, P = (g.lanes, g.uis_per_symbol, g.uis_per_bin, g.uis_per_word,
                            g.detectors, g.prob_bits)
        J, E, R = g.max_jitter, g.extension, g.span
        one = 1 << P
        reset = self._reset

        # --- Settings: refused values never take effect. ---
        errors = []
        th = self.thresholds
        th_ok = (th[0] <= th[1]) & (th[1] <= th[2])
        th_flat = sum(v << (i * g.dac_bits) for i, v in enumerate(reset["thresholds"]))
        thresholds_v = accepted_setting(m, "thresholds", th.as_value(), th_ok, th_flat)
        thresholds = [thresholds_v[i * g.dac_bits:(i + 1) * g.dac_bits]
                      for i in range(EMULATOR_LEVELS - 1)]
        errors.append(~th_ok)

        def checked(name, value, limit, init):
            ok = value <= limit
            errors.append(~ok)
            return accepted_setting(m, name, value, ok, init)

        p_click = Array(checked(f"p_click{i}", self.p_click[i], one, reset["p_click"][i])
                        for i in range(EMULATOR_LEVELS))
        p_z = checked("p_z", self.p_z, one, reset["p_z"])
        p_x_error = checked("p_x_error", self.p_x_error, one, reset["p_x_error"])
        p_dark = checked("p_dark", self.p_dark, one, reset["p_dark"])
        delay = checked("delay", self.delay, g.max_delay, reset["delay"])
        jitter = checked("jitter", self.jitter, J, reset["jitter"])
        m.d.comb += self.settings_error.eq(Cat(errors).any())

        # --- Generators: xoshiro128++, one output each per cycle. ---
        outputs = []
        seed_words = (self.seed[:32], self.seed[32:], ~self.seed[:32], ~self.seed[32:])
        for n, constants in enumerate(g.constants):
            init = seeded_state(constants, reset["seed"])
            s = [Signal(32, init=init[i], name=f"gen{n}_s{i}") for i in range(4)]
            out = Signal(32, name=f"gen{n}_out")
            m.d.comb += out.eq((s[0] + s[3])[:32].rotate_left(7) + s[0])
            outputs.append(out)
            t = (s[1] << 9)[:32]
            s2 = s[2] ^ s[0]
            s3 = s[3] ^ s[1]
            s1 = s[1] ^ s2
            s0 = s[0] ^ s3
            nxt = (s0, s1, s2 ^ t, s3.rotate_left(11))
            with m.If(self.reseed):
                m.d.sync += [s[i].eq(Const(constants[i], 32) ^ seed_words[i]) for i in range(4)]
            with m.Else():
                m.d.sync += [s[i].eq(nxt[i]) for i in range(4)]
        # Registered: the draws of cycle t are the generators' outputs of cycle t - 1.
        random = Signal(g.generators * 32)
        m.d.sync += random.eq(Cat(outputs))

        # --- Stage 1: each lane's symbol, from the word on ``ser``. ---
        ser = self.ser
        pos_bits = bits_for(k - 1)
        lane_layout = data.StructLayout({"lit_e": 1, "lit_l": 1, "e0": pos_bits,
                                         "l0": pos_bits, "level": 2, "minus": 1})
        lanes = Signal(data.ArrayLayout(lane_layout, L))
        in_valid = Signal()
        m.d.sync += in_valid.eq(self.ser_valid)

        def first_lit(lo):
            lit = Cat(ser.carver[lo + u] for u in range(k)).any()
            pos, code, phase = Const(0, pos_bits), Const(0, g.dac_bits), Const(0, g.pm_bits)
            for u in reversed(range(k)):
                c = ser.carver[lo + u]
                pos = Mux(c, u, pos)
                code = Mux(c, ser.im[lo + u], code)
                phase = Mux(c, ser.pm[lo + u], phase)
            return lit, pos, code, phase

        for lane in range(L):
            lit_e, e0, code_e, phase_e = first_lit(lane * S)
            lit_l, l0, code_l, phase_l = first_lit(lane * S + k)
            code = Signal(g.dac_bits, name=f"code{lane}")
            m.d.comb += code.eq(Mux(lit_e & lit_l, Mux(code_e > code_l, code_e, code_l),
                                    Mux(lit_e, code_e, code_l)))
            phase = Signal(g.pm_bits, name=f"phase{lane}")
            m.d.comb += phase.eq(phase_l - phase_e)
            quadrant = (phase << 2) >> g.pm_bits
            reg = lanes[lane]
            m.d.sync += [
                reg.lit_e.eq(lit_e & self.ser_valid),
                reg.lit_l.eq(lit_l & self.ser_valid),
                reg.e0.eq(e0),
                reg.l0.eq(l0),
                reg.level.eq((code >= thresholds[0]) + (code >= thresholds[1])
                             + (code >= thresholds[2])),
                reg.minus.eq((quadrant == 1) | (quadrant == 2)),
            ]

        # --- Stage 2: each lane's click drawn: its detector and place, registered. ---
        jitter_mask = Cat(jitter > b for b in range(J)) if J else Const(0, 1)
        drawn_layout = data.StructLayout({"sel": D, "unseen": 1, "rel": bits_for(R - 1)})
        drawn = Signal(data.ArrayLayout(drawn_layout, L))
        for lane in range(L):
            reg = lanes[lane]
            base = lane * g.lane_bits

            def field(name, base=base):
                offset, width = g.lane_field(name)
                return random[base + offset:base + offset + width]

            r_slot = field("r_slot")
            lit = reg.lit_e | reg.lit_l
            both = reg.lit_e & reg.lit_l
            e0 = reg.e0
            l0 = reg.l0 + k
            first = Mux(reg.lit_e, e0, l0)
            click = Signal(name=f"click{lane}")
            m.d.comb += click.eq(lit & (field("r_click") < p_click[reg.level]))
            to_z = field("r_basis") < p_z
            z_off = Mux(both, Mux(r_slot[0], l0, e0), first)
            middle = (r_slot == 1) | (r_slot == 2)
            xs_off = Mux(r_slot == 0, e0, Mux(r_slot == 3, l0 + k, e0 + k))
            xs_port = Mux(middle, reg.minus ^ (field("r_error") < p_x_error), field("r_port"))
            xz_off = first + Mux(r_slot[0], k, 0)
            offset = Signal(range(3 * k), name=f"offset{lane}")
            port = Signal(name=f"port{lane}")
            m.d.comb += [
                offset.eq(Mux(to_z, z_off, Mux(both, xs_off, xz_off))),
                port.eq(Mux(both, xs_port, field("r_port"))),
            ]
            detector = Signal(2, name=f"detector{lane}")
            m.d.comb += detector.eq(Mux(to_z, 0, 1 + port))
            if J:
                late = sum((field("r_jitter_a") & jitter_mask)[b] for b in range(J))
                early = sum((field("r_jitter_b") & jitter_mask)[b] for b in range(J))
            else:
                late = early = 0
            out = drawn[lane]
            m.d.sync += [
                out.sel.eq(Cat(click & (detector == d) for d in range(D))),
                out.unseen.eq(click & (detector >= D)),
                out.rel.eq(offset + g.margin + late - early),
            ]
        darks = Signal(D)
        positions = Signal(data.ArrayLayout(bits_for(W - 1), D))
        dark_base = L * g.lane_bits
        for d in range(D):
            base = dark_base + d * g.dark_bits
            r_pos = random[base + P:base + P + POSITION_BITS]
            m.d.sync += [darks[d].eq(random[base:base + P] < p_dark),
                         positions[d].eq((r_pos * W) >> POSITION_BITS)]
        _add_saturating(m, self.symbols, Mux(in_valid, L, 0))

        # --- Stage 3: the clicks placed, on top of the earlier words' clicks reaching on. ---
        spread = [[[] for _ in range(W + E)] for _ in range(D)]
        placed = [[] for _ in range(D)]
        for lane in range(L):
            hits = [drawn[lane].rel == q for q in range(R)]
            for d in range(D):
                sel = drawn[lane].sel[d]
                placed[d].append(sel)
                for q in range(R):
                    spread[d][lane * S + q].append(sel & hits[q])
        for d in range(D):
            placed[d].append(darks[d])
            for w in range(W):
                spread[d][w].append(darks[d] & (positions[d] == w))

        words = Signal(D * W)                           # the placed words, detector d at d * W
        lost_counts = []
        for d in range(D):
            carry = Signal(max(E, 1), name=f"carry{d}")
            total = Signal(W + E, name=f"total{d}")
            m.d.comb += total.eq(Cat(Cat(*terms).any() if terms else Const(0, 1)
                                     for terms in spread[d]) | carry[:E])
            m.d.sync += words[d * W:(d + 1) * W].eq(total[:W])
            if E:
                m.d.sync += carry.eq(total[W:])
            lost = Signal(bits_for(L + 1 + E), name=f"lost{d}")
            m.d.sync += lost.eq(sum(placed[d]) + sum(carry[i] for i in range(E))
                                - sum(total[i] for i in range(W + E)))
            lost_counts.append(lost)
        unseen = Signal(bits_for(L))
        m.d.sync += unseen.eq(sum(drawn[lane].unseen for lane in range(L)))
        for d in range(D):
            _add_saturating(m, self.lost[d], lost_counts[d])
        _add_saturating(m, self.unseen, unseen)

        # --- Stage 4: the delay, whole words in a memory, then UIs by a barrel shift. ---
        multiplier, shift = g.word_split()
        whole = Signal(range(g.max_words + 1))
        part = Signal(range(W))
        m.d.sync += [whole.eq((delay * multiplier) >> shift),
                     part.eq(delay - ((delay * multiplier) >> shift) * W)]
        late_words = Signal(D * W)
        if g.memory_depth:
            memory = m.submodules.delay_memory = Memory(shape=D * W, depth=g.memory_depth,
                                                        init=[])
            write, read = memory.write_port(), memory.read_port()
            address = Signal(range(g.memory_depth))
            written = Signal(range(g.memory_depth + 1))
            read_ok = Signal()
            bypass = Signal(D * W)
            zero_delay = Signal()
            m.d.comb += [write.addr.eq(address), write.data.eq(words), write.en.eq(1),
                         read.addr.eq(address - whole)]
            m.d.sync += [address.eq(address + 1),
                         written.eq(Mux(written == g.memory_depth, written, written + 1)),
                         read_ok.eq(written >= whole), bypass.eq(words),
                         zero_delay.eq(whole == 0)]
            m.d.comb += late_words.eq(Mux(zero_delay, bypass, Mux(read_ok, read.data, 0)))
        else:
            m.d.sync += late_words.eq(words)
        previous = Signal(D * W)
        start = Signal(range(W + 1))
        m.d.sync += previous.eq(late_words)
        m.d.comb += start.eq(W - part)
        for d in range(D):
            window = Cat(previous[d * W:(d + 1) * W], late_words[d * W:(d + 1) * W])
            out = window.bit_select(start, W)
            m.d.sync += self.samples[d].eq(out)
            _add_saturating(m, self.clicks[d], sum(self.samples[d][u] for u in range(W)))
        return m


def _add_saturating(m, counter, amount):
    """``counter`` adds ``amount`` every cycle and sticks at its maximum instead of wrapping."""
    top = (1 << len(counter)) - 1
    total = counter + amount
    m.d.sync += counter.eq(Mux(total > top, top, total))
