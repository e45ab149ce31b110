"""The FPGA end of FTDI's synchronous "245" FIFO bus: FT2232H / FT232H (8 bits) and FT600 /
FT601 (16 / 32 bits), between the chip's pins and two byte streams.

Ref: FTDI DS_FT2232H section 4.4 and AN_130 (FT245 style synchronous FIFO mode: 60 MHz
CLKOUT, ADBUS[7:0], RXF#, TXE#, RD#, WR#, OE#, SIWU#); FTDI DS_FT600Q-FT601Q, "245
synchronous FIFO mode" (66 / 100 MHz CLK, DATA[15:0] / [31:0], BE[1:0] / [3:0], same
handshake). A word crosses the bus on a rising clock edge where RD# and RXF# are both low
(chip to FPGA) or WR# and TXE# are both low (FPGA to chip); the chip drives DATA (and BE)
while OE# is low. The cycle model of the chip is :class:`timebin.sim.link.ft245.FT245Chip`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common import check_int, count_saturating, refuses_quietly

__all__ = ["WIDTHS", "COUNTER_BITS", "FIFO_DEPTH", "DEFAULT_MAX_BURST", "check_width",
           "check_max_burst", "BusMode", "FT245SyncFIFO"]

#: Bus widths in bits: 8 (FT2232H, FT232H), 16 (FT600), 32 (FT601).
WIDTHS = (8, 16, 32)
#: Width of the saturating counters.
COUNTER_BITS = 32
#: Words each direction buffers between the bus and its byte stream.
FIFO_DEPTH = 4
#: Default of ``max_burst``.
DEFAULT_MAX_BURST = 64


def check_width(width):
    """Check an FT245 bus ``width`` in bits: one of :data:`WIDTHS`."""
    if not isinstance(width, int) or isinstance(width, bool):
        raise TypeError(f"FT245 bus width must be an integer, not {width!r}")
    if width not in WIDTHS:
        raise ValueError(f"FT245 bus width must be 8, 16 or 32 bits, not {width!r}")


def check_max_burst(max_burst):
    """Check ``max_burst``, the cycles one direction may keep the bus: ``1 .. 2**16``."""
    check_int("FT245 largest burst in cycles", max_burst, minimum=1, maximum=1 << 16)


class BusMode(enum.Enum, shape=2):
    """Who owns the data bus in a cycle."""
    #: Neither side drives it: OE# high, the FPGA's drivers off (also the turnaround cycle).
    IDLE = 0
    #: The chip drives it: OE# low.
    READ = 1
    #: The FPGA drives it: OE# high, ``data_oe`` high.
    WRITE = 2


def _add_saturating(m, counter, amount):
    """Add ``amount`` to ``counter`` each cycle (``m.d.sync``), sticking at its maximum."""
    top = (1 << len(counter)) - 1
    total = counter + amount
    m.d.sync += counter.eq(Mux(total > top, top, total))


class FT245SyncFIFO(wiring.Component):
    """Move the bytes of ``tx`` to an FTDI chip in synchronous 245 FIFO mode and the bytes
    the chip has from the host onto ``rx``.

    The component runs in the domain clocked by the chip's clock (CLKOUT of the FT2232H,
    CLK of the FT60x; ``sync`` unless renamed with ``DomainRenamer``). Every pad output
    (``rd_n``, ``wr_n``, ``oe_n``, ``siwu_n``, ``data_o``, ``data_oe``, ``be_o``) is a
    register, and no output depends combinationally on an input: the pad inputs (``rxf_n``,
    ``txe_n``, ``data_i``, ``be_i``) are sampled on the same clock edge as the chip samples
    the outputs, and only feed registers.

    **Words.** A bus word holds ``width // 8`` bytes, the first at bits 0..7 (as the FT60x
    puts the first byte on DATA[7:0]). ``be_o`` marks the bytes of a written word that are
    valid; ``be_i`` those of a read word (only its enabled bytes reach ``rx``, in order of
    their position). Width 8 has no byte enables.

    **Handshake.** A word is read at a clock edge where ``rd_n`` and ``rxf_n`` are both low
    and written at one where ``wr_n`` and ``txe_n`` are both low; that edge decides, so a
    word offered while TXE# goes high is not taken and is offered again, unchanged, once
    TXE# is low. ``rd_n`` is low in a cycle only if ``rxf_n`` was low in the cycle before,
    ``oe_n`` was low in the cycle before and is low in this one, and there is room for the
    word; ``wr_n`` only if ``txe_n`` was low in the cycle before.

    **Bus turnaround.** The FPGA drives the bus (``data_oe``) only in cycles where ``oe_n`` is
    high and was high in the cycle before, and ``oe_n`` goes low only after a cycle without
    ``data_oe``. Each change of direction therefore passes one idle cycle (OE# high, bus not
    driven); a read burst starts with one cycle of OE# low and RD# high. When neither
    direction has work the bus stays as it was (parked), so a new burst in the same direction
    has no setup cycle. The bus changes direction when the other direction has work and
    this one has none or has held the bus for ``max_burst`` cycles or more; from idle with
    both waiting, the direction not served last goes first.

    **Timing**, with no stall anywhere (``c`` is a cycle number):

    - *Read*, bus idle: RXF# low first in cycle ``c`` gives OE# low from ``c + 1``, RD# low
      from ``c + 2`` (a word per cycle while RXF# stays low and there is room), and the first
      byte on ``rx`` in cycle ``c + 4``; with the bus parked in read, RD# is low from
      ``c + 1`` and the byte on ``rx`` in ``c + 3``; parked in write, one turnaround cycle
      more (RD# from ``c + 3``, the byte in ``c + 5``). ``rx`` then carries a byte per cycle,
      the most the stream can take (one word per cycle on the bus for width 8; for width 16
      and 32, RD# is low while the receive buffer fills, then for a word whenever ``rx`` has
      emptied one).
    - *Write*: the byte that completes a word (every byte for width 8), taken from ``tx`` in
      cycle ``c``, is written in cycle ``c + 2`` (WR# low) with the bus parked in write or
      idle, in ``c + 3`` with it parked in read (turnaround). ``tx.ready`` stays high
      while words leave as fast as they are filled, so ``tx`` takes a byte per cycle (for
      width 8, WR# is then low in every cycle).
    - *Partial words* (width 16 and 32): a word not yet full is flushed with the bytes it
      has (``be_o`` marking them) in the first cycle in which ``tx.valid`` is low; a byte
      never waits for one that is not offered. If ``tx`` is idle in cycle ``c`` after bytes
      taken before, that word is written in cycle ``c + 2``.

    Nothing is lost by design: RD# is low only when the receive buffer has room for the word
    that can follow. A word read with no room (which this design never does) is counted in
    ``overruns`` and dropped.

    Parameters
    ----------
    width : int
        Bus width in bits: 8 (FT2232H / FT232H), 16 (FT600) or 32 (FT601).
    max_burst : int
        Cycles a direction may keep the bus while the other has work, ``1 .. 2**16``.

    Members
    -------
    rx : Out(stream.Signature(8))
        The bytes from the host, in order.
    tx : In(stream.Signature(8))
        The bytes to the host.
    data_i : In(width)
        DATA (ADBUS) as seen at the pins.
    data_o : Out(width)
        DATA the FPGA drives when ``data_oe`` is high.
    data_oe : Out(1)
        Output enable of the FPGA's DATA (and BE) drivers.
    be_i : In(width // 8)
        BE as seen at the pins (width 16 and 32 only).
    be_o : Out(width // 8)
        BE the FPGA drives when ``data_oe`` is high (width 16 and 32 only).
    rxf_n : In(1)
        RXF#: low when the chip has data from the host.
    txe_n : In(1)
        TXE#: low when the chip can take data for the host.
    rd_n : Out(1)
        RD#: low to read a word on each clock edge.
    wr_n : Out(1)
        WR#: low to write a word on each clock edge.
    oe_n : Out(1)
        OE#: low to have the chip drive DATA (and BE).
    siwu_n : Out(1)
        SIWU# (send immediate / wake up): held high, unused.
    rx_bytes : Out(32)
        Bytes delivered on ``rx``, saturating.
    tx_bytes : Out(32)
        Bytes the chip took from the bus (written with WR# and TXE# low), saturating.
    overruns : Out(32)
        Words read from the chip with no room for them and dropped, saturating; zero by
        design.
    overrun : Out(1)
        An overrun since reset.
    """

    @refuses_quietly
    def __init__(self, *, width=8, max_burst=DEFAULT_MAX_BURST):
        check_width(width)
        check_max_burst(max_burst)
        self.width = width
        self.lanes = width // 8
        self.max_burst = max_burst
        members = {
            "rx":       Out(stream.Signature(8)),
            "tx":       In(stream.Signature(8)),
            "data_i":   In(width),
            "data_o":   Out(width),
            "data_oe":  Out(1),
            "rxf_n":    In(1, init=1),
            "txe_n":    In(1, init=1),
            "rd_n":     Out(1, init=1),
            "wr_n":     Out(1, init=1),
            "oe_n":     Out(1, init=1),
            "siwu_n":   Out(1, init=1),
            "rx_bytes": Out(COUNTER_BITS),
            "tx_bytes": Out(COUNTER_BITS),
            "overruns": Out(COUNTER_BITS),
            "overrun":  Out(1),
        }
        if self.lanes > 1:
            members["be_i"] = In(self.lanes)
            members["be_o"] = Out(self.lanes)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        all_bytes = (1 << lanes) - 1
        be_i = self.be_i if lanes > 1 else Const(1, 1)
        be_o = self.be_o if lanes > 1 else Signal(1, init=1, name="word_be")

        # --- chip to fabric: bus words -> receive FIFO -> unpacker -> rx -------------------
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFO(width=self.width + lanes,
                                                       depth=FIFO_DEPTH)
        read = ~self.rd_n & ~self.rxf_n                 # a word crosses at this edge
        m.d.comb += [
            rx_fifo.w_en.eq(read),
            rx_fifo.w_data.eq(Cat(self.data_i, be_i)),
        ]
        count_saturating(m, self.overruns, read & ~rx_fifo.w_rdy)
        m.d.comb += self.overrun.eq(self.overruns != 0)

        word = Signal(self.width)                       # the word being unpacked
        left = Signal(lanes)                            # its enabled bytes not yet delivered
        lowest = Signal(lanes)                          # the first of them, one-hot
        for i in reversed(range(lanes)):
            with m.If(left[i]):
                m.d.comb += [lowest.eq(1 << i), self.rx.payload.eq(word.word_select(i, 8))]
        m.d.comb += self.rx.valid.eq(left != 0)
        delivered = self.rx.valid & self.rx.ready
        left_after = Mux(delivered, left & ~lowest, left)
        m.d.comb += rx_fifo.r_en.eq(left_after == 0)
        with m.If((left_after == 0) & rx_fifo.r_rdy):
            m.d.sync += [word.eq(rx_fifo.r_data[:self.width]),
                         left.eq(rx_fifo.r_data[self.width:])]
        with m.Else():
            m.d.sync += left.eq(left_after)
        count_saturating(m, self.rx_bytes, delivered)

        # Room for a word at the next edge: the FIFO's level after this edge is below depth.
        rx_level_next = (rx_fifo.level + (rx_fifo.w_en & rx_fifo.w_rdy)
                         - (rx_fifo.r_en & rx_fifo.r_rdy))
        rx_want = ~self.rxf_n & (rx_level_next < FIFO_DEPTH)

        # --- fabric to chip: tx -> packer -> transmit FIFO -> bus register -----------------
        m.submodules.tx_fifo = tx_fifo = fifo.SyncFIFO(width=self.width + lanes,
                                                       depth=FIFO_DEPTH)
        m.d.comb += self.tx.ready.eq(tx_fifo.w_rdy)
        taken = self.tx.valid & self.tx.ready
        if lanes == 1:
            m.d.comb += [
                tx_fifo.w_en.eq(taken),
                tx_fifo.w_data.eq(Cat(self.tx.payload, Const(1, 1))),
            ]
        else:
            packed = Signal(self.width - 8)             # bytes 0 .. lanes-2 of the word
            filled = Signal(range(lanes))               # how many of them are filled
            with m.If(taken):
                with m.If(filled == lanes - 1):
                    m.d.comb += [
                        tx_fifo.w_en.eq(1),
                        tx_fifo.w_data.eq(Cat(packed, self.tx.payload, Const(all_bytes, lanes))),
                    ]
                    m.d.sync += filled.eq(0)
                with m.Else():
                    for i in range(lanes - 1):
                        with m.If(filled == i):
                            m.d.sync += packed.word_select(i, 8).eq(self.tx.payload)
                    m.d.sync += filled.eq(filled + 1)
            with m.Elif(~self.tx.valid & (filled != 0) & tx_fifo.w_rdy):
                # Flush: bytes 0 .. filled-1 valid, the rest of the word left as it is.
                m.d.comb += [
                    tx_fifo.w_en.eq(1),
                    tx_fifo.w_data.eq(Cat(packed, Const(0, 8),
                                          (Const(1, lanes + 1) << filled) - 1)),
                ]
                m.d.sync += filled.eq(0)

        # The word on the bus (data_o, be_o) and whether it still waits to be taken.
        pending = Signal()
        written = ~self.wr_n & ~self.txe_n              # the chip takes the word at this edge
        refill = (~pending | written) & tx_fifo.r_rdy
        m.d.comb += tx_fifo.r_en.eq(~pending | written)
        with m.If(refill):
            m.d.sync += Cat(self.data_o, be_o).eq(tx_fifo.r_data)
        pending_next = refill | (pending & ~written)
        m.d.sync += pending.eq(pending_next)
        tx_want = pending_next & ~self.txe_n
        _add_saturating(m, self.tx_bytes,
                        Mux(written, sum(be_o[i] for i in range(lanes)), 0))

        # --- who owns the bus --------------------------------------------------------------
        mode = Signal(BusMode)
        last = Signal(BusMode, init=BusMode.WRITE)      # the direction served before IDLE
        held = Signal(range(self.max_burst + 1))        # cycles in this mode, saturating
        mode_next = Signal(BusMode)
        m.d.comb += mode_next.eq(mode)
        tired = held >= self.max_burst
        with m.Switch(mode):
            with m.Case(BusMode.IDLE):
                with m.If(rx_want & (~tx_want | (last == BusMode.WRITE))):
                    m.d.comb += mode_next.eq(BusMode.READ)
                with m.Elif(tx_want):
                    m.d.comb += mode_next.eq(BusMode.WRITE)
            with m.Case(BusMode.READ):
                with m.If(tx_want & (~rx_want | tired)):
                    m.d.comb += mode_next.eq(BusMode.IDLE)
            with m.Case(BusMode.WRITE):
                with m.If(rx_want & (~tx_want | tired)):
                    m.d.comb += mode_next.eq(BusMode.IDLE)
        m.d.sync += mode.eq(mode_next)
        with m.If(mode_next != mode):
            m.d.sync += held.eq(0)
            with m.If(mode != BusMode.IDLE):
                m.d.sync += last.eq(mode)
        with m.Elif(~tired):
            m.d.sync += held.eq(held + 1)

        m.d.sync += [
            self.oe_n.eq(mode_next != BusMode.READ),
            self.data_oe.eq(mode_next == BusMode.WRITE),
            # RD# low only after a cycle of OE# low (mode READ now and next).
            self.rd_n.eq(~((mode == BusMode.READ) & (mode_next == BusMode.READ) & rx_want)),
            self.wr_n.eq(~((mode_next == BusMode.WRITE) & tx_want)),
        ]
        return m
