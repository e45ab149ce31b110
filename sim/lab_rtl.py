"""The virtual lab's RTL-in-the-loop session: Alice's and Bob's whole-board gateware in one
Amaranth simulation, the physical channel model between them, both boards' host clients
over their simulated links, and the distillation pipeline down to the key stores.

Issue 6, "Sessions", the RTL level; DESIGN.md section 6 (three levels, one truth: this
session and its reference level below give identical records on the same seeds) and
section 4 (the data flow, nothing bypassed)::

    AliceBoard --ser--> Channel.send_words -> WordStream --samples--> BobBoard
        | link (pty / TCP)                                               | link (pty / TCP)
        v                                                                v
    Board client <-- lookups -- AliceHost <== authenticated ==> BobHost <-- stream_records
                                    |           channel            |
                                 KeyStore                       KeyStore

Model
-----
* **One simulator, one clock** (:class:`CoupledLab`): :class:`~timebin.gateware.system.AliceBoard`
  and :class:`~timebin.gateware.system.BobBoard` are submodules of one wrapper; each board's
  link is served on its own :class:`~timebin.sim.board.LinkEndpoints` (a pseudo-terminal
  and a TCP port) through :class:`~timebin.sim.board.LinkPump`, exactly as a lone simulated
  board serves it. Alice's entropy (``entropy``): by default her CSPRNG (``source`` 0),
  keyed by her host from the seed, so that the transmitter model reproduces her symbols from
  the seed alone; or (``"qrng"``) her QRNG port under its health tests, driven every cycle by
  :class:`~timebin.sim.board.SeededQrng` as on a lone board: the model then replays the same
  seeded words from the cycle her host enabled her (``enable_cycle``, a measured time).
* **Alice's light** starts with her first enabled symbol: the cycle ``c`` in which her
  symbol source emits its first word (symbol index 0), plus the driver's latency
  (:attr:`~timebin.gateware.tx.driver.TimeBinDriver.latency`; the session keeps the fine
  delays at 0). That serializer word is the channel's UI 0 (:class:`~timebin.sim.channel.Channel`:
  Alice's UI ``n`` leaves at ``(n + 1/2) ui_ps``). The session's light is Alice's first
  ``symbols`` symbols (after her training symbols, when Bob aligns): after ``symbols /
  lanes`` words the channel is flushed (Alice's run ends, as :func:`~timebin.sim.tx.run.run_tx`
  ends it); what she emits after that, before her host stops her, never reaches the fibre.
  Her pulses are ``pulse_width`` UIs centred in their bins (as the reference session's).
* **The channel** (:class:`ChannelFeed`) takes her words through the word path in chunks of
  ``chunk_cycles`` cycles and turns the detections that are final into Bob's deserializer
  words (:class:`~timebin.sim.channel.WordStream`: Bob's word 0 starts at the arrival of
  Alice's UI 0, :attr:`~timebin.sim.channel.ChannelParams.bob_start`).
* **Bob's detectors** play word ``p`` in cycle ``epoch_cycle + 1 + p`` after his host's first
  ``epoch_load`` (:class:`~timebin.sim.board.DetectorPlayer`, with ``epoch`` 0: Bob's symbol
  index is Alice's). A word the channel cannot give yet is played as silence and counted in
  ``starved`` (never silently); after the flushed light, silence is the dark fibre.
* **The hosts** (:func:`rtl_session`) configure both boards through the
  :class:`~timebin.host.board.Board` client, stream Bob's records while the light runs, stop
  Alice, flush Bob's record blocks, and distil: :class:`~timebin.host.distill.session.BobHost`
  and :class:`~timebin.host.distill.session.AliceHost` over an authenticated channel, Alice's
  host answering from her board's symbol memory (:meth:`~timebin.host.board.Board.lookup`),
  each side's key into its :class:`~timebin.host.keystore.KeyStore`.
* **Alignment** (``align=True``; issue 6, "Auto-alignment"): Bob's board histograms two
  symbols (``histogram_period`` 2) and starts from ``nominal_delays`` (each channel's
  latency in whole UIs, or given: right to within a symbol) with every phase of his
  windows discarded (his histogram counts every click; his link is not loaded with records
  binned on wrong delays while his histogram is read over it). Alice starts on the
  alternating training pattern; once Bob's epoch is loaded his host runs
  :func:`~timebin.host.align.align_board` (his histogram read over his link, the
  :class:`~timebin.host.align.Aligner`'s delays and windows written, Alice set back to
  data) and finds her first data symbol in her symbol memory (``data_start``); the key run
  is the ``symbols`` symbols from it. Training symbols are lit (they are in the light, and
  Bob records the clicks on those that reach him after his windows are set) but never
  valid for key: Bob's host keeps only the key run's records. Tracking (``track``,
  :func:`~timebin.host.align.track_board`) on the key run's histogram: one step after the
  light, or also every so many symbols.
* **The reference level** (:func:`reference_records_of`): the transmitter model
  (:func:`alice_model`) on the same seed gives Alice's words, the same
  :class:`ChannelFeed` on the same channel seed and chunks gives Bob's words, and the
  receiver model (:func:`~timebin.sim.board.reference_records`) his records. What the run
  measured is its ``replay``: the cycle Alice was enabled (QRNG sessions), her training
  words, and Bob's delays and windows as his receiver saw them in each cycle (the receiver
  model takes per-cycle settings), so that records binned before, across and after a delay
  write are the same at both levels.

Alice's symbol memory must hold the whole session when Bob's block is sifted: its depth
(``symbol_depth``, a power of two) defaults to one with room for the session and for the
words Alice emits before her host stops her. It clears itself for ``symbol_depth`` cycles
after reset; her host enables her once ``log_clearing`` reads 0.

The simulation runs in a child process, so that it and the hosts' work use two cores;
short runs only (a few 10^4 cycles: both boards run at several hundred cycles a second).
Such runs seldom reach a positive finite-key length: the block status says so.
"""

import math
import os
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Module, Value
from amaranth.sim import Simulator

from ..gateware.formulas import probability_settings
from ..gateware.records import CLASS_DISCARD
from ..gateware.system import AliceBoard, BobBoard
from ..gateware.tx.driver import TimeBinDriver
from ..gateware.tx.entropy import EntropySelect
from ..gateware.tx.symbols import Protocol, TrainingMode
from ..gateware.tx.top import Transmitter
from ..host.align import TRAINING_PATTERN, align_board, track_board
from .amaranth_helpers import SYS_PERIOD
from .board import (
    DetectorPlayer,
    LinkEndpoints,
    LinkPump,
    SeededQrng,
    reference_records,
    seeded_qrng_bits,
)
from .channel import (
    Calibration,
    Channel,
    ChannelParams,
    WordStream,
    calibrated_im_levels,
    channel_roles,
    link_figures,
    receiver_settings,
    symbol_mean_photons,
)
from .lab import LAB_DEFAULTS, default_pulse_width, lab_params
from .rx.top import ReceiverModel
from .tx.run import run_tx, seed_key_iv
from .tx.top import TransmitterModel
from .words import bits_to_ints, ints_to_bits, unpack_serializer_words, unpack_symbol_words

__all__ = ["RTL_DEFAULTS", "ENTROPY_SOURCES", "RtlLabSetup", "lab_setup", "ChannelFeed",
           "CoupledLab", "rtl_session", "alice_model", "reference_records_of", "bench_rtl_lab"]

#: Defaults of an RTL session: ``symbols`` (a multiple of ``lanes``), the channel's chunk in
#: cycles, Bob's ``record_timeout`` (cycles a record block stays open: records flow while the
#: light runs), Alice's lead in words before Bob's epoch is loaded (so Bob never waits for
#: the channel), the seconds a session may take, and the clicks per channel of an aligning
#: session's start-up histogram (the :class:`~timebin.host.align.Aligner`'s ``min_counts``).
RTL_DEFAULTS = {
    "symbols": 12_000,
    "chunk_cycles": 32,
    "record_timeout": 1023,
    "lead_words": 128,
    "timeout": 600.0,
    "align_clicks": 200,
}

#: Alice's entropy in a session: her CSPRNG keyed from the seed, or her QRNG port.
ENTROPY_SOURCES = ("csprng", "qrng")

_M64 = (1 << 64) - 1
#: Prefix of the key stores' session names.
_SESSION_PREFIX = "rtl"


def _int_arg(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo \
            or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be an integer {bounds}, not {value!r}")
    return int(value)


def _pack_windows(classes):
    """A ``windows.k`` register value: the window class of each phase, 2 bits each."""
    return sum(int(c) << (2 * p) for p, c in enumerate(classes))


@dataclass(frozen=True)
class RtlLabSetup:
    """Everything both levels of a session agree on (:func:`lab_setup` makes it).

    ``params`` (:class:`~timebin.sim.channel.ChannelParams`: the link timing, the fibre, the
    detectors), ``calibration`` (Alice's modulators), ``symbols`` (of light), ``seed`` (Alice's
    CSPRNG key and IV, :func:`~timebin.sim.tx.run.seed_key_iv`, or her simulated QRNG's
    seed), ``channel_seed``, ``p_z``
    (Alice's and Bob's Z-basis probability), ``intensities`` (asked mean photon numbers per
    symbol), ``probabilities`` (of the intensity classes), ``chunk_cycles``,
    ``symbol_depth`` (Alice's symbol memory, words), ``dead_time`` (Bob's gateware dead time,
    UIs) and ``dead_mode`` (0 per detector, 1 common), ``record_timeout``, ``entropy``
    (:data:`ENTROPY_SOURCES`), ``pulse_width`` (UIs of light per time bin, centred in it;
    None: the whole bin), ``align`` (Bob's host aligns his delays on Alice's training light
    before the key run: module docstring), ``nominal_delays`` (his delays before that, UIs,
    one per channel) and ``align_clicks`` (clicks per channel of the start-up histogram).
    With ``align``, ``symbols`` are the key run's: the training symbols come before them.
    """

    params: ChannelParams
    calibration: Calibration
    symbols: int
    seed: int
    channel_seed: int
    p_z: float
    intensities: tuple
    probabilities: tuple
    chunk_cycles: int
    symbol_depth: int
    dead_time: int
    dead_mode: int
    record_timeout: int
    entropy: str = "csprng"
    pulse_width: int | None = None
    align: bool = False
    nominal_delays: tuple | None = None
    align_clicks: int = 200

    @property
    def lanes(self):
        return self.params.lanes

    @property
    def words(self):
        """Cycles (serializer words) of Alice's light."""
        return self.symbols // self.params.lanes

    @property
    def transmitter_params(self):
        return {"lanes": self.params.lanes, "uis_per_symbol": self.params.uis_per_symbol,
                "dac_bits": self.calibration.dac_bits, "pm_bits": self.calibration.pm_bits}

    @property
    def receiver_params(self):
        """Bob's receiver: a histogram of two symbols when he aligns (the alternating
        pattern's period, :class:`~timebin.host.align.Aligner`), else of one."""
        return {"channels": self.params.channels, "lanes": self.params.lanes,
                "uis_per_symbol": self.params.uis_per_symbol,
                "oversampling": self.params.oversampling,
                "histogram_period": 2 if self.align else 1}

    @property
    def im_levels(self):
        """The driver's IM table after calibration (:func:`calibrated_im_levels`)."""
        return calibrated_im_levels(self.calibration, self.intensities,
                                    uis_per_symbol=self.params.uis_per_symbol,
                                    pulse_width=self.pulse_width)

    @property
    def driver_settings(self):
        """Alice's driver settings: the calibrated IM levels and, with ``pulse_width``, the
        pulse (``pulse_width`` UIs centred in each bin)."""
        settings = {"im_levels": self.im_levels}
        if self.pulse_width is not None:
            k = self.params.uis_per_symbol // 2
            settings.update(pulse_width=self.pulse_width,
                            pulse_offset=(k - self.pulse_width) // 2)
        return settings

    def alice_registers(self):
        """Alice's register writes before she is enabled: her entropy source (the CSPRNG
        keyed from ``seed``, then a ``reseed`` strobe; or the QRNG), the 3-state protocol on
        random data (when Bob aligns: on the alternating training pattern, of the signal
        class), ``p_z`` and the class thresholds, the calibrated IM levels and pulse, no fine
        delays."""
        p_z_code, thresholds = probability_settings(12, self.p_z, self.probabilities)
        writes = {"source": 1} if self.entropy == "qrng" else {"source": 0}
        if self.entropy == "csprng":
            key, iv = seed_key_iv(self.seed)
            writes.update({"key@0": key & _M64, "key@64": key >> 64, "iv@0": iv & _M64,
                           "iv@64": iv >> 64})
        training = TrainingMode.ALTERNATING if self.align else TrainingMode.DATA
        writes.update({"protocol": 0, "training": training.value, "training_intensity": 0,
                       "p_z": p_z_code, "delay_carver": 0, "delay_im": 0, "delay_pm": 0})
        writes.update({f"thresholds.{i}": t for i, t in enumerate(thresholds)})
        driver = self.driver_settings
        writes.update({f"im_levels.{i}": code for i, code in enumerate(driver["im_levels"])})
        writes.update({name: driver[name] for name in ("pulse_width", "pulse_offset")
                       if name in driver})
        return writes

    def bob_settings(self):
        """Bob's receiver settings before the key run in the reference model's form:
        ``delay`` and ``windows`` (without alignment
        :func:`~timebin.sim.channel.receiver_settings`'s: the right delays, Z windows on the
        Z detector, X windows on the others; when he aligns, the nominal delays and every
        phase discarded: he records nothing until he knows his bins, while his histogram
        counts every click), ``dead_time``, ``dead_mode``."""
        rx = receiver_settings(self.params)
        delay, windows = rx["delay"], np.asarray(rx["windows"], np.uint8)
        if self.align:
            delay, windows = self.nominal_delays, np.full_like(windows, CLASS_DISCARD)
        return {"dead_time": self.dead_time, "dead_mode": self.dead_mode,
                "delay": np.asarray(delay, np.int64), "windows": windows}

    def aligner(self):
        """Bob's host aligner (:class:`~timebin.host.align.Aligner`): his channels' roles, a
        histogram of two symbols, ``nominal_delays``, ``align_clicks`` clicks for a channel's
        histogram to count."""
        from ..host.align import Aligner

        return Aligner(channel_roles(self.params), self.params.uis_per_symbol,
                       period_symbols=2, nominal_delays=list(self.nominal_delays),
                       min_counts=self.align_clicks)

    def bob_registers(self):
        """Bob's register writes before his epoch is loaded: :meth:`bob_settings`, the record
        timeout and ``epoch`` 0."""
        s = self.bob_settings()
        writes = {"dead_time": self.dead_time, "dead_mode": self.dead_mode,
                  "record_timeout": self.record_timeout, "epoch": 0}
        writes.update({f"delay.{c}": int(d) for c, d in enumerate(s["delay"])})
        writes.update({f"windows.{c}": _pack_windows(w) for c, w in enumerate(s["windows"])})
        return writes


def lab_setup(*, symbols=RTL_DEFAULTS["symbols"], distance_km=10.0, detector="gated", seed=1,
              channel_seed=None, p_z=LAB_DEFAULTS["p_z"],
              intensities=LAB_DEFAULTS["intensities"],
              probabilities=LAB_DEFAULTS["probabilities"], lanes=LAB_DEFAULTS["lanes"],
              uis_per_symbol=LAB_DEFAULTS["uis_per_symbol"], params=None, calibration=None,
              chunk_cycles=RTL_DEFAULTS["chunk_cycles"], symbol_depth=None, dead_time=None,
              dead_mode=0, record_timeout=RTL_DEFAULTS["record_timeout"], entropy="csprng",
              pulse_width="auto", align=False, nominal_delays=None,
              align_clicks=RTL_DEFAULTS["align_clicks"], **channel_overrides):
    """The :class:`RtlLabSetup` of a session, checked (bad values raise ``ValueError``
    naming them).

    ``params``: a :class:`~timebin.sim.channel.ChannelParams` that replaces the one
    :func:`~timebin.sim.lab.lab_params` makes from ``detector``, ``distance_km``, ``lanes``,
    ``uis_per_symbol``, ``p_z`` (Bob's basis split) and ``channel_overrides``.
    ``channel_seed``: by default ``seed``. ``symbol_depth``: by default the smallest power
    of two that holds the session's words and an eighth more (at least 256 more: the words
    Alice emits before her host stops her; 1024 when aligning: also those between her first
    data word and the one her host counts from). ``dead_time``: by default the detectors' hold-off
    in whole UIs (at least one word). ``entropy``: :data:`ENTROPY_SOURCES` (module
    docstring). ``pulse_width``: UIs of light per time bin, centred in it (``"auto"``:
    :func:`~timebin.sim.lab.default_pulse_width`, as the reference session; ``None``: the
    whole bin, the driver's reset). ``align``: Bob aligns before the key run, from
    ``nominal_delays`` (UIs, one value or one per channel; default each channel's latency in
    whole UIs, as a lab knows it from cables and data sheets), on a start-up histogram of
    ``align_clicks`` clicks per channel (module docstring)."""
    probability_settings(12, p_z, tuple(probabilities))      # raises naming a bad value
    if entropy not in ENTROPY_SOURCES:
        raise ValueError(f"entropy must be one of {ENTROPY_SOURCES}, not {entropy!r}")
    if params is None:
        params = lab_params(detector, distance_km=distance_km, lanes=lanes,
                            uis_per_symbol=uis_per_symbol, bob_p_z=p_z, **channel_overrides)
    elif not isinstance(params, ChannelParams):
        raise ValueError(f"params must be a ChannelParams, not {params!r}")
    elif channel_overrides:
        raise ValueError(f"Give channel settings in params or as overrides, not both "
                         f"({', '.join(sorted(channel_overrides))})")
    calibration = Calibration() if calibration is None else calibration
    if not isinstance(calibration, Calibration):
        raise ValueError(f"calibration must be a Calibration, not {calibration!r}")
    L = params.lanes
    if L & (L - 1):
        raise ValueError(f"lanes must be a power of two (Alice's symbol memory), not {L!r}")
    symbols = _int_arg("symbols", symbols, 1)
    if symbols % L:
        raise ValueError(f"symbols must be a multiple of lanes ({L}), not {symbols!r}")
    seed = _int_arg("seed", seed, 0)
    channel_seed = seed if channel_seed is None else _int_arg("channel_seed", channel_seed, 0)
    chunk_cycles = _int_arg("chunk_cycles", chunk_cycles, 1)
    words = symbols // L
    if symbol_depth is None:
        spare = 1024 if align else 256
        symbol_depth = 1 << (words + max(spare, words // 8) - 1).bit_length()
    symbol_depth = _int_arg("symbol_depth", symbol_depth, 2, 1 << 24)
    if symbol_depth & (symbol_depth - 1) or symbol_depth < words:
        raise ValueError(f"symbol_depth must be a power of two of at least the session's "
                         f"{words} words, not {symbol_depth!r}")
    W = L * params.uis_per_symbol
    if dead_time is None:
        dead_time = max(W, math.ceil(params.dead_time_ps / params.ui_ps - 1e-9))
    dead_time = _int_arg("dead_time", dead_time, W, (1 << 17) - 1)
    dead_mode = _int_arg("dead_mode", dead_mode, 0, 1)
    record_timeout = _int_arg("record_timeout", record_timeout, 0, (1 << 32) - 1)
    p_z = float(p_z)
    intensities = tuple(float(mu) for mu in intensities)
    if len(intensities) != len(tuple(probabilities)):
        raise ValueError(f"intensities and probabilities must have one entry per class, not "
                         f"{intensities!r} and {tuple(probabilities)!r}")
    setup = RtlLabSetup(params=params, calibration=calibration, symbols=symbols, seed=seed,
                        channel_seed=channel_seed, p_z=p_z, intensities=intensities,
                        probabilities=tuple(float(q) for q in probabilities),
                        chunk_cycles=chunk_cycles, symbol_depth=symbol_depth,
                        dead_time=dead_time, dead_mode=dead_mode,
                        record_timeout=record_timeout, entropy=entropy,
                        **_alignment_options(params, pulse_width, align, nominal_delays,
                                             align_clicks))
    _ = setup.im_levels                                       # raises naming a bad value
    return setup


def _alignment_options(params, pulse_width, align, nominal_delays, align_clicks):
    """``lab_setup``'s pulse and alignment options, checked and filled in."""
    k = params.uis_per_symbol // 2
    if isinstance(pulse_width, str) and pulse_width == "auto":
        pulse_width = default_pulse_width(params.uis_per_symbol)
    elif pulse_width is not None:
        pulse_width = _int_arg("pulse_width", pulse_width, 1, k)
    if not isinstance(align, bool):
        raise ValueError(f"align must be True or False, not {align!r}")
    align_clicks = _int_arg("align_clicks", align_clicks, 1)
    if not align:
        if nominal_delays is not None:
            raise ValueError("nominal_delays need align=True (without alignment Bob's delays "
                             "are the right ones)")
        return {"pulse_width": pulse_width, "align": False, "nominal_delays": None,
                "align_clicks": align_clicks}
    if nominal_delays is None:
        nominal_delays = np.round(params.latencies / params.ui_ps).astype(int)
    nominal = np.atleast_1d(np.asarray(nominal_delays, dtype=object))
    if nominal.ndim != 1 or len(nominal) not in (1, params.channels):
        raise ValueError(f"nominal_delays must be one value or one per channel "
                         f"({params.channels}), not {nominal_delays!r}")
    nominal = tuple(_int_arg("nominal_delays", d, 0, (1 << 20) - 1)
                    for d in np.broadcast_to(nominal, (params.channels,)))
    return {"pulse_width": pulse_width, "align": True, "nominal_delays": nominal,
            "align_clicks": align_clicks}


class ChannelFeed:
    """Alice's serializer words through the channel into Bob's deserializer words, chunk by
    chunk: the one path both levels take, so that the same calls on the same seed draw the
    same clicks.

    :meth:`send` a chunk of words (``carver``, ``im``, ``pm``: (cycles, L * S)), :meth:`end`
    after the last. ``words`` lists Bob's words made so far ((channels, L * S * oversampling)
    arrays), ``word_ints`` the same as ints (the receiver's ``samples``); ``ended`` is true
    once every word is made; ``channel`` holds the counters.
    """

    def __init__(self, setup):
        self.setup = setup
        self.channel = Channel(setup.params, seed=np.random.default_rng(setup.channel_seed),
                               calibration=setup.calibration)
        self.stream = WordStream(setup.params)
        self.words = []
        self.word_ints = []
        self.sent = 0
        self.ended = False

    def _push(self, detections, final_time_ps):
        words = self.stream.push(detections, final_time_ps)
        if len(words):
            self.words.extend(words)
            self.word_ints.extend(bits_to_ints(words.reshape(len(words), -1)))

    def send(self, carver, im, pm):
        if self.ended:
            raise ValueError("The channel feed has ended; start a new one")
        self._push(self.channel.send_words(carver, im, pm), self.channel.final_time_ps())
        self.sent += len(carver)

    def end(self):
        if self.ended:
            raise ValueError("The channel feed has already ended")
        self._push(self.channel.flush(), None)
        self.ended = True

    def bob_words(self):
        """Bob's words as one array (N, channels, L * S * oversampling)."""
        p = self.setup.params
        shape = (p.channels, p.lanes * p.uis_per_symbol * p.oversampling)
        return np.array(self.words, np.uint8).reshape(-1, *shape)


def _settings_log(setup, receiver, changes):
    """``{cycle, delay, windows}`` arrays of the ``(cycle, delay port, windows port)``
    changes the bench saw on Bob's receiver (port values as ints)."""
    C, S = setup.params.channels, setup.params.uis_per_symbol
    bits = Value.cast(receiver.delay).shape().width // C
    cycles = np.array([c for c, _, _ in changes], np.int64)
    delay = np.array([[d >> (bits * c) & ((1 << bits) - 1) for c in range(C)]
                      for _, d, _ in changes], np.int64).reshape(-1, C)
    windows = np.array([[[w >> (2 * (c * S + u)) & 3 for u in range(S)] for c in range(C)]
                        for _, _, w in changes], np.uint8).reshape(-1, C, S)
    return {"cycle": cycles, "delay": delay, "windows": windows}


def _settings_from(bob_settings, epoch_cycle, n):
    """Bob's ``delay`` (n, C) and ``windows`` (n, C, S) in the ``n`` cycles from
    ``epoch_cycle`` on (the receiver model's per-cycle settings of
    :func:`~timebin.sim.board.reference_records`, whose cycle 0 is the epoch's), from the
    changes an RTL run logged (``bob_settings`` of :meth:`CoupledLab.run`)."""
    cycles = np.asarray(bob_settings["cycle"], np.int64)
    if not len(cycles) or cycles[0] > epoch_cycle:
        raise ValueError(f"Bob's settings log must start at or before the epoch's cycle "
                         f"{epoch_cycle}, not {cycles[:1].tolist()}")
    at = np.searchsorted(cycles, epoch_cycle + np.arange(n), side="right") - 1
    return (np.asarray(bob_settings["delay"], np.int64)[at],
            np.asarray(bob_settings["windows"], np.uint8)[at])


class _ChannelPlayer(DetectorPlayer):
    """Bob's detectors fed by a :class:`ChannelFeed`: counts the words Bob needs before the
    channel has made them (``starved``) and keeps what it played up to the end of the light
    (``played_ints``)."""

    def __init__(self, top, feed):
        super().__init__(top)
        self.feed = feed
        self.starved = 0
        self.played_ints = []

    def word(self, p):
        feed = self.feed
        if p < len(feed.word_ints):
            value = feed.word_ints[p]
        else:
            value = 0
            if not feed.ended:
                self.starved += 1
        if not feed.ended or p < len(feed.word_ints):
            self.played_ints.append(value)
        return value


class CoupledLab:
    """Alice's and Bob's boards in one Amaranth simulation with the channel between them
    (module docstring).

    Parameters
    ----------
    setup : RtlLabSetup
    link : dict or None
        The boards' link parameters (:data:`~timebin.gateware.system.LINK_DEFAULTS`).

    Members
    -------
    alice, bob :
        The boards' gateware (:class:`~timebin.gateware.system.AliceBoard`,
        :class:`~timebin.gateware.system.BobBoard`).
    feed : ChannelFeed
    """

    def __init__(self, setup, *, link=None):
        if not isinstance(setup, RtlLabSetup):
            raise ValueError(f"setup must be an RtlLabSetup (lab_setup()), not {setup!r}")
        self.setup = setup
        self.alice = AliceBoard(params=setup.transmitter_params,
                                board={"symbol_depth": setup.symbol_depth}, link=link)
        self.bob = BobBoard(params=setup.receiver_params, link=link)
        self.feed = ChannelFeed(setup)
        self.cycles = 0
        self.seconds = 0.0

    def run(self, alice_endpoints, bob_endpoints, *, until=None, ready=None, light_done=None,
            max_cycles=None):
        """Run both boards against their endpoints (:class:`~timebin.sim.board.LinkEndpoints`)
        until ``until()`` is true (checked every 256 cycles) or ``max_cycles`` have run.
        ``ready()`` is called after the first cycle; ``light_done(info)`` once Bob has played
        the last word of the light and the receiver had time to emit its records.

        The light is Alice's first symbol words: the training words (those her symbol source
        drew in training mode before its first data word; none unless Bob aligns) and then
        ``setup.words`` data words.

        Returns the capture: ``cycles``, ``seconds``, ``enable_cycle`` (the first cycle
        Alice's transmitter saw ``enable``), ``data_cycle`` (the first cycle her symbol
        source drew a data word), ``training_words`` (the words before it),
        ``origin_cycle`` (Alice's UI 0 left), ``epoch_cycle`` (Bob's epoch loaded),
        ``light_done_cycle``, ``starved``, ``alice_words`` ``{carver, im, pm}`` (the words
        fed to the channel), ``alice_log`` (her symbol log of the light: ``index``,
        ``basis``, ``bit``, ``intensity``, ``valid``, ``dark``), ``bob_words`` (the words the
        channel made, as arrays), ``played_words`` (what Bob's ``samples`` got from the cycle
        after the strobe), ``bob_settings`` (his receiver's ``delay`` and ``windows`` ports
        from reset: ``cycle`` (K,) of each change, the first 0, and the values from it on,
        ``delay`` (K, C), ``windows`` (K, C, S)), ``counters`` (the channel's), ``bytes``
        per link."""
        setup, alice, bob, feed = self.setup, self.alice, self.bob, self.feed
        tx = alice.transmitter
        top = Module()
        top.submodules.alice = alice
        top.submodules.bob = bob
        sim = Simulator(top)
        sim.add_clock(SYS_PERIOD)
        pumps = (LinkPump(alice_endpoints, alice.link_rx, alice.link_tx),
                 LinkPump(bob_endpoints, bob.link_rx, bob.link_tx))
        qrng = SeededQrng(alice.qrng, setup.seed)
        player = _ChannelPlayer(bob, feed)
        ser = Value.cast(alice.ser)
        first_symbols = tx.symbol_source.symbols.valid
        source_enable = tx.symbol_source.enable
        source_training = Value.cast(tx.symbol_source.training)
        log_valid, log_payload = tx.log.valid, Value.cast(tx.log.payload)
        chunk, L = setup.chunk_cycles, setup.lanes
        # Bob's settings as his receiver's binner sees them, cycle by cycle (the reference
        # level replays them: delays and windows written while the light runs)
        rx_delay, rx_windows = Value.cast(bob.receiver.delay), Value.cast(bob.receiver.windows)
        settings_log = []
        # as reference_records: the receiver's latency and its FIFO's worth of records
        receiver = bob.receiver
        tail = receiver.latency + receiver.params.get("fifo_depth", 16) * receiver.channels + 1
        state = {"origin": None, "done": None, "enable": None, "data": None,
                 "drawn": 0, "words": None}
        raw, log_ints = [], []
        captured = 0
        unpack = (setup.params.lanes, setup.params.uis_per_symbol,
                  setup.calibration.dac_bits, setup.calibration.pm_bits)
        alice_parts = []

        def feed_chunk():
            carver, im, pm = unpack_serializer_words(raw, *unpack)
            alice_parts.append((carver, im, pm))
            feed.send(carver, im, pm)
            raw.clear()

        async def bench(ctx):
            nonlocal captured
            qrng.start(ctx)
            cycle = 0
            last_settings = None
            while True:
                for pump in pumps:
                    pump.drive(ctx, cycle)
                player.drive(ctx, cycle)
                qrng.drive(ctx)
                settings = (ctx.get(rx_delay), ctx.get(rx_windows))
                if settings != last_settings:
                    settings_log.append((cycle, *settings))
                    last_settings = settings
                if state["enable"] is None and ctx.get(tx.enable):
                    state["enable"] = cycle
                if state["data"] is None and ctx.get(source_enable):
                    # the word drawn in this cycle is word `drawn` of the light
                    if ctx.get(source_training) == TrainingMode.DATA.value:
                        state["data"] = cycle
                        state["words"] = state["drawn"] + setup.words
                    state["drawn"] += 1
                words = state["words"]
                if state["origin"] is None and ctx.get(first_symbols):
                    state["origin"] = cycle + TimeBinDriver.latency
                if state["origin"] is not None and cycle >= state["origin"] \
                        and (words is None or captured < words):
                    raw.append(ctx.get(ser))
                    captured += 1
                if (words is None or len(log_ints) < words) and ctx.get(log_valid):
                    log_ints.append(ctx.get(log_payload))
                for pump in pumps:
                    pump.take(ctx)
                await ctx.tick()
                cycle += 1
                self.cycles = cycle
                for pump in pumps:
                    pump.send(cycle)
                if raw and (len(raw) == chunk or captured == words):
                    feed_chunk()
                    if captured == words:
                        feed.end()
                if state["done"] is None and feed.ended \
                        and player.epoch_cycle is not None \
                        and player.played >= len(feed.word_ints) + tail:
                    state["done"] = cycle
                    if light_done is not None:
                        light_done({"cycle": cycle, "starved": player.starved,
                                    "bob_words": len(feed.word_ints)})
                if cycle == 1 and ready is not None:
                    ready()
                if max_cycles is not None and cycle >= max_cycles:
                    return
                if until is not None and cycle % 256 == 0 and until():
                    return

        sim.add_testbench(bench)
        started = time.perf_counter()
        sim.run()
        self.seconds = time.perf_counter() - started

        p = setup.params
        width = p.lanes * p.uis_per_symbol * p.oversampling
        if alice_parts:
            alice_words = {name: np.concatenate([part[i] for part in alice_parts])
                           for i, name in enumerate(("carver", "im", "pm"))}
        else:
            alice_words = {name: np.zeros((0, p.lanes * p.uis_per_symbol), np.uint8)
                           for name in ("carver", "im", "pm")}
        index, fields = unpack_symbol_words(L, log_ints)
        alice_log = {"index": (index[:, None] + np.arange(L, dtype=np.uint64)).ravel()}
        alice_log.update({name: np.asarray(values, np.uint8).ravel()
                          for name, values in fields.items()})
        light_words = state["words"] if state["words"] is not None else len(log_ints)
        keep = alice_log["index"] < light_words * L
        alice_log = {name: values[keep] for name, values in alice_log.items()}
        played = ints_to_bits(player.played_ints, p.channels * width) \
            .reshape(-1, p.channels, width) if player.played_ints else \
            np.zeros((0, p.channels, width), np.uint8)
        return {"cycles": self.cycles, "seconds": self.seconds,
                "enable_cycle": state["enable"], "data_cycle": state["data"],
                "training_words": None if state["data"] is None else
                state["words"] - setup.words,
                "origin_cycle": state["origin"],
                "epoch_cycle": player.epoch_cycle,
                "light_done_cycle": state["done"], "starved": player.starved,
                "alice_words": alice_words, "alice_log": alice_log,
                "bob_words": feed.bob_words(), "played_words": played,
                "bob_settings": _settings_log(setup, bob.receiver, settings_log),
                "counters": {k: v.tolist() for k, v in feed.channel.counters.items()},
                "bytes": {"alice": [pumps[0].bytes_in, pumps[0].bytes_out],
                          "bob": [pumps[1].bytes_in, pumps[1].bytes_out]}}


# --- the simulation's process -----------------------------------------------------------


def _lab_process(conn, setup, max_cycles):
    """The child process: build the coupled lab, serve both links, report over ``conn``
    (``("ready", endpoints)``, ``("light_done", info)``, then ``("result", capture)`` or
    ``("error", traceback)``); stop on ``"stop"`` or when the parent has gone."""
    parent = os.getppid()
    endpoints = []
    try:
        lab = CoupledLab(setup)
        endpoints = [LinkEndpoints(pty=True, tcp_port=0) for _ in range(2)]

        def until():
            if os.getppid() != parent:
                return True
            try:
                return conn.poll() and conn.recv() == "stop"
            except EOFError:                            # the parent has gone
                return True

        def ready():
            conn.send(("ready", {role: {"pty": e.pty_path, "tcp": e.tcp_port}
                                 for role, e in zip(("alice", "bob"), endpoints,
                                                    strict=True)}))

        capture = lab.run(*endpoints, until=until, ready=ready, max_cycles=max_cycles,
                          light_done=lambda info: conn.send(("light_done", info)))
        conn.send(("result", capture))
    except BaseException:                               # noqa: BLE001 - reported to the parent
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:                                 # the parent has gone
            pass
    finally:
        for e in endpoints:
            e.close()
        conn.close()


def _child_main():
    """Entry of the simulation's process: ``python -c ...`` with the fd of its end of a
    socket pair as the last argument; the setup comes over it."""
    import sys
    from multiprocessing.connection import Connection

    conn = Connection(int(sys.argv[-1]))
    setup, max_cycles = conn.recv()
    _lab_process(conn, setup, max_cycles)


class _LabProcess:
    """The parent's handle on the simulation's process (:func:`_lab_process`), started with
    :mod:`subprocess` (no ``multiprocessing`` start method: the caller's ``__main__`` is
    never re-imported) and talked to over a socket pair."""

    def __init__(self, setup, *, max_cycles=None):
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        mine, theirs = socket.socketpair()
        fd = theirs.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from timebin.sim.lab_rtl import _child_main; _child_main()",
             str(fd)], pass_fds=(fd,))
        theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send((setup, max_cycles))
        self.light = None

    def expect(self, kind, timeout):
        """The body of the next message of ``kind`` (``light_done`` may come first and is
        kept); raises ``RuntimeError`` with the child's traceback on its error, and
        ``TimeoutError`` naming ``kind``."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"The RTL lab simulation sent no {kind!r} within "
                                   f"{timeout:.0f} s")
            try:
                got, body = self.conn.recv()
            except EOFError:
                raise RuntimeError("The RTL lab simulation ended without a word") from None
            if got == "error":
                raise RuntimeError(f"The RTL lab simulation failed:\n{body}")
            if got == "light_done":
                self.light = body
            if got == kind:
                return body

    def poll_light(self):
        """Whether ``light_done`` has come (reading what waits)."""
        while self.light is None and self.conn.poll():
            got, body = self.conn.recv()
            if got == "error":
                raise RuntimeError(f"The RTL lab simulation failed:\n{body}")
            if got == "light_done":
                self.light = body
        return self.light is not None

    def stop(self, timeout):
        """Stop the simulation and return its capture."""
        self.conn.send("stop")
        capture = self.expect("result", timeout)
        self.process.wait(timeout)
        return capture

    def close(self):
        """Stop the process if it still runs (reading what it sends meanwhile, so that it
        never blocks on a full pipe), and terminate it if it does not end."""
        if self.process.poll() is None:
            try:
                self.conn.send("stop")
            except OSError:
                pass
            deadline = time.monotonic() + 10.0
            while self.process.poll() is None and time.monotonic() < deadline:
                try:
                    if self.conn.poll(0.1):
                        self.conn.recv()
                except (EOFError, OSError):
                    time.sleep(0.1)
            if self.process.poll() is None:
                self.process.terminate()
                self.process.wait(10)
        self.conn.close()


# --- hosts ------------------------------------------------------------------------------


def _concat_records(parts, channels, uis_per_symbol):
    parts = [p for p in parts if len(p["index"])]
    if not parts:
        from ..host.records import decode_detections

        return decode_detections(np.zeros(0, np.uint32), channels, uis_per_symbol)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _urls(endpoints, transport):
    if isinstance(transport, str):
        transport = (transport, transport)
    if len(transport) != 2 or any(t not in ("pty", "tcp") for t in transport):
        raise ValueError(f"transport must be 'pty', 'tcp' or a pair of them (Alice's, "
                         f"Bob's), not {transport!r}")
    urls = {}
    for role, kind in zip(("alice", "bob"), transport, strict=True):
        e = endpoints[role]
        urls[role] = f"serial://{e['pty']}" if kind == "pty" else f"tcp://127.0.0.1:{e['tcp']}"
    return urls


def _first_data_word(alice, setup, hi):
    """The first word of Alice's key run, found in her symbol memory once she is stopped:
    ``hi``, her ``log_written`` then, is beyond it. The words before it hold the
    alternating training pattern: never valid, Z basis, bit = index mod 2, the training
    class. A word is told by one symbol, its odd lane's (its only one when ``lanes`` is 1):
    a data symbol there is valid, or dark with bit 0. Search: the words ``hi - 2**j`` in one
    lookup, then the bracket they leave in eighths, a lookup each. A word the memory no
    longer holds ends the search with ``ValueError`` (the key run's words must still be
    there)."""
    L = setup.lanes
    lane = 1 if L > 1 else 0

    def data(words, available=True):
        words = np.asarray(words, np.int64)
        got = alice.lookup((words * L + lane).astype(np.uint64))
        training = (got["valid"] == 0) & (got["basis"] == 0) & (got["intensity"] == 0) \
            & (got["bit"] == (words * L + lane) % 2)
        return (got["available"] == 1) & (~training if available else training)

    back = hi - 1 - (1 << np.arange(max(1, int(hi).bit_length())))
    probe = np.unique(np.concatenate(([hi - 1, 0], back[back >= 0])))[::-1]
    found = data(probe)
    if not found[0]:
        raise ValueError(f"Alice's last logged word ({hi - 1}) is not a data word")
    if found.all():
        return 0
    first = int(np.argmin(found))           # lo: not data; up: data
    lo, up = int(probe[first]), int(probe[first - 1])
    while up - lo > 1:
        grid = np.unique(np.linspace(lo, up, 9).round().astype(np.int64)[1:-1])
        grid = grid[(grid > lo) & (grid < up)]
        found = data(grid)
        lo = int(grid[~found].max()) if (~found).any() else lo
        above = grid[found & (grid > lo)]
        up = int(above.min()) if len(above) else up
    if not data([lo], available=False)[0]:
        raise ValueError(f"Alice's symbol memory no longer holds the word before her first "
                         f"data word found ({up}): the key run's start is lost")
    return up


def _distil(blocks, config, *, roles, secret, alice_board, stores, session, seed, timeout):
    """Both distillation hosts over an authenticated channel on a socket pair; Alice's host
    looks Bob's indices up in her board's symbol memory. Returns ``(alice, bob, keys,
    lookups)``: ``lookups`` counts Alice's lookup calls, indices and seconds."""
    from ..host.distill.auth import direction_pools
    from ..host.distill.channel import AuthenticatedChannel
    from ..host.distill.session import AliceHost, BobHost

    keys = {"alice": {}, "bob": {}}

    def sink(role):
        def take(block, key, meta):
            keys[role][block] = key
            stores[role].add_block(key, session=session, block=block, meta=meta)
        return take

    lookups = {"calls": 0, "indices": 0, "seconds": 0.0}

    def lookup(indices):
        t0 = time.perf_counter()
        answer = alice_board.lookup(indices)
        lookups["seconds"] += time.perf_counter() - t0
        lookups["calls"] += 1
        lookups["indices"] += len(indices)
        return answer

    a, b = socket.socketpair()
    # one generator per host: a shared one would be drawn in thread order (not reproducible)
    alice_rng, bob_rng = (np.random.default_rng(s)
                          for s in np.random.SeedSequence([seed, 7]).spawn(2))
    alice = AliceHost(AuthenticatedChannel(a, role="alice", pools=direction_pools(secret),
                                           timeout=timeout), config, lookup=lookup,
                      sink=sink("alice"), rng=alice_rng)
    bob = BobHost(AuthenticatedChannel(b, role="bob", pools=direction_pools(secret),
                                       timeout=timeout), config, roles=roles, sink=sink("bob"),
                  rng=bob_rng)
    thread = threading.Thread(target=alice.serve, daemon=True, name="alice-host")
    thread.start()
    try:
        for block, records in enumerate(blocks):
            bob.run_block(block, records)
        bob.close()
        thread.join(timeout)
    finally:
        alice.channel.close()
        bob.channel.close()
    return alice, bob, keys, lookups


def rtl_session(*, symbols=RTL_DEFAULTS["symbols"], distance_km=10.0, detector="gated",
                seed=1, channel_seed=None, block_symbols=None, reconciler="cascade",
                eps_sec=1e-9, eps_cor=1e-15, replenish_bytes=64, transport=("pty", "tcp"),
                store_dir=None, keep_data=False, timeout=RTL_DEFAULTS["timeout"],
                lead_words=None, track=None, **setup_options):
    """A whole RTL-in-the-loop session (module docstring); returns a summary dict.

    Session settings as :func:`lab_setup` (``symbols``, ``distance_km``, ``detector``,
    ``seed``, ``channel_seed`` and ``setup_options``: ``p_z``, ``intensities``, ...).
    ``block_symbols``: symbols per distillation block (a divisor of ``symbols``; default all
    of them). ``transport``: how the hosts reach the boards, ``"pty"``, ``"tcp"`` or a pair
    (Alice's, Bob's). ``store_dir``: where the key stores go (``alice.keys``, ``bob.keys``;
    default a temporary directory, removed afterwards). ``timeout``: seconds for the whole
    session. ``lead_words``: Alice's words out before Bob's epoch is loaded (default
    ``RTL_DEFAULTS["lead_words"]``, at most the session's words).

    ``align`` (a :func:`lab_setup` option, default False): Bob's host aligns his delays on
    Alice's training light before the key run (module docstring). ``track`` (with
    ``align``): None, no tracking; ``"end"``, one tracking step on the key run's histogram
    after the light; a number of symbols (a multiple of ``lanes``), a step each time the
    key run has gone that far, and one after the light. Alignment is not the default
    because it costs more than a short session: the start-up histogram needs
    ``align_clicks`` clicks on every channel (some 2000 cycles at 10 km for 100 clicks, ten
    times more per 10 dB of loss) and its read-out two link round trips per bin (some 6000
    cycles for 3 channels of 16 bins at S = 8), while the key run of the default session is
    3000 cycles; without it Bob's delays are the right ones, as a lab has them after
    alignment.

    Host steps: configure Alice (:meth:`RtlLabSetup.alice_registers`, ``reseed``), wait for
    her symbol memory's clear sweep, enable her; configure Bob
    (:meth:`RtlLabSetup.bob_registers`); load Bob's epoch once Alice has ``lead_words`` words
    out; when aligning, :func:`~timebin.host.align.align_board` (Alice's alternating pattern
    until Bob's histogram has ``align_clicks`` clicks per channel, his delays and windows
    written, Alice back to data); stream Bob's records (tracking steps,
    :func:`~timebin.host.align.track_board`, when asked); stop Alice once her log holds the
    session (when aligning, counted from her ``log_written`` after the switch, a word
    beyond her first data word); when the light is done, find her first data word in her
    symbol memory (when aligning), flush Bob's record block and take records until his
    ``records_out``; keep the records of the key run's symbols (never those of the training
    symbols: Alice logs them as not valid and the sifter would drop them, but they are not
    the session's); distil block by block; stop the simulation.

    Summary (as :func:`~timebin.sim.lab.reference_session`'s where they mean the same):
    ``symbols``, ``blocks``, ``block_symbols``, ``detector``, ``distance_km``, ``clicks``
    (the channel's), ``records`` (Bob's, per block), ``records_beyond`` (records on symbols
    after the session's, dropped), per block ``status``, ``reason``, ``detections``,
    ``sifted_z``, ``sifted_x``, ``errors_z``, ``errors_x``, ``qber_z``, ``qber_x``,
    ``efficiency``, ``key_bits``, ``stored_bits``, ``bounds``; ``alice_key_bits``,
    ``alice_stored_bits``, ``key_bits_total``, ``stored_bits_total``, ``keys_match``,
    ``key_blocks``, ``stores`` (blocks in each key store); ``eps_sec``, ``eps_cor``,
    ``intensities`` (realised), ``probabilities``, ``p_z``, ``reconciler``, ``link``,
    ``counters`` (channel); the RTL run: ``cycles``, ``seconds`` (the simulation loop),
    ``cycles_per_s``, ``symbols_per_s`` (symbols of light per second of the whole
    session), ``session_seconds``, ``entropy``, ``enable_cycle`` (what
    :func:`reference_records_of` needs to replay a QRNG session), ``starved``,
    ``origin_cycle``, ``epoch_cycle``,
    ``light_done_cycle``, ``alice_overrun_words`` (words Alice emitted beyond the session
    before she was stopped), ``symbol_depth``, ``alice`` and ``bob`` (their boards'
    counters), ``link_stats`` (the clients' :meth:`~timebin.host.board.Board.link_stats`) and
    ``link_bytes`` (``[in, out]`` per board, the simulation's count), ``lookups`` (Alice's
    host's lookups through her board: calls, indices, seconds), ``distill_seconds``,
    ``transport``; alignment: ``aligned``, ``nominal_delays``, ``delays`` (Bob's delay
    registers, read back after the light), ``data_start`` (the key run's first symbol, as
    his host found it; 0 without alignment), ``training_symbols`` (the simulation's count of
    them), ``alignment_cycles`` (from Alice's enable to her first data symbol drawn),
    ``host_seconds`` (the hosts' ``align_board``, ``data_start``, ``light`` and ``track_end``
    steps), ``records_training`` (records on training symbols, dropped),
    ``timeline`` (the aligner's steps, :attr:`~timebin.host.align.Aligner.history`);
    ``replay`` (what :func:`reference_records_of` needs to replay the run: ``enable_cycle``,
    ``epoch_cycle``, ``training_words``, ``bob_settings``). ``keep_data``: also ``data``
    (the capture, all of Bob's records, the session's records) for tests.
    """
    from ..host.board import Board
    from ..host.distill.session import DistillConfig
    from ..host.keystore import KeyStore

    started = time.perf_counter()
    setup = lab_setup(symbols=symbols, distance_km=distance_km, detector=detector, seed=seed,
                      channel_seed=channel_seed, **setup_options)
    block_symbols = setup.symbols if block_symbols is None else \
        _int_arg("block_symbols", block_symbols, 1)
    if setup.symbols % block_symbols:
        raise ValueError(f"block_symbols must divide symbols ({setup.symbols}), not "
                         f"{block_symbols!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    lead_words = min(RTL_DEFAULTS["lead_words"], setup.words) if lead_words is None else \
        _int_arg("lead_words", lead_words, 1, setup.words)
    track_words = None
    if track is not None:
        if not setup.align:
            raise ValueError("track needs align=True")
        if not (isinstance(track, str) and track == "end"):
            track_symbols = _int_arg("track", track, setup.lanes)
            if track_symbols % setup.lanes:
                raise ValueError(f"track must be 'end' or a multiple of lanes "
                                 f"({setup.lanes}), not {track!r}")
            track_words = track_symbols // setup.lanes
    _urls({"alice": {"pty": "", "tcp": 0}, "bob": {"pty": "", "tcp": 0}}, transport)
    params = setup.params
    S = params.uis_per_symbol
    mu = symbol_mean_photons(setup.calibration, S, setup.driver_settings)
    realised = tuple(float(mu[c, [0, 1, 2]].mean()) for c in range(len(setup.intensities)))
    config = DistillConfig(protocol="1decoy-3state", intensities=realised,
                           probabilities=setup.probabilities, p_z=setup.p_z, eps_sec=eps_sec,
                           eps_cor=eps_cor, reconciler=reconciler,
                           replenish_bytes=replenish_bytes)
    deadline = time.monotonic() + timeout

    def left():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"The RTL session took more than its timeout of {timeout} s")
        return remaining

    lab = _LabProcess(setup)
    temporary = None
    boards = []
    try:
        urls = _urls(lab.expect("ready", left()), transport)
        alice = Board.open(urls["alice"], timeout=min(60.0, timeout))
        boards.append(alice)
        bob = Board.open(urls["bob"], timeout=min(60.0, timeout))
        boards.append(bob)
        # Alice: keyed, configured; enabled once her symbol memory has cleared.
        alice.write(setup.alice_registers())
        if setup.entropy == "csprng":
            alice.strobe("reseed")
        bob.write(setup.bob_registers())
        while alice.get("log_clearing"):
            left()
            time.sleep(0.05)
        alice.set("enable", 1)
        while alice.get("log_written") < lead_words:
            left()
        bob.strobe("epoch_load")
        # Alignment: Bob's delays and windows from Alice's training light; Alice in data.
        aligner, data_word, switched, phases = None, 0, 0, {}
        if setup.align:
            t_align = time.perf_counter()
            aligner = setup.aligner()
            align_board(alice, bob, aligner, clicks=setup.align_clicks, timeout=left())
            switched = alice.get("log_written")       # beyond her first data word
            phases["align_board"] = time.perf_counter() - t_align
        t_light = time.perf_counter()
        # The light: Bob's records as they come; Alice stopped once her log holds the session
        # (with alignment: from a word beyond her first data word on).
        parts, alice_written = [], None
        last_word = switched + setup.words
        next_track = None if track_words is None else switched + track_words
        while not lab.poll_light():
            left()
            parts.append(bob.stream_records(duration=0.05))
            if alice_written is None:
                written = alice.get("log_written")
                if written >= last_word:
                    alice.set("enable", 0)
                    alice_written = alice.get("log_written")
                elif next_track is not None and written >= next_track:
                    track_board(bob, aligner)
                    next_track += track_words
        if alice_written is None:
            alice.set("enable", 0)
            alice_written = alice.get("log_written")
        phases["light"] = time.perf_counter() - t_light
        if track is not None:
            t_track = time.perf_counter()
            track_board(bob, aligner)                   # the light since the last step
            phases["track_end"] = time.perf_counter() - t_track
        if setup.align:
            t_search = time.perf_counter()
            data_word = _first_data_word(alice, setup, int(alice_written))
            phases["data_start"] = time.perf_counter() - t_search
        bob.strobe("record_flush")
        expected = bob.get("records_out")
        got = sum(len(p["index"]) for p in parts)
        progress = time.monotonic()
        while got < expected:
            part = bob.stream_records(count=expected - got, duration=min(1.0, left()))
            parts.append(part)
            got += len(part["index"])
            if len(part["index"]):
                progress = time.monotonic()
            elif time.monotonic() - progress > 20.0:
                raise RuntimeError(f"Bob's board reports {expected} records out, but only "
                                   f"{got} reached his host (link: {bob.link_stats()})")
        records = _concat_records(parts, params.channels, S)
        bob_counters = bob.counters()
        bob_link = bob.link_stats()
        delays = [int(bob.get(f"delay.{c}")) for c in range(params.channels)]
        # Distillation over the authenticated channel, into the key stores: the key run's
        # records (not those of Alice's training symbols before it).
        data_start = data_word * setup.lanes
        before = records["index"] < np.uint64(data_start)
        inside = ~before & (records["index"] < np.uint64(data_start + setup.symbols))
        session_records = {name: values[inside] for name, values in records.items()}
        blocks = []
        for start in range(data_start, data_start + setup.symbols, block_symbols):
            sel = (session_records["index"] >= np.uint64(start)) & (
                session_records["index"] < np.uint64(start + block_symbols))
            blocks.append({name: values[sel] for name, values in session_records.items()})
        if store_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="timebin-rtl-")
            store_dir = temporary.name
        store_dir = Path(store_dir)
        store_dir.mkdir(parents=True, exist_ok=True)
        name = f"{_SESSION_PREFIX}-{setup.seed}-{setup.channel_seed}"
        with KeyStore(store_dir / "alice.keys", role="alice") as store_a, \
                KeyStore(store_dir / "bob.keys", role="bob") as store_b:
            secret = np.random.default_rng([setup.seed, 6]).bytes(65536)
            t_distil = time.perf_counter()
            alice_host, bob_host, keys, lookups = _distil(
                blocks, config, roles=channel_roles(params), secret=secret, alice_board=alice,
                stores={"alice": store_a, "bob": store_b}, session=name, seed=setup.seed,
                timeout=min(120.0, left()))
            distil_seconds = time.perf_counter() - t_distil
            stored = {"alice": len(store_a.blocks()), "bob": len(store_b.blocks())}
        alice_counters = alice.counters()
        alice_link = alice.link_stats()
        for board in boards:
            board.close()
        boards.clear()
        capture = lab.stop(left())
    finally:
        for board in boards:
            board.close()
        lab.close()
        if temporary is not None:
            temporary.cleanup()
    session_seconds = time.perf_counter() - started

    results = list(bob_host.results)
    per = {name: [getattr(r, name) for r in results]
           for name in ("status", "reason", "detections", "sifted_z", "sifted_x", "errors_z",
                        "errors_x", "qber_z", "qber_x", "efficiency", "key_bits",
                        "stored_bits", "bounds")}
    key_bits = int(sum(per["key_bits"]))
    summary = {
        "symbols": setup.symbols, "blocks": len(blocks), "block_symbols": block_symbols,
        "detector": params.detector, "distance_km": params.length_km,
        "seed": setup.seed, "channel_seed": setup.channel_seed,
        "clicks": int(sum(capture["counters"]["clicks"])),
        "records": [int(len(b["index"])) for b in blocks],
        "records_beyond": int((~inside & ~before).sum()),
        **per,
        "alice_key_bits": [r.key_bits for r in alice_host.results],
        "alice_stored_bits": [r.stored_bits for r in alice_host.results],
        "key_bits_total": key_bits, "stored_bits_total": int(sum(per["stored_bits"])),
        "keys_match": keys["alice"] == keys["bob"], "key_blocks": sorted(keys["bob"]),
        "stores": stored,
        "eps_sec": eps_sec, "eps_cor": eps_cor, "intensities": realised,
        "probabilities": setup.probabilities, "p_z": setup.p_z, "reconciler": reconciler,
        "link": link_figures(params), "counters": capture["counters"],
        "cycles": capture["cycles"], "seconds": capture["seconds"],
        "cycles_per_s": capture["cycles"] / capture["seconds"] if capture["seconds"] else None,
        "symbols_per_s": setup.symbols / session_seconds,
        "session_seconds": session_seconds, "distill_seconds": distil_seconds,
        "lookups": lookups,
        "entropy": setup.entropy, "enable_cycle": capture["enable_cycle"],
        "starved": capture["starved"], "origin_cycle": capture["origin_cycle"],
        "epoch_cycle": capture["epoch_cycle"],
        "light_done_cycle": capture["light_done_cycle"],
        "alice_overrun_words": int(alice_written) - data_start // setup.lanes - setup.words,
        "symbol_depth": setup.symbol_depth,
        "alice": alice_counters, "bob": bob_counters,
        "link_stats": {"alice": alice_link, "bob": bob_link},
        "link_bytes": capture["bytes"],
        "transport": transport if isinstance(transport, str) else list(transport),
        "aligned": setup.align,
        "nominal_delays": None if setup.nominal_delays is None else list(setup.nominal_delays),
        "delays": delays, "data_start": data_start,
        "training_symbols": capture["training_words"] * setup.lanes,
        "alignment_cycles": capture["data_cycle"] - capture["enable_cycle"],
        "host_seconds": phases, "records_training": int(before.sum()),
        "timeline": [] if aligner is None else aligner.history,
        "replay": {"enable_cycle": capture["enable_cycle"],
                   "epoch_cycle": capture["epoch_cycle"],
                   "training_words": capture["training_words"],
                   "bob_settings": {name: values.tolist()
                                    for name, values in capture["bob_settings"].items()}},
    }
    if keep_data:
        summary["data"] = {**capture, "records": records, "session_records": session_records,
                           "blocks": blocks, "keys": keys, "setup": setup}
    return summary


# --- the reference level ----------------------------------------------------------------


def alice_model(setup, enable_cycle=None, training_words=0):
    """Alice's light and symbol log of a session from the transmitter model: ``(words,
    log)``, ``words`` ``{carver, im, pm}`` ((words, L * S), from her first symbol) and
    ``log`` ``{index, basis, bit, intensity, valid, dark}`` (the light's symbols).

    CSPRNG sessions: :func:`~timebin.sim.tx.run.run_tx` keyed from ``setup.seed`` as her host
    keys her (the keystream does not depend on when she is enabled), after
    ``training_words`` words of the alternating training pattern (an aligning session's;
    training draws no entropy and its words depend on the symbol index alone, so that the
    key run's words are those of a run from reset, its indices moved on). QRNG sessions:
    the :class:`~timebin.sim.tx.top.TransmitterModel` from reset, enabled from
    ``enable_cycle`` (the RTL run's, :func:`rtl_session` reports it), fed the words
    :class:`~timebin.sim.board.SeededQrng` offers in each cycle
    (:func:`~timebin.sim.board.seeded_qrng_bits`); without training words (the model holds
    its training mode for the whole run)."""
    tx = setup.transmitter_params
    names = ("index", "basis", "bit", "intensity", "valid", "dark")
    training_words = _int_arg("training_words", training_words, 0)
    if setup.entropy == "csprng":
        common = dict(lanes=tx["lanes"], uis_per_symbol=tx["uis_per_symbol"], protocol="3",
                      p_z=setup.p_z, intensities=setup.probabilities, dac_bits=tx["dac_bits"],
                      pm_bits=tx["pm_bits"], settings=setup.driver_settings)
        result, _ = run_tx(symbols=setup.symbols, seed=setup.seed, **common)
        words = {name: result[name] for name in ("carver", "im", "pm")}
        log = {name: result[name] for name in names}
        if training_words:
            training, _ = run_tx(symbols=training_words * setup.lanes, seed=setup.seed,
                                 training=TRAINING_PATTERN, **common)
            words = {name: np.concatenate((training[name], words[name])) for name in words}
            log["index"] = log["index"] + np.uint64(training_words * setup.lanes)
            log = {name: np.concatenate((training[name], log[name])) for name in log}
        return words, log
    if training_words:
        raise ValueError("The reference of a QRNG session with training words is not "
                         "modelled: the transmitter model holds its training mode for the "
                         "whole run")
    if enable_cycle is None:
        raise ValueError("A QRNG session's reference needs enable_cycle (the cycle the RTL "
                         "session enabled Alice), not None")
    enable_cycle = _int_arg("enable_cycle", enable_cycle, 0)
    model = TransmitterModel(lanes=tx["lanes"], uis_per_symbol=tx["uis_per_symbol"],
                             p_z=setup.p_z, intensity_probs=setup.probabilities,
                             dac_bits=tx["dac_bits"], pm_bits=tx["pm_bits"])
    words = setup.words
    n = enable_cycle + 1 + words + Transmitter.latency
    enable = np.zeros(n, bool)
    enable[enable_cycle:] = True
    out = model.run(n, {"source": EntropySelect.QRNG, "protocol": Protocol.THREE_STATE,
                        "training": TrainingMode.DATA, **setup.driver_settings},
                    enable=enable, qrng_valid=np.ones(n, bool),
                    qrng_bits=seeded_qrng_bits(setup.seed, model.entropy.width, n))
    sym = out.symbols
    rows = np.flatnonzero(sym.valid)[:words]
    if len(rows) < words:
        raise ValueError(f"The transmitter model emitted {len(rows)} symbol words, not "
                         f"{words}")
    first = rows[0] + TimeBinDriver.latency             # as run_tx: the symbols' first word
    ser = slice(first, first + words)
    log = {"index": (sym.index[rows][:, None]
                     + np.arange(setup.lanes, dtype=np.uint64)).ravel()}
    for name, field in (("basis", "basis"), ("bit", "bit"), ("intensity", "intensity"),
                        ("valid", "sym_valid"), ("dark", "dark")):
        log[name] = getattr(sym, field)[rows].ravel()
    return {"carver": out.carver[ser], "im": out.im[ser], "pm": out.pm[ser]}, log


def reference_records_of(*, symbols=RTL_DEFAULTS["symbols"], seed=1, channel_seed=None,
                         setup=None, enable_cycle=None, replay=None, **setup_options):
    """The reference level of an RTL session on the same seeds and settings: Alice's words
    from the transmitter model (:func:`alice_model`; ``enable_cycle`` for a QRNG session),
    the same :class:`ChannelFeed` in the same chunks, and Bob's records from the receiver
    model (:func:`~timebin.sim.board.reference_records`) with his host's settings.

    ``replay``: what the RTL run measured (:func:`rtl_session`'s ``replay``): its
    ``enable_cycle``, the ``training_words`` before Alice's key run, and Bob's delays and
    windows as his receiver saw them in each cycle from the epoch's on (``bob_settings``
    and ``epoch_cycle``: the writes of his host's alignment and tracking, at the cycles
    they took effect). An aligning session's reference needs it; without it Bob's settings
    are :meth:`RtlLabSetup.bob_settings` throughout.

    Settings as :func:`lab_setup` (or a ready ``setup``). Returns ``{"records": {field:
    array} (index, phase, channel, cls, alarm, cycle), "bob_words": (N, C, W) uint8,
    "alice_words": {carver, im, pm}, "alice_log": {index, basis, bit, intensity, valid, dark},
    "counters": the channel's, "setup"}``."""
    if setup is None:
        setup = lab_setup(symbols=symbols, seed=seed, channel_seed=channel_seed,
                          **setup_options)
    elif not isinstance(setup, RtlLabSetup):
        raise ValueError(f"setup must be an RtlLabSetup (lab_setup()), not {setup!r}")
    elif setup_options:
        raise ValueError(f"Give the settings in setup or as options, not both "
                         f"({', '.join(sorted(setup_options))})")
    training_words = 0
    if replay is not None:
        enable_cycle = replay.get("enable_cycle", enable_cycle)
        training_words = replay.get("training_words", 0)
    elif setup.align:
        raise ValueError("An aligning session's reference needs its replay (rtl_session's "
                         "'replay': Bob's settings as his host wrote them), not None")
    light, log = alice_model(setup, enable_cycle, training_words)
    feed = ChannelFeed(setup)
    chunk = setup.chunk_cycles
    for lo in range(0, len(light["carver"]), chunk):
        feed.send(light["carver"][lo:lo + chunk], light["im"][lo:lo + chunk],
                  light["pm"][lo:lo + chunk])
    feed.end()
    bob_words = feed.bob_words()
    settings = setup.bob_settings()
    if replay is not None and replay.get("bob_settings") is not None:
        params = setup.receiver_params
        n = 1 + len(bob_words) + ReceiverModel.latency \
            + params.get("fifo_depth", 16) * params["channels"] + 1
        settings["delay"], settings["windows"] = _settings_from(
            replay["bob_settings"], replay["epoch_cycle"], n)
    records = reference_records(setup.receiver_params, bob_words, 0, **settings)
    return {"records": records, "bob_words": bob_words, "alice_words": light,
            "alice_log": log,
            "counters": {k: v.tolist() for k, v in feed.channel.counters.items()},
            "setup": setup}


# --- benchmark --------------------------------------------------------------------------


def bench_rtl_lab(*, symbols=RTL_DEFAULTS["symbols"], seed=1, **session_options):
    """Speed of an RTL session (``timebin bench lab``): ``cycles`` simulated, ``seconds`` of
    the simulation loop, ``cycles_per_s`` (both boards, the channel and both links, in one
    simulator), ``symbols_per_s`` (symbols of light per second of the whole session: start,
    configuration, the light, distillation), ``session_seconds``, and what the session
    gave (``records``, ``sifted_z``, ``sifted_x``, ``status``, ``starved``). JSON-able."""
    summary = rtl_session(symbols=symbols, seed=seed, **session_options)
    figures = {name: summary[name] for name in (
        "symbols", "cycles", "seconds", "cycles_per_s", "symbols_per_s", "session_seconds",
        "distill_seconds", "lookups", "starved", "records", "sifted_z", "sifted_x", "status",
        "key_bits_total", "symbol_depth", "detector", "distance_km", "transport")}
    figures["records_per_s"] = sum(summary["records"]) / summary["session_seconds"]
    figures["link_frames"] = {role: {"in": summary["link_stats"][role]["board"]["link_frames_in"],
                                     "out": summary["link_stats"][role]["board"][
                                         "link_frames_out"]}
                              for role in ("alice", "bob")}
    return {"bench": "lab_rtl", "seed": seed, **figures,
            "note": "Amaranth simulation of both boards in a child process; the hosts and the "
                    "distillation in the parent"}
