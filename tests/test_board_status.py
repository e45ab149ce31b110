"""The state of the data-output PHY in the board's registers (``data_phy_ready``,
``data_phy_errors``): the board gateware (:mod:`timebin.gateware.system`) in Amaranth's
simulator, read over its host link as the host reads it; the board tops
(:class:`timebin.boards.common.BoardTop`) that feed it from the ECPIX-5's DCU transmitter or
with the constants of pin registers; and the host client that shows it."""

import gc
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from amaranth.hdl import Const, Fragment, Signal, UnusedElaboratable, Value
from amaranth.sim import Simulator
from timebin.boards import board_spec
from timebin.boards.common import BoardTop, role_params
from timebin.gateware.frames import FrameType
from timebin.gateware.system import AliceBoard, LoopbackBoard
from timebin.host.board import Board, decode_registers
from timebin.host.cli import main
from timebin.host.frames import FrameDecoder, FrameEncoder
from timebin.sim.amaranth_helpers import SYS_PERIOD
from timebin.sim.board import SIM_BOARD_TIMEOUT

ALICE = {"lanes": 2, "uis_per_symbol": 2}
BOB = {"channels": 2, "lanes": 2, "uis_per_symbol": 2}


def rising_edges(levels, before=0):
    """The model of ``data_phy_errors``: rising edges of the flag (``before``: its value
    before the first cycle: the gateware takes 0 after reset), before saturation."""
    levels = [before, *levels]
    return sum(1 for a, b in zip(levels, levels[1:], strict=False) if b and not a)


class LinkHost:
    """The host's end of a board's ``link_rx``/``link_tx`` in a testbench: register reads
    encoded and decoded by the host's own frame code, one byte per cycle each way."""

    def __init__(self, board):
        self.board = board
        self.encoder = FrameEncoder()
        self.decoder = FrameDecoder()

    async def read(self, ctx, names, *, max_cycles=2000):
        regs = [self.board.register_map[name] for name in names]
        addresses = [a for reg in regs for a in reg.addresses]
        request = self.encoder.encode(FrameType.REG_READ_REQ, b"".join(
            a.to_bytes(2, "little") for a in addresses))
        rx, tx = self.board.link_rx, self.board.link_tx
        ctx.set(tx.ready, 1)
        at, frames = 0, []
        for _ in range(max_cycles):
            if at < len(request):
                ctx.set(rx.valid, 1)
                ctx.set(rx.payload, request[at])
            else:
                ctx.set(rx.valid, 0)
            taken = at < len(request) and ctx.get(rx.ready)
            out = ctx.get(tx.payload) if ctx.get(tx.valid) else None
            await ctx.tick()
            at += bool(taken)
            if out is not None:
                frames += [f for f in self.decoder.feed(bytes([out]))
                           if f.type == FrameType.REG_READ_RESP]
            if frames:
                break
        else:
            raise AssertionError(f"No REG_READ_RESP within {max_cycles} cycles")
        payload = frames[0].payload
        words = [int.from_bytes(payload[i:i + 4], "little") for i in range(0, len(payload), 4)]
        assert len(words) == len(addresses)
        return decode_registers(regs, words)


def run(board, bench):
    sim = Simulator(board)
    sim.add_clock(SYS_PERIOD)
    sim.add_testbench(bench)
    sim.run()


NAMES = ["data_phy_ready", "data_phy_errors"]


@pytest.mark.parametrize("seed", [1, 2])
def test_alice_board_counts_error_edges_and_shows_ready(seed):
    """Undriven, the ports read as pin registers' (ready 1, no error); ready follows its
    input; the counter counts rising edges of a seeded flag (not its cycles high), a flag
    held high counts once, and (with the link's counters 6 bits wide, as a small FPGA's) it
    sticks at its maximum."""
    rng = np.random.default_rng(seed)
    # Runs of 1..6 cycles low and high: far fewer edges than cycles high.
    levels = []
    while len(levels) < 150:
        levels += [0] * int(rng.integers(1, 7)) + [1] * int(rng.integers(1, 7))
    edges = rising_edges(levels)
    assert 0 < edges < sum(levels) and edges < 63
    board = AliceBoard(params=ALICE, board={"symbol_depth": 16}, link={"counter_bits": 6})
    host = LinkHost(board)
    seen = {}

    async def bench(ctx):
        seen["reset"] = await host.read(ctx, NAMES)
        ctx.set(board.data_phy_ready, 0)
        seen["down"] = await host.read(ctx, NAMES)
        ctx.set(board.data_phy_ready, 1)
        for level in levels:
            ctx.set(board.data_phy_error, level)
            await ctx.tick()
        seen["pattern"] = await host.read(ctx, NAMES)     # the flag ends high: no new edge
        ctx.set(board.data_phy_error, 0)
        await ctx.tick()
        for _ in range(70 - edges):                        # past the 6-bit maximum
            ctx.set(board.data_phy_error, 1)
            await ctx.tick()
            ctx.set(board.data_phy_error, 0)
            await ctx.tick()
        seen["saturated"] = await host.read(ctx, NAMES)

    run(board, bench)
    assert seen["reset"] == {"data_phy_ready": 1, "data_phy_errors": 0}
    assert seen["down"] == {"data_phy_ready": 0, "data_phy_errors": 0}
    assert seen["pattern"] == {"data_phy_ready": 1, "data_phy_errors": edges}
    assert seen["saturated"] == {"data_phy_ready": 1, "data_phy_errors": 63}


def test_alice_board_counts_a_flag_high_from_reset_once_at_full_width():
    """32-bit counters (the default): a flag high from the first cycle on is one event;
    one more pulse makes two."""
    board = AliceBoard(params=ALICE, board={"symbol_depth": 16})
    host = LinkHost(board)
    seen = []

    async def bench(ctx):
        ctx.set(board.data_phy_error, 1)
        await ctx.tick().repeat(30)
        seen.append(await host.read(ctx, ["data_phy_errors"]))
        ctx.set(board.data_phy_error, 0)
        await ctx.tick().repeat(3)
        ctx.set(board.data_phy_error, 1)
        await ctx.tick()
        ctx.set(board.data_phy_error, 0)
        seen.append(await host.read(ctx, ["data_phy_errors"]))

    run(board, bench)
    assert [s["data_phy_errors"] for s in seen] == [1, 2]


def test_loopback_board_shows_the_data_phy():
    board = LoopbackBoard(params={"alice": ALICE, "bob": BOB})
    host = LinkHost(board)
    seen = []

    async def bench(ctx):
        ctx.set(board.data_phy_ready, 0)
        for level in (1, 1, 0, 1, 0, 0, 1, 1, 1, 0):
            ctx.set(board.data_phy_error, level)
            await ctx.tick()
        seen.append(await host.read(ctx, NAMES))

    run(board, bench)
    assert seen == [{"data_phy_ready": 0, "data_phy_errors": 3}]


def test_model_counts_edges():
    assert rising_edges([1, 1, 0, 1, 0, 0, 1, 1, 1, 0]) == 3
    assert rising_edges([1, 1], before=1) == 0 and rising_edges([0, 1, 1, 1]) == 1


# --- Board tops --------------------------------------------------------------------------------

def _comb_driver(fragment, target):
    """The value ``fragment``'s own ``comb`` statements assign to ``target`` (``None``)."""
    found = [stmt.rhs for stmt in fragment.statements.get("comb", [])
             if getattr(stmt, "lhs", None) is target]         # an assignment (``eq``)
    assert len(found) <= 1
    return found[0] if found else None


def _subfragment(fragment, *path):
    for name in path:
        fragment = next(sub for sub, sub_name, _ in fragment.subfragments if sub_name == name)
    return fragment


def _elaborated(board, role, **kwargs):
    spec = board_spec(board)
    params, board_params = role_params(spec, role, lanes=2)
    top = BoardTop(spec, role, params=params, board=board_params, **kwargs)
    return top, Fragment.get(top, spec.platform())


@pytest.mark.parametrize("role, scope", [("alice", False), ("bob", False), ("loopback", True)])
def test_ecpix5_top_feeds_the_registers_from_the_dcu(role, scope):
    """The DCU transmitter's ``ready`` (its reset sequencer's) and its synchronised FIFO
    error flag drive the gateware's ``data_phy_ready`` and ``data_phy_error`` (Bob's gate
    words take the DCU as Alice's serializer word does)."""
    top, fragment = _elaborated("ecpix5", role, **({"scope": True} if scope else {}))
    gw, phy = top.gateware, top.data_phy
    assert phy is not None and phy.ready is phy.phy.ready and phy.error is phy.phy.fifo_error
    assert _comb_driver(fragment, gw.data_phy_ready) is phy.phy.ready
    assert _comb_driver(fragment, gw.data_phy_error) is phy.phy.fifo_error
    # That PHY is the one on the pins, and its flags are the DCU's.
    dcu = _subfragment(fragment, "pins_out", "serdes", "dcu")
    assert phy.phy in dcu.origins
    sequencer = _subfragment(dcu, "sequencer")
    assert _comb_driver(dcu, phy.phy.ready) is sequencer.origins[0].ready
    synchronizer = _subfragment(dcu, "fifo_error_sync").origins[0]
    assert synchronizer.o is phy.phy.fifo_error
    (dcua,) = [sub for sub, name, _ in dcu.subfragments if name == "dcu"]
    error_out = dcua.ports["CH0_FFS_TXFBFIFO_ERROR"][0]
    assert _comb_driver(dcu, synchronizer.i) is error_out


@pytest.mark.parametrize("board, role", [("ulx3s", "alice"), ("ecpix5", "loopback"),
                                         ("colorlight-5a75b", "alice")])
def test_pin_register_tops_feed_constants(board, role):
    """Without a SERDES output (DDR pins; an ECPIX-5 loopback without scope pins has no
    data output at all): ready 1, no error."""
    top, fragment = _elaborated(board, role)
    gw = top.gateware
    assert top.data_phy is None
    for port, value in ((gw.data_phy_ready, 1), (gw.data_phy_error, 0)):
        driver = _comb_driver(fragment, port)
        assert isinstance(driver, Const) and driver.value == value



def test_ports_have_the_inits_of_pin_registers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        board = AliceBoard(params=ALICE, board={"symbol_depth": 16})
        ready, error = (Value.cast(board.data_phy_ready), Value.cast(board.data_phy_error))
        del board
        gc.collect()
    assert isinstance(ready, Signal) and ready.init == 1 and error.init == 0


# --- The host ----------------------------------------------------------------------------------

def test_host_shows_the_data_phy_of_a_simulated_alice(capsys):
    argv = [sys.executable, "-m", "timebin.host.cli", "board", "simulate", "--role", "alice",
            "--lanes", "2", "--board-param", "symbol_depth=16", "--tcp", "0", "--no-pty"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line, "the simulated Alice board did not start"
        url = f"tcp://127.0.0.1:{json.loads(line)['tcp']}"
        with Board.open(url, timeout=SIM_BOARD_TIMEOUT) as alice:
            assert alice.data_phy() == {"data_phy_ready": 1, "data_phy_errors": 0}
            assert {"data_phy_ready", "data_phy_errors"} <= set(alice.counters())
        # `timebin board info` shows it next to the link statistics.
        capsys.readouterr()
        main(["board", "info", "--port", url, "--timeout", str(SIM_BOARD_TIMEOUT), "--json"])
        info = json.loads(capsys.readouterr().out)
        assert info["data_phy"] == {"data_phy_ready": 1, "data_phy_errors": 0}
        assert "link_phy_errors" in info["link_stats"]["board"]
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
