"""Alice's symbol memory's generated Verilog under cocotb (Verilator, and Icarus when installed)
against the model, cycle by cycle from reset: the random stimulus of
``tests/test_tx_symbol_memory.py::test_rtl_matches_model`` at its two shapes (log words in
bursts with gaps, some longer than the buffer; lookups of recent, same-cycle, overwritten,
not yet written, dropped and arbitrary indexes; result back-pressure), the same stimulus
again with resets mid-run (one of them during the clearing sweep of the one before), and the
directed reset case ``test_reset_forgets_stale_words``."""

import numpy as np
import pytest
from test_tx_symbol_memory import directed, random_stimulus
from timebin.gateware.tx.symbol_memory import SymbolMemory
from timebin.sim.cocotb.runner import run_cocotb, simulators
from timebin.sim.cocotb.tb_symbol_memory import save_stimulus

#: ``(lanes, depth_words, cycles)`` of ``test_rtl_matches_model``; its seed is
#: ``lanes * 1000 + depth_words``.
SHAPES = {"L16-D64": (16, 64, 3000), "L4-D16": (4, 16, 4000)}


def random_runs(tmp_path, lanes, depth, n):
    stimulus = random_stimulus(np.random.default_rng(lanes * 1000 + depth), n, lanes, depth)
    path = tmp_path / "random.npz"
    save_stimulus(path, *stimulus)
    # As test_rtl_matches_model asserts of the model on this stimulus.
    cover = {"hits": n // 5, "unavailable": n // 5, "stalls": n // 10, "missed": 1}
    # A reset, another in the middle of the sweep it starts, and a third later on.
    resets = [n // 3, n // 3 + depth // 2, 2 * n // 3]
    return [{"name": "random", "stimulus": str(path), "cover": cover},
            {"name": "random-resets", "stimulus": str(path), "resets": resets,
             "cover": {**cover, "missed": 4}}]


def reset_run(tmp_path):
    """``test_reset_forgets_stale_words``: words 0..7 logged, a reset in cycle 30, the
    indexes start again with word 3 dropped (L = 4, D = 16)."""
    log = [(16 + w, w) for w in range(8)] + [(50 + w, w) for w in range(8) if w != 3]
    lookups = [(25, 13), (32, 29), (60, 13), (61, 9)]
    path = tmp_path / "reset.npz"
    save_stimulus(path, *directed(4, 80, log=log, lookups=lookups))
    return {"name": "directed-reset", "stimulus": str(path), "resets": [30],
            "cover": {"hits": 2, "unavailable": 2}}


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("shape", list(SHAPES))
def test_symbol_memory_cocotb(shape, simulator, tmp_path):
    lanes, depth, n = SHAPES[shape]
    runs = random_runs(tmp_path, lanes, depth, n)
    if (lanes, depth) == (4, 16):
        runs.append(reset_run(tmp_path))
    result = run_cocotb(
        SymbolMemory(lanes=lanes, depth_words=depth), toplevel="symbol_memory",
        test_module="timebin.sim.cocotb.tb_symbol_memory",
        params={"lanes": lanes, "depth_words": depth, "runs": runs}, simulator=simulator,
        timeout_s=600)
    assert result.tests == 1
