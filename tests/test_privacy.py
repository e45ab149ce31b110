"""Toeplitz privacy amplification (timebin.host.distill.privacy): the FFT and NTT agree with
the matrix product of the documented convention, on every geometry the blocking can take."""

import numpy as np
import pytest
import timebin.host.distill.privacy as privacy
from timebin.host.distill.privacy import (
    NTT_PRIME,
    amplify,
    bench_privacy,
    seed_length,
    toeplitz_hash,
    toeplitz_matrix,
)


def random_case(rng, n, m):
    x = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
    return x, seed


def test_convention_by_hand():
    """T[i][j] = s[i - j + n - 1]: n = 3, m = 2, s = 1 1 0 1."""
    seed = np.array([1, 1, 0, 1], np.uint8)
    T = toeplitz_matrix(seed, 3, 2)
    assert T.tolist() == [[0, 1, 1],       # s2 s1 s0
                          [1, 0, 1]]       # s3 s2 s1
    for x, y in (([1, 0, 0], [0, 1]), ([0, 1, 1], [0, 1]), ([0, 0, 1], [1, 1]),
                 ([1, 1, 1], [0, 0])):
        for method in privacy.METHODS:
            assert toeplitz_hash(np.array(x, np.uint8), seed, 2, method).tolist() == y, method


def test_matrix_is_toeplitz():
    rng = np.random.default_rng(1)
    n, m = 9, 5
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    T = toeplitz_matrix(seed, n, m)
    for i in range(m):
        for j in range(n):
            assert T[i, j] == seed[i - j + n - 1]


def sizes():
    rng = np.random.default_rng(2)
    cases = [(1, 0), (1, 1), (2, 1), (2, 2), (3, 1), (5, 5), (8, 8), (16, 1), (16, 16),
             (17, 9), (31, 30), (64, 32), (100, 1), (100, 100), (257, 128), (1000, 999)]
    for _ in range(40):
        n = int(rng.integers(1, 600))
        cases.append((n, int(rng.integers(0, n + 1))))
    return cases


@pytest.mark.parametrize("n, m", sizes())
def test_methods_agree_with_matrix(n, m):
    rng = np.random.default_rng(n * 1000 + m)
    x, seed = random_case(rng, n, m)
    want = (toeplitz_matrix(seed, n, m).astype(np.int64) @ x.astype(np.int64)) % 2
    assert np.array_equal(toeplitz_hash(x, seed, m, "naive"), want)
    for method in ("fft", "ntt"):
        got = toeplitz_hash(x, seed, m, method)
        assert got.dtype == np.uint8 and got.shape == (m,)
        assert np.array_equal(got, want), method


@pytest.mark.parametrize("block", [1, 2, 3, 7, 16, 64, 100])
@pytest.mark.parametrize("method", ["fft", "ntt"])
def test_blocked_agrees(method, block):
    """Square blocks (overlap-add in the transform domain), blocks not dividing n or m."""
    rng = np.random.default_rng(block)
    for n, m in ((1, 1), (50, 1), (50, 50), (233, 101), (300, 7)):
        x, seed = random_case(rng, n, m)
        want = toeplitz_hash(x, seed, m, "naive")
        assert np.array_equal(toeplitz_hash(x, seed, m, method, block=block), want)


def test_planned_row_of_blocks():
    """The NTT plan cuts the input into blocks filling a power-of-two transform when m << n."""
    n, m = 10**5, 5000
    assert privacy._plan("ntt", n, m)[0] < n
    rng = np.random.default_rng(3)
    x, seed = random_case(rng, n, m)
    assert np.array_equal(toeplitz_hash(x, seed, m, "ntt"), toeplitz_hash(x, seed, m, "fft"))


def test_large_fft_and_ntt_agree():
    rng = np.random.default_rng(4)
    n, m = 10**6, 10**6 // 2
    x, seed = random_case(rng, n, m)
    y_fft = toeplitz_hash(x, seed, m, "fft")
    y_ntt = toeplitz_hash(x, seed, m, "ntt")
    assert np.array_equal(y_fft, y_ntt)
    # A few rows by the definition.
    for i in (0, 1, m // 2, m - 1):
        row = seed[i:i + n][::-1]
        assert y_ntt[i] == int(row.astype(np.int64) @ x) % 2
    assert 0.45 < y_ntt.mean() < 0.55


def test_linearity():
    rng = np.random.default_rng(5)
    n, m = 777, 300
    x1, seed1 = random_case(rng, n, m)
    x2, seed2 = random_case(rng, n, m)
    for method in privacy.METHODS:
        h = toeplitz_hash
        assert np.array_equal(h(x1 ^ x2, seed1, m, method),
                              h(x1, seed1, m, method) ^ h(x2, seed1, m, method))
        assert np.array_equal(h(x1, seed1 ^ seed2, m, method),
                              h(x1, seed1, m, method) ^ h(x1, seed2, m, method))
        assert not h(np.zeros(n, np.uint8), seed1, m, method).any()


def test_input_types():
    rng = np.random.default_rng(6)
    x, seed = random_case(rng, 40, 20)
    want = toeplitz_hash(x, seed, 20)
    assert np.array_equal(toeplitz_hash(x.astype(bool), seed.astype(np.int64), 20), want)
    assert np.array_equal(toeplitz_hash(x.tolist(), seed.tolist(), np.int32(20)), want)
    assert np.array_equal(amplify(x, 20, seed), want)
    assert toeplitz_hash(x, seed[:39], 0).shape == (0,)


def test_seed_length():
    assert seed_length(10, 4) == 13
    assert seed_length(1, 1) == 1
    assert seed_length(5, 0) == 4


@pytest.mark.parametrize("call, match", [
    (lambda: toeplitz_hash(np.ones(10, np.uint8), np.ones(10, np.uint8), 4), "10 bits.*13"),
    (lambda: toeplitz_hash(np.ones(10, np.uint8), np.ones(20, np.uint8), 11), "m = 11"),
    (lambda: toeplitz_hash(np.ones(10, np.uint8), np.ones(8, np.uint8), -1), "-1"),
    (lambda: toeplitz_hash(np.array([0, 1, 2, 1]), np.ones(5, np.uint8), 2),
     "not 2 .at position 2"),
    (lambda: toeplitz_hash(np.array([0, 1, -1, 1]), np.ones(5, np.uint8), 2), "not -1"),
    (lambda: toeplitz_hash(np.ones(4, np.uint8), np.array([1, 1, 3, 0, 1]), 2),
     "Seed must hold bits 0/1, not 3"),
    (lambda: toeplitz_hash(np.ones(4), np.ones(5, np.uint8), 2), "dtype float64"),
    (lambda: toeplitz_hash(np.ones((2, 2), np.uint8), np.ones(5, np.uint8), 2), r"\(2, 2\)"),
    (lambda: toeplitz_hash(np.zeros(0, np.uint8), np.zeros(0, np.uint8), 0), "not 0"),
    (lambda: toeplitz_hash(np.ones(4, np.uint8), np.ones(5, np.uint8), 2, "dft"), "'dft'"),
    (lambda: toeplitz_hash(np.ones(4, np.uint8), np.ones(5, np.uint8), 2, "fft", block=0),
     "not 0"),
    (lambda: seed_length(3, 4), "m = 4"),
    (lambda: seed_length(0, 0), "not 0"),
    (lambda: toeplitz_matrix(np.ones(3, np.uint8), 3, 2), "3 bits.*4"),
])
def test_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_rejects_non_integer_m():
    with pytest.raises(TypeError, match="2.5"):
        toeplitz_hash(np.ones(4, np.uint8), np.ones(5, np.uint8), 2.5)


def test_ntt_input_limit(monkeypatch):
    monkeypatch.setattr(privacy, "NTT_PRIME", 7)
    with pytest.raises(ValueError, match="not 8"):
        toeplitz_hash(np.ones(8, np.uint8), np.ones(8, np.uint8), 1, "ntt")


def test_fft_rounding_is_checked(monkeypatch):
    """A transform off by 0.3 is refused, not rounded."""
    real = privacy.scipy.fft.irfft

    def noisy(*args, **kwargs):
        return real(*args, **kwargs) + 0.3

    monkeypatch.setattr(privacy.scipy.fft, "irfft", noisy)
    rng = np.random.default_rng(7)
    x, seed = random_case(rng, 100, 50)
    with pytest.raises(ArithmeticError, match="rounding error 0.3"):
        toeplitz_hash(x, seed, 50, "fft")


def test_ntt_tables():
    """The stage tables hold powers of primitive roots and their inverses."""
    tw, tws, itw, itws = privacy._ntt_tables(64)
    p = NTT_PRIME
    for h in (1, 2, 8, 32):
        w = int(tw[h + 1]) if h > 1 else 1
        assert pow(w, 2 * h, p) == 1 and (h == 1 or pow(w, h, p) == p - 1)
        for j in range(h):
            assert int(tw[h + j]) == pow(w, j, p)
            assert int(tw[h + j]) * int(itw[h + j]) % p == 1
            assert int(tws[h + j]) == (int(tw[h + j]) << 32) // p


def test_bench_structure():
    out = bench_privacy(sizes=(1000, 3000), ratio=0.5, seed=1, repeats=1)
    assert out["seed"] == 1 and out["ratio"] == 0.5
    assert {(r["n"], r["method"]) for r in out["results"]} == {
        (1000, "fft"), (1000, "ntt"), (3000, "fft"), (3000, "ntt")}
    for r in out["results"]:
        assert r["m"] == r["n"] // 2 and r["seconds"] > 0 and r["mbps"] > 0
    assert set(out["best_mbps"]) == {1000, 3000}
    with pytest.raises(ValueError, match="ratio"):
        bench_privacy(sizes=(100,), ratio=1.5)
