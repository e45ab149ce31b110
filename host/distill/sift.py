"""Sifting on the host: join Bob's detection records with Alice's symbols by symbol index,
keep the detections whose bases agree, and count every outcome per basis and intensity.

The definition is :func:`timebin.sim.sifting.sift_reference` (the numpy reference of the
loopback board's on-chip sifter, :class:`timebin.gateware.sifting.LoopbackSifter`); this is an
independent implementation of the same rules for long runs on the host, without Amaranth,
streaming in blocks of records so that memory stays bounded. Each record is *decided* as the
first of these that applies (DESIGN.md sections 2 and 7):

* ``ignored``: its channel's role is ``"ignored"``, or the channel has no role
  (``channel >= len(roles)``);
* ``unclassified``: its window class does not fit its channel's role: a Z detector reads
  ``early`` as bit 0 and ``late`` as bit 1, an X detector (behind the unbalanced
  interferometer) only the ``middle`` slot, as bit 0 at the constructive port (role
  ``"x+"``) and bit 1 at the destructive port (``"x-"``);
* ``unavailable``: Alice has no symbol of that index (no entry, or an entry with
  ``available == 0``, as :meth:`timebin.host.board.Board.lookup` answers for a symbol its
  memory no longer or not yet holds);
* ``not_valid``: Alice's symbol is not ``valid`` for key (training, dark, unhealthy);
* ``basis_mismatch[a]``: Bob's basis differs from Alice's basis ``a``;
* ``sifted[b][i]``: same basis ``b``, Alice's intensity class ``i``; the record is output,
  and counted in ``errors[b][i]`` too if Alice's and Bob's bits differ.

Every record is decided on its own: several clicks on one symbol (two detectors, or
afterpulses) are each sifted and counted, as the gateware does.

Inputs (dicts of equal-length 1-D integer arrays; other fields are ignored):

* Alice: ``index`` (uint64 symbol index), ``basis`` (0 = Z, 1 = X), ``bit``, ``intensity``
  (class 0..3), ``valid`` (1: a real key symbol) and optionally ``available`` (absent: 1).
  Either the answers of symbol lookups for Bob's records (then usually one per record, in
  the same order: the fast path), or any table of symbols such as the transmitter model's
  symbol log (``timebin.sim.tx``), in any order; an index may repeat only with the same
  fields.
* Bob: ``index``, ``channel`` (0..15), ``cls`` (window class: 0 early, 1 late, 2 middle,
  3 discard; :mod:`timebin.gateware.records`) and optionally ``alarm`` (0/1).
* ``roles``: the role of each detector channel: ``"z"``, ``"x+"``, ``"x-"``, ``"ignored"`` or
  their codes 0..3 (:data:`ROLES`, the codes of ``timebin.gateware.sifting``).

Outputs: the sifted records ``{"index": uint64, "basis", "intensity", "alice_bit",
"bob_bit", "alarm": uint8}`` in Bob's order, and the counts ``{"records_in", "ignored",
"unclassified", "unavailable", "not_valid": int, "basis_mismatch": (2,) int64 per Alice's
basis, "sifted", "errors": (2, 4) int64 per basis and intensity class}``.
"""

import time

import numpy as np
from numba import njit

from ...gateware.records import (
    BASIS_X,
    BASIS_Z,
    CLASS_EARLY,
    CLASS_LATE,
    CLASS_MIDDLE,
    MAX_CHANNELS,
    MAX_INTENSITY_CLASSES,
)
from ...gateware.regmap import SIFT_ROLES

__all__ = ["ROLE_Z", "ROLE_X_PLUS", "ROLE_X_MINUS", "ROLE_IGNORED", "ROLES", "ALICE_FIELDS",
           "BOB_FIELDS", "SIFTED_FIELDS", "COUNTERS", "Sifter", "sift", "empty_counts",
           "estimate_counts", "bench_sift"]

#: Roles of a detector channel, as the codes of ``timebin.gateware.sifting`` (that module
#: builds gateware, so the host keeps its own copy; a test checks they agree).
ROLE_Z = 0
ROLE_X_PLUS = 1
ROLE_X_MINUS = 2
ROLE_IGNORED = 3
ROLES = SIFT_ROLES

#: Fields read from Alice's and Bob's dicts (``available`` and ``alarm`` are optional).
ALICE_FIELDS = ("index", "basis", "bit", "intensity", "valid", "available")
BOB_FIELDS = ("index", "channel", "cls", "alarm")
#: Fields of the sifted records.
SIFTED_FIELDS = ("index", "basis", "intensity", "alice_bit", "bob_bit", "alarm")
#: Counters, with their shapes (``()``: an int).
COUNTERS = {"records_in": (), "ignored": (), "unclassified": (), "unavailable": (),
            "not_valid": (), "basis_mismatch": (2,), "sifted": (2, MAX_INTENSITY_CLASSES),
            "errors": (2, MAX_INTENSITY_CLASSES)}

#: Records per kernel call, the unit of the fast path's check: a block whose records are not
#: Alice's entries one for one is joined instead (the kernel needs no scratch memory: the
#: sifted records go straight to the output, whose arrays are then shrunk to their count).
BLOCK_RECORDS = 1 << 20

# Bob's reading of a record (channel role and class): the rows of _OUTCOME.
_S_IGNORED, _S_UNCLASSIFIED, _S_Z0, _S_Z1, _S_X0, _S_X1 = range(6)
# Outcome bins: ignored, unclassified, unavailable, not valid, mismatch (Alice Z, X),
# sifted with equal bits (8: basis * 4 + intensity), sifted with differing bits (8).
_B_IGNORED, _B_UNCLASSIFIED, _B_UNAVAILABLE, _B_NOT_VALID, _B_MISMATCH = 0, 1, 2, 3, 4
_B_SIFTED = 6
_B_ERROR = _B_SIFTED + 2 * MAX_INTENSITY_CLASSES
_BINS = _B_ERROR + 2 * MAX_INTENSITY_CLASSES
# Alice's symbol as a 6-bit code: basis | bit << 1 | intensity << 2 | valid << 4 | avail << 5.
_CODES = 64
# Unrolled histograms (consecutive records rarely hit the same copy's bin).
_COPIES = 4


def _outcome_table():
    """_OUTCOME[state * 64 + code]: the bin of a record Bob read as ``state`` whose symbol
    Alice has as ``code`` (0 when she has none)."""
    table = np.zeros((6, _CODES), np.uint8)
    for state in range(6):
        for code in range(_CODES):
            basis, bit, intensity = code & 1, code >> 1 & 1, code >> 2 & 3
            valid, available = code >> 4 & 1, code >> 5 & 1
            if state == _S_IGNORED:
                out = _B_IGNORED
            elif state == _S_UNCLASSIFIED:
                out = _B_UNCLASSIFIED
            elif not available:
                out = _B_UNAVAILABLE
            elif not valid:
                out = _B_NOT_VALID
            elif basis != (BASIS_X if state >= _S_X0 else BASIS_Z):
                out = _B_MISMATCH + basis
            else:
                element = basis * MAX_INTENSITY_CLASSES + intensity
                out = (_B_ERROR if bit != (state - _S_Z0) & 1 else _B_SIFTED) + element
            table[state, code] = out
    return table.ravel()


_OUTCOME = _outcome_table()


def _reading_table(roles):
    """_reading[min(channel, 16) * 4 + cls]: Bob's reading of a record (row 16: no role)."""
    table = np.full((MAX_CHANNELS + 1, 4), _S_IGNORED, np.uint8)
    for channel, role in enumerate(roles):
        if role == ROLE_Z:
            table[channel] = _S_UNCLASSIFIED
            table[channel, CLASS_EARLY] = _S_Z0
            table[channel, CLASS_LATE] = _S_Z1
        elif role in (ROLE_X_PLUS, ROLE_X_MINUS):
            table[channel] = _S_UNCLASSIFIED
            table[channel, CLASS_MIDDLE] = _S_X0 if role == ROLE_X_PLUS else _S_X1
    return table.ravel()


def bob_reading(roles, channel, cls):
    """``(measured, basis, bit)`` of Bob's records on their own, as Bob's host knows them
    before Alice announces anything (the reading of ``sim.sifting.bob_reading``): a Z
    detector reads early as 0 and late as 1, an X detector its middle slot with the bit of
    its port; ignored channels and other classes are not measured."""
    table = _reading_table(_check_roles(roles))
    channel = np.minimum(np.asarray(channel, np.int64), MAX_CHANNELS)
    state = table[channel * 4 + (np.asarray(cls, np.int64) & 3)]
    measured = state >= _S_Z0
    basis = (state >= _S_X0).astype(np.uint8)
    bit = ((state - _S_Z0) & 1).astype(np.uint8)
    return measured, basis, bit


_ALICE_TOPS = {"basis": 1, "bit": 1, "intensity": MAX_INTENSITY_CLASSES - 1, "valid": 1,
               "available": 1}
_BOB_TOPS = {"channel": MAX_CHANNELS - 1, "cls": 3, "alarm": 1}


def _check_roles(roles):
    """Role codes 0..3 from codes or names; raises ``ValueError`` naming a bad one."""
    if isinstance(roles, (str, bytes)):
        raise ValueError(f"roles must be a sequence of roles, one per channel, not {roles!r}")
    out = []
    for channel, role in enumerate(roles):
        if isinstance(role, str):
            if role.lower() not in ROLES:
                raise ValueError(f"Unknown role {role!r} of channel {channel}: roles are "
                                 f"{', '.join(ROLES)}")
            out.append(ROLES.index(role.lower()))
        elif isinstance(role, (int, np.integer)) and not isinstance(role, bool) \
                and 0 <= role < len(ROLES):
            out.append(int(role))
        else:
            raise ValueError(f"Unknown role {role!r} of channel {channel}: roles are "
                             f"{', '.join(ROLES)} or their codes 0..{len(ROLES) - 1}")
    if len(out) > MAX_CHANNELS:
        raise ValueError(f"{len(out)} roles given; there are at most {MAX_CHANNELS} channels")
    return out


def _fields(name, data, required, optional, tops):
    """``{field: 1-D array}`` of ``data``'s fields, all of one length: ``index`` as uint64,
    the others as uint8 (those of another dtype checked against ``tops`` first; uint8 ones
    are checked by the kernel), so that the kernel is compiled for one signature."""
    if not isinstance(data, dict):
        raise TypeError(f"{name} must be a dict of arrays, not {type(data).__name__}")
    out, length = {}, None
    for field in required + optional:
        if field not in data:
            if field in optional:
                continue
            raise ValueError(f"{name} has no field {field!r} (fields: {', '.join(data)})")
        values = np.asarray(data[field])
        if values.dtype == np.bool_:
            values = values.view(np.uint8)
        if values.size == 0 and values.ndim == 1:          # e.g. an empty list: float64
            values = values.astype(np.uint64 if field == "index" else np.uint8)
        if values.ndim != 1 or values.dtype.kind not in "ui":
            raise ValueError(f"{name}[{field!r}] must be a 1-D integer array, not "
                             f"{values.dtype} of shape {values.shape}")
        if length is None:
            length, first = len(values), field
        elif len(values) != length:
            raise ValueError(f"{name}[{field!r}] has {len(values)} values but "
                             f"{name}[{first!r}] has {length}")
        if field != "index" and values.dtype != np.uint8:
            _check_range(name, field, values, tops[field])
            values = values.astype(np.uint8)
        out[field] = values
    index = out["index"]
    if index.dtype != np.uint64:
        if index.dtype.kind == "i" and index.size and index.min() < 0:
            raise ValueError(f"{name}['index'] must not be negative, not {index.min()}")
        out["index"] = index.astype(np.uint64)
    return out


def _bad_value(name, field, values, top):
    """ValueError naming the first value of ``values`` outside 0..top."""
    bad = np.flatnonzero((values < 0) | (values > top)) if values.dtype.kind == "i" \
        else np.flatnonzero(values > top)
    at = int(bad[0])
    return ValueError(f"{name}[{field!r}] must hold 0..{top}, not {values[at]} "
                      f"(at {at})")


def _check_range(name, field, values, top):
    if values.size and (values.max() > top or (values.dtype.kind == "i" and values.min() < 0)):
        raise _bad_value(name, field, values, top)



# --- the kernel -----------------------------------------------------------------------------

_ALIGNED, _DENSE, _SEARCH = 0, 1, 2


@njit(inline="always")
def _lower_bound(a, idx, hint):
    """First position p with a[p] >= idx in sorted ``a`` (len(a) if none), galloping from
    ``hint`` (0 <= hint < len(a))."""
    n = a.size
    if a[hint] < idx:
        lo, step = hint, 1
        hi = hint + 1
        while hi < n and a[hi] < idx:
            lo = hi
            step *= 2
            hi = lo + step
        hi = min(hi, n)
    else:
        hi, step = hint, 1
        lo = hint - 1
        while lo >= 0 and a[lo] >= idx:
            hi = lo
            step *= 2
            lo = hi - step
        lo = max(lo, -1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[mid] < idx:
            lo = mid
        else:
            hi = mid
    return hi


@njit(cache=True, boundscheck=False)
def _sift_kernel(mode, lo, hi, k, b_index, b_channel, b_cls, b_alarm, has_alarm, reading,
                 outcome, a_index, m, a_basis, a_bit, a_int, a_valid, a_avail, has_avail,
                 base, o_index, o_basis, o_int, o_abit, o_bbit, o_alarm, hist):
    """Decide records lo..hi-1 against Alice's first ``m`` entries (found by position
    (``mode`` 0), offset from ``base`` (1) or search (2)); count them in ``hist`` (4 copies of
    32 bins) and write the sifted ones to o_* from ``k`` on. Returns (k after them, index
    mismatch (mode 0), OR of Alice's 0/1 fields, OR of intensities, OR of channels, OR of
    classes, OR of alarms) for the checks the caller makes."""
    mismatch = np.uint64(0)
    or01 = np.uint64(0)
    or_int = np.uint64(0)
    or_ch = np.uint64(0)
    or_cls = np.uint64(0)
    or_alarm = np.uint64(0)
    hint = 0
    one = np.uint64(1)
    for r in range(lo, hi):
        idx = b_index[r]
        ch = np.uint64(b_channel[r])
        cl = np.uint64(b_cls[r])
        or_ch |= ch
        or_cls |= cl
        state = reading[min(ch, np.uint64(16)) * np.uint64(4) + (cl & np.uint64(3))]
        p = 0
        if mode == 0:
            p = r
            found = True
            mismatch |= a_index[r] ^ idx
        elif mode == 1:
            off = idx - base
            found = off < np.uint64(m)
            if found:
                p = np.int64(off)
        else:
            found = False
            if m > 0:
                q = _lower_bound(a_index, idx, hint)
                found = q < m and a_index[q] == idx
                hint = min(q, m - 1)
                if found:
                    p = q
        basis = np.uint64(a_basis[p]) if m > 0 else np.uint64(0)
        bit = np.uint64(a_bit[p]) if m > 0 else np.uint64(0)
        inten = np.uint64(a_int[p]) if m > 0 else np.uint64(0)
        valid = np.uint64(a_valid[p]) if m > 0 else np.uint64(0)
        avail = np.uint64(a_avail[p]) if has_avail and m > 0 else one
        if found:
            or01 |= basis | bit | valid | avail
            or_int |= inten
        code = ((basis & one) | (bit & one) << np.uint64(1) | (inten & np.uint64(3))
                << np.uint64(2) | (valid & one) << np.uint64(4) | (avail & one)
                << np.uint64(5))
        if not found:
            code = np.uint64(0)
        out = outcome[np.uint64(state) * np.uint64(64) + code]
        hist[(r & 3) * 32 + out] += 1
        alarm = np.uint64(b_alarm[r]) if has_alarm else np.uint64(0)
        or_alarm |= alarm
        o_index[k] = idx
        o_basis[k] = np.uint8(code & one)
        o_abit[k] = np.uint8(code >> np.uint64(1) & one)
        o_int[k] = np.uint8(code >> np.uint64(2) & np.uint64(3))
        o_bbit[k] = np.uint8((state - 2) & 1)
        o_alarm[k] = np.uint8(alarm & one)
        k += 1 if out >= 6 else 0
    return k, mismatch, or01, or_int, or_ch, or_cls, or_alarm


# --- sifting --------------------------------------------------------------------------------

def empty_counts():
    """Counts of no records: ``{counter: 0 or zeros}`` (:data:`COUNTERS`)."""
    return {name: (0 if not shape else np.zeros(shape, np.int64))
            for name, shape in COUNTERS.items()}


def _counts_of(hist):
    """Counts from the summed outcome histogram."""
    h = hist.sum(axis=0)
    per = 2 * MAX_INTENSITY_CLASSES
    errors = h[_B_ERROR:_B_ERROR + per]
    return {
        "records_in": int(h.sum()),
        "ignored": int(h[_B_IGNORED]),
        "unclassified": int(h[_B_UNCLASSIFIED]),
        "unavailable": int(h[_B_UNAVAILABLE]),
        "not_valid": int(h[_B_NOT_VALID]),
        "basis_mismatch": h[_B_MISMATCH:_B_MISMATCH + 2].copy(),
        "sifted": (h[_B_SIFTED:_B_SIFTED + per] + errors).reshape(2, MAX_INTENSITY_CLASSES),
        "errors": errors.reshape(2, MAX_INTENSITY_CLASSES).copy(),
    }


def _add_counts(total, counts):
    for name in COUNTERS:
        total[name] = total[name] + counts[name]


class _Table:
    """Alice's symbols sorted by index for joins (built when the fast path does not apply)."""

    def __init__(self, alice):
        index = alice["index"]
        for field, top in _ALICE_TOPS.items():
            if field in alice:
                _check_range("alice", field, alice[field], top)
        fields = {name: alice[name] for name in ALICE_FIELDS[1:] if name in alice}
        if index.size > 1 and not (index[1:] >= index[:-1]).all():
            order = np.argsort(index, kind="stable")
            index = index[order]
            fields = {name: values[order] for name, values in fields.items()}
        same = np.flatnonzero(index[1:] == index[:-1]) if index.size > 1 else np.zeros(0, int)
        for name, values in fields.items():
            differ = same[values[same] != values[same + 1]]
            if differ.size:
                at = int(differ[0])
                raise ValueError(f"alice has symbol {index[at]} twice with different "
                                 f"{name!r}: {values[at]} and {values[at + 1]}")
        self.index = index
        self.fields = fields
        self.mode, self.base = _SEARCH, np.uint64(0)
        if index.size and not same.size and int(index[-1]) - int(index[0]) == index.size - 1:
            self.mode, self.base = _DENSE, index[0]


class Sifter:
    """Streaming sifter: :meth:`feed` blocks of Alice's symbols and Bob's records; counts
    accumulate over the feeds (:attr:`counts`).

    ``roles``: the role of each detector channel (module docstring). ``history``: Alice's
    symbols kept from earlier feeds, by index: after each feed the sifter keeps those with
    an index above the highest index fed minus ``history``, so that Bob's records may refer
    to symbols fed up to ``history`` indices before (0: every feed stands alone, as when
    Alice's block answers lookups of Bob's block). ``block``: records per kernel call.
    """

    def __init__(self, roles, *, history=0, block=BLOCK_RECORDS):
        self.roles = _check_roles(roles)
        if isinstance(history, bool) or not isinstance(history, (int, np.integer)) \
                or history < 0:
            raise ValueError(f"history must be a non-negative integer, not {history!r}")
        if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
            raise ValueError(f"block must be a positive integer, not {block!r}")
        self.history = int(history)
        self.block = int(block)
        self._reading = _reading_table(self.roles)
        self._held = None
        self._counts = empty_counts()

    @property
    def counts(self):
        """Counts accumulated over every feed (a copy)."""
        return {name: (value.copy() if isinstance(value, np.ndarray) else value)
                for name, value in self._counts.items()}

    def reset(self):
        """Zero the counts and drop the symbols held."""
        self._counts = empty_counts()
        self._held = None

    def feed(self, alice, bob):
        """Sift Bob's records ``bob`` against Alice's symbols ``alice`` (and those held from
        earlier feeds); returns the sifted records of ``bob``, adds to :attr:`counts`."""
        alice = _fields("alice", alice, ALICE_FIELDS[:5], ("available",), _ALICE_TOPS)
        bob = _fields("bob", bob, BOB_FIELDS[:3], ("alarm",), _BOB_TOPS)
        if self.history:
            if "available" not in alice:
                alice["available"] = np.ones(len(alice["index"]), np.uint8)
            if self._held is not None:
                alice = {name: np.concatenate((self._held[name], alice[name]))
                         for name in alice}
        sifted, counts = self._sift(alice, bob)
        if self.history and alice["index"].size:
            threshold = int(alice["index"].max()) - self.history
            keep = alice["index"] > np.uint64(max(threshold, 0)) if threshold >= 0 else \
                np.ones(alice["index"].size, bool)
            self._held = {name: values[keep] for name, values in alice.items()}
        _add_counts(self._counts, counts)
        return sifted

    def _sift(self, alice, bob):
        records = len(bob["index"])
        has_alarm = "alarm" in bob
        alarm = bob["alarm"] if has_alarm else np.zeros(1, np.uint8)
        # The sifted records are written in place, then the arrays shrunk to their count.
        sifted = {name: np.empty(max(records, 1), np.uint64 if name == "index" else np.uint8)
                  for name in SIFTED_FIELDS}
        hist = np.zeros(_COPIES * 32, np.int64)

        def run(lo, hi, k, mode, base, index, fields):
            m = len(index)
            has_avail = "available" in fields
            return _sift_kernel(
                mode, lo, hi, k, bob["index"], bob["channel"], bob["cls"], alarm, has_alarm,
                self._reading, _OUTCOME, index, m, fields["basis"], fields["bit"],
                fields["intensity"], fields["valid"],
                fields["available"] if has_avail else fields["valid"], has_avail, base,
                sifted["index"], sifted["basis"], sifted["intensity"], sifted["alice_bit"],
                sifted["bob_bit"], sifted["alarm"], hist)

        # Fast path: Alice's entries are the answers for Bob's records, one for one (checked
        # in the kernel); otherwise (or from the first block where that fails) a join.
        aligned = len(alice["index"]) == records
        table = None
        k = 0
        for lo in range(0, records, self.block):
            hi = min(lo + self.block, records)
            result = None
            if aligned:
                saved = hist.copy()
                result = run(lo, hi, k, _ALIGNED, np.uint64(0), alice["index"], alice)
                if result[1]:
                    aligned = False
                    hist[:] = saved
            if not aligned:
                if table is None:
                    table = _Table(alice)
                result = run(lo, hi, k, table.mode, table.base, table.index, table.fields)
            k, _, or01, or_int, or_ch, or_cls, or_alarm = result
            if or_ch > _BOB_TOPS["channel"] or or_cls > _BOB_TOPS["cls"] or or_alarm > 1:
                for field in ("channel", "cls", "alarm"):
                    if field in bob:
                        _check_range("bob", field, bob[field][lo:hi], _BOB_TOPS[field])
            if or01 > 1 or or_int > _ALICE_TOPS["intensity"]:
                for field, top in _ALICE_TOPS.items():
                    if field in alice:
                        _check_range("alice", field, alice[field], top)
        for values in sifted.values():
            values.resize(k, refcheck=False)    # no other reference to these arrays exists
        return sifted, _counts_of(hist.reshape(_COPIES, 32)[:, :_BINS])


def sift(alice, bob, roles, *, block=BLOCK_RECORDS):
    """Sift Bob's records against Alice's symbols in one call (module docstring): returns
    ``(sifted, counts)``. Raises ``ValueError`` naming the bad value for a missing field,
    fields of different lengths, a value out of its field's range, an unknown role, or a
    symbol given twice with different fields; ``TypeError`` if an input is not a dict."""
    sifter = Sifter(roles, block=block)
    sifted = sifter.feed(alice, bob)
    return sifted, sifter.counts


def estimate_counts(counts, classes=MAX_INTENSITY_CLASSES):
    """Parameter estimation's input from sifting counts: ``{"Z": {"n": (classes,), "m":
    (classes,)}, "X": {...}}`` (int64), ``n`` the sifted detections and ``m`` the errors per
    intensity class, for the first ``classes`` classes (those of the protocol in use, as
    :mod:`.finite_key` takes them; a detection counted in a class beyond them raises
    ``ValueError``). Takes counts of :func:`sift` or :class:`Sifter` ((2, 4) arrays) or of
    the gateware and ``sift_reference`` (8 elements, ``basis * 4 + intensity``)."""
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) \
            or not 1 <= classes <= MAX_INTENSITY_CLASSES:
        raise ValueError(f"classes must be 1..{MAX_INTENSITY_CLASSES}, not {classes!r}")
    out = {}
    for name in ("sifted", "errors"):
        if name not in counts:
            raise ValueError(f"counts has no {name!r}")
        values = np.asarray(counts[name])
        if values.size != 2 * MAX_INTENSITY_CLASSES:
            raise ValueError(f"counts[{name!r}] must have {2 * MAX_INTENSITY_CLASSES} "
                             f"elements (basis * 4 + intensity), not shape {values.shape}")
        out[name] = values.reshape(2, MAX_INTENSITY_CLASSES).astype(np.int64)
    if (out["errors"] > out["sifted"]).any() or (out["errors"] < 0).any():
        raise ValueError("counts['errors'] must be within 0..counts['sifted']")
    beyond = np.argwhere(out["sifted"][:, classes:] > 0)
    if beyond.size:
        basis, extra = (int(v) for v in beyond[0])
        raise ValueError(f"{out['sifted'][basis, classes + extra]} sifted detections of "
                         f"intensity class {classes + extra} (basis {'ZX'[basis]}), beyond "
                         f"the {classes} classes asked for")
    return {basis: {"n": out["sifted"][code, :classes].copy(),
                    "m": out["errors"][code, :classes].copy()}
            for basis, code in (("Z", BASIS_Z), ("X", BASIS_X))}


# --- benchmark ------------------------------------------------------------------------------

def _bench_data(records, seed):
    """Seeded traffic: Bob's records (4 channels: Z, X+, X-, ignored; gaps of ~1000
    symbols, even indices) and Alice's lookup answers for them (90 % Z, 2 intensities,
    98 % valid, 99 % available)."""
    rng = np.random.default_rng(seed)
    index = (2 * np.cumsum(rng.geometric(1e-3, records))).astype(np.uint64)
    channel = rng.integers(0, 4, records, dtype=np.uint8)
    z = channel == 0
    cls = np.where(z, rng.integers(0, 2, records, dtype=np.uint8),
                   np.where(rng.random(records) < 0.95, CLASS_MIDDLE,
                            rng.integers(0, 2, records))).astype(np.uint8)
    bob = {"index": index, "channel": channel, "cls": cls,
           "alarm": np.zeros(records, bool)}
    alice = {"index": index.copy(),
             "basis": (rng.random(records) < 0.1).astype(np.uint8),
             "bit": rng.integers(0, 2, records, dtype=np.uint8),
             "intensity": (rng.random(records) < 0.3).astype(np.uint8),
             "valid": (rng.random(records) < 0.98).astype(np.uint8),
             "available": (rng.random(records) < 0.99).astype(np.uint8)}
    return alice, bob, ["z", "x+", "x-", "ignored"]


def bench_sift(records=10**7, seed=0, repeats=3):
    """Records per second of :func:`sift` on one core (best of ``repeats`` after a warm-up),
    on seeded traffic: ``"lookup"`` with Alice's lookup answers aligned with Bob's records
    (the host's usual case), and ``"join"`` with Alice's symbols as a table in index order
    (a symbol log) holding twice as many symbols (searched). Returns ``{"records", "seed",
    "lookup": {"seconds", "records_per_s"}, "join": {...}, "sifted"}``."""
    if isinstance(records, bool) or not isinstance(records, (int, np.integer)) or records < 1:
        raise ValueError(f"records must be a positive integer, not {records!r}")
    alice, bob, roles = _bench_data(int(records), seed)
    # Alice's symbol table: Bob's symbols and as many without a detection, in index order.
    order = np.argsort(np.concatenate((bob["index"], bob["index"] + np.uint64(1))),
                       kind="stable")
    table = {name: np.concatenate((values, values if name != "index"
                                   else values + np.uint64(1)))[order]
             for name, values in alice.items()}
    out = {"records": int(records), "seed": seed}
    for name, symbols in (("lookup", alice), ("join", table)):
        timings = []
        for _ in range(max(repeats, 1) + 1):
            start = time.perf_counter()
            sifted, counts = sift(symbols, bob, roles)
            timings.append(time.perf_counter() - start)
        seconds = min(timings[1:])
        out[name] = {"seconds": seconds, "records_per_s": records / seconds}
        out["sifted"] = int(counts["sifted"].sum())
    return out
