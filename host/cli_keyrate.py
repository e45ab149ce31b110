"""``timebin keyrate``: the finite-key secret key rate of a link versus distance.

    timebin keyrate [--distances 0:200:10] [--protocol 1decoy-3state|1decoy-4state|2decoy]
                    [--symbol-rate 2.5e9] [--block-size 1e10] [--loss-db-per-km 0.2]
                    [--detector-efficiency 0.25] [--dark-count 1e-6] [--visibility 0.99]
                    [--eps-sec 1e-9] [--eps-cor 1e-15] [--f-ec 1.06] [--seed 0]
                    [--json] [--plot keyrate.png]

At each distance the source parameters are optimised for the finite-key bound
(:mod:`timebin.host.distill.keyrate`); the table (or JSON) gives the key per symbol and in
bit/s, the optimal parameters, the asymptotic rate and the PLOB bound.

    timebin keyrate --lab gated|snspd [--distances ...] [--block-size 1e7] [--f-ec 1.16]

The curve of the virtual lab's link instead (the link ``timebin demo`` runs, with the lab
receiver's passive basis split, per-detector dead time and afterpulses:
:func:`timebin.sim.keyrate_points.theory_curve`): at the lab's fixed source settings, the
curve the demo's and ``timebin bench lab --curve``'s measured points are checked against.
"""

import argparse
import json
import math
import sys

from .cli_types import non_negative_float as _non_negative_float
from .cli_types import non_negative_int as _seed
from .cli_types import positive_float as _positive_float

__all__ = ["add_keyrate_parser", "run_keyrate", "parse_distances"]


def parse_distances(text):
    """``"start:stop:step"`` (km, stop included when on the grid), ``"a,b,c"`` or ``"d"``."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if not (step > 0 and stop >= start >= 0 and math.isfinite(stop)):
                raise argparse.ArgumentTypeError(
                    f"distances must be start:stop:step with 0 <= start <= stop and step > 0, "
                    f"not {text!r}")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            if count > 10_000:
                raise argparse.ArgumentTypeError(f"too many distances ({count}) in {text!r}")
            return [round(start + i * step, 9) for i in range(count)]
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"distances must be start:stop:step or comma-separated km, not {text!r}") from None
    for v in values:
        if not (v >= 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"distances must be non-negative km, not {text!r}")
    return values


def add_keyrate_parser(sub):
    """Add the ``keyrate`` subcommand to an argparse subparsers object; return its parser."""
    from .distill.finite_key import PROTOCOLS
    from .distill.keyrate import DEFAULTS as D

    p = sub.add_parser("keyrate", help="finite-key secret key rate versus distance",
                       description=__doc__.splitlines()[0])
    p.add_argument("--distances", type=parse_distances, default=parse_distances("0:200:10"),
                   help="km: start:stop:step (stop included) or a,b,c (default 0:200:10)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=D["protocol"],
                   help="finite-key bound (default %(default)s)")
    p.add_argument("--symbol-rate", type=_positive_float, default=D["symbol_rate"],
                   help="symbols per second (default %(default)g)")
    p.add_argument("--block-size", type=_positive_float, default=D["block_size"],
                   help="symbols sent per block N (default %(default)g)")
    p.add_argument("--loss-db-per-km", type=_non_negative_float, default=D["loss_db_per_km"],
                   help="fibre attenuation (default %(default)g)")
    p.add_argument("--extra-loss-db", type=_non_negative_float, default=D["extra_loss_db"],
                   help="loss inside Bob's receiver (default %(default)g)")
    p.add_argument("--detector-efficiency", type=_positive_float,
                   default=D["detector_efficiency"], help="(default %(default)g)")
    p.add_argument("--dark-count", type=_non_negative_float, default=D["dark_count"],
                   help="dark count probability per gate (default %(default)g)")
    p.add_argument("--afterpulse", type=_non_negative_float, default=D["afterpulse"],
                   help="afterpulse probability per detection (default %(default)g)")
    p.add_argument("--dead-time", type=_non_negative_float, default=D["dead_time"],
                   help="common detector dead time, seconds (default %(default)g)")
    p.add_argument("--visibility", type=_non_negative_float, default=D["visibility"],
                   help="X interference visibility (default %(default)g)")
    p.add_argument("--z-error", type=_non_negative_float, default=D["z_error"],
                   help="Z optical error (default: (1 - visibility)/2)")
    p.add_argument("--x-middle-fraction", type=_positive_float,
                   default=D["x_middle_fraction"],
                   help="X arm light in the interfering slot (default %(default)g)")
    p.add_argument("--mu3", type=_non_negative_float, default=D["mu3"],
                   help="weakest intensity of 2decoy (default %(default)g)")
    p.add_argument("--eps-sec", type=_positive_float, default=D["eps_sec"],
                   help="secrecy parameter (default %(default)g)")
    p.add_argument("--eps-cor", type=_positive_float, default=D["eps_cor"],
                   help="correctness parameter (default %(default)g)")
    p.add_argument("--f-ec", type=_positive_float, default=D["f_ec"],
                   help="error-correction efficiency (default %(default)g)")
    p.add_argument("--seed", type=_seed, default=D["seed"],
                   help="seed of the optimiser (default %(default)s)")
    p.add_argument("--lab", choices=("gated", "snspd"),
                   help="the virtual lab's link with these detectors instead, at the lab's "
                        "source settings (--block-size, --f-ec, --eps-* apply; default "
                        "block 1e7 symbols)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", metavar="PNG", help="write a plot of the sweep")
    return p


def _run_lab(args):
    """``--lab``: the theory curve of the virtual lab's link."""
    from ..sim.keyrate_points import theory_curve
    from .distill.keyrate import DEFAULTS, plot_keyrate

    block = 1e7 if args.block_size == DEFAULTS["block_size"] else args.block_size
    if block != int(block):
        raise ValueError(f"--block-size must be a whole number of symbols, not {block!r}")
    f_ec = 1.16 if args.f_ec == DEFAULTS["f_ec"] else args.f_ec
    rows = theory_curve(args.distances, detector=args.lab, block_symbols=int(block),
                        f_ec=f_ec, eps_sec=args.eps_sec, eps_cor=args.eps_cor)
    plot = plot_keyrate(rows, args.plot) if args.plot else None
    options = {"lab": args.lab, "block_size": int(block), "f_ec": f_ec,
               "eps_sec": args.eps_sec, "eps_cor": args.eps_cor}
    if args.json:
        out = {"options": options, "distances_km": list(args.distances), "rows": rows}
        if plot:
            out["plot"] = plot
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"timebin keyrate --lab {args.lab}: 1decoy-3state, N = {int(block):.3g}"
                        f" symbols, f_EC {f_ec:g}")
    for name in ("km", "key bits/block", "key/symbol", "key bit/s", "asympt. bit/s",
                 "PLOB bit/s", "QBER Z"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(f"{r['distance_km']:g}", f"{max(r['key_length'], 0):,}",
                      _fmt(r["key_per_symbol"]), _fmt(r["key_rate_bps"]),
                      _fmt(r["asymptotic_rate_bps"]), _fmt(r["plob_rate_bps"]),
                      _fmt(r["qber_z"], ".4f"))
    Console(width=160).print(table)
    if plot:
        print(f"plot: {plot}")
    return 0


def _options(args):
    return {"protocol": args.protocol, "symbol_rate": args.symbol_rate,
            "block_size": args.block_size, "loss_db_per_km": args.loss_db_per_km,
            "extra_loss_db": args.extra_loss_db,
            "detector_efficiency": args.detector_efficiency, "dark_count": args.dark_count,
            "afterpulse": args.afterpulse, "dead_time": args.dead_time,
            "visibility": args.visibility, "z_error": args.z_error,
            "x_middle_fraction": args.x_middle_fraction, "mu3": args.mu3,
            "eps_sec": args.eps_sec, "eps_cor": args.eps_cor, "f_ec": args.f_ec,
            "seed": args.seed}


def _fmt(value, spec=".3e"):
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def _table(rows, options):
    from rich.console import Console
    from rich.table import Table

    decoys = 2 if options["protocol"] == "2decoy" else 1
    table = Table(title=f"timebin keyrate: {options['protocol']}, N = "
                        f"{options['block_size']:.3g} symbols, "
                        f"{options['symbol_rate']:.3g} symbols/s, seed {options['seed']}")
    for name in ("km", "key/symbol", "key bit/s", "asympt. bit/s", "PLOB bit/s", "QBER Z",
                 "phi Z", "mu1", "mu2") + (("mu3",) if decoys == 2 else ()) + \
            ("p_mu1",) + (("p_mu2",) if decoys == 2 else ()) + ("p_Z",):
        table.add_column(name, justify="right")
    for r in rows:
        cells = [f"{r.distance_km:g}", _fmt(r.key_per_symbol), _fmt(r.key_rate_bps),
                 _fmt(r.asymptotic_rate_bps), _fmt(r.plob_rate_bps),
                 _fmt(r.qber_z, ".4f"), _fmt(r.phi_z, ".4f")]
        if r.key_length > 0:
            cells += [f"{m:.4f}" for m in r.intensities]
            cells += [f"{p:.3f}" for p in r.probabilities[:decoys]]
            cells.append(f"{r.p_z:.4f}")
        else:
            cells += ["-"] * (len(r.intensities) + decoys + 1)
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)    # a file or pipe: do not squeeze the columns
    console.print(table)


def run_keyrate(args):
    """Run ``timebin keyrate`` with parsed ``args``; print a table or JSON; return 0 (or 2
    on bad input, with the message on stderr)."""
    from .distill.keyrate import keyrate_sweep, plot_keyrate

    if args.lab:
        try:
            return _run_lab(args)
        except ValueError as exc:
            print(f"timebin keyrate: error: {exc}", file=sys.stderr)
            return 2
    options = _options(args)
    try:
        if args.json:
            rows = keyrate_sweep(args.distances, **options)
        else:
            from rich.console import Console
            from rich.progress import Progress

            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("optimising", total=len(args.distances))
                rows = keyrate_sweep(args.distances, **options,
                                     progress=lambda done, total: bar.update(task,
                                                                             completed=done))
        plot = plot_keyrate(rows, args.plot) if args.plot else None
    except ValueError as exc:
        print(f"timebin keyrate: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = {"options": options, "distances_km": list(args.distances),
               "rows": [r.to_dict() for r in rows]}
        if plot:
            out["plot"] = plot
        print(json.dumps(out, indent=2))
    else:
        _table(rows, options)
        if plot:
            print(f"plot: {plot}")
    return 0
