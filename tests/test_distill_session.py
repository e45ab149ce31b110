"""Two distillation hosts over a real TCP connection: they distil the same key from a
simulated link, and a man in the middle that flips, drops, replays, injects or reorders a
message is always caught: the block it touched gives no key on either side, the others
give identical keys."""

import json
import subprocess
import sys

import pytest
from timebin.host.distill.session import DistillConfig, run_pair
from timebin.sim.keydata import blocks, roles_for

SECRET = bytes(range(256)) * 256     # 32 KB a direction: Cascade spends ~600 pads a block
LINK = ["--blocks", "3", "--block-symbols", "4000000", "--eta", "0.2", "--seed", "5"]


def test_in_process_hosts_agree_and_account_every_bit():
    # Cascade's public shuffles from a fixed seed: the same round trips, hence the same
    # authentication cost, on every run.
    config = DistillConfig(reconciler_options={"seed": 7}, replenish_bytes=16)
    alice, bob, keys = run_pair(blocks(2, 10_000_000, 3, eta=0.2), config,
                                roles=roles_for(3), secret=SECRET, timeout=20, seed=1)
    for result in bob.results:
        assert result.status == "key", result
        assert 0.005 < result.qber_z < 0.02 and result.key_bits > 0
    # A block's key refills the authentication pools first (Cascade's round trips cost a
    # pad each); what is left is stored, the same on both sides.
    assert keys["alice"] == keys["bob"] and len(keys["bob"]) >= 1
    for r_a, r_b in zip(alice.results, bob.results, strict=True):
        assert (r_a.key_bits, r_a.disclosed_bits, r_a.sifted_z) == (r_b.key_bits,
                                                                    r_b.disclosed_bits,
                                                                    r_b.sifted_z)
        # The bound spent what was disclosed, and the key is shorter than the raw key.
        assert r_b.key_bits < r_b.sifted_z - r_b.disclosed_bits
        assert r_a.stored_bits == r_b.stored_bits == 8 * len(keys["bob"].get(r_b.block, b""))
    for role in ("alice", "bob"):
        pa, pb = alice.channel.pools[role], bob.channel.pools[role]
        assert pa.accounting() == pb.accounting()
        # Every bit accounted: the hash key, one pad per message sent, the refills.
        sender = alice if role == "alice" else bob
        assert pa.consumed_bits == 128 + 128 * sender.channel.sent
        assert pa.available_bits == pa.initial_bits + pa.replenished_bits - pa.consumed_bits
        assert pa.replenished_bits > 0


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


def _session(tmp_path, attack=None, store=False, extra=()):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    common = ["--secret-file", str(secret), "--json", "--timeout", "10", *LINK, *extra]

    def stored(role):
        return ["--store", str(tmp_path / f"{role}.db")] if store else []
    alice = _start(["distill", "--role", "alice", "--listen", "127.0.0.1:0", *common,
                    *stored("alice")])
    port = _port(alice)
    mitm = None
    if attack is not None:
        mitm = subprocess.Popen([sys.executable, "-m", "timebin.sim.attacker", "--to",
                                 f"127.0.0.1:{port}", *attack], stdout=subprocess.PIPE,
                                text=True)
        port = _port(mitm)
    bob = _start(["distill", "--role", "bob", "--connect", f"127.0.0.1:{port}", *common,
                  *stored("bob")])
    result_b = _summary(bob)
    result_a = _summary(alice)
    attacked = None
    if mitm is not None:
        out, _ = mitm.communicate(timeout=60)
        attacked = json.loads(out.strip().splitlines()[-1])["attacked"]
    return result_a, result_b, attacked


def test_two_processes_distil_the_same_key(tmp_path):
    # LDPC: one-way, a few round trips, so most of each block's key is left after the
    # authentication pools are refilled (Cascade's ~300 round trips can take all of it).
    a, b, _ = _session(tmp_path, store=True, extra=["--reconciler", "ldpc"])
    assert a["key_sha256"] == b["key_sha256"] and len(b["key_sha256"]) >= 1
    assert [r["status"] for r in b["blocks"]] == ["key"] * 3
    assert a["key_bits"] == b["key_bits"] > 0
    assert a["channel"]["rejected"] == b["channel"]["rejected"] == 0
    # Both key stores hold the same keys under the same IDs.
    from timebin.host.keystore import KeyStore
    with KeyStore(tmp_path / "alice.db") as ka, KeyStore(tmp_path / "bob.db") as kb:
        shape = [(r["block_id"], r["key_bits"], r["units"]) for r in ka.blocks()]
        assert shape == [(r["block_id"], r["key_bits"], r["units"]) for r in kb.blocks()]
        given = ka.enc_keys(4, master_sae="sae-a", slave_sae="sae-b")
        taken = kb.dec_keys([k.key_id for k in given], master_sae="sae-a", slave_sae="sae-b")
        assert [k.key for k in given] == [k.key for k in taken]


ATTACKS = [
    ("flip", "alice", "x_errors"),
    ("flip", "bob", "ec"),
    ("drop", "bob", "x_bits"),
    ("drop", "alice", "done"),
    ("replay", "bob", "ec"),
    ("replay", "alice", "announce"),
    ("inject", "alice", "ec_reply"),
    ("inject", "bob", "x_bits"),
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
