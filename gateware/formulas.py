"""Formulas for the reset values and ranges of settings, shared by the gateware (which builds
its ports from them), the register map and the host: plain Python, no Amaranth.

Ref: NIST SP 800-90B (January 2018), sections 4.4.1 and 4.4.2, for the health-test cutoffs.
"""

import math
from fractions import Fraction
from functools import lru_cache
from numbers import Real

from .checks import check_int
from .records import MAX_INTENSITY_CLASSES

__all__ = ["sp800_90b_cutoffs", "probability_settings"]

# Above this many bits per exact binomial term, the APT cutoff is found in log space instead.
_EXACT_TERM_BITS = 1 << 17


def _check_real(what, value, low, high, *, high_open):
    """``value`` as a float in ``(low, high]`` (``(low, high)`` if ``high_open``)."""
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{what} must be a real number, not {value!r}")
    bound = f"({low}, {high})" if high_open else f"({low}, {high}]"
    if not (low < value < high or (not high_open and value == high)):
        raise ValueError(f"{what} must be in {bound}, not {value!r}")
    return float(value)


def _critbinom_exact(n, p, alpha):
    """Smallest ``k`` with BinomCDF(k; n, p) >= 1 - alpha, in exact integer arithmetic.

    A float is a dyadic rational, ``p = a / 2**e``; term ``k`` of the binomial distribution
    scaled by ``2**(e*n)`` is the integer ``C(n, k) a**k b**(n-k)`` with ``b = 2**e - a``.
    The upper tail ``P(X >= k)`` is summed from ``k = n`` down until it exceeds ``alpha``.
    """
    p, alpha = Fraction(p), Fraction(alpha)
    a, scale = p.numerator, p.denominator
    b = scale - a
    limit = alpha * scale ** n          # alpha, scaled as the terms are
    term, tail = a ** n, 0              # term k = n: p**n
    for k in range(n, 0, -1):
        tail += term
        if tail > limit:                # P(X >= k) > alpha, P(X >= k + 1) <= alpha
            return k
        # term(k - 1) * (n - k + 1) * a == term(k) * k * b exactly, so the division is exact.
        term = term * k * b // ((n - k + 1) * a)
    return 0


def _critbinom_log(n, p, alpha):
    """:func:`_critbinom_exact` in log space (relative accuracy about 1e-10), for large terms."""
    log_p, log_q, log_alpha = math.log(p), math.log1p(-p), math.log(alpha)
    log_n = math.lgamma(n + 1)
    log_tail = -math.inf
    for k in range(n, 0, -1):
        log_term = log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p \
            + (n - k) * log_q
        high, low = max(log_tail, log_term), min(log_tail, log_term)
        log_tail = high + math.log1p(math.exp(low - high))
        if log_tail > log_alpha:
            return k
    return 0


@lru_cache(maxsize=256)
def _cutoffs(h_min, alpha, window):
    # 4.4.1: C = 1 + ceil(-log2(alpha) / H). The quotient is taken exactly on the float values
    # given, so that e.g. alpha = 2**-20, H = 1 gives 21 and not 22 by a rounding error.
    rct = 1 + math.ceil(Fraction(-math.log2(alpha)) / Fraction(h_min))
    # 4.4.2: C = 1 + CRITBINOM(W, 2**-H, 1 - alpha); CRITBINOM(n, p, q) is the smallest k with
    # BinomCDF(k; n, p) >= q (the Excel function the section names).
    p = 2.0 ** -h_min
    if window * (Fraction(p).denominator.bit_length() - 1) <= _EXACT_TERM_BITS:
        crit = _critbinom_exact(window, p, alpha)
    else:
        crit = _critbinom_log(window, p, alpha)
    return rct, 1 + crit


def sp800_90b_cutoffs(h_min=1.0, alpha=2**-20, window=1024):
    """Cutoffs ``(rct_cutoff, apt_cutoff)`` of the SP 800-90B health tests.

    ``h_min`` is the assessed min-entropy per sample in bits (H), ``alpha`` the false-positive
    probability per test (SP 800-90B recommends 2**-20 to 2**-40), ``window`` the APT window
    (W: 1024 for binary sources, 512 otherwise). The RCT cutoff follows section 4.4.1,
    ``C = 1 + ceil(-log2(alpha) / H)``; the APT cutoff section 4.4.2,
    ``C = 1 + CRITBINOM(W, 2**-H, 1 - alpha)``, computed exactly (or, for windows whose terms
    would exceed 2**17 bits, in log space). H = 1, alpha = 2**-20, W = 1024 gives (21, 589).

    An APT cutoff of ``window + 1`` means the window is too short for ``alpha``: no window can
    fail the test.
    """
    h_min = _check_real("Min-entropy per sample", h_min, 0, math.inf, high_open=True)
    alpha = _check_real("False-positive probability alpha", alpha, 0, 1, high_open=True)
    check_int("APT window", window, minimum=1)
    return _cutoffs(h_min, alpha, window)


def probability_settings(prob_bits, p_z, intensity_probs):
    """Turn probabilities into the integer settings of :class:`SymbolSource`.

    Returns ``(p_z_code, thresholds)``: P(Z) = ``p_z_code / 2**prob_bits``; intensity class
    ``k`` is drawn when ``thresholds[k-1] <= r < thresholds[k]`` for a uniform ``r`` of
    ``prob_bits`` bits (three cumulative thresholds, missing classes padded with
    ``2**prob_bits``). Rounding is to the nearest code; the cumulative sum is rounded, so the
    realised probabilities add to exactly one.
    """
    check_int("Probability precision", prob_bits, minimum=1, maximum=24)
    one = 1 << prob_bits
    if not 0.0 <= p_z <= 1.0:
        raise ValueError(f"P(Z) must be within [0, 1], not {p_z!r}")
    probs = list(intensity_probs)
    if not 1 <= len(probs) <= MAX_INTENSITY_CLASSES:
        raise ValueError(f"Intensity classes must number 1 to {MAX_INTENSITY_CLASSES}, "
                         f"not {len(probs)} ({probs!r})")
    if any(not 0.0 <= q <= 1.0 for q in probs) or abs(sum(probs) - 1.0) > 1e-9:
        raise ValueError(f"Intensity probabilities must be within [0, 1] and sum to 1, "
                         f"not {probs!r}")
    cumulative, total = [], 0.0
    for q in probs[:-1]:
        total += q
        cumulative.append(round(total * one))
    cumulative += [one] * (MAX_INTENSITY_CLASSES - 1 - len(cumulative))
    return round(p_z * one), cumulative
