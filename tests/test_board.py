"""The host's board client against simulated boards: the real gateware of a whole board in
Amaranth's simulator, served by ``timebin board simulate`` in another process over a real
pseudo-terminal (and TCP), talked to by :class:`timebin.host.board.Board` exactly as to
hardware. Decoded records and symbol lookups are compared with the reference models."""

import json
import subprocess
import sys

import numpy as np
import pytest
from timebin.gateware.frames import FrameType
from timebin.gateware.protocol import ALARM_BITS
from timebin.gateware.regmap import board_registers
from timebin.gateware.rx.binning import x_windows, z_windows
from timebin.host.board import Board, BoardError, DetectionReassembler, RegisterRefused
from timebin.host.cli import main
from timebin.sim.board import SIM_BOARD_TIMEOUT, reference_records
from timebin.sim.rx.run import generate_words
from timebin.sim.tx.run import run_tx, seed_key_iv

BOB = {"channels": 2, "lanes": 4, "uis_per_symbol": 2}
ALICE = {"lanes": 4, "uis_per_symbol": 2}
WORD_CYCLES = 1500
SEED = 11
CLICK_PROBABILITY = 0.03


def start_board(role, *options):
    """A ``timebin board simulate`` process and its announcement (pty path, TCP port)."""
    argv = [sys.executable, "-m", "timebin.host.cli", "board", "simulate", "--role", role,
            "--tcp", "0", *options]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line, f"the simulated {role} board did not start"
    return process, json.loads(line)


def stop(process):
    process.terminate()
    process.wait(10)
    process.stdout.close()


@pytest.fixture(scope="module")
def bob_board():
    process, announced = start_board(
        "bob", "--channels", "2", "--lanes", "4", "--cycles", str(WORD_CYCLES), "--seed",
        str(SEED), "--click-probability", str(CLICK_PROBABILITY),
        "--board-param", "frame_words=32")
    yield announced
    stop(process)


@pytest.fixture(scope="module")
def alice_board():
    process, announced = start_board("alice", "--lanes", "4", "--board-param",
                                     "symbol_depth=256")
    yield announced
    stop(process)


def packed(classes):
    return sum(int(c) << (2 * p) for p, c in enumerate(classes))


def test_bob_records_over_pty_equal_the_model(bob_board):
    """Configure Bob over the pty, start the detector words with an epoch, stream the
    records: the decoded records equal the reference model's, field by field."""
    S = BOB["uis_per_symbol"]
    windows = np.stack([z_windows(S), x_windows(S)])
    settings = {"dead_time": 3 * BOB["lanes"] * S + 1, "dead_mode": 0,
                "delay": np.array([3, 6])}
    epoch = (1 << 40) + 17
    with Board.open(f"serial://{bob_board['pty']}", timeout=SIM_BOARD_TIMEOUT) as bob:
        assert bob.role == "bob" and bob.params["channels"] == 2
        bob.write({"dead_time": settings["dead_time"], "dead_mode": 0, "delay.0": 3,
                   "delay.1": 6, "windows.1": packed(windows[1]), "record_timeout": 300,
                   "record_k": 4, "epoch": epoch})
        assert bob.read(["dead_time", "delay.1", "windows.1", "record_k"]) == {
            "dead_time": settings["dead_time"], "delay.1": 6, "windows.1": packed(windows[1]),
            "record_k": 4}
        bob.strobe("epoch_load")
        words = generate_words(BOB, WORD_CYCLES, SEED, click_probability=CLICK_PROBABILITY)
        want = reference_records(bob.params, words, epoch, windows=windows, **settings)
        assert len(want["index"]) > 100
        got = bob.stream_records(count=len(want["index"]), duration=120)
        counters = bob.counters()
        stats = bob.link_stats()
    assert counters["overflow"] == 0 and counters["records_out"] == len(want["index"])
    for field in ("index", "phase", "channel", "cls", "alarm"):
        np.testing.assert_array_equal(got[field], want[field].astype(got[field].dtype),
                                      err_msg=field)
    assert stats["crc_errors"] == 0 and stats["lost_frames"] == 0
    assert stats["blocks_lost"] == 0 and stats["board"]["link_bad_requests"] == 0
    assert counters["detection_frames"] > 1      # several frames: the pointers were used


def test_bob_refuses_and_counts(bob_board):
    """A value the map refuses is refused before sending; one the host map lets through but
    the bank refuses (a read-only register written raw) comes back refused and counted; a
    malformed request is answered empty and counted."""
    with Board.open(f"tcp://127.0.0.1:{bob_board['tcp']}", timeout=SIM_BOARD_TIMEOUT) as bob:
        with pytest.raises(ValueError, match="dead_time takes"):
            bob.set("dead_time", 1)
        with pytest.raises(ValueError, match="records_out is ro"):
            bob.set("records_out", 5)
        bob.get("write_errors")                         # clear
        payload = (bob.registers["records_out"].address).to_bytes(2, "little") + bytes(4)
        assert bob._request(FrameType.REG_WRITE_REQ, payload) == b"\x01"
        payload = (0xFFF0).to_bytes(2, "little") + bytes(4)     # unmapped
        assert bob._request(FrameType.REG_WRITE_REQ, payload) == b"\x01"
        assert bob.read_words([0xFFF0]) == [0]
        assert bob.get("write_errors") == 2
        before = bob.get("link_bad_requests")
        assert bob._request(FrameType.REG_READ_REQ, b"\x01\x02\x03") == b""
        assert bob._request(FrameType.SYMBOL_LOOKUP_REQ, bytes(8)) == b""
        assert bob.get("link_bad_requests") == before + 2
        with pytest.raises(BoardError, match="symbol lookups are alice's"):
            bob.lookup([1])
        # Garbage and a corrupted request on the wire: the board resynchronises.
        crc_before = bob.get("link_crc_errors")
        frame = bytearray(bob.encoder.encode(FrameType.REG_READ_REQ, b"\x00\x00"))
        frame[-1] ^= 0x40
        bob.transport.write(b"\x00\xa5\x5a garbage" + bytes(frame))
        assert bob.get("id") == int.from_bytes(b"BOB ", "big")
        assert bob.get("link_crc_errors") == crc_before + 1


def test_alice_lookups_over_pty_equal_the_model(alice_board):
    """Key Alice's CSPRNG, let her emit, stop her, and look up symbols: those the memory
    holds equal the transmitter model's; older and newer ones come back unavailable."""
    lanes = ALICE["lanes"]
    key, iv = seed_key_iv(5)
    with Board.open(f"serial://{alice_board['pty']}", timeout=SIM_BOARD_TIMEOUT) as alice:
        assert alice.role == "alice"
        alice.write({"key@0": key & (2**64 - 1), "key@64": key >> 64,
                     "iv@0": iv & (2**64 - 1), "iv@64": iv >> 64})
        alice.strobe("reseed")
        alice.get("id")                           # let the keystream start
        alice.set("enable", 1)
        while alice.get("log_written") < 400:
            pass
        alice.set("enable", 0)
        written = alice.get("log_written")
        depth = alice.board_params["symbol_depth"]
        held = np.arange((written - depth) * lanes, written * lanes, dtype=np.uint64)
        indices = np.concatenate((held[::7], held[-5:], [written * lanes + 3, 2**50],
                                  np.arange(8, dtype=np.uint64)))
        got = alice.lookup(indices)
        counters = alice.read(["lookups", "lookup_unavailable", "log_missed"])
    model, _ = run_tx(lanes=lanes, uis_per_symbol=2, symbols=int(written) * lanes, seed=5)
    inside = (indices >= held[0]) & (indices <= held[-1])
    assert got["available"].tolist() == inside.astype(int).tolist()
    at = indices[inside].astype(np.int64)
    for field in ("basis", "bit", "intensity", "valid"):
        np.testing.assert_array_equal(got[field][inside], model[field][at], err_msg=field)
        assert not got[field][~inside].any()
    assert counters["lookups"] == len(indices)
    assert counters["lookup_unavailable"] == int((~inside).sum())


def test_cli_board_commands(bob_board, capsys):
    port = f"tcp://127.0.0.1:{bob_board['tcp']}"
    assert main(["board", "info", "--port", port, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["role"] == "bob" and info["params"]["channels"] == 2
    assert main(["board", "set", "alarm_clear", "1", "--port", port, "--json"]) == 0
    capsys.readouterr()
    assert main(["board", "set", "watchdog_max_fill", "200", "--port", port, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"watchdog_max_fill": 200}
    assert main(["board", "get", "watchdog_max_fill", "--port", port, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"watchdog_max_fill": 200}
    assert main(["board", "regs", "--port", port, "--json"]) == 0
    regs = json.loads(capsys.readouterr().out)
    assert regs["watchdog_max_fill"] == 200 and regs["id"] == int.from_bytes(b"BOB ", "big")
    assert main(["board", "set", "watchdog_max_fill", "300", "--port", port]) == 2
    assert "watchdog_max_fill takes 0..256, not 300" in capsys.readouterr().err
    assert main(["board", "get", "no_such", "--port", port]) == 2
    assert main(["board", "info", "--port", "tcp://127.0.0.1:1"]) == 1


def test_sim_transport_and_alarm_frames():
    """``sim://`` starts its own board; a rising alarm is reported in an ALARM frame."""
    with Board.open("sim://bob?channels=1&lanes=2") as bob:
        assert bob.params["channels"] == 1 and bob.params["lanes"] == 2
        bob.poll(0.5)
        assert bob.alarms == []
        # A combination the block refuses (gate offset beyond the period of 2 symbols)
        # raises settings_error, an alarm bit: an ALARM frame reports it.
        bob.write({"gate_period.0": 2, "gate_offset.0": 5})
        assert bob.get("settings_error") == 1
        bob.poll(0.5)
        assert bob.alarms and "settings_error" in bob.alarm_names(bob.alarms[-1]["mask"])
        assert set(bob.alarm_names(0xF)) == set(ALARM_BITS["bob"])


def test_reassembler_resynchronises_after_loss():
    """Lost frames drop the partial block and resume at the next pointer: the records
    decoded are exactly those of the blocks none of whose words were lost, and the lost
    blocks are counted from the block sequence numbers."""
    from timebin.host.records import read_block_headers
    from timebin.sim.rx.compress import encode_records, link_records

    rng = np.random.default_rng(3)
    records = link_records(rng, 1e-2, 3000, channels=2, uis_per_symbol=2)
    words = np.asarray(encode_records(records, channels=2, uis_per_symbol=2, k=6,
                                      max_records=100), np.uint32)
    heads = read_block_headers(words, 2, 2)
    starts = heads["start"]
    ends = starts + 3 + heads["unary_words"] + heads["fixed_words"]
    first_record = np.concatenate(([0], np.cumsum(heads["count"])[:-1]))

    def payload(lo, hi):
        inside = starts[(starts >= lo) & (starts < hi)]
        pointer = int(inside[0] - lo) if len(inside) else 0xFFFF
        return pointer.to_bytes(2, "little") + words[lo:hi].astype("<u4").tobytes()

    cuts = list(range(0, len(words), 37)) + [len(words)]
    frames = list(zip(cuts[:-1], cuts[1:], strict=True))
    lost = {0, 5, 6, 20}
    reassembler = DetectionReassembler(2, 2)
    parts = [reassembler.feed(payload(lo, hi), lost_before=(i - 1) in lost)
             for i, (lo, hi) in enumerate(frames) if i not in lost]
    gone = {b for i in lost for b in range(len(starts))
            if starts[b] < frames[i][1] and ends[b] > frames[i][0]}
    kept = [b for b in range(len(starts)) if b not in gone]
    assert gone and kept
    for field in ("index", "phase", "channel", "cls", "alarm"):
        got = np.concatenate([p[field] for p in parts])
        want = np.concatenate([np.asarray(records[field])[
            first_record[b]:first_record[b] + heads["count"][b]] for b in kept])
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=field)
    assert reassembler.blocks == len(kept)
    # Lost blocks before the first one decoded are not seen; the others are counted.
    assert reassembler.blocks_lost == len([b for b in gone if b > kept[0]])
    assert reassembler.words_dropped > 0
    with pytest.raises(BoardError, match="not a pointer and whole words"):
        reassembler.feed(b"\x00\x00\x01")
    with pytest.raises(BoardError, match="beyond its 1 words"):
        reassembler.feed((5).to_bytes(2, "little") + bytes(4))


def test_board_maps_build_for_both_roles():
    for role, params in (("alice", ALICE), ("bob", BOB)):
        regs = board_registers(role, params)
        assert "link_frames_in" in regs and regs["id"].reset != 0
    with pytest.raises(ValueError, match="Unknown bob board parameter"):
        board_registers("bob", BOB, {"nonsense": 1})
    assert issubclass(RegisterRefused, BoardError) and issubclass(RegisterRefused, ValueError)
