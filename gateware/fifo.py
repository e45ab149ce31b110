"""A first-word-fall-through FIFO whose flags are flip-flops.

Same ports and the same behaviour, cycle by cycle, as :class:`amaranth.lib.fifo.SyncFIFO`
(``w_rdy`` is ``level != depth``, ``r_rdy`` is ``level != 0``, ``r_data`` shows the oldest
word combinationally); only the implementation differs: ``full`` and ``empty`` are registers
written with ``level``, from its next value, so that the write enable of the storage (which
reaches every LUT-RAM cell of a wide word) is one gate behind flip-flops, not a compare of
``level`` and the reader's ``r_en``. On the 130-bit symbol log of a 16-lane transmitter
that path was the slowest of the transmitter at 156.25 MHz (10.3 ns).

With ``ram=True`` the storage has a synchronous read port (so that it maps to block RAM, e.g.
the iCE40's SB_RAM40_4K, instead of flip-flops and a read multiplexer), still with the same
ports and the same behaviour cycle by cycle: the port reads, in cycle ``c``, the address the
oldest word has in cycle ``c + 1`` (the read pointer's next value) and is transparent to the
write of cycle ``c``, so its output in cycle ``c + 1`` is the word a combinational read would
give. (The synthesis tool makes the transparency from a register of the written word and a
multiplexer: the saving is the flip-flops of the storage.)

With ``wide=True`` (a word of hundreds of bits, whose storage spreads over the chip), still
the same behaviour: ``full`` and ``empty`` take registered near-full and near-empty flags
(``level == depth - 1``, ``level == 1``) instead of compares of ``level``, and the storage's
write enable and the read pointer take copies of the flags (``full_replica``,
``empty_replica``; the board build keeps them apart), so that the flags' own logic does not
share the enable's LUT out by the storage. On the 32-lane transmitter's symbol log on the
ULX3S the flags took 6.5-7.1 ns from ``full`` to itself without.
"""

from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib.memory import Memory

from .common import check_int, refuses_quietly

__all__ = ["FlagFIFO"]


class FlagFIFO(Elaboratable):
    """``depth`` words of ``width`` bits; ports as :class:`amaranth.lib.fifo.SyncFIFO`
    (``w_data``, ``w_en``, ``w_rdy``, ``r_data``, ``r_en``, ``r_rdy``, ``level``).

    ``ram``: storage with a synchronous (block RAM) read port, same behaviour (module
    docstring); ``False`` (default): a combinational read port (flip-flops or LUT RAM).
    ``wide``: flags for a storage spread over the chip, same behaviour (module docstring)."""

    @refuses_quietly
    def __init__(self, *, width, depth, ram=False, wide=False):
        check_int("FIFO width", width, minimum=1)
        check_int("FIFO depth", depth, minimum=1)
        for name, value in (("ram", ram), ("wide", wide)):
            if not isinstance(value, bool):
                raise TypeError(f"FIFO {name} must be a bool, not {value!r}")
        self.width = width
        self.depth = depth
        self.ram = ram
        self.wide = wide
        self.w_data = Signal(width)
        self.w_en = Signal()
        self.w_rdy = Signal()
        self.r_data = Signal(width)
        self.r_en = Signal()
        self.r_rdy = Signal()
        self.level = Signal(range(depth + 1))

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        full = Signal()
        empty = Signal(init=1)
        m.d.comb += [self.w_rdy.eq(~full), self.r_rdy.eq(~empty)]
        # Wide: the storage's write enable and the read pointer take copies of the flags
        # (their loads spread along the word; with one pair the flags' own logic shared the
        # enable's LUT out by them). The `_replica` names keep the board build from merging
        # the copies.
        if self.wide:
            full_copy = Signal(name="full_replica")
            empty_copy = Signal(name="empty_replica", init=1)
        else:
            full_copy, empty_copy = full, empty
        do_write = self.w_en & ~full_copy
        do_read = self.r_en & ~empty_copy
        attrs = {"ram_style": "block"} if self.ram else None
        m.submodules.storage = storage = Memory(shape=self.width, depth=depth, init=[],
                                                attrs=attrs)
        w_port = storage.write_port()
        produce = Signal(range(depth))
        consume = Signal(range(depth))
        m.d.comb += [
            w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(do_write),
        ]
        consume_next = Signal(range(depth))
        m.d.comb += consume_next.eq(
            Mux(do_read, Mux(consume == depth - 1, 0, consume + 1), consume))
        m.d.sync += consume.eq(consume_next)
        if self.ram:
            # Read in cycle c the oldest word's address of cycle c + 1.
            r_port = storage.read_port(domain="sync", transparent_for=(w_port,))
            m.d.comb += [r_port.addr.eq(consume_next), r_port.en.eq(1)]
        else:
            r_port = storage.read_port(domain="comb")
            m.d.comb += r_port.addr.eq(consume)
        m.d.comb += self.r_data.eq(r_port.data)
        with m.If(do_write):
            m.d.sync += produce.eq(Mux(produce == depth - 1, 0, produce + 1))

        # The next level decides the flags of the next cycle.
        if not self.wide:
            up = do_write & ~do_read
            down = do_read & ~do_write
            with m.If(up):
                m.d.sync += [self.level.eq(self.level + 1), full.eq(self.level == depth - 1),
                             empty.eq(0)]
            with m.If(down):
                m.d.sync += [self.level.eq(self.level - 1), empty.eq(self.level == 1),
                             full.eq(0)]
            return m
        # Wide: the flags a step of the level makes come from registers of their own,
        # `near_full` (level == depth - 1) and `near_empty` (level == 1), so that `full` and
        # `empty` take one LUT of the two enables and four flags, not a compare of the level.
        near_full = Signal(init=depth == 1)
        near_empty = Signal()
        for f, e in ((full, empty), (full_copy, empty_copy)):
            writes, reads = self.w_en & ~f, self.r_en & ~e
            with m.If(writes & ~reads):
                m.d.sync += [f.eq(near_full), e.eq(0)]
            with m.If(reads & ~writes):
                m.d.sync += [e.eq(near_empty), f.eq(0)]
        up = self.w_en & ~full & ~(self.r_en & ~empty)
        down = self.r_en & ~empty & ~(self.w_en & ~full)
        with m.If(up):
            m.d.sync += [self.level.eq(self.level + 1), near_full.eq(self.level == depth - 2),
                         near_empty.eq(empty)]
        with m.If(down):
            m.d.sync += [self.level.eq(self.level - 1), near_full.eq(full),
                         near_empty.eq(self.level == 2)]
        return m
