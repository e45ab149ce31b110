"""cocotb testbench: the generated Verilog of the board's frame sources (a
:class:`~timebin.gateware.link.controller.DetectionPacketizer`, an
:class:`~timebin.gateware.link.controller.ItemPacketizer`, a
:class:`~timebin.gateware.link.controller.FrameMux` and an
:class:`~timebin.gateware.link.controller.AlarmReporter`) and of the host-request engine (a
:class:`~timebin.gateware.link.controller.LinkController`), unconnected in one harness,
against the models of :mod:`timebin.sim.link.controller`, every output in every cycle from
reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb` on the ``PacketizerHarness`` of
``tests/test_cocotb_packetizers.py``, whose Verilog ports are the blocks' ports prefixed with
``detections_``, ``items_``, ``mux_``, ``alarms_``, ``controller_``. Parameters
(``tb_params()``):

``harness``  the harness's parameters: ``max_words``, ``item_bits``, ``max_items``,
             ``timeout`` (both packetizers' register reset value), ``sources``, ``width``,
             ``description`` (the controller's, hex), ``lookups``
``seed``     seed of every test
``blocks``   compressed record stream blocks for the detection packetizer
``items``    items for the item packetizer
``frames``   frames per mux source
``alarm_cycles``  cycles of the alarm test in which the alarms change
``requests`` requests for the controller (:func:`controller_requests`, and one refused for
             its answer's length)

Tests, each starting with a reset (the other blocks' inputs held at 0): one per block, driven
by the benches of :mod:`timebin.sim.link.controller` (:class:`PacketizerBench`,
:class:`FrameMuxBench`, :class:`AlarmBench`, :class:`LinkControllerBench` with its bus
answered by a register bank model) until done, as the Amaranth-simulation twins in
``tests/test_link_packetizers.py`` and ``tests/test_link_controller_model.py`` do; then the
block's model on the inputs the block got, compared every cycle, and the frames checked as
the protocol says.

Inputs are driven at the falling edge, outputs sampled once settled (``ReadOnly``); during
reset the ``timeout`` registers are at their Amaranth ``init``, every other input at 0.
"""

import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly
from timebin.gateware.frames import MAX_PAYLOAD, FrameType
from timebin.gateware.link.framer import COUNTER_BITS
from timebin.gateware.protocol import POINTER_BYTES
from timebin.sim.cocotb.ports import reset
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.link.controller import (
    QUIET_CYCLES,
    AlarmBench,
    AlarmReporterModel,
    DetectionPacketizerModel,
    FrameMuxBench,
    FrameMuxModel,
    ItemPacketizerModel,
    LinkControllerBench,
    LinkControllerModel,
    PacketizerBench,
    bench_register_map,
    controller_requests,
    detection_blocks,
    executed_items,
    expected_responses,
    frame_pointers,
)
from timebin.sim.link.uart import compare_cycles

CLK_PERIOD_NS = 10
RESET_CYCLES = 4
TAIL_CYCLES = 40
TIMEOUTS = (0, 1, 2, 3, 7, 20)


def _value(handle):
    return int(handle.value) if len(handle) == 1 else handle.value.to_unsigned()


def _models(h):
    return {"detections": DetectionPacketizerModel(max_words=h["max_words"],
                                                   timeout=h["timeout"]),
            "items": ItemPacketizerModel(item_bits=h["item_bits"],
                                         frame_type=FrameType.SIFT_RESULTS,
                                         max_items=h["max_items"], timeout=h["timeout"]),
            "mux": FrameMuxModel(h["sources"]),
            "alarms": AlarmReporterModel(h["width"], counter_bits=int(
                h.get("link", {}).get("counter_bits", COUNTER_BITS))),
            "controller": LinkControllerModel(description=bytes.fromhex(h["description"]),
                                              lookups=h["lookups"], **h.get("link", {}))}


async def _start(dut, models, timeout):
    """Start the clock (cocotb stops it at the end of each test) and reset the harness:
    the ``timeout`` registers at ``timeout``, every other input 0."""
    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    settings = {f"{block}_timeout": timeout for block in ("detections", "items")}
    zero = [f"{block}_{name}" for block, model in models.items() for name in model.INPUTS
            if f"{block}_{name}" not in settings]
    await reset(dut, settings, zero=zero, cycles=RESET_CYCLES)


async def _run(dut, block, model, bench, max_cycles):
    """Drive block ``block`` from ``bench`` until it is done and :data:`TAIL_CYCLES` more (at
    most ``max_cycles``); compare every output of the block with ``model`` on the inputs it
    got. Returns the recorded inputs and outputs."""
    ins = {name: getattr(dut, f"{block}_{name}") for name in model.INPUTS}
    outs = {name: getattr(dut, f"{block}_{name}") for name in model.OUTPUTS}
    rec_in = {name: [] for name in ins}
    rec_out = {name: [] for name in outs}
    held = {}
    settled, falling = ReadOnly(), FallingEdge(dut.clk)
    tail, t0 = TAIL_CYCLES, time.monotonic()
    for _ in range(max_cycles):
        for name, value in bench.drive().items():
            if held.get(name) != value:
                ins[name].value = value
                held[name] = value
            rec_in[name].append(value)
        await settled
        outputs = {name: _value(handle) for name, handle in outs.items()}
        for name, value in outputs.items():
            rec_out[name].append(value)
        bench.advance(outputs)
        await falling
        tail -= bench.done
        if tail == 0:
            break
    else:
        raise AssertionError(f"{block}: bench not done after {max_cycles} cycles")
    n, t_sim = len(rec_in[model.INPUTS[0]]), time.monotonic() - t0
    compare_cycles(rec_out, model.run(rec_in), what=type(model).__name__)
    dut._log.info("%s: %d cycles match %s (%.0f cycles/s)", block, n, type(model).__name__,
                  n / t_sim)
    return rec_in, rec_out


@cocotb.test()
async def detection_packetizer_matches_model(dut):
    p = tb_params()
    h, seed = p["harness"], int(p["seed"])
    models = _models(h)
    words, starts = detection_blocks(random.Random(seed), int(p["blocks"]))
    bench = PacketizerBench(words, seed, source="words", timeouts=TIMEOUTS)
    await _start(dut, models, h["timeout"])
    model = models["detections"]
    await _run(dut, "detections", model, bench, 40 * len(words) + 2000)
    frames = bench.delivered()
    counts = [(n - POINTER_BYTES) // 4 for _, n, _ in frames]
    pointers = [int.from_bytes(payload[:POINTER_BYTES], "little") for _, _, payload in frames]
    got = [int.from_bytes(payload[i:i + 4], "little") for _, n, payload in frames
           for i in range(POINTER_BYTES, n, 4)]
    assert got == words, "the frames do not carry the words in order"
    assert list(zip(pointers, counts, strict=True)) == frame_pointers(counts, starts)
    for event in ("full", "timeout", "timeout_0", "timeout_1", "queue_full", "closed_full"):
        assert model.events[event], (event, dict(model.events))
    dut._log.info("detections: %d words in %d frames, %s", len(words), len(frames),
                  dict(model.events))


@cocotb.test()
async def item_packetizer_matches_model(dut):
    p = tb_params()
    h, seed = p["harness"], int(p["seed"])
    models = _models(h)
    rng = random.Random(seed + 1)
    items = [rng.getrandbits(h["item_bits"]) for _ in range(int(p["items"]))]
    bench = PacketizerBench(items, seed + 1, source="items", timeouts=TIMEOUTS)
    await _start(dut, models, h["timeout"])
    model = models["items"]
    await _run(dut, "items", model, bench, 40 * len(items) + 2000)
    size = -(-h["item_bits"] // 8)
    got = [int.from_bytes(payload[i:i + size], "little") for _, _, payload in bench.delivered()
           for i in range(0, len(payload), size)]
    assert got == items, "the frames do not carry the items in order"
    for event in ("full", "timeout", "queue_full", "closed_full"):
        assert model.events[event], (event, dict(model.events))


@cocotb.test()
async def frame_mux_matches_model(dut):
    p = tb_params()
    h, seed = p["harness"], int(p["seed"])
    models = _models(h)
    rng = random.Random(seed + 2)
    frames = [[(rng.getrandbits(8), bytes(rng.getrandbits(8) for _ in range(
        rng.choice((0, 0, 1, 2, rng.randint(0, 12)))))) for _ in range(int(p["frames"]))]
        for _ in range(h["sources"])]
    bench = FrameMuxBench(frames, seed + 2)
    await _start(dut, models, h["timeout"])
    await _run(dut, "mux", models["mux"], bench, 200 * sum(map(len, frames)) + 2000)
    position = [0] * h["sources"]
    for s, (type_, _, payload) in zip(bench.taken, bench.out, strict=True):
        assert (type_, bytes(payload)) == frames[s][position[s]]
        position[s] += 1
    assert position == [len(f) for f in frames]


@cocotb.test()
async def alarm_reporter_matches_model(dut):
    p = tb_params()
    h, seed = p["harness"], int(p["seed"])
    models = _models(h)
    n = int(p["alarm_cycles"])
    bench = AlarmBench(h["width"], seed + 3, active_cycles=n)
    await _start(dut, models, h["timeout"])
    model = models["alarms"]
    await _run(dut, "alarms", model, bench, n + QUIET_CYCLES + TAIL_CYCLES)
    assert len(bench.reports) == len(model.masks) > 10
    assert [int.from_bytes(payload, "little") for _, _, payload in bench.reports] == \
        model.masks
    assert all(t == FrameType.ALARM for t, _, _ in bench.reports)


@cocotb.test()
async def link_controller_matches_model(dut):
    p = tb_params()
    h, seed = p["harness"], int(p["seed"])
    models = _models(h)
    regs = bench_register_map()
    requests = controller_requests(random.Random(seed + 4), int(p["requests"]), regs)
    requests.append((FrameType.REG_READ_REQ, bytes(2 * (MAX_PAYLOAD // 4 + 1))))
    bench = LinkControllerBench(requests, seed + 4, lookups=h["lookups"], register_map=regs)
    await _start(dut, models, h["timeout"])
    model = models["controller"]
    await _run(dut, "controller", model, bench, 400 * len(requests) + 6000)
    assert bench.items == executed_items(requests, lookups=h["lookups"])
    assert bench.delivered() == expected_responses(requests, bench.answers, model.description,
                                                   lookups=h["lookups"])
    events = ["read", "write", "write_refused", "describe", "refused", "not_request"]
    events += ["lookup", "result_wait"] if h["lookups"] else []
    for event in events:
        assert model.events[event], (event, dict(model.events))
    dut._log.info("controller: %d requests, %s", len(requests), dict(model.events))
