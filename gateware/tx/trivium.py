"""Trivium keystream generator: a seeded, reproducible entropy source for Alice.

# Ref: C. De Cannière, B. Preneel, "Trivium specifications", eSTREAM (2005), section 2
# (key stream generation) and 2.2 (key and IV setup: 4 * 288 = 1152 warm-up rounds).

Key and IV bit order follow the eSTREAM reference implementation and its published test
vectors: for the 10-byte key ``k`` as printed in the vector files, the ``key`` port holds
``int.from_bytes(k, "little")`` and state bit s_i = ``key[80 - i]`` (i = 1..80); likewise the
IV. Keystream bit z_1 is bit 0 of ``keystream`` in the first word, i.e. the LSB of the first
keystream byte of the vector files.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Trivium", "WARMUP_ROUNDS"]

#: Rounds the cipher runs after loading key and IV before any output (spec section 2.2).
WARMUP_ROUNDS = 4 * 288


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
    (``1152 / width`` cycles); afterwards ``keystream`` offers ``width`` bits per transfer.

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
    """

    def __init__(self, width=64):
        _check_width(width)
        self._width = width
        super().__init__({
            "key": In(80),
            "iv": In(80),
            "load": In(1),
            "keystream": Out(stream.Signature(width)),
        })

    @property
    def width(self):
        return self._width

    def elaborate(self, platform):
        m = Module()
        w = self._width
        state = Signal(288)  # state[i - 1] holds s_i
        warmup = Signal(range(WARMUP_ROUNDS // w + 1))
        loaded = Signal()

        s = [None] + [state[i] for i in range(288)]  # 1-indexed view
        zs = []
        for _ in range(w):
            t1 = s[66] ^ s[93]
            t2 = s[162] ^ s[177]
            t3 = s[243] ^ s[288]
            zs.append(t1 ^ t2 ^ t3)
            t1 = t1 ^ (s[91] & s[92]) ^ s[171]
            t2 = t2 ^ (s[175] & s[176]) ^ s[264]
            t3 = t3 ^ (s[286] & s[287]) ^ s[69]
            s = [None, t3] + s[1:93] + [t1] + s[94:177] + [t2] + s[178:288]
        next_state = Cat(*s[1:])

        key_bits = [self.key[80 - i] for i in range(1, 81)]
        iv_bits = [self.iv[80 - i] for i in range(1, 81)]
        initial = Cat(*key_bits, Const(0, 13), *iv_bits, Const(0, 4), Const(0, 108),
                      Const(0b111, 3))

        m.d.comb += [
            self.keystream.payload.eq(Cat(*zs)),
            self.keystream.valid.eq(loaded & (warmup == 0)),
        ]
        with m.If(self.load):
            m.d.sync += [
                state.eq(initial),
                warmup.eq(WARMUP_ROUNDS // w),
                loaded.eq(1),
            ]
        with m.Elif(loaded & (warmup != 0)):
            m.d.sync += [state.eq(next_state), warmup.eq(warmup - 1)]
        with m.Elif(self.keystream.valid & self.keystream.ready):
            m.d.sync += state.eq(next_state)
        return m
