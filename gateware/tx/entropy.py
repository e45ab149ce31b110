"""Alice's entropy: Trivium keystream for seeded runs, or an external QRNG under health tests.

Ref: C. De Canniere, B. Preneel, "Trivium", eSTREAM portfolio (2008), for the keystream;
NIST SP 800-90B (2018) section 4.4 for the online health tests of the QRNG.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import check_int, count_saturating, global_buffer, refuses_quietly
from .health import HealthTests
from .layouts import EntropyWord
from .trivium import WARMUP_ROUNDS, Trivium

__all__ = ["EntropySelect", "EntropySource", "CORE_BITS", "core_count", "check_core_bits"]

#: Keystream bits per Trivium core per cycle; wider words use several cores.
CORE_BITS = 64


def core_count(width, core_bits=CORE_BITS):
    """Trivium cores of ``core_bits`` (or health-test instances, 64 bits each) that a word of
    ``width`` bits needs."""
    return -(-width // core_bits)


def check_core_bits(core_bits):
    """Check a Trivium core width (keystream bits per cycle): a divisor of 1152 no larger than
    64. Raises ``TypeError``/``ValueError`` naming the value."""
    check_int("Trivium core width", core_bits, minimum=1, maximum=CORE_BITS)
    if WARMUP_ROUNDS % core_bits:
        raise ValueError(f"Trivium core width must divide {WARMUP_ROUNDS}, not {core_bits!r}")


class EntropySelect(enum.Enum, shape=1):
    """Where the symbol source's random bits come from."""

    CSPRNG = 0  #: Trivium keystream: reproducible from (key, IV); for tests and seeded runs.
    QRNG = 1    #: The external quantum RNG on the ``qrng`` port, under health tests.


class EntropySource(wiring.Component):
    """``width`` random bits per transfer, from Trivium or from a health-tested QRNG.

    **CSPRNG.** ``ceil(width / B)`` Trivium cores of ``B = core_bits`` keystream bits a cycle
    (default 64) run in lockstep; core ``c`` uses ``key`` and IV ``iv ^ c``, and bits
    ``[B c, B c + B)`` of a word are its ``B`` keystream bits (the last core's surplus bits are
    dropped). The cores load in the first cycle after reset and again in the cycle after
    ``reseed``; the keystream is valid ``2 + 1152 / B`` cycles after the load cycle (20 for
    ``B = 64``). Words are taken in keystream order, none skipped: the ``k``-th word taken is
    keystream word ``k`` (keystream bits ``[B k, B k + B)`` of each core). A ``B`` below 64
    (a divisor of 1152 no smaller than ``width``, e.g. 32 for a one-lane word of 25 bits)
    makes a core about half as large on a small FPGA; it changes which keystream bits make a
    word, so the host's model must use the same ``B`` (the transmitter's ``trivium_bits``).
    Every word is ``healthy``.

    **QRNG.** ``qrng`` words pass straight through (``qrng.ready`` is ``entropy.ready``). Bits
    ``[64 c, 64 c + 64)`` of each taken word go through health-test instance ``c``, a serial
    stream of binary samples bit 0 first (:class:`HealthTests`, SP 800-90B 4.4.1 and 4.4.2).
    A failure latches ``alarm`` until ``alarm_clear``; ``alarm`` is high already in the cycle
    of the failing word, and a word is ``healthy`` only while ``alarm`` is low. Words the
    transmitter does not take are not tested: the tests see exactly the bits that become
    symbols.

    Members
    -------
    take_next : In(1)
        High in the cycle before each cycle where ``source`` is ``CSPRNG`` and
        ``entropy.ready`` is high, and only then: the consumer knows it a cycle ahead (the
        :class:`~timebin.gateware.tx.top.Transmitter` registers ``source`` and the inputs of
        its ``ready``), so that the cores' shared clock enable can be a register.
    source : In(EntropySelect)
    key, iv : In(80)
        Trivium key and IV (see :class:`Trivium` for the bit order).
    reseed : In(1)
        Reload the Trivium cores from ``key`` and ``iv``.
    qrng : In(stream.Signature(width))
    rct_cutoff, apt_cutoff : In
        Health-test cutoffs for every instance; refused values flag ``settings_error``.
    alarm_clear : In(1)
    entropy : Out(stream.Signature(EntropyWord(width)))
    alarm : Out(1)
    health_fail_cycles : Out(32)
        Cycles in which any health test failed (saturating).
    settings_error : Out(1)

    Parameters
    ----------
    width : int
        Bits per entropy word.
    health_window, h_min, alpha :
        As :class:`HealthTests` (one instance per 64 bits of a QRNG word, whatever
        ``core_bits``).
    core_bits : int
        Keystream bits per Trivium core per cycle (:data:`CORE_BITS` by default), a divisor of
        1152 no larger than 64 (see :func:`check_core_bits`).
    """

    @refuses_quietly
    def __init__(self, width, *, health_window=1024, h_min=1.0, alpha=2**-40,
                 core_bits=CORE_BITS):
        check_int("Entropy width", width, minimum=1)
        check_core_bits(core_bits)
        self._width = width
        self._cores = core_count(width)
        self._core_bits = core_bits
        self._trivium_cores = core_count(width, core_bits)
        self._health = [
            HealthTests(min(CORE_BITS, width - c * CORE_BITS), window=health_window,
                        h_min=h_min, alpha=alpha)
            for c in range(self._cores)]
        first = self._health[0]
        super().__init__({
            "take_next": In(1),
            "source": In(EntropySelect),
            "key": In(80),
            "iv": In(80),
            "reseed": In(1),
            "qrng": In(stream.Signature(width)),
            "rct_cutoff": In(len(first.rct_cutoff), init=first.default_rct_cutoff),
            "apt_cutoff": In(len(first.apt_cutoff), init=first.default_apt_cutoff),
            "alarm_clear": In(1),
            "entropy": Out(stream.Signature(EntropyWord(width))),
            "alarm": Out(1),
            "health_fail_cycles": Out(32),
            "settings_error": Out(1),
        })

    @property
    def width(self):
        return self._width

    @property
    def cores(self):
        return self._cores

    @property
    def core_bits(self):
        """Keystream bits per Trivium core per cycle."""
        return self._core_bits

    def elaborate(self, platform):
        m = Module()
        width = self._width

        # CSPRNG: Trivium cores in lockstep, loaded together from a register (set after
        # reset, then a copy of `reseed`). The cores' state and word flip-flops (2,000 and
        # more at 16 lanes) see two control nets, both on global networks: `load` (select)
        # and one shared clock enable, `advance` (the cores' own formula, the same in every
        # core: they load together and count their warm-up together).
        load_r = Signal(init=1)
        m.d.sync += load_r.eq(self.reseed)
        load = global_buffer(m, platform, load_r, name="trivium_load")
        # The source select reaches every bit of the entropy word (hundreds of loads). It is
        # high for the QRNG: where the QRNG word is constant (a bench build without one), the
        # select then becomes the synchronous reset of the registers that take the word
        # straight from the global network, not through an inverter LUT that drives them all.
        use_qrng = global_buffer(m, platform, self.source == EntropySelect.QRNG,
                                 name="entropy_source")
        cores = []
        for c in range(self._trivium_cores):
            core = m.submodules[f"trivium{c}"] = Trivium(self._core_bits, external_advance=True)
            m.d.comb += [core.key.eq(self.key), core.iv.eq(self.iv ^ c), core.load.eq(load)]
            cores.append(core)
        keystream = Cat(core.keystream.payload for core in cores)[:width]
        # The cores run in lockstep, so core 0's valid is every core's. The clock enable
        # takes the source select from its register, not from the global network: a global
        # network in front of another would put two insertion delays on one path.
        keystream_valid = cores[0].keystream.valid
        ready = ((self.source == EntropySelect.CSPRNG) & keystream_valid
                 & self.entropy.ready)
        # `advance` (`load | warming | ready` of core 0) is a register, set a cycle ahead
        # from core 0's next `warming` and `valid`, the consumer's `take_next` and `reseed`
        # (the next cycle's load). The global network's input is then a flip-flop that the
        # placer can put beside it, not a LUT that gathers the top's `enable`, the source
        # select and core 0's counters from where they are (3.3-3.7 ns of route on the ULX3S
        # at L=32, of 7.1-7.3 ns paths).
        advance_r = Signal(name="trivium_advance_r", init=1)    # cycle 0 loads
        m.d.sync += advance_r.eq(self.reseed | cores[0].warming_next
                                 | (self.take_next & cores[0].valid_next))
        advance = global_buffer(m, platform, advance_r, name="trivium_advance")
        for core in cores:
            m.d.comb += [core.keystream.ready.eq(ready), core.advance.eq(advance)]

        # QRNG: health tests on every word taken.
        taken = use_qrng & self.qrng.valid & self.entropy.ready
        alarms, fails, errors = [], [], []
        for c, health in enumerate(self._health):
            m.submodules[f"health{c}"] = health
            m.d.comb += [
                health.samples.eq(self.qrng.payload[c * CORE_BITS:c * CORE_BITS + health.channels]),
                health.valid.eq(taken),
                health.clear.eq(self.alarm_clear),
                health.rct_cutoff.eq(self.rct_cutoff),
                health.apt_cutoff.eq(self.apt_cutoff),
            ]
            alarms.append(health.alarm)
            fails.append(health.fail)
            errors.append(health.settings_error)
        m.d.comb += [
            self.alarm.eq(Cat(alarms).any()),
            self.settings_error.eq(Cat(errors).any()),
            self.qrng.ready.eq(use_qrng & self.entropy.ready),
        ]
        count_saturating(m, self.health_fail_cycles, Cat(fails).any())

        with m.If(use_qrng):
            m.d.comb += [
                self.entropy.valid.eq(self.qrng.valid),
                self.entropy.payload.bits.eq(self.qrng.payload),
                self.entropy.payload.healthy.eq(~self.alarm),
            ]
        with m.Else():
            m.d.comb += [
                self.entropy.valid.eq(keystream_valid),
                self.entropy.payload.bits.eq(keystream),
                self.entropy.payload.healthy.eq(1),
            ]
        return m
