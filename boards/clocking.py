"""The fabric clock of a board: the FPGA's PLL from the board oscillator, and a synchronised
reset.

Ref: Lattice FPGA-TN-02200 (ECP5 sysCLOCK PLL/DLL design and usage guide: EHXPLLL, VCO
400-800 MHz, PFD >= 3.125 MHz; ECLKSYNCB and CLKDIVF for the x2 gearboxes), the divider search
of ``ecppll`` (prjtrellis); Lattice iCE40 sysCLOCK PLL design and usage guide (SB_PLL40,
simple feedback: VCO 533-1066 MHz, PFD 10-133 MHz) and the search of ``icepll`` (IceStorm).

Both generators drive the clock of the ``sync`` domain (which the top-level defines) at
``f_sys`` and hold its reset until the PLL has
locked (and, where the board has one, while its reset button is pressed), released through a
:class:`~amaranth.lib.cdc.ResetSynchronizer` (on the ECP5 its equivalent, then a DCCA global
buffer: see :func:`_reset_synchronizer`). An ECP5 generator asked for edge clocks (for
:class:`~timebin.boards.pins.PinOutputs` / ``PinInputs`` x2 gearboxes) runs the PLL at
``2 * f_sys`` into one ECLKSYNCB per I/O bank and derives ``sync`` from the first through a
CLKDIVF, so the gearboxes' SCLK and ECLK are phase related.
"""

from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Const, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import cdc, io

__all__ = ["PLLSettings", "ecp5_pll_settings", "ice40_pll_settings", "ECP5ClockGenerator",
           "ICE40ClockGenerator"]


@dataclass(frozen=True)
class PLLSettings:
    """Dividers of a PLL and the output frequency they give (``f_out_hz``, exact)."""

    f_in_hz: float
    f_out_hz: float
    f_vco_hz: float
    input_div: int          # ECP5 CLKI_DIV; iCE40 DIVR + 1
    feedback_div: int       # ECP5 CLKFB_DIV; iCE40 DIVF + 1
    output_div: int         # ECP5 CLKOP_DIV; iCE40 2**DIVQ
    filter_range: int = 0   # iCE40 only


def _check_frequency(what, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of Hz, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be within {low / 1e6:g}..{high / 1e6:g} MHz, "
                         f"not {value / 1e6:g} MHz")


def ecp5_pll_settings(f_in_hz, f_out_hz, *, tolerance=0.001):
    """The EHXPLLL dividers (CLKOP feedback) closest to ``f_out_hz`` from ``f_in_hz``.

    Raises ``ValueError`` naming the frequency when no setting is within ``tolerance``
    (relative) of it.
    """
    _check_frequency("ECP5 PLL input frequency", f_in_hz, 8e6, 400e6)
    _check_frequency("ECP5 PLL output frequency", f_out_hz, 3.125e6, 400e6)
    best = None
    for input_div in range(1, 129):
        f_pfd = f_in_hz / input_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for feedback_div in range(1, 81):
            f_out = f_pfd * feedback_div
            for output_div in range(1, 129):
                f_vco = f_out * output_div
                if not 400e6 <= f_vco <= 800e6:
                    continue
                error = abs(f_out - f_out_hz)
                # Prefer the smallest error, then the highest VCO (lowest jitter).
                key = (round(error, 3), -f_vco)
                if best is None or key < best[0]:
                    best = (key, PLLSettings(f_in_hz, f_out, f_vco, input_div, feedback_div,
                                             output_div))
    if best is None or abs(best[1].f_out_hz - f_out_hz) > tolerance * f_out_hz:
        raise ValueError(f"The ECP5 PLL cannot make {f_out_hz / 1e6:g} MHz from "
                         f"{f_in_hz / 1e6:g} MHz within {tolerance:.1%}")
    return best[1]


def ice40_pll_settings(f_in_hz, f_out_hz, *, tolerance=0.001):
    """The SB_PLL40 dividers (simple feedback) closest to ``f_out_hz`` from ``f_in_hz``."""
    _check_frequency("iCE40 PLL input frequency", f_in_hz, 10e6, 133e6)
    _check_frequency("iCE40 PLL output frequency", f_out_hz, 16e6, 275e6)
    best = None
    for divr in range(16):
        f_pfd = f_in_hz / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f_out = f_vco / (1 << divq)
                error = abs(f_out - f_out_hz)
                key = (round(error, 3), divr)
                if best is None or key < best[0]:
                    # icepll's filter range from the PFD frequency.
                    filter_range = next(i for i, top in enumerate(
                        (17e6, 26e6, 44e6, 66e6, 101e6, float("inf")), start=1) if f_pfd < top)
                    best = (key, PLLSettings(f_in_hz, f_out, f_vco, divr + 1, divf + 1,
                                             1 << divq, filter_range))
    if best is None or abs(best[1].f_out_hz - f_out_hz) > tolerance * f_out_hz:
        raise ValueError(f"The iCE40 PLL cannot make {f_out_hz / 1e6:g} MHz from "
                         f"{f_in_hz / 1e6:g} MHz within {tolerance:.1%}")
    return best[1]


def _reset_synchronizer(m, platform, ready, reset_resource, *, global_buffer=False):
    """``sync``'s reset: held while not ``ready`` or while the board's reset is pressed.

    ``global_buffer`` (ECP5): the synchronised reset reaches the fabric through a DCCA on a
    global network instead of general routing. The reset goes to thousands of flip-flops
    (and, where Yosys folds it into their next-state logic, LUTs); on general routing that
    net alone took 11 ns of the 6.4 ns cycle at 156.25 MHz. nextpnr promotes only clocks to
    globals by itself, but routes a DCCA it is given to fabric inputs as well."""
    hold = ~ready
    if reset_resource is not None:
        rst_io = platform.request(reset_resource, 0, dir="-")
        m.submodules.rst_buf = rst_buf = io.Buffer("i", rst_io)
        hold = hold | rst_buf.i
    if not global_buffer:
        m.submodules.reset_sync = cdc.ResetSynchronizer(hold, domain="sync")
        return
    # Asserted at once, released on a clock edge (as ResetSynchronizer), then the buffer.
    synced = Signal(init=1, name="rst_synced")
    m.submodules.reset_sync = cdc.AsyncFFSynchronizer(hold, synced, o_domain="sync",
                                                      async_edge="pos")
    m.submodules.rst_gbuf = Instance("DCCA", i_CLKI=synced, i_CE=Const(1),
                                     o_CLKO=ResetSignal("sync"))


class ECP5ClockGenerator(Elaboratable):
    """``sync`` at ``f_sys_hz`` from the board clock through an EHXPLLL.

    With ``edge_banks`` (the I/O banks of x2 gearboxes), the PLL runs at ``2 * f_sys_hz``
    into one ECLKSYNCB per bank (:attr:`eclk` maps bank to edge clock) and a CLKDIVF (÷2) makes
    ``sync``; all banks must be reachable from one PLL corner (nextpnr refuses otherwise).

    Attributes
    ----------
    settings : PLLSettings
        The PLL's dividers.
    eclk : dict of int to Signal
        The edge clock of each bank in ``edge_banks``.
    locked : Signal
        The PLL's lock (also holds ``sync`` in reset while low).
    """

    def __init__(self, *, clock_resource, f_in_hz, f_sys_hz, edge_banks=(),
                 reset_resource=None):
        self.clock_resource = clock_resource
        self.reset_resource = reset_resource
        self.f_sys_hz = f_sys_hz
        self.edge_banks = tuple(sorted(set(edge_banks)))
        pll_out = 2 * f_sys_hz if self.edge_banks else f_sys_hz
        self.settings = ecp5_pll_settings(f_in_hz, pll_out)
        self.eclk = {bank: Signal(name=f"eclk_bank{bank}") for bank in self.edge_banks}
        self.locked = Signal()

    @property
    def f_sys_actual_hz(self):
        """The exact ``sync`` frequency the dividers give."""
        return self.settings.f_out_hz / (2 if self.edge_banks else 1)

    def elaborate(self, platform):
        m = Module()
        s = self.settings
        clk_io = platform.request(self.clock_resource, 0, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
        clkop = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=s.output_div, p_CLKOP_CPHASE=s.output_div - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=s.feedback_div, p_CLKI_DIV=s.input_div,
            # The loop-filter settings ecppll emits for every configuration.
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            i_CLKI=clk_buf.i, i_CLKFB=clkop, i_RST=Const(0), i_STDBY=Const(0),
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(0),
            i_PHASESTEP=Const(0), i_PHASELOADREG=Const(0), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_CLKOP=clkop, o_LOCK=self.locked,
        )
        if self.edge_banks:
            for bank, eclk in self.eclk.items():
                m.submodules[f"eclksync_bank{bank}"] = Instance(
                    "ECLKSYNCB", i_ECLKI=clkop, i_STOP=Const(0), o_ECLKO=eclk)
            sclk = Signal()
            m.submodules.clkdiv = Instance(
                "CLKDIVF", p_DIV="2.0", i_CLKI=self.eclk[self.edge_banks[0]],
                i_RST=~self.locked, i_ALIGNWD=Const(0), o_CDIVX=sclk)
            m.d.comb += ClockSignal("sync").eq(sclk)
        else:
            m.d.comb += ClockSignal("sync").eq(clkop)
        # nextpnr derives the constraints of the PLL's, ECLKSYNCB's and CLKDIVF's outputs
        # from the oscillator pin's (the board resource's Clock).
        _reset_synchronizer(m, platform, self.locked, self.reset_resource, global_buffer=True)
        return m


class ICE40ClockGenerator(Elaboratable):
    """``sync`` at ``f_sys_hz`` from the board clock pad through an SB_PLL40_PAD."""

    def __init__(self, *, clock_resource, f_in_hz, f_sys_hz, reset_resource=None):
        self.clock_resource = clock_resource
        self.reset_resource = reset_resource
        self.f_sys_hz = f_sys_hz
        self.settings = ice40_pll_settings(f_in_hz, f_sys_hz)
        self.locked = Signal()
        self.edge_banks = ()
        self.eclk = {}

    @property
    def f_sys_actual_hz(self):
        return self.settings.f_out_hz

    def elaborate(self, platform):
        m = Module()
        s = self.settings
        clk_io = platform.request(self.clock_resource, 0, dir="-")
        pll_out = Signal()
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
            p_DIVR=s.input_div - 1, p_DIVF=s.feedback_div - 1,
            p_DIVQ=s.output_div.bit_length() - 1, p_FILTER_RANGE=s.filter_range,
            io_PACKAGEPIN=clk_io.io, i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=pll_out, o_LOCK=self.locked,
        )
        m.d.comb += ClockSignal("sync").eq(pll_out)
        platform.add_clock_constraint(pll_out, self.f_sys_actual_hz)
        _reset_synchronizer(m, platform, self.locked, self.reset_resource)
        return m
