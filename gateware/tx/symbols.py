"""Alice's symbol source: basis, bit and intensity class for L symbols per cycle.

# Ref: A. Boaron et al., "Secure quantum key distribution over 421 km of optical fiber",
# PRL 121, 190502 (2018): 3-state time-bin protocol (Z0, Z1, X+) with one decoy, Z basis
# chosen with probability p_Z. Ref: C. C. W. Lim et al., PRA 89, 022307 (2014): 4-state
# BB84 with decoys.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import (
    check_int,
    count_saturating,
    refuses_quietly,
    registered_refusals,
    replicated_setting,
)
from ..formulas import probability_settings
from ..records import MAX_INTENSITY_CLASSES, PRBS_POLYNOMIALS, entropy_bits_per_lane
from .layouts import Basis, EntropyWord, SymbolWord

__all__ = ["Protocol", "TrainingMode", "SymbolSource", "probability_settings"]


def _xor_of(value, mask):
    """The XOR of the bits of ``value`` set in ``mask`` (0 for an empty mask)."""
    terms = [value[j] for j in range(len(value)) if mask >> j & 1]
    return Cat(terms).xor() if terms else Const(0, 1)


class Protocol(enum.Enum, shape=1):
    """Which states the X basis uses."""

    THREE_STATE = 0  #: Z0, Z1, X+ (Boaron et al. 2018)
    FOUR_STATE = 1   #: Z0, Z1, X+, X-


class TrainingMode(enum.Enum, shape=3):
    """Random data, or a fixed pattern of Z-basis symbols for alignment in the lab."""

    DATA = 0
    ALL_EARLY = 1
    ALL_LATE = 2
    ALTERNATING = 3
    PRBS7 = 4
    PRBS31 = 5


class SymbolSource(wiring.Component):
    """Draws one symbol per lane per cycle from ``entropy`` (or a training pattern).

    Lane ``i`` uses entropy bits ``[i*B, (i+1)*B)``, ``B = 2*prob_bits + 1``: the low
    ``prob_bits`` draw the basis (Z when below ``p_z``), the next bit is the bit value, the
    high ``prob_bits`` draw the intensity class against the cumulative ``thresholds``. In
    3-state mode the X basis sends only X+ (bit 0).

    While ``enable`` is high a symbol word leaves every cycle: the entropy (and ``enable``,
    ``blank``, ``protocol``, ``training``, ``training_intensity``) of cycle ``c`` make the
    symbol word of cycle ``c + 4`` (four register stages: the inputs twice, the draws, then
    the word); the global ``index`` advances by ``lanes`` per word. A
    data-mode cycle whose entropy is missing, or unhealthy, yields dark symbols that are not
    valid for key, and is counted
    (``underflow``; ``blanked`` counts the cycles darkened by unhealthy entropy or
    ``blank``); a cycle ``c`` shows in the counters from cycle ``c + 2`` (its condition is
    registered before the count). Training modes consume no entropy; their symbols are lit
    Z-basis symbols of class ``training_intensity``, never valid for key.

    ``blank`` (the QRNG health alarm) makes every lane a dark symbol with all other fields 0,
    in every mode; data-mode entropy is still consumed, so the health tests keep running.

    Settings out of range (``p_z`` above one, thresholds not non-decreasing or above one) are
    refused: the last accepted value stays in use and ``settings_error`` is high from the
    cycle after each cycle where a refused value is present (its checks end at registers;
    low in the first cycle after reset). An accepted ``p_z`` or ``thresholds`` acts on the
    entropy taken from the cycle after it appears on the port: it is registered with its
    check, accepted, then copied to groups of lanes and to each lane (four cycles), and the
    draws of the entropy of cycle ``c`` compare in cycle ``c + 2`` (the reset values act on
    the entropy of the first two cycles after reset).

    Members
    -------
    entropy : In(stream.Signature(EntropyWord(lanes * B)))
    symbols : Out(stream.Signature(SymbolWord(lanes), always_ready=True))
    """

    #: Cycles from ``entropy`` (and ``enable``) to ``symbols``.
    latency = 4

    @refuses_quietly
    def __init__(self, *, lanes, prob_bits=12, p_z=0.9, intensity_probs=(0.7, 0.3)):
        check_int("Lane count", lanes, minimum=1)
        check_int("Probability precision", prob_bits, minimum=1, maximum=24)
        self._lanes = lanes
        self._prob_bits = prob_bits
        self._bits_per_lane = entropy_bits_per_lane(prob_bits)
        p_z_code, thresholds = probability_settings(prob_bits, p_z, intensity_probs)
        one = 1 << prob_bits
        setting = prob_bits + 1  # wide enough to hold "one" and to be refused above it
        super().__init__({
            "entropy": In(stream.Signature(EntropyWord(lanes * self._bits_per_lane))),
            "symbols": Out(stream.Signature(SymbolWord(lanes), always_ready=True)),
            "enable": In(1),
            "blank": In(1),
            "protocol": In(Protocol),
            "p_z": In(setting, init=p_z_code),
            "thresholds": In(data.ArrayLayout(setting, MAX_INTENSITY_CLASSES - 1),
                             init=thresholds),
            "training": In(TrainingMode),
            "training_intensity": In(2),
            "settings_error": Out(1),
            "underflow": Out(32),
            "blanked": Out(32),
        })
        self._one = one
        self._init = {"p_z": p_z_code, "thresholds": thresholds}

    @property
    def lanes(self):
        return self._lanes

    @property
    def entropy_width(self):
        return self._lanes * self._bits_per_lane

    def elaborate(self, platform):
        m = Module()
        L, p, B, one = self._lanes, self._prob_bits, self._bits_per_lane, self._one

        # Settings: the port value when valid, otherwise the last accepted one, registered
        # and copied per lane (replicated_setting): the compares of a cycle use the port
        # values of four cycles before (the reset values in the first four cycles), so
        # that the 3 * L threshold compares start at flip-flops, not behind the checks.
        # Each compare of the checks ends at a register of its own (for the acceptance and
        # for `settings_error`, which is thus high from the cycle after): the three
        # threshold compares and their AND in one cycle took 6.7-6.9 ns on the ULX3S.
        p_z_ok = [self.p_z <= one]
        th = self.thresholds
        th_ok = [th[0] <= th[1], th[1] <= th[2], th[2] <= one]
        th_layout = self.thresholds.shape()
        m.d.comb += self.settings_error.eq(
            registered_refusals(m, "settings", [~check for check in p_z_ok + th_ok]))
        # One copy of the registers per lane: each lane's 4 compares sit next to their copy.
        p_z_lanes = replicated_setting(m, "p_z", self.p_z, p_z_ok, self._init["p_z"], L)
        th_lanes = [
            data.View(th_layout, copy) for copy in replicated_setting(
                m, "thresholds", self.thresholds.as_value(), th_ok,
                th_layout.const(self._init["thresholds"]).as_value().value, L)]

        # Stage 0: the cycle's inputs, registered twice. The entropy word is the output of
        # the source multiplexer (keystream or QRNG, its select on a global network) and
        # travels from the cipher cores to lanes spread along the output pins: two
        # registers let the placer break that route, so that the draws' compares start at
        # a flip-flop near the lane. The entropy is taken (`ready`) and counted in the
        # cycle it is offered.
        entropy = self.entropy.payload
        taking = self.training == TrainingMode.DATA
        m.d.comb += self.entropy.ready.eq(self.enable & taking)
        inputs = data.StructLayout({
            "enable": 1, "mode": TrainingMode, "good": 1, "blank": 1, "protocol": Protocol,
            "intensity": 2})
        s0_in = Signal(inputs)
        m.d.sync += s0_in.eq(Cat(self.enable, self.training,
                                 self.entropy.valid & entropy.healthy, self.blank,
                                 self.protocol, self.training_intensity))
        s0 = Signal(inputs)
        m.d.sync += s0.eq(s0_in)
        # No reset for the entropy registers (their words count only where `good`): a reset
        # would be merged with the source select into one LUT driving all 400 of them.
        entropy_in = Signal(len(entropy.bits), reset_less=True)
        entropy_r = Signal(len(entropy.bits), reset_less=True)
        m.d.sync += [entropy_in.eq(entropy.bits), entropy_r.eq(entropy_in)]

        mode = s0.mode
        data_mode = mode == TrainingMode.DATA
        index = Signal(len(self.symbols.payload.index))

        # Training patterns: PRBS generators advance `lanes` steps per word while selected.
        # They run one cycle ahead (on the first input register, `s0_in`), and each lane
        # registers its bits (`<prbs>_lane<i>`): stage 1 then reads the bits of the word it
        # draws from a flip-flop of the lane instead of through the XOR network from one
        # state register far away.
        prbs_bits = {}
        for name, mode_value in (("prbs7", TrainingMode.PRBS7), ("prbs31", TrainingMode.PRBS31)):
            degree, tap = PRBS_POLYNOMIALS[name]
            state = Signal(degree, init=(1 << degree) - 1, name=f"{name}_state")
            # Each bit of the word, and each bit of the next state, is the XOR of a set of
            # bits of the current state (the recurrence is linear over GF(2)): the sets are
            # worked out here as bit masks, so that every bit is one flat XOR of at most
            # `degree` state bits, not a chain of XORs through the earlier lanes' bits.
            masks = [1 << j for j in range(degree)]        # register bit j, as state bits
            bits = []
            for lane in range(L):
                mask = masks[degree - 1] ^ masks[tap - 1]
                b = Signal(name=f"{name}_bit{lane}")
                m.d.comb += b.eq(_xor_of(state, mask))
                bits.append(b)
                masks = [mask] + masks[:degree - 1]
            s = Cat(_xor_of(state, mask) for mask in masks)
            lane_bits = [Signal(name=f"{name}_lane{lane}") for lane in range(L)]
            m.d.sync += [r.eq(b) for r, b in zip(lane_bits, bits, strict=True)]
            prbs_bits[mode_value] = lane_bits
            with m.If(s0_in.enable & (s0_in.mode == mode_value)):
                m.d.sync += state.eq(s)

        # Stage 1 (every cycle): each lane's draws from the registered entropy (or its
        # training bit), and the cycle's controls, registered. The compares start at the
        # registered settings and entropy and end at a flip-flop.
        # The draws register the compares themselves: the sum of the intensity compares (a
        # thermometer code, as the accepted thresholds are non-decreasing) and the 3-state
        # rule on the bit are taken in stage 2, so that the carry chains end at flip-flops.
        draws = Signal(data.ArrayLayout(data.StructLayout({
            "is_x": 1, "bit": 1, "above": MAX_INTENSITY_CLASSES - 1, "train_bit": 1}), L))
        controls = data.StructLayout({
            "enable": 1, "data_mode": 1, "healthy": 1, "blank": 1, "three_state": 1,
            "intensity": 2, "index": len(index)})
        s1_value = Cat(s0.enable, data_mode, s0.good, s0.blank,
                       s0.protocol == Protocol.THREE_STATE, s0.intensity, index)
        s1 = Signal(controls)
        m.d.sync += s1.eq(s1_value)
        # One copy of the lane controls per lane (the `_replica` names keep the board build
        # from merging them): each lane's stage 2 waits on a register of its own.
        lane_s1 = [Signal(controls, name=f"s1_replica{i}") for i in range(L)]
        for copy in lane_s1:
            m.d.sync += copy.eq(s1_value)
        for i in range(L):
            chunk = entropy_r[i * B:(i + 1) * B]
            r_basis, r_bit, r_int = chunk[:p], chunk[p], chunk[p + 1:]
            train_bit = Signal(name=f"train_bit{i}")
            with m.Switch(mode):
                with m.Case(TrainingMode.ALL_LATE):
                    m.d.comb += train_bit.eq(1)
                with m.Case(TrainingMode.ALTERNATING):
                    m.d.comb += train_bit.eq(index[0] ^ (i & 1))
                for mode_value, bits in prbs_bits.items():
                    with m.Case(mode_value):
                        m.d.comb += train_bit.eq(bits[i])
            m.d.sync += [
                draws[i].is_x.eq(r_basis >= p_z_lanes[i]),
                draws[i].bit.eq(r_bit),
                draws[i].above.eq(Cat(r_int >= th_lanes[i][k]
                                      for k in range(MAX_INTENSITY_CLASSES - 1))),
                draws[i].train_bit.eq(train_bit),
            ]
        with m.If(s0.enable):
            m.d.sync += index.eq(index + L)

        # Stage 2: the symbol word of the cycle before, from registers only.
        word = Signal.like(self.symbols.payload)
        for i in range(L):
            out, d, c = word.symbols[i], draws[i], lane_s1[i]
            with m.If(c.data_mode):
                with m.If(c.healthy):
                    m.d.comb += [
                        out.basis.eq(Mux(d.is_x, Basis.X, Basis.Z)),
                        out.bit.eq(Mux(d.is_x & c.three_state, 0, d.bit)),
                        out.intensity.eq(sum(d.above[k]
                                             for k in range(MAX_INTENSITY_CLASSES - 1))),
                        out.valid.eq(1),
                    ]
                with m.Else():
                    m.d.comb += out.dark.eq(1)
            with m.Else():
                m.d.comb += [out.basis.eq(Basis.Z), out.bit.eq(d.train_bit),
                             out.intensity.eq(c.intensity)]
            with m.If(c.blank):
                m.d.comb += [out.as_value().eq(0), out.dark.eq(1)]
        m.d.comb += word.index.eq(s1.index)

        m.d.sync += self.symbols.valid.eq(s1.enable)
        with m.If(s1.enable):
            m.d.sync += self.symbols.payload.eq(word)
        # The counters' conditions are registered first: the entropy's `valid` comes from the
        # cipher cores and `enable` from a port register, and neither then waits in front of
        # the enables of 64 counter flip-flops. The counts thus include a cycle two cycles
        # after it.
        under = Signal()
        darkened = Signal()
        m.d.sync += [
            under.eq(self.enable & taking & ~self.entropy.valid),
            darkened.eq(self.enable & (
                self.blank | (taking & self.entropy.valid & ~entropy.healthy))),
        ]
        count_saturating(m, self.underflow, under)
        count_saturating(m, self.blanked, darkened)
        return m
