"""The authenticated classical channel between Alice's and Bob's hosts, over TCP.

Every message carries its sender's role, a sequence number and a Wegman-Carter tag
(:mod:`.auth`): the tag covers the whole message, and its one-time pad is the next 16 bytes
of the sender's direction pool, one pad per sequence number. The receiver therefore takes
pads in the same order, and rejects:

- a message whose tag fails (a flipped bit anywhere, an injected message);
- a sequence number below the next expected one (a replay, a reordering);
- a forward gap (a dropped message), except on a message that opens a new block
  (``resync=True``); the pad of a message is the one at its own sequence number, and the
  pads of the skipped numbers are burnt once a later message has authenticated (a forgery
  consumes nothing, whatever number it claims);
- a message from the wrong direction, a truncated message, a closed connection.

Rejection raises :class:`~.auth.AuthenticationError` (or :class:`ChannelClosed`); the
distillation then aborts the block, and no key comes out of it.

**Deferred messages** (:meth:`AuthenticatedChannel.defer`): the many short request/reply
messages of interactive error correction (Cascade asks hundreds of parity questions per
block) would each take a 128-bit pad, more key than a short block makes. Messages of a
deferred kind therefore carry no tag of their own (flag bit 1, their own sequence numbers,
no pad); each end keeps them, and the next tagged message in either direction covers them:
its tag is taken over the message followed by the transcript of every deferred message since
the last tagged one (Alice's in order, then Bob's, each with its header and length). A
flipped, dropped, injected or replayed deferred message makes that tag fail, and the block
aborts before its key exists; what the receiver did with an unauthenticated message in the
meantime (answer a parity question) only concerns a block that then gives nothing. This is
the "one tag per post-processing round" of E. O. Kiktenko et al., "Lightweight
authentication for quantum key distribution", IEEE JSAC 38, 1 (2020), arXiv:1903.10237,
applied to the error-correction exchange, with a tag at least every ``max_deferred``
messages of a sender so that a forgery is caught within a bounded exchange (and the
reconcilers refuse replies that contradict each other). A message that opens a block
(``resync``) covers
no deferred message: both ends drop those of a block that broke off. Deferred messages must
not cross a tagged one in flight (the session's exchanges are strict request and reply).

Wire format (one message): ``u32`` length (big-endian) of what follows, then ``MAGIC``
(4 bytes), version (1), sender (1: 0 Alice, 1 Bob), flags (1: bit 0 resync, bit 1
deferred), sequence number (``u64`` little-endian; deferred messages count apart), kind
length (1) and kind (ASCII), the body (:func:`encode_body`), and the 16-byte tag of
everything between the length and the tag (and, for a tagged message, the transcript of the
deferred messages it covers; a deferred message's tag field is zero).

Bodies are dicts of ``str`` keys to ``None``, ``bool``, ``int``, ``float``, ``str``,
``bytes`` or 1-D numpy arrays of fixed-size numbers: a JSON header describing the values,
then the raw bytes of the byte strings and arrays. Nothing is unpickled.
"""

import json
import socket
import struct

import numpy as np

from .auth import TAG_BYTES, AuthenticationError, tag, verify_tag

__all__ = ["MAGIC", "MAX_MESSAGE", "ChannelClosed", "ChannelTimeout", "encode_body", "decode_body",
           "AuthenticatedChannel"]

MAGIC = b"TBQC"
VERSION = 2
#: Longest message accepted (bytes): larger lengths are refused before anything is read.
MAX_MESSAGE = 1 << 28
_ROLES = ("alice", "bob")
_RESYNC, _DEFERRED = 1, 2
_FIXED = struct.Struct("<4sBBBQB")
_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
           "float32", "float64", "bool"}


class ChannelClosed(AuthenticationError):
    """The peer closed the connection, or it broke mid-message."""


class ChannelTimeout(AuthenticationError):
    """No message arrived in time."""


def encode_body(body):
    """The bytes of a message body (module docstring)."""
    if not isinstance(body, dict):
        raise TypeError(f"A message body must be a dict, not {type(body).__name__}")
    header, blobs = {}, []
    for key, value in body.items():
        if not isinstance(key, str):
            raise TypeError(f"Message keys must be strings, not {key!r}")
        if isinstance(value, np.ndarray):
            if value.ndim != 1 or value.dtype.name not in _DTYPES:
                raise TypeError(f"Array {key!r} must be 1-D of a fixed-size number type, not "
                                f"{value.dtype} of shape {value.shape}")
            data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()
            header[key] = {"a": value.dtype.name, "n": len(data)}
            blobs.append(data)
        elif isinstance(value, (bytes, bytearray)):
            header[key] = {"b": len(value)}
            blobs.append(bytes(value))
        elif isinstance(value, np.integer):
            header[key] = {"v": int(value)}
        elif isinstance(value, np.floating):
            header[key] = {"v": float(value)}
        elif value is None or isinstance(value, (bool, int, float, str)):
            header[key] = {"v": value}
        else:
            raise TypeError(f"Message value {key!r} of type {type(value).__name__} cannot be "
                            f"sent")
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(text)) + text + b"".join(blobs)


def decode_body(data):
    """The dict of :func:`encode_body`'s bytes; malformed bytes raise ``ValueError``."""
    try:
        (size,) = struct.unpack_from("<I", data, 0)
        header = json.loads(bytes(data[4:4 + size]))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        body, at = {}, 4 + size
        for key, spec in header.items():
            if "a" in spec:
                if spec["a"] not in _DTYPES:
                    raise ValueError(f"dtype {spec['a']!r}")
                n = spec["n"]
                body[key] = np.frombuffer(bytes(data[at:at + n]),
                                          np.dtype(spec["a"]).newbyteorder("<")).astype(
                                              spec["a"])
                at += n
            elif "b" in spec:
                body[key] = bytes(data[at:at + spec["b"]])
                at += spec["b"]
            else:
                body[key] = spec["v"]
        if at != len(data):
            raise ValueError(f"{len(data) - at} bytes left over")
        return body
    except (struct.error, KeyError, TypeError, json.JSONDecodeError, ValueError) as error:
        raise ValueError(f"Malformed message body: {error}") from None


class AuthenticatedChannel:
    """One end of the classical channel.

    Parameters
    ----------
    sock : socket.socket
        A connected TCP socket (the channel owns it).
    role : str
        ``alice`` or ``bob``: this end.
    pools : dict
        ``{"alice": AuthKeyPool, "bob": AuthKeyPool}`` (:func:`~.auth.direction_pools`):
        the pads of the messages each side sends. Both ends build them from the same
        secret; the hash key of each direction is taken from its pool here.
    timeout : float
        Seconds :meth:`recv` waits.

    Members
    -------
    sent, received, rejected : int
        Messages sent, accepted and rejected.
    burnt_pads : int
        Pads skipped over at a resync (messages the receiver never saw).
    deferred_sent, deferred_received : int
        Deferred messages (module docstring) sent and taken.
    """

    def __init__(self, sock, *, role, pools, timeout=30.0):
        if role not in _ROLES:
            raise ValueError(f"Channel role must be 'alice' or 'bob', not {role!r}")
        self.sock = sock
        self.sock.settimeout(timeout)
        self.role = role
        self.peer = _ROLES[1 - _ROLES.index(role)]
        self.pools = pools
        self.hash_keys = {r: pools[r].take(TAG_BYTES, "hash key") for r in _ROLES}
        self.send_seq = 0
        self.recv_seq = 0
        self.sent = self.received = self.rejected = self.burnt_pads = 0
        self.deferred_sent = self.deferred_received = 0
        self.deferred = frozenset()
        self.max_deferred = 64
        self._dsend = self._drecv = 0
        self._transcript = {r: [] for r in _ROLES}
        self._buffer = bytearray()

    def defer(self, kinds, max_deferred=64):
        """Send and take messages of ``kinds`` without a tag of their own; the next tagged
        message covers them (module docstring). Both ends must defer the same kinds. After
        ``max_deferred`` of its own deferred messages in a row, an end tags the next one
        anyway: a forgery is found within that many messages, whatever the protocol does
        with it in the meantime."""
        if not isinstance(max_deferred, int) or max_deferred < 1:
            raise ValueError(f"max_deferred must be a positive integer, not {max_deferred!r}")
        self.deferred = frozenset(kinds)
        self.max_deferred = max_deferred

    def _covered(self):
        """The transcript of the deferred messages a tagged message now covers."""
        parts = []
        for r in _ROLES:
            parts.append(struct.pack("<Q", len(self._transcript[r])))
            parts.extend(struct.pack("<I", len(m)) + m for m in self._transcript[r])
        return b"".join(parts) if any(self._transcript.values()) else b""

    def _drop_deferred(self):
        for r in _ROLES:
            self._transcript[r].clear()

    # --- sending --------------------------------------------------------------------------

    def send(self, kind, body=None, *, resync=False):
        """Send one authenticated message of ``kind`` (ASCII, < 256 bytes)."""
        kind_bytes = kind.encode("ascii")
        if not 0 < len(kind_bytes) < 256:
            raise ValueError(f"Message kind must be 1..255 ASCII bytes, not {kind!r}")
        if kind in self.deferred and not resync and \
                len(self._transcript[self.role]) < self.max_deferred:
            fixed = _FIXED.pack(MAGIC, VERSION, _ROLES.index(self.role), _DEFERRED, self._dsend,
                                len(kind_bytes))
            message = fixed + kind_bytes + encode_body(body or {})
            self.sock.sendall(struct.pack(">I", len(message) + TAG_BYTES) + message
                              + bytes(TAG_BYTES))
            self._transcript[self.role].append(message)
            self._dsend += 1
            self.deferred_sent += 1
            return
        fixed = _FIXED.pack(MAGIC, VERSION, _ROLES.index(self.role),
                            _RESYNC if resync else 0, self.send_seq, len(kind_bytes))
        message = fixed + kind_bytes + encode_body(body or {})
        if resync:
            self._drop_deferred()
        pad = self.pools[self.role].take(TAG_BYTES, "pad")
        frame = message + tag(self.hash_keys[self.role], pad, message + self._covered())
        self.sock.sendall(struct.pack(">I", len(frame)) + frame)
        self._drop_deferred()
        self.send_seq += 1
        self.sent += 1

    # --- receiving ------------------------------------------------------------------------

    def _read(self, n):
        while len(self._buffer) < n:
            try:
                chunk = self.sock.recv(max(1 << 16, n - len(self._buffer)))
            except TimeoutError:
                raise ChannelTimeout(f"No message from {self.peer} within "
                                    f"{self.sock.gettimeout()} s") from None
            except OSError as error:
                raise ChannelClosed(f"The connection to {self.peer} broke: {error}") from None
            if not chunk:
                raise ChannelClosed(f"{self.peer} closed the connection"
                                    + (" mid-message" if self._buffer else ""))
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def _reject(self, why):
        self.rejected += 1
        raise AuthenticationError(why)

    def reject(self, why):
        """Reject the last deferred message after all (the protocol could not act on it: a
        forgery): counted, and :class:`~.auth.AuthenticationError` raised with ``why``."""
        self._drop_deferred()
        self._reject(why)

    def recv(self, expect=None):
        """The next message as ``(kind, body)``; ``expect``: the kind (or kinds) the
        protocol allows here, anything else is rejected."""
        (length,) = struct.unpack(">I", self._read(4))
        if not _FIXED.size + 1 + TAG_BYTES <= length <= MAX_MESSAGE:
            self._reject(f"Message length {length} out of range")
        frame = self._read(length)
        message, received_tag = frame[:-TAG_BYTES], frame[-TAG_BYTES:]
        magic, version, sender, flags, seq, kind_len = _FIXED.unpack_from(message)
        if magic != MAGIC or version != VERSION:
            self._reject(f"Not a timebin channel message (magic {magic!r}, version {version})")
        if sender != _ROLES.index(self.peer):
            self._reject(f"Message claims to come from {_ROLES[sender] if sender < 2 else sender}"
                         f", not {self.peer}")
        if flags & _DEFERRED:
            return self._take_deferred(message, seq, kind_len, expect)
        if flags & _RESYNC:
            self._drop_deferred()
        if seq < self.recv_seq:
            self._reject(f"Replayed or reordered message: sequence {seq}, expected "
                         f"{self.recv_seq}")
        gap = seq - self.recv_seq
        pool = self.pools[self.peer]
        if (gap + 1) * TAG_BYTES * 8 > pool.available_bits:
            self._reject(f"Message sequence {seq} lies beyond the authentication key pool")
        # The pad at the message's own sequence number, looked at, not yet used: a forgery
        # (whatever sequence it claims) consumes nothing.
        pad = pool.peek(gap * TAG_BYTES, TAG_BYTES)
        covered = self._covered()
        if not verify_tag(self.hash_keys[self.peer], pad, message + covered, received_tag):
            self._drop_deferred()
            self._reject(f"Authentication tag of message {seq} failed"
                         + (" (or the deferred messages it covers differ)" if covered else ""))
        self._drop_deferred()
        self._burn(seq)                 # the pads of lost messages: the pools stay in step
        pool.take(TAG_BYTES, "pad")
        self.recv_seq = seq + 1
        if gap and not flags & 1:
            self._reject(f"{gap} message(s) lost before sequence {seq}")
        kind = message[_FIXED.size:_FIXED.size + kind_len].decode("ascii", "replace")
        try:
            body = decode_body(message[_FIXED.size + kind_len:])
        except ValueError as error:
            self._reject(f"{error} (message {seq})")
        if expect is not None and kind not in ((expect,) if isinstance(expect, str) else expect):
            self._reject(f"Message {seq} is {kind!r}, expected {expect!r}")
        self.received += 1
        return kind, body

    def _take_deferred(self, message, seq, kind_len, expect):
        """A deferred message: kept for the transcript, its body not yet authenticated."""
        kind = message[_FIXED.size:_FIXED.size + kind_len].decode("ascii", "replace")
        if kind not in self.deferred:
            self._reject(f"Message {kind!r} (deferred {seq}) may not come without a tag")
        if seq < self._drecv:
            self._reject(f"Replayed or reordered deferred message: sequence {seq}, expected "
                         f"{self._drecv}")
        try:
            body = decode_body(message[_FIXED.size + kind_len:])
        except ValueError as error:
            self._reject(f"{error} (deferred message {seq})")
        if expect is not None and kind not in ((expect,) if isinstance(expect, str) else expect):
            self._reject(f"Deferred message {seq} is {kind!r}, expected {expect!r}")
        self._transcript[self.peer].append(message)
        self._drecv = seq + 1
        self.deferred_received += 1
        return kind, body

    def _burn(self, seq):
        while self.recv_seq < seq:
            self.pools[self.peer].take(TAG_BYTES, "burnt pad")
            self.recv_seq += 1
            self.burnt_pads += 1

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @classmethod
    def connect(cls, host, port, **kwargs):
        """Connect to a listening peer."""
        sock = socket.create_connection((host, port), timeout=kwargs.get("timeout", 30.0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, **kwargs)
