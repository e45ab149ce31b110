"""The register maps of Alice's and Bob's gateware: every setting, counter and alarm the host
reads or writes, defined once in plain Python (no Amaranth, no numpy) so that the gateware's
:class:`~timebin.gateware.regbank.RegisterBank` and the host link derive both ends from it.

Ref: DESIGN.md sections 5 ("whatever both sides must agree on ... is defined once in plain
Python") and 7 (nothing silently clamped: refused writes are counted). Glasgow's rule:
registers are derived from the component's ports, never numbered by hand in two places. Here
:func:`alice_registers` and :func:`bob_registers` take the same parameters as
:class:`~timebin.gateware.tx.top.Transmitter` and :class:`~timebin.gateware.rx.top.Receiver`
and list one register per setting or status port of the top (per element of an array port);
addresses follow from the order. ``tests/test_regmap.py`` checks each map against its top:
same ports, same total widths, resets equal to the ports' inits.

**Bus.** Data words are 32 bits. Addresses are *word* addresses: address ``a`` is the 32-bit
word ``a``; a byte-addressed host bus uses byte address ``4 * a`` and drops its two LSBs. A
register of up to 32 bits takes one word (its value in the low bits, the rest reading 0); one
of 33..64 bits takes two, lo word at an even address ``a`` (bits 0..31), hi word at ``a + 1``.

* *Atomic reads*: reading the lo word of a two-word register latches its hi word in the bank's
  one hi latch; reading a hi word returns that latch. Read lo then hi, with no other lo read
  between, to get one 64-bit value sampled in one cycle.
* *Atomic writes*: writing a lo word only stages it (in the bank's one stage word); writing the
  hi word checks and commits the whole value at once. Write lo then hi, with no other lo write
  between; the port never shows half a new value.

A port or element wider than 64 bits (the 80-bit Trivium ``key`` and ``iv``; a ``windows``
element when ``2 * S > 64``) is cut into registers of 64 bits named ``{name}@{offset}``
(``key@0``, ``key@64``), written one after the other.

**Names.** A register is named after the top's port (``dead_time``); an element of an array
port is ``{port}.{k}`` (``delay.2``, ``clicks.0``: channel ``k``; ``im_levels.9``: table
entry 9). The elements of a nested array port are packed LSB first into one register per
outer element: ``windows.k`` holds channel ``k``'s ``S`` window classes, 2 bits each, phase 0
in bits 0..1.

**Access kinds** (:data:`ACCESS`):

``rw``
    A setting. Reads return the value last written (or the reset). A write is *refused* when
    the value does not fit ``width`` bits or lies outside ``[minimum, maximum]``: the register
    keeps its value and ``write_errors`` counts the write. The bank checks each register
    alone; combinations (the ``gate_*`` triple of a channel, ``pulse_offset + pulse_width``,
    the order of ``thresholds``) are checked by the blocks, which then keep their last
    accepted values and raise ``settings_error``.
``ro``
    Status from the top (a flag, or a saturating counter that is never cleared: the host takes
    differences of successive reads), or a bank constant (``id``, ``version``, ``map_crc``).
    Writes are refused and counted.
``rc``
    Clear-on-read, for counters the bank itself owns: only ``write_errors``. Reading returns
    the count and restarts it from 0 (a refusal in the same cycle counts 1). Counters living in
    the blocks are ``ro`` instead, so that a second reader never steals counts from the first
    and no snapshot offsets are needed.
``strobe``
    A one-bit pulse port (``alarm_clear``, ``histogram_clear``, ``epoch_load``, ``reseed``):
    writing 1 drives the port high for exactly the one cycle after the write; writing 0 does
    nothing; other values are refused. Reads return 0. (A write-one-to-clear kind is not needed:
    every latch of the tops is cleared by a pulse port, which is a strobe register.)

**Bank registers**, the first four words of both maps: ``id`` (:data:`ALICE_ID` or
:data:`BOB_ID`), ``version`` (:data:`MAP_VERSION`, the version of this scheme), ``map_crc``
(the CRC-32 of the whole layout, :meth:`RegisterMap.crc`: a host whose map was built from other
parameters than the gateware's sees a different value) and ``write_errors`` (``rc``: writes
refused since the last read, saturating at ``2**32 - 1``; writes to unmapped addresses count
too, reads of them return 0).
"""

import zlib
from dataclasses import dataclass, replace

from .checks import check_int
from .formulas import probability_settings, sp800_90b_cutoffs
from .records import (
    DEFAULT_K,
    DEFAULT_MAX_RECORDS,
    DEFAULT_TIMEOUT,
    INDEX_BITS,
    K_PORT_BITS,
    MAX_CHANNELS,
    MAX_INTENSITY_CLASSES,
    MAX_K,
    STATES,
    TIMEOUT_BITS,
    TRAINING_MODES,
)

__all__ = ["ACCESS", "WORD_BITS", "MAX_REGISTER_BITS", "MAP_VERSION", "ALICE_ID", "BOB_ID",
           "LOOPBACK_ID", "ALICE_DATA_PORTS", "BOB_DATA_PORTS", "Register", "RegisterMap",
           "alice_registers", "bob_registers", "BOARD_DEFAULTS", "board_parameters",
           "alice_board_registers", "bob_board_registers", "loopback_board_registers",
           "board_registers", "check_loopback_parameters", "SIFT_ROLES",
           "EMULATOR_DEFAULTS", "EMULATOR_DETECTORS", "EMULATOR_LEVELS", "MAX_EMULATOR_JITTER",
           "MAX_EMULATOR_DELAY", "check_emulator_parameters", "emulator_resets",
           "emulator_registers", "loopback_emulator", "bits_for", "default_im_levels",
           "default_pm_levels", "z_windows_packed"]

#: Access kinds of a register (see the module docstring).
ACCESS = ("rw", "ro", "rc", "strobe")
#: Bits of a bus data word.
WORD_BITS = 32
#: Widest register: two words.
MAX_REGISTER_BITS = 2 * WORD_BITS
#: Version of the register-map scheme (bank registers, access kinds, bus rules). Bump it when
#: they change; layout changes from the parameters show in ``map_crc`` instead.
MAP_VERSION = 1
#: ``id`` of Alice's map: ASCII "ALIC", first character in the top byte.
ALICE_ID = int.from_bytes(b"ALIC", "big")
#: ``id`` of Bob's map: ASCII "BOB ".
BOB_ID = int.from_bytes(b"BOB ", "big")
#: ``id`` of a loopback (self-test) board's map: ASCII "LOOP".
LOOPBACK_ID = int.from_bytes(b"LOOP", "big")

#: Ports of the transmitter top that carry per-cycle data, not registers: the QRNG input
#: stream, the serializer word and the symbol log stream.
ALICE_DATA_PORTS = ("qrng", "ser", "ser_valid", "log")
#: Ports of the receiver top that carry per-cycle data, not registers: the deserializer
#: samples, the gate words and the detection record stream.
BOB_DATA_PORTS = ("samples", "gates", "records")

_WORD_MASK = (1 << WORD_BITS) - 1


# --- Plain formulas shared with the gateware -------------------------------------------------
# The widths and resets below are those of the blocks' ports. They are plain Python so that the
# host can compute them without Amaranth; the blocks (which import Amaranth) have their own
# copies until these move to a plain module both import. test_regmap.py checks every width and
# reset against the tops, for several parameter sets.

def bits_for(n):
    """Bits of an unsigned value up to ``n`` (at least 1), as ``amaranth.utils.bits_for``."""
    return max(1, int(n).bit_length())


#: Entries of the driver's level tables: 4 intensity classes x 4 states x 2 bins, 4 states x
#: 2 bins. Entry ``(intensity << 3) | (state << 1) | bin`` of ``im_levels``,
#: ``(state << 1) | bin`` of ``pm_levels``.
_IM_LEVELS, _PM_LEVELS = 32, 8


def default_im_levels(dac_bits):
    """The reset of the driver's ``im_levels`` table, as
    :func:`timebin.gateware.tx.driver.default_im_levels`: codes 200, 100, 0, 0 (8-bit scale)
    for intensity classes 0..3 on the lit bins, 0 on unlit ones."""
    full = (1 << dac_bits) - 1
    codes = (round(200 * full / 255), round(100 * full / 255), 0, 0)
    return [codes[i >> 3] if ((i >> 1) & 3) >= 2 or ((i >> 1) & 3) == (i & 1) else 0
            for i in range(_IM_LEVELS)]


def default_pm_levels(pm_bits):
    """The reset of the driver's ``pm_levels`` table: ``2**(pm_bits - 1)`` on the late bin of
    X-, 0 elsewhere, as :func:`timebin.gateware.tx.driver.default_pm_levels`."""
    return [1 << (pm_bits - 1) if i == (3 << 1) | 1 else 0 for i in range(_PM_LEVELS)]


def z_windows_packed(uis_per_symbol):
    """The reset of a ``windows`` element: :func:`timebin.gateware.rx.binning.z_windows`
    (early bin class 0, late bin class 1), 2 bits per phase, phase 0 in bits 0..1."""
    k = uis_per_symbol // 2
    return sum(1 << (2 * phase) for phase in range(k, 2 * k))


# --- Registers ---------------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Register:
    """One register of a map.

    Attributes
    ----------
    name : str
        Unique in its map: the port name, ``{port}.{k}`` for element ``k`` of an array port,
        with ``@{offset}`` for a 64-bit piece of a wider value.
    address : int
        Word address of its (lo) word; even when it takes two words.
    width : int
        Bits, 1..64; above 32 the register takes two words.
    access : str
        One of :data:`ACCESS`.
    reset : int
        Value after reset (for a port, its init); for a constant, the constant.
    minimum, maximum : int
        Range of values a write may hold (``rw``; ``strobe``: 0..1); ``maximum`` defaults to
        ``2**width - 1``. For ``ro``/``rc`` registers the full range, unused.
    doc : str
        What it means, in the host's terms.
    port : str or None
        The top's port it drives or shows; ``None`` for a bank register.
    element : int or None
        Index within an array port, ``None`` for a plain port.
    offset : int
        Bit offset of this register within the element (or the plain port): non-zero only for
        the second and later 64-bit pieces of a wider value.

    Raises ``ValueError`` (``TypeError`` for a non-integer) naming a field that is out of range.
    """

    name: str
    address: int
    width: int
    access: str
    reset: int = 0
    minimum: int = 0
    maximum: int | None = None
    doc: str = ""
    port: str | None = None
    element: int | None = None
    offset: int = 0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Register name must be a non-empty string, not {self.name!r}")
        for field in ("address", "width", "reset", "minimum", "offset"):
            if not _is_int(getattr(self, field)):
                raise TypeError(f"Register {self.name}: {field} must be an integer, "
                                f"not {getattr(self, field)!r}")
        if not 1 <= self.width <= MAX_REGISTER_BITS:
            raise ValueError(f"Register {self.name}: width must be 1..{MAX_REGISTER_BITS}, "
                             f"not {self.width!r}")
        if self.access not in ACCESS:
            raise ValueError(f"Register {self.name}: access must be one of {ACCESS}, "
                             f"not {self.access!r}")
        if self.address < 0 or self.address % self.words:
            raise ValueError(f"Register {self.name}: address must be a non-negative multiple "
                             f"of its {self.words} words, not {self.address!r}")
        if self.maximum is None:
            object.__setattr__(self, "maximum", self.limit)
        if not _is_int(self.maximum):
            raise TypeError(f"Register {self.name}: maximum must be an integer, "
                            f"not {self.maximum!r}")
        if not 0 <= self.minimum <= self.maximum <= self.limit:
            raise ValueError(f"Register {self.name}: range must lie within 0..{self.limit}, "
                             f"not {self.minimum}..{self.maximum}")
        if not 0 <= self.reset <= self.limit:
            raise ValueError(f"Register {self.name}: reset must fit {self.width} bits, "
                             f"not {self.reset!r}")
        if self.access == "rw" and not self.minimum <= self.reset <= self.maximum:
            raise ValueError(f"Register {self.name}: reset must lie within "
                             f"{self.minimum}..{self.maximum}, not {self.reset!r}")
        if self.access == "strobe" and (self.width != 1 or self.reset
                                        or (self.minimum, self.maximum) != (0, 1)):
            raise ValueError(f"Register {self.name}: a strobe is one bit, reset 0, range 0..1")
        if self.element is not None and (not _is_int(self.element) or self.element < 0):
            raise ValueError(f"Register {self.name}: element must be a non-negative integer "
                             f"or None, not {self.element!r}")
        if self.offset < 0 or self.offset % MAX_REGISTER_BITS:
            raise ValueError(f"Register {self.name}: offset must be a non-negative multiple of "
                             f"{MAX_REGISTER_BITS}, not {self.offset!r}")

    @property
    def words(self):
        """Bus words the register takes: 1 or 2."""
        return -(-self.width // WORD_BITS)

    @property
    def addresses(self):
        """Word addresses of the register, lo first."""
        return tuple(range(self.address, self.address + self.words))

    @property
    def limit(self):
        """Largest value of ``width`` bits."""
        return (1 << self.width) - 1

    @property
    def writable(self):
        """The host writes it (``rw``, ``strobe``): the bank drives the port."""
        return self.access in ("rw", "strobe")

    def accepts(self, value):
        """Whether the bank takes a write of ``value`` (an int) to this register."""
        return self.writable and _is_int(value) and self.minimum <= value <= self.maximum

    def encode(self, value):
        """The bus words (lo first) of a write of ``value``. Raises ``ValueError`` naming the
        register and value if the bank would refuse it (``TypeError`` for a non-integer)."""
        if not self.writable:
            raise ValueError(f"Register {self.name} is {self.access}: it cannot be written")
        if not _is_int(value):
            raise TypeError(f"Register {self.name} takes an integer, not {value!r}")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Register {self.name} takes {self.minimum}..{self.maximum}, "
                             f"not {value!r}")
        return tuple((value >> (WORD_BITS * i)) & _WORD_MASK for i in range(self.words))

    def decode(self, words):
        """The value of the bus words read (lo first). Raises ``ValueError`` if there are not
        :attr:`words` of them or one is not a 32-bit word."""
        words = tuple(words)
        if len(words) != self.words or not all(_is_int(w) and 0 <= w <= _WORD_MASK
                                                for w in words):
            raise ValueError(f"Register {self.name} reads as {self.words} 32-bit words, "
                             f"not {words!r}")
        return sum(w << (WORD_BITS * i) for i, w in enumerate(words)) & self.limit


class RegisterMap:
    """The registers of one device, in address order, looked up by name or by address.

    Checks on construction (raising ``ValueError`` naming the offender): names unique, no word
    address taken twice, and the registers of each port tile it: every element ``0 .. n - 1``
    (or the plain port) is covered by pieces at offsets ``0, 64, ...``, all of one direction
    (writable or not).

    ``map[name]`` gives the :class:`Register` (``KeyError`` naming it otherwise),
    :meth:`at` the one holding a word address; iterating gives the registers in address order.
    """

    def __init__(self, device, registers):
        self.device = device
        self._registers = tuple(sorted(registers, key=lambda r: r.address))
        self._by_name, self._by_address = {}, {}
        for reg in self._registers:
            if reg.name in self._by_name:
                raise ValueError(f"Register name {reg.name!r} is used twice in {device}'s map")
            self._by_name[reg.name] = reg
            for address in reg.addresses:
                if address in self._by_address:
                    raise ValueError(f"Registers {self._by_address[address].name} and "
                                     f"{reg.name} both take word address {address:#x}")
                self._by_address[address] = reg
        self._ports = {}
        for reg in self._registers:
            if reg.port is not None:
                self._ports.setdefault(reg.port, []).append(reg)
        for port, regs in self._ports.items():
            self._check_port(port, regs)
        self._ports = {port: tuple(regs) for port, regs in self._ports.items()}

    @staticmethod
    def _check_port(port, regs):
        if len({reg.writable for reg in regs}) != 1:
            raise ValueError(f"Port {port} mixes writable and read-only registers")
        elements = {reg.element for reg in regs}
        if None in elements and len(elements) > 1:
            raise ValueError(f"Port {port} has both plain and element registers")
        if None not in elements and elements != set(range(len(elements))):
            raise ValueError(f"Port {port} does not have elements 0..{len(elements) - 1}: "
                             f"{sorted(elements)}")
        widths = set()
        for element in elements:
            pieces = sorted((reg for reg in regs if reg.element == element),
                            key=lambda reg: reg.offset)
            for i, reg in enumerate(pieces):
                if reg.offset != i * MAX_REGISTER_BITS or (
                        i < len(pieces) - 1 and reg.width != MAX_REGISTER_BITS):
                    raise ValueError(f"Port {port}: registers do not tile element "
                                     f"{element} (at {reg.name})")
            widths.add(pieces[-1].offset + pieces[-1].width)
        if len(widths) != 1:
            raise ValueError(f"Port {port}: elements of different widths {sorted(widths)}")

    def __iter__(self):
        return iter(self._registers)

    def __len__(self):
        return len(self._registers)

    def __contains__(self, name):
        return name in self._by_name

    def __getitem__(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.device}'s map has no register {name!r}") from None

    def at(self, address):
        """The register holding word ``address``. Raises ``KeyError`` for an unmapped one."""
        try:
            return self._by_address[address]
        except KeyError:
            raise KeyError(f"{self.device}'s map has no register at {address!r}") from None

    @property
    def names(self):
        """Register names in address order."""
        return tuple(reg.name for reg in self._registers)

    @property
    def size(self):
        """Word addresses spanned: one past the last register's last word."""
        return max(reg.addresses[-1] for reg in self._registers) + 1

    @property
    def address_bits(self):
        """Bits of a word address that reaches every register."""
        return bits_for(self.size - 1)

    def ports(self):
        """``{port: registers}`` for every top port in the map, in address order."""
        return dict(self._ports)

    def port_layout(self, port):
        """``(elements, element_width)`` of a port: ``elements`` is ``None`` for a plain port.
        The port's flat value holds element ``k`` at bits ``k * element_width`` up."""
        regs = self._ports[port]
        elements = None if regs[0].element is None else 1 + max(r.element for r in regs)
        return elements, max(r.offset + r.width for r in regs)

    def port_width(self, port):
        """Total bits of a port's flat value."""
        elements, width = self.port_layout(port)
        return (elements or 1) * width

    def bit_offset(self, register):
        """Where ``register`` (a name or :class:`Register` of a port) starts in its port's flat
        value."""
        reg = self[register] if isinstance(register, str) else register
        _, width = self.port_layout(reg.port)
        return (reg.element or 0) * width + reg.offset

    def port_reset(self, port):
        """The flat reset value of a port, from its registers' resets (the port's init)."""
        return sum(reg.reset << self.bit_offset(reg) for reg in self._ports[port])

    def split(self, port, value):
        """``{register name: value}`` writing the flat ``value`` of a whole port (element
        ``k`` at bits ``k * element_width``, as :meth:`port_layout`). Raises ``ValueError`` if
        it does not fit the port."""
        width = self.port_width(port)
        if not _is_int(value) or not 0 <= value < 1 << width:
            raise ValueError(f"Port {port} takes {width} bits, not {value!r}")
        return {reg.name: (value >> self.bit_offset(reg)) & reg.limit
                for reg in self._ports[port]}

    def join(self, port, values):
        """Inverse of :meth:`split`: the flat port value of ``{register name: value}``."""
        return sum(values[reg.name] << self.bit_offset(reg) for reg in self._ports[port])

    def crc(self):
        """CRC-32 of the layout (every field of every register, ``map_crc``'s own reset taken
        as 0): the value of the ``map_crc`` register."""
        text = ";".join(
            f"{r.name},{r.address},{r.width},{r.access},"
            f"{0 if r.name == 'map_crc' else r.reset},{r.minimum},{r.maximum},{r.port},"
            f"{r.element},{r.offset}" for r in self._registers)
        return zlib.crc32(f"{self.device};{text}".encode())

    def markdown(self):
        """The map as a Markdown table: word address, name, width, access, reset, range of
        writable values, description."""
        lines = [f"Register map of {self.device} (version {MAP_VERSION}, "
                 f"map_crc {self.crc():#010x}); word addresses, 32-bit words.", "",
                 "| address | name | width | access | reset | range | description |",
                 "|---|---|---|---|---|---|---|"]
        for reg in self._registers:
            address = " ".join(f"{a:#06x}" for a in reg.addresses)
            reset = _number(reg.reset)
            if reg.access == "rw":
                span = f"{_number(reg.minimum)}..{_number(reg.maximum)}"
            elif reg.access == "strobe":
                span = "write 1"
            else:
                span = ""
            doc = reg.doc.replace("|", "\\|")
            lines.append(f"| {address} | `{reg.name}` | {reg.width} | {reg.access} | {reset} "
                         f"| {span} | {doc} |")
        return "\n".join(lines) + "\n"

    def __repr__(self):
        return f"<RegisterMap {self.device}: {len(self)} registers, {self.size} words>"


def _number(value):
    return f"{value:#x}" if value >= 1 << 16 else str(value)


# --- Builders ----------------------------------------------------------------------------------

class _Layout:
    """Registers in the order they are added; each takes the next free word (two-word ones
    the next even one)."""

    def __init__(self, device, ident):
        self.device = device
        self.registers = []
        self.next = 0
        self.add("id", WORD_BITS, "ro", f"Device identifier: {ident:#010x}, ASCII "
                 f"{ident.to_bytes(4, 'big').decode()!r} ({device}).", reset=ident)
        self.add("version", WORD_BITS, "ro", "Version of the register-map scheme.",
                 reset=MAP_VERSION)
        self.add("map_crc", WORD_BITS, "ro", "CRC-32 of this layout (RegisterMap.crc): "
                 "compare with the host's map.")
        self.add("write_errors", WORD_BITS, "rc", "Writes refused (out of range, to a "
                 "read-only or unmapped address) since the last read; clears on read, "
                 "saturating.")

    def add(self, name, width, access, doc, *, reset=0, minimum=0, maximum=None, port=None,
            element=None, offset=0):
        words = -(-width // WORD_BITS)
        self.next += self.next % words
        self.registers.append(Register(name, self.next, width, access, reset, minimum,
                                       maximum, doc, port, element, offset))
        self.next += words

    def port(self, port, width, access, doc, *, reset=0, minimum=0, maximum=None,
             elements=None):
        """Registers of a top port of ``width`` bits, or of each of its ``elements`` (then
        ``reset`` is one value per element and ``doc`` may be a function of the index)."""
        for k in range(elements) if elements is not None else (None,):
            name = port if k is None else f"{port}.{k}"
            value = reset if k is None else reset[k]
            text = doc(k) if callable(doc) else doc
            if width <= MAX_REGISTER_BITS:
                self.add(name, width, access, text, reset=value, minimum=minimum,
                         maximum=maximum, port=port, element=k)
                continue
            assert minimum == 0 and maximum is None, "pieces of a value take any value"
            for offset in range(0, width, MAX_REGISTER_BITS):
                piece = min(MAX_REGISTER_BITS, width - offset)
                self.add(f"{name}@{offset}", piece, access,
                         f"{text} Bits {offset}..{offset + piece - 1}.",
                         reset=(value >> offset) & ((1 << piece) - 1), port=port, element=k,
                         offset=offset)

    def per_channel(self, port, channels, width, access, doc, **kwargs):
        reset = kwargs.pop("reset", 0)
        self.port(port, width, access, lambda k: f"Channel {k}: {doc}",
                  reset=reset if isinstance(reset, list) else [reset] * channels,
                  elements=channels, **kwargs)

    def build(self):
        registers = RegisterMap(self.device, self.registers)
        crc = registers.crc()
        return RegisterMap(self.device, [replace(reg, reset=crc) if reg.name == "map_crc"
                                         else reg for reg in registers])


class _Prefixed:
    """A view of a :class:`_Layout` that prefixes every port (and register) name: the
    transmitter's and the receiver's registers side by side on a loopback board."""

    def __init__(self, layout, prefix):
        self.layout = layout
        self.prefix = prefix

    def port(self, port, *args, **kwargs):
        self.layout.port(self.prefix + port, *args, **kwargs)

    def per_channel(self, port, *args, **kwargs):
        self.layout.per_channel(self.prefix + port, *args, **kwargs)


_COUNTER_BITS = 32
_SATURATING = "Saturating at 2**32 - 1, never cleared: take differences."


def _alice_layout(*, layout=None, lanes, uis_per_symbol, prob_bits=12, p_z=0.9,
                  intensity_probs=(0.7, 0.3), dac_bits=8, pm_bits=1, max_delay=None,
                  health_window=1024, h_min=1.0, alpha=2**-40, log_depth=16, trivium_bits=64,
                  log_ram=False):
    """The registers of the transmitter top, not yet built (see alice_registers).
    ``trivium_bits`` (the CSPRNG's core width) and ``log_ram`` add no register."""
    check_int("Lane count", lanes, minimum=1)
    check_int("UIs per symbol", uis_per_symbol, minimum=2)
    if uis_per_symbol % 2:
        raise ValueError(f"UIs per symbol must be even, not {uis_per_symbol!r}")
    check_int("Probability precision", prob_bits, minimum=1, maximum=24)
    check_int("IM DAC width", dac_bits, minimum=1, maximum=16)
    check_int("PM DAC width", pm_bits, minimum=1, maximum=8)
    if max_delay is None:
        max_delay = 2 * uis_per_symbol
    check_int("Maximum delay", max_delay, minimum=0)
    check_int("APT window", health_window, minimum=2)
    k = uis_per_symbol // 2
    rct, apt = sp800_90b_cutoffs(float(h_min), float(alpha), health_window)
    p_z_code, thresholds = probability_settings(prob_bits, p_z, intensity_probs)
    one = 1 << prob_bits

    lay = layout or _Layout("alice", ALICE_ID)
    lay.port("settings_error", 1, "ro", "A block holds a refused setting (a combination: "
             "pulse_offset + pulse_width, thresholds order).")
    lay.port("alarm", 1, "ro", "QRNG health alarm: symbols are dark and not valid for key "
             "until alarm_clear.")
    lay.port("alarm_clear", 1, "strobe", "Clear the QRNG health alarm and restart the tests.")
    # Entropy
    lay.port("source", 1, "rw", "Entropy source: 0 CSPRNG (Trivium from key, iv), 1 QRNG "
             "under SP 800-90B health tests.")
    lay.port("key", 80, "rw", "Trivium key, used from the next reseed.")
    lay.port("iv", 80, "rw", "Trivium IV (core c uses iv ^ c), used from the next reseed.")
    lay.port("reseed", 1, "strobe", "Reload the Trivium cores from key and iv.")
    rct_bits = max(8, bits_for(rct))
    lay.port("rct_cutoff", rct_bits, "rw", "Repetition count test cutoff (SP 800-90B 4.4.1).",
             reset=rct, minimum=2)
    lay.port("apt_cutoff", bits_for(health_window), "rw", "Adaptive proportion test cutoff "
             f"(SP 800-90B 4.4.2) in a window of {health_window} samples.", reset=apt,
             minimum=2, maximum=health_window)
    # Symbols
    lay.port("enable", 1, "rw", "Emit a symbol word every cycle.")
    lay.port("protocol", 1, "rw", "0: 3-state (Z0, Z1, X+), 1: 4-state BB84.")
    lay.port("p_z", prob_bits + 1, "rw", f"P(Z) in units of 2**-{prob_bits}.", reset=p_z_code,
             maximum=one)
    lay.port("thresholds", prob_bits + 1, "rw",
             lambda i: f"Intensity class {i + 1} and up from this draw, in units of "
             f"2**-{prob_bits}; non-decreasing over the entries.", reset=thresholds,
             maximum=one, elements=MAX_INTENSITY_CLASSES - 1)
    lay.port("training", 3, "rw", "Mode: " + ", ".join(
        f"{i} {mode}" for i, mode in enumerate(TRAINING_MODES)) + ".",
             maximum=len(TRAINING_MODES) - 1)
    lay.port("training_intensity", 2, "rw", "Intensity class of training symbols.")
    # Driver
    lay.port("pulse_offset", bits_for(k), "rw", f"First pulse UI within a bin; "
             f"pulse_offset + pulse_width <= {k}.", maximum=k - 1)
    lay.port("pulse_width", bits_for(k), "rw", "Pulse UIs per bin.", reset=k, minimum=1,
             maximum=k)

    def im_doc(i):
        bin_name = ("early", "late")[i & 1]
        return (f"IM DAC code of intensity class {i >> 3}, state {STATES[(i >> 1) & 3]}, "
                f"{bin_name} bin.")

    lay.port("im_levels", dac_bits, "rw", im_doc, reset=default_im_levels(dac_bits),
             elements=_IM_LEVELS)
    lay.port("im_idle", dac_bits, "rw", "IM DAC code outside the pulses and of dark symbols.")
    lay.port("pm_levels", pm_bits, "rw",
             lambda i: f"PM code of state {STATES[i >> 1]}, {('early', 'late')[i & 1]} bin.",
             reset=default_pm_levels(pm_bits), elements=_PM_LEVELS)
    for output in ("carver", "im", "pm"):
        lay.port(f"delay_{output}", bits_for(max_delay), "rw",
                 f"Fine delay of the {output} output in UIs.", maximum=max_delay)
    # Status
    lay.port("underflow", _COUNTER_BITS, "ro", "Data-mode cycles without entropy (dark "
             f"symbols). {_SATURATING}")
    lay.port("blanked", _COUNTER_BITS, "ro", "Cycles darkened by unhealthy entropy or the "
             f"alarm. {_SATURATING}")
    lay.port("health_fail_cycles", _COUNTER_BITS, "ro", "Cycles in which a health test "
             f"failed. {_SATURATING}")
    lay.port("log_dropped", _COUNTER_BITS, "ro", "Symbol words the full log FIFO dropped. "
             f"{_SATURATING}")
    lay.port("log_overflow", 1, "ro", "log_dropped is not 0.")
    return lay


def _bob_layout(*, layout=None, channels, lanes, uis_per_symbol, oversampling=1,
                  max_dead_time=(1 << 17) - 1, max_gate_period=256, max_delay=(1 << 20) - 1,
                  fifo_depth=16, histogram_period=1, histogram_bits=32, max_window=1 << 24):
    """The registers of the receiver top, not yet built (see bob_registers)."""
    C, S = channels, uis_per_symbol
    check_int("Channel count", C, minimum=1, maximum=MAX_CHANNELS)
    check_int("Lane count", lanes, minimum=1)
    check_int("UIs per symbol", S, minimum=2, maximum=256)
    if S % 2:
        raise ValueError(f"UIs per symbol must be even, not {S!r}")
    W = lanes * S
    check_int("Maximum dead time", max_dead_time, minimum=W, maximum=(1 << 32) - 1)
    check_int("Maximum gate period", max_gate_period, minimum=1, maximum=1 << 16)
    check_int("Maximum delay", max_delay, minimum=0, maximum=(1 << 32) - 1)
    check_int("Histogram period", histogram_period, minimum=1, maximum=256)
    check_int("Histogram bin width", histogram_bits, minimum=1, maximum=64)
    check_int("Maximum window", max_window, minimum=1, maximum=1 << 32)
    gate_uis = max_gate_period * S
    bins = histogram_period * S
    window_bits = bits_for(max_window)

    lay = layout or _Layout("bob", BOB_ID)
    lay.port("settings_error", 1, "ro", "A block holds a refused setting (a combination: "
             "a channel's gate_period, gate_offset, gate_width).")
    lay.port("alarm", 1, "ro", "Blinding watchdog alarm, stamped on the records, latched until "
             "alarm_clear.")
    lay.port("alarm_clear", 1, "strobe", "Clear the watchdog alarms and start a new window.")
    lay.port("alarm_channels", C, "ro", "Bit k: a check of channel k tripped since the last "
             "alarm_clear.")
    lay.port("alarm_trips", _COUNTER_BITS, "ro", f"Cycles in which a watchdog check tripped. "
             f"{_SATURATING}")
    # Time and dead time
    lay.port("epoch", INDEX_BITS, "rw", "Symbol index the word after epoch_load starts at.")
    lay.port("epoch_load", 1, "strobe", "Start the next word at symbol epoch.")
    lay.port("dead_time", bits_for(max_dead_time), "rw", "Dead time in UIs, counting the "
             "click's own.", reset=W, minimum=W, maximum=max_dead_time)
    lay.port("dead_mode", 1, "rw", "0: per detector, 1: common to all detectors (Weier et al. "
             "2011).", reset=1)
    # Gates
    lay.per_channel("gate_enable", C, 1, "rw", "gate the detector (0: free-running).")
    lay.per_channel("gate_period", C, bits_for(max_gate_period), "rw", "gate period in "
                    "symbols.", reset=1, minimum=1, maximum=max_gate_period)
    lay.per_channel("gate_offset", C, bits_for(gate_uis), "rw", "start of the gate in the "
                    "period, UIs; below gate_period * S.", maximum=gate_uis - 1)
    lay.per_channel("gate_width", C, bits_for(gate_uis), "rw", "gate length in UIs; at most "
                    "gate_period * S.", reset=S // 2, minimum=1, maximum=gate_uis)
    # Binning
    lay.per_channel("delay", C, bits_for(max_delay), "rw", "delay offset in UIs (fibre, "
                    "cables, detector latency).", maximum=max_delay)
    lay.per_channel("windows", C, 2 * S, "rw", "window class of each phase, 2 bits each, "
                    "phase 0 in bits 0..1: 0 early, 1 late, 2 middle, 3 discard.",
                    reset=z_windows_packed(S))
    # Watchdog
    lay.port("watchdog_window", window_bits, "rw", "Watchdog window in cycles.",
             reset=max_window, minimum=1, maximum=max_window)
    lay.port("watchdog_max_clicks", window_bits, "rw", "Clicks a channel may take in a window.",
             reset=max_window)
    lay.port("watchdog_max_fill", 9, "rw", "Largest fraction of gates, in 256ths, a channel "
             "may click in over a window (256: no check).", reset=256, maximum=256)
    # Histogram
    lay.port("histogram_clear", 1, "strobe", "Zero every bin (a sweep) and restart "
             "histogram_counted.")
    lay.port("histogram_clearing", 1, "ro", "A clear sweep is running.")
    lay.port("histogram_channel", bits_for(C - 1), "rw", "Channel of the bin to read.",
             maximum=C - 1)
    lay.port("histogram_bin", bits_for(bins - 1), "rw", "Bin to read, (index mod "
             f"{histogram_period}) * {S} + phase.", maximum=bins - 1)
    lay.port("histogram_data", histogram_bits, "ro", "The bin addressed by histogram_channel "
             "and histogram_bin: a read given 3 cycles or more after their write sees it.")
    # Records
    lay.port("records_out", 64, "ro", "Records taken from the record stream.")
    lay.port("overflow", 1, "ro", "A record was dropped (overflows) since reset.")
    for port, doc in (
            ("clicks", "rising edges."),
            ("accepted", "clicks accepted by the dead time."),
            ("dead_discards", "clicks not accepted (clicks - accepted)."),
            ("window_discards", "accepted clicks of class discard."),
            ("overflows", "records dropped because the channel's FIFO was full."),
            ("histogram_counted", "clicks added to the histogram since the last clear."),
            ("histogram_dropped", "clicks the histogram could not add (lost to a clear).")):
        note = ("Saturating." if port == "histogram_counted" else _SATURATING)
        lay.per_channel(port, C, _COUNTER_BITS, "ro", f"{doc} {note}")
    return lay


def alice_registers(**params):
    """The register map of Alice's :class:`~timebin.gateware.tx.top.Transmitter` built with
    the same parameters (``alice_registers(**transmitter.params)``).

    One register per setting and status port of the top, except :data:`ALICE_DATA_PORTS`;
    ``reseed`` and ``alarm_clear`` are strobes. Checks the parameters that shape the map and
    raises ``TypeError`` or ``ValueError`` naming a bad one; the top checks the rest.
    """
    return _alice_layout(**params).build()


def bob_registers(**params):
    """The register map of Bob's :class:`~timebin.gateware.rx.top.Receiver` built with the
    same parameters (``bob_registers(**receiver.params)``).

    One register per setting and status port of the top, per channel for the array ports,
    except :data:`BOB_DATA_PORTS`; ``epoch_load``, ``alarm_clear`` and ``histogram_clear`` are
    strobes. Checks the parameters that shape the map and raises ``TypeError`` or
    ``ValueError`` naming a bad one; the top checks the rest.
    """
    return _bob_layout(**params).build()


# --- The loopback board's channel emulator ---------------------------------------------------

#: Construction parameters of the channel emulator
#: (:class:`~timebin.gateware.emulator.ChannelEmulator`) that a loopback board's ``emulator``
#: sets, with their defaults (``max_delay`` ``None``: 16 words less one UI). The others follow
#: from the board's tops: ``lanes``, ``uis_per_symbol``, ``dac_bits`` and ``pm_bits`` from
#: Alice's, ``channels`` from Bob's.
EMULATOR_DEFAULTS = {"max_delay": None, "max_jitter": 3, "prob_bits": 16}
#: Detectors the emulator drives: channel 0 the Z detector, 1 and 2 the X detectors at the
#: + and - ports (the sifter's roles ``ROLE_Z``, ``ROLE_X_PLUS``, ``ROLE_X_MINUS``).
EMULATOR_DETECTORS = 3
#: Light levels of the emulator: an IM code reaching ``thresholds[i]`` is level ``i + 1`` or up.
EMULATOR_LEVELS = 4
#: Largest ``max_jitter`` (UIs).
MAX_EMULATOR_JITTER = 7
#: Largest ``max_delay`` (UIs).
MAX_EMULATOR_DELAY = (1 << 24) - 1


def check_emulator_parameters(lanes, uis_per_symbol, channels, dac_bits, pm_bits, max_delay,
                              max_jitter, prob_bits):
    """Check the construction parameters of the channel emulator (and of its model); returns
    ``max_delay`` with its default filled in. Raises ``TypeError`` or ``ValueError`` naming
    the bad value."""
    check_int("Lane count", lanes, minimum=1, maximum=256)
    check_int("UIs per symbol", uis_per_symbol, minimum=2, maximum=256)
    if uis_per_symbol % 2:
        raise ValueError(f"UIs per symbol must be even, not {uis_per_symbol!r}")
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_int("IM DAC width", dac_bits, minimum=1, maximum=16)
    check_int("PM DAC width", pm_bits, minimum=1, maximum=8)
    if max_delay is None:
        max_delay = 16 * lanes * uis_per_symbol - 1
    check_int("Maximum delay", max_delay, minimum=0, maximum=MAX_EMULATOR_DELAY)
    check_int("Maximum jitter", max_jitter, minimum=0, maximum=MAX_EMULATOR_JITTER)
    check_int("Probability precision", prob_bits, minimum=16, maximum=24)
    return max_delay


def emulator_resets(dac_bits, prob_bits):
    """The reset values of the emulator's settings, ``{port: value}``: level thresholds at
    IM codes 50, 150 and 255 of an 8-bit DAC (scaled to ``dac_bits``; at least 1), so that
    the driver's default codes 0, 100 and 200 (:func:`default_im_levels`) are levels 0, 1
    and 2; click probabilities 0, 0.01, 0.05 and 0.1 per level; ``p_z`` 0.9 (Bob's basis
    splitter, as the virtual lab's); ``p_x_error`` 0.01 (an interferometer visibility of
    0.98); no dark clicks, jitter or delay; seed 0. Probabilities in units of
    ``2**-prob_bits``."""
    full = (1 << dac_bits) - 1
    one = 1 << prob_bits
    return {
        "seed": 0,
        "delay": 0,
        "jitter": 0,
        "thresholds": [max(1, round(50 * full / 255)), max(1, round(150 * full / 255)), full],
        "p_click": [round(p * one) for p in (0.0, 0.01, 0.05, 0.1)],
        "p_z": round(0.9 * one),
        "p_x_error": round(0.01 * one),
        "p_dark": 0,
    }


def _emulator_layout(*, layout=None, lanes, uis_per_symbol, channels=3, dac_bits=8, pm_bits=1,
                     max_delay=None, max_jitter=3, prob_bits=16):
    """The registers of the channel emulator, not yet built (see emulator_registers)."""
    max_delay = check_emulator_parameters(lanes, uis_per_symbol, channels, dac_bits, pm_bits,
                                          max_delay, max_jitter, prob_bits)
    reset = emulator_resets(dac_bits, prob_bits)
    one = 1 << prob_bits
    unit = f"in units of 2**-{prob_bits}"
    lay = layout or _Layout("emulator", LOOPBACK_ID)
    lay.port("settings_error", 1, "ro", "The emulator holds a refused setting (thresholds "
             "not non-decreasing).")
    lay.port("seed", 64, "rw", "Seed of the emulator's generators, used from the next reseed.")
    lay.port("reseed", 1, "strobe", "Reload the emulator's generators from seed.")
    lay.port("delay", bits_for(max_delay), "rw", "Channel delay in UIs, on top of the "
             "emulator's fixed latency.", maximum=max_delay)
    lay.port("jitter", bits_for(max_jitter), "rw", "Jitter J: a click moves by "
             "Binomial(2J, 1/2) - J UIs.", maximum=max_jitter)
    lay.port("thresholds", dac_bits, "rw",
             lambda i: f"Light level {i + 1} and up from this IM code; non-decreasing over "
             "the entries.", reset=reset["thresholds"], elements=EMULATOR_LEVELS - 1)
    lay.port("p_click", prob_bits + 1, "rw",
             lambda i: f"Probability that a symbol of light level {i} clicks at Bob, {unit}.",
             reset=reset["p_click"], maximum=one, elements=EMULATOR_LEVELS)
    lay.port("p_z", prob_bits + 1, "rw", f"Probability that a click goes to the Z detector, "
             f"{unit}.", reset=reset["p_z"], maximum=one)
    lay.port("p_x_error", prob_bits + 1, "rw", "Probability that an X state's middle-slot "
             f"click leaves by the wrong port, {unit}.", reset=reset["p_x_error"],
             maximum=one)
    lay.port("p_dark", prob_bits + 1, "rw", f"Probability of a dark click per detector per "
             f"word, {unit}.", reset=reset["p_dark"], maximum=one)
    lay.port("symbols", 64, "ro", "Symbol periods of valid serializer words seen.")
    lay.per_channel("clicks", channels, _COUNTER_BITS, "ro", f"clicks emitted. {_SATURATING}")
    lay.per_channel("lost", channels, _COUNTER_BITS, "ro", "clicks lost to another click in "
                    f"the same UI. {_SATURATING}")
    lay.port("unseen", _COUNTER_BITS, "ro", "Clicks for an X detector the board has no channel "
             f"for. {_SATURATING}")
    return lay


def emulator_registers(**params):
    """The registers of the channel emulator
    (:class:`~timebin.gateware.emulator.ChannelEmulator`) built with the same parameters, as
    a map of their own (a loopback board prefixes them ``emu_``)."""
    return _emulator_layout(**params).build()


def loopback_emulator(params, emulator):
    """The construction parameters of the channel emulator of a loopback board of ``params``
    (``{"alice": ..., "bob": ...}``), or ``None`` for ``emulator`` ``None`` or ``False``.
    ``emulator``: ``True`` (the defaults) or a dict of :data:`EMULATOR_DEFAULTS` keys. Raises
    ``ValueError`` naming an unknown key."""
    if emulator is None or emulator is False:
        return None
    if emulator is True:
        emulator = {}
    if not isinstance(emulator, dict):
        raise TypeError(f"Emulator parameters must be a dict, True or None, not {emulator!r}")
    unknown = set(emulator) - set(EMULATOR_DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown emulator parameter(s): {', '.join(sorted(unknown))} (the "
                         f"others follow from the board's tops)")
    check_loopback_parameters(params)
    alice, bob = params["alice"], params["bob"]
    full = {"lanes": alice["lanes"], "uis_per_symbol": alice["uis_per_symbol"],
            "channels": bob["channels"], "dac_bits": alice.get("dac_bits", 8),
            "pm_bits": alice.get("pm_bits", 1), **EMULATOR_DEFAULTS, **emulator}
    full["max_delay"] = check_emulator_parameters(**full)
    return full


# --- Boards: the top, its link and its board blocks -------------------------------------------

#: Board parameters that shape a board's map, with their defaults: ``frame_timeout`` (cycles
#: without a record word after which a ``DETECTIONS`` frame closes, Bob) and ``symbol_depth``
#: (words of Alice's symbol memory); a loopback board's ``emulator`` (``None``: none; else the
#: on-chip channel emulator's parameters, see :func:`loopback_emulator`).
BOARD_DEFAULTS = {
    "alice": {"symbol_depth": 1 << 10},
    "bob": {"max_records": DEFAULT_MAX_RECORDS, "frame_words": 256, "frame_timeout": 256},
    "loopback": {"symbol_depth": 1 << 10, "sift_frame_items": 64, "sift_frame_timeout": 256,
                 "emulator": None},
}


def board_parameters(role, board):
    """``board`` completed with the defaults of ``role`` (:data:`BOARD_DEFAULTS`); raises
    ``ValueError`` naming an unknown role or parameter."""
    if role not in BOARD_DEFAULTS:
        raise ValueError(f"Board role must be one of {tuple(BOARD_DEFAULTS)}, not {role!r}")
    unknown = set(board) - set(BOARD_DEFAULTS[role])
    if unknown:
        raise ValueError(f"Unknown {role} board parameter(s): {', '.join(sorted(unknown))}")
    return {**BOARD_DEFAULTS[role], **board}


def _board_section(lay):
    """The registers every board's map ends with, the same on every board: the host link's
    counters, then the state of the PHY that puts the board's data outputs on its pins
    (Alice's serializer word, Bob's gate words, a loopback board's scope output)."""
    for port, doc in (
            ("link_requests", "Request frames taken by the link controller."),
            ("link_bad_requests", "Requests refused (malformed payload, unknown type)."),
            ("link_frames_in", "Frames from the host that passed both checks."),
            ("link_header_errors", "Sync words from the host whose header check failed."),
            ("link_oversize", "Headers from the host claiming more payload than the board "
                              "takes."),
            ("link_crc_errors", "Frames from the host whose CRC-32 failed."),
            ("link_truncated", "Frames from the host given up after the timeout."),
            ("link_frames_out", "Frames sent to the host."),
            ("link_alarm_frames", "ALARM frames sent."),
            ("link_phy_errors", "Errors of the link PHY (UART framing errors and overruns).")):
        lay.port(port, _COUNTER_BITS, "ro", f"{doc} {_SATURATING}")
    lay.port("data_phy_ready", 1, "ro", "The data-output PHY is up. A SERDES (the ECPIX-5's "
             "DCU transmitter): its TX PLL locked and its channels out of reset. DDR/SDR "
             "pin registers and gearboxes (the other boards, a board without data outputs, "
             "a simulated board) have no state of their own: 1 whenever sync runs.",
             reset=1)
    lay.port("data_phy_errors", _COUNTER_BITS, "ro", "Error events of the data-output PHY: "
             "rising edges of its error flag (the DCU's TX FPGA-bridge FIFO error, "
             "CHx_FFS_TXFBFIFO_ERROR of TN1261: the FIFO between sync and the channel's byte "
             "clock); a flag that stays high counts once. Always 0 on DDR/SDR pin "
             f"registers, which have no error flag. {_SATURATING}")


def alice_board_registers(params, board=None):
    """The register map of an Alice board (:class:`~timebin.gateware.system.AliceBoard`):
    the transmitter's registers (``params`` as for :func:`alice_registers`), the symbol
    memory's counters, the link's counters and the state of the data-output PHY
    (``data_phy_ready``, ``data_phy_errors``; last, so that the addresses before them are
    those of maps without them)."""
    board = board_parameters("alice", board or {})
    check_int("Symbol memory depth", board["symbol_depth"], minimum=2, maximum=1 << 24)
    lay = _alice_layout(**params)
    lay.port("lookups", 64, "ro", "Symbol lookups answered.")
    lay.port("lookup_unavailable", _COUNTER_BITS, "ro", "Lookups answered unavailable (the "
             f"symbol was too old, dropped or not yet written). {_SATURATING}")
    lay.port("log_written", 64, "ro", "Symbol log words written to the symbol memory.")
    lay.port("log_missed", _COUNTER_BITS, "ro", "Symbol log words lost while the memory "
             f"cleared after reset. {_SATURATING}")
    lay.port("log_clearing", 1, "ro", "The symbol memory is clearing after reset.")
    _board_section(lay)
    return lay.build()


def bob_board_registers(params, board=None):
    """The register map of a Bob board (:class:`~timebin.gateware.system.BobBoard`): the
    receiver's registers (``params`` as for :func:`bob_registers`), the record compressor's
    and packetizer's, the link's counters and, as on Alice's board, the state of the
    data-output PHY (``data_phy_*``: that of the gate words)."""
    board = board_parameters("bob", board or {})
    lay = _bob_layout(**params)
    lay.port("record_k", K_PORT_BITS, "rw", "Rice parameter of the record blocks; best "
             "round(log2(ln2 / p)) at p detections per symbol.", reset=DEFAULT_K,
             maximum=MAX_K)
    lay.port("record_timeout", TIMEOUT_BITS, "rw", "Cycles a record block stays open at most, "
             "less one; 0: no timeout.", reset=DEFAULT_TIMEOUT)
    lay.port("record_flush", 1, "strobe", "Close the open record block now.")
    lay.port("compress_error", 1, "ro", "The compressor holds a refused setting.")
    lay.port("records_compressed", 64, "ro", "Records taken by the compressor.")
    lay.port("record_words", 64, "ro", "Compressed words sent.")
    lay.port("record_escapes", 64, "ro", "Records coded with their raw index (not the first "
             "of a block).")
    lay.port("frame_timeout", 16, "rw", "Cycles without a record word after which a "
             "DETECTIONS frame closes (0 acts as 1).", reset=board["frame_timeout"])
    lay.port("detection_frames", _COUNTER_BITS, "ro", f"DETECTIONS frames sent. {_SATURATING}")
    lay.port("detection_words", _COUNTER_BITS, "ro", f"Record words framed. {_SATURATING}")
    _board_section(lay)
    return lay.build()


#: Role of each detector channel on a loopback board (``sift_roles``): Z detector, X detector
#: at the + or the - port of the interferometer, ignored (as the sifter's ``ROLES``).
SIFT_ROLES = ("z", "x+", "x-", "ignored")


def check_loopback_parameters(params):
    """Refuse loopback parameters that are not ``{"alice": ..., "bob": ...}``."""
    if not isinstance(params, dict) or set(params) != {"alice", "bob"}:
        raise ValueError(f"Loopback parameters must be {{'alice': ..., 'bob': ...}}, not "
                         f"{params!r}")


def loopback_board_registers(params, board=None):
    """The register map of a loopback (self-test) board
    (:class:`~timebin.gateware.system.LoopbackBoard`): the transmitter's registers with names
    prefixed ``tx_``, the receiver's prefixed ``rx_`` (``params = {"alice": ..., "bob":
    ...}``), the on-chip sifter's (``sift_``), with ``board["emulator"]`` the channel
    emulator's (``emu_``, :func:`emulator_registers`), the link's counters and, as on
    Alice's board, the state of the data-output PHY (``data_phy_*``)."""
    board = board_parameters("loopback", board or {})
    check_loopback_parameters(params)
    lay = _Layout("loopback", LOOPBACK_ID)
    _alice_layout(layout=_Prefixed(lay, "tx_"), **params["alice"])
    _bob_layout(layout=_Prefixed(lay, "rx_"), **params["bob"])
    C = params["bob"]["channels"]
    lay.per_channel("sift_roles", C, 2, "rw", "role in sifting: " + ", ".join(
        f"{i} {role}" for i, role in enumerate(SIFT_ROLES)) + ".", reset=len(SIFT_ROLES) - 1)
    lay.port("sift_clear", 1, "strobe", "Zero the sifting counters (sift_records_in .. "
             "sift_errors): a new window for the QBER.")
    for port, doc in (("records_in", "Records decided (the sum of the outcomes below)."),
                      ("ignored", "Records of ignored channels."),
                      ("unclassified", "Records whose class does not fit their channel's role."),
                      ("unavailable", "Records whose symbol the memory does not hold."),
                      ("not_valid", "Records of symbols not valid for key.")):
        lay.port(f"sift_{port}", _COUNTER_BITS, "ro", f"{doc} Since sift_clear, saturating.")
    lay.port("sift_basis_mismatch", _COUNTER_BITS, "ro",
             lambda a: f"Records measured in the other basis than Alice's {'ZX'[a]}. Since "
             "sift_clear, saturating.", reset=[0, 0], elements=2)
    classes = 2 * MAX_INTENSITY_CLASSES
    for port, doc in (("sifted", "Sifted records"), ("errors", "Sifted records with Alice's "
                                                               "and Bob's bits differing")):
        lay.port(f"sift_{port}", _COUNTER_BITS, "ro",
                 lambda e, doc=doc: f"{doc}, basis {'ZX'[e // MAX_INTENSITY_CLASSES]}, "
                 f"intensity class {e % MAX_INTENSITY_CLASSES}. Since sift_clear, saturating.",
                 reset=[0] * classes, elements=classes)
    lay.port("sift_memory_clearing", 1, "ro", "The symbol memory is clearing after reset.")
    lay.port("sift_log_written", 64, "ro", "Symbol log words written to the memory.")
    lay.port("sift_log_missed", _COUNTER_BITS, "ro", "Symbol log words lost while the memory "
             f"cleared. {_SATURATING}")
    lay.port("sift_frame_timeout", 16, "rw", "Cycles without a sifted record after which a "
             "SIFT_RESULTS frame closes (0 acts as 1).", reset=board["sift_frame_timeout"])
    lay.port("sift_frames", _COUNTER_BITS, "ro", f"SIFT_RESULTS frames sent. {_SATURATING}")
    lay.port("sift_results", _COUNTER_BITS, "ro", f"Sifted records sent. {_SATURATING}")
    emulator = loopback_emulator(params, board["emulator"])
    if emulator is not None:
        _emulator_layout(layout=_Prefixed(lay, "emu_"), **emulator)
    _board_section(lay)
    return lay.build()


def board_registers(role, params, board=None):
    """The register map of a board of ``role`` (``alice``, ``bob`` or ``loopback``)."""
    if role == "loopback":
        return loopback_board_registers(params, board)
    if role == "alice":
        return alice_board_registers(params, board)
    if role == "bob":
        return bob_board_registers(params, board)
    raise ValueError(f"Board role must be one of {tuple(BOARD_DEFAULTS)}, not {role!r}")
