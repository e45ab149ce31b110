"""``timebin serve``: the ETSI GS QKD 014 key-delivery server of one KME.

    timebin serve --store alice.keys --role alice --make-certs pki --sae sae-a \\
                  --peer-sae sae-b --port 8443 --json

serves the keys of the key store ``alice.keys`` over HTTPS until SIGINT or SIGTERM.
``--make-certs DIR`` writes (once) a CA and certificates for the KME and every ``--sae`` into
DIR and uses them unless ``--cert``/``--key``/``--ca`` say otherwise (existing files are kept,
so a KME certificate made earlier keeps its host names); ``--token SAE=TOKEN`` (or
``SAE=@FILE``) adds bearer-token authentication. ``--json`` prints one JSON line with the
listening address when ready; requests are logged to stderr (never key material).
"""

import argparse
import json
import logging
import signal
import ssl
import sys
import threading
from pathlib import Path

from .cli_types import port as _port
from .cli_types import positive_int as _positive
from .etsi014 import make_certificates, serve
from .keystore import DEFAULT_MAX_KEYS, ROLES, KeyStore, KeyStoreError

__all__ = ["add_serve_parser", "run_serve", "start_serve"]


def _token(text):
    sae, sep, token = text.partition("=")
    if not sep or not sae or not token:
        raise argparse.ArgumentTypeError(f"must be SAE_ID=TOKEN or SAE_ID=@FILE, not {text!r}")
    return sae, token


def add_serve_parser(sub):
    """Add ``serve`` to the argparse subparsers ``sub``; return its parser."""
    parser = sub.add_parser("serve", help="serve keys to applications (ETSI GS QKD 014 "
                                          "REST API over HTTPS)")
    parser.add_argument("--store", required=True, help="key store file (SQLite)")
    parser.add_argument("--role", choices=ROLES,
                        help="whose KME this is (required when the store is new)")
    parser.add_argument("--unit-bits", type=_positive,
                        help="default key size in bits of a new store (default 256)")
    parser.add_argument("--max-keys", type=_positive, default=DEFAULT_MAX_KEYS,
                        help="most undelivered keys per direction the store accepts")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=_port, default=8443, help="TCP port (0: any free)")
    parser.add_argument("--cert", help="server certificate (PEM)")
    parser.add_argument("--key", help="server private key (PEM)")
    parser.add_argument("--ca", help="CA certificate (PEM) that signs SAE client "
                                     "certificates: enables mutual TLS")
    parser.add_argument("--token", action="append", type=_token, default=[],
                        metavar="SAE=TOKEN",
                        help="bearer token of an SAE (TOKEN or @FILE holding it); repeatable")
    parser.add_argument("--kme-id", help="this KME's ID (default kme-ROLE)")
    parser.add_argument("--peer-kme-id", help="the peer KME's ID (default kme-PEERROLE)")
    parser.add_argument("--sae", action="append", default=[], metavar="SAE_ID",
                        help="SAE allowed to authenticate with a certificate (its common "
                             "name); repeatable; default: any certificate the CA signed")
    parser.add_argument("--peer-sae", action="append", default=[], metavar="SAE_ID",
                        help="SAE of the peer KME (slave of enc_keys, master of dec_keys); "
                             "repeatable; default: any")
    parser.add_argument("--make-certs", metavar="DIR",
                        help="write a CA and certificates for the KME and each --sae into "
                             "DIR (kept if present) and use them")
    parser.add_argument("--cert-host", action="append", default=[], metavar="NAME",
                        help="extra host name or IP address for the KME certificate made by "
                             "--make-certs (besides localhost and --host); repeatable")
    parser.add_argument("--max-key-per-request", type=_positive, default=128)
    parser.add_argument("--max-key-size", type=_positive, default=8192)
    parser.add_argument("--min-key-size", type=_positive, default=8)
    parser.add_argument("--json", action="store_true",
                        help="print the listening address as one JSON line on startup")
    return parser


def _tokens(pairs):
    tokens = {}
    for sae, token in pairs:
        if token.startswith("@"):
            token = Path(token[1:]).read_text().strip()
        if sae in tokens:
            raise ValueError(f"two tokens for SAE {sae!r}")
        tokens[sae] = token
    return tokens


def start_serve(args):
    """Open the store and start the server of parsed ``serve`` arguments in a background
    thread; return ``(server, store, info)`` (``info``: the startup summary)."""
    store = KeyStore(args.store, role=args.role, unit_bits=args.unit_bits,
                     max_keys=args.max_keys)
    try:
        kme_id = args.kme_id or f"kme-{store.role}"
        cert, key, ca = args.cert, args.key, args.ca
        made = None
        if args.make_certs:
            hosts = ["localhost", "127.0.0.1", "::1", *args.cert_host]
            if args.host not in ("", "0.0.0.0", "::") and args.host not in hosts:
                hosts.append(args.host)
            made = make_certificates(args.make_certs, [kme_id, *args.sae], hosts=hosts)
            cert = cert or made["certs"][kme_id]["cert"]
            key = key or made["certs"][kme_id]["key"]
            ca = ca or made["ca"]
        if not cert or not key:
            raise ValueError("give the server certificate and key (--cert, --key) or "
                             "--make-certs DIR")
        server = serve(store, host=args.host, port=args.port, certfile=cert, keyfile=key,
                       cafile=ca, tokens=_tokens(args.token), kme_id=kme_id,
                       peer_kme_id=args.peer_kme_id, sae_ids=args.sae or None,
                       peer_sae_ids=args.peer_sae or None,
                       max_key_per_request=args.max_key_per_request,
                       max_key_size=args.max_key_size, min_key_size=args.min_key_size)
    except BaseException:
        store.close()
        raise
    server.start()
    host, port = server.server_address[:2]
    info = {"url": server.url, "host": host, "port": port, "kme_id": server.config["kme_id"],
            "peer_kme_id": server.config["peer_kme_id"], "store": str(store.path),
            "role": store.role, "key_size": store.unit_bits,
            "stored_key_count": store.available(), "client_certificates": ca is not None,
            "token_saes": sorted(server.config["tokens"]), "ca": ca, "cert": cert}
    if made is not None:
        info["certificates"] = made
    return server, store, info


def run_serve(args):
    """Run ``timebin serve``: serve until SIGINT/SIGTERM; return the exit status."""
    try:
        server, store, info = start_serve(args)
    except (ValueError, KeyStoreError) as error:
        print(f"timebin: error: {error}", file=sys.stderr)
        return 2
    except (OSError, ssl.SSLError) as error:
        print(f"timebin: error: {error}", file=sys.stderr)
        return 1
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"timebin serve: KME {info['kme_id']} ({info['role']}) listening on "
                  f"{info['url']}, {info['stored_key_count']} keys of {info['key_size']} "
                  f"bits available", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
        store.close()
    return 0
