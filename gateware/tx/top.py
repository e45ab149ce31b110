"""Alice's transmitter: entropy -> symbol source -> time-bin driver, plus the symbol log.

Ref: DESIGN.md sections 2-4. Every port is plain (no ``always_ready`` stream), so the top
converts to Verilog for cocotb and for a board wrapper; the register map of the host-link
issue drives these ports.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import check_int, count_saturating, refuses_quietly
from ..fifo import FlagFIFO
from .driver import (
    IM_LEVELS,
    PM_LEVELS,
    TimeBinDriver,
    check_driver_parameters,
    default_im_levels,
    default_pm_levels,
)
from .entropy import CORE_BITS, EntropySelect, EntropySource, check_core_bits
from .layouts import SerializerWord, SymbolWord
from .symbols import Protocol, SymbolSource, TrainingMode, probability_settings

__all__ = ["Transmitter"]


class Transmitter(wiring.Component):
    """The whole of Alice's gateware for ``lanes`` symbols of ``uis_per_symbol`` UIs a cycle.

    Data path: :class:`EntropySource` (Trivium or QRNG under health tests) feeds
    :class:`SymbolSource`, whose symbol words go to :class:`TimeBinDriver` (serializer words
    on ``ser``) and, through a FIFO of ``log_depth`` words, to the symbol ``log`` stream for
    the sifting memory.

    Timing: ``enable``, ``training`` and ``source`` are registered first, so they act a
    cycle after they are presented (the other settings act as their blocks say): ``enable``
    high in cycle ``c`` takes the entropy of cycle ``c + 1``. The entropy of cycle ``c``
    becomes the symbol word of cycle ``c + 4`` and the serializer word of cycle ``c + 9``
    (plus each output's fine delay); the symbol word enters the log FIFO in cycle ``c + 4``
    (:attr:`latency` = 10: ``enable`` to serializer). The registers let the keystream's
    shared clock enable be a register too (:class:`EntropySource` ``take_next``).

    The QRNG health alarm (``alarm``) blanks every symbol, in data and training modes and
    whichever source is selected, from the cycle of the failing word until ``alarm_clear``:
    no pulse leaves, and the logged symbols are dark and not valid for key.

    The log never stalls the symbols: a word that finds the FIFO full is dropped and counted
    in ``log_dropped`` (and ``log_overflow`` goes high); the gap shows in the log indexes.

    ``settings_error`` is high from the cycle after any block holds a refused setting, as
    long as it does (each block's flag registered once, each of the symbol source's checks
    on its own: the acceptance checks end at flip-flops near them, not at one far output);
    low in the first cycle after reset.

    Parameters
    ----------
    lanes, uis_per_symbol, dac_bits, pm_bits, max_delay :
        As :class:`TimeBinDriver`.
    prob_bits, p_z, intensity_probs :
        As :class:`SymbolSource` (the reset values of the probability settings).
    health_window, h_min, alpha :
        As :class:`HealthTests` (the window and the reset values of the cutoffs). The default
        ``alpha = 2**-40`` is the lower end of SP 800-90B's range, suited to Gb/s sources.
    log_depth : int
        Words of the symbol log FIFO.
    trivium_bits : int
        Keystream bits per Trivium core per cycle, as :class:`EntropySource`'s ``core_bits``
        (default 64). A smaller divisor of 1152 (32 for one lane, whose entropy word is 25
        bits) halves the cipher's logic on a small FPGA; the CSPRNG is Trivium either way, but
        the words take other keystream bits and the keystream is valid later (``2 + 1152 /
        trivium_bits`` cycles after reset). It is in :attr:`params` only when not 64, so that
        the description of a board on the default is unchanged.
    log_ram : bool
        Keep the log FIFO's words in block RAM (:class:`FlagFIFO` ``ram``): same behaviour,
        fewer flip-flops on a small FPGA. In :attr:`params` only when true.
    """

    #: Cycles from ``enable`` to ``ser`` at zero fine delay (one more than from the entropy:
    #: the top's input registers).
    latency = 1 + SymbolSource.latency + TimeBinDriver.latency

    @refuses_quietly
    def __init__(self, *, lanes, uis_per_symbol, prob_bits=12, p_z=0.9,
                 intensity_probs=(0.7, 0.3), dac_bits=8, pm_bits=1, max_delay=None,
                 health_window=1024, h_min=1.0, alpha=2**-40, log_depth=16,
                 trivium_bits=CORE_BITS, log_ram=False):
        # Check everything before building any block, so a bad value leaves nothing behind.
        check_int("Log FIFO depth", log_depth, minimum=2, maximum=1 << 16)
        if not isinstance(log_ram, bool):
            raise TypeError(f"Log FIFO in RAM must be a bool, not {log_ram!r}")
        check_core_bits(trivium_bits)
        check_int("Lane count", lanes, minimum=1)
        check_int("Probability precision", prob_bits, minimum=1, maximum=24)
        probability_settings(prob_bits, p_z, intensity_probs)
        check_driver_parameters(lanes, uis_per_symbol, dac_bits, pm_bits, max_delay)
        self.symbol_source = SymbolSource(lanes=lanes, prob_bits=prob_bits, p_z=p_z,
                                          intensity_probs=intensity_probs)
        self.driver = TimeBinDriver(lanes=lanes, uis_per_symbol=uis_per_symbol,
                                    dac_bits=dac_bits, pm_bits=pm_bits, max_delay=max_delay)
        self.entropy_source = EntropySource(self.symbol_source.entropy_width,
                                            health_window=health_window, h_min=h_min,
                                            alpha=alpha, core_bits=trivium_bits)
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.dac_bits = dac_bits
        self.pm_bits = pm_bits
        self.max_delay = self.driver.max_delay
        self.log_depth = log_depth
        self.params = dict(lanes=lanes, uis_per_symbol=uis_per_symbol, prob_bits=prob_bits,
                           p_z=p_z, intensity_probs=tuple(intensity_probs), dac_bits=dac_bits,
                           pm_bits=pm_bits, max_delay=self.max_delay,
                           health_window=health_window, h_min=h_min, alpha=alpha,
                           log_depth=log_depth)
        if trivium_bits != CORE_BITS:
            self.params["trivium_bits"] = trivium_bits
        self.log_ram = log_ram
        if log_ram:
            self.params["log_ram"] = True
        src, drv, ent = self.symbol_source, self.driver, self.entropy_source
        k = drv.uis_per_bin
        delay = len(drv.delay_carver)
        super().__init__({
            # Entropy
            "source": In(EntropySelect),
            "key": In(80),
            "iv": In(80),
            "reseed": In(1),
            "qrng": In(stream.Signature(ent.width)),
            "rct_cutoff": In(len(ent.rct_cutoff), init=ent.rct_cutoff.init),
            "apt_cutoff": In(len(ent.apt_cutoff), init=ent.apt_cutoff.init),
            "alarm_clear": In(1),
            # Symbols
            "enable": In(1),
            "protocol": In(Protocol),
            "p_z": In(len(src.p_z), init=src.p_z.init),
            "thresholds": In(src.thresholds.shape(), init=src._init["thresholds"]),
            "training": In(TrainingMode),
            "training_intensity": In(2),
            # Driver
            "pulse_offset": In(range(k + 1), init=0),
            "pulse_width": In(range(k + 1), init=k),
            "im_levels": In(data.ArrayLayout(dac_bits, IM_LEVELS),
                            init=default_im_levels(dac_bits)),
            "im_idle": In(dac_bits),
            "pm_levels": In(data.ArrayLayout(pm_bits, PM_LEVELS),
                            init=default_pm_levels(pm_bits)),
            "delay_carver": In(delay),
            "delay_im": In(delay),
            "delay_pm": In(delay),
            # Outputs
            "ser": Out(SerializerWord(lanes, uis_per_symbol, dac_bits, pm_bits)),
            "ser_valid": Out(1),
            "log": Out(stream.Signature(SymbolWord(lanes))),
            # Status
            "alarm": Out(1),
            "settings_error": Out(1),
            "underflow": Out(32),
            "blanked": Out(32),
            "health_fail_cycles": Out(32),
            "log_dropped": Out(32),
            "log_overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ent = m.submodules.entropy = self.entropy_source
        src = m.submodules.symbols = self.symbol_source
        drv = m.submodules.driver = self.driver
        log = m.submodules.log_fifo = FlagFIFO(
            width=len(self.log.payload.as_value()), depth=self.log_depth, ram=self.log_ram,
            wide=True)

        # `enable`, `training` and `source` from registers: the entropy's consumer then
        # knows a cycle ahead whether it takes a keystream word (`take_next`).
        enable = Signal(name="enable_r")
        training = Signal(TrainingMode, name="training_r")
        source = Signal(EntropySelect, name="source_r")
        m.d.sync += [enable.eq(self.enable), training.eq(self.training),
                     source.eq(self.source)]
        m.d.comb += ent.take_next.eq((self.source == EntropySelect.CSPRNG) & self.enable
                                     & (self.training == TrainingMode.DATA))
        m.d.comb += [ent.source.eq(source), src.enable.eq(enable), src.training.eq(training)]
        for name in ("key", "iv", "reseed", "rct_cutoff", "apt_cutoff", "alarm_clear"):
            m.d.comb += getattr(ent, name).eq(getattr(self, name))
        for name in ("protocol", "p_z", "thresholds", "training_intensity"):
            m.d.comb += getattr(src, name).eq(getattr(self, name))
        for name in ("pulse_offset", "pulse_width", "im_levels", "im_idle", "pm_levels",
                     "delay_carver", "delay_im", "delay_pm"):
            m.d.comb += getattr(drv, name).eq(getattr(self, name))

        wiring.connect(m, wiring.flipped(self.qrng), ent.qrng)
        wiring.connect(m, ent.entropy, src.entropy)
        wiring.connect(m, src.symbols, drv.i_symbols)
        m.d.comb += [
            src.blank.eq(ent.alarm),
            self.ser.eq(drv.o_ser.payload),
            self.ser_valid.eq(drv.o_ser.valid),
        ]

        # Symbol log: never back-pressures the symbols; drops are counted. Its write enable
        # is a copy of `symbols.valid` (the top's `enable` register SymbolSource.latency
        # cycles on), a flip-flop of its own by the FIFO's flags: `symbols.valid` itself
        # sits by the driver's lanes, and the flags' logic went out to it and back (6.5-7.0
        # ns on the ULX3S at L=32).
        log_valid = enable
        for i in range(SymbolSource.latency):
            last = i == SymbolSource.latency - 1
            step = Signal(name="log_valid_replica" if last else f"log_valid_d{i + 1}")
            m.d.sync += step.eq(log_valid)
            log_valid = step
        m.d.comb += [
            log.w_en.eq(log_valid),
            log.w_data.eq(src.symbols.payload),
            self.log.valid.eq(log.r_rdy),
            self.log.payload.eq(log.r_data),
            log.r_en.eq(self.log.ready),
        ]
        count_saturating(m, self.log_dropped, log_valid & ~log.w_rdy)

        # The symbol source's flag is registered already (each of its checks on its own).
        errors = Signal(2)
        m.d.sync += errors.eq(Cat(ent.settings_error, drv.settings_error))
        m.d.comb += [
            self.alarm.eq(ent.alarm),
            self.settings_error.eq(errors.any() | src.settings_error),
            self.underflow.eq(src.underflow),
            self.blanked.eq(src.blanked),
            self.health_fail_cycles.eq(ent.health_fail_cycles),
            self.log_overflow.eq(self.log_dropped != 0),
        ]
        return m
