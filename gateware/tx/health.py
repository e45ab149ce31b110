"""Online health tests of Alice's quantum random number generator (QRNG) noise samples.

# Ref: NIST SP 800-90B, "Recommendation for the Entropy Sources Used for Random Bit
# Generation" (January 2018), section 4.4 (approved continuous health tests):
# 4.4.1 Repetition Count Test (RCT) and 4.4.2 Adaptive Proportion Test (APT).

DESIGN.md section 8: Alice's symbols must never come from a source that failed its health
tests. :class:`HealthTests` watches the raw binary samples of an external QRNG and raises a
latched ``alarm`` that the entropy consumer must honour.
"""

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import accepted_setting, check_int, count_saturating, refuses_quietly
from ..formulas import _check_real, sp800_90b_cutoffs

__all__ = ["MAX_CHANNELS", "MAX_WINDOW", "FAILURE_COUNTER_BITS", "sp800_90b_cutoffs",
           "check_health_parameters", "HealthTests"]

#: Most binary samples taken per cycle.
MAX_CHANNELS = 64
#: Longest APT window. SP 800-90B 4.4.2 uses W = 1024 for binary sources.
MAX_WINDOW = 65536
#: Width of the saturating failure counters.
FAILURE_COUNTER_BITS = 32
#: Smallest width of the RCT counter and ``rct_cutoff`` port: room to raise the cutoff at run
#: time (a lower ``alpha``) well beyond the default.
MIN_RCT_BITS = 8

def check_health_parameters(channels, window, h_min, alpha):
    """Check the construction parameters of :class:`HealthTests` (and of its model).

    Returns ``(rct_cutoff, apt_cutoff, rct_bits)``: the default cutoffs and the width of the
    RCT counter. Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one
    out of range, naming the value.
    """
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_int("APT window", window, minimum=2, maximum=MAX_WINDOW)
    if window & (window - 1):
        raise ValueError(f"APT window must be a power of two, not {window!r}")
    # Binary samples carry at most one bit of entropy each.
    h_min = _check_real("Min-entropy per binary sample", h_min, 0, 1, high_open=False)
    alpha = _check_real("False-positive probability alpha", alpha, 0, 1, high_open=True)
    rct_cutoff, apt_cutoff = sp800_90b_cutoffs(h_min, alpha, window)
    if window < channels:
        # At most one window starts in a cycle (a window of a few samples is no test anyway).
        raise ValueError(f"APT window must be at least the channel count {channels}, "
                         f"not {window!r}")
    if apt_cutoff > window:
        raise ValueError(
            f"APT window must be long enough for a cutoff at alpha={alpha!r}, "
            f"h_min={h_min!r} (the cutoff would be {apt_cutoff}), not {window!r}")
    rct_bits = max(MIN_RCT_BITS, bits_for(rct_cutoff))
    return rct_cutoff, apt_cutoff, rct_bits




def _popcount(m, value, name):
    """Number of ones in ``value``, as a balanced adder tree over a signal ``name``."""
    # The signal keeps each leaf a bit of one signal: the Python simulator would otherwise
    # evaluate the whole expression of ``value`` once per leaf.
    bits = Signal(len(value), name=name)
    m.d.comb += bits.eq(value)
    terms = list(bits)
    while len(terms) > 1:
        pairs = [a + b for a, b in zip(terms[0::2], terms[1::2], strict=False)]
        terms = pairs + terms[len(pairs) * 2:]
    return terms[0]


def _trailing_zeros(m, value, name):
    """Number of zeros below the lowest one of ``value``, which must not be zero."""
    bits = Signal(len(value), name=name)
    m.d.comb += bits.eq(value)
    return _popcount(m, ~bits & (bits - 1)[:len(bits)], f"{name}_below")


class _RepetitionCount(Elaboratable):
    """The RCT (SP 800-90B 4.4.1) on one word of samples; see :class:`HealthTests`.

    The serial test counts, for each sample, the length ``L`` of the run of identical samples
    it ends (``B`` in the spec) and fails the sample when ``L >= C``. Over a word this is:

    * the leading run of the word continues the run of the previous words if its first sample
      equals the last sample before (``A``): its length is ``B + P`` then, else ``P``, where
      ``P`` is the number of samples up to the first change;
    * every other run lies inside the word: some sample ends ``C`` identical samples inside the
      word iff the ``C - 1`` pairs of neighbours before it are all equal, found by a doubling
      network of ANDs over the vector of equal neighbours (log depth);
    * the count carried to the next word is the length of the word's last run.
    """

    def __init__(self, samples, valid, clear, cutoff, count_bits):
        self.samples = samples
        self.valid = valid
        self.clear = clear
        self.cutoff = cutoff
        self.count_bits = count_bits
        self.fail = Signal()

    def elaborate(self, platform):
        m = Module()
        s, n = self.samples, len(self.samples)
        # After reset and clear A = 0, B = 0: the first sample then gets B = 1 whatever its
        # value, as in step 2 of 4.4.1.
        value = Signal()
        count = Signal(self.count_bits)                 # saturates at all ones (>= any cutoff)
        a = Mux(self.clear, 0, value)
        b = Mux(self.clear, 0, count)

        same = Signal(n)                                # bit j: sample j equals sample j - 1
        m.d.comb += same.eq(~(s ^ Cat(a, s[:n - 1])))
        change = ~same[1:]                              # bit j - 1: a run starts at sample j
        leading = _trailing_zeros(m, Cat(0, change, 1), "leading")     # P, 1..n
        lead_run = Mux(same[0], b, 0) + leading
        last_run = _trailing_zeros(m, Cat(*reversed(list(Cat(1, change)))), "trailing") + 1
        run = Mux(leading == n, lead_run, last_run)     # the run the next word may continue

        # Runs inside the word: pairs[j] = (sample j == sample j - 1), for j >= 1.
        inside = Const(0)
        levels = (n - 1).bit_length()                   # enough for n - 1 pairs
        if levels:
            pairs = Cat(0, same[1:])
            span = self.cutoff - 1                      # pairs in a run of C samples
            ends = Const((1 << n) - 1, n)               # samples that end `span & mask` pairs
            for k in range(levels):
                # group: samples that end 2**k equal pairs. ends: samples that end the pairs
                # in the low k + 1 bits of `span`.
                step = 1 << k
                ends_k = Signal(n, name=f"run_ends_{k}")
                m.d.comb += ends_k.eq(Mux(span[k], pairs & (ends << step)[:n], ends))
                ends = ends_k
                if k + 1 < levels:
                    group = Signal(n, name=f"run_groups_{k + 1}")
                    m.d.comb += group.eq(pairs & (pairs << step)[:n])
                    pairs = group
            inside = ends.any() & (span[levels:] == 0)

        m.d.comb += self.fail.eq(self.valid & ((lead_run >= self.cutoff) | inside))
        top = (1 << self.count_bits) - 1
        with m.If(self.valid):
            m.d.sync += [value.eq(s[n - 1]), count.eq(Mux(run > top, top, run))]
        with m.Elif(self.clear):
            m.d.sync += [value.eq(0), count.eq(0)]
        return m


class _AdaptiveProportion(Elaboratable):
    """The APT (SP 800-90B 4.4.2) on one word of samples; see :class:`HealthTests`.

    The window is at least as long as the word, so at most one window starts in a word, at
    sample ``j0``. The samples before ``j0`` (all of them if none starts) are compared with the
    running window's ``A`` and those from ``j0`` with sample ``j0``, the new ``A``. Counting
    the matches of each part (popcounts) gives ``B`` at the end of each part; since ``B`` only
    grows within a window, a part holds a failing sample iff it holds a counted match and ends
    with ``B >= C``.
    """

    def __init__(self, samples, valid, clear, cutoff, window):
        self.samples = samples
        self.valid = valid
        self.clear = clear
        self.cutoff = cutoff
        self.window = window
        self.fail = Signal()

    def elaborate(self, platform):
        m = Module()
        s, n, window = self.samples, len(self.samples), self.window
        value = Signal()                                # A of the running window
        count = Signal(range(window + 1))               # B: at most W samples counted
        position = Signal(window.bit_length() - 1)      # of sample 0 in its window, mod W
        a = value
        b = Mux(self.clear, 0, count)
        pos = Mux(self.clear, 0, position)

        start = Signal(len(position))                   # j0 = (W - pos) mod W
        m.d.comb += start.eq(-pos)
        starts = start < n
        start_lane = start[:bits_for(n - 1)]            # exact when `starts`
        new = Mux(starts, (Const((1 << n) - 1, n) << start_lane)[:n], 0)
        a_new = s.bit_select(start_lane, 1)
        reference = (a.replicate(n) & ~new) | (a_new.replicate(n) & new)
        match = Signal(n)
        m.d.comb += match.eq(~(s ^ reference))
        new_count = _popcount(m, match & new, "new_matches")   # with the first sample: B = 1
        old_matches = _popcount(m, match, "matches") - new_count
        old_count = b + old_matches

        m.d.comb += self.fail.eq(self.valid & (
            ((old_matches != 0) & (old_count >= self.cutoff))
            | (starts & (new_count >= self.cutoff))))
        with m.If(self.valid):
            m.d.sync += [
                value.eq(Mux(starts, a_new, a)),
                count.eq(Mux(starts, new_count, old_count)),
                position.eq(pos + n),                   # mod W: W is a power of two
            ]
        with m.Elif(self.clear):
            m.d.sync += [count.eq(0), position.eq(0)]
        return m


class HealthTests(wiring.Component):
    """SP 800-90B continuous health tests on ``channels`` binary noise samples per cycle.

    The samples form one serial stream: sample ``j`` of a cycle is bit ``j`` of ``samples``
    (LSB first in time), and the cycles with ``valid`` high follow one another (a cycle with
    ``valid`` low holds no samples and leaves both tests where they were).

    * Repetition Count Test (4.4.1): ``B`` counts the run of identical samples ending at the
      current one; the sample fails when ``B >= rct_cutoff``. Every further sample of the same
      run fails too.
    * Adaptive Proportion Test (4.4.2): the stream is cut into contiguous, non-overlapping
      windows of ``window`` samples, the first starting at the first sample after reset or
      ``clear``. ``A`` is the first sample of a window and ``B`` counts the samples equal to
      ``A`` so far, the first included; a sample equal to ``A`` (not the first) fails when it
      brings ``B >= apt_cutoff``. Windows may begin anywhere in a word (``window`` need not be
      a multiple of ``channels``), but must be at least ``channels`` long.

    After a failure both tests keep running with their state untouched, so a stuck source keeps
    failing every sample. ``clear`` restarts both tests: the samples taken in the same cycle
    are the first of a new run and a new window.

    Timing: ``fail`` is combinational, high in the cycle whose samples failed (:attr:`latency`
    0). ``alarm`` is combinational too: high from that cycle on, latched until a cycle with
    ``clear`` high and no failing samples; ``~alarm`` can therefore gate the very samples that
    failed. The failure counters are registered: they count the cycles before the current one
    in which a test failed (once per cycle, however many of its samples failed), and stick at
    ``2**32 - 1``. ``clear`` does not reset them.

    Cutoffs are read every cycle and act on the samples of the same cycle. A refused value
    (``rct_cutoff < 2``, ``apt_cutoff < 2`` or ``apt_cutoff > window``) leaves the test on the
    last value accepted (the default after reset), and ``settings_error`` is high while a
    refused value is present.

    Parameters
    ----------
    channels : int
        Binary samples per cycle, 1..64.
    window : int
        APT window W in samples, a power of two in 2..65536, at least ``channels``.
        SP 800-90B: 1024 for binary sources.
    h_min : float
        Assessed min-entropy per sample H in bits, in (0, 1]; sets the default cutoffs.
    alpha : float
        False-positive probability of each test, in (0, 1); sets the default cutoffs. The RCT's
        alpha is per sample: at 2**-20 an ideal source fails it about once in 2**21 samples,
        so choose alpha for the sample rate.

    Members
    -------
    samples : In(channels)
        Binary noise samples, bit 0 first in time.
    valid : In(1)
        The samples are taken in cycles where it is high.
    rct_cutoff : In(rct_bits), init ``sp800_90b_cutoffs(h_min, alpha, window)[0]``
        RCT cutoff C, at least 2. ``rct_bits = max(8, bits_for(default))``.
    apt_cutoff : In(range(window + 1)), init ``sp800_90b_cutoffs(h_min, alpha, window)[1]``
        APT cutoff C, 2..``window``.
    clear : In(1)
        Clear the alarm and restart both tests.
    fail : Out(1)
        A test failed on the samples taken in this cycle (combinational).
    alarm : Out(1)
        A test failed in this cycle or since the last ``clear`` (combinational, latched).
    rct_failures, apt_failures : Out(32)
        Cycles before this one with a failure of each test, saturating (registered).
    settings_error : Out(1)
        High while a cutoff holds a refused value.
    """

    #: Cycles from the samples to the ``fail`` and ``alarm`` they cause.
    latency = 0

    @refuses_quietly
    def __init__(self, channels, window=1024, h_min=1.0, alpha=2**-20):
        rct_cutoff, apt_cutoff, rct_bits = check_health_parameters(
            channels, window, h_min, alpha)
        self.channels = channels
        self.window = window
        self.h_min = float(h_min)
        self.alpha = float(alpha)
        self.default_rct_cutoff = rct_cutoff
        self.default_apt_cutoff = apt_cutoff
        self.rct_bits = rct_bits
        super().__init__({
            "samples": In(channels),
            "valid": In(1),
            "rct_cutoff": In(unsigned(rct_bits), init=rct_cutoff),
            "apt_cutoff": In(range(window + 1), init=apt_cutoff),
            "clear": In(1),
            "fail": Out(1),
            "alarm": Out(1),
            "rct_failures": Out(FAILURE_COUNTER_BITS),
            "apt_failures": Out(FAILURE_COUNTER_BITS),
            "settings_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()

        # Settings: refuse cutoffs that would make a test fail on every sample, or never.
        rct_ok = self.rct_cutoff >= 2
        apt_ok = (self.apt_cutoff >= 2) & (self.apt_cutoff <= self.window)
        rct_cutoff = Signal.like(self.rct_cutoff, name="rct_cutoff_in_use")
        apt_cutoff = Signal.like(self.apt_cutoff, name="apt_cutoff_in_use")
        m.d.comb += [
            rct_cutoff.eq(accepted_setting(m, "rct_cutoff", self.rct_cutoff, rct_ok,
                                         self.default_rct_cutoff)),
            apt_cutoff.eq(accepted_setting(m, "apt_cutoff", self.apt_cutoff, apt_ok,
                                         self.default_apt_cutoff)),
            self.settings_error.eq(~rct_ok | ~apt_ok),
        ]

        rct = m.submodules.rct = _RepetitionCount(
            self.samples, self.valid, self.clear, rct_cutoff, self.rct_bits)
        apt = m.submodules.apt = _AdaptiveProportion(
            self.samples, self.valid, self.clear, apt_cutoff, self.window)

        latched = Signal()
        m.d.comb += [
            self.fail.eq(rct.fail | apt.fail),
            self.alarm.eq((latched & ~self.clear) | self.fail),
        ]
        m.d.sync += latched.eq(self.alarm)
        count_saturating(m, self.rct_failures, rct.fail)
        count_saturating(m, self.apt_failures, apt.fail)
        return m
