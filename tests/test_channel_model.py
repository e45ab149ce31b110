"""Physics checks of the channel model (sim/channel.py) against closed forms, measured within
their statistical error, and its interfaces to Alice's driver and Bob's receiver model."""

import numpy as np
import pytest
from timebin.gateware.records import CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE
from timebin.gateware.rx.frontend import DeadTimeMode
from timebin.sim.channel import (
    KIND_AFTERPULSE,
    KIND_DARK,
    KIND_PHOTON,
    Calibration,
    Channel,
    ChannelParams,
    WordStream,
    bench_channel,
    calibrated_im_levels,
    channel_roles,
    classify_detections,
    detections_to_words,
    expected_delays,
    gated_ingaas,
    link_figures,
    simulate_driver,
    simulate_symbols,
    simulate_words,
    snspd,
    symbol_mean_photons,
)
from timebin.sim.rx.run import load_words, save_words
from timebin.sim.rx.top import ReceiverModel
from timebin.sim.tx.run import run_tx

Z0, Z1, XP, XM = range(4)

#: A short lossless link with ideal timing, for the closed forms: S = 2 (UI 200 ps), gates
#: of 100 ps centred on the UIs, no dead time (clicks are counted once per gate below).
IDEAL = dict(length_km=0.0, drift_ps_per_hour_per_km=0.0, jitter_ps=1.0, dead_time_ps=0.0,
             afterpulse_probability=0.0, efficiency=0.3, bob_p_z=0.5, dark_per_gate=0.0,
             dark_rate_hz=0.0)


def log_of(states, n, intensity=0, seed=0):
    """A symbol log of ``n`` symbols drawn uniformly from ``states``."""
    rng = np.random.default_rng(seed)
    state = np.asarray(states)[rng.integers(0, len(states), n)]
    return {"basis": (state >> 1).astype(np.uint8), "bit": (state & 1).astype(np.uint8),
            "intensity": np.full(n, intensity, np.uint8), "dark": np.zeros(n, np.uint8)}


def patterns(params, settings=None):
    """Mean photon number per UI of each (intensity, state): (4, 4, S)."""
    from timebin.sim.channel import _symbol_patterns

    m, phi = _symbol_patterns(Calibration(), params.uis_per_symbol, settings)
    return m[:16].reshape(4, 4, -1), phi[:16].reshape(4, 4, -1)


def gate_clicks(det, channel, params):
    """Gates (Bob's UIs, S = 2: a gate per UI) of ``channel`` with at least one click, as
    (index, phase) of :func:`classify_detections`."""
    sel = det["channel"] == channel
    ui = np.unique(det["ui"][sel])
    cl = classify_detections({"channel": np.full(len(ui), channel, np.uint8), "ui": ui},
                             params)
    return cl


def within(measured, expected, sigma, k=4.5):
    assert abs(measured - expected) <= k * sigma, (measured, expected, sigma)


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, match", [
    ("efficiency", 1.5, "efficiency.*1.5"),
    ("efficiency", 0.0, "efficiency.*0.0"),
    ("dark_per_gate", -1e-6, "dark_per_gate.*-1e-06"),
    ("afterpulse_probability", 1.0, "afterpulse_probability.*1.0"),
    ("detector", "apd", "detector.*'apd'"),
    ("x_ports", 3, "x_ports.*3"),
    ("uis_per_symbol", 3, "uis_per_symbol.*3"),
    ("visibility", float("nan"), "visibility.*nan"),
    ("length_km", -1.0, "length_km.*-1.0"),
    ("latency_ps", (1.0, 2.0), "latency_ps"),
    ("gate_width_ps", 500.0, "gate_width_ps.*500.0"),
    ("time_acceleration", 0, "time_acceleration.*0"),
    ("oversampling", 0, "oversampling.*0"),
])
def test_bad_parameters_are_refused(name, value, match):
    with pytest.raises(ValueError, match=match):
        ChannelParams(**{name: value})


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="mu_peak.*-0.1"):
        Calibration(mu_peak=-0.1)
    with pytest.raises(ValueError, match="im_table"):
        Calibration(dac_bits=2, im_table=(0.0, 0.1))
    ch = Channel(seed=1)
    with pytest.raises(ValueError, match="intensity.*0..3.*0..4"):
        ch.send_symbols(np.zeros(4, int), np.zeros(4, int), np.array([0, 1, 2, 4]))
    ch = Channel(seed=1)
    with pytest.raises(ValueError, match="im codes.*0..255"):
        ch.send_words(np.ones(4, int), np.array([0, 1, 2, 300]), np.zeros(4, int))
    ch.send_words(np.ones(4, int), np.ones(4, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="cannot take symbols"):
        ch.send_symbols(np.zeros(4, int), np.zeros(4, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="delay_im is 1"):
        Channel(seed=1, tx_settings={"delay_im": 1}).send_symbols([0], [0], [0])
    with pytest.raises(ValueError, match="seed"):
        Channel(seed=-3)


def test_presets_and_derived_values():
    g, s = gated_ingaas(), snspd()
    assert g.detector == "gated" and g.efficiency == 0.25 and g.dark_per_gate == 1e-6
    assert s.detector == "free" and s.efficiency == 0.8 and s.afterpulse_probability == 0
    assert g.ui_ps == 200.0 and g.symbol_ps == 400.0
    assert g.fibre_delay_ps == pytest.approx(25 * 4.8974e6, rel=1e-4)
    assert g.transmittance == pytest.approx(10 ** -0.5)
    assert list(channel_roles(g)) == [0, 1, 2]
    assert list(channel_roles(g.replace(x_ports=1))) == [0, 1]
    assert list(expected_delays(g)) == [10, 10, 10]      # 2 ns of latency, 200 ps UIs


def test_calibrated_levels_give_the_asked_mean_photon_numbers():
    cal = Calibration()
    levels = calibrated_im_levels(cal, (0.5, 0.1), uis_per_symbol=4, pulse_width=1)
    mu = symbol_mean_photons(cal, 4, {"im_levels": levels, "pulse_width": 1})
    assert mu[0] == pytest.approx([0.5] * 4, rel=0.02)   # every state of the signal class
    assert mu[1] == pytest.approx([0.1] * 4, rel=0.05)   # the decoy
    assert mu[2].max() < 0.01                            # vacuum: extinction only


# --- closed forms -------------------------------------------------------------------------


def test_detection_probability_per_pulse():
    """Z detector per gate: 1 - (1 - p_dark) exp(-mu eta); the X detectors' middle slot:
    eta (mu_e + mu_l +- 2 V sqrt(mu_e mu_l) cos(theta)) / 4 at the + and - ports."""
    pd, V, theta = 2e-3, 0.9, 0.4
    params = ChannelParams(**{**IDEAL, "dark_per_gate": pd, "visibility": V,
                              "interferometer_phase_rad": theta})
    m, _ = patterns(params)
    n = 400_000
    eta = params.transmittance * params.efficiency
    # Z0 only: early and late gates of the Z detector
    det, counters = simulate_symbols(log_of([Z0], n), params, seed=1)
    cl = gate_clicks(det, 0, params)
    ok = (cl["index"] >= 0) & (cl["index"] < n)
    for phase in (0, 1):
        p = 1 - (1 - pd) * np.exp(-eta * params.bob_p_z * m[0, Z0, phase])
        got = np.sum(ok & (cl["phase"] == phase))
        within(got, n * p, np.sqrt(n * p * (1 - p)))
    # X+ only: the middle slot of each port
    det, _ = simulate_symbols(log_of([XP], n), params, seed=2)
    me, ml = m[0, XP]
    for channel, sign in ((1, 1), (2, -1)):
        lam = eta * (1 - params.bob_p_z) * (me + ml + sign * 2 * V * np.sqrt(me * ml)
                                            * np.cos(theta)) / 4
        p = 1 - (1 - pd) * np.exp(-lam)
        cl = gate_clicks(det, channel, params)
        got = np.sum((cl["cls"] == CLASS_MIDDLE) & (cl["index"] >= 0) & (cl["index"] < n))
        within(got, n * p, np.sqrt(n * p * (1 - p)))
    # one X detector only (at the + port): the same rate there
    det, _ = simulate_symbols(log_of([XP], n), params.replace(x_ports=1), seed=12)
    assert set(np.unique(det["channel"])) == {0, 1}
    lam = eta * (1 - params.bob_p_z) * (me + ml + 2 * V * np.sqrt(me * ml) * np.cos(theta)) / 4
    p = 1 - (1 - pd) * np.exp(-lam)
    cl = gate_clicks(det, 1, params)
    got = np.sum((cl["cls"] == CLASS_MIDDLE) & (cl["index"] >= 0) & (cl["index"] < n))
    within(got, n * p, np.sqrt(n * p * (1 - p)))
    # the side slots: (mu_e + mu_l) / 4 per port and gate, from two symbols
    lam = eta * (1 - params.bob_p_z) * (me + ml) / 4
    p = 1 - (1 - pd) * np.exp(-lam)
    cl = gate_clicks(det, 1, params)
    got = np.sum((cl["phase"] == 0) & (cl["index"] >= 1) & (cl["index"] < n))
    within(got, (n - 1) * p, np.sqrt(n * p))


@pytest.mark.parametrize("chunk", [1 << 22, 4099])
def test_dead_time_correction(chunk):
    """Non-paralysable dead time of D whole symbol periods: clicks per symbol p / (1 + D p),
    also across chunk boundaries."""
    D = 10
    params = ChannelParams(**{**IDEAL, "efficiency": 0.8, "bob_p_z": 0.5,
                              "dead_time_ps": (D + 0.5) * 400.0})
    m, _ = patterns(params)
    p = 1 - np.exp(-params.efficiency * params.bob_p_z * m[0, Z0, 0])
    n = 600_000
    det, counters = simulate_symbols(log_of([Z0], n), params, seed=3, chunk_symbols=chunk)
    got = np.sum(det["channel"] == 0)
    mean, var = D + 1 / p, (1 - p) / p ** 2               # renewal cycle
    within(got, n / mean, np.sqrt(n * var / mean ** 3))
    assert counters["dead_losses"][0] > 0.5 * got         # the dead time really bites
    gaps = np.diff(det["time_ps"][det["channel"] == 0])
    assert gaps.min() >= (D + 0.5) * 400 - 10


def test_afterpulses_free_running():
    """Each click is followed by an afterpulse with probability q after the dead time plus
    Exp(tau): afterpulses per primary click q / (1 - q) (they cascade); delays mean tau."""
    q, tau, dead = 0.2, 1000.0, 500.0
    params = snspd(**{**IDEAL, "detector": "free", "efficiency": 0.003, "bob_p_z": 1.0,
                      "afterpulse_probability": q, "afterpulse_tau_ps": tau,
                      "dead_time_ps": dead})
    n = 6_000_000
    det, counters = simulate_symbols(log_of([Z0], n), params, seed=4)
    z = det["channel"] == 0
    primaries = np.sum(z & (det["kind"] == KIND_PHOTON))
    after = np.sum(z & (det["kind"] == KIND_AFTERPULSE))
    within(after, primaries * q / (1 - q), np.sqrt(primaries * q / (1 - q) ** 2))
    t = det["time_ps"][z]
    kind = det["kind"][z]
    delay = (t[1:] - t[:-1])[kind[1:] == KIND_AFTERPULSE] - dead
    assert delay.min() >= -1
    within(delay.mean(), tau, tau / np.sqrt(len(delay)))


def test_afterpulses_and_darks_fall_in_gates():
    params = ChannelParams(**{**IDEAL, "efficiency": 0.5, "dark_per_gate": 1e-3,
                              "afterpulse_probability": 0.3, "dead_time_ps": 1000.0})
    det, _ = simulate_symbols(log_of([Z0, Z1, XP], 200_000), params, seed=5)
    others = det["kind"] != KIND_PHOTON
    assert np.sum(det["kind"] == KIND_AFTERPULSE) > 1000
    # gates: 100 ps wide, centred on Bob's UIs (200 ps)
    offset = np.mod(det["time_ps"][others], 200) - 100
    assert np.abs(offset).max() <= 51


@pytest.mark.parametrize("detector", ["gated", "free"])
def test_dark_counts(detector):
    n = 1_000_000
    params = ChannelParams(**{**IDEAL, "detector": detector, "dark_per_gate": 1e-3,
                              "dark_rate_hz": 2e6})
    log = log_of([Z0], n)
    log["dark"][:] = 1                    # no light, but what the closed modulators leak
    det, _ = simulate_symbols(log, params, seed=6)
    assert np.mean(det["kind"] == KIND_DARK) > 0.9
    det = {name: values[det["kind"] == KIND_DARK] for name, values in det.items()}
    duration = n * params.symbol_ps + 2000.0 + 8.0        # until the last light could arrive
    for c in range(params.channels):
        got = np.sum(det["channel"] == c)
        if detector == "gated":
            expect = duration / params.gate_period * params.dark_per_gate
        else:
            expect = duration * 1e-12 * params.dark_rate_hz
        within(got, expect, np.sqrt(expect))


def test_qber_from_visibility_and_dark_counts():
    """QBER X = P(-) / (P(+) + P(-)) with P(+-) = 1 - (1 - p_d) exp(-lam (1 +- V) / 2);
    QBER Z from dark counts and carver leakage in the wrong bin."""
    pd, V = 5e-3, 0.8
    params = ChannelParams(**{**IDEAL, "dark_per_gate": pd, "visibility": V,
                              "efficiency": 0.2})
    m, _ = patterns(params)
    eta = params.efficiency
    n = 400_000
    det, _ = simulate_symbols(log_of([XP], n), params, seed=7)
    me, ml = m[0, XP]
    counts = {}
    for channel in (1, 2):
        cl = gate_clicks(det, channel, params)
        counts[channel] = np.sum(cl["cls"] == CLASS_MIDDLE)
    lam = eta * (1 - params.bob_p_z) * (me + ml) / 2
    plus = 1 - (1 - pd) * np.exp(-lam * (1 + V) / 2)
    minus = 1 - (1 - pd) * np.exp(-lam * (1 - V) / 2)
    e = minus / (plus + minus)
    total = counts[1] + counts[2]
    within(counts[2] / total, e, np.sqrt(e * (1 - e) / total))

    log = log_of([Z0, Z1], n, seed=8)
    det, _ = simulate_symbols(log, params, seed=9)
    cl = gate_clicks(det, 0, params)
    ok = (cl["index"] >= 0) & (cl["index"] < n)
    bit = log["bit"][cl["index"][ok]]
    wrong = np.sum((cl["phase"][ok] == 1) != (bit == 1))
    lit, dark = m[0, Z0]
    right = 1 - (1 - pd) * np.exp(-eta * params.bob_p_z * lit)
    wrong_p = 1 - (1 - pd) * np.exp(-eta * params.bob_p_z * dark)
    e = wrong_p / (right + wrong_p)
    within(wrong / ok.sum(), e, np.sqrt(e * (1 - e) / ok.sum()))


def test_interferometer_phase_drift():
    """The interferometer's phase drifts by pi over the run: X+ leaves by the + port at the
    start, (1 - V cos(theta)) / 2 of it by the - port as theta grows."""
    n, V = 1_000_000, 0.98
    hours = n * 400.0 / 3.6e15
    params = ChannelParams(**{**IDEAL, "visibility": V, "efficiency": 0.5,
                              "phase_drift_rad_per_hour": np.pi / hours})
    det, _ = simulate_symbols(log_of([XP], n), params, seed=23)
    cl = classify_detections(det, params)
    mid = (det["channel"] > 0) & (cl["cls"] == CLASS_MIDDLE)
    theta = np.pi * cl["index"][mid] / n
    minus = det["channel"][mid] == 2
    for lo, hi in ((0.0, 0.1), (0.45, 0.55), (0.9, 1.0)):
        sel = (theta >= lo * np.pi) & (theta < hi * np.pi)
        expect = np.mean((1 - V * np.cos(theta[sel])) / 2)
        within(minus[sel].mean(), expect, np.sqrt(expect * (1 - expect) / sel.sum()))


def test_loss_versus_distance():
    base = ChannelParams(**{**IDEAL, "efficiency": 1.0, "bob_p_z": 1.0})
    m, _ = patterns(base)
    n = 300_000
    for km in (0.0, 20.0, 50.0):
        params = base.replace(length_km=km)
        det, _ = simulate_symbols(log_of([Z0], n), params, seed=10)
        p = 1 - np.exp(-10 ** (-0.02 * km) * m[0, Z0, 0])
        got = np.sum(det["channel"] == 0)
        within(got, n * p, np.sqrt(n * p))


@pytest.mark.parametrize("case", ["delay", "drift", "cycle", "clock"])
def test_arrival_times(case):
    """Click time = ((emission + fibre delay + drift) + latency - start) * (1 + offset) +
    Gaussian jitter: residuals have mean 0 and the jitter's width."""
    sigma = 40.0
    common = {**IDEAL, "detector": "free", "efficiency": 0.05, "bob_p_z": 1.0,
              "jitter_ps": sigma, "length_km": 10.0, "latency_ps": 1234.0}
    params = ChannelParams(**{**common, **{
        "delay": {"bob_start_ps": 0.0},
        "drift": {"drift_ps_per_hour_per_km": 30.0, "time_acceleration": 3e7},
        "cycle": {"drift_ps_per_hour_per_km": -30.0, "time_acceleration": 3e7,
                  "drift_period_s": 1e-4 * 3e7},
        "clock": {"clock_offset_ppm": 100.0},
    }[case]})
    n = 1_000_000
    det, _ = simulate_symbols(log_of([Z0, Z1], n), params, seed=11, chunk_symbols=300_000)
    ph = det["kind"] == KIND_PHOTON
    emit = (det["symbol"][ph] * 2 + det["slot"][ph] + 0.5) * params.ui_ps
    arrival = emit + params.fibre_delay_ps + params.drift_ps(emit) + 1234.0
    expect = (arrival - params.bob_start) * params.clock_factor
    residual = det["time_ps"][ph] - expect
    N = len(residual)
    within(residual.mean(), -0.5, sigma / np.sqrt(N) + 0.3)   # floor to whole ps: -0.5
    assert residual.std() == pytest.approx(sigma, rel=0.03)
    total_shift = expect[-1] - (emit[-1] - emit[0]) - expect[0]
    if case == "delay":
        assert expect[0] - emit[0] == pytest.approx(10 * 4.8974e6 + 1234, rel=1e-4)
    elif case == "drift":                     # 30 ps/h/km * 10 km * 3e7 over 0.4 ms
        assert total_shift == pytest.approx(30 * 10 * 3e7 * 4e-4 / 3600, rel=0.01)
    elif case == "clock":
        assert total_shift == pytest.approx(100e-6 * 4e8, rel=0.01)


# --- the word path ------------------------------------------------------------------------


def cells(det, params, log):
    """Counts per (channel, class, Alice's state, intensity) of the detections."""
    cl = classify_detections(det, params)
    n = len(log["basis"])
    ok = (cl["index"] >= 0) & (cl["index"] < n) & (cl["cls"] != 3)
    i = cl["index"][ok]
    state = log["basis"][i] * 2 + log["bit"][i]
    key = ((det["channel"][ok].astype(np.int64) * 4 + cl["cls"][ok]) * 4 + state) * 4 \
        + log["intensity"][i]
    return np.bincount(key, minlength=3 * 4 * 4 * 4)


@pytest.mark.parametrize("S, pulse", [(2, None), (4, None), (4, (1, 1))])
def test_word_path_and_fast_path_agree(S, pulse):
    cal = Calibration()
    settings = {"im_levels": calibrated_im_levels(cal, (0.5, 0.1), uis_per_symbol=S,
                                                  pulse_width=pulse and pulse[1])}
    if pulse:
        settings.update(pulse_offset=pulse[0], pulse_width=pulse[1])
    result, meta = run_tx(lanes=8, uis_per_symbol=S, symbols=1_000_000, seed=12, protocol="4",
                          p_z=0.5, settings=settings)
    # gates on the pulses (centred on UI 1 of a bin with the offset pulse); a short hold-off
    params = ChannelParams.from_tx_meta(meta, length_km=2.0, dark_per_gate=1e-4, bob_p_z=0.5,
                                        afterpulse_probability=0.05, dead_time_ps=2000.0,
                                        gate_phase_ps=300.0 if pulse else None)
    log = {name: result[name] for name in ("basis", "bit", "intensity", "dark")}
    fast, _ = simulate_symbols(log, params, seed=13, tx_settings=settings)
    words, _ = simulate_driver(result["carver"], result["im"], result["pm"], params, seed=14)
    a, b = cells(fast, params, log), cells(words, params, log)
    assert a.sum() > 50_000
    both = (a + b) > 0
    chi2 = np.sum((a - b)[both] ** 2 / (a + b)[both])
    dof = both.sum()
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)
    assert np.all(np.abs(a - b) <= 5 * np.sqrt(a + b) + 2)
    assert abs(a.sum() - b.sum()) <= 4.5 * np.sqrt(a.sum() + b.sum())
    # click times within a UI (jitter): 20 bins
    bins = np.linspace(0, params.ui_ps, 21)
    x = np.histogram(np.mod(fast["time_ps"], params.ui_ps), bins)[0]
    y = np.histogram(np.mod(words["time_ps"], params.ui_ps), bins)[0]
    assert np.sum((x - y) ** 2 / np.maximum(x + y, 1)) < 20 + 5 * np.sqrt(40)
    for kind in (KIND_DARK, KIND_AFTERPULSE):
        x, y = np.sum(fast["kind"] == kind), np.sum(words["kind"] == kind)
        assert abs(x - y) <= 5 * np.sqrt(x + y) + 2


def qber_z(det, params, log):
    cl = classify_detections(det, params)
    n = len(log["basis"])
    z = (det["channel"] == 0) & (cl["index"] >= 0) & (cl["index"] < n)
    i = cl["index"][z]
    sift = log["basis"][i] == 0
    bob = cl["cls"][z][sift] == CLASS_LATE
    return np.mean(bob != (log["bit"][i][sift] == 1)), sift.sum()


def test_wrong_driver_delay_shows_in_the_z_errors():
    """Alice's outputs one UI late put Z0 in the late bin and Z1 in the next symbol's early
    bin: the Z error rate jumps. Only the carver late: its pulses meet the IM's level of the
    neighbouring bin, which is mostly the unlit one, and much of the light goes."""
    params = ChannelParams(lanes=16, length_km=50.0)
    runs = {}
    for name, settings in (("right", {}), ("late", {"delay_carver": 1, "delay_im": 1,
                                                    "delay_pm": 1}),
                           ("carver", {"delay_carver": 1})):
        result, meta = run_tx(lanes=16, uis_per_symbol=2, symbols=300_000, seed=15,
                              settings=settings)
        log = {name: result[name] for name in ("basis", "bit")}
        det, _ = simulate_driver(result["carver"], result["im"], result["pm"], params,
                                 seed=16)
        runs[name] = (*qber_z(det, params, log), np.sum(det["channel"] == 0))
    assert runs["right"][0] < 0.05
    assert runs["late"][0] > 0.3
    assert runs["carver"][2] < 0.5 * runs["right"][2]


@pytest.mark.parametrize("oversampling", [1, 2])
def test_words_feed_the_receiver_model(oversampling, tmp_path):
    result, meta = run_tx(lanes=16, uis_per_symbol=2, symbols=200_000, seed=17)
    params = ChannelParams.from_tx_meta(meta, length_km=10.0, oversampling=oversampling,
                                        dark_per_gate=1e-5)
    samples, det, info = simulate_words((result, meta), params, seed=18)
    W = 32 * oversampling
    assert samples.dtype == np.uint8 and samples.shape[1:] == (3, W)
    assert set(np.unique(samples)) <= {0, 1} and info["outside"] == 0
    save_words(tmp_path / "w.npz", samples, {"channels": 3, "lanes": 16, "uis_per_symbol": 2,
                                            "oversampling": oversampling})
    loaded, _ = load_words(tmp_path / "w.npz")
    assert np.array_equal(loaded, samples)

    padded = np.concatenate([samples, np.zeros((64, 3, W), np.uint8)])
    settings = info["receiver_settings"]
    model = ReceiverModel(channels=3, lanes=16, uis_per_symbol=2, oversampling=oversampling)
    out = model.run(padded, delay=settings["delay"], windows=settings["windows"],
                    dead_mode=DeadTimeMode.PER_DETECTOR.value, dead_time=32)
    records = out.taken()
    assert not out.overflow.any() and not out.settings_error.any()
    # the records are the detections as the binner sees them (the detectors' 10 ns dead
    # time exceeds the receiver's, one word)
    cl = classify_detections(det, params)
    keep = cl["cls"] != 3
    want = np.lexsort((cl["phase"][keep], det["channel"][keep], cl["index"][keep]))
    got = np.lexsort((records["phase"], records["channel"], records["index"]))
    assert np.array_equal(records["index"][got].astype(np.int64), cl["index"][keep][want])
    assert np.array_equal(records["channel"][got], det["channel"][keep][want])
    assert np.array_equal(records["cls"][got], cl["cls"][keep][want])
    # basis and bit statistics against Alice's log
    index = records["index"].astype(np.int64)
    ok = index < len(result["basis"])
    basis, bit = result["basis"][index[ok]], result["bit"][index[ok]]
    ch, cls = records["channel"][ok], records["cls"][ok]
    z = (ch == 0) & (basis == 0)
    assert z.sum() > 2000
    assert np.mean((cls[z] == CLASS_LATE) != (bit[z] == 1)) < 0.05
    x = (ch > 0) & (cls == CLASS_MIDDLE) & (basis == 1)
    assert np.mean(ch[x] == 2) < 0.05                     # X+ leaves by the + port
    assert np.sum(x) > 100 and np.all(np.isin(cls[ch == 0], (CLASS_EARLY, CLASS_LATE)))


# --- interfaces ---------------------------------------------------------------------------


def test_words_of_detections():
    params = ChannelParams(lanes=2, uis_per_symbol=2, oversampling=2, output_pulse_uis=1)
    det = {"channel": np.array([0, 1, 2]), "sample": np.array([0, 7, 17])}
    samples, outside = detections_to_words(det, params, cycles=2)
    assert outside == 1 and samples.shape == (2, 3, 8)
    assert samples[0, 0].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert samples[0, 1].tolist() == [0, 0, 0, 0, 0, 0, 0, 1]
    assert samples[1, 1].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]


def test_words_stream_chunk_by_chunk():
    """A run fed in chunks: each chunk's clicks all come after the time the channel said was
    final before it, and the streamed words equal the words of all clicks at once."""
    result, meta = run_tx(lanes=16, uis_per_symbol=2, symbols=100_000, seed=24)
    params = ChannelParams.from_tx_meta(meta, length_km=3.0, oversampling=2,
                                        dark_per_gate=1e-4)
    ch, stream = Channel(params, seed=25), WordStream(params)
    words, dets, final = [], [], 0
    for lo in range(0, len(result["carver"]), 777):
        det = ch.send_words(*(result[k][lo:lo + 777] for k in ("carver", "im", "pm")))
        assert np.all(det["time_ps"] >= final)
        final = ch.final_time_ps()
        dets.append(det)
        words.append(stream.push(det, final))
    dets.append(ch.flush())
    assert ch.final_time_ps() is None
    words.append(stream.push(dets[-1]))
    words = np.concatenate(words)
    det = {k: np.concatenate([d[k] for d in dets]) for k in dets[0]}
    assert np.all(np.diff(det["time_ps"]) >= 0) and len(det["time_ps"]) > 1000
    whole, outside = detections_to_words(det, params, len(words))
    assert outside == stream.early == 0
    assert np.array_equal(words, whole)


def test_link_figures():
    f = link_figures(gated_ingaas(length_km=50.0))
    assert f["transmittance"] == pytest.approx(0.1)
    assert f["eta_z"] == pytest.approx(0.1 * 0.25 * 0.9)
    assert f["dark_per_bin"] == pytest.approx(1e-6)
    assert link_figures(snspd())["dark_per_bin"] == pytest.approx(100 * 200e-12, rel=1e-6)


def test_seeded_and_chunked():
    params = gated_ingaas(length_km=5.0)
    log = log_of([Z0, Z1, XP], 100_000)
    a, _ = simulate_symbols(log, params, seed=20)
    b, _ = simulate_symbols(log, params, seed=20)
    c, _ = simulate_symbols(log, params, seed=21)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["time_ps"], c["time_ps"])
    assert np.all(np.diff(a["time_ps"]) >= 0)
    # the channel streams: chunks of any size, final detections only
    ch = Channel(params, seed=22)
    parts = [ch.send_symbols(log["basis"][i:i + 7000], log["bit"][i:i + 7000],
                             log["intensity"][i:i + 7000]) for i in range(0, 100_000, 7000)]
    parts.append(ch.flush())
    times = np.concatenate([p["time_ps"] for p in parts])
    assert np.all(np.diff(times) >= 0)
    within(len(times), len(a["time_ps"]), 5 * np.sqrt(len(times)))


def test_bench_channel_reports_speed():
    out = bench_channel(symbols=2_000_000, chunk_symbols=1 << 20, word_symbols=20_000,
                        configs={"snspd_100km": snspd(length_km=100.0)})
    fast = out["fast_path"]["snspd_100km"]
    assert fast["symbols"] == 2_000_000 and fast["symbols_per_s"] > 0
    assert out["word_path"]["symbols_per_s"] > 0
