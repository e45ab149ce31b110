"""The loopback board's synthesised ECP5 netlist agrees with its RTL: the same host session
(:func:`timebin.sim.gate_level.session`: identity reads, the description, Alice's, the
emulator's, Bob's and the sifter's configuration, a run of 5000 cycles and a read of the
counters) under cocotb and Verilator gives the same outputs in every cycle, as the RTL does
in Amaranth's simulator; and the run sifts (``SIFT_RESULTS`` frames with Bob's Z bits equal to
Alice's but for dark clicks). Another emulator seed on the netlist changes the trace, so the
comparison can fail. See :mod:`timebin.sim.gate_level` for the flow and its caches.

With nothing cached, synthesis (one to one and a half minutes) runs alongside the RTL's
Verilator build and both RTL runs; the netlist's Verilator build (under a minute) follows.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from timebin.sim.gate_level import (
    amaranth_trace,
    decode_link,
    first_difference,
    loopback_top,
    responses,
    rtl_verilog,
    run_verilog,
    session,
    sifted_results,
    synthesise,
)

EMU_SEED = 77


def cocotb_trace(text, params, path):
    """The trace of ``params`` on the Verilog ``text`` (RTL or netlist)."""
    run_verilog(text, test_module="timebin.sim.cocotb.tb_gate_level",
                params={**params, "trace": str(path)}, timeout_s=900)
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.mark.slow
@pytest.mark.cocotb
def test_netlist_agrees_with_rtl(tmp_path):
    rtl = rtl_verilog(loopback_top())
    params = session(emu_seed=EMU_SEED)
    with ThreadPoolExecutor(1) as pool:
        synthesis = pool.submit(synthesise, rtl)
        want = cocotb_trace(rtl, params, tmp_path / "rtl.npz")
        assert first_difference(amaranth_trace(loopback_top(), params), want) is None
        netlist = synthesis.result()
    assert netlist.cells["TRELLIS_FF"] > 1000 and netlist.cells["LUT4"] > 1000, netlist.cells
    got = cocotb_trace(netlist.text(), params, tmp_path / "netlist.npz")
    difference = first_difference(want, got)
    assert difference is None, f"netlist {netlist.folder} differs from the RTL: {difference}"

    # The run is not trivially empty: every request answered, none refused, sifted results.
    frames, stats = decode_link(want)
    assert stats.crc_errors == 0 and stats.garbage_bytes == 0 and stats.truncated == 0
    answers = responses(frames, params["names"])
    counters = answers["registers"]
    assert answers["writes_refused"] == 0 and counters["link_bad_requests"] == 0, answers
    sifted = sifted_results(frames)
    z = sifted["basis"] == 0
    assert z.sum() > 20 and (~z).sum() > 5, sifted
    # Bob is aligned to Alice: his Z bits are hers but for dark and extra clicks.
    z_errors = int((sifted["alice_bit"][z] != sifted["bob_bit"][z]).sum())
    assert z_errors <= 0.15 * z.sum(), f"{z_errors} Z errors in {z.sum()}: Bob misaligned"
    assert counters["sift_results"] > 20 and counters["sift_unavailable"] == 0, counters
    assert min(counters[f"emu_clicks.{k}"] for k in range(2)) > 0, counters

    # The comparison can fail: another emulator seed changes the netlist's outputs.
    other = cocotb_trace(netlist.text(), session(emu_seed=EMU_SEED + 1),
                         tmp_path / "perturbed.npz")
    assert first_difference(want, other) is not None
