"""Cycle-exact models of the blocks of :mod:`timebin.gateware.link.controller`: the request
engine (:class:`LinkControllerModel`) and the board's frame sources, :class:`FrameMuxModel`,
:class:`DetectionPacketizerModel`, :class:`ItemPacketizerModel` and
:class:`AlarmReporterModel`, with the pieces they share: :class:`SyncFIFOBufferedModel`
(Amaranth's queue) and :class:`FrameGathererModel` (the frame formation of both packetizers,
as :class:`~timebin.gateware.link.controller.FrameGatherer` is in the gateware).

The models run one clock cycle per ``step``, as those of :mod:`timebin.sim.link.framer`: it
returns the outputs the block shows in that cycle (the combinational ones computed from the
cycle's inputs) and takes the inputs through the clock edge; ``run`` steps over per-cycle
input lists. Ports are named as in the generated Verilog (``words__valid``,
``start__payload``...); a :data:`~timebin.gateware.link.framer.FrameStart` payload is its
packed integer (:func:`~timebin.sim.link.framer.pack_start`). Every output is modelled in
every cycle, payloads too while ``valid`` is low (they show what the gateware's registers
hold), so a comparison needs no masks. Plain Python: no Amaranth simulation.

Also the stimulus of the tests: :class:`PacketizerBench` (a record or item source and a
frame sink, through phases of bursts, silences and stalls, with the ``timeout`` register
changing between them), :class:`FrameMuxBench` (frame sources competing for the mux) and
:class:`AlarmBench`; and :func:`detection_blocks`, words shaped as the compressed record
stream; for the request engine :class:`LinkControllerBench` (a deframer's requests in, a
register bank model or noise on the bus, a symbol memory with random latency, a framer's
backpressure), :func:`controller_requests` (well-formed and malformed requests) and
:func:`executed_items` and :func:`expected_responses` (what the protocol says must happen).
"""

import collections
import random

from ...gateware.frames import MAX_PAYLOAD, FrameType
from ...gateware.link.controller import BUS_ADDRESS_BITS, CLOSED_FRAMES
from ...gateware.link.framer import COUNTER_BITS
from ...gateware.protocol import (
    ALARM_BYTES,
    ITEM_BYTES,
    LOOKUP_RESULT_BYTES,
    LOOKUP_RESULT_FIELDS,
    NO_BLOCK_START,
    POINTER_BYTES,
    RESPONSE_OF,
    STATUS_REFUSED,
    STATUS_WRITTEN,
    WORD_BYTES,
)
from ...gateware.records import HEADER_WORDS
from ...gateware.regmap import WORD_BITS, Register, RegisterMap
from ..regbank import RegisterBankModel
from .framer import _run, pack_header, pack_start
from .uart import StreamSource

__all__ = ["SyncFIFOBufferedModel", "FrameGathererModel", "FrameMuxModel",
           "DetectionPacketizerModel", "ItemPacketizerModel", "AlarmReporterModel",
           "detection_blocks", "PHASES", "PacketizerBench", "FrameMuxBench", "AlarmBench",
           "QUIET_CYCLES",
           "frame_pointers",
           "RESULT_BITS", "request_accepted", "LinkControllerModel", "bench_register_map",
           "NOT_REQUESTS", "controller_requests", "executed_items", "expected_responses",
           "LinkControllerBench"]

_LENGTH_BITS = 16               # FrameStart.length, FrameHeader.length
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
_TIMEOUT_MASK = 0xFFFF          # the timeout register: 16 bits


def _saturate(value, counter_bits=COUNTER_BITS):
    """A counter's value after one more event: ``count_events`` of the gateware (a
    ``counter_bits`` counter sticks at its maximum)."""
    return min(value + 1, (1 << counter_bits) - 1)


def _bits_for(n):
    """``amaranth.utils.bits_for`` of an unsigned ``n``."""
    return max(1, n.bit_length())


class SyncFIFOBufferedModel:
    """:class:`amaranth.lib.fifo.SyncFIFOBuffered` (Amaranth 0.5) of ``depth`` entries.

    Ref: ``amaranth/lib/fifo.py``, ``SyncFIFOBuffered.elaborate``. For ``depth >= 2``: an
    inner queue of ``depth - 1`` entries whose memory has a registered (non-transparent) read
    port, and the output register (``r_data``, ``r_rdy``). ``w_rdy`` is high while the inner
    queue has room; the inner queue moves its oldest entry to the output register in a cycle
    where it holds one and the register is empty or read (``r_en``); ``r_rdy`` falls after a
    read that nothing replaces; ``r_data`` keeps its value otherwise (0 after reset). So an
    entry written to an empty queue shows two cycles later, and ``level`` (inner entries
    plus ``r_rdy``) reaches ``depth``. ``depth == 1``: one register, alternately written and
    read. Read the outputs (attributes) before :meth:`clock`.
    """

    def __init__(self, depth):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"FIFO depth must be a positive integer, not {depth!r}")
        self.depth = depth
        self.r_rdy = 0
        self.r_data = 0
        self._inner = collections.deque()

    @property
    def w_rdy(self):
        if self.depth == 1:
            return int(not self.r_rdy)
        return int(len(self._inner) != self.depth - 1)

    @property
    def level(self):
        return len(self._inner) + self.r_rdy

    def clock(self, w_en=0, w_data=0, r_en=0):
        """The clock edge, with this cycle's ``w_en``, ``w_data`` and ``r_en``."""
        do_write = bool(w_en and self.w_rdy)
        if self.depth == 1:
            if do_write:
                self.r_data, self.r_rdy = w_data, 1
            elif r_en and self.r_rdy:
                self.r_rdy = 0
            return
        if self._inner and (not self.r_rdy or r_en):
            self.r_data, self.r_rdy = self._inner.popleft(), 1
        elif r_en:
            self.r_rdy = 0
        if do_write:
            self._inner.append(w_data)


class FrameGathererModel:
    """:class:`~timebin.gateware.link.controller.FrameGatherer` (``max_items``).

    Outputs (attributes, to read before :meth:`clock`): ``items_ready``, ``in_frame``, and
    the two queues :attr:`queued` and :attr:`closed` (:class:`SyncFIFOBufferedModel`;
    ``closed`` holds ``count | info << count_bits``, as the gateware packs them).
    :meth:`clock` takes the cycle's inputs and returns whether a frame closed (the gateware's
    ``closing``).

    Members
    -------
    events : collections.Counter
        ``full`` and ``timeout`` frame closes; cycles with an item offered and refused because
        the item queue (``queue_full``) or the closed queue (``closed_full``) was full; closes
        with the ``timeout`` register at 0 and at 1 (``timeout_0``, ``timeout_1``): for tests
        to check that they reached what they meant to.
    """

    def __init__(self, max_items):
        self.max_items = max_items
        self.queued = SyncFIFOBufferedModel(2 * max_items)
        self.closed = SyncFIFOBufferedModel(CLOSED_FRAMES)
        self.count_bits = _bits_for(max_items)
        self.in_frame = 0
        self.idle = 0
        self.events = collections.Counter()

    @property
    def items_ready(self):
        return int(self.queued.w_rdy and self.closed.w_rdy)

    def clock(self, items_valid, items_payload, timeout, info=0, queued_ready=0,
              closed_ready=0):
        """The clock edge; returns whether a frame closed in this cycle."""
        N = self.max_items
        ready = self.items_ready
        take = bool(items_valid and ready)
        if items_valid and not ready:
            self.events["queue_full" if not self.queued.w_rdy else "closed_full"] += 1
        limit = (timeout & _TIMEOUT_MASK) or 1
        close = None
        if take:
            self.idle = 0
            if self.in_frame == N - 1:
                close, self.in_frame = N | info << self.count_bits, 0
                self.events["full"] += 1
            else:
                self.in_frame += 1
        elif self.in_frame != 0:
            if self.idle + 1 >= limit:
                # The closed queue always has room here: it fills only as a frame closes,
                # and no item is taken into a new frame while it is full.
                if self.closed.w_rdy:
                    close = self.in_frame | info << self.count_bits
                    self.in_frame, self.idle = 0, 0
                    self.events["timeout"] += 1
                    if timeout in (0, 1):
                        self.events[f"timeout_{timeout}"] += 1
            else:
                self.idle += 1
        self.queued.clock(take, items_payload, queued_ready)
        self.closed.clock(close is not None, close, closed_ready)
        return close is not None


class _Model:
    """What the models share: :meth:`run` over per-cycle inputs, and input defaults."""

    INPUTS = ()
    OUTPUTS = ()

    def _inputs(self, given, defaults=None):
        unknown = set(given) - set(self.INPUTS)
        if unknown:
            raise KeyError(f"{type(self).__name__} has no input(s) {sorted(unknown)}")
        values = dict.fromkeys(self.INPUTS, 0)
        values.update(defaults or {})
        values.update({name: int(value) for name, value in given.items()})
        return values

    def run(self, inputs):
        """:meth:`step` over ``n`` cycles: ``inputs`` is ``{input: n ints}`` (a missing input
        is 0, ``timeout`` its register's reset value); returns ``{output: n ints}``."""
        return _run(self, inputs)


class FrameMuxModel(_Model):
    """:class:`~timebin.gateware.link.controller.FrameMux` (``sources``) from reset.

    Inputs: ``start_{s}__valid``, ``start_{s}__payload``, ``payload_{s}__valid``,
    ``payload_{s}__payload`` of each source ``s``, ``start__ready``, ``payload__ready``.
    Outputs (all combinational): ``start_{s}__ready``, ``payload_{s}__ready``,
    ``start__valid``, ``start__payload``, ``payload__valid``, ``payload__payload``.

    Idle, the lowest source offering a start wins: its start passes, and only it sees
    ``start__ready``; a taken start of length 0 keeps the mux idle, a longer one selects
    the source for that many bytes, which pass with their ``valid`` and ``ready``. What is
    not passed reads 0.

    Members
    -------
    frames : list of (int, int)
        ``(source, packed start)`` of every start taken.
    """

    def __init__(self, sources):
        self.sources = sources
        self.INPUTS = (*(f"{kind}_{s}__{name}" for s in range(sources)
                         for kind in ("start", "payload") for name in ("valid", "payload")),
                       "start__ready", "payload__ready")
        self.OUTPUTS = (*(f"{kind}_{s}__ready" for s in range(sources)
                          for kind in ("start", "payload")),
                        "start__valid", "start__payload", "payload__valid", "payload__payload")
        self.state = "idle"
        self.selected = 0
        self.remaining = 0
        self.frames = []

    def step(self, **inputs):
        """One cycle: return ``{output: int}`` of this cycle, then take the inputs through
        the clock edge."""
        v = self._inputs(inputs)
        out = dict.fromkeys(self.OUTPUTS, 0)
        if self.state == "idle":
            winner = next((s for s in range(self.sources) if v[f"start_{s}__valid"]), None)
            if winner is not None:
                start = v[f"start_{winner}__payload"]
                out.update({"start__valid": 1, "start__payload": start,
                            f"start_{winner}__ready": v["start__ready"]})
                if v["start__ready"]:
                    self.selected = winner
                    self.frames.append((winner, start))
                    self.remaining = start >> 8
                    if self.remaining:
                        self.state = "payload"
        else:
            s = self.selected
            valid = v[f"payload_{s}__valid"]
            out.update({"payload__valid": valid, "payload__payload": v[f"payload_{s}__payload"],
                        f"payload_{s}__ready": v["payload__ready"]})
            if valid and v["payload__ready"]:
                self.remaining -= 1
                if self.remaining == 0:
                    self.state = "idle"
        return out


class DetectionPacketizerModel(_Model):
    """:class:`~timebin.gateware.link.controller.DetectionPacketizer` (``max_words``,
    ``timeout``) from reset.

    Inputs: ``words__valid``, ``words__payload``, ``start__ready``, ``payload__ready``,
    ``timeout`` (the register; its reset value when not given). Outputs, none depending on
    the cycle's inputs: ``words__ready``, ``start__valid``, ``start__payload``,
    ``payload__valid``, ``payload__payload``, ``frames``, ``words_framed``.

    Input side: a :class:`FrameGathererModel` whose per-frame ``info`` is the pointer, and
    the block tracker: from reset the next word taken starts a block; word
    ``HEADER_WORDS - 1`` of a block gives its remaining words (``[0:16] + [16:32]``), so the
    word after them starts the next block. The frame's pointer is the index in the frame of
    the first word taken that starts a block, :data:`NO_BLOCK_START` until one does.

    Output side, a closed frame at a time: idle, its start (``DETECTIONS``,
    ``POINTER_BYTES + 4 n``) is offered while the closed queue shows one (the length is
    computed from the queue's output register even while it does not); then the pointer's
    bytes, one per cycle ``payload__ready`` is high (the closed entry is read with the last),
    then each word's 4 bytes while the word queue shows it (the word is read, and counted in
    ``words_framed``, with its last byte); back to idle after the frame's last word.
    """

    INPUTS = ("words__valid", "words__payload", "start__ready", "payload__ready", "timeout")
    OUTPUTS = ("words__ready", "start__valid", "start__payload", "payload__valid",
               "payload__payload", "frames", "words_framed")

    def __init__(self, *, max_words=256, timeout=256):
        self.max_words = max_words
        self.timeout = timeout
        self.gatherer = FrameGathererModel(max_words)
        self.header_pos = 0
        self.left = 0
        self.pointer = NO_BLOCK_START
        self.state = "idle"
        self.words_left = 0
        self.byte = 0
        self.frames = 0
        self.words_framed = 0

    @property
    def events(self):
        return self.gatherer.events

    def step(self, **inputs):
        """One cycle: return ``{output: int}`` of this cycle, then take the inputs through
        the clock edge."""
        v = self._inputs(inputs, {"timeout": self.timeout})
        g = self.gatherer
        closed, queued = g.closed, g.queued
        n_words = closed.r_data & ((1 << g.count_bits) - 1)
        out_pointer = closed.r_data >> g.count_bits
        out = {"words__ready": g.items_ready, "start__valid": 0, "start__payload": 0,
               "payload__valid": 0, "payload__payload": 0, "frames": self.frames,
               "words_framed": self.words_framed}
        closed_ready = queued_ready = 0
        if self.state == "idle":
            length = (POINTER_BYTES + 4 * n_words) & _LENGTH_MASK
            out.update(start__valid=closed.r_rdy,
                       start__payload=pack_start(FrameType.DETECTIONS, length))
            if closed.r_rdy and v["start__ready"]:
                self.frames = _saturate(self.frames)
                self.words_left, self.byte = n_words, 0
                self.state = "pointer"
        elif self.state == "pointer":
            out.update(payload__valid=1,
                       payload__payload=(out_pointer >> 8 * (self.byte & 1)) & 0xFF)
            if v["payload__ready"]:
                if self.byte == POINTER_BYTES - 1:
                    self.byte, closed_ready = 0, 1
                    self.state = "words"
                else:
                    self.byte += 1
        else:
            out.update(payload__valid=queued.r_rdy,
                       payload__payload=(queued.r_data >> 8 * self.byte) & 0xFF)
            if queued.r_rdy and v["payload__ready"]:
                last = self.byte == 3
                self.byte = (self.byte + 1) % 4
                if last:
                    queued_ready = 1
                    self.words_framed = _saturate(self.words_framed)
                    self.words_left = (self.words_left - 1) % (1 << g.count_bits)
                    if self.words_left == 0:
                        self.state = "idle"

        # --- input side: block tracking and frame formation
        word = v["words__payload"]
        take = bool(v["words__valid"] and g.items_ready)
        starts_block = self.header_pos == 0 and self.left == 0
        new_pointer = self.pointer
        if take and starts_block and self.pointer == NO_BLOCK_START:
            new_pointer = g.in_frame
        if take:
            if starts_block:
                self.header_pos = 1
            elif self.header_pos == HEADER_WORDS - 1:
                self.header_pos, self.left = 0, (word & 0xFFFF) + (word >> 16)
            elif self.header_pos != 0:
                self.header_pos += 1
            else:
                self.left -= 1
        closing = g.clock(v["words__valid"], word, v["timeout"], info=new_pointer,
                          queued_ready=queued_ready, closed_ready=closed_ready)
        self.pointer = NO_BLOCK_START if closing else new_pointer
        return out


class ItemPacketizerModel(_Model):
    """:class:`~timebin.gateware.link.controller.ItemPacketizer` (``item_bits``,
    ``frame_type``, ``max_items``, ``timeout``) from reset.

    Inputs: ``items__valid``, ``items__payload``, ``start__ready``, ``payload__ready``,
    ``timeout`` (its reset value when not given). Outputs, none depending on the cycle's
    inputs: ``items__ready``, ``start__valid``, ``start__payload``, ``payload__valid``,
    ``payload__payload``, ``frames``, ``items_framed``.

    Input side: a :class:`FrameGathererModel`. Output side: idle, a closed frame's start
    (``frame_type``, ``B n`` bytes for items of ``B`` bytes) is offered while the closed
    queue shows one, and the entry is read as the start is taken; then each item's ``B``
    bytes, LSB first, while the item queue shows it (read, and counted in ``items_framed``,
    with its last byte); back to idle after the frame's last item.
    """

    INPUTS = ("items__valid", "items__payload", "start__ready", "payload__ready", "timeout")
    OUTPUTS = ("items__ready", "start__valid", "start__payload", "payload__valid",
               "payload__payload", "frames", "items_framed")

    def __init__(self, *, item_bits, frame_type, max_items=64, timeout=256):
        self.item_bits = item_bits
        self.item_bytes = -(-item_bits // 8)
        self.frame_type = int(frame_type)
        self.max_items = max_items
        self.timeout = timeout
        self.gatherer = FrameGathererModel(max_items)
        self.state = "idle"
        self.items_left = 0
        self.byte = 0
        self.frames = 0
        self.items_framed = 0

    @property
    def events(self):
        return self.gatherer.events

    def step(self, **inputs):
        """One cycle: return ``{output: int}`` of this cycle, then take the inputs through
        the clock edge."""
        v = self._inputs(inputs, {"timeout": self.timeout})
        g = self.gatherer
        closed, queued = g.closed, g.queued
        count = closed.r_data
        out = {"items__ready": g.items_ready, "start__valid": 0, "start__payload": 0,
               "payload__valid": 0, "payload__payload": 0, "frames": self.frames,
               "items_framed": self.items_framed}
        closed_ready = queued_ready = 0
        if self.state == "idle":
            length = (self.item_bytes * count) & _LENGTH_MASK
            out.update(start__valid=closed.r_rdy,
                       start__payload=pack_start(self.frame_type, length))
            if closed.r_rdy and v["start__ready"]:
                self.frames = _saturate(self.frames)
                closed_ready = 1
                self.items_left, self.byte = count, 0
                self.state = "items"
        else:
            out.update(payload__valid=queued.r_rdy,
                       payload__payload=(queued.r_data >> 8 * self.byte) & 0xFF)
            if queued.r_rdy and v["payload__ready"]:
                if self.byte == self.item_bytes - 1:
                    self.byte = 0
                    queued_ready = 1
                    self.items_framed = _saturate(self.items_framed)
                    self.items_left = (self.items_left - 1) % (1 << g.count_bits)
                    if self.items_left == 0:
                        self.state = "idle"
                else:
                    self.byte += 1
        g.clock(v["items__valid"], v["items__payload"], v["timeout"],
                queued_ready=queued_ready, closed_ready=closed_ready)
        return out


class AlarmReporterModel(_Model):
    """:class:`~timebin.gateware.link.controller.AlarmReporter` (``width``) from reset.

    Inputs: ``alarms``, ``start__ready``, ``payload__ready``. Outputs, none depending on the
    cycle's inputs: ``start__valid``, ``start__payload``, ``payload__valid``,
    ``payload__payload``, ``reports``.

    A bit of ``alarms`` high in a cycle and low in the cycle before (low before the first
    cycle) makes a report pending. Idle, the start (``ALARM``, ``ALARM_BYTES``) is shown,
    valid while a report is pending; as it is taken the mask is ``alarms`` of that cycle
    and the report stays pending only if a bit rises in that cycle. Then the mask's bytes,
    LSB first, one per cycle ``payload__ready`` is high; rises meanwhile make a report
    pending.

    Members
    -------
    masks : list of int
        The mask of every report started.
    """

    INPUTS = ("alarms", "start__ready", "payload__ready")
    OUTPUTS = ("start__valid", "start__payload", "payload__valid", "payload__payload",
               "reports")

    def __init__(self, width, *, counter_bits=COUNTER_BITS):
        self.width = width
        self.counter_bits = counter_bits
        self.previous = 0
        self.pending = 0
        self.mask = 0
        self.byte = 0
        self.state = "idle"
        self.reports = 0
        self.masks = []
        self._byte_modulus = 1 << (ALARM_BYTES - 1).bit_length()

    def step(self, **inputs):
        """One cycle: return ``{output: int}`` of this cycle, then take the inputs through
        the clock edge."""
        v = self._inputs(inputs)
        alarms = v["alarms"] & ((1 << self.width) - 1)
        rose = bool(alarms & ~self.previous)
        out = {"start__valid": 0, "start__payload": 0, "payload__valid": 0,
               "payload__payload": 0, "reports": self.reports}
        self.previous = alarms
        if self.state == "idle":
            out.update(start__valid=self.pending,
                       start__payload=pack_start(FrameType.ALARM, ALARM_BYTES))
            if self.pending and v["start__ready"]:
                self.reports = _saturate(self.reports, self.counter_bits)
                self.mask, self.byte, self.pending = alarms, 0, int(rose)
                self.masks.append(alarms)
                self.state = "send"
            elif rose:
                self.pending = 1
        else:
            out.update(payload__valid=1, payload__payload=(self.mask >> 8 * self.byte) & 0xFF)
            if rose:
                self.pending = 1
            if v["payload__ready"]:
                last = self.byte == ALARM_BYTES - 1
                self.byte = (self.byte + 1) % self._byte_modulus
                if last:
                    self.state = "idle"
        return out


# --- stimulus ------------------------------------------------------------------------------

def detection_blocks(rng, n_blocks, *, max_section=6, long_rate=0.05, long_words=40):
    """Words shaped as the compressed record stream, for the block tracker of a
    :class:`DetectionPacketizer`: ``n_blocks`` blocks of ``HEADER_WORDS`` header words
    (word 2 holding the unary and fixed section lengths, ``0 .. max_section`` words each,
    with probability ``long_rate`` up to ``long_words``) and that many random words.
    Returns ``(words, starts)``: ``starts`` the index of each block's first word."""
    words, starts = [], []
    for _ in range(n_blocks):
        top = long_words if rng.random() < long_rate else max_section
        unary, fixed = rng.randint(0, top), rng.randint(0, top)
        starts.append(len(words))
        header = [rng.getrandbits(32) for _ in range(HEADER_WORDS)]
        header[2] = unary | fixed << 16
        words += header + [rng.getrandbits(32) for _ in range(unary + fixed)]
    return words, starts


def frame_pointers(frames, starts):
    """The ``(pointer, words)`` each ``DETECTIONS`` frame must carry when its words are cut, in
    order, from a stream whose blocks start at ``starts``: ``frames`` gives the word count of
    each frame."""
    out, at, starts = [], 0, sorted(starts)
    for n in frames:
        first = next((s - at for s in starts if at <= s < at + n), NO_BLOCK_START)
        out.append((first, n))
        at += n
    return out


#: Phases of a :class:`PacketizerBench`: ``(gap rate of the source, ready rate of start and
#: payload, whether the sink stalls)``.
PHASES = {
    "burst": (0.05, 0.95, False),       # frames fill up to max_items
    "sparse": (0.85, 0.9, False),       # frames close on the timeout
    "stall": (0.1, 0.0, True),          # the item queue fills: items refused
    "stall_sparse": (0.9, 0.0, True),   # short frames fill the closed queue
    "random": (0.5, 0.5, False),
    "silence": (1.0, 0.7, False),
}


class PacketizerBench:
    """A :class:`DetectionPacketizer` or :class:`ItemPacketizer` driven one cycle at a time:
    ``items`` offered on ``source`` (``"words"`` or ``"items"``), and the frames taken, through
    random phases (:data:`PHASES`) of 20 to ``phase_cycles`` cycles; at each phase the
    ``timeout`` register takes a value from ``timeouts``. Once every item was offered, the
    sink takes everything (``drain``). ``seed`` seeds everything.

    Per cycle: :meth:`drive` gives the inputs (named as the models' ``INPUTS``);
    :meth:`advance` takes the outputs of the same cycle (the models' ``OUTPUTS``).

    Members
    -------
    frames : list of (int, int, bytes)
        ``(type, length, payload)`` of the frames taken so far (the last may be partial).
    phases : collections.Counter
        Cycles spent in each phase.
    """

    def __init__(self, items, seed, *, source="words", timeouts=(0, 1, 2, 3, 7, 20),
                 phase_cycles=300):
        self.rng = random.Random(seed)
        self.source_name = source
        self.items = StreamSource(items, self.rng)
        self.timeouts = tuple(timeouts)
        self.phase_cycles = phase_cycles
        self.frames = []
        self.phases = collections.Counter()
        self._left = 0
        self._phase = None
        self._timeout = self.timeouts[0]
        self._ready = {}
        self._taking = None       # [type, length, bytearray] of the frame being taken

    def _next_phase(self):
        if self.items.done:
            self._phase = "drain"
            self._left = 1 << 30
            self.items.gap_rate, self._rates = 1.0, (1.0, False)
            return
        self._phase = self.rng.choice(tuple(PHASES))
        gap, rate, stall = PHASES[self._phase]
        self.items.gap_rate, self._rates = gap, (rate, stall)
        self._left = self.rng.randint(20, self.phase_cycles)
        self._timeout = self.rng.choice(self.timeouts)

    def drive(self):
        if self._left == 0 or (self._phase != "drain" and self.items.done):
            self._next_phase()
        self._left -= 1
        self.phases[self._phase] += 1
        rate, stall = self._rates
        self._ready = {name: 0 if stall else int(self.rng.random() < rate)
                       for name in ("start", "payload")}
        valid, payload = self.items.drive()
        s = self.source_name
        return {f"{s}__valid": valid, f"{s}__payload": payload,
                "start__ready": self._ready["start"], "payload__ready": self._ready["payload"],
                "timeout": self._timeout}

    def advance(self, outputs):
        self.items.advance(outputs[f"{self.source_name}__ready"])
        if outputs["start__valid"] and self._ready["start"]:
            assert self._taking is None or len(self._taking[2]) == self._taking[1], \
                "a start was offered before the frame before was sent"
            start = outputs["start__payload"]
            self._taking = [start & 0xFF, start >> 8, bytearray()]
            self.frames.append(self._taking)
        if outputs["payload__valid"] and self._ready["payload"]:
            assert self._taking is not None and len(self._taking[2]) < self._taking[1], \
                "a payload byte beyond the frame's length"
            self._taking[2].append(outputs["payload__payload"])

    @property
    def done(self):
        """Whether every item was taken and every frame started was sent whole."""
        return self.items.done and all(len(p) == n for _, n, p in self.frames)

    def delivered(self):
        """``(type, length, payload)`` of the frames taken."""
        return [(t, n, bytes(p)) for t, n, p in self.frames]


class FrameMuxBench:
    """Frame sources competing for a :class:`FrameMux`, one cycle at a time: source ``s``
    offers the starts of ``frames[s]`` (``(type, payload)``, payloads of any length including
    0) and, independently, its payload bytes, each with idle cycles (``gap_rate``); the mux's
    outputs are taken with random ``ready`` (``ready_rate``) and stalls of 5..60 cycles
    (``stall_rate`` per cycle). ``seed`` seeds everything.

    Per cycle: :meth:`drive` gives the inputs (the model's ``INPUTS``); :meth:`advance` takes
    the outputs of the same cycle.

    Members
    -------
    out : list of (int, int, bytearray)
        ``(type, length, payload)`` of the frames that left the mux (the last may be partial).
    taken : list of int
        The source of each start taken.
    """

    def __init__(self, frames, seed, *, gap_rate=0.3, ready_rate=0.7, stall_rate=0.01):
        self.rng = rng = random.Random(seed)
        self.sources = len(frames)
        self.frames = [list(f) for f in frames]
        self.starts = [StreamSource([pack_start(t, len(p)) for t, p in f], rng, gap_rate)
                       for f in frames]
        self.bytes = [StreamSource([b for _, p in f for b in p], rng, gap_rate)
                      for f in frames]
        self.ready_rate, self.stall_rate = ready_rate, stall_rate
        self.out = []
        self.taken = []
        self._stall = {"start": 0, "payload": 0}
        self._ready = {}

    def _ready_bit(self, name):
        if self._stall[name]:
            self._stall[name] -= 1
            return 0
        if self.rng.random() < self.stall_rate:
            self._stall[name] = self.rng.randint(5, 60)
        return int(self.rng.random() < self.ready_rate)

    def drive(self):
        inputs = {}
        for s in range(self.sources):
            for kind, source in (("start", self.starts[s]), ("payload", self.bytes[s])):
                valid, payload = source.drive()
                inputs[f"{kind}_{s}__valid"], inputs[f"{kind}_{s}__payload"] = valid, payload
        self._ready = {name: self._ready_bit(name) for name in ("start", "payload")}
        inputs.update(start__ready=self._ready["start"], payload__ready=self._ready["payload"])
        return inputs

    def advance(self, outputs):
        for s in range(self.sources):
            if self.starts[s].advance(outputs[f"start_{s}__ready"]) is not None:
                self.taken.append(s)
            self.bytes[s].advance(outputs[f"payload_{s}__ready"])
        if outputs["start__valid"] and self._ready["start"]:
            start = outputs["start__payload"]
            self.out.append((start & 0xFF, start >> 8, bytearray()))
        if outputs["payload__valid"] and self._ready["payload"]:
            self.out[-1][2].append(outputs["payload__payload"])

    @property
    def done(self):
        return all(s.done for s in self.starts + self.bytes)


#: Cycles an :class:`AlarmBench` runs after its alarms fell still: room for the last report.
QUIET_CYCLES = 300


class AlarmBench:
    """Alarm bits for an :class:`AlarmReporter` (``width``): each bit rises and falls at
    random, in bursts of activity (several rises while a report waits or is sent) and quiet
    stretches, and stays as it is after ``active_cycles`` (``done`` :data:`QUIET_CYCLES`
    later); ``start`` and ``payload`` are taken with random ``ready`` and stalls. ``seed``
    seeds everything. :meth:`drive` and :meth:`advance` as :class:`PacketizerBench`.

    Members
    -------
    reports : list of (int, int, bytearray)
        ``(type, length, payload)`` of the frames taken.
    """

    def __init__(self, width, seed, *, active_cycles=None, ready_rate=0.6, stall_rate=0.01):
        self.rng = random.Random(seed)
        self.width = width
        self.active_cycles = active_cycles
        self.cycle = 0
        self.alarms = 0
        self.ready_rate, self.stall_rate = ready_rate, stall_rate
        self.reports = []
        self._busy = 0
        self._stall = 0
        self._ready = {}

    def drive(self):
        rng = self.rng
        if self._busy:
            self._busy -= 1
        elif rng.random() < 0.01:
            self._busy = rng.randint(5, 60)
        active = self.active_cycles is None or self.cycle < self.active_cycles
        self.cycle += 1
        if active and rng.random() < (0.3 if self._busy else 0.01):
            self.alarms ^= 1 << rng.randrange(self.width)
        if self._stall:
            self._stall -= 1
            stalled = True
        else:
            stalled = False
            if rng.random() < self.stall_rate:
                self._stall = rng.randint(5, 40)
        self._ready = {name: int(not stalled and rng.random() < self.ready_rate)
                       for name in ("start", "payload")}
        return {"alarms": self.alarms, "start__ready": self._ready["start"],
                "payload__ready": self._ready["payload"]}

    @property
    def done(self):
        """Whether the alarms have been still for :data:`QUIET_CYCLES` (never, without
        ``active_cycles``)."""
        return self.active_cycles is not None and \
            self.cycle >= self.active_cycles + QUIET_CYCLES

    def advance(self, outputs):
        if outputs["start__valid"] and self._ready["start"]:
            start = outputs["start__payload"]
            self.reports.append((start & 0xFF, start >> 8, bytearray()))
        if outputs["payload__valid"] and self._ready["payload"]:
            self.reports[-1][2].append(outputs["payload__payload"])


# --- the request engine --------------------------------------------------------------------

_READ, _WRITE, _LOOKUP, _DESCRIBE = (FrameType.REG_READ_REQ, FrameType.REG_WRITE_REQ,
                                     FrameType.SYMBOL_LOOKUP_REQ, FrameType.DESCRIBE_REQ)
_ITEM_IN_MAX = max(size for size, _ in ITEM_BYTES.values())
_ITEM_OUT_MAX = max(size for _, size in ITEM_BYTES.values())
_ITEM_IN_MASK = (1 << 8 * _ITEM_IN_MAX) - 1
_ADDRESS_MASK = (1 << BUS_ADDRESS_BITS) - 1
_WORD_MASK = (1 << WORD_BITS) - 1
_EVENT_OF = {_READ: "read", _WRITE: "write", _LOOKUP: "lookup", _DESCRIBE: "describe"}
#: Width of a symbol memory's ``LookupResult``, packed as the ``result`` port carries it.
RESULT_BITS = sum(width for _, width in LOOKUP_RESULT_FIELDS)


def request_accepted(kind, length, *, lookups):
    """Whether the controller executes a request of type ``kind`` with a payload of ``length``
    bytes (:mod:`timebin.gateware.protocol`): a known type, a whole number ``n >= 1`` of items
    (none for ``DESCRIBE_REQ``) whose ``n`` answers fit one frame; lookups only with a symbol
    memory. ``None`` for a type that is not a request (drained, never answered), ``False``
    for a refused request (answered empty)."""
    if kind == _DESCRIBE:
        return length == 0
    if kind == _LOOKUP and not lookups:
        return False
    if kind not in ITEM_BYTES:
        return None
    size, out = ITEM_BYTES[kind]
    return length != 0 and length % size == 0 and length // size * out <= MAX_PAYLOAD


class LinkControllerModel(_Model):
    """:class:`~timebin.gateware.link.controller.LinkController` (``description``,
    ``lookups``, ``counter_bits``; ``description_ram`` and ``counter_dsp`` change no output)
    from reset.

    Inputs: ``header__valid``, ``header__payload`` (a packed
    :data:`~timebin.gateware.link.framer.FrameHeader`,
    :func:`~timebin.sim.link.framer.pack_header`), ``payload__valid``, ``payload__payload``,
    ``start__ready``, ``response__ready``, ``bus__rdata``, ``bus__rvalid`` (unused, as in the
    gateware), ``bus__werr``; with ``lookups`` also ``lookup__ready``, ``result__valid`` and
    ``result__payload`` (the packed ``LookupResult``, :data:`RESULT_BITS`). Outputs, none
    depending on the cycle's inputs: ``header__ready``, ``payload__ready``, ``start__valid``,
    ``start__payload``, ``response__valid``, ``response__payload``, ``bus__addr``,
    ``bus__wdata``, ``bus__we``, ``bus__re``, ``requests``, ``bad_requests``; with
    ``lookups`` also ``lookup__valid``, ``lookup__payload``, ``result__ready``.

    States, as the gateware's FSM: ``idle`` takes a header (``header__ready``) and counts it
    in ``requests``; an item request (read, write, lookup with a symbol memory) spends 16
    cycles in ``divide`` (the gateware's division of its length by the item size) and one
    in ``decide``, other frames are decided at once (:func:`request_accepted`): an executed
    request goes to ``start``; a refused one to ``drain`` and then, answered empty, to
    ``start``; a frame of another type to ``drain`` and back to ``idle``. ``drain`` takes
    the payload's bytes (``payload__ready`` while any are left) and counts the request in
    ``bad_requests`` in the cycle it leaves (at once for an empty payload). ``start`` offers
    the response's start (type and length, 0 elsewhere). ``describe`` offers the description
    bytes.
    Per item: ``collect`` takes its bytes, each shifted in at the top of the 64-bit item
    register; ``align`` shifts it down to bit 0; ``act`` shows ``re`` or ``we`` one cycle, or
    the index on ``lookup`` until taken; ``wait`` (one cycle for the bus) latches ``rdata``,
    the write status from ``werr``, or ``result__payload`` in every cycle until
    ``result__valid``; ``emit`` offers the answer's bytes, LSB first. ``bus__addr`` and
    ``bus__wdata`` always show bits 0..15 and 16..47 of the item register; ``lookup__payload``
    shows it in ``act`` only. Payloads are 0 in the states that do not drive them.

    Members
    -------
    events : collections.Counter
        For tests to check what a run reached: requests executed (``read``, ``write``,
        ``lookup``, ``describe``), ``refused`` and ``not_request`` frames, ``write_refused``
        items (``werr``), ``drain_bytes``, ``act_stall`` (``lookup__ready`` low in ``act``),
        ``result_wait`` (``wait`` cycles without a result), ``start_stall`` and
        ``response_stall`` (cycles offered, not taken), ``collect_gap`` (``collect`` cycles
        without a byte).
    """

    def __init__(self, *, description, lookups=False, counter_bits=COUNTER_BITS,
                 description_ram=False, counter_dsp=False):
        # ``description_ram`` and ``counter_dsp`` change how the gateware stores the
        # description and its counters, not what it sends when: the model takes them only
        # to be built from the same parameters.
        del description_ram, counter_dsp
        self.counter_bits = counter_bits
        description = bytes(description)
        if not 1 <= len(description) <= MAX_PAYLOAD:
            raise ValueError(f"Board description length must be 1..{MAX_PAYLOAD}, "
                             f"not {len(description)}")
        self.description = description
        self.lookups = bool(lookups)
        lookup_inputs = ("lookup__ready", "result__valid", "result__payload")
        lookup_outputs = ("lookup__valid", "lookup__payload", "result__ready")
        self.INPUTS = ("header__valid", "header__payload", "payload__valid",
                       "payload__payload", "start__ready", "response__ready", "bus__rdata",
                       "bus__rvalid", "bus__werr", *(lookup_inputs if lookups else ()))
        self.OUTPUTS = ("header__ready", "payload__ready", "start__valid", "start__payload",
                        "response__valid", "response__payload", "bus__addr", "bus__wdata",
                        "bus__we", "bus__re", "requests", "bad_requests",
                        *(lookup_outputs if lookups else ()))
        self.state = "idle"
        self.kind = 0               # request type being executed
        self.items = 0              # items left to execute
        self.item_in = 0            # request item, byte 0 lowest
        self.item_out = 0           # answer, byte 0 lowest, shifted out
        self.count = 0              # bytes left to collect / emit / drain
        self.in_bytes = 0
        self.out_bytes = 0
        self.reply = 0              # response type
        self.reply_length = 0
        self.answer = 0             # a refused request is answered empty
        self.rom_address = 0
        self.steps = 0              # cycles of the item count's division left
        self.requests = 0
        self.bad_requests = 0
        self.events = collections.Counter()

    def outputs(self):
        """``{output: int}`` shown in the current cycle (they depend on the state only)."""
        s = self.state
        out = dict.fromkeys(self.OUTPUTS, 0)
        out.update(header__ready=int(s == "idle"), requests=self.requests,
                   bad_requests=self.bad_requests, bus__addr=self.item_in & _ADDRESS_MASK,
                   bus__wdata=(self.item_in >> 16) & _WORD_MASK)
        if s == "drain":
            out["payload__ready"] = int(self.count != 0)
        elif s == "collect":
            out["payload__ready"] = 1
        elif s == "start":
            out.update(start__valid=1,
                       start__payload=pack_start(self.reply, self.reply_length))
        elif s == "describe":
            out.update(response__valid=1, response__payload=self.description[self.rom_address])
        elif s == "act":
            if self.kind == _READ:
                out["bus__re"] = 1
            elif self.kind == _WRITE:
                out["bus__we"] = 1
            elif self.kind == _LOOKUP and self.lookups:
                out.update(lookup__valid=1, lookup__payload=self.item_in)
        elif s == "wait":
            if self.kind == _LOOKUP and self.lookups:
                out["result__ready"] = 1
        elif s == "emit":
            out.update(response__valid=1, response__payload=self.item_out & 0xFF)
        return out

    def step(self, **inputs):
        """One cycle: return ``{output: int}`` of this cycle, then take the inputs through
        the clock edge."""
        v = self._inputs(inputs)
        out = self.outputs()
        getattr(self, f"_{self.state}")(v)
        return out

    # --- the clock edge, per state ---

    def _idle(self, v):
        if not v["header__valid"]:
            return
        self.requests = _saturate(self.requests, self.counter_bits)
        header = v["header__payload"]
        kind, length = header & 0xFF, (header >> 24) & _LENGTH_MASK
        self.kind, self.count, self.answer = kind, length, 0
        if kind in ITEM_BYTES and (kind != _LOOKUP or self.lookups):
            self.reply = RESPONSE_OF[kind]
            self.in_bytes, self.out_bytes = ITEM_BYTES[kind]
            self.steps = _LENGTH_BITS
            self.state = "divide"
            return
        accepted = request_accepted(kind, length, lookups=self.lookups)
        if kind == _DESCRIBE:
            self.reply, self.reply_length = FrameType.DESCRIBE_RESP, len(self.description)
            self.rom_address = 0
        elif kind == _LOOKUP:
            self.reply = FrameType.SYMBOL_LOOKUP_RESP
        self._decided(accepted)

    def _divide(self, v):
        self.steps -= 1
        if self.steps == 0:
            self.state = "decide"

    def _decide(self, v):
        n = self.count // self.in_bytes
        self.items, self.reply_length = n, (n * self.out_bytes) & _LENGTH_MASK
        self._decided(request_accepted(self.kind, self.count, lookups=self.lookups))

    def _decided(self, accepted):
        """Leave for ``start`` or ``drain`` as :func:`request_accepted` said."""
        if accepted:
            self.state = "start"
            self.events[_EVENT_OF[self.kind]] += 1
        elif accepted is None:
            self.state = "drain"
            self.events["not_request"] += 1
        else:
            self.answer, self.reply_length = 1, 0
            self.state = "drain"
            self.events["refused"] += 1

    def _drain(self, v):
        taken = v["payload__valid"] and self.count != 0
        done = self.count == 0 or (self.count == 1 and v["payload__valid"])
        if taken:
            self.count -= 1
            self.events["drain_bytes"] += 1
        if done:
            self.bad_requests = _saturate(self.bad_requests, self.counter_bits)
            self.state = "start" if self.answer else "idle"

    def _start(self, v):
        if not v["start__ready"]:
            self.events["start_stall"] += 1
            return
        self.count = self.in_bytes
        if self.reply_length == 0:
            self.state = "idle"
        elif self.kind == _DESCRIBE:
            self.state = "describe"
        else:
            self.state = "collect"

    def _describe(self, v):
        if not v["response__ready"]:
            self.events["response_stall"] += 1
            return
        if self.rom_address == len(self.description) - 1:
            self.state = "idle"
        self.rom_address += 1

    def _collect(self, v):
        if not v["payload__valid"]:
            self.events["collect_gap"] += 1
            return
        self.item_in = (self.item_in >> 8) | v["payload__payload"] << 8 * (_ITEM_IN_MAX - 1)
        if self.count == 1:
            self.state = "align"
        self.count = (self.count - 1) & _LENGTH_MASK

    def _align(self, v):
        self.item_in >>= 8 * (_ITEM_IN_MAX - self.in_bytes)
        self.state = "act"

    def _act(self, v):
        if self.kind in (_READ, _WRITE):
            self.state = "wait"
        elif self.kind == _LOOKUP and self.lookups:
            if v["lookup__ready"]:
                self.state = "wait"
            else:
                self.events["act_stall"] += 1

    def _wait(self, v):
        self.count = self.out_bytes
        if self.kind == _READ:
            self.item_out = v["bus__rdata"]
            self.state = "emit"
        elif self.kind == _WRITE:
            self.item_out = STATUS_REFUSED if v["bus__werr"] else STATUS_WRITTEN
            self.events["write_refused"] += bool(v["bus__werr"])
            self.state = "emit"
        elif self.kind == _LOOKUP and self.lookups:
            self.item_out = v["result__payload"]
            if v["result__valid"]:
                self.state = "emit"
            else:
                self.events["result_wait"] += 1

    def _emit(self, v):
        if not v["response__ready"]:
            self.events["response_stall"] += 1
            return
        self.item_out >>= 8
        self.count -= 1
        if self.count == 0:
            self.items -= 1
            self.count = self.in_bytes
            self.state = "idle" if self.items == 0 else "collect"


# --- stimulus of the request engine ----------------------------------------------------------

def bench_register_map():
    """A small register map with every access kind the bank knows: a constant, the ``rc``
    ``write_errors``, a one-word ``rw`` with a range (1..5), a strobe, a one-word and a
    two-word status port, and two two-word ``rw`` registers (48 bits, any value; 40 bits, at
    most ``2**36``). Word addresses 0..11; the rest of a 16-bit bus is unmapped."""
    return RegisterMap("link-bench", [
        Register("id", 0, 32, "ro", reset=0x4C4E4B31),
        Register("write_errors", 1, 32, "rc"),
        Register("mode", 2, 3, "rw", reset=1, minimum=1, maximum=5, port="mode"),
        Register("pulse", 3, 1, "strobe", port="pulse"),
        Register("status", 4, 16, "ro", port="status"),
        Register("clicks", 6, 64, "ro", port="clicks"),
        Register("key", 8, 48, "rw", reset=0x1234, port="key"),
        Register("limit", 10, 40, "rw", maximum=1 << 36, port="limit"),
    ])


#: Frame types that are not requests, as a host might echo them or a line corrupt them (the
#: deframer delivers any type whose header checks).
NOT_REQUESTS = (0x00, 0x05, 0x7F, 0xFF, *(int(t) for t in FrameType if t.from_board))


def controller_requests(rng, n, register_map, *, long_rate=0.0):
    """``n`` request frames ``(type, payload)`` for a :class:`LinkController` whose bus
    reaches a bank of ``register_map``: reads and writes of 1..9 items (whole registers, lo
    word first, and single words; mapped, unmapped and far addresses; values in and out of
    range), lookups of 1..5 random indices, descriptions, and malformed frames (a payload
    that is no whole number of items, an empty one, a description request with a payload,
    frames of other types). With probability ``long_rate`` a frame is a read of ``MAX_PAYLOAD
    / 4 + 1`` items, refused for its answer's length."""
    regs = list(register_map)
    mapped = sorted({a for r in regs for a in r.addresses})
    limit = 1 << BUS_ADDRESS_BITS

    def address():
        pick = rng.random()
        if pick < 0.8:
            return rng.choice(mapped)
        return rng.randrange(mapped[-1] + 1, mapped[-1] + 9) if pick < 0.9 \
            else rng.randrange(limit)

    def value(reg):
        top = (1 << WORD_BITS * reg.words) - 1
        if rng.random() < 0.5:
            return rng.randint(reg.minimum, reg.maximum)
        return rng.choice([reg.minimum, reg.maximum, reg.reset,
                           reg.maximum + 1 if reg.maximum < top else 0,
                           reg.minimum - 1 if reg.minimum else top, rng.randint(0, top)])

    def reads():
        items, n = [], rng.randint(1, 8)
        while len(items) < n:
            items += rng.choice(regs).addresses if rng.random() < 0.6 else (address(),)
        return b"".join(a.to_bytes(2, "little") for a in items)

    def writes():
        items, n = [], rng.randint(1, 8)
        while len(items) < n:
            if rng.random() < 0.6:
                reg = rng.choice(regs)
                x = value(reg)
                items += [(a, (x >> WORD_BITS * i) & _WORD_MASK)
                          for i, a in enumerate(reg.addresses)]
            else:
                items.append((address(), rng.getrandbits(WORD_BITS)))
        return b"".join(a.to_bytes(2, "little") + w.to_bytes(4, "little") for a, w in items)

    def junk(size):
        return bytes(rng.getrandbits(8) for _ in range(size))

    frames = []
    for _ in range(n):
        pick = rng.random()
        if rng.random() < long_rate:
            frames.append((_READ, junk(2 * (MAX_PAYLOAD // 4 + 1))))
        elif pick < 0.25:
            frames.append((_READ, reads()))
        elif pick < 0.5:
            frames.append((_WRITE, writes()))
        elif pick < 0.62:
            frames.append((_LOOKUP, junk(8 * rng.randint(1, 5))))
        elif pick < 0.7:
            frames.append((_DESCRIBE, b""))
        elif pick < 0.76:
            frames.append((_DESCRIBE, junk(rng.randint(1, 5))))
        elif pick < 0.88:
            kind = rng.choice((_READ, _WRITE, _LOOKUP))
            size = ITEM_BYTES[kind][0]
            frames.append((kind, junk(rng.choice((0, size * rng.randint(0, 2)
                                                  + rng.randint(1, size - 1))))))
        else:
            frames.append((rng.choice(NOT_REQUESTS), junk(rng.choice((0, rng.randint(1, 12))))))
    return frames


def executed_items(requests, *, lookups):
    """What a controller must do for ``requests``, in order: ``("read", address)``,
    ``("write", address, word)``, ``("lookup", index)`` per item of each executed request."""
    items = []
    for kind, payload in requests:
        if not request_accepted(kind, len(payload), lookups=lookups) or kind == _DESCRIBE:
            continue
        size = ITEM_BYTES[kind][0]
        for i in range(0, len(payload), size):
            item = int.from_bytes(payload[i:i + size], "little")
            if kind == _READ:
                items.append(("read", item))
            elif kind == _WRITE:
                items.append(("write", item & _ADDRESS_MASK, item >> 16))
            else:
                items.append(("lookup", item))
    return items


def expected_responses(requests, answers, description, *, lookups):
    """The response frames ``(type, payload)`` a controller must send for ``requests``, given
    the ``answers`` (bytes) of their executed items in order (:func:`executed_items`): one
    per request of a known type, empty if refused; none for other types."""
    out, k = [], 0
    for kind, payload in requests:
        accepted = request_accepted(kind, len(payload), lookups=lookups)
        if accepted is None:
            continue
        reply = int(RESPONSE_OF[kind])
        if not accepted:
            out.append((reply, b""))
        elif kind == _DESCRIBE:
            out.append((reply, bytes(description)))
        else:
            n = len(payload) // ITEM_BYTES[kind][0]
            out.append((reply, b"".join(answers[k:k + n])))
            k += n
    return out


class LinkControllerBench:
    """A :class:`LinkController` driven one cycle at a time: the ``requests`` (``(type,
    payload)``) offered as a deframer would, headers and payload bytes on their own streams
    with idle cycles (``gap_rate``); ``start`` and ``response`` taken with random ``ready``
    (``ready_rate``) and stalls of 5..60 cycles (``stall_rate`` per cycle). The register bus
    is answered by a :class:`~timebin.sim.regbank.RegisterBankModel` of ``register_map`` (its
    status ports changing at random), or, with ``register_map=None``, by noise: ``rdata``,
    ``rvalid`` and ``werr`` random in every cycle, so that only the cycle the controller
    samples makes its answer. With ``lookups``, a symbol memory: ``lookup__ready`` random
    (``lookup_ready_rate``), each result (the index and random fields) valid 1 cycle after
    the lookup is taken, more at times (up to ``max_latency``), random payload while not
    valid. ``seed`` seeds everything.

    Per cycle: :meth:`drive` gives the inputs (the model's ``INPUTS``); :meth:`advance`
    takes the outputs of the same cycle.

    Members
    -------
    frames : list of [int, int, bytearray]
        ``[type, length, payload]`` of the response frames taken (the last may be partial).
    items : list of tuple
        What the controller did, as :func:`executed_items` lists it.
    answers : list of bytes
        The answer of each item, as the controller should have taken it: the ``rdata`` of the
        cycle after ``re``, the status of the ``werr`` after ``we``, the result taken.
    bank : RegisterBankModel or None
    """

    def __init__(self, requests, seed, *, lookups, register_map=None, gap_rate=0.2,
                 ready_rate=0.7, stall_rate=0.01, lookup_ready_rate=0.6, max_latency=30,
                 status_change=0.05):
        self.rng = rng = random.Random(seed)
        self.lookups = lookups
        self.requests = list(requests)
        self.headers = StreamSource([pack_header(int(t), seq & 0xFFFF, len(p))
                                     for seq, (t, p) in enumerate(self.requests)], rng, gap_rate)
        self.bytes = StreamSource([b for _, p in self.requests for b in p], rng, gap_rate)
        self.ready_rate, self.stall_rate = ready_rate, stall_rate
        self.lookup_ready_rate, self.max_latency = lookup_ready_rate, max_latency
        self.status_change = status_change
        self.bank = None if register_map is None else \
            RegisterBankModel(register_map, BUS_ADDRESS_BITS)
        self.status = {} if self.bank is None else dict.fromkeys(self.bank.status_ports, 0)
        self._widths = {} if self.bank is None else \
            {p: register_map.port_width(p) for p in self.bank.status_ports}
        self.frames = []
        self.items = []
        self.answers = []
        self.cycle = 0
        self._stall = {"start": 0, "response": 0}
        self._inputs = {}
        self._bus_answer = None             # "read" or "write": answered in the next cycle
        self._results = collections.deque()  # (cycle valid from, result)
        self._idle = False

    def _ready_bit(self, name):
        if self._stall[name]:
            self._stall[name] -= 1
            return 0
        if self.rng.random() < self.stall_rate:
            self._stall[name] = self.rng.randint(5, 60)
        return int(self.rng.random() < self.ready_rate)

    def drive(self):
        rng = self.rng
        inputs = {}
        inputs["header__valid"], inputs["header__payload"] = self.headers.drive()
        inputs["payload__valid"], inputs["payload__payload"] = self.bytes.drive()
        inputs["start__ready"] = self._ready_bit("start")
        inputs["response__ready"] = self._ready_bit("response")
        if self.bank is None:
            inputs.update(bus__rdata=rng.getrandbits(WORD_BITS), bus__rvalid=rng.getrandbits(1),
                          bus__werr=rng.getrandbits(1))
        else:
            shown = self.bank.outputs()
            inputs.update(bus__rdata=shown["rdata"], bus__rvalid=shown["rvalid"],
                          bus__werr=shown["werr"])
        if self._bus_answer == "read":
            self.answers.append(inputs["bus__rdata"].to_bytes(WORD_BYTES, "little"))
        elif self._bus_answer == "write":
            self.answers.append(bytes((STATUS_REFUSED if inputs["bus__werr"]
                                       else STATUS_WRITTEN,)))
        if self.lookups:
            inputs["lookup__ready"] = int(rng.random() < self.lookup_ready_rate)
            ready = bool(self._results) and self._results[0][0] <= self.cycle
            inputs["result__valid"] = int(ready)
            inputs["result__payload"] = self._results[0][1] if ready \
                else rng.getrandbits(RESULT_BITS)
        self._inputs = inputs
        return inputs

    def advance(self, outputs):
        rng, inputs = self.rng, self._inputs
        self.headers.advance(outputs["header__ready"])
        self.bytes.advance(outputs["payload__ready"])
        if outputs["start__valid"] and inputs["start__ready"]:
            start = outputs["start__payload"]
            self.frames.append([start & 0xFF, start >> 8, bytearray()])
        if outputs["response__valid"] and inputs["response__ready"]:
            self.frames[-1][2].append(outputs["response__payload"])
        self._bus_answer = "read" if outputs["bus__re"] else \
            "write" if outputs["bus__we"] else None
        if outputs["bus__re"]:
            self.items.append(("read", outputs["bus__addr"]))
        if outputs["bus__we"]:
            self.items.append(("write", outputs["bus__addr"], outputs["bus__wdata"]))
        if self.bank is not None:
            for port in self.status:
                if rng.random() < self.status_change:
                    width = self._widths[port]
                    self.status[port] = rng.choice([rng.getrandbits(width),
                                                    (1 << width) - 1 - rng.randrange(3)])
            self.bank.step(outputs["bus__addr"], outputs["bus__wdata"], outputs["bus__we"],
                           outputs["bus__re"], dict(self.status))
        if self.lookups:
            if outputs["lookup__valid"] and inputs["lookup__ready"]:
                index = outputs["lookup__payload"]
                self.items.append(("lookup", index))
                latency = 1 if self.max_latency == 1 or rng.random() < 0.6 \
                    else rng.randint(2, self.max_latency)
                self._results.append((self.cycle + latency, index | rng.getrandbits(
                    RESULT_BITS - 64) << 64))
            if inputs["result__valid"] and outputs["result__ready"]:
                _, result = self._results.popleft()
                self.answers.append(result.to_bytes(LOOKUP_RESULT_BYTES, "little"))
        self._idle = bool(outputs["header__ready"])
        self.cycle += 1

    @property
    def done(self):
        """Whether every request was taken and answered in full, and the controller is
        idle."""
        return (self.headers.done and self.bytes.done and self._idle and not self._results
                and all(len(p) == n for _, n, p in self.frames))

    def delivered(self):
        """``(type, payload)`` of the response frames taken."""
        return [(t, bytes(p)) for t, _, p in self.frames]
