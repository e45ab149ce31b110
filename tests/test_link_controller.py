"""Tests of the board's frame sources: the frame mux under contention and the item
packetizer of a loopback board's SIFT_RESULTS, with random valid and ready patterns."""

import random

import pytest
from amaranth.hdl import Value
from timebin.gateware.frames import FrameType
from timebin.gateware.link.controller import FrameMux, ItemPacketizer
from timebin.sim.amaranth_helpers import simulate


def _handshake(ctx, port):
    return ctx.get(port.valid) and ctx.get(port.ready)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mux_passes_whole_frames_and_only_the_winner_sees_ready(seed):
    """Three sources offer frames at random; every start a source sees accepted goes out, its
    bytes follow it unmixed, and no source's start is taken while another's frame passes."""
    rng = random.Random(seed)
    sources = 3
    dut = FrameMux(sources)
    frames = [[(s, n, [rng.randrange(256) for _ in range(n)])
               for n in (rng.randrange(0, 6) for _ in range(12))] for s in range(sources)]
    out = []

    async def bench(ctx):
        pending = [list(f) for f in frames]
        sending = [None] * sources        # (bytes left) of the frame a source has started
        current = None
        for _ in range(3000):
            starts = [getattr(dut, f"start_{s}") for s in range(sources)]
            payloads = [getattr(dut, f"payload_{s}") for s in range(sources)]
            for s in range(sources):
                offer = sending[s] is None and pending[s] and rng.random() < 0.6
                ctx.set(starts[s].valid, bool(offer))
                if offer:
                    ctx.set(starts[s].payload, {"type": FrameType.ALARM,
                                                "length": pending[s][0][1]})
                busy = sending[s] is not None and bool(sending[s]) and rng.random() < 0.7
                ctx.set(payloads[s].valid, busy)
                if busy:
                    ctx.set(payloads[s].payload, sending[s][0])
            ctx.set(dut.start.ready, rng.random() < 0.7)
            ctx.set(dut.payload.ready, rng.random() < 0.7)
            taken = [s for s in range(sources) if _handshake(ctx, starts[s])]
            assert len(taken) <= 1, f"starts of sources {taken} accepted in one cycle"
            if _handshake(ctx, dut.start):
                assert taken, "the mux passed a start no source saw accepted"
                length = ctx.get(dut.start.payload.length)
                s = taken[0]
                assert length == pending[s][0][1]
                current = [s, length, []]
                sending[s] = list(pending[s].pop(0)[2])
                if length == 0:
                    out.append((s, 0, []))
                    sending[s], current = None, None
            else:
                assert not taken, f"source {taken} saw its start taken, the framer did not"
            if _handshake(ctx, dut.payload):
                s = current[0]
                assert _handshake(ctx, payloads[s])
                assert [p for p in range(sources) if _handshake(ctx, payloads[p])] == [s]
                current[2].append(ctx.get(dut.payload.payload))
                sending[s].pop(0)
                if len(current[2]) == current[1]:
                    out.append(tuple(current))
                    sending[s], current = None, None
            await ctx.tick()
        assert not any(pending) and current is None, "frames left unsent"

    simulate(dut, bench)
    for s in range(sources):
        assert [f for f in out if f[0] == s] == [(s, n, b) for _, n, b in frames[s]]


@pytest.mark.parametrize("max_items,timeout", [(4, 3), (5, 0), (16, 40)])
def test_item_packetizer_frames_every_item_in_order(max_items, timeout):
    """Items of 20 bits (3 bytes each, LSB first) with random gaps and random backpressure
    from the mux: the frames carry every item once, in order, at most ``max_items`` a frame,
    and a frame closes after ``timeout`` idle cycles."""
    rng = random.Random(max_items * 100 + timeout)
    dut = ItemPacketizer(item_bits=20, frame_type=FrameType.SIFT_RESULTS,
                         max_items=max_items, timeout=timeout)
    items = [rng.randrange(1 << 20) for _ in range(300)]
    frames = []

    async def bench(ctx):
        queue, current = list(items), None
        for cycle in range(30_000):
            burst = (cycle // 200) % 2 == 0          # bursts, then silences that time out
            offer = bool(queue) and burst and rng.random() < 0.8
            ctx.set(dut.items.valid, offer)
            if offer:
                ctx.set(dut.items.payload, queue[0])
            ctx.set(dut.start.ready, rng.random() < 0.5)
            ctx.set(dut.payload.ready, rng.random() < 0.6)
            if _handshake(ctx, dut.items):
                queue.pop(0)
            if _handshake(ctx, dut.start):
                assert current is None
                assert ctx.get(dut.start.payload.type) == FrameType.SIFT_RESULTS
                current = [ctx.get(dut.start.payload.length), []]
                assert 0 < current[0] <= 3 * max_items and current[0] % 3 == 0
            if _handshake(ctx, dut.payload):
                current[1].append(ctx.get(dut.payload.payload))
                if len(current[1]) == current[0]:
                    frames.append(current[1])
                    current = None
            await ctx.tick()
            if not queue and current is None and sum(len(f) for f in frames) == 3 * len(items):
                break
        assert not queue and current is None
        assert ctx.get(dut.frames) == len(frames)
        assert ctx.get(dut.items_framed) == len(items)

    simulate(dut, bench)
    got = [int.from_bytes(bytes(f[i:i + 3]), "little") for f in frames
           for i in range(0, len(f), 3)]
    assert got == items
    assert max(len(f) for f in frames) == 3 * max_items
    assert min(len(f) for f in frames) < 3 * max_items, "no frame closed on its timeout"


def test_item_packetizer_refuses_bad_sizes():
    with pytest.raises(ValueError, match="Items per frame"):
        ItemPacketizer(item_bits=72, frame_type=FrameType.SIFT_RESULTS, max_items=0)
    with pytest.raises(ValueError, match="Item width"):
        ItemPacketizer(item_bits=0, frame_type=FrameType.SIFT_RESULTS)
    packetizer = ItemPacketizer(item_bits=72, frame_type=FrameType.SIFT_RESULTS)
    packetizer._MustUse__silence = True         # built to look at, not to elaborate
    assert Value.cast(packetizer.items.payload).shape().width == 72
