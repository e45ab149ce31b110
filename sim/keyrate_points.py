"""Measured key-rate points of the virtual lab, and the theory curve of the same link.

Issue 6, "The main job": the points a reference-model session measures (Alice's transmitter
model, the physical channel model, Bob's records, both distillation hosts:
:func:`~timebin.sim.lab.reference_session`) must lie on the finite-key theory curve of
``timebin keyrate`` (:mod:`timebin.host.distill.keyrate`) within their statistical error.

The theory
----------
The bound is the one the hosts apply: :func:`~timebin.host.distill.finite_key.key_length`
(``"1decoy-3state"``, Rusca et al., APL 112, 171104 (2018)) at the session's block size
``N``, realised mean photon numbers, class probabilities, ``eps_sec`` and ``eps_cor``, with
the leakage ``lambda_EC = f n_Z h(E_Z) + t``: ``f`` the error-correction efficiency the
session measured and ``t`` the verification hash bits
(:func:`~timebin.host.distill.auth.verification_bits`), as the hosts count them. What differs
is where the counts come from:

* the **measured point** uses the counts of each block as Bob's host sifted them;
* the **theory** uses their expectation, :func:`expected_lab_counts`.

:func:`link_model` maps the lab's link onto the key-rate theory's
:class:`~timebin.host.distill.finite_key.LinkModel` through
:func:`~timebin.sim.channel.link_figures` (fibre and Bob's loss, ``eta_z = eta q``,
``eta_x = eta (1 - q) / 2`` of the X arm's middle slot, the dark count per time-bin window,
the visibility error, the symbol rate; Alice's extinction as the Z optical error). That model
describes an *active* basis choice (a pulse goes whole to one basis), a *common* dead time
(Rusca 2018 Eq. (B3)) and afterpulses in proportion to each basis's own detections (Lim 2014
section IV). The lab's receiver has a passive beam splitter (each photon chooses), one dead
time per detector, and afterpulses that land on whatever symbol is in flight. At the lab's
GHz-gated InGaAs defaults (10 ns hold-off, about six symbols; 2 % afterpulsing) and
0-20 km, :func:`~timebin.host.distill.finite_key.expected_counts` of that model gives 10-30 %
fewer counts than the lab (with the common dead time; 5-30 % more without it), far beyond the
error of a 10^7-symbol point; the key it predicts is a third of the measured one at 0 km.
So :func:`expected_lab_counts` evaluates the same link with the lab receiver's rules
instead (the correction; its ingredients are the LinkModel's, per UI):

* Alice's light per UI of each state and intensity class, as her driver and calibrated
  modulators emit it (:func:`~timebin.sim.channel.symbol_mean_photons` is its sum);
* Z arm ``eta_z m[u]``; each port of the X arm ``2 eta_x (A[u] +- B[u] cos(psi - theta))``
  with ``A = (m_short + m_long) / 4`` and ``B = 2 V sqrt(m_short m_long) / 4`` between UIs
  of one symbol (the one-bin interferometer; the long arm's late light falls into the next
  symbol's first bin);
* a UI clicks with ``1 - (1 - d_u) exp(-lambda_u)`` (photon-number blind, one click per UI
  pulse, dark counts ``d_u`` spread over the UIs a gate covers);
* a detector is dead in a UI if it clicked in one of the UIs within its hold-off before it
  (the UI ``i`` back counts with the probability that the two clicks' jitters keep it
  within the hold-off), the UIs of the same symbol with that symbol's own light; solved for
  the stationary click rate, afterpulses included;
* afterpulses: each click adds one with the afterpulse probability, uniform over the gated
  UIs; it is lost if the detector clicked since the end of its parent's hold-off (on
  average ``tau_ap (1 - exp(-t_dead / tau_ap))`` of the hold-off);
* Bob's windows and reading as his binner and host apply them (Z: early/late bin; X: the
  middle slot, ``+`` port bit 0, ``-`` port bit 1), every click its own record.

What it leaves out (each below 0.1 % of the counts at the lab's settings): clicks that jitter
across a bin edge (the pulses sit mid-bin, 4 jitter sigmas from an edge), correlations
of the dead time with the light of the symbols before the target's own, the gate's shape for
dark counts and afterpulses. :func:`expected_lab_counts` agrees with the channel model's
sifted counts per basis and intensity within their Poisson error at 0-15 km
(``tests/test_keyrate_points.py``; checked per state, bin and detector on 3 * 10^7 symbols,
SNSPDs included, when it was written).

The error of a measured point
-----------------------------
A parametric bootstrap: each block's detections per basis and intensity are redrawn as
Poisson variables around the measured ones, the errors binomially among them, the leakage
recomputed with the block's ``f``, and the bound re-evaluated; the standard deviation of the
unfloored key length (:attr:`~timebin.host.distill.finite_key.FiniteKeyResult.key_length_raw`)
over the resamples is the point's error (blocks add in quadrature). Points are compared on
the unfloored key length so that a block near zero key is not biased by the floor.

The per-intensity counts of a block come from the summary's ``counts`` when the session
reports them, else from the bound's own intermediate values (:func:`session_counts`: Rusca
(A16) and (A19) are linear in them), checked by re-evaluating the bound to the bit.
"""

import math
import time

import numpy as np

from ..host.distill.auth import verification_bits
from ..host.distill.finite_key import (
    LinkModel,
    binary_entropy,
    expected_counts,
    key_length,
)
from ..host.distill.keyrate import optimal_asymptotic_rate, plob_bound
from .channel import (
    Calibration,
    _symbol_patterns,
    calibrated_im_levels,
    channel_roles,
    link_figures,
    receiver_settings,
    symbol_mean_photons,
)
from .lab import LAB_DEFAULTS, default_pulse_width, lab_params, reference_session

__all__ = ["PROTOCOL", "alice_settings", "realised_intensities", "link_model",
           "expected_lab_counts", "theory_point", "session_counts", "measured_point",
           "keyrate_points", "theory_curve", "bench_keyrate_points"]

#: The bound of the reference session's hosts.
PROTOCOL = "1decoy-3state"

_STATES = 3                                 # Alice's 3-state protocol: Z0, Z1, X+


def alice_settings(calibration, intensities, uis_per_symbol, pulse_width=None):
    """Alice's driver settings in a reference session: the IM levels a lab writes after
    calibration for the asked mean photon numbers, with pulses of ``pulse_width`` UIs
    (default :func:`~timebin.sim.lab.default_pulse_width`) centred in each bin."""
    S = uis_per_symbol
    width = default_pulse_width(S) if pulse_width is None else pulse_width
    return {"im_levels": calibrated_im_levels(calibration, tuple(intensities),
                                              uis_per_symbol=S, pulse_width=width),
            "pulse_width": width, "pulse_offset": (S // 2 - width) // 2}


def realised_intensities(calibration, uis_per_symbol, settings, classes):
    """Mean photon number per symbol of each intensity class, of the Z states and of the X
    state, ``(z, x)`` (what the reference session gives its hosts: each basis's bound takes
    its own)."""
    table = symbol_mean_photons(calibration, uis_per_symbol, settings)
    return (tuple(float(table[c, :2].mean()) for c in range(classes)),
            tuple(float(table[c, 2]) for c in range(classes)))


def _z_error(calibration, uis_per_symbol, settings):
    """Fraction of a Z state's light (signal class) in its wrong bin: Alice's extinction."""
    m, _ = _symbol_patterns(calibration, uis_per_symbol, settings)
    k = uis_per_symbol // 2
    z0 = m[0]
    return float(z0[k:].sum() / z0.sum())


def link_model(params, *, calibration=None, settings=None):
    """The lab's link as the key-rate theory's
    :class:`~timebin.host.distill.finite_key.LinkModel`, from
    :func:`~timebin.sim.channel.link_figures`: loss (fibre and Bob's), detector efficiency
    (``eta_z / (q T)``), dark count per time-bin window, visibility ``1 - 2 e``, the X arm's
    middle-slot fraction (``eta_x / (eta (1 - q))``), Bob's ``q = bob_p_z``, afterpulse
    probability, dead time (s) and symbol rate; ``z_error`` from Alice's extinction
    (``settings``: her driver's, default those of a reference session at 0.5/0.1)."""
    calibration = calibration or Calibration()
    S = params.uis_per_symbol
    if settings is None:
        settings = alice_settings(calibration, LAB_DEFAULTS["intensities"], S)
    fig = link_figures(params)
    q = params.bob_p_z
    if not 0 < q < 1:
        raise ValueError(f"bob_p_z must be in (0, 1) for a key-rate model, not {q!r}")
    eta = fig["eta_z"] / q
    fibre_db = params.loss_db_per_km * params.length_km
    extra_db = max(-10 * math.log10(fig["transmittance"]) - fibre_db, 0.0)
    return LinkModel(length_km=params.length_km, loss_db_per_km=params.loss_db_per_km,
                     extra_loss_db=extra_db,
                     detector_efficiency=eta / fig["transmittance"],
                     dark_count=fig["dark_per_bin"],
                     afterpulse=params.afterpulse_probability,
                     visibility=1 - 2 * fig["e_visibility"],
                     z_error=_z_error(calibration, S, settings),
                     x_middle_fraction=fig["eta_x"] / (eta * (1 - q)), bob_p_z=q,
                     dead_time=params.dead_time_ps * 1e-12,
                     symbol_rate=fig["symbol_rate_hz"])


def _gate_mask(params):
    """Which UIs of a symbol have their centre inside a gate (all, free-running), and the
    dark count probability of each UI."""
    S, T = params.uis_per_symbol, params.ui_ps
    if params.detector != "gated":
        return np.ones(S, bool), np.full(S, -math.expm1(-params.dark_rate_hz * 1e-12 * T))
    P = params.gate_period
    per_symbol = params.symbol_ps / P
    if abs(per_symbol - round(per_symbol)) > 1e-9:
        raise ValueError(f"The theory needs gates locked to the symbols: a gate period of "
                         f"{P!r} ps does not divide the {params.symbol_ps!r} ps symbol")
    x = np.mod((np.arange(S) + 0.5) * T - params.gate_phase, P)
    dist = np.where(x < P / 2, x, x - P) - params.gate_misalignment_ps
    inside = np.abs(dist) < 0.5 * params.gate_width
    dark = np.zeros(S)
    if inside.any():
        dark[inside] = params.dark_per_gate * round(per_symbol) / inside.sum()
    return inside, dark


def _dead_weights(params):
    """``w[i - 1]``: probability that a click ``i`` UIs after another falls in its hold-off
    (photon clicks sit at UI centres, each with its Gaussian jitter)."""
    T, dead, sigma = params.ui_ps, params.dead_time_ps, params.jitter_ps
    if dead <= 0:
        return np.zeros(0)
    top = int(math.ceil((dead + 8 * 2 ** 0.5 * sigma) / T)) + 1
    gap = dead - T * np.arange(1, top + 1)
    if sigma == 0:
        return np.where(gap > 0, 1.0, np.where(gap < 0, 0.0, 0.5))
    return 0.5 * np.array([math.erfc(-g / (2 * sigma)) for g in gap])


def expected_lab_counts(params, *, probabilities, p_z, n_symbols, calibration=None,
                        settings=None):
    """Expected sifted detections and errors per basis and intensity class after
    ``n_symbols`` of the 3-state protocol on the lab's link (module docstring, "The
    theory").

    Parameters
    ----------
    params : ChannelParams
        The link (:func:`~timebin.sim.lab.lab_params`); two X ports needed.
    probabilities : sequence of float
        Alice's intensity class probabilities.
    p_z : float
        Alice's Z-basis probability.
    n_symbols : float
    calibration : Calibration or None
    settings : dict or None
        Alice's driver settings (:func:`alice_settings`; default: a reference session's at
        0.5/0.1 photons).

    Returns
    -------
    (dict, dict)
        The counts ``{"Z": {"n", "m"}, "X": {"n", "m"}}`` (numpy arrays, one value per
        class: the input of :func:`~timebin.host.distill.finite_key.key_length`), and per
        detector (``"Z"``, ``"X+"``, ``"X-"``) its ``clicks`` and ``afterpulses`` per symbol
        and mean ``alive`` fraction.
    """
    calibration = calibration or Calibration()
    S = params.uis_per_symbol
    k = S // 2
    if params.x_ports != 2:
        raise ValueError(f"The theory counts X errors at the '-' port: x_ports must be 2, "
                         f"not {params.x_ports!r}")
    probabilities = [float(p) for p in probabilities]
    if not probabilities or any(not 0 <= p <= 1 for p in probabilities) \
            or abs(sum(probabilities) - 1) > 1e-6:
        raise ValueError(f"probabilities must be class probabilities summing to 1, not "
                         f"{probabilities!r}")
    if not 0 <= p_z <= 1:
        raise ValueError(f"p_z must be a probability, not {p_z!r}")
    if not n_symbols >= 0:
        raise ValueError(f"n_symbols must be non-negative, not {n_symbols!r}")
    if settings is None:
        settings = alice_settings(calibration, LAB_DEFAULTS["intensities"], S)
    m, phi = _symbol_patterns(calibration, S, settings)
    K = len(probabilities)
    rows = [c * 4 + s for c in range(K) for s in range(_STATES)]
    pc = np.array([probabilities[c] * (p_z / 2 if s < 2 else 1 - p_z)
                   for c in range(K) for s in range(_STATES)])
    M, PH = m[rows], phi[rows]
    C = len(rows)
    fig = link_figures(params)
    V = 1 - 2 * fig["e_visibility"]
    inside, dark = _gate_mask(params)
    gated = np.concatenate([inside, inside[:k]])
    pad = np.zeros((C, k))
    short, long_ = np.concatenate([M, pad], axis=1), np.concatenate([pad, M], axis=1)
    psi = np.concatenate([PH, pad], axis=1) - np.concatenate([pad, PH], axis=1)
    coherent = (np.arange(S + k) >= k) & (np.arange(S + k) < S)
    A = (short + long_) / 4
    B = 2 * V * np.sqrt(short * long_) / 4 * coherent
    cos = np.cos(psi - params.interferometer_phase_rad)
    light = {"Z": np.concatenate([fig["eta_z"] * M, pad], axis=1),
             "X+": 2 * fig["eta_x"] * (A + B * cos), "X-": 2 * fig["eta_x"] * (A - B * cos)}
    w = _dead_weights(params)
    back = [(np.arange(1, len(w) + 1) <= j, j - np.arange(1, len(w) + 1)) for j in range(S)]
    p_ap = params.afterpulse_probability
    dead, tau = params.dead_time_ps, params.afterpulse_tau_ps
    # The part of the parent's hold-off in which another click would kill an afterpulse.
    ap_window = tau * -math.expm1(-dead / tau) / dead if dead > 0 else 0.0
    ap_share = inside / inside.sum() if inside.any() else np.zeros(S)
    acc, detail = {}, {}
    for name, lam in light.items():
        lam = lam * gated
        own, spill = lam[:, :S], lam[:, S:]
        inc = np.empty((C, S))                      # click probability of each UI, alone
        for u in range(S):
            if u < k:                               # with the previous symbol's long arm
                total = own[:, u][:, None] + spill[None, :, u]
                inc[:, u] = (1 - (1 - dark[u]) * np.exp(-total)) @ pc
            else:
                inc[:, u] = 1 - (1 - dark[u]) * np.exp(-own[:, u])
        # Fixed point of the stationary rates, damped: the dead time feeds the click rate
        # back with slope -(clicks within a hold-off), more than 1 for a busy SNSPD.
        step = 1 / (1 + w.sum() * float((pc @ inc).mean()))
        alive_mean, ap, acc_mean = np.ones(S), np.zeros(S), pc @ inc
        for _ in range(5000):
            acc_own = alive_mean * inc + ap
            alive = np.empty((C, S))
            for j, (same, pos) in enumerate(back):
                alive[:, j] = 1 - acc_own[:, pos[same]] @ w[same] \
                    - acc_mean[np.mod(pos[~same], S)] @ w[~same]
            new_mean = pc @ alive
            clicks = pc @ (alive * inc) + ap
            ap_alive = 1 - (1 - new_mean.mean()) * ap_window
            new_ap = p_ap * clicks.sum() * ap_alive * ap_share
            change = max(np.abs(new_mean - alive_mean).max(), np.abs(clicks - acc_mean).max(),
                         np.abs(new_ap - ap).max())
            alive_mean = alive_mean + step * (new_mean - alive_mean)
            acc_mean = acc_mean + step * (clicks - acc_mean)
            ap = ap + step * (new_ap - ap)
            if change < 1e-15:
                break
        else:
            raise ValueError(f"The dead-time model of detector {name} did not settle "
                             f"(dead time {params.dead_time_ps!r} ps, last change {change!r})")
        acc[name] = alive * inc + ap
        detail[name] = {"clicks": float(acc_mean.sum()), "afterpulses": float(ap.sum()),
                        "alive": float(alive_mean.mean())}
    windows = np.asarray(receiver_settings(params)["windows"])
    roles = channel_roles(params)
    if list(roles) != [0, 1, 2]:
        raise ValueError(f"The theory needs channels Z, X+, X- (roles 0, 1, 2), not "
                         f"{list(roles)}")
    n = {"Z": np.zeros(K), "X": np.zeros(K)}
    e = {"Z": np.zeros(K), "X": np.zeros(K)}
    for i, row in enumerate(rows):
        c, s = divmod(row, 4)
        weight = n_symbols * pc[i]
        if s < 2:                                   # Z0 / Z1: Bob's early / late bin
            right = acc["Z"][i][windows[0] == s].sum()
            wrong = acc["Z"][i][windows[0] == 1 - s].sum()
            basis = "Z"
        else:                                       # X+: the middle slot, + port is right
            right = acc["X+"][i][windows[1] == 2].sum()
            wrong = acc["X-"][i][windows[2] == 2].sum()
            basis = "X"
        n[basis][c] += weight * (right + wrong)
        e[basis][c] += weight * wrong
    return {"Z": {"n": n["Z"], "m": e["Z"]}, "X": {"n": n["X"], "m": e["X"]}}, detail


def _leak(f_ec, n_z, m_z, eps_cor):
    """``f n_Z h(E_Z) + t``: what error correction and verification disclose."""
    qber = min(m_z / n_z, 0.5) if n_z > 0 else 0.0
    t = verification_bits(max(int(round(n_z)), 1), eps_cor)
    return f_ec * n_z * binary_entropy(qber) + t


def _key(counts, intensities, probabilities, eps_sec, eps_cor, f_ec, intensities_x=None):
    n_z, m_z = float(np.sum(counts["Z"]["n"])), float(np.sum(counts["Z"]["m"]))
    return key_length(counts, protocol=PROTOCOL, intensities=intensities,
                      probabilities=probabilities, eps_sec=eps_sec, eps_cor=eps_cor,
                      leak_ec=_leak(f_ec, n_z, m_z, eps_cor), intensities_x=intensities_x)


def theory_point(params, *, intensities, probabilities, p_z, block_symbols, f_ec,
                 eps_sec=1e-9, eps_cor=1e-15, calibration=None, settings=None,
                 intensities_x=None):
    """The finite-key length of a block of ``block_symbols`` on the lab's link: the bound
    on :func:`expected_lab_counts` with leakage ``f_ec n_Z h(E_Z) + t``; and, for
    comparison, the same bound on the key-rate theory's own counts
    (:func:`~timebin.host.distill.finite_key.expected_counts` of :func:`link_model`).

    ``intensities``, ``intensities_x``: the realised mean photon numbers of the Z and X
    states the hosts use (:func:`realised_intensities`). Returns a dict: ``key_length``,
    ``key_length_raw``,
    ``key_per_symbol``, ``qber_z``, ``qber_x``, ``phi_z``, ``counts`` (lists),
    ``detectors`` (:func:`expected_lab_counts`), ``keyrate_model`` (``key_length_raw``,
    ``key_per_symbol``, ``qber_z`` of the LinkModel counts)."""
    if not (isinstance(block_symbols, (int, float)) and block_symbols >= 1):
        raise ValueError(f"block_symbols must be at least 1, not {block_symbols!r}")
    if not (isinstance(f_ec, (int, float)) and math.isfinite(f_ec) and f_ec >= 1):
        raise ValueError(f"f_ec (error-correction efficiency) must be at least 1, not "
                         f"{f_ec!r}")
    counts, detectors = expected_lab_counts(params, probabilities=probabilities, p_z=p_z,
                                            n_symbols=block_symbols,
                                            calibration=calibration, settings=settings)
    res = _key(counts, intensities, probabilities, eps_sec, eps_cor, f_ec, intensities_x)
    link = link_model(params, calibration=calibration, settings=settings)
    plain = expected_counts(link, intensities=intensities, probabilities=probabilities,
                            p_z=p_z, n_symbols=block_symbols)
    plain_res = _key(plain, intensities, probabilities, eps_sec, eps_cor, f_ec,
                     intensities_x)
    return {"key_length": res.key_length, "key_length_raw": res.key_length_raw,
            "key_per_symbol": res.key_length / block_symbols, "qber_z": res.qber_z,
            "qber_x": res.qber_x, "phi_z": res.phi_z,
            "counts": {b: {k: [float(x) for x in v] for k, v in c.items()}
                       for b, c in counts.items()},
            "detectors": detectors,
            "keyrate_model": {"key_length_raw": plain_res.key_length_raw,
                              "key_per_symbol": plain_res.key_length / block_symbols,
                              "qber_z": plain_res.qber_z}}


def session_counts(summary, block):
    """Bob's sifted counts per basis and intensity class of ``block`` of a reference
    session's summary: ``summary["counts"][block]`` if the session reports them, else solved
    from the block's bound values (``bounds``: Rusca (A19) and the totals give ``n_{B,k}``,
    (A16) the decoy's errors ``m_{B,mu2}``), checked by re-evaluating the bound with the
    block's leakage: it must give the hosts' key length to the bit. Returns
    ``{"Z": {"n", "m"}, "X": {"n", "m"}}`` of int lists, or ``ValueError`` naming what
    is missing or inconsistent."""
    if "counts" in summary:
        c = summary["counts"][block]
        return {b: {k: [int(x) for x in c[b][k]] for k in ("n", "m")} for b in ("Z", "X")}
    b = summary["bounds"][block]
    if summary.get("intensities_x") not in (None, summary["intensities"]):
        raise ValueError("A session whose bases have their own intensities must report its "
                         "counts")
    if not b or "s_z0_bound" not in b:
        raise ValueError(f"Block {block} has no bound values (status "
                         f"{summary['status'][block]!r})")
    mu1, mu2 = summary["intensities"]
    p1, p2 = summary["probabilities"]
    tau0 = b["tau_0"]
    a1, a2 = mu2 * math.exp(mu1) / p1, mu1 * math.exp(mu2) / p2
    out = {}
    for basis, key in (("Z", "z"), ("X", "x")):
        n, m = b[f"n_{key}"], b[f"m_{key}"]
        dn, dm = b[f"delta_n_{key}"], b[f"delta_m_{key}"]
        n2 = (b[f"s_{key}0_bound"] * (mu1 - mu2) / tau0 + a2 * dn + a1 * (n + dn)) / (a1 + a2)
        m2 = (b[f"s_{key}0_upper"] / 2 - dn) * p2 / (tau0 * math.exp(mu2)) - dm
        values = {"n": [n - n2, n2], "m": [m - m2, m2]}
        for kind, pair in values.items():
            for x in pair:
                if abs(x - round(x)) > 1e-3 * max(1.0, abs(x)) ** 0.5:
                    raise ValueError(f"Block {block}'s bound values do not give integer "
                                     f"{basis} counts ({pair!r}): not a 1-decoy bound?")
            values[kind] = [int(round(x)) for x in pair]
        out[basis] = values
    check = key_length(out, protocol=PROTOCOL, intensities=summary["intensities"],
                       probabilities=summary["probabilities"], eps_sec=summary["eps_sec"],
                       eps_cor=summary["eps_cor"], leak_ec=b["leak_ec"])
    if check.key_length != summary["key_bits"][block] or \
            abs(check.key_length_raw - b["key_length_raw"]) > 1e-6 * max(1.0, abs(
                b["key_length_raw"])):
        raise ValueError(f"Block {block}'s counts {out!r} do not reproduce its key length "
                         f"{summary['key_bits'][block]!r}")
    return out


def _efficiency(summary, block, counts):
    """``f`` of a block: its disclosed bits over ``n_Z h(E_Z)`` (leakage less the
    verification bits)."""
    n_z, m_z = sum(counts["Z"]["n"]), sum(counts["Z"]["m"])
    disclosed = summary["bounds"][block]["leak_ec"] - verification_bits(n_z,
                                                                         summary["eps_cor"])
    if m_z == 0 or n_z == 0:
        return None
    return disclosed / (n_z * binary_entropy(m_z / n_z))


def measured_point(summary, *, resamples=300, seed=0):
    """The key a session measured and its statistical error (module docstring).

    Returns a dict: ``blocks`` (those with bound values), ``key_bits`` (the hosts',
    floored), ``key_length_raw`` (their sum, unfloored), ``sigma`` (bootstrap standard
    deviation of the unfloored sum), ``key_per_symbol``, ``sigma_per_symbol``, ``rate_bps``,
    ``sigma_bps``, ``f_ec`` (the blocks' mean efficiency, None without errors), per block
    ``counts``, ``f`` and ``sigma_blocks``; ``resamples``, ``seed``.
    """
    if not (isinstance(resamples, int) and resamples >= 2):
        raise ValueError(f"resamples must be an integer >= 2, not {resamples!r}")
    rng = np.random.default_rng([int(seed), 0x6b6579])
    mus, ps = summary["intensities"], summary["probabilities"]
    mus_x = summary.get("intensities_x")
    eps_sec, eps_cor = summary["eps_sec"], summary["eps_cor"]
    good = [b for b in range(len(summary["status"]))
            if summary["bounds"][b] and "s_z0_bound" in summary["bounds"][b]]
    if not good:
        raise ValueError(f"No block of the session has bound values (status "
                         f"{summary['status']!r})")
    per_counts, per_f, sig, raw, bits = [], [], [], 0.0, 0
    for b in good:
        counts = session_counts(summary, b)
        f = _efficiency(summary, b, counts)
        f_use = f if f is not None else 1.0
        draws = []
        for _ in range(resamples):
            res = {}
            for basis in ("Z", "X"):
                n = rng.poisson(counts[basis]["n"])
                q = [m / d if d else 0.0 for m, d in zip(counts[basis]["m"],
                                                         counts[basis]["n"], strict=True)]
                res[basis] = {"n": n, "m": rng.binomial(n, q)}
            draws.append(_key(res, mus, ps, eps_sec, eps_cor, f_use, mus_x).key_length_raw)
        sig.append(float(np.std(draws, ddof=1)))
        raw += summary["bounds"][b]["key_length_raw"]
        bits += int(summary["key_bits"][b])
        per_counts.append(counts)
        per_f.append(f)
    symbols = len(good) * summary["block_symbols"]
    rate = summary["symbol_rate_hz"]
    sigma = math.sqrt(sum(s * s for s in sig))
    fs = [f for f in per_f if f is not None]
    return {"blocks": good, "key_bits": bits, "key_length_raw": raw, "sigma": sigma,
            "key_per_symbol": bits / symbols, "key_raw_per_symbol": raw / symbols,
            "sigma_per_symbol": sigma / symbols, "rate_bps": bits / symbols * rate,
            "sigma_bps": sigma / symbols * rate, "f_ec": float(np.mean(fs)) if fs else None,
            "counts": per_counts, "f": per_f, "sigma_blocks": sig, "resamples": resamples,
            "seed": int(seed)}


def compare(summary, params, measured, *, calibration=None, settings=None,
            extra_loss_db=0.0):
    """The theory of each of ``measured``'s blocks (its own ``f``) on ``params`` (with
    ``extra_loss_db`` more of Bob's loss: a deliberately wrong link) and how far the
    measured key lies from it: ``theory_raw`` (summed over the blocks), ``theory_bits``,
    ``z`` (difference over the measured sigma)."""
    if extra_loss_db:
        params = params.replace(bob_loss_db=params.bob_loss_db + float(extra_loss_db))
    raw, bits = 0.0, 0
    for f in measured["f"]:
        t = theory_point(params, intensities=summary["intensities"],
                         intensities_x=summary.get("intensities_x"),
                         probabilities=summary["probabilities"], p_z=summary["p_z"],
                         block_symbols=summary["block_symbols"],
                         f_ec=max(f if f is not None else 1.0, 1.0),
                         eps_sec=summary["eps_sec"], eps_cor=summary["eps_cor"],
                         calibration=calibration, settings=settings)
        raw += t["key_length_raw"]
        bits += t["key_length"]
    sigma = measured["sigma"]
    return {"theory_raw": raw, "theory_bits": bits,
            "z": (measured["key_length_raw"] - raw) / sigma if sigma > 0 else math.inf,
            "extra_loss_db": float(extra_loss_db), "theory": t}


def _check_session_settings(summary, calibration, settings, S):
    mine = realised_intensities(calibration, S, settings, len(summary["intensities"]))[0]
    if any(abs(a - b) > 1e-12 for a, b in zip(mine, summary["intensities"], strict=True)):
        raise ValueError(f"The session's realised intensities {summary['intensities']!r} "
                         f"are not those of Alice's settings here {mine!r}: the theory would "
                         f"model another transmitter")


def keyrate_points(distances_km, *, symbols=10_000_000, block_symbols=None, detector="gated",
                   seed=1, reconciler="cascade", resamples=300, mismatch_db=3.0, progress=None,
                   **overrides):
    """Measured key-rate points at each distance: one reference session each (seeded
    ``seed + i``), its measured key and error (:func:`measured_point`) and the theory of the
    same link (:func:`compare`), also with ``mismatch_db`` more loss (a wrong theory that
    must not fit).

    ``block_symbols``: default ``min(10^7, symbols)``; ``overrides``: link parameters
    (:func:`~timebin.sim.lab.lab_params`). ``progress(done, total)`` after each distance.
    Returns JSON-ready rows (dicts) in the order given."""
    distances = [float(d) for d in distances_km]
    if not distances:
        raise ValueError("distances must not be empty")
    for d in distances:
        if not (math.isfinite(d) and d >= 0):
            raise ValueError(f"distances must be finite and non-negative km, not {d!r}")
    if block_symbols is None:
        block_symbols = min(10_000_000, symbols)
    p_z = LAB_DEFAULTS["p_z"]
    calibration = Calibration()
    rows = []
    for i, d in enumerate(distances):
        params = lab_params(detector, distance_km=d, bob_p_z=p_z, **overrides)
        settings = alice_settings(calibration, LAB_DEFAULTS["intensities"],
                                  params.uis_per_symbol)
        t0 = time.perf_counter()
        summary = reference_session(params=params, symbols=symbols,
                                    block_symbols=block_symbols, seed=seed + i,
                                    reconciler=reconciler, calibration=calibration,
                                    pulse_width=settings["pulse_width"])
        seconds = time.perf_counter() - t0
        _check_session_settings(summary, calibration, settings, params.uis_per_symbol)
        measured = measured_point(summary, resamples=resamples, seed=seed + i)
        right = compare(summary, params, measured, calibration=calibration,
                        settings=settings)
        wrong = compare(summary, params, measured, calibration=calibration,
                        settings=settings, extra_loss_db=mismatch_db)
        n = len(measured["blocks"]) * block_symbols
        rate = summary["symbol_rate_hz"]
        rows.append({
            "distance_km": d, "seed": seed + i, "symbols": summary["symbols"],
            "block_symbols": block_symbols, "blocks_used": len(measured["blocks"]),
            "status": summary["status"], "qber_z": summary["qber_z"],
            "qber_x": summary["qber_x"], "f_ec": measured["f_ec"],
            "measured_key_bits": measured["key_bits"],
            "measured_key_raw": measured["key_length_raw"], "sigma": measured["sigma"],
            "theory_key_raw": right["theory_raw"], "theory_key_bits": right["theory_bits"],
            "z": right["z"], "mismatch_db": mismatch_db,
            "mismatch_key_raw": wrong["theory_raw"], "mismatch_z": wrong["z"],
            "keyrate_model_key_raw": right["theory"]["keyrate_model"]["key_length_raw"]
            * len(measured["blocks"]),
            "measured_rate_bps": measured["rate_bps"], "sigma_bps": measured["sigma_bps"],
            "theory_rate_bps": right["theory_bits"] / n * rate,
            "symbol_rate_hz": rate, "session_seconds": seconds,
            "counts": measured["counts"], "theory_counts": right["theory"]["counts"],
            "counters": summary["counters"]})
        if progress is not None:
            progress(i + 1, len(distances))
    return rows


def theory_curve(distances_km, *, detector="gated", block_symbols=10_000_000, f_ec,
                 intensities=LAB_DEFAULTS["intensities"],
                 probabilities=LAB_DEFAULTS["probabilities"], p_z=LAB_DEFAULTS["p_z"],
                 eps_sec=1e-9, eps_cor=1e-15, calibration=None, **overrides):
    """The theory of the lab's link versus distance at a reference session's settings
    (``intensities``: the asked mean photon numbers), as rows
    :func:`~timebin.host.distill.keyrate.plot_keyrate` draws: ``key_rate_bps`` and
    ``key_per_symbol`` (the finite-key length of a block on :func:`expected_lab_counts`),
    ``asymptotic_*`` (GLLP with infinite decoys at the optimal intensity, on
    :func:`link_model`), ``plob_*`` (of the fibre), ``protocol``, ``block_size``."""
    calibration = calibration or Calibration()
    rows = []
    for d in distances_km:
        params = lab_params(detector, distance_km=float(d), bob_p_z=p_z, **overrides)
        S = params.uis_per_symbol
        settings = alice_settings(calibration, intensities, S)
        realised, realised_x = realised_intensities(calibration, S, settings,
                                                    len(intensities))
        t = theory_point(params, intensities=realised, intensities_x=realised_x,
                         probabilities=probabilities,
                         p_z=p_z, block_symbols=block_symbols, f_ec=f_ec, eps_sec=eps_sec,
                         eps_cor=eps_cor, calibration=calibration, settings=settings)
        link = link_model(params, calibration=calibration, settings=settings)
        asym = optimal_asymptotic_rate(link, f_ec=f_ec)
        rate = 1e12 / params.symbol_ps
        plob = plob_bound(link.channel_transmittance)
        rows.append({"distance_km": float(d), "protocol": PROTOCOL,
                     "block_size": float(block_symbols), "symbol_rate": rate,
                     "key_length": t["key_length"], "key_per_symbol": t["key_per_symbol"],
                     "key_rate_bps": t["key_per_symbol"] * rate, "qber_z": t["qber_z"],
                     "asymptotic_per_symbol": asym.rate,
                     "asymptotic_rate_bps": asym.rate * rate,
                     "plob_per_symbol": plob if math.isfinite(plob) else None,
                     "plob_rate_bps": plob * rate if math.isfinite(plob) else None})
    return rows


def bench_keyrate_points(distances_km=(0, 10, 20, 30, 40), *, symbols=20_000_000,
                         block_symbols=None, detector="gated", seed=1, reconciler="cascade",
                         resamples=300, progress=None):
    """The key-rate check at full size: :func:`keyrate_points` at ``distances_km`` with
    sessions of ``symbols``, and the theory curve of the same link from 0 to the last
    distance. Returns a JSON-ready dict: ``rows``, ``curve``, ``within_3_sigma`` (every
    point, on the unfloored key length), ``mismatch_outside_3_sigma`` (the points with key:
    beyond the key's end both theories are the leakage alone), ``points_with_key``,
    ``seconds``, the settings."""
    t0 = time.perf_counter()
    rows = keyrate_points(distances_km, symbols=symbols, block_symbols=block_symbols,
                          detector=detector, seed=seed, reconciler=reconciler,
                          resamples=resamples, progress=progress)
    fs = [r["f_ec"] for r in rows if r["f_ec"] is not None]
    top = max(float(d) for d in distances_km)
    grid = [top * i / 20 for i in range(21)] if top > 0 else [0.0]
    curve = theory_curve(grid, detector=detector, block_symbols=rows[0]["block_symbols"],
                         f_ec=max(float(np.mean(fs)), 1.0) if fs else 1.16)
    keyed = [r for r in rows if r["measured_key_bits"] > 0]
    return {"distances_km": [float(d) for d in distances_km], "symbols": symbols,
            "block_symbols": rows[0]["block_symbols"], "detector": detector, "seed": seed,
            "reconciler": reconciler, "resamples": resamples, "rows": rows, "curve": curve,
            "within_3_sigma": all(abs(r["z"]) <= 3 for r in rows),
            "mismatch_outside_3_sigma": all(abs(r["mismatch_z"]) > 3 for r in keyed),
            "points_with_key": len(keyed), "seconds": time.perf_counter() - t0}
