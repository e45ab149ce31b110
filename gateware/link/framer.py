"""The framer and deframer of the board-host link: frames of :mod:`timebin.gateware.frames`
to and from a byte stream, with their CRCs computed a byte per cycle.

Ref: the frame format, its sequence numbers and its two checks are those of
:mod:`timebin.gateware.frames` (the CRC-32 of ISO/IEC 8802-3 = IEEE 802.3 clause 3.2.9, the
header check of ITU-T I.432.1 section 7.3.2); the deframer resynchronises as
:class:`timebin.host.frames.FrameDecoder` does. Nothing here restates the format: the field
widths, the sync word and the CRC parameters are imported.
"""

import functools

from amaranth.hdl import (
    Cat,
    Const,
    Module,
    Mux,
    ResetSignal,
    Signal,
    unsigned,
)
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from ..common import check_int, count_saturating, refuses_quietly
from ..frames import (
    CRC32_INIT,
    CRC32_POLY,
    CRC32_RESIDUE,
    CRC32_XOROUT,
    HEADER_BYTES,
    HEADER_CHECK_XOROUT,
    HEADER_FIELDS,
    MAX_PAYLOAD,
    OVERHEAD_BYTES,
    SEQ_MODULUS,
    SYNC,
    TRAILER_BYTES,
    header_check_bitwise,
)
from .dsp import accumulator_dsp

__all__ = ["FrameStart", "FrameHeader", "COUNTER_BITS", "HEADER_QUEUE_DEPTH",
           "check_max_payload", "check_timeout", "check_counter_bits", "check_queue_depth",
           "check_crc_ram", "check_counters", "DSP_COUNTER_BITS",
           "count_events", "EventCounters", "Framer", "Deframer"]

_FIELD_BYTES = dict(HEADER_FIELDS)
# The fields the header check covers: those between the sync word and the check, in order.
_CHECKED = tuple(name for name, _ in HEADER_FIELDS[1:-1])
assert HEADER_FIELDS[0] == ("sync", len(SYNC)) and HEADER_FIELDS[-1][0] == "header_check"
assert set(_CHECKED) == {"type", "seq", "length"} and _FIELD_BYTES["header_check"] == 1
assert SEQ_MODULUS == 1 << (8 * _FIELD_BYTES["seq"])
_CHECKED_BYTES = sum(_FIELD_BYTES[name] for name in _CHECKED)

#: What a frame source gives the :class:`Framer` to start a frame: its type code and its
#: payload length in bytes (the frame's ``type`` and ``length`` fields).
FrameStart = data.StructLayout({name: 8 * _FIELD_BYTES[name] for name in ("type", "length")})
#: The header of a frame the :class:`Deframer` delivers: type code, sequence number and
#: payload length in bytes.
FrameHeader = data.StructLayout({name: 8 * _FIELD_BYTES[name] for name in _CHECKED})

#: Width of the saturating counters (their ports and registers).
COUNTER_BITS = 32
#: Headers of checked frames the deframer holds while their payloads wait to be read.
HEADER_QUEUE_DEPTH = 4


def check_max_payload(max_payload):
    """Check a framer's or deframer's ``max_payload``, ``1 .. MAX_PAYLOAD``."""
    check_int("Largest payload", max_payload, minimum=1, maximum=MAX_PAYLOAD)


def check_counter_bits(counter_bits):
    """Check the width of a link block's counters, ``1 .. COUNTER_BITS``."""
    check_int("Link counter width", counter_bits, minimum=1, maximum=COUNTER_BITS)


def check_queue_depth(queue_depth):
    """Check a deframer's ``queue_depth``, ``1 .. HEADER_QUEUE_DEPTH``."""
    check_int("Deframer header queue depth", queue_depth, minimum=1,
              maximum=HEADER_QUEUE_DEPTH)


def check_crc_ram(crc_ram):
    """Check a framer's or deframer's ``crc_ram``, a bool."""
    if not isinstance(crc_ram, bool):
        raise TypeError(f"crc_ram must be a bool, not {crc_ram!r}")


def count_events(m, port, condition, counter_bits):
    """Add to ``m``: ``port`` (``COUNTER_BITS`` wide) counts the cycles where ``condition``
    holds, saturating, in a counter of ``counter_bits`` bits.

    With ``counter_bits == len(port)`` this is :func:`count_saturating` on the port. A
    narrower counter (a small FPGA's) sticks at its own maximum ``2**counter_bits - 1``,
    which the port shows zero-extended: the host, which reads ``counter_bits`` in the board's
    description, takes that value as "at least", as it takes all ones of a full-width
    counter. (Showing all ones instead would put the "full" flag on every upper bit of the
    register bank's read multiplexer.) Call it outside any ``m.If`` or FSM state (it wires
    the port), or use :class:`EventCounters`."""
    if counter_bits == len(port):
        count_saturating(m, port, condition)
        return
    counter = Signal(counter_bits, name=f"{port.name}_narrow")
    count_saturating(m, counter, condition)
    _show_narrow(m, port, counter)


def _show_narrow(m, port, counter):
    m.d.comb += port.eq(counter)


#: Widest counter an iCE40 DSP (``SB_MAC16``) half holds: :class:`EventCounters`.
DSP_COUNTER_BITS = 16


def check_counters(counter_bits, counter_dsp):
    """Check a link block's ``counter_bits`` (``1 .. COUNTER_BITS``) and ``counter_dsp`` (a
    bool; then at most ``DSP_COUNTER_BITS``)."""
    check_counter_bits(counter_bits)
    if not isinstance(counter_dsp, bool):
        raise TypeError(f"counter_dsp must be a bool, not {counter_dsp!r}")
    if counter_dsp and counter_bits > DSP_COUNTER_BITS:
        raise ValueError(f"A DSP counter holds at most {DSP_COUNTER_BITS} bits, not "
                         f"{counter_bits}")


class EventCounters:
    """The saturating counters of a block, as :func:`count_events` makes them, or (``dsp``)
    two to an iCE40 ``SB_MAC16`` in its two independent 16-bit accumulators, so that a
    counter takes no logic cell but its "full" compare: the same port values in the same
    cycles.

    Each half of an :func:`~timebin.gateware.link.dsp.accumulator_dsp` adds one unless held,
    and loads 0 on the domain's reset, as a logic-cell counter resets.

    Call :meth:`count` where :func:`count_events` would be called (inside the same
    ``m.If``/FSM contexts), then :meth:`finish` once. ``dsp`` needs ``counter_bits <=
    DSP_COUNTER_BITS`` and an iCE40 (or a simulator with the ``SB_MAC16`` model: the
    Amaranth simulator has none).
    """

    def __init__(self, m, counter_bits, *, dsp=False):
        check_counters(counter_bits, dsp)
        self.m = m
        self.counter_bits = counter_bits
        self.dsp = dsp
        self._wired = []
        self._queued = []

    def count(self, port, condition):
        """Count the cycles where ``condition`` holds (in the current context) in ``port``."""
        m, bits = self.m, self.counter_bits
        if bits == len(port):
            count_saturating(m, port, condition)
        elif not self.dsp:
            counter = Signal(bits, name=f"{port.name}_narrow")
            count_saturating(m, counter, condition)
            self._wired.append((port, counter))
        else:
            event = Signal(name=f"{port.name}_event")
            m.d.comb += event.eq(condition)
            self._queued.append((port, event))

    def finish(self):
        """Wire the ports of narrow counters and add the DSPs of the queued ones: outside
        any ``m.If`` or FSM state."""
        m, bits = self.m, self.counter_bits
        wired, self._wired = self._wired, []
        for port, counter in wired:
            _show_narrow(m, port, counter)
        queued, self._queued = self._queued, []
        for k in range(0, len(queued), 2):
            pair = queued[k:k + 2]
            out = Signal(32, name=f"{pair[0][0].name}_dsp")
            holds = []
            for port, event in pair:
                value = out[16 * len(holds):][:bits]
                full = value == (1 << bits) - 1
                hold = Signal(name=f"{port.name}_hold")
                m.d.comb += [hold.eq(~(event & ~full)), port.eq(value)]
                holds.append(hold)
            if len(holds) == 1:
                holds.append(Const(1))          # the unused top half stays 0
            accumulator_dsp(m, f"{pair[0][0].name}_dsp", out, hold=tuple(holds),
                            load=ResetSignal())


def check_timeout(timeout):
    """Check a deframer's ``timeout``: ``None`` or a positive number of cycles."""
    if timeout is not None:
        check_int("Deframer timeout in cycles", timeout, minimum=1, maximum=1 << 32)


# --- CRCs as XOR networks ----------------------------------------------------------------

def _linear_rows(function, in_bits, out_bits):
    """The GF(2)-linear ``function`` of ``in_bits``-bit integers as one input mask per
    output bit: output bit ``o`` is the parity of the input bits of mask ``o``."""
    images = [function(1 << i) for i in range(in_bits)]
    return tuple(sum(((images[i] >> o) & 1) << i for i in range(in_bits))
                 for o in range(out_bits))


def _apply_rows(rows, value):
    return Cat(*((value & mask).xor() if mask else Const(0, 1) for mask in rows))


def _crc32_register_step(register, byte):
    """One byte through the CRC-32 register, as :func:`timebin.gateware.frames.crc32_bitwise`
    defines it (without preset and final complement, which makes it linear)."""
    register ^= byte
    for _ in range(8):
        register = (register >> 1) ^ (CRC32_POLY if register & 1 else 0)
    return register


_CRC32_ROWS = _linear_rows(lambda x: _crc32_register_step(x & 0xFFFF_FFFF, x >> 32), 40, 32)
#: The CRC-32 register after the sync word (the deframer starts from it once it found one).
_CRC32_AFTER_SYNC = functools.reduce(_crc32_register_step, SYNC, CRC32_INIT)
#: The CRC-32 register after a whole good frame, trailer included.
_CRC32_GOOD_REGISTER = CRC32_RESIDUE ^ CRC32_XOROUT
# The header check without its final XOR is linear in the checked bytes (register preset 0).
_HEADER_CHECK_ROWS = _linear_rows(
    lambda x: header_check_bitwise(x.to_bytes(_CHECKED_BYTES, "little")) ^ HEADER_CHECK_XOROUT,
    8 * _CHECKED_BYTES, 8)


def _crc32_step(register, byte):
    """The CRC-32 ``register`` (32 bits) after ``byte`` (8 bits), a combinational value."""
    return _apply_rows(_CRC32_ROWS, Cat(register, byte))


# --- the CRC-32 from a table in block RAM ------------------------------------------------
# The register after a byte is (register >> 8) ^ TABLE[(register ^ byte) & 0xFF] (the
# table-driven CRC of Sarwate, CACM 31(8), 1988), with TABLE[i] the register 0 after byte i.
_CRC32_TABLE = tuple(_crc32_register_step(0, i) for i in range(256))
assert all(_crc32_register_step(r, b) == (r >> 8) ^ _CRC32_TABLE[(r ^ b) & 0xFF]
           for r in (0, 1, 0x8000_0000, 0xDEAD_BEEF, CRC32_INIT) for b in (0, 1, 0x80, 0xA5))
assert _CRC32_TABLE[0] == 0
# The top bytes of the entries are a permutation of 0..255, so a byte's step lands on a given
# register value for exactly one table index.
assert sorted(entry >> 24 for entry in _CRC32_TABLE) == list(range(256))


class _TableCRC32:
    """A CRC-32 register kept as ``rest ^ entry``: ``rest`` a register, ``entry`` the
    synchronous read of the table (a 256 x 32 block RAM), so that the table is read a cycle
    after its index is known and no XOR network is needed. :attr:`value` is the register's
    value in every cycle exactly as a plain register stepped with :func:`_crc32_step`:
    drive :attr:`step` (with :attr:`byte`) to step it, :attr:`load` to set it to
    ``preset`` (``load`` wins), neither to hold it."""

    def __init__(self, m, name, preset):
        table = Memory(shape=32, depth=256, init=_CRC32_TABLE)
        m.submodules[f"{name}_table"] = table
        read = table.read_port()
        # ``rest`` is the preset after a load, and a 24-bit value after a step: its top byte
        # is one bit of state.
        rest = Signal(24, name=f"{name}_rest", init=preset & 0xFF_FFFF)
        loaded = Signal(name=f"{name}_loaded", init=1)
        self.step = Signal(name=f"{name}_step")
        self.load = Signal(name=f"{name}_load")
        self.byte = Signal(8, name=f"{name}_byte")
        self.value = Signal(32, name=f"{name}_value")
        m.d.comb += [
            self.value.eq(Cat(rest, Mux(loaded, preset >> 24, 0)) ^ read.data),
            # Entry 0 is 0: a preset loads ``rest`` alone.
            read.addr.eq(Mux(self.load, 0, (self.value ^ self.byte)[:8])),
            read.en.eq(self.step | self.load),
        ]
        with m.If(self.load):
            m.d.sync += [rest.eq(preset & 0xFF_FFFF), loaded.eq(1)]
        with m.Elif(self.step):
            m.d.sync += [rest.eq(self.value[8:]), loaded.eq(0)]

    def steps_to(self, target):
        """Whether stepping the register with :attr:`byte` gives ``target``: a compare on
        the register and the byte (the table's entry comes a cycle late)."""
        index = next(i for i, entry in enumerate(_CRC32_TABLE) if entry >> 24 == target >> 24)
        rest = (target ^ _CRC32_TABLE[index]) & 0xFF_FFFF
        return (self.value[8:] == rest) & ((self.value[:8] ^ self.byte) == index)


def _header_check(fields):
    """The header check byte of ``fields``: the checked header bytes, first byte lowest."""
    return _apply_rows(_HEADER_CHECK_ROWS, fields) ^ HEADER_CHECK_XOROUT


# --- framer ------------------------------------------------------------------------------

class Framer(wiring.Component):
    """Turn frame starts and payload bytes into frames on ``bytes``.

    A frame source offers a :data:`FrameStart` (type code and payload ``length``) on
    ``start``, then exactly ``length`` bytes on ``payload``; it may offer the payload bytes
    at any time, the framer takes them as it sends them. The framer sends
    ``encode_frame(type, seq, payload)`` of :mod:`timebin.gateware.frames` on ``bytes``:
    sync word, header with this framer's sequence number ``seq`` and the header check, the
    payload, the CRC-32 of all of it. ``seq`` is 0 after reset and counts the frames sent,
    modulo ``SEQ_MODULUS``. The type code is sent as given (a code that is no ``FrameType``
    reaches the host, which counts it as unknown).

    A start with ``length`` above ``max_payload`` is refused: no frame is sent, the
    sequence number does not advance, its ``length`` payload bytes are taken and dropped, and
    it is counted in ``oversize`` (saturating).

    Timing: ``start`` is taken in a cycle where the framer is idle (``ready`` does not depend
    on ``valid``). ``bytes`` is a register: ``valid`` and ``payload`` do not depend on
    ``ready`` in the same cycle. With ``bytes.ready`` and ``payload.valid`` always high, a
    start taken in cycle ``c`` shows the frame's bytes in cycles ``c + 2 ..``, one a cycle,
    and the next start can be taken in the cycle the last byte is shown: a frame of ``L``
    payload bytes every ``L + OVERHEAD_BYTES + 1`` cycles. The payload bytes pass through
    the output register, so a stall on either side stalls the other.

    Parameters
    ----------
    max_payload : int
        Longest payload the framer sends, 1 .. ``MAX_PAYLOAD``.
    counter_bits : int
        Width of the counters behind ``frames`` and ``oversize`` (see :func:`count_events`).
    crc_ram : bool
        Compute the CRC-32 from a table in a block RAM (256 x 32 bits) instead of an XOR
        network: the same bytes in the same cycles, for a small FPGA.
    counter_dsp : bool
        The counters in iCE40 DSPs (:class:`EventCounters`; ``counter_bits`` at most 16).

    Members
    -------
    start : In(stream.Signature(FrameStart))
        Type and payload length of the next frame.
    payload : In(stream.Signature(8))
        The payload bytes of the frames, in order.
    bytes : Out(stream.Signature(8))
        The frames.
    seq : Out(16)
        The sequence number of the next frame.
    frames : Out(32)
        Frames sent (counted as their last byte is shown), saturating.
    oversize : Out(32)
        Starts refused for a length above ``max_payload``, saturating.
    """

    @refuses_quietly
    def __init__(self, *, max_payload=MAX_PAYLOAD, counter_bits=COUNTER_BITS, crc_ram=False,
                 counter_dsp=False):
        check_max_payload(max_payload)
        check_counters(counter_bits, counter_dsp)
        check_crc_ram(crc_ram)
        self.counter_dsp = counter_dsp
        self.max_payload = max_payload
        self.counter_bits = counter_bits
        self.crc_ram = crc_ram
        super().__init__({
            "start": In(stream.Signature(FrameStart)),
            "payload": In(stream.Signature(8)),
            "bytes": Out(stream.Signature(8)),
            "seq": Out(8 * _FIELD_BYTES["seq"]),
            "frames": Out(COUNTER_BITS),
            "oversize": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        start, payload, out = self.start, self.payload, self.bytes
        # Payload bytes left to send (or drop); while the header is sent, the frame's length.
        remaining = Signal(FrameStart["length"].shape)
        header = {"type": Signal(FrameStart["type"].shape, name="type"),
                  "seq": self.seq,
                  "length": remaining}
        position = Signal(range(max(HEADER_BYTES, TRAILER_BYTES)))
        if self.crc_ram:
            table_crc = _TableCRC32(m, "crc", CRC32_INIT)
            crc = table_crc.value
        else:
            crc = Signal(32, init=CRC32_INIT)
        load = ~out.valid | out.ready
        refused = Signal()
        sent = Signal()

        fields = Cat(*(header[name] for name in _CHECKED))
        header_bytes = [Const(byte, 8) for byte in SYNC]
        header_bytes += [fields[8 * i:8 * i + 8] for i in range(_CHECKED_BYTES)]
        header_bytes += [_header_check(fields)]
        header_byte = Signal(8)
        with m.Switch(position):
            for i, value in enumerate(header_bytes):
                with m.Case(i):
                    m.d.comb += header_byte.eq(value)
        # The trailer: the CRC-32, little-endian (frames module), from the frozen register.
        trailer_byte = (crc ^ CRC32_XOROUT).word_select(position[:2], 8)

        def send(value):
            m.d.sync += [out.valid.eq(1), out.payload.eq(value)]
            if self.crc_ram:
                m.d.comb += [table_crc.step.eq(1), table_crc.byte.eq(value)]
            else:
                m.d.sync += crc.eq(_crc32_step(crc, value))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += start.ready.eq(1)
                with m.If(load):
                    m.d.sync += out.valid.eq(0)
                with m.If(start.valid):
                    length = start.payload.length
                    m.d.sync += [
                        header["type"].eq(start.payload.type),
                        remaining.eq(length),
                        position.eq(0),
                    ]
                    if self.crc_ram:
                        m.d.comb += table_crc.load.eq(1)
                    else:
                        m.d.sync += crc.eq(CRC32_INIT)
                    with m.If(length > self.max_payload):
                        m.d.comb += refused.eq(1)
                        m.next = "DROP"
                    with m.Else():
                        m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(load):
                    send(header_byte)
                    m.d.sync += position.eq(position + 1)
                    with m.If(position == HEADER_BYTES - 1):
                        m.d.sync += position.eq(0)
                        with m.If(header["length"] == 0):
                            m.next = "TRAILER"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += payload.ready.eq(load)
                with m.If(load):
                    with m.If(payload.valid):
                        send(payload.payload)
                        m.d.sync += remaining.eq(remaining - 1)
                        with m.If(remaining == 1):
                            m.next = "TRAILER"
                    with m.Else():
                        m.d.sync += out.valid.eq(0)
            with m.State("TRAILER"):
                with m.If(load):
                    m.d.sync += [
                        out.valid.eq(1),
                        out.payload.eq(trailer_byte),
                        position.eq(position + 1),
                    ]
                    with m.If(position == TRAILER_BYTES - 1):
                        m.d.comb += sent.eq(1)
                        m.d.sync += self.seq.eq(self.seq + 1)      # wraps: SEQ_MODULUS
                        m.next = "IDLE"
            with m.State("DROP"):
                m.d.comb += payload.ready.eq(1)
                with m.If(load):
                    m.d.sync += out.valid.eq(0)
                with m.If(payload.valid):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining == 1):
                        m.next = "IDLE"
        counters = EventCounters(m, self.counter_bits, dsp=self.counter_dsp)
        counters.count(self.frames, sent)
        counters.count(self.oversize, refused)
        counters.finish()
        return m


# --- deframer ----------------------------------------------------------------------------

class Deframer(wiring.Component):
    """Find the frames in ``bytes`` and deliver those that pass both checks.

    The deframer reads the byte stream as :class:`timebin.host.frames.FrameDecoder` does: it
    hunts for the sync word; at one, it checks the header (its check byte, then ``length <=
    max_payload``), then the CRC-32 once the whole frame is in. A frame that passes both is
    delivered and the hunt resumes after it; on any failed check the hunt resumes at the byte
    after the failed sync word, never after the length it claimed (the start of a good frame
    may lie inside it). The bytes after a sync word are kept in a buffer for that. So, for a
    stream the host decoder would read without :meth:`~FrameDecoder.flush` and with no
    payload longer than ``max_payload``, the deframer delivers the same frames; unlike the
    host it delivers frames of every type code and leaves the sequence numbers to its reader
    to check, and it counts failed frames as follows.

    Counters (saturating):

    - ``frames``: frames delivered (queued for ``header``).
    - ``header_errors``: sync words whose header check failed.
    - ``oversize``: good headers claiming more than ``max_payload`` bytes (the host counts
      only those above ``MAX_PAYLOAD``, and checks the CRC of the others).
    - ``crc_errors``: frames whose header passed and whose CRC-32 failed; these include the
      frames cut short by a restarted sender, which the host counts apart as ``truncated``.
    - ``truncated``: frames given up after ``timeout`` cycles without a byte, as the host's
      ``flush`` gives them up (``timeout=None``: never given up; a frame cut short then waits
      for the bytes that follow it to make up its length, and fails its CRC).

    A delivered frame appears as its :data:`FrameHeader` on ``header``; once that is taken,
    its ``length`` payload bytes follow on ``payload``; the next header is offered from the
    cycle after the last payload byte is taken. Both are registers or FIFO outputs, their
    ``valid`` and ``payload`` independent of ``ready``.

    Buffer and backpressure: the buffer (:attr:`buffer_depth` bytes, the smallest power of
    two holding two frames of ``max_payload``) keeps the bytes from the current candidate
    sync word on, and the payloads of delivered frames until read; up to
    ``queue_depth`` delivered frames wait for ``header`` (with that many waiting, the
    checker waits before the last byte of the next good frame). ``bytes.ready`` is low
    while the buffer is full (a delivered payload not read, or a candidate frame waiting for
    its bytes fills it): a source that cannot wait, a :class:`UARTRx`, then counts overruns.
    The deframer checks a byte per cycle; after a failed check it spends a cycle going back,
    then re-reads the bytes since the failed sync word, so, on a link carrying a byte every
    few cycles (a UART), it keeps up unless garbage fills the buffer with headers that pass
    their check.

    Parameters
    ----------
    max_payload : int
        Longest payload delivered, 1 .. ``MAX_PAYLOAD``; sets the buffer size.
    timeout : int or None
        Cycles without a byte after which a frame whose header passed is given up, or
        ``None``.
    counter_bits : int
        Width of the counters (see :func:`count_events`).
    queue_depth : int
        Delivered frames the header queue holds, 1 .. ``HEADER_QUEUE_DEPTH`` (the default).
    crc_ram : bool
        As :class:`Framer`'s: the same decisions in the same cycles.
    counter_dsp : bool
        As :class:`Framer`'s.

    Members
    -------
    bytes : In(stream.Signature(8))
        The byte stream from the link.
    header : Out(stream.Signature(FrameHeader))
        Headers of the delivered frames.
    payload : Out(stream.Signature(8))
        Payload bytes of the delivered frames, in order.
    frames, header_errors, oversize, crc_errors, truncated : Out(32)
        The counters above.
    """

    @refuses_quietly
    def __init__(self, *, max_payload=64, timeout=None, counter_bits=COUNTER_BITS,
                 queue_depth=HEADER_QUEUE_DEPTH, crc_ram=False, counter_dsp=False):
        check_max_payload(max_payload)
        check_timeout(timeout)
        check_counters(counter_bits, counter_dsp)
        self.counter_dsp = counter_dsp
        check_queue_depth(queue_depth)
        check_crc_ram(crc_ram)
        self.crc_ram = crc_ram
        self.max_payload = max_payload
        self.timeout = timeout
        self.counter_bits = counter_bits
        self.queue_depth = queue_depth
        #: Bytes the buffer holds.
        self.buffer_depth = 1 << ceil_log2(2 * (max_payload + OVERHEAD_BYTES))
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "header": Out(stream.Signature(FrameHeader)),
            "payload": Out(stream.Signature(8)),
            "frames": Out(COUNTER_BITS),
            "header_errors": Out(COUNTER_BITS),
            "oversize": Out(COUNTER_BITS),
            "crc_errors": Out(COUNTER_BITS),
            "truncated": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.buffer_depth
        address_bits = ceil_log2(depth)
        # Buffer positions count modulo 2 * depth, so that a full buffer differs from an
        # empty one.
        position = unsigned(address_bits + 1)

        m.submodules.buffer = buffer = Memory(shape=8, depth=depth, init=[])
        write = buffer.write_port()
        scan_read = buffer.read_port(transparent_for=(write,))
        out_read = buffer.read_port()

        entry = data.StructLayout({
            "type": FrameHeader["type"].shape,
            "seq": FrameHeader["seq"].shape,
            "length": bits_for(self.max_payload),
            "start": position,
        })
        m.submodules.queue = queue = fifo.SyncFIFO(width=entry.size, depth=self.queue_depth)
        head = Signal(entry)
        m.d.comb += head.eq(queue.r_data)

        wr = Signal(position)       # where the next byte from the link goes
        scan = Signal(position)     # the next byte to check
        base = Signal(position)     # the candidate sync word (or partial match) being checked
        tail = Signal(position)     # the oldest byte still needed
        out_rd = Signal(position)   # the next payload byte to read out
        remaining = Signal(range(self.max_payload + 1))     # payload bytes left to read out

        # --- link side: bytes into the buffer ---
        used = Signal(position)
        m.d.comb += [
            used.eq(wr - tail),
            self.bytes.ready.eq(used != depth),
            write.addr.eq(wr[:address_bits]),
            write.data.eq(self.bytes.payload),
            write.en.eq(self.bytes.valid & self.bytes.ready),
        ]
        with m.If(write.en):
            m.d.sync += wr.eq(wr + 1)

        # --- checker: reads a byte per cycle at ``scan``, through a read port that already
        # shows ``buffer[scan]`` (its address is the next ``scan``) ---
        available = scan != wr
        byte = scan_read.data
        consume = Signal()
        rewind = Signal()           # resume the hunt after the sync word at ``base`` ...
        # ... in the next cycle, in which the checker does nothing else: the failed check
        # (a block-RAM read, a CRC or header compare) ends at this register, not at the
        # buffer's read address.
        rewinding = Signal()
        m.d.sync += rewinding.eq(rewind)
        scan_next = Signal(position)
        m.d.comb += [
            scan_next.eq(Mux(rewinding, base + 1, Mux(consume, scan + 1, scan))),
            scan_read.addr.eq(scan_next[:address_bits]),
        ]
        m.d.sync += scan.eq(scan_next)
        with m.If(rewinding):
            m.d.sync += base.eq(base + 1)

        if self.crc_ram:
            table_crc = _TableCRC32(m, "crc", _CRC32_AFTER_SYNC)
            m.d.comb += [table_crc.step.eq(consume), table_crc.byte.eq(byte)]
            crc_good = table_crc.steps_to(_CRC32_GOOD_REGISTER)
        else:
            crc = Signal(32)
            crc_next = _crc32_step(crc, byte)
            with m.If(consume):
                m.d.sync += crc.eq(crc_next)
            crc_good = crc_next == _CRC32_GOOD_REGISTER

        def crc_after_sync():
            if self.crc_ram:
                m.d.comb += table_crc.load.eq(1)
            else:
                m.d.sync += crc.eq(_CRC32_AFTER_SYNC)

        matched = Signal(range(len(SYNC)))          # sync bytes matched before ``scan``
        match = Signal(range(len(SYNC) + 1))        # ... and with ``byte``
        fields = Signal(8 * _CHECKED_BYTES)         # checked header bytes, first one lowest
        got = data.View(FrameHeader, fields)
        field = Signal(range(_CHECKED_BYTES + 1))
        trailer = Signal(range(TRAILER_BYTES))
        count = Signal(range(self.max_payload + 1))     # a length that passed the check
        last_trailer = trailer == TRAILER_BYTES - 1
        bad_header = Signal()
        bad_length = Signal()
        bad_crc = Signal()
        good = Signal()
        gave_up = Signal()

        # The sync word overlaps no shifted copy of itself, so after a mismatch the only
        # partial match left is the byte itself as its first byte (frames module).
        with m.Switch(matched):
            for i in range(len(SYNC)):
                with m.Case(i):
                    m.d.comb += match.eq(Mux(byte == SYNC[i], i + 1,
                                             Mux(byte == SYNC[0], 1, 0)))

        waited = Signal(range(self.timeout or 1))

        def give_up_when_idle():
            if self.timeout is None:
                return
            with m.If(available):
                m.d.sync += waited.eq(0)
            with m.Elif(waited == self.timeout - 1):
                m.d.comb += [gave_up.eq(1), rewind.eq(1)]
                m.d.sync += waited.eq(0)
                m.next = "HUNT"
            with m.Else():
                m.d.sync += waited.eq(waited + 1)

        with m.FSM(name="checker"):
            with m.State("HUNT"):
                m.d.comb += consume.eq(available & ~rewinding)
                with m.If(available & ~rewinding):
                    m.d.sync += base.eq(scan + 1 - match)
                    with m.If(match == len(SYNC)):
                        m.d.sync += [matched.eq(0), field.eq(0)]
                        crc_after_sync()
                        m.next = "HEADER"
                    with m.Else():
                        m.d.sync += matched.eq(match)
            with m.State("HEADER"):
                m.d.comb += consume.eq(available)
                with m.If(available):
                    m.d.sync += field.eq(field + 1)
                    with m.If(field != _CHECKED_BYTES):
                        m.d.sync += fields.eq(Cat(fields[8:], byte))
                    with m.Elif(byte != _header_check(fields)):
                        m.d.comb += [bad_header.eq(1), rewind.eq(1)]
                        m.next = "HUNT"
                    with m.Elif(got.length > self.max_payload):
                        m.d.comb += [bad_length.eq(1), rewind.eq(1)]
                        m.next = "HUNT"
                    with m.Else():
                        m.d.sync += [count.eq(got.length), trailer.eq(0), waited.eq(0)]
                        with m.If(got.length == 0):
                            m.next = "TRAILER"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += consume.eq(available)
                with m.If(available):
                    m.d.sync += count.eq(count - 1)
                    with m.If(count == 1):
                        m.next = "TRAILER"
                give_up_when_idle()
            with m.State("TRAILER"):
                # The last byte waits for room in the header queue.
                m.d.comb += consume.eq(available & (~last_trailer | queue.w_rdy))
                with m.If(consume):
                    m.d.sync += trailer.eq(trailer + 1)
                    with m.If(last_trailer):
                        with m.If(crc_good):
                            m.d.comb += good.eq(1)
                            m.d.sync += base.eq(scan + 1)
                        with m.Else():
                            m.d.comb += [bad_crc.eq(1), rewind.eq(1)]
                        m.next = "HUNT"
                give_up_when_idle()

        entry_in = Signal(entry)
        m.d.comb += [
            entry_in.type.eq(got.type),
            entry_in.seq.eq(got.seq),
            entry_in.length.eq(got.length),
            entry_in.start.eq(base + HEADER_BYTES),
            queue.w_data.eq(entry_in),
            queue.w_en.eq(good),
        ]

        # --- delivery: header from the queue, then the payload from the buffer ---
        header, payload = self.header, self.payload
        m.d.comb += [
            header.valid.eq(queue.r_rdy & (remaining == 0) & ~payload.valid),
            header.payload.type.eq(head.type),
            header.payload.seq.eq(head.seq),
            header.payload.length.eq(head.length),
            queue.r_en.eq(header.valid & header.ready),
        ]
        with m.If(queue.r_en):
            m.d.sync += [out_rd.eq(head.start), remaining.eq(head.length)]
        load = ~payload.valid | payload.ready
        m.d.comb += [
            out_read.addr.eq(out_rd[:address_bits]),
            out_read.en.eq(load),
            payload.payload.eq(out_read.data),
        ]
        with m.If(load):
            m.d.sync += payload.valid.eq(remaining != 0)
            with m.If(remaining != 0):
                m.d.sync += [out_rd.eq(out_rd + 1), remaining.eq(remaining - 1)]

        # Delivered payloads lie before the candidate at ``base``, oldest first.
        m.d.comb += tail.eq(Mux(remaining != 0, out_rd, Mux(queue.r_rdy, head.start, base)))

        counters = EventCounters(m, self.counter_bits, dsp=self.counter_dsp)
        for counter, event in ((self.frames, good), (self.header_errors, bad_header),
                               (self.oversize, bad_length), (self.crc_errors, bad_crc),
                               (self.truncated, gave_up)):
            counters.count(counter, event)
        counters.finish()
        return m
