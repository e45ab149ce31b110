"""Long runs of the receiver top's generated Verilog under Verilator, compared with the model:
the records taken, the final counters and a histogram read sweep. Used by the 10**6-cycle
test, ``timebin sim rx --rtl`` and ``timebin bench rx``.
"""

import numpy as np

from ...gateware.rx.top import Receiver
from ..verilator_stream import build_stream
from .histogram import histogram_from_sweep
from .merge import unpack_detections
from .rtl import OUTPUT_PORTS, decode_outputs, setting_ints
from .top import RECORD_FIELDS

__all__ = ["VERILOG_NAME", "build_receiver", "run_receiver_verilator", "compare_final"]

#: Module name of the receiver top in the generated Verilog.
VERILOG_NAME = "rx_top"


def build_receiver(params):
    """``(receiver, build)``: the :class:`Receiver` of ``params`` and its compiled (or cached)
    Verilator stream harness."""
    top = Receiver(**params)
    return top, build_stream(top, name=VERILOG_NAME)


def _sample_bytes(samples):
    """(N, C, width) 0/1 -> (N, ceil(C * width / 8)) uint8, channel 0 / sample 0 in bit 0."""
    n = len(samples)
    return np.packbits(np.asarray(samples, np.uint8).reshape(n, -1), axis=1, bitorder="little")


def run_receiver_verilator(params, samples, ready=True, *, sweep=None, built=None,
                           **settings):
    """Run the receiver's Verilog for ``len(samples)`` cycles from reset with
    :meth:`ReceiverModel.run`'s arguments.

    Settings that hold one value for the whole run are held as constants; the others are
    driven per cycle. ``sweep``: ``(start, settle)`` when the run ends with a histogram read
    sweep made by :func:`~timebin.sim.rx.stimulus.with_histogram_sweep` (``start`` is the
    length of the samples before it). ``built``: a ``(receiver, build)`` of
    :func:`build_receiver` to reuse.

    Returns ``{"records": {field: array, "cycle": array}, "final": {port: array},
    "histogram": (C, B) array or None, "cycles", "seconds", "build_s", "compiled"}``;
    ``final`` holds each output port as the model's arrays hold one cycle (the last).
    """
    top, build = built if built is not None else build_receiver(params)
    n = len(samples)
    inputs = {"samples": _sample_bytes(samples)}
    constants = {}
    ready = np.broadcast_to(np.asarray(ready, bool), (n,))
    if ready.all():
        constants["records__ready"] = 1
    else:
        inputs["records__ready"] = ready.astype(np.uint8)
    for name, ints in setting_ints(top, n, settings).items():
        if all(x == ints[0] for x in ints):
            constants[name] = ints[0]
        else:
            inputs[name] = np.array(ints, dtype=object)
    result = build.run(inputs=inputs, constants=constants, events=["records__payload"],
                       event_when=("records__valid", "records__ready"),
                       trace=["histogram_data"] if sweep else [])
    fields = unpack_detections([int(x) for x in result.events["records__payload"]])
    records = {name: fields[name] for name in RECORD_FIELDS}
    records["cycle"] = np.asarray(result.event_cycles, np.uint64)
    last = decode_outputs(top, {name: [int(result.final[name])]
                                for name in ("records__valid", "records__payload",
                                             *OUTPUT_PORTS)})
    final = {name: last[name][0] for name in OUTPUT_PORTS}
    histogram = None
    if sweep:
        start, settle = sweep
        bins = top.histogram.bins
        histogram = histogram_from_sweep(result.trace["histogram_data"][start:],
                                         top.channels, bins, settle=settle)
    return {"records": records, "final": final, "histogram": histogram,
            "cycles": result.cycles, "seconds": result.seconds, "build_s": result.build_s,
            "compiled": result.compiled}


def compare_final(rtl, model, ready=True):
    """Raise ``AssertionError`` naming the first difference between a Verilator run (as
    :func:`run_receiver_verilator` returns it) and the model's output: every record taken
    (fields and cycle), every output port in the last cycle, and the histogram."""
    want = model.taken(ready)
    have = rtl["records"]
    if len(have["cycle"]) != len(want["cycle"]):
        raise AssertionError(f"gateware gave {len(have['cycle'])} records, model "
                             f"{len(want['cycle'])}")
    for name in ("cycle", *RECORD_FIELDS):
        diff = np.flatnonzero(np.asarray(have[name], np.uint64)
                              != np.asarray(want[name], np.uint64))
        if diff.size:
            i = diff[0]
            raise AssertionError(f"record {i} ({name}) differs: gateware {have[name][i]}, "
                                 f"model {want[name][i]}")
    last = model._asdict()
    for name in OUTPUT_PORTS:
        have_value = np.asarray(rtl["final"][name], np.uint64).reshape(-1)
        want_value = np.asarray(last[name][-1], np.uint64).reshape(-1)
        if not np.array_equal(have_value, want_value):
            raise AssertionError(f"{name} in the last cycle: gateware {have_value.tolist()}, "
                                 f"model {want_value.tolist()}")
    if rtl["histogram"] is not None and not np.array_equal(rtl["histogram"], model.histogram):
        raise AssertionError("histogram read sweep differs from the model")
