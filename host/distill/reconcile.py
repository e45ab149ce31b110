"""Information reconciliation (error correction): one interface, two methods.

Alice and Bob hold keys that differ in a fraction ``qber`` of the bits. Bob drives the
protocol and ends with Alice's key; Alice only answers. The two sides usually run in
different processes and talk over the authenticated classical channel, so the interface is
message based::

    side = get_reconciler("cascade").alice(alice_key)            # Alice's process
    corrected, stats = get_reconciler("cascade").bob(bob_key, qber, ask)   # Bob's process

where ``ask(message) -> reply`` sends one message to Alice and returns
``side.respond(message)`` (one round trip). Messages are dicts whose values are ``int``,
``float``, ``str``, ``bytes`` or 1-D numpy arrays (``uint8``, ``int32``, ``int64``,
``uint64``), which the channel serialises.

Leakage: every parity or syndrome bit Alice reveals is counted on both sides, by Alice in
``side.disclosed_bits`` and by Bob in ``stats["disclosed_bits"]``; the two agree exactly.
The privacy amplification subtracts it (plus the verification hash) from the key length.

Efficiency ``f = disclosed_bits / (n h(Q))`` with ``h`` the binary entropy: 1 is the
Slepian-Wolf limit. Bob's ``stats["efficiency"]`` uses the error count he corrected (the
actual QBER) when there was at least one error and the protocol succeeded, and his estimate
``qber`` otherwise (``stats["efficiency_basis"]`` says which).

Methods (:data:`RECONCILERS`): ``cascade`` (:mod:`.cascade`, interactive, works on the whole
key) and ``ldpc`` (:mod:`.ldpc`, rate-adaptive syndrome coding of frames with blind retries).
:func:`bench_reconcile` measures both.
"""

import abc
import importlib
import math
import time
from collections.abc import Mapping

import numpy as np
from numba import njit

__all__ = ["AliceSide", "Reconciler", "RECONCILERS", "get_reconciler", "binary_entropy",
           "efficiency", "check_key", "check_qber", "bench_reconcile", "MAX_KEY_BITS"]

#: Longest key either method accepts (bits).
MAX_KEY_BITS = 1 << 30


def binary_entropy(p):
    """h(p) = -p log2 p - (1-p) log2 (1-p), with h(0) = h(1) = 0."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"A probability must lie in [0, 1], not {p!r}")
    if p in (0.0, 1.0):
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


def efficiency(disclosed_bits, n, qber):
    """Reconciliation efficiency f = disclosed_bits / (n h(qber)), 1 at the Shannon limit."""
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"The key length must be a positive integer, not {n!r}")
    if disclosed_bits < 0:
        raise ValueError(f"The disclosed bits must not be negative, not {disclosed_bits!r}")
    return float(disclosed_bits) / (int(n) * binary_entropy(check_qber(qber)))


def check_qber(qber):
    """``qber`` as a float in the open interval (0, 0.5), or ValueError naming it."""
    try:
        value = float(qber)
    except (TypeError, ValueError):
        raise ValueError(f"The QBER must be a number in (0, 0.5), not {qber!r}") from None
    if not 0.0 < value < 0.5:
        raise ValueError(f"The QBER must lie in the open interval (0, 0.5), not {qber!r}")
    return value


def check_key(key, name="key"):
    """``key`` as a contiguous 1-D ``uint8`` array of 0/1 of length 1 .. MAX_KEY_BITS, or
    ValueError naming what is wrong."""
    array = np.asarray(key)
    if array.ndim != 1:
        raise ValueError(f"The {name} must be a 1-D array of bits, not of shape {array.shape}")
    if len(array) == 0:
        raise ValueError(f"The {name} is empty")
    if len(array) > MAX_KEY_BITS:
        raise ValueError(f"The {name} has {len(array)} bits, more than {MAX_KEY_BITS}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "biu":
            raise ValueError(f"The {name} must hold integer bits, not {array.dtype}")
        if array.dtype.kind == "i" and array.min() < 0:
            raise ValueError(f"The {name} holds {int(array.min())}, not a bit")
    if array.max() > 1:
        raise ValueError(f"The {name} holds {int(array.max())}, not a bit")
    return np.ascontiguousarray(array, dtype=np.uint8)


# ---- messages ------------------------------------------------------------------------------

def message_field(message, name, kind, *, who="message"):
    """``message[name]`` checked to be of ``kind``: ``int``, ``float``, ``str``, ``bytes`` or a
    numpy dtype for a 1-D array (converted to it when its values fit); ValueError naming the
    field and the bad value otherwise."""
    if not isinstance(message, dict):
        raise ValueError(f"A {who} must be a dict, not {type(message).__name__}")
    if name not in message:
        raise ValueError(f"The {who} lacks the field {name!r} (it has {sorted(message)})")
    value = message[name]
    if kind is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"The {who} field {name!r} must be an int, not {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)):
            raise ValueError(f"The {who} field {name!r} must be a number, not {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"The {who} field {name!r} must be a str, not {value!r}")
        return value
    if kind is bytes:
        if not isinstance(value, (bytes, bytearray)):
            raise ValueError(f"The {who} field {name!r} must be bytes, not {value!r}")
        return bytes(value)
    dtype = np.dtype(kind)
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "biu":
        raise ValueError(f"The {who} field {name!r} must be a 1-D integer array, not "
                         f"{_describe(value)}")
    if value.dtype == dtype:
        return np.ascontiguousarray(value)
    limits = _LIMITS.get(dtype) or _LIMITS.setdefault(dtype, np.iinfo(dtype))
    if len(value) and (value.min() < limits.min or value.max() > limits.max):
        raise ValueError(f"The {who} field {name!r} holds values {int(value.min())} .. "
                         f"{int(value.max())}, outside {dtype}")
    return np.ascontiguousarray(value, dtype=dtype)


_LIMITS = {}


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} and shape {value.shape}"
    return repr(value)[:80]


def check_protocol(message, protocol):
    """The message is a dict of ``protocol``; ValueError naming what it is otherwise."""
    got = message_field(message, "protocol", str)
    if got != protocol:
        raise ValueError(f"A {protocol} reconciler got a message of protocol {got!r}")


# ---- shared pseudo-randomness --------------------------------------------------------------
# Both sides derive every public random choice (permutations, subsets, frame layouts) from a
# 64-bit seed that travels in Bob's messages, with this small generator (splitmix64) instead
# of numpy's: its stream is fixed here, so hosts with different numpy versions still agree.


@njit(cache=True, inline="always")
def splitmix64(state):
    """One step of splitmix64: (new state, output)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True)
def derive_seed(seed, a, b):
    """A 64-bit stream seed for item (a, b) of the session with ``seed``."""
    state = np.uint64(seed)
    state, z = splitmix64(state ^ (np.uint64(a) * np.uint64(0xD1342543DE82EF95)))
    state, z = splitmix64(z ^ (np.uint64(b) * np.uint64(0xAF251AF3B0F025B5)))
    return z


@njit(cache=True)
def random_words(count, seed):
    """``count`` pseudo-random 64-bit words of the stream ``seed``."""
    out = np.empty(count, np.uint64)
    state = np.uint64(seed)
    for i in range(count):
        state, out[i] = splitmix64(state)
    return out


@njit(cache=True)
def random_permutation(m, seed):
    """A uniformly random permutation of 0 .. m-1 (Fisher-Yates, int32, m <= 2^31) of the
    stream ``seed``; bounded draws by Lemire's multiply-shift with rejection (unbiased)."""
    out = np.empty(m, np.int32)
    for i in range(m):
        out[i] = i
    state = np.uint64(seed)
    mask = np.uint64(0xFFFFFFFF)
    for i in range(m - 1, 0, -1):
        bound = np.uint64(i + 1)
        state, z = splitmix64(state)
        product = (z >> np.uint64(32)) * bound
        if (product & mask) < bound:
            threshold = (mask + np.uint64(1) - bound) % bound      # 2^32 mod bound
            while (product & mask) < threshold:
                state, z = splitmix64(state)
                product = (z >> np.uint64(32)) * bound
        j = np.int64(product >> np.uint64(32))
        t = out[i]
        out[i] = out[j]
        out[j] = t
    return out


def fresh_seed():
    """A fresh 63-bit session seed from the operating system's randomness."""
    import secrets

    return secrets.randbits(63)


def check_seed(seed, name="seed"):
    """``seed`` as an int in [0, 2^64), or ValueError naming it."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= int(seed) < 1 << 64:
        raise ValueError(f"The {name} must be an integer in [0, 2^64), not {seed!r}")
    return int(seed)


# ---- the interface -------------------------------------------------------------------------

class AliceSide(abc.ABC):
    """Alice's end of one reconciliation: answers Bob's requests from her key.

    ``disclosed_bits`` counts every bit of information about her key she has revealed so far
    (parities, syndrome bits net of the secret random padding they cover, revealed padding
    bits); ``rounds`` counts the messages she answered."""

    def __init__(self, key):
        self.key = check_key(key, "Alice's key")
        self.n = len(self.key)
        self.disclosed_bits = 0
        self.rounds = 0

    @abc.abstractmethod
    def respond(self, message):
        """The reply (a dict) to one of Bob's messages; ValueError for a bad message."""


class Reconciler(abc.ABC):
    """An information-reconciliation method; options are fixed at construction."""

    #: Registry name.
    name = "abstract"

    @abc.abstractmethod
    def alice(self, key):
        """Alice's side (an :class:`AliceSide`) for her ``key``."""

    @abc.abstractmethod
    def bob(self, key, qber, ask):
        """Correct Bob's ``key`` towards Alice's with ``ask(message) -> reply`` round trips,
        given the QBER estimate ``qber`` in (0, 0.5). Returns ``(corrected_key, stats)``;
        ``stats`` holds at least ``disclosed_bits``, ``rounds``, ``n``, ``qber_estimate``,
        ``errors`` (bits Bob changed), ``efficiency`` and ``success``."""

    def reconcile(self, alice_key, bob_key, qber):
        """Both sides in this process (``ask = alice.respond``): ``(corrected, stats)``, with
        ``stats["alice_disclosed_bits"]`` counted on Alice's side. For tests and benchmarks."""
        alice_key = check_key(alice_key, "Alice's key")
        bob_key = check_key(bob_key, "Bob's key")
        if len(alice_key) != len(bob_key):
            raise ValueError(f"Alice's key has {len(alice_key)} bits but Bob's has "
                             f"{len(bob_key)}")
        side = self.alice(alice_key)
        corrected, stats = self.bob(bob_key, qber, side.respond)
        stats["alice_disclosed_bits"] = side.disclosed_bits
        return corrected, stats


def finish_stats(stats, key_in, key_out, qber):
    """Fill ``errors``, ``qber_actual`` and ``efficiency`` of Bob's ``stats``."""
    n = len(key_in)
    errors = int(np.count_nonzero(key_in != key_out))
    stats["n"] = n
    stats["qber_estimate"] = qber
    stats["errors"] = errors
    stats["qber_actual"] = errors / n
    if errors and errors < n / 2 and stats.get("success"):
        stats["efficiency"] = efficiency(stats["disclosed_bits"], n, errors / n)
        stats["efficiency_basis"] = "actual"
    else:
        stats["efficiency"] = efficiency(stats["disclosed_bits"], n, qber)
        stats["efficiency_basis"] = "estimate"
    return stats


class _Registry(Mapping):
    """Name -> reconciler class; the classes are imported on first use (their modules
    import this one)."""

    _where = {"cascade": ("cascade", "Cascade"), "ldpc": ("ldpc", "LDPC")}

    def __getitem__(self, name):
        module, cls = self._where[name]
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls)

    def __iter__(self):
        return iter(self._where)

    def __len__(self):
        return len(self._where)

    def __repr__(self):
        return repr(dict(self))


#: The reconciliation methods by name: ``{"cascade": Cascade, "ldpc": LDPC}``.
RECONCILERS = _Registry()


def get_reconciler(name, **options):
    """The reconciler registered as ``name`` (:data:`RECONCILERS`) built with ``options``."""
    if name not in RECONCILERS:
        raise ValueError(f"Unknown reconciler {name!r}; known: {sorted(RECONCILERS)}")
    return RECONCILERS[name](**options)


# ---- benchmark -----------------------------------------------------------------------------

def bench_reconcile(qbers=(0.01, 0.02, 0.03, 0.05, 0.08), n=1_000_000,
                    methods=("cascade", "ldpc"), seed=1, blocks=2, options=None):
    """Speed and efficiency of each method at each QBER, both sides in this process on one
    core (``ask = alice.respond``).

    For each method and QBER: ``blocks`` keys of ``n`` bits with exactly ``round(n * qber)``
    errors at random places; ``mbps`` is corrected key bits per second of wall time (both
    sides, after a warm-up that compiles the kernels and builds the codes), ``efficiency``
    the mean f against the actual error count, plus rounds, failures (``success`` false or
    keys that differ) and the disclosed bits. Returns a JSON-able dict."""
    import os
    import platform

    options = options or {}
    rng = np.random.default_rng(seed)
    results = []
    for method in methods:
        reconciler = get_reconciler(method, **options.get(method, {}))
        warm = rng.integers(0, 2, 4096, dtype=np.uint8)
        noisy = warm.copy()
        noisy[:41] ^= 1
        reconciler.reconcile(warm, noisy, 0.01)                # compile the numba kernels
        for qber in qbers:
            qber = check_qber(qber)
            errors = max(1, round(n * qber))
            seconds = 0.0
            f, rounds, disclosed, failures = [], [], [], 0
            reconciler.reconcile(*_noisy_pair(rng, min(n, 1 << 17), errors * min(n, 1 << 17)
                                              // n or 1), qber)  # build the codes it needs
            for _ in range(blocks):
                alice_key, bob_key = _noisy_pair(rng, n, errors)
                start = time.perf_counter()
                corrected, stats = reconciler.reconcile(alice_key, bob_key, qber)
                seconds += time.perf_counter() - start
                ok = bool(stats["success"]) and np.array_equal(corrected, alice_key)
                failures += not ok
                f.append(efficiency(stats["disclosed_bits"], n, errors / n))
                rounds.append(stats["rounds"])
                disclosed.append(stats["disclosed_bits"])
            results.append({"method": method, "qber": qber, "n": n, "blocks": blocks,
                            "errors_per_block": errors, "seconds": seconds,
                            "mbps": n * blocks / seconds / 1e6,
                            "efficiency": float(np.mean(f)), "efficiency_max": float(max(f)),
                            "rounds": float(np.mean(rounds)),
                            "disclosed_bits": float(np.mean(disclosed)),
                            "failures": failures})
    return {"bench": "distill", "what": "reconcile", "seed": seed,
            "machine": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count()},
            "numpy": np.__version__, "results": results}


def _noisy_pair(rng, n, errors):
    alice_key = rng.integers(0, 2, n, dtype=np.uint8)
    bob_key = alice_key.copy()
    bob_key[rng.choice(n, size=min(errors, n), replace=False)] ^= 1
    return alice_key, bob_key
