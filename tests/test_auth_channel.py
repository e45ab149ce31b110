"""Wegman-Carter authentication and the authenticated classical channel: the GF(2^128)
polynomial hash against a plain-Python field, tags, and a channel over a real socket pair
that rejects every tampered, replayed, reordered, dropped, truncated or injected message."""

import os
import socket
import struct

import numpy as np
import pytest
from timebin.host.distill.auth import (
    AuthenticationError,
    AuthKeyExhausted,
    AuthKeyPool,
    direction_pools,
    poly_hash,
    tag,
    verification_bits,
    verification_hash,
    verify_tag,
)
from timebin.host.distill.channel import (
    AuthenticatedChannel,
    ChannelClosed,
    decode_body,
    encode_body,
)

_POLY = (1 << 128) | 0x87


def gf_mul(a, b):
    result = 0
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a <<= 1
        if a >> 128:
            a ^= _POLY
    return result


def reference_hash(key, data):
    padded = data + bytes(-len(data) % 16)
    blocks = [int.from_bytes(padded[i:i + 16], "little") for i in range(0, len(padded), 16)]
    acc = 0
    for block in blocks + [8 * len(data)]:
        acc = gf_mul(acc ^ block, key)
    return acc


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 100, 1000])
def test_poly_hash_equals_the_field_definition(n):
    rng = np.random.default_rng(n)
    for _ in range(3):
        key = int.from_bytes(rng.bytes(16), "little")
        data = rng.bytes(n)
        assert poly_hash(key, data) == reference_hash(key, data)
        assert poly_hash(key.to_bytes(16, "little"), data) == reference_hash(key, data)


def test_field_product_is_a_field_product():
    # x^127 * x = x^128 = x^7 + x^2 + x + 1, and k^(2^128) = k (Frobenius) on a few k.
    assert gf_mul(1 << 127, 2) == 0x87
    assert poly_hash(2, b"") == 0      # a lone zero-length block hashes to 0
    data = bytes(range(16))
    assert poly_hash(1, data) == int.from_bytes(data, "little") ^ 128


def test_trailing_zeros_and_bits_change_the_hash():
    key = 0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321
    assert poly_hash(key, b"ab") != poly_hash(key, b"ab\0")
    bits = np.random.default_rng(1).integers(0, 2, 1000, dtype=np.uint8)
    flipped = bits.copy()
    flipped[500] ^= 1
    assert poly_hash(key, bits) != poly_hash(key, flipped)
    assert poly_hash(key, bits) == poly_hash(key, np.packbits(bits, bitorder="little")
                                             .tobytes()[:125])


def test_tags_and_bad_keys():
    key, pad = os.urandom(16), os.urandom(16)
    t = tag(key, pad, b"hello")
    assert verify_tag(key, pad, b"hello", t)
    assert not verify_tag(key, pad, b"hellp", t)
    assert not verify_tag(key, os.urandom(16), b"hello", t)
    with pytest.raises(ValueError, match="16 bytes, not 3"):
        poly_hash(b"abc", b"")
    with pytest.raises(ValueError, match="one-time pad is 16 bytes, not 4"):
        tag(key, b"1234", b"x")


def test_verification_bits_meet_eps_cor():
    assert verification_bits(128, 1e-15) == 51            # (1 + 1) / 2^t <= 1e-15
    t = verification_bits(10**7, 1e-15)
    assert (-(-10**7 // 128) + 1) / 2**t <= 1e-15 < (-(-10**7 // 128) + 1) / 2**(t - 1)
    with pytest.raises(ValueError, match="eps_cor must be in"):
        verification_bits(100, 0)
    bits = np.ones(300, np.uint8)
    assert 0 <= verification_hash(bits, 7, 20) < 1 << 20


def test_pool_accounting_and_exhaustion():
    pool = AuthKeyPool(bytes(range(40)))
    assert pool.take(16, "hash key") == bytes(range(16))
    assert pool.peek(0, 4) == bytes(range(16, 20))
    pool.take(16)
    with pytest.raises(AuthKeyExhausted, match="has 64 bits; 128 are needed"):
        pool.take(16)
    pool.replenish(bytes(100))
    assert pool.accounting() == {"initial_bits": 320, "replenished_bits": 800,
                                 "consumed_bits": 256, "available_bits": 864,
                                 "uses": {"hash key": 128, "pad": 128}}
    with pytest.raises(ValueError, match="at least 32 bytes, not 8"):
        AuthKeyPool(bytes(8))


def test_bodies_round_trip_and_refuse_bad_bytes():
    body = {"n": 3, "x": 0.25, "s": "z", "none": None, "flag": True, "raw": b"\x00\xff",
            "bits": np.array([1, 0, 1], np.uint8), "idx": np.arange(5, dtype=np.uint64),
            "empty": np.zeros(0, np.int32), "i": np.int64(7)}
    back = decode_body(encode_body(body))
    assert back.keys() == body.keys()
    for key, value in body.items():
        if isinstance(value, np.ndarray):
            assert back[key].dtype == value.dtype and np.array_equal(back[key], value)
        else:
            assert back[key] == value
    with pytest.raises(TypeError, match="cannot be sent"):
        encode_body({"x": object()})
    with pytest.raises(TypeError, match="1-D"):
        encode_body({"x": np.zeros((2, 2))})
    data = encode_body(body)
    for bad in (data[:-1], data + b"x", b"\xff\xff\xff\xff", b"", struct.pack("<I", 2) + b"[]"):
        with pytest.raises(ValueError, match="Malformed message body"):
            decode_body(bad)


# --- the channel over a socket pair ---------------------------------------------------

SECRET = bytes(range(256)) * 4


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    alice = AuthenticatedChannel(a, role="alice", pools=direction_pools(SECRET), timeout=5)
    bob = AuthenticatedChannel(b, role="bob", pools=direction_pools(SECRET), timeout=5)
    yield alice, bob
    alice.close()
    bob.close()


class Tap:
    """Capture what one end writes, so a test can replay, drop, reorder or alter it."""

    def __init__(self, channel):
        self.channel, self.frames = channel, []
        real = channel.sock

        class Capture:
            def sendall(self_, data):
                self.frames.append(bytes(data))

            def __getattr__(self_, name):
                return getattr(real, name)
        channel.sock = Capture()
        self.real = real

    def deliver(self, frame):
        self.real.sendall(frame)


def test_messages_pass_and_pools_stay_in_step(pair):
    alice, bob = pair
    for i in range(5):
        alice.send("ping", {"i": i, "bits": np.arange(i, dtype=np.uint8)})
        assert bob.recv("ping")[1]["i"] == i
        bob.send("pong", {"i": i})
        assert alice.recv(("pong",))[1] == {"i": i}
    for role in ("alice", "bob"):
        assert (alice.pools[role].accounting() == bob.pools[role].accounting())
        assert alice.pools[role].accounting()["consumed_bits"] == 128 + 5 * 128


def test_flipped_bits_are_rejected_everywhere(pair):
    alice, bob = pair
    tap = Tap(alice)
    alice.send("data", {"v": np.arange(20, dtype=np.uint32)})
    frame = tap.frames[0]
    for position in (4, 9, 12, 20, len(frame) // 2, len(frame) - 17, len(frame) - 1):
        bad = bytearray(frame)
        bad[position] ^= 0x10
        tap.deliver(bytes(bad))
        with pytest.raises(AuthenticationError):
            bob.recv()
    tap.deliver(frame)                  # the genuine message still passes: nothing was used
    assert bob.recv()[0] == "data"
    assert bob.rejected == 7 and bob.received == 1


def test_replay_reorder_drop_and_resync(pair):
    alice, bob = pair
    tap = Tap(alice)
    for i in range(4):
        alice.send("m", {"i": i})
    alice.send("start", {"i": 4}, resync=True)
    f = tap.frames
    tap.deliver(f[0])
    assert bob.recv()[1] == {"i": 0}
    tap.deliver(f[0])
    with pytest.raises(AuthenticationError, match="Replayed or reordered"):
        bob.recv()
    tap.deliver(f[2])                   # f[1] dropped
    with pytest.raises(AuthenticationError, match="1 message\\(s\\) lost before sequence 2"):
        bob.recv()
    tap.deliver(f[1])                   # late: reordered
    with pytest.raises(AuthenticationError, match="Replayed or reordered"):
        bob.recv()
    tap.deliver(f[4])                   # f[3] dropped, but this one opens a new block
    assert bob.recv() == ("start", {"i": 4}) and bob.burnt_pads == 2
    assert bob.pools["alice"].accounting()["consumed_bits"] == alice.pools["alice"] \
        .accounting()["consumed_bits"]


def test_injected_and_misdirected_messages(pair):
    alice, bob = pair
    # Eve builds a message with her own key material: the tag fails, nothing is consumed.
    eve = AuthenticatedChannel(socket.socketpair()[0], role="alice",
                               pools=direction_pools(os.urandom(len(SECRET))))
    eve_tap = Tap(eve)
    eve.send("m", {"i": 666})
    eve.send_seq = 10**6                # far ahead, beyond the pool
    eve.send("m", {"i": 667})
    for frame in eve_tap.frames:
        alice.sock.sendall(frame)
        with pytest.raises(AuthenticationError):
            bob.recv()
    assert bob.pools["alice"].accounting()["consumed_bits"] == 128
    # Alice's own message sent back to her claims the wrong direction.
    tap = Tap(alice)
    alice.send("m", {"i": 1})
    bob.sock.sendall(tap.frames[0])
    with pytest.raises(AuthenticationError, match="claims to come from alice, not bob"):
        alice.recv()
    tap.deliver(tap.frames[0])
    with pytest.raises(AuthenticationError, match="expected 'x'"):
        bob.recv("x")


def test_truncated_message_and_closed_peer(pair):
    alice, bob = pair
    tap = Tap(alice)
    alice.send("m", {"data": bytes(1000)})
    tap.deliver(tap.frames[0][:500])
    tap.real.shutdown(socket.SHUT_WR)
    with pytest.raises(ChannelClosed, match="mid-message"):
        bob.recv()


def test_oversized_length_is_refused(pair):
    alice, bob = pair
    alice.sock.sendall(struct.pack(">I", 1 << 30))
    with pytest.raises(AuthenticationError, match="length 1073741824 out of range"):
        bob.recv()


# --- deferred messages: one tag covers an exchange -------------------------------------

def _defer(pair):
    alice, bob = pair
    for end in pair:
        end.defer(("ask", "answer"))
    return alice, bob


def test_deferred_messages_take_no_pads_and_the_next_tag_covers_them(pair):
    alice, bob = _defer(pair)
    before = (alice.pools["bob"].available_bits, bob.pools["bob"].available_bits)
    for i in range(50):
        bob.send("ask", {"i": i})
        assert alice.recv("ask")[1] == {"i": i}
        alice.send("answer", {"parity": np.array([i & 1], np.uint8)})
        assert bob.recv("answer")[1]["parity"][0] == i & 1
    assert (alice.pools["bob"].available_bits, bob.pools["bob"].available_bits) == before
    bob.send("done", {"ok": True})                  # one pad for the 100 messages
    assert alice.recv("done")[1] == {"ok": True}
    assert alice.pools["bob"].available_bits == before[0] - 128
    assert bob.deferred_sent == 50 and alice.deferred_received == 50
    assert alice.rejected == bob.rejected == 0


@pytest.mark.parametrize("attack", ["flip", "drop", "inject", "replay"])
def test_a_tampered_deferred_message_fails_the_covering_tag(pair, attack):
    alice, bob = _defer(pair)
    tap = Tap(bob)
    bob.send("ask", {"i": 1})
    bob.send("ask", {"i": 2})
    first, second = tap.frames
    if attack == "flip":                            # {"i": 2} becomes {"i": 3}
        at = second.index(b'"v":2') + 4
        frames = [first, second[:at] + b"3" + second[at + 1:]]
    elif attack == "drop":
        frames = [second]
    elif attack == "inject":                        # Eve's own deferred message after them
        eve = AuthenticatedChannel(socket.socketpair()[0], role="bob",
                                   pools=direction_pools(bytes(64)))
        eve.defer(("ask",))
        eve_tap = Tap(eve)
        for _ in range(3):
            eve.send("ask", {"i": 7})
        frames = [first, second, eve_tap.frames[2]]
    else:
        frames = [first, second, first]
    for frame in frames:
        tap.deliver(frame)
    taken = [alice.recv("ask") for _ in frames[:2]]
    if attack == "replay":
        with pytest.raises(AuthenticationError, match="Replayed or reordered deferred"):
            alice.recv("ask")
        return
    if attack == "inject":
        taken.append(alice.recv("ask"))
    assert [body["i"] for _, body in taken][-1] in (2, 3, 7)   # accepted, not yet authentic
    bob.sock = tap.real
    bob.send("done")
    with pytest.raises(AuthenticationError, match="deferred messages it covers differ"):
        alice.recv("done")
    assert alice.rejected == 1


def test_only_deferred_kinds_may_come_without_a_tag(pair):
    alice, bob = pair
    bob.defer(("ask",))                 # Alice does not defer "ask"
    bob.send("ask", {"i": 1})
    with pytest.raises(AuthenticationError, match="may not come without a tag"):
        alice.recv()


def test_a_resync_drops_what_a_broken_exchange_left(pair):
    alice, bob = _defer(pair)
    bob.send("ask", {"i": 1})
    alice.recv("ask")
    alice.send("answer", {})            # lost: Bob never reads it, the exchange broke off
    bob.send("next block", {}, resync=True)
    assert alice.recv("next block") == ("next block", {})
    bob.send("ask", {"i": 2})
    alice.recv("ask")
    alice.send("answer", {"x": 1})
    assert bob.recv("answer")[1] == {}              # the broken exchange's stale answer...
    bob.send("done")
    with pytest.raises(AuthenticationError):        # ...never passes the covering tag
        alice.recv("done")
    # the next block starts clean
    bob.send("block 2", {}, resync=True)
    assert alice.recv("block 2") == ("block 2", {})
    bob.send("ask", {"i": 3})
    alice.recv("ask")
    alice.send("answer", {"y": 1})
    assert bob.recv("answer")[1] in ({"x": 1}, {"y": 1})


def test_a_long_exchange_is_tagged_every_max_deferred_messages(pair):
    alice, bob = pair
    for end in pair:
        end.defer(("ask",), max_deferred=4)
    pads = bob.pools["bob"].available_bits
    for i in range(10):
        bob.send("ask", {"i": i})
        assert alice.recv("ask")[1] == {"i": i}
    assert bob.deferred_sent == 8 and bob.sent == 2          # messages 4 and 9 tagged
    assert bob.pools["bob"].available_bits == pads - 2 * 128
    with pytest.raises(ValueError, match="max_deferred"):
        bob.defer(("ask",), max_deferred=0)
