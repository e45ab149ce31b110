"""Rate-adaptive LDPC syndrome reconciliation with blind retries.

# Ref: D. Elkouss, A. Leverrier, R. Alleaume, J. J. Boutros, "Efficient reconciliation
#      protocol for discrete-variable quantum key distribution", ISIT 2009 (syndrome coding
#      with irregular LDPC codes optimised for the BSC).
# Ref: D. Elkouss, J. Martinez-Mateo, D. Lancho, V. Martin, "Rate compatible protocol for
#      information reconciliation: an application to QKD", ITW 2010 (puncturing and
#      shortening a mother code to the QBER; leakage M - p).
# Ref: D. Elkouss, J. Martinez-Mateo, V. Martin, "Untainted puncturing for irregular
#      low-density parity-check codes", IEEE WCL 1, 585 (2012).
# Ref: J. Martinez-Mateo, D. Elkouss, V. Martin, "Blind reconciliation", QIC 12, 791 (2012)
#      (reveal punctured bits after a failed decoding instead of estimating the QBER).
# Ref: X.-Y. Hu, E. Eleftheriou, D. M. Arnold, "Regular and irregular progressive
#      edge-growth Tanner graphs", IEEE Trans. IT 51, 386 (2005) (PEG construction).
# Ref: S.-Y. Chung, T. Richardson, R. Urbanke, "Analysis of sum-product decoding of LDPC codes
#      using a Gaussian approximation", IEEE Trans. IT 47, 657 (2001) (the design method).

Codes. One mother code per rate in :data:`RATES` (0.50 .. 0.95 in steps of 0.05) and frame
length ``N`` (a multiple of 256, up to 2^16 by default), built deterministically at run time
and cached per process: variable-node degrees from :data:`DISTRIBUTIONS` (edge-perspective
lambda), check degrees concentrated on two consecutive values, edges placed by a
progressive-edge-growth construction (variables in increasing degree; each new edge goes to
the least-loaded check outside the variable's distance-2 neighbourhood, so the graph has no
4-cycles as long as such a check exists: at every rate from 2^14 bits on; shorter high-rate
codes, whose degree-25 columns reach every check, keep some and are not used), and an
untainted puncturing order. The distributions were optimised here for the BSC with the
Gaussian approximation and linear programming (maximise the rate at a crossover probability,
then bisect the probability; check-concentrated; at most M degree-2 variables); their
thresholds are in :data:`DISTRIBUTIONS` and checked by :func:`ga_threshold`. Measured at
N = 2^16 the codes decode about 10 % above their Gaussian-approximation thresholds (the
approximation is optimistic for the BSC), which is where most of the remaining inefficiency
comes from.

Protocol (Bob drives, :meth:`LDPC.bob`):

1. Bob picks the frame plan from his QBER estimate ``Q``: ``ceil(n / N)`` frames, each with
   ``k`` key bits spread evenly and the rest shortened (known zeros); the mother code whose
   syndrome starts closest above ``f_start`` (``M / (k h(Q))``); at QBERs below the
   highest rate's range, ``p`` untainted punctured bits (Alice fills them with secret random
   bits; Bob gives them LLR 0) bring the start down. He sends ``{op: syndrome}``; Alice
   answers the ``M``-bit syndromes of all frames (one round trip).
2. Bob decodes every frame (layered sum-product with a phi table, in numba). For each frame
   that fails, ``{op: extend}`` asks the parities of ``step k h(Q)`` more random checks of
   about ``0.6 / Q`` key bits each (drawn from the session seed; each parity is odd with
   probability ~0.35, so it tells Bob ~0.93 bit per disclosed bit). Bob adds them to the
   frame's graph and continues decoding where it stopped. Failed frames are handled
   together, one round trip per step, until all decode or a frame reached ``f_max``; then
   ``success`` is false. (This is the blind, rate-adaptive retry of Martinez-Mateo et al.
   with extra parities instead of revealed punctured bits: with few or no punctured bits,
   revealing key bits would tell Bob only h(Q) bit per disclosed bit.)

Leakage: a frame discloses ``M - p + e`` bits (``e`` extra parities): the syndrome's ``M``
bits less the ``p`` secret random bits it covers. The credit is exact because the punctured
columns of an untainted set have disjoint supports, so they are linearly independent and the
syndrome is uniform on a ``p``-dimensional coset for a fixed key. Bob's success/failure
messages depend only on the error pattern, which a BSC makes independent of Alice's key, and
are not counted. Both sides count the same number.
"""

import functools
import hashlib
import math

import numpy as np
from numba import njit

from .reconcile import (
    AliceSide,
    Reconciler,
    binary_entropy,
    check_key,
    check_protocol,
    check_qber,
    check_seed,
    derive_seed,
    finish_stats,
    fresh_seed,
    message_field,
    random_permutation,
    splitmix64,
)

__all__ = ["LDPC", "LDPCAlice", "LDPCCode", "RATES", "DISTRIBUTIONS", "mother_code",
           "ga_threshold", "decode"]

PROTOCOL = "ldpc"

#: Rates of the mother codes.
RATES = (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)

#: Edge-perspective variable-degree distributions {degree: lambda} per mother-code rate, and
#: the BSC threshold (crossover probability) of each under the Gaussian approximation, with
#: its check degrees concentrated at the average the rate implies.
DISTRIBUTIONS = {
    0.50: ({2: 0.16689, 3: 0.22600, 7: 0.08980, 8: 0.19518, 25: 0.32213}, 0.1036),
    0.55: ({2: 0.15451, 3: 0.22107, 7: 0.11955, 8: 0.16236, 25: 0.34251}, 0.0890),
    0.60: ({2: 0.14465, 3: 0.22223, 7: 0.08524, 8: 0.21438, 25: 0.33350}, 0.0755),
    0.65: ({2: 0.13067, 3: 0.21667, 7: 0.12922, 8: 0.15909, 25: 0.36435}, 0.0629),
    0.70: ({2: 0.10889, 3: 0.23912, 7: 0.02395, 8: 0.26459, 25: 0.36345}, 0.0510),
    0.75: ({2: 0.08754, 3: 0.25365, 8: 0.27292, 10: 0.01307, 25: 0.37282}, 0.0400),
    0.80: ({2: 0.06759, 3: 0.26547, 8: 0.24547, 10: 0.04313, 25: 0.37834}, 0.0300),
    0.85: ({2: 0.05633, 3: 0.33058, 8: 0.13374, 10: 0.25107, 20: 0.22828}, 0.0204),
    0.90: ({2: 0.04188, 3: 0.40362, 8: 0.11044, 10: 0.44406}, 0.0119),
    0.95: ({2: 0.02396, 3: 0.49132, 7: 0.45707, 8: 0.02765}, 0.0046),
}

#: Every this many decoding attempts of a frame starts afresh instead of continuing.
_RESTART = 4

#: Default frame length (code bits).
FRAME_BITS = 1 << 16
_MIN_FRAME_BITS = 1 << 10
_MAX_FRAME_BITS = 1 << 20
_FRAME_QUANTUM = 256


def check_frame_bits(n, name="frame length"):
    """``n`` as a code length: a multiple of 256 in 2^10 .. 2^20, or ValueError naming it."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or \
            n % _FRAME_QUANTUM or not _MIN_FRAME_BITS <= n <= _MAX_FRAME_BITS:
        raise ValueError(f"The {name} must be a multiple of {_FRAME_QUANTUM} in "
                         f"{_MIN_FRAME_BITS} .. {_MAX_FRAME_BITS}, not {n!r}")
    return int(n)


# ---- code construction ---------------------------------------------------------------------

def _variable_degrees(rate, n):
    """Degree of each variable node (ascending) for ``n`` variables of the rate's
    distribution: node counts proportional to lambda_i / i, rounded by largest remainder."""
    lam, _ = DISTRIBUTIONS[rate]
    degrees = np.array(sorted(lam), np.int64)
    weights = np.array([lam[d] / d for d in degrees])
    exact = weights / weights.sum() * n
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[:n - counts.sum()]] += 1
    return np.repeat(degrees, counts)


@njit(cache=True)
def _peg(var_deg, m, seed):
    """Progressive edge growth: for each variable in turn (ascending degree) and each of its
    edges, the check of least current degree among those not within distance 2 of the
    variable (none shares a variable with its checks, so no 4-cycle), ties broken by the
    pseudo-random stream ``seed``; if every check is that close, the least loaded check not
    yet adjacent. Returns the variable-major adjacency (var_ptr, var_chk)."""
    n = len(var_deg)
    var_ptr = np.zeros(n + 1, np.int64)
    for v in range(n):
        var_ptr[v + 1] = var_ptr[v] + var_deg[v]
    edges = var_ptr[n]
    var_chk = np.full(edges, -1, np.int64)
    cap = edges // m + 2
    chk_var = np.empty((m, cap + 64), np.int64)
    chk_deg = np.zeros(m, np.int64)
    # checks bucketed by current degree: bucket[d, :size[d]] holds them, where[c] its slot
    top = cap + 64
    bucket = np.empty((top + 1, m), np.int64)
    size = np.zeros(top + 1, np.int64)
    where = np.empty(m, np.int64)
    for c in range(m):
        bucket[0, c] = c
        where[c] = c
    size[0] = m
    stamp = np.zeros(m, np.int64)
    state = np.uint64(seed)
    tick = 0
    for v in range(n):
        for t in range(var_deg[v]):
            tick += 1
            for a in range(var_ptr[v], var_ptr[v] + t):
                c1 = var_chk[a]
                stamp[c1] = tick
                for b in range(chk_deg[c1]):
                    u = chk_var[c1, b]
                    for a2 in range(var_ptr[u], var_ptr[u + 1]):
                        c2 = var_chk[a2]
                        if c2 < 0:
                            break
                        stamp[c2] = tick
            chosen = -1
            for d in range(top + 1):
                count = size[d]
                if count == 0:
                    continue
                state, z = splitmix64(state)
                start = np.int64(z % np.uint64(count))
                for j in range(count):
                    c = bucket[d, (start + j) % count]
                    if stamp[c] != tick:
                        chosen = c
                        break
                if chosen >= 0:
                    break
            if chosen < 0:
                for d in range(top + 1):
                    for j in range(size[d]):
                        c = bucket[d, j]
                        fresh = True
                        for a in range(var_ptr[v], var_ptr[v] + t):
                            if var_chk[a] == c:
                                fresh = False
                        if fresh:
                            chosen = c
                            break
                    if chosen >= 0:
                        break
            c = chosen
            var_chk[var_ptr[v] + t] = c
            d = chk_deg[c]
            chk_var[c, d] = v
            slot = where[c]
            last = bucket[d, size[d] - 1]
            bucket[d, slot] = last
            where[last] = slot
            size[d] -= 1
            bucket[d + 1, size[d + 1]] = c
            where[c] = size[d + 1]
            size[d + 1] += 1
            chk_deg[c] = d + 1
    return var_ptr, var_chk


@njit(cache=True)
def _untainted(var_ptr, var_chk, chk_ptr, chk_var, order):
    """Untainted puncturing (Elkouss et al. 2012), greedily: visit the variables in
    ``order`` (ascending degree, pseudo-random ties) and puncture each one no punctured
    variable shares a check with; afterwards every check has at most one punctured
    neighbour. Returns the punctured variables in the order chosen."""
    n = len(var_ptr) - 1
    tainted = np.zeros(n, np.bool_)
    chosen = np.empty(n, np.int64)
    count = 0
    for v in order:
        if tainted[v]:
            continue
        chosen[count] = v
        count += 1
        for a in range(var_ptr[v], var_ptr[v + 1]):
            c = var_chk[a]
            for e in range(chk_ptr[c], chk_ptr[c + 1]):
                tainted[chk_var[e]] = True
    return chosen[:count]


class LDPCCode:
    """A mother code: parity-check matrix ``H`` (``m`` x ``n``) in variable-major
    (``var_ptr``, ``var_chk``) and check-major (``chk_ptr``, ``chk_var``) form, the
    untainted puncturing order ``puncture`` and a ``digest`` of all of it."""

    def __init__(self, rate, n, seed=0):
        if rate not in DISTRIBUTIONS:
            raise ValueError(f"No mother code of rate {rate!r}; rates are {RATES}")
        n = check_frame_bits(n)
        self.rate = rate
        self.n = n
        self.m = round(n * (1 - rate))
        self.var_deg = _variable_degrees(rate, n)
        stream = np.uint64(derive_seed(np.uint64(seed), int(round(rate * 100)), n))
        self.var_ptr, self.var_chk = _peg(self.var_deg, self.m, stream)
        self.chk_deg = np.bincount(self.var_chk, minlength=self.m)
        self.chk_ptr = np.zeros(self.m + 1, np.int64)
        self.chk_ptr[1:] = np.cumsum(self.chk_deg)
        owner = np.repeat(np.arange(n, dtype=np.int64), self.var_deg)
        self.chk_var = owner[np.argsort(self.var_chk, kind="stable")]
        ties = random_permutation(n, np.uint64(derive_seed(stream, 1, 0)))
        visit = ties[np.argsort(self.var_deg[ties], kind="stable")].astype(np.int64)
        self.puncture = _untainted(self.var_ptr, self.var_chk, self.chk_ptr, self.chk_var,
                                   visit)
        self.four_cycles = _four_cycles(self)
        digest = hashlib.sha256()
        for array in (self.var_ptr, self.var_chk, self.puncture):
            digest.update(np.ascontiguousarray(array, "<i8").tobytes())
        self.digest = digest.hexdigest()[:32]

    @property
    def edges(self):
        return len(self.var_chk)

    def syndrome(self, words):
        """H x for each row of ``words`` (frames x n uint8): frames x m uint8."""
        return _syndromes(self.chk_ptr, self.chk_var, np.ascontiguousarray(words, np.uint8))

    def __repr__(self):
        return f"LDPCCode(rate={self.rate}, n={self.n}, m={self.m}, edges={self.edges})"


def mother_code(rate, n=FRAME_BITS):
    """The mother code of ``rate`` and length ``n`` (built once per process)."""
    return _mother_code(float(rate), int(n))


def _four_cycles(code):
    """Number of 4-cycles (0: girth >= 6)."""
    return int(_count_four_cycles(code.var_ptr, code.var_chk, code.chk_ptr, code.chk_var))


@njit(cache=True)
def _count_four_cycles(var_ptr, var_chk, chk_ptr, chk_var):
    """Each pair of checks sharing s > 1 variables closes s (s - 1) / 2 4-cycles; counted
    from every check: for each check, the other checks of its variables, with repeats."""
    m = len(chk_ptr) - 1
    seen = np.full(m, -1, np.int64)
    times = np.zeros(m, np.int64)
    cycles = 0
    for c in range(m):
        for e in range(chk_ptr[c], chk_ptr[c + 1]):
            u = chk_var[e]
            for a in range(var_ptr[u], var_ptr[u + 1]):
                other = var_chk[a]
                if other <= c:
                    continue
                if seen[other] != c:
                    seen[other] = c
                    times[other] = 0
                cycles += times[other]
                times[other] += 1
    return cycles


@functools.lru_cache(maxsize=64)
def _mother_code(rate, n):
    return LDPCCode(rate, n)


@njit(cache=True)
def _syndromes(chk_ptr, chk_var, words):
    out = np.zeros((words.shape[0], len(chk_ptr) - 1), np.uint8)
    for f in range(words.shape[0]):
        for c in range(len(chk_ptr) - 1):
            parity = np.uint8(0)
            for e in range(chk_ptr[c], chk_ptr[c + 1]):
                parity ^= words[f, chk_var[e]]
            out[f, c] = parity
    return out


# ---- design check: Gaussian-approximation density evolution --------------------------------

def ga_threshold(distribution, rate, tolerance=1e-5):
    """Largest BSC crossover probability at which sum-product decoding of the ensemble with
    variable degrees ``distribution`` ({degree: lambda}) and check degrees concentrated at
    the average ``rate`` implies converges under the Gaussian approximation (check-to-
    variable messages N(m, 2m); Chung, Richardson, Urbanke 2001)."""
    from numpy.polynomial.hermite_e import hermegauss

    nodes, weights = hermegauss(48)
    weights = weights / weights.sum()
    degrees = np.array(sorted(distribution), float)
    lam = np.array([distribution[int(d)] for d in degrees])
    mean_check = (1.0 / (1.0 - rate)) / float((lam / degrees).sum())   # edges / checks
    low = math.floor(mean_check)
    # edge-perspective rho on {low, low + 1} with the mean (1/sum(rho_j / j)) = mean_check
    a = (1.0 / mean_check - 1.0 / low) / (1.0 / (low + 1) - 1.0 / low)
    rho = {low: 1.0 - a, low + 1: a}

    def tanh_mean(mean, var):
        x = mean[..., None] + np.sqrt(np.maximum(var, 0.0))[..., None] * nodes
        return (np.tanh(x / 2.0) * weights).sum(-1)

    grid = np.concatenate(([0.0], np.logspace(-5, 3, 3000)))
    phi = 1.0 - tanh_mean(grid, 2.0 * grid)                   # decreasing from 1 to 0

    def converges(p):
        lc = math.log((1.0 - p) / p)
        m = 0.0
        for _ in range(3000):
            means = (degrees - 1.0) * m
            t = (1.0 - p) * tanh_mean(lc + means, 2.0 * means) + \
                p * tanh_mean(-lc + means, 2.0 * means)
            x = float((lam * t).sum())
            e_u = sum(r * x ** (j - 1) for j, r in rho.items())
            new = float(np.interp(1.0 - e_u, phi[::-1], grid[::-1]))
            if new > 60.0:
                return True
            if new <= m * (1.0 + 1e-7):
                return False
            m = new
        return False

    lo, hi = 1e-4, 0.5
    while hi - lo > tolerance:
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if converges(mid) else (lo, mid)
    return lo


# ---- decoding ------------------------------------------------------------------------------

_PHI_SCALE = 8192.0
_PHI_TOP = 16.0


def _phi_table():
    x = (np.arange(int(_PHI_TOP * _PHI_SCALE) + 1) + 0.5) / _PHI_SCALE
    return (-np.log(np.tanh(x / 2.0))).astype(np.float32)


_PHI = _phi_table()
#: LLR magnitude of a bit whose value is known (shortened or revealed).
KNOWN_LLR = np.float32(200.0)


@njit(cache=True, inline="always")
def _layer(ptr, var, syndrome, msg, post, scratch, table):
    """One layered sum-product pass over the checks of (ptr, var); the number of checks
    whose incoming signs disagreed with their syndrome bit."""
    top = len(table) - 1
    unsat = 0
    for c in range(len(ptr) - 1):
        lo = ptr[c]
        hi = ptr[c + 1]
        total = np.float32(0.0)
        negative = syndrome[c]
        for e in range(lo, hi):
            q = post[var[e]] - msg[e]
            msg[e] = q
            i = int(abs(q) * 8192.0)
            ph = table[i if i < top else top]
            scratch[e] = ph
            total += ph
            if q < 0:
                negative ^= 1
        unsat += negative
        for e in range(lo, hi):
            q = msg[e]
            i = int((total - scratch[e]) * 8192.0)
            mag = table[min(max(i, 0), top)]
            r = -mag if negative ^ (q < 0) else mag
            msg[e] = r
            post[var[e]] = q + r
    return unsat


@njit(cache=True, inline="always")
def _satisfied(ptr, var, syndrome, post):
    for c in range(len(ptr) - 1):
        parity = syndrome[c]
        for e in range(ptr[c], ptr[c + 1]):
            if post[var[e]] < 0:
                parity ^= 1
        if parity:
            return False
    return True


@njit(cache=True)
def _decode(chk_ptr, chk_var, syndrome, msg, ext_ptr, ext_var, ext_syndrome, ext_msg, post,
            max_iter, stall, table):
    """Layered sum-product decoding of the syndrome ``syndrome`` of the code's checks plus
    the extra checks (``ext_ptr``, ``ext_var``, ``ext_syndrome``), continuing from the
    check-to-variable messages ``msg``, ``ext_msg`` and posterior LLRs ``post`` (updated in
    place; zeros and the channel LLRs to start afresh). phi(x) = -ln tanh(x/2) comes from
    ``table`` (step 1/8192). Stops when the hard decisions satisfy every check (True), after
    ``max_iter`` iterations, or when the count of unsatisfied checks has not reached a new
    low for ``stall`` iterations. Returns (success, iterations)."""
    scratch = np.empty(len(msg), np.float32)
    ext_scratch = np.empty(len(ext_msg), np.float32)
    best = len(chk_ptr) + len(ext_ptr)
    since = 0
    for it in range(1, max_iter + 1):
        unsat = _layer(chk_ptr, chk_var, syndrome, msg, post, scratch, table)
        unsat += _layer(ext_ptr, ext_var, ext_syndrome, ext_msg, post, ext_scratch, table)
        if unsat == 0 and _satisfied(chk_ptr, chk_var, syndrome, post) and \
                _satisfied(ext_ptr, ext_var, ext_syndrome, post):
            return True, it
        if unsat < best:
            best = unsat
            since = 0
        else:
            since += 1
            if since >= stall:
                return False, it
    return False, max_iter


_NO_ROWS = (np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8),
            np.zeros(0, np.float32))


def decode(code, syndrome, llr, max_iter=200, stall=40):
    """Decode one frame of ``code``: ``(bits, success, iterations)`` for the syndrome (m
    uint8) and channel LLRs (n; positive means 0)."""
    post = np.array(llr, np.float32)
    msg = np.zeros(code.edges, np.float32)
    ok, iterations = _decode(code.chk_ptr, code.chk_var,
                             np.ascontiguousarray(syndrome, np.uint8), msg, *_NO_ROWS, post,
                             max_iter, stall, _PHI)
    return (post < 0).astype(np.uint8), bool(ok), int(iterations)


@njit(cache=True)
def _extra_rows(positions, degree, seed, first, count):
    """Rows ``first`` .. ``first + count - 1`` of a frame's extra checks: each ``degree``
    distinct positions drawn from ``positions`` (the frame's key bits) by the stream
    ``seed`` (row r uses the stream ``derive_seed(seed, r, 0xE7)``). Returns (ptr, var)."""
    k = len(positions)
    ptr = np.arange(count + 1).astype(np.int64) * degree
    var = np.empty(count * degree, np.int64)
    for row in range(count):
        state = derive_seed(seed, first + row, 0xE7)
        chosen = 0
        while chosen < degree:
            state, z = splitmix64(state)
            candidate = positions[np.int64(z % np.uint64(k))]
            fresh = True
            for j in range(chosen):
                if var[row * degree + j] == candidate:
                    fresh = False
                    break
            if fresh:
                var[row * degree + chosen] = candidate
                chosen += 1
    return ptr, var


# ---- frame plan ----------------------------------------------------------------------------

class _Plan:
    """How ``n`` key bits travel: ``frames`` frames of ``code``, frame ``i`` holding
    ``keys[i]`` key bits, ``punctured`` punctured and the rest shortened; ``layout`` orders
    the non-punctured positions (shortened first), from the session seed, which also draws
    the extra checks of blind retries."""

    def __init__(self, code, n, frames, punctured, seed):
        self.code = code
        self.n = n
        self.frames = frames
        self.punctured = punctured
        base, extra = divmod(n, frames)
        self.keys = np.full(frames, base, np.int64)
        self.keys[:extra] += 1
        self.starts = np.concatenate(([0], np.cumsum(self.keys)))
        if punctured > len(code.puncture) or self.keys.max() + punctured > code.n:
            raise ValueError(f"A frame of {code.n} bits cannot hold {int(self.keys.max())} "
                             f"key bits and {punctured} punctured bits (at most "
                             f"{len(code.puncture)} punctured)")
        self.punct = code.puncture[:punctured]
        rest = np.ones(code.n, np.bool_)
        rest[self.punct] = False
        rest = np.flatnonzero(rest)
        shuffle = random_permutation(len(rest), np.uint64(derive_seed(np.uint64(seed), 0x1D,
                                                                      code.n)))
        self.layout = rest[shuffle]
        self.seed = seed
        self._positions = {}

    def shortened(self, frame):
        return self.layout[:self.code.n - self.punctured - self.keys[frame]]

    def key_positions(self, frame):
        keys = int(self.keys[frame])
        cached = self._positions.get(keys)
        if cached is None:           # frames hold one of two key counts: sort each once
            cached = self._positions[keys] = np.sort(self.layout[self.code.n
                                                                 - self.punctured - keys:])
        return cached

    def extra_rows(self, frame, degree, first, count):
        """Rows ``first`` .. ``first + count - 1`` of the frame's extra checks (ptr, var)."""
        seed = np.uint64(derive_seed(np.uint64(self.seed), 0xE7, frame))
        return _extra_rows(self.key_positions(frame), degree, seed, first, count)


def _mean_check_degree(rate):
    lam, _ = DISTRIBUTIONS[rate]
    return 1.0 / sum(v / d for d, v in lam.items()) / (1.0 - rate)


def _choose_plan(n, qber, frame_bits, f_start, headroom=0.12):
    """(rate, frames, punctured) for ``n`` key bits at QBER ``qber``.

    Frames are as full as the key allows (``ceil(n / N)`` frames, the key bits spread evenly,
    the rest of each frame shortened). The mother code is the one whose unpunctured start
    ``f0 = M / (k h(Q))`` is the smallest not below ``f_start``: a code of higher rate would
    start below it and need many extra checks, one of lower rate starts higher. Puncturing
    costs more decoding performance than shortening (measured), so it is used only when even
    that start exceeds ``f_start`` by more than ``headroom`` (QBERs below the highest rate's
    range): then up to 20 % of M untainted bits bring the start down towards
    ``f_start + headroom``. Only codes without 4-cycles are used (short high-rate codes have
    them: BP stalls on them); the next rate down replaces one that has."""
    h = binary_entropy(qber)
    frames = -(-n // frame_bits)
    k = -(-n // frames)
    # Rates by preference: the smallest start not below f_start first, then higher starts
    # (lower rates), then the codes that would start below it.
    starts = {rate: round(frame_bits * (1 - rate)) / (k * h) for rate in RATES}
    above = sorted((r for r in RATES if starts[r] >= f_start), key=lambda r: starts[r])
    below = sorted((r for r in RATES if starts[r] < f_start), key=lambda r: -starts[r])
    for rate in above + below:
        if 8 * _mean_check_degree(rate) > round(frame_bits * (1 - rate)):
            continue                      # too few checks for their degree at this length
        code = mother_code(rate, frame_bits)
        if code.four_cycles == 0:
            break
    else:
        rate = RATES[0]
        code = mother_code(rate, frame_bits)
    start = starts[rate]
    punctured = 0
    if start > f_start + headroom:
        target = (f_start + headroom) * k * h
        punctured = int(min(len(code.puncture), 0.2 * code.m, code.m - target,
                            frame_bits - k))
        punctured = max(punctured, 0)
    return rate, frames, punctured


# ---- the two sides -------------------------------------------------------------------------

class LDPCAlice(AliceSide):
    """Alice's side: syndromes of her framed key, then parities of extra checks on request.

    ``secret_seed`` seeds the random bits that fill punctured positions (secret: only for
    reproducible tests; default fresh from the OS)."""

    def __init__(self, key, secret_seed=None):
        super().__init__(key)
        self.plan = None
        self._rng = np.random.default_rng(secret_seed)

    def respond(self, message):
        check_protocol(message, PROTOCOL)
        op = message_field(message, "op", str)
        if op == "syndrome":
            return self._syndrome(message)
        if op == "extend":
            return self._extend(message)
        raise ValueError(f"Unknown LDPC operation {op!r}; expected 'syndrome' or 'extend'")

    def _syndrome(self, message):
        if self.plan is not None:
            raise ValueError("Alice already sent the syndromes of this key")
        n = message_field(message, "n", int)
        if n != self.n:
            raise ValueError(f"Bob's key has {n} bits but Alice's has {self.n}")
        seed = check_seed(message_field(message, "seed", int))
        rate = message_field(message, "rate", float)
        if rate not in DISTRIBUTIONS:
            raise ValueError(f"No mother code of rate {rate!r}; rates are {RATES}")
        frame_bits = message_field(message, "frame_bits", int)
        check_frame_bits(frame_bits)
        code = mother_code(rate, frame_bits)
        digest = message_field(message, "digest", str)
        if digest != code.digest:
            raise ValueError(f"Bob's code {digest} differs from Alice's {code.digest} (rate "
                             f"{rate}, {frame_bits} bits)")
        frames = message_field(message, "frames", int)
        punctured = message_field(message, "punctured", int)
        degree = message_field(message, "degree", int)
        if not 1 <= frames <= self.n:
            raise ValueError(f"The number of frames must lie in 1 .. {self.n}, not {frames}")
        if not 0 <= punctured <= len(code.puncture):
            raise ValueError(f"The punctured bits per frame must lie in 0 .. "
                             f"{len(code.puncture)}, not {punctured}")
        plan = _Plan(code, self.n, frames, punctured, seed)
        if not 1 <= degree <= int(plan.keys.min()):
            raise ValueError(f"The degree of extra checks must lie in 1 .. "
                             f"{int(plan.keys.min())}, not {degree}")
        words = np.zeros((frames, code.n), np.uint8)
        for i in range(frames):
            words[i, plan.key_positions(i)] = self.key[plan.starts[i]:plan.starts[i + 1]]
            words[i, plan.punct] = self._rng.integers(0, 2, punctured, dtype=np.uint8)
        self.plan = plan
        self.degree = degree
        self.words = words
        self.extended = np.zeros(frames, np.int64)
        self.disclosed_bits += frames * (code.m - punctured)
        self.rounds += 1
        return {"protocol": PROTOCOL, "frames": frames,
                "syndromes": np.packbits(code.syndrome(words), axis=1).ravel()}

    def _extend(self, message):
        if self.plan is None:
            raise ValueError("Bob asked for extra checks before the syndromes")
        frames = message_field(message, "frames", np.int64)
        counts = message_field(message, "counts", np.int64)
        if len(frames) != len(counts):
            raise ValueError(f"The request names {len(frames)} frames but {len(counts)} "
                             f"counts")
        if len(frames) and (frames.min() < 0 or frames.max() >= self.plan.frames
                            or len(np.unique(frames)) != len(frames)):
            raise ValueError(f"The request names frames {frames.tolist()[:8]}, not distinct "
                             f"frames of 0 .. {self.plan.frames - 1}")
        if len(counts) and (counts.min() < 1 or counts.max() > self.plan.code.n):
            raise ValueError(f"Extra checks per request must lie in 1 .. {self.plan.code.n}, "
                             f"not {int(counts.min())} .. {int(counts.max())}")
        limit = self.plan.code.n
        if len(frames) and (self.extended[frames] + counts).max() > limit:
            raise ValueError(f"A frame may have at most {limit} extra checks")
        out = []
        for frame, count in zip(frames.tolist(), counts.tolist(), strict=True):
            ptr, var = self.plan.extra_rows(frame, self.degree, int(self.extended[frame]),
                                            count)
            out.append(_syndromes(ptr, var, self.words[frame:frame + 1])[0])
            self.extended[frame] += count
        self.disclosed_bits += int(counts.sum())
        self.rounds += 1
        return {"protocol": PROTOCOL, "parities": np.concatenate(out) if out
                else np.zeros(0, np.uint8)}


class LDPC(Reconciler):
    """Rate-adaptive LDPC reconciliation with blind retries (module docstring).

    Options: ``frame_bits`` (longest code, a multiple of 256 in 2^10 .. 2^20; default 2^16:
    a key takes ``F = ceil(n / frame_bits)`` frames of ``ceil(n / F)`` key bits, each in a
    code of that length rounded up to 1/16 of its power of two, so at most 1/16 of a frame is
    shortened padding), ``f_start`` (lowest efficiency the first decoding attempt is set
    up for; default 1.02), ``step`` (efficiency added by each retry, default 0.01),
    ``f_max`` (give up a frame beyond this, default 2.0), ``max_iter`` (decoder iterations
    of the first attempt, default 100; each retry continues for ``retry_iter``, default 30;
    every fourth attempt restarts from the channel), ``stall`` (stop an attempt after this
    many iterations without fewer unsatisfied checks, default 12), ``seed`` (session seed
    for the frame layout and extra checks; default fresh), ``secret_seed`` (Alice's
    punctured-bit randomness; tests only).

    ``stats`` adds ``rate``, ``frame_bits``, ``frames``, ``punctured``, ``degree`` and
    ``extra_checks`` (parities of extra checks after failures), ``failed_frames``,
    ``iterations`` (decoder iterations, all frames) and ``f_start``."""

    name = "ldpc"

    def __init__(self, frame_bits=None, f_start=1.02, step=0.01, f_max=2.0, max_iter=100,
                 retry_iter=30, stall=12, seed=None, secret_seed=None):
        if frame_bits is not None:
            check_frame_bits(frame_bits, "frame_bits")
        if not 0.5 <= f_start <= 3.0:
            raise ValueError(f"f_start must lie in [0.5, 3], not {f_start!r}")
        if not 0.0 < step <= 1.0:
            raise ValueError(f"step must lie in (0, 1], not {step!r}")
        if not f_max >= f_start:
            raise ValueError(f"f_max ({f_max!r}) must not be below f_start ({f_start!r})")
        for name, value in (("max_iter", max_iter), ("retry_iter", retry_iter),
                            ("stall", stall)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.frame_bits = frame_bits
        self.f_start = float(f_start)
        self.step = float(step)
        self.f_max = float(f_max)
        self.max_iter = max_iter
        self.retry_iter = retry_iter
        self.stall = stall
        self.seed = None if seed is None else check_seed(seed)
        self.secret_seed = secret_seed

    def alice(self, key):
        return LDPCAlice(key, self.secret_seed)

    def _frame_bits(self, n):
        """Code length for ``n`` key bits: the fewest frames of at most ``frame_bits``, each
        code as long as a frame's key bits rounded up to 1/16 of their power of two (at
        least 256), so that keys of similar lengths share codes (each new length costs a
        code construction on both sides) and at most 1/16 of a frame is shortened padding."""
        longest = FRAME_BITS if self.frame_bits is None else self.frame_bits
        frames = -(-n // longest)
        k = -(-n // frames)
        quantum = max(_FRAME_QUANTUM, (1 << (k.bit_length() - 1)) // 16)
        return min(max(_MIN_FRAME_BITS, -(-k // quantum) * quantum), longest)

    def bob(self, key, qber, ask):
        original = check_key(key, "Bob's key")
        qber = check_qber(qber)
        n = len(original)
        seed = fresh_seed() if self.seed is None else self.seed
        frame_bits = self._frame_bits(n)
        rate, frames, punctured = _choose_plan(n, qber, frame_bits, self.f_start)
        code = mother_code(rate, frame_bits)
        plan = _Plan(code, n, frames, punctured, seed)
        # Extra checks: parity of about 0.6/Q key bits is odd with probability ~0.35, so it
        # tells Bob ~0.93 bit per disclosed bit and still passes useful messages.
        degree = int(min(plan.keys.min(), max(4, round(0.6 / qber))))
        reply = ask({"protocol": PROTOCOL, "op": "syndrome", "n": n, "seed": seed,
                     "rate": rate, "frame_bits": frame_bits, "digest": code.digest,
                     "frames": frames, "punctured": punctured, "degree": degree})
        rounds = 1
        disclosed = frames * (code.m - punctured)
        packed = message_field(reply, "syndromes", np.uint8, who="reply")
        row = (code.m + 7) // 8
        if len(packed) != frames * row:
            raise ValueError(f"Alice sent {len(packed)} syndrome bytes, not {frames * row}")
        syndromes = np.unpackbits(packed.reshape(frames, row), axis=1)[:, :code.m].copy()
        h = binary_entropy(qber)
        llr = np.float32(math.log((1.0 - qber) / qber))
        states = []
        for i in range(frames):
            post = np.zeros(code.n, np.float32)
            positions = plan.key_positions(i)
            post[positions] = np.where(original[plan.starts[i]:plan.starts[i + 1]], -llr, llr)
            post[plan.shortened(i)] = KNOWN_LLR
            states.append({"post": post, "prior": post.copy(),
                           "msg": np.zeros(code.edges, np.float32), "attempts": 0,
                           "positions": positions, "ok": False, "budget": self.max_iter,
                           "rows": [np.zeros(1, np.int64), np.zeros(0, np.int64),
                                    np.zeros(0, np.uint8), np.zeros(0, np.float32)]})
        iterations = 0
        extra = 0
        pending = list(range(frames))
        while pending:
            failed = []
            for i in pending:
                state = states[i]
                state["attempts"] += 1
                if state["attempts"] % _RESTART == 0:
                    # A decoder stuck in a wrong state can keep it against new parities:
                    # start again from the channel, with every parity known so far.
                    state["msg"][:] = 0
                    state["rows"][3][:] = 0
                    state["post"][:] = state["prior"]
                    state["budget"] = self.max_iter
                ok, its = _decode(code.chk_ptr, code.chk_var, syndromes[i], state["msg"],
                                  *state["rows"], state["post"], state["budget"], self.stall,
                                  _PHI)
                iterations += its
                state["ok"] = bool(ok)
                state["budget"] = self.retry_iter
                if not ok:
                    failed.append(i)
            asks, counts = [], []
            for i in failed:
                k = int(plan.keys[i])
                count = max(4, math.ceil(self.step * k * h), math.ceil(0.01 * code.m))
                rows = len(states[i]["rows"][2])
                count = min(count, math.floor(self.f_max * k * h) - (code.m - punctured) - rows,
                            code.n - rows)
                if count > 0:
                    asks.append(i)
                    counts.append(count)
            if not asks:
                break
            reply = ask({"protocol": PROTOCOL, "op": "extend",
                         "frames": np.array(asks, np.int64),
                         "counts": np.array(counts, np.int64)})
            rounds += 1
            parities = message_field(reply, "parities", np.uint8, who="reply")
            if len(parities) != sum(counts) or (len(parities) and parities.max() > 1):
                raise ValueError(f"Alice sent {len(parities)} parities, not {sum(counts)}")
            start = 0
            for i, count in zip(asks, counts, strict=True):
                ptr, var, syn, msg = states[i]["rows"]
                new_ptr, new_var = plan.extra_rows(i, degree, len(syn), count)
                states[i]["rows"] = [np.concatenate((ptr, ptr[-1] + new_ptr[1:])),
                                     np.concatenate((var, new_var)),
                                     np.concatenate((syn, parities[start:start + count])),
                                     np.concatenate((msg, np.zeros(len(new_var), np.float32)))]
                start += count
            disclosed += sum(counts)
            extra += sum(counts)
            pending = asks
        corrected = original.copy()
        for i, state in enumerate(states):
            corrected[plan.starts[i]:plan.starts[i + 1]] = state["post"][state["positions"]] < 0
        failed_frames = sum(not state["ok"] for state in states)
        stats = {"method": self.name, "disclosed_bits": disclosed, "rounds": rounds,
                 "success": failed_frames == 0, "seed": seed, "rate": rate,
                 "frame_bits": frame_bits, "frames": frames, "punctured": punctured,
                 "degree": degree, "extra_checks": extra, "failed_frames": failed_frames,
                 "iterations": iterations, "f_start": self.f_start}
        return corrected, finish_stats(stats, original, corrected, qber)
