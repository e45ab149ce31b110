"""Tests of Alice's symbol memory: gateware against its model on random logs with gaps and
lookups of every kind, a scoreboard of the contract, and directed cases."""

from collections import deque

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment
from timebin.gateware.records import INDEX_BITS
from timebin.gateware.tx.symbol_memory import LookupResult, SymbolMemory
from timebin.sim.amaranth_helpers import run_per_cycle
from timebin.sim.tx.symbol_memory import SymbolMemoryModel
from timebin.sim.words import pack_symbol_words

FIELDS = ("basis", "bit", "intensity", "valid")
OUTPUTS = ("result_valid", "index", *FIELDS, "available", "lookup_ready", "clearing",
           "lookups", "unavailable", "written", "missed")
COUNTERS = ("lookups", "unavailable", "written", "missed")


def run_rtl(dut, log_valid, log_index, log_fields, lookup_valid, lookup_index,
            result_ready, *, reset_at=None):
    """Simulate ``dut`` from reset with the (N,) inputs of :meth:`SymbolMemoryModel.run`.
    Returns ``{name: (N,) array}`` named as the fields of ``SymbolMemoryOutput``, plus
    ``log_ready``."""
    n = len(log_valid)
    words = pack_symbol_words(dut.lanes, log_fields, log_index)
    inputs = [
        (dut.log.valid, [int(x) for x in log_valid]),
        (dut.log.payload, words),
        (dut.lookup.valid, [int(x) for x in lookup_valid]),
        (dut.lookup.payload, [int(x) for x in lookup_index]),
        (dut.result.ready, [int(x) for x in result_ready]),
    ]
    outputs = {"result_valid": dut.result.valid, "payload": dut.result.payload,
               "lookup_ready": dut.lookup.ready, "log_ready": dut.log.ready,
               "clearing": dut.clearing, **{name: getattr(dut, name) for name in COUNTERS}}
    got = run_per_cycle(dut, inputs, outputs, n, reset_at=reset_at)
    out = {name: np.array(values, np.uint64) for name, values in got.items()
           if name != "payload"}
    payload = got["payload"]
    for name, field in LookupResult:
        top = (1 << field.width) - 1
        out[name] = np.array([(p >> field.offset) & top for p in payload], np.uint64)
    return out


def run_both(lanes, depth_words, *stimulus):
    """The gateware and the model on the same inputs; fail on the first difference."""
    model = SymbolMemoryModel(lanes=lanes, depth_words=depth_words).run(*stimulus)
    rtl = run_rtl(SymbolMemory(lanes=lanes, depth_words=depth_words), *stimulus)
    assert (rtl["log_ready"] == 1).all()
    for name in OUTPUTS:
        want = np.asarray(getattr(model, name)).astype(np.uint64)
        diff = np.flatnonzero(rtl[name] != want)
        assert not diff.size, (f"{name} differs first in cycle {diff[0]}: gateware "
                               f"{rtl[name][diff[0]]}, model {want[diff[0]]}")
    return model


def symbol_fields(index):
    """Fields of symbol ``index`` (an array) in the directed tests: its low bits."""
    index = np.asarray(index, np.int64)
    return {"basis": index & 1, "bit": (index >> 1) & 1, "intensity": (index >> 2) & 3,
            "valid": (index >> 4) & 1, "dark": (index >> 5) & 1}


def directed(lanes, n, log=(), lookups=(), result_ready=True):
    """Stimulus of ``n`` cycles: ``log`` ``(cycle, word index)`` pairs (symbol fields from
    :func:`symbol_fields`), ``lookups`` ``(cycle, symbol index)`` pairs."""
    log_valid = np.zeros(n, bool)
    log_word = np.zeros(n, np.int64)
    for cycle, word in log:
        log_valid[cycle], log_word[cycle] = True, word
    symbols = log_word[:, None] * lanes + np.arange(lanes)
    log_fields = {name: values.astype(np.uint8)
                  for name, values in symbol_fields(symbols).items()}
    lookup_valid = np.zeros(n, bool)
    lookup_index = np.zeros(n, np.uint64)
    for cycle, index in lookups:
        lookup_valid[cycle], lookup_index[cycle] = True, index
    ready = np.broadcast_to(np.asarray(result_ready, bool), (n,)).copy()
    return (log_valid, (log_word * lanes).astype(np.uint64), log_fields, lookup_valid,
            lookup_index, ready)


def answer(out, cycle):
    """The result offered in ``cycle`` as ``(index, available, {field: value})``."""
    assert out.result_valid[cycle]
    return (int(out.index[cycle]), int(out.available[cycle]),
            {name: int(getattr(out, name)[cycle]) for name in FIELDS})


def expected(index):
    fields = symbol_fields(index)
    return {name: int(fields[name]) for name in FIELDS}


NONE = dict.fromkeys(FIELDS, 0)


# --- gateware against model, and the contract on random stimulus ---

def random_stimulus(rng, n, lanes, depth):
    """Log words in bursts with gaps (some longer than the buffer) from cycle 0 (the sweep
    misses some), and lookups of recent, same-cycle, overwritten, future, dropped and
    arbitrary indexes under random back-pressure."""
    log_valid = rng.random(n) < 0.7
    for start in rng.choice(n - 50, 6, replace=False):
        log_valid[start:start + int(rng.integers(10, 50))] = False
    log_word = np.zeros(n, np.int64)
    last = np.full(n, -1, np.int64)              # last word logged up to this cycle
    dropped = []
    word = 0
    for c in range(n):
        if log_valid[c]:
            if rng.random() < 0.04:
                gap = int(rng.integers(1, 3 * depth))
                dropped.extend(range(word, word + min(gap, 4)))
                word += gap
            log_word[c] = word
            word += 1
        last[c] = word - 1
    log_index = log_word * lanes
    odd = rng.random(n) < 0.05                   # low bits the memory ignores
    log_index[odd] += rng.integers(0, lanes, odd.sum())
    log_fields = {"basis": rng.integers(0, 2, (n, lanes)), "bit": rng.integers(0, 2, (n, lanes)),
                  "intensity": rng.integers(0, 4, (n, lanes)),
                  "valid": rng.integers(0, 2, (n, lanes)), "dark": rng.integers(0, 2, (n, lanes))}

    kind = rng.integers(0, 8, n)
    wanted = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3, kind == 4],
        [last - rng.integers(0, depth, n),                        # recent
         np.where(log_valid, log_word, last),                     # logged in this cycle
         last - rng.integers(depth, 4 * depth, n),                # overwritten
         last + rng.integers(1, 2 * depth, n),                    # not yet written
         rng.choice(dropped, n) if dropped else last],            # dropped
        last - rng.integers(0, 2, n))                             # just written
    wanted = np.maximum(wanted, 0).astype(np.uint64)
    lookup_index = wanted * np.uint64(lanes) + rng.integers(0, lanes, n).astype(np.uint64)
    # Recent words with a wrong high tag bit, and arbitrary 64-bit indexes.
    high = kind == 6
    lookup_index[high] |= np.uint64(1) << rng.integers(
        lanes.bit_length() - 1 + depth.bit_length() - 1, INDEX_BITS, high.sum()).astype(np.uint64)
    wild = (kind == 7) & (rng.random(n) < 0.3)
    lookup_index[wild] = rng.integers(0, 1 << 63, wild.sum(), dtype=np.uint64) * np.uint64(2)
    lookup_valid = rng.random(n) < 0.8
    result_ready = rng.random(n) < 0.75
    for start in rng.choice(n - 40, 8, replace=False):
        result_ready[start:start + int(rng.integers(3, 30))] = False
    return log_valid, log_index.astype(np.uint64), log_fields, lookup_valid, lookup_index, \
        result_ready


def scoreboard(lanes, depth, stimulus, out):
    """Check every result against the contract, taken with a dict of the words logged: a
    lookup taken in cycle t sees the writes of cycles up to t after the sweep. Returns
    counts of the answers by kind."""
    log_valid, log_index, log_fields, lookup_valid, lookup_index, result_ready = stimulus
    n = len(log_valid)
    np.testing.assert_array_equal(out.clearing, np.arange(n) < depth)
    slots = {}
    pending = deque()
    seen = {"hit": 0, "forwarded": 0, "unavailable": 0}
    for c in range(n):
        if out.result_valid[c] and result_ready[c]:
            want_index, want_available, want_fields = pending.popleft()
            assert answer(out, c) == (want_index, want_available, want_fields), c
        if log_valid[c] and c >= depth:
            word = int(log_index[c]) // lanes
            slots[word % depth] = (word, c, {name: log_fields[name][c] for name in FIELDS})
        if lookup_valid[c] and out.lookup_ready[c]:
            index = int(lookup_index[c])
            word, lane = divmod(index, lanes)
            held = slots.get(word % depth)
            if c >= depth and held is not None and held[0] == word:
                pending.append((index, 1, {name: int(held[2][name][lane]) for name in FIELDS}))
                seen["hit"] += 1
                seen["forwarded"] += held[1] == c
            else:
                pending.append((index, 0, NONE))
                seen["unavailable"] += 1
    assert len(pending) <= 2                     # only the results still in the pipeline
    assert out.lookups[-1] == (lookup_valid & out.lookup_ready)[:-1].sum()
    assert out.written[-1] == (log_valid[depth:-1]).sum()
    assert out.missed[-1] == log_valid[:depth].sum()
    return seen


@pytest.mark.parametrize(("lanes", "depth", "n"), [(16, 64, 3_000), (4, 16, 4_000)])
def test_rtl_matches_model(lanes, depth, n):
    rng = np.random.default_rng(lanes * 1000 + depth)
    stimulus = random_stimulus(rng, n, lanes, depth)
    out = run_both(lanes, depth, *stimulus)
    seen = scoreboard(lanes, depth, stimulus, out)
    assert seen["hit"] > n // 5 and seen["unavailable"] > n // 5 and seen["forwarded"] > 20
    assert (~out.lookup_ready).sum() > n // 10   # back-pressure was exercised
    assert out.missed[-1] > 0


# --- directed ---

L, D = 4, 16                                     # the sweep takes cycles 0..15


def test_hit_exact_values_and_latency():
    """Word 5 logged in cycle 20; symbol 23 looked up in cycle 22 is offered in cycle 24."""
    stimulus = directed(L, 40, log=[(20, 5)], lookups=[(22, 23)])
    out = run_both(L, D, *stimulus)
    assert list(np.flatnonzero(out.result_valid)) == [24]
    assert answer(out, 24) == (23, 1, expected(23))
    assert expected(23) != NONE
    assert out.lookups[23] == 1 and out.lookups[22] == 0
    assert out.unavailable[-1] == 0 and out.written[-1] == 1


def test_not_yet_written_then_same_cycle_then_after():
    """Lookups of symbol 21 the cycle before word 5 is logged, in its cycle (forwarded) and
    the cycle after."""
    stimulus = directed(L, 40, log=[(20, 5)], lookups=[(19, 21), (20, 21), (21, 21)])
    out = run_both(L, D, *stimulus)
    assert [answer(out, c) for c in (21, 22, 23)] == [
        (21, 0, NONE), (21, 1, expected(21)), (21, 1, expected(21))]
    assert out.unavailable[21] == 1 and out.unavailable[20] == 0


def test_too_old():
    """Words 0..16 logged: word 0's slot holds word 16; word 1 is the oldest held."""
    log = [(16 + w, w) for w in range(D + 1)]
    stimulus = directed(L, 50, log=log, lookups=[(40, 2), (41, 4 + 3), (42, D * L + 1)])
    out = run_both(L, D, *stimulus)
    assert [answer(out, c) for c in (42, 43, 44)] == [
        (2, 0, NONE), (7, 1, expected(7)), (D * L + 1, 1, expected(D * L + 1))]


def test_dropped_word():
    """Words 0..2D-1 logged but D+3 dropped: D+3 reads unavailable (its slot holds word 3,
    tag mismatch); word 3 is still held and right; word 2 is overwritten."""
    log = [(16 + w, w) for w in range(2 * D) if w != D + 3]
    lookups = [(60, (D + 3) * L + 2), (61, 3 * L + 2), (62, 2 * L + 2)]
    out = run_both(L, D, *directed(L, 70, log=log, lookups=lookups))
    assert [answer(out, c) for c in (62, 63, 64)] == [
        ((D + 3) * L + 2, 0, NONE), (3 * L + 2, 1, expected(3 * L + 2)), (2 * L + 2, 0, NONE)]
    assert out.unavailable[-1] == 2


def test_wrong_high_bits_unavailable():
    """A held word's address and lane but a high index bit set: the tag does not match."""
    far = (1 << 63) | (5 * L + 1)
    out = run_both(L, D, *directed(L, 40, log=[(20, 5)], lookups=[(25, far), (26, 5 * L + 1)]))
    assert answer(out, 27) == (far, 0, NONE)
    assert answer(out, 28) == (5 * L + 1, 1, expected(5 * L + 1))


def test_sweep_misses_log_and_lookups():
    """The sweep after reset: log words in cycles 0..D-1 are missed, and lookups taken then
    are unavailable even of those words."""
    stimulus = directed(L, 30, log=[(3, 1), (D - 1, 2), (D, 3)],
                        lookups=[(4, 5), (D - 1, 9), (D, 13), (D + 1, 5)])
    out = run_both(L, D, *stimulus)
    assert list(np.flatnonzero(out.clearing)) == list(range(D))
    assert out.missed[-1] == 2 and out.written[-1] == 1
    assert answer(out, 6) == (5, 0, NONE)
    assert answer(out, D + 1) == (9, 0, NONE)
    assert answer(out, D + 2) == (13, 1, expected(13))
    assert answer(out, D + 3) == (5, 0, NONE)


def test_backpressure_holds_results_in_order():
    """Symbols 0..9 looked up from cycle 20, each offered until taken; result.ready low in
    cycles 24..27: lookup.ready falls with the held result, nothing is lost or reordered."""
    ready = np.ones(50, bool)
    ready[24:28] = False
    log = [(16 + w, w) for w in range(8)]
    offered = [0, 1, 2, 3, 4, 4, 4, 4, 4, 5, 6, 7, 8, 9]   # symbol 4 waits out the stall
    lookups = [(20 + i, index) for i, index in enumerate(offered)]
    stimulus = directed(L, 50, log=log, lookups=lookups, result_ready=ready)
    out = run_both(L, D, *stimulus)
    np.testing.assert_array_equal(out.lookup_ready,
                                  ~(out.result_valid.astype(bool) & ~ready))
    assert list(np.flatnonzero(~out.lookup_ready)) == [24, 25, 26, 27]
    taken = [c for c in range(50) if out.result_valid[c] and ready[c]]
    assert [answer(out, c)[0] for c in taken] == list(range(10))
    assert all(answer(out, c)[1] == 1 for c in taken)
    assert answer(out, 24) == answer(out, 27)   # held while stalled
    assert out.lookups[-1] == 10


def test_reset_forgets_stale_words():
    """Words 0..7 logged, then a reset in cycle 30 and the indexes start again with word 3
    dropped: the sweep empties the memory, so word 3 from before the reset is not read; nor
    is word 7 by a lookup during the sweep, before the sweep reaches its slot (cycle 38)."""
    n = 80
    log = [(16 + w, w) for w in range(8)] + [(50 + w, w) for w in range(8) if w != 3]
    lookups = [(25, 13), (32, 29), (60, 13), (61, 9)]
    stimulus = directed(L, n, log=log, lookups=lookups)
    dut = SymbolMemory(lanes=L, depth_words=D)
    rtl = run_rtl(dut, *stimulus, reset_at=30)
    assert list(np.flatnonzero(rtl["clearing"])) == [*range(D), *range(31, 31 + D)]
    assert list(np.flatnonzero(rtl["result_valid"])) == [27, 34, 62, 63]
    assert [int(rtl["available"][c]) for c in (27, 34, 62, 63)] == [1, 0, 0, 1]
    assert rtl["index"][62] == 13 and rtl["basis"][62] == rtl["intensity"][62] == 0
    assert rtl["written"][-1] == 7


# --- construction and checks ---

@pytest.mark.parametrize(("kwargs", "error", "bad"), [
    ({"lanes": 0}, ValueError, "0"),
    ({"lanes": 3}, ValueError, "3"),
    ({"lanes": 512}, ValueError, "512"),
    ({"lanes": 2.0}, TypeError, "2.0"),
    ({"lanes": True}, TypeError, "True"),
    ({"depth_words": 1}, ValueError, "1"),
    ({"depth_words": 48}, ValueError, "48"),
    ({"depth_words": 1 << 25}, ValueError, str(1 << 25)),
    ({"depth_words": None}, TypeError, "None"),
])
def test_bad_construction(kwargs, error, bad, assert_refused):
    args = {"lanes": 4, "depth_words": 16, **kwargs}
    assert_refused(error, f"not {bad}$", lambda: SymbolMemory(**args))
    with pytest.raises(error, match=f"not {bad}$"):
        SymbolMemoryModel(**args)


def test_errors_name_the_rule():
    with pytest.raises(ValueError, match="Lane count must be a power of two, not 6$"):
        SymbolMemoryModel(lanes=6, depth_words=16)
    with pytest.raises(ValueError, match="Depth in words must be a power of two, not 24$"):
        SymbolMemoryModel(lanes=4, depth_words=24)


def test_keyword_only(assert_refused):
    assert_refused(TypeError, "positional", lambda: SymbolMemory(4, 16))


def test_model_checks_inputs():
    model = SymbolMemoryModel(lanes=2, depth_words=4)
    zeros = np.zeros(3, np.int64)
    ok = {"bit": np.zeros((3, 2), np.int64)}
    with pytest.raises(ValueError, match="log_valid must hold integers in 0..1"):
        model.run(zeros + 2, zeros, ok, zeros, zeros)
    with pytest.raises(ValueError, match="lookup_index must be a scalar or 3 values"):
        model.run(zeros, zeros, ok, zeros, [0, 1])
    with pytest.raises(ValueError, match=r"log_fields\['intensity'\] must hold integers"):
        model.run(zeros, zeros, {"intensity": np.full((3, 2), 4)}, zeros, zeros)
    with pytest.raises(ValueError, match=r"must have shape \(3, 2\)"):
        model.run(zeros, zeros, {"bit": np.zeros((3, 3))}, zeros, zeros)
    with pytest.raises(ValueError, match="no field 'phase'"):
        model.run(zeros, zeros, {"phase": np.zeros((3, 2))}, zeros, zeros)


def test_sizes_of_the_docstring():
    """16 lanes, 2**14 words: 127-bit entries (present, 46-bit tag, 16 x 5 bits)."""
    dut = SymbolMemory(lanes=16, depth_words=1 << 14)
    assert dut.tag_bits == 46 and dut.entry.size == 127
    assert dut.memory_bits == 127 << 14
    Fragment.get(dut, None)                      # elaborates at this depth


def test_converts_to_verilog():
    verilog.convert(SymbolMemory(lanes=16, depth_words=64))
    verilog.convert(SymbolMemory(lanes=1, depth_words=2))
