"""Universal hashing for the classical channel: Wegman-Carter message authentication and
the verification of corrected keys.

The hash family
---------------
Polynomial hashing over GF(2^128) (Wegman & Carter, JCSS 22, 265 (1981); the
polynomial-evaluation family of den Boer / Bierbrauer et al., CRYPTO '93, as in GCM's GHASH).
The field is GF(2)[x] / (x^128 + x^7 + x^2 + x + 1); an element is a 128-bit integer whose
bit ``i`` is the coefficient of ``x^i``, and 16 bytes map to an element little-endian.

A message ``M`` (bytes) is cut into ``L`` 16-byte blocks ``m_1 .. m_L`` (the last padded
with zero bytes) and a final block ``m_{L+1}`` holding ``8 * len(M)`` (so that messages
differing only in trailing zeros differ). With a hash key ``k``,

    h_k(M) = m_1 k^(L+1) + m_2 k^L + ... + m_(L+1) k     (Horner's rule)

For two different messages of at most ``L + 1`` blocks, ``h_k(M) - h_k(M')`` is a non-zero
polynomial in ``k`` of degree at most ``L + 1``, so for a uniform ``k`` and any ``c``,
``Pr[h_k(M) + h_k(M') = c] <= (L + 1) / 2^128``: the family is epsilon-almost-XOR-universal
with ``epsilon = (L + 1) / 2^128``, and keeping only ``t`` bits of the hash it is at most
``(L + 1) / 2^t`` (each ``t``-bit value has at most ``L + 1`` roots per value of the other
``128 - t`` bits).

Authentication (Wegman-Carter)
------------------------------
The tag of a message is ``h_k(M) XOR r`` with a fresh 128-bit one-time pad ``r`` per
message. The family ``(k, r) -> h_k(M) XOR r`` is epsilon-almost strongly universal
(Stinson, "Universal hashing and authentication codes", 1994, Theorem 5.2 style argument:
XOR-universal plus a one-time pad), so an adversary who sees any number of (message, tag)
pairs forges a new one with probability at most ``epsilon`` per attempt; the hash key ``k``
may be kept for many messages as long as every pad is used once (Wegman & Carter 1981,
section 4; key recycling: Portmann, IEEE TIT 60, 4383 (2014)). :class:`AuthKeyPool`
accounts every bit: 128 bits of hash key per direction once, 128 bits of pad per message.

Verification
------------
After error correction Alice sends ``t`` bits of ``h_k(key)`` with a fresh public ``k``
chosen after the keys are fixed; keys that differ collide with probability at most
``(L + 1) / 2^t``: :func:`verification_bits` picks ``t`` for a given ``eps_cor``.
"""

import math

import numpy as np
from numba import njit

__all__ = ["TAG_BYTES", "poly_hash", "tag", "verify_tag", "verification_bits",
           "verification_hash", "AuthKeyPool", "AuthKeyExhausted", "AuthenticationError",
           "direction_pools"]

#: Bytes of a Wegman-Carter tag and of one one-time pad.
TAG_BYTES = 16
_MASK64 = (1 << 64) - 1


@njit(cache=True)
def _mul(a_lo, a_hi, b_lo, b_hi):
    """a * b in GF(2^128) mod x^128 + x^7 + x^2 + x + 1, bit by bit (table building)."""
    r_lo = np.uint64(0)
    r_hi = np.uint64(0)
    one = np.uint64(1)
    for i in range(128):
        if i < 64:
            bit = (b_lo >> np.uint64(i)) & one
        else:
            bit = (b_hi >> np.uint64(i - 64)) & one
        if bit:
            r_lo ^= a_lo
            r_hi ^= a_hi
        carry = a_hi >> np.uint64(63)
        a_hi = (a_hi << one) | (a_lo >> np.uint64(63))
        a_lo = a_lo << one
        if carry:
            a_lo ^= np.uint64(0x87)             # x^128 = x^7 + x^2 + x + 1
    return r_lo, r_hi


@njit(cache=True)
def _tables(k_lo, k_hi):
    """table[j, b] = k * (b x^(8j)) for the 16 byte positions j and byte values b: a product
    by k is then 16 lookups (Shoup's table method, 8-bit)."""
    table = np.zeros((16, 256, 2), np.uint64)
    for j in range(16):
        for b in range(256):
            if j < 8:
                lo = np.uint64(b) << np.uint64(8 * j)
                hi = np.uint64(0)
            else:
                lo = np.uint64(0)
                hi = np.uint64(b) << np.uint64(8 * (j - 8))
            r_lo, r_hi = _mul(lo, hi, k_lo, k_hi)
            table[j, b, 0] = r_lo
            table[j, b, 1] = r_hi
    return table


@njit(cache=True)
def _horner(blocks, table):
    """Horner's rule over ``blocks`` ((L, 2) uint64 lo/hi) with the product tables of k."""
    acc_lo = np.uint64(0)
    acc_hi = np.uint64(0)
    ff = np.uint64(0xFF)
    for i in range(blocks.shape[0]):
        x_lo = acc_lo ^ blocks[i, 0]
        x_hi = acc_hi ^ blocks[i, 1]
        acc_lo = np.uint64(0)
        acc_hi = np.uint64(0)
        for j in range(8):
            b = (x_lo >> np.uint64(8 * j)) & ff
            acc_lo ^= table[j, b, 0]
            acc_hi ^= table[j, b, 1]
        for j in range(8):
            b = (x_hi >> np.uint64(8 * j)) & ff
            acc_lo ^= table[8 + j, b, 0]
            acc_hi ^= table[8 + j, b, 1]
    return acc_lo, acc_hi


def _key_halves(key):
    if isinstance(key, (bytes, bytearray)):
        if len(key) != 16:
            raise ValueError(f"A hash key is 16 bytes, not {len(key)}")
        key = int.from_bytes(key, "little")
    if not isinstance(key, int) or not 0 <= key < 1 << 128:
        raise ValueError(f"A hash key is a 128-bit integer or 16 bytes, not {key!r}")
    return np.uint64(key & _MASK64), np.uint64(key >> 64)


def _blocks(data):
    """The 16-byte blocks of ``data`` (zero-padded) and the length block, as (L+1, 2)."""
    n = len(data)
    padded = np.zeros(-(-n // 16) * 16 + 16, np.uint8)
    padded[:n] = np.frombuffer(data, np.uint8)
    padded[-16:-8] = np.frombuffer((8 * n).to_bytes(8, "little"), np.uint8)
    return padded.view("<u8").astype(np.uint64).reshape(-1, 2)


def poly_hash(key, data):
    """``h_k(data)`` as a 128-bit integer (module docstring). ``key``: 16 bytes or an int;
    ``data``: bytes, or a numpy array of bits (packed LSB first into bytes)."""
    if isinstance(data, np.ndarray):
        data = np.packbits(np.asarray(data, np.uint8), bitorder="little").tobytes()
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"Data to hash must be bytes or a bit array, not {type(data).__name__}")
    k_lo, k_hi = _key_halves(key)
    lo, hi = _horner(_blocks(bytes(data)), _tables(k_lo, k_hi))
    return int(lo) | int(hi) << 64


def tag(hash_key, pad, data):
    """The Wegman-Carter tag of ``data``: ``h_k(data) XOR pad`` as 16 bytes."""
    if len(pad) != TAG_BYTES:
        raise ValueError(f"A one-time pad is {TAG_BYTES} bytes, not {len(pad)}")
    value = poly_hash(hash_key, data) ^ int.from_bytes(pad, "little")
    return value.to_bytes(TAG_BYTES, "little")


def verify_tag(hash_key, pad, data, received):
    """Whether ``received`` is the tag of ``data`` (constant-time compare)."""
    import hmac
    return hmac.compare_digest(tag(hash_key, pad, data), bytes(received))


def verification_bits(n_bits, eps_cor):
    """Bits ``t`` of the verification hash of an ``n_bits`` key so that different keys
    collide with probability at most ``eps_cor``: ``(L + 1) / 2^t <= eps_cor``."""
    if not 0 < eps_cor < 1:
        raise ValueError(f"eps_cor must be in (0, 1), not {eps_cor!r}")
    blocks = -(-n_bits // 128) + 1
    t = math.ceil(math.log2(blocks / eps_cor))
    if t > 128:
        raise ValueError(f"eps_cor {eps_cor!r} needs {t} hash bits for {n_bits} bits; at "
                         f"most 128 are available")
    return t


def verification_hash(key_bits, hash_key, t):
    """The ``t`` low bits of ``h_k(key_bits)`` (bits packed LSB first), as an int."""
    return poly_hash(hash_key, key_bits) & ((1 << t) - 1)


class AuthenticationError(Exception):
    """A message failed its authentication check (tag, sequence number, direction)."""


class AuthKeyExhausted(AuthenticationError):
    """The authentication key pool holds too few bits for the next message."""


class AuthKeyPool:
    """Secret key for authentication, with every bit accounted.

    The pool starts from a pre-shared secret and is replenished from distilled key. Both
    ends hold the same pool and take from it in the same order: :meth:`take` of the same
    sizes at the same protocol steps (the hash keys at the start of a session, one pad per
    message, by sequence number within a direction: :meth:`pad`).

    Parameters
    ----------
    secret : bytes
        The pre-shared secret (at least the hash key and one pad; a channel uses one pool
        per direction: :func:`direction_pools`).

    Members
    -------
    consumed_bits, replenished_bits : int
        Bits used and added so far (the pre-shared secret is not counted as replenished).
    """

    def __init__(self, secret):
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError(f"The pre-shared secret must be bytes, not {secret!r}")
        if len(secret) < 2 * TAG_BYTES:
            raise ValueError(f"The pre-shared secret must be at least {2 * TAG_BYTES} bytes, "
                             f"not {len(secret)}")
        self._key = bytearray(secret)
        self._pos = 0
        self.initial_bits = 8 * len(secret)
        self.consumed_bits = 0
        self.replenished_bits = 0
        self.uses = {}

    @property
    def available_bits(self):
        return 8 * (len(self._key) - self._pos)

    def take(self, nbytes, purpose="pad"):
        """``nbytes`` fresh secret bytes, never handed out again."""
        if nbytes > len(self._key) - self._pos:
            raise AuthKeyExhausted(f"The authentication key pool has {self.available_bits} "
                                   f"bits; {8 * nbytes} are needed for {purpose}")
        out = bytes(self._key[self._pos:self._pos + nbytes])
        self._pos += nbytes
        self.consumed_bits += 8 * nbytes
        self.uses[purpose] = self.uses.get(purpose, 0) + 8 * nbytes
        if self._pos > 1 << 16:                 # forget what is used
            del self._key[:self._pos]
            self._pos = 0
        return out

    def peek(self, offset, nbytes):
        """The ``nbytes`` that :meth:`take` would return after ``offset`` more bytes, without
        using them."""
        start = self._pos + offset
        if offset < 0 or start + nbytes > len(self._key):
            raise AuthKeyExhausted(f"The authentication key pool has {self.available_bits} "
                                   f"bits; {8 * (offset + nbytes)} are needed")
        return bytes(self._key[start:start + nbytes])

    def replenish(self, key_bytes):
        """Add distilled secret key to the pool."""
        self._key += bytes(key_bytes)
        self.replenished_bits += 8 * len(key_bytes)

    def accounting(self):
        """``{initial, replenished, consumed, available}`` bits and ``uses`` by purpose."""
        return {"initial_bits": self.initial_bits, "replenished_bits": self.replenished_bits,
                "consumed_bits": self.consumed_bits, "available_bits": self.available_bits,
                "uses": dict(self.uses)}


def direction_pools(secret):
    """``{"alice": pool, "bob": pool}``: the pools of the messages Alice sends and of those
    Bob sends, from the two halves of a pre-shared ``secret``."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) % 2:
        raise ValueError(f"The pre-shared secret must be an even number of bytes, not "
                         f"{len(secret) if isinstance(secret, (bytes, bytearray)) else secret!r}")
    half = len(secret) // 2
    return {"alice": AuthKeyPool(bytes(secret[:half])), "bob": AuthKeyPool(bytes(secret[half:]))}
