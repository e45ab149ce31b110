"""The register bank: the gateware end of a :class:`~timebin.gateware.regmap.RegisterMap`,
between the host link's register bus and the settings and status ports of a top.

Ref: DESIGN.md sections 5 and 7 (the map is defined once in plain Python; refused writes are
counted, never clamped); the bus rules and access kinds are those of
:mod:`timebin.gateware.regmap`.
"""

from amaranth.hdl import Cat, Const, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .common import check_int, refuses_quietly
from .link.dsp import accumulator_dsp
from .regmap import WORD_BITS, RegisterMap

__all__ = ["RegisterBusSignature", "RegisterBank"]

#: The bank's own counter, the only ``rc`` register.
_BANK_COUNTER = "write_errors"


def RegisterBusSignature(address_bits):
    """The register bus as the host link (the initiator) sees it: word ``addr``, ``wdata``,
    ``we``, ``re`` out; ``rdata``, ``rvalid``, ``werr`` in. See :class:`RegisterBank` for the
    protocol."""
    return wiring.Signature({
        "addr": Out(address_bits),
        "wdata": Out(WORD_BITS),
        "we": Out(1),
        "re": Out(1),
        "rdata": In(WORD_BITS),
        "rvalid": In(1),
        "werr": In(1),
    })


class RegisterBank(wiring.Component):
    """The registers of ``register_map``, on a simple 32-bit bus, as ports named after the
    top's ports.

    **Bus protocol** (``bus``, one transfer a cycle, no wait states):

    * *Write*: ``we`` high in cycle ``c`` with ``addr`` (a word address) and ``wdata``. The
      register holds the new value from cycle ``c + 1`` on, and so does its port; a strobe's
      port is high in cycle ``c + 1`` only. A refused write (value beyond the width or the
      register's range, a read-only register, an unmapped address) changes nothing and adds
      one to ``write_errors`` (saturating). The lo word of a two-word register is only staged;
      the hi word's write checks and commits both halves.
    * *Write status*: ``werr`` is high in cycle ``c + 1`` exactly when the write of cycle
      ``c`` was refused, that is, counted in ``write_errors`` (out of range, read-only or
      unmapped, including the lo word of a read-only two-word register); low after an
      accepted write, a staged lo word of a writable two-word register and a cycle without
      ``we``. An initiator reports each write's outcome from it, one cycle after the write,
      as it takes ``rdata`` one cycle after a read.
    * *Read*: ``re`` high in cycle ``c`` with ``addr``: ``rdata`` holds the word in cycle
      ``c + 1``, with ``rvalid`` high (one cycle of latency). The value is the register's in
      cycle ``c``: for a status port, the port sampled in cycle ``c``; a write in the same
      cycle is not seen yet. A lo-word read latches the hi word, which a read of the hi address
      returns. An unmapped address reads 0. Reading ``write_errors`` clears it.
    * ``we`` and ``re`` may be high together: both act on ``addr``, the read seeing the word
      as it was before the write (and ``write_errors`` read so restarts from this cycle's
      refusal, 1 or 0).

    Ports other than ``bus`` are named after the top's ports in the map: a writable (``rw``,
    ``strobe``) port is an ``Out`` of the port's flat width, reset to the port's init
    (:meth:`RegisterMap.port_reset`); a status port is an ``In``. Element ``k`` of an array
    port is at bits ``k * element_width`` up, as in the top's ``ArrayLayout``. :meth:`connect`
    wires them to a top by name.

    Parameters
    ----------
    register_map : RegisterMap
        The map, e.g. ``bob_registers(**receiver.params)``. Its port-less registers are
        ``ro`` constants and the ``rc`` ``write_errors`` counter.
    address_bits : int or None
        Width of the bus address, at least the map's ``address_bits`` (the default), at most
        32. A board's bus is as wide as the protocol's addresses, so that every address a
        host can send beyond the map is unmapped (reads 0, writes refused), never an alias.
    errors_dsp : bool
        Keep ``write_errors`` in an iCE40 DSP (:func:`~timebin.gateware.link.dsp.
        accumulator_dsp`, one 32-bit accumulator) instead of logic cells: the same values in
        the same cycles, for a small FPGA whose logic cells are all taken.

    Members
    -------
    bus : In(RegisterBusSignature(address_bits))
    <port> : Out(width) or In(width)
        One per port of the map.
    """

    @refuses_quietly
    def __init__(self, register_map, address_bits=None, *, errors_dsp=False):
        if not isinstance(register_map, RegisterMap):
            raise TypeError(f"Register map must be a RegisterMap, not {register_map!r}")
        if address_bits is None:
            address_bits = register_map.address_bits
        check_int("Register bus address width", address_bits,
                  minimum=register_map.address_bits, maximum=WORD_BITS)
        for reg in register_map:
            if reg.port is None and reg.access not in ("ro", "rc"):
                raise ValueError(f"Register {reg.name} has no port: it must be ro or rc, "
                                 f"not {reg.access}")
            if reg.access == "rc" and (reg.port is not None or reg.name != _BANK_COUNTER):
                raise ValueError(f"Register {reg.name}: the only rc register is the bank's "
                                 f"{_BANK_COUNTER}")
        if _BANK_COUNTER not in register_map:
            raise ValueError(f"Register map must have the bank's {_BANK_COUNTER} register")
        if not isinstance(errors_dsp, bool):
            raise TypeError(f"errors_dsp must be a bool, not {errors_dsp!r}")
        self.register_map = register_map
        self.address_bits = address_bits
        self.errors_dsp = errors_dsp
        members = {"bus": In(RegisterBusSignature(address_bits))}
        for port, regs in register_map.ports().items():
            if port in members:
                raise ValueError(f"Port name {port!r} is taken by the register bus")
            width = register_map.port_width(port)
            if regs[0].writable:
                members[port] = Out(width, init=register_map.port_reset(port))
            else:
                members[port] = In(width)
        super().__init__(members)

    def connect(self, m, top):
        """Add to ``m`` the wires between this bank's ports and ``top``'s ports of the same
        names: writable registers drive the top's inputs, status ports drive the bank's.
        ``top`` is a component, or a ``dict`` from port names to the values (block ports)
        to wire, for a bank spread over several blocks (a board).

        Raises ``ValueError`` naming the port if ``top`` lacks one, or its direction (for a
        component), width or init differs from the map's (a map built from other parameters
        than the top), or if the ``dict`` has a name the map does not."""
        rmap = self.register_map
        plain = isinstance(top, dict)
        owner = "the board" if plain else type(top).__name__
        if plain and set(top) - set(rmap.ports()):
            raise ValueError(f"Ports {sorted(set(top) - set(rmap.ports()))} are not in the "
                             f"{rmap.device} map")
        for port, regs in rmap.ports().items():
            writable = regs[0].writable
            if plain:
                if port not in top:
                    raise ValueError(f"The board has no port {port!r} of the {rmap.device} "
                                     f"map")
                outer, inner = Value.cast(top[port]), getattr(self, port)
            else:
                members = top.signature.members
                member = members[port] if port in members else None
                if member is None or member.is_signature:
                    raise ValueError(f"{owner} has no plain port {port!r} of the "
                                     f"{rmap.device} map")
                outer, inner = Value.cast(getattr(top, port)), getattr(self, port)
            if not plain and writable != (member.flow == In):
                kind = "writable" if writable else "read-only"
                raise ValueError(f"Port {port} is {member.flow.name} on {owner} "
                                 f"but {kind} in the {rmap.device} map")
            if len(outer) != len(inner):
                raise ValueError(f"Port {port} is {len(outer)} bits on {owner} "
                                 f"but {len(inner)} in the {rmap.device} map")
            if writable and getattr(outer, "init", rmap.port_reset(port)) != \
                    rmap.port_reset(port):
                raise ValueError(f"Port {port} has init {outer.init:#x} on "
                                 f"{owner} but reset "
                                 f"{rmap.port_reset(port):#x} in the {rmap.device} map")
            m.d.comb += outer.eq(inner) if writable else inner.eq(outer)

    def elaborate(self, platform):
        m = Module()
        rmap, bus = self.register_map, self.bus
        stage = Signal(WORD_BITS)       # lo word of a two-word write, until its hi word
        latch = Signal(WORD_BITS)       # hi word of the two-word register whose lo was read
        errors = Signal(WORD_BITS)      # write_errors
        refused = Signal()              # this cycle's write is refused

        def bits(reg):
            if reg.port is None:
                return errors if reg.access == "rc" else Const(reg.reset, reg.width)
            start = rmap.bit_offset(reg)
            return getattr(self, reg.port)[start:start + reg.width]

        def write(reg, value):
            if not reg.writable:
                m.d.comb += refused.eq(1)
                return
            ok = Const(1, 1)
            if len(value) > reg.width:
                ok &= value[reg.width:] == 0
            # The range checks matter only when the bits beyond the width are zero: compare
            # the register's own bits (carry chains of its width, not of 32 or 64 bits).
            checked = value[:reg.width]
            if reg.minimum > 0:
                ok &= checked >= reg.minimum
            if reg.maximum < reg.limit:
                ok &= checked <= reg.maximum
            with m.If(ok):
                m.d.sync += bits(reg).eq(checked)
            with m.Else():
                m.d.comb += refused.eq(1)

        for reg in rmap:
            if reg.access == "strobe":
                m.d.sync += bits(reg).eq(0)     # high only in the cycle after a write of 1

        with m.If(bus.we):
            with m.Switch(bus.addr):
                for reg in rmap:
                    if reg.words == 2:
                        with m.Case(reg.address):
                            if reg.writable:
                                m.d.sync += stage.eq(bus.wdata)
                            else:
                                m.d.comb += refused.eq(1)
                        with m.Case(reg.address + 1):
                            write(reg, Cat(stage, bus.wdata))
                    else:
                        with m.Case(reg.address):
                            write(reg, bus.wdata)
                with m.Default():
                    m.d.comb += refused.eq(1)

        m.d.sync += [bus.rvalid.eq(bus.re), bus.werr.eq(refused)]
        with m.If(bus.re):
            with m.Switch(bus.addr):
                for reg in rmap:
                    value = Const(0, 1) if reg.access == "strobe" else bits(reg)
                    with m.Case(reg.address):
                        m.d.sync += bus.rdata.eq(value[:WORD_BITS])
                        if reg.words == 2:
                            m.d.sync += latch.eq(value[WORD_BITS:])
                    if reg.words == 2:
                        with m.Case(reg.address + 1):
                            m.d.sync += bus.rdata.eq(latch)
                with m.Default():
                    m.d.sync += bus.rdata.eq(0)

        read_clear = bus.re & (bus.addr == rmap[_BANK_COUNTER].address)
        full = errors == (1 << WORD_BITS) - 1
        if self.errors_dsp:
            # The same register in an iCE40 DSP: reset and a read clear load it.
            reset = ResetSignal()
            accumulator_dsp(m, "errors_dsp", errors, cascade=True,
                            hold=~(refused & ~full),
                            load=read_clear | reset, load_value=refused & ~reset)
        else:
            with m.If(read_clear):
                m.d.sync += errors.eq(refused)
            with m.Elif(refused & ~full):
                m.d.sync += errors.eq(errors + 1)
        return m
