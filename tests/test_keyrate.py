"""Key-rate study (host.distill.keyrate) and ``timebin keyrate`` (host.cli_keyrate): published
results of Lim 2014 and Rusca 2018, the sweep's physics, the plot and the command line."""

import argparse
import json
import math

import pytest
from scipy.optimize import differential_evolution, minimize
from timebin.host.cli_keyrate import add_keyrate_parser, parse_distances, run_keyrate
from timebin.host.distill import finite_key as fk
from timebin.host.distill import keyrate as kr

PNG = b"\x89PNG\r\n\x1a\n"


# --- Lim et al., PRA 89, 022307 (2014), section IV and Fig. 1 --------------------------------
# Dedicated fibre; InGaAs detectors eta_Bob = 10 %, p_dc = 6e-7, p_ap = 4e-2; e_mis = 5e-3;
# f_EC = 1.16; mu3 = 2e-4; eps_cor = 1e-15; eps_sec = kappa * ell with kappa = 1e-15; the
# post-processing block is the number n_X of key-basis detections (our n_Z); free parameters
# q_x, p_mu1, p_mu2, mu1, mu2 optimised; rate per pulse R = ell / N.

LIM_BOX = [(0.02, 1.0), (0.01, 0.99), (0.01, 0.98), (0.01, 0.98), (0.002, 0.999)]


def _lim_rate(length_km, n_key):
    link = fk.LinkModel(length_km=length_km, detector_efficiency=0.1, dark_count=6e-7,
                        afterpulse=0.04, visibility=1 - 2 * 5e-3, x_middle_fraction=1.0)

    def evaluate(x, eps_sec):
        mus, ps, p_z = kr._decode(2, x, 2e-4)
        per_pulse = sum(fk.expected_counts(link, intensities=mus, probabilities=ps, p_z=p_z,
                                           n_symbols=1.0)["Z"]["n"])
        n = n_key / per_pulse
        res = kr.evaluate_parameters(link, protocol="2decoy", intensities=mus,
                                     probabilities=ps, p_z=p_z, block_size=n,
                                     eps_sec=eps_sec, eps_cor=1e-15, f_ec=1.16)
        return res, n

    eps_sec, x = 1e-15 * n_key / 10, None
    for _ in range(2):       # eps_sec = kappa * ell: iterate on ell
        def f(v, eps=eps_sec):
            res, n = evaluate(v, eps)
            score = res.key_length_raw
            if res.s_z1_bound <= 0 or res.s_x1_bound <= 0:
                score += min(res.s_z1_bound, res.s_x1_bound)
            return -score / n

        de = differential_evolution(f, LIM_BOX, seed=1, popsize=10, maxiter=60, polish=False,
                                    init="sobol", x0=None if x is None else kr._clip(x, LIM_BOX))
        x = list(minimize(f, de.x, method="Nelder-Mead", bounds=LIM_BOX,
                          options={"xatol": 1e-7, "fatol": 1e-16, "maxiter": 3000}).x)
        res, n = evaluate(x, eps_sec)
        eps_sec = min(1e-15 * max(res.key_length, 1), 0.5)
    res, n = evaluate(x, eps_sec)
    return res.key_length / n


def test_lim_2014_block_size_gain_at_100_km():
    """Lim 2014 section IV: 'at a fiber length of 100 km, the secret key rate obtained with
    n_X = 1e9 is about 1.75 times the one based on n_X = 1e7'."""
    ratio = _lim_rate(100, 1e9) / _lim_rate(100, 1e7)
    assert 1.6 < ratio < 1.95


def test_lim_2014_small_blocks_reach_far():
    """Lim 2014 section IV: 'even if we use a block size of 1e4, cryptographic keys can still
    be distributed over a fiber length of 135 km' (we find the end near 130 km)."""
    assert _lim_rate(120, 1e4) > 0
    assert _lim_rate(145, 1e4) == 0


def test_rusca_2018_one_decoy_beats_two_decoys_at_practical_block_sizes():
    """Rusca 2018 (abstract): for block sizes up to 1e8 bits the 1-decoy protocol gives a
    higher secret key rate than the 2-decoy protocol for almost all settings."""
    for length in (10.0, 100.0):
        link = fk.LinkModel(length_km=length)
        one = kr.optimise_parameters(link, protocol="1decoy-4state", block_size=1e9)[1]
        two = kr.optimise_parameters(link, protocol="2decoy", block_size=1e9)[1]
        assert one.n_z < 1e8
        assert one.key_length > 1.1 * two.key_length > 0


# --- the sweep -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep():
    return kr.keyrate_sweep([150, 0, 25, 50, 75, 100, 125, 175, 200, 300])


def test_sweep_rows(sweep):
    assert [r.distance_km for r in sweep] == [150, 0, 25, 50, 75, 100, 125, 175, 200, 300]
    rows = sorted(sweep, key=lambda r: r.distance_km)
    keys = [r.key_per_symbol for r in rows]
    # non-increasing with distance, key up to 150 km, none from 200 km on
    assert all(b <= a for a, b in zip(keys, keys[1:], strict=False))
    assert keys[0] > 0.02 and rows[6].key_length > 0 and rows[-2].key_length == 0
    assert rows[-1].key_length == 0
    for r in rows:
        assert r.key_rate_bps == pytest.approx(r.key_per_symbol * 2.5e9)
        assert r.key_per_symbol == r.key_length / 1e10
        assert r.channel_transmittance == pytest.approx(10 ** (-0.02 * r.distance_km))
        assert r.plob_per_symbol == pytest.approx(-math.log2(1 - r.channel_transmittance)) \
            if r.distance_km else r.plob_per_symbol == math.inf
        assert r.key_per_symbol <= r.asymptotic_per_symbol < r.plob_per_symbol
        if r.key_length:
            mu1, mu2 = r.intensities
            assert 0 < mu2 < mu1 <= 1 and sum(r.probabilities) == pytest.approx(1)
            assert 0.5 <= r.p_z < 1 and r.bounds["key_length"] == r.key_length
            assert r.qber_z == pytest.approx(0.005, abs=0.02)
    json.loads(json.dumps([r.to_dict() for r in sweep]))
    assert sweep[1].to_dict()["plob_per_symbol"] is None      # inf at 0 km


def test_sweep_is_seeded_and_finds_the_optimum():
    a = kr.keyrate_sweep([60], protocol="2decoy", seed=3)[0]
    b = kr.keyrate_sweep([60], protocol="2decoy", seed=3)[0]
    assert a == b
    mu1, mu2, mu3 = a.intensities
    assert mu3 == 2e-4 and mu1 > mu2 + mu3 and mu2 > mu3
    # no neighbour of the optimum does better (the optimiser converged)
    link = fk.LinkModel(length_km=60)
    for i in range(2):
        for step in (0.97, 1.03):
            mus = list(a.intensities)
            mus[i] *= step
            res = kr.evaluate_parameters(link, protocol="2decoy", intensities=mus,
                                         probabilities=a.probabilities, p_z=a.p_z,
                                         block_size=1e10, f_ec=1.06)
            assert res.key_length <= a.key_length


def test_finite_key_rate_approaches_the_asymptotic_rate():
    link = fk.LinkModel(length_km=25)
    asym = kr.optimal_asymptotic_rate(link, f_ec=1.06).rate
    ratios = [kr.optimise_parameters(link, protocol="2decoy", block_size=n, mu3=0.0)[1]
              .key_length / n / asym for n in (1e8, 1e11, 1e14, 1e17)]
    assert all(b > a for a, b in zip(ratios, ratios[1:], strict=False))
    assert ratios[0] < 0.5 and 0.88 < ratios[-1] <= 1.0


def test_sweep_refuses_bad_options():
    for kwargs, match in (({"protocol": "bb84"}, "bb84"), ({"block_size": 0}, "block_size"),
                          ({"eps_sec": 1.5}, "eps_sec"), ({"visibility": 1.2}, "visibility"),
                          ({"f_ec": 0.9}, "f_ec"), ({"colour": 1}, "colour"),
                          ({"protocol": "2decoy", "mu3": 0.1}, "mu3")):
        with pytest.raises(ValueError, match=match):
            kr.keyrate_sweep([10], **kwargs)
    with pytest.raises(ValueError, match="-5"):
        kr.keyrate_sweep([10, -5])
    with pytest.raises(ValueError, match="eta"):
        kr.plob_bound(1.5)


def test_plot_keyrate(tmp_path, sweep):
    path = kr.plot_keyrate(sweep, tmp_path / "rate.png",
                           measured=[(50, 8e6, 1e6), {"distance_km": 100, "rate_bps": 5e5}])
    assert open(path, "rb").read(8) == PNG
    path = kr.plot_keyrate([r.to_dict() for r in sweep], tmp_path / "per_symbol.png",
                           per_symbol=True, title="per symbol")
    assert open(path, "rb").read(8) == PNG
    with pytest.raises(ValueError, match="distance"):
        kr.plot_keyrate(sweep, tmp_path / "bad.png", measured=[(50,)])
    with pytest.raises(ValueError, match="empty"):
        kr.plot_keyrate([], tmp_path / "none.png")


# --- the command line ------------------------------------------------------------------------


def _run(argv):
    parser = argparse.ArgumentParser(prog="timebin")
    add_keyrate_parser(parser.add_subparsers(dest="command"))
    return run_keyrate(parser.parse_args(["keyrate", *argv]))


def test_cli_json_and_plot(tmp_path, capsys):
    png = tmp_path / "k.png"
    assert _run(["--distances", "0:100:50", "--protocol", "1decoy-4state", "--block-size",
                 "1e9", "--symbol-rate", "1e9", "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["distances_km"] == [0, 50, 100] and len(out["rows"]) == 3
    assert out["options"]["protocol"] == "1decoy-4state" and out["plot"] == str(png)
    rows = out["rows"]
    assert rows[0]["key_rate_bps"] > rows[1]["key_rate_bps"] > rows[2]["key_rate_bps"] > 0
    assert rows[1]["key_rate_bps"] == pytest.approx(rows[1]["key_per_symbol"] * 1e9)
    assert png.read_bytes()[:8] == PNG


def test_cli_table_and_errors(capsys):
    assert _run(["--distances", "20,250", "--dark-count", "1e-5", "--visibility", "0.98"]) == 0
    out = capsys.readouterr().out
    assert "1decoy-3state" in out and "20" in out and "250" in out
    assert _run(["--distances", "10", "--visibility", "1.5"]) == 2
    assert "visibility" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(["--distances", "10:0:5"])
    assert "10:0:5" in capsys.readouterr().err


def test_cli_lab_curve_is_the_lab_theory(capsys):
    """``--lab``: the curve the virtual lab's measured points are checked against
    (sim/keyrate_points.py, tests/test_keyrate_points.py)."""
    from timebin.sim.keyrate_points import theory_curve

    assert _run(["--lab", "gated", "--distances", "0,10,40", "--f-ec", "1.1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["options"] == {"lab": "gated", "block_size": 10_000_000, "f_ec": 1.1,
                              "eps_sec": 1e-9, "eps_cor": 1e-15}
    rows = out["rows"]
    assert rows == json.loads(json.dumps(theory_curve([0.0, 10.0, 40.0], f_ec=1.1)))
    assert rows[0]["key_length"] > rows[1]["key_length"] > 0 >= rows[2]["key_length"]
    assert _run(["--lab", "gated", "--distances", "10", "--block-size", "1000000.5"]) == 2
    assert "--block-size must be a whole number of symbols, not 1000000.5" in \
        capsys.readouterr().err


def test_parse_distances():
    assert parse_distances("0:200:50") == [0, 50, 100, 150, 200]
    assert parse_distances("0:0.3:0.1") == [0, 0.1, 0.2, 0.3]
    assert parse_distances("5,10") == [5, 10] and parse_distances("7") == [7]
    for bad in ("a:b:c", "0:10", "0:10:0", "-5", "1,x"):
        with pytest.raises(argparse.ArgumentTypeError, match="distances"):
            parse_distances(bad)
