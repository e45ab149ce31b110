"""cocotb testbench: the generated Verilog of :class:`~timebin.gateware.tx.trivium.Trivium`
against the numba model, with random ``ready`` backpressure.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``width``        keystream bits per word (the ``width`` the component was built with)
``key``, ``iv``  80-bit port values (int, or hex string of the port value)
``n_words``      keystream words to collect (default 10_000)
``seed``         seed of the ``ready`` pattern (default 1)
``p_ready``      probability that ``ready`` is high in a cycle (default 0.6)

Ports of the Amaranth-generated top (``amaranth.back.verilog``): ``clk``, ``rst`` (synchronous,
active high), ``key[79:0]``, ``iv[79:0]``, ``load``, ``keystream__payload[width-1:0]``,
``keystream__valid``, ``keystream__ready``.
"""

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from timebin.gateware.tx.trivium import warmup_cycles
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.tx.trivium import trivium_keystream

CLK_PERIOD_NS = 10


def _port_value(value):
    return int(value, 16) if isinstance(value, str) else int(value)


def model_words(key, iv, width, n_words):
    """The first ``n_words`` keystream words of ``width`` bits (bit 0 = earliest bit)."""
    n64 = -(-n_words * width // 64)
    words = trivium_keystream(key, iv).words(n64)
    if width == 64:
        return [int(w) for w in words[:n_words]]
    bits = np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little")
    chunks = bits[:n_words * width].reshape(n_words, width).astype(np.uint64)
    weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
    return [int(w) for w in (chunks * weights).sum(axis=1, dtype=np.uint64)]


async def reset(dut, cycles=4):
    dut.rst.value = 1
    dut.load.value = 0
    dut.keystream__ready.value = 0
    dut.key.value = 0
    dut.iv.value = 0
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def keystream_matches_model_with_backpressure(dut):
    p = tb_params()
    width = int(p["width"])
    key, iv = _port_value(p["key"]), _port_value(p["iv"])
    n_words = int(p.get("n_words", 10_000))
    p_ready = float(p.get("p_ready", 0.6))
    rng = random.Random(p.get("seed", 1))
    assert len(dut.keystream__payload) == width, \
        f"DUT payload is {len(dut.keystream__payload)} bits, params say width={width}"

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut)
    assert not int(dut.keystream__valid.value), "keystream valid before any load"

    # Everything below is driven and sampled at the falling edge: the DUT's registers are
    # settled there and the values seen are the ones the next rising edge will act on.
    dut.key.value = key
    dut.iv.value = iv
    dut.load.value = 1
    await FallingEdge(dut.clk)
    dut.load.value = 0

    warmup = 0
    while not int(dut.keystream__valid.value):
        dut.keystream__ready.value = int(rng.random() < p_ready)
        warmup += 1
        assert warmup <= warmup_cycles(width) + 1, "keystream never became valid"
        await FallingEdge(dut.clk)
    assert warmup == warmup_cycles(width), \
        f"valid after {warmup} cycles, expected {warmup_cycles(width)} warm-up cycles"

    got = []
    stalls = 0
    max_cycles = 20 * n_words + 1000
    for _ in range(max_cycles):
        ready = int(rng.random() < p_ready)
        dut.keystream__ready.value = ready
        if int(dut.keystream__valid.value):
            if ready:
                got.append(dut.keystream__payload.value.to_unsigned())
                if len(got) == n_words:
                    break
            else:
                stalls += 1
        else:
            raise AssertionError(f"valid dropped after {len(got)} words")
        await FallingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.keystream__ready.value = 0
    assert len(got) == n_words, f"only {len(got)} of {n_words} words in {max_cycles} cycles"

    expected = model_words(key, iv, width, n_words)
    mismatches = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    if mismatches:
        i = mismatches[0]
        raise AssertionError(
            f"{len(mismatches)} of {n_words} words differ from the model; first at word {i}: "
            f"RTL {got[i]:#0{width // 4 + 2}x}, model {expected[i]:#0{width // 4 + 2}x}")
    dut._log.info("%d keystream words of %d bits match the model (%d stalled cycles)",
                  n_words, width, stalls)


@cocotb.test()
async def reload_restarts_keystream(dut):
    """A second ``load`` mid-stream restarts warm-up and the keystream from word 0."""
    p = tb_params()
    width = int(p["width"])
    key, iv = _port_value(p["key"]), _port_value(p["iv"])
    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    await reset(dut)
    expected = model_words(key, iv, width, 8)
    for attempt in range(2):
        dut.key.value = key
        dut.iv.value = iv
        dut.load.value = 1
        await FallingEdge(dut.clk)
        dut.load.value = 0
        dut.keystream__ready.value = 1
        got = []
        for _ in range(warmup_cycles(width) + 8):
            if int(dut.keystream__valid.value):
                got.append(dut.keystream__payload.value.to_unsigned())
            await FallingEdge(dut.clk)
        assert got == expected, f"load #{attempt + 1}: keystream differs from the model"
        # Leave the stream mid-way and load again.
    dut.keystream__ready.value = 0
