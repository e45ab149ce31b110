"""The ``timebin`` command. Simulation subcommands load ``timebin.sim`` (and Amaranth) only
when they run; the host library itself never imports Amaranth (DESIGN.md section 5).

    timebin demo                     the main job: Alice's transmitter and Bob's receiver,
                                     each checked against its gateware, then a
                                     reference-model QKD session distilling key
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
    timebin bench lab --json
"""

import argparse
import json
import sys

from .board import BoardError
from .cli_board import add_board_parser, run_board
from .cli_distill import add_distill_parser, run_distill
from .cli_keyrate import add_keyrate_parser, run_keyrate
from .cli_serve import add_serve_parser, run_serve
from .cli_types import non_negative_int, positive_int

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


def _demo(args):
    """The main job: Alice's transmitter and Bob's receiver, each simulated by its model and
    checked against its gateware, then a reference-model QKD session (transmitter model,
    channel model, Bob's records, both distillation hosts)."""
    from ..sim.rx.run import demo_rx
    from ..sim.tx.run import demo_tx

    return {"transmitter": demo_tx(symbols=args.symbols, seed=args.seed, out=args.out,
                                   check_cycles=args.check_cycles),
            "receiver": demo_rx(cycles=args.rx_cycles, seed=args.seed, out=args.rx_out,
                                check_cycles=args.check_cycles),
            "distillation": _demo_distill(args)}


def _session_table(session):
    """The QKD session of the demo as one table (rich)."""
    from rich.console import Console
    from rich.table import Table

    def per_block(values, fmt):
        return " / ".join(fmt.format(v) for v in values)

    bounds = session.get("bounds_summary", {})
    table = Table(title=f"QKD session: {session['distance_km']:g} km, {session['detector']} "
                        f"detectors, {session['reconciler']}")
    table.add_column("quantity")
    table.add_column("value (per block)")
    rows = [
        ("symbols sent", f"{session['symbols']:,} at {session['symbol_rate_hz'] / 1e6:g} MS/s"),
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
        ("keys equal on both sides", str(session["keys_match"])),
        ("time taken", f"{session['seconds']:.1f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _demo_distill(args):
    """A reference-model QKD session: Alice's transmitter model, the physical channel
    model, Bob's records, and Alice's and Bob's hosts distilling key over the authenticated
    channel (:func:`timebin.sim.lab.reference_session`)."""
    from ..sim.lab import reference_session

    summary = reference_session(distance_km=args.distance_km, detector=args.detector,
                                symbols=args.key_blocks * 10_000_000,
                                block_symbols=10_000_000, seed=args.seed,
                                reconciler=args.reconciler)
    bounds = summary.pop("bounds", None) or []      # per-block bound dicts
    summary["bounds_summary"] = {
        name: [b.get(key, float("nan")) for b in bounds]
        for name, key in (("single-photon Z lower bound s_z1", "s_z1"),
                          ("vacuum Z lower bound s_z0", "s_z0"),
                          ("phase-error bound phi_z", "phi_z"))}
    return summary


def build_parser():
    parser = argparse.ArgumentParser(prog="timebin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job")
    demo.add_argument("--symbols", type=_positive_int, default=1_000_000)
    demo.add_argument("--seed", type=_non_negative_int, default=1)
    demo.add_argument("--out", default="timebin-demo-tx.npz")
    demo.add_argument("--rx-cycles", type=_positive_int, default=200_000,
                      help="cycles of detector words through the receiver model")
    demo.add_argument("--rx-out", default="timebin-demo-rx.npz")
    demo.add_argument("--check-cycles", type=_positive_int, default=2000,
                      help="cycles of gateware simulation checked against the model")
    demo.add_argument("--key-blocks", type=_positive_int, default=2,
                      help="blocks of 10^7 symbols distilled into key")
    demo.add_argument("--reconciler", choices=("cascade", "ldpc"), default="ldpc",
                      help="error correction (Cascade is more efficient, but its round "
                           "trips cost more authentication key than small blocks yield)")
    demo.add_argument("--distance-km", type=float, default=10.0)
    demo.add_argument("--detector", choices=("gated", "snspd"), default="gated")
    demo.add_argument("--json", action="store_true")

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
    blab = bench_sub.add_parser("lab", help="the virtual lab's channel model (symbols/s)")
    blab.add_argument("--symbols", type=_positive_int, default=200_000_000)
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            summary = _demo(args)
            _print(summary, args.json)
            if not args.json:
                _session_table(summary["distillation"])
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
            from ..sim.channel import bench_channel

            print(json.dumps(bench_channel(symbols=args.symbols), indent=2, default=float))
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
