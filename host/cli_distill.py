"""``timebin distill``: one side of a key-distillation session over TCP.

Alice's side listens, Bob's connects (either may be given ``--listen`` or ``--connect``);
both read the pre-shared authentication secret from a file. The detections come from a
simulated link (:mod:`timebin.sim.keydata`, seeded: both sides generate the same link, and
each uses only its own half: Alice her symbol log, Bob his records), block by block. Keys go
to a key store (``--store``, SQLite) and/or a raw file (``--keys-out``); the JSON summary
gives per block the counts, bounds, leakage, key length and the SHA-256 of the key stored.
"""

import hashlib
import json
import socket
import sys

import numpy as np

__all__ = ["add_distill_parser", "run_distill"]


def _address(text):
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ValueError(f"Address must be HOST:PORT, not {text!r}") from None


def add_distill_parser(sub):
    """Add the ``distill`` command to the ``sub`` subparsers."""
    p = sub.add_parser("distill", help="one host of a key-distillation session (TCP)")
    p.add_argument("--role", choices=("alice", "bob"), required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", metavar="HOST:PORT", help="wait for the peer (port 0: any)")
    where.add_argument("--connect", metavar="HOST:PORT", help="connect to the peer")
    p.add_argument("--secret-file", required=True,
                   help="pre-shared authentication secret (raw bytes, both sides the same)")
    p.add_argument("--blocks", type=int, default=4, help="blocks of the simulated link")
    p.add_argument("--block-symbols", type=int, default=10_000_000)
    p.add_argument("--seed", type=int, default=1, help="seed of the simulated link")
    p.add_argument("--eta", type=float, default=None, help="link transmittance")
    p.add_argument("--e-z", type=float, default=None, help="Z-basis optical error")
    p.add_argument("--reconciler", choices=("cascade", "ldpc"), default="cascade")
    p.add_argument("--protocol", default="1decoy-3state")
    p.add_argument("--eps-sec", type=float, default=1e-9)
    p.add_argument("--eps-cor", type=float, default=1e-15)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a message may take")
    p.add_argument("--store", help="key store (SQLite file)")
    p.add_argument("--keys-out", help="append each block's key bytes to this file")
    p.add_argument("--json", action="store_true")


def _open_channel(args, pools):
    from .distill.channel import AuthenticatedChannel
    if args.listen:
        host, port = _address(args.listen)
        with socket.create_server((host, port)) as server:
            print(json.dumps({"listening": server.getsockname()[1]}), flush=True)
            server.settimeout(args.timeout * 4)
            sock, _ = server.accept()
    else:
        host, port = _address(args.connect)
        sock = socket.create_connection((host, port), timeout=args.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return AuthenticatedChannel(sock, role=args.role, pools=pools, timeout=args.timeout)


def run_distill(args):
    """Run one side; prints the summary. Returns the exit code."""
    from ..sim.keydata import LINK_DEFAULTS, blocks, roles_for
    from .distill.auth import direction_pools
    from .distill.session import AliceHost, BobHost, DistillConfig

    with open(args.secret_file, "rb") as f:
        secret = f.read()
    link = {k: v for k, v in (("eta", args.eta), ("e_z", args.e_z)) if v is not None}
    states = 4 if "4state" in args.protocol or args.protocol == "2decoy" else 3
    link["states"] = states
    config = DistillConfig(protocol=args.protocol, reconciler=args.reconciler,
                           eps_sec=args.eps_sec, eps_cor=args.eps_cor,
                           intensities=LINK_DEFAULTS["intensities"],
                           probabilities=LINK_DEFAULTS["probabilities"],
                           p_z=LINK_DEFAULTS["p_z"])
    store = None
    if args.store:
        from .keystore import KeyStore
        store = KeyStore(args.store, role=args.role)
    keys = {}

    def sink(block, key_bytes, meta):
        keys[block] = hashlib.sha256(key_bytes).hexdigest()
        if store is not None:
            store.add_block(key_bytes, session=f"seed{args.seed}", block=block, meta=meta)
        if args.keys_out:
            with open(args.keys_out, "ab") as f:
                f.write(key_bytes)

    channel = _open_channel(args, direction_pools(secret))
    try:
        data = blocks(args.blocks, args.block_symbols, args.seed, **link)
        if args.role == "bob":
            host = BobHost(channel, config, roles=roles_for(states), sink=sink)
            for b, (_, _, records) in enumerate(data):
                host.run_block(b, records)
            host.close()
        else:
            current = {}

            def lookup(indices):
                indices = np.asarray(indices, np.uint64)
                while not current or indices.size and indices.max() >= current["end"]:
                    start, symbols, _ = next(data)
                    current.update(start=start, end=start + args.block_symbols,
                                   symbols=symbols)
                start = current["start"]
                inside = indices >= np.uint64(start)
                at = np.where(inside, indices - np.uint64(start), 0).astype(np.int64)
                out = {k: v[at] for k, v in current["symbols"].items()}
                out["available"] = inside.astype(np.uint8)
                return out

            host = AliceHost(channel, config, lookup=lookup, sink=sink)
            host.serve()
    finally:
        channel.close()
    summary = {"role": args.role, "blocks": [r.as_dict() for r in host.results],
               "key_sha256": {str(k): v for k, v in keys.items()},
               "key_bits": host.key_bits_total,
               "auth": {r: p.accounting() for r, p in channel.pools.items()},
               "channel": {"sent": channel.sent, "received": channel.received,
                           "rejected": channel.rejected, "burnt_pads": channel.burnt_pads}}
    if args.json:
        print(json.dumps(summary, default=_jsonable), flush=True)
    else:
        for r in host.results:
            print(f"block {r.block}: {r.status:8s} sifted Z {r.sifted_z} X {r.sifted_x} "
                  f"QBER Z {r.qber_z:.4f} key {r.key_bits} bits {r.reason}")
        print(f"{host.key_bits_total} key bits stored", file=sys.stdout)
    return 0


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
