"""Bob's timing alignment from his phase histograms: find the time bins at start-up, set each
detector's delay and windows, and keep them on the light while the fibre and the clocks drift.

Ref: DESIGN.md sections 2 (Z detector: early and late bins; X detector behind the one-bin
interferometer: three slots, the middle one interfering), 3 (``S`` UIs per symbol, ``k = S/2``
per bin) and 7 (host times in ps, gateware times in UIs). Bob's histogram
(:class:`timebin.gateware.rx.histogram.PhaseHistogram`, read with
:meth:`timebin.host.board.Board.histogram`) counts each channel's clicks per bin ``(index mod
P) * S + phase``, where ``index`` and ``phase`` come after the channel's ``delay``.

Start-up (:meth:`Aligner.startup`): Alice sends the ``alternating`` training pattern (Z basis,
bit = symbol index mod 2) while Bob histograms with a period of ``P >= 2`` symbols. Folded to
two symbols (four bins), the light of each channel has a shape that fixes its position modulo
two symbols: the Z detector sees early-of-even and late-of-odd (bin weights ``1 0 0 1``); an X
detector sees the short arm's early pulse and the previous odd symbol's long-arm late pulse in
the even symbol's early bin, the long-arm early pulse in its late bin and the short-arm late
pulse in the odd symbol's late bin (``2 1 0 1``). The delay shift that best matches this
template (each bin weighted by a triangle peaked at its centre, so the light is centred) is
found by circular correlation; of the delays it leaves (one every ``2 S`` UIs), the one
nearest to the lab's nominal latency is taken: the latency of cables and detectors must be
known to within a symbol, as from the detector's data sheet and the cable lengths.

Tracking (:meth:`Aligner.track`): in data mode every click folds onto one bin (``phase mod
k``): a channel's light sits at the circular mean of its phases mod ``k``. Its position
``o_c = delay_c + e_c`` (``e_c`` the centroid's distance from the bin centre, in UIs) moves
with the fibre drift and the clock offset, the same for all channels: the drift is the
count-weighted mean of ``o_c - o_c(0)`` over the channels with enough clicks, and each delay is
moved to ``round(o_c(0) + drift)`` once it is off by more than ``1/2 + hysteresis`` UIs.
Uniform background (dark counts) adds nothing to a circular mean. The drift between two
tracking steps must stay below ``k/2 - 1/2`` UIs (the centroid is known modulo a bin), so
tracking needs ``k >= 2`` UIs per bin (``S >= 4``): at ``S = 2`` a UI is a whole bin and a
drift shows only as errors.
"""

import math

import numpy as np

__all__ = ["TRAINING_PATTERN", "ALIGN_ROLES", "Aligner", "template", "align_board",
           "track_board"]

#: Alice's training mode the start-up uses (``gateware.tx.symbols.TrainingMode``).
TRAINING_PATTERN = "alternating"
#: Channel roles (``gateware.sifting`` numbers: 0 Z, 1 X+, 2 X-) and their bin weights over
#: two symbols of the alternating pattern (even early, even late, odd early, odd late).
ALIGN_ROLES = {0: (1, 0, 0, 1), 1: (2, 1, 0, 1), 2: (2, 1, 0, 1)}


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (
            hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {bound}, not {value!r}")
    return int(value)


def template(role, uis_per_symbol):
    """The light of channel role ``role`` under the alternating pattern over two symbols
    (``2 S`` UIs, phase 0 the even symbol's first UI), each bin a triangle peaked at its
    centre: what :meth:`Aligner.startup` matches."""
    if role not in ALIGN_ROLES:
        raise ValueError(f"Channel role must be one of {sorted(ALIGN_ROLES)}, not {role!r}")
    k = uis_per_symbol // 2
    tri = np.minimum(np.arange(k) + 1, k - np.arange(k)).astype(float)
    return np.concatenate([w * tri for w in ALIGN_ROLES[role]])


def _circular_position(counts, k):
    """Centroid of ``counts`` (per UI phase) modulo ``k`` UIs, and the resultant length
    (0: no structure, 1: all in one phase)."""
    folded = np.asarray(counts, float).reshape(-1, k).sum(axis=0)
    total = folded.sum()
    if total <= 0:
        return math.nan, 0.0
    z = (folded * np.exp(2j * np.pi * np.arange(k) / k)).sum() / total
    return (np.angle(z) * k / (2 * np.pi)) % k, float(abs(z))


def _wrap(x, period):
    return (x + period / 2) % period - period / 2


class Aligner:
    """Bob's delay alignment for channels of ``roles`` at ``uis_per_symbol`` UIs per symbol,
    from histograms of ``period_symbols`` symbols (the board's ``histogram_period``).

    ``nominal_delays``: the delay (UIs) each channel's cables and detector are expected to
    need, one value or one per channel; start-up picks, among the delays that fit the
    histogram, the one nearest to it. ``min_counts``: clicks a channel's histogram needs to
    be used. ``hysteresis``: UIs beyond half a UI a delay must be off before it moves.

    :attr:`delays` are the current delays, :attr:`history` one dict per step (``kind``,
    ``delays``, ``drift_uis``, ``counts``).
    """

    def __init__(self, roles, uis_per_symbol, *, period_symbols=2, nominal_delays=0,
                 min_counts=200, hysteresis=0.15):
        self.roles = [int(r) for r in np.atleast_1d(roles)]
        for r in self.roles:
            if r not in ALIGN_ROLES:
                raise ValueError(f"Channel role must be one of {sorted(ALIGN_ROLES)}, not {r!r}")
        S = _check_int("UIs per symbol", uis_per_symbol, 2, 256)
        if S % 2:
            raise ValueError(f"UIs per symbol must be even, not {uis_per_symbol!r}")
        P = _check_int("Histogram period (symbols)", period_symbols, 1, 256)
        if P & (P - 1):
            raise ValueError(f"Histogram period must be a power of two, not {period_symbols!r}")
        self.S, self.k, self.P = S, S // 2, P
        C = len(self.roles)
        nominal = np.broadcast_to(np.asarray(nominal_delays), (C,))
        self.nominal = [_check_int("Nominal delay (UIs)", int(v) if float(v).is_integer()
                                   else v, 0) for v in nominal]
        self.min_counts = _check_int("min_counts", min_counts, 1)
        if not 0 <= hysteresis < 0.5:
            raise ValueError(f"hysteresis must be in [0, 0.5) UIs, not {hysteresis!r}")
        self.hysteresis = float(hysteresis)
        self.delays = list(self.nominal)
        self.reference = None             # o_c(0), UIs (NaN: a channel without enough light)
        self.drift = 0.0
        self.history = []

    @property
    def channels(self):
        return len(self.roles)

    def _counts(self, counts):
        counts = np.asarray(counts)
        shape = (self.channels, self.P * self.S)
        if counts.shape != shape:
            raise ValueError(f"Histogram must have shape {shape} (channels, period * S), not "
                             f"{counts.shape}")
        if np.any(counts < 0):
            raise ValueError("Histogram counts must not be negative")
        return counts.astype(float)

    def startup(self, counts, delays=None):
        """Delays from a histogram taken under the alternating training pattern with
        ``delays`` (default :attr:`delays`). Returns the new delays (also :attr:`delays`);
        raises ``ValueError`` naming a channel whose histogram has fewer than ``min_counts``
        clicks or no light in the pattern's shape."""
        if self.P < 2:
            raise ValueError("Start-up alignment needs a histogram period of 2 symbols or "
                             f"more (the alternating pattern), not {self.P}")
        counts = self._counts(counts)
        delays = list(self.delays if delays is None else delays)
        two = 2 * self.S
        new = []
        for c, role in enumerate(self.roles):
            h = counts[c].reshape(self.P // 2, two).sum(axis=0)
            if h.sum() < self.min_counts:
                raise ValueError(f"Channel {c} has {int(h.sum())} clicks in its training "
                                 f"histogram, fewer than min_counts = {self.min_counts}")
            t = template(role, self.S)
            # score[s] = sum_j h[(j + s) mod 2S] t[j]: the light at j + s is where the
            # template wants j when the delay grows by s.
            score = np.real(np.fft.ifft(np.fft.fft(h) * np.conj(np.fft.fft(t))))
            s = int(np.argmax(np.round(score, 9)))
            base = delays[c] + s
            m = round((self.nominal[c] - base) / two)
            new.append(max(base + m * two, base % two))
        self.delays = new
        self.reference = [self._position(counts[c], c, delays[c] - new[c])
                          for c in range(self.channels)]
        self.reference = [new[c] + e if not math.isnan(e) else math.nan
                          for c, e in enumerate(self.reference)]
        self.drift = 0.0
        self.history.append({"kind": "startup", "delays": list(new), "drift_uis": 0.0,
                             "counts": counts.sum(axis=1).tolist()})
        return list(new)

    def _position(self, h, c, shift=0):
        """``e_c``: where channel ``c``'s light sits relative to its bin centre (UIs), from
        histogram ``h`` taken with a delay ``shift`` UIs below the current one."""
        centre, strength = _circular_position(h, self.k)
        if math.isnan(centre) or strength < 0.05:
            return math.nan
        return _wrap(centre + shift - (self.k - 1) / 2, self.k)

    def track(self, counts, delays=None):
        """Move the delays with the drift seen in ``counts``, a data-mode histogram taken
        with ``delays`` (default :attr:`delays`). Returns the new delays. Channels with fewer
        than ``min_counts`` clicks do not vote; without any, nothing moves."""
        if self.reference is None:
            raise ValueError("track() before startup(): no reference position")
        if self.k < 2:
            raise ValueError(f"Tracking needs 2 or more UIs per bin (S >= 4), not S = {self.S}")
        counts = self._counts(counts)
        delays = list(self.delays if delays is None else delays)
        votes, weights = [], []
        for c in range(self.channels):
            n = counts[c].sum()
            if n < self.min_counts or math.isnan(self.reference[c]):
                continue
            e = self._position(counts[c], c)
            if math.isnan(e):
                continue
            moved = delays[c] + e - self.reference[c]
            # the centroid is known modulo a bin: take the drift nearest the last one
            moved = self.drift + _wrap(moved - self.drift, self.k)
            _, strength = _circular_position(counts[c], self.k)
            votes.append(moved)
            weights.append(n * strength ** 2)
        if votes:
            self.drift = float(np.average(votes, weights=weights))
        new = []
        for c in range(self.channels):
            ref = self.reference[c]
            if math.isnan(ref):
                ref = self.delays[c]
            target = ref + self.drift
            new.append(int(round(target)) if abs(target - delays[c]) > 0.5 + self.hysteresis
                       else delays[c])
        self.delays = [max(d, 0) for d in new]
        self.history.append({"kind": "track", "delays": list(self.delays),
                             "drift_uis": self.drift, "counts": counts.sum(axis=1).tolist()})
        return list(self.delays)

    def windows(self):
        """Window LUTs (lists of classes per phase) of the channels: Z windows for role 0, X
        windows for the X roles (:mod:`timebin.gateware.rx.binning`'s layout)."""
        k = self.k
        z = [0] * k + [1] * k
        x = [3] * k + [2] * k
        return [z if r == 0 else x for r in self.roles]


def _pack_windows(windows):
    return sum(int(c) << (2 * i) for i, c in enumerate(windows))


def align_board(alice, bob, aligner, *, clicks=2000, timeout=30.0, poll=0.05):
    """Start-up alignment of a pair of boards (:class:`~timebin.host.board.Board` clients):
    Alice to the alternating training pattern, Bob's histogram cleared and read once every
    channel has ``clicks`` clicks (or ``timeout`` seconds passed: ``TimeoutError``), his delays
    and windows set, Alice back to data. Returns the delays."""
    import time

    alice.set("training", 3)                        # TrainingMode.ALTERNATING
    bob.strobe("histogram_clear")
    deadline = time.monotonic() + timeout
    C = aligner.channels
    while True:
        counted = [bob.get(f"histogram_counted.{c}") for c in range(C)]
        if min(counted) >= clicks:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"Bob's histogram has {counted} clicks after {timeout} s; "
                               f"start-up needs {clicks} per channel")
        time.sleep(poll)
    delays = aligner.startup(bob.histogram(), [bob.get(f"delay.{c}") for c in range(C)])
    bob.write({**{f"delay.{c}": d for c, d in enumerate(delays)},
               **{f"windows.{c}": _pack_windows(w) for c, w in enumerate(aligner.windows())}})
    alice.set("training", 0)                        # TrainingMode.DATA
    bob.strobe("histogram_clear")
    return delays


def track_board(bob, aligner):
    """One tracking step on Bob's board: read and clear the histogram, move the delays
    (written only when they change). Returns the delays."""
    before = list(aligner.delays)
    hist = bob.histogram()
    bob.strobe("histogram_clear")
    delays = aligner.track(hist, before)
    if delays != before:
        bob.write({f"delay.{c}": d for c, d in enumerate(delays) if d != before[c]})
    return delays
