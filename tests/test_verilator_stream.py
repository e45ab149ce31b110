"""The Verilator stream harness: long runs of generated Verilog against numpy models, wide
ports, mid-stream reset, constants, and the checks of port names and values."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from timebin.gateware.rx.merge import RecordMerge
from timebin.sim.amaranth_helpers import simulate
from timebin.sim.rx.merge import RecordMergeModel, pack_binned, unpack_detections
from timebin.sim.toolchain import ToolchainError, verilator_root
from timebin.sim.verilator_stream import build_stream, cxx_name, run_stream

FIELDS = ("index", "phase", "channel", "cls", "alarm")
WIDE = 130
COUNT_INIT = 5
COUNT_BITS = 16


@pytest.fixture(autouse=True, scope="module")
def _verilator():
    try:
        verilator_root()
    except ToolchainError as exc:
        pytest.skip(f"Verilator is not installed: {exc}")


class WideRegister(wiring.Component):
    """A 130-bit register, a counter advancing by ``step``, and combinational outputs of the
    inputs of the same cycle (to see when outputs are sampled)."""

    data_in:  In(WIDE)
    step:     In(8, init=1)
    word:     In(64)
    data_out: Out(WIDE)
    count:    Out(COUNT_BITS, init=COUNT_INIT)
    odd:      Out(1)
    word_inv: Out(64)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [
            self.data_out.eq(self.data_in),
            self.count.eq(self.count + self.step),
        ]
        m.d.comb += [
            self.odd.eq(self.data_in[0]),
            self.word_inv.eq(~self.word),
        ]
        return m


@pytest.fixture(scope="module")
def wide():
    return build_stream(WideRegister(), name="wide_register")


def wide_expected(data_in, rst, step=1):
    """``data_out`` and ``count`` in each cycle, before its edge, from reset."""
    data_out, count = 0, COUNT_INIT
    seen = []
    for value, reset in zip(data_in, rst, strict=True):
        seen.append((data_out, count))
        if reset:
            data_out, count = 0, COUNT_INIT
        else:
            data_out, count = value, (count + step) % (1 << COUNT_BITS)
    return seen


def random_wide(rng, n):
    return [int.from_bytes(rng.bytes(17), "little") >> (17 * 8 - WIDE) for _ in range(n)]


# --- against models ---

def test_record_merge_matches_model():
    """200k cycles of random slots, alarm and backpressure (the FIFOs overflow): the records
    taken (valid & ready) and the final counters are the model's."""
    channels, span, n = 4, 2, 200_000
    rng = np.random.default_rng(7)
    valid = rng.random((n, channels)) < 0.2
    index = rng.integers(0, 1 << 63, (n, channels), dtype=np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, (n, channels), dtype=np.uint64)
    phase = rng.integers(0, span, (n, channels))
    cls = rng.integers(0, 3, (n, channels))
    alarm = rng.random(n) < 0.1
    ready = rng.random(n) < 0.8
    ready[n // 2:n // 2 + 500] = False
    params = {"channels": channels, "uis_per_symbol": span}

    result = run_stream(
        RecordMerge(**params), name="record_merge",
        inputs={"binned": pack_binned(span, valid, index, phase, cls), "alarm": alarm,
                "records__ready": ready},
        event_when=("records__valid", "records__ready"), events=["records__payload"],
        trace=["overflow"])
    model = RecordMergeModel(**params).run(valid, index, phase, cls, alarm, ready)

    assert result.cycles == n
    taken = model.valid & ready
    np.testing.assert_array_equal(result.event_cycles, np.flatnonzero(taken))
    records = unpack_detections(list(result.events["records__payload"]))
    for name in FIELDS:
        np.testing.assert_array_equal(records[name], getattr(model, name)[taken], err_msg=name)
    np.testing.assert_array_equal(result.trace["overflow"], model.overflow)
    overflows = [(result.final["overflows"] >> (32 * k)) & 0xFFFF_FFFF for k in range(channels)]
    assert overflows == model.overflows[-1].tolist() and min(overflows) > 0
    assert result.final["records_out"] == model.records_out[-1] == taken[:-2].sum()
    assert result.final["records__valid"] == model.valid[-1]
    print(f"RecordMerge: {result.cycles_per_s / 1e6:.2f} M cycles/s under Verilator")


def test_same_cycles_as_amaranth_simulator(wide):
    """Inputs set, outputs read, then the edge: the values of an Amaranth testbench, reset
    mid-stream included."""
    n = 300
    rng = np.random.default_rng(3)
    data_in = random_wide(rng, n)
    rst = np.zeros(n, bool)
    rst[[100, 101, 250]] = True
    words = rng.integers(0, 1 << 64, n, dtype=np.uint64)
    outputs = ("data_out", "count", "odd", "word_inv")
    result = wide.run(inputs={"data_in": data_in, "word": words, "rst": rst}, trace=outputs)

    dut = WideRegister()
    top = Module()
    top.domains.sync = sync = ClockDomain("sync")        # to drive its reset
    top.submodules.dut = dut
    got = {name: [] for name in outputs}

    async def testbench(ctx):
        for cycle in range(n):
            ctx.set(dut.data_in, data_in[cycle])
            ctx.set(dut.word, int(words[cycle]))
            ctx.set(sync.rst, int(rst[cycle]))
            for name in outputs:
                got[name].append(ctx.get(getattr(dut, name)))
            await ctx.tick()

    simulate(top, testbench)
    for name in outputs:
        assert list(result.trace[name]) == got[name], name
    assert result.trace["count"][102] == COUNT_INIT


# --- wide ports, reset, constants ---

def test_wide_ports(wide):
    """A 130-bit input as Python ints and as (N, 17) little-endian bytes; events of a wide
    output as ints and as bytes; 64-bit ports as uint64."""
    n = 20_000
    rng = np.random.default_rng(11)
    data_in = random_wide(rng, n)
    data_in[:3] = [(1 << WIDE) - 1, 1 << 64, 1 << 129]
    rst = np.zeros(n, bool)
    expected = wide_expected(data_in, rst)
    raw = np.frombuffer(b"".join(v.to_bytes(17, "little") for v in data_in),
                        np.uint8).reshape(n, 17)
    words = np.full(n, 0x0123_4567_89AB_CDEF, np.uint64)
    for values in (data_in, np.array(data_in, object), raw):
        result = wide.run(inputs={"data_in": values, "word": words},
                          trace=["data_out", "count", "word_inv"],
                          event_when="odd", events=["data_out"])
        assert list(result.trace["data_out"]) == [out for out, _ in expected]
        assert result.trace["count"].dtype == np.uint64
        np.testing.assert_array_equal(result.trace["count"], [c for _, c in expected])
        np.testing.assert_array_equal(result.trace["word_inv"], ~words)
        odd = [c for c in range(n) if data_in[c] & 1]
        np.testing.assert_array_equal(result.event_cycles, odd)
        assert list(result.events["data_out"]) == [expected[c][0] for c in odd]
        assert result.final["data_out"] == expected[-1][0]
        assert result.final["count"] == expected[-1][1]

    result = wide.run(inputs={"data_in": raw}, trace=["data_out"], wide_as_bytes=True)
    assert result.trace["data_out"].shape == (n, 17)
    np.testing.assert_array_equal(result.trace["data_out"][1:], raw[:-1])


def test_reset_mid_stream(wide):
    n = 5_000
    rng = np.random.default_rng(5)
    data_in = random_wide(rng, n)
    rst = rng.random(n) < 0.01
    rst[1000:1010] = True
    result = wide.run(inputs={"data_in": data_in, "rst": rst}, trace=["data_out", "count"])
    expected = wide_expected(data_in, rst)
    assert list(result.trace["data_out"]) == [out for out, _ in expected]
    np.testing.assert_array_equal(result.trace["count"], [c for _, c in expected])
    assert (result.trace["count"][1001:1011] == COUNT_INIT).all()


def test_constants_override_init(wide):
    """``step`` holds its init (1) unless given; a constant holds from before reset."""
    n = 70_000                                          # the 16-bit counter wraps
    for constants, step in ((None, 1), ({"step": 3}, 3), ({"step": 0}, 0)):
        result = wide.run(inputs={}, cycles=n, constants=constants, trace=["count"],
                          reset_cycles=1)
        want = (COUNT_INIT + step * np.arange(n)) % (1 << COUNT_BITS)
        np.testing.assert_array_equal(result.trace["count"], want)
        assert result.final["count"] == want[-1]
    assert wide.run(inputs={}, cycles=0).final["count"] == COUNT_INIT


# --- checks ---

@pytest.mark.parametrize(("kwargs", "match"), [
    ({"inputs": {"data_inn": [1]}}, "'data_inn' is not a port"),
    ({"inputs": {"data_out": [1]}}, "'data_out' is an output port"),
    ({"inputs": {"clk": [1]}}, "'clk'"),
    ({"inputs": {"data_in": [1 << WIDE]}}, f"'data_in': {1 << WIDE} in cycle 0 .* 130"),
    ({"inputs": {"data_in": [0, -1]}}, "'data_in': -1 in cycle 1"),
    ({"inputs": {"step": np.array([3, 256])}}, "'step': 256 in cycle 1 .* 8"),
    ({"inputs": {"step": [0.5]}}, "'step' must hold integers"),
    ({"inputs": {"data_in": np.zeros((2, 16), np.uint8)}}, "'data_in': a 2-D array"),
    ({"inputs": {"data_in": np.full((2, 17), 0xFF, np.uint8)}}, "'data_in': .* cycle 0"),
    ({"inputs": {"data_in": [1, 2], "step": [1]}}, "same number of cycles"),
    ({"inputs": {}, "constants": {"step": 256}}, "'step': 256 does not fit"),
    ({"inputs": {}, "constants": {"stepp": 1}}, "'stepp' is not a port"),
    ({"inputs": {}, "constants": {"count": 1}}, "'count' is an output port"),
    ({"inputs": {"step": [1]}, "constants": {"step": 1}}, "'step' is also one of the inputs"),
    ({"inputs": {}, "trace": ["data_in"]}, "'data_in' is an input port"),
    ({"inputs": {}, "trace": ["nope"]}, "'nope' is not a port"),
    ({"inputs": {}, "events": ["data_out"]}, "events need event_when"),
    ({"inputs": {}, "events": ["data_out"], "event_when": "count"}, "'count' must be 1 bit"),
    ({"inputs": {}, "event_when": ("odd", "nope")}, "'nope' is not a port"),
    ({"inputs": {}}, "cycle count"),
])
def test_bad_arguments(wide, kwargs, match):
    if not kwargs["inputs"] and "cycle count" not in match:
        kwargs["cycles"] = 10
    with pytest.raises(ValueError, match=match):
        wide.run(**kwargs)


def test_needs_a_clock():
    class Inverter(wiring.Component):
        a: In(4)
        y: Out(4)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.y.eq(~self.a)
            return m

    with pytest.raises(ValueError, match="no 'clk' port"):
        build_stream(Inverter(), name="inverter")


def test_build_failure_quotes_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("TIMEBIN_CACHE", str(tmp_path))      # leave no failed build behind
    with pytest.raises(ToolchainError, match="(?s)stream harness of wide_bad.*log"):
        build_stream(WideRegister(), name="wide_bad", cxx_opt="-Onot-a-level")


def test_cached_build_and_names(wide):
    assert build_stream(WideRegister(), name="wide_register").compiled is False
    assert cxx_name("records__ready") == "records___05Fready"
    assert cxx_name("a___b") == "a___05F_b"
    assert {name: port.width for name, port in wide.ports.items()} == {
        "clk": 1, "rst": 1, "data_in": WIDE, "step": 8, "word": 64, "data_out": WIDE,
        "count": COUNT_BITS, "odd": 1, "word_inv": 64}
