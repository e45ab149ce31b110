"""Words of unit intervals on a board's I/O pins: the pin serializer and deserializer PHYs of
the bare boards, and the plan that assigns a word's fields to pins.

Ref: DESIGN.md section 3 (one word of ``L * S`` UIs per fabric cycle, UI 0 first); Lattice
FPGA-TN-02035 (ECP5 high-speed I/O: ODDRX1F/IDDRX1F on every bank, ODDRX2F/IDDRX2F 4:1
gearboxes only on the left and right banks, clocked by a bank's ECLK); Lattice SBTICETechnology
library (SB_IO DDR registers of the iCE40).

What the pins really carry: a pin takes ``r`` consecutive UIs of one field per fabric cycle
(``r`` = 4 for an ECP5 x2 gearbox, 2 for DDR, 1 for SDR), so it toggles at ``r * f_sys``
bit/s: 625 Mb/s (x2) or 312.5 Mb/s (DDR) at 156.25 MHz. A word of ``W`` UIs leaves on
``ceil(W / r)`` pins **in parallel**, not as one serial line at ``W * f_sys``: a lab that
wants the 2.5-5 GS/s line needs an external serializer or a board's SERDES: a ``dcu`` pin is a
DCU transmit channel (16 UIs per cycle on one serial pair, ECPIX-5), which the board's
``serdes`` PHY drives (:class:`PinOutputs`). Pins of different gearbox types have different
latencies; the transmitter's per-output delays compensate per field, not per pin.

Fields that do not fit the pins are **not dropped silently**: output bits left over are
registered into flip-flops marked ``keep`` (so synthesis keeps, and the build report counts,
the logic that makes them) and listed as unpinned in the plan and the build report. Inputs
must all fit, or the plan refuses.
"""

from dataclasses import dataclass, field

from amaranth.build import Pins, Resource
from amaranth.hdl import (
    Cat,
    ClockSignal,
    Const,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import io

__all__ = ["GEARBOX_RATIO", "DataPin", "FieldSpec", "PinSlot", "PinPlan", "plan_pins",
           "PinOutputs", "PinInputs"]

#: UIs a pin carries per fabric cycle, by gearbox type.
GEARBOX_RATIO = {"dcu": 16, "x2": 4, "ddr": 2, "sdr": 1}


@dataclass(frozen=True)
class DataPin:
    """One header pin free for data: its ball (package pin), gearbox type and I/O bank.

    ``label`` is the header's name for it (e.g. ``gp14``). ``output_only`` marks a pin
    behind a one-way buffer (the plan never makes it an input). ``x2_input`` False marks an
    x2 pin whose input gearbox is missing (the ECP5's IDDRX2F exists only on the first pin
    of each pair, nextpnr: "No wire found for port SLIP"): as an input it runs as DDR.
    """

    ball: str
    gearbox: str
    bank: int = None
    label: str = ""
    output_only: bool = False
    x2_input: bool = True

    def as_input(self):
        """The pin as the plan uses it for an input."""
        if self.gearbox == "x2" and not self.x2_input:
            return DataPin(self.ball, "ddr", self.bank, self.label)
        return self

    def __post_init__(self):
        if self.gearbox not in GEARBOX_RATIO:
            raise ValueError(f"Pin gearbox must be one of {tuple(GEARBOX_RATIO)}, "
                             f"not {self.gearbox!r}")

    @property
    def ratio(self):
        return GEARBOX_RATIO[self.gearbox]


@dataclass(frozen=True)
class FieldSpec:
    """A field of a word: ``width`` bits, one per UI in time order (or per sample), flowing
    ``"o"`` (FPGA to pins) or ``"i"``."""

    name: str
    width: int
    direction: str


@dataclass(frozen=True)
class PinSlot:
    """Bits ``start .. start + count - 1`` of field ``field`` on ``pin``: the pin's UI ``k``
    of a cycle is bit ``start + k`` (``count`` may be below the pin's ratio on a field's last
    pin; the other slots are 0 on outputs and ignored on inputs)."""

    field: str
    pin: DataPin
    start: int
    count: int


@dataclass
class PinPlan:
    """Where each field's bits go: ``slots`` (in pin order) and ``unpinned`` output bits
    (field name to the first bit and the count that found no pin)."""

    fields: list
    slots: list = field(default_factory=list)
    unpinned: dict = field(default_factory=dict)

    def slots_of(self, name):
        return [slot for slot in self.slots if slot.field == name]

    def edge_banks(self):
        """The I/O banks whose x2 gearboxes the plan uses."""
        return sorted({slot.pin.bank for slot in self.slots if slot.pin.gearbox == "x2"})

    def summary(self):
        """A JSON-able description: per field, its bits, pins (ball, label, gearbox) and
        unpinned bits."""
        out = []
        for spec in self.fields:
            slots = self.slots_of(spec.name)
            out.append({
                "field": spec.name,
                "direction": "in" if spec.direction == "i" else "out",
                "bits": spec.width,
                "pinned_bits": sum(s.count for s in slots),
                "unpinned_bits": self.unpinned.get(spec.name, (0, 0))[1],
                "pins": [{"ball": s.pin.ball, "label": s.pin.label, "gearbox": s.pin.gearbox,
                          "bits": [s.start, s.start + s.count - 1]} for s in slots],
            })
        return out


def plan_pins(fields, pins):
    """Assign ``fields`` (:class:`FieldSpec`, outputs in priority order) to ``pins``
    (:class:`DataPin`, preferred first).

    Inputs take pins first and must fit whole: ``ValueError`` names the shortfall. Outputs
    then take the pins left, in the order given; bits that find no pin are unpinned.
    """
    names = [spec.name for spec in fields]
    if len(set(names)) != len(names):
        raise ValueError(f"Field names must be unique, not {names!r}")
    balls = [pin.ball for pin in pins]
    if len(set(balls)) != len(balls):
        raise ValueError(f"Data pins must be distinct, not {balls!r}")
    plan = PinPlan(fields=list(fields))
    free = list(pins)
    ordered = ([s for s in fields if s.direction == "i"] +
               [s for s in fields if s.direction == "o"])
    for spec in ordered:
        if spec.direction not in ("i", "o"):
            raise ValueError(f"Field direction must be 'i' or 'o', not {spec.direction!r}")
        start = 0
        if spec.direction == "o":
            usable = list(free)
        else:       # the pins that take the most UIs first
            usable = sorted((pin for pin in free if not pin.output_only),
                            key=lambda pin: -pin.as_input().ratio)
        while start < spec.width and usable:
            pin = usable.pop(0)
            free.remove(pin)
            if spec.direction == "i":
                pin = pin.as_input()
            count = min(pin.ratio, spec.width - start)
            plan.slots.append(PinSlot(spec.name, pin, start, count))
            start += count
        if start < spec.width:
            if spec.direction == "i":
                need = spec.width - start
                one_way = " (its other pins are output-only)" if any(
                    pin.output_only for pin in pins) else ""
                raise ValueError(
                    f"The board's data pins cannot carry input {spec.name!r}: {need} of its "
                    f"{spec.width} bits per cycle are left without a pin{one_way}; use fewer "
                    f"lanes or channels")
            plan.unpinned[spec.name] = (start, spec.width - start)
    plan.slots.sort(key=lambda slot: balls.index(slot.pin.ball))
    return plan


def _pin_port(platform, pin, direction, attrs):
    platform.add_resources([Resource(f"data_{pin.ball}", 0, Pins(pin.ball, dir=direction),
                                     attrs)])
    return platform.request(f"data_{pin.ball}", 0, dir="-")


class PinOutputs(Elaboratable):
    """Put the output fields of ``plan`` on their pins, after ``stages`` registers (so the
    placer can cross the die), and keep unpinned bits in ``keep`` flip-flops.

    ``values`` maps field names to Amaranth values of the field's width; ``eclk`` maps banks to
    edge clocks (for x2 gearboxes); ``attrs`` is the pins' I/O standard; ``serdes`` makes the
    PHY of the ``dcu`` pins: called with those pins, it returns an elaboratable whose
    ``words`` maps each pin's ball to the signal of its word (bit ``k`` = UI ``k``).
    """

    def __init__(self, plan, values, *, attrs, eclk=None, stages=2, serdes=None):
        self.plan = plan
        self.values = values
        self.attrs = attrs
        self.eclk = eclk or {}
        self.stages = stages
        self.serdes = serdes

    def elaborate(self, platform):
        m = Module()
        staged = {}
        for spec in self.plan.fields:
            if spec.direction != "o":
                continue
            value = self.values[spec.name]
            for k in range(self.stages):
                reg = Signal(spec.width, name=f"{_ident(spec.name)}_stage{k}")
                m.d.sync += reg.eq(value)
                value = reg
            staged[spec.name] = value
        for name, (start, count) in self.plan.unpinned.items():
            kept = Signal(count, name=f"{_ident(name)}_unpinned", attrs={"keep": 1})
            m.d.sync += kept.eq(staged[name][start:start + count])
        serial_words = {}
        for slot in self.plan.slots:
            if slot.field not in staged:
                continue
            pin = slot.pin
            bits = [staged[slot.field][slot.start + k] if k < slot.count else Const(0)
                    for k in range(pin.ratio)]
            if pin.gearbox == "dcu":
                serial_words[pin] = Cat(bits)
                continue
            port = _pin_port(platform, pin, "o", self.attrs)
            name = f"out_{pin.ball}"
            if pin.gearbox == "x2":
                m.submodules[name + "_buf"] = buf = io.Buffer("o", port)
                q = Signal(name=f"{name}_q")
                m.submodules[name] = Instance(
                    "ODDRX2F", i_SCLK=ClockSignal("sync"), i_ECLK=self.eclk[pin.bank],
                    i_RST=ResetSignal("sync"), i_D0=bits[0], i_D1=bits[1], i_D2=bits[2],
                    i_D3=bits[3], o_Q=q)
                m.d.comb += buf.o.eq(q)
            elif pin.gearbox == "ddr":
                m.submodules[name] = buf = io.DDRBuffer("o", port)
                m.d.comb += [buf.o[0].eq(bits[0]), buf.o[1].eq(bits[1])]
            else:
                m.submodules[name] = buf = io.FFBuffer("o", port)
                m.d.comb += buf.o.eq(bits[0])
        if serial_words:
            if self.serdes is None:
                raise ValueError(f"Pins {[pin.ball for pin in serial_words]} are SERDES "
                                 f"channels, but the board gives no serdes PHY")
            m.submodules.serdes = phy = self.serdes(tuple(serial_words))
            for pin, word in serial_words.items():
                m.d.comb += phy.words[pin.ball].eq(word)
        return m


class PinInputs(Elaboratable):
    """Take the input fields of ``plan`` from their pins into :attr:`values` (field name to a
    registered signal of the field's width, ``stages`` registers after the gearbox)."""

    def __init__(self, plan, *, attrs, eclk=None, stages=1):
        self.plan = plan
        self.attrs = attrs
        self.eclk = eclk or {}
        self.stages = stages
        self.values = {spec.name: Signal(spec.width, name=f"{_ident(spec.name)}_in")
                       for spec in plan.fields if spec.direction == "i"}

    def elaborate(self, platform):
        m = Module()
        raw = {name: Signal(len(sig), name=f"{_ident(name)}_raw")
               for name, sig in self.values.items()}
        for slot in self.plan.slots:
            if slot.field not in raw:
                continue
            pin = slot.pin
            port = _pin_port(platform, pin, "i", self.attrs)
            name = f"in_{pin.ball}"
            if pin.gearbox == "x2":
                m.submodules[name + "_buf"] = buf = io.Buffer("i", port)
                q = Signal(4, name=f"{name}_q")
                m.submodules[name] = Instance(
                    "IDDRX2F", i_D=buf.i, i_SCLK=ClockSignal("sync"),
                    i_ECLK=self.eclk[pin.bank], i_RST=ResetSignal("sync"),
                    i_ALIGNWD=Const(0), o_Q0=q[0], o_Q1=q[1], o_Q2=q[2], o_Q3=q[3])
                bits = [q[k] for k in range(4)]
            elif pin.gearbox == "ddr":
                m.submodules[name] = buf = io.DDRBuffer("i", port)
                bits = [buf.i[0], buf.i[1]]
            else:
                m.submodules[name] = buf = io.FFBuffer("i", port)
                bits = [buf.i]
            for k in range(slot.count):
                m.d.comb += raw[slot.field][slot.start + k].eq(bits[k])
        for name, sig in self.values.items():
            value = raw[name]
            for k in range(self.stages - 1):
                reg = Signal(len(sig), name=f"{_ident(name)}_stage{k}")
                m.d.sync += reg.eq(value)
                value = reg
            if self.stages:
                m.d.sync += sig.eq(value)
            else:
                m.d.comb += sig.eq(value)
        return m


def _ident(name):
    return name.replace(".", "_")
