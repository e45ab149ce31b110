"""The receiver top's generated Verilog under Verilator against the model over long runs of
Poisson clicks with jitter: every record taken (fields and cycle), every output in the last
cycle, and a histogram read sweep are identical."""

import numpy as np
import pytest
from timebin.sim.rx.detector import click_words, poisson_clicks
from timebin.sim.rx.stimulus import varied_settings, with_histogram_sweep
from timebin.sim.rx.top import ReceiverModel
from timebin.sim.rx.verilator import compare_final, run_receiver_verilator

SETTLE = 64


@pytest.mark.parametrize(("params", "n", "seed"), [
    (dict(channels=4, lanes=16, uis_per_symbol=2), 400_000, 0xB1),
    (dict(channels=3, lanes=4, uis_per_symbol=6, oversampling=2, histogram_period=4,
          fifo_depth=4, max_delay=1000), 200_000, 0xB2),
])
def test_poisson_clicks_rtl_matches_model(params, n, seed):
    rng = np.random.default_rng(seed)
    C, L, S = params["channels"], params["lanes"], params["uis_per_symbol"]
    k = params.get("oversampling", 1)
    W = L * S * k
    # Clicks on the time-bin grid (in samples), jittered by 0.7 UI, some pulses merging.
    times = poisson_clicks(rng, n, W, 0.004 / k, 0.7 * k, channels=C, grid_uis=S // 2 * k,
                           grid_offset=k // 2)
    samples = click_words(times, 2 * k, n, W)
    settings = varied_settings(rng, params, n)
    padded, settings = with_histogram_sweep(params, samples, settle=SETTLE, **settings)
    ready = rng.random(len(padded)) < 0.9
    ready[n // 3:n // 3 + 300] = False
    model = ReceiverModel(**params).run(padded, ready=ready, **settings)
    rtl = run_receiver_verilator(params, padded, ready, sweep=(n, SETTLE), **settings)
    compare_final(rtl, model, ready)
    taken = len(rtl["records"]["cycle"])
    assert taken > n * C * 0.004 * L * S * 0.3
    assert model.overflows[-1].sum() > 0 and model.dead_discards[-1].sum() > 0
    assert model.records["alarm"][model.records_valid].any()
    assert rtl["histogram"].sum() > 1000
