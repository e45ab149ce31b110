"""The host's client of a board: registers by name, counters, histograms, detection records
and symbol lookups, over any transport.

Ref: the frame format (:mod:`timebin.gateware.frames`), the request/response protocol
(:mod:`timebin.gateware.protocol`) and the register maps (:mod:`timebin.gateware.regmap`)
are defined once in plain Python and shared with the gateware; this module never imports
Amaranth.

A session::

    from timebin.host.board import Board
    with Board.open("serial:///dev/ttyUSB1") as bob:     # or tcp://, ftdi://, sim://bob
        bob.set("dead_time", 400)
        bob.write({"delay.0": 12, "delay.1": 15})
        print(bob.counters())
        records = bob.stream_records(count=10_000)      # {field: numpy array}

On connecting, the client asks the board for its description (role and parameters), builds
the board's register map from it with the same functions the gateware used, and checks the
board's ``id``, ``version`` and ``map_crc`` registers against it: a host whose map differs
from the bitstream's refuses to talk to it.
"""

import time

import numpy as np

from ..gateware.frames import MAX_PAYLOAD, SEQ_MODULUS, FrameType
from ..gateware.protocol import (
    ADDRESS_BYTES,
    ALARM_BITS,
    ITEM_BYTES,
    LOOKUP_RESULT_BYTES,
    LOOKUP_RESULT_FIELDS,
    NO_BLOCK_START,
    POINTER_BYTES,
    RESPONSE_OF,
    SIFT_RESULT_BYTES,
    SIFT_RESULT_FIELDS,
    STATUS_REFUSED,
    STATUS_WRITTEN,
    WORD_BYTES,
    parse_description,
)
from ..gateware.records import HEADER_WORDS, SEQUENCE_BITS, field_offsets
from ..gateware.regmap import ALICE_ID, BOB_ID, LOOPBACK_ID, MAP_VERSION, board_registers
from .frames import FrameDecoder, FrameEncoder
from .records import decode_detections, read_block_headers
from .transport import open_transport

__all__ = ["BoardError", "BoardTimeout", "RegisterRefused", "DetectionReassembler", "Board",
           "decode_registers"]

_IDS = {"alice": ALICE_ID, "bob": BOB_ID, "loopback": LOOPBACK_ID}
#: Seconds a request waits for its response, by default.
DEFAULT_TIMEOUT = 10.0
#: Seconds without a byte after which a partial frame is given up, by default: longer than
#: the gaps inside one frame on a slow link (a USB bridge's latency timer is 16 ms; a
#: simulated board sends a frame over many of its slow cycles).
DEFAULT_STALL = 1.0


class BoardError(Exception):
    """The board broke the protocol or its description does not match."""


class BoardTimeout(BoardError, TimeoutError):
    """A response did not come in time."""


class RegisterRefused(BoardError, ValueError):
    """The board refused a register write (and counted it in ``write_errors``)."""


class DetectionReassembler:
    """Rebuild Bob's compressed record stream from ``DETECTIONS`` payloads and decode it.

    Feed each payload with whether frames were lost before it. Words are kept until whole
    blocks are in, then decoded with :func:`~timebin.host.records.decode_detections`. After
    a loss the partial block is dropped and decoding resumes at the next frame's pointer
    (:mod:`timebin.gateware.protocol`), so a record is never decoded from a broken block.

    Members
    -------
    blocks : int
        Blocks decoded.
    blocks_lost : int
        Blocks missing from the sequence numbers of the blocks decoded (a block lost after
        the last one decoded is counted once the next one is decoded).
    words_dropped : int
        Words thrown away while resynchronising.
    """

    def __init__(self, channels, uis_per_symbol):
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self._words = np.zeros(0, np.uint32)
        self._synced = False        # start at the first frame's pointer
        self._last_sequence = None
        self.blocks = 0
        self.blocks_lost = 0
        self.words_dropped = 0

    def feed(self, payload, lost_before=False):
        """Add one ``DETECTIONS`` payload; returns the records of the blocks it completed
        (``{field: array}``, possibly empty). Raises ``BoardError`` for a malformed
        payload."""
        if len(payload) < POINTER_BYTES or (len(payload) - POINTER_BYTES) % 4:
            raise BoardError(f"DETECTIONS payload of {len(payload)} bytes is not a pointer "
                             f"and whole words")
        pointer = int.from_bytes(payload[:POINTER_BYTES], "little")
        words = np.frombuffer(payload, "<u4", offset=POINTER_BYTES).astype(np.uint32)
        if pointer != NO_BLOCK_START and pointer >= len(words):
            raise BoardError(f"DETECTIONS pointer {pointer} is beyond its {len(words)} words")
        if lost_before:
            self.words_dropped += len(self._words)
            self._words = np.zeros(0, np.uint32)
            self._synced = False
        if not self._synced:
            if pointer == NO_BLOCK_START:
                self.words_dropped += len(words)
                return self._decode(0)
            self.words_dropped += pointer
            words = words[pointer:]
            self._synced = True
        self._words = np.concatenate((self._words, words))
        # Walk the whole blocks at the front.
        end, total = 0, len(self._words)
        while end + HEADER_WORDS <= total:
            h2 = int(self._words[end + 2])
            length = HEADER_WORDS + (h2 & 0xFFFF) + (h2 >> 16)
            if end + length > total:
                break
            end += length
        return self._decode(end)

    def _decode(self, end):
        chunk, self._words = self._words[:end], self._words[end:]
        if end == 0:
            return decode_detections(chunk, self.channels, self.uis_per_symbol)
        first = int(chunk[1]) >> 16
        if self._last_sequence is not None:
            self.blocks_lost += (first - self._last_sequence - 1) % (1 << SEQUENCE_BITS)
        try:
            records = decode_detections(chunk, self.channels, self.uis_per_symbol)
        except ValueError as error:
            raise BoardError(f"Corrupt record stream: {error}") from None
        heads = read_block_headers(chunk, self.channels, self.uis_per_symbol)
        self.blocks += len(heads["sequence"])
        self._last_sequence = int(heads["sequence"][-1])
        return records


def decode_registers(regs, words):
    """``{name: value}`` of the registers ``regs`` (a list) from ``words``, the words read
    at their addresses in that order."""
    out, at = {}, 0
    for reg in regs:
        out[reg.name] = reg.decode(words[at:at + reg.words])
        at += reg.words
    return out


def _unpack(data, fields, size):
    """``{field: array}`` of records of ``size`` bytes holding ``fields`` LSB first; the
    64-bit ``index`` as uint64, the others uint8."""
    raw = np.frombuffer(data, np.uint8).reshape(-1, size)
    bits = np.unpackbits(raw, axis=1, bitorder="little")
    out = {}
    for name, (offset, width) in field_offsets(fields).items():
        weights = np.uint64(1) << np.arange(width, dtype=np.uint64)
        value = (bits[:, offset:offset + width].astype(np.uint64) * weights).sum(
            axis=1, dtype=np.uint64)
        out[name] = value if width > 8 else value.astype(np.uint8)
    return out


def _concat(parts, empty):
    if not parts:
        return empty
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class Board:
    """A connected board (see the module docstring).

    Parameters
    ----------
    transport : Transport
        An open transport (:func:`~timebin.host.transport.open_transport`).
    timeout : float
        Seconds a request waits for its response.
    stall : float
        Seconds without a byte after which a partial frame is given up (counted
        ``truncated``); the frames behind it are then found.

    Members
    -------
    role : str
        ``alice`` or ``bob``.
    params, board_params, link_params : dict
        The board's description.
    registers : RegisterMap
        The board's register map.
    decoder : FrameDecoder
        Its ``stats`` are the host side's link statistics.
    alarms : list of dict
        The ``ALARM`` frames received: ``{"mask": int, "time": float}``
        (:meth:`alarm_names` names the bits).
    """

    def __init__(self, transport, *, timeout=DEFAULT_TIMEOUT, stall=DEFAULT_STALL):
        self.transport = transport
        self.timeout = timeout
        self.stall = stall
        self._last_byte = time.monotonic()
        self.decoder = FrameDecoder()
        self.encoder = FrameEncoder()
        self.alarms = []
        self.lost_frames = 0
        self.stale_responses = 0
        self._responses = []
        self._detections = []           # (payload, lost_before)
        self._sifted = []
        self._expected_seq = None
        self._lost_pending = False
        self.role, self.params, self.board_params, self.link_params = self.describe()
        self.registers = board_registers(self.role, self.params, self.board_params)
        self._check_identity()
        self.reassembler = (DetectionReassembler(self.params["channels"],
                                                 self.params["uis_per_symbol"])
                            if self.role == "bob" else None)

    @classmethod
    def open(cls, url, **kwargs):
        """Open the transport of ``url`` and connect (closing the transport on failure)."""
        transport = open_transport(url)
        try:
            return cls(transport, **kwargs)
        except BaseException:
            transport.close()
            raise

    def close(self):
        """Close the transport."""
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Board {self.role} on {self.transport!r}>"

    # --- frames -------------------------------------------------------------------------

    def _pump(self, timeout):
        """Read what arrives within ``timeout`` seconds and sort the frames."""
        data = self.transport.read(1 << 16, timeout=timeout)
        now = time.monotonic()
        frames = []
        if data:
            frames = self.decoder.feed(data)
            self._last_byte = now
        elif self.decoder.pending_bytes and now - self._last_byte >= self.stall:
            frames = self.decoder.flush()       # a stalled link: give up a partial frame
        for frame in frames:
            if self._expected_seq is not None and frame.seq != self._expected_seq:
                self.lost_frames += (frame.seq - self._expected_seq) % SEQ_MODULUS
                self._lost_pending = True
            self._expected_seq = (frame.seq + 1) % SEQ_MODULUS
            if frame.type == FrameType.DETECTIONS:
                self._detections.append((frame.payload, self._lost_pending))
                self._lost_pending = False
            elif frame.type == FrameType.SIFT_RESULTS:
                self._sifted.append(frame.payload)
            elif frame.type == FrameType.ALARM:
                self.alarms.append({"mask": int.from_bytes(frame.payload[:4], "little"),
                                    "time": time.time()})
            elif frame.type.from_board:
                self._responses.append(frame)
        return bool(data)

    def alarm_names(self, mask):
        """The names (:data:`~timebin.gateware.protocol.ALARM_BITS`) of the bits of an
        ``ALARM`` mask."""
        return [name for bit, name in enumerate(ALARM_BITS[self.role]) if mask >> bit & 1]

    def _request(self, type_, payload=b""):
        """Send one request and return its response's payload."""
        if self._responses:                     # answers to requests given up on
            self.stale_responses += len(self._responses)
            self._responses.clear()
        self.transport.write(self.encoder.encode(type_, payload))
        expected = RESPONSE_OF[FrameType(type_)]
        deadline = time.monotonic() + self.timeout
        while not self._responses:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoardTimeout(f"No answer to {FrameType(type_).name} within "
                                   f"{self.timeout} s on {self.transport!r}")
            self._pump(min(left, 0.05))
        frame = self._responses.pop(0)
        if frame.type != expected:
            raise BoardError(f"{FrameType(type_).name} was answered with {frame.type.name}")
        return frame.payload

    def _max_items(self, type_):
        request, response = ITEM_BYTES[type_]
        limit = getattr(self, "link_params", None) or {}
        return max(1, min(limit.get("max_request", 64) // request, MAX_PAYLOAD // response))

    # --- description and identity --------------------------------------------------------

    def describe(self):
        """``(role, params, board, link)`` of the board's description."""
        payload = self._request(FrameType.DESCRIBE_REQ)
        if not payload:
            raise BoardError("The board refused the description request")
        try:
            return parse_description(payload)
        except ValueError as error:
            raise BoardError(str(error)) from None

    def _check_identity(self):
        got = self.read_words([self.registers[name].address
                               for name in ("id", "version", "map_crc")])
        want = (_IDS[self.role], MAP_VERSION, self.registers.crc())
        for name, value, expected in zip(("id", "version", "map_crc"), got, want, strict=True):
            if value != expected:
                raise BoardError(f"Board register {name} reads {value:#010x}, but the "
                                 f"{self.role} map of its description has {expected:#010x}")

    def info(self):
        """The board's role, parameters, register count and link statistics."""
        return {"role": self.role, "params": self.params, "board": self.board_params,
                "link": self.link_params, "registers": len(self.registers),
                "map_crc": self.registers.crc(), "transport": repr(self.transport)}

    # --- registers -----------------------------------------------------------------------

    def read_words(self, addresses):
        """The 32-bit words at word ``addresses``, read in order (in as few requests as the
        board takes; a two-word register's lo and hi in the same request)."""
        addresses = [int(a) for a in addresses]
        for a in addresses:
            if not 0 <= a < 1 << (8 * ADDRESS_BYTES):
                raise ValueError(f"Register address must be 0..{(1 << 16) - 1}, not {a}")
        out = []
        step = self._max_items(FrameType.REG_READ_REQ)
        step -= step % 2
        step = max(step, 2)
        for begin in range(0, len(addresses), step):
            chunk = addresses[begin:begin + step]
            payload = b"".join(a.to_bytes(ADDRESS_BYTES, "little") for a in chunk)
            answer = self._request(FrameType.REG_READ_REQ, payload)
            if len(answer) != WORD_BYTES * len(chunk):
                raise BoardError(f"REG_READ_REQ of {len(chunk)} words was answered with "
                                 f"{len(answer)} bytes")
            out += [int.from_bytes(answer[i:i + WORD_BYTES], "little")
                    for i in range(0, len(answer), WORD_BYTES)]
        return out

    def read(self, names):
        """``{name: value}`` of the registers ``names`` (a list), read in one pass."""
        regs = [self.registers[name] for name in names]
        return decode_registers(regs, self.read_words([a for reg in regs for a in reg.addresses]))

    def get(self, name):
        """The value of register ``name``."""
        return self.read([name])[name]

    def write(self, values):
        """Write ``{name: value}`` in order. Values the map refuses raise ``ValueError``
        (naming register and value) before anything is sent; a write the board refuses
        raises :class:`RegisterRefused` naming it (the writes before it took effect)."""
        items = []
        for name, value in values.items():
            reg = self.registers[name]
            for address, word in zip(reg.addresses, reg.encode(value), strict=True):
                items.append((reg.name, value, address, word))
        step = self._max_items(FrameType.REG_WRITE_REQ)
        step = max(step - step % 2, 2)
        for begin in range(0, len(items), step):
            chunk = items[begin:begin + step]
            payload = b"".join(a.to_bytes(ADDRESS_BYTES, "little") +
                               w.to_bytes(WORD_BYTES, "little") for _, _, a, w in chunk)
            answer = self._request(FrameType.REG_WRITE_REQ, payload)
            if len(answer) != len(chunk):
                raise BoardError(f"REG_WRITE_REQ of {len(chunk)} words was answered with "
                                 f"{len(answer)} bytes")
            for (name, value, address, _), status in zip(chunk, answer, strict=True):
                if status == STATUS_REFUSED:
                    raise RegisterRefused(f"The board refused {name} = {value} "
                                          f"(word {address:#06x})")
                if status != STATUS_WRITTEN:
                    raise BoardError(f"Unknown write status {status} for {name}")

    def set(self, name, value):
        """Write one register (see :meth:`write`)."""
        self.write({name: value})

    def strobe(self, name):
        """Pulse a strobe register (write 1)."""
        if self.registers[name].access != "strobe":
            raise ValueError(f"Register {name} is {self.registers[name].access}, not a strobe")
        self.write({name: 1})

    def regs(self):
        """``{name: value}`` of every register but the clear-on-read ``write_errors``."""
        return self.read([reg.name for reg in self.registers
                          if reg.access not in ("rc", "strobe")])

    def counters(self):
        """``{name: value}`` of the status registers (``ro`` registers with a port)."""
        return self.read([reg.name for reg in self.registers
                          if reg.access == "ro" and reg.port is not None])

    def data_phy(self):
        """The state of the PHY that puts the board's data outputs on its pins (Alice's
        serializer word, Bob's gate words): ``{"data_phy_ready": 0 or 1, "data_phy_errors":
        n}`` (see the registers' docs: on pin registers ready is always 1 and errors 0), or
        ``{}`` for a board whose map has no such registers (gateware before them)."""
        return self.read([reg.name for reg in self.registers
                          if reg.name.startswith("data_phy_")])

    def histogram(self):
        """Bob's phase histogram, ``(channels, bins)`` uint64, read bin by bin through
        ``histogram_channel``, ``histogram_bin`` and ``histogram_data``."""
        self._need("bob", "histograms")
        channels = self.params["channels"]
        bins = self.params.get("histogram_period", 1) * self.params["uis_per_symbol"]
        out = np.zeros((channels, bins), np.uint64)
        for channel in range(channels):
            for b in range(bins):
                self.write({"histogram_channel": channel, "histogram_bin": b})
                out[channel, b] = self.get("histogram_data")
        return out

    def _need(self, role, what):
        if self.role != role:
            raise BoardError(f"{what} are {role}'s; this board is {self.role}")

    # --- streams -------------------------------------------------------------------------

    def poll(self, timeout=0.0):
        """Read and sort what the board sent within ``timeout`` seconds."""
        self._pump(timeout)

    def _stream(self, name, take, count, duration, idle):
        """Pump frames, calling ``take()`` (returns how many items it took) after each read,
        until ``count`` items, ``duration`` seconds or ``idle`` seconds without bytes."""
        if count is None and duration is None and idle is None:
            raise ValueError(f"Give count, duration or idle to {name}")
        total = 0
        start = last = time.monotonic()
        while True:
            got = self._pump(0.02)
            total += take()
            now = time.monotonic()
            if got:
                last = now
            if ((count is not None and total >= count)
                    or (duration is not None and now - start >= duration)
                    or (idle is not None and now - last >= idle)):
                return

    def stream_records(self, *, count=None, duration=None, idle=None):
        """Bob's detection records as they arrive: ``{field: array}`` (``index``, ``phase``,
        ``channel``, ``cls``, ``alarm``) in the order the board sent them.

        Stops once ``count`` records are in (the result may hold more: whole blocks), after
        ``duration`` seconds, or once nothing arrived for ``idle`` seconds; at least one of
        them must be given."""
        self._need("bob", "detection records")
        parts = []

        def take():
            taken = 0
            for payload, lost in self._detections:
                records = self.reassembler.feed(payload, lost)
                if len(records["index"]):
                    parts.append(records)
                    taken += len(records["index"])
            self._detections.clear()
            return taken

        self._stream("stream_records", take, count, duration, idle)
        return _concat(parts, decode_detections(np.zeros(0, np.uint32), self.params["channels"],
                                                self.params["uis_per_symbol"]))

    def stream_sifted(self, *, count=None, duration=None, idle=None):
        """A loopback board's sifted detections as they arrive: ``{field: array}`` of
        :data:`~timebin.gateware.protocol.SIFT_RESULT_FIELDS`, in the order sent. Stops as
        :meth:`stream_records` does."""
        self._need("loopback", "sifted records")
        payloads = []

        def take():
            taken = 0
            for payload in self._sifted:
                if len(payload) % SIFT_RESULT_BYTES:
                    raise BoardError(f"SIFT_RESULTS payload of {len(payload)} bytes is not "
                                     f"whole records of {SIFT_RESULT_BYTES}")
                payloads.append(payload)
                taken += len(payload) // SIFT_RESULT_BYTES
            self._sifted.clear()
            return taken

        self._stream("stream_sifted", take, count, duration, idle)
        return _unpack(b"".join(payloads), SIFT_RESULT_FIELDS, SIFT_RESULT_BYTES)

    def qber(self):
        """A loopback board's live error rates from its sifting counters: per basis
        ``{"Z": {"sifted", "errors", "qber"}, "X": ...}`` summed over intensity classes
        (``qber`` ``None`` with nothing sifted)."""
        self._need("loopback", "sifting counters")
        classes = 4
        names = [f"sift_{kind}.{e}" for kind in ("sifted", "errors") for e in range(2 * classes)]
        values = self.read(names)
        out = {}
        for b, basis in enumerate("ZX"):
            sifted = sum(values[f"sift_sifted.{b * classes + i}"] for i in range(classes))
            errors = sum(values[f"sift_errors.{b * classes + i}"] for i in range(classes))
            out[basis] = {"sifted": sifted, "errors": errors,
                          "qber": errors / sifted if sifted else None}
        return out

    def lookup(self, indices):
        """Alice's logged symbols at symbol ``indices``: ``{field: array}`` of
        :data:`~timebin.gateware.protocol.LOOKUP_RESULT_FIELDS` (``available`` 0: the memory
        no longer, or not yet, holds the symbol; its fields are then 0)."""
        self._need("alice", "symbol lookups")
        indices = np.asarray(indices, np.uint64).ravel()
        step = self._max_items(FrameType.SYMBOL_LOOKUP_REQ)
        answers = []
        for begin in range(0, len(indices), step):
            chunk = indices[begin:begin + step]
            answer = self._request(FrameType.SYMBOL_LOOKUP_REQ, chunk.astype("<u8").tobytes())
            if len(answer) != LOOKUP_RESULT_BYTES * len(chunk):
                raise BoardError(f"SYMBOL_LOOKUP_REQ of {len(chunk)} indices was answered "
                                 f"with {len(answer)} bytes")
            answers.append(answer)
        out = _unpack(b"".join(answers), LOOKUP_RESULT_FIELDS, LOOKUP_RESULT_BYTES)
        if len(out["index"]) and not np.array_equal(out["index"], indices):
            raise BoardError("Symbol lookups were answered for other indices")
        return out

    def link_stats(self):
        """The link's statistics: the host decoder's counters, frames lost in sequence
        gaps, stale responses, the record stream's losses, and the board's link counters."""
        stats = self.decoder.stats.as_dict()
        stats.update(lost_frames=self.lost_frames, stale_responses=self.stale_responses,
                     alarms=len(self.alarms))
        if self.reassembler is not None:
            stats.update(blocks=self.reassembler.blocks,
                         blocks_lost=self.reassembler.blocks_lost,
                         words_dropped=self.reassembler.words_dropped)
        stats["board"] = self.read([reg.name for reg in self.registers
                                    if reg.name.startswith("link_")])
        return stats
