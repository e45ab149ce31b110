"""The ``timebin`` command. Simulation subcommands load ``timebin.sim`` (and Amaranth) only
when they run; the host library itself never imports Amaranth (DESIGN.md section 5).

    timebin demo                     the main job (for now: Alice's transmitter, simulated)
    timebin sim tx --lanes 16 --symbols 1000000 --seed 1 --out tx.npz [--json]
    timebin bench tx --json
"""

import argparse
import json
import sys

__all__ = ["main"]


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _non_negative_int(text):
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, not {text!r}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, not {text!r}")
    return value


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
    """The main job: for now Alice's transmitter (a later issue makes it a QKD session)."""
    from ..sim.tx.run import demo_tx

    return demo_tx(symbols=args.symbols, seed=args.seed, out=args.out,
                   check_cycles=args.check_cycles)


def build_parser():
    parser = argparse.ArgumentParser(prog="timebin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job")
    demo.add_argument("--symbols", type=_positive_int, default=1_000_000)
    demo.add_argument("--seed", type=_non_negative_int, default=1)
    demo.add_argument("--out", default="timebin-demo-tx.npz")
    demo.add_argument("--check-cycles", type=_positive_int, default=2000,
                      help="cycles of gateware simulation checked against the model")
    demo.add_argument("--json", action="store_true")

    sim = sub.add_parser("sim", help="simulate a part of the system")
    sim_sub = sim.add_subparsers(dest="target", required=True)
    tx = sim_sub.add_parser("tx", help="Alice's transmitter: symbol log and serializer words")
    _add_tx_options(tx)
    tx.add_argument("--out", help="write the run as NumPy .npz")
    tx.add_argument("--json", action="store_true", help="print a JSON summary")

    bench = sub.add_parser("bench", help="measure speed; prints JSON")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    btx = bench_sub.add_parser("tx", help="transmitter: model, Amaranth sim, Verilator")
    btx.add_argument("--json", action="store_true", help="JSON output (the default)")
    btx.add_argument("--no-verilator", action="store_true")
    btx.add_argument("--model-symbols", type=_positive_int, default=1_000_000)
    btx.add_argument("--amaranth-cycles", type=_positive_int, default=2000)
    btx.add_argument("--verilator-cycles", type=_positive_int, default=200_000)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            _print(_demo(args), args.json)
        elif args.command == "sim" and args.target == "tx":
            _print(_sim_tx(args), args.json)
        elif args.command == "bench" and args.target == "tx":
            from ..sim.bench import bench_tx

            print(json.dumps(bench_tx(model_symbols=args.model_symbols,
                                      amaranth_cycles=args.amaranth_cycles,
                                      verilator_cycles=args.verilator_cycles,
                                      verilator=not args.no_verilator), indent=2))
    except (ValueError, TypeError) as error:
        print(f"timebin: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
