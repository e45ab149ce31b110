"""The ETSI GS QKD 014 key-delivery API over real HTTPS: mutual TLS and bearer tokens, the
master/slave flow between Alice's and Bob's KMEs, the standard's JSON shapes and HTTP codes,
and ``timebin serve``."""

import argparse
import base64
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
from timebin.host.cli_serve import add_serve_parser, run_serve, start_serve
from timebin.host.etsi014 import (
    ETSI014Client,
    ETSI014HTTPError,
    client_context,
    make_certificates,
    serve,
)
from timebin.host.keystore import KeyStore

TOKEN = "t0ken-of-sae-a-0123456789"
STATUS_FIELDS = {"source_KME_ID": str, "target_KME_ID": str, "master_SAE_ID": str,
                 "slave_SAE_ID": str, "key_size": int, "stored_key_count": int,
                 "max_key_count": int, "max_key_per_request": int, "max_key_size": int,
                 "min_key_size": int, "max_SAE_ID_count": int}


@pytest.fixture(scope="module")
def kmes(tmp_path_factory):
    root = tmp_path_factory.mktemp("kme")
    pki = make_certificates(root / "pki", ["kme-alice", "kme-bob", "sae-a", "sae-b", "sae-x"])
    rogue = make_certificates(root / "rogue", ["sae-a"])        # another CA
    alice = KeyStore(root / "alice.keys", role="alice")
    bob = KeyStore(root / "bob.keys", role="bob")
    rng = np.random.default_rng(14)
    for block in range(10):
        material = rng.integers(0, 256, 32 * 64, dtype=np.uint8).tobytes()
        for store in (alice, bob):
            store.store_block(material, session="lab", block_id=block, qber=0.02)
    certs = pki["certs"]
    alice_kme = serve(alice, certfile=certs["kme-alice"]["cert"],
                      keyfile=certs["kme-alice"]["key"], cafile=pki["ca"],
                      tokens={"sae-a": TOKEN}, sae_ids=["sae-a"], peer_sae_ids=["sae-b"],
                      kme_id="kme-alice", peer_kme_id="kme-bob", max_key_per_request=16).start()
    bob_kme = serve(bob, certfile=certs["kme-bob"]["cert"], keyfile=certs["kme-bob"]["key"],
                    cafile=pki["ca"], sae_ids={"sae-b": "sae-b"}, peer_sae_ids=["sae-a"],
                    max_key_per_request=16).start()
    yield {"pki": pki, "rogue": rogue, "alice": alice_kme, "bob": bob_kme,
           "alice_store": alice, "bob_store": bob}
    alice_kme.close()
    bob_kme.close()
    alice.close()
    bob.close()


def _client(kmes, side, name=None, token=None, pki="pki"):
    certs = kmes[pki]["certs"]
    return ETSI014Client(kmes[side].url, cafile=kmes["pki"]["ca"],
                         certfile=certs[name]["cert"] if name else None,
                         keyfile=certs[name]["key"] if name else None, token=token)


def _raw(kmes, side, method, path, body=None, name=None, headers=None):
    """One request with http.client; returns (status, headers, decoded body)."""
    certs = kmes["pki"]["certs"]
    context = client_context(kmes["pki"]["ca"], certs[name]["cert"] if name else None,
                             certs[name]["key"] if name else None)
    host, port = kmes[side].server_address[:2]
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def _assert_error(status, body, code):
    assert status == code, body
    assert isinstance(body, dict) and set(body) <= {"message", "details"}
    assert isinstance(body["message"], str) and body["message"]
    if "details" in body:
        assert isinstance(body["details"], list)
        assert all(isinstance(item, dict) for item in body["details"])


def _keys(answer):
    assert set(answer) == {"keys"}
    for item in answer["keys"]:
        assert set(item) == {"key_ID", "key"}
        uuid.UUID(item["key_ID"])
    return [(k["key_ID"], base64.b64decode(k["key"], validate=True)) for k in answer["keys"]]


def test_status_shape(kmes):
    client = _client(kmes, "alice", "sae-a")
    status = client.status("sae-b")
    assert set(status) == set(STATUS_FIELDS)
    for name, kind in STATUS_FIELDS.items():
        assert isinstance(status[name], kind) and not isinstance(status[name], bool)
    assert status["source_KME_ID"] == "kme-alice" and status["target_KME_ID"] == "kme-bob"
    assert status["master_SAE_ID"] == "sae-a" and status["slave_SAE_ID"] == "sae-b"
    assert status["key_size"] == 256 and status["max_SAE_ID_count"] == 0
    assert status["stored_key_count"] == kmes["alice_store"].available()
    assert status["max_key_per_request"] == 16 and status["min_key_size"] == 8
    assert status["max_key_size"] == 8192 and status["max_key_count"] > 0
    assert client.request("POST", "/api/v1/keys/sae-b/status", {})[1] == status
    bob_status = _client(kmes, "bob", "sae-b").status("sae-a")
    assert bob_status["source_KME_ID"] == "kme-bob" and bob_status["target_KME_ID"] == \
        "kme-alice"
    status_code, body = client.request("GET", "/api/v1/keys/sae-b/status?number=3")
    _assert_error(status_code, body, 400)


def test_master_and_slave_get_the_same_keys_over_urllib(kmes):
    certs, ca = kmes["pki"]["certs"], kmes["pki"]["ca"]
    master = client_context(ca, certs["sae-a"]["cert"], certs["sae-a"]["key"])
    request = urllib.request.Request(
        kmes["alice"].url + "/api/v1/keys/sae-b/enc_keys",
        data=json.dumps({"number": 3, "size": 512}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, context=master, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        enc = _keys(json.load(response))
    assert len(enc) == 3 and all(len(key) == 64 for _, key in enc)
    assert len({key for _, key in enc}) == 3

    slave = client_context(ca, certs["sae-b"]["cert"], certs["sae-b"]["key"])
    request = urllib.request.Request(
        kmes["bob"].url + "/api/v1/keys/sae-a/dec_keys",
        data=json.dumps({"key_IDs": [{"key_ID": key_id} for key_id, _ in enc]}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, context=slave, timeout=10) as response:
        dec = _keys(json.load(response))
    assert dec == enc

    # A second dec_keys of the same IDs fails with the standard's error object.
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, context=slave, timeout=10)
    body = json.load(error.value)
    _assert_error(error.value.code, body, 400)
    assert {d["key_ID"] for d in body["details"]} == {key_id for key_id, _ in enc}
    assert all(d["reason"] == "key already delivered" for d in body["details"])


def test_get_methods_and_the_reverse_direction(kmes):
    # Bob's SAE as master: enc_keys (GET) on Bob's KME, dec_keys (GET) on Alice's.
    bob = _client(kmes, "bob", "sae-b")
    status, answer = bob.request("GET", "/api/v1/keys/sae-a/enc_keys?number=2&size=128")
    assert status == 200
    enc = _keys(answer)
    assert all(len(key) == 16 for _, key in enc)
    alice = _client(kmes, "alice", "sae-a")
    for key_id, key in enc:
        status, answer = alice.request("GET", f"/api/v1/keys/sae-b/dec_keys?key_ID={key_id}")
        assert status == 200 and _keys(answer) == [(key_id, key)]
    # A key from enc_keys on Alice's KME cannot be fetched by dec_keys there too.
    ((key_id, _),) = alice.enc_keys("sae-b")
    with pytest.raises(ETSI014HTTPError) as error:
        _client(kmes, "alice", token=TOKEN).dec_keys("sae-b", [key_id])
    _assert_error(error.value.status, error.value.body, 400)
    assert "enc_keys of alice" in error.value.body["details"][0]["reason"]
    assert _client(kmes, "bob", "sae-b").dec_keys("sae-a", [key_id])[0][0] == key_id


def test_token_authentication(kmes):
    client = _client(kmes, "alice", token=TOKEN)
    ((key_id, key),) = client.enc_keys("sae-b", 1, 256)
    assert _client(kmes, "bob", "sae-b").dec_keys("sae-a", [key_id]) == [(key_id, key)]
    assert kmes["alice_store"].key_state(key_id)["master_SAE_ID"] == "sae-a"
    assert kmes["bob_store"].key_state(key_id)["slave_SAE_ID"] == "sae-b"


@pytest.mark.parametrize("case", ["no credentials", "wrong token", "token scheme",
                                  "unlisted certificate", "peer's certificate",
                                  "token where none configured"])
def test_unauthenticated_requests_get_401(kmes, case):
    side, name, headers = {
        "no credentials": ("alice", None, {}),
        "wrong token": ("alice", None, {"Authorization": "Bearer " + TOKEN[:-1] + "X"}),
        "token scheme": ("alice", None, {"Authorization": "Basic " + TOKEN}),
        "unlisted certificate": ("alice", "sae-x", {}),
        "peer's certificate": ("alice", "sae-b", {}),
        "token where none configured": ("bob", None, {"Authorization": "Bearer " + TOKEN}),
    }[case]
    before = kmes[f"{side}_store"].status()
    for method, action in (("GET", "status"), ("POST", "enc_keys"), ("POST", "dec_keys")):
        body = b"{}" if method == "POST" else None
        peer = "sae-b" if side == "alice" else "sae-a"
        status, response_headers, answer = _raw(kmes, side, method,
                                                f"/api/v1/keys/{peer}/{action}", body, name,
                                                headers)
        _assert_error(status, answer, 401)
        if side == "alice":
            assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert kmes[f"{side}_store"].status() == before


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1:DeprecationWarning")
def test_foreign_ca_and_old_tls_are_refused(kmes):
    rogue = kmes["rogue"]["certs"]["sae-a"]
    client = ETSI014Client(kmes["alice"].url, cafile=kmes["pki"]["ca"],
                           certfile=rogue["cert"], keyfile=rogue["key"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client.status("sae-b")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(kmes["pki"]["ca"])
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")      # so that the server is the one refusing
    host, port = kmes["alice"].server_address[:2]
    with pytest.raises(ssl.SSLError, match="(?i)version"):
        with socket.create_connection((host, port), timeout=5) as sock:
            with context.wrap_socket(sock, server_hostname="localhost"):
                pass
    assert _client(kmes, "alice", "sae-a").status("sae-b")["slave_SAE_ID"] == "sae-b"


_BAD_ENC = {
    "bad JSON": b"{\"number\": 1,",
    "not an object": b"[1, 2]",
    "number zero": {"number": 0},
    "number negative": {"number": -3},
    "number string": {"number": "two"},
    "number float": {"number": 1.5},
    "number bool": {"number": True},
    "size not multiple of 8": {"size": 12},
    "size zero": {"size": 0},
    "size too large": {"size": 8200},
    "too many keys": {"number": 17},
    "multicast": {"additional_slave_SAE_IDs": ["sae-c"]},
    "mandatory extension": {"extension_mandatory": [{"route_type": "direct"}]},
    "unknown field": {"colour": "blue"},
}


@pytest.mark.parametrize("case", sorted(_BAD_ENC))
def test_malformed_enc_keys_get_400(kmes, case):
    body = _BAD_ENC[case]
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    before = kmes["alice_store"].available()
    status, _, answer = _raw(kmes, "alice", "POST", "/api/v1/keys/sae-b/enc_keys", body,
                             "sae-a", {"Content-Type": "application/json"})
    _assert_error(status, answer, 400)
    assert kmes["alice_store"].available() == before


@pytest.mark.parametrize("path", [
    "/api/v1/keys/sae-b/enc_keys?number=0", "/api/v1/keys/sae-b/enc_keys?size=7",
    "/api/v1/keys/sae-b/enc_keys?number=x", "/api/v1/keys/sae-b/enc_keys?number=99",
    "/api/v1/keys/sae-b/enc_keys?foo=1", "/api/v1/keys/sae-b/enc_keys?number=1&number=2",
    "/api/v1/keys/sae-z/enc_keys", "/api/v1/keys/sae-a/enc_keys",
    "/api/v1/keys/sae-b/dec_keys", "/api/v1/keys/sae-b/dec_keys?key_ID=abc",
    # A well-formed key ID no one was given (fixed: xdist workers must collect the same ids).
    "/api/v1/keys/sae-b/dec_keys?key_ID=5d3c1a9e-0b7f-4c2e-9a61-2f8e4d7b6c10",
])
def test_malformed_get_requests_get_400(kmes, path):
    status, answer = _client(kmes, "alice", "sae-a").request("GET", path)
    _assert_error(status, answer, 400)


def test_post_with_query_and_unknown_resource(kmes):
    client = _client(kmes, "alice", "sae-a")
    status, answer = client.request("POST", "/api/v1/keys/sae-b/enc_keys?number=1", {})
    _assert_error(status, answer, 400)
    status, answer = client.request("GET", "/api/v1/keys/sae-b/keys")
    _assert_error(status, answer, 404)


def test_malformed_dec_keys_get_400(kmes):
    good = _client(kmes, "alice", "sae-a").enc_keys("sae-b", 1)[0][0]
    slave = _client(kmes, "bob", "sae-b")
    for body in ({}, {"key_IDs": []}, {"key_IDs": [good]}, {"key_IDs": [{"key_ID": 5}]},
                 {"key_IDs": [{"key_ID": "abc"}]}, {"key_IDs": [{"key_ID": str(uuid.uuid4())}]},
                 {"key_IDs": [{"key_ID": good, "key_ID_extension": {"x": 1}}]},
                 {"key_IDs": [{"key_ID": good}], "key_IDs_extension": {"x": 1}},
                 {"key_IDs": [{"key_ID": good}], "other": 1},
                 {"key_IDs": [{"key_ID": good}] * 2},
                 {"key_IDs": [{"key_ID": str(uuid.uuid4())} for _ in range(17)]}):
        status, answer = slave.request("POST", "/api/v1/keys/sae-a/dec_keys", body)
        _assert_error(status, answer, 400)
    status, answer = slave.request("POST", "/api/v1/keys/sae-a/dec_keys", b"not json")
    _assert_error(status, answer, 400)
    # Nothing was delivered by the refusals: the good key is still there, once.
    assert slave.dec_keys("sae-a", [good])[0][0] == good
    status, answer = slave.request("POST", "/api/v1/keys/sae-a/dec_keys",
                                   {"key_IDs": [{"key_ID": good}]})
    _assert_error(status, answer, 400)
    assert answer["details"] == [{"key_ID": good, "reason": "key already delivered"}]


def test_not_enough_key_is_503_and_delivers_nothing(kmes):
    store = kmes["bob_store"]
    before = store.available()
    assert before < 16 * 32
    status, answer = _client(kmes, "bob", "sae-b").request(
        "POST", "/api/v1/keys/sae-a/enc_keys", {"number": 16, "size": 8192})
    _assert_error(status, answer, 503)
    assert answer["details"][0]["requested"] == 16
    assert store.available() == before


def test_concurrent_clients_get_distinct_keys(kmes):
    results, errors = [], []

    def worker():
        client = _client(kmes, "alice", "sae-a")
        try:
            for _ in range(4):
                results.extend(client.enc_keys("sae-b", 3))
        except Exception as error:                             # pragma: no cover
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 72
    assert len({key_id for key_id, _ in results}) == 72
    assert len({key for _, key in results}) == 72


def test_make_certificates_is_rerunnable(tmp_path):
    first = make_certificates(tmp_path, ["kme-alice"])
    ca = (tmp_path / "ca.pem").read_bytes()
    second = make_certificates(tmp_path, ["kme-alice", "sae-new"])
    assert (tmp_path / "ca.pem").read_bytes() == ca
    assert second["certs"]["kme-alice"] == first["certs"]["kme-alice"]
    assert (tmp_path / "sae-new-key.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        make_certificates(tmp_path, ["bad name"])


def test_serve_refuses_bad_configuration(kmes, tmp_path):
    certs = kmes["pki"]["certs"]["kme-alice"]
    store = kmes["alice_store"]
    with pytest.raises(ValueError, match="authenticate"):
        serve(store, certfile=certs["cert"], keyfile=certs["key"])
    with pytest.raises(ValueError, match="token"):
        serve(store, certfile=certs["cert"], keyfile=certs["key"], tokens={"sae-a": "short"})
    with pytest.raises(ValueError, match="multiples of 8"):
        serve(store, certfile=certs["cert"], keyfile=certs["key"], cafile=kmes["pki"]["ca"],
              max_key_size=1001)


# -- timebin serve ---------------------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(prog="timebin")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _filled_store(path, role="alice"):
    with KeyStore(path, role=role) as store:
        store.store_block(bytes(range(256)) * 4, session="cli", block_id=0)


def test_serve_arguments():
    args = _parser().parse_args(["serve", "--store", "k.db", "--role", "bob", "--port", "0",
                                 "--token", "sae-b=abc", "--token", "sae-c=@file",
                                 "--sae", "sae-b", "--peer-sae", "sae-a", "--json"])
    assert args.command == "serve" and args.role == "bob" and args.port == 0
    assert args.token == [("sae-b", "abc"), ("sae-c", "@file")]
    assert args.sae == ["sae-b"] and args.peer_sae == ["sae-a"] and args.json
    assert args.host == "127.0.0.1" and args.max_key_size == 8192
    for bad in (["--token", "novalue"], ["--port", "70000"], ["--role", "eve"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(["serve", "--store", "k.db", *bad])


def test_start_serve_in_process_with_made_certificates(tmp_path):
    _filled_store(tmp_path / "k.db")
    (tmp_path / "token").write_text(TOKEN + "\n")
    args = _parser().parse_args([
        "serve", "--store", str(tmp_path / "k.db"), "--port", "0", "--make-certs",
        str(tmp_path / "pki"), "--sae", "sae-a", "--token", f"sae-t=@{tmp_path / 'token'}"])
    server, store, info = start_serve(args)
    try:
        assert info["role"] == "alice" and info["stored_key_count"] == 16
        assert info["client_certificates"] and info["token_saes"] == ["sae-t"]
        pki = info["certificates"]
        client = ETSI014Client(info["url"], cafile=pki["ca"],
                               certfile=pki["certs"]["sae-a"]["cert"],
                               keyfile=pki["certs"]["sae-a"]["key"])
        assert client.status("sae-b")["stored_key_count"] == 16
        tokened = ETSI014Client(info["url"], cafile=pki["ca"], token=TOKEN)
        assert len(tokened.enc_keys("sae-b", 2)) == 2
    finally:
        server.close()
        store.close()


def test_run_serve_reports_configuration_errors(tmp_path, capsys):
    args = _parser().parse_args(["serve", "--store", str(tmp_path / "new.db"), "--port", "0",
                                 "--make-certs", str(tmp_path / "pki")])
    assert run_serve(args) == 2
    assert "give its role" in capsys.readouterr().err
    _filled_store(tmp_path / "k.db")
    args = _parser().parse_args(["serve", "--store", str(tmp_path / "k.db"), "--port", "0"])
    assert run_serve(args) == 2
    assert "--make-certs" in capsys.readouterr().err


_SERVE = ("import argparse, sys\n"
          "from timebin.host.cli_serve import add_serve_parser, run_serve\n"
          "parser = argparse.ArgumentParser()\n"
          "add_serve_parser(parser.add_subparsers(dest='command'))\n"
          "sys.exit(run_serve(parser.parse_args(sys.argv[1:])))\n")


def test_serve_subprocess_json_and_sigterm(tmp_path):
    _filled_store(tmp_path / "bob.db", role="bob")
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "serve", "--store", str(tmp_path / "bob.db"),
         "--port", "0", "--make-certs", str(tmp_path / "pki"), "--sae", "sae-b",
         "--peer-sae", "sae-a", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(process.stdout.readline())
        assert info["kme_id"] == "kme-bob" and info["peer_kme_id"] == "kme-alice"
        assert info["url"] == f"https://127.0.0.1:{info['port']}" and info["port"] > 0
        pki = info["certificates"]
        client = ETSI014Client(info["url"], cafile=pki["ca"],
                               certfile=pki["certs"]["sae-b"]["cert"],
                               keyfile=pki["certs"]["sae-b"]["key"])
        assert client.status("sae-a")["stored_key_count"] == 16
        ((key_id, key),) = client.enc_keys("sae-a", 1, 256)
        assert key == bytes(range(32, 64))          # unit 1 of the block: Bob's direction
        with pytest.raises(ETSI014HTTPError) as error:
            client.enc_keys("sae-x")
        assert error.value.status == 400
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    with KeyStore(tmp_path / "bob.db") as store:
        assert store.key_state(key_id)["state"] == "delivered"
