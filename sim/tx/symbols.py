"""Bit-exact reference model of :class:`timebin.gateware.tx.symbols.SymbolSource`.

Vectorised over cycles; the PRBS training patterns are generated from their recurrences in
blocks, so a run of 10^6 cycles takes well under a second.
"""

from typing import NamedTuple

import numpy as np

from ...gateware.common import check_int
from ...gateware.records import MAX_INTENSITY_CLASSES, PRBS_POLYNOMIALS, entropy_bits_per_lane
from ...gateware.tx.symbols import Protocol, SymbolSource, TrainingMode, probability_settings

__all__ = ["prbs_sequence", "lane_chunks", "SymbolSourceOutput", "SymbolSourceModel"]


def prbs_sequence(name, n):
    """The first ``n`` bits of the training PRBS ``name`` ("prbs7" or "prbs31").

    Fibonacci form of ITU-T O.150 (x^7 + x^6 + 1, x^31 + x^28 + 1), register initialised to
    all ones: ``b[k] = b[k - degree] ^ b[k - tap]``, the bits before ``b[0]`` being ones. This
    is the order in which :class:`SymbolSource` puts them on lanes 0, 1, ... of successive words.
    """
    if name not in PRBS_POLYNOMIALS:
        raise ValueError(f"PRBS must be one of {sorted(PRBS_POLYNOMIALS)}, not {name!r}")
    check_int("PRBS length", n, minimum=0)
    degree, tap = PRBS_POLYNOMIALS[name]
    bits = np.ones(degree + n, np.uint8)
    # The nearest dependency is `tap` bits back, so `tap` bits can be made at once.
    for start in range(degree, degree + n, tap):
        stop = min(start + tap, degree + n)
        bits[start:stop] = bits[start - degree:stop - degree] ^ bits[start - tap:stop - tap]
    return bits[degree:]


def lane_chunks(bits, lanes, bits_per_lane):
    """Split (N, lanes * bits_per_lane) entropy bits (0/1, LSB first) into (N, lanes) uint64
    lane values, lane ``i`` being bits ``[i * B, (i + 1) * B)``."""
    bits = np.asarray(bits, np.uint8)
    n = bits.shape[0]
    if bits_per_lane > 64:
        raise ValueError(f"Lane chunks hold at most 64 bits, not {bits_per_lane}")
    padded = np.zeros((n, lanes, 64), np.uint8)
    padded[:, :, :bits_per_lane] = bits[:, :lanes * bits_per_lane].reshape(
        n, lanes, bits_per_lane)
    packed = np.packbits(padded, axis=2, bitorder="little")
    return packed.view("<u8")[:, :, 0].astype(np.uint64)


class SymbolSourceOutput(NamedTuple):
    """Per-cycle outputs of :meth:`SymbolSourceModel.run` (``N`` cycles, ``L`` lanes).

    ``valid`` (N,) ``symbols.valid``; ``index`` (N,) uint64; ``basis``, ``bit``,
    ``intensity``, ``sym_valid``, ``dark`` (N, L) uint8 symbol fields (``sym_valid`` is the
    symbol's usable-for-key field); ``entropy_ready`` (N,) bool; ``underflow``, ``blanked``
    (N,) counters as the ports show them; ``settings_error`` (N,) bool.
    """

    valid: np.ndarray
    index: np.ndarray
    basis: np.ndarray
    bit: np.ndarray
    intensity: np.ndarray
    sym_valid: np.ndarray
    dark: np.ndarray
    entropy_ready: np.ndarray
    underflow: np.ndarray
    blanked: np.ndarray
    settings_error: np.ndarray


class SymbolSourceModel:
    """Reference model of :class:`~timebin.gateware.tx.symbols.SymbolSource`.

    Same parameters and checks. Settings (``protocol``, ``p_z``, ``thresholds``,
    ``training``, ``training_intensity``) hold from reset over a whole :meth:`run`; as in
    the gateware, ``p_z`` and ``thresholds`` act on the entropy from the third cycle after
    reset (the draws of the first two cycles' entropy use the construction defaults).
    """

    def __init__(self, lanes, prob_bits=12, p_z=0.9, intensity_probs=(0.7, 0.3)):
        check_int("Lane count", lanes, minimum=1)
        check_int("Probability precision", prob_bits, minimum=1, maximum=24)
        self.lanes = lanes
        self.prob_bits = prob_bits
        self.bits_per_lane = entropy_bits_per_lane(prob_bits)
        self.init_p_z, self.init_thresholds = probability_settings(
            prob_bits, p_z, intensity_probs)

    @property
    def entropy_width(self):
        return self.lanes * self.bits_per_lane

    def applied_settings(self, p_z=None, thresholds=None):
        """``(p_z, thresholds, error)`` the gateware uses when its ports hold these values
        from reset on (refused values fall back to the construction defaults)."""
        one = 1 << self.prob_bits
        limit = 1 << (self.prob_bits + 1)
        p_z = self.init_p_z if p_z is None else p_z
        thresholds = list(self.init_thresholds if thresholds is None else thresholds)
        check_int("P(Z) code", p_z, minimum=0, maximum=limit - 1)
        if len(thresholds) != MAX_INTENSITY_CLASSES - 1:
            raise ValueError(f"Thresholds must number {MAX_INTENSITY_CLASSES - 1}, "
                             f"not {thresholds!r}")
        for t in thresholds:
            check_int("Intensity threshold", t, minimum=0, maximum=limit - 1)
        error = False
        if p_z > one:
            p_z, error = self.init_p_z, True
        if not thresholds[0] <= thresholds[1] <= thresholds[2] <= one:
            thresholds, error = list(self.init_thresholds), True
        return p_z, thresholds, error

    def draw(self, chunks, p_z, thresholds, protocol):
        """Basis, bit, intensity (each (N, L) uint8) drawn from lane ``chunks`` (N, L)."""
        p = self.prob_bits
        mask = np.uint64((1 << p) - 1)
        chunks = np.asarray(chunks, np.uint64)
        r_basis = chunks & mask
        r_bit = (chunks >> np.uint64(p)) & np.uint64(1)
        r_int = chunks >> np.uint64(p + 1)
        is_x = r_basis >= np.uint64(p_z)
        bit = r_bit.astype(np.uint8)
        if Protocol(protocol) == Protocol.THREE_STATE:
            bit[is_x] = 0
        intensity = sum((r_int >= np.uint64(t)).astype(np.uint8) for t in thresholds)
        return is_x.astype(np.uint8), bit, intensity.astype(np.uint8)

    def run(self, enable, entropy_valid, entropy_chunks, entropy_healthy, blank=None, *,
            protocol=Protocol.THREE_STATE, p_z=None, thresholds=None,
            training=TrainingMode.DATA, training_intensity=0):
        """Run from reset over ``N`` cycles.

        ``enable``, ``entropy_valid``, ``entropy_healthy``, ``blank`` are (N,) per-cycle port
        values; ``entropy_chunks`` (N, L) the lane values of ``entropy.payload.bits`` (see
        :func:`lane_chunks`). Returns a :class:`SymbolSourceOutput`.
        """
        L = self.lanes
        enable = np.asarray(enable, bool)
        n = len(enable)
        entropy_valid = np.asarray(entropy_valid, bool)
        entropy_healthy = np.asarray(entropy_healthy, bool)
        blank = np.zeros(n, bool) if blank is None else np.asarray(blank, bool)
        for name, array in (("entropy_valid", entropy_valid),
                            ("entropy_healthy", entropy_healthy), ("blank", blank)):
            if array.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), not {array.shape}")
        entropy_chunks = np.asarray(entropy_chunks, np.uint64)
        if entropy_chunks.shape != (n, L):
            raise ValueError(f"entropy_chunks must have shape {(n, L)}, "
                             f"not {entropy_chunks.shape}")
        training = TrainingMode(training)
        protocol = Protocol(protocol)
        check_int("Training intensity", training_intensity, minimum=0, maximum=3)
        p_z, thresholds, error = self.applied_settings(p_z, thresholds)

        # What each cycle would latch (the input side of the output register).
        words_before = np.cumsum(enable) - enable                    # enabled cycles before c
        index_in = words_before.astype(np.uint64) * np.uint64(L)
        zeros = np.zeros((n, L), np.uint8)
        basis, bit, intensity, sym_valid, dark = (zeros.copy() for _ in range(5))
        data_mode = training == TrainingMode.DATA
        if data_mode:
            good = entropy_valid & entropy_healthy
            first = np.zeros(n, bool)
            # The entropy of cycle c is compared in cycle c + 2 against the lane copies of
            # p_z and thresholds, which hold the reset values in cycles 0 to 3.
            first[:2] = True
            for rows, (pz, th) in (
                    (good & ~first, (p_z, thresholds)),
                    (good & first, (self.init_p_z, self.init_thresholds))):
                b, t, i = self.draw(entropy_chunks[rows], pz, th, protocol)
                basis[rows], bit[rows], intensity[rows], sym_valid[rows] = b, t, i, 1
            dark[~good] = 1
        else:
            intensity[:] = training_intensity
            if training == TrainingMode.ALL_LATE:
                bit[:] = 1
            elif training == TrainingMode.ALTERNATING:
                bit[:] = ((index_in[:, None] + np.arange(L, dtype=np.uint64)) & 1).astype(
                    np.uint8)
            elif training in (TrainingMode.PRBS7, TrainingMode.PRBS31):
                total = int(enable.sum())
                seq = prbs_sequence(training.name.lower(), total * L).reshape(total, L)
                rows = np.minimum(words_before, max(total - 1, 0))
                if total:
                    bit[:] = seq[rows]
        for array in (basis, bit, intensity, sym_valid):
            array[blank] = 0
        dark[blank] = 1

        # Four register stages (SymbolSource.latency): cycle k shows what the last enabled
        # cycle before k - 3 drew.
        lat = SymbolSource.latency
        last = np.where(enable, np.arange(n), -1)
        last = np.maximum.accumulate(last)
        held = np.full(n, -1, np.int64)
        held[lat:] = last[:n - lat]
        present = held >= 0
        src = np.maximum(held, 0)

        def out(array):
            result = np.zeros_like(array)
            result[present] = array[src[present]]
            return result

        valid = np.zeros(n, bool)
        valid[lat:] = enable[:n - lat]
        ready = enable & data_mode
        under = enable & data_mode & ~entropy_valid
        blanked = enable & (blank | (data_mode & entropy_valid & ~entropy_healthy))
        top = (1 << 32) - 1

        def counted(condition):
            # A cycle's condition is registered, then counted: cycle c shows from c + 2.
            total = np.zeros(n, np.int64)
            total[2:] = np.cumsum(condition)[:max(n - 2, 0)]
            return np.minimum(total, top)

        return SymbolSourceOutput(
            valid=valid,
            index=out(index_in),
            basis=out(basis), bit=out(bit), intensity=out(intensity),
            sym_valid=out(sym_valid), dark=out(dark),
            entropy_ready=ready,
            underflow=counted(under),
            blanked=counted(blanked),
            settings_error=np.arange(n) > 0 if error else np.zeros(n, bool),   # registered
        )
