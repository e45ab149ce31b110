"""Bit-exact, cycle-exact reference model of :class:`timebin.gateware.emulator.ChannelEmulator`,
seeded stimulus for it, and the packing of its ports for the Amaranth and cocotb testbenches.

The model is one numba loop over cycles that keeps what the gateware keeps: the xoshiro128++
generators, the register of each lane's decoded symbol, the clicks reaching into the next
words; the delay line is then a shift of the click stream (the gateware's memory and barrel
shift give exactly that, :meth:`ChannelEmulatorModel.run`). The loop also lists every click it
draws (``events``), for statistics.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ..gateware.emulator import ChannelEmulator, EmulatorGeometry, seeded_state
from ..gateware.regmap import EMULATOR_LEVELS, bits_for, emulator_resets
from .amaranth_helpers import run_per_cycle
from .rx.rtl import port_arrays, port_ints
from .tx.driver import TimeBinDriverModel
from .words import bits_to_ints, ints_to_bits, pack_field

__all__ = ["SETTING_NAMES", "SLOTS", "ChannelEmulatorOutput", "ChannelEmulatorModel",
           "xoshiro_words", "emulator_stimulus", "pack_serializer_words", "OUTPUT_PORTS",
           "emulator_inputs", "decode_emulator_outputs", "run_emulator", "compare_emulator"]

#: The settings of the emulator, named as its ports.
SETTING_NAMES = ("seed", "delay", "jitter", "thresholds", "p_click", "p_z", "p_x_error",
                 "p_dark")
#: ``slot`` of a photon click in ``events``: the Z detector; the X detector's early side
#: slot, middle slot, late side slot (X states); the X detector from a Z state's own bin or
#: one bin later.
SLOTS = ("z", "x_early", "x_middle", "x_late", "x_z_same", "x_z_later")
_M32 = np.uint64(0xFFFF_FFFF)
_TOP32 = (1 << 32) - 1
_TOP64 = (1 << 64) - 1


class ChannelEmulatorOutput(NamedTuple):
    """What the emulator shows in each of ``N`` cycles (before its clock edge), and what it
    drew.

    ``samples`` (N, C, W) uint8, UI 0 first; ``symbols`` (N,) uint64; ``clicks``, ``lost``
    (N, C) uint32; ``unseen`` (N,) uint32; ``settings_error`` (N,) bool.

    ``photons``: ``{field: (K,) array}`` of every photon click drawn, in order of cycle and
    lane: ``cycle`` (of the word on ``ser``), ``lane``, ``level``, ``lit_e``, ``lit_l``,
    ``detector`` (0 Z, 1 X+, 2 X-), ``slot`` (index into :data:`SLOTS`), ``offset`` (UI in
    the symbol, before jitter), ``jitter`` (UIs), ``ui`` (the UI of the click stream on
    ``samples`` it was placed at, ``-1``: unseen). ``darks``: ``cycle`` (of ``ser``, as if the
    dark click were light of that word), ``detector``, ``ui``. ``applied``: the settings in
    use (refused values replaced by their reset).
    """

    samples: np.ndarray
    symbols: np.ndarray
    clicks: np.ndarray
    lost: np.ndarray
    unseen: np.ndarray
    settings_error: np.ndarray
    photons: dict
    darks: dict
    applied: dict


@njit(cache=True)
def _xoshiro(state, n, reseed, seeded, out):
    """Outputs of the generators (G, 4) uint64 ``state`` over ``n`` cycles into ``out``
    (n, G); ``reseed[c]`` loads ``seeded`` for cycle ``c + 1``."""
    G = state.shape[0]
    m = np.uint64(0xFFFF_FFFF)
    for c in range(n):
        for g in range(G):
            s0, s1, s2, s3 = state[g, 0], state[g, 1], state[g, 2], state[g, 3]
            x = (s0 + s3) & m
            out[c, g] = ((((x << np.uint64(7)) | (x >> np.uint64(25))) & m) + s0) & m
            if reseed[c]:
                for i in range(4):
                    state[g, i] = seeded[g, i]
            else:
                t = (s1 << np.uint64(9)) & m
                s2 ^= s0
                s3 ^= s1
                s1 ^= s2
                s0 ^= s3
                s2 ^= t
                s3 = ((s3 << np.uint64(11)) | (s3 >> np.uint64(21))) & m
                state[g, 0], state[g, 1], state[g, 2], state[g, 3] = s0, s1, s2, s3


def xoshiro_words(geometry, n, seed_reset=0, seed=0, reseed=None):
    """The emulator's random words over ``n`` cycles: (n, generators) uint64 of 32-bit
    outputs, from the state seeded with ``seed_reset`` at reset; ``reseed`` (n,) bool loads
    the state seeded with ``seed`` for the next cycle."""
    constants = geometry.constants
    state = np.array([seeded_state(c, seed_reset) for c in constants], np.uint64)
    seeded = np.array([seeded_state(c, seed) for c in constants], np.uint64)
    reseed = np.zeros(n, np.bool_) if reseed is None else np.asarray(reseed, np.bool_)
    out = np.zeros((n, len(constants)), np.uint64)
    _xoshiro(state, n, reseed, seeded, out)
    return out


@njit(cache=True)
def _bits(words, offset, width):
    lo = offset >> 5
    sh = offset & 31
    v = words[lo] >> np.uint64(sh)
    if sh + width > 32:
        v |= words[lo + 1] << np.uint64(32 - sh)
    return np.int64(v & ((np.uint64(1) << np.uint64(width)) - np.uint64(1)))


@njit(cache=True)
def _popcount(x):
    n = 0
    while x:
        n += x & 1
        x >>= 1
    return n


@njit(cache=True)
def _run(carver, im, pm, valid, random, L, S, C, D, P, J, pm_bits, margin, E, lane_bits,
         fields, dark_base, dark_bits, thresholds, p_click, p_z, p_x_error, p_dark, jitter,
         a_out, lost_out, unseen_out, symbols_inc, photons, darks):
    n = carver.shape[0]
    k = S // 2
    W = L * S
    # Stage 1 registers: each lane's symbol (from the word of the cycle before).
    lit_e = np.zeros(L, np.bool_)
    lit_l = np.zeros(L, np.bool_)
    e0 = np.zeros(L, np.int64)
    l0 = np.zeros(L, np.int64)
    level = np.zeros(L, np.int64)
    minus = np.zeros(L, np.bool_)
    in_valid = False
    # Stage 2 registers: each lane's click (its detector, -1: none) and place; dark clicks.
    detector_of = np.full(L, -1, np.int64)
    rel_of = np.zeros(L, np.int64)
    unseen_of = np.zeros(L, np.bool_)
    dark_of = np.zeros(D, np.bool_)
    position_of = np.zeros(D, np.int64)
    # Stage 3 registers: the placed words, the clicks reaching on, the lost and unseen counts.
    a = np.zeros((D, W), np.uint8)
    carry = np.zeros((D, E), np.uint8)
    lost = np.zeros(D, np.int64)
    unseen = 0
    spread = np.zeros((D, W + E), np.uint8)
    placed = np.zeros(D, np.int64)
    mask = (1 << jitter) - 1
    fc, fb, fe, fs, fp, fja, fjb = fields
    words = np.zeros(random.shape[1], np.uint64)
    n_photons = 0
    n_darks = 0
    for c in range(n):
        a_out[c] = a
        lost_out[c, :] = lost
        unseen_out[c] = unseen
        if in_valid:
            symbols_inc[c] = L
        # The draws of cycle c: the generators' outputs of cycle c - 1 (registered).
        if c:
            words[:] = random[c - 1]

        # Stage 3: the clicks of the stage-2 registers placed, with those reaching on.
        spread[:] = 0
        placed[:] = 0
        for lane in range(L):
            d = detector_of[lane]
            if d >= 0:
                spread[d, lane * S + rel_of[lane]] = 1
                placed[d] += 1
        for d in range(D):
            if dark_of[d]:
                spread[d, position_of[d]] = 1
                placed[d] += 1
        unseen = 0
        for lane in range(L):
            unseen += unseen_of[lane]
        for d in range(D):
            before = 0
            for i in range(E):
                before += carry[d, i]
                spread[d, i] |= carry[d, i]
            after = 0
            for i in range(W + E):
                after += spread[d, i]
            lost[d] = placed[d] + before - after
            a[d, :] = spread[d, :W]
            carry[d, :] = spread[d, W:]

        # Stage 2: clicks of the symbols in the stage-1 registers (the word of cycle c - 1).
        for lane in range(L):
            detector_of[lane] = -1
            unseen_of[lane] = False
            base = lane * lane_bits
            if not (lit_e[lane] or lit_l[lane]):
                continue
            if _bits(words, base + fc, P) >= p_click[level[lane]]:
                continue
            both = lit_e[lane] and lit_l[lane]
            e = e0[lane]
            late = l0[lane] + k
            first = e if lit_e[lane] else late
            r_slot = _bits(words, base + fs, 2)
            if _bits(words, base + fb, P) < p_z:
                detector = 0
                slot = 0
                offset = (late if r_slot & 1 else e) if both else first
            elif both:
                if r_slot == 0:
                    offset, slot = e, 1
                    port = _bits(words, base + fp, 1)
                elif r_slot == 3:
                    offset, slot = late + k, 3
                    port = _bits(words, base + fp, 1)
                else:
                    offset, slot = e + k, 2
                    port = (1 if minus[lane] else 0) ^ (
                        1 if _bits(words, base + fe, P) < p_x_error else 0)
                detector = 1 + port
            else:
                offset = first + (k if r_slot & 1 else 0)
                slot = 5 if r_slot & 1 else 4
                detector = 1 + _bits(words, base + fp, 1)
            shift = 0
            if J:
                shift = (_popcount(_bits(words, base + fja, J) & mask)
                         - _popcount(_bits(words, base + fjb, J) & mask))
            rel = offset + margin + shift
            ui = -1
            if detector < D:
                detector_of[lane] = detector
                rel_of[lane] = rel
                ui = (c + 2) * W + lane * S + rel
            else:
                unseen_of[lane] = True
            if photons.shape[1]:
                row = photons[:, n_photons]
                row[0], row[1], row[2] = c - 1, lane, level[lane]
                row[3] = 1 if lit_e[lane] else 0
                row[4] = 1 if lit_l[lane] else 0
                row[5] = detector
                row[6], row[7], row[8], row[9] = slot, offset, shift, ui
            n_photons += 1
        for d in range(D):
            base = dark_base + d * dark_bits
            dark_of[d] = _bits(words, base, P) < p_dark
            position_of[d] = (_bits(words, base + P, dark_bits - P) * W) >> (dark_bits - P)
            if dark_of[d]:
                if darks.shape[1]:
                    darks[0, n_darks], darks[1, n_darks] = c - 1, d
                    darks[2, n_darks] = (c + 2) * W + position_of[d]
                n_darks += 1

        # Stage 1: the word on ``ser`` in cycle c.
        in_valid = valid[c]
        for lane in range(L):
            lo = lane * S
            le, ll = False, False
            pe = pl = 0
            ce = cl = 0
            ph_e = ph_l = 0
            for u in range(k - 1, -1, -1):
                if carver[c, lo + u]:
                    le, pe, ce, ph_e = True, u, im[c, lo + u], pm[c, lo + u]
                if carver[c, lo + k + u]:
                    ll, pl, cl, ph_l = True, u, im[c, lo + k + u], pm[c, lo + k + u]
            if le and ll:
                code = max(ce, cl)
            elif le:
                code = ce
            else:
                code = cl
            level[lane] = ((code >= thresholds[0]) + (code >= thresholds[1])
                           + (code >= thresholds[2]))
            d = (ph_l - ph_e) % (1 << pm_bits)
            quadrant = (d << 2) >> pm_bits
            minus[lane] = quadrant == 1 or quadrant == 2
            lit_e[lane] = le and valid[c]
            lit_l[lane] = ll and valid[c]
            e0[lane] = pe
            l0[lane] = pl
    return n_photons, n_darks


class ChannelEmulatorModel:
    """Reference model of :class:`~timebin.gateware.emulator.ChannelEmulator`.

    Takes the same keyword parameters with the same checks. :meth:`run` reproduces the
    gateware's outputs cycle for cycle from reset (cycle 0 is the first cycle after reset),
    with the settings held from reset.
    """

    #: Cycles from a word on ``ser`` to its clicks on ``samples`` at zero delay.
    latency = ChannelEmulator.latency

    def __init__(self, *, lanes, uis_per_symbol, channels=3, dac_bits=8, pm_bits=1,
                 max_delay=None, max_jitter=3, prob_bits=16):
        self.geometry = g = EmulatorGeometry.of(
            lanes=lanes, uis_per_symbol=uis_per_symbol, channels=channels, dac_bits=dac_bits,
            pm_bits=pm_bits, max_delay=max_delay, max_jitter=max_jitter, prob_bits=prob_bits)
        self.params = g.params
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.uis_per_word = g.uis_per_word
        self.channels = channels
        self.max_delay = g.max_delay
        #: UIs from ``ser`` to ``samples`` at zero delay and jitter (as the gateware's).
        self.base_delay = self.latency * g.uis_per_word + g.margin

    def default_settings(self):
        """The settings after reset (the ``init`` of the ports), as a dict."""
        return emulator_resets(self.geometry.dac_bits, self.geometry.prob_bits)

    def applied_settings(self, settings=None):
        """The settings the emulator uses when its ports hold ``settings`` from reset on.

        ``settings`` maps port names to values; missing names keep their reset values.
        Returns ``(applied, error)``: refused values (see the gateware) replaced by their
        resets, and whether ``settings_error`` is high. Values that do not fit their port raise
        ``ValueError``; unknown names ``KeyError``."""
        g = self.geometry
        applied = self.default_settings()
        reset = dict(applied)
        for name, value in (settings or {}).items():
            if name not in applied:
                raise KeyError(f"Unknown emulator setting {name!r}; known are {SETTING_NAMES}")
            applied[name] = value
        P1 = g.prob_bits + 1
        widths = {"seed": 64, "delay": bits_for(g.max_delay), "jitter": bits_for(g.max_jitter),
                  "p_z": P1, "p_x_error": P1, "p_dark": P1}
        for name, bits in widths.items():
            value = applied[name]
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                    or not 0 <= value < (1 << bits)):
                raise ValueError(f"Setting {name} must be an integer in 0..{(1 << bits) - 1}, "
                                 f"not {value!r}")
            applied[name] = int(value)
        for name, count, bits in (("thresholds", EMULATOR_LEVELS - 1, g.dac_bits),
                                  ("p_click", EMULATOR_LEVELS, P1)):
            table = np.asarray(applied[name])
            if (table.shape != (count,) or not np.issubdtype(table.dtype, np.integer)
                    or (table < 0).any() or (table >= (1 << bits)).any()):
                raise ValueError(f"Setting {name} must be {count} integers in "
                                 f"0..{(1 << bits) - 1}, not {applied[name]!r}")
            applied[name] = [int(v) for v in table]
        error = False
        one = 1 << g.prob_bits
        th = applied["thresholds"]
        if not th[0] <= th[1] <= th[2]:
            error, applied["thresholds"] = True, reset["thresholds"]
        for i, p in enumerate(applied["p_click"]):
            if p > one:
                error, applied["p_click"][i] = True, reset["p_click"][i]
        for name in ("p_z", "p_x_error", "p_dark"):
            if applied[name] > one:
                error, applied[name] = True, reset[name]
        for name, limit in (("delay", g.max_delay), ("jitter", g.max_jitter)):
            if applied[name] > limit:
                error, applied[name] = True, reset[name]
        return applied, error

    def run(self, carver, im, pm, ser_valid=True, settings=None, reseed=False, events=True):
        """Outputs of the gateware for ``N`` cycles from reset, as a
        :class:`ChannelEmulatorOutput`.

        ``carver``, ``im``, ``pm`` (N, L*S): the serializer word of each cycle, UI 0 first (as
        :class:`~timebin.sim.tx.driver.TimeBinDriverOutput` gives them); ``ser_valid`` and
        ``reseed``: N values or one for every cycle. ``settings`` (see
        :meth:`applied_settings`) hold from reset; ``seed`` is loaded at each ``reseed`` (the
        generators start from the reset value of ``seed``, 0). ``events``: list the clicks
        drawn (``photons``, ``darks``).
        """
        g = self.geometry
        W, L, C, D = g.uis_per_word, g.lanes, g.channels, g.detectors
        carver = np.asarray(carver)
        if carver.ndim != 2 or carver.shape[1] != W:
            raise ValueError(f"carver must have shape (N, {W}), not {carver.shape}")
        n = len(carver)
        arrays = {}
        for name, array, bits in (("carver", carver, 1), ("im", im, g.dac_bits),
                                  ("pm", pm, g.pm_bits)):
            array = np.asarray(array)
            if array.shape != (n, W):
                raise ValueError(f"{name} must have shape {(n, W)}, not {array.shape}")
            if array.size and (array.min() < 0 or array.max() >= 1 << bits):
                raise ValueError(f"{name} must hold integers in 0..{(1 << bits) - 1}, not "
                                 f"{array.min()}..{array.max()}")
            arrays[name] = np.ascontiguousarray(array, np.int64)
        valid = _per_cycle("ser_valid", ser_valid, n)
        reseed = _per_cycle("reseed", reseed, n)
        applied, error = self.applied_settings(settings)

        random = xoshiro_words(g, n, self.default_settings()["seed"], applied["seed"], reseed)
        a_out = np.zeros((n, D, W), np.uint8)
        lost_shown = np.zeros((n, D), np.int64)
        unseen_shown = np.zeros(n, np.int64)
        symbols_inc = np.zeros(n, np.int64)
        size = n * L if events else 0
        photons = np.zeros((10, size), np.int64)
        darks = np.zeros((3, n * D if events else 0), np.int64)
        fields = tuple(g.lane_field(name)[0] for name in (
            "r_click", "r_basis", "r_error", "r_slot", "r_port", "r_jitter_a", "r_jitter_b"))
        n_photons, n_darks = _run(
            arrays["carver"], arrays["im"], arrays["pm"], valid, random, L, g.uis_per_symbol,
            C, D, g.prob_bits, g.max_jitter, g.pm_bits, g.margin, g.extension, g.lane_bits,
            fields, L * g.lane_bits, g.dark_bits, np.array(applied["thresholds"], np.int64),
            np.array(applied["p_click"], np.int64), applied["p_z"], applied["p_x_error"],
            applied["p_dark"], applied["jitter"], a_out, lost_shown, unseen_shown, symbols_inc,
            photons, darks)

        # The delay line: UI n of the samples is UI n - 2W - delay of the stage-2 words.
        shift = 2 * W + applied["delay"]
        stream = a_out.transpose(1, 0, 2).reshape(D, n * W)
        delayed = np.zeros_like(stream)
        if shift < n * W:
            delayed[:, shift:] = stream[:, :n * W - shift]
        samples = np.zeros((n, C, W), np.uint8)
        samples[:, :D, :] = delayed.reshape(D, n, W).transpose(1, 0, 2)

        clicks = np.zeros((n, C), np.int64)
        clicks[1:] = np.cumsum(samples.sum(axis=2, dtype=np.int64), axis=0)[:-1]
        lost = np.zeros((n, C), np.int64)
        lost[1:, :D] = np.cumsum(lost_shown, axis=0)[:-1]
        unseen = np.concatenate(([0], np.cumsum(unseen_shown)[:-1]))
        symbols = np.concatenate(([0], np.cumsum(symbols_inc)[:-1])).astype(np.uint64)

        photon_fields = ("cycle", "lane", "level", "lit_e", "lit_l", "detector", "slot",
                         "offset", "jitter", "ui")
        photon_events = {name: photons[i, :n_photons] if events else np.zeros(0, np.int64)
                         for i, name in enumerate(photon_fields)}
        # Where a placed click shows on ``samples`` (the stream's UI there), or -1.
        ui = photon_events["ui"]
        photon_events["ui"] = np.where(ui >= 0, ui + shift, -1)
        dark_events = {name: darks[i, :n_darks] if events else np.zeros(0, np.int64)
                       for i, name in enumerate(("cycle", "detector", "ui"))}
        dark_events["ui"] = dark_events["ui"] + shift
        return ChannelEmulatorOutput(
            samples=samples, symbols=np.minimum(symbols, np.uint64(_TOP64)),
            clicks=np.minimum(clicks, _TOP32).astype(np.uint32),
            lost=np.minimum(lost, _TOP32).astype(np.uint32),
            unseen=np.minimum(unseen, _TOP32).astype(np.uint32),
            settings_error=np.full(n, error), photons=photon_events, darks=dark_events,
            applied=applied)


def _per_cycle(name, value, n):
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.full(n, array)
    if array.shape != (n,):
        raise ValueError(f"{name} must be a scalar or {n} values, not of shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{name} must hold 0 or 1, not {array.min()}..{array.max()}")
    return array.astype(np.bool_)


# --- Seeded stimulus ---------------------------------------------------------------------------

def emulator_stimulus(params, n, seed, *, raw=True, reseeds=1):
    """Keyword arguments ``carver``, ``im``, ``pm``, ``ser_valid``, ``reseed`` of
    :meth:`ChannelEmulatorModel.run` for ``n`` cycles of seeded traffic for an emulator built
    with ``params``.

    Alice's driver (:class:`~timebin.sim.tx.driver.TimeBinDriverModel`, its default levels,
    pulses of random width and offset) sends random symbols (all four states and intensity
    classes, a few dark ones); with ``raw``, three stretches of random words (every pattern of
    carver, IM and PM codes) replace its output; ``ser_valid`` is low in the first cycle and
    in a short stretch; ``reseed`` is pulsed ``reseeds`` times."""
    g = EmulatorGeometry.of(**params)
    L, S, W, k = g.lanes, g.uis_per_symbol, g.uis_per_word, g.uis_per_bin
    rng = np.random.default_rng(seed)
    driver = TimeBinDriverModel(L, S, g.dac_bits, g.pm_bits, max_delay=0)
    width = int(rng.integers(1, k + 1))
    shape = (n, L)
    out = driver.run(np.ones(n, bool), rng.integers(0, 2, shape), rng.integers(0, 2, shape),
                     rng.integers(0, 4, shape), (rng.random(shape) < 0.05).astype(int),
                     settings={"pulse_width": width,
                               "pulse_offset": int(rng.integers(0, k - width + 1))})
    carver, im, pm = (np.array(a, np.int64) for a in (out.carver, out.im, out.pm))
    valid = out.valid.copy()
    if raw:
        for _ in range(3):
            start = int(rng.integers(0, max(n - 40, 1)))
            end = min(n, start + int(rng.integers(10, 40)))
            m = end - start
            carver[start:end] = rng.random((m, W)) < 0.4
            im[start:end] = rng.integers(0, 1 << g.dac_bits, (m, W))
            pm[start:end] = rng.integers(0, 1 << g.pm_bits, (m, W))
    start = int(rng.integers(0, max(n - 10, 1)))
    valid[start:start + int(rng.integers(2, 10))] = False
    reseed = np.zeros(n, bool)
    if reseeds:
        reseed[rng.integers(1, n, reseeds)] = True
    return dict(carver=carver, im=im, pm=pm, ser_valid=valid, reseed=reseed)


# --- Ports of the gateware -------------------------------------------------------------------

#: Output ports of the emulator sampled every cycle.
OUTPUT_PORTS = ("samples", "symbols", "clicks", "lost", "unseen", "settings_error")


def pack_serializer_words(carver, im, pm, dac_bits, pm_bits):
    """``SerializerWord`` payload ints from (N, W) arrays: ``carver`` (1 bit per UI), ``im``
    (``dac_bits``), ``pm`` (``pm_bits``), in that order from bit 0 (inverse of
    :func:`~timebin.sim.words.unpack_serializer_words`)."""
    carver = np.asarray(carver)
    n, uis = carver.shape
    bits = np.zeros((n, uis * (1 + dac_bits + pm_bits)), np.uint8)
    bits[:, :uis] = carver
    pack_field(bits, uis, im, dac_bits)
    pack_field(bits, uis * (1 + dac_bits), pm, pm_bits)
    return bits_to_ints(bits)


def emulator_inputs(dut, stimulus, settings=None):
    """``{port name: N ints}`` of every input of the emulator ``dut`` for the keyword
    arguments ``stimulus`` of :meth:`ChannelEmulatorModel.run` and the ``settings`` held
    from reset (ports not given hold their reset values)."""
    g = dut.geometry
    n = len(stimulus["carver"])
    ints = {"ser": pack_serializer_words(stimulus["carver"], stimulus["im"], stimulus["pm"],
                                         g.dac_bits, g.pm_bits),
            "ser_valid": [int(x) for x in np.broadcast_to(
                np.asarray(stimulus.get("ser_valid", True), bool), (n,))],
            "reseed": [int(x) for x in np.broadcast_to(
                np.asarray(stimulus.get("reseed", False), bool), (n,))]}
    held = {**emulator_resets(g.dac_bits, g.prob_bits), **(settings or {})}
    for name, value in held.items():
        ints[name] = port_ints(getattr(dut, name), value, n)
    return ints


def decode_emulator_outputs(dut, got):
    """Per-cycle ints of :data:`OUTPUT_PORTS` -> arrays named as the fields of
    :class:`ChannelEmulatorOutput`."""
    out = {name: port_arrays(getattr(dut, name), got[name]) for name in OUTPUT_PORTS
           if name != "samples"}
    C, W = dut.channels, dut.uis_per_word
    out["samples"] = ints_to_bits(got["samples"], C * W).reshape(len(got["samples"]), C, W)
    out["settings_error"] = out["settings_error"].astype(bool)
    return out


def run_emulator(dut, inputs):
    """Simulate the emulator ``dut`` in Amaranth for the cycles of ``inputs`` (from
    :func:`emulator_inputs`) from reset; returns :func:`decode_emulator_outputs`."""
    n = len(inputs["ser"])
    ports = [(getattr(dut, name), values) for name, values in inputs.items()]
    got = run_per_cycle(dut, ports, {name: getattr(dut, name) for name in OUTPUT_PORTS}, n)
    return decode_emulator_outputs(dut, got)


def compare_emulator(rtl, model):
    """Fail on the first cycle where the gateware's outputs (:func:`decode_emulator_outputs`)
    differ from the model's, naming the output, the cycle and both values."""
    for name in OUTPUT_PORTS:
        got = np.asarray(rtl[name]).astype(np.uint64)
        want = np.asarray(getattr(model, name)).astype(np.uint64)
        assert got.shape == want.shape, f"{name}: shape {got.shape}, model {want.shape}"
        diff = np.flatnonzero((got != want).reshape(len(got), -1).any(axis=1))
        assert not diff.size, (f"{name} differs first in cycle {diff[0]}: gateware "
                               f"{got[diff[0]].tolist()}, model {want[diff[0]].tolist()}")

