"""The receiver's deserializer interface: what a board's PHY delivers to Bob's gateware.

A deserializer PHY (ECP5 DCU SERDES, DDR input gearboxes, or a simulation model) delivers, per
detector channel and per cycle, one word of samples, the earliest sample in bit 0. The word
holds either exactly the ``W = L * S`` UIs the receiver times (``oversampling`` 1), or
``k`` samples per UI (``oversampling`` k) that :class:`UiSampler` reduces to one bit per UI.
Which PHY a board uses is the board file's choice; every PHY offers
:func:`DeserializerSignature`.

Ref: DESIGN.md section 3 (one word of ``L * S`` bits per cycle, UI 0 first).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..common import check_int, refuses_quietly
from ..records import MAX_CHANNELS
from .layouts import SampleWord

__all__ = ["MAX_OVERSAMPLING", "DeserializerSignature", "check_sampler_parameters", "UiSampler"]

#: Most samples per UI a PHY may deliver.
MAX_OVERSAMPLING = 16


def DeserializerSignature(channels, samples_per_word):
    """The signature of a deserializer PHY, as seen from the PHY: ``samples`` of
    ``channels`` words of ``samples_per_word`` samples each cycle, and ``locked``, high once
    the PHY's clock and word alignment are good (its words are meaningless before)."""
    return wiring.Signature({
        "samples": Out(SampleWord(channels, samples_per_word)),
        "locked": Out(1),
    })


def check_sampler_parameters(channels, uis, oversampling):
    """Check the parameters of :class:`UiSampler` (and of its model); raise naming the value."""
    check_int("Channel count", channels, minimum=1, maximum=MAX_CHANNELS)
    check_int("UIs per word", uis, minimum=1)
    check_int("Oversampling (samples per UI)", oversampling, minimum=1,
              maximum=MAX_OVERSAMPLING)


class UiSampler(wiring.Component):
    """Reduce an oversampled deserializer word to one bit per UI.

    UI ``u`` of channel ``k`` is high iff any of the samples ``u * k_os .. u * k_os + k_os - 1``
    is high (``k_os`` = ``oversampling``): a detector pulse shorter than a UI still marks its UI,
    and the edge is timed to the UI it starts in. Combinational, no latency. With
    ``oversampling`` 1 the word passes unchanged.

    Parameters
    ----------
    channels : int
        Detector channels, 1..16.
    uis : int
        UIs per word (``W = L * S``).
    oversampling : int
        Samples per UI, 1..16.

    Members
    -------
    samples : In(SampleWord(channels, uis * oversampling))
        The PHY's words.
    uis_out : Out(SampleWord(channels, uis))
        One bit per UI.
    """

    @refuses_quietly
    def __init__(self, *, channels, uis, oversampling=1):
        check_sampler_parameters(channels, uis, oversampling)
        self.channels = channels
        self.uis = uis
        self.oversampling = oversampling
        super().__init__({
            "samples": In(SampleWord(channels, uis * oversampling)),
            "uis_out": Out(SampleWord(channels, uis)),
        })

    def elaborate(self, platform):
        m = Module()
        k = self.oversampling
        for c in range(self.channels):
            word = self.samples[c]
            for u in range(self.uis):
                m.d.comb += self.uis_out[c][u].eq(word[u * k:(u + 1) * k].any())
        return m
