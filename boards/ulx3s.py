"""ULX3S (Radiona), LFE5U-85F-6BG381C: Alice, Bob and loopback top-levels.

Ref: the ULX3S schematic (v3.1.7) and ``amaranth_boards.ulx3s``.

- **Clock**: the 25 MHz oscillator (G2) into an EHXPLLL; ``sync`` at 156.25 MHz by default.
- **Host link**: the FT231X USB-UART (FPGA RX on M1, TX on L4), 3 Mbaud 8N1 (the FT231X's
  maximum).
- **Data pins**: the 56 pins of the GPIO header J1/J2 (``gp0..27``, ``gn0..27``), LVCMOS33.
  The 16 pins ``gp14..21``/``gn14..21`` sit in banks 2 and 3 (right edge), reachable from the
  upper-right PLL's edge clocks: as outputs they carry 4 UIs per cycle through ODDRX2F
  gearboxes (625 Mb/s per pin at 156.25 MHz); as inputs IDDRX2F exists on the ``gp`` pins
  only, so the ``gn`` pins run as DDR inputs. The other 40 (banks 0, 1 on the top edge and
  bank 7 on the left, whose edge clocks the same PLL cannot reach) use ODDRX1F/IDDRX1F, 2 UIs
  per cycle (312.5 Mb/s). 144 UIs per cycle out in all: Alice at L=16 (carver, 2-bit IM
  code, PM bit: 128 UIs) fits; at L=32 the PM and lower IM bits are left unpinned (kept in
  the fabric and reported). Bob at L=16 (2 channels: 64 UIs in, 64 gate UIs out) fits; at
  L=32 the inputs take every pin and the gate words are unpinned. The header's traces are
  not length-matched; these rates are what the I/O cells do, not a characterised link.
- **LEDs**: D0 heartbeat, D1 PLL locked.

No SERDES on this FPGA (LFE5U has no DCU).
"""

from amaranth.build import Attrs
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .common import BoardSpec
from .pins import DataPin

__all__ = ["ULX3SPlatform", "SPEC"]


class ULX3SPlatform(ULX3S_85F_Platform):
    """ULX3S-85F for building only: openFPGALoader is not a required tool (``timebin
    program`` runs it)."""

    @property
    def required_tools(self):
        return [tool for tool in super().required_tools if tool != "openFPGALoader"]


def _header_pins():
    mapping = ULX3SPlatform.connectors[0].mapping
    edge = {}       # ball -> bank of the x2-capable pins the upper-right PLL reaches
    for n in range(14, 18):
        edge[mapping[f"{n}+"]] = edge[mapping[f"{n}-"]] = 3
    for n in range(18, 22):
        edge[mapping[f"{n}+"]] = edge[mapping[f"{n}-"]] = 2
    pins = []
    for n in range(28):
        for sign, prefix in (("+", "gp"), ("-", "gn")):
            ball = mapping[f"{n}{sign}"]
            if ball in edge:
                # IDDRX2F exists on the first pin of each pair only (gp, not gn).
                pins.append(DataPin(ball, "x2", edge[ball], f"{prefix}{n}",
                                    x2_input=prefix == "gp"))
            else:
                pins.append(DataPin(ball, "ddr", 7 if 8 <= n <= 13 else None, f"{prefix}{n}"))
    # The x2 pins first: they carry twice the UIs.
    return tuple(sorted(pins, key=lambda pin: pin.gearbox != "x2"))


SPEC = BoardSpec(
    name="ulx3s",
    title="ULX3S (LFE5U-85F-6)",
    platform=ULX3SPlatform,
    family="ecp5",
    clock_resource="clk25",
    f_in_hz=25e6,
    default_freq_hz=156.25e6,
    default_lanes=16,
    data_pins=_header_pins(),
    pin_attrs=Attrs(IO_TYPE="LVCMOS33", DRIVE="8", SLEWRATE="FAST"),
    uart="FT231X USB-UART (FPGA RX M1, TX L4)",
    led_resource="led",
    program_args=("-b", "ulx3s"),
    bitstream="bit",
    notes=(
        "Data pins: GPIO header gp/gn14..21 (banks 2, 3) through ODDRX2F/IDDRX2F gearboxes "
        "(4 UIs per cycle per pin), the other 40 header pins through ODDRX1F/IDDRX1F (2 UIs); "
        "the word leaves in parallel, not as one serial line.",
        "No QRNG: the transmitter's CSPRNG (Trivium keyed by the host) is the entropy source.",
    ),
)
