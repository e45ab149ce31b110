"""Key-rate study: the finite-key secret key rate of a link versus distance.

At each distance of a sweep, :func:`optimise_parameters` chooses the source parameters
(intensities, their probabilities and the Z-basis probability ``p_z``) that maximise the
finite-key secret key per symbol at block size ``N`` (symbols sent per block), evaluating the
bound of :mod:`.finite_key` on the expected counts of the link model
(:func:`~.finite_key.expected_counts`) with error-correction leakage
``lambda_EC = f_EC n_Z h(E_Z)``. Each point also carries the asymptotic GLLP rate with
infinitely many decoys (optimal ``mu``, sifting factor 1: the limit of efficient BB84) and
the repeaterless PLOB bound ``-log2(1 - eta)`` of the fibre (Pirandola, Laurenza, Ottaviani,
Banchi, Nat. Commun. 8, 15043 (2017)). :func:`plot_keyrate` draws the sweep.

Defaults (:data:`DEFAULTS`) describe a GHz-gated InGaAs/InP time-bin link: 2.5 GS/s
(``L = 16`` lanes at 156.25 MHz, DESIGN.md section 3), detector efficiency 0.25, dark count
probability 1e-6 per gate, 0.2 dB/km fibre, visibility 0.99 (X optical error 0.5 %, the same
in Z), half the X arm's light in the interfering middle slot, ``f_EC = 1.06``, blocks of
``N = 1e10`` symbols (4 s at 2.5 GS/s), ``eps_sec = 1e-9``, ``eps_cor = 1e-15``, no dead
time and no afterpulsing (both can be set). The optimiser is seeded (``seed``): the same
inputs give the same sweep.
"""

import math
from dataclasses import asdict, dataclass

from scipy.optimize import differential_evolution, minimize, minimize_scalar

from .finite_key import (
    PROTOCOLS,
    LinkModel,
    _evaluate,
    _expected_lists,
    asymptotic_rate,
    binary_entropy,
    expected_counts,
    key_length,
    security_cost,
)

__all__ = [
    "DEFAULTS",
    "KeyRatePoint",
    "evaluate_parameters",
    "optimise_parameters",
    "optimal_asymptotic_rate",
    "plob_bound",
    "keyrate_sweep",
    "plot_keyrate",
]

#: Defaults of :func:`keyrate_sweep` (and of ``timebin keyrate``).
DEFAULTS = {
    "protocol": "1decoy-3state",
    "symbol_rate": 2.5e9,
    "block_size": 1e10,
    "loss_db_per_km": 0.2,
    "extra_loss_db": 0.0,
    "detector_efficiency": 0.25,
    "dark_count": 1e-6,
    "afterpulse": 0.0,
    "dead_time": 0.0,
    "visibility": 0.99,
    "z_error": None,
    "x_middle_fraction": 0.5,
    "bob_p_z": None,
    "eps_sec": 1e-9,
    "eps_cor": 1e-15,
    "f_ec": 1.06,
    "mu3": 2e-4,
    "seed": 0,
}

#: Search box of the optimiser. One decoy: ``mu1``, ``mu2/mu1``, ``p_mu1``, ``p_z``. Two
#: decoys: ``mu1``, ``r`` with ``mu2 = mu3 + r (mu1 - 2 mu3)`` (so ``mu3 < mu2 < mu1 - mu3``),
#: ``a``, ``b`` with ``p_mu1 = a``, ``p_mu2 = (1-a) b``, ``p_mu3 = (1-a)(1-b)``, and ``p_z``.
_BOUNDS = {
    1: [(0.02, 1.0), (0.01, 0.95), (0.02, 0.98), (0.5, 0.999)],
    2: [(0.02, 1.0), (0.01, 0.99), (0.02, 0.98), (0.02, 0.98), (0.5, 0.999)],
}


def _decoys(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    return 2 if protocol == "2decoy" else 1


def _decode(decoys, x, mu3):
    """Search vector -> (intensities, probabilities, p_z)."""
    if decoys == 1:
        mu1, ratio, p1, p_z = x
        return (mu1, mu1 * ratio), (p1, 1.0 - p1), p_z
    mu1, r, a, b, p_z = x
    mu2 = mu3 + r * (mu1 - 2.0 * mu3)
    return (mu1, mu2, mu3), (a, (1.0 - a) * b, (1.0 - a) * (1.0 - b)), p_z


def _encode(decoys, intensities, probabilities, p_z, mu3):
    """(intensities, probabilities, p_z) -> search vector (inverse of :func:`_decode`)."""
    if decoys == 1:
        return [intensities[0], intensities[1] / intensities[0], probabilities[0], p_z]
    mu1, mu2, _ = intensities
    a = probabilities[0]
    b = probabilities[1] / (1.0 - a)
    return [mu1, (mu2 - mu3) / (mu1 - 2.0 * mu3), a, b, p_z]


def _clip(x, bounds):
    """Into the box, a hair inside (differential evolution refuses a start on its edge)."""
    out = []
    for v, (lo, hi) in zip(x, bounds, strict=True):
        margin = 1e-9 * (hi - lo)
        out.append(min(max(float(v), lo + margin), hi - margin))
    return out


def evaluate_parameters(link, *, protocol, intensities, probabilities, p_z, block_size,
                        eps_sec=1e-9, eps_cor=1e-15, f_ec=1.06):
    """The finite-key bound on the expected counts of ``block_size`` symbols.

    Parameters
    ----------
    link : LinkModel
    protocol : str
        One of :data:`~.finite_key.PROTOCOLS`.
    intensities, probabilities : sequence of float
        Alice's intensities (ordered as the bound requires) and their probabilities.
    p_z : float
        Alice's Z-basis probability (Bob's too unless ``link.bob_p_z`` is set).
    block_size : float
        Symbols sent per block, ``N``.
    eps_sec, eps_cor : float
    f_ec : float
        Error-correction efficiency: ``lambda_EC = f_EC n_Z h(m_Z / n_Z)``.

    Returns
    -------
    FiniteKeyResult
        Its ``key_length / block_size`` is the secret key per symbol.
    """
    if not (block_size > 0 and math.isfinite(block_size)):
        raise ValueError(f"block_size must be a positive number of symbols, not {block_size!r}")
    counts = expected_counts(link, intensities=intensities, probabilities=probabilities,
                             p_z=p_z, n_symbols=block_size)
    n_z = float(counts["Z"]["n"].sum())
    qber = float(counts["Z"]["m"].sum()) / n_z if n_z > 0 else 0.0
    leak = f_ec * n_z * binary_entropy(min(qber, 1.0))
    return key_length(counts, protocol=protocol, intensities=intensities,
                      probabilities=probabilities, eps_sec=eps_sec, eps_cor=eps_cor,
                      leak_ec=leak)


def _objective(link, protocol, decoys, block_size, eps_sec, eps_cor, f_ec, mu3):
    """Minus the (unfloored) key per symbol; below the single-photon threshold it also adds
    the (negative) single-photon bounds so that the search is guided back."""

    def f(x):
        mus, ps, p_z = _decode(decoys, x, mu3)
        nz, mz, nx, mx = _expected_lists(link, mus, ps, p_z, block_size)
        n_z = sum(nz)
        qber = sum(mz) / n_z if n_z > 0 else 0.0
        leak = f_ec * n_z * binary_entropy(min(qber, 1.0))
        res = _evaluate(protocol, list(mus), list(ps), nz, mz, nx, mx, eps_sec, eps_cor, leak)
        score = res.key_length_raw
        if res.s_z1_bound <= 0 or res.s_x1_bound <= 0:
            score += min(res.s_z1_bound, res.s_x1_bound)
        return -score / block_size

    return f


def optimise_parameters(link, *, protocol="1decoy-3state", block_size=1e10, eps_sec=1e-9,
                        eps_cor=1e-15, f_ec=1.06, mu3=2e-4, seed=0, start=None):
    """Source parameters that maximise the finite-key key per symbol on ``link``.

    From ``start`` (the optimum of a neighbouring distance) a bounded Nelder-Mead search;
    without a start, or when that search finds no key, a seeded differential evolution over
    the search box (``mu1`` in [0.02, 1], the decoy below it, probabilities in
    [0.02, 0.98], ``p_z`` in [0.5, 0.999]) polished by Nelder-Mead. The search maximises
    the unfloored key length; where no key is possible the parameters returned are those of
    the least negative bound.

    Parameters
    ----------
    link : LinkModel
    protocol : str
    block_size : float
        Symbols per block ``N``.
    eps_sec, eps_cor, f_ec : float
    mu3 : float
        The fixed weakest intensity of ``"2decoy"`` (vacuum or the carver's extinction
        floor; Lim 2014 used 2e-4); ignored by the one-decoy bounds.
    seed : int
        Seed of the differential evolution.
    start : dict or None
        ``{"intensities", "probabilities", "p_z"}`` to start from (e.g. the optimum of a
        neighbouring distance).

    Returns
    -------
    (dict, FiniteKeyResult)
        ``{"intensities", "probabilities", "p_z"}`` and the bound there.
    """
    decoys = _decoys(protocol)
    if decoys == 2 and not (0.0 <= mu3 < 0.005):
        raise ValueError(f"mu3 must be in [0, 0.005) (below the search box), not {mu3!r}")
    bounds = _BOUNDS[decoys]
    f = _objective(link, protocol, decoys, block_size, eps_sec, eps_cor, f_ec, mu3)
    nm_options = {"xatol": 1e-6, "fatol": 1e-14, "maxiter": 1500}
    best_x, best_f = None, math.inf
    x0 = None
    if start is not None:
        # Warm start (the optimum of a neighbouring distance): a local search suffices
        # while it finds key.
        x0 = _clip(_encode(decoys, start["intensities"], start["probabilities"],
                           start["p_z"], mu3), bounds)
        nm = minimize(f, x0, method="Nelder-Mead", bounds=bounds, options=nm_options)
        best_x, best_f = list(nm.x), float(nm.fun)
    if not best_f < 0:
        de = differential_evolution(f, bounds, seed=seed, popsize=8, maxiter=60, tol=1e-8,
                                    polish=False, x0=x0, init="sobol")
        if de.fun < best_f:
            best_x, best_f = list(de.x), float(de.fun)
        nm = minimize(f, de.x, method="Nelder-Mead", bounds=bounds, options=nm_options)
        if nm.fun < best_f:
            best_x, best_f = list(nm.x), float(nm.fun)
    mus, ps, p_z = _decode(decoys, best_x, mu3)
    params = {"intensities": tuple(float(v) for v in mus),
              "probabilities": tuple(float(v) for v in ps), "p_z": float(p_z)}
    result = evaluate_parameters(link, protocol=protocol, block_size=block_size,
                                 eps_sec=eps_sec, eps_cor=eps_cor, f_ec=f_ec, **params)
    return params, result


def optimal_asymptotic_rate(link, *, f_ec=1.06, sifting=1.0):
    """:func:`~.finite_key.asymptotic_rate` at the optimal signal intensity ``mu``."""
    res = minimize_scalar(lambda mu: -asymptotic_rate(link, mu, f_ec=f_ec,
                                                       sifting=sifting).rate,
                          bounds=(1e-4, 1.5), method="bounded",
                          options={"xatol": 1e-6})
    return asymptotic_rate(link, float(res.x), f_ec=f_ec, sifting=sifting)


def plob_bound(eta):
    """Repeaterless secret key capacity ``-log2(1 - eta)`` per channel use (PLOB).

    Infinite for ``eta = 1``.
    """
    if not (0.0 <= eta <= 1.0):
        raise ValueError(f"eta must be a transmittance in [0, 1], not {eta!r}")
    return math.inf if eta >= 1.0 else -math.log2(1.0 - eta)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class KeyRatePoint:
    """One distance of a sweep (:func:`keyrate_sweep`)."""

    distance_km: float
    protocol: str
    block_size: float
    symbol_rate: float
    channel_transmittance: float     # fibre only: the PLOB bound's eta
    transmittance: float             # fibre, receiver loss and detector efficiency
    key_length: int                  # bits per block of block_size symbols
    key_per_symbol: float            # key_length / block_size
    key_rate_bps: float              # key_per_symbol * symbol_rate
    intensities: tuple               # optimal
    probabilities: tuple
    p_z: float
    qber_z: float | None
    qber_x: float | None
    phi_z: float
    asymptotic_per_symbol: float     # GLLP, infinite decoys, sifting 1, optimal mu
    asymptotic_rate_bps: float
    asymptotic_mu: float
    plob_per_symbol: float           # -log2(1 - eta_channel) (inf at 0 km)
    plob_rate_bps: float
    seed: int
    bounds: dict                     # FiniteKeyResult.to_dict() at the optimum

    def to_dict(self):
        """A JSON-ready dict (tuples become lists, infinities None)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
            else:
                out[key] = _finite_or_none(value)
        return out


def _link(distance_km, opts):
    return LinkModel(length_km=distance_km, loss_db_per_km=opts["loss_db_per_km"],
                     extra_loss_db=opts["extra_loss_db"],
                     detector_efficiency=opts["detector_efficiency"],
                     dark_count=opts["dark_count"], afterpulse=opts["afterpulse"],
                     visibility=opts["visibility"], z_error=opts["z_error"],
                     x_middle_fraction=opts["x_middle_fraction"], bob_p_z=opts["bob_p_z"],
                     dead_time=opts["dead_time"], symbol_rate=opts["symbol_rate"])


def keyrate_sweep(distances_km, *, progress=None, **options):
    """Optimal finite-key key rate, asymptotic rate and PLOB bound at each distance.

    Parameters
    ----------
    distances_km : iterable of float
        Fibre lengths (km, >= 0); evaluated in increasing order, each optimum seeding the
        next search; rows come back in the order given.
    progress : callable or None
        Called as ``progress(done, total)`` after each distance.
    **options
        Any key of :data:`DEFAULTS`: ``protocol``, ``symbol_rate`` (symbols/s),
        ``block_size`` (symbols per block ``N``), ``loss_db_per_km``, ``extra_loss_db``,
        ``detector_efficiency``, ``dark_count`` (per gate), ``afterpulse``, ``dead_time``
        (s), ``visibility``, ``z_error``, ``x_middle_fraction``, ``bob_p_z``, ``eps_sec``,
        ``eps_cor``, ``f_ec``, ``mu3`` (2-decoy weakest intensity), ``seed``.

    Returns
    -------
    list of KeyRatePoint
    """
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown keyrate option(s): {', '.join(sorted(unknown))}")
    opts = {**DEFAULTS, **options}
    _decoys(opts["protocol"])
    if not (opts["symbol_rate"] > 0 and math.isfinite(opts["symbol_rate"])):
        raise ValueError(f"symbol_rate must be positive, not {opts['symbol_rate']!r}")
    if not (opts["block_size"] >= 1 and math.isfinite(opts["block_size"])):
        raise ValueError(f"block_size must be at least 1 symbol, not {opts['block_size']!r}")
    if not (opts["f_ec"] >= 1.0):
        raise ValueError(f"f_ec must be at least 1, not {opts['f_ec']!r}")
    security_cost(opts["eps_sec"], opts["eps_cor"], 1)   # raises on eps outside (0, 1)
    if opts["protocol"] == "2decoy" and not (0.0 <= opts["mu3"] < 0.005):
        raise ValueError(f"mu3 must be in [0, 0.005) (below the search box), not "
                         f"{opts['mu3']!r}")
    distances = [float(d) for d in distances_km]
    for d in distances:
        if not (d >= 0 and math.isfinite(d)):
            raise ValueError(f"distances must be finite and non-negative, not {d!r}")
    if not distances:
        raise ValueError("distances must not be empty")
    _link(distances[0], opts)                            # raises on bad link parameters
    rows = {}
    start = None
    order = sorted(range(len(distances)), key=lambda i: distances[i])
    for done, i in enumerate(order, 1):
        d = distances[i]
        link = _link(d, opts)
        params, res = optimise_parameters(link, protocol=opts["protocol"],
                                          block_size=opts["block_size"],
                                          eps_sec=opts["eps_sec"], eps_cor=opts["eps_cor"],
                                          f_ec=opts["f_ec"], mu3=opts["mu3"],
                                          seed=opts["seed"], start=start)
        if res.key_length > 0:
            start = params
        asym = optimal_asymptotic_rate(link, f_ec=opts["f_ec"])
        eta_ch = link.channel_transmittance
        plob = plob_bound(eta_ch)
        per_symbol = res.key_length / opts["block_size"]
        rows[i] = KeyRatePoint(
            distance_km=d, protocol=opts["protocol"], block_size=float(opts["block_size"]),
            symbol_rate=float(opts["symbol_rate"]), channel_transmittance=eta_ch,
            transmittance=link.transmittance, key_length=res.key_length,
            key_per_symbol=per_symbol, key_rate_bps=per_symbol * opts["symbol_rate"],
            intensities=params["intensities"], probabilities=params["probabilities"],
            p_z=params["p_z"], qber_z=res.qber_z, qber_x=res.qber_x, phi_z=res.phi_z,
            asymptotic_per_symbol=asym.rate,
            asymptotic_rate_bps=asym.rate * opts["symbol_rate"], asymptotic_mu=asym.mu,
            plob_per_symbol=plob, plob_rate_bps=plob * opts["symbol_rate"],
            seed=int(opts["seed"]), bounds=res.to_dict())
        if progress is not None:
            progress(done, len(distances))
    return [rows[i] for i in range(len(distances))]


def _row_dict(row):
    return row.to_dict() if hasattr(row, "to_dict") else dict(row)


def _measured_points(measured):
    points = []
    for item in measured:
        if isinstance(item, dict):
            d = item.get("distance_km", item.get("distance"))
            r = item.get("rate_bps", item.get("rate"))
            e = item.get("error", item.get("err"))
        else:
            item = tuple(item)
            if len(item) not in (2, 3):
                raise ValueError("measured points must be (distance_km, rate[, error]), "
                                 f"not {item!r}")
            d, r = item[0], item[1]
            e = item[2] if len(item) == 3 else None
        if d is None or r is None:
            raise ValueError(f"measured point lacks a distance or a rate: {item!r}")
        points.append((float(d), float(r), None if e is None else float(e)))
    return points


def plot_keyrate(rows, path, measured=None, *, title=None, per_symbol=False):
    """Draw a sweep: finite-key rate, asymptotic rate and PLOB bound versus distance.

    Parameters
    ----------
    rows : sequence of KeyRatePoint or dict
        The output of :func:`keyrate_sweep` (or its ``to_dict()`` rows).
    path : str or path-like
        Where to write the PNG.
    measured : iterable or None
        Measured points to overlay: ``(distance_km, rate[, error])`` tuples or dicts with
        ``distance_km``, ``rate_bps`` (or ``rate``) and optionally ``error``; rates in bit/s
        (per symbol with ``per_symbol``).
    title : str or None
    per_symbol : bool
        Plot bits per symbol instead of bit/s.

    Returns
    -------
    str
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = [_row_dict(r) for r in rows]
    if not data:
        raise ValueError("rows must not be empty")
    data.sort(key=lambda r: r["distance_km"])
    suffix = "per_symbol" if per_symbol else "rate_bps"

    def series(key):
        xs, ys = [], []
        for r in data:
            v = r.get(key)
            if v is not None and math.isfinite(v) and v > 0:
                xs.append(r["distance_km"])
                ys.append(v)
        return xs, ys

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    first = data[0]
    label = f"finite key ({first['protocol']}, N = {first['block_size']:.0e} symbols)"
    for key, lab, style in ((f"key_{suffix}", label, {"color": "C0", "lw": 2}),
                            (f"asymptotic_{suffix}", "asymptotic (GLLP, infinite decoys)",
                             {"color": "C1", "ls": "--"}),
                            (f"plob_{suffix}", "PLOB bound -log2(1-eta)",
                             {"color": "k", "ls": ":"})):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, label=lab, **style)
    if measured:
        pts = _measured_points(measured)
        errs = [0.0 if e is None else e for _, _, e in pts]
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                    yerr=errs if any(errs) else None, fmt="o", color="C3",
                    capsize=3, label="measured")
    ax.set_yscale("log")
    ax.set_xlabel("fibre length (km)")
    ax.set_ylabel("secret key (bit/symbol)" if per_symbol else "secret key rate (bit/s)")
    ax.set_title(title or "Secret key rate versus distance")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return str(path)
