"""Bit- and cycle-exact reference model of :class:`timebin.gateware.regbank.RegisterBank`, and
random bus traffic to test the bank with.

The model is plain Python (no Amaranth, no numpy): it follows the bus protocol of the bank's
docstring and the access kinds and bus rules of :mod:`timebin.gateware.regmap`, register by
register, one cycle at a time. Every output of the bank is a register, so the outputs of a
cycle never depend on that cycle's inputs: :meth:`RegisterBankModel.step` returns the outputs
shown in a cycle and then takes the cycle's inputs through the clock edge.
"""

import random

from ..gateware.regmap import WORD_BITS, RegisterMap

__all__ = ["BUS_OUTPUTS", "RegisterBankModel", "bus_traffic"]

#: Bus outputs of the bank (inputs to the initiator), in the order the model reports them.
BUS_OUTPUTS = ("rdata", "rvalid", "werr")

_WORD_MASK = (1 << WORD_BITS) - 1
_BANK_COUNTER = "write_errors"


class RegisterBankModel:
    """The bank of ``register_map`` from reset, one clock cycle per :meth:`step`.

    State, as the bank keeps it: the value of every writable register (``rw`` and
    ``strobe``), the one stage word (the lo word of a two-word write, until its hi word), the
    one hi latch (the hi word of the last two-word register whose lo word was read), the
    ``write_errors`` count and the bus output registers ``rdata``, ``rvalid`` and ``werr``.
    A strobe's value is its port: 1 in the one cycle after a write of 1.

    Parameters
    ----------
    register_map : RegisterMap
    address_bits : int or None
        Width of the bank's bus address (``RegisterBank(register_map, address_bits)``); by
        default the map's ``address_bits``.

    Members
    -------
    register_map : RegisterMap
    writable_ports, status_ports : tuple of str
        The map's ports the bank drives (``rw``, ``strobe``) and those it reads.
    counts : dict
        What the traffic so far exercised, for tests to check their coverage: ``accepted``
        writes and ``refused`` ones (by access kind, ``"unmapped"`` for no register),
        ``staged`` lo words, ``committed`` two-word writes, ``hi_reads`` (reads of a latched hi
        word), ``cleared`` (reads of a non-zero ``write_errors``), ``strobes`` (pulses),
        ``both`` (cycles with ``we`` and ``re``).
    """

    def __init__(self, register_map, address_bits=None):
        if not isinstance(register_map, RegisterMap):
            raise TypeError(f"Register map must be a RegisterMap, not {register_map!r}")
        if _BANK_COUNTER not in register_map:
            raise ValueError(f"Register map must have the bank's {_BANK_COUNTER} register")
        self.register_map = register_map
        ports = register_map.ports()
        self.writable_ports = tuple(p for p, regs in ports.items() if regs[0].writable)
        self.status_ports = tuple(p for p, regs in ports.items() if not regs[0].writable)
        self._widths = {port: register_map.port_width(port) for port in ports}
        self._counter_address = register_map[_BANK_COUNTER].address
        self._by_address = {a: reg for reg in register_map for a in reg.addresses}
        self._offsets = {reg.name: register_map.bit_offset(reg) for reg in register_map
                         if reg.port is not None}
        if address_bits is None:
            address_bits = register_map.address_bits
        if not register_map.address_bits <= address_bits <= WORD_BITS:
            raise ValueError(f"Bus address width must be {register_map.address_bits}.."
                             f"{WORD_BITS}, not {address_bits!r}")
        self.address_limit = 1 << address_bits
        self.values = {reg.name: reg.reset for reg in register_map if reg.writable}
        self.stage = 0
        self.latch = 0
        self.errors = 0
        self.rdata = 0
        self.rvalid = 0
        self.werr = 0
        self.counts = {"accepted": {}, "refused": {}, "staged": 0, "committed": 0,
                       "hi_reads": 0, "cleared": 0, "strobes": 0, "both": 0}

    # --- what the bank shows ---

    def port_value(self, port):
        """The flat value of writable ``port`` now (element ``k`` at ``k * element_width``)."""
        rmap = self.register_map
        return sum(self.values[reg.name] << self._offsets[reg.name]
                   for reg in rmap.ports()[port])

    def outputs(self):
        """``{name: int}``: ``rdata``, ``rvalid``, ``werr`` and every writable port, as the
        bank shows them in the current cycle."""
        out = {"rdata": self.rdata, "rvalid": self.rvalid, "werr": self.werr}
        for port in self.writable_ports:
            out[port] = self.port_value(port)
        return out

    def _read_value(self, reg, status):
        """The value a read of ``reg`` sees in this cycle (all its words)."""
        if reg.access == "strobe":
            return 0
        if reg.access == "rc":
            return self.errors
        if reg.writable:
            return self.values[reg.name]
        if reg.port is None:
            return reg.reset
        return (status.get(reg.port, 0) >> self._offsets[reg.name]) & reg.limit

    def _count(self, kind, key):
        table = self.counts[kind]
        table[key] = table.get(key, 0) + 1

    # --- one cycle ---

    def step(self, addr=0, wdata=0, we=0, re=0, status=None):
        """One clock cycle: return :meth:`outputs` of this cycle, then take the bus inputs
        ``addr``, ``wdata``, ``we``, ``re`` and the status ports' values ``status``
        (``{port: flat int}``, a port left out reads 0) through the clock edge.

        Raises ``ValueError`` for an input that does not fit its port and ``KeyError`` for a
        status port that is not in the map.
        """
        status = {} if status is None else status
        for port, value in status.items():
            if port not in self.status_ports:
                raise KeyError(f"{port!r} is not a status port of the "
                               f"{self.register_map.device} map")
            if not 0 <= value < 1 << self._widths[port]:
                raise ValueError(f"Status port {port} takes {self._widths[port]} bits, "
                                 f"not {value!r}")
        if not 0 <= addr < self.address_limit or not 0 <= wdata <= _WORD_MASK:
            raise ValueError(f"Bus address {addr!r} or data {wdata!r} does not fit the bus")
        shown = self.outputs()
        values, stage, latch, rdata = dict(self.values), self.stage, self.latch, self.rdata
        for reg in self.register_map:
            if reg.access == "strobe":
                values[reg.name] = 0            # high only in the cycle after a write of 1
        refused = False
        if we:
            reg = self._by_address.get(addr)
            if reg is None:
                refused = True
                self._count("refused", "unmapped")
            elif reg.words == 2 and addr == reg.address:
                # The lo word: staged if the register is writable, refused otherwise.
                if reg.writable:
                    stage = wdata
                    self.counts["staged"] += 1
                else:
                    refused = True
                    self._count("refused", reg.access)
            else:
                value = wdata if reg.words == 1 else (wdata << WORD_BITS) | self.stage
                if reg.accepts(value):
                    values[reg.name] = value
                    self._count("accepted", reg.access)
                    self.counts["committed"] += reg.words == 2
                    self.counts["strobes"] += reg.access == "strobe" and value == 1
                else:
                    refused = True
                    self._count("refused", reg.access)
        if re:
            self.counts["both"] += bool(we)
            reg = self._by_address.get(addr)
            if reg is None:
                rdata = 0
            elif reg.words == 2 and addr == reg.address + 1:
                rdata = self.latch
                self.counts["hi_reads"] += 1
            else:
                value = self._read_value(reg, status)
                rdata = value & _WORD_MASK
                if reg.words == 2:
                    latch = value >> WORD_BITS
        if re and addr == self._counter_address:
            self.counts["cleared"] += self.errors != 0
            self.errors = int(refused)          # a refusal in the clearing cycle counts 1
        elif refused and self.errors != _WORD_MASK:
            self.errors += 1
        self.values, self.stage, self.latch, self.rdata = values, stage, latch, rdata
        self.rvalid, self.werr = int(bool(re)), int(refused)
        return shown

    def run(self, addr, wdata, we, re, status=None):
        """:meth:`step` over ``n`` cycles: ``addr``, ``wdata``, ``we``, ``re`` are ``n`` ints
        each, ``status`` is ``{port: n ints}``. Returns ``{output: n ints}`` (see
        :meth:`outputs`), each output in each cycle."""
        n = len(addr)
        status = {} if status is None else status
        for name, values in (("wdata", wdata), ("we", we), ("re", re), *status.items()):
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} cycles, addr has {n}")
        out = {name: [] for name in (*BUS_OUTPUTS, *self.writable_ports)}
        for c in range(n):
            shown = self.step(int(addr[c]), int(wdata[c]), int(we[c]), int(re[c]),
                              {port: int(values[c]) for port, values in status.items()})
            for name, value in shown.items():
                out[name].append(value)
        return out


# --- random traffic ------------------------------------------------------------------------

def _write_values(reg, rng):
    """Candidate values of a write to ``reg``: in and out of its range and width."""
    limit = (1 << (WORD_BITS * reg.words)) - 1
    values = [rng.randint(reg.minimum, reg.maximum), reg.minimum, reg.maximum, reg.reset,
              rng.randint(0, limit)]
    if reg.minimum > 0:
        values.append(reg.minimum - 1)
    if reg.maximum < limit:
        values += [reg.maximum + 1, rng.randint(reg.maximum + 1, limit)]
    return values


def bus_traffic(register_map, n, seed, *, address_bits=None, status_change=0.2):
    """Random bus traffic for ``n`` cycles on the bank of ``register_map``, and random status
    port values, seeded with ``seed``.

    The traffic is a random mix of: whole writes (the words of a register, lo first, with
    idle cycles or other transfers between them at times) of values in and out of range to
    every kind of register; whole reads; single transfers to random addresses (mapped or
    not, ``we`` and ``re`` together at times, a hi word alone); reads of ``write_errors``;
    idle cycles. A status port takes a new random value with probability ``status_change``
    per cycle. ``address_bits``: the width of the bank's bus address, by default the map's
    (unmapped addresses beyond the map are drawn from all of it).

    Returns ``({"addr", "wdata", "we", "re": n ints}, {status port: n ints})``.
    """
    rng = random.Random(seed)
    regs = list(register_map)
    limit = 1 << (register_map.address_bits if address_bits is None else address_bits)
    mapped = {a for r in regs for a in r.addresses}
    unmapped = [a for a in range(min(limit, 1 << 12)) if a not in mapped]
    unmapped += [limit - 1 - k for k in range(4) if limit - 1 - k not in mapped]
    counter = register_map[_BANK_COUNTER].address
    cycles = []             # (addr, wdata, we, re)

    def noise():
        addr = rng.choice(unmapped) if unmapped and rng.random() < 0.3 else rng.randrange(limit)
        we, re = rng.random() < 0.6, rng.random() < 0.6
        return addr, rng.getrandbits(WORD_BITS), int(we), int(re)

    while len(cycles) < n:
        kind = rng.random()
        if kind < 0.45:
            reg = rng.choice(regs)
            value = rng.choice(_write_values(reg, rng))
            for i, addr in enumerate(reg.addresses):
                while rng.random() < 0.1:
                    cycles.append(noise() if rng.random() < 0.5 else (0, 0, 0, 0))
                word = (value >> (WORD_BITS * i)) & _WORD_MASK
                cycles.append((addr, word, 1, int(rng.random() < 0.15)))
        elif kind < 0.75:
            reg = rng.choice(regs)
            for addr in reg.addresses:
                while rng.random() < 0.1:
                    cycles.append(noise() if rng.random() < 0.5 else (0, 0, 0, 0))
                we = rng.random() < 0.1
                cycles.append((addr, rng.getrandbits(WORD_BITS) if we else 0, int(we), 1))
        elif kind < 0.85:
            cycles.append(noise())
        elif kind < 0.93:
            cycles.append((counter, 0, 0, 1))
        else:
            cycles.extend([(rng.randrange(limit), 0, 0, 0)] * rng.randint(1, 3))
    cycles = cycles[:n]
    bus = {name: [c[i] for c in cycles] for i, name in enumerate(("addr", "wdata", "we", "re"))}
    status = {}
    for port, port_regs in register_map.ports().items():
        if port_regs[0].writable:
            continue
        width = register_map.port_width(port)
        value, values = 0, []
        for _ in range(n):
            if rng.random() < status_change:
                # Mostly small values or all ones, so that words carry between reads.
                top = (1 << width) - 1
                value = rng.choice([rng.getrandbits(width), top - rng.randrange(min(4, top + 1)),
                                    rng.getrandbits(min(width, 8))])
            values.append(value)
        status[port] = values
    return bus, status
