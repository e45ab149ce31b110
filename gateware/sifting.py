"""On-chip sifting of a loopback build: Alice's symbol log and Bob's detection records on one
FPGA, bases compared in the gateware, sifted bits and live error counters (QBER per basis and
intensity) out.

Ref: DESIGN.md section 2 (time-bin physics: the Z detector reads the arrival bin, early -> 0,
late -> 1; an X detector behind the unbalanced interferometer reads the middle slot, and the
output port it sits at gives the X bit: constructive + -> 0, destructive - -> 1) and
section 7 (what the gateware does not sift it counts, nothing is dropped silently); C. H.
Bennett and G. Brassard, "Quantum cryptography: public key distribution and coin tossing"
(1984), the sifting step: keep the detections whose basis matches the preparation basis.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import check_int, refuses_quietly
from .records import (
    BASIS_X,
    BASIS_Z,
    CLASS_EARLY,
    CLASS_LATE,
    CLASS_MIDDLE,
    INDEX_BITS,
    MAX_CHANNELS,
    MAX_INTENSITY_CLASSES,
)
from .rx.layouts import Detection
from .tx.layouts import Basis, SymbolWord
from .tx.symbol_memory import (
    MISSED_COUNTER_BITS,
    WRITTEN_COUNTER_BITS,
    SymbolMemory,
    check_symbol_memory_parameters,
)

__all__ = ["ROLE_Z", "ROLE_X_PLUS", "ROLE_X_MINUS", "ROLE_IGNORED", "ROLES", "ROLE_BITS",
           "SIFTED_FIELDS", "SiftedRecord", "SIFT_COUNTER_BITS", "SIFT_COUNTERS",
           "OUTCOME_COUNTERS", "check_sifter_parameters", "LoopbackSifter"]

#: Roles of a detector channel (the 2-bit elements of the ``roles`` setting): a Z detector
#: (reads ``early`` as bit 0, ``late`` as bit 1), an X detector at the constructive (+, bit 0)
#: or the destructive (-, bit 1) output port of the interferometer (reads ``middle``), or a
#: channel whose records are not sifted (counted in ``ignored``).
ROLE_Z = 0
ROLE_X_PLUS = 1
ROLE_X_MINUS = 2
ROLE_IGNORED = 3
ROLES = ("z", "x+", "x-", "ignored")
ROLE_BITS = 2

#: One sifted detection, LSB first: the symbol ``index``, the common ``basis``, Alice's
#: ``intensity`` class, Alice's and Bob's bits, and the record's ``alarm``.
#: (Plain Python like the lists of :mod:`timebin.gateware.records`, for the host to decode.)
SIFTED_FIELDS = (
    ("index", INDEX_BITS),
    ("basis", 1),
    ("intensity", 2),
    ("alice_bit", 1),
    ("bob_bit", 1),
    ("alarm", 1),
)

SiftedRecord = data.StructLayout({
    name: (Basis if name == "basis" else width) for name, width in SIFTED_FIELDS
})
"""One sifted detection (see :data:`SIFTED_FIELDS`)."""

#: Width of every counter of the sifter (saturating, zeroed by ``clear``).
SIFT_COUNTER_BITS = 32

#: Counters with one element per (basis, intensity class): element ``basis * 4 + intensity``.
_PER_CLASS = 2 * MAX_INTENSITY_CLASSES

#: ``{port: elements}`` of the counters ``clear`` zeroes (0: a plain port), in port order.
SIFT_COUNTERS = {
    "records_in": 0,
    "ignored": 0,
    "unclassified": 0,
    "unavailable": 0,
    "not_valid": 0,
    "basis_mismatch": 2,
    "sifted": _PER_CLASS,
    "errors": _PER_CLASS,
}
#: The counters of which each record decided adds to exactly one (element), so that their
#: sum equals ``records_in`` (until one saturates).
OUTCOME_COUNTERS = ("ignored", "unclassified", "unavailable", "not_valid", "basis_mismatch",
                    "sifted")


def check_sifter_parameters(channels, lanes, depth_words):
    """Check the construction parameters of :class:`LoopbackSifter` (and of its model).

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
    naming the value.
    """
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_symbol_memory_parameters(lanes, depth_words)


class LoopbackSifter(wiring.Component):
    """Sift Bob's detection records against Alice's symbols on one chip, and count the
    outcomes per basis and intensity class.

    Alice's symbol log (``log``) fills a
    :class:`~timebin.gateware.tx.symbol_memory.SymbolMemory` of ``depth_words`` words; each
    record taken from ``records`` looks up the symbol of its ``index`` there, and is
    *decided*: counted in the first of these that applies:

    * ``ignored``: its channel's role is ``ROLE_IGNORED`` (3), or its ``channel`` is not below
      ``channels``;
    * ``unclassified``: its class does not fit its channel's role: ``middle`` (or ``discard``)
      on a Z channel, anything but ``middle`` on an X channel;
    * ``unavailable``: the memory does not hold the symbol (not yet logged, overwritten,
      dropped from the log, or the memory's sweep after reset; see ``SymbolMemory``);
    * ``not_valid``: Alice's symbol is not ``valid`` for key (training, dark, unhealthy);
    * ``basis_mismatch[a]``: Bob's basis differs from Alice's basis ``a``;
    * ``sifted[4 * b + i]``: same basis ``b``, Alice's intensity class ``i``; the record is
      offered on ``sifted_records`` and, if Alice's and Bob's bits differ, also counted in
      ``errors[4 * b + i]``. The QBER of basis ``b`` and intensity ``i`` is
      ``errors[4 * b + i] / sifted[4 * b + i]``.

    Bob's basis and bit come from the record's channel's role and class: a Z channel (role
    0) reads ``early`` as Z 0 and ``late`` as Z 1; an X channel at the + port (role 1) reads
    ``middle`` as X 0, one at the - port (role 2) as X 1. The roles are those of the cycle in
    which the record is taken. ``records_in`` counts the records decided, so it is the sum
    of the outcome counters (:data:`OUTCOME_COUNTERS`) in every cycle, until one saturates.
    The sifter does not depend on the protocol: Alice's X bit is 1 only for X- (4-state
    BB84), so with the 3-state protocol every X click at the - port is an error.

    Timing: a record is taken in every cycle where ``records.valid`` and ``records.ready``
    are high. ``records.ready`` is low exactly in the cycles where the record due for its
    decision is to be sifted and the output register is full and not taken
    (``sifted_records.valid`` high, ``sifted_records.ready`` low): records are taken one a
    cycle while ``sifted_records`` is not back-pressured, and records that are not sifted
    never wait. ``records.ready`` depends combinationally on ``sifted_records.ready`` (and on
    the registers of the pipeline; not on ``records.valid``). ``log`` takes a word every
    cycle, whatever the records do. A record taken in
    cycle ``t`` is decided in the second cycle after ``t`` in which ``records.ready`` is high
    (``t + 2`` without back-pressure, :attr:`latency`); records are decided in the order taken,
    at most one a cycle. The lookup reads the memory as it is after the log write of cycle
    ``t`` (see ``SymbolMemory``: a word logged in cycle ``t`` is seen). A record decided in
    cycle ``d`` shows in the counters from cycle ``d + 1`` and, if sifted, is offered on
    ``sifted_records`` from cycle ``d + 1`` until taken. ``sifted_records.valid`` and
    ``payload`` come from a register; the payload keeps its last value while ``valid`` is low.

    Clear: a ``clear`` in cycle ``c`` zeroes every counter of :data:`SIFT_COUNTERS` and counts
    the records decided in cycle ``c`` into the new window: in a cycle ``u > c`` with no
    ``clear`` in ``c + 1 .. u - 1``, each counter holds the records decided in cycles
    ``c .. u - 1``. These are consecutive records in the order taken, so the counters of a
    window always describe the same records. Counters saturate at ``2**32 - 1`` (read as "at
    least"). ``clear`` does not touch the memory or its ``log_*`` counters.

    Parameters
    ----------
    channels : int
        Detector channels, 1..16 (the elements of ``roles``).
    lanes : int
        Symbols per log word (L), a power of two, 1..256, as ``SymbolMemory``.
    depth_words : int
        Words of the symbol memory (D), a power of two, 2..2**24, as ``SymbolMemory``. The
        memory must span the time from a symbol's emission to its detection record's arrival
        here (fibre, the receiver's latency and its merge FIFO).

    Members
    -------
    log : In(stream.Signature(SymbolWord(lanes)))
        Alice's symbol log (the transmitter's ``log``); ``ready`` is always high.
    records : In(stream.Signature(Detection))
        Bob's detection records (the receiver's ``records``).
    sifted_records : Out(stream.Signature(SiftedRecord))
        The sifted detections, in the order taken.
    roles : In(ArrayLayout(2, channels)), init all ``ROLE_IGNORED``
        Role of each detector channel (:data:`ROLES`).
    clear : In(1)
        Zero the counters (see above).
    records_in, ignored, unclassified, unavailable, not_valid : Out(32)
        Records decided, and the outcomes above; saturating.
    basis_mismatch : Out(ArrayLayout(32, 2))
        Records whose basis differs from Alice's, per Alice's basis; saturating.
    sifted, errors : Out(ArrayLayout(32, 8))
        Sifted records, and those of them with differing bits, per element
        ``basis * 4 + intensity``; saturating.
    memory_clearing : Out(1)
        The memory's sweep after reset is running (``SymbolMemory.clearing``); the symbols of
        records taken meanwhile are unavailable.
    log_written : Out(64)
        Log words written to the memory (``SymbolMemory.written``); not cleared.
    log_missed : Out(32)
        Log words shown during the sweep, not stored (``SymbolMemory.missed``); not cleared.
    """

    #: Cycles from a record taken to its decision, without back-pressure; its counts and
    #: sifted record show one cycle later.
    latency = SymbolMemory.latency

    @refuses_quietly
    def __init__(self, *, channels, lanes, depth_words):
        check_sifter_parameters(channels, lanes, depth_words)
        self.channels = channels
        self.lanes = lanes
        self.depth_words = depth_words
        self.memory = SymbolMemory(lanes=lanes, depth_words=depth_words)
        members = {
            "log": In(stream.Signature(SymbolWord(lanes))),
            "records": In(stream.Signature(Detection)),
            "sifted_records": Out(stream.Signature(SiftedRecord)),
            "roles": In(data.ArrayLayout(ROLE_BITS, channels), init=[ROLE_IGNORED] * channels),
            "clear": In(1),
        }
        for name, elements in SIFT_COUNTERS.items():
            members[name] = Out(data.ArrayLayout(SIFT_COUNTER_BITS, elements) if elements
                                else SIFT_COUNTER_BITS)
        members.update({
            "memory_clearing": Out(1),
            "log_written": Out(WRITTEN_COUNTER_BITS),
            "log_missed": Out(MISSED_COUNTER_BITS),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        memory = m.submodules.memory = self.memory
        wiring.connect(m, wiring.flipped(self.log), memory.log)
        m.d.comb += [
            self.memory_clearing.eq(memory.clearing),
            self.log_written.eq(memory.written),
            self.log_missed.eq(memory.missed),
        ]

        # Bob's side of a record, from the roles of the cycle it is taken in.
        side = data.StructLayout({"measured": 1, "ignored": 1, "basis": 1, "bit": 1,
                                  "alarm": 1})
        record = self.records.payload
        role = Signal(ROLE_BITS)
        m.d.comb += role.eq(ROLE_IGNORED)
        for k in range(self.channels):
            with m.If(record.channel == k):
                m.d.comb += role.eq(self.roles[k])
        taken_side = Signal(side)
        z_fits = (record.cls == CLASS_EARLY) | (record.cls == CLASS_LATE)
        x_fits = record.cls == CLASS_MIDDLE
        is_z = role == ROLE_Z
        m.d.comb += [
            taken_side.ignored.eq(role == ROLE_IGNORED),
            taken_side.measured.eq(Mux(is_z, z_fits, (role != ROLE_IGNORED) & x_fits)),
            taken_side.basis.eq(~is_z),
            taken_side.bit.eq(Mux(is_z, record.cls == CLASS_LATE, role == ROLE_X_MINUS)),
            taken_side.alarm.eq(record.alarm),
        ]

        # The lookup pipeline is the memory's; Bob's side moves beside it, with its stalls:
        # ``held_side`` beside the lookup held in stage 1, ``result_side`` beside the result
        # register.
        result = memory.result
        advance = memory.lookup.ready            # = ~result.valid | result.ready
        held_side = Signal(side)
        result_side = Signal(side)
        m.d.comb += [
            memory.lookup.valid.eq(self.records.valid),
            memory.lookup.payload.eq(record.index),
            self.records.ready.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += [held_side.eq(taken_side), result_side.eq(held_side)]

        # The decision, on the record in the result register.
        alice = result.payload
        usable = result_side.measured & alice.available & alice.valid
        same_basis = alice.basis.as_value() == result_side.basis
        sift = usable & same_basis
        out = self.sifted_records
        out_advance = ~out.valid | out.ready
        m.d.comb += result.ready.eq(out_advance | ~sift)
        decided = Signal()
        m.d.comb += decided.eq(result.valid & result.ready)

        with m.If(out_advance):
            m.d.sync += out.valid.eq(result.valid & sift)
            with m.If(result.valid & sift):
                m.d.sync += [
                    out.payload.index.eq(alice.index),
                    out.payload.basis.eq(alice.basis),
                    out.payload.intensity.eq(alice.intensity),
                    out.payload.alice_bit.eq(alice.bit),
                    out.payload.bob_bit.eq(result_side.bit),
                    out.payload.alarm.eq(result_side.alarm),
                ]

        # Counters: each record decided adds to records_in and to one outcome.
        measured = result_side.measured         # never set on an ignored channel
        clear = self.clear
        _count(m, self.records_in, decided, clear)
        _count(m, self.ignored, decided & result_side.ignored, clear)
        _count(m, self.unclassified, decided & ~result_side.ignored & ~result_side.measured,
               clear)
        _count(m, self.unavailable, decided & measured & ~alice.available, clear)
        _count(m, self.not_valid, decided & measured & alice.available & ~alice.valid, clear)
        for basis in (BASIS_Z, BASIS_X):
            _count(m, self.basis_mismatch[basis],
                   decided & usable & ~same_basis & (alice.basis.as_value() == basis), clear)
        error = alice.bit != result_side.bit
        element = Signal(3)
        m.d.comb += element.eq(alice.basis.as_value() * MAX_INTENSITY_CLASSES + alice.intensity)
        for k in range(_PER_CLASS):
            here = decided & sift & (element == k)
            _count(m, self.sifted[k], here, clear)
            _count(m, self.errors[k], here & error, clear)
        return m


def _count(m, counter, event, clear):
    """``counter`` counts the cycles where ``event`` holds, saturating; a ``clear`` cycle
    restarts it from its own event."""
    top = (1 << len(counter)) - 1
    with m.If(clear):
        m.d.sync += counter.eq(event)
    with m.Elif(event & (counter != top)):
        m.d.sync += counter.eq(counter + 1)
