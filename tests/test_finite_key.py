"""Finite-key decoy-state bounds (host.distill.finite_key): Rusca 2018 (one decoy) and Lim 2014
(two decoys) against an independent scalar transcription, against the true photon-number
statistics of the link model, monotonicity, edge cases and refusals."""

import json
import math

import numpy as np
import pytest
from timebin.host.distill import finite_key as fk

ONE = dict(intensities=(0.5, 0.1), probabilities=(0.7, 0.3))
TWO = dict(intensities=(0.6, 0.2, 0.001), probabilities=(0.6, 0.25, 0.15))


def _h(x):
    return 0.0 if x <= 0 or x >= 1 else -x * math.log2(x) - (1 - x) * math.log2(1 - x)


def _gamma(a, b, c, d, k=21):
    if b <= 0:
        return 0.0
    return math.sqrt((c + d) * (1 - b) * b / (c * d * math.log(2))
                     * math.log2((c + d) / (c * d * (1 - b) * b) * k * k / (a * a)))


def _phi(v, sx1, sz1, eps_sec):
    if sx1 <= 0 or sz1 <= 0:
        return 0.5
    b = v / sx1
    if b >= 0.5:
        return 0.5
    return min(b + _gamma(eps_sec, b, sz1, sx1), 0.5)


def rusca_reference(nz, mz, nx, mx, mus, ps, eps_sec, eps_cor, leak):
    """Rusca et al. APL 112, 171104 (2018), Eqs. (A16)-(A25), written out once more."""
    (mu1, mu2), (p1, p2) = mus, ps
    eps = eps_sec / 19
    t0 = p1 * math.exp(-mu1) + p2 * math.exp(-mu2)
    t1 = p1 * mu1 * math.exp(-mu1) + p2 * mu2 * math.exp(-mu2)

    def dev(total):
        return math.sqrt(total / 2 * math.log(1 / eps))

    def vacuum_and_single(n, m):
        big, small = math.exp(mu1) / p1, math.exp(mu2) / p2
        n1_up = big * (n[0] + dev(sum(n)))
        n2_lo = small * (n[1] - dev(sum(n)))
        s0_up = 2 * (t0 * small * (m[1] + dev(sum(m))) + dev(sum(n)))          # (A16)
        s1 = mu1 * t1 / (mu2 * (mu1 - mu2)) * (
            n2_lo - (mu2 / mu1) ** 2 * n1_up - (1 - (mu2 / mu1) ** 2) * s0_up / t0)  # (A17)
        s0 = t0 / (mu1 - mu2) * (mu1 * n2_lo - mu2 * n1_up)                   # (A19)
        return max(s0, 0.0), max(s1, 0.0)

    sz0, sz1 = vacuum_and_single(nz, mz)
    _, sx1 = vacuum_and_single(nx, mx)
    v = t1 / (mu1 - mu2) * (math.exp(mu1) / p1 * (mx[0] + dev(sum(mx)))
                            - math.exp(mu2) / p2 * (mx[1] - dev(sum(mx))))    # (A22)
    phi = _phi(max(v, 0.0), sx1, sz1, eps_sec)                                # (A23)
    return (sz0 + sz1 * (1 - _h(phi)) - leak - 6 * math.log2(19 / eps_sec)
            - math.log2(2 / eps_cor))                                         # (A25)


def lim_reference(nz, mz, nx, mx, mus, ps, eps_sec, eps_cor, leak):
    """Lim et al. PRA 89, 022307 (2014), Eqs. (1)-(5) (their X is our Z)."""
    mu1, mu2, mu3 = mus
    t0 = sum(p * math.exp(-k) for k, p in zip(mus, ps, strict=True))
    t1 = sum(p * k * math.exp(-k) for k, p in zip(mus, ps, strict=True))
    log = math.log(21 / eps_sec)

    def scaled(values, sign):
        d = math.sqrt(sum(values) / 2 * log)
        return [math.exp(k) / p * (x + sign * d) for x, k, p in zip(values, mus, ps, strict=True)]

    def vacuum_and_single(n):
        lo, up = scaled(n, -1), scaled(n, +1)
        s0 = max(t0 * (mu2 * lo[2] - mu3 * up[1]) / (mu2 - mu3), 0.0)               # (2)
        s1 = t1 * mu1 * (lo[1] - up[2] - (mu2 ** 2 - mu3 ** 2) / mu1 ** 2 * (up[0] - s0 / t0)) \
            / (mu1 * (mu2 - mu3) - mu2 ** 2 + mu3 ** 2)                              # (3)
        return s0, max(s1, 0.0)

    sz0, sz1 = vacuum_and_single(nz)
    _, sx1 = vacuum_and_single(nx)
    v = t1 * (scaled(mx, +1)[1] - scaled(mx, -1)[2]) / (mu2 - mu3)                   # (4)
    phi = _phi(max(v, 0.0), sx1, sz1, eps_sec)                                       # (5)
    return sz0 + sz1 * (1 - _h(phi)) - leak - 6 * math.log2(21 / eps_sec) \
        - math.log2(2 / eps_cor)                                                     # (1)


def _counts(protocol, length_km=50.0, n=1e10, p_z=0.9, **link):
    src = TWO if protocol == "2decoy" else ONE
    model = fk.LinkModel(length_km=length_km, **link)
    return fk.expected_counts(model, p_z=p_z, n_symbols=n, **src), src


def _leak(counts, f=1.1):
    n_z = counts["Z"]["n"].sum()
    return f * n_z * fk.binary_entropy(counts["Z"]["m"].sum() / n_z)


@pytest.mark.parametrize("protocol", fk.PROTOCOLS)
def test_matches_independent_transcription(protocol):
    rng = np.random.default_rng(7)
    reference = lim_reference if protocol == "2decoy" else rusca_reference
    checked_positive = checked_zero = 0
    for length in (0, 25, 60, 100, 140, 180, 220):
        for n in (1e7, 1e9, 1e11):
            counts, src = _counts(protocol, length, n)
            # perturb like a measurement: Poisson draws (integers, may break the ordering)
            drawn = {b: {k: rng.poisson(counts[b][k]).astype(float) for k in ("n", "m")}
                     for b in ("Z", "X")}
            for b in ("Z", "X"):
                drawn[b]["m"] = np.minimum(drawn[b]["m"], drawn[b]["n"])
            for c in (counts, drawn):
                eps_sec, eps_cor, leak = 1e-9, 1e-15, _leak(c) if c["Z"]["n"].sum() else 0.0
                res = fk.key_length(c, protocol=protocol, eps_sec=eps_sec, eps_cor=eps_cor,
                                    leak_ec=leak, **src)
                want = reference(list(c["Z"]["n"]), list(c["Z"]["m"]), list(c["X"]["n"]),
                                 list(c["X"]["m"]), src["intensities"], src["probabilities"],
                                 eps_sec, eps_cor, leak)
                assert res.key_length_raw == pytest.approx(want, rel=1e-9, abs=1e-6)
                assert res.key_length == max(0, math.floor(want))
                checked_positive += want > 0
                checked_zero += want <= 0
    assert checked_positive > 5 and checked_zero > 5       # both regimes were exercised


def _true_statistics(model, src, p_z, n, photons):
    """Detections and errors of n-photon pulses per basis in the model (what the decoy
    method bounds): s_{B,n} = N p_B q_B sum_k p_k e^-k k^n/n! Y_n."""
    out = {}
    for basis, sift in (("Z", p_z * p_z), ("X", (1 - p_z) ** 2)):
        y, e = fk.detection_probabilities(model, 0.0, basis, photons=photons)
        tau = fk.photon_number_probability(photons, src["intensities"], src["probabilities"])
        out[basis] = (n * sift * tau * y, n * sift * tau * e, e / y)
    return out


@pytest.mark.parametrize("protocol", fk.PROTOCOLS)
@pytest.mark.parametrize("length", [0.0, 40.0, 120.0])
@pytest.mark.parametrize("n", [1e9, 1e16])
def test_bounds_hold_on_true_photon_statistics(protocol, length, n):
    """On expected data the decoy identities hold exactly, so every bound must be on the
    right side of the true n-photon statistics of the model (dark counts, afterpulses and
    optical errors included)."""
    link = dict(dark_count=1e-5, afterpulse=0.02, visibility=0.97, z_error=0.01)
    counts, src = _counts(protocol, length, n, p_z=0.8, **link)
    model = fk.LinkModel(length_km=length, **link)
    res = fk.key_length(counts, protocol=protocol, leak_ec=0.0, **src)
    vac = _true_statistics(model, src, 0.8, n, 0)
    one = _true_statistics(model, src, 0.8, n, 1)
    assert vac["Z"][1] == pytest.approx(vac["Z"][0] / 2, rel=1e-12)   # vacuum: half errors
    assert res.s_z0 <= vac["Z"][0] * (1 + 1e-12)
    assert res.s_z1 <= one["Z"][0] * (1 + 1e-12)
    assert res.s_x1 <= one["X"][0] * (1 + 1e-12)
    assert res.v_x1 >= one["X"][1] * (1 - 1e-12)
    assert res.phi_z >= one["X"][2] - 1e-12           # the single-photon phase error
    if res.s_z0_upper is not None:
        assert res.s_z0_upper >= vac["Z"][0]
        assert res.s_x0_upper >= vac["X"][0]
    if n == 1e16 and length < 100:
        # With (almost) no fluctuation the bounds are also useful, not only valid.
        assert res.s_z1 >= 0.8 * one["Z"][0]
        assert res.phi_z <= 4 * one["X"][2]


@pytest.mark.parametrize("protocol", fk.PROTOCOLS)
def test_finite_key_approaches_its_asymptotic_value(protocol):
    """At fixed parameters the key per symbol grows with N towards the bound without
    statistical fluctuations and without the eps cost (the reference with eps -> 1 is not
    allowed, so compare with a huge N and check the increments shrink)."""
    rates = []
    for n in (1e8, 1e10, 1e12, 1e14, 1e16, 1e18):
        counts, src = _counts(protocol, 50, n)
        res = fk.key_length(counts, protocol=protocol, leak_ec=_leak(counts), **src)
        rates.append(res.key_length / n)
    assert all(b >= a for a, b in zip(rates, rates[1:], strict=False))
    gaps = [rates[-1] - r for r in rates[:-1]]
    assert all(b < a / 3 for a, b in zip(gaps, gaps[1:], strict=False))
    assert rates[-2] / rates[-1] > 0.995


@pytest.mark.parametrize("protocol", fk.PROTOCOLS)
def test_monotone_in_block_size_errors_and_distance(protocol):
    lengths = []
    for n in np.logspace(6, 14, 17):
        counts, src = _counts(protocol, 80, n)
        lengths.append(fk.key_length(counts, protocol=protocol, leak_ec=_leak(counts),
                                     **src).key_length)
    assert lengths[0] == 0 and lengths[-1] > 0
    assert all(b >= a for a, b in zip(lengths, lengths[1:], strict=False))

    # More errors (lower visibility, larger Z error) never give more key.
    previous = math.inf
    for vis in (1.0, 0.99, 0.97, 0.94, 0.9, 0.85):
        counts, src = _counts(protocol, 30, 1e10, visibility=vis, z_error=(1 - vis) / 2)
        length = fk.key_length(counts, protocol=protocol, leak_ec=_leak(counts),
                               **src).key_length
        assert length <= previous
        previous = length
    assert previous == 0

    # More errors at the same detections and leakage never give more key either.
    counts, src = _counts(protocol, 30, 1e10)
    leak = _leak(counts)
    previous = math.inf
    for scale in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
        c = {b: {"n": counts[b]["n"], "m": np.minimum(counts[b]["m"] * scale, counts[b]["n"])}
             for b in ("Z", "X")}
        length = fk.key_length(c, protocol=protocol, leak_ec=leak, **src).key_length
        assert length <= previous
        previous = length

    # Longer fibre, same source: never more key, none at 300 km.
    previous = math.inf
    for length_km in range(0, 301, 20):
        counts, src = _counts(protocol, length_km, 1e10)
        length = fk.key_length(counts, protocol=protocol, leak_ec=_leak(counts),
                               **src).key_length
        assert length <= previous
        previous = length
    assert previous == 0


@pytest.mark.parametrize("protocol", fk.PROTOCOLS)
def test_zero_detections_and_all_errors(protocol):
    src = TWO if protocol == "2decoy" else ONE
    k = len(src["intensities"])
    zero = {"Z": {"n": [0] * k, "m": [0] * k}, "X": {"n": [0] * k, "m": [0] * k}}
    res = fk.key_length(zero, protocol=protocol, leak_ec=0, **src)
    assert res.key_length == 0 and res.key_length_raw < 0
    assert res.phi_z == 0.5 and res.gamma is None and res.qber_z is None
    assert res.s_z1 == 0 and res.s_x1 == 0

    counts, _ = _counts(protocol, 10, 1e10)
    wrong = {b: {"n": counts[b]["n"], "m": counts[b]["n"]} for b in ("Z", "X")}
    res = fk.key_length(wrong, protocol=protocol, leak_ec=0, **src)
    assert res.key_length == 0 and res.phi_z == 0.5 and res.qber_z == 1.0


def test_result_fields_and_json():
    counts, src = _counts("1decoy-3state", 50, 1e10)
    res = fk.key_length(counts, protocol="1decoy-3state", leak_ec=_leak(counts), **src)
    d = res.to_dict()
    json.loads(json.dumps(d))
    assert isinstance(res.key_length, int) and res.key_length == math.floor(res.key_length_raw)
    assert d["key_length"] == res.key_length and d["eps_terms"] == 19
    assert len(d["n_z_minus"]) == 2 and d["s_z0_upper"] > 0
    # the chain of (A25)
    assert res.key_length_raw == pytest.approx(
        res.s_z0 + res.s_z1 * (1 - fk.binary_entropy(res.phi_z)) - res.leak_ec
        - 6 * math.log2(19 / 1e-9) - math.log2(2 / 1e-15))
    assert res.phi_z == pytest.approx(res.phase_error_observed + res.gamma)
    # Lim: 21 error terms, no vacuum upper bound
    counts, src = _counts("2decoy", 50, 1e10)
    res = fk.key_length(counts, protocol="2decoy", leak_ec=_leak(counts), **src)
    assert res.eps_terms == 21 and res.s_z0_upper is None and res.key_length > 0
    # the 3-state bound is the APL bound on |+>-only X statistics: same numbers as 4 states
    a = fk.key_length(counts := _counts("1decoy-3state", 70, 1e9)[0],
                      protocol="1decoy-3state", leak_ec=1e5, **ONE).to_dict()
    b = fk.key_length(counts, protocol="1decoy-4state", leak_ec=1e5, **ONE).to_dict()
    assert a.pop("protocol") == "1decoy-3state" and b.pop("protocol") == "1decoy-4state"
    assert a == b


def test_counts_model_and_asymptotic_rate():
    # Without dark counts, errors and afterpulses: n_{Z,k} = N p_k p_z^2 (1 - e^{-eta k}).
    model = fk.LinkModel(length_km=25, dark_count=0, visibility=1, z_error=0,
                         x_middle_fraction=1)
    eta = 10 ** (-0.5) * 0.25
    c = fk.expected_counts(model, p_z=0.9, n_symbols=1e6, **ONE)
    want = [1e6 * p * 0.81 * (1 - math.exp(-eta * k)) for k, p in zip(*ONE.values(),
                                                                      strict=True)]
    np.testing.assert_allclose(c["Z"]["n"], want, rtol=1e-12)
    np.testing.assert_allclose(c["X"]["n"], np.array(want) / 81, rtol=1e-12)
    assert not c["Z"]["m"].any() and not c["X"]["m"].any()
    # The coherent detection probability is the Poisson mixture of the n-photon ones.
    model = fk.LinkModel(length_km=40, dark_count=1e-4, afterpulse=0.03, visibility=0.9)
    for basis in ("Z", "X"):
        d, e = fk.detection_probabilities(model, 0.7, basis)
        mix = [fk.detection_probabilities(model, 0, basis, photons=n) for n in range(40)]
        w = [math.exp(-0.7) * 0.7 ** n / math.factorial(n) for n in range(40)]
        assert d == pytest.approx(sum(wi * y for wi, (y, _) in zip(w, mix, strict=True)))
        assert e == pytest.approx(sum(wi * x for wi, (_, x) in zip(w, mix, strict=True)))
    # A dead time scales every count by 1 / (1 + R P_click t).
    dead = fk.LinkModel(length_km=10, dead_time=50e-9, symbol_rate=2.5e9)
    free = dead.replace(dead_time=0.0)
    a = fk.expected_counts(dead, p_z=0.9, n_symbols=1e9, **ONE)["Z"]["n"]
    b = fk.expected_counts(free, p_z=0.9, n_symbols=1e9, **ONE)["Z"]["n"]
    click = sum(p * (1 - (1 - 1e-6) ** 4 * math.exp(-dead.transmittance * k))
                for k, p in zip(*ONE.values(), strict=True))
    np.testing.assert_allclose(a, b / (1 + 2.5e9 * click * 50e-9), rtol=1e-12)

    # GLLP without noise: R = q mu e^-mu eta.
    ideal = fk.LinkModel(length_km=50, dark_count=0, visibility=1, z_error=0)
    r = fk.asymptotic_rate(ideal, 0.5, sifting=0.81)
    assert r.rate == pytest.approx(0.81 * 0.5 * math.exp(-0.5) * ideal.transmittance)
    assert r.qber == 0 and r.e1 == 0
    noisy = [fk.asymptotic_rate(fk.LinkModel(length_km=km), 0.5).rate for km in range(0, 400, 40)]
    assert all(b <= a for a, b in zip(noisy, noisy[1:], strict=False)) and noisy[-1] == 0


def test_helpers():
    assert fk.binary_entropy(0.5) == 1.0 and fk.binary_entropy(0) == 0.0
    np.testing.assert_allclose(fk.binary_entropy(np.array([0.0, 0.11, 1.0])),
                               [0.0, 0.4999, 0.0], atol=1e-4)
    assert fk.hoeffding_delta(200, math.exp(-1)) == pytest.approx(10.0)
    assert fk.photon_number_probability(0, (0.5, 0.1), (0.7, 0.3)) == pytest.approx(
        0.7 * math.exp(-0.5) + 0.3 * math.exp(-0.1))
    assert fk.gamma_sampling(1e-9, 0.0, 1e6, 1e5) == 0.0
    assert fk.gamma_sampling(1e-9, 0.02, 1e6, 1e5) == pytest.approx(
        _gamma(1e-9, 0.02, 1e6, 1e5))
    # gamma shrinks with the sample sizes
    assert fk.gamma_sampling(1e-9, 0.02, 1e8, 1e7) < fk.gamma_sampling(1e-9, 0.02, 1e6, 1e5)
    assert fk.security_cost(1e-9, 1e-15, 19) == pytest.approx(
        6 * math.log2(19e9) + math.log2(2e15))


GOOD = {"Z": {"n": [1000, 200], "m": [10, 3]}, "X": {"n": [100, 20], "m": [2, 1]}}


@pytest.mark.parametrize("change, match", [
    ({"protocol": "3decoy"}, "3decoy"),
    ({"intensities": (0.1, 0.5)}, r"mu1 > mu2 > 0.*\(0\.1, 0\.5\)"),
    ({"intensities": (0.5, 0.0)}, "mu1 > mu2 > 0"),
    ({"intensities": (0.5, 0.1, 0.0)}, "needs 2 intensities"),
    ({"probabilities": (0.7, 0.4)}, "sum to 1"),
    ({"probabilities": (1.0, 0.0)}, "0.0"),
    ({"eps_sec": 0.0}, "eps_sec.*0.0"),
    ({"eps_sec": 1.0}, "eps_sec.*1.0"),
    ({"eps_cor": -1e-15}, "eps_cor"),
    ({"leak_ec": -1}, "leak_ec.*-1"),
    ({"leak_ec": math.nan}, "leak_ec"),
    ({"counts": {"Z": {"n": [-1, 200], "m": [0, 3]}, "X": GOOD["X"]}},
     r"counts\['Z'\]\['n'\]\[0\].*-1"),
    ({"counts": {"Z": GOOD["Z"], "X": {"n": [100, 20], "m": [2, 21]}}},
     r"counts\['X'\]\['m'\]\[1\] = 21.0 errors exceed"),
    ({"counts": {"Z": GOOD["Z"], "X": {"n": [100, 20], "m": [-2, 1]}}}, "non-negative"),
    ({"counts": {"Z": GOOD["Z"]}}, "'X'"),
    ({"counts": {"Z": {"n": [1, 2, 3], "m": [0, 0, 0]}, "X": GOOD["X"]}}, "2 values"),
    ({"counts": {"Z": {"n": [1, math.inf], "m": [0, 0]}, "X": GOOD["X"]}}, "finite"),
])
def test_bad_input_is_refused(change, match):
    kwargs = {"counts": GOOD, "protocol": "1decoy-3state", "intensities": (0.5, 0.1),
              "probabilities": (0.7, 0.3), "eps_sec": 1e-9, "eps_cor": 1e-15, "leak_ec": 10}
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        fk.key_length(kwargs.pop("counts"), **kwargs)


@pytest.mark.parametrize("intensities", [(0.5, 0.3, 0.25), (0.5, 0.2, 0.2), (0.5, 0.2, -0.1)])
def test_two_decoy_ordering_is_refused(intensities):
    counts = {b: {"n": [10, 10, 10], "m": [1, 1, 1]} for b in ("Z", "X")}
    with pytest.raises(ValueError, match="mu1 > mu2 \\+ mu3 and mu2 > mu3 >= 0"):
        fk.key_length(counts, protocol="2decoy", intensities=intensities,
                      probabilities=(0.5, 0.3, 0.2), leak_ec=0)


def test_link_model_refuses_bad_values():
    for field, value in (("detector_efficiency", 0.0), ("dark_count", 1.0), ("visibility", 1.5),
                         ("length_km", -1.0), ("x_middle_fraction", 0.0), ("bob_p_z", 1.0)):
        with pytest.raises(ValueError, match=field):
            fk.LinkModel(**{field: value})
    with pytest.raises(ValueError, match="symbol_rate"):
        fk.LinkModel(dead_time=1e-8)
    with pytest.raises(ValueError, match="p_z"):
        fk.expected_counts(fk.LinkModel(), p_z=1.5, n_symbols=10, **ONE)


@pytest.mark.parametrize("protocol", fk.PROTOCOLS)
def test_each_basis_takes_its_own_intensities(protocol):
    """``intensities_x``: the X estimates (steps 1-5 of X) use the X states' intensities,
    the Z estimates the Z states'; equal intensities give the bound unchanged."""
    counts, src = _counts(protocol, length_km=20.0)
    leak = _leak(counts)
    base = fk.key_length(counts, protocol=protocol, leak_ec=leak, **src)
    same = fk.key_length(counts, protocol=protocol, leak_ec=leak,
                         intensities_x=src["intensities"], **src)
    assert same == base
    x_mus = tuple(m * 1.02 for m in src["intensities"])
    moved = fk.key_length(counts, protocol=protocol, leak_ec=leak, intensities_x=x_mus, **src)
    assert moved.intensities == base.intensities and moved.intensities_x == x_mus
    for name in ("s_z0", "s_z1", "n_z_minus", "n_z_plus", "tau_0", "tau_1"):
        assert getattr(moved, name) == getattr(base, name), name
    assert moved.s_x1 != base.s_x1 and moved.v_x1 != base.v_x1
    # the X estimates are those of a bound whose intensities are all X's
    all_x = fk.key_length(counts, protocol=protocol, leak_ec=leak,
                          **{**src, "intensities": x_mus})
    assert moved.s_x1 == all_x.s_x1 and moved.v_x1 == all_x.v_x1
    assert moved.n_x_minus == all_x.n_x_minus
    with pytest.raises(ValueError, match="intensities"):
        fk.key_length(counts, protocol=protocol, leak_ec=leak,
                      intensities_x=src["intensities"][::-1], **src)
