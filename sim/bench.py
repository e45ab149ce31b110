"""Benchmarks behind ``timebin bench``: each returns a JSON-able dict of measured figures."""

import platform
import time

import numpy as np

__all__ = ["bench_tx", "bench_rx", "bench_link"]


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
        samples = generate_words(params, max(model_cycles, amaranth_cycles,
                                             verilator_cycles if verilator else 0), 1,
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


def bench_link(*, probabilities=(1e-2, 1e-3, 1e-4), records=200_000, channels=4,
               uis_per_symbol=2, frame_megabytes=8):
    """The link: bits per detection of Bob's compressed record stream (best Rice parameter,
    headers and padding included) against the entropy bound at each detection probability
    per symbol; host decode of those streams in records/s; and the host frame decoder in
    MB/s on valid frames of 1 KiB payloads."""
    from ..gateware.frames import FrameType
    from ..host.frames import FrameDecoder, FrameEncoder
    from ..host.records import decode_detections
    from .rx.compress import encode_records, link_records, measure_bits_per_detection

    compression = []
    for p in probabilities:
        figure = measure_bits_per_detection(p, channels=channels,
                                            uis_per_symbol=uis_per_symbol, n=records)
        rng = np.random.default_rng(1)
        fields = link_records(rng, p, records, channels, uis_per_symbol)
        words = encode_records(fields, channels=channels, uis_per_symbol=uis_per_symbol,
                               k=figure.k)
        start = time.perf_counter()
        decoded = decode_detections(words, channels, uis_per_symbol)
        seconds = time.perf_counter() - start
        if not np.array_equal(decoded["index"], np.asarray(fields["index"], np.uint64)):
            raise RuntimeError(f"decoded records differ from those encoded at p={p}")
        compression.append({"p": p, "k": figure.k, "bits_per_detection": figure.bits,
                            "entropy_bound": figure.bound,
                            "excess_bits": figure.bits - figure.bound,
                            "decode_records_per_s": records / seconds})

    encoder = FrameEncoder()
    payload = bytes(range(256)) * 4
    frame = encoder.encode(FrameType.DETECTIONS, payload)
    count = frame_megabytes * (1 << 20) // len(frame)
    stream = b"".join(encoder.encode(FrameType.DETECTIONS, payload) for _ in range(count))
    decoder = FrameDecoder()
    start = time.perf_counter()
    delivered = sum(len(decoder.feed(stream[i:i + 65536]))
                    for i in range(0, len(stream), 65536))
    seconds = time.perf_counter() - start
    if delivered != count:
        raise RuntimeError(f"frame decoder delivered {delivered} of {count} frames")
    return {"bench": "link", "machine": _machine(), "numpy": np.__version__,
            "channels": channels, "uis_per_symbol": uis_per_symbol, "records": records,
            "compression": compression,
            "frame_decoder": {"megabytes": len(stream) / 1e6, "seconds": seconds,
                              "megabytes_per_s": len(stream) / 1e6 / seconds,
                              "frames_per_s": count / seconds}}
