"""The virtual lab's reference-model session (sim/lab.py): Alice's transmitter model, the
physical channel model, Bob's records and both distillation hosts give the same secret key
on both sides; the records' statistics follow the closed forms of the link; the hosts' sifted
statistics are those of the host sifter on the same log and records."""

import numpy as np
import pytest
from timebin.gateware.records import CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE
from timebin.host.distill.sift import sift
from timebin.sim.channel import Calibration, calibrated_im_levels, link_figures
from timebin.sim.channel import symbol_mean_photons as mean_photons
from timebin.sim.lab import lab_params, reference_session, session_blocks


@pytest.fixture(scope="module")
def session():
    # two blocks of 5 * 10^6 symbols at 2 km (gated InGaAs, 625 MS/s): about 10 s
    return reference_session(distance_km=2.0, symbols=10_000_000, block_symbols=5_000_000,
                             p_z=0.5, seed=3, replenish_bytes=16,
                             keep_data=True)


def test_session_gives_the_same_key_on_both_sides(session):
    s = session
    assert s["blocks"] == 2 and s["symbols"] == 10_000_000
    assert s["status"] == ["key", "key"], s["status"]
    assert all(k > 0 for k in s["key_bits"]) and s["key_bits"] == s["alice_key_bits"]
    assert s["stored_bits"] == s["alice_stored_bits"]
    assert s["keys_match"] and s["keys"]["alice"] == s["keys"]["bob"]
    assert s["stored_bits_total"] == 8 * sum(len(k) for k in s["keys"]["bob"].values()) > 0
    # the link's figures: errors from the visibility (1 %) and afterpulses
    for qz, qx in zip(s["qber_z"], s["qber_x"], strict=True):
        assert 0.002 < qz < 0.02 and 0.01 < qx < 0.03
    assert all(1.0 <= f < 1.3 for f in s["efficiency"])
    assert s["key_rate_bps"] == pytest.approx(s["key_bits_total"] / s["symbols"] * 625e6)
    # Every click of the session is in some block's records, on the block's symbols.
    assert s["clicks"] == sum(s["records"])
    for b, (start, _symbols, records) in enumerate(s["data"]):
        # the blocks follow Bob's start-up alignment (200 000 training symbols)
        assert s["aligned"] and s["first_index"] == 200_000
        assert start == 200_000 + b * 5_000_000 and len(records["index"]) == s["records"][b]
        assert np.all(np.diff(records["index"].astype(np.int64)) >= 0)
        assert records["index"][0] >= start and records["index"][-1] < start + 5_000_000
        assert records["index"].dtype == np.uint64
    assert s["histogram"]["delays"] == [10, 10, 10] and s["late_clicks"] == 0
    assert [t["symbols"] for t in s["timeline"]] == [200_000 + i * 10**6 for i in range(11)]


def test_hosts_sift_as_the_host_sifter(session):
    roles = np.array([0, 1, 2], np.uint8)
    for b, (_start, symbols, records) in enumerate(session["data"]):
        alice = {k: symbols[k] for k in ("index", "basis", "bit", "intensity", "valid")}
        _, counts = sift(alice, records, roles)
        sifted = np.asarray(counts["sifted"]).reshape(2, 4)
        errors = np.asarray(counts["errors"]).reshape(2, 4)
        assert sifted[0].sum() == session["sifted_z"][b]
        assert sifted[1].sum() == session["sifted_x"][b]
        assert errors[0].sum() == session["errors_z"][b]      # Cascade found every error
        assert errors[1].sum() == session["errors_x"][b]
        bounds = session["bounds"][b]
        assert bounds["n_z"] == sifted[0].sum() and bounds["n_x"] == sifted[1].sum()


def test_detection_probability_and_qber_follow_the_closed_forms():
    """Without afterpulses and dead time, the records of a session's blocks give the
    detection probability per pulse of each intensity class, ``1 - (1 - p_dark) exp(-mu
    eta)``, and the X errors ``(1 - V)/2`` (with the dark counts' half), within statistical
    error. (tests/test_channel_model.py checks the dead-time and afterpulse corrections.)"""
    params = lab_params("gated", distance_km=5.0, bob_p_z=0.5, uis_per_symbol=2,
                        afterpulse_probability=0.0,
                        dead_time_ps=0.0, dark_per_gate=1e-4)
    cal = Calibration()
    settings = {"im_levels": calibrated_im_levels(cal, (0.5, 0.1), uis_per_symbol=2)}
    mu = mean_photons(cal, 2, settings)                                 # (class, state)
    fig = link_figures(params)
    z_hits = np.zeros((2, 3))
    z_sent = np.zeros((2, 3))
    x_err = x_all = 0
    for start, symbols, records in session_blocks(2, 1_000_000, params, seed=4, p_z=0.5,
                                                  probabilities=(0.7, 0.3),
                                                  settings=settings, calibration=cal):
        at = (records["index"] - np.uint64(start)).astype(np.int64)
        state = symbols["basis"] * 2 + symbols["bit"]
        on_z = np.zeros(len(state), bool)
        on_z[at[records["channel"] == 0]] = True
        for c in range(2):
            for st in range(3):
                pick = (symbols["intensity"] == c) & (state == st)
                z_sent[c, st] += pick.sum()
                z_hits[c, st] += on_z[pick].sum()
        # X basis, middle slot: |+> at the + port (channel 1) is right
        mid = (records["cls"] == CLASS_MIDDLE) & (records["channel"] > 0)
        plus = state[at[mid]] == 2
        x_all += plus.sum()
        x_err += (records["channel"][mid][plus] == 2).sum()
        z = records["channel"] == 0
        assert np.isin(records["cls"][z], [CLASS_EARLY, CLASS_LATE]).all()
    p = z_hits / z_sent
    expect = 1 - (1 - fig["dark_per_symbol"]) * np.exp(-mu[:2, :3] * fig["eta_z"])
    sigma = np.sqrt(expect * (1 - expect) / z_sent)
    assert np.all(np.abs(p - expect) < 5 * sigma), (p, expect, sigma)
    # X errors: the visibility's share of the light in the middle slot, half the darks
    eta_mid = fig["eta_x"]                           # both ports' middle slot
    light = (mu[0, 2] * 0.7 + mu[1, 2] * 0.3) * eta_mid
    dark = fig["dark_per_bin"] * 2                   # one bin on each X detector
    e_x = (light * fig["e_visibility"] + dark / 2) / (light + dark)
    q = x_err / x_all
    assert abs(q - e_x) < 5 * np.sqrt(e_x * (1 - e_x) / x_all), (q, e_x, x_all)
