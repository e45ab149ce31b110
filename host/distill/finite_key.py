"""Finite-key decoy-state parameter estimation: the secret key length of a block.

Three bounds, selected by ``protocol`` in :func:`key_length`:

``"1decoy-4state"``
    The one-decoy bound of Rusca, Boaron, Grünenfelder, Martin, Zbinden, "Finite-key
    analysis for the 1-decoy state QKD protocol", Appl. Phys. Lett. 112, 171104 (2018),
    arXiv:1801.03443, Appendix A, Eqs. (A1)-(A25). Two intensities ``mu1 > mu2 > 0``.
``"1decoy-3state"``
    The same bound applied to the 3-state time-bin protocol (Alice sends Z0, Z1 and X+ only;
    Boaron et al., PRL 121, 190502 (2018); Rusca et al., "Security proof for a simplified
    BB84-like QKD protocol", PRA 98, 052336 (2018), arXiv:1808.08259). See
    "3-state protocol" below for what differs and what is assumed.
``"2decoy"``
    The two-decoy bound of Lim, Curty, Walenta, Xu, Zbinden, "Concise security bounds for
    practical decoy-state quantum key distribution", PRA 89, 022307 (2014),
    arXiv:1311.7129, Eqs. (1)-(5) and Appendix A, Eqs. (A1)-(A10). Three intensities
    ``mu1 > mu2 + mu3``, ``mu2 > mu3 >= 0``.

Conventions (those of Rusca 2018): the **Z basis carries the key**, the **X basis** is
disclosed for parameter estimation. (Lim 2014 uses the opposite names; its formulas are
transcribed here with X and Z swapped.) ``n_{B,k}`` are the detections (sifted: Alice and
Bob both used basis ``B``) of pulses of intensity ``k``, ``m_{B,k}`` their bit errors; the
totals are ``n_B`` and ``m_B``. Counts may be non-integer (expected counts of a model).

**3-state protocol.** In the 3-state protocol the X-basis statistics come from ``|+>`` alone:
``n_{X,k}`` are Bob's X detections (the interfering middle slot of the one-bin interferometer,
either port) of ``|+>`` pulses of intensity ``k``, and ``m_{X,k}`` those at the port of
``|->`` (the errors). The missing state is handled in the security proof by the loss-tolerant
argument (Tamaki et al., PRA 90, 052314 (2014)): for single photons the ``|->`` statistics
follow from those of ``|0>``, ``|1>`` and ``|+>`` because ``|0><0| + |1><1| = |+><+| +
|-><-|``; the asymptotic single-photon phase error rate is then
``e_ph = (Y_{+,-} + Y_{0,+} + Y_{1,+} - Y_{+,+}) / (Y_{0,X} + Y_{1,X})`` (``Y_{s,j}``:
yield of Bob's X outcome ``j`` for Alice's state ``s``, ``Y_{s,X}`` both ports; Bob's
detection efficiency independent of his basis), which equals the ``|+>`` error rate
``Y_{+,-} / Y_{+,X}`` when the X detections of the Z states split evenly between the two
ports (``Y_{0,+} + Y_{1,+} = Y_{0,-} + Y_{1,-}``) and the X-measurement yield does not
depend on Alice's state (``Y_{0,X} + Y_{1,X} = 2 Y_{+,X}``). Rusca et al.
PRA 98, 052336 (2018) prove the finite-key version for the Geneva time-bin receiver, whose
phase-error estimator uses slot-resolved X-detector counts of *sequences* of Alice's states
(the inter-symbol slot of the interferometer). **The text of that paper's finite-key
phase-error formula could not be obtained for this implementation.** What is implemented
instead for ``"1decoy-3state"`` is exactly the APL 2018 bound (the same formulas as
``"1decoy-4state"``) fed with the ``|+>``-only X statistics above. Its phase-error step
(A20)-(A23) then estimates the 3-state single-photon phase error under the symmetry
assumptions just stated (exactly so asymptotically, by the formula above; the finite-size
terms are those of the 4-state analysis, not re-derived here for 3 states). The receiver must
justify the assumptions (Lim 2014, section V, makes the same detector assumption for 4
states); both are observable from the X detections of Z-basis pulses, which this bound does
not take as input.

Every step is its own function with its equation numbers; :func:`key_length` chains them
and returns every intermediate bound in a :class:`FiniteKeyResult`. The module also holds
the expected-counts model of a link (:class:`LinkModel`, :func:`expected_counts`) so that
the bounds can be evaluated on expected data, and the asymptotic GLLP rate with infinitely
many decoys (:func:`asymptotic_rate`) for reference. Pure Python and numpy; no Amaranth.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "PROTOCOLS",
    "RUSCA_EPS_TERMS",
    "LIM_EPS_TERMS",
    "GAMMA_CONSTANT",
    "FiniteKeyResult",
    "AsymptoticResult",
    "LinkModel",
    "binary_entropy",
    "hoeffding_delta",
    "photon_number_probability",
    "corrected_counts",
    "vacuum_upper_1decoy",
    "vacuum_lower_1decoy",
    "single_photon_lower_1decoy",
    "single_photon_errors_upper_1decoy",
    "vacuum_lower_2decoy",
    "single_photon_lower_2decoy",
    "single_photon_errors_upper_2decoy",
    "gamma_sampling",
    "phase_error_upper",
    "security_cost",
    "key_length",
    "detection_probabilities",
    "expected_counts",
    "ec_leakage",
    "asymptotic_rate",
]

#: The bound names :func:`key_length` accepts.
PROTOCOLS = ("1decoy-3state", "1decoy-4state", "2decoy")

#: Rusca 2018 (A24): eps_sec = 2[a1 + 2 a2 + a3] + nu + 6 eps1 + 4 eps2 = 19 eps when every
#: error term equals eps; the Hoeffding bounds (A2), (A4) use eps1 = eps2 = eps_sec / 19.
RUSCA_EPS_TERMS = 19
#: Lim 2014 (B4): eps_sec = 2[2 a1 + a2 + a3] + nu + 10 eps1 + 2 eps2 = 21 eps; the deviations
#: of Eqs. (2)-(4) use ln(21 / eps_sec).
LIM_EPS_TERMS = 21
#: The constant of the random-sampling bound gamma: ``21**2 / eps_sec**2`` in the logarithm
#: of Lim 2014 Eq. (5) (alpha_1 = eps_sec / 21 in (B2)). Rusca 2018 (A21) takes gamma from
#: Lim; its own composition (A24) would allow 19. We use 21 for both bounds: gamma grows with
#: the constant, so this is the conservative reading.
GAMMA_CONSTANT = 21


# --------------------------------------------------------------------------------------------
# Validation helpers


def _check_eps(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), not {value!r}") from None
    if not (0.0 < v < 1.0):
        raise ValueError(f"{name} must be in (0, 1), not {value!r}")
    return v


def _check_non_negative(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-negative number, not {value!r}") from None
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"{name} must be a finite non-negative number, not {value!r}")
    return v


def _check_probability(name, value, *, open_low=False, open_high=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a probability, not {value!r}") from None
    low_ok = v > 0.0 if open_low else v >= 0.0
    high_ok = v < 1.0 if open_high else v <= 1.0
    if not (math.isfinite(v) and low_ok and high_ok):
        lo = "(0" if open_low else "[0"
        hi = "1)" if open_high else "1]"
        raise ValueError(f"{name} must be in {lo}, {hi}, not {value!r}")
    return v


def _as_floats(name, values, length=None):
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, not {values!r}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, not {values!r}")
    if length is not None and arr.size != length:
        raise ValueError(f"{name} must have {length} values (one per intensity), "
                         f"not {arr.size}: {values!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, not {values!r}")
    return [float(x) for x in arr]


def _check_source(protocol, intensities, probabilities):
    """Validate the intensities and their probabilities for ``protocol``; return lists."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    n = 3 if protocol == "2decoy" else 2
    mus = _as_floats("intensities", intensities)
    if len(mus) != n:
        raise ValueError(f"protocol {protocol!r} needs {n} intensities, not {len(mus)}: "
                         f"{intensities!r}")
    ps = _as_floats("probabilities", probabilities, n)
    if n == 2:
        mu1, mu2 = mus
        if not (mu1 > mu2 > 0.0):
            raise ValueError("intensities must satisfy mu1 > mu2 > 0 (signal, decoy; Rusca "
                             f"2018), not {intensities!r}")
    else:
        mu1, mu2, mu3 = mus
        if not (mu3 >= 0.0 and mu2 > mu3 and mu1 > mu2 + mu3):
            raise ValueError("intensities must satisfy mu1 > mu2 + mu3 and mu2 > mu3 >= 0 "
                             f"(Lim 2014), not {intensities!r}")
    for i, p in enumerate(ps):
        if not (0.0 < p <= 1.0):
            raise ValueError(f"probabilities must each be in (0, 1], not {probabilities!r} "
                             f"(value {p!r} of intensity {i})")
    if abs(sum(ps) - 1.0) > 1e-6:
        raise ValueError(f"probabilities must sum to 1, not {sum(ps)!r}: {probabilities!r}")
    return mus, ps


def _check_counts(counts, n):
    """Validate ``counts`` = {"Z": {"n", "m"}, "X": {"n", "m"}}; return four float lists."""
    if not isinstance(counts, dict):
        raise ValueError(f"counts must be a dict with keys 'Z' and 'X', not {counts!r}")
    out = []
    for basis in ("Z", "X"):
        if basis not in counts or not isinstance(counts[basis], dict):
            raise ValueError(f"counts must have a dict {basis!r} with keys 'n' and 'm', "
                             f"not {counts.get(basis)!r}")
        for key in ("n", "m"):
            if key not in counts[basis]:
                raise ValueError(f"counts[{basis!r}] lacks {key!r}")
        det = _as_floats(f"counts[{basis!r}]['n']", counts[basis]["n"], n)
        err = _as_floats(f"counts[{basis!r}]['m']", counts[basis]["m"], n)
        for i, (d, e) in enumerate(zip(det, err, strict=True)):
            if d < 0:
                raise ValueError(f"counts[{basis!r}]['n'][{i}] (detections) must be "
                                 f"non-negative, not {d!r}")
            if e < 0:
                raise ValueError(f"counts[{basis!r}]['m'][{i}] (errors) must be "
                                 f"non-negative, not {e!r}")
            if e > d:
                raise ValueError(f"counts[{basis!r}]['m'][{i}] = {e!r} errors exceed the "
                                 f"{d!r} detections")
        out += [det, err]
    return out


# --------------------------------------------------------------------------------------------
# Shared steps


def binary_entropy(p):
    """Binary Shannon entropy ``h(p) = -p log2 p - (1-p) log2(1-p)``, ``h(0) = h(1) = 0``.

    Parameters
    ----------
    p : float or array_like
        Probabilities in [0, 1].

    Returns
    -------
    float or numpy.ndarray
        ``h(p)`` in bits.
    """
    if isinstance(p, (float, int)):
        x = float(p)
        if not (0.0 <= x <= 1.0):
            raise ValueError(f"binary_entropy needs probabilities in [0, 1], not {p!r}")
        if x == 0.0 or x == 1.0:
            return 0.0
        return -x * math.log2(x) - (1.0 - x) * math.log2(1.0 - x)
    arr = np.asarray(p, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"binary_entropy needs probabilities in [0, 1], not {p!r}")
    if arr.ndim == 0:
        x = float(arr)
        if x <= 0.0 or x >= 1.0:
            return 0.0
        return -x * math.log2(x) - (1.0 - x) * math.log2(1.0 - x)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -arr * np.log2(arr) - (1 - arr) * np.log2(1 - arr)
    return np.where((arr <= 0) | (arr >= 1), 0.0, out)


def hoeffding_delta(n, eps):
    """Hoeffding deviation ``delta(n, eps) = sqrt(n/2 * ln(1/eps))``.

    Rusca 2018 Eqs. (A2), (A4); Lim 2014 Eqs. (A1), (A2): with probability at least
    ``1 - 2 eps`` the count assigned to one intensity deviates from its asymptotic value by at
    most ``delta(n, eps)``, ``n`` the total count of the basis (same for every intensity).

    Parameters
    ----------
    n : float
        Total detections (or errors) of the basis, >= 0.
    eps : float
        Failure probability in (0, 1).
    """
    n = _check_non_negative("n", n)
    eps = _check_eps("eps", eps)
    return math.sqrt(n / 2.0 * math.log(1.0 / eps))


def photon_number_probability(n, intensities, probabilities):
    """``tau_n = sum_k p_k exp(-k) k^n / n!``: the probability that Alice sends ``n`` photons.

    Rusca 2018 Eq. (A5); Lim 2014 Eq. (A3) and below Eq. (2).
    """
    if int(n) != n or n < 0:
        raise ValueError(f"photon number n must be a non-negative integer, not {n!r}")
    n = int(n)
    fact = math.factorial(n)
    return sum(p * math.exp(-k) * k ** n / fact
               for k, p in zip(intensities, probabilities, strict=True))


def corrected_counts(values, total, intensities, probabilities, eps):
    """Finite-size corrected, rescaled counts ``x^-_k, x^+_k``.

    ``x^±_k = (e^k / p_k) (x_k ± delta(x_total, eps))`` for every intensity ``k``: Rusca 2018
    Eq. (A18) (the ``e^k/p_k`` factor as in Lim; (A18) as printed omits it, (A10), (A17) and
    (A19) need it) for detections ``n^±_{B,k}`` and errors ``m^±_{B,k}``; Lim 2014 below
    Eqs. (2) and (4), and (A7)-(A10).

    Parameters
    ----------
    values : sequence of float
        The per-intensity counts ``x_k`` (detections or errors of one basis).
    total : float
        Their total ``x_B`` (the Hoeffding deviation uses it).
    intensities, probabilities : sequence of float
        ``k`` and ``p_k``.
    eps : float
        The failure probability of one Hoeffding bound (``eps_sec/19`` or ``eps_sec/21``).

    Returns
    -------
    (tuple, tuple)
        ``(x^-, x^+)``, one value per intensity.
    """
    delta = hoeffding_delta(total, eps)
    minus = tuple(math.exp(k) / p * (x - delta)
                  for x, k, p in zip(values, intensities, probabilities, strict=True))
    plus = tuple(math.exp(k) / p * (x + delta)
                 for x, k, p in zip(values, intensities, probabilities, strict=True))
    return minus, plus


def gamma_sampling(a, b, c, d, constant=GAMMA_CONSTANT):
    """Random sampling without replacement: the deviation ``gamma(a, b, c, d)``.

    Lim 2014 Eq. (5) and (B2); Rusca 2018 Eq. (A21)::

        gamma(a, b, c, d) = sqrt( (c+d)(1-b)b / (c d ln 2)
                                  * log2( (c+d) / (c d (1-b) b) * constant^2 / a^2 ) )

    with ``a = eps_sec``, ``b`` the observed single-photon error rate of the test basis,
    ``c, d`` the single-photon counts of the two bases. Returns 0 for ``b`` in ``{0, 1}``
    (the limit of the formula) and when the logarithm is not positive.
    """
    if c <= 0 or d <= 0:
        raise ValueError(f"gamma needs positive single-photon counts, not c={c!r}, d={d!r}")
    if b <= 0.0 or b >= 1.0:
        return 0.0
    spread = (c + d) * (1.0 - b) * b / (c * d * math.log(2.0))
    arg = (c + d) / (c * d * (1.0 - b) * b) * constant ** 2 / a ** 2
    if arg <= 1.0:
        return 0.0
    return math.sqrt(spread * math.log2(arg))


def phase_error_upper(v_x1, s_x1, s_z1, eps_sec, constant=GAMMA_CONSTANT):
    """Upper bound on the single-photon phase error rate of the key basis.

    Rusca 2018 Eqs. (A20), (A23); Lim 2014 Eq. (5)::

        phi_Z <= v_{X,1}/s_{X,1} + gamma(eps_sec, v_{X,1}/s_{X,1}, s_{Z,1}, s_{X,1})

    Parameters
    ----------
    v_x1 : float
        Upper bound on the single-photon errors of the X basis.
    s_x1, s_z1 : float
        Lower bounds on the single-photon detections of X and Z.
    eps_sec : float
        Secrecy parameter.

    Returns
    -------
    (float or None, float or None, float)
        ``(observed, gamma, phi)``: ``v_x1/s_x1``, the deviation, and the bound clamped to
        at most 1/2 (``1 - h(phi)`` is the key fraction; it is 0 from 1/2 on). Without
        single photons in either basis (``s_x1 <= 0`` or ``s_z1 <= 0``) the rate is
        unknown: ``(None, None, 0.5)``.
    """
    if s_x1 <= 0.0 or s_z1 <= 0.0:
        return None, None, 0.5
    observed = max(v_x1, 0.0) / s_x1
    if observed >= 0.5:
        return observed, None, 0.5
    gamma = gamma_sampling(eps_sec, observed, s_z1, s_x1, constant)
    return observed, gamma, min(observed + gamma, 0.5)


def security_cost(eps_sec, eps_cor, eps_terms):
    """The finite-key cost ``6 log2(eps_terms/eps_sec) + log2(2/eps_cor)`` in bits.

    Rusca 2018 Eq. (A25) (``eps_terms = 19``); Lim 2014 Eq. (1) (``eps_terms = 21``).
    """
    eps_sec = _check_eps("eps_sec", eps_sec)
    eps_cor = _check_eps("eps_cor", eps_cor)
    return 6.0 * math.log2(eps_terms / eps_sec) + math.log2(2.0 / eps_cor)


# --------------------------------------------------------------------------------------------
# One decoy: Rusca et al., APL 112, 171104 (2018), Appendix A


def vacuum_upper_1decoy(m_decoy, m_total, n_total, intensities, probabilities, eps):
    """Upper bound on the vacuum detections of one basis, one-decoy protocol.

    Rusca 2018 Eq. (A16) (from (A12)-(A15): vacuum detections are errors with probability
    1/2, and each intensity's error count bounds the vacuum errors)::

        s^u_{B,0} = 2 [ tau_0 (e^{mu2}/p_{mu2}) (m_{B,mu2} + delta(m_B, eps))
                        + delta(n_B, eps) ]

    The errors of the decoy ``mu2`` are used, as in the paper (the lower intensity has the
    lower error count per pulse).

    Parameters
    ----------
    m_decoy : float
        Errors of the decoy intensity ``m_{B,mu2}``.
    m_total, n_total : float
        Errors ``m_B`` and detections ``n_B`` of the basis.
    intensities, probabilities : sequence of float
        ``(mu1, mu2)`` and ``(p_mu1, p_mu2)``.
    eps : float
        Hoeffding failure probability (``eps_sec / 19``).
    """
    mu2, p2 = intensities[1], probabilities[1]
    tau0 = photon_number_probability(0, intensities, probabilities)
    return 2.0 * (tau0 * math.exp(mu2) / p2 * (m_decoy + hoeffding_delta(m_total, eps))
                  + hoeffding_delta(n_total, eps))


def vacuum_lower_1decoy(n_minus, n_plus, intensities, probabilities):
    """Lower bound on the vacuum detections of one basis, one-decoy protocol.

    Rusca 2018 Eq. (A19) (Lim 2014 (A4) with ``mu1, mu2`` for ``mu2, mu3``)::

        s^l_{B,0} = tau_0 / (mu1 - mu2) * (mu1 n^-_{B,mu2} - mu2 n^+_{B,mu1})

    Not clamped here (the caller clamps at 0, a trivial lower bound).
    """
    mu1, mu2 = intensities
    tau0 = photon_number_probability(0, intensities, probabilities)
    return tau0 / (mu1 - mu2) * (mu1 * n_minus[1] - mu2 * n_plus[0])


def single_photon_lower_1decoy(n_minus, n_plus, s0_upper, intensities, probabilities):
    """Lower bound on the single-photon detections of one basis, one-decoy protocol.

    Rusca 2018 Eq. (A17) (derived in (A6)-(A10); the vacuum enters with a negative sign,
    hence the *upper* bound (A16))::

        s^l_{B,1} = tau_1 mu1 / (mu2 (mu1 - mu2))
                    * [ n^-_{B,mu2} - (mu2^2/mu1^2) n^+_{B,mu1}
                        - (mu1^2 - mu2^2)/mu1^2 * s^u_{B,0} / tau_0 ]

    Not clamped here.
    """
    mu1, mu2 = intensities
    tau0 = photon_number_probability(0, intensities, probabilities)
    tau1 = photon_number_probability(1, intensities, probabilities)
    return tau1 * mu1 / (mu2 * (mu1 - mu2)) * (
        n_minus[1] - (mu2 ** 2 / mu1 ** 2) * n_plus[0]
        - (mu1 ** 2 - mu2 ** 2) / mu1 ** 2 * s0_upper / tau0)


def single_photon_errors_upper_1decoy(m_minus, m_plus, intensities, probabilities):
    """Upper bound on the single-photon bit errors of the X basis, one-decoy protocol.

    Rusca 2018 Eq. (A22) (as Lim 2014 (A6))::

        v^u_{X,1} = tau_1 / (mu1 - mu2) * (m^+_{X,mu1} - m^-_{X,mu2})
    """
    mu1, mu2 = intensities
    tau1 = photon_number_probability(1, intensities, probabilities)
    return tau1 / (mu1 - mu2) * (m_plus[0] - m_minus[1])


# --------------------------------------------------------------------------------------------
# Two decoys: Lim et al., PRA 89, 022307 (2014)


def vacuum_lower_2decoy(n_minus, n_plus, intensities, probabilities):
    """Lower bound on the vacuum detections of one basis, two-decoy protocol.

    Lim 2014 Eq. (2) (derived in (A4))::

        s_{B,0} >= tau_0 (mu2 n^-_{B,mu3} - mu3 n^+_{B,mu2}) / (mu2 - mu3)

    Not clamped here.
    """
    _, mu2, mu3 = intensities
    tau0 = photon_number_probability(0, intensities, probabilities)
    return tau0 * (mu2 * n_minus[2] - mu3 * n_plus[1]) / (mu2 - mu3)


def single_photon_lower_2decoy(n_minus, n_plus, s0_lower, intensities, probabilities):
    """Lower bound on the single-photon detections of one basis, two-decoy protocol.

    Lim 2014 Eq. (3) (derived in (A5))::

        s_{B,1} >= tau_1 mu1 [ n^-_{B,mu2} - n^+_{B,mu3}
                               - (mu2^2 - mu3^2)/mu1^2 (n^+_{B,mu1} - s_{B,0}/tau_0) ]
                   / ( mu1 (mu2 - mu3) - mu2^2 + mu3^2 )

    ``s0_lower`` is the lower bound of Eq. (2) (it enters with a positive sign). Not clamped.
    """
    mu1, mu2, mu3 = intensities
    tau0 = photon_number_probability(0, intensities, probabilities)
    tau1 = photon_number_probability(1, intensities, probabilities)
    return tau1 * mu1 * (
        n_minus[1] - n_plus[2]
        - (mu2 ** 2 - mu3 ** 2) / mu1 ** 2 * (n_plus[0] - s0_lower / tau0)
    ) / (mu1 * (mu2 - mu3) - mu2 ** 2 + mu3 ** 2)


def single_photon_errors_upper_2decoy(m_minus, m_plus, intensities, probabilities):
    """Upper bound on the single-photon bit errors of the X basis, two-decoy protocol.

    Lim 2014 Eq. (4) (derived in (A6))::

        v_{X,1} <= tau_1 (m^+_{X,mu2} - m^-_{X,mu3}) / (mu2 - mu3)
    """
    _, mu2, mu3 = intensities
    tau1 = photon_number_probability(1, intensities, probabilities)
    return tau1 * (m_plus[1] - m_minus[2]) / (mu2 - mu3)


# --------------------------------------------------------------------------------------------
# The key length


@dataclass(frozen=True)
class FiniteKeyResult:
    """The key length of a block and every bound on the way (see :func:`key_length`).

    Counts are those of the bound (``*_z`` the key basis Z, ``*_x`` the test basis X);
    per-intensity values are tuples in the order of ``intensities``. ``None`` marks a value
    the protocol does not have (the vacuum *upper* bounds of the two-decoy bound) or that is
    undefined (the observed phase error without single photons).
    """

    protocol: str
    key_length: int                  # floor of key_length_raw, 0 when it is negative
    key_length_raw: float            # Rusca (A25) / Lim (1) before the floor
    intensities: tuple               # of the Z states (tau_0, tau_1 are theirs)
    intensities_x: tuple             # of the X states
    probabilities: tuple
    eps_sec: float
    eps_cor: float
    eps_terms: int                   # 19 (Rusca A24) or 21 (Lim B4)
    eps_hoeffding: float             # eps_sec / eps_terms
    leak_ec: float
    n_z: float
    m_z: float
    n_x: float
    m_x: float
    qber_z: float | None
    qber_x: float | None
    tau_0: float
    tau_1: float
    delta_n_z: float
    delta_m_z: float
    delta_n_x: float
    delta_m_x: float
    n_z_minus: tuple
    n_z_plus: tuple
    n_x_minus: tuple
    n_x_plus: tuple
    m_z_minus: tuple
    m_z_plus: tuple
    m_x_minus: tuple
    m_x_plus: tuple
    s_z0_upper: float | None         # Rusca (A16), Z
    s_x0_upper: float | None         # Rusca (A16), X
    s_z0_bound: float                # Rusca (A19) / Lim (2), Z, before clamping at 0
    s_x0_bound: float
    s_z1_bound: float                # Rusca (A17) / Lim (3), before clamping at 0
    s_x1_bound: float
    v_x1_bound: float                # Rusca (A22) / Lim (4), before clamping at 0
    s_z0: float                      # max(0, s_z0_bound): used in the key length
    s_x0: float
    s_z1: float
    s_x1: float
    v_x1: float
    phase_error_observed: float | None   # v_x1 / s_x1
    gamma: float | None              # Rusca (A21) / Lim (5)
    phi_z: float                     # Rusca (A23) / Lim (5), at most 1/2
    single_photon_key: float         # s_z1 (1 - h(phi_z))
    security_cost: float             # 6 log2(eps_terms/eps_sec) + log2(2/eps_cor)

    def to_dict(self):
        """A JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


def key_length(counts, *, protocol="1decoy-3state", intensities, probabilities,
               eps_sec=1e-9, eps_cor=1e-15, leak_ec, intensities_x=None):
    """The secret key length of a block from its per-basis, per-intensity statistics.

    One decoy (``"1decoy-3state"``, ``"1decoy-4state"``; Rusca 2018 Appendix A), with
    ``eps1 = eps_sec/19``:

    1. ``n^±_{B,k}``, ``m^±_{B,k}`` (A18), deviations ``delta(n_B, eps1)``,
       ``delta(m_B, eps1)`` (A2), (A4);
    2. vacuum upper bounds ``s^u_{Z,0}``, ``s^u_{X,0}`` (A16);
    3. single-photon lower bounds ``s^l_{Z,1}``, ``s^l_{X,1}`` (A17);
    4. vacuum lower bound ``s^l_{Z,0}`` (A19);
    5. single-photon X errors ``v^u_{X,1}`` (A22);
    6. phase error ``phi^u_Z = v/s_{X,1} + gamma(eps_sec, v/s_{X,1}, s_{Z,1}, s_{X,1})``
       (A20), (A21), (A23);
    7. ``ell = s^l_{Z,0} + s^l_{Z,1}(1 - h(phi)) - lambda_EC - 6 log2(19/eps_sec)
       - log2(2/eps_cor)`` (A25).

    Two decoys (``"2decoy"``; Lim 2014), with ``ln(21/eps_sec)`` in the deviations: Eq. (2)
    ``s_{Z,0}``, ``s_{X,0}``; Eq. (3) ``s_{Z,1}``, ``s_{X,1}``; Eq. (4) ``v_{X,1}``; Eq. (5)
    ``phi_Z``; Eq. (1) ``ell = s_{Z,0} + s_{Z,1}(1 - h(phi)) - lambda_EC
    - 6 log2(21/eps_sec) - log2(2/eps_cor)``.

    For the 3-state protocol the X statistics are those of ``|+>`` alone; see the module
    documentation for what is assumed and what differs from the 3-state paper.

    Lower bounds of non-negative quantities are clamped at 0 before use (``s_0 >= 0`` and
    ``s_1 >= 0`` hold trivially); the unclamped formula values are returned too. Without
    single photons in either basis the phase error is taken as 1/2 (no single-photon key).

    Parameters
    ----------
    counts : dict
        ``{"Z": {"n": [...], "m": [...]}, "X": {"n": [...], "m": [...]}}``: detections and
        errors per intensity (order of ``intensities``), non-negative, errors at most
        detections.
    protocol : {"1decoy-3state", "1decoy-4state", "2decoy"}
    intensities : sequence of float
        ``(mu1, mu2)`` with ``mu1 > mu2 > 0``, or ``(mu1, mu2, mu3)`` with
        ``mu1 > mu2 + mu3``, ``mu2 > mu3 >= 0``.
    probabilities : sequence of float
        Alice's probability of each intensity, each in (0, 1], summing to 1.
    eps_sec, eps_cor : float
        Secrecy and correctness parameters in (0, 1) (defaults 1e-9, 1e-15 as Rusca 2018).
    leak_ec : float
        ``lambda_EC``: the bits error correction actually disclosed (>= 0).
    intensities_x : sequence of float or None
        The X-basis states' mean photon numbers per class when they differ from the Z
        states' (``intensities``), as a real modulator's codes make them; ``None``: the same.
        Each basis's decoy estimates (steps 1-5) use its own states' intensities: the
        decoy argument of a basis needs only the photon-number statistics of the pulses
        sent in it, and the phase-error step (6) couples the bases only through their
        single-photon counts (the single-photon states do not depend on the intensity).

    Returns
    -------
    FiniteKeyResult
        ``key_length`` (an int, never negative) and every intermediate bound.

    Raises
    ------
    ValueError
        Unknown protocol, intensities out of order, probabilities not summing to 1,
        negative counts, errors exceeding detections, eps outside (0, 1), negative leakage;
        the message names the value.
    """
    mus, ps = _check_source(protocol, intensities, probabilities)
    mus_x = mus if intensities_x is None else _check_source(protocol, intensities_x,
                                                            probabilities)[0]
    eps_sec = _check_eps("eps_sec", eps_sec)
    eps_cor = _check_eps("eps_cor", eps_cor)
    leak_ec = _check_non_negative("leak_ec", leak_ec)
    nz, mz, nx, mx = _check_counts(counts, len(mus))
    return _evaluate(protocol, mus, ps, nz, mz, nx, mx, eps_sec, eps_cor, leak_ec,
                     mus_x=mus_x)


def _evaluate(protocol, mus, ps, nz, mz, nx, mx, eps_sec, eps_cor, leak_ec, mus_x=None):
    """:func:`key_length` on validated inputs (lists of floats); also the optimiser's core.
    ``mus`` are the Z states' intensities, ``mus_x`` the X states' (default the same)."""
    mz_ = mus
    mx_ = mus if mus_x is None else mus_x
    one_decoy = protocol != "2decoy"
    terms = RUSCA_EPS_TERMS if one_decoy else LIM_EPS_TERMS
    eps1 = eps_sec / terms
    n_z, m_z, n_x, m_x = sum(nz), sum(mz), sum(nx), sum(mx)
    tau0 = photon_number_probability(0, mz_, ps)
    tau1 = photon_number_probability(1, mz_, ps)

    # Rusca (A18) / Lim below Eqs. (2), (4): rescaled counts with Hoeffding deviations
    # (A2), (A4) / (A1), (A2); each basis with its own states' intensities.
    nz_m, nz_p = corrected_counts(nz, n_z, mz_, ps, eps1)
    nx_m, nx_p = corrected_counts(nx, n_x, mx_, ps, eps1)
    mz_m, mz_p = corrected_counts(mz, m_z, mz_, ps, eps1)
    mx_m, mx_p = corrected_counts(mx, m_x, mx_, ps, eps1)

    if one_decoy:
        # Rusca (A16): vacuum upper bounds from the decoy's errors.
        sz0_u = vacuum_upper_1decoy(mz[1], m_z, n_z, mz_, ps, eps1)
        sx0_u = vacuum_upper_1decoy(mx[1], m_x, n_x, mx_, ps, eps1)
        # Rusca (A17): single-photon lower bounds (need the vacuum *upper* bounds).
        sz1_b = single_photon_lower_1decoy(nz_m, nz_p, sz0_u, mz_, ps)
        sx1_b = single_photon_lower_1decoy(nx_m, nx_p, sx0_u, mx_, ps)
        # Rusca (A19): vacuum lower bounds (the key takes s_{Z,0}).
        sz0_b = vacuum_lower_1decoy(nz_m, nz_p, mz_, ps)
        sx0_b = vacuum_lower_1decoy(nx_m, nx_p, mx_, ps)
        # Rusca (A22): single-photon errors of X.
        vx1_b = single_photon_errors_upper_1decoy(mx_m, mx_p, mx_, ps)
    else:
        sz0_u = sx0_u = None
        # Lim (2): vacuum lower bounds; (3) single-photon lower bounds (take s_0 >= its
        # bound, clamped at 0: a larger valid lower bound only helps (3)).
        sz0_b = vacuum_lower_2decoy(nz_m, nz_p, mz_, ps)
        sx0_b = vacuum_lower_2decoy(nx_m, nx_p, mx_, ps)
        sz1_b = single_photon_lower_2decoy(nz_m, nz_p, max(sz0_b, 0.0), mz_, ps)
        sx1_b = single_photon_lower_2decoy(nx_m, nx_p, max(sx0_b, 0.0), mx_, ps)
        # Lim (4): single-photon errors of the test basis.
        vx1_b = single_photon_errors_upper_2decoy(mx_m, mx_p, mx_, ps)

    sz0, sx0 = max(sz0_b, 0.0), max(sx0_b, 0.0)
    sz1, sx1 = max(sz1_b, 0.0), max(sx1_b, 0.0)
    vx1 = max(vx1_b, 0.0)
    # Rusca (A20), (A21), (A23) / Lim (5): phase error of the single photons of Z.
    observed, gamma, phi = phase_error_upper(vx1, sx1, sz1, eps_sec)
    # Rusca (A25) / Lim (1).
    private = sz1 * (1.0 - binary_entropy(phi))
    cost = security_cost(eps_sec, eps_cor, terms)
    raw = sz0 + private - leak_ec - cost
    length = int(math.floor(raw)) if raw > 0 else 0

    return FiniteKeyResult(
        protocol=protocol, key_length=length, key_length_raw=raw,
        intensities=tuple(mz_), intensities_x=tuple(mx_), probabilities=tuple(ps),
        eps_sec=eps_sec, eps_cor=eps_cor,
        eps_terms=terms, eps_hoeffding=eps1, leak_ec=leak_ec,
        n_z=n_z, m_z=m_z, n_x=n_x, m_x=m_x,
        qber_z=m_z / n_z if n_z > 0 else None, qber_x=m_x / n_x if n_x > 0 else None,
        tau_0=tau0, tau_1=tau1,
        delta_n_z=hoeffding_delta(n_z, eps1), delta_m_z=hoeffding_delta(m_z, eps1),
        delta_n_x=hoeffding_delta(n_x, eps1), delta_m_x=hoeffding_delta(m_x, eps1),
        n_z_minus=nz_m, n_z_plus=nz_p, n_x_minus=nx_m, n_x_plus=nx_p,
        m_z_minus=mz_m, m_z_plus=mz_p, m_x_minus=mx_m, m_x_plus=mx_p,
        s_z0_upper=sz0_u, s_x0_upper=sx0_u,
        s_z0_bound=sz0_b, s_x0_bound=sx0_b, s_z1_bound=sz1_b, s_x1_bound=sx1_b,
        v_x1_bound=vx1_b, s_z0=sz0, s_x0=sx0, s_z1=sz1, s_x1=sx1, v_x1=vx1,
        phase_error_observed=observed, gamma=gamma, phi_z=phi,
        single_photon_key=private, security_cost=cost)


# --------------------------------------------------------------------------------------------
# Expected counts of a link


@dataclass(frozen=True)
class LinkModel:
    """Source-independent description of a link: fibre, receiver and detectors.

    Parameters
    ----------
    length_km : float
        Fibre length.
    loss_db_per_km : float
        Fibre attenuation ``alpha`` (0.2 dB/km: standard single-mode fibre at 1550 nm).
    extra_loss_db : float
        Further loss inside Bob's receiver (beam splitter, interferometer, connectors).
    detector_efficiency : float
        ``eta_det`` in (0, 1].
    dark_count : float
        Dark count probability per gate, i.e. per outcome window of a measurement (each
        basis has two: the early and late bins of Z, the two ports of X).
    afterpulse : float
        Afterpulse probability per detection (Lim 2014 section IV model: the detection rate
        grows by ``1 + p_ap``, the errors by ``p_ap D / 2``). 0 by default.
    visibility : float
        Interference visibility of the X measurement: X optical error ``(1 - V)/2``.
    z_error : float or None
        Optical error of the Z measurement (a photon in the wrong bin); ``None``: the same
        as X, ``(1 - V)/2``.
    x_middle_fraction : float
        Fraction of the X arm's photons that arrive in the interfering middle slot of the
        one-bin interferometer (1/2 for the time-bin receiver; 1 for a receiver without side
        slots, e.g. polarisation BB84).
    bob_p_z : float or None
        Bob's probability of measuring Z (his beam splitter ratio); ``None``: Alice's ``p_z``.
    dead_time : float
        Common dead time of Bob's detectors in seconds (0: none). With a dead time every
        count is scaled by ``1 / (1 + R P_click t_dead)`` (Rusca 2018 Eq. (B3)), ``R`` the
        symbol rate and ``P_click`` the click probability per symbol.
    symbol_rate : float or None
        Symbols per second (needed with a dead time).
    """

    length_km: float = 0.0
    loss_db_per_km: float = 0.2
    extra_loss_db: float = 0.0
    detector_efficiency: float = 0.25
    dark_count: float = 1e-6
    afterpulse: float = 0.0
    visibility: float = 0.99
    z_error: float | None = None
    x_middle_fraction: float = 0.5
    bob_p_z: float | None = None
    dead_time: float = 0.0
    symbol_rate: float | None = None

    def __post_init__(self):
        _check_non_negative("length_km", self.length_km)
        _check_non_negative("loss_db_per_km", self.loss_db_per_km)
        _check_non_negative("extra_loss_db", self.extra_loss_db)
        _check_probability("detector_efficiency", self.detector_efficiency, open_low=True)
        _check_probability("dark_count", self.dark_count, open_high=True)
        _check_probability("afterpulse", self.afterpulse, open_high=True)
        _check_probability("visibility", self.visibility)
        if self.z_error is not None:
            _check_probability("z_error", self.z_error)
        _check_probability("x_middle_fraction", self.x_middle_fraction, open_low=True)
        if self.bob_p_z is not None:
            _check_probability("bob_p_z", self.bob_p_z, open_low=True, open_high=True)
        _check_non_negative("dead_time", self.dead_time)
        if self.dead_time > 0:
            if self.symbol_rate is None:
                raise ValueError("symbol_rate is needed with a dead time, not None")
            if not (_check_non_negative("symbol_rate", self.symbol_rate) > 0):
                raise ValueError(f"symbol_rate must be positive, not {self.symbol_rate!r}")

    @property
    def channel_transmittance(self):
        """Fibre transmittance ``10^(-alpha L / 10)`` (the PLOB bound's ``eta``)."""
        return 10.0 ** (-self.loss_db_per_km * self.length_km / 10.0)

    @property
    def transmittance(self):
        """Total ``eta = 10^(-(alpha L + extra)/10) * eta_det`` (Z arm, per photon)."""
        return 10.0 ** (-(self.loss_db_per_km * self.length_km + self.extra_loss_db) / 10.0) \
            * self.detector_efficiency

    @property
    def x_error(self):
        """Optical error of the X measurement, ``(1 - V)/2``."""
        return (1.0 - self.visibility) / 2.0

    @property
    def z_optical_error(self):
        """Optical error of the Z measurement."""
        return self.x_error if self.z_error is None else self.z_error

    def replace(self, **changes):
        """A copy with some fields changed."""
        fields = asdict(self)
        fields.update(changes)
        return LinkModel(**fields)


def _click_error(no_right, no_wrong, no_both, afterpulse):
    """Per pulse: probabilities of a detection and of a bit error, two outcome windows.

    ``no_right``, ``no_wrong``: probabilities that the right (wrong) window does not click,
    dark counts included; ``no_both``: that neither clicks. A double click gets a random bit
    (half an error). Afterpulsing as Lim 2014 section IV.
    """
    detect = 1.0 - no_both
    both = 1.0 - no_right - no_wrong + no_both
    err = (no_right - no_both) + 0.5 * both
    if afterpulse:
        err += afterpulse * detect / 2.0
        detect *= 1.0 + afterpulse
    return detect, err


def detection_probabilities(link, intensity, basis, photons=None):
    """Probability that a pulse is detected, and that it is detected with a bit error.

    A phase-randomised coherent pulse of mean photon number ``k`` puts independent
    Poissonian numbers ``eta k (1 - e)`` and ``eta k e`` of detectable photons into the right
    and the wrong outcome window (``e`` the optical error of the basis); an ``n``-photon state
    distributes its photons multinomially. Each window also clicks by a dark count with
    probability ``dark_count``.

    Parameters
    ----------
    link : LinkModel
    intensity : float
        Mean photon number of the pulse (ignored when ``photons`` is given).
    basis : {"Z", "X"}
        The basis both Alice and Bob used (X: only the middle slot counts).
    photons : int or None
        For an ``n``-photon state instead of a coherent pulse.

    Returns
    -------
    (float, float)
        ``(D, E)``: detection and error probabilities per pulse, given the bases.
    """
    if basis not in ("Z", "X"):
        raise ValueError(f"basis must be 'Z' or 'X', not {basis!r}")
    eta = link.transmittance * (link.x_middle_fraction if basis == "X" else 1.0)
    error = link.x_error if basis == "X" else link.z_optical_error
    dark = 1.0 - link.dark_count
    if photons is None:
        mean = eta * _check_non_negative("intensity", intensity)
        no_right = dark * math.exp(-mean * (1.0 - error))
        no_wrong = dark * math.exp(-mean * error)
        no_both = no_right * no_wrong
    else:
        if int(photons) != photons or photons < 0:
            raise ValueError(f"photons must be a non-negative integer, not {photons!r}")
        n = int(photons)
        no_right = dark * (1.0 - eta * (1.0 - error)) ** n
        no_wrong = dark * (1.0 - eta * error) ** n
        no_both = dark * dark * (1.0 - eta) ** n
    return _click_error(no_right, no_wrong, no_both, link.afterpulse)


def _dead_time_factor(link, intensities, probabilities):
    """Rusca 2018 Eq. (B3): ``c_dt = 1 / (1 + R P_click t_dead)``, common dead time."""
    if link.dead_time <= 0:
        return 1.0
    # Every click of Bob's detectors counts, in any slot and basis: four outcome windows
    # (Z early/late, two X ports) see the dark counts; all arriving light can click.
    click = sum(p * (1.0 - (1.0 - link.dark_count) ** 4 * math.exp(-link.transmittance * k))
                for k, p in zip(intensities, probabilities, strict=True))
    return 1.0 / (1.0 + link.symbol_rate * click * link.dead_time)


def expected_counts(link, *, intensities, probabilities, p_z, n_symbols):
    """Expected sifted detections and errors per basis and intensity after ``n_symbols``.

    Alice sends intensity ``k`` with ``p_k`` and basis Z with ``p_z``; Bob measures Z with
    ``link.bob_p_z`` (default ``p_z``). Sifted Z events of intensity ``k``:
    ``N p_k p_z q_z D_Z(k)``, errors ``N p_k p_z q_z E_Z(k)``; X likewise with
    ``(1 - p_z)(1 - q_z)`` and the X arm's middle-slot transmittance
    (:func:`detection_probabilities`); all scaled by the dead-time factor (Rusca Eq. (B3)).
    The same counts serve the 3-state protocol (X: ``|+>`` only) and BB84.

    Returns
    -------
    dict
        ``{"Z": {"n": ndarray, "m": ndarray}, "X": {...}}`` of floats, the input of
        :func:`key_length`.
    """
    mus = _as_floats("intensities", intensities)
    ps = _as_floats("probabilities", probabilities, len(mus))
    if any(k < 0 for k in mus):
        raise ValueError(f"intensities must be non-negative, not {intensities!r}")
    if any(p < 0 for p in ps):
        raise ValueError(f"probabilities must be non-negative, not {probabilities!r}")
    p_z = _check_probability("p_z", p_z)
    n_symbols = _check_non_negative("n_symbols", n_symbols)
    nz, mz, nx, mx = _expected_lists(link, mus, ps, p_z, n_symbols)
    return {"Z": {"n": np.array(nz), "m": np.array(mz)},
            "X": {"n": np.array(nx), "m": np.array(mx)}}


def _expected_lists(link, mus, ps, p_z, n_symbols):
    """:func:`expected_counts` on validated inputs, as four lists (the optimiser's core)."""
    q_z = p_z if link.bob_p_z is None else link.bob_p_z
    scale = n_symbols * _dead_time_factor(link, mus, ps)
    out = []
    for basis, sift in (("Z", p_z * q_z), ("X", (1.0 - p_z) * (1.0 - q_z))):
        det, err = [], []
        for k, p in zip(mus, ps, strict=True):
            d, e = detection_probabilities(link, k, basis)
            det.append(scale * p * sift * d)
            err.append(scale * p * sift * e)
        out += [det, err]
    return out


def ec_leakage(n_z, qber, f_ec):
    """Error-correction leakage model ``lambda_EC = f_EC n_Z h(QBER)`` (Lim 2014 sec. IV)."""
    return _check_non_negative("f_ec", f_ec) * _check_non_negative("n_z", n_z) \
        * binary_entropy(_check_probability("qber", qber))


# --------------------------------------------------------------------------------------------
# Asymptotic rate (infinitely many decoys)


@dataclass(frozen=True)
class AsymptoticResult:
    """GLLP rate with infinitely many decoys and its ingredients (per symbol)."""

    rate: float          # max(0, q [Q1 (1 - h(e1)) - f Q_mu h(E_mu)])
    mu: float
    sifting: float
    f_ec: float
    gain: float          # Q_mu (Z basis)
    qber: float          # E_mu (Z basis)
    y0: float            # vacuum yield
    y1: float            # single-photon yield (Z)
    q1: float            # mu e^-mu Y1
    e1: float            # single-photon phase error (X measurement)

    def to_dict(self):
        """A JSON-ready dict."""
        return asdict(self)


def asymptotic_rate(link, mu, *, f_ec=1.16, sifting=1.0):
    """Asymptotic decoy-state key rate per symbol with infinitely many decoys (GLLP).

    ``R = q [ Q1 (1 - h(e1)) - f_EC Q_mu h(E_mu) ]`` (Gottesman, Lo, Lütkenhaus, Preskill,
    QIC 4, 325 (2004); infinite-decoy evaluation as Lo, Ma, Chen, PRL 94, 230504 (2005)):
    ``Q_mu``, ``E_mu`` the gain and QBER of the key basis at intensity ``mu``;
    ``Q1 = mu e^-mu Y1`` with the single-photon yield ``Y1``; ``e1`` the single-photon error
    rate of the X measurement (the phase error). All from the same channel model as
    :func:`expected_counts`: ``eta = 10^(-alpha L/10) eta_det``, dark counts per gate,
    optical errors ``z_error`` and ``(1-V)/2``.

    Parameters
    ----------
    link : LinkModel
    mu : float
        Signal intensity (> 0).
    f_ec : float
        Error-correction efficiency (>= 1).
    sifting : float
        ``q``: fraction of symbols in the key basis on both sides (1 for efficient BB84 in
        the asymptotic limit, ``p_z * q_z`` otherwise).

    Returns
    -------
    AsymptoticResult
    """
    mu = _check_non_negative("mu", mu)
    if mu <= 0:
        raise ValueError(f"mu must be positive, not {mu!r}")
    f_ec = _check_non_negative("f_ec", f_ec)
    sifting = _check_probability("sifting", sifting)
    gain, err = detection_probabilities(link, mu, "Z")
    y0, _ = detection_probabilities(link, 0.0, "Z")
    y1, _ = detection_probabilities(link, 0.0, "Z", photons=1)
    y1x, e1x = detection_probabilities(link, 0.0, "X", photons=1)
    qber = err / gain if gain > 0 else 0.5
    e1 = min(e1x / y1x, 0.5) if y1x > 0 else 0.5
    q1 = mu * math.exp(-mu) * y1
    rate = sifting * (q1 * (1.0 - binary_entropy(e1))
                      - f_ec * gain * binary_entropy(min(qber, 1.0)))
    return AsymptoticResult(rate=max(rate, 0.0), mu=mu, sifting=sifting, f_ec=f_ec,
                            gain=gain, qber=qber, y0=y0, y1=y1, q1=q1, e1=e1)
