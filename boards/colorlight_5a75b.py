"""Colorlight 5A-75B (hardware revision 7.0), LFE5U-25F-6BG256C: Alice and loopback
top-levels (Bob needs input pins this board does not have, see below).

Ref: the reverse-engineered pinout of the 5A-75B V7.0 (q3k/chubby75, ``amaranth_boards.
colorlight_5a75b_r7_0``).

- **Clock**: the 25 MHz oscillator (P6) into an EHXPLLL; ``sync`` at 156.25 MHz by default.
- **Host link**: no USB on the board. The UART sits on header **J19**: FPGA TX on the
  DATA_LED- pin (P11, shared with the on-board LED, which therefore flickers with traffic),
  FPGA RX on KEY+ (M13, shared with the button); connect a 3.3 V USB-UART adapter there
  (3 Mbaud 8N1 needs an FT232H/FT2232H/CP2102N-class adapter).
- **Data pins**: the colour pins (R0 G0 B0 R1 G1 B1) of the eight HUB75 connectors J1-J8,
  48 pins, through ODDRX1F: 2 UIs per cycle per pin (312.5 Mb/s at 156.25 MHz at the FPGA
  ball). On this revision every HUB75 pin passes a 74HC245 buffer wired FPGA-to-connector,
  so the pins are **output-only** and far slower than the FPGA's I/O (a 74HC245 at 3.3 V
  manages a few tens of Mb/s): lower ``--freq-mhz`` or bypass the buffers (the common
  modification) for real signals. Bob's detector inputs cannot be placed, so Bob does not
  build here. (SDR output registers, the natural choice behind slow buffers, make
  yowasp-ecppack 0.11.1 crash on this device's configuration; DDR packs.)
- **LEDs**: none free (the LED is the UART's TX).

A 25k-LUT device: the default is 4 lanes (625 MS/s at 156.25 MHz).
"""

from amaranth.build import Attrs
from amaranth_boards.colorlight_5a75b_r7_0 import Colorlight_5A75B_R70Platform

from .common import BoardSpec
from .pins import DataPin

__all__ = ["Colorlight5A75BPlatform", "SPEC"]


class Colorlight5A75BPlatform(Colorlight_5A75B_R70Platform):
    """5A-75B V7.0 for building only (its programmer is run by ``timebin program``)."""

    @property
    def required_tools(self):
        return [tool for tool in super().required_tools if tool != "openFPGALoader"]


#: HUB75 positions of the colour pins (the others are shared row/clock lines and grounds).
_COLOUR_PINS = {"1": "R0", "2": "G0", "3": "B0", "5": "R1", "6": "G1", "7": "B1"}


def _hub75_pins():
    pins = []
    for connector in Colorlight5A75BPlatform.connectors:
        if connector.number > 8:
            continue
        for position, colour in _COLOUR_PINS.items():
            pins.append(DataPin(connector.mapping[position], "ddr", None,
                                f"J{connector.number}.{colour}", output_only=True))
    return tuple(pins)


SPEC = BoardSpec(
    name="colorlight-5a75b",
    title="Colorlight 5A-75B V7.0 (LFE5U-25F-6)",
    platform=Colorlight5A75BPlatform,
    family="ecp5",
    clock_resource="clk25",
    f_in_hz=25e6,
    default_freq_hz=156.25e6,
    default_lanes=4,
    data_pins=_hub75_pins(),
    pin_attrs=Attrs(IO_TYPE="LVCMOS33", DRIVE="8"),
    uart="header J19 (FPGA TX P11 = DATA_LED-, RX M13 = KEY+), 3.3 V USB-UART adapter",
    program_args=("-c", "ft232"),
    bitstream="bit",
    notes=(
        "Data pins: HUB75 colour pins of J1-J8 through ODDRX1F (2 UIs per cycle per pin), "
        "output-only (74HC245 buffers, a few tens of Mb/s); Bob's inputs cannot be placed.",
        "UART on header J19 shared with the LED (TX) and the button (RX).",
        "No QRNG: the transmitter's CSPRNG (Trivium keyed by the host) is the entropy source.",
    ),
)
