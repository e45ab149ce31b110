"""ECPIX-5 (LambdaConcept), LFE5UM5G-85F-8BG554I: Alice, Bob and loopback top-levels.

Ref: the ECPIX-5 schematic (rev. 02) and ``amaranth_boards.ecpix5``.

- **Clock**: the 100 MHz oscillator (K23) into an EHXPLLL; ``sync`` at 156.25 MHz by
  default. The reset button (AB1) holds ``sync`` in reset.
- **Host link**: the FT2232H's second channel as a USB-UART (FPGA RX R26, TX R24), 3 Mbaud
  8N1 (the first channel is JTAG).
- **SERDES**: the LFE5UM5G-85F has two DCUs of two channels. The board routes DCU1
  channel 0 to the SATA connector (TX AD16/AD17, RX AF15/AF16; ``amaranth_boards.ecpix5``
  resource ``sata``; DCU1 channel 0 as in LiteICLink's ECPIX-5 bench) with a 100 MHz
  reference on EXTREF1 (AF12/AF13), and DCU0's two channels to the USB-C connector through a
  USB 3 mux (``usbc_mux``), which this build neither configures nor uses; DCU1 channel 1 is
  not routed. The SATA TX pair is the first data pin (``dcu``, 16 UIs per cycle as one
  serial line at ``16 * f_sys``: 2.5 Gb/s at 156.25 MHz), driven by
  :class:`~timebin.boards.serdes_ecp5.DCUTransmitter` in 8-bit SERDES mode with 2:1
  gearing; its TX PLL takes ``sync`` as its reference (x16), not the EXTREF1 oscillator,
  so that the line is frequency-locked to the word (see :mod:`timebin.boards.serdes_ecp5`).
  The SATA receiver is not used (Bob's detector samples come from the PMOD pins).
- **Data pins**: the SATA TX, then the 64 signal pins of the eight PMOD headers, LVCMOS33,
  through ODDRX1F/IDDRX1F DDR registers: 2 UIs per cycle per pin (312.5 Mb/s at 156.25 MHz),
  in parallel. The fields take the pins in priority order, so the carver's UIs 0-15 leave on
  the SATA line (all of the carver word at 8 lanes of 2 UIs, its first half at 16 lanes),
  and the rest on the PMOD pins.
- **LEDs**: RGB LED 0 green heartbeat, RGB LED 1 green PLL locked, RGB LED 2 green DCU
  transmitter ready (TX PLL locked, no FPGA-bridge FIFO error).
- **Registers**: the DCU transmitter's state also reaches the host: ``data_phy_ready`` (TX PLL
  locked, channel out of reset) and ``data_phy_errors`` (rising edges of the FIFO error) of
  every role's map (:meth:`~timebin.boards.common.BoardTop.elaborate`).
"""

from amaranth.build import Attrs
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io
from amaranth_boards.ecpix5 import ECPIX585Platform

from .common import BoardSpec
from .pins import GEARBOX_RATIO, DataPin
from .serdes_ecp5 import DCUChannel, DCUTransmitter

__all__ = ["ECPIX5Platform", "SATA_TX", "SATATransmitter", "SPEC"]

#: The SATA connector's transmit pair: DCU1 channel 0.
SATA_TX = DCUChannel(dcu=1, channel=0, tx_p="AD16", tx_n="AD17", resource=("sata", 0),
                     label="sata.tx")


class ECPIX5Platform(ECPIX585Platform):
    """ECPIX-5 85F for building only (its programmer is run by ``timebin program``)."""

    @property
    def required_tools(self):
        return [tool for tool in super().required_tools if tool != "openFPGALoader"]


class SATATransmitter(Elaboratable):
    """The ECPIX-5's DCU transmitter (:attr:`phy`) with its state on RGB LED 2: green while
    the TX PLL is locked, the channel out of reset and its FPGA-bridge FIFO without error.

    ``words`` is the PHY's (see :class:`~timebin.boards.pins.PinOutputs`); ``ready`` (TX PLL
    locked, channel out of reset) and ``error`` (the FPGA-bridge FIFO's error flag, in
    ``sync``) are the PHY's ``ready`` and ``fifo_error``, for the board's registers
    (:attr:`~timebin.boards.common.BoardSpec.serdes`)."""

    def __init__(self, phy):
        self.phy = phy
        self.words = phy.words
        self.ready = phy.ready
        self.error = phy.fifo_error

    def elaborate(self, platform):
        m = Module()
        m.submodules.dcu = self.phy
        if platform is not None:
            led = platform.request("rgb_led", 2, dir="-").g
            m.submodules.led = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(self.phy.ready & ~self.phy.fifo_error)
        return m


def _serdes(pins, *, f_sys_hz):
    """The PHY of the ``dcu`` data pins: the SATA TX channel, one word of 16 UIs per cycle."""
    channels = {SATA_TX.tx_p: SATA_TX}
    unknown = [pin.ball for pin in pins if pin.ball not in channels]
    if unknown:
        raise ValueError(f"The ECPIX-5 has no DCU channel at {unknown!r}")
    return SATATransmitter(DCUTransmitter(tuple(channels[pin.ball] for pin in pins),
                                          width=GEARBOX_RATIO["dcu"], f_sys_hz=f_sys_hz))


def _data_pins():
    pins = [DataPin(SATA_TX.tx_p, "dcu", None, f"{SATA_TX.label} (DCU1 CH0)",
                    output_only=True)]
    for connector in ECPIX5Platform.connectors:
        for position, ball in connector.mapping.items():
            pins.append(DataPin(ball, "ddr", None, f"pmod{connector.number}.{position}"))
    return tuple(pins)


SPEC = BoardSpec(
    name="ecpix5",
    title="ECPIX-5 (LFE5UM5G-85F-8)",
    platform=ECPIX5Platform,
    family="ecp5",
    clock_resource="clk100",
    f_in_hz=100e6,
    default_freq_hz=156.25e6,
    default_lanes=16,
    data_pins=_data_pins(),
    pin_attrs=Attrs(IO_TYPE="LVCMOS33", SLEWRATE="FAST"),
    uart="FT2232H channel B USB-UART (FPGA RX R26, TX R24)",
    reset_resource="rst",
    led_resource="rgb_led",
    program_args=("-b", "ecpix5"),
    bitstream="bit",
    serdes=_serdes,
    notes=(
        "Data pins: the SATA connector's TX pair through DCU1 channel 0 (16 UIs per cycle, one "
        "serial line at 16 x f_sys, TX PLL referenced to sync), then the 64 PMOD pins through "
        "ODDRX1F/IDDRX1F (2 UIs per cycle per pin), in parallel.",
        "DCU0 (USB-C, behind its mux) and the SATA receiver are not used: see "
        "timebin.boards.ecpix5.",
        "No QRNG: the transmitter's CSPRNG (Trivium keyed by the host) is the entropy source.",
    ),
)
