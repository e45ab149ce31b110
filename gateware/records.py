"""Records that cross a block or chip boundary, defined once in plain Python.

The gateware builds its ``data.StructLayout`` s from these field lists
(:mod:`timebin.gateware.tx.layouts`); the reference models and the host decode with the same
lists. Fields are listed LSB first, as ``StructLayout`` packs them.
"""

__all__ = ["PROTOCOL_3STATE", "PROTOCOL_4STATE", "TRAINING_MODES", "PRBS_POLYNOMIALS",
           "entropy_bits_per_lane", "BASIS_Z", "BASIS_X", "STATES", "state_of",
           "SYMBOL_FIELDS", "SYMBOL_BITS",
           "INDEX_BITS", "MAX_INTENSITY_CLASSES", "field_offsets",
           "CLASS_EARLY", "CLASS_LATE", "CLASS_MIDDLE", "CLASS_DISCARD", "DETECTION_CLASSES",
           "MAX_CHANNELS", "PHASE_BITS", "DETECTION_FIELDS", "DETECTION_BITS", "TIME_BITS",
           "DEFAULT_K", "K_PORT_BITS", "DEFAULT_TIMEOUT", "TIMEOUT_BITS", "DEFAULT_MAX_RECORDS"]

#: Basis codes of the ``basis`` field.
BASIS_Z = 0
BASIS_X = 1

#: The four time-bin states, indexed by ``state_of(basis, bit)``: Z0 = |e>, Z1 = |l>,
#: X+ = (|e>+|l>)/sqrt2, X- = (|e>-|l>)/sqrt2 (DESIGN.md section 2).
STATES = ("Z0", "Z1", "X+", "X-")


def state_of(basis, bit):
    """State index 0..3 (``STATES``) of a basis and bit; works on ints and numpy arrays."""
    return basis * 2 + bit


#: Up to four intensity classes (signal, decoys, vacuum); class codes are 2 bits.
MAX_INTENSITY_CLASSES = 4

#: One symbol as Alice's symbol source emits and logs it.
#: ``valid``: the symbol came from healthy entropy in data mode and may enter the key.
#: ``dark``: no light is emitted for this symbol (health alarm, no entropy, disabled).
SYMBOL_FIELDS = (
    ("basis", 1),
    ("bit", 1),
    ("intensity", 2),
    ("valid", 1),
    ("dark", 1),
)
SYMBOL_BITS = sum(width for _, width in SYMBOL_FIELDS)

#: Width of the global symbol index (never wraps in practice: 2^64 symbols at 2.5 GS/s
#: is 234 years).
INDEX_BITS = 64


def field_offsets(fields):
    """``{name: (offset, width)}`` of an LSB-first field list."""
    out, offset = {}, 0
    for name, width in fields:
        out[name] = (offset, width)
        offset += width
    return out


#: Protocols of the symbol source: 3-state time-bin BB84 (Z0, Z1, X+; Boaron et al. 2018)
#: and 4-state BB84 (Z0, Z1, X+, X-).
PROTOCOL_3STATE = 0
PROTOCOL_4STATE = 1

#: Symbol-source modes: random data, or a training pattern for alignment in the lab.
#: Training symbols are Z-basis, never valid for key, and lit.
TRAINING_MODES = ("data", "all-early", "all-late", "alternating", "prbs7", "prbs31")

#: PRBS generators (ITU-T O.150): ``name: (degree, tap)``; Fibonacci form, new bit =
#: s[degree - 1] ^ s[tap - 1], shifted in at the LSB; initial state all ones.
PRBS_POLYNOMIALS = {"prbs7": (7, 6), "prbs31": (31, 28)}


def entropy_bits_per_lane(prob_bits):
    """Random bits one symbol consumes: basis draw, bit, intensity draw."""
    return 2 * prob_bits + 1


# --- Bob ---------------------------------------------------------------------------------

#: Classes of the binning window LUT: the arrival slot of a click within the symbol period
#: (DESIGN.md section 2). A Z detector reads ``early`` (bit 0) or ``late`` (bit 1); the X
#: detector behind its unbalanced interferometer has three slots, of which only the
#: ``middle`` one carries the X result; ``discard`` drops the click (counted).
CLASS_EARLY = 0
CLASS_LATE = 1
CLASS_MIDDLE = 2
CLASS_DISCARD = 3
DETECTION_CLASSES = ("early", "late", "middle", "discard")

#: Detector channels a receiver can have (the ``channel`` field is 4 bits).
MAX_CHANNELS = 16

#: Bits of the ``phase`` field: the UI within the symbol period, so S <= 256.
PHASE_BITS = 8

#: One detection as Bob's receiver emits it, LSB first.
#: ``index``: the symbol index the click belongs to, after the channel's delay offset.
#: ``phase``: the UI within that symbol (0 .. S-1).
#: ``channel``: the detector channel. ``cls``: the window class (never ``discard``).
#: ``alarm``: the anomaly watchdog was set when the click was taken.
DETECTION_FIELDS = (
    ("index", INDEX_BITS),
    ("phase", PHASE_BITS),
    ("channel", 4),
    ("cls", 2),
    ("alarm", 1),
)
DETECTION_BITS = sum(width for _, width in DETECTION_FIELDS)

#: Width of Bob's timestamps: UIs since reset.
TIME_BITS = 64


# --- Compressed detection blocks ------------------------------------------------------------
# The format Bob's RecordCompressor emits and timebin.host.records decodes (its module
# docstring describes the blocks); defined here once for both.

#: Tag of a block's first word (format 1 of the compressed record stream).
MAGIC = 0xB7
#: Words of a block header.
HEADER_WORDS = 3
#: The unary quotient that marks an escape (a raw 64-bit index follows).
ESCAPE_QUOTIENT = 16
#: Largest Rice parameter: a 5-bit header field. Gaps of ``16 * 2**31`` symbols and more
#: escape anyway.
MAX_K = 31
#: Most records in a block (the unary and fixed sections then stay below 2**16 words).
MAX_BLOCK_RECORDS = 4096
#: Width of the block sequence number.
SEQUENCE_BITS = 16
#: ``k`` of the record compressor after reset: the best Rice parameter at 10**-3
#: detections per symbol.
DEFAULT_K = 9
#: Width of the ``k`` port; values above ``MAX_K`` are refused.
K_PORT_BITS = 6
#: The compressor's block ``timeout`` after reset: 2**20 cycles (6.7 ms at 156.25 MHz).
DEFAULT_TIMEOUT = 1 << 20
#: Width of the ``timeout`` port (2**32 cycles is 27 s at 156.25 MHz).
TIMEOUT_BITS = 32
#: Records per block after which a block closes, by default.
DEFAULT_MAX_RECORDS = 1024
#: Half (0 first, 1 second) and class of each slot code 0..3.
SLOT_HALF = (0, 1, 1, 0)
SLOT_CLASS = (CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE, CLASS_MIDDLE)

class FieldWidths:
    """Bit widths of the per-record fields of a ``channels`` x ``uis_per_symbol`` receiver.

    ``channel`` (CB), ``phase`` (PB, escapes), ``half`` (H: UIs in the first half),
    ``offset`` (OB), ``normal`` (fields after a normal record's remainder: CB + 2 + OB) and
    ``escape`` (fields after an escape's index: CB + PB + 2).
    """

    def __init__(self, channels, uis_per_symbol):
        if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"Channel count must be an integer in 1..{MAX_CHANNELS}, not "
                             f"{channels!r}")
        if not isinstance(uis_per_symbol, int) or not 1 <= uis_per_symbol <= 1 << PHASE_BITS:
            raise ValueError(f"UIs per symbol must be an integer in 1..{1 << PHASE_BITS}, not "
                             f"{uis_per_symbol!r}")
        self.channels = channels
        self.uis_per_symbol = uis_per_symbol
        self.channel = (channels - 1).bit_length()
        self.phase = (uis_per_symbol - 1).bit_length()
        self.half = (uis_per_symbol + 1) // 2
        self.offset = (self.half - 1).bit_length()
        self.normal = self.channel + 2 + self.offset
        self.escape = self.channel + self.phase + 2

    def __repr__(self):
        return (f"FieldWidths(channels={self.channels}, uis_per_symbol={self.uis_per_symbol})")


def field_widths(channels, uis_per_symbol):
    """:class:`FieldWidths` of a receiver; raises ``ValueError`` for a bad shape."""
    return FieldWidths(channels, uis_per_symbol)


def pack_header(channels, uis_per_symbol, k, alarm, count, sequence, unary_words,
                fixed_words):
    """The three header words of a block, as ints (see the module docstring)."""
    return (MAGIC | (channels - 1) << 8 | (uis_per_symbol - 1) << 12 | k << 20
            | int(alarm) << 25,
            count | sequence << 16,
            unary_words | fixed_words << 16)
