"""Privacy amplification by Toeplitz hashing.

Convention
----------
For an input ``x`` of ``n`` bits and an output of ``m`` bits (``0 <= m <= n``), a seed ``s``
of ``n + m - 1`` bits defines the ``m x n`` Toeplitz matrix

    T[i][j] = s[i - j + n - 1]        (0 <= i < m, 0 <= j < n)

and the output is ``y = T x mod 2``, that is ``y[i] = XOR over j of s[i - j + n - 1] & x[j]``.
Row 0 of ``T`` is ``s[n-1], s[n-2], ..., s[0]``; column 0 is ``s[n-1], s[n], ..., s[n+m-2]``.
Bits are ``uint8`` 0/1 arrays, one bit per element (:mod:`timebin.host.distill`).

Toeplitz matrices with a uniform seed form a 2-universal family (Carter & Wegman, JCSS 18,
143 (1979); Krawczyk, CRYPTO '94), so by the leftover hash lemma the output is
``eps``-close to uniform for an adversary with min-entropy ``k`` about ``x`` when
``m <= k - 2 log2(1/eps)`` (Impagliazzo, Levin & Luby 1989; Tomamichel et al., IEEE TIT 57,
5524 (2011) for quantum side information). The key length ``m`` comes from the finite-key
bound; this module only hashes.

How it is computed
------------------
``y[i] = c[i + n - 1] mod 2`` where ``c = s * x`` is the integer (acyclic) convolution;
``0 <= c[k] <= n``. A cyclic convolution of any length ``L >= n + m - 1`` has the wanted
entries right: the terms that wrap around land below index ``n - 1``. Three methods:

``"fft"``
    Real FFTs in float64 (``scipy.fft``, one worker). The exact ``c[k]`` are integers in
    ``0..n``; the rounding error of the transform is measured on every output value and the
    hash *raises* :class:`ArithmeticError` unless ``max |c~ - round(c~)| < 0.25``, so a
    returned hash is exact (a value off by one or more would differ from an integer by at
    least 0.75 after the error is bounded by 0.25 on every output). Float32 is never used: its
    24-bit mantissa cannot carry sums up to ``n`` with transform error.
``"ntt"``
    A number-theoretic transform modulo the prime ``p = 7 * 2**26 + 1 = 469762049`` (root 3),
    radix-4/radix-2 with Harvey's lazy butterflies and Shoup/Montgomery multiplication in
    32-bit lanes (numba, vectorised): exact integer arithmetic, since ``c[k] <= n < p``
    (inputs up to ``p - 1`` bits).
``"naive"``
    ``T x mod 2`` from :func:`toeplitz_matrix`, in row chunks: the definition, for tests.

Long inputs are cut into blocks (overlap-add in the transform domain: each input block is
transformed once, each seed segment once per block diagonal, the products of a row of blocks
summed before one inverse transform). Square blocks of ``B`` bits bound the memory to about
``2 m / B + 2`` transforms of ``2 B`` points; the NTT also uses one row of input blocks that
fill a power-of-two transform when ``m`` is small, whichever costs least
(:func:`_plan`; transforms of at most 2**24 points for the NTT, 2**25 for the FFT).

Throughput on one core (:func:`bench_privacy`) is a few tens of Mb/s: three transforms of
about ``n + m`` points per hash, ``O(log n)`` work per bit.
"""

import time

import numpy as np
import scipy.fft
from numba import njit

__all__ = ["METHODS", "NTT_PRIME", "seed_length", "toeplitz_matrix", "toeplitz_hash",
           "amplify", "bench_privacy"]

#: Methods of :func:`toeplitz_hash`.
METHODS = ("fft", "ntt", "naive")

#: The NTT's prime ``7 * 2**26 + 1``, its primitive root, and its largest power-of-two length.
NTT_PRIME = 469762049
_NTT_ROOT = 3
_NTT_MAX_LOG = 26

# Single transform (no blocking) up to these lengths; above them square blocks of these bits.
_FFT_SINGLE_MAX = 1 << 25
_FFT_BLOCK = 1 << 23
# The NTT's plan uses transforms up to this length (their tables take 16 bytes a point).
_NTT_PLAN_MAX_LOG = 24
# In-cache chunk of the NTT (uint32 elements): the stages below it run chunk by chunk.
_NTT_CHUNK = 1 << 14
# Sizes of bench_privacy that get a warm-up run.
_BENCH_WARM_UP_MAX = 10**7
# Rows of T per chunk of the naive method.
_NAIVE_ROWS = 256

_P = np.uint32(NTT_PRIME)
_P2 = np.uint32(2 * NTT_PRIME)
#: -p^-1 mod 2^32, for Montgomery reduction.
_PINV_NEG = np.uint32((-pow(NTT_PRIME, -1, 1 << 32)) % (1 << 32))


# --- validation -----------------------------------------------------------------------------

def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    return int(value)


def _check_sizes(n, m):
    n = _check_int("Input length n", n)
    m = _check_int("Output length m", m)
    if n < 1:
        raise ValueError(f"Input length n must be at least 1, not {n}")
    if m < 0:
        raise ValueError(f"Output length m must not be negative, not {m}")
    if m > n:
        raise ValueError(f"Output length m = {m} must not exceed the input length n = {n}")
    return n, m


def seed_length(n, m):
    """Bits of the Toeplitz seed for ``n`` input bits and ``m`` output bits: ``n + m - 1``
    (``m = 0`` needs ``n - 1``). Raises ``ValueError`` for ``n < 1``, ``m < 0`` or ``m > n``."""
    n, m = _check_sizes(n, m)
    return n + m - 1


def _bits(name, values):
    """``values`` as a 1-D uint8 array of 0/1; raises ``ValueError`` naming a bad value."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of bits, not of shape {array.shape}")
    if array.dtype == np.bool_:
        return array.view(np.uint8)
    if array.dtype.kind not in "ui":
        raise ValueError(f"{name} must hold integer bits 0/1, not dtype {array.dtype}")
    if array.size:
        if array.dtype.kind == "u":
            good = array.max() <= 1
        else:
            good = array.min() >= 0 and array.max() <= 1
        if not good:
            at = int(np.flatnonzero((array < 0) | (array > 1))[0])
            raise ValueError(f"{name} must hold bits 0/1, not {array[at]} (at position {at})")
    return array if array.dtype == np.uint8 else array.astype(np.uint8)


def _inputs(x, seed_bits, m):
    x = _bits("Input x", x)
    n, m = _check_sizes(len(x), m)
    seed = _bits("Seed", seed_bits)
    if len(seed) != n + m - 1:
        raise ValueError(f"Seed has {len(seed)} bits; n = {n} input and m = {m} output bits "
                         f"need n + m - 1 = {n + m - 1}")
    return x, seed, n, m


# --- definition -----------------------------------------------------------------------------

def toeplitz_matrix(seed, n, m):
    """The ``m x n`` Toeplitz matrix ``T[i][j] = seed[i - j + n - 1]`` as uint8 (a copy; for
    small sizes)."""
    n, m = _check_sizes(n, m)
    seed = _bits("Seed", seed)
    if len(seed) != n + m - 1:
        raise ValueError(f"Seed has {len(seed)} bits; n = {n} input and m = {m} output bits "
                         f"need n + m - 1 = {n + m - 1}")
    if m == 0:
        return np.zeros((0, n), np.uint8)
    # Row i is seed[i + n - 1], seed[i + n - 2], ..., seed[i]: a reversed sliding window.
    return np.lib.stride_tricks.sliding_window_view(seed, n)[:m, ::-1].copy()


def _naive(x, seed, n, m):
    out = np.empty(m, np.uint8)
    xs = x.astype(np.int64)
    for lo in range(0, m, _NAIVE_ROWS):
        hi = min(lo + _NAIVE_ROWS, m)
        rows = toeplitz_matrix(seed[lo:hi + n - 1], n, hi - lo)
        out[lo:hi] = (rows.astype(np.int64) @ xs) & 1
    return out


# --- FFT backend ----------------------------------------------------------------------------

@njit(cache=True, boundscheck=False)
def _round_parity(values, out):
    """out = round(values) mod 2; returns max |values - round(values)|."""
    worst = 0.0
    for i in range(values.size):
        v = values[i]
        r = np.floor(v + 0.5)
        e = abs(v - r)
        worst = max(worst, e)
        out[i] = np.uint8(np.int64(r) & 1)
    return worst


class _FFT:
    name = "fft"

    def length(self, span):
        return scipy.fft.next_fast_len(span, real=True)

    def forward(self, bits, length):
        padded = np.zeros(length, np.float64)
        padded[:len(bits)] = bits
        return scipy.fft.rfft(padded, workers=1, overwrite_x=True)

    def accumulate(self, acc, s, x):
        if acc is None:
            return np.multiply(s, x)
        acc += s * x
        return acc

    def inverse(self, acc, length, lo, count, out):
        values = scipy.fft.irfft(acc, n=length, workers=1, overwrite_x=True)[lo:lo + count]
        worst = _round_parity(values, out)
        if not worst < 0.25:
            raise ArithmeticError(f"FFT rounding error {worst:.3g} is not below 0.25: the "
                                  f"float64 transform of length {length} is not exact here; "
                                  f"use method='ntt'")


# --- NTT backend ----------------------------------------------------------------------------

@njit(inline="always")
def _red(x):
    """[0, 4p) -> [0, 2p) (uint32 lanes: x - 2p wraps when x < 2p)."""
    return np.uint32(min(np.uint32(x), np.uint32(x - _P2)))


@njit(inline="always")
def _mulw(t, w, ws):
    """t * w mod p in [0, 2p) for t < 2^32 (Shoup: ws = floor(w 2^32 / p))."""
    q = np.uint32((np.uint64(t) * np.uint64(ws)) >> np.uint64(32))
    return np.uint32(np.uint32(t) * np.uint32(w) - q * _P)


# The butterflies loop over separate array views (lo, hi, ...): LLVM vectorises these loops,
# while indexing one array at two offsets stays scalar.

@njit(cache=True, boundscheck=False)
def _bf_dif2(lo, hi, tw, tws):
    for j in range(lo.size):
        u = lo[j]
        v = hi[j]
        lo[j] = _red(u + v)
        hi[j] = _mulw(u - v + _P2, tw[j], tws[j])


@njit(cache=True, boundscheck=False)
def _bf_dif4(r0, r1, r2, r3, tw_a, tws_a, tw_b, tws_b, tw_q, tws_q):
    for j in range(r0.size):
        va = r0[j]
        vb = r1[j]
        vc = r2[j]
        vd = r3[j]
        a1 = _red(va + vc)
        c1 = _mulw(va - vc + _P2, tw_a[j], tws_a[j])
        b1 = _red(vb + vd)
        d1 = _mulw(vb - vd + _P2, tw_b[j], tws_b[j])
        w = tw_q[j]
        ws = tws_q[j]
        r0[j] = _red(a1 + b1)
        r1[j] = _mulw(a1 - b1 + _P2, w, ws)
        r2[j] = _red(c1 + d1)
        r3[j] = _mulw(c1 - d1 + _P2, w, ws)


@njit(cache=True, boundscheck=False)
def _dif2(a, tw, tws, s0, length, h):
    """One decimation-in-frequency stage of half-size ``h`` on a[s0:s0+length]."""
    t, ts = tw[h:2 * h], tws[h:2 * h]
    for s in range(s0, s0 + length, 2 * h):
        _bf_dif2(a[s:s + h], a[s + h:s + 2 * h], t, ts)


@njit(cache=True, boundscheck=False)
def _dif4(a, tw, tws, s0, length, q):
    """Stages of half-size 2q and q fused (radix 4) on a[s0:s0+length]."""
    h = 2 * q
    ta, tsa = tw[h:h + q], tws[h:h + q]
    tb, tsb = tw[h + q:2 * h], tws[h + q:2 * h]
    tq, tsq = tw[q:h], tws[q:h]
    for s in range(s0, s0 + length, 4 * q):
        _bf_dif4(a[s:s + q], a[s + q:s + h], a[s + h:s + h + q], a[s + h + q:s + 2 * h],
                 ta, tsa, tb, tsb, tq, tsq)


@njit(cache=True, boundscheck=False)
def _dif_tail8(a, tw, tws, s0, length):
    """The last three DIF stages (h = 4, 2, 1) on groups of 8."""
    w41, w42, w43 = tw[5], tw[6], tw[7]
    s41, s42, s43 = tws[5], tws[6], tws[7]
    w21, s21 = tw[3], tws[3]
    for b in range(s0, s0 + length, 8):
        a0, a1, a2, a3 = a[b], a[b + 1], a[b + 2], a[b + 3]
        a4, a5, a6, a7 = a[b + 4], a[b + 5], a[b + 6], a[b + 7]
        b0 = _red(a0 + a4)
        b4 = _red(a0 - a4 + _P2)
        b1 = _red(a1 + a5)
        b5 = _mulw(a1 - a5 + _P2, w41, s41)
        b2 = _red(a2 + a6)
        b6 = _mulw(a2 - a6 + _P2, w42, s42)
        b3 = _red(a3 + a7)
        b7 = _mulw(a3 - a7 + _P2, w43, s43)
        c0 = _red(b0 + b2)
        c2 = _red(b0 - b2 + _P2)
        c1 = _red(b1 + b3)
        c3 = _mulw(b1 - b3 + _P2, w21, s21)
        c4 = _red(b4 + b6)
        c6 = _red(b4 - b6 + _P2)
        c5 = _red(b5 + b7)
        c7 = _mulw(b5 - b7 + _P2, w21, s21)
        a[b] = _red(c0 + c1)
        a[b + 1] = _red(c0 - c1 + _P2)
        a[b + 2] = _red(c2 + c3)
        a[b + 3] = _red(c2 - c3 + _P2)
        a[b + 4] = _red(c4 + c5)
        a[b + 5] = _red(c4 - c5 + _P2)
        a[b + 6] = _red(c6 + c7)
        a[b + 7] = _red(c6 - c7 + _P2)


@njit(cache=True, boundscheck=False)
def _dif_range(a, tw, tws, s0, length, hmax, hmin):
    """DIF stages hmax, hmax/2, ..., hmin on a[s0:s0+length], two at a time."""
    h = hmax
    while h >= hmin:
        if h // 2 >= hmin:
            _dif4(a, tw, tws, s0, length, h // 2)
            h //= 4
        else:
            _dif2(a, tw, tws, s0, length, h)
            h //= 2


@njit(cache=True, boundscheck=False)
def _ntt_forward(a, tw, tws, chunk):
    """In-place forward NTT (DIF): natural order in [0, 2p) -> bit-reversed, in [0, 2p)."""
    n = a.size
    if n < 16:
        _dif_range(a, tw, tws, 0, n, n // 2, 1)
        return
    top = min(n, chunk)
    if n > top:
        _dif_range(a, tw, tws, 0, n, n // 2, top)
    for s in range(0, n, top):
        _dif_range(a, tw, tws, s, top, top // 2, 8)
        _dif_tail8(a, tw, tws, s, top)


@njit(cache=True, boundscheck=False)
def _bf_dit2(lo, hi, tw, tws):
    for j in range(lo.size):
        u = lo[j]
        v = _mulw(hi[j], tw[j], tws[j])
        lo[j] = _red(u + v)
        hi[j] = _red(u - v + _P2)


@njit(cache=True, boundscheck=False)
def _bf_dit4(r0, r1, r2, r3, tw_q, tws_q, tw_a, tws_a, tw_b, tws_b):
    for j in range(r0.size):
        w = tw_q[j]
        ws = tws_q[j]
        va = r0[j]
        v = _mulw(r1[j], w, ws)
        a1 = _red(va + v)
        b1 = _red(va - v + _P2)
        vc = r2[j]
        v = _mulw(r3[j], w, ws)
        c1 = _red(vc + v)
        d1 = _red(vc - v + _P2)
        v = _mulw(c1, tw_a[j], tws_a[j])
        r0[j] = _red(a1 + v)
        r2[j] = _red(a1 - v + _P2)
        v = _mulw(d1, tw_b[j], tws_b[j])
        r1[j] = _red(b1 + v)
        r3[j] = _red(b1 - v + _P2)


@njit(cache=True, boundscheck=False)
def _dit2(a, tw, tws, s0, length, h):
    """One decimation-in-time stage of half-size ``h`` on a[s0:s0+length]."""
    t, ts = tw[h:2 * h], tws[h:2 * h]
    for s in range(s0, s0 + length, 2 * h):
        _bf_dit2(a[s:s + h], a[s + h:s + 2 * h], t, ts)


@njit(cache=True, boundscheck=False)
def _dit4(a, tw, tws, s0, length, q):
    """DIT stages of half-size q and 2q fused (radix 4) on a[s0:s0+length]."""
    h = 2 * q
    tq, tsq = tw[q:h], tws[q:h]
    ta, tsa = tw[h:h + q], tws[h:h + q]
    tb, tsb = tw[h + q:2 * h], tws[h + q:2 * h]
    for s in range(s0, s0 + length, 4 * q):
        _bf_dit4(a[s:s + q], a[s + q:s + h], a[s + h:s + h + q], a[s + h + q:s + 2 * h],
                 tq, tsq, ta, tsa, tb, tsb)


@njit(cache=True, boundscheck=False)
def _dit_head8(a, tw, tws, s0, length):
    """The first three DIT stages (h = 1, 2, 4) on groups of 8."""
    w41, w42, w43 = tw[5], tw[6], tw[7]
    s41, s42, s43 = tws[5], tws[6], tws[7]
    w21, s21 = tw[3], tws[3]
    for b in range(s0, s0 + length, 8):
        a0, a1, a2, a3 = a[b], a[b + 1], a[b + 2], a[b + 3]
        a4, a5, a6, a7 = a[b + 4], a[b + 5], a[b + 6], a[b + 7]
        # h = 1 (twiddle 1)
        b0 = _red(a0 + a1)
        b1 = _red(a0 - a1 + _P2)
        b2 = _red(a2 + a3)
        b3 = _red(a2 - a3 + _P2)
        b4 = _red(a4 + a5)
        b5 = _red(a4 - a5 + _P2)
        b6 = _red(a6 + a7)
        b7 = _red(a6 - a7 + _P2)
        # h = 2 (twiddles 1, w21)
        v = _mulw(b3, w21, s21)
        c0 = _red(b0 + b2)
        c2 = _red(b0 - b2 + _P2)
        c1 = _red(b1 + v)
        c3 = _red(b1 - v + _P2)
        v = _mulw(b7, w21, s21)
        c4 = _red(b4 + b6)
        c6 = _red(b4 - b6 + _P2)
        c5 = _red(b5 + v)
        c7 = _red(b5 - v + _P2)
        # h = 4 (twiddles 1, w41, w42, w43)
        a[b] = _red(c0 + c4)
        a[b + 4] = _red(c0 - c4 + _P2)
        v = _mulw(c5, w41, s41)
        a[b + 1] = _red(c1 + v)
        a[b + 5] = _red(c1 - v + _P2)
        v = _mulw(c6, w42, s42)
        a[b + 2] = _red(c2 + v)
        a[b + 6] = _red(c2 - v + _P2)
        v = _mulw(c7, w43, s43)
        a[b + 3] = _red(c3 + v)
        a[b + 7] = _red(c3 - v + _P2)


@njit(cache=True, boundscheck=False)
def _dit_range(a, tw, tws, s0, length, hmin, hmax):
    """DIT stages hmin, 2 hmin, ..., hmax on a[s0:s0+length], two at a time."""
    h = hmin
    while h <= hmax:
        if 2 * h <= hmax:
            _dit4(a, tw, tws, s0, length, h)
            h *= 4
        else:
            _dit2(a, tw, tws, s0, length, h)
            h *= 2


@njit(cache=True, boundscheck=False)
def _ntt_inverse(a, itw, itws):
    """In-place inverse NTT without the 1/L (DIT with inverse roots): bit-reversed order in
    [0, 2p) -> natural, in [0, 2p)."""
    n = a.size
    if n < 16:
        _dit_range(a, itw, itws, 0, n, 1, n // 2)
        return
    top = min(n, _NTT_CHUNK)
    for s in range(0, n, top):
        _dit_head8(a, itw, itws, s, top)
        _dit_range(a, itw, itws, s, top, 8, top // 2)
    if n > top:
        _dit_range(a, itw, itws, 0, n, top, n // 2)


@njit(cache=True, boundscheck=False)
def _redc(t):
    """Montgomery: t 2^-32 mod p in [0, 2p) for t < p 2^32."""
    k = np.uint32(np.uint32(t & np.uint64(0xFFFFFFFF)) * _PINV_NEG)
    return np.uint32((t + np.uint64(k) * np.uint64(_P)) >> np.uint64(32))


@njit(cache=True, boundscheck=False)
def _ntt_mac(acc, s, x, first):
    """acc = (acc if not first) + s x 2^-32 mod p, all in [0, 2p)."""
    if first:
        for i in range(acc.size):
            acc[i] = _redc(np.uint64(s[i]) * np.uint64(x[i]))
    else:
        for i in range(acc.size):
            acc[i] = _red(acc[i] + _redc(np.uint64(s[i]) * np.uint64(x[i])))


@njit(cache=True, boundscheck=False)
def _ntt_load(bits, a):
    """a = bits zero-padded (uint8 -> uint32)."""
    for i in range(bits.size):
        a[i] = bits[i]
    for i in range(bits.size, a.size):
        a[i] = 0


@njit(cache=True, boundscheck=False)
def _ntt_scale(a, c, cs):
    for i in range(a.size):
        a[i] = _mulw(a[i], c, cs)


@njit(cache=True, boundscheck=False)
def _ntt_parity(a, lo, out):
    """out = (a[lo + i] mod p) mod 2 for values in [0, 2p)."""
    for i in range(out.size):
        v = a[lo + i]
        if v >= _P:
            v -= _P
        out[i] = np.uint8(v & 1)


@njit(cache=True, boundscheck=False)
def _fill_tables(root, tw, tws, itw, itws):
    """tw[h + j] = root_{2h}^j for 0 <= j < h, h = 1 .. size/2 (root: a primitive size-th
    root of unity), itw the inverse roots, and their Shoup constants floor(w 2^32 / p)."""
    p = np.uint64(NTT_PRIME)
    size = tw.size
    half = size // 2
    r = np.uint32(root)
    rs = np.uint32((np.uint64(root) << np.uint64(32)) // p)
    w = np.uint32(1)
    for j in range(half):                       # the top stage: root^j
        tw[half + j] = w
        w = _mulw(w, r, rs)
        if w >= _P:
            w -= _P
    h = half // 2
    while h >= 1:                               # w_{2h}^j = root^(j * half / h)
        step = half // h
        for j in range(h):
            tw[h + j] = tw[half + j * step]
        h //= 2
    h = 1
    while h <= half:                            # w_{2h}^-j = -w_{2h}^(h - j), 0 < j < h
        itw[h] = 1
        for j in range(1, h):
            itw[h + j] = np.uint32(p - np.uint64(tw[2 * h - j]))
        h *= 2
    for i in range(size):
        tws[i] = np.uint32((np.uint64(tw[i]) << np.uint64(32)) // p)
        itws[i] = np.uint32((np.uint64(itw[i]) << np.uint64(32)) // p)


_NTT_TABLES = {}


def _ntt_tables(length):
    """(tw, tws, itw, itws) of :func:`_fill_tables` for transforms of ``length`` (a power of
    two, at least 8 entries); the last length's tables are kept."""
    if length not in _NTT_TABLES:
        size = max(length, 8)
        tables = tuple(np.zeros(size, np.uint32) for _ in range(4))
        _fill_tables(pow(_NTT_ROOT, (NTT_PRIME - 1) // size, NTT_PRIME), *tables)
        _NTT_TABLES.clear()
        _NTT_TABLES[length] = tables
    return _NTT_TABLES[length]


class _NTT:
    name = "ntt"

    def length(self, span):
        length = 1 << max(span - 1, 1).bit_length()
        if length > 1 << _NTT_MAX_LOG:
            raise ValueError(f"NTT length {length} exceeds 2**{_NTT_MAX_LOG}")
        return length

    def forward(self, bits, length):
        tw, tws, _, _ = _ntt_tables(length)
        a = np.empty(length, np.uint32)
        _ntt_load(bits, a)
        _ntt_forward(a, tw, tws, _NTT_CHUNK)
        return a

    def accumulate(self, acc, s, x):
        if acc is None:
            acc = np.empty_like(s)
            _ntt_mac(acc, s, x, True)
        else:
            _ntt_mac(acc, s, x, False)
        return acc

    def inverse(self, acc, length, lo, count, out):
        _, _, itw, itws = _ntt_tables(length)
        # Products carry 2^-32 (Montgomery) and the inverse lacks 1/L: scale by 2^32 / L.
        c = (pow(length, -1, NTT_PRIME) << 32) % NTT_PRIME
        cs = np.uint32((c << 32) // NTT_PRIME)
        _ntt_scale(acc, np.uint32(c), cs)
        _ntt_inverse(acc, itw, itws)
        _ntt_parity(acc, lo, out)


_BACKENDS = {"fft": _FFT(), "ntt": _NTT()}


def _convolve_blocks(backend, x, seed, n, m, bx, by):
    """y = T x mod 2 by blocks of ``bx`` input and ``by`` output bits (overlap-add in the
    transform domain; see the module docstring).

    Block (a, b) maps x[b bx : (b+1) bx] to y[a by : (a+1) by] through the seed segment
    sigma(t) = seed[a by - b bx + n - bx + t], 0 <= t < bx + by - 1 (zero outside the seed):
    y[a by + u] += sum_v sigma(u - v + bx - 1) x[b bx + v], the entries bx - 1 ..
    bx + by - 2 of the cyclic convolution of sigma and the block, of any length
    >= bx + by - 1.
    """
    length = backend.length(bx + by - 1)
    n_b = -(-n // bx)
    m_b = -(-m // by)
    out = np.empty(m, np.uint8)
    if m == 0:
        return out
    total = len(seed)
    segments = {}
    acc = [None] * m_b

    def segment(offset):
        if offset not in segments:
            lo = offset + n - bx
            part = seed[max(lo, 0):min(lo + bx + by - 1, total)]
            if lo < 0:
                part = np.concatenate((np.zeros(-lo, np.uint8), part))
            segments[offset] = backend.forward(part, length)
        return segments[offset]

    for b in range(n_b):
        xf = backend.forward(x[b * bx:(b + 1) * bx], length)
        for a in range(m_b):
            acc[a] = backend.accumulate(acc[a], segment(a * by - b * bx), xf)
        del xf
        # Rows b' > b need offsets up to (m_b - 1) by - (b + 1) bx.
        keep = (m_b - 1) * by - (b + 1) * bx
        for offset in [k for k in segments if k > keep]:
            del segments[offset]
    for a in range(m_b):
        count = min(by, m - a * by)
        backend.inverse(acc[a], length, bx - 1, count, out[a * by:a * by + count])
        acc[a] = None
    return out


def toeplitz_hash(x, seed_bits, m, method="fft", *, block=None):
    """``y = T x mod 2`` for the Toeplitz matrix of ``seed_bits`` (module docstring):
    ``m`` output bits from the ``n`` bits of ``x``, as uint8 0/1.

    ``method``: ``"fft"`` (float64 FFT, rounding checked), ``"ntt"`` (exact NTT) or
    ``"naive"`` (the matrix product). ``block``: cut the product into square blocks of this
    many bits (``None``: the cheapest of a single transform, a row of blocks or square
    blocks, with transforms of at most 2**24 points for the NTT and 2**25 for the FFT;
    ignored by ``"naive"``).

    Raises ``ValueError`` naming the bad value for a non-binary or non-1-D input or seed,
    ``m < 0``, ``m > n``, an empty input, a seed not of ``n + m - 1`` bits, an unknown method
    or a bad block size; ``ArithmeticError`` if the FFT's rounding is not provably exact.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: methods are {', '.join(METHODS)}")
    x, seed, n, m = _inputs(x, seed_bits, m)
    if m == 0:
        return np.zeros(0, np.uint8)
    if method == "naive":
        return _naive(x, seed, n, m)
    if method == "ntt" and n >= NTT_PRIME:
        raise ValueError(f"method 'ntt' takes at most {NTT_PRIME - 1} input bits, not {n}")
    backend = _BACKENDS[method]
    if block is None:
        bx, by = _plan(method, n, m)
    else:
        bx = by = _check_int("Block size", block)
        if bx < 1 or (method == "ntt" and bx > 1 << (_NTT_MAX_LOG - 1)):
            raise ValueError(f"Block size must be 1..{1 << (_NTT_MAX_LOG - 1)} bits, "
                             f"not {block}")
    return _convolve_blocks(backend, x, seed, n, m, bx, by)


def _plan(method, n, m):
    """Block sizes (bx, by) of the cheapest geometry: a single transform, one row of output
    (by = m) with input blocks that fill a power-of-two NTT, or square blocks."""
    if method == "fft":
        if scipy.fft.next_fast_len(n + m - 1, real=True) <= _FFT_SINGLE_MAX:
            return n, m
        return _FFT_BLOCK, _FFT_BLOCK
    best = None
    for k in range(1, _NTT_PLAN_MAX_LOG + 1):
        length = 1 << k
        options = []
        if length >= m:
            bx = min(n, length - m + 1)
            n_b = -(-n // bx)
            options.append((2 * n_b + 1, n_b, (bx, m)))
        b = length // 2
        n_b, m_b = -(-n // b), -(-m // b)
        options.append((2 * (n_b + m_b) - 1, n_b * m_b, (b, b)))
        for transforms, products, shape in options:
            # Per point: log2(L) butterfly stages and ~2 for loading and reading out; ~2 per
            # point-wise product.
            cost = length * (transforms * (k + 2) + 2 * products)
            if best is None or cost < best[0]:
                best = (cost, shape)
    return best[1]


def amplify(key_bits, m, seed_bits, method="ntt"):
    """Privacy amplification: the ``m``-bit final key from the corrected key ``key_bits``
    (``n`` bits) and a public uniform seed of ``n + m - 1`` bits (:func:`seed_length`), by
    :func:`toeplitz_hash` (exact NTT by default). ``m`` comes from the finite-key bound."""
    return toeplitz_hash(key_bits, seed_bits, m, method)


# --- benchmark ------------------------------------------------------------------------------

def _available_bytes():
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _bench_bytes(n, m, method):
    """A generous estimate of the peak memory of one hash of n bits (bytes)."""
    if method == "fft":
        bx, by = _plan(method, n, m)
        spectrum = 8 * scipy.fft.next_fast_len(bx + by - 1, real=True)
        return 3 * n + (2 * -(-m // by) + 4) * spectrum
    bx, by = _plan(method, n, m)
    length = 1 << max(bx + by - 2, 1).bit_length()
    return 3 * n + (2 * -(-m // by) + 2) * 4 * length + 16 * length


def bench_privacy(sizes=(10**6, 10**7, 10**8), ratio=0.5, seed=0, methods=("fft", "ntt"),
                  repeats=3):
    """Throughput of :func:`toeplitz_hash` on one core: input Mb/s (10^6 input bits per
    second, best of ``repeats``, after a warm-up run for sizes up to 10^7; the larger ones
    cost seconds, in which compiling and the tables weigh little) for each input size and
    method, with
    ``m = round(ratio * n)`` output bits and random seeded data. Sizes whose estimated memory
    exceeds half the available memory are skipped (and reported so). FFT and NTT results
    are checked to agree. Returns ``{"seed", "ratio", "results": [{"n", "m", "method",
    "seconds", "mbps"} or {"n", "skipped"}], "best_mbps": {n: Mb/s}}``."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], not {ratio}")
    rng = np.random.default_rng(seed)
    available = _available_bytes()
    results, best = [], {}
    for n in sizes:
        n = _check_int("Size", n)
        m = max(1, round(ratio * n))
        need = max(_bench_bytes(n, m, method) for method in methods)
        if available is not None and need > available // 2:
            results.append({"n": n, "m": m, "skipped": f"needs ~{need / 2**30:.1f} GiB, "
                            f"{available / 2**30:.1f} GiB available"})
            continue
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
        outputs = {}
        for method in methods:
            if n <= _BENCH_WARM_UP_MAX:       # compiles, builds tables and FFT plans
                toeplitz_hash(x, s, m, method)
            timings = []
            for _ in range(max(repeats, 1)):
                start = time.perf_counter()
                outputs[method] = toeplitz_hash(x, s, m, method)
                timings.append(time.perf_counter() - start)
            seconds = min(timings)
            mbps = n / seconds / 1e6
            results.append({"n": n, "m": m, "method": method, "seconds": seconds,
                            "mbps": mbps})
            best[n] = max(best.get(n, 0.0), mbps)
        first = next(iter(outputs.values()))
        for method, y in outputs.items():
            if not np.array_equal(y, first):
                raise AssertionError(f"method {method} disagrees at n = {n}")
        del x, s, outputs
    return {"seed": seed, "ratio": ratio, "results": results, "best_mbps": best}


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys
    print(json.dumps(bench_privacy(tuple(int(float(a)) for a in sys.argv[1:]) or
                                   (10**6, 10**7)), indent=1))
