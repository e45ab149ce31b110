"""The board's frame sources (:class:`FrameMux`, :class:`DetectionPacketizer`,
:class:`ItemPacketizer`, :class:`AlarmReporter`) in Amaranth simulation against the
cycle-exact models of :mod:`timebin.sim.link.controller`: every output in every cycle, on
seeded random stimulus (bursts, silences, stalls that fill the queues, timeouts 0 and 1
among others, frames of 0 bytes), plus what the frames must carry by the protocol, and checks
that a model off in one detail is caught. The cocotb twin is
``tests/test_cocotb_packetizers.py``."""

import functools
import random

import pytest
from amaranth.lib import fifo
from timebin.gateware.frames import FrameType
from timebin.gateware.link.controller import (
    CLOSED_FRAMES,
    AlarmReporter,
    DetectionPacketizer,
    FrameMux,
    ItemPacketizer,
)
from timebin.gateware.link.framer import COUNTER_BITS
from timebin.gateware.protocol import ALARM_BYTES, NO_BLOCK_START, POINTER_BYTES
from timebin.sim.amaranth_helpers import run_bench, run_per_cycle
from timebin.sim.link.controller import (
    AlarmBench,
    AlarmReporterModel,
    DetectionPacketizerModel,
    FrameMuxBench,
    FrameMuxModel,
    ItemPacketizerModel,
    PacketizerBench,
    SyncFIFOBufferedModel,
    detection_blocks,
    frame_pointers,
)
from timebin.sim.link.uart import compare_cycles

# --- the FIFO the packetizers are built on ---------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 3, 8])
def test_fifo_model_matches_amaranth(depth):
    """``SyncFIFOBuffered`` of Amaranth and its model: ``w_rdy``, ``r_rdy``, ``r_data`` (also
    while not ready) and ``level`` in every cycle, writes and reads at random rates."""
    rng = random.Random(depth)
    n = 3000
    w_rate = [rng.choice((0.2, 0.5, 0.9)) for _ in range(n // 100)]
    r_rate = [rng.choice((0.1, 0.5, 0.9)) for _ in range(n // 100)]
    w_en = [int(rng.random() < w_rate[c // 100]) for c in range(n)]
    r_en = [int(rng.random() < r_rate[c // 100]) for c in range(n)]
    w_data = [rng.getrandbits(12) for _ in range(n)]
    dut = fifo.SyncFIFOBuffered(width=12, depth=depth)
    got = run_per_cycle(dut, [(dut.w_en, w_en), (dut.r_en, r_en), (dut.w_data, w_data)],
                        {name: getattr(dut, name) for name in ("w_rdy", "r_rdy", "r_data",
                                                               "level")}, n)
    model = SyncFIFOBufferedModel(depth)
    want = {name: [] for name in got}
    for c in range(n):
        for name in want:
            want[name].append(getattr(model, name))
        model.clock(w_en[c], w_data[c], r_en[c])
    compare_cycles(got, want, what=f"SyncFIFOBuffered({depth})")
    assert max(want["level"]) == depth and not all(want["w_rdy"])


# --- runs, shared by the tests below ---------------------------------------------------------

DETECTION_CASES = [(31, 4, 256), (32, 1, 0), (33, 9, 1)]       # (seed, max_words, timeout)
ITEM_CASES = [(41, 20, 3), (42, 8, 1), (43, 72, 5)]            # (seed, item_bits, max_items)
MUX_CASES = [(51, 3), (52, 3), (53, 1)]                        # (seed, sources)
ALARM_CASES = [(61, 4), (62, 32)]                              # (seed, width)
TIMEOUTS = (0, 1, 2, 3, 7, 20)


@functools.cache
def detection_run(seed, max_words, timeout):
    rng = random.Random(seed)
    words, starts = detection_blocks(rng, 120)
    bench = PacketizerBench(words, seed, source="words", timeouts=TIMEOUTS)
    dut = DetectionPacketizer(max_words=max_words, timeout=timeout)
    rec_in, rec_out = run_bench(dut, bench, DetectionPacketizerModel, 40_000)
    return words, starts, bench, rec_in, rec_out


@functools.cache
def item_run(seed, item_bits, max_items):
    rng = random.Random(seed)
    items = [rng.getrandbits(item_bits) for _ in range(400)]
    bench = PacketizerBench(items, seed, source="items", timeouts=TIMEOUTS)
    dut = ItemPacketizer(item_bits=item_bits, frame_type=FrameType.SIFT_RESULTS,
                         max_items=max_items, timeout=5)
    rec_in, rec_out = run_bench(dut, bench, ItemPacketizerModel, 40_000)
    return items, bench, rec_in, rec_out


def item_model(item_bits, max_items):
    return ItemPacketizerModel(item_bits=item_bits, frame_type=FrameType.SIFT_RESULTS,
                               max_items=max_items, timeout=5)


def mux_frames(rng, sources, n):
    """``n`` frames per source, of 0 bytes (often), a few, or up to 12."""
    return [[(rng.getrandbits(8), bytes(rng.getrandbits(8) for _ in range(
        rng.choice((0, 0, 1, 2, rng.randint(0, 12)))))) for _ in range(n)]
        for _ in range(sources)]


@functools.cache
def mux_run(seed, sources):
    frames = mux_frames(random.Random(seed), sources, 50)
    bench = FrameMuxBench(frames, seed)
    model = FrameMuxModel(sources)
    rec_in, rec_out = run_bench(FrameMux(sources), bench, model, 20_000)
    return frames, bench, rec_in, rec_out


@functools.cache
def alarm_run(seed, width):
    bench = AlarmBench(width, seed, active_cycles=6000)
    rec_in, rec_out = run_bench(AlarmReporter(width), bench, AlarmReporterModel, 7000)
    return bench, rec_in, rec_out


# --- RTL == model, and the frames are what the protocol says ---------------------------------

def assert_reached(events, max_items):
    """A packetizer run closed full frames and refused items on a full queue; with frames of
    several items, it also closed frames on their timeout (with the register at 0 and at 1)
    and refused items on a full closed queue (one-item frames fill the item queue first)."""
    wanted = ("full", "queue_full") + (("timeout", "timeout_0", "timeout_1", "closed_full")
                                       if max_items > 1 else ())
    missing = [event for event in wanted if not events[event]]
    assert not missing, f"the run never reached {missing}: {dict(events)}"


@pytest.mark.parametrize(("seed", "max_words", "timeout"), DETECTION_CASES)
def test_detection_packetizer_matches_model(seed, max_words, timeout):
    """Every output, every cycle; the model met full frames, a full word queue and, with
    frames of several words, timeouts (at 0 and 1) and a full closed queue. Each frame
    carries the pointer to its first block start, and the frames carry every word once, in
    order."""
    words, starts, bench, rec_in, rec_out = detection_run(seed, max_words, timeout)
    model = DetectionPacketizerModel(max_words=max_words, timeout=timeout)
    compare_cycles(rec_out, model.run(rec_in), what="DetectionPacketizer")
    assert_reached(model.events, max_words)

    frames = bench.delivered()
    assert bench.done and len(frames) == rec_out["frames"][-1]
    got, counts, pointers = [], [], []
    for type_, length, payload in frames:
        assert type_ == FrameType.DETECTIONS and len(payload) == length
        n = (length - POINTER_BYTES) // 4
        assert 1 <= n <= max_words and length == POINTER_BYTES + 4 * n
        pointers.append(int.from_bytes(payload[:POINTER_BYTES], "little"))
        counts.append(n)
        got += [int.from_bytes(payload[i:i + 4], "little")
                for i in range(POINTER_BYTES, length, 4)]
    assert got == words and rec_out["words_framed"][-1] == len(words)
    assert list(zip(pointers, counts, strict=True)) == frame_pointers(counts, starts)
    assert NO_BLOCK_START in pointers and max(counts) == max_words
    if max_words > 1:
        assert min(counts) < max_words


@pytest.mark.parametrize(("seed", "item_bits", "max_items"), ITEM_CASES)
def test_item_packetizer_matches_model(seed, item_bits, max_items):
    """Every output, every cycle, through full frames, timeouts and full queues; the frames
    carry every item once, in order, in ``ceil(item_bits / 8)`` bytes LSB first."""
    items, bench, rec_in, rec_out = item_run(seed, item_bits, max_items)
    model = item_model(item_bits, max_items)
    compare_cycles(rec_out, model.run(rec_in), what="ItemPacketizer")
    assert_reached(model.events, max_items)
    size = -(-item_bits // 8)
    frames = bench.delivered()
    assert bench.done and len(frames) == rec_out["frames"][-1]
    assert all(t == FrameType.SIFT_RESULTS and len(p) == n and 0 < n <= size * max_items
               and n % size == 0 for t, n, p in frames)
    got = [int.from_bytes(p[i:i + size], "little") for _, _, p in frames
           for i in range(0, len(p), size)]
    assert got == items and rec_out["items_framed"][-1] == len(items)


@pytest.mark.parametrize(("seed", "sources"), MUX_CASES)
def test_frame_mux_matches_model(seed, sources):
    """Every output, every cycle, with sources competing at random and frames of 0 bytes;
    each source's frames leave whole, in order, and every frame left."""
    frames, bench, rec_in, rec_out = mux_run(seed, sources)
    model = FrameMuxModel(sources)
    compare_cycles(rec_out, model.run(rec_in), what="FrameMux")
    assert bench.done and len(bench.out) == sources * len(frames[0])
    assert [s for s, _ in model.frames] == bench.taken
    position = [0] * sources
    for s, (type_, length, payload) in zip(bench.taken, bench.out, strict=True):
        assert (type_, bytes(payload)) == frames[s][position[s]] and len(payload) == length
        position[s] += 1
    if sources > 1:
        # Contention: a start waited while another source's frame was passing.
        waited = [c for c in range(len(rec_in["start__ready"]))
                  if any(rec_in[f"start_{s}__valid"][c] for s in range(1, sources))
                  and rec_out["payload__valid"][c]]
        assert len(waited) > 50


@pytest.mark.parametrize(("seed", "width"), ALARM_CASES)
def test_alarm_reporter_matches_model(seed, width):
    """Every output, every cycle; each report's mask is ``alarms`` as its start is taken,
    each report follows a rise since the one before, and every rise is reported after it."""
    bench, rec_in, rec_out = alarm_run(seed, width)
    model = AlarmReporterModel(width)
    compare_cycles(rec_out, model.run(rec_in), what="AlarmReporter")
    alarms = rec_in["alarms"]
    rises = [c for c in range(len(alarms)) if alarms[c] & ~(alarms[c - 1] if c else 0)]
    taken = [c for c in range(len(alarms))
             if rec_out["start__valid"][c] and rec_in["start__ready"][c]]
    assert len(taken) == rec_out["reports"][-1] == len(bench.reports) > 20
    assert len(rises) > len(taken), "no report gathered several rises"
    assert all(t == FrameType.ALARM and n == ALARM_BYTES for t, n, _ in bench.reports)
    assert [int.from_bytes(p, "little") for _, _, p in bench.reports] == \
        [alarms[c] for c in taken]
    for before, at in zip([0, *taken], taken, strict=False):
        assert any(before <= r < at for r in rises), f"report at cycle {at} without a rise"
    assert all(any(t > r for t in taken) for r in rises)


def test_counters_saturate():
    """Counters preset just below their top stop there, in the blocks and in their
    models."""
    top = (1 << COUNTER_BITS) - 1
    rng = random.Random(71)
    words, _ = detection_blocks(rng, 10)
    dut = DetectionPacketizer(max_words=4, timeout=3)
    preset = {"frames": top - 1, "words_framed": top - 2}
    rec_in, rec_out = run_bench(dut, PacketizerBench(words, 71), DetectionPacketizerModel,
                                5000, preset=preset)
    model = DetectionPacketizerModel(max_words=4, timeout=3)
    model.frames, model.words_framed = preset["frames"], preset["words_framed"]
    compare_cycles(rec_out, model.run(rec_in), what="DetectionPacketizer")
    assert rec_out["frames"][-1] == rec_out["words_framed"][-1] == top

    items = [rng.getrandbits(20) for _ in range(30)]
    dut = ItemPacketizer(item_bits=20, frame_type=FrameType.SIFT_RESULTS, max_items=3)
    preset = {"frames": top - 1, "items_framed": top - 1}
    rec_in, rec_out = run_bench(dut, PacketizerBench(items, 72, source="items"),
                                ItemPacketizerModel, 5000, preset=preset)
    model = ItemPacketizerModel(item_bits=20, frame_type=FrameType.SIFT_RESULTS, max_items=3)
    model.frames, model.items_framed = preset["frames"], preset["items_framed"]
    compare_cycles(rec_out, model.run(rec_in), what="ItemPacketizer")
    assert rec_out["frames"][-1] == rec_out["items_framed"][-1] == top

    rec_in, rec_out = run_bench(AlarmReporter(4), AlarmBench(4, 73, active_cycles=400),
                                AlarmReporterModel, 5000, preset={"reports": top - 1})
    model = AlarmReporterModel(4)
    model.reports = top - 1
    compare_cycles(rec_out, model.run(rec_in), what="AlarmReporter")
    assert rec_out["reports"][-1] == top


def test_alarm_reporter_narrow_counter():
    """With ``counter_bits`` (the iCEBreaker's option; 2 here) the reports counter sticks at
    3, in the block and in its model."""
    rec_in, rec_out = run_bench(AlarmReporter(4, counter_bits=2),
                                AlarmBench(4, 74, active_cycles=400),
                                AlarmReporterModel(4, counter_bits=2), 5000)
    model = AlarmReporterModel(4, counter_bits=2)
    compare_cycles(rec_out, model.run(rec_in), what="AlarmReporter")
    assert set(rec_out["reports"]) == {0, 1, 2, 3}


# --- the comparisons catch a model off in one detail -----------------------------------------

class UnbufferedFIFOModel(SyncFIFOBufferedModel):
    """A queue with ``SyncFIFO`` timing (an entry shows the cycle after it is written): what
    the models would say if the packetizers used the unbuffered queue."""

    @property
    def w_rdy(self):
        return int(len(self._inner) != self.depth)

    @property
    def r_rdy(self):
        return int(bool(self._inner))

    @r_rdy.setter
    def r_rdy(self, value):
        pass

    @property
    def r_data(self):
        return self._inner[0] if self._inner else self._last

    @r_data.setter
    def r_data(self, value):
        self._last = value

    def clock(self, w_en=0, w_data=0, r_en=0):
        write = w_en and self.w_rdy
        if r_en and self._inner:
            self._last = self._inner.popleft()
        if write:
            self._inner.append(w_data)


def _late_pointer(model):
    clock = model.gatherer.clock

    def late(*args, info=0, **kwargs):
        return clock(*args, info=info if info == NO_BLOCK_START else info + 1, **kwargs)
    model.gatherer.clock = late


def _detection_mutants(max_words, timeout):
    def make(change=None):
        model = DetectionPacketizerModel(max_words=max_words, timeout=timeout)
        if change:
            change(model)
        return model
    # (The word queue's latency is not among them: its words wait there until the frame's
    # start and pointer have left, so no output shows it.)
    return {
        "unbuffered closed queue": (make(lambda m: setattr(
            m.gatherer, "closed", UnbufferedFIFOModel(CLOSED_FRAMES))), None),
        "word queue one shallower": (make(lambda m: setattr(
            m.gatherer, "queued", SyncFIFOBufferedModel(2 * max_words - 1))), None),
        "closed queue one deeper": (make(lambda m: setattr(
            m.gatherer, "closed", SyncFIFOBufferedModel(CLOSED_FRAMES + 1))), None),
        "pointer one later": (make(_late_pointer), None),
        "timeout one cycle later": (make(), lambda rec: {**rec, "timeout": [
            t + 1 for t in rec["timeout"]]}),
    }


def _assert_caught(rec_out, model, rec_in, what):
    with pytest.raises(AssertionError, match=what):
        compare_cycles(rec_out, model.run(rec_in), what=what)


@pytest.mark.parametrize("mutant", ["unbuffered closed queue", "word queue one shallower",
                                    "closed queue one deeper", "pointer one later",
                                    "timeout one cycle later"])
def test_detection_comparison_catches_a_wrong_model(mutant):
    seed, max_words, timeout = DETECTION_CASES[0]
    _, _, _, rec_in, rec_out = detection_run(seed, max_words, timeout)
    model, change_inputs = _detection_mutants(max_words, timeout)[mutant]
    _assert_caught(rec_out, model, change_inputs(rec_in) if change_inputs else rec_in,
                   mutant)


def test_comparisons_catch_one_wrong_output():
    """One output of one cycle changed, in each block's comparison, is caught; and the other
    blocks' models, each off in one detail."""
    rng = random.Random(7)
    seed, item_bits, max_items = ITEM_CASES[0]
    _, _, item_in, item_out = item_run(seed, item_bits, max_items)
    seed_m, sources = MUX_CASES[0]
    _, _, mux_in, mux_out = mux_run(seed_m, sources)
    seed_a, width = ALARM_CASES[0]
    _, alarm_in, alarm_out = alarm_run(seed_a, width)
    seed_d, max_words, timeout = DETECTION_CASES[0]
    _, _, _, det_in, det_out = detection_run(seed_d, max_words, timeout)
    cases = [(det_out, DetectionPacketizerModel(max_words=max_words, timeout=timeout),
              det_in), (item_out, item_model(item_bits, max_items), item_in),
             (mux_out, FrameMuxModel(sources), mux_in),
             (alarm_out, AlarmReporterModel(width), alarm_in)]
    for got, model, rec_in in cases:
        want = model.run(rec_in)
        name = rng.choice(sorted(want))
        c = rng.randrange(len(want[name]))
        want[name][c] ^= 1
        with pytest.raises(AssertionError, match=f"{name} in cycle {c} "):
            compare_cycles(got, want, what=type(model).__name__)

    # The closed queue unbuffered; the mux preferring its highest source; a narrower mask.
    unbuffered = item_model(item_bits, max_items)
    unbuffered.gatherer.closed = UnbufferedFIFOModel(CLOSED_FRAMES)
    _assert_caught(item_out, unbuffered, item_in, "unbuffered closed queue")
    swapped = {name.replace("_0__", "_x__").replace(f"_{sources - 1}__", "_0__")
               .replace("_x__", f"_{sources - 1}__"): values for name, values in mux_in.items()}
    reversed_out = {name.replace("_0__", "_x__").replace(f"_{sources - 1}__", "_0__")
                    .replace("_x__", f"_{sources - 1}__"): values
                    for name, values in mux_out.items()}
    _assert_caught(reversed_out, FrameMuxModel(sources), swapped, "priority reversed")
    _assert_caught(alarm_out, AlarmReporterModel(width - 1), alarm_in, "narrower mask")
