"""The ``timebin`` command. Simulation subcommands load ``timebin.sim`` (and Amaranth) only
when they run; the host library itself never imports Amaranth (DESIGN.md section 5).

    timebin demo [--distance-km 10] [--symbols 20000000] [--detector gated|snspd] [--rtl]
                 [--seed 1] [--plots DIR] [--json]
                                     the main job: Alice's transmitter and Bob's receiver,
                                     each checked against its gateware, then a QKD session
                                     (reference model, or --rtl: the gateware in the loop)
                                     distilling key: a summary table and PNG plots
    timebin sim tx --lanes 16 --symbols 1000000 --seed 1 --out tx.npz [--json]
    timebin sim rx [--in words.npz] --out records.npz [--rtl] [--json]
    timebin bench tx --json
    timebin bench rx --json
    timebin bench link --json
    timebin regmap --role alice|bob|loopback [--board] [--json]
    timebin board info|regs|get NAME|set NAME VALUE|stream|lookup --port PORT [--json]
    timebin board simulate --role alice|bob|loopback [--tcp PORT]
    timebin distill --role alice|bob --listen|--connect HOST:PORT --secret-file F [--json]
    timebin serve --store KEYS.db --role alice|bob --cert C --key K [--ca CA] [--token S=T]
    timebin keyrate --distances 0:200:10 [--json] [--plot rate.png]
    timebin bench distill --json
    timebin bench lab [--curve [--distances 0:40:10] [--curve-symbols 20000000]] --json
"""

import argparse
import json
import math
import sys

from .board import BoardError
from .cli_board import add_board_parser, run_board
from .cli_distill import add_distill_parser, run_distill
from .cli_keyrate import add_keyrate_parser, parse_distances, run_keyrate
from .cli_serve import add_serve_parser, run_serve
from .cli_types import non_negative_float, non_negative_int, positive_int

__all__ = ["main"]

_positive_int, _non_negative_int = positive_int, non_negative_int


def _probabilities(text):
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated probabilities, not {text!r}") from None
    return values


def _add_tx_options(parser):
    parser.add_argument("--lanes", type=_positive_int, default=16, help="symbols per cycle L")
    parser.add_argument("--uis-per-symbol", type=_positive_int, default=2,
                        help="serializer UIs per symbol S (even)")
    parser.add_argument("--symbols", type=_positive_int, default=1_000_000)
    parser.add_argument("--seed", type=_non_negative_int, default=1,
                        help="seed of the Trivium key and IV")
    parser.add_argument("--protocol", choices=("3", "4"), default="3",
                        help="3-state time-bin (Z0, Z1, X+) or 4-state BB84")
    parser.add_argument("--p-z", type=float, default=0.9, help="probability of the Z basis")
    parser.add_argument("--intensities", type=_probabilities, default=(0.7, 0.3),
                        help="probabilities of the intensity classes, e.g. 0.7,0.3")
    parser.add_argument("--training", default="data",
                        choices=("data", "all_early", "all_late", "alternating", "prbs7",
                                 "prbs31"))
    parser.add_argument("--dac-bits", type=_positive_int, default=8)
    parser.add_argument("--pm-bits", type=_positive_int, default=1)


def _sim_tx(args):
    from ..sim.tx.run import run_tx, save_npz, summarise

    result, meta = run_tx(lanes=args.lanes, uis_per_symbol=args.uis_per_symbol,
                          symbols=args.symbols, seed=args.seed, protocol=args.protocol,
                          p_z=args.p_z, intensities=args.intensities, training=args.training,
                          dac_bits=args.dac_bits, pm_bits=args.pm_bits)
    if args.out:
        save_npz(args.out, result, meta)
    summary = summarise(result, meta)
    if args.out:
        summary["out"] = str(args.out)
    return summary


def _int_list(text):
    try:
        values = [int(x, 0) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer or comma-separated integers (one per channel), not {text!r}") \
            from None
    return values[0] if len(values) == 1 else values


def _add_rx_options(parser):
    shape = parser.add_argument_group("receiver shape (of generated words and raw captures)")
    shape.add_argument("--channels", type=_positive_int, default=4, help="detector channels")
    shape.add_argument("--lanes", type=_positive_int, default=16, help="symbols per cycle L")
    shape.add_argument("--uis-per-symbol", type=_positive_int, default=2,
                       help="UIs per symbol S (even)")
    shape.add_argument("--oversampling", type=_positive_int, default=1,
                       help="PHY samples per UI")
    shape.add_argument("--histogram-period", type=_positive_int, default=1,
                       help="histogram period in symbols (a power of two)")
    gen = parser.add_argument_group("generated words (without --in)")
    gen.add_argument("--cycles", type=_positive_int, default=100_000)
    gen.add_argument("--seed", type=_non_negative_int, default=1)
    gen.add_argument("--click-probability", type=float, default=0.01,
                     help="clicks per symbol per detector")
    gen.add_argument("--jitter", type=float, default=0.5, help="timing jitter, UIs rms")
    gen.add_argument("--dark", type=float, default=1e-5, help="dark counts per UI")
    gen.add_argument("--save-words", help="write the generated words (.npz)")
    st = parser.add_argument_group("settings (held for the run)")
    st.add_argument("--dead-time", type=_positive_int, help="UIs (default: one word)")
    st.add_argument("--dead-mode", choices=("common", "per-detector"), default="common")
    st.add_argument("--delay", type=_int_list, help="UIs, one value or one per channel")
    st.add_argument("--windows", help="window LUTs: z, x or S letters of e/l/m/d, one or "
                                      "one per channel (default: z..., x for the last)")
    st.add_argument("--gates", action="store_true", help="drive the gates (gated detectors)")
    st.add_argument("--gate-period", type=_int_list, default=1, help="symbols")
    st.add_argument("--gate-offset", type=_int_list, default=0, help="UIs")
    st.add_argument("--gate-width", type=_int_list, help="UIs (default S/2)")
    st.add_argument("--watchdog-window", type=_positive_int, help="cycles")
    st.add_argument("--max-clicks", type=_non_negative_int, help="per channel and window")
    st.add_argument("--max-fill", type=_non_negative_int, help="256ths of the gates")


def _sim_rx(args):
    from ..sim.rx.run import (
        generate_words,
        load_words,
        parse_windows,
        run_rx,
        save_records,
        save_words,
        summarise_rx,
    )

    shape = {"channels": args.channels, "lanes": args.lanes,
             "uis_per_symbol": args.uis_per_symbol, "oversampling": args.oversampling}
    if args.input:
        samples, shape = load_words(args.input, shape if not args.input.endswith(".npz")
                                    else None)
    else:
        samples = generate_words(shape, args.cycles, args.seed,
                                 click_probability=args.click_probability,
                                 jitter_uis=args.jitter, dark_per_ui=args.dark)
        if args.save_words:
            save_words(args.save_words, samples, shape)
    params = {**shape, "histogram_period": args.histogram_period}
    C, S = params["channels"], params["uis_per_symbol"]
    settings = {"dead_mode": args.dead_mode}
    if args.windows:
        settings["windows"] = parse_windows(args.windows, C, S)
    else:
        settings["windows"] = parse_windows(",".join(["z"] * (C - 1) + ["x"]) if C > 1
                                            else "z", C, S)
    for name in ("dead_time", "delay", "watchdog_window", "max_clicks", "max_fill"):
        value = getattr(args, name)
        if value is not None:
            key = {"max_clicks": "watchdog_max_clicks",
                   "max_fill": "watchdog_max_fill"}.get(name, name)
            settings[key] = value
    if args.gates:
        settings.update(gate_enable=1, gate_period=args.gate_period,
                        gate_offset=args.gate_offset,
                        gate_width=args.gate_width if args.gate_width is not None else S // 2)
    engine = args.rtl_sim if args.rtl else "model"
    result = run_rx(params, samples, engine=engine, **settings)
    summary = summarise_rx(result, params)
    summary["input"] = args.input or {"generated": True, "seed": args.seed,
                                      "click_probability": args.click_probability,
                                      "jitter_uis": args.jitter, "dark_per_ui": args.dark}
    if args.out:
        save_records(args.out, result, {"params": params, "settings": settings,
                                        "input": summary["input"], "engine": engine})
        summary["out"] = str(args.out)
    return summary


def _regmap(args):
    """The register map of a role as Markdown (or JSON), from the same parameters as the
    gateware builds it with."""
    from ..gateware.regmap import alice_registers, board_registers, bob_registers

    params = {"lanes": args.lanes, "uis_per_symbol": args.uis_per_symbol}
    if args.role == "loopback":
        if not args.board:
            raise ValueError("A loopback map is a whole board's: give --board")
        return _regmap_text(board_registers("loopback", {
            "alice": params, "bob": {**params, "channels": args.channels}}), args.json)
    if args.role == "bob":
        params["channels"] = args.channels
    if args.board:
        regs = board_registers(args.role, params)
    elif args.role == "alice":
        regs = alice_registers(**params)
    else:
        regs = bob_registers(**params)
    return _regmap_text(regs, args.json)


def _regmap_text(regs, as_json):
    if not as_json:
        return regs.markdown()
    return json.dumps([{"name": r.name, "addresses": list(r.addresses), "width": r.width,
                        "access": r.access, "reset": r.reset, "minimum": r.minimum,
                        "maximum": r.maximum, "doc": r.doc} for r in regs], indent=2)


def _print(summary, as_json):
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    try:
        from rich.console import Console
        from rich.pretty import Pretty

        Console().print(Pretty(summary))
    except ImportError:
        print(json.dumps(summary, indent=2))


#: Symbols of the demo's QKD session (two blocks of 10^7) and its largest block.
DEMO_SYMBOLS = 20_000_000
DEMO_BLOCK_SYMBOLS = 10_000_000


def _demo_symbols(args):
    """The QKD session's symbols and block size: ``--symbols`` (default two blocks of
    10^7; with ``--rtl`` the RTL session's own default, ``None``), in whole blocks of
    ``min(10^7, symbols)``."""
    if args.rtl:
        return args.symbols, None
    symbols = DEMO_SYMBOLS if args.symbols is None else args.symbols
    block = min(DEMO_BLOCK_SYMBOLS, symbols)
    if symbols % block:
        raise ValueError(f"--symbols must be at most {DEMO_BLOCK_SYMBOLS} or a whole number "
                         f"of {DEMO_BLOCK_SYMBOLS}-symbol blocks, not {symbols}")
    return symbols, block


def _demo(args):
    """The main job: Alice's transmitter and Bob's receiver, each simulated by its model and
    checked against its gateware, then a QKD session (:func:`_demo_distill`)."""
    from ..sim.rx.run import demo_rx
    from ..sim.tx.run import demo_tx

    symbols, block = _demo_symbols(args)            # bad --symbols fails before the work
    return {"transmitter": demo_tx(symbols=args.tx_symbols, seed=args.seed, out=args.out,
                                   check_cycles=args.check_cycles),
            "receiver": demo_rx(cycles=args.rx_cycles, seed=args.seed, out=args.rx_out,
                                check_cycles=args.check_cycles),
            "distillation": _demo_distill(args, symbols, block)}


def _session_table(session):
    """The QKD session of the demo as one table (rich)."""
    from rich.console import Console
    from rich.table import Table

    def per_block(values, fmt):
        return " / ".join("-" if v is None or (isinstance(v, float) and math.isnan(v))
                          else fmt.format(v) for v in values)

    bounds = session.get("bounds_summary", {})
    level = "RTL in the loop" if session.get("rtl") else "reference model"
    table = Table(title=f"QKD session ({level}): {session['distance_km']:g} km, "
                        f"{session['detector']} detectors, {session['reconciler']}")
    table.add_column("quantity")
    table.add_column("value (per block)")
    rows = [
        ("symbols sent", f"{session['symbols']:,} in {session['blocks']} block(s) at "
                         f"{session['symbol_rate_hz'] / 1e6:g} MS/s"),
        ("detections", per_block(session["detections"], "{:,}")),
        ("sifted bits Z", per_block(session["sifted_z"], "{:,}")),
        ("sifted bits X", per_block(session["sifted_x"], "{:,}")),
        ("QBER Z", per_block(session["qber_z"], "{:.3%}")),
        ("QBER X", per_block(session["qber_x"], "{:.3%}")),
        ("EC efficiency f", per_block(session["efficiency"], "{:.3f}")),
        *[(name, per_block(values, "{:.2%}" if "phi" in name else "{:,.0f}"))
          for name, values in bounds.items()],
        ("eps_sec, eps_cor", f"{session['eps_sec']:g}, {session['eps_cor']:g}"),
        ("secret key bits", per_block(session["key_bits"], "{:,}")),
        ("stored after authentication", per_block(session["stored_bits"], "{:,}")),
        ("key rate at the modelled clock",
         f"{session['key_rate_bps']:,.0f} bit/s ({session['key_per_symbol']:.3g} per symbol)"),
    ]
    keyrate = session.get("keyrate") or {}
    if keyrate.get("measured"):
        m = keyrate["measured"]
        rows.append(("secret key ± statistical error",
                     f"{m['key_bits']:,} ± {m['sigma']:,.0f} bits" if m["key_bits"] > 0 else
                     f"none (bound {m['key_length_raw']:,.0f} ± {m['sigma']:,.0f} bits)"))
    if keyrate.get("check"):
        c = keyrate["check"]
        rows.append(("theory for this link", f"{c['theory_bits']:,} bits (measured is "
                                              f"{c['z']:+.2f} sigma off)"))
    rows += [("keys equal on both sides", str(session["keys_match"])),
             ("time taken", f"{session['seconds']:.1f} s")]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _demo_distill(args, symbols, block):
    """A QKD session distilling key: by default the reference model
    (:func:`timebin.sim.lab.reference_session`: Alice's transmitter model, the physical
    channel model, Bob's records, and both hosts over the authenticated channel) with a
    progress bar; with ``--rtl`` both boards' gateware in the loop
    (:func:`timebin.sim.lab_rtl.rtl_session`, short). Adds ``keyrate``: the measured key and
    its statistical error, and the theory of the same link (:mod:`timebin.sim.keyrate_points`)."""
    from ..sim.lab import LAB_DEFAULTS, lab_params

    params = lab_params(args.detector, distance_km=args.distance_km, bob_p_z=LAB_DEFAULTS["p_z"])
    if args.rtl:
        from ..sim.lab_rtl import rtl_session

        options = {} if symbols is None else {"symbols": symbols}
        summary = rtl_session(distance_km=args.distance_km, detector=args.detector,
                              seed=args.seed, reconciler=args.reconciler, **options)
        summary["rtl"] = True
        summary.setdefault("symbol_rate_hz", summary["link"]["symbol_rate_hz"])
        summary.setdefault("key_per_symbol", summary["key_bits_total"] / summary["symbols"])
        summary.setdefault("key_rate_bps",
                           summary["key_per_symbol"] * summary["symbol_rate_hz"])
        summary.setdefault("seconds", summary.get("session_seconds", float("nan")))
    else:
        from ..sim.lab import reference_session

        def run(progress):
            return reference_session(params=params, symbols=symbols, block_symbols=block,
                                     seed=args.seed, reconciler=args.reconciler,
                                     progress=progress)

        if args.json:
            summary = run(None)
        else:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("QKD session"), BarColumn(),
                          TextColumn("{task.completed:,}/{task.total:,} symbols"),
                          TimeElapsedColumn(), console=Console(stderr=True),
                          transient=True) as bar:
                task = bar.add_task("session", total=symbols)
                summary = run(lambda done, total: bar.update(task, completed=done,
                                                             total=total))
        summary["rtl"] = False
    summary["keyrate"] = _demo_keyrate(summary, None if args.rtl else params, args)
    bounds = summary.pop("bounds", None) or []      # per-block bound dicts
    summary["bounds_summary"] = {
        name: [b.get(key, float("nan")) for b in bounds]
        for name, key in (("single-photon Z lower bound s_z1", "s_z1"),
                          ("vacuum Z lower bound s_z0", "s_z0"),
                          ("phase-error bound phi_z", "phi_z"))}
    return summary


def _demo_keyrate(summary, params, args):
    """The measured key of the session with its bootstrap error, the theory of the same
    link at this distance (reference sessions: ``params``) and the theory curve versus
    distance for the key-rate plot."""
    from ..sim.keyrate_points import compare, measured_point, theory_curve
    from .distill.keyrate import DEFAULTS

    out = {"measured": None, "check": None}
    try:
        measured = measured_point(summary, seed=args.seed)
    except ValueError as error:                     # no block with bound values
        out["note"] = str(error)
        measured = None
    if measured is not None:
        out["measured"] = {k: measured[k] for k in (
            "key_bits", "key_length_raw", "sigma", "key_per_symbol", "sigma_per_symbol",
            "rate_bps", "sigma_bps", "f_ec", "resamples")}
        if params is not None:
            check = compare(summary, params, measured)
            out["check"] = {"measured_bits": measured["key_bits"],
                            "measured_raw": measured["key_length_raw"],
                            "sigma": measured["sigma"], "theory_bits": check["theory_bits"],
                            "theory_raw": check["theory_raw"], "z": check["z"]}
    f_ec = (measured or {}).get("f_ec") or DEFAULTS["f_ec"]
    top = max(40.0, 2 * args.distance_km)
    out["f_ec"] = max(f_ec, 1.0)
    out["curve"] = theory_curve([top * i / 20 for i in range(21)], detector=args.detector,
                                block_symbols=summary["block_symbols"], f_ec=out["f_ec"])
    return out


def _demo_plots(args, session):
    """Write the demo's PNG plots into ``--plots``; return ``{name: path}``."""
    from pathlib import Path

    from ..sim.plots import plot_histogram, plot_session_keyrate, plot_timeline

    folder = Path(args.plots)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    if session.get("histogram"):
        paths["histogram"] = plot_histogram(session, folder / "histogram.png")
    paths["timeline"] = plot_timeline(session, folder / "timeline.png")
    keyrate = session["keyrate"]
    measured = keyrate.get("measured")
    points = [(session["distance_km"], measured["rate_bps"], measured["sigma_bps"])] \
        if measured else []
    level = "RTL" if session.get("rtl") else "reference-model"
    paths["keyrate"] = plot_session_keyrate(
        keyrate["curve"], folder / "keyrate.png", measured=points,
        title=f"{session['detector']} link: this {level} session at "
              f"{session['distance_km']:g} km and the theory (f = {keyrate['f_ec']:.2f})")
    return paths


def _bench_lab(args):
    """``timebin bench lab``: the channel model's speed, a whole reference-model session's
    (symbols/s) and an RTL-in-the-loop session's (cycles/s); with ``--curve`` also the key-rate
    check (:func:`timebin.sim.keyrate_points.bench_keyrate_points`), with a progress bar on
    stderr."""
    from ..sim.channel import bench_channel

    if args.curve and args.curve_symbols > 10_000_000 and args.curve_symbols % 10_000_000:
        raise ValueError(f"--curve-symbols must be at most 10000000 or a whole number of "
                         f"10000000-symbol blocks, not {args.curve_symbols}")
    out = {"channel": bench_channel(symbols=args.symbols)}
    if args.session_symbols:
        from ..sim.lab import reference_session

        s = reference_session(symbols=args.session_symbols,
                              block_symbols=min(10_000_000, args.session_symbols),
                              seed=args.seed, reconciler="cascade")
        out["reference_session"] = {
            name: s[name] for name in (
                "symbols", "blocks", "distance_km", "detector", "reconciler", "clicks",
                "key_bits_total", "stored_bits_total", "seconds", "tx_seconds",
                "channel_seconds", "symbols_per_second", "key_rate_bps", "symbol_rate_hz")}
    if args.rtl_symbols:
        from ..sim.lab_rtl import bench_rtl_lab

        out["rtl_session"] = bench_rtl_lab(symbols=args.rtl_symbols, seed=args.seed)
    if args.curve:
        from rich.console import Console
        from rich.progress import Progress

        from ..sim.keyrate_points import bench_keyrate_points

        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("key-rate sessions", total=len(args.distances))
            out["keyrate_points"] = bench_keyrate_points(
                args.distances, symbols=args.curve_symbols, seed=args.seed,
                progress=lambda done, total: bar.update(task, completed=done))
    return out


def _run_demo(args):
    summary = _demo(args)
    summary["plots"] = _demo_plots(args, summary["distillation"])
    if args.json:
        print(json.dumps(summary, indent=2, default=float))
        return 0
    _print({k: summary[k] for k in ("transmitter", "receiver")}, False)
    _session_table(summary["distillation"])
    for name, path in summary["plots"].items():
        print(f"plot ({name}): {path}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="timebin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run the main job",
        description="The main job: Alice's transmitter and Bob's receiver, each checked "
                    "against its gateware, then a QKD session over a GHz-gated InGaAs link "
                    "(or SNSPDs) distilling key, with a summary table and PNG plots (Bob's "
                    "timing histogram, QBER and key over time, key rate versus distance "
                    "with the theory of the same link and PLOB).")
    demo.add_argument("--distance-km", type=non_negative_float, default=10.0,
                      help="fibre length (default %(default)g)")
    demo.add_argument("--symbols", type=_positive_int, default=None,
                      help=f"symbols of the QKD session, in blocks of min(10^7, symbols) "
                           f"(default {DEMO_SYMBOLS}; with --rtl the RTL session's short "
                           f"default)")
    demo.add_argument("--detector", choices=("gated", "snspd"), default="gated",
                      help="gated InGaAs/InP SPADs or SNSPDs (default %(default)s)")
    demo.add_argument("--rtl", action="store_true",
                      help="run the session with both boards' gateware in the loop "
                           "(Amaranth simulation; short)")
    demo.add_argument("--seed", type=_non_negative_int, default=1,
                      help="seed of every random choice (default %(default)s)")
    demo.add_argument("--plots", default="timebin-demo-plots", metavar="DIR",
                      help="folder for the PNG plots (default %(default)s)")
    demo.add_argument("--reconciler", choices=("cascade", "ldpc"), default="cascade",
                      help="error correction (Cascade is more efficient, but its round "
                           "trips cost more authentication key than small blocks yield)")
    demo.add_argument("--tx-symbols", type=_positive_int, default=1_000_000,
                      help="symbols of the transmitter demo (default %(default)s)")
    demo.add_argument("--out", default="timebin-demo-tx.npz",
                      help="the transmitter demo's output")
    demo.add_argument("--rx-cycles", type=_positive_int, default=200_000,
                      help="cycles of detector words through the receiver model")
    demo.add_argument("--rx-out", default="timebin-demo-rx.npz",
                      help="the receiver demo's output")
    demo.add_argument("--check-cycles", type=_positive_int, default=2000,
                      help="cycles of gateware simulation checked against the model")
    demo.add_argument("--json", action="store_true",
                      help="print JSON (no progress bar, no table)")

    sim = sub.add_parser("sim", help="simulate a part of the system")
    sim_sub = sim.add_subparsers(dest="target", required=True)
    tx = sim_sub.add_parser("tx", help="Alice's transmitter: symbol log and serializer words")
    _add_tx_options(tx)
    tx.add_argument("--out", help="write the run as NumPy .npz")
    tx.add_argument("--json", action="store_true", help="print a JSON summary")

    rx = sim_sub.add_parser("rx", help="Bob's receiver: detector words to detection records")
    rx.add_argument("--in", dest="input", help="detector words: .npz (--save-words) or a raw "
                                                "capture (shape from the options)")
    rx.add_argument("--out", help="write records, histograms and counters (.npz)")
    rx.add_argument("--rtl", action="store_true", help="run the gateware, not the model")
    rx.add_argument("--rtl-sim", choices=("verilator", "amaranth"), default="verilator",
                    help="simulator of the gateware for --rtl")
    rx.add_argument("--json", action="store_true", help="print a JSON summary")
    _add_rx_options(rx)

    regmap = sub.add_parser("regmap", help="the register map of Alice or Bob (Markdown)")
    regmap.add_argument("--role", choices=("alice", "bob", "loopback"), required=True)
    regmap.add_argument("--channels", type=_positive_int, default=4)
    regmap.add_argument("--lanes", type=_positive_int, default=16)
    regmap.add_argument("--uis-per-symbol", type=_positive_int, default=2)
    regmap.add_argument("--board", action="store_true",
                        help="the whole board's map (top, link, memories), as the host sees it")
    regmap.add_argument("--json", action="store_true", help="JSON instead of Markdown")

    add_board_parser(sub, _positive_int, _non_negative_int)
    add_distill_parser(sub)
    add_keyrate_parser(sub)
    add_serve_parser(sub)

    bench = sub.add_parser("bench", help="measure speed; prints JSON")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    btx = bench_sub.add_parser("tx", help="transmitter: model, Amaranth sim, Verilator")
    btx.add_argument("--json", action="store_true", help="JSON output (the default)")
    btx.add_argument("--no-verilator", action="store_true")
    btx.add_argument("--model-symbols", type=_positive_int, default=1_000_000)
    btx.add_argument("--amaranth-cycles", type=_positive_int, default=2000)
    btx.add_argument("--verilator-cycles", type=_positive_int, default=200_000)
    bdist = bench_sub.add_parser("distill", help="distillation stages and the whole pipeline")
    bdist.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    bdist.add_argument("--seed", type=int, default=0)
    bdist.add_argument("--json", action="store_true", help="JSON output (the only format)")
    blab = bench_sub.add_parser(
        "lab", help="the virtual lab: channel model and reference session (symbols/s), RTL "
                    "session (cycles/s); --curve: the key-rate check",
        description="Speed of the virtual lab's channel model, of a whole reference-model "
                    "session and of an RTL-in-the-loop session; with --curve also the "
                    "key-rate check at full size: a reference session at each distance, its "
                    "measured key with its bootstrap error against the theory of the same "
                    "link (and a theory with 3 dB more loss, which must not fit).")
    blab.add_argument("--symbols", type=_positive_int, default=200_000_000,
                      help="symbols through the channel model (default %(default)s)")
    blab.add_argument("--session-symbols", type=_non_negative_int, default=20_000_000,
                      help="symbols of the reference-model session whose whole speed is "
                           "measured (0: none; default %(default)s)")
    blab.add_argument("--rtl-symbols", type=_non_negative_int, default=12_000,
                      help="symbols of the RTL-in-the-loop session (a multiple of its lanes; "
                           "0: none; default %(default)s)")
    blab.add_argument("--curve", action="store_true",
                      help="also measure key-rate points against the theory curve")
    blab.add_argument("--distances", type=parse_distances, default=parse_distances("0:40:10"),
                      help="km of the key-rate points: start:stop:step or a,b,c "
                           "(default 0:40:10)")
    blab.add_argument("--curve-symbols", type=_positive_int, default=20_000_000,
                      help="symbols of each key-rate session, in blocks of min(10^7, "
                           "symbols) (default %(default)s)")
    blab.add_argument("--seed", type=_non_negative_int, default=1,
                      help="seed of the first key-rate session (default %(default)s)")
    blab.add_argument("--json", action="store_true", help="JSON output (the only format)")
    blink = bench_sub.add_parser("link", help="record compression and frame decoding")
    blink.add_argument("--json", action="store_true", help="JSON output (the default)")
    blink.add_argument("--records", type=_positive_int, default=200_000)
    brx = bench_sub.add_parser("rx", help="receiver: model, Amaranth sim, Verilator")
    brx.add_argument("--json", action="store_true", help="JSON output (the default)")
    brx.add_argument("--no-verilator", action="store_true")
    brx.add_argument("--model-cycles", type=_positive_int, default=200_000)
    brx.add_argument("--amaranth-cycles", type=_positive_int, default=2000)
    brx.add_argument("--verilator-cycles", type=_positive_int, default=1_000_000)
    from .cli_build import add_build_commands
    add_build_commands(sub, bench_sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "run_build"):              # build, program, bench build
            return args.run_build(args)
        if args.command == "demo":
            return _run_demo(args)
        elif args.command == "sim" and args.target == "tx":
            _print(_sim_tx(args), args.json)
        elif args.command == "board":
            run_board(args, _print)
        elif args.command == "distill":
            return run_distill(args)
        elif args.command == "keyrate":
            return run_keyrate(args)
        elif args.command == "serve":
            return run_serve(args)
        elif args.command == "regmap":
            print(_regmap(args), end="" if not args.json else "\n")
        elif args.command == "sim" and args.target == "rx":
            _print(_sim_rx(args), args.json)
        elif args.command == "bench" and args.target == "distill":
            from .distill.bench import bench_distill

            print(json.dumps(bench_distill(quick=args.quick, seed=args.seed), indent=2,
                             default=float))
        elif args.command == "bench" and args.target == "lab":
            print(json.dumps(_bench_lab(args), indent=2, default=float))
        elif args.command == "bench" and args.target == "link":
            from ..sim.bench import bench_link

            print(json.dumps(bench_link(records=args.records), indent=2))
        elif args.command == "bench" and args.target == "rx":
            from ..sim.bench import bench_rx

            print(json.dumps(bench_rx(model_cycles=args.model_cycles,
                                      amaranth_cycles=args.amaranth_cycles,
                                      verilator_cycles=args.verilator_cycles,
                                      verilator=not args.no_verilator), indent=2))
        elif args.command == "bench" and args.target == "tx":
            from ..sim.bench import bench_tx

            print(json.dumps(bench_tx(model_symbols=args.model_symbols,
                                      amaranth_cycles=args.amaranth_cycles,
                                      verilator_cycles=args.verilator_cycles,
                                      verilator=not args.no_verilator), indent=2))
    except (ValueError, TypeError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"timebin: error: {message}", file=sys.stderr)
        return 2
    except (OSError, BoardError) as error:     # TransportError is an OSError
        print(f"timebin: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
