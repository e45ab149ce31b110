"""Benchmarks behind ``timebin bench``: each returns a JSON-able dict of measured figures."""

import platform
import time

import numpy as np

__all__ = ["bench_tx"]


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
