"""Drive the receiver top cycle by cycle in Amaranth's simulator, and translate between its
flat ports and the model's arrays. Shared by the tests, the cocotb testbench, the Verilator
runs and ``timebin sim rx --rtl``.

Every port of the receiver is a scalar or a (nested) ``ArrayLayout`` of unsigned leaves: a
value in the model's form (a scalar, one value per element, or one per cycle and element)
becomes one int per cycle, and back, by :func:`port_ints` and :func:`port_arrays`.
"""

import numpy as np
from amaranth.hdl import Shape, Value
from amaranth.lib import data

from ...gateware.rx.top import FORWARDED
from ..amaranth_helpers import run_per_cycle
from ..words import bits_to_ints, ints_to_bits, pack_field, unpack_field
from .merge import unpack_detections
from .top import RECORD_FIELDS, check_setting_names

__all__ = ["port_dims", "port_ints", "port_arrays", "setting_ints", "receiver_inputs",
           "OUTPUT_PORTS", "decode_outputs", "run_receiver", "compare_receiver"]

#: Plain output ports of the receiver top sampled every cycle (besides the records stream).
OUTPUT_PORTS = tuple(name for _, outputs in FORWARDED.values() for name in outputs
                     if name != "records") + ("accepted", "settings_error")


def port_dims(shape):
    """``(dims, leaf_width)`` of a port shape: ``ArrayLayout(ArrayLayout(2, S), C)`` gives
    ``((C, S), 2)``, a plain shape ``((), width)``."""
    dims = []
    while isinstance(shape, data.ArrayLayout):
        dims.append(shape.length)
        shape = shape.elem_shape
    return tuple(dims), Shape.cast(shape).width


def _shape_of(port):
    return port.shape() if isinstance(port, data.View) else Value.cast(port).shape()


def port_ints(port, value, n):
    """``n`` ints (one per cycle) for ``port`` from ``value`` in the model's form: a scalar,
    an array of the port's element dims (held every cycle), or one with a leading axis of
    ``n`` cycles. Enums count by value. Raises ``ValueError`` naming what does not fit."""
    dims, width = port_dims(_shape_of(port))
    array = np.asarray(getattr(value, "value", value))
    if array.dtype == object:
        array = np.vectorize(lambda v: int(getattr(v, "value", v)))(array)
    if array.ndim == len(dims) + 1:
        if len(array) != n:
            raise ValueError(f"per-cycle value of shape {array.shape} does not have {n} cycles")
    elif array.ndim <= len(dims):
        array = np.broadcast_to(array, (n, *dims))
    else:
        raise ValueError(f"value of shape {array.shape} does not fit a port of dims {dims}")
    if array.shape[1:] != dims:
        raise ValueError(f"value of shape {array.shape} does not fit a port of dims {dims}")
    array = array.astype(np.int64) if array.dtype == bool else array
    if array.size and (array.min() < 0 or (width < 64 and array.max() >= 1 << width)):
        raise ValueError(f"value {array.max() if array.min() >= 0 else array.min()} does "
                         f"not fit a {width}-bit element")
    if not dims:
        return [int(x) for x in array]
    leaves = int(np.prod(dims))
    bits = np.zeros((n, leaves * width), np.uint8)
    pack_field(bits, 0, array.astype(np.uint64).reshape(n, leaves), width)
    return bits_to_ints(bits)


def port_arrays(port, ints):
    """Inverse of :func:`port_ints`: per-cycle ints -> (N, *dims) uint64."""
    dims, width = port_dims(_shape_of(port))
    leaves = int(np.prod(dims)) if dims else 1
    bits = ints_to_bits(ints, leaves * width)
    return unpack_field(bits, 0, leaves, width).reshape(len(ints), *dims)


def setting_ints(dut, n, settings):
    """``{port name: n ints}`` of the receiver ``dut``'s settings given in
    :meth:`ReceiverModel.run`'s forms (``None`` values left out: the port keeps its
    ``init``). Raises ``ValueError`` naming an unknown setting or one that does not fit."""
    check_setting_names(settings)
    out = {}
    for name, value in settings.items():
        if value is None:
            continue
        try:
            out[name] = port_ints(getattr(dut, name), value, n)
        except ValueError as error:
            raise ValueError(f"Receiver setting {name}: {error}") from None
    return out


def receiver_inputs(dut, samples, ready=True, **settings):
    """``{port name: n ints}`` of every per-cycle input of the receiver ``dut`` for
    :meth:`ReceiverModel.run`'s arguments (settings not given are left out: the port keeps
    its ``init``). ``records.ready`` is named ``records__ready`` as in the Verilog."""
    samples = np.asarray(samples)
    n, channels = samples.shape[:2]
    if channels != dut.channels:
        raise ValueError(f"samples must have {dut.channels} channels, not {channels}")
    return {"samples": bits_to_ints(samples.reshape(n, -1)),
            "records__ready": [int(x) for x in np.broadcast_to(np.asarray(ready, bool), n)],
            **setting_ints(dut, n, settings)}


def decode_outputs(dut, got):
    """Per-cycle ints of the output ports (``records__valid``, ``records__payload`` and
    :data:`OUTPUT_PORTS`) -> the fields of :class:`~timebin.sim.rx.top.ReceiverOutput`
    (without ``histogram``), as arrays."""
    out = {"records_valid": np.asarray(got["records__valid"], bool)}
    fields = unpack_detections(got["records__payload"])
    out["records"] = {name: fields[name] for name in RECORD_FIELDS}
    for name in OUTPUT_PORTS:
        out[name] = port_arrays(getattr(dut, name), got[name])
    out["alarm_channels"] = ints_to_bits(got["alarm_channels"], dut.channels).astype(bool)
    W = dut.uis_per_word
    out["gates"] = ints_to_bits(got["gates"], dut.channels * W).reshape(-1, dut.channels, W)
    for name in ("alarm", "overflow", "histogram_clearing", "settings_error"):
        out[name] = out[name].astype(bool)
    return out


def run_receiver(dut, samples, ready=True, *, reset_at=None, **settings):
    """Simulate the receiver ``dut`` for ``len(samples)`` cycles from reset with
    :meth:`ReceiverModel.run`'s arguments; ``reset_at``: cycles with the domain's reset high.
    Returns :func:`decode_outputs` of what it showed in each cycle before its edge."""
    inputs = receiver_inputs(dut, samples, ready, **settings)
    ports = [(_port(dut, name), values) for name, values in inputs.items()]
    watched = {"records__valid": dut.records.valid, "records__payload": dut.records.payload,
               **{name: getattr(dut, name) for name in OUTPUT_PORTS}}
    got = run_per_cycle(dut, ports, watched, len(samples), reset_at=reset_at)
    return decode_outputs(dut, got)


def _port(dut, name):
    if name == "records__ready":
        return dut.records.ready
    return Value.cast(getattr(dut, name))


def compare_receiver(rtl, model, *, cycles=None, what=""):
    """Raise ``AssertionError`` on the first cycle where the gateware's outputs (as
    :func:`decode_outputs` gives them) and the model's differ, naming the port."""
    window = slice(None) if cycles is None else cycles
    want = model._asdict()
    checks = [("records_valid", rtl["records_valid"], want["records_valid"])]
    valid = want["records_valid"]
    for name in RECORD_FIELDS:
        checks.append((f"records.{name}", np.where(rtl["records_valid"], rtl["records"][name],
                                                   0),
                       np.where(valid, want["records"][name], 0)))
    for name in OUTPUT_PORTS:
        checks.append((name, rtl[name], want[name]))
    for name, have, expect in checks:
        have = np.asarray(have)[window].astype(np.uint64)
        expect = np.asarray(expect)[window].astype(np.uint64)
        if have.shape != expect.shape:
            raise AssertionError(f"{what}{name}: gateware shape {have.shape}, model "
                                 f"{expect.shape}")
        diff = np.flatnonzero((have != expect).reshape(len(expect), -1).any(axis=1))
        if diff.size:
            c = diff[0]
            raise AssertionError(f"{what}{name} differs first in cycle {c}: gateware "
                                 f"{have[c].tolist()}, model {expect[c].tolist()}")

