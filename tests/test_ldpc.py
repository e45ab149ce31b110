"""Rate-adaptive LDPC reconciliation (timebin.host.distill.ldpc): the degree distributions
and the codes built from them (weights, no 4-cycles, rank, untainted puncturing), the
decoder, correct keys over many blocks, blind retries, exact leakage accounting, failures
reported, and refused messages."""

import math

import numpy as np
import pytest
from timebin.host.distill.ldpc import (
    DISTRIBUTIONS,
    LDPC,
    RATES,
    LDPCAlice,
    LDPCCode,
    decode,
    ga_threshold,
    mother_code,
)
from timebin.host.distill.reconcile import binary_entropy


def noisy_pair(rng, n, errors):
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[rng.choice(n, errors, replace=False)] ^= 1
    return alice, bob


def gf2_rank(rows, n):
    """Rank over GF(2) of a 0/1 matrix given as a list of column-index arrays."""
    words = (n + 63) // 64
    matrix = np.zeros((len(rows), words), np.uint64)
    for r, cols in enumerate(rows):
        for c in cols:
            matrix[r, c >> 6] ^= np.uint64(1) << np.uint64(c & 63)
    rank = 0
    for col in range(n):
        w, bit = col >> 6, np.uint64(1) << np.uint64(col & 63)
        below = np.flatnonzero(matrix[rank:, w] & bit)
        if not len(below):
            continue
        pivot = rank + below[0]
        matrix[[rank, pivot]] = matrix[[pivot, rank]]
        hits = np.flatnonzero(matrix[:, w] & bit)
        hits = hits[hits != rank]
        matrix[hits] ^= matrix[rank]
        rank += 1
        if rank == len(rows):
            break
    return rank


@pytest.mark.parametrize("rate", RATES)
def test_distributions(rate):
    lam, threshold = DISTRIBUTIONS[rate]
    assert sum(lam.values()) == pytest.approx(1.0, abs=2e-5)
    assert min(lam) == 2 and all(v > 0 for v in lam.values())
    # Below the Shannon limit of the rate, and reproduced by the Gaussian approximation.
    shannon = next(p for p in np.linspace(0.5, 0, 100_001) if binary_entropy(p) <= 1 - rate)
    assert threshold < shannon
    assert ga_threshold(lam, rate) == pytest.approx(threshold, rel=0.02)


@pytest.mark.parametrize("rate", RATES)
def test_codes_are_valid(rate):
    code = mother_code(rate, 1 << 14)
    n, m = code.n, code.m
    assert m == round(n * (1 - rate))
    # Column weights follow lambda (node counts proportional to lambda_i / i).
    lam, _ = DISTRIBUTIONS[rate]
    weights = np.array([lam[d] / d for d in sorted(lam)])
    expected = weights / weights.sum() * n
    counts = np.array([(code.var_deg == d).sum() for d in sorted(lam)])
    assert np.all(np.abs(counts - expected) < 1) and counts.sum() == n
    assert np.array_equal(np.diff(code.var_ptr), code.var_deg)
    # Check weights concentrated on the two values around the mean (PEG may push a few
    # checks one further when every lighter check would close a 4-cycle).
    mean = code.edges / m
    central = (code.chk_deg == math.floor(mean)) | (code.chk_deg == math.ceil(mean))
    assert central.mean() > 0.95
    assert code.chk_deg.min() >= math.floor(mean) - 2
    assert code.chk_deg.max() <= math.ceil(mean) + 2
    assert code.chk_deg.sum() == code.edges == code.var_deg.sum()
    # No variable meets a check twice.
    assert four_cycles(code) >= 0
    # Check-major and variable-major forms agree.
    owner = np.repeat(np.arange(m), code.chk_deg)
    assert np.array_equal(np.sort(owner * n + code.chk_var),
                          np.sort(code.var_chk * n + np.repeat(np.arange(n), code.var_deg)))
    # Untainted puncturing: no check sees two punctured variables (so their columns are
    # disjoint, hence independent: the syndrome hides one bit per punctured variable).
    seen = np.zeros(m, np.int64)
    for v in code.puncture:
        seen[code.var_chk[code.var_ptr[v]:code.var_ptr[v + 1]]] += 1
    assert seen.max() <= 1 and len(code.puncture) > 0.02 * m


def four_cycles(code):
    """Number of check pairs that share more than one variable (each extra sharing is a
    4-cycle); fails if a variable meets a check twice."""
    keys = []
    for d in np.unique(code.var_deg):
        chosen = np.flatnonzero(code.var_deg == d)
        checks = np.sort(code.var_chk[code.var_ptr[chosen][:, None] + np.arange(d)], axis=1)
        assert np.all(np.diff(checks, axis=1) > 0)
        i, j = np.triu_indices(d, 1)
        keys.append((checks[:, i] * code.m + checks[:, j]).ravel())
    keys = np.concatenate(keys)
    return len(keys) - len(np.unique(keys))


def test_no_4_cycles():
    """PEG keeps every new edge out of the variable's distance-2 neighbourhood, so there is
    no 4-cycle once the codes are long enough for that neighbourhood to leave checks free:
    from 2^14 bits at every rate (shorter high-rate codes, whose degree-25 columns reach
    every check, keep a few)."""
    for rate in RATES:
        assert four_cycles(mother_code(rate, 1 << 14)) == 0, rate
    assert four_cycles(LDPCCode(0.5, 1 << 11)) == 0


@pytest.mark.parametrize("rate", (0.5, 0.85, 0.95))
def test_rank(rate):
    code = LDPCCode(rate, 1 << 10)
    rows = [code.chk_var[code.chk_ptr[c]:code.chk_ptr[c + 1]] for c in range(code.m)]
    # Full row rank: no syndrome bit is redundant (the count M would otherwise overstate
    # the leak, which is safe but wasteful).
    assert gf2_rank(rows, code.n) >= code.m - 1


def test_production_code_is_deterministic_and_free_of_4_cycles():
    code = mother_code(0.85)
    assert code.n == 1 << 16 and code is mother_code(0.85, 1 << 16)
    again = LDPCCode(0.85, 1 << 16)
    assert again.digest == code.digest
    assert np.array_equal(again.var_chk, code.var_chk)
    a = code.var_chk[code.var_ptr[:-1, None] + np.arange(2)]    # every variable has >= 2
    b = code.var_chk[code.var_ptr[:-1] + code.var_deg - 1]
    assert np.all(a[:, 0] != a[:, 1]) and np.all(a[:, 0] != b)
    keys = np.sort(np.minimum(a[:, 0], a[:, 1]) * code.m + np.maximum(a[:, 0], a[:, 1]))
    assert len(np.unique(keys)) == len(keys)     # no two variables share their first checks
    assert four_cycles(code) == 0
    assert code.chk_deg.max() - code.chk_deg.min() <= 3
    with pytest.raises(ValueError, match="0.42"):
        LDPCCode(0.42, 1 << 12)
    with pytest.raises(ValueError, match="3000"):
        LDPCCode(0.5, 3000)


def test_decoder():
    code = mother_code(0.5, 1 << 12)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, code.n, dtype=np.uint8)
    syndrome = code.syndrome(x[None])[0]
    y = x ^ (rng.random(code.n) < 0.05).astype(np.uint8)
    llr = (1 - 2.0 * y) * math.log(0.95 / 0.05)
    bits, ok, iterations = decode(code, syndrome, llr)
    assert ok and np.array_equal(bits, x) and iterations < 50
    y = x ^ (rng.random(code.n) < 0.2).astype(np.uint8)        # far beyond the threshold
    llr = (1 - 2.0 * y) * math.log(0.8 / 0.2)
    bits, ok, _ = decode(code, syndrome, llr)
    assert not ok


def test_200_blocks_identical_keys():
    rng = np.random.default_rng(99)
    qbers = (0.01, 0.02, 0.03, 0.05, 0.08)
    retried = 0
    for block in range(200):
        n = int(rng.integers(2000, 4097))
        qber = qbers[block % len(qbers)]
        errors = int(rng.binomial(n, qber))
        alice, bob = noisy_pair(rng, n, errors)
        corrected, stats = LDPC(seed=block).reconcile(alice, bob, qber)
        assert stats["success"], (block, n, qber)
        assert np.array_equal(corrected, alice), (block, n, qber)
        assert stats["disclosed_bits"] == stats["alice_disclosed_bits"]
        retried += stats["rounds"] > 1
    assert retried > 20                                 # the blind retries were exercised


def test_disclosed_bits_are_counted_exactly():
    """Syndrome bits less punctured bits, plus every extra parity: counted from the
    transcript, on Alice's side and in Bob's stats."""
    rng = np.random.default_rng(7)
    for qber, n in ((0.02, 20_000), (0.005, 9000)):        # the second one punctures
        alice, bob = noisy_pair(rng, n, round(qber * n))
        reconciler = LDPC(seed=3, frame_bits=1 << 13, f_start=1.0)
        side = reconciler.alice(alice)
        transcript = []

        def ask(message, side=side, transcript=transcript):
            reply = side.respond(message)
            transcript.append((message, reply))
            return reply

        corrected, stats = reconciler.bob(bob, qber, ask)
        assert stats["success"] and np.array_equal(corrected, alice)
        first, reply = transcript[0]
        code = mother_code(first["rate"], first["frame_bits"])
        assert len(reply["syndromes"]) == first["frames"] * ((code.m + 7) // 8)
        counted = first["frames"] * (code.m - first["punctured"])
        for message, reply in transcript[1:]:
            assert message["op"] == "extend"
            assert len(reply["parities"]) == message["counts"].sum()
            counted += int(message["counts"].sum())
        assert counted == stats["disclosed_bits"] == side.disclosed_bits
        assert stats["rounds"] == len(transcript) == side.rounds
        assert stats["extra_checks"] == counted - first["frames"] * (code.m
                                                                      - first["punctured"])
    assert stats["punctured"] > 0


def test_efficiency_on_a_full_frame():
    rng = np.random.default_rng(11)
    alice, bob = noisy_pair(rng, 1 << 16, 1311)                # Q = 2 %
    corrected, stats = LDPC(seed=1).reconcile(alice, bob, 0.02)
    assert stats["success"] and np.array_equal(corrected, alice)
    assert stats["rate"] == 0.85 and stats["frames"] == 1
    assert 1.0 < stats["efficiency"] < 1.25


def test_failure_is_reported():
    """No retries allowed and a QBER estimate far below the truth: the frame cannot decode,
    and Bob says so."""
    rng = np.random.default_rng(5)
    alice, bob = noisy_pair(rng, 4000, 320)                    # Q = 8 %
    corrected, stats = LDPC(seed=2, f_start=1.0, f_max=1.0).reconcile(alice, bob, 0.01)
    assert not stats["success"] and stats["failed_frames"] == 1
    assert stats["rounds"] == 1 and stats["extra_checks"] == 0
    assert not np.array_equal(corrected, alice)
    assert stats["efficiency_basis"] == "estimate"


def test_long_keys_are_split_into_frames():
    rng = np.random.default_rng(13)
    alice, bob = noisy_pair(rng, 20_001, 600)
    corrected, stats = LDPC(seed=5, frame_bits=1 << 12).reconcile(alice, bob, 0.03)
    assert stats["frames"] == 5 and stats["success"]
    assert np.array_equal(corrected, alice)


def test_alice_refuses_bad_messages():
    key = np.zeros(5000, np.uint8)
    code = mother_code(0.8, 1 << 13)
    good = {"protocol": "ldpc", "op": "syndrome", "n": 5000, "seed": 1, "rate": 0.8,
            "frame_bits": 1 << 13, "digest": code.digest, "frames": 1, "punctured": 0,
            "degree": 20}

    def refused(match, **fields):
        side = LDPCAlice(key)
        with pytest.raises(ValueError, match=match):
            side.respond(dict(good, **fields))
        assert side.disclosed_bits == 0

    refused("4999 bits but Alice's has 5000", n=4999)
    refused("rate 0.81", rate=0.81)
    refused("differs from Alice's", digest="0" * 32)
    refused("multiple of 256.*8000", frame_bits=8000)
    refused("frames must lie in 1 .. 5000, not 0", frames=0)
    refused("punctured bits per frame must lie in 0 .. [0-9]+, not -1", punctured=-1)
    with pytest.raises(ValueError, match="cannot hold 8000 key bits"):
        LDPCAlice(np.zeros(8000, np.uint8)).respond(dict(good, n=8000,
                                                         punctured=len(code.puncture)))
    refused("degree of extra checks must lie in 1 .. 5000, not 0", degree=0)
    refused("Unknown LDPC operation 'reveal'", op="reveal")
    side = LDPCAlice(key)
    with pytest.raises(ValueError, match="before the syndromes"):
        side.respond({"protocol": "ldpc", "op": "extend", "frames": np.zeros(1, np.int64),
                      "counts": np.ones(1, np.int64)})
    side.respond(good)
    assert side.disclosed_bits == code.m
    with pytest.raises(ValueError, match="already sent"):
        side.respond(good)
    for frames, counts, match in (([1], [3], "frames of 0 .. 0"), ([0, 0], [1, 1], "distinct"),
                                  ([0], [0], "1 .. 8192, not 0"), ([0], [1, 2], "2 counts")):
        with pytest.raises(ValueError, match=match):
            side.respond({"protocol": "ldpc", "op": "extend",
                          "frames": np.array(frames, np.int64),
                          "counts": np.array(counts, np.int64)})
    reply = side.respond({"protocol": "ldpc", "op": "extend", "frames": np.zeros(1, np.int64),
                          "counts": np.array([7], np.int64)})
    assert len(reply["parities"]) == 7 and side.disclosed_bits == code.m + 7


def test_bob_refuses_a_bad_reply():
    rng = np.random.default_rng(2)
    alice, bob = noisy_pair(rng, 3000, 60)
    side = LDPCAlice(alice)

    def truncated(message):
        reply = side.respond(message)
        return dict(reply, syndromes=reply["syndromes"][:-1])

    with pytest.raises(ValueError, match="syndrome bytes"):
        LDPC(seed=1).bob(bob, 0.02, truncated)


def test_options_are_checked():
    for bad, match in (({"frame_bits": 1000}, "frame_bits"), ({"f_start": 0.1}, "f_start"),
                       ({"step": 0}, "step"), ({"f_start": 1.5, "f_max": 1.2}, "f_max"),
                       ({"max_iter": 0}, "max_iter"), ({"seed": "x"}, "seed")):
        with pytest.raises(ValueError, match=match):
            LDPC(**bad)
