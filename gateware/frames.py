"""The frame format of the board-host link, defined once in plain Python.

Both ends of the link (the gateware's framer and deframer, :mod:`timebin.host.frames`)
import these constants; :func:`encode_frame` is the reference encoder that the gateware
framer is checked against, and :func:`crc32_bitwise` and :func:`header_check_bitwise` are the
table-free definitions its CRC circuits are checked against.

One frame, all multi-byte fields little-endian (byte offsets)::

    0   4  sync          A5 5A C3 3C (SYNC)
    4   1  type          FrameType
    5   2  seq           sequence number, global per direction, wraps mod 2**16
    7   2  length        payload bytes, 0 .. MAX_PAYLOAD
    9   1  header_check  CRC-8 (ITU-T I.432.1 HEC) of bytes 4 .. 8
    10  L  payload
    10+L 4 crc           CRC-32 (ISO/IEC 8802-3, as zlib.crc32) of bytes 0 .. 10+L-1

Choices, and why:

- ``SYNC`` has no self-overlap (no proper prefix equals a proper suffix), so a sync word
  cannot begin inside another, and a receiver hunting with a substring search finds every
  frame start that follows any garbage. Its bytes alternate bit patterns, unlike the runs of
  0x00 or 0xFF that idle or stuck lines produce.
- The sequence number counts every frame a sender emits in one direction, whatever its
  type, so one counter at the receiver finds every lost frame.
- ``length`` is bounded by ``MAX_PAYLOAD`` (not by its 16 bits): a receiver refuses a
  larger claim at once, so a corrupted length can never make it buffer megabytes.
- The header has its own small check so that a receiver rejects a false or corrupted
  header after 10 bytes, instead of waiting for the up to ``MAX_PAYLOAD`` + 4 bytes that a
  corrupted length claims before the CRC-32 can fail. Frames behind a bad header are thus
  delivered without that delay, and a sync pattern in garbage passes as a header only with
  probability 2**-8. The check is ATM's header error control (ITU-T I.432.1 section 7.3.2:
  CRC-8, generator x^8 + x^2 + x + 1, result XORed with 0x55), which serves the same
  purpose, cell delineation; it detects every error of up to 3 bits in the 48 bits of
  header and check (tested exhaustively).
- The CRC-32 covers the whole frame before it, sync and header included: the gateware runs
  one CRC from the first byte, and the CRC-32 of a whole good frame, trailer included, is
  the constant residue ``CRC32_RESIDUE``.
"""

import enum
import zlib

__all__ = ["SYNC", "HEADER_FIELDS", "HEADER_BYTES", "TRAILER_BYTES", "OVERHEAD_BYTES",
           "MAX_PAYLOAD", "SEQ_MODULUS", "FrameType",
           "CRC32_POLY", "CRC32_INIT", "CRC32_XOROUT", "CRC32_RESIDUE", "crc32", "crc32_bitwise",
           "HEADER_CHECK_POLY", "HEADER_CHECK_XOROUT", "header_check", "header_check_bitwise",
           "encode_frame"]

#: The 4 bytes that start every frame.
SYNC = bytes((0xA5, 0x5A, 0xC3, 0x3C))

#: Fields of the header in byte order, ``(name, bytes)``.
HEADER_FIELDS = (
    ("sync", 4),
    ("type", 1),
    ("seq", 2),
    ("length", 2),
    ("header_check", 1),
)
#: Bytes before the payload: sync, type, seq, length, header check.
HEADER_BYTES = sum(size for _, size in HEADER_FIELDS)
#: Bytes after the payload: the CRC-32.
TRAILER_BYTES = 4
#: Bytes a frame adds to its payload.
OVERHEAD_BYTES = HEADER_BYTES + TRAILER_BYTES

#: Largest payload of one frame, in bytes.
MAX_PAYLOAD = 4096

#: Sequence numbers count modulo this.
SEQ_MODULUS = 1 << 16


class FrameType(enum.IntEnum):
    """What a frame carries.

    Bit 7 is set on frames from the board to the host, clear on frames from the host to the
    board. Codes 0x00 and 0xFF are never used, being what idle and stuck lines produce.
    """
    #: Host asks for the value of a register.
    REG_READ_REQ = 0x01
    #: Host writes a register.
    REG_WRITE_REQ = 0x02
    #: Host asks Alice's board for the logged symbols at a list of indices.
    SYMBOL_LOOKUP_REQ = 0x03
    #: Host asks for the board description (role and parameters, JSON).
    DESCRIBE_REQ = 0x04
    #: A register's value, answering ``REG_READ_REQ``.
    REG_READ_RESP = 0x81
    #: Acknowledges a ``REG_WRITE_REQ``.
    REG_WRITE_RESP = 0x82
    #: The logged symbols, answering ``SYMBOL_LOOKUP_REQ``.
    SYMBOL_LOOKUP_RESP = 0x83
    #: The board description, answering ``DESCRIBE_REQ``.
    DESCRIBE_RESP = 0x84
    #: Detection records from Bob's receiver.
    DETECTIONS = 0x90
    #: Sifting results (basis and bit of detected symbols) from the sifting memory.
    SIFT_RESULTS = 0x91
    #: An alarm raised by the board (health test, watchdog, overflow).
    ALARM = 0xA0

    @property
    def from_board(self):
        """Whether frames of this type travel from the board to the host."""
        return bool(self & 0x80)


# --- CRC-32 ------------------------------------------------------------------------------

#: CRC-32 of ISO/IEC 8802-3 (IEEE 802.3) clause 3.2.9, as zlib.crc32 computes it: generator
#: 0x04C11DB7, here in reflected form (bytes enter LSB first), register preset to all ones,
#: result complemented. CRC-32("123456789") = 0xCBF43926.
CRC32_POLY = 0xEDB88320
CRC32_INIT = 0xFFFFFFFF
CRC32_XOROUT = 0xFFFFFFFF
#: CRC-32 of any good frame including its trailer: a receiver may run one CRC over the
#: whole frame and compare with this constant.
CRC32_RESIDUE = 0x2144DF1C


def crc32(data):
    """CRC-32 (ISO/IEC 8802-3, zlib) of ``data`` as an unsigned 32-bit integer.

    The frame trailer stores this value little-endian.
    """
    return zlib.crc32(data) & 0xFFFFFFFF


def crc32_bitwise(data):
    """The same CRC-32 as :func:`crc32`, computed bit by bit without a table.

    This is the definition a gateware CRC is checked against: for each byte, XOR it into
    the low byte of the register; then 8 times, shift the register right by one and, if the
    bit shifted out was 1, XOR ``CRC32_POLY`` into it. Start from ``CRC32_INIT`` and XOR the
    result with ``CRC32_XOROUT``.
    """
    register = CRC32_INIT
    for byte in data:
        register ^= byte
        for _ in range(8):
            register = (register >> 1) ^ (CRC32_POLY if register & 1 else 0)
    return register ^ CRC32_XOROUT


# --- header check ------------------------------------------------------------------------

#: Header check: the HEC of ITU-T I.432.1 section 7.3.2 (CRC-8/I-432-1): generator
#: x^8 + x^2 + x + 1 (0x07), not reflected (bytes enter MSB first), register preset to 0,
#: result XORed with 0x55. Check value of "123456789": 0xA1.
HEADER_CHECK_POLY = 0x07
HEADER_CHECK_XOROUT = 0x55


def header_check_bitwise(data):
    """Header check of ``data`` (the type, seq and length bytes), bit by bit, no table.

    For each byte, XOR it into the register; then 8 times, shift the register left by one
    within 8 bits and, if the bit shifted out was 1, XOR ``HEADER_CHECK_POLY`` into it.
    Start from 0 and XOR the result with ``HEADER_CHECK_XOROUT``.
    """
    register = 0
    for byte in data:
        register ^= byte
        for _ in range(8):
            register = ((register << 1) ^ (HEADER_CHECK_POLY if register & 0x80 else 0)) & 0xFF
    return register ^ HEADER_CHECK_XOROUT


def _header_check_table():
    table = []
    for byte in range(256):
        register = byte
        for _ in range(8):
            register = ((register << 1) ^ (HEADER_CHECK_POLY if register & 0x80 else 0)) & 0xFF
        table.append(register)
    return tuple(table)


_HEADER_CHECK_TABLE = _header_check_table()


def header_check(data):
    """Header check of ``data``, as :func:`header_check_bitwise` but with a byte table."""
    register = 0
    for byte in data:
        register = _HEADER_CHECK_TABLE[register ^ byte]
    return register ^ HEADER_CHECK_XOROUT


# --- reference encoder -------------------------------------------------------------------

def encode_frame(type, seq, payload):
    """One frame as bytes, in the layout of this module's docstring.

    Parameters
    ----------
    type : FrameType or int
        The frame type; an integer must be the code of a :class:`FrameType`.
    seq : int
        The sequence number, ``0 .. SEQ_MODULUS - 1``.
    payload : bytes-like
        At most ``MAX_PAYLOAD`` bytes.

    Raises
    ------
    TypeError
        If ``type`` or ``seq`` is not an integer, or ``payload`` is not bytes-like.
    ValueError
        If ``type`` is not a frame type, ``seq`` is out of range or the payload is longer than
        ``MAX_PAYLOAD``; the message names the bad value.
    """
    if not isinstance(type, int) or isinstance(type, bool):
        raise TypeError(f"Frame type must be a FrameType, not {type!r}")
    try:
        type = FrameType(type)
    except ValueError:
        raise ValueError(f"Frame type must be a FrameType, not {type:#04x}") from None
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise TypeError(f"Sequence number must be an integer, not {seq!r}")
    if not 0 <= seq < SEQ_MODULUS:
        raise ValueError(f"Sequence number must be in 0 .. {SEQ_MODULUS - 1}, not {seq}")
    try:
        payload = memoryview(payload).cast("B")
    except TypeError:
        raise TypeError(f"Payload must be bytes-like, not {payload!r}") from None
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"Payload of {len(payload)} bytes is longer than MAX_PAYLOAD "
                         f"({MAX_PAYLOAD} bytes)")
    fields = bytes((type, seq & 0xFF, seq >> 8, len(payload) & 0xFF, len(payload) >> 8))
    frame = bytearray(SYNC)
    frame += fields
    frame.append(header_check(fields))
    frame += payload
    frame += crc32(frame).to_bytes(4, "little")
    return bytes(frame)
