"""Small helpers shared by gateware blocks: argument checks and saturating counters."""

import functools

from amaranth.hdl import Cat, Const, Instance, Mux, Signal, Value

from .checks import check_int

__all__ = ["check_int", "count_saturating", "refuses_quietly", "accepted_setting",
           "registered_setting", "registered_refusals", "register_copies",
           "replicated_setting", "REPLICA_GROUP", "global_buffer", "MUX_LUT_INIT", "mux_tree"]


def refuses_quietly(init):
    """Decorate a component's ``__init__`` so that an object refused by its argument checks
    does not also warn "created but never used" when it is collected: the error is the
    message."""
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except (TypeError, ValueError):
            self._MustUse__silence = True       # amaranth's UnusedElaboratable switch
            raise
    return wrapper


def count_saturating(m, counter, condition, *, top_flag=False, clear=None):
    """Add to ``m.d.sync``: ``counter`` counts cycles where ``condition`` holds, and sticks
    at its maximum instead of wrapping (an overflowed counter still reads as "at least").
    ``clear`` (a one-bit value), when given, zeroes the counter instead in its cycles.

    ``top_flag``: whether the counter is at its maximum is a flip-flop of its own
    (``<counter>_at_top``, or ``count_at_top`` for a slice; set with the last increment), so
    that the counter's enable is one gate behind ``condition`` instead of behind a compare
    of every bit (for wide counters; the same counts, cycle by cycle, at the price of a
    flip-flop). The counter must start at 0 and have no other driver."""
    top = (1 << len(counter)) - 1
    if top_flag:
        at_top = Signal(name=f"{getattr(counter, 'name', 'count')}_at_top")
        enable = condition & ~at_top
        updates = [counter.eq(counter + 1), at_top.eq(counter == top - 1)]
        zeroes = [counter.eq(0), at_top.eq(0)]
    else:
        enable = condition
        updates = [counter.eq(Mux(counter == top, counter, counter + 1))]
        zeroes = [counter.eq(0)]
    if clear is None:
        with m.If(enable):
            m.d.sync += updates
        return
    with m.If(clear):
        m.d.sync += zeroes
    with m.Elif(enable):
        m.d.sync += updates

def accepted_setting(m, name, value, ok, init):
    """The value of a setting port in use: ``value`` while ``ok``, else the last value that
    was ``ok`` (``init`` after reset). Refused register values never take effect and never
    wrap; the caller flags ``~ok`` on its ``settings_error``."""
    applied = registered_setting(m, name, value, ok, init)
    return Mux(ok, value, applied)


def registered_setting(m, name, value, ok, init):
    """The register behind :func:`accepted_setting`: the last value of a setting port that
    was ``ok`` up to the cycle before (``init`` in the first cycle after reset). Logic that
    uses it starts at a flip-flop, at the price of the setting acting one cycle later."""
    applied = Signal.like(value, name=f"applied_{name}", init=init)
    with m.If(ok):
        m.d.sync += applied.eq(value)
    return applied


def registered_refusals(m, name, refusals):
    """A block's ``settings_error`` from the cycle after: each of ``refusals`` (one-bit
    values, high while a check refuses its setting) into a register of its own,
    ``<name>_refused<i>``, and the OR of those registers. Each check then sits between its
    setting's flip-flops and its own, and the OR starts at flip-flops: on the ULX3S the
    receiver's checks and their OR in one cycle took 7.6-8.3 ns, routed across the chip from
    settings placed by their loads."""
    registers = []
    for i, refused in enumerate(refusals):
        register = Signal(name=f"{name}_refused{i}")
        m.d.sync += register.eq(refused)
        registers.append(register)
    return Cat(registers).any()


def register_copies(m, name, value, count, init=0):
    """``count`` registers ``<name>_replica<i>``, each ``value`` one cycle late (``init``
    after reset): copies of a signal for loads spread over the chip, each copy driving a
    share of them. The board build keeps them apart (``timebin.boards.build.KEEP_REPLICAS``);
    elsewhere they are just equal registers."""
    shape = Value.cast(value).shape()
    copies = [Signal(shape, name=f"{name}_replica{i}", init=init) for i in range(count)]
    m.d.sync += [copy.eq(value) for copy in copies]
    return copies


#: Copies of a replicated setting that share one register of the middle level.
REPLICA_GROUP = 4


def replicated_setting(m, name, value, ok, init, copies):
    """``copies`` copies of :func:`registered_setting`'s register, for logic spread over the
    chip (one copy per lane): each copy's loads sit near it instead of all of them waiting
    on one flip-flop's long nets, and the acceptance check reaches one register, not every
    copy. The port value and its check ``ok`` are registered first (``<name>_port``,
    ``<name>_ok``; ``ok`` may be a list of checks, each registered on its own,
    ``<name>_ok<i>``, and ANDed after), so that neither the check nor the port's routing
    sits in front of the accepting register's enable; the accepted value then reaches the
    copies through a middle level, one register per group of :data:`REPLICA_GROUP`
    consecutive copies (``<name>_group_replica<g>``), so that no net spans the chip from one
    flip-flop to all the copies. The setting thus acts four cycles after it appears on the
    port (the reset value is in use in the first four cycles after reset). The copies are
    named ``<name>_replica<k>``; the board build keeps them apart
    (``timebin.boards.build.KEEP_REPLICAS``); elsewhere they are just equal registers."""
    port = Signal.like(value, name=f"{name}_port", init=init)
    m.d.sync += port.eq(value)
    checks = list(ok) if isinstance(ok, (list, tuple)) else [ok]
    oks = [Signal(name=f"{name}_ok" + (str(i) if len(checks) > 1 else ""))
           for i in range(len(checks))]
    m.d.sync += [reg.eq(check) for reg, check in zip(oks, checks, strict=True)]
    accepted = registered_setting(m, name, port, Cat(oks).all(), init)
    groups = register_copies(m, f"{name}_group", accepted, -(-copies // REPLICA_GROUP), init)
    replicas = []
    for k in range(copies):
        replica = Signal.like(accepted, name=f"{name}_replica{k}", init=init)
        m.d.sync += replica.eq(groups[k // REPLICA_GROUP])
        replicas.append(replica)
    return replicas


#: INIT of an ECP5 ``LUT4`` that is a 2:1 multiplexer, ``Z = B if C else A`` (bit
#: ``{D, C, B, A}`` of INIT is the output).
MUX_LUT_INIT = sum(1 << i for i in range(16) if (i >> (1 if (i >> 2) & 1 else 0)) & 1)


def mux_tree(m, platform, select, values, *, name):
    """``values[select]``: a tree of 2:1 multiplexers, one level per bit of ``select``,
    least significant first. Only the low ``ceil(log2(len(values)))`` bits of ``select`` are
    used; a value of them beyond the values gives the last one.

    On an ECP5 the tree is built from the primitives of its slices, so that each eight-to-one
    step is one LUT level: per bit of the values, a ``LUT4`` per pair (``select[0]``), a
    ``PFUMX`` per pair of those (``select[1]``, the slice's own multiplexer), an ``L6MUX21``
    per pair of slices (``select[2]``), and again from a ``LUT4`` for the next three bits.
    Yosys maps the same tree of ``Mux`` to three LUT levels for 32 values (LUT, PFUMX, LUT,
    PFUMX, LUT), which held the receiver's dead-time loop at 6.7-7.4 ns on the ULX3S. The
    instances are named ``<name>_b<bit>_<level>_<j>``. Elsewhere (simulation, other FPGAs)
    the tree is of ``Mux``."""
    values = [Value.cast(value) for value in values]
    if not values:
        raise ValueError(f"Multiplexer {name} needs at least one value")
    if len(values) == 1:
        return values[0]
    if getattr(platform, "family", None) != "ecp5":
        level = list(values)
        for bit in select:
            if len(level) == 1:
                break
            if len(level) % 2:
                level.append(level[-1])
            level = [Mux(bit, level[i + 1], level[i]) for i in range(0, len(level), 2)]
        return level[0]
    width = max(len(value) for value in values)
    bits = (len(values) - 1).bit_length()           # the select bits that number the values
    select, size = Value.cast(select)[:bits], 1 << bits
    values = (values + [values[-1]] * size)[:size]
    return Cat(_ecp5_mux_bit(m, select, [value[b] if b < len(value) else Const(0)
                                         for value in values], f"{name}_b{b}")
               for b in range(width))


def _ecp5_mux_bit(m, select, level, name):
    """One bit of :func:`mux_tree` on an ECP5, ``len(level)`` a power of two."""
    for depth, bit in enumerate(select):
        if len(level) == 1:
            break
        out = []
        for j in range(0, len(level), 2):
            low, high = level[j], level[j + 1]
            z = Signal(name=f"{name}_{depth}_{j // 2}")
            kind = depth % 3
            if kind == 0:
                cell = Instance("LUT4", p_INIT=Const(MUX_LUT_INIT, 16), i_A=low, i_B=high,
                                i_C=bit, i_D=Const(0), o_Z=z)
            elif kind == 1:
                cell = Instance("PFUMX", i_ALUT=high, i_BLUT=low, i_C0=bit, o_Z=z)
            else:
                cell = Instance("L6MUX21", i_D0=low, i_D1=high, i_SD=bit, o_Z=z)
            m.submodules[f"{name}_{depth}_{j // 2}"] = cell
            out.append(z)
        level = out
    return level[0]


def global_buffer(m, platform, value, *, name):
    """``value`` as seen by thousands of loads: on an ECP5 through a DCCA onto a global
    network (nextpnr promotes only clocks by itself, and a control net of a few thousand
    loads on general routing takes longer than a 156.25 MHz cycle); elsewhere (simulation,
    other FPGAs) ``value`` itself. Same value in the same cycle: only the routing differs.
    ECP5 has eight global networks that reach the fabric: keep this for the few nets that
    need it."""
    if getattr(platform, "family", None) != "ecp5":
        return value
    out = Signal(name=f"{name}_global")
    m.submodules[f"{name}_dcca"] = Instance("DCCA", i_CLKI=value, i_CE=Const(1), o_CLKO=out)
    return out
