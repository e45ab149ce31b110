"""Bob's auto-alignment (host/align.py) and the virtual lab's drifting link (sim/lab.py):
start-up finds the delays from the training histogram, tracking holds them through six
(accelerated) hours of fibre drift and clock offset, a wrong delay is recovered, and a failed
QRNG stops key production."""

import numpy as np
import pytest
from timebin.host.align import Aligner, template
from timebin.host.distill.sift import sift
from timebin.sim.channel import (
    Calibration,
    calibrated_im_levels,
    channel_roles,
    expected_delays,
)
from timebin.sim.lab import lab_params, reference_session, session_blocks

ROLES = [0, 1, 2]


def training_histogram(S, true_delays, delays, P=2, clicks=5000, seed=0):
    """Clicks of the alternating pattern for channels whose light needs ``true_delays``,
    histogrammed with ``delays``: light centred in its bins, Gaussian spread of a UI."""
    rng = np.random.default_rng(seed)
    out = np.zeros((3, P * S))
    for c, role in enumerate(ROLES):
        t = template(role, S)                 # light over two symbols at the right delay
        positions = rng.choice(2 * S, size=clicks, p=t / t.sum())
        positions = positions + rng.normal(0, 0.3, clicks).round().astype(int)
        symbols = rng.integers(0, P // 2, clicks) * 2 * S
        phase = (positions + symbols + true_delays[c] - delays[c]) % (P * S)
        out[c] = np.bincount(phase, minlength=P * S)
    return out


@pytest.mark.parametrize("S", [2, 4, 8])
@pytest.mark.parametrize("P", [2, 8])
def test_startup_finds_the_delays(S, P):
    true = [7, 9, 12]
    aligner = Aligner(ROLES, S, period_symbols=P, nominal_delays=[6, 10, 11])
    delays = aligner.startup(training_histogram(S, true, [6, 10, 11], P))
    assert delays == true
    # from other starting delays, the same answer
    assert Aligner(ROLES, S, period_symbols=P, nominal_delays=[8, 8, 13]).startup(
        training_histogram(S, true, [0, 3, 1], P), [0, 3, 1]) == true


def test_startup_needs_a_nominal_delay_within_a_symbol():
    S = 8
    true = [20, 20, 20]
    far = Aligner(ROLES, S, nominal_delays=[20 + 2 * S] * 3)    # two symbols off: ambiguous
    assert far.startup(training_histogram(S, true, [0, 0, 0]), [0, 0, 0]) == [36, 36, 36]
    near = Aligner(ROLES, S, nominal_delays=[20 + S - 1] * 3)
    assert near.startup(training_histogram(S, true, [0, 0, 0]), [0, 0, 0]) == true


def test_tracking_follows_a_drift():
    S, k = 8, 4
    aligner = Aligner(ROLES, S, nominal_delays=[10, 10, 10])
    aligner.startup(training_histogram(S, [10, 10, 10], [10, 10, 10]))
    delays = [10, 10, 10]
    rng = np.random.default_rng(1)
    for light in np.arange(10, 30, 0.25):       # the light moves a quarter UI per step
        hist = np.zeros((3, 2 * S))
        for c in range(3):
            # data mode: pulses centred in every bin, 1 UI jitter
            pos = (rng.integers(0, 4, 4000) * k + (k - 1) / 2 + light
                   + rng.normal(0, 0.5, 4000) - delays[c])
            hist[c] = np.bincount(np.floor(pos + 0.5).astype(int) % (2 * S),
                                  minlength=2 * S)
        delays = aligner.track(hist, delays)
        assert all(abs(d - light) <= 0.5 + aligner.hysteresis + 0.2 for d in delays)
    assert aligner.drift == pytest.approx(19.75, abs=0.3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="role"):
        Aligner([0, 5], 8)
    with pytest.raises(ValueError, match="even"):
        Aligner(ROLES, 7)
    with pytest.raises(ValueError, match="power of two"):
        Aligner(ROLES, 8, period_symbols=3)
    with pytest.raises(ValueError, match="2 symbols or more"):
        Aligner(ROLES, 8, period_symbols=1).startup(np.ones((3, 8)) * 100)
    aligner = Aligner(ROLES, 8)
    with pytest.raises(ValueError, match=r"shape \(3, 16\)"):
        aligner.startup(np.ones((3, 8)))
    with pytest.raises(ValueError, match="Channel 0 has 16 clicks"):
        aligner.startup(np.ones((3, 16)))
    with pytest.raises(ValueError, match="before startup"):
        aligner.track(np.ones((3, 16)))
    s2 = Aligner(ROLES, 2, min_counts=1)
    s2.startup(training_histogram(2, [3, 3, 3], [3, 3, 3]))
    with pytest.raises(ValueError, match="S >= 4"):
        s2.track(np.ones((3, 4)))


# --- the drifting link, reference level -------------------------------------------------

S, WIDTH = 8, 2                 # 200 ps UIs, 2-UI pulses centred in 4-UI bins
N_BLOCKS, BLOCK = 4, 2_000_000
TRAINING = 200_000


def drifting_qber(drift, track=True, delay_errors=(), nominal=None):
    """Per-block QBER (Z, X) of a 25 km link whose six hours (accelerated) of fibre drift
    (20 ps/h/km) and clock offset (1e-7 ppm) are ``drift`` times these, Bob's delays from the
    aligner, and the delays Bob ended with."""
    symbols = TRAINING + N_BLOCKS * BLOCK
    link_s = symbols * 1.6e-9
    params = lab_params("gated", distance_km=25.0, uis_per_symbol=S, bob_p_z=0.6,
                        drift_ps_per_hour_per_km=20.0 * drift, clock_offset_ppm=1e-7 * drift,
                        time_acceleration=6 * 3600 / link_s)
    cal = Calibration()
    settings = {"im_levels": calibrated_im_levels(cal, (0.5, 0.1), uis_per_symbol=S,
                                                  pulse_width=WIDTH),
                "pulse_width": WIDTH, "pulse_offset": 1}
    roles = channel_roles(params)
    nominal = (np.round(params.latencies / params.ui_ps).astype(int).tolist()
               if nominal is None else nominal)
    aligner = Aligner(roles, S, period_symbols=2, nominal_delays=nominal)
    stats = {}
    qber = []
    for _start, log, records in session_blocks(
            N_BLOCKS, BLOCK, params, seed=5, p_z=0.6, probabilities=(0.7, 0.3),
            settings=settings, calibration=cal, stats=stats, aligner=aligner,
            training_symbols=TRAINING, track_symbols=100_000 if track else None,
            delay_errors=delay_errors):
        alice = {k: log[k] for k in ("index", "basis", "bit", "intensity", "valid")}
        _, counts = sift(alice, records, roles)
        sifted = np.asarray(counts["sifted"]).reshape(2, 4).sum(axis=1)
        errors = np.asarray(counts["errors"]).reshape(2, 4).sum(axis=1)
        qber.append(errors / sifted)
    end = params.replace(time_acceleration=params.time_acceleration)
    return np.array(qber), stats, expected_delays(end, at_ps=symbols * params.symbol_ps)


@pytest.fixture(scope="module")
def still():
    return drifting_qber(0.0)


def test_six_hours_of_drift_keep_the_qber(still):
    qber0, stats0, truth0 = still
    assert stats0["timeline"][0]["delays"] == truth0.tolist()     # start-up found them
    assert np.all(qber0[:, 0] < 0.02) and np.all(qber0[:, 1] < 0.03)
    qber, stats, truth = drifting_qber(1.0)
    moved = stats["timeline"][-1]["delays"][0] - stats["timeline"][0]["delays"][0]
    assert moved > 3 * S                        # more than three symbols of drift...
    assert abs(stats["delays"][0] - truth[0]) <= 1      # ...followed to the UI
    assert stats["timeline"][-1]["time_s"] == pytest.approx(6 * 3600, rel=1e-6)
    # ...with QBER within 1 % (absolute) of the still link's, in every block and basis
    assert np.all(np.abs(qber - qber0) < 0.01), (qber, qber0)
    assert stats["late"] < 1e-3 * stats["detections"]


def test_without_tracking_the_drift_ruins_the_qber():
    qber, stats, _ = drifting_qber(1.0, track=False)
    assert stats["timeline"][-1]["delays"] == stats["timeline"][0]["delays"]
    assert np.all(qber[1:, 0] > 0.2)


def test_a_wrong_delay_is_recovered(still):
    qber0 = still[0]
    # a wrong cable latency entered (half a symbol off): start-up still finds the light
    qber, stats, truth = drifting_qber(0.0, nominal=[14, 14, 14])
    assert stats["timeline"][0]["delays"] == truth.tolist()
    assert np.all(np.abs(qber - qber0) < 0.01)
    # wrong writes of the Z delay mid-run (2 UIs, later 1 UI the other way): the QBER rises
    # while the first stands (50 000 symbols), the next tracking step puts each back
    errors = [(BLOCK + 50_000, 0, 2), (2 * BLOCK + 50_000, 0, -1)]
    qber, stats, truth = drifting_qber(0.0, delay_errors=errors)
    assert stats["delays"] == truth.tolist()
    assert qber[1, 0] > qber0[1, 0] + 0.005
    assert np.all(np.abs(qber[2:] - qber0[2:]) < 0.01) and abs(qber[0, 0] - qber0[0, 0]) < 0.01
    # without tracking the same wrong writes stay and cost errors
    qber, stats, _ = drifting_qber(0.0, track=False, delay_errors=[(BLOCK, 0, 2)])
    assert stats["delays"][0] == stats["timeline"][0]["delays"][0] + 2
    assert qber[1, 0] > qber0[1, 0] + 0.1


def test_a_failed_qrng_stops_the_key():
    s = reference_session(distance_km=2.0, symbols=10_000_000, block_symbols=5_000_000,
                          p_z=0.5, seed=3, replenish_bytes=16, qrng_failure_block=1)
    assert s["alice_alarm"] == [False, True]
    assert s["alice_dark_symbols"][1] == 5_000_000
    assert s["status"][0] == "key" and s["key_bits"][0] > 0
    assert s["status"][1] != "key" and s["key_bits"][1] == 0 and s["sifted_z"][1] == 0
    assert s["records"][1] > 0                  # Bob still clicks: dark counts, afterpulses
