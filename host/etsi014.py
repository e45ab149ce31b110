"""Key delivery to applications: the REST API of ETSI GS QKD 014 V1.1.1 (2019-02).

A KME (key management entity: Alice's or Bob's host) hands the keys of its
:class:`~timebin.host.keystore.KeyStore` to SAEs (secure application entities) over HTTPS:

=====================================================  ===================================
``GET|POST /api/v1/keys/{slave_SAE_ID}/status``        Status of the key pool
``GET|POST /api/v1/keys/{slave_SAE_ID}/enc_keys``      Get key (caller = master SAE)
``GET|POST /api/v1/keys/{master_SAE_ID}/dec_keys``     Get key with key IDs (caller = slave)
=====================================================  ===================================

``GET enc_keys`` takes ``number`` and ``size`` in the query, ``POST enc_keys`` a Key request
JSON object (``number``, ``size``, ``additional_slave_SAE_IDs``, ``extension_mandatory``,
``extension_optional``); ``GET dec_keys`` takes one ``key_ID`` in the query, ``POST dec_keys``
a Key IDs object ``{"key_IDs": [{"key_ID": ...}, ...]}``. Answers: 200 with a Status or a
Key container ``{"keys": [{"key_ID": ..., "key": base64}, ...]}``; 400 (bad request: malformed
JSON or parameters, unknown or already delivered key IDs), 401 (unauthenticated) and 503
(server error, or not enough key material right now) with an Error object
``{"message": ..., "details": [{...}, ...]}``.

Restrictions of this KME (advertised by Status): ``max_SAE_ID_count`` is 0 (no key
multicast, so ``additional_slave_SAE_IDs`` must be empty); no mandatory extension is
supported (a request naming one is refused), optional extensions are ignored; key sizes are
multiples of 8 bits between ``min_key_size`` and ``max_key_size``.

Transport: TLS 1.2 or newer only. SAEs authenticate by a client certificate signed by the
configured CA (mutual TLS; the SAE ID is the certificate's common name, or a configured
mapping of common names to SAE IDs) or by a bearer token (``Authorization: Bearer ...``),
whichever is configured. A request without valid credentials gets 401.

The two KMEs do not talk to each other: the key IDs carry what the peer needs (see
:mod:`timebin.host.keystore`). Hence ``dec_keys`` cannot check that the master SAE named
this slave SAE: every SAE authenticated at a KME may fetch any key ID of the peer's
``enc_keys`` it learns. Restrict ``sae_ids`` (and ``peer_sae_ids``) to the one SAE pair of
the link unless all SAEs of a site trust each other.
"""

import base64
import datetime
import hmac
import http.client
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .keystore import MAX_KEY_BITS, ROLES, KeyIDError, KeyRequestError, NotEnoughKeyError

__all__ = ["API_PREFIX", "ETSI014Client", "ETSI014HTTPError", "KMEServer", "client_context",
           "make_certificates", "serve", "server_context"]

API_PREFIX = "/api/v1/keys/"
MAX_BODY_BYTES = 1 << 20
_log = logging.getLogger("timebin.kme")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# -- TLS --------------------------------------------------------------------------------------


def server_context(certfile, keyfile, cafile=None):
    """The server's TLS context: TLS 1.2+, and client certificates verified against
    ``cafile`` when given (optional at the handshake, so that a request without one gets a
    proper 401 answer instead of a broken connection)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if cafile is not None:
        context.load_verify_locations(cafile)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(cafile, certfile=None, keyfile=None):
    """A client's TLS context: verifies the KME against ``cafile`` (TLS 1.2+) and presents
    the SAE's certificate when given."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def make_certificates(directory, names, *, hosts=("localhost", "127.0.0.1", "::1"),
                      days=825):
    """Write a CA and, for each of ``names`` (KME and SAE IDs), a certificate and key.

    Files: ``ca.pem``, ``ca-key.pem``, ``NAME.pem``, ``NAME-key.pem`` (keys mode 0600,
    ECDSA P-256). Each certificate has common name ``NAME``, serves as TLS server and client
    certificate, and names ``NAME`` and ``hosts`` as subject alternative names. Files that
    exist are kept (an existing CA signs the new certificates), so this is safe to run again
    with more names. Returns ``{"ca": path, "ca_key": path, "certs": {name: {"cert": path,
    "key": path}}}``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names = list(names)
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name) or name in ("ca", "ca-key"):
            raise ValueError(f"certificate name {name!r} must be 1-64 characters of "
                             f"letters, digits, '.', '_', '-' (and not 'ca')")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def write_key(path, key):
        data = key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)

    def write_cert(path, cert):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    now = datetime.datetime.now(datetime.UTC)
    ca_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    if ca_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "timebin KME CA")])
        ca_cert = (x509.CertificateBuilder()
                   .subject_name(ca_name).issuer_name(ca_name)
                   .public_key(ca_key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=True, crl_sign=True, encipher_only=False,
                       decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                       ca_key.public_key()), critical=False)
                   .sign(ca_key, hashes.SHA256()))
        write_key(ca_key_path, ca_key)
        write_cert(ca_path, ca_cert)

    alt_names = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    result = {"ca": str(ca_path), "ca_key": str(ca_key_path), "certs": {}}
    for name in names:
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
        result["certs"][name] = {"cert": str(cert_path), "key": str(key_path)}
        if cert_path.exists() and key_path.exists():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(name)] + [a for a in alt_names if a != x509.DNSName(name)]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        write_key(key_path, key)
        write_cert(cert_path, cert)
    return result


# -- the server ---------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(self, status, message, details=None, *, close=False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.close = close

    def body(self):
        body = {"message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def _bad(message, **detail):
    return _ApiError(400, message, [detail] if detail else None)


def _integer(value, name):
    if isinstance(value, str):
        try:
            value = int(value, 10)
        except ValueError:
            raise _bad(f"{name} must be an integer", parameter=name, value=value) from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"{name} must be an integer", parameter=name, value=value)
    return value


def _empty_extension(value, name):
    if value not in (None, {}, []):
        raise _bad(f"{name} is not supported by this KME", parameter=name)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "timebin-KME/1"
    timeout = 30

    def do_GET(self):                                          # noqa: N802
        self._dispatch("GET")

    def do_POST(self):                                         # noqa: N802
        self._dispatch("POST")

    def log_message(self, format, *args):                      # noqa: A002
        _log.info("%s %s", self.address_string(), format % args)

    # -- plumbing

    def _dispatch(self, method):
        server = self.server
        headers = {}
        try:
            data = self._read_body()      # first, so that every answer finds the stream clean
            sae = self._authenticate()
            url = urllib.parse.urlsplit(self.path)
            body = self._parse_body(method, data)
            target, action = self._route(url.path)
            if method == "GET":
                query = self._query(url.query)
            elif url.query:
                raise _bad("POST takes its parameters in the JSON body, not in the query")
            else:
                query = None
            if action == "status":
                if query if query is not None else body:
                    raise _bad("status takes no parameters")
                answer = server.status_of(sae, target)
            elif action == "enc_keys":
                answer = self._enc_keys(sae, target, query, body)
            else:
                answer = self._dec_keys(sae, target, query, body)
            status = 200
        except _ApiError as error:
            if error.close:
                self.close_connection = True
            if error.status == 401 and server.config["tokens"]:
                headers["WWW-Authenticate"] = 'Bearer realm="timebin-KME"'
            status, answer = error.status, error.body()
        except Exception:                                      # the store failed
            _log.exception("error serving %s %s", method, self.path)
            self.close_connection = True
            status, answer = 503, {"message": "error of server"}
        try:
            self._send(status, answer, headers)
        except OSError as error:
            _log.warning("answer to %s lost: %s", self.address_string(), error)
            self.close_connection = True

    def _send(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _authenticate(self):
        config = self.server.config
        authorization = self.headers.get("Authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not config["tokens"]:
                raise _ApiError(401, "unauthorized: unsupported Authorization", close=True)
            token = token.strip().encode()
            found = None
            for sae, expected in config["tokens"].items():
                if hmac.compare_digest(token, expected.encode()):
                    found = sae
            if found is None:
                raise _ApiError(401, "unauthorized: invalid token", close=True)
            return found
        if config["cafile"] is not None:
            cert = self.connection.getpeercert()
            if cert:
                names = [value for rdn in cert.get("subject", ()) for key, value in rdn
                         if key == "commonName"]
                if len(names) == 1:
                    sae_ids = config["sae_ids"]
                    if sae_ids is None:
                        return names[0]
                    if isinstance(sae_ids, Mapping):
                        if names[0] in sae_ids:
                            return sae_ids[names[0]]
                    elif names[0] in sae_ids:
                        return names[0]
                raise _ApiError(401, "unauthorized: certificate names no known SAE",
                                close=True)
        raise _ApiError(401, "unauthorized: no client certificate or token", close=True)

    def _read_body(self):
        if self.headers.get("Transfer-Encoding"):
            raise _ApiError(400, "chunked request bodies are not supported; send "
                                 "Content-Length", close=True)
        length = self.headers.get("Content-Length", "0")
        try:
            length = int(length)
        except ValueError:
            raise _ApiError(400, "bad Content-Length", close=True) from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise _ApiError(400, f"request body larger than {MAX_BODY_BYTES} bytes",
                            close=True)
        data = self.rfile.read(length) if length else b""
        if len(data) != length:
            raise _ApiError(400, "request body shorter than its Content-Length", close=True)
        return data

    @staticmethod
    def _parse_body(method, data):
        if method == "GET":
            if data.strip():
                raise _bad("GET takes its parameters in the query, not in a body")
            return None
        if not data.strip():
            return {}
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _bad(f"request body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise _bad("request body must be a JSON object")
        return body

    def _route(self, path):
        if not path.startswith(API_PREFIX):
            raise _ApiError(404, f"no such resource: {path}")
        parts = path[len(API_PREFIX):].split("/")
        if len(parts) != 2 or parts[1] not in ("status", "enc_keys", "dec_keys") \
                or not parts[0]:
            raise _ApiError(404, f"no such resource: {path}")
        target = urllib.parse.unquote(parts[0])
        if not target.strip():
            raise _bad("SAE ID in the path is empty")
        return target, parts[1]

    @staticmethod
    def _query(text):
        try:
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True) \
                if text else []
        except ValueError:
            raise _bad("malformed query string") from None
        query = {}
        for name, value in pairs:
            if name in query:
                raise _bad(f"query parameter {name} given more than once", parameter=name)
            query[name] = value
        return query

    # -- methods

    def _enc_keys(self, sae, slave, query, body):
        server = self.server
        server.check_peer(sae, slave)
        request = query if query is not None else body
        known = ("number", "size") if query is not None else (
            "number", "size", "additional_slave_SAE_IDs", "extension_mandatory",
            "extension_optional")
        unknown = sorted(set(request) - set(known))
        if unknown:
            raise _bad(f"unknown parameter {unknown[0]}", parameter=unknown[0])
        number = _integer(request.get("number", 1), "number")
        size = _integer(request.get("size", server.store.unit_bits), "size")
        limits = server.config
        if number < 1:
            raise _bad("number of keys must be at least 1", parameter="number", value=number)
        if number > limits["max_key_per_request"]:
            raise _bad(f"number of keys {number} exceeds max_key_per_request "
                       f"{limits['max_key_per_request']}", parameter="number", value=number)
        if size % 8:
            raise _bad(f"key size {size} is not a multiple of 8 bits", parameter="size",
                       value=size)
        if not limits["min_key_size"] <= size <= limits["max_key_size"]:
            raise _bad(f"key size {size} is outside {limits['min_key_size']}.."
                       f"{limits['max_key_size']} bits", parameter="size", value=size)
        slaves = request.get("additional_slave_SAE_IDs")
        if slaves not in (None, []):
            raise _bad("additional_slave_SAE_IDs is not supported (max_SAE_ID_count is 0)",
                       parameter="additional_slave_SAE_IDs")
        mandatory = request.get("extension_mandatory")
        if mandatory not in (None, []):
            raise _bad("mandatory extensions are not supported by this KME",
                       parameter="extension_mandatory", value=mandatory)
        optional = request.get("extension_optional")
        if optional is not None and not isinstance(optional, list):
            raise _bad("extension_optional must be an array", parameter="extension_optional")
        try:
            keys = server.store.enc_keys(number, size, master_sae=sae, slave_sae=slave)
        except NotEnoughKeyError as error:
            raise _ApiError(503, "not enough key material", [
                {"requested": error.requested, "available": error.available,
                 "size": size}]) from None
        except KeyRequestError as error:
            raise _bad(str(error)) from None
        _log.info("enc_keys: %d keys of %d bits to master SAE %r for slave SAE %r",
                  len(keys), size, sae, slave)
        return _container(keys)

    def _dec_keys(self, sae, master, query, body):
        server = self.server
        server.check_peer(sae, master)
        if query is not None:
            unknown = sorted(set(query) - {"key_ID"})
            if unknown:
                raise _bad(f"unknown parameter {unknown[0]}", parameter=unknown[0])
            if "key_ID" not in query:
                raise _bad("key_ID is missing", parameter="key_ID")
            key_ids = [query["key_ID"]]
        else:
            unknown = sorted(set(body) - {"key_IDs", "key_IDs_extension"})
            if unknown:
                raise _bad(f"unknown parameter {unknown[0]}", parameter=unknown[0])
            _empty_extension(body.get("key_IDs_extension"), "key_IDs_extension")
            items = body.get("key_IDs")
            if not isinstance(items, list) or not items:
                raise _bad("key_IDs must be a non-empty array", parameter="key_IDs")
            key_ids = []
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("key_ID"), str) \
                        or set(item) - {"key_ID", "key_ID_extension"}:
                    raise _bad("each item of key_IDs must be an object with a string key_ID",
                               parameter="key_IDs")
                _empty_extension(item.get("key_ID_extension"), "key_ID_extension")
                key_ids.append(item["key_ID"])
        if len(key_ids) > server.config["max_key_per_request"]:
            raise _bad(f"{len(key_ids)} key IDs exceed max_key_per_request "
                       f"{server.config['max_key_per_request']}", parameter="key_IDs")
        try:
            keys = server.store.dec_keys(key_ids, master_sae=master, slave_sae=sae)
        except KeyIDError as error:
            raise _ApiError(400, "key IDs cannot be delivered",
                            [{"key_ID": k, "reason": r} for k, r in error.problems]) from None
        except KeyRequestError as error:
            raise _bad(str(error)) from None
        _log.info("dec_keys: %d keys to slave SAE %r from master SAE %r", len(keys), sae,
                  master)
        return _container(keys)


def _container(keys):
    return {"keys": [{"key_ID": k.key_id, "key": base64.b64encode(k.key).decode()}
                     for k in keys]}


class KMEServer(ThreadingHTTPServer):
    """The HTTPS server of one KME. Every connection's TLS handshake runs in its own thread.

    ``start()`` serves in a background thread; ``close()`` stops serving and closes the
    socket (``shutdown()`` and ``server_close()`` work as for any ``socketserver`` server).
    """

    daemon_threads = True
    allow_reuse_address = True
    handshake_timeout = 10.0

    def __init__(self, address, store, config, context):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.store = store
        self.config = config
        self.ssl_context = context
        self._thread = None
        super().__init__(address, _Handler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{port}"

    def finish_request(self, request, client_address):
        request.settimeout(self.handshake_timeout)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            _log.info("TLS handshake with %s failed: %s", client_address[0], error)
            return
        try:
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            try:
                connection.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        _log.info("connection from %s ended with an error", client_address[0], exc_info=True)

    def check_peer(self, sae, peer):
        """Refuse a peer SAE ID (slave of enc_keys, master of dec_keys) this KME does not
        serve."""
        peers = self.config["peer_sae_ids"]
        if peer == sae:
            raise _bad("an SAE cannot share keys with itself", parameter="SAE_ID", value=peer)
        if peers is not None and peer not in peers:
            raise _bad(f"unknown SAE ID {peer!r}", parameter="SAE_ID", value=peer)

    def status_of(self, master, slave):
        self.check_peer(master, slave)
        config = self.config
        return {
            "source_KME_ID": config["kme_id"],
            "target_KME_ID": config["peer_kme_id"],
            "master_SAE_ID": master,
            "slave_SAE_ID": slave,
            "key_size": self.store.unit_bits,
            "stored_key_count": self.store.available(),
            "max_key_count": self.store.max_keys if self.store.max_keys is not None
            else 2**31 - 1,
            "max_key_per_request": config["max_key_per_request"],
            "max_key_size": config["max_key_size"],
            "min_key_size": config["min_key_size"],
            "max_SAE_ID_count": 0,
        }

    def start(self):
        """Serve in a daemon thread; return self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, name="timebin-kme",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self):
        """Stop serving (if started) and close the listening socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve(store, *, host="127.0.0.1", port=0, certfile, keyfile, cafile=None, tokens=None,
          kme_id=None, peer_kme_id=None, sae_ids=None, peer_sae_ids=None,
          max_key_per_request=128, max_key_size=8192, min_key_size=8):
    """Bind an HTTPS KME server for ``store`` and return it (a :class:`KMEServer`, not yet
    serving: call ``.start()`` for a background thread, or ``.serve_forever()``).

    ``port=0`` picks a free port (see ``server.server_address`` / ``server.url``).
    Authentication: ``cafile`` enables client certificates (mutual TLS), ``tokens``
    (``{SAE_ID: token}``) bearer tokens; at least one is required. ``sae_ids`` restricts
    certificate holders: an iterable of the accepted common names (= SAE IDs) or a mapping of
    common names to SAE IDs; ``None`` accepts every certificate the CA signed. ``peer_sae_ids``
    are the SAE IDs of the peer KME's SAEs (``None``: any). ``kme_id`` and ``peer_kme_id``
    default to ``kme-alice`` / ``kme-bob`` by the store's role.
    """
    if cafile is None and not tokens:
        raise ValueError("no way to authenticate SAEs: give a CA file (client "
                         "certificates) and/or tokens")
    tokens = dict(tokens or {})
    for sae, token in tokens.items():
        if not isinstance(sae, str) or not sae or not isinstance(token, str) \
                or len(token) < 16 or any(c.isspace() for c in token):
            raise ValueError(f"token of SAE {sae!r} must be at least 16 characters without "
                             f"white space")
    for name, value in (("max_key_per_request", max_key_per_request),
                        ("max_key_size", max_key_size), ("min_key_size", min_key_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if min_key_size % 8 or max_key_size % 8 or not 8 <= min_key_size <= max_key_size \
            or max_key_size > MAX_KEY_BITS:
        raise ValueError(f"key sizes must be multiples of 8 with 8 <= min_key_size "
                         f"({min_key_size}) <= max_key_size ({max_key_size}) <= "
                         f"{MAX_KEY_BITS}")
    if not min_key_size <= store.unit_bits <= max_key_size:
        raise ValueError(f"the default key size {store.unit_bits} must lie in "
                         f"{min_key_size}..{max_key_size}")
    peer_role = ROLES[1 - ROLES.index(store.role)]
    if sae_ids is not None and not isinstance(sae_ids, Mapping):
        sae_ids = frozenset(sae_ids)
    config = {
        "kme_id": kme_id or f"kme-{store.role}",
        "peer_kme_id": peer_kme_id or f"kme-{peer_role}",
        "cafile": cafile, "tokens": tokens, "sae_ids": sae_ids,
        "peer_sae_ids": None if peer_sae_ids is None else frozenset(peer_sae_ids),
        "max_key_per_request": max_key_per_request, "max_key_size": max_key_size,
        "min_key_size": min_key_size,
    }
    context = server_context(certfile, keyfile, cafile)
    return KMEServer((host, port), store, config, context)


# -- a small client ---------------------------------------------------------------------


class ETSI014HTTPError(Exception):
    """A KME answered with an HTTP error; ``status`` and the Error object ``body``."""

    def __init__(self, status, body):
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class ETSI014Client:
    """A minimal SAE-side client of an ETSI GS QKD 014 KME (for tests, labs and scripts).

    ``url`` is ``https://host:port``; ``cafile`` verifies the KME; the SAE authenticates
    with ``certfile``/``keyfile`` or ``token``.
    """

    def __init__(self, url, *, cafile, certfile=None, keyfile=None, token=None, timeout=10.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"KME URL must be https://host:port, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 443
        self.context = client_context(cafile, certfile, keyfile)
        self.token = token
        self.timeout = timeout

    def request(self, method, path, body=None):
        """Send one request; return ``(status, decoded JSON body)``."""
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                                 timeout=self.timeout)
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            decoded = raw.decode(errors="replace")
        return response.status, decoded

    def _call(self, method, sae_id, action, body=None, query=None):
        path = f"{API_PREFIX}{urllib.parse.quote(sae_id, safe='')}/{action}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        status, answer = self.request(method, path, body)
        if status != 200:
            raise ETSI014HTTPError(status, answer)
        return answer

    def status(self, slave_sae_id):
        """The Status object for keys shared with ``slave_sae_id``."""
        return self._call("GET", slave_sae_id, "status")

    def enc_keys(self, slave_sae_id, number=1, size=None):
        """Get keys as master SAE: ``[(key_ID, key bytes), ...]``."""
        body = {"number": number}
        if size is not None:
            body["size"] = size
        answer = self._call("POST", slave_sae_id, "enc_keys", body)
        return [(k["key_ID"], base64.b64decode(k["key"])) for k in answer["keys"]]

    def dec_keys(self, master_sae_id, key_ids):
        """Get keys by ID as slave SAE: ``[(key_ID, key bytes), ...]``."""
        body = {"key_IDs": [{"key_ID": k} for k in key_ids]}
        answer = self._call("POST", master_sae_id, "dec_keys", body)
        return [(k["key_ID"], base64.b64decode(k["key"])) for k in answer["keys"]]
