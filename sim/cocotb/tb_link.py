"""cocotb testbench: the generated Verilog of the link gateware (a UART pair, a framer and a
deframer, unconnected in one harness) against the models of :mod:`timebin.sim.link`, every
output in every cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb` on the ``LinkHarness`` of
``tests/test_cocotb_link.py``, whose Verilog ports are the blocks' ports prefixed with
``uart_tx_``, ``uart_rx_``, ``framer_``, ``deframer_``. Parameters (``tb_params()``):

``harness``      ``divisor``, ``max_payload``, ``timeout`` the harness was built with, and
                 optionally a small FPGA's link options: ``counter_bits``, ``queue_depth``,
                 ``crc_ram``, ``counter_dsp`` (the models take the first two; the other
                 two change no output)
``uart_cycles``  cycles of the UART test
``link_cycles``  cycles of the framer-deframer test
``seed``         seed of both

Tests, each starting with a reset:

- ``uart_loop_matches_models``: random bytes with random gaps into the UART transmitter,
  whose line reaches the receiver through :func:`~timebin.sim.link.uart.line_faults`
  (glitches, bits forced, breaks); the receiver's ``ready`` random with stalls (overruns).
  The line and ``ready`` of the transmitter against :class:`UARTTxModel`, every output of
  the receiver against :class:`UARTRxModel` on the line it saw.
- ``framer_deframer_match_models``: a :class:`~timebin.sim.link.framer.LinkBench` (random
  frames, gaps and back-pressure; a faulty channel from the framer to the deframer) drives
  both; every output of each against :class:`FramerModel` and :class:`DeframerModel` on the
  inputs it got. Only frames the framer sent may come out.

Inputs are driven at the falling edge, outputs sampled once settled (``ReadOnly``); during
reset every input is at its Amaranth ``init`` (``rx`` high, the rest 0).
"""

import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly
from timebin.gateware.link.framer import COUNTER_BITS, HEADER_QUEUE_DEPTH
from timebin.sim.cocotb.ports import reset
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.link.framer import COUNTERS, DeframerModel, FramerModel, LinkBench, random_frames
from timebin.sim.link.uart import (
    StreamSource,
    UARTRxModel,
    UARTTxModel,
    apply_line_faults,
    compare_cycles,
    line_faults,
    ready_pattern,
)

CLK_PERIOD_NS = 10
RESET_CYCLES = 4
_MASKS = {"payload": "valid", "bytes__payload": "bytes__valid",
          "header__payload": "header__valid", "payload__payload": "payload__valid"}
_UART_RX_OUTPUTS = ("valid", "payload", "framing_errors", "framing_error", "overruns",
                    "overrun", "errors")
_INPUTS = ("uart_tx_data__valid", "uart_tx_data__payload", "uart_rx_data__ready",
           *(f"framer_{name}" for name in FramerModel.INPUTS),
           *(f"deframer_{name}" for name in DeframerModel.INPUTS))



def _counter_bits(harness):
    return int(harness.get("counter_bits", COUNTER_BITS))


def _value(handle):
    return int(handle.value) if len(handle) == 1 else handle.value.to_unsigned()


async def _start(dut):
    """Start the clock (cocotb stops it at the end of each test) and reset the harness,
    inputs at their init."""
    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut, {"uart_rx_rx": 1}, zero=_INPUTS, cycles=RESET_CYCLES)


@cocotb.test()
async def uart_loop_matches_models(dut):
    p = tb_params()
    divisor, n, seed = int(p["harness"]["divisor"]), int(p["uart_cycles"]), int(p["seed"])
    rng = random.Random(seed)
    source = StreamSource([rng.getrandbits(8) for _ in range(n // (10 * divisor))], rng, 0.02)
    ready = ready_pattern(rng, n, 0.6, stall_rate=0.002,
                          stall_cycles=(2 * divisor, 30 * divisor))
    faults = line_faults(rng, n, divisor)
    await _start(dut)
    valid_h, payload_h = dut.uart_tx_data__valid, dut.uart_tx_data__payload
    taken_h, line_h, rx_h = dut.uart_tx_data__ready, dut.uart_tx_tx, dut.uart_rx_rx
    ready_h = dut.uart_rx_data__ready
    probes = {name: getattr(dut, f"uart_rx_{name}" if name not in ("valid", "payload")
                            else f"uart_rx_data__{name}") for name in _UART_RX_OUTPUTS}
    rec = {name: [] for name in ("valid", "payload", "tx", "ready", "rx")}
    got = {name: [] for name in probes}
    settled, falling = ReadOnly(), FallingEdge(dut.clk)
    t0 = time.monotonic()
    for c in range(n):
        valid, payload = source.drive()
        valid_h.value = valid
        payload_h.value = payload
        ready_h.value = ready[c]
        line = int(line_h.value)                # a register: this cycle's value already
        level = apply_line_faults(line, faults[c])
        rx_h.value = level
        await settled
        taken = int(taken_h.value)
        for name, value in (("valid", valid), ("payload", payload), ("tx", line),
                            ("ready", taken), ("rx", level)):
            rec[name].append(value)
        for name, handle in probes.items():
            got[name].append(_value(handle))
        source.advance(taken)
        await falling
    t_sim = time.monotonic() - t0

    tx_model = UARTTxModel(divisor=divisor)
    compare_cycles({"tx": rec["tx"], "ready": rec["ready"]},
                   tx_model.run(rec["valid"], rec["payload"]), what="UARTTx")
    rx_model = UARTRxModel(divisor=divisor, counter_bits=_counter_bits(p["harness"]))
    want = rx_model.run(rec["rx"], ready)
    compare_cycles(got, want, masks=_MASKS, what="UARTRx")
    assert want["framing_errors"][-1] > 0 and want["overruns"][-1] > 0
    dut._log.info("UART: %d cycles match the models (%.0f cycles/s): %d bytes sent, %d "
                  "received, %d framing errors, %d overruns", n, n / t_sim,
                  len(tx_model.taken), len(rx_model.received), want["framing_errors"][-1],
                  want["overruns"][-1])


@cocotb.test()
async def framer_deframer_match_models(dut):
    p = tb_params()
    harness = p["harness"]
    max_payload, timeout = int(harness["max_payload"]), harness["timeout"]
    n, seed = int(p["link_cycles"]), int(p["seed"])
    rng = random.Random(seed)
    frames = random_frames(rng, 140, max_payload)
    faults = {"flip": 0.002, "drop": 0.001, "cut": 0.002, "garbage": 0.004,
              "silence": 0.002 if timeout else 0.0}
    bench = LinkBench(frames, seed, faults=faults, stall_rate=0.01,
                      silence_cycles=(timeout or 0) + 20)
    models = {"framer": FramerModel, "deframer": DeframerModel}
    ins = {block: {name: getattr(dut, f"{block}_{name}") for name in model.INPUTS}
           for block, model in models.items()}
    outs = {block: {name: getattr(dut, f"{block}_{name}") for name in model.OUTPUTS}
            for block, model in models.items()}
    rec_in = {block: {name: [] for name in ins[block]} for block in models}
    rec_out = {block: {name: [] for name in outs[block]} for block in models}
    held = {block: dict.fromkeys(ins[block], 0) for block in models}
    await _start(dut)
    settled, falling = ReadOnly(), FallingEdge(dut.clk)
    t0 = time.monotonic()
    for _ in range(n):
        inputs = bench.drive()
        for block, values in inputs.items():
            for name, value in values.items():
                if held[block][name] != value:
                    ins[block][name].value = value
                    held[block][name] = value
                rec_in[block][name].append(value)
        await settled
        outputs = {block: {name: _value(handle) for name, handle in outs[block].items()}
                   for block in models}
        for block, values in outputs.items():
            for name, value in values.items():
                rec_out[block][name].append(value)
        bench.advance(outputs)
        await falling
    t_sim = time.monotonic() - t0

    bits = _counter_bits(harness)
    framer = FramerModel(max_payload=max_payload, counter_bits=bits)
    compare_cycles(rec_out["framer"], framer.run(rec_in["framer"]), masks=_MASKS,
                   what="Framer")
    deframer = DeframerModel(max_payload=max_payload, timeout=timeout, counter_bits=bits,
                             queue_depth=int(harness.get("queue_depth", HEADER_QUEUE_DEPTH)))
    want = deframer.run(rec_in["deframer"])
    compare_cycles(rec_out["deframer"], want, masks=_MASKS, what="Deframer")
    assert bench.done, "the framer did not take every frame"
    got = bench.delivered()
    sent = [(t, seq, payload) for seq, (t, payload) in
            enumerate(f for f in frames if len(f[1]) <= max_payload)]
    assert set(got) <= set(sent), "a frame came out that the framer never sent"
    assert len(got) > len(sent) // 2
    counts = {name: want[name][-1] for name in COUNTERS}
    assert counts["header_errors"] and counts["crc_errors"], counts
    assert min(deframer.waits.values()) > 0, deframer.waits
    dut._log.info("framer-deframer: %d cycles match the models (%.0f cycles/s): %d frames "
                  "sent, faults %s, deframer counters %s, waits %s", n, n / t_sim,
                  framer.frames, bench.channel.faults_seen, counts, deframer.waits)
