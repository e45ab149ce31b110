"""The gateware of a whole board, up to its link PHY: Alice's transmitter or Bob's receiver
with the register bank, the host link's framer, deframer and controller, and (Alice) the
symbol memory or (Bob) the record compressor and packetizer; a loopback (self-test) board
holds both tops, the on-chip sifter and, optionally, the channel emulator between them
(:mod:`timebin.gateware.emulator`).

Ref: DESIGN.md sections 4-5 (data flow; the register map and the frame format defined once
in plain Python). A board file (``boards/``) puts a link PHY (UART, FT245 FIFO) on
``link_rx``/``link_tx``, the serializer or deserializer PHY on the data ports, and the
state of the PHY of the data outputs on ``data_phy_ready`` and ``data_phy_error`` (shown as
registers); the simulated board (:mod:`timebin.sim.board`) drives the same ports from a
pseudo-terminal.

Data flow of a board (Bob; Alice has the symbol memory on the controller instead of the
compressor)::

    link_rx -> Deframer -> LinkController -> RegisterBank -> settings / status of the blocks
                                 |
    samples -> Receiver -> RecordCompressor -> DetectionPacketizer --.
                                 |                                   v
                                 '--- responses ---> FrameMux <- AlarmReporter
                                                        |
                                                        v
                                                     Framer -> link_tx
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .common import refuses_quietly
from .frames import FrameType
from .link.controller import (
    BUS_ADDRESS_BITS,
    AlarmReporter,
    DetectionPacketizer,
    FrameMux,
    ItemPacketizer,
    LinkController,
)
from .link.framer import COUNTER_BITS, HEADER_QUEUE_DEPTH, Deframer, Framer, count_events
from .protocol import ALARM_BITS, SIFT_RESULT_FIELDS, describe
from .regbank import RegisterBank
from .regmap import (
    BOB_DATA_PORTS,
    EMULATOR_DEFAULTS,
    alice_board_registers,
    board_parameters,
    bob_board_registers,
    check_loopback_parameters,
    loopback_board_registers,
    loopback_emulator,
)

__all__ = ["LINK_DEFAULTS", "LINK_OPTIONS", "AliceBoard", "BobBoard", "LoopbackBoard"]

#: Parameters of the link end of every board: ``max_request`` (longest request payload the
#: board takes, bytes; sets the deframer's buffer) and ``link_timeout`` (cycles without a
#: byte after which the deframer gives up a frame; ``None``: never).
LINK_DEFAULTS = {"max_request": 1024, "link_timeout": 1 << 20}
#: Link parameters for a small FPGA, in the description only when not these defaults (so
#: that the large boards' descriptions stay as they were): ``counter_bits`` (width of the
#: link's saturating counters, the UART's included; a narrower one sticks at its own
#: maximum, which the host reads here: :func:`~timebin.gateware.link.framer.count_events`),
#: ``header_queue`` (delivered frames the deframer's header queue holds), and three that
#: change no byte and no cycle: ``description_ram`` (the description ROM in a block RAM),
#: ``crc_ram`` (the framer's and deframer's CRC-32 from a table in block RAM) and
#: ``counter_dsp`` (the link's counters and the bank's ``write_errors`` in iCE40 DSPs).
LINK_OPTIONS = {"counter_bits": COUNTER_BITS, "header_queue": HEADER_QUEUE_DEPTH,
                "description_ram": False, "crc_ram": False, "counter_dsp": False}

# Mux sources, highest priority first.
_RESPONSES, _ALARMS, _STREAM = range(3)


def _link_parameters(link):
    """The link parameters of a board's description: :data:`LINK_DEFAULTS` with ``link``'s
    values, and those of :data:`LINK_OPTIONS` that ``link`` sets to other values."""
    unknown = set(link) - set(LINK_DEFAULTS) - set(LINK_OPTIONS)
    if unknown:
        raise ValueError(f"Unknown link parameter(s): {', '.join(sorted(unknown))}")
    options = {name: link[name] for name in LINK_OPTIONS
               if name in link and link[name] != LINK_OPTIONS[name]}
    return {**LINK_DEFAULTS, **{k: v for k, v in link.items() if k in LINK_DEFAULTS},
            **options}


class _Board(wiring.Component):
    """What Alice's and Bob's boards share: the link, the bank and the alarm reporter."""

    role = None

    def _build_link(self, params, board, link, register_map, lookups, streams):
        link = _link_parameters(link)
        self.params = dict(params)
        self.board = board
        self.link = link
        #: What the board answers a ``DESCRIBE_REQ`` with.
        self.description = describe(self.role, self.params, board, link)
        self.register_map = register_map
        options = {**LINK_OPTIONS, **link}
        bits, dsp = options["counter_bits"], options["counter_dsp"]
        self._counter_bits = bits
        self.bank = RegisterBank(register_map, address_bits=BUS_ADDRESS_BITS, errors_dsp=dsp)
        self.deframer = Deframer(max_payload=link["max_request"], timeout=link["link_timeout"],
                                 counter_bits=bits, queue_depth=options["header_queue"],
                                 crc_ram=options["crc_ram"], counter_dsp=dsp)
        self.controller = LinkController(description=self.description, lookups=lookups,
                                         counter_bits=bits, counter_dsp=dsp,
                                         description_ram=options["description_ram"])
        self.mux = FrameMux(_STREAM + 1 if streams else _STREAM)
        self.framer = Framer(counter_bits=bits, crc_ram=options["crc_ram"], counter_dsp=dsp)
        self.alarms = AlarmReporter(len(ALARM_BITS[self.role]), counter_bits=bits,
                                    counter_dsp=dsp)

    def _elaborate_link(self, m, stream_source, alarm_bits, status):
        """Wire the link blocks; ``stream_source`` (a block with ``start`` and ``payload``, or
        ``None``) is the mux's lowest-priority source; ``status`` maps the map's ports to
        values."""
        for name in ("bank", "deframer", "controller", "mux", "framer", "alarms"):
            m.submodules[name] = getattr(self, name)
        deframer, controller, mux, framer = (self.deframer, self.controller, self.mux,
                                             self.framer)
        wiring.connect(m, wiring.flipped(self.link_rx), deframer.bytes)
        wiring.connect(m, deframer.header, controller.header)
        wiring.connect(m, deframer.payload, controller.payload)
        wiring.connect(m, controller.bus, self.bank.bus)
        sources = [(_RESPONSES, (controller.start, controller.response)),
                   (_ALARMS, (self.alarms.start, self.alarms.payload))]
        if stream_source is not None:
            sources.append((_STREAM, (stream_source.start, stream_source.payload)))
        for index, source in sources:
            wiring.connect(m, source[0], getattr(mux, f"start_{index}"))
            wiring.connect(m, source[1], getattr(mux, f"payload_{index}"))
        wiring.connect(m, mux.start, framer.start)
        wiring.connect(m, mux.payload, framer.payload)
        wiring.connect(m, framer.bytes, wiring.flipped(self.link_tx))
        m.d.comb += self.alarms.alarms.eq(Cat(*alarm_bits))
        self.bank.connect(m, {
            **status,
            "link_requests": controller.requests,
            "link_bad_requests": controller.bad_requests,
            "link_frames_in": deframer.frames,
            "link_header_errors": deframer.header_errors,
            "link_oversize": deframer.oversize,
            "link_crc_errors": deframer.crc_errors,
            "link_truncated": deframer.truncated,
            "link_frames_out": framer.frames,
            "link_alarm_frames": self.alarms.reports,
            "link_phy_errors": self.phy_errors,
            **self._data_phy_status(m),
        })

    def _data_phy_status(self, m):
        """The values of the ``data_phy_*`` registers: ``data_phy_ready`` as it comes, and
        the rising edges of ``data_phy_error`` counted, saturating, in the link's counter
        width (so that a narrow counter sticks as the link's do). The flag's value before
        the first cycle after reset is taken as 0: a flag high from reset on counts once."""
        error_before = Signal(name="data_phy_error_before")
        m.d.sync += error_before.eq(self.data_phy_error)
        errors = Signal(COUNTER_BITS, name="data_phy_errors")
        # A logic counter even where the link's are in DSPs (counter_dsp, the iCE40s): those
        # boards have no SERDES, so the flag is constant 0 and synthesis removes the counter,
        # which a DSP would keep.
        count_events(m, errors, self.data_phy_error & ~error_before, self._counter_bits)
        return {"data_phy_ready": self.data_phy_ready, "data_phy_errors": errors}


def _board_members():
    """The members every board has: the host link's and the data-output PHY's state (its
    inits are a board's without a PHY of its own, DDR/SDR pins or a simulated board, for a
    board file or testbench that leaves them undriven)."""
    return {
        "link_rx": In(stream.Signature(8)),
        "link_tx": Out(stream.Signature(8)),
        "phy_errors": In(COUNTER_BITS),
        "data_phy_ready": In(1, init=1),
        "data_phy_error": In(1),
    }


class BobBoard(_Board):
    """Bob's board: :class:`~timebin.gateware.rx.top.Receiver`, the record compressor and
    the ``DETECTIONS`` packetizer, on the host link.

    Registers: :func:`~timebin.gateware.regmap.bob_board_registers` of ``params`` and
    ``board``. Alarm frames: :data:`~timebin.gateware.protocol.ALARM_BITS` ``["bob"]``.

    Parameters
    ----------
    params : dict
        The :class:`Receiver`'s parameters.
    board : dict
        ``max_records`` (records per compressed block), ``frame_words`` (words per
        ``DETECTIONS`` frame), ``frame_timeout`` (reset of the register); see
        :data:`~timebin.gateware.regmap.BOARD_DEFAULTS`.
    link : dict
        :data:`LINK_DEFAULTS`.

    Members
    -------
    samples : In(...)
        The deserializer words, as the receiver's ``samples``.
    gates : Out(...)
        The gate words, as the receiver's ``gates``.
    link_rx : In(stream.Signature(8))
        Bytes from the host (the link PHY's receiver).
    link_tx : Out(stream.Signature(8))
        Bytes to the host.
    phy_errors : In(32)
        The PHY's error count (UART framing errors and overruns), shown as a register.
    data_phy_ready, data_phy_error :
        The state of the PHY of ``gates`` (as :class:`AliceBoard`'s, of ``ser``).
    """

    role = "bob"

    @refuses_quietly
    def __init__(self, *, params, board=None, link=None):
        from .rx.compress import RecordCompressor
        from .rx.top import Receiver

        board = board_parameters("bob", board or {})
        self.receiver = Receiver(**params)
        self.compressor = RecordCompressor(channels=self.receiver.channels,
                                           uis_per_symbol=self.receiver.uis_per_symbol,
                                           max_records=board["max_records"])
        self.packetizer = DetectionPacketizer(max_words=board["frame_words"],
                                              timeout=board["frame_timeout"])
        self._build_link(self.receiver.params, board, link or {},
                         bob_board_registers(self.receiver.params, board), lookups=False,
                         streams=True)
        members = self.receiver.signature.members
        assert set(BOB_DATA_PORTS) == {"samples", "gates", "records"}
        super().__init__({"samples": members["samples"], "gates": members["gates"],
                          **_board_members()})

    def elaborate(self, platform):
        m = Module()
        rx, comp, pack = self.receiver, self.compressor, self.packetizer
        m.submodules.receiver = rx
        m.submodules.compressor = comp
        m.submodules.packetizer = pack
        m.d.comb += [rx.samples.eq(self.samples), self.gates.eq(rx.gates)]
        wiring.connect(m, rx.records, comp.records)
        wiring.connect(m, comp.words, pack.words)
        top_ports = {port: getattr(rx, port) for port in self.register_map.ports()
                     if port in rx.signature.members}
        status = {
            **top_ports,
            "record_k": comp.k,
            "record_timeout": comp.timeout,
            "record_flush": comp.flush,
            "compress_error": comp.settings_error,
            "records_compressed": comp.records_in,
            "record_words": comp.words_out,
            "record_escapes": comp.escapes,
            "frame_timeout": pack.timeout,
            "detection_frames": pack.frames,
            "detection_words": pack.words_framed,
        }
        self._elaborate_link(m, pack, (rx.alarm, rx.overflow, rx.settings_error,
                                       comp.settings_error), status)
        return m


class AliceBoard(_Board):
    """Alice's board: :class:`~timebin.gateware.tx.top.Transmitter` and the symbol memory
    that answers the host's lookups, on the host link.

    Registers: :func:`~timebin.gateware.regmap.alice_board_registers` of ``params`` and
    ``board``. Alarm frames: :data:`~timebin.gateware.protocol.ALARM_BITS` ``["alice"]``.
    The memory takes every word of the transmitter's symbol log.

    Parameters
    ----------
    params : dict
        The :class:`Transmitter`'s parameters.
    board : dict
        ``symbol_depth``: words of the symbol memory (a power of two).
    link : dict
        :data:`LINK_DEFAULTS`.

    Members
    -------
    qrng : In(stream.Signature(...))
        The QRNG's entropy words, as the transmitter's ``qrng``.
    ser, ser_valid : Out(...)
        The serializer word, as the transmitter's.
    link_rx, link_tx, phy_errors :
        As :class:`BobBoard`.
    data_phy_ready : In(1, init=1)
        The PHY of ``ser`` is up (a SERDES: its PLL locked, its channels out of reset; DDR or
        SDR pin registers: 1), shown as ``data_phy_ready``.
    data_phy_error : In(1)
        The PHY of ``ser`` flags an error (a SERDES's FIFO error; 0 without one, the init):
        its rising edges are counted in ``data_phy_errors``.
    """

    role = "alice"

    @refuses_quietly
    def __init__(self, *, params, board=None, link=None):
        from .tx.symbol_memory import SymbolMemory
        from .tx.top import Transmitter

        board = board_parameters("alice", board or {})
        self.transmitter = Transmitter(**params)
        self.memory = SymbolMemory(lanes=self.transmitter.lanes,
                                   depth_words=board["symbol_depth"])
        self._build_link(self.transmitter.params, board, link or {},
                         alice_board_registers(self.transmitter.params, board), lookups=True,
                         streams=False)
        members = self.transmitter.signature.members
        super().__init__({"qrng": members["qrng"], "ser": members["ser"],
                          "ser_valid": members["ser_valid"], **_board_members()})

    def elaborate(self, platform):
        m = Module()
        tx, memory = self.transmitter, self.memory
        m.submodules.transmitter = tx
        m.submodules.memory = memory
        wiring.connect(m, wiring.flipped(self.qrng), tx.qrng)
        m.d.comb += [self.ser.eq(tx.ser), self.ser_valid.eq(tx.ser_valid)]
        wiring.connect(m, tx.log, memory.log)
        wiring.connect(m, self.controller.lookup, memory.lookup)
        wiring.connect(m, memory.result, self.controller.result)
        top_ports = {port: getattr(tx, port) for port in self.register_map.ports()
                     if port in tx.signature.members}
        status = {
            **top_ports,
            "lookups": memory.lookups,
            "lookup_unavailable": memory.unavailable,
            "log_written": memory.written,
            "log_missed": memory.missed,
            "log_clearing": memory.clearing,
        }
        self._elaborate_link(m, None, (tx.alarm, tx.log_overflow, tx.settings_error,
                                        memory.missed != 0), status)
        return m


class LoopbackBoard(_Board):
    """A self-test board: Alice's transmitter and Bob's receiver on one chip, with the
    :class:`~timebin.gateware.sifting.LoopbackSifter` comparing bases on chip and the sifted
    detections sent in ``SIFT_RESULTS`` frames; QBER counters per basis and intensity are
    registers.

    Without ``emulator``, the board file connects ``ser`` to ``samples`` through a channel
    (fibre and detectors); here both are ports, as on the Alice and Bob boards. With
    ``emulator``, the on-chip :class:`~timebin.gateware.emulator.ChannelEmulator` takes the
    transmitter's ``ser`` and feeds the receiver, so that a bare board runs the whole chain:
    ``ser`` and ``ser_valid`` stay outputs (for scope pins), and ``samples`` becomes an
    optional input OR-ed onto the emulator's samples (extra detector clicks; a board file
    leaves it undriven, 0).

    Registers: :func:`~timebin.gateware.regmap.loopback_board_registers` (the transmitter's
    prefixed ``tx_``, the receiver's ``rx_``, the sifter's ``sift_``, the emulator's
    ``emu_``). Alarm frames: :data:`~timebin.gateware.protocol.ALARM_BITS` ``["loopback"]``
    (``settings_error`` includes the emulator's).

    Parameters
    ----------
    params : dict
        ``{"alice": Transmitter parameters, "bob": Receiver parameters}``, with the same
        ``lanes`` and ``uis_per_symbol``.
    board : dict
        ``symbol_depth`` (words of the sifter's symbol memory), ``sift_frame_items``
        (sifted records per frame), ``sift_frame_timeout`` (reset of the register),
        ``emulator`` (as the argument; one of the two may be given).
    link : dict
        :data:`LINK_DEFAULTS`.
    emulator : dict, True or None
        The channel emulator's parameters (keys of
        :data:`~timebin.gateware.regmap.EMULATOR_DEFAULTS`: ``max_delay``, ``max_jitter``,
        ``prob_bits``; the rest follow from ``params``), ``True`` for the defaults, or
        ``None`` (no emulator: the board is as without the argument). Bob's
        ``oversampling`` must then be 1. The board's description carries them in its board
        parameters, so that the host builds the same map.

    Members
    -------
    qrng, ser, ser_valid :
        As :class:`AliceBoard`.
    samples, gates :
        As :class:`BobBoard` (with ``emulator``, ``samples`` is OR-ed onto the emulator's).
    link_rx, link_tx, phy_errors :
        As :class:`BobBoard`.
    data_phy_ready, data_phy_error :
        As :class:`AliceBoard`: the PHY of ``ser`` where a board file puts it on pins (1 and
        0 where it does not).
    """

    role = "loopback"

    @refuses_quietly
    def __init__(self, *, params, board=None, link=None, emulator=None):
        from .emulator import ChannelEmulator
        from .rx.top import Receiver
        from .sifting import LoopbackSifter, SiftedRecord
        from .tx.top import Transmitter

        board = board_parameters("loopback", board or {})
        check_loopback_parameters(params)
        if emulator is not None:
            if board["emulator"] is not None:
                raise ValueError("Give the emulator's parameters as the emulator argument or "
                                 "as board['emulator'], not both")
            board["emulator"] = emulator
        self.transmitter = Transmitter(**params["alice"])
        self.receiver = Receiver(**params["bob"])
        for name in ("lanes", "uis_per_symbol"):
            if getattr(self.transmitter, name) != getattr(self.receiver, name):
                raise ValueError(f"Alice's and Bob's {name} must agree on a loopback board, "
                                 f"not {getattr(self.transmitter, name)} and "
                                 f"{getattr(self.receiver, name)}")
        self.sifter = LoopbackSifter(channels=self.receiver.channels,
                                     lanes=self.receiver.lanes,
                                     depth_words=board["symbol_depth"])
        assert [name for name, _ in SiftedRecord] == [n for n, _ in SIFT_RESULT_FIELDS]
        self.packetizer = ItemPacketizer(item_bits=SiftedRecord.size,
                                         frame_type=FrameType.SIFT_RESULTS,
                                         max_items=board["sift_frame_items"],
                                         timeout=board["sift_frame_timeout"])
        both = {"alice": self.transmitter.params, "bob": self.receiver.params}
        emulator = loopback_emulator(both, board["emulator"])
        self.emulator = None
        if emulator is None:
            del board["emulator"]               # the description of a board without one
        else:
            if self.receiver.params["oversampling"] != 1:
                raise ValueError(f"The channel emulator feeds one sample per UI: Bob's "
                                 f"oversampling must be 1, not "
                                 f"{self.receiver.params['oversampling']!r}")
            self.emulator = ChannelEmulator(**emulator)
            board["emulator"] = {name: emulator[name] for name in EMULATOR_DEFAULTS}
        self._build_link(both, board, link or {}, loopback_board_registers(both, board),
                         lookups=False, streams=True)
        tx, rx = self.transmitter.signature.members, self.receiver.signature.members
        super().__init__({"qrng": tx["qrng"], "ser": tx["ser"], "ser_valid": tx["ser_valid"],
                          "samples": rx["samples"], "gates": rx["gates"], **_board_members()})

    def elaborate(self, platform):
        m = Module()
        tx, rx, sifter, pack = self.transmitter, self.receiver, self.sifter, self.packetizer
        m.submodules.transmitter = tx
        m.submodules.receiver = rx
        m.submodules.sifter = sifter
        m.submodules.packetizer = pack
        wiring.connect(m, wiring.flipped(self.qrng), tx.qrng)
        m.d.comb += [self.ser.eq(tx.ser), self.ser_valid.eq(tx.ser_valid),
                     self.gates.eq(rx.gates)]
        blocks = [("tx_", tx), ("rx_", rx), ("sift_", sifter)]
        settings_error = tx.settings_error | rx.settings_error
        if self.emulator is None:
            m.d.comb += rx.samples.eq(self.samples)
        else:
            emu = m.submodules.emulator = self.emulator
            m.d.comb += [emu.ser.eq(tx.ser), emu.ser_valid.eq(tx.ser_valid),
                         rx.samples.eq(emu.samples.as_value() | self.samples.as_value())]
            blocks.append(("emu_", emu))
            settings_error |= emu.settings_error
        wiring.connect(m, tx.log, sifter.log)
        wiring.connect(m, rx.records, sifter.records)
        m.d.comb += [pack.items.valid.eq(sifter.sifted_records.valid),
                     pack.items.payload.eq(sifter.sifted_records.payload.as_value()),
                     sifter.sifted_records.ready.eq(pack.items.ready)]
        status = {}
        for port in self.register_map.ports():
            for prefix, block in blocks:
                name = port[len(prefix):]
                if port.startswith(prefix) and name in block.signature.members:
                    status[port] = getattr(block, name)
        status.update({"sift_frame_timeout": pack.timeout, "sift_frames": pack.frames,
                       "sift_results": pack.items_framed})
        self._elaborate_link(m, pack, (tx.alarm, rx.alarm, rx.overflow, settings_error),
                             status)
        return m
