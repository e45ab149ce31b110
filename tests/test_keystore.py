"""The key store: transactional storing, deterministic key IDs shared by Alice's and Bob's
stores, the direction split, at-most-once delivery under threads and across ``kill -9``."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from timebin.host.keystore import (
    MAX_KEY_BITS,
    KeyIDError,
    KeyRequestError,
    KeyStore,
    KeyStoreError,
    KeyStoreFull,
    NotEnoughKeyError,
    block_tag,
    make_key_id,
    parse_key_id,
)


def _material(seed, nbytes):
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()


@pytest.fixture
def pair(tmp_path):
    alice = KeyStore(tmp_path / "alice.keys", role="alice")
    bob = KeyStore(tmp_path / "bob.keys", role="bob")
    yield alice, bob
    alice.close()
    bob.close()


def _feed(stores, blocks, nbytes=32 * 10, session="s1"):
    materials = {}
    for block in range(blocks):
        materials[block] = _material(block + 100, nbytes)
        for store in stores:
            store.store_block(materials[block], session=session, block_id=block, qber=0.021,
                              eps_sec=1e-10, eps_cor=1e-15, protocol="3-state time-bin BB84")
    return materials


def test_key_id_roundtrip_and_rejects():
    rng = random.Random(7)
    for _ in range(500):
        tag, index = rng.getrandbits(48), rng.getrandbits(32)
        size = 8 * rng.randint(1, MAX_KEY_BITS // 8)
        key_id = make_key_id(tag, index, size)
        assert parse_key_id(key_id) == (tag, index, size)
        assert parse_key_id(key_id.upper()) == (tag, index, size)
    ids = [make_key_id(5, i, 256) for i in range(0, 20, 2)]
    assert len({k[:8] for k in ids}) == len(ids)        # scrambled: no common visible prefix
    for bad in ("1234", "", "not-a-uuid", "00000000-0000-0000-0000-000000000000",
                "8f1b9c1e-3a4b-4c5d-9e6f-7a8b9c0d1e2f"):
        with pytest.raises(ValueError):
            parse_key_id(bad)
    flipped = ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1")
    with pytest.raises(ValueError, match="check"):
        parse_key_id(flipped)
    with pytest.raises(ValueError):
        make_key_id(1, 0, 12)


def test_store_block_cuts_units_and_records_metadata(pair):
    alice, _ = pair
    material = _material(1, 32 * 5 + 7)
    info = alice.store_block(material, session="run-1", block_id=3, key_bits=8 * len(material) - 3,
                             created_at=1.7e9, qber=0.03, eps_sec=1e-10, eps_cor=1e-15,
                             protocol="3-state", meta={"rate": 1.5})
    assert info.new and info.units == 5 and info.key_bits == 8 * (32 * 5 + 7) - 3
    assert info.discarded_bits == 7 * 8 - 3
    tag = block_tag("run-1", 3, 256)
    assert info.key_ids == tuple(make_key_id(tag, i, 256) for i in range(5))
    (block,) = alice.blocks()
    assert block["session"] == "run-1" and block["block_id"] == 3 and block["qber"] == 0.03
    assert block["created_at"] == 1.7e9 and block["meta"] == {"rate": 1.5}
    status = alice.status()
    assert status["blocks"] == 1 and status["units"] == 5 and status["discarded_bits"] == 53
    assert status["available_keys"] == 3 and status["available_peer_keys"] == 2
    assert "key" not in repr(alice.enc_keys(1)[0]).replace("key_id", "")


def test_store_block_accepts_bit_arrays(pair):
    alice, bob = pair
    bits = np.random.default_rng(3).integers(0, 2, 256 * 4 + 5, dtype=np.uint8)
    a = alice.store_block(bits, session="s", block_id=0)
    b = bob.store_block(np.packbits(bits).tobytes(), session="s", block_id=0,
                        key_bits=bits.size)
    assert a.key_ids == b.key_ids and a.discarded_bits == 5
    key = alice.enc_keys(1)[0]
    assert key.key == np.packbits(bits[:256]).tobytes()
    with pytest.raises(ValueError, match="bits"):
        alice.store_block(np.array([0, 1, 2]), session="s", block_id=1)
    with pytest.raises(ValueError, match="key_bits"):
        alice.store_block(b"\x00" * 4, session="s", block_id=1, key_bits=33)


def test_add_block_takes_metadata_of_a_distillation_sink(pair):
    alice, _ = pair
    meta = {"block": 4, "qber_z": 0.031, "qber_x": float("nan"), "eps_sec": 1e-9,
            "protocol": "1decoy-3state", "bounds": {"s_z1": np.float64(12.5)},
            "counts": np.arange(3)}
    info = alice.add_block(_material(9, 96), session="seed1", block=4, meta=meta)
    assert info.units == 3
    (block,) = alice.blocks()
    assert block["qber"] == 0.031 and block["eps_sec"] == 1e-9 and block["eps_cor"] is None
    assert block["protocol"] == "1decoy-3state" and block["meta"]["counts"] == [0, 1, 2]
    assert block["meta"]["bounds"] == {"s_z1": 12.5}


def test_store_is_idempotent_and_refuses_conflicts(pair):
    alice, _ = pair
    material = _material(2, 32 * 4)
    first = alice.store_block(material, session="s", block_id=0)
    alice.enc_keys(1)
    again = alice.store_block(material, session="s", block_id=0)
    assert not again.new and again.key_ids == first.key_ids
    assert alice.status()["units"] == 4 and alice.status()["blocks"] == 1
    other = bytearray(material)
    other[-1] ^= 1
    with pytest.raises(KeyStoreError, match="different key material"):
        alice.store_block(bytes(other), session="s", block_id=0)
    with pytest.raises(KeyStoreError, match="already stored"):
        alice.store_block(material[:64], session="s", block_id=0)


def test_store_block_is_one_transaction(pair, tmp_path):
    alice, _ = pair
    # A trigger that fails the 6th unit's insert: the whole block must roll back.
    with sqlite3.connect(tmp_path / "alice.keys") as db:
        db.execute("CREATE TRIGGER fail BEFORE INSERT ON units WHEN NEW.idx = 5 "
                   "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    with pytest.raises(sqlite3.IntegrityError, match="injected"):
        alice.store_block(_material(4, 32 * 8), session="s", block_id=0)
    status = alice.status()
    assert status["blocks"] == 0 and status["units"] == 0
    with sqlite3.connect(tmp_path / "alice.keys") as db:
        db.execute("DROP TRIGGER fail")
    assert alice.store_block(_material(4, 32 * 8), session="s", block_id=0).new
    assert alice.status()["units"] == 8


def test_max_keys_refuses_whole_block(tmp_path):
    with KeyStore(tmp_path / "k", role="alice", max_keys=5) as store:
        store.store_block(_material(0, 32 * 8), session="s", block_id=0)
        with pytest.raises(KeyStoreFull):
            store.store_block(_material(1, 32 * 4), session="s", block_id=1)
        assert store.status()["blocks"] == 1
        store.enc_keys(3)                   # 1 of Alice's direction left, 4 of Bob's
        with pytest.raises(KeyStoreFull, match="direction bob"):
            store.store_block(_material(1, 32 * 4), session="s", block_id=1)
        store.dec_keys([make_key_id(block_tag("s", 0, 256), 1, 256)])
        assert store.store_block(_material(1, 32 * 4), session="s", block_id=1).new


def test_two_stores_assign_the_same_ids_and_bytes(pair):
    alice, bob = pair
    materials = _feed([alice, bob], 3)
    # enc_keys on Alice hands out the even units, in order; Bob finds them by ID.
    keys = alice.enc_keys(4, master_sae="sae-a", slave_sae="sae-b")
    tag = block_tag("s1", 0, 256)
    assert [k.key_id for k in keys] == [make_key_id(tag, i, 256) for i in (0, 2, 4, 6)]
    assert [k.key for k in keys] == [materials[0][32 * i:32 * i + 32] for i in (0, 2, 4, 6)]
    assert bob.dec_keys([k.key_id for k in keys], master_sae="sae-a",
                        slave_sae="sae-b") == keys
    # The other direction: enc_keys on Bob hands out odd units; Alice finds them.
    back = bob.enc_keys(3)
    assert [parse_key_id(k.key_id)[1] for k in back] == [1, 3, 5]
    assert alice.dec_keys([k.key_id for k in reversed(back)]) == list(reversed(back))
    # Never the same bytes by enc_keys on both sides.
    rest_a = alice.enc_keys(alice.available())
    rest_b = bob.enc_keys(bob.available())
    handed = [k.key for k in keys + back + rest_a + rest_b]
    assert len(handed) == 30 and len(set(handed)) == 30
    assert alice.available() == bob.available() == 0


def test_direction_is_enforced(pair):
    alice, bob = pair
    _feed([alice, bob], 1)
    mine = alice.enc_keys(1)[0]
    with pytest.raises(KeyIDError, match="enc_keys of alice"):
        alice.dec_keys([mine.key_id])
    peer_id = make_key_id(block_tag("s1", 0, 256), 1, 256)
    assert alice.key_state(peer_id)["state"] == "available"
    with pytest.raises(KeyIDError, match="enc_keys of bob"):
        bob.dec_keys([make_key_id(block_tag("s1", 0, 256), 1, 256)])


@pytest.mark.parametrize("size", [8, 128, 248, 256, 264, 512, 1000, 2048])
def test_sizes_concatenate_and_cut_units(pair, size):
    alice, bob = pair
    materials = _feed([alice, bob], 2, nbytes=32 * 40)
    keys = alice.enc_keys(3, size)
    per_key = -(-size // 256)
    expected, block, start = [], 0, 0
    for _ in range(3):
        if start + per_key > 20:                 # 20 units of Alice's direction a block
            block, start = block + 1, 0
        run = range(2 * start, 2 * (start + per_key), 2)
        expected.append(b"".join(materials[block][32 * i:32 * i + 32]
                                 for i in run)[:size // 8])
        start += per_key
    assert [k.key for k in keys] == expected and all(k.size == size for k in keys)
    assert bob.dec_keys([k.key_id for k in keys]) == keys
    states = {alice.key_state(k.key_id)["state"] for k in keys}
    assert states == {"delivered"}


def test_composite_keys_stay_within_a_block(pair):
    alice, bob = pair
    _feed([alice, bob], 2, nbytes=32 * 10)            # 5 units per direction per block
    first = alice.enc_keys(1, 256 * 3)[0]
    second = alice.enc_keys(1, 256 * 3)[0]            # block 0 has 2 left: from block 1
    assert parse_key_id(first.key_id)[1] == 0 and parse_key_id(second.key_id)[1] == 0
    assert alice.available() == 2 + 2
    assert alice.available(512) == 2
    with pytest.raises(NotEnoughKeyError) as error:
        alice.enc_keys(1, 256 * 3)
    assert error.value.available == 0 and alice.available() == 4
    assert bob.dec_keys([second.key_id, first.key_id]) == [second, first]


def test_dec_keys_all_or_nothing(pair):
    alice, bob = pair
    _feed([alice, bob], 1)
    keys = alice.enc_keys(3)
    bob.dec_keys([keys[0].key_id])
    with pytest.raises(KeyIDError) as error:
        bob.dec_keys([keys[1].key_id, keys[0].key_id, "nonsense", keys[2].key_id,
                      keys[2].key_id])
    reasons = dict(error.value.problems)
    assert reasons == {keys[0].key_id: "key already delivered",
                       "nonsense": "not a key ID of this key store",
                       keys[2].key_id: "key ID repeated in the request"}
    assert bob.key_state(keys[1].key_id)["state"] == "available"
    assert bob.dec_keys([keys[1].key_id, keys[2].key_id]) == keys[1:]
    unknown = make_key_id(block_tag("s1", 99, 256), 1, 256)
    with pytest.raises(KeyIDError, match="unknown key ID"):
        bob.dec_keys([unknown])
    past_end = make_key_id(block_tag("s1", 0, 256), 11, 256)
    with pytest.raises(KeyIDError, match="unknown key ID"):
        alice.dec_keys([past_end])
    # A made-up ID over material already handed out under another ID is refused.
    overlapping = make_key_id(block_tag("s1", 0, 256), 0, 128)
    with pytest.raises(KeyIDError, match="another key ID"):
        bob.dec_keys([overlapping])
    assert bob.key_state(overlapping)["state"] == "consumed"
    with pytest.raises(KeyRequestError):
        bob.dec_keys([])


def test_request_validation(pair):
    alice, _ = pair
    _feed([alice], 1)
    for number in (0, -1, 1.0, True, "1"):
        with pytest.raises(KeyRequestError):
            alice.enc_keys(number)
    for size in (0, 12, 255, MAX_KEY_BITS + 8, 256.0):
        with pytest.raises(KeyRequestError):
            alice.enc_keys(1, size)
    with pytest.raises(NotEnoughKeyError) as error:
        alice.enc_keys(6)
    assert error.value.requested == 6 and error.value.available == 5
    assert alice.available() == 5                     # nothing delivered by the refusal


def test_reopen_keeps_role_and_unit(tmp_path):
    path = tmp_path / "k"
    with pytest.raises(ValueError, match="give its role"):
        KeyStore(path)
    with KeyStore(path, role="bob", unit_bits=128) as store:
        store.store_block(_material(0, 64), session="s", block_id=0)
    with KeyStore(path) as store:
        assert store.role == "bob" and store.unit_bits == 128 and store.available() == 2
    with pytest.raises(ValueError, match="bob's key store"):
        KeyStore(path, role="alice")
    with pytest.raises(ValueError, match="128 bits"):
        KeyStore(path, unit_bits=256)
    with pytest.raises(ValueError):
        KeyStore(tmp_path / "x", role="carol")
    # The unit size is part of the block tag: stores cutting differently share no IDs.
    assert block_tag("s", 0, 128) != block_tag("s", 0, 256)


def test_deliveries_record_saes(pair):
    alice, bob = pair
    _feed([alice, bob], 1)
    keys = alice.enc_keys(2, master_sae="sae-a", slave_sae="sae-b")
    bob.dec_keys([keys[0].key_id], master_sae="sae-a", slave_sae="sae-b")
    (record,) = bob.deliveries()
    assert record["key_ID"] == keys[0].key_id and record["kind"] == "dec"
    assert record["master_SAE_ID"] == "sae-a" and record["slave_SAE_ID"] == "sae-b"
    assert [r["key_ID"] for r in alice.deliveries("enc")] == [k.key_id for k in keys]
    state = alice.key_state(keys[1].key_id)
    assert state["state"] == "delivered" and state["enc_side"] == "alice"
    assert alice.status()["delivered_enc_keys"] == 2
    assert bob.status()["delivered_dec_keys"] == 1


def test_concurrent_enc_keys_deliver_each_key_once(tmp_path):
    path = tmp_path / "alice.keys"
    stores = [KeyStore(path, role="alice"), KeyStore(path)]   # two connections, one file
    for block in range(4):
        stores[0].store_block(_material(block, 32 * 60), session="s", block_id=block)
    total = stores[0].available()
    got, errors = [], []

    def worker(n):
        store = stores[n % 2]
        rng = random.Random(n)
        while True:
            try:
                keys = store.enc_keys(rng.randint(1, 3), master_sae=f"t{n}")
            except NotEnoughKeyError:
                if store.available() == 0:
                    return
                continue
            except Exception as error:                         # pragma: no cover
                errors.append(error)
                return
            got.extend(keys)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(got) == total == 120
    assert len({k.key_id for k in got}) == total and len({k.key for k in got}) == total
    assert len(stores[1].deliveries()) == total
    for store in stores:
        store.close()


def test_concurrent_dec_keys_of_the_same_ids(pair):
    alice, bob = pair
    _feed([alice, bob], 2)
    keys = alice.enc_keys(8)
    ids = [k.key_id for k in keys]
    wins, refusals = [], []
    barrier = threading.Barrier(6)

    def worker(n):
        barrier.wait()
        for key_id in ids[n % 2::2] + ids:
            try:
                wins.extend(bob.dec_keys([key_id], slave_sae=f"t{n}"))
            except KeyIDError:
                refusals.append(key_id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(k.key_id for k in wins) == sorted(ids)
    assert {k.key_id: k.key for k in wins} == {k.key_id: k.key for k in keys}


# -- crash safety ----------------------------------------------------------------------------

_CHILD = r"""
import random, sys
from timebin.host.keystore import KeyStore, NotEnoughKeyError

run, a_path, b_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
alice, bob = KeyStore(a_path, role="alice"), KeyStore(b_path, role="bob")
rng = random.Random(run)
out = sys.stdout

def say(tag, items):
    out.write(tag + " " + " ".join(items) + "\n")
    out.flush()

def material_of(run, block):
    # What the distiller of either side produces for a block (here: reproducibly random).
    block_rng = random.Random(1000 * run + block)
    return block_rng.randbytes(32 * block_rng.randint(2, 12))

# Like a distiller after a crash: store again every block that either store has (a
# no-op where present), so a block stored on one side only reaches the other.
for info in alice.blocks() + bob.blocks():
    run_of = int(info["session"][3:])
    for store in (alice, bob):
        store.store_block(material_of(run_of, info["block_id"]), session=info["session"],
                          block_id=info["block_id"])

block = 0
while True:
    material = material_of(run, block)
    for name, store in (("SA", alice), ("SB", bob)):
        info = store.store_block(material, session=f"run{run}", block_id=block)
        say(name, info.key_ids)
    block += 1
    for _ in range(3):
        try:
            keys = alice.enc_keys(rng.randint(1, 3), rng.choice([256, 128, 512, 264]))
        except NotEnoughKeyError:
            continue
        say("EA", [k.key_id + ":" + k.key.hex() for k in keys])
        if rng.random() < 0.8:
            keys = bob.dec_keys([k.key_id for k in keys])
            say("DB", [k.key_id + ":" + k.key.hex() for k in keys])
"""


def _run_and_kill(run, a_path, b_path, delay):
    process = subprocess.Popen([sys.executable, "-c", _CHILD, str(run), str(a_path),
                                str(b_path)], stdout=subprocess.PIPE)
    lines, started = [], threading.Event()

    def reader():
        for line in process.stdout:
            lines.append(line)
            started.set()

    thread = threading.Thread(target=reader)
    thread.start()
    assert started.wait(30), "child printed nothing"
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    thread.join()
    assert process.returncode == -signal.SIGKILL
    complete = [line.decode() for line in lines if line.endswith(b"\n")]
    return [(line.split()[0], line.split()[1:]) for line in complete]


def test_kill_9_loses_nothing_and_delivers_nothing_twice(tmp_path):
    seed = 20260
    rng = random.Random(seed)
    a_path, b_path = tmp_path / "alice.keys", tmp_path / "bob.keys"
    stored = {"SA": set(), "SB": set()}
    delivered = {"EA": {}, "DB": {}}
    for run in range(5):
        for tag, items in _run_and_kill(run, a_path, b_path, rng.uniform(0.2, 0.8)):
            if tag in stored:
                stored[tag].update(items)
                continue
            for item in items:
                key_id, key = item.split(":")
                assert key_id not in delivered[tag], f"{key_id} delivered twice (seed {seed})"
                delivered[tag][key_id] = key
    assert delivered["EA"] and delivered["DB"]

    with KeyStore(a_path) as alice, KeyStore(b_path) as bob:
        for key_id in stored["SA"]:
            assert alice.key_state(key_id)["state"] != "unknown"
        for key_id in stored["SB"]:
            assert bob.key_state(key_id)["state"] != "unknown"
        for key_id, key in delivered["DB"].items():
            assert delivered["EA"][key_id] == key
            assert bob.key_state(key_id)["state"] == "delivered"
            with pytest.raises(KeyIDError, match="already delivered"):
                bob.dec_keys([key_id])
        for key_id in delivered["EA"]:
            assert alice.key_state(key_id)["state"] == "delivered"
        # Keys Alice handed out whose dec_keys was not reported: either it committed just
        # before the kill (at most one request a run), or Bob delivers them now, same bytes.
        pending = [k for k in delivered["EA"] if k not in delivered["DB"]]
        unreported = [k for k in pending if bob.key_state(k)["state"] == "delivered"]
        assert len(unreported) <= 5 * 3
        pending = [k for k in pending if k not in unreported]
        if pending:
            keys = bob.dec_keys(pending)
            assert [k.key.hex() for k in keys] == [delivered["EA"][k] for k in pending]
        # Whatever enc_keys hands out now was never handed out before.
        enc_ids = {r["key_ID"] for r in alice.deliveries("enc")}
        assert set(delivered["EA"]) <= enc_ids
        rest = alice.enc_keys(alice.available()) if alice.available() else []
        assert not {k.key_id for k in rest} & enc_ids
        assert len({r["key_ID"] for r in alice.deliveries()}) == len(alice.deliveries())
        units = alice.status()["units"]
        assert units >= len(stored["SA"])
