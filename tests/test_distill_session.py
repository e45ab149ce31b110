"""Two distillation hosts over a real TCP connection: they distil the same key from a
simulated link, and a man in the middle that flips, drops, replays, injects or reorders a
message is always caught: the block it touched gives no key on either side, the others
give identical keys."""

import json
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from timebin.host.distill.auth import direction_pools
from timebin.host.distill.channel import AuthenticatedChannel
from timebin.host.distill.session import AliceHost, BobHost, DistillConfig
from timebin.sim.keydata import blocks, roles_for

SECRET = bytes(range(256)) * 64
LINK = ["--blocks", "3", "--block-symbols", "10000000", "--eta", "0.2", "--seed", "5"]


def test_in_process_hosts_agree_and_account_every_bit():
    a, b = socket.socketpair()
    config = DistillConfig()
    alice_keys, bob_keys = {}, {}
    data = list(blocks(2, 10_000_000, 3, eta=0.2))
    logs = {start: symbols for start, symbols, _ in data}

    def lookup(indices):
        start = max(s for s in logs if s <= int(indices.min()))
        at = (indices - np.uint64(start)).astype(np.int64)
        out = {k: v[at] for k, v in logs[start].items()}
        out["available"] = np.ones(len(at), np.uint8)
        return out

    alice = AliceHost(AuthenticatedChannel(a, role="alice", pools=direction_pools(SECRET),
                                           timeout=20), config, lookup=lookup,
                      sink=lambda blk, key, meta: alice_keys.__setitem__(blk, key),
                      rng=np.random.default_rng(1))
    bob = BobHost(AuthenticatedChannel(b, role="bob", pools=direction_pools(SECRET),
                                       timeout=20), config, roles=roles_for(3),
                  sink=lambda blk, key, meta: bob_keys.__setitem__(blk, key))
    thread = threading.Thread(target=alice.serve)
    thread.start()
    for block, (_, _, records) in enumerate(data):
        result = bob.run_block(block, records)
        assert result.status == "key", result
        assert 0.005 < result.qber_z < 0.02 and result.key_bits > 0
    bob.close()
    thread.join(30)
    assert alice_keys.keys() == bob_keys.keys() == {0, 1}
    for block in alice_keys:
        assert alice_keys[block] == bob_keys[block]
    for r_a, r_b in zip(alice.results, bob.results, strict=True):
        assert (r_a.key_bits, r_a.disclosed_bits, r_a.sifted_z) == (r_b.key_bits,
                                                                    r_b.disclosed_bits,
                                                                    r_b.sifted_z)
        # The bound spent exactly what was disclosed, and the key is shorter than the raw key.
        assert r_b.key_bits < r_b.sifted_z - r_b.disclosed_bits
    for role in ("alice", "bob"):
        pa, pb = alice.channel.pools[role], bob.channel.pools[role]
        assert pa.accounting() == pb.accounting()
        assert pa.replenished_bits == 2 * 8 * config.replenish_bytes // 2


def _start(argv):
    process = subprocess.Popen([sys.executable, "-m", "timebin.host.cli", *argv],
                               stdout=subprocess.PIPE, text=True)
    return process


def _port(process):
    line = process.stdout.readline()
    assert line, "the process did not start"
    return json.loads(line)["listening"]


def _summary(process):
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def _session(tmp_path, attack=None, extra=()):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    common = ["--secret-file", str(secret), "--json", "--timeout", "3", *LINK, *extra]
    alice = _start(["distill", "--role", "alice", "--listen", "127.0.0.1:0", *common])
    port = _port(alice)
    mitm = None
    if attack is not None:
        mitm = subprocess.Popen([sys.executable, "-m", "timebin.sim.attacker", "--to",
                                 f"127.0.0.1:{port}", *attack], stdout=subprocess.PIPE,
                                text=True)
        port = _port(mitm)
    bob = _start(["distill", "--role", "bob", "--connect", f"127.0.0.1:{port}", *common])
    result_b = _summary(bob)
    result_a = _summary(alice)
    attacked = None
    if mitm is not None:
        out, _ = mitm.communicate(timeout=60)
        attacked = json.loads(out.strip().splitlines()[-1])["attacked"]
    return result_a, result_b, attacked


def test_two_processes_distil_the_same_key(tmp_path):
    a, b, _ = _session(tmp_path, extra=["--store", str(tmp_path / "keys.db")])
    assert a["key_sha256"] == b["key_sha256"] and len(b["key_sha256"]) == 3
    assert a["key_bits"] == b["key_bits"] > 0
    assert a["channel"]["rejected"] == b["channel"]["rejected"] == 0


ATTACKS = [
    ("flip", "alice", "x_errors"),
    ("flip", "bob", "ec"),
    ("drop", "bob", "x_bits"),
    ("drop", "alice", "done"),
    ("replay", "bob", "ec"),
    ("replay", "alice", "announce"),
    ("inject", "alice", "ec_reply"),
    ("inject", "bob", "verified"),
    ("reorder", "bob", "ec"),
]


@pytest.mark.parametrize("attack,sender,kind", ATTACKS)
def test_man_in_the_middle_is_always_caught(tmp_path, attack, sender, kind):
    a, b, done = _session(tmp_path, ["--attack", attack, "--from", sender, "--kind", kind,
                                     "--nth", "1"])
    assert done is not None and done["kind"] == kind, done
    hit = str(done["block"])
    assert hit in ("0", "1", "2")
    status_a = {str(r["block"]): r["status"] for r in a["blocks"]}
    status_b = {str(r["block"]): r["status"] for r in b["blocks"]}
    assert status_b[hit] == "aborted" and hit not in b["key_sha256"]
    assert status_a.get(hit) != "key" and hit not in a["key_sha256"]
    assert a["key_sha256"] == b["key_sha256"]
    assert a["channel"]["rejected"] + b["channel"]["rejected"] >= (attack != "drop")
