"""The reconciliation interface (timebin.host.distill.reconcile): efficiency, input checks,
the registry, the shared pseudo-random streams, message checks of both methods, seeds, and
the benchmark's shape."""

import math
from collections import Counter

import numpy as np
import pytest
from timebin.host.distill.cascade import Cascade
from timebin.host.distill.ldpc import LDPC
from timebin.host.distill.reconcile import (
    RECONCILERS,
    bench_reconcile,
    binary_entropy,
    check_key,
    check_qber,
    derive_seed,
    efficiency,
    get_reconciler,
    random_permutation,
    random_words,
)

METHODS = ("cascade", "ldpc")


def noisy_pair(rng, n, errors):
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[rng.choice(n, errors, replace=False)] ^= 1
    return alice, bob


def test_binary_entropy_and_efficiency():
    assert binary_entropy(0.5) == 1.0
    assert binary_entropy(0.0) == binary_entropy(1.0) == 0.0
    assert binary_entropy(0.02) == pytest.approx(0.1414405, abs=1e-6)
    assert efficiency(1414, 10_000, 0.02) == pytest.approx(1414 / 1414.405, rel=1e-6)
    with pytest.raises(ValueError, match="1.5"):
        binary_entropy(1.5)
    with pytest.raises(ValueError, match="0"):
        efficiency(10, 0, 0.02)
    with pytest.raises(ValueError, match="-3"):
        efficiency(-3, 100, 0.02)


@pytest.mark.parametrize("bad", [0, 0.0, 0.5, -0.01, 0.7, float("nan"), "x", None])
def test_check_qber_refuses(bad):
    with pytest.raises(ValueError, match="QBER"):
        check_qber(bad)


def test_check_key():
    assert check_key([0, 1, 1]).dtype == np.uint8
    for bad, match in (([[0, 1]], "shape"), ([], "empty"), ([0, 2], "holds 2"),
                       ([0, -1], "holds -1"), ([0.5], "float")):
        with pytest.raises(ValueError, match=match):
            check_key(bad)


def test_registry():
    assert RECONCILERS == {"cascade": Cascade, "ldpc": LDPC}
    assert sorted(RECONCILERS) == ["cascade", "ldpc"]
    assert isinstance(get_reconciler("cascade", confirm=9), Cascade)
    assert get_reconciler("cascade", confirm=9).confirm == 9
    with pytest.raises(ValueError, match="'turbo'"):
        get_reconciler("turbo")


def test_random_permutation_is_uniform_and_fixed():
    seed = np.uint64(derive_seed(np.uint64(7), 1, 2))
    p = random_permutation(1000, seed)
    assert p.dtype == np.int32 and np.array_equal(np.sort(p), np.arange(1000))
    assert np.array_equal(p, random_permutation(1000, seed))
    # The stream is part of the protocol: both hosts must derive the same permutation.
    assert random_permutation(8, np.uint64(5)).tolist() == \
        random_permutation(8, np.uint64(5)).tolist()
    counts = Counter(tuple(random_permutation(3, np.uint64(derive_seed(np.uint64(1), i, 0))))
                     for i in range(6000))
    assert len(counts) == 6 and min(counts.values()) > 850
    words = random_words(4000, np.uint64(3))
    ones = np.bitwise_count(words).sum() / (64 * 4000)
    assert abs(ones - 0.5) < 0.01


@pytest.mark.parametrize("method", METHODS)
def test_bad_inputs_are_refused(method):
    rng = np.random.default_rng(1)
    alice, bob = noisy_pair(rng, 2000, 20)
    reconciler = get_reconciler(method, seed=3)
    for qber in (0.0, 0.5, -0.2, 0.9):
        with pytest.raises(ValueError, match=str(qber)):
            reconciler.bob(bob, qber, reconciler.alice(alice).respond)
    with pytest.raises(ValueError, match="2000.*1999"):
        reconciler.reconcile(alice, bob[:-1], 0.01)
    with pytest.raises(ValueError, match="1999.*2000|2000.*1999"):
        reconciler.bob(bob[:-1], 0.01, reconciler.alice(alice).respond)
    side = reconciler.alice(alice)
    with pytest.raises(ValueError, match="dict"):
        side.respond([1, 2])
    with pytest.raises(ValueError, match="protocol"):
        side.respond({"n": 2000})
    other = "ldpc" if method == "cascade" else "cascade"
    with pytest.raises(ValueError, match=repr(other)):
        side.respond({"protocol": other})
    with pytest.raises(ValueError, match="lacks the field"):
        side.respond({"protocol": method, "op": "syndrome"})
    assert side.disclosed_bits == 0 and side.rounds == 0


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_transcript(method):
    rng = np.random.default_rng(2)
    alice, bob = noisy_pair(rng, 3000, 60)

    def run(seed):
        reconciler = get_reconciler(method, seed=seed, **({"secret_seed": 5}
                                                          if method == "ldpc" else {}))
        side = reconciler.alice(alice)
        transcript = []

        def ask(message):
            reply = side.respond(message)
            transcript.append((message, reply))
            return reply

        corrected, stats = reconciler.bob(bob, 0.02, ask)
        return corrected, stats, transcript

    one, stats_one, talk_one = run(11)
    two, stats_two, talk_two = run(11)
    assert np.array_equal(one, alice) and np.array_equal(two, alice)
    assert stats_one == stats_two and stats_one["seed"] == 11
    assert len(talk_one) == len(talk_two) == stats_one["rounds"]
    for (m1, r1), (m2, r2) in zip(talk_one, talk_two, strict=True):
        assert m1.keys() == m2.keys() and r1.keys() == r2.keys()
        for key in m1:
            assert np.array_equal(m1[key], m2[key])
        for key in r1:
            assert np.array_equal(r1[key], r2[key])
    _, _, talk_three = run(12)
    assert any(not np.array_equal(a[0].get(k), b[0].get(k)) or
               not np.array_equal(a[1].get(k), b[1].get(k))
               for a, b in zip(talk_one, talk_three, strict=False) for k in a[0])


@pytest.mark.parametrize("method", METHODS)
def test_messages_are_serialisable_types(method):
    rng = np.random.default_rng(4)
    alice, bob = noisy_pair(rng, 2500, 50)
    reconciler = get_reconciler(method, seed=1)
    side = reconciler.alice(alice)
    allowed = {np.dtype(t) for t in ("uint8", "int32", "int64", "uint64")}

    def check(message):
        assert isinstance(message, dict)
        for value in message.values():
            if isinstance(value, np.ndarray):
                assert value.ndim == 1 and value.dtype in allowed, value.dtype
            else:
                assert isinstance(value, (int, float, str, bytes)), type(value)

    def ask(message):
        check(message)
        reply = side.respond(message)
        check(reply)
        return reply

    corrected, stats = reconciler.bob(bob, 0.02, ask)
    assert np.array_equal(corrected, alice)
    assert stats["disclosed_bits"] == side.disclosed_bits
    assert stats["rounds"] == side.rounds
    for field in ("n", "qber_estimate", "efficiency", "success", "errors"):
        assert field in stats
    assert stats["errors"] == 50 and stats["efficiency_basis"] == "actual"
    assert stats["efficiency"] == pytest.approx(efficiency(stats["disclosed_bits"], 2500,
                                                           50 / 2500))


def test_bench_reconcile_shape():
    report = bench_reconcile(qbers=(0.03,), n=20_000, blocks=1, seed=3,
                             options={"ldpc": {"frame_bits": 1 << 14}})
    assert report["bench"] == "distill" and report["seed"] == 3
    assert [r["method"] for r in report["results"]] == ["cascade", "ldpc"]
    for result in report["results"]:
        assert result["failures"] == 0
        assert result["mbps"] > 0 and result["rounds"] >= 1
        assert 1.0 < result["efficiency"] < 2.0
        assert result["errors_per_block"] == 600
        assert math.isfinite(result["seconds"])
