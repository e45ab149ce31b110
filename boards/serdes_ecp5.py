"""The ECP5-5G DCU SERDES as a transmit serializer PHY: one word of ``width`` unit intervals
(UIs) per ``sync`` cycle and channel onto a differential pair at ``width * f_sys`` bit/s.

Ref: Lattice TN1261 (FPGA-TN-02206) "ECP5 and ECP5-5G SERDES/PCS Usage Guide": two channels
per DCU (dual channel unit) sharing one reference clock and one TX PLL; the "8-bit SERDES
only" and "10-bit SERDES only" modes (``CHx_PROTOCOL`` ``8BSER``/``10BSER``, PCS bypassed, no
8b10b); 2:1 TX gearing (``CHx_TX_GEAR_MODE``) for a 16- or 20-bit FPGA interface at half
the byte clock; the TX PLL's multiplier (``D_REFCK_MODE``) and divider
(``D_TX_VCO_CK_DIV``); the reset sequence (TX PLL, then the PCS lane). The DCUA primitive's
port and parameter names are nextpnr-ecp5's (prjtrellis); where TN1261 leaves a setting
"undocumented", the values are those of Lattice's IPexpress/Clarity SERDES wizard for a
``10BSER`` DCU as recorded by the Yumewatari project (whitequark) and used by LiteICLink.

What the PHY does with a word (DESIGN.md section 3: bit ``k`` of a word is UI ``k``, UI 0
earliest): the DCU sends each byte of its data bus least significant bit first (Lattice
answer record 1179 for the LatticeECP3 PCS, whose SERDES the ECP5's derives from per TN1261's
introduction: in 10-bit SERDES-only mode the first 8b10b bit, ``a``, is bus bit 0) and, with
2:1 gearing, the byte on bus bits 0-9 before the byte on bits 12-21; :func:`bus_bit` places
UI ``k`` on the bus bit the serializer sends ``k``-th. :func:`serial_order` is the reference
model of that order (the bits of the bus in the order they leave the pin).

Clocking: the TX PLL takes ``sync`` itself as its reference (fabric-routed to
``D_REFCLKI``) with the multiplier equal to ``width``, and the FPGA side of the channel
(``CHx_FF_TXI_CLK``) is ``sync`` too: the line rate is exactly ``width * f_sys`` and the
channel takes one word per ``sync`` cycle, with no clock crossing in the fabric (the PCS's
TX FPGA-bridge FIFO sits between ``sync`` and the channel's byte clock, which the TX PLL
makes from the same ``sync``, so only their phase differs; the FIFO's error flag,
``CHx_FFS_TXFBFIFO_ERROR``, is :attr:`DCUTransmitter.fifo_error`). A board's dedicated
SERDES reference (EXTREFB) comes from its own oscillator, not frequency-locked to ``sync``:
the word would then need a rate-matching clock crossing, which a symbol stream cannot have
(no idle symbols to drop or repeat). A fabric-routed reference adds jitter that the TX PLL filters
only in part; a lab that needs less should drive the board's PLL input from the same
reference as the SERDES.

Not known from here (no board was at hand): the DCU's own latency from ``CHx_FF_TX_D`` to
the pin, which differs from the DDR pins' (the transmitter's per-output delays compensate
per field, so a field split between the DCU and DDR pins is skewed by the difference); and
whether the wizard's loop settings lock the TX PLL at line rates far from 2.5-3.125 Gb/s.
"""

from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import cdc

__all__ = ["DCU_WIDTHS", "TX_BUS_BITS", "MIN_LINE_RATE", "MAX_LINE_RATE", "DCUChannel",
           "bus_bit", "serial_order", "line_rate", "DCUResetSequencer", "DCUTransmitter",
           "reset_sequence_model"]

#: FPGA interface widths (UIs per ``sync`` cycle and channel): 8 or 10 bits ungeared, 16 or
#: 20 bits with 2:1 gearing.
DCU_WIDTHS = (8, 10, 16, 20)

#: Width of a channel's ``CHx_FF_TX_D_*`` bus: two 12-bit halves (one byte each with 2:1
#: gearing), of which bits 0-7 (8-bit mode) or 0-9 (10-bit mode) carry data.
TX_BUS_BITS = 24

#: The line rates of the ECP5-5G DCU (TN1261, "Features": 270 Mb/s to 5 Gb/s).
MIN_LINE_RATE = 270e6
MAX_LINE_RATE = 5e9

#: ``D_REFCK_MODE``: the TX PLL multiplier (line rate / reference clock), TN1261.
_REFCK_MODE = {20: "0b000", 10: "0b001", 16: "0b010", 8: "0b011", 25: "0b100"}

#: ``D_TX_MAX_RATE`` (Gb/s) settings the tools know, lowest first.
_MAX_RATES = (("2.5", 2.5e9), ("3.125", 3.125e9), ("5.0", 5e9))


@dataclass(frozen=True)
class DCUChannel:
    """A DCU channel a board routes to a connector: DCU ``dcu`` (0 or 1), channel ``channel``
    (0 or 1), the balls of its TX pair (``tx_p``, ``tx_n``) and the board resource that names
    them (``resource``, its subsignal ``tx``), for the build report and the LPF."""

    dcu: int
    channel: int
    tx_p: str
    tx_n: str
    resource: tuple
    label: str = ""

    def __post_init__(self):
        for what, value in (("DCU", self.dcu), ("DCU channel", self.channel)):
            if value not in (0, 1):
                raise ValueError(f"{what} must be 0 or 1, not {value!r}")


def _check_width(width):
    if width not in DCU_WIDTHS:
        raise ValueError(f"DCU interface width must be one of {DCU_WIDTHS}, not {width!r}")


def bus_bit(width, k):
    """The ``CHx_FF_TX_D`` bus bit that carries UI ``k`` of a ``width``-bit word."""
    _check_width(width)
    if not 0 <= k < width:
        raise ValueError(f"UI index must be within 0..{width - 1}, not {k!r}")
    byte = 8 if width in (8, 16) else 10
    return k if k < byte else 12 + (k - byte)


def serial_order(width):
    """Reference model of the DCU's serializer: the bus bits of a ``width``-bit interface in
    the order they leave the pin (TN1261: each byte least significant bit first; with 2:1
    gearing the first byte, bus bits 0.., before the second, bus bits 12..)."""
    _check_width(width)
    byte = 8 if width in (8, 16) else 10
    first = list(range(byte))
    return first + [12 + b for b in range(byte)] if width > 10 else first


def line_rate(width, f_sys_hz):
    """The line rate (bit/s) of a ``width``-bit channel at ``f_sys_hz``; ``ValueError`` naming
    it when the DCU cannot run at it."""
    _check_width(width)
    rate = width * f_sys_hz
    if not MIN_LINE_RATE <= rate <= MAX_LINE_RATE:
        raise ValueError(f"A {width}-bit DCU channel at {f_sys_hz / 1e6:g} MHz runs at "
                         f"{rate / 1e9:g} Gb/s, outside the ECP5-5G DCU's "
                         f"{MIN_LINE_RATE / 1e9:g}..{MAX_LINE_RATE / 1e9:g} Gb/s")
    return rate


def reset_sequence_model(pll_lost, *, hold_cycles, lock_cycles, sync_stages=2):
    """Reference model of :class:`DCUResetSequencer`: for each cycle of ``pll_lost`` (the
    DCU's ``D_FFS_PLOL`` per ``sync`` cycle), the tuple ``(tx_serdes_rst, tx_pcs_rst,
    ready)`` the sequencer drives in that cycle."""
    out = []
    lost_sync = [1] * sync_stages          # the synchroniser's flip-flops, reset high
    state, count = "hold", 0
    for lost in pll_lost:
        seen = lost_sync[-1]
        if state == "hold":
            out.append((1, 1, 0))
            count += 1
            if count == hold_cycles:
                state, count = "lock", 0
        elif state == "lock":
            out.append((0, 1, 0))
            count = 0 if seen else count + 1
            if count == lock_cycles:
                state = "ready"
        else:
            out.append((0, 0, 1))
            if seen:
                state, count = "hold", 0
        lost_sync = [int(lost)] + lost_sync[:-1]
    return out


class DCUResetSequencer(Elaboratable):
    """The TX reset sequence of a DCU (TN1261, "reset sequence"), in ``sync``: hold the TX
    serializer (``D_FFC_TRST``) and the channels' PCS (``CHx_FFC_LANE_TX_RST``) in reset for
    ``hold_cycles``; release the serializer and wait until the TX PLL has been locked
    (``pll_lost`` low, through a synchroniser) for ``lock_cycles`` in a row; then release the
    PCS and raise ``ready``. A loss of lock while ready starts again.

    Members
    -------
    pll_lost : Signal, in
        ``D_FFS_PLOL`` (asynchronous).
    tx_serdes_rst, tx_pcs_rst, ready : Signal, out
    """

    def __init__(self, *, hold_cycles=1024, lock_cycles=1024):
        for what, value in (("Reset hold", hold_cycles), ("PLL lock wait", lock_cycles)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive number of cycles, not {value!r}")
        self.hold_cycles = hold_cycles
        self.lock_cycles = lock_cycles
        self.pll_lost = Signal()
        self.tx_serdes_rst = Signal()
        self.tx_pcs_rst = Signal()
        self.ready = Signal()

    def elaborate(self, platform):
        m = Module()
        lost = Signal()
        m.submodules.lost_sync = cdc.FFSynchronizer(self.pll_lost, lost, init=1)
        count = Signal(range(max(self.hold_cycles, self.lock_cycles) + 1))
        with m.FSM(name="dcu_reset"):
            with m.State("hold"):
                m.d.comb += [self.tx_serdes_rst.eq(1), self.tx_pcs_rst.eq(1)]
                m.d.sync += count.eq(count + 1)
                with m.If(count == self.hold_cycles - 1):
                    m.d.sync += count.eq(0)
                    m.next = "lock"
            with m.State("lock"):
                m.d.comb += self.tx_pcs_rst.eq(1)
                m.d.sync += count.eq(count + 1)
                with m.If(lost):
                    m.d.sync += count.eq(0)
                with m.Elif(count == self.lock_cycles - 1):
                    m.next = "ready"
            with m.State("ready"):
                m.d.comb += self.ready.eq(1)
                with m.If(lost):
                    m.d.sync += count.eq(0)
                    m.next = "hold"
        return m


class DCUTransmitter(Elaboratable):
    """Transmit ``width``-UI words on the channels ``channels`` (:class:`DCUChannel`, all of
    one DCU) of an ECP5-5G DCU, one word per ``sync`` cycle and channel, at
    ``width * f_sys_hz`` bit/s.

    Parameters
    ----------
    channels : tuple of DCUChannel
        One or both channels of a DCU.
    width : int
        UIs per cycle and channel (:data:`DCU_WIDTHS`).
    f_sys_hz : float
        The ``sync`` frequency (the TX PLL's reference).
    reset : dict
        :class:`DCUResetSequencer` arguments.

    Members
    -------
    data : list of Signal(width), in
        The word of each channel (in ``channels`` order); bit ``k`` is UI ``k``, UI 0 first
        on the line. Registered once before the DCU.
    tx_bus : list of Signal(24), out
        What each channel's ``CHx_FF_TX_D_0..23`` receive (for tests).
    ready : Signal, out
        The TX PLL is locked and the channels out of reset.
    fifo_error : Signal, out
        A channel's TX FPGA-bridge FIFO reports an error (``CHx_FFS_TXFBFIFO_ERROR``).
    """

    def __init__(self, channels, *, width, f_sys_hz, reset=None):
        channels = tuple(channels)
        if not channels or not all(isinstance(ch, DCUChannel) for ch in channels):
            raise TypeError(f"DCU channels must be a non-empty tuple of DCUChannel, "
                            f"not {channels!r}")
        if len({ch.dcu for ch in channels}) != 1:
            raise ValueError(f"DCU channels must be of one DCU, not of DCUs "
                             f"{sorted({ch.dcu for ch in channels})}")
        if len({ch.channel for ch in channels}) != len(channels):
            raise ValueError(f"DCU channels must be distinct, not "
                             f"{[ch.channel for ch in channels]}")
        self.channels = channels
        self.width = width
        self.line_rate = line_rate(width, f_sys_hz)
        self.f_sys_hz = f_sys_hz
        self.sequencer = DCUResetSequencer(**(reset or {}))
        self.data = [Signal(width, name=f"dcu_ch{ch.channel}_word") for ch in channels]
        self.tx_bus = [Signal(TX_BUS_BITS, name=f"dcu_ch{ch.channel}_tx_d") for ch in channels]
        self.ready = Signal()
        self.fifo_error = Signal()

    @property
    def dcu(self):
        return self.channels[0].dcu

    @property
    def words(self):
        """The word of each channel by the ball of its TX pair's positive pin."""
        return {ch.tx_p: data for ch, data in zip(self.channels, self.data, strict=True)}

    def parameters(self):
        """The DCUA parameters (name without ``p_`` to value): the DCU's, then each used
        channel's (``CHx_``), the unused channel powered down.

        ``CHx_PROTOCOL``, ``D_TX_MAX_RATE``, ``CHx_TXAMPLITUDE`` and ``CHx_TXDEPRE``/``POST``
        are Lattice's software-level settings (Diamond derives configuration bits from
        them); nextpnr and prjtrellis have no bits for them and ignore them. The bits that
        make the mode in the open flow are ``D_BUS8BIT_SEL``, ``CHx_UC_MODE``,
        ``CHx_ENC_BYPASS``, the gearing and clock enables, ``D_REFCK_MODE`` /
        ``D_TX_VCO_CK_DIV`` and the driver's ``CHx_TDRV_*`` and ``CHx_RTERM_TX``."""
        geared = self.width > 10
        byte_bits = 8 if self.width in (8, 16) else 10
        max_rate = next(name for name, rate in _MAX_RATES if self.line_rate <= rate)
        params = {
            # Power: the macro and the TX PLL on (D_IB_PWDNB: the reference input buffer).
            "D_MACROPDB": "0b1", "D_IB_PWDNB": "0b1", "D_TXPLL_PWDNB": "0b1",
            # TX PLL: reference x width = line rate; VCO undivided; its bit clock is local.
            "D_REFCK_MODE": _REFCK_MODE[self.width], "D_TX_VCO_CK_DIV": "0b000",
            "D_TX_MAX_RATE": max_rate, "D_BITCLK_LOCAL_EN": "0b1", "D_BITCLK_ND_EN": "0b0",
            "D_BITCLK_FROM_ND_EN": "0b0", "D_SYNC_LOCAL_EN": "0b1", "D_SYNC_ND_EN": "0b0",
            # The PMA's 8-bit bus (8BSER) or 10-bit bus (10BSER).
            "D_BUS8BIT_SEL": "0b1" if byte_bits == 8 else "0b0",
            # TX PLL (CMU) loop settings TN1261 leaves undocumented: the SERDES wizard's.
            "D_CMUSETBIASI": "0b00", "D_CMUSETI4CPP": "0d3", "D_CMUSETI4CPZ": "0d3",
            "D_CMUSETI4VCO": "0b00", "D_CMUSETICP4P": "0b01", "D_CMUSETICP4Z": "0b101",
            "D_CMUSETINITVCT": "0b00", "D_CMUSETISCL4VCO": "0b000", "D_CMUSETP1GM": "0b000",
            "D_CMUSETP2AGM": "0b000", "D_CMUSETZGM": "0b000", "D_SETIRPOLY_AUX": "0b01",
            "D_SETICONST_AUX": "0b01", "D_SETPLLRC": "0d1", "D_PLL_LOL_SET": "0b00",
        }
        used = {ch.channel for ch in self.channels}
        for x in (0, 1):
            c = f"CH{x}_"
            if x not in used:
                params.update({c + "TPWDNB": "0b0", c + "RPWDNB": "0b0"})
                continue
            params.update({
                # Raw SERDES: no 8b10b, no CTC, user-configured PCS.
                c + "PROTOCOL": "8BSER" if byte_bits == 8 else "10BSER",
                c + "UC_MODE": "0b1", c + "ENC_BYPASS": "0b1", c + "DEC_BYPASS": "0b1",
                c + "CTC_BYPASS": "0b1", c + "PCIE_MODE": "0b0",
                # Transmitter on, receiver off (this PHY only transmits).
                c + "TPWDNB": "0b1", c + "RPWDNB": "0b0",
                # Full rate, 2:1 gearing for 16/20 bits: the FPGA clock is the byte clock / 2.
                c + "RATE_MODE_TX": "0b0",
                c + "TX_GEAR_MODE": "0b1" if geared else "0b0",
                c + "FF_TX_H_CLK_EN": "0b1" if geared else "0b0",
                c + "FF_TX_F_CLK_DIS": "0b1" if geared else "0b0",
                c + "INVERT_TX": "0b0", c + "LDR_CORE2TX_SEL": "0b0",
                # Driver: 50 ohm termination, about 1 V differential, no de-emphasis; the
                # slices' currents and roles are the SERDES wizard's for that amplitude.
                c + "RTERM_TX": "0d19", c + "TXAMPLITUDE": "0d1000",
                c + "TXDEPRE": "DISABLED", c + "TXDEPOST": "DISABLED",
                c + "TDRV_SLICE0_CUR": "0b011", c + "TDRV_SLICE0_SEL": "0b01",
                c + "TDRV_SLICE1_CUR": "0b000", c + "TDRV_SLICE1_SEL": "0b00",
                c + "TDRV_SLICE2_CUR": "0b11", c + "TDRV_SLICE2_SEL": "0b01",
                c + "TDRV_SLICE3_CUR": "0b10", c + "TDRV_SLICE3_SEL": "0b01",
                c + "TDRV_SLICE4_CUR": "0b00", c + "TDRV_SLICE4_SEL": "0b00",
                c + "TDRV_SLICE5_CUR": "0b00", c + "TDRV_SLICE5_SEL": "0b00",
            })
        return params

    def elaborate(self, platform):
        m = Module()
        m.submodules.sequencer = seq = self.sequencer
        m.d.comb += self.ready.eq(seq.ready)
        for data, bus in zip(self.data, self.tx_bus, strict=True):
            word = Signal(self.width, name=f"{data.name}_reg")
            m.d.sync += word.eq(data)
            for k in range(self.width):
                m.d.comb += bus[bus_bit(self.width, k)].eq(word[k])
        if platform is None:        # simulation: the bus is the PHY's output
            return m

        ports = {}
        fifo_errors = []
        for ch, bus in zip(self.channels, self.tx_bus, strict=True):
            c = f"CH{ch.channel}_"
            pins = platform.request(*ch.resource, dir="-").tx
            error = Signal(name=f"dcu_ch{ch.channel}_fifo_error")
            fifo_errors.append(error)
            ports.update({f"i_{c}FF_TX_D_{n}": bus[n] for n in range(TX_BUS_BITS)})
            ports.update({
                f"o_{c}HDOUTP": pins.p, f"o_{c}HDOUTN": pins.n,
                f"i_{c}FF_TXI_CLK": ClockSignal("sync"),
                f"i_{c}FFC_TXPWDNB": Const(1), f"i_{c}FFC_RXPWDNB": Const(0),
                f"i_{c}FFC_LANE_TX_RST": seq.tx_pcs_rst,
                f"i_{c}FFC_LANE_RX_RST": Const(1), f"i_{c}FFC_RRST": Const(1),
                f"o_{c}FFS_TXFBFIFO_ERROR": error,
            })
        errors_any = Signal()
        m.d.comb += errors_any.eq(_any(fifo_errors))
        m.submodules.fifo_error_sync = cdc.FFSynchronizer(errors_any, self.fifo_error)
        m.submodules.dcu = Instance(
            "DCUA",
            a_LOC=f"DCU{self.dcu}",
            **{f"p_{name}": value for name, value in self.parameters().items()},
            i_D_REFCLKI=ClockSignal("sync"),
            i_D_FFC_MACROPDB=Const(1),
            i_D_FFC_MACRO_RST=seq.tx_serdes_rst, i_D_FFC_DUAL_RST=seq.tx_serdes_rst,
            i_D_FFC_TRST=seq.tx_serdes_rst,
            o_D_FFS_PLOL=seq.pll_lost,
            **ports,
        )
        return m


def _any(signals):
    value = signals[0]
    for signal in signals[1:]:
        value = value | signal
    return value
