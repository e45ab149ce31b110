"""Packing of gateware words as Python ints and numpy arrays, shared by models, testbenches
(Amaranth and cocotb) and the command line.

An Amaranth payload is one unsigned int, field bits LSB first. These helpers go between a
list of such ints and numpy arrays of fields, without a Python loop per field bit.
"""

import numpy as np

from ..gateware.records import INDEX_BITS, SYMBOL_FIELDS, field_offsets

__all__ = ["bits_to_ints", "ints_to_bits", "unpack_field", "pack_field", "symbol_word_bits",
           "pack_symbol_words", "unpack_symbol_words", "unpack_serializer_words"]


def bits_to_ints(bits):
    """(N, nbits) array of 0/1, LSB first -> list of N ints."""
    packed = np.packbits(np.asarray(bits, np.uint8), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def ints_to_bits(ints, nbits):
    """List of N non-negative ints below ``2**nbits`` -> (N, nbits) uint8 array, LSB first."""
    nbytes = max(1, (nbits + 7) // 8)
    raw = np.frombuffer(b"".join(int(x).to_bytes(nbytes, "little") for x in ints), np.uint8)
    return np.unpackbits(raw.reshape(len(ints), nbytes), axis=1,
                         bitorder="little")[:, :nbits]


def unpack_field(bits, offset, count, width):
    """``count`` unsigned fields of ``width`` bits from bit ``offset`` of each row of ``bits``
    -> (N, count) uint64."""
    chunk = bits[:, offset:offset + count * width].reshape(len(bits), count, width)
    weights = np.left_shift(np.uint64(1), np.arange(width, dtype=np.uint64))
    return (chunk.astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)


def pack_field(bits, offset, values, width):
    """Write (N, count) ``values`` as fields of ``width`` bits from ``offset`` into ``bits``."""
    values = np.asarray(values, np.uint64)
    n, count = values.shape
    shifts = np.arange(width, dtype=np.uint64)
    field = ((values[..., None] >> shifts) & np.uint64(1)).astype(np.uint8)
    bits[:, offset:offset + count * width] = field.reshape(n, count * width)


def symbol_word_bits(lanes):
    """Size in bits of ``SymbolWord(lanes)``: the 64-bit index, then ``lanes`` symbols."""
    return INDEX_BITS + lanes * sum(width for _, width in SYMBOL_FIELDS)


def _symbol_offsets(lanes):
    size = sum(width for _, width in SYMBOL_FIELDS)
    return size, field_offsets(SYMBOL_FIELDS)


def pack_symbol_words(lanes, fields, index=None):
    """Payload ints of ``SymbolWord(lanes)`` from per-field (N, L) arrays (missing -> 0) and
    an optional (N,) ``index``."""
    n = len(next(iter(fields.values()))) if fields else len(index)
    bits = np.zeros((n, symbol_word_bits(lanes)), np.uint8)
    size, offsets = _symbol_offsets(lanes)
    for name, (offset, width) in offsets.items():
        if name not in fields:
            continue
        values = np.asarray(fields[name], np.uint64)
        shifts = np.arange(width, dtype=np.uint64)
        for lane in range(lanes):
            base = INDEX_BITS + lane * size + offset
            bits[:, base:base + width] = (values[:, lane, None] >> shifts) & np.uint64(1)
    if index is not None:
        pack_field(bits, 0, np.asarray(index, np.uint64)[:, None], INDEX_BITS)
    return bits_to_ints(bits)


def unpack_symbol_words(lanes, ints):
    """Inverse of :func:`pack_symbol_words`: ``(index (N,), {field: (N, L) uint8})``."""
    bits = ints_to_bits(ints, symbol_word_bits(lanes))
    size, offsets = _symbol_offsets(lanes)
    index = unpack_field(bits, 0, 1, INDEX_BITS)[:, 0]
    lanes_bits = bits[:, INDEX_BITS:].reshape(len(bits), lanes, size)
    fields = {}
    for name, (offset, width) in offsets.items():
        weights = np.left_shift(1, np.arange(width))
        fields[name] = (lanes_bits[:, :, offset:offset + width].astype(np.int64)
                        @ weights).astype(np.uint8)
    return index, fields


def unpack_serializer_words(ints, lanes, uis_per_symbol, dac_bits, pm_bits):
    """``SerializerWord`` payload ints -> ``(carver, im, pm)``, each (N, L*S), UI 0 first.

    The layout is ``carver`` (1 bit per UI), ``im`` (``dac_bits`` per UI), ``pm``
    (``pm_bits`` per UI), in that order from bit 0.
    """
    uis = lanes * uis_per_symbol
    size = uis * (1 + dac_bits + pm_bits)
    bits = ints_to_bits(ints, size)
    carver = bits[:, :uis].copy()
    im = unpack_field(bits, uis, uis, dac_bits)
    pm = unpack_field(bits, uis + uis * dac_bits, uis, pm_bits)
    im = im.astype(np.uint8 if dac_bits <= 8 else np.uint16)
    return carver, im, pm.astype(np.uint8)
