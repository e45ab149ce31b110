"""The board end of the host link's protocol (:mod:`timebin.gateware.protocol`): a request
engine between the deframer and the register bus (and Alice's symbol memory), a frame
multiplexer in front of the framer, the packetizer of Bob's compressed record stream, and
the alarm reporter.

Ref: the payload formats are those of :mod:`timebin.gateware.protocol`; the frame starts and
headers are :data:`~timebin.gateware.link.framer.FrameStart` and
:data:`~timebin.gateware.link.framer.FrameHeader`. Nothing here restates a format.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import check_int, count_saturating, refuses_quietly
from ..frames import MAX_PAYLOAD, FrameType
from ..protocol import (
    ALARM_BYTES,
    ITEM_BYTES,
    LOOKUP_RESULT_FIELDS,
    NO_BLOCK_START,
    POINTER_BYTES,
    RESPONSE_OF,
    STATUS_REFUSED,
    STATUS_WRITTEN,
)
from ..records import HEADER_WORDS, INDEX_BITS
from ..regbank import RegisterBusSignature
from .framer import COUNTER_BITS, EventCounters, FrameHeader, FrameStart, check_counters

__all__ = ["BUS_ADDRESS_BITS", "CLOSED_FRAMES", "LinkController", "FrameMux", "FrameGatherer",
           "DetectionPacketizer", "AlarmReporter", "ItemPacketizer"]

#: Width of the register addresses of the protocol (``ADDRESS_BYTES``): the bus of a board
#: is this wide, so that an address beyond the map is unmapped (read 0, write refused), never
#: an alias of a mapped one.
BUS_ADDRESS_BITS = 16

#: Closed frames a packetizer holds while the mux serves others.
CLOSED_FRAMES = 4

_READ, _WRITE, _LOOKUP = (FrameType.REG_READ_REQ, FrameType.REG_WRITE_REQ,
                          FrameType.SYMBOL_LOOKUP_REQ)
_RESPONSE_BIT = 0x80
assert all(response == request | _RESPONSE_BIT for request, response in RESPONSE_OF.items())
_ITEM_IN_MAX = max(size for size, _ in ITEM_BYTES.values())
_ITEM_OUT_MAX = max(size for _, size in ITEM_BYTES.values())


class LinkController(wiring.Component):
    """Execute the host's requests and answer each with one response frame.

    Takes a delivered frame's header from ``header`` and its payload from ``payload`` (a
    :class:`~timebin.gateware.link.framer.Deframer`'s outputs) and, for a request of
    :mod:`timebin.gateware.protocol`, offers the response's start on ``start`` (type and
    length known from the request's length) and then its payload on ``response``. After an
    item request's header is taken, its length is divided by the item size, a quotient bit a
    cycle (16 cycles), and the request accepted or refused in the next cycle: a latency that
    is nothing beside the link's byte time and keeps the check off the critical path. Items are
    executed one at a time, in order: the item's bytes are collected (one a cycle while
    ``payload`` offers them), then

    * a register read: ``bus.re`` with the address for one cycle; the ``rdata`` of the next
      cycle is the item's answer;
    * a register write: ``bus.we`` with address and word for one cycle; ``bus.werr`` in the
      next cycle gives the status byte;
    * a symbol lookup: the index on ``lookup`` until taken, then the ``result`` taken;

    and the answer's bytes are offered on ``response``, LSB first. So consecutive items are
    at least three cycles apart on the bus. A description request is answered with the
    ``description`` bytes (a ROM). A refused request (see the protocol) is drained, counted
    in ``bad_requests`` and, for a known request type, answered with an empty response;
    frames of other types (the board's own types echoed, unknown codes) are drained and
    counted in ``bad_requests`` without an answer. ``requests`` counts the headers taken.

    Parameters
    ----------
    description : bytes
        What a ``DESCRIBE_REQ`` is answered with, 1 .. ``MAX_PAYLOAD`` bytes.
    lookups : bool
        Whether the board has a symbol memory (Alice): then ``lookup`` and ``result`` exist;
        otherwise a lookup request is refused.
    counter_bits : int
        Width of the counters behind ``requests`` and ``bad_requests``
        (:func:`~timebin.gateware.link.framer.count_events`).
    description_ram : bool
        Read the description from a block RAM (a synchronous read port addressed with the
        next byte's address) instead of logic (an asynchronous read): the same bytes in the
        same cycles, for a small FPGA where a few hundred bytes of ROM in LUTs cost more
        than one of its block RAMs.
    counter_dsp : bool
        The counters in an iCE40 DSP
        (:class:`~timebin.gateware.link.framer.EventCounters`).

    Members
    -------
    header : In(stream.Signature(FrameHeader))
    payload : In(stream.Signature(8))
        The delivered request frames.
    start : Out(stream.Signature(FrameStart))
    response : Out(stream.Signature(8))
        The response frames, for a framer (through a :class:`FrameMux`).
    bus : Out(RegisterBusSignature(BUS_ADDRESS_BITS))
        The register bus (initiator side).
    lookup : Out(stream.Signature(64))
    result : In(stream.Signature(LookupResult))
        The symbol memory's lookup port (``lookups=True`` only).
    requests, bad_requests : Out(32)
        Saturating counters.
    """

    @refuses_quietly
    def __init__(self, *, description, lookups=False, counter_bits=COUNTER_BITS,
                 description_ram=False, counter_dsp=False):
        if not isinstance(description, (bytes, bytearray)):
            raise TypeError(f"Board description must be bytes, not {description!r}")
        check_int("Board description length", len(description), minimum=1,
                  maximum=MAX_PAYLOAD)
        if not isinstance(lookups, bool):
            raise TypeError(f"lookups must be a bool, not {lookups!r}")
        check_counters(counter_bits, counter_dsp)
        if not isinstance(description_ram, bool):
            raise TypeError(f"description_ram must be a bool, not {description_ram!r}")
        self.description = bytes(description)
        self.lookups = lookups
        self.counter_bits = counter_bits
        self.counter_dsp = counter_dsp
        self.description_ram = description_ram
        members = {
            "header": In(stream.Signature(FrameHeader)),
            "payload": In(stream.Signature(8)),
            "start": Out(stream.Signature(FrameStart)),
            "response": Out(stream.Signature(8)),
            "bus": Out(RegisterBusSignature(BUS_ADDRESS_BITS)),
            "requests": Out(COUNTER_BITS),
            "bad_requests": Out(COUNTER_BITS),
        }
        if lookups:
            from ..tx.symbol_memory import LookupResult
            assert LookupResult.size == sum(w for _, w in LOOKUP_RESULT_FIELDS)
            assert [name for name, _ in LookupResult] == [name for name, _ in LOOKUP_RESULT_FIELDS]
            members["lookup"] = Out(stream.Signature(INDEX_BITS))
            members["result"] = In(stream.Signature(LookupResult))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        header, payload, start, response, bus = (self.header, self.payload, self.start,
                                                 self.response, self.bus)
        length_shape = FrameHeader["length"].shape
        kind = Signal(8)                        # request type being executed
        items = Signal(length_shape)            # items left to execute
        item_in = Signal(8 * _ITEM_IN_MAX)      # request item, byte 0 lowest
        item_out = Signal(8 * _ITEM_OUT_MAX)    # answer, byte 0 lowest, shifted out
        count = Signal(length_shape)            # bytes left to collect / emit / drain
        out_bytes = Signal(range(_ITEM_OUT_MAX + 1))
        in_bytes = Signal(range(_ITEM_IN_MAX + 1))
        # The response type of the request: every response type is its request's with bit 7
        # set (protocol), so it needs no register of its own.
        reply = kind | _RESPONSE_BIT
        reply_length = Signal(length_shape)
        answer = Signal()                       # a refused request is answered empty
        remainder = Signal(range(_ITEM_IN_MAX))  # of the length divided by the item size
        step = Signal(range(len(items)))        # quotient bits left to find, less one
        frame_fits = Signal()                   # the length is not 0, its answers fit a frame

        counters = EventCounters(m, self.counter_bits, dsp=self.counter_dsp)
        rom = Memory(shape=8, depth=len(self.description), init=self.description)
        m.submodules.rom = rom
        rom_address = Signal(range(len(self.description) + 1))
        rom_next = Signal.like(rom_address)     # ``rom_address`` of the next cycle
        m.d.comb += rom_next.eq(rom_address)
        m.d.sync += rom_address.eq(rom_next)
        if self.description_ram:
            # Addressed a cycle ahead, the registered read shows ``rom[rom_address]``.
            rom_read = rom.read_port()
            m.d.comb += rom_read.addr.eq(rom_next)
        else:
            rom_read = rom.read_port(domain="comb")
            m.d.comb += rom_read.addr.eq(rom_address)

        in_size = {t: size for t, (size, _) in ITEM_BYTES.items()}
        out_size = {t: size for t, (_, size) in ITEM_BYTES.items()}
        served = [_READ, _WRITE] + ([_LOOKUP] if self.lookups else [])

        m.d.comb += bus.addr.eq(item_in[:BUS_ADDRESS_BITS])
        m.d.comb += bus.wdata.eq(item_in[8 * 2:8 * 6])

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += header.ready.eq(1)
                with m.If(header.valid):
                    counters.count(self.requests, 1)
                    length = header.payload.length
                    m.d.sync += [kind.eq(header.payload.type), count.eq(length),
                                 answer.eq(0)]
                    with m.Switch(header.payload.type):
                        for request in served:
                            with m.Case(request):
                                # The item count and the checks take the next cycles: a
                                # divide in one cycle would be the board's critical path.
                                m.d.sync += [in_bytes.eq(in_size[request]),
                                             out_bytes.eq(out_size[request]),
                                             items.eq(length), remainder.eq(0),
                                             reply_length.eq(0), step.eq(len(items) - 1)]
                                m.next = "DIVIDE"
                        with m.Case(FrameType.DESCRIBE_REQ):
                            m.d.sync += [reply_length.eq(len(self.description))]
                            m.d.comb += rom_next.eq(0)
                            with m.If(length == 0):
                                m.next = "START"
                            with m.Else():
                                m.d.sync += [answer.eq(1), reply_length.eq(0)]
                                m.next = "DRAIN"
                        if not self.lookups:
                            with m.Case(_LOOKUP):
                                m.d.sync += [answer.eq(1), reply_length.eq(0)]
                                m.next = "DRAIN"
                        with m.Default():
                            m.next = "DRAIN"

            with m.State("DIVIDE"):
                # Restoring division of the length by the item size, a quotient bit a cycle,
                # MSB first: ``items`` shifts the length's bits out at the top and the
                # quotient's in at the bottom; the response length (quotient times the
                # answer's size) accumulates alongside, by Horner's rule.
                trial = Cat(items[-1], remainder)
                subtract = trial >= in_bytes
                m.d.sync += [items.eq(Cat(subtract, items[:-1])),
                             remainder.eq(Mux(subtract, trial - in_bytes, trial)),
                             reply_length.eq((reply_length << 1) + Mux(subtract, out_bytes, 0)),
                             step.eq(step - 1)]
                # n = length // size answers fit one frame while n <= MAX_PAYLOAD // out,
                # that is while length < (MAX_PAYLOAD // out + 1) * size: checked on the
                # length (held in ``count``), off the path of the decision.
                with m.Switch(kind):
                    for request in served:
                        with m.Case(request):
                            bound = (MAX_PAYLOAD // out_size[request] + 1) * in_size[request]
                            m.d.sync += frame_fits.eq((count != 0) & (count < bound))
                with m.If(step == 0):
                    m.next = "DECIDE"

            with m.State("DECIDE"):
                # A whole number n >= 1 of items whose n answers fit one frame.
                with m.If(frame_fits & (remainder == 0)):
                    m.next = "START"
                with m.Else():
                    m.d.sync += [answer.eq(1), reply_length.eq(0)]
                    m.next = "DRAIN"

            with m.State("DRAIN"):
                m.d.comb += payload.ready.eq(count != 0)
                with m.If(payload.valid & (count != 0)):
                    m.d.sync += count.eq(count - 1)
                with m.If((count == 0) | ((count == 1) & payload.valid)):
                    counters.count(self.bad_requests, 1)
                    with m.If(answer):
                        m.next = "START"
                    with m.Else():
                        m.next = "IDLE"

            with m.State("START"):
                m.d.comb += [start.valid.eq(1), start.payload.type.eq(reply),
                             start.payload.length.eq(reply_length)]
                with m.If(start.ready):
                    m.d.sync += count.eq(in_bytes)
                    with m.If(reply_length == 0):
                        m.next = "IDLE"
                    with m.Elif(kind == FrameType.DESCRIBE_REQ):
                        m.next = "DESCRIBE"
                    with m.Else():
                        m.next = "COLLECT"

            with m.State("DESCRIBE"):
                m.d.comb += [response.valid.eq(1), response.payload.eq(rom_read.data)]
                with m.If(response.ready):
                    m.d.comb += rom_next.eq(rom_address + 1)
                    with m.If(rom_address == len(self.description) - 1):
                        m.next = "IDLE"

            with m.State("COLLECT"):
                m.d.comb += payload.ready.eq(1)
                with m.If(payload.valid):
                    # Bytes enter at the top of the item register and shift down, so after
                    # the item's last byte its byte 0 is at the bottom.
                    m.d.sync += [item_in.eq(Cat(item_in[8:], payload.payload)),
                                 count.eq(count - 1)]
                    with m.If(count == 1):
                        m.next = "ALIGN"

            with m.State("ALIGN"):
                # Shift the collected item down to bit 0 (items shorter than the register).
                with m.Switch(in_bytes):
                    for size in set(in_size.values()):
                        with m.Case(size):
                            m.d.sync += item_in.eq(item_in[8 * (_ITEM_IN_MAX - size):])
                m.next = "ACT"

            with m.State("ACT"):
                with m.Switch(kind):
                    with m.Case(_READ):
                        m.d.comb += bus.re.eq(1)
                        m.next = "WAIT"
                    with m.Case(_WRITE):
                        m.d.comb += bus.we.eq(1)
                        m.next = "WAIT"
                    if self.lookups:
                        with m.Case(_LOOKUP):
                            m.d.comb += [self.lookup.valid.eq(1),
                                         self.lookup.payload.eq(item_in[:INDEX_BITS])]
                            with m.If(self.lookup.ready):
                                m.next = "WAIT"

            with m.State("WAIT"):
                m.d.sync += count.eq(out_bytes)
                with m.Switch(kind):
                    with m.Case(_READ):
                        m.d.sync += item_out.eq(bus.rdata)
                        m.next = "EMIT"
                    with m.Case(_WRITE):
                        m.d.sync += item_out.eq(Const(STATUS_WRITTEN, 8) |
                                                (bus.werr * STATUS_REFUSED))
                        m.next = "EMIT"
                    if self.lookups:
                        with m.Case(_LOOKUP):
                            m.d.comb += self.result.ready.eq(1)
                            m.d.sync += item_out.eq(self.result.payload.as_value())
                            with m.If(self.result.valid):
                                m.next = "EMIT"

            with m.State("EMIT"):
                m.d.comb += [response.valid.eq(1), response.payload.eq(item_out[:8])]
                with m.If(response.ready):
                    m.d.sync += [item_out.eq(item_out >> 8), count.eq(count - 1)]
                    with m.If(count == 1):
                        m.d.sync += [items.eq(items - 1), count.eq(in_bytes)]
                        with m.If(items == 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "COLLECT"
        counters.finish()
        return m


class FrameMux(wiring.Component):
    """Share one framer among ``sources`` frame sources, a whole frame at a time.

    Each source ``s`` offers a frame start on ``start_s`` and then exactly ``length`` bytes on
    ``payload_s``, as a :class:`~timebin.gateware.link.framer.Framer` takes them. While idle,
    the mux passes the start of the lowest-numbered source offering one (source 0 has the
    highest priority: give it the host's responses), then that source's payload bytes until
    ``length`` have passed; other sources wait. Starts and bytes pass combinationally.

    Members
    -------
    start_0 .. : In(stream.Signature(FrameStart))
    payload_0 .. : In(stream.Signature(8))
    start : Out(stream.Signature(FrameStart))
    payload : Out(stream.Signature(8))
        To the framer.
    """

    @refuses_quietly
    def __init__(self, sources):
        check_int("Frame source count", sources, minimum=1, maximum=16)
        self.sources = sources
        members = {}
        for s in range(sources):
            members[f"start_{s}"] = In(stream.Signature(FrameStart))
            members[f"payload_{s}"] = In(stream.Signature(8))
        members["start"] = Out(stream.Signature(FrameStart))
        members["payload"] = Out(stream.Signature(8))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        starts = [getattr(self, f"start_{s}") for s in range(self.sources)]
        payloads = [getattr(self, f"payload_{s}") for s in range(self.sources)]
        selected = Signal(range(self.sources))
        remaining = Signal(FrameStart["length"].shape)
        with m.FSM():
            with m.State("IDLE"):
                # Only the winner sees ready: a waiting source must not take its start as
                # accepted while another's frame goes out.
                for s in range(self.sources):                # the lowest source wins
                    with (m.If if s == 0 else m.Elif)(starts[s].valid):
                        m.d.comb += [self.start.valid.eq(1),
                                     self.start.payload.eq(starts[s].payload),
                                     starts[s].ready.eq(self.start.ready)]
                        with m.If(self.start.ready):
                            m.d.sync += selected.eq(s)
                with m.If(self.start.valid & self.start.ready):
                    m.d.sync += remaining.eq(self.start.payload.length)
                    with m.If(self.start.payload.length != 0):
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.Switch(selected):
                    for s in range(self.sources):
                        with m.Case(s):
                            m.d.comb += [self.payload.valid.eq(payloads[s].valid),
                                         self.payload.payload.eq(payloads[s].payload),
                                         payloads[s].ready.eq(self.payload.ready)]
                with m.If(self.payload.valid & self.payload.ready):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining == 1):
                        m.next = "IDLE"
        return m


class FrameGatherer(wiring.Component):
    """Queue a frame source's items and cut them into frames: the frame formation shared by
    :class:`DetectionPacketizer` and :class:`ItemPacketizer`.

    Items taken from ``items`` (one a cycle while ``items.ready``) are offered, in order, on
    ``queued`` (a queue of ``2 * max_items``), and counted into the open frame, which holds
    ``in_frame`` of them. The frame closes when it holds ``max_items`` items (in the cycle
    its last item is taken), or when it holds at least one, no item was taken for
    ``timeout`` cycles (0 acts as 1) and the queue of closed frames has room: then
    ``closing`` is high, and its item count and ``info`` (the owner's per-frame value, as in
    that cycle) are queued on ``closed`` (up to :data:`CLOSED_FRAMES`). ``items.ready`` is
    low while either queue is full.

    Parameters
    ----------
    item_bits : int
    max_items : int
    info_bits : int
        Width of ``info``; 0: no ``info``, and ``closed`` carries the count alone.

    Members
    -------
    items : In(stream.Signature(item_bits))
    timeout : In(16)
    info : In(info_bits)
    queued : Out(stream.Signature(item_bits))
    closed : Out(stream.Signature(StructLayout({"count": ..., "info": info_bits})))
        ``count`` is ``bits_for(max_items)`` wide. Both read sides are those of
        ``SyncFIFOBuffered`` (its ``r_rdy``, ``r_data``, ``r_en``): the payload shown while
        ``valid`` is low is the last one read.
    in_frame : Out(range(max_items + 1))
    closing : Out(1)
    """

    @refuses_quietly
    def __init__(self, *, item_bits, max_items, info_bits=0):
        check_int("Item width", item_bits, minimum=1)
        check_int("Items per frame", max_items, minimum=1)
        check_int("Frame info width", info_bits, minimum=0)
        self.max_items = max_items
        fields = {"count": bits_for(max_items)}
        if info_bits:
            fields["info"] = info_bits
        members = {
            "items": In(stream.Signature(item_bits)),
            "timeout": In(16),
            "queued": Out(stream.Signature(item_bits)),
            "closed": Out(stream.Signature(data.StructLayout(fields))),
            "in_frame": Out(range(max_items + 1)),
            "closing": Out(1),
        }
        if info_bits:
            members["info"] = In(info_bits)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        N = self.max_items
        items, queued, closed = self.items, self.queued, self.closed
        m.submodules.item_fifo = item_fifo = fifo.SyncFIFOBuffered(
            width=len(items.payload), depth=2 * N)
        m.submodules.closed_fifo = closed_fifo = fifo.SyncFIFOBuffered(
            width=closed.payload.shape().size, depth=CLOSED_FRAMES)
        m.d.comb += [queued.valid.eq(item_fifo.r_rdy), queued.payload.eq(item_fifo.r_data),
                     item_fifo.r_en.eq(queued.ready),
                     closed.valid.eq(closed_fifo.r_rdy), closed.payload.eq(closed_fifo.r_data),
                     closed_fifo.r_en.eq(closed.ready)]

        in_frame, idle, take = self.in_frame, Signal(16), Signal()
        m.d.comb += [items.ready.eq(item_fifo.w_rdy & closed_fifo.w_rdy),
                     take.eq(items.valid & items.ready),
                     item_fifo.w_en.eq(take), item_fifo.w_data.eq(items.payload)]
        info = [self.info] if "info" in self.signature.members else []
        limit = Signal(16)
        m.d.comb += limit.eq(self.timeout | (self.timeout == 0))
        with m.If(take):
            m.d.sync += idle.eq(0)
            with m.If(in_frame == N - 1):
                m.d.comb += [self.closing.eq(1),
                             closed_fifo.w_data.eq(Cat(Const(N, bits_for(N)), *info))]
                m.d.sync += in_frame.eq(0)
            with m.Else():
                m.d.sync += in_frame.eq(in_frame + 1)
        with m.Elif(in_frame != 0):
            with m.If(idle + 1 >= limit):
                # (Always true: the closed queue fills only as a frame closes, and no item
                # is taken while it is full.)
                with m.If(closed_fifo.w_rdy):
                    count = in_frame.as_unsigned()[:bits_for(N)]
                    m.d.comb += [self.closing.eq(1), closed_fifo.w_data.eq(Cat(count, *info))]
                    m.d.sync += [in_frame.eq(0), idle.eq(0)]
            with m.Else():
                m.d.sync += idle.eq(idle + 1)
        m.d.comb += closed_fifo.w_en.eq(self.closing)
        return m


class DetectionPacketizer(wiring.Component):
    """Cut Bob's compressed record stream into ``DETECTIONS`` frames, each with the pointer
    to its first block start (:mod:`timebin.gateware.protocol`).

    Words taken from ``words`` (one a cycle while ``words.ready``) are queued, and counted
    into the frame being formed. The packetizer follows the blocks: the first word after
    reset is a block header, and header word 2 gives the block's length
    (``HEADER_WORDS + unary + fixed`` words), so it knows which words start blocks. A frame
    closes when it holds ``max_words`` words, or when it holds at least one and no word was
    taken for ``timeout`` cycles (the register ``frame_timeout``; 0 is taken as 1): a
    :class:`FrameGatherer`. Closed frames wait (up to :data:`CLOSED_FRAMES`) for the mux;
    each is offered as a start of type ``DETECTIONS`` and ``POINTER_BYTES + 4 n`` bytes, then
    its pointer and its words, LSB first.

    Backpressure: ``words.ready`` is low while the word queue (``2 * max_words``) or the queue
    of closed frames is full: the record compressor then holds its records and the receiver's
    merge FIFOs count what they cannot hold (``overflows``): a host that cannot keep up makes
    the board count and flag the loss at its source.

    Members
    -------
    words : In(stream.Signature(32))
    start : Out(stream.Signature(FrameStart))
    payload : Out(stream.Signature(8))
    timeout : In(16)
        Cycles without a word after which a non-empty frame closes.
    frames, words_framed : Out(32)
        Frames started, words sent in them (saturating).
    """

    @refuses_quietly
    def __init__(self, *, max_words=256, timeout=256):
        check_int("Words per DETECTIONS frame", max_words, minimum=1,
                  maximum=min(NO_BLOCK_START, (MAX_PAYLOAD - POINTER_BYTES) // 4))
        check_int("Frame timeout", timeout, minimum=0, maximum=(1 << 16) - 1)
        self.max_words = max_words
        super().__init__({
            "words": In(stream.Signature(32)),
            "start": Out(stream.Signature(FrameStart)),
            "payload": Out(stream.Signature(8)),
            "timeout": In(16, init=timeout),
            "frames": Out(COUNTER_BITS),
            "words_framed": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        N = self.max_words
        m.submodules.gatherer = gatherer = FrameGatherer(item_bits=32, max_items=N,
                                                         info_bits=16)
        wiring.connect(m, wiring.flipped(self.words), gatherer.items)
        m.d.comb += gatherer.timeout.eq(self.timeout)
        queue, closed = gatherer.queued, gatherer.closed

        # --- input: block tracking; the frame's pointer goes with it as it closes
        header_pos = Signal(range(HEADER_WORDS + 1))    # 0: the next word starts a block
        left = Signal(32)                                # block words after header words
        pointer = Signal(16, init=NO_BLOCK_START)
        take = self.words.valid & self.words.ready
        starts_block = (header_pos == 0) & (left == 0)
        with m.If(take):
            with m.If(starts_block):
                m.d.sync += header_pos.eq(1)
            with m.Elif(header_pos == HEADER_WORDS - 1):
                # Word 2: [0:16] unary words, [16:32] fixed words.
                m.d.sync += [header_pos.eq(0),
                             left.eq(self.words.payload[:16] + self.words.payload[16:])]
            with m.Elif(header_pos != 0):
                m.d.sync += header_pos.eq(header_pos + 1)
            with m.Else():
                m.d.sync += left.eq(left - 1)

        new_pointer = Signal(16)
        m.d.comb += new_pointer.eq(pointer)
        with m.If(take & starts_block & (pointer == NO_BLOCK_START)):
            m.d.comb += new_pointer.eq(gatherer.in_frame)
        m.d.comb += gatherer.info.eq(new_pointer)
        m.d.sync += pointer.eq(Mux(gatherer.closing, NO_BLOCK_START, new_pointer))

        # --- output: one frame per closed entry
        n_words = Signal(bits_for(N))
        out_pointer = Signal(16)
        byte = Signal(range(4))
        m.d.comb += [n_words.eq(closed.payload.count), out_pointer.eq(closed.payload.info)]
        words_left = Signal(bits_for(N))
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.start.valid.eq(closed.valid),
                             self.start.payload.type.eq(FrameType.DETECTIONS),
                             self.start.payload.length.eq(POINTER_BYTES + 4 * n_words)]
                with m.If(self.start.valid & self.start.ready):
                    count_saturating(m, self.frames, 1)
                    m.d.sync += [words_left.eq(n_words), byte.eq(0)]
                    m.next = "POINTER"
            with m.State("POINTER"):
                m.d.comb += [self.payload.valid.eq(1),
                             self.payload.payload.eq(out_pointer.word_select(byte[0], 8))]
                with m.If(self.payload.ready):
                    m.d.sync += byte.eq(byte + 1)
                    with m.If(byte == POINTER_BYTES - 1):
                        m.d.sync += byte.eq(0)
                        m.d.comb += closed.ready.eq(1)
                        m.next = "WORDS"
            with m.State("WORDS"):
                m.d.comb += [self.payload.valid.eq(queue.valid),
                             self.payload.payload.eq(queue.payload.word_select(byte, 8))]
                with m.If(self.payload.valid & self.payload.ready):
                    m.d.sync += byte.eq(byte + 1)
                    with m.If(byte == 3):
                        m.d.comb += queue.ready.eq(1)
                        count_saturating(m, self.words_framed, 1)
                        m.d.sync += words_left.eq(words_left - 1)
                        with m.If(words_left == 1):
                            m.next = "IDLE"
        return m


class AlarmReporter(wiring.Component):
    """Send an ``ALARM`` frame when a bit of ``alarms`` rises.

    A bit that is high in a cycle and was low in the cycle before makes a report pending;
    the pending report is offered as a start of type ``ALARM`` and ``ALARM_BYTES`` bytes; the
    mask sent is ``alarms`` in the cycle its start is taken (so several rises before it
    leave make one report). ``reports`` counts the frames started.

    Members
    -------
    alarms : In(width)
    start : Out(stream.Signature(FrameStart))
    payload : Out(stream.Signature(8))
    reports : Out(32)
        Counted in ``counter_bits`` bits, in a DSP with ``counter_dsp``
        (:class:`~timebin.gateware.link.framer.EventCounters`).
    """

    @refuses_quietly
    def __init__(self, width, *, counter_bits=COUNTER_BITS, counter_dsp=False):
        check_int("Alarm width", width, minimum=1, maximum=8 * ALARM_BYTES)
        check_counters(counter_bits, counter_dsp)
        self.width = width
        self.counter_bits = counter_bits
        self.counter_dsp = counter_dsp
        super().__init__({
            "alarms": In(width),
            "start": Out(stream.Signature(FrameStart)),
            "payload": Out(stream.Signature(8)),
            "reports": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        previous = Signal(self.width)
        pending = Signal()
        mask = Signal(8 * ALARM_BYTES)
        byte = Signal(range(ALARM_BYTES))
        rose = (self.alarms & ~previous).any()
        m.d.sync += previous.eq(self.alarms)
        counters = EventCounters(m, self.counter_bits, dsp=self.counter_dsp)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(rose):
                    m.d.sync += pending.eq(1)
                m.d.comb += [self.start.valid.eq(pending),
                             self.start.payload.type.eq(FrameType.ALARM),
                             self.start.payload.length.eq(ALARM_BYTES)]
                with m.If(self.start.valid & self.start.ready):
                    counters.count(self.reports, 1)
                    m.d.sync += [mask.eq(self.alarms), byte.eq(0), pending.eq(rose)]
                    m.next = "SEND"
            with m.State("SEND"):
                with m.If(rose):
                    m.d.sync += pending.eq(1)
                m.d.comb += [self.payload.valid.eq(1),
                             self.payload.payload.eq(mask.word_select(byte, 8))]
                with m.If(self.payload.ready):
                    m.d.sync += byte.eq(byte + 1)
                    with m.If(byte == ALARM_BYTES - 1):
                        m.next = "IDLE"
        counters.finish()
        return m


class ItemPacketizer(wiring.Component):
    """Gather fixed-size items (``item_bits`` wide, sent as ``ceil(item_bits / 8)`` bytes, LSB
    first) into frames of ``frame_type``: the ``SIFT_RESULTS`` of a loopback board.

    Items taken from ``items`` (one a cycle while ``items.ready``) are queued and counted
    into the frame being formed, which closes when it holds ``max_items`` items, or when it
    holds at least one and no item was taken for ``timeout`` cycles (0 acts as 1), as
    :class:`DetectionPacketizer` does (a :class:`FrameGatherer`). ``items.ready`` is low
    while the item queue (``2 * max_items``) or the queue of closed frames is full.

    Members
    -------
    items : In(stream.Signature(item_bits))
    start : Out(stream.Signature(FrameStart))
    payload : Out(stream.Signature(8))
    timeout : In(16)
    frames, items_framed : Out(32)
        Frames started, items sent in them (saturating).
    """

    @refuses_quietly
    def __init__(self, *, item_bits, frame_type, max_items=64, timeout=256):
        check_int("Item width", item_bits, minimum=1, maximum=8 * 64)
        self.item_bytes = -(-item_bits // 8)
        check_int("Items per frame", max_items, minimum=1,
                  maximum=MAX_PAYLOAD // self.item_bytes)
        check_int("Frame timeout", timeout, minimum=0, maximum=(1 << 16) - 1)
        self.item_bits = item_bits
        self.frame_type = FrameType(frame_type)
        self.max_items = max_items
        super().__init__({
            "items": In(stream.Signature(item_bits)),
            "start": Out(stream.Signature(FrameStart)),
            "payload": Out(stream.Signature(8)),
            "timeout": In(16, init=timeout),
            "frames": Out(COUNTER_BITS),
            "items_framed": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        N, B = self.max_items, self.item_bytes
        m.submodules.gatherer = gatherer = FrameGatherer(item_bits=self.item_bits, max_items=N)
        wiring.connect(m, wiring.flipped(self.items), gatherer.items)
        m.d.comb += gatherer.timeout.eq(self.timeout)
        queue, closed = gatherer.queued, gatherer.closed

        items_left = Signal(bits_for(N))
        byte = Signal(range(B))
        padded = Cat(queue.payload, Const(0, 8 * B - self.item_bits))
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.start.valid.eq(closed.valid),
                             self.start.payload.type.eq(self.frame_type),
                             self.start.payload.length.eq(B * closed.payload.count)]
                with m.If(self.start.valid & self.start.ready):
                    count_saturating(m, self.frames, 1)
                    m.d.comb += closed.ready.eq(1)
                    m.d.sync += [items_left.eq(closed.payload.count), byte.eq(0)]
                    m.next = "ITEMS"
            with m.State("ITEMS"):
                m.d.comb += [self.payload.valid.eq(queue.valid),
                             self.payload.payload.eq(padded.word_select(byte, 8))]
                with m.If(self.payload.valid & self.payload.ready):
                    m.d.sync += byte.eq(byte + 1)
                    with m.If(byte == B - 1):
                        m.d.sync += [byte.eq(0), items_left.eq(items_left - 1)]
                        m.d.comb += queue.ready.eq(1)
                        count_saturating(m, self.items_framed, 1)
                        with m.If(items_left == 1):
                            m.next = "IDLE"
        return m
