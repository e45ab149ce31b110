"""The register bank model (:mod:`timebin.sim.regbank`) against the bank in Amaranth's
simulator: random bus traffic on small Bob and Alice maps, every output in every cycle; and
the model alone on the bus rules of :mod:`timebin.gateware.regmap`."""

import pytest
from timebin.gateware.regbank import RegisterBank
from timebin.gateware.regmap import BOB_ID, alice_registers, bob_registers
from timebin.sim.amaranth_helpers import run_per_cycle
from timebin.sim.regbank import BUS_OUTPUTS, RegisterBankModel, bus_traffic

MAPS = {
    "bob-small": (bob_registers, dict(channels=2, lanes=2, uis_per_symbol=2)),
    # 80-bit windows (a 64-bit and a 16-bit piece), a 33-bit watchdog window, 48-bit bins.
    "bob-wide": (bob_registers, dict(channels=2, lanes=2, uis_per_symbol=40,
                                     max_window=1 << 32, histogram_bits=48,
                                     max_dead_time=(1 << 32) - 1, max_gate_period=1 << 16)),
    "alice-small": (alice_registers, dict(lanes=2, uis_per_symbol=2)),
}


def compare(got, want, n):
    for name, values in want.items():
        for c in range(n):
            assert got[name][c] == values[c], (
                f"{name} in cycle {c}: bank {got[name][c]:#x}, model {values[c]:#x}")


@pytest.mark.parametrize(("config", "seed", "extra_bits"), [
    ("bob-small", 1, 0),
    ("bob-wide", 2, 0),
    ("alice-small", 3, 0),
    ("bob-small", 4, 5),        # a bus wider than the map: addresses beyond it are unmapped
])
def test_model_matches_bank(config, seed, extra_bits):
    builder, params = MAPS[config]
    regs = builder(**params)
    n = 2500
    address_bits = regs.address_bits + extra_bits
    bus, status = bus_traffic(regs, n, seed, address_bits=address_bits)
    model = RegisterBankModel(regs, address_bits)
    want = model.run(**bus, status=status)
    bank = RegisterBank(regs, address_bits=address_bits)
    inputs = [(getattr(bank.bus, name), values) for name, values in bus.items()]
    inputs += [(getattr(bank, port), values) for port, values in status.items()]
    outputs = {name: getattr(bank.bus, name) for name in BUS_OUTPUTS}
    outputs.update({port: getattr(bank, port) for port in model.writable_ports})
    got = run_per_cycle(bank, inputs, outputs, n)
    compare(got, want, n)
    # The traffic reached every kind of register and every rule.
    counts = model.counts
    assert set(counts["accepted"]) == {"rw", "strobe"}
    assert set(counts["refused"]) == {"rw", "ro", "rc", "strobe", "unmapped"}
    assert min(counts["refused"].values()) >= 3 and counts["accepted"]["rw"] > 100
    for key in ("staged", "committed", "hi_reads", "cleared", "strobes", "both"):
        assert counts[key] >= 5, key
    assert sum(want["werr"]) > 100 and sum(want["rvalid"]) > 500


def test_model_bus_rules():
    regs = bob_registers(channels=2, lanes=2, uis_per_symbol=2)
    model = RegisterBankModel(regs)
    errors, epoch, clicks = (regs[name].address for name in ("write_errors", "epoch",
                                                            "records_out"))
    dead = regs["dead_time"]
    step = model.step
    assert step(re=1, addr=0)["rvalid"] == 0
    out = step()
    assert (out["rdata"], out["rvalid"], out["werr"]) == (BOB_ID, 1, 0)
    # Refused writes: werr in the next cycle only; the register keeps its value.
    step(addr=dead.address, wdata=dead.minimum - 1, we=1)
    assert step()["werr"] == 1
    assert step()["werr"] == 0 and model.port_value("dead_time") == dead.reset
    step(addr=dead.address, wdata=dead.minimum + 5, we=1)
    out = step()
    assert out["werr"] == 0 and out["dead_time"] == dead.minimum + 5
    # A lo word is staged (no error), the hi word commits both; a ro lo word is refused.
    step(addr=epoch, wdata=0x1234, we=1)
    assert step(addr=epoch + 1, wdata=7, we=1)["werr"] == 0
    assert step(addr=clicks, wdata=1, we=1)["epoch"] == (7 << 32) | 0x1234
    assert step()["werr"] == 1
    # Atomic read: the hi word of the lo read, even if the port changes between the reads.
    step(addr=clicks, re=1, status={"records_out": 0x1_FFFF_FFFF})
    assert step(addr=clicks + 1, re=1, status={"records_out": 0x2_0000_0000})["rdata"] \
        == 0xFFFF_FFFF
    assert step()["rdata"] == 1
    # write_errors: 2 so far; a refusal in the clearing cycle counts 1.
    assert step(addr=errors, re=1)["werr"] == 0
    assert step()["rdata"] == 2
    step(addr=errors, re=1, we=1, wdata=5)
    out = step(addr=errors, re=1)
    assert (out["rdata"], out["werr"]) == (0, 1)
    assert step()["rdata"] == 1
    # A strobe: high in the one cycle after a write of 1; a write of 2 is refused.
    step(addr=regs["alarm_clear"].address, wdata=1, we=1)
    assert step(addr=regs["alarm_clear"].address, wdata=2, we=1)["alarm_clear"] == 1
    out = step()
    assert (out["alarm_clear"], out["werr"]) == (0, 1)
    with pytest.raises(KeyError, match="'dead_time' is not a status port"):
        step(status={"dead_time": 1})
    with pytest.raises(ValueError, match="does not fit the bus"):
        step(addr=1 << regs.address_bits)
    with pytest.raises(ValueError, match="Status port alarm takes 1 bits, not 2"):
        step(status={"alarm": 2})
    with pytest.raises(ValueError, match="Bus address width must be"):
        RegisterBankModel(regs, regs.address_bits - 1)


def test_model_saturates_write_errors():
    regs = alice_registers(lanes=2, uis_per_symbol=2)
    model = RegisterBankModel(regs)
    model.errors = (1 << 32) - 2
    for _ in range(3):
        model.step(addr=0, wdata=1, we=1)
    assert model.errors == (1 << 32) - 1
    model.step(addr=regs["write_errors"].address, re=1)
    assert model.step()["rdata"] == (1 << 32) - 1 and model.errors == 0
