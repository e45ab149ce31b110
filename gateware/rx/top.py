"""Bob's receiver top: detector samples in, gate words and detection records out.

Ref: DESIGN.md sections 2-4 (detection physics, lanes, data flow). Settings are plain ports
here; the register bank of the host link drives them (a later issue).
"""

from amaranth.hdl import Cat, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..common import count_saturating, refuses_quietly
from .binning import Binner, check_binner_parameters
from .frontend import DEFAULT_MAX_DEAD_TIME, ClickFrontEnd, check_frontend_parameters
from .histogram import PhaseHistogram, check_histogram_parameters
from .merge import RecordMerge, check_merge_parameters
from .phy import UiSampler, check_sampler_parameters
from .watchdog import Watchdog, check_watchdog_parameters

__all__ = ["ACCEPTED_COUNTER_BITS", "FORWARDED", "SETTINGS", "Receiver"]

#: Width of the saturating per-channel ``accepted`` counters.
ACCEPTED_COUNTER_BITS = 32

#: The ports of the receiver top that are ports of one of its blocks: block attribute ->
#: ``(inputs, outputs)``, each ``{top port: block port}``. Every other port of a block is
#: wired inside the top.
FORWARDED = {
    "sampler": ({"samples": "samples"}, {}),
    "frontend": ({name: name for name in ("epoch_load", "epoch", "dead_time", "dead_mode",
                                          "gate_enable", "gate_period", "gate_offset",
                                          "gate_width")},
                 {name: name for name in ("gates", "clicks", "dead_discards")}),
    "binner": ({"delay": "delay", "windows": "windows"},
               {"window_discards": "window_discards"}),
    "watchdog": ({"watchdog_window": "window", "watchdog_max_clicks": "max_clicks",
                  "watchdog_max_fill": "max_fill", "alarm_clear": "clear"},
                 {"alarm": "alarm", "alarm_channels": "alarm_channels",
                  "alarm_trips": "trips"}),
    "merge": ({}, {name: name for name in ("records", "overflows", "overflow",
                                            "records_out")}),
    "histogram": ({"histogram_clear": "clear", "histogram_channel": "read_channel",
                   "histogram_bin": "read_bin"},
                  {"histogram_data": "read_data", "histogram_clearing": "clearing",
                   "histogram_dropped": "dropped", "histogram_counted": "counted"}),
}

#: The settings and controls of the receiver top: its input ports other than ``samples``
#: (and the ``records`` stream's ``ready``).
SETTINGS = tuple(name for block, (inputs, _) in FORWARDED.items() if block != "sampler"
                 for name in inputs)

class Receiver(wiring.Component):
    """The whole of Bob's detector-timing gateware for ``channels`` detectors, ``lanes``
    symbols of ``uis_per_symbol`` UIs a cycle.

    Data path (``W = lanes * uis_per_symbol`` UIs per word)::

        samples -> UiSampler -> ClickFrontEnd -> Binner -> RecordMerge -> records
                                 |  gates        |   \\-> PhaseHistogram
                                 v               v
                               gates   Watchdog (clicks, gate starts) -> alarm flag

    Timing: the word on ``samples`` in cycle ``c`` is timed and put through the dead time in
    the front end (its hits in cycle ``c + 9``), binned (cycle ``c + 11``) and merged: its
    records are offered on ``records`` from cycle ``c + 13`` at the earliest
    (:attr:`latency`), in the round-robin order of :class:`RecordMerge`. The binned clicks
    of cycle ``c + 11`` enter the histogram; the front end's accepted clicks of cycle
    ``c + 9`` and gate starts of cycle ``c`` feed the watchdog, whose ``alarm`` in cycle
    ``c + 11`` is
    stamped on the records of that word.

    Ports are the blocks' ports (see :data:`FORWARDED` for the renamed ones, and each
    block's docstring for its contract), plus:

    accepted : Out(ArrayLayout(32, channels))
        Clicks accepted by the dead time, per channel, saturating.
    settings_error : Out(1)
        High from the cycle after any block holds a refused setting until the cycle after
        none does (each block's checks end at registers).

    Counters per channel: ``clicks`` (rising edges), ``accepted``, ``dead_discards``
    (``clicks - accepted``), ``window_discards``, ``overflows`` (records the merge could not
    carry), ``histogram_dropped``.

    Parameters
    ----------
    channels, lanes, uis_per_symbol, max_dead_time, max_gate_period :
        As :class:`ClickFrontEnd`.
    oversampling : int
        Samples per UI of the PHY's words, as :class:`UiSampler`.
    max_delay :
        As :class:`Binner`.
    fifo_depth :
        As :class:`RecordMerge`.
    histogram_period, histogram_bits :
        ``period_symbols`` and ``count_bits`` of :class:`PhaseHistogram`.
    max_window :
        As :class:`Watchdog`.
    """

    @refuses_quietly
    def __init__(self, *, channels, lanes, uis_per_symbol, oversampling=1,
                 max_dead_time=DEFAULT_MAX_DEAD_TIME, max_gate_period=256,
                 max_delay=(1 << 20) - 1, fifo_depth=16, histogram_period=1,
                 histogram_bits=32, max_window=1 << 24):
        # Check everything before building any block, so a bad value leaves nothing behind.
        check_frontend_parameters(channels, lanes, uis_per_symbol, max_dead_time,
                                  max_gate_period)
        W = lanes * uis_per_symbol
        check_sampler_parameters(channels, W, oversampling)
        check_binner_parameters(channels, uis_per_symbol, max_delay)
        check_watchdog_parameters(channels, bits_for(W), max_window)
        check_merge_parameters(channels, uis_per_symbol, fifo_depth)
        check_histogram_parameters(channels, uis_per_symbol, histogram_period, histogram_bits)
        self.frontend = ClickFrontEnd(channels=channels, lanes=lanes,
                                      uis_per_symbol=uis_per_symbol,
                                      max_dead_time=max_dead_time,
                                      max_gate_period=max_gate_period)
        self.sampler = UiSampler(channels=channels, uis=W, oversampling=oversampling)
        self.binner = Binner(channels=channels, uis_per_symbol=uis_per_symbol,
                             max_delay=max_delay)
        self.watchdog = Watchdog(channels=channels, gate_count_bits=bits_for(W),
                                 max_window=max_window)
        self.merge = RecordMerge(channels=channels, uis_per_symbol=uis_per_symbol,
                                 fifo_depth=fifo_depth)
        self.histogram = PhaseHistogram(channels=channels, uis_per_symbol=uis_per_symbol,
                                        period_symbols=histogram_period,
                                        count_bits=histogram_bits)
        self.channels = channels
        self.lanes = lanes
        self.uis_per_symbol = uis_per_symbol
        self.uis_per_word = W
        self.params = dict(channels=channels, lanes=lanes, uis_per_symbol=uis_per_symbol,
                           oversampling=oversampling, max_dead_time=max_dead_time,
                           max_gate_period=max_gate_period, max_delay=max_delay,
                           fifo_depth=fifo_depth, histogram_period=histogram_period,
                           histogram_bits=histogram_bits, max_window=max_window)
        members = {}
        for block, (inputs, outputs) in FORWARDED.items():
            signature = getattr(self, block).signature
            for top_name, block_name in {**inputs, **outputs}.items():
                members[top_name] = signature.members[block_name]
        members["accepted"] = Out(data.ArrayLayout(ACCEPTED_COUNTER_BITS, channels))
        members["settings_error"] = Out(1)
        super().__init__(members)

    #: Cycles from a word on ``samples`` to the earliest cycle its records are offered.
    latency = ClickFrontEnd.latency + Binner.latency + RecordMerge.latency

    def elaborate(self, platform):
        m = Module()
        blocks = {name: getattr(self, name) for name in FORWARDED}
        for name, block in blocks.items():
            m.submodules[name] = block
            inputs, outputs = FORWARDED[name]
            for top_name, block_name in {**inputs, **outputs}.items():
                outer, inner = getattr(self, top_name), getattr(block, block_name)
                member = block.signature.members[block_name]
                if member.is_signature:
                    wiring.connect(m, wiring.flipped(outer), inner)
                elif member.flow == In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)

        fe, binner, wd = self.frontend, self.binner, self.watchdog
        hist, merge = self.histogram, self.merge
        m.d.comb += [
            fe.samples.eq(self.sampler.uis_out),
            binner.hits.eq(fe.hits),
            wd.clicks.eq(Cat(hit.valid for hit in fe.hits)),
            wd.gate_starts.eq(fe.gate_starts),
            merge.binned.eq(binner.binned),
            merge.alarm.eq(wd.alarm),
            hist.binned.eq(binner.all_binned),
            self.settings_error.eq(Cat(fe.settings_error, binner.settings_error,
                                       wd.settings_error).any()),
        ]
        for k in range(self.channels):
            count_saturating(m, self.accepted[k], fe.hits[k].valid, top_flag=True)
        return m

