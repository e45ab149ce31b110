"""``timebin board ...``: talk to a board (or a simulated one) from the command line.

    timebin board info   --port PORT [--json]
    timebin board regs   --port PORT [--json]
    timebin board get NAME --port PORT [--json]
    timebin board set NAME VALUE --port PORT [--json]
    timebin board stream --port PORT [--count N] [--duration S] [--out records.npz] [--json]
    timebin board lookup INDEX... --port PORT [--json]          (Alice)
    timebin board simulate --role alice|bob|loopback [--tcp PORT] [--no-pty] [--words FILE]
                           [--emulator [--emulator-param NAME=VALUE]] ...

``PORT`` is a transport URL (``serial:///dev/ttyUSB1?baud=3000000``, ``tcp://host:port``,
``ftdi://ftdi:2232h/2``, ``file:///dev/xdma0_c2h_0?write=/dev/xdma0_h2c_0``,
``sim://bob?channels=2``) or a serial device path. ``simulate`` prints one JSON line (the
pty path, the TCP port and the board description) and serves until killed.
"""

import json
import sys

__all__ = ["add_board_parser", "run_board"]


def _url(port):
    return port if "://" in port else f"serial://{port}"


def _number(text):
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"Parameter value must be a number, not {text!r}") from None


def _params(pairs):
    out = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"Parameter must be NAME=VALUE, not {pair!r}")
        out[name.replace("-", "_")] = (tuple(_number(v) for v in value.split(","))
                                       if "," in value else _number(value))
    return out


def add_board_parser(sub, positive_int, non_negative_int):
    board = sub.add_parser("board", help="talk to a board over its host link")
    board_sub = board.add_subparsers(dest="action", required=True)

    def connected(name, help_text):
        parser = board_sub.add_parser(name, help=help_text)
        parser.add_argument("--port", required=True,
                            help="transport URL (serial://, tcp://, ftdi://, file://, sim://) "
                                 "or serial device")
        parser.add_argument("--timeout", type=float, default=10.0,
                            help="seconds to wait for each answer")
        parser.add_argument("--json", action="store_true")
        return parser

    connected("info", "role, parameters, link statistics and the data-output PHY's state")
    connected("regs", "every register")
    get = connected("get", "read a register")
    get.add_argument("name")
    put = connected("set", "write a register")
    put.add_argument("name")
    put.add_argument("value", type=non_negative_int)
    stream = connected("stream", "Bob's detection records (a loopback board: sifted records)")
    stream.add_argument("--count", type=positive_int, help="stop after this many records")
    stream.add_argument("--duration", type=float, help="stop after this many seconds")
    stream.add_argument("--idle", type=float, default=2.0,
                        help="stop once nothing arrived for this many seconds")
    stream.add_argument("--out", help="write the records (.npz)")
    lookup = connected("lookup", "Alice's logged symbols at symbol indices")
    lookup.add_argument("indices", nargs="+", type=non_negative_int)

    sim = board_sub.add_parser("simulate", help="serve a simulated board (Amaranth "
                                                "simulation of its gateware)")
    sim.add_argument("--role", choices=("alice", "bob", "loopback"), required=True)
    sim.add_argument("--channels", type=positive_int, default=2, help="Bob's detectors")
    sim.add_argument("--lanes", type=positive_int, default=4)
    sim.add_argument("--uis-per-symbol", type=positive_int, default=2)
    sim.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="another parameter of the top (repeatable)")
    sim.add_argument("--board-param", action="append", metavar="NAME=VALUE",
                     help="a board parameter (frame_words, symbol_depth, ...)")
    sim.add_argument("--link-param", action="append", metavar="NAME=VALUE",
                     help="a link parameter (max_request, link_timeout)")
    sim.add_argument("--tcp", type=non_negative_int, help="also listen on this TCP port "
                                                          "(0: any free one)")
    sim.add_argument("--no-pty", action="store_true", help="serve TCP only")
    sim.add_argument("--words", help="Bob: detector words (.npz) played after epoch_load")
    sim.add_argument("--cycles", type=non_negative_int, default=0,
                     help="Bob: generate this many cycles of detector words")
    sim.add_argument("--click-probability", type=float, default=0.02,
                     help="Bob: clicks per symbol and detector of the generated words")
    sim.add_argument("--seed", type=non_negative_int, default=1)
    sim.add_argument("--max-cycles", type=positive_int, help="stop after this many cycles")
    sim.add_argument("--emulator", action="store_true",
                     help="loopback: the on-chip channel emulator between Alice and Bob "
                          "(emu_ registers)")
    sim.add_argument("--emulator-param", action="append", metavar="NAME=VALUE",
                     help="loopback: a construction parameter of the emulator (max_delay, "
                          "max_jitter, prob_bits)")


def _connect(args):
    from .board import Board
    return Board.open(_url(args.port), timeout=args.timeout)


def _simulate(args):
    from ..sim.board import serve_main

    shape = {"lanes": args.lanes, "uis_per_symbol": args.uis_per_symbol}
    bob = {"channels": args.channels, **shape}
    if args.role == "bob":
        params = {**bob, **_params(args.param)}
    elif args.role == "alice":
        params = {**shape, **_params(args.param)}
    else:
        if args.param:
            raise ValueError("--param is for Alice or Bob boards; a loopback board takes its "
                             "shape from --channels, --lanes and --uis-per-symbol")
        params = {"alice": shape, "bob": bob}
    words = None
    if args.role != "alice" and args.words:
        from ..sim.rx.run import load_words
        words, _ = load_words(args.words, bob)
    elif args.role != "alice" and args.cycles:
        from ..sim.rx.run import generate_words
        words = generate_words(bob, args.cycles, args.seed,
                               click_probability=args.click_probability)
    elif args.words or args.cycles:
        raise ValueError("--words and --cycles are for Bob and loopback boards")
    board = _params(args.board_param)
    if args.emulator or args.emulator_param:
        if args.role != "loopback":
            raise ValueError(f"--emulator is for a loopback board, not {args.role!r}")
        board["emulator"] = _params(args.emulator_param) or True
    return serve_main(args.role, params=params, board=board,
                      link=_params(args.link_param), words=words, seed=args.seed,
                      pty=not args.no_pty, tcp_port=args.tcp, max_cycles=args.max_cycles)


def run_board(args, show):
    """Run ``timebin board ACTION``; ``show(summary, as_json)`` prints a result."""
    if args.action == "simulate":
        summary = _simulate(args)
        print(json.dumps({"stopped": summary}), file=sys.stderr)
        return
    with _connect(args) as board:
        if args.action == "info":
            info = board.info()
            info["link_stats"] = board.link_stats()
            data_phy = board.data_phy()
            if data_phy:
                info["data_phy"] = data_phy
            show(info, args.json)
        elif args.action == "regs":
            show(board.regs(), args.json)
        elif args.action == "get":
            show({args.name: board.get(args.name)}, args.json)
        elif args.action == "set":
            board.set(args.name, args.value)
            show({args.name: board.get(args.name) if board.registers[args.name].access == "rw"
                  else args.value}, args.json)
        elif args.action == "stream" and board.role == "loopback":
            sifted = board.stream_sifted(count=args.count, duration=args.duration,
                                         idle=args.idle)
            if args.out:
                import numpy as np
                np.savez_compressed(args.out, **sifted)
            show({"sifted": int(len(sifted["index"])), "qber": board.qber(),
                  "link_stats": board.link_stats()}, args.json)
        elif args.action == "stream":
            records = board.stream_records(count=args.count, duration=args.duration,
                                           idle=args.idle)
            if args.out:
                import numpy as np
                np.savez_compressed(args.out, **records)
            summary = {"records": int(len(records["index"])),
                       "per_channel": [int((records["channel"] == c).sum())
                                       for c in range(board.params["channels"])],
                       "link_stats": board.link_stats()}
            if len(records["index"]):
                summary["first_index"] = int(records["index"][0])
                summary["last_index"] = int(records["index"][-1])
            show(summary, args.json)
        elif args.action == "lookup":
            out = board.lookup(args.indices)
            show([{name: int(values[i]) for name, values in out.items()}
                  for i in range(len(args.indices))], args.json)
