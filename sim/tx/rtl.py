"""Drive the transmitter top cycle by cycle in Amaranth's simulator, and compare it with the
model. Shared by the tests and ``timebin bench tx``.
"""

import numpy as np
from amaranth.hdl import Value

from ..amaranth_helpers import simulate
from ..words import bits_to_ints, unpack_serializer_words, unpack_symbol_words

__all__ = ["STATUS_PORTS", "run_transmitter", "compare_transmitter", "TransmitterMismatch"]

#: Status outputs of the top, compared cycle by cycle with the model.
STATUS_PORTS = ("alarm", "settings_error", "underflow", "blanked", "health_fail_cycles",
                "log_dropped")


def _per_cycle(value, n, dtype=bool):
    return np.broadcast_to(np.asarray(value, dtype), (n,))


def run_transmitter(dut, n, settings=None, *, enable=True, log_ready=True, qrng_valid=None,
                    qrng_bits=None, alarm_clear=None):
    """Simulate ``dut`` (a :class:`Transmitter`) for ``n`` cycles from reset.

    Same arguments as :meth:`TransmitterModel.run`. Returns a dict of per-cycle arrays named
    as the fields of :class:`TransmitterOutput` (without ``symbols``).
    """
    settings = dict(settings or {})
    enable = _per_cycle(enable, n)
    log_ready = _per_cycle(log_ready, n)
    clear = _per_cycle(False if alarm_clear is None else alarm_clear, n)
    qrng_valid = _per_cycle(False if qrng_valid is None else qrng_valid, n)
    qrng_ints = (bits_to_ints(qrng_bits) if qrng_bits is not None else [0] * n)
    ser_payload = Value.cast(dut.ser)
    log_payload = Value.cast(dut.log.payload)
    rec = {name: [] for name in ("ser", "ser_valid", "log_valid", "log",
                                 *STATUS_PORTS)}

    async def testbench(ctx):
        for name, value in settings.items():
            ctx.set(getattr(dut, name), value)
        for c in range(n):
            ctx.set(dut.enable, int(enable[c]))
            ctx.set(dut.log.ready, int(log_ready[c]))
            ctx.set(dut.alarm_clear, int(clear[c]))
            ctx.set(dut.qrng.valid, int(qrng_valid[c]))
            ctx.set(dut.qrng.payload, qrng_ints[c])
            rec["ser"].append(ctx.get(ser_payload))
            rec["ser_valid"].append(ctx.get(dut.ser_valid))
            rec["log_valid"].append(ctx.get(dut.log.valid))
            rec["log"].append(ctx.get(log_payload))
            for name in STATUS_PORTS:
                rec[name].append(ctx.get(getattr(dut, name)))
            await ctx.tick()

    simulate(dut, testbench)
    return decode_records(dut, rec)


def decode_records(dut, rec):
    """Per-cycle raw port values (ints) -> the arrays of :func:`run_transmitter`."""
    carver, im, pm = unpack_serializer_words(rec["ser"], dut.lanes, dut.uis_per_symbol,
                                             dut.dac_bits, dut.pm_bits)
    log_index, log_fields = unpack_symbol_words(dut.lanes, rec["log"])
    out = {"carver": carver, "im": im, "pm": pm,
           "ser_valid": np.array(rec["ser_valid"], bool),
           "log_valid": np.array(rec["log_valid"], bool),
           "log_index": log_index, "log_fields": log_fields}
    for name in STATUS_PORTS:
        out[name] = np.array(rec[name], np.int64 if name not in ("alarm", "settings_error")
                             else bool)
    return out


class TransmitterMismatch(AssertionError):
    """The gateware and the model disagree; the message names the output and first cycle."""


def compare_transmitter(got, want):
    """Check the RTL outputs ``got`` (dict) against a :class:`TransmitterOutput` ``want``.

    Log payloads are compared only where the log is valid. Raises
    :class:`TransmitterMismatch` naming the first differing output, cycle and values.
    """
    pairs = [(name, got[name], getattr(want, name))
             for name in ("carver", "im", "pm", "ser_valid", "log_valid", *STATUS_PORTS)]
    valid = want.log_valid
    pairs.append(("log_index", got["log_index"][valid], want.log_index[valid]))
    for field, values in want.log_fields.items():
        pairs.append((f"log.{field}", got["log_fields"][field][valid], values[valid]))
    for name, a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise TransmitterMismatch(f"{name}: shape {a.shape} (RTL) != {b.shape} (model)")
        diff = np.argwhere(a.astype(np.int64) != b.astype(np.int64))
        if len(diff):
            at = tuple(int(i) for i in diff[0])
            raise TransmitterMismatch(
                f"{name} differs first at {at} ({len(diff)} places): RTL {a[at[:1]]!r}, "
                f"model {b[at[:1]]!r}")
