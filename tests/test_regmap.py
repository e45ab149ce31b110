"""Tests of the register maps (plain Python) against the tops' ports, and of the register bank
in Amaranth's simulator: alone, and wired to a small receiver and transmitter."""

import gc
import inspect
import subprocess
import sys
import warnings

import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module, UnusedElaboratable, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from timebin.gateware import regmap
from timebin.gateware.regbank import RegisterBank, RegisterBusSignature
from timebin.gateware.regmap import (
    ACCESS,
    ALICE_DATA_PORTS,
    ALICE_ID,
    BOB_DATA_PORTS,
    BOB_ID,
    MAP_VERSION,
    Register,
    RegisterMap,
    alice_registers,
    board_registers,
    bob_registers,
    default_im_levels,
    default_pm_levels,
    z_windows_packed,
)
from timebin.gateware.rx.binning import z_windows
from timebin.gateware.rx.top import Receiver
from timebin.gateware.tx import driver
from timebin.gateware.tx.top import Transmitter
from timebin.sim.amaranth_helpers import simulate

ALICE_PARAMS = [
    dict(lanes=16, uis_per_symbol=2),
    dict(lanes=2, uis_per_symbol=8, prob_bits=20, p_z=0.5, intensity_probs=(0.5, 0.3, 0.2),
         dac_bits=12, pm_bits=3, max_delay=40, health_window=4096, h_min=0.5, alpha=2**-30),
]
BOB_PARAMS = [
    dict(channels=4, lanes=16, uis_per_symbol=2),
    # windows of 80 bits (two pieces), a 33-bit watchdog window, 48-bit bins: two-word registers
    dict(channels=3, lanes=2, uis_per_symbol=40, max_window=1 << 32, histogram_bits=48,
         histogram_period=4, max_dead_time=(1 << 32) - 1, max_delay=(1 << 32) - 1,
         max_gate_period=1 << 16),
]
SMALL_BOB = dict(channels=2, lanes=2, uis_per_symbol=2)


def ports_of(top_class, **params):
    """``(params, {port: (is_input, width, init)})`` of a top built only to look at its plain
    ports (``None`` for a stream); the top is dropped without being reported unused."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        top = top_class(**params)
        ports = {name: (member.flow.name == "In", len(Value.cast(getattr(top, name))),
                        Value.cast(getattr(top, name)).init)
                 for name, member in top.signature.members.items() if not member.is_signature}
        ports.update({name: None for name, member in top.signature.members.items()
                      if member.is_signature})
        full_params = top.params
        del top
        gc.collect()
    return full_params, ports


def check_covers(ports, regs, data_ports):
    """Every plain port of a top outside ``data_ports`` has registers of the same total
    width, direction and reset, and the map names no other port."""
    mapped = regs.ports()
    assert set(data_ports) <= set(ports)
    assert set(mapped) == set(ports) - set(data_ports)
    for name, regs_of_port in mapped.items():
        assert ports[name] is not None, f"{name} is a stream"
        is_input, width, init = ports[name]
        assert regs.port_width(name) == width, name
        assert regs.port_reset(name) == init, name
        assert regs_of_port[0].writable == is_input, name


@pytest.mark.parametrize("params", ALICE_PARAMS)
def test_alice_map_covers_transmitter(params):
    full_params, ports = ports_of(Transmitter, **params)
    regs = alice_registers(**full_params)
    check_covers(ports, regs, ALICE_DATA_PORTS)
    assert {r.name for r in regs if r.access == "strobe"} == {"reseed", "alarm_clear"}
    assert [r.name for r in regs.ports()["key"]] == ["key@0", "key@64"]


@pytest.mark.parametrize("params", BOB_PARAMS)
def test_bob_map_covers_receiver(params):
    full_params, ports = ports_of(Receiver, **params)
    regs = bob_registers(**full_params)
    check_covers(ports, regs, BOB_DATA_PORTS)
    assert {r.name for r in regs if r.access == "strobe"} == {
        "epoch_load", "alarm_clear", "histogram_clear"}
    C = params["channels"]
    assert [r.name for r in regs.ports()["clicks"]] == [f"clicks.{k}" for k in range(C)]
    if params["uis_per_symbol"] > 32:
        assert "windows.2@64" in regs and regs["windows.2@64"].width == 16
        assert regs["watchdog_window"].words == 2


def test_builder_defaults_match_tops():
    for builder, top in ((regmap._alice_layout, Transmitter), (regmap._bob_layout, Receiver)):
        ours = {name: p for name, p in inspect.signature(builder).parameters.items()
                if name != "layout"}       # where the registers go, not a top's parameter
        theirs = inspect.signature(top.__init__).parameters
        assert list(ours) == [name for name in theirs if name != "self"]
        for name, parameter in ours.items():
            assert parameter.default == theirs[name].default, name


def all_maps():
    return ([alice_registers(**p) for p in ALICE_PARAMS]
            + [bob_registers(**p) for p in BOB_PARAMS])


def test_layout_rules():
    for regs in all_maps():
        words = [a for r in regs for a in r.addresses]
        assert len(words) == len(set(words))
        assert max(words) < 1 << regs.address_bits
        for reg in regs:
            assert reg.access in ACCESS
            assert reg.address % reg.words == 0
            assert reg.access != "rc" or reg.name == "write_errors"
        assert regs.names[:4] == ("id", "version", "map_crc", "write_errors")
        assert [r.address for r in regs][:4] == [0, 1, 2, 3]
        assert regs["id"].reset == (ALICE_ID if regs.device == "alice" else BOB_ID)
        assert regs["version"].reset == MAP_VERSION
        assert regs["map_crc"].reset == regs.crc()
        assert regs.at(regs["epoch" if "epoch" in regs else "key@0"].address + 1).words == 2
    crcs = {regs.crc() for regs in all_maps()}
    assert len(crcs) == len(all_maps())


def test_markdown_renders():
    regs = bob_registers(**SMALL_BOB)
    text = regs.markdown()
    assert "| address | name | width | access | reset | range | description |" in text
    rows = [line for line in text.splitlines() if line.startswith("| 0x")]
    assert len(rows) == len(regs)
    assert "| 0x000a 0x000b | `epoch` | 64 | rw |" in text
    assert "`dead_time` | 17 | rw | 4 | 4..0x1ffff |" in text


@pytest.mark.parametrize("role", ["alice", "bob", "loopback"])
def test_board_maps_end_with_the_data_phy(role):
    """Every board's map ends with the state of the data-output PHY (Alice's serializer
    word, Bob's gate words, a loopback board's scope output), after the link's counters (the
    addresses before them stay)."""
    params = {"alice": ALICE_PARAMS[0], "bob": SMALL_BOB,
              "loopback": {"alice": dict(lanes=2, uis_per_symbol=2), "bob": SMALL_BOB}}[role]
    regs = board_registers(role, params)
    ready, errors = regs["data_phy_ready"], regs["data_phy_errors"]
    assert regs.names[-3:] == ("link_phy_errors", "data_phy_ready", "data_phy_errors")
    assert ready.address == regs["link_phy_errors"].address + 1 == errors.address - 1
    assert regs.size == errors.address + 1
    assert (ready.width, ready.access, ready.reset, ready.port, ready.element) == (
        1, "ro", 1, "data_phy_ready", None)
    assert (errors.width, errors.access, errors.reset, errors.port) == (
        32, "ro", 0, "data_phy_errors")
    assert "TX PLL locked" in ready.doc and "1 whenever sync runs" in ready.doc
    assert "rising edges" in errors.doc and "counts once" in errors.doc
    assert "Always 0 on DDR/SDR" in errors.doc and "Saturating at 2**32 - 1" in errors.doc
    text = regs.markdown()
    assert f"| {ready.address:#06x} | `data_phy_ready` | 1 | ro | 1 |" in text


def test_plain_formulas_match_gateware():
    for bits in (1, 3, 8, 16):
        assert default_im_levels(bits) == driver.default_im_levels(bits)
    for bits in (1, 4, 8):
        assert default_pm_levels(bits) == driver.default_pm_levels(bits)
    for S in (2, 6, 40):
        assert z_windows_packed(S) == sum(c << (2 * i) for i, c in enumerate(z_windows(S)))


def test_host_imports_no_amaranth():
    code = ("import sys; from timebin.gateware.regmap import alice_registers, bob_registers; "
            "alice_registers(lanes=16, uis_per_symbol=2).markdown(); "
            "bob_registers(channels=4, lanes=16, uis_per_symbol=2).markdown(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('amaranth', 'numpy')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_contracts():
    reg = Register("epoch", 10, 64, "rw", doc="x", port="epoch")
    assert reg.words == 2 and reg.addresses == (10, 11) and reg.maximum == (1 << 64) - 1
    assert reg.encode(0x1_2345_6789) == (0x2345_6789, 1)
    assert reg.decode((0x2345_6789, 1)) == 0x1_2345_6789
    dead = Register("dead_time", 3, 17, "rw", reset=4, minimum=4, maximum=100)
    assert dead.accepts(4) and not dead.accepts(3) and not dead.accepts(101)
    with pytest.raises(ValueError, match="dead_time takes 4..100, not 3"):
        dead.encode(3)
    with pytest.raises(ValueError, match="cannot be written"):
        Register("clicks.0", 0, 32, "ro").encode(1)
    with pytest.raises(ValueError, match="width must be 1..64, not 65"):
        Register("key", 0, 65, "rw")
    with pytest.raises(ValueError, match="access must be one of"):
        Register("x", 0, 1, "w1c")
    with pytest.raises(ValueError, match="multiple of its 2 words, not 3"):
        Register("x", 3, 40, "ro")
    with pytest.raises(ValueError, match="reset must lie within 4..100, not 0"):
        Register("dead_time", 3, 17, "rw", minimum=4, maximum=100)
    with pytest.raises(ValueError, match="both take word address 0x1"):
        RegisterMap("x", [Register("a", 0, 40, "ro"), Register("b", 1, 1, "ro")])
    regs = alice_registers(lanes=4, uis_per_symbol=4)
    key = (1 << 80) - 12345
    parts = regs.split("key", key)
    assert set(parts) == {"key@0", "key@64"} and regs.join("key", parts) == key
    with pytest.raises(KeyError, match="no register 'nope'"):
        regs["nope"]


# --- The bank in simulation ------------------------------------------------------------------

async def bus_write(ctx, bank, address, word):
    ctx.set(bank.bus.addr, address)
    ctx.set(bank.bus.wdata, word)
    ctx.set(bank.bus.we, 1)
    await ctx.tick()
    ctx.set(bank.bus.we, 0)


async def bus_read(ctx, bank, address):
    ctx.set(bank.bus.addr, address)
    ctx.set(bank.bus.re, 1)
    await ctx.tick()
    ctx.set(bank.bus.re, 0)
    assert ctx.get(bank.bus.rvalid)
    return ctx.get(bank.bus.rdata)


def raw_words(reg, value):
    return [(value >> (32 * i)) & 0xFFFF_FFFF for i in range(reg.words)]


async def write(ctx, bank, name, value):
    """Write ``value`` to register ``name``, unchecked (the bank judges it)."""
    reg = bank.register_map[name]
    for address, word in zip(reg.addresses, raw_words(reg, value), strict=True):
        await bus_write(ctx, bank, address, word)


async def read(ctx, bank, name):
    reg = bank.register_map[name]
    return reg.decode([await bus_read(ctx, bank, a) for a in reg.addresses])


def test_bank_reads_writes_and_refuses():
    regs = bob_registers(**SMALL_BOB, max_window=1 << 32)
    bank = RegisterBank(regs)
    mapped = {a for reg in regs for a in reg.addresses}
    unmapped = min(set(range(1 << regs.address_bits)) - mapped)     # an alignment gap

    async def testbench(ctx):
        assert await read(ctx, bank, "id") == BOB_ID
        assert await read(ctx, bank, "map_crc") == regs.crc()
        for name in ("dead_time", "delay.1", "windows.0", "watchdog_window", "epoch"):
            assert await read(ctx, bank, name) == regs[name].reset, name
        values = {"dead_time": 77, "delay.1": 123_456, "windows.0": 0b1110,
                  "watchdog_window": 1 << 32, "epoch": 0xDEAD_BEEF_0123_4567,
                  "gate_width.1": 300, "histogram_channel": 1}
        for name, value in values.items():
            await write(ctx, bank, name, value)
        for name, value in values.items():
            assert await read(ctx, bank, name) == value, name
        assert ctx.get(bank.dead_time) == 77
        assert ctx.get(bank.delay) == 123_456 << regs.port_layout("delay")[1]
        assert ctx.get(bank.epoch) == 0xDEAD_BEEF_0123_4567
        assert await read(ctx, bank, "write_errors") == 0
        # Refused: below, above the range, beyond the width, ro, unmapped; nothing changes.
        for name, value in (("dead_time", 3), ("dead_time", (1 << 17)), ("delay.0", 1 << 20),
                            ("watchdog_window", (1 << 32) + 1), ("histogram_channel", 2),
                            ("watchdog_max_fill", 257), ("clicks.0", 5), ("id", 0),
                            ("records_out", 1), ("alarm_clear", 2)):
            await write(ctx, bank, name, value)
        await bus_write(ctx, bank, unmapped, 1)
        # One each, but two for the ro records_out (both words refused) and one for
        # watchdog_window (its lo word is only staged), and one for the unmapped address.
        assert await read(ctx, bank, "write_errors") == 12
        assert await read(ctx, bank, "write_errors") == 0
        # A refusal in the cycle of the clearing read is not lost.
        ctx.set(bank.bus.wdata, 1)
        ctx.set(bank.bus.we, 1)
        assert await bus_read(ctx, bank, regs["write_errors"].address) == 0
        ctx.set(bank.bus.we, 0)
        assert await read(ctx, bank, "write_errors") == 1
        for name, value in values.items():
            assert await read(ctx, bank, name) == value, name
        assert await read(ctx, bank, "id") == BOB_ID
        assert await bus_read(ctx, bank, unmapped) == 0
        # Atomic write: the lo word alone changes nothing.
        await bus_write(ctx, bank, regs["epoch"].address, 0x1111)
        assert ctx.get(bank.epoch) == 0xDEAD_BEEF_0123_4567
        await bus_write(ctx, bank, regs["epoch"].address + 1, 0x2)
        assert ctx.get(bank.epoch) == 0x2_0000_1111

    simulate(bank, testbench)


def test_bank_atomic_read_and_strobe():
    regs = bob_registers(**SMALL_BOB)
    bank = RegisterBank(regs)
    lo = regs["records_out"].address

    async def testbench(ctx):
        ctx.set(bank.records_out, 0x1_FFFF_FFFF)
        assert await bus_read(ctx, bank, lo) == 0xFFFF_FFFF
        ctx.set(bank.records_out, 0x2_0000_0000)       # carries between the two reads
        assert await bus_read(ctx, bank, lo + 1) == 1   # the hi word of the lo read
        assert await read(ctx, bank, "records_out") == 0x2_0000_0000
        # Strobe: high in exactly the cycle after the write of 1; 0 does nothing; reads 0.
        seen = []
        await bus_write(ctx, bank, regs["alarm_clear"].address, 1)
        for _ in range(3):
            seen.append(ctx.get(bank.alarm_clear))
            await ctx.tick()
        await bus_write(ctx, bank, regs["alarm_clear"].address, 0)
        seen.append(ctx.get(bank.alarm_clear))
        assert seen == [1, 0, 0, 0]
        assert await read(ctx, bank, "alarm_clear") == 0
        assert await read(ctx, bank, "write_errors") == 0

    simulate(bank, testbench)


class _Board(Elaboratable):
    """A top and its bank, for simulation."""

    def __init__(self, top, bank):
        self.top, self.bank = top, bank

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = self.top
        m.submodules.bank = self.bank
        self.bank.connect(m, self.top)
        return m


def test_bank_drives_receiver():
    rx = Receiver(**SMALL_BOB)
    bank = RegisterBank(bob_registers(**rx.params))
    W = rx.uis_per_word

    async def testbench(ctx):
        assert ctx.get(rx.dead_time) == W
        await write(ctx, bank, "dead_time", 7)
        assert ctx.get(rx.dead_time) == 7
        await write(ctx, bank, "dead_time", W - 1)            # refused by the bank
        assert ctx.get(rx.dead_time) == 7
        await write(ctx, bank, "delay.1", 5)
        assert ctx.get(rx.delay[1]) == 5 and ctx.get(rx.delay[0]) == 0
        # Three clicks on channel 0, 2 words apart (8 UIs >= the dead time of 7).
        # Then zero words until the last click is through the receiver's pipeline.
        for word in (0b0001, 0, 0b0001, 0, 0b0001) + (0,) * rx.latency:
            ctx.set(rx.samples, [word, 0])
            await ctx.tick()
        assert await read(ctx, bank, "clicks.0") == 3
        assert await read(ctx, bank, "accepted.0") == 3
        assert await read(ctx, bank, "clicks.1") == 0
        assert await read(ctx, bank, "write_errors") == 1

    simulate(_Board(rx, bank), testbench)


def test_bank_drives_transmitter():
    tx = Transmitter(lanes=2, uis_per_symbol=2)
    bank = RegisterBank(alice_registers(**tx.params))

    async def testbench(ctx):
        await write(ctx, bank, "p_z", 1000)
        await write(ctx, bank, "im_levels.9", 77)
        await write(ctx, bank, "key@64", 0xBEEF)
        await write(ctx, bank, "enable", 1)
        assert ctx.get(tx.p_z) == 1000 and ctx.get(tx.im_levels[9]) == 77
        assert ctx.get(tx.key) == 0xBEEF << 64 and ctx.get(tx.enable) == 1
        await ctx.tick().repeat(5)          # the keystream is not valid yet: underflows
        underflow = ctx.get(tx.underflow)
        assert underflow > 0
        assert await read(ctx, bank, "underflow") == underflow

    simulate(_Board(tx, bank), testbench)


def test_connect_refuses_another_map(assert_refused):
    other = bob_registers(**{**SMALL_BOB, "max_dead_time": 1000})
    alice = alice_registers(lanes=2, uis_per_symbol=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        rx = Receiver(**SMALL_BOB)
        with pytest.raises(ValueError, match="Port dead_time is 17 bits on Receiver but 10"):
            RegisterBank(other).connect(Module(), rx)
        with pytest.raises(ValueError, match="Receiver has no plain port 'source' of the alice"):
            RegisterBank(alice).connect(Module(), rx)
        del rx
        gc.collect()
    assert_refused(TypeError, "must be a RegisterMap", lambda: RegisterBank({"a": 1}))


class _Wired(wiring.Component):
    """A top and its bank, the bus the only port: what a board's host link sees."""

    def __init__(self, top, bank):
        self.top, self.bank = top, bank
        super().__init__({"bus": In(RegisterBusSignature(bank.register_map.address_bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = self.top
        m.submodules.bank = self.bank
        self.bank.connect(m, self.top)
        wiring.connect(m, wiring.flipped(self.bus), self.bank.bus)
        return m


@pytest.mark.parametrize(("top_class", "builder", "params"), [
    (Transmitter, alice_registers, dict(lanes=2, uis_per_symbol=2)),
    (Receiver, bob_registers, SMALL_BOB),
])
def test_wired_top_converts_to_verilog(top_class, builder, params):
    top = top_class(**params)
    wired = _Wired(top, RegisterBank(builder(**top.params)))
    assert "module wired" in verilog.convert(wired, name="wired")


@pytest.mark.parametrize("regs", [alice_registers(**ALICE_PARAMS[0]),
                                  bob_registers(**BOB_PARAMS[1])])
def test_bank_converts_to_verilog(regs):
    text = verilog.convert(RegisterBank(regs), name=f"{regs.device}_registers")
    assert f"module {regs.device}_registers" in text


def test_bank_write_status():
    """``werr`` is high in exactly the cycle after a refused write: every refusal counted in
    ``write_errors`` (range, width, ro, rc, unmapped, a ro lo word, a strobe's 2), never after
    an accepted write, a staged lo word, a read or an idle cycle."""
    regs = bob_registers(**SMALL_BOB, max_window=1 << 32)
    bank = RegisterBank(regs)
    mapped = {a for reg in regs for a in reg.addresses}
    unmapped = min(set(range(1 << regs.address_bits)) - mapped)
    dead, window = regs["dead_time"], regs["watchdog_window"]
    records = regs["records_out"].address
    # (addr, wdata, we, re, refused)
    script = [
        (dead.address, 77, 1, 0, False),
        (dead.address, dead.minimum - 1, 1, 0, True),
        (dead.address, 0, 0, 1, False),
        (regs["clicks.1"].address, 5, 1, 0, True),
        (records, 1, 1, 0, True),                       # the lo word of a ro register
        (records + 1, 1, 1, 0, True),
        (window.address, 0, 1, 0, False),               # staged
        (window.address + 1, 2, 1, 0, True),            # 2 << 32 > max_window
        (window.address, 5, 1, 0, False),
        (window.address + 1, 1, 1, 0, True),            # (1 << 32) | 5 > max_window
        (window.address, 0, 1, 0, False),
        (window.address + 1, 1, 1, 0, False),           # commits 1 << 32
        (0, 0, 0, 0, False),
        (unmapped, 0, 1, 0, True),
        (regs["alarm_clear"].address, 2, 1, 0, True),
        (regs["alarm_clear"].address, 1, 1, 0, False),
        (regs["write_errors"].address, 0, 1, 1, True),  # refused, read and cleared
        (regs["id"].address, 0, 1, 1, True),
        (dead.address, 1 << 20, 1, 1, True),
        (dead.address, 9, 1, 1, False),
        (0, 0, 0, 0, False),
    ]

    async def testbench(ctx):
        before = False
        for addr, wdata, we, re, refused in script:
            ctx.set(bank.bus.addr, addr)
            ctx.set(bank.bus.wdata, wdata)
            ctx.set(bank.bus.we, we)
            ctx.set(bank.bus.re, re)
            assert ctx.get(bank.bus.werr) == before, (addr, wdata)
            await ctx.tick()
            before = refused
        assert ctx.get(bank.bus.werr) == before
        assert ctx.get(bank.watchdog_window) == 1 << 32 and ctx.get(bank.dead_time) == 9
        ctx.set(bank.bus.we, 0)
        assert await bus_read(ctx, bank, regs["write_errors"].address) == 3

    simulate(bank, testbench)
