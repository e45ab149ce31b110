"""iCEBreaker (1BitSquared), iCE40UP5K-SG48: reduced Alice, Bob and loopback top-levels.

Ref: the iCEBreaker V1.0e schematic and ``amaranth_boards.icebreaker``.

- **Clock**: the 12 MHz oscillator (pin 35, a PLL pad) into an SB_PLL40_PAD; ``sync`` at
  18 MHz by default (the PLL's least multiple of 3 Mbaud): a whole Alice fills 98.9 % of
  the UP5K's logic cells, and the routing of so full a chip is slow (17.9 to 19.4 MHz
  achieved; the longest path is the register bank's read multiplexer, most of it routing);
  ``--freq-mhz 24`` builds the faster clock.
- **Host link**: the FT2232H's channel B as a USB-UART (FPGA RX pin 6, TX pin 9), 3 Mbaud
  8N1 (divisor 6 at 18 MHz, 8 at 24 MHz).
- **Data pins**: the 24 signal pins of PMOD1A, PMOD1B and PMOD2 through SB_IO DDR
  registers: 2 UIs per cycle per pin (36 Mb/s at 18 MHz). PMOD2 is also where the
  snap-off LED/button board sits; unplug it to use those pins.
- **LEDs**: red heartbeat, green PLL locked.

**Reduced build.** 5280 logic cells, 30 block RAMs of 4 kbit: the default is 1 lane
(18 MS/s) with small memories and counters (see ``SPEC.params``): Alice's symbol memory 256
words, her symbol log FIFO 2 words in block RAM (the symbol memory takes a word every cycle,
so the FIFO never holds more than one) and Trivium cores of 32 keystream bits a cycle (the
one-lane entropy word is 25 bits: a 64-bit core would drop 39 bits a cycle; still Trivium,
keyed as on the large boards, but the words take other keystream bits); Bob's binner delay
up to 255 UIs, 16-bit histogram counters, 256-cycle dead time, 4-deep merge FIFOs, 64-record
blocks; a loopback's sifter memory 256 words. The host link (``SPEC.params["link"]``,
:data:`~timebin.gateware.system.LINK_OPTIONS`): requests of up to 114 bytes (a 256-byte
deframer buffer, one block RAM per read port), a frame given up after 65535 cycles (3.6
ms) without a byte, 16-bit link counters that stick at 65535, a one-frame header queue; and,
with the same bytes in the same cycles as on the large boards, the description ROM and the
CRC-32 tables in block RAM, the link's counters and ``write_errors`` in the DSP blocks
(``SB_MAC16``). The host reads all of them from the board's description, as on the large
boards.
"""

from amaranth.build import Attrs
from amaranth_boards.icebreaker import ICEBreakerPlatform as _ICEBreakerPlatform

from .common import BoardSpec
from .pins import DataPin

__all__ = ["ICEBreakerPlatform", "SPEC"]


class ICEBreakerPlatform(_ICEBreakerPlatform):
    """iCEBreaker for building only (its programmer is run by ``timebin program``)."""

    @property
    def required_tools(self):
        return [tool for tool in super().required_tools if tool != "iceprog"]


def _pmod_pins():
    pins = []
    for connector, label in zip(ICEBreakerPlatform.connectors, ("PMOD1A", "PMOD1B", "PMOD2"),
                                strict=True):
        for position, ball in connector.mapping.items():
            pins.append(DataPin(ball, "ddr", None, f"{label}.{position}"))
    return tuple(pins)


SPEC = BoardSpec(
    name="icebreaker",
    title="iCEBreaker (iCE40UP5K-SG48)",
    platform=ICEBreakerPlatform,
    family="ice40",
    clock_resource="clk12",
    f_in_hz=12e6,
    default_freq_hz=18e6,
    default_lanes=1,
    data_pins=_pmod_pins(),
    pin_attrs=Attrs(IO_STANDARD="SB_LVCMOS"),
    uart="FT2232H channel B USB-UART (FPGA RX pin 6, TX pin 9)",
    led_resource="led",
    params={
        "alice": {"log_depth": 2, "health_window": 512, "trivium_bits": 32, "log_ram": True},
        "bob": {"max_delay": 255, "histogram_bits": 16, "max_dead_time": 255,
                "fifo_depth": 4, "max_window": 1 << 16},
        "board": {"alice": {"symbol_depth": 256}, "bob": {"max_records": 64},
                  "loopback": {"symbol_depth": 256}},
        "link": {"max_request": 114, "link_timeout": 65535, "counter_bits": 16,
                 "header_queue": 1, "description_ram": True, "crc_ram": True,
                 "counter_dsp": True},
    },
    program_args=("-b", "ice40_generic"),
    bitstream="bin",
    # Alice fills 96-99.8 % of the logic cells: the heap placer's placement routes at 17.9 MHz
    # (misses 18), the static placer's at 21.3 MHz.
    placer="static",
    notes=(
        "Reduced build: 1 lane, small memories and counters (boards.icebreaker SPEC.params).",
        "Alice fits (98.9 % of the logic cells, with nextpnr's static placer); Bob and the "
        "loopback do not (the receiver alone needs more than the device).",
        "Data pins: PMOD1A, PMOD1B, PMOD2 through SB_IO DDR (2 UIs per cycle per pin).",
        "No QRNG: the transmitter's CSPRNG (Trivium keyed by the host) is the entropy source.",
    ),
)
