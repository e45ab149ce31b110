"""The host-request engine (:class:`LinkController`) in Amaranth simulation against its
cycle-exact model :class:`~timebin.sim.link.controller.LinkControllerModel`: every output in
every cycle, on seeded random request streams (reads and writes of one- and two-word
registers, refused writes, lookups with random latency, descriptions, malformed and foreign
frames, a request refused for its answer's length) with gaps on the input side and
backpressure and stalls on the response side; the bus answered by a register bank model, or
by noise so that only the cycle the controller samples can make its answer. Plus what the
protocol says the responses must carry, and checks that a model off in one detail is caught.
The cocotb twin is in ``tests/test_cocotb_packetizers.py``."""

import functools
import random

import pytest
from timebin.gateware.frames import MAX_PAYLOAD, FrameType
from timebin.gateware.link.controller import LinkController
from timebin.gateware.protocol import ITEM_BYTES, RESPONSE_OF
from timebin.sim.amaranth_helpers import run_bench
from timebin.sim.link.controller import (
    LinkControllerBench,
    LinkControllerModel,
    bench_register_map,
    controller_requests,
    executed_items,
    expected_responses,
    request_accepted,
)
from timebin.sim.link.framer import pack_header
from timebin.sim.link.uart import compare_cycles

#: Bytes from 0x00 to 0xFC, then text.
DESCRIPTION = bytes(range(0, 256, 7)) + b'{"role":"alice"}'


# (seed, lookups, bus): the bus answered by a bank model or by noise.
CASES = [(71, True, "bank"), (72, True, "noise"), (73, False, "bank")]
REQUESTS = 90
#: The iCEBreaker's controller (boards.icebreaker): the description in block RAM, narrow
#: counters (2 bits here, so that they saturate).
SMALL = {"description_ram": True, "counter_bits": 2}


@functools.cache
def controller_run(seed, lookups, bus, small=False):
    rng = random.Random(seed)
    regs = bench_register_map()
    requests = controller_requests(rng, REQUESTS, regs, long_rate=0.01)
    # At least one request refused for its answer's length, one just short of it.
    requests.insert(REQUESTS // 2, (FrameType.REG_READ_REQ, bytes(2 * (MAX_PAYLOAD // 4 + 1))))
    requests.insert(REQUESTS // 3, (FrameType.REG_WRITE_REQ, bytes(6 * 40)))
    bench = LinkControllerBench(requests, seed, lookups=lookups,
                                register_map=regs if bus == "bank" else None)
    options = SMALL if small else {}
    dut = LinkController(description=DESCRIPTION, lookups=lookups, **options)
    model = LinkControllerModel(description=DESCRIPTION, lookups=lookups, **options)
    rec_in, rec_out = run_bench(dut, bench, model, 60_000)
    return requests, bench, rec_in, rec_out


def test_small_controller_matches_model():
    """The iCEBreaker's options: the description read from block RAM a cycle ahead gives
    the same bytes in the same cycles (as the model, which has no such option), and 2-bit
    counters stick at 3."""
    requests, bench, rec_in, rec_out = controller_run(74, True, "bank", small=True)
    model = LinkControllerModel(description=DESCRIPTION, lookups=True, **SMALL)
    compare_cycles(rec_out, model.run(rec_in), what="LinkController")
    assert bench.done and model.events["describe"] >= 2
    want = expected_responses(requests, bench.answers, DESCRIPTION, lookups=True)
    assert bench.delivered() == want
    assert set(rec_out["requests"]) == set(rec_out["bad_requests"]) == {0, 1, 2, 3}


@pytest.mark.parametrize(("seed", "lookups", "bus"), CASES)
def test_controller_matches_model(seed, lookups, bus):
    """Every output, every cycle; the controller executed the requests' items in order and
    answered each request as the protocol says; the run reached every kind of request and
    of refusal, stalls on every handshake, and (with a bank) refused writes and two-word
    registers."""
    requests, bench, rec_in, rec_out = controller_run(seed, lookups, bus)
    model = LinkControllerModel(description=DESCRIPTION, lookups=lookups)
    compare_cycles(rec_out, model.run(rec_in), what="LinkController")

    assert bench.done
    assert bench.items == executed_items(requests, lookups=lookups)
    assert len(bench.answers) == len(bench.items)
    want = expected_responses(requests, bench.answers, DESCRIPTION, lookups=lookups)
    assert bench.delivered() == want
    assert all(n == len(p) for _, n, p in bench.frames)
    known = [r for r in requests if request_accepted(r[0], len(r[1]), lookups=lookups)
             is not None]
    assert rec_out["requests"][-1] == len(requests)
    assert rec_out["bad_requests"][-1] == len(requests) - sum(
        bool(request_accepted(t, len(p), lookups=lookups)) for t, p in requests)
    assert len(want) == len(known)

    events = model.events
    wanted = ["read", "write", "describe", "refused", "not_request", "start_stall",
              "response_stall", "collect_gap", "drain_bytes"]
    wanted += ["lookup", "act_stall", "result_wait"] if lookups else []
    wanted += ["write_refused"]
    missing = [event for event in wanted if not events[event]]
    assert not missing, f"the run never reached {missing}: {dict(events)}"
    if bus == "bank":
        counts = bench.bank.counts
        assert counts["committed"] and counts["hi_reads"] and counts["cleared"], counts
        assert {"rw", "ro", "unmapped"} <= set(counts["refused"]), counts
    if not lookups:
        assert any(t == FrameType.SYMBOL_LOOKUP_REQ and p for t, p in requests)


def test_model_timing():
    """With nothing waiting, a read of two items: the header is taken in cycle 0, its length
    divided by the item size in cycles 1 to 16 and the request accepted in cycle 17, the
    start shown in cycle 18; each item takes its 2 bytes, aligns, shows ``re`` (cycles 22
    and 31), takes ``rdata`` in the next cycle and sends its 4 bytes; the header of the next
    request is taken the cycle after the last byte."""
    model = LinkControllerModel(description=b"x")
    payload = [0x34, 0x12, 0x78, 0x56]
    header = pack_header(FrameType.REG_READ_REQ, 0, len(payload))
    trace = []
    for cycle in range(56):
        out = model.step(header__valid=1, header__payload=header, payload__valid=1,
                         payload__payload=payload[0] if payload else 0, start__ready=1,
                         response__ready=1, bus__rdata=0xA0B0C0D0 + cycle)
        if out["payload__ready"] and payload:
            payload.pop(0)
        trace.append(out)
    assert [c for c, o in enumerate(trace) if o["header__ready"]] == [0, 37]
    assert [c for c, o in enumerate(trace) if o["start__valid"]] == [18, 55]
    assert [(c, o["bus__addr"]) for c, o in enumerate(trace) if o["bus__re"]] == \
        [(22, 0x1234), (31, 0x5678)]
    assert [o["response__payload"] for o in trace[24:28] + trace[33:37]] == \
        [0xE7, 0xC0, 0xB0, 0xA0, 0xF0, 0xC0, 0xB0, 0xA0]
    assert trace[-1]["requests"] == 2 and trace[-1]["bad_requests"] == 0


# --- a model off in one detail is caught ---------------------------------------------------

class LateBusModel(LinkControllerModel):
    """Takes ``rdata`` and ``werr`` a cycle late."""

    def _act(self, v):
        self._bus = v
        super()._act(v)

    def _wait(self, v):
        super()._wait({**v, "bus__rdata": self._bus["bus__rdata"],
                       "bus__werr": self._bus["bus__werr"]})


class EarlyCountModel(LinkControllerModel):
    """Counts a refused request as it is decided, not as its payload is drained."""

    def _decided(self, accepted):
        super()._decided(accepted)
        if self.state == "drain":
            self.bad_requests += 1

    def _drain(self, v):
        before = self.bad_requests
        super()._drain(v)
        self.bad_requests = before


class GreedyDrainModel(LinkControllerModel):
    """Keeps ``payload__ready`` high in ``drain`` after the last byte."""

    def outputs(self):
        out = super().outputs()
        if self.state == "drain":
            out["payload__ready"] = 1
        return out


class RomOffByOneModel(LinkControllerModel):
    """Shows the description from its second byte."""

    def outputs(self):
        out = super().outputs()
        if self.state == "describe":
            out["response__payload"] = self.description[
                (self.rom_address + 1) % len(self.description)]
        return out


class StrictLengthModel(LinkControllerModel):
    """Refuses a request whose answer fills a frame exactly."""

    def _decide(self, v):
        super()._decide(v)
        if self.state == "start" and self.reply_length == MAX_PAYLOAD:
            self._decided(False)


@pytest.mark.parametrize("mutant", [LateBusModel, EarlyCountModel, GreedyDrainModel,
                                    RomOffByOneModel])
def test_wrong_model_is_caught(mutant):
    """On the recorded run with a noisy bus, each mutant differs from the gateware."""
    _, _, rec_in, rec_out = controller_run(72, True, "noise")
    model = mutant(description=DESCRIPTION, lookups=True)
    with pytest.raises(AssertionError, match="LinkController: .* in cycle"):
        compare_cycles(rec_out, model.run(rec_in), what="LinkController")


def test_longest_answers():
    """Reads and lookups whose answers fill a frame (a read's exactly) are executed, one item
    more is refused; the model agrees with the gateware every cycle, and a model refusing
    the exactly full frame is caught."""
    size = {t: s for t, (s, _) in ITEM_BYTES.items()}
    most = {t: MAX_PAYLOAD // out for t, (_, out) in ITEM_BYTES.items()}
    read, lookup = FrameType.REG_READ_REQ, FrameType.SYMBOL_LOOKUP_REQ
    assert most[read] * ITEM_BYTES[read][1] == MAX_PAYLOAD
    requests = [(t, bytes(size[t] * (most[t] + extra)))
                for t in (read, lookup) for extra in (0, 1)]
    assert [request_accepted(t, len(p), lookups=True) for t, p in requests] == \
        [True, False, True, False]
    bench = LinkControllerBench(requests, 5, lookups=True, gap_rate=0.0, ready_rate=1.0,
                                stall_rate=0.0, lookup_ready_rate=1.0, max_latency=1)
    dut = LinkController(description=DESCRIPTION, lookups=True)
    model = LinkControllerModel(description=DESCRIPTION, lookups=True)
    rec_in, rec_out = run_bench(dut, bench, model, 60_000)
    compare_cycles(rec_out, model.run(rec_in), what="LinkController")
    assert [(t, len(p)) for t, p in bench.delivered()] == \
        [(RESPONSE_OF[t], most[t] * ITEM_BYTES[t][1] if extra == 0 else 0)
         for t in (read, lookup) for extra in (0, 1)]
    assert bench.delivered() == expected_responses(requests, bench.answers, DESCRIPTION,
                                                   lookups=True)
    with pytest.raises(AssertionError, match="LinkController: .* in cycle"):
        compare_cycles(rec_out, StrictLengthModel(description=DESCRIPTION, lookups=True)
                       .run(rec_in), what="LinkController")
