"""Fixtures shared by the test suites, and the CI bitstream build that runs beside them."""

import gc
import subprocess
import sys
import tempfile
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
#: 50 MHz self-test clock (the full 156.25 MHz pipelines do not close timing yet).
LOOPBACK_BUILD = ["build", "--board", "ulx3s", "--role", "loopback", "--lanes", "1",
                  "--freq-mhz", "50", "--json"]
_BUILD_KEY = pytest.StashKey[dict]()


@pytest.hookimpl(trylast=True)          # after `-m` has deselected what it leaves out
def pytest_collection_modifyitems(session, config, items):
    """When the loopback build test is selected, start its build now, in a process of its
    own, so that its minutes of synthesis and place-and-route run beside the other tests
    instead of after them; the test waits for it."""
    if not any(item.get_closest_marker("loopback_build") for item in items):
        return
    out = Path(tempfile.mkdtemp(prefix="timebin-ci-build-"))
    log = open(out / "cli.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from timebin.host.cli import main; "
                               "sys.exit(main(sys.argv[1:]))",
         *LOOPBACK_BUILD, "--out", str(out / "loopback")],
        stdout=subprocess.PIPE, stderr=log, text=True)
    config.stash[_BUILD_KEY] = {"process": process, "out": out, "log": log}


def pytest_unconfigure(config):
    build = config.stash.get(_BUILD_KEY, None)
    if build is not None and build["process"].poll() is None:
        build["process"].kill()


@pytest.fixture
def loopback_build(request):
    """``(exit code, stdout, folder)`` of the background loopback build (waits for it)."""
    build = request.config.stash.get(_BUILD_KEY, None)
    if build is None:
        pytest.fail("the loopback build was not started (is the test marked loopback_build?)")
    stdout, _ = build["process"].communicate(timeout=3600)
    build["log"].close()
    return build["process"].returncode, stdout, build["out"]
