"""Trivium keystream generator: a seeded, reproducible entropy source for Alice.

# Ref: C. De Cannière, B. Preneel, "Trivium specifications", eSTREAM (2005), section 2
# (key stream generation) and 2.2 (key and IV setup: 4 * 288 = 1152 warm-up rounds).

Key and IV bit order follow the eSTREAM reference implementation and its published test
vectors: for the 10-byte key ``k`` as printed in the vector files, the ``key`` port holds
``int.from_bytes(k, "little")`` and state bit s_i = ``key[80 - i]`` (i = 1..80); likewise the
IV. Keystream bit z_1 is bit 0 of ``keystream`` in the first word, i.e. the LSB of the first
keystream byte of the vector files.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import refuses_quietly

__all__ = ["Trivium", "WARMUP_ROUNDS", "warmup_cycles"]

#: Rounds the cipher runs after loading key and IV before any output (spec section 2.2).
WARMUP_ROUNDS = 4 * 288


def warmup_cycles(width):
    """Cycles from a ``load`` to the first valid keystream word of a :class:`Trivium` of
    ``width`` rounds per cycle: the ``1152 / width`` warm-up steps, and one more, as the
    keystream word register follows the state one step behind."""
    _check_width(width)
    return WARMUP_ROUNDS // width + 1


def _check_width(width):
    if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
        raise TypeError(f"Keystream width must be a positive integer, not {width!r}")
    # Taps sit at least 66 positions from the register inputs, so up to 66 rounds per cycle
    # use only current-state bits; 64 is the largest power of two among them.
    if width > 64 or WARMUP_ROUNDS % width:
        raise ValueError(f"Keystream width must divide 1152 and be at most 64, not {width}")


class Trivium(wiring.Component):
    """Trivium stream cipher producing ``width`` keystream bits per cycle.

    A pulse on ``load`` takes ``key`` and ``iv`` and runs the 1152 warm-up rounds
    (``1152 / width`` cycles) and one more step; afterwards ``keystream`` offers ``width``
    bits per transfer. ``keystream.valid`` rises :func:`warmup_cycles` cycles after the
    ``load`` cycle.

    Parameters
    ----------
    width : int
        Rounds per cycle, a divisor of 1152 no larger than 64.

    Members
    -------
    key : In(80)
    iv : In(80)
    load : In(1)
        Load key and IV and restart the warm-up; ``keystream`` is not valid until it ends.
    keystream : Out(stream.Signature(width))
        Bit ``i`` of a payload is keystream bit ``z_{n+i}``.

    With ``external_advance``, the core takes its clock enable from outside (for cores in
    lockstep that share one enable on a global network): more ports, ``warming`` (out:
    a warm-up round is due) and ``advance`` (in), which must be
    ``load | warming | (keystream.valid & keystream.ready)``; the state and the word then
    change only when ``advance`` is high. Same behaviour, cycle by cycle, as the core that
    computes it itself. ``warming_next`` and ``valid_next`` (out) are the values that
    ``warming`` and ``keystream.valid`` take in the next cycle, from this cycle's ``load``
    and state: with them the user can compute ``advance`` a cycle ahead, into a register.
    """

    @refuses_quietly
    def __init__(self, width=64, *, external_advance=False):
        _check_width(width)
        self._width = width
        self._external = bool(external_advance)
        members = {
            "key": In(80),
            "iv": In(80),
            "load": In(1),
            "keystream": Out(stream.Signature(width)),
        }
        if self._external:
            members.update({"warming": Out(1), "warming_next": Out(1), "valid_next": Out(1),
                            "advance": In(1)})
        super().__init__(members)

    @property
    def width(self):
        return self._width

    def elaborate(self, platform):
        m = Module()
        w = self._width
        # The state is stored in reverse, state[288 - i] = s_i, so that the w rounds of a
        # cycle become word-wide operations on contiguous slices. Within one cycle every tap
        # (s_66 and beyond in each register, spec section 2.1) still holds a bit of the
        # current state, since w <= 64: in round r, s_k reads the current s_(k - r), which is
        # bit r of the slice taps(k) below.
        # No reset of their own for the state and the word: they mean nothing until a load
        # writes them all (`loaded` and `warmup` say when), and a reset would be ORed with
        # `load` in front of every one of these flip-flops.
        state = Signal(288, reset_less=True)
        warmup = Signal(range(warmup_cycles(w) + 1))
        loaded = Signal()

        def taps_of(x, k):
            return x[288 - k:288 - k + w]

        def taps(k):
            return taps_of(state, k)

        def keystream_of(x):
            return (taps_of(x, 66) ^ taps_of(x, 93) ^ taps_of(x, 162) ^ taps_of(x, 177)
                    ^ taps_of(x, 243) ^ taps_of(x, 288))

        t1 = taps(66) ^ taps(93) ^ (taps(91) & taps(92)) ^ taps(171)
        t2 = taps(162) ^ taps(177) ^ (taps(175) & taps(176)) ^ taps(264)
        t3 = taps(243) ^ taps(288) ^ (taps(286) & taps(287)) ^ taps(69)
        # Each register shifts by w; round r's new bit lands at the w - 1 - r-th place from
        # the register's start, i.e. the new bits fill the top of its reversed slice in order.
        next_state = Signal(288)
        m.d.comb += next_state.eq(Cat(state[w:111], t2,        # s_178 .. s_288 (t2 at s_178)
                                      state[111 + w:195], t1,  # s_94 .. s_177 (t1 at s_94)
                                      state[195 + w:288], t3))  # s_1 .. s_93 (t3 at s_1)

        # Key into s_1 .. s_80, IV into s_94 .. s_173, ones into s_286 .. s_288; with the
        # port bit order (s_i = key[80 - i]) both land as contiguous slices.
        initial = Cat(Const(0b111, 3), Const(0, 112), self.iv, Const(0, 13), self.key)

        # Timing: the keystream word and its valid are registers of their own, so the
        # consumers' logic starts at a flip-flop instead of behind six XORs and a counter
        # compare. The word is the output function of the current state, written when the
        # state steps: it follows the state one step behind (word k while the state is
        # S_(k+1)), hence one more warm-up step, and only two LUT levels in front of it.
        z = Signal(w, reset_less=True)
        valid = Signal()
        m.d.comb += [
            self.keystream.payload.eq(z),
            self.keystream.valid.eq(valid),
        ]
        warming = loaded & (warmup != 0)
        with m.If(self.load):
            m.d.sync += [warmup.eq(warmup_cycles(w)), loaded.eq(1), valid.eq(0)]
        with m.Elif(warming):
            m.d.sync += [warmup.eq(warmup - 1), valid.eq(warmup == 1)]
        if self._external:
            # The next values, as the registers above take them.
            m.d.comb += [
                self.warming.eq(warming),
                self.warming_next.eq(self.load | (warming & (warmup != 1))),
                self.valid_next.eq(~self.load & Mux(warming, warmup == 1, valid)),
            ]
            advance = self.advance
        else:
            advance = self.load | warming | (valid & self.keystream.ready)
        # The 288 + w flip-flops of the state and the word see `advance` as their enable and
        # `load` as a select; the state bits a load sets to constants (s_94..s_93 apart from
        # key and IV) take `load` as their synchronous set/reset over the enable, so that
        # no gate sits between either control and the flip-flops. (`advance` includes
        # `load`: both forms load on `load` and step on `advance`.)
        data_bits = ((115, 195), (208, 288))            # IV, key (see `initial`)
        const_bits = ((0, 115), (195, 208))
        for lo, hi in const_bits:
            with m.If(self.load):
                m.d.sync += state[lo:hi].eq(initial[lo:hi])
            with m.Elif(advance):
                m.d.sync += state[lo:hi].eq(next_state[lo:hi])
        # The word a load writes is never valid (the warm-up rewrites it before `valid`
        # rises), so the word ignores `load`: it is the output function of the state alone,
        # with neither the load multiplexer nor the key and IV in front of it.
        with m.If(advance):
            m.d.sync += z.eq(keystream_of(state))
            with m.If(self.load):
                m.d.sync += [state[lo:hi].eq(initial[lo:hi]) for lo, hi in data_bits]
            with m.Else():
                m.d.sync += [state[lo:hi].eq(next_state[lo:hi]) for lo, hi in data_bits]
        return m
