"""Measured key-rate points of the virtual lab against the theory of the same link
(issue 6: "the measured points lie on the `timebin keyrate` theory curve within their
statistical error for at least three distances"; the full curve is ``timebin bench lab
--curve``)."""

import json
import math

import numpy as np
import pytest
from timebin.host.distill.finite_key import expected_counts, key_length
from timebin.sim.channel import link_figures, symbol_mean_photons
from timebin.sim.keyrate_points import (
    alice_settings,
    bench_keyrate_points,
    expected_lab_counts,
    keyrate_points,
    link_model,
    session_counts,
    theory_point,
)
from timebin.sim.lab import lab_params

DISTANCES = (0.0, 5.0, 10.0)


@pytest.fixture(scope="module")
def points():
    """One reference session of 10^7 symbols (one block) at each distance: about 25 s."""
    return keyrate_points(DISTANCES, symbols=10_000_000, seed=1, resamples=300)


def test_measured_points_lie_on_the_theory_curve(points):
    assert [r["distance_km"] for r in points] == list(DISTANCES)
    keys = [r["measured_key_bits"] for r in points]
    assert all(k > 0 for k in keys) and keys == sorted(keys, reverse=True)
    for r in points:
        assert r["status"] == ["key"] and r["blocks_used"] == 1
        assert 0 < r["sigma"] < 0.2 * r["measured_key_raw"]
        assert abs(r["z"]) <= 3, r


def test_a_wrong_theory_does_not_fit(points):
    """The same check against the theory of a link with 3 dB more loss must fail: the
    error bars are tight enough to tell."""
    for r in points:
        assert r["mismatch_db"] == 3.0
        assert r["mismatch_key_raw"] < r["theory_key_raw"]
        assert abs(r["mismatch_z"]) > 3, r


def test_measured_counts_agree_with_the_expected_counts(points):
    """Each sifted count per basis and intensity within 4 Poisson sigmas of the theory."""
    for r in points:
        for basis in ("Z", "X"):
            for kind in ("n", "m"):
                for got, want in zip(r["counts"][0][basis][kind],
                                     r["theory_counts"][basis][kind], strict=True):
                    assert abs(got - want) <= 4 * math.sqrt(want), (r["distance_km"], basis,
                                                                    kind, got, want)


def test_the_link_maps_onto_the_key_rate_model():
    params = lab_params("gated", distance_km=25.0, bob_p_z=0.6, bob_loss_db=1.5)
    fig = link_figures(params)
    link = link_model(params)
    assert link.transmittance * link.bob_p_z == pytest.approx(fig["eta_z"], rel=1e-12)
    assert link.transmittance * (1 - link.bob_p_z) * link.x_middle_fraction == \
        pytest.approx(fig["eta_x"], rel=1e-12)
    assert link.channel_transmittance == pytest.approx(10 ** (-0.2 * 25 / 10), rel=1e-12)
    assert link.extra_loss_db == pytest.approx(1.5, rel=1e-9)
    assert link.dark_count == fig["dark_per_bin"] and link.x_error == \
        pytest.approx(fig["e_visibility"], rel=1e-12)
    assert link.symbol_rate == fig["symbol_rate_hz"] and link.dead_time == 10e-9
    assert 0 <= link.z_error < 1e-4                 # Alice's extinction


def test_without_receiver_effects_both_theories_agree():
    """Where the lab's receiver rules vanish (no dead time, no afterpulses, no dark counts,
    weak light: the passive basis split then acts like an active one), the counts of
    :func:`expected_lab_counts` are the key-rate model's, basis by basis at the mean photon
    numbers Alice's states of that basis carry."""
    params = lab_params("gated", distance_km=120.0, bob_p_z=0.6, dead_time_ps=0.0,
                        afterpulse_probability=0.0, dark_per_gate=0.0)
    settings = alice_settings(_calibration(), (0.5, 0.1), params.uis_per_symbol)
    lab, detectors = expected_lab_counts(params, probabilities=(0.7, 0.3), p_z=0.6,
                                         n_symbols=1e9, settings=settings)
    table = symbol_mean_photons(_calibration(), params.uis_per_symbol, settings)
    link = link_model(params, settings=settings)
    for basis, state in (("Z", 0), ("X", 2)):
        plain = expected_counts(link, intensities=table[:2, state], probabilities=(0.7, 0.3),
                                p_z=0.6, n_symbols=1e9)[basis]
        np.testing.assert_allclose(lab[basis]["n"], plain["n"], rtol=5e-4)
    np.testing.assert_allclose(lab["X"]["m"], plain["m"], rtol=5e-4)
    assert detectors["Z"]["alive"] == pytest.approx(1.0, abs=1e-12)
    assert detectors["Z"]["afterpulses"] == 0.0


def test_a_passive_receiver_sees_dark_counts_in_every_detector():
    """The difference the key-rate model cannot express: its basis choice is per pulse, so
    a Z-basis dark count needs Bob's Z choice (probability q); every detector of the lab's
    passive receiver counts its dark counts on every symbol."""
    base = dict(distance_km=120.0, bob_p_z=0.6, dead_time_ps=0.0, afterpulse_probability=0.0)
    dark, none = (expected_lab_counts(lab_params("gated", dark_per_gate=d, **base),
                                      probabilities=(0.7, 0.3), p_z=0.6, n_symbols=1e9)[0]
                  for d in (1e-6, 0.0))
    # Z: two windows per Z state (p_z * p_k of the symbols), each 1e-6, half of them errors.
    extra = dark["Z"]["m"] - none["Z"]["m"]
    np.testing.assert_allclose(extra, 1e9 * 0.6 * np.array([0.7, 0.3]) * 1e-6, rtol=2e-3)


def _calibration():
    from timebin.sim.channel import Calibration

    return Calibration()


def test_theory_falls_with_distance_and_with_loss():
    common = dict(intensities=(0.5, 0.1), probabilities=(0.7, 0.3), p_z=0.6,
                  block_symbols=1e7, f_ec=1.3)
    near = theory_point(lab_params("gated", distance_km=0.0), **common)
    far = theory_point(lab_params("gated", distance_km=10.0), **common)
    lossy = theory_point(lab_params("gated", distance_km=0.0, bob_loss_db=2.0), **common)
    assert near["key_length"] > far["key_length"] > 0
    assert near["key_length"] > lossy["key_length"]
    assert 0.005 < near["qber_z"] < 0.015 and 0.01 < near["qber_x"] < 0.03


def _fake_block(counts, mus=(0.5, 0.1), ps=(0.7, 0.3), leak=1000.0):
    res = key_length(counts, protocol="1decoy-3state", intensities=mus, probabilities=ps,
                     leak_ec=leak)
    bounds = {k: v for k, v in res.to_dict().items() if isinstance(v, (int, float))}
    return {"intensities": mus, "probabilities": ps, "eps_sec": 1e-9, "eps_cor": 1e-15,
            "bounds": [bounds], "key_bits": [res.key_length], "status": ["key"]}


def test_session_counts_are_solved_from_the_bound_values():
    counts = {"Z": {"n": [163597, 14950], "m": [1099, 452]},
              "X": {"n": [41175, 3822], "m": [674, 148]}}
    summary = _fake_block(counts)
    assert session_counts(summary, 0) == counts
    summary["key_bits"] = [summary["key_bits"][0] + 1]
    with pytest.raises(ValueError, match="do not reproduce its key length"):
        session_counts(summary, 0)
    summary = _fake_block(counts)
    summary["bounds"] = [{}]
    summary["status"] = ["aborted"]
    with pytest.raises(ValueError, match="Block 0 has no bound values .status 'aborted'"):
        session_counts(summary, 0)


def test_bad_inputs_are_named():
    params = lab_params("gated", distance_km=10.0)
    with pytest.raises(ValueError, match="x_ports must be 2, not 1"):
        expected_lab_counts(params.replace(x_ports=1), probabilities=(0.7, 0.3), p_z=0.6,
                            n_symbols=1e6)
    with pytest.raises(ValueError, match=r"summing to 1, not \[0.7, 0.2\]"):
        expected_lab_counts(params, probabilities=(0.7, 0.2), p_z=0.6, n_symbols=1e6)
    with pytest.raises(ValueError, match="f_ec .* at least 1, not 0.9"):
        theory_point(params, intensities=(0.5, 0.1), probabilities=(0.7, 0.3), p_z=0.6,
                     block_symbols=1e7, f_ec=0.9)
    with pytest.raises(ValueError, match="non-negative km, not -5.0"):
        keyrate_points([-5], symbols=1000)
    with pytest.raises(ValueError, match="gate period of 300.0 ps does not divide"):
        expected_lab_counts(params.replace(gate_period_ps=300.0, gate_width_ps=100.0),
                            probabilities=(0.7, 0.3), p_z=0.6, n_symbols=1e6)


def test_bench_is_json_ready():
    """A smoke run of the benchmark (a 10^6-symbol session: no key at this size)."""
    out = bench_keyrate_points((0,), symbols=1_000_000, resamples=20)
    text = json.dumps(out)
    assert json.loads(text)["rows"][0]["distance_km"] == 0.0
    assert out["block_symbols"] == 1_000_000 and len(out["curve"]) == 1
    assert out["points_with_key"] == sum(r["measured_key_bits"] > 0 for r in out["rows"])
