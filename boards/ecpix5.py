"""ECPIX-5 (LambdaConcept), LFE5UM5G-85F-8BG554I: Alice, Bob and loopback top-levels.

Ref: the ECPIX-5 schematic (rev. 02) and ``amaranth_boards.ecpix5``.

- **Clock**: the 100 MHz oscillator (K23) into an EHXPLLL; ``sync`` at 156.25 MHz by
  default. The reset button (AB1) holds ``sync`` in reset.
- **Host link**: the FT2232H's second channel as a USB-UART (FPGA RX R26, TX R24), 3 Mbaud
  8N1 (the first channel is JTAG).
- **Data pins**: the 64 signal pins of the eight PMOD headers, LVCMOS33, through
  ODDRX1F/IDDRX1F DDR registers: 2 UIs per cycle per pin (312.5 Mb/s at 156.25 MHz), 128 UIs
  per cycle in all, in parallel.
- **SERDES: not done.** The LFE5UM5G's DCUs (5 Gb/s per channel, the natural PHY of a
  2.5 GS/s time-bin link) are routed on this board only to the SATA connector and the USB-C
  mux; driving them needs the DCUA primitive with its ~200 settings, the EXTREFB reference
  clock and the reset/lock sequence of Lattice FPGA-TN-02206, none of which is written or
  tested here. The data word therefore uses the PMOD pins as above.
- **LEDs**: RGB LED 0 green heartbeat, RGB LED 1 green PLL locked.
"""

from amaranth.build import Attrs
from amaranth_boards.ecpix5 import ECPIX585Platform

from .common import BoardSpec
from .pins import DataPin

__all__ = ["ECPIX5Platform", "SPEC"]


class ECPIX5Platform(ECPIX585Platform):
    """ECPIX-5 85F for building only (its programmer is run by ``timebin program``)."""

    @property
    def required_tools(self):
        return [tool for tool in super().required_tools if tool != "openFPGALoader"]


def _pmod_pins():
    pins = []
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
    data_pins=_pmod_pins(),
    pin_attrs=Attrs(IO_TYPE="LVCMOS33", SLEWRATE="FAST"),
    uart="FT2232H channel B USB-UART (FPGA RX R26, TX R24)",
    reset_resource="rst",
    led_resource="rgb_led",
    program_args=("-b", "ecpix5"),
    bitstream="bit",
    notes=(
        "Data pins: the 64 PMOD pins through ODDRX1F/IDDRX1F (2 UIs per cycle per pin), in "
        "parallel.",
        "The DCU SERDES is not used (not done): see timebin.boards.ecpix5.",
        "No QRNG: the transmitter's CSPRNG (Trivium keyed by the host) is the entropy source.",
    ),
)
