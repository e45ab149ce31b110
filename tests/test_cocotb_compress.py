"""The record compressor's generated Verilog under cocotb (Verilator, and Icarus when installed)
against the model, cycle by cycle from reset, at the shapes of the two random Amaranth tests
of ``tests/test_rx_compress.py`` (4 channels, S = 2, blocks of 16; 3 channels, S = 6, blocks
of 5), each with the stimulus of both tests and of a directed one (one simulator run each):

* ``merged`` (``test_rtl_matches_model_merged_records``, seed 2024, 3200 cycles): records of
  the record merge (reordered channels: escapes; the alarm in stretches), source gaps,
  ``words`` back-pressure with a 400-cycle stall that holds the records back, flushes (two
  back to back), a 300-cycle timeout, ``k`` 3, refused (32) for 200 cycles, then 0; a drain.
  Also checks every cycle that the stream outputs do not follow ``records.valid`` or
  ``words.ready`` combinationally.
* ``odd`` (``test_rtl_matches_model_odd_records``, seed 36, 2500 cycles): indexes below the
  previous one, a huge gap, the wrap at 2**64, (phase, class) pairs without a slot code,
  alarm changes; a 9-cycle timeout that closes blocks; back-pressure. (Its ``k`` changes, 31
  then 0 then 5, come after the last record is taken: every block has ``k`` 31.)
* ``k-refused`` (``test_k_is_read_when_a_block_opens_and_refused_values_keep_the_last``, 120
  cycles): ``k`` changing mid-block, and refused (32, 63) while two blocks open.

The words taken must also decode (host decoder) into the records taken."""

import numpy as np
import pytest
from test_rx_compress import back_to_back, merged_records, odd_records
from timebin.gateware.rx.compress import DEFAULT_MAX_RECORDS, DEFAULT_TIMEOUT, RecordCompressor
from timebin.host.records import MAX_K
from timebin.sim.cocotb.runner import run_cocotb, simulators
from timebin.sim.cocotb.tb_compress import save_stimulus


def merged_stimulus(channels=4, uis_per_symbol=2, max_records=16):
    """As ``test_rtl_matches_model_merged_records`` draws it at its shape; at others, with
    the click rate per channel scaled to give as many records (``k`` changes while they
    come)."""
    rng = np.random.default_rng(2024)
    records = merged_records(rng, 700, channels, uis_per_symbol, 0.48 / channels)
    n = 3200
    gaps = rng.random(n) < 0.8
    ready = rng.random(n) < 0.7
    ready[900:1300] = False                                          # stall: records wait
    ready[-700:] = True
    flush = np.zeros(n, bool)
    flush[[200, 201, 650, 1500]] = True
    flush[-650] = True                                               # drain the last block
    k = np.full(n, 3)
    k[1000:1200] = MAX_K + 1                                         # refused
    k[1600:] = 0
    inputs = {"gaps": gaps, "ready": ready, "flush": flush, "k": k, "timeout": 300}
    cover = {"escapes": 1, "stalled_records": 200, "stalled_words": 400, "refused_k": 200,
             "ks": 2, "alarms": 2, "records": 300}
    return records, inputs, cover


def odd_stimulus(channels=3, uis_per_symbol=6, max_records=5):
    """As ``test_rtl_matches_model_odd_records`` draws it (at its shape by default)."""
    rng = np.random.default_rng(36)
    records = odd_records(rng, 260, channels, uis_per_symbol)
    n = 2500
    k = np.full(n, MAX_K)
    k[n // 3:] = 0
    k[2 * n // 3:] = 5
    ready = rng.random(n) < 0.8
    ready[-500:] = True
    gaps = rng.random(n) < 0.4
    inputs = {"gaps": gaps, "ready": ready, "flush": False, "k": k, "timeout": 9}
    cover = {"escapes": 5, "stalled_words": 100, "alarms": 2, "records": 260}
    return records, inputs, cover


def k_stimulus(channels=2, uis_per_symbol=2, max_records=DEFAULT_MAX_RECORDS):
    """As ``test_k_is_read_when_a_block_opens_and_refused_values_keep_the_last`` draws it:
    seven records, flushes between them, ``k`` changing mid-block and refused (32, 63) while
    two blocks open, which keep the last accepted value."""
    n = 120
    k = np.full(n, 4)
    k[3:] = 7                    # the first block opened in cycle 1 with k = 4
    k[30:50] = 32                # refused: blocks opening now use 7
    k[50:] = 63
    k[80:] = 2
    gaps = np.ones(n, bool)
    gaps[[0, 1, 2, 20, 40, 60, 90]] = False
    flush = np.zeros(n, bool)
    flush[[10, 25, 45, 65, 95]] = True
    inputs = {"gaps": gaps, "ready": True, "flush": flush, "k": k, "timeout": DEFAULT_TIMEOUT}
    cover = {"refused_k_blocks": 2, "ks": 3, "blocks": 5, "records": 7}
    return back_to_back(7), inputs, cover


SHAPES = {"C4-S2-M16": {"channels": 4, "uis_per_symbol": 2, "max_records": 16},
          "C3-S6-M5": {"channels": 3, "uis_per_symbol": 6, "max_records": 5}}
#: Stimulus, and whether to check the combinational rules with it.
STIMULI = {"merged": (merged_stimulus, True), "odd": (odd_stimulus, False),
           "k-refused": (k_stimulus, False)}


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("stimulus", list(STIMULI))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_compressor_cocotb(shape, stimulus, simulator, tmp_path):
    params = SHAPES[shape]
    make, check_rules = STIMULI[stimulus]
    records, inputs, cover = make(**params)
    path = tmp_path / "stimulus.npz"
    save_stimulus(path, records, **inputs)
    result = run_cocotb(
        RecordCompressor(**params), toplevel="record_compressor",
        test_module="timebin.sim.cocotb.tb_compress",
        params={"top": params, "name": stimulus, "stimulus": str(path),
                "check_rules": check_rules, "cover": cover},
        simulator=simulator, timeout_s=600)
    assert result.tests == 1
