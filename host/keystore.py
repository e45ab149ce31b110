"""The key store of a KME (key management entity): distilled secret keys, transactionally.

The distillation hands over its output block by block (:meth:`KeyStore.store_block`): the
block's secret key bytes and its metadata (session, block id, time, key length, QBER,
eps_sec, eps_cor, protocol). The store cuts each block into **units** of ``unit_bits``
bits (256 by default; the same on Alice's and Bob's stores) and keeps them in SQLite (WAL
journal, ``synchronous=FULL``), one transaction per block.

**Key IDs** are deterministic, so two stores fed with the same blocks name the same bytes
with the same key ID. A key ID is an RFC 9562 version-8 UUID whose 122 free bits carry
(most significant first):

* a 48-bit block tag, ``SHA-256(session, block id, unit_bits)`` truncated;
* the 32-bit index of the key's first unit within its block;
* the key size in bytes (16 bits);
* a 26-bit check (SHA-256 of the three fields above), so a mistyped or made-up ID is
  refused instead of naming some other key;

the fields are then scrambled by a public three-round Feistel network (SHA-256), so IDs look
random to people comparing them. IDs are public: they reveal nothing about key bits.

A key of the default size is one unit; a key of any other size (a multiple of 8 bits, up to
:data:`MAX_KEY_BITS`) is the concatenation of ``ceil(size / unit_bits)`` consecutive units of
one direction of one block, cut to ``size`` bits (the cut-off rest of the last unit is
consumed with the key, never handed out again). Since the ID carries where the key starts and
how long it is, the peer KME finds the same bytes from the ID alone; no KME-to-KME message is
needed for ``dec_keys``.

**Direction.** ETSI GS QKD 014 has a master SAE (``enc_keys`` on its KME) and a slave SAE
(``dec_keys`` with the key IDs on the peer KME). Units of **even** index within a block are
handed out by ``enc_keys`` only on **Alice's** KME (and by ``dec_keys`` only on Bob's); units
of **odd** index by ``enc_keys`` only on **Bob's** KME (and ``dec_keys`` only on Alice's).
So a key handed out by ``enc_keys`` on one KME is never handed out by ``enc_keys`` on the
other, and each direction gets half of every block.

**Guarantees.** Delivery (:meth:`enc_keys`, :meth:`dec_keys`) is one ``BEGIN IMMEDIATE``
transaction that marks the units delivered (under which key ID, to which SAEs, when), erases
their material and records the key ID, and commits (fsync'd) before the keys are returned.
Hence a key is delivered at most once, also under concurrent requests and across processes
sharing the file; a crash (even ``kill -9`` or power loss) before the commit delivers nothing
and loses nothing; after it, the key counts as delivered whether or not the caller received
it (at most once, never twice). Storing a block is also one transaction; storing the same block
again (same session, block id and material: e.g. after a crash of the distiller) is a no-op,
storing different material under the same block is refused (compared on the units not yet
delivered: delivered material is erased).

Both KMEs must store a block before the keys of its units work end to end: ``dec_keys`` of a
key whose block this store has not (yet) stored answers "unknown key ID", and succeeds once
the block is stored. Each side's distiller stores its own copy (and stores again after a
crash; see above).

Delivered material is overwritten in the database (``secure_delete``); old page images may
remain in the WAL file until it is checkpointed (done on :meth:`KeyStore.close`).
"""

import hashlib
import json
import math
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_MAX_KEYS", "DEFAULT_UNIT_BITS", "MAX_KEY_BITS", "ROLES", "BlockInfo", "Key",
    "KeyIDError", "KeyRequestError", "KeyStore", "KeyStoreError", "KeyStoreFull",
    "NotEnoughKeyError", "block_tag", "make_key_id", "parse_key_id",
]

ROLES = ("alice", "bob")
DEFAULT_UNIT_BITS = 256
DEFAULT_MAX_KEYS = 10_000_000
MAX_KEY_BITS = ((1 << 16) - 1) * 8

_SCHEMA_VERSION = 1
_TAG_BITS, _INDEX_BITS, _SIZE_BITS, _CHECK_BITS = 48, 32, 16, 26
_REST_BITS = _INDEX_BITS + _SIZE_BITS + _CHECK_BITS
_DIRECTION = {"alice": 0, "bob": 1}       # parity of the units a role hands out by enc_keys

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    block_id INTEGER NOT NULL,
    tag INTEGER NOT NULL UNIQUE,
    key_bits INTEGER NOT NULL,
    units INTEGER NOT NULL,
    discarded_bits INTEGER NOT NULL,
    created_at REAL NOT NULL,
    stored_at REAL NOT NULL,
    qber REAL,
    eps_sec REAL,
    eps_cor REAL,
    protocol TEXT,
    meta TEXT NOT NULL,
    UNIQUE (session, block_id)
);
CREATE TABLE IF NOT EXISTS units (
    block_seq INTEGER NOT NULL REFERENCES blocks (seq),
    idx INTEGER NOT NULL,
    dir INTEGER NOT NULL,
    material BLOB,
    delivered TEXT,
    PRIMARY KEY (block_seq, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS units_free ON units (dir, block_seq, idx) WHERE delivered IS NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    key_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('enc', 'dec')),
    block_seq INTEGER NOT NULL REFERENCES blocks (seq),
    first_idx INTEGER NOT NULL,
    size_bits INTEGER NOT NULL,
    master_sae TEXT NOT NULL,
    slave_sae TEXT NOT NULL,
    delivered_at REAL NOT NULL
);
"""


class KeyStoreError(Exception):
    """A key store operation was refused or failed."""


class KeyStoreFull(KeyStoreError):
    """Storing a block would exceed ``max_keys`` undelivered keys in one direction."""


class KeyRequestError(KeyStoreError, ValueError):
    """A request's parameters (number, size) are invalid."""


class NotEnoughKeyError(KeyStoreError):
    """Not enough undelivered key material for a request (nothing was delivered)."""

    def __init__(self, message, *, requested, available):
        super().__init__(message)
        self.requested = requested
        self.available = available


class KeyIDError(KeyStoreError):
    """Some key IDs of a ``dec_keys`` request cannot be delivered (nothing was delivered).

    ``problems`` lists ``(key_ID, reason)`` pairs.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"key {first[0]!r}: {first[1]}{more}")


@dataclass(frozen=True)
class Key:
    """A delivered key: its ID and its bytes (never shown by ``repr``)."""

    key_id: str
    key: bytes = field(repr=False)

    @property
    def size(self):
        """Size in bits."""
        return 8 * len(self.key)


@dataclass(frozen=True)
class BlockInfo:
    """What :meth:`KeyStore.store_block` stored (``new`` is False for a repeated block)."""

    session: str
    block_id: int
    key_bits: int
    units: int
    discarded_bits: int
    key_ids: tuple = field(repr=False)
    new: bool = True


# -- key IDs -------------------------------------------------------------------------------


def block_tag(session, block_id, unit_bits):
    """The 48-bit tag of a block in key IDs (the same on both stores)."""
    digest = hashlib.sha256(b"timebin.keystore.block.v1\0" + session.encode() + b"\0"
                            + block_id.to_bytes(8, "big") + unit_bits.to_bytes(4, "big"))
    return int.from_bytes(digest.digest()[:_TAG_BITS // 8], "big")


def _check(tag, index, size_bytes):
    digest = hashlib.sha256(b"timebin.keystore.key_id.v1\0" + tag.to_bytes(6, "big")
                            + index.to_bytes(4, "big") + size_bytes.to_bytes(2, "big"))
    return int.from_bytes(digest.digest()[:4], "big") >> (32 - _CHECK_BITS)


def _mask(label, value, bits):
    digest = hashlib.sha256(b"timebin.keystore.mask.v1\0" + label + value.to_bytes(10, "big"))
    return int.from_bytes(digest.digest(), "big") >> (256 - bits)


def make_key_id(tag, index, size_bits):
    """The key ID (canonical UUID string) of the key of ``size_bits`` bits starting at unit
    ``index`` of the block with tag ``tag``."""
    if not 0 <= tag < 1 << _TAG_BITS or not 0 <= index < 1 << _INDEX_BITS:
        raise ValueError(f"block tag {tag} or unit index {index} out of range")
    if size_bits % 8 or not 8 <= size_bits <= MAX_KEY_BITS:
        raise ValueError(f"key size {size_bits} is not a multiple of 8 in 8..{MAX_KEY_BITS}")
    size_bytes = size_bits // 8
    rest = (index << _SIZE_BITS | size_bytes) << _CHECK_BITS | _check(tag, index, size_bytes)
    rest ^= _mask(b"R", tag, _REST_BITS)
    masked_tag = tag ^ _mask(b"T", rest, _TAG_BITS)
    payload = masked_tag << _REST_BITS | rest ^ _mask(b"S", masked_tag, _REST_BITS)
    value = ((payload >> 74) << 80 | 0x8 << 76 | ((payload >> 62) & 0xFFF) << 64
             | 0b10 << 62 | payload & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def parse_key_id(key_id):
    """``(tag, index, size_bits)`` of a key ID made by :func:`make_key_id`; ``ValueError``
    for anything else."""
    if not isinstance(key_id, str):
        raise ValueError(f"key ID must be a string, not {key_id!r}")
    try:
        value = uuid.UUID(key_id).int
    except ValueError:
        raise ValueError(f"{key_id!r} is not a UUID") from None
    if (value >> 76) & 0xF != 0x8 or (value >> 62) & 0b11 != 0b10:
        raise ValueError(f"{key_id!r} is not a key ID of a timebin key store")
    payload = ((value >> 80) << 74 | ((value >> 64) & 0xFFF) << 62 | value & ((1 << 62) - 1))
    masked_tag = payload >> _REST_BITS
    rest = payload & ((1 << _REST_BITS) - 1) ^ _mask(b"S", masked_tag, _REST_BITS)
    tag = masked_tag ^ _mask(b"T", rest, _TAG_BITS)
    rest ^= _mask(b"R", tag, _REST_BITS)
    check = rest & ((1 << _CHECK_BITS) - 1)
    size_bytes = (rest >> _CHECK_BITS) & ((1 << _SIZE_BITS) - 1)
    index = rest >> (_CHECK_BITS + _SIZE_BITS)
    if size_bytes == 0 or check != _check(tag, index, size_bytes):
        raise ValueError(f"{key_id!r} is not a key ID of a timebin key store (bad check)")
    return tag, index, 8 * size_bytes


def _canonical(key_id):
    try:
        return str(uuid.UUID(key_id))
    except (ValueError, TypeError, AttributeError):
        return key_id


# -- the store ------------------------------------------------------------------------------


def _key_bytes(key, key_bits):
    """Key material as bytes and its length in bits, from bytes or a 0/1 bit array."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        data = bytes(key)
        bits = 8 * len(data) if key_bits is None else key_bits
    else:
        array = np.asarray(key)
        if array.ndim != 1 or array.dtype.kind not in "biu":
            raise ValueError("key must be bytes or a 1-D array of bits (0/1)")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ValueError("a key given as an array must hold only bits (0 or 1)")
        if key_bits is not None and key_bits != array.size:
            raise ValueError(f"key_bits={key_bits} but the bit array has {array.size} bits")
        data = np.packbits(array.astype(np.uint8)).tobytes()
        bits = int(array.size)
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 0:
        raise ValueError(f"key_bits must be a non-negative integer, not {bits!r}")
    if not 8 * len(data) - 8 < bits <= 8 * len(data) and not (bits == 0 and not data):
        raise ValueError(f"key_bits={bits} does not match {len(data)} bytes of key")
    return data, bits


def _jsonable(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"metadata value {value!r} is not JSON-serialisable")


def _check_size(size):
    if not isinstance(size, int) or isinstance(size, bool):
        raise KeyRequestError(f"key size must be an integer number of bits, not {size!r}")
    if size % 8 or not 8 <= size <= MAX_KEY_BITS:
        raise KeyRequestError(f"key size {size} is not a multiple of 8 bits in 8..{MAX_KEY_BITS}")


class KeyStore:
    """Distilled keys of one QKD link, in the SQLite database ``path``.

    ``role`` (``"alice"`` or ``"bob"``: whose KME this store serves) and ``unit_bits`` (a
    multiple of 8, the default key size) are fixed when the file is created; when opening an
    existing file they may be omitted, and must match if given. ``max_keys`` bounds the
    undelivered units of each direction (:class:`KeyStoreFull`). Thread-safe; several
    processes may open the same file.
    """

    def __init__(self, path, *, role=None, unit_bits=None, max_keys=DEFAULT_MAX_KEYS,
                 timeout=30.0):
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if unit_bits is not None and (not isinstance(unit_bits, int) or unit_bits % 8
                                      or not 8 <= unit_bits <= MAX_KEY_BITS):
            raise ValueError(f"unit_bits must be a multiple of 8 in 8..{MAX_KEY_BITS}, "
                             f"not {unit_bits!r}")
        if max_keys is not None and (not isinstance(max_keys, int) or max_keys < 1):
            raise ValueError(f"max_keys must be a positive integer or None, not {max_keys!r}")
        self.path = Path(path)
        self.max_keys = max_keys
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise KeyStoreError(f"{self.path}: cannot use a WAL journal (got {mode!r})")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA secure_delete = ON")
            self._setup(role, unit_bits)
        except BaseException:
            self._db.close()
            raise

    def _setup(self, role, unit_bits):
        with self._write() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            meta = dict(db.execute("SELECT name, value FROM meta"))
            if not meta:
                if role is None:
                    raise ValueError(f"{self.path} is a new key store: give its role "
                                     f"({' or '.join(ROLES)})")
                unit_bits = DEFAULT_UNIT_BITS if unit_bits is None else unit_bits
                meta = {"schema": str(_SCHEMA_VERSION), "role": role,
                        "unit_bits": str(unit_bits), "created_at": repr(time.time())}
                db.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", meta.items())
        if meta.get("schema") != str(_SCHEMA_VERSION):
            raise KeyStoreError(f"{self.path}: key store schema {meta.get('schema')!r}, "
                                f"this version reads {_SCHEMA_VERSION}")
        if role is not None and role != meta["role"]:
            raise ValueError(f"{self.path} is {meta['role']}'s key store, not {role}'s")
        if unit_bits is not None and unit_bits != int(meta["unit_bits"]):
            raise ValueError(f"{self.path} cuts keys into {meta['unit_bits']} bits, "
                             f"not {unit_bits}")
        self.role = meta["role"]
        self.unit_bits = int(meta["unit_bits"])
        self._own = _DIRECTION[self.role]
        self._peer = 1 - self._own

    # -- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _write(self):
        """One write transaction (``BEGIN IMMEDIATE``: takes the write lock at once)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _read(self, sql, params=()):
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self):
        """Checkpoint the WAL (so erased material leaves it) and close the database."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
            self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- storing ------------------------------------------------------------------------

    def store_block(self, key, *, session, block_id, key_bits=None, created_at=None,
                    qber=None, eps_sec=None, eps_cor=None, protocol=None, meta=None):
        """Store one distilled block in one transaction; return a :class:`BlockInfo`.

        ``key`` is bytes (``key_bits`` may then say how many of its bits are key, the first
        ones, MSB first) or a 1-D array of bits (0/1). ``created_at`` is the UNIX time of
        the block (now by default); ``meta`` any JSON-serialisable extra metadata. Bits past
        the last whole unit are discarded and counted (``discarded_bits``).
        """
        if not isinstance(session, str) or not session:
            raise ValueError(f"session must be a non-empty string, not {session!r}")
        if not isinstance(block_id, int) or isinstance(block_id, bool) \
                or not 0 <= block_id < 1 << 63:
            raise ValueError(f"block_id must be a non-negative 63-bit integer, not {block_id!r}")
        for name, value in (("qber", qber), ("eps_sec", eps_sec), ("eps_cor", eps_cor)):
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, not {value!r}")
        data, bits = _key_bytes(key, key_bits)
        meta_text = json.dumps({} if meta is None else meta, sort_keys=True, default=_jsonable)
        unit_bytes = self.unit_bits // 8
        units = bits // self.unit_bits
        if units >= 1 << _INDEX_BITS:
            raise ValueError(f"block of {bits} bits has too many units ({units})")
        material = [data[i * unit_bytes:(i + 1) * unit_bytes] for i in range(units)]
        tag = block_tag(session, block_id, self.unit_bits)
        info = BlockInfo(session, block_id, bits, units, bits - units * self.unit_bits,
                         tuple(make_key_id(tag, i, self.unit_bits) for i in range(units)))
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT seq, key_bits, session, block_id FROM blocks "
                             "WHERE tag = ? OR (session = ? AND block_id = ?)",
                             (tag, session, block_id)).fetchone()
            if row is not None:
                return self._same_block(db, row, info, material)
            if self.max_keys is not None:
                for direction in (0, 1):
                    free = db.execute("SELECT COUNT(*) FROM units WHERE delivered IS NULL "
                                      "AND dir = ?", (direction,)).fetchone()[0]
                    adding = (units + 1 - direction) // 2
                    if free + adding > self.max_keys:
                        raise KeyStoreFull(
                            f"storing block {block_id} of session {session!r} would hold "
                            f"{free + adding} undelivered keys of direction "
                            f"{ROLES[direction]}, more than max_keys={self.max_keys}")
            seq = db.execute(
                "INSERT INTO blocks (session, block_id, tag, key_bits, units, discarded_bits,"
                " created_at, stored_at, qber, eps_sec, eps_cor, protocol, meta) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session, block_id, tag, bits, units, info.discarded_bits,
                 now if created_at is None else float(created_at), now, qber, eps_sec,
                 eps_cor, protocol, meta_text)).lastrowid
            db.executemany("INSERT INTO units (block_seq, idx, dir, material) "
                           "VALUES (?, ?, ?, ?)",
                           ((seq, i, i % 2, m) for i, m in enumerate(material)))
        return info

    def add_block(self, key, *, session, block, meta=None):
        """:meth:`store_block` for a distillation sink ``sink(block, key_bytes, meta)``: takes
        ``qber`` (or ``qber_z``), ``eps_sec``, ``eps_cor`` and ``protocol`` from ``meta``
        where present and valid, and keeps all of ``meta``."""
        meta = dict(meta or {})

        def number(*names):
            for name in names:
                value = meta.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value) and value >= 0:
                    return value
            return None

        protocol = meta.get("protocol")
        return self.store_block(key, session=session, block_id=block,
                                qber=number("qber", "qber_z"), eps_sec=number("eps_sec"),
                                eps_cor=number("eps_cor"),
                                protocol=protocol if isinstance(protocol, str) else None,
                                meta=meta)

    def _same_block(self, db, row, info, material):
        seq, key_bits, session, block_id = row
        if (session, block_id) != (info.session, info.block_id):
            raise KeyStoreError(f"block tag collision between block {block_id} of session "
                                f"{session!r} and block {info.block_id} of session "
                                f"{info.session!r}: use another block id")
        if key_bits != info.key_bits:
            raise KeyStoreError(f"block {block_id} of session {session!r} is already stored "
                                f"with {key_bits} bits, not {info.key_bits}")
        for idx, stored in db.execute("SELECT idx, material FROM units WHERE block_seq = ? "
                                      "AND material IS NOT NULL", (seq,)):
            if stored != material[idx]:
                raise KeyStoreError(f"block {block_id} of session {session!r} is already "
                                    f"stored with different key material")
        return BlockInfo(info.session, info.block_id, info.key_bits, info.units,
                         info.discarded_bits, info.key_ids, new=False)

    # -- delivering ---------------------------------------------------------------------

    def enc_keys(self, number=1, size=None, *, master_sae="", slave_sae=""):
        """Deliver ``number`` new keys of ``size`` bits (default ``unit_bits``) for the
        master SAE (ETSI 014 ``enc_keys``): mark them delivered, commit, return them as
        :class:`Key` objects. All or nothing (:class:`NotEnoughKeyError`)."""
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise KeyRequestError(f"number of keys must be a positive integer, not {number!r}")
        size = self.unit_bits if size is None else size
        _check_size(size)
        per_key = -(-size // self.unit_bits)
        with self._write() as db:
            picked, run = [], []
            cursor = db.execute("SELECT block_seq, idx FROM units WHERE delivered IS NULL "
                                "AND dir = ? ORDER BY block_seq, idx", (self._own,))
            for block_seq, idx in cursor:
                if run and (block_seq != run[0][0] or idx != run[-1][1] + 2):
                    run = []
                run.append((block_seq, idx))
                if len(run) == per_key:
                    picked.append(run)
                    run = []
                    if len(picked) == number:
                        break
            cursor.close()
            if len(picked) < number:
                available = self._available(db, self._own, per_key)
                raise NotEnoughKeyError(
                    f"{number} keys of {size} bits requested, {available} available",
                    requested=number, available=available)
            return self._deliver(db, "enc", picked, size, master_sae, slave_sae)

    def dec_keys(self, key_ids, *, master_sae="", slave_sae=""):
        """Deliver the keys with the given IDs for the slave SAE (ETSI 014 ``dec_keys``):
        keys the peer KME handed out by ``enc_keys``. All or nothing: if any ID is unknown,
        malformed, repeated, reserved to this KME's ``enc_keys`` or already delivered, raise
        :class:`KeyIDError` listing every such ID and deliver nothing."""
        key_ids = [_canonical(k) for k in key_ids]
        if not key_ids:
            raise KeyRequestError("no key IDs given")
        problems, parsed, seen = [], [], set()
        for key_id in key_ids:
            if key_id in seen:
                problems.append((key_id, "key ID repeated in the request"))
                continue
            seen.add(key_id)
            try:
                parsed.append((key_id, *parse_key_id(key_id)))
            except ValueError:
                problems.append((key_id, "not a key ID of this key store"))
        with self._write() as db:
            runs, claimed = [], set()
            for key_id, tag, index, size in parsed:
                block = db.execute("SELECT seq, units FROM blocks WHERE tag = ?",
                                   (tag,)).fetchone()
                per_key = -(-size // self.unit_bits)
                idxs = [index + 2 * j for j in range(per_key)]
                if block is None or idxs[-1] >= block[1]:
                    problems.append((key_id, "unknown key ID"))
                    continue
                if index % 2 != self._peer:
                    problems.append((key_id, f"key is handed out by enc_keys of {self.role}'s "
                                             f"KME, not by dec_keys"))
                    continue
                marks = db.execute(
                    f"SELECT delivered FROM units WHERE block_seq = ? AND idx IN "
                    f"({','.join('?' * per_key)})", (block[0], *idxs)).fetchall()
                if any(mark is not None for (mark,) in marks):
                    again = any(mark == key_id for (mark,) in marks)
                    problems.append((key_id, "key already delivered" if again else
                                     "key material already delivered under another key ID"))
                    continue
                run = [(block[0], i) for i in idxs]
                if claimed.intersection(run):
                    problems.append((key_id, "key material overlaps another key ID of the "
                                             "request"))
                    continue
                claimed.update(run)
                runs.append(run)
            if problems:
                order = {k: n for n, k in enumerate(key_ids)}
                raise KeyIDError(sorted(problems, key=lambda p: order.get(p[0], 0)))
            sizes = [size for _, _, _, size in parsed]
            return self._deliver(db, "dec", runs, sizes, master_sae, slave_sae)

    def _deliver(self, db, kind, runs, sizes, master_sae, slave_sae):
        if isinstance(sizes, int):
            sizes = [sizes] * len(runs)
        now = time.time()
        seqs = sorted({run[0][0] for run in runs})
        tags = dict(db.execute(f"SELECT seq, tag FROM blocks WHERE seq IN "
                               f"({','.join('?' * len(seqs))})", seqs))
        keys = []
        for run, size in zip(runs, sizes, strict=True):
            block_seq, first = run[0]
            key_id = make_key_id(tags[block_seq], first, size)
            material = b""
            for _, idx in run:
                chunk = db.execute("SELECT material FROM units WHERE block_seq = ? AND idx = ?"
                                   " AND delivered IS NULL", (block_seq, idx)).fetchone()
                if chunk is None or chunk[0] is None:
                    raise KeyStoreError(f"unit {idx} of block {block_seq} vanished")
                db.execute("UPDATE units SET delivered = ?, material = NULL "
                           "WHERE block_seq = ? AND idx = ?", (key_id, block_seq, idx))
                material += chunk[0]
            db.execute("INSERT INTO deliveries (key_id, kind, block_seq, first_idx, size_bits,"
                       " master_sae, slave_sae, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (key_id, kind, block_seq, first, size, str(master_sae),
                        str(slave_sae), now))
            keys.append(Key(key_id, material[:size // 8]))
        return keys

    # -- looking up ---------------------------------------------------------------------

    def _available(self, db, direction, per_key=1):
        rows = db.execute("SELECT COUNT(*) FROM units WHERE delivered IS NULL AND dir = ? "
                          "GROUP BY block_seq", (direction,)).fetchall()
        return sum(count // per_key for (count,) in rows)

    def available(self, size=None, *, peer=False):
        """How many keys of ``size`` bits (default ``unit_bits``) ``enc_keys`` could deliver
        now (``peer=True``: undelivered keys of the peer's direction, for ``dec_keys``)."""
        size = self.unit_bits if size is None else size
        _check_size(size)
        with self._lock:
            return self._available(self._db, self._peer if peer else self._own,
                                   -(-size // self.unit_bits))

    def key_state(self, key_id):
        """What the store knows of a key ID: a dict with ``state`` ``"available"``,
        ``"delivered"`` (with ``kind``, ``master_SAE_ID``, ``slave_SAE_ID``,
        ``delivered_at``), ``"consumed"`` (its material went out under another key ID) or
        ``"unknown"``; no key material."""
        key_id = _canonical(key_id)
        try:
            tag, index, size = parse_key_id(key_id)
        except ValueError:
            return {"key_ID": key_id, "state": "unknown"}
        with self._lock:
            block = self._db.execute("SELECT seq, session, block_id, units FROM blocks "
                                     "WHERE tag = ?", (tag,)).fetchone()
            per_key = -(-size // self.unit_bits)
            if block is None or index + 2 * (per_key - 1) >= block[3]:
                return {"key_ID": key_id, "state": "unknown"}
            info = {"key_ID": key_id, "size": size, "session": block[1], "block_id": block[2],
                    "index": index, "enc_side": ROLES[index % 2]}
            row = self._db.execute("SELECT kind, master_sae, slave_sae, delivered_at "
                                   "FROM deliveries WHERE key_id = ?", (key_id,)).fetchone()
            if row is not None:
                return {**info, "state": "delivered", "kind": row[0], "master_SAE_ID": row[1],
                        "slave_SAE_ID": row[2], "delivered_at": row[3]}
            marks = self._db.execute(
                f"SELECT delivered FROM units WHERE block_seq = ? AND idx IN "
                f"({','.join('?' * per_key)})",
                (block[0], *(index + 2 * j for j in range(per_key)))).fetchall()
            used = any(mark is not None for (mark,) in marks)
            return {**info, "state": "consumed" if used else "available"}

    def deliveries(self, kind=None):
        """Every delivery record (no key material), oldest first."""
        sql = ("SELECT key_id, kind, size_bits, master_sae, slave_sae, delivered_at "
               "FROM deliveries")
        rows = self._read(sql + (" WHERE kind = ?" if kind else "") + " ORDER BY rowid",
                          (kind,) if kind else ())
        return [{"key_ID": r[0], "kind": r[1], "size": r[2], "master_SAE_ID": r[3],
                 "slave_SAE_ID": r[4], "delivered_at": r[5]} for r in rows]

    def blocks(self):
        """Metadata of every stored block, in storing order."""
        rows = self._read("SELECT session, block_id, key_bits, units, discarded_bits, "
                          "created_at, stored_at, qber, eps_sec, eps_cor, protocol, meta "
                          "FROM blocks ORDER BY seq")
        names = ("session", "block_id", "key_bits", "units", "discarded_bits", "created_at",
                 "stored_at", "qber", "eps_sec", "eps_cor", "protocol")
        return [{**dict(zip(names, r[:-1], strict=True)), "meta": json.loads(r[-1])}
                for r in rows]

    def status(self):
        """Counts for the key-delivery API and for monitoring (no key material)."""
        with self._lock:
            db = self._db
            free = dict(db.execute("SELECT dir, COUNT(*) FROM units WHERE delivered IS NULL "
                                   "GROUP BY dir").fetchall())
            kinds = dict(db.execute("SELECT kind, COUNT(*) FROM deliveries "
                                    "GROUP BY kind").fetchall())
            blocks, key_bits, discarded = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(key_bits), 0), COALESCE(SUM(discarded_bits), 0)"
                " FROM blocks").fetchone()
            units = db.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        return {"path": str(self.path), "role": self.role, "unit_bits": self.unit_bits,
                "blocks": blocks, "stored_bits": key_bits, "discarded_bits": discarded,
                "units": units, "available_keys": free.get(self._own, 0),
                "available_peer_keys": free.get(self._peer, 0),
                "delivered_enc_keys": kinds.get("enc", 0),
                "delivered_dec_keys": kinds.get("dec", 0), "max_keys": self.max_keys}
