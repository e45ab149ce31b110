"""Amaranth layouts of the receiver's records (built from :mod:`timebin.gateware.records`).

Between the receiver's blocks every record travels per channel, one slot per channel per
cycle, with a ``valid`` bit; there is no handshake before the record merge, so every stage
has a fixed latency and what it cannot carry it counts.
"""

from amaranth.lib import data
from amaranth.utils import bits_for

from ..records import DETECTION_FIELDS, INDEX_BITS, TIME_BITS

__all__ = ["SampleWord", "Hit", "Binned", "Detection"]


def SampleWord(channels, uis):
    """One cycle of detector samples: channel ``c`` is element ``c``, UI 0 (first in time)
    in bit 0."""
    return data.ArrayLayout(uis, channels)


def Hit(uis_per_symbol):
    """A click accepted by the front end (after dead time), in Bob's own time frame.

    ``time``: UIs since reset of the click's rising edge. ``symbol``: index of the symbol
    period (of Bob's counter, which ``epoch`` loads) holding that UI; ``ui``: the UI within
    that symbol period, ``0 .. S-1``.
    """
    return data.StructLayout({
        "valid": 1,
        "time": TIME_BITS,
        "symbol": INDEX_BITS,
        "ui": bits_for(uis_per_symbol - 1),
    })


def Binned(uis_per_symbol):
    """A hit after the channel's delay offset and window LUT: ``index`` and ``phase`` of the
    symbol Alice sent it in, and its class. ``valid`` is low for discarded clicks."""
    return data.StructLayout({
        "valid": 1,
        "index": INDEX_BITS,
        "phase": bits_for(uis_per_symbol - 1),
        "cls": 2,
    })


#: One detection record as the receiver emits it (see ``DETECTION_FIELDS``).
Detection = data.StructLayout(dict(DETECTION_FIELDS))
