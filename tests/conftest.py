"""Fixtures shared by the test suites (the CI bitstream build among them), and the order of
the test files."""

import gc
import subprocess
import sys
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable


def _assert_refused(error, match, make):
    """``make()`` raises ``error`` matching ``match``; a half-built component it leaves is
    not reported unused."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error, match=match):
            make()
        gc.collect()


@pytest.fixture
def assert_refused():
    """:func:`_assert_refused`: check that building a component with bad parameters raises."""
    return _assert_refused


#: The bitstream build CI checks (issue 7): the ULX3S loopback self-test, one lane, at the
#: 45 MHz self-test clock (the PLL makes it exactly from 25 MHz, and the UART's 3 Mbaud from
#: it, 15 cycles a bit; the full 156.25 MHz pipelines do not close timing yet), placed by
#: nextpnr's static placer (heap placements of this design have left router2 minutes of
#: congestion around the register bank).
LOOPBACK_BUILD = ["build", "--board", "ulx3s", "--role", "loopback", "--lanes", "1",
                  "--freq-mhz", "45", "--placer", "static", "--json"]


#: The files of a minute or more (Verilator builds, RTL sessions), run first: with a file
#: per xdist worker, a long file started last would leave the other core idle at the end.
HEAVY_FIRST = ("test_gate_level.py", "test_lab_rtl.py", "test_cocotb_rx_top.py",
               "test_rx_verilator.py", "test_cli.py", "test_cocotb_tx_top.py",
               "test_rx_frontend.py", "test_rx_top.py", "test_cocotb_emulator.py",
               "test_distill_session.py", "test_emulator.py", "test_cocotb_compress.py")


def pytest_collection_modifyitems(session, config, items):
    """Put the long files first (:data:`HEAVY_FIRST`; every file's tests stay together and in
    order)."""
    rank = {name: k for k, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable


@pytest.fixture
def loopback_build(tmp_path_factory):
    """``(exit code, stdout, folder)`` of :data:`LOOPBACK_BUILD` into ``folder / "loopback"``,
    its log in ``folder / "cli.log"`` (CI runs it alone: `pytest -m synthesis -n0`)."""
    folder = tmp_path_factory.mktemp("loopback-build")
    with open(folder / "cli.log", "w") as log:
        done = subprocess.run([sys.executable, "-m", "timebin.host.cli", *LOOPBACK_BUILD,
                               "--out", str(folder / "loopback")], stdout=subprocess.PIPE,
                              stderr=log, text=True, timeout=3600, check=False)
    return done.returncode, done.stdout, folder
