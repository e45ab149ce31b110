"""Host sifting (timebin.host.distill.sift): identical to the reference
(timebin.sim.sifting.sift_reference) on random traffic, whatever form Alice's symbols take
and however the records are cut into blocks."""

import subprocess
import sys

import numpy as np
import pytest
import timebin.gateware.sifting as gateware_sifting
from timebin.host.distill.sift import (
    COUNTERS,
    ROLE_IGNORED,
    ROLE_X_MINUS,
    ROLE_X_PLUS,
    ROLE_Z,
    ROLES,
    SIFTED_FIELDS,
    Sifter,
    bench_sift,
    estimate_counts,
    sift,
)
from timebin.sim.sifting import sift_reference, sifting_stimulus

SYMBOL_FIELDS = ("basis", "bit", "intensity", "valid")


def random_traffic(rng, symbols, records, channels):
    """Dense symbols (index = position) and records of any index up to a bit beyond them,
    any channel (some without a role) and class, and roles of every kind."""
    alice = {"basis": rng.integers(0, 2, symbols, dtype=np.uint8),
             "bit": rng.integers(0, 2, symbols, dtype=np.uint8),
             "intensity": rng.integers(0, 4, symbols, dtype=np.uint8),
             "valid": (rng.random(symbols) < 0.8).astype(np.uint8)}
    bob = {"index": np.sort(rng.integers(0, symbols + 5, records)).astype(np.uint64),
           "channel": rng.integers(0, 16, records, dtype=np.uint8),
           "cls": rng.integers(0, 4, records, dtype=np.uint8),
           "alarm": (rng.random(records) < 0.1).astype(np.uint8)}
    shuffle = rng.random(records) < 0.1             # near time order, not sorted
    bob["index"][shuffle] = rng.permutation(bob["index"][shuffle])
    roles = rng.integers(0, 4, channels).tolist()
    return alice, bob, roles


def lookups(symbols, index):
    """Alice's answers for symbol lookups at ``index``, as Board.lookup gives them."""
    m = len(symbols["basis"])
    available = index < np.uint64(m)
    at = np.where(available, index, 0).astype(np.int64)
    out = {name: (np.asarray(values)[at] * available).astype(np.uint64) if m
           else np.zeros(len(index), np.uint64) for name, values in symbols.items()}
    out["index"] = np.asarray(index, np.uint64).copy()
    out["available"] = available.astype(np.uint64)
    return out


def as_log(symbols):
    return dict(symbols, index=np.arange(len(symbols["basis"]), dtype=np.uint64))


def assert_same(got, want):
    sifted, counts = got
    want_sifted, want_counts = want
    assert set(sifted) == set(SIFTED_FIELDS)
    for name in SIFTED_FIELDS:
        assert sifted[name].dtype == (np.uint64 if name == "index" else np.uint8)
        np.testing.assert_array_equal(sifted[name], want_sifted[name], err_msg=name)
    assert set(counts) == set(COUNTERS)
    for name, shape in COUNTERS.items():
        assert np.shape(counts[name]) == shape, name
        np.testing.assert_array_equal(np.asarray(counts[name]).ravel(),
                                      np.asarray(want_counts[name]).ravel(), err_msg=name)


@pytest.mark.parametrize("seed", range(12))
def test_equals_reference(seed):
    rng = np.random.default_rng(seed)
    symbols = int(rng.integers(0, 400)) if seed else 0
    alice, bob, roles = random_traffic(rng, symbols, int(rng.integers(0, 3000)),
                                       int(rng.integers(1, 17)))
    want = sift_reference(alice, bob, roles)
    assert_same(sift(as_log(alice), bob, roles), want)
    # Alice's answers to lookups of Bob's records: the aligned fast path.
    assert_same(sift(lookups(alice, bob["index"]), bob, roles), want)
    # A symbol table in another order, with entries nobody clicked on.
    log = as_log(alice)
    order = rng.permutation(symbols)
    assert_same(sift({name: values[order] for name, values in log.items()}, bob, roles), want)
    # Sparse table (search): the symbols of the records plus others, and small blocks.
    keep = rng.random(symbols) < 0.5
    keep[bob["index"][bob["index"] < symbols].astype(np.int64)] = True
    sparse = {name: values[keep] for name, values in log.items()}
    assert_same(sift(sparse, bob, roles, block=int(rng.integers(1, 500))), want)
    # Role names instead of codes.
    assert_same(sift(lookups(alice, bob["index"]), bob, [ROLES[r] for r in roles]), want)


def test_every_outcome_happens():
    rng = np.random.default_rng(99)
    alice, bob, roles = random_traffic(rng, 300, 4000, 8)
    roles[:4] = [ROLE_Z, ROLE_X_PLUS, ROLE_X_MINUS, ROLE_IGNORED]
    _, counts = sift(as_log(alice), bob, roles)
    for name in ("ignored", "unclassified", "unavailable", "not_valid"):
        assert counts[name] > 0, name
    assert (counts["basis_mismatch"] > 0).all()
    assert (counts["sifted"] > 0).all() and (counts["errors"] > 0).all()
    assert counts["records_in"] == 4000 == sum(
        int(np.sum(counts[name])) for name in ("ignored", "unclassified", "unavailable",
                                                "not_valid", "basis_mismatch", "sifted"))


def test_loopback_stimulus():
    """The loopback sifter's clean seeded traffic (as tests/test_sifting.py uses it)."""
    params = dict(channels=4, lanes=4, depth_words=64)
    stimulus = sifting_stimulus(params, 3000, 5, clean=True)
    log_valid = stimulus["log_valid"]
    index = stimulus["log_index"][log_valid]
    assert (index == np.arange(len(index)) * params["lanes"]).all()
    symbols = {name: stimulus["log_fields"][name][log_valid].reshape(-1)
               for name in SYMBOL_FIELDS}
    records, roles = stimulus["records"], stimulus["roles"][0]
    want = sift_reference(symbols, records, roles)
    assert want[1]["sifted"].sum() > 100
    assert_same(sift(as_log(symbols), records, roles), want)
    assert_same(sift(lookups(symbols, records["index"]), records, roles), want)
    # The transmitter log's other fields (dark) are ignored.
    log = dict(as_log(symbols), dark=stimulus["log_fields"]["dark"][log_valid].reshape(-1))
    assert_same(sift(log, records, roles), want)


def test_by_hand():
    """The four symbols of tests/test_sifting.py's hand example."""
    symbols = {"basis": [0, 1, 1, 0], "bit": [0, 0, 1, 1], "intensity": [1, 0, 2, 3],
               "valid": [1, 1, 1, 0]}
    records = {"index": [0, 1, 2, 3, 4, 0, 1], "channel": [0, 2, 2, 0, 0, 1, 3],
               "cls": [1, 2, 2, 0, 0, 2, 2], "alarm": [1, 0, 0, 0, 0, 0, 0]}
    sifted, counts = sift(dict(symbols, index=np.arange(4)), records, ["z", "x+", "x-"])
    assert {name: values.tolist() for name, values in sifted.items()} == {
        "index": [0, 1, 2], "basis": [0, 1, 1], "intensity": [1, 0, 2],
        "alice_bit": [0, 0, 1], "bob_bit": [1, 1, 1], "alarm": [1, 0, 0]}
    assert counts["records_in"] == 7 and counts["ignored"] == 1
    assert counts["unavailable"] == 1 and counts["not_valid"] == 1
    assert counts["basis_mismatch"].tolist() == [1, 0]
    assert counts["sifted"].tolist() == [[0, 1, 0, 0], [1, 0, 1, 0]]
    assert counts["errors"].tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]
    estimate = estimate_counts(counts)
    assert {basis: {key: values.tolist() for key, values in row.items()}
            for basis, row in estimate.items()} == {
        "Z": {"n": [0, 1, 0, 0], "m": [0, 1, 0, 0]}, "X": {"n": [1, 0, 1, 0], "m": [1, 0, 0, 0]}}


def test_multiple_clicks_on_one_symbol():
    """Each record is decided on its own, as the gateware does."""
    alice = {"index": [7], "basis": [0], "bit": [1], "intensity": [2], "valid": [1]}
    bob = {"index": [7, 7, 7], "channel": [0, 0, 1], "cls": [1, 0, 2]}
    sifted, counts = sift(alice, bob, ["z", "x+"])
    assert sifted["bob_bit"].tolist() == [1, 0]
    assert counts["sifted"][0, 2] == 2 and counts["errors"][0, 2] == 1
    assert counts["basis_mismatch"].tolist() == [1, 0]
    assert sifted["alarm"].tolist() == [0, 0]                # no alarm field: 0


def test_unavailable_lookups():
    alice = {"index": [5, 6], "basis": [0, 0], "bit": [0, 0], "intensity": [0, 0],
             "valid": [1, 1], "available": [1, 0]}
    bob = {"index": [5, 6], "channel": [0, 0], "cls": [0, 0]}
    sifted, counts = sift(alice, bob, ["z"])
    assert sifted["index"].tolist() == [5] and counts["unavailable"] == 1


@pytest.mark.parametrize("seed", range(4))
def test_streaming_lookups_equal_one_shot(seed):
    """Bob's records in blocks, each with Alice's answers for it."""
    rng = np.random.default_rng(100 + seed)
    alice, bob, roles = random_traffic(rng, 500, 5000, 6)
    want = sift(as_log(alice), bob, roles)
    sifter = Sifter(roles)
    cuts = np.sort(rng.integers(0, 5000, 7))
    parts = []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, 5000], strict=True):
        block = {name: values[lo:hi] for name, values in bob.items()}
        parts.append(sifter.feed(lookups(alice, block["index"]), block))
    got = {name: np.concatenate([part[name] for part in parts]) for name in SIFTED_FIELDS}
    assert_same((got, sifter.counts), want)


@pytest.mark.parametrize("seed", range(4))
def test_streaming_log_with_history(seed):
    """Alice's symbol log and Bob's later records in blocks; ``history`` keeps the symbols
    that records of the next blocks still refer to."""
    rng = np.random.default_rng(200 + seed)
    n_sym, lag = 4000, 50
    alice, _, roles = random_traffic(rng, n_sym, 0, 5)
    log = as_log(alice)
    index = np.sort(rng.integers(0, n_sym + 20, 3000)).astype(np.uint64)
    bob = {"index": index, "channel": rng.integers(0, 5, 3000, dtype=np.uint8),
           "cls": rng.integers(0, 3, 3000, dtype=np.uint8)}
    want = sift(log, bob, roles)
    cuts = np.r_[0, np.sort(rng.integers(0, n_sym, 6)), n_sym]
    history = int(np.diff(cuts).max()) + lag
    sifter = Sifter(roles, history=history, block=int(rng.integers(1, 100)))
    parts = []
    for k, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        top = np.inf if k == len(cuts) - 2 else hi - lag
        first = 0 if k == 0 else lo - lag
        chosen = (index >= first) & (index < top)
        symbols = {name: values[lo:hi] for name, values in log.items()}
        parts.append(sifter.feed(symbols, {name: v[chosen] for name, v in bob.items()}))
    got = {name: np.concatenate([part[name] for part in parts]) for name in SIFTED_FIELDS}
    assert_same((got, sifter.counts), want)
    # Without history the records of earlier symbols find nothing.
    sifter = Sifter(roles)
    sifter.feed({name: values[:10] for name, values in log.items()}, bob)
    assert sifter.counts["unavailable"] > want[1]["unavailable"]
    sifter.reset()
    assert sifter.counts["records_in"] == 0


def test_mismatched_alignment_falls_back_to_join():
    """Alice's entries as many as Bob's records but not in his order."""
    rng = np.random.default_rng(8)
    alice, bob, roles = random_traffic(rng, 1000, 3000, 4)
    answers = lookups(alice, bob["index"])
    order = rng.permutation(3000)
    shuffled = {name: values[order] for name, values in answers.items()}
    want = sift_reference(alice, bob, roles)
    for block in (100, 3000):
        assert_same(sift(shuffled, bob, roles, block=block), want)


def test_empty():
    sifted, counts = sift({f: [] for f in ("index", *SYMBOL_FIELDS)},
                          {"index": [], "channel": [], "cls": []}, ["z"])
    assert all(len(values) == 0 for values in sifted.values())
    assert counts["records_in"] == 0 and counts["sifted"].shape == (2, 4)
    sifted, counts = sift({f: [] for f in ("index", *SYMBOL_FIELDS)},
                          {"index": [3], "channel": [0], "cls": [0]}, ["z"])
    assert counts["unavailable"] == 1


def good_inputs():
    alice = {"index": np.arange(4, dtype=np.uint64), "basis": [0, 1, 0, 1],
             "bit": [0, 0, 1, 1], "intensity": [0, 1, 2, 3], "valid": [1, 1, 1, 1]}
    bob = {"index": np.array([0, 1, 2], np.uint64), "channel": [0, 1, 0], "cls": [0, 2, 1],
           "alarm": [0, 0, 1]}
    return alice, bob


@pytest.mark.parametrize("change, roles, match", [
    (("alice", "basis", [0, 1, 0]), ["z"], r"alice\['basis'\] has 3 values but "
                                          r"alice\['index'\] has 4"),
    (("bob", "cls", [0, 2]), ["z"], r"bob\['cls'\] has 2 values but bob\['index'\] has 3"),
    (("alice", "basis", [0, 2, 0, 1]), ["z"], r"alice\['basis'\] must hold 0..1, not 2"),
    (("alice", "intensity", [0, 1, 4, 3]), ["z"], r"intensity'\] must hold 0..3, not 4"),
    (("alice", "valid", [1, 1, -1, 1]), ["z"], r"valid'\] must hold 0..1, not -1"),
    (("bob", "cls", [0, 4, 1]), ["z"], r"bob\['cls'\] must hold 0..3, not 4"),
    (("bob", "channel", [0, 16, 0]), ["z"], r"channel'\] must hold 0..15, not 16"),
    (("bob", "alarm", [0, 2, 0]), ["z"], r"alarm'\] must hold 0..1, not 2"),
    (("bob", "index", [0, -1, 2]), ["z"], r"must not be negative, not -1"),
    (("alice", "index", [0, 1, 1, 3]), ["z"], r"symbol 1 twice with different 'basis'"),
    (("bob", "channel", None), ["z"], r"bob has no field 'channel'"),
    (("alice", "bit", np.zeros(4)), ["z"], r"must be a 1-D integer array, not float64"),
    (None, ["z", "y"], r"Unknown role 'y' of channel 1"),
    (None, [0, 4], r"Unknown role 4 of channel 1"),
    (None, [True], r"Unknown role True of channel 0"),
    (None, "z", r"not 'z'"),
    (None, ["z"] * 17, r"17 roles"),
])
def test_rejects_bad_input(change, roles, match):
    alice, bob = good_inputs()
    if change:
        who, field, values = change
        target = alice if who == "alice" else bob
        if values is None:
            del target[field]
        else:
            target[field] = np.asarray(values)
    with pytest.raises(ValueError, match=match):
        sift(alice, bob, roles)


def test_rejects_bad_values_in_aligned_lookups():
    """The fast path checks the values it reads too."""
    alice, bob = good_inputs()
    answers = {name: np.asarray(values)[:3] for name, values in alice.items()}
    answers["bit"] = np.array([0, 3, 0])
    with pytest.raises(ValueError, match=r"alice\['bit'\] must hold 0..1, not 3"):
        sift(answers, bob, ["z"])


def test_rejects_bad_arguments():
    alice, bob = good_inputs()
    with pytest.raises(TypeError, match="dict"):
        sift([1, 2], bob, ["z"])
    with pytest.raises(ValueError, match="history"):
        Sifter(["z"], history=-1)
    with pytest.raises(ValueError, match="block"):
        Sifter(["z"], block=0)
    with pytest.raises(ValueError, match=r"counts\['sifted'\] must have 8"):
        estimate_counts({"sifted": np.zeros(3), "errors": np.zeros(8)})
    with pytest.raises(ValueError, match="classes must be 1..4, not 5"):
        estimate_counts({"sifted": np.zeros(8), "errors": np.zeros(8)}, classes=5)


def test_estimate_counts_of_fewer_classes():
    counts = {"sifted": np.array([[5, 4, 0, 0], [3, 2, 0, 0]]),
              "errors": np.array([[1, 0, 0, 0], [0, 1, 0, 0]])}
    estimate = estimate_counts(counts, classes=2)
    assert estimate["Z"]["n"].tolist() == [5, 4] and estimate["X"]["m"].tolist() == [0, 1]
    assert estimate["Z"]["n"].dtype == np.int64
    with pytest.raises(ValueError, match="4 sifted detections of intensity class 1 .basis Z"):
        estimate_counts(counts, classes=1)


def test_estimate_counts_from_flat_counters():
    """The gateware's and sift_reference's 8-element counters give the same estimate."""
    rng = np.random.default_rng(9)
    alice, bob, roles = random_traffic(rng, 300, 2000, 4)
    _, counts = sift(as_log(alice), bob, roles)
    _, flat = sift_reference(alice, bob, roles)
    a, b = estimate_counts(counts), estimate_counts(flat)
    for basis, row in (("Z", 0), ("X", 1)):
        np.testing.assert_array_equal(a[basis]["n"], counts["sifted"][row])
        np.testing.assert_array_equal(a[basis]["m"], counts["errors"][row])
        np.testing.assert_array_equal(a[basis]["n"], b[basis]["n"])
        np.testing.assert_array_equal(a[basis]["m"], b[basis]["m"])


def test_roles_match_the_gateware():
    assert (ROLE_Z, ROLE_X_PLUS, ROLE_X_MINUS, ROLE_IGNORED) == (
        gateware_sifting.ROLE_Z, gateware_sifting.ROLE_X_PLUS, gateware_sifting.ROLE_X_MINUS,
        gateware_sifting.ROLE_IGNORED)
    assert ROLES == gateware_sifting.ROLES
    assert SIFTED_FIELDS == tuple(name for name, _ in gateware_sifting.SIFTED_FIELDS)


def test_host_modules_do_not_import_amaranth():
    code = ("import sys, timebin.host.distill.sift, timebin.host.distill.privacy; "
            "sys.exit('amaranth' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bench_structure():
    out = bench_sift(records=20000, seed=3, repeats=1)
    assert out["records"] == 20000 and out["seed"] == 3 and out["sifted"] > 0
    for name in ("lookup", "join"):
        assert out[name]["seconds"] > 0 and out[name]["records_per_s"] > 0
    with pytest.raises(ValueError, match="records"):
        bench_sift(records=0)


def test_bob_reading_alone_equals_the_reference_reading():
    from timebin.host.distill.sift import bob_reading
    from timebin.sim.sifting import _roles_of
    from timebin.sim.sifting import bob_reading as reference

    rng = np.random.default_rng(0)
    roles = np.array([0, 1, 2, 3, 0])
    channel, cls = rng.integers(0, 18, 10_000), rng.integers(0, 4, 10_000)
    measured, basis, bit = bob_reading(roles, channel, cls)
    want_measured, want_basis, want_bit = reference(_roles_of(roles, channel), cls)
    assert np.array_equal(measured, want_measured) and measured.any() and not measured.all()
    assert np.array_equal(basis[measured], want_basis[measured])
    assert np.array_equal(bit[measured], want_bit[measured])
