"""Benchmarks behind ``timebin bench``: each returns a JSON-able dict of measured figures."""

import platform
import time

import numpy as np

__all__ = ["bench_tx", "bench_rx"]


def _machine():
    import os

    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count()}


def bench_tx(*, configs=((16, 2), (4, 4)), model_symbols=1_000_000, amaranth_cycles=2000,
             verilator_cycles=200_000, verilator=True):
    """Transmitter speed: reference-model symbols/s, Amaranth-simulator cycles/s and
    Verilator cycles/s of the whole top, for each (lanes, uis_per_symbol) in ``configs``."""
    from ..gateware.tx.top import Transmitter
    from .tx.rtl import run_transmitter
    from .tx.top import TransmitterModel

    results = []
    for lanes, span in configs:
        entry = {"lanes": lanes, "uis_per_symbol": span}
        model = TransmitterModel(lanes=lanes, uis_per_symbol=span)
        model.run(64, {"key": 1})                        # compile the numba kernels first
        cycles = model_symbols // lanes
        start = time.perf_counter()
        model.run(cycles, {"key": 1, "iv": 2})
        seconds = time.perf_counter() - start
        entry["model"] = {"symbols": cycles * lanes, "seconds": seconds,
                          "symbols_per_s": cycles * lanes / seconds}

        dut = Transmitter(lanes=lanes, uis_per_symbol=span)
        start = time.perf_counter()
        run_transmitter(dut, amaranth_cycles, {"key": 1}, enable=True, log_ready=True)
        seconds = time.perf_counter() - start
        entry["amaranth"] = {"cycles": amaranth_cycles, "seconds": seconds,
                             "cycles_per_s": amaranth_cycles / seconds,
                             "note": "includes elaboration and the Python testbench"}

        if verilator:
            from .tx.verilator_bench import verilator_cycles_per_second

            entry["verilator"] = verilator_cycles_per_second(lanes, span, verilator_cycles)
        results.append(entry)
    return {"bench": "tx", "machine": _machine(), "numpy": np.__version__,
            "results": results}


def bench_rx(*, configs=((16, 2, 4), (4, 4, 2)), model_cycles=200_000, amaranth_cycles=2000,
             verilator_cycles=1_000_000, verilator=True, click_probability=0.05):
    """Receiver speed on simulated link traffic (``click_probability`` clicks per symbol and
    detector): reference-model detections/s and cycles/s, Amaranth-simulator cycles/s and
    Verilator cycles/s (and detections/s) of the whole top, for each (lanes,
    uis_per_symbol, channels) in ``configs``."""
    from ..gateware.rx.top import Receiver
    from .rx.rtl import run_receiver
    from .rx.run import generate_words
    from .rx.top import ReceiverModel

    results = []
    for lanes, span, channels in configs:
        params = {"channels": channels, "lanes": lanes, "uis_per_symbol": span}
        entry = dict(params, click_probability=click_probability)
        samples = generate_words(params, max(model_cycles, verilator_cycles), 1,
                                 click_probability=click_probability)
        model = ReceiverModel(**params)
        model.run(samples[:64])                          # compile the numba kernels first
        start = time.perf_counter()
        out = model.run(samples[:model_cycles])
        seconds = time.perf_counter() - start
        records = int(out.records_valid.sum())
        entry["model"] = {"cycles": model_cycles, "seconds": seconds,
                          "cycles_per_s": model_cycles / seconds, "detections": records,
                          "detections_per_s": records / seconds,
                          "overflows": int(out.overflows[-1].sum())}

        start = time.perf_counter()
        run_receiver(Receiver(**params), samples[:amaranth_cycles])
        seconds = time.perf_counter() - start
        entry["amaranth"] = {"cycles": amaranth_cycles, "seconds": seconds,
                             "cycles_per_s": amaranth_cycles / seconds,
                             "note": "includes elaboration and the Python testbench"}

        if verilator:
            from .rx.verilator import build_receiver, run_receiver_verilator

            built = build_receiver(params)
            rtl = run_receiver_verilator(params, samples[:verilator_cycles], built=built)
            loop = rtl["seconds"]
            detections = len(rtl["records"]["cycle"])
            entry["verilator"] = {"cycles": rtl["cycles"], "seconds": loop,
                                  "cycles_per_s": rtl["cycles"] / loop,
                                  "detections": detections,
                                  "detections_per_s": detections / loop,
                                  "build_s": rtl["build_s"], "compiled": rtl["compiled"],
                                  "note": "the C++ clock loop with its file I/O"}
        results.append(entry)
    return {"bench": "rx", "machine": _machine(), "numpy": np.__version__,
            "results": results}
