"""Bit-exact reference model of :class:`timebin.gateware.tx.trivium.Trivium`.

# Ref: De Cannière & Preneel, "Trivium specifications", eSTREAM (2005), section 2.

The model runs 64 rounds at a time on 64-bit words, as the gateware does in one cycle: every
tap sits at least 66 positions from its register's input, so the 64 rounds of a step read
only current-state bits. Each register is held as a (hi, lo) pair of 64-bit words with bit
``p`` = register bit ``p + 1``; a tap's 64 successive values are then one shifted word with
round ``r`` at bit ``63 - r``.
"""

import numpy as np
from numba import njit

__all__ = ["trivium_keystream", "trivium_words", "key_from_bytes", "keystream_bytes"]

_M64 = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@njit(cache=True, inline="always")
def _window(hi, lo, sh):
    # Bits sh .. sh+63 of the 128-bit register (hi, lo); 2 <= sh <= 47.
    return (lo >> np.uint64(sh)) | (hi << np.uint64(64 - sh))


@njit(cache=True, inline="always")
def _reverse64(x):
    x = ((x >> np.uint64(1)) & np.uint64(0x5555555555555555)) | \
        ((x & np.uint64(0x5555555555555555)) << np.uint64(1))
    x = ((x >> np.uint64(2)) & np.uint64(0x3333333333333333)) | \
        ((x & np.uint64(0x3333333333333333)) << np.uint64(2))
    x = ((x >> np.uint64(4)) & np.uint64(0x0F0F0F0F0F0F0F0F)) | \
        ((x & np.uint64(0x0F0F0F0F0F0F0F0F)) << np.uint64(4))
    x = ((x >> np.uint64(8)) & np.uint64(0x00FF00FF00FF00FF)) | \
        ((x & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(8))
    x = ((x >> np.uint64(16)) & np.uint64(0x0000FFFF0000FFFF)) | \
        ((x & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(16))
    return (x >> np.uint64(32)) | (x << np.uint64(32))


@njit(cache=True)
def _run(state, out, skip):
    # state: uint64[6] = (a_hi, a_lo, b_hi, b_lo, c_hi, c_lo); runs `skip` 64-round steps
    # without output, then fills `out` with one word per step (bit i = round i).
    a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = state[0], state[1], state[2], state[3], state[4], \
        state[5]
    m29 = np.uint64((1 << 29) - 1)
    m20 = np.uint64((1 << 20) - 1)
    m47 = np.uint64((1 << 47) - 1)
    n = out.shape[0]
    for step in range(skip + n):
        t1 = _window(a_hi, a_lo, 2) ^ _window(a_hi, a_lo, 29)      # s66 + s93
        t2 = _window(b_hi, b_lo, 5) ^ _window(b_hi, b_lo, 20)      # s162 + s177
        t3 = _window(c_hi, c_lo, 2) ^ _window(c_hi, c_lo, 47)      # s243 + s288
        z = t1 ^ t2 ^ t3
        t1 = t1 ^ (_window(a_hi, a_lo, 27) & _window(a_hi, a_lo, 28)) ^ _window(b_hi, b_lo, 14)
        t2 = t2 ^ (_window(b_hi, b_lo, 18) & _window(b_hi, b_lo, 19)) ^ _window(c_hi, c_lo, 23)
        t3 = t3 ^ (_window(c_hi, c_lo, 45) & _window(c_hi, c_lo, 46)) ^ _window(a_hi, a_lo, 5)
        a_hi, a_lo = a_lo & m29, t3
        b_hi, b_lo = b_lo & m20, t1
        c_hi, c_lo = c_lo & m47, t2
        if step >= skip:
            out[step - skip] = _reverse64(z)
    state[0], state[1], state[2], state[3], state[4], state[5] = a_hi, a_lo, b_hi, b_lo, c_hi, \
        c_lo


def key_from_bytes(data):
    """The 80-bit ``key``/``iv`` port value of a 10-byte key or IV as eSTREAM prints it."""
    data = bytes(data)
    if len(data) != 10:
        raise ValueError(f"Trivium key and IV are 10 bytes, not {len(data)} ({data.hex()})")
    return int.from_bytes(data, "little")


def _check80(name, value):
    if not isinstance(value, int) or not 0 <= value < 1 << 80:
        raise ValueError(f"Trivium {name} must be an integer of 80 bits, not {value!r}")


class trivium_keystream:
    """Stateful Trivium keystream in 64-bit words (bit ``i`` of word ``n`` = z_{64n+i+1}).

    ``key`` and ``iv`` are the 80-bit port values (see :func:`key_from_bytes`).
    """

    def __init__(self, key, iv):
        _check80("key", key)
        _check80("iv", iv)
        a = int("".join(str((key >> (80 - i)) & 1) for i in range(80, 0, -1)), 2)
        b = int("".join(str((iv >> (80 - i)) & 1) for i in range(80, 0, -1)), 2)
        c = 0b111 << 108
        m = (1 << 64) - 1
        self._state = np.array([a >> 64, a & m, b >> 64, b & m, c >> 64, c & m],
                               dtype=np.uint64)
        _run(self._state, np.empty(0, np.uint64), 1152 // 64)

    def words(self, n):
        """The next ``n`` 64-bit keystream words."""
        out = np.empty(int(n), np.uint64)
        _run(self._state, out, 0)
        return out


def trivium_words(key, iv, n):
    """The first ``n`` 64-bit keystream words of ``key`` and ``iv`` (port values)."""
    return trivium_keystream(key, iv).words(n)


def keystream_bytes(key, iv, n):
    """The first ``n`` keystream bytes in eSTREAM order (z_1 is the LSB of byte 0)."""
    words = trivium_words(key, iv, (n + 7) // 8)
    return words.astype("<u8").tobytes()[:n]
