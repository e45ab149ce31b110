"""The ECP5-5G DCU transmit serializer (:mod:`timebin.boards.serdes_ecp5`) and its use on the
ECPIX-5: the serializer's bit order (reference model), its DCUA settings, its reset sequence
(RTL against the model on seeded traces), the word of a data field through the pin PHYs onto
the DCU's data bus (Amaranth simulation), and the ECPIX-5 Alice top's DCUA instance."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import (
    ClockSignal,
    Fragment,
    Instance,
    IOPort,
    Module,
    Signal,
    UnusedElaboratable,
)
from amaranth.sim import Simulator
from timebin.boards import board_spec
from timebin.boards.common import BoardTop, role_params
from timebin.boards.ecpix5 import SATA_TX
from timebin.boards.pins import GEARBOX_RATIO, DataPin, FieldSpec, PinOutputs, plan_pins
from timebin.boards.serdes_ecp5 import (
    TX_BUS_BITS,
    DCUChannel,
    DCUResetSequencer,
    DCUTransmitter,
    bus_bit,
    line_rate,
    reset_sequence_model,
    serial_order,
)

F_SYS = 156.25e6


# --- Bit order and settings -------------------------------------------------------------------

def test_serial_order_sends_each_byte_lsb_first_and_the_low_byte_first():
    assert serial_order(16) == [*range(8), *range(12, 20)]
    assert serial_order(20) == [*range(10), *range(12, 22)]
    assert serial_order(8) == list(range(8)) and serial_order(10) == list(range(10))
    for width in (8, 10, 16, 20):
        # UI k is on the bus bit the serializer sends k-th.
        assert [bus_bit(width, k) for k in range(width)] == serial_order(width)
        assert max(serial_order(width)) < TX_BUS_BITS


def test_bad_widths_rates_and_channels_are_named(assert_refused):
    with pytest.raises(ValueError, match="width must be one of .*, not 12"):
        serial_order(12)
    with pytest.raises(ValueError, match="UI index must be within 0..15, not 16"):
        bus_bit(16, 16)
    assert line_rate(16, F_SYS) == 2.5e9
    with pytest.raises(ValueError, match="at 400 MHz runs at 6.4 Gb/s, outside"):
        line_rate(16, 400e6)
    with pytest.raises(ValueError, match="at 30 MHz runs at 0.24 Gb/s, outside"):
        line_rate(8, 30e6)
    with pytest.raises(ValueError, match="DCU channel must be 0 or 1, not 2"):
        DCUChannel(dcu=0, channel=2, tx_p="A", tx_n="B", resource=("x", 0))
    other = DCUChannel(dcu=0, channel=1, tx_p="AD10", tx_n="AD11", resource=("x", 0))
    assert_refused(ValueError, r"of one DCU, not of DCUs \[0, 1\]",
                   lambda: DCUTransmitter((SATA_TX, other), width=16, f_sys_hz=F_SYS))
    assert_refused(ValueError, r"distinct, not \[0, 0\]",
                   lambda: DCUTransmitter((SATA_TX, SATA_TX), width=16, f_sys_hz=F_SYS))
    assert_refused(TypeError, "non-empty tuple of DCUChannel",
                   lambda: DCUTransmitter((), width=16, f_sys_hz=F_SYS))
    assert_refused(ValueError, "Reset hold must be a positive number of cycles, not 0",
                   lambda: DCUResetSequencer(hold_cycles=0))


@pytest.mark.parametrize("width, protocol, mode, geared, bus8", [
    (16, "8BSER", "0b010", "0b1", "0b1"),
    (20, "10BSER", "0b000", "0b1", "0b0"),
    (8, "8BSER", "0b011", "0b0", "0b1"),
    (10, "10BSER", "0b001", "0b0", "0b0"),
])
def test_dcu_settings_of_each_width(width, protocol, mode, geared, bus8):
    f_sys = 2.5e9 / width
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        phy = DCUTransmitter((SATA_TX,), width=width, f_sys_hz=f_sys)
        p = phy.parameters()
        del phy
        gc.collect()
    assert p["D_REFCK_MODE"] == mode            # TX PLL x width from sync
    assert p["D_TX_VCO_CK_DIV"] == "0b000" and p["D_TX_MAX_RATE"] == "2.5"
    assert p["D_BUS8BIT_SEL"] == bus8
    assert p["CH0_PROTOCOL"] == protocol and p["CH0_ENC_BYPASS"] == "0b1"
    assert p["CH0_TX_GEAR_MODE"] == geared == p["CH0_FF_TX_H_CLK_EN"]
    assert p["CH0_TPWDNB"] == "0b1" and p["CH0_RPWDNB"] == "0b0"
    assert p["CH1_TPWDNB"] == "0b0" and p["CH1_RPWDNB"] == "0b0"     # unused channel off
    assert not any(name.startswith("CH1_") and name not in ("CH1_TPWDNB", "CH1_RPWDNB")
                   for name in p)


# --- Reset sequence: RTL against the model ------------------------------------------------------

def _pll_trace(seed, cycles=400):
    """A seeded D_FFS_PLOL trace: lost, then locked with glitches and a longer loss."""
    rng = np.random.default_rng(seed)
    trace = np.ones(cycles, dtype=int)
    trace[rng.integers(5, 40):] = 0
    for start in rng.integers(40, cycles - 10, size=4):
        trace[start:start + rng.integers(1, 8)] = 1
    return [int(v) for v in trace]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reset_sequencer_matches_its_model(seed):
    hold, lock = 7, 11
    trace = _pll_trace(seed)
    expected = reset_sequence_model(trace, hold_cycles=hold, lock_cycles=lock)
    assert any(ready for _, _, ready in expected)          # the trace reaches ready
    assert any(not ready for _, _, ready in expected[100:])  # and loses it again
    dut = DCUResetSequencer(hold_cycles=hold, lock_cycles=lock)
    got = []

    async def testbench(ctx):
        for lost in trace:
            ctx.set(dut.pll_lost, lost)
            got.append((ctx.get(dut.tx_serdes_rst), ctx.get(dut.tx_pcs_rst),
                        ctx.get(dut.ready)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1 / F_SYS)
    sim.add_testbench(testbench)
    sim.run()
    assert got == expected
    # The model is exact: one cycle more of hold would differ.
    assert reset_sequence_model(trace, hold_cycles=hold + 1, lock_cycles=lock) != got


# --- A field's word through the pin PHYs onto the DCU bus --------------------------------------

def test_pin_outputs_put_a_field_on_the_dcu_bus_in_time_order():
    """A 20-UI field takes the SATA channel (UIs 0-15) and then a DDR pin. On the DCU, the
    word is registered twice by the pin PHY and once by the DCU PHY; the bus bits the
    serializer sends, in its order, are the field's UIs 0-15 of three cycles before."""
    spec = board_spec("ecpix5")
    pins = (spec.data_pins[0], DataPin("T25", "ddr", None, "pmod0.0"))
    assert pins[0].gearbox == "dcu" and GEARBOX_RATIO["dcu"] == 16
    plan = plan_pins([FieldSpec("carver", 20, "o")], pins)
    assert [(s.pin.ball, s.start, s.count) for s in plan.slots] == [("AD16", 0, 16)] + [
        ("T25", 16, 2)]
    assert plan.unpinned == {"carver": (18, 2)}
    made = []

    def serdes(pins):
        made.append(spec.serdes(pins, f_sys_hz=F_SYS))
        return made[-1]

    word = Signal(20)
    # Without a platform, only the DCU pin is simulated (DDR pins need the platform).
    only_dcu = plan_pins([FieldSpec("carver", 16, "o")], pins[:1])
    outputs = PinOutputs(only_dcu, {"carver": word[:16]}, attrs=spec.pin_attrs, serdes=serdes)
    m = Module()
    m.submodules.outputs = outputs
    rng = np.random.default_rng(7)
    words = [int(v) for v in rng.integers(0, 1 << 20, size=40)]
    seen = []

    async def testbench(ctx):
        for value in words:
            ctx.set(word, value)
            await ctx.tick()
            seen.append(ctx.get(made[0].phy.tx_bus[0]))

    sim = Simulator(m)
    sim.add_clock(1 / F_SYS)
    sim.add_testbench(testbench)
    sim.run()
    latency = 3
    for cycle in range(latency, len(words)):
        bus = seen[cycle - 1]           # sampled after the tick of cycle `cycle - 1`
        line = [(bus >> b) & 1 for b in serial_order(16)]
        ui = [(words[cycle - latency] >> k) & 1 for k in range(16)]
        assert line == ui, cycle
        # Nothing but the data bits is driven.
        assert bus & ~sum(1 << b for b in serial_order(16)) == 0


# --- The ECPIX-5 Alice top ---------------------------------------------------------------------

def _instances(fragment, kind):
    if isinstance(fragment, Instance):
        return [fragment] if fragment.type == kind else []
    found = []
    for sub, _name, _loc in fragment.subfragments:
        found += _instances(sub, kind)
    return found


def test_ecpix5_alice_top_has_the_dcu_with_its_settings_and_bit_order():
    spec = board_spec("ecpix5")
    params, board_params = role_params(spec, "alice", lanes=2)
    top = BoardTop(spec, "alice", params=params, board=board_params)
    slots = top.plan.slots_of("carver")
    assert [(s.pin.ball, s.pin.gearbox, s.start, s.count) for s in slots] == [
        ("AD16", "dcu", 0, 4)]
    summary = top.summary()
    assert summary["pins"][0]["pins"][0] == {"ball": "AD16", "label": "sata.tx (DCU1 CH0)",
                                             "gearbox": "dcu", "bits": [0, 3]}
    platform = spec.platform()
    fragment = Fragment.get(top, platform)
    # RGB LED 2 shows the DCU's state.
    assert ("rgb_led", 2) in platform._requested
    (dcu,) = _instances(fragment, "DCUA")
    assert dcu.attrs["LOC"] == "DCU1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        expected = DCUTransmitter((SATA_TX,), width=16, f_sys_hz=F_SYS).parameters()
        gc.collect()
    assert dict(dcu.parameters) == expected
    assert expected["D_REFCK_MODE"] == "0b010" and expected["CH0_PROTOCOL"] == "8BSER"
    ports = {name: value for name, (value, _kind) in dcu.ports.items()}
    assert isinstance(ports["CH0_HDOUTP"], IOPort) and ports["CH0_HDOUTP"].name == (
        "sata_0__tx__p")
    assert ports["CH0_HDOUTN"].name == "sata_0__tx__n"
    for name in ("D_REFCLKI", "CH0_FF_TXI_CLK"):
        assert isinstance(ports[name], ClockSignal) and ports[name].domain == "sync"
    # Each bus port is bit n of the PHY's bus, on which UI k sits at bus_bit(16, k).
    bus = ports["CH0_FF_TX_D_0"].value
    assert bus.name == "dcu_ch0_tx_d" and len(bus) == TX_BUS_BITS
    for n in range(TX_BUS_BITS):
        port = ports[f"CH0_FF_TX_D_{n}"]
        assert port.value is bus and (port.start, port.stop) == (n, n + 1)
    assert not any(name.startswith("CH1_FF_TX_D") for name in ports)


def test_ecpix5_plans_at_8_and_16_lanes():
    """8 lanes of 2 UIs: the whole carver word on the SATA line; 16 lanes: its first 16 UIs
    there and the rest on PMOD pins."""
    spec = board_spec("ecpix5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)     # planned, not elaborated
        for lanes, rest in ((8, []), (16, [(16, 2)] * 8)):
            params, board_params = role_params(spec, "alice", lanes=lanes)
            top = BoardTop(spec, "alice", params=params, board=board_params)
            slots = top.plan.slots_of("carver")
            assert (slots[0].pin.ball, slots[0].start, slots[0].count) == ("AD16", 0, 16)
            assert [(s.pin.gearbox, s.count) for s in slots[1:]] == [("ddr", 2)] * len(rest)
            assert top.summary()["unpinned_bits"] == 0
            del top
            gc.collect()


def test_bob_never_takes_the_dcu_for_inputs():
    spec = board_spec("ecpix5")
    assert spec.data_pins[0].output_only
    plan = plan_pins([FieldSpec("samples.ch0", 4, "i"), FieldSpec("gates.ch0", 16, "o")],
                     spec.data_pins)
    assert all(s.pin.gearbox == "ddr" for s in plan.slots_of("samples.ch0"))
    assert plan.slots_of("gates.ch0")[0].pin.ball == "AD16"


def test_a_dcu_pin_without_a_serdes_phy_is_refused(assert_refused):
    plan = plan_pins([FieldSpec("carver", 16, "o")], (board_spec("ecpix5").data_pins[0],))
    outputs = PinOutputs(plan, {"carver": Signal(16)}, attrs=None)
    assert_refused(ValueError, r"Pins \['AD16'\] are SERDES channels",
                   lambda: Fragment.get(outputs, None))
    with pytest.raises(ValueError, match=r"no DCU channel at \['T25'\]"):
        board_spec("ecpix5").serdes((DataPin("T25", "dcu"),), f_sys_hz=F_SYS)
