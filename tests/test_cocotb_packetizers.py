"""The generated Verilog of the blocks of :mod:`timebin.gateware.link.controller` (the
board's frame sources and the host-request engine) under cocotb (Verilator, and Icarus when
installed) against the models of :mod:`timebin.sim.link.controller`, every output in every
cycle: the cocotb twin of ``tests/test_link_packetizers.py`` and
``tests/test_link_controller_model.py``, one seed per block (see
``timebin.sim.cocotb.tb_packetizers``)."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from timebin.gateware.frames import FrameType
from timebin.gateware.link.controller import (
    AlarmReporter,
    DetectionPacketizer,
    FrameMux,
    ItemPacketizer,
    LinkController,
)
from timebin.sim.cocotb.runner import run_cocotb_verilog, simulators, write_verilog
from timebin.sim.link.framer import ice40_cell_model


class PacketizerHarness(wiring.Component):
    """A :class:`DetectionPacketizer`, an :class:`ItemPacketizer`, a :class:`FrameMux`, an
    :class:`AlarmReporter` and a :class:`LinkController`, none connected: every member of
    block ``b`` is the harness member ``{b}_{member}`` (blocks ``detections``, ``items``,
    ``mux``, ``alarms``, ``controller``), so the Verilog ports are e.g.
    ``detections_words__valid``, ``mux_start_2__ready``, ``controller_bus__rdata``. One
    harness, so one cached build. ``description`` is the controller's, in hex (the
    parameters travel as JSON); ``link`` the controller's options (``counter_bits`` and
    ``counter_dsp`` also the alarm reporter's), as a small FPGA's board sets them."""

    def __init__(self, *, max_words, item_bits, max_items, timeout, sources, width,
                 description, lookups, link=None):
        link = link or {}
        counters = {name: link[name] for name in ("counter_bits", "counter_dsp") if name in link}
        self.blocks = {
            "detections": DetectionPacketizer(max_words=max_words, timeout=timeout),
            "items": ItemPacketizer(item_bits=item_bits, frame_type=FrameType.SIFT_RESULTS,
                                    max_items=max_items, timeout=timeout),
            "mux": FrameMux(sources),
            "alarms": AlarmReporter(width, **counters),
            "controller": LinkController(description=bytes.fromhex(description),
                                         lookups=lookups, **link),
        }
        members = {f"{prefix}_{name}": member for prefix, block in self.blocks.items()
                   for name, member in block.signature.members.items()}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for prefix, block in self.blocks.items():
            m.submodules[prefix] = block
            for name, member in block.signature.members.items():
                outer, inner = getattr(self, f"{prefix}_{name}"), getattr(block, name)
                if member.is_signature:
                    wiring.connect(m, wiring.flipped(outer), inner)
                elif member.flow == wiring.In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
        return m


CONFIG = dict(max_words=4, item_bits=20, max_items=3, timeout=256, sources=3, width=4,
              description=(bytes(range(0, 256, 7)) + b'{"role":"alice"}').hex(), lookups=True)


#: The iCEBreaker's options (boards.icebreaker): the counters in iCE40 DSPs (Yosys's
#: ``SB_MAC16`` model appended), the description in block RAM.
ICE40_CONFIG = dict(CONFIG, link=dict(counter_bits=16, counter_dsp=True, description_ram=True))


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("config", [CONFIG, ICE40_CONFIG], ids=["default", "ice40"])
def test_packetizers_cocotb(simulator, config):
    params = dict(harness=config, seed=0x9AC, blocks=60, items=500, frames=80,
                  alarm_cycles=3000, requests=60)
    text, _ = write_verilog(PacketizerHarness(**config), "packetizer_harness")
    if config.get("link", {}).get("counter_dsp"):
        text += ice40_cell_model("SB_MAC16")
    result = run_cocotb_verilog(text, toplevel="packetizer_harness",
                                test_module="timebin.sim.cocotb.tb_packetizers",
                                params=params, simulator=simulator, timeout_s=600)
    assert result.tests == 5
