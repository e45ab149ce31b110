"""Alice's and Bob's distillation hosts: the block protocol over the authenticated channel.

Bob's host drives. Each block goes through these messages (``A`` Alice, ``B`` Bob); every one
is authenticated (:mod:`.channel`), and any failure (a rejected message, a timeout, an
inconsistent answer, a failed verification) aborts the block: no key comes out of it.

1. ``B: block`` (opens the block; may skip sequence numbers) — block id, the indices of
   Bob's measured detections and his basis for each (Z or X detector), and the last block
   Bob stored (see 7).
2. ``A: announce`` — for each index, Alice's basis, intensity class and whether the symbol is
   usable (valid and still in her symbol memory). Both now sift alike: a detection is sifted
   when usable and the bases agree. Z-basis detections of every intensity form the raw key.
3. ``B: x_bits`` — Bob's bits of the sifted X detections; ``A: x_errors`` — the errors per
   intensity (the X basis is all disclosed: parameter estimation).
4. Error correction of the Z key (:mod:`.reconcile`): ``B: ec`` / ``A: ec_reply`` pairs,
   Bob's corrected key equals Alice's unless the method failed.
5. ``A: verify`` — a fresh hash key and ``t`` bits of the polynomial hash of her key
   (:func:`~.auth.verification_bits`: collision probability at most ``eps_cor``); ``B:
   verified`` — whether Bob's hash agrees, and the Z errors per intensity that correction
   found (so both hold the same counts).
6. Both compute the key length from the finite-key bound (:mod:`.finite_key`) with the
   leakage actually spent: every bit error correction disclosed plus the ``t`` verification
   bits (kept on top of the bound's own ``log2(2/eps_cor)`` term: conservative). ``A: pa`` —
   the Toeplitz seed and the length; Bob checks the length equals his. Both hash
   (:mod:`.privacy`).
7. Key: the first bytes of each block's key refill the authentication pools (the pads its
   tagged messages took, plus ``replenish_bytes`` for aborted blocks; half per direction),
   the rest goes to the key sink. ``A: done``; Bob stores on it. Alice
   holds her block's key until Bob's next ``block`` (or ``close``) says he stored it, and
   drops it otherwise, so that a lost ``done`` never leaves a key on one side only.
"""

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ...gateware.records import BASIS_X, BASIS_Z
from .auth import AuthenticationError, verification_bits, verification_hash
from .channel import AuthenticatedChannel, ChannelClosed, ChannelTimeout
from .sift import bob_reading

__all__ = ["DistillConfig", "BlockResult", "BlockAborted", "AliceHost", "BobHost", "run_pair"]

CLASSES = 4


class BlockAborted(Exception):
    """A block could not produce key; the message says why."""


@dataclass
class DistillConfig:
    """What both hosts must agree on (they check it in the first block).

    ``protocol``: the finite-key bound (:func:`~.finite_key.key_length`); ``intensities``
    (of her Z states; ``intensities_x`` of her X states when they differ, ``None``: the
    same) and ``probabilities`` of Alice's intensity classes; ``p_z`` her Z-basis
    probability;
    ``eps_sec``, ``eps_cor``; ``reconciler`` (``cascade`` or ``ldpc``) and its options;
    ``qber_guess``: the QBER assumed for the first block's error correction (later blocks
    use the previous block's); ``replenish_bytes``: key bytes of each block returned to the
    authentication pools beyond what the block spent (half per direction).
    """

    protocol: str = "1decoy-3state"
    intensities: tuple = (0.5, 0.1)
    probabilities: tuple = (0.7, 0.3)
    intensities_x: tuple | None = None
    p_z: float = 0.9
    eps_sec: float = 1e-9
    eps_cor: float = 1e-15
    reconciler: str = "cascade"
    reconciler_options: dict = field(default_factory=dict)
    qber_guess: float = 0.01
    replenish_bytes: int = 64

    def as_message(self):
        d = asdict(self)
        d["intensities"] = list(d["intensities"])
        d["probabilities"] = list(d["probabilities"])
        if d["intensities_x"] is not None:
            d["intensities_x"] = list(d["intensities_x"])
        return d


@dataclass
class BlockResult:
    """What one block produced (on either side)."""

    block: int
    status: str                     # "key", "aborted" or "empty"
    reason: str = ""
    detections: int = 0
    sifted_z: int = 0
    sifted_x: int = 0
    errors_z: int = 0
    errors_x: int = 0
    qber_z: float = float("nan")
    qber_x: float = float("nan")
    disclosed_bits: int = 0
    verification_bits: int = 0
    efficiency: float = float("nan")
    key_bits: int = 0
    stored_bits: int = 0
    bounds: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)     # {"Z"|"X": {"n"|"m": per class}}
    seconds: float = 0.0

    def as_dict(self):
        return asdict(self)


def _per_class(intensity, mask):
    return np.bincount(intensity[mask].astype(np.int64), minlength=CLASSES)[:CLASSES]


def _counts(n_z, m_z, n_x, m_x, classes):
    return {"Z": {"n": n_z[:classes].astype(np.int64), "m": m_z[:classes].astype(np.int64)},
            "X": {"n": n_x[:classes].astype(np.int64), "m": m_x[:classes].astype(np.int64)}}


def _key_length(config, counts, leak):
    from .finite_key import key_length
    result = key_length(counts, protocol=config.protocol, intensities=config.intensities,
                        probabilities=config.probabilities, eps_sec=config.eps_sec,
                        eps_cor=config.eps_cor, leak_ec=leak,
                        intensities_x=config.intensities_x)
    bounds = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    bounds = {k: (float(v) if isinstance(v, (float, np.floating)) else v)
              for k, v in bounds.items() if isinstance(v, (int, float, np.number, str))}
    return int(bounds["key_length"]), bounds


def _pack(bits):
    return np.packbits(np.asarray(bits, np.uint8), bitorder="little").tobytes()


#: Message kinds sent without a tag of their own (:meth:`AuthenticatedChannel.defer`): the
#: interactive error-correction exchange, authenticated as a whole by Bob's ``ec_done``.
DEFERRED_KINDS = ("ec", "ec_reply")
#: Tagged messages a block sends at most per direction (Bob: block, x_bits, ec_done,
#: verified, and an abort or close; Alice: announce, x_errors, verify, pa, done), with room.
TAGGED_PER_BLOCK = 7


class _Host:
    def __init__(self, channel: AuthenticatedChannel, config: DistillConfig, *, sink=None,
                 rng=None):
        self.channel = channel
        # error correction's many requests and replies are covered by the tag of the next
        # message ("ec_done"), not one pad each (channel.py, deferred messages)
        channel.defer(DEFERRED_KINDS)
        self.config = config
        self.sink = sink
        self.rng = rng or np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
        self.results = []
        self.key_bits_total = 0

    def _abort(self, block, error):
        """The result of a block given up on ``error``; tells the peer (if it can)."""
        try:
            # resync: an abort ends the block whatever was lost or deferred before it
            self.channel.send("abort", {"block": block, "reason": str(error)[:200]},
                              resync=True)
        except (AuthenticationError, OSError):
            pass
        return BlockResult(block, "aborted", reason=f"{type(error).__name__}: {error}")

    def _replenish_and_sink(self, block, key_bits, meta, rounds):
        """Split a block's key: pools first, then the sink. Returns the bits sunk.

        Each direction's pool gets back the pads of a block's tagged messages (at most
        :data:`TAGGED_PER_BLOCK` per direction; the ``rounds`` error-correction round trips
        are deferred messages and take none; the hash key is kept), plus ``replenish_bytes /
        2`` for aborted blocks: both sides compute the same split."""
        key = _pack(key_bits[: len(key_bits) // 8 * 8])
        per_direction = 16 * TAGGED_PER_BLOCK + self.config.replenish_bytes // 2
        half = min(per_direction, len(key) // 2)
        self.channel.pools["alice"].replenish(key[:half])
        self.channel.pools["bob"].replenish(key[half:2 * half])
        rest = key[2 * half:]
        if rest and self.sink is not None:
            self.sink(block, rest, meta)
        return 8 * len(rest)


class BobHost(_Host):
    """Bob's distillation host: drives the block protocol (module docstring).

    Parameters
    ----------
    channel : AuthenticatedChannel
    config : DistillConfig
    roles : array
        The role of each of Bob's detector channels.
    sink : callable
        ``sink(block, key_bytes, meta)``, called once per block with key.
    """

    def __init__(self, channel, config, *, roles, sink=None, rng=None):
        super().__init__(channel, config, sink=sink, rng=rng)
        self.roles = np.asarray(roles, np.uint8)
        self.last_stored = -1
        self.qber = config.qber_guess

    def run_block(self, block, records):
        """Distil one block of Bob's records (``index``, ``channel``, ``cls``)."""
        started = time.perf_counter()
        try:
            result = self._block(block, records)
        except (AuthenticationError, BlockAborted, OSError) as error:
            result = self._abort(block, error)
        result.seconds = time.perf_counter() - started
        self.results.append(result)
        return result

    def close(self):
        """Tell Alice the session ends (and which block Bob stored last)."""
        self.channel.send("close", {"last_stored": self.last_stored}, resync=True)

    def _ask(self, message):
        self._rounds += 1
        self.channel.send("ec", message)
        kind, reply = self.channel.recv(("ec_reply", "abort"))
        if kind == "abort":
            raise BlockAborted(f"Alice aborted: {reply.get('reason')}")
        return reply

    def _block(self, block, records):
        from .reconcile import efficiency, get_reconciler
        cfg = self.config
        measured, basis, bit = bob_reading(self.roles, records["channel"], records["cls"])
        index = np.asarray(records["index"], np.uint64)[measured]
        basis, bit = basis[measured], bit[measured]
        self.channel.send("block", {"block": block, "index": index, "basis": basis,
                                    "last_stored": self.last_stored,
                                    "config": repr(sorted(cfg.as_message().items()))},
                          resync=True)
        _, ann = self.channel.recv("announce")
        if len(ann["basis"]) != len(index) or ann["block"] != block:
            raise BlockAborted(f"Alice announced {len(ann['basis'])} symbols for block "
                               f"{ann['block']}, not {len(index)} for {block}")
        sifted = (ann["usable"] == 1) & (ann["basis"] == basis)
        intensity = ann["intensity"].astype(np.int64)
        z = sifted & (basis == BASIS_Z)
        x = sifted & (basis == BASIS_X)
        result = BlockResult(block, "empty", detections=len(index), sifted_z=int(z.sum()),
                             sifted_x=int(x.sum()))
        self.channel.send("x_bits", {"bits": bit[x]})
        _, xe = self.channel.recv("x_errors")
        m_x = np.asarray(xe["errors"], np.int64)
        result.errors_x = int(m_x.sum())
        result.qber_x = result.errors_x / max(result.sifted_x, 1)
        key = bit[z]
        if len(key) == 0:
            self.channel.send("ec_done", {"ok": False})
            return result
        # the public seed of the shuffles / code choices, from this host's generator (a
        # seeded session reproduces its disclosures)
        options = {"seed": int(self.rng.integers(0, 1 << 63)), **cfg.reconciler_options}
        reconciler = get_reconciler(cfg.reconciler, **options)
        self._rounds = 0
        qber = min(max(self.qber, 1e-3), 0.25)
        try:
            corrected, stats = reconciler.bob(key, qber, self._ask)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            # Alice's replies are deferred messages, not yet authenticated: one that makes no
            # sense is a forgery
            self.channel.reject(f"Alice's error-correction reply cannot be used: {error}")
        self.channel.send("ec_done", {"ok": bool(stats.get("success", True))})
        wrong = corrected != key
        m_z = _per_class(intensity[z], wrong)
        _, ver = self.channel.recv("verify")
        t = ver["t"]
        ok = verification_hash(corrected, ver["hash_key"], t) == ver["hash"]
        self.channel.send("verified", {"ok": bool(ok), "errors": m_z})
        result.disclosed_bits = int(stats["disclosed_bits"])
        result.verification_bits = t
        result.errors_z = int(m_z.sum())
        result.qber_z = result.errors_z / len(key)
        result.efficiency = efficiency(result.disclosed_bits, len(key), result.qber_z) \
            if result.errors_z else float("nan")
        if not ok:
            raise BlockAborted("Verification failed: the corrected keys differ")
        self.qber = result.qber_z if result.errors_z else self.qber
        counts = _counts(_per_class(intensity, z), m_z, _per_class(intensity, x), m_x,
                         len(cfg.intensities))
        result.counts = {b: {k: [int(v) for v in c[k]] for k in c} for b, c in counts.items()}
        length, result.bounds = _key_length(cfg, counts, result.disclosed_bits + t)
        _, pa = self.channel.recv("pa")
        if pa["length"] != length:
            raise BlockAborted(f"Alice's key length {pa['length']} differs from Bob's {length}")
        from .privacy import toeplitz_hash
        final = toeplitz_hash(corrected, np.unpackbits(np.frombuffer(pa["seed"], np.uint8),
                                                       bitorder="little")[
            :len(corrected) + length - 1], length) if length else np.zeros(0, np.uint8)
        _, done = self.channel.recv("done")
        if done["block"] != block:
            raise BlockAborted(f"Alice finished block {done['block']}, not {block}")
        result.key_bits = length
        result.status = "key" if length else "empty"
        if length:
            result.stored_bits = self._replenish_and_sink(block, final, result.as_dict(),
                                                          self._rounds)
            self.key_bits_total += result.stored_bits
        self.last_stored = block
        return result


class AliceHost(_Host):
    """Alice's distillation host: answers Bob's blocks (module docstring).

    Parameters
    ----------
    lookup : callable
        ``lookup(indices) -> {basis, bit, intensity, valid, available}`` arrays: her logged
        symbols (her board's :meth:`~timebin.host.board.Board.lookup`, or a log).
    """

    def __init__(self, channel, config, *, lookup, sink=None, rng=None):
        super().__init__(channel, config, sink=sink, rng=rng)
        self.lookup = lookup
        self.pending = None             # (block, key bits, meta) until Bob stored it
        self._tainted = False
        self._next = None

    def serve(self, max_blocks=None):
        """Answer blocks until Bob closes (or ``max_blocks`` blocks were handled)."""
        handled = 0
        while max_blocks is None or handled < max_blocks:
            try:
                kind, body = self._next or self.channel.recv(("block", "close", "abort"))
            except ChannelClosed:
                break
            except ChannelTimeout:
                continue                # Bob is busy: wait for his next block
            except AuthenticationError:
                # A forged or replayed message between blocks: the next block pays for it.
                self._tainted = True
                continue
            self._next = None
            if kind == "abort":
                continue
            self._settle(body["last_stored"])
            if kind == "close":
                break
            started = time.perf_counter()
            block = body["block"]
            try:
                result = self._block(body)
            except OSError as error:    # Bob has gone: this block gives nothing
                self.results.append(BlockResult(block, "aborted", reason=f"{error}"))
                break
            except (AuthenticationError, BlockAborted) as error:
                result = self._abort(block, error)
            result.seconds = time.perf_counter() - started
            self.results.append(result)
            handled += 1

    def _settle(self, last_stored):
        """Bob says which block he stored last: keep or drop the pending key."""
        if self.pending is None:
            return
        block, final, meta, rounds = self.pending
        self.pending = None
        if last_stored == block:
            stored = self._replenish_and_sink(block, final, meta, rounds)
            self.key_bits_total += stored
            for r in self.results:
                if r.block == block:
                    r.stored_bits = stored
        else:
            for r in self.results:
                if r.block == block:
                    r.status, r.reason = "aborted", "Bob did not store this block"

    def _recv(self, *kinds):
        """The next message of one of ``kinds`` as ``(kind, body)``; Bob's abort, or his
        next block (kept for :meth:`serve`), aborts this one."""
        got, body = self.channel.recv((*kinds, "abort", "block"))
        if got == "abort":
            raise BlockAborted(f"Bob aborted: {body.get('reason')}")
        if got == "block":
            self._next = (got, body)
            raise BlockAborted("Bob started a new block")
        return got, body

    def _block(self, msg):
        from .reconcile import get_reconciler
        cfg = self.config
        block = msg["block"]
        if msg["config"] != repr(sorted(cfg.as_message().items())):
            raise BlockAborted("Alice's and Bob's distillation settings differ")
        if self._tainted:
            self._tainted = False
            raise BlockAborted("A message was rejected before this block began")
        index, bob_basis = msg["index"], msg["basis"]
        sym = self.lookup(index)
        usable = ((np.asarray(sym["valid"]) == 1)
                  & (np.asarray(sym.get("available", np.ones(len(index)))) == 1))
        basis = np.asarray(sym["basis"], np.uint8)
        intensity = np.asarray(sym["intensity"], np.uint8)
        self.channel.send("announce", {"block": block, "basis": basis,
                                       "intensity": intensity,
                                       "usable": usable.astype(np.uint8)})
        sifted = usable & (basis == bob_basis)
        z = sifted & (basis == BASIS_Z)
        x = sifted & (basis == BASIS_X)
        bits = np.asarray(sym["bit"], np.uint8)
        result = BlockResult(block, "empty", detections=len(index), sifted_z=int(z.sum()),
                             sifted_x=int(x.sum()))
        x_bits = self._recv("x_bits")[1]["bits"]
        if len(x_bits) != result.sifted_x:
            raise BlockAborted(f"Bob sent {len(x_bits)} X bits, not {result.sifted_x}")
        m_x = _per_class(intensity[x], bits[x] != x_bits)
        self.channel.send("x_errors", {"errors": m_x})
        result.errors_x = int(m_x.sum())
        key = bits[z]
        side = get_reconciler(cfg.reconciler, **cfg.reconciler_options).alice(key) \
            if len(key) else None
        rounds = 0
        got, body = self._recv("ec", "ec_done")
        while got == "ec":
            rounds += 1
            try:
                reply = side.respond(body)
            except (ValueError, KeyError, TypeError, IndexError) as error:
                # a deferred request not yet authenticated that makes no sense: a forgery
                self.channel.reject(f"Bob's error-correction request {rounds} cannot be "
                                    f"answered: {error}")
            self.channel.send("ec_reply", reply)
            got, body = self._recv("ec", "ec_done")
        if not body["ok"]:
            return result
        t = verification_bits(len(key), cfg.eps_cor)
        hash_key = os.urandom(16)
        self.channel.send("verify", {"t": t, "hash_key": hash_key,
                                     "hash": verification_hash(key, hash_key, t)})
        _, ver = self._recv("verified")
        if not ver["ok"]:
            raise BlockAborted("Verification failed: the corrected keys differ")
        m_z = np.asarray(ver["errors"], np.int64)
        disclosed = int(side.disclosed_bits)
        result.disclosed_bits, result.verification_bits = disclosed, t
        result.errors_z = int(m_z.sum())
        counts = _counts(_per_class(intensity, z), m_z, _per_class(intensity, x), m_x,
                         len(cfg.intensities))
        result.counts = {b: {k: [int(v) for v in c[k]] for k in c} for b, c in counts.items()}
        length, result.bounds = _key_length(cfg, counts, disclosed + t)
        from .privacy import seed_length, toeplitz_hash
        seed_bits = self.rng.integers(0, 2, seed_length(len(key), length), dtype=np.uint8) \
            if length else np.zeros(0, np.uint8)
        self.channel.send("pa", {"length": length, "seed": _pack(seed_bits)})
        final = toeplitz_hash(key, seed_bits, length) if length else np.zeros(0, np.uint8)
        self.channel.send("done", {"block": block})
        result.key_bits = length
        if length:
            result.status = "key"
            self.pending = (block, final, result.as_dict(), rounds)
        return result


def run_pair(data, config=None, *, roles, secret, timeout=60.0, seed=None):
    """Run Alice's and Bob's hosts in one process, over a socket pair: a local session.

    ``data``: iterable of ``(start, symbols, records)`` blocks (as
    :func:`timebin.sim.keydata.blocks` yields them: Alice's symbol log from global index
    ``start``, Bob's records). Returns ``(alice, bob, keys)``: the two hosts (their
    ``results`` per block) and ``{"alice": {block: bytes}, "bob": {...}}`` of stored key.
    """
    import socket
    import threading

    from .auth import direction_pools

    config = config or DistillConfig()
    keys = {"alice": {}, "bob": {}}
    logs = {}

    def lookup(indices):
        indices = np.asarray(indices, np.uint64)
        out = {name: np.zeros(len(indices), np.uint8)
               for name in ("basis", "bit", "intensity", "valid", "available")}
        for start, symbols in logs.items():
            inside = (indices >= np.uint64(start)) & (
                indices < np.uint64(start + len(symbols["basis"])))
            at = (indices[inside] - np.uint64(start)).astype(np.int64)
            for name in ("basis", "bit", "intensity", "valid"):
                out[name][inside] = symbols[name][at]
            out["available"][inside] = 1
        return out

    a, b = socket.socketpair()
    # one generator per host: a shared one would be drawn in thread order (not reproducible)
    alice_rng, bob_rng = (np.random.default_rng(s)
                          for s in np.random.SeedSequence(seed).spawn(2))
    alice = AliceHost(AuthenticatedChannel(a, role="alice", pools=direction_pools(secret),
                                           timeout=timeout), config, lookup=lookup,
                      sink=lambda block, key, meta: keys["alice"].__setitem__(block, key),
                      rng=alice_rng)
    bob = BobHost(AuthenticatedChannel(b, role="bob", pools=direction_pools(secret),
                                       timeout=timeout), config, roles=roles,
                  sink=lambda block, key, meta: keys["bob"].__setitem__(block, key),
                  rng=bob_rng)
    thread = threading.Thread(target=alice.serve, daemon=True)
    thread.start()
    try:
        for block, (start, symbols, records) in enumerate(data):
            logs.clear()                # bounded memory: Alice keeps the current block's log
            logs[start] = symbols
            bob.run_block(block, records)
        bob.close()
        thread.join(timeout)
    finally:
        alice.channel.close()
        bob.channel.close()
    return alice, bob, keys
