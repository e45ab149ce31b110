"""The request/response protocol of the board-host link, defined once in plain Python: what
the payload of each :class:`~timebin.gateware.frames.FrameType` holds.

The gateware's :class:`~timebin.gateware.link.controller.LinkController` and
:class:`~timebin.gateware.link.controller.DetectionPacketizer` produce these payloads; the
host's :class:`~timebin.host.board.Board` encodes requests and decodes responses with the
functions below. All fields are little-endian; items are packed back to back.

Requests (host to board) and their responses (board to host), one response per request, in
the order the requests arrive::

    DESCRIBE_REQ       (empty)                 DESCRIBE_RESP      the board description (JSON)
    REG_READ_REQ       n x u16 word address    REG_READ_RESP      n x u32 word read
    REG_WRITE_REQ      n x (u16 address,       REG_WRITE_RESP     n x u8 status: 0 written,
                            u32 word)                             1 refused (and counted)
    SYMBOL_LOOKUP_REQ  n x u64 symbol index    SYMBOL_LOOKUP_RESP n x LOOKUP_RESULT_BYTES:
                                                                  LOOKUP_RESULT_FIELDS, LSB
                                                                  first (Alice only)

``n >= 1`` items of a request are executed in order, one after the other, so a two-word
register read (lo then hi) or written (lo then hi) in one request is atomic (the bus rules
of :mod:`timebin.gateware.regmap`). A request whose payload is not a whole number of items
(or empty, or an unknown request type, or a lookup on a board without symbol memory) is
*refused*: its payload is dropped, it is counted in the board's ``link_bad_requests``, and,
for a known request type, answered with an empty response, so that the host never waits for
an answer that will not come.

Streams (board to host, unrequested):

``DETECTIONS``
    ``u16 pointer`` then ``n >= 1`` 32-bit words of Bob's compressed record stream
    (:mod:`timebin.host.records`), in order across frames. ``pointer`` is the index (in
    words, within this frame) of the first word that starts a block, or
    :data:`NO_BLOCK_START` when no block starts in the frame. After a lost frame (a sequence
    gap) the host drops the partial block and resumes at the next frame's pointer, as ATM
    AAL and MPEG transport streams resynchronise; nothing decoded is ever wrong.
``SIFT_RESULTS``
    ``n`` x :data:`SIFT_RESULT_BYTES`: :data:`SIFT_RESULT_FIELDS`, LSB first (loopback
    boards).
``ALARM``
    ``u32`` alarm mask (:data:`ALARM_BITS` of the board's role), sent when a bit rises.
"""

import json

from .frames import FrameType
from .records import INDEX_BITS, SYMBOL_FIELDS

__all__ = ["ADDRESS_BYTES", "WORD_BYTES", "ITEM_BYTES", "RESPONSE_OF", "REQUEST_TYPES",
           "STATUS_WRITTEN", "STATUS_REFUSED", "LOOKUP_RESULT_FIELDS", "LOOKUP_RESULT_BYTES",
           "SIFT_RESULT_FIELDS", "SIFT_RESULT_BYTES", "NO_BLOCK_START", "POINTER_BYTES",
           "ALARM_BITS", "ALARM_BYTES", "ROLES", "describe", "parse_description"]

#: Bytes of a register address in a request, and of a register word.
ADDRESS_BYTES = 2
WORD_BYTES = 4

#: Status bytes of a ``REG_WRITE_RESP``.
STATUS_WRITTEN = 0
STATUS_REFUSED = 1

#: One symbol lookup's answer, LSB first: as the symbol memory's ``LookupResult``.
LOOKUP_RESULT_FIELDS = (("index", INDEX_BITS),
                        *((name, width) for name, width in SYMBOL_FIELDS if name != "dark"),
                        ("available", 1))
LOOKUP_RESULT_BYTES = -(-sum(width for _, width in LOOKUP_RESULT_FIELDS) // 8)

#: One sifted detection of a loopback board, LSB first.
SIFT_RESULT_FIELDS = (("index", INDEX_BITS), ("basis", 1), ("intensity", 2),
                      ("alice_bit", 1), ("bob_bit", 1), ("alarm", 1))
SIFT_RESULT_BYTES = -(-sum(width for _, width in SIFT_RESULT_FIELDS) // 8)

#: ``(request bytes, response bytes)`` of one item of each request type.
ITEM_BYTES = {
    FrameType.REG_READ_REQ: (ADDRESS_BYTES, WORD_BYTES),
    FrameType.REG_WRITE_REQ: (ADDRESS_BYTES + WORD_BYTES, 1),
    FrameType.SYMBOL_LOOKUP_REQ: (INDEX_BITS // 8, LOOKUP_RESULT_BYTES),
}
#: The response type of each request type.
RESPONSE_OF = {
    FrameType.DESCRIBE_REQ: FrameType.DESCRIBE_RESP,
    FrameType.REG_READ_REQ: FrameType.REG_READ_RESP,
    FrameType.REG_WRITE_REQ: FrameType.REG_WRITE_RESP,
    FrameType.SYMBOL_LOOKUP_REQ: FrameType.SYMBOL_LOOKUP_RESP,
}
REQUEST_TYPES = tuple(RESPONSE_OF)

#: ``pointer`` of a ``DETECTIONS`` frame in which no block starts.
NO_BLOCK_START = 0xFFFF
POINTER_BYTES = 2

#: Bytes of an ``ALARM`` payload.
ALARM_BYTES = 4

#: Roles of a board.
ROLES = ("alice", "bob", "loopback")

#: Bits of the ``ALARM`` mask of each role, bit 0 first.
ALARM_BITS = {
    "alice": ("health", "log_overflow", "settings_error", "lookup_missed"),
    "bob": ("watchdog", "record_overflow", "settings_error", "compress_error"),
    "loopback": ("health", "watchdog", "record_overflow", "settings_error"),
}


_DESCRIPTION_KEYS = {"role", "params", "board", "link"}


def describe(role, params, board, link):
    """The board description a ``DESCRIBE_RESP`` carries: compact JSON (UTF-8) of the role,
    the top's parameters (``Transmitter.params`` or ``Receiver.params``), the board's own
    (memory and frame sizes) and the link's (longest request). From it the host builds the
    board's register map."""
    if role not in ROLES:
        raise ValueError(f"Board role must be one of {ROLES}, not {role!r}")
    text = json.dumps({"role": role, "params": params, "board": board, "link": link},
                      sort_keys=True, separators=(",", ":"))
    return text.encode()


def parse_description(payload):
    """``(role, params, board, link)`` of a description; ``ValueError`` naming what is
    wrong. Lists become tuples (``intensity_probs``), as the tops keep them."""
    try:
        value = json.loads(bytes(payload).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Board description is not JSON: {error}") from None
    if (not isinstance(value, dict) or set(value) != _DESCRIPTION_KEYS
            or value["role"] not in ROLES
            or not all(isinstance(value[key], dict) for key in ("params", "board", "link"))):
        raise ValueError(f"Board description has the wrong shape: {value!r:.200}")
    params = {key: tuple(v) if isinstance(v, list) else v
              for key, v in value["params"].items()}
    return value["role"], params, value["board"], value["link"]
