"""Tests of the loopback sifter: gateware against its model every output every cycle on
seeded loopback traffic, the model against the whole-array reference, and directed cases
with hand-computed values."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Module, Shape, Signal, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import Out
from timebin.gateware.records import (
    BASIS_X,
    BASIS_Z,
    CLASS_EARLY,
    CLASS_LATE,
    CLASS_MIDDLE,
    INDEX_BITS,
)
from timebin.gateware.sifting import (
    OUTCOME_COUNTERS,
    ROLE_IGNORED,
    ROLE_X_MINUS,
    ROLE_X_PLUS,
    ROLE_Z,
    SIFT_COUNTERS,
    LoopbackSifter,
    SiftedRecord,
    _count,
)
from timebin.sim.amaranth_helpers import run_per_cycle
from timebin.sim.sifting import (
    LoopbackSifterModel,
    compare_sifter,
    run_sifter,
    sift_reference,
    sifter_inputs,
    sifting_stimulus,
)


def run_both(params, stimulus):
    """The gateware and the model on the same inputs; fail on the first difference."""
    model = LoopbackSifterModel(**params).run(**stimulus)
    dut = LoopbackSifter(**params)
    rtl = run_sifter(dut, sifter_inputs(dut, stimulus, model))
    compare_sifter(rtl, model)
    return model


def outcome_sum(out):
    """Per cycle, the sum of every outcome counter's elements."""
    total = np.zeros(len(out.records_in), np.int64)
    for name in OUTCOME_COUNTERS:
        values = getattr(out, name).astype(np.int64)
        total += values.reshape(len(values), -1).sum(axis=1)
    return total


# --- gateware against model on random traffic ---

CONFIGS = {
    "C4-L4-D64": (dict(channels=4, lanes=4, depth_words=64), 3000, 11),
    "C3-L1-D8": (dict(channels=3, lanes=1, depth_words=8), 2000, 12),
    "C16-L16-D16": (dict(channels=16, lanes=16, depth_words=16), 1500, 13),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_rtl_matches_model(config):
    params, n, seed = CONFIGS[config]
    stimulus = sifting_stimulus(params, n, seed)
    out = run_both(params, stimulus)
    # Every record decided is in exactly one outcome, in every cycle (clears included).
    np.testing.assert_array_equal(out.records_in.astype(np.int64), outcome_sum(out))
    # Nothing of the contract went unexercised.
    decided = out.decided_cycle[out.decided_cycle >= 0]
    assert len(decided) > n // 4
    totals = {name: 0 for name in SIFT_COUNTERS}
    clears = np.flatnonzero(stimulus["clear"])
    for end in (*clears, n - 1):                # each window's last counts before its clear
        for name in totals:
            totals[name] += int(getattr(out, name)[end].sum())
    for name in SIFT_COUNTERS:
        assert totals[name] > 0, name
    assert (~out.records_ready).sum() > 10      # back-pressure reached the records
    assert len(out.taken["index"]) > 50
    # The windows between the clears add up to the records decided.
    assert totals["records_in"] == int((decided < n - 1).sum())


def test_model_agrees_with_reference():
    """Traffic where every symbol is held: the cycle model gives sift_reference's sifted
    records and counters."""
    params = dict(channels=3, lanes=4, depth_words=64)
    n = 3000
    stimulus = sifting_stimulus(params, n, 21, clean=True)
    stimulus["sifted_ready"][-20:] = True
    out = LoopbackSifterModel(**params).run(**stimulus)
    assert (out.decided_cycle >= 0).all() and out.decided_cycle.max() < n - 1
    assert out.unavailable[-1] == 0
    log_valid, L = stimulus["log_valid"], params["lanes"]
    index = stimulus["log_index"][log_valid]
    assert (index == np.arange(len(index)) * L).all()          # no gaps, from symbol 0
    symbols = {name: stimulus["log_fields"][name][log_valid].reshape(-1)
               for name in ("basis", "bit", "intensity", "valid")}
    sifted, counts = sift_reference(symbols, stimulus["records"], stimulus["roles"][0])
    for name, want in counts.items():
        np.testing.assert_array_equal(getattr(out, name)[-1], want, err_msg=name)
    assert not out.sifted_valid[-1]
    for name, want in sifted.items():
        np.testing.assert_array_equal(out.taken[name], want, err_msg=name)
    assert counts["errors"].sum() > 0 and counts["basis_mismatch"].sum() > 0
    assert counts["not_valid"] > 0 and counts["unclassified"] > 0


def test_reference_by_hand():
    """sift_reference on four symbols (Z0 i1, X+ i0, X- i2, Z1 not valid)."""
    symbols = {"basis": [0, 1, 1, 0], "bit": [0, 0, 1, 1], "intensity": [1, 0, 2, 3],
               "valid": [1, 1, 1, 0]}
    records = {"index": [0, 1, 2, 3, 4, 0, 1],
               "channel": [0, 2, 2, 0, 0, 1, 3],
               "cls": [CLASS_LATE, CLASS_MIDDLE, CLASS_MIDDLE, CLASS_EARLY, CLASS_EARLY,
                       CLASS_MIDDLE, CLASS_MIDDLE],
               "alarm": [1, 0, 0, 0, 0, 0, 0]}
    sifted, counts = sift_reference(symbols, records, [ROLE_Z, ROLE_X_PLUS, ROLE_X_MINUS])
    assert {name: values.tolist() for name, values in sifted.items()} == {
        "index": [0, 1, 2], "basis": [0, 1, 1], "intensity": [1, 0, 2],
        "alice_bit": [0, 0, 1], "bob_bit": [1, 1, 1], "alarm": [1, 0, 0]}
    assert {name: np.asarray(value).tolist() for name, value in counts.items()} == {
        "records_in": 7, "ignored": 1, "unclassified": 0, "unavailable": 1, "not_valid": 1,
        "basis_mismatch": [1, 0], "sifted": [0, 1, 0, 0, 1, 0, 1, 0],
        "errors": [0, 1, 0, 0, 1, 0, 0, 0]}


# --- directed: hand-computed values ---

L, D = 4, 16                                    # the memory's sweep takes cycles 0..15
C = 4
#: Channel 0: Z; 1: X at the + port; 2: X at the - port; 3: ignored.
ROLES = [ROLE_Z, ROLE_X_PLUS, ROLE_X_MINUS, ROLE_IGNORED]


def directed(n, log=(), records=(), sifted_ready=True, clear=(), roles=ROLES):
    """Stimulus of ``n`` cycles. ``log``: ``(cycle, word, symbols)`` with ``symbols`` L tuples
    ``(basis, bit, intensity, valid)``. ``records``: ``(arrival, index, channel, cls,
    alarm)``."""
    log_valid = np.zeros(n, bool)
    log_index = np.zeros(n, np.uint64)
    fields = {name: np.zeros((n, L), np.uint8) for name in ("basis", "bit", "intensity",
                                                           "valid")}
    for cycle, word, symbols in log:
        log_valid[cycle], log_index[cycle] = True, word * L
        for lane, values in enumerate(symbols):
            for name, value in zip(fields, values, strict=True):
                fields[name][cycle, lane] = value
    columns = list(zip(*records, strict=True)) if records else [()] * 5
    arrival, index, channel, cls, alarm = (np.array(col, np.uint64) for col in columns)
    ready = np.broadcast_to(np.asarray(sifted_ready, bool), (n,)).copy()
    strobe = np.zeros(n, bool)
    strobe[list(clear)] = True
    return dict(log_valid=log_valid, log_index=log_index, log_fields=fields,
                records={"index": index, "channel": channel, "cls": cls, "alarm": alarm},
                arrival=arrival.astype(np.int64), roles=np.array(roles), clear=strobe,
                sifted_ready=ready)


def element(basis, intensity):
    return basis * 4 + intensity


#: Word 5 (symbols 20..23), logged in cycle 20: Z0 i1, X+ i0, X- i2, Z1 i3 not valid.
WORD5 = [(BASIS_Z, 0, 1, 1), (BASIS_X, 0, 0, 1), (BASIS_X, 1, 2, 1), (BASIS_Z, 1, 3, 0)]


def counters_at(out, cycle):
    return {name: getattr(out, name)[cycle].tolist() for name in SIFT_COUNTERS}


def zero_counters(**given):
    out = {name: [0] * elements if elements else 0 for name, elements in
           SIFT_COUNTERS.items()}
    for name, value in given.items():
        out[name] = value
    return out


def with_element(name_elements, k, value=1):
    values = [0] * name_elements
    values[k] = value
    return values


def test_z0_detected_late_is_an_error_with_exact_latency():
    """Symbol 20 (Z0, intensity 1) clicks late on the Z channel, record taken in cycle 22:
    decided in 24, sifted record offered and counted from cycle 25."""
    stimulus = directed(40, log=[(20, 5, WORD5)], records=[(22, 20, 0, CLASS_LATE, 1)])
    out = run_both(dict(channels=C, lanes=L, depth_words=D), stimulus)
    assert out.taken_cycle.tolist() == [22] and out.decided_cycle.tolist() == [24]
    assert list(np.flatnonzero(out.sifted_valid)) == [25]
    assert {name: int(values[25]) for name, values in out.sifted_records.items()} == {
        "index": 20, "basis": BASIS_Z, "intensity": 1, "alice_bit": 0, "bob_bit": 1,
        "alarm": 1}
    assert counters_at(out, 24) == zero_counters()
    k = element(BASIS_Z, 1)
    assert counters_at(out, 25) == zero_counters(records_in=1, sifted=with_element(8, k),
                                                 errors=with_element(8, k))
    assert out.records_ready.all()


def test_x_detections_by_port():
    """X+ (symbol 21) at the - port is an error, at the + port correct; 4-state X- (symbol
    22) at the - port is correct, at the + port an error."""
    records = [(22, 21, 2, CLASS_MIDDLE, 0), (23, 21, 1, CLASS_MIDDLE, 0),
               (24, 22, 2, CLASS_MIDDLE, 0), (25, 22, 1, CLASS_MIDDLE, 0)]
    out = run_both(dict(channels=C, lanes=L, depth_words=D),
                   directed(40, log=[(20, 5, WORD5)], records=records))
    plus, minus = element(BASIS_X, 0), element(BASIS_X, 2)
    sifted = [0] * 8
    sifted[plus] = sifted[minus] = 2
    errors = [0] * 8
    errors[plus] = errors[minus] = 1
    assert counters_at(out, 28) == zero_counters(records_in=4, sifted=sifted, errors=errors)
    assert out.taken["alice_bit"].tolist() == [0, 0, 1, 1]
    assert out.taken["bob_bit"].tolist() == [1, 0, 1, 0]
    assert out.taken["cycle"].tolist() == [25, 26, 27, 28]


def test_every_outcome():
    """One record of each outcome, in consecutive cycles."""
    records = [
        (22, 20, 1, CLASS_MIDDLE, 0),    # Alice Z, Bob X: basis mismatch (Z)
        (22, 21, 0, CLASS_EARLY, 0),     # Alice X, Bob Z: basis mismatch (X)
        (22, 23, 0, CLASS_LATE, 0),      # Alice's symbol not valid
        (22, 24, 0, CLASS_EARLY, 0),     # word 6: not yet written
        (22, 4, 0, CLASS_EARLY, 0),      # word 1: written in cycle 4, during the sweep
        (22, 20, 0, CLASS_MIDDLE, 0),    # middle on a Z channel: unclassified
        (22, 21, 2, CLASS_LATE, 0),      # late on an X channel: unclassified
        (22, 21, 3, CLASS_MIDDLE, 0),    # ignored channel
        (22, 21, 9, CLASS_MIDDLE, 0),    # channel beyond the four: ignored
        (22, 20, 0, CLASS_EARLY, 0),     # Z0 early: sifted, correct
    ]
    stimulus = directed(50, log=[(4, 1, WORD5), (20, 5, WORD5)], records=records)
    out = run_both(dict(channels=C, lanes=L, depth_words=D), stimulus)
    assert out.taken_cycle.tolist() == list(range(22, 32))
    assert out.decided_cycle.tolist() == list(range(24, 34))
    assert counters_at(out, 34) == zero_counters(
        records_in=10, ignored=2, unclassified=2, unavailable=2, not_valid=1,
        basis_mismatch=[1, 1], sifted=with_element(8, element(BASIS_Z, 1)))
    assert out.taken["index"].tolist() == [20] and out.taken["cycle"].tolist() == [34]
    assert out.log_written[-1] == 1 and out.log_missed[-1] == 1
    assert list(np.flatnonzero(out.memory_clearing)) == list(range(D))


def test_roles_of_the_cycle_taken():
    """Channel 0 turns from Z into X- in cycle 23: the record taken in 22 reads Z, the one
    taken in 23 reads X."""
    roles = np.tile(ROLES, (40, 1))
    roles[23:, 0] = ROLE_X_MINUS
    stimulus = directed(40, log=[(20, 5, WORD5)],
                        records=[(22, 20, 0, CLASS_EARLY, 0), (23, 22, 0, CLASS_MIDDLE, 0)])
    stimulus["roles"] = roles
    out = run_both(dict(channels=C, lanes=L, depth_words=D), stimulus)
    assert out.taken["basis"].tolist() == [BASIS_Z, BASIS_X]
    assert out.errors[-1].sum() == 0 and out.sifted[-1].sum() == 2


def test_clear_window():
    """Records decided in cycles 24, 25, 26; clear in 25: from cycle 26 the counters hold
    the records decided in 25 and later, and in 27 both of them."""
    records = [(22, 20, 0, CLASS_EARLY, 0), (23, 20, 0, CLASS_LATE, 0),
               (24, 24, 0, CLASS_EARLY, 0)]
    stimulus = directed(40, log=[(20, 5, WORD5)], records=records, clear=[25])
    out = run_both(dict(channels=C, lanes=L, depth_words=D), stimulus)
    assert out.decided_cycle.tolist() == [24, 25, 26]
    k = element(BASIS_Z, 1)
    assert counters_at(out, 25) == zero_counters(records_in=1, sifted=with_element(8, k))
    assert counters_at(out, 26) == zero_counters(records_in=1, sifted=with_element(8, k),
                                                 errors=with_element(8, k))
    assert counters_at(out, 27) == zero_counters(records_in=2, unavailable=1,
                                                 sifted=with_element(8, k),
                                                 errors=with_element(8, k))
    # The sifted records are not cleared: both leave.
    assert out.taken["bob_bit"].tolist() == [0, 1]


def test_backpressure_stalls_only_sifted_records():
    """``sifted_records.ready`` low in cycles 25..31. The first sifted record (decided in 24)
    fills the output register in 25; the ignored record decided in 25 passes; the second
    sifted record is due in 26 and waits, stalling the records until 32, when the register
    is taken. Nothing is lost or reordered."""
    ready = np.ones(50, bool)
    ready[25:32] = False
    records = [(22, 20, 0, CLASS_EARLY, 0), (22, 20, 3, CLASS_EARLY, 0),
               (22, 21, 1, CLASS_MIDDLE, 0), (22, 22, 2, CLASS_MIDDLE, 0),
               (22, 23, 0, CLASS_EARLY, 0), (22, 20, 0, CLASS_LATE, 0)]
    stimulus = directed(50, log=[(20, 5, WORD5)], records=records, sifted_ready=ready)
    out = run_both(dict(channels=C, lanes=L, depth_words=D), stimulus)
    assert list(np.flatnonzero(~out.records_ready)) == list(range(26, 32))
    assert out.taken_cycle.tolist() == [22, 23, 24, 25, 32, 33]
    assert out.decided_cycle.tolist() == [24, 25, 32, 33, 34, 35]
    assert out.taken["cycle"].tolist() == [32, 33, 34, 36]
    assert out.taken["index"].tolist() == [20, 21, 22, 20]
    assert out.sifted_valid[25:32].all()
    assert out.records_in[-1] == 6 and out.not_valid[-1] == 1 and out.ignored[-1] == 1


def test_counter_saturates_and_clears():
    """The sifter's counter rule on a 2-bit counter: it sticks at 3; a clear cycle restarts
    it from its own event (2**32 events are out of reach of a simulation)."""
    m = Module()
    counter, event, clear = Signal(2), Signal(), Signal()
    _count(m, counter, event, clear)
    events = [1, 1, 1, 1, 1, 0, 1, 1, 0, 1]
    clears = [0, 0, 0, 0, 0, 1, 0, 1, 1, 0]
    got = run_per_cycle(m, [(event, events), (clear, clears)], {"counter": counter},
                        len(events))["counter"]
    assert got == [0, 1, 2, 3, 3, 3, 0, 1, 1, 0]


# --- construction and checks ---

@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"channels": 0}, ValueError, "0"),
    ({"channels": 17}, ValueError, "17"),
    ({"channels": 2.0}, TypeError, "2.0"),
    ({"channels": True}, TypeError, "True"),
    ({"lanes": 3}, ValueError, "3"),
    ({"lanes": None}, TypeError, "None"),
    ({"depth_words": 24}, ValueError, "24"),
    ({"depth_words": 1}, ValueError, "1"),
])
def test_bad_construction(kwargs, error, bad, assert_refused):
    args = {"channels": 4, "lanes": 4, "depth_words": 16, **kwargs}
    assert_refused(error, f"not {bad}$", lambda: LoopbackSifter(**args))
    with pytest.raises(error, match=f"not {bad}$"):
        LoopbackSifterModel(**args)


def test_keyword_only(assert_refused):
    assert_refused(TypeError, "positional", lambda: LoopbackSifter(4, 4, 16))


def test_model_checks_inputs():
    model = LoopbackSifterModel(channels=2, lanes=2, depth_words=4)
    zeros = np.zeros(3, np.int64)
    log = {"bit": np.zeros((3, 2), np.int64)}
    records = {"index": np.zeros(2, np.uint64)}
    with pytest.raises(ValueError, match="log_valid must hold integers in 0..1"):
        model.run(zeros + 2, zeros, log, records)
    with pytest.raises(ValueError, match=r"roles must have shape \(2,\) or \(3, 2\)"):
        model.run(zeros, zeros, log, records, roles=[0, 1, 2])
    with pytest.raises(ValueError, match="roles must hold integers in 0..3, not 0..4"):
        model.run(zeros, zeros, log, records, roles=[0, 4])
    with pytest.raises(ValueError, match=r"records\['cls'\] must hold integers in 0..3"):
        model.run(zeros, zeros, log, {"index": [1], "cls": [4]})
    with pytest.raises(ValueError, match="records has no field 'basis'"):
        model.run(zeros, zeros, log, {"index": [1], "basis": [0]})
    with pytest.raises(ValueError, match="arrival must hold non-decreasing cycles"):
        model.run(zeros, zeros, log, records, arrival=[2, 1])
    with pytest.raises(ValueError, match=r"log_fields\['intensity'\] must hold integers"):
        model.run(zeros, zeros, {"intensity": np.full((3, 2), 4)}, records)


def test_ports_for_the_register_map():
    dut = LoopbackSifter(channels=3, lanes=16, depth_words=64)
    members = dut.signature.members
    assert members["roles"].shape == data.ArrayLayout(2, 3)
    assert members["roles"].init == [ROLE_IGNORED] * 3
    for name, elements in SIFT_COUNTERS.items():
        want = data.ArrayLayout(32, elements) if elements else unsigned(32)
        assert Shape.cast(members[name].shape) == Shape.cast(want), name
        assert members[name].flow == Out
    assert Shape.cast(members["log_written"].shape) == unsigned(64)
    Fragment.get(dut, None)
    assert SiftedRecord.size == INDEX_BITS + 6


def test_ecp5_size_elaborates():
    """16 lanes, 2**14 words: the block-RAM size of SymbolMemory's docstring."""
    Fragment.get(LoopbackSifter(channels=4, lanes=16, depth_words=1 << 14), None)


def test_converts_to_verilog():
    verilog.convert(LoopbackSifter(channels=4, lanes=16, depth_words=64))
    verilog.convert(LoopbackSifter(channels=1, lanes=1, depth_words=2))
