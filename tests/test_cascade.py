"""Cascade (timebin.host.distill.cascade): correct keys over many blocks, exact leakage
accounting, round trips that grow with passes and log n rather than errors, the node
numbering Alice answers, and refused messages."""

import numpy as np
import pytest
from timebin.host.distill import cascade as cascade_module
from timebin.host.distill.cascade import Cascade, CascadeAlice, block_sizes
from timebin.host.distill.reconcile import efficiency


def noisy_pair(rng, n, errors):
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[rng.choice(n, errors, replace=False)] ^= 1
    return alice, bob


def counting_ask(side):
    """ask() that counts the parities Alice answers, independently of her own counter."""
    counted = {"parities": 0, "messages": 0}

    def ask(message):
        reply = side.respond(message)
        assert len(reply["parities"]) == len(message["node"])
        counted["parities"] += len(message["node"])
        counted["messages"] += 1
        return reply

    return ask, counted


def test_200_blocks_identical_keys():
    rng = np.random.default_rng(2024)
    qbers = (0.01, 0.02, 0.03, 0.05, 0.08)
    for block in range(200):
        n = int(rng.integers(4096, 10_001))
        qber = qbers[block % len(qbers)]
        errors = int(rng.binomial(n, qber))
        alice, bob = noisy_pair(rng, n, errors)
        corrected, stats = Cascade(seed=block).reconcile(alice, bob, qber)
        assert stats["success"], (block, n, qber)
        assert np.array_equal(corrected, alice), (block, n, qber)
        assert stats["errors"] == errors
        assert stats["disclosed_bits"] == stats["alice_disclosed_bits"]


def test_disclosed_bits_are_counted_exactly():
    rng = np.random.default_rng(5)
    alice, bob = noisy_pair(rng, 50_000, 1500)
    side = CascadeAlice(alice)
    ask, counted = counting_ask(side)
    corrected, stats = Cascade(seed=9).bob(bob, 0.03, ask)
    assert np.array_equal(corrected, alice)
    assert stats["disclosed_bits"] == counted["parities"] == side.disclosed_bits
    assert stats["rounds"] == counted["messages"] == side.rounds


def test_efficiency_and_round_trips():
    rng = np.random.default_rng(8)
    small, large = [], []
    for _ in range(4):
        alice, bob = noisy_pair(rng, 4096, 82)
        small.append(Cascade(seed=1).reconcile(alice, bob, 0.02)[1]["efficiency"])
    alice, bob = noisy_pair(rng, 200_000, 4000)
    corrected, stats = Cascade(seed=1).reconcile(alice, bob, 0.02)
    large = stats["efficiency"]
    assert np.array_equal(corrected, alice)
    # The Slepian-Wolf limit is 1; Cascade with these block sizes stays within 6 % of it on
    # long keys, and short keys pay more (binary searches, confirmation halves).
    assert 1.0 < large < 1.06
    assert large < np.mean(small)
    # Parities of a pass travel together: round trips grow with passes and log n (and the
    # cascade chains), not with the 4000 errors.
    assert stats["rounds"] < 1000 and stats["rounds"] < stats["errors"] / 4
    assert stats["block_sizes"] == [64, 256, 4096]


def test_efficiency_uses_the_estimate_without_errors():
    rng = np.random.default_rng(3)
    key = rng.integers(0, 2, 5000, dtype=np.uint8)
    corrected, stats = Cascade(seed=2).reconcile(key, key.copy(), 0.02)
    assert np.array_equal(corrected, key) and stats["errors"] == 0
    assert stats["efficiency_basis"] == "estimate"
    assert stats["efficiency"] == pytest.approx(efficiency(stats["disclosed_bits"], 5000, 0.02))


def test_block_sizes():
    assert block_sizes(0.02, 10**6) == [6, 8, 12]
    assert block_sizes(0.01, 10**6) == [7, 9, 12]
    assert block_sizes(0.08, 10**6) == [4, 6, 12]
    assert block_sizes(0.02, 1000) == [6, 8, 9]               # capped at half the key
    with pytest.raises(ValueError, match="0.6"):
        block_sizes(0.6, 1000)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 100])
def test_tiny_keys(n):
    rng = np.random.default_rng(n)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[0] ^= 1
    corrected, stats = Cascade(seed=4).reconcile(alice, bob, 0.1)
    assert np.array_equal(corrected, alice) and stats["success"]


def test_node_numbering_matches_the_shuffled_key():
    """Alice's parity of node h of block b covers the documented positions."""
    rng = np.random.default_rng(6)
    n, seed = 1000, 77
    key = rng.integers(0, 2, n, dtype=np.uint8)
    side = CascadeAlice(key)
    levels = 5                                          # blocks of 32 bits, 32 blocks
    nodes = np.arange(1, 32 * 64, dtype=np.int64)
    nodes = nodes[(nodes % 64) != 0]
    reply = side.respond({"protocol": "cascade", "n": n, "seed": seed,
                          "define": np.array([levels], np.int32),
                          "pass": np.zeros(len(nodes), np.int32), "node": nodes})
    order = side.passes[0].order(n, seed, 0)
    shuffled = np.where(order < n, key[np.minimum(order, n - 1)], 0)
    for node, parity in zip(nodes.tolist(), reply["parities"].tolist(), strict=True):
        block, h = divmod(node, 64)
        level = h.bit_length() - 1
        span = 32 >> level
        start = block * 32 + (h - (1 << level)) * span
        assert parity == shuffled[start:start + span].sum() % 2
    assert side.disclosed_bits == len(nodes)


def test_alice_refuses_bad_messages():
    key = np.zeros(100, np.uint8)
    side = CascadeAlice(key)

    def message(**fields):
        base = {"protocol": "cascade", "n": 100, "seed": 5, "define": np.zeros(0, np.int32),
                "pass": np.zeros(0, np.int32), "node": np.zeros(0, np.int64)}
        base.update(fields)
        return base

    with pytest.raises(ValueError, match="99 bits but Alice's has 100"):
        side.respond(message(n=99))
    with pytest.raises(ValueError, match="Pass definition 9"):
        side.respond(message(define=np.array([9], np.int32)))
    with pytest.raises(ValueError, match="pass 0"):
        side.respond(message(**{"pass": np.zeros(1, np.int32), "node": np.ones(1, np.int64)}))
    side.respond(message(define=np.array([3], np.int32)))
    assert len(side.passes) == 1
    with pytest.raises(ValueError, match="Node 16 of pass 0"):
        side.respond(message(**{"pass": np.zeros(1, np.int32),
                                "node": np.array([16], np.int64)}))
    with pytest.raises(ValueError, match="Node 500"):
        side.respond(message(define=np.array([2], np.int32), **{
            "pass": np.array([1], np.int32), "node": np.array([500], np.int64)}))
    assert len(side.passes) == 1                       # a refused message defines nothing
    with pytest.raises(ValueError, match="seed 6 differs"):
        side.respond(message(seed=6))
    with pytest.raises(ValueError, match="asks 2 nodes but names 1"):
        side.respond(message(**{"pass": np.zeros(1, np.int32), "node": np.ones(2, np.int64)}))
    with pytest.raises(ValueError, match="'node'"):
        side.respond(message(node=np.ones(1, np.float64)))
    assert side.disclosed_bits == 0


def test_bob_refuses_a_bad_reply():
    rng = np.random.default_rng(1)
    alice, bob = noisy_pair(rng, 3000, 30)
    side = CascadeAlice(alice)

    def short(message):
        reply = side.respond(message)
        return {"protocol": "cascade", "parities": reply["parities"][:-1]}

    with pytest.raises(ValueError, match="to [0-9]+ parity questions"):
        Cascade(seed=1).bob(bob, 0.01, short)

    def not_bits(message):
        reply = side.respond(message)
        return {"protocol": "cascade", "parities": reply["parities"] * 2 + 1}

    with pytest.raises(ValueError, match="max 3"):
        Cascade(seed=1).bob(bob, 0.01, not_bits)


def test_options_are_checked():
    for bad, match in (({"block_sizes": []}, "Block sizes"), ({"confirm": -1}, "confirm"),
                       ({"max_batches": 0}, "max_batches"), ({"seed": -5}, "seed"),
                       ({"overlap": 2.0}, "overlap")):
        with pytest.raises(ValueError, match=match):
            Cascade(**bad)


def test_confirmation_catches_what_the_passes_left(monkeypatch):
    """With a single weak pass most errors survive it; the confirmation halves find and
    cascade them, and a batch that keeps disagreeing ends with success false."""
    rng = np.random.default_rng(12)
    alice, bob = noisy_pair(rng, 20_000, 600)
    corrected, stats = Cascade(seed=3, block_sizes=[2]).reconcile(alice, bob, 0.03)
    assert np.array_equal(corrected, alice) and stats["success"]
    assert stats["passes"] > 1 + 16                    # more than one batch of halves
    corrected, stats = Cascade(seed=3, block_sizes=[2], max_batches=1).reconcile(alice, bob,
                                                                                 0.03)
    assert not stats["success"]
    assert cascade_module.HALF == -1


def test_contradictory_parities_are_refused_not_searched_for_ever():
    """Alice's replies arrive unauthenticated until the next tag (deferred messages): random
    parities in place of hers must end Bob's search (ValueError, or a failed run), never
    loop for ever."""
    from timebin.host.distill.reconcile import get_reconciler

    rng = np.random.default_rng(7)
    key = rng.integers(0, 2, 20_000, dtype=np.uint8)
    alice = get_reconciler("cascade").alice(key)

    def forged(message):
        out = dict(alice.respond(message))
        for name, value in out.items():
            if isinstance(value, np.ndarray) and len(value):
                out[name] = rng.integers(0, 2, len(value)).astype(value.dtype)
        return out

    bob_key = key.copy()
    bob_key[rng.choice(len(key), 200, replace=False)] ^= 1
    try:
        corrected, stats = get_reconciler("cascade", seed=3).bob(bob_key, 0.01, forged)
    except ValueError:
        return
    assert not stats["success"] or not np.array_equal(corrected, key)
