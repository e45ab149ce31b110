"""Cycle-exact models of the board's frame sources in
:mod:`timebin.gateware.link.controller`: :class:`FrameMuxModel`,
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
stream.
"""

import collections
import random

from ...gateware.frames import FrameType
from ...gateware.link.controller import CLOSED_FRAMES
from ...gateware.link.framer import COUNTER_BITS
from ...gateware.protocol import ALARM_BYTES, NO_BLOCK_START, POINTER_BYTES
from ...gateware.records import HEADER_WORDS
from .framer import _run, pack_start
from .uart import StreamSource

__all__ = ["SyncFIFOBufferedModel", "FrameGathererModel", "FrameMuxModel",
           "DetectionPacketizerModel", "ItemPacketizerModel", "AlarmReporterModel",
           "detection_blocks", "PHASES", "PacketizerBench", "FrameMuxBench", "AlarmBench",
           "QUIET_CYCLES",
           "frame_pointers"]

_TOP = (1 << COUNTER_BITS) - 1
_LENGTH_MASK = 0xFFFF           # FrameStart.length: 16 bits
_TIMEOUT_MASK = 0xFFFF          # the timeout register: 16 bits


def _saturate(value):
    return min(value + 1, _TOP)


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

    def __init__(self, width):
        self.width = width
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
                self.reports = _saturate(self.reports)
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
