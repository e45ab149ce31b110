"""Tests of the record merge: gateware against its model, overflow counts, record fields."""


import numpy as np
import pytest
from amaranth.back import verilog
from timebin.gateware.records import CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE
from timebin.gateware.rx.merge import MAX_FIFO_DEPTH, RecordMerge
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.rx.merge import RecordMergeModel, pack_binned, unpack_detections

FIELDS = ("index", "phase", "channel", "cls", "alarm")
STATUS = ("overflows", "overflow", "records_out")


def run_rtl(dut, valid, index, phase, cls, alarm=False, ready=True):
    """Simulate ``dut`` for ``len(valid)`` cycles from reset, with the inputs of
    :meth:`RecordMergeModel.run`. Returns a dict of per-cycle arrays named as the fields of
    :class:`RecordMergeOutput` (without ``source``), sampled in each cycle before its edge.
    """
    n, channels = np.shape(valid)
    slots = pack_binned(dut.uis_per_symbol, valid, index, phase, cls)
    alarm = [int(x) for x in np.broadcast_to(alarm, n)]
    ready = [int(x) for x in np.broadcast_to(ready, n)]
    binned, overflows = dut.binned.as_value(), dut.overflows.as_value()
    payload = dut.records.payload.as_value()
    got = {name: [] for name in ("valid", "payload", *STATUS)}

    async def testbench(ctx):
        for cycle in range(n):
            ctx.set(binned, slots[cycle])
            ctx.set(dut.alarm, alarm[cycle])
            # valid and payload must not follow ready within the cycle.
            ctx.set(dut.records.ready, 1 - ready[cycle])
            before = (ctx.get(dut.records.valid), ctx.get(payload))
            ctx.set(dut.records.ready, ready[cycle])
            got["valid"].append(ctx.get(dut.records.valid))
            got["payload"].append(ctx.get(payload))
            assert before == (got["valid"][-1], got["payload"][-1]), cycle
            got["overflows"].append(ctx.get(overflows))
            got["overflow"].append(ctx.get(dut.overflow))
            got["records_out"].append(ctx.get(dut.records_out))
            await ctx.tick()

    simulate(dut, testbench)
    out = {"valid": np.array(got["valid"], bool),
           "overflow": np.array(got["overflow"], bool),
           "records_out": np.array(got["records_out"], np.uint64),
           **unpack_detections(got["payload"])}
    words = np.array(got["overflows"], dtype=object)
    out["overflows"] = np.array([[(int(w) >> (32 * k)) & 0xFFFF_FFFF for k in range(channels)]
                                 for w in words], np.uint32).reshape(n, channels)
    return out


def run_both(params, valid, index, phase, cls, alarm=False, ready=True):
    """The gateware and the model on the same inputs; fail on the first difference."""
    rtl = run_rtl(RecordMerge(**params), valid, index, phase, cls, alarm, ready)
    model = RecordMergeModel(**params).run(valid, index, phase, cls, alarm, ready)
    for name in ("valid", *FIELDS, *STATUS):
        want = getattr(model, name)
        diff = np.flatnonzero((rtl[name] != want).reshape(len(want), -1).any(axis=1))
        assert not diff.size, (f"{name} differs first in cycle {diff[0]}: gateware "
                               f"{rtl[name][diff[0]]}, model {want[diff[0]]}")
    return model


def random_slots(rng, n, channels, uis_per_symbol, rate):
    """Random slots, valid with probability ``rate`` per channel and cycle (one column each)."""
    rate = np.broadcast_to(rate, (channels,))
    valid = rng.random((n, channels)) < rate
    index = rng.integers(0, 1 << 63, (n, channels), dtype=np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, (n, channels), dtype=np.uint64)         # all 64 bits
    phase = rng.integers(0, uis_per_symbol, (n, channels))
    cls = rng.integers(0, 3, (n, channels))
    return valid, index, phase, cls


def check_stream(model, ready):
    """A record offered and not taken stays, unchanged, in the next cycle."""
    stalled = np.flatnonzero(model.valid[:-1] & ~np.broadcast_to(ready, len(model.valid))[:-1])
    assert model.valid[stalled + 1].all()
    for name in FIELDS:
        values = getattr(model, name)
        np.testing.assert_array_equal(values[stalled + 1], values[stalled], err_msg=name)


def check_records(model, depth, valid, index, phase, cls, alarm):
    """Every record taken is one of the slots, in slot order per channel, with its fields;
    every slot was taken, dropped, or is still inside (a FIFO or the output register)."""
    alarm = np.broadcast_to(alarm, len(valid))
    # A record taken in cycle c is counted from cycle c + 2.
    taken = np.r_[np.diff(model.records_out.astype(np.int64))[1:] == 1, False, False]
    assert model.valid[taken].all()
    src, ch = model.source[taken], model.channel[taken].astype(np.int64)
    assert valid[src, ch].all()
    np.testing.assert_array_equal(model.index[taken], index[src, ch])
    np.testing.assert_array_equal(model.phase[taken], phase[src, ch])
    np.testing.assert_array_equal(model.cls[taken], cls[src, ch])
    np.testing.assert_array_equal(model.alarm[taken], alarm[src])
    for k in range(valid.shape[1]):
        assert (np.diff(src[ch == k]) > 0).all()
    # The counters seen in the last cycle count up to the cycle before it (`records_out` up
    # to the one before that: a record taken then is neither counted nor inside).
    accepted = valid[:-1].sum() - model.overflows[-1].astype(np.int64).sum()
    inside = accepted - int(model.records_out[-1])
    assert 0 <= inside <= valid.shape[1] * depth + 2


# --- gateware against model ---

@pytest.mark.parametrize(("channels", "uis_per_symbol", "depth", "rate", "ready_rate", "n"), [
    (4, 4, 4, (0.1, 0.3, 0.5, 0.2), 0.7, 10_000),
    (3, 6, 5, 0.45, 0.6, 10_000),
    (1, 1, 1, 0.7, 0.5, 3_000),
    (16, 256, 2, 0.07, 0.9, 3_000),
])
def test_rtl_matches_model(channels, uis_per_symbol, depth, rate, ready_rate, n):
    """Random slots, alarm and backpressure; the FIFOs overflow."""
    rng = np.random.default_rng(channels * 1000 + depth)
    valid, index, phase, cls = random_slots(rng, n, channels, uis_per_symbol, rate)
    alarm = rng.random(n) < 0.2
    ready = rng.random(n) < ready_rate
    ready[n // 2:n // 2 + 200] = False                  # a long stall
    params = {"channels": channels, "uis_per_symbol": uis_per_symbol, "fifo_depth": depth}
    model = run_both(params, valid, index, phase, cls, alarm, ready)
    assert model.overflow[-1] and model.overflows[-1].all()
    assert model.alarm[model.valid].any() and not model.alarm[model.valid].all()
    check_stream(model, ready)
    check_records(model, depth, valid, index, phase, cls, alarm)


def test_all_channels_every_cycle():
    """Every channel valid in every cycle, ready always high: one record leaves per cycle, in
    channel order 0, 1, 2, 3, 0, ..., and the rest overflow. Counted by hand: in cycle 0 every
    FIFO takes a record; from cycle 1 on the arbiter takes one a cycle, channel ``(t - 1) % C``
    in cycle ``t``; a FIFO once full (after ~D * C / (C - 1) cycles) takes one record in the
    cycle after each of its reads and drops the rest, including the record of the read cycle
    itself (full at its start)."""
    channels, depth, n = 4, 16, 10_001
    params = {"channels": channels, "uis_per_symbol": 4, "fifo_depth": depth}
    valid = np.ones((n, channels), bool)
    index = np.arange(n, dtype=np.uint64)[:, None] * np.uint64(16) + np.arange(channels,
                                                                           dtype=np.uint64)
    phase = np.broadcast_to(np.arange(channels) % 4, (n, channels))
    cls = np.full((n, channels), CLASS_MIDDLE)
    model = run_both(params, valid, index, phase, cls)

    # Records offered from cycle 2 on, one a cycle, round robin from channel 0.
    assert not model.valid[:2].any() and model.valid[2:].all()
    np.testing.assert_array_equal(model.channel[2:], np.arange(n - 2) % channels)
    # State after the edge of cycle T (seen in cycle T + 1 = n - 1).
    last = n - 2
    reads = np.array([(last - 1 - k) // channels + 1 for k in range(channels)])
    level = np.full(channels, depth)
    level[(last - 1) % channels] = depth - 1            # read in cycle T, refilled in T + 1
    dropped = (last + 1) - reads - level
    np.testing.assert_array_equal(model.overflows[-1], dropped)
    assert dropped.sum() == (channels - 1) * (last + 1) - channels * depth + 1 + 1
    assert model.overflows[-1].sum() == 29_938
    # Channel 3, read in cycles 4, 8, ..., holds t - (t - 1) // 4 records at the start of
    # cycle t: 16 first in cycle 20, whose record is the first dropped (the others hold 15).
    assert first(model.overflow) == 21
    assert model.overflows[21].tolist() == [0, 0, 0, 1]
    assert model.records_out[-1] == last - 2           # taken in cycles 2..T - 1
    check_records(model, depth, valid, index, phase, cls, False)


def first(flags):
    hits = np.flatnonzero(flags)
    assert hits.size, "never"
    return int(hits[0])


def test_record_fields_and_order():
    """Hand-written slots: the records leave with their fields, in round-robin order."""
    n, channels, S = 12, 3, 8
    valid = np.zeros((n, channels), bool)
    index = np.zeros((n, channels), np.uint64)
    phase = np.zeros((n, channels), np.int64)
    cls = np.zeros((n, channels), np.int64)
    alarm = np.zeros(n, bool)

    def slot(cycle, channel, i, p, c):
        valid[cycle, channel] = True
        index[cycle, channel], phase[cycle, channel], cls[cycle, channel] = i, p, c

    slot(0, 2, 2**64 - 1, S - 1, CLASS_LATE)
    slot(0, 0, 5, 3, CLASS_EARLY)
    slot(1, 1, 2**40 + 7, 0, CLASS_MIDDLE)
    slot(1, 0, 6, 1, CLASS_LATE)
    slot(2, 2, 1, 2, CLASS_EARLY)
    alarm[1] = True
    ready = np.ones(n, bool)
    ready[4] = False                                    # the record of cycle 4 waits a cycle
    model = run_both({"channels": channels, "uis_per_symbol": S}, valid, index, phase, cls,
                     alarm, ready)
    # Grants: cycle 1 ch0 (search from 0), 2 ch1, 3 ch2, 4 stalled, 5 ch0, 6 ch2.
    offered = [(int(c), *(int(getattr(model, f)[c]) for f in FIELDS))
               for c in np.flatnonzero(model.valid)]
    assert offered == [
        (2, 5, 3, 0, CLASS_EARLY, 0),
        (3, 2**40 + 7, 0, 1, CLASS_MIDDLE, 1),
        (4, 2**64 - 1, S - 1, 2, CLASS_LATE, 0),
        (5, 2**64 - 1, S - 1, 2, CLASS_LATE, 0),        # not taken in cycle 4: held
        (6, 6, 1, 0, CLASS_LATE, 1),
        (7, 1, 2, 2, CLASS_EARLY, 0),
    ]
    assert model.records_out[-1] == 5 and not model.overflow.any()


def test_alarm_reaches_the_records():
    """The alarm of the slot's cycle, not of the cycle the record leaves, is in the record."""
    n = 40
    valid = np.zeros((n, 2), bool)
    valid[0:10, 0] = valid[0:10, 1] = True              # 20 records; they leave until cycle 21
    alarm = np.zeros(n, bool)
    alarm[3:6] = True
    phase = np.zeros((n, 2), np.int64)
    index = np.arange(2 * n, dtype=np.uint64).reshape(n, 2)
    model = run_both({"channels": 2, "uis_per_symbol": 2}, valid, index, phase, phase, alarm)
    flagged = model.valid & (model.alarm == 1)
    assert sorted(model.index[flagged].tolist()) == [6, 7, 8, 9, 10, 11]
    assert not alarm[np.flatnonzero(flagged)].any()     # they leave after the alarm fell


def test_channel_field_and_phase_width():
    """16 channels: the 4-bit channel field holds 15; S = 256 fills the 8-bit phase."""
    n, channels = 30, 16
    valid = np.zeros((n, channels), bool)
    valid[0, 15] = True
    index = np.full((n, channels), 9, np.uint64)
    phase = np.full((n, channels), 255)
    cls = np.full((n, channels), CLASS_MIDDLE)
    model = run_both({"channels": channels, "uis_per_symbol": 256}, valid, index, phase, cls)
    c = first(model.valid)
    assert c == RecordMerge.latency
    assert (model.channel[c], model.phase[c], model.index[c]) == (15, 255, 9)


# --- construction ---

@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"channels": 0}, ValueError, "0"),
    ({"channels": 17}, ValueError, "17"),
    ({"channels": 4.0}, TypeError, "4.0"),
    ({"uis_per_symbol": 0}, ValueError, "0"),
    ({"uis_per_symbol": 257}, ValueError, "257"),
    ({"uis_per_symbol": "4"}, TypeError, "'4'"),
    ({"fifo_depth": 0}, ValueError, "0"),
    ({"fifo_depth": MAX_FIFO_DEPTH + 1}, ValueError, str(MAX_FIFO_DEPTH + 1)),
    ({"fifo_depth": None}, TypeError, "None"),
])
def test_bad_construction(kwargs, error, bad, assert_refused):
    args = {"channels": 4, "uis_per_symbol": 4, **kwargs}
    assert_refused(error, f"not {bad}$", lambda: RecordMerge(**args))
    with pytest.raises(error, match=f"not {bad}$"):
        RecordMergeModel(**args)


def test_keyword_only(assert_refused):
    assert_refused(TypeError, "positional", lambda: RecordMerge(4, 4))


def test_model_checks_inputs():
    model = RecordMergeModel(channels=2, uis_per_symbol=4)
    ok = np.zeros((3, 2), np.int64)
    with pytest.raises(ValueError, match="phase must hold integers in 0..3"):
        model.run(ok, ok, ok + 4, ok)
    with pytest.raises(ValueError, match="cls"):
        model.run(ok, ok, ok, ok - 1)
    with pytest.raises(ValueError, match="valid"):
        model.run(ok[:, :1], ok, ok, ok)
    with pytest.raises(ValueError, match="ready"):
        model.run(ok, ok, ok, ok, ready=[1, 0])


def test_converts_to_verilog():
    """A normal (not always-ready) stream and plain ports: the top converts to Verilog."""
    verilog.convert(RecordMerge(channels=3, uis_per_symbol=6, fifo_depth=3))
