"""Amaranth layouts of the transmitter's records (built from :mod:`timebin.gateware.records`).
"""

from amaranth.lib import data, enum

from ..records import INDEX_BITS, SYMBOL_FIELDS

__all__ = ["Basis", "Symbol", "SymbolWord", "SerializerWord", "EntropyWord"]


class Basis(enum.Enum, shape=1):
    """Preparation basis of a time-bin symbol."""

    Z = 0
    X = 1


Symbol = data.StructLayout({
    name: (Basis if name == "basis" else width) for name, width in SYMBOL_FIELDS
})
"""One symbol: basis, bit, intensity class, valid (usable for key), dark (no light)."""


def SymbolWord(lanes):
    """One cycle of symbols: the global index of lane 0, then ``lanes`` symbols in time order.

    Lane ``i`` carries symbol number ``index + i``.
    """
    return data.StructLayout({
        "index": INDEX_BITS,
        "symbols": data.ArrayLayout(Symbol, lanes),
    })


def SerializerWord(lanes, uis_per_symbol, dac_bits, pm_bits):
    """One cycle of serializer output: ``lanes * uis_per_symbol`` unit intervals, UI 0 first.

    ``carver``: one bit per UI, light on/off for the pulse carver.
    ``im``: one intensity-modulator DAC code per UI.
    ``pm``: one phase-modulator code per UI.
    """
    uis = lanes * uis_per_symbol
    return data.StructLayout({
        "carver": uis,
        "im": data.ArrayLayout(dac_bits, uis),
        "pm": data.ArrayLayout(pm_bits, uis),
    })


def EntropyWord(width):
    """``width`` random bits for one cycle of symbols, and whether they passed health tests.

    ``healthy`` is 0 when the bits come from a QRNG whose health-test alarm is set (the
    alarm covers the word that tripped it); symbols made from such bits are not emitted.
    """
    return data.StructLayout({"bits": width, "healthy": 1})
