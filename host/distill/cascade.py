"""Cascade: interactive reconciliation by block parities and binary search.

# Ref: G. Brassard, L. Salvail, "Secret-key reconciliation by public discussion",
#      EUROCRYPT 1993 (Cascade: passes of shuffled blocks, BINARY search, the cascade effect).
# Ref: J. Martinez-Mateo, C. Pacher, M. Peev, A. Ciurana, V. Martin, "Demystifying the
#      information reconciliation protocol Cascade", QIC 15, 453 (2015): block sizes that
#      are powers of two, k1 = 2^ceil(log2(1/Q) - 1/2) and k2 = 2^ceil((log2(1/Q) + 11.5)/2)
#      ("Cascade opt. (8)"; here k2 = 4 k1, see :func:`block_sizes`), reuse of every parity
#      already exchanged, and closing passes of two half-key blocks.
# Ref: W. T. Buttler et al., PRA 67, 052303 (2003): BICONF, parities of random subsets.

The protocol, as Bob runs it (:meth:`Cascade.bob`):

1. **Passes.** Pass ``j`` shuffles the key with a pseudo-random permutation (Fisher-Yates
   driven by the session seed and ``j``) and cuts it into blocks of ``k_j = 2^L`` bits (the
   key is padded with zero bits, shuffled in with the rest, up to a whole number of blocks).
   The first message asks the parities of all blocks of every main pass (and of the first
   batch of confirmation halves): they do not depend on Bob's corrections. From pass 2 on,
   the parity of the last block follows from the others and the parity of the whole key
   (known from pass 1), so it is not asked (block-parity inference). Each pass is searched
   and cascaded only once the previous one has settled.
2. **Binary search, in parallel.** Every block (or sub-block) whose parity differs from
   Alice's holds an odd number of errors; Bob halves it, asks the parity of the left half
   and descends into the odd half, down to one bit. All open searches advance together: one
   message per step holds the questions of every search. A parity Bob already knows (or can
   deduce: a node is the XOR of its halves) is never asked again.
3. **Cascade.** A search that reaches a bit flips it at once. The flip changes the parity
   of the block (and known sub-blocks) holding that bit in every pass; the deepest known one
   that now differs from Alice's becomes a new open search, and an open search whose block
   became even is dropped. A pass has settled when no known parity differs. Round trips thus
   grow with the passes, log n and the longest cascade chain, not with the errors.
4. **Confirmation (BICONF with the complement).** Bob compares the parities of ``confirm``
   random halves of the key (random subsets, each with its complement, whose parity follows
   from the whole-key parity). A differing half is searched and cascaded like a block; then
   another batch, until a whole batch agrees. Each clean half catches a remaining error
   pattern with probability at least 1/2, so a clean batch leaves residual errors undetected
   with probability at most ``2^-confirm``.

Each block of a pass is a binary tree in heap order: node ``h`` (1 the whole block,
``2h`` and ``2h + 1`` its halves, ``2^L .. 2^(L+1) - 1`` the bits) of block ``b`` is number
``b 2^(L+1) + h`` of the pass (number ``b 2^(L+1)`` is unused). Node ``h`` at level
``l = floor(log2 h)`` covers positions ``b 2^L + (h - 2^l) 2^(L-l)`` and on, ``2^(L-l)`` of
them, of the shuffled, padded key. Bob's messages name nodes by (pass, number); Alice answers
from prefix parities of her shuffled key, in O(1) each. (Keeping each block's tree together
keeps Bob's per-flip updates within a few cache lines.)

Messages (Bob -> Alice): ``protocol`` ``"cascade"``, ``n`` (key length), ``seed``,
``define`` (int32: one entry per new pass, in order: ``L >= 0`` a shuffled pass of blocks of
``2^L`` bits, ``-1`` a random-half pass), ``pass`` (int32) and ``node`` (int64): the parities
asked. Reply: ``parities`` (uint8). Every answered parity counts as one disclosed bit.
"""

import math

import numpy as np
from numba import njit
from numba.typed import List

from .reconcile import (
    AliceSide,
    Reconciler,
    check_key,
    check_protocol,
    check_qber,
    check_seed,
    derive_seed,
    finish_stats,
    fresh_seed,
    message_field,
    random_permutation,
    random_words,
)

__all__ = ["Cascade", "CascadeAlice", "block_sizes"]

PROTOCOL = "cascade"
#: ``define`` code of a random-half (confirmation) pass.
HALF = -1
_MAX_PASSES = 4096


def block_sizes(qber, n):
    """log2 of the block sizes of the main passes for a QBER estimate and key length.

    k1 = 2^ceil(a) with a = log2(1/Q) - 1/2 and k3 = 4096 as in "Cascade opt. (8)" of
    Martinez-Mateo et al. (2015); k2 = 4 k1 instead of their 2^ceil((a + 12)/2), which halves
    the round trips (their long cascade chains run through the second pass) for about 0.5 %
    more disclosed bits (measured: f 1.039 against 1.033 at Q = 2 %, n = 10^6). Each is
    capped at half the padded key. Their closing passes of two half-key blocks are the
    confirmation batches."""
    qber = check_qber(qber)
    first = math.ceil(math.log2(1.0 / qber) - 0.5)
    top = max(0, math.ceil(math.log2(n)) - 1)
    return [max(1, min(s, top)) if top else 0 for s in (first, first + 2, 12)]


def _default_confirm(n):
    """Halves per confirmation batch. A clean batch misses remaining errors with probability
    2^-confirm; errors remain after the main passes in about a third of the keys of 4096 bits
    and 2-3 % of keys of 10^5 bits (measured), so 14 halves keep small keys' failures near
    2e-5 and 16 keep large keys' below 1e-6 (each half costs one disclosed bit)."""
    return 14 if n < 1 << 16 else 16


#: Steps of Bob's search and cascade without a new question to Alice after which her parities
#: are taken as inconsistent (every step opens or settles at least one block; an honest run
#: needs a handful).
_MAX_LOCAL_STEPS = 10_000

def _half_words(n, seed, pass_id):
    """The random half of pass ``pass_id``: 64-bit mask words, bit i of word w is key bit
    64 w + i (bits beyond n cleared)."""
    words = random_words((n + 63) // 64, np.uint64(derive_seed(np.uint64(seed), pass_id, 1)))
    if n % 64:
        words[-1] &= np.uint64((1 << (n % 64)) - 1)
    return words


def _pack(key):
    """The key as little-endian 64-bit words (bit i of word w is key bit 64 w + i)."""
    packed = np.packbits(key, bitorder="little")
    padded = np.zeros((len(packed) + 7) // 8 * 8, np.uint8)
    padded[:len(packed)] = packed
    return padded.view("<u8")


def _masked_parity(packed, words):
    return int(np.bitwise_count(np.bitwise_xor.reduce(packed & words))) & 1


class _Geometry:
    """Shape of one pass: ``nb`` blocks of ``2^L`` bits; ``nodes`` numbers in its trees."""

    def __init__(self, n, seed, pass_id, code):
        self.code = code
        if code >= 0:
            self.L = code
            self.nb = -(-n // (1 << code))
            self.words = None
        else:
            self.words = _half_words(n, seed, pass_id)
            self.size = int(np.bitwise_count(self.words).sum())
            self.L = max(0, math.ceil(math.log2(max(self.size, n - self.size, 1))))
            self.nb = 2
        self.m = self.nb << self.L
        self.nodes = self.nb << (self.L + 1)

    def tops(self):
        """Numbers of the blocks' top nodes."""
        return np.arange(self.nb, dtype=np.int64) << (self.L + 1) | 1

    def order(self, n, seed, pass_id):
        """Key index at each position of the shuffled, padded key (>= n: padding)."""
        if self.code >= 0:
            return random_permutation(self.m, np.uint64(derive_seed(np.uint64(seed), pass_id,
                                                                    0)))
        inside = np.unpackbits(self.words.view(np.uint8), bitorder="little")[:n]
        order = np.full(self.m, n, np.int32)
        chosen = np.flatnonzero(inside)
        rest = np.flatnonzero(inside == 0)
        order[:len(chosen)] = chosen
        k = 1 << self.L
        order[k:k + len(rest)] = rest
        return order


@njit(cache=True)
def _alice_prefix(order, key, n):
    """prefix[p] = parity of the shuffled key's first p positions."""
    m = len(order)
    prefix = np.empty(m + 1, np.uint8)
    acc = np.uint8(0)
    prefix[0] = 0
    for p in range(m):
        x = order[p]
        if x < n:
            acc ^= key[x]
        prefix[p + 1] = acc
    return prefix


# Bob's tree nodes are one byte each: his current parity, whether Alice's parity is known,
# and Alice's parity. A node "differs" (holds an odd number of errors) when it is known and
# the two parities differ: byte 3 (Bob 1, Alice 0) or 6 (Bob 0, Alice 1).
_BOB, _KNOWN, _ALICE = 1, 2, 4


@njit(cache=True)
def _bob_build(order, key, n, nb, levels):
    """Bob's tree bytes for a pass (all-padding nodes known, parity 0) and the position of
    each key bit in the pass."""
    k = np.int64(1) << levels
    inv = np.empty(n, np.int32)
    tree = np.empty(nb * 2 * k, np.uint8)
    padding = np.empty(len(order) - n, np.int64)
    n_pad = 0
    for b in range(nb):
        base = b * 2 * k
        tree[base] = 0
        for j in range(k):
            x = order[b * k + j]
            if x < n:
                inv[x] = b * k + j
                tree[base + k + j] = key[x]
            else:
                tree[base + k + j] = _KNOWN
                padding[n_pad] = base + k + j
                n_pad += 1
        for h in range(k - 1, 0, -1):
            tree[base + h] = (tree[base + 2 * h] ^ tree[base + 2 * h + 1]) & _BOB
    # Nodes made of padding only are known (parity 0 on both sides).
    mask = 2 * k - 1
    for i in range(n_pad):
        f = padding[i]
        h = f & mask
        while h > 1:
            sibling = f + 1 if h % 2 == 0 else f - 1
            if not tree[sibling] & _KNOWN:
                break
            f -= (h + 1) >> 1
            h >>= 1
            if tree[f] & _KNOWN:
                break
            tree[f] |= _KNOWN
    return inv, tree


@njit(cache=True)
def _store(trees, depth, passes, nodes, answers):
    """Record Alice's parities of left children and deduce their right siblings."""
    for i in range(len(nodes)):
        tree = trees[passes[i]]
        c = nodes[i]
        h = c & ((np.int64(1) << (depth[passes[i]] + 1)) - 1)
        alice = np.uint8(answers[i])
        right = alice ^ ((tree[c - (h >> 1)] >> 2) & 1)
        tree[c] = (tree[c] & _BOB) | _KNOWN | (alice << 2)
        tree[c + 1] = (tree[c + 1] & _BOB) | _KNOWN | (right << 2)


@njit(cache=True)
def _unique_nodes(passes, nodes):
    """Sort the searches by (pass, node) and drop duplicates."""
    keys = (passes << 40) | nodes
    order = np.argsort(keys, kind="mergesort")
    keep = np.ones(len(order), np.bool_)
    for i in range(1, len(order)):
        keep[i] = keys[order[i]] != keys[order[i - 1]]
    chosen = order[keep]
    return passes[chosen], nodes[chosen]


@njit(cache=True)
def _engine(key, trees, invs, orders, depth, built, act_pass, act_node, half_pass, half_words,
            half_alice, half_bob, q_pass, q_node, answers):
    """Bob's searches and the cascade, up to the next question to Alice.

    Each open search (pass, node: a node whose known parity differs from Bob's) walks down
    through the parities already known or deducible. A search that reaches a bit flips it at
    once in the key and in every built pass' tree; each flipped bit's path in every pass is
    checked for the deepest known node that now differs, which becomes a new search (unless
    already open); open searches whose node the flips made even are dropped; a half not
    built yet whose parity now differs is reported in ``opened``. The loop stops when every
    open search waits for the parity of a left child (returned, deduplicated, as ``q_pass``,
    ``q_node``), when a half opened, or when nothing is left. It starts by recording Alice's
    ``answers`` to the previous questions.
    Returns (act_pass, act_node, q_pass, q_node, opened, flips)."""
    _store(trees, depth, q_pass, q_node, answers)
    n = len(key)
    flips = 0
    opened = np.zeros(0, np.int64)
    while True:
        m = len(act_node)
        found = np.empty(m, np.int64)
        n_found = 0
        w_pass = np.empty(m, np.int64)
        w_node = np.empty(m, np.int64)
        w_query = np.empty(m, np.int64)
        n_wait = 0
        current = -1
        tree = trees[0]
        order = orders[0]
        levels = k = mask = np.int64(0)
        for i in range(m):
            p = act_pass[i]
            if p != current:                            # searches come sorted by pass
                current = p
                tree = trees[p]
                order = orders[p]
                levels = depth[p]
                k = np.int64(1) << levels
                mask = 2 * k - 1
            f = act_node[i]
            h = f & mask
            query = -1
            while h < k:
                c = f + h                               # left child
                left = tree[c]
                if left & _KNOWN:
                    alice = (left >> 2) & 1
                    right = tree[c + 1]
                    if not right & _KNOWN:
                        tree[c + 1] = (right & _BOB) | _KNOWN \
                            | ((alice ^ ((tree[f] >> 2) & 1)) << 2)
                else:
                    right = tree[c + 1]
                    if not right & _KNOWN:
                        query = c
                        break
                    alice = ((right ^ tree[f]) >> 2) & 1
                    tree[c] = (left & _BOB) | _KNOWN | (alice << 2)
                f = c if (alice ^ left) & 1 else c + 1
                h = f & mask
            if query < 0:
                found[n_found] = order[((f >> (levels + 1)) << levels) + h - k]
                n_found += 1
            else:
                w_pass[n_wait] = p
                w_node[n_wait] = f
                w_query[n_wait] = query
                n_wait += 1
        if n_found == 0:
            if n_wait == 0:
                return w_pass[:0], w_node[:0], w_pass[:0], w_query[:0], opened, flips
            q_pass, q_node = _unique_nodes(w_pass[:n_wait], w_query[:n_wait])
            return w_pass[:n_wait], w_node[:n_wait], q_pass, q_node, opened, flips
        # Flip the bits found (each once) everywhere.
        xs = np.unique(found[:n_found])
        if xs[-1] >= n:
            raise ValueError("Alice's parities are inconsistent: a search ended in padding")
        for x in xs:
            key[x] ^= 1
        for j in range(len(half_pass)):
            if half_alice[j] >= 0:
                for x in xs:
                    if (half_words[j, x >> 6] >> np.uint64(x & 63)) & 1:
                        half_bob[j] ^= 1
        flips += len(xs)
        if flips > n:
            # an honest exchange flips each wrong bit once: Alice's parities (a forged reply,
            # not yet authenticated) contradict each other
            raise ValueError("Alice's parities are inconsistent: more flips than key bits")
        # Per built pass: flip the bits' paths; keep the open searches that stay odd; add the
        # deepest odd known node on each flipped path.
        a_pass = np.empty(n_wait + len(xs) * len(trees), np.int64)
        a_node = np.empty(len(a_pass), np.int64)
        count = 0
        i = 0
        for p in range(len(trees)):
            if not built[p]:
                continue
            tree = trees[p]
            inv = invs[p]
            levels = depth[p]
            k = np.int64(1) << levels
            for x in xs:
                pos = np.int64(inv[x])
                f = ((pos >> levels) << (levels + 1)) + (pos & (k - 1)) + k
                h = f & (2 * k - 1)
                while h > 0:
                    tree[f] ^= _BOB
                    f -= (h + 1) >> 1
                    h >>= 1
            while i < n_wait and w_pass[i] < p:
                i += 1
            while i < n_wait and w_pass[i] == p:
                f = w_node[i]
                if tree[f] == 3 or tree[f] == 6:
                    a_pass[count] = p
                    a_node[count] = f
                    count += 1
                i += 1
            for x in xs:
                pos = np.int64(inv[x])
                f = ((pos >> levels) << (levels + 1)) + (pos & (k - 1)) + k
                h = f & (2 * k - 1)
                while h > 0:
                    if tree[f] == 3 or tree[f] == 6:
                        a_pass[count] = p
                        a_node[count] = f
                        count += 1
                        break
                    f -= (h + 1) >> 1
                    h >>= 1
        act_pass, act_node = _unique_nodes(a_pass[:count], a_node[:count])
        n_open = 0
        for j in range(len(half_pass)):
            if half_alice[j] >= 0 and half_alice[j] != half_bob[j]:
                n_open += 1
        if n_open:
            opened = np.empty(n_open, np.int64)
            n_open = 0
            for j in range(len(half_pass)):
                if half_alice[j] >= 0 and half_alice[j] != half_bob[j]:
                    opened[n_open] = half_pass[j]
                    half_alice[j] = -1
                    n_open += 1
            return act_pass, act_node, act_pass[:0], act_node[:0], opened, flips


@njit(cache=True)
def _answer(prefixes, depth, limit, half_top, total, passes, nodes):
    """Alice's parities of ``nodes`` of ``passes``: (parities, status, index) with status 0
    when all are answered, 1 for a pass that does not exist, 2 for a node that does not
    exist, 3 for a pass to build first (its shuffled prefix parities), at ``index``."""
    out = np.empty(len(nodes), np.uint8)
    for i in range(len(nodes)):
        p = passes[i]
        if p < 0 or p >= len(prefixes):
            return out, 1, i
        f = nodes[i]
        levels = depth[p]
        mask = (np.int64(2) << levels) - 1
        h = f & mask
        if f <= 0 or f >= limit[p] or h == 0:
            return out, 2, i
        prefix = prefixes[p]
        if len(prefix) == 0:
            if h == 1 and half_top[p] >= 0:              # the top of a half, or its complement
                out[i] = half_top[p] ^ (total if f > mask else 0)
                continue
            return out, 3, i
        level = 0
        while (h >> (level + 1)) > 0:
            level += 1
        span = levels - level
        start = ((f >> (levels + 1)) << levels) + ((h - (np.int64(1) << level)) << span)
        out[i] = prefix[start + (np.int64(1) << span)] ^ prefix[start]
    return out, 0, -1


class CascadeAlice(AliceSide):
    """Alice's side of Cascade: answers parities of the passes Bob defines."""

    def __init__(self, key):
        super().__init__(key)
        self.seed = None
        self.passes = []
        self._top = max(0, math.ceil(math.log2(self.n)))
        self._packed = _pack(self.key)
        self._total = int(np.bitwise_count(np.bitwise_xor.reduce(self._packed))) & 1
        self._prefixes = List([np.zeros(0, np.uint8)])
        self._prefixes.pop()
        self._depth = np.zeros(0, np.int64)
        self._limit = np.zeros(0, np.int64)
        self._half_top = np.zeros(0, np.int8)

    def respond(self, message):
        check_protocol(message, PROTOCOL)
        n = message_field(message, "n", int)
        if n != self.n:
            raise ValueError(f"Bob's key has {n} bits but Alice's has {self.n}")
        seed = check_seed(message_field(message, "seed", int))
        if self.seed is not None and seed != self.seed:
            raise ValueError(f"Bob's seed {seed} differs from the session's {self.seed}")
        define = message_field(message, "define", np.int32)
        passes = message_field(message, "pass", np.int32)
        nodes = message_field(message, "node", np.int64)
        if len(passes) != len(nodes):
            raise ValueError(f"The message asks {len(nodes)} nodes but names {len(passes)} "
                             f"passes")
        if len(self.passes) + len(define) > _MAX_PASSES:
            raise ValueError(f"Bob defines {len(self.passes) + len(define)} passes, more than "
                             f"{_MAX_PASSES}")
        for code in define.tolist():
            if not HALF <= code <= self._top:
                raise ValueError(f"Pass definition {code} is neither {HALF} (a random half) "
                                 f"nor a block-size exponent 0 .. {self._top}")
        before = len(self.passes)
        if len(define):
            self._define(define.tolist(), seed)
        while True:
            answers, status, where = _answer(self._prefixes, self._depth, self._limit,
                                             self._half_top, self._total, passes, nodes)
            if status == 3:
                self._build(int(passes[where]), seed)
            elif status:
                if status == 1:
                    problem = (f"The message asks a parity of pass {int(passes[where])}; "
                               f"passes are 0 .. {len(self.passes) - 1}")
                else:
                    geometry = self.passes[passes[where]]
                    problem = (f"Node {int(nodes[where])} of pass {int(passes[where])} does "
                               f"not exist (it has nodes 1 .. {geometry.nodes - 1}, not "
                               f"multiples of {2 << geometry.L})")
                self._forget(before)
                raise ValueError(problem)
            else:
                break
        self.seed = seed
        self.disclosed_bits += len(nodes)
        self.rounds += 1
        return {"protocol": PROTOCOL, "parities": answers}

    def _define(self, codes, seed):
        tops = []
        for code in codes:
            geometry = _Geometry(self.n, seed, len(self.passes), code)
            self.passes.append(geometry)
            self._prefixes.append(np.zeros(0, np.uint8))
            tops.append(_masked_parity(self._packed, geometry.words) if code == HALF else -1)
        self._depth = np.array([g.L for g in self.passes], np.int64)
        self._limit = np.array([g.nodes for g in self.passes], np.int64)
        self._half_top = np.concatenate((self._half_top, np.array(tops, np.int8)))

    def _forget(self, count):
        """Drop the passes a refused message defined."""
        while len(self.passes) > count:
            self.passes.pop()
            self._prefixes.pop()
        self._depth = self._depth[:count]
        self._limit = self._limit[:count]
        self._half_top = self._half_top[:count]

    def _build(self, pass_id, seed):
        order = self.passes[pass_id].order(self.n, seed, pass_id)
        self._prefixes[pass_id] = _alice_prefix(order, self.key, self.n)


class _BobPass:
    """Bob's state of one pass: the shuffle, his parity tree, Alice's known parities."""

    def __init__(self, geometry, pass_id):
        self.geometry = geometry
        self.pass_id = pass_id
        self.L = geometry.L
        self.nb = geometry.nb
        self.tops = geometry.tops()
        self.alice_top = None                  # a half: Alice's parity of it

    def build(self, key, seed):
        n = len(key)
        self.order = self.geometry.order(n, seed, self.pass_id)
        self.inv, self.tree = _bob_build(self.order, key, n, self.nb, self.L)

    def known(self, nodes):
        """Which of ``nodes`` have a known Alice parity."""
        return (self.tree[nodes] & _KNOWN) != 0

    def alice(self, nodes):
        return (self.tree[nodes] >> 2) & 1

    def set_alice(self, nodes, values):
        self.tree[nodes] = (self.tree[nodes] & _BOB) | _KNOWN | (np.asarray(values, np.uint8)
                                                                 << 2)

    def differing(self, nodes):
        """Those of ``nodes`` known to hold an odd number of errors."""
        return nodes[(self.tree[nodes] == 3) | (self.tree[nodes] == 6)]


_EMPTY = {"tree": np.zeros(0, np.uint8), "inv": np.zeros(0, np.int32),
          "order": np.zeros(0, np.int32)}


class _BobSession:
    def __init__(self, key, seed, ask, overlap=0.0):
        self.key = key
        self.n = len(key)
        self.overlap = overlap
        self.threshold = 0
        self.seed = seed
        self.ask = ask
        self.passes = []
        self.pending = []
        self.rounds = 0
        self.disclosed = 0
        self.flips = 0
        self.alice_total = None                 # Alice's whole-key parity, from pass 0
        # The engine's view of every pass (typed lists: one entry per pass, empty arrays
        # until the pass is built) and of the halves not built yet.
        self.lists = {name: List() for name in _EMPTY}
        self.depth = np.zeros(0, np.int64)
        self.built = np.zeros(0, np.uint8)
        self.half_pass = np.zeros(0, np.int64)
        self.half_words = np.zeros((0, (self.n + 63) // 64), np.uint64)
        self.half_alice = np.zeros(0, np.int8)
        self.half_bob = np.zeros(0, np.int8)

    # -- messages --
    def _ask(self, pass_ids, nodes):
        message = {"protocol": PROTOCOL, "n": self.n, "seed": self.seed,
                   "define": np.array(self.pending, np.int32),
                   "pass": np.ascontiguousarray(pass_ids, np.int32),
                   "node": np.ascontiguousarray(nodes, np.int64)}
        reply = self.ask(message)
        self.pending = []
        self.rounds += 1
        parities = message_field(reply, "parities", np.uint8, who="reply")
        if len(parities) != len(nodes) or (len(parities) and parities.max() > 1):
            raise ValueError(f"Alice answered {len(parities)} values (max "
                             f"{int(parities.max()) if len(parities) else 0}) to {len(nodes)} "
                             f"parity questions")
        self.disclosed += len(nodes)
        return parities

    def _define(self, code):
        pass_id = len(self.passes)
        state = _BobPass(_Geometry(self.n, self.seed, pass_id, code), pass_id)
        self.passes.append(state)
        self.pending.append(code)
        for name, empty in _EMPTY.items():
            self.lists[name].append(empty)
        self.depth = np.append(self.depth, state.L)
        self.built = np.append(self.built, np.uint8(0))
        return state

    def _build(self, state):
        state.build(self.key, self.seed)
        for name in _EMPTY:
            self.lists[name][state.pass_id] = getattr(state, name)
        self.built[state.pass_id] = 1

    def run(self, sizes, confirm, max_batches):
        """The main passes, then confirmation batches; True if the last batch agreed. The
        first message asks the top parities of every main pass and of the first batch of
        halves at once (their values do not depend on Bob's corrections); each pass is
        searched and cascaded only after the previous one has settled."""
        main = [self._define(levels) for levels in sizes]
        halves = [self._define(HALF) for _ in range(confirm)]
        for state in main:
            self._build(state)
        ask_pass, ask_node, deduced = [], [], []
        for state in main:
            unknown = state.tops[~state.known(state.tops)]
            if state is not main[0] and len(unknown):
                deduced.append(unknown[-1])
                unknown = unknown[:-1]
            else:
                deduced.append(None)
            ask_pass.append(np.full(len(unknown), state.pass_id, np.int32))
            ask_node.append(unknown)
        ask_pass.append(np.array([h.pass_id for h in halves], np.int32))
        ask_node.append(np.ones(len(halves), np.int64))
        answers = self._ask(np.concatenate(ask_pass), np.concatenate(ask_node))
        start = 0
        tops = []
        for nodes in ask_node:
            tops.append(answers[start:start + len(nodes)])
            start += len(nodes)
        queue = list(zip(main, ask_node, tops, deduced, strict=False))

        def start_next():
            # Alice's top parities of the next pass enter Bob's tree: its differing blocks
            # become searches.
            state, nodes, values, last = queue.pop(0)
            state.set_alice(nodes, values)
            if self.alice_total is None:
                self.alice_total = int(np.bitwise_xor.reduce(state.alice(state.tops)))
            elif last is not None:
                others = state.alice(state.tops[state.tops != last])
                state.set_alice([last], [self.alice_total ^ int(np.bitwise_xor.reduce(others))])
            odd = state.differing(state.tops)
            self.threshold = int(self.overlap * len(odd))
            return np.full(len(odd), state.pass_id, np.int64), odd, queue and start_next

        self._resolve(*start_next())
        if not confirm:
            return True
        values = tops[-1]
        for _ in range(max_batches):
            if self._confirm(halves, values):
                return True
            halves = [self._define(HALF) for _ in range(confirm)]
            values = self._ask(np.array([h.pass_id for h in halves]), np.ones(confirm,
                                                                               np.int64))
        return False

    def _confirm(self, halves, values):
        """Compare a batch of halves; search and cascade those that differ. True if none."""
        packed = _pack(self.key)
        words = np.stack([h.geometry.words for h in halves])
        bob = np.array([_masked_parity(packed, w) for w in words], np.int8)
        alice = values.astype(np.int8)
        for half, value in zip(halves, alice.tolist(), strict=True):
            half.alice_top = value
        self.half_pass = np.concatenate((self.half_pass, [h.pass_id for h in halves]))
        self.half_words = np.concatenate((self.half_words, words))
        self.half_alice = np.concatenate((self.half_alice, alice))
        self.half_bob = np.concatenate((self.half_bob, bob))
        differ = np.flatnonzero(alice != bob)
        if not len(differ):
            return True
        self.half_alice[len(self.half_alice) - len(halves) + differ] = -1
        self._resolve(*self._open([halves[i].pass_id for i in differ]))
        return False

    def _open(self, pass_ids):
        """Build halves whose parity differs; their differing top nodes, as searches."""
        found_pass, found_node = [], []
        for pass_id in pass_ids:
            half = self.passes[pass_id]
            self._build(half)
            half.set_alice(half.tops, [half.alice_top, half.alice_top ^ self.alice_total])
            odd = half.differing(half.tops)
            found_pass.append(np.full(len(odd), pass_id, np.int64))
            found_node.append(odd)
        return np.concatenate(found_pass), np.concatenate(found_node)

    def _resolve(self, act_pass, act_node, more=None):
        """Run these searches and everything they cascade into (:func:`_engine`), asking
        Alice one message of parities per step. ``more()``, if given, starts the next pass
        (returning its searches and the next ``more``) once no more than ``self.threshold``
        searches remain open."""
        lists = self.lists
        q_pass = q_node = np.zeros(0, np.int64)
        answers = np.zeros(0, np.uint8)
        local = 0                       # steps since the last question to Alice
        while True:
            local += 1
            if local > _MAX_LOCAL_STEPS or self.flips > len(self.key):
                # Alice's parities contradict each other (a forged reply, not yet
                # authenticated): an honest exchange never gets here
                raise ValueError(f"Cascade does not converge ({self.flips} flips, {local} "
                                 f"steps without a question): Alice's parities are "
                                 f"inconsistent")
            act_pass, act_node, q_pass, q_node, opened, flips = _engine(
                self.key, lists["tree"], lists["inv"], lists["order"], self.depth, self.built,
                act_pass, act_node, self.half_pass, self.half_words, self.half_alice,
                self.half_bob, q_pass, q_node, answers)
            self.flips += flips
            answers = answers[:0]
            if len(opened):
                more_pass, more_node = self._open(opened.tolist())
                act_pass = np.concatenate((act_pass, more_pass))
                act_node = np.concatenate((act_node, more_node))
                q_pass = q_node = q_node[:0]
                continue
            if more and len(act_node) <= self.threshold:
                more_pass, more_node, more = more()
                act_pass = np.concatenate((act_pass, more_pass))
                act_node = np.concatenate((act_node, more_node))
                q_pass = q_node = q_node[:0]
                continue
            if not len(q_node):
                return
            local = 0
            answers = self._ask(q_pass, q_node)


class Cascade(Reconciler):
    """Cascade with the improvements of Martinez-Mateo et al. (2015) and BICONF-style
    confirmation; see the module docstring.

    Options: ``block_sizes`` (log2 of the main passes' block sizes; default
    :func:`block_sizes` of the QBER estimate), ``confirm`` (random halves per confirmation
    batch; default 14 below 2^16 bits, 16 above), ``max_batches`` (confirmation batches
    before giving up, ``success`` false), ``seed`` (the session seed that every shuffle and
    half derives from; default fresh from the OS, recorded in the stats), ``overlap`` (start
    the next pass once the open searches fall to this fraction of the current pass' differing
    blocks: fewer round trips, more disclosed bits; default 0, one pass after the other).

    ``stats`` adds ``seed``, ``block_sizes``, ``confirm`` and ``passes`` (main passes plus
    every half asked)."""

    name = "cascade"

    def __init__(self, block_sizes=None, confirm=None, max_batches=32, seed=None, overlap=0.0):
        if block_sizes is not None:
            block_sizes = [int(b) for b in block_sizes]
            if not block_sizes or min(block_sizes) < 0 or max(block_sizes) > 30:
                raise ValueError(f"Block sizes must be a non-empty list of exponents 0 .. 30, "
                                 f"not {block_sizes!r}")
        if confirm is not None and (not isinstance(confirm, int) or not 0 <= confirm <= 256):
            raise ValueError(f"confirm must be an integer 0 .. 256, not {confirm!r}")
        if not 0.0 <= float(overlap) <= 1.0:
            raise ValueError(f"overlap must lie in [0, 1], not {overlap!r}")
        if not isinstance(max_batches, int) or max_batches < 1:
            raise ValueError(f"max_batches must be a positive integer, not {max_batches!r}")
        self.block_sizes = block_sizes
        self.confirm = confirm
        self.max_batches = max_batches
        self.overlap = float(overlap)
        self.seed = None if seed is None else check_seed(seed)

    def alice(self, key):
        return CascadeAlice(key)

    def bob(self, key, qber, ask):
        original = check_key(key, "Bob's key")
        qber = check_qber(qber)
        n = len(original)
        seed = fresh_seed() if self.seed is None else self.seed
        top = max(0, math.ceil(math.log2(n)))
        sizes = block_sizes(qber, n) if self.block_sizes is None else \
            [min(s, top) for s in self.block_sizes]
        confirm = _default_confirm(n) if self.confirm is None else self.confirm
        session = _BobSession(original.copy(), seed, ask, self.overlap)
        success = session.run(sizes, confirm, self.max_batches)
        stats = {"method": self.name, "disclosed_bits": session.disclosed,
                 "rounds": session.rounds, "success": success, "seed": seed,
                 "block_sizes": [1 << s for s in sizes], "confirm": confirm,
                 "passes": len(session.passes)}
        return session.key, finish_stats(stats, original, session.key, qber)
