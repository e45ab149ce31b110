"""What every board file shares: the board description (:class:`BoardSpec`), the parameters
of each role on a bare board, the UART host link, and the top-level that puts a whole board's
gateware (:mod:`timebin.gateware.system`) on the pins and clocks of a board.

Ref: DESIGN.md sections 3-5. One top-level per role:

``alice``
    :class:`~timebin.gateware.system.AliceBoard`: the serializer word on the data pins
    (:class:`~timebin.boards.pins.PinOutputs`), the QRNG input tied invalid (a bare board has
    no QRNG: the transmitter's CSPRNG, Trivium keyed by the host through the ``key``/``iv``
    registers, is the entropy source, its reset value).
``bob``
    :class:`~timebin.gateware.system.BobBoard`: detector samples from the data pins
    (:class:`~timebin.boards.pins.PinInputs`), gate words to pins.
``loopback``
    :class:`~timebin.gateware.system.LoopbackBoard` with the on-chip channel emulator between
    Alice's serializer word and Bob's samples when the gateware has one (``emulator=True``);
    otherwise (older gateware) the top wires the carver bits of ``ser`` to every detector
    channel's ``samples`` itself, which exercises the build but gives no meaningful QBER; the
    build report says which (``"channel"``). QBER and counters are read over the UART.

Every role talks to the host over the board's UART (:class:`UARTLink`, 8N1 at
:data:`DEFAULT_BAUD`, the host transport's default).

Two benchmark-only tops measure the pipelines without the host link
(:data:`PIPELINE_ROLES`): ``alice-pipeline`` (the :class:`~timebin.gateware.tx.top.Transmitter`
alone) and ``bob-pipeline`` (the :class:`~timebin.gateware.rx.top.Receiver` alone), with the
same data pins as Alice and Bob and every other port driven by :class:`PortHarness`. They are
not for use in a lab.
"""

import inspect
from dataclasses import dataclass, field

from amaranth.hdl import Cat, ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.lib import io, wiring

from ..gateware.link.uart import UARTRx, UARTTx
from ..gateware.system import AliceBoard, BobBoard, LoopbackBoard
from . import ROLES
from .clocking import ECP5ClockGenerator, ICE40ClockGenerator
from .pins import FieldSpec, PinInputs, PinOutputs, plan_pins

__all__ = ["ROLES", "PIPELINE_ROLES", "DEFAULT_BAUD", "BoardSpec", "role_params", "UARTLink",
           "PortHarness", "BoardTop", "loopback_has_emulator"]

#: Benchmark-only tops: Alice's transmitter or Bob's receiver alone, without the host link
#: (:class:`PortHarness` drives their settings), to measure the pipelines' own timing.
PIPELINE_ROLES = ("alice-pipeline", "bob-pipeline")

#: UART rate of the host link (what ``serial://PORT`` opens without ``?baud=``).
DEFAULT_BAUD = 3_000_000


@dataclass(frozen=True)
class BoardSpec:
    """What the flow needs to know about a board.

    Attributes
    ----------
    name : str
        The ``--board`` name.
    title : str
        Human name with the FPGA.
    platform : type
        The Amaranth platform class (a build-only subclass: no programmer required).
    family : str
        ``"ecp5"`` or ``"ice40"``.
    clock_resource, f_in_hz : str, float
        The oscillator's resource and frequency.
    default_freq_hz : float
        ``f_sys`` when the build does not ask for one.
    default_lanes : int
        Lanes when the build does not ask.
    data_pins : tuple of DataPin
        Header pins free for data, preferred first.
    pin_attrs : Attrs
        I/O standard of the data pins.
    uart : str
        Where the host link's UART is, for the report and docs.
    reset_resource : str or None
        A reset button, held in reset while pressed.
    led_resource : str or None
        LEDs: 0 heartbeat, 1 PLL locked (where present).
    params : dict
        Per role (``"alice"``, ``"bob"``, ``"board"`` for board parameters per role), the
        defaults that replace the gateware's on this board (e.g. small memories on the iCE40).
    program_args : tuple of str
        openFPGALoader's arguments naming the board/cable (before the bitstream).
    bitstream : str
        The bitstream file's suffix: ``"bit"`` (ECP5) or ``"bin"`` (iCE40).
    notes : tuple of str
        What the build does and does not model on this board (report and docs).
    serdes : callable or None
        The PHY of the board's ``dcu`` data pins (SERDES channels):
        ``serdes(pins, f_sys_hz=...)``, see :class:`~timebin.boards.pins.PinOutputs`; besides
        its ``words``, the PHY has 1-bit ``ready`` (it is up) and ``error`` (its error flag,
        in ``sync``), which :class:`BoardTop` shows in the ``data_phy_*`` registers.
    placer : str
        nextpnr's placer a build of this board uses unless told otherwise (``timebin build
        --placer``): ``"heap"`` or ``"static"`` (which spreads the design more; on a nearly
        full device it leaves the router less congestion).
    """

    name: str
    title: str
    platform: type
    family: str
    clock_resource: str
    f_in_hz: float
    default_freq_hz: float
    default_lanes: int
    data_pins: tuple
    pin_attrs: object
    uart: str
    reset_resource: str = None
    led_resource: str = None
    params: dict = field(default_factory=dict)
    program_args: tuple = ()
    bitstream: str = "bit"
    notes: tuple = ()
    serdes: object = None
    placer: str = "heap"

    def clock_generator(self, f_sys_hz, edge_banks=()):
        """The PLL clock generator of ``sync`` at ``f_sys_hz``."""
        if self.family == "ecp5":
            return ECP5ClockGenerator(clock_resource=self.clock_resource, f_in_hz=self.f_in_hz,
                                      f_sys_hz=f_sys_hz, edge_banks=edge_banks,
                                      reset_resource=self.reset_resource)
        if edge_banks:
            raise ValueError(f"{self.title} has no edge-clock gearboxes")
        return ICE40ClockGenerator(clock_resource=self.clock_resource, f_in_hz=self.f_in_hz,
                                   f_sys_hz=f_sys_hz, reset_resource=self.reset_resource)


def role_params(spec, role, *, lanes=None, alice=None, bob=None, board=None):
    """``(params, board)`` of ``role`` on ``spec``'s board: the gateware top's parameters
    (``{"alice": ..., "bob": ...}`` for a loopback) and its board parameters.

    Bare-board defaults (then ``spec.params``, then the arguments): 2 UIs per symbol;
    Alice ``dac_bits`` 2 (a 4-level code per UI for an external resistor DAC: vacuum, decoy,
    signal) and ``pm_bits`` 1; Bob 2 detector channels (Z, X), or on a loopback the
    emulator's 3 (Z, X+, X-). ``alice``/``bob``/``board`` are overrides (dicts).
    """
    if role not in ROLES + PIPELINE_ROLES:
        raise ValueError(f"Board role must be one of {', '.join(ROLES)}, not {role!r}")
    lanes = spec.default_lanes if lanes is None else lanes
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"Lane count must be a positive integer, not {lanes!r}")
    shape = {"lanes": lanes, "uis_per_symbol": 2}
    a = {**shape, "dac_bits": 2, "pm_bits": 1, **spec.params.get("alice", {}), **(alice or {})}
    channels = 3 if role == "loopback" else 2
    b = {**shape, "channels": channels, **spec.params.get("bob", {}), **(bob or {})}
    board_params = {**spec.params.get("board", {}).get(role, {}), **(board or {})}
    if role.startswith("alice"):
        return a, board_params
    if role.startswith("bob"):
        return b, board_params
    return {"alice": a, "bob": b}, board_params


def loopback_has_emulator():
    """Whether :class:`LoopbackBoard` takes the ``emulator`` argument (the on-chip channel
    emulator of the gateware)."""
    return "emulator" in inspect.signature(LoopbackBoard.__init__).parameters


class UARTLink(Elaboratable):
    """The host link on the board's UART: bytes of the pin ``rx`` onto ``board.link_rx``,
    ``board.link_tx`` onto ``tx``; the receiver's framing errors and overruns (saturating sum)
    onto ``board.phy_errors``."""

    def __init__(self, board, *, divisor, resource=("uart", 0)):
        self.board = board
        self.divisor = divisor
        self.resource = resource
        self.rx = UARTRx(divisor=divisor,
                         counter_bits=board.link.get("counter_bits", len(board.phy_errors)),
                         counter_dsp=board.link.get("counter_dsp", False))
        self.tx = UARTTx(divisor=divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = self.rx
        m.submodules.tx = tx = self.tx
        if platform is not None:
            uart = platform.request(*self.resource, dir="-")
            m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
            m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
            m.d.comb += [rx.rx.eq(rx_buf.i), tx_buf.o.eq(tx.tx)]
        wiring.connect(m, rx.data, self.board.link_rx)
        wiring.connect(m, self.board.link_tx, tx.data)
        m.d.comb += self.board.phy_errors.eq(rx.errors)
        return m


class PortHarness(Elaboratable):
    """Drive every port of ``component`` but ``skip`` without a host link, for a benchmark
    build of a pipeline alone: its inputs (settings) from a shift register fed by the pin
    ``scan`` (so that synthesis cannot treat them as constants), the ``ready`` of its output
    streams from the same register, its input streams not valid (as a bare board's QRNG), and
    its outputs into flip-flops marked ``keep`` (so that the logic behind them stays).

    Each input takes the shift register's bits, inverted, through one register of its own
    (``in<k>``): the chain holds its flip-flops next to one another, while a board's
    register bank or stream source gives each port a flip-flop that can sit by the port's
    loads. The inversion keeps Yosys from merging that register with the chain's next
    flip-flop, which registers the same bit (and then each port's first register in the
    pipeline with the chain flip-flop after that, e.g. the driver's ``delay_pm_port``). Merged,
    the ports' registers sat on the chain: the transmitter's log stream ``ready`` came from
    the same flip-flop as a bit of the lanes' phase-delay copies, 4-5 ns of routing from
    the log FIFO on the ULX3S. The values stay arbitrary; only their timing is a board's."""

    def __init__(self, component, *, skip, scan):
        self.component = component
        self.skip = set(skip)
        self.scan = scan

    def elaborate(self, platform):
        m = Module()
        c = self.component
        inputs, outputs = [], []
        for name, member in c.signature.members.items():
            if name in self.skip:
                continue
            port = getattr(c, name)
            if member.is_signature:
                if member.flow == wiring.Out:            # a stream out of the component
                    inputs.append(port.ready)
                    outputs += [port.valid, port.payload]
                else:
                    m.d.comb += port.valid.eq(0)
            elif member.flow == wiring.In:
                inputs.append(port)
            else:
                outputs.append(port)
        width = sum(len(Value.cast(v)) for v in inputs)
        chain = Signal(max(width, 1), name="scan_chain")
        m.d.sync += chain.eq(Cat(self.scan, chain[:-1]))
        offset = 0
        for k, value in enumerate(inputs):
            n = len(Value.cast(value))
            port = Signal(n, name=f"in{k}")
            m.d.sync += port.eq(~chain[offset:offset + n])
            m.d.comb += value.eq(port)
            offset += n
        for k, value in enumerate(outputs):
            kept = Signal(len(Value.cast(value)), name=f"kept{k}", attrs={"keep": 1})
            m.d.sync += kept.eq(value)
        return m


class BoardTop(Elaboratable):
    """The top-level of ``role`` on the board ``spec``.

    Parameters
    ----------
    spec : BoardSpec
    role : str
        ``"alice"``, ``"bob"`` or ``"loopback"``.
    params, board : dict
        As :func:`role_params` returns them.
    freq_hz : float
        ``f_sys`` (the PLL's nearest frequency is used, see :attr:`f_sys_hz`).
    baud : int
        UART rate of the host link.
    scope : bool
        Loopback only: also put Alice's serializer word on the data pins (as Alice's).
    link : dict
        :data:`~timebin.gateware.system.LINK_DEFAULTS` overrides.

    Attributes
    ----------
    gateware : AliceBoard, BobBoard or LoopbackBoard
    plan : PinPlan
        Which field of the data words goes to which pin.
    channel : str or None
        Loopback: ``"emulator"`` (on-chip channel emulator) or ``"wire"`` (carver bits to
        every channel; no emulator in this gateware).
    data_phy : Elaboratable or None
        The SERDES PHY (``spec.serdes``) of the output fields' ``dcu`` pins, or ``None`` when
        no output takes a SERDES pin (Alice's serializer word, a loopback board's scope
        output, Bob's gate words). Its ``ready`` and ``error`` feed the gateware's
        ``data_phy_ready`` and ``data_phy_error`` (the ``data_phy_*`` registers); without it
        they are 1 and 0: DDR/SDR pin registers and gearboxes have no state of their own,
        and run whenever ``sync`` does.
    """

    def __init__(self, spec, role, *, params, board=None, freq_hz=None, baud=DEFAULT_BAUD,
                 scope=False, link=None):
        if role not in ROLES + PIPELINE_ROLES:
            raise ValueError(f"Board role must be one of {', '.join(ROLES)}, not {role!r}")
        self.spec = spec
        self.role = role
        link = {**spec.params.get("link", {}), **(link or {})}
        freq_hz = spec.default_freq_hz if freq_hz is None else freq_hz
        self.channel = None
        if role == "alice":
            self.gateware = AliceBoard(params=params, board=board, link=link)
        elif role == "bob":
            self.gateware = BobBoard(params=params, board=board, link=link)
        elif role == "alice-pipeline":
            from ..gateware.tx.top import Transmitter
            self.gateware = Transmitter(**params)
        elif role == "bob-pipeline":
            from ..gateware.rx.top import Receiver
            self.gateware = Receiver(**params)
        elif loopback_has_emulator():
            self.gateware = LoopbackBoard(params=params, board=board, link=link, emulator=True)
            self.channel = "emulator"
        else:
            self.gateware = LoopbackBoard(params=params, board=board, link=link)
            self.channel = "wire"
        self.fields, self.values_of = self._fields(role, scope)
        self.plan = plan_pins(self.fields, spec.data_pins)
        # The clock generator knows the frequency its dividers really give.
        self.clocking = spec.clock_generator(freq_hz, self.plan.edge_banks())
        self.f_sys_hz = self.clocking.f_sys_actual_hz
        self.baud_divisor = round(self.f_sys_hz / baud)
        self.baud = self.f_sys_hz / self.baud_divisor
        if abs(self.baud - baud) > 0.02 * baud:
            raise ValueError(f"A {self.f_sys_hz / 1e6:g} MHz clock cannot make {baud} baud "
                             f"within 2 % (nearest {self.baud:.0f})")
        self.link = (None if role in PIPELINE_ROLES else
                     UARTLink(self.gateware, divisor=self.baud_divisor))
        self._serdes_pins, self.data_phy = self._data_phy()

    def _data_phy(self):
        """The ``dcu`` pins of the output fields, in the order :class:`PinOutputs` gives
        them to the board's ``serdes``, and the PHY made for them (``None`` without such
        pins or without ``spec.serdes``: :class:`PinOutputs` then refuses the pins)."""
        outputs = {spec.name for spec in self.fields if spec.direction == "o"}
        pins = tuple(dict.fromkeys(slot.pin for slot in self.plan.slots
                                   if slot.field in outputs and slot.pin.gearbox == "dcu"))
        if not pins or self.spec.serdes is None:
            return pins, None
        return pins, self.spec.serdes(pins, f_sys_hz=self.f_sys_hz)

    def _serdes(self, pins):
        """:class:`PinOutputs`'s ``serdes``: the PHY made for these pins in ``__init__``."""
        if pins != self._serdes_pins:
            raise ValueError(f"The pins put SERDES words on {[p.ball for p in pins]}, but the "
                             f"top made its PHY for {[p.ball for p in self._serdes_pins]}")
        return self.data_phy

    def _fields(self, role, scope):
        """The data fields of the role (priority order) and a function that returns their
        values from the gateware."""
        gw = self.gateware
        fields = []
        getters = {}
        if role in ("alice", "alice-pipeline") or (role == "loopback" and scope):
            tx = getattr(gw, "transmitter", gw)
            W = tx.lanes * tx.uis_per_symbol
            fields.append(FieldSpec("carver", W, "o"))
            getters["carver"] = lambda: gw.ser.carver
            fields.append(FieldSpec("ser_valid", 1, "o"))
            getters["ser_valid"] = lambda: gw.ser_valid
            for name, bits in (("im", tx.dac_bits), ("pm", tx.pm_bits)):
                for j in reversed(range(bits)):         # most significant bit first
                    key = f"{name}.b{j}"
                    fields.append(FieldSpec(key, W, "o"))
                    getters[key] = (lambda name=name, j=j, W=W:
                                    Cat(getattr(gw.ser, name)[u][j] for u in range(W)))
        if role in ("bob", "bob-pipeline"):
            rx = getattr(gw, "receiver", gw)
            width = rx.uis_per_word * rx.params["oversampling"]
            for k in range(rx.channels):
                fields.append(FieldSpec(f"samples.ch{k}", width, "i"))
            for k in range(rx.channels):
                fields.append(FieldSpec(f"gates.ch{k}", rx.uis_per_word, "o"))
                getters[f"gates.ch{k}"] = lambda k=k: gw.gates[k]
        return fields, getters

    def elaborate(self, platform):
        m = Module()
        gw = self.gateware
        m.domains.sync = ClockDomain("sync")        # driven by the clock generator
        m.submodules.clocking = clocking = self.clocking
        m.submodules.board = gw
        if self.link is not None:
            m.submodules.link = self.link
        else:
            scan_pin = platform.request("uart", 0, dir="-").rx
            m.submodules.scan_buf = scan_buf = io.Buffer("i", scan_pin)
            m.submodules.harness = PortHarness(
                gw, skip=("ser", "ser_valid", "samples", "gates"), scan=scan_buf.i)
        if self.role in ("alice", "loopback"):
            m.d.comb += gw.qrng.valid.eq(0)          # no QRNG on a bare board
        if self.role not in PIPELINE_ROLES:
            # The serializer PHY's state for the data_phy_* registers: the SERDES's, or that
            # of pin registers (always up, no error flag).
            phy = self.data_phy
            m.d.comb += [gw.data_phy_ready.eq(1 if phy is None else phy.ready),
                         gw.data_phy_error.eq(0 if phy is None else phy.error)]
        if self.role == "loopback" and self.channel == "wire":
            rx = gw.receiver
            for k in range(rx.channels):
                m.d.comb += gw.samples[k].eq(gw.ser.carver)
        outputs = {name: get() for name, get in self.values_of.items()}
        if outputs:
            serdes = None if self.data_phy is None else self._serdes
            m.submodules.pins_out = PinOutputs(self.plan, outputs, attrs=self.spec.pin_attrs,
                                               eclk=clocking.eclk, serdes=serdes)
        if any(spec.direction == "i" for spec in self.fields):
            m.submodules.pins_in = pins_in = PinInputs(self.plan, attrs=self.spec.pin_attrs,
                                                       eclk=clocking.eclk)
            for k in range(getattr(gw, "receiver", gw).channels):
                m.d.comb += gw.samples[k].eq(pins_in.values[f"samples.ch{k}"])
        if self.spec.led_resource is not None and platform is not None:
            heartbeat = Signal(range(int(self.f_sys_hz)), name="heartbeat")
            m.d.sync += heartbeat.eq(heartbeat + 1)
            for index, value in enumerate((heartbeat[-1], clocking.locked)):
                led = platform.request(self.spec.led_resource, index, dir="-")
                led = getattr(led, "g", led)            # an RGB LED: its green part
                m.submodules[f"led{index}"] = buf = io.Buffer("o", led)
                m.d.comb += buf.o.eq(value)
        return m

    def summary(self):
        """What the top puts where (JSON-able): role, parameters, clocks, link, pins."""
        return {
            "board": self.spec.name,
            "role": self.role,
            "params": self.gateware.params,
            "board_params": getattr(self.gateware, "board", None),
            "f_sys_mhz": self.f_sys_hz / 1e6,
            "pll": {k: v for k, v in vars(self.clocking.settings).items()},
            "edge_banks": list(self.plan.edge_banks()),
            "link": (None if self.link is None else
                     {"phy": "uart", "where": self.spec.uart, "baud": round(self.baud),
                      "divisor": self.baud_divisor}),
            "channel": self.channel,
            "pins": self.plan.summary(),
            "unpinned_bits": sum(count for _, count in self.plan.unpinned.values()),
            "notes": list(self.spec.notes),
        }
