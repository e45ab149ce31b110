"""Tests of the FT245-style synchronous FIFO PHY in the Amaranth simulator against the FTDI
chip model: random traffic both ways with stalls on both sides, the documented timing to the
cycle, partial words, refused writes, bad parameters, and Verilog output."""

import itertools
import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import Const, Module, Signal, Value
from amaranth.sim import Simulator
from timebin.gateware.link.ft245 import FIFO_DEPTH, FT245SyncFIFO, _add_saturating
from timebin.sim.link.ft245 import (
    FT245Bench,
    FT245Chip,
    Stimulus,
    _port,
    expected_outcome,
    make_stimulus,
    pack_words,
    simulate_rtl,
)

WIDTHS = (8, 16, 32)

# The timing of the FT245SyncFIFO docstring, in cycles.
READ_FROM_IDLE = 4        # RXF# low in cycle c (bus idle): first byte on rx in c + 4
READ_PARKED = 3           # ... with the bus parked in read
READ_AFTER_WRITE = 5      # ... with the bus parked in write (one turnaround cycle more)
WRITE_LATENCY = 2         # byte completing a word taken in cycle c: WR# low in c + 2


def check(result, stimulus):
    """The run delivered every byte exactly once, in order, with matching counters."""
    want = expected_outcome(stimulus)
    got = result.outcome
    assert got.rx == want.rx, f"rx: {len(got.rx)} bytes, want {len(want.rx)}, or they differ"
    assert got.tx == want.tx, f"host: {len(got.tx)} bytes, want {len(want.tx)}, or they differ"
    assert got == want
    assert got.overruns == 0


# --- random traffic ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("width", WIDTHS)
def test_random_traffic_both_ways(width, seed):
    stimulus = make_stimulus(width, seed, n_rx=2000, n_tx=2000)
    result = simulate_rtl(stimulus)
    check(result, stimulus)
    chip = result.chip
    assert chip.refused > 0, "no write met TXE# going high: the stalls did not test that"
    assert result.fabric.rx_cycles and result.fabric.tx_cycles
    if width > 8:
        full = (1 << (width // 8)) - 1
        assert any(be != full for _, _, be in chip.written), "no partial word flushed"
        assert any(be != full for _, _, be in chip.read), "no partial word read"


@pytest.mark.parametrize("width", [8, 32])
def test_heavy_stalls_short_bursts(width):
    """Stalls most of the time on both sides and the bus changing direction every couple of
    cycles: still every byte once, in order."""
    stimulus = make_stimulus(width, 7, n_rx=600, n_tx=600, rxf_stall=0.3, txe_stall=0.3,
                             stall_mean=3.0, rx_ready_rate=0.3, tx_valid_rate=0.3)
    result = simulate_rtl(stimulus, max_burst=2)
    check(result, stimulus)


def test_same_seed_same_trace():
    stimulus = make_stimulus(16, 5, n_rx=300, n_tx=300)
    a, b = simulate_rtl(stimulus), simulate_rtl(stimulus)
    assert (a.cycles, a.digest) == (b.cycles, b.digest)


# --- timing, no stalls -------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_read_throughput(width):
    """RXF# low from cycle 0, bus idle: RD# from cycle 2, the first byte on rx in cycle 4,
    then a byte per cycle (for width 8, a word per cycle on the bus, RD# low throughout)."""
    n = 96
    stimulus = Stimulus(width=width, seed=0, host_to_fpga=bytes(range(n)), fpga_to_host=b"")
    result = simulate_rtl(stimulus)
    check(result, stimulus)
    assert result.fabric.rx_cycles == list(range(READ_FROM_IDLE, READ_FROM_IDLE + n))
    reads = [c for c, _, _ in result.chip.read]
    lanes = width // 8
    if width == 8:
        assert reads == list(range(2, 2 + n))
    else:
        # RD# low from cycle 2 until the buffer (FIFO_DEPTH words and the word being
        # unpacked) fills; then a word every `lanes` cycles, as fast as rx empties it.
        assert reads[:FIFO_DEPTH] == list(range(2, 2 + FIFO_DEPTH))
        steady = {b - a for a, b in itertools.pairwise(reads[n // lanes // 2:])}
        assert steady == {lanes}


@pytest.mark.parametrize("width", WIDTHS)
def test_write_throughput(width):
    """tx offered from cycle 0: a byte taken every cycle, each word written 2 cycles after
    its last byte was taken (for width 8: WR# low in cycles 2 .. n + 1)."""
    n = 96
    lanes = width // 8
    stimulus = Stimulus(width=width, seed=0, host_to_fpga=b"", fpga_to_host=bytes(range(n)))
    result = simulate_rtl(stimulus)
    check(result, stimulus)
    assert result.fabric.tx_cycles == list(range(n))
    full = (1 << lanes) - 1
    assert [(c, be) for c, _, be in result.chip.written] == \
        [(lanes * (j + 1) - 1 + WRITE_LATENCY, full) for j in range(n // lanes)]
    assert result.chip.refused == 0


@pytest.mark.parametrize("width, extra", [(16, 1), (32, 1), (32, 2), (32, 3)])
def test_partial_word_flushed_when_tx_idle(width, extra):
    """A last word with ``extra`` bytes (< lanes) goes out when tx is idle for a cycle: the
    cycle after the last byte, so it is written 3 cycles after that byte was taken, with BE
    marking its bytes."""
    lanes = width // 8
    n = 2 * lanes + extra
    data = bytes(range(0xA0, 0xA0 + n))
    stimulus = Stimulus(width=width, seed=0, host_to_fpga=b"", fpga_to_host=data)
    result = simulate_rtl(stimulus)
    check(result, stimulus)
    *_, last = result.fabric.tx_cycles
    cycle, word, be = result.chip.written[-1]
    assert be == (1 << extra) - 1
    assert word & ((1 << 8 * extra) - 1) == int.from_bytes(data[-extra:], "little")
    assert cycle == last + 1 + WRITE_LATENCY
    assert [be for _, _, be in result.chip.written[:-1]] == [(1 << lanes) - 1] * 2


@pytest.mark.parametrize("width", [16, 32])
def test_read_words_give_their_enabled_bytes(width):
    """Words from the chip with any BE give exactly their enabled bytes, lowest first
    (BE 0 gives none)."""
    lanes = width // 8
    rng = random.Random(width)
    words, expected = [], bytearray()
    for i in range(200):
        word = rng.getrandbits(width)
        be = rng.getrandbits(lanes) if i % 3 else (1 << lanes) - 1
        words.append((word, be))
        expected += bytes((word >> 8 * k) & 0xFF for k in range(lanes) if be >> k & 1)
    stimulus = Stimulus(width=width, seed=3, host_to_fpga=bytes(expected), fpga_to_host=b"",
                        rx_ready_rate=0.6, rxf_stall=0.1)
    result = simulate_rtl(stimulus, host_words=words)
    check(result, stimulus)
    assert len(result.chip.read) == len(words)


def _queue_at(cycle, words):
    """An ``on_cycle`` hook queueing ``words`` at the chip before ``cycle``."""
    def hook(bench):
        if bench.cycles == cycle:
            bench.chip.host.extend(words)
    return hook


@pytest.mark.parametrize("width", [8, 32])
def test_read_latency_with_bus_parked(width):
    """Bus parked in read (after a first burst): RXF# low in cycle c gives RD# low in c + 1
    and the byte on rx in c + 3. Parked in write: one turnaround cycle more, on rx in c + 5."""
    lanes = width // 8
    first = bytes(range(4 * lanes))
    later = bytes(range(100, 100 + 4 * lanes))
    words = pack_words(width, later)
    # Parked in read.
    stimulus = Stimulus(width=width, seed=0, host_to_fpga=first + later, fpga_to_host=b"")
    result = simulate_rtl(stimulus, host_words=pack_words(width, first),
                          on_cycle=_queue_at(40, words))
    check(result, stimulus)
    assert result.fabric.rx_cycles[len(first)] == 40 + READ_PARKED
    assert result.chip.read[len(first) // lanes][0] == 41
    # Parked in write: a few bytes written first.
    stimulus = Stimulus(width=width, seed=0, host_to_fpga=later, fpga_to_host=bytes(lanes))
    result = simulate_rtl(stimulus, host_words=[], on_cycle=_queue_at(40, words))
    check(result, stimulus)
    assert result.chip.written[-1][0] < 40
    assert result.fabric.rx_cycles[0] == 40 + READ_AFTER_WRITE
    assert result.chip.read[0][0] == 43


@pytest.mark.parametrize("width", [8, 32])
def test_write_latency_with_bus_parked_in_read(width):
    """Bus parked in read: the word completed by a byte taken in cycle c is written in
    c + 3, one turnaround cycle later than from idle or write."""
    lanes = width // 8

    def offer_late(bench):
        bench.fabric.valid_rate = 0.0 if bench.cycles < 40 else 1.0
    stimulus = Stimulus(width=width, seed=0, host_to_fpga=bytes(range(4 * lanes)),
                        fpga_to_host=bytes(range(50, 50 + 2 * lanes)))
    result = simulate_rtl(stimulus, on_cycle=offer_late)
    check(result, stimulus)
    assert result.chip.read[-1][0] < 40
    assert result.fabric.tx_cycles[0] == 40
    assert result.chip.written[0][0] == 40 + lanes - 1 + WRITE_LATENCY + 1


def test_refused_write_is_offered_again():
    """TXE# going high right after an accepted byte: the byte offered in that cycle is not
    taken, WR# goes high the cycle after, and the same byte is written once TXE# is low."""
    data = bytes(range(0x10, 0x1A))

    def hold(bench):
        if bench.cycles == 3:           # bytes written in cycles 2, 3, ...: hold 3 .. 5
            bench.chip.hold_txe(3)
    stimulus = Stimulus(width=8, seed=0, host_to_fpga=b"", fpga_to_host=data)
    result = simulate_rtl(stimulus, on_cycle=hold)
    check(result, stimulus)
    assert result.chip.refused == 1
    # TXE# high in 3 .. 5: WR# high in 4 .. 6, the refused byte written again in cycle 7.
    assert [(c, w) for c, w, _ in result.chip.written[:3]] == [(2, 0x10), (7, 0x11),
                                                               (8, 0x12)]


def test_read_stops_when_rxf_goes_high():
    """RXF# going high mid-burst: no byte taken at that edge, RD# high the cycle after,
    reading resumes after RXF# is low again; nothing lost or repeated."""
    data = bytes(range(0x40, 0x60))

    def hold(bench):
        if bench.cycles == 5:
            bench.chip.hold_rxf(2)      # RXF# high in cycles 5, 6
    stimulus = Stimulus(width=8, seed=0, host_to_fpga=data, fpga_to_host=b"")
    result = simulate_rtl(stimulus, on_cycle=hold)
    check(result, stimulus)
    reads = [c for c, _, _ in result.chip.read]
    assert reads[:5] == [2, 3, 4, 8, 9]     # RD# high in 6 and 7 (RXF# seen high in 5, 6)


@pytest.mark.parametrize("width", [8, 32])
def test_no_input_reaches_an_output_in_the_same_cycle(width):
    """Every output is a register: changing every input mid-cycle changes no output (the
    chip model and the cocotb bench rely on it)."""
    dut = FT245SyncFIFO(width=width)
    stimulus = make_stimulus(width, 11, n_rx=200, n_tx=200)
    bench = FT245Bench(stimulus)
    outputs = {name: _port(dut, name) for name in bench.output_names}
    outputs.update({name: getattr(dut, name) for name in ("rx_bytes", "tx_bytes", "overruns")})
    inputs = {name: _port(dut, name) for name in bench.input_names}
    rng = random.Random(width)
    changed = []

    async def testbench(ctx):
        for cycle in range(300):
            before = {name: ctx.get(port) for name, port in outputs.items()}
            for port in inputs.values():
                ctx.set(port, rng.getrandbits(len(Value.cast(port))))
            after = {name: ctx.get(port) for name, port in outputs.items()}
            changed.extend((cycle, name) for name in before if before[name] != after[name])
            for name, value in bench.step(before).items():
                ctx.set(inputs[name], value)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1 / 60e6)
    sim.add_testbench(testbench)
    sim.run()
    assert not changed, f"outputs following inputs combinationally: {changed[:5]}"


# --- the chip model ------------------------------------------------------------------------

IDLE = dict(rd_n=1, wr_n=1, oe_n=1, data_oe=0)


@pytest.mark.parametrize("cycles, match", [
    ([dict(IDLE, oe_n=0, data_oe=1)], "cycle 0: the FPGA drives DATA while OE# is low"),
    ([dict(IDLE, oe_n=0), dict(IDLE, data_oe=1)], "cycle 1: the FPGA drives DATA in the cycle "
                                                  "after OE# was low"),
    ([dict(IDLE, data_oe=1), dict(IDLE, oe_n=0)], "cycle 1: OE# low in the cycle after"),
    ([IDLE, dict(IDLE, rd_n=0, oe_n=0)], "cycle 1: RD# low without OE#"),
    ([dict(IDLE, rd_n=0, wr_n=0)], "cycle 0: RD# and WR# low together"),
    ([IDLE, dict(IDLE, wr_n=0)], "cycle 1: WR# low while the FPGA does not drive"),
    ([dict(IDLE, wr_n=0, data_oe=1)], "cycle 0: WR# low after a cycle with TXE# high"),
    ([dict(IDLE, oe_n=0), dict(IDLE, oe_n=0, rd_n=0)], "cycle 1: RD# low after a cycle with "
                                                       "RXF# high"),
    ([dict(IDLE, rd_n=None)], "cycle 0: rd_n is None"),
])
def test_chip_model_refuses_protocol_violations(cycles, match):
    chip = FT245Chip(8, [], seed=0)
    with pytest.raises(AssertionError, match=match):
        for pins in cycles:
            chip.cycle(**pins)


def test_chip_model_checks_write_byte_enables():
    chip = FT245Chip(32, seed=0)
    chip.cycle(**dict(IDLE, data_oe=1, data_o=0, be_o=0))
    chip.cycle(**dict(IDLE, data_oe=1, wr_n=0, data_o=0x44332211, be_o=0b0011))
    assert chip.to_host == b"\x11\x22" and chip.written == [(1, 0x44332211, 0b0011)]
    with pytest.raises(AssertionError, match=r"cycle 2: BE 0x5 on a write"):
        chip.cycle(**dict(IDLE, data_oe=1, wr_n=0, data_o=0, be_o=0b0101))


def test_chip_model_reads():
    """The chip drives the word at the head of its queue while OE# is low; it leaves the
    queue at an edge with RD# and RXF# low."""
    chip = FT245Chip(16, pack_words(16, b"\x01\x02\x03"), seed=0)
    pins = chip.cycle(**dict(IDLE, oe_n=0))
    assert (pins["rxf_n"], pins["data_i"], pins["be_i"]) == (0, 0x0201, 0b11)
    pins = chip.cycle(**dict(IDLE, oe_n=0, rd_n=0))
    assert chip.read == [(1, 0x0201, 0b11)]
    pins = chip.cycle(**dict(IDLE, oe_n=0, rd_n=0))
    assert (pins["data_i"], pins["be_i"]) == (0x03, 0b01)
    assert chip.cycle(**dict(IDLE, oe_n=0))["rxf_n"] == 1


def test_pack_words():
    assert pack_words(32, b"\x01\x02\x03\x04\x05", [3, 2]) == [(0x030201, 0b111),
                                                               (0x0504, 0b11)]
    assert pack_words(8, b"\xaa\xbb") == [(0xAA, 1), (0xBB, 1)]
    with pytest.raises(ValueError, match="add up to 4, not 5"):
        pack_words(16, b"12345", [4])


def test_stimulus_round_trips_through_params():
    stimulus = make_stimulus(16, 9, n_rx=50, n_tx=40)
    assert Stimulus.from_params(stimulus.params()) == stimulus
    assert make_stimulus(16, 9, n_rx=50, n_tx=40) == stimulus


# --- parameters and Verilog ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(width=12), ValueError, "must be 8, 16 or 32 bits, not 12"),
    (dict(width=64), ValueError, "not 64"),
    (dict(width="8"), TypeError, "must be an integer, not '8'"),
    (dict(width=True), TypeError, "not True"),
    (dict(max_burst=0), ValueError, "burst in cycles must be at least 1, not 0"),
    (dict(max_burst=(1 << 16) + 1), ValueError, "at most 65536"),
])
def test_bad_parameters_refused(assert_refused, kwargs, error, match):
    assert_refused(error, match, lambda: FT245SyncFIFO(**kwargs))


def test_model_refuses_bad_width():
    with pytest.raises(ValueError, match="not 24"):
        FT245Chip(24)


@pytest.mark.parametrize("width", WIDTHS)
def test_converts_to_verilog(width):
    text = verilog.convert(FT245SyncFIFO(width=width), name="ft245")
    assert "module ft245" in text
    for port in ("rxf_n", "txe_n", "rd_n", "wr_n", "oe_n", "siwu_n", "data_i", "data_o",
                 "data_oe", "rx__payload", "tx__ready", "rx_bytes", "tx_bytes", "overruns"):
        assert port in text
    assert ("be_o" in text) == (width > 8)


def test_byte_counter_saturates():
    """The adder behind ``tx_bytes`` (several bytes per cycle) sticks at its maximum."""
    m = Module()
    counter = Signal(3)
    _add_saturating(m, counter, Const(3, 2))
    seen = []

    async def testbench(ctx):
        for _ in range(5):
            seen.append(ctx.get(counter))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [0, 3, 6, 7, 7]
