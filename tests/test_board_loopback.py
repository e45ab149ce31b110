"""A simulated loopback (self-test) board: Alice's transmitter, Bob's receiver and the
on-chip sifter in one gateware, served over a real pseudo-terminal. The sifted records it
streams and its QBER counters equal the sifting reference applied to the transmitter
model's symbols and the receiver model's records."""

import json
import subprocess
import sys

import numpy as np
import pytest
from timebin.gateware.regmap import loopback_board_registers
from timebin.gateware.rx.binning import x_windows, z_windows
from timebin.host.board import Board, BoardError
from timebin.sim.board import reference_records
from timebin.sim.rx.run import generate_words
from timebin.sim.sifting import sift_reference
from timebin.sim.tx.run import run_tx, seed_key_iv

SHAPE = {"lanes": 4, "uis_per_symbol": 2}
BOB = {"channels": 2, **SHAPE}
CYCLES = 1500
SEED = 3
CLICKS = 0.025
KEY_SEED = 9


@pytest.fixture(scope="module")
def loopback():
    argv = [sys.executable, "-m", "timebin.host.cli", "board", "simulate", "--role",
            "loopback", "--channels", "2", "--lanes", "4", "--cycles", str(CYCLES), "--seed",
            str(SEED), "--click-probability", str(CLICKS), "--board-param",
            "sift_frame_items=16"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line, "the simulated loopback board did not start"
    yield json.loads(line)
    process.terminate()
    process.wait(10)
    process.stdout.close()


def packed(classes):
    return sum(int(c) << (2 * p) for p, c in enumerate(classes))


def test_loopback_sifting_equals_the_reference(loopback):
    S = SHAPE["uis_per_symbol"]
    windows = np.stack([z_windows(S), x_windows(S)])
    roles = np.array([0, 1])                    # a Z detector, an X detector at the + port
    key, iv = seed_key_iv(KEY_SEED)
    with Board.open(f"serial://{loopback['pty']}") as board:
        assert board.role == "loopback" and board.params["bob"]["channels"] == 2
        board.write({"tx_key@0": key & (2**64 - 1), "tx_key@64": key >> 64,
                     "tx_iv@0": iv & (2**64 - 1), "tx_iv@64": iv >> 64})
        board.strobe("tx_reseed")
        board.write({"sift_roles.0": 0, "sift_roles.1": 1, "rx_windows.1": packed(windows[1]),
                     "rx_epoch": 0, "sift_frame_timeout": 64})
        board.set("tx_enable", 1)               # Alice runs ahead of Bob's epoch
        board.strobe("rx_epoch_load")
        words = generate_words(BOB, CYCLES, SEED, click_probability=CLICKS)
        records = reference_records(board.params["bob"], words, 0, windows=windows)
        symbols, _ = run_tx(symbols=int(records["index"].max()) + 1, seed=KEY_SEED, **SHAPE)
        want, counts = sift_reference(symbols, records, roles)
        assert len(want["index"]) > 50
        got = board.stream_sifted(count=len(want["index"]), duration=120)
        live = board.read([name for name in board.registers.names
                           if name.startswith("sift_") and board.registers[name].access == "ro"])
        assert board.read(["rx_overflows.0", "rx_overflows.1"]) == {"rx_overflows.0": 0,
                                                                    "rx_overflows.1": 0}
        assert board.decoder.stats.truncated == 0 and board.lost_frames == 0
        qber = board.qber()
        with pytest.raises(BoardError, match="detection records are bob's"):
            board.stream_records(count=1)
    for field in ("index", "basis", "intensity", "alice_bit", "bob_bit", "alarm"):
        np.testing.assert_array_equal(got[field], np.asarray(want[field]).astype(
            got[field].dtype), err_msg=field)
    for name in ("records_in", "ignored", "unclassified", "unavailable", "not_valid"):
        assert live[f"sift_{name}"] == counts[name], name
    for e in range(8):
        assert live[f"sift_sifted.{e}"] == counts["sifted"][e]
        assert live[f"sift_errors.{e}"] == counts["errors"][e]
    assert live["sift_results"] == len(want["index"]) and live["sift_unavailable"] == 0
    for b, basis in enumerate("ZX"):
        assert qber[basis]["sifted"] == counts["sifted"][4 * b:4 * b + 4].sum()
        assert qber[basis]["errors"] == counts["errors"][4 * b:4 * b + 4].sum()


def test_loopback_map_prefixes_both_tops():
    regs = loopback_board_registers({"alice": SHAPE, "bob": BOB})
    assert "tx_enable" in regs and "rx_dead_time" in regs and "sift_errors.7" in regs
    assert regs["sift_roles.1"].reset == 3 and regs["id"].reset == int.from_bytes(b"LOOP",
                                                                                  "big")
    with pytest.raises(ValueError, match="Loopback parameters must be"):
        loopback_board_registers(BOB)


def test_simulate_serves_the_emulator_board():
    """``timebin board simulate --role loopback --emulator``: the board with the on-chip
    channel emulator, its emu_ registers in the map the host client builds."""
    argv = [sys.executable, "-m", "timebin.host.cli", "board", "simulate", "--role",
            "loopback", "--channels", "3", "--lanes", "4", "--emulator", "--emulator-param",
            "max_jitter=2", "--max-cycles", "20000000"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line, "the simulated loopback board did not start"
        announced = json.loads(line)
        with Board.open(f"serial://{announced['pty']}") as board:
            names = {reg.name for reg in board.registers}
            assert {"emu_p_z", "emu_jitter", "emu_reseed", "emu_clicks.0"} <= names
            board.set("emu_jitter", 2)
            assert board.get("emu_jitter") == 2
            assert board.get("emu_settings_error") == 0
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
    run = subprocess.run([sys.executable, "-m", "timebin.host.cli", "board", "simulate",
                          "--role", "bob", "--emulator"], capture_output=True, text=True)
    assert run.returncode != 0 and "--emulator is for a loopback board, not 'bob'" in run.stderr
