"""Tests of the link gateware: the UART pair, the framer against the reference encoder, the
deframer on faulty byte streams, and the whole link in a loop."""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from timebin.gateware.frames import (
    HEADER_BYTES,
    MAX_PAYLOAD,
    OVERHEAD_BYTES,
    SYNC,
    FrameType,
    encode_frame,
    header_check,
)
from timebin.gateware.link.framer import COUNTER_BITS, HEADER_QUEUE_DEPTH, Deframer, Framer
from timebin.gateware.link.uart import MAX_DIVISOR, UARTRx, UARTTx
from timebin.host.frames import FrameDecoder
from timebin.sim.amaranth_helpers import port_signal, simulate, stream_get, stream_put
from timebin.sim.link.framer import (
    COUNTERS,
    DeframerModel,
    FramerModel,
    LinkBench,
    deframe,
    frame_bytes,
    pack_start,
    random_frames,
)
from timebin.sim.link.uart import (
    StreamSource,
    UARTRxModel,
    UARTTxModel,
    apply_line_faults,
    character_bits,
    compare_cycles,
    line_faults,
    line_levels,
    ready_pattern,
)

# --- testbench pieces ---

def run(dut, *testbenches, cycles=100_000):
    """:func:`simulate`, failing after ``cycles`` cycles instead of waiting for ever."""
    async def deadline(ctx):
        for _ in range(cycles):
            await ctx.tick()
        raise AssertionError(f"not done after {cycles} cycles")
    simulate(dut, *testbenches, processes=[deadline])


async def put_all(ctx, port, payloads, rng, gap_rate):
    """Offer ``payloads`` on ``port`` in order, with idle cycles (probability ``gap_rate``
    before each)."""
    for payload in payloads:
        while rng.random() < gap_rate:
            await ctx.tick()
        await stream_put(ctx, port, payload)


def taker(port, rng, ready_rate, quiet=None):
    """A consumer of ``port`` with random ``ready``, which checks that a payload offered and
    not taken stays (and that ``quiet`` is low meanwhile). ``await take(ctx)`` returns the
    next payload."""
    held = None

    async def take(ctx):
        nonlocal held
        while True:
            ready = rng.random() < ready_rate
            ctx.set(port.ready, ready)
            valid, payload = ctx.get(port.valid), ctx.get(port.payload)
            assert quiet is None or not ctx.get(quiet)
            if held is not None:
                assert valid and payload == held, "a payload offered changed before taken"
            await ctx.tick()
            if valid and ready:
                held = None
                ctx.set(port.ready, 0)
                return payload
            held = payload if valid else None
    return take


def frame_source(dut, frames, rng, gap_rate):
    """Testbenches giving ``frames`` (``(type, payload)``) to a :class:`Framer`."""
    async def starts(ctx):
        await put_all(ctx, dut.start, [{"type": int(t), "length": len(p)} for t, p in frames],
                      rng, gap_rate)

    async def payloads(ctx):
        await put_all(ctx, dut.payload, [b for _, p in frames for b in p], rng, gap_rate)
    return starts, payloads


def frame_sink(dut, n, got, rng, ready_rate, delay=0):
    """A testbench taking ``n`` frames from a :class:`Deframer` into ``got`` as
    ``(type, seq, payload)``, from cycle ``delay`` on. It checks that no header is offered
    before the last payload byte of the frame before was taken."""
    take_header = taker(dut.header, rng, ready_rate)
    take_byte = taker(dut.payload, rng, ready_rate, quiet=dut.header.valid)

    async def sink(ctx):
        if delay:
            await ctx.tick().repeat(delay)
        while len(got) < n:
            header = await take_header(ctx)
            payload = bytes([await take_byte(ctx) for _ in range(header.length)])
            got.append((header.type, header.seq, payload))
    return sink


def random_payload(rng, length):
    return bytes(rng.getrandbits(8) for _ in range(length))


# --- UART ---

class UARTLoop(Elaboratable):
    """A :class:`UARTTx` whose line drives a :class:`UARTRx`."""

    def __init__(self, divisor):
        self.tx = UARTTx(divisor=divisor)
        self.rx = UARTRx(divisor=divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize(("divisor", "n"), [(4, 150), (13, 60)])
def test_uart_loopback(divisor, n):
    """Random bytes with random gaps, taken at once: every byte arrives, no error."""
    rng = random.Random(divisor)
    sent = [rng.getrandbits(8) for _ in range(n)]
    loop = UARTLoop(divisor)
    got = []

    async def producer(ctx):
        await put_all(ctx, loop.tx.data, sent, rng, 0.02)

    async def consumer(ctx):
        while len(got) < n:
            got.append(await stream_get(ctx, loop.rx.data))
        assert ctx.get(loop.rx.framing_errors) == ctx.get(loop.rx.overruns) == 0

    run(loop, producer, consumer)
    assert got == sent


def test_uart_timing():
    """Back to back: a byte every ``10 * divisor`` cycles, bits as documented, and the byte on
    the receiver's ``data`` :meth:`UARTRx.latency` cycles after the fall of its start bit."""
    divisor = 5
    loop = UARTLoop(divisor)
    sent = [0x35, 0xCA, 0x00]
    line, shown = [], []

    async def testbench(ctx):
        ctx.set(loop.rx.data.ready, 1)
        ctx.set(loop.tx.data.valid, 1)
        taken = []
        for cycle in range(40 * divisor):
            ctx.set(loop.tx.data.payload, sent[min(len(taken), len(sent) - 1)])
            if len(taken) == len(sent):
                ctx.set(loop.tx.data.valid, 0)
            elif ctx.get(loop.tx.data.ready):
                taken.append(cycle)
            line.append(ctx.get(loop.tx.tx))
            if ctx.get(loop.rx.data.valid):
                shown.append((cycle, ctx.get(loop.rx.data.payload)))
            await ctx.tick()
        assert taken == [0, 10 * divisor, 20 * divisor]

    run(loop, testbench)
    want = [1]
    for byte in sent:
        bits = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
        want += [bit for bit in bits for _ in range(divisor)]
    want += [1] * (len(line) - len(want))
    assert line == want
    latency = loop.rx.latency()
    assert shown == [(1 + 10 * divisor * k + latency, byte) for k, byte in enumerate(sent)]


def drive_line(divisor, levels):
    """Simulate a :class:`UARTRx` whose ``rx`` follows ``levels`` (one per bit time), reading
    its data always. Returns the bytes and the counters and flags at the end."""
    dut = UARTRx(divisor=divisor)
    got, status = [], {}

    async def testbench(ctx):
        ctx.set(dut.data.ready, 1)
        for level in levels:
            ctx.set(dut.rx, level)
            for _ in range(divisor):
                if ctx.get(dut.data.valid):
                    got.append(ctx.get(dut.data.payload))
                await ctx.tick()
        for name in ("framing_errors", "framing_error", "overruns", "overrun"):
            status[name] = ctx.get(getattr(dut, name))

    run(dut, testbench)
    return got, status


def character(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def test_uart_framing_error():
    """A low stop bit drops the byte and counts once, a break too; good bytes around pass."""
    levels = [1, 1] + character(0x5A) + character(0xC3, stop=0) + [1, 1] + character(0x81)
    levels += [0] * 30 + [1, 1] + character(0x7E) + [1] * 3
    got, status = drive_line(7, levels)
    assert got == [0x5A, 0x81, 0x7E]
    assert status == {"framing_errors": 2, "framing_error": 1, "overruns": 0, "overrun": 0}


def test_uart_glitch_ignored():
    """A low pulse shorter than half a bit is no start bit."""
    divisor = 8
    dut = UARTRx(divisor=divisor)
    got = []

    async def testbench(ctx):
        ctx.set(dut.data.ready, 1)
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        for _ in range(20 * divisor):
            if ctx.get(dut.data.valid):
                got.append(ctx.get(dut.data.payload))
            await ctx.tick()
        assert ctx.get(dut.framing_errors) == 0

    run(dut, testbench)
    assert got == []


def test_uart_overrun():
    """Bytes arriving while the first is not taken are dropped and counted; the first stays."""
    divisor = 4
    loop = UARTLoop(divisor)
    sent = [0x11, 0x22, 0x33, 0x44]
    got = []

    async def producer(ctx):
        await put_all(ctx, loop.tx.data, sent[:3], random.Random(0), 0)
        await ctx.tick().repeat(12 * divisor)
        assert ctx.get(loop.rx.overruns) == 2 and ctx.get(loop.rx.overrun)
        got.append(await stream_get(ctx, loop.rx.data))
        await stream_put(ctx, loop.tx.data, sent[3])
        got.append(await stream_get(ctx, loop.rx.data))
        assert ctx.get(loop.rx.overruns) == 2 and ctx.get(loop.rx.framing_errors) == 0

    run(loop, producer)
    assert got == [0x11, 0x44]


# --- framer ---

def run_framer(dut, frames, rng, gap_rate=0.3, ready_rate=0.6):
    """The bytes a :class:`Framer` sends for ``frames``, and its counters at the end."""
    want_bytes = sum(len(p) + OVERHEAD_BYTES for _, p in frames if len(p) <= dut.max_payload)
    got, status = [], {}
    take = taker(dut.bytes, rng, ready_rate)

    async def sink(ctx):
        while len(got) < want_bytes:
            got.append(await take(ctx))
        await ctx.tick().repeat(50)
        assert not ctx.get(dut.bytes.valid)
        status.update({name: ctx.get(getattr(dut, name)) for name in ("seq", "frames",
                                                                      "oversize")})

    run(dut, *frame_source(dut, frames, rng, gap_rate), sink)
    return bytes(got), status


def test_framer_matches_encode_frame():
    """Frames of every type with random payloads (empty and longest ones too), random gaps
    and backpressure: the bytes are those of ``encode_frame``; a start longer than
    ``max_payload`` sends nothing, takes its payload and is counted."""
    rng = random.Random(1)
    max_payload = 40
    frames = []
    for frame_type in FrameType:
        for length in (0, max_payload, rng.randrange(1, max_payload)):
            frames.append((frame_type, random_payload(rng, length)))
    rng.shuffle(frames)
    frames.insert(5, (FrameType.DETECTIONS, random_payload(rng, max_payload + 1)))
    dut = Framer(max_payload=max_payload)
    got, status = run_framer(dut, frames, rng)
    sent = [(t, p) for t, p in frames if len(p) <= max_payload]
    assert got == b"".join(encode_frame(t, seq, p) for seq, (t, p) in enumerate(sent))
    assert status == {"seq": len(sent), "frames": len(sent), "oversize": 1}


def test_framer_full_rate_timing():
    """No stall: a frame of ``L`` bytes every ``L + OVERHEAD_BYTES + 1`` cycles, its first
    byte shown 2 cycles after its start is taken."""
    dut = Framer()
    lengths = [3, 0, 7]
    shown, taken = [], []

    async def testbench(ctx):
        ctx.set(dut.bytes.ready, 1)
        ctx.set(dut.payload.valid, 1)
        queue = list(lengths)
        for cycle in range(80):
            ctx.set(dut.start.valid, bool(queue))
            if queue:
                ctx.set(dut.start.payload, {"type": FrameType.ALARM, "length": queue[0]})
                if ctx.get(dut.start.ready):
                    taken.append(cycle)
                    queue.pop(0)
            if ctx.get(dut.bytes.valid):
                shown.append(cycle)
            await ctx.tick()

    run(dut, testbench)
    starts = [0]
    for length in lengths[:-1]:
        starts.append(starts[-1] + length + OVERHEAD_BYTES + 1)
    assert taken == starts
    assert shown == [s + 2 + i for s, n in zip(starts, lengths, strict=True)
                     for i in range(n + OVERHEAD_BYTES)]


# --- deframer ---

def faulty_stream(rng, max_payload, n_segments):
    """A byte stream of good frames with garbage, corrupted, truncated and oversize frames
    between them. Returns ``(stream, good frames as (type, seq, payload), counts)``."""
    types = list(FrameType)
    stream = bytearray()
    good = []
    counts = {"frames": 0, "header_errors": 0, "oversize": 0, "crc_errors": 0}
    seq = rng.randrange(1 << 16)

    def frame(length=None):
        nonlocal seq
        seq = (seq + 1) % (1 << 16)
        length = rng.randrange(max_payload + 1) if length is None else length
        t, p = rng.choice(types), random_payload(rng, length)
        return t, seq, p, bytearray(encode_frame(t, seq, p))

    def garbage(n):
        return bytes(rng.choice([b for b in range(256) if b != SYNC[0]]) for _ in range(n))

    for _ in range(n_segments):
        kind = rng.choice(["good", "good", "garbage", "partial_sync", "junk_header",
                           "header_flip", "body_flip", "truncated", "oversize"])
        if kind == "good":
            t, s, p, raw = frame()
            good.append((int(t), s, p))
            counts["frames"] += 1
        elif kind == "garbage":
            raw = garbage(rng.randrange(1, 20))
        elif kind == "partial_sync":
            raw = SYNC[:rng.randrange(1, len(SYNC))]      # a frame may follow at once
        elif kind == "junk_header":
            fields = random_payload(rng, HEADER_BYTES - len(SYNC) - 1)
            raw = SYNC + fields + bytes([header_check(fields) ^ rng.randrange(1, 256)])
            counts["header_errors"] += 1
        elif kind == "header_flip":
            raw = frame()[3]
            raw[rng.randrange(len(SYNC), HEADER_BYTES)] ^= 1 << rng.randrange(8)
            counts["header_errors"] += 1
        elif kind == "body_flip":
            raw = frame()[3]
            raw[rng.randrange(HEADER_BYTES, len(raw))] ^= 1 << rng.randrange(8)
            counts["crc_errors"] += 1
        elif kind == "truncated":
            raw = frame(rng.randrange(1, max_payload + 1))[3]
            raw = raw[:rng.randrange(HEADER_BYTES, len(raw))]
            counts["crc_errors"] += 1
        else:
            length = rng.choice([max_payload + 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 0xFFFF])
            fields = bytes((rng.choice(types), 0, 0)) + length.to_bytes(2, "little")
            raw = SYNC + fields + bytes([header_check(fields)]) + garbage(3)
            counts["oversize"] += 1
        stream += raw
    # Enough garbage to make up the length of any truncated frame.
    stream += garbage(max_payload + OVERHEAD_BYTES)
    return bytes(stream), good, counts


def run_deframer(dut, stream, n_frames, rng, gap_rate, ready_rate, pause=(0, 0)):
    """Feed ``stream`` to ``dut``, pausing ``pause[1]`` cycles before byte ``pause[0]``; take
    ``n_frames`` frames. Returns the frames and the counters at the end."""
    got, status = [], {}
    done = []

    async def source(ctx):
        at, cycles = pause
        await put_all(ctx, dut.bytes, stream[:at], rng, gap_rate)
        if cycles:
            await ctx.tick().repeat(cycles)
        await put_all(ctx, dut.bytes, stream[at:], rng, gap_rate)
        done.append(True)

    sink = frame_sink(dut, n_frames, got, rng, ready_rate)

    async def checker(ctx):
        await sink(ctx)
        while not done:
            await ctx.tick()
        for _ in range(3 * len(stream) // 2 + 100):       # time to check all it has
            assert not ctx.get(dut.header.valid), "a frame too many"
            await ctx.tick()
        status.update({name: ctx.get(getattr(dut, name))
                       for name in ("frames", "header_errors", "oversize", "crc_errors",
                                    "truncated")})

    run(dut, source, checker)
    return got, status


@pytest.mark.parametrize(("seed", "gap_rate", "ready_rate"), [
    (1, 0.5, 0.7),
    (2, 0.0, 0.2),          # the link outruns the reader: the buffer fills up
    (3, 0.1, 1.0),
])
def test_deframer_faulty_stream(seed, gap_rate, ready_rate):
    """Exactly the intact frames come out, as the host decoder finds them; each bad one
    counted once."""
    rng = random.Random(seed)
    max_payload = 24
    stream, good, counts = faulty_stream(rng, max_payload, 120)
    host = FrameDecoder()
    found = host.feed(stream) + host.flush()
    assert [(frame.type, frame.seq, frame.payload) for frame in found] == good
    assert host.stats.header_errors == counts["header_errors"]
    dut = Deframer(max_payload=max_payload)
    got, status = run_deframer(dut, stream, len(good), rng, gap_rate, ready_rate)
    assert got == good
    assert status == {**counts, "truncated": 0}


def test_deframer_slow_reader():
    """Short frames back to back and a reader that starts late: the header queue and the
    buffer fill up, the link waits, nothing is lost."""
    rng = random.Random(5)
    good = [(int(rng.choice(list(FrameType))), seq, random_payload(rng, rng.randrange(3)))
            for seq in range(20)]
    stream = b"".join(encode_frame(*frame) for frame in good)
    dut = Deframer(max_payload=8)
    got = []

    async def source(ctx):
        await put_all(ctx, dut.bytes, stream, rng, 0)

    async def stalled(ctx):
        await ctx.tick().until(~dut.bytes.ready)
        assert ctx.get(dut.frames) == HEADER_QUEUE_DEPTH       # and the checker waits

    run(dut, source, stalled, frame_sink(dut, len(good), got, rng, 0.5, delay=400))
    assert got == good


@pytest.mark.parametrize("timeout", [None, 40])
def test_deframer_timeout(timeout):
    """A frame cut short, then silence, then a short frame. With a timeout the cut frame is
    given up and the short one comes out; without, the short one is taken for the rest of the
    cut one, whose length it does not make up: both wait for more bytes."""
    rng = random.Random(3)
    cut = encode_frame(FrameType.REG_WRITE_REQ, 7, random_payload(rng, 20))[:HEADER_BYTES + 5]
    short = encode_frame(FrameType.REG_READ_REQ, 8, random_payload(rng, 2))
    assert len(short) < 20 - 5 + 4
    dut = Deframer(max_payload=32, timeout=timeout)
    got, status = run_deframer(dut, cut + short, 1 if timeout else 0, rng, 0, 1,
                               pause=(len(cut), 60))
    if timeout:
        assert got == [(FrameType.REG_READ_REQ, 8, short[HEADER_BYTES:-4])]
        assert (status["truncated"], status["crc_errors"]) == (1, 0)
    else:
        assert got == [] and not any(status.values())


# --- the whole link ---

def test_framer_to_deframer_through_uart():
    """Framer -> UARTTx -> UARTRx -> Deframer: the frames arrive with their sequence
    numbers, the UART without error."""
    rng = random.Random(4)
    divisor = 4
    frames = [(t, random_payload(rng, rng.randrange(17))) for t in rng.sample(list(FrameType), 6)]
    top = Module()
    framer = top.submodules.framer = Framer(max_payload=16)
    uart_tx = top.submodules.uart_tx = UARTTx(divisor=divisor)
    uart_rx = top.submodules.uart_rx = UARTRx(divisor=divisor)
    deframer = top.submodules.deframer = Deframer(max_payload=16)
    wiring.connect(top, framer.bytes, uart_tx.data)
    top.d.comb += uart_rx.rx.eq(uart_tx.tx)
    wiring.connect(top, uart_rx.data, deframer.bytes)
    got = []

    async def check(ctx):
        await frame_sink(deframer, len(frames), got, rng, 0.5)(ctx)
        assert ctx.get(uart_rx.overruns) == ctx.get(uart_rx.framing_errors) == 0
        assert ctx.get(deframer.frames) == len(frames)

    run(top, *frame_source(framer, frames, rng, 0.2), check)
    assert got == [(int(t), seq, p) for seq, (t, p) in enumerate(frames)]


# --- construction ---

@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: UARTTx(divisor=3), ValueError, r"divisor .* at least 4, not 3"),
    (lambda: UARTRx(divisor=MAX_DIVISOR + 1), ValueError, r"at most"),
    (lambda: UARTRx(divisor=4.0), TypeError, r"divisor .* integer, not 4\.0"),
    (lambda: UARTTx(divisor=True), TypeError, r"not True"),
    (lambda: Framer(max_payload=0), ValueError, r"Largest payload .* at least 1, not 0"),
    (lambda: Framer(max_payload=MAX_PAYLOAD + 1), ValueError, r"at most 4096"),
    (lambda: Deframer(max_payload="64"), TypeError, r"Largest payload .* not '64'"),
    (lambda: Deframer(timeout=0), ValueError, r"timeout .* at least 1, not 0"),
])
def test_bad_parameters_refused(assert_refused, make, error, match):
    assert_refused(error, match, make)


def test_converts_to_verilog():
    for dut in (UARTTx(divisor=4), UARTRx(divisor=1000), Framer(),
                Deframer(max_payload=64, timeout=1000)):
        assert "module" in verilog.convert(dut)


# --- the models of timebin.sim.link against the gateware, cycle by cycle ---

UART_MASKS = {"payload": "valid"}
LINK_MASKS = {"bytes__payload": "bytes__valid", "header__payload": "header__valid",
              "payload__payload": "payload__valid"}



def run_uart_pair(divisor, data, n, seed, counter_bits=32):
    """A :class:`UARTTx` whose line reaches a :class:`UARTRx` through random line faults,
    for ``n`` cycles: the bytes ``data`` offered with random gaps, ``ready`` of the receiver
    random with stalls. Returns ``(inputs, outputs)`` of both, per cycle."""
    rng = random.Random(seed)
    top = Module()
    tx = top.submodules.tx = UARTTx(divisor=divisor)
    rx = top.submodules.rx = UARTRx(divisor=divisor, counter_bits=counter_bits)
    source = StreamSource(data, rng, gap_rate=0.02)
    ready = ready_pattern(rng, n, 0.6, stall_rate=0.002, stall_cycles=(2 * divisor,
                                                                       30 * divisor))
    faults = line_faults(rng, n, divisor)
    rec = {name: [] for name in ("valid", "payload", "tx", "ready", "rx", "rx_ready")}
    rx_outputs = {name: getattr(rx, name) for name in (
        "framing_errors", "framing_error", "overruns", "overrun", "errors")}
    rx_outputs.update(valid=rx.data.valid, payload=rx.data.payload)
    got = {name: [] for name in rx_outputs}

    async def testbench(ctx):
        for c in range(n):
            valid, payload = source.drive()
            ctx.set(tx.data.valid, valid)
            ctx.set(tx.data.payload, payload)
            ctx.set(rx.data.ready, ready[c])
            line = ctx.get(tx.tx)
            level = apply_line_faults(line, faults[c])
            ctx.set(rx.rx, level)
            taken_ready = ctx.get(tx.data.ready)
            for name, value in (("valid", valid), ("payload", payload), ("tx", line),
                                ("ready", taken_ready), ("rx", level), ("rx_ready", ready[c])):
                rec[name].append(value)
            for name, port in rx_outputs.items():
                got[name].append(ctx.get(port))
            source.advance(taken_ready)
            await ctx.tick()

    simulate(top, testbench)
    return rec, got, faults


@pytest.mark.parametrize(("divisor", "seed", "counter_bits"), [(4, 11, 32), (7, 12, 32),
                                                               (4, 13, 2)])
def test_uart_models_match_rtl(divisor, seed, counter_bits):
    """The line of :class:`UARTTxModel` and every output of :class:`UARTRxModel` on the
    faulty line, every cycle: glitches, corrupted bits, framing errors, breaks, overruns;
    with narrow counters (a small FPGA's: 2 bits here), which stick at 3."""
    rng = random.Random(seed)
    n = 30_000 if divisor == 4 else 25_000
    data = [rng.getrandbits(8) for _ in range(n // (10 * divisor))]
    rec, got, faults = run_uart_pair(divisor, data, n, seed, counter_bits)
    tx_model = UARTTxModel(divisor=divisor)
    compare_cycles({"tx": rec["tx"], "ready": rec["ready"]},
                   tx_model.run(rec["valid"], rec["payload"]), what="UARTTx")
    rx_model = UARTRxModel(divisor=divisor, counter_bits=counter_bits)
    want = rx_model.run(rec["rx"], rec["rx_ready"])
    compare_cycles(got, want, masks=UART_MASKS, what="UARTRx")
    if counter_bits < 32:
        assert want["errors"][-1] == want["framing_errors"][-1] == 3
        assert set(want["errors"]) == {0, 1, 2, 3}
    # The model's line is the one the receiver saw, faults aside.
    assert [apply_line_faults(t, f) for t, f in zip(rec["tx"], faults, strict=True)] \
        == rec["rx"]
    assert want["framing_errors"][-1] >= 3 and want["overruns"][-1] >= 3
    assert len(rx_model.received) > len(data) // 2 and len(tx_model.taken) > len(data) // 2


def test_uart_rx_model_timing():
    """Back to back bytes from the model's line: each shown :meth:`UARTRx.latency` cycles
    after its start bit falls; a break counts one framing error."""
    divisor = 6
    line = [1] * 5
    starts = []
    for byte in (0x00, 0xFF, 0xA5):
        starts.append(len(line))
        line += line_levels(character_bits(byte), divisor)
    line += [0] * 30 * divisor + [1] * 20 * divisor
    model = UARTRxModel(divisor=divisor)
    out = model.run(line, 1)
    latency = 3 + divisor // 2 + 9 * divisor        # UARTRx.latency()
    assert model.received == [(s + latency, b) for s, b in zip(starts, (0x00, 0xFF, 0xA5),
                                                                strict=True)]
    assert out["framing_errors"][-1] == 1 and out["overruns"][-1] == 0


def test_framer_model_timing():
    """With no stall, the model shows the frames of ``frame_bytes`` 2 cycles after each
    start, one every ``L + OVERHEAD_BYTES + 1`` cycles, as the framer's docstring says."""
    frames = [(0x90, bytes(range(3))), (0x7F, b""), (0xA0, bytes(range(40, 47)))]
    model = FramerModel(max_payload=16)
    starts = [pack_start(t, len(p)) for t, p in frames]
    payload = [b for _, p in frames for b in p]
    taken = []
    for cycle in range(80):
        out = model.step(start__valid=int(bool(starts)), start__payload=starts[0] if starts
                         else 0, payload__valid=1, payload__payload=payload[0] if payload
                         else 0, bytes__ready=1)
        if starts and out["start__ready"]:
            taken.append(cycle)
            starts.pop(0)
        if out["payload__ready"] and payload:
            payload.pop(0)
    want = b"".join(frame_bytes(t, seq, p) for seq, (t, p) in enumerate(frames))
    assert bytes(b for _, b in model.sent) == want
    assert taken == [0, 3 + OVERHEAD_BYTES + 1, 3 + OVERHEAD_BYTES + 1 + OVERHEAD_BYTES + 1]
    assert [c for c, _ in model.sent][:OVERHEAD_BYTES + 3] == list(range(2, OVERHEAD_BYTES + 5))
    assert frame_bytes(FrameType.ALARM, 9, b"xy") == encode_frame(FrameType.ALARM, 9, b"xy")


def run_link_bench(bench, n, *, max_payload, timeout, counter_bits=COUNTER_BITS,
                   queue_depth=HEADER_QUEUE_DEPTH, crc_ram=False):
    """Drive a :class:`Framer` and a :class:`Deframer` from ``bench`` for ``n`` cycles;
    return the inputs and outputs of each, per cycle."""
    top = Module()
    blocks = {"framer": Framer(max_payload=max_payload, counter_bits=counter_bits,
                               crc_ram=crc_ram),
              "deframer": Deframer(max_payload=max_payload, timeout=timeout,
                                   counter_bits=counter_bits, queue_depth=queue_depth,
                                   crc_ram=crc_ram)}
    models = {"framer": FramerModel, "deframer": DeframerModel}
    top.submodules.framer, top.submodules.deframer = blocks["framer"], blocks["deframer"]
    ins = {block: {name: port_signal(blocks[block], name) for name in models[block].INPUTS}
           for block in blocks}
    outs = {block: {name: port_signal(blocks[block], name) for name in models[block].OUTPUTS}
            for block in blocks}
    rec_in = {block: {name: [] for name in ins[block]} for block in blocks}
    rec_out = {block: {name: [] for name in outs[block]} for block in blocks}

    async def testbench(ctx):
        for _ in range(n):
            inputs = bench.drive()
            for block, values in inputs.items():
                for name, value in values.items():
                    ctx.set(ins[block][name], value)
                    rec_in[block][name].append(value)
            outputs = {block: {name: ctx.get(port) for name, port in outs[block].items()}
                       for block in blocks}
            for block, values in outputs.items():
                for name, value in values.items():
                    rec_out[block][name].append(value)
            bench.advance(outputs)
            await ctx.tick()

    simulate(top, testbench)
    return rec_in, rec_out


# The iCEBreaker's link (boards.icebreaker): narrow counters (3 bits here, so that they
# saturate), a short header queue, the CRC-32 from block RAM.
_SMALL_LINK = {"counter_bits": 3, "queue_depth": 2, "crc_ram": True}


@pytest.mark.parametrize(("seed", "timeout", "options"), [
    (21, None, {}), (22, 48, {}), (23, None, _SMALL_LINK),
    (24, 48, {"counter_bits": 1, "queue_depth": 1, "crc_ram": True}),
])
def test_link_models_match_rtl(seed, timeout, options):
    """Framer -> faulty channel (flipped bits, lost bytes, cut frames, garbage, silences) ->
    Deframer, random gaps and back-pressure: every output of both, every cycle, as the
    models; the deframer model's frames as :func:`deframe` finds them in its bytes; and only
    frames the framer sent come out. With ``options`` (a small FPGA's), the same with
    narrow counters that saturate, a shorter header queue and the CRC-32 from a table in
    block RAM."""
    max_payload, n = 24, 9000
    rng = random.Random(seed)
    frames = random_frames(rng, 140, max_payload)
    faults = {"flip": 0.002, "drop": 0.001, "cut": 0.002, "garbage": 0.004,
              "silence": 0.002 if timeout else 0.0}
    bench = LinkBench(frames, seed, faults=faults, stall_rate=0.01,
                       silence_cycles=(timeout or 0) + 20)
    rec_in, rec_out = run_link_bench(bench, n, max_payload=max_payload, timeout=timeout,
                                     **options)
    counter_bits = options.get("counter_bits", COUNTER_BITS)
    framer = FramerModel(max_payload=max_payload, counter_bits=counter_bits)
    compare_cycles(rec_out["framer"], framer.run(rec_in["framer"]), masks=LINK_MASKS,
                   what="Framer")
    deframer = DeframerModel(max_payload=max_payload, timeout=timeout,
                             counter_bits=counter_bits,
                             queue_depth=options.get("queue_depth", HEADER_QUEUE_DEPTH))
    want = deframer.run(rec_in["deframer"])
    compare_cycles(rec_out["deframer"], want, masks=LINK_MASKS, what="Deframer")
    assert bench.done and bytes(deframer.taken) == bytes(bench.channel.fed)
    counts = {name: want[name][-1] for name in COUNTERS}
    top = (1 << counter_bits) - 1
    if counter_bits < COUNTER_BITS:
        # A narrow counter sticks at its own maximum.
        assert max(max(want[name]) for name in COUNTERS) == top
        assert want["frames"][-1] == top and framer.frames == top
    if timeout is None:
        found, counters = deframe(deframer.taken, max_payload)
        assert deframer.delivered == found
        assert counts == {name: min(value, top) for name, value in counters.items()}
    else:
        assert counts["truncated"] >= min(2, top)
    # What the reader took is what was queued, and every frame is one the framer sent.
    got = bench.delivered()
    assert got == deframer.delivered[:len(got)] and len(got) >= len(deframer.delivered) - 4
    sent = [(t, seq, p) for seq, (t, p) in enumerate(f for f in frames
                                                      if len(f[1]) <= max_payload)]
    assert set(got) <= set(sent) and [s for _, s, _ in got] == sorted(s for _, s, _ in got)
    assert len(got) > len(sent) // 2
    assert all(counts[name] for name in ("header_errors", "crc_errors")), counts
    assert framer.oversize >= 1 and all(bench.channel.faults_seen[k] for k in faults
                                        if faults[k]), bench.channel.faults_seen
    assert min(deframer.waits.values()) >= 100, deframer.waits


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_deframe_matches_host_decoder(seed):
    """On the faulty streams of the deframer tests (known types only), :func:`deframe` finds
    the frames the host decoder finds once flushed, and counts each bad one as the deframer
    does."""
    rng = random.Random(seed)
    max_payload = 24
    stream, good, counts = faulty_stream(rng, max_payload, 120)
    host = FrameDecoder()
    found = host.feed(stream) + host.flush()
    frames, counters = deframe(stream, max_payload)
    assert frames == [(int(f.type), f.seq, f.payload) for f in found] == good
    assert counters == {**counts, "truncated": 0}
    assert counters["header_errors"] == host.stats.header_errors
