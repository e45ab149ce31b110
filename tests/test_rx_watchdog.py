"""Tests of the blinding watchdog: gateware against its model, and directed cases."""


import numpy as np
import pytest
from amaranth.back import verilog
from timebin.gateware.rx.watchdog import FILL_SCALE, MAX_WINDOW, Watchdog
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.rx.watchdog import WatchdogModel
from timebin.sim.words import bits_to_ints, pack_field

OUTPUTS = ("alarm", "alarm_channels", "trips", "settings_error")
SETTINGS = ("clear", "window", "max_clicks", "max_fill")


def run_rtl(dut, clicks, gate_starts, **settings):
    """Simulate ``dut`` for ``len(clicks)`` cycles from reset.

    ``clicks`` and ``gate_starts`` are (N, C) arrays; ``settings`` (``clear``, ``window``,
    ``max_clicks``, ``max_fill``) are N values or one for every cycle (absent: the port's
    init). Returns the outputs as arrays shaped as :class:`WatchdogOutput`, sampled in each
    cycle before its clock edge.
    """
    n, channels = np.shape(clicks)
    gw = dut.gate_count_bits
    gate_bits = np.zeros((n, channels * gw), np.uint8)
    pack_field(gate_bits, 0, gate_starts, gw)
    inputs = {"clicks": bits_to_ints(clicks), "gate_starts": bits_to_ints(gate_bits)}
    for name, value in settings.items():
        if value is not None:
            inputs[name] = [int(x) for x in np.broadcast_to(value, n)]
    ports = [(getattr(dut, name).as_value() if name == "gate_starts" else getattr(dut, name),
              values) for name, values in inputs.items()]
    got = {name: [] for name in OUTPUTS}

    async def testbench(ctx):
        held = [None] * len(ports)
        for cycle in range(n):
            for i, (port, values) in enumerate(ports):
                if values[cycle] != held[i]:                # each set settles the design
                    ctx.set(port, values[cycle])
                    held[i] = values[cycle]
            for name in OUTPUTS:
                got[name].append(ctx.get(getattr(dut, name)))
            await ctx.tick()

    simulate(dut, testbench)
    out = {name: np.array(got[name], np.int64) for name in OUTPUTS}
    out["alarm_channels"] = (out["alarm_channels"][:, None] >> np.arange(channels)) & 1
    return out


def run_both(params, clicks, gate_starts, **settings):
    """The gateware and the model on the same inputs; fail on the first difference."""
    rtl = run_rtl(Watchdog(**params), clicks, gate_starts, **settings)
    model = WatchdogModel(**params).run(clicks, gate_starts, **settings)
    for name in OUTPUTS:
        want = getattr(model, name).astype(np.int64)
        diff = np.flatnonzero((rtl[name] != want).reshape(len(want), -1).any(axis=1))
        assert not diff.size, (f"{name} differs first in cycle {diff[0]}: gateware "
                               f"{rtl[name][diff[0]]}, model {want[diff[0]]}")
    return model


def first(flags):
    """Index of the first true element (asserting there is one)."""
    hits = np.flatnonzero(flags)
    assert hits.size, "never"
    return int(hits[0])


def schedule(n, default, *changes):
    """A per-cycle setting: ``default`` from cycle 0, then each ``(cycle, value)`` on."""
    values = np.full(n, default, np.int64)
    for cycle, value in changes:
        values[cycle:] = value
    return values


def poisson_traffic(rng, n, channels, rate, gates_per_cycle, gate_bits):
    clicks = (rng.random((n, channels)) < rate).astype(np.uint8)
    gates = rng.integers(0, gates_per_cycle + 1, (n, channels)).clip(0, (1 << gate_bits) - 1)
    return clicks, gates


# --- gateware against model ---

def test_rtl_matches_model_4_channels():
    """Random traffic with a blinded stretch, bursts, clears and changing (and refused)
    settings; both checks trip, alarms are cleared."""
    n, channels, gw, max_window = 10_000, 4, 6, 200
    rng = np.random.default_rng(0xB11D)
    clicks, gates = poisson_traffic(rng, n, channels, 0.05, 3, gw)
    clicks[2000:2600, 1] = 1                            # blinded: clicks in every gate
    gates[2000:2600, 1] = 1
    clicks[4000:4040, 2] = 1                            # a burst
    gates[7000:7100, 3] = 63                            # widest gate counts
    clear = rng.random(n) < 1 / 400
    settings = {
        "clear": clear,
        "window": schedule(n, 64, (3000, 37), (5000, 0), (5200, 37), (6000, 200),
                           (7000, 201), (7300, 1), (7350, 255), (7400, 150)),
        "max_clicks": schedule(n, 12, (4500, 6), (8000, 0), (8100, 15)),
        "max_fill": schedule(n, 128, (2300, 300), (2400, 60), (9000, 256), (9500, 511),
                             (9600, 30)),
    }
    model = run_both({"channels": channels, "gate_count_bits": gw, "max_window": max_window},
                     clicks, gates, **settings)
    assert model.trips[-1] > 20 and model.settings_error.sum() > 300
    assert model.alarm.any() and not model.alarm.all()
    assert model.alarm_channels.any(axis=0).all()


def test_rtl_matches_model_3_channels():
    """Three channels, 3-bit gate counts, the default window bound, windows of one cycle."""
    n, channels, gw = 10_000, 3, 3
    rng = np.random.default_rng(3)
    clicks, gates = poisson_traffic(rng, n, channels, 0.3, 7, gw)
    clicks[:, 0] = rng.random(n) < 0.9
    clear = rng.random(n) < 1 / 1000
    settings = {
        "clear": clear,
        "window": schedule(n, 1, (1500, 2), (3000, 7), (5000, 1000), (8000, 3)),
        "max_clicks": schedule(n, 1, (3000, 5), (5000, 330)),
        "max_fill": schedule(n, 40, (1500, 128), (5000, 40)),
    }
    model = run_both({"channels": channels, "gate_count_bits": gw}, clicks, gates, **settings)
    assert model.trips[-1] > 100


def test_rtl_matches_model_settings_changing_every_cycle():
    """Short windows, clears and rate bounds that change in every cycle (with refused
    windows): the end of a window and the rate compare are computed a cycle ahead in the
    gateware, from the next cycle's inputs."""
    n, channels, max_window = 3000, 2, 9
    rng = np.random.default_rng(77)
    clicks = (rng.random((n, channels)) < 0.6).astype(np.uint8)
    gates = rng.integers(0, 4, (n, channels))
    settings = {
        "clear": rng.random(n) < 0.15,
        "window": rng.integers(0, max_window + 3, n),               # 0 and above: refused
        "max_clicks": rng.integers(0, 6, n),
        "max_fill": rng.choice([64, 128, 200, 256, 300], n),
    }
    model = run_both({"channels": channels, "gate_count_bits": 2, "max_window": max_window},
                     clicks, gates, **settings)
    assert model.trips[-1] > 100 and not model.alarm.all()


# --- directed ---

def test_blinded_detector_trips_fill_check_within_one_window():
    n, channels, window = 600, 4, 100
    rng = np.random.default_rng(11)
    clicks, gates = poisson_traffic(rng, n, channels, 0.02, 1, 6)
    gates[:] = 1                                        # one gate per cycle, every channel
    onset = 230
    clicks[onset:, 2] = 1                               # channel 2 clicks in every gate
    model = run_both({"channels": channels}, clicks, gates, window=window, max_fill=128)
    # The window [200, 300) holds 70 clicks in 100 gates, above half: it trips at its end.
    end = 299
    assert first(model.alarm) == end + Watchdog.fill_latency
    assert first(model.alarm) - onset < window
    assert model.alarm_channels[first(model.alarm)].tolist() == [0, 0, 1, 0]
    assert model.alarm[end + Watchdog.fill_latency:].all()
    # One trip per window from then on: the windows ending in 299, 399, 499 (599 is too late).
    assert model.trips[-1] == 3


def test_fill_needs_gates_and_256_disables():
    n = 300
    clicks = np.ones((n, 2), np.uint8)
    gates = np.zeros((n, 2), np.int64)
    gates[:, 1] = 1                                     # channel 0 free-running: no gates
    model = run_both({"channels": 2}, clicks, gates, window=50, max_fill=255)
    assert model.alarm_channels[:, 0].sum() == 0        # no gates: no fill check
    # 50 clicks * 256 > 255 * 50 gates: the window ending in 49 trips.
    assert first(model.alarm_channels[:, 1]) == 49 + Watchdog.fill_latency
    clicks[:, 1] = 0
    clicks[::2, 1] = 1
    gates[:, 1] = 2
    model = run_both({"channels": 2}, clicks, gates, window=50, max_fill=FILL_SCALE)
    assert not model.alarm.any()
    # clicks > gates would trip any fill below one; 256 still disables.
    gates[:, 1] = 0
    gates[::3, 1] = 1
    model = run_both({"channels": 2}, clicks, gates, window=50, max_fill=FILL_SCALE)
    assert not model.alarm.any()


def test_rate_burst_trips_at_the_exact_cycle():
    n, window, limit = 2600, 1000, 10
    clicks = np.zeros((n, 4), np.uint8)
    gates = np.zeros((n, 4), np.int64)
    burst = 300 + 5 * np.arange(limit + 1)              # 11 clicks, the last in cycle 350
    clicks[burst, 1] = 1
    clicks[500:500 + limit, 3] = 1                      # exactly the bound: no trip
    clicks[1994:2006, 0] = 1                            # 12 clicks split 6 + 6 by the window
    model = run_both({"channels": 4}, clicks, gates, window=window, max_clicks=limit)
    trip = burst[-1]
    seen = trip + Watchdog.rate_latency
    assert first(model.alarm) == seen
    assert model.alarm_channels[seen].tolist() == [0, 1, 0, 0]
    assert model.trips[seen] == 1 and model.trips[-1] == 1
    assert model.alarm[seen:].all()


def test_normal_traffic_never_trips():
    """A gated detector at 5 % clicks per cycle and 8 gates per cycle, with a rate bound 7
    standard deviations above the mean and a fill bound of 1/32: 10^4 cycles in the gateware,
    10^6 in the model."""
    params = {"channels": 4}
    settings = {"window": 256, "max_clicks": 40, "max_fill": 8}
    rng = np.random.default_rng(2024)
    clicks, gates = poisson_traffic(rng, 1_000_000, 4, 0.05, 0, 6)
    gates[:] = 8
    model = run_both(params, clicks[:10_000], gates[:10_000], **settings)
    assert not model.alarm.any() and model.trips[-1] == 0
    model = WatchdogModel(**params).run(clicks, gates, **settings)
    assert not model.alarm.any() and model.trips[-1] == 0


def test_clear_drops_the_alarm_and_restarts_the_window():
    n = 400
    clicks = np.zeros((n, 2), np.uint8)
    gates = np.zeros((n, 2), np.int64)
    # Rate, channel 1 (window 1000, bound 5): 6 clicks trip in cycle 15; 3 more before the
    # clear at 100 would count with 5 after it in one window, but the clear starts a new one.
    clicks[10:16, 1] = 1
    clicks[90:93, 1] = 1
    clicks[200:205, 1] = 1
    clicks[210, 1] = 1                                  # the 6th of the new window
    clear = np.zeros(n, bool)
    clear[100] = True
    model = run_both({"channels": 2}, clicks, gates, clear=clear, window=1000, max_clicks=5)
    R, X = Watchdog.rate_latency, Watchdog.clear_latency
    assert first(model.alarm) == 15 + R
    assert model.alarm[15 + R:100 + X].all() and not model.alarm[100 + X:210 + R].any()
    assert first(model.alarm[100 + X:]) + 100 + X == 210 + R
    assert model.trips[-1] == 2                         # clear does not reset the counter

    # Fill, channel 0 clicking every gate: windows of 50 from cycle 0 trip at 49 (seen in
    # 49 + F). A clear at 75 starts a window [75, 125); a clear at 125 cancels that window's
    # check and starts [125, 175), which trips at 174 (seen in 174 + F).
    F = Watchdog.fill_latency
    clicks = np.zeros((n, 2), np.uint8)
    clicks[:, 0] = 1
    gates = np.ones((n, 2), np.int64)
    clear = np.zeros(n, bool)
    clear[[75, 125]] = True
    model = run_both({"channels": 2}, clicks, gates, clear=clear, window=50, max_fill=128)
    assert first(model.alarm) == 49 + F
    assert model.alarm[49 + F:75 + X].all() and not model.alarm[75 + X:174 + F].any()
    assert model.alarm[174 + F:].all()
    assert model.trips[-1] == 1 + (n - (174 + F) + 49) // 50


def test_trip_in_the_clear_cycle_wins():
    clicks = np.zeros((20, 1), np.uint8)
    clicks[[5, 10], 0] = 1
    clear = np.zeros(20, bool)
    clear[[8, 10]] = True
    model = run_both({"channels": 1}, clicks, np.zeros((20, 1)), clear=clear, max_clicks=0)
    # Alarm from click 5; dropped by the clear of 8; the clear of 10 comes with a trip.
    R, X = Watchdog.rate_latency, Watchdog.clear_latency
    want = np.zeros(20, bool)
    want[5 + R:8 + X] = want[10 + R:] = True
    assert X == R and model.alarm.tolist() == want.tolist()


def test_refused_settings_keep_last_accepted():
    """A channel clicking every gate trips the fill check at the end of every window, so the
    spacing of the trips shows the window in use."""
    n, max_window = 700, 100
    clicks = np.ones((n, 1), np.uint8)
    gates = np.ones((n, 1), np.int64)
    window = schedule(n, 20, (100, 0), (200, max_window + 1), (300, 30), (600, 127))
    max_fill = schedule(n, 128, (400, FILL_SCALE + 1), (500, FILL_SCALE))
    model = run_both({"channels": 1, "max_window": max_window}, clicks, gates,
                     window=window, max_fill=max_fill)
    refused = np.zeros(n, bool)
    refused[101:301] = refused[401:501] = refused[601:] = True       # a cycle late
    np.testing.assert_array_equal(model.settings_error, refused)
    step = np.diff(model.trips.astype(np.int64), prepend=0)
    trips = np.flatnonzero(step) - Watchdog.fill_latency           # the window ends
    # Windows of 20 until 299 (0 and 101 refused), then 30; max_fill 257 is refused, so the
    # check stays on at 128 until 256 switches it off in cycle 500.
    expect = list(range(19, 300, 20)) + list(range(329, 500, 30))
    assert trips.tolist() == expect


def test_model_refuses_values_that_do_not_fit_the_ports():
    model = WatchdogModel(channels=2, max_window=100)
    ok = np.zeros((3, 2), np.uint8)
    with pytest.raises(ValueError, match="window must fit its 7-bit port, not 128"):
        model.run(ok, ok, window=128)
    with pytest.raises(ValueError, match="max_fill .* not 512"):
        model.run(ok, ok, max_fill=512)
    with pytest.raises(ValueError, match="gate_starts"):
        model.run(ok, ok + 64)
    with pytest.raises(ValueError, match="clicks"):
        model.run(ok[:, :1], ok)


# --- construction ---

@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"channels": 0}, ValueError, "0"),
    ({"channels": 17}, ValueError, "17"),
    ({"channels": 2.0}, TypeError, "2.0"),
    ({"channels": True}, TypeError, "True"),
    ({"gate_count_bits": 0}, ValueError, "0"),
    ({"gate_count_bits": 17}, ValueError, "17"),
    ({"gate_count_bits": "6"}, TypeError, "'6'"),
    ({"max_window": 0}, ValueError, "0"),
    ({"max_window": MAX_WINDOW + 1}, ValueError, str(MAX_WINDOW + 1)),
    ({"max_window": 1e6}, TypeError, "1000000.0"),
])
def test_bad_construction(kwargs, error, bad, assert_refused):
    args = {"channels": 4, **kwargs}
    assert_refused(error, f"not {bad}$", lambda: Watchdog(**args))
    with pytest.raises(error, match=f"not {bad}$"):
        WatchdogModel(**args)


def test_keyword_only(assert_refused):
    assert_refused(TypeError, "positional", lambda: Watchdog(4))


def test_port_widths():
    dut = Watchdog(channels=3, gate_count_bits=5, max_window=1000)
    assert len(dut.window) == len(dut.max_clicks) == 10
    assert dut.window.init == dut.max_clicks.init == 1000
    assert len(dut.max_fill) == 9 and dut.max_fill.init == FILL_SCALE
    assert len(dut.gate_starts.as_value()) == 15 and len(dut.alarm_channels) == 3
    assert dut.gate_total_bits == (1000 * 31).bit_length()
    verilog.convert(dut)                                # plain ports: a top can convert it
