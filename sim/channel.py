"""Physical channel model of the virtual lab: Alice's light, the fibre, Bob's optics and his
single-photon detectors, from the driver's output (or Alice's symbol log) to detector clicks
and the deserializer words Bob's gateware consumes.

Ref: DESIGN.md section 2 (time-bin states, Bob's passive basis choice, the one-bin
interferometer, gated InGaAs/InP SPADs and free-running SNSPDs); Boaron et al., PRL 121,
190502 (2018) (a 2.5 GHz 3-state time-bin link); Yuan et al., APL 91, 041114 (2007)
(GHz-gated InGaAs: gates, afterpulsing).

Model
-----
Time is the arrival axis of Alice's clock (ps); Alice's UI ``n`` (``n = 0`` is UI 0 of the
first serializer word, or of the first symbol, given to a :class:`Channel`) is emitted at
``(n + 1/2) * ui_ps``: each UI carries one sub-pulse centred in it.

* **Alice** (:class:`Calibration`). The light of a UI is a weak coherent pulse of mean photon
  number ``im_mu()[im code] * (1 if carver else carver_leak)`` and optical phase
  ``2 pi * pm code / 2**pm_bits``. The IM is a Mach-Zehnder (``sin**2`` transfer, finite
  extinction) unless an explicit table is given. UIs of one symbol period (Alice's frame:
  UIs ``s * S .. s * S + S - 1``) are mutually coherent; different symbols have independent
  phases (a phase-randomised, e.g. gain-switched, laser), so their light adds incoherently.
* **Fibre**: transmittance ``10**(-(loss_db_per_km * length_km + bob_loss_db) / 10)``; delay
  ``length_km * group_index / c`` plus a slow drift (linear in time, or a sinusoidal
  temperature cycle whose largest slope is the given rate) proportional to the length.
* **Clocks**: Bob's clock runs ``1 + clock_offset_ppm * 1e-6`` times faster than Alice's;
  Bob's time 0 is the arrival-axis time ``bob_start_ps`` (by default chosen so that the
  light of the Z detector lands in the middle of Bob's UIs, right after the fibre delay).
  ``time_acceleration`` multiplies every slow process (fibre drift, clock offset,
  interferometer phase drift) so that hours of drift fit in a short run.
* **Bob**: a passive beam splitter sends each photon to the Z arm with ``bob_p_z``. The Z
  detector (channel 0) sees the pulses as sent. The X arm is an unbalanced interferometer
  (delay one time bin of ``k = S/2`` UIs, 50/50 couplers) with detectors at its ``+`` port
  (channel 1) and, with ``x_ports = 2``, its ``-`` port (channel 2). Output UI ``u`` of a
  port holds ``(m[u] + m[u-k] +- 2 V sqrt(m[u] m[u-k]) cos(phi[u] - phi[u-k] - theta)) / 4``
  (``V`` the visibility, ``theta`` the interferometer phase with its drift, the interference
  term only between UIs of one symbol): an X state gives a short-early side slot (phase
  ``0 .. k-1``), the middle slot (phase ``k .. S-1``, the interference) and a long-late side
  slot (phase ``0 .. k-1`` of the next symbol), as :func:`~timebin.gateware.rx.binning.x_windows`
  expects. Channel roles: :func:`channel_roles` (``gateware.sifting`` numbers).
* **Detectors** (all alike): efficiency ``efficiency``; each detected photon of a pulse is a
  candidate avalanche; one pulse gives at most one click (photon-number blind). Gated
  (``detector="gated"``): gates of ``gate_width_ps`` every ``gate_period_ps`` (default one
  time bin), locked to the arriving light (the gate clock follows the fibre drift, as a
  recovered clock would) and offset by ``gate_misalignment_ps``; a photon outside a gate is
  not detected; dark counts occur in a gate with probability ``dark_per_gate``, at a uniform
  time within it. Free-running (``"free"``): dark counts are a Poisson process of
  ``dark_rate_hz``. After a click the detector is dead for ``dead_time_ps`` (non-paralysable:
  what arrives then is lost); each click is followed, with probability
  ``afterpulse_probability``, by an afterpulse ``dead_time_ps + Exp(afterpulse_tau_ps)``
  later (gated: in the first gate that is open then), which is itself a click (afterpulses
  cascade). A photon click's time is its arrival plus a Gaussian timing jitter of standard
  deviation ``jitter_ps`` (cut at 8 sigma), plus the channel's ``latency_ps``.

Speed: only detections are generated, never every empty slot. The symbol fast path
(:meth:`Channel.send_symbols`) draws ``Poisson(n * Lambda_max)`` candidate photons at uniform
symbols and keeps each with ``Lambda(symbol) / Lambda_max`` (exact Poisson thinning), so its
cost is independent of the symbol count at low detection probability; dark counts are drawn
per interval. The word path (:meth:`Channel.send_words`) places ``Poisson(sum lambda)``
photons by the cumulative sum of the per-UI intensities. The detector's sequential part (dead
time, afterpulses) is one numba loop over the clicks. For correct driver settings both paths
give the same statistics; the word path also shows what a wrong delay or level does.

Every random draw comes from the ``numpy.random.Generator`` seeded by the caller (numba's
own generator is reseeded from it for every call of the detector loop).
"""

import math
import time
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
from numba import njit

from ..gateware.rx.phy import MAX_OVERSAMPLING
from ..gateware.sifting import ROLE_X_MINUS, ROLE_X_PLUS, ROLE_Z
from ..gateware.tx.driver import IM_LEVELS, im_level_index
from .tx.driver import TimeBinDriverModel

__all__ = ["SPEED_OF_LIGHT_M_PER_S", "DETECTION_KINDS", "KIND_PHOTON", "KIND_DARK",
           "KIND_AFTERPULSE", "DETECTION_FIELDS", "Calibration", "ChannelParams",
           "gated_ingaas", "snspd", "calibrated_im_levels", "symbol_mean_photons",
           "channel_roles", "expected_delays", "receiver_settings", "link_figures", "Channel",
           "detections_to_words", "WordStream", "classify_detections", "simulate_symbols",
           "simulate_driver", "simulate_words", "bench_channel"]

SPEED_OF_LIGHT_M_PER_S = 299_792_458.0
#: ``kind`` of a detection: a photon of Alice's light, a dark count, an afterpulse.
DETECTION_KINDS = ("photon", "dark", "afterpulse")
KIND_PHOTON, KIND_DARK, KIND_AFTERPULSE = range(3)
#: Fields of a detections dict (see :meth:`Channel.send_symbols`).
DETECTION_FIELDS = ("channel", "time_ps", "ui", "sample", "kind", "symbol", "slot")

_JITTER_CUT = 8.0                  # jitter draws are cut at this many standard deviations
_PS_PER_HOUR = 3.6e15
_CATEGORIES = 17                   # 4 intensity classes x 4 states, and dark symbols


# --- checks ------------------------------------------------------------------------------


def _real(name, value, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """``value`` as a float, or ``ValueError`` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, not {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if lo is not None:
        bad |= value <= lo if lo_open else value < lo
    if hi is not None:
        bad |= value >= hi if hi_open else value > hi
    if bad:
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        bounds = " and ".join(s for s in (lo_s, hi_s) if s) or "finite"
        raise ValueError(f"{name} must be {bounds}, not {value!r}")
    return value


def _integer(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an integer in {lo}..{'' if hi is None else hi}, "
                         f"not {value!r}")
    return int(value)


# --- Alice's calibration -----------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Alice's modulators: what each driver code does to the light.

    Attributes
    ----------
    mu_peak : float
        Mean photon number per UI (at Alice's output, carver open) at the intensity
        modulator's peak transmission.
    im_code_peak : int or None
        IM code of peak transmission (the half-wave voltage); ``None``: full scale
        ``2**dac_bits - 1``. Transmission ``eps + (1 - eps) sin**2(pi/2 * code / peak)``.
    im_extinction_db : float
        IM extinction ratio (dB): ``eps = 10**(-im_extinction_db / 10)``.
    carver_extinction_db : float
        Carver extinction ratio (dB): a UI with carver 0 passes ``10**(-x/10)`` of its light.
    dac_bits, pm_bits : int
        Widths of the IM and PM codes (as the driver's ``dac_bits``, ``pm_bits``).
    im_table : tuple of float or None
        Explicit mean photon number per UI of every IM code (``2**dac_bits`` values); replaces
        the Mach-Zehnder transfer.

    The PM code ``c`` gives the phase ``2 pi c / 2**pm_bits`` (radians).
    """

    mu_peak: float = 0.6
    im_code_peak: int | None = None
    im_extinction_db: float = 25.0
    carver_extinction_db: float = 30.0
    dac_bits: int = 8
    pm_bits: int = 1
    im_table: tuple | None = None

    def __post_init__(self):
        _integer("dac_bits", self.dac_bits, 1, 16)
        _integer("pm_bits", self.pm_bits, 1, 8)
        _real("mu_peak", self.mu_peak, 0, lo_open=True)
        if self.im_code_peak is not None:
            _integer("im_code_peak", self.im_code_peak, 1, (1 << self.dac_bits) - 1)
        _real("im_extinction_db", self.im_extinction_db, 0)
        _real("carver_extinction_db", self.carver_extinction_db, 0)
        if self.im_table is not None:
            table = np.asarray(self.im_table, float)
            if table.shape != (1 << self.dac_bits,):
                raise ValueError(f"im_table must hold {1 << self.dac_bits} values (one per "
                                 f"code), not {table.shape}")
            if not np.isfinite(table).all() or (table < 0).any():
                bad = table[~(np.isfinite(table) & (table >= 0))][0]
                raise ValueError(f"im_table must hold finite non-negative mean photon "
                                 f"numbers, not {bad!r}")

    def im_mu(self):
        """Mean photon number per UI of every IM code, carver open: (2**dac_bits,) float."""
        if self.im_table is not None:
            return np.asarray(self.im_table, float)
        codes = np.arange(1 << self.dac_bits)
        peak = self.im_code_peak or (1 << self.dac_bits) - 1
        eps = 10 ** (-self.im_extinction_db / 10)
        return self.mu_peak * (eps + (1 - eps) * np.sin(np.pi / 2 * codes / peak) ** 2)

    @property
    def carver_leak(self):
        """Fraction of the light a closed carver passes."""
        return 10 ** (-self.carver_extinction_db / 10)

    def pm_phase(self):
        """Phase (rad) of every PM code: (2**pm_bits,) float."""
        return 2 * np.pi * np.arange(1 << self.pm_bits) / (1 << self.pm_bits)


def calibrated_im_levels(calibration, intensities=(0.5, 0.1), *, uis_per_symbol,
                         pulse_width=None):
    """The driver's ``im_levels`` table (32 codes) a lab writes after calibration: intensity
    class ``c`` gives every state a mean photon number ``intensities[c]`` per symbol (a Z
    state in its bin, an X state half in each bin), with ``pulse_width`` (default: the whole
    bin) UIs per pulse; unlit bins and classes beyond ``intensities`` get the darkest code.
    Codes are among the few nearest the DAC has, the Z and X codes of a class chosen together
    so that their symbols' mean photon numbers differ least (the decoy bound assumes one
    intensity per class): :func:`symbol_mean_photons` gives what they realise."""
    if not isinstance(calibration, Calibration):
        raise ValueError(f"calibration must be a Calibration, not {calibration!r}")
    k = _integer("uis_per_symbol", uis_per_symbol, 2, 256) // 2
    if uis_per_symbol % 2:
        raise ValueError(f"uis_per_symbol must be even, not {uis_per_symbol!r}")
    width = k if pulse_width is None else _integer("pulse_width", pulse_width, 1, k)
    intensities = tuple(intensities)
    if not 1 <= len(intensities) <= 4:
        raise ValueError(f"intensities must hold 1..4 mean photon numbers, not {intensities!r}")
    for mu in intensities:
        _real("intensity (mean photon number)", mu, 0)
    table = calibration.im_mu()
    dark_code = int(np.argmin(table))

    def near(target, n=8):
        return np.argsort(np.abs(table - target), kind="stable")[:n]

    levels = [dark_code] * IM_LEVELS
    for c, mu in enumerate(intensities):
        # A Z state lights one bin at code z, an X state both at code x. The decoy analysis
        # takes one mean photon number per class for every state, so of the codes near the
        # targets the pair whose symbols differ least, and whose mean is near mu, is taken.
        best = None
        for z in near(mu / width):
            for x in near(mu / width / 2):
                zm, xm = width * table[z], 2 * width * table[x]
                score = abs(zm - xm) + 0.5 * abs((zm + xm) / 2 - mu)
                if best is None or score < best[0]:
                    best = (score, int(z), int(x))
        _, z, x = best
        for state in range(4):
            for b in range(2):
                if state >= 2:
                    levels[im_level_index(c, state, b)] = x
                elif state == b:
                    levels[im_level_index(c, state, b)] = z
    return levels


def _symbol_patterns(calibration, uis_per_symbol, settings):
    """Mean photon number and phase of every UI of a symbol of each category (intensity * 4 +
    state; 16: a dark symbol), as Alice's driver (its reference model) emits them with
    ``settings``: ``(m (17, S), phi (17, S))``."""
    settings = dict(settings or {})
    for name in ("delay_carver", "delay_im", "delay_pm"):
        if settings.get(name, 0) != 0:
            raise ValueError(f"The symbol path models the driver without delays; {name} is "
                             f"{settings[name]!r} (use the word path)")
        settings.pop(name, None)
    driver = TimeBinDriverModel(_CATEGORIES, uis_per_symbol, calibration.dac_bits,
                                calibration.pm_bits)
    applied, error = driver.applied_settings(settings)
    if error:
        raise ValueError(f"The driver refuses these settings (pulse_offset "
                         f"{settings.get('pulse_offset')!r}, pulse_width "
                         f"{settings.get('pulse_width')!r}); it would keep its defaults")
    cats = np.arange(_CATEGORIES)
    state = np.where(cats < 16, cats % 4, 0)
    # The symbols in cycle 1: the driver's registered pulse window holds its reset value in
    # cycle 0 and the settings from cycle 1 on.
    lat = 1 + driver.latency
    n = lat + 1                                 # up to the word of the cycle-1 symbols
    rows = lambda a: np.stack([a] * n)                                       # noqa: E731
    out = driver.run(np.arange(n) == 1, rows(state >> 1), rows(state & 1),
                     rows(np.where(cats < 16, cats // 4, 0)), rows((cats == 16).astype(int)),
                     settings)
    carver = out.carver[lat].reshape(_CATEGORIES, uis_per_symbol)
    im = out.im[lat].reshape(_CATEGORIES, uis_per_symbol).astype(np.int64)
    pm = out.pm[lat].reshape(_CATEGORIES, uis_per_symbol).astype(np.int64)
    m = calibration.im_mu()[im] * np.where(carver == 1, 1.0, calibration.carver_leak)
    return m, calibration.pm_phase()[pm]


def symbol_mean_photons(calibration=None, uis_per_symbol=2, settings=None):
    """Mean photon number per symbol at Alice's output, (4 intensity classes, 4 states), for
    the driver ``settings`` (its defaults if None) and ``calibration`` (default
    :class:`Calibration`); carver leakage included."""
    m, _ = _symbol_patterns(calibration or Calibration(), uis_per_symbol, settings)
    return m[:16].sum(axis=1).reshape(4, 4)


# --- parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelParams:
    """Parameters of the link, Bob's optics and detectors. Units: ps, km, dB, Hz, rad.

    Defaults mirror a GHz-gated InGaAs/InP link (:func:`gated_ingaas`); :func:`snspd` gives
    free-running superconducting detectors. Bad values raise ``ValueError`` naming them.

    Link timing (Alice's and Bob's gateware): ``lanes`` symbols per fabric cycle,
    ``uis_per_symbol`` (S) UIs per symbol, ``fabric_clock_hz``; Bob's deserializer takes
    ``oversampling`` samples per UI. One UI lasts ``ui_ps = 1e12 / (fabric_clock_hz * lanes
    * S)`` (200 ps at the defaults: 2.5 GS/s).

    Fibre: ``length_km``; ``loss_db_per_km``; ``group_index`` (delay ``length_km *
    group_index / c``, 4.897 us/km); ``drift_ps_per_hour_per_km`` (delay drift from
    temperature, signed); ``drift_period_s`` (0: linear drift; > 0: a sinusoidal temperature
    cycle of this period whose largest slope is the drift rate); ``clock_offset_ppm`` (Bob's
    clock against Alice's); ``time_acceleration`` (factor on the drift, the clock offset and
    the interferometer phase drift).

    Bob's optics: ``bob_loss_db`` (insertion loss before the basis splitter); ``bob_p_z``
    (fraction of the light to the Z detector); ``x_ports`` (1: an X detector at the ``+``
    port; 2: also at the ``-`` port); ``visibility`` of the interferometer;
    ``interferometer_phase_rad`` (its phase error) and ``phase_drift_rad_per_hour``.

    Detectors: ``detector`` (``"gated"`` or ``"free"``); ``efficiency``; ``dark_per_gate``
    (gated) or ``dark_rate_hz`` (free-running); ``afterpulse_probability`` per click and
    ``afterpulse_tau_ps`` (decay after the dead time); ``dead_time_ps`` (hold-off);
    ``jitter_ps`` (Gaussian, standard deviation); gates: ``gate_period_ps`` (None: one time
    bin), ``gate_width_ps`` (None: see :attr:`gate_width`), ``gate_phase_ps`` (emission time of a
    gate centre within the period, None: the middle of a time bin), ``gate_misalignment_ps``;
    ``latency_ps`` (cables and detector, one value or one per channel); ``bob_start_ps``
    (arrival time of Bob's time 0; None: the fibre delay, adjusted to put the Z detector's
    light mid-UI); ``output_pulse_uis`` (length of a detector's output pulse in the words).
    """

    lanes: int = 16
    uis_per_symbol: int = 2
    fabric_clock_hz: float = 156.25e6
    oversampling: int = 1
    length_km: float = 25.0
    loss_db_per_km: float = 0.2
    group_index: float = 1.4682
    drift_ps_per_hour_per_km: float = 20.0
    drift_period_s: float = 0.0
    clock_offset_ppm: float = 0.0
    time_acceleration: float = 1.0
    bob_loss_db: float = 0.0
    bob_p_z: float = 0.9
    x_ports: int = 2
    visibility: float = 0.98
    interferometer_phase_rad: float = 0.0
    phase_drift_rad_per_hour: float = 0.0
    detector: str = "gated"
    efficiency: float = 0.25
    dark_per_gate: float = 1e-6
    dark_rate_hz: float = 100.0
    afterpulse_probability: float = 0.02
    afterpulse_tau_ps: float = 20_000.0
    dead_time_ps: float = 10_000.0
    jitter_ps: float = 50.0
    gate_period_ps: float | None = None
    gate_width_ps: float | None = None
    gate_phase_ps: float | None = None
    gate_misalignment_ps: float = 0.0
    latency_ps: float | tuple = 2000.0
    bob_start_ps: float | None = None
    output_pulse_uis: int = 2

    def __post_init__(self):
        _integer("lanes", self.lanes, 1)
        _integer("uis_per_symbol", self.uis_per_symbol, 2, 256)
        if self.uis_per_symbol % 2:
            raise ValueError(f"uis_per_symbol must be even, not {self.uis_per_symbol!r}")
        _real("fabric_clock_hz", self.fabric_clock_hz, 0, lo_open=True)
        _integer("oversampling", self.oversampling, 1, MAX_OVERSAMPLING)
        _real("length_km", self.length_km, 0)
        _real("loss_db_per_km", self.loss_db_per_km, 0)
        _real("group_index", self.group_index, 1)
        _real("drift_ps_per_hour_per_km", self.drift_ps_per_hour_per_km)
        _real("drift_period_s", self.drift_period_s, 0)
        _real("clock_offset_ppm", self.clock_offset_ppm, -1000, 1000)
        _real("time_acceleration", self.time_acceleration, 0, lo_open=True)
        _real("bob_loss_db", self.bob_loss_db, 0)
        _real("bob_p_z", self.bob_p_z, 0, 1)
        _integer("x_ports", self.x_ports, 1, 2)
        _real("visibility", self.visibility, 0, 1)
        _real("interferometer_phase_rad", self.interferometer_phase_rad)
        _real("phase_drift_rad_per_hour", self.phase_drift_rad_per_hour)
        if self.detector not in ("gated", "free"):
            raise ValueError(f"detector must be 'gated' or 'free', not {self.detector!r}")
        _real("efficiency", self.efficiency, 0, 1, lo_open=True)
        _real("dark_per_gate", self.dark_per_gate, 0, 1, hi_open=True)
        _real("dark_rate_hz", self.dark_rate_hz, 0, 1e12)
        _real("afterpulse_probability", self.afterpulse_probability, 0, 1, hi_open=True)
        _real("afterpulse_tau_ps", self.afterpulse_tau_ps, 0, lo_open=True)
        _real("dead_time_ps", self.dead_time_ps, 0)
        _real("jitter_ps", self.jitter_ps, 0)
        if self.gate_period_ps is not None:
            _real("gate_period_ps", self.gate_period_ps, 0, lo_open=True)
        if self.gate_width_ps is not None:
            _real("gate_width_ps", self.gate_width_ps, 0, self.gate_period, lo_open=True)
        if self.gate_phase_ps is not None:
            _real("gate_phase_ps", self.gate_phase_ps)
        _real("gate_misalignment_ps", self.gate_misalignment_ps)
        latency = np.atleast_1d(np.asarray(self.latency_ps, dtype=object))
        if latency.ndim != 1 or len(latency) not in (1, self.channels):
            raise ValueError(f"latency_ps must be one value or {self.channels} (one per "
                             f"channel), not {self.latency_ps!r}")
        for value in latency:
            _real("latency_ps", value, 0)
        if self.bob_start_ps is not None:
            _real("bob_start_ps", self.bob_start_ps)
        _integer("output_pulse_uis", self.output_pulse_uis, 1)

    @classmethod
    def from_tx_meta(cls, meta, **overrides):
        """Parameters for a transmitter run's ``meta`` (:func:`~timebin.sim.tx.run.run_tx`):
        its lanes, UIs per symbol and fabric clock, with ``overrides``."""
        base = {"lanes": int(meta["lanes"]), "uis_per_symbol": int(meta["uis_per_symbol"]),
                "fabric_clock_hz": float(meta.get("fabric_clock_hz", 156.25e6))}
        return cls(**{**base, **overrides})

    def replace(self, **changes):
        """A copy with ``changes``."""
        return replace(self, **changes)

    # --- derived quantities ---

    @property
    def channels(self):
        """Detector channels: Z, X+ and (with two ports) X-."""
        return 1 + self.x_ports

    @property
    def ui_ps(self):
        return 1e12 / (self.fabric_clock_hz * self.lanes * self.uis_per_symbol)

    @property
    def symbol_ps(self):
        return self.ui_ps * self.uis_per_symbol

    @property
    def bin_ps(self):
        return self.ui_ps * (self.uis_per_symbol // 2)

    @property
    def gate_period(self):
        """Gate period (ps): ``gate_period_ps`` or one time bin."""
        return self.bin_ps if self.gate_period_ps is None else float(self.gate_period_ps)

    @property
    def gate_width(self):
        """Gate width (ps): ``gate_width_ps``; by default, with gates every time bin, the bin
        less half a UI (the UI centres of a bin-long pulse with a quarter UI to spare at
        each end: 100 ps at S = 2 and 200 ps UIs), else half the period."""
        if self.gate_width_ps is not None:
            return float(self.gate_width_ps)
        if self.gate_period_ps is None:
            return self.bin_ps - 0.5 * self.ui_ps
        return 0.5 * self.gate_period

    @property
    def gate_phase(self):
        return 0.5 * self.bin_ps if self.gate_phase_ps is None else float(self.gate_phase_ps)

    @property
    def latencies(self):
        """Latency of each channel (ps), (channels,) float."""
        return np.broadcast_to(np.asarray(self.latency_ps, float),
                               (self.channels,)).astype(float)

    @property
    def transmittance(self):
        """Fibre and Bob's insertion loss as a power ratio."""
        return 10 ** (-(self.loss_db_per_km * self.length_km + self.bob_loss_db) / 10)

    @property
    def fibre_delay_ps(self):
        """Propagation delay at time 0 (ps)."""
        return self.length_km * 1e3 * self.group_index / SPEED_OF_LIGHT_M_PER_S * 1e12

    @property
    def drift_rate(self):
        """Largest slope of the fibre delay drift (ps per ps), accelerated."""
        return (self.drift_ps_per_hour_per_km * self.length_km * self.time_acceleration
                / _PS_PER_HOUR)

    @property
    def drift_omega(self):
        """Angular frequency (rad/ps) of the temperature cycle (0: linear drift)."""
        if self.drift_period_s == 0:
            return 0.0
        return 2 * np.pi * self.time_acceleration / (self.drift_period_s * 1e12)

    def drift_ps(self, t_ps):
        """Delay drift (ps) of light emitted at Alice's time ``t_ps``."""
        return _drift_np(np.asarray(t_ps, float), self.drift_rate, self.drift_omega)

    @property
    def clock_factor(self):
        """Bob's clock rate over Alice's (accelerated offset)."""
        return 1.0 + self.clock_offset_ppm * 1e-6 * self.time_acceleration

    def interferometer_phase(self, t_ps):
        """Interferometer phase (rad) at arrival time ``t_ps``."""
        rate = self.phase_drift_rad_per_hour * self.time_acceleration / _PS_PER_HOUR
        return self.interferometer_phase_rad + rate * np.asarray(t_ps, float)

    @property
    def bob_start(self):
        """Arrival-axis time (ps) of Bob's time 0."""
        if self.bob_start_ps is not None:
            return float(self.bob_start_ps)
        lat = self.latencies[0]
        return self.fibre_delay_ps + lat - round(lat / self.ui_ps) * self.ui_ps


def gated_ingaas(**overrides):
    """A GHz-gated InGaAs/InP SPAD link (the defaults): efficiency 0.25, dark count 1e-6 per
    gate, afterpulsing 2 % decaying over 20 ns after a 10 ns hold-off, 50 ps jitter, a gate
    every time bin (1.25 GHz at 625 MS/s, e.g. ``lanes=4``, S = 2), half a UI shorter."""
    return ChannelParams(**overrides)


def snspd(**overrides):
    """Free-running superconducting nanowire detectors: efficiency 0.8, 100 Hz dark counts,
    25 ps jitter, 30 ns dead time (reset), no afterpulsing."""
    base = dict(detector="free", efficiency=0.8, dark_rate_hz=100.0, jitter_ps=25.0,
                dead_time_ps=30_000.0, afterpulse_probability=0.0)
    return ChannelParams(**{**base, **overrides})


def channel_roles(params):
    """Role of each channel, in ``gateware.sifting`` numbers (0 Z, 1 X+, 2 X-)."""
    roles = [ROLE_Z, ROLE_X_PLUS, ROLE_X_MINUS]
    return np.array(roles[:params.channels], np.uint8)


def expected_delays(params, at_ps=0.0):
    """Bob's binner ``delay`` (UIs) of each channel that puts the light of Alice's symbol
    ``s`` in Bob's symbol ``s`` (Z: the bins at phases ``0 .. S-1``; X: the short-early side
    slot at phases ``0 .. k-1``), for light emitted at Alice's time ``at_ps``: the nearest
    whole UI to the total offset (fibre delay and drift, latency, Bob's start and clock)."""
    t = float(at_ps) + 0.5 * params.ui_ps
    offset = params.fibre_delay_ps + float(params.drift_ps(t)) + params.latencies
    bob = (t + offset - params.bob_start) * params.clock_factor
    return np.floor((bob - t) / params.ui_ps + 0.5).astype(np.int64)


def receiver_settings(params, at_ps=0.0):
    """Settings for Bob's receiver (:class:`~timebin.sim.rx.top.ReceiverModel`): ``delay``
    (:func:`expected_delays`) and ``windows`` (Z windows on channel 0, X windows on the X
    detectors)."""
    from ..gateware.rx.binning import x_windows, z_windows

    S = params.uis_per_symbol
    windows = [z_windows(S)] + [x_windows(S)] * params.x_ports
    return {"delay": expected_delays(params, at_ps), "windows": windows}


# --- numba kernels -----------------------------------------------------------------------


def _drift_np(t, rate, omega):
    if omega > 0:
        return rate / omega * np.sin(omega * t)
    return rate * t


@njit(cache=True)
def _drift(t, rate, omega):
    if omega > 0.0:
        return rate / omega * math.sin(omega * t)
    return rate * t


@njit(cache=True)
def _heap_push(ht, hc, hn, t, c):
    i = hn[0]
    hn[0] = i + 1
    while i > 0:
        parent = (i - 1) >> 1
        if ht[parent] <= t:
            break
        ht[i] = ht[parent]
        hc[i] = hc[parent]
        i = parent
    ht[i] = t
    hc[i] = c


@njit(cache=True)
def _heap_pop(ht, hc, hn):
    n = hn[0] - 1
    hn[0] = n
    if n == 0:
        return
    t = ht[n]
    c = hc[n]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        child = left
        if left + 1 < n and ht[left + 1] < ht[left]:
            child = left + 1
        if ht[child] >= t:
            break
        ht[i] = ht[child]
        hc[i] = hc[child]
        i = child
    ht[i] = t
    hc[i] = c


@njit(cache=True)
def _gate_time(t, base, geo, u):
    """A uniform time (``u`` in [0, 1)) in the part after ``t`` of the first gate window of
    a channel (``base``: fibre delay + latency + misalignment) that ends after ``t``.
    ``geo``: ``(rate, omega, t0, t0_mod, phase, period, width)``."""
    rate, omega, t0, t0_mod, phase, period, width = (geo[0], geo[1], geo[2], geo[3],
                                                     geo[4], geo[5], geo[6])
    e = t - base - _drift(t0 + t - base, rate, omega)
    m = math.floor((e + t0_mod - phase - 0.5 * width) / period) - 1.0
    while True:
        ej = m * period - t0_mod + phase
        centre = ej + base + _drift(t0 + ej, rate, omega)
        if centre + 0.5 * width > t:
            lo = max(t, centre - 0.5 * width)
            return lo + u * (centre + 0.5 * width - lo)
        m += 1.0


@njit(cache=True)
def _detect(t, ch, src, start, horizon, dead, p_ap, tau, gated, base, geo,
            last_src, dead_until, heap_t, heap_c, heap_n, seed,
            accepted, ap_t, ap_c, ap_n, lost, merged):
    """The detectors' sequential part over the time-sorted candidates ``t`` (channel ``ch``,
    pulse id ``src``, -1 for none) from index ``start``, and the pending afterpulses (a heap),
    up to ``horizon``: dead time, one click per pulse, afterpulses. Returns the index of the
    first candidate not processed (the output ``ap_*`` full, or at the horizon)."""
    np.random.seed(seed)
    n = t.shape[0]
    i = start
    while True:
        from_heap = heap_n[0] > 0 and (i >= n or heap_t[0] <= t[i])
        if from_heap:
            tt = heap_t[0]
            if tt >= horizon or ap_n[0] >= ap_t.shape[0]:
                break
            c = heap_c[0]
            _heap_pop(heap_t, heap_c, heap_n)
            if tt >= dead_until[c]:
                ap_t[ap_n[0]] = tt
                ap_c[ap_n[0]] = c
                ap_n[0] += 1
                last_src[c] = -1
            else:
                lost[c] += 1
                continue
        else:
            if i >= n or t[i] >= horizon:
                break
            tt = t[i]
            c = ch[i]
            s = src[i]
            i += 1
            if s >= 0 and s == last_src[c]:
                merged[c] += 1                   # another photon of the same pulse
                continue
            if tt < dead_until[c]:
                lost[c] += 1
                continue
            accepted[i - 1] = True
            last_src[c] = s
        # a click at tt on channel c
        dead_until[c] = tt + dead
        if p_ap > 0.0 and np.random.random() < p_ap:
            ta = tt + dead + np.random.exponential(tau)
            if gated:
                ta = _gate_time(ta, base[c], geo, np.random.random())
            _heap_push(heap_t, heap_c, heap_n, ta, c)
    return i


# --- the channel -------------------------------------------------------------------------


def _empty_events():
    return {"t": np.zeros(0), "ch": np.zeros(0, np.int64), "src": np.zeros(0, np.int64),
            "kind": np.zeros(0, np.uint8), "symbol": np.zeros(0, np.int64),
            "slot": np.zeros(0, np.int8)}


def _concat(parts):
    parts = [p for p in parts if len(p["t"])]
    if not parts:
        return _empty_events()
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _take(events, index):
    return {name: values[index] for name, values in events.items()}


def _empty_detections():
    return {"channel": np.zeros(0, np.uint8), "time_ps": np.zeros(0, np.int64),
            "ui": np.zeros(0, np.int64), "sample": np.zeros(0, np.int64),
            "kind": np.zeros(0, np.uint8), "symbol": np.zeros(0, np.int64),
            "slot": np.zeros(0, np.int8)}


class Channel:
    """The physical channel, run chunk by chunk (the state of the fibre and of the
    detectors carries over): feed it Alice's light with :meth:`send_words` (the driver's
    serializer words) or :meth:`send_symbols` (the symbol log; fast), one or the other, and
    end with :meth:`flush`. Each call returns the clicks that are final (no later light can
    come before them), as a detections dict, sorted by time:

    * ``channel`` (uint8): the detector (see :func:`channel_roles`);
    * ``time_ps`` (int64): the click time on Bob's clock, ps since his time 0;
    * ``ui``, ``sample`` (int64): Bob's UI and deserializer sample of the click
      (``floor(time_ps / ui_ps)``, ``floor(time_ps * oversampling / ui_ps)``);
    * ``kind`` (uint8): :data:`DETECTION_KINDS`;
    * ``symbol`` (int64): Alice's symbol the photon came from (-1 for dark counts and
      afterpulses) and ``slot`` (int8): its slot in time bins from the symbol's start
      (Z: 0 early, 1 late; X: 0 short-early, 1 middle, 2 long-late; -1 if none). These two
      are the simulation's ground truth, not something Bob sees.

    ``params``: :class:`ChannelParams` (default :func:`gated_ingaas`); ``seed``: an int or a
    ``numpy.random.Generator``; ``calibration``: :class:`Calibration` (must match the
    driver's ``dac_bits``/``pm_bits``); ``tx_settings``: the driver settings of Alice's run
    (for the symbol path: levels and pulse window; delays must be 0).
    """

    def __init__(self, params=None, *, seed, calibration=None, tx_settings=None):
        self.params = p = params if params is not None else ChannelParams()
        if not isinstance(p, ChannelParams):
            raise ValueError(f"params must be a ChannelParams, not {p!r}")
        self.calibration = cal = calibration if calibration is not None else Calibration()
        if not isinstance(cal, Calibration):
            raise ValueError(f"calibration must be a Calibration, not {cal!r}")
        if isinstance(seed, np.random.Generator):
            self.rng = seed
        else:
            self.rng = np.random.default_rng(_integer("seed", seed, 0))
        self.tx_settings = dict(tx_settings or {})
        self._mode = None
        self._finished = False
        S = p.uis_per_symbol
        self._k = S // 2
        self._T = p.ui_ps
        self._T_frac = Fraction(self._T)
        self._lat = p.latencies
        self._gated = p.detector == "gated"
        self._eta = p.transmittance * p.efficiency
        # state (times relative to the origin: Alice's UI ``_origin_ui``)
        self._origin_ui = 0
        self._horizon = p.bob_start                  # arrival time up to which all is final
        self._pending = _empty_events()
        C = p.channels
        self._last_src = np.full(C, -1, np.int64)
        self._dead_until = np.full(C, -np.inf)
        self._heap_t = np.zeros(16)
        self._heap_c = np.zeros(16, np.int64)
        self._heap_n = np.zeros(1, np.int64)
        self._next_gate = None                       # gated dark counts: next gate index
        self._tail_m = np.zeros(self._k)             # word path: the last k UIs
        self._tail_phi = np.zeros(self._k)
        self._tables = None
        self.counters = {name: np.zeros(C, np.int64) for name in
                         ("photons", "gate_rejected", "darks", "afterpulses", "dead_losses",
                          "merged", "clicks")}
        self.symbols_sent = 0
        self.uis_sent = 0

    # --- inputs ---

    def _start(self, mode):
        if self._finished:
            raise ValueError("The channel was flushed; start a new Channel for a new run")
        if self._mode not in (None, mode):
            raise ValueError(f"This channel runs on {self._mode}; it cannot take {mode} too")
        self._mode = mode

    def send_symbols(self, basis, bit, intensity, dark=None):
        """Alice's next symbols, from her symbol log (``basis``, ``bit``, ``intensity``
        class, ``dark``: no light; (n,) integer arrays): the fast path. Returns the final
        detections (see the class)."""
        self._start("symbols")
        n = len(np.asarray(basis))
        arrays = {}
        for name, values, top in (("basis", basis, 1), ("bit", bit, 1),
                                  ("intensity", intensity, 3), ("dark", dark, 1)):
            if values is None:
                continue
            values = np.asarray(values)
            if values.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), not {values.shape}")
            if n and (not np.issubdtype(values.dtype, np.integer) and values.dtype != bool):
                raise ValueError(f"{name} must hold integers, not {values.dtype}")
            if n and (values.min() < 0 or values.max() > top):
                raise ValueError(f"{name} must hold integers in 0..{top}, not "
                                 f"{values.min()}..{values.max()}")
            arrays[name] = values
        events = self._symbol_photons(n, arrays)
        self.symbols_sent += n
        return self._advance(events, n * self.params.uis_per_symbol)

    def send_words(self, carver, im, pm):
        """Alice's next serializer words (the driver's ``carver``, ``im``, ``pm``: arrays of
        equal shape, (cycles, L * S) or flat UI streams, UI 0 first): the word path. Returns
        the final detections (see the class)."""
        self._start("words")
        carver, im, pm = (np.asarray(a) for a in (carver, im, pm))
        if not carver.shape == im.shape == pm.shape:
            raise ValueError(f"carver, im and pm must have the same shape, not {carver.shape}, "
                             f"{im.shape}, {pm.shape}")
        cal = self.calibration
        for name, values, top in (("carver", carver, 1), ("im", im, (1 << cal.dac_bits) - 1),
                                  ("pm", pm, (1 << cal.pm_bits) - 1)):
            if values.size and not np.issubdtype(values.dtype, np.integer) \
                    and values.dtype != bool:
                raise ValueError(f"{name} must hold integers, not {values.dtype}")
            if values.size and (values.min() < 0 or values.max() > top):
                raise ValueError(f"{name} codes must be in 0..{top} (calibration dac_bits="
                                 f"{cal.dac_bits}, pm_bits={cal.pm_bits}), not "
                                 f"{values.min()}..{values.max()}")
        carver, im, pm = carver.ravel(), im.ravel(), pm.ravel()
        out = []
        step = 1 << 20
        for lo in range(0, len(carver), step):
            c, i, q = carver[lo:lo + step], im[lo:lo + step], pm[lo:lo + step]
            m = cal.im_mu()[i] * np.where(c != 0, 1.0, cal.carver_leak)
            out.append(self._advance(self._word_photons(m, cal.pm_phase()[q]), len(m)))
        return _concat_detections(out)

    def flush(self):
        """End of the run: Alice sends no more light. Returns the remaining detections
        (every pending click and afterpulse; dark counts until the last light could
        arrive)."""
        if self._finished:
            raise ValueError("The channel was already flushed")
        out = []
        if self._mode == "words":                    # the long arm of the last k UIs
            out.append(self._advance(self._word_photons(np.zeros(self._k),
                                                        np.zeros(self._k)), self._k))
        out.append(self._advance(_empty_events(), 0, final=True))
        self._finished = True
        return _concat_detections(out)

    # --- photons ---

    def _symbol_tables(self):
        """Per category: detected-photon intensity of each entry (Z: S UIs; X: S + k output
        UIs, both ports), their cumulative sums, and the interference terms of the X
        entries."""
        if self._tables is None:
            p, k, S = self.params, self._k, self.params.uis_per_symbol
            m, phi = _symbol_patterns(self.calibration, S, self.tx_settings)
            short = np.concatenate([m, np.zeros((_CATEGORIES, k))], axis=1)
            long_ = np.concatenate([np.zeros((_CATEGORIES, k)), m], axis=1)
            phi_s = np.concatenate([phi, np.zeros((_CATEGORIES, k))], axis=1)
            phi_l = np.concatenate([np.zeros((_CATEGORIES, k)), phi], axis=1)
            coh = (np.arange(S + k) >= k) & (np.arange(S + k) < S)
            A = (short + long_) / 4
            B = 2 * p.visibility * np.sqrt(short * long_) / 4 * coh
            lam = np.concatenate([p.bob_p_z * self._eta * m,
                                  (1 - p.bob_p_z) * self._eta * 2 * A], axis=1)
            cum = np.cumsum(lam, axis=1)
            top = cum[:, -1].max()
            stride = 2 * top + 1.0
            # the rows' cumulative sums one after the other, each offset by its category
            flat = (cum + stride * np.arange(_CATEGORIES)[:, None]).ravel()
            self._tables = {"cum": cum, "total": cum[:, -1], "top": top, "flat": flat,
                            "stride": stride, "A": A, "B": B, "psi": phi_s - phi_l}
        return self._tables

    def _symbol_photons(self, n, arrays):
        """Detected-photon candidates of ``n`` symbols by Poisson thinning: a Poisson
        process of ``Lambda_max`` per symbol (sorted, from exponential spacings), each point
        kept with ``Lambda(symbol) / Lambda_max`` (its position within the symbol, uniform,
        is the draw) and given an entry with probability ``lambda(entry) / Lambda``."""
        tab = self._symbol_tables()
        S, k = self.params.uis_per_symbol, self._k
        total, top = tab["total"], tab["top"]
        if n == 0 or top <= 0:
            return _empty_events()
        rng = self.rng
        K = rng.poisson(n * top)
        if K == 0:
            return _empty_events()
        x = np.cumsum(rng.standard_exponential(K + 1))
        x = x[:-1] * (n / x[-1])                      # K sorted uniform points in [0, n)
        i = np.minimum(x.astype(np.int64), n - 1)
        u = (x - i) * top
        cat = (arrays["intensity"][i].astype(np.int64) * 4
               + arrays["basis"][i].astype(np.int64) * 2 + arrays["bit"][i])
        if "dark" in arrays:
            cat[arrays["dark"][i] != 0] = 16
        keep = u < total[cat]
        i, cat, u = i[keep], cat[keep], u[keep]
        E = 2 * S + k
        flat = np.searchsorted(tab["flat"], u + cat * tab["stride"], side="right")
        entry = np.minimum(flat - cat * E, E - 1)
        is_x = entry >= S
        off = entry - S * is_x
        first = self.symbols_sent
        ui = i * S + off
        events = {"t": (ui + 0.5) * self._T, "ch": np.zeros(len(i), np.int64),
                  "src": first * S + ui, "kind": np.zeros(len(i), np.uint8),
                  "symbol": first + i, "slot": (off // k).astype(np.int8)}
        xs = np.flatnonzero(is_x)
        if len(xs):
            c, o = cat[xs], off[xs]
            self._route_x(events, xs, tab["A"][c, o], tab["B"][c, o], tab["psi"][c, o])
        return self._drop_unobserved(events)

    def _word_photons(self, m, phi):
        """Detected-photon candidates of the next ``len(m)`` UIs of light (mean photon number
        ``m`` and phase ``phi`` per UI)."""
        p, k, S, rng = self.params, self._k, self.params.uis_per_symbol, self.rng
        n = len(m)
        n0 = self.uis_sent
        self.uis_sent += n
        ext_m = np.concatenate([self._tail_m, m])
        ext_phi = np.concatenate([self._tail_phi, phi])
        self._tail_m, self._tail_phi = ext_m[-k:].copy(), ext_phi[-k:].copy()
        parts = []
        # Z arm
        z = self._place(p.bob_p_z * self._eta * m)
        gz = n0 + z
        parts.append({"t": (z + 0.5) * self._T, "ch": np.zeros(len(z), np.int64),
                      "src": gz, "kind": np.zeros(len(z), np.uint8), "symbol": gz // S,
                      "slot": ((gz % S) // k).astype(np.int8)})
        # X arm: output UI u holds the short arm's UI u and the long arm's UI u - k
        short, long_ = ext_m[k:], ext_m[:-k]
        A = (short + long_) / 4
        x = self._place((1 - p.bob_p_z) * self._eta * 2 * A)
        gx = n0 + x
        s, l_ = short[x], long_[x]
        coh = (gx % S) >= k
        B = 2 * p.visibility * np.sqrt(s * l_) / 4 * coh
        from_short = coh | (rng.random(len(x)) * (s + l_) < s)
        symbol = np.where(from_short, gx // S, (gx - k) // S)
        events = {"t": (x + 0.5) * self._T, "ch": np.zeros(len(x), np.int64), "src": gx,
                  "kind": np.zeros(len(x), np.uint8), "symbol": symbol,
                  "slot": ((gx - symbol * S) // k).astype(np.int8)}
        self._route_x(events, np.arange(len(x)), A[x], B,
                      ext_phi[k:][x] - ext_phi[:-k][x])
        parts.append(self._drop_unobserved(events))
        return _concat(parts)

    def _place(self, lam):
        """UIs (sorted) of Poisson(lam[u]) photons per UI, by the cumulative sum."""
        cum = np.cumsum(lam)
        total = cum[-1] if len(cum) else 0.0
        if total <= 0:
            return np.zeros(0, np.int64)
        K = self.rng.poisson(total)
        pos = np.sort(self.rng.random(K)) * total
        return np.minimum(np.searchsorted(cum, pos, side="right"), len(lam) - 1)

    def _route_x(self, events, rows, A, B, psi):
        """Send the X-arm photons ``rows`` of ``events`` to the ``+`` (channel 1) or ``-``
        port (channel 2) by the interference at their arrival time."""
        p = self.params
        t_abs = self._origin_ui * self._T + events["t"][rows] + p.fibre_delay_ps
        theta = p.interferometer_phase(t_abs)
        with np.errstate(invalid="ignore", divide="ignore"):
            plus = np.where(A > 0, 0.5 + B * np.cos(psi - theta) / (2 * A), 0.5)
        events["ch"][rows] = np.where(self.rng.random(len(rows)) < plus, 1, 2)

    def _drop_unobserved(self, events):
        """Drop the photons of the ``-`` port when it has no detector."""
        if self.params.x_ports == 2:
            return events
        return _take(events, events["ch"] < self.params.channels)

    # --- the fibre and the detectors ---

    def _geometry(self):
        """Gate geometry relative to the current origin."""
        p = self.params
        P = p.gate_period
        T0 = Fraction(self._origin_ui) * self._T_frac
        t0_mod = float(T0 % Fraction(P))
        j0 = math.floor(T0 / Fraction(P))
        geo = np.array([p.drift_rate, p.drift_omega, float(T0), t0_mod, p.gate_phase, P,
                        p.gate_width])
        return geo, j0

    def _arrival(self, e, ch):
        p = self.params
        t0 = self._origin_ui * self._T
        return e + p.fibre_delay_ps + p.drift_ps(t0 + e) + self._lat[ch]

    def _first_gate_from(self, h, c, geo, j0):
        """Absolute index of the first gate of channel ``c`` whose window starts at or after
        the arrival time ``h`` (relative)."""
        p = self.params
        rate, omega, t0, t0_mod, phase, P, w = geo
        base = p.fibre_delay_ps + self._lat[c] + p.gate_misalignment_ps
        e = h + 0.5 * w - base - float(_drift_np(t0 + h - base, rate, omega))
        m = math.floor((e + t0_mod - phase) / P) - 1
        while True:
            ej = m * P - t0_mod + phase
            start = ej + base + float(_drift_np(t0 + ej, rate, omega)) - 0.5 * w
            if start >= h:
                return j0 + m
            m += 1

    def _darks(self, lo, hi, final):
        """Dark counts of every channel with arrival times from ``lo`` to ``hi`` (gated:
        in the gates whose windows start before ``hi``)."""
        p, rng = self.params, self.rng
        C = p.channels
        parts = []
        if self._gated:
            if p.dark_per_gate == 0:
                return _empty_events()
            geo, j0 = self._geometry()
            rate, omega, t0, t0_mod, phase, P, w = geo
            if self._next_gate is None:
                self._next_gate = np.array([self._first_gate_from(lo, c, geo, j0)
                                            for c in range(C)], np.int64)
            for c in range(C):
                end = self._first_gate_from(hi, c, geo, j0)
                gates = end - int(self._next_gate[c])
                if gates <= 0:
                    continue
                K = rng.binomial(gates, p.dark_per_gate)
                j = int(self._next_gate[c]) + rng.choice(gates, K, replace=False,
                                                         shuffle=False)
                self._next_gate[c] = end
                ej = (j - j0) * P - t0_mod + phase
                base = p.fibre_delay_ps + self._lat[c] + p.gate_misalignment_ps
                centre = ej + base + _drift_np(t0 + ej, rate, omega)
                parts.append(self._dark_events(centre + (rng.random(K) - 0.5) * w, c))
        else:
            rate_ps = p.dark_rate_hz * 1e-12
            for c in range(C):
                K = rng.poisson(rate_ps * max(hi - lo, 0.0))
                parts.append(self._dark_events(lo + rng.random(K) * (hi - lo), c))
        return _concat(parts)

    @staticmethod
    def _dark_events(t, c):
        K = len(t)
        return {"t": np.asarray(t, float), "ch": np.full(K, c, np.int64),
                "src": np.full(K, -1, np.int64), "kind": np.full(K, KIND_DARK, np.uint8),
                "symbol": np.full(K, -1, np.int64), "slot": np.full(K, -1, np.int8)}

    def _advance(self, photons, n_ui, final=False):
        """Take the photon candidates of the next ``n_ui`` UIs of light (times relative to
        the current origin), run the detectors up to the new horizon, return the final
        clicks and move the origin past the chunk."""
        p, rng, T = self.params, self.rng, self._T
        geo, _ = self._geometry()
        # fibre, gates, jitter
        ev = photons
        if len(ev["t"]):
            e = ev["t"]
            if self._gated:
                P = p.gate_period
                x = np.mod(geo[3] + e - p.gate_phase, P)
                dist = np.where(x < P / 2, x, x - P) - p.gate_misalignment_ps
                inside = np.abs(dist) < 0.5 * p.gate_width
                np.add.at(self.counters["gate_rejected"], ev["ch"][~inside], 1)
                ev = _take(ev, inside)
            a = self._arrival(ev["t"], ev["ch"])
            if p.jitter_ps > 0:
                a = a + np.clip(rng.normal(0.0, p.jitter_ps, len(a)), -_JITTER_CUT * p.jitter_ps,
                                _JITTER_CUT * p.jitter_ps)
            ev = dict(ev, t=a)
            np.add.at(self.counters["photons"], ev["ch"], 1)
        # horizon: no later light can arrive before it
        cut = _JITTER_CUT * p.jitter_ps
        end = n_ui * T
        if final:
            last = end + p.fibre_delay_ps + float(p.drift_ps(self._origin_ui * T + end))
            dark_end = max(last + self._lat.max() + cut, self._horizon)
            horizon = np.inf
        else:
            horizon = (end + p.fibre_delay_ps + float(p.drift_ps(self._origin_ui * T + end))
                       + self._lat.min() - cut)
            horizon = dark_end = max(horizon, self._horizon)
        darks = self._darks(self._horizon, dark_end, final)
        np.add.at(self.counters["darks"], darks["ch"], 1)
        events = _concat([self._pending, ev, darks])
        order = np.argsort(events["t"], kind="stable")
        events = _take(events, order)
        # detectors
        n_ev = len(events["t"])
        accepted = np.zeros(n_ev, np.bool_)
        need = self._heap_n[0] + n_ev + 1
        if len(self._heap_t) < need:
            grow = max(need, 2 * len(self._heap_t))
            self._heap_t = np.concatenate([self._heap_t, np.zeros(grow - len(self._heap_t))])
            self._heap_c = np.concatenate([self._heap_c,
                                           np.zeros(grow - len(self._heap_c), np.int64)])
        base = p.fibre_delay_ps + self._lat + p.gate_misalignment_ps
        ap_parts = []
        start = 0
        lost = np.zeros(p.channels, np.int64)
        merged = np.zeros(p.channels, np.int64)
        while True:
            ap_t = np.empty(n_ev + 1024)
            ap_c = np.empty(n_ev + 1024, np.int64)
            ap_n = np.zeros(1, np.int64)
            start = _detect(events["t"], events["ch"], events["src"], start, horizon,
                            p.dead_time_ps, p.afterpulse_probability, p.afterpulse_tau_ps,
                            self._gated, base, geo, self._last_src, self._dead_until,
                            self._heap_t, self._heap_c, self._heap_n,
                            int(rng.integers(0, 2**32)), accepted, ap_t, ap_c, ap_n, lost,
                            merged)
            ap_parts.append((ap_t[:ap_n[0]], ap_c[:ap_n[0]]))
            if ap_n[0] < len(ap_t):
                break
        self.counters["dead_losses"] += lost
        self.counters["merged"] += merged
        clicks = _take(events, np.flatnonzero(accepted))
        ap_t = np.concatenate([a for a, _ in ap_parts])
        ap_c = np.concatenate([c for _, c in ap_parts])
        np.add.at(self.counters["afterpulses"], ap_c, 1)
        K = len(ap_t)
        clicks = _concat([clicks, {"t": ap_t, "ch": ap_c, "src": np.full(K, -1, np.int64),
                                   "kind": np.full(K, KIND_AFTERPULSE, np.uint8),
                                   "symbol": np.full(K, -1, np.int64),
                                   "slot": np.full(K, -1, np.int8)}])
        np.add.at(self.counters["clicks"], clicks["ch"], 1)
        out = self._to_bob(clicks)
        # move on
        self._pending = _take(events, np.arange(start, n_ev))
        shift = n_ui * T
        self._origin_ui += n_ui
        self._pending["t"] = self._pending["t"] - shift
        self._heap_t[:self._heap_n[0]] -= shift
        self._dead_until -= shift
        self._horizon = (horizon if np.isfinite(horizon) else dark_end) - shift
        return out

    def final_time_ps(self):
        """Bob's time (ps) before which every click has been returned (an int; after
        :meth:`flush`, None: all have)."""
        if self._finished:
            return None
        p = self.params
        t = (Fraction(self._origin_ui) * self._T_frac + Fraction(self._horizon)
             - Fraction(p.bob_start)) * Fraction(p.clock_factor)
        return math.floor(t)

    def _to_bob(self, clicks):
        """Clicks (arrival times relative to the origin) as detections on Bob's clock."""
        p = self.params
        if not len(clicks["t"]):
            return _empty_detections()
        factor = Fraction(p.clock_factor)
        B = (Fraction(self._origin_ui) * self._T_frac - Fraction(p.bob_start)) * factor
        b_int = math.floor(B)
        b_frac = float(B - b_int)
        time_ps = b_int + np.floor(b_frac + clicks["t"] * p.clock_factor).astype(np.int64)
        ui, sample = _ui_and_sample(time_ps, p)
        order = np.argsort(time_ps, kind="stable")
        det = {"channel": clicks["ch"].astype(np.uint8), "time_ps": time_ps, "ui": ui,
               "sample": sample, "kind": clicks["kind"], "symbol": clicks["symbol"],
               "slot": clicks["slot"]}
        return {name: values[order] for name, values in det.items()}


def _ui_and_sample(time_ps, params):
    T, os_ = params.ui_ps, params.oversampling
    if float(T).is_integer():
        T = int(T)
        return np.floor_divide(time_ps, T), np.floor_divide(time_ps * os_, T)
    return (np.floor(time_ps / T).astype(np.int64),
            np.floor(time_ps * (os_ / T)).astype(np.int64))


def _concat_detections(parts):
    parts = [d for d in parts if len(d["time_ps"])]
    if not parts:
        return _empty_detections()
    return {name: np.concatenate([d[name] for d in parts]) for name in DETECTION_FIELDS}


# --- outputs -----------------------------------------------------------------------------


def detections_to_words(detections, params, cycles, first_cycle=0):
    """Bob's deserializer words of ``cycles`` fabric cycles from ``first_cycle``: (cycles,
    channels, L * S * oversampling) uint8 of 0/1, sample 0 the earliest (the receiver's
    ``samples``; :func:`~timebin.sim.rx.run.save_words` writes them). Each click raises its
    channel's output from its sample for ``output_pulse_uis`` UIs; overlapping pulses merge
    (the tail of a pulse that starts before ``first_cycle`` is drawn too). Returns
    ``(samples, outside)``: ``outside`` counts the clicks whose pulse starts before or after
    these cycles."""
    _integer("cycles", cycles, 0)
    _integer("first_cycle", first_cycle, 0)
    C = params.channels
    width = params.lanes * params.uis_per_symbol * params.oversampling
    pulse = params.output_pulse_uis * params.oversampling
    total = cycles * width
    stream = np.zeros((C, total), np.uint8)
    s = np.asarray(detections["sample"], np.int64) - first_cycle * width
    ch = np.asarray(detections["channel"], np.int64)
    if len(ch) and ch.max() >= C:
        raise ValueError(f"A detection is on channel {ch.max()}; the link has {C} channels")
    outside = int(np.sum((s < 0) | (s >= total)))
    drawn = (s > -pulse) & (s < total)
    s, ch = s[drawn], ch[drawn]
    for offset in range(pulse):
        at = s + offset
        ok = (at >= 0) & (at < total)
        stream[ch[ok], at[ok]] = 1
    samples = stream.reshape(C, cycles, width).transpose(1, 0, 2).copy()
    return samples, outside


class WordStream:
    """Bob's deserializer words, cycle after cycle, from the detections a :class:`Channel`
    returns as they become final: :meth:`push` each call's detections with the channel's
    :meth:`~Channel.final_time_ps`, and get the words of the cycles now complete (cycle 0
    starts at Bob's time 0). ``early`` counts clicks before Bob's time 0 (not in any word)."""

    def __init__(self, params):
        self.params = params
        self.next_cycle = 0
        self.early = 0
        self._width = params.lanes * params.uis_per_symbol * params.oversampling
        self._pulse = params.output_pulse_uis * params.oversampling
        self._held = _empty_detections()

    def push(self, detections, final_time_ps=None):
        """Words (cycles, channels, W * oversampling) of the cycles that end at or before
        ``final_time_ps`` (Bob's time up to which every click is known; None at the end of
        the run: every cycle a click reaches)."""
        p, width = self.params, self._width
        self.early += int(np.sum(np.asarray(detections["sample"]) < 0))
        held = _concat_detections([self._held, detections])
        if final_time_ps is None:
            last = int(held["sample"].max()) + self._pulse if len(held["sample"]) else 0
            upto = max(-(-last // width), self.next_cycle)
        else:
            final_sample = _ui_and_sample(np.array([int(final_time_ps)]), p)[1][0]
            upto = max(int(final_sample) // width, self.next_cycle)
        samples, _ = detections_to_words(held, p, upto - self.next_cycle, self.next_cycle)
        keep = held["sample"] > upto * width - self._pulse
        self._held = {name: values[keep] for name, values in held.items()}
        self.next_cycle = upto
        return samples


def link_figures(params):
    """The link in the terms of the key-rate theory (``host/distill``): transmittances of the
    fibre (with Bob's insertion loss) and of each arm up to a click (``eta_z``, ``eta_x``:
    the X arm's middle slot, both ports), dark-count probabilities per detector in one time
    bin window and per symbol, and the X error of the visibility, ``(1 - V) / 2``."""
    p = params
    if p.detector == "gated":
        per_bin = p.dark_per_gate * p.bin_ps / p.gate_period
    else:
        per_bin = -math.expm1(-p.dark_rate_hz * 1e-12 * p.bin_ps)
    eta = p.transmittance * p.efficiency
    return {"transmittance": p.transmittance, "eta_z": eta * p.bob_p_z,
            "eta_x": eta * (1 - p.bob_p_z) / 2, "dark_per_bin": per_bin,
            "dark_per_symbol": 1 - (1 - per_bin) ** 2, "e_visibility": (1 - p.visibility) / 2,
            "symbol_rate_hz": 1e12 / p.symbol_ps, "fibre_delay_ps": p.fibre_delay_ps}


def classify_detections(detections, params, delays=None, windows=None):
    """What Bob's binner makes of each detection, without the gateware's own dead time and
    its one click per word and channel: ``{"index", "phase", "cls"}`` (int64, int64, uint8),
    ``index = (ui - delay) // S`` (Alice's symbol), ``phase = (ui - delay) % S`` and its
    window class. ``delays`` default to :func:`expected_delays`, ``windows`` to those of
    :func:`receiver_settings`."""
    settings = receiver_settings(params)
    delays = np.asarray(settings["delay"] if delays is None else delays, np.int64)
    windows = np.asarray(settings["windows"] if windows is None else windows, np.uint8)
    S = params.uis_per_symbol
    ch = np.asarray(detections["channel"], np.int64)
    shifted = np.asarray(detections["ui"], np.int64) - delays[ch]
    phase = np.mod(shifted, S)
    return {"index": np.floor_divide(shifted, S), "phase": phase, "cls": windows[ch, phase]}


# --- whole runs --------------------------------------------------------------------------


def simulate_symbols(symbols, params=None, *, seed, calibration=None, tx_settings=None,
                     chunk_symbols=1 << 22):
    """The detections (see :class:`Channel`) of a whole symbol log (``symbols``: a dict with
    ``basis``, ``bit``, ``intensity`` and optionally ``dark``), by the fast path, in chunks.
    Returns ``(detections, counters)``."""
    ch = Channel(params, seed=seed, calibration=calibration, tx_settings=tx_settings)
    n = len(symbols["basis"])
    _integer("chunk_symbols", chunk_symbols, 1)
    out = []
    for lo in range(0, n, chunk_symbols):
        part = {name: np.asarray(symbols[name])[lo:lo + chunk_symbols]
                for name in ("basis", "bit", "intensity", "dark") if name in symbols}
        out.append(ch.send_symbols(part["basis"], part["bit"], part["intensity"],
                                   part.get("dark")))
    out.append(ch.flush())
    return _concat_detections(out), {k: v.copy() for k, v in ch.counters.items()}


def simulate_driver(carver, im, pm, params=None, *, seed, calibration=None):
    """The detections of a whole run of the driver's serializer words, by the word path.
    Returns ``(detections, counters)``."""
    ch = Channel(params, seed=seed, calibration=calibration)
    first = ch.send_words(carver, im, pm)
    return (_concat_detections([first, ch.flush()]),
            {k: v.copy() for k, v in ch.counters.items()})


def simulate_words(tx, params=None, *, seed, calibration=None, cycles=None):
    """Alice's transmitter run through the channel to Bob's deserializer words.

    ``tx``: ``(result, meta)`` of :func:`~timebin.sim.tx.run.run_tx` (or a dict with
    ``carver``, ``im``, ``pm``; then ``params`` must give the link timing); ``params``: by
    default :func:`gated_ingaas` with the run's lanes, UIs per symbol and clock;
    ``calibration``: by default :class:`Calibration` with the run's DAC widths; ``cycles``:
    Bob's word count (default: until the last light has arrived). Returns ``(samples,
    detections, info)``; ``info`` holds ``params``, ``receiver_settings`` (delays, windows),
    ``roles``, ``counters`` and ``outside`` (clicks beyond the words)."""
    result, meta = tx if isinstance(tx, tuple) else (tx, None)
    if params is None:
        if meta is None:
            raise ValueError("params must be given when tx has no meta")
        params = ChannelParams.from_tx_meta(meta)
    if calibration is None:
        calibration = Calibration(dac_bits=int(meta["dac_bits"]) if meta else 8,
                                  pm_bits=int(meta["pm_bits"]) if meta else 1)
    det, counters = simulate_driver(result["carver"], result["im"], result["pm"], params,
                                    seed=seed, calibration=calibration)
    width = params.lanes * params.uis_per_symbol * params.oversampling
    if cycles is None:
        last = int(det["sample"].max()) if len(det["sample"]) else 0
        cycles = max(last // width + 2, int(np.asarray(result["carver"]).size
                                            // (params.lanes * params.uis_per_symbol)))
    samples, outside = detections_to_words(det, params, cycles)
    info = {"params": params, "receiver_settings": receiver_settings(params),
            "roles": channel_roles(params), "counters": counters, "outside": outside}
    return samples, det, info


def bench_channel(*, symbols=200_000_000, chunk_symbols=1 << 22, word_symbols=1_000_000,
                  configs=None, seed=1):
    """Channel-model speed: symbols/s of the symbol fast path (the symbol log given, its
    generation not timed) for each link in ``configs`` (name -> :class:`ChannelParams`), and
    of the word path on a transmitter run. Returns a JSON-able dict."""
    from .tx.run import run_tx

    if configs is None:
        configs = {"gated_ingaas_50km": gated_ingaas(length_km=50.0),
                   "gated_ingaas_100km": gated_ingaas(length_km=100.0),
                   "snspd_100km": snspd(length_km=100.0),
                   "gated_ingaas_10km": gated_ingaas(length_km=10.0)}
    rng = np.random.default_rng(seed)
    n = min(chunk_symbols, symbols)
    log = {"basis": (rng.random(n) >= 0.9).astype(np.uint8),
           "bit": rng.integers(0, 2, n, dtype=np.uint8),
           "intensity": (rng.random(n) >= 0.7).astype(np.uint8)}
    log["bit"][log["basis"] == 1] = 0
    log["dark"] = np.zeros(n, np.uint8)
    results = {}
    for name, params in configs.items():
        warm = Channel(params, seed=seed)
        warm.send_symbols(log["basis"][:1000], log["bit"][:1000], log["intensity"][:1000])
        warm.flush()
        ch = Channel(params, seed=seed)
        sent = clicks = 0
        start = time.perf_counter()
        while sent < symbols:
            m = min(n, symbols - sent)
            det = ch.send_symbols(log["basis"][:m], log["bit"][:m], log["intensity"][:m],
                                  log["dark"][:m])
            clicks += len(det["time_ps"])
            sent += m
        clicks += len(ch.flush()["time_ps"])
        seconds = time.perf_counter() - start
        results[name] = {"symbols": sent, "seconds": seconds, "symbols_per_s": sent / seconds,
                         "detections": clicks, "detections_per_symbol": clicks / sent,
                         "length_km": params.length_km, "detector": params.detector}
    params = gated_ingaas(lanes=16, uis_per_symbol=2)
    result, meta = run_tx(lanes=16, uis_per_symbol=2, symbols=word_symbols, seed=seed)
    start = time.perf_counter()
    det, _ = simulate_driver(result["carver"], result["im"], result["pm"], params, seed=seed)
    seconds = time.perf_counter() - start
    words = {"symbols": word_symbols, "seconds": seconds,
             "symbols_per_s": word_symbols / seconds, "detections": len(det["time_ps"])}
    return {"bench": "channel", "fast_path": results, "word_path": words,
            "chunk_symbols": n, "numpy": np.__version__}

