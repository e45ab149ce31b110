"""A man in the middle of the classical channel, for the tests of its authentication.

It listens for Bob, connects to Alice, and relays the channel's messages (whole messages:
it follows the ``u32`` length framing of :mod:`timebin.host.distill.channel`), except one:
the ``--nth`` message of kind ``--kind`` (any kind when not given) in direction ``--from``
(the sender, ``alice`` or ``bob``) is

- ``flip``: relayed with one bit of its body flipped;
- ``drop``: not relayed;
- ``replay``: relayed, then relayed again;
- ``inject``: relayed, followed by a forged message of the same kind with a made-up body and
  tag (the attacker has no key);
- ``reorder``: held back and relayed after the sender's next message.

On start it prints ``{"listening": port}``; when both sides are done it prints what it did
(the attacked message's kind, sequence number and the block it belonged to) as JSON.

Run as ``python -m timebin.sim.attacker --listen 0 --to 127.0.0.1:PORT --attack flip
--from alice --kind x_errors``.
"""

import argparse
import json
import os
import selectors
import socket
import struct

from ..host.distill.channel import MAGIC, decode_body

__all__ = ["ATTACKS", "main"]

ATTACKS = ("flip", "drop", "replay", "inject", "reorder")
_FIXED = struct.Struct("<4sBBBQB")


def _parse(frame):
    """``(sender, seq, kind, body)`` of a message (the body ``None`` if unreadable)."""
    magic, _, sender, _, seq, kind_len = _FIXED.unpack_from(frame)
    assert magic == MAGIC
    kind = frame[_FIXED.size:_FIXED.size + kind_len].decode("ascii", "replace")
    try:
        body = decode_body(frame[_FIXED.size + kind_len:-16])
    except ValueError:
        body = None
    return ("alice", "bob")[sender], seq, kind, body


class _Out:
    """A socket whose sends are dropped once its peer has gone (the session is ending)."""

    def __init__(self, sock):
        self.sock = sock

    def sendall(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=0)
    parser.add_argument("--to", required=True, help="HOST:PORT of Alice's listening host")
    parser.add_argument("--attack", choices=ATTACKS, required=True)
    parser.add_argument("--from", dest="sender", choices=("alice", "bob"), required=True)
    parser.add_argument("--kind", help="the kind of message to attack (default: any)")
    parser.add_argument("--nth", type=int, default=0, help="which such message (0: first)")
    args = parser.parse_args(argv)

    with socket.create_server(("127.0.0.1", args.listen)) as server:
        print(json.dumps({"listening": server.getsockname()[1]}), flush=True)
        bob, _ = server.accept()
    host, _, port = args.to.rpartition(":")
    alice = socket.create_connection((host, int(port)))
    ends = {"alice": alice, "bob": bob}
    peer_of = {"alice": bob, "bob": alice}
    buffers = {"alice": bytearray(), "bob": bytearray()}
    selector = selectors.DefaultSelector()
    for name, sock in ends.items():
        selector.register(sock, selectors.EVENT_READ, name)
    seen, done, held = 0, None, None
    block = None
    open_ends = 2
    while open_ends:
        for key, _ in selector.select():
            name = key.data
            try:
                chunk = key.fileobj.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(key.fileobj)
                open_ends -= 1
                try:
                    peer_of[name].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            buf = buffers[name]
            buf += chunk
            while len(buf) >= 4:
                (length,) = struct.unpack_from(">I", buf)
                if len(buf) < 4 + length:
                    break
                wire = bytes(buf[:4 + length])
                del buf[:4 + length]
                sender, seq, kind, body = _parse(wire[4:])
                if kind == "block" and body is not None:
                    block = body.get("block")
                out = _Out(peer_of[name])
                if held is not None and sender == held[0]:
                    out.sendall(wire)           # the next message first, then the held one
                    out.sendall(held[1])
                    held = None
                    continue
                target = (done is None and sender == args.sender
                          and (args.kind is None or kind == args.kind))
                if target and seen < args.nth:
                    seen += 1
                    target = False
                if not target:
                    out.sendall(wire)
                    continue
                done = {"attack": args.attack, "from": sender, "kind": kind, "seq": seq,
                        "block": block}
                if args.attack == "flip":
                    bad = bytearray(wire)
                    at = 4 + _FIXED.size + len(kind) + (length - _FIXED.size - len(kind)
                                                        - 16) // 2
                    bad[at] ^= 0x01
                    out.sendall(bytes(bad))
                elif args.attack == "drop":
                    pass
                elif args.attack == "replay":
                    out.sendall(wire)
                    out.sendall(wire)
                elif args.attack == "inject":
                    out.sendall(wire)
                    forged = bytearray(wire)
                    struct.pack_into("<Q", forged, 4 + 7, seq + 1)
                    forged[-16:] = os.urandom(16)
                    out.sendall(bytes(forged))
                elif args.attack == "reorder":
                    held = (sender, wire)
    print(json.dumps({"attacked": done}), flush=True)
    for sock in ends.values():
        sock.close()


if __name__ == "__main__":
    main()
