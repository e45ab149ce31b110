"""Fixtures shared by the test suites, and the CI bitstream build that runs beside them."""

import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

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
_RUN_KEY = pytest.StashKey[str]()
# Runs the build with its JSON answer, log and exit code in files of its folder, so that any
# process of the test run (an xdist worker other than the one that started it) can wait for it.
_RUNNER = """
import os, subprocess, sys
folder, argv = sys.argv[1], sys.argv[2:]
with open(os.path.join(folder, "out.json"), "w") as out, \\
        open(os.path.join(folder, "cli.log"), "w") as log:
    code = subprocess.run([sys.executable, "-m", "timebin.host.cli", *argv], stdout=out,
                          stderr=log).returncode
with open(os.path.join(folder, "rc.tmp"), "w") as f:
    f.write(str(code))
os.replace(os.path.join(folder, "rc.tmp"), os.path.join(folder, "rc"))
"""


def _is_worker(config):
    return hasattr(config, "workerinput")


def pytest_configure(config):
    """One id for the whole test run, the same in every xdist worker: it names the folder of
    the background build."""
    if _is_worker(config):
        config.stash[_RUN_KEY] = config.workerinput["testrunuid"]
        return
    run = uuid.uuid4().hex
    if config.pluginmanager.hasplugin("xdist"):
        if config.option.testrunuid is None:
            config.option.testrunuid = run           # xdist hands it to the workers
        run = config.option.testrunuid
    config.stash[_RUN_KEY] = run


def _build_folder(config):
    return Path(tempfile.gettempdir()) / f"timebin-ci-build-{config.stash[_RUN_KEY]}"


#: The files of a minute or more (Verilator builds, RTL sessions), run first: with a file
#: per xdist worker, a long file started last would leave the other core idle at the end.
HEAVY_FIRST = ("test_gate_level.py", "test_lab_rtl.py", "test_cocotb_rx_top.py",
               "test_rx_verilator.py", "test_cli.py", "test_cocotb_tx_top.py",
               "test_rx_frontend.py", "test_rx_top.py", "test_cocotb_emulator.py",
               "test_distill_session.py", "test_emulator.py", "test_cocotb_compress.py")


@pytest.hookimpl(trylast=True)          # after `-m` has deselected what it leaves out
def pytest_collection_modifyitems(session, config, items):
    """Put the long files first (:data:`HEAVY_FIRST`; every file's tests stay together and in
    order). When the loopback build test is selected, start its build now, in a process of
    its own, so that its minutes of synthesis and place-and-route run beside the other tests
    instead of after them; the test waits for it. Of the run's processes (xdist workers each
    collect), the first to create the build's folder starts it."""
    rank = {name: k for k, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable
    if not any(item.get_closest_marker("loopback_build") for item in items):
        return
    folder = _build_folder(config)
    try:
        folder.mkdir()
    except FileExistsError:
        return
    process = subprocess.Popen([sys.executable, "-c", _RUNNER, str(folder), *LOOPBACK_BUILD,
                                "--out", str(folder / "loopback")], start_new_session=True)
    (folder / "pid").write_text(str(process.pid))


def pytest_unconfigure(config):
    """The run is over (the controller, or the only process): stop a build still running."""
    if _is_worker(config) or _RUN_KEY not in config.stash:
        return
    folder = _build_folder(config)
    if (folder / "pid").exists() and not (folder / "rc").exists():
        try:
            os.killpg(int((folder / "pid").read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def loopback_build(request):
    """``(exit code, stdout, folder)`` of the background loopback build (waits for it)."""
    folder = _build_folder(request.config)
    if not folder.exists():
        pytest.fail("the loopback build was not started (is the test marked loopback_build?)")
    deadline = time.monotonic() + 3600
    while not (folder / "rc").exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the loopback build in {folder} did not end within an hour")
        time.sleep(1)
    code = int((folder / "rc").read_text())
    return code, (folder / "out.json").read_text(), folder
